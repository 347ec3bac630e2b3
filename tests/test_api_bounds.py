"""A store flooded with metric names, and answers too large to serve, on a real Postgres: /filters/ lists every
name of a version holding 100,000 of them within the API's timeout (its lists are kept at publish time), the
lists equal the catalog's values through publishes, a re-run and a trim, a publish leaves statistics behind it,
and an answer past API_MAX_ANSWER_CELLS is a 400 that says how to narrow it while ordinary answers are served.

The stores are generated here: one dimension set, one row per metric and label, counts chosen by the test."""

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import numpy as np
import pytest
import pytest_asyncio

from aggregator.aggregate import KIND_COLUMNS, Aggregate
from aggregator.layouts import Layout
from aggregator.store import schema
from aggregator.store.encode import parse_day
from aggregator.store.publish import publish_aggregate
from aggregator.store.trim import trim
from server.app import create_app
from server.queries import KNOWN_METRIC
from tests.conftest import settings_for

NAMES = 100_000  # distinct metric names of the flooded version: 0.85 s of SQL for /filters/ before its lists
DAY = "20261101"
SMALL = Layout("linear", (0, 1, 2))
Cell = tuple[str, str, Layout, list[int]]  # metric, label, layout, counts


def aggregate(kind: str, day: str, cells: list[Cell], channel: str = "nightly", version: str = "146") -> Aggregate:
    """One dimension set of (kind, day) holding `cells`, one row each (parent process, sum 7, count 1)."""
    values = {"submission_date": day, "channel": channel, "version": version, "build_id": day}
    values |= {"application": "Firefox", "architecture": "x86-64", "os": "Linux", "os_version": "6.1"}
    metrics = sorted((name, label, "parent", layout) for name, label, layout, _ in cells)
    counts = {(name, label): c for name, label, _, c in cells}
    sizes = [len(counts[(name, label)]) for name, label, *_ in metrics]
    offsets = np.zeros(len(metrics) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    rows = len(metrics)
    return Aggregate(
        KIND_COLUMNS[kind],
        [tuple(values[c] for c in KIND_COLUMNS[kind])],
        metrics,
        np.zeros(rows, np.int32),
        np.arange(rows, dtype=np.int32),
        offsets,
        np.full(rows, 7, np.int64),
        np.ones(rows, np.int64),
        np.array([v for name, label, *_ in metrics for v in counts[(name, label)]], np.int64),
    )


async def publish(conn: asyncpg.Connection, kind: str, day: str, cells: list[Cell], run: str, **where) -> None:
    attrs = {"kind": kind, "submission_date": day, "digest": f"{run}-{kind}-{day}", "run_id": run}
    await publish_aggregate(conn, aggregate(kind, day, cells, **where), attrs, "generated")


async def on(url: str, body):
    conn = await asyncpg.connect(url)
    try:
        return await body(conn)
    finally:
        await conn.close()


# ---- a version flooded with names ------------------------------------------------------------------------------

FLOOD = [f"UNDEFINED_HISTOGRAM_{i:06d}" for i in range(NAMES)]
# Beside the flood, what /filters/ treats apart: a count histogram (listed without its prefix), a blacklisted
# metric (never listed), an auth-only one (listed to authenticated callers only), an ordinary one.
SPECIAL = ["[[COUNT]]_COUNTED_THING", "SEARCH_COUNTS", "SCALARS_TELEMETRY.EVENT_COUNTS", "GC_MS"]


@pytest.fixture(scope="module")
def flooded(scratch_database) -> Iterator[str]:
    """Both kinds of one day of nightly 146: 100,004 metric names, published by the store's real path."""
    url = scratch_database("ta_bounds_flood")
    cells = [(name, "", SMALL, [i % 5, 1, 0]) for i, name in enumerate(FLOOD + SPECIAL)]

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        for kind in schema.KINDS:
            await publish(conn, kind, DAY, cells, "flood")

    asyncio.run(on(url, body))
    return url


@pytest.mark.asyncio
async def test_filters_of_a_flooded_version_list_every_name_in_time(aiohttp_client, flooded):
    settings = settings_for(flooded)
    client = await aiohttp_client(create_app(settings))
    started = time.perf_counter()
    answer = await client.get("/filters/?channel=nightly&version=146")
    seconds = time.perf_counter() - started
    assert answer.status == 200
    listed = await answer.json()
    print(f"/filters/ with {NAMES + len(SPECIAL)} names: {seconds * 1000:.0f} ms, first request")
    assert seconds < settings.statement_timeout_ms / 1000
    assert listed == {
        "metric": sorted([*FLOOD, "COUNTED_THING", "GC_MS"]),
        "application": ["Firefox"],
        "architecture": ["x86-64"],
        "os": ["Linux,6.1"],
        "child": ["parent"],
    }
    assert (await client.get("/filters/?channel=nightly&version=145")).status == 404


def test_a_publish_leaves_statistics_for_the_planner(flooded):
    async def body(conn: asyncpg.Connection) -> None:
        columns = {
            (r["tablename"], r["attname"])
            for r in await conn.fetch(
                "SELECT tablename, attname FROM pg_stats WHERE tablename = ANY($1::text[])",
                [
                    "catalog_filters",
                    "aggregates_all",
                    f"aggregates_build_id_{DAY}",
                    f"aggregates_submission_date_{DAY}",
                ],
            )
        }
        assert ("catalog_filters", "value") in columns
        for table in ("aggregates_all", f"aggregates_build_id_{DAY}", f"aggregates_submission_date_{DAY}"):
            assert (table, "metric") in columns, table
            assert (table, "histogram") not in columns, table  # never a condition: not sampled
        counted = await conn.fetchval("SELECT count(*) FROM catalog_filters")
        estimated = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'catalog_filters'")
        assert counted == 2 * (NAMES + len(SPECIAL) + 4)  # two kinds; a metric, application, architecture, os, child
        assert abs(estimated - counted) <= 0.05 * counted
        # What an unknown metric's 404 asks: an index probe, where without statistics it read every catalog row.
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {KNOWN_METRIC}", "nightly", 146, ["NOPE"]))
        assert "Seq Scan on catalog_filters" not in plan, plan

    asyncio.run(on(flooded, body))


# ---- the lists through publishes, a re-run and a trim ---------------------------------------------------------


async def lists(conn: asyncpg.Connection) -> dict[tuple[str, int, str], list[str]]:
    rows = await conn.fetch('SELECT channel, version, filter, "values" FROM catalog_lists')
    return {(r["channel"], r["version"], r["filter"]): r["values"] for r in rows}


async def catalog_values(conn: asyncpg.Connection) -> dict[tuple[str, int, str], list[str]]:
    """What the lists must be: catalog_filters' distinct values, sorted as Python sorts."""
    rows = await conn.fetch("SELECT DISTINCT channel, version, filter, value FROM catalog_filters")
    out: dict[tuple[str, int, str], list[str]] = {}
    for r in rows:
        out.setdefault((r["channel"], r["version"], r["filter"]), []).append(r["value"])
    return {key: sorted(values) for key, values in out.items()}


def test_lists_follow_publishes_a_rerun_and_a_trim(scratch_database):
    url = scratch_database("ta_bounds_lists")
    day1, day2 = "20261101", "20261102"

    def named(*names: str) -> list[Cell]:
        return [(name, "", SMALL, [1, 0, 0]) for name in names]

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)

        async def metrics() -> dict[tuple[str, int], list[str]]:
            found = await lists(conn)
            assert found == await catalog_values(conn)
            return {key[:2]: values for key, values in found.items() if key[2] == "metric"}

        await publish(conn, "build_id", day1, named("A", "B", "C"), "1")
        await publish(conn, "submission_date", day1, named("X"), "1", channel="beta", version="145")
        await publish(conn, "build_id", day2, named("C", "D"), "2")
        assert await metrics() == {("nightly", 146): ["A", "B", "C", "D"], ("beta", 145): ["X"]}
        await publish(conn, "build_id", day1, named("A"), "1b")  # a re-run: B is gone, C is still day 2's
        assert await metrics() == {("nightly", 146): ["A", "C", "D"], ("beta", 145): ["X"]}
        await publish(conn, "submission_date", day1, named("E"), "1c")  # beta's only day, now nightly's
        assert await metrics() == {("nightly", 146): ["A", "C", "D", "E"]}
        assert (await lists(conn))[("nightly", 146, "os")] == ["Linux,6.1"]
        trimmed = await trim(conn, parse_day(day2))
        assert [t.state for t in trimmed] == ["trimmed", "trimmed"]
        assert await metrics() == {("nightly", 146): ["C", "D"]}
        await publish(conn, "build_id", day2, named(), "2b")  # a day without metrics: the lists go
        assert await metrics() == {}

    asyncio.run(on(url, body))


