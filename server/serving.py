"""Running the app on a socket: aiohttp's AppRunner, except that requests aiohttp cannot parse get the API's answer.

aiohttp answers a request it cannot parse (a request line over the limit, raw bytes outside ASCII in the URL, a
broken header) itself, before any middleware runs, as text/plain without the app's headers, and it has no hook
for that answer. Its connection handler's `handle_error` makes it, so this runner's connections override it to
send the API's JSON error (`{"code", "description"}`) with the security and CORS headers of every answer.

The same connections enforce API_MAX_CONNECTIONS: asyncio's server has no limit of its own (its `backlog` only
bounds the connections not yet accepted), so one past the limit is closed as soon as it is accepted. The read
deadlines are aiohttp's own knobs, set in create_app: `keepalive_timeout`, armed when a connection opens and
after each answer and not pushed back by bytes trickling in, closes a connection whose request head is not
whole in time; `lingering_time` bounds reading the body of an answered request.
"""

import asyncio
from http import HTTPStatus
from typing import NamedTuple

from aiohttp import hdrs, web
from prometheus_client import Counter

from server.errors import http_error
from server.keys import METRICS, SETTINGS
from server.middlewares import SECURITY_HEADERS

MAX_DESCRIPTION = 200  # characters of aiohttp's message kept (it quotes the request line it could not parse)


class Limits(NamedTuple):
    max_connections: int
    shed: Counter  # counts the connections closed for it


class JsonErrorHandler(web.RequestHandler):
    """One connection; its unparsable requests (and failures outside the middlewares) answered as JSON, and
    closed at once when the server already holds its most connections."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if server is not None and len(server.connections) > server.limits.max_connections:
            server.limits.shed.labels("connections").inc()
            self.force_close()

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if an answer was already begun
        lines = (message or "").strip().splitlines() or [HTTPStatus(status).phrase]
        response = http_error(status, lines[0][:MAX_DESCRIPTION].rstrip(":"))
        response.headers.update(SECURITY_HEADERS)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"  # the request's Origin was not read
        response.force_close()
        return response


class _Server(web.Server):
    limits: "Limits"

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """aiohttp's AppRunner (start-up, cleanup, graceful shutdown) whose connections are JsonErrorHandlers."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server; only the connections it makes differ
        server.limits = Limits(self.app[SETTINGS].max_connections, self.app[METRICS].shed)
        self.app[METRICS].gauge("api_connections", "Open connections.", lambda: len(server.connections))
        return server


async def start(app: web.Application, host: str, port: int, **runner_options) -> AppRunner:
    """The app set up (database pool open) and listening; the caller cleans the runner up."""
    runner = AppRunner(app, **runner_options)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
    except BaseException:  # what did start (the JWKS session, a pool) is closed again
        await runner.cleanup()
        raise
    return runner


async def serve_until_stopped(app: web.Application, host: str, port: int, **runner_options) -> None:
    """Serve until SIGINT or SIGTERM (aiohttp's GracefulExit ends the loop), then finish the requests in flight
    (for up to 10 s) and close the pool."""
    runner = await start(app, host, port, handle_signals=True, shutdown_timeout=10, **runner_options)
    try:
        print(f"Serving on http://{host}:{port} (Ctrl-C stops)", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
