"""The production topology as local processes (`make stack`): what deploy/compose.yaml and the Helm chart run,
without a container engine.

    python deploy/stack.py [--pings 2000] [--days 2] [--api-port 8000] [--keep-database]

It creates its own database on the local Postgres (`ta_stack_<random>`, on 127.0.0.1:5432 unless
--postgres-url says otherwise), generates sample pings, makes the Dask cluster's certificates
(deploy/dask_tls.py), starts `dask scheduler --protocol tls`, two `dask worker`s, migrates
the schema (`aggregator db init`, the chart's pre-install hook), starts the API (`aggregator serve`), runs the
daily job against the scheduler (`aggregator run --scheduler ...`, which publishes), checks that the API
answers with the published data, prints where everything is and waits. As in the chart, each process gets
the secrets it uses: the scheduler and workers no DSN, the job and the migration the read-write one, the API
the read-only one; Dask speaks TLS alone. Ctrl-C (or SIGTERM) stops every
process it started, in reverse order, and drops the database. Every port is a free one unless given.

Lines a caller can wait for on stdout: `api URL`, `scheduler ADDRESS`, `dashboard URL`, `pid NAME PID`,
`database NAME`, then `stack ready` (or `stack failed: REASON`, exit status 1), and `stack stopped`.
"""

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from dask_tls import environment as dask_tls
from dask_tls import make as make_certificates

from aggregator.job import worker_environment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1
DEFAULT_POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class StackFailed(RuntimeError):
    pass


def die_with_parent() -> None:
    """On Linux, be sent SIGTERM when the parent process ends (make killed, a test runner gone): nothing started
    here outlives whoever started it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def say(*words: object) -> None:
    print(*words, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(what: str, ready, seconds: float, processes: "Processes") -> None:
    deadline = time.monotonic() + seconds
    while True:
        processes.check()
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise StackFailed(f"{what} not ready after {seconds:.0f} s")
        time.sleep(0.2)


class Processes:
    """Started processes, stopped in reverse order: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # this script starts no threads
        )
        log.close()
        self.started.append((name, process))
        say("pid", name, process.pid)
        return process

    def check(self) -> None:
        """A long-running process that ended is a failure."""
        for name, process in self.started:
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise StackFailed(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self, grace: float = 15) -> None:
        for _name, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
            if process.poll() is None:
                process.kill()
                process.wait()
        self.started.clear()


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_once(name: str, command: list[str], env: dict[str, str], cwd: Path, logs: Path, timeout: float) -> None:
    started = time.monotonic()
    with (logs / f"{name}.log").open("wb") as log:
        result = subprocess.run(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
        )
    if result.returncode != 0:
        tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
        raise StackFailed(f"{' '.join(command[:3])} exited with {result.returncode}:\n{tail}")
    say(f"{name} done in {time.monotonic() - started:.1f} s")


def check_api(base: str) -> list[str]:
    """The API answers with what the job published: channels, dates and a histogram. Returns example URLs."""
    status, body = get(f"{base}/__heartbeat__")
    if status != 200:
        raise StackFailed(f"/__heartbeat__ answered {status}: {body[:200]!r}")
    status, body = get(f"{base}/aggregates_by/submission_date/channels/")
    channels = json.loads(body)
    if status != 200 or not channels:
        raise StackFailed(f"no channels published: {status} {body[:200]!r}")
    channel = "nightly" if "nightly" in channels else channels[0]
    dates = json.loads(get(f"{base}/aggregates_by/submission_date/channels/{channel}/dates/")[1])
    if not dates:
        raise StackFailed(f"no dates published for {channel}")
    version = dates[0]["version"]
    days = ",".join(sorted({d["date"] for d in dates if d["version"] == version}))
    metric = f"{base}/aggregates_by/submission_date/channels/{channel}/?version={version}&dates={days}&metric=GC_MS"
    status, body = get(metric)
    if status != 200 or not json.loads(body)["data"]:
        raise StackFailed(f"GC_MS not served: {status} {body[:200]!r}")
    return [
        f"{base}/aggregates_by/submission_date/channels/",
        f"{base}/filters/?channel={channel}&version={version}",
        metric,
        f"{base}/freshness/",
        f"{base}/__version__",
        f"{base}/metrics",
    ]


