"""What a publish writes, computed from a snapshot run's Aggregate: the leaf's and the rollup's rows as binary
COPY streams, the layouts and the catalog.

Why a hand-written COPY encoder: asyncpg's `copy_records_to_table` makes a Python int of every bucket and
encodes them one by one, about 3x slower than Postgres ingests the same rows. Here numpy writes the buckets in
Postgres' binary array format a batch at a time, and a row is the join of six byte strings: its dimension
fields and its metric fields (both encoded once per distinct value), its fixed-size tail and its buckets, then
its clients and their buckets (the client-level weighting).
"""

import hashlib
import itertools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from aggregator.aggregate import _SAFE_TOTAL, KIND_COLUMNS, Aggregate, rebuild
from aggregator.layouts import Layout

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_EPOCH = date(2000, 1, 1)  # Postgres' day zero
_INT8_OID = 20
_INT4_MAX = 2**31 - 1
_BATCH = 1024  # rows encoded per numpy pass (about 1 MiB: fits the caches; memory does not grow with the day)
_SUM_BUCKETS = 1 << 18  # buckets summed per np.add.at by the rollup (index arrays of 2 MiB)
_FILTERS = ("application", "architecture", "os", "os_version")  # what the rollup sums away
_CELLS = ("metric", "label", "process", "layout", "sum", "count", "histogram")
LEAF_COLUMNS = ("kind", "submission_date", "channel", "version", "date", *_FILTERS, *_CELLS)
ROLLUP_COLUMNS = ("kind", "submission_date", "channel", "version", "date", *_CELLS)
CLIENT_COLUMNS = ("clients", "client_histogram")  # written when the run has the client-level weighting
# a one-dimensional array field: its byte length, then Postgres' array header (dimensions, flags, element type,
# length, lower bound); big-endian, unpadded
_ARRAY_HEADER = [
    ("size", ">i4"),
    ("ndim", ">i4"),
    ("flags", ">i4"),
    ("oid", ">u4"),
    ("length", ">i4"),
    ("lower", ">i4"),
]
# sum, count, then the histogram's array header: 48 bytes
_TAIL = np.dtype([("sum_size", ">i4"), ("sum", ">i8"), ("count_size", ">i4"), ("count", ">i8"), *_ARRAY_HEADER])
_CLIENT_TAIL = np.dtype([("clients_size", ">i4"), ("clients", ">i8"), *_ARRAY_HEADER])  # then the client histogram's
_FLOAT8_OID = 701


_NO_CLIENTS = struct.pack(">iqi", 8, 0, -1)  # clients 0 and a NULL client histogram: a run without the weighting


def copy_columns(aggregate: Aggregate) -> tuple[str, ...]:
    """The columns of the COPY of a leaf's or a rollup's rows: all of them (a staged leaf has no defaults)."""
    return (LEAF_COLUMNS if "application" in aggregate.columns else ROLLUP_COLUMNS) + CLIENT_COLUMNS


def parse_day(text: str) -> date | None:
    """A YYYYMMDD string as a date, None when it is not one."""
    try:
        return datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 and text.isdigit() else None
    except ValueError:
        return None


