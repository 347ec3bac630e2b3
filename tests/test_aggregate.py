"""Merging aggregates: exact sums, saturation instead of wrap-around, results independent of partitioning."""

import random

import numpy as np

from aggregator.aggregate import (
    BUILD_ID_COLUMNS,
    INT64_MAX,
    SUBMISSION_DATE_COLUMNS,
    Aggregate,
    by_submission_date,
    merge,
    one_day,
    rebuild,
    saturating_add_at,
    split,
)
from aggregator.layouts import Layout
from aggregator.stats import FileStats, RunStats

SMALL = Layout("linear", (0, 1, 2))
WIDE = Layout("exponential", (0, 1, 5, 25))


def make(cells: list[tuple[tuple[str, ...], tuple[str, str, str, Layout], list[int], int, int]]) -> Aggregate:
    """An aggregate from plain cells, built by hand (no merging involved)."""
    dims = sorted({c[0] for c in cells})
    metrics = sorted({c[1] for c in cells}, key=lambda m: (m[0], m[1], m[2], m[3].kind, m[3].bounds))
    offsets = np.cumsum([0] + [len(c[2]) for c in cells])
    return Aggregate(
        BUILD_ID_COLUMNS,
        dims,
        metrics,
        np.array([dims.index(c[0]) for c in cells], dtype=np.int32),
        np.array([metrics.index(c[1]) for c in cells], dtype=np.int32),
        offsets.astype(np.int64),
        np.array([c[3] for c in cells], dtype=np.int64),
        np.array([c[4] for c in cells], dtype=np.int64),
        np.array([v for c in cells for v in c[2]], dtype=np.int64),
    )


def as_dict(aggregate: Aggregate) -> dict:
    return {(d, m, label, p, layout): (counts, s, n) for d, m, label, p, layout, counts, s, n in aggregate.cells()}


def dims(date: str, build: str, os_name: str = "Linux") -> tuple[str, ...]:
    return (date, "nightly", "140", build, "Firefox", "x86-64", os_name, "6.1")


def test_saturating_add_at_sums_repeated_positions():
    target = np.zeros(4, dtype=np.int64)
    assert saturating_add_at(target, np.array([1, 1, 3, 1]), np.array([2, 3, 4, 5])) == 0
    assert target.tolist() == [0, 10, 0, 4]


def test_saturating_add_at_clamps_instead_of_wrapping():
    target = np.array([INT64_MAX - 5, 7], dtype=np.int64)
    clamped = saturating_add_at(target, np.array([0, 0, 1]), np.array([3, 3, 2**62], dtype=np.int64))
    assert clamped == 1
    assert target.tolist() == [INT64_MAX, 7 + 2**62]


def test_merge_adds_buckets_sums_and_counts_cell_by_cell():
    a = make([(dims("20261101", "20261030"), ("GC_MS", "", "parent", WIDE), [1, 2, 0, 0], 10, 3)])
    b = make(
        [
            (dims("20261101", "20261030"), ("GC_MS", "", "parent", WIDE), [0, 5, 1, 1], 40, 2),
            (dims("20261101", "20261030"), ("GC_MS", "", "content", WIDE), [1, 0, 0, 0], 0, 1),
        ]
    )
    merged = as_dict(merge([a, b]))
    assert merged[(dims("20261101", "20261030"), "GC_MS", "", "parent", WIDE)] == ([1, 7, 1, 1], 50, 5)
    assert merged[(dims("20261101", "20261030"), "GC_MS", "", "content", WIDE)] == ([1, 0, 0, 0], 0, 1)
    assert len(merged) == 2


def test_merge_saturates_overflowing_counts_and_counts_them():
    cell = (dims("20261101", "20261030"), ("X", "", "parent", SMALL), [INT64_MAX - 1, 1, 0], INT64_MAX, 1)
    merged = merge([make([cell]), make([cell])])
    ((counts, total, count),) = as_dict(merged).values()
    assert counts == [INT64_MAX, 2, 0]
    assert total == INT64_MAX
    assert count == 2
    assert merged.stats.overflow == 2


