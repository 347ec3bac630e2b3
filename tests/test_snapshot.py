"""The zarr snapshot: round trip, the current-run switch, and the layout documented in docs/snapshot.md."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zarr

from aggregator.layouts import Layout
from aggregator.snapshot import (
    SnapshotError,
    commit_run,
    finish_run,
    list_dates,
    new_run_id,
    prepare,
    read_attrs,
    read_run,
    stage_part,
)
from tests.test_aggregate import as_dict, dims, make

CATEGORICAL = Layout("categorical", (0, 1, 2), ("a", "b", "spill"))
LINEAR = Layout("linear", (0, 1, 2))


def sample():
    return make(
        [
            (dims("20261101", "20261030"), ("C", "", "parent", CATEGORICAL), [1, 2, 3], 8, 6),
            (dims("20261101", "20261030"), ("L", "kéy", "gpu", LINEAR), [0, 4, 0], 4, 4),
            (dims("20261101", "20261031", "Windows_NT"), ("L", "kéy", "gpu", LINEAR), [9, 0, 1], 2, 10),
        ]
    )


def stage_run(url: str, kind: str, date: str, aggregates: list, attrs: dict) -> str:
    """Stage a run of one part per aggregate and finish it, as the job does; not committed."""
    run_id = new_run_id()
    parts = {f"part-{i}": stage_part(url, kind, date, run_id, f"part-{i}", a) for i, a in enumerate(aggregates)}
    prepare(url, [date])
    finish_run(url, kind, date, run_id, parts, sum(len(a) for a in aggregates), attrs)
    return run_id


def write_run(url: str, kind: str, date: str, aggregate, attrs: dict, parts: list | None = None) -> str:
    """Stage a run and commit it at once, as the job does once all of its runs are staged."""
    run_id = stage_run(url, kind, date, [aggregate] if parts is None else parts, attrs)
    commit_run(url, kind, date, run_id)
    return run_id


def test_round_trip_keeps_every_cell(tmp_path: Path):
    url = str(tmp_path / "snap")
    write_run(url, "build_id", "20261101", sample(), {"note": "x"})
    aggregate, attrs = read_run(url, "build_id", "20261101")
    assert as_dict(aggregate) == as_dict(sample())
    assert attrs["note"] == "x" and attrs["rows"] == 3 and attrs["format_version"] == 3
    assert list_dates(url) == [("build_id", "20261101")]


def test_rerun_switches_to_the_new_run_and_removes_the_old(tmp_path: Path):
    url = str(tmp_path / "snap")
    first = write_run(url, "build_id", "20261101", sample(), {"n": 1})
    second = write_run(url, "build_id", "20261101", sample(), {"n": 2})
    day = zarr.open_group(url, mode="r", path="build_id/20261101")
    assert day.attrs["current"] == second != first
    assert list(day.group_keys()) == [second]
    attrs = read_attrs(url, "build_id", "20261101")
    assert attrs["n"] == 2
    assert attrs["digest"] == read_attrs(url, "build_id", "20261101")["digest"]


def test_equal_data_has_equal_digest_and_different_data_does_not(tmp_path: Path):
    url = str(tmp_path / "snap")
    write_run(url, "build_id", "20261101", sample(), {})
    write_run(url, "build_id", "20261102", sample(), {})
    other = make([(dims("20261101", "20261030"), ("C", "", "parent", CATEGORICAL), [1, 2, 4], 8, 6)])
    write_run(url, "build_id", "20261103", other, {})
    digests = [read_attrs(url, "build_id", d)["digest"] for d in ("20261101", "20261102", "20261103")]
    assert digests[0] == digests[1] != digests[2]


def test_readable_with_zarr_alone_as_documented(tmp_path: Path):
    url = str(tmp_path / "snap")
    write_run(url, "build_id", "20261101", sample(), {})
    root = zarr.open_group(url, mode="r")
    day = root["build_id/20261101"]
    run = day[day.attrs["current"]]
    run = run[run.attrs["parts"][0]]  # a run of one part
    offsets = run["rows/offset"][:]
    histogram = run["histogram"][:]
    names = run["metrics/name"][:]
    labels = run["layouts/label"][:]
    layout_offsets = run["layouts/offset"][:]
    rows = []
    for r, (d, m) in enumerate(zip(run["rows/dimension"][:], run["rows/metric"][:], strict=True)):
        layout = run["metrics/layout"][m]
        bucket_labels = labels[layout_offsets[layout] : layout_offsets[layout + 1]].tolist()
        os_name = run["dimensions/os"][d]
        counts = histogram[offsets[r] : offsets[r + 1]].tolist()
        rows.append((str(names[m]), str(os_name), dict(zip(bucket_labels, counts, strict=True))))
    assert sorted(rows) == [
        ("C", "Linux", {"a": 1, "b": 2, "spill": 3}),
        ("L", "Linux", {"0": 0, "1": 4, "2": 0}),
        ("L", "Windows_NT", {"0": 9, "1": 0, "2": 1}),
    ]


def test_days_can_be_written_in_parallel_once_the_store_is_prepared(tmp_path: Path):
    url = str(tmp_path / "snap")
    dates = [f"202611{d:02d}" for d in range(1, 9)]
    prepare(url, dates)
    with ThreadPoolExecutor(len(dates)) as pool:
        runs = list(pool.map(lambda d: stage_run(url, "build_id", d, [sample()], {}), dates))
    for date, run_id in zip(dates, runs, strict=True):
        commit_run(url, "build_id", date, run_id)
    assert list_dates(url) == [("build_id", d) for d in dates]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_staged_run_is_invisible_until_committed_and_touches_nothing_else(tmp_path: Path):
    url = str(tmp_path / "snap")
    write_run(url, "build_id", "20261101", sample(), {"n": 1})
    prepare(url, ["20261101", "20261102"])  # preparing a day again keeps its pointer
    before = files(tmp_path / "snap")
    staged = stage_run(url, "build_id", "20261101", [sample()], {"n": 2})
    unfinished = stage_run(url, "build_id", "20261102", [sample()], {"n": 3})  # a day whose run is never committed
    after = files(tmp_path / "snap")
    assert {f: data for f, data in after.items() if staged not in f and unfinished not in f} == before
    assert read_attrs(url, "build_id", "20261101")["n"] == 1
    assert list_dates(url) == [("build_id", "20261101")]
    with pytest.raises(SnapshotError):
        read_run(url, "build_id", "20261102")
    # what a writer killed half-way leaves: a run folder with no metadata yet, a temporary file of zarr's
    (tmp_path / "snap/build_id/20261101/run-unfinished").mkdir()
    (tmp_path / "snap/build_id/20261101/run-unfinished/zarr.0a1b.partial").write_text("{")
    (tmp_path / "snap/build_id/20261101/zarr.2c3d.partial").write_text("{")
    commit_run(url, "build_id", "20261101", staged)
    assert read_attrs(url, "build_id", "20261101")["n"] == 2
    assert sorted(p.name for p in (tmp_path / "snap/build_id/20261101").iterdir()) == [staged, "zarr.json"]


def test_a_run_of_several_parts_reads_as_their_sum(tmp_path: Path):
    """Parts from different reductions may hold the same cell (files outside the date folders): read, it is
    summed. Expected values by hand."""
    url = str(tmp_path / "snap")
    first = make([(dims("20261101", "20261030"), ("C", "", "parent", CATEGORICAL), [1, 2, 3], 8, 6)])
    second = make(
        [
            (dims("20261101", "20261030"), ("C", "", "parent", CATEGORICAL), [10, 0, 1], 5, 2),
            (dims("20261101", "20261031"), ("L", "", "gpu", LINEAR), [0, 4, 0], 4, 4),
        ]
    )
    write_run(url, "build_id", "20261101", None, {}, parts=[first, second])
    aggregate, attrs = read_run(url, "build_id", "20261101")
    assert attrs["parts"] == ["part-0", "part-1"] and attrs["rows"] == 3
    assert as_dict(aggregate) == as_dict(
        make(
            [
                (dims("20261101", "20261030"), ("C", "", "parent", CATEGORICAL), [11, 2, 4], 13, 8),
                (dims("20261101", "20261031"), ("L", "", "gpu", LINEAR), [0, 4, 0], 4, 4),
            ]
        )
    )


def test_a_format_1_run_is_still_read(tmp_path: Path):
    """Format 1 kept a run's arrays in the run's own group (one part, no `parts` attribute)."""
    url = str(tmp_path / "snap")
    run_id = stage_run(url, "build_id", "20261101", [sample()], {})
    folder = tmp_path / "snap/build_id/20261101" / run_id
    for item in (folder / "part-0").iterdir():
        if item.name != "zarr.json":
            item.rename(folder / item.name)
    (folder / "part-0/zarr.json").unlink()
    (folder / "part-0").rmdir()
    run = zarr.open_group(url, mode="r+", path=f"build_id/20261101/{run_id}")
    del run.attrs["parts"]
    run.attrs["format_version"] = 1
    commit_run(url, "build_id", "20261101", run_id)
    aggregate, _ = read_run(url, "build_id", "20261101")
    assert as_dict(aggregate) == as_dict(sample())


def test_a_run_without_parts_reads_as_empty(tmp_path: Path):
    """A date whose pings held no metric: its reductions staged no part."""
    url = str(tmp_path / "snap")
    write_run(url, "submission_date", "20261101", None, {}, parts=[])
    aggregate, attrs = read_run(url, "submission_date", "20261101")
    assert len(aggregate) == 0 and attrs["parts"] == [] and attrs["rows"] == 0
    assert aggregate.columns == (
        "submission_date",
        "channel",
        "version",
        "application",
        "architecture",
        "os",
        "os_version",
    )
