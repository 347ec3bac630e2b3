"""`aggregator export`: the test corpus's snapshot (aggregated by the job on the LocalCluster) as a Parquet
dataset, read back with DuckDB through its hive partitioning and compared value by value with the reference
aggregation (every cell), with the API's answers from the same snapshot published into Postgres, and with the
query docs/job.md shows."""

import itertools
import sys
from array import array
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from aggregator import cli, export
from aggregator.snapshot import read_run
from server.app import create_app
from tests.conftest import settings_for
from tests.test_cli import aggregator, one_error
from tests.test_job import assert_clients_match, reference
from tests.test_repeated_bounds import BOUNDS, DATE, expected_histogram, served_snapshot  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("build_id", "submission_date")
CHANNEL, VERSION = "nightly", 146
# A plain histogram, a keyed histogram, a scalar and a keyed scalar of the corpus (tests/conftest.py's, seed 11):
# whether each is keyed.
METRICS = {
    "GC_MS": False,
    "IPC_READ_MAIN_THREAD_LATENCY_MS": True,
    "SCALARS_POWER.TOTAL_CPU_TIME_MS": False,
    "SCALARS_BROWSER.UI.INTERACTION.NAV_BAR": True,
}
KEY = "channel, metric, label, application, architecture, os, os_version, process"
CELL = "layout_kind, buckets, counts, sum, count"


def write(snapshot: str, dates: list[str], output: Path) -> None:
    assert cli.main(["export", "--snapshot", snapshot, *(f"--date={d}" for d in dates), "--output", str(output)]) == 0


