"""The large answers' machinery alone: the budget they are read within (its order, an answer larger than it,
waiters that give up), and the pieces they are sent in, which join into the bytes of the whole answer."""

import asyncio
import gzip
import itertools

import numpy as np
import pytest

from server.cache import Body
from server.encoding import dumps
from server.offload import Budget
from server.stream import Encoder, json_pieces

HEAD = {"buckets": [0, 1, 2], "kind": "linear", "description": "é"}


async def holding(budget: Budget, units: int, order: list, release: asyncio.Event) -> None:
    async with budget.hold(units):
        order.append(units)
        await release.wait()


async def entered(budget: Budget, units: int):
    """A hold of `units` taken here, not in a task of its own; `__aexit__` releases it."""
    hold = budget.hold(units)
    await hold.__aenter__()
    return hold


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_the_budget_is_first_come_first_served():
    budget, order, release = Budget(10, places=3), [], asyncio.Event()
    first = asyncio.create_task(holding(budget, 6, order, release))
    await settle()
    # 5 must wait for the 6 to finish; the 1 asked later waits behind it though it would fit.
    later = [asyncio.create_task(holding(budget, units, order, release)) for units in (5, 1)]
    await settle()
    assert order == [6] and budget.free == 4
    release.set()
    await asyncio.gather(first, *later)
    assert order == [6, 5, 1] and (budget.free, budget.places) == (10, 3)


@pytest.mark.asyncio
async def test_the_budget_has_room_for_so_many_holders():
    budget, order, release = Budget(10, places=2), [], asyncio.Event()
    held = [asyncio.create_task(holding(budget, 1, order, release)) for _ in range(3)]
    await settle()
    assert order == [1, 1] and budget.free == 8
    release.set()
    await asyncio.gather(*held)
    assert order == [1, 1, 1] and (budget.free, budget.places) == (10, 2)


@pytest.mark.asyncio
async def test_more_than_the_budget_takes_all_of_it():
    budget, order, release = Budget(10, places=3), [], asyncio.Event()
    release.set()
    await holding(budget, 25, order, release)
    assert order == [25] and (budget.free, budget.places) == (10, 3)


@pytest.mark.asyncio
async def test_a_waiter_that_gives_up_passes_its_turn_on():
    budget, order, release = Budget(10, places=3), [], asyncio.Event()
    first = asyncio.create_task(holding(budget, 8, order, release))
    await settle()
    quitter = asyncio.create_task(holding(budget, 9, order, release))
    behind = asyncio.create_task(holding(budget, 2, order, release))
    await settle()
    quitter.cancel()
    await settle()
    assert order == [8, 2]  # the 2 no longer waits behind the 9 that left
    release.set()
    await asyncio.gather(first, behind)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert (budget.free, budget.places) == (10, 3)


@pytest.mark.asyncio
async def test_a_waiter_cancelled_as_units_free_up_is_passed_over():
    budget, order, release = Budget(10, places=3), [], asyncio.Event()
    release.set()
    first = await entered(budget, 8)
    quitter = asyncio.create_task(holding(budget, 9, order, release))
    behind = asyncio.create_task(holding(budget, 2, order, release))
    await settle()
    quitter.cancel()  # still queued when ...
    await first.__aexit__(None, None, None)  # ... the units free up
    await behind
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert order == [2] and (budget.free, budget.places) == (10, 3)


@pytest.mark.asyncio
async def test_a_waiter_cancelled_as_it_is_granted_gives_its_units_back():
    budget, order, release = Budget(10, places=3), [], asyncio.Event()
    release.set()
    first = await entered(budget, 10)
    waiter = asyncio.create_task(holding(budget, 10, order, release))
    await settle()
    await first.__aexit__(None, None, None)  # grants the waiter, which has not run yet ...
    waiter.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert order == [] and (budget.free, budget.places) == (10, 3)


def entries(n: int) -> list[dict]:
    rng = np.random.default_rng(n)
    return [{"date": "20261101", "label": f"l{i}", "histogram": rng.integers(0, 10**12, 7)} for i in range(n)]


@pytest.mark.parametrize(("items", "per_piece"), [(0, 1), (1, 1), (5, 1), (5, 2), (5, 5), (5, 9), (300, 7)])
def test_pieces_join_into_the_whole_answer(items, per_piece):
    data = entries(items)
    pieces = list(json_pieces(HEAD, "data", iter(data), per_piece))
    assert b"".join(pieces) == dumps(HEAD | {"data": data})
    assert len(pieces) == 2 + -(-items // per_piece)


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_encoder_sends_the_whole_answers_bytes_and_keeps_them_when_they_fit(gzipped):
    data = entries(300)
    whole = Body(dumps(HEAD | {"data": data}))

    def run(keep: int) -> tuple[bytes, Body | None]:
        encoder = Encoder(json_pieces(HEAD, "data", iter(data), 10), gzipped, keep)
        sent = b"".join(encoder.step() for _ in itertools.takewhile(lambda _: not encoder.done, itertools.count()))
        return sent, encoder.body()

    sent, kept = run(keep=len(whole))
    assert sent == (whole.gzipped if gzipped else whole.raw)
    assert kept is not None and (kept.raw, kept.gzipped) == (whole.raw, whole.gzipped)
    assert gzip.decompress(kept.gzipped) == kept.raw
    sent, kept = run(keep=len(whole) - 1)
    assert sent == (whole.gzipped if gzipped else whole.raw) and kept is None
