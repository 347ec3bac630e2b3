"""Bearer tokens: RS256 JWTs checked against a JWKS (file or URL) with the original's 403 codes, and what
authentication unlocks (release data, auth-only metrics, /authed, /clear-cache)."""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from server.app import create_app
from tests.conftest import settings_for

pytestmark = pytest.mark.asyncio

AUDIENCE = "https://aggregates.telemetry.mozilla.org/"
ISSUER = "https://auth.mozilla.auth0.com/"


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("one", "two", "stranger")}


def jwks_of(keys: dict[str, rsa.RSAPrivateKey], *kids: str) -> dict:
    return {
        "keys": [
            RSAAlgorithm.to_jwk(keys[kid].public_key(), as_dict=True) | {"kid": kid, "use": "sig", "alg": "RS256"}
            for kid in kids
        ]
    }


def claims(**changes) -> dict:
    """A valid token's claims, changed (a None value drops the claim)."""
    now = int(time.time())
    body = {"aud": AUDIENCE, "iss": ISSUER, "exp": now + 600, "iat": now, "scope": "openid read:aggregates"}
    return {k: v for k, v in (body | changes).items() if v is not None}


def token(keys, kid: str | None = "one", signer: str = "one", **changes) -> str:
    signer = kid if kid in keys and signer == "one" else signer
    return jwt.encode(claims(**changes), keys[signer], "RS256", {"kid": kid} if kid else {})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(data: dict) -> str:
    return _b64(json.dumps(data).encode())


def signed(keys, header: dict, payload: bytes) -> str:
    """A token validly signed by key "one" whatever its header and payload hold (jwt.encode checks some types)."""
    signing_input = f"{_segment({'alg': 'RS256', 'typ': 'JWT', 'kid': 'one'} | header)}.{_b64(payload)}"
    signature = keys["one"].sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def odd_claims(**changes) -> bytes:
    return json.dumps(claims(**changes)).encode()


def unsigned() -> str:
    """`alg: none` naming a known key, with an empty signature."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': 'one'})}.{_segment(claims())}."


def hmac_with_public_key(keys) -> str:
    """Algorithm confusion: HS256 keyed with the RSA public key (PEM), which a verifier that let the token choose
    its algorithm would check against that same public key, and accept."""
    public = keys["one"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signed = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': 'one'})}.{_segment(claims())}"
    signature = base64.urlsafe_b64encode(hmac.new(public, signed.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{signed}.{signature.decode()}"


@pytest.fixture
def jwks_file(tmp_path, keys) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(keys, "one", "two")))
    return str(path)


@pytest_asyncio.fixture
async def client(aiohttp_client, database_url, jwks_file):
    return await aiohttp_client(create_app(settings_for(database_url, jwks=jwks_file)))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


UNPARSABLE = ("invalid_header", "Unable to parse authentication token.")
BAD_CLAIMS = ("invalid_claims", "Incorrect claims,please check the audience and issuer")


def refused_tokens(keys) -> list[tuple[dict[str, str], str, str]]:
    """(headers, code, description): every way a caller can fail to authenticate, with the original's answer."""
    now = int(time.time())
    return [
        ({}, "authorization_header_missing", "Authorization header is expected"),
        ({"Authorization": "   "}, "authorization_header_missing", "Authorization header is expected"),
        ({"Authorization": "Basic abc"}, "invalid_header", "Authorization header must start with Bearer"),
        ({"Authorization": f"Token {token(keys)}"}, "invalid_header", "Authorization header must start with Bearer"),
        ({"Authorization": f"JWT {token(keys)}"}, "invalid_header", "Authorization header must start with Bearer"),
        ({"Authorization": "Bearer"}, "invalid_header", "Token not found"),
        ({"Authorization": "Bearer a b"}, "invalid_header", "Authorization header must be Bearer token"),
        (bearer("not-a-jwt"), "improper_token", "Token cannot be validated"),
        (bearer("a.b.c"), "improper_token", "Token cannot be validated"),
        (bearer("éé.éé.éé"), "improper_token", "Token cannot be validated"),
        (bearer(f"{_segment(['kid'])}.{_segment(claims())}."), "improper_token", "Token cannot be validated"),
        (bearer(token(keys, kid="stranger")), "invalid_header", "Unable to find appropriate key"),
        (bearer(token(keys, kid=None)), "invalid_header", "Unable to find appropriate key"),
        (bearer(token(keys, kid="one", signer="two")), *UNPARSABLE),  # forged: another known key
        (bearer(token(keys, kid="one", signer="stranger")), *UNPARSABLE),  # forged: an unknown key
        (bearer(unsigned()), *UNPARSABLE),
        (bearer(hmac_with_public_key(keys)), *UNPARSABLE),
        (bearer(token(keys)[:-4] + "AAAA"), *UNPARSABLE),  # signature tampered with
        (bearer(token(keys, exp=None)), *UNPARSABLE),  # never expires: refused
        (bearer(token(keys, exp=now - 10)), "token_expired", "Token is expired"),
        (bearer(token(keys, nbf=now + 600)), *BAD_CLAIMS),  # not yet valid
        (bearer(token(keys, aud="https://elsewhere/")), *BAD_CLAIMS),
        (bearer(token(keys, aud=None)), *UNPARSABLE),
        (bearer(token(keys, iss="https://evil/")), *BAD_CLAIMS),
        (bearer(token(keys, scope="openid")), "access_denied", "Access not allowed"),
        (bearer(token(keys, scope=None)), "access_denied", "Access not allowed"),
        # Validly signed, with claims of the wrong type (a numeric string `exp` was a 500 on every route).
        (bearer(signed(keys, {}, odd_claims(exp=str(now + 600)))), *UNPARSABLE),
        (bearer(signed(keys, {}, odd_claims(exp=[now + 600]))), *UNPARSABLE),
        (bearer(signed(keys, {}, odd_claims(iat="yesterday"))), *UNPARSABLE),
        (bearer(signed(keys, {}, odd_claims(aud={"aud": AUDIENCE}))), *BAD_CLAIMS),
        (bearer(signed(keys, {}, b"[1, 2]")), *UNPARSABLE),
        (bearer(signed(keys, {"kid": ["one"]}, odd_claims())), "improper_token", "Token cannot be validated"),
        (bearer(signed(keys, {"kid": 1}, odd_claims())), "improper_token", "Token cannot be validated"),
        (bearer(token(keys, scope="read:aggregates2 write:aggregates")), "access_denied", "Access not allowed"),
    ]


