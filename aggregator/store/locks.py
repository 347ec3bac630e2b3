"""The locks the store takes: one advisory lock per contribution, and short waits for the DDL locks.

Dropping or attaching a leaf needs an ACCESS EXCLUSIVE lock on its kind's parent table; while such a lock
waits, new readers queue behind it. So the DDL runs with a short `lock_timeout` and, when a long read is in the
way, steps back (to a savepoint) and tries again, instead of stalling the API behind it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TypeVar

import asyncpg

from aggregator.store.schema import KINDS, MIGRATION_LOCK

NAMESPACE = MIGRATION_LOCK[0]  # first key of every advisory lock this project takes
# Held by whoever changes the catalog lists (aggregator/store/catalog.py): publishes of two days may touch one list.
# Taken before any lock on the aggregates tables, by publish and trim alike, so they never wait for each other
# in a cycle. Day locks are 100,000,000 and above.
CATALOG_LOCK = (NAMESPACE, 1)
LOCK_TIMEOUT_MS = 1000
ATTEMPTS = 30
T = TypeVar("T")


class LockBusy(RuntimeError):
    """Readers held the aggregates tables for longer than all our attempts to swap or drop a leaf."""


def day_lock(kind: str, day: date) -> tuple[int, int]:
    """The advisory lock key of one (kind, submission date): distinct for each, never a hash collision."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return NAMESPACE, (KINDS.index(kind) + 1) * 100_000_000 + int(f"{day:%Y%m%d}")


async def with_short_locks(conn: asyncpg.Connection, body: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `body` in a (sub)transaction whose lock waits time out quickly, retrying with backoff."""
    for attempt in range(ATTEMPTS):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                result = await body()
                await conn.execute("SET LOCAL lock_timeout = DEFAULT")
                return result
        except asyncpg.LockNotAvailableError:
            await asyncio.sleep(min(0.1 * 2**attempt, 5))
    raise LockBusy(f"{what}: readers held the aggregates tables too long; nothing was changed")
