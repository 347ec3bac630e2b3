"""Client-level answers (`aggregation=clients`) against real Postgres data: the generated corpus (heavy clients
included) aggregated by the job on the session's LocalCluster and published by the store, and a hand-written day
where three heavy clients send most of the pings.

The expected values are computed here from the pings themselves, by the rule and not by the job's code: the pings
grouped by clientId, each client's pings aggregated alone (tests/reference.py's per-ping rules), each of its cells
normalised to sum 1, and those summed over clients, then summed over what a request sums (filters, processes,
build ids' submission dates) as the API specifies.
"""

import asyncio
import json
from collections import defaultdict
from datetime import date
from functools import cache
from pathlib import Path

import asyncpg
import numpy as np
import orjson
import pytest
import pytest_asyncio

from aggregator.job import JobConfig, run_job
from aggregator.settings import SettingError
from bench.load import publish
from server import views
from server.app import create_app
from server.cache import GZIP_MIN_BYTES
from server.config import PerChannel, per_channel
from server.params import AGGREGATIONS
from tests.conftest import FILTER_COLUMNS, KINDS, reference_cells, settings_for, summed
from tests.reference import Reference, reference_aggregate
from tests.test_api import FILTERED, dates_of, metric_params
from tests.test_api import assert_same as assert_per_ping
from tests.test_api import expected as per_ping
from tests.test_job import lines_of

CHANNEL, VERSION = "nightly", "146"
EVERY_CHANNEL = PerChannel((), 1)  # serve every entry with client-level data
LEVEL = {"rel": 1e-9, "abs": 1e-6}  # the job keeps a client's share to 2**-32 while it sums them


# ---- the reference: client-level sums from the pings ----------------------------------------------------


def normalised(bounds: tuple[int, ...], counts: tuple[int, ...]) -> np.ndarray:
    """A client's counts of a cell over their total, each bound's count taken once (a definition's repeated bound
    has its count at each of its positions); all zero when the total is."""
    first: dict[int, int] = {}
    total = sum(
        count for i, (bound, count) in enumerate(zip(bounds, counts, strict=True)) if first.setdefault(bound, i) == i
    )
    return np.array(counts, np.float64) / total if total else np.zeros(len(counts))


def usable(client: object) -> bool:
    """A clientId the job tells clients apart by: a non-empty string of at most 1,000 UTF-8 bytes."""
    return isinstance(client, str) and 0 < len(client.encode("utf-8", "surrogatepass")) <= 1000


# The metrics checked: every kind of probe (histograms of each process, keyed ones, scalars, keyed scalars, simple
# measurements, count histograms, categorical ones). Each client's pings are aggregated with these alone, which
# takes a second where all of them took a minute.
PROBES = frozenset(metric for metric, *_ in FILTERED if not metric.startswith("USE_COUNTER"))
PREFIXES = {"scalars": "SCALARS_", "keyedScalars": "SCALARS_", "simpleMeasurements": "SIMPLE_MEASURES_"}


def pruned(line: str) -> tuple[object, str]:
    """The ping of a line, and the line with only PROBES left in its payload (a part that is not an object is
    left as it is, for the reference to judge)."""
    ping = orjson.loads(line)
    payload = ping.get("payload") if isinstance(ping, dict) else None
    if not isinstance(payload, dict):
        return ping, line
    processes, children = payload.get("processes"), payload.get("childPayloads")
    parts = [payload, *(processes.values() if isinstance(processes, dict) else ())]
    parts += children if isinstance(children, list) else []
    for part in (p for p in parts if isinstance(p, dict)):
        for container, prefix in (("histograms", ""), ("keyedHistograms", ""), *PREFIXES.items()):
            held = part.get(container)
            if isinstance(held, dict):
                part[container] = {k: v for k, v in held.items() if prefix + (k.upper() if prefix else k) in PROBES}
    return ping, orjson.dumps(ping).decode()


