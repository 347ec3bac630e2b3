"""The compiled scanner (aggregator/_scan.c): the installed package uses it, and a ping aggregates the same
whether its histograms were scanned from its bytes or parsed with the rest (the exact path every other test
checks against the plain-Python reference)."""

import gzip
import importlib.machinery
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from aggregator import _scan
from aggregator.aggregate import rebuild
from aggregator.bounds import Limits
from aggregator.extract import Accumulator, Options
from aggregator.inputs import Lines, discover
from aggregator.layouts import Definitions
from aggregator.scan import KNOWN_ROW, METRIC, Known, Scanned, scan
from aggregator.stats import RunStats
from aggregator.tasks import aggregate_chunk
from tests.test_aggregate import as_dict


def test_the_installed_package_uses_the_compiled_scanner(corpus):
    """`make install` builds the extension; most generated pings are scanned (the others are malformed or odd)."""
    assert _scan.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    lines = [
        line for path in corpus.files for line in gzip.decompress(Path(path).read_bytes()).splitlines() if line.strip()
    ]
    scanned = sum(scan(line, Known(frozenset(), 1000)) is not None for line in lines)
    assert scanned >= 0.8 * len(lines), f"{scanned} of {len(lines)} pings scanned"


def exact_path(chunk, definitions: Definitions, limits: Limits | None = None) -> tuple:
    """The chunk through the JSON parser alone: what aggregate_chunk gave before the scanner."""
    options = Options(dates=frozenset({chunk.date}) if chunk.date else None, limits=limits or Limits.from_settings())
    accumulator = Accumulator(definitions, options)
    for line in Lines(chunk, 8 * 2**20):
        try:
            ping = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        accumulator.add(ping)
    result = accumulator.finish(RunStats())
    return as_dict(rebuild([result])), result.stats.dropped, result.stats.overflow


def scanned_path(chunk, definitions: Definitions, limits: Limits | None = None) -> tuple:
    result = aggregate_chunk(chunk, definitions, Options(limits=limits or Limits.from_settings()))
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


