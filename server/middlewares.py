"""Cross-cutting HTTP behaviour: JSON errors and 503s, latency metrics, the limit on requests in flight, CORS,
security headers, the trailing slash redirect and the optional https redirect of the original."""

import logging
import time

import asyncpg
from aiohttp import hdrs, web

from server.errors import DATABASE_ERRORS, Unavailable, error_response, http_error
from server.keys import METRICS, SETTINGS

log = logging.getLogger("server")

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; default-src 'self'",
    "X-Content-Security-Policy": "frame-ancestors 'none'; default-src 'self'",
}
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
HTTPS_EXEMPT = ("/status", "/__version__", "/__heartbeat__", "/__lbheartbeat__")  # prefixes, as the original
RETRY_AFTER = "5"
PROBES = frozenset({"/__lbheartbeat__", "/__ready__"})  # answered whatever the load: a full pod is still alive
BUSY_RETRY_AFTER = "1"  # a full server frees slots within milliseconds to seconds


class OutageLog:
    """One warning per `seconds` while the database is unavailable, with the count of failures since the last:
    a line per failed request would be thousands of lines a minute under load (the metric counts each)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = -float("inf")
        self._held = 0

    def warning(self, failure: BaseException) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        since = f" ({self._held} more since the last warning)" if self._held else ""
        log.warning("database unavailable: %r%s", failure, since)
        self._next, self._held = now + self.seconds, 0


_outage_log = OutageLog(seconds=10)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def https_redirect(request: web.Request, handler) -> web.StreamResponse:
    """Plain-HTTP requests go to https (API_FORCE_HTTPS), unless a TLS proxy in front says it was https."""
    if (
        not request.secure
        and request.headers.get("X-Forwarded-Proto") != "https"
        and not request.path.startswith(HTTPS_EXEMPT)
    ):
        raise web.HTTPMovedPermanently(request.url.with_scheme("https"))
    return await handler(request)


@web.middleware
async def measure(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exception:
        status = exception.status
        raise
    finally:
        request.app[METRICS].observe(_route(request), request.method, status, time.perf_counter() - started)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error answer is JSON; the database being unreachable or too slow is a 503 the client may retry."""
    try:
        return await handler(request)
    except web.HTTPException as exception:
        if len(exception.headers.get(hdrs.ALLOW, "")) > request.app[SETTINGS].max_allow_bytes:
            # The URL without its unknown parameters (server/params.py) would echo up to 64 KiB: the methods instead.
            exception.headers[hdrs.ALLOW] = ALLOWED_METHODS
        if exception.status < 400 or exception.content_type == "application/json":
            raise
        return _as_json(request, exception)
    except Unavailable as failure:
        return _unavailable(request, failure.code, failure.description)
    except asyncpg.QueryCanceledError:
        return _unavailable(request, "query_timeout", "The query took too long; try again, or ask for fewer dates.")
    except DATABASE_ERRORS as failure:
        _outage_log.warning(failure)
        return _unavailable(request, "database_unavailable", "The database is not answering; try again shortly.")
    except Exception:
        log.exception("unhandled error on %s", request.path_qs)
        return error_response(500, "internal_error", "Internal server error.")


class InFlight:
    """API_MAX_IN_FLIGHT: past it a request is answered 503 at once rather than queued, so the memory and the
    wait of what is accepted stay bounded and the client (or the proxy) retries elsewhere or later."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path in PROBES:
            return await handler(request)
        if self.count >= self.limit:
            request.app[METRICS].shed.labels("in_flight").inc()
            description = f"The server is handling its most requests ({self.limit}) at once; try again shortly."
            return error_response(503, "overloaded", description, {"Retry-After": BUSY_RETRY_AFTER})
        self.count += 1
        try:
            return await handler(request)
        finally:
            self.count -= 1


def _as_json(request: web.Request, exception: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, request too large) with a JSON body."""
    allow = {"Allow": ALLOWED_METHODS} if exception.status == 405 else None
    return http_error(exception.status, exception.reason, allow)


def _unavailable(request: web.Request, code: str, description: str) -> web.Response:
    request.app[METRICS].db_errors.labels(code).inc()
    return error_response(503, code, description, {"Retry-After": RETRY_AFTER})


@web.middleware
async def preflight(request: web.Request, handler) -> web.StreamResponse:
    """OPTIONS on any route: the CORS preflight answer (any origin; Authorization and Content-Type allowed)."""
    if request.method == hdrs.METH_OPTIONS and isinstance(request.match_info.http_exception, web.HTTPMethodNotAllowed):
        return web.Response(
            headers={
                "Allow": ALLOWED_METHODS,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "86400",
            }
        )
    return await handler(request)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included: CORS as the original (the Origin echoed, else *), no framing."""
    origin = request.headers.get(hdrs.ORIGIN)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin or "*"
    if origin:
        vary = response.headers.get(hdrs.VARY)
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
    response.headers.update(SECURITY_HEADERS)
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


def setup_middlewares(app: web.Application) -> None:
    # Only the trailing slash is added, as the original did: merging `//` would turn an empty channel
    # (`/channels//dates/`) into a redirect to another route (`/channels/dates/`) rather than a 404.
    slash = web.normalize_path_middleware(append_slash=True, merge_slashes=False)
    redirect = [https_redirect] if app[SETTINGS].force_https else []  # a layer less per request otherwise
    in_flight = InFlight(app[SETTINGS].max_in_flight)
    app[METRICS].gauge("api_requests_in_flight", "Requests being handled.", lambda: in_flight.count)
    app.middlewares.extend([*redirect, measure, in_flight.middleware, errors, preflight, slash])
    app.on_response_prepare.append(add_headers)
