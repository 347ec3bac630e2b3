"""A ping's histograms read from its bytes by a compiled scanner (aggregator/_scan.c), the rest parsed as JSON.

Most of a ping's cost is its histograms: hundreds of small objects and thousands of bucket entries, each a
Python object once parsed. The scanner reads the histogram containers the job aggregates straight into arrays
and replaces each in the line by its number, so the JSON parser builds only the rest, and the accumulator takes
bucket keys and counts as arrays (aggregator/extract.py). It vouches only for what it checks in full (plain
names, exact histogram fields, plain non-negative integers, increasing bucket keys); any other ping is parsed
whole, as before, with the same outcome.
"""

from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter

import numpy as np

from aggregator import _scan

ROW = 9  # name, label, histogram_type, sum, bucket_count, range low, range high, first entry, end entry


class Scanned:
    """The histograms the scanner took from one ping."""

    __slots__ = ("_containers", "_rows", "counts", "keys", "names")

    def __init__(self, names: list[str], containers: bytes, rows: bytes, keys: bytes, counts: bytes) -> None:
        self.names = names
        self._containers = np.frombuffer(containers, dtype=np.int64).tolist()
        self._rows = np.frombuffer(rows, dtype=np.int64).reshape(-1, ROW).tolist()
        self.keys = np.frombuffer(keys, dtype=np.int64)
        self.counts = np.frombuffer(counts, dtype=np.int64)

    def rows_of(self, container: int) -> list[list[int]]:
        """The rows of a container of histograms, in the ping's order."""
        return self._rows[self._containers[2 * container] : self._containers[2 * container + 1]]

    def keyed_rows_of(self, container: int) -> Iterator[tuple[str, list[list[int]]]]:
        """(name, rows of its labels) of each keyed histogram of a container, in the ping's order."""
        for name, rows in groupby(self.rows_of(container), key=itemgetter(0)):
            yield self.names[name], list(rows)

    def values(self, start: int, end: int) -> dict[str, int]:
        """One histogram's `values`, as the JSON parser would have given them."""
        return dict(zip(map(str, self.keys[start:end].tolist()), self.counts[start:end].tolist(), strict=True))


def scan(line: bytes) -> tuple[bytes, Scanned] | None:
    """(the line with its histogram containers replaced by their numbers, its histograms), or None for a ping
    the scanner does not vouch for."""
    found = _scan.scan(line)
    if found is None:
        return None
    rest, *tables = found
    return rest, Scanned(*tables)
