"""Shared fixtures: a generated corpus, a LocalCluster, and a separately started scheduler and workers."""

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from distributed import Client, LocalCluster

from aggregator.generate import GenerateSummary, generate_corpus
from aggregator.job import run_job
from tests.postgres import PrivatePostgres

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


@pytest.fixture(scope="module")
def external_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, started as an operator would."""
    folder = tmp_path_factory.mktemp("cluster")
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
            start("worker", "--scheduler-file", scheduler_file, "--nworkers", "1", "--nthreads", "1") for _ in range(2)
        ]
        with Client(scheduler_file=scheduler_file) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def snapshot(corpus: GenerateSummary, local_client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corpus aggregated by the job on the LocalCluster: the snapshot the API's tests publish."""
    from tests.test_job import config  # the job tests' configuration of a corpus run

    path = tmp_path_factory.mktemp("snapshot") / "snap"
    run_job(config(corpus, path), client=local_client, say=lambda *_: None)
    return str(path)


@pytest.fixture(scope="module")
def scratch_database() -> Iterator[Callable[[str], str]]:
    """Creates databases named `<prefix>_<random>` (other developers' tests run at the same time) and drops
    them when the module is done; each call returns the new database's URL."""
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

    yield make
    for name in made:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
