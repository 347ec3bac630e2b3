"""Bearer tokens: RS256 JWTs checked against a JWKS (file or URL) with the original's 403 codes, and what
authentication unlocks (release data, auth-only metrics, /authed, /clear-cache)."""

import asyncio
import json
import time

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
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


def token(keys, kid: str | None = "one", signer: str = "one", **claims) -> str:
    now = int(time.time())
    body = {"aud": AUDIENCE, "iss": ISSUER, "exp": now + 600, "iat": now, "scope": "openid read:aggregates"}
    body |= claims
    signer = kid if kid in keys and signer == "one" else signer
    return jwt.encode(body, keys[signer], "RS256", {"kid": kid} if kid else {})


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


async def test_the_original_error_codes(client, keys):
    cases = [
        ({}, "authorization_header_missing", "Authorization header is expected"),
        ({"Authorization": "   "}, "authorization_header_missing", "Authorization header is expected"),
        ({"Authorization": "Basic abc"}, "invalid_header", "Authorization header must start with Bearer"),
        ({"Authorization": "Bearer"}, "invalid_header", "Token not found"),
        ({"Authorization": "Bearer a b"}, "invalid_header", "Authorization header must be Bearer token"),
        (bearer("not-a-jwt"), "improper_token", "Token cannot be validated"),
        (bearer(token(keys, kid="stranger")), "invalid_header", "Unable to find appropriate key"),
        (bearer(token(keys, kid=None)), "invalid_header", "Unable to find appropriate key"),
        (bearer(token(keys, exp=int(time.time()) - 10)), "token_expired", "Token is expired"),
        (
            bearer(token(keys, aud="https://elsewhere/")),
            "invalid_claims",
            "Incorrect claims,please check the audience and issuer",
        ),
        (
            bearer(token(keys, iss="https://evil/")),
            "invalid_claims",
            "Incorrect claims,please check the audience and issuer",
        ),
        (bearer(token(keys, kid="one", signer="two")), "invalid_header", "Unable to parse authentication token."),
        (bearer(token(keys, scope="openid")), "access_denied", "Access not allowed"),
    ]
    for headers, code, description in cases:
        answer = await client.get("/authed", headers=headers)
        assert answer.status == 403, code
        assert await answer.json() == {"code": code, "description": description}
        assert (await client.get("/clear-cache", headers=headers)).status == 403


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
