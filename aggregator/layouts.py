"""Bucket layouts: what a metric's dense array of counts means, from a definition or from the ping itself."""

import ast
import hashlib
import itertools
import operator
from dataclasses import dataclass, field
from functools import cached_property

import fsspec
import orjson
import yaml

from aggregator.buckets import (
    COUNT_HISTOGRAM_LABELS,
    NUMERIC_SCALARS_LABELS,
    SIMPLE_MEASURES_LABELS,
    exponential_buckets,
    linear_buckets,
)


@dataclass(frozen=True)
class Layout:
    """A kind and its bucket lower bounds; categorical layouts also name their buckets."""

    kind: str
    bounds: tuple[int, ...]
    names: tuple[str, ...] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Bucket labels as the API serves them."""
        return self.names if self.names is not None else tuple(str(b) for b in self.bounds)

    @cached_property
    def column_of(self) -> dict[int, int]:
        """Bucket lower bound -> column."""
        return {bound: column for column, bound in enumerate(self.bounds)}

    # Layouts key the metric tables of every merge and staging: hashed once, not once per lookup (their bounds
    # run to hundreds of ints). A str's hash differs between processes, so the cached one is never pickled.
    @cached_property
    def _hash(self) -> int:
        return hash((self.kind, self.bounds, self.names))

    def __hash__(self) -> int:
        return self._hash

    def __getstate__(self) -> dict:
        return {name: value for name, value in self.__dict__.items() if name != "_hash"}


SCALAR_LAYOUT = Layout("exponential", tuple(NUMERIC_SCALARS_LABELS))
SIMPLE_MEASURES_LAYOUT = Layout("exponential", tuple(SIMPLE_MEASURES_LABELS))
COUNT_LAYOUT = Layout("count", tuple(COUNT_HISTOGRAM_LABELS))

# histogram_type as Firefox sends it -> kind; 4 (count) never gets here, it becomes a [[COUNT]]_ scalar.
PING_KINDS = {0: "exponential", 1: "linear", 2: "boolean", 3: "flag", 5: "categorical"}
MAX_BOUND = 1 << 40  # the largest bucket lower bound any layout may have
# Firefox's own limits (kSampleType_MAX, kBucketCount_MAX - 1): a ping claiming more is not trusted.
MAX_PING_HIGH = 2**31 - 1
MAX_PING_BUCKETS = 16383

# Firefox's Histograms.json uses a few C++ constants where numbers belong (moztelemetry replaced them so).
_CONSTANTS = {
    '"JS::gcreason::NUM_TELEMETRY_REASONS"': "101",
    '"mozilla::StartupTimeline::MAX_EVENT_ID"': "12",
    '"80 + 1"': "81",
}
_BUILTIN_DEFINITIONS = {
    "EVENTLOOP_UI_LAG_EXP_MS": {"kind": "exponential", "low": 50, "high": 60000, "n_buckets": 20},
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv,
}


def _number(value: object) -> int | None:
    """A definition's numeric field: an int, or a string of integer arithmetic (never eval'd)."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)

    def evaluate(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return int(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"not a number: {value!r}")

    return evaluate(ast.parse(str(value), mode="eval").body)


def bucket_layout(kind: str, low: object, high: object, n: object, repeats: bool = False) -> Layout | None:
    """The layout of (low, high, n) buckets, or None when they cannot make strictly increasing bounds, or
    non-decreasing ones with `repeats`: a definition's linear layout with more buckets than its range has values
    repeats bounds, and the original served it so (docs/semantics.md); a ping's own layout may not."""
    if any(type(v) is not int for v in (low, high, n)) or not 1 <= low < high <= MAX_BOUND or n < 3:
        return None
    bounds = exponential_buckets(low, high, n) if kind == "exponential" else linear_buckets(low, high, n)
    if any(a > b or (a == b and not repeats) for a, b in itertools.pairwise(bounds)):
        return None
    return Layout(kind, tuple(bounds))


def definition_layout(definition: dict) -> Layout | None:
    """The layout of a Histograms.json entry (moztelemetry's rules, spec section 3.6), or None when the
    entry is unusable."""
    kind = definition.get("kind")
    try:
        if kind in ("boolean", "flag", "count"):
            return bucket_layout(kind, 1, 2, 3)
        if kind == "enumerated":
            n_values = _number(definition["n_values"])
            return bucket_layout(kind, 1, n_values, n_values + 1)
        if kind == "categorical":
            # The wire has max(len(labels), n_values, 50) + 1 buckets; labels and the spill bucket are kept.
            labels = definition["labels"]
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                return None
            return Layout(kind, tuple(range(len(labels) + 1)), (*labels, "spill"))
        if kind in ("linear", "exponential"):
            low = _number(definition.get("low")) or 1
            high, n = _number(definition["high"]), _number(definition["n_buckets"])
            return bucket_layout(kind, low, high, n, repeats=True)
    except (KeyError, TypeError, ValueError, SyntaxError, ZeroDivisionError):
        return None
    return None


def ping_layout(histogram: dict) -> Layout | None:
    """The layout a ping's histogram describes itself with, or None when it is unusable."""
    kind = PING_KINDS.get(histogram.get("histogram_type"))
    span, n = histogram.get("range"), histogram.get("bucket_count")
    if kind is None or not isinstance(span, list) or len(span) != 2:
        return None
    low, high = span
    if type(high) is not int or high > MAX_PING_HIGH or type(n) is not int or n > MAX_PING_BUCKETS:
        return None
    return bucket_layout(kind, low, high, n)


def fixed_layout(metric: str) -> Layout | None:
    """The fixed layout of scalar-like metric names, matched by prefix as the original did."""
    for prefix, layout in (
        ("SIMPLE_MEASURES", SIMPLE_MEASURES_LAYOUT),
        ("[[COUNT]]", COUNT_LAYOUT),
        ("SCALARS", SCALAR_LAYOUT),
    ):
        if metric.startswith(prefix):
            return layout
    return None


def _read_text(url: str) -> tuple[str, str]:
    """A definitions file's text and its SHA-256."""
    with fsspec.open(url, "rb") as f:
        data = f.read()
    return data.decode(), hashlib.sha256(data).hexdigest()


@dataclass
class Definitions:
    """Histogram definitions (Histograms.json) and scalar descriptions (Scalars.yaml), both optional."""

    histograms: dict[str, dict] = field(default_factory=dict)
    scalars: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, dict | None] = field(default_factory=lambda: {"histograms": None, "scalars": None})

    @classmethod
    def load(cls, histograms_url: str | None = None, scalars_url: str | None = None) -> "Definitions":
        definitions = cls()
        if histograms_url:
            text, digest = _read_text(histograms_url)
            for constant, number in _CONSTANTS.items():
                text = text.replace(constant, number)
            definitions.histograms = orjson.loads(text)
            definitions.sources["histograms"] = {
                "url": histograms_url,
                "sha256": digest,
                "count": len(definitions.histograms),
            }
        if scalars_url:
            text, digest = _read_text(scalars_url)
            definitions.scalars = {
                f"{category}.{probe}".lower(): spec
                for category, probes in (yaml.safe_load(text) or {}).items()
                for probe, spec in probes.items()
            }
            definitions.sources["scalars"] = {
                "url": scalars_url,
                "sha256": digest,
                "count": len(definitions.scalars),
            }
        return definitions

    def histogram(self, name: str) -> dict | None:
        """The definition of a histogram, resolved as moztelemetry resolved names (built-ins first)."""
        if name.startswith(("USE_COUNTER_", "USE_COUNTER2_")):
            return {"kind": "boolean", "description": ""}
        name = name.split("/", 1)[0]
        for candidate in (name, name.removeprefix("STARTUP_")):
            definition = _BUILTIN_DEFINITIONS.get(candidate) or self.histograms.get(candidate)
            if isinstance(definition, dict):
                return definition
        return None

    def definition(self, metric: str) -> dict | None:
        """The definition of an aggregated metric name (simple measurements have none)."""
        if metric.startswith("SCALARS_"):
            return self.scalars.get(metric.removeprefix("SCALARS_").lower())
        if metric.startswith("SIMPLE_MEASURES_"):
            return None
        return self.histogram(metric.removeprefix("[[COUNT]]_"))

    def description(self, metric: str) -> str | None:
        """Description of an aggregated metric name, as the API serves it."""
        spec = self.definition(metric)
        description = spec.get("description") if spec else None
        if isinstance(description, list):
            description = " ".join(description)
        return description.strip() if isinstance(description, str) else None
