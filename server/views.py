"""The data routes of the original (channels, dates, filters, metric) and the freshness route; the listings
(channels, dates, filters) are answered from the catalog (server/catalog.py)."""

from datetime import date

from aiohttp import web

from server.errors import error, not_found
from server.histograms import USE_COUNTER, Cell, Layout, Row, dominant_layout, statistics, sum_cells, use_counter
from server.keys import READER
from server.params import MetricQuery, channel_of, filters_query, kind_of, metric_query, yyyymmdd
from server.policy import allow_metric, authed, require_auth
from server.queries import COUNT_PREFIX, AnswerTooLarge, Reader
from server.respond import data_answer, listing_answer


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


async def metric(request: web.Request) -> web.Response:
    kind = kind_of(request.match_info["kind"])
    channel = channel_of(request.match_info["channel"])
    query = metric_query(kind, channel, request.query, request.path)
    await allow_metric(request, channel, query.metric)
    if query.metric.startswith(COUNT_PREFIX):  # count histograms are asked for by their own name
        raise not_found("Cannot find this histogram definition.")
    try:
        return await data_answer(request, ("metric", query), lambda: _answer(request.app[READER], query))
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


async def _answer(reader: Reader, query: MetricQuery) -> dict:
    """The original's answer: entries in the order of the dates asked for, labels sorted within a date."""
    if query.metric.startswith("USE_COUNTER2_"):
        cells, layout = await _use_counter(reader, query)
    else:
        cells, layout = await _metric(reader, query)
    undescribed = query.metric.startswith(("SIMPLE_MEASURES_", "USE_COUNTER"))  # "" in the original too
    description = "" if undescribed else await reader.description(query.metric)
    order = {day: i for i, day in enumerate(query.dates)}
    texts = {day: yyyymmdd(day) for day in query.dates}
    data = []
    for day, label in sorted(cells, key=lambda key: (order[key[0]], key[1])):
        cell = cells[(day, label)]
        entry = {
            "date": texts[day],
            "label": label,
            "histogram": cell.histogram,
            "count": cell.count,
            "sum": cell.sum,
        }
        if query.stats:
            entry |= statistics(cell, layout)
        data.append(entry)
    return {"buckets": layout.buckets(), "kind": layout.kind, "description": description, "data": data}


async def _metric(reader: Reader, query: MetricQuery) -> tuple[dict[tuple[date, str], Cell], Layout]:
    """A histogram, scalar or simple measurement; a count histogram is stored as `[[COUNT]]_<name>`."""
    rows = await reader.cells(query, await reader.stored_name(query.metric))
    if not rows:
        if await reader.known(query.channel, query.version, [query.metric, COUNT_PREFIX + query.metric]):
            raise not_found("No data found for this metric.")
        what = "scalar" if query.metric.startswith("SCALARS_") else "histogram"
        raise not_found(f"Cannot find this {what} definition.")
    layout = dominant_layout(rows)
    cells = sum_cells([r for r in rows if r.layout == layout])
    return cells, (await reader.layouts({layout}))[layout]


async def _use_counter(reader: Reader, query: MetricQuery) -> tuple[dict[tuple[date, str], Cell], Layout]:
    """USE_COUNTER2_*: the false bucket derived from the documents destroyed (the original's Bug 1412382)."""
    scope = "CONTENT" if query.metric.endswith("_DOCUMENT") else "TOP_LEVEL_CONTENT"
    documents = await reader.cells(query, f"{COUNT_PREFIX}{scope}_DOCUMENTS_DESTROYED")
    cells = use_counter(_summed(await reader.cells(query, query.metric)), _summed(documents), query.dates)
    if not cells:
        raise not_found("No data found for this metric.")
    return cells, USE_COUNTER


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
