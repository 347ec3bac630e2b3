"""The zarr snapshot: one group per (kind, submission date), each pointing at its current run.

Layout and guarantees: docs/snapshot.md. A run is staged in full before the date group's `current`
attribute points at it, and the job moves the pointers only once every run is staged, so readers never see half
a run, and a failed job leaves every date as it was.
"""

import asyncio
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import zarr
import zarr.api.asynchronous
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from zarr.codecs import ZstdCodec
from zarr.core.metadata import ArrayV3Metadata
from zarr.errors import ContainsArrayError, GroupNotFoundError
from zarr.storage import MemoryStore

from aggregator import __version__
from aggregator.aggregate import KIND_COLUMNS, Aggregate, merge
from aggregator.layouts import Layout
from aggregator.stats import RunStats

FORMAT = "telemetry-aggregates-snapshot"
FORMAT_VERSION = 3  # 3: parts may hold the client-level arrays
READABLE_VERSIONS = (1, 2, 3)  # version 1: a run held its arrays itself, as one part; 3 added client-level arrays
KINDS = ("build_id", "submission_date")
_CHUNK = 1 << 20
# zstd at level 1, not zarr's default 3: the dense bucket arrays (mostly zeros) come out as small, written in half the
# time (58 MB of a part's histogram: 0.07 s and 1.1 MB, against 0.14 s and 1.1 MB)
_NUMBERS = (ZstdCodec(level=1),)


class SnapshotError(LookupError):
    """The snapshot has no such group, or was written by an unknown format version."""


def location(url: str) -> str:
    """Where the store is, absolute: a plain path for local files (zarr's LocalStore creates folders and
    writes atomically), the URL itself for any other fsspec filesystem."""
    fs, path = url_to_fs(url)
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=object) if values else np.zeros(0, dtype=str)


def _repeats_filled(aggregate: Aggregate, histogram: np.ndarray) -> np.ndarray:
    """`histogram` (the aggregate's, or its client-level one) with the count of a bound that repeats in its layout
    (docs/semantics.md) under each of its columns: the job counts a bucket key in the first, and the original
    completed a histogram by re-indexing its counts onto the bounds, which puts a bound's count at every position
    of it."""
    fills = {}
    for layout in {m[3] for m in aggregate.metrics}:
        first: dict[int, int] = {}
        source = np.array([first.setdefault(bound, column) for column, bound in enumerate(layout.bounds)])
        if len(first) < len(source):
            fills[layout] = source
    if not fills:
        return histogram
    fill_of = {layout: i for i, layout in enumerate(fills)}
    row_fill = np.array([fill_of.get(m[3], -1) for m in aggregate.metrics], dtype=np.int64)[aggregate.row_metric]
    index = np.arange(len(aggregate.histogram))
    for i, source in enumerate(fills.values()):
        starts = aggregate.row_offset[:-1][row_fill == i][:, None]
        index[(starts + np.arange(len(source))).ravel()] = (starts + source).ravel()
    return histogram[index]


def _arrays(aggregate: Aggregate) -> dict[str, np.ndarray]:
    """The run's arrays, named as in docs/snapshot.md."""
    layouts = sorted({m[3] for m in aggregate.metrics}, key=lambda x: (x.kind, x.bounds, x.names or ()))
    layout_index = {layout: i for i, layout in enumerate(layouts)}
    offsets = np.zeros(len(layouts) + 1, dtype=np.int64)
    np.cumsum([len(layout.bounds) for layout in layouts], out=offsets[1:])
    arrays = {
        f"dimensions/{column}": _strings([d[i] for d in aggregate.dimensions])
        for i, column in enumerate(aggregate.columns)
    }
    arrays |= {
        "metrics/name": _strings([m[0] for m in aggregate.metrics]),
        "metrics/label": _strings([m[1] for m in aggregate.metrics]),
        "metrics/process": _strings([m[2] for m in aggregate.metrics]),
        "metrics/layout": np.array([layout_index[m[3]] for m in aggregate.metrics], dtype=np.int32),
        "layouts/kind": _strings([layout.kind for layout in layouts]),
        "layouts/offset": offsets,
        "layouts/bound": np.array([b for layout in layouts for b in layout.bounds], dtype=np.int64),
        "layouts/label": _strings([label for layout in layouts for label in layout.labels]),
        "rows/dimension": aggregate.row_dimension.astype(np.int32),
        "rows/metric": aggregate.row_metric.astype(np.int32),
        "rows/sum": aggregate.sums,
        "rows/count": aggregate.counts,
        "rows/offset": aggregate.row_offset,
        "histogram": _repeats_filled(aggregate, aggregate.histogram),
    }
    if aggregate.clients is not None:
        arrays["clients/count"] = aggregate.clients
        arrays["clients/histogram"] = _repeats_filled(aggregate, aggregate.client_histogram)
    return arrays


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names and contents: equal digests, equal data."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        h.update(name.encode() + b"\0")
        if array.dtype.kind in "OUT":
            h.update("\0".join(map(str, array.tolist())).encode() + b"\1")
        else:  # the array's own bytes, not a copy of them
            h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
            h.update(b"\1")
    return h.hexdigest()


