"""The service under pressure, each case against the real service (`python -m server`, or the app on a socket):
slow clients over real sockets, the connection limit, a cache-fill attack with the RSS measured, concurrent large
answers beside a small request, clients of large answers that stop reading or leave, the limit on requests in
flight, readiness while Postgres is stopped, and 304 only for what exists.

The data is generated here: a wide keyed histogram (100 labels of 5,000 buckets on each of two days, so an
answer for both days holds a million bucket counts, about 4 MB of JSON) and a small histogram, published by the
store's real path; for `make reliability`, the same histogram on twelve days with larger counts (59 MB of JSON
an answer). The figures printed are those docs/reliability.md quotes ("Service under pressure").
"""

import asyncio
import contextlib
import gzip
import hashlib
import socket
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import numpy as np
import orjson
import pytest

from aggregator.layouts import Layout
from aggregator.settings import SETTINGS
from aggregator.store import schema
from bench.load import start_server, wait_for
from server.app import create_app
from server.keys import METRICS
from tests.conftest import settings_for
from tests.test_api_bounds import on, publish
from tests.test_load_outage import rss

DAYS = ("20261101", "20261102")
LABELS, BUCKETS = 100, 5000
WIDE = Layout("linear", tuple(range(BUCKETS)))
SMALL = Layout("linear", (0, 1, 2))
CHART_MEMORY = 512 * 2**20  # the chart's memory limit for the API (deploy/helm/.../values.yaml)
DEFAULT_CACHE_BYTES = int(next(s.default for s in SETTINGS if s.name == "API_CACHE_BYTES"))
NIGHTLY = "/aggregates_by/submission_date/channels/nightly/?version=146"


def counts(day: int, label: int, high: int) -> np.ndarray:
    """Counts under `high` that gzip does not flatten, different per day and label."""
    return np.random.default_rng(day * 1000 + label).integers(0, high, BUCKETS)


def wide_counts(day: int, label: int) -> list[int]:
    return counts(day, label, 1000).tolist()


@pytest.fixture(scope="module")
def wide(scratch_database) -> str:
    url = scratch_database("ta_pressure")

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        for d, day in enumerate(DAYS):
            cells = [("WIDE", f"l{i:03d}", WIDE, wide_counts(d, i)) for i in range(LABELS)]
            cells.append(("GC_MS", "", SMALL, [3, 4, 5]))
            await publish(conn, "submission_date", day, cells, f"wide{d}")

    asyncio.run(on(url, body))
    return url


@contextlib.contextmanager
def served(url: str, tmp_path, **settings: str) -> Iterator[tuple[str, int]]:
    """`python -m server` with these settings: its base URL and pid; it must stop gracefully."""
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server, base = start_server(url, settings, output)
    try:
        asyncio.run(wait_for(base))
        yield base, server.pid
        assert server.poll() is None, log.read_text()[-2000:]
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert "unhandled error" not in log.read_text()


def metric_path(metric: str, *dates: str) -> str:
    return f"{NIGHTLY}&metric={metric}&dates={','.join(dates)}"


# ---- slow clients and the connection limit, over raw sockets ----------------------------------------------------

HEAD_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = 1.0, 1.0, 40
# A request head as large as aiohttp parses (a 64 KiB line limit, 128 fields of 8 KiB), never finished.
BIG_PARTIAL_HEAD = b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"".join(
    f"X-Pad-{i}: {'a' * 8000}\r\n".encode() for i in range(120)
)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading what it sends meanwhile), or None if it did not."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - started
    return None


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def status_of(port: int) -> bytes:
    with connect(port) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(65536).split(b"\r\n", 1)[0]


