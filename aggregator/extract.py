"""From pings to aggregates: the rules of docs/semantics.md, applied one ping at a time.

`ping_dimensions` decides whether a ping is aggregated and under which dimension set. `Accumulator` walks an
accepted ping's metrics and records every sample in flat Python lists (cheap appends and C-level extends);
every few thousand pings `flush` turns them into positions and values with numpy and adds them into dense
int64 arrays. A partition ends as an `Aggregate` (aggregator/aggregate.py).
"""

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from aggregator.aggregate import BUILD_ID_COLUMNS, INT64_MAX, Aggregate, rebuild, saturating_add_at
from aggregator.layouts import (
    COUNT_LAYOUT,
    MAX_BOUND,
    SCALAR_LAYOUT,
    SIMPLE_MEASURES_LAYOUT,
    Definitions,
    Layout,
    definition_layout,
    fixed_layout,
    ping_layout,
)
from aggregator.stats import RunStats

AGGREGATED_CHANNELS = frozenset({"nightly", "aurora", "beta", "release"})
PROCESS_TYPES = ("parent", "content", "gpu")
EXCLUDED_KEYED_HISTOGRAMS = frozenset({"MESSAGE_MANAGER_MESSAGE_SIZE", "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION"})
EXCLUDED_SCALAR_PREFIX = "browser.engagement.navigation"
FILTER_REASONS = frozenset({"sampled_out", "channel", "channel_not_selected", "fennec", "other_date"})
_VALID_NAME = re.compile(r"[A-Za-z0-9_\-\[\].]+\Z").match
_FLUSH_PINGS = 2000


@dataclass(frozen=True)
class Options:
    """Which pings the job aggregates."""

    dates: frozenset[str] | None = None  # None: every submission date
    channels: frozenset[str] | None = None  # None: every aggregated channel
    include_fennec: bool = False


def _is_digits(text: str, length: int | None = None) -> bool:
    return text.isascii() and text.isdigit() and (length is None or len(text) == length)


_FIELDS = (
    ("meta", "submissionDate"),
    ("application", "channel"),
    ("application", "version"),
    ("application", "buildId"),
    ("application", "name"),
    ("application", "architecture"),
    ("os", "name"),
    ("os", "version"),
)


def ping_dimensions(ping: object, options: Options) -> tuple[str, ...] | str:
    """The ping's build-id dimension set, or why it is skipped (a reason of docs/semantics.md).

    The checks run in the order of docs/semantics.md, so a ping that is both malformed and filtered counts
    as malformed.
    """
    if type(ping) is not dict:
        return "not_object"
    environment = ping.get("environment")
    system = environment.get("system") if type(environment) is dict else None
    containers = {
        "meta": ping.get("meta"),
        "application": ping.get("application"),
        "environment": environment,
        "system": system,
        "os": system.get("os") if type(system) is dict else None,
        "payload": ping.get("payload"),
    }
    if any(type(c) is not dict for c in containers.values()):
        return "wrong_type"
    meta = containers["meta"]
    if "sampleId" not in meta or any(key not in containers[where] for where, key in _FIELDS):
        return "missing_field"
    sample_id = meta["sampleId"]
    if not isinstance(sample_id, int | float):
        return "bad_sample_id"
    fields = [containers[where][key] for where, key in _FIELDS]
    if any(type(f) is not str for f in fields):
        return "bad_dimension"
    date, channel, version, build_id, application, architecture, os_name, os_version = fields
    version = version.split(".", 1)[0]
    build_id = build_id[:8]
    if os_name == "Linux":
        os_version = os_version[:3]
    if not (_is_digits(date, 8) and _is_digits(version) and _is_digits(build_id, 8)):
        return "bad_dimension"
    if any("\x00" in f for f in (application, architecture, os_name, os_version)):
        return "bad_dimension"
    if not _payload_shape_ok(containers["payload"]):
        return "wrong_type"
    if sample_id >= 100:
        return "sampled_out"
    if channel not in AGGREGATED_CHANNELS:
        return "channel"
    if options.channels is not None and channel not in options.channels:
        return "channel_not_selected"
    if application == "Fennec" and not options.include_fennec:
        return "fennec"
    if options.dates is not None and date not in options.dates:
        return "other_date"
    return (date, channel, version, build_id, application, architecture, os_name, os_version)


