"""A re-run of a day published while faults hit it, on a Postgres server of the tests' own (tests/postgres.py).

Day D is published from snapshot A (the shared corpus), then a re-run B of D (the same day with more pings: late
data) is published by `aggregator publish` in a process that is hit at a random moment of its publish: SIGKILLed,
its connection ended from the server side (`pg_terminate_backend`), or Postgres restarted under it
(`pg_ctl restart -m immediate`). After each fault:

- each kind of the day is served whole, by the store (its rows are exactly one run's) and by the API
  (`python -m server`, a real process on the same database): A's data, or B's where B's transaction for that
  kind had committed before the fault. A (kind, date) is published in one transaction, so a fault between the
  two kinds' commits leaves build_id at B and submission_date at A: both are whole contributions, and the
  ledger says which is served;
- the API's answers equal the plain-Python reference aggregation of that corpus (tests/reference.py), never
  values the store or the API gave earlier;
- nothing of the interrupted publish remains (no ledger row, staging table or advisory lock), a publisher that
  survives the fault exits with one clear line, and the next publish of B completes and is served.

The moments are drawn from a seeded generator; the seed is printed and `RELIABILITY_SEED=<seed>` replays the same
draws (the publish's own timing still varies a little). The short variants run in the normal suite, the long
ones under `make reliability` (docs/reliability.md).
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from aggregator.generate import generate_corpus
from aggregator.job import run_job
from aggregator.snapshot import read_attrs
from aggregator.store import schema
from aggregator.store.publish import publish_dates
from bench.load import start_server, wait_for
from tests.conftest import KINDS, reference_cells
from tests.postgres import PrivatePostgres
from tests.publisher import Publisher
from tests.test_api import CHANNEL, VERSION, assert_same, expected, listed_dates, metric_params
from tests.test_api import FILTERED as FILTERED_PROBES
from tests.test_job import config, reference
from tests.test_store import (
    assert_no_leftovers,
    call,
    fetch,
    snapshot_cells,
    stored_cells,
    wait_for_backends_to_leave,
)

PUBLISHER = "ta-faulted-publisher"  # the publisher's application_name, how its backend is found
# What each check asks the API for, besides the listings: unfiltered answers from the rollup, filtered ones from
# the full table (tests/test_api.py's), histograms, keyed histograms, scalars, count histograms, use counters.
PROBES = [
    ("GC_MS", {}, None, None),
    ("IPC_READ_MAIN_THREAD_LATENCY_MS", {}, None, None),
    ("SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS", {}, None, None),
    *FILTERED_PROBES,
]
SERVED = "SELECT c.kind, p.digest FROM contributions c JOIN publishes p ON p.id = c.publish_id"


@pytest.fixture(scope="module")
def rerun(corpus, local_client, tmp_path_factory) -> tuple[str, str]:
    """B: the corpus's first day again with 300 pings instead of 200, aggregated by the job; its pings' folder
    and its snapshot."""
    folder = tmp_path_factory.mktemp("rerun")
    late = generate_corpus(
        str(folder / "pings"), pings=300, seed=11, start_date=corpus.dates[0], files_per_day=3, malformed_fraction=0.03
    )
    run_job(config(late, folder / "snapshot"), client=local_client, say=lambda *_: None)
    return late.output, str(folder / "snapshot")


@dataclass(frozen=True)
class Answers:
    """What the API answers for one kind when it serves one run (computed once: the reference is slow)."""

    channels: list[str]
    dates: set[tuple[str, str]]  # (version, date) listed for CHANNEL
    metrics: list[tuple[list[tuple[str, str]], dict | None]]  # each probe's query and answer (None: a 404)


def answers(cells: dict, kind: str, dates: list[str]) -> Answers:
    return Answers(
        sorted({c for c, _, _ in cells[kind]} - {"release"}),
        listed_dates(cells, kind),
        [(metric_params(dates, *probe), expected(cells, kind, probe[0], dates, *probe[1:])) for probe in PROBES],
    )


@dataclass
class Runs:
    """Runs A and B of the day under test, and what the store and the API hold for each."""

    date: str
    snapshots: dict[str, str]  # run name (A, B): snapshot
    digests: dict[str, dict[str, str]]  # run name: kind: the run's digest
    rows: dict[str, dict[str, dict]]  # run name: kind: the run's cells as the store must hold them
    answers: dict[str, dict[str, Answers]]  # run name: kind: what the API answers


@dataclass
class Day(Runs):
    """The day under test: its database and the API serving it, besides its runs."""

    url: str
    api: str  # the API's base URL


@pytest.fixture(scope="module")
def day_runs(snapshot, corpus, rerun) -> Runs:
    """Computed once for the module's tests: the checks only read them."""
    date = corpus.dates[0]
    snapshots = {"A": snapshot, "B": rerun[1]}
    cells = {
        "A": reference_cells([reference(corpus.output, True)[date]]),
        "B": reference_cells([reference(rerun[0], True, clients=False)[date]]),
    }
    wanted = {}
    for kind in KINDS:  # the dates asked for: those of A and B
        dates = sorted({d for run in cells.values() for v, d in listed_dates(run, kind) if v == VERSION})
        for run, run_cells in cells.items():
            wanted.setdefault(run, {})[kind] = answers(run_cells, kind, dates)
        assert wanted["A"][kind].metrics[0] != wanted["B"][kind].metrics[0]  # the checks tell A from B
    digests = {run: {k: read_attrs(path, k, date)["digest"] for k in KINDS} for run, path in snapshots.items()}
    rows = {run: {k: snapshot_cells(path, k, date) for k in KINDS} for run, path in snapshots.items()}
    return Runs(date, snapshots, digests, rows, wanted)