def test_slow_clients_are_closed_and_connections_are_bounded(wide, tmp_path):
    settings = {
        "API_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "API_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "API_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with served(wide, tmp_path, **settings) as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        at_rest = rss(pid)
        held = [connect(port) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in held:
                sock.sendall(BIG_PARTIAL_HEAD)
            time.sleep(0.3)
            holding = rss(pid)
            # Past the limit a connection is closed as soon as it is accepted, before it is read.
            with connect(port) as extra:
                extra.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                refused_after = closed_within(extra, 2)
            assert refused_after is not None, "a connection past the limit was served"
            # Each held connection is closed at the head's deadline, counted from when it opened.
            closes = [closed_within(sock, HEAD_TIMEOUT + 3) for sock in held]
        finally:
            for sock in held:
                sock.close()
        assert all(c is not None for c in closes), closes
        assert status_of(port) == b"HTTP/1.1 200 OK"  # and the server takes connections again

        # Bytes trickling in do not push the deadline back.
        with connect(port) as trickle:
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for byte in b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    trickle.sendall(bytes([byte]))
                    time.sleep(0.1)
            trickled = time.monotonic() - started
        assert trickled < HEAD_TIMEOUT + 2, f"a trickled head was read for {trickled:.1f} s"

        # A body (no route takes one) trickled after its answer is read no longer than the body deadline.
        with connect(port) as slow_body:
            slow_body.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
            answer = slow_body.recv(65536)
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for _ in range(100):
                    slow_body.sendall(b"a")
                    time.sleep(0.1)
            body_held = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:100]
        assert body_held < BODY_TIMEOUT + 2, f"a trickled body was read for {body_held:.1f} s"
    print(
        f"{MAX_CONNECTIONS} connections each holding a {len(BIG_PARTIAL_HEAD) / 2**20:.2f} MiB partial head: RSS "
        f"{at_rest / 2**20:.0f} → {holding / 2**20:.0f} MiB ({(holding - at_rest) / MAX_CONNECTIONS / 2**20:.2f} MiB "
        f"each); closed {min(closes):.2f}-{max(closes):.2f} s after the wait began (deadline {HEAD_TIMEOUT} s); one "
        f"past the limit closed after {refused_after * 1000:.0f} ms; a trickled head held {trickled:.1f} s, a "
        f"trickled body {body_held:.1f} s"
    )


# ---- a cache-fill attack -----------------------------------------------------------------------------------------

FILL_REQUESTS = 60  # each a distinct answer of 2.9 MB (JSON and gzip; one day of WIDE and a day without data)
FILL_CLIENTS = 4


def test_a_cache_fill_attack_stays_under_the_memory_limit(wide, tmp_path):
    """One caller varies a date without data, so every answer is a new cache entry of the same few MB."""

    async def attack(base: str, pid: int) -> tuple[list[int], float, int]:
        samples = [rss(pid)]
        started = time.monotonic()
        async with aiohttp.ClientSession(headers={"Accept-Encoding": "gzip"}) as session:

            async def ask(n: int) -> None:
                empty_day = f"2025{1 + n // 28:02d}{1 + n % 28:02d}"
                async with session.get(base + metric_path("WIDE", DAYS[0], empty_day)) as answer:
                    assert answer.status == 200
                    data = orjson.loads(await answer.read())["data"]
                assert [e["histogram"] for e in data[:2]] == [wide_counts(0, 0), wide_counts(0, 1)]
                samples.append(rss(pid))

            for first in range(0, FILL_REQUESTS, FILL_CLIENTS):
                await asyncio.gather(*(ask(n) for n in range(first, first + FILL_CLIENTS)))
            async with session.get(base + "/metrics") as answer:
                exposition = await answer.text()
        cached = next(line for line in exposition.splitlines() if line.startswith("api_cache_bytes "))
        return samples, time.monotonic() - started, int(float(cached.split()[1]))

    with served(wide, tmp_path) as (base, pid):
        samples, seconds, cached = asyncio.run(attack(base, pid))
    half = len(samples) // 2
    print(
        f"cache fill: {FILL_REQUESTS} distinct answers in {seconds:.1f} s; RSS {samples[0] / 2**20:.0f} MiB at rest, "
        f"peak {max(samples) / 2**20:.0f} MiB (first half {max(samples[:half]) / 2**20:.0f}, second half "
        f"{max(samples[half:]) / 2**20:.0f}); cache charged {cached / 2**20:.1f} MiB of "
        f"{DEFAULT_CACHE_BYTES / 2**20:.0f}"
    )
    assert cached <= DEFAULT_CACHE_BYTES
    assert max(samples) < CHART_MEMORY, f"RSS peaked at {max(samples) / 2**20:.0f} MiB"
    assert max(samples[half:]) <= max(samples[:half]) + 32 * 2**20, "RSS still growing once the cache was full"


# ---- large answers beside a small one ---------------------------------------------------------------------------

BIG_ANSWERS = 20  # concurrent, cache off, each a distinct request
# Clients asking in loops for the small answer, and for the liveness probe: several, so that the p99 is more than
# the one or two slowest requests.
SMALL_CLIENTS = {"answer": 2, "liveness": 1}
MIN_SAMPLES = 20  # of each; under 100 the p99 is the slowest request, stricter still
HUGE_P99_BOUND = 0.1  # seconds: the target for the small answer and the liveness probe beside them
WIDE_P99_BOUND = 0.25  # seconds: under `make test`; see the test's docstring
HUGE_DAYS = tuple(f"202611{d:02d}" for d in range(1, 13))
HUGE_HIGH = 10**9  # counts of up to nine digits: 6 million bucket counts are 59 MB of JSON


@pytest.fixture(scope="module")
def huge(scratch_database) -> str:
    """WIDE on 12 days, counts of up to nine digits: an answer for all of them holds 6 million bucket counts,
    59 MB of JSON. Besides it the small histogram."""
    url = scratch_database("ta_pressure_huge")

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        for d, day in enumerate(HUGE_DAYS):
            cells = [("WIDE", f"l{i:03d}", WIDE, counts(d, i, HUGE_HIGH).tolist()) for i in range(LABELS)]
            cells.append(("GC_MS", "", SMALL, [3, 4, 5]))
            await publish(conn, "submission_date", day, cells, f"huge{d}")

    asyncio.run(on(url, body))
    return url


def expected_answer(days: tuple[str, ...], high: int) -> bytes:
    """The JSON of WIDE on `days`, made here: every label of every day, one row each (sum 7, count 1)."""
    data = [
        {"date": day, "label": f"l{i:03d}", "histogram": counts(d, i, high), "count": 1, "sum": 7}
        for d, day in enumerate(days)
        for i in range(LABELS)
    ]
    payload = {"buckets": list(range(BUCKETS)), "kind": "linear", "description": "", "data": data}
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class Pressure:
    small: dict[str, list[float]]  # the small answer's and the liveness probe's latencies
    bigs: list[float]  # each large answer's time
    digests: set[str]  # of the large answers' bodies (gzip)
    first: bytes  # one of them
    wall: float  # until the last large answer was read
    rss: list[int]  # the server's, sampled every 50 ms


async def big_beside_small(base: str, pid: int, days: tuple[str, ...]) -> Pressure:
    """BIG_ANSWERS large answers at once (gzip, as browsers ask), while SMALL_CLIENTS ask for a small answer and
    for the liveness probe in loops. The large answers are hashed as they arrive, not decompressed: the clients
    share the machine's two cores with the server and Postgres."""
    small: dict[str, list[float]] = {"answer": [], "liveness": []}
    samples: list[int] = []
    done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:

        async def big(n: int) -> tuple[float, str, bytes]:
            started, digest, kept = time.monotonic(), hashlib.sha256(), bytearray()
            empty_day = f"202501{n + 1:02d}"  # each a distinct answer
            path = metric_path("WIDE", *days, empty_day)
            async with session.get(base + path, headers={"Accept-Encoding": "gzip"}) as answer:
                assert answer.status == 200 and answer.headers["Content-Encoding"] == "gzip"
                async for chunk in answer.content.iter_chunked(2**20):
                    digest.update(chunk)
                    if n == 0:
                        kept += chunk
            return time.monotonic() - started, digest.hexdigest(), bytes(kept)

        async def small_loop(what: str, path: str, expected: bytes) -> None:
            while not done.is_set():
                started = time.monotonic()
                async with session.get(base + path) as answer:
                    assert answer.status == 200
                    assert expected in await answer.read()
                small[what].append(time.monotonic() - started)
                await asyncio.sleep(0.01)

        async def sample() -> None:
            while not done.is_set():
                samples.append(rss(pid))
                await asyncio.sleep(0.05)

        asks = {
            "answer": (metric_path("GC_MS", DAYS[0]), b'"histogram":[3,4,5]'),
            "liveness": ("/__lbheartbeat__", b""),
        }
        looping = [asyncio.create_task(sample())] + [
            asyncio.create_task(small_loop(what, *asks[what])) for what, n in SMALL_CLIENTS.items() for _ in range(n)
        ]
        await asyncio.sleep(0.2)
        started = time.monotonic()

        bigs = await asyncio.gather(*(big(n) for n in range(BIG_ANSWERS)))
        wall = time.monotonic() - started
        done.set()
        await asyncio.gather(*looping)
    return Pressure(small, [b[0] for b in bigs], {b[1] for b in bigs}, bigs[0][2], wall, samples)


def percentile(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p / 100))]


