"""Tests of the reference aggregation itself, on small hand-built pings.

Every expected value is written out by hand here (bucket lists are the literal lists of the spec), never
computed by the reference. Each test names the rule of docs/semantics.md or the spec section 8 item it pins.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest

try:
    from reference import INT64_MAX, Cell, Reference, drop_layout, reference_aggregate
    from test_buckets import COUNT_HISTOGRAM, EVENTLOOP_UI_LAG_EXP_MS, SIMPLE_MEASURES
except ModuleNotFoundError:  # when tests/ is a package
    from tests.reference import INT64_MAX, Cell, Reference, drop_layout, reference_aggregate
    from tests.test_buckets import COUNT_HISTOGRAM, EVENTLOOP_UI_LAG_EXP_MS, SIMPLE_MEASURES

DATE = "20240115"
BASE_PING: dict[str, Any] = {
    "meta": {"submissionDate": DATE, "sampleId": 42},
    "application": {
        "channel": "nightly",
        "version": "120.0a1",
        "buildId": "20240110123456",
        "name": "Firefox",
        "architecture": "x86-64",
    },
    "environment": {"system": {"os": {"name": "Windows_NT", "version": "10.0"}}},
    "payload": {},
}
# The dimensions of BASE_PING: version cut at ".", build id cut to 8 characters.
DIMS = (DATE, "nightly", "120", "20240110", "Firefox", "x86-64", "Windows_NT", "10.0")
SD_DIMS = (DATE, "nightly", "120", "Firefox", "x86-64", "Windows_NT", "10.0")

# linear_buckets(1, 10, 11): b[i] = int((1*(10-i) + 10*(i-1)) / 9 + 0.5) = int(9i/9 + 0.5) = i, so 0..10.
LIN_BOUNDS = tuple(range(11))
DEFINITIONS: dict[str, Any] = {
    "LIN": {"kind": "linear", "low": 1, "high": 10, "n_buckets": 11},
    "LIN_NO_LOW": {"kind": "linear", "high": 10, "n_buckets": 11},
    "LIN_LOW_ZERO": {"kind": "linear", "low": 0, "high": 10, "n_buckets": 11},
    "EXP": {"kind": "exponential", "low": 50, "high": "60000", "n_buckets": 20},
    "ENUM": {"kind": "enumerated", "n_values": 3},
    "CAT": {"kind": "categorical", "labels": ["a", "b", "c"]},
    "BOOL": {"kind": "boolean"},
    "FLAG": {"kind": "flag"},
    "COUNTKIND": {"kind": "count"},
    "BROKEN": {"kind": "linear", "low": 1},
    "EVENTLOOP_UI_LAG_EXP_MS": {"kind": "linear", "low": 1, "high": 10, "n_buckets": 11},
}

DELETE = object()


def make_ping(changes: dict[str, Any] | None = None, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE_PING with `{"dotted.path": value}` changes (`DELETE` removes the key) and the given payload."""
    ping = copy.deepcopy(BASE_PING)
    if payload is not None:
        ping["payload"] = payload
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        target = ping
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return ping


def run(
    *pings: dict[str, Any] | str,
    dates: set[str] | None = None,
    definitions: dict[str, Any] | None = DEFINITIONS,
    **kwargs: Any,
) -> Reference:
    """Aggregate pings (dicts are serialised, strings are raw lines)."""
    lines = [ping if isinstance(ping, str) else json.dumps(ping) for ping in pings]
    return reference_aggregate(lines, dates if dates is not None else {DATE}, definitions, **kwargs)


def cells(result: Reference) -> dict[tuple, Cell]:
    """Build-id cells keyed by `(*dims, metric, label, process)`."""
    return drop_layout(result.build_id)


def cell(result: Reference, metric: str, label: str = "", process: str = "parent", dims: tuple = DIMS) -> Cell:
    return cells(result)[(*dims, metric, label, process)]


def metrics(result: Reference) -> set[tuple[str, str, str]]:
    """The `(metric, label, process)` of every build-id cell."""
    return {key[8:11] for key in result.build_id}


def nonzero(c: Cell) -> dict[int, int]:
    """`{bound: count}` of the non-empty buckets."""
    _, bounds, counts, _, _ = c
    return {bound: count for bound, count in zip(bounds, counts, strict=True) if count}


def hist(values: dict[str, Any], total: Any, histogram_type: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"values": values, "sum": total, "histogram_type": histogram_type, **extra}


def scalars_payload(scalars: dict[str, Any], process: str = "parent", keyed: bool = False) -> dict[str, Any]:
    return {"processes": {process: {"keyedScalars" if keyed else "scalars": scalars}}}


# --- Ping level: dimensions -----------------------------------------------------------------------


def test_key_shapes_and_cell_shape() -> None:
    result = run(make_ping(payload=scalars_payload({"a.b": 3})))
    assert result.aggregated == 1
    assert not result.malformed and not result.filtered
    ((key, value),) = result.build_id.items()
    assert len(key) == 12
    assert key[:11] == (*DIMS, "SCALARS_A.B", "", "parent")
    assert key[11] == ("exponential", tuple(COUNT_HISTOGRAM))
    kind, bounds, counts, total, count = value
    assert (kind, bounds, total, count) == ("exponential", tuple(COUNT_HISTOGRAM), 3, 1)
    assert counts == (0, 0, 0, 1) + (0,) * 96
    ((sd_key, sd_value),) = result.submission_date.items()
    assert sd_key == (*SD_DIMS, "SCALARS_A.B", "", "parent", key[11])
    assert sd_value == value


