"""Finding the input files and reading their lines, through fsspec (local paths and any URL)."""

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from fsspec.core import url_to_fs

PING_SUFFIXES = (".ndjson", ".ndjson.gz")
_DATE_FOLDER = re.compile(r"(?:^|/)submission_date=(\d{8})(?:/|$)")
DEFAULT_BLOCKSIZE = 128 * 2**20
UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, OSError, UnicodeDecodeError)


class InputError(ValueError):
    """The inputs named cannot be read as asked."""


class InputChanged(OSError):
    """A file is not the size it had when the run found it: its byte ranges would no longer be the ones planned,
    so reading it would count part of a different file."""


@dataclass(frozen=True)
class Chunk:
    """One partition's input: a whole file, or a byte range of a large uncompressed one."""

    url: str
    size: int
    date: str | None  # from a submission_date=YYYYMMDD folder
    start: int = 0
    end: int | None = None


def _date_of(path: str) -> str | None:
    match = _DATE_FOLDER.search(path)
    return match.group(1) if match else None


def _ping_files(fs, folder: str) -> list[str]:
    return sorted(p for p in fs.find(folder) if p.endswith(PING_SUFFIXES))


def discover(inputs: list[str], dates: list[str], blocksize: int = DEFAULT_BLOCKSIZE) -> list[Chunk]:
    """Chunks for each input: a hive root (`submission_date=YYYYMMDD/` folders, one per requested date), a
    folder, a glob or a file."""
    chunks: list[Chunk] = []
    for url in inputs:
        fs, path = url_to_fs(url)
        if fs.isdir(path):
            dated = sorted(p for p in fs.ls(path, detail=False) if _date_of(p.rstrip("/") + "/"))
            if dated and _date_of(path.rstrip("/") + "/") is None:
                if not dates:
                    available = ", ".join(_date_of(p + "/") or "" for p in dated)
                    raise InputError(f"{url} holds submission_date folders; choose with --date ({available})")
                files = []
                for date in dates:
                    folder = f"{path.rstrip('/')}/submission_date={date}"
                    if not fs.isdir(folder):
                        raise InputError(f"no input for {date}: {fs.unstrip_protocol(folder)} does not exist")
                    files += _ping_files(fs, folder)
            else:
                files = _ping_files(fs, path)
        elif any(c in path for c in "*?["):
            files = sorted(fs.glob(path))
        elif fs.exists(path):
            files = [path]
        else:
            raise InputError(f"{url} does not exist")
        if not files:
            raise InputError(f"no {' or '.join(PING_SUFFIXES)} files in {url}")
        for file in files:
            chunks += _split(fs.unstrip_protocol(file), _size(fs, file), _date_of(file), blocksize)
    return chunks


def _size(fs, path: str) -> int:
    """A listed file's size; 0 for one that cannot be looked at (a broken link, gone since it was listed), which
    reading then reports by name, under the run's policy for unreadable files."""
    try:
        return fs.size(path)
    except OSError:
        return 0


def _split(url: str, size: int, date: str | None, blocksize: int) -> list[Chunk]:
    """Large plain files are read in byte ranges; gzip files cannot be, so they stay whole."""
    if url.endswith(".gz") or size <= blocksize:
        return [Chunk(url, size, date)]
    starts = range(0, size, blocksize)
    return [Chunk(url, size, date, start, min(start + blocksize, size)) for start in starts]


def read_lines(chunk: Chunk) -> Iterator[bytes]:
    """The lines of a chunk; a line belongs to the byte range it starts in."""
    fs, path = url_to_fs(chunk.url)
    size = fs.size(path)
    if size != chunk.size:
        raise InputChanged(f"{size} bytes, {chunk.size} when the run started: changed while the run read it")
    with fs.open(path, "rb", compression="infer") as f:
        if chunk.end is None:
            yield from f
            return
        if chunk.start:
            f.seek(chunk.start - 1)
            f.readline()  # the rest of a line that started in the previous range (or just its newline)
        while f.tell() < chunk.end:
            line = f.readline()
            if not line:
                return
            yield line
