"""The client-level weighting: each client counted once per cell, beside the per-ping aggregates.

Per (dimension set, metric), a client's histograms of the day are summed, the sum normalised to 1, and the
normalised histograms summed over clients, beside the number of distinct clients (docs/semantics.md). A client's
pings may be in any partition, so each partition keeps its samples with their client (`ClientSamples`, made by
aggregator/extract.py) and deals them into the shards of the per-ping reductions by the same rule as its cells
(`cell_shards`): a shard's client reduction (`client_level`) holds every sample of its cells, whatever their
clients, so each client's sums are whole there, and its memory is its share of the day's samples, not of its
clients. Its result stays sparse (`ClientCells`: the entries its clients gave) until it is made dense against the
rows of the shard's per-ping part (`with_clients`).

Until then, the normalised sums are fixed-point integers (`UNIT` to a client): integer sums do not depend on the
order they are added in, so the result does not depend on how the input was partitioned.
"""

import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from aggregator import _buckets
from aggregator.aggregate import (
    BUILD_ID_COLUMNS,
    SUBMISSION_DATE_COLUMNS,
    Aggregate,
    Metric,
    cell_shards,
    drop_build_id,
    factorized,
    metric_order,
    saturating_add_at,
    unique_inverse,
)

UNIT = 2**32  # one client's normalised histogram sums to this while reductions add them up
_SLICE = 1 << 20  # entries weighted at once: a few arrays of 8 MiB


@dataclass
class ClientSamples:
    """Samples of one partition (or its share of a shard), each a histogram or a scalar-like value of one
    ping: its client, its cell, and its entries (non-zero bucket counts; a value is one entry of count 1), the
    entries of sample i following those of sample i - 1."""

    dimensions: list[tuple[str, ...]]  # build-id dimension sets
    metrics: list[Metric]
    client: np.ndarray  # uint64 (S,): a hash of the clientId
    dimension: np.ndarray  # int32 (S,)
    metric: np.ndarray  # int32 (S,)
    size: np.ndarray  # int32 (S,): its entries
    column: np.ndarray  # int32 (E,): the bucket of each entry in its metric's layout
    value: np.ndarray  # int32, or int64 when a count needs it (E,)
    undefined: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.client)


@dataclass
class ClientCells:
    """Client-level cells of one kind, sparse: per row (a dimension set and a metric) its distinct clients, and
    per entry its row, its bucket and its share in `UNIT`s (a client's count over its total in the cell).
    Entries of a row add up."""

    columns: tuple[str, ...]
    dimensions: list[tuple[str, ...]]
    metrics: list[Metric]
    row_dimension: np.ndarray  # int32 (R,)
    row_metric: np.ndarray  # int32 (R,)
    clients: np.ndarray  # int64 (R,)
    entry_row: np.ndarray  # int32 (E,)
    entry_column: np.ndarray  # int32 (E,)
    share: np.ndarray  # int64 (E,)
    undefined: frozenset[str] = frozenset()

    @classmethod
    def empty(cls, columns: tuple[str, ...]) -> "ClientCells":
        i32 = np.zeros(0, np.int32)
        return cls(columns, [], [], i32, i32, np.zeros(0, np.int64), i32, i32, np.zeros(0, np.int64))


def narrowed(values: np.ndarray) -> np.ndarray:
    """Non-negative counts as int32 when they all fit (nearly always), else as int64: they wait in memory until
    every partition of their day is read."""
    return values.astype(np.int32) if not len(values) or values.max() < 2**31 else values


