"""Bucket lower bounds against the known values of the spec (section 1.8 and 3.6).

Both the job's `aggregator.buckets` and the reference's own implementation (`tests/reference.py`) are checked
against the same literal values, so neither is tested against the other.
"""

from types import ModuleType

import numpy as np
import pytest

from aggregator import buckets as job_buckets

try:
    import reference as reference_buckets
except ModuleNotFoundError:  # when tests/ is a package
    from tests import reference as reference_buckets

IMPLEMENTATIONS = [
    pytest.param(job_buckets, id="aggregator.buckets"),
    pytest.param(reference_buckets, id="tests.reference"),
]

EVENTLOOP_UI_LAG_EXP_MS = [
    0, 50, 74, 110, 163, 242, 359, 532, 789, 1170, 1735, 2572, 3813, 5653, 8380, 12423, 18417, 27302, 40474,
    60000,
]  # fmt: skip
SIMPLE_MEASURES = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 16, 20, 24, 29, 35, 43, 52, 63, 77, 94, 115, 140, 171, 209, 255, 311,
    379, 462, 564, 688, 839, 1023, 1248, 1522, 1857, 2265, 2763, 3370, 4111, 5015, 6118, 7463, 9104, 11106,
    13548, 16527, 20161, 24593, 30000,
]  # fmt: skip
# The original's hard-coded `count_histogram_labels` (mozaggregator/aggregator.py).
COUNT_HISTOGRAM = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 23, 25, 27, 29, 31, 34, 37, 40,
    43, 46, 50, 54, 58, 63, 68, 74, 80, 86, 93, 101, 109, 118, 128, 138, 149, 161, 174, 188, 203, 219, 237,
    256, 277, 299, 323, 349, 377, 408, 441, 477, 516, 558, 603, 652, 705, 762, 824, 891, 963, 1041, 1125,
    1216, 1315, 1422, 1537, 1662, 1797, 1943, 2101, 2271, 2455, 2654, 2869, 3102, 3354, 3626, 3920, 4238,
    4582, 4954, 5356, 5791, 6261, 6769, 7318, 7912, 8554, 9249, 10000,
]  # fmt: skip


def test_known_lists_are_what_the_spec_says() -> None:
    assert len(SIMPLE_MEASURES) == 50
    assert len(COUNT_HISTOGRAM) == 100
    assert COUNT_HISTOGRAM[:23] == [*range(20), 21, 23, 25]
    assert COUNT_HISTOGRAM[-2:] == [9249, 10000]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_buckets(impl: ModuleType) -> None:
    assert list(impl.linear_buckets(1, 2, 3)) == [0, 1, 2]
    gc_max_pause_ms_2 = list(impl.linear_buckets(1, 1000, 50))
    assert gc_max_pause_ms_2[:5] == [0, 1, 22, 43, 63]
    assert len(gc_max_pause_ms_2) == 50
    assert gc_max_pause_ms_2[-1] == 1000
    # enumerated (1, n_values, n_values + 1) gives 0 .. n_values
    assert list(impl.linear_buckets(1, 10, 11)) == list(range(11))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_exponential_buckets(impl: ModuleType) -> None:
    assert list(impl.exponential_buckets(50, 60000, 20)) == EVENTLOOP_UI_LAG_EXP_MS
    assert list(impl.exponential_buckets(1, 30000, 50)) == SIMPLE_MEASURES
    assert list(impl.exponential_buckets(1, 10000, 100)) == COUNT_HISTOGRAM


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_label_lists(impl: ModuleType) -> None:
    assert list(impl.SIMPLE_MEASURES_LABELS) == SIMPLE_MEASURES
    assert list(impl.COUNT_HISTOGRAM_LABELS) == COUNT_HISTOGRAM
    assert list(impl.NUMERIC_SCALARS_LABELS) == COUNT_HISTOGRAM


def _job_label(labels: list[int], value: float) -> int:
    """`aggregator.buckets.scalar_buckets` returns indices into the labels, for an array of values."""
    return labels[int(job_buckets.scalar_buckets(labels, np.array([value], dtype=np.float64))[0])]


@pytest.mark.parametrize(
    ("labels", "value", "expected"),
    [
        (COUNT_HISTOGRAM, 42, 40),
        (SIMPLE_MEASURES, 42, 35),
        (COUNT_HISTOGRAM, 0, 0),
        (SIMPLE_MEASURES, 0, 0),
        (COUNT_HISTOGRAM, 10**30, 10000),
        (SIMPLE_MEASURES, 2**63, 30000),
        (COUNT_HISTOGRAM, 10000, 10000),
        (COUNT_HISTOGRAM, 9999, 9249),
        (COUNT_HISTOGRAM, 20, 19),
        (COUNT_HISTOGRAM, 21, 21),
        (COUNT_HISTOGRAM, 1.5, 1),
        (COUNT_HISTOGRAM, 0.5, 0),
        (SIMPLE_MEASURES, 1e300, 30000),
        (COUNT_HISTOGRAM, True, 1),
    ],
)
def test_scalar_bucket(labels: list[int], value: float, expected: int) -> None:
    assert _job_label(labels, value) == expected
    assert reference_buckets.scalar_bucket(labels, value) == expected


def test_job_scalar_bucket_uses_its_own_label_lists() -> None:
    count = list(job_buckets.COUNT_HISTOGRAM_LABELS)
    simple = list(job_buckets.SIMPLE_MEASURES_LABELS)
    assert _job_label(count, 42) == 40
    assert _job_label(simple, 42) == 35
