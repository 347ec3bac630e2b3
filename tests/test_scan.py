"""The compiled scanner (aggregator/_scan.c): the installed package uses it, and a ping aggregates the same
whether its histograms were scanned from its bytes or parsed with the rest (the exact path every other test
checks against the plain-Python reference)."""

import gzip
import importlib.machinery
from pathlib import Path

import orjson
import pytest

from aggregator import _scan
from aggregator.aggregate import rebuild
from aggregator.extract import Accumulator, Options
from aggregator.inputs import Lines, discover
from aggregator.layouts import Definitions
from aggregator.scan import scan
from aggregator.stats import RunStats
from aggregator.tasks import aggregate_chunk
from tests.test_aggregate import as_dict


def test_the_installed_package_uses_the_compiled_scanner(corpus):
    """`make install` builds the extension; most generated pings are scanned (the others are malformed or odd)."""
    assert _scan.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    lines = [
        line for path in corpus.files for line in gzip.decompress(Path(path).read_bytes()).splitlines() if line.strip()
    ]
    scanned = sum(scan(line) is not None for line in lines)
    assert scanned >= 0.8 * len(lines), f"{scanned} of {len(lines)} pings scanned"


def exact_path(chunk, definitions: Definitions) -> tuple:
    """The chunk through the JSON parser alone: what aggregate_chunk gave before the scanner."""
    accumulator = Accumulator(definitions, Options(dates=frozenset({chunk.date}) if chunk.date else None))
    for line in Lines(chunk, 8 * 2**20):
        try:
            ping = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        accumulator.add(ping)
    result = accumulator.finish(RunStats())
    return as_dict(rebuild([result])), result.stats.dropped, result.stats.overflow


def scanned_path(chunk, definitions: Definitions) -> tuple:
    result = aggregate_chunk(chunk, definitions, Options())
    return as_dict(rebuild([result])), result.stats.dropped, result.stats.overflow


def test_the_test_corpus_aggregates_the_same_scanned_or_parsed(corpus):
    definitions = Definitions.load(corpus.histograms_definitions, corpus.scalars_definitions)
    for chunk in discover([corpus.output], corpus.dates):
        assert scanned_path(chunk, definitions) == exact_path(chunk, definitions), chunk.url