def client_hashes(client_ids: list[str]) -> np.ndarray:
    """A 64-bit hash of each clientId: the same in every process, so that a client's samples from different
    partitions are known as one client's in the shard that gathers them. Two of a day's clients share a hash
    with odds of about clients^2 / 2^65 (one in 900 for 200 million)."""
    digests = b"".join(hashlib.blake2b(c.encode("utf-8", "surrogatepass"), digest_size=8).digest() for c in client_ids)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def split_clients(samples: ClientSamples, shards: int) -> list[ClientSamples]:
    """The samples dealt into the shards of the per-ping reductions, by the shard of their cell: put in shard
    order once (in their order within a shard), then cut, rather than selected once per shard."""
    if shards == 1:
        return [samples]
    s = samples
    shard = cell_shards(BUILD_ID_COLUMNS, s.dimensions, s.metrics, s.undefined, s.dimension, s.metric, shards)
    order = np.argsort(shard.astype(np.uint8 if shards <= 256 else np.int64), kind="stable")
    size = s.size[order]
    ends = np.cumsum(size)
    # entry e of the reordered samples is entry e - (its sample's new start) + (its sample's old start)
    entry = np.repeat(np.cumsum(s.size)[order] - ends, size) + np.arange(int(ends[-1]) if len(ends) else 0)
    cut = np.cumsum(np.bincount(shard, minlength=shards))
    entry_cut = np.concatenate([[0], ends])[cut]
    sample_parts = [slice(a, b) for a, b in itertools.pairwise([0, *cut.tolist()])]
    entry_parts = [slice(a, b) for a, b in itertools.pairwise([0, *entry_cut.tolist()])]
    client, dimension, metric = s.client[order], s.dimension[order], s.metric[order]
    column, value = s.column[entry], s.value[entry]
    return [
        ClientSamples(
            s.dimensions,
            s.metrics,
            client[one],
            dimension[one],
            metric[one],
            size[one],
            column[its],
            value[its],
            s.undefined,
        )
        for one, its in zip(sample_parts, entry_parts, strict=True)
    ]


