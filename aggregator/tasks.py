"""What runs on the workers: a chunk of input in, an Aggregate out; an Aggregate in, a snapshot day out."""

import gc
from dataclasses import replace

import orjson

from aggregator.aggregate import Aggregate, by_submission_date, one_day
from aggregator.extract import FILTER_REASONS, Accumulator, Options
from aggregator.inputs import UNREADABLE, Chunk, read_lines
from aggregator.layouts import Definitions
from aggregator.snapshot import stage_run
from aggregator.stats import FileStats, RunStats


def decode_error_reason(line: bytes) -> str:
    """`truncated` for an object cut short (the parser ran out of input), else `not_json`."""
    text = line.strip(b" \t\r\n").decode("utf-8", "replace")
    if not text.startswith("{"):
        return "not_json"
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as error:  # its position counts characters
        return "truncated" if error.pos >= len(text) else "not_json"
    return "not_json"


def aggregate_chunk(chunk: Chunk, definitions: Definitions, options: Options) -> Aggregate:
    """Aggregate every ping of a chunk. A chunk that cannot be read contributes nothing but its error: neither
    the pings it gave before failing nor their counts (docs/semantics.md, unreadable files)."""
    if chunk.date is not None:  # a ping filed under another date's folder is not this date's
        options = replace(options, dates=frozenset({chunk.date}) & (options.dates or {chunk.date}))
    stats = FileStats(chunk.url, chunk.size, chunk.date)
    accumulator = Accumulator(definitions, options)
    # Parsed pings hold no reference cycles, so the cyclic collector would only re-scan them as they come and go.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for line in read_lines(chunk):
            if line.isspace():
                continue
            stats.pings += 1
            try:
                ping = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats.malformed[decode_error_reason(line)] += 1
                continue
            outcome = accumulator.add(ping)
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
    finally:
        if collecting:
            gc.enable()
    return accumulator.finish(RunStats(files={chunk.url: stats}))


def write_day(parts: list[Aggregate], snapshot: str, date: str, definitions: Definitions) -> dict[str, tuple[str, int]]:
    """Stage both kinds of aggregates of one submission date, from the reductions holding its pings; returns
    the run id and rows written per kind. Nothing is visible until the job commits the runs."""
    build_id = one_day(parts, date)
    files = build_id.stats.for_date(date)
    attrs = {
        "inputs": [f.to_json() for f in sorted(files.files.values(), key=lambda f: f.path)],
        "pings": {
            "read": files.total("pings"),
            "aggregated": sum(f.dates[date] for f in files.files.values()),
            "filtered": dict(sorted(files.reasons("filtered").items())),
            "malformed": dict(sorted(files.reasons("malformed").items())),
        },
        "dropped": dict(sorted(build_id.stats.dropped.items())),
        "overflow": build_id.stats.overflow,
        "definitions": definitions.sources,
        "descriptions": {
            name: description
            for name in sorted({m[0] for m in build_id.metrics})
            if (description := definitions.description(name))
        },
    }
    return {
        kind: (stage_run(snapshot, kind, date, aggregate, attrs), len(aggregate))
        for kind, aggregate in (("build_id", build_id), ("submission_date", by_submission_date(build_id)))
    }
