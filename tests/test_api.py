"""The HTTP API against real Postgres data: the generated corpus, aggregated by the job on a LocalCluster,
published by the store, served by the app; answers compared with the reference aggregation."""

import gzip

import asyncpg
import pytest
import pytest_asyncio

from aggregator.store import schema
from aggregator.store.publish import publish_dates
from server import views
from server.app import create_app
from server.cache import GZIP_MIN_BYTES
from server.params import ALLOWED
from tests.conftest import KINDS, settings_for, summed

pytestmark = pytest.mark.asyncio

CHANNEL, VERSION = "nightly", "146"


@pytest_asyncio.fixture
async def client(aiohttp_client, database_url):
    return await aiohttp_client(create_app(settings_for(database_url)))


def listed_dates(cells, kind: str) -> set[tuple[str, str]]:
    """The (version, date) pairs the dates route lists for CHANNEL."""
    return {(v, r[2]) for (c, v, _), records in cells[kind].items() if c == CHANNEL for r in records}


def metric_params(dates: list[str], metric: str, filters: dict, processes=None, labels=None) -> list[tuple[str, str]]:
    """The query of a metric request for VERSION: a repeated key for each value of a filter."""
    params = [("version", VERSION), ("dates", ",".join(dates)), ("metric", metric)]
    params += [(k, v) for k, values in filters.items() for v in sorted(values)]
    params += [("child", p) for p in sorted(processes or ())]
    return params + [("label", label) for label in sorted(labels or ())]


def expected(cells, kind, metric, dates, filters=None, processes=None, labels=None) -> dict:
    """The answer the API must give (buckets, kind, data), or None where it must say 404."""
    filters = filters or {}
    by_metric = cells[kind]
    if metric.startswith("USE_COUNTER2_"):
        mine = summed(by_metric[(CHANNEL, VERSION, metric)], filters, processes, labels)
        scope = "CONTENT" if metric.endswith("_DOCUMENT") else "TOP_LEVEL_CONTENT"
        denominator = by_metric[(CHANNEL, VERSION, f"[[COUNT]]_{scope}_DOCUMENTS_DESTROYED")]
        documents = summed(denominator, filters, processes, labels)
        data = []
        for day in dates:
            if not any(d == day for d, _ in mine) and (day, "") in documents:
                _, _, total, count = documents[(day, "")]
                data.append({"date": day, "label": "", "histogram": [total, 0, 0], "count": count, "sum": 0})
            for (d, label), (_, counts, total, count) in sorted(mine.items()):
                if d == day:
                    histogram = list(counts)
                    if (day, "") in documents:
                        histogram[0] = documents[(day, "")][2] - histogram[1] - histogram[2]
                    data.append({"date": day, "label": label, "histogram": histogram, "count": count, "sum": total})
        return {"buckets": [0, 1, 2], "kind": "boolean", "data": data} if data else None
    stored = f"[[COUNT]]_{metric}" if by_metric.get((CHANNEL, VERSION, f"[[COUNT]]_{metric}")) else metric
    total = summed(by_metric.get((CHANNEL, VERSION, stored), []), filters, processes, labels)
    layouts = {v[0] for v in total.values()}
    if not total:
        return None
    assert len(layouts) == 1, f"{metric}: one layout expected"
    layout_kind, bounds = layouts.pop()
    data = [
        {"date": day, "label": label, "histogram": list(v[1]), "count": v[3], "sum": v[2]}
        for day in dates
        for (d, label), v in sorted(total.items())
        if d == day
    ]
    if not data:
        return None
    served_kind = "count" if stored.startswith("[[COUNT]]_") else layout_kind
    buckets = list(bounds[:2]) if served_kind == "flag" else list(bounds)
    return {"buckets": buckets, "kind": served_kind, "data": data}


def assert_same(answer: dict, want: dict) -> None:
    assert answer["kind"] == want["kind"]
    if want["kind"] == "categorical":
        assert len(answer["buckets"]) == len(want["buckets"])  # names then "spill"; numbers without definition
        assert answer["buckets"][-1] == "spill" or answer["buckets"] == [str(b) for b in want["buckets"]]
    else:
        assert answer["buckets"] == want["buckets"]
    assert isinstance(answer["description"], str)
    assert answer["data"] == [{**e, "histogram": [int(x) for x in e["histogram"]]} for e in want["data"]]


