"""A corpus on disk, in the job's input layout: gzip or plain ndjson files of pings per submission date, and the
definitions files describing their probes.
"""

import gzip
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice

import numpy as np
import orjson
import yaml

from aggregator.generate.clients import HEAVY_CLIENT_SHARE, client_ids, set_client_id, usable_client_id
from aggregator.generate.pings import MALFORMED_KINDS, Catalogue, PingMaker, malformed_line
from aggregator.generate.probes import histograms_json, scalars_yaml

GZIP_LEVEL = 1  # generation speed matters more than corpus size
WRITE_BATCH = 64  # lines per write


@dataclass(frozen=True)
class GenerateSummary:
    """What generate_corpus wrote: enough for a caller to run the job on it and to report on it."""

    output: str  # the output folder
    dates: list[str]  # YYYYMMDD submission dates written
    files: list[str]  # paths of the ping files written
    pings: int  # lines written, malformed ones included
    malformed: int  # of which malformed
    bytes_uncompressed: int  # total size of the JSON lines, newlines included
    histograms_definitions: str  # path of Histograms.json written
    scalars_definitions: str  # path of Scalars.yaml written
    clients: int  # distinct clientIds of the well-formed (not malformed) pings
    no_client_id: int  # well-formed pings whose clientId is missing, not a string or empty


def _even_split(total: int, parts: int) -> list[int]:
    """Split total into parts that differ by at most one, larger ones first."""
    return [total // parts + (index < total % parts) for index in range(parts)]


@dataclass
class _Senders:
    """The clients of the well-formed pings written, and how many of those pings had no usable clientId."""

    clients: set[str] = field(default_factory=set)
    unusable: int = 0


def _file_lines(
    maker: PingMaker, pings: int, malformed: int, first_kind: int, ids: list, senders: _Senders
) -> Iterator[bytes]:
    """The lines of one file: `malformed` of them, at random places, cycle through MALFORMED_KINDS; line i is
    sent by client ids[i]."""
    bad = set(maker.rng.choice(pings, size=malformed, replace=False).tolist()) if malformed else set()
    kind = first_kind
    for index in range(pings):
        ping = maker.ping(index in bad)
        set_client_id(ping, ids[index])
        if index in bad:
            yield malformed_line(MALFORMED_KINDS[kind % len(MALFORMED_KINDS)], ping, maker.dice)
            kind += 1
            continue
        if usable_client_id(ids[index]):
            senders.clients.add(ids[index])
        else:
            senders.unusable += 1
        yield orjson.dumps(ping)


def _batches(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    iterator = iter(lines)
    while batch := list(islice(iterator, size)):
        yield batch


def _write_lines(path: str, lines: Iterable[bytes], compress: bool) -> int:
    """Write newline-terminated lines and return their size; gzip with mtime 0 and no name, for identical bytes.

    Batches are written by a second thread: zlib releases the GIL, so compressing one batch overlaps making the
    next one. A single thread writes them in order, so the bytes are those of a plain sequential write.
    """
    size = 0
    with open(path, "wb") as raw:
        stream = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) if compress else raw
        )
        with stream, ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future | None = None
            for batch in _batches(lines, WRITE_BATCH):
                data = b"\n".join(batch) + b"\n"
                size += len(data)
                if pending is not None:
                    pending.result()  # one batch waits at most: memory stays bounded
                pending = writer.submit(stream.write, data)
            if pending is not None:
                pending.result()
    return size


def _check_arguments(pings: int, days: int, seed: int, start_date: str, files_per_day: int, fraction: float) -> date:
    if pings < 0 or days < 1 or files_per_day < 1 or seed < 0:
        raise ValueError("pings and seed must be >= 0, days and files_per_day >= 1")
    if not 0 <= fraction <= 1:
        raise ValueError(f"malformed_fraction must be within [0, 1], not {fraction}")
    if len(start_date) != 8 or not start_date.isdigit():
        raise ValueError(f"start_date must be YYYYMMDD, not {start_date!r}")
    return datetime.strptime(start_date, "%Y%m%d").date()


def generate_corpus(
    output: str,
    pings: int,
    days: int = 1,
    seed: int = 0,
    start_date: str = "20261101",
    files_per_day: int = 2,
    malformed_fraction: float = 0.02,
    compress: bool = True,
    heavy_client_share: float = HEAVY_CLIENT_SHARE,
) -> GenerateSummary:
    """Write `pings` lines spread evenly over `days` submission dates and their files, plus the definitions.

    round(pings * malformed_fraction) of the lines are malformed, spread over the files the same way. Each file
    has its own random stream seeded by (seed, day, part), and the catalogue depends on the seed alone. The
    clientIds of a day's pings (a share `heavy_client_share` of them from a few heavy clients) come from a
    stream of their own (clients.client_ids): they change nothing else in the corpus.
    """
    first_day = _check_arguments(pings, days, seed, start_date, files_per_day, malformed_fraction)
    if not 0 <= heavy_client_share <= 1:
        raise ValueError(f"heavy_client_share must be within [0, 1], not {heavy_client_share}")
    catalogue = Catalogue(seed)
    os.makedirs(output, exist_ok=True)
    histograms_path = os.path.join(output, "Histograms.json")
    with open(histograms_path, "wb") as definitions:
        definitions.write(orjson.dumps(histograms_json(catalogue.histograms), option=orjson.OPT_INDENT_2) + b"\n")
    scalars_path = os.path.join(output, "Scalars.yaml")
    with open(scalars_path, "w", encoding="utf-8") as definitions:
        definitions.write("# Scalar definitions of the synthetic corpus, in Firefox's Scalars.yaml format.\n")
        yaml.safe_dump(scalars_yaml(catalogue.scalars), definitions, sort_keys=False, width=110)

    malformed = round(pings * malformed_fraction)
    dates, files, size, kind = [], [], 0, 0
    senders = _Senders()
    for day_index, (day_pings, day_malformed) in enumerate(
        zip(_even_split(pings, days), _even_split(malformed, days), strict=True)
    ):
        day = first_day + timedelta(days=day_index)
        dates.append(f"{day:%Y%m%d}")
        folder = os.path.join(output, f"submission_date={day:%Y%m%d}")
        os.makedirs(folder, exist_ok=True)
        ids = client_ids(seed, day_index, day_pings, heavy_client_share)
        start = 0
        for part, (file_pings, file_malformed) in enumerate(
            zip(_even_split(day_pings, files_per_day), _even_split(day_malformed, files_per_day), strict=True)
        ):
            path = os.path.join(folder, f"part-{part:04d}.ndjson" + (".gz" if compress else ""))
            maker = PingMaker(catalogue, np.random.default_rng([seed, day_index, part]), day)
            lines = _file_lines(maker, file_pings, file_malformed, kind, ids[start : start + file_pings], senders)
            size += _write_lines(path, lines, compress)
            kind += file_malformed
            start += file_pings
            files.append(path)
    return GenerateSummary(
        output,
        dates,
        files,
        pings,
        malformed,
        size,
        histograms_path,
        scalars_path,
        len(senders.clients),
        senders.unusable,
    )
