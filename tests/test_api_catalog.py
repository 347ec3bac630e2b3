"""The listing routes (channels, dates, /filters/) answered from the catalog (server/catalog.py): what a publish
changes in them once the ledger moves, checked against the reference aggregation of the days published; that
they cost no query once loaded, one load however many requests ask at once; what they answer while the
database is down; and /clear-cache dropping the catalog."""

import asyncio
import json

import asyncpg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa

from aggregator.store import schema
from aggregator.store.publish import publish_dates
from server.app import create_app
from server.keys import READER
from server.queries import CATALOG_DATES, FILTERS
from tests.conftest import KINDS, reference_cells, settings_for
from tests.test_api_auth import bearer, jwks_of, token
from tests.test_api_robustness import Proxy, through

pytestmark = pytest.mark.asyncio

BLACKLISTED = ("SEARCH_COUNTS", "SCALARS_BROWSER.SEARCH.")  # METRICS_BLACKLIST's default
AUTH_ONLY = {"SCALARS_TELEMETRY.EVENT_COUNTS", "SCALARS_TELEMETRY.DYNAMIC_EVENT_COUNTS"}  # AUTH_ONLY_METRICS'
POLL = 0.1  # seconds between the ledger's reads in these tests


@pytest.fixture(scope="module")
def by_day(corpus) -> dict[str, object]:
    """The reference aggregation of each submission date of the corpus."""
    from tests.test_job import reference

    references = reference(corpus.output, True)
    assert sorted(references) == sorted(corpus.dates)
    return references


def expected_listings(references) -> dict[str, object]:
    """Channels, dates and filter values (as an anonymous caller gets them) of the reference cells of these days."""
    cells = reference_cells(references)
    channels = {kind: sorted({c for c, _, _ in cells[kind]} - {"release"}) for kind in KINDS}
    dates = {}
    for kind in KINDS:
        for (channel, version, _), records in cells[kind].items():
            dates.setdefault((kind, channel), set()).update((version, r[2]) for r in records)
    newest_first = {key: sorted(pairs, key=lambda p: (p[1], int(p[0])), reverse=True) for key, pairs in dates.items()}
    filters: dict[tuple[str, str], dict[str, set[str]]] = {}
    for kind in KINDS:
        for (channel, version, metric), records in cells[kind].items():
            options = filters.setdefault((channel, version), {n: set() for n in FILTER_NAMES})
            name = metric.removeprefix("[[COUNT]]_")
            if not name.startswith(BLACKLISTED) and name not in AUTH_ONLY:
                options["metric"].add(name)
            for r in records:
                options["application"].add(r[4])
                options["architecture"].add(r[5])
                options["os"].add(f"{r[6]},{r[7]}")
                options["child"].add(r[8])
    return {"channels": channels, "dates": newest_first, "filters": filters}


FILTER_NAMES = ("metric", "application", "architecture", "os", "child")


async def assert_listings(client, want: dict, pairs: set[tuple[str, str]]) -> None:
    """Every listing of `want` answered as it says; channels and versions of `pairs` it lacks are 404s."""
    for kind in KINDS:
        assert await (await client.get(f"/aggregates_by/{kind}/channels/")).json() == want["channels"][kind]
        for channel in want["channels"][kind]:
            answer = await (await client.get(f"/aggregates_by/{kind}/channels/{channel}/dates/")).json()
            assert [(d["version"], d["date"]) for d in answer] == want["dates"][(kind, channel)], (kind, channel)
    for channel, version in sorted(pairs):
        answer = await client.get(f"/filters/?channel={channel}&version={version}")
        if (channel, version) not in want["filters"] or channel == "release":
            assert answer.status == (403 if channel == "release" else 404), (channel, version)
            continue
        assert answer.status == 200
        listed = await answer.json()
        assert listed["metric"] == sorted(listed["metric"])
        assert {name: set(values) for name, values in listed.items()} == want["filters"][(channel, version)]


@pytest_asyncio.fixture
async def one_day_published(empty_database_url, snapshot, corpus):
    """A database with the corpus' first day published; yields a connection to publish more."""
    conn = await asyncpg.connect(empty_database_url)
    await schema.migrate(conn)
    await publish_dates(conn, snapshot, corpus.dates[:1], schema.KINDS, say=lambda *_: None)
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_publish_is_listed_once_the_ledger_moves(
    aiohttp_client, one_day_published, empty_database_url, snapshot, corpus, by_day
):
    """The response cache off, so every answer comes from the catalog; the second day's publish changes the
    channels, dates and filter values listed (a channel and version it adds goes from 404 to listed)."""
    first, second = corpus.dates
    one_day, both_days = expected_listings([by_day[first]]), expected_listings([by_day[first], by_day[second]])
    pairs = set(both_days["filters"]) | {("nightly", "1")}
    assert one_day != both_days
    settings = settings_for(empty_database_url, cache_bytes=0, ledger_poll_seconds=POLL)
    client = await aiohttp_client(create_app(settings))
    await assert_listings(client, one_day, pairs)
    path = "/aggregates_by/submission_date/channels/nightly/dates/"
    before = (await client.get(path)).headers["ETag"]
    await publish_dates(one_day_published, snapshot, [second], schema.KINDS, say=lambda *_: None)
    for _ in range(100):  # the ledger is read in the background, within POLL seconds of a request
        await asyncio.sleep(POLL / 2)
        if (await client.get(path)).headers["ETag"] != before:
            break
    else:
        pytest.fail("the ledger did not move")
    await assert_listings(client, both_days, pairs)
    assert (await client.get(path, headers={"If-None-Match": before})).status == 200


