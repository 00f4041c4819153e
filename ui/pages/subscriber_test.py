""" "Send a test event to this subscriber" on the create page: is the subscriber there at all?

One event (the broker's latest, or a small synthetic one) is POSTed in binary mode to the URI in
the subscriber field (a `Broker/name` reference resolves to that Broker's address); the page shows
the status, the latency and the start of the reply. The same SSRF rule as for saving applies in
cluster mode, and the request is bounded: 5 s, and 4 KB of the answer read.
"""

from __future__ import annotations

import time
import uuid

import httpx
from kbroker.core import events
from kbroker.core.events import CloudEvent
from kbroker.ui import forms, ssrf
from kbroker.ui.context import ConsoleContext
from kbroker.ui.templating import render
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

TIMEOUT = 5.0
SHOWN = 4096  # bytes of the answer shown


def resolve(ctx: ConsoleContext, text: str, namespace: str) -> str:
    """The URI the subscriber control names, or "" when the console cannot resolve it."""
    dest = forms.destination(text)
    if "ref" not in dest:
        return str(dest.get("uri", ""))
    ref = dest["ref"]
    if ref.get("kind") == "Broker":
        b = ctx.objects.contract().broker(f"{namespace}/{ref.get('name', '')}")
        return b.address if b is not None else ""
    return ""


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def send(request: Request) -> Response:
        form = await request.form()
        f = forms.from_fields(form)
        uri = resolve(ctx, f.subscriber, f.namespace)
        if not uri.startswith(("http://", "https://")):
            msg = "give an http(s) URI or a Broker/name to test the subscriber"
            return render(request, ctx, "_subscriber_test.html", error=msg)
        probe = {"spec": {"subscriber": {"uri": uri}}}
        refused = await ssrf.problems(probe, ctx.settings)
        if refused:
            return render(request, ctx, "_subscriber_test.html", error=refused[0])
        found = await ctx.events.recent(f.namespace, f.broker, 1) if f.broker else None
        event = (
            found[-1].event
            if found
            else CloudEvent(
                {
                    "specversion": "1.0",
                    "id": str(uuid.uuid4()),
                    "type": "dev.kbroker.console.test",
                    "source": "/kbroker/console",
                },
                None,
            )
        )
        headers, body = events.encode_binary(event)
        started = time.perf_counter()
        try:
            async with (
                httpx.AsyncClient(timeout=TIMEOUT) as client,
                client.stream("POST", uri, headers=headers, content=body) as resp,
            ):
                answer = b""
                async for chunk in resp.aiter_bytes():
                    answer += chunk
                    if len(answer) >= SHOWN:
                        break
                status = resp.status_code
                reply_type = resp.headers.get("ce-type", "")
        except httpx.HTTPError as exc:
            took = time.perf_counter() - started
            error = f"no answer after {took * 1000:.0f} ms: {exc!r}"
            return render(request, ctx, "_subscriber_test.html", error=error)
        return render(
            request,
            ctx,
            "_subscriber_test.html",
            error="",
            uri=uri,
            event_id=event.attributes.get("id"),
            status=status,
            latency=time.perf_counter() - started,
            reply_type=reply_type,
            answer=answer[:SHOWN].decode("utf-8", "replace"),
        )

    return [Route("/triggers/subscriber-test", send, methods=["POST"])]
