"""A defined linear histogram with more buckets than its range has values repeats bucket lower bounds. The
original served it with the definition's buckets, repeats included, and each bound's count at every position of
it (its pandas re-index of `{int(key): count}` onto the bounds); so does this service, through the job, the
store and the API, checked against tests/reference.py."""

import asyncio
import json

import pytest

from aggregator.job import JobConfig, run_job
from bench.load import publish
from server.app import create_app
from tests.conftest import settings_for
from tests.reference import reference_aggregate
from tests.test_job import job_cells

DATE = "20261101"
DEFINITIONS = {
    "LIN_REPEATS": {"kind": "linear", "low": 1, "high": 20, "n_buckets": 50, "description": "Twenty values."}
}
# Spec 3.6: b[0] = 0, b[i] = int((1 * (49 - i) + 20 * (i - 1)) / 48 + 0.5) = int((19 i + 29) / 48 + 0.5): 50 bounds,
# 21 distinct values, written out by hand.
BOUNDS = [0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8, 9, 9, 9, 10, 10]
BOUNDS += [11, 11, 11, 12, 12, 12, 13, 13, 14, 14, 14, 15, 15, 16, 16, 16, 17, 17, 18, 18, 18, 19, 19, 20, 20]
# Two pings: "21" is no bound and is dropped; "3" is the bound of buckets 5, 6 and 7.
VALUES = ({"0": 1, "1": 2, "3": 5, "20": 1, "21": 4}, {"3": 1, "12": 2})
SUMS = (30, 27)


def ping(values: dict[str, int], total: int) -> dict:
    histogram = {"values": values, "sum": total, "histogram_type": 1, "range": [1, 20], "bucket_count": 50}
    return {
        "meta": {"submissionDate": DATE, "sampleId": 7},
        "application": {
            "channel": "nightly",
            "version": "150.0a1",
            "buildId": "20261030123456",
            "name": "Firefox",
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": "Linux", "version": "6.1.0"}}},
        "payload": {"histograms": {"LIN_REPEATS": histogram}},
    }


def expected_histogram() -> list[int]:
    """By hand: bound 0 -> 1; bound 1 (buckets 1, 2) -> 2; bound 3 (buckets 5-7) -> 5 + 1; bound 12 (buckets
    28-30) -> 2; bound 20 (buckets 48, 49) -> 1."""
    counts = [0] * 50
    for columns, count in (((0,), 1), ((1, 2), 2), ((5, 6, 7), 6), ((28, 29, 30), 2), ((48, 49), 1)):
        for column in columns:
            counts[column] = count
    return counts


@pytest.fixture(scope="module")
def served_snapshot(tmp_path_factory, local_client) -> str:
    folder = tmp_path_factory.mktemp("repeats")
    lines = [json.dumps(ping(values, total)) for values, total in zip(VALUES, SUMS, strict=True)]
    (folder / "pings.ndjson").write_text("\n".join(lines) + "\n")
    (folder / "Histograms.json").write_text(json.dumps(DEFINITIONS))
    snapshot = str(folder / "snap")
    config = JobConfig(
        inputs=[str(folder / "pings.ndjson")],
        snapshot=snapshot,
        dates=[DATE],
        definitions=str(folder / "Histograms.json"),
        progress=False,
    )
    run_job(config, client=local_client, say=lambda *_: None)
    return snapshot


@pytest.fixture(scope="module")
def published_url(served_snapshot, scratch_database) -> str:
    url = scratch_database("ta_repeats")
    asyncio.run(publish(url, served_snapshot, [DATE]))  # the store's real path: migrate, publish
    return url


def test_the_reference_fills_every_position_of_a_repeated_bound():
    lines = [json.dumps(ping(values, total)) for values, total in zip(VALUES, SUMS, strict=True)]
    ref = reference_aggregate(lines, {DATE}, DEFINITIONS)
    ((key, (kind, bounds, counts, total, count)),) = ref.submission_date.items()
    assert key[7:10] == ("LIN_REPEATS", "", "parent")
    assert (kind, list(bounds), list(counts), total, count) == ("linear", BOUNDS, expected_histogram(), 57, 2)


def test_the_job_writes_the_reference_cells(served_snapshot):
    lines = [json.dumps(ping(values, total)) for values, total in zip(VALUES, SUMS, strict=True)]
    ref = reference_aggregate(lines, {DATE}, DEFINITIONS)
    for kind in ("build_id", "submission_date"):
        assert job_cells(served_snapshot, kind, DATE) == getattr(ref, kind)


@pytest.mark.asyncio
async def test_the_api_serves_the_original_buckets_and_counts(published_url, aiohttp_client):
    client = await aiohttp_client(create_app(settings_for(published_url)))
    filters = await (await client.get("/filters/?channel=nightly&version=150")).json()
    assert "LIN_REPEATS" in filters["metric"]
    for kind, date in (("submission_date", DATE), ("build_id", "20261030")):
        answer = await client.get(
            f"/aggregates_by/{kind}/channels/nightly/?version=150&dates={date}&metric=LIN_REPEATS&stats=true"
        )
        assert answer.status == 200, await answer.text()
        body = await answer.json()
        assert (body["buckets"], body["kind"], body["description"]) == (BOUNDS, "linear", "Twenty values.")
        (entry,) = body["data"]
        assert (entry["histogram"], entry["sum"], entry["count"]) == (expected_histogram(), 57, 2)
        percentiles = list(entry["percentiles"].values())
        assert percentiles == sorted(percentiles)