# ---- answers past the bound -------------------------------------------------------------------------------------

LABELS, BUCKETS = 40, 600  # the wide keyed histogram: 24,000 bucket counts for one date
WIDE = Layout("linear", tuple(range(BUCKETS)))
BOUND = 10_000


def wide_counts(label: int) -> list[int]:
    return [(label * 31 + b) % 7 for b in range(BUCKETS)]


@pytest.fixture(scope="module")
def wide(scratch_database) -> str:
    url = scratch_database("ta_bounds_wide")
    cells = [("WIDE_KEYED", f"label{i:03d}", WIDE, wide_counts(i)) for i in range(LABELS)]
    cells.append(("GC_MS", "", SMALL, [3, 4, 5]))

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        await publish(conn, "submission_date", DAY, cells, "wide")

    asyncio.run(on(url, body))
    return url


@pytest_asyncio.fixture
async def bounded_client(aiohttp_client, wide, monkeypatch):
    monkeypatch.setenv("API_MAX_ANSWER_CELLS", str(BOUND))
    return await aiohttp_client(create_app(settings_for(wide)))


PATH = f"/aggregates_by/submission_date/channels/nightly/?version=146&dates={DAY}"


@pytest.mark.asyncio
@pytest.mark.parametrize("filters", ["", "&os=Linux"])  # the rollup and the leaves
async def test_an_answer_past_the_bound_is_a_400_that_says_how_to_narrow(bounded_client, filters):
    answer = await bounded_client.get(f"{PATH}&metric=WIDE_KEYED{filters}")
    assert answer.status == 400
    assert answer.content_type == "application/json"
    body = await answer.json()
    assert body["code"] == "answer_too_large"
    for words in (f"{LABELS * BUCKETS:,} bucket counts", "1 date,", f"{LABELS} labels", f"{BOUND:,}", "label="):
        assert words in body["description"], (words, body)


@pytest.mark.asyncio
async def test_answers_within_the_bound_are_served(bounded_client):
    answer = await bounded_client.get(f"{PATH}&metric=WIDE_KEYED&label=label003&label=label017")
    assert answer.status == 200
    data = (await answer.json())["data"]
    assert [(e["label"], e["histogram"], e["sum"], e["count"]) for e in data] == [
        ("label003", wide_counts(3), 7, 1),
        ("label017", wide_counts(17), 7, 1),
    ]
    ordinary = await (await bounded_client.get(f"{PATH}&metric=GC_MS")).json()
    assert ordinary["data"] == [{"date": DAY, "label": "", "histogram": [3, 4, 5], "count": 1, "sum": 7}]
    assert (await bounded_client.get(f"{PATH}&metric=NOT_THERE")).status == 404