@pytest.mark.parametrize(("version", "major"), [("40.0b1", "40"), ("41", "41"), ("120.0a1", "120")])
def test_version_is_the_major_part(version: str, major: str) -> None:  # item 4
    result = run(make_ping({"application.version": version}, scalars_payload({"a": 1})))
    assert next(iter(result.build_id))[2] == major


def test_build_id_is_the_first_8_characters() -> None:  # item 5
    result = run(make_ping({"application.buildId": "2015060112345"}, scalars_payload({"a": 1})))
    assert next(iter(result.build_id))[3] == "20150601"


@pytest.mark.parametrize(
    ("os_name", "os_version", "expected"),
    [
        ("Linux", "3.1.12", "3.1"),
        ("Linux", "4.15.0", "4.1"),
        ("Linux", "5.10", "5.1"),
        ("Linux", "6", "6"),
        ("Windows_NT", "6.1.7601", "6.1.7601"),
        ("Darwin", "19.6.0", "19.6.0"),
    ],
)
def test_os_version(os_name: str, os_version: str, expected: str) -> None:  # item 6
    ping = make_ping({"environment.system.os.name": os_name, "environment.system.os.version": os_version})
    ping["payload"] = scalars_payload({"a": 1})
    key = next(iter(run(ping).build_id))
    assert key[6:8] == (os_name, expected)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("application.buildId", "2015060"),  # 7 characters
        ("application.buildId", "-1234567"),
        ("application.buildId", "+1234567"),
        ("application.buildId", " 2015060"),
        ("application.buildId", "2015_061"),
        ("application.buildId", "abcdefgh"),
        ("application.buildId", "\uff12\uff10\uff11\uff15\uff10\uff16\uff10\uff11"),  # full-width digits
        ("application.buildId", 20150601),
        ("application.version", "abc"),
        ("application.version", ""),
        ("application.version", ".5"),
        ("application.version", "40a1.0"),
        ("application.version", 40),
        ("meta.submissionDate", "2024-01-15"),
        ("meta.submissionDate", "2024011"),
        ("meta.submissionDate", 20240115),
        ("application.channel", 5),
        ("application.name", "Fire\x00fox"),
        ("application.architecture", None),
        ("environment.system.os.name", ["Linux"]),
        ("environment.system.os.version", 10),
        ("environment.system.os.version", "10.\x000"),
    ],
)
def test_bad_dimension(path: str, value: Any) -> None:
    result = run(make_ping({path: value}))
    assert result.malformed == Counter({"bad_dimension": 1})
    assert result.aggregated == 0 and not result.build_id


def test_nul_check_applies_to_the_derived_values() -> None:
    # [choice of the reference] the NUL is cut off with the rest of the version / Linux os_version.
    ping = make_ping(
        {
            "application.version": "40.\x00",
            "environment.system.os.name": "Linux",
            "environment.system.os.version": "3.1.\x00",
        },
        scalars_payload({"a": 1}),
    )
    key = next(iter(run(ping).build_id))
    assert key[2] == "40" and key[7] == "3.1"


# --- Ping level: malformed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not_json"),
        ('{"meta": {"sampleId": 1}}x', "not_json"),
        ('{"meta": NaN}', "not_json"),
        ('{"meta": 1,}', "not_json"),
        ("[1, 2", "not_json"),  # only a cut-short *object* is `truncated`
        ('{"meta": {', "truncated"),
        ('{"meta": {"sampleId": 4', "truncated"),
        ('{"meta": "abc', "truncated"),
        ('{"meta": tru', "truncated"),
        ('  {"meta": {  \n', "truncated"),
        ("[1, 2]", "not_object"),
        ('"ping"', "not_object"),
        ("42", "not_object"),
        ("null", "not_object"),
    ],
)
def test_unparseable_lines(line: str, reason: str) -> None:
    assert run(line).malformed == Counter({reason: 1})


def test_a_real_ping_cut_short_is_truncated() -> None:
    line = json.dumps(make_ping(payload=scalars_payload({"a": 1})))
    result = run(line[:-7], line[:20], line + "\n")
    assert result.malformed == Counter({"truncated": 2})
    assert result.aggregated == 1


def test_blank_lines_are_ignored() -> None:
    result = run("", "\n", "  \t\r\n", json.dumps(make_ping()))
    assert result.aggregated == 1 and not result.malformed and not result.filtered


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("meta", DELETE),
        ("meta", []),
        ("application", "Firefox"),
        ("environment", None),
        ("environment.system", DELETE),
        ("environment.system", 1),
        ("environment.system.os", "Linux"),
        ("payload", DELETE),
        ("payload", []),
        ("payload", None),
        ("payload.processes", []),
        ("payload.processes", None),
        ("payload.processes", {"content": None}),
        ("payload.processes", {"parent": []}),
        ("payload.processes", {"gpu": 1}),
        ("payload.childPayloads", {}),
        ("payload.childPayloads", None),
        ("payload.childPayloads", [{}, 1]),
    ],
)
def test_wrong_type(path: str, value: Any) -> None:
    assert run(make_ping({path: value})).malformed == Counter({"wrong_type": 1})


def test_other_process_types_are_not_checked() -> None:
    result = run(make_ping(payload={"processes": {"extension": None, "parent": {}}}))
    assert result.aggregated == 1


