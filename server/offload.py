"""Large answers are summed and encoded on worker threads, small ones on the event loop.

Summing a few million bucket counts and encoding them as JSON and gzip takes seconds of CPU; on the event loop
that stalled every other client (5.8 s, past the liveness probe's 2 s). numpy, orjson and zlib release the GIL
for much of that work, and the interpreter hands the GIL back to the loop every few milliseconds for the rest,
so small requests keep being answered. Small answers stay inline: a thread hop costs more than they do.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Offloader:
    """Runs `work` inline when its size is under `min_cells`, else on one of `threads` threads."""

    def __init__(self, threads: int, min_cells: int) -> None:
        self.min_cells = min_cells
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="answer")

    async def run(self, cells: int, work: Callable[[], T]) -> T:
        if cells < self.min_cells:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
