"""The accumulator's bookkeeping: flushing often changes nothing, and its arrays stay proportional to its cells."""

import copy

from aggregator.aggregate import rebuild
from aggregator.extract import Accumulator, Options
from aggregator.layouts import Definitions
from aggregator.stats import RunStats
from tests.test_aggregate import as_dict


def ping(build: str, os_name: str, value: int) -> dict:
    return {
        "meta": {"submissionDate": "20261101", "sampleId": 1},
        "application": {
            "channel": "nightly",
            "version": "146.0a1",
            "buildId": build,
            "name": "Firefox",
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": os_name, "version": "10.0"}}},
        "payload": {
            "histograms": {
                "H": {"bucket_count": 3, "histogram_type": 1, "sum": value, "range": [1, 2], "values": {"1": value}}
            },
            "processes": {"parent": {"scalars": {"a.b": value}}},
        },
    }


def test_flushing_often_gives_the_same_cells_and_bounded_arrays():
    pings = [ping(f"2026103{i % 7}000000", ["Linux", "Darwin", "Windows_NT"][i % 3], i) for i in range(300)]
    once, often = Accumulator(Definitions(), Options()), Accumulator(Definitions(), Options())
    for i, p in enumerate(pings):
        once.add(copy.deepcopy(p))
        often.add(copy.deepcopy(p))
        if i % 7 == 0:
            often.flush()
    a, b = once.finish(RunStats()), often.finish(RunStats())
    assert as_dict(rebuild([a])) == as_dict(rebuild([b]))
    cells = 7 * 3 * 2  # build ids x operating systems x metrics
    assert len(b) == cells
    assert len(often.histogram) <= 2 * int(often.row_offset[-1])
    assert len(often.sums) <= 2 * cells
