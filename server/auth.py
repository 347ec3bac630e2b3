"""Bearer tokens: RS256 JWTs signed by a key of the configured JWKS, with the original's 403 error codes.

The JWKS (a file or a URL) is cached and re-read when a token names a key it lacks, at most once a minute.
Validated tokens are remembered for 15 minutes as the original did, but never past their own expiry.
"""

import time
from collections import OrderedDict
from pathlib import Path

import aiohttp
import jwt
import orjson

from server.errors import Unavailable

SCOPE = "read:aggregates"
JWKS_TTL = 3600.0
JWKS_RETRY = 60.0
TOKEN_TTL = 900.0
TOKENS_KEPT = 1000


class AuthError(Exception):
    """A caller that is not authenticated: a 403 with the original's `code` and `description`."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, checked as the original did."""
    parts = (header or "").split()
    if not parts:
        raise AuthError("authorization_header_missing", "Authorization header is expected")
    if parts[0].lower() != "bearer":
        raise AuthError("invalid_header", "Authorization header must start with Bearer")
    if len(parts) == 1:
        raise AuthError("invalid_header", "Token not found")
    if len(parts) > 2:
        raise AuthError("invalid_header", "Authorization header must be Bearer token")
    if not parts[1].isascii():  # a JWT is base64url; other bytes arrive as surrogates that no decoder takes
        raise AuthError("improper_token", "Token cannot be validated")
    return parts[1]


class Authenticator:
    def __init__(self, jwks: str | None, audience: str, issuer: str) -> None:
        self.jwks, self.audience, self.issuer = jwks, audience, issuer
        self._keys: dict[str, jwt.PyJWK] = {}
        self._read_at = -float("inf")
        self._tokens: OrderedDict[str, float] = OrderedDict()  # token -> monotonic time it stops being valid
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def check(self, header: str | None) -> None:
        """Return if the header carries a valid token with the read scope, else raise AuthError."""
        token = bearer_token(header)
        now = time.monotonic()
        if self._tokens.get(token, -1.0) > now:
            self._tokens.move_to_end(token)
            return
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as failure:
            raise AuthError("improper_token", "Token cannot be validated") from failure
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as failure:
            raise AuthError("token_expired", "Token is expired") from failure
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError, jwt.ImmatureSignatureError) as failure:
            # the original's JWT library reported a token not yet valid (nbf) as a claims error too
            raise AuthError("invalid_claims", "Incorrect claims,please check the audience and issuer") from failure
        except jwt.PyJWTError as failure:
            raise AuthError("invalid_header", "Unable to parse authentication token.") from failure
        if SCOPE not in str(claims.get("scope", "")).split():
            raise AuthError("access_denied", "Access not allowed")
        self._tokens[token] = min(now + TOKEN_TTL, now + claims["exp"] - time.time())
        while len(self._tokens) > TOKENS_KEPT:
            self._tokens.popitem(last=False)

    async def is_authed(self, header: str | None) -> bool:
        try:
            await self.check(header)
        except AuthError:
            return False
        return True

    async def _key(self, kid: object) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._read_at > JWKS_TTL
        if stale or (kid not in self._keys and now - self._read_at > JWKS_RETRY):
            self._keys = await self._read_jwks()
            self._read_at = now
        if not isinstance(kid, str) or kid not in self._keys:
            raise AuthError("invalid_header", "Unable to find appropriate key")
        return self._keys[kid]

    async def _read_jwks(self) -> dict[str, jwt.PyJWK]:
        if not self.jwks:
            return {}
        try:
            if self.jwks.startswith(("http://", "https://")):
                if self._session is None:
                    self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
                async with self._session.get(self.jwks) as response:
                    response.raise_for_status()
                    document = orjson.loads(await response.read())
            else:
                document = orjson.loads(Path(self.jwks).read_bytes())
        except (OSError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError) as failure:
            raise Unavailable("auth_unavailable", f"Cannot read the signing keys: {failure}") from failure
        keys = {}
        for entry in document.get("keys", []):
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
            except (KeyError, jwt.PyJWTError):
                continue  # keys of other types or uses are not ours to check
        return keys
