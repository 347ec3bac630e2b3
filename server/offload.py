"""Large answers are read within a budget of bucket counts, then summed and encoded on worker threads; small
ones inline, on the event loop.

Summing a few million bucket counts and encoding them as JSON and gzip takes seconds of CPU; on the event loop
that stalled every other client (5.8 s, past the liveness probe's 2 s). On threads, but all at once, twenty
answers of 60 MB each held the database pool (a small answer waited 5 s for a connection), took 1.8 GiB of
memory (3.5 times the chart's limit), and, each encoded in one orjson call, held the GIL for 110 ms at a time.
Within a budget, what the large answers hold at once is bounded (their rows and sums: about 20 bytes per bucket
count), an answer past it waits before its rows are read (so the pool keeps connections for small requests),
and the loop shares the GIL with threads whose every step is short (server/histograms.py, server/stream.py).
Small answers stay inline: a thread hop costs more than they do.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

T = TypeVar("T")


class Budget:
    """`units` that holders take any number of at a time, and `places` for that many holders at once, granted
    first come, first served: a holder never waits behind one that asked later, however small. Asking for more
    than `units` takes all of them."""

    def __init__(self, units: int, places: int) -> None:
        self.units = units
        self.free = units
        self.places = places
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def hold(self, units: int) -> AsyncIterator[None]:
        units = min(units, self.units)
        if self._waiting or units > self.free or not self.places:
            granted = asyncio.get_running_loop().create_future()
            self._waiting.append((units, granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.cancelled():
                    with suppress(ValueError):  # unless _grant passed it over already
                        self._waiting.remove((units, granted))
                else:  # granted as it was cancelled
                    self._give_back(units)
                self._grant()
                raise
        else:
            self.free -= units
            self.places -= 1
        try:
            yield
        finally:
            self._give_back(units)
            self._grant()

    def _give_back(self, units: int) -> None:
        self.free += units
        self.places += 1

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free and self.places:
            units, granted = self._waiting.popleft()
            if not granted.done():  # a cancelled waiter is passed over
                self.free -= units
                self.places -= 1
                granted.set_result(None)


class Offloader:
    """Answers whose rows hold more than `inline_cells` bucket counts are large: read within a budget of
    `budget_cells`, summed and encoded on one of `threads` threads, as many at once as there are threads (each
    keeps one busy: more would hold their memory and a connection to wait for a thread)."""

    def __init__(self, threads: int, inline_cells: int, budget_cells: int) -> None:
        self.inline_cells = inline_cells
        self.budget = Budget(budget_cells, places=threads)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="answer")

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
