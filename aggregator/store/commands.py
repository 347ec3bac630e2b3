"""The store's command line: `aggregator publish` and `aggregator db init | status | rebuild | trim`, and the
publish that follows `aggregator run` when a database is configured."""

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from aggregator.snapshot import KINDS, SnapshotError
from aggregator.store import schema
from aggregator.store.connect import NoDatabase, configured, connect
from aggregator.store.locks import LockBusy
from aggregator.store.publish import PublishError, publish_dates, rebuild
from aggregator.store.status import status
from aggregator.store.trim import cutoff, trim

# What the store's commands may raise for a reason the user can act on: printed, no traceback.
ERRORS = (
    NoDatabase,
    schema.SchemaError,
    PublishError,
    LockBusy,
    SnapshotError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

DB_ACTIONS = {
    "init": "create or migrate the schema (idempotent)",
    "status": "schema version, what is served, the latest publishes",
    "rebuild": "publish every run of a snapshot archive again",
    "trim": "drop the days older than the retention window",
}


def add_commands(commands: argparse._SubParsersAction, date: Callable[[str], str], count: Callable[[str], int]) -> None:
    """`publish` and `db`; `date` and `count` are the CLI's YYYYMMDD and 0-or-more argument types."""
    publish = commands.add_parser("publish", help="publish snapshot runs into the database")
    publish.add_argument("--snapshot", required=True, metavar="URL", help="zarr store written by `aggregator run`")
    publish.add_argument("--date", action="append", type=date, required=True, metavar="YYYYMMDD", help="repeatable")
    publish.add_argument(
        "--kind", action="append", choices=KINDS, help="build_id or submission_date; repeatable (default: both)"
    )
    db = commands.add_parser("db", help="manage the database", description="manage the database")
    # One parser per action, so that each has its own help and refuses the others' options.
    actions = db.add_subparsers(dest="action", required=True)
    for name, what in DB_ACTIONS.items():
        actions.add_parser(name, help=what, description=what)
    rebuild_parser = actions.choices["rebuild"]
    rebuild_parser.add_argument("--snapshot", required=True, metavar="URL", help="the snapshot archive")
    trim_parser = actions.choices["trim"]
    trim_parser.add_argument(
        "--keep-days", required=True, type=count, metavar="N", help="days kept before the base date"
    )
    trim_parser.add_argument("--base-date", type=date, metavar="YYYYMMDD", help="default today (UTC)")
    trim_parser.add_argument("--dry-run", action="store_true", help="list what would be dropped, drop nothing")


def publish_after_run(snapshot: str, dates: list[str], no_publish: bool) -> None:
    """`aggregator run` publishes what it wrote when a database is configured, unless told not to."""
    if no_publish:
        return
    if not configured():
        print("no database configured (DATABASE_URL or POSTGRES_HOST): the snapshot is not published")
        return
    print(f"publishing {len(dates)} submission dates")

    async def body(conn: asyncpg.Connection) -> None:
        await schema.migrate(conn)
        await publish_dates(conn, snapshot, dates, KINDS)

    asyncio.run(_with_connection(body))


def publish_command(args: argparse.Namespace) -> int:
    async def body(conn: asyncpg.Connection) -> None:
        await schema.check_schema(conn)
        await publish_dates(conn, args.snapshot, args.date, args.kind or KINDS)

    asyncio.run(_with_connection(body))
    return 0


def db_command(args: argparse.Namespace) -> int:
    async def body(conn: asyncpg.Connection) -> None:
        if args.action == "init":
            applied = await schema.migrate(conn)
            print(f"schema version {schema.SCHEMA_VERSION}" + (f", applied {applied}" if applied else ", up to date"))
        elif args.action == "status":
            print("\n".join(await status(conn)))
        elif args.action == "rebuild":
            await rebuild(conn, args.snapshot)
        else:
            await schema.check_schema(conn)
            base = datetime.strptime(args.base_date, "%Y%m%d").date() if args.base_date else None
            oldest = cutoff(args.keep_days, base)
            print(f"keeping submission dates from {oldest:%Y%m%d}" + (" (dry run)" if args.dry_run else ""))
            for trimmed in await trim(conn, oldest, args.dry_run):
                print(trimmed.line())

    asyncio.run(_with_connection(body))
    return 0


async def _with_connection(body: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    conn = await connect()
    try:
        await body(conn)
    finally:
        await conn.close()