def simple_measurements(ping: dict) -> None:
    """Values of every kind, and objects of them, in the payload and in a child payload."""
    measures = {"uptime": 5, "f": 2.5, "s": "x", "n": None, "neg": -1, "t": True, "big": 10**19, "list": [1]}
    nested = {"a": 1, "b": "y", "c": {"deep": 1}, "d": [1], "e": 0.5, "f": False}
    ping["payload"]["simpleMeasurements"] = {**measures, "nested": nested, "empty": {}, "\u00e9": {"\u00e9": 1}}
    ping["payload"]["childPayloads"][0]["simpleMeasurements"] = {"uptime": 7, "nested": {"a": 2}}


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
    "scalar values of every kind": variant(
        lambda p: p["payload"]["processes"]["parent"].update(
            scalars={
                **{"a.b": 3, "a.c": 2.5, "a.d": -4, "a.e": None, "a.f": 10**19, "a.g": "text", "a.h": True},
                **{"a.i": 0, "a.j": -0.0, "a.k": 1e300, "a.l": 10**18 - 1, "a.m": 10**18, "a.n": False},
            },
            keyedScalars={"k.s": {"a": 1, "b": True, "c": "x", "d": -1.5}, "k.t": {}},
        )
    ),
    "scalars in every process": variant(
        lambda p: p["payload"]["processes"].update(
            content={**p["payload"]["processes"]["content"], "scalars": {"a.b": 5}, "keyedScalars": {"k": {"x": 2}}},
            gpu={"scalars": {"a.b": 6}, "keyedScalars": {"k": {"x": 3}}},
        )
    ),
    "parent histograms, not the job's": variant(
        lambda p: p["payload"]["processes"]["parent"].update(histograms=p["payload"]["histograms"])
    ),
    "a scalar an array": variant(lambda p: p["payload"]["processes"]["parent"].update(scalars={"a.b": [1]})),
    "a scalar an object": variant(lambda p: p["payload"]["processes"]["parent"].update(scalars={"a.b": {"x": 1}})),
    "a string scalar with an escape": variant(
        lambda p: p["payload"]["processes"]["parent"].update(scalars={"a.b": "x\ny"})
    ),
    "a string scalar not ASCII": variant(
        lambda p: p["payload"]["processes"]["parent"].update(scalars={"a.b": "\u00e9t\u00e9"})
    ),
    "keyed scalars a list": variant(lambda p: p["payload"]["processes"]["parent"].update(keyedScalars={"k": [1]})),
    "parent a list": variant(lambda p: p["payload"]["processes"].update(parent=[])),
    "simple measurements of every kind": variant(simple_measurements),
    "simple measurements a list": variant(lambda p: p["payload"].update(simpleMeasurements=[1])),
    "simple measurements of a child a string": variant(
        lambda p: p["payload"]["childPayloads"][0].update(simpleMeasurements="x")
    ),
    "simple measurements where the job does not read them": variant(
        lambda p: p["payload"]["processes"]["content"].update(simpleMeasurements={"uptime": 4})
    ),
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
    "repeated payload histograms": b'{"payload":{"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,'
    b'"range":[1,2],"values":{"0":1}}},"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":2,'
    b'"range":[1,2],"values":{"1":2}}}},',
    "repeated processes": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":1}}},"processes":{"parent":'
    b'{"scalars":{"a.b":2}}}},',
    "repeated content": b'{"payload":{"processes":{"content":{"scalars":{"a.b":1}},"content":{"scalars":{"a.b":2}}}},',
    "repeated scalars": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":1},"scalars":{"a.b":2}}}},',
    "repeated scalar": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":1,"a.b":2}}}},',
    "repeated simple measurements": b'{"payload":{"simpleMeasurements":{"a":1},"simpleMeasurements":{"a":2}},',
    "repeated simple measurement": b'{"payload":{"simpleMeasurements":{"a":{"b":1,"b":2}}},',
    "a number past a double": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":1e400}}}},',
    "a number cut short": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":1.}}}},',
    "a number with a leading zero": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":01}}}},',
    "a literal misspelled": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":tru}}}},',
    "a literal run on": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":nullx}}}},',
    "a string scalar with a control character": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":"x\ty"}}}},',
    # invalid JSON inside a value the scanner leaves to the parser: the ping is malformed, as when parsed whole
    "a leading zero in an odd histogram": b'{"payload":{"histograms":{"H":{"sum":1,"values":{"0":01}}}},',
    "a trailing comma in an odd histogram": b'{"payload":{"histograms":{"H":{"sum":1,"values":[1,]}}},',
    "an odd scalar cut short": b'{"payload":{"processes":{"parent":{"scalars":{"a.b":[1,}}}},',
    "an escaped key in a histogram": b'{"payload":{"histograms":{"H":{"bucket_count":3,"histogram_type":1,"sum":1,'
    b'"range":[1,2],"v\\u0061lues":{"0":1}}}},',
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
    assert name not in SCANNED or scan(line, Known(frozenset(), 1000)) is not None


# The variants the scanner must take (the others it may leave to the parser): a histogram or a scalar value of an
# odd shape sends only itself to the parser, not its ping
SCANNED = {
    "plain",
    "white space",
    "18-digit count",
    "empty containers",
    "scalar values of every kind",
    "scalars in every process",
    "parent histograms, not the job's",
    "float count",
    "negative count",
    "huge count",
    "19-digit count",
    "odd keys",
    "keys out of order",
    "string sum",
    "negative sum",
    "boolean type",
    "missing range",
    "extra field",
    "values a list",
    "histogram a list",
    "a scalar an array",
    "a scalar an object",
    "a string scalar with an escape",
    "a string scalar not ASCII",
    "an escaped key in a histogram",
    "simple measurements of every kind",
    "simple measurements where the job does not read them",
}


