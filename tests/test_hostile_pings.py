"""Pings hostile in size and number beside a normal day, on a real cluster and a real Postgres: the day publishes,
what is past a bound is dropped and counted by reason, the normal pings lose nothing, and the API answers.

The hostile pings are generated here. Each case has a version of its own, so its cells are told apart from the
normal corpus's, which is compared cell by cell with the plain-Python reference of the normal files alone.
"""

import asyncio
import gzip
import json
import re
from dataclasses import replace
from pathlib import Path

import dask
import orjson
import pytest
from distributed import Client, LocalCluster

from aggregator.bounds import Limits
from aggregator.generate import generate_corpus
from aggregator.job import CLUSTER_CONFIG, JobConfig, JobSummary, run_job
from aggregator.snapshot import read_attrs, read_run
from bench.load import publish
from server.app import create_app
from tests.conftest import settings_for
from tests.reference import reference_aggregate
from tests.test_job import job_cells, lines_of

DATE = "20261101"
LENGTHS, WIDE, FLOOD = "997", "998", "999"  # the versions of the hostile cases
UNDEFINED_LIMIT = 75  # JOB_MAX_UNDEFINED_METRICS for this run, so that a flood of a few hundred names passes it
FLOOD_FILES, FLOOD_NAMES_PER_FILE, FLOOD_PINGS_PER_FILE = 4, 75, 6
HUGE_LINE = 64 * 2**20  # past JOB_MAX_LINE_BYTES' default of 8 MiB
BLANK_LINES = 2**22
WORKER_MEMORY_BYTES = 768 * 2**20  # what a worker may hold in this run
WORKER_MEMORY = f"{WORKER_MEMORY_BYTES // 2**20}MiB"


