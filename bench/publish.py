"""Benchmark of publishing: one realistic day of build-id aggregates published into Postgres, beside a bare
binary `COPY ... FROM STDIN` of the same rows, and the retention of one day. Writes its figures, with the
machine's, to a markdown file.

    python bench/publish.py --rows 500000 --output docs/benchmarks.md

The day is synthesized with numpy (no pings): dimension sets of 3 channels x 2 versions x 8 build dates x
3 architectures x 12 os versions, of very unequal popularity, each with a random subset of 1,000 metrics of 20
to 100 buckets. The bare COPY sends the same rows as the publish writes (leaf and rollup), already encoded,
into plain tables without index: what no publish can beat. Publish is timed whole, from the Aggregate in
memory, on one connection: rollup, encoding, COPY into the staging table then its index, the day's rollup rows
replaced (in the rollup table, with its indexes), catalog, ledger and swap. They alternate, best of --repeat,
each after a CHECKPOINT (untimed: 430 MiB of WAL a job, and a job would otherwise write out the pages dirtied by
the one before it, whichever it is), so the ratio holds on a noisy machine. It needs a Postgres server
(`--dsn`, default the local one, as a role that may CHECKPOINT: a superuser or a member of pg_checkpoint) and
creates, then drops, a database of its own.
"""

import argparse
import asyncio
import io
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
from report import machine, write_section  # bench/report.py, beside this file

from aggregator.aggregate import BUILD_ID_COLUMNS, Aggregate
from aggregator.layouts import Layout
from aggregator.store.encode import Contribution, copy_columns
from aggregator.store.publish import publish_aggregate
from aggregator.store.schema import LEAF_INDEX, ROLLUP_INDEXES, migrate
from aggregator.store.trim import trim

DAY = date(2026, 11, 1)


def synthetic_day(rows: int, day: date, seed: int = 0) -> Aggregate:
    """About `rows` cells of one submission date, shaped like the real ones: many dimension sets of very
    unequal popularity (the popular ones report most metrics, the long tail a few), most buckets zero."""
    rng = np.random.default_rng(seed)
    systems = [("Windows_NT", v) for v in ("6.1", "6.2", "6.3", "10.0")]
    systems += [("Darwin", str(v)) for v in range(15, 20)] + [("Linux", v) for v in ("3.1", "4.1", "5.4")]
    dimensions = [
        (f"{day:%Y%m%d}", channel, str(version), f"{day - timedelta(days=b):%Y%m%d}", "Firefox", arch, *system)
        for channel, newest in (("beta", 71), ("nightly", 72), ("release", 70))
        for version in (newest - 1, newest)
        for b in range(8)
        for arch in ("x86", "x86-64", "aarch64")
        for system in systems
    ]
    layouts = [
        Layout("exponential", tuple(sorted({0, *rng.choice(10**6, n - 1, replace=False).tolist()})))
        for n in rng.integers(20, 101, 40)
    ]
    metrics = [
        (f"METRIC_{i:04d}", f"key{i % 7}" if i % 10 == 0 else "", ("parent", "content")[i % 2], layouts[i % 40])
        for i in range(1000)
    ]
    popularity = 1 / np.arange(1, len(dimensions) + 1) ** 0.5
    rng.shuffle(popularity)
    scale = rows / (popularity.sum() * len(metrics))
    while np.minimum(1, popularity * scale).sum() * len(metrics) < rows:  # the popular sets are full
        scale *= 1.05
    share = np.minimum(1, popularity * scale)
    present = rng.random((len(dimensions), len(metrics))) < share[:, None]
    row_dimension, row_metric = (a.astype(np.int32) for a in np.nonzero(present))
    sizes = np.array([len(m[3].bounds) for m in metrics], dtype=np.int64)[row_metric]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    histogram = rng.integers(0, 1000, int(offsets[-1])) * (rng.random(int(offsets[-1])) < 0.3)
    counts = np.add.reduceat(histogram, offsets[:-1])
    sums = counts * rng.integers(1, 500, len(counts))
    return Aggregate(BUILD_ID_COLUMNS, dimensions, metrics, row_dimension, row_metric, offsets, sums, counts, histogram)


async def best_of(repeat: int, settle: Callable[[], Awaitable], *jobs: Callable[[], Awaitable]) -> list[float]:
    """Best wall time of each job, the jobs alternating so that they share the machine's moods; `settle` runs
    untimed before each."""
    best = [float("inf")] * len(jobs)
    for _ in range(repeat):
        for i, job in enumerate(jobs):
            await settle()
            started = time.perf_counter()
            await job()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def attrs_of(day: date) -> dict:
    token = secrets.token_hex(8)
    return {"kind": "build_id", "submission_date": f"{day:%Y%m%d}", "run_id": f"bench-{token}", "digest": token}


