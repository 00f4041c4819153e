"""A live-tail client for the `tail` scenario: one console page's Server-Sent Events stream.

Why a client of its own: the console's cost on the event path is what a user pays for keeping a
broker's live tail open in a browser tab. This reads the same SSE endpoint the page's
`EventSource` reads, as fast as the server sends, and counts what arrived, so a step with it open
can be compared with a step without it on the same broker, generators and receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp

# Where the console serves a broker's live tail, relative to the broker's base URL.
TAIL_PATH = "/-/ui/api/brokers/{namespace}/{name}/tail"


class TailError(Exception):
    """The tail endpoint did not answer with an event stream."""


@dataclass(slots=True)
class TailCounts:
    """What one open tail received: SSE messages by event name ("message" when unnamed)."""

    by_event: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def messages(self) -> int:
        return sum(self.by_event.values())


class TailClient:
    """Open with `start()` (returns once the server answered 200 text/event-stream), read in the
    background, close with `stop()` which returns the counts."""

    def __init__(self, base_url: str, namespace: str, name: str) -> None:
        self.url = base_url.rstrip("/") + TAIL_PATH.format(namespace=namespace, name=name)
        self.counts = TailCounts()
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5.0))
        resp = await asyncio.wait_for(
            self._http.get(self.url, headers={"accept": "text/event-stream"}), timeout
        )
        ctype = resp.headers.get("content-type", "")
        if resp.status != 200 or not ctype.startswith("text/event-stream"):
            body = (await resp.read())[:200]
            resp.release()
            await self._http.close()
            raise TailError(f"GET {self.url}: {resp.status} {ctype} {body!r}")
        self._task = asyncio.create_task(self._read(resp))

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        name, has_data = "message", False
        with contextlib.closing(resp):
            async for raw in resp.content:
                self.counts.bytes += len(raw)
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode(errors="replace") or "message"
                elif line.startswith(b"data:"):
                    has_data = True
                elif not line:  # a blank line ends a message (comments-only keep-alives: none)
                    if has_data:
                        self.counts.by_event[name] = self.counts.by_event.get(name, 0) + 1
                    name, has_data = "message", False

    async def stop(self) -> TailCounts:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._task
        if self._http is not None:
            await self._http.close()
        return self.counts
