"""The publish ledger's newest id: the version of the data, which keys the cache and makes the ETag.

When it moves, the caches are emptied. With `poll` = 0 it is read on every request. Otherwise requests are
answered with the generation known, and once it is `poll` seconds old one background read refreshes it: a
publish is seen within `poll` seconds plus a query, and no request waits for that read (requests waiting on
it, behind a full pool, made every second's answers stall together).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("server")


class Ledger:
    def __init__(self, poll: float, read: Callable[[], Awaitable[int]], on_change: list[Callable[[], None]]) -> None:
        self.poll = poll
        self._read = read
        self._on_change = on_change  # called when the generation moves: caches to empty
        self._generation: int | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task | None = None

    def _fresh(self) -> bool:
        return self._generation is not None and time.monotonic() - self._read_at < self.poll

    async def generation(self) -> int:
        if self._generation is None or self.poll <= 0:
            return await self._refresh()
        if not self._fresh() and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh_quietly())
        return self._generation

    async def _refresh(self) -> int:
        """Read the generation (one caller at a time) unless another caller just did."""
        async with self._lock:
            if not self._fresh():
                started = time.monotonic()
                generation = await self._read()
                if generation != self._generation:
                    for forget in self._on_change:
                        forget()
                self._generation, self._read_at = generation, started
        return self._generation

    async def close(self) -> None:
        """Stop a background read still running (at shutdown, before the pool closes)."""
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)

    async def _refresh_quietly(self) -> None:
        """A background refresh: when the database cannot answer, the requests' own queries say so."""
        try:
            await self._refresh()
        except Exception as failure:
            log.debug("publish ledger not read: %r", failure)
