"""A ping's histograms, scalars and simple measurements read from its bytes by a compiled scanner
(aggregator/_scan.c), the rest parsed as JSON.

Most of a ping's cost is its histograms and scalars: hundreds of small objects and thousands of bucket entries,
each a Python object once parsed. The scanner reads the containers the job aggregates straight into arrays and
replaces each in the line by its number, so the JSON parser builds only the rest, and the accumulator takes
them as arrays (aggregator/extract.py). It reads in full only what it checks in full (plain names, exact
histogram fields, plain non-negative integers, increasing bucket keys, plain ASCII strings, finite numbers). A
histogram or a value of any other shape it leaves to the JSON parser, alone; a ping whose containers it cannot
read is parsed whole, as before, with the same outcome.

It also looks each histogram and value up in the accumulator's caches (`Known`), so that those of metrics seen
before reach the accumulator as arrays, with no Python step per value: only the others (first sight, values of
another type, keyed metrics past the label bound) take the general path, in the ping's order."""

from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter

import orjson

from aggregator import _scan

KNOWN_ROW = 4  # a histogram of a known metric: metric, sum, first and end entry of its buckets
METRIC, SUM, FIRST, END = range(KNOWN_ROW)
KNOWN_VALUE = 2  # a value of a known metric: metric, value
VALUE_METRIC, VALUE = range(KNOWN_VALUE)
SLOW, SKIP, NONNUMERIC = -1, -2, -3  # codes the scanner uses: the general path, excluded, a string counted
INT, TRUE, FALSE, STRING, NUMBER, NULL = range(6)  # kinds of values; INT: plain, non-negative, at most 18 digits
RAW = -1  # the kind of a histogram or a value the scanner left to the parser: its text's start and end
NAMED = -1  # a scalar code: a name whose strings are counted, no metric yet
PROCESS_INDEX = {"parent": 0, "content": 1, "gpu": 2}  # the processes whose metrics are read


class Known:
    """The accumulator's caches of metrics, per process, in the shape the scanner reads them.

    plain[p]: histogram name -> code; keyed[p]: name -> {label: code}, or None for a keyed histogram the job
    excludes. A histogram's code is metric << 1, plus 1 for a count histogram's (its sum is a scalar-like value);
    for a metric without a definition, a dict of codes by the layout its pings give, (histogram_type,
    bucket_count, low, high).
    scalars[p]: scalar name -> code; keyed_scalars[p]: name -> {label: code}, or None for an excluded one. A
    scalar's code is its metric, NAMED, or SKIP for a name the job excludes. simple[p], simple_nested[p]: the same
    of simple measurements, a value's name -> code, and an object's name -> {its value's name: code}."""

    def __init__(self, excluded: frozenset[str], labels: int) -> None:
        self.plain: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.keyed: tuple[dict, ...] = tuple(dict.fromkeys(excluded) for _ in PROCESS_INDEX)
        self.scalars: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.keyed_scalars: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.simple: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.simple_nested: tuple[dict, ...] = tuple({} for _ in PROCESS_INDEX)
        self.labels = labels

    def cache(self, process: str, keyed_name: str | None) -> dict:
        """The cache of a process's plain histograms, or of the labels of one of its keyed histograms."""
        return self._labels(self.keyed, process, keyed_name) if keyed_name else self.plain[PROCESS_INDEX[process]]

    def scalar_labels(self, process: str, name: str) -> dict:
        """The cache of the labels of a process's keyed scalar."""
        return self._labels(self.keyed_scalars, process, name)

    def nested_simple(self, process: str, name: str) -> dict:
        """The cache of the values of a process's simple measurement that is an object."""
        return self._labels(self.simple_nested, process, name)

    @staticmethod
    def _labels(keyed: tuple[dict, ...], process: str, name: str) -> dict:
        of_process = keyed[PROCESS_INDEX[process]]
        labels = of_process.get(name)
        if labels is None:
            labels = of_process[name] = {}
        return labels


