"""Validation of everything a request names, before any of it reaches SQL (where it is only ever a parameter).

Rules of the original kept: unknown query parameter on the metric route -> 405 whose `Allow` header is the URL
with only the valid parameters; missing version, dates or metric -> 404. Fixed: a repeated filter key means OR
(telemetry.js sends `os=Linux&os=Darwin`), while a single-valued parameter given two values is a 404 rather
than "the first wins"; only `child` maps `true`/`false` (the original turned every `"true"` into a boolean, so
`label=true` never matched); bad values are a 404 that says why, not a SQL error; /filters/ refuses unknown
parameters as the metric route does (the original ignored them there).
"""

import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from server.errors import error, not_found

KINDS = ("build_id", "submission_date")
FILTER_PARAMETERS = {
    "application": "application",
    "architecture": "architecture",
    "os": "os",
    "osVersion": "os_version",
}
CHILD = {"parent": "parent", "false": "parent", "content": "content", "true": "content", "gpu": "gpu"}
ALLOWED = (
    "application",
    "architecture",
    "child",
    "dates",
    "label",
    "metric",
    "os",
    "osVersion",
    "version",
    "stats",
    "aggregation",
)
# How an answer weighs what it sums: every ping alike (the original's), or every client alike (GLAM's).
AGGREGATIONS = ("pings", "clients")
FILTERS_ALLOWED = ("channel", "version")
MAX_DATES = 3660  # ten years of days in one request
MAX_VALUE = 1000  # characters of a filter value or label

# What each value may be; /openapi.json publishes the same patterns.
CHANNEL = re.compile(r"[a-z]{1,32}")
VERSION = re.compile(r"[0-9]{1,9}")
DATE = re.compile(r"[0-9]{8}")
METRIC = re.compile(r"[A-Za-z0-9_\-\[\].]{1,200}")
MISSING = "Missing date or version or metric. All three are required."


@dataclass(frozen=True)
class MetricQuery:
    """A validated metric request; hashable and canonical (sorted, de-duplicated), so it keys the cache."""

    kind: str
    channel: str
    version: int
    metric: str
    dates: tuple[date, ...]  # in the order asked, duplicates dropped
    processes: tuple[str, ...] | None  # None: every process
    labels: tuple[str, ...] | None  # None: every label
    filters: tuple[tuple[str, tuple[str, ...]], ...]  # (column, accepted values), columns sorted
    stats: bool
    aggregation: str = AGGREGATIONS[0]

    @property
    def by_clients(self) -> bool:
        return self.aggregation == "clients"


def kind_of(text: str) -> str:
    if text not in KINDS:
        raise not_found(f"Unknown aggregate kind {text!r}: build_id or submission_date.")
    return text


def channel_of(text: str) -> str:
    if not CHANNEL.fullmatch(text):
        raise not_found("A channel is a lower-case word.")
    return text


def _one(key: str, values: list[str]) -> str:
    """The value of a single-valued parameter (repeating the same value is harmless)."""
    if len(set(values)) != 1:
        raise not_found(f"{key} takes one value.")
    return values[0]


def version_of(values: list[str]) -> int:
    if not VERSION.fullmatch(_one("version", values)):
        raise not_found("A version is a number.")
    return int(values[0])


def _date(text: str) -> date:
    try:
        if not DATE.fullmatch(text):
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))  # strptime costs 20x more, per date
    except ValueError:
        raise not_found(f"{text[:20]!r} is not a date as YYYYMMDD.") from None


def yyyymmdd(day: date) -> str:
    """A date as the API writes it. `date.isoformat` is C code; `strftime` cost a tenth of the dates route's CPU."""
    return day.isoformat().replace("-", "")


def _dates(values: list[str]) -> tuple[date, ...]:
    texts = [t for value in values for t in value.split(",")]
    if len(texts) > MAX_DATES:
        raise not_found(f"At most {MAX_DATES} dates in one request.")
    return tuple(dict.fromkeys(_date(t) for t in texts))


def _values(key: str, values: list[str]) -> tuple[str, ...]:
    for value in values:
        if len(value) > MAX_VALUE or "\0" in value:
            raise not_found(f"Invalid {key} value.")
    return tuple(sorted(set(values)))


def _children(values: list[str]) -> tuple[str, ...] | None:
    if not values:
        return None
    if any(v not in CHILD for v in values):
        raise not_found("child is one of parent, content, gpu, true, false.")
    return tuple(sorted({CHILD[v] for v in values}))


def _stats(values: list[str]) -> bool:
    if not values:
        return False
    if _one("stats", values) not in ("true", "false"):
        raise not_found("stats is true or false.")
    return values[0] == "true"


def _aggregation(values: list[str]) -> str:
    if not values:
        return AGGREGATIONS[0]
    if _one("aggregation", values) not in AGGREGATIONS:
        raise not_found("aggregation is pings or clients.")
    return values[0]


def reject_unknown(query: MultiMapping[str], allowed: tuple[str, ...], path: str) -> None:
    """405 for a parameter the route does not take, whose `Allow` header is the URL without it (the original's
    hint), rather than silently answering something else than was asked."""
    unknown = [key for key in query if key not in allowed]
    if unknown:
        valid = urlencode([(k, v) for k, v in query.items() if k in allowed])
        failure = error(
            web.HTTPMethodNotAllowed,
            "unknown_parameter",
            f"Unknown parameter {unknown[0][:40]!r}; allowed: {', '.join(allowed)}.",
            method="GET",
            allowed_methods=(),
        )
        failure.headers["Allow"] = f"{path}?{valid}"
        raise failure


def filters_query(query: MultiMapping[str], path: str) -> tuple[str, int]:
    """The channel and version of a /filters/ request."""
    reject_unknown(query, FILTERS_ALLOWED, path)
    if not (query.get("channel") and query.get("version")):
        raise not_found("channel and version are required.")
    return channel_of(_one("channel", query.getall("channel"))), version_of(query.getall("version"))


def metric_query(kind: str, channel: str, query: MultiMapping[str], path: str) -> MetricQuery:
    reject_unknown(query, ALLOWED, path)
    if not all(query.get(k, "").strip() for k in ("version", "dates", "metric")):
        raise not_found(MISSING)
    metrics = query.getall("metric")
    if len(set(metrics)) != 1 or not METRIC.fullmatch(metrics[0]):
        raise not_found("metric is one name of letters, digits and _-[].")
    labels = query.getall("label", [])
    filters = tuple(
        (column, _values(key, query.getall(key)))
        for key, column in sorted(FILTER_PARAMETERS.items(), key=lambda item: item[1])
        if key in query
    )
    dates = _dates(query.getall("dates"))
    return MetricQuery(
        kind=kind,
        channel=channel,
        version=version_of(query.getall("version")),
        metric=metrics[0],
        dates=dates,
        processes=_children(query.getall("child", [])),
        labels=_values("label", labels) if labels else None,
        filters=filters,
        stats=_stats(query.getall("stats", [])),
        aggregation=_aggregation(query.getall("aggregation", [])),
    )