async def test_the_original_error_codes(client, keys):
    for headers, code, description in refused_tokens(keys):
        for path in ("/authed", "/clear-cache", "/aggregates_by/build_id/channels/release/dates/"):
            answer = await client.get(path, headers=headers)
            assert answer.status == 403, (path, code)
            assert await answer.json() == {"code": code, "description": description}
        public = await client.get("/aggregates_by/build_id/channels/", headers=headers)  # as anonymous
        assert public.status == 200 and "release" not in await public.json()
    lower_case = await client.get("/authed", headers={"Authorization": f"bearer  {token(keys)}"})
    assert lower_case.status == 200  # the scheme's case and extra blanks do not matter, as in the original


async def test_a_valid_token_unlocks_release_and_auth_only_metrics(client, keys):
    good = bearer(token(keys))
    authed = await client.get("/authed", headers=good)
    assert (authed.status, await authed.text()) == (200, "Authenticated")
    public = await (await client.get("/aggregates_by/submission_date/channels/")).json()
    private = await (await client.get("/aggregates_by/submission_date/channels/", headers=good)).json()
    assert "release" not in public and "release" in private
    dates = await (await client.get("/aggregates_by/submission_date/channels/release/dates/", headers=good)).json()
    assert dates
    version, day = dates[0]["version"], dates[0]["date"]
    assert (await client.get(f"/filters/?channel=release&version={version}", headers=good)).status == 200
    metric = f"/aggregates_by/submission_date/channels/release/?version={version}&dates={day}&metric=GC_MS"
    assert (await client.get(metric)).status == 403
    answer = await client.get(metric, headers=good)
    assert answer.status == 200
    assert answer.headers["Cache-Control"].startswith("private")
    nightly = await (await client.get("/aggregates_by/submission_date/channels/nightly/dates/")).json()
    events = (
        f"/aggregates_by/submission_date/channels/nightly/?version={nightly[0]['version']}"
        f"&dates={nightly[0]['date']}&metric=SCALARS_TELEMETRY.EVENT_COUNTS"
    )
    assert (await client.get(events)).status == 403
    assert (await client.get(events, headers=good)).status == 200
    listed = f"/filters/?channel=nightly&version={nightly[0]['version']}"
    assert "SCALARS_TELEMETRY.EVENT_COUNTS" not in (await (await client.get(listed)).json())["metric"]
    assert "SCALARS_TELEMETRY.EVENT_COUNTS" in (await (await client.get(listed, headers=good)).json())["metric"]
    cleared = await client.get("/clear-cache", headers=good)
    assert (cleared.status, await cleared.text()) == (200, "Cache Cleared")


AUTH_ONLY = ("SCALARS_TELEMETRY.EVENT_COUNTS", "SCALARS_TELEMETRY.DYNAMIC_EVENT_COUNTS")


