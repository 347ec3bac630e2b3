"""The SQL of every route, read through the schema of aggregator/store/schema.py (docs/store.md).

Every value from a request is a bind parameter; no identifier is ever built from input. Metric requests
without an application, architecture, os or osVersion filter read the rollup `aggregates_all`, a few rows
per date. Histograms come back as `array_send` bytes, which numpy reads without making a Python int per
bucket (server/histograms.py sums them).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from server.histograms import Layout, Row
from server.params import MetricQuery

COUNT_PREFIX = "[[COUNT]]_"  # how count histograms are stored

# An `unchanged` publish (the same run again) is in the ledger but changes no data, so it keeps the ETag.
GENERATION = "SELECT coalesce(max(id), 0) FROM publishes WHERE action <> 'unchanged'"

# Every kind's channels and dates at once, for server/catalog.py: channels in the database's order, as the
# channel list is; a channel's dates newest first.
CATALOG_DATES = """
SELECT DISTINCT kind, channel, version, date FROM catalog_dates ORDER BY kind, channel, date DESC, version DESC"""

# The values of each filter, kept sorted and distinct by every publish and trim (aggregator/store/catalog.py): one
# row per filter, however many values (walking catalog_filters' distinct values took 9 s for a million names).
FILTERS = 'SELECT filter, "values" FROM catalog_lists WHERE channel = $1 AND version = $2'

KNOWN_METRIC = """
SELECT EXISTS (SELECT 1 FROM catalog_filters WHERE channel = $1 AND version = $2 AND filter = 'metric'
               AND value = ANY($3::text[]))
    OR EXISTS (SELECT 1 FROM descriptions WHERE metric = ANY($3::text[]))"""

DESCRIPTIONS = "SELECT metric, description FROM descriptions"

LAYOUTS = "SELECT id, kind, bounds, labels FROM layouts WHERE id = ANY($1::int[])"

FRESHNESS = """
SELECT d.kind, d.channel, max(d.date) AS newest_date, max(d.submission_date) AS newest_submission_date,
       max(p.published_at) AS published_at
FROM catalog_dates d
JOIN contributions c ON c.kind = d.kind AND c.submission_date = d.submission_date
JOIN publishes p ON p.id = c.publish_id
GROUP BY d.kind, d.channel ORDER BY d.kind, d.channel"""

LAST_PUBLISH = "SELECT max(published_at) FROM publishes"

# One metric per query: `metric = $4` is an index condition, where `metric = ANY(...)` made the planner fall
# back to (channel, version) and filter (ten times slower). On the leaves, the submission-date condition prunes:
# a submission_date answer reads exactly its days; a build can only be submitted on or after its build date,
# so a build_id answer reads no day before its first date. The rollup is one table, found by its index.
_CELLS = "SELECT metric, date, label, layout, histogram, sum, count"
# Client-level answers read the client-level sums where the others read the bucket counts (the same length and
# bucket order; NULL in rows published before they existed), and the distinct clients last.
_CLIENT_CELLS = "SELECT metric, date, label, layout, client_histogram AS histogram, sum, count, clients"
_WHERE = """
WHERE kind = $1 AND channel = $2 AND version = $3 AND metric = $4 AND date = ANY($5::date[])
  AND ($6::text[] IS NULL OR process = ANY($6::text[])) AND ($7::text[] IS NULL OR label = ANY($7::text[]))"""
_DAYS = {
    "submission_date": "submission_date = ANY($5::date[])",
    "build_id": "submission_date >= (SELECT min(d) FROM unnest($5::date[]) AS d)",
}
_FILTERS = """
  AND ($8::text[] IS NULL OR application = ANY($8::text[])) AND ($9::text[] IS NULL OR architecture = ANY($9::text[]))
  AND ($10::text[] IS NULL OR os = ANY($10::text[])) AND ($11::text[] IS NULL OR os_version = ANY($11::text[]))"""


def bounded(cells: str, bound: str, within: str, more: str = "") -> str:
    """The rows of `cells` and the bucket counts their answer would hold, unless that is more than `bound`: then
    one row of NULLs but for that count and the dates and labels it spans. Sized from the rows' narrow columns and
    one probe of `layouts` per distinct layout, before any histogram is read (a wide one is stored apart, in
    TOAST). The cheap upper bound, rows times the widest layout, is enough for most answers; past the bound the
    answer's entries (date, label) are counted. No rows at all is one row of NULLs too, with a count of 0.
    The rows are withheld too when that upper bound, the bucket counts they hold, is more than `within` (unless
    NULL): a large answer is read in its turn (server/offload.py), not by every request asking for one at once.
    `more` lists columns of `found` to select after all those (`, f.clients`)."""
    return f"""
