"""A large answer is sent in pieces as it is encoded (HTTP/1.1 chunked), a piece at a time on its worker thread.

Encoding a 60 MB answer whole held the GIL for 110 ms in one orjson call, and it and its gzip encoding (90 MB)
stayed in memory until the client had read them. In pieces, each step holds the GIL for about a millisecond
(zlib releases it while compressing), and what an answer holds beyond its sums is one piece: the client's
reading paces the encoding. The pieces joined are the bytes the answer had when encoded whole: its JSON, and
its gzip encoding (zlib's output does not depend on how its input is split).
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from aiohttp import hdrs, web

from server.cache import Body
from server.encoding import JSON, dumps, gzip_stream, takes_gzip

T = TypeVar("T")
PIECE_CELLS = 2**16  # bucket counts encoded per piece: about a millisecond of orjson, 640 KB of nine-digit counts


def json_pieces(head: dict, key: str, items: Iterator[object], per_piece: int) -> Iterator[bytes]:
    """`dumps(head | {key: list(items)})` in pieces of `per_piece` items. orjson writes a dict's keys in their
    order and no whitespace, so the object with an empty list at its last key ends `[]}`: the items go between."""
    yield dumps(head | {key: []})[:-2]
    separator = b""
    while batch := list(islice(items, per_piece)):
        yield separator + dumps(batch)[1:-1]
        separator = b","
    yield b"]}"


class Encoder:
    """The bytes to send of an answer's JSON pieces, gzipped when the client takes gzip; both encodings are kept
    for the response cache while they hold at most `keep` bytes."""

    def __init__(self, pieces: Iterator[bytes], gzipped: bool, keep: int) -> None:
        self._pieces = pieces
        self._gzipped = gzipped
        self._zip = gzip_stream()
        self._kept: tuple[list[bytes], list[bytes]] | None = ([], []) if keep > 0 else None
        self._room = keep
        self.done = False

    def step(self) -> bytes:
        """The next bytes to send: maybe none (zlib holds back what it has not yet compressed)."""
        raw = next(self._pieces, None)
        zipping = self._gzipped or self._kept is not None
        if raw is None:
            self.done, raw = True, b""
            zipped = self._zip.flush() if zipping else b""
        else:
            zipped = self._zip.compress(raw) if zipping else b""
        if self._kept is not None:
            self._room -= len(raw) + len(zipped)
            if self._room >= 0:
                self._kept[0].append(raw)
                self._kept[1].append(zipped)
            else:
                self._kept = None
        return zipped if self._gzipped else raw

    def body(self) -> Body | None:
        """Both encodings of the whole answer, if they were kept."""
        if not self.done or self._kept is None:
            return None
        return Body(b"".join(self._kept[0]), b"".join(self._kept[1]))


@dataclass(frozen=True)
class Streamed:
    """A large answer: its JSON in `pieces`, made one at a time by `run` (on the answer's worker thread)."""

    pieces: Iterator[bytes]
    run: Callable[[Callable[[], bytes]], Awaitable[bytes]]


async def send(
    request: web.Request, answer: Streamed, headers: dict[str, str], keep: int, timeout: float
) -> tuple[web.StreamResponse, Body | None]:
    """Answer in pieces, each written once the client has taken most of the one before; the response, and the
    answer's Body if it was kept whole (at most `keep` bytes). A client that goes away ends the encoding, and
    one that takes no piece within `timeout` seconds is disconnected: it would hold the answer's memory and its
    share of the budget (server/offload.py) for as long as it liked."""
    gzipped = takes_gzip(request)
    response = web.StreamResponse(headers=headers | ({hdrs.CONTENT_ENCODING: "gzip"} if gzipped else {}))
    response.content_type = JSON
    encoder = Encoder(answer.pieces, gzipped, keep)
    try:
        await response.prepare(request)
        if request.method == hdrs.METH_HEAD:
            return response, None
        while not encoder.done:
            data = await answer.run(encoder.step)
            if data:
                async with asyncio.timeout(timeout):
                    await response.write(data)
    except ConnectionError:  # the client went away: aiohttp logs the request as such
        return response, None
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        return response, None
    return response, encoder.body()
