"""The console's dead-letters and delivery-records API (JSON), for its pages and the CLI.

Relative to where the console is mounted (`/-/ui`):

    GET  /api/deadletters/{ns}/{broker}?trigger=&code=&since=&until=&limit=
         the dead letters stored in Broker ns/broker, decoded, oldest first
    POST /api/deadletters/{ns}/{broker}/redrive    {"trigger": NAME, "ids": [...] | "all": true,
         "rate": N, "max": N}: to that Trigger's subscriber only; the outcomes
    POST /api/deadletters/{ns}/{broker}/republish  {"to": BROKER, "ids" | "all", "confirm": true}:
         back to a Broker; without "confirm" a 409 carrying the warning to show first
    GET  /api/triggers/{ns}/{name}/records          the Trigger's delivery records and what its
         dead-letter sink is (a Broker to list, or a URI and what can be said of it)
    GET  /api/records                               every Trigger's compact stats

Token and CSRF checks are the console wrapper's (ui/security.py), around every route here.
Everything is bounded: the body read (MAX_BODY), dead letters listed (service MAX_LIST), events
sent per request (service MAX_REDRIVE) and their rate (service MAX_RATE).
"""

from __future__ import annotations

from typing import Any

import orjson
from kbroker.core.events import attr_string
from kbroker.core.outcome_merge import outcome_doc, records_doc, summary_doc
from kbroker.ui import service_deadletters as svc
from kbroker.ui.context import ConsoleContext
from kbroker.ui.service_events import render_payload
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

MAX_BODY = 256 * 1024  # bytes of a POSTed request (ids and options, no events)


def _error(message: str, status: int = 400, **extra: Any) -> Response:
    return JSONResponse({"error": message, **extra}, status_code=status)


def letter_json(d: svc.DeadLetter, show_payloads: bool) -> dict[str, Any]:
    ev = d.event
    return {
        "id": d.id,
        "type": ev.get("type"),
        "source": ev.get("source"),
        "time": d.time,
        "code": d.code,
        "dest": d.dest,
        "data": d.data,
        "trigger": d.trigger,
        "attempts": d.attempts,
        "event": {
            "attributes": {k: attr_string(v) for k, v in ev.attributes.items()},
            "data": render_payload(ev, show_payloads),
        },
    }


def listing_json(listing: svc.Listing, show_payloads: bool) -> dict[str, Any]:
    return {
        "namespace": listing.namespace,
        "broker": listing.broker,
        "triggers": list(listing.triggers),
        "note": listing.note,
        "scanned": listing.scanned,
        "letters": [letter_json(d, show_payloads) for d in listing.letters],
    }


def report_json(report: svc.RedriveReport) -> dict[str, Any]:
    return {
        "outcomes": [outcome_doc(o) for o in report.outcomes],
        "missing": report.missing,
        "capped": report.capped,
        "published": report.published,
        "warning": report.warning,
    }


