"""Operational routes: dockerflow's three, the readiness probe, /status, the authenticated /authed and
/clear-cache, /metrics (or its own port's site) and /openapi.json."""

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import web

from aggregator.store.schema import SchemaError, check_schema
from server.errors import DATABASE_ERRORS, not_found
from server.keys import CACHE, CATALOG, METRICS, POOL, SETTINGS
from server.metrics import ApiMetrics
from server.openapi import spec
from server.policy import require_auth


async def status(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def lbheartbeat(request: web.Request) -> web.Response:
    return web.Response()


async def ready(request: web.Request) -> web.Response:
    """The readiness probe: it does not ask the database. The pod started with a reachable database at the
    schema it reads; while the database is away the catalog and the response cache still answer, and queries
    answer 503 themselves, so a Postgres blip does not take every pod out of service at once."""
    return web.json_response({"status": "ok"})


async def heartbeat(request: web.Request) -> web.Response:
    """Dockerflow's health check, with the database (reachable, and at the schema version we read)."""
    try:
        async with request.app[POOL].acquire(timeout=5) as conn:
            await check_schema(conn)
    except (SchemaError, *DATABASE_ERRORS) as failure:
        body = {"status": "error", "checks": {"database": "error"}, "details": {"database": str(failure)}}
        return web.json_response(body, status=503, dumps=lambda o: orjson.dumps(o).decode())
    return web.json_response({"status": "ok", "checks": {"database": "ok"}, "details": {}})


async def version(request: web.Request) -> web.Response:
    path = Path(request.app[SETTINGS].version_file)
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise not_found("version.json not found") from None
    return web.json_response(document, dumps=lambda o: orjson.dumps(o).decode())


async def authed(request: web.Request) -> web.Response:
    await require_auth(request)
    return web.Response(text="Authenticated")


async def clear_cache(request: web.Request) -> web.Response:
    await require_auth(request)
    request.app[CACHE].clear()
    request.app[CATALOG].clear()
    return web.Response(text="Cache Cleared")


def _exposition(metrics: ApiMetrics) -> web.Response:
    return web.Response(body=metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def metrics(request: web.Request) -> web.Response:
    if request.app[SETTINGS].metrics_port:
        raise not_found("/metrics is served on its own port.")
    return _exposition(request.app[METRICS])


async def metrics_site(app: web.Application) -> AsyncIterator[None]:
    """/metrics alone on API_METRICS_PORT, for the scraper inside the cluster: the service's internals (routes,
    pool, cache) are not told to the public port."""
    settings = app[SETTINGS]

    async def scrape(request: web.Request) -> web.Response:
        return _exposition(app[METRICS])

    side = web.Application()
    side.router.add_get("/metrics", scrape)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.metrics_port).start()
        yield
    finally:
        await runner.cleanup()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec(), dumps=lambda o: orjson.dumps(o).decode())
