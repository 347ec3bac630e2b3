"""A response cache bounded in bytes, emptied whenever a new publish is seen (server/ledger.py).

The original kept responses 24 hours whatever happened to the data; here an entry lives until the LRU bound
pushes it out or the publish ledger moves on (server/ledger.py), so new data is served as soon as it is seen.
Entries hold the JSON bytes and their gzip encoding, both made once, so a hit costs no serialisation.

The bound is on bytes, not entries: an entry count let one caller fill the memory with large answers (a
thousand answers of hundreds of dates, each varied by one date without data, took the API from 165 to 622 MiB).
Each entry is charged its two encodings, its key's text and a fixed overhead; an answer larger than a quarter
of the bound is served but not kept, so that one answer never empties the cache.
"""

from collections import OrderedDict
from collections.abc import Hashable

from server.encoding import gzip

GZIP_MIN_BYTES = 1024  # below this gzip saves less than its own header and the CPU is wasted
ENTRY_OVERHEAD = 512  # bytes: the entry's Python objects (dict slot, Body, key tuple) beyond what is counted
LARGEST_SHARE = 4  # an entry may take at most 1/4 of the cache


class Body:
    """An answer's JSON bytes and, when worth it, their gzip encoding, made once (browsers ask for it): here, or
    as a streamed answer was sent (server/stream.py)."""

    __slots__ = ("gzipped", "raw")

    def __init__(self, raw: bytes, gzipped: bytes | None = None) -> None:
        self.raw = raw
        self.gzipped = gzip(raw) if gzipped is None and len(raw) >= GZIP_MIN_BYTES else gzipped

    def __len__(self) -> int:
        return len(self.raw) + len(self.gzipped or b"")


def charge(key: Hashable, body: Body) -> int:
    """The bytes an entry is counted for: a key holds the request's parameters (up to hundreds of dates)."""
    return len(body) + len(repr(key)) + ENTRY_OVERHEAD


class ResponseCache:
    """Least recently used entries go first once the charged bytes pass `max_bytes` (0: nothing is kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, tuple[Body, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def largest(self, key: Hashable) -> int:
        """The most bytes of encodings an entry under `key` may hold."""
        return max(0, self.max_bytes // LARGEST_SHARE - charge(key, Body(b"")))

    def get(self, key: Hashable) -> Body | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, body: Body) -> None:
        size = charge(key, body)
        if size * LARGEST_SHARE > self.max_bytes:
            return
        self._drop(key)
        self._items[key] = (body, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