@pytest.mark.parametrize(
    "case",
    [
        "wide",
        pytest.param("huge", marks=pytest.mark.reliability),
        pytest.param("inline", marks=pytest.mark.reliability),
    ],
)
def test_large_answers_do_not_stall_a_small_one(request, tmp_path, case):
    """BIG_ANSWERS concurrent large answers, with the default settings but the cache off, beside a small answer
    and the liveness probe asked in loops; every large answer is the bytes of the whole answer, and the RSS stays
    under the chart's limit.

    `huge` (`make reliability`) is the issue's case: 6 million bucket counts an answer, 59 MB of JSON, and both
    p99s under its 100 ms (HUGE_P99_BOUND). `wide` (`make test`) is shorter: 1 million bucket counts an answer,
    3.9 MB, and both p99s under WIDE_P99_BOUND, 250 ms. On the 2-core development machine its p99s were 6-56 ms
    quiet and 23-82 ms with two busy processes beside it, while the same answers summed and encoded on the event
    loop (`inline`: API_OFFLOAD_CELLS past any answer, the original fault) gave 643 ms quiet and 1,406 ms loaded.
    250 ms is three times the worst of the first and under half the best of the second: CI's noise does not fail
    the test, and the fault does. `inline` (`make reliability`) asserts the latter."""
    url = request.getfixturevalue("huge" if case == "huge" else "wide")
    days, high = (HUGE_DAYS, HUGE_HIGH) if case == "huge" else (DAYS, 1000)
    settings = {"API_CACHE_BYTES": "0"} | ({"API_OFFLOAD_CELLS": str(10**12)} if case == "inline" else {})
    with served(url, tmp_path, **settings) as (base, pid):
        run = asyncio.run(big_beside_small(base, pid, days))
    expected = expected_answer(days, high)
    figures = "; ".join(
        f"{len(times)} {what} requests, p50 {statistics.median(times) * 1000:.0f} ms, p99 "
        f"{percentile(times, 99) * 1000:.0f} ms, slowest {max(times) * 1000:.0f} ms"
        for what, times in run.small.items()
    )
    print(
        f"{case}: {BIG_ANSWERS} concurrent answers of {len(days) * LABELS * BUCKETS:,} bucket counts "
        f"({len(expected) / 1e6:.1f} MB of JSON, {len(run.first) / 1e6:.1f} MB gzipped) each, in "
        f"{min(run.bigs):.1f}-{max(run.bigs):.1f} s, "
        f"{len(run.bigs) * len(expected) / 1e6 / run.wall:.0f} MB of JSON a second ({run.wall:.1f} s); beside "
        f"them {figures}; RSS {run.rss[0] / 2**20:.0f} MiB at rest, peak {max(run.rss) / 2**20:.0f} MiB"
    )
    assert len(run.digests) == 1 and gzip.decompress(run.first) == expected
    assert all(len(times) >= MIN_SAMPLES for times in run.small.values())
    p99 = max(percentile(times, 99) for times in run.small.values())
    if case == "inline":
        assert p99 > WIDE_P99_BOUND, figures
        return
    assert p99 < (HUGE_P99_BOUND if case == "huge" else WIDE_P99_BOUND), figures
    assert max(run.rss) < CHART_MEMORY, f"RSS peaked at {max(run.rss) / 2**20:.0f} MiB"


