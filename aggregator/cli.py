"""The `aggregator` command line: run, publish, db, export, generate, demo, serve."""

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import re
import shlex
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from aggregator.export import FORMATS, ExportError, ExportFailed, export
from aggregator.inputs import InputError
from aggregator.job import JobConfig, JobFailed, run_job
from aggregator.settings import SettingError, setting
from aggregator.snapshot import check_location
from aggregator.store.commands import ERRORS as STORE_ERRORS
from aggregator.store.commands import add_commands, db_command, publish_after_run, publish_command
from aggregator.store.connect import configured, connect

INTERRUPTED = 130  # the shell's code for a command stopped by SIGINT (128 + 2)
BROKEN_PIPE = 141  # the shell's code for a command stopped by SIGPIPE (128 + 13), as `yes | head -1` gives


class CommandError(RuntimeError):
    """A command cannot do its work (a busy port, a publish that failed after the job): said in one line."""


def _date(text: str) -> str:
    if not re.fullmatch(r"\d{8}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYYMMDD")
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a calendar date") from error
    return text


def _number(text: str, kind: type[int] | type[float], low: float, high: float) -> int | float:
    """A number in [low, high], or argparse's one-line error saying what is expected."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        span = f"from {low} to {high}" if high != float("inf") else f"of at least {low}"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what} {span}")
    return value


def _fraction(text: str) -> float:
    return _number(text, float, 0, 1)


def _positive(text: str) -> int:
    return _number(text, int, 1, float("inf"))


def _count(text: str) -> int:
    return _number(text, int, 0, float("inf"))


def _port(text: str) -> int:
    return _number(text, int, 1, 65535)


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="aggregate pings into a snapshot")
    run.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="URL",
        help="hive root (submission_date=YYYYMMDD folders), folder, glob or file; repeatable",
    )
    run.add_argument(
        "--date",
        action="append",
        type=_date,
        default=[],
        metavar="YYYYMMDD",
        help="submission date to aggregate; repeatable (required for a hive root)",
    )
    run.add_argument("--snapshot", required=True, metavar="URL", help="zarr store to write")
    run.add_argument(
        "--scheduler",
        default=setting("DASK_SCHEDULER_ADDRESS"),
        metavar="ADDRESS",
        help="Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster)",
    )
    run.add_argument("--workers", type=_positive, help="LocalCluster worker processes (default: one per core)")
    run.add_argument(
        "--channels",
        type=lambda s: [c for c in s.split(",") if c],
        help="comma-separated channels to aggregate (default: nightly, aurora, beta, release)",
    )
    run.add_argument(
        "--definitions",
        default=setting("HISTOGRAM_DEFINITIONS"),
        metavar="URL",
        help="Histograms.json giving bucket layouts",
    )
    run.add_argument(
        "--scalar-definitions",
        default=setting("SCALAR_DEFINITIONS"),
        metavar="URL",
        help="Scalars.yaml giving scalar descriptions",
    )
    run.add_argument("--include-fennec", action="store_true", help="aggregate Fennec pings too")
    run.add_argument(
        "--no-clients",
        action="store_true",
        help="per-ping aggregates only, without the client-level weighting (docs/semantics.md)",
    )
    run.add_argument(
        "--max-bad-fraction",
        type=_fraction,
        default=0.05,
        metavar="F",
        help="fail, writing nothing, when more than this fraction of pings is malformed",
    )
    run.add_argument(
        "--skip-unreadable", action="store_true", help="skip unreadable files (reported) instead of failing"
    )
    run.add_argument("--performance-report", metavar="FILE", help="write Dask's HTML performance report")
    run.add_argument(
        "--split-every",
        type=_positive,
        default=4,
        help="fan-in of the tree reduction (a worker holds about this many partitions' aggregates at once)",
    )
    run.add_argument(
        "--shards",
        type=_positive,
        metavar="N",
        help="reductions per submission date (default: one per 32 MiB of the largest date's input files, at most 64)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--no-publish", action="store_true", help="write the snapshot only, even when a database is configured"
    )


def _add_generate(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser("generate", help="write synthetic pings and matching definitions")
    generate.add_argument("--output", required=True, metavar="DIR")
    generate.add_argument("--pings", type=_count, default=1000)
    generate.add_argument("--days", type=_positive, default=1)
    generate.add_argument("--seed", type=_count, default=0)
    generate.add_argument("--start-date", type=_date, default="20261101")
    generate.add_argument("--files-per-day", type=_positive, default=2)
    generate.add_argument("--malformed-fraction", type=_fraction, default=0.02)
    generate.add_argument("--plain", action="store_true", help="write .ndjson instead of .ndjson.gz")
    generate.add_argument(
        "--heavy-client-share",
        type=_fraction,
        metavar="F",
        help="share of each day's pings sent by a few heavy clients, tens to hundreds of pings a day each "
        "(default 0.2; the others send one to a few)",
    )


def _add_export(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("export", help="write snapshot aggregates as a hive-partitioned Parquet dataset")
    command.add_argument("--snapshot", required=True, metavar="URL", help="zarr store written by `aggregator run`")
    command.add_argument(
        "--date",
        action="append",
        type=_date,
        required=True,
        metavar="YYYYMMDD",
        help="submission date to export (both kinds); repeatable",
    )
    command.add_argument("--format", choices=FORMATS, default="parquet", help="dataset format (default: parquet)")
    command.add_argument(
        "--output",
        required=True,
        metavar="URL",
        help="the dataset's root folder, any fsspec URL; a date exported again replaces its partitions",
    )


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="generate sample pings, run the job, publish, serve: end to end")
    demo.add_argument("--workdir", default=".demo", metavar="DIR")
    demo.add_argument("--pings", type=_positive, default=2000)
    demo.add_argument("--days", type=_positive, default=2)
    demo.add_argument("--port", type=_port, help="port the API listens on (default: $API_PORT)")
    demo.add_argument("--no-serve", action="store_true", help="stop after publishing and printing the URLs")


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the aggregates HTTP API from the database")
    serve.add_argument("--host", help="address to listen on (default: $API_HOST)")
    serve.add_argument("--port", type=_port, help="port (default: $API_PORT)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="aggregator", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    _add_run(commands)
    add_commands(commands, _date, _count)
    _add_export(commands)
    _add_generate(commands)
    _add_demo(commands)
    _add_serve(commands)
    return top


def _run(args: argparse.Namespace) -> int:
    publishing = not args.no_publish and configured()
    _check_before_run(args.snapshot, publishing)
    config = JobConfig(
        inputs=args.input,
        snapshot=args.snapshot,
        dates=args.date,
        definitions=args.definitions,
        scalar_definitions=args.scalar_definitions,
        channels=args.channels,
        include_fennec=args.include_fennec,
        clients=not args.no_clients,
        max_bad_fraction=args.max_bad_fraction,
        skip_unreadable=args.skip_unreadable,
        scheduler=args.scheduler,
        workers=args.workers,
        split_every=args.split_every,
        shards=args.shards,
        performance_report=args.performance_report,
        progress=not args.no_progress and sys.stdout.isatty(),  # a bar redrawn with \r only suits a terminal
    )
    with _workers_ignore_ctrl_c() as say:
        summary = run_job(config, say=say)
    print("\n".join(summary.lines()))
    publish = shlex.join(["aggregator", "publish", "--snapshot", args.snapshot, *_each("--date", summary.dates)])
    print(f"the snapshot is complete: {len(summary.dates)} submission dates in {args.snapshot}")
    try:
        publish_after_run(args.snapshot, summary.dates, args.no_publish)
    except STORE_ERRORS as error:
        raise CommandError(f"{error}; the snapshot is complete, `{publish}` publishes it") from error
    if not publishing:
        print(f"to publish it: {publish}")
    return 0


def _each(option: str, values: list[str]) -> list[str]:
    return [part for value in values for part in (option, value)]


def _check_before_run(snapshot: str, publishing: bool) -> None:
    """What would fail the run after the aggregation, checked before it: the snapshot's place, and the
    database the run publishes into."""
    check_location(snapshot)
    if publishing:

        async def reach() -> None:
            await (await connect()).close()

        try:
            asyncio.run(reach())
        except STORE_ERRORS as error:
            raise CommandError(f"{error}: nothing was aggregated (--no-publish writes the snapshot only)") from error


def _check_port(host: str, port: int) -> None:
    """Bind the address once before any work, so that a busy port is one line, not a traceback after it."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            probe.bind(address)
    except OSError as error:
        raise CommandError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error