async def dates_of(client, kind: str) -> list[str]:
    answer = await (await client.get(f"/aggregates_by/{kind}/channels/{CHANNEL}/dates/")).json()
    return [d["date"] for d in answer if d["version"] == VERSION]


# ---- listing routes -----------------------------------------------------------------------------------


async def test_channels_and_dates_are_the_published_ones(client, cells):
    for kind in KINDS:
        answer = await client.get(f"/aggregates_by/{kind}/channels/")
        assert answer.status == 200
        assert await answer.json() == sorted({c for c, _, _ in cells[kind]} - {"release"})
        dates = await (await client.get(f"/aggregates_by/{kind}/channels/{CHANNEL}/dates/")).json()
        assert {(d["version"], d["date"]) for d in dates} == listed_dates(cells, kind)
        assert [d["date"] for d in dates] == sorted((d["date"] for d in dates), reverse=True)  # newest first
    assert await (await client.get("/aggregates_by/build_id/channels/esr/dates/")).json() == []


async def test_filters_list_every_dimension_value(client, cells):
    answer = await (await client.get(f"/filters/?channel={CHANNEL}&version={VERSION}")).json()
    records = [r for kind in KINDS for (c, v, _), rs in cells[kind].items() if (c, v) == (CHANNEL, VERSION) for r in rs]
    metrics = {
        m.removeprefix("[[COUNT]]_") for kind in KINDS for (c, v, m) in cells[kind] if (c, v) == (CHANNEL, VERSION)
    }
    assert set(answer["metric"]) == {
        m for m in metrics if not m.startswith(("SEARCH_COUNTS", "SCALARS_BROWSER.SEARCH."))
    } - {
        "SCALARS_TELEMETRY.EVENT_COUNTS",
        "SCALARS_TELEMETRY.DYNAMIC_EVENT_COUNTS",
    }
    assert set(answer["application"]) == {r[4] for r in records}
    assert set(answer["architecture"]) == {r[5] for r in records}
    assert set(answer["os"]) == {f"{r[6]},{r[7]}" for r in records}
    assert set(answer["child"]) == {r[8] for r in records} <= {"parent", "content", "gpu"}
    for missing in (
        "/filters/",
        f"/filters/?channel={CHANNEL}",
        f"/filters/?version={VERSION}",
        "/filters/?channel=nightly&version=1",
    ):
        assert (await client.get(missing)).status == 404


# ---- metric answers against the reference -------------------------------------------------------------


async def test_every_metric_unfiltered_matches_the_reference(client, cells):
    """Every metric of the channel and version, both kinds, all dates in one request: the rollup's answers."""
    names = {
        m.removeprefix("[[COUNT]]_") for kind in KINDS for (c, v, m) in cells[kind] if (c, v) == (CHANNEL, VERSION)
    }
    names = sorted(
        n for n in names if not n.startswith(("SEARCH_COUNTS", "SCALARS_BROWSER.SEARCH.", "SCALARS_TELEMETRY."))
    )
    assert len(names) > 300
    checked = 0
    for kind in KINDS:
        dates = await dates_of(client, kind)
        for metric in names:
            want = expected(cells, kind, metric, dates)
            response = await client.get(
                f"/aggregates_by/{kind}/channels/{CHANNEL}/",
                params={"version": VERSION, "dates": ",".join(dates), "metric": metric},
            )
            if want is None:
                assert response.status == 404, metric
                continue
            assert response.status == 200, metric
            assert_same(await response.json(), want)
            checked += 1
    assert checked > 500


