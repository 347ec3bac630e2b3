"""Benchmark of the batch job: single-core extraction + aggregation against the parsing floor, and end-to-end
runs with 1 and 2 workers. Writes its figures, with the machine's, to a markdown file.

    python bench/job.py --pings 20000 --output docs/benchmarks.md

The floor is what no aggregator can beat: gzip decompression plus `orjson.loads` of every line. Both are
measured in the same run, alternating, best of --repeat, so the ratio holds on a noisy machine.
"""

import argparse
import contextlib
import gzip
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from distributed import Client, LocalCluster
from report import machine, write_section  # bench/report.py, beside this file

from aggregator.extract import Options
from aggregator.generate import generate_corpus
from aggregator.inputs import discover
from aggregator.job import JobConfig, run_job, shard_count
from aggregator.layouts import Definitions
from aggregator.tasks import aggregate_chunk


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


def aggregate(files: list[str], definitions: Definitions) -> int:
    """What one worker does for these files: read, parse, extract, accumulate, finish."""
    pings = 0
    for chunk in discover(files, []):
        pings += aggregate_chunk(chunk, definitions, Options()).stats.total("pings")
    return pings


def best_of(repeat: int, *jobs) -> list[float]:
    """Best wall time of each job, the jobs alternating so that they share the machine's moods."""
    best = [float("inf")] * len(jobs)
    for _ in range(repeat):
        for i, job in enumerate(jobs):
            started = time.perf_counter()
            job()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def end_to_end(corpus, workers: int, snapshot: Path, shards: int | None = None) -> tuple[float, list[int]]:
    """Wall time of a whole run on a fresh LocalCluster, and each worker's peak RSS in bytes."""
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        config = JobConfig(
            inputs=[corpus.output],
            snapshot=str(snapshot),
            dates=corpus.dates,
            definitions=corpus.histograms_definitions,
            shards=shards,
            progress=False,
        )
        run_job(config, client=client, say=lambda *_: None)
        seconds = time.perf_counter() - started
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return seconds, sorted(peaks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=".bench")
    parser.add_argument("--output", help="markdown file to write the figures into")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    corpus_dir = workdir / f"corpus-{args.pings}"
    corpus = generate_corpus(str(corpus_dir), pings=args.pings, days=2, seed=5, files_per_day=8)
    mib = corpus.bytes_uncompressed / 2**20
    definitions = Definitions.load(corpus.histograms_definitions)

    floor_s, job_s = best_of(args.repeat, lambda: floor(corpus.files), lambda: aggregate(corpus.files, definitions))
    runs = {n: end_to_end(corpus, n, workdir / f"snapshot-{n}") for n in (1, 2)}
    half = generate_corpus(
        str(workdir / f"corpus-{args.pings // 2}"), pings=args.pings // 2, days=2, seed=5, files_per_day=4
    )
    half_run = end_to_end(half, 2, workdir / "snapshot-half")
    unsharded = end_to_end(corpus, 2, workdir / "snapshot-unsharded", shards=1)
    shards = {c.pings: shard_count(discover([c.output], c.dates)) for c in (corpus, half)}

    def per_second(seconds: float) -> str:
        return f"{seconds:.2f} | {corpus.pings / seconds:,.0f} | {mib / seconds:.1f}"

    def memory(peaks: list[int]) -> str:
        return ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks)

    host = machine("numpy", "orjson", "dask")
    rows = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {host}.",
        "",
        f"Corpus: {corpus.pings} generated pings ({corpus.malformed} malformed), {mib:.0f} MiB of JSON in "
        f"{len(corpus.files)} gzip files (`aggregator generate --pings {args.pings} --days 2 --seed 5 "
        "--files-per-day 8`).",
        "",
        f"| single core, best of {args.repeat} | seconds | pings/s | MiB/s of JSON | throughput vs floor |",
        "|---|---|---|---|---|",
        f"| floor: gunzip + `orjson.loads` of every line | {per_second(floor_s)} | 1.00 |",
        f"| extraction + aggregation (what a worker does) | {per_second(job_s)} | {floor_s / job_s:.2f} |",
        "",
        "| end to end on a LocalCluster (start-up included) | seconds | speed-up | peak RSS per worker |",
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
