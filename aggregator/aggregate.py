"""The aggregate: dense int64 bucket counts per (dimension set, metric), stored as arrays.

An `Aggregate` is what partitions produce, what the tree reduction merges and what a snapshot run stores. Its
tables (dimensions, metrics) are small Python lists; its cells are numpy arrays, so merging is vectorised and
what crosses the network is arrays. Every count is non-negative (docs/semantics.md), so saturating at the
int64 maximum is the same as clamping the exact total: nothing wraps around.
"""

import itertools
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aggregator import _buckets
from aggregator.layouts import Layout
from aggregator.stats import RunStats

if TYPE_CHECKING:
    from aggregator.clients import ClientSamples

INT64_MAX = int(np.iinfo(np.int64).max)
_SAFE_TOTAL = 2.0**62  # below this, int64 addition of non-negative values cannot overflow

BUILD_ID_COLUMNS = (
    "submission_date",
    "channel",
    "version",
    "build_id",
    "application",
    "architecture",
    "os",
    "os_version",
)
SUBMISSION_DATE_COLUMNS = tuple(c for c in BUILD_ID_COLUMNS if c != "build_id")
KIND_COLUMNS = {"build_id": BUILD_ID_COLUMNS, "submission_date": SUBMISSION_DATE_COLUMNS}

Metric = tuple[str, str, str, Layout]  # name, label, process, layout


def saturating_add_at(target: np.ndarray, positions: np.ndarray, values: np.ndarray) -> int:
    """`target[positions] += values` (repeated positions add up) for non-negative values, clamped at the
    int64 maximum. Returns how many cells were clamped."""
    if _buckets.add_at(target, np.ascontiguousarray(positions), np.ascontiguousarray(values, dtype=np.int64)):
        return 0  # no sum passed the maximum: added in one pass (the compiled pass checks each addition)
    totals: dict[int, int] = defaultdict(int)  # exact Python ints, rare path
    for position, value in zip(positions.tolist(), values.tolist(), strict=True):
        totals[position] += value
    clamped = 0
    for position, value in totals.items():
        total = int(target[position]) + value
        if total > INT64_MAX:
            total, clamped = INT64_MAX, clamped + 1
        target[position] = total
    return clamped