FILTERED = [
    ("GC_MS", {"os": {"Linux", "Darwin"}}, None, None),
    ("GC_MS", {"architecture": {"x86-64"}, "application": {"Firefox"}}, {"parent"}, None),
    ("CONTENT_FRAME_TIME", {}, {"gpu"}, None),
    ("CONTENT_FRAME_TIME", {}, {"content", "gpu"}, None),
    ("IPC_READ_MAIN_THREAD_LATENCY_MS", {}, None, {"PContent::Msg_Destroy", "PAPZ::Msg_RealKeyEvent"}),
    ("SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS", {"os": {"Windows_NT"}}, None, None),
    ("SCALARS_DEVTOOLS.TOOL.REGISTERED", {}, {"parent"}, {"INSPECTOR"}),
    ("SIMPLE_MEASURES_UPTIME", {"os": {"Linux"}, "osVersion": {"6.1", "6.8"}}, None, None),
    ("CONTENT_DOCUMENTS_DESTROYED", {"os": {"Windows_NT", "Linux"}}, {"content"}, None),
    ("USE_COUNTER2_DOCUMENT_OPEN_PAGE", {"os": {"Windows_NT"}}, None, None),
    ("COOKIE_BEHAVIOR", {"architecture": {"x86"}}, None, None),
]


@pytest.mark.parametrize(("metric", "filters", "processes", "labels"), FILTERED)
async def test_filtered_metric_matches_the_reference(client, cells, metric, filters, processes, labels):
    """Filters read the full table: given dimensions must match (a repeated key is OR), the rest are summed."""
    for kind in KINDS:
        dates = await dates_of(client, kind)
        params = metric_params(dates, metric, filters, processes, labels)
        response = await client.get(f"/aggregates_by/{kind}/channels/{CHANNEL}/", params=params)
        want = expected(cells, kind, metric, dates, filters, processes, labels)
        assert want is not None and len(want["data"]) > 0, (metric, kind)
        assert response.status == 200
        assert_same(await response.json(), want)


