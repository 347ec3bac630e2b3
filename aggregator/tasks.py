"""What runs on the workers: a chunk of input in, an Aggregate out; a reduced Aggregate in, snapshot parts out."""

import contextlib
import gc
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import orjson
from dask.sizeof import sizeof

from aggregator.aggregate import Aggregate, by_submission_date, one_day
from aggregator.clients import ClientCells, ClientSamples, client_level, split_clients, with_clients
from aggregator.extract import FILTER_REASONS, Accumulator, Options
from aggregator.inputs import UNREADABLE, Chunk, Lines
from aggregator.layouts import Definitions
from aggregator.scan import scan
from aggregator.snapshot import stage_part
from aggregator.stats import FileStats, RunStats


@sizeof.register((Aggregate, ClientSamples, ClientCells))
def held_bytes(value: Aggregate | ClientSamples | ClientCells) -> int:
    """What Dask counts for a value the tasks pass on: its arrays and tables. Its fallback, `sys.getsizeof`,
    counts only the object that holds them (56 bytes), so the scheduler placed the tasks that take them as if
    moving them cost nothing, and a worker's managed memory (its dashboard, when it spills) left them out."""
    return sys.getsizeof(value) + sum(sizeof(item) for item in vars(value).values())


def decode_error_reason(line: bytes | memoryview) -> str:
    """`truncated` for an object cut short (the parser ran out of input), else `not_json`."""
    text = bytes(line).strip(b" \t\r\n").decode("utf-8", "replace")
    if not text.startswith("{"):
        return "not_json"
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as error:  # its position counts characters
        return "truncated" if error.pos >= len(text) else "not_json"
    return "not_json"


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a task runs (as a decorator of the task). Parsed pings, arrays and
    the tables of an aggregate hold no reference cycles, so its passes would only re-scan them as they come and
    go; what cycles zarr and asyncio leave are collected once it is back on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@collector_paused()
def aggregate_chunk(chunk: Chunk, definitions: Definitions, options: Options) -> Aggregate:
    """Aggregate every ping of a chunk. A chunk that cannot be read contributes nothing but its error: neither
    the pings it gave before failing nor their counts (docs/semantics.md, unreadable files)."""
    if chunk.date is not None:  # a ping filed under another date's folder is not this date's
        options = replace(options, dates=frozenset({chunk.date}) & (options.dates or {chunk.date}))
    stats = FileStats(chunk.url, chunk.size, chunk.date)
    accumulator = Accumulator(definitions, options)
    lines = Lines(chunk, options.limits.line_bytes)
    try:
        for line in lines:
            stats.pings += 1
            scanned = scan(line, accumulator.known)
            try:
                ping = orjson.loads(line if scanned is None else scanned[0])
            except orjson.JSONDecodeError:  # the scan passes all it does not check on to the parser
                stats.malformed[decode_error_reason(line)] += 1
                continue
            outcome = accumulator.add(ping, None if scanned is None else scanned[1])
            if type(outcome) is tuple:
                stats.aggregated += 1
                stats.dates[outcome[0]] += 1
            elif outcome in FILTER_REASONS:
                stats.filtered[outcome] += 1
            else:
                stats.malformed[outcome] += 1
    except UNREADABLE as error:
        kind = type(error).__name__
        kind = f"{type(error).__module__}.{kind}" if kind == "error" else kind  # zlib.error, not just "error"
        read = f" (after {stats.pings} lines)" if stats.pings else ""
        failed = FileStats(chunk.url, chunk.size, chunk.date, error=f"{kind}: {error}{read}")
        return Aggregate.empty(stats=RunStats(files={chunk.url: failed}))
    stats.blank = lines.blank
    stats.pings += lines.too_long
    if lines.too_long:
        stats.malformed["too_long"] += lines.too_long
    return accumulator.finish(RunStats(files={chunk.url: stats}))


@dataclass
class Staged:
    """What staging one reduction gave: its counters, and per submission date the parts it wrote (kind: part
    name, digest, rows) and the metric names in them. Small: this, not the cells, goes back to the client."""

    stats: RunStats
    parts: dict[str, dict[str, tuple[str, str, int]]] = field(default_factory=dict)
    names: dict[str, set[str]] = field(default_factory=dict)


# client-level cells of the build-id and the submission-date kinds (aggregator/clients.py)
Levels = tuple[ClientCells, ClientCells]


def without_samples(aggregate: Aggregate) -> Aggregate:
    """A partition's aggregate without its per-client samples: what the per-ping reductions take."""
    return replace(aggregate, samples=None)


@collector_paused()
def deal_clients(aggregate: Aggregate, shards: int) -> list[ClientSamples | None]:
    """A partition's per-client samples, dealt into the shards' client reductions (none from an unreadable file)."""
    return [None] * shards if aggregate.samples is None else split_clients(aggregate.samples, shards)


@collector_paused()
def client_shard(partitions: list[list[list[ClientSamples | None]]], shard: int) -> Levels:
    """One shard's client reduction: part `shard` of every partition's dealt samples (a bag partition: a list of
    one), weighted."""
    return client_level([dealt[shard] for partition in partitions for dealt in partition])


@collector_paused()
def stage_reduction(
    total: Aggregate, clients: Levels | None = None, *, snapshot: str, run_id: str, part: str
) -> Staged:
    """Stage the cells of one reduction, both kinds, as part `part` of the run of each submission date it holds
    (one, unless it reduced files from outside the submission_date folders), with the client-level arrays of
    the same shard's client reduction when given. Nothing is visible until the job finishes and commits the
    runs."""
    staged = Staged(replace(total.stats))
    for date in sorted({d[0] for d in total.dimensions}):
        build_id = one_day([total], date)
        staged.stats.overflow += build_id.stats.overflow - total.stats.overflow
        submission_date = by_submission_date(build_id)
        if clients is not None:
            build_id = with_clients(build_id, clients[0])
            submission_date = with_clients(submission_date, clients[1])
        staged.parts[date] = {
            kind: (part, stage_part(snapshot, kind, date, run_id, part, aggregate), len(aggregate))
            for kind, aggregate in (("build_id", build_id), ("submission_date", submission_date))
        }
        staged.names[date] = {m[0] for m in build_id.metrics}
    return staged