@dataclass
class Contribution:
    """One (kind, submission date): the rows to serve, how many rows of the run cannot be stored, and once
    derived, their rollup and catalog rows (`catalog_dates`, `catalog_filters`)."""

    kind: str
    day: date
    leaf: Aggregate
    skipped: int
    rollup: Aggregate | None = None
    catalog: dict[str, list[tuple]] = field(default_factory=dict)

    def derive(self) -> None:
        """Compute the rollup and the catalog (numpy mostly, so it can run in a thread beside a COPY)."""
        self.rollup = rollup(self.leaf)
        self.catalog = {"catalog_dates": self.catalog_dates(), "catalog_filters": self.catalog_filters()}

    @classmethod
    def of(cls, aggregate: Aggregate, kind: str, day: date) -> "Contribution":
        return cls(kind, day, *_storable(aggregate, kind))

    def layouts(self) -> list[Layout]:
        return sorted({m[3] for m in self.leaf.metrics}, key=layout_digest)

    def copy_stream(self, aggregate: Aggregate, layout_ids: dict[Layout, int]) -> Iterator[bytes]:
        """The binary COPY stream of the leaf or of the rollup, rows in index order."""
        return _stream(aggregate, self.kind, self.day, layout_ids)

    def catalog_dates(self) -> list[tuple]:
        """(kind, submission_date, channel, version, date) for every date with data."""
        leaf = self.leaf
        found = {(*_channel_version(leaf, d), self._date(d)) for d in leaf.dimensions}
        return [(self.kind, self.day, *row) for row in sorted(found)]

    def catalog_filters(self) -> list[tuple]:
        """(kind, submission_date, channel, version, filter, value): what /filters/ lists for this day."""
        leaf = self.leaf
        pairs = [_channel_version(leaf, d) for d in leaf.dimensions]
        found = set()
        for cv, d in zip(pairs, leaf.dimensions, strict=True):
            os_pair = f"{_field(leaf, d, 'os')},{_field(leaf, d, 'os_version')}"
            found |= {(*cv, "application", _field(leaf, d, "application")), (*cv, "os", os_pair)}
            found.add((*cv, "architecture", _field(leaf, d, "architecture")))
        channel_versions = sorted(set(pairs))
        rank = {cv: i for i, cv in enumerate(channel_versions)}
        of_dimension = np.array([rank[cv] for cv in pairs], dtype=np.int64)
        for position, name in ((0, "metric"), (2, "child")):  # metric name, process
            values = sorted({m[position] for m in leaf.metrics})
            index = {v: i for i, v in enumerate(values)}
            of_metric = np.array([index[m[position]] for m in leaf.metrics], dtype=np.int64)
            codes = np.unique(of_dimension[leaf.row_dimension] * len(values) + of_metric[leaf.row_metric])
            found |= {(*channel_versions[c // len(values)], name, values[c % len(values)]) for c in codes.tolist()}
        return [(self.kind, self.day, *row) for row in sorted(found)]

    def _date(self, dimensions: tuple[str, ...]) -> date:
        return parse_day(_field(self.leaf, dimensions, "build_id")) if self.kind == "build_id" else self.day


def _channel_version(aggregate: Aggregate, dimensions: tuple[str, ...]) -> tuple[str, int]:
    return _field(aggregate, dimensions, "channel"), int(_field(aggregate, dimensions, "version"))


def layout_digest(layout: Layout) -> str:
    """The identity of a layout in the `layouts` table (arrays too long for a unique btree index)."""
    text = "\0".join((layout.kind, ",".join(map(str, layout.bounds)), "\1".join(layout.labels)))
    return hashlib.sha256(text.encode()).hexdigest()


def _field(aggregate: Aggregate, dimensions: tuple[str, ...], column: str) -> str:
    return dimensions[aggregate.columns.index(column)]


def _storable(aggregate: Aggregate, kind: str) -> tuple[Aggregate, int]:
    """The aggregate without the dimension sets Postgres cannot type (a version beyond int4, a build id that
    is no calendar date: the job accepts any digits), and how many rows that leaves out."""
    columns = KIND_COLUMNS[kind]
    version = columns.index("version")
    build = columns.index("build_id") if kind == "build_id" else None

    def ok(d: tuple[str, ...]) -> bool:
        return int(d[version]) <= _INT4_MAX and (build is None or parse_day(d[build]) is not None)

    if all(ok(d) for d in aggregate.dimensions):
        return aggregate, 0
    kept = rebuild([aggregate], keep=ok) if len(aggregate) else aggregate
    return kept, len(aggregate) - len(kept)


def rollup(leaf: Aggregate) -> Aggregate:
    """The leaf with application, architecture, os and os_version summed away, exactly as
    `rebuild([leaf], dimension_key=...)` would: that is the definition, and the path taken whenever a total
    could reach the int64 range. Otherwise every bucket is added to its place in the rollup with `np.add.at`,
    a slice of the buckets at a time (memory does not grow with the day): several times faster than `rebuild`,
    and 3x faster than summing the rows of each length as a matrix, which gathered every bucket through an
    index matrix first."""
    keep = [i for i, c in enumerate(leaf.columns) if c not in _FILTERS]
    columns = tuple(leaf.columns[i] for i in keep)

    def reduced(d: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d[i] for i in keep)

    largest = max((float(a.sum(dtype=np.float64)) for a in (leaf.histogram, leaf.sums, leaf.counts)), default=0)
    if not len(leaf) or largest >= _SAFE_TOTAL:
        return rebuild([leaf], dimension_key=reduced, columns=columns) if len(leaf) else Aggregate.empty(columns)
    dimensions = sorted({reduced(d) for d in leaf.dimensions})
    rank = {d: i for i, d in enumerate(dimensions)}
    to_reduced = np.array([rank[reduced(d)] for d in leaf.dimensions], dtype=np.int64)
    width = len(leaf.metrics)
    groups, group_of_row = np.unique(to_reduced[leaf.row_dimension] * width + leaf.row_metric, return_inverse=True)
    sizes = np.diff(leaf.row_offset)
    a_row = np.empty(len(groups), dtype=np.int64)  # a row of each group: all of them have its metric's length
    a_row[group_of_row] = np.arange(len(leaf))
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(sizes[a_row], out=offsets[1:])
    shift = offsets[:-1][group_of_row] - leaf.row_offset[:-1]  # from a row's buckets to its group's
    weighted = leaf.clients is not None
    histogram = np.zeros(int(offsets[-1]), dtype=np.int64)
    client_histogram = np.zeros(int(offsets[-1]), dtype=np.float64) if weighted else None
    cuts = np.searchsorted(leaf.row_offset, np.arange(0, int(leaf.row_offset[-1]), _SUM_BUCKETS)).tolist()
    for first, last in itertools.pairwise([*cuts, len(leaf)]):
        low, high = int(leaf.row_offset[first]), int(leaf.row_offset[last])
        targets = np.repeat(shift[first:last], sizes[first:last]) + np.arange(low, high)
        np.add.at(histogram, targets, leaf.histogram[low:high])
        if weighted:
            np.add.at(client_histogram, targets, leaf.client_histogram[low:high])
    sums, counts = np.zeros(len(groups), dtype=np.int64), np.zeros(len(groups), dtype=np.int64)
    np.add.at(sums, group_of_row, leaf.sums)
    np.add.at(counts, group_of_row, leaf.counts)
    clients = None
    if weighted:
        clients = np.zeros(len(groups), dtype=np.int64)
        np.add.at(clients, group_of_row, leaf.clients)
    return Aggregate(
        columns,
        dimensions,
        leaf.metrics,
        (groups // width).astype(np.int32),
        (groups % width).astype(np.int32),
        offsets,
        sums,
        counts,
        histogram,
        clients=clients,
        client_histogram=client_histogram,
    )


def index_order(aggregate: Aggregate) -> np.ndarray:
    """Rows in the order of the leaf index (channel, version, metric, date): the index is then built from
    sorted input, and the API's lookups read a few adjacent pages instead of one page per row."""
    date = "build_id" if "build_id" in aggregate.columns else "submission_date"

    def ranks(values: list) -> np.ndarray:
        rank = {v: i for i, v in enumerate(sorted(set(values)))}
        return np.array([rank[v] for v in values], dtype=np.int64)

    dims = aggregate.dimensions
    channel_version = ranks([(_field(aggregate, d, "channel"), int(_field(aggregate, d, "version"))) for d in dims])
    dates = ranks([_field(aggregate, d, date) for d in dims])
    names = ranks([m[0] for m in aggregate.metrics])
    d, m = aggregate.row_dimension, aggregate.row_metric
    # two keys, not five: lexsort's time grows with them (it is stable, ties keep the rows' order)
    return np.lexsort((dates[d], channel_version[d] * len(names) + names[m]))


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _int4(value: int) -> bytes:
    return struct.pack(">ii", 4, value)


def _date_field(value: date) -> bytes:
    return struct.pack(">ii", 4, (value - _EPOCH).days)


def _dimension_fields(aggregate: Aggregate, kind: str, day: date) -> list[bytes]:
    """Per dimension set: the tuple's field count and every field before the metric's."""
    leaf = "application" in aggregate.columns
    count = struct.pack(">h", len(copy_columns(aggregate)))
    head = count + _text(kind) + _date_field(day)
    encoded = []
    for d in aggregate.dimensions:
        when = parse_day(_field(aggregate, d, "build_id")) if kind == "build_id" else day
        parts = [head, _text(_field(aggregate, d, "channel")), _int4(int(_field(aggregate, d, "version")))]
        parts.append(_date_field(when))
        if leaf:
            parts += [_text(_field(aggregate, d, column)) for column in _FILTERS]
        encoded.append(b"".join(parts))
    return encoded


def _metric_fields(metrics: Sequence, layout_ids: dict[Layout, int]) -> list[bytes]:
    return [
        _text(name) + _text(label) + _text(process) + _int4(layout_ids[layout])
        for name, label, process, layout in metrics
    ]


def _array_header(tail: np.dtype, lengths: np.ndarray, oid: int) -> np.ndarray:
    """Tails of type `tail`, one per row, their array header filled for `lengths` elements of type `oid`."""
    tails = np.empty(len(lengths), tail)
    tails["size"], tails["length"] = 20 + 12 * lengths, lengths
    tails["ndim"], tails["flags"], tails["oid"], tails["lower"] = 1, 0, oid, 1
    return tails


def _elements(values: np.ndarray) -> bytes:
    """8-byte array elements (int64 or float64), each after its length, as Postgres' binary array holds them."""
    elements = np.empty(len(values), [("size", ">i4"), ("value", ">" + values.dtype.str[1:])])
    elements["size"], elements["value"] = 8, values
    return elements.tobytes()


def _stream(aggregate: Aggregate, kind: str, day: date, layout_ids: dict[Layout, int]) -> Iterator[bytes]:
    """The binary COPY stream of the aggregate's rows in index order, columns as `copy_columns`."""
    dims = _dimension_fields(aggregate, kind, day)
    metrics = _metric_fields(aggregate.metrics, layout_ids)
    order = index_order(aggregate)
    sizes = np.diff(aggregate.row_offset)
    weighted = aggregate.clients is not None
    yield HEADER
    for start in range(0, len(order), _BATCH):
        rows = order[start : start + _BATCH]
        lengths = sizes[rows]
        ends = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=ends[1:])
        tail = _array_header(_TAIL, lengths, _INT8_OID)
        tail["sum_size"] = tail["count_size"] = 8
        tail["sum"], tail["count"] = aggregate.sums[rows], aggregate.counts[rows]
        buckets = np.repeat(aggregate.row_offset[rows] - ends[:-1], lengths) + np.arange(ends[-1])
        values, bounds = _elements(aggregate.histogram[buckets]), (ends * 12).tolist()
        pieces: list[bytes] = [b""] * (6 * len(rows))  # built by column, joined by row: the fastest in CPython
        pieces[0::6] = map(dims.__getitem__, aggregate.row_dimension[rows].tolist())
        pieces[1::6] = map(metrics.__getitem__, aggregate.row_metric[rows].tolist())
        # numpy makes the tails' bytes objects; its "S" type drops trailing NULs, and a tail ends with lower = 1
        pieces[2::6] = tail.view("S48").tolist()
        pieces[3::6] = [values[a:b] for a, b in itertools.pairwise(bounds)]
        if weighted:
            client_tail = _array_header(_CLIENT_TAIL, lengths, _FLOAT8_OID)
            client_tail["clients_size"], client_tail["clients"] = 8, aggregate.clients[rows]
            float_values = _elements(aggregate.client_histogram[buckets])
            pieces[4::6] = client_tail.view("S36").tolist()
            pieces[5::6] = [float_values[a:b] for a, b in itertools.pairwise(bounds)]
        else:
            pieces[4::6] = [_NO_CLIENTS] * len(rows)
        yield b"".join(pieces)
    yield TRAILER