@pytest.mark.parametrize(
    "path",
    [
        "meta.submissionDate",
        "meta.sampleId",
        "application.channel",
        "application.version",
        "application.buildId",
        "application.name",
        "application.architecture",
        "environment.system.os.name",
        "environment.system.os.version",
    ],
)
def test_missing_field(path: str) -> None:  # item 7
    assert run(make_ping({path: DELETE})).malformed == Counter({"missing_field": 1})


@pytest.mark.parametrize("sample_id", ["5", None, [1], {"a": 1}])
def test_bad_sample_id(sample_id: Any) -> None:  # item 1
    assert run(make_ping({"meta.sampleId": sample_id})).malformed == Counter({"bad_sample_id": 1})


# --- Ping level: filtered -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_id", "aggregated"),
    [
        (0, True),
        (99, True),
        (99.5, True),
        (-1, True),
        (True, True),
        (100, False),
        (100.0, False),
        (150.5, False),
    ],
)
def test_sample_id(sample_id: Any, aggregated: bool) -> None:  # items 1, 3
    result = run(make_ping({"meta.sampleId": sample_id}))
    assert result.aggregated == int(aggregated)
    assert result.filtered == (Counter() if aggregated else Counter({"sampled_out": 1}))


@pytest.mark.parametrize("channel", ["nightly", "aurora", "beta", "release"])
def test_known_channels_are_aggregated(channel: str) -> None:  # item 2
    result = run(make_ping({"application.channel": channel}, scalars_payload({"a": 1})))
    assert next(iter(result.build_id))[1] == channel


@pytest.mark.parametrize("channel", ["esr", "Nightly", "default", ""])
def test_other_channels_are_filtered(channel: str) -> None:  # item 2
    assert run(make_ping({"application.channel": channel})).filtered == Counter({"channel": 1})


def test_channel_selection() -> None:
    result = run(
        make_ping({"application.channel": "beta"}),
        make_ping({"application.channel": "nightly"}),
        make_ping({"application.channel": "esr"}),
        channels={"beta"},
    )
    assert result.aggregated == 1
    assert result.filtered == Counter({"channel_not_selected": 1, "channel": 1})


def test_fennec_is_filtered_unless_included() -> None:  # item 8
    fennec = make_ping({"application.name": "Fennec"}, scalars_payload({"a": 1}))
    assert run(fennec).filtered == Counter({"fennec": 1})
    result = run(fennec, include_fennec=True)
    assert result.aggregated == 1
    assert next(iter(result.build_id))[4] == "Fennec"


def test_other_dates_are_filtered() -> None:
    result = run(make_ping(), make_ping({"meta.submissionDate": "20240116"}))
    assert result.aggregated == 1 and result.filtered == Counter({"other_date": 1})
    assert run(make_ping({"meta.submissionDate": "20240116"}), dates={DATE, "20240116"}).aggregated == 1


def test_checks_apply_in_table_order() -> None:
    result = run(
        make_ping({"application.buildId": "x", "application.channel": "esr"}),  # bad_dimension first
        make_ping({"meta.sampleId": "1", "application.buildId": "x"}),  # bad_sample_id before bad_dimension
        make_ping({"meta.sampleId": 100, "application.channel": "esr"}),  # sampled_out before channel
        make_ping({"payload.processes": None, "meta.submissionDate": "20240116"}),  # wrong_type first
        make_ping(  # fennec before other_date
            {"application.channel": "beta", "application.name": "Fennec", "meta.submissionDate": "20240116"}
        ),
        make_ping({"application.channel": "esr", "application.name": "Fennec"}),  # channel first
        make_ping({"meta.sampleId": DELETE, "application.version": 5}),  # missing_field first
        channels={"beta"},
    )
    assert result.malformed == Counter({"bad_dimension": 1, "bad_sample_id": 1, "wrong_type": 1, "missing_field": 1})
    assert result.filtered == Counter({"sampled_out": 1, "fennec": 1, "channel": 1})
    assert result.aggregated == 0


def test_counters_over_a_mixed_input() -> None:
    result = run(
        make_ping(),
        make_ping(),
        "garbage",
        '{"meta": ',
        make_ping({"meta.sampleId": 100}),
        make_ping({"application.channel": "esr"}),
        make_ping({"application.buildId": "2015"}),
    )
    assert result.aggregated == 2
    assert result.malformed == Counter({"not_json": 1, "truncated": 1, "bad_dimension": 1})
    assert result.filtered == Counter({"sampled_out": 1, "channel": 1})
    assert not result.build_id  # aggregated pings without metrics make no cells


# --- Scalars --------------------------------------------------------------------------------------


def test_scalar_name_and_bucket() -> None:  # items 14, 24
    result = run(make_ping(payload=scalars_payload({"browser.engagement.total_uri_count": 42})))
    c = cell(result, "SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT")
    assert c[0] == "exponential" and c[1] == tuple(COUNT_HISTOGRAM)
    assert nonzero(c) == {40: 1} and c[3:] == (42, 1)


def test_keyed_scalar_labels_are_upper_cased() -> None:  # item 15
    payload = scalars_payload({"telemetry.test.keyed_unsigned_int": {"key1": 2, "Key2": 5}}, keyed=True)
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT", "KEY1", "parent"),
        ("SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT", "KEY2", "parent"),
    }
    c = cell(result, "SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT", "KEY2")
    assert nonzero(c) == {5: 1} and c[3:] == (5, 1)


