"""The job under faults, on real Dask clusters: a worker killed while it holds tasks, the scheduler lost while days
are being written, and bad input files (corrupt, truncated, unreadable, gone). What each checks, and its figures:
docs/reliability.md, "Job faults"."""

import asyncio
import contextlib
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import asyncpg
import dask
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from aggregator.aggregate import Aggregate, merge
from aggregator.bounds import Limits, merge_bounded
from aggregator.extract import Options
from aggregator.generate import generate_corpus
from aggregator.inputs import discover
from aggregator.job import CLUSTER_CONFIG, JobFailed, check_input, run_job
from aggregator.layouts import Definitions
from aggregator.snapshot import KINDS, SnapshotError, list_dates, read_attrs, read_run
from aggregator.stats import FileStats, RunStats
from aggregator.store.publish import publish_dates, rebuild
from aggregator.tasks import aggregate_chunk
from tests.conftest import start_cluster
from tests.test_job import assert_matches_reference, config, lines_of, reference
from tests.test_snapshot import files

AGGREGATOR = [sys.executable, "-m", "aggregator"]
RUN_FIELDS = ("inputs", "pings", "dropped", "overflow", "digest", "rows", "definitions", "descriptions")


def quiet(*_) -> None:
    """A `say` that prints nothing."""


def wait_until(condition: Callable[[], object], what: str, seconds: float = 60, every: float = 0.01):
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        time.sleep(every)
    return found


def current_arrays(snapshot: str, kind: str, date: str) -> dict[str, np.ndarray]:
    """Every array of the current run of (kind, date), by path, read with zarr alone."""
    day = zarr.open_group(snapshot, mode="r", path=f"{kind}/{date}")
    run = day[day.attrs["current"]]
    return {name: member[:] for name, member in run.members(max_depth=None) if isinstance(member, zarr.Array)}


def run_folders(snapshot: Path) -> dict[str, list[str]]:
    """The run folders under each `kind/date` group, committed or not, down to a half-written one (a folder,
    so the file system is asked, not zarr)."""
    folders: dict[str, list[str]] = {}
    for run in sorted(snapshot.glob("*/*/run-*")):
        folders.setdefault(f"{run.parent.parent.name}/{run.parent.name}", []).append(run.name)
    return folders


def assert_same_snapshot(got: str, want: str, dates: list[str]) -> None:
    """Array by array and attribute by attribute (but the run's name and time), every (kind, date) is equal."""
    assert list_dates(got) == list_dates(want) == [(k, d) for k in KINDS for d in dates]
    for kind in KINDS:
        for date in dates:
            got_arrays, want_arrays = current_arrays(got, kind, date), current_arrays(want, kind, date)
            assert got_arrays.keys() == want_arrays.keys()
            for name, array in want_arrays.items():
                assert array.dtype == got_arrays[name].dtype, f"{kind} {date} {name}"
                assert np.array_equal(array, got_arrays[name]), f"{kind} {date} {name} differs"
            got_attrs, want_attrs = read_attrs(got, kind, date), read_attrs(want, kind, date)
            assert {k: got_attrs[k] for k in RUN_FIELDS} == {k: want_attrs[k] for k in RUN_FIELDS}


def completed_tasks(client: Client, since: float) -> int:
    """How many tasks the scheduler saw complete since `since` (its clock): a recomputed task counts again."""

    def count(dask_scheduler, since: float) -> int:
        log = dask_scheduler.transition_log
        return sum(1 for t in log if t.timestamp >= since and (t.start, t.finish) == ("processing", "memory"))

    return client.run_on_scheduler(count, since=since)