def prepare(url: str, dates: Iterable[str] = ()) -> zarr.Group:
    """The store's root and kind groups, and the date groups of `dates`, created if missing; the root's format
    version is the newest written into the store. The job's client calls it once every part is staged, before it
    finishes the runs: workers write inside part folders only, as two writers creating one group would collide."""
    root = zarr.open_group(location(url), mode="a", zarr_format=3)
    if root.attrs.get("format") != FORMAT or root.attrs.get("format_version", 0) < FORMAT_VERSION:
        root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION})
    for kind in KINDS:
        group = root.require_group(kind)
        for date in dates:
            group.require_group(date)
    return root


def new_run_id() -> str:
    """A run's name: when it was made, and a random part so that two jobs never share one."""
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def stage_part(url: str, kind: str, date: str, run_id: str, part: str, aggregate: Aggregate) -> str:
    """Write one part of a run of (kind, date) and return its digest; readers do not see it until the run is
    finished and committed. A part is written as a zarr hierarchy of its own: zarr re-checks the metadata of
    every parent of each node it creates, so a writer killed half-way would otherwise leave stray files beside
    the shared groups; this way nothing is written outside the part's folder, and parts are written in
    parallel without touching each other. A part written again (its task recomputed after its worker was lost
    mid-write) replaces what the first attempt left."""
    arrays = _arrays(aggregate)
    found = digest(arrays)
    path = f"{location(url)}/{kind}/{date}/{run_id}/{part}"
    asyncio.run(_write_part(path, arrays, {"rows": len(aggregate), "digest": found}))
    return found


class _InPlace(ThreadPoolExecutor):
    """An executor that runs what it is given at once, in the calling thread. zarr hands every compression and
    every file write to a thread (`asyncio.to_thread`); on a worker that runs one task per core, each hand-off
    wakes a thread on the other core and back, which cost more CPU than the work handed off: one day's parts of
    the benchmark took 1.1 s of CPU that way, and 0.6 s in place."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


async def _write_part(path: str, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """The part's arrays, all created and written at once through zarr's asynchronous API, then its attributes.
    Their metadata is written as one hierarchy (`create_hierarchy`): created one by one, each array had zarr check
    and rewrite the metadata of every group above it, two files tried and thrown away per array, a sixth of
    staging's CPU."""
    asyncio.get_running_loop().set_default_executor(_InPlace())
    group = await zarr.api.asynchronous.open_group(store=path, mode="w", zarr_format=3)
    nodes = {name: await _metadata(array) for name, array in arrays.items()}
    async for name, node in zarr.api.asynchronous.create_hierarchy(store=group.store, nodes=nodes):
        if name in arrays and len(arrays[name]):
            # every chunk written: zarr's default compares each chunk with the fill value first, a pass over the
            # data that skipped none of the benchmark's chunks and cost a sixth of staging's time
            array = zarr.AsyncArray(node.metadata, node.store_path, config={"write_empty_chunks": True})
            await array.setitem(slice(None), arrays[name])
    await group.update_attributes(attrs)


_TEMPLATES: dict[np.dtype, dict] = {}  # zarr's metadata of an array of each dtype, as the snapshot stores it


async def _metadata(array: np.ndarray) -> ArrayV3Metadata:
    """The metadata of one of a part's arrays: its dtype's, as zarr makes it (once per dtype and process), with
    its shape and its chunks, none larger than the array (zarr stores whole chunks)."""
    template = _TEMPLATES.get(array.dtype)
    if template is None:
        text = array.dtype.kind in "OUT"
        made = await zarr.api.asynchronous.create_array(
            MemoryStore(), shape=(1,), dtype=str if text else array.dtype, compressors="auto" if text else _NUMBERS
        )
        template = _TEMPLATES[array.dtype] = made.metadata.to_dict()
    chunks = {"name": "regular", "configuration": {"chunk_shape": [max(1, min(len(array), _CHUNK))]}}
    return ArrayV3Metadata.from_dict(template | {"shape": list(array.shape), "chunk_grid": chunks})


def finish_run(url: str, kind: str, date: str, run_id: str, parts: dict[str, str], rows: int, attrs: dict) -> None:
    """Make the staged parts (name: digest) one run of (kind, date), whose date group is prepared: the run's
    group and attributes, written last, once every part is whole."""
    run = zarr.open_group(location(url), mode="r+", path=f"{kind}/{date}").require_group(run_id)
    combined = hashlib.sha256("".join(f"{name}:{parts[name]}\n" for name in sorted(parts)).encode())
    run.attrs.update(
        {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "submission_date": date,
            "run_id": run_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "aggregator_version": __version__,
            "parts": sorted(parts),
            "digest": combined.hexdigest(),
            "rows": rows,
        }
        | attrs
    )