def _float(raw: str | None, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise svc.DeadLetterError(f"{name} must be a number (epoch seconds)") from None


def _count(raw: Any, name: str, default: int, top: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise svc.DeadLetterError(f"{name} must be an integer") from None
    if not 1 <= n <= top:
        raise svc.DeadLetterError(f"{name} must be between 1 and {top}")
    return n


async def _body(request: Request) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise svc.DeadLetterError(f"request body over {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks) or b"{}")
    except orjson.JSONDecodeError as exc:
        raise svc.DeadLetterError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise svc.DeadLetterError("request body must be a JSON object")
    return body


def _selection(body: dict[str, Any]) -> list[str] | None:
    """The ids asked for, or None for "all"; exactly one of the two."""
    ids, every = body.get("ids"), body.get("all") is True
    if every and ids:
        raise svc.DeadLetterError('give either "ids" or "all": true, not both')
    if every:
        return None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise svc.DeadLetterError('"ids" must be a non-empty list of event ids, or "all": true')
    return ids


def _rate(body: dict[str, Any]) -> float:
    raw = body.get("rate", svc.DEFAULT_RATE)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise svc.DeadLetterError("rate must be a number of events per second")
    return float(raw)


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    show = ctx.settings.show_payloads

    async def list_letters(request: Request) -> Response:
        p, q = request.path_params, request.query_params
        try:
            query = svc.Query(
                trigger=q.get("trigger") or None,
                code=q.get("code") or None,
                since=_float(q.get("since"), "since"),
                until=_float(q.get("until"), "until"),
                limit=_count(q.get("limit"), "limit", svc.MAX_LIST, svc.MAX_LIST),
            )
            listing = await svc.list_dead_letters(ctx, p["ns"], p["broker"], query)
        except svc.DeadLetterError as exc:
            return _error(str(exc), exc.status)
        return JSONResponse(listing_json(listing, show))

    async def redrive(request: Request) -> Response:
        p = request.path_params
        try:
            body = await _body(request)
            trigger = body.get("trigger")
            if not isinstance(trigger, str) or not trigger:
                raise svc.DeadLetterError('"trigger" (the Trigger to redrive to) is required')
            report = await svc.redrive(
                ctx,
                p["ns"],
                p["broker"],
                trigger,
                _selection(body),
                _rate(body),
                _count(body.get("max"), "max", svc.MAX_REDRIVE, svc.MAX_REDRIVE),
            )
        except svc.DeadLetterError as exc:
            return _error(str(exc), exc.status)
        return JSONResponse(report_json(report))

    async def republish(request: Request) -> Response:
        p = request.path_params
        try:
            body = await _body(request)
            to = body.get("to")
            if not isinstance(to, str) or not to:
                raise svc.DeadLetterError('"to" (the Broker to republish to) is required')
            if body.get("confirm") is not True:
                warning = svc.REPUBLISH_WARNING.format(broker=to)
                return _error('republishing needs "confirm": true', 409, warning=warning)
            report = await svc.republish(
                ctx,
                p["ns"],
                p["broker"],
                to,
                _selection(body),
                _rate(body),
                _count(body.get("max"), "max", svc.MAX_REDRIVE, svc.MAX_REDRIVE),
            )
        except svc.DeadLetterError as exc:
            return _error(str(exc), exc.status)
        return JSONResponse(report_json(report))

    async def trigger_records(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        c = ctx.objects.contract()
        try:
            t = svc.find_trigger(c, ns, name)
        except svc.DeadLetterError as exc:
            return _error(str(exc), exc.status)
        records = ctx.deliveries.records(ns, name)
        sink = svc.sink_broker(c, t.delivery.dead_letter_uri)
        dls: dict[str, Any]
        if sink is not None:
            dls = {"kind": "broker", "broker": f"{sink.namespace}/{sink.name}"}
        else:
            note, sent = svc.uri_sink(t, records)
            kind = "uri" if t.delivery.dead_letter_uri else "none"
            dls = {"kind": kind, "uri": t.delivery.dead_letter_uri or "", "note": note}
            dls["sent"] = [outcome_doc(o) for o in sent]
        doc = records_doc(records) if records is not None else None
        return JSONResponse(
            {"namespace": ns, "trigger": name, "records": doc, "deadLetterSink": dls}
        )

    async def all_records(_: Request) -> Response:
        out = [
            {"namespace": ns, "trigger": name, "stats": summary_doc(r)}
            for (ns, name), r in sorted(ctx.deliveries.all_records().items())
        ]
        return JSONResponse({"triggers": out})

    return [
        Route("/api/deadletters/{ns}/{broker}", list_letters, methods=["GET"]),
        Route("/api/deadletters/{ns}/{broker}/redrive", redrive, methods=["POST"]),
        Route("/api/deadletters/{ns}/{broker}/republish", republish, methods=["POST"]),
        Route("/api/triggers/{ns}/{name}/records", trigger_records, methods=["GET"]),
        Route("/api/records", all_records, methods=["GET"]),
    ]