@pytest.fixture
def day(private_postgres: PrivatePostgres, day_runs: Runs, tmp_path) -> Iterator[Day]:
    url = private_postgres.create_database("ta_faults")
    asyncio.run(call(url, schema.migrate))
    republish(url, day_runs.snapshots["A"], day_runs.date)
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server, api = start_server(url, {"API_LEDGER_POLL_SECONDS": "0"}, output)
    try:
        asyncio.run(wait_for(api))
        yield Day(**vars(day_runs), url=url, api=api)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "unhandled error" not in log.read_text()  # no 500, whatever happened to the database


def republish(url: str, snapshot: str, date: str) -> list[str]:
    """Publish (kind, date) of both kinds from `snapshot` in this process; the actions."""
    results = asyncio.run(call(url, publish_dates, snapshot, [date], KINDS, say=lambda *_: None))
    return [r.action for r in results]


def served(day: Day) -> dict[str, str]:
    """Which run each kind of the day is served from, by the ledger."""
    runs = {}
    for row in fetch(day.url, SERVED):
        runs[row["kind"]] = next(run for run, digests in day.digests.items() if digests[row["kind"]] == row["digest"])
    assert set(runs) == set(KINDS)
    return runs


def assert_api_serves(day: Day, runs: dict[str, str]) -> None:
    """The API's listings and metric answers for each kind are those of the run it is served from."""

    async def check() -> None:
        async with aiohttp.ClientSession() as session:

            async def get(path: str, params=None) -> tuple[int, object]:
                async with session.get(day.api + path, params=params) as answer:
                    return answer.status, await answer.json()

            for kind, run in runs.items():
                want = day.answers[run][kind]
                assert await get(f"/aggregates_by/{kind}/channels/") == (200, want.channels), (kind, run)
                status, listed = await get(f"/aggregates_by/{kind}/channels/{CHANNEL}/dates/")
                assert {(d["version"], d["date"]) for d in listed} == want.dates, (kind, run)
                for params, answer in want.metrics:
                    status, got = await get(f"/aggregates_by/{kind}/channels/{CHANNEL}/", params)
                    assert status == (404 if answer is None else 200), (kind, run, params, got)
                    if answer is not None:
                        assert_same(got, answer)

    asyncio.run(check())


def wait_for_api(day: Day, seconds: float = 10) -> float:
    """Until the API's health check passes (after a restart its pool must reconnect by itself); how long."""
    started = time.monotonic()

    async def healthy() -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"{day.api}/__heartbeat__") as answer:
                    if answer.status == 200:
                        return
                assert time.monotonic() - started < seconds, "the API did not recover"
                await asyncio.sleep(0.05)

    asyncio.run(healthy())
    return time.monotonic() - started


def last_publish(day: Day) -> int:
    return fetch(day.url, "SELECT coalesce(max(id), 0) FROM publishes")[0][0]


def terminate_when_connected(day: Day, publisher: Publisher) -> None:
    """End the publisher's backend from the server side, or, if it has none yet, as soon as it has one."""
    sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
    while publisher.process.poll() is None and not fetch(day.url, sql, PUBLISHER):
        time.sleep(0.01)


def assert_whole_after_fault(day: Day, before: int) -> dict[str, str]:
    """Each kind served whole from A or B, the ledger holding exactly B's committed publishes; which is served."""
    wait_for_backends_to_leave(day.url, application_name=PUBLISHER)
    assert_no_leftovers(day.url)
    runs = served(day)
    ledger = fetch(day.url, "SELECT kind, action FROM publishes WHERE id > $1", before)
    assert sorted(tuple(r) for r in ledger) == sorted((k, "published") for k, run in runs.items() if run == "B")
    for kind, run in runs.items():  # every row of the leaf is the run's, none missing, none of the other
        assert stored_cells(day.url, kind, day.date) == day.rows[run][kind], (kind, run)
    assert_api_serves(day, runs)
    return runs


