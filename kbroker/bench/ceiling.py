"""The `ceiling` scenario's server: a bare ASGI app that reads the body and answers 202.

Why: it is the most a Python HTTP server on this machine can do with the same generator, the same
requests and the same uvicorn + httptools + uvloop stack the broker's ingress runs on. The
broker's ingress figure divided by this one is the share of the machine's HTTP limit the broker
keeps; anything above it is impossible, anything far below it is our code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_START = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
_BODY = {"type": "http.response.body", "body": b""}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body, as any real ingress must
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_BODY)
