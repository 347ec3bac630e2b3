"""/metrics has the standard process_* and python_* series a Prometheus user expects of any Python exporter, with
the values of the process that serves them: here the test's own, as the app runs in it."""

import os
import platform
import resource
import time

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.store import schema
from server.app import create_app
from tests.conftest import settings_for

pytestmark = pytest.mark.asyncio


def resident_bytes() -> int:
    """The resident set size as the kernel counts it: /proc/self/statm's second field, in pages."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def test_metrics_serve_the_process_series_of_the_serving_process(aiohttp_client, empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    await schema.migrate(conn)
    await conn.close()
    client = await aiohttp_client(create_app(settings_for(empty_database_url)))
    cpu_before, rss_before = cpu_seconds(), resident_bytes()
    text = await (await client.get("/metrics")).text()
    cpu_after, rss_after = cpu_seconds(), resident_bytes()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    resident = value("process_resident_memory_bytes")
    assert 0.9 * min(rss_before, rss_after) <= resident <= 1.1 * max(rss_before, rss_after)
    assert value("process_virtual_memory_bytes") >= resident
    tick = 1 / os.sysconf("SC_CLK_TCK")  # both read /proc/self/stat's utime and stime, counted in ticks
    assert cpu_before - tick <= value("process_cpu_seconds_total") <= cpu_after + tick
    assert 0 < value("process_open_fds") <= value("process_max_fds") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert time.time() - 24 * 3600 < value("process_start_time_seconds") < time.time()
    info = value(
        "python_info",
        implementation=platform.python_implementation(),
        major=str(platform.python_version_tuple()[0]),
        minor=str(platform.python_version_tuple()[1]),
        patchlevel=str(platform.python_version_tuple()[2]),
        version=platform.python_version(),
    )
    assert info == 1
    assert value("python_gc_collections_total", generation="0") > 0
