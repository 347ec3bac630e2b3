"""The publish ledger's refresh policy (server/ledger.py), on a read whose answers and delays the test sets."""

import asyncio

import pytest

from server.ledger import Ledger

pytestmark = pytest.mark.asyncio


class Reads:
    """A generation read that returns `value` (or raises `failure`), counts its calls, and waits for `gate`
    when it is closed."""

    def __init__(self, value: int) -> None:
        self.value, self.calls = value, 0
        self.failure: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.failure:
            raise self.failure
        return self.value


async def test_poll_zero_reads_on_every_request():
    reads, forgotten = Reads(1), []
    ledger = Ledger(0, reads, [lambda: forgotten.append(True)])
    assert [await ledger.generation() for _ in range(3)] == [1, 1, 1]
    assert reads.calls == 3
    reads.value = 2
    assert await ledger.generation() == 2
    assert len(forgotten) == 2  # the first read, then the move to 2


async def test_a_stale_generation_is_served_while_one_background_read_refreshes_it():
    reads, forgotten = Reads(1), []
    ledger = Ledger(0.05, reads, [lambda: forgotten.append(True)])
    assert await ledger.generation() == 1  # nothing known yet: the first request waits for the read
    assert await ledger.generation() == 1 and reads.calls == 1  # fresh: no read
    await asyncio.sleep(0.06)
    reads.value, reads.gate = 2, asyncio.Event()  # a publish, and a read that now hangs
    answers = [await asyncio.wait_for(ledger.generation(), 1) for _ in range(5)]
    assert answers == [1] * 5  # served at once with what is known ...
    await asyncio.sleep(0)
    assert reads.calls == 2  # ... while exactly one read runs
    reads.gate.set()
    await asyncio.sleep(0.01)
    assert await ledger.generation() == 2 and len(forgotten) == 2
    await ledger.close()


async def test_a_failing_background_read_keeps_the_known_generation():
    reads = Reads(7)
    ledger = Ledger(0.01, reads, [])
    assert await ledger.generation() == 7
    reads.value, reads.failure = 8, ConnectionRefusedError("database down")
    await asyncio.sleep(0.02)
    assert await ledger.generation() == 7
    await asyncio.sleep(0.01)  # the background read fails quietly
    assert await ledger.generation() == 7 and reads.calls >= 2
    reads.failure = None
    await asyncio.sleep(0.02)
    await ledger.generation()
    await asyncio.sleep(0.01)
    assert await ledger.generation() == 8  # and the next one, once the database answers, moves on
    await ledger.close()
