"""Reference aggregation: the slow, plain-Python test oracle of the job.

Written from `reference/mozaggregator-spec.md` (sections 1, 2, 3.6) and `docs/semantics.md`, independently
of the `aggregator` package (nothing is imported from it, not even the bucket functions). Clarity over
speed: every function below is meant to be checked line by line against those two documents.

How it works, as the original did:
1. each line is classified (malformed / filtered / aggregated) and its 8 dimensions extracted;
2. each aggregated ping is reduced to a per-ping state `{(metric, label, process, layout): acc}` where
   `acc` is `{"histogram": {bucket_key_str: int}, "sum": int, "count": int}` (string keys, exactly as
   sent);
3. per-ping states are merged by summing into build-id states; submission-date states are the build-id
   states re-keyed without `build_id` and summed;
4. only at the end each state is *completed* onto its layout: keys are re-indexed with `int(key)`, keys
   that are not a bucket lower bound are dropped, and every quantity is clamped to the int64 maximum.

Output (`Reference`):
- `build_id[key]`, key = `(submission_date, channel, version, build_id, application, architecture, os,
  os_version, metric, label, process, layout)` (12 elements);
- `submission_date[key]`, the same key without `build_id` (11 elements);
- `layout = (kind, bounds)`: the metric's kind name and the tuple of its bucket lower bounds. It is part
  of the key because a metric without a definition takes its layout from each ping, and pings that
  disagree give separate aggregates (docs/semantics.md "Layouts"). For every other metric there is one
  layout per name, and `drop_layout()` gives the dict keyed without it;
- value `Cell = (kind, bounds, counts, sum, count)`: `kind`/`bounds` as in the layout, `counts` the dense
  bucket counts over `bounds`, `sum` and `count`; all integers, clamped to `2**63 - 1`;
- `malformed` / `filtered`: Counters by the reasons of docs/semantics.md; `aggregated`: number of pings
  aggregated.

Decisions where docs/semantics.md leaves room (each one is a choice of this oracle, see also the tests):
- Blank (empty or JSON-whitespace-only) lines are not pings: they are ignored and counted nowhere.
- Parsing uses orjson, so numbers are what orjson makes of them (an integer above the u64 range becomes a
  float). A line that fails to parse is `truncated` when, stripped of surrounding whitespace, it starts
  with `{` and the decoder's error position is its end (a cut-short object); otherwise `not_json`.
- Ping checks are applied in the order of the table in docs/semantics.md; the first failing one decides,
  so every malformed reason wins over every filter reason (a ping of a non-selected channel with a bad
  build id is `bad_dimension`).
- An absent `meta`/`application`/`environment`/`environment.system`/`environment.system.os`/`payload` is
  "not an object" (`wrong_type`). A listed field whose key is absent is `missing_field`; present but
  `null` or any other non-string is `bad_dimension` (for `meta.sampleId`: `bad_sample_id`).
- Dimension formats and the NUL check apply to the derived values (`version` after the cut at `.`,
  `build_id` after `[:8]`, the Linux `os_version` after `[:3]`). "Digits" means ASCII `0-9`.
- `payload.processes`, `payload.processes.{parent,content,gpu}` and `payload.childPayloads` that are
  present with value `null` are `wrong_type` (present but not an object/list).
- Booleans are ints everywhere, as in Python: a histogram bucket value `true` counts 1, a `sum` of `true`
  is 1.
- Two bucket keys naming the same bound (`"5"` and `"05"`, or `" 5"`) are summed when completing (the
  original's pandas re-index kept only one of them).
- A bound that repeats in a layout gets its count at each of its positions: the original's pandas re-index of
  `{int(key): count}` onto the bounds fills every position of a repeated index label.
- The metric-name check (`A-Z a-z 0-9 _ - [ ] .`) applies to the final metric name (after the prefix and
  the upper-casing); the NUL check applies to the final label.
- The fixed layouts are chosen by metric-name prefix: `SCALARS_` and `[[COUNT]]_` ->
  `exponential_buckets(1, 10000, 100)`, `SIMPLE_MEASURES_` -> `exponential_buckets(1, 30000, 50)`, all of
  kind name `"exponential"`. A histogram whose own name has one of these prefixes is completed onto that
  fixed layout, as in the original.
- The built-in definition rules (`USE_COUNTER_*`/`USE_COUNTER2_*` boolean, `EVENTLOOP_UI_LAG_EXP_MS`,
  which overrides the file as `parsed.update(...)` did) apply even when no definitions file is given.
- Definition numeric fields may be strings, as in the original: the three constants the original replaced
  (`JS::gcreason::NUM_TELEMETRY_REASONS` = 101, `mozilla::StartupTimeline::MAX_EVENT_ID` = 12, `80 + 1`)
  and integer arithmetic (`+ - * /`, `/` floors as Python 2 did) are evaluated.
- A layout is usable when low, high and n are ints (not bools), `1 <= low < high`, `n >= 3` and the bounds
  are strictly increasing; a definition's bounds may also repeat (a linear one with more buckets than its
  range has values), as the original served them. A ping's own layout must also have
  `high <= 2**31 - 1` and `n <= 16383` (Firefox's `kSampleType_MAX` and `kBucketCount_MAX - 1`). A
  histogram whose metric is defined but whose definition is unusable (unknown kind, missing or bad numbers)
  is skipped; it never falls back to the ping's layout.
- For a metric without definition the layout is `(low, high, n) = (range[0], range[1], bucket_count)` for
  every histogram type (boolean and flag included); `exponential_buckets` for type 0, `linear_buckets`
  otherwise; a type other than 0, 1, 2, 3, 5 has no layout and the histogram is skipped.
"""