def freeze_first_reduced(dask_scheduler, pids: dict[str, int]) -> None:
    """On the scheduler: SIGSTOP the worker that holds the first reduced aggregate (the final key of a tree
    reduction) the moment it is reported done, so that it is certain to be held and not yet staged when it is
    killed; `frozen_worker` says which. Only workers of `pids` (their processes as they were) are stopped."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Freeze(SchedulerPlugin):
        frozen: str | None = None

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            if self.frozen or finish != "memory" or not str(key).startswith(f"{merge_bounded.__name__}-aggregate-"):
                return
            worker = next(iter(dask_scheduler.tasks[key].who_has)).address
            if worker in pids:
                os.kill(pids[worker], signal.SIGSTOP)
                self.frozen = worker

    dask_scheduler.add_plugin(Freeze(), name="freeze-first-reduced")


def frozen_worker(dask_scheduler) -> str | None:
    return dask_scheduler.plugins["freeze-first-reduced"].frozen


def unfreeze(dask_scheduler) -> None:
    """Remove the plugin (the scheduler serves the next tests)."""
    if "freeze-first-reduced" in dask_scheduler.plugins:
        dask_scheduler.remove_plugin(name="freeze-first-reduced")


@pytest.mark.cluster
def test_workers_killed_mid_run_give_the_same_snapshot_and_counts(corpus, external_scheduler, tmp_path):
    """Two SIGKILLs in one run: a worker holding tasks it was given (processing), during the aggregation, and a
    worker holding a reduced aggregate (in memory) before it is staged."""
    with Client(external_scheduler) as client:
        started = client.run_on_scheduler(time.time)
        calm = run_job(config(corpus, tmp_path / "calm", split_every=2), client=client, say=quiet)
        calm_tasks = completed_tasks(client, started)

        pids = client.run(os.getpid)
        first = sorted(pids)[0]
        killed: list[tuple[str, str, int]] = []  # (stage, worker, tasks it held)
        failures: list[BaseException] = []

        def kill_when_assigned() -> None:
            try:
                held = wait_until(lambda: client.processing(workers=[first])[first], f"tasks on {first}")
                os.kill(pids[first], signal.SIGKILL)  # a stopped process dies all the same
                wait_until(lambda: first not in client.scheduler_info(n_workers=-1)["workers"], "worker removed")
                killed.append(("processing", first, len(held)))
                # then the worker that holds the first reduced aggregate, before it is staged
                worker = wait_until(lambda: client.run_on_scheduler(frozen_worker), "a reduced aggregate")
                holding = len(client.has_what()[worker])
                os.kill(pids[worker], signal.SIGKILL)  # stopped: it cannot be asked for its pid again
                wait_until(lambda: worker not in client.scheduler_info(n_workers=-1)["workers"], "worker removed")
                killed.append(("memory", worker, holding))
            except BaseException as error:
                failures.append(error)
                for pid in pids.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)

        killer = threading.Thread(target=kill_when_assigned)

        def say(line: str) -> None:
            if line.startswith("aggregating"):
                client.run_on_scheduler(freeze_first_reduced, pids=pids)
                # frozen, it is given tasks it cannot finish: killing it then is certain to lose work in progress
                os.kill(pids[first], signal.SIGSTOP)
                killer.start()

        started = client.run_on_scheduler(time.time)
        try:
            faulty = run_job(config(corpus, tmp_path / "faulty", split_every=2), client=client, say=say)
            killer.join()
        finally:
            client.run_on_scheduler(unfreeze)

        assert not failures, failures
        assert [stage for stage, _, _ in killed] == ["processing", "memory"]
        assert all(held > 0 for _, _, held in killed)
        faulty_tasks = completed_tasks(client, started)
        assert faulty_tasks > calm_tasks  # what was lost with a worker was computed again
        print(f"kills {killed}; tasks completed {calm_tasks} undisturbed, {faulty_tasks} with the faults")

    assert_same_snapshot(str(tmp_path / "faulty"), str(tmp_path / "calm"), corpus.dates)
    # the run's summary counts every ping once: as the undisturbed run, and as the input's lines counted here
    for field in ("files", "pings", "aggregated", "filtered", "malformed", "unreadable", "dropped", "overflow", "rows"):
        assert getattr(faulty, field) == getattr(calm, field), field
    assert faulty.pings == sum(1 for line in lines_of(corpus.files) if line.strip())
    assert faulty.files == len(corpus.files)
    # a write interrupted by the kill leaves nothing behind once the day is committed
    assert all(len(runs) == 1 for runs in run_folders(tmp_path / "faulty").values())


def test_merging_never_changes_its_inputs():
    """A reduced aggregate stays in a worker's memory and may be read again (by another task, or when a result lost
    with a worker is recomputed): merging it must leave it as it was, or its pings would be counted twice."""

    def part(pings: int, malformed: int) -> Aggregate:
        stats = FileStats("big.ndjson", 100, "20261101", pings=pings, aggregated=pings - malformed)
        stats.malformed["not_json"] = malformed
        return Aggregate.empty(stats=RunStats(files={"big.ndjson": stats}))

    first, second = part(5, 1), part(7, 2)  # two byte ranges of one file
    merged = merge([first, second])
    again = merge([first, second])
    assert merged.stats.files["big.ndjson"].pings == again.stats.files["big.ndjson"].pings == 12
    assert merged.stats.reasons("malformed") == Counter(not_json=3)
    assert (first.stats.total("pings"), second.stats.total("pings")) == (5, 7)
    assert first.stats.reasons("malformed") == Counter(not_json=1)


async def published_runs(dsn: str, snapshot: str) -> dict[tuple[str, str], str]:
    """Publish every (kind, date) the snapshot lists, as `db rebuild` does; the run id published for each."""
    conn = await asyncpg.connect(dsn)
    try:
        await rebuild(conn, snapshot, say=quiet)
        rows = await conn.fetch("SELECT kind, submission_date, run_id FROM publishes")
        return {(r["kind"], f"{r['submission_date']:%Y%m%d}"): r["run_id"] for r in rows}
    finally:
        await conn.close()


async def publish_one(dsn: str, snapshot: str, date: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await publish_dates(conn, snapshot, [date], KINDS, say=quiet)
    finally:
        await conn.close()


@pytest.mark.cluster
def test_scheduler_lost_while_writing_fails_plainly_and_changes_no_day(
    corpus, local_client, scratch_database, tmp_path
):
    """`aggregator run --scheduler` whose scheduler is SIGKILLed once a day's write has started (its workers
    frozen, so that write stays half done): one error line, exit 1, and every day as it was."""
    snapshot = tmp_path / "snap"
    first, second = corpus.dates
    previous = config(corpus, snapshot)  # the state before: the first day, from one of its files
    previous.inputs = sorted(f for f in corpus.files if f"submission_date={first}" in f)[:1]
    previous.dates = [first]
    run_job(previous, client=local_client, say=quiet)
    before = {
        kind: (read_attrs(str(snapshot), kind, first)["run_id"], current_arrays(str(snapshot), kind, first))
        for kind in KINDS
    }
    committed = sum(map(len, run_folders(snapshot).values()))
    files_before = files(snapshot)

    (tmp_path / "cluster").mkdir()
    with start_cluster(tmp_path / "cluster", workers=1) as cluster:
        with Client(cluster.address) as watcher:
            worker_pids = list(watcher.run(os.getpid).values())
        # fmt: off
        job = subprocess.Popen(
            [*AGGREGATOR, "run", "--input", corpus.output, "--date", first, "--date", second,
             "--snapshot", str(snapshot), "--definitions", corpus.histograms_definitions,
             "--scheduler", cluster.address, "--no-progress", "--no-publish"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # fmt: on

        def writing() -> bool:
            return sum(map(len, run_folders(snapshot).values())) > committed or job.poll() is not None

        try:
            wait_until(writing, "a write to start", every=0.001)
            for pid in worker_pids:
                os.kill(pid, signal.SIGSTOP)
            cluster.scheduler.kill()
            out, err = job.communicate(timeout=120)
        finally:  # the rest of the cluster goes too: a nanny whose scheduler is gone would wait for it
            job.kill()
            for pid in worker_pids:
                os.kill(pid, signal.SIGKILL)
            for nanny in cluster.workers:
                nanny.kill()

    assert job.returncode == 1, out + err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"aggregator: error: lost the Dask scheduler at {cluster.address}")
    assert "no submission date" in lines[0] and "was changed" in lines[0]

    # What the interrupted write left: runs staged but not committed, which no reader follows, the second day's
    # empty group, and nothing else: every file that was there is as it was.
    groups = run_folders(snapshot)
    assert sum(len(runs) for runs in groups.values()) > committed
    files_after = files(snapshot)
    assert {f: data for f, data in files_after.items() if f in files_before} == files_before
    new = {f for f in files_after.keys() - files_before.keys() if "/run-" not in f}
    assert new <= {f"{kind}/{second}/zarr.json" for kind in KINDS}
    for kind in KINDS:
        run_id, arrays = before[kind]
        assert read_attrs(str(snapshot), kind, first)["run_id"] == run_id
        got = current_arrays(str(snapshot), kind, first)
        assert got.keys() == arrays.keys()
        assert all(np.array_equal(got[name], array) for name, array in arrays.items())
        with pytest.raises(SnapshotError):
            read_run(str(snapshot), kind, second)
    assert list_dates(str(snapshot)) == [(kind, first) for kind in KINDS]
    dsn = scratch_database("ta_faults")
    assert asyncio.run(published_runs(dsn, str(snapshot))) == {(kind, first): before[kind][0] for kind in KINDS}
    with pytest.raises(SnapshotError):
        asyncio.run(publish_one(dsn, str(snapshot), second))

    # A re-run completes, and its commit removes what the failed one left.
    run_job(config(corpus, snapshot), client=local_client, say=quiet)
    assert all(len(runs) == 1 for runs in run_folders(snapshot).values())
    assert_matches_reference(str(snapshot), reference(corpus.output, True))


def test_unreachable_scheduler_is_one_clear_error(corpus, tmp_path):
    # fmt: off
    failed = subprocess.run(
        [*AGGREGATOR, "run", "--input", corpus.output, "--date", corpus.dates[0], "--snapshot", str(tmp_path / "snap"),
         "--scheduler", "tcp://127.0.0.1:9", "--no-progress", "--no-publish"],
        capture_output=True, text=True, timeout=120,
        env=os.environ | {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    # fmt: on
    assert failed.returncode == 1
    assert failed.stderr.startswith("aggregator: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "snap").exists()


def break_files(folder: Path) -> tuple[dict[str, Path], bytes]:
    """Spoil four of the corpus's files in place: one per fault. Returns them by fault, and the bytes of the one
    that the run must see vanish (the job's discovery finds it; it is gone before any worker opens it)."""
    found = sorted(folder.glob("submission_date=*/*.ndjson.gz"))
    bad = {"corrupt": found[0], "truncated": found[1], "unreadable": found[3], "vanishing": found[4]}
    data = bad["corrupt"].read_bytes()  # the gzip header and the start of its stream, then garbage
    bad["corrupt"].write_bytes(data[:64] + random.Random(5).randbytes(len(data) - 64))
    data = bad["truncated"].read_bytes()  # cut mid-stream: its first lines decompress, then the file ends
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["unreadable"].chmod(0)
    try:
        bad["unreadable"].open("rb").close()
        # permissions do not stop this user (root): a dangling symlink in its place cannot be read by anyone
        bad["unreadable"].unlink()
        bad["unreadable"].symlink_to(folder / "no-such-file.ndjson.gz")
    except PermissionError:
        pass
    return bad, bad["vanishing"].read_bytes()


def test_bad_files_are_named_and_skipped_whole_or_fail_the_run(corpus, local_client, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.output, copy)
    bad, vanishing = break_files(copy)
    good = tmp_path / "good"  # the same corpus without the bad files: what a skipping run must aggregate
    shutil.copytree(corpus.output, good)
    for path in bad.values():
        (good / path.relative_to(copy)).unlink()

    def say(line: str) -> None:
        if line.startswith("aggregating"):  # discovered, not yet read
            bad["vanishing"].unlink()

    snapshot = tmp_path / "snap"
    cfg = config(corpus, snapshot, skip_unreadable=True)
    cfg.inputs = [str(copy)]
    summary = run_job(cfg, client=local_client, say=say)
    errors = {
        Path(url.removeprefix("file://")).relative_to(copy): error.split(":")[0]
        for url, error in summary.unreadable.items()
    }
    assert errors.pop(bad["corrupt"].relative_to(copy)) in {"IsalError", "BadGzipFile"}  # as the garbage falls
    unreadable = "FileNotFoundError" if bad["unreadable"].is_symlink() else "PermissionError"
    assert errors == {
        bad["truncated"].relative_to(copy): "EOFError",
        bad["unreadable"].relative_to(copy): unreadable,
        bad["vanishing"].relative_to(copy): "FileNotFoundError",
    }
    # skipped whole: neither their data nor their counts (the truncated file's first lines were read, then dropped)
    expected = reference(str(good), True)
    assert_matches_reference(str(snapshot), expected)
    assert summary.aggregated == sum(r.aggregated for r in expected.values())
    assert summary.pings == sum(1 for line in lines_of([str(p) for p in good.glob("*/*.ndjson.gz")]) if line.strip())
    assert summary.malformed == sum((r.malformed for r in expected.values()), Counter())
    assert summary.filtered == sum((r.filtered for r in expected.values()), Counter())
    lines = "\n".join(summary.lines())
    assert all(path.name in lines for path in bad.values())
    # ...and recorded in the snapshot, as inputs of their day with their error and no pings
    for path in bad.values():
        date = path.parent.name.split("=")[1]
        inputs = {Path(i["path"]).name: i for i in read_attrs(str(snapshot), "build_id", date)["inputs"]}
        assert inputs[path.name]["error"] and inputs[path.name]["pings"] == 0

    # The default policy fails the run, naming each file, and writes nothing: the snapshot stays byte for byte.
    files_before = files(snapshot)
    bad["vanishing"].write_bytes(vanishing)
    cfg.skip_unreadable = False
    with pytest.raises(JobFailed, match="unreadable input files") as failure:
        run_job(cfg, client=local_client, say=say)
    assert all(path.name in str(failure.value) for path in bad.values())
    assert files(snapshot) == files_before


def test_a_file_failing_after_part_of_it_was_read_cannot_be_skipped(tmp_path):
    """A large plain file is read in byte ranges: one range failing after another was aggregated would count
    the file in part, so even --skip-unreadable fails the run. Both ranges failing skips it whole."""
    corpus = generate_corpus(str(tmp_path / "plain"), pings=40, days=1, seed=3, files_per_day=1, compress=False)
    (path,) = corpus.files
    size = Path(path).stat().st_size
    chunks = discover([path], [], blocksize=size // 2 + 1)
    assert len(chunks) == 2
    definitions, options = Definitions.load(None, None), Options()
    read = aggregate_chunk(chunks[0], definitions, options)
    with open(path, "ab") as f:  # the file grows while the run reads it
        f.write(b"\n")
    failed = aggregate_chunk(chunks[1], definitions, options)
    assert failed.stats.errors and "changed while the run read it" in next(iter(failed.stats.errors.values()))
    assert failed.stats.total("pings") == 0 and len(failed) == 0

    cfg = config(corpus, tmp_path / "snap", skip_unreadable=True)
    stats = merge([read, failed]).stats
    assert stats.total("pings") == read.stats.total("pings") > 0
    with pytest.raises(JobFailed, match="failed after part of them was aggregated"):
        check_input(cfg, stats, corpus.dates)
    whole = merge([aggregate_chunk(chunk, definitions, options) for chunk in chunks]).stats  # both ranges fail now
    assert whole.total("pings") == 0 and whole.errors
    with pytest.raises(JobFailed, match=f"no pings aggregated for {corpus.dates[0]}"):  # skipped: nothing is left
        check_input(cfg, whole, corpus.dates)


def test_a_worker_lost_to_memory_fails_the_run_with_one_line_naming_its_file(corpus, tmp_path: Path):
    """A 400 MiB line, with the line bound raised past it, in a worker allowed 400 MiB and configured as the job
    configures its own cluster: the worker's nanny kills it past its limit, and the run fails with one line naming
    the file it was reading (no retry: allowed failures 0). The snapshot is not written."""
    day = tmp_path / "input" / "submission_date=20261101"
    day.mkdir(parents=True)
    shutil.copy(Path(corpus.files[0]), day / "good.ndjson.gz")
    with gzip.open(day / "huge.ndjson.gz", "wb", compresslevel=1) as out:
        for _ in range(400):
            out.write(b"x" * 2**20)
    job = replace(
        config(corpus, tmp_path / "snap"),
        inputs=[str(tmp_path / "input")],
        dates=["20261101"],
        limits=replace(Limits.from_settings(), line_bytes=2**31),
    )
    with (
        dask.config.set(CLUSTER_CONFIG | {"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="400MiB", dashboard_address=":0") as cluster,
        Client(cluster) as client,
        pytest.raises(JobFailed) as failed,
    ):
        run_job(job, client=client, say=lambda *_: None)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("1 workers were lost while reading file://") and "huge.ndjson.gz" in message
    assert not (tmp_path / "snap").exists() or not list_dates(str(tmp_path / "snap"))