def factorized(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct int64 keys in the order they first come, and the index of each key among them: by hashing,
    linear in the keys, where numpy's unique sorts them all (aggregator/_buckets.c)."""
    index = np.empty(len(keys), dtype=np.int64)
    distinct = _buckets.factorize(np.ascontiguousarray(keys, dtype=np.int64), index)
    return np.frombuffer(distinct, dtype=np.int64), index


def unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_inverse=True)` of int64 keys, sorting only the distinct ones."""
    distinct, index = factorized(keys)
    order = np.argsort(distinct)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[index]


@dataclass
class Aggregate:
    """Cells keyed by (dimension set, metric); row r has buckets histogram[row_offset[r]:row_offset[r+1]]."""

    columns: tuple[str, ...]
    dimensions: list[tuple[str, ...]]
    metrics: list[Metric]
    row_dimension: np.ndarray  # int32 (R,)
    row_metric: np.ndarray  # int32 (R,)
    row_offset: np.ndarray  # int64 (R+1,)
    sums: np.ndarray  # int64 (R,)
    counts: np.ndarray  # int64 (R,)
    histogram: np.ndarray  # int64 (N,)
    stats: RunStats = field(default_factory=RunStats)
    undefined: frozenset[str] = frozenset()  # metric names without a definition (aggregator/bounds.py bounds them)
    # client-level weighting (aggregator/clients.py), once a reduction's cells have it: distinct clients per row and
    # the sum over clients of each client's normalised histogram, bucket by bucket
    clients: np.ndarray | None = None  # int64 (R,)
    client_histogram: np.ndarray | None = None  # float64 (N,)
    samples: "ClientSamples | None" = None  # a partition's per-client samples, on their way to the client reductions

    def __len__(self) -> int:
        return len(self.row_dimension)

    @classmethod
    def empty(cls, columns: tuple[str, ...] = BUILD_ID_COLUMNS, stats: RunStats | None = None) -> "Aggregate":
        i32, i64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
        return cls(columns, [], [], i32, i32, np.zeros(1, np.int64), i64, i64, i64, stats or RunStats())

    def cells(self) -> Iterator[tuple[tuple[str, ...], str, str, str, Layout, list[int], int, int]]:
        """Every cell as plain values: (dimensions, metric, label, process, layout, counts, sum, count)."""
        offsets = self.row_offset.tolist()
        for r, (d, m) in enumerate(zip(self.row_dimension.tolist(), self.row_metric.tolist(), strict=True)):
            name, label, process, layout = self.metrics[m]
            counts = self.histogram[offsets[r] : offsets[r + 1]].tolist()
            total, count = int(self.sums[r]), int(self.counts[r])
            yield self.dimensions[d], name, label, process, layout, counts, total, count


def metric_order(metric: Metric) -> tuple:
    name, label, process, layout = metric
    return name, label, process, layout.kind, layout.bounds, layout.names or ()


def rebuild(
    parts: Sequence[Aggregate],
    dimension_key: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
    columns: tuple[str, ...] | None = None,
    keep: Callable[[tuple[str, ...]], bool] | None = None,
) -> Aggregate:
    """Merge `parts` into one canonical aggregate: equal cells summed, tables sorted, rows sorted.

    `dimension_key` maps each dimension set to a new one (cells that then coincide are summed: this is how
    submission-date aggregates come from build-id ones); `keep` selects dimension sets (one day of several).
    The result depends only on the cells, never on how they were split into parts.
    """
    stats = RunStats.total_of(part.stats for part in parts)
    columns = columns or parts[0].columns
    mapped_dims, used_metrics = set(), set()
    selections = []
    for part in parts:
        new_dims = [dimension_key(d) if dimension_key else d for d in part.dimensions]
        kept = np.array([keep is None or keep(d) for d in part.dimensions], dtype=bool)
        rows = kept[part.row_dimension] if len(part) else np.zeros(0, dtype=bool)
        selections.append((new_dims, rows))
        mapped_dims.update(new_dims[d] for d in set(part.row_dimension[rows].tolist()))
        used_metrics.update(part.metrics[m] for m in set(part.row_metric[rows].tolist()))
    dimensions = sorted(mapped_dims)
    metrics = sorted(used_metrics, key=metric_order)
    dim_rank = {d: i for i, d in enumerate(dimensions)}
    metric_rank = {m: i for i, m in enumerate(metrics)}
    width = max(len(metrics), 1)

    weighted = all(part.clients is not None for part in parts)
    keys, sizes, starts, histograms, sums, counts, clients, client_histograms = ([] for _ in range(8))
    for part, (new_dims, rows) in zip(parts, selections, strict=True):
        if not rows.any():
            continue
        dim_map = np.array([dim_rank.get(d, -1) for d in new_dims], dtype=np.int64)
        metric_map = np.array([metric_rank.get(m, -1) for m in part.metrics], dtype=np.int64)
        keys.append(dim_map[part.row_dimension[rows]] * width + metric_map[part.row_metric[rows]])
        sizes.append(np.diff(part.row_offset)[rows])
        starts.append(part.row_offset[:-1][rows])
        histograms.append(part.histogram)
        sums.append(part.sums[rows])
        counts.append(part.counts[rows])
        if weighted:
            clients.append(part.clients[rows])
            client_histograms.append(row_values(part.client_histogram, starts[-1], sizes[-1]))
    if not keys:
        return Aggregate.empty(columns, stats)
    merged, overflow = _collapse(keys, sizes, starts, histograms, np.concatenate(sums), np.concatenate(counts))
    stats.overflow += overflow
    unique_keys, row_offset, histogram, row_sums, row_counts, group = merged
    row_clients = new_client_histogram = None
    if weighted:
        row_clients = np.zeros(len(unique_keys), dtype=np.int64)
        np.add.at(row_clients, group, np.concatenate(clients))  # distinct clients: far below int64's range
        new_client_histogram = np.zeros(len(histogram), dtype=np.float64)
        targets = _targets(row_offset, group, np.concatenate(sizes))
        np.add.at(new_client_histogram, targets, np.concatenate(client_histograms))
    return Aggregate(
        columns,
        dimensions,
        metrics,
        (unique_keys // width).astype(np.int32),
        (unique_keys % width).astype(np.int32),
        row_offset,
        row_sums,
        row_counts,
        histogram,
        stats,
        frozenset().union(*(part.undefined for part in parts)),
        row_clients,
        new_client_histogram,
    )


def _collapse(
    keys: list[np.ndarray],
    sizes: list[np.ndarray],
    starts: list[np.ndarray],
    histograms: list[np.ndarray],
    sums: np.ndarray,
    counts: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], int]:
    """Sum the rows that share a key (their sizes agree: same metric, same layout); rows come out sorted. Each
    part gives its rows' keys, sizes and starts in its histogram; sums and counts are all the parts' rows'. Also
    returns the new row of each old row."""
    unique_keys, group = unique_inverse(np.concatenate(keys))
    row_sizes = np.concatenate(sizes)
    new_sizes = np.zeros(len(unique_keys), dtype=np.int64)
    new_sizes[group] = row_sizes
    new_offset = np.zeros(len(unique_keys) + 1, dtype=np.int64)
    np.cumsum(new_sizes, out=new_offset[1:])
    new_histogram = np.zeros(int(new_offset[-1]), dtype=np.int64)
    # each part's rows added whole onto their new rows, in the parts' own arrays (aggregator/_buckets.c)
    to = np.split(new_offset[group], np.cumsum([len(k) for k in keys])[:-1])
    overflow = 0
    if not all(map(_buckets.add_rows, itertools.repeat(new_histogram), to, histograms, starts, sizes)):
        new_histogram = np.zeros(int(new_offset[-1]), dtype=np.int64)  # a sum past the maximum: clamped, at once
        values = np.concatenate(list(map(row_values, histograms, starts, sizes)))
        overflow = saturating_add_at(new_histogram, _targets(new_offset, group, row_sizes), values)
    new_sums = np.zeros(len(unique_keys), dtype=np.int64)
    new_counts = np.zeros(len(unique_keys), dtype=np.int64)
    overflow += saturating_add_at(new_sums, group, sums)
    overflow += saturating_add_at(new_counts, group, counts)
    return (unique_keys, new_offset, new_histogram, new_sums, new_counts, group), overflow


def row_values(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The values (int64 or float64) of rows given by their starts and sizes in `values`, laid end to end."""
    if values.dtype.itemsize != 8:
        raise TypeError(f"rows of 8-byte values expected, not {values.dtype}")
    out = np.empty(int(sizes.sum()), dtype=values.dtype)
    _buckets.take_rows(out.view(np.int64), np.ascontiguousarray(values).view(np.int64), starts, sizes)
    return out


def _targets(new_offset: np.ndarray, group: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Where each value of the old rows (laid end to end) goes in the new ones: value i of old row r to
    new_offset[group[r]] + (i - old_start[r]), one shift per row; int32 when the values allow."""
    total = int(sizes.sum())
    index = np.int32 if total < 2**31 else np.int64
    targets = np.repeat((new_offset[group] - (np.cumsum(sizes) - sizes)).astype(index), sizes)
    targets += np.arange(total, dtype=index)
    return targets


def merge(parts: Iterable[Aggregate]) -> Aggregate:
    """The tree reduction's combine step (a single part needs no work: writing a day rebuilds it)."""
    parts = list(parts)
    return parts[0] if len(parts) == 1 else rebuild(parts)


def drop_build_id(dimensions: tuple[str, ...]) -> tuple[str, ...]:
    return dimensions[:3] + dimensions[4:]


def shard_of(dimensions: tuple[str, ...], shards: int, columns: tuple[str, ...] = BUILD_ID_COLUMNS) -> int:
    """The reduction a dimension set belongs to: a stable hash (the same in every process, unlike `hash`) of its
    submission-date dimensions, so that a shard's submission-date aggregates are whole."""
    if columns == BUILD_ID_COLUMNS:
        dimensions = drop_build_id(dimensions)
    return zlib.crc32("\0".join(dimensions).encode()) % shards


def group_of(dimensions: tuple[str, ...]) -> tuple[str, str, str]:
    """(submission date, channel, version): the group within which metric names without a definition are
    bounded (aggregator/bounds.py)."""
    return dimensions[0], dimensions[1], dimensions[2]


def group_shard(dimensions: tuple[str, ...], shards: int) -> int:
    """The reduction of every cell of a metric without a definition in a group: one reduction sees all of the
    group's such names, so bounding them there bounds them for the whole run."""
    return zlib.crc32("\0".join(group_of(dimensions)).encode()) % shards


def select_rows(aggregate: Aggregate, rows: np.ndarray, stats: RunStats) -> Aggregate:
    """The aggregate's rows where `rows` (a boolean mask) is set, as they are; the tables are kept whole."""
    starts, sizes = aggregate.row_offset[:-1][rows], np.diff(aggregate.row_offset)[rows]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    weighted = aggregate.clients is not None
    return Aggregate(
        aggregate.columns,
        aggregate.dimensions,
        aggregate.metrics,
        aggregate.row_dimension[rows],
        aggregate.row_metric[rows],
        offsets,
        aggregate.sums[rows],
        aggregate.counts[rows],
        row_values(aggregate.histogram, starts, sizes),
        stats,
        aggregate.undefined,
        aggregate.clients[rows] if weighted else None,
        row_values(aggregate.client_histogram, starts, sizes) if weighted else None,
    )


def cell_shards(
    columns: tuple[str, ...],
    dimensions: list[tuple[str, ...]],
    metrics: list[Metric],
    undefined: frozenset[str],
    dimension: np.ndarray,
    metric: np.ndarray,
    shards: int,
) -> np.ndarray:
    """The shard of each cell, given by its dimension set and metric (indices into the tables): by `shard_of`
    its dimensions, or by `group_shard` for metrics without a definition. A partition deals its rows (`split`) and
    its client samples (aggregator/clients.py) by it, so both weightings of a cell meet in one shard."""
    dimension_shard = np.array([shard_of(d, shards, columns) for d in dimensions], dtype=np.int64)
    shard = dimension_shard[dimension]
    if undefined and len(dimension):
        unbounded = np.array([m[0] in undefined for m in metrics], dtype=bool)[metric]
        grouped = np.array([group_shard(d, shards) for d in dimensions], dtype=np.int64)
        shard = np.where(unbounded, grouped[dimension], shard)
    return shard


def split(aggregate: Aggregate, shards: int) -> list[Aggregate]:
    """The aggregate's cells dealt into `shards` disjoint aggregates by `cell_shards` (rows selected as they are:
    merging sorts them); the run's counters go with the first, so that summing the shards' counters counts each
    file once."""
    a = aggregate
    row_shard = cell_shards(a.columns, a.dimensions, a.metrics, a.undefined, a.row_dimension, a.row_metric, shards)
    return [select_rows(aggregate, row_shard == s, aggregate.stats if s == 0 else RunStats()) for s in range(shards)]


def by_submission_date(build_id: Aggregate) -> Aggregate:
    """Submission-date aggregates: build-id aggregates summed over build ids."""
    return rebuild([build_id], dimension_key=drop_build_id, columns=SUBMISSION_DATE_COLUMNS)


def one_day(parts: Sequence[Aggregate], date: str) -> Aggregate:
    """The cells of one submission date, merged from `parts`."""
    return rebuild(parts, keep=lambda d: d[0] == date)
