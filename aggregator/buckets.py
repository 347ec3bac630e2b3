"""Bucket lower bounds, computed exactly as Firefox (and moztelemetry v0.10.4) compute them.

Every function here is pure; the label lists are the fixed layouts of scalars, simple measurements and
count histograms.
"""

import math
from collections.abc import Sequence

import numpy as np


def linear_buckets(low: int, high: int, n: int) -> list[int]:
    """Lower bounds of a linear histogram: 0, low, ..., high."""
    bounds = [0] * n
    for i in range(1, n):
        bounds[i] = int((low * (n - 1 - i) + high * (i - 1)) / (n - 2) + 0.5)
    return bounds


def exponential_buckets(low: int, high: int, n: int) -> list[int]:
    """Lower bounds of an exponential histogram: 0, low, then geometric steps up to high."""
    bounds = [0] * n
    bounds[1] = current = low
    log_max = math.log(high)
    for i in range(2, n):
        log_current = math.log(current)
        log_next = log_current + (log_max - log_current) / (n - i)
        next_value = math.floor(math.exp(log_next) + 0.5)
        current = next_value if next_value > current else current + 1
        bounds[i] = current
    return bounds


SIMPLE_MEASURES_LABELS: list[int] = exponential_buckets(1, 30000, 50)
COUNT_HISTOGRAM_LABELS: list[int] = exponential_buckets(1, 10000, 100)
NUMERIC_SCALARS_LABELS: list[int] = COUNT_HISTOGRAM_LABELS


def scalar_buckets(labels: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Index of the largest label <= each non-negative value (values above the top label land in the top
    bucket). Float comparisons are exact here: labels are far below 2**53, and values beyond them land in the
    top bucket either way."""
    return np.searchsorted(labels, values, side="right") - 1
