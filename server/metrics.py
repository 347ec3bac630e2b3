"""Prometheus metrics of one app: latency by route, database pool use, response cache hits, DB errors, and the
standard process_*, python_info and python_gc_* series that every Python exporter gives.

Each app has its own registry, so several apps (tests) never share counters.
"""

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A method label is one of these or "other": aiohttp accepts any token as a method, and a label per made-up method
# would grow the series (and the memory) without bound.
METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Gauges(Collector):
    """Values read when scraped (pool and cache sizes), from callables the app sets up."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, read) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=read())


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # What the default registry would have given: memory, CPU, open files, the interpreter, its collector.
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        self.latency = Histogram(
            "api_request_duration_seconds",
            "Time to answer a request, by route and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "api_cache_lookups", "Response cache lookups, by result.", ["result"], registry=self.registry
        )
        self.db_errors = Counter(
            "api_database_errors",
            "Requests answered 503 because of the database, by cause.",
            ["cause"],
            registry=self.registry,
        )
        self.shed = Counter(
            "api_shed",
            "Connections closed at once (API_MAX_CONNECTIONS) and requests answered 503 (API_MAX_IN_FLIGHT).",
            ["limit"],
            registry=self.registry,
        )
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.registry.register(_Gauges(self.gauges))
        self._latencies: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request's latency. The series of each (route, method, status) is looked up once: `labels()`
        validates and locks on every call, a few percent of a small answer's CPU."""
        key = (route, method, status)
        series = self._latencies.get(key)
        if series is None:
            label = method if method in METHODS else "other"
            series = self.latency.labels(route, label, str(status))
            if label == method:  # the others share one series, and take no room here either
                self._latencies[key] = series
        series.observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
