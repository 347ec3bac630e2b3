"""What `aggregator demo` does after the job: publish the snapshot into Postgres (the configured one, else a
local `telemetry_demo` database, with a server started by scripts/ensure-postgres.sh when none answers) and
pick example URLs that the published data answers."""

import subprocess
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from aggregator.store import schema
from aggregator.store.connect import connect_options
from aggregator.store.publish import publish_dates

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"
DEMO_DATABASE = "telemetry_demo"
ENSURE_POSTGRES = Path(__file__).resolve().parent.parent / "scripts" / "ensure-postgres.sh"


async def demo_database() -> dict:
    """asyncpg connect options of the database to publish into (and serve from)."""
    configured = connect_options()
    if configured is not None:
        return configured
    subprocess.run(["bash", str(ENSURE_POSTGRES)], check=True)
    admin = await asyncpg.connect(f"{LOCAL_SERVER}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DATABASE):
            await admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    finally:
        await admin.close()
    return {"dsn": f"{LOCAL_SERVER}/{DEMO_DATABASE}"}


def shown(database: dict) -> str:
    """The database as a URL without its password, fit to print."""
    if "dsn" not in database:
        return f"postgresql://{database['user']}@{database['host']}/{database['database']}"
    parts = urlsplit(database["dsn"])
    host = parts.netloc.rpartition("@")[2]
    user = parts.username
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def database_lines(database: dict, configured: bool) -> list[str]:
    """Which database the demo published into, and, when the demo chose it, how the other commands reach it."""
    lines = [f"published into {shown(database)}"]
    if not configured:
        lines.append(f"  for `aggregator db status` or `aggregator serve` on it: export DATABASE_URL={database['dsn']}")
    return lines


async def publish(database: dict, snapshot: str, dates: list[str]) -> None:
    conn = await asyncpg.connect(**database)
    try:
        await schema.migrate(conn)
        await publish_dates(conn, snapshot, dates, schema.KINDS)
    finally:
        await conn.close()


async def example_urls(database: dict, base: str) -> list[str]:
    """URLs of every route kind, for the newest nightly (or any) channel and version published."""
    conn = await asyncpg.connect(**database)
    try:
        rows = await conn.fetch(
            """SELECT channel, version, array_agg(DISTINCT date ORDER BY date DESC) AS dates FROM catalog_dates
               WHERE kind = 'submission_date' GROUP BY channel, version
               ORDER BY channel = 'nightly' DESC, version DESC LIMIT 1"""
        )
    finally:
        await conn.close()
    if not rows:
        return [f"{base}/", f"{base}/aggregates_by/submission_date/channels/"]
    channel, version, dates = rows[0]["channel"], rows[0]["version"], [f"{d:%Y%m%d}" for d in rows[0]["dates"]]

    def metric(name: str, **filters: str) -> str:
        query = {"version": version, "dates": ",".join(dates), "metric": name} | filters
        return f"{base}/aggregates_by/submission_date/channels/{channel}/?{urlencode(query, safe=',')}"

    return [
        f"{base}/",  # the explorer page
        f"{base}/aggregates_by/build_id/channels/",
        f"{base}/aggregates_by/submission_date/channels/{channel}/dates/",
        f"{base}/filters/?channel={channel}&version={version}",
        metric("GC_MS"),
        metric("GC_MS", os="Linux", child="parent", stats="true"),
        metric("GC_MS", aggregation="clients", stats="true"),
        metric("IPC_READ_MAIN_THREAD_LATENCY_MS"),
        metric("SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS"),
        f"{base}/freshness/",
        f"{base}/openapi.json",
        f"{base}/metrics",
    ]
