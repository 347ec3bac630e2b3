"""The publish ledger's newest id: the version of the data, which keys the cache and makes the ETag.

When it moves, the caches are emptied. Read at most every `poll` seconds (0: on every request), by one
caller at a time, so a burst of requests costs one tiny query, and a publish is seen within `poll` seconds.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable


class Ledger:
    def __init__(self, poll: float, read: Callable[[], Awaitable[int]], on_change: list[Callable[[], None]]) -> None:
        self.poll = poll
        self._read = read
        self._on_change = on_change  # called when the generation moves: caches to empty
        self._generation: int | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._generation is not None and time.monotonic() - self._read_at < self.poll

    async def generation(self) -> int:
        if self._fresh():
            return self._generation
        async with self._lock:
            if not self._fresh():
                started = time.monotonic()
                generation = await self._read()
                if generation != self._generation:
                    for forget in self._on_change:
                        forget()
                self._generation, self._read_at = generation, started
        return self._generation