def _generate(args: argparse.Namespace) -> int:
    from aggregator.generate import generate_corpus

    summary = generate_corpus(
        args.output,
        pings=args.pings,
        days=args.days,
        seed=args.seed,
        start_date=args.start_date,
        files_per_day=args.files_per_day,
        malformed_fraction=args.malformed_fraction,
        compress=not args.plain,
        **({} if args.heavy_client_share is None else {"heavy_client_share": args.heavy_client_share}),
    )
    print(f"wrote {summary.pings} pings ({summary.malformed} malformed) for {', '.join(summary.dates)}")
    size = summary.bytes_uncompressed / 2**20
    print(f"  {len(summary.files)} files, {size:.1f} MiB of JSON, in {args.output}")
    print(f"  {summary.clients} clients; {summary.no_client_id} well-formed pings without a usable clientId")
    print(f"  definitions: {summary.histograms_definitions}, {summary.scalars_definitions}")
    return 0


def _export(args: argparse.Namespace) -> int:
    written = export(args.snapshot, args.date, args.output)
    rows = sum(w.rows for w in written)
    print(f"exported {len(written) // 2} submission dates, {rows} rows, as {args.format} to {args.output}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from aggregator.generate import generate_corpus
    from server.config import ServerSettings

    defaults = ServerSettings.from_env({})  # every API setting checked before the pipeline runs
    host, port = defaults.host, args.port or defaults.port
    _check_port(host, port)
    workdir = Path(args.workdir)
    pings = workdir / "pings"
    corpus = generate_corpus(str(pings), pings=args.pings, days=args.days, seed=1)
    print(f"generated {corpus.pings} pings for {', '.join(corpus.dates)} in {pings}")
    config = JobConfig(
        inputs=[str(pings)],
        snapshot=str(workdir / "snapshot"),
        dates=corpus.dates,
        definitions=corpus.histograms_definitions,
        scalar_definitions=corpus.scalars_definitions,
        progress=sys.stdout.isatty(),
    )
    with _workers_ignore_ctrl_c() as say:
        summary = run_job(config, say=say)
    print("\n".join(summary.lines()))
    return _demo_serve(config.snapshot, corpus.dates, port, args.no_serve)


DEMO_MIN_CLIENTS = "*=1"


def _demo_serve(snapshot: str, dates: list[str], port: int, no_serve: bool) -> int:
    """Publish into Postgres (the configured one, else a local `telemetry_demo`), then serve it."""
    from server.app import serve, settings_from_env
    from server.demo import database_lines, demo_database, example_urls, publish

    database = asyncio.run(demo_database())
    asyncio.run(publish(database, snapshot, dates))
    print("\n".join(database_lines(database, configured())))
    # a demo day has a few hundred clients: GLAM's thresholds (the default) would withhold every client-level entry
    os.environ.setdefault("API_MIN_CLIENTS", DEMO_MIN_CLIENTS)
    print(f"client-level answers served from API_MIN_CLIENTS={os.environ['API_MIN_CLIENTS']} clients per entry")
    settings = settings_from_env(port=port, database=database)
    base = f"http://{settings.host}:{settings.port}"
    print(f"\nServing on {base}; try:\n  " + "\n  ".join(asyncio.run(example_urls(database, base))))
    if not no_serve:
        serve(settings)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from server.app import serve, settings_from_env

    settings = settings_from_env(args.host, args.port)
    _check_port(settings.host, settings.port)
    serve(settings)
    return 0


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[Callable[..., None]]:
    """A terminal's Ctrl-C reaches the whole process group, and each worker process of the local cluster would
    react to it on its own, logging what it cancels. SIGINT is ignored while they start, so that they keep
    ignoring it (a process started by Python's spawn gets its parent's ignored signals, not its blocked ones),
    and blocked here meanwhile, so that a Ctrl-C before the job's first message waits for it: then this process's
    handler comes back, and stops the workers itself (`_interrupted`)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def back() -> None:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def say(*args: object) -> None:
        back()
        print(*args)

    try:
        yield say
    finally:
        back()


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C: stop the local cluster's worker processes at once and unwind quietly. Otherwise they, and the
    cluster as it closes, log every task cancelled, which tells nothing to someone who chose to stop; the
    command's one line says it."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    for worker in multiprocessing.active_children():
        worker.kill()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """A reader that stops early (`aggregator db status | head -1`) ends the command quietly: stdout is pointed
    at /dev/null, so that nothing flushed at exit fails again, and the exit code is the shell's for SIGPIPE."""
    # What the imports made (dask, distributed, zarr, numpy: some 75,000 objects that live as long as the process)
    # is left out of the cyclic collector's passes, which the local cluster's scheduler, in this process, sets off
    # all run long: a tenth of this process's CPU in a one-core run.
    gc.freeze()
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # inside the try, so that a closed pipe is found here, not at exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def _command(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("run", "demo"):  # the commands that start a local cluster
        signal.signal(signal.SIGINT, _interrupted)
    handlers = {
        "run": _run,
        "generate": _generate,
        "demo": _demo,
        "serve": _serve,
        "publish": publish_command,
        "export": _export,
        "db": db_command,
    }
    try:
        return handlers[args.command](args)
    except (InputError, SettingError, ExportError, ExportFailed, JobFailed, CommandError, *STORE_ERRORS) as error:
        print(f"aggregator: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, InputError | SettingError | ExportError) else 1
    except KeyboardInterrupt:
        print("aggregator: interrupted", file=sys.stderr)
        return INTERRUPTED
