"""Finding the input files and reading their lines, through fsspec (local paths and any URL)."""

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from fsspec.core import url_to_fs
from isal.igzip_lib import IsalError

PING_SUFFIXES = (".ndjson", ".ndjson.gz")
_DATE_FOLDER = re.compile(r"(?:^|/)submission_date=(\d{8})(?:/|$)")
DEFAULT_BLOCKSIZE = 128 * 2**20
# IsalError: ISA-L's zlib.error, when fsspec reads gzip through it
UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, IsalError, OSError, UnicodeDecodeError)


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


class Lines:
    """The lines of a chunk that hold anything, read in blocks so that no line is held past `max_bytes`.

    A line belongs to the byte range it starts in. Blank lines are counted in `blank`; a line longer than
    `max_bytes` is counted in `too_long` and dropped as it is read, never held whole. Lines come without their
    line ending or surrounding white space.
    """

    def __init__(self, chunk: Chunk, max_bytes: int) -> None:
        self.chunk, self.max_bytes = chunk, max_bytes
        self.blank = self.too_long = 0

    def __iter__(self) -> Iterator[bytes | memoryview]:
        chunk = self.chunk
        fs, path = url_to_fs(chunk.url)
        size = fs.size(path)
        if size != chunk.size:
            raise InputChanged(f"{size} bytes, {chunk.size} when the run started: changed while the run read it")
        block = min(READ_BLOCK, self.max_bytes + 1)  # a line whole inside one block is never too long
        with fs.open(path, "rb", compression="infer") as f:
            if chunk.end is None:
                yield from self._split(iter(partial(f.read, block), b""), drop_first=False)
                return
            start = max(chunk.start - 1, 0)
            f.seek(start)
            # from the byte before the range: a line starting right at it is ours, the rest of one before is not
            yield from self._split(_range_blocks(f, start, chunk.end, block), drop_first=chunk.start > 0)

    def _split(self, blocks: Iterator[bytes], drop_first: bool) -> Iterator[bytes | memoryview]:
        pending: list[bytes] = []  # the start of a line not finished yet
        held = 0
        dropping = _PREVIOUS if drop_first else None  # drop the unfinished line up to its end, and why
        for block in blocks:
            if dropping is None and not pending and block.isspace() and (last := block.rfind(b"\n")) >= 0:
                self.blank += block.count(b"\n")  # blank lines by the million cost one pass, not one step each
                block = block[last + 1 :]
            end = block.find(b"\n")
            if end >= 0:  # the unfinished line ends in this block
                if dropping is None and held + end > self.max_bytes:
                    dropping = _TOO_LONG
                if dropping is not None:
                    self.too_long += dropping is _TOO_LONG
                elif pending:
                    yield from self._kept(b"".join((*pending, memoryview(block)[:end])), 0, end + held)
                else:
                    yield from self._kept(block, 0, end)
                pending, held, dropping = [], 0, None
                # the block's other whole lines, as views of it: a line is not copied out of its block
                start = end + 1
                while (end := block.find(b"\n", start)) >= 0:
                    yield from self._kept(block, start, end)
                    start = end + 1
                tail = block[start:]
            else:
                tail = block
            if dropping is None and tail:
                held += len(tail)
                if held > self.max_bytes:
                    pending, held, dropping = [], 0, _TOO_LONG
                else:
                    pending.append(tail)
        if dropping is _TOO_LONG:
            self.too_long += 1
        elif pending:
            last = b"".join(pending)
            yield from self._kept(last, 0, len(last))

    def _kept(self, block: bytes, start: int, end: int) -> Iterator[bytes | memoryview]:
        """`block[start:end]` without surrounding white space, as a view of `block`, unless it is blank (counted)."""
        while start < end and block[start] in _SPACE:
            start += 1
        while end > start and block[end - 1] in _SPACE:
            end -= 1
        if start == end:
            self.blank += 1
        else:
            yield memoryview(block)[start:end]


_PREVIOUS, _TOO_LONG = "previous", "too long"  # why an unfinished line is being dropped
_SPACE = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() strips
READ_BLOCK = 2**20


def _range_blocks(f, position: int, end: int, size: int) -> Iterator[bytes]:
    """Blocks of the bytes from `position` to `end`, then of the rest of the line unfinished at `end`."""
    last = b""
    while position < end:
        last = f.read(min(size, end - position))
        if not last:
            return
        position += len(last)
        yield last
    if last.endswith(b"\n"):
        return
    while piece := f.read(size):
        newline = piece.find(b"\n")
        if newline >= 0:
            yield piece[: newline + 1]
            return
        yield piece
