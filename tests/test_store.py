"""The Postgres store against a real server: what is published equals the reference aggregation, re-publishing
changes nothing, a re-run replaces exactly its day, build-id aggregates sum their days, rebuild and trim.

Every test that writes works in databases of its own (`ta_store_<random>`), created and dropped here, so that
other suites running on the same server are never touched; the snapshot published whole is the session's
database (conftest.database_url), which they only read.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from secrets import token_hex

import asyncpg
import numpy as np
import pytest

from aggregator.aggregate import INT64_MAX, Aggregate, rebuild
from aggregator.cli import main
from aggregator.job import run_job
from aggregator.layouts import Layout
from aggregator.snapshot import read_run
from aggregator.store import encode, publish, schema
from aggregator.store.commands import publish_after_run
from aggregator.store.connect import connect_options
from aggregator.store.encode import parse_day, rollup
from aggregator.store.locks import day_lock
from aggregator.store.publish import publish_dates, publish_run
from aggregator.store.publish import rebuild as rebuild_store
from aggregator.store.trim import trim
from tests.publisher import Publisher
from tests.test_job import assert_clients_match, assert_matches_reference, config, reference

SERVER = "postgresql://postgres@127.0.0.1:5432"
KINDS = schema.KINDS


def run(coroutine):
    return asyncio.run(coroutine)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def temporary_database(migrated: bool = True) -> Iterator[str]:
    """A new database of this module's own; its DSN. Dropped afterwards, whatever happened."""
    name = f"ta_store_{token_hex(6)}"  # a fixed pattern of hex digits: safe to put in DDL
    run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        dsn = f"{SERVER}/{name}"
        if migrated:
            run(call(dsn, schema.migrate))
        yield dsn
    finally:
        run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def call(dsn: str, function, *args, **kwargs):
    """`function(conn, *args)` on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await function(conn, *args, **kwargs)
    finally:
        await conn.close()


def fetch(dsn: str, sql: str, *args) -> list[asyncpg.Record]:
    async def body(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await conn.fetch(sql, *args)

    return run(call(dsn, body))


def publish_all(dsn: str, snapshot: str, dates: list[str]) -> list:
    return run(call(dsn, publish_dates, snapshot, dates, KINDS, say=lambda *_: None))


@pytest.fixture
def published(database_url) -> str:
    """A database holding the whole snapshot: the session's (conftest.database_url); tests must not change it."""
    return database_url


@pytest.fixture
def fresh() -> Iterator[str]:
    with temporary_database() as dsn:
        yield dsn


# ---- what is stored, in the shapes of the snapshot and of the reference ------------------------------------


def _dimension_key(kind: str, row: asyncpg.Record) -> tuple[str, ...]:
    build = (f"{row['date']:%Y%m%d}",) if kind == "build_id" else ()
    return (f"{row['submission_date']:%Y%m%d}", row["channel"], str(row["version"]), *build)


def stored_cells(dsn: str, kind: str, date_text: str) -> dict[tuple, tuple]:
    """The leaf of (kind, date) keyed as `snapshot_cells` keys the snapshot."""
    rows = fetch(
        dsn,
        """SELECT a.*, l.kind AS layout_kind, l.bounds FROM aggregates a JOIN layouts l ON l.id = a.layout
           WHERE a.kind = $1 AND a.submission_date = $2""",
        kind,
        parse_day(date_text),
    )
    columns = ("application", "architecture", "os", "os_version", "metric", "label", "process", "layout_kind")
    return {
        (*_dimension_key(kind, r), *(r[c] for c in columns), tuple(r["bounds"])): (
            tuple(r["histogram"]),
            r["sum"],
            r["count"],
            r["clients"],
            tuple(r["client_histogram"]),
        )
        for r in rows
    }