class Scanned:
    """What the scanner took from one ping: the histograms and values of known metrics as int64 bytes (laid end to
    end by the accumulator, made arrays once per flush), and per container the rest, for the general path."""

    __slots__ = ("_line", "counts", "keys", "known_rows", "known_values", "names", "nonnumeric", "raw", "slow")

    def __init__(
        self,
        line: bytes | memoryview,
        names: list[str],
        keys: bytes,
        counts: bytes,
        known_rows: bytes,
        known_values: bytes,
        nonnumeric: int,
        slow: list[list[tuple[int, ...]]],
        raw: dict[int, object],
    ) -> None:
        self._line = line
        self.names = names
        self.keys, self.counts = keys, counts
        self.known_rows, self.known_values = known_rows, known_values
        self.nonnumeric = nonnumeric
        self.slow = slow
        self.raw = raw  # RAW histograms and values, as parsed, by where their text starts

    def rows_of(self, container: int) -> list[tuple[int, ...]]:
        """The histograms of a container for the general path, in the ping's order."""
        return self.slow[container]

    def keyed_rows_of(self, container: int) -> Iterator[tuple[str, list[tuple[int, ...]]]]:
        """(name, its rows for the general path) of each keyed histogram of a container, in the ping's order."""
        for name, rows in groupby(self.slow[container], key=itemgetter(0)):
            yield self.names[name], list(rows)

    def values_of(self, container: int) -> dict:
        """The scalars of a container for the general path, as the JSON parser would have given them."""
        return {self.names[entry[0]]: self._value(entry) for entry in self.slow[container]}

    def keyed_values_of(self, container: int) -> dict[str, dict]:
        """The keyed scalars of a container for the general path, {name: {label: value}}, in the ping's order."""
        return {
            self.names[name]: {self.names[entry[1]]: self._value(entry) for entry in of_name}
            for name, of_name in groupby(self.slow[container], key=itemgetter(0))
        }

    def _value(self, entry: list[int]) -> object:
        kind, value, start, end = entry[2:6]
        if kind == RAW:
            return self.raw[start]
        if kind == INT:
            return value
        if kind in (TRUE, FALSE):
            return kind == TRUE
        return orjson.loads(self._line[start:end])  # a string, another number, or null: as the parser reads it

    def simple_of(self, container: int) -> dict:
        """The simple measurements of a container for the general path, `{name: value or {name: value}}`, in the
        ping's order."""
        measures: dict = {}
        for entry in self.slow[container]:
            name, value = self.names[entry[0]], self._value(entry)
            if entry[1] < 0:
                measures[name] = value
            else:
                measures.setdefault(name, {})[self.names[entry[1]]] = value
        return measures

    def values(self, start: int, end: int) -> dict[str, int]:
        """One histogram's `values`, as the JSON parser would have given them."""
        keys, counts = (memoryview(b).cast("q")[start:end].tolist() for b in (self.keys, self.counts))
        return dict(zip(map(str, keys), counts, strict=True))


def scan(line: bytes | memoryview, known: Known) -> tuple[bytes, Scanned] | None:
    """(the line with its histogram and scalar containers replaced by their numbers, what they held), or None
    for a ping the scanner does not vouch for."""
    caches = (known.plain, known.keyed, known.scalars, known.keyed_scalars, known.simple, known.simple_nested)
    found = _scan.scan(line, *caches, known.labels)
    if found is None:
        return None
    *tables, spans = found
    raw = {}
    if spans:  # odd values: parsed now, so that a ping with invalid JSON in one is malformed, as if parsed whole
        ends = memoryview(spans).cast("q").tolist()
        for start, end in zip(ends[::2], ends[1::2], strict=True):
            try:
                raw[start] = orjson.loads(line[start:end])
            except orjson.JSONDecodeError:
                return None
    return tables[0], Scanned(line, *tables[1:], raw)
