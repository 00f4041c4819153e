"""The event inspector (`/events/{ns}/{broker}/{id}`): why was this event delivered, or not?

The event is read back from the broker's log (the same read the tester uses); for every Trigger
of the broker it shows the verdict with the explain tree from `core/explain` (the dispatcher's
own filter code: which branch, attribute or CESQL value decided), and, from the dispatcher's
records, that Trigger's outcome for this event id: each attempt with time, status, latency and
error, and the dead-letter sink's answer. A trace link appears when a URL template is set.
"""

from __future__ import annotations

from typing import Any

from kbroker.core import explain
from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.pages.broker import curl_of
from kbroker.ui.templating import render
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

try:
    from kbroker.ui import service_events
except ImportError:  # pragma: no cover - only while that part is absent
    service_events = None  # type: ignore[assignment]

SEARCHED = 500  # events read back to find the id


def _trace_link(template: str, attrs: dict[str, Any]) -> str:
    parent = str(attrs.get("traceparent") or "")
    parts = parent.split("-")
    if not template or len(parts) < 3:
        return ""
    return template.replace("{trace_id}", parts[1])


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def inspect(request: Request) -> Response:
        ns, broker, event_id = (request.path_params[k] for k in ("ns", "broker", "id"))
        error = ""
        envelope = None
        try:
            found = await ctx.events.recent(ns, broker, SEARCHED)
        except Exception as exc:  # the page says why it cannot show the event
            found, error = None, str(exc)
        if found is None and not error:
            error = "this broker's channel keeps no history: the event cannot be read back"
        for env in reversed(found or []):
            if str(env.event.attributes.get("id")) == event_id:
                envelope = env
                break
        if envelope is None and not error:
            error = f"not among the broker's last {SEARCHED} stored events"
        verdicts = []
        contract = ctx.objects.contract()
        for t in contract.triggers_of(f"{ns}/{broker}"):
            rec = ctx.deliveries.records(t.namespace, t.name)
            outcome = None
            if rec is not None:
                outcome = next((o for o in reversed(rec.recent) if o.event_id == event_id), None)
            tree = explain.explain(t.filters, envelope.event.attributes) if envelope else None
            verdicts.append({"trigger": t, "explain": tree, "outcome": outcome})
        payload: dict[str, Any] = {}
        if envelope is not None and service_events is not None:
            payload = service_events.render_payload(envelope.event, ctx.settings.show_payloads)
        curl = ""
        if envelope is not None:
            broker_obj = await ctx.objects.get("Broker", ns, broker)
            address = ov.address(broker_obj) if broker_obj is not None else ""
            curl = curl_of(address or f"http://BROKER/{ns}/{broker}", envelope.event, "")
        status = 200 if envelope is not None or verdicts else 404
        return render(
            request,
            ctx,
            "inspector.html",
            status_code=status,
            ns=ns,
            broker=broker,
            event_id=event_id,
            envelope=envelope,
            payload=payload,
            verdicts=verdicts,
            curl=curl,
            error=error if envelope is None else "",
            trace=_trace_link(ctx.settings.trace_url, envelope.event.attributes)
            if envelope
            else "",
        )

    return [Route("/events/{ns}/{broker}/{id}", inspect, name="event")]