def client_level(parts: Sequence[ClientSamples | None]) -> tuple[ClientCells, ClientCells]:
    """Client-level cells of both kinds (build id, submission date) from every sample of a shard's cells
    (None: a partition with none)."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return ClientCells.empty(BUILD_ID_COLUMNS), ClientCells.empty(SUBMISSION_DATE_COLUMNS)
    dimensions = sorted({d for p in parts for d in p.dimensions})
    metrics = sorted({m for p in parts for m in p.metrics}, key=metric_order)
    dim_rank = {d: i for i, d in enumerate(dimensions)}
    metric_rank = {m: i for i, m in enumerate(metrics)}
    dimension = np.concatenate([np.array([dim_rank[d] for d in p.dimensions], np.int64)[p.dimension] for p in parts])
    metric = np.concatenate([np.array([metric_rank[m] for m in p.metrics], np.int64)[p.metric] for p in parts])
    size = np.concatenate([p.size for p in parts])
    column = np.concatenate([p.column for p in parts])
    value = np.concatenate([p.value for p in parts])
    client = factorized(np.concatenate([p.client for p in parts]).view(np.int64))[1]
    undefined = frozenset().union(*(p.undefined for p in parts))
    by_date = sorted({drop_build_id(d) for d in dimensions})
    date_rank = {d: i for i, d in enumerate(by_date)}
    to_date = np.array([date_rank[drop_build_id(d)] for d in dimensions], dtype=np.int64)
    cells = _Cells(metrics, metric, client, size, column, value)
    return (
        cells.weighted(BUILD_ID_COLUMNS, dimensions, dimension, undefined),
        cells.weighted(SUBMISSION_DATE_COLUMNS, by_date, to_date[dimension], undefined),
    )


@dataclass
class _Cells:
    """One shard's samples, with the tables resolved: what both kinds are computed from. Entries are taken a
    slice at a time (`_SLICE`), so that a reduction's memory is its samples and a few arrays per sample, not
    several per entry."""

    metrics: list[Metric]
    metric: np.ndarray  # per sample
    client: np.ndarray  # dense client index, per sample
    size: np.ndarray  # entries per sample
    column: np.ndarray  # per entry
    value: np.ndarray

    def __post_init__(self) -> None:
        ends = np.cumsum(self.size)
        self.starts = ends - self.size
        cuts = np.searchsorted(ends, np.arange(0, int(ends[-1]) if len(ends) else 0, _SLICE), side="right")
        self.slices = list(itertools.pairwise([*dict.fromkeys([0, *cuts.tolist()]), len(self.size)]))
        self.total = np.zeros(len(self.size), dtype=np.float64)  # each sample's counts, summed
        for (first, last), (samples, entries) in zip(self.slices, self._slices(), strict=True):
            self.total[first:last] = np.bincount(samples - first, self.value[entries], minlength=last - first)

    def _slices(self) -> Iterator[tuple[np.ndarray, slice]]:
        """(the sample of each entry, the entries) of each slice."""
        for first, last in self.slices:
            sizes = self.size[first:last]
            entries = slice(int(self.starts[first]), int(self.starts[first] + sizes.sum())) if len(sizes) else slice(0)
            yield np.repeat(np.arange(first, last), sizes), entries

    def weighted(
        self, columns: tuple[str, ...], dimensions: list[tuple[str, ...]], dimension: np.ndarray, undefined: frozenset
    ) -> ClientCells:
        """The cells of one kind: a client's samples of a cell summed, normalised, then added over clients."""
        width = max(len(self.metrics), 1)
        cell = dimension * width + self.metric
        # one group per (client, cell): its total is the client's histogram's, which each entry is divided by
        group_cell, group = _groups(self.client, cell, len(dimensions) * width)
        group_total = np.bincount(group, weights=self.total, minlength=len(group_cell))
        keys, group_row = unique_inverse(group_cell)
        rows, shares = [], []
        for samples, entries in self._slices():
            entry_group = group[samples]
            rows.append(group_row[entry_group].astype(np.int32))
            shares.append(np.rint(self.value[entries] / group_total[entry_group] * UNIT).astype(np.int64))
        return ClientCells(
            columns,
            dimensions,
            self.metrics,
            (keys // width).astype(np.int32),
            (keys % width).astype(np.int32),
            np.bincount(group_row, minlength=len(keys)).astype(np.int64),
            np.concatenate(rows) if rows else np.zeros(0, np.int32),
            self.column,
            np.concatenate(shares) if shares else np.zeros(0, np.int64),
            undefined,
        )


def _groups(client: np.ndarray, cell: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (client, cell) pairs, as the cell of each, and the pair of each sample."""
    if not len(client):
        return cell, np.zeros(0, dtype=np.int64)
    if (int(client.max()) + 1) * cells < 2**63:
        pairs, group = factorized(client * cells + cell)
        return pairs % cells, group
    order = np.lexsort((cell, client))  # too many to number as one integer: sorted by both
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(client[order]) != 0) | (np.diff(cell[order]) != 0)
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(first) - 1
    return cell[order][first], group


def with_clients(aggregate: Aggregate, cells: ClientCells) -> Aggregate:
    """`aggregate` (canonical: sorted tables and rows) with the client-level arrays of its cells, from the client
    reduction of its shard; a row it lacks (all its pings without a usable clientId) has no clients. Cells that
    `aggregate` lacks (its other dates) are left out."""
    clients = np.zeros(len(aggregate), dtype=np.int64)
    fixed = np.zeros(len(aggregate.histogram), dtype=np.int64)
    if len(aggregate) and len(cells.row_dimension):
        dim_rank = {d: i for i, d in enumerate(aggregate.dimensions)}
        metric_rank = {m: i for i, m in enumerate(aggregate.metrics)}
        width = len(aggregate.metrics)
        keys = aggregate.row_dimension.astype(np.int64) * width + aggregate.row_metric
        dim_map = np.array([dim_rank.get(d, -1) for d in cells.dimensions], dtype=np.int64)
        metric_map = np.array([metric_rank.get(m, -1) for m in cells.metrics], dtype=np.int64)
        d, m = dim_map[cells.row_dimension], metric_map[cells.row_metric]
        wanted = np.where((d >= 0) & (m >= 0), d * width + m, -1)
        row = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        row[keys[row] != wanted] = -1
        found = row >= 0
        clients[row[found]] = cells.clients[found]  # each cell once: its shard's reduction held all its clients
        if not _buckets.add_entries(fixed, aggregate.row_offset, row, cells.entry_row, cells.entry_column, cells.share):
            entry_row = row[cells.entry_row]  # a sum past int64's maximum: clamped, at once
            kept = entry_row >= 0
            positions = aggregate.row_offset[entry_row[kept]] + cells.entry_column[kept]
            saturating_add_at(fixed, positions, cells.share[kept])
    return Aggregate(**{**vars(aggregate), "clients": clients, "client_histogram": fixed / UNIT})