WITH found AS MATERIALIZED ({cells}),
size AS (SELECT count(*) AS rows,
                (SELECT coalesce(max((SELECT cardinality(bounds) FROM layouts WHERE id = used.layout)), 0)
                 FROM (SELECT DISTINCT layout FROM found) AS used) AS width
         FROM found),
answer AS (SELECT CASE WHEN rows * width <= {bound} THEN rows * width
                       ELSE (SELECT count(*) FROM (SELECT DISTINCT date, label FROM found) AS entries) * width
                  END AS cells,
                  rows * width AS stored
           FROM size)
SELECT f.metric, f.date, f.label, f.layout, array_send(f.histogram) AS histogram, f.sum, f.count, a.cells, a.stored,
       CASE WHEN a.cells > {bound} THEN (SELECT count(DISTINCT date) FROM found) END AS dates,
       CASE WHEN a.cells > {bound} THEN (SELECT count(DISTINCT label) FROM found) END AS labels{more}
FROM answer a LEFT JOIN found f ON a.cells <= {bound} AND (a.stored <= {within}::bigint OR {within}::bigint IS NULL)"""


def _statements(cells: str, more: str = "") -> tuple[str, dict[str, str]]:
    """The rollup's query, and the leaves' query of each kind, reading `cells`."""
    rollup = bounded(f"{cells} FROM aggregates_all {_WHERE}", "$8", "$9", more)
    filtered = {
        kind: bounded(f"{cells} FROM aggregates {_WHERE} AND {days}{_FILTERS}", "$12", "$13", more)
        for kind, days in _DAYS.items()
    }
    return rollup, filtered


ROLLUP, FILTERED = _statements(_CELLS)
CLIENT_ROLLUP, CLIENT_FILTERED = _statements(_CLIENT_CELLS, ", f.clients")
SIZE = slice(7, 11)  # where a record of those queries holds its answer's size: cells, stored, dates, labels
# Read through the partial index catalog_filters_counts, whose predicate is this condition.
COUNT_METRICS = "SELECT DISTINCT value FROM catalog_filters WHERE filter = 'metric' AND value LIKE '[[COUNT]]\\_%'"
FILTER_COLUMNS = ("application", "architecture", "os", "os_version")


@dataclass
class AnswerTooLarge(Exception):
    """An answer past `API_MAX_ANSWER_CELLS`, refused before its histograms were read."""

    cells: int  # bucket counts it would hold
    dates: int
    labels: int
    bound: int


@dataclass
class LargeAnswer(Exception):
    """An answer whose rows hold more bucket counts than the reader was asked to read at once: not read."""

    stored: int  # bucket counts its rows hold


@dataclass(frozen=True)
class Freshness:
    kind: str
    channel: str
    newest_date: date
    newest_submission_date: date
    published_at: datetime


class Reader:
    """The queries, on a pool; layouts are immutable once written, so they are kept once read."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float, max_answer_cells: int) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self.max_answer_cells = max_answer_cells
        self._turns = asyncio.Semaphore(pool.get_max_size())  # FIFO since Python 3.11
        self._layouts: dict[int, Layout] = {}
        self._descriptions: dict[str, str] | None = None
        self._count_metrics: set[str] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, first come, first served. asyncpg's pool wakes its oldest waiter when a
        connection comes back, but a request arriving meanwhile may take it first, and the waiter passed over
        queues again at the back: at 32 concurrent requests the slowest hundredth took 10x the median. A
        semaphore of the pool's size, which never lets a newcomer pass a waiter, keeps the order. One deadline
        covers the turn and the connection."""
        async with asyncio.timeout(self.acquire_timeout):
            await self._turns.acquire()
            try:
                conn = await self.pool.acquire()
            except BaseException:
                self._turns.release()
                raise
        try:
            yield conn
        finally:
            try:
                await self.pool.release(conn)
            finally:
                self._turns.release()

    async def _fetch(self, sql: str, *args) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def _fetchval(self, sql: str, *args):
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def generation(self) -> int:
        return await self._fetchval(GENERATION)

    async def catalog_dates(self) -> list[tuple[str, str, int, date]]:
        """(kind, channel, version, date), by kind and channel, newest date first."""
        return [tuple(r) for r in await self._fetch(CATALOG_DATES)]

    async def filters(self, channel: str, version: int) -> dict[str, list[str]]:
        rows = await self._fetch(FILTERS, channel, version)
        return {r["filter"]: r["values"] for r in rows}

    async def known(self, channel: str, version: int, metrics: list[str]) -> bool:
        return await self._fetchval(KNOWN_METRIC, channel, version, metrics)

    async def description(self, metric: str) -> str:
        """From the definitions files, "" when they had none; all of them are read once per publish."""
        if self._descriptions is None:
            self._descriptions = {r["metric"]: r["description"] for r in await self._fetch(DESCRIPTIONS)}
        return self._descriptions.get(metric) or self._descriptions.get(COUNT_PREFIX + metric, "")

    async def stored_name(self, metric: str) -> str:
        """The name a metric's cells are stored under: `[[COUNT]]_<name>` for a count histogram."""
        if self._count_metrics is None:
            self._count_metrics = {r["value"] for r in await self._fetch(COUNT_METRICS)}
        counted = COUNT_PREFIX + metric
        return counted if counted in self._count_metrics else metric

    def forget(self) -> None:
        """Drop what a publish may have changed (descriptions, count histograms; layouts never change)."""
        self._descriptions = None
        self._count_metrics = None

    async def freshness(self) -> tuple[list[Freshness], datetime | None]:
        async with self.connection() as conn:
            rows = await conn.fetch(FRESHNESS)
            last = await conn.fetchval(LAST_PUBLISH)
        return [Freshness(*r) for r in rows], last

    async def cells(self, query: MetricQuery, metric: str, within: int | None = None) -> list[Row]:
        """The stored cells of `metric` matching the query, from the rollup when no dimension is filtered; raises
        LargeAnswer, having read no histogram, when they hold more than `within` bucket counts. Client-level
        rows hold the client-level sums as their histogram (None where there are none) and their clients."""
        args = [
            query.kind,
            query.channel,
            query.version,
            metric,
            list(query.dates),
            list(query.processes) if query.processes else None,
            list(query.labels) if query.labels is not None else None,
        ]
        rollup, filtered = (CLIENT_ROLLUP, CLIENT_FILTERED) if query.by_clients else (ROLLUP, FILTERED)
        if query.filters:
            given = dict(query.filters)
            sql = filtered[query.kind]
            args += [list(given[c]) if c in given else None for c in FILTER_COLUMNS]
        else:
            sql = rollup
        records = await self._fetch(sql, *args, self.max_answer_cells, within)
        cells, stored, dates, labels = records[0][SIZE]
        if cells > self.max_answer_cells:
            raise AnswerTooLarge(cells, dates, labels, self.max_answer_cells)
        if within is not None and stored > within:
            raise LargeAnswer(stored)
        if query.by_clients:
            return [Row(*r[:7], clients=r[SIZE.stop]) for r in records if r[0] is not None]
        return [Row(*r[:7]) for r in records if r[0] is not None]

    async def layouts(self, ids: set[int]) -> dict[int, Layout]:
        missing = [i for i in ids if i not in self._layouts]
        if missing:
            for r in await self._fetch(LAYOUTS, missing):
                self._layouts[r["id"]] = Layout(r["kind"], tuple(r["bounds"]), tuple(r["labels"]))
        return {i: self._layouts[i] for i in ids}