def test_navigation_scalars_are_excluded() -> None:  # item 16
    payload = {
        "processes": {
            "parent": {
                "scalars": {"browser.engagement.navigation.urlbar": 3, "browser.engagement.tab_open": 1},
                "keyedScalars": {
                    "browser.engagement.navigation.searchbar": {"search": 2},
                    "browser.search.x": {"k": 1},
                },
            }
        }
    }
    assert metrics(run(make_ping(payload=payload))) == {
        ("SCALARS_BROWSER.ENGAGEMENT.TAB_OPEN", "", "parent"),
        ("SCALARS_BROWSER.SEARCH.X", "K", "parent"),
    }


def test_non_numeric_and_negative_scalar_values_are_ignored() -> None:  # item 17
    values = {"a.s": "5", "a.n": -1, "a.f": -0.5, "a.z": 0, "a.null": None, "a.list": [1], "a.obj": {"x": 1}}
    keyed = {"k.v": {"s": "5", "n": -2, "ok": 3}}
    payload = {"processes": {"parent": {"scalars": values, "keyedScalars": keyed}}}
    result = run(make_ping(payload=payload))
    assert metrics(result) == {("SCALARS_A.Z", "", "parent"), ("SCALARS_K.V", "OK", "parent")}
    assert nonzero(cell(result, "SCALARS_A.Z")) == {0: 1}
    assert cell(result, "SCALARS_A.Z")[3:] == (0, 1)


def test_boolean_scalars_count_as_0_and_1() -> None:  # item 18
    result = run(make_ping(payload=scalars_payload({"a.t": True, "a.f": False})))
    assert nonzero(cell(result, "SCALARS_A.T")) == {1: 1} and cell(result, "SCALARS_A.T")[3:] == (1, 1)
    assert nonzero(cell(result, "SCALARS_A.F")) == {0: 1} and cell(result, "SCALARS_A.F")[3:] == (0, 1)


def test_float_scalars_add_their_integer_part() -> None:
    result = run(
        make_ping(payload=scalars_payload({"a.f": 2.7, "a.g": 0.6, "a.big": 1e15})),
        make_ping(payload=scalars_payload({"a.f": 20.5, "a.g": 0.6})),
    )
    assert nonzero(cell(result, "SCALARS_A.F")) == {2: 1, 19: 1}
    assert cell(result, "SCALARS_A.F")[3:] == (22, 2)
    assert nonzero(cell(result, "SCALARS_A.G")) == {0: 2} and cell(result, "SCALARS_A.G")[3:] == (0, 2)
    assert nonzero(cell(result, "SCALARS_A.BIG")) == {10000: 1}
    assert cell(result, "SCALARS_A.BIG")[3:] == (1_000_000_000_000_000, 1)


def test_scalars_of_each_process() -> None:  # item 13
    payload = {
        "processes": {
            "parent": {"scalars": {"a.b": 1}},
            "content": {"scalars": {"a.b": 2}},
            "gpu": {"scalars": {"a.b": 3}, "keyedScalars": {"c.d": {"x": 4}}},
            "extension": {"scalars": {"a.b": 5}},
            "dynamic": {"scalars": {"a.b": 6}},
        }
    }
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("SCALARS_A.B", "", "parent"),
        ("SCALARS_A.B", "", "content"),
        ("SCALARS_A.B", "", "gpu"),
        ("SCALARS_C.D", "X", "gpu"),
    }
    assert cell(result, "SCALARS_A.B", process="gpu")[3:] == (3, 1)


def test_scalar_values_accumulate_over_pings() -> None:
    result = run(*(make_ping(payload=scalars_payload({"a.b": v})) for v in (1, 1, 42, 10000)))
    c = cell(result, "SCALARS_A.B")
    assert nonzero(c) == {1: 2, 40: 1, 10000: 1} and c[3:] == (10044, 4)


# --- Simple measurements --------------------------------------------------------------------------


def test_simple_measurements() -> None:  # items 19, 24
    simple = {
        "uptime": 42,
        "addonManager": {"XPIDB_parseDB_MS": 5, "deeper": {"x": 1}, "s": "x", "n": -1},
        "str": "x",
        "neg": -3,
        "flag": True,
        "frac": 3.9,
    }
    result = run(make_ping(payload={"simpleMeasurements": simple}))
    assert metrics(result) == {
        ("SIMPLE_MEASURES_UPTIME", "", "parent"),
        ("SIMPLE_MEASURES_ADDONMANAGER_XPIDB_PARSEDB_MS", "", "parent"),
        ("SIMPLE_MEASURES_FLAG", "", "parent"),
        ("SIMPLE_MEASURES_FRAC", "", "parent"),
    }
    uptime = cell(result, "SIMPLE_MEASURES_UPTIME")
    assert uptime[0] == "exponential" and uptime[1] == tuple(SIMPLE_MEASURES)
    assert nonzero(uptime) == {35: 1} and uptime[3:] == (42, 1)
    assert nonzero(cell(result, "SIMPLE_MEASURES_ADDONMANAGER_XPIDB_PARSEDB_MS")) == {5: 1}
    assert nonzero(cell(result, "SIMPLE_MEASURES_FLAG")) == {1: 1}
    assert nonzero(cell(result, "SIMPLE_MEASURES_FRAC")) == {3: 1}
    assert cell(result, "SIMPLE_MEASURES_FRAC")[3:] == (3, 1)


def test_child_simple_measurements_are_content() -> None:
    payload = {"simpleMeasurements": {"a": 1}, "childPayloads": [{"simpleMeasurements": {"a": 100000}}]}
    result = run(make_ping(payload=payload))
    assert nonzero(cell(result, "SIMPLE_MEASURES_A", process="content")) == {30000: 1}
    assert cell(result, "SIMPLE_MEASURES_A", process="content")[3:] == (100000, 1)
    assert cell(result, "SIMPLE_MEASURES_A")[3:] == (1, 1)


