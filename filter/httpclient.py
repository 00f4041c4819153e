"""A lean keep-alive HTTP/1.1 client for deliveries: asyncio Protocols + httptools' C parser.

Why not only aiohttp: profiled on the dispatcher, aiohttp's request machinery (request and
response objects, header multidicts, payload wrappers, tracing signals) costs about 1 ms of CPU per
delivery on this machine, several times the work of the delivery itself. A delivery is always the
same shape (POST, small headers, a body, read the response), so this client writes the request as
one bytes object and parses the response with httptools, the parser uvicorn already uses.

What it refuses to do: TLS, proxies, redirects (the webhook spec forbids following 3xx),
compression, pipelining. `https://` URLs go to the fallback Sender (aiohttp) instead.

Connections are pooled per (host, port); one request at a time per connection. A request that
fails on a reused connection before any response byte arrived is retried once on a new
connection (the server closed an idle keep-alive connection); the delivery is at-least-once anyway.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools
from kbroker.filter.sender import Response, Sender, SendError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.used = False
        self.timed_out = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self.got_bytes = False

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open = True

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(SendError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(SendError(f"invalid HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(SendError(f"connection closed: {exc}" if exc else "connection closed"))

    # -- httptools callbacks -----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(SendError("response body too large"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._stop_timer()
        waiter, self._waiter = self._waiter, None
        raw = tuple(self._headers)
        if waiter is not None and not waiter.done():
            waiter.set_result(
                Response(
                    status=self._parser.get_status_code(),
                    headers={k.decode("latin-1"): v.decode("latin-1") for k, v in raw},
                    raw_headers=raw,
                    body=b"".join(self._body),
                )
            )
        if not self._parser.should_keep_alive():
            self.close()

    # -- use ---------------------------------------------------------------------------------
    def _fail(self, exc: SendError) -> None:
        self._stop_timer()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, timeout: float | None) -> None:
        # The connection is closed, not reused: a late response would answer the next request.
        self._timer = None
        self.timed_out = True
        self._fail(SendError(f"timed out after {timeout} s"))

    def request(
        self, data: bytes, deadline: float | None, timeout: float | None
    ) -> asyncio.Future[Response]:
        """Send `data`; the future fails with SendError at `deadline` (loop time), if any.
        A timer per request rather than asyncio.timeout: no Timeout object and no
        get_running_loop() (a getpid() system call each in CPython 3.11) per delivery."""
        assert self.transport is not None
        self._headers, self._body, self._size, self.got_bytes = [], [], 0, False
        self._waiter = self._loop.create_future()
        self.used = True
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._expire, timeout)
        self.transport.write(data)
        return self._waiter


class HttpClient:
    """Sender over pooled raw HTTP/1.1 connections; https goes to `fallback`."""

    def __init__(self, fallback: Sender, max_idle_per_host: int = 256) -> None:
        self.fallback = fallback
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _target(self, url: str) -> tuple[str, int, bytes]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
            found = (parts.hostname or "127.0.0.1", parts.port or 80, head)
            if len(self._targets) < 10_000:  # URLs come from the contract: a small, stable set
                self._targets[url] = found
        return found

    async def _connect(
        self, host: str, port: int, deadline: float | None, timeout: float | None
    ) -> _Connection:
        loop = self._loop
        assert loop is not None
        try:
            async with asyncio.timeout_at(deadline):
                _, proto = await loop.create_connection(lambda: _Connection(loop), host, port)
        except OSError as exc:
            raise SendError(f"connect to {host}:{port}: {exc}") from exc
        except TimeoutError as exc:
            raise SendError(f"timed out after {timeout} s (connecting)") from exc
        return proto

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        if not url.startswith("http://"):
            return await self.fallback.send(url, headers, body, timeout)
        host, port, head = self._target(url)
        try:
            # UTF-8, as aiohttp (the https path) writes headers and as ingress reads them.
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SendError(f"header not encodable: {exc}") from exc
        data = b"".join((head, lines, b"content-length: %d\r\n\r\n" % len(body), body))
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        return await self._exchange(host, port, data, deadline, timeout)

    async def _exchange(
        self, host: str, port: int, data: bytes, deadline: float | None, timeout: float | None
    ) -> Response:
        pool = self._idle.setdefault((host, port), collections.deque())
        while pool:
            conn = pool.pop()
            if not conn.open:
                continue
            try:
                response = await conn.request(data, deadline, timeout)
            except SendError:
                if conn.got_bytes or conn.timed_out:
                    raise
                continue  # the server closed an idle connection: try a fresh one
            except asyncio.CancelledError:
                conn.close()
                raise
            self._release(pool, conn)
            return response
        conn = await self._connect(host, port, deadline, timeout)
        try:
            response = await conn.request(data, deadline, timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        self._release(pool, conn)
        return response

    def _release(self, pool: collections.deque[_Connection], conn: _Connection) -> None:
        if conn.open and len(pool) < self.max_idle:
            pool.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        for pool in self._idle.values():
            while pool:
                pool.pop().close()
        await self.fallback.close()