@cache
def client_reference(folder: str, days: tuple[str, ...] | None = None) -> dict[str, dict[tuple[str, str, str], list]]:
    """Client-level cells of PROBES in a corpus (in some of its days), in conftest.reference_cells' shape, each
    cell (clients, sums): every client's pings of a day aggregated alone, its cells normalised, summed over
    clients."""
    root = Path(folder)
    histograms = json.loads((root / "Histograms.json").read_text())
    totals: dict[str, dict[tuple, list]] = {kind: {} for kind in KINDS}
    for day in sorted(root.glob("submission_date=*")):
        submitted = day.name.split("=")[1]
        if days is not None and submitted not in days:
            continue
        files = sorted(str(p) for p in day.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
        by_client = defaultdict(list)
        for line in lines_of(files):
            try:
                ping, kept = pruned(line)
            except orjson.JSONDecodeError:
                continue  # malformed: in no aggregate
            if isinstance(ping, dict) and usable(ping.get("clientId")):
                by_client[ping["clientId"]].append(kept)
        for lines in by_client.values():
            mine = reference_aggregate(lines, {submitted}, histograms)
            for kind in KINDS:
                for key, (_, bounds, counts, _, _) in getattr(mine, kind).items():
                    cell = totals[kind].setdefault(key, [0, np.zeros(len(counts))])
                    cell[0] += 1
                    cell[1] += normalised(bounds, counts)
    as_cells = {kind: {key: (kind, key[-1][1], tuple(v)) for key, v in cells.items()} for kind, cells in totals.items()}
    return reference_cells([Reference(build_id=as_cells["build_id"], submission_date=as_cells["submission_date"])])


def client_summed(records: list[tuple], filters: dict, processes=None, labels=None) -> dict:
    """{(date, label): (clients, sums)} over the records matching the query, as conftest.summed sums counts."""
    total: dict[tuple[str, str], list] = {}
    for record in records:
        _, _, day, label, *_, process, _, (_, _, (clients, sums)) = record
        if (processes and process not in processes) or (labels is not None and label not in labels):
            continue
        if any(record[FILTER_COLUMNS[k]] not in values for k, values in filters.items()):
            continue
        entry = total.setdefault((day, label), [0, np.zeros(len(sums))])
        entry[0] += clients
        entry[1] += sums
    return total


def expected(cells, clients, kind, metric, dates, filters=None, processes=None, labels=None, fewest=1) -> dict:
    """The client-level answer's `withheld` and `data`: the per-ping entries' dates, labels, counts and sums, with
    the client-level sums and clients; entries of fewer than `fewest` clients withheld."""
    filters = filters or {}
    counted = f"[[COUNT]]_{metric}"
    stored = counted if cells[kind].get((CHANNEL, VERSION, counted)) else metric
    pings = summed(cells[kind].get((CHANNEL, VERSION, stored), []), filters, processes, labels)
    by_client = client_summed(clients[kind].get((CHANNEL, VERSION, stored), []), filters, processes, labels)
    entries = []
    for day in dates:
        for (d, label), (_, counts, total, count) in sorted(pings.items()):
            if d == day:
                n, sums = by_client.get((d, label), (0, np.zeros(len(counts))))
                entries.append(
                    {"date": d, "label": label, "histogram": sums, "count": count, "sum": total, "clients": n}
                )
    served = [e for e in entries if e["clients"] >= fewest]
    return {"withheld": len(entries) - len(served), "data": served}


def assert_same(answer: dict, want: dict) -> None:
    assert answer["withheld"] == want["withheld"]
    assert len(answer["data"]) == len(want["data"])
    for got, entry in zip(answer["data"], want["data"], strict=True):
        assert {k: got[k] for k in ("date", "label", "count", "sum", "clients")} == {
            k: entry[k] for k in ("date", "label", "count", "sum", "clients")
        }
        assert got["histogram"] == pytest.approx(list(entry["histogram"]), **LEVEL), (got["date"], got["label"])


# ---- the corpus served --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients(corpus) -> dict:
    return client_reference(corpus.output)


def app_for(url: str, min_clients: PerChannel = EVERY_CHANNEL, **changes):
    return create_app(settings_for(url, min_clients=min_clients, **changes))


@pytest_asyncio.fixture
async def client(aiohttp_client, database_url):
    return await aiohttp_client(app_for(database_url))


def path(kind: str, channel: str = CHANNEL) -> str:
    return f"/aggregates_by/{kind}/channels/{channel}/"


@pytest.mark.asyncio
async def test_per_ping_answers_are_the_same_bytes_as_before(client, cells):
    """`aggregation=pings` is the default: the same bytes, the per-ping reference's values, and no client-level
    field."""
    for kind in KINDS:
        dates = ",".join(await dates_of(client, kind))
        for metric in ("GC_MS", "IPC_READ_MAIN_THREAD_LATENCY_MS", "USE_COUNTER2_DOCUMENT_OPEN_PAGE"):
            params = {"version": VERSION, "dates": dates, "metric": metric, "stats": "true"}
            plain = await client.get(path(kind), params=params)
            said = await client.get(path(kind), params=params | {"aggregation": "pings"})
            assert plain.status == said.status == 200
            body = await plain.read()
            assert body == await said.read() and plain.headers["ETag"] == said.headers["ETag"]
            answer = json.loads(body)
            assert set(answer) == {"buckets", "kind", "description", "data"}
            without_stats = {
                **answer,
                "data": [{k: e[k] for k in e if k not in ("mean", "percentiles")} for e in answer["data"]],
            }
            assert_per_ping(without_stats, per_ping(cells, kind, metric, dates.split(",")))


@pytest.mark.asyncio
async def test_each_kind_of_probe_per_client_matches_the_pings(client, cells, clients):
    """Each kind of probe, both kinds of aggregate, all dates: the rollup's client-level sums and clients, and the
    per-ping count and sum beside them."""
    for kind in KINDS:
        dates = await dates_of(client, kind)
        for metric in sorted(PROBES):
            params = {"version": VERSION, "dates": ",".join(dates), "metric": metric, "aggregation": "clients"}
            response = await client.get(path(kind), params=params)
            assert response.status == 200, metric
            want = expected(cells, clients, kind, metric, dates)
            assert want["data"], (kind, metric)
            assert_same(await response.json(), want)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("metric", "filters", "processes", "labels"), [f for f in FILTERED if "USE_COUNTER" not in f[0]]
)
async def test_filtered_answers_per_client_match_the_pings(client, cells, clients, metric, filters, processes, labels):
    """Filters read the leaves: their client-level sums and clients are summed as their counts are."""
    for kind in KINDS:
        dates = await dates_of(client, kind)
        params = [*metric_params(dates, metric, filters, processes, labels), ("aggregation", "clients")]
        response = await client.get(path(kind), params=params)
        assert response.status == 200
        want = expected(cells, clients, kind, metric, dates, filters, processes, labels)
        assert want["data"], (metric, kind)
        assert_same(await response.json(), want)


