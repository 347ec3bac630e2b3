"""A ping's histograms and scalars read from its bytes by a compiled scanner (aggregator/_scan.c), the rest parsed
as JSON.

Most of a ping's cost is its histograms and scalars: hundreds of small objects and thousands of bucket entries,
each a Python object once parsed. The scanner reads the containers the job aggregates straight into arrays and
replaces each in the line by its number, so the JSON parser builds only the rest, and the accumulator takes
them as arrays (aggregator/extract.py). It vouches only for what it checks in full (plain names, exact histogram
fields, plain non-negative integers, increasing bucket keys, plain ASCII strings, finite numbers); any other
ping is parsed whole, as before, with the same outcome.

It also looks each histogram and scalar up in the accumulator's caches (`Known`), so that the values of metrics
seen before reach the accumulator as arrays, with no Python step per value: only the others (first sight,
values of another type, keyed metrics past the label bound) take the general path, in the ping's order.
"""

from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter

import numpy as np
import orjson

from aggregator import _scan

ROW = 10  # name, label, histogram_type, sum, bucket_count, range low, range high, first entry, end entry, metric
KIND, SUM, FIRST, END, METRIC = 2, 3, 7, 8, 9
SLOW, SKIP, NONNUMERIC = -1, -2, -3  # metrics of rows and entries: the general path, excluded, a string counted
ENTRY = 7  # name, label, kind of value, value, start and end of its text in the line, metric
VALUE, ENTRY_METRIC = 3, 6
INT, TRUE, FALSE, STRING, NUMBER, NULL = range(6)  # kinds of values; INT: plain, non-negative, at most 18 digits
NAMED = -1  # a scalar code: a name whose strings are counted, no metric yet
PROCESS_INDEX = {"parent": 0, "content": 1, "gpu": 2}  # the processes whose metrics are read


class Known:
    """The accumulator's caches of metrics, per process, in the shape the scanner reads them.

    plain[p]: histogram name -> code; keyed[p]: name -> {label: code}, or None for a keyed histogram the job
    excludes. A histogram's code is metric << 1, plus 1 for a count histogram's (its sum is a scalar-like value).
    scalars[p]: scalar name -> code; keyed_scalars[p]: name -> {label: code}, or None for an excluded one. A
    scalar's code is its metric, NAMED, or SKIP for a name the job excludes."""

    def __init__(self, excluded: frozenset[str], labels: int) -> None:
        self.plain: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.keyed: tuple[dict, ...] = tuple(dict.fromkeys(excluded) for _ in PROCESS_INDEX)
        self.scalars: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.keyed_scalars: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.labels = labels

    def cache(self, process: str, keyed_name: str | None) -> dict:
        """The cache of a process's plain histograms, or of the labels of one of its keyed histograms."""
        return self._labels(self.keyed, process, keyed_name) if keyed_name else self.plain[PROCESS_INDEX[process]]

    def scalar_labels(self, process: str, name: str) -> dict:
        """The cache of the labels of a process's keyed scalar."""
        return self._labels(self.keyed_scalars, process, name)

    @staticmethod
    def _labels(keyed: tuple[dict, ...], process: str, name: str) -> dict:
        of_process = keyed[PROCESS_INDEX[process]]
        labels = of_process.get(name)
        if labels is None:
            labels = of_process[name] = {}
        return labels


class Scanned:
    """The histograms the scanner took from one ping."""

    __slots__ = ("_containers", "_line", "counts", "entries", "keys", "names", "rows", "slow", "slow_values")

    def __init__(
        self, line: bytes, names: list[str], containers: bytes, rows: bytes, keys: bytes, counts: bytes, entries: bytes
    ) -> None:
        self._line = line
        self.names = names
        self._containers = np.frombuffer(containers, dtype=np.int64).tolist()
        self.rows = np.frombuffer(rows, dtype=np.int64).reshape(-1, ROW)
        self.slow = bool((self.rows[:, METRIC] == SLOW).any())  # whether any row takes the general path
        self.keys = np.frombuffer(keys, dtype=np.int64)
        self.counts = np.frombuffer(counts, dtype=np.int64)
        self.entries = np.frombuffer(entries, dtype=np.int64).reshape(-1, ENTRY)
        self.slow_values = bool((self.entries[:, ENTRY_METRIC] == SLOW).any())

    def _slow(self, table: np.ndarray, column: int, container: int) -> list[list[int]]:
        rows = table[self._containers[2 * container] : self._containers[2 * container + 1]]
        return rows[rows[:, column] == SLOW].tolist()

    def rows_of(self, container: int) -> list[list[int]]:
        """The rows of a container of histograms for the general path, in the ping's order."""
        return self._slow(self.rows, METRIC, container)

    def keyed_rows_of(self, container: int) -> Iterator[tuple[str, list[list[int]]]]:
        """(name, its rows for the general path) of each keyed histogram of a container, in the ping's order."""
        for name, rows in groupby(self.rows_of(container), key=itemgetter(0)):
            yield self.names[name], list(rows)

    def values_of(self, container: int) -> dict:
        """The scalars of a container for the general path, as the JSON parser would have given them."""
        return {self.names[entry[0]]: self._value(entry) for entry in self._slow(self.entries, ENTRY_METRIC, container)}

    def keyed_values_of(self, container: int) -> dict[str, dict]:
        """The keyed scalars of a container for the general path, {name: {label: value}}, in the ping's order."""
        entries = self._slow(self.entries, ENTRY_METRIC, container)
        return {
            self.names[name]: {self.names[entry[1]]: self._value(entry) for entry in of_name}
            for name, of_name in groupby(entries, key=itemgetter(0))
        }

    def _value(self, entry: list[int]) -> object:
        kind, value, start, end = entry[2:6]
        if kind == INT:
            return value
        if kind in (TRUE, FALSE):
            return kind == TRUE
        return orjson.loads(self._line[start:end])  # a string, another number, or null: as the parser reads it

    def values(self, start: int, end: int) -> dict[str, int]:
        """One histogram's `values`, as the JSON parser would have given them."""
        return dict(zip(map(str, self.keys[start:end].tolist()), self.counts[start:end].tolist(), strict=True))


def scan(line: bytes, known: Known) -> tuple[bytes, Scanned] | None:
    """(the line with its histogram and scalar containers replaced by their numbers, what they held), or None
    for a ping the scanner does not vouch for."""
    found = _scan.scan(line, known.plain, known.keyed, known.scalars, known.keyed_scalars, known.labels)
    if found is None:
        return None
    rest, *tables = found
    return rest, Scanned(line, *tables)
