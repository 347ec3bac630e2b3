"""Where the store is: DSN resolution from the declared settings, and connections made from it.

The job writes through the read-write DSN (`DATABASE_URL`, else the original's `POSTGRES_*`); the API reads
through the read-only one (`DATABASE_RO_URL`, else `POSTGRES_RO_HOST`, else the read-write one).
"""

import asyncpg

from aggregator.settings import setting

# The database went away under an open connection: the server shut down, crashed or restarted, the backend was
# terminated, the network dropped. The work in flight is lost (its transaction rolls back); later work can succeed.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


class NoDatabase(RuntimeError):
    """No database is configured, or it does not answer."""


def connect_options(read_only: bool = False) -> dict | None:
    """Keyword arguments for `asyncpg.connect` / `asyncpg.create_pool`, or None when no database is configured.

    The statement cache is configurable because pgbouncer in transaction mode hands each transaction a
    different server connection, where a statement prepared on another one does not exist.
    """
    cache = {"statement_cache_size": int(setting("DATABASE_STATEMENT_CACHE_SIZE"))}
    if read_only:
        if url := setting("DATABASE_RO_URL"):
            return {"dsn": url, **cache}
        if host := setting("POSTGRES_RO_HOST"):
            return _keywords(host) | cache
    if url := setting("DATABASE_URL"):
        return {"dsn": url, **cache}
    if host := setting("POSTGRES_HOST"):
        return _keywords(host) | cache
    return None


def _keywords(host: str) -> dict:
    """The original's settings as keyword arguments, not a URL: a password needs no escaping."""
    user, password, database = setting("POSTGRES_USER"), setting("POSTGRES_PASS"), setting("POSTGRES_DB")
    return {"host": host, "user": user, "password": password, "database": database}


def configured() -> bool:
    return connect_options() is not None


async def connect(read_only: bool = False) -> asyncpg.Connection:
    options = connect_options(read_only)
    if options is None:
        raise NoDatabase("no database configured: set DATABASE_URL (or POSTGRES_HOST, POSTGRES_USER, ...)")
    try:
        return await asyncpg.connect(**options)
    except OSError as error:  # refused, unreachable, unknown host: say which database
        where = options.get("host") or options.get("dsn", "").rpartition("@")[2]
        raise NoDatabase(f"cannot connect to the database at {where}: {error}") from error
