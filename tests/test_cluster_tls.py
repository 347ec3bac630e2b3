"""The job on a Dask cluster that speaks TLS alone: a `dask scheduler` and two `dask worker` processes started as
the chart and compose start them (certificates from deploy/dask_tls.py, distributed's `Security` from the
DASK_DISTRIBUTED__COMM__* variables, `--protocol tls`). Clients without a certificate the cluster's CA signed are
refused; `aggregator run --scheduler tls://...` aggregates exactly what a plain run does."""

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from distributed.comm.core import CommClosedError
from distributed.security import Security

from tests.conftest import DASK
from tests.test_job import assert_matches_reference, job_cells, reference

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
CERTS = [sys.executable, str(ROOT / "deploy" / "dask_tls.py")]


sys.path.insert(0, str(ROOT / "deploy"))  # its scripts, as modules
from dask_tls import environment as tls_env  # noqa: E402  (the variables compose and `make stack` set)
from stack import Processes  # noqa: E402


def security(folder: Path) -> Security:
    return Security(
        tls_ca_file=str(folder / "ca.crt"),
        tls_client_cert=str(folder / "tls.crt"),
        tls_client_key=str(folder / "tls.key"),
        require_encryption=True,
    )


def clean_env() -> dict[str, str]:
    """The test's environment without any Dask, database or API setting."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "DATABASE_", "POSTGRES_", "API_"))}
    return kept | {"PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    """The cluster's certificates, and another CA's (a stranger's)."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("cluster", "stranger")}
    for folder in folders.values():
        subprocess.run([*CERTS, str(folder)], check=True, capture_output=True, timeout=60)
    assert (folders["cluster"] / "tls.key").stat().st_mode & 0o077 == 0  # the key is its owner's alone
    return folders


@contextlib.contextmanager
def tls_cluster(folder: Path, certs: Path, workers: int = 2) -> Iterator[str]:
    """`dask scheduler --protocol tls` and `dask worker` processes on 127.0.0.1, started and stopped as `make stack`
    does (deploy/stack.py's Processes); yields the scheduler's address."""
    scheduler_file = folder / "scheduler.json"
    local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    processes = Processes(folder)

    def start(name: str, role: str, *args: str) -> None:
        processes.start(name, [DASK, *args, *local], clean_env() | tls_env(certs, role), folder)

    try:
        start(
            "scheduler",
            "scheduler",
            "scheduler",
            "--protocol",
            "tls",
            "--port",
            "0",
            "--scheduler-file",
            str(scheduler_file),
        )
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            processes.check()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://")
        for n in range(workers):
            start(f"worker-{n}", "worker", "worker", address, "--nworkers", "1", "--nthreads", "1")
        with Client(address, security=security(certs), timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
            assert all(w.startswith("tls://") for w in client.scheduler_info()["workers"])
        yield address
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def cluster(certificates, tmp_path_factory) -> Iterator[str]:
    with tls_cluster(tmp_path_factory.mktemp("tls-cluster"), certificates["cluster"]) as address:
        yield address


def test_only_clients_with_the_clusters_certificate_get_in(cluster, certificates):
    host, port = cluster.removeprefix("tls://").rsplit(":", 1)
    # The cluster's own certificate: in, and able to run code on the workers (what an intruder would want).
    with Client(cluster, security=security(certificates["cluster"]), timeout=10) as client:
        assert len(client.run(os.getpid)) == 2
    # Plain TCP, as an unauthenticated client: refused.
    with pytest.raises((OSError, CommClosedError)):
        Client(f"tcp://{host}:{port}", security=Security(), timeout=5)
    # A certificate another CA signed: refused at the handshake.
    with pytest.raises((OSError, CommClosedError)):
        Client(cluster, security=security(certificates["stranger"]), timeout=5)
    # The cluster's CA trusted, but no certificate shown: the scheduler refuses the handshake.
    context = ssl.create_default_context(cafile=str(certificates["cluster"] / "ca.crt"))
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                answer = tls.recv(1)  # accepted, it would wait for a message: a timeout, which fails the test
        except (ssl.SSLError, ConnectionError):  # TLS 1.3 reports the refusal on the first read
            answer = b""
    assert answer == b""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "aggregator", "run", *args, "--no-publish", "--no-progress"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_the_job_runs_over_tls_and_matches_a_plain_run(cluster, certificates, corpus, snapshot, tmp_path):
    args = ["--input", corpus.output, "--snapshot", str(tmp_path / "snap"), "--scheduler", cluster]
    args += [a for day in corpus.dates for a in ("--date", day)]
    args += ["--definitions", corpus.histograms_definitions, "--scalar-definitions", corpus.scalars_definitions]
    # Without the client's certificate, one line naming the scheduler, and nothing written.
    refused = run(args, clean_env())
    assert refused.returncode == 1, refused.stderr
    assert f"cannot connect to the Dask scheduler at {cluster}" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "snap").exists()
    # With it: the reference aggregation, and cell for cell what the plain run (a LocalCluster, no TLS) wrote.
    done = run(args, clean_env() | tls_env(certificates["cluster"], "client"))
    assert done.returncode == 0, done.stderr
    assert_matches_reference(str(tmp_path / "snap"), reference(corpus.output, True))
    for kind in ("build_id", "submission_date"):
        for day in corpus.dates:
            assert job_cells(str(tmp_path / "snap"), kind, day) == job_cells(snapshot, kind, day)
