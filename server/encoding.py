"""How answers are encoded, whole (server/cache.py's Body) or in pieces (server/stream.py): JSON by orjson, and
gzip at level 1 for clients that take it."""

import zlib

import orjson
from aiohttp import hdrs, web

JSON = "application/json"
GZIP_LEVEL = 1  # 3x faster than 6, nearly as small
GZIP_WBITS = 31  # zlib's gzip framing, mtime 0: the bytes of gzip.compress(raw, GZIP_LEVEL, mtime=0)


def dumps(payload: object) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def gzip(raw: bytes) -> bytes:
    return zlib.compress(raw, GZIP_LEVEL, GZIP_WBITS)


def gzip_stream() -> "zlib._Compress":
    """A compressor whose output, fed the pieces of `raw` in turn and flushed, is `gzip(raw)`."""
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)


def takes_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "")