def in_processes(ping: dict, name: str, histogram: dict) -> None:
    """The histogram `name` in every container the job reads, each process with its own values."""
    payload = ping["payload"]
    payload["histograms"][name] = histogram
    payload["childPayloads"][0]["histograms"][name] = dict(histogram, sum=histogram["sum"] + 1)
    payload["processes"]["content"]["histograms"][name] = dict(histogram, sum=histogram["sum"] + 2)
    payload["processes"]["gpu"] = {"histograms": {name: dict(histogram, sum=histogram["sum"] + 3)}}


def count_then_plain(ping: dict) -> None:
    in_processes(ping, "C", {"bucket_count": 3, "histogram_type": 1, "sum": 4, "range": [1, 2], "values": {"1": 4}})


def many_labels(ping: dict) -> None:
    labels = {
        str(i): {"bucket_count": 3, "histogram_type": 2, "sum": i, "range": [1, 2], "values": {"1": i}}
        for i in range(5)
    }
    ping["payload"]["keyedHistograms"]["K"] = labels
    ping["payload"]["childPayloads"][0]["keyedHistograms"] = {"K": dict(list(labels.items())[1:])}


def scalar_kinds(ping: dict) -> None:
    ping["payload"]["processes"]["parent"].update(
        scalars={"a.b": "text", "a.c": True, "a.d": 2.5, "browser.engagement.navigation.x": 1},
        keyedScalars={"k.s": {"x": False, "y": "no", "z": 3}, "browser.engagement.navigation.y": {"a": 1}},
    )
    ping["payload"]["simpleMeasurements"] = {"uptime": "x", "nested": {"a": 1, "b": "y"}, "flag": True}


def scalar_kinds_swapped(ping: dict) -> None:
    ping["payload"]["processes"]["parent"].update(
        scalars={"a.b": 7, "a.c": "yes", "a.d": -1, "browser.engagement.navigation.x": "s"},
        keyedScalars={"k.s": {"y": 4}, "browser.engagement.navigation.y": {"a": "b"}},
    )
    ping["payload"]["simpleMeasurements"] = {"uptime": 3, "nested": {"b": 2}, "flag": "no"}


def undefined(kind: int, n: int, low: int, high: int, **fields) -> Callable[[dict], None]:
    """A histogram "U" without a definition, and a keyed one "KU", in the layout (type, buckets, low, high), with
    other `fields` when given."""

    def change(ping: dict) -> None:
        values = {str(low): 2, str(high): 1}
        h = {"bucket_count": n, "histogram_type": kind, "sum": 3, "range": [low, high], "values": values} | fields
        ping["payload"]["histograms"]["U"] = h
        ping["payload"]["keyedHistograms"]["KU"] = {"u1": h, "u2": dict(h, sum=4)}

    return change


LINEAR, EXPONENTIAL, COUNT = (1, 5, 1, 10), (0, 10, 1, 1000), (4, 3, 1, 2)


def in_order(*changes) -> list[bytes]:
    """One ping per change, each after a plain one: the scanner's caches are warm when the odd ones come."""
    return [line for change in changes for line in (orjson.dumps(base_ping()), variant(change))]


