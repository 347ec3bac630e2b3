"""Benchmark of the batch job. On one core: the whole `aggregator run` (what a user meets) and the job's
in-process part, each against the parsing floor, and where the whole run's time goes; then end-to-end runs with
1 and 2 workers. Writes its figures, with the machine's, to a markdown file.

    python bench/job.py --pings 20000 --output docs/benchmarks.md

The floor is what no aggregator can beat: gzip decompression plus `orjson.loads` of every line. The single-core
jobs run in the same rounds, alternating, everything pinned to one core, best of --repeat, so that their ratios
hold on a noisy machine.

The phases come from Dask's own record of the command's tasks: this module is the preload of its scheduler,
which logs every task's compute interval by key prefix (`dask_setup`), and of its worker, which writes its tasks'
CPU time by key prefix as it closes (`dask_teardown`). Dask fuses a chain of bag tasks into one task named after
some of its functions only, so the time by function comes from a second run of the same command with the bag
optimisation off (`DASK_BAG_OPTIMIZE=False`), where each function is its own task.
"""

import argparse
import contextlib
import gzip
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from distributed import Scheduler, Worker
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils import key_split
from report import machine, write_section  # bench/report.py, beside this file

from aggregator.extract import Options
from aggregator.inputs import discover
from aggregator.job import JobConfig, connect, run_job, shard_count
from aggregator.layouts import Definitions
from aggregator.tasks import aggregate_chunk

CORE = max(os.sched_getaffinity(0))  # the single-core rounds' core: core 1 of two
AGGREGATOR = Path(sys.executable).with_name("aggregator")  # the command installed beside this interpreter
TASK_LOG = "BENCH_JOB_TASK_LOG"  # environment variable: where the scheduler's preload writes the task log
CPU_LOG = "BENCH_JOB_CPU_LOG"  # environment variable: where each worker's preload writes its tasks' CPU time

# The job's functions, as they name their Dask tasks, and their phases. A task named after none of them is
# Dask's own (DASK_OWN: bag bookkeeping, the delayed definitions) or "other", so that renamed or new tasks show
# in the table instead of failing it.
PHASES = {
    "aggregate_chunk": "extraction",
    "split": "split",
    "pluck": "split",
    "merge": "reduction",
    "stage_reduction": "rollup and staging",
    "without_samples": "split",
    "deal_clients": "client level",
    "client_shard": "client level",
}
EXTRACTION = "extraction"
DASK_OWN = {"from_sequence", "finalize", "Definitions"}
SCHEDULING = "Dask: scheduling, its own tasks, gaps between tasks"
STARTUP = "start-up: process start until the first ping is read"
CLUSTER = "the cluster's work: first ping read until the last task ends"
COMMIT = "commit: after the last task until the command exits"
BURST = 0.01  # seconds: lines printed this close to the one before are one burst in the table of moments


@dataclass
class Timeline:
    """A timed job, in seconds since the epoch (the clock of Dask's task log): its start and end and, for the
    command's runs, each task's key prefix with its compute interval, and each line printed with when."""

    started: float
    ended: float
    cpu: float  # user + system seconds of all its processes
    tasks: list[tuple[str, float, float]] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)
    task_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds in the workers' tasks, by key prefix

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class TaskLog(SchedulerPlugin):
    """Every task's compute interval as its worker reports it, written out as JSON when the scheduler closes."""

    def __init__(self, path: str):
        self.path = path
        self.tasks: list[tuple[str, float, float]] = []

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        for interval in kwargs.get("startstops", ()):
            if interval["action"] == "compute":
                self.tasks.append((key_split(key), interval["start"], interval["stop"]))

    async def close(self) -> None:
        Path(self.path).write_bytes(orjson.dumps(self.tasks))


def dask_setup(server) -> None:
    """As the preload of the command's scheduler and workers starts (distributed.scheduler.preload,
    distributed.worker.preload): the scheduler keeps the run's task log."""
    if (path := os.environ.get(TASK_LOG)) and isinstance(server, Scheduler):
        server.add_plugin(TaskLog(path))


