"""Shared fixtures: a generated corpus, a LocalCluster, a separately started scheduler and workers, the corpus
published in a database (and served on a socket), and the reference aggregation the API's answers are checked
with."""

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from distributed import Client, LocalCluster

from aggregator.generate import GenerateSummary, generate_corpus
from aggregator.job import run_job
from aggregator.store.schema import KINDS
from bench.load import publish
from server.app import create_app
from server.config import ServerSettings
from server.serving import start
from tests.postgres import PrivatePostgres
from tests.reference import Reference

FILTER_COLUMNS = {"application": 4, "architecture": 5, "os": 6, "osVersion": 7}  # positions in a record of `cells`
DASK = str(Path(sys.executable).with_name("dask"))  # the `dask` command an operator runs
# Where tests create their own databases (scripts/ensure-postgres.sh starts a server there).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> GenerateSummary:
    """Two days of generated pings, malformed lines included."""
    return generate_corpus(
        str(tmp_path_factory.mktemp("corpus")),
        pings=400,
        days=2,
        seed=11,
        files_per_day=3,
        malformed_fraction=0.03,
    )


@pytest.fixture(scope="session")
def local_client() -> Iterator[Client]:
    """A LocalCluster of two worker processes, as `aggregator run` starts by default."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.1)


@dataclass
class Cluster:
    """A separately started `dask scheduler` and its `dask worker` processes (each a nanny and its worker)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


@contextlib.contextmanager
def start_cluster(folder: Path, workers: int = 2) -> Iterator[Cluster]:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, started as an operator would; ended on exit."""
    scheduler_file = str(folder / "scheduler.json")
    local = ["--host", "127.0.0.1", "--dashboard-address", ":0"]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [DASK, *args, *local], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    processes = [start("scheduler", "--port", "0", "--scheduler-file", scheduler_file)]
    try:
        _wait_for(Path(scheduler_file))
        processes += [
            start("worker", "--scheduler-file", scheduler_file, "--nworkers", "1", "--nthreads", "1")
            for _ in range(workers)
        ]
        with Client(scheduler_file=scheduler_file) as client:
            client.wait_for_workers(workers, timeout=60)
            address = client.scheduler.address
        yield Cluster(address, processes[0], processes[1:])
    finally:  # the workers first: one whose scheduler is gone waits seconds for it before it stops
        for group in (processes[1:], processes[:1]):
            for process in group:
                process.terminate()
            for process in group:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a worker that lost its scheduler may not stop on its own
                    process.kill()
                    process.wait()


@pytest.fixture(scope="session")
def external_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, started as an operator would; started once
    (a worker killed by a test is restarted by its nanny)."""
    with start_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.address


@pytest.fixture(scope="session")
def snapshot(corpus: GenerateSummary, local_client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corpus aggregated by the job on the LocalCluster: the snapshot the API's and the store's tests publish."""
    from tests.test_job import config  # the job tests' configuration of a corpus run

    path = tmp_path_factory.mktemp("snapshot") / "snap"
    run_job(config(corpus, path), client=local_client, say=lambda *_: None)
    return str(path)


@contextlib.contextmanager
def databases() -> Iterator[Callable[[str], str]]:
    """Creates databases named `<prefix>_<random>` (other developers' tests run at the same time) and drops
    them on exit; each call returns the new database's URL."""
    made: list[str] = []

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def make(prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    try:
        yield make
    finally:
        for name in made:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def scratch_database() -> Iterator[Callable[[str], str]]:
    """Databases of the module's own (see `databases`), dropped when the module is done."""
    with databases() as make:
        yield make


# ---- the corpus served: published by the store's real path into a database of its own -------------------


def settings_for(url: str, **changes) -> ServerSettings:
    """The environment's settings on this database, seeing every publish at once."""
    return replace(ServerSettings.from_env({"dsn": url}), **{"ledger_poll_seconds": 0, "jwks": None} | changes)


@pytest.fixture(scope="session")
def database_url(snapshot, corpus) -> Iterator[str]:
    """The corpus published once for every module that reads it (none writes to it)."""
    with databases() as make:
        url = make("ta_api")
        asyncio.run(publish(url, snapshot, corpus.dates))  # the store's real path: migrate, publish every day
        yield url


@pytest.fixture
def empty_database_url(scratch_database) -> str:
    return scratch_database("ta_api_fresh")


@pytest.fixture(scope="module")
def served_url(database_url) -> Iterator[str]:
    """The API on a socket, run by the production runner (server/serving.py) on its own loop in a thread, so
    that blocking clients (raw sockets, schemathesis) can call it: its base URL."""
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(start(create_app(settings_for(database_url)), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, name="api", daemon=True)
    thread.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


# ---- the oracle: tests/reference.py's cells, summed the way the API is specified to ---------------------


def reference_cells(references: Iterable[Reference]) -> dict[str, dict[tuple[str, str, str], list[tuple]]]:
    """Reference cells by kind and (channel, version, metric): records of (channel, version, date, label,
    application, architecture, os, os_version, process, layout, cell); the API's date is the build date
    for build_id aggregates and the submission date otherwise."""
    out: dict[str, dict] = {kind: defaultdict(list) for kind in KINDS}
    for ref in references:
        for key, cell in ref.build_id.items():
            _, channel, version, build, app, arch, os_, os_version, metric, label, process, layout = key
            record = (channel, version, build, label, app, arch, os_, os_version, process, layout, cell)
            out["build_id"][(channel, version, metric)].append(record)
        for key, cell in ref.submission_date.items():
            day, channel, version, app, arch, os_, os_version, metric, label, process, layout = key
            record = (channel, version, day, label, app, arch, os_, os_version, process, layout, cell)
            out["submission_date"][(channel, version, metric)].append(record)
    return out


@pytest.fixture(scope="session")
def cells(corpus) -> dict[str, dict[tuple[str, str, str], list[tuple]]]:
    """The reference cells of the test corpus (see reference_cells)."""
    from tests.test_job import reference  # the plain-Python reference run over a corpus

    return reference_cells(reference(corpus.output, True).values())


def summed(records: list[tuple], filters: dict[str, set[str]], processes=None, labels=None) -> dict:
    """{(date, label): [layout, counts, sum, count]} over the records matching every filter (OR within one)."""
    total: dict[tuple[str, str], list] = {}
    for record in records:
        _, _, day, label, *_, process, layout, cell = record
        if (processes and process not in processes) or (labels is not None and label not in labels):
            continue
        if any(record[FILTER_COLUMNS[k]] not in values for k, values in filters.items()):
            continue
        entry = total.setdefault((day, label), [layout, np.zeros(len(cell[2]), np.int64), 0, 0])
        entry[1] += np.array(cell[2], np.int64)
        entry[2] += cell[3]
        entry[3] += cell[4]
    return total


# ---- a Postgres server of the tests' own, for the tests that stop and restart it ---------------------------


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_postgres(private_cluster: PrivatePostgres) -> PrivatePostgres:
    """A Postgres server of the tests' own, for the tests that stop, crash and restart it (running when a test
    begins, whatever the one before did to it); removed when the session ends."""
    if not private_cluster.running():
        private_cluster.start()
    return private_cluster


@pytest.fixture
def seed() -> int:
    """The seed of a test's random draws: printed, and replayed with RELIABILITY_SEED=<seed>."""
    value = int(os.environ.get("RELIABILITY_SEED") or secrets.randbelow(2**32))
    print(f"seed {value} (replay: RELIABILITY_SEED={value})")
    return value
