"""Who may see which metric: the original's blacklist, auth-only metrics and release-channel rules."""

import re
from bisect import bisect_left
from heapq import merge
from itertools import chain, filterfalse, groupby, pairwise

from aiohttp import web

from server.auth import AuthError
from server.config import ServerSettings
from server.errors import error, not_found
from server.keys import AUTH, AUTHED, SETTINGS
from server.queries import COUNT_PREFIX

_AFTER_COUNTED = COUNT_PREFIX[:-1] + chr(ord(COUNT_PREFIX[-1]) + 1)  # the first name past those with the prefix


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


def listed_metrics(settings: ServerSettings, stored: list[str]) -> dict[bool, list[str]]:
    """The metric names /filters/ shows, to anonymous (False) and authenticated (True) callers, from the stored
    names, sorted and distinct (catalog_lists'): `[[COUNT]]_` stripped, blacklisted ones never, auth-only ones to
    authenticated callers only. Linear in the names, with one regex match each: a million names take 0.5 s
    (matching each pattern in turn took 4.5 s), once per publish seen."""
    start = bisect_left(stored, COUNT_PREFIX)
    end = bisect_left(stored, _AFTER_COUNTED, start)
    names = stored
    if start < end:  # count histograms: a contiguous run of sorted names, merged back once stripped
        counted = sorted(m.removeprefix(COUNT_PREFIX) for m in stored[start:end])
        names = [m for m, _ in groupby(merge(stored[:start], stored[end:], counted))]
    if settings.blacklist_patterns:
        hidden = re.compile("|".join(f"(?:{p.pattern})" for p in settings.blacklist_patterns)).match
        names = list(filterfalse(hidden, names))
    return {True: names, False: _without(names, settings.auth_only_metrics)}


def _without(names: list[str], hidden: frozenset[str]) -> list[str]:
    """The sorted `names` but those in `hidden` (a few), found by bisection rather than a test of each name."""
    found = sorted(i for m in hidden if (i := bisect_left(names, m)) < len(names) and names[i] == m)
    return list(chain.from_iterable(names[a + 1 : b] for a, b in pairwise([-1, *found, len(names)])))
