"""`aggregator export`: a snapshot's aggregates as a hive-partitioned Parquet dataset, for analysts.

    OUTPUT/aggregation=pings/kind=build_id/submission_date=20261101/part-0.parquet
    OUTPUT/aggregation=pings/kind=submission_date/submission_date=20261101/part-0.parquet

    OUTPUT/aggregation=clients/kind=build_id/submission_date=20261101/part-0.parquet
    OUTPUT/aggregation=clients/kind=submission_date/submission_date=20261101/part-0.parquet

One row per cell (dimension set, metric, label, process), read from the snapshot with the publish step's own
reader (`snapshot.read_run`), one (kind, date) at a time and written in row groups of a bounded number of bucket
counts, so that memory follows one day's aggregates, never the snapshot's. `aggregation=pings` holds the
original's per-ping aggregates, `aggregation=clients` the client-level ones (when the run has them), in one
schema. Columns and why they are shaped so: docs/job.md.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from aggregator import __version__
from aggregator.aggregate import Aggregate
from aggregator.snapshot import KINDS, list_dates, read_run, store_exists

AGGREGATIONS = ("pings", "clients")  # the per-ping weighting, the client-level one (docs/semantics.md)
FORMATS = ("parquet",)
PART = "part-0.parquet"
ROW_GROUP_BUCKETS = 1 << 21  # bucket counts per row group: 16 MiB of counts and as much of bounds, in memory
COMPRESSION = "zstd"  # read by DuckDB, pandas (pyarrow) and Spark 3.2 on; less than half the size of snappy here
DIMENSIONS = ("channel", "version", "build_id", "application", "architecture", "os", "os_version")
_WEIGHTED = ("counts", "sum", "count", "clients", "client_counts")  # the columns of one weighting or the other
_INTEGERS = ("version", "build_id")  # digits only (docs/semantics.md): numbers, as the partition key is read


class ExportError(ValueError):
    """What was asked cannot be exported (a date the snapshot lacks, an output that is a file): one line."""


class ExportFailed(RuntimeError):
    """The export cannot run (pyarrow, the `parquet` extra, is not installed) or a write failed: one line."""


@dataclass(frozen=True)
class Written:
    """One partition written."""

    kind: str
    date: str
    aggregation: str
    path: str
    rows: int
    row_groups: int
    size: int

    def line(self) -> str:
        return (
            f"{self.kind} {self.date} {self.aggregation}: {self.rows} rows in {self.row_groups} "
            f"row group{'s' * (self.row_groups != 1)}, {self.size / 2**20:.1f} MiB: {self.path}"
        )


def pyarrow() -> tuple[ModuleType, ModuleType]:
    """pyarrow and pyarrow.parquet, or ExportFailed saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ExportFailed(
            "`aggregator export` writes Parquet with pyarrow, which is not installed: pip install '.[parquet]'"
        ) from error
    return pa, pq


def partition(kind: str, date: str, aggregation: str) -> str:
    """A partition's folder under the dataset's root."""
    return f"aggregation={aggregation}/kind={kind}/submission_date={date}"


def check(snapshot: str, dates: list[str], output: str) -> None:
    """Everything that would stop the export half-way, before anything is written: every date in the snapshot
    for both kinds, and an output that can be a folder."""
    if not store_exists(snapshot):
        raise ExportError(f"no snapshot at {snapshot}")
    held = set(list_dates(snapshot))
    missing = [date for date in dates if any((kind, date) not in held for kind in KINDS)]
    if missing:
        days = sorted({date for kind, date in held if all((k, date) in held for k in KINDS)})
        has = "none" if not days else ", ".join(days) if len(days) <= 4 else f"{len(days)}, {days[0]} to {days[-1]}"
        raise ExportError(f"the snapshot {snapshot} holds no aggregates of {', '.join(missing)} (its dates: {has})")
    fs, root = url_to_fs(output)
    if fs.exists(root) and not fs.isdir(root):
        raise ExportError(f"the output {output} is a file, not a folder")


def export(snapshot: str, dates: list[str], output: str, say: Callable[[str], None] = print) -> list[Written]:
    """Write both kinds of each date of the snapshot under `output` (a local path or any fsspec URL); a date
    exported again replaces its partitions."""
    pa, pq = pyarrow()
    dates = list(dict.fromkeys(dates))
    check(snapshot, dates, output)
    fs, root = url_to_fs(output)
    written = []
    for date in dates:
        for kind in KINDS:
            aggregate, attrs = read_run(snapshot, kind, date)
            for aggregation in AGGREGATIONS:
                folder = f"{root.rstrip('/')}/{partition(kind, date, aggregation)}"
                try:
                    if aggregation == "clients" and aggregate.clients is None:  # a run without them
                        if fs.exists(folder):
                            fs.rm(folder, recursive=True)
                        continue
                    written.append(_write(pa, pq, fs, folder, aggregate, attrs, aggregation))
                except OSError as error:
                    raise ExportFailed(f"cannot write {kind} {date} under {output}: {error}") from error
                say(written[-1].line())
            del aggregate  # one (kind, date) in memory at a time
    return written


