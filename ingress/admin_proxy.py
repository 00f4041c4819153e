"""Operational requests that reach an extra ingress process, answered by the primary process.

Why: `kbroker run --processes N` puts N processes on one port with SO_REUSEPORT, and the kernel
spreads *every* new connection over them, not only the ones that carry events. Only the primary
process has the controller's state (/status, the trigger and storage metrics, the UI), so an extra
process passes any request that is not an event (and not its own /healthz) to the primary over a
Unix socket in the data folder, and returns the answer as it came. Events never take this path.

What it refuses: request bodies over MAX_BODY (413), and waiting on a primary that does not answer
(503 with Retry-After, after `timeout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    import httpx

MAX_BODY = 1024 * 1024
# Connection-level headers are the hop's own (RFC 9110 §7.6.1); the length is recomputed.
_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
_SKIP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class AdminProxy:
    """The client is made on the first proxied request: importing httpx also imports its optional
    command line (rich, pygments) when those are installed, which an ingress process that only
    takes events never needs."""

    def __init__(self, uds: Path, timeout: float = 30.0) -> None:
        self._uds = uds
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets are not proxied
        body = await _read(receive)
        if body is None:
            await _answer(send, 413, f"request body over {MAX_BODY} bytes")
            return
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self._uds)),
                base_url="http://primary",
                timeout=self._timeout,
            )
        try:
            resp = await self._client.request(
                scope["method"], target.decode("latin-1"), headers=headers, content=body
            )
        except httpx.HTTPError as exc:
            await _answer(send, 503, f"the primary kbroker process did not answer: {exc!r}")
            return
        content = resp.content
        raw = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in resp.headers.multi_items()
            if k.lower() not in _SKIP_RESPONSE
        ]
        raw.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": resp.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": content})

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, message: str) -> None:
    body = (message + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
