"""The batch job: discover inputs, aggregate them on a Dask cluster, check them, write the snapshot."""

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import dask
import dask.bag as db
from dask.bag.core import Item
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from distributed import Client, LocalCluster, performance_report, progress
from distributed.scheduler import KilledWorker
from distributed.utils import silence_logging_cmgr

from aggregator.aggregate import split
from aggregator.bounds import Limits, merge_bounded
from aggregator.extract import Options
from aggregator.inputs import DEFAULT_BLOCKSIZE, Chunk, discover
from aggregator.layouts import Definitions
from aggregator.snapshot import KINDS, commit_run, discard_run, finish_run, location, new_run_id, prepare, store_exists
from aggregator.stats import RunStats
from aggregator.tasks import (
    Staged,
    aggregate_chunk,
    client_shard,
    deal_clients,
    stage_reduction,
    without_samples,
)

SHARD_BYTES = 32 * 2**20
# glibc's thresholds for a worker process, in place of distributed's MALLOC_TRIM_THRESHOLD_ of 64 KiB. Setting
# either fixes both, so with distributed's alone every block over 128 KiB (a 1 MiB block of gzip input, a
# partition's arrays) was mapped and unmapped each time: 1.6 million page faults and a fifth of the run's CPU on
# 20,000 pings. At 32 MiB (glibc's own ceiling when it adjusts them) a worker keeps at most that much freed
# memory for reuse. Deployments set the same (deploy/: DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON).
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 2**25, "MALLOC_MMAP_THRESHOLD_": 2**25}
# A worker is given a task only when it has a thread free for it: a task's input is read in one go, so nothing
# is gained by queueing on workers, and a worker that dies then takes only the task it was running with it (the
# one whose file the run names).
CLUSTER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    **{f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in WORKER_MALLOC.items()},
}
MAX_SHARDS = 64