def dask_teardown(server) -> None:
    """As a worker closes: writes the CPU time its tasks took by key prefix, from Dask's own metrics of them."""
    if (path := os.environ.get(CPU_LOG)) and isinstance(server, Worker):
        cpu: dict[str, float] = defaultdict(float)
        for key, seconds in server.digests_total.items():
            if isinstance(key, tuple) and key[0] == "execute" and key[-2:] == ("thread-cpu", "seconds"):
                cpu[key[-3]] += seconds
        Path(f"{path}.{os.getpid()}").write_bytes(orjson.dumps(cpu))


def floor(files: list[str]) -> int:
    """Decompress and parse every line, nothing else; returns the pings parsed."""
    pings = 0
    for path in files:
        with gzip.open(path, "rb") as f:
            for line in f:
                with contextlib.suppress(orjson.JSONDecodeError):
                    orjson.loads(line)
                pings += 1
    return pings


def aggregate(files: list[str], definitions: Definitions, clients: bool = True) -> int:
    """What one worker does for these files: read, parse, extract, accumulate (with or without the samples of the
    client-level weighting), finish."""
    pings = 0
    for chunk in discover(files, []):
        pings += aggregate_chunk(chunk, definitions, Options(clients=clients)).stats.total("pings")
    return pings


def cpu_seconds(who: int) -> float:
    """User and system CPU time of this process (RUSAGE_SELF) or of its children that ended (RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def stopwatch(job: Callable[[], object]) -> Callable[[], Timeline]:
    """`job`, timed."""

    def timed() -> Timeline:
        started, cpu = time.time(), cpu_seconds(resource.RUSAGE_SELF)
        job()
        return Timeline(started, time.time(), cpu_seconds(resource.RUSAGE_SELF) - cpu)

    return timed


def best_of(repeat: int, *jobs: Callable[[], Timeline]) -> list[Timeline]:
    """Each job's fastest round, the jobs alternating so that they share the machine's moods."""
    rounds = [[job() for job in jobs] for _ in range(repeat)]
    return [min(runs, key=lambda run: run.seconds) for runs in zip(*rounds, strict=True)]


@contextlib.contextmanager
def pinned(core: int) -> Iterator[None]:
    """This process on `core` alone (what it starts inherits it), then back on the cores it had."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def command_env(**extra: str) -> dict[str, str]:
    """The environment of the command's runs: this module as the preload of its scheduler and workers, and output
    unbuffered so that each line is timed as it is printed."""
    path = [p for p in (os.environ.get("PYTHONPATH"), str(Path(__file__).resolve().parent)) if p]
    return os.environ | {
        "PYTHONPATH": os.pathsep.join(path),
        "PYTHONUNBUFFERED": "1",
        "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": f"['{Path(__file__).stem}']",
        "DASK_DISTRIBUTED__WORKER__PRELOAD": f"['{Path(__file__).stem}']",
        **extra,
    }


def fresh(snapshots: Path) -> Path:
    """A new snapshot path under `snapshots`, which the benchmark removes only once every run is done: a run
    right after a removal of thousands of files pays for the file system's reuse of their inodes (ext4 checks
    each recently freed one: half a second of a run's zarr writes here), which a user's run does not meet."""
    return snapshots / uuid.uuid4().hex


def command_run(corpus, snapshot: Path, env: dict[str, str], *options: str) -> Timeline:
    """`aggregator run` on one worker process into a new snapshot, the whole process tree pinned to CORE."""
    dates = [arg for date in corpus.dates for arg in ("--date", date)]
    command = ["taskset", "-c", str(CORE), str(AGGREGATOR), "run", "--input", corpus.output, *dates]
    command += ["--snapshot", str(snapshot), "--workers", "1", "--no-publish", "--no-progress"]
    command += ["--definitions", corpus.histograms_definitions, *options]
    with tempfile.TemporaryDirectory() as tmp:
        log, cpu_log, errors = Path(tmp, "tasks.json"), Path(tmp, "cpu.json"), Path(tmp, "stderr")
        with errors.open("w") as stderr:
            started, cpu = time.time(), cpu_seconds(resource.RUSAGE_CHILDREN)
            with subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env | {TASK_LOG: str(log), CPU_LOG: str(cpu_log)},
            ) as process:
                lines = [(time.time(), line.rstrip("\n")) for line in process.stdout]
            ended, cpu = time.time(), cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read_text()}")
        tasks = [tuple(task) for task in orjson.loads(log.read_bytes())] if log.exists() else []
        task_cpu: dict[str, float] = defaultdict(float)
        for worker in Path(tmp).glob(f"{cpu_log.name}.*"):
            for prefix, seconds in orjson.loads(worker.read_bytes()).items():
                task_cpu[prefix] += seconds
    return Timeline(started, ended, cpu, tasks, lines, task_cpu)