def schema(pa: ModuleType, metadata: dict[str, str] | None = None) -> Any:
    """The dataset's columns (the partition keys `aggregation`, `kind` and `submission_date` are in the path)."""
    text, integer, counts = pa.string(), pa.int64(), pa.list_(pa.int64())
    fields = [
        pa.field(name, pa.int32() if name in _INTEGERS else text, nullable=name == "build_id") for name in DIMENSIONS
    ]
    fields += [
        pa.field("metric", text, False),
        pa.field("label", text, False),
        pa.field("process", text, False),
        pa.field("layout_kind", text, False),
        pa.field("buckets", counts, False),
        pa.field("bucket_names", pa.list_(text)),
        pa.field("counts", counts),  # the per-ping weighting: null in aggregation=clients
        pa.field("sum", integer),
        pa.field("count", integer),
        pa.field("clients", integer),  # both: distinct clients (null for a run without the client-level weighting)
        pa.field("client_counts", pa.list_(pa.float64())),  # the client-level weighting: null in aggregation=pings
    ]
    return pa.schema(fields, metadata=metadata)


def _write(
    pa: ModuleType, pq: ModuleType, fs: Any, folder: str, aggregate: Aggregate, attrs: dict, aggregation: str
) -> Written:
    """One partition: written beside its final name, then moved there, so that a reader never meets half a file;
    what else the folder held (an earlier export's file) is removed after."""
    provenance = {key: attrs.get(key) for key in ("kind", "submission_date", "run_id", "digest")}
    provenance |= {"aggregation": aggregation, "aggregator_version": __version__}
    columns = schema(pa, {"telemetry-aggregates": json.dumps(provenance)})
    fs.makedirs(folder, exist_ok=True)
    final, staged = f"{folder}/{PART}", f"{folder}/.{PART}.writing"
    groups = 0
    try:
        with fs.open(staged, "wb") as target, pq.ParquetWriter(target, columns, compression=COMPRESSION) as writer:
            for batch in _batches(pa, aggregate, columns, aggregation):
                writer.write_batch(batch, row_group_size=batch.num_rows)
                groups += 1
        fs.mv(staged, final)
    except BaseException:
        if fs.exists(staged):
            fs.rm(staged)
        raise
    for child in fs.ls(folder, detail=False):
        if child.rstrip("/").rsplit("/", 1)[-1] != PART:
            fs.rm(child, recursive=True)
    path = final if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(final)
    return Written(attrs["kind"], attrs["submission_date"], aggregation, path, len(aggregate), groups, fs.size(final))


def _batches(pa: ModuleType, aggregate: Aggregate, columns: Any, aggregation: str) -> Iterator[Any]:
    """The aggregate's rows in order, as record batches of at most ROW_GROUP_BUCKETS bucket counts (at least a
    row each). The small tables (dimension sets, metrics, layouts) are made Arrow arrays once and taken per row."""
    dimensions = {
        name: _column(pa, aggregate, name, pa.int32() if name in _INTEGERS else pa.string()) for name in DIMENSIONS
    }
    layouts = sorted({m[3] for m in aggregate.metrics}, key=lambda x: (x.kind, x.bounds, x.names or ()))
    index = {layout: i for i, layout in enumerate(layouts)}
    layout_of = pa.array([index[m[3]] for m in aggregate.metrics], pa.int32())
    metric_columns = {
        "metric": pa.array([m[0] for m in aggregate.metrics], pa.string()),
        "label": pa.array([m[1] for m in aggregate.metrics], pa.string()),
        "process": pa.array([m[2] for m in aggregate.metrics], pa.string()),
        "layout_kind": pa.array([x.kind for x in layouts], pa.string()).take(layout_of),
        "buckets": pa.array([list(x.bounds) for x in layouts], pa.list_(pa.int64())).take(layout_of),
        "bucket_names": pa.array([x.names and list(x.names) for x in layouts], pa.list_(pa.string())).take(layout_of),
    }
    offsets = aggregate.row_offset
    start = 0
    while start < len(aggregate):
        stop = max(start + 1, int(np.searchsorted(offsets, offsets[start] + ROW_GROUP_BUCKETS, side="right")) - 1)
        stop = min(stop, len(aggregate))
        rows_dimension = pa.array(aggregate.row_dimension[start:stop])
        rows_metric = pa.array(aggregate.row_metric[start:stop])
        first, last = int(offsets[start]), int(offsets[stop])
        starts = pa.array((offsets[start : stop + 1] - first).astype(np.int32))
        arrays = {name: column.take(rows_dimension) for name, column in dimensions.items()}
        arrays |= {name: column.take(rows_metric) for name, column in metric_columns.items()}
        arrays |= {name: pa.nulls(stop - start, columns.field(name).type) for name in _WEIGHTED}
        if aggregate.clients is not None:
            arrays["clients"] = pa.array(aggregate.clients[start:stop])
        if aggregation == "pings":
            arrays["counts"] = pa.ListArray.from_arrays(starts, pa.array(aggregate.histogram[first:last]))
            arrays["sum"] = pa.array(aggregate.sums[start:stop])
            arrays["count"] = pa.array(aggregate.counts[start:stop])
        else:
            shares = pa.array(aggregate.client_histogram[first:last])
            arrays["client_counts"] = pa.ListArray.from_arrays(starts, shares)
        yield pa.RecordBatch.from_arrays([arrays[name] for name in columns.names], schema=columns)
        start = stop


def _column(pa: ModuleType, aggregate: Aggregate, name: str, kind: Any) -> Any:
    """One dimension's value per dimension set (nulls where the kind has no such column: build_id)."""
    if name not in aggregate.columns:
        return pa.nulls(len(aggregate.dimensions), kind)
    i = aggregate.columns.index(name)
    values = [d[i] for d in aggregate.dimensions]
    return pa.array([int(v) for v in values] if kind == pa.int32() else values, kind)