def worker_environment() -> dict[str, str]:
    """The variable that gives WORKER_MALLOC to a `dask worker` started apart from the job (deploy/)."""
    return {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": json.dumps(WORKER_MALLOC)}


class JobFailed(RuntimeError):
    """The run was stopped before changing the snapshot: too much bad input, unreadable files, or the scheduler lost."""


class SchedulerLost(JobFailed):
    """The Dask scheduler could not be reached, or went away while the run used it."""


@dataclass
class JobConfig:
    inputs: list[str]
    snapshot: str
    dates: list[str] = field(default_factory=list)
    definitions: str | None = None
    scalar_definitions: str | None = None
    channels: list[str] | None = None
    include_fennec: bool = False
    max_bad_fraction: float = 0.05
    skip_unreadable: bool = False
    scheduler: str | None = None
    workers: int | None = None
    dashboard_address: str | None = ":8787"
    split_every: int = 4  # a reduction holds about this many partitions' aggregates at once
    shards: int | None = None  # reductions per submission date; None: shard_count of the input
    blocksize: int = DEFAULT_BLOCKSIZE
    performance_report: str | None = None
    progress: bool = True
    limits: Limits = field(default_factory=Limits.from_settings)
    clients: bool = True  # the client-level weighting beside the per-ping one (aggregator/clients.py)


@dataclass
class JobSummary:
    snapshot: str
    dates: list[str]
    files: int
    pings: int
    blank: int
    aggregated: int
    filtered: Counter
    malformed: Counter
    unreadable: dict[str, str]
    dropped: Counter
    overflow: int
    rows: dict[str, dict[str, int]]  # date -> kind -> rows written
    seconds: float

    def lines(self) -> list[str]:
        """A human summary."""

        def reasons(counts: Counter) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

        written = sum(n for kinds in self.rows.values() for n in kinds.values())
        out = [
            f"pings read       {self.pings} from {self.files} files (and {self.blank} blank lines)",
            f"aggregated       {self.aggregated}",
            f"filtered         {sum(self.filtered.values())} ({reasons(self.filtered)})",
            f"malformed        {sum(self.malformed.values())} ({reasons(self.malformed)})",
            f"skipped inside   {reasons(self.dropped)}; clamped values {self.overflow}",
        ]
        out += [f"unreadable       {path}: {error}" for path, error in sorted(self.unreadable.items())]
        for date, kinds in sorted(self.rows.items()):
            out.append(f"rows written     {date}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
        out.append(f"total rows       {written} in {self.snapshot}, {self.seconds:.1f} s")
        return out


@contextlib.contextmanager
def connect(config: JobConfig) -> Iterator[Client]:
    """A client of the configured scheduler, or of a LocalCluster of worker processes (one thread each: the
    aggregation is pure Python, so processes give the parallelism)."""
    address = config.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            client = Client(address)
        except OSError as error:
            raise SchedulerLost(f"cannot reach the Dask scheduler at {address}: {error}") from error
        except (TypeError, RuntimeError) as error:  # distributed's: tls:// without certificates, tcp:// refused
            raise SchedulerLost(f"cannot connect to the Dask scheduler at {address}: {error}") from error
        try:
            yield client
        finally:
            # A client that lost its scheduler logs its abandoned reconnection as a traceback: the run's error
            # message says it once, plainly.
            with silence_logging_cmgr("critical") if client.status != "running" else contextlib.nullcontext():
                client.close()
        return
    workers = config.workers or os.cpu_count() or 1
    with (
        dask.config.set(CLUSTER_CONFIG),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=config.dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _summary(config: JobConfig, stats: RunStats, dates: list[str], rows: dict, started: float) -> JobSummary:
    return JobSummary(
        snapshot=config.snapshot,
        dates=dates,
        files=len(stats.files),
        pings=stats.total("pings"),
        blank=stats.total("blank"),
        aggregated=stats.total("aggregated"),
        filtered=stats.reasons("filtered"),
        malformed=stats.reasons("malformed"),
        unreadable=stats.errors,
        dropped=stats.dropped,
        overflow=stats.overflow,
        rows=rows,
        seconds=time.perf_counter() - started,
    )


def check_input(config: JobConfig, stats: RunStats, dates: list[str]) -> None:
    """Refuse to write a snapshot from input that is too broken to trust."""
    if stats.errors:
        names = "; ".join(f"{path} ({error})" for path, error in sorted(stats.errors.items()))
        if not config.skip_unreadable:
            raise JobFailed(f"unreadable input files: {names} (--skip-unreadable skips them)")
        # a large file is read in byte ranges: one that failed after others were aggregated cannot be skipped whole
        partial = sorted(path for path, f in stats.files.items() if f.error and f.pings)
        if partial:
            raise JobFailed(f"input files failed after part of them was aggregated: {', '.join(partial)} ({names})")
    fraction = stats.bad_fraction()
    if fraction > config.max_bad_fraction:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.reasons("malformed").items()))
        raise JobFailed(
            f"{fraction:.1%} of pings are malformed ({reasons}), "
            f"more than --max-bad-fraction {config.max_bad_fraction:.1%}"
        )
    aggregated = Counter()
    for f in stats.files.values():
        aggregated.update(f.dates)
    empty = [d for d in dates if not aggregated[d]]
    if empty:
        raise JobFailed(f"no pings aggregated for {', '.join(empty)}")


def shard_count(chunks: list[Chunk], shard_bytes: int = SHARD_BYTES) -> int:
    """Reductions per submission date: one per `shard_bytes` of input files (as stored) of the largest date, at
    most MAX_SHARDS. A reduction holds the cells of its share of the day only, so a worker's memory follows
    `shard_bytes`, not the size of the day; tasks grow as chunks x shards, hence the cap."""
    per_date: Counter = Counter()
    for chunk in chunks:
        per_date[chunk.date] += (chunk.end or chunk.size) - chunk.start
    return max(1, min(MAX_SHARDS, -(-max(per_date.values(), default=0) // shard_bytes)))


def run_job(config: JobConfig, client: Client | None = None, say=print) -> JobSummary:
    """Aggregate the configured inputs and write their snapshot; raises JobFailed, changing no date of the
    snapshot, when the input fails the checks or the cluster's scheduler is lost."""
    started = time.perf_counter()
    snapshot = location(config.snapshot)  # absolute: workers may not share the client's working directory
    chunks = discover(config.inputs, config.dates, config.blocksize)
    definitions = Definitions.load(config.definitions, config.scalar_definitions)
    run_id, fresh = new_run_id(), not store_exists(snapshot)
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(connect(config))
        try:
            staged = _aggregate_and_stage(config, client, chunks, definitions, snapshot, run_id, say)
        except Exception as error:
            reason = getattr(error, "reason", None)  # distributed's FutureCancelledError says why
            if client.status == "running" and reason != "scheduler-connection-lost":
                raise
            raise SchedulerLost(
                f"lost the Dask scheduler at {client.scheduler.address} while the job ran "
                f"({reason or type(error).__name__}): no submission date of {config.snapshot} was changed; "
                "re-run the job once the scheduler is back"
            ) from error
    stats = RunStats.total_of(part.stats for part in staged.values())
    dates = sorted(config.dates) or sorted({d for f in stats.files.values() for d in f.dates})
    try:
        check_input(config, stats, dates)
    except JobFailed:
        discard_run(snapshot, run_id, whole_store=fresh)
        raise
    # Every part is staged: only now do readers see the new runs (the client finishes and switches them in, and
    # needs no scheduler for it).
    say(f"committing {len(dates)} submission dates to {snapshot}")
    prepare(snapshot, dates)
    rows = {}
    for date in dates:
        mine = [s for (group, _), s in staged.items() if group in (date, None)]
        attrs = _run_attrs(mine, date, definitions)
        rows[date] = {}
        for kind in KINDS:
            parts = [p.parts[date][kind] for p in mine if date in p.parts]
            rows[date][kind] = sum(n for _, _, n in parts)
            finish_run(snapshot, kind, date, run_id, {name: d for name, d, _ in parts}, rows[date][kind], attrs)
    for date in dates:
        for kind in KINDS:
            commit_run(snapshot, kind, date, run_id)
    return _summary(config, stats, dates, rows, started)


def _run_attrs(staged: list[Staged], date: str, definitions: Definitions) -> dict:
    """A run's attributes (docs/snapshot.md) from the reductions that read its submission date's files."""
    stats = RunStats.total_of(part.stats for part in staged)
    files = stats.for_date(date)
    names = set().union(*(p.names.get(date, ()) for p in staged))
    return {
        "inputs": [f.to_json() for f in sorted(files.files.values(), key=lambda f: f.path)],
        "pings": {
            "read": files.total("pings"),
            "blank": files.total("blank"),
            "aggregated": sum(f.dates[date] for f in files.files.values()),
            "filtered": dict(sorted(files.reasons("filtered").items())),
            "malformed": dict(sorted(files.reasons("malformed").items())),
        },
        "dropped": dict(sorted(stats.dropped.items())),
        "overflow": stats.overflow,
        "definitions": definitions.sources,
        "descriptions": {name: description for name in sorted(names) if (description := definitions.description(name))},
    }


def _aggregate_and_stage(
    config: JobConfig, client: Client, chunks: list[Chunk], definitions: Definitions, snapshot: str, run_id: str, say
) -> dict[tuple[str | None, int], Staged]:
    """The run's work on the cluster: aggregate, reduce and stage every part of the run (uncommitted); returns
    what each (date folder, shard) reduction staged."""
    options = Options(
        dates=frozenset(config.dates) or None,
        channels=frozenset(config.channels) if config.channels else None,
        include_fennec=config.include_fennec,
        limits=config.limits,
        clients=config.clients,
    )
    shards = config.shards or shard_count(chunks)
    combine = partial(merge_bounded, undefined_metrics=config.limits.undefined_metrics)
    report = config.performance_report
    with performance_report(filename=report, mode="inline") if report else contextlib.nullcontext():
        say(f"Dask dashboard: {client.dashboard_link}")
        # One tree reduction per submission_date folder (chunks from elsewhere share one) and shard: the reductions
        # run in parallel, each is staged where it was reduced, and only its counters come back.
        groups: dict[str | None, list[Chunk]] = {}
        for chunk in chunks:
            groups.setdefault(chunk.date, []).append(chunk)
        say(f"aggregating {len(chunks)} input chunks in {len(groups) * shards} reductions into {snapshot}")
        stages, readers = {}, {}
        for date, group in groups.items():
            aggregates = db.from_sequence(group, npartitions=len(group)).map(
                aggregate_chunk, dask.delayed(definitions, pure=True), options
            )
            readers[_token(aggregates.name)] = group
            clients = client_cells(aggregates, shards) if config.clients else []
            aggregates = aggregates.map(without_samples)
            if shards > 1:
                aggregates = aggregates.map(split, shards)
            for s in range(shards):
                cells = aggregates.pluck(s) if shards > 1 else aggregates
                total = cells.reduction(combine, combine, split_every=config.split_every)
                readers[_token(total.key)] = group  # its first tasks may be fused with the reading ones
                part = f"{'folder' if date else 'files'}-{s:03d}"
                stage = partial(stage_reduction, snapshot=snapshot, run_id=run_id, part=part)
                weighted = [clients[s]] if clients else []
                stages[date, s] = joined(stage_reduction.__name__, stage, total, *weighted)
        futures = client.compute(list(stages.values()))
        if config.progress:
            progress(futures)
            say("")
        try:
            return dict(zip(stages, client.gather(futures), strict=True))
        except KilledWorker as error:
            raise JobFailed(worker_lost(error, readers)) from error


def client_cells(aggregates: db.Bag, shards: int) -> list[Item]:
    """The client-level cells of each shard, from a bag of partition aggregates: their samples dealt by the shard
    of their cell (a shuffle: shard s gathers part s of every partition), each shard's weighted on its own."""
    dealt = aggregates.map(deal_clients, shards)
    name = f"{client_shard.__name__}-{tokenize(dealt, shards)}"
    partitions = [(dealt.name, p) for p in range(dealt.npartitions)]
    tasks = {(name, s): (client_shard, partitions, s) for s in range(shards)}
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[dealt])
    return [Item(graph, (name, s), layer=name) for s in range(shards)]


def joined(prefix: str, function: Callable, *items: Item) -> Item:
    """An Item of `function(*values of items)`, named `prefix`-token: a task of its own, so the items' graphs are
    optimised together with the rest of the run's, not each alone as a delayed call would (which fuses each shard's
    chain, and so reads and aggregates every chunk once per shard)."""
    name = f"{prefix}-{tokenize(function, *items)}"
    graph = HighLevelGraph.from_collections(name, {name: (function, *(i.key for i in items))}, dependencies=items)
    return Item(graph, name)


def _token(name: str) -> str:
    """The token that ends a Dask layer's name; a task that reads chunk i of a group is named `aggregate_chunk-`,
    possibly fused with the tasks after it, then the token of the last of them, and numbered i."""
    return name.rsplit("-", 1)[-1]


def worker_lost(error: KilledWorker, readers: dict[str, list[Chunk]]) -> str:
    """One line for a task whose workers all died (most often killed past their memory limit): what it was
    reading, when it was reading input."""
    name, index = error.task if isinstance(error.task, tuple) and len(error.task) == 2 else (str(error.task), None)
    group = readers.get(_token(name)) if name.startswith(f"{aggregate_chunk.__name__}-") else None
    if group is not None and isinstance(index, int) and index < len(group):
        chunk = group[index]
        what = f"reading {chunk.url}" + (f" (bytes {chunk.start}-{chunk.end})" if chunk.end is not None else "")
    else:
        what = f"running {name}"
    return (
        f"{error.allowed_failures + 1} workers were lost while {what}, the last {error.last_worker.address}; "
        "most often a worker past its memory limit: see its log"
    )
