"""From pings to aggregates: the rules of docs/semantics.md, applied one ping at a time.

`ping_dimensions` decides whether a ping is aggregated and under which dimension set. `Accumulator` walks an
accepted ping's metrics and records every sample in flat Python lists (cheap appends and C-level extends);
every few thousand pings `flush` turns them into positions and values with numpy and adds them into dense
int64 arrays. A partition ends as an `Aggregate` (aggregator/aggregate.py).
"""

import array
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from aggregator import _buckets
from aggregator.aggregate import BUILD_ID_COLUMNS, INT64_MAX, Aggregate, factorized, row_values, saturating_add_at
from aggregator.bounds import Limits, utf8_length
from aggregator.buckets import scalar_buckets
from aggregator.clients import ClientSamples, client_hashes, narrowed
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
from aggregator.scan import (
    END,
    FIRST,
    KNOWN_ROW,
    KNOWN_VALUE,
    METRIC,
    NAMED,
    PROCESS_INDEX,
    RAW,
    SKIP,
    SUM,
    VALUE,
    VALUE_METRIC,
    Known,
    Scanned,
)
from aggregator.stats import RunStats

AGGREGATED_CHANNELS = frozenset({"nightly", "aurora", "beta", "release"})
PROCESS_TYPES = ("parent", "content", "gpu")
EXCLUDED_KEYED_HISTOGRAMS = frozenset({"MESSAGE_MANAGER_MESSAGE_SIZE", "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION"})
EXCLUDED_SCALAR_PREFIX = "browser.engagement.navigation"
FILTER_REASONS = frozenset({"sampled_out", "channel", "channel_not_selected", "fennec", "other_date"})
_VALID_NAME = re.compile(r"[A-Za-z0-9_\-\[\].]+\Z").match
_FLUSH_PINGS = 500
_VERSION_DIGITS = 9  # every version of this many digits fits a 32-bit integer


