"""The application factory, in the aiohttp-demos (polls) style: `create_app(settings)` wires small `setup_*`
steps; the database pool lives in a cleanup context, so it opens at start-up and closes on shutdown."""

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

import asyncpg
import uvloop
from aiohttp import web

from aggregator.store.connect import connect_options
from aggregator.store.schema import SchemaError, check_schema
from server.auth import Authenticator
from server.cache import ResponseCache
from server.catalog import Catalog
from server.config import ServerSettings
from server.jwks import SigningKeys
from server.keys import AUTH, CACHE, CATALOG, LEDGER, METRICS, OFFLOADER, POLICY_TAG, POOL, READER, SETTINGS
from server.ledger import Ledger
from server.metrics import ApiMetrics
from server.middlewares import setup_middlewares
from server.offload import Offloader
from server.ops import metrics_site
from server.policy import listed_metrics
from server.queries import Reader
from server.respond import policy_tag
from server.routes import setup_routes
from server.serving import serve_until_stopped

MAX_URL_BYTES = 65536  # several hundred dates fit (telemetry.js splits at 4094, one client sends 256 dates)
APPLICATION_NAME = "telemetry-aggregates-api"
READ_WRITE_WARNING = (
    "server: no read-only DSN (DATABASE_RO_URL or POSTGRES_RO_HOST) is set: reading with the read-write one"
)


async def keep_session(conn: asyncpg.Connection) -> None:
    """What the pool runs when a connection comes back. The service changes no session state (no SET, LISTEN,
    locks or cursors; every statement stands alone), so asyncpg's default reset query, a round trip on every
    request, is skipped; a connection somehow left in a transaction is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def database(app: web.Application) -> AsyncIterator[None]:
    """The pool on the (read-only allowed) DSN; refuses to start on a schema this code does not know."""
    settings = app[SETTINGS]
    pool = await asyncpg.create_pool(
        **settings.database,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        max_inactive_connection_lifetime=300,
        reset=keep_session,
        server_settings={
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(settings.statement_timeout_ms),
            "default_transaction_read_only": "on",
            # Plan each prepared query once, pruning leaves at execution: re-planning over the day leaves
            # cost three times the execution of a 30-date answer.
            "plan_cache_mode": "force_generic_plan",
        },
    )
    try:
        async with pool.acquire() as conn:
            await check_schema(conn)
        reader = Reader(
            pool,
            acquire_timeout=settings.statement_timeout_ms / 1000,
            max_answer_cells=settings.max_answer_cells,
        )
        app[POOL] = pool
        app[READER] = reader
        app[CATALOG] = Catalog(reader, partial(listed_metrics, settings))
        app[LEDGER] = Ledger(settings.ledger_poll_seconds, reader.generation, [app[CACHE].clear, reader.forget])
        app[METRICS].gauge("api_pool_connections", "Open database connections.", pool.get_size)
        app[METRICS].gauge("api_pool_idle_connections", "Idle database connections.", pool.get_idle_size)
        yield
    finally:
        if LEDGER in app:
            await app[LEDGER].close()
        await pool.close()


async def authenticator(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[AUTH].close()


def setup_cache(app: web.Application) -> None:
    cache = app[CACHE] = ResponseCache(app[SETTINGS].cache_bytes)
    app[METRICS].gauge("api_cache_entries", "Responses in the response cache.", lambda: len(cache))
    app[METRICS].gauge("api_cache_bytes", "Bytes the response cache is charged for.", lambda: cache.bytes)


async def offloader(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[OFFLOADER] = Offloader(settings.answer_threads, settings.offload_cells, settings.answer_budget_cells)
    yield
    app[OFFLOADER].close()


def setup_auth(app: web.Application) -> None:
    settings = app[SETTINGS]
    keys = SigningKeys(settings.jwks, settings.jwks_refresh_seconds, settings.jwks_keep_seconds)
    app[AUTH] = Authenticator(keys, settings.audience, settings.issuer)
    app[POLICY_TAG] = policy_tag(settings)
    app.cleanup_ctx.append(authenticator)


def setup_metrics(app: web.Application) -> None:
    app[METRICS] = ApiMetrics()
    if app[SETTINGS].metrics_port:
        app.cleanup_ctx.append(metrics_site)


def create_app(settings: ServerSettings) -> web.Application:
    app = web.Application(
        handler_args={
            "max_line_size": MAX_URL_BYTES,
            "keepalive_timeout": settings.header_timeout_seconds,  # the head's deadline (server/serving.py)
            "lingering_time": settings.body_timeout_seconds,
        }
    )
    app[SETTINGS] = settings
    setup_metrics(app)
    setup_cache(app)
    app.cleanup_ctx.append(offloader)
    setup_auth(app)
    setup_middlewares(app)
    setup_routes(app)
    app.cleanup_ctx.append(database)
    return app


def settings_from_env(host: str | None = None, port: int | None = None, database: dict | None = None) -> ServerSettings:
    """The environment's settings; the database is the read-only DSN's unless given."""
    if database is None:
        database = connect_options(read_only=True)
        if database is None:
            raise SystemExit("server: no database configured: set DATABASE_URL (or POSTGRES_HOST, POSTGRES_USER, ...)")
        if database == connect_options():
            print(READ_WRITE_WARNING, file=sys.stderr, flush=True)
    settings = ServerSettings.from_env(database)
    return replace(settings, host=host or settings.host, port=port or settings.port)


def serve(settings: ServerSettings) -> None:
    """Run on uvloop (a third less CPU per request than asyncio's loop) until SIGINT or SIGTERM, then finish the
    requests in flight and close the pool."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        access_log = web.access_logger if settings.access_log else None
        uvloop.run(serve_until_stopped(create_app(settings), settings.host, settings.port, access_log=access_log))
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    except SchemaError as failure:
        raise SystemExit(f"server: {failure}") from failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="Serve the aggregates HTTP API.")
    parser.add_argument("--host", help="address to listen on (default: $API_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $API_PORT)")
    args = parser.parse_args(argv)
    serve(settings_from_env(args.host, args.port))
    return 0