async def cache_hits(client) -> float:
    metrics = await (await client.get("/metrics")).text()
    found = re.search(r'^api_cache_lookups_total\{result="hit"\} (\S+)$', metrics, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def test_nothing_private_reaches_an_anonymous_caller_even_from_the_cache(client, keys):
    """On every route the authorised request comes first, twice (the second answered from the response cache),
    then the anonymous one for the same URL: it gets neither release data nor auth-only metrics."""
    good = bearer(token(keys))
    release = await (await client.get("/aggregates_by/build_id/channels/release/dates/", headers=good)).json()
    nightly = await (await client.get("/aggregates_by/build_id/channels/nightly/dates/", headers=good)).json()
    assert release and nightly
    metric = "/aggregates_by/build_id/channels/{}/?version={}&dates={}&metric={}"
    refused = [
        "/aggregates_by/build_id/channels/release/dates/",
        "/aggregates_by/submission_date/channels/release/dates/",
        f"/filters/?channel=release&version={release[0]['version']}",
        metric.format("release", release[0]["version"], release[0]["date"], "GC_MS"),
        metric.format("release", release[0]["version"], release[0]["date"], "GC_MS") + "&os=Linux&stats=true",
        *(metric.format("nightly", nightly[0]["version"], nightly[0]["date"], name) for name in AUTH_ONLY),
    ]
    hits = await cache_hits(client)
    for path in refused:
        for _ in range(2):
            authorised = await client.get(path, headers=good)
            assert authorised.status == 200, path
            assert authorised.headers["Cache-Control"].startswith("private")
        anonymous = await client.get(path)
        assert anonymous.status == 403, path
        assert (await anonymous.json())["code"] == "authorization_header_missing"
    # Listings answer both, differently: the private parts (present for the authorised caller) left out.
    filtered = [
        ("/aggregates_by/build_id/channels/", ["release"]),
        ("/aggregates_by/submission_date/channels/", ["release"]),
        ("/freshness/", ['"release"']),
        (f"/filters/?channel=nightly&version={nightly[0]['version']}", AUTH_ONLY),
    ]
    for path, private in filtered:
        for _ in range(2):
            authorised = await client.get(path, headers=good)
            text = await authorised.text()
            assert all(p in text for p in private), path
        anonymous = await client.get(path)
        assert anonymous.status == 200 and anonymous.headers["Cache-Control"].startswith("public")
        text = await anonymous.text()
        assert not any(p in text for p in private), path
        assert anonymous.headers["ETag"] != authorised.headers["ETag"]
    assert await cache_hits(client) >= hits + len(refused) + len(filtered)  # the cache was in play
    document = await (await client.get("/openapi.json", headers=good)).text()
    assert await (await client.get("/openapi.json")).text() == document  # one document for all
    assert not any(name in document for name in AUTH_ONLY)
    metrics = await (await client.get("/metrics")).text()  # series are labelled by route template, not URL
    assert not any(p in metrics for p in ("release", *AUTH_ONLY))


async def test_tokens_are_not_kept_past_their_expiry(client, keys):
    short = bearer(token(keys, exp=int(time.time()) + 2))
    assert (await client.get("/authed", headers=short)).status == 200
    await asyncio.sleep(2.5)
    answer = await client.get("/authed", headers=short)
    assert (await answer.json())["code"] == "token_expired"


class KeyServer:
    """A JWKS over HTTP that the test breaks and mends: it counts its reads, and the most in progress at once."""

    def __init__(self, document: dict) -> None:
        self.document, self.state, self.delay = document, "up", 0.0
        self.reads = self.in_progress = self.most = 0

    async def jwks(self, request: web.Request) -> web.Response:
        self.reads += 1
        self.in_progress += 1
        self.most = max(self.most, self.in_progress)
        try:
            await asyncio.sleep(self.delay)
            if self.state == "down":
                return web.json_response({"error": "unavailable"}, status=503)
            return web.json_response(self.document)
        finally:
            self.in_progress -= 1


@pytest_asyncio.fixture
async def keyserver(aiohttp_server, keys) -> tuple[KeyServer, str]:
    server = KeyServer(jwks_of(keys, "one", "two"))
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.jwks)
    running = await aiohttp_server(app)
    return server, str(running.make_url("/.well-known/jwks.json"))


async def api_with_keys(aiohttp_client, database_url, url: str, refresh: float = 3600, keep: float = 21600):
    settings = settings_for(database_url, jwks=url, jwks_refresh_seconds=refresh, jwks_keep_seconds=keep)
    return await aiohttp_client(create_app(settings))


def fresh(keys, n: int, kid: str = "one") -> dict[str, str]:
    """A valid token not seen before (its `jti` differs), so that the service checks it rather than remembers it."""
    return bearer(token(keys, kid=kid, jti=f"{n}-{time.monotonic_ns()}"))


async def assert_refused_as_unavailable(answer) -> None:
    assert answer.status == 503
    assert answer.headers["Retry-After"]
    body = await answer.json()
    assert body["code"] == "auth_unavailable" and "signing keys" in body["description"]


