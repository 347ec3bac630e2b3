"""Bounds on what pings may hold: every field of a ping is written by someone else.

`Limits` gathers the `JOB_MAX_*` settings (aggregator/settings.py gives each default and its reason). The
per-ping bounds are applied where a ping is read (aggregator/inputs.py) and walked (aggregator/extract.py);
`keep_undefined` applies the bound on metric names without a definition wherever aggregates are merged, so that
a flood of names can grow neither a worker's memory nor the store. docs/reliability.md lists them all.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from aggregator.aggregate import Aggregate, group_of, merge, select_rows
from aggregator.settings import number
from aggregator.stats import RunStats


@dataclass(frozen=True)
class Limits:
    """The bounds of one run; what is past them is skipped and counted by reason."""

    line_bytes: int
    name_length: int
    value_bytes: int
    labels: int
    layout_buckets: int
    ping_buckets: int
    undefined_metrics: int

    @classmethod
    def from_settings(cls) -> "Limits":
        """The limits the environment sets (`JOB_MAX_*`), each else its default in the settings table."""
        return cls(
            line_bytes=number("JOB_MAX_LINE_BYTES", low=1),
            name_length=number("JOB_MAX_NAME_LENGTH", low=1),
            value_bytes=number("JOB_MAX_VALUE_BYTES", low=1),
            labels=number("JOB_MAX_LABELS", low=1),
            layout_buckets=number("JOB_MAX_PING_LAYOUT_BUCKETS", low=1),
            ping_buckets=number("JOB_MAX_PING_BUCKETS", low=1),
            undefined_metrics=number("JOB_MAX_UNDEFINED_METRICS", low=1),
        )


def utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8, without encoding it when it is ASCII-sized anyway."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def keep_undefined(aggregate: Aggregate, limit: int) -> Aggregate:
    """At most `limit` metric names without a definition per (date, channel, version): those with the most
    samples, ties broken by name; the rows of the others are dropped and their samples counted
    (`undefined_limit`). Applied at every merge, so a reduction holds at most its inputs' share of names."""
    if len(aggregate.undefined) <= limit or not len(aggregate):
        return aggregate
    undefined_metric = np.array([m[0] in aggregate.undefined for m in aggregate.metrics], dtype=bool)
    rows = np.flatnonzero(undefined_metric[aggregate.row_metric])
    if not len(rows):
        return aggregate
    groups = [group_of(d) for d in aggregate.dimensions]
    totals: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    dims, metrics, counts = (
        a[rows].tolist() for a in (aggregate.row_dimension, aggregate.row_metric, aggregate.counts)
    )
    for d, m, count in zip(dims, metrics, counts, strict=True):
        totals[groups[d]][aggregate.metrics[m][0]] += count
    dropped_names = {
        group: set(sorted(names, key=lambda n: (-names[n], n))[limit:])
        for group, names in totals.items()
        if len(names) > limit
    }
    if not dropped_names:
        return aggregate
    drop = np.array(
        [aggregate.metrics[m][0] in dropped_names.get(groups[d], ()) for d, m in zip(dims, metrics, strict=True)],
        dtype=bool,
    )
    keep = np.ones(len(aggregate), dtype=bool)
    keep[rows[drop]] = False
    stats = RunStats.total_of([aggregate.stats])  # a copy: a merge's input may be the aggregate itself
    stats.dropped["undefined_limit"] += int(aggregate.counts[~keep].sum())
    return select_rows(aggregate, keep, stats)


def merge_bounded(parts: Iterable[Aggregate], undefined_metrics: int) -> Aggregate:
    """The tree reduction's combine step: `merge`, then `keep_undefined`."""
    return keep_undefined(merge(parts), undefined_metrics)
