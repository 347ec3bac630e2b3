"""Input discovery (hive folders, globs, files, URLs) and reading lines from whole files and byte ranges."""

import gzip
from pathlib import Path

import pytest

from aggregator.extract import Options
from aggregator.inputs import InputError, discover, read_lines
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
    assert list(read_lines(one[0])) == [b'{"n": 1}\n']
    with pytest.raises(InputError, match="does not exist"):
        discover([str(hive / "nope.ndjson")], [])


@pytest.mark.parametrize("blocksize", [1, 2, 7, 16, 33, 64, 1000])
def test_byte_ranges_read_every_line_exactly_once(tmp_path: Path, blocksize: int):
    lines = [f'{{"i": {i}, "pad": "{"x" * (i * 7 % 23)}"}}\n'.encode() for i in range(40)]
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"".join(lines))
    chunks = discover([str(path)], [], blocksize=blocksize)
    assert len(chunks) == -(-path.stat().st_size // blocksize)
    assert [line for c in chunks for line in read_lines(c)] == lines


def test_corrupt_gzip_is_reported_by_name_and_contributes_nothing(tmp_path: Path):
    good = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(1000)))
    path = tmp_path / "broken.ndjson.gz"
    path.write_bytes(good[: len(good) // 2] + b"garbage" * 50)
    (chunk,) = discover([str(path)], [])
    aggregate = aggregate_chunk(chunk, Definitions(), Options())
    stats = aggregate.stats.files[chunk.url]
    assert stats.error and "broken.ndjson.gz" in chunk.url
    assert len(aggregate) == 0