async def test_jwks_from_a_url_is_read_once_and_cached(aiohttp_client, database_url, keys, keyserver):
    server, url = keyserver
    client = await api_with_keys(aiohttp_client, database_url, url)
    for n, kid in enumerate(("one", "two", "one")):
        assert (await client.get("/authed", headers=fresh(keys, n, kid))).status == 200
    assert server.reads == 1
    # A key it does not hold, within the minute of a read: refused without reading again.
    for _ in range(5):
        answer = await client.get("/authed", headers=bearer(token(keys, kid="stranger")))
        assert (await answer.json())["code"] == "invalid_header"
    assert server.reads == 1


async def test_one_read_at_a_time_however_many_tokens_wait_for_it(aiohttp_client, database_url, keys, keyserver):
    """A slow JWKS and no keys yet: 40 requests with tokens at once cause one read, which they all wait for."""
    server, url = keyserver
    server.delay = 0.5
    client = await api_with_keys(aiohttp_client, database_url, url)
    answers = await asyncio.gather(*(client.get("/authed", headers=fresh(keys, n)) for n in range(40)))
    assert [a.status for a in answers] == [200] * 40
    assert (server.reads, server.most) == (1, 1)


async def test_a_jwks_outage_is_ridden_out_with_the_keys_held_then_recovered(
    aiohttp_client, database_url, keys, keyserver
):
    """Keys read again every 0.3 s and kept 2 s: the JWKS goes down, then comes back. Timeline, from the last good
    read (t=0): a read fails at about 0.3 s, the next waits the back-off (1 s) and fails, the one after waits 2 s;
    meanwhile the keys held check tokens until t=2, then tokens get a 503 until a read succeeds again."""
    server, url = keyserver
    client = await api_with_keys(aiohttp_client, database_url, url, refresh=0.3, keep=2.0)
    assert (await client.get("/authed", headers=fresh(keys, 0))).status == 200
    read_at = time.monotonic()
    server.state = "down"
    await asyncio.sleep(0.35)
    # Within the keep time: every token checked with the keys held; public routes answer; reads back off.
    n, answered = 0, []
    while time.monotonic() - read_at < 1.8:
        n += 1
        answer = await client.get("/aggregates_by/build_id/channels/", headers=fresh(keys, n))
        answered.append((answer.status, "release" in await answer.json()))
        await asyncio.sleep(0.02)
    assert set(answered) == {(200, True)} and len(answered) > 20
    assert server.reads - 1 <= 2  # at most the two the back-off allows in 1.8 s, for all those tokens
    # A key not held while the JWKS is down: it may be a new one, so 503 (not 403), and no read of its own.
    await assert_refused_as_unavailable(await client.get("/authed", headers=bearer(token(keys, kid="stranger"))))
    # Past the keep time: tokens get a 503 with a JSON body; callers without a token are not affected.
    await asyncio.sleep(max(0.0, read_at + 2.05 - time.monotonic()))
    await assert_refused_as_unavailable(await client.get("/authed", headers=fresh(keys, 1000)))
    anonymous = await client.get("/aggregates_by/build_id/channels/")
    assert anonymous.status == 200 and "release" not in await anonymous.json()
    missing = await client.get("/authed")
    assert (missing.status, (await missing.json())["code"]) == (403, "authorization_header_missing")
    reads_while_down = server.reads - 1
    # The JWKS comes back: the next read the back-off allows (within 4 s) brings tokens back.
    server.state = "up"
    deadline, status = time.monotonic() + 4.5, None
    while time.monotonic() < deadline and status != 200:
        await asyncio.sleep(0.05)
        status = (await client.get("/authed", headers=fresh(keys, 2000))).status
        assert status in (200, 503)
    assert status == 200
    print(
        f"{len(answered)} tokens checked with the keys held; {reads_while_down} reads while down; "
        f"tokens answered again {time.monotonic() - read_at:.2f} s after the last good read"
    )
    assert server.reads - 1 - reads_while_down == 1  # one good read, however many requests waited for it
    assert reads_while_down <= 3  # 0.3 s, then back-offs of 1 s and 2 s: hundreds of requests, three reads
    assert server.most == 1


async def test_a_jwks_never_read_is_a_503_for_tokens_only(aiohttp_client, database_url, keys, keyserver):
    server, url = keyserver
    server.state = "down"
    client = await api_with_keys(aiohttp_client, database_url, url)
    for n in range(10):
        await assert_refused_as_unavailable(await client.get("/authed", headers=fresh(keys, n)))
    assert server.reads == 1  # the others within the back-off
    for path in ("/aggregates_by/build_id/channels/", "/aggregates_by/build_id/channels/nightly/dates/", "/status"):
        assert (await client.get(path)).status == 200, path