def test_result_does_not_depend_on_partitioning():
    rng = random.Random(7)
    cells = []
    for _ in range(300):
        d = dims(rng.choice(["20261101", "20261102"]), rng.choice(["20261030", "20261031"]), rng.choice("AB"))
        layout = rng.choice([SMALL, WIDE])
        metric = (
            rng.choice(["M1", "M2", "M3"]),
            rng.choice(["", "k"]),
            rng.choice(["parent", "gpu"]),
            layout,
        )
        counts = [rng.randrange(5) for _ in layout.bounds]
        cells.append((d, metric, counts, rng.randrange(100), rng.randrange(1, 4)))
    expected: dict = {}
    for d, (name, label, process, layout), counts, total, count in cells:
        key = (d, name, label, process, layout)
        old = expected.get(key, ([0] * len(counts), 0, 0))
        expected[key] = ([x + y for x, y in zip(old[0], counts, strict=True)], old[1] + total, old[2] + count)

    singles = [make([c]) for c in cells]
    one_by_one = merge(singles)
    tree = merge([merge(singles[i : i + 7]) for i in range(0, len(singles), 7)])
    assert as_dict(one_by_one) == expected
    assert as_dict(tree) == expected
    assert one_by_one.dimensions == tree.dimensions
    assert np.array_equal(one_by_one.histogram, tree.histogram)


def test_submission_date_aggregate_sums_over_build_ids():
    metric = ("GC_MS", "", "parent", WIDE)
    agg = make(
        [
            (dims("20261101", "20261030"), metric, [1, 0, 0, 0], 1, 1),
            (dims("20261101", "20261031"), metric, [0, 2, 0, 0], 9, 2),
            (dims("20261102", "20261031"), metric, [0, 0, 3, 0], 90, 3),
        ]
    )
    by_date = as_dict(by_submission_date(agg))
    day1 = ("20261101", "nightly", "140", "Firefox", "x86-64", "Linux", "6.1")
    day2 = ("20261102", *day1[1:])
    assert by_date == {
        (day1, "GC_MS", "", "parent", WIDE): ([1, 2, 0, 0], 10, 3),
        (day2, "GC_MS", "", "parent", WIDE): ([0, 0, 3, 0], 90, 3),
    }
    assert by_submission_date(agg).columns == SUBMISSION_DATE_COLUMNS


def test_one_day_keeps_only_that_date_and_its_metrics():
    agg = make(
        [
            (dims("20261101", "20261030"), ("A", "", "parent", SMALL), [1, 0, 0], 0, 1),
            (dims("20261102", "20261030"), ("B", "", "parent", WIDE), [0, 1, 0, 0], 1, 1),
        ]
    )
    day = one_day([agg], "20261102")
    assert [m[0] for m in day.metrics] == ["B"]
    assert as_dict(day) == {(dims("20261102", "20261030"), "B", "", "parent", WIDE): ([0, 1, 0, 0], 1, 1)}


def test_empty_selection_gives_an_empty_aggregate():
    agg = make([(dims("20261101", "20261030"), ("A", "", "parent", SMALL), [1, 0, 0], 0, 1)])
    empty = rebuild([agg], keep=lambda d: False)
    assert len(empty) == 0
    assert empty.histogram.size == 0


def test_split_deals_every_cell_to_exactly_one_shard_and_keeps_submission_date_sets_whole():
    rng = random.Random(11)
    cells = {}
    for _ in range(200):
        d = dims(rng.choice(["20261101", "20261102"]), rng.choice(["20261030", "20261031"]), rng.choice("ABCDEFG"))
        metric = (rng.choice(["M1", "M2"]), "", "parent", SMALL)
        cells[d, metric] = ([rng.randrange(5) for _ in SMALL.bounds], rng.randrange(100), rng.randrange(1, 4))
    whole = make([(d, m, *v) for (d, m), v in cells.items()])
    whole.stats = RunStats(files={"a": FileStats("a", pings=3)})
    shards = split(whole, 4)
    assert len(shards) == 4
    seen: dict = {}
    owner: dict = {}
    for s, shard in enumerate(shards):
        for d, name, _, _, _, counts, total, count in shard.cells():
            assert (d, name) not in seen  # disjoint
            seen[d, name] = (counts, total, count)
            without_build = d[:3] + d[4:]
            assert owner.setdefault(without_build, s) == s  # a submission-date dimension set lives in one shard
    assert seen == {(d, m[0]): v for (d, m), v in cells.items()}
    assert sum(len(s.stats.files) for s in shards) == 1 and shards[0].stats.total("pings") == 3
    assert sum(1 for s in shards if len(s)) > 1  # the hash spreads 14 submission-date dimension sets