# ---- clients of large answers that stop reading or leave ---------------------------------------------------------


def test_a_client_that_stops_reading_passes_its_turn_on(wide, tmp_path):
    """Large answers one at a time (API_ANSWER_BUDGET_CELLS=1): a client that takes none of its answer is
    disconnected after API_SEND_TIMEOUT_SECONDS, one that left while its answer waited is not answered (499 in
    /metrics), and the answer queued behind them is sent whole, once the stalled client is disconnected: no
    sooner than API_SEND_TIMEOUT_SECONDS after it asked."""
    settings = {"API_SEND_TIMEOUT_SECONDS": "1", "API_ANSWER_BUDGET_CELLS": "1", "API_CACHE_BYTES": "0"}
    request = "GET {} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
    with served(wide, tmp_path, **settings) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server must wait
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(request.format(metric_path("WIDE", *DAYS)).encode())
        asked = time.monotonic()
        time.sleep(0.5)
        with connect(port) as quitter:
            quitter.sendall(request.format(metric_path("WIDE", *DAYS, "20250101")).encode())
            time.sleep(0.5)  # the server has it waiting for its turn
        with urllib.request.urlopen(base + metric_path("WIDE", *DAYS, "20250102"), timeout=30) as answer:
            body = answer.read()
        answered = time.monotonic() - asked
        with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
            exposition = answer.read().decode()
        with stalled:
            closed = closed_within(stalled, 5)
    assert body == expected_answer(DAYS, 1000)
    assert closed is not None, "the client that stopped reading is still connected"
    assert 1 < answered < 15, f"the queued answer came {answered:.1f} s after the stalled client asked"
    gone = [line for line in exposition.splitlines() if line.startswith("api_request_duration_seconds_count")]
    assert any('status="499"' in line and line.endswith(" 1.0") for line in gone), gone