def store_exists(url: str) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def check_location(url: str) -> None:
    """Refuse, before any work, a store that could not be written: a file, or a local path under a file or in
    a folder this user may not write."""
    fs, path = url_to_fs(url)
    if fs.exists(path) and not fs.isdir(path):
        raise SnapshotError(f"the snapshot {url} is a file, not a folder")
    if not isinstance(fs, LocalFileSystem):
        return
    folder = path
    while not fs.exists(folder):
        folder = fs._parent(folder)
    if not fs.isdir(folder):
        raise SnapshotError(f"the snapshot {url} cannot be created: {folder} is a file")
    if not os.access(folder, os.W_OK):
        raise SnapshotError(f"the snapshot {url} cannot be written: no permission to write in {folder}")


def discard_run(url: str, run_id: str, whole_store: bool = False) -> None:
    """Delete what a run staged in every date folder (a job that failed its checks after staging), or the
    whole store when the run created it (if it staged anything: input that was all malformed stages nothing)."""
    fs, path = url_to_fs(url)
    if whole_store:
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    for folder in fs.glob(f"{path.rstrip('/')}/*/*/{run_id}"):
        fs.rm(folder, recursive=True)


def commit_run(url: str, kind: str, date: str, run_id: str) -> None:
    """Point the date group at a staged run, then delete everything else in it: the runs it replaces, and what
    a failed or interrupted job staged and never committed, down to a half-written run."""
    day = zarr.open_group(location(url), mode="r+", path=f"{kind}/{date}")
    day.attrs["current"] = run_id  # the switch: one small object written whole
    fs, path = url_to_fs(url)
    for child in fs.ls(f"{path.rstrip('/')}/{kind}/{date}", detail=False):
        if child.rstrip("/").rsplit("/", 1)[-1] not in (run_id, "zarr.json"):
            fs.rm(child, recursive=True)


def _current(url: str, kind: str, date: str) -> zarr.Group:
    try:
        day = zarr.open_group(location(url), mode="r", path=f"{kind}/{date}")
        run = day[day.attrs["current"]]
    except (GroupNotFoundError, FileNotFoundError, KeyError) as error:
        raise SnapshotError(f"no {kind} aggregates for {date} in {url}") from error
    if run.attrs.get("format_version") not in READABLE_VERSIONS:
        raise SnapshotError(f"{url} {kind}/{date}: unknown format version {run.attrs.get('format_version')}")
    return run


def read_attrs(url: str, kind: str, date: str) -> dict:
    """The current run's attributes (metadata only, no arrays read)."""
    return dict(_current(url, kind, date).attrs)


def read_run(url: str, kind: str, date: str) -> tuple[Aggregate, dict]:
    """The current run of (kind, date) as one Aggregate (the sum of its parts), and its attributes."""
    run = _current(url, kind, date)
    names = run.attrs.get("parts")  # none in format 1: the run is its one part
    parts = [_read_part(run, kind)] if names is None else [_read_part(run[name], kind) for name in names]
    # no parts: a date whose pings held no metric at all
    return (merge(parts) if parts else Aggregate.empty(KIND_COLUMNS[kind])), dict(run.attrs)


def _read_part(group: zarr.Group, kind: str) -> Aggregate:
    def read(name: str) -> np.ndarray:
        return group[name][:]

    columns = KIND_COLUMNS[kind]
    dims = [read(f"dimensions/{c}").tolist() for c in columns]
    layout_offset = read("layouts/offset").tolist()
    bounds, labels = read("layouts/bound").tolist(), read("layouts/label").tolist()
    layouts = []
    for i, layout_kind in enumerate(read("layouts/kind").tolist()):
        span = slice(layout_offset[i], layout_offset[i + 1])
        names = tuple(labels[span]) if layout_kind == "categorical" else None
        layouts.append(Layout(layout_kind, tuple(bounds[span]), names))
    metrics = [
        (name, label, process, layouts[layout])
        for name, label, process, layout in zip(
            read("metrics/name").tolist(),
            read("metrics/label").tolist(),
            read("metrics/process").tolist(),
            read("metrics/layout").tolist(),
            strict=True,
        )
    ]
    return Aggregate(
        columns,
        list(zip(*dims, strict=True)) if dims[0] else [],
        metrics,
        read("rows/dimension"),
        read("rows/metric"),
        read("rows/offset"),
        read("rows/sum"),
        read("rows/count"),
        read("histogram"),
        RunStats(),
        clients=read("clients/count") if "clients" in group else None,
        client_histogram=read("clients/histogram") if "clients" in group else None,
    )


def list_dates(url: str) -> list[tuple[str, str]]:
    """Every (kind, submission date) with a current run. Folders are listed, not zarr's groups: a job stages
    the parts of a date new to the store before that date's group exists."""
    fs, path = url_to_fs(url)
    found = []
    for kind in KINDS:
        folder = f"{path.rstrip('/')}/{kind}"
        if not fs.isdir(folder):
            continue
        for date in sorted(child.rstrip("/").rsplit("/", 1)[-1] for child in fs.ls(folder, detail=False)):
            try:
                day = zarr.open_group(location(url), mode="r", path=f"{kind}/{date}")
            except (GroupNotFoundError, FileNotFoundError, ContainsArrayError):
                continue
            if "current" in day.attrs:
                found.append((kind, date))
    return found
