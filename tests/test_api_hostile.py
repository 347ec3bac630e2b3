"""Hostile input on every parameter of every route, sent as raw bytes to the API served on a socket: SQL
injection, NUL bytes, 10 kB and 100 kB values (the latter past the request line limit), bad percent-encoding,
invalid UTF-8, raw non-ASCII bytes, empty values, Unicode look-alikes, thousands of dates, unknown and repeated
parameters. Each is refused with a 4xx and the API's JSON error, never a 5xx, and the database stays as it was.

Every parameter's URL is first shown to answer 200 with a valid value, so each refusal is the value's doing.
"""

import asyncio
import http.client
import json
import socket
from datetime import date, timedelta
from urllib.parse import quote, urlsplit

import asyncpg
import pytest

from server.app import MAX_URL_BYTES
from server.params import MAX_DATES

METRIC = "/aggregates_by/submission_date/channels/nightly/?version=146&dates=20261101,20261102&metric="
# Every parameter: the URL with `{}` where its value goes, and a value that answers 200 there.
PARAMETERS = {
    "kind": ("/aggregates_by/{}/channels/", "build_id"),
    "dates' channel": ("/aggregates_by/build_id/channels/{}/dates/", "nightly"),
    "metric's channel": (
        "/aggregates_by/submission_date/channels/{}/?version=146&dates=20261101&metric=GC_MS",
        "nightly",
    ),
    "version": ("/aggregates_by/submission_date/channels/nightly/?version={}&dates=20261101&metric=GC_MS", "146"),
    "dates": ("/aggregates_by/submission_date/channels/nightly/?version=146&dates={}&metric=GC_MS", "20261101"),
    "metric": (METRIC + "{}", "GC_MS"),
    "application": (METRIC + "GC_MS&application={}", "Firefox"),
    "architecture": (METRIC + "GC_MS&architecture={}", "x86-64"),
    "os": (METRIC + "GC_MS&os={}", "Linux"),
    "osVersion": (METRIC + "GC_MS&osVersion={}", "6.1"),
    "label": (METRIC + "IPC_READ_MAIN_THREAD_LATENCY_MS&label={}", "PContent::Msg_Destroy"),
    "child": (METRIC + "GC_MS&child={}", "parent"),
    "stats": (METRIC + "GC_MS&stats={}", "true"),
    "filters' channel": ("/filters/?channel={}&version=146", "nightly"),
    "filters' version": ("/filters/?channel=nightly&version={}", "146"),
    "explorer file": ("/static/{}", "explorer.js"),
}
LOOK_ALIKES = str.maketrans("aceiopxy0123456789_-.", "асеіорху０１２３４５６７８９＿‐．")  # noqa: RUF001 (Cyrillic, fullwidth)
INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE aggregates; --",
    "1; DELETE FROM publishes",
    "' UNION SELECT usename, passwd FROM pg_shadow --",
    '") OR 1=1 --',
    "$1); TRUNCATE catalog_filters; --",
)
# Hostile forms of a valid value, as sent on the wire (already percent-encoded where they are text).
HOSTILE = {
    "NUL byte": lambda valid: f"{quote(valid)}%00",
    "10 kB": lambda valid: quote(valid) + "x" * 10_240,
    "100 kB: past the line limit": lambda valid: quote(valid) + "x" * 102_400,
    "bad escape %ZZ": lambda valid: f"{quote(valid)}%ZZ",
    "truncated escape": lambda valid: f"{quote(valid)}%E2%8",
    "invalid UTF-8 %C3%28": lambda valid: f"%C3%28{quote(valid)}",
    "encoded surrogate": lambda valid: f"{quote(valid)}%ED%A0%80",
    "raw non-UTF-8 bytes": lambda valid: quote(valid).encode() + b"\xff\xfe",
    "empty": lambda valid: "",
    "look-alike": lambda valid: quote(valid.translate(LOOK_ALIKES)),
    "blank": lambda valid: "%20",
    "path traversal": lambda valid: f"..%2F..%2F{quote(valid)}",
}