def snapshot_cells(snapshot: str, kind: str, date_text: str) -> dict[tuple, tuple]:
    """The run's cells: per-ping histogram, sum and count, then distinct clients and client-level histogram."""
    aggregate, _ = read_run(snapshot, kind, date_text)
    offsets = aggregate.row_offset.tolist()
    return {
        (*dims, metric, label, process, layout.kind, layout.bounds): (
            tuple(counts),
            total,
            count,
            int(aggregate.clients[r]),
            tuple(aggregate.client_histogram[offsets[r] : offsets[r + 1]].tolist()),
        )
        for r, (dims, metric, label, process, layout, counts, total, count) in enumerate(aggregate.cells())
    }


def _summed(cells: dict[tuple, tuple], key) -> dict[tuple, tuple]:
    """Cells summed by `key(cell key)`: bucket by bucket, sum and count (no overflow in these corpora)."""
    out: dict[tuple, list] = {}
    for k, (counts, total, count, *_) in cells.items():
        acc = out.setdefault(key(k), [np.zeros(len(counts), dtype=object), 0, 0])
        acc[0] += np.array(counts, dtype=object)
        acc[1] += total
        acc[2] += count
    return {k: (tuple(int(x) for x in v[0]), v[1], v[2]) for k, v in out.items()}


def reference_rollup(corpus, kind: str, date_text: str) -> dict[tuple, tuple]:
    """The reference's cells with application, architecture, os and os_version summed away, keyed by
    (dimensions..., metric, label, process, bounds)."""
    cells = getattr(reference(corpus.output, True)[date_text], kind)
    kept = 4 if kind == "build_id" else 3  # submission_date, channel, version[, build_id]
    return _summed(
        {k: (v[2], v[3], v[4]) for k, v in cells.items()}, lambda k: (*k[:kept], *k[kept + 4 : -1], k[-1][1])
    )


def reference_client_rollup(corpus, kind: str, date_text: str) -> dict[tuple, tuple]:
    """The reference's client-level cells with the filter dimensions summed away: (clients, sums)."""
    cells = getattr(reference(corpus.output, True)[date_text], f"{kind}_clients")
    kept = 4 if kind == "build_id" else 3
    out: dict[tuple, list] = {}
    for k, (clients, sums) in cells.items():
        acc = out.setdefault((*k[:kept], *k[kept + 4 : -1], k[-1][1]), [0, np.zeros(len(sums))])
        acc[0] += clients
        acc[1] += sums
    return {k: (clients, tuple(sums.tolist())) for k, (clients, sums) in out.items()}


def stored_rollup(dsn: str, kind: str, date_text: str) -> dict[tuple, tuple]:
    rows = fetch(
        dsn,
        """SELECT a.*, l.bounds FROM aggregates_all a JOIN layouts l ON l.id = a.layout
           WHERE a.kind = $1 AND a.submission_date = $2""",
        kind,
        parse_day(date_text),
    )
    return {
        (*_dimension_key(kind, r), r["metric"], r["label"], r["process"], tuple(r["bounds"])): (
            tuple(r["histogram"]),
            r["sum"],
            r["count"],
            r["clients"],
            tuple(r["client_histogram"]),
        )
        for r in rows
    }


def contents(dsn: str) -> dict[tuple, tuple]:
    """A digest of everything the API reads, per table and submission date (row count, order-free sum of row
    hashes), with layout ids resolved: they depend on the order of publishing."""
    cells = "a.kind, a.submission_date, channel, version, date, metric, label, process, histogram, sum, count"
    layouts = "JOIN layouts l ON l.id = a.layout"
    queries = {  # table: (row, FROM ...)
        "aggregates": (f"{cells}, application, architecture, os, os_version, l.kind, l.bounds, l.labels", layouts),
        "aggregates_all": (f"{cells}, l.kind, l.bounds, l.labels", layouts),
        "catalog_dates": ("kind, submission_date, channel, version, date", ""),
        "catalog_filters": ("kind, submission_date, channel, version, filter, value", ""),
        "contributions": (
            "a.kind, a.submission_date, run_id, digest, rows, rollup_rows",
            "JOIN publishes p ON p.id = a.publish_id",
        ),
    }
    out = {}
    for name, (row, join) in queries.items():
        sql = f"""SELECT a.submission_date, count(*), sum(hash_record_extended(row({row}), 0)::numeric)
                  FROM {name} a {join} GROUP BY 1"""
        out |= {(name, r[0]): tuple(r[1:]) for r in fetch(dsn, sql)}
    descriptions = "SELECT count(*), sum(hash_record_extended(row(metric, description), 0)::numeric) FROM descriptions"
    return out | {("descriptions", None): tuple(fetch(dsn, descriptions)[0])}


