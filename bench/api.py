"""Benchmark of the HTTP API: a published month, a load generator on 127.0.0.1 at 1 and 32 concurrent
clients, and beside each route the bare SQL that yields the same answer (histograms summed in Postgres).

    python bench/api.py --output docs/benchmarks.md

The month: 30 submission dates of generated pings (3 channels, their 2 versions each, the matching build ids)
aggregated by the job on a LocalCluster and published by the store into a database of its own. The service
runs as `python -m server` with its response cache off, so every metric request reaches Postgres; the listing
routes answer from the catalog it loads once per publish (server/catalog.py), which that setting leaves on. The
load generator and the bare SQL run in this process. Server, Postgres and load share the machine's cores. The
bare SQL takes its connections through the service's own first-come-first-served turns (server/queries.py), so
that at 32 clients both sides queue alike and the p50s compare the work, not two queueing orders.
"""

import argparse
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import uvloop
from load import CHANNELS, HttpClient, build_month, publish, run_load, start_server, summary, wait_for
from report import machine, write_section  # bench/load.py and bench/report.py, beside this file

from server import queries
from server.app import keep_session
from server.queries import Reader

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYED = "IPC_READ_MAIN_THREAD_LATENCY_MS"  # 50 labels
METRIC = "GC_MS"
CACHE_ON = 64 * 2**20  # API_CACHE_BYTES' default

# The listing answers as a query each: the bare-SQL baseline of the listing routes (which the service answers
# from its catalog, server/catalog.py, loaded once per publish).
CHANNELS_SQL = "SELECT DISTINCT channel FROM catalog_dates WHERE kind = $1 ORDER BY channel"
DATES_SQL = """SELECT DISTINCT version, date FROM catalog_dates WHERE kind = $1 AND channel = $2
ORDER BY date DESC, version DESC"""

# The metric answer computed entirely in Postgres: the bare-SQL baseline of the metric routes.
SQL_SUM = """
WITH cells AS ({cells}),
buckets AS (SELECT date, label, i, sum(v)::bigint AS v
            FROM cells, unnest(histogram) WITH ORDINALITY AS u(v, i) GROUP BY date, label, i),
totals AS (SELECT date, label, sum(sum)::bigint AS sum, sum(count)::bigint AS count FROM cells GROUP BY date, label)
SELECT t.date, t.label, array_agg(b.v ORDER BY b.i) AS histogram, t.sum, t.count
FROM totals t JOIN buckets b USING (date, label) GROUP BY t.date, t.label, t.sum, t.count"""
ROLLUP_CELLS = """SELECT date, label, histogram, sum, count FROM aggregates_all
WHERE kind = $1 AND channel = $2 AND version = $3 AND metric = $4 AND date = ANY($5::date[])"""
FILTERED_CELLS = """SELECT date, label, histogram, sum, count FROM aggregates
WHERE kind = $1 AND channel = $2 AND version = $3 AND metric = $4 AND date = ANY($5::date[])
  AND os = ANY($6::text[]) AND architecture = ANY($7::text[]) AND process = ANY($8::text[])"""


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def scenarios(pool: asyncpg.Pool) -> list[tuple[str, str, str, tuple]]:
    """(name, API path, bare SQL, its arguments) for the nightly channel's newest version."""
    version = await pool.fetchval(  # the nightly version with the most submission dates
        "SELECT version FROM catalog_dates WHERE kind = 'submission_date' AND channel = 'nightly' "
        "GROUP BY version ORDER BY count(*) DESC, version DESC LIMIT 1"
    )
    rows = await pool.fetch(
        "SELECT DISTINCT date FROM catalog_dates WHERE kind = 'submission_date' AND channel = 'nightly' "
        "AND version = $1 ORDER BY date DESC LIMIT 30",
        version,
    )
    dates = [r["date"] for r in rows]
    text = ",".join(f"{d:%Y%m%d}" for d in dates)
    base = f"/aggregates_by/submission_date/channels/nightly/?version={version}&dates={text}"
    key = ("submission_date", "nightly", version)
    filters = (["Linux", "Windows_NT"], ["x86-64"], ["parent"])
    return [
        ("channels", "/aggregates_by/submission_date/channels/", CHANNELS_SQL, ("submission_date",)),
        ("dates", "/aggregates_by/submission_date/channels/nightly/dates/", DATES_SQL, key[:2]),
        ("filters", f"/filters/?channel=nightly&version={version}", queries.FILTERS, ("nightly", version)),
        (
            f"{len(dates)}-date histogram, no filter",
            f"{base}&metric={METRIC}",
            SQL_SUM.format(cells=ROLLUP_CELLS),
            (*key, METRIC, dates),
        ),
        (
            f"{len(dates)}-date histogram, 3 filters",
            f"{base}&metric={METRIC}&os=Linux&os=Windows_NT&architecture=x86-64&child=parent",
            SQL_SUM.format(cells=FILTERED_CELLS),
            (*key, METRIC, dates, *filters),
        ),
        (
            f"keyed, 50 labels, {len(dates)} dates",
            f"{base}&metric={KEYED}",
            SQL_SUM.format(cells=ROLLUP_CELLS),
            (*key, KEYED, dates),
        ),
    ]


