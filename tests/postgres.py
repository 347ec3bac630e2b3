"""A private PostgreSQL server for the tests that stop, crash and restart it: the shared server on :5432 must
never be touched. It lives in a temporary folder, listens on a free port of 127.0.0.1 and is removed at the end;
scripts/postgres-cluster.sh (shared with scripts/ensure-postgres.sh) runs the binaries, as the postgres user
when the tests run as root."""

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from bench.load import free_port

CLUSTER = Path(__file__).resolve().parent.parent / "scripts" / "postgres-cluster.sh"
HOST = "127.0.0.1"
# Durability is not what these tests are about; a crash (stop -m immediate) still loses every connection.
OPTIONS = ("-c fsync=off", "-c full_page_writes=off", "-c max_connections=200")


class PrivatePostgres:
    """initdb'd on creation; `start`, `stop` (`mode="immediate"` is a crash), `restart`, `running`, `remove`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ta-postgres-"))  # short: the socket's path has a length limit
        self.data = self.folder / "data"
        self.port = free_port()
        try:
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres")
            self._cluster("init", self.data)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def _cluster(self, *args) -> None:
        done = subprocess.run([str(CLUSTER), *map(str, args)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"postgres-cluster.sh {args[0]} failed: {done.stderr.strip()}\n{self.log()}")

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def running(self) -> bool:
        return subprocess.run([str(CLUSTER), "status", str(self.data)], capture_output=True).returncode == 0

    def start(self) -> None:
        self._cluster("start", self.data, HOST, self.port, "-k", self.folder, *OPTIONS)

    def stop(self, mode: str = "fast") -> None:
        self._cluster("stop", self.data, mode)

    def restart(self, mode: str = "fast") -> None:
        self._cluster("restart", self.data, mode)

    def create_database(self, prefix: str) -> str:
        """A new database `<prefix>_<random>`; its URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"

        async def create() -> None:
            conn = await asyncpg.connect(self.url())
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url(name)

    def remove(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
