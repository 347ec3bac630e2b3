"""What the API tells whom: /metrics on a port of its own (API_METRICS_PORT), a bounded `Allow` header on 405s,
and the one line it says at start-up when it reads with the read-write DSN."""

import re
import socket

import aiohttp
import pytest

from server.app import READ_WRITE_WARNING, create_app, settings_from_env
from tests.conftest import settings_for

BASE = "/aggregates_by/submission_date/channels/nightly/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests_counted(exposition: str, route: str) -> float:
    pattern = rf'^api_request_duration_seconds_count\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, exposition, re.MULTILINE))


@pytest.mark.asyncio
async def test_metrics_on_their_own_port(aiohttp_client, database_url):
    port = free_port()
    client = await aiohttp_client(create_app(settings_for(database_url, host="127.0.0.1", metrics_port=port)))
    for _ in range(3):
        assert (await client.get("/aggregates_by/build_id/channels/")).status == 200
    public = await client.get("/metrics")
    assert public.status == 404 and (await public.json())["code"] == "not_found"
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as scraped:
        assert scraped.status == 200 and scraped.headers["Content-Type"].startswith("text/plain")
        exposition = await scraped.text()
    assert requests_counted(exposition, "/aggregates_by/{kind}/channels/") == 3
    assert requests_counted(exposition, "/metrics") == 1  # the public port's refusal is counted too
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/status") as other:
        assert other.status == 404  # the metrics port serves nothing else
    await client.close()
    with socket.socket() as sock:  # and it closes with the app
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.asyncio
async def test_the_allow_header_of_a_405_is_bounded(aiohttp_client, database_url):
    client = await aiohttp_client(create_app(settings_for(database_url)))
    short = f"{BASE}?version=146&dates=20261101&metric=GC_MS&bogus=1"
    answer = await client.get(short)
    assert answer.status == 405
    assert answer.headers["Allow"] == f"{BASE}?version=146&dates=20261101&metric=GC_MS"
    # 6,000 dates: the URL without the unknown parameter would be a 54 kB header.
    dates = ",".join(f"2026{month:02}{day:02}" for month in range(1, 13) for day in range(1, 29)) * 18
    long = f"{BASE}?version=146&dates={dates}&metric=GC_MS&bogus=1"
    assert len(long) > 50_000
    answer = await client.get(long)
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert (await answer.json())["code"] == "unknown_parameter"
    assert sum(len(k) + len(v) for k, v in answer.headers.items()) < 4096


def test_the_api_says_when_it_reads_with_the_read_write_dsn(monkeypatch, capsys):
    for name in ("DATABASE_RO_URL", "POSTGRES_RO_HOST", "POSTGRES_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://writer:w@db.example:5432/telemetry")
    assert settings_from_env().database["dsn"] == "postgresql://writer:w@db.example:5432/telemetry"
    assert capsys.readouterr().err.splitlines() == [READ_WRITE_WARNING]
    monkeypatch.setenv("DATABASE_RO_URL", "postgresql://reader:r@replica.example:5432/telemetry")
    assert settings_from_env().database["dsn"] == "postgresql://reader:r@replica.example:5432/telemetry"
    assert capsys.readouterr().err == ""
