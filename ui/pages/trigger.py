"""A Trigger's page (`/triggers/{ns}/{name}`): is it working, and if not, why.

Conditions are polled (a small fragment, every second) until the Trigger is Ready, so a user who
just created it sees it become Ready or the reason it is not. Everything else is what the
dispatcher actually runs and did: the effective filter and resolved subscriber from the
contract, the effective delivery spec with the source of each field (Trigger, Broker or
default), and the dispatcher's records: windowed counters, recent outcomes with their attempt
timelines, the last failure with the next retry.
"""

from __future__ import annotations

import time
from typing import Any

from kbroker.core.contract import Contract, Trigger
from kbroker.ui import filtertext, forms
from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.ports import KObject
from kbroker.ui.templating import base_path, render
from kbroker.ui.yamlview import to_yaml, written
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

WINDOWS = ("1m", "15m", "1h")
SHOWN_OUTCOMES = 25


def in_force(c: Contract, ns: str, name: str) -> Trigger | None:
    return next((t for t in c.triggers if (t.namespace, t.name) == (ns, name)), None)


def delivery_rows(t: Trigger | None, obj: KObject, broker: KObject | None) -> list[dict[str, str]]:
    """The delivery spec in force, each field with where it comes from."""
    own = ov.delivery(obj)
    inherited = ov.delivery(broker) if broker is not None else {}

    def source(key: str) -> str:
        return "Trigger" if key in own else "Broker" if key in inherited else "default"

    d = t.delivery if t is not None else None
    if d is None:
        return []
    policy = d.backoff_policy.value if d.backoff_policy else ""
    return [
        {"field": "Retries", "value": str(d.retry), "source": source("retry")},
        {"field": "Backoff policy", "value": policy or "—", "source": source("backoffPolicy")},
        {
            "field": "Backoff delay",
            "value": forms.human(d.backoff_delay),
            "source": source("backoffDelay"),
        },
        {"field": "Timeout", "value": forms.human(d.timeout), "source": source("timeout")},
        {
            "field": "Dead-letter sink",
            "value": d.dead_letter_uri or "none: failed events are dropped",
            "source": source("deadLetterSink"),
        },
        {
            "field": "Retry schedule",
            "value": forms.retry_schedule(d.retry, policy or "exponential", d.backoff_delay).text,
            "source": "",
        },
    ]


def _dls_broker(c: Contract, t: Trigger | None) -> str:
    """ "ns/name" of the Broker that is this Trigger's dead-letter sink, if it is one."""
    uri = (t.delivery.dead_letter_uri or "").rstrip("/") if t else ""
    for b in c.brokers if uri else ():
        if b.address.rstrip("/") == uri:
            return f"{b.namespace}/{b.name}"
    return ""


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def values(ns: str, name: str) -> dict[str, Any] | None:
        obj = await ctx.objects.get("Trigger", ns, name)
        if obj is None:
            return None
        return {"obj": obj, "ns": ns, "name": name, "readiness": ov.readiness(obj)}

    async def page(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        found = await values(ns, name)
        if found is None:
            return render(request, ctx, "not_found.html", status_code=404)
        obj = found["obj"]
        broker_name = ov.broker_of(obj)
        broker = await ctx.objects.get("Broker", ns, broker_name)
        c = ctx.objects.contract()
        t = in_force(c, ns, name)
        rec = ctx.deliveries.records(ns, name)
        origin = ctx.objects.origin(obj)
        return render(
            request,
            ctx,
            "trigger.html",
            **found,
            broker_name=broker_name,
            conditions=ov.conditions(obj),
            t=t,
            filter_text=filtertext.describe(t.filters) if t else "",
            delivery=delivery_rows(t, obj, broker),
            rec=rec,
            windows=[(w, rec.windows.get(w)) for w in WINDOWS] if rec else [],
            outcomes=list(reversed(rec.recent[-SHOWN_OUTCOMES:])) if rec else [],
            yaml=to_yaml(written(obj)),
            origin=origin,
            dls_broker=_dls_broker(c, t),
            now=time.time(),
        )

    async def conditions(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        found = await values(ns, name)
        if found is None:
            return render(request, ctx, "not_found.html", status_code=404)
        return render(
            request, ctx, "_conditions.html", **found, conditions=ov.conditions(found["obj"])
        )

    async def delete(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        found = await values(ns, name)
        if found is None:
            return render(request, ctx, "not_found.html", status_code=404)
        origin = ctx.objects.origin(found["obj"])
        if not origin.editable:
            return PlainTextResponse(origin.reason + "\n", status_code=403)
        await ctx.objects.delete("Trigger", ns, name)
        target = f"{base_path(request)}/brokers/{ns}/{ov.broker_of(found['obj'])}?tab=triggers"
        return RedirectResponse(target, status_code=303, headers={"HX-Redirect": target})

    return [
        Route("/triggers/{ns}/{name}", page, name="trigger"),
        Route("/triggers/{ns}/{name}/delete", delete, methods=["POST"]),
        Route("/triggers/{ns}/{name}/conditions", conditions),
    ]
