"""The accumulator's compiled passes over bucket entries (aggregator/_buckets.c), against plain Python."""

import importlib.machinery
import random

import numpy as np
import pytest

from aggregator import _buckets
from aggregator.aggregate import factorized, row_values, saturating_add_at, unique_inverse


def test_the_installed_package_uses_the_compiled_passes():
    assert _buckets.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def random_layouts(rng: random.Random) -> list[list[int]]:
    """Non-decreasing lower bounds, some repeated (as a defined linear layout's may be)."""
    layouts = []
    for _ in range(6):
        bounds = sorted(rng.choice([0, 1, 2, 3, 5, 8, 8, 13, 100, 2**40]) for _ in range(rng.randint(1, 9)))
        layouts.append(bounds)
    return layouts


@pytest.mark.parametrize("seed", range(20))
def test_columns_are_each_keys_first_place_among_its_layouts_bounds(seed: int):
    rng = random.Random(seed)
    layouts = random_layouts(rng)
    entries = []
    for _ in range(rng.randint(0, 40)):  # histograms: increasing keys, most of them bounds
        layout = rng.randrange(len(layouts))
        keys = sorted({rng.choice([*layouts[layout], -1, 4, 7, 2**41, -(2**63)]) for _ in range(rng.randint(1, 5))})
        entries += [(layout, key) for key in (keys if rng.random() < 0.8 else keys[::-1])]
    expected = [layouts[layout].index(key) if key in layouts[layout] else -1 for layout, key in entries]
    starts = np.cumsum([0, *map(len, layouts)])
    bounds = np.array([b for layout in layouts for b in layout], dtype=np.int64)
    layout_of, keys = np.array(entries, dtype=np.int64).reshape(-1, 2).T.copy()
    out = np.full(len(entries), 99, dtype=np.int64)
    _buckets.columns(layout_of, keys, bounds, starts, out)
    assert out.tolist() == expected


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_add_at_adds_repeated_positions_up(index):
    rng = np.random.default_rng(3)
    positions = rng.integers(0, 50, 1000).astype(index)
    values = rng.integers(0, 10**12, 1000)
    target = rng.integers(0, 10**12, 50)
    expected = target.tolist()
    for position, value in zip(positions.tolist(), values.tolist(), strict=True):
        expected[position] += value
    _buckets.add_at(target, positions, values)
    assert target.tolist() == expected


def test_add_at_refuses_a_sum_past_the_maximum_and_leaves_the_target_as_it_was():
    target = np.array([2**63 - 10, 5], dtype=np.int64)
    assert not _buckets.add_at(target, np.array([1, 0, 0]), np.array([1, 6, 6]))
    assert target.tolist() == [2**63 - 10, 5]
    assert _buckets.add_at(target, np.array([1, 0]), np.array([1, 9]))
    assert target.tolist() == [2**63 - 1, 6]


def test_the_table_finds_what_was_put_and_nothing_else():
    rng = np.random.default_rng(5)
    keys, values = np.full(1024, -1, dtype=np.int64), np.zeros(1024, dtype=np.int64)
    table: dict[int, int] = {}
    for _ in range(5):  # keys in batches, as rows are created
        new = np.setdiff1d(rng.integers(0, 2**40, 80), list(table))
        new_values = rng.integers(0, 10**6, len(new))
        _buckets.put(keys, values, new, new_values)
        table.update(zip(new.tolist(), new_values.tolist(), strict=True))
        wanted = np.concatenate([new, rng.integers(0, 2**40, 50), np.array(list(table), dtype=np.int64)])
        out = np.empty(len(wanted), dtype=np.int64)
        missing = _buckets.found(keys, values, wanted, out)
        assert out.tolist() == [table.get(k, -1) for k in wanted.tolist()]
        assert missing == sum(k not in table for k in wanted.tolist())


def test_the_table_keeps_an_empty_slot():
    keys, values = np.full(4, -1, dtype=np.int64), np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError):
        _buckets.put(keys, values, np.arange(4), np.arange(4))
    with pytest.raises(ValueError):
        _buckets.found(np.full(3, -1, dtype=np.int64), np.zeros(3, dtype=np.int64), np.arange(1), np.arange(1))


def test_saturating_add_at_clamps_through_the_slow_path():
    target = np.array([2**63 - 10, 5], dtype=np.int64)
    assert saturating_add_at(target, np.array([0, 0, 1]), np.array([6, 6, 1])) == 1
    assert target.tolist() == [2**63 - 1, 6]


@pytest.mark.parametrize(
    "call",
    [
        lambda: _buckets.add_at(np.zeros(3, dtype=np.int64), np.array([3]), np.array([1])),  # past the end
        lambda: _buckets.add_at(np.zeros(3, dtype=np.int64), np.array([-1]), np.array([1])),
        lambda: _buckets.add_at(np.zeros(3, dtype=np.int64), np.array([0, 1]), np.array([1])),  # lengths differ
        lambda: _buckets.columns(
            *(np.zeros(1, dtype=np.int64),) * 2, np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
        ),  # a layout the table has not
    ],
)
def test_bad_arguments_raise_and_write_nothing(call):
    with pytest.raises((IndexError, ValueError)):
        call()


