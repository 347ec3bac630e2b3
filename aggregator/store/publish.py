"""Publish snapshot runs into the store, one (kind, submission date) contribution at a time.

One transaction per contribution, under the advisory lock of its (kind, date): check the digest, COPY the
rows into a new staging table and index it, COPY the rollup rows in place of the day's old ones, then swap the
staged leaf in for the served one with the catalog, the contribution and the ledger row. Nothing is visible to
readers before the commit, a publish killed anywhere rolls back whole (no orphan tables), and only the final
swap takes locks that readers wait for. Why this shape: docs/store.md.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

import asyncpg

from aggregator.aggregate import Aggregate
from aggregator.layouts import Layout
from aggregator.snapshot import list_dates, read_attrs, read_run
from aggregator.store import catalog, schema
from aggregator.store.connect import CONNECTION_LOST
from aggregator.store.encode import Contribution, copy_columns, layout_digest, parse_day
from aggregator.store.locks import day_lock, with_short_locks

T = TypeVar("T")


class PublishError(RuntimeError):
    """A publish that could not complete; the previously published data is still served."""


@dataclass
class Published:
    kind: str
    day: date
    action: str  # published | unchanged
    publish_id: int
    rows: int
    rollup_rows: int
    skipped: int
    seconds: float

    def line(self) -> str:
        skipped = f", {self.skipped} rows not storable" if self.skipped else ""
        return (
            f"{self.action:<10} {self.kind} {self.day:%Y%m%d}: {self.rows} rows, {self.rollup_rows} rollup rows"
            f"{skipped} ({self.seconds:.1f} s, publish {self.publish_id})"
        )


def day_of(text: str) -> date:
    day = parse_day(text)
    if day is None:
        raise PublishError(f"{text!r} is not a date as YYYYMMDD")
    return day


async def publish_run(
    conn: asyncpg.Connection, snapshot: str, kind: str, date_text: str, force: bool = False
) -> Published:
    """Publish the snapshot's current run of (kind, date); `unchanged` when its digest is already served."""
    return await _publish(
        conn,
        kind,
        day_of(date_text),
        snapshot,
        lambda: read_attrs(snapshot, kind, date_text)["digest"],
        lambda: read_run(snapshot, kind, date_text),
        force,
    )


async def publish_aggregate(
    conn: asyncpg.Connection, aggregate: Aggregate, attrs: dict, snapshot: str, force: bool = False
) -> Published:
    """Publish an aggregate already in memory (with its run's attributes), as publish_run would."""
    kind = attrs["kind"]
    return await _publish(
        conn,
        kind,
        day_of(attrs["submission_date"]),
        snapshot,
        lambda: attrs["digest"],
        lambda: (aggregate, attrs),
        force,
    )


async def publish_dates(
    conn: asyncpg.Connection, snapshot: str, dates: Iterable[str], kinds: Iterable[str], say: Callable = print
) -> list[Published]:
    results = []
    for date_text in dates:
        for kind in kinds:
            results.append(await _publish_or_explain(conn, snapshot, kind, date_text))
            say(results[-1].line())
    return results


async def rebuild(conn: asyncpg.Connection, snapshot: str, say: Callable = print) -> list[Published]:
    """Publish every run of the snapshot archive again (forced: the database is made to match it), and name
    the contributions the archive does not have."""
    await schema.migrate(conn)
    found = list_dates(snapshot)
    results = []
    for kind, date_text in found:
        results.append(await _publish_or_explain(conn, snapshot, kind, date_text, force=True))
        say(results[-1].line())
    archived = {(kind, day_of(d)) for kind, d in found}
    for row in await conn.fetch("SELECT kind, submission_date FROM contributions ORDER BY 2, 1"):
        if (row["kind"], row["submission_date"]) not in archived:
            say(
                f"not in the snapshot: {row['kind']} {row['submission_date']:%Y%m%d} "
                "(still served; `db trim` drops old days)"
            )
    return results


async def _publish_or_explain(
    conn: asyncpg.Connection, snapshot: str, kind: str, date_text: str, force: bool = False
) -> Published:
    """publish_run, saying what a lost connection means for the data, instead of asyncpg's bare error. There is
    no retry here: the database may be gone for long, and publishing again later is safe and cheap."""
    try:
        return await publish_run(conn, snapshot, kind, date_text, force)
    except (*CONNECTION_LOST, asyncpg.InternalClientError) as error:
        if not isinstance(error, CONNECTION_LOST) and not await _closing(conn):
            raise
        cause = error  # the first sign of the loss, not the failed rollback that followed it
        while isinstance(cause.__context__, CONNECTION_LOST):
            cause = cause.__context__
        raise PublishError(
            f"publish of {kind} {date_text} interrupted: the database connection was lost "
            f"({type(cause).__name__}: {cause}). A publish commits whole or not at all, so this day is served whole: "
            "as before, unless the loss came at its very commit. Publish again once the database answers (runs "
            "already served are skipped)."
        ) from error


