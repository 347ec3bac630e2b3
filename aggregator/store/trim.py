"""Retention, as the original's trim_db: drop the contributions older than the window.

A contribution is a leaf of the aggregates, its rollup rows and its catalog rows, so trimming a day is a DROP
TABLE and a few indexed deletes: it costs the day's size, whatever the size of the rest of the store.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from aggregator.store import catalog, schema
from aggregator.store.locks import day_lock, with_short_locks


@dataclass
class Trimmed:
    kind: str
    day: date
    rows: int
    state: str  # trimmed | would trim (dry run) | busy (being published: left for the next trim)

    def line(self) -> str:
        return f"{self.state:<10} {self.kind} {self.day:%Y%m%d}: {self.rows} rows"


def cutoff(keep_days: int, base: date | None = None) -> date:
    """The oldest submission date kept: `base - keep_days` (base: today, UTC)."""
    return (base or datetime.now(UTC).date()) - timedelta(days=keep_days)


async def trim(conn: asyncpg.Connection, oldest: date, dry_run: bool = False) -> list[Trimmed]:
    """Drop every contribution whose submission date is before `oldest`, each day in its own transaction."""
    old = await conn.fetch(
        """SELECT c.kind, c.submission_date, p.rows FROM contributions c JOIN publishes p ON p.id = c.publish_id
           WHERE c.submission_date < $1 ORDER BY c.submission_date, c.kind""",
        oldest,
    )
    trimmed = []
    for row in old:
        kind, day = row["kind"], row["submission_date"]
        state = "would trim" if dry_run else "trimmed" if await _trim_day(conn, kind, day) else "busy"
        trimmed.append(Trimmed(kind, day, row["rows"], state))
    return trimmed


async def _trim_day(conn: asyncpg.Connection, kind: str, day: date) -> bool:
    """Drop one contribution and record it in the ledger; False when a publish of that day holds its lock."""

    async def drop() -> bool:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", *day_lock(kind, day)):
            return False
        await conn.execute(
            """INSERT INTO publishes (kind, submission_date, snapshot, run_id, digest, rows, rollup_rows,
                                      skipped, started_at, action)
               SELECT p.kind, p.submission_date, p.snapshot, p.run_id, p.digest, p.rows, p.rollup_rows,
                      p.skipped, now(), 'trimmed'
               FROM contributions c JOIN publishes p ON p.id = c.publish_id
               WHERE c.kind = $1 AND c.submission_date = $2""",
            kind,
            day,
        )
        await conn.execute("DELETE FROM contributions WHERE kind = $1 AND submission_date = $2", kind, day)
        changed = await catalog.replace_day(conn, kind, day, [], [])
        changed[schema.ROLLUP] = await schema.delete_rollup(conn, kind, day)
        await schema.analyze_changed(conn, changed)  # before the leaf's drop takes the lock readers wait for
        for table in schema.TABLES:
            await schema.drop_leaf(conn, table, kind, day)
        return True

    return await with_short_locks(conn, drop, f"trim {kind} {day:%Y%m%d}")