@dataclass(frozen=True)
class Options:
    """Which pings the job aggregates, and the bounds on what it takes from them."""

    dates: frozenset[str] | None = None  # None: every submission date
    channels: frozenset[str] | None = None  # None: every aggregated channel
    include_fennec: bool = False
    limits: Limits = field(default_factory=Limits.from_settings)
    clients: bool = True  # keep per-client samples for the client-level weighting (aggregator/clients.py)


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
    longest = options.limits.value_bytes
    if any(utf8_length(f) > longest for f in (application, architecture, os_name, os_version)):
        return "long_dimension"
    if len(version) > _VERSION_DIGITS:  # the store keeps versions as 32-bit integers
        return "long_dimension"
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
    """Dense accumulation of one partition's pings.

    Per ping, only Python-level appends happen: each sample is recorded as (metric id, value), with the metric
    id found through a cache keyed by the metric's key in the ping (independent of the dimension set). Every
    `_FLUSH_PINGS` pings, `flush` resolves (dimension set, metric) pairs to rows and adds everything into the
    dense arrays with numpy.
    """

    def __init__(self, definitions: Definitions, options: Options):
        self.definitions = definitions
        self.options = options
        self.limits = options.limits
        self._scanned: Scanned | None = None
        self.known = Known(EXCLUDED_KEYED_HISTOGRAMS, self.limits.labels)  # histogram metrics, for the scanner
        self.dropped: Counter = Counter()
        self.overflow = 0
        self.layouts: list[Layout] = []
        self._layout_ids: dict[Layout, int] = {}
        self._defined: dict[str, int] = {}  # histogram name -> layout id, _UNDEFINED or _UNUSABLE
        self._from_ping: dict[tuple, int] = {}  # (type, bucket_count, low, high, their types) -> layout id
        self._names: dict[tuple[str, str], str | None] = {}  # (prefix, raw name) -> metric name, or None
        self.scalar_layout = self._layout_id(SCALAR_LAYOUT)
        self.simple_layout = self._layout_id(SIMPLE_MEASURES_LAYOUT)
        self.count_layout = self._layout_id(COUNT_LAYOUT)
        self.dimensions: dict[tuple[str, ...], int] = {}
        self.metrics: list[tuple[str, str, str, int]] = []  # (name, label, process, layout id)
        self._metric_ids: dict[tuple[str, str, str, int], int] = {}  # -> id, or a refusal (_REFUSALS)
        self._metric_width: list[int] = []  # buckets of each metric's layout
        self._widest = 0
        self.undefined: set[str] = set()  # names of metrics without a definition
        self._client_ids: dict[str, int] = {}  # usable clientId -> its index in this partition
        self._client_samples: list[tuple[np.ndarray, ...]] = []  # per flush: ClientSamples' arrays, rows not resolved
        # rows: the cells (dimension set, metric); a hash table of their codes (dimension << 32 | metric) -> row
        self._code_slots = np.full(16, -1, dtype=np.int64)
        self._row_slots = np.zeros(16, dtype=np.int64)
        self.row_dimension = np.zeros(0, dtype=np.int64)
        self.row_metric = np.zeros(0, dtype=np.int64)
        self.row_offset = np.zeros(1, dtype=np.int64)
        self.histogram = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._clear_pending()

    # -- tables ---------------------------------------------------------------------------------------------
    def _layout_id(self, layout: Layout) -> int:
        if layout not in self._layout_ids:
            self._layout_ids[layout] = len(self.layouts)
            self.layouts.append(layout)
        return self._layout_ids[layout]

    def _metric(self, name: str, label: str, process: str, layout: int) -> int:
        """Id of a metric, or a negative code (counted by its reason) when it cannot be stored."""
        key = (name, label, process, layout)
        metric = self._metric_ids.get(key)
        if metric is None:
            metric = self._metric_ids[key] = self._new_metric(key)
        if metric < 0:
            self.dropped[_REFUSALS[-1 - metric]] += 1
        return metric

    def _new_metric(self, key: tuple[str, str, str, int]) -> int:
        """A new metric's id, or the code of why it is refused: a name or label the store cannot hold, or one
        more name without a definition than this partition may hold (aggregator/bounds.py bounds the run)."""
        name, label, _, layout = key
        if len(name) > self.limits.name_length:
            return _LONG_NAME
        if not _VALID_NAME(name) or "\x00" in label:
            return _BAD_NAME
        if utf8_length(label) > self.limits.value_bytes:
            return _LONG_LABEL
        if name not in self.undefined and self.definitions.definition(name) is None:
            if len(self.undefined) >= self.limits.undefined_metrics:
                return _UNDEFINED_LIMIT
            self.undefined.add(name)
        width = len(self.layouts[layout].bounds)
        self._metric_width.append(width)
        self._widest = max(self._widest, width)
        self.metrics.append(key)
        return len(self.metrics) - 1

    def _metric_name(self, prefix: str, raw: str) -> str | None:
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
            if found is None:
                layout = _UNUSABLE
            elif len(found.bounds) > self.limits.layout_buckets:
                layout = _TOO_WIDE
            else:
                layout = self._layout_id(found)
            self._from_ping[key] = layout
        return layout

    # -- pings ----------------------------------------------------------------------------------------------
    def add(self, ping: object, scanned: Scanned | None = None) -> tuple[str, ...] | str:
        """Aggregate one ping; returns its dimension set, or the reason it was skipped. `scanned`: its histograms,
        when aggregator/scan.py took them from its bytes (its histogram containers are then their numbers)."""
        dimensions = ping_dimensions(ping, self.options)
        if type(dimensions) is str:
            return dimensions
        histograms_before, values_before, entries_before = len(self._h_metrics), len(self._s_metrics), len(self._h_keys)
        self._scanned = scanned
        known, known_values = self._known(scanned)
        payload = ping["payload"]
        processes = payload.get("processes") or {}
        for process in PROCESS_TYPES:
            measures = processes.get(process) or {}
            self._scalars(process, measures.get("scalars"))
            self._keyed_scalars(process, measures.get("keyedScalars"))
        self._histograms("parent", payload)
        self._simple_measures("parent", payload.get("simpleMeasurements"))
        for child in payload.get("childPayloads") or ():
            self._histograms("content", child)
            self._simple_measures("content", child.get("simpleMeasurements"))
        for process in ("content", "gpu"):
            if process in processes:
                self._histograms(process, processes[process])
        if self._too_wide(histograms_before, values_before, scanned, known + known_values):
            if known:
                del self._f_rows[-1], self._f_bases[-1]
            if known_values:
                del self._v_rows[-1]
            for pending, before in (
                (self._h_metrics, histograms_before),
                (self._h_sums, histograms_before),
                (self._h_sizes, histograms_before),
                (self._h_keys, entries_before),
                (self._h_values, entries_before),
                (self._s_metrics, values_before),
                (self._s_values, values_before),
            ):
                del pending[before:]
            return "too_many_buckets"
        self._p_dimensions.append(self.dimensions.setdefault(dimensions, len(self.dimensions)))
        self._p_histograms.append(len(self._h_metrics) - histograms_before)
        self._p_values.append(len(self._s_metrics) - values_before)
        self._p_known.append(known)
        self._p_known_values.append(known_values)
        if self.options.clients:
            self._p_clients.append(self._client(ping.get("clientId")))
        if len(self._p_dimensions) >= _FLUSH_PINGS:
            self.flush()
        return dimensions

    def _client(self, client_id: object) -> int:
        """The ping's client in this partition, or -1 (counted) when its clientId is not a non-empty string of at
        most `JOB_MAX_VALUE_BYTES`: such a ping counts in the per-ping aggregates only."""
        if type(client_id) is str and client_id and utf8_length(client_id) <= self.limits.value_bytes:
            return self._client_ids.setdefault(client_id, len(self._client_ids))
        self.dropped["unusable_client_id"] += 1
        return -1

    def _known(self, scanned: Scanned | None) -> tuple[int, int]:
        """How many histograms and values of metrics in `known` the scanner found, kept as bytes until `flush`;
        the strings it found under names whose strings are counted are counted."""
        if scanned is None:
            return 0, 0
        self._drop("non_numeric_value", scanned.nonnumeric)
        histograms = len(scanned.known_rows) // (KNOWN_ROW * 8)
        if histograms:
            self._f_rows.append(scanned.known_rows)
            self._f_bases.append(self._k_size)
            self._k_keys.append(scanned.keys)
            self._k_counts.append(scanned.counts)
            self._k_size += len(scanned.keys) // 8
        values = len(scanned.known_values) // (KNOWN_VALUE * 8)
        if values:
            self._v_rows.append(scanned.known_values)
        return histograms, values

    def _too_wide(self, histograms_before: int, values_before: int, scanned: Scanned | None, known: int) -> bool:
        """Whether the ping's samples span more than `JOB_MAX_PING_BUCKETS` buckets of their layouts: the most
        new cells one ping may claim. Counted exactly only when a cheap upper bound is past the limit."""
        samples = len(self._h_metrics) - histograms_before + len(self._s_metrics) - values_before + known
        if samples * self._widest <= self.limits.ping_buckets:
            return False
        width = self._metric_width.__getitem__
        metrics = itertools.chain(self._h_metrics[histograms_before:], self._s_metrics[values_before:])
        if scanned is not None:
            rows, values = _table(scanned.known_rows, KNOWN_ROW), _table(scanned.known_values, KNOWN_VALUE)
            metrics = itertools.chain(metrics, rows[:, METRIC].tolist(), values[:, VALUE_METRIC].tolist())
        return sum(map(width, metrics)) > self.limits.ping_buckets

    # Each family has a fast path through its cache in `self.known`, from the metric's key in the ping to its
    # id, taken when the value has the common, valid shape. Everything else (first sight of a metric, layouts
    # taken from the ping, odd values) goes through the general path, which fills the cache when it can.
    def _histograms(self, process: str, container: dict) -> None:
        scanned = self._scanned
        histograms = container.get("histograms")
        if histograms is not None:
            if type(histograms) is dict:
                self._histogram_map(process, histograms, None)
            elif scanned is not None:  # its number in the scan
                self._histogram_rows(process, scanned.rows_of(histograms), None)
            else:
                self.dropped["bad_container"] += 1
        keyed = container.get("keyedHistograms")
        if keyed is None:
            return
        if scanned is not None and type(keyed) is int:  # the scanner leaves excluded keyed histograms out
            for name, rows in scanned.keyed_rows_of(keyed):
                self._histogram_rows(process, self._bounded(rows), name)
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
            self._histogram_map(process, self._bounded(by_label), name)

    def _bounded(self, labels: dict | list) -> dict | list:
        """The first `JOB_MAX_LABELS` labels of a keyed metric in one ping (a `{label: value}` dict, or the rows
        of a scanned keyed histogram); the rest counted and dropped."""
        limit = self.limits.labels
        if len(labels) <= limit:
            return labels
        self.dropped["too_many_labels"] += len(labels) - limit
        return labels[:limit] if type(labels) is list else dict(itertools.islice(labels.items(), limit))

    def _histogram_rows(self, process: str, rows: list, keyed_name: str | None) -> None:
        """The general path for the scanned histograms the scanner knew no metric for."""
        names = self._scanned.names
        for name_index, label_index, kind, total, n, low, high, start, end in rows:
            key = names[name_index if label_index < 0 else label_index]
            histogram = (
                self._scanned.raw[start]
                if kind == RAW
                else {
                    "bucket_count": n,
                    "histogram_type": kind,
                    "sum": total,
                    "range": [low, high],
                    "values": self._scanned.values(start, end),
                }
            )
            name, label = (key, "") if keyed_name is None else (keyed_name, key)
            self._histogram(process, keyed_name, name, label, histogram, key)

    def _histogram_map(self, process: str, histograms: dict, keyed_name: str | None) -> None:
        """`{name: histogram}`, or the `{label: histogram}` of the keyed histogram `keyed_name`."""
        cached = self.known.cache(process, keyed_name).get
        add_metric, add_sum, add_size = self._h_metrics.append, self._h_sums.append, self._h_sizes.append
        add_keys, add_values = self._h_keys.extend, self._h_values.extend
        for key, histogram in histograms.items():
            code = cached(key)  # an int, or for a metric without a definition a dict by layout: the general path
            if type(code) is int and not code & 1 and type(histogram) is dict:
                try:
                    values, total, kind = histogram["values"], histogram["sum"], histogram["histogram_type"]
                except KeyError:
                    pass
                else:
                    if type(values) is dict and type(total) is int and total >= 0 and type(kind) is int and kind != 4:
                        add_metric(code >> 1)
                        add_sum(total)
                        add_size(len(values))
                        add_keys(values)
                        add_values(values.values())
                        continue
            name, label = (key, "") if keyed_name is None else (keyed_name, key)
            self._histogram(process, keyed_name, name, label, histogram, key)

    def _histogram(
        self, process: str, keyed_name: str | None, name: str, label: str, histogram: object, key: str
    ) -> None:
        """The general path; it fills the cache (`self.known`) when it can."""
        if type(histogram) is not dict:
            self.dropped["bad_histogram"] += 1
            return
        values, total, kind = histogram.get("values"), histogram.get("sum"), histogram.get("histogram_type")
        if type(values) is not dict or not isinstance(total, int) or total < 0 or not isinstance(kind, int):
            self.dropped["bad_histogram"] += 1
            return
        if kind == 4:
            metric = self._value(process, "[[COUNT]]_" + name, label, self.count_layout, total)
            if metric >= 0:
                self.known.cache(process, keyed_name)[key] = metric << 1 | 1
            return
        layout = self._histogram_layout(name, histogram)
        if layout < 0:
            self.dropped["layout_too_wide" if layout == _TOO_WIDE else "bad_layout"] += 1
            return
        metric = self._metric(name, label, process, layout)
        if metric < 0:
            return
        if self._defined[name] == layout:  # the same for every ping: cacheable
            self.known.cache(process, keyed_name)[key] = metric << 1
        elif self._defined[name] == _UNDEFINED:
            self._cache_ping_layout(self.known.cache(process, keyed_name), key, histogram, metric)
        self._h_metrics.append(metric)
        self._h_sums.append(total)
        self._h_sizes.append(len(values))
        self._h_keys.extend(values)
        self._h_values.extend(values.values())

    @staticmethod
    def _cache_ping_layout(cache: dict, key: str, histogram: dict, metric: int) -> None:
        """Cache a metric without a definition under the layout its ping gave it, (histogram_type, bucket_count,
        low, high), which the scanner looks up as plain non-negative integers: the next pings' histograms of that
        name and layout then take the fast path, as defined ones do (without definitions, every histogram would
        otherwise take the general path). At most `_PING_LAYOUTS` layouts per key."""
        layout = (histogram["histogram_type"], histogram["bucket_count"], *histogram["range"])
        if not all(type(x) is int and x >= 0 for x in layout):
            return
        by_layout = cache.get(key)
        if by_layout is None:
            by_layout = cache[key] = {}
        if type(by_layout) is dict and len(by_layout) < _PING_LAYOUTS:
            by_layout[layout] = metric << 1

    def _value(self, process: str, name: str, label: str, layout: int, value: object) -> int:
        """One scalar-like value (a scalar, a simple measurement or a count histogram's sum); returns its
        metric id, or -1 when the value or the name cannot be aggregated."""
        if not isinstance(value, int | float):  # string scalars and the like: valid, but not aggregated
            self.dropped["non_numeric_value"] += 1
            return -1
        if value < 0:
            self.dropped["negative_value"] += 1
            return -1
        metric = self._metric(name, label, process, layout)
        if metric >= 0:
            self._s_metrics.append(metric)
            self._s_values.append(value)
        return metric

    def _value_map(self, cache: dict, process: str, values: dict, name_of, layout: int) -> None:
        """Scalar-like `{key: value}`; `name_of(key)` gives (metric name, label), or None to skip the key.
        `cache` maps keys to codes (aggregator/scan.py's `Known`): a metric, NAMED or SKIP."""
        add_metric, add_value = self._s_metrics.append, self._s_values.append
        for key, value in values.items():
            metric = cache.get(key)
            if metric is not None:
                kind = type(value)
                if metric >= 0 and (kind is int or kind is bool or kind is float) and value >= 0:
                    add_metric(metric)
                    add_value(value)
                    continue
                if metric == SKIP:
                    continue
                if kind is str:
                    self.dropped["non_numeric_value"] += 1
                    continue
            named = name_of(key)
            if named is not None:
                metric = self._value(process, named[0], named[1], layout, value)
                if metric >= 0:
                    cache[key] = metric
                elif type(value) is str:  # a string's fate does not depend on its name's
                    cache.setdefault(key, NAMED)

    def _scalars(self, process: str, scalars: object) -> None:
        if scalars is None:
            return
        if type(scalars) is int:  # its number in the scan
            if not self._scanned.slow[scalars]:
                return
            scalars = self._scanned.values_of(scalars)
        if type(scalars) is not dict:
            self.dropped["bad_container"] += 1
            return
        cache = self.known.scalars[PROCESS_INDEX[process]]

        def name_of(raw: str) -> tuple[str, str] | None:
            name = self._metric_name("SCALARS_", raw)
            if name is None:
                cache[raw] = SKIP  # excluded, whatever its value
                return None
            return name, ""

        self._value_map(cache, process, scalars, name_of, self.scalar_layout)

    def _keyed_scalars(self, process: str, keyed: object) -> None:
        if keyed is None:
            return
        if type(keyed) is int:  # its number in the scan
            if not self._scanned.slow[keyed]:
                return
            keyed = self._scanned.keyed_values_of(keyed)
        if type(keyed) is not dict:
            self.dropped["bad_container"] += 1
            return
        for raw, by_key in keyed.items():
            name = self._metric_name("SCALARS_", raw)
            if name is None:
                self.known.keyed_scalars[PROCESS_INDEX[process]][raw] = None  # excluded, whatever its values
                continue
            if type(by_key) is not dict:
                self.dropped["bad_container"] += 1
                continue
            by_key = self._bounded(by_key)
            cache = self.known.scalar_labels(process, raw)
            self._value_map(cache, process, by_key, lambda key, n=name: (n, key.upper()), self.scalar_layout)

    def _simple_measures(self, process: str, measures: object) -> None:
        if measures is None:
            return
        if type(measures) is int:  # its number in the scan
            if not self._scanned.slow[measures]:
                return
            measures = self._scanned.simple_of(measures)
        if type(measures) is not dict:
            self.dropped["bad_container"] += 1
            return
        for raw, value in measures.items():
            if type(value) is dict:  # one level of nesting: SIMPLE_MEASURES_<RAW>_<SUB>
                prefix = self._metric_name("SIMPLE_MEASURES_", raw) + "_"
                nested = lambda sub, p=prefix: (p + sub.upper(), "")  # noqa: E731
                cache = self.known.nested_simple(process, raw)
                self._value_map(cache, process, value, nested, self.simple_layout)

        def name_of(raw: str) -> tuple[str, str] | None:
            if type(measures[raw]) is dict:
                return None
            return self._metric_name("SIMPLE_MEASURES_", raw), ""

        cache = self.known.simple[PROCESS_INDEX[process]]
        self._value_map(cache, process, measures, name_of, self.simple_layout)

    # -- arrays ---------------------------------------------------------------------------------------------
    def _clear_pending(self) -> None:
        self._p_dimensions: list[int] = []  # per ping: its dimension set and how many samples it recorded
        self._p_histograms: list[int] = []
        self._p_values: list[int] = []
        self._h_metrics: list[int] = []  # per histogram
        self._h_sums: list = []
        self._h_sizes: list[int] = []
        self._h_keys: list[str] = []  # per bucket entry
        self._h_values: list = []
        self._s_metrics: list[int] = []  # per scalar-like value
        self._s_values: list = []
        # what the scanner found of known metrics, as its bytes, per ping: histograms (scan.py's KNOWN_ROW) and their
        # buckets, one ping's after another's, and values (KNOWN_VALUE)
        self._p_known: list[int] = []
        self._p_known_values: list[int] = []
        self._p_clients: list[int] = []
        self._f_rows: list[bytes] = []
        self._f_bases: list[int] = []  # where each ping's bucket entries start
        self._k_keys: list[bytes] = []
        self._k_counts: list[bytes] = []
        self._v_rows: list[bytes] = []
        self._k_size = 0

    def _rows(self, dimensions: np.ndarray, metrics: np.ndarray, metric_layouts: np.ndarray) -> np.ndarray:
        """Row of each (dimension set, metric), creating the rows not seen before (in the order they first come)."""
        codes = (dimensions << 32) | metrics
        rows = np.empty(len(codes), dtype=np.int64)
        if not _buckets.found(self._code_slots, self._row_slots, codes, rows):
            return rows
        new = factorized(codes[rows < 0])[0]
        first = len(self.row_dimension)
        new_metrics = new & 0xFFFFFFFF
        self.row_dimension = np.concatenate([self.row_dimension, new >> 32])
        self.row_metric = np.concatenate([self.row_metric, new_metrics])
        layout_sizes = np.array([len(layout.bounds) for layout in self.layouts], dtype=np.int64)
        sizes = layout_sizes[metric_layouts[new_metrics]]
        self.row_offset = np.concatenate([self.row_offset, self.row_offset[-1] + np.cumsum(sizes)])
        self.histogram = _grown(self.histogram, int(self.row_offset[-1]))
        self.sums = _grown(self.sums, len(self.row_dimension))
        self.counts = _grown(self.counts, len(self.row_dimension))
        new_rows = np.arange(first, first + len(new))
        if 2 * len(self.row_dimension) > len(self._code_slots):  # at most half full: short probes
            slots = 1 << (4 * len(self.row_dimension) - 1).bit_length()
            self._code_slots, self._row_slots = np.full(slots, -1, dtype=np.int64), np.zeros(slots, dtype=np.int64)
            new = (self.row_dimension << 32) | self.row_metric
            new_rows = np.arange(len(new))
        _buckets.put(self._code_slots, self._row_slots, new, new_rows)
        _buckets.found(self._code_slots, self._row_slots, codes, rows)
        return rows

    def flush(self) -> None:
        """Add the pending samples into the dense arrays."""
        ping_dimensions = np.asarray(self._p_dimensions, dtype=np.int64)
        known, known_values = _table(b"".join(self._f_rows), KNOWN_ROW), _table(b"".join(self._v_rows), KNOWN_VALUE)
        per_ping = (self._p_histograms, self._p_known, self._p_values, self._p_known_values)
        dimensions = np.concatenate([np.repeat(ping_dimensions, np.asarray(n, dtype=np.int64)) for n in per_ping])
        metric_layouts = np.array([m[3] for m in self.metrics], dtype=np.int64)
        metrics = [np.asarray(self._h_metrics, dtype=np.int64), known[:, METRIC]]
        metrics += [np.asarray(self._s_metrics, dtype=np.int64), known_values[:, VALUE_METRIC]]
        rows = self._rows(dimensions, np.concatenate(metrics), metric_layouts)
        # the histograms (parsed ones, then scanned ones of known metrics), then the scalar-like values (the same)
        h_rows, s_rows = rows[: len(self._h_metrics) + len(known)], rows[len(self._h_metrics) + len(known) :]
        row_layouts = metric_layouts[self.row_metric]
        offsets = self.row_offset
        # histogram buckets: key -> column of the row's layout, or dropped
        parsed_keys, parsed_values = self._bucket_keys(), self._nonnegative(self._h_values, "bad_bucket_value")
        known_keys, known_counts, known_sizes = self._known_entries(known)
        sizes = np.concatenate([np.asarray(self._h_sizes, dtype=np.int64), known_sizes])
        entry_rows = np.repeat(h_rows, sizes)
        keys, values = np.concatenate([parsed_keys, known_keys]), np.concatenate([parsed_values, known_counts])
        columns = self._columns(row_layouts[entry_rows], keys)
        found = columns >= 0
        self._drop("unknown_bucket", int(np.count_nonzero(~found & (keys != _NOT_INT))))
        self._drop("bad_bucket_key", int(np.count_nonzero(keys == _NOT_INT)))
        positions = offsets[entry_rows[found]] + columns[found]
        # each conversion may count values it clamps into self.overflow: converted before the adds count theirs
        h_sums = np.concatenate([self._clamped(self._h_sums), known[:, SUM]])
        s_sums = np.concatenate([self._integer_parts(self._s_values), known_values[:, VALUE]])
        clamped = saturating_add_at(self.histogram, positions, values[found])
        clamped += saturating_add_at(self.sums, h_rows, h_sums)
        clamped += saturating_add_at(self.counts, h_rows, np.ones(len(h_rows), dtype=np.int64))
        # scalar-like values: one sample each, in the bucket of the largest lower bound <= value
        s_numbers = np.concatenate([np.asarray(self._s_values, dtype=np.float64), known_values[:, VALUE]])
        s_columns = self._scalar_columns(row_layouts[s_rows], s_numbers)
        clamped += saturating_add_at(self.histogram, offsets[s_rows] + s_columns, np.ones(len(s_rows), dtype=np.int64))
        clamped += saturating_add_at(self.sums, s_rows, s_sums)
        clamped += saturating_add_at(self.counts, s_rows, np.ones(len(s_rows), dtype=np.int64))
        self.overflow += clamped
        if self.options.clients:
            self._keep_client_samples(per_ping, rows, sizes, found, columns, values, s_columns)
        self._clear_pending()

    def _keep_client_samples(
        self,
        per_ping: tuple[list[int], ...],
        rows: np.ndarray,
        sizes: np.ndarray,
        found: np.ndarray,
        columns: np.ndarray,
        values: np.ndarray,
        s_columns: np.ndarray,
    ) -> None:
        """The flushed samples again, per client: (client, row, entries) per histogram or value of a ping with a
        usable clientId, and its non-zero (column, count) entries; a value is one entry of count 1."""
        ping_clients = np.asarray(self._p_clients, dtype=np.int64)
        clients = np.concatenate([np.repeat(ping_clients, np.asarray(n, dtype=np.int64)) for n in per_ping])
        histograms = len(sizes)
        usable = clients >= 0
        kept = found & (values > 0) & np.repeat(usable[:histograms], sizes)
        # kept entries per histogram, as differences of their running count at the histograms' ends (in int32 where
        # it fits: 2.4 times as fast as in int64, 7 times as fast as a bincount of each entry's histogram)
        running = np.zeros(len(kept) + 1, dtype=np.int32 if len(kept) < 2**31 else np.int64)
        np.cumsum(kept, out=running[1:], dtype=running.dtype)
        ends = np.cumsum(sizes)
        entry_counts = (running[ends] - running[ends - sizes]).astype(np.int64)
        values_kept = int(np.count_nonzero(usable[histograms:]))
        self._client_samples.append(
            (
                clients[usable].astype(np.int32),
                rows[usable].astype(np.int32),
                np.concatenate([entry_counts, np.ones(len(rows) - histograms, np.int64)])[usable].astype(np.int32),
                np.concatenate([columns[kept], s_columns[usable[histograms:]]], dtype=np.int32, casting="unsafe"),
                narrowed(np.concatenate([values[kept], np.ones(values_kept, np.int64)])),
            )
        )

    def _known_entries(self, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The bucket keys and counts of the known scanned histograms, in order, and how many each has: taken
        from their pings' arrays, laid one after another."""
        if not len(known):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        per_ping = [len(rows) // (KNOWN_ROW * 8) for rows in self._f_rows]
        bases = np.repeat(np.asarray(self._f_bases, dtype=np.int64), per_ping)
        starts, sizes = known[:, FIRST] + bases, known[:, END] - known[:, FIRST]
        keys = np.minimum(row_values(_table(b"".join(self._k_keys)), starts, sizes), _SPAN)  # as _KeyInts clips them
        return keys, row_values(_table(b"".join(self._k_counts)), starts, sizes), sizes

    def _bucket_keys(self) -> np.ndarray:
        """Bucket keys as Python's int() reads them (_NOT_INT where it cannot), through a cache of the few
        distinct key strings: a dict lookup per key is several times cheaper than parsing it."""
        if len(_KEY_INTS) > _KEY_CACHE_SIZE:
            _KEY_INTS.clear()
        return np.fromiter(map(_KEY_INTS.__getitem__, self._h_keys), dtype=np.int64, count=len(self._h_keys))

    def _nonnegative(self, values: list, reason: str) -> np.ndarray:
        """Bucket counts: non-ints and negatives count as 0 (and are counted), huge ones are clamped.

        Converted in slices, so that one odd value sends only its slice down the slow path."""
        slices = [values[start : start + _INT_SLICE] for start in range(0, len(values), _INT_SLICE)]
        counts = np.zeros(0, dtype=np.int64)
        if slices:
            counts = np.concatenate([self._ints(piece, reason) for piece in slices])
        negative = counts < 0
        self._drop(reason, int(np.count_nonzero(negative)))
        counts[negative] = 0
        return counts

    def _ints(self, values: list, reason: str) -> np.ndarray:
        """`values` as int64: non-ints read as 0 (and counted), ints beyond int64 clamped.

        `array.array("q", ...)` converts a list in one C-level pass and refuses exactly the values that need
        more care (floats, strings, None, containers, ints beyond int64), twice as fast as type-testing every
        value first, which only the refused lists then get."""
        try:
            return np.frombuffer(array.array("q", values), dtype=np.int64)
        except (TypeError, OverflowError):
            pass
        is_int = np.fromiter(map(int.__instancecheck__, values), dtype=bool, count=len(values))
        if not is_int.all():
            self._drop(reason, int(np.count_nonzero(~is_int)))
            values = [value if ok else 0 for value, ok in zip(values, is_int.tolist(), strict=True)]
        return self._clamped(values)

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] += count

    def _scalar_columns(self, layouts: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """Bucket of each non-negative value (as a float64) in its row's layout."""
        columns = np.zeros(len(numbers), dtype=np.int64)
        for layout in np.flatnonzero(np.bincount(layouts)).tolist():
            mine = layouts == layout
            columns[mine] = scalar_buckets(self.layouts[layout].bounds, numbers[mine])
        return columns

    def _integer_parts(self, values: list) -> np.ndarray:
        """Sums add int(value): exact for ints, the integer part of floats."""
        numbers = np.asarray(values) if values else np.zeros(0, dtype=np.int64)
        # ints and floats none beyond 2**53: each int was exact as a float, and the cast truncates like int()
        if numbers.dtype.kind in "ib" or (numbers.dtype.kind == "f" and numbers.max() < _EXACT_FLOAT):
            return numbers.astype(np.int64)
        return self._clamped(list(map(int, values)))

    def _clamped(self, values: list[int]) -> np.ndarray:
        """Python ints (none below int64's minimum) as int64, the ones beyond its maximum clamped and counted."""
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
        bounds = np.concatenate([np.asarray(layout.bounds, dtype=np.int64) for layout in self.layouts])
        columns = np.empty(len(keys), dtype=np.int64)
        _buckets.columns(np.ascontiguousarray(layouts), np.ascontiguousarray(keys), bounds, starts, columns)
        return columns

    def finish(self, stats: RunStats) -> Aggregate:
        """The partition's aggregate (rows in order of first sight: `rebuild` sorts them when merging). Its arrays
        are views of the accumulator's, not copies: copying a partition's histogram (tens of MiB of new pages) was
        about a third of this method's time. The room their growth left (at most as much again) is freed with the
        aggregate, which the job holds only until it is split into shards."""
        self.flush()
        stats.dropped.update(self.dropped)
        stats.overflow += self.overflow
        rows = len(self.row_dimension)
        dimensions = sorted(self.dimensions, key=self.dimensions.__getitem__)
        metrics = [(name, label, process, self.layouts[layout]) for name, label, process, layout in self.metrics]
        return Aggregate(
            BUILD_ID_COLUMNS,
            dimensions,
            metrics,
            self.row_dimension.astype(np.int32),
            self.row_metric.astype(np.int32),
            self.row_offset,
            self.sums[:rows],
            self.counts[:rows],
            self.histogram[: self.row_offset[-1]],
            stats,
            frozenset(self.undefined),
            samples=self._samples(dimensions, metrics) if self.options.clients else None,
        )

    def _samples(self, dimensions: list[tuple[str, ...]], metrics: list) -> ClientSamples:
        """The partition's samples per client (kept at each flush), with their rows resolved to cells."""
        kept = list(zip(*self._client_samples, strict=True)) or [[np.zeros(0, np.int32)]] * 5
        client, row, size, column, value = (np.concatenate(a) for a in kept)
        return ClientSamples(
            dimensions,
            metrics,
            client_hashes(list(self._client_ids))[client],
            self.row_dimension[row].astype(np.int32),
            self.row_metric[row].astype(np.int32),
            size,
            column,
            value,
            frozenset(self.undefined),
        )


_UNDEFINED, _UNUSABLE, _TOO_WIDE = -1, -2, -3  # layout ids of histograms without a (usable, narrow) layout
# why a metric is refused: the code of _REFUSALS[i] is -1 - i
_REFUSALS = ("bad_name", "long_name", "long_label", "undefined_limit")
_BAD_NAME, _LONG_NAME, _LONG_LABEL, _UNDEFINED_LIMIT = (-1 - i for i in range(len(_REFUSALS)))
_NOT_INT = np.iinfo(np.int64).min  # a key int() rejects; never a lower bound
_KEY_CACHE_SIZE = 100_000
# Layouts cached per name of a metric without a definition: its pings agree on one, or a few across a change of
# its definition between builds; a name whose pings disagree more stays on the general path, and the cache small.
_PING_LAYOUTS = 8
_INT_SLICE = 4096  # bucket counts converted at once (see _nonnegative)
_EXACT_FLOAT = 2.0**53  # every int below this is exactly a float64
_SPAN = MAX_BOUND + 2  # keys are compared per layout within this span, clipped to [-1, MAX_BOUND + 1]


class _KeyInts(dict):
    """Bucket key string -> int(key) clipped to [-1, _SPAN], or _NOT_INT; a key is parsed when first seen."""

    def __missing__(self, key: str) -> int:
        try:
            value = max(min(int(key), _SPAN), -1)
        except ValueError:
            value = _NOT_INT
        self[key] = value
        return value


_KEY_INTS = _KeyInts()  # shared by a process's partitions


def _table(data: bytes, width: int | None = None) -> np.ndarray:
    """int64 bytes from the scanner as an array, of rows of `width` when given."""
    array = np.frombuffer(data, dtype=np.int64)
    return array if width is None else array.reshape(-1, width)


def _grown(column: np.ndarray, needed: int) -> np.ndarray:
    """`column` with room for `needed` items, the new ones zero (doubling, so growth is amortised). A new array
    and a copy, not `ndarray.resize`: numpy asks the kernel for huge pages for a new large array, not for a
    reallocated one. A partition's histogram grows to tens of MiB, first touched here: resized, it took half of
    a worker's page faults."""
    if needed <= len(column):
        return column
    grown = np.zeros(max(needed, 2 * len(column)), dtype=column.dtype)
    grown[: len(column)] = column
    return grown