async def _closing(conn: asyncpg.Connection, seconds: float = 1) -> bool:
    """Whether the connection is found closed within `seconds`. A server's last message (a terminated backend,
    a shutdown) that arrives between two queries puts asyncpg in an error state that the next query reports as an
    InternalClientError, a moment before the socket's end is seen."""
    deadline = time.monotonic() + seconds
    while not conn.is_closed() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return conn.is_closed()


async def _publish(
    conn: asyncpg.Connection,
    kind: str,
    day: date,
    snapshot: str,
    digest_of: Callable[[], str],
    load: Callable[[], tuple[Aggregate, dict]],
    force: bool,
) -> Published:
    started, clock = datetime.now(UTC), time.perf_counter()
    prepared = None
    if force or await _served(conn, kind, day, "digest") != digest_of():
        prepared = await _prepare(conn, kind, day, load)  # before the lock: two publishers load in parallel
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *day_lock(kind, day))
        current = await _served(conn, kind, day, "*")
        digest = prepared[1]["digest"] if prepared else digest_of()
        if current and not force and current["digest"] == digest:
            action, counts = "unchanged", current
            publish_id = await _ledger(conn, action, kind, day, snapshot, counts, started)
        else:
            contribution, attrs, layout_ids = prepared or await _prepare(conn, kind, day, load)
            derived = asyncio.ensure_future(asyncio.to_thread(contribution.derive))  # beside the leaf's COPY
            stages = {"aggregates": await _stage(conn, contribution, layout_ids)}
            await derived
            rollup_changed = await _replace_rollup(conn, contribution, layout_ids)
            counts = {
                "run_id": attrs["run_id"],
                "digest": attrs["digest"],
                "rows": len(contribution.leaf),
                "rollup_rows": len(contribution.rollup),
                "skipped": contribution.skipped,
            }
            action, publish_id = (
                "published",
                await _swap(conn, contribution, stages, rollup_changed, snapshot, counts, started),
            )
    seconds = time.perf_counter() - clock
    return Published(kind, day, action, publish_id, counts["rows"], counts["rollup_rows"], counts["skipped"], seconds)


async def _served(conn: asyncpg.Connection, kind: str, day: date, column: str):
    """The ledger row of the contribution served now (`*`), or one of its columns; None if there is none."""
    row = await conn.fetchrow(
        """SELECT p.* FROM contributions c JOIN publishes p ON p.id = c.publish_id
           WHERE c.kind = $1 AND c.submission_date = $2""",
        kind,
        day,
    )
    return row if column == "*" or row is None else row[column]


async def _prepare(
    conn: asyncpg.Connection, kind: str, day: date, load: Callable[[], tuple[Aggregate, dict]]
) -> tuple[Contribution, dict, dict[Layout, int]]:
    """Read the run, keep its storable rows, and register its layouts and descriptions (shared, append-only
    data: outside the publish transaction, so that concurrent publishes do not wait on each other's inserts)."""
    aggregate, attrs = load()
    contribution = Contribution.of(aggregate, kind, day)
    layouts = contribution.layouts()
    digests = [layout_digest(layout) for layout in layouts]
    rows = [
        (layout.kind, list(layout.bounds), list(layout.labels), d) for layout, d in zip(layouts, digests, strict=True)
    ]
    known = await _layout_ids(conn, digests)
    await conn.executemany(
        """INSERT INTO layouts (kind, bounds, labels, digest) VALUES ($1, $2, $3, $4)
           ON CONFLICT (digest) DO NOTHING""",
        [r for r in rows if r[3] not in known],
    )
    ids = await _layout_ids(conn, digests)
    descriptions = attrs.get("descriptions") or {}
    await conn.execute(
        """INSERT INTO descriptions (metric, description) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (metric) DO UPDATE SET description = EXCLUDED.description
           WHERE descriptions.description <> EXCLUDED.description""",
        list(descriptions),
        list(descriptions.values()),
    )
    return contribution, attrs, {layout: ids[d] for layout, d in zip(layouts, digests, strict=True)}


