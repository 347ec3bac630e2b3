"""From stored cells to the answer's entries: sum the matching cells per (date, label), derive use counters,
and, when asked, a mean and percentiles.

Cells arrive as Postgres' binary array encoding (`array_send`): a 20-byte header, then per element a 4-byte
length and an 8-byte big-endian value (an int64 bucket count, or a float64 client-level sum). Rows of one layout
have one length, so rows are decoded by a numpy reshape, a chunk of rows at a time: joining the 72 MB of rows of
a 60 MB answer at once held the GIL for 50 ms and doubled their memory. Sums of counts saturate at the int64
maximum as the job's do (docs/semantics.md).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np

from aggregator.aggregate import saturating_add_at

HEADER = 20  # ndim, has-nulls flag, element type, then (length, lower bound) of the one dimension
ELEMENT = 12  # int32 length (always 8), int64 value
CHUNK_CELLS = 2**17  # bucket counts decoded and summed per step: about a millisecond each
COUNTS, CLIENT_SUMS = ">i8", ">f8"  # what an element of a stored histogram is
PERCENTILES = (5, 25, 50, 75, 95)
LINEAR_KINDS = ("linear", "flag", "boolean", "enumerated")


@dataclass(frozen=True)
class Layout:
    kind: str  # exponential | linear | boolean | flag | count | enumerated | categorical
    bounds: tuple[int, ...]  # bucket lower bounds (categorical: bucket indices)
    labels: tuple[str, ...]  # as served: str(bound), or categorical names then "spill"

    def buckets(self) -> list:
        """The answer's `buckets`: numbers, or names for categorical histograms. Flag histograms keep the
        original's two labels over three values (telemetry.js and every recorded answer expect it)."""
        if self.kind == "categorical":
            return list(self.labels)
        if self.kind == "flag":
            return list(self.bounds[:2])
        return list(self.bounds)


USE_COUNTER = Layout("boolean", (0, 1, 2), ("0", "1", "2"))


class Row(NamedTuple):
    metric: str
    date: date
    label: str
    layout: int
    histogram: bytes | None  # array_send of the bigint[] (client-level: of the double precision[], or None)
    sum: int
    count: int
    clients: int | None = None  # client-level rows only


@dataclass(slots=True)
class Cell:
    histogram: np.ndarray  # int64 bucket counts, or float64 client-level sums
    sum: int
    count: int
    clients: int | None = None  # distinct clients, summed over the rows: client-level cells only


