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
from cryptography.hazmat.primitives.asymmetric import rsa
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


def _segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


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


async def test_jwks_from_a_url_is_cached_and_its_outage_is_a_503(aiohttp_client, aiohttp_server, database_url, keys):
    fetched = []

    async def jwks(request: web.Request) -> web.Response:
        fetched.append(time.monotonic())
        return web.json_response(jwks_of(keys, "one", "two"))

    keyserver = web.Application()
    keyserver.router.add_get("/.well-known/jwks.json", jwks)
    server = await aiohttp_server(keyserver)
    client = await aiohttp_client(
        create_app(settings_for(database_url, jwks=str(server.make_url("/.well-known/jwks.json"))))
    )
    for kid in ("one", "two", "one"):
        assert (await client.get("/authed", headers=bearer(token(keys, kid=kid)))).status == 200
    assert len(fetched) == 1
    down = await aiohttp_client(create_app(settings_for(database_url, jwks="http://127.0.0.1:9/jwks.json")))
    answer = await down.get("/authed", headers=bearer(token(keys)))
    assert answer.status == 503
    assert (await answer.json())["code"] == "auth_unavailable"