# Sequences of pings whose later pings find metrics cached by earlier ones, in another form
SEQUENCES = {
    "a count histogram's name as a plain one, and back": in_order(count_then_plain, lambda p: None, count_then_plain),
    "a name in every process": in_order(count_then_plain, count_then_plain),
    "keyed labels past the bound, cached before": in_order(many_labels, many_labels),
    "keyed scalar labels past the bound, cached before": in_order(
        *[lambda p: p["payload"]["processes"]["parent"].update(keyedScalars={"k.s": dict.fromkeys("abcde", 1)})] * 2,
        lambda p: p["payload"]["processes"]["parent"].update(keyedScalars={"k.s": dict.fromkeys("abcde", "s")}),
    ),
    "scalars of every kind, then swapped": in_order(
        scalar_kinds, scalar_kinds_swapped, scalar_kinds, scalar_kinds_swapped
    ),
    "simple measurements of every kind, then each other's": in_order(
        simple_measurements,
        lambda p: p["payload"].update(simpleMeasurements={"uptime": "x", "nested": 3, "s": 4, "f": {"a": 1}}),
        simple_measurements,
    ),
    "odd values of cached metrics": in_order(
        lambda p: histogram(p).update(sum=2.5),
        lambda p: p["payload"]["keyedHistograms"]["K"].update(a={"values": {"1": "x"}}),
        lambda p: p["payload"]["processes"]["parent"].update(scalars={"a.b": [1]}),
        lambda p: p["payload"]["processes"]["parent"].update(keyedScalars={"k.s": {"x": "\u00e9"}}),
    ),
    "a metric without a definition in one layout, another, and the first again": in_order(
        undefined(*LINEAR), undefined(*EXPONENTIAL), undefined(*LINEAR), undefined(*EXPONENTIAL)
    ),
    "more layouts of a metric without a definition than are cached, twice": in_order(
        *[undefined(1, n, 1, 10 + n) for n in range(3, 13)] * 2
    ),
    "a metric without a definition as a count histogram, laid out, and back": in_order(
        undefined(*COUNT), undefined(*LINEAR), undefined(*COUNT), undefined(*LINEAR)
    ),
    "a metric without a definition whose layout is not plain integers": in_order(
        undefined(*LINEAR),
        undefined(*LINEAR, range=[1.0, 10]),
        undefined(*LINEAR, bucket_count=True),
        undefined(*LINEAR),
    ),
    "an excluded keyed histogram beside a cached one": in_order(
        lambda p: p["payload"]["keyedHistograms"].update(
            VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION=p["payload"]["keyedHistograms"]["K"]
        )
    ),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_pings_that_meet_cached_metrics_aggregate_the_same_scanned_or_parsed(name: str, tmp_path: Path):
    folder = tmp_path / "submission_date=20261101"
    folder.mkdir()
    path = folder / "p.ndjson"
    path.write_bytes(b"\n".join(SEQUENCES[name]) + b"\n")
    (chunk,) = discover([str(path)], [])
    definitions = Definitions(
        histograms={name: {"kind": "linear", "low": 1, "high": 2, "n_buckets": 3} for name in ("H", "C", "K")}
    )
    limits = replace(Limits.from_settings(), labels=3)
    assert scanned_path(chunk, definitions, limits) == exact_path(chunk, definitions, limits)


def test_a_metric_without_a_definition_is_found_by_the_layout_its_pings_give():
    """Once a ping has given a metric without a definition its layout, the scanner finds the metric's next
    histograms in that layout (plain and keyed) among the known ones, as it finds defined metrics; one in another
    layout takes the general path."""
    accumulator = Accumulator(Definitions(), Options())

    def scanned(change) -> tuple[dict, Scanned]:
        """The ping's payload, its containers replaced by their numbers, and what the scanner took from it."""
        rest, found = scan(variant(change), accumulator.known)
        ping = orjson.loads(rest)
        accumulator.add(ping, found)
        return ping["payload"], found

    def slow(payload: dict, found: Scanned) -> set[tuple[str, str]]:
        """(name, label) of the payload's histograms left to the general path."""
        plain = {(found.names[row[0]], "") for row in found.rows_of(payload["histograms"])}
        keyed = found.keyed_rows_of(payload["keyedHistograms"])
        return plain | {(name, found.names[row[1]]) for name, rows in keyed for row in rows}

    def known(payload: dict, found: Scanned) -> set[tuple[str, str]]:
        """(name, label) of U's and KU's histograms the scanner found among the known ones."""
        metrics = np.frombuffer(found.known_rows, dtype=np.int64).reshape(-1, KNOWN_ROW)[:, METRIC].tolist()
        return {accumulator.metrics[m][:2] for m in metrics if accumulator.metrics[m][0] in ("U", "KU")}

    ours = {("U", ""), ("KU", "u1"), ("KU", "u2")}
    first = scanned(undefined(*LINEAR))
    assert ours <= slow(*first) and not known(*first)
    again = scanned(undefined(*LINEAR))
    assert known(*again) == ours and not ours & slow(*again)
    other = scanned(undefined(*EXPONENTIAL))
    assert ours <= slow(*other) and not known(*other)