from __future__ import annotations

import ast
import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

INT64_MAX = 2**63 - 1

# --- Buckets (spec 3.6) ---------------------------------------------------------------------------


def linear_buckets(low: int, high: int, n: int) -> list[int]:
    """`b[0] = 0`; `b[i] = int((low*(n-1-i) + high*(i-1)) / (n-2) + 0.5)` for i = 1..n-1."""
    buckets = [0]
    for i in range(1, n):
        buckets.append(int((low * (n - 1 - i) + high * (i - 1)) / (n - 2) + 0.5))
    return buckets


def exponential_buckets(low: int, high: int, n: int) -> list[int]:
    """`b[0] = 0`, `b[1] = low`, then `next = floor(exp(ln(cur) + (ln(high) - ln(cur)) / (n - i)) + 0.5)`."""
    buckets = [0, low]
    current = low
    for i in range(2, n):
        log_next = math.log(current) + (math.log(high) - math.log(current)) / (n - i)
        next_value = math.floor(math.exp(log_next) + 0.5)
        current = next_value if next_value > current else current + 1
        buckets.append(current)
    return buckets


SIMPLE_MEASURES_LABELS: list[int] = exponential_buckets(1, 30000, 50)
COUNT_HISTOGRAM_LABELS: list[int] = exponential_buckets(1, 10000, 100)
NUMERIC_SCALARS_LABELS: list[int] = COUNT_HISTOGRAM_LABELS


def scalar_bucket(labels: Sequence[int], value: int | float) -> int:
    """The largest label `L` with `value >= L` (spec 1.8); labels start at 0, so every value >= 0 has one."""
    insert_bucket = labels[0]
    for label in reversed(labels):
        if value >= label:
            insert_bucket = label
            break
    return insert_bucket


# --- Types ----------------------------------------------------------------------------------------

Layout = tuple[str, tuple[int, ...]]
"""`(kind, bounds)`: kind name and bucket lower bounds."""

Cell = tuple[str, tuple[int, ...], tuple[int, ...], int, int]
"""`(kind, bounds, counts, sum, count)`."""