def timed_publish(command: list[str], env: dict[str, str]) -> float:
    """A whole publish of both kinds by the command line; seconds from its start to its last `published` line
    (what follows is the process's exit)."""
    with Publisher(command, env) as publisher:
        went = publisher.go()
        published = [time.monotonic() - went for line in publisher.process.stdout if line.startswith("published ")]
        code, _, err = publisher.finish()
    assert code == 0 and len(published) == 2, err
    return published[-1]


def inject(fault: str, publisher: Publisher, day: Day, postgres: PrivatePostgres) -> None:
    if fault == "kill":
        publisher.kill()
    elif fault == "terminate":  # the publisher's backend, or, if it has none yet, as soon as it has one
        sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
        while publisher.process.poll() is None and not fetch(day.url, sql, PUBLISHER):
            time.sleep(0.01)
    else:
        postgres.restart("immediate")


def assert_clean_exit(code: int, err: str, fault: str) -> None:
    """Killed, or finished before the fault, or failed with one line saying why (no traceback)."""
    assert code in ((-9, 0) if fault == "kill" else (0, 1)), err
    if code == 1:
        assert err.startswith("aggregator: error: ") and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("fault", "runs"),
    [
        ("kill", 5),
        ("terminate", 2),
        ("restart", 1),
        pytest.param("kill", 20, marks=pytest.mark.reliability),
        pytest.param("terminate", 20, marks=pytest.mark.reliability),
        pytest.param("restart", 10, marks=pytest.mark.reliability),
    ],
)
def test_a_fault_at_a_random_moment_leaves_the_day_served_whole(day, private_postgres, seed, fault, runs):
    draw = random.Random(seed)
    command = ["publish", "--snapshot", day.snapshots["B"], "--date", day.date]
    env = {"DATABASE_URL": f"{day.url}?application_name={PUBLISHER}"}
    duration = timed_publish(command, env)  # faults are drawn within a whole publish of B
    assert_api_serves(day, {kind: "B" for kind in KINDS})

    outcomes = Counter()
    for run in range(runs):
        with Publisher(command, env) as publisher:  # starts while A is published again
            assert republish(day.url, day.snapshots["A"], day.date) == ["published", "published"]
            before = last_publish(day)
            at = draw.uniform(0, duration)
            print(f"run {run}: {fault} {at:.3f} s into a {duration:.3f} s publish")
            went = publisher.go()
            time.sleep(max(0.0, went + at - time.monotonic()))
            inject(fault, publisher, day, private_postgres)
            code, _, err = publisher.finish()
        assert_clean_exit(code, err, fault)
        if fault == "restart":
            wait_for_api(day)
        runs_served = assert_whole_after_fault(day, before)
        committed = ", ".join(k for k in KINDS if runs_served[k] == "B") or "no kind"
        outcomes["the publish ended first" if code == 0 else f"interrupted, B committed for {committed}"] += 1

        again = republish(day.url, day.snapshots["B"], day.date)  # the next publish of B completes
        assert again == ["unchanged" if runs_served[k] == "B" else "published" for k in KINDS]
        assert_api_serves(day, {kind: "B" for kind in KINDS})
    print(f"{fault}: {runs} faults in a {duration:.2f} s publish: {dict(outcomes)}")


def test_postgres_restarted_in_the_copy_fails_the_publish_clearly(day, private_postgres, tmp_path):
    """The restart lands in the middle of build_id's COPY for sure: the publish fails with a message saying
    what happened to the data, the API serves A once Postgres is back, and the next publish completes."""
    before = last_publish(day)
    command = ["publish", "--snapshot", day.snapshots["B"], "--date", day.date]
    env = {"DATABASE_URL": f"{day.url}?application_name={PUBLISHER}"}
    with Publisher(command, env, hold_in_copy=tmp_path / "copying") as publisher:
        publisher.go()
        publisher.wait_until_held()
        private_postgres.restart("immediate")
        publisher.release()
        code, out, err = publisher.finish()
    assert code == 1 and out == "", err
    assert err.startswith(f"aggregator: error: publish of build_id {day.date} interrupted: the database connection ")
    assert "so this day is served whole: as before" in err and "Traceback" not in err
    print(f"Postgres restarted mid-COPY; the API answered again {wait_for_api(day):.2f} s after")
    assert assert_whole_after_fault(day, before) == {kind: "A" for kind in KINDS}
    timed_publish(command, env)
    assert_api_serves(day, {kind: "B" for kind in KINDS})
