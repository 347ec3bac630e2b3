"""The keys that sign bearer tokens: the JWKS (a file or a URL), read one read at a time and kept through outages.

A JWKS that cannot be read must not become a read per request, nor refuse tokens that the keys already held can
check. So one read runs at a time, and whoever needs its result waits for that one; after a failed read the next
waits a back-off (1 s, doubling, at most a minute); and the keys of the last good read stay in use for
`AUTH_JWKS_KEEP_SECONDS`. Past that, a key withdrawn from the JWKS (revoked) could still be accepted, so tokens
are answered 503 until the JWKS reads again. The rules are pure functions of a `KeyState` and the time.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import jwt
import orjson

log = logging.getLogger("server.jwks")

UNKNOWN_KID_RETRY = 60.0  # a token naming a key not held reads the JWKS again at most this often
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
READ_TIMEOUT = 5.0


class Unreadable(Exception):
    """The JWKS could not be read, or is not a JWKS."""


@dataclass(frozen=True)
class KeyState:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    read_at: float = -math.inf  # monotonic time of the last good read
    tried_at: float = -math.inf  # of the last read, good or not
    failures: int = 0  # failed reads since the last good one
    error: str = "not read yet"


def backoff(failures: int) -> float:
    """Seconds between a failed read and the next one, after `failures` failures in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)) if failures else 0.0


def due(state: KeyState, kid: str, now: float, refresh: float) -> bool:
    """Whether a read should start now, for a token naming `kid`."""
    if now < state.tried_at + backoff(state.failures):
        return False
    if now - state.read_at > refresh:
        return True
    return kid not in state.keys and (state.failures > 0 or now - state.tried_at > UNKNOWN_KID_RETRY)


def usable(state: KeyState, now: float, keep: float) -> bool:
    return now - state.read_at <= keep


class KeysUnavailable(Exception):
    """No key can be trusted now: the JWKS could not be read and what was last read is too old or lacks the key."""


def choose(state: KeyState, kid: str, now: float, keep: float) -> jwt.PyJWK | None:
    """The key named `kid`; None when a good read of the JWKS lacks it; KeysUnavailable when that is not known."""
    if not usable(state, now, keep):
        raise KeysUnavailable(f"Cannot read the signing keys: {state.error}")
    if kid in state.keys:
        return state.keys[kid]
    if state.failures:  # the key may be a new one the failed read would have brought
        raise KeysUnavailable(f"Cannot read the signing keys: {state.error}")
    return None


def parse(document: object) -> dict[str, jwt.PyJWK]:
    """The RS256 keys of a JWKS document, by key id."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise Unreadable("not a JWKS (no list of keys)")
    keys = {}
    for entry in entries:
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
        except (KeyError, TypeError, jwt.PyJWTError):
            continue  # keys of other types or uses are not ours to check
    return keys


class SigningKeys:
    def __init__(self, source: str | None, refresh: float, keep: float) -> None:
        self.source, self.refresh, self.keep = source, refresh, keep
        self.state = KeyState()
        self._reading: asyncio.Task | None = None  # the read in progress, shared by everyone waiting for it
        self._session: aiohttp.ClientSession | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key a token names (see `choose`). Waits for a read only when the keys held cannot answer."""
        now = time.monotonic()
        if self._reading is None and due(self.state, kid, now, self.refresh):
            self._reading = asyncio.create_task(self._read())
        if self._reading is not None and not (usable(self.state, now, self.keep) and kid in self.state.keys):
            await asyncio.shield(self._reading)  # a caller that goes away does not cancel it for the others
        return choose(self.state, kid, time.monotonic(), self.keep)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._session is not None:
            await self._session.close()

    async def _read(self) -> None:
        try:
            keys = parse(await self._document())
        except Unreadable as failure:
            failures = self.state.failures + 1
            self.state = replace(self.state, tried_at=time.monotonic(), failures=failures, error=str(failure))
            kept = max(0.0, self.keep - (time.monotonic() - self.state.read_at))
            log.warning(
                "JWKS %s unreadable (%d in a row; next read in %.0f s; the keys held serve %.0f s more): %s",
                self.source,
                failures,
                backoff(failures),
                kept,
                failure,
            )
        else:
            now = time.monotonic()
            self.state = KeyState(keys, read_at=now, tried_at=now)
        finally:
            self._reading = None

    async def _document(self) -> object:
        if not self.source:
            return {"keys": []}
        try:
            if not self.source.startswith(("http://", "https://")):
                return orjson.loads(Path(self.source).read_bytes())
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT))
            async with self._session.get(self.source) as response:
                response.raise_for_status()
                return orjson.loads(await response.read())
        except (OSError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError) as failure:
            raise Unreadable(str(failure) or type(failure).__name__) from failure
