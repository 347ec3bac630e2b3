"""The service when things go wrong: the database down and back, a statement timeout, an unknown schema, and
a SIGTERM while serving; and its entry points (`python -m server`, `aggregator serve`)."""

import asyncio
import os
import signal
import sys
from contextlib import suppress

import asyncpg
import pytest
from aiohttp import ClientSession, web

from aggregator.store.schema import SchemaError
from bench.load import free_port
from server.app import create_app
from server.keys import POOL, READER
from tests.conftest import settings_for

pytestmark = pytest.mark.asyncio

POSTGRES = ("127.0.0.1", 5432)
METRIC = "/aggregates_by/submission_date/channels/nightly/?version=146&dates=20261101,20261102&metric=GC_MS"


class Proxy:
    """A TCP relay to Postgres that a test can cut and restore: the database "going down" for the app only."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self.pipes):
            writer.close()
        await self.server.wait_closed()

    async def _relay(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(*POSTGRES)
        self.pipes |= {client_writer, server_writer}

        async def pipe(reader, writer) -> None:
            with suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        self.pipes -= {client_writer, server_writer}


def through(url: str, port: int) -> str:
    return url.replace(f"{POSTGRES[0]}:{POSTGRES[1]}", f"127.0.0.1:{port}")


async def test_database_down_is_a_503_and_recovery_is_automatic(aiohttp_client, database_url):
    proxy = Proxy()
    await proxy.start()
    client = await aiohttp_client(create_app(settings_for(through(database_url, proxy.port), cache_bytes=0)))
    assert (await client.get(METRIC)).status == 200
    await proxy.stop()
    for path in (METRIC, "/aggregates_by/build_id/channels/"):
        down = await client.get(path)
        assert down.status == 503
        assert down.headers["Retry-After"]
        assert (await down.json())["code"] == "database_unavailable"
    assert (await client.get("/__heartbeat__")).status == 503
    assert (await client.get("/status")).status == 200
    await proxy.start()
    for _ in range(3):  # pooled connections to the old relay are replaced as they are found dead
        if (await client.get(METRIC)).status == 200:
            break
    assert (await client.get(METRIC)).status == 200
    assert (await client.get("/__heartbeat__")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'api_database_errors_total{cause="database_unavailable"}' in metrics
    await proxy.stop()


async def test_statement_timeout_is_a_503(aiohttp_client, database_url):
    client = await aiohttp_client(
        create_app(settings_for(database_url, statement_timeout_ms=300, cache_bytes=0, pool_min=1, pool_max=3))
    )
    assert client.app[POOL].get_max_size() == 3
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE aggregates_all IN ACCESS EXCLUSIVE MODE")
            slow = await client.get(METRIC)
            assert slow.status == 503
            assert (await slow.json())["code"] == "query_timeout"
    finally:
        await blocker.close()
    assert (await client.get(METRIC)).status == 200


async def start_and_stop(app: web.Application) -> None:
    runner = web.AppRunner(app)
    try:
        await runner.setup()  # runs the start-up steps: the pool and its schema check
    finally:
        await runner.cleanup()


async def test_refuses_a_database_without_the_known_schema(empty_database_url):
    empty = empty_database_url
    with pytest.raises(SchemaError, match="no aggregates schema"):
        await start_and_stop(create_app(settings_for(empty)))
    conn = await asyncpg.connect(empty)
    await conn.execute(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, description text, applied_at timestamptz)"
    )
    await conn.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', now())")
    await conn.close()
    with pytest.raises(SchemaError, match="newer"):
        await start_and_stop(create_app(settings_for(empty)))


async def test_force_https_redirects_as_the_original(aiohttp_client, database_url):
    client = await aiohttp_client(create_app(settings_for(database_url, force_https=True)))
    answer = await client.get("/aggregates_by/build_id/channels/", allow_redirects=False)
    assert answer.status == 301
    assert answer.headers["Location"].startswith("https://")
    assert (await client.get("/__heartbeat__", allow_redirects=False)).status == 200
    proxied = await client.get("/aggregates_by/build_id/channels/", headers={"X-Forwarded-Proto": "https"})
    assert proxied.status == 200


@pytest.mark.parametrize("command", [["-m", "server"], ["-m", "aggregator", "serve"]])
async def test_serves_until_sigterm_then_shuts_down_cleanly(database_url, command):
    port = free_port()
    env = os.environ | {"DATABASE_URL": database_url, "DATABASE_RO_URL": database_url, "API_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        "--host",
        "127.0.0.1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with ClientSession() as session:
            for _ in range(100):
                with suppress(OSError):
                    async with session.get(f"http://127.0.0.1:{port}/aggregates_by/build_id/channels/") as answer:
                        assert answer.status == 200
                        break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the server did not start")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_demo_publishes_and_its_example_urls_answer(aiohttp_client, empty_database_url, tmp_path):
    env = os.environ | {"DATABASE_URL": empty_database_url, "API_PORT": "8000"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aggregator", "demo", "--no-serve", "--pings", "300", "--workdir", str(tmp_path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), 300))[0].decode()
    assert process.returncode == 0, output
    urls = [line.strip() for line in output.splitlines() if line.strip().startswith("http://127.0.0.1:8000/")]
    assert len(urls) >= 8
    client = await aiohttp_client(create_app(settings_for(empty_database_url)))
    for url in urls:
        answer = await client.get(url.removeprefix("http://127.0.0.1:8000"))
        assert answer.status == 200, url


async def test_an_unexpected_error_is_a_json_500(aiohttp_client, database_url):
    client = await aiohttp_client(create_app(settings_for(database_url)))

    async def broken() -> list[tuple]:
        raise RuntimeError("a bug")

    client.app[READER].catalog_dates = broken
    answer = await client.get("/aggregates_by/build_id/channels/")
    assert answer.status == 500
    assert await answer.json() == {"code": "internal_error", "description": "Internal server error."}
    assert answer.headers["X-Frame-Options"] == "DENY"