def get(
    base_url: str, target: str | bytes, headers: bytes = b"", method: bytes = b"GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One GET (or `method`) of `target` exactly as given, bytes included (HTTP clients re-encode or refuse them)."""
    address = urlsplit(base_url)
    target = target.encode() if isinstance(target, str) else target
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        request = method + b" " + target + b" HTTP/1.1\r\nHost: api\r\nConnection: close\r\n" + headers + b"\r\n"
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.headers, answer.read()


def assert_refused(answer: tuple[int, http.client.HTTPMessage, bytes], status: int | None = None) -> dict:
    """A 4xx (the given one, if any) with the API's JSON error; its body."""
    code, headers, body = answer
    assert 400 <= code < 500 if status is None else code == status, (code, body[:300])
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"code", "description"} and all(isinstance(v, str) and v for v in error.values())
    assert headers["X-Frame-Options"] == "DENY"
    return error


def url(parameter: str, value: str | bytes) -> bytes:
    template = PARAMETERS[parameter][0].encode()
    return template.replace(b"{}", value if isinstance(value, bytes) else value.encode())


@pytest.mark.parametrize("parameter", PARAMETERS)
def test_each_parameter_answers_a_valid_value(served_url, parameter):
    status, _, body = get(served_url, url(parameter, quote(PARAMETERS[parameter][1])))
    assert status == 200 and body, body[:300]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("parameter", PARAMETERS)
def test_hostile_values_are_refused_with_a_json_4xx(served_url, parameter, hostile):
    valid = PARAMETERS[parameter][1]
    assert_refused(get(served_url, url(parameter, HOSTILE[hostile](valid))))


def test_a_url_past_the_line_limit_and_a_header_past_the_field_limit(served_url):
    line = METRIC + "GC_MS&label=" + "x" * (MAX_URL_BYTES - len(METRIC))
    assert "more than" in assert_refused(get(served_url, line), 400)["description"]
    assert_refused(
        get(served_url, "/aggregates_by/build_id/channels/", b"Authorization: Bearer " + b"x" * 9000 + b"\r\n"), 400
    )


def test_other_methods_are_refused_and_share_one_metrics_series(served_url):
    """Methods HTTP parsers know beyond the usual ones (WebDAV's and others) are a 405, counted as `other`;
    made-up ones are a 400 from the parser."""
    odd = [b"PROPFIND", b"MKCOL", b"LOCK", b"UNLOCK", b"SEARCH", b"PURGE", b"REPORT", b"MKCALENDAR"]
    for method in odd:
        assert_refused(get(served_url, "/status", method=method), 405)
    assert_refused(get(served_url, "/status", method=b"MADEUP"), 400)
    metrics = get(served_url, "/metrics")[2].decode()
    assert not any(f'method="{m.decode()}"' in metrics for m in odd)
    assert 'method="other",route="unmatched",status="405"} 8.0' in metrics


def test_thousands_of_dates_are_answered_and_more_than_the_maximum_refused(served_url):
    days = [f"{date(2000, 1, 1) + timedelta(days=i):%Y%m%d}" for i in range(MAX_DATES + 1)]
    base = "/aggregates_by/submission_date/channels/nightly/?version=146&metric=GC_MS&dates="
    within = assert_refused(get(served_url, base + ",".join(days[:MAX_DATES])), 404)
    assert within["description"] == "No data found for this metric."  # checked, none published
    with_data = get(served_url, base + ",".join([*days[: MAX_DATES - 1], "20261101"]))
    assert with_data[0] == 200 and [e["date"] for e in json.loads(with_data[2])["data"]] == ["20261101"]
    beyond = assert_refused(get(served_url, base + ",".join(days)), 404)
    assert beyond["description"] == f"At most {MAX_DATES} dates in one request."
    repeated = assert_refused(get(served_url, base + ",".join(["20261101"] * (MAX_DATES + 1))), 404)
    assert repeated == beyond  # duplicates count: the limit bounds the work of parsing, not only of querying


async def _database_state(url: str) -> tuple:
    conn = await asyncpg.connect(url)
    try:
        return tuple(
            await conn.fetchrow(
                """SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'public') AS relations,
                          (SELECT count(*) FROM aggregates) AS aggregates,
                          (SELECT count(*) FROM aggregates_all) AS rollup,
                          (SELECT count(*) FROM catalog_filters) AS catalog,
                          (SELECT count(*) FROM publishes) AS publishes,
                          (SELECT count(*) FROM layouts) AS layouts"""
            )
        )
    finally:
        await conn.close()


def test_sql_injection_in_every_parameter_changes_nothing(served_url, database_url):
    before = asyncio.run(_database_state(database_url))
    assert before[1] > 0
    for parameter, (_, valid) in PARAMETERS.items():
        for injection in INJECTIONS:
            for value in (injection, valid + injection):
                assert_refused(get(served_url, url(parameter, quote(value))))
    assert asyncio.run(_database_state(database_url)) == before


