"""Bearer tokens: RS256 JWTs signed by a key of the configured JWKS, with the original's 403 error codes.

The keys come from server/jwks.py (read once at a time, kept through outages). Whatever a token holds, its
problems are a 403 with a JSON body, never a 5xx: odd claim types (an `exp` that is a string, a number too large
for a float) included. Validated tokens are remembered for 15 minutes as the original did, but never past their
own expiry.
"""

import time
from collections import OrderedDict

import jwt

from server.errors import Unavailable
from server.jwks import KeysUnavailable, SigningKeys

SCOPE = "read:aggregates"
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


UNPARSABLE = ("invalid_header", "Unable to parse authentication token.")
NO_KEY = ("invalid_header", "Unable to find appropriate key")


class Authenticator:
    def __init__(self, keys: SigningKeys, audience: str, issuer: str) -> None:
        self.keys, self.audience, self.issuer = keys, audience, issuer
        self._tokens: OrderedDict[str, float] = OrderedDict()  # token -> monotonic time it stops being valid

    async def close(self) -> None:
        await self.keys.close()

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
        if not isinstance(kid, str):
            raise AuthError(*NO_KEY)
        try:
            key = await self.keys.key(kid)
        except KeysUnavailable as failure:
            raise Unavailable("auth_unavailable", str(failure)) from failure
        if key is None:
            raise AuthError(*NO_KEY)
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
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError) as failure:  # odd claim types included
            raise AuthError(*UNPARSABLE) from failure
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int | float):  # "exp": "1767225600"
            raise AuthError(*UNPARSABLE)
        if SCOPE not in str(claims.get("scope", "")).split():
            raise AuthError("access_denied", "Access not allowed")
        wall = time.time()  # compared before subtracting: an int exp too large for a float cannot overflow
        self._tokens[token] = now + (TOKEN_TTL if expires > wall + TOKEN_TTL else expires - wall)
        while len(self._tokens) > TOKENS_KEPT:
            self._tokens.popitem(last=False)

    async def is_authed(self, header: str | None) -> bool:
        try:
            await self.check(header)
        except AuthError:
            return False
        return True