# --- Histograms -----------------------------------------------------------------------------------


def test_histogram_from_definition() -> None:  # item 26
    h = hist({"0": 1, "3": 2, "10": 4}, 30)
    result = run(make_ping(payload={"histograms": {"LIN": h}}), make_ping(payload={"histograms": {"LIN": h}}))
    c = cell(result, "LIN")
    assert c == ("linear", LIN_BOUNDS, (2, 0, 0, 4, 0, 0, 0, 0, 0, 0, 8), 60, 2)


def test_keyed_histogram_label_is_verbatim() -> None:
    payload = {"keyedHistograms": {"LIN": {"SomeKey": hist({"1": 1}, 1), "other key": hist({"2": 1}, 2)}}}
    result = run(make_ping(payload=payload))
    assert metrics(result) == {("LIN", "SomeKey", "parent"), ("LIN", "other key", "parent")}
    assert nonzero(cell(result, "LIN", "other key")) == {2: 1}


@pytest.mark.parametrize("name", ["MESSAGE_MANAGER_MESSAGE_SIZE", "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION"])
def test_excluded_keyed_histograms(name: str) -> None:  # item 20
    h = hist({"1": 1}, 1, range=[1, 10], bucket_count=11)
    payload = {"histograms": {name: h}, "keyedHistograms": {name: {"k": h}, "LIN": {"k": h}}}
    result = run(make_ping(payload=payload))
    assert metrics(result) == {(name, "", "parent"), ("LIN", "k", "parent")}


@pytest.mark.parametrize(
    "bad",
    [
        hist({"1": 1}, 1.5),
        hist({"1": 1}, -1),
        hist({"1": 1}, None),
        hist({"1": 1}, "5"),
        hist([1, 2], 1),
        hist(None, 1),
        hist({"1": 1}, 1, "1"),
        hist({"1": 1}, 1, None),
        hist({"1": 1}, 1, 1.0),
        {"values": {"1": 1}, "sum": 1},
        {"values": {"1": 1}, "histogram_type": 1},
        None,
        [],
        "hist",
    ],
)
def test_bad_histograms_are_skipped(bad: Any) -> None:  # item 21
    payload = {"histograms": {"LIN": bad, "ENUM": hist({"1": 1}, 1)}, "keyedHistograms": {"LIN": {"k": bad}}}
    result = run(make_ping(payload=payload))
    assert result.aggregated == 1
    assert metrics(result) == {("ENUM", "", "parent")}


def test_boolean_sum_and_type_pass_as_ints() -> None:
    payload = {"histograms": {"LIN": hist({"1": 1}, True, True)}}
    assert cell(run(make_ping(payload=payload)), "LIN")[3:] == (1, 1)


def test_bucket_keys_and_values() -> None:  # item 22
    values = {
        "0": 1,
        "x": 5,  # int() rejects: skipped
        "1.5": 7,  # int() rejects: skipped
        "2": "3",  # not an int: 0
        "3": 2.5,  # not an int: 0
        "4": -6,  # [choice] negative: 0
        "5": True,  # a bool is an int: 1
        "11": 9,  # not a lower bound: dropped
        "-1": 2,  # not a lower bound: dropped
        " 6": 1,  # int(" 6") == 6
        "06": 2,  # int("06") == 6
        "6": 3,
        "10": None,  # not an int: 0
    }
    c = cell(run(make_ping(payload={"histograms": {"LIN": hist(values, 17)}})), "LIN")
    assert c == ("linear", LIN_BOUNDS, (1, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0), 17, 1)


def test_keys_that_are_not_lower_bounds_are_dropped() -> None:  # item 32
    h = hist({"50": 1, "51": 7, "60000": 2, "70000": 3, "0": 4}, 100, 0)
    c = cell(run(make_ping(payload={"histograms": {"EXP": h}})), "EXP")
    assert c[0] == "exponential" and c[1] == tuple(EVENTLOOP_UI_LAG_EXP_MS)
    assert nonzero(c) == {0: 4, 50: 1, 60000: 2}


def test_count_histograms() -> None:  # item 23
    payload = {
        "histograms": {"CNT": hist({"0": 0, "1": 42}, 42, 4), "ZERO": hist({}, 0, 4)},
        "keyedHistograms": {"KCNT": {"Key": hist({"0": 5}, 7, 4)}},
    }
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("[[COUNT]]_CNT", "", "parent"),
        ("[[COUNT]]_ZERO", "", "parent"),
        ("[[COUNT]]_KCNT", "Key", "parent"),
    }
    c = cell(result, "[[COUNT]]_CNT")
    assert c[0] == "exponential" and c[1] == tuple(COUNT_HISTOGRAM)
    assert nonzero(c) == {40: 1} and c[3:] == (42, 1)
    assert nonzero(cell(result, "[[COUNT]]_ZERO")) == {0: 1}
    assert nonzero(cell(result, "[[COUNT]]_KCNT", "Key")) == {7: 1}