@pytest.mark.parametrize(
    "arrays",
    [
        (np.zeros(3), np.array([0]), np.array([1])),  # a float target
        (np.zeros(3, dtype=np.int64)[::2], np.array([0]), np.array([1])),  # not contiguous
        (np.zeros(3, dtype=np.int64), np.array([0], dtype=np.int16), np.array([1])),
        (np.zeros(3, dtype=np.int64), np.array([0]), np.array([1], dtype=np.int32)),  # values must be int64
        (np.zeros(3, dtype=np.int64).tobytes(), np.array([0]), np.array([1])),  # read-only
    ],
)
def test_arrays_of_other_types_are_refused(arrays):
    with pytest.raises((TypeError, BufferError, ValueError)):
        _buckets.add_at(*arrays)


@pytest.mark.parametrize("size", [0, 1, 5000])
def test_factorize_numbers_keys_in_the_order_they_first_come(size: int):
    keys = np.random.default_rng(size).integers(-(2**63), 2**63 - 1, size) // np.int64(2**50)  # many repeats
    distinct, index = factorized(keys)
    firsts = list(dict.fromkeys(keys.tolist()))
    assert distinct.tolist() == firsts
    assert index.tolist() == [firsts.index(k) for k in keys.tolist()]
    unique, inverse = unique_inverse(keys)
    expected, expected_inverse = np.unique(keys, return_inverse=True)
    assert unique.tolist() == expected.tolist() and inverse.tolist() == expected_inverse.tolist()


def random_rows(rng: np.random.Generator, values: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of rows within `values` values (rows may overlap and repeat)."""
    sizes = rng.integers(0, 6, rows)
    return rng.integers(0, values - sizes + 1), sizes


def test_row_values_lays_rows_end_to_end():
    rng = np.random.default_rng(7)
    for values in (rng.integers(0, 10**9, 100), rng.random(100)):
        starts, sizes = random_rows(rng, len(values), 30)
        expected = [v for s, n in zip(starts.tolist(), sizes.tolist(), strict=True) for v in values[s : s + n].tolist()]
        assert row_values(values, starts, sizes).tolist() == expected
    with pytest.raises(TypeError):
        row_values(np.zeros(4, dtype=np.int32), np.array([0]), np.array([2]))
    with pytest.raises(IndexError):
        row_values(np.zeros(4, dtype=np.int64), np.array([3]), np.array([2]))


def test_add_rows_adds_whole_rows_or_nothing():
    rng = np.random.default_rng(8)
    source, target = rng.integers(0, 10**12, 200), rng.integers(0, 10**12, 50)
    starts, sizes = random_rows(rng, len(source), 40)
    to = rng.integers(0, len(target) - sizes + 1)
    expected = target.tolist()
    for t, s, n in zip(to.tolist(), starts.tolist(), sizes.tolist(), strict=True):
        for j in range(n):
            expected[t + j] += int(source[s + j])
    assert _buckets.add_rows(target, to, source, starts, sizes)
    assert target.tolist() == expected
    source[starts[np.flatnonzero(sizes)[-1]]] = 2**63 - 1  # the last row's first sum past the maximum: nothing added
    assert not _buckets.add_rows(target, to, source, starts, sizes)
    assert target.tolist() == expected


def test_add_entries_adds_sparse_entries_into_their_rows_or_nothing():
    rng = np.random.default_rng(9)
    row_offset = np.cumsum([0, *rng.integers(1, 6, 20)])
    target = rng.integers(0, 10**12, int(row_offset[-1]))
    row = np.where(rng.random(30) < 0.2, -1, rng.integers(0, 20, 30))  # sparse rows: some not in the target
    entry_row = rng.integers(0, 30, 200).astype(np.int32)
    width = np.diff(row_offset)[np.maximum(row, 0)][entry_row]
    entry_column = (rng.integers(0, 1000, 200) % width).astype(np.int32)
    values = rng.integers(0, 10**12, 200)
    expected = target.tolist()
    for r, c, v in zip(entry_row.tolist(), entry_column.tolist(), values.tolist(), strict=True):
        if row[r] >= 0:
            expected[row_offset[row[r]] + c] += v
    assert _buckets.add_entries(target, row_offset, row, entry_row, entry_column, values)
    assert target.tolist() == expected
    values[np.flatnonzero(row[entry_row] >= 0)[-1]] = 2**63 - 1
    assert not _buckets.add_entries(target, row_offset, row, entry_row, entry_column, values)
    assert target.tolist() == expected
    with pytest.raises(TypeError):  # entries' rows and columns are int32
        _buckets.add_entries(target, row_offset, row, entry_row.astype(np.int64), entry_column, values)
