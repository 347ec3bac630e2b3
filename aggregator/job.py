"""The batch job: discover inputs, aggregate them on a Dask cluster, check them, write the snapshot."""

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import dask
import dask.bag as db
from distributed import Client, LocalCluster, futures_of, performance_report, progress
from distributed.utils import silence_logging_cmgr

from aggregator.aggregate import Aggregate, merge
from aggregator.extract import Options
from aggregator.inputs import DEFAULT_BLOCKSIZE, Chunk, discover
from aggregator.layouts import Definitions
from aggregator.snapshot import commit_run, location, prepare
from aggregator.stats import RunStats
from aggregator.tasks import aggregate_chunk, write_day


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
    split_every: int = 8
    blocksize: int = DEFAULT_BLOCKSIZE
    performance_report: str | None = None
    progress: bool = True


@dataclass
class JobSummary:
    snapshot: str
    dates: list[str]
    files: int
    pings: int
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
            f"pings read       {self.pings} from {self.files} files",
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


def run_job(config: JobConfig, client: Client | None = None, say=print) -> JobSummary:
    """Aggregate the configured inputs and write their snapshot; raises JobFailed, changing no date of the
    snapshot, when the input fails the checks or the cluster's scheduler is lost."""
    started = time.perf_counter()
    snapshot = location(config.snapshot)  # absolute: workers may not share the client's working directory
    chunks = discover(config.inputs, config.dates, config.blocksize)
    definitions = Definitions.load(config.definitions, config.scalar_definitions)
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(connect(config))
        try:
            stats, dates, staged = _aggregate_and_stage(config, client, chunks, definitions, snapshot, say)
        except JobFailed:
            raise
        except Exception as error:
            reason = getattr(error, "reason", None)  # distributed's FutureCancelledError says why
            if client.status == "running" and reason != "scheduler-connection-lost":
                raise
            raise SchedulerLost(
                f"lost the Dask scheduler at {client.scheduler.address} while the job ran "
                f"({reason or type(error).__name__}): no submission date of {config.snapshot} was changed; "
                "re-run the job once the scheduler is back"
            ) from error
    # Every day is staged: only now do readers see the new runs (runs are switched in by the client, which needs
    # no scheduler for it).
    for date, kinds in staged.items():
        for kind, (run_id, _) in kinds.items():
            commit_run(snapshot, kind, date, run_id)
    rows = {date: {kind: n for kind, (_, n) in kinds.items()} for date, kinds in staged.items()}
    return _summary(config, stats, dates, rows, started)


def _aggregate_and_stage(
    config: JobConfig, client: Client, chunks: list[Chunk], definitions: Definitions, snapshot: str, say
) -> tuple[RunStats, list[str], dict[str, dict[str, tuple[str, int]]]]:
    """The run's work on the cluster: aggregate, check, and stage every date's runs (uncommitted)."""
    options = Options(
        dates=frozenset(config.dates) or None,
        channels=frozenset(config.channels) if config.channels else None,
        include_fennec=config.include_fennec,
    )
    report = config.performance_report
    with performance_report(filename=report) if report else contextlib.nullcontext():
        say(f"Dask dashboard: {client.dashboard_link}")
        say(f"aggregating {len(chunks)} input chunks")
        # One tree reduction per submission_date folder (chunks from elsewhere share one): the days reduce in
        # parallel and each is written where its aggregate already is.
        groups: dict[str | None, list[Chunk]] = {}
        for chunk in chunks:
            groups.setdefault(chunk.date, []).append(chunk)
        reductions = [
            db.from_sequence(group, npartitions=len(group))
            .map(aggregate_chunk, dask.delayed(definitions, pure=True), options)
            .reduction(merge, merge, split_every=config.split_every)
            for group in groups.values()
        ]
        totals = dict(zip(groups, [futures_of(r)[0] for r in client.persist(reductions)], strict=True))
        if config.progress:
            progress(list(totals.values()))
            say("")
        stats = RunStats()
        for part in client.gather([client.submit(_stats_of, t) for t in totals.values()]):
            stats.merge(part)
        dates = sorted(config.dates) or sorted({d for f in stats.files.values() for d in f.dates})
        check_input(config, stats, dates)
        say(f"writing {len(dates)} submission dates to {snapshot}")
        prepare(snapshot, dates)
        writes = {
            d: client.submit(write_day, [t for g, t in totals.items() if g in (d, None)], snapshot, d, definitions)
            for d in dates
        }
        staged = dict(zip(writes, client.gather(list(writes.values())), strict=True))
    return stats, dates, staged


def _stats_of(aggregate: Aggregate) -> RunStats:
    return aggregate.stats
