"""The API under load as it is deployed, and through a Postgres outage.

`python -m server` (default settings, a pool of 10 and a 5 s statement timeout, but a response cache of
CACHE_BYTES, so that it fills within the run) serves a generated
month published on a Postgres server of the tests' own (tests/postgres.py). bench/load.py's load generator runs
64 concurrent clients on 127.0.0.1 with a mix of the routes clients call: listings, /filters/, metric answers
for 1 and for 30 dates with and without filters, the health checks. Midway, Postgres is stopped as if it
crashed (`pg_ctl stop -m immediate`) and started again after a while. Checked:

- before the outage, every answer is a 200 (or a JSON 404 where a drawn metric has no data for the drawn
  dates and filters); during it, only JSON 503s for what needs the database; never a 500, never a request
  lasting longer than the statement timeout allows;
- after Postgres is back, the same server process recovers by itself within a few seconds, and every later
  request succeeds; the crash lost nothing that was published;
- its memory (RSS, sampled) stays under a bound and stops growing once the response cache is full.

The route draws are seeded (the seed is printed; RELIABILITY_SEED=<seed> replays them). Figures from the long
variant are in docs/reliability.md.
"""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from bench.load import build_month, publish, run_load, start_server, summary, wait_for
from tests.test_store import fetch

CLIENTS = 64
STATEMENT_TIMEOUT = 5.0  # seconds: the server's default (API_STATEMENT_TIMEOUT_MS)
LEDGER_POLL = 1.0  # seconds: the server's default (API_LEDGER_POLL_SECONDS); a cached answer may live this long
RECOVERY = 3.0  # seconds after Postgres accepts connections again, by which every request succeeds
RSS_BOUND = 400 * 2**20  # bytes
CACHE_BYTES = 4 * 2**20  # the default (64 MiB) takes longer to fill than the short run lasts
NEEDS_NO_DATABASE = ("/status", "/__lbheartbeat__", "/__ready__")
STORED = """SELECT (SELECT count(*) FROM contributions) AS contributions, (SELECT max(id) FROM publishes) AS ledger,
                   (SELECT count(*) FROM aggregates) AS rows, (SELECT count(*) FROM aggregates_all) AS rollup_rows"""


@dataclass
class Request:
    path: str
    started: float  # seconds since the load began
    seconds: float
    status: int | str  # the HTTP status, or the client-side exception's name
    error: dict | None  # an error answer's JSON body (None: no error, or not a JSON object)


@dataclass
class Outage:
    stopping: float  # seconds since the load began: the stop was asked for
    down: float  # Postgres has stopped
    starting: float  # its start was asked for
    up: float  # it accepts connections again (it may have a little before: pg_ctl polls)


async def route_mix(base: str, session: aiohttp.ClientSession, draw: random.Random):
    """A function drawing the next path: the routes telemetry.js and the dashboards call, with the channels,
    versions, dates, metrics and filter values the API lists."""
    listings, choices = [], []
    for kind in ("build_id", "submission_date"):
        listings.append(f"/aggregates_by/{kind}/channels/")
        async with session.get(f"{base}/aggregates_by/{kind}/channels/") as answer:
            channels = await answer.json()
        for channel in channels:
            listings.append(f"/aggregates_by/{kind}/channels/{channel}/dates/")
            async with session.get(f"{base}{listings[-1]}") as answer:
                dated = await answer.json()
            for version in sorted({d["version"] for d in dated}):
                dates = sorted(d["date"] for d in dated if d["version"] == version)
                filters_path = f"/filters/?channel={channel}&version={version}"
                async with session.get(f"{base}{filters_path}") as answer:
                    if answer.status != 200:
                        continue
                    options = await answer.json()
                listings.append(filters_path)
                choices.append((f"/aggregates_by/{kind}/channels/{channel}/?version={version}", dates, options))
    assert len(choices) >= 4

    def metric(days: int, filtered: bool) -> str:
        path, dates, options = draw.choice(choices)
        start = draw.randrange(max(1, len(dates) - days + 1))
        query = f"{path}&metric={draw.choice(options['metric'])}&dates={','.join(dates[start : start + days])}"
        if filtered:
            query += (
                f"&os={draw.choice(options['os']).split(',')[0]}&architecture={draw.choice(options['architecture'])}"
            )
            query += f"&child={draw.choice(options['child'])}"
        return query

    kinds = [  # (weight, path maker)
        (2, lambda: draw.choice(listings)),
        (4, lambda: metric(1, False)),
        (2, lambda: metric(30, False)),
        (2, lambda: metric(1, True)),
        (1, lambda: metric(30, True)),
        (1, lambda: draw.choice(("/status", "/__heartbeat__", "/__lbheartbeat__", "/__ready__"))),
    ]
    makers = [maker for weight, maker in kinds for _ in range(weight)]
    return lambda: draw.choice(makers)()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def load_with_outage(base: str, pid: int, postgres, seconds: float, outage_at: float, outage: float, seed: int):
    """The load for `seconds`, Postgres down from `outage_at` for `outage` seconds; every request, the RSS
    samples (seconds, bytes) and the outage's times."""
    requests: list[Request] = []
    samples: list[tuple[float, int]] = []
    times: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_for(base)
        next_path = await route_mix(base, session, random.Random(seed))
        began = time.monotonic()

        async def call() -> None:
            path = next_path()
            started = time.monotonic()
            status, error = "", None
            try:
                async with session.get(base + path) as answer:
                    status, body = answer.status, await answer.read()
                    if status >= 400 and answer.content_type == "application/json":
                        error = orjson.loads(body)
            except (aiohttp.ClientError, TimeoutError) as failure:
                status = type(failure).__name__
            requests.append(Request(path, started - began, time.monotonic() - started, status, error))

        async def sample() -> None:
            while time.monotonic() - began < seconds:
                samples.append((time.monotonic() - began, rss(pid)))
                await asyncio.sleep(0.25)

        async def break_postgres() -> None:
            await asyncio.sleep(outage_at)
            times["stopping"] = time.monotonic() - began
            await asyncio.to_thread(postgres.stop, "immediate")
            times["down"] = time.monotonic() - began
            await asyncio.sleep(outage)
            times["starting"] = time.monotonic() - began
            await asyncio.to_thread(postgres.start)  # returns once Postgres accepts connections
            times["up"] = time.monotonic() - began

        await asyncio.gather(run_load(call, CLIENTS, seconds=seconds), sample(), break_postgres())
    return requests, samples, Outage(**times)