def leaves(dsn: str) -> list[str]:
    rows = fetch(
        dsn,
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname LIKE 'aggregates%' AND c.relkind = 'r'""",
    )
    return sorted(r["relname"] for r in rows)


# ---- tests --------------------------------------------------------------------------------------------------


def test_schema_is_versioned_and_checked():
    with temporary_database(migrated=False) as dsn:
        with pytest.raises(schema.SchemaError, match="aggregator db init"):
            run(call(dsn, schema.check_schema))
        assert run(call(dsn, schema.migrate)) == [version for version, *_ in schema.MIGRATIONS]
        assert run(call(dsn, schema.migrate)) == []  # idempotent
        assert run(call(dsn, schema.check_schema)) == schema.SCHEMA_VERSION
        fetch(dsn, "INSERT INTO schema_migrations (version, description) VALUES (99, 'from the future')")
        with pytest.raises(schema.SchemaError, match="newer than this aggregator knows"):
            run(call(dsn, schema.check_schema))
        with pytest.raises(schema.SchemaError, match="newer"):
            run(call(dsn, schema.migrate))


def test_migration_2_keeps_the_rollup_rows_of_a_version_1_store():
    """Version 1 kept the rollup in day leaves; version 2 moves their rows into one indexed table."""
    rows = [  # (submission_date, channel, version, date, metric, label, process, histogram, sum, count)
        (date(2026, 11, 1), "nightly", 146, date(2026, 10, 30), "GC_MS", "", "parent", [1, 2, 3], 7, 6),
        (date(2026, 11, 2), "beta", 145, date(2026, 10, 31), "GC_MS", "", "content", [0, 5, 0], 9, 5),
    ]

    async def version_1_store(conn: asyncpg.Connection) -> None:
        version, description, sql = schema.MIGRATIONS[0]
        await conn.execute(schema._LEDGER)
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)", version, description)
        for day in sorted({r[0] for r in rows}):
            await conn.execute(
                f"CREATE TABLE aggregates_all_build_id_{day:%Y%m%d} PARTITION OF aggregates_all_build_id "
                f"FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
            )
        await conn.executemany(
            """INSERT INTO aggregates_all (kind, submission_date, channel, version, date, metric, label, process,
                                           layout, histogram, sum, count)
               VALUES ('build_id', $1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10)""",
            rows,
        )

    with temporary_database(migrated=False) as dsn:
        run(call(dsn, version_1_store))
        assert run(call(dsn, schema.migrate)) == [2, 3, 4]
        stored = fetch(
            dsn,
            """SELECT submission_date, channel, version, date, metric, label, process, histogram, sum, count
               FROM aggregates_all ORDER BY submission_date""",
        )
        assert [tuple(r) for r in stored] == rows
        assert leaves(dsn) == []  # no partition of anything left behind
        indexes = fetch(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'aggregates_all' ORDER BY 1")
        assert [r["indexname"] for r in indexes] == ["aggregates_all_day", "aggregates_all_lookup"]


def test_migration_3_lists_the_filter_values_of_a_version_2_store(monkeypatch, capsys):
    """Version 3 adds catalog_lists, built from the catalog rows already there: `db init` migrates a store."""
    rows = [  # (kind, submission_date, channel, version, filter, value): values shared by days, and not
        ("build_id", date(2026, 11, 1), "nightly", 146, "metric", "GC_MS"),
        ("build_id", date(2026, 11, 2), "nightly", 146, "metric", "GC_MS"),
        ("build_id", date(2026, 11, 2), "nightly", 146, "metric", "A_MS"),
        ("submission_date", date(2026, 11, 1), "nightly", 146, "metric", "[[COUNT]]_Z"),
        ("build_id", date(2026, 11, 1), "nightly", 146, "os", "Linux,6.1"),
        ("build_id", date(2026, 11, 1), "beta", 145, "metric", "GC_MS"),
    ]

    async def version_2_store(conn: asyncpg.Connection) -> None:
        await conn.execute(schema._LEDGER)
        for version, description, sql in schema.MIGRATIONS[:2]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, description)
        await conn.copy_records_to_table("catalog_filters", records=rows)

    with temporary_database(migrated=False) as dsn:
        run(call(dsn, version_2_store))
        monkeypatch.setenv("DATABASE_URL", dsn)
        assert main(["db", "init"]) == 0
        assert "applied [3, 4]" in capsys.readouterr().out
        listed = fetch(dsn, 'SELECT channel, version, filter, "values" FROM catalog_lists ORDER BY 1, 2, 3')
        assert [tuple(r) for r in listed] == [
            ("beta", 145, "metric", ["GC_MS"]),
            ("nightly", 146, "metric", ["A_MS", "GC_MS", "[[COUNT]]_Z"]),
            ("nightly", 146, "os", ["Linux,6.1"]),
        ]


def test_published_sums_equal_the_reference(published, snapshot, corpus):
    assert_matches_reference(snapshot, reference(corpus.output, True))  # the snapshot is the reference ...
    for date_text in corpus.dates:
        for kind in KINDS:
            stored = stored_cells(published, kind, date_text)  # ... and the store is the snapshot
            assert stored == snapshot_cells(snapshot, kind, date_text), f"{kind} {date_text}"
            rollup = stored_rollup(published, kind, date_text)
            assert {k: v[:3] for k, v in rollup.items()} == reference_rollup(corpus, kind, date_text)
            clients = {k: (v[3], v[4]) for k, v in rollup.items() if v[3]}
            assert_clients_match(clients, reference_client_rollup(corpus, kind, date_text), f"rollup {kind}")
    assert (
        sorted(r["relname"] for r in fetch(published, "SELECT relname FROM pg_class WHERE relname LIKE 'stage%'")) == []
    )


def test_catalog_lists_what_was_published(published, corpus):
    expected = defaultdict(set)
    for date_text in corpus.dates:
        for kind in KINDS:
            for key in getattr(reference(corpus.output, True)[date_text], kind):
                channel, version = key[1], int(key[2])
                day = parse_day(key[3]) if kind == "build_id" else parse_day(date_text)
                expected[kind, "dates"].add((channel, version, day))
                expected[kind, "metric"].add((channel, version, key[-4]))
                expected[kind, "child"].add((channel, version, key[-2]))
                expected[kind, "os"].add((channel, version, f"{key[-6]},{key[-5]}"))
    for kind in KINDS:
        dates = fetch(published, "SELECT channel, version, date FROM catalog_dates WHERE kind = $1", kind)
        assert {tuple(r) for r in dates} == expected[kind, "dates"]
        for name in ("metric", "child", "os"):
            rows = fetch(
                published,
                "SELECT DISTINCT channel, version, value FROM catalog_filters WHERE kind = $1 AND filter = $2",
                kind,
                name,
            )
            assert {tuple(r) for r in rows} == expected[kind, name], name


def test_republishing_the_same_snapshot_changes_nothing(fresh, snapshot, corpus):
    publish_all(fresh, snapshot, corpus.dates)
    before, served = contents(fresh), fetch(fresh, "SELECT * FROM contributions ORDER BY 1, 2")
    again = publish_all(fresh, snapshot, corpus.dates)
    assert [p.action for p in again] == ["unchanged"] * 4
    assert contents(fresh) == before
    assert fetch(fresh, "SELECT * FROM contributions ORDER BY 1, 2") == served
    ledger = fetch(fresh, "SELECT action, count(*) FROM publishes GROUP BY action ORDER BY action")
    assert [tuple(r) for r in ledger] == [("published", 4), ("unchanged", 4)]


def test_rerun_replaces_its_day_and_build_ids_sum_their_days(fresh, snapshot, corpus, local_client, tmp_path):
    """Late data: day 1 first published from part of its files, then re-run whole. Day 2 is never touched, and
    each build-id aggregate is always the sum of the days' current contributions."""
    day1, day2 = corpus.dates
    partial = tmp_path / "partial"
    shutil.copytree(snapshot, partial)
    cfg = config(corpus, partial)
    cfg.inputs, cfg.dates = sorted(f for f in corpus.files if f"submission_date={day1}" in f)[:1], [day1]
    run_job(cfg, client=local_client, say=lambda *_: None)

    publish_all(fresh, str(partial), corpus.dates)
    day2_served = fetch(fresh, "SELECT kind, publish_id FROM contributions WHERE submission_date = $1", parse_day(day2))
    for kind in KINDS:
        assert stored_cells(fresh, kind, day1) == snapshot_cells(str(partial), kind, day1)
    assert build_id_totals(fresh) == reference_build_id_totals(partial_cells(str(partial), day1), corpus, day2)

    results = publish_all(fresh, snapshot, [day1, day2])
    assert [p.action for p in results] == ["published", "published", "unchanged", "unchanged"]
    assert (
        fetch(fresh, "SELECT kind, publish_id FROM contributions WHERE submission_date = $1", parse_day(day2))
        == day2_served
    )
    for kind in KINDS:
        assert stored_cells(fresh, kind, day1) == snapshot_cells(snapshot, kind, day1)
    assert build_id_totals(fresh) == reference_build_id_totals(partial_cells(snapshot, day1), corpus, day2)


def partial_cells(snapshot: str, date_text: str) -> dict[tuple, tuple]:
    """A day's build-id cells as published, keyed without the submission date (for summing days)."""
    return {(*k[1:-2], k[-1]): v for k, v in snapshot_cells(snapshot, "build_id", date_text).items()}


def reference_build_id_totals(day1: dict[tuple, tuple], corpus, day2: str) -> dict[tuple, tuple]:
    """Day 1 as published plus day 2 from the reference aggregation, summed per build-id cell."""
    cells = dict(day1)
    for k, v in reference(corpus.output, True)[day2].build_id.items():
        cells[(*k[1:-1], v[1], "day2")] = (v[2], v[3], v[4])
    return _summed(cells, lambda k: k[:-1] if k[-1] == "day2" else k)


def build_id_totals(dsn: str) -> dict[tuple, tuple]:
    """What the API answers for build ids: every contribution summed, per cell."""
    rows = fetch(
        dsn,
        """SELECT a.*, l.bounds FROM aggregates a JOIN layouts l ON l.id = a.layout WHERE a.kind = 'build_id'""",
    )
    columns = ("application", "architecture", "os", "os_version", "metric", "label", "process")

    def key(r: asyncpg.Record) -> tuple:
        build = (r["channel"], str(r["version"]), f"{r['date']:%Y%m%d}")
        return (*build, *(r[c] for c in columns), tuple(r["bounds"]), r["submission_date"])

    cells = {key(r): (tuple(r["histogram"]), r["sum"], r["count"]) for r in rows}
    return _summed(cells, lambda k: k[:-1])


def test_rebuild_equals_the_original_database(published, snapshot):
    with temporary_database(migrated=False) as dsn:
        results = run(call(dsn, rebuild_store, snapshot, say=lambda *_: None))
        assert {p.action for p in results} == {"published"}
        assert contents(dsn) == contents(published)
        assert leaves(dsn) == leaves(published)


def test_trim_drops_old_days_with_their_catalog(fresh, snapshot, corpus):
    day1, day2 = corpus.dates
    publish_all(fresh, snapshot, corpus.dates)
    before, tables = contents(fresh), leaves(fresh)
    planned = run(call(fresh, trim, parse_day(day2), dry_run=True))
    assert [(t.kind, f"{t.day:%Y%m%d}", t.state) for t in planned] == [(k, day1, "would trim") for k in KINDS]
    assert contents(fresh) == before and leaves(fresh) == tables

    started = time.perf_counter()
    done = run(call(fresh, trim, parse_day(day2)))
    assert time.perf_counter() - started < 5
    assert [t.state for t in done] == ["trimmed", "trimmed"]
    assert leaves(fresh) == [t for t in tables if not t.endswith(day1)]
    assert contents(fresh) == {k: v for k, v in before.items() if k[1] != parse_day(day1)}
    assert ("catalog_filters", parse_day(day2)) in before
    ledger = fetch(fresh, "SELECT kind, submission_date FROM publishes WHERE action = 'trimmed' ORDER BY kind")
    assert [tuple(r) for r in ledger] == [(k, parse_day(day1)) for k in KINDS]
    assert run(call(fresh, trim, parse_day(day2))) == []


def test_rollup_equals_rebuild_and_saturates(monkeypatch):
    """The rollup's numpy path (`np.add.at`, over slices of the buckets) gives what `rebuild` gives; near the
    int64 range it is `rebuild`."""
    layout = Layout("linear", (0, 1, 2))
    columns = ("submission_date", "channel", "version", "application", "architecture", "os", "os_version")
    dims = [("20261101", "nightly", "70", "Firefox", arch, "Linux", "5.4") for arch in ("x86", "x86-64")]
    metrics = [("A", "", "parent", layout), ("B", "k", "content", Layout("linear", (0, 1, 2, 3)))]

    def aggregate(value: int) -> Aggregate:
        offsets = np.array([0, 3, 7, 10, 14])
        step = 1 if value < 2**32 else 0  # distinct values, where they cannot overflow
        histogram = value + step * np.arange(14, dtype=np.int64)
        i32, i64 = np.array([0, 0, 1, 1], np.int32), value + step * np.arange(4, dtype=np.int64)
        return Aggregate(columns, dims, metrics, i32, np.array([0, 1, 0, 1], np.int32), offsets, i64, i64, histogram)

    def cells(a: Aggregate) -> dict:
        return {(d, *m[:3]): (tuple(c), s, n) for d, *m, c, s, n in a.cells()}

    for value, sliced in ((5, 4), (5, 1 << 18), (INT64_MAX - 1, 1 << 18)):
        monkeypatch.setattr(encode, "_SUM_BUCKETS", sliced)
        leaf = aggregate(value)
        summed = rollup(leaf)
        expected = rebuild([leaf], dimension_key=lambda d: d[:3], columns=columns[:3])
        assert cells(summed) == cells(expected)
    assert set(cells(summed).values()) == {
        ((INT64_MAX,) * 3, INT64_MAX, INT64_MAX),
        ((INT64_MAX,) * 4, INT64_MAX, INT64_MAX),
    }


def test_command_line_publishes_and_manages(fresh, snapshot, corpus, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", fresh)
    day1, day2 = corpus.dates
    publish_after_run(snapshot, corpus.dates, no_publish=True)
    assert fetch(fresh, "SELECT count(*) FROM contributions")[0][0] == 0
    assert main(["db", "init"]) == 0
    assert main(["publish", "--snapshot", snapshot, "--date", day1, "--kind", "build_id"]) == 0
    assert main(["publish", "--snapshot", snapshot, "--date", day1, "--date", day2]) == 0
    out = capsys.readouterr().out
    assert out.count("published") == 4 and out.count("unchanged") == 1
    assert main(["db", "status"]) == 0
    assert f"2 days {day1}..{day2}" in capsys.readouterr().out
    assert main(["db", "trim", "--keep-days", "0", "--base-date", day2, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("would trim") == 2
    assert main(["publish", "--snapshot", snapshot + "-missing", "--date", day1]) == 1
    assert "no build_id aggregates" in capsys.readouterr().err


def test_run_publishes_when_a_database_is_configured(fresh, corpus, tmp_path):
    day = corpus.dates[0]
    env = os.environ | {"DATABASE_URL": fresh}
    command = [sys.executable, "-m", "aggregator", "run", "--input", corpus.output, "--date", day]
    command += ["--snapshot", str(tmp_path / "snap"), "--definitions", corpus.histograms_definitions]
    done = subprocess.run(
        [*command, "--workers", "1", "--no-progress"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("published ") == 2
    for kind in KINDS:
        assert stored_cells(fresh, kind, day) == snapshot_cells(str(tmp_path / "snap"), kind, day)
    assert Path(tmp_path / "snap").exists()


# ---- failures and concurrency -------------------------------------------------------------------------------


def served(dsn: str) -> list[tuple]:
    """The ledger and what it serves: any publish, even a failed one that left a trace, changes this."""
    rows = fetch(dsn, "SELECT c.*, p.digest FROM contributions c JOIN publishes p ON p.id = c.publish_id ORDER BY 1, 2")
    return [tuple(r) for r in rows] + [tuple(r) for r in fetch(dsn, "SELECT id, action FROM publishes ORDER BY id")]


def assert_intact(dsn: str, snapshot: str, date_text: str, before: list[tuple]) -> None:
    assert served(dsn) == before
    for kind in KINDS:
        assert stored_cells(dsn, kind, date_text) == snapshot_cells(snapshot, kind, date_text)
    assert_no_leftovers(dsn)


def assert_no_leftovers(dsn: str) -> None:
    """No staging table, no advisory lock: nothing of an interrupted publish remains."""
    assert fetch(dsn, "SELECT relname FROM pg_class WHERE relname LIKE 'stage%'") == []
    here = "(SELECT oid FROM pg_database WHERE datname = current_database())"
    assert fetch(dsn, f"SELECT * FROM pg_locks WHERE locktype = 'advisory' AND database = {here}") == []


def wait_for_backends_to_leave(dsn: str, seconds: float = 30, application_name: str | None = None) -> None:
    """Until no other backend (of that application, if named) is connected to the database."""
    deadline = time.monotonic() + seconds
    sql = """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND ($1::text IS NULL OR application_name = $1)"""
    while fetch(dsn, sql, application_name)[0][0]:
        assert time.monotonic() < deadline, "a killed publish's backend lingers"
        time.sleep(0.1)


def test_publish_killed_mid_copy_leaves_the_old_data_served(fresh, snapshot, corpus, tmp_path):
    day = corpus.dates[0]
    publish_all(fresh, snapshot, [day])
    before = served(fresh)
    marker = tmp_path / "copying"
    # A rebuild publishes every run again, forced: the first one, build_id of the first day, is held in its COPY.
    with Publisher(["db", "rebuild", "--snapshot", snapshot], {"DATABASE_URL": fresh}, hold_in_copy=marker) as held:
        held.go()
        held.wait_until_held()
        copying = fetch(
            fresh, "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%'"
        )
        assert len(copying) == 1
    # killed as the block ends
    wait_for_backends_to_leave(fresh)
    assert_intact(fresh, snapshot, day, before)
    again = run(call(fresh, publish_run, snapshot, "build_id", day, force=True))
    assert again.action == "published"
    assert stored_cells(fresh, "build_id", day) == snapshot_cells(snapshot, "build_id", day)


def test_publish_whose_connection_drops_mid_copy_leaves_the_old_data_served(fresh, snapshot, corpus, monkeypatch):
    day = corpus.dates[0]
    publish_all(fresh, snapshot, [day])
    before = served(fresh)
    copying = asyncio.Event()
    chunks_of, sent_after = publish._chunks, []

    async def interrupted(conn, stream):
        chunks = chunks_of(conn, stream)
        for _ in range(2):
            yield await anext(chunks)
        copying.set()
        await asyncio.sleep(1)  # meanwhile the server ends the connection
        async for chunk in chunks:
            sent_after.append(chunk)
            yield chunk

    monkeypatch.setattr(publish, "_chunks", interrupted)

    async def scenario() -> None:
        victim, admin = await asyncpg.connect(fresh), await asyncpg.connect(fresh)
        try:
            attempt = asyncio.ensure_future(publish_run(victim, snapshot, "build_id", day, force=True))
            await copying.wait()
            await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await attempt
        finally:
            victim.terminate()
            await admin.close()

    run(scenario())
    assert sent_after == []  # the COPY stopped at the lost connection, not after encoding the rest of the day
    wait_for_backends_to_leave(fresh)
    assert_intact(fresh, snapshot, day, before)


def test_publishes_of_one_day_serialize_and_other_days_go_on(fresh, snapshot, corpus):
    day1, day2 = corpus.dates

    async def scenario() -> None:
        first, second, holder = [await asyncpg.connect(fresh) for _ in range(3)]
        try:
            both = await asyncio.gather(*(publish_run(c, snapshot, "build_id", day1) for c in (first, second)))
            assert sorted(p.action for p in both) == ["published", "unchanged"]
            await holder.execute("SELECT pg_advisory_lock($1, $2)", *day_lock("submission_date", parse_day(day1)))
            other = await asyncio.wait_for(publish_run(first, snapshot, "submission_date", day2), 60)
            assert other.action == "published"  # another day does not wait
            with pytest.raises(TimeoutError):  # the same day waits for the lock's holder
                await asyncio.wait_for(publish_run(second, snapshot, "submission_date", day1), 2)
            await holder.execute("SELECT pg_advisory_unlock_all()")
            done = await asyncio.wait_for(publish_run(first, snapshot, "submission_date", day1), 60)
            assert done.action == "published"
        finally:
            second.terminate()  # cancelled mid-query
            await first.close()
            await holder.close()

    run(scenario())
    for kind, date_text in (("build_id", day1), ("submission_date", day1), ("submission_date", day2)):
        assert stored_cells(fresh, kind, date_text) == snapshot_cells(snapshot, kind, date_text)
    actions = fetch(fresh, "SELECT kind, action FROM publishes ORDER BY id")
    assert [tuple(r) for r in actions] == [
        ("build_id", "published"),
        ("build_id", "unchanged"),
        ("submission_date", "published"),
        ("submission_date", "published"),
    ]


def test_connection_settings(monkeypatch):
    for name in ("DATABASE_URL", "DATABASE_RO_URL", "POSTGRES_HOST", "POSTGRES_RO_HOST", "POSTGRES_PASS"):
        monkeypatch.delenv(name, raising=False)
    assert connect_options() is None and connect_options(read_only=True) is None
    monkeypatch.setenv("POSTGRES_HOST", "db.example")
    monkeypatch.setenv("POSTGRES_PASS", "p@ss/word")
    monkeypatch.setenv("DATABASE_STATEMENT_CACHE_SIZE", "0")
    original = {"host": "db.example", "user": "root", "password": "p@ss/word", "database": "telemetry"}
    assert connect_options() == original | {"statement_cache_size": 0}
    monkeypatch.setenv("POSTGRES_RO_HOST", "replica.example")
    assert connect_options(read_only=True)["host"] == "replica.example"
    assert connect_options()["host"] == "db.example"
    monkeypatch.setenv("DATABASE_URL", "postgresql://job@rw/db")
    monkeypatch.setenv("DATABASE_RO_URL", "postgresql://api@ro/db")
    assert connect_options() == {"dsn": "postgresql://job@rw/db", "statement_cache_size": 0}
    assert connect_options(read_only=True)["dsn"] == "postgresql://api@ro/db"
