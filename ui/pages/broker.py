"""A Broker's page (`/brokers/{ns}/{name}?tab=...`): topology, triggers, events seen, dead letters,
live tail, send an event. The tab is in the URL, so every view is a link.

Data: the contract and objects (Objects port), the broker's stored events (Events port, the same
read the filter tester uses), the dispatcher's records (Deliveries port), and the dead-letters
service for a Broker that is a dead-letter sink. The live tail is the events API's SSE stream,
rendered by the page's script. Sending an event appends through the Events port as the ingress
would, and the page offers the same event as a `curl` command.
"""

from __future__ import annotations

import shlex
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kbroker.core.contract import Durability
from kbroker.core.events import CloudEvent
from kbroker.ui import filtertext, topology
from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.templating import base_path, render
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

try:
    from kbroker.ui import service_deadletters
except ImportError:  # pragma: no cover - only while that part is absent
    service_deadletters = None  # type: ignore[assignment]

TABS = (
    ("topology", "Topology"),
    ("triggers", "Triggers"),
    ("events", "Event types"),
    ("deadletters", "Dead letters"),
    ("tail", "Live tail"),
    ("send", "Send event"),
)


@dataclass(frozen=True, slots=True)
class Seen:
    value: str
    count: int
    last: float  # arrival, epoch seconds


def _seen(envelopes: list[Any], attribute: str) -> list[Seen]:
    counts: Counter[str] = Counter()
    last: dict[str, float] = {}
    for env in envelopes:
        v = env.event.attributes.get(attribute)
        if v is None:
            continue
        key = str(v)
        counts[key] += 1
        last[key] = max(last.get(key, 0.0), env.arrival or 0.0)
    return [Seen(k, n, last[k]) for k, n in counts.most_common()]


def trigger_rows(ctx: ConsoleContext, ns: str, triggers: list[dict[str, Any]]) -> list[Any]:
    c = ctx.objects.contract()
    rows = []
    for obj in sorted(triggers, key=ov.name):
        name = ov.name(obj)
        t = next((x for x in c.triggers if (x.namespace, x.name) == (ns, name)), None)
        rec = ctx.deliveries.records(ns, name)
        minute = rec.windows.get("1m") if rec else None
        quarter = rec.windows.get("15m") if rec else None
        done = (
            (quarter.delivered + quarter.dead_lettered + quarter.dropped + quarter.dls_failed)
            if quarter
            else 0
        )
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        lag = ((status or {}).get("annotations") or {}).get("kbroker.dev/lag", "")
        rows.append(
            {
                "name": name,
                "readiness": ov.readiness(obj),
                "filter": filtertext.describe(t.filters) if t else "(not in force)",
                "subscriber": t.subscriber_uri if t else "",
                "matched_per_min": minute.matched if minute else 0,
                "success": f"{100 * quarter.delivered / done:.0f} %" if quarter and done else "—",
                "lag": lag,
                "last_failure": rec.last_failure if rec else None,
                "dls": bool(t and t.delivery.dead_letter_uri),
            }
        )
    return rows


def curl_of(address: str, event: CloudEvent, durability: str) -> str:
    """The event as a binary-mode `curl` command against the broker's address."""
    parts = ["curl", "-i", "-X", "POST", address]
    for k, v in event.attributes.items():
        if k == "datacontenttype":
            parts += ["-H", f"Content-Type: {v}"]
        else:
            parts += ["-H", f"ce-{k}: {v}"]
    if durability:
        parts += ["-H", f"kbroker-durability: {durability}"]
    if event.data:
        parts += ["--data-binary", event.data.decode("utf-8", "replace")]
    return " ".join(shlex.quote(p) for p in parts)


