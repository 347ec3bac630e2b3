"""Error answers: every error is JSON `{"code", "description"}`, the shape the original used for auth errors."""

import asyncpg
import orjson
from aiohttp import web

from aggregator.store.connect import CONNECTION_LOST

# What "the database cannot answer now" looks like: refused or lost connections, a server shutting down or
# starting up, too many connections, a pool wait or statement timeout. All of them are a 503, and pass.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    TimeoutError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def error(exception: type[web.HTTPException], code: str, description: str, **kwargs) -> web.HTTPException:
    """An HTTP exception whose body is the JSON error (raise it, or return it from a middleware)."""
    text = orjson.dumps({"code": code, "description": description}).decode()
    return exception(text=text, content_type="application/json", **kwargs)


def error_response(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
    """The same JSON error as a response, for middlewares (which return rather than raise)."""
    body = orjson.dumps({"code": code, "description": description})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 500: "internal_error"}


def http_error(status: int, description: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error aiohttp itself raised (no route, wrong method, a request it cannot parse) as the JSON error."""
    return error_response(status, HTTP_CODES.get(status, "error"), description, headers)


def not_found(description: str) -> web.HTTPException:
    return error(web.HTTPNotFound, "not_found", description)


class Unavailable(Exception):
    """The database cannot answer now (down, overloaded, or a query hit the statement timeout): a 503."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
