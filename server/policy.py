"""Who may see which metric: the original's blacklist, auth-only metrics and release-channel rules."""

from aiohttp import web

from server.auth import AuthError
from server.config import ServerSettings
from server.errors import error, not_found
from server.keys import AUTH, AUTHED, SETTINGS
from server.queries import COUNT_PREFIX


async def authed(request: web.Request) -> bool:
    """Whether the caller is authenticated (checked once per request; without a header, nothing to check)."""
    if AUTHED not in request:
        header = request.headers.get("Authorization")
        request[AUTHED] = bool(header) and await request.app[AUTH].is_authed(header)
    return request[AUTHED]


async def require_auth(request: web.Request) -> None:
    """Return if authenticated, else answer 403 with the original's error code."""
    try:
        await request.app[AUTH].check(request.headers.get("Authorization"))
    except AuthError as failure:
        raise error(web.HTTPForbidden, failure.code, failure.description) from failure
    request[AUTHED] = True


def blacklisted(settings: ServerSettings, metric: str) -> bool:
    return any(pattern.match(metric) for pattern in settings.blacklist_patterns)


async def allow_metric(request: web.Request, channel: str, metric: str) -> None:
    """404 for a blacklisted metric on any channel; 403 for a release metric that is not public, or an
    auth-only metric, unless the caller is authenticated."""
    settings = request.app[SETTINGS]
    if blacklisted(settings, metric):
        raise not_found("This metric is not allowed to be served.")
    if channel == "release":
        if not (settings.allow_all_release_metrics or metric in settings.public_release_metrics):
            await require_auth(request)
    elif metric in settings.auth_only_metrics:
        await require_auth(request)


def listed_metrics(settings: ServerSettings, stored: list[str], is_authed: bool) -> list[str]:
    """The metric names /filters/ shows: `[[COUNT]]_` stripped, blacklisted ones never, auth-only ones to
    authenticated callers only."""
    names = sorted({m.removeprefix(COUNT_PREFIX) for m in stored})
    return [m for m in names if not blacklisted(settings, m) and (is_authed or m not in settings.auth_only_metrics)]