async def measure(url: str, seconds: float, only: list[str]) -> list[str]:
    """Each scenario through the service (cache off) and as bare SQL; then the unfiltered histogram with the
    response cache on, which is what repeated dashboard requests get. `only`: the scenarios whose name
    begins with one of these (all when empty)."""
    servers = {size: start_server(url, {"API_CACHE_BYTES": str(size)}) for size in (0, CACHE_ON)}
    http = {size: HttpClient(base) for size, (_, base) in servers.items()}
    rows = []
    try:
        async with asyncpg.create_pool(  # planned and reset as the service's pool (server/app.py)
            url,
            min_size=10,
            max_size=10,
            reset=keep_session,
            server_settings={"plan_cache_mode": "force_generic_plan"},
        ) as pool:
            reader = Reader(pool, acquire_timeout=30, max_answer_cells=0)  # its turns only: no answer read
            for _, base in servers.values():
                await wait_for(base)
            runs = [(name, http[0], path, sql, args) for name, path, sql, args in await scenarios(pool)]
            name, _, path, sql, args = runs[3]
            runs.append((f"{name}, response cache on", http[CACHE_ON], path, sql, args))
            runs = [run for run in runs if not only or run[0].startswith(tuple(only))]
            for name, client, path, sql, args in runs:

                async def api(client=client, path=path) -> None:
                    status, _ = await client.get(path)
                    assert status == 200, (status, path)

                async def bare(sql=sql, args=args) -> None:
                    async with reader.connection() as conn:
                        assert await conn.fetch(sql, *args)

                for call in (api, bare):  # warm up: plans, caches, connections
                    await run_load(call, 8, 40)
                for clients in (1, 32):  # a fixed time: thousands of answers whatever the rate (a fast answer's
                    # few hundred requests last a few milliseconds, within one whim of the scheduler)
                    a50, a99, arate = summary(*await run_load(api, clients, seconds=seconds))
                    s50, s99, srate = summary(*await run_load(bare, clients, seconds=seconds))
                    rows.append(
                        f"| {name} | {clients} | {a50:.1f} / {a99:.1f} | {arate:,.0f} | {s50:.1f} / {s99:.1f} | "
                        f"{srate:,.0f} | {a50 / s50:.2f} |"
                    )
    finally:
        for client in http.values():
            client.close()
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    return rows


async def bench(args: argparse.Namespace, snapshot: str, dates: list[str]) -> tuple[list[str], dict]:
    name = f"ta_bench_api_{secrets.token_hex(4)}"
    await admin(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        seconds = await publish(url, snapshot, dates)
        conn = await asyncpg.connect(url)
        facts = dict(
            await conn.fetchrow(
                """SELECT (SELECT count(*) FROM aggregates) AS rows, (SELECT count(*) FROM aggregates_all) AS rollup,
                          (SELECT count(DISTINCT metric) FROM aggregates) AS metrics,
                          (SELECT count(DISTINCT (channel, version)) FROM catalog_dates) AS versions,
                          (SELECT count(DISTINCT date) FROM catalog_dates WHERE kind = 'build_id') AS builds"""
            )
        )
        await conn.close()
        facts["publish_seconds"] = seconds
        return await measure(url, args.seconds, args.only), facts
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=3000, help="pings over the 30 days")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of load per scenario and client count")
    parser.add_argument("--workdir", default=".bench")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only the scenarios whose name begins with NAME (repeatable), e.g. --only channels --only 30-date",
    )
    parser.add_argument("--output", help="markdown file to write the figures into")
    args = parser.parse_args()
    if args.only and args.output:
        parser.error("--output records every scenario: run it without --only")
    workdir = Path(args.workdir)
    workdir.mkdir(exist_ok=True)
    snapshot, dates = build_month(workdir, args.pings)
    load, host = os.getloadavg()[0], machine("aiohttp", "asyncpg")
    rows, facts = uvloop.run(bench(args, snapshot, dates))  # the service's loop, for the load too
    text = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {host}; load average {load:.1f} when it began "
            "(other work on the machine shares its cores and its Postgres).",
            "",
            f"Data: {args.pings} generated pings over 30 submission dates (`--channels {','.join(CHANNELS)}`), "
            f"{facts['versions']} channel/versions, {facts['builds']} build ids, {facts['metrics']} metrics: "
            f"{facts['rows']:,} rows and {facts['rollup']:,} rollup rows, published in "
            f"{facts['publish_seconds']:.1f} s.",
            "Service: `python -m server`, response cache off (`API_CACHE_BYTES=0`) unless the row says otherwise, "
            "default pool (10); channels, dates and filters answered from its catalog, loaded once per publish. "
            "Bare SQL: the same answer computed in Postgres (histograms summed with `unnest ... GROUP BY`), "
            "through an asyncpg pool of 10 in the load process, its connections handed out first come, first served "
            "as the service's (server/queries.py). Load: bench/load.py's client, one kept-alive connection per "
            f"client; {args.seconds:g} s at 1 and at 32 clients, per scenario and after a warm-up. Latencies in ms, "
            "p50 / p99.",
            "",
            "| route | clients | API p50 / p99 | API req/s | bare SQL p50 / p99 | SQL q/s | API / SQL (p50) |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    if args.output:
        write_section(Path(args.output), "bench/api.py", "The HTTP API (`bench/api.py`)", text)


if __name__ == "__main__":
    main()