def hostile(version: str, os_version: str = "6.1", **payload) -> dict:
    return {
        "meta": {"submissionDate": DATE, "sampleId": 1},
        "application": {
            "channel": "nightly",
            "version": f"{version}.0",
            "buildId": f"{DATE}000000",
            "name": "Firefox",
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": "Hostile", "version": os_version}}},
        "payload": payload,
    }


def linear(n: int, values: dict) -> dict:
    return {"bucket_count": n, "histogram_type": 1, "sum": 1, "range": [1, n - 1], "values": values}


def flood_count(i: int) -> int:
    """In how many pings flood name i appears."""
    return i % FLOOD_PINGS_PER_FILE + 1


def flood_name(i: int) -> str:
    return f"FLOOD_{i:04d}"


def write(path: Path, pings: list[dict], extra: bytes = b"") -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"".join(orjson.dumps(p) + b"\n" for p in pings) + extra)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A normal day of generated pings, and hostile files beside its own in the same day's folder."""
    root = tmp_path_factory.mktemp("hostile")
    generate_corpus(str(root), pings=200, days=1, seed=5, start_date=DATE, files_per_day=2)
    day = root / f"submission_date={DATE}"
    normal = sorted(str(p) for p in day.iterdir())
    write(
        day / "lengths.ndjson.gz",
        [
            hostile(LENGTHS, os_version="x" * 4000),  # a dimension value past 1,000 bytes: the ping is malformed
            hostile(LENGTHS, histograms={"A" * 4000: linear(3, {"1": 1}), "SHORT": linear(3, {"1": 2})}),
            hostile(LENGTHS, keyedHistograms={"KEYED": {"L" * 4000: linear(3, {"1": 1}), "ok": linear(3, {"2": 1})}}),
            {**hostile(LENGTHS), "application": {**hostile(LENGTHS)["application"], "version": "1" * 4000}},
        ],
    )
    # one ping: a keyed histogram of 2,000 labels, each declaring a linear layout of 16,383 buckets
    write(
        day / "wide.ndjson.gz",
        [hostile(WIDE, keyedHistograms={"WIDE": {f"k{i}": linear(16383, {"1": 1}) for i in range(2000)}})],
    )
    for f in range(FLOOD_FILES):  # each file its own names and its own os version (so its own shard)
        names = range(f * FLOOD_NAMES_PER_FILE, (f + 1) * FLOOD_NAMES_PER_FILE)
        pings = [
            hostile(
                FLOOD,
                os_version=f"{f}.0",
                histograms={flood_name(i): linear(3, {"1": 1}) for i in names if flood_count(i) > j},
            )
            for j in range(FLOOD_PINGS_PER_FILE)
        ]
        write(day / f"flood-{f}.ndjson.gz", pings)
    # a line of 64 MiB between two pings, then four million blank lines
    with gzip.open(day / "huge.ndjson.gz", "wb", compresslevel=1) as out:
        out.write(orjson.dumps(hostile(LENGTHS)) + b"\n")
        for _ in range(HUGE_LINE // 2**20):
            out.write(b"x" * 2**20)
        out.write(b"\n" + orjson.dumps(hostile(LENGTHS)) + b"\n" + b"\n" * BLANK_LINES)
    return root, normal


def peak_rss() -> int:
    """This process's peak resident memory, in bytes (run on each worker).

    VmHWM, not getrusage's ru_maxrss: a worker is started by fork and exec, and ru_maxrss keeps the larger
    peak of the test process it was forked from across the exec, where VmHWM starts again with the new image."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> tuple[str, JobSummary]:
    """The job on a LocalCluster of its own, configured as the job's, whose two workers are killed past
    WORKER_MEMORY: the run finishing shows no case needed more; each worker's peak is checked too."""
    root, _ = corpus
    snapshot = str(tmp_path_factory.mktemp("hostile-snapshot") / "snap")
    config = JobConfig(
        inputs=[str(root)],
        snapshot=snapshot,
        dates=[DATE],
        definitions=str(root / "Histograms.json"),
        scalar_definitions=str(root / "Scalars.yaml"),
        shards=3,
        progress=False,
        limits=replace(Limits.from_settings(), undefined_metrics=UNDEFINED_LIMIT),
    )
    with (
        dask.config.set(CLUSTER_CONFIG),
        LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=WORKER_MEMORY, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        summary = run_job(config, client=client, say=lambda *_: None)
        peaks = client.run(peak_rss)
    print(f"workers' peak memory: {', '.join(f'{p / 2**20:.0f} MiB' for p in peaks.values())}")
    assert max(peaks.values()) < WORKER_MEMORY_BYTES
    return snapshot, summary


def expected_flood() -> tuple[list[str], int]:
    """The flood names kept (most pings first, then by name) and the samples of the others."""
    counts = {flood_name(i): flood_count(i) for i in range(FLOOD_FILES * FLOOD_NAMES_PER_FILE)}
    ranked = sorted(counts, key=lambda name: (-counts[name], name))
    return sorted(ranked[:UNDEFINED_LIMIT]), sum(counts[name] for name in ranked[UNDEFINED_LIMIT:])


def test_the_day_is_written_and_every_drop_is_counted_by_reason(corpus, run):
    snapshot, summary = run
    _, dropped_samples = expected_flood()
    # lengths: the 4,000-byte os version and the 4,000-digit version make two pings malformed; the huge line one
    assert summary.malformed["long_dimension"] == 2
    assert summary.malformed["too_long"] == 1
    assert summary.blank == BLANK_LINES
    assert summary.dropped["long_name"] == 1
    assert summary.dropped["long_label"] == 1
    assert summary.dropped["too_many_labels"] == 2000 - 1000  # JOB_MAX_LABELS' default
    assert summary.dropped["layout_too_wide"] == 1000  # the labels kept, each declaring 16,383 buckets
    assert summary.dropped["undefined_limit"] == dropped_samples
    attrs = read_attrs(snapshot, "build_id", DATE)
    assert {k: attrs["dropped"][k] for k in summary.dropped} == dict(summary.dropped)
    assert attrs["pings"]["malformed"]["too_long"] == 1 and attrs["pings"]["blank"] == BLANK_LINES


def test_the_flood_keeps_the_names_in_most_pings_and_normal_pings_lose_nothing(corpus, run):
    root, normal = corpus
    snapshot, _ = run
    kept, _ = expected_flood()
    aggregate, _ = read_run(snapshot, "build_id", DATE)
    by_version: dict[str, set[str]] = {}
    for dims, metric, *_ in aggregate.cells():
        by_version.setdefault(dims[2], set()).add(metric)
    assert sorted(by_version[FLOOD]) == kept
    assert by_version[LENGTHS] == {"SHORT", "KEYED"}
    assert WIDE not in by_version  # nothing of the wide ping was kept
    histograms = json.loads((root / "Histograms.json").read_text())
    want = reference_aggregate(lines_of(normal), {DATE}, histograms, clients=False)
    for kind in ("build_id", "submission_date"):
        got = {key: cell for key, cell in job_cells(snapshot, kind, DATE).items() if key[2] not in (LENGTHS, FLOOD)}
        assert got == getattr(want, kind), f"{kind}: the normal pings' cells differ from the reference"


@pytest.fixture(scope="module")
def published(run, scratch_database) -> str:
    """The hostile day published by the store's real path: its database's URL."""
    url = scratch_database("ta_hostile")
    asyncio.run(publish(url, run[0], [DATE]))
    return url


@pytest.mark.asyncio
async def test_the_day_publishes_and_the_api_answers(published, aiohttp_client):
    client = await aiohttp_client(create_app(settings_for(published)))
    kept, _ = expected_flood()
    async with asyncio.timeout(10):
        answer = await client.get("/filters/", params={"channel": "nightly", "version": FLOOD})
        assert answer.status == 200
        assert sorted((await answer.json())["metric"]) == kept
        params = {"version": FLOOD, "dates": DATE, "metric": flood_name(FLOOD_PINGS_PER_FILE - 1)}
        answer = await client.get("/aggregates_by/build_id/channels/nightly/", params=params)
        assert answer.status == 200
        assert [entry["count"] for entry in (await answer.json())["data"]] == [flood_count(FLOOD_PINGS_PER_FILE - 1)]
        answer = await client.get("/aggregates_by/build_id/channels/nightly/", params=params | {"metric": "FLOOD_0000"})
        assert answer.status == 404  # in one ping only: dropped