def test_count_is_per_histogram_instance_and_process() -> None:  # items 10, 11, 12, 26, 70
    h = hist({"1": 1, "2": 1}, 3)
    payload = {
        "histograms": {"LIN": h},
        "processes": {
            "parent": {"histograms": {"LIN": h}},  # parent histograms come only from payload.histograms
            "content": {"histograms": {"LIN": h}, "keyedHistograms": {"LIN": {"k": h}}},
            "gpu": {"histograms": {"LIN": h}},
            "extension": {"histograms": {"LIN": h}},
        },
    }
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("LIN", "", "parent"),
        ("LIN", "", "content"),
        ("LIN", "k", "content"),
        ("LIN", "", "gpu"),
    }
    for process in ("parent", "content", "gpu"):
        assert cell(result, "LIN", process=process) == (
            "linear",
            LIN_BOUNDS,
            (0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
            3,
            1,
        )


def test_legacy_child_payloads_count_separately_as_content() -> None:  # item 11
    child = {"histograms": {"LIN": hist({"1": 1}, 1)}, "keyedHistograms": {"LIN": {"k": hist({"2": 1}, 2)}}}
    payload = {
        "histograms": {"LIN": hist({"3": 1}, 3)},
        "childPayloads": [child, child, {}],
        "processes": {"content": {"histograms": {"LIN": hist({"4": 1}, 4)}}},
    }
    result = run(make_ping(payload=payload))
    assert cell(result, "LIN", process="content") == (
        "linear",
        LIN_BOUNDS,
        (0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0),
        6,
        3,
    )
    assert cell(result, "LIN", "k", process="content")[3:] == (4, 2)
    assert cell(result, "LIN")[3:] == (3, 1)


def test_containers_that_are_not_objects_are_skipped() -> None:
    payload = {
        "histograms": [],
        "keyedHistograms": {"LIN": [], "ENUM": {"k": hist({"1": 1}, 1)}},
        "simpleMeasurements": [1],
        "processes": {
            "parent": {"scalars": "x", "keyedScalars": {"a.b": 5, "c.d": {"e": 1}}},
            "content": {"histograms": {"LIN": hist({"1": 1}, 1)}, "keyedHistograms": 3},
        },
        "childPayloads": [{"histograms": None, "simpleMeasurements": "x", "keyedHistograms": []}],
    }
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("ENUM", "k", "parent"),
        ("SCALARS_C.D", "E", "parent"),
        ("LIN", "", "content"),
    }


def test_metric_names_and_labels_that_were_not_written() -> None:  # items 28, 29
    h = hist({"1": 1}, 1, range=[1, 10], bucket_count=11)
    payload = {
        "histograms": {"BAD NAME": h, "A/B": h, "OK-[x].y_1": h, "": h},
        "keyedHistograms": {"LIN": {"nul\x00key": h, "fine": h}},
        "processes": {
            "parent": {
                "scalars": {"a b": 1, "\u00df.count": 2, "a\x00": 3},
                "keyedScalars": {"k.s": {"x\x00": 1, "y": 2}},
            }
        },
        "simpleMeasurements": {"caf\u00e9": 1},
    }
    result = run(make_ping(payload=payload))
    assert metrics(result) == {
        ("OK-[x].y_1", "", "parent"),
        ("LIN", "fine", "parent"),
        ("SCALARS_SS.COUNT", "", "parent"),  # "ß".upper() == "SS": the check is on the final name
        ("SCALARS_K.S", "Y", "parent"),
    }


# --- Layouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("LIN", ("linear", LIN_BOUNDS)),
        ("LIN_NO_LOW", ("linear", LIN_BOUNDS)),
        ("LIN_LOW_ZERO", ("linear", LIN_BOUNDS)),
        ("STARTUP_LIN", ("linear", LIN_BOUNDS)),
        ("EXP", ("exponential", tuple(EVENTLOOP_UI_LAG_EXP_MS))),
        ("EVENTLOOP_UI_LAG_EXP_MS", ("exponential", tuple(EVENTLOOP_UI_LAG_EXP_MS))),  # built in, wins
        ("ENUM", ("enumerated", (0, 1, 2, 3))),
        ("CAT", ("categorical", (0, 1, 2, 3))),
        ("BOOL", ("boolean", (0, 1, 2))),
        ("FLAG", ("flag", (0, 1, 2))),
        ("COUNTKIND", ("count", (0, 1, 2))),
        ("USE_COUNTER2_X_PAGE", ("boolean", (0, 1, 2))),
        ("USE_COUNTER_Y", ("boolean", (0, 1, 2))),
    ],
)
def test_layouts_from_definitions(name: str, layout: tuple) -> None:
    # The ping's own description disagrees on purpose: the definition wins.
    h = hist({"1": 1}, 1, 0, range=[1, 5], bucket_count=6)
    ((key, c),) = run(make_ping(payload={"histograms": {name: h}})).build_id.items()
    assert key[-1] == layout and c[:2] == layout


def test_a_definition_may_repeat_bounds_and_each_repeat_gets_the_count() -> None:
    # linear_buckets(1, 3, 6): b[i] = int((2i + 2) / 4 + 0.5) = 1, 2, 2, 3, 3 for i = 1..5. The original
    # re-indexed {int(key): count} onto these bounds, which fills every position of a repeated one.
    definitions = {"REP": {"kind": "linear", "low": 1, "high": 3, "n_buckets": 6}}
    h = hist({"1": 2, "2": 4, "3": 1}, 9, 1, range=[1, 3], bucket_count=6)
    c = cell(run(make_ping(payload={"histograms": {"REP": h}}), definitions=definitions), "REP")
    assert c == ("linear", (0, 1, 2, 2, 3, 3), (0, 2, 4, 4, 1, 1), 9, 1)


def test_a_ping_layout_may_not_repeat_bounds() -> None:
    h = hist({"1": 2}, 2, 1, range=[1, 3], bucket_count=6)
    assert not run(make_ping(payload={"histograms": {"UNDEFINED": h}})).build_id


