"""The accumulator's bookkeeping: flushing often changes nothing, and its arrays stay proportional to its cells."""

import copy

import pytest

from aggregator import extract
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


@pytest.mark.parametrize("slice_size", [extract._INT_SLICE, 3], ids=["one slice", "slices of 3"])
def test_odd_bucket_keys_and_counts_in_one_flush_are_each_read_as_python_would(monkeypatch, slice_size):
    """A batch mixing clean histograms with odd keys and counts: each odd one is handled on its own, the clean
    ones are untouched, and keys first seen in a later batch are parsed too (values worked out by hand). Counts
    are converted in slices: with small ones, clean and odd slices alternate in the batch."""
    monkeypatch.setattr(extract, "_INT_SLICE", slice_size)
    odd = {"0": 1, "x": 5, "1": 2.5, "2": "3", "3": None, "4": -6, "5": True, " 6": 2, "06": 3, "7": 2**63}
    accumulator = Accumulator(Definitions(), Options())
    first = ping("20261030000000", "Linux", 4)
    first["payload"]["histograms"]["H"] = {"bucket_count": 9, "histogram_type": 1, "sum": 1, "range": [1, 8]}
    first["payload"]["histograms"]["H"]["values"] = {"1": 1, "8": 2}
    accumulator.add(first)
    accumulator.flush()
    second = copy.deepcopy(first)
    second["payload"]["histograms"]["H"]["values"] = odd
    accumulator.add(second)
    accumulator.add(copy.deepcopy(first))
    result = accumulator.finish(RunStats())
    (row,) = [r for r in range(len(result)) if result.metrics[result.row_metric[r]][0] == "H"]
    counts = result.histogram[result.row_offset[row] : result.row_offset[row + 1]].tolist()
    # bounds 0..8: "0" 1; "1" 1+1 (2.5 is not an int); "5" True is 1; " 6" and "06" are 6; "7" clamped; "8" 2+2
    assert counts == [1, 2, 0, 0, 0, 1, 5, 2**63 - 1, 4]
    assert accumulator.dropped["bad_bucket_value"] == 4  # 2.5, "3", None, -6
    assert accumulator.dropped["unknown_bucket"] + accumulator.dropped["bad_bucket_key"] == 1  # "x"
    assert accumulator.overflow == 1


def test_scalar_sums_of_ints_beside_floats_stay_exact():
    """Sums add int(value): floats by their integer part, ints exactly, also those beyond a float's 53 bits
    that share a batch with floats (values worked out by hand)."""
    accumulator = Accumulator(Definitions(), Options())
    for value in (2.7, 2**53 + 1, 0.5, 2**62 + 3):
        sample = ping("20261030000000", "Linux", 1)
        sample["payload"]["processes"]["parent"]["scalars"] = {"a.f": value}
        accumulator.add(sample)
    result = accumulator.finish(RunStats())
    (row,) = [r for r in range(len(result)) if result.metrics[result.row_metric[r]][0] == "SCALARS_A.F"]
    assert (int(result.sums[row]), int(result.counts[row])) == (2 + 2**53 + 1 + 0 + 2**62 + 3, 4)