def decode(rows: list[Row], size: int, element: str = COUNTS) -> np.ndarray:
    """The rows' histograms, each `size` bytes of array_send of `element`s, as an int64 or float64 matrix."""
    if size < HEADER + ELEMENT or any(len(r.histogram) != size for r in rows):
        raise ValueError("histograms of one layout differ in length")
    raw = np.frombuffer(b"".join(r.histogram for r in rows), np.uint8).reshape(len(rows), size)
    elements = raw[:, HEADER:].reshape(len(rows), (size - HEADER) // ELEMENT, ELEMENT)
    if (elements[:, :, :4].view(">i4") != 8).any():
        raise ValueError("a histogram holds NULL")
    return elements[:, :, 4:].view(element)[:, :, 0].astype(element[1:])


def dominant_layout(rows: list[Row]) -> int:
    """The layout most of the data is in. One metric has one layout unless it has no definition and pings
    disagreed (docs/semantics.md); an answer has one `buckets` list, so the layout counted most wins."""
    totals: dict[int, int] = {}
    for r in rows:
        totals[r.layout] = totals.get(r.layout, 0) + r.count
    return min(totals, key=lambda layout: (-totals[layout], layout))


def sum_cells(rows: list[Row]) -> dict[tuple[date, str], Cell]:
    """Bucket-wise sums per (date, label) of rows of one layout: every unfiltered dimension summed over. When
    each (date, label) has one row (the rollup of one process, say) its row is its sum."""
    groups, index = _groups(rows)
    histograms = _histogram_sums(rows, index, len(groups), COUNTS)
    sums, counts = _totals(rows, index, len(groups))
    return {
        key: Cell(histogram, total, count)
        for key, histogram, total, count in zip(groups, histograms, sums, counts, strict=True)
    }


def sum_client_cells(rows: list[Row]) -> dict[tuple[date, str], Cell]:
    """`sum_cells` of client-level rows: their client-level sums added as floats, and their clients. A row
    without client-level data (published before there was any) adds nothing to either: it has no clients."""
    groups, index = _groups(rows)
    held = np.fromiter((r.histogram is not None for r in rows), bool, len(rows))
    kept = [r for r in rows if r.histogram is not None]
    histograms = _histogram_sums(kept, index[held], len(groups), CLIENT_SUMS)
    clients = np.zeros(len(groups), np.int64)
    np.add.at(clients, index[held], np.fromiter((r.clients for r in kept), np.int64, len(kept)))
    sums, counts = _totals(rows, index, len(groups))
    return {
        key: Cell(histogram, total, count, n)
        for key, histogram, total, count, n in zip(groups, histograms, sums, counts, clients.tolist(), strict=True)
    }


def _groups(rows: list[Row]) -> tuple[dict[tuple[date, str], int], np.ndarray]:
    """Each (date, label) of the rows numbered in order of appearance, and each row's number."""
    groups: dict[tuple[date, str], int] = {}
    index = np.fromiter((groups.setdefault((r.date, r.label), len(groups)) for r in rows), np.int64, len(rows))
    return groups, index


def _histogram_sums(rows: list[Row], index: np.ndarray, groups: int, element: str) -> np.ndarray:
    """The rows' histograms summed into `groups` rows by `index`, a chunk of rows at a time."""
    size = len(rows[0].histogram) if rows else HEADER + ELEMENT
    width = (size - HEADER) // ELEMENT
    histograms = np.zeros((groups, width), element[1:])  # iterating it yields each group's row, a view
    unique = len(index) == 0 or np.bincount(index).max() == 1  # then each row is its group's sum
    step = max(1, CHUNK_CELLS // max(width, 1))
    for start in range(0, len(rows), step):
        matrix, where = decode(rows[start : start + step], size, element), index[start : start + step]
        if unique:
            histograms[where] = matrix
        elif element == COUNTS:
            positions = (where[:, None] * width + np.arange(width)).ravel()
            saturating_add_at(histograms.reshape(-1), positions, matrix.ravel())
        else:
            np.add.at(histograms, where, matrix)
    return histograms


def _totals(rows: list[Row], index: np.ndarray, groups: int) -> tuple[list[int], list[int]]:
    """Each group's sum and count, saturating."""
    sums, counts = np.zeros(groups, np.int64), np.zeros(groups, np.int64)
    saturating_add_at(sums, index, np.fromiter((r.sum for r in rows), np.int64, len(rows)))
    saturating_add_at(counts, index, np.fromiter((r.count for r in rows), np.int64, len(rows)))
    return sums.tolist(), counts.tolist()


def use_counter(
    numerators: dict[tuple[date, str], Cell], denominators: dict[tuple[date, str], Cell], dates: tuple[date, ...]
) -> dict[tuple[date, str], Cell]:
    """USE_COUNTER2_* from its denominator, as the original's batched_get_use_counter: bucket 0 (documents
    that did not use the feature) = documents destroyed - bucket 1 - bucket 2; a date with no numerator is
    [documents, 0, 0] with sum 0 and the denominator's count."""
    documents: dict[date, Cell] = {}
    for (day, _), cell in denominators.items():
        total = documents.setdefault(day, Cell(np.zeros(0, np.int64), 0, 0))
        total.sum += cell.sum
        total.count += cell.count
    out = {}
    for day in dates:
        mine = {key: cell for key, cell in numerators.items() if key[0] == day}
        if not mine and day in documents:
            out[(day, "")] = Cell(np.array([documents[day].sum, 0, 0], np.int64), 0, documents[day].count)
        for key, cell in mine.items():
            if day in documents:
                histogram = cell.histogram.copy()
                histogram[0] = documents[day].sum - histogram[1] - histogram[2]
                cell = Cell(histogram, cell.sum, cell.count)
            out[key] = cell
    return out


def _upper_bounds(layout: Layout) -> np.ndarray:
    """Each bucket's upper bound: the next lower bound, and for the last one telemetry.js's rule."""
    b = np.array(layout.bounds, np.float64)
    if len(b) < 2:
        return b + 1
    linear = layout.kind in LINEAR_KINDS or b[-2] <= 0
    return np.append(b[1:], b[-1] + (b[-1] - b[-2]) if linear else b[-1] ** 2 / b[-2])


def statistics(cell: Cell, layout: Layout) -> dict:
    """Mean (exact: the cell's sum over its samples) and percentiles interpolated linearly inside their bucket
    between its bounds, so they never decrease with p (telemetry.js used the last bucket's width for every
    bucket, which could put p25 above p75). None where they mean nothing (categorical, no samples)."""
    return _statistics(cell.histogram, layout, lambda weights: cell.sum / weights.sum())


def client_statistics(cell: Cell, layout: Layout) -> dict:
    """`statistics` of a client-level cell: percentiles of its client-level sums, and a mean estimated from them,
    each bucket's weight at the middle of its bounds (where the percentiles' interpolation puts its mass
    on average), since the clients' own sums of values are not stored."""

    def mean(weights: np.ndarray) -> float:
        middles = (np.array(layout.bounds, np.float64) + _upper_bounds(layout)) / 2
        return float(weights @ middles / weights.sum())

    return _statistics(cell.histogram, layout, mean)


def _statistics(histogram: np.ndarray, layout: Layout, mean: Callable[[np.ndarray], float]) -> dict:
    """The mean (`mean` of the bucket weights) and the percentiles of a histogram, or None for both."""
    weights = np.clip(histogram, 0, None).astype(np.float64)
    total = weights.sum()
    if layout.kind == "categorical" or total <= 0:
        return {"mean": None, "percentiles": None}
    lower = np.array(layout.bounds, np.float64)
    upper = _upper_bounds(layout)
    cumulative = np.cumsum(weights)
    targets = np.array(PERCENTILES, np.float64) / 100 * total
    bucket = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(weights) - 1)
    before = cumulative[bucket] - weights[bucket]
    inside = np.divide(targets - before, weights[bucket], out=np.zeros_like(targets), where=weights[bucket] > 0)
    values = lower[bucket] + np.clip(inside, 0, 1) * (upper[bucket] - lower[bucket])
    return {
        "mean": mean(weights),
        "percentiles": {str(p): round(float(v), 6) for p, v in zip(PERCENTILES, values, strict=True)},
    }