# ---- the limit on requests in flight ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_past_the_in_flight_limit_a_request_gets_a_503_at_once(aiohttp_client, wide):
    client = await aiohttp_client(create_app(settings_for(wide, max_in_flight=2, cache_bytes=0)))
    in_flight = client.server.app[METRICS].gauges["api_requests_in_flight"][1]
    locker = await asyncpg.connect(wide)
    try:
        async with locker.transaction():  # the queries wait on this lock: two requests stay in flight
            await locker.execute("LOCK TABLE aggregates_all IN ACCESS EXCLUSIVE MODE")
            held = [asyncio.create_task(client.get(metric_path("GC_MS", day))) for day in DAYS]
            for _ in range(100):
                if in_flight() == 2:
                    break
                await asyncio.sleep(0.02)
            assert in_flight() == 2
            started = time.monotonic()
            refused = await client.get(metric_path("GC_MS", *DAYS))
            seconds = time.monotonic() - started
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["code"] == "overloaded"
            assert seconds < 1, f"the 503 took {seconds:.2f} s"
            for probe in ("/__lbheartbeat__", "/__ready__"):  # the probes are exempt
                assert (await client.get(probe)).status == 200
        answers = await asyncio.gather(*held)
    finally:
        await locker.close()
    assert [a.status for a in answers] == [200, 200]  # the held requests finish once the lock is gone
    assert (await client.get(metric_path("GC_MS", *DAYS))).status == 200


# ---- readiness without the database ------------------------------------------------------------------------------


@pytest.fixture
def small_on_private(private_postgres) -> str:
    """One day of a small histogram on the private Postgres server, which the test stops."""
    url = private_postgres.create_database("ta_ready")

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        await publish(conn, "submission_date", DAYS[0], [("GC_MS", "", SMALL, [3, 4, 5])], "ready")

    asyncio.run(on(url, body))
    return url


@pytest.mark.asyncio
async def test_readiness_does_not_depend_on_the_database(aiohttp_client, private_postgres, small_on_private):
    client = await aiohttp_client(create_app(settings_for(small_on_private, ledger_poll_seconds=3600)))
    cached = metric_path("GC_MS", DAYS[0])
    listing = "/aggregates_by/submission_date/channels/"
    for path in (cached, listing):
        assert (await client.get(path)).status == 200
    await asyncio.to_thread(private_postgres.stop, "fast")
    try:
        ready = await client.get("/__ready__")
        assert ready.status == 200 and await ready.json() == {"status": "ok"}
        assert (await client.get("/__lbheartbeat__")).status == 200
        assert (await client.get("/__heartbeat__")).status == 503  # the full health check still says it
        assert (await client.get(cached)).status == 200  # the response cache answers
        assert await (await client.get(listing)).json() == ["nightly"]  # and the listings
        uncached = await client.get(metric_path("GC_MS", DAYS[0], DAYS[1]))
        assert uncached.status == 503 and uncached.headers["Retry-After"]
    finally:
        await asyncio.to_thread(private_postgres.start)


# ---- 304 only for what exists -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_304_only_for_an_answer_that_exists(aiohttp_client, wide):
    client = await aiohttp_client(create_app(settings_for(wide)))
    first = await client.get(metric_path("GC_MS", DAYS[0]))
    assert first.status == 200
    etag = first.headers["ETag"]
    revalidate = {"If-None-Match": etag}
    assert (await client.get(metric_path("GC_MS", DAYS[0]), headers=revalidate)).status == 304
    assert (await client.get(metric_path("GC_MS", DAYS[1]), headers=revalidate)).status == 304  # exists, not cached
    for missing in (metric_path("NOT_A_METRIC", DAYS[0]), metric_path("GC_MS", "20250101")):
        answer = await client.get(missing, headers=revalidate)
        assert answer.status == 404, missing
        assert (await answer.json())["code"] == "not_found"
    unknown_version = await client.get("/filters/?channel=nightly&version=145", headers=revalidate)
    assert unknown_version.status == 404