Acc = dict[str, Any]
"""Per-metric accumulator as in the original: `{"histogram": {key_str: int}, "sum": int, "count": int}`."""

State = dict[tuple[str, str, str, Layout], Acc]
"""`{(metric, label, process, layout): Acc}`."""


@dataclass
class Reference:
    """Everything the reference aggregation produces (see the module docstring for the key shapes)."""

    build_id: dict[tuple, Cell] = field(default_factory=dict)
    submission_date: dict[tuple, Cell] = field(default_factory=dict)
    # client-level weighting, same keys: (distinct clients, the sum over them of each one's normalised counts)
    build_id_clients: dict[tuple, tuple[int, tuple[float, ...]]] = field(default_factory=dict)
    submission_date_clients: dict[tuple, tuple[int, tuple[float, ...]]] = field(default_factory=dict)
    unusable_client_ids: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    aggregated: int = 0


def drop_layout(cells: dict[tuple, Cell]) -> dict[tuple, Cell]:
    """The same cells keyed without the final `layout` element; raises if a key has two layouts."""
    result: dict[tuple, Cell] = {}
    for key, cell in cells.items():
        short = key[:-1]
        if short in result:
            raise ValueError(f"{short!r} has more than one layout")
        result[short] = cell
    return result


# --- Constants of the rules -----------------------------------------------------------------------

CHANNELS = frozenset({"nightly", "aurora", "beta", "release"})
PROCESS_TYPES = ("parent", "content", "gpu")
EXCLUDED_KEYED_HISTOGRAMS = frozenset({"MESSAGE_MANAGER_MESSAGE_SIZE", "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION"})
NAVIGATION_PREFIX = "browser.engagement.navigation"
METRIC_NAME = re.compile(r"[A-Za-z0-9_\-\[\].]+")
EIGHT_DIGITS = re.compile(r"[0-9]{8}")
DIGITS = re.compile(r"[0-9]+")

SCALAR_LAYOUT: Layout = ("exponential", tuple(NUMERIC_SCALARS_LABELS))
COUNT_LAYOUT: Layout = ("exponential", tuple(COUNT_HISTOGRAM_LABELS))
SIMPLE_LAYOUT: Layout = ("exponential", tuple(SIMPLE_MEASURES_LABELS))

BUILTIN_DEFINITIONS: dict[str, dict[str, Any]] = {
    "EVENTLOOP_UI_LAG_EXP_MS": {"kind": "exponential", "low": 50, "high": "60000", "n_buckets": 20},
}
DEFINITION_CONSTANTS = {
    "JS::gcreason::NUM_TELEMETRY_REASONS": 101,
    "mozilla::StartupTimeline::MAX_EVENT_ID": 12,
    "80 + 1": 81,
}
PING_HISTOGRAM_KINDS = {0: "exponential", 1: "linear", 2: "boolean", 3: "flag", 5: "categorical"}
PING_MAX_HIGH = 2**31 - 1
PING_MAX_BUCKET_COUNT = 16383


# --- Layouts (docs/semantics.md "Layouts") --------------------------------------------------------


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _layout(kind: str, low: Any, high: Any, n: Any, repeats: bool = False) -> Layout | None:
    """`(kind, bounds)` for `(low, high, n)`, or None when unusable (see the module docstring)."""
    if not (_is_int(low) and _is_int(high) and _is_int(n)):
        return None
    return _int_layout(kind, low, high, n, repeats)


@functools.cache
def _int_layout(kind: str, low: int, high: int, n: int, repeats: bool) -> Layout | None:
    """`_layout` of ints, cached: a corpus asks for the same few layouts in every ping."""
    if not (1 <= low < high and n >= 3):
        return None
    bounds = exponential_buckets(low, high, n) if kind == "exponential" else linear_buckets(low, high, n)
    if any(a > b for a, b in itertools.pairwise(bounds)):
        return None
    if not repeats and any(a == b for a, b in itertools.pairwise(bounds)):
        return None
    return kind, tuple(bounds)


