"""Answers that depend on the published data: ETag and 304, the response cache, gzip, Cache-Control; the
listing routes' answers come from the catalog (server/catalog.py), the others from queries.

The ETag is the publish ledger's newest id (any publish or trim changes it), plus whether the caller is
authenticated (the channel list and /filters/ differ), so a quoted or unquoted `If-None-Match` that a
browser or a script echoes back gets a 304 until the data changes. A 304 is given only for an answer that
exists: it is taken from the cache or computed first, so a metric that does not exist gets its 404. A large
answer is sent in pieces as it is encoded (server/stream.py), and cached if it fits.
"""

import hashlib
from collections.abc import Awaitable, Callable, Hashable

from aiohttp import hdrs, web

from server.cache import Body
from server.catalog import Listings
from server.encoding import JSON, dumps, takes_gzip
from server.keys import CACHE, CATALOG, LEDGER, METRICS, POLICY_TAG, SETTINGS
from server.policy import authed
from server.stream import Streamed, send


def policy_tag(settings) -> str:
    """A short digest of the settings that change answers, so a restart with new rules changes the ETag."""
    rules = (
        settings.blacklist,
        sorted(settings.auth_only_metrics),
        sorted(settings.public_release_metrics),
        settings.allow_all_release_metrics,
        settings.min_clients,
    )
    return hashlib.sha256(repr(rules).encode()).hexdigest()[:8]


def etag_matches(header: str | None, etag: str) -> bool:
    """`If-None-Match` names this tag: quoted or not (the original only matched unquoted), weak or not,
    in a list, or `*`."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip().removeprefix("W/").strip('"')
        if tag in (etag, "*"):
            return True
    return False


def encoded(request: web.Request, body: Body, headers: dict[str, str]) -> web.Response:
    """The JSON body, gzip-encoded when the client accepts it and it is worth it."""
    if body.gzipped is not None and takes_gzip(request):
        response = web.Response(body=body.gzipped, headers=headers, content_type=JSON)
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
        return response
    return web.Response(body=body.raw, headers=headers, content_type=JSON)


async def data_answer(
    request: web.Request, key: Hashable, compute: Callable[[], Awaitable[object]]
) -> web.StreamResponse:
    """Answer from the cache, or from `compute()` (whose JSON is then cached), with validators and max-age."""
    return await _answer(request, key, lambda generation: compute())


async def listing_answer(
    request: web.Request, key: Hashable, answer: Callable[[Listings], Awaitable[Body]]
) -> web.Response:
    """A listing route's answer, as `data_answer`, from the catalog of the generation its ETag names."""
    catalog = request.app[CATALOG]

    async def compute(generation: int) -> Body:
        return await answer(await catalog.at(generation))

    return await _answer(request, key, compute)


async def _answer(
    request: web.Request, key: Hashable, compute: Callable[[int], Awaitable[object]]
) -> web.StreamResponse:
    """The cached answer, else `compute(generation)`'s (an answer, its encoded Body, or a Streamed one), with the
    validators."""
    app = request.app
    settings = app[SETTINGS]
    is_authed = await authed(request)
    generation = await app[LEDGER].generation()
    etag = f"{generation}-{app[POLICY_TAG]}" + ("-auth" if is_authed else "")
    headers = {
        hdrs.ETAG: f'"{etag}"',
        hdrs.CACHE_CONTROL: f"{'private' if is_authed else 'public'}, max-age={settings.max_age}",
        hdrs.VARY: "Accept-Encoding, Authorization",
    }
    cache = app[CACHE]
    full_key = (generation, is_authed, key)
    body = cache.get(full_key)
    app[METRICS].cache.labels("hit" if body else "miss").inc()
    revalidated = etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag)
    if body is None:
        answer = await compute(generation)
        if isinstance(answer, Streamed):
            if not revalidated:
                keep, timeout = cache.largest(full_key), settings.send_timeout_seconds
                response, body = await send(request, answer, headers, keep, timeout)
                if body is not None:
                    cache.put(full_key, body)
                return response
        else:
            body = answer if isinstance(answer, Body) else Body(dumps(answer))
            cache.put(full_key, body)
    if revalidated:  # only once the answer is known to exist
        return web.Response(status=304, headers=headers)
    return encoded(request, body, headers)