@pytest.mark.asyncio
async def test_entries_of_too_few_clients_are_withheld_and_counted(aiohttp_client, database_url, cells, clients):
    """API_MIN_CLIENTS of the channel, or of `*` for the others: entries of fewer clients are left out, and
    counted in `withheld`; an answer that withholds every entry is still an answer."""
    metric, kind = "IPC_READ_MAIN_THREAD_LATENCY_MS", "submission_date"  # keyed: many entries
    dates = sorted({r[2] for r in cells[kind][(CHANNEL, VERSION, metric)]})
    per_entry = sorted(e["clients"] for e in expected(cells, clients, kind, metric, dates)["data"])
    fewest = per_entry[len(per_entry) // 2]  # the median entry's clients: some have fewer, some not
    for_channel = await aiohttp_client(app_for(database_url, PerChannel(((CHANNEL, fewest),), 10**9)))
    for child in ((), ("parent",), ("content",)):
        params = [*metric_params(dates, metric, {}, child), ("aggregation", "clients")]
        answer = await (await for_channel.get(path(kind), params=params)).json()
        want = expected(cells, clients, kind, metric, dates, processes=child, fewest=fewest)
        assert answer["min_clients"] == fewest
        assert_same(answer, want)
        if not child:
            assert want["withheld"] > 0 and want["data"]
    channel, version = next((c, v) for c, v, m in cells[kind] if m == metric and c not in (CHANNEL, "release"))
    others = {"version": version, "dates": ",".join(dates), "metric": metric, "aggregation": "clients"}
    other = await (await for_channel.get(path(kind, channel), params=others)).json()
    assert other["min_clients"] == 10**9 and other["data"] == [] and other["withheld"] > 0


@pytest.mark.asyncio
async def test_statistics_are_of_the_client_level_distribution(client, cells, clients):
    """stats=true: percentiles interpolated within buckets and a mean at the buckets' middles, both of the
    client-level sums (computed here from the reference's), never of the per-ping counts."""
    kind = "build_id"
    dates = await dates_of(client, kind)
    for metric in ("GC_MS", "SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS", "SIMPLE_MEASURES_UPTIME"):
        params = {"version": VERSION, "dates": ",".join(dates), "metric": metric, "stats": "true"}
        per_client = await (await client.get(path(kind), params=params | {"aggregation": "clients"})).json()
        per_ping = await (await client.get(path(kind), params=params)).json()
        want = expected(cells, clients, kind, metric, dates)
        differ = 0
        for got, entry in zip(per_client["data"], want["data"], strict=True):
            mean, percentiles = described(entry["histogram"], per_client["buckets"], per_client["kind"])
            assert got["mean"] == pytest.approx(mean, rel=1e-9)
            assert list(got["percentiles"].values()) == pytest.approx(percentiles, rel=1e-6, abs=1e-5)
            ping = next(e for e in per_ping["data"] if (e["date"], e["label"]) == (got["date"], got["label"]))
            differ += ping["percentiles"] != got["percentiles"]
        assert differ, metric


def described(weights: np.ndarray, bounds: list[int], kind: str) -> tuple[float, list[float]]:
    """Mean and 5th to 95th percentiles of a histogram: mass spread evenly within each bucket, up to the next
    bound (past the last, one more step of the layout: linear, or exponential as a ratio)."""
    linear = kind in ("linear", "flag", "boolean", "enumerated")
    last = bounds[-1] + (bounds[-1] - bounds[-2]) if linear else bounds[-1] ** 2 / bounds[-2]
    uppers = [*bounds[1:], last]
    total = sum(weights)
    mean = sum(w * (lo + hi) / 2 for w, lo, hi in zip(weights, bounds, uppers, strict=True)) / total
    percentiles = []
    for p in (5, 25, 50, 75, 95):
        target, before = p / 100 * total, 0.0
        for w, lo, hi in zip(weights, bounds, uppers, strict=True):
            if w > 0 and before + w >= target:
                percentiles.append(lo + (target - before) / w * (hi - lo))
                break
            before += w
    return mean, percentiles


@pytest.mark.asyncio
async def test_bad_aggregation_values_are_json_404s(client):
    base = f"{path('submission_date')}?version={VERSION}&dates=20261101&metric=GC_MS"
    for bad in ("bogus", "", "CLIENTS", "client", "clients%00"):
        answer = await client.get(f"{base}&aggregation={bad}")
        assert answer.status == 404, bad
        assert await answer.json() == {"code": "not_found", "description": "aggregation is pings or clients."}
    twice = await client.get(f"{base}&aggregation=clients&aggregation=pings")
    assert twice.status == 404 and (await twice.json())["description"] == "aggregation takes one value."
    again = await client.get(f"{base}&aggregation=clients&aggregation=clients")
    assert again.status == 200 and "withheld" in await again.json()
    counter = await client.get(f"{base.replace('GC_MS', 'USE_COUNTER2_DOCUMENT_OPEN_PAGE')}&aggregation=clients")
    assert counter.status == 404 and (await counter.json())["description"] == views.NO_CLIENT_USE_COUNTERS
    unknown = await client.get(f"{base.replace('GC_MS', 'NO_SUCH_HISTOGRAM')}&aggregation=clients")
    assert (await unknown.json())["description"] == "Cannot find this histogram definition."
    assert AGGREGATIONS == ("pings", "clients")


@pytest.mark.asyncio
async def test_large_client_answers_in_pieces_are_the_inline_bytes(aiohttp_client, database_url, cells, monkeypatch):
    """Client-level answers read within the budget, summed on a thread and sent in pieces are byte for byte the
    inline ones, in JSON and gzip, with statistics or not."""
    monkeypatch.setattr(views, "PIECE_CELLS", GZIP_MIN_BYTES // 8)  # a client-level sum takes eight bytes or so
    inline = await aiohttp_client(app_for(database_url, offload_cells=10**12, cache_bytes=0))
    large = await aiohttp_client(app_for(database_url, offload_cells=0, cache_bytes=0))
    streamed = 0
    for kind in KINDS:
        dates = ",".join(await dates_of(inline, kind))
        for n, metric in enumerate(["GC_MS", "IPC_READ_MAIN_THREAD_LATENCY_MS", "SCALARS_DEVTOOLS.TOOL.REGISTERED"]):
            params = {"version": VERSION, "dates": dates, "metric": metric, "aggregation": "clients"}
            params["stats"] = ("false", "true")[n % 2]
            for encoding in ("identity", "gzip"):
                headers = {"Accept-Encoding": encoding}
                want = await inline.get(path(kind), params=params, headers=headers, auto_decompress=False)
                got = await large.get(path(kind), params=params, headers=headers, auto_decompress=False)
                assert (got.status, await got.read()) == (want.status, await want.read()), (kind, metric)
                streamed += got.headers.get("Transfer-Encoding") == "chunked"
    assert streamed >= 4, streamed


@pytest.mark.asyncio
async def test_the_openapi_document_describes_client_level_answers(client):
    document = await (await client.get("/openapi.json")).json()
    metric = document["paths"]["/aggregates_by/{kind}/channels/{channel}/"]["get"]
    (aggregation,) = [p for p in metric["parameters"] if p["name"] == "aggregation"]
    assert aggregation["schema"]["enum"] == list(AGGREGATIONS) and not aggregation["required"]
    schemas = document["components"]["schemas"]
    answer = schemas["ClientMetric"]
    assert {"min_clients", "withheld"} <= set(answer["required"])
    assert "clients" in answer["properties"]["data"]["items"]["required"]
    assert "withheld" not in schemas["Metric"]["properties"]  # so an answer is one of the two, never both
    ok = metric["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"oneOf": [{"$ref": "#/components/schemas/Metric"}, {"$ref": "#/components/schemas/ClientMetric"}]}


# ---- rows published before client-level data --------------------------------------------------------------


@pytest.fixture(scope="module")
def older_database_url(scratch_database, snapshot, corpus) -> str:
    """The corpus published, then its first day's client-level data taken away: rows published before it
    existed hold none."""
    url = scratch_database("ta_api_older")
    asyncio.run(publish(url, snapshot, corpus.dates))

    async def forget() -> None:
        conn = await asyncpg.connect(url)
        try:
            for table in ("aggregates", "aggregates_all"):
                sql = f"UPDATE {table} SET client_histogram = NULL, clients = 0 WHERE submission_date = $1"
                await conn.execute(sql, date.fromisoformat(corpus.dates[0]))
        finally:
            await conn.close()

    asyncio.run(forget())
    return url


@pytest.mark.asyncio
async def test_rows_without_client_level_data_have_no_clients(
    aiohttp_client, older_database_url, corpus, cells, clients
):
    """A day without client-level data is withheld even at one client; a build's entry sums the days that have
    some, beside the counts of them all."""
    older = await aiohttp_client(app_for(older_database_url))
    later = client_reference(corpus.output, days=tuple(corpus.dates[1:]))
    for kind in KINDS:
        dates = await dates_of(older, kind)
        for metric in ("GC_MS", "SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS"):
            params = {"version": VERSION, "dates": ",".join(dates), "metric": metric, "aggregation": "clients"}
            answer = await (await older.get(path(kind), params=params)).json()
            want = expected(cells, later, kind, metric, dates)
            assert_same(answer, want)
            every_day = expected(cells, clients, kind, metric, dates)
            if kind == "submission_date":  # the first day's entries have no clients
                assert want["withheld"] == len([d for d in every_day["data"] if d["date"] == corpus.dates[0]]) > 0
            else:  # a build submitted on both days has the second day's clients only
                assert sum(e["clients"] for e in want["data"]) < sum(e["clients"] for e in every_day["data"])


# ---- a few heavy clients ----------------------------------------------------------------------------------

HEAVY, LIGHT = 5000, 3  # the values heavy and light clients send
HEAVY_PINGS = {f"heavy-{n}": 60 for n in range(3)}  # three clients, 180 pings
LIGHT_PINGS = {f"light-{n}": 1 + n % 2 for n in range(30)}  # thirty clients, 45 pings
SCALAR = "SCALARS_TEST.RESPONSE_MS"


def hand_written_ping(client: str | None, value: int) -> bytes:
    """A main ping of nightly 146 with one scalar, `test.response_ms`, sent by `client` (None: no clientId)."""
    ping = {
        "meta": {"submissionDate": "20261101", "sampleId": 7},
        "application": {
            "channel": CHANNEL,
            "version": f"{VERSION}.0a1",
            "buildId": "20261030101010",
            "name": "Firefox",
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": "Linux", "version": "6.1.0"}}},
        "payload": {"processes": {"parent": {"scalars": {"test.response_ms": value}}}},
    }
    return orjson.dumps(ping | ({"clientId": client} if client else {}))


@pytest.fixture(scope="module")
def heavy_url(tmp_path_factory, local_client, scratch_database) -> str:
    """The hand-written day aggregated by the job and published; a ping without a clientId counts per ping only."""
    folder = tmp_path_factory.mktemp("heavy")
    day = folder / "submission_date=20261101"
    day.mkdir()
    lines = [hand_written_ping(c, HEAVY) for c, n in HEAVY_PINGS.items() for _ in range(n)]
    lines += [hand_written_ping(c, LIGHT) for c, n in LIGHT_PINGS.items() for _ in range(n)]
    lines.append(hand_written_ping(None, LIGHT))
    (day / "part-0.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    snapshot = str(folder / "snap")
    run_job(
        JobConfig(inputs=[str(folder)], snapshot=snapshot, dates=["20261101"], progress=False),
        local_client,
        say=lambda *_: None,
    )
    url = scratch_database("ta_api_heavy")
    asyncio.run(publish(url, snapshot, ["20261101"]))
    return url


@pytest.mark.asyncio
async def test_a_few_heavy_clients_weigh_as_few_clients(aiohttp_client, heavy_url):
    """Three clients sending 180 of 226 pings dominate the per-ping distribution; per client they are three of 33
    and the median is the light clients' value."""
    served = await aiohttp_client(app_for(heavy_url))
    params = {"version": VERSION, "dates": "20261101", "metric": SCALAR, "stats": "true"}
    (ping,) = (await (await served.get(path("submission_date"), params=params)).json())["data"]
    answer = await (await served.get(path("submission_date"), params=params | {"aggregation": "clients"})).json()
    (client,) = answer["data"]
    buckets = answer["buckets"]
    heavy, light = (max(i for i, b in enumerate(buckets) if b <= v) for v in (HEAVY, LIGHT))
    pings = sum(HEAVY_PINGS.values()) + sum(LIGHT_PINGS.values()) + 1
    assert ping["histogram"][heavy] == sum(HEAVY_PINGS.values()) and ping["count"] == pings
    assert buckets[heavy] <= ping["percentiles"]["50"] <= HEAVY * 2
    assert client["clients"] == len(HEAVY_PINGS) + len(LIGHT_PINGS)
    assert (client["count"], client["sum"]) == (pings, ping["sum"])  # per ping, as the per-ping answer's
    want = [0.0] * len(buckets)
    want[heavy], want[light] = len(HEAVY_PINGS), len(LIGHT_PINGS)
    assert client["histogram"] == pytest.approx(want, **LEVEL)
    assert buckets[light] <= client["percentiles"]["50"] < buckets[light + 1]
    assert client["mean"] < ping["mean"] / 5
    fewer = await aiohttp_client(app_for(heavy_url, PerChannel(((CHANNEL, 34),), 1)))
    refused = await (await fewer.get(path("submission_date"), params=params | {"aggregation": "clients"})).json()
    assert (refused["data"], refused["withheld"], refused["min_clients"]) == ([], 1, 34)


# ---- the setting ------------------------------------------------------------------------------------------


def test_min_clients_is_read_per_channel(monkeypatch):
    monkeypatch.delenv("API_MIN_CLIENTS", raising=False)
    default = per_channel("API_MIN_CLIENTS")
    assert [default.of(c) for c in ("release", "beta", "nightly", "aurora", "esr")] == [625001, 9001, 376, 101, 101]
    monkeypatch.setenv("API_MIN_CLIENTS", " nightly=10 , *=1")
    assert per_channel("API_MIN_CLIENTS") == PerChannel((("nightly", 10),), 1)
    for bad in ("", "nightly=10", "*=0", "*=-1", "*=1,*=2", "Nightly=3,*=1", "*=1,beta=x", "*=²", "*=1;beta=2"):
        monkeypatch.setenv("API_MIN_CLIENTS", bad)
        with pytest.raises(SettingError, match="API_MIN_CLIENTS"):
            per_channel("API_MIN_CLIENTS")