def test_builtin_rules_without_definitions_file() -> None:
    h = hist({"1": 1}, 1, 0, range=[1, 5], bucket_count=6)
    payload = {"histograms": {"EVENTLOOP_UI_LAG_EXP_MS": h, "USE_COUNTER2_Z_DOCUMENT": h, "LIN": h}}
    result = run(make_ping(payload=payload), definitions=None)
    layouts = {key[8]: key[-1] for key in result.build_id}
    # exponential_buckets(1, 5, 6): 0, 1; 5**(1/4) = 1.50 rounds to 1, not > 1, so 2; 2 * 2.5**(1/3) = 2.71
    # -> 3; 3 * (5/3)**(1/2) = 3.87 -> 4; then 5.
    assert layouts == {
        "EVENTLOOP_UI_LAG_EXP_MS": ("exponential", tuple(EVENTLOOP_UI_LAG_EXP_MS)),
        "USE_COUNTER2_Z_DOCUMENT": ("boolean", (0, 1, 2)),
        "LIN": ("exponential", (0, 1, 2, 3, 4, 5)),
    }


def test_categorical_keeps_labels_and_spill() -> None:
    # n = max(3, 0, 50) = 50: the wire layout is 0..50; only 0..3 (three labels, then spill) are kept.
    h = hist({"0": 1, "2": 3, "3": 2, "4": 5, "50": 1}, 0, 5)
    assert cell(run(make_ping(payload={"histograms": {"CAT": h}})), "CAT") == (
        "categorical",
        (0, 1, 2, 3),
        (1, 0, 3, 2),
        0,
        1,
    )


@pytest.mark.parametrize(
    ("histogram_type", "value_range", "bucket_count", "layout"),
    [
        # linear_buckets(1, 5, 6): b[i] = int(((5-i) + 5(i-1)) / 4 + 0.5) = i
        (1, [1, 5], 6, ("linear", (0, 1, 2, 3, 4, 5))),
        (0, [50, 60000], 20, ("exponential", tuple(EVENTLOOP_UI_LAG_EXP_MS))),
        (2, [1, 2], 3, ("boolean", (0, 1, 2))),
        (3, [1, 2], 3, ("flag", (0, 1, 2))),
        (5, [1, 4], 5, ("categorical", (0, 1, 2, 3, 4))),
    ],
)
def test_layout_from_the_ping_without_definition(
    histogram_type: int, value_range: list[int], bucket_count: int, layout: tuple
) -> None:
    h = hist({"1": 2, "2": 1}, 4, histogram_type, range=value_range, bucket_count=bucket_count)
    ((key, c),) = run(make_ping(payload={"histograms": {"NEW_METRIC": h}})).build_id.items()
    assert key[-1] == layout and c[:2] == layout
    assert c[3:] == (4, 1)


def test_disagreeing_layouts_are_separate_aggregates() -> None:
    small = hist({"1": 1, "5": 1}, 6, 1, range=[1, 5], bucket_count=6)
    large = hist({"1": 1, "10": 1}, 11, 1, range=[1, 10], bucket_count=11)
    result = run(
        make_ping(payload={"histograms": {"NEW": small}}),
        make_ping(payload={"histograms": {"NEW": large}}),
        make_ping(payload={"histograms": {"NEW": large}}),
    )
    base = (*DIMS, "NEW", "", "parent")
    assert result.build_id == {
        (*base, ("linear", (0, 1, 2, 3, 4, 5))): ("linear", (0, 1, 2, 3, 4, 5), (0, 1, 0, 0, 0, 1), 6, 1),
        (*base, ("linear", LIN_BOUNDS)): ("linear", LIN_BOUNDS, (0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2), 22, 2),
    }
    with pytest.raises(ValueError, match="more than one layout"):
        drop_layout(result.build_id)


@pytest.mark.parametrize(
    "extra",
    [
        {},  # no range or bucket count
        {"range": [1, 10]},
        {"bucket_count": 11},
        {"range": [0, 10], "bucket_count": 11},
        {"range": [10, 1], "bucket_count": 11},
        {"range": [5, 5], "bucket_count": 3},
        {"range": [1, 10], "bucket_count": 2},
        {"range": [1, 10], "bucket_count": 12},  # more buckets than values: bounds repeat
        {"range": [1, 100000], "bucket_count": 16384},
        {"range": [1, 2**31], "bucket_count": 11},
        {"range": [1.0, 10.0], "bucket_count": 11},
        {"range": [1, 10], "bucket_count": 11.0},
        {"range": [1, 10, 20], "bucket_count": 11},
        {"range": "1-10", "bucket_count": 11},
        {"range": [1, 10], "bucket_count": 11, "histogram_type": 7},
        {"range": [1, 10], "bucket_count": 11, "histogram_type": -1},
    ],
)
def test_unusable_ping_layouts_are_skipped(extra: dict[str, Any]) -> None:
    h = {"values": {"1": 1}, "sum": 1, "histogram_type": 1, **extra}
    payload = {"histograms": {"NEW": h, "LIN": hist({"1": 1}, 1)}}
    assert metrics(run(make_ping(payload=payload))) == {("LIN", "", "parent")}


def test_largest_usable_ping_layout() -> None:
    h = hist({"1": 1}, 1, 0, range=[1, 2**31 - 1], bucket_count=16383)
    (c,) = run(make_ping(payload={"histograms": {"NEW": h}})).build_id.values()
    assert len(c[1]) == 16383 and c[1][:3] == (0, 1, 2) and c[1][-1] == 2**31 - 1


