"""Input discovery (hive folders, globs, files, URLs) and reading lines from whole files and byte ranges."""

import gc
import gzip
import tracemalloc
from pathlib import Path

import fsspec
import pytest

from aggregator.extract import Options
from aggregator.inputs import InputError, Lines, discover
from aggregator.layouts import Definitions
from aggregator.tasks import aggregate_chunk


@pytest.fixture
def hive(tmp_path: Path) -> Path:
    for date in ("20261101", "20261102"):
        folder = tmp_path / f"submission_date={date}"
        folder.mkdir()
        (folder / "a.ndjson").write_text('{"n": 1}\n')
        with gzip.open(folder / "b.ndjson.gz", "wt") as f:
            f.write('{"n": 2}\n')
        (folder / "ignored.txt").write_text("not pings")
    return tmp_path


def test_hive_root_reads_the_requested_dates_only(hive: Path):
    chunks = discover([str(hive)], ["20261102"])
    assert [Path(c.url.removeprefix("file://")).name for c in chunks] == ["a.ndjson", "b.ndjson.gz"]
    assert {c.date for c in chunks} == {"20261102"}


def test_hive_root_needs_dates_and_names_the_available_ones(hive: Path):
    with pytest.raises(InputError, match="20261101, 20261102"):
        discover([str(hive)], [])


def test_missing_date_folder_is_an_error(hive: Path):
    with pytest.raises(InputError, match="no input for 20261105"):
        discover([str(hive)], ["20261105"])


def test_globs_files_and_file_urls(hive: Path):
    by_glob = discover([f"{hive}/submission_date=*/*.ndjson.gz"], [])
    assert sorted(c.date for c in by_glob) == ["20261101", "20261102"]
    one = discover([f"file://{hive}/submission_date=20261101/a.ndjson"], [])
    assert len(one) == 1 and one[0].url.startswith("file://") and one[0].date == "20261101"
    assert list(Lines(one[0], 100)) == [b'{"n": 1}']
    with pytest.raises(InputError, match="does not exist"):
        discover([str(hive / "nope.ndjson")], [])


@pytest.mark.parametrize("blocksize", [1, 2, 7, 16, 33, 64, 1000])
def test_byte_ranges_read_every_line_exactly_once(tmp_path: Path, blocksize: int):
    lines = [f'{{"i": {i}, "pad": "{"x" * (i * 7 % 23)}"}}\n'.encode() for i in range(40)]
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"".join(lines))
    chunks = discover([str(path)], [], blocksize=blocksize)
    assert len(chunks) == -(-path.stat().st_size // blocksize)
    assert [line for c in chunks for line in Lines(c, 100)] == [line.strip() for line in lines]


def test_corrupt_gzip_is_reported_by_name_and_contributes_nothing(tmp_path: Path):
    good = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(1000)))
    path = tmp_path / "broken.ndjson.gz"
    path.write_bytes(good[: len(good) // 2] + b"garbage" * 50)
    (chunk,) = discover([str(path)], [])
    aggregate = aggregate_chunk(chunk, Definitions(), Options())
    stats = aggregate.stats.files[chunk.url]
    assert stats.error and "broken.ndjson.gz" in chunk.url
    assert len(aggregate) == 0
    assert gc.isenabled()  # the task paused the collector while it read, and turned it back on as it failed


@pytest.mark.parametrize("blocksize", [1, 7, 33, 64, 1000, None])
def test_long_lines_and_blank_lines_are_counted_never_returned(tmp_path: Path, blocksize: int | None):
    """Lines past the limit (40 bytes here) and blank ones (white space only, CRLF included) are counted once
    each, whichever byte range they start in; the others come back stripped. `None`: the file gzipped whole."""
    lines = []
    for i in range(60):
        lines.append(
            [b'{"i": %d}\n' % i, b"x" * (41 + i) + b"\n", b"\n", b"  \t\r\n", b'{"pad": "%s"}\r\n' % (b"y" * 20)][i % 5]
        )
    data = b"".join(lines) + b"z" * 100  # a last line past the limit, without a line ending
    path = tmp_path / ("lines.ndjson.gz" if blocksize is None else "lines.ndjson")
    path.write_bytes(gzip.compress(data) if blocksize is None else data)
    chunks = discover([str(path)], [], blocksize=blocksize or 2**20)
    readers = [Lines(c, 40) for c in chunks]
    got = [line for reader in readers for line in reader]
    assert got == [line.strip() for line in lines if line.strip() and len(line.rstrip(b"\r\n")) <= 40]
    assert sum(r.too_long for r in readers) == 12 + 1
    assert sum(r.blank for r in readers) == 24


def test_a_line_past_the_limit_is_never_held_whole(tmp_path: Path):
    """A 64 MiB line between two pings, gzipped: read with a 1 MiB limit, the reader holds a bounded multiple of
    its 1 MiB blocks, not the line (Python's own allocations, traced: a block of a million blank lines splits
    into a list of 8 MiB of pointers)."""
    path = tmp_path / "huge.ndjson.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b'{"a": 1}\n')
        for _ in range(64):
            f.write(b"x" * 2**20)
        f.write(b'\n{"b": 2}\n' + b"\n" * 2**22)  # and four million blank lines
    (chunk,) = discover([str(path)], [])
    reader = Lines(chunk, 2**20)
    tracemalloc.start()
    try:
        got = list(reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [b'{"a": 1}', b'{"b": 2}']
    assert (reader.too_long, reader.blank) == (1, 2**22)
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB held"


def test_gzip_is_read_through_isal(tmp_path: Path):
    """fsspec decompresses gzip with ISA-L when the `isal` dependency is installed: about a quarter less time
    than the standard library's zlib on pings."""
    path = tmp_path / "p.ndjson.gz"
    path.write_bytes(gzip.compress(b'{"n": 1}\n'))
    with fsspec.open(str(path), "rb", compression="infer") as f:
        assert type(f).__module__.startswith("isal") and f.read() == b'{"n": 1}\n'