@pytest.fixture(scope="module")
def dataset(snapshot, corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("export") / "dataset"
    write(snapshot, corpus.dates, output)
    return output


def scan(dataset: Path) -> str:
    return f"read_parquet('{dataset}/**/*.parquet', hive_partitioning = true)"


def test_the_dataset_is_one_file_per_kind_and_date(dataset, corpus):
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(
        f"aggregation={aggregation}/kind={kind}/submission_date={date}/part-0.parquet"
        for aggregation in ("pings", "clients")
        for kind in KINDS
        for date in corpus.dates
    )
    # pandas reads through pyarrow: one schema for both kinds, the partition keys from the path
    table = pq.read_table(dataset)
    assert table.column_names[-3:] == ["aggregation", "kind", "submission_date"]
    assert str(table.schema.field("counts").type) == "list<element: int64>"


def test_every_cell_is_the_references(dataset, cells):
    """Every row against tests/reference.py's cells (conftest.reference_cells), and nothing more. A build-id
    record there has no submission date (two dates may hold the same record): rows are compared as multisets,
    bucket lists as bytes (hashing and comparing lists of Python ints took seconds)."""
    table = duckdb.sql(
        f"SELECT kind, coalesce(build_id, submission_date)::VARCHAR, version::VARCHAR, {KEY}, {CELL} "
        f"FROM {scan(dataset)} WHERE aggregation = 'pings'"
    ).to_arrow_table()  # through Arrow: a fifth of the time of fetchall's Python lists
    lists = {}
    for name in ("buckets", "counts"):
        column = table.column(name).combine_chunks()
        values, offsets = column.flatten().to_numpy(), column.offsets.to_numpy()
        lists[name] = [values[a:b].tobytes() for a, b in itertools.pairwise(offsets.tolist())]
    found = Counter()
    for kind, day, version, channel, metric, label, *dims, process, layout_kind, buckets, counts, total, count in zip(
        *(table.column(i).to_pylist() for i in range(table.num_columns - 4)),
        lists["buckets"],
        lists["counts"],
        table.column("sum").to_pylist(),
        table.column("count").to_pylist(),
        strict=True,
    ):
        # the job calls the fixed layout of `[[COUNT]]_` metrics `count` (what the API serves), the reference
        # `exponential` (tests/test_job.py's job_cells)
        kind_name = "exponential" if metric.startswith("[[COUNT]]") and layout_kind == "count" else layout_kind
        found[kind, day, version, channel, metric, label, *dims, process, kind_name, buckets, counts, total, count] += 1
    expected = Counter()
    for kind in KINDS:
        for (channel, version, metric), records in cells[kind].items():
            for _, _, day, label, app, arch, os_, os_version, process, _, cell in records:
                buckets, counts = (array("q", cell[i]).tobytes() for i in (1, 2))  # numpy's int64 bytes
                key = (kind, day, version, channel, metric, label, app, arch, os_, os_version, process, cell[0])
                expected[(*key, buckets, counts, cell[3], cell[4])] += 1
    assert found == expected


def test_every_row_is_the_snapshots_in_its_order(dataset, snapshot, corpus):
    """Row by row, the snapshot's own reader's cells, in the snapshot's order."""
    for kind in KINDS:
        for date in corpus.dates:
            aggregate, attrs = read_run(snapshot, kind, date)
            path = dataset / export.partition(kind, date, "pings") / export.PART
            rows = pq.read_table(path).to_pylist()
            assert len(rows) == len(aggregate)
            for row, (dims, metric, label, process, layout, counts, total, count) in zip(
                rows, aggregate.cells(), strict=True
            ):
                assert (row["metric"], row["label"], row["process"]) == (metric, label, process)
                assert (row["layout_kind"], row["buckets"], row["counts"]) == (layout.kind, list(layout.bounds), counts)
                assert row["bucket_names"] == (list(layout.names) if layout.names else None)
                assert (row["sum"], row["count"]) == (total, count)
                named = dict(zip(aggregate.columns, dims, strict=True))
                assert str(row["version"]) == named["version"] and row["channel"] == named["channel"]
                assert (row["build_id"] and str(row["build_id"])) == named.get("build_id")
            assert f'"run_id": "{attrs["run_id"]}"' in pq.read_schema(path).metadata[b"telemetry-aggregates"].decode()


def test_client_level_rows_are_the_references(dataset, corpus):
    """aggregation=clients, read with DuckDB, against the reference's client-level cells (tests/reference.py):
    the cells with clients, their distinct clients and their client-level sums."""
    expected = reference(corpus.output, True)
    rows = duckdb.sql(
        f"SELECT kind, submission_date::VARCHAR, channel, version::VARCHAR, build_id::VARCHAR, application, "
        f"architecture, os, os_version, metric, label, process, layout_kind, buckets, clients, client_counts, counts "
        f"FROM {scan(dataset)} WHERE aggregation = 'clients' AND clients > 0"
    ).fetchall()
    found: dict[str, dict] = {kind: {} for kind in KINDS}
    for (
        kind,
        day,
        channel,
        version,
        build_id,
        *dims,
        metric,
        label,
        process,
        layout_kind,
        buckets,
        clients,
        sums,
        counts,
    ) in rows:
        assert counts is None  # the per-ping columns are aggregation=pings'
        kind_name = "exponential" if metric.startswith("[[COUNT]]") and layout_kind == "count" else layout_kind
        build = (build_id,) if kind == "build_id" else ()
        key = (day, channel, version, *build, *dims, metric, label, process, (kind_name, tuple(buckets)))
        found[kind][key] = (clients, sums)
    for kind in KINDS:
        want = {k: v for date in corpus.dates for k, v in getattr(expected[date], f"{kind}_clients").items()}
        assert_clients_match(found[kind], want, f"export {kind}")


def per_day(dataset: Path, kind: str, metric: str) -> list[dict]:
    """The API's `data` for CHANNEL and VERSION, from the dataset: every other dimension summed."""
    day = "build_id" if kind == "build_id" else "submission_date"
    rows = duckdb.execute(
        f"""SELECT {day}, label, list(n ORDER BY i), any_value(total), any_value(histograms)
            FROM (
                SELECT {day}, label, i, sum(counts[i]) AS n, sum(sum) AS total, sum(count) AS histograms
                FROM (SELECT *, generate_subscripts(counts, 1) AS i FROM {scan(dataset)}
                      WHERE aggregation = 'pings' AND kind = $kind AND channel = $channel
                        AND version = $version AND metric = $metric)
                GROUP BY ALL)
            GROUP BY ALL ORDER BY ALL""",
        {"kind": kind, "channel": CHANNEL, "version": VERSION, "metric": metric},
    ).fetchall()
    return [
        {"date": str(d), "label": label, "histogram": [int(c) for c in h], "count": int(n), "sum": int(s)}
        for d, label, h, s, n in rows
    ]


async def api_data(client, kind: str, metric: str, dates: list[str]) -> dict:
    answer = await client.get(
        f"/aggregates_by/{kind}/channels/{CHANNEL}/",
        params={"version": str(VERSION), "dates": ",".join(dates), "metric": metric},
    )
    assert answer.status == 200, await answer.text()
    return await answer.json()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_the_apis_answers_are_the_datasets(dataset, database_url, aiohttp_client, kind):
    client = await aiohttp_client(create_app(settings_for(database_url)))
    for metric, keyed in METRICS.items():
        data = per_day(dataset, kind, metric)
        dates = sorted({entry["date"] for entry in data})
        labels = {entry["label"] for entry in data}
        assert dates and (len(labels) > 1 if keyed else labels == {""}), metric
        answer = await api_data(client, kind, metric, dates)
        (buckets,) = duckdb.execute(
            f"SELECT DISTINCT buckets FROM {scan(dataset)} WHERE metric = $metric", {"metric": metric}
        ).fetchall()
        assert answer["buckets"] == buckets[0]
        assert sorted(answer["data"], key=lambda e: (e["date"], e["label"])) == data, (kind, metric)


@pytest.mark.asyncio
async def test_the_documented_query_gives_the_apis_answer(dataset, database_url, aiohttp_client):
    text = (ROOT / "docs" / "job.md").read_text()
    query = text.split("<!-- duckdb-example -->\n```sql\n")[1].split("```")[0]
    rows = duckdb.sql(query.replace("DATASET", str(dataset))).fetchall()
    documented = [
        {"date": str(d), "label": label, "histogram": [int(c) for c in h], "count": int(n), "sum": int(s)}
        for d, label, h, s, n in rows
    ]
    assert "metric = 'GC_MS'" in query and documented == per_day(dataset, "submission_date", "GC_MS")
    client = await aiohttp_client(create_app(settings_for(database_url)))
    answer = await api_data(client, "submission_date", "GC_MS", [entry["date"] for entry in documented])
    assert answer["data"] == documented


def test_repeated_bounds_are_kept_as_the_snapshot_stores_them(served_snapshot, tmp_path):  # noqa: F811
    write(served_snapshot, [DATE], tmp_path / "dataset")
    rows = duckdb.sql(
        f"SELECT kind, layout_kind, buckets, counts, sum, count FROM {scan(tmp_path / 'dataset')}"
        " WHERE aggregation = 'pings'"
    )
    assert sorted(rows.fetchall()) == [
        (kind, "linear", BOUNDS, expected_histogram(), 57, 2) for kind in ("build_id", "submission_date")
    ]


def test_an_export_again_replaces_the_date_in_row_groups(dataset, snapshot, corpus, tmp_path, monkeypatch):
    output = tmp_path / "again"
    write(snapshot, corpus.dates[:1], output)
    folder = output / export.partition("build_id", corpus.dates[0], "pings")
    (folder / "part-1.parquet").write_bytes((folder / "part-0.parquet").read_bytes())  # an earlier export's
    monkeypatch.setattr(export, "ROW_GROUP_BUCKETS", 50_000)
    write(snapshot, corpus.dates[:1], output)
    assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]
    written = pq.ParquetFile(folder / "part-0.parquet")
    assert written.metadata.num_row_groups > 10
    for group in range(written.metadata.num_row_groups):
        counts = written.read_row_group(group, columns=["counts"]).column("counts")
        assert len(counts) == 1 or pc.sum(pc.list_value_length(counts)).as_py() <= 50_000
    first_day = f"SELECT * FROM {scan(dataset)} WHERE submission_date = {corpus.dates[0]}"
    assert duckdb.sql(f"SELECT * FROM {scan(output)} EXCEPT ALL {first_day}").fetchall() == []
    assert duckdb.sql(f"SELECT count(*) FROM {scan(output)}").fetchall() == [
        (2 * sum(len(read_run(snapshot, kind, corpus.dates[0])[0]) for kind in KINDS),)  # both weightings
    ]