def test_unusable_definition_is_skipped_not_replaced_by_the_ping() -> None:
    h = hist({"1": 1}, 1, 1, range=[1, 10], bucket_count=11)
    assert not run(make_ping(payload={"histograms": {"BROKEN": h}})).build_id


def test_definition_numbers_given_as_strings() -> None:
    definitions = {
        "GC_REASON": {"kind": "enumerated", "n_values": "JS::gcreason::NUM_TELEMETRY_REASONS"},
        "STARTUP_EVENT": {"kind": "enumerated", "n_values": "mozilla::StartupTimeline::MAX_EVENT_ID"},
        "EIGHTY": {"kind": "enumerated", "n_values": "80 + 1"},
        "ARITH": {"kind": "linear", "low": "1", "high": "2 * 5", "n_buckets": "11"},
        "BAD": {"kind": "linear", "low": 1, "high": "__import__('os')", "n_buckets": 11},
    }
    h = hist({"1": 1}, 1, 1, range=[1, 10], bucket_count=11)
    payload = {"histograms": dict.fromkeys(definitions, h)}
    result = run(make_ping(payload=payload), definitions=definitions)
    lengths = {key[8]: len(key[-1][1]) for key in result.build_id}
    assert lengths == {"GC_REASON": 102, "STARTUP_EVENT": 13, "EIGHTY": 82, "ARITH": 11}


def test_histogram_named_with_a_fixed_prefix_uses_the_fixed_layout() -> None:
    h = hist({"35": 2, "36": 1}, 70, 1, range=[1, 100], bucket_count=10)
    c = cell(run(make_ping(payload={"histograms": {"SIMPLE_MEASURES_X": h}})), "SIMPLE_MEASURES_X")
    assert c[1] == tuple(SIMPLE_MEASURES) and nonzero(c) == {35: 2} and c[3:] == (70, 1)


# --- Aggregates -----------------------------------------------------------------------------------


def test_submission_date_is_the_sum_over_build_ids() -> None:  # item 27
    h1 = hist({"1": 1, "2": 2}, 5)
    h2 = hist({"2": 1, "10": 3}, 32)
    result = run(
        make_ping({"application.buildId": "20240101000000"}, {"histograms": {"LIN": h1}}),
        make_ping({"application.buildId": "20240102000000"}, {"histograms": {"LIN": h2}}),
        make_ping({"application.buildId": "20240102999999"}, {"histograms": {"LIN": h1}}),
        make_ping({"application.buildId": "20240101000000", "application.architecture": "x86"}, {}),
    )
    by_build = {key[3]: value for key, value in result.build_id.items()}
    assert by_build == {
        "20240101": ("linear", LIN_BOUNDS, (0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0), 5, 1),
        "20240102": ("linear", LIN_BOUNDS, (0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 3), 37, 2),
    }
    assert result.submission_date == {
        (*SD_DIMS, "LIN", "", "parent", ("linear", LIN_BOUNDS)): (
            "linear",
            LIN_BOUNDS,
            (0, 2, 5, 0, 0, 0, 0, 0, 0, 0, 3),
            42,
            3,
        )
    }


def test_dimensions_split_aggregates() -> None:
    payload = scalars_payload({"a": 1})
    result = run(
        make_ping(payload=payload),
        make_ping({"meta.submissionDate": "20240116"}, payload),
        make_ping({"environment.system.os.version": "6.1"}, payload),
        make_ping({"application.version": "121.0"}, payload),
        dates={DATE, "20240116"},
    )
    assert len(result.build_id) == 4 and len(result.submission_date) == 4
    assert all(c[3:] == (1, 1) for c in result.submission_date.values())


def test_values_are_clamped_to_int64() -> None:
    u64_max = 2**64 - 1
    payload = {
        "processes": {"parent": {"scalars": {"a.b": u64_max, "a.c": 10**30}}},
        "histograms": {"LIN": hist({"1": 2**63, "2": 2**62, "3": 2**62 - 1}, 2**63)},
    }
    result = run(make_ping(payload=payload), make_ping(payload=payload))
    scalar = cell(result, "SCALARS_A.B")
    assert nonzero(scalar) == {10000: 2} and scalar[3:] == (INT64_MAX, 2)
    assert cell(result, "SCALARS_A.C")[3:] == (INT64_MAX, 2)  # 1e30 is read as a float: still clamped
    lin = cell(result, "LIN")
    # 2 * 2**63 and 2 * 2**62 = 2**63 overflow; 2 * (2**62 - 1) = 2**63 - 2 fits.
    assert lin[2][:4] == (0, INT64_MAX, INT64_MAX, 2**63 - 2)
    assert lin[3:] == (INT64_MAX, 2)


def test_integers_beyond_u64_are_floats() -> None:
    # orjson reads 2**64 as a float: not an int sum (histogram skipped), but a number as a scalar value.
    line = json.dumps(make_ping(payload=scalars_payload({"a.b": 1})))
    line = line.replace('"a.b": 1', '"a.b": 18446744073709551616')
    sum_line = json.dumps(make_ping(payload={"histograms": {"LIN": hist({"1": 1}, 1)}}))
    sum_line = sum_line.replace('"sum": 1', '"sum": 18446744073709551616')
    result = run(line, sum_line)
    assert metrics(result) == {("SCALARS_A.B", "", "parent")}
    assert cell(result, "SCALARS_A.B")[3:] == (INT64_MAX, 1)
