"""What the listing routes answer, held in memory for one generation of the publish ledger (server/ledger.py).

The channels of a kind, the dates of a channel and the filter values of a channel and version change only
when a publish or a trim lands, and either moves the generation. So the listing routes answer from here, with
no query: the first listing request of a generation loads the channels and dates of every kind (one query,
however many requests wait for it), and the first /filters/ request for a channel and version loads its
values. Answers are kept encoded, with the policy applied (release left out of an anonymous caller's channels;
blacklisted metrics, and auth-only ones for anonymous callers, left out of /filters/), so a listing answer
costs no query, no JSON encoding and no gzip.

This is not the response cache (server/cache.py, `API_CACHE_BYTES`, which may be off): it is always on and
holds only the listings of the newest generation loaded, as many as the catalog tables have distinct rows
(kinds x channels x versions x dates, and the filter values of the channels and versions asked for); an older
generation's are dropped when a newer one is loaded. If the database goes away, what was loaded keeps being
served as long as the ledger names the same generation (it does between background polls); what was not
loaded yet fails as every query does, with a 503.
"""

import asyncio
from collections.abc import Callable

import orjson

from server.cache import Body
from server.errors import not_found
from server.params import KINDS, yyyymmdd
from server.queries import Reader

NO_FILTERS = "No filters for this channel and version."
EMPTY = Body(b"[]")  # the dates of a channel without data


def _body(payload: object) -> Body:
    return Body(orjson.dumps(payload))


def _loaded(loading: asyncio.Future | None) -> bool:
    """Whether `loading` is usable: running, or done without failing (a failed load is tried again)."""
    return loading is not None and not (loading.done() and (loading.cancelled() or loading.exception()))


async def _shared(loading: asyncio.Future):
    """The result of a load that several requests may wait for: a request that goes away does not cancel it."""
    return await asyncio.shield(loading)


class Listings:
    """The listing answers of one generation: channels and dates from `rows`, filter values loaded when asked."""

    def __init__(
        self, generation: int, rows: list[tuple], reader: Reader, listed: Callable[[list[str]], dict[bool, list[str]]]
    ) -> None:
        self.generation = generation
        self._reader, self._listed = reader, listed
        channels: dict[str, list[str]] = {kind: [] for kind in KINDS}
        dates: dict[tuple[str, str], list[dict[str, str]]] = {}
        for kind, channel, version, day in rows:  # ordered by kind, channel, then newest first
            listed_dates = dates.setdefault((kind, channel), [])
            if not listed_dates:
                channels[kind].append(channel)
            listed_dates.append({"version": str(version), "date": yyyymmdd(day)})
        self._channels = {
            (kind, is_authed): _body([c for c in names if is_authed or c != "release"])
            for kind, names in channels.items()
            for is_authed in (False, True)
        }
        self._dates = {key: _body(listed) for key, listed in dates.items()}
        # catalog_dates and catalog_filters are written from the same rows by each publish and trimmed together,
        # so a channel and version without dates has no filter values either.
        self._versions = {(channel, version) for _, channel, version, _ in rows}
        self._filters: dict[tuple[str, int], dict[bool, Body | None]] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[dict[bool, Body | None]]] = {}

    async def channels(self, kind: str, is_authed: bool) -> Body:
        return self._channels[(kind, is_authed)]

    async def dates(self, kind: str, channel: str) -> Body:
        return self._dates.get((kind, channel), EMPTY)

    async def filters(self, channel: str, version: int, is_authed: bool) -> Body:
        """The values of each filter, as this caller may see them; 404 when the channel and version have none."""
        key = (channel, version)
        answers = self._filters.get(key)
        if answers is None:
            if key not in self._versions:
                raise not_found(NO_FILTERS)
            if not _loaded(self._loading.get(key)):
                self._loading[key] = asyncio.ensure_future(self._load_filters(key))
            answers = await _shared(self._loading[key])
        body = answers[is_authed]
        if body is None:
            raise not_found(NO_FILTERS)
        return body

    async def _load_filters(self, key: tuple[str, int]) -> dict[bool, Body | None]:
        found = await self._reader.filters(*key)
        metrics = self._listed(found.pop("metric", []))
        answers: dict[bool, Body | None] = {}
        for is_authed in (False, True):
            options = {"metric": metrics[is_authed], **found}
            options = {name: values for name, values in options.items() if values}
            answers[is_authed] = _body(options) if options else None
        self._filters[key] = answers
        del self._loading[key]
        return answers


class Catalog:
    """The Listings of the generation asked for, loaded once; `listed` is the metric names /filters/ shows
    each kind of caller (server/policy.py's `listed_metrics`)."""

    def __init__(self, reader: Reader, listed: Callable[[list[str]], dict[bool, list[str]]]) -> None:
        self._reader, self._listed = reader, listed
        self._listings: Listings | None = None  # the newest loaded
        self._generation: int | None = None  # the generation being loaded, or loaded
        self._loading: asyncio.Future[Listings] | None = None

    async def at(self, generation: int) -> Listings:
        if self._listings is not None and self._listings.generation == generation:
            return self._listings
        if generation != self._generation or not _loaded(self._loading):
            self._generation, self._loading = generation, asyncio.ensure_future(self._load(generation))
        return await _shared(self._loading)

    def clear(self) -> None:
        """Load again on the next listing request (/clear-cache)."""
        self._listings = self._generation = self._loading = None

    async def _load(self, generation: int) -> Listings:
        listings = Listings(generation, await self._reader.catalog_dates(), self._reader, self._listed)
        if generation == self._generation:  # not overtaken by a newer generation (or a clear) meanwhile
            self._listings = listings
        return listings
