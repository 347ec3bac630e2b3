"""The job end to end on real Dask clusters, compared value by value with the reference aggregation."""

import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from aggregator.generate import GenerateSummary, generate_corpus
from aggregator.job import JobConfig, JobFailed, run_job
from aggregator.snapshot import list_dates, read_run
from tests.reference import Reference, reference_aggregate


def lines_of(files: list[str]) -> list[str]:
    out = []
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            out += f.read().splitlines()
    return out


@cache
def reference(
    folder: str, definitions: bool, channels: tuple[str, ...] | None = None, clients: bool = True
) -> dict[str, Reference]:
    """The reference aggregation of each submission_date=D folder of a corpus (pings filed under D count for D);
    without the client-level cells if `clients` is false."""
    histograms = json.loads((Path(folder) / "Histograms.json").read_text()) if definitions else None
    by_date = {}
    for day in sorted(Path(folder).glob("submission_date=*")):
        date = day.name.split("=")[1]
        files = sorted(str(p) for p in day.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
        by_date[date] = reference_aggregate(
            lines_of(files), {date}, histograms, channels=set(channels) if channels else None, clients=clients
        )
    return by_date


def job_cells(snapshot: str, kind: str, date: str) -> dict[tuple, tuple]:
    """The snapshot's cells in the reference's shape. The one naming difference: the job calls the fixed
    layout of `[[COUNT]]_` metrics kind `count` (what the API serves), the reference `exponential`."""
    aggregate, _ = read_run(snapshot, kind, date)
    cells = {}
    for dims, metric, label, process, layout, counts, total, count in aggregate.cells():
        kind_name = "exponential" if metric.startswith("[[COUNT]]") and layout.kind == "count" else layout.kind
        key = (*dims, metric, label, process, (kind_name, layout.bounds))
        cells[key] = (kind_name, layout.bounds, tuple(counts), total, count)
    return cells


def job_client_cells(snapshot: str, kind: str, date: str, keys: list[tuple]) -> dict[tuple, tuple[int, list[float]]]:
    """The snapshot's client-level cells, keyed as `job_cells`: (distinct clients, client-level histogram), for
    the cells with clients. `keys` are job_cells' keys of the same run, in its order (aggregate.cells() walks the
    rows)."""
    aggregate, _ = read_run(snapshot, kind, date)
    offsets = aggregate.row_offset.tolist()
    return {
        key: (clients, aggregate.client_histogram[offsets[r] : offsets[r + 1]].tolist())
        for r, (key, clients) in enumerate(zip(keys, aggregate.clients.tolist(), strict=True))
        if clients
    }


def assert_clients_match(got: dict[tuple, tuple], want: dict[tuple, tuple], what: str) -> None:
    """Client-level cells equal: the same cells and clients, sums within the job's fixed-point rounding (2**-33
    of a client per client and bucket)."""
    assert got.keys() == want.keys(), f"{what}: client-level cells differ"
    keys = list(want)
    sizes = [len(want[k][1]) for k in keys]
    wrong = [k for k, size in zip(keys, sizes, strict=True) if got[k][0] != want[k][0] or len(got[k][1]) != size]
    if keys and not wrong:  # then the sums, every bucket of every cell at once (a Python loop takes seconds)
        error = np.abs(np.concatenate([got[k][1] for k in keys]) - np.concatenate([want[k][1] for k in keys]))
        tolerance = np.repeat([1e-9 * want[k][0] for k in keys], sizes)
        wrong = [keys[i] for i in np.unique(np.repeat(np.arange(len(keys)), sizes)[error > tolerance])]
    assert not wrong, f"{what}: {len(wrong)} client-level cells differ, e.g. {wrong[0]}"


def assert_matches_reference(snapshot: str, expected: dict[str, Reference]) -> None:
    assert list_dates(snapshot) == [(k, d) for k in ("build_id", "submission_date") for d in sorted(expected)]
    for date, ref in expected.items():
        for kind in ("build_id", "submission_date"):
            got, want = job_cells(snapshot, kind, date), getattr(ref, kind)
            assert got.keys() == want.keys(), f"{kind} {date}: cells differ"
            wrong = [k for k in want if got[k] != want[k]]
            assert not wrong, f"{kind} {date}: {len(wrong)} cells differ, e.g. {wrong[0]}"
            assert len(want) > 100
            want_clients = getattr(ref, f"{kind}_clients")
            got_clients = job_client_cells(snapshot, kind, date, list(got))
            assert_clients_match(got_clients, want_clients, f"{kind} {date}")


def assert_counts_match(summary, expected: dict[str, Reference]) -> None:
    assert summary.aggregated == sum(r.aggregated for r in expected.values())
    assert summary.malformed == sum((r.malformed for r in expected.values()), Counter())
    assert summary.filtered == sum((r.filtered for r in expected.values()), Counter())


def config(corpus: GenerateSummary, snapshot: Path, **kwargs) -> JobConfig:
    return JobConfig(
        inputs=[corpus.output],
        snapshot=str(snapshot),
        dates=corpus.dates,
        definitions=corpus.histograms_definitions,
        scalar_definitions=corpus.scalars_definitions,
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("shards", [None, 3])
def test_local_cluster_matches_reference(corpus, local_client, tmp_path, shards):
    summary = run_job(config(corpus, tmp_path / "snap", shards=shards), client=local_client, say=lambda *_: None)
    expected = reference(corpus.output, True)
    assert_matches_reference(str(tmp_path / "snap"), expected)
    assert_counts_match(summary, expected)
    assert sum(summary.malformed.values()) == corpus.malformed
    _, attrs = read_run(str(tmp_path / "snap"), "build_id", corpus.dates[0])
    assert len(attrs["parts"]) == (shards or 1)


def test_files_outside_date_folders_with_a_date_folder_are_summed_per_date(corpus, local_client, tmp_path):
    """A date's cells from its folder and from loose files of several dates (two reductions of one date, which
    may hold the same cells) add up: a ping counts once, wherever its file was."""
    loose = tmp_path / "loose"
    loose.mkdir()
    first, second = corpus.dates
    folder_files = sorted(f for f in corpus.files if f"submission_date={first}" in f)
    shutil.copy(sorted(f for f in corpus.files if f"submission_date={second}" in f)[0], loose / "second.ndjson.gz")
    shutil.copy(folder_files[0], loose / "again.ndjson.gz")  # the first date's cells in both reductions
    cfg = config(corpus, tmp_path / "snap", shards=2)
    cfg.inputs, cfg.dates = [*folder_files, str(loose)], []
    summary = run_job(cfg, client=local_client, say=lambda *_: None)
    assert summary.dates == sorted(corpus.dates)
    expected = reference_aggregate(
        lines_of([*folder_files, *map(str, loose.iterdir())]),
        {first, second},
        json.loads(Path(corpus.histograms_definitions).read_text()),
        clients=False,
    )
    for kind in ("build_id", "submission_date"):
        got = {k: v for date in corpus.dates for k, v in job_cells(str(tmp_path / "snap"), kind, date).items()}
        assert got == getattr(expected, kind)


def test_without_definitions_layouts_come_from_the_pings(corpus, local_client, tmp_path):
    report = tmp_path / "report.html"
    cfg = config(corpus, tmp_path / "snap", split_every=2, performance_report=str(report))
    cfg.definitions = None
    run_job(cfg, client=local_client, say=lambda *_: None)
    assert_matches_reference(str(tmp_path / "snap"), reference(corpus.output, False))
    assert "aggregate_chunk" in report.read_text()  # Dask's performance report of the run


@pytest.mark.cluster
def test_separately_started_scheduler_and_workers(corpus, external_scheduler, tmp_path):
    cfg = config(corpus, tmp_path / "snap", scheduler=external_scheduler, channels=["nightly", "beta"], shards=2)
    summary = run_job(cfg, say=lambda *_: None)
    expected = reference(corpus.output, True, ("nightly", "beta"))
    assert_matches_reference(str(tmp_path / "snap"), expected)
    assert_counts_match(summary, expected)
    assert summary.filtered["channel_not_selected"] > 0


def test_rerunning_a_date_replaces_it(corpus, local_client, tmp_path):
    date = corpus.dates[0]
    snapshot = str(tmp_path / "snap")
    partial = config(corpus, tmp_path / "snap")
    partial.inputs, partial.dates = (
        sorted(f for f in corpus.files if f"submission_date={date}" in f)[:1],
        [date],
    )
    run_job(partial, client=local_client, say=lambda *_: None)
    expected = reference(corpus.output, True)[date].build_id
    assert job_cells(snapshot, "build_id", date) != expected
    full = config(corpus, tmp_path / "snap")
    full.dates = [date]
    run_job(full, client=local_client, say=lambda *_: None)
    assert job_cells(snapshot, "build_id", date) == expected


def test_too_many_malformed_pings_fail_the_run_and_write_nothing(local_client, tmp_path):
    bad = generate_corpus(str(tmp_path / "bad"), pings=120, days=1, seed=2, files_per_day=1, malformed_fraction=0.25)
    with pytest.raises(JobFailed, match="malformed"):
        run_job(config(bad, tmp_path / "snap", max_bad_fraction=0.1), client=local_client, say=lambda *_: None)
    assert not (tmp_path / "snap").exists()


def test_unreadable_file_is_named_and_fails_unless_skipped(corpus, local_client, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.output, copy)
    victim = sorted(copy.glob("submission_date=*/*.ndjson.gz"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] + bytes(range(256)) * 8)
    cfg = config(corpus, tmp_path / "snap")
    cfg.inputs = [str(copy)]
    with pytest.raises(JobFailed, match=victim.name):
        run_job(cfg, client=local_client, say=lambda *_: None)
    assert not (tmp_path / "snap").exists()

    cfg.skip_unreadable = True
    summary = run_job(cfg, client=local_client, say=lambda *_: None)
    assert [Path(p).name for p in summary.unreadable] == [victim.name]
    victim.unlink()  # what was aggregated is exactly the other files
    date = victim.parent.name.split("=")[1]
    expected = reference(str(copy), True, clients=False)
    assert job_cells(str(tmp_path / "snap"), "submission_date", date) == expected[date].submission_date


def test_command_line_run_and_failure(corpus, tmp_path):
    aggregator = [sys.executable, "-m", "aggregator"]
    date = corpus.dates[0]
    ok = subprocess.run(
        [
            *aggregator,
            "run",
            "--input",
            corpus.output,
            "--date",
            date,
            "--snapshot",
            str(tmp_path / "snap"),
            "--definitions",
            corpus.histograms_definitions,
            "--workers",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Dask dashboard: http" in ok.stdout
    expected = reference(corpus.output, True)[date]
    assert f"aggregated       {expected.aggregated}" in ok.stdout
    failed = subprocess.run(
        [
            *aggregator,
            "run",
            "--input",
            corpus.output,
            "--date",
            date,
            "--snapshot",
            str(tmp_path / "other"),
            "--workers",
            "1",
            "--no-progress",
            "--max-bad-fraction",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1
    assert "more than --max-bad-fraction" in failed.stderr
    assert not (tmp_path / "other").exists()