async def queries_made(client) -> list[str]:
    """The SQL of every query the app's reader makes from now on, in order."""
    reader, made = client.app[READER], []
    fetch, fetchval = reader._fetch, reader._fetchval

    async def counted_fetch(sql: str, *args):
        made.append(sql)
        return await fetch(sql, *args)

    async def counted_fetchval(sql: str, *args):
        made.append(sql)
        return await fetchval(sql, *args)

    reader._fetch, reader._fetchval = counted_fetch, counted_fetchval
    return made


LISTINGS = (
    "/aggregates_by/build_id/channels/",
    "/aggregates_by/submission_date/channels/",
    "/aggregates_by/submission_date/channels/nightly/dates/",
    "/aggregates_by/build_id/channels/beta/dates/",
    "/filters/?channel=nightly&version=146",
)


async def test_one_load_for_concurrent_requests_then_no_query(aiohttp_client, database_url):
    client = await aiohttp_client(create_app(settings_for(database_url, cache_bytes=0, ledger_poll_seconds=3600)))
    made = await queries_made(client)
    answers = await asyncio.gather(*(client.get(path) for path in LISTINGS * 8))
    assert {answer.status for answer in answers} == {200}
    assert made.count(CATALOG_DATES) == 1 and made.count(FILTERS) == 1  # and the ledger's read
    assert len(made) == 3
    for path in LISTINGS * 3:
        assert (await client.get(path)).status == 200
    assert len(made) == 3  # nothing more: the catalog answers


async def test_loaded_listings_are_served_while_the_database_is_down(aiohttp_client, database_url):
    """What the catalog holds is answered during an outage (the ledger keeps its generation); what it does not
    yet hold is a 503, as every query then; both recover when the database is back."""
    proxy = Proxy()
    await proxy.start()
    settings = settings_for(through(database_url, proxy.port), cache_bytes=0, ledger_poll_seconds=POLL)
    client = await aiohttp_client(create_app(settings))
    loaded = {path: await (await client.get(path)).read() for path in LISTINGS}
    await proxy.stop()
    await asyncio.sleep(2 * POLL)  # the ledger's background read fails meanwhile
    for path, body in loaded.items():
        answer = await client.get(path)
        assert (answer.status, await answer.read()) == (200, body), path
    not_loaded = await client.get("/filters/?channel=beta&version=145")
    assert not_loaded.status == 503
    assert (await not_loaded.json())["code"] == "database_unavailable"
    await proxy.start()
    for _ in range(3):  # pooled connections to the old relay are replaced as they are found dead
        if (await client.get("/filters/?channel=beta&version=145")).status == 200:
            break
    assert (await client.get("/filters/?channel=beta&version=145")).status == 200
    await proxy.stop()


async def test_a_first_load_that_fails_is_a_503_and_is_tried_again(aiohttp_client, database_url, cells):
    proxy = Proxy()
    await proxy.start()
    settings = settings_for(through(database_url, proxy.port), cache_bytes=0, ledger_poll_seconds=3600)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/freshness/")).status == 200  # the ledger is read; the catalog is not loaded
    await proxy.stop()
    down = await client.get("/aggregates_by/build_id/channels/")
    assert down.status == 503
    assert down.headers["Retry-After"]
    assert (await down.json())["code"] == "database_unavailable"
    await proxy.start()
    for _ in range(3):
        if (await client.get("/aggregates_by/build_id/channels/")).status == 200:
            break
    listed = await (await client.get("/aggregates_by/build_id/channels/")).json()
    assert listed == sorted({c for c, _, _ in cells["build_id"]} - {"release"})
    await proxy.stop()


async def test_clear_cache_drops_the_catalog(aiohttp_client, one_day_published, empty_database_url, tmp_path):
    """The catalog changes with the ledger; a change made behind its back (no publish) shows after /clear-cache,
    as it did when only the response cache held listings."""
    keys = {"one": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(jwks_of(keys, "one")))
    settings = settings_for(empty_database_url, jwks=str(jwks), ledger_poll_seconds=3600)
    client = await aiohttp_client(create_app(settings))
    path = "/aggregates_by/submission_date/channels/"
    listed = await (await client.get(path)).json()
    assert "esr" not in listed  # a channel the job does not aggregate
    await one_day_published.execute(
        "INSERT INTO catalog_dates SELECT kind, submission_date, 'esr', version, date FROM catalog_dates "
        "WHERE kind = 'submission_date' LIMIT 1"
    )
    assert await (await client.get(path)).json() == listed
    assert (await client.get("/clear-cache", headers=bearer(token(keys)))).status == 200
    assert await (await client.get(path)).json() == sorted([*listed, "esr"])
