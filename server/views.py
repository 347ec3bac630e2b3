"""The data routes of the original (channels, dates, filters, metric) and the freshness route; the listings
(channels, dates, filters) are answered from the catalog (server/catalog.py)."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

from aiohttp import web

from server.cache import Body
from server.encoding import dumps
from server.errors import error, not_found
from server.histograms import (
    USE_COUNTER,
    Cell,
    Layout,
    Row,
    client_statistics,
    dominant_layout,
    statistics,
    sum_cells,
    sum_client_cells,
    use_counter,
)
from server.keys import OFFLOADER, READER, SETTINGS
from server.offload import Offloader
from server.params import MetricQuery, channel_of, filters_query, kind_of, metric_query, yyyymmdd
from server.policy import allow_metric, authed, require_auth
from server.queries import COUNT_PREFIX, AnswerTooLarge, LargeAnswer, Reader
from server.respond import data_answer, listing_answer
from server.stream import PIECE_CELLS, Streamed, json_pieces

CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection first: seen in /metrics only
# A use counter's false bucket is documents destroyed less those that used the feature, counted per ping: a
# client-level version of it would need each client's documents, which are not kept apart.
NO_CLIENT_USE_COUNTERS = "Use counters have no client-level aggregates: ask for aggregation=pings."


async def channels(request: web.Request) -> web.Response:
    kind = kind_of(request.match_info["kind"])
    is_authed = await authed(request)
    return await listing_answer(request, ("channels", kind), lambda listings: listings.channels(kind, is_authed))


async def dates(request: web.Request) -> web.Response:
    kind = kind_of(request.match_info["kind"])
    channel = channel_of(request.match_info["channel"])
    if channel == "release":
        await require_auth(request)
    return await listing_answer(request, ("dates", kind, channel), lambda listings: listings.dates(kind, channel))


async def filters(request: web.Request) -> web.Response:
    channel, version = filters_query(request.query, request.path)
    if channel == "release":
        await require_auth(request)
    is_authed = await authed(request)
    return await listing_answer(
        request, ("filters", channel, version), lambda listings: listings.filters(channel, version, is_authed)
    )


async def metric(request: web.Request) -> web.StreamResponse:
    kind = kind_of(request.match_info["kind"])
    channel = channel_of(request.match_info["channel"])
    query = metric_query(kind, channel, request.query, request.path)
    await allow_metric(request, channel, query.metric)
    if query.metric.startswith(COUNT_PREFIX):  # count histograms are asked for by their own name
        raise not_found("Cannot find this histogram definition.")
    if query.by_clients and query.metric.startswith("USE_COUNTER2_"):
        raise not_found(NO_CLIENT_USE_COUNTERS)
    reader, offloader, key = request.app[READER], request.app[OFFLOADER], ("metric", query)
    fewest = request.app[SETTINGS].min_clients.of(query.channel) if query.by_clients else None
    try:
        try:
            return await data_answer(request, key, lambda: _inline(reader, offloader, query, fewest))
        except LargeAnswer as large:
            async with offloader.budget.hold(large.stored):  # then read, unless the cache has it by then
                if request.transport is None:  # the client left while it waited: no one to answer
                    return web.Response(status=CLIENT_GONE)
                return await data_answer(request, key, lambda: _large(reader, offloader, query, fewest))
    except AnswerTooLarge as big:
        raise error(web.HTTPBadRequest, "answer_too_large", too_large(big)) from None


def too_large(big: AnswerTooLarge) -> str:
    """What a refused answer would have held, and how to ask for less."""
    dates, labels = (f"{n:,} {what}{'s' if n != 1 else ''}" for n, what in ((big.dates, "date"), (big.labels, "label")))
    return (
        f"This answer would hold {big.cells:,} bucket counts ({dates}, {labels}), more "
        f"than the {big.bound:,} one answer may hold. Narrow the request: fewer dates, or one label or a few "
        "(label=...), per request."
    )


@dataclass(frozen=True)
class Found:
    """What an answer is made of: its layout, its description and how to sum its rows."""

    layout: Layout
    description: str
    summed: Callable[[], dict[tuple[date, str], Cell]]


async def _inline(reader: Reader, offloader: Offloader, query: MetricQuery, fewest: int | None) -> Body:
    """An answer whose rows hold at most `offloader.inline_cells` bucket counts, summed and encoded on the loop;
    raises LargeAnswer (from the reader, having read no histogram) for a larger one."""
    found = await _found(reader, query, within=offloader.inline_cells)
    head, cells = _served(found, fewest)
    return Body(dumps(head | {"data": list(_entries(query, cells, found.layout))}))


async def _large(reader: Reader, offloader: Offloader, query: MetricQuery, fewest: int | None) -> Body | Streamed:
    """A large answer: summed on a worker thread, then encoded there, in pieces when it spans several."""
    found = await _found(reader, query, within=None)
    head, cells = await offloader.run(lambda: _served(found, fewest))
    width = max((len(cell.histogram) for cell in cells.values()), default=1)
    entries = _entries(query, cells, found.layout)
    if len(cells) * width <= PIECE_CELLS:
        return await offloader.run(lambda: Body(dumps(head | {"data": list(entries)})))
    return Streamed(json_pieces(head, "data", entries, max(1, PIECE_CELLS // width)), offloader.run)


async def _found(reader: Reader, query: MetricQuery, within: int | None) -> Found:
    """The original's answer's makings: its rows read here (unless they hold more than `within` bucket counts)."""
    if query.metric.startswith("USE_COUNTER2_"):
        numerators = await reader.cells(query, query.metric, within)
        scope = "CONTENT" if query.metric.endswith("_DOCUMENT") else "TOP_LEVEL_CONTENT"
        documents = await reader.cells(query, f"{COUNT_PREFIX}{scope}_DOCUMENTS_DESTROYED", within)
        layout = USE_COUNTER

        def summed() -> dict[tuple[date, str], Cell]:
            return _use_counter(numerators, documents, query.dates)
    else:
        rows = await reader.cells(query, await reader.stored_name(query.metric), within)
        if not rows:
            if await reader.known(query.channel, query.version, [query.metric, COUNT_PREFIX + query.metric]):
                raise not_found("No data found for this metric.")
            what = "scalar" if query.metric.startswith("SCALARS_") else "histogram"
            raise not_found(f"Cannot find this {what} definition.")
        dominant = dominant_layout(rows)
        layout = (await reader.layouts({dominant}))[dominant]
        add = sum_client_cells if query.by_clients else sum_cells

        def summed() -> dict[tuple[date, str], Cell]:
            return add([r for r in rows if r.layout == dominant])

    undescribed = query.metric.startswith(("SIMPLE_MEASURES_", "USE_COUNTER"))  # "" in the original too
    description = "" if undescribed else await reader.description(query.metric)
    return Found(layout, description, summed)


def _served(found: Found, fewest: int | None) -> tuple[dict, dict[tuple[date, str], Cell]]:
    """The answer but its entries, which come last, and the cells to serve: a client-level answer (`fewest` not
    None) withholds the entries of fewer clients than `fewest` and says how many it withheld."""
    head = {"buckets": found.layout.buckets(), "kind": found.layout.kind, "description": found.description}
    cells = found.summed()
    if fewest is None:
        return head, cells
    served = {key: cell for key, cell in cells.items() if cell.clients >= fewest}
    return head | {"min_clients": fewest, "withheld": len(cells) - len(served)}, served


def _entries(query: MetricQuery, cells: dict[tuple[date, str], Cell], layout: Layout) -> Iterator[dict]:
    """Entries in the order of the dates asked for, labels sorted within a date; made as they are taken."""
    order = {day: i for i, day in enumerate(query.dates)}
    texts = {day: yyyymmdd(day) for day in query.dates}
    described = client_statistics if query.by_clients else statistics
    for day, label in sorted(cells, key=lambda key: (order[key[0]], key[1])):
        cell = cells[(day, label)]
        entry = {
            "date": texts[day],
            "label": label,
            "histogram": cell.histogram,
            "count": cell.count,
            "sum": cell.sum,
        }
        if query.by_clients:
            entry["clients"] = cell.clients
        if query.stats:
            entry |= described(cell, layout)
        yield entry


def _use_counter(numerators: list[Row], documents: list[Row], dates: tuple[date, ...]) -> dict[tuple[date, str], Cell]:
    """USE_COUNTER2_*: the false bucket derived from the documents destroyed (the original's Bug 1412382)."""
    cells = use_counter(_summed(numerators), _summed(documents), dates)
    if not cells:
        raise not_found("No data found for this metric.")
    return cells


def _summed(rows: list[Row]) -> dict[tuple[date, str], Cell]:
    if not rows:
        return {}
    layout = dominant_layout(rows)
    return sum_cells([r for r in rows if r.layout == layout])


async def freshness(request: web.Request) -> web.Response:
    """Per kind and channel, the newest date served and when it was last published."""
    is_authed = await authed(request)

    async def compute() -> dict:
        rows, last = await request.app[READER].freshness()
        kinds: dict[str, dict] = {"build_id": {}, "submission_date": {}}
        for r in rows:
            if r.channel != "release" or is_authed:
                kinds[r.kind][r.channel] = {
                    "newest_date": yyyymmdd(r.newest_date),
                    "newest_submission_date": yyyymmdd(r.newest_submission_date),
                    "published_at": r.published_at.isoformat(),
                }
        return {"published_at": last.isoformat() if last else None, "kinds": kinds}

    return await data_answer(request, ("freshness",), compute)