def base_ping() -> dict:
    return {
        "meta": {"submissionDate": "20261101", "sampleId": 1},
        "application": {
            "channel": "nightly",
            "version": "146.0a1",
            "buildId": "20261030000000",
            "name": "Firefox",
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": "Linux", "version": "6.1"}, "cpu": {"count": 8}}, "addons": {}},
        "payload": {
            "histograms": {
                "H": {"bucket_count": 3, "histogram_type": 1, "sum": 5, "range": [1, 2], "values": {"0": 1, "1": 2}},
                "C": {"bucket_count": 3, "histogram_type": 4, "sum": 7, "range": [1, 2], "values": {"0": 7}},
            },
            "keyedHistograms": {
                "K": {"a": {"bucket_count": 3, "histogram_type": 2, "sum": 1, "range": [1, 2], "values": {"1": 1}}},
                "MESSAGE_MANAGER_MESSAGE_SIZE": {
                    "x": {"bucket_count": 3, "histogram_type": 1, "sum": 1, "range": [1, 2], "values": {"1": 1}}
                },
            },
            "processes": {
                "parent": {"scalars": {"a.b": 3}},
                "content": {
                    "histograms": {
                        "H": {"bucket_count": 3, "histogram_type": 1, "sum": 2, "range": [1, 2], "values": {"2": 2}}
                    }
                },
            },
            "childPayloads": [
                {"histograms": {"H": {"bucket_count": 3, "histogram_type": 1, "sum": 1, "range": [1, 2], "values": {}}}}
            ],
        },
    }


def variant(change) -> bytes:
    ping = base_ping()
    change(ping)
    return orjson.dumps(ping)


def histogram(ping: dict) -> dict:
    return ping["payload"]["histograms"]["H"]


# Each variant is either scanned (and must aggregate as parsed) or left to the parser (None), which must then
# give the same outcome as before the scanner existed.
VARIANTS = {
    "plain": orjson.dumps(base_ping()),
    "white space": orjson.dumps(base_ping(), option=orjson.OPT_INDENT_2),
    "float count": variant(lambda p: histogram(p)["values"].update({"1": 2.0})),
    "negative count": variant(lambda p: histogram(p)["values"].update({"1": -2})),
    "huge count": variant(lambda p: histogram(p)["values"].update({"1": 2**63})),
    "19-digit count": variant(lambda p: histogram(p)["values"].update({"1": 10**18})),
    "18-digit count": variant(lambda p: histogram(p)["values"].update({"1": 10**18 - 1})),
    "odd keys": variant(lambda p: histogram(p).update(values={"05": 1, " 6": 2, "-1": 3, "x": 4})),
    "keys out of order": variant(lambda p: histogram(p).update(values={"1": 1, "0": 2})),
    "string sum": variant(lambda p: histogram(p).update(sum="5")),
    "negative sum": variant(lambda p: histogram(p).update(sum=-5)),
    "boolean type": variant(lambda p: histogram(p).update(histogram_type=True)),
    "missing range": variant(lambda p: histogram(p).pop("range")),
    "extra field": variant(lambda p: histogram(p).update(log_sum=1.5)),
    "values a list": variant(lambda p: histogram(p).update(values=[1, 2])),
    "histogram a list": variant(lambda p: p["payload"]["histograms"].update(H=[1])),
    "histograms a string": variant(lambda p: p["payload"].update(histograms="H")),
    "keyed labels a list": variant(lambda p: p["payload"]["keyedHistograms"].update(K=[])),
    "processes a list": variant(lambda p: p["payload"].update(processes=[])),
    "content a list": variant(lambda p: p["payload"]["processes"].update(content=[])),
    "children an object": variant(lambda p: p["payload"].update(childPayloads={})),
    "environment a string": variant(lambda p: p.update(environment="x")),
    "system a list": variant(lambda p: p["environment"].update(system=[])),
    "no os": variant(lambda p: p["environment"]["system"].pop("os")),
    "payload a list": variant(lambda p: p.update(payload=[])),
    "empty containers": variant(lambda p: p["payload"].update(histograms={}, keyedHistograms={"K": {}})),
}
RAW = {
    # JSON that orjson reads with a repeated key: the first place, the last value
    "repeated histogram": b'{"payload":{"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],'
    b'"values":{"0":1}},"G":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],"values":{"0":1}},'
    b'"H":{"bucket_count":3,"histogram_type":1,"sum":9,"range":[1,2],"values":{"1":9}}}},',
    "repeated containers": b'{"payload":{"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],'
    b'"values":{"0":1}}},"histograms":{"G":{"bucket_count":3,"histogram_type":1,"sum":2,"range":[1,2],'
    b'"values":{"1":2}}}},',
    "repeated environment parts": b'{"environment":{"system":{"os":{"name":"Darwin","version":"1"}},"system":'
    b'{"os":5,"os":{"name":"Linux","version":"6.1"}}},',
    "escaped key": b'{"payload":{"histo\\u0067rams":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],'
    b'"values":{"0":1}}}},',
    "escaped name": b'{"payload":{"histograms":{"\\u0048":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],'
    b'"values":{"0":1}}}},',
    "control character in a name": b'{"payload":{"histograms":{"H\\t\x01":{"bucket_count":3,"histogram_type":1,'
    b'"sum":1,"range":[1,2],"values":{"0":1}}}},',
    "invalid UTF-8 in a name": b'{"payload":{"histograms":{"H\xff":{"bucket_count":3,"histogram_type":1,"sum":1,'
    b'"range":[1,2],"values":{"0":1}}}},',
    "truncated": b'{"payload":{"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,"range":[1,2],"values":',
}
REST = orjson.dumps({k: v for k, v in base_ping().items() if k != "payload"})[1:]  # the other fields, then "}"


def raw_ping(prefix: bytes) -> bytes:
    if prefix.endswith(b'"values":'):
        return prefix  # cut short on purpose
    if prefix.startswith(b'{"environment"'):
        return (
            b'{"payload":'
            + orjson.dumps(base_ping()["payload"])
            + b","
            + prefix[1:]
            + REST.replace(b'"environment":', b'"environment_":')
        )
    return prefix + REST


@pytest.mark.parametrize("name", [*VARIANTS, *RAW])
def test_odd_pings_aggregate_the_same_scanned_or_parsed(name: str, tmp_path: Path):
    line = VARIANTS[name] if name in VARIANTS else raw_ping(RAW[name])
    folder = tmp_path / "submission_date=20261101"
    folder.mkdir()
    path = folder / "p.ndjson"
    path.write_bytes(b"\n".join([line, line, orjson.dumps(base_ping())]) + b"\n")
    (chunk,) = discover([str(path)], [])
    definitions = Definitions(histograms={"H": {"kind": "linear", "low": 1, "high": 2, "n_buckets": 3}})
    assert scanned_path(chunk, definitions) == exact_path(chunk, definitions)
    assert name not in ("plain", "white space", "18-digit count", "empty containers") or scan(line) is not None
