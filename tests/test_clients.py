"""The client-level weighting on hand-made pings, through the job on the LocalCluster, against values worked out
by hand from the rules of docs/semantics.md (client-level weighting). tests/test_job.py compares the same with the
reference aggregation on generated corpora."""

import gzip
import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from dask.sizeof import sizeof

from aggregator.clients import _groups, client_level
from aggregator.extract import Options
from aggregator.generate import generate_corpus
from aggregator.inputs import discover
from aggregator.job import JobConfig, run_job
from aggregator.layouts import Definitions
from aggregator.snapshot import read_run
from aggregator.tasks import aggregate_chunk, without_samples
from tests.test_reference import DATE, DEFINITIONS, DELETE, DIMS, SD_DIMS, make_ping

HEAVY, LIGHT = "heavy-client", [f"light-{i}" for i in range(20)]


def histogram(values: dict[str, int]) -> dict:
    return {"bucket_count": 11, "histogram_type": 1, "sum": 0, "range": [1, 10], "values": values}


def ping(client: object, values: dict[str, int], build: str = "20240110123456") -> dict:
    """A ping of `client` (DELETE: none) with one LIN histogram and one scalar of value 3."""
    payload = {"histograms": {"LIN": histogram(values)}, "processes": {"parent": {"scalars": {"a.b": 3}}}}
    changes = {"application.buildId": build} | ({} if client is DELETE else {"clientId": client})
    return make_ping(changes, payload)


def run(tmp_path: Path, local_client, pings: list[dict], **options) -> dict[str, tuple]:
    """The job over `pings` (two files: a client's pings are split across partitions); per kind, the LIN and
    scalar cells as (per-ping counts, clients, client-level histogram)."""
    folder = tmp_path / f"submission_date={DATE}"
    folder.mkdir()
    for part, share in enumerate((pings[0::2], pings[1::2])):
        with gzip.open(folder / f"part-{part}.ndjson.gz", "wb") as f:
            f.write(b"".join(orjson.dumps(p) + b"\n" for p in share))
    (tmp_path / "Histograms.json").write_text(json.dumps(DEFINITIONS))
    config = JobConfig(
        [str(tmp_path)], str(tmp_path / "snap"), [DATE], str(tmp_path / "Histograms.json"), progress=False, **options
    )
    summary = run_job(config, client=local_client, say=lambda *_: None)
    cells = {"dropped": summary.dropped}
    for kind in ("build_id", "submission_date"):
        aggregate, _ = read_run(str(tmp_path / "snap"), kind, DATE)
        offsets = aggregate.row_offset
        for r, (dims, metric, *_, counts, _, _) in enumerate(aggregate.cells()):
            weighted = None
            if aggregate.clients is not None:
                weighted = (int(aggregate.clients[r]), aggregate.client_histogram[offsets[r] : offsets[r + 1]].tolist())
            cells[kind, dims, metric] = (counts, weighted)
    return cells


def test_heavy_clients_shape_the_per_ping_distribution_and_not_the_client_level_one(tmp_path, local_client):
    # one heavy client: 50 pings, each 2 in bucket 9; 20 light clients: one ping each, 1 in bucket 1 and 1 in 2
    pings = [ping(HEAVY, {"9": 2}) for _ in range(50)] + [ping(c, {"1": 1, "2": 1}) for c in LIGHT]
    cells = run(tmp_path, local_client, pings)
    counts, (clients, weighted) = cells["submission_date", SD_DIMS, "LIN"]
    assert counts[9] == 100 and counts[1] == counts[2] == 20  # per ping: bucket 9 holds 100 of 140
    assert clients == 21
    # client level: the heavy client is 1 in bucket 9, each light one 0.5 in buckets 1 and 2
    assert weighted == pytest.approx([0, 10, 10, 0, 0, 0, 0, 0, 0, 1, 0], abs=1e-9)
    assert cells["build_id", DIMS, "LIN"][1] == (21, weighted)  # one build: the same cells
    # the scalar: one value per ping, in its bucket (3); every client's histogram is all there
    scalar = cells["submission_date", SD_DIMS, "SCALARS_A.B"]
    assert scalar[0][3] == 70 and scalar[1][0] == 21 and scalar[1][1][3] == pytest.approx(21)


def test_a_clients_days_sum_over_its_builds_before_normalising(tmp_path, local_client):
    """A client on two builds is normalised per build in build-id cells, and once over both in submission-date
    cells; an all-zero histogram makes a client of the cell and adds nothing; pings without a usable clientId
    count per ping only."""
    pings = [
        ping("a", {"1": 3}),
        ping("a", {"5": 1}, build="20240111000000"),
        ping("b", {"5": 0}),  # all zero
        ping(DELETE, {"7": 4}),
        ping("", {"7": 4}),
        ping(None, {"7": 4}),
    ]
    cells = run(tmp_path, local_client, pings)
    counts, (clients, weighted) = cells["submission_date", SD_DIMS, "LIN"]
    assert counts[7] == 12 and clients == 2
    assert weighted == pytest.approx([0, 0.75, 0, 0, 0, 0.25, 0, 0, 0, 0, 0], abs=1e-9)  # a: 3 and 1 of 4
    second = (*DIMS[:3], "20240111", *DIMS[4:])
    assert cells["build_id", DIMS, "LIN"][1] == (2, [0, 1, *[0] * 9])  # a (all in bucket 1) and b (zeros)
    assert cells["build_id", second, "LIN"][1] == (1, [0] * 5 + [1] + [0] * 5)
    assert cells["dropped"]["unusable_client_id"] == 3


def test_without_clients_the_run_has_no_client_level_arrays(tmp_path, local_client):
    cells = run(tmp_path, local_client, [ping("a", {"1": 1})], clients=False)
    assert cells["submission_date", SD_DIMS, "LIN"] == ([0, 1, *[0] * 9], None)
    assert not np.any([key[0] == "unusable_client_id" for key in cells["dropped"]])


def test_pairs_past_one_integer_are_grouped_as_those_within():
    """(client, cell) pairs too many to number as one int64 are grouped by sorting on both: the same groups."""
    rng = np.random.default_rng(1)
    client, cell = rng.integers(0, 50, 1000), rng.integers(0, 30, 1000)
    within, past = _groups(client, cell, 30), _groups(client, cell, 2**62)
    for cells, group in (within, past):
        assert (cells[group] == cell).all()  # each sample's group holds its cell

    def partition(group: np.ndarray) -> set[frozenset[int]]:
        return {frozenset(np.flatnonzero(group == g).tolist()) for g in np.unique(group)}

    assert partition(within[1]) == partition(past[1]) == partition(client * 30 + cell)


def test_dask_counts_the_arrays_of_the_values_tasks_pass_on(tmp_path):
    """Dask's size of a partition's aggregate, its client samples and its client-level cells (what a worker counts
    as managed memory, spills by, and the scheduler weighs when it places the tasks that take them) covers their
    arrays, not just the few bytes of the object that holds them."""
    corpus = generate_corpus(str(tmp_path), pings=300, seed=4, files_per_day=1)
    (chunk,) = discover([corpus.output], corpus.dates)
    aggregate = aggregate_chunk(chunk, Definitions.load(corpus.histograms_definitions), Options())
    for value in (without_samples(aggregate), aggregate.samples, *client_level([aggregate.samples])):
        arrays = sum(item.nbytes for item in vars(value).values() if isinstance(item, np.ndarray))
        assert arrays > 100_000, type(value)
        assert arrays < sizeof(value) < arrays + 2_000_000, type(value)  # and its tables, roughly