async def bare_copy(
    conn: asyncpg.Connection, leaf: bytes, rollup: bytes, columns: tuple[tuple[str, ...], ...], indexed: bool = False
) -> None:
    """The same rows as a publish writes (leaf and rollup), already encoded, into plain tables (`indexed`:
    with the leaf's and the rollup's indexes, to show what they cost)."""
    tables = (
        ("aggregates", "aggregates_build_id", leaf, columns[0], [LEAF_INDEX]),
        ("aggregates_all", "aggregates_all", rollup, columns[1], list(ROLLUP_INDEXES.values())),
    )
    for table, like, data, columns, indexes in tables:
        await conn.execute(f"DROP TABLE IF EXISTS bare_{table}; CREATE TABLE bare_{table} (LIKE {like})")
        for index in indexes if indexed else ():
            await conn.execute(f"CREATE INDEX ON bare_{table} {index}")
        await conn.copy_to_table(f"bare_{table}", source=io.BytesIO(data), columns=columns, format="binary")


async def run(args: argparse.Namespace) -> str:
    aggregate = synthetic_day(args.rows, DAY)
    buckets = int(aggregate.row_offset[-1])
    contribution = Contribution.of(aggregate, "build_id", DAY)
    contribution.derive()
    layout_ids = {layout: 1 for layout in contribution.layouts()}
    leaf, rollup = (b"".join(contribution.copy_stream(a, layout_ids)) for a in (aggregate, contribution.rollup))
    columns = (copy_columns(aggregate), copy_columns(contribution.rollup))
    name = f"ta_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(args.dsn, database=name)
        try:
            await migrate(conn)
            load = os.getloadavg()[0]
            bare_s, indexed_s, publish_s = await best_of(
                args.repeat,
                lambda: conn.execute("CHECKPOINT"),  # no job writes out the pages the one before it dirtied
                lambda: bare_copy(conn, leaf, rollup, columns),
                lambda: bare_copy(conn, leaf, rollup, columns, indexed=True),
                lambda: publish_aggregate(conn, aggregate, attrs_of(DAY), "bench"),
            )
            older = DAY - timedelta(days=1)
            await publish_aggregate(conn, aggregate, attrs_of(older), "bench")
            size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('aggregates_build_id_20261101'))")
            started = time.perf_counter()
            trimmed = await trim(conn, DAY)
            trim_s = time.perf_counter() - started
            assert [(t.day, t.state) for t in trimmed] == [(older, "trimmed")], trimmed
            server = await conn.fetchval("SHOW server_version")
            autovacuum = await conn.fetchval("SHOW autovacuum")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    rows, mib = len(aggregate) + len(contribution.rollup), (len(leaf) + len(rollup)) / 2**20
    leaf_rows, rollup_rows = len(aggregate), len(contribution.rollup)
    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine('numpy', 'asyncpg')}; PostgreSQL {server} "
            "on the same machine, "
            f"autovacuum {autovacuum}, other settings default; load average {load:.1f} when it started.",
            "",
            f"One synthetic day of build-id aggregates (`python bench/publish.py --rows {args.rows}`): "
            f"{leaf_rows:,} rows of {buckets / leaf_rows:.0f} buckets on average ({buckets:,} buckets) and "
            f"their {rollup_rows:,} rollup rows, {mib:.0f} MiB of binary COPY data; the leaf takes {size} on "
            "disk with its index.",
            "",
            f"| {rows:,} rows (leaf and rollup), best of {args.repeat}, each after a CHECKPOINT | seconds | rows/s "
            "| vs bare COPY |",
            "|---|---|---|---|",
            f"| bare binary `COPY ... FROM STDIN` of the same rows, encoded beforehand, into plain tables | "
            f"{bare_s:.2f} | {rows / bare_s:,.0f} | 1.00 |",
            f"| the same, into tables with the leaf's and the rollup's indexes (what they cost) | {indexed_s:.2f} | "
            f"{rows / indexed_s:,.0f} | {bare_s / indexed_s:.2f} |",
            f"| publish (one connection): rollup, encoding, COPY into the staging table then its index, the rollup's "
            "rows, catalog, ledger, swap | "
            f"{publish_s:.2f} | {rows / publish_s:,.0f} | {bare_s / publish_s:.2f} |",
            "",
            f"Retention: `db trim` of one day ({leaf_rows:,} + {rollup_rows:,} rows) took {trim_s * 1000:.0f} ms.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", help="markdown file to write the figures into")
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.output:
        write_section(Path(args.output), "bench/publish.py", "Publishing into Postgres (`make bench-publish`)", text)


if __name__ == "__main__":
    main()
