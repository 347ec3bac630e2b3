"""What the API benchmark (bench/api.py) and the load tests (tests/test_load_outage.py) share: a generated month
published into Postgres, the service started as an operator starts it, and a load generator on 127.0.0.1.

The load shares the machine's cores with the service and Postgres, so it costs as little as it can: one
kept-alive connection per client, a request written as one buffer, the answer read by its Content-Length or
its chunks (as `wrk` does), about a fifth of the CPU of a full client library per request. Imports nothing
from beside it, so that the tests can import it as `bench.load`.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import asyncpg
from distributed import Client, LocalCluster

from aggregator.generate import generate_corpus
from aggregator.job import JobConfig, run_job
from aggregator.snapshot import list_dates
from aggregator.store import schema
from aggregator.store.publish import publish_dates

CHANNELS = ["nightly", "beta", "release"]


def build_month(workdir: Path, pings: int, days: int = 30, client: Client | None = None) -> tuple[str, list[str]]:
    """The snapshot of `days` generated submission dates (reused when the workdir already has it), aggregated on
    `client`, else on a LocalCluster of its own."""
    snapshot = workdir / f"snapshot-{pings}x{days}"
    corpus = generate_corpus(str(workdir / f"month-{pings}x{days}"), pings=pings, days=days, seed=7, files_per_day=2)
    if len(list_dates(str(snapshot))) != 2 * days:
        with ExitStack() as stack:
            if client is None:
                cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0"))
                client = stack.enter_context(Client(cluster))
            config = JobConfig(
                inputs=[corpus.output],
                snapshot=str(snapshot.resolve()),
                dates=corpus.dates,
                definitions=corpus.histograms_definitions,
                scalar_definitions=corpus.scalars_definitions,
                channels=CHANNELS,
                progress=False,
            )
            run_job(config, client=client, say=lambda *_: None)
    return str(snapshot.resolve()), corpus.dates


async def publish(url: str, snapshot: str, dates: list[str]) -> float:
    """Migrate, publish every (kind, date) of `dates`; the seconds it took."""
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        await schema.migrate(conn)
        await publish_dates(conn, snapshot, dates, schema.KINDS, say=lambda *_: None)
    finally:
        await conn.close()
    return time.perf_counter() - started


GET = "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\nUser-Agent: bench\r\n\r\n"


class HttpConnection:
    """One kept-alive connection; `get` answers (status, body). Bodies are gzip bytes when the server chose so."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(GET.format(path=path, host=self.host).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, closing = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                chunked = value.strip().lower() == b"chunked"
            elif name.lower() == b"connection":
                closing = value.strip().lower() == b"close"
        body = await self._chunks(reader) if chunked else await reader.readexactly(length)
        if closing:
            self.close()
        return status, body

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        """A chunked body (the API sends large answers in pieces as it encodes them)."""
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers are sent: the last chunk's empty line
        return b"".join(chunks)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class HttpClient:
    """Kept-alive connections to one server, each used by one request at a time (as a browser's pool)."""

    def __init__(self, base: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        self._idle: list[HttpConnection] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else HttpConnection(self.host, self.port)
        try:
            answer = await connection.get(path)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


async def run_load(
    call: Callable[[], Awaitable[None]], clients: int, requests: int | None = None, seconds: float | None = None
) -> tuple[list[float], float]:
    """`call` from `clients` concurrent loops, `requests` times in all or for `seconds`; each call's latency, and
    the wall time."""
    latencies: list[float] = []
    remaining = requests if requests is not None else float("inf")
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            begun = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(loop() for _ in range(clients)))
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], wall: float) -> tuple[float, float, float]:
    """p50 and p99 in ms, and requests per second."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered) / wall


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(base: str) -> None:
    """Until the server at `base` answers its load-balancer heartbeat."""
    client = HttpClient(base)
    try:
        for _ in range(200):
            try:
                if (await client.get("/__lbheartbeat__"))[0] == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError("the server did not start")


def start_server(url: str, settings: dict[str, str], output=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """`python -m server` on a free port of 127.0.0.1 with the database `url` and these settings; the process
    and its base URL. `output` receives its log."""
    port = free_port()
    env = os.environ | {"DATABASE_URL": url, "DATABASE_RO_URL": url, **settings}
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}"
