"""What the store serves now, for `aggregator db status`."""

import asyncpg

from aggregator.store.schema import SCHEMA_VERSION, SchemaError, check_schema


async def status(conn: asyncpg.Connection) -> list[str]:
    """Human lines: schema version, contributions per kind, the latest ledger rows, the database's size."""
    try:
        version = await check_schema(conn)
    except SchemaError as error:
        return [f"schema: {error}"]
    lines = [f"schema version {version} (this aggregator: {SCHEMA_VERSION})"]
    kinds = await conn.fetch(
        """SELECT c.kind, count(*) AS days, min(c.submission_date) AS first, max(c.submission_date) AS last,
                  sum(p.rows) AS rows, max(p.published_at) AS published
           FROM contributions c JOIN publishes p ON p.id = c.publish_id GROUP BY c.kind ORDER BY c.kind"""
    )
    for k in kinds:
        lines.append(
            f"{k['kind']:<16} {k['days']} days {k['first']:%Y%m%d}..{k['last']:%Y%m%d}, {k['rows']} rows, "
            f"last published {k['published']:%Y-%m-%d %H:%M:%S %Z}"
        )
    if not kinds:
        lines.append("nothing published yet")
    for p in await conn.fetch("SELECT * FROM publishes ORDER BY id DESC LIMIT 5"):
        lines.append(
            f"  #{p['id']} {p['published_at']:%Y-%m-%d %H:%M:%S} {p['action']:<9} {p['kind']} "
            f"{p['submission_date']:%Y%m%d} {p['rows']} rows from {p['snapshot']} {p['run_id']}"
        )
    size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    lines.append(f"database size {size}")
    return lines
