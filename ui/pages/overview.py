"""Overview (`/`): a card per Broker, problems first.

A Broker is a problem when it is not Ready, or when one of its Triggers has no dead-letter sink
(its own or the Broker's): events that exhaust their retries are then dropped, silently, which
is what users of other consoles find out too late.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.ports import KObject
from kbroker.ui.templating import render
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route


@dataclass(slots=True)
class BrokerCard:
    broker: KObject
    namespace: str
    name: str
    readiness: ov.Readiness
    address: str
    broker_class: str
    triggers: list[KObject] = field(default_factory=list)
    without_dls: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    dropped: int = 0
    lag: int = 0  # events stored but not yet finished, summed over the Triggers

    @property
    def problems(self) -> list[str]:
        out = []
        if self.readiness.ready is not True:
            why = self.readiness.reason or self.readiness.label
            out.append(f"Broker not ready: {why}")
        if self.not_ready:
            out.append(f"{len(self.not_ready)} trigger(s) not ready: {', '.join(self.not_ready)}")
        if self.without_dls:
            out.append(
                f"{len(self.without_dls)} trigger(s) without a dead-letter sink: "
                + ", ".join(self.without_dls)
            )
        return out


async def cards(ctx: ConsoleContext) -> list[BrokerCard]:
    brokers = await ctx.objects.list("Broker")
    triggers = await ctx.objects.list("Trigger")
    records = ctx.deliveries.all_records()
    out: dict[tuple[str, str], BrokerCard] = {}
    for b in brokers:
        annotations = ov.meta(b).get("annotations") or {}
        card = BrokerCard(
            broker=b,
            namespace=ov.namespace(b),
            name=ov.name(b),
            readiness=ov.readiness(b),
            address=ov.address(b),
            broker_class=str(annotations.get("eventing.knative.dev/broker.class", "")),
        )
        out[(card.namespace, card.name)] = card
    for t in triggers:
        card_of = out.get((ov.namespace(t), ov.broker_of(t)))
        if card_of is None:
            continue
        card_of.triggers.append(t)
        if not ov.has_dead_letter_sink(t, card_of.broker):
            card_of.without_dls.append(ov.name(t))
        if ov.readiness(t).ready is not True:
            card_of.not_ready.append(ov.name(t))
        status = t.get("status") if isinstance(t.get("status"), dict) else {}
        lag = str(((status or {}).get("annotations") or {}).get("kbroker.dev/lag", "0"))
        card_of.lag += int(lag) if lag.isdigit() else 0
        rec = records.get((ov.namespace(t), ov.name(t)))
        hour = rec.windows.get("1h") if rec is not None else None
        if hour is not None:
            card_of.dead_lettered += hour.dead_lettered
            card_of.dropped += hour.dropped
    return sorted(out.values(), key=_rank)


def _rank(card: BrokerCard) -> tuple[int, str, str]:
    """Not-ready Brokers first, then Brokers with a problem among their Triggers, then the rest."""
    worst = 0 if card.readiness.ready is not True else 1 if card.problems else 2
    return (worst, card.namespace, card.name)


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        return render(request, ctx, "overview.html", cards=await cards(ctx))

    return [Route("/", overview, name="overview")]