def _payload_shape_ok(payload: dict) -> bool:
    """The containers the original crashed on when they had the wrong type."""
    if "processes" in payload:
        processes = payload["processes"]
        if type(processes) is not dict:
            return False
        if any(p in processes and type(processes[p]) is not dict for p in PROCESS_TYPES):
            return False
    if "childPayloads" in payload:
        children = payload["childPayloads"]
        if type(children) is not list or any(type(c) is not dict for c in children):
            return False
    return True


class Accumulator:
    """Dense accumulation of one partition's pings."""

    def __init__(self, definitions: Definitions, options: Options):
        self.definitions = definitions
        self.options = options
        self.dropped: Counter = Counter()
        self.overflow = 0
        self.layouts: list[Layout] = []
        self._layout_ids: dict[Layout, int] = {}
        self._defined: dict[str, int] = {}  # histogram name -> layout id, _UNDEFINED or _UNUSABLE
        self._from_ping: dict[tuple, int] = {}  # (type, bucket_count, low, high) -> layout id, or -1
        self._names: dict[tuple[str, str], str | None] = {}  # (prefix, raw name) -> metric name, or None
        self.scalar_layout = self._layout_id(SCALAR_LAYOUT)
        self.simple_layout = self._layout_id(SIMPLE_MEASURES_LAYOUT)
        self.count_layout = self._layout_id(COUNT_LAYOUT)
        self.dimensions: dict[tuple[str, ...], int] = {}
        self.rows: dict[tuple, int] = {}  # (dimension id, metric, label, process, layout id) -> row
        self._fast_rows: dict[tuple[int, str, str], dict] = {}  # see _fast
        self.row_keys: list[tuple] = []
        self.row_offset: list[int] = [0]
        self.histogram = np.zeros(1 << 16, dtype=np.int64)
        self.sums = np.zeros(1 << 12, dtype=np.int64)
        self.counts = np.zeros(1 << 12, dtype=np.int64)
        self._clear_pending()
        self._pending_pings = 0

    # -- tables ---------------------------------------------------------------------------------------------
    def _layout_id(self, layout: Layout) -> int:
        if layout not in self._layout_ids:
            self._layout_ids[layout] = len(self.layouts)
            self.layouts.append(layout)
        return self._layout_ids[layout]

    def _new_row(self, key: tuple) -> int:
        """Create the row of a new cell, or -1 (remembered) when its name or label cannot be stored."""
        _, metric, label, _, layout = key
        if not _VALID_NAME(metric) or "\x00" in label:
            self.rows[key] = -1
            return -1
        row = self.rows[key] = len(self.row_keys)
        self.row_keys.append(key)
        self.row_offset.append(self.row_offset[-1] + len(self.layouts[layout].bounds))
        return row

    def _metric_name(self, prefix: str, raw: str, separator: str = "") -> str | None:
        """SCALARS_/SIMPLE_MEASURES_ names, cached; None for excluded scalars."""
        name = self._names.get((prefix, raw), False)
        if name is False:
            excluded = prefix == "SCALARS_" and raw.startswith(EXCLUDED_SCALAR_PREFIX)
            name = self._names[(prefix, raw)] = None if excluded else prefix + raw.upper()
        return name

    def _defined_layout(self, name: str) -> int:
        """Layout id of a histogram's name: fixed by prefix, else from its definition."""
        layout = fixed_layout(name)
        if layout is None:
            definition = self.definitions.histogram(name)
            if definition is None:
                return _UNDEFINED
            layout = definition_layout(definition)
        return _UNUSABLE if layout is None else self._layout_id(layout)

    def _histogram_layout(self, name: str, histogram: dict) -> int:
        layout = self._defined.get(name)
        if layout is None:
            layout = self._defined[name] = self._defined_layout(name)
        if layout != _UNDEFINED:
            return layout
        kind, n, span = histogram.get("histogram_type"), histogram.get("bucket_count"), histogram.get("range")
        if type(span) is not list or len(span) != 2:
            return _UNUSABLE
        low, high = span
        # types are in the key: True == 1, but a boolean bound is unusable and must not share its entry
        key = (kind, n, low, high, type(kind), type(n), type(low), type(high))
        try:
            layout = self._from_ping.get(key)
        except TypeError:  # unhashable values: certainly not a layout
            return _UNUSABLE
        if layout is None:
            found = ping_layout(histogram)
            layout = self._from_ping[key] = _UNUSABLE if found is None else self._layout_id(found)
        return layout

    # -- pings ----------------------------------------------------------------------------------------------
    def add(self, ping: object) -> tuple[str, ...] | str:
        """Aggregate one ping; returns its dimension set, or the reason it was skipped."""
        dimensions = ping_dimensions(ping, self.options)
        if type(dimensions) is str:
            return dimensions
        dim = self.dimensions.setdefault(dimensions, len(self.dimensions))
        payload = ping["payload"]
        processes = payload.get("processes") or {}
        for process in PROCESS_TYPES:
            measures = processes.get(process) or {}
            self._scalars(dim, process, measures.get("scalars"))
            self._keyed_scalars(dim, process, measures.get("keyedScalars"))
        self._histograms(dim, "parent", payload)
        self._simple_measures(dim, "parent", payload.get("simpleMeasurements"))
        for child in payload.get("childPayloads") or ():
            self._histograms(dim, "content", child)
            self._simple_measures(dim, "content", child.get("simpleMeasurements"))
        for process in ("content", "gpu"):
            if process in processes:
                self._histograms(dim, process, processes[process])
        self._pending_pings += 1
        if self._pending_pings >= _FLUSH_PINGS:
            self.flush()
        return dimensions

    # Each family below has a fast path: a per-(dimension set, process, family) cache from the metric's
    # key in the ping to its row, taken when the value is of the common, valid shape. Everything else
    # (first sight of a metric, layouts taken from the ping, odd values) goes through the general path.
    def _fast(self, dim: int, process: str, family: str) -> dict:
        fast = self._fast_rows.get((dim, process, family))
        if fast is None:
            fast = self._fast_rows[(dim, process, family)] = {}
        return fast

    def _histograms(self, dim: int, process: str, container: dict) -> None:
        histograms = container.get("histograms")
        if histograms is not None:
            if type(histograms) is dict:
                self._histogram_map(dim, process, histograms, None)
            else:
                self.dropped["bad_container"] += 1
        keyed = container.get("keyedHistograms")
        if keyed is None:
            return
        if type(keyed) is not dict:
            self.dropped["bad_container"] += 1
            return
        for name, by_label in keyed.items():
            if name in EXCLUDED_KEYED_HISTOGRAMS:
                continue
            if type(by_label) is not dict:
                self.dropped["bad_container"] += 1
                continue
            self._histogram_map(dim, process, by_label, name)

    def _histogram_map(self, dim: int, process: str, histograms: dict, keyed_name: str | None) -> None:
        """`{name: histogram}`, or the `{label: histogram}` of the keyed histogram `keyed_name`."""
        fast = self._fast(dim, process, "histogram")
        add_row, add_sum, add_size = self._h_rows.append, self._h_sums.append, self._h_sizes.append
        add_keys, add_values = self._h_keys.extend, self._h_values.extend
        for key, histogram in histograms.items():
            cached = key if keyed_name is None else (keyed_name, key)
            row = fast.get(cached)
            if row is not None and type(histogram) is dict:
                values, total, kind = histogram.get("values"), histogram.get("sum"), histogram.get("histogram_type")
                if type(values) is dict and type(total) is int and total >= 0 and type(kind) is int and kind != 4:
                    add_row(row)
                    add_sum(total)
                    add_size(len(values))
                    add_keys(values)
                    add_values(values.values())
                    continue
            name, label = (key, "") if keyed_name is None else (keyed_name, key)
            self._histogram(dim, process, name, label, histogram, fast, cached)

    def _histogram(self, dim: int, process: str, name: str, label: str, histogram: object, fast: dict, cached) -> None:
        if type(histogram) is not dict:
            self.dropped["bad_histogram"] += 1
            return
        values, total, kind = histogram.get("values"), histogram.get("sum"), histogram.get("histogram_type")
        if type(values) is not dict or not isinstance(total, int) or total < 0 or not isinstance(kind, int):
            self.dropped["bad_histogram"] += 1
            return
        if kind == 4:
            self._value(dim, process, "[[COUNT]]_" + name, label, self.count_layout, total)
            return
        layout = self._histogram_layout(name, histogram)
        if layout < 0:
            self.dropped["bad_layout"] += 1
            return
        row = self._row(dim, name, label, process, layout)
        if row < 0:
            return
        if self._defined[name] == layout:  # the same for every ping: cacheable
            fast[cached] = row
        self._h_rows.append(row)
        self._h_sums.append(total)
        self._h_sizes.append(len(values))
        self._h_keys.extend(values)
        self._h_values.extend(values.values())

    def _row(self, dim: int, name: str, label: str, process: str, layout: int) -> int:
        key = (dim, name, label, process, layout)
        row = self.rows.get(key)
        if row is None:
            row = self._new_row(key)
        if row < 0:
            self.dropped["bad_name"] += 1
        return row

    def _value(self, dim: int, process: str, name: str, label: str, layout: int, value: object) -> int:
        """One scalar-like value (a scalar, a simple measurement or a count histogram's sum); returns its
        row, or -1 when the value or the name cannot be aggregated."""
        if not isinstance(value, int | float) or value < 0:
            self.dropped["bad_value"] += 1
            return -1
        row = self._row(dim, name, label, process, layout)
        if row >= 0:
            self._s_rows.append(row)
            self._s_values.append(value)
        return row

    def _value_map(self, dim: int, process: str, family: str, values: dict, name_of, layout: int) -> None:
        """Scalar-like `{key: value}`; `name_of(key)` gives (metric name, label), or None to skip the key."""
        fast = self._fast(dim, process, family)
        add_row, add_value = self._s_rows.append, self._s_values.append
        for key, value in values.items():
            row = fast.get(key)
            if row is not None and (type(value) is int or type(value) is float) and value >= 0:
                add_row(row)
                add_value(value)
                continue
            named = name_of(key)
            if named is not None:
                row = self._value(dim, process, named[0], named[1], layout, value)
                if row >= 0:
                    fast[key] = row

    def _scalars(self, dim: int, process: str, scalars: object) -> None:
        if scalars is None:
            return
        if type(scalars) is not dict:
            self.dropped["bad_container"] += 1
            return

        def name_of(raw: str) -> tuple[str, str] | None:
            name = self._metric_name("SCALARS_", raw)
            return None if name is None else (name, "")

        self._value_map(dim, process, "scalar", scalars, name_of, self.scalar_layout)

    def _keyed_scalars(self, dim: int, process: str, keyed: object) -> None:
        if keyed is None:
            return
        if type(keyed) is not dict:
            self.dropped["bad_container"] += 1
            return
        for raw, by_key in keyed.items():
            name = self._metric_name("SCALARS_", raw)
            if name is None:
                continue
            if type(by_key) is not dict:
                self.dropped["bad_container"] += 1
                continue
            self._value_map(dim, process, name, by_key, lambda key, n=name: (n, key.upper()), self.scalar_layout)

    def _simple_measures(self, dim: int, process: str, measures: object) -> None:
        if measures is None:
            return
        if type(measures) is not dict:
            self.dropped["bad_container"] += 1
            return
        for raw, value in measures.items():
            if type(value) is dict:  # one level of nesting: SIMPLE_MEASURES_<RAW>_<SUB>
                prefix = self._metric_name("SIMPLE_MEASURES_", raw) + "_"
                self._value_map(
                    dim,
                    process,
                    "simple:" + raw,
                    value,
                    lambda sub, p=prefix: (p + sub.upper(), ""),
                    self.simple_layout,
                )

        def name_of(raw: str) -> tuple[str, str] | None:
            if type(measures[raw]) is dict:
                return None
            return self._metric_name("SIMPLE_MEASURES_", raw), ""

        self._value_map(dim, process, "simple", measures, name_of, self.simple_layout)

    # -- arrays ---------------------------------------------------------------------------------------------
    def _clear_pending(self) -> None:
        self._h_rows: list[int] = []
        self._h_sums: list = []
        self._h_sizes: list[int] = []
        self._h_keys: list[str] = []
        self._h_values: list = []
        self._s_rows: list[int] = []
        self._s_values: list = []

    def _reserve(self) -> None:
        rows, buckets = len(self.row_keys), self.row_offset[-1]
        if buckets > len(self.histogram):
            self.histogram = _grown(self.histogram, buckets)
        if rows > len(self.sums):
            self.sums, self.counts = _grown(self.sums, rows), _grown(self.counts, rows)

    def flush(self) -> None:
        """Add the pending samples into the dense arrays."""
        self._reserve()
        offsets = np.asarray(self.row_offset, dtype=np.int64)
        row_layouts = np.fromiter((k[4] for k in self.row_keys), dtype=np.int64, count=len(self.row_keys))
        # histogram buckets: key -> column of the row's layout, or dropped
        h_rows = np.asarray(self._h_rows, dtype=np.int64)
        entry_rows = np.repeat(h_rows, np.asarray(self._h_sizes, dtype=np.int64))
        keys = self._bucket_keys()
        values = self._nonnegative(self._h_values, "bad_bucket_value")
        columns = self._columns(row_layouts[entry_rows], keys)
        found = columns >= 0
        self._drop("unknown_bucket", int(np.count_nonzero(~found & (keys != _NOT_INT))))
        self._drop("bad_bucket_key", int(np.count_nonzero(keys == _NOT_INT)))
        positions = offsets[entry_rows[found]] + columns[found]
        self.overflow += saturating_add_at(self.histogram, positions, values[found])
        self.overflow += saturating_add_at(self.sums, h_rows, self._clamped(self._h_sums))
        self.overflow += saturating_add_at(self.counts, h_rows, np.ones(len(h_rows), dtype=np.int64))
        # scalar-like values: one sample each, in the bucket of the largest lower bound <= value
        s_rows = np.asarray(self._s_rows, dtype=np.int64)
        positions = offsets[s_rows] + self._scalar_columns(row_layouts[s_rows], self._s_values)
        self.overflow += saturating_add_at(self.histogram, positions, np.ones(len(s_rows), dtype=np.int64))
        self.overflow += saturating_add_at(self.sums, s_rows, self._integer_parts(self._s_values))
        self.overflow += saturating_add_at(self.counts, s_rows, np.ones(len(s_rows), dtype=np.int64))
        self._clear_pending()
        self._pending_pings = 0

    def _bucket_keys(self) -> np.ndarray:
        """Bucket keys as Python's int() reads them (_NOT_INT where it cannot), through a cache of the
        few distinct key strings: a dict lookup per key is several times cheaper than parsing it."""
        ints = list(map(_KEY_INTS.get, self._h_keys))
        try:
            return np.array(ints, dtype=np.int64)
        except TypeError:  # keys not seen before: parse each once
            if len(_KEY_INTS) > _KEY_CACHE_SIZE:
                _KEY_INTS.clear()
            for i, key in enumerate(self._h_keys):
                if ints[i] is None:
                    value = _KEY_INTS.get(key)
                    ints[i] = _KEY_INTS[key] = _int_or_none(key) if value is None else value
            return np.array(ints, dtype=np.int64)

    def _nonnegative(self, values: list, reason: str) -> np.ndarray:
        """Bucket counts: non-ints and negatives count as 0 (and are counted), huge ones are clamped."""
        array = np.asarray(values) if values else np.zeros(0, dtype=np.int64)
        if array.dtype.kind not in "ib":  # floats, strings, None or ints beyond int64 among them
            is_int = np.fromiter(map(int.__instancecheck__, values), dtype=bool, count=len(values))
            self._drop(reason, int(np.count_nonzero(~is_int)))
            objects = np.array(values, dtype=object)
            objects[~is_int] = 0
            try:
                array = objects.astype(np.int64)
            except OverflowError:
                huge = np.array([v > INT64_MAX for v in objects.tolist()], dtype=bool)
                self.overflow += int(np.count_nonzero(huge))
                objects[huge] = INT64_MAX
                array = objects.astype(np.int64)
        array = array.astype(np.int64, copy=False)
        negative = array < 0
        self._drop(reason, int(np.count_nonzero(negative)))
        array[negative] = 0
        return array

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] += count

    def _scalar_columns(self, layouts: np.ndarray, values: list) -> np.ndarray:
        """Bucket of each non-negative value in its row's layout (float comparisons are exact here: bounds
        are far below 2**53, and values beyond them land in the top bucket either way)."""
        numbers = np.asarray(values, dtype=np.float64)
        columns = np.zeros(len(values), dtype=np.int64)
        for layout in np.unique(layouts).tolist():
            mine = layouts == layout
            columns[mine] = np.searchsorted(self.layouts[layout].bounds, numbers[mine], side="right") - 1
        return columns

    def _integer_parts(self, values: list) -> np.ndarray:
        """Sums add int(value): exact for ints, the integer part of floats."""
        array = np.asarray(values) if values else np.zeros(0, dtype=np.int64)
        if array.dtype.kind in "ib":
            return array.astype(np.int64)
        return self._clamped(list(map(int, values)))

    def _clamped(self, values: list[int]) -> np.ndarray:
        """Non-negative Python ints as int64, the ones beyond its range clamped and counted."""
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:
            self.overflow += sum(v > INT64_MAX for v in values)
            return np.array([min(v, INT64_MAX) for v in values], dtype=np.int64)

    def _columns(self, layouts: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Column of each (layout, bucket key), -1 when the key is not one of the layout's lower bounds."""
        sizes = np.array([len(layout.bounds) for layout in self.layouts], dtype=np.int64)
        starts = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=starts[1:])
        # one sorted table of (layout, bound) pairs, searched once for all keys
        table_layout = np.repeat(np.arange(len(sizes)), sizes)
        table_bound = np.concatenate([np.asarray(layout.bounds, dtype=np.int64) for layout in self.layouts])
        wanted = layouts * _SPAN + np.clip(keys, -1, _SPAN - 1)
        table = table_layout * _SPAN + table_bound
        index = np.minimum(np.searchsorted(table, wanted), len(table) - 1)
        return np.where(table[index] == wanted, index - starts[layouts], -1)

    def finish(self, stats: RunStats) -> Aggregate:
        """The partition's aggregate, canonical (sorted) like every aggregate."""
        self.flush()
        stats.dropped.update(self.dropped)
        stats.overflow += self.overflow
        dimensions = sorted(self.dimensions, key=self.dimensions.__getitem__)
        metric_ids: dict[tuple, int] = {}
        row_metric = []
        for _, name, label, process, layout in self.row_keys:
            metric = (name, label, process, self.layouts[layout])
            row_metric.append(metric_ids.setdefault(metric, len(metric_ids)))
        rows = len(self.row_keys)
        raw = Aggregate(
            BUILD_ID_COLUMNS,
            dimensions,
            list(metric_ids),
            np.fromiter((k[0] for k in self.row_keys), dtype=np.int32, count=rows),
            np.asarray(row_metric, dtype=np.int32),
            np.asarray(self.row_offset, dtype=np.int64),
            self.sums[:rows].copy(),
            self.counts[:rows].copy(),
            self.histogram[: self.row_offset[-1]].copy(),
            stats,
        )
        return rebuild([raw])


_UNDEFINED, _UNUSABLE = -1, -2  # layout ids of histograms without a (usable) definition
_NOT_INT = np.iinfo(np.int64).min  # a key int() rejects; never a lower bound
_KEY_INTS: dict[str, int] = {}  # bucket key string -> int(key) or _NOT_INT, shared by a process's partitions
_KEY_CACHE_SIZE = 100_000
_SPAN = MAX_BOUND + 2  # keys are compared per layout within this span, clipped to [-1, MAX_BOUND + 1]


def _int_or_none(key: str) -> int:
    try:
        return max(min(int(key), _SPAN), -1)
    except ValueError:
        return _NOT_INT


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    grown = np.zeros(max(needed, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
