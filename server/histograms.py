"""From stored cells to the answer's entries: sum the matching cells per (date, label), derive use counters,
and, when asked, a mean and percentiles.

Cells arrive as Postgres' binary array encoding (`array_send`): a 20-byte header, then per element a 4-byte
length and an 8-byte big-endian value. Rows of one layout have one length, so rows are decoded by a numpy
reshape, a chunk of rows at a time: joining the 72 MB of rows of a 60 MB answer at once held the GIL for 50 ms
and doubled their memory. Sums saturate at the int64 maximum as the job's do (docs/semantics.md).
"""

from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np

from aggregator.aggregate import saturating_add_at

HEADER = 20  # ndim, has-nulls flag, element type, then (length, lower bound) of the one dimension
ELEMENT = 12  # int32 length (always 8), int64 value
CHUNK_CELLS = 2**17  # bucket counts decoded and summed per step: about a millisecond each
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
    histogram: bytes  # array_send of the bigint[]
    sum: int
    count: int


@dataclass(slots=True)
class Cell:
    histogram: np.ndarray  # int64 bucket counts
    sum: int
    count: int


def decode(rows: list[Row], size: int) -> np.ndarray:
    """The rows' histograms, each `size` bytes of array_send, as an int64 matrix."""
    if size < HEADER + ELEMENT or any(len(r.histogram) != size for r in rows):
        raise ValueError("histograms of one layout differ in length")
    raw = np.frombuffer(b"".join(r.histogram for r in rows), np.uint8).reshape(len(rows), size)
    elements = raw[:, HEADER:].reshape(len(rows), (size - HEADER) // ELEMENT, ELEMENT)
    if (elements[:, :, :4].view(">i4") != 8).any():
        raise ValueError("a histogram holds NULL")
    return elements[:, :, 4:].view(">i8")[:, :, 0].astype(np.int64)


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
    groups: dict[tuple[date, str], int] = {}
    index = np.fromiter((groups.setdefault((r.date, r.label), len(groups)) for r in rows), np.int64, len(rows))
    size = len(rows[0].histogram) if rows else HEADER + ELEMENT
    width = (size - HEADER) // ELEMENT
    histograms = np.zeros((len(groups), width), np.int64)  # iterating it yields each group's row, a view
    step = max(1, CHUNK_CELLS // max(width, 1))
    for start in range(0, len(rows), step):
        matrix, where = decode(rows[start : start + step], size), index[start : start + step]
        if len(groups) == len(rows):
            histograms[start : start + len(matrix)] = matrix
        else:
            positions = (where[:, None] * width + np.arange(width)).ravel()
            saturating_add_at(histograms.reshape(-1), positions, matrix.ravel())
    sums, counts = np.zeros(len(groups), np.int64), np.zeros(len(groups), np.int64)
    saturating_add_at(sums, index, np.fromiter((r.sum for r in rows), np.int64, len(rows)))
    saturating_add_at(counts, index, np.fromiter((r.count for r in rows), np.int64, len(rows)))
    return {
        key: Cell(histogram, total, count)
        for key, histogram, total, count in zip(groups, histograms, sums.tolist(), counts.tolist(), strict=True)
    }


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
    counts = np.clip(cell.histogram, 0, None).astype(np.float64)
    samples = counts.sum()
    if layout.kind == "categorical" or samples <= 0:
        return {"mean": None, "percentiles": None}
    lower = np.array(layout.bounds, np.float64)
    upper = _upper_bounds(layout)
    cumulative = np.cumsum(counts)
    targets = np.array(PERCENTILES, np.float64) / 100 * samples
    bucket = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(counts) - 1)
    before = cumulative[bucket] - counts[bucket]
    inside = np.divide(targets - before, counts[bucket], out=np.zeros_like(targets), where=counts[bucket] > 0)
    values = lower[bucket] + np.clip(inside, 0, 1) * (upper[bucket] - lower[bucket])
    return {
        "mean": cell.sum / samples,
        "percentiles": {str(p): round(float(v), 6) for p, v in zip(PERCENTILES, values, strict=True)},
    }