def phase_of(prefix: str) -> str:
    """A task's phase, from the job's functions its key prefix names (a fused task's names them all); a name
    that extends one of them (`merge_bounded`) is taken as a variant of it."""
    words = prefix.split("-")
    phases = dict.fromkeys(  # a function of its own name first, else the function it extends
        PHASES.get(w, p) for w in words for name, p in PHASES.items() if w == name or w.startswith(f"{name}_")
    )
    if phases:
        return " + ".join(phases)
    return SCHEDULING if DASK_OWN.intersection(words) else "other"


def milestones(run: Timeline) -> tuple[float, float]:
    """When the first ping was read (the first extraction task began, or the first task when none is known as
    one) and when the last task ended."""
    extraction = [start for prefix, start, _ in run.tasks if EXTRACTION in phase_of(prefix)]
    return min(extraction or [start for _, start, _ in run.tasks]), max(stop for _, _, stop in run.tasks)


def stages(run: Timeline) -> dict[str, float]:
    """The run's start-up, the cluster's work and its commit; empty when no Dask task was recorded."""
    if not run.tasks:
        return {}
    first, last = milestones(run)
    return {STARTUP: first - run.started, CLUSTER: last - first, COMMIT: run.ended - last}


def wall_by_prefix(run: Timeline) -> dict[str, float]:
    """Each task prefix's compute time in the cluster's work (its tasks begun from the first ping read on)."""
    first, _ = milestones(run)
    seconds: dict[str, float] = defaultdict(float)
    for prefix, start, stop in run.tasks:
        if start >= first:
            seconds[prefix] += stop - start
    return seconds


def by_phase(run: Timeline) -> list[tuple[str, float, float]]:
    """The cluster's work by phase, each labelled with its task prefixes: the wall time and the CPU time of its
    tasks; SCHEDULING's wall time is the rest of the cluster's work (Dask's own tasks, scheduling, waiting)."""
    wall, cpu = wall_by_prefix(run), run.task_cpu
    prefixes: dict[str, set[str]] = defaultdict(set, {SCHEDULING: set()})
    for prefix in wall.keys() | cpu.keys():
        prefixes[phase_of(prefix)].add(prefix)
    known = list(dict.fromkeys(PHASES.values()))
    rows = []
    for phase in sorted(prefixes, key=lambda p: (p == SCHEDULING, known.index(p) if p in known else len(known), p)):
        names = ", ".join(f"`{prefix}`" for prefix in sorted(prefixes[phase]))
        seconds = sum(wall.get(prefix, 0.0) for prefix in prefixes[phase])
        if phase == SCHEDULING:
            seconds = stages(run)[CLUSTER] - sum(wall.values()) + seconds
        rows.append((f"{phase} ({names})", seconds, sum(cpu.get(prefix, 0.0) for prefix in prefixes[phase])))
    return rows


def phase_table(whole: Timeline, phased: Timeline) -> list[str]:
    """Where the time of each run went: start-up, the cluster's work (by phase, from the run without fusion, in
    wall and in CPU time), commit."""

    def cells(seconds: float | None, total: float) -> str:
        return " | " if seconds is None else f"{seconds:.2f} | {seconds / total:.0%}"

    rows = [
        "| phase | whole run: seconds | share | phase run: seconds | share | phase run: CPU seconds | share |",
        "|---|---|---|---|---|---|---|",
    ]
    split = [stages(whole), stages(phased)]
    for stage in (STARTUP, CLUSTER, COMMIT):
        wall = f"{cells(split[0].get(stage), whole.seconds)} | {cells(split[1].get(stage), phased.seconds)}"
        rows.append(f"| {stage} | {wall} | | |")
        if stage == CLUSTER and phased.tasks:
            rows += [
                f"| - {label} | | | {cells(seconds, phased.seconds)} | {cells(cpu, phased.cpu)} |"
                for label, seconds, cpu in by_phase(phased)
            ]
    outside = phased.cpu - sum(phased.task_cpu.values())
    rows.append(f"| CPU outside the tasks, in all the run's processes | | | | | {cells(outside, phased.cpu)} |")
    wall = f"{cells(whole.seconds, whole.seconds)} | {cells(phased.seconds, phased.seconds)}"
    rows.append(f"| the whole run | {wall} | {cells(phased.cpu, phased.cpu)} |")
    return rows