@pytest.mark.parametrize(
    ("pings", "days", "seconds", "outage"),
    [(400, 10, 10, 3), pytest.param(3000, 30, 60, 10, marks=pytest.mark.reliability)],
)
def test_load_and_a_postgres_outage(private_postgres, local_client, tmp_path, seed, pings, days, seconds, outage):
    snapshot, dates = build_month(tmp_path, pings, days, client=local_client)
    url = private_postgres.create_database("ta_load")
    asyncio.run(publish(url, snapshot, dates))
    stored = fetch(url, STORED)
    assert stored[0]["contributions"] == 2 * days
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server, base = start_server(url, {"API_CACHE_BYTES": str(CACHE_BYTES)}, output)
    try:
        outage_at = seconds * 0.3
        requests, samples, down = asyncio.run(
            load_with_outage(base, server.pid, private_postgres, seconds, outage_at, outage, seed)
        )
        assert server.poll() is None  # the same process served throughout
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # and still stops gracefully
    report(requests, samples, down, seconds)
    assert fetch(url, STORED) == stored  # the crash lost nothing that was published
    text = log.read_text()
    assert "unhandled error" not in text  # what a 500 logs
    assert text.count("database unavailable") <= seconds / 10 + 1  # a warning every 10 s, not one per request

    statuses = Counter(r.status for r in requests)
    assert set(statuses) <= {200, 404, 503}, statuses  # no 500, no other error, no client-side failure
    for r in requests:  # errors are JSON: {"code", "description"}, or dockerflow's answer for the health check
        if r.status in (404, 503):
            assert r.error is not None and ({"code", "description"} <= r.error.keys() or r.error["status"] == "error")
    assert max(r.seconds for r in requests) < STATEMENT_TIMEOUT + 1, "a request hung"
    before = [r for r in requests if r.started + r.seconds < down.stopping]
    assert {r.status for r in before} <= {200, 404} and len(before) > CLIENTS
    assert all(r.status == 200 for r in before if "metric=" not in r.path)  # only a drawn metric may lack data
    during = [r for r in requests if r.started > down.down + LEDGER_POLL and r.started + r.seconds < down.starting]
    assert during, "no request while Postgres was down"
    for r in during:  # the health check fails; a data answer still in the response cache is served, others 503
        allowed = {200} if r.path in NEEDS_NO_DATABASE else {503} if r.path == "/__heartbeat__" else {200, 503}
        assert r.status in allowed, r
    assert any(r.status == 503 for r in during)
    failed_after = [r.started + r.seconds for r in requests if r.started >= down.up and r.status not in (200, 404)]
    recovery = max(failed_after, default=down.up) - down.up
    assert recovery < RECOVERY, f"the API still failed {recovery:.1f} s after Postgres was back"
    assert len([r for r in requests if r.started > down.up + recovery]) > CLIENTS  # and then all succeeded

    quarters = rss_by_quarter(samples, seconds)
    assert max(quarters) < RSS_BOUND, f"RSS peaked at {max(quarters) / 2**20:.0f} MiB"
    assert quarters[3] <= quarters[1] * 1.1 + 8 * 2**20, f"RSS still growing: {quarters}"  # once warmed up


def rss_by_quarter(samples: list[tuple[float, int]], seconds: float) -> list[int]:
    """The highest RSS sampled in each quarter of the run."""
    return [max(b for t, b in samples if q <= 4 * t / seconds < q + 1) for q in range(4)]


def report(requests: list[Request], samples: list[tuple[float, int]], down: Outage, seconds: float) -> None:
    """The figures docs/reliability.md quotes."""
    statuses = Counter(r.status for r in requests)
    p50, p99, rate = summary([r.seconds for r in requests if r.started + r.seconds < down.stopping], down.stopping)
    during = Counter(r.status for r in requests if down.stopping <= r.started < down.up)
    recovery = [r.started + r.seconds - down.up for r in requests if r.started >= down.up and r.status == 503]
    print(
        f"{len(requests)} requests in {seconds} s, statuses {dict(sorted(statuses.items(), key=str))}; "
        f"before the outage {rate:.0f} requests/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
        f"Postgres down {down.stopping:.1f}-{down.up:.1f} s: statuses {dict(during)}, "
        f"last 503 {max(recovery, default=0):.2f} s after it was back; "
        f"slowest request {max(r.seconds for r in requests):.2f} s; "
        f"RSS peak by quarter of the run {[round(b / 2**20) for b in rss_by_quarter(samples, seconds)]} MiB"
    )
