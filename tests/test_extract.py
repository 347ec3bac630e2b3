"""The accumulator's bookkeeping: flushing often changes nothing, and its arrays stay proportional to its cells."""

import copy
from dataclasses import replace

import pytest

from aggregator import extract
from aggregator.aggregate import rebuild
from aggregator.bounds import Limits
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


# ---- bounds on what one ping may hold (aggregator/bounds.py) ---------------------------------------------


def cells_of(result) -> dict[tuple[str, str], list[int]]:
    """{(metric name, label): bucket counts} of an aggregate with one dimension set."""
    return {
        result.metrics[m][:2]: result.histogram[result.row_offset[r] : result.row_offset[r + 1]].tolist()
        for r, m in enumerate(result.row_metric.tolist())
    }


def bounds(**changes) -> Limits:
    """The default limits, but for `changes`."""
    return replace(Limits.from_settings(), **changes)


def linear(values: dict, n: int = 3, high: int = 2) -> dict:
    return {"bucket_count": n, "histogram_type": 1, "sum": 1, "range": [1, high], "values": values}


def test_names_labels_and_dimension_values_past_their_lengths_are_dropped_and_counted():
    limits = bounds(name_length=11, value_bytes=8)  # SCALARS_A.B has 11 characters
    accumulator = Accumulator(Definitions(), Options(limits=limits))
    sample = ping("20261030000000", "Linux", 1)
    sample["payload"]["histograms"] = {"H" * 11: linear({"1": 1}), "H" * 12: linear({"1": 1})}
    # labels of 8 bytes are kept: "é" is 2 bytes in UTF-8, so "ééééx" (5 characters, 9 bytes) is not
    sample["payload"]["keyedHistograms"] = {"K": {"k" * 8: linear({"1": 1}), "ééééx": linear({"1": 1})}}
    assert type(accumulator.add(sample)) is tuple
    long_os = ping("20261030000000", "Linux", 1)
    long_os["environment"]["system"]["os"]["name"] = "ééééx"
    assert accumulator.add(long_os) == "long_dimension"
    long_version = ping("20261030000000", "Linux", 1)
    long_version["application"]["version"] = "1" * 10
    assert accumulator.add(long_version) == "long_dimension"
    result = accumulator.finish(RunStats())
    names = {key for key in cells_of(result) if key[0] != "SCALARS_A.B"}
    assert names == {("H" * 11, ""), ("K", "k" * 8)}
    assert (accumulator.dropped["long_name"], accumulator.dropped["long_label"]) == (1, 1)


def test_labels_past_the_limit_and_wide_declared_layouts_are_dropped_and_counted():
    accumulator = Accumulator(Definitions(), Options(limits=bounds(labels=3, layout_buckets=5)))
    sample = ping("20261030000000", "Linux", 1)
    sample["payload"]["keyedHistograms"] = {
        "K": {f"l{i}": linear({"1": i}) for i in range(5)},  # the first 3 labels kept, in the ping's order
        "W": {"a": linear({"1": 1}, n=5, high=4), "b": linear({"1": 1}, n=6, high=5)},  # 6 buckets: too wide
    }
    sample["payload"]["processes"]["parent"]["keyedScalars"] = {"k.s": {f"s{i}": 1 for i in range(4)}}
    accumulator.add(sample)
    result = accumulator.finish(RunStats())
    assert sorted(key for key in cells_of(result) if key[0] in ("K", "W", "SCALARS_K.S")) == [
        ("K", "l0"),
        ("K", "l1"),
        ("K", "l2"),
        ("SCALARS_K.S", "S0"),
        ("SCALARS_K.S", "S1"),
        ("SCALARS_K.S", "S2"),
        ("W", "a"),
    ]
    assert accumulator.dropped["too_many_labels"] == 2 + 1
    assert accumulator.dropped["layout_too_wide"] == 1


def test_a_ping_spanning_too_many_buckets_is_skipped_whole():
    """Buckets a ping spans: its histograms' layouts, 3 each here, and 100 for each scalar (the scalar layout)."""
    accumulator = Accumulator(Definitions(), Options(limits=bounds(ping_buckets=3 * 4 + 100)))
    fits = ping("20261030000000", "Linux", 1)  # H and scalar a.b: 103 buckets
    fits["payload"]["histograms"] |= {f"X{i}": linear({"1": 1}) for i in range(3)}  # 112
    wide = copy.deepcopy(fits)
    wide["payload"]["histograms"]["X3"] = linear({"1": 1})  # 115
    assert type(accumulator.add(fits)) is tuple
    assert accumulator.add(wide) == "too_many_buckets"
    assert type(accumulator.add(copy.deepcopy(fits))) is tuple
    result = accumulator.finish(RunStats())
    cells = cells_of(result)
    assert set(cells) == {("H", ""), ("SCALARS_A.B", ""), ("X0", ""), ("X1", ""), ("X2", "")}
    assert cells[("H", "")] == [0, 2, 0] and int(result.counts.sum()) == 2 * 5  # nothing of the skipped ping


def test_a_partition_keeps_the_first_undefined_names_up_to_the_limit():
    """Names without a definition: histograms laid out by the ping, scalars missing from Scalars.yaml; the first
    ones seen are kept, each later sample of another is counted."""
    definitions = Definitions(histograms={"D": {"kind": "linear", "low": 1, "high": 2, "n_buckets": 3}})
    accumulator = Accumulator(definitions, Options(limits=bounds(undefined_metrics=2)))
    sample = ping("20261030000000", "Linux", 1)  # H (undefined) and SCALARS_A.B (undefined): the limit
    sample["payload"]["histograms"] |= {"D": linear({"1": 1}), "U": linear({"1": 1})}
    accumulator.add(sample)
    accumulator.add(copy.deepcopy(sample))
    result = accumulator.finish(RunStats())
    assert set(cells_of(result)) == {("H", ""), ("SCALARS_A.B", ""), ("D", "")}
    assert accumulator.dropped["undefined_limit"] == 2
    assert result.undefined == {"H", "SCALARS_A.B"}


def test_a_value_clamped_while_summing_is_counted():
    accumulator = Accumulator(Definitions(), Options())
    sample = ping("20261030000000", "Linux", 1)
    sample["payload"]["processes"]["parent"]["scalars"] = {"a.huge": 2**64}
    accumulator.add(sample)
    result = accumulator.finish(RunStats())
    assert result.stats.overflow == 1