def moments(run: Timeline) -> list[str]:
    """A command's run as a table of moments: what it printed (a burst of lines as its first), when it read its
    first ping and ended its last task, when it exited."""
    events = [(run.started, "process started")]
    if run.tasks:
        first, last = milestones(run)
        events += [(first, "first ping read (the first extraction task began)"), (last, "last task ended")]
    bursts: list[tuple[float, str, int]] = []  # (when, first line, lines after it within BURST seconds)
    for i, (t, line) in enumerate(run.lines):
        if i and t - run.lines[i - 1][0] <= BURST:
            bursts[-1] = (*bursts[-1][:2], bursts[-1][2] + 1)
        else:
            bursts.append((t, line, 0))
    for t, line, more in bursts:
        line = " ".join(line.split())
        text = (line[:48] + "…" * (len(line) > 48)).replace("|", "\\|").replace("`", "'")
        events.append((t, f"printed `{text}`" + (f" and {more} more lines" if more else "")))
    events.append((run.ended, "process exited"))
    rows = ["| seconds since the command started | the whole run |", "|---|---|"]
    return rows + [f"| {t - run.started:.2f} | {what} |" for t, what in sorted(events)]


def peak_rss() -> int:
    """A worker's peak resident memory in bytes: VmHWM, as getrusage's ru_maxrss keeps the peak of the process a
    worker was forked from across its exec."""
    return int(re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) * 1024


def end_to_end(corpus, workers: int, snapshot: Path, shards: int | None = None) -> tuple[float, list[int]]:
    """Wall time of a whole run on a fresh LocalCluster started as `aggregator run` starts it (`connect`: its
    cluster settings), and each worker's peak RSS in bytes."""
    started = time.perf_counter()
    config = JobConfig(
        inputs=[corpus.output],
        snapshot=str(snapshot),
        dates=corpus.dates,
        definitions=corpus.histograms_definitions,
        shards=shards,
        workers=workers,
        dashboard_address=":0",
        progress=False,
    )
    with connect(config) as client:
        run_job(config, client=client, say=lambda *_: None)
        seconds = time.perf_counter() - started
        peaks = client.run(peak_rss)
    return seconds, sorted(peaks.values())