@contextlib.contextmanager
def stack(args: argparse.Namespace, workdir: Path) -> Iterator[None]:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = args.postgres_url.rpartition("/")[0]
    database = args.database or f"ta_stack_{secrets.token_hex(4)}"
    dsn = f"{server}/{database}"
    asyncio.run(_admin(args.postgres_url, f'CREATE DATABASE "{database}"'))
    say("database", database)
    processes = Processes(logs)
    try:
        (workdir / "version.json").write_text(
            json.dumps({"source": "deploy/stack.py", "version": "local", "commit": "unknown", "build": "make stack"})
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "DATABASE_", "DASK_", "API_"))}
        env["PYTHONPATH"] = str(ROOT)
        make_certificates(workdir / "tls")
        writer = env | {"DATABASE_URL": dsn} | dask_tls(workdir / "tls", "client")
        api_env = env | {
            "DATABASE_RO_URL": dsn,
            "API_VERSION_FILE": str(workdir / "version.json"),
            "API_LEDGER_POLL_SECONDS": "0",
        }
        aggregator, dask = str(BIN / "aggregator"), str(BIN / "dask")
        pings = workdir / "pings"
        scheduler_file = workdir / "scheduler.json"
        local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
        scheduler = [dask, "scheduler", "--protocol", "tls", "--port", str(args.scheduler_port)]
        scheduler += ["--scheduler-file", str(scheduler_file), *local]
        processes.start("scheduler", scheduler, env | dask_tls(workdir / "tls", "scheduler"), workdir)
        generate = [aggregator, "generate", "--output", str(pings), "--pings", str(args.pings)]
        generate += ["--days", str(args.days), "--seed", "1"]
        run_once("generate", generate, env, workdir, logs, timeout=120)
        wait_until("the scheduler", scheduler_file.exists, 30, processes)
        for n in (1, 2):
            worker = [dask, "worker", "--scheduler-file", str(scheduler_file), "--name", f"worker-{n}"]
            worker += ["--nworkers", "1", "--nthreads", str(args.threads), "--memory-limit", args.memory_limit]
            worker_env = env | worker_environment() | dask_tls(workdir / "tls", "worker")
            processes.start(f"worker-{n}", [*worker, *local], worker_env, workdir)
        run_once("migrate", [aggregator, "db", "init"], writer, workdir, logs, timeout=60)
        port = args.api_port or free_port()
        base = f"http://127.0.0.1:{port}"
        processes.start("api", [aggregator, "serve", "--host", "127.0.0.1", "--port", str(port)], api_env, workdir)

        scheduler = json.loads(scheduler_file.read_text())
        address = scheduler["address"]
        dashboard = f"http://127.0.0.1:{scheduler['services']['dashboard']}"
        say("scheduler", address)
        say("dashboard", dashboard)
        wait_until("the scheduler's /health", lambda: get(f"{dashboard}/health")[0] == 200, 30, processes)
        wait_until("two workers", lambda: _workers(dashboard) >= 2, 60, processes)
        wait_until("the API", lambda: get(f"{base}/__lbheartbeat__")[0] == 200, 60, processes)
        say("api", base)

        days = sorted(p.name.removeprefix("submission_date=") for p in pings.glob("submission_date=*"))
        run = [aggregator, "run", "--input", str(pings), "--snapshot", str(workdir / "snapshot")]
        run += [a for day in days for a in ("--date", day)]
        run += ["--scheduler", address, "--definitions", str(pings / "Histograms.json")]
        run += ["--scalar-definitions", str(pings / "Scalars.yaml"), "--no-progress"]
        run_once("job", run, writer, workdir, logs, timeout=300)
        processes.check()
        for url in check_api(base):
            say("  ", url)
        yield
    finally:
        processes.stop()
        if not args.keep_database:
            asyncio.run(_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _workers(dashboard: str) -> int:
    """Workers the scheduler knows, from its Prometheus metrics (what a ServiceMonitor scrapes)."""
    status, body = get(f"{dashboard}/metrics")
    lines = body.decode().splitlines() if status == 200 else []
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines if line.startswith("dask_scheduler_workers{"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/stack.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="admin URL of the local Postgres server")
    parser.add_argument("--database", help="database to create and use (default: ta_stack_<random>)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database on exit")
    parser.add_argument("--workdir", help="pings, snapshot and logs (default: a temporary folder, removed)")
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--memory-limit", default="2GiB", help="memory limit per worker")
    parser.add_argument("--api-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--scheduler-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--check", action="store_true", help="stop once the stack is checked, do not wait")
    args = parser.parse_args(argv)

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up is not interrupted
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    die_with_parent()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    with contextlib.ExitStack() as cleanup:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ta-stack-")))
        try:
            with stack(args, workdir):
                say("stack ready" + ("" if args.check else " (Ctrl-C stops it)"))
                if not args.check:
                    signal.pause()
        except KeyboardInterrupt:
            pass
        except (StackFailed, subprocess.TimeoutExpired, OSError, asyncpg.PostgresError) as failure:
            say(f"stack failed: {failure}")
            return 1
    say("stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
