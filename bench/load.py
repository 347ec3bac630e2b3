"""What the API benchmark (bench/api.py) and the load tests (tests/test_load_outage.py) share: a generated month
published into Postgres, the service started as an operator starts it, and a load generator on 127.0.0.1.

Imports nothing from beside it, so that the tests can import it as `bench.load`.
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

import aiohttp
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


async def wait_for(base: str, session: aiohttp.ClientSession) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/__lbheartbeat__") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
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