FILTERS = "/filters/?channel=nightly&version=146"
UNKNOWN = [
    (METRIC + "GC_MS&e10sEnabled=true&os=Linux", METRIC + "GC_MS&os=Linux"),
    (METRIC + "GC_MS&%00=1", METRIC + "GC_MS"),
    (METRIC + "GC_MS&%ZZ=1", METRIC + "GC_MS"),
    (METRIC + "GC_MS&" + "k" * 10_240 + "=1", METRIC + "GC_MS"),
    (FILTERS + "&os=Linux", FILTERS),
    (FILTERS + "&%C3%28=1", FILTERS),
]


@pytest.mark.parametrize(("sent", "allowed"), UNKNOWN)
def test_unknown_parameters_are_a_405_naming_the_valid_url(served_url, sent, allowed):
    status, headers, _ = get(served_url, sent)
    assert_refused((status, headers, _), 405)
    path, _, query = allowed.partition("?")
    assert headers["Allow"] == f"{path}?{query.replace(',', '%2C')}"


@pytest.mark.parametrize(
    "path", ["/aggregates_by/build_id/channels/", "/aggregates_by/build_id/channels/nightly/dates/", "/freshness/"]
)
def test_routes_without_parameters_ignore_a_query_string(served_url, path):
    """As a static resource does (and the original did): a cache-busting `?_=...` keeps working."""
    plain = get(served_url, path)
    assert plain[0] == 200
    for query in ("?_=1700000000", "?%ZZ=%00", "?version=1&dates=x"):
        status, _, body = get(served_url, path + query)
        assert (status, body) == (200, plain[2])


REPEATED = [
    ("version=146&version=145&dates=20261101&metric=GC_MS", "version takes one value."),
    ("version=146&dates=20261101&metric=GC_MS&metric=GC_MS_MAJOR", "metric is one name of letters, digits and _-[]."),
    ("version=146&dates=20261101&metric=GC_MS&stats=true&stats=false", "stats takes one value."),
]


@pytest.mark.parametrize(("query", "description"), REPEATED)
def test_a_single_valued_parameter_given_twice_is_refused(served_url, query, description):
    sent = f"/aggregates_by/submission_date/channels/nightly/?{query}"
    assert assert_refused(get(served_url, sent), 404)["description"] == description
    twice = assert_refused(get(served_url, "/filters/?channel=nightly&channel=beta&version=146"), 404)
    assert twice["description"] == "channel takes one value."


def test_repeating_a_value_or_a_list_parameter_means_the_same_or_the_union(served_url):
    base = "/aggregates_by/submission_date/channels/nightly/?metric=GC_MS"
    same = [
        (
            base + "&version=146&dates=20261101,20261102",
            base + "&version=146&version=146&dates=20261101&dates=20261102",
        ),
        (
            base + "&version=146&dates=20261101&os=Linux&os=Darwin",
            base + "&version=146&dates=20261101&os=Darwin&os=Linux",
        ),
        (base + "&version=146&dates=20261101&stats=true", base + "&version=146&dates=20261101&stats=true&stats=true"),
        (FILTERS, FILTERS + "&channel=nightly"),
    ]
    for one, other in same:
        first, second = get(served_url, one), get(served_url, other)
        assert first[0] == second[0] == 200
        assert json.loads(first[2]) == json.loads(second[2])
    union = json.loads(get(served_url, base + "&version=146&dates=20261101&os=Linux&os=Darwin")[2])
    linux = json.loads(get(served_url, base + "&version=146&dates=20261101&os=Linux")[2])
    darwin = json.loads(get(served_url, base + "&version=146&dates=20261101&os=Darwin")[2])
    assert union["data"][0]["count"] == linux["data"][0]["count"] + darwin["data"][0]["count"]


def test_a_token_of_raw_bytes_is_refused_and_public_answers_stay_public(served_url):
    header = b"Authorization: Bearer \xff\xfe.\xc3\x28.x\r\n"
    error = assert_refused(get(served_url, "/authed", header), 403)
    assert error == {"code": "improper_token", "description": "Token cannot be validated"}
    status, _, body = get(served_url, "/aggregates_by/build_id/channels/", header)
    assert status == 200 and "release" not in json.loads(body)