def _eval_int(node: ast.expr) -> int:
    """Evaluate an integer arithmetic expression node (`+ - * /`, `/` flooring)."""
    if isinstance(node, ast.Constant) and _is_int(node.value):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval_int(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval_int(node.left), _eval_int(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div | ast.FloorDiv):
            return left // right
    raise ValueError("not an integer expression")


def _definition_number(value: Any) -> int | None:
    """An int, one of the constants the original replaced, or integer arithmetic in a string."""
    if _is_int(value):
        return value
    if not isinstance(value, str):
        return None
    if value in DEFINITION_CONSTANTS:
        return DEFINITION_CONSTANTS[value]
    try:
        return _eval_int(ast.parse(value, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _definition_field(definition: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """A numeric field of a definition; `default` when absent or null, None when present but unusable."""
    value = definition.get(key)
    if value is None:
        return default
    return _definition_number(value)


def _definition_layout(definition: Any) -> Layout | None:
    """Layout of a Histograms.json entry (spec 3.6 bucket parameters), or None when unusable."""
    if not isinstance(definition, dict):
        return None
    kind = definition.get("kind")
    if kind in ("boolean", "flag", "count"):
        return _layout(kind, 1, 2, 3)
    if kind == "enumerated":
        n_values = _definition_field(definition, "n_values")
        if n_values is None:
            return None
        return _layout(kind, 1, n_values, n_values + 1)
    if kind == "categorical":
        labels = definition.get("labels")
        n_values = _definition_field(definition, "n_values", 0)
        if not isinstance(labels, list) or n_values is None:
            return None
        n = max(len(labels), n_values or 0, 50)
        full = _layout(kind, 1, n, n + 1)
        if full is None:
            return None
        # Keep buckets 0 .. len(labels): the labels and the spill bucket.
        return kind, full[1][: len(labels) + 1]
    if kind in ("linear", "exponential"):
        low = _definition_field(definition, "low", 1)
        high = _definition_field(definition, "high")
        n_buckets = _definition_field(definition, "n_buckets")
        if low is None:
            return None
        return _layout(kind, low or 1, high, n_buckets, repeats=True)
    return None


def _lookup_definition(name: str, definitions: dict[str, Any]) -> tuple[bool, Any]:
    """`(found, definition)` resolved as moztelemetry v0.10.4 did (spec 3.6 "Name resolution")."""
    if name.startswith("USE_COUNTER_") or name.startswith("USE_COUNTER2_"):
        return True, {"kind": "boolean", "description": ""}
    proper_name = name.split("/")[0] if "/" in name else name
    if proper_name in definitions:
        return True, definitions[proper_name]
    if proper_name.startswith("STARTUP_") and proper_name[len("STARTUP_") :] in definitions:
        return True, definitions[proper_name[len("STARTUP_") :]]
    return False, None


def _fixed_layout(metric: str) -> Layout | None:
    """The fixed label list of scalars, count histograms and simple measurements, chosen by name prefix."""
    if metric.startswith("SCALARS_"):
        return SCALAR_LAYOUT
    if metric.startswith("[[COUNT]]_"):
        return COUNT_LAYOUT
    if metric.startswith("SIMPLE_MEASURES_"):
        return SIMPLE_LAYOUT
    return None


def _ping_layout(histogram: dict[str, Any]) -> Layout | None:
    """Layout from the ping's own `histogram_type`, `range` and `bucket_count`, or None when unusable."""
    kind = PING_HISTOGRAM_KINDS.get(histogram["histogram_type"])
    value_range = histogram.get("range")
    bucket_count = histogram.get("bucket_count")
    if kind is None or not isinstance(value_range, list) or len(value_range) != 2:
        return None
    low, high = value_range
    if not (_is_int(high) and high <= PING_MAX_HIGH and _is_int(bucket_count)):
        return None
    if bucket_count > PING_MAX_BUCKET_COUNT:
        return None
    return _layout(kind, low, high, bucket_count)


def _histogram_layout(metric: str, histogram: dict[str, Any], definitions: dict[str, Any]) -> Layout | None:
    """Layout of a (non-count) histogram: fixed list, else its definition, else the ping's own description."""
    fixed = _fixed_layout(metric)
    if fixed is not None:
        return fixed
    found, definition = _lookup_definition(metric, definitions)
    if found:
        return _definition_layout(definition)
    return _ping_layout(histogram)


# --- Per-ping extraction (spec 1.4 - 1.8) ---------------------------------------------------------


def _is_number(value: Any) -> bool:
    """int, float or bool (bool is an int in Python)."""
    return isinstance(value, int | float)


def _valid_names(metric: str, label: str) -> bool:
    """The original dropped these when writing: bad metric characters, NUL in the label."""
    return METRIC_NAME.fullmatch(metric) is not None and "\x00" not in label


def _accumulator(state: State, key: tuple[str, str, str, Layout]) -> Acc:
    """The accumulator of `key`, created empty when missing."""
    if key not in state:
        state[key] = {"histogram": {}, "sum": 0, "count": 0}
    return state[key]


def _add_scalar_value(state: State, metric: str, label: str, process: str, value: Any) -> None:
    """Spec 1.8: one value (a number) of a scalar, simple measurement or count histogram."""
    if value < 0:
        return
    if not _valid_names(metric, label):
        return
    layout = _fixed_layout(metric)
    assert layout is not None
    acc = _accumulator(state, (metric, label, process, layout))
    acc["sum"] += int(value)  # [choice] the integer part of a float
    acc["count"] += 1
    bucket = str(scalar_bucket(layout[1], value))
    acc["histogram"][bucket] = acc["histogram"].get(bucket, 0) + 1


def _add_histogram(
    state: State, name: str, label: str, process: str, histogram: Any, definitions: dict[str, Any]
) -> None:
    """Spec 1.5 `_extract_histogram`, with the layout resolved for the state key."""
    if not isinstance(histogram, dict):
        return
    values = histogram.get("values")
    if not isinstance(values, dict):
        return
    histogram_sum = histogram.get("sum")
    if not isinstance(histogram_sum, int) or histogram_sum < 0:
        return
    histogram_type = histogram.get("histogram_type")
    if not isinstance(histogram_type, int):
        return
    if histogram_type == 4:
        _add_scalar_value(state, "[[COUNT]]_" + name, label, process, histogram_sum)
        return
    if not _valid_names(name, label):
        return
    layout = _histogram_layout(name, histogram, definitions)
    if layout is None:
        return
    acc = _accumulator(state, (name, label, process, layout))
    acc["sum"] += int(histogram_sum)
    acc["count"] += 1
    for key, value in values.items():
        try:
            int(key)
        except ValueError:
            continue
        count = int(value) if isinstance(value, int) and value >= 0 else 0
        acc["histogram"][key] = acc["histogram"].get(key, 0) + count


def _extract_histograms(state: State, payload: dict[str, Any], process: str, definitions: dict[str, Any]) -> None:
    """`histograms` and `keyedHistograms` of one payload (top level, child or process)."""
    histograms = payload.get("histograms", {})
    if isinstance(histograms, dict):
        for name, histogram in histograms.items():
            _add_histogram(state, name, "", process, histogram, definitions)
    keyed_histograms = payload.get("keyedHistograms", {})
    if isinstance(keyed_histograms, dict):
        for name, by_key in keyed_histograms.items():
            if name in EXCLUDED_KEYED_HISTOGRAMS or not isinstance(by_key, dict):
                continue
            for key, histogram in by_key.items():
                _add_histogram(state, name, key, process, histogram, definitions)


def _extract_simple_measures(state: State, simple: Any, process: str) -> None:
    """Spec 1.7: numbers at the top level and one level down."""
    if not isinstance(simple, dict):
        return
    for name, value in simple.items():
        if isinstance(value, dict):
            for sub_name, sub_value in value.items():
                if _is_number(sub_value):
                    metric = f"SIMPLE_MEASURES_{name.upper()}_{sub_name.upper()}"
                    _add_scalar_value(state, metric, "", process, sub_value)
        elif _is_number(value):
            _add_scalar_value(state, f"SIMPLE_MEASURES_{name.upper()}", "", process, value)


def _extract_scalars(state: State, process_payload: dict[str, Any], process: str) -> None:
    """Spec 1.6: `scalars` and `keyedScalars` of one `payload.processes.<process>`."""
    scalars = process_payload.get("scalars", {})
    if isinstance(scalars, dict):
        for name, value in scalars.items():
            if name.startswith(NAVIGATION_PREFIX) or not _is_number(value):
                continue
            _add_scalar_value(state, "SCALARS_" + name.upper(), "", process, value)
    keyed_scalars = process_payload.get("keyedScalars", {})
    if isinstance(keyed_scalars, dict):
        for name, by_key in keyed_scalars.items():
            if name.startswith(NAVIGATION_PREFIX) or not isinstance(by_key, dict):
                continue
            for key, value in by_key.items():
                if _is_number(value):
                    _add_scalar_value(state, "SCALARS_" + name.upper(), key.upper(), process, value)


def _aggregate_ping(payload: dict[str, Any], definitions: dict[str, Any]) -> State:
    """Spec 1.4: the per-ping state, in the original's extraction order."""
    state: State = {}
    processes = payload.get("processes", {})
    for process in PROCESS_TYPES:
        _extract_scalars(state, processes.get(process, {}), process)
    _extract_histograms(state, payload, "parent", definitions)
    _extract_simple_measures(state, payload.get("simpleMeasurements", {}), "parent")
    for child in payload.get("childPayloads", []):
        _extract_histograms(state, child, "content", definitions)
        _extract_simple_measures(state, child.get("simpleMeasurements", {}), "content")
    _extract_histograms(state, processes.get("content", {}), "content", definitions)
    _extract_histograms(state, processes.get("gpu", {}), "gpu", definitions)
    return state


# --- Ping level (docs/semantics.md "Ping level") --------------------------------------------------

JSON_WHITESPACE = " \t\r\n"

Dimensions = tuple[str, str, str, str, str, str, str, str]
"""`(submission_date, channel, version, build_id, application, architecture, os, os_version)`."""


def _parse(line: str) -> tuple[Any, str | None]:
    """`(document, None)`, or `(None, "truncated" | "not_json")`."""
    text = line.strip(JSON_WHITESPACE)
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as error:
        if text.startswith("{") and error.pos >= len(text):
            return None, "truncated"
        return None, "not_json"


def _dimensions(meta: dict, application: dict, os_info: dict) -> Dimensions | None:
    """The 8 dimensions, or None when one is not a string, contains NUL or fails its format."""
    raw = (
        meta["submissionDate"],
        application["channel"],
        application["version"],
        application["buildId"],
        application["name"],
        application["architecture"],
        os_info["name"],
        os_info["version"],
    )
    if not all(isinstance(value, str) for value in raw):
        return None
    submission_date, channel, version, build_id, name, architecture, os_name, os_version = raw
    version = version.split(".")[0]
    build_id = build_id[:8]
    if os_name == "Linux":
        os_version = os_version[:3]
    dimensions = (submission_date, channel, version, build_id, name, architecture, os_name, os_version)
    if any("\x00" in value for value in dimensions):
        return None
    if not EIGHT_DIGITS.fullmatch(submission_date):
        return None
    if not DIGITS.fullmatch(version):
        return None
    if not EIGHT_DIGITS.fullmatch(build_id):
        return None
    return dimensions


Outcome = tuple[str, str, Dimensions | None]
"""`("malformed", reason, None)`, `("filtered", reason, None)` or `("aggregated", "", dimensions)`."""


def _malformed(reason: str) -> Outcome:
    return "malformed", reason, None


def _filtered(reason: str) -> Outcome:
    return "filtered", reason, None


def _classify(ping: Any, dates: set[str], channels: set[str] | None, include_fennec: bool) -> Outcome:
    """Apply the checks of docs/semantics.md "Ping level" in table order; the first failing one decides."""
    if not isinstance(ping, dict):
        return _malformed("not_object")
    meta = ping.get("meta")
    application = ping.get("application")
    environment = ping.get("environment")
    if not (isinstance(meta, dict) and isinstance(application, dict) and isinstance(environment, dict)):
        return _malformed("wrong_type")
    system = environment.get("system")
    if not isinstance(system, dict):
        return _malformed("wrong_type")
    os_info = system.get("os")
    if not isinstance(os_info, dict):
        return _malformed("wrong_type")
    payload = ping.get("payload")
    if not isinstance(payload, dict):
        return _malformed("wrong_type")

    required = [
        (meta, "submissionDate"),
        (meta, "sampleId"),
        (application, "channel"),
        (application, "version"),
        (application, "buildId"),
        (application, "name"),
        (application, "architecture"),
        (os_info, "name"),
        (os_info, "version"),
    ]
    if any(key not in container for container, key in required):
        return _malformed("missing_field")

    sample_id = meta["sampleId"]
    if not isinstance(sample_id, int | float):
        return _malformed("bad_sample_id")

    dimensions = _dimensions(meta, application, os_info)
    if dimensions is None:
        return _malformed("bad_dimension")

    if "processes" in payload:
        processes = payload["processes"]
        if not isinstance(processes, dict):
            return _malformed("wrong_type")
        for process in PROCESS_TYPES:
            if process in processes and not isinstance(processes[process], dict):
                return _malformed("wrong_type")
    if "childPayloads" in payload:
        children = payload["childPayloads"]
        if not isinstance(children, list) or not all(isinstance(child, dict) for child in children):
            return _malformed("wrong_type")

    submission_date, channel, _, _, name, _, _, _ = dimensions
    if sample_id >= 100:
        return _filtered("sampled_out")
    if channel not in CHANNELS:
        return _filtered("channel")
    if channels is not None and channel not in channels:
        return _filtered("channel_not_selected")
    if name == "Fennec" and not include_fennec:
        return _filtered("fennec")
    if submission_date not in dates:
        return _filtered("other_date")
    return "aggregated", "", dimensions


# --- Combining and completing ---------------------------------------------------------------------


def _merge(target: Acc, source: Acc) -> None:
    """Spec 1.9: `count += count`, `sum += sum`, bucket-wise sum of the string-keyed histograms."""
    target["count"] += source["count"]
    target["sum"] += source["sum"]
    for key, value in source["histogram"].items():
        target["histogram"][key] = target["histogram"].get(key, 0) + value


def _merge_into(states: dict[tuple, Acc], key: tuple, acc: Acc) -> None:
    """Add `acc` to `states[key]` (a fresh copy when missing)."""
    if key not in states:
        states[key] = {"histogram": {}, "sum": 0, "count": 0}
    _merge(states[key], acc)


def _clamp(value: int) -> int:
    """Clamp a non-negative quantity to the int64 maximum."""
    return min(value, INT64_MAX)


def _complete(layout: Layout, acc: Acc) -> Cell:
    """Dense counts over the layout: keys re-indexed by `int(key)` (onto every position of a repeated
    bound), non-bounds dropped, all clamped."""
    kind, bounds = layout
    positions = _positions(bounds)
    counts = [0] * len(bounds)
    for key, value in acc["histogram"].items():
        for index in positions.get(int(key), []):
            counts[index] += value
    clamped = tuple(counts) if max(counts) <= INT64_MAX else tuple(map(_clamp, counts))  # each only when one is over
    return kind, bounds, clamped, _clamp(acc["sum"]), _clamp(acc["count"])


# --- Entry point ----------------------------------------------------------------------------------


def reference_aggregate(
    lines: Iterable[str],
    dates: set[str],
    histograms_json: dict | None,
    *,
    channels: set[str] | None = None,
    include_fennec: bool = False,
    clients: bool = True,
) -> Reference:
    """Aggregate raw NDJSON lines exactly as docs/semantics.md says (see the module docstring). With
    `clients=False` the client-level cells are left empty, in about half the time: for the tests that compare
    per-ping cells only."""
    definitions: dict[str, Any] = dict(histograms_json or {})
    definitions.update(BUILTIN_DEFINITIONS)
    result = Reference()
    build_id_states: dict[tuple, Acc] = {}
    client_states: dict[tuple, Acc] = {}  # keyed (clientId, *build-id key)

    for line in lines:
        if not line.strip(JSON_WHITESPACE):
            continue
        ping, parse_error = _parse(line)
        if parse_error is not None:
            result.malformed[parse_error] += 1
            continue
        status, reason, dimensions = _classify(ping, dates, channels, include_fennec)
        if status == "malformed":
            result.malformed[reason] += 1
            continue
        if status == "filtered":
            result.filtered[reason] += 1
            continue
        assert dimensions is not None
        result.aggregated += 1
        client = ping.get("clientId")
        usable = isinstance(client, str) and client != "" and len(client.encode("utf-8", "surrogatepass")) <= 1000
        result.unusable_client_ids += not usable
        for (metric, label, process, layout), acc in _aggregate_ping(ping["payload"], definitions).items():
            _merge_into(build_id_states, (*dimensions, metric, label, process, layout), acc)
            if usable and clients:
                _merge_into(client_states, (client, *dimensions, metric, label, process, layout), acc)

    submission_date_states: dict[tuple, Acc] = {}
    for key, acc in build_id_states.items():
        _merge_into(submission_date_states, key[:3] + key[4:], acc)

    result.build_id = {key: _complete(key[-1], acc) for key, acc in build_id_states.items()}
    result.submission_date = {key: _complete(key[-1], acc) for key, acc in submission_date_states.items()}

    # client level: each client's counts of a cell (summed over its pings) normalised to sum 1, then summed
    client_date_states: dict[tuple, Acc] = {}
    for key, acc in client_states.items():
        _merge_into(client_date_states, key[:4] + key[5:], acc)  # without build_id (key[0] is the client)
    result.build_id_clients = _client_level(client_states)
    result.submission_date_clients = _client_level(client_date_states)
    return result


def _client_level(states: dict[tuple, Acc]) -> dict[tuple, tuple[int, tuple[float, ...]]]:
    """Per cell (the key without its client): how many clients have it, and the sum of their normalised counts.
    A client's total is its counts at bucket bounds, each once; a client whose counts are all zero (or all off
    the layout) counts as a client and adds nothing. A count goes to every position of its bound, as in
    `_complete`."""
    clients: dict[tuple, int] = {}
    shares: dict[tuple, list[float]] = {}
    for key, acc in states.items():
        cell, bounds = key[1:], key[-1][1]
        positions = _positions(bounds)
        counts = [(positions[int(k)], value) for k, value in acc["histogram"].items() if int(k) in positions]
        total = sum(value for _, value in counts)
        clients[cell] = clients.get(cell, 0) + 1
        sums = shares.setdefault(cell, [0.0] * len(bounds))
        for where, value in counts if total else ():
            for index in where:
                sums[index] += value / total
    return {cell: (clients[cell], tuple(shares[cell])) for cell in clients}


@functools.cache
def _positions(bounds: tuple[int, ...]) -> dict[int, list[int]]:
    """Each bound's positions in a layout (a bound repeats in some linear layouts)."""
    positions: dict[int, list[int]] = {}
    for index, bound in enumerate(bounds):
        positions.setdefault(bound, []).append(index)
    return positions