def main() -> None:
    # Imported here, not with the rest: this module is also the scheduler's preload in the timed runs, whose
    # start-up it must not lengthen with the generator's imports.
    from aggregator.generate import generate_corpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", default=".bench")
    parser.add_argument("--output", help="markdown file to write the figures into")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    corpus_dir = workdir / f"corpus-{args.pings}"
    corpus = generate_corpus(str(corpus_dir), pings=args.pings, days=2, seed=5, files_per_day=8)
    mib = corpus.bytes_uncompressed / 2**20
    definitions = Definitions.load(corpus.histograms_definitions)

    snapshots = workdir / "snapshots"
    shutil.rmtree(snapshots, ignore_errors=True)  # a former run's, stopped before it removed them
    load = os.getloadavg()[0]
    with pinned(CORE):
        floor_run, job_run, pings_job_run, undefined_job_run, whole, pings_whole, phased = best_of(
            args.repeat,
            stopwatch(lambda: floor(corpus.files)),
            stopwatch(lambda: aggregate(corpus.files, definitions)),
            stopwatch(lambda: aggregate(corpus.files, definitions, clients=False)),
            stopwatch(lambda: aggregate(corpus.files, Definitions.load(None))),
            lambda: command_run(corpus, fresh(snapshots), command_env()),
            lambda: command_run(corpus, fresh(snapshots), command_env(), "--no-clients"),
            lambda: command_run(corpus, fresh(snapshots), command_env(DASK_BAG_OPTIMIZE="False")),
        )
    # one worker, then two, in each round; each count's fastest round (its peaks with it)
    rounds = [{n: end_to_end(corpus, n, fresh(snapshots)) for n in (1, 2)} for _ in range(args.repeat)]
    runs = {n: min((one[n] for one in rounds), key=lambda run: run[0]) for n in (1, 2)}
    half = generate_corpus(
        str(workdir / f"corpus-{args.pings // 2}"), pings=args.pings // 2, days=2, seed=5, files_per_day=4
    )
    half_run = end_to_end(half, 2, fresh(snapshots))
    unsharded = end_to_end(corpus, 2, fresh(snapshots), shards=1)
    shutil.rmtree(snapshots)
    shards = {c.pings: shard_count(discover([c.output], c.dates)) for c in (corpus, half)}

    def single_core(label: str, run: Timeline) -> str:
        s, cpu = run.seconds, run.cpu
        speed = f"{s:.2f} | {corpus.pings / s:,.0f} | {mib / s:.1f} | {floor_run.seconds / s:.2f}"
        return f"| {label} | {speed} | {cpu:.2f} | {floor_run.cpu / cpu:.2f} |"

    def memory(peaks: list[int]) -> str:
        return ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks)

    host = machine("numpy", "orjson", "dask")
    rows = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {host}; load average {load:.1f} when it began.",
        "",
        f"Corpus: {corpus.pings} generated pings ({corpus.malformed} malformed), {mib:.0f} MiB of JSON in "
        f"{len(corpus.files)} gzip files (`aggregator generate --pings {args.pings} --days 2 --seed 5 "
        "--files-per-day 8`).",
        "",
        f"| one core (`taskset -c {CORE}`), rounds alternating, best of {args.repeat} | seconds | pings/s "
        "| MiB/s of JSON | throughput vs floor | CPU seconds, all its processes | vs floor, in CPU time |",
        "|---|---|---|---|---|---|---|",
        single_core("floor: gunzip + `orjson.loads` of every line", floor_run),
        single_core("extraction + aggregation in one process (`aggregate_chunk` over every file)", job_run),
        single_core("the same, per-ping weighting only (`Options(clients=False)`)", pings_job_run),
        single_core("the same, both weightings, without definition files (layouts from the pings)", undefined_job_run),
        single_core("`aggregator run --workers 1 --no-publish`, the whole run: what a user meets", whole),
        single_core("the same with `--no-clients`: per-ping weighting only", pings_whole),
        single_core("the same with `DASK_BAG_OPTIMIZE=False`, each function its own task (the phase run)", phased),
        "",
        f"The client-level weighting adds {whole.seconds / pings_whole.seconds - 1:.0%} to the whole run "
        f"({whole.cpu / pings_whole.cpu - 1:.0%} in CPU time).",
        "",
        "Where the time of the two runs went, each in its fastest round. Start-up, the cluster's work and the "
        "commit of each run come from the times of its tasks in Dask's task log and of its process; the cluster's "
        "work by phase from the phase run alone, since Dask fuses the whole run's tasks across phases.",
        "",
        *phase_table(whole, phased),
        "",
        *moments(whole),
        "",
        f"| end to end on a LocalCluster (start-up included); 1 and 2 workers: rounds alternating, best of "
        f"{args.repeat} | seconds | speed-up | peak RSS per worker |",
        "|---|---|---|---|",
    ]
    for n, (seconds, peaks) in runs.items():
        label = f"{n} worker(s), {corpus.pings} pings, {shards[corpus.pings]} shards a day"
        rows.append(f"| {label} | {seconds:.1f} | {runs[1][0] / seconds:.2f} | {memory(peaks)} |")
    half_label = f"2 workers, {half.pings} pings (same file size, half the files), {shards[half.pings]} shards a day"
    rows.append(f"| {half_label} | {half_run[0]:.1f} | | {memory(half_run[1])} |")
    label = f"2 workers, {corpus.pings} pings, `--shards 1` (a day in one reduction)"
    rows.append(f"| {label} | {unsharded[0]:.1f} | | {memory(unsharded[1])} |")
    text = "\n".join(rows)
    print(text)
    if args.output:
        write_section(Path(args.output), "bench/job.py", "The batch job (`make bench`)", text)


if __name__ == "__main__":
    main()
