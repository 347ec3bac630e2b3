"""The load generator of the benchmarks: concurrent loops of calls, and a lean HTTP/1.1 client for them.

The load shares the machine's cores with the service and Postgres, so it must cost as little as it can: one
kept-alive connection per client, a request written as one buffer, the answer read by its Content-Length
(as `wrk` does), about a fifth of the CPU of a full client library per request.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

GET = "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\nUser-Agent: bench\r\n\r\n"


class HttpConnection:
    """One kept-alive connection; `get` answers (status, body). Bodies are gzip bytes when the server chose so."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(GET.format(path=path, host=self.host).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                self.close()
        body = await reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class HttpClient:
    """Kept-alive connections to one server, each used by one request at a time (as a browser's pool)."""

    def __init__(self, base: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        self._idle: list[HttpConnection] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else HttpConnection(self.host, self.port)
        try:
            answer = await connection.get(path)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


async def run_load(call: Callable[[], Awaitable[None]], clients: int, requests: int) -> tuple[list[float], float]:
    """`requests` calls spread over `clients` concurrent loops; each call's latency, and the wall time."""
    latencies: list[float] = []
    remaining = requests

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], wall: float) -> tuple[float, float, float]:
    """p50 and p99 in ms, and calls per second."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered) / wall
