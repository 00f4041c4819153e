"""The generator's HTTP clients: aiohttp (default) and a raw keep-alive asyncio client.

Why two: aiohttp is the well-known client and what a reader would reach for; the raw client (one
asyncio Protocol per connection, requests written as prebuilt bytes, responses parsed by
httptools' C parser) spends a fraction of the CPU per request. On a 2-core machine where the
generator competes with the server, that difference decides whether the benchmark measures the
broker or the generator, so `--client` selects one and the generator's CPU is always reported.
Both send each request on one connection and wait for its response (no pipelining), and both
answer a status code or raise `ClientError`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import httptools

CLIENTS = ("aiohttp", "raw")


class ClientError(Exception):
    """The request did not produce an HTTP response (refused, reset, timeout, bad response)."""


class Client(Protocol):
    async def post(self, slot: int, headers: list[tuple[str, str]], body: bytes) -> int: ...

    async def warm(self) -> None: ...

    async def close(self) -> None: ...


class AiohttpClient:
    """aiohttp ClientSession with a keep-alive pool as large as the concurrency."""

    def __init__(self, url: str, concurrency: int, timeout: float) -> None:
        self._url = url
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def post(self, slot: int, headers: list[tuple[str, str]], body: bytes) -> int:
        try:
            async with self._session.post(self._url, data=body, headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ClientError(str(exc) or type(exc).__name__) from exc

    async def warm(self) -> None:
        return None  # aiohttp opens connections lazily; the first step pays for them

    async def close(self) -> None:
        await self._session.close()


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ClientError(f"bad response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())
        if not self._parser.should_keep_alive() and self.transport is not None:
            self.open = False
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(ClientError(f"connection lost: {exc}"))

    def _fail(self, exc: ClientError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


class RawClient:
    """Prebuilt request bytes over one connection per concurrency slot."""

    def __init__(self, url: str, concurrency: int, timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        path = parts.path or "/"
        self._head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
        self._timeout = timeout
        self._conns: list[_Connection | None] = [None] * concurrency

    async def _connection(self, slot: int) -> _Connection:
        conn = self._conns[slot]
        if conn is not None and conn.open:
            return conn
        try:
            _, proto = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port
            )
        except OSError as exc:
            raise ClientError(f"connect: {exc}") from exc
        self._conns[slot] = proto
        return proto

    async def post(self, slot: int, headers: list[tuple[str, str]], body: bytes) -> int:
        conn = await self._connection(slot)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
        data = b"".join(
            (self._head, lines.encode(), b"Content-Length: %d\r\n\r\n" % len(body), body)
        )
        try:
            return await asyncio.wait_for(conn.send(data), self._timeout)
        except TimeoutError as exc:
            if conn.transport is not None:
                conn.transport.close()
            raise ClientError("timeout") from exc

    async def warm(self) -> None:
        """Open every connection before the first step, so its first second is not a burst of
        TCP handshakes charged to the server's latency."""
        await asyncio.gather(*(self._connection(s) for s in range(len(self._conns))))

    async def close(self) -> None:
        for conn in self._conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)


def make(kind: str, url: str, concurrency: int, timeout: float = 30.0) -> Client:
    if kind == "aiohttp":
        return AiohttpClient(url, concurrency, timeout)
    if kind == "raw":
        return RawClient(url, concurrency, timeout)
    raise ValueError(f"client must be one of {CLIENTS}, got {kind!r}")