async def _layout_ids(conn: asyncpg.Connection, digests: list[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT digest, id FROM layouts WHERE digest = ANY($1)", digests)
    return {r["digest"]: r["id"] for r in rows}


async def _stage(conn: asyncpg.Connection, contribution: Contribution, layout_ids: dict) -> str:
    """A staging table of the leaf, filled by binary COPY, then indexed and analyzed (a new table has no
    statistics; its own, so no one waits for it); returns its name."""
    stage = await schema.create_stage(conn, "aggregates", contribution.kind, contribution.day)
    leaf = contribution.leaf
    await _copy(conn, stage, contribution.copy_stream(leaf, layout_ids), copy_columns(leaf))
    await schema.index_stage(conn, stage)
    await schema.analyze(conn, stage)
    return stage


async def _replace_rollup(conn: asyncpg.Connection, contribution: Contribution, layout_ids: dict) -> int:
    """The contribution's rollup rows in place of those served, visible at the commit (readers do not wait); the
    rows deleted and inserted."""
    deleted = await schema.delete_rollup(conn, contribution.kind, contribution.day)
    rollup = contribution.rollup
    await _copy(conn, schema.ROLLUP, contribution.copy_stream(rollup, layout_ids), copy_columns(rollup))
    return deleted + len(contribution.rollup)


async def _copy(conn: asyncpg.Connection, table: str, stream: Iterator[bytes], columns: tuple[str, ...]) -> None:
    source = _chunks(conn, stream)
    await _unless_lost(conn, conn.copy_to_table(table, source=source, columns=columns, format="binary"))


async def _chunks(conn: asyncpg.Connection, stream: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The COPY's data a batch at a time, stopped as soon as the connection is lost: asyncpg does not look, and
    would encode the rest of the day into the dead socket. The event loop runs between batches, which is when a
    closed socket is noticed."""
    for chunk in stream:
        await asyncio.sleep(0)
        if conn.is_closed():
            raise asyncpg.ConnectionDoesNotExistError("the connection was lost during a COPY")
        yield chunk


async def _unless_lost(conn: asyncpg.Connection, copy: Awaitable[T]) -> T:
    """`copy` (a COPY on `conn`), ended as soon as the connection is lost. asyncpg pauses a COPY while Postgres
    reads slower than it is sent to, and nothing wakes it if the connection is lost then: the publish would wait
    forever for a server that has gone (found by tests/test_publish_faults.py)."""
    lost = asyncio.get_running_loop().create_future()

    def on_lost(_: asyncpg.Connection) -> None:
        if not lost.done():
            lost.set_result(None)

    task = asyncio.ensure_future(copy)
    conn.add_termination_listener(on_lost)
    try:
        await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise asyncpg.ConnectionDoesNotExistError("the connection was lost during a COPY")
        return task.result()
    finally:
        conn.remove_termination_listener(on_lost)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


async def _swap(
    conn: asyncpg.Connection,
    contribution: Contribution,
    stages: dict[str, str],
    rollup_changed: int,
    snapshot: str,
    counts: dict,
    started: datetime,
) -> int:
    """Catalog (with the statistics of what changed, analyzed under the catalog's lock: docs/store.md), ledger,
    contribution, then the leaves: the DDL last, so that the locks readers wait for are held for the shortest
    time."""
    kind, day = contribution.kind, contribution.day

    async def swap() -> int:
        changed = await _unless_lost(
            conn,
            catalog.replace_day(
                conn, kind, day, contribution.catalog["catalog_dates"], contribution.catalog["catalog_filters"]
            ),
        )
        await schema.analyze_changed(conn, changed | {schema.ROLLUP: rollup_changed})
        publish_id = await _ledger(conn, "published", kind, day, snapshot, counts, started)
        await conn.execute(
            """INSERT INTO contributions (kind, submission_date, publish_id) VALUES ($1, $2, $3)
               ON CONFLICT (kind, submission_date) DO UPDATE SET publish_id = EXCLUDED.publish_id""",
            kind,
            day,
            publish_id,
        )
        for table, stage in stages.items():
            await schema.swap_leaf(conn, table, kind, day, stage)
        return publish_id

    return await with_short_locks(conn, swap, f"publish {kind} {day:%Y%m%d}")


async def _ledger(
    conn: asyncpg.Connection, action: str, kind: str, day: date, snapshot: str, counts, started: datetime
) -> int:
    return await conn.fetchval(
        """INSERT INTO publishes (kind, submission_date, snapshot, run_id, digest, rows, rollup_rows, skipped,
                                  started_at, action)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        kind,
        day,
        snapshot,
        counts["run_id"],
        counts["digest"],
        counts["rows"],
        counts["rollup_rows"],
        counts["skipped"],
        started,
        action,
    )
