"""The console's events API: recent events, the live tail, the filter tester, the CESQL check.

JSON endpoints, relative to where the console is mounted (`/-/ui`), used by the pages and by the
CLI twins (`kbroker tail`, `kbroker trigger test`):

    GET  /api/brokers/{ns}/{broker}/events?limit=N     the last N stored events
    GET  /api/brokers/{ns}/{broker}/tail?filter=CESQL  live tail: SSE, or NDJSON with
                                                       ?format=ndjson / Accept: application/x-ndjson
    GET  /api/triggers/{ns}/{name}/test?last=N         a Trigger's filter on the last N events
    POST /api/filter-test                              a filter (a Trigger's, or a spec) on recent
                                                       or pasted events
    POST /api/cesql/check                              line:col errors, attributes referenced

Authentication and CSRF are the console's wrapper's (ui/security.py), around every route here.
Everything is bounded: request bodies (MAX_BODY), events read (service_events.MAX_RECENT), the
tail's buffer per viewer (settings.tail_buffer, drop-oldest, the count sent to the viewer).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from kbroker.core import explain
from kbroker.core.channel import ChannelError
from kbroker.core.contract import FilterSpec
from kbroker.core.events import CloudEvent
from kbroker.ui import service_events as svc
from kbroker.ui.context import ConsoleContext
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

MAX_BODY = 2 * 1024 * 1024  # bytes of a POSTed JSON request (a pasted event is at most 1 MiB)
HEARTBEAT = 5.0  # seconds between tail keep-alives carrying the dropped count
NDJSON = "application/x-ndjson"


def _error(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise svc.BadRequest(f"request body over {MAX_BODY} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise svc.BadRequest(f"request body over {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise svc.BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise svc.BadRequest("request body must be a JSON object")
    return body


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise svc.BadRequest(f"{name} must be an integer") from None
    if n < 1:
        raise svc.BadRequest(f"{name} must be at least 1")
    return min(n, svc.MAX_RECENT)


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise svc.BadRequest(f"{name} must be a string")
    return value


def _pasted(body: dict[str, Any]) -> list[CloudEvent] | None:
    if body.get("event") is not None:
        raw = body["event"]
        text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
        return svc.parse_structured(text)
    binary = body.get("binary")
    if binary is not None:
        if not isinstance(binary, dict):
            raise svc.BadRequest("binary must be an object with headers and body")
        headers = binary.get("headers", {})
        if isinstance(headers, str):
            headers = svc.parse_headers_text(headers)
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise svc.BadRequest("binary.headers must map header names to strings")
        data = binary.get("body", "")
        if not isinstance(data, str):
            raise svc.BadRequest("binary.body must be a string")
        return [svc.parse_binary(headers, data)]
    return None


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    show = ctx.settings.show_payloads
    matchers = svc.Matchers()

    async def recent(request: Request) -> Response:
        ns, broker = request.path_params["ns"], request.path_params["broker"]
        try:
            limit = _int(request.query_params.get("limit"), "limit", ctx.settings.recent_limit)
            found = await svc.recent(ctx, ns, broker, limit)
        except svc.BadRequest as exc:
            return _error(str(exc), exc.status)
        return JSONResponse(
            {
                "history": found is not None,
                "events": [svc.event_json(e, show) for e in found or ()],
            }
        )

    async def run_test(
        ns: str,
        broker: str,
        specs: tuple[FilterSpec, ...],
        pasted: list[CloudEvent] | None,
        limit: int,
        skip: str,
    ) -> Response:
        result = await svc.test_filter(
            ctx, ns, broker, specs, pasted=pasted, limit=limit, skip=skip, matchers=matchers
        )
        return JSONResponse(svc.result_json(result, show))

    async def trigger_test(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        try:
            limit = _int(request.query_params.get("last"), "last", ctx.settings.recent_limit)
            t = svc.trigger_of(ctx.objects.contract(), ns, name)
            return await run_test(ns, t.broker, t.filters, None, limit, t.name)
        except svc.BadRequest as exc:
            return _error(str(exc), exc.status)

    async def filter_test(request: Request) -> Response:
        try:
            body = await _json_body(request)
            ns = _str(body, "namespace")
            broker = _str(body, "broker")
            name = _str(body, "trigger")
            limit = _int(body.get("last"), "last", ctx.settings.recent_limit)
            pasted = _pasted(body)
            if name:
                t = svc.trigger_of(ctx.objects.contract(), ns, name)
                specs, broker = t.filters, broker or t.broker
            else:
                spec = body.get("spec", {})
                if not isinstance(spec, dict):
                    raise svc.BadRequest("spec must be a Trigger spec object")
                specs = svc.filters_from_spec(spec)
                broker = broker or _str(spec, "broker")
            if not ns or not broker:
                raise svc.BadRequest("namespace and broker (or trigger) are required")
            return await run_test(ns, broker, specs, pasted, limit, name)
        except svc.BadRequest as exc:
            return _error(str(exc), exc.status)

    async def cesql_check(request: Request) -> Response:
        try:
            body = await _json_body(request)
            expression = _str(body, "expression")
            ns, broker = _str(body, "namespace"), _str(body, "broker")
        except svc.BadRequest as exc:
            return _error(str(exc), exc.status)
        result = explain.check_cesql(expression).to_json()
        result["unseen"] = []
        if result["valid"] and ns and broker:
            # Attributes never seen on this broker: a typo there silently matches nothing. Best
            # effort: the check itself does not depend on the channel answering.
            try:
                found = await svc.recent(ctx, ns, broker, ctx.settings.recent_limit)
            except svc.BadRequest:
                found = None
            if found:
                seen = {k for e in found for k in e.event.attributes}
                result["unseen"] = [a for a in result["attributes"] if a not in seen]
        return JSONResponse(result)

    async def tail(request: Request) -> Response:
        ns, broker = request.path_params["ns"], request.path_params["broker"]
        expression = request.query_params.get("filter", "")
        ndjson = request.query_params.get("format") == "ndjson" or NDJSON in request.headers.get(
            "accept", ""
        )
        try:
            stream = await svc.open_tail(ctx, ns, broker, expression, idle=HEARTBEAT)
        except svc.BadRequest as exc:
            return _error(str(exc), exc.status)
        except ChannelError as exc:
            return _error(f"cannot tail broker {ns}/{broker}: {exc}", 503)
        body = _ndjson(stream, show) if ndjson else _sse(stream, show)
        return StreamingResponse(
            body,
            media_type=NDJSON if ndjson else "text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return [
        Route("/api/brokers/{ns}/{broker}/events", recent, methods=["GET"]),
        Route("/api/brokers/{ns}/{broker}/tail", tail, methods=["GET"]),
        Route("/api/triggers/{ns}/{name}/test", trigger_test, methods=["GET"]),
        Route("/api/filter-test", filter_test, methods=["POST"]),
        Route("/api/cesql/check", cesql_check, methods=["POST"]),
    ]


async def _batches(stream: AsyncIterator[svc.TailBatch]) -> AsyncIterator[svc.TailBatch]:
    try:
        async for batch in stream:
            yield batch
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _sse(stream: AsyncIterator[svc.TailBatch], show: bool) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    reported = -1
    last = time.monotonic()
    async for batch in _batches(stream):
        out = [
            b"event: event\ndata: " + orjson.dumps(svc.tail_item_json(i, show)) + b"\n\n"
            for i in batch.items
        ]
        now = time.monotonic()
        if batch.dropped != reported or now - last >= HEARTBEAT:
            out.append(
                b"event: dropped\ndata: " + orjson.dumps({"dropped": batch.dropped}) + b"\n\n"
            )
            reported, last = batch.dropped, now
        yield b"".join(out)


async def _ndjson(stream: AsyncIterator[svc.TailBatch], show: bool) -> AsyncIterator[bytes]:
    reported = 0
    async for batch in _batches(stream):
        out = [orjson.dumps(svc.tail_item_json(i, show)) + b"\n" for i in batch.items]
        if batch.dropped != reported:
            out.append(orjson.dumps({"dropped": batch.dropped}) + b"\n")
            reported = batch.dropped
        yield b"".join(out) if out else b"\n"  # a blank line: keep-alive, and notices a gone client