async def test_large_answers_in_pieces_are_the_inline_bytes(aiohttp_client, database_url, cells, monkeypatch):
    """Every metric answered as a large answer (API_OFFLOAD_CELLS=0: read within the budget, summed and encoded on
    a thread, sent in pieces of a few entries) is byte for byte the inline answer checked above, in JSON and in
    gzip, with statistics or not; its errors are the same too. Pieces of 512 bucket counts: an answer of more
    than one piece still holds over GZIP_MIN_BYTES of JSON (a count takes two bytes at least)."""
    monkeypatch.setattr(views, "PIECE_CELLS", GZIP_MIN_BYTES // 2)
    inline = await aiohttp_client(create_app(settings_for(database_url, offload_cells=10**12, cache_bytes=0)))
    large = await aiohttp_client(create_app(settings_for(database_url, offload_cells=0, cache_bytes=0)))
    names = sorted({m.removeprefix("[[COUNT]]_") for kind in KINDS for (c, v, m) in cells[kind] if c == CHANNEL})
    streamed = 0
    for kind in KINDS:
        dates = ",".join(await dates_of(inline, kind))
        for n, metric in enumerate([*names, "NOT_A_METRIC"]):
            params = {"version": VERSION, "dates": dates, "metric": metric, "stats": ("false", "true")[n % 2]}
            encoding = {"Accept-Encoding": ("identity", "gzip")[n // 2 % 2]}
            path = f"/aggregates_by/{kind}/channels/{CHANNEL}/"
            want = await inline.get(path, params=params, headers=encoding, auto_decompress=False)
            got = await large.get(path, params=params, headers=encoding, auto_decompress=False)
            assert (got.status, await got.read()) == (want.status, await want.read()), (kind, metric)
            assert got.headers.get("Content-Encoding") == want.headers.get("Content-Encoding"), (kind, metric)
            streamed += got.headers.get("Transfer-Encoding") == "chunked"
    assert streamed > 20, streamed
    path = f"/aggregates_by/{KINDS[0]}/channels/{CHANNEL}/?version={VERSION}&dates={dates}&metric=GC_MS"
    head = await large.head(path)
    assert head.status == 200 and await head.read() == b""
    assert (await large.get(path, headers={"If-None-Match": head.headers["ETag"]})).status == 304


async def test_child_synonyms_dates_forms_and_order(client, cells):
    dates = await dates_of(client, "submission_date")
    base = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&metric=GC_MS"
    encoded = await (await client.get(f"{base}&dates={'%2C'.join(dates)}&child=true")).json()
    plain = await (await client.get(f"{base}&dates={','.join(dates)}&child=content")).json()
    assert encoded == plain
    assert [e["date"] for e in plain["data"]] == dates
    backwards = await (await client.get(f"{base}&dates={','.join(reversed(dates))}&child=content")).json()
    assert [e["date"] for e in backwards["data"]] == list(reversed(dates))
    parent = await (await client.get(f"{base}&dates={','.join(dates)}&child=false")).json()
    assert parent == await (await client.get(f"{base}&dates={','.join(dates)}&child=parent")).json()
    assert parent != plain


async def test_hundreds_of_dates_are_answered(client, cells):
    dates = await dates_of(client, "submission_date")
    many = [f"{y}{m:02d}{d:02d}" for y in (2024, 2025, 2026) for m in range(1, 13) for d in range(1, 29)] + dates
    url = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&metric=GC_MS&dates={','.join(many)}"
    assert len(many) > 1000  # a 9 KB request line
    answer = await client.get(url)
    assert answer.status == 200
    assert [e["date"] for e in (await answer.json())["data"]] == [d for d in dict.fromkeys(many) if d in dates]


async def test_stats_are_opt_in_monotonic_and_exact_means(client):
    dates = await dates_of(client, "submission_date")
    url = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&metric=GC_MS&dates={','.join(dates)}"
    plain = await (await client.get(url)).json()
    assert set(plain["data"][0]) == {"date", "label", "histogram", "count", "sum"}
    rich = await (await client.get(url + "&stats=true")).json()
    for entry, bare in zip(rich["data"], plain["data"], strict=True):
        assert {k: entry[k] for k in bare} == bare
        assert entry["mean"] == pytest.approx(entry["sum"] / sum(entry["histogram"]))
        values = [entry["percentiles"][p] for p in ("5", "25", "50", "75", "95")]
        assert values == sorted(values)
        assert rich["buckets"][0] <= values[0] and values[-1] <= rich["buckets"][-1] ** 2
    categorical = await (await client.get(url.replace("GC_MS", "COOKIE_BEHAVIOR") + "&stats=true")).json()
    assert categorical["data"][0]["percentiles"] is None


# ---- errors and policy --------------------------------------------------------------------------------


async def test_missing_unknown_and_invalid_parameters(client):
    base = f"/aggregates_by/build_id/channels/{CHANNEL}/"
    missing = ("?version=146&metric=GC_MS", "?dates=20261101&metric=GC_MS", "?version=146&dates=20261101")
    for query in ("", *missing, "?version=146&dates=&metric=GC_MS"):
        answer = await client.get(base + query)
        assert answer.status == 404
        assert (await answer.json())["description"] == "Missing date or version or metric. All three are required."
    answer = await client.get(base + "?version=146&dates=20261101&metric=GC_MS&e10sEnabled=true&os=Linux")
    assert answer.status == 405
    assert answer.headers["Allow"] == base + "?version=146&dates=20261101&metric=GC_MS&os=Linux"
    assert (await answer.json())["code"] == "unknown_parameter"
    for bad in (
        "?version=1x&dates=20261101&metric=GC_MS",
        "?version=146&dates=2026110&metric=GC_MS",
        "?version=146&dates=20261340&metric=GC_MS",
        "?version=146&dates=,&metric=GC_MS",  # every item of the list is a date: no blanks, no empty items
        "?version=146&dates=20261101,&metric=GC_MS",
        "?version=146&dates=20261101,%2020261102&metric=GC_MS",
        "?version=146&dates=20261101&metric=GC_MS;DROP",
        "?version=146&dates=20261101&metric=GC_MS&child=renderer",
        "?version=146&version=145&dates=20261101&metric=GC_MS",
    ):
        answer = await client.get(base + bad)
        assert answer.status == 404, bad
        assert answer.content_type == "application/json"
    for path in ("/aggregates_by/x'--/channels/", "/aggregates_by/build_id/channels/Nightly;/dates/"):
        assert (await client.get(path)).status == 404


async def test_unknown_metrics_and_no_data(client):
    base = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&dates=20261101&metric="
    cases = {
        "SCALARS_NO.SUCH_SCALAR": "Cannot find this scalar definition.",
        "NO_SUCH_HISTOGRAM": "Cannot find this histogram definition.",
        "[[COUNT]]_CONTENT_DOCUMENTS_DESTROYED": "Cannot find this histogram definition.",
        "SEARCH_COUNTS": "This metric is not allowed to be served.",
        "SCALARS_BROWSER.SEARCH.CONTENT.URLBAR": "This metric is not allowed to be served.",
    }
    for metric, description in cases.items():
        answer = await client.get(base + metric)
        assert answer.status == 404, metric
        assert await answer.json() == {"code": "not_found", "description": description}
    answer = await client.get(base.replace("20261101", "20200101") + "GC_MS")
    assert (await answer.json())["description"] == "No data found for this metric."


async def test_event_counts_and_release_need_authentication(client):
    url = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&dates=20261101&metric="
    answer = await client.get(url + "SCALARS_TELEMETRY.EVENT_COUNTS")
    assert answer.status == 403
    assert (await answer.json())["code"] == "authorization_header_missing"
    release = "/aggregates_by/submission_date/channels/release/?version=146&dates=20261101&metric="
    assert (await client.get(release + "GC_MS")).status == 403
    assert (await client.get(release + "SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT")).status == 404  # public: no data
    assert (await client.get("/aggregates_by/build_id/channels/release/dates/")).status == 403
    assert (await client.get("/filters/?channel=release&version=146")).status == 403


async def test_allow_all_release_metrics(aiohttp_client, database_url):
    client = await aiohttp_client(create_app(settings_for(database_url, allow_all_release_metrics=True)))
    release = "/aggregates_by/submission_date/channels/release/?version=146&dates=20261101&metric=GC_MS"
    assert (await client.get(release)).status == 404  # allowed, and the corpus has no release data
    assert (await client.get("/filters/?channel=release&version=146")).status == 403  # listing still needs auth


# ---- HTTP: headers, ETag, cache, gzip, slashes ----------------------------------------------------------


async def test_security_and_cors_headers_on_every_answer(client):
    for path in ("/status", "/aggregates_by/build_id/channels/", "/nope", "/filters/"):
        answer = await client.get(path, headers={"Origin": "https://telemetry.mozilla.org"})
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Content-Security-Policy"] == "frame-ancestors 'none'; default-src 'self'"
        assert answer.headers["X-Content-Security-Policy"] == "frame-ancestors 'none'; default-src 'self'"
        assert answer.headers["Access-Control-Allow-Origin"] == "https://telemetry.mozilla.org"
        assert "Origin" in answer.headers["Vary"]
    assert (await client.get("/status")).headers["Access-Control-Allow-Origin"] == "*"
    preflight = await client.options(
        "/aggregates_by/build_id/channels/nightly/",
        headers={
            "Origin": "https://x.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status == 200
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://x.org"
    head = await client.head("/aggregates_by/build_id/channels/")
    assert head.status == 200 and head.headers["ETag"] and await head.read() == b""
    post = await client.post("/aggregates_by/build_id/channels/")
    assert post.status == 405
    assert post.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert (await post.json())["code"] == "method_not_allowed"


async def test_dockerflow_and_status_routes(client, tmp_path, aiohttp_client, database_url):
    assert await (await client.get("/status")).text() == "OK"
    assert (await client.get("/status/")).status == 404
    heartbeat = await client.get("/__heartbeat__")
    assert heartbeat.status == 200
    assert (await heartbeat.json())["status"] == "ok"
    lb = await client.get("/__lbheartbeat__")
    assert lb.status == 200 and await lb.read() == b""
    assert (await client.get("/__version__")).status == 404
    (tmp_path / "version.json").write_text('{"commit": "abc", "version": "1.0", "source": "s", "build": "b"}')
    versioned = await aiohttp_client(
        create_app(settings_for(database_url, version_file=str(tmp_path / "version.json")))
    )
    assert (await (await versioned.get("/__version__")).json())["commit"] == "abc"
    redirect = await client.get("/aggregates_by/build_id/channels", allow_redirects=False)
    assert redirect.status == 308
    assert redirect.headers["Location"] == "/aggregates_by/build_id/channels/"


async def test_etag_304_and_cache_control(client):
    url = f"/aggregates_by/submission_date/channels/{CHANNEL}/?version={VERSION}&dates=20261101&metric=GC_MS"
    first = await client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["Cache-Control"] == "public, max-age=300"
    for sent in (etag, etag.strip('"'), f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(url, headers={"If-None-Match": sent})
        assert again.status == 304, sent
        assert again.headers["ETag"] == etag
    assert (await client.get(url, headers={"If-None-Match": '"submission_date_v1"'})).status == 200
    for path in ("/aggregates_by/build_id/channels/", f"/filters/?channel={CHANNEL}&version={VERSION}"):
        listed = await client.get(path)
        assert (await client.get(path, headers={"If-None-Match": listed.headers["ETag"]})).status == 304


async def test_gzip_when_accepted(client):
    dates = ",".join(await dates_of(client, "build_id"))
    metric = "IPC_READ_MAIN_THREAD_LATENCY_MS"  # keyed: a large answer
    url = f"/aggregates_by/build_id/channels/{CHANNEL}/?version={VERSION}&dates={dates}&metric={metric}"
    raw = await client.get(url, headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in raw.headers
    zipped = await client.get(url, headers={"Accept-Encoding": "gzip, deflate"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    body = await zipped.read()
    assert gzip.decompress(body) == await raw.read() and len(body) < len(await raw.read())


async def test_cache_hits_then_a_publish_is_seen_at_once(aiohttp_client, empty_database_url, snapshot, corpus):
    url = empty_database_url
    first_day, second_day = corpus.dates
    conn = await asyncpg.connect(url)
    await schema.migrate(conn)
    await publish_dates(conn, snapshot, [first_day], schema.KINDS, say=lambda *_: None)
    client = await aiohttp_client(create_app(settings_for(url)))
    path = f"/aggregates_by/submission_date/channels/{CHANNEL}/dates/"
    before = await client.get(path)
    assert {d["date"] for d in await before.json()} == {first_day}
    await client.get(path)
    metrics = await (await client.get("/metrics")).text()
    assert 'api_cache_lookups_total{result="hit"} 1.0' in metrics
    assert "api_pool_connections" in metrics and "api_request_duration_seconds_bucket" in metrics
    await publish_dates(conn, snapshot, [first_day], schema.KINDS, say=lambda *_: None)  # unchanged: same data
    assert (await client.get(path, headers={"If-None-Match": before.headers["ETag"]})).status == 304
    await publish_dates(conn, snapshot, [second_day], schema.KINDS, say=lambda *_: None)
    await conn.close()
    after = await client.get(path, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status == 200
    assert {d["date"] for d in await after.json()} == {first_day, second_day}
    fresh = await (await client.get("/freshness/")).json()
    assert fresh["kinds"]["submission_date"][CHANNEL]["newest_date"] == second_day
    assert fresh["published_at"] is not None


async def test_openapi_describes_every_route(client):
    spec = await (await client.get("/openapi.json")).json()
    routes = {r.resource.canonical for r in client.app.router.routes() if r.method == "GET"}
    assert routes == set(spec["paths"])
    metric = spec["paths"]["/aggregates_by/{kind}/channels/{channel}/"]["get"]
    assert {p["name"] for p in metric["parameters"]} == {"kind", "channel", *ALLOWED}


async def test_the_explorer_page_and_only_its_files_are_served(client):
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert '<script type="module" src="/static/explorer.js">' in await page.text()
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'; default-src 'self'"
    module = await client.get("/static/explorer.js")
    assert module.status == 200 and "javascript" in module.content_type
    assert module.headers["Cache-Control"] == "no-cache"
    for path in ("/static/nope.js", "/static/..%2Fapp.py", "/static/%2E%2E%2Fconfig.py", "/static/"):
        answer = await client.get(path)
        assert answer.status == 404, path
        assert answer.content_type == "application/json"