def event_from_form(form: Any) -> CloudEvent:
    attrs: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(form.get("id") or "") or str(uuid.uuid4()),
        "type": str(form.get("type") or "").strip(),
        "source": str(form.get("source") or "").strip(),
    }
    for key in ("subject", "datacontenttype"):
        value = str(form.get(key) or "").strip()
        if value:
            attrs[key] = value
    for line in str(form.get("extensions") or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            if k.strip():
                attrs[k.strip().lower()] = v.strip()
    data = str(form.get("data") or "")
    return CloudEvent(attrs, data.encode() if data else None)


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        broker = await ctx.objects.get("Broker", ns, name)
        if broker is None:
            return render(request, ctx, "not_found.html", status_code=404)
        tab = request.query_params.get("tab", "topology")
        if tab not in dict(TABS):
            tab = "topology"
        triggers = [t for t in await ctx.objects.list("Trigger", ns) if ov.broker_of(t) == name]
        values: dict[str, Any] = {}
        if tab in ("topology", "events"):
            try:
                found = await ctx.events.recent(ns, name, ctx.settings.recent_limit)
            except Exception as exc:  # the page still shows what it can
                found, values["events_error"] = None, str(exc)
            envelopes = list(found or [])
            values["history"] = found is not None
            values["envelopes"] = list(reversed(envelopes))
            values["types"] = _seen(envelopes, "type")
            values["sources"] = _seen(envelopes, "source")
            if tab == "topology":
                graph = topology.build(
                    ns,
                    name,
                    triggers,
                    ctx.objects.contract(),
                    [s.value for s in values["sources"]],
                    ctx.deliveries.all_records(),
                    base_path(request),
                )
                values["svg"] = topology.svg(graph, f"Topology of Broker {ns}/{name}")
        if tab == "triggers":
            values["rows"] = trigger_rows(ctx, ns, triggers)
        if tab == "deadletters":
            values.update(await dead_letters(ns, name, triggers, request))
        return render(
            request,
            ctx,
            "broker.html",
            broker=broker,
            ns=ns,
            name=name,
            tab=tab,
            tabs=TABS,
            readiness=ov.readiness(broker),
            address=ov.address(broker),
            triggers=triggers,
            now=time.time(),
            **values,
        )

    async def dead_letters(
        ns: str, name: str, triggers: list[dict[str, Any]], request: Request
    ) -> dict[str, Any]:
        svc = service_deadletters
        if svc is None:
            return {"dl_note": "dead letters are not available in this build"}
        c = ctx.objects.contract()
        sinks: dict[str, list[str]] = {}  # "ns/broker" of DLS Brokers -> triggers using them
        notes = []
        for t in c.triggers_of(f"{ns}/{name}"):
            sink = svc.sink_broker(c, t.delivery.dead_letter_uri)
            if sink is not None:
                sinks.setdefault(f"{sink.namespace}/{sink.name}", []).append(t.name)
            else:
                note, _ = svc.uri_sink(t, ctx.deliveries.records(t.namespace, t.name))
                notes.append(note)
        listing = None
        error = ""
        if svc.feeding(c, ns, name):  # this Broker is itself a dead-letter sink
            q = request.query_params
            try:
                listing = await svc.list_dead_letters(
                    ctx,
                    ns,
                    name,
                    svc.Query(trigger=q.get("trigger") or None, code=q.get("code") or None),
                )
            except svc.DeadLetterError as exc:
                error = str(exc)
        origins = sorted({f"{t.namespace}/{t.broker}" for t in svc.feeding(c, ns, name)})
        return {
            "sinks": sinks,
            "dl_notes": notes,
            "listing": listing,
            "dl_error": error,
            "origins": origins,
        }

    async def send(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        broker = await ctx.objects.get("Broker", ns, name)
        if broker is None:
            return render(request, ctx, "not_found.html", status_code=404)
        form = await request.form()
        event = event_from_form(form)
        durability = str(form.get("durability") or "")
        missing = [k for k in ("type", "source") if not event.attributes.get(k)]
        curl = curl_of(ov.address(broker), event, durability)
        if request.query_params.get("preview") or missing:
            return render(
                request,
                ctx,
                "_sent.html",
                curl=curl,
                error=f"required: {', '.join(missing)}" if missing else "",
                sent=False,
                event=event,
            )
        try:
            level = Durability(durability) if durability else Durability.ALL
            await ctx.events.publish(ns, name, event, level)
        except Exception as exc:  # shown to the user: the channel's own reason
            return render(
                request, ctx, "_sent.html", curl=curl, error=str(exc), sent=False, event=event
            )
        return render(request, ctx, "_sent.html", curl=curl, error="", sent=True, event=event)

    async def redrive(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        svc = service_deadletters
        form = await request.form()
        trigger = str(form.get("trigger") or "")
        ids = [str(v) for v in form.getlist("id")] or None
        if svc is None or not trigger:
            return render(request, ctx, "_redrive.html", error="choose a trigger", report=None)
        try:
            report = await svc.redrive(ctx, ns, name, trigger, ids)
        except svc.DeadLetterError as exc:
            return render(
                request, ctx, "_redrive.html", error=str(exc), report=None, status_code=exc.status
            )
        return render(request, ctx, "_redrive.html", error="", report=report)

    async def republish(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        svc = service_deadletters
        form = await request.form()
        to = str(form.get("to") or "")
        ids = [str(v) for v in form.getlist("id")]
        if svc is None or not to or not ids:
            error = "select the dead letters to republish, and the Broker to send them to"
            return render(request, ctx, "_redrive.html", error=error, report=None)
        try:
            report = await svc.republish(ctx, ns, name, to, ids)
        except svc.DeadLetterError as exc:
            return render(
                request, ctx, "_redrive.html", error=str(exc), report=None, status_code=exc.status
            )
        return render(request, ctx, "_redrive.html", error="", report=report)

    return [
        Route("/brokers/{ns}/{name}", page, name="broker"),
        Route("/brokers/{ns}/{name}/deadletters/republish", republish, methods=["POST"]),
        Route("/brokers/{ns}/{name}/send", send, methods=["POST"]),
        Route("/brokers/{ns}/{name}/deadletters/redrive", redrive, methods=["POST"]),
    ]