def test_a_date_the_snapshot_lacks_is_one_line_and_exit_2(snapshot, corpus, tmp_path):
    output = tmp_path / "dataset"
    result = aggregator(
        "export", "--snapshot", snapshot, "--date", corpus.dates[0], "--date", "20261130", "--output", str(output)
    )
    assert one_error(result, 2) == (
        f"aggregator: error: the snapshot {snapshot} holds no aggregates of 20261130 "
        f"(its dates: {', '.join(corpus.dates)})"
    )
    assert not output.exists()  # checked before anything is written


def test_other_mistakes_are_one_line_before_any_work(snapshot, corpus, tmp_path, capsys, monkeypatch):
    def error(*args: str) -> tuple[int, str]:
        code = cli.main(["export", *args])
        return code, capsys.readouterr().err.strip()

    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    date = ["--date", corpus.dates[0]]
    assert error("--snapshot", str(tmp_path / "nothing"), *date, "--output", str(tmp_path / "out")) == (
        2,
        f"aggregator: error: no snapshot at {tmp_path / 'nothing'}",
    )
    assert error("--snapshot", snapshot, *date, "--output", str(afile)) == (
        2,
        f"aggregator: error: the output {afile} is a file, not a folder",
    )
    code, line = error("--snapshot", snapshot, *date, "--output", str(afile / "dataset"))
    assert code == 1 and line.startswith(f"aggregator: error: cannot write build_id {date[1]} under {afile}/dataset: ")
    assert "\n" not in line
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as without the `parquet` extra
    assert error("--snapshot", snapshot, *date, "--output", str(tmp_path / "out")) == (
        1,
        "aggregator: error: `aggregator export` writes Parquet with pyarrow, which is not installed: "
        "pip install '.[parquet]'",
    )
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        cli.main(["export", "--snapshot", snapshot, *date, "--format", "csv", "--output", str(tmp_path / "out")])
    assert "argument --format: invalid choice: 'csv'" in capsys.readouterr().err
