"""The console's Deliveries port: the dispatcher's records, and redrive to one Trigger.

In `kbroker run` (`from_standalone`) records come straight from the dispatcher's `Recorder`, and
a redrive goes through the dispatcher itself: the Trigger's subscriber, its delivery spec
(retries, backoff, timeout, dead-letter sink), the same sender and OIDC tokens, the event's id
kept, the outcome recorded like any other. It never appends to a broker, so other Triggers of the
broker do not see the event again.

On Kubernetes every filter process keeps its own records; `records_route` serves them as JSON
(`GET /records` on the filter deployable's operational port, behind `--ops-token` like
/metrics), and `HttpDeliveries` polls every filter process and merges what they answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kbroker import status_api
from kbroker.core import contract, logs
from kbroker.core.contract_source import ContractHolder
from kbroker.core.events import CloudEvent
from kbroker.core.outcome_merge import merge_all, records_doc, records_of
from kbroker.core.outcome_ring import OutcomeRing
from kbroker.core.outcomes import Outcome, TriggerRecords, Verdict
from kbroker.filter.dispatch import Dispatcher

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_VERDICTS = {"delivered": Verdict.DELIVERED, "dead_lettered": Verdict.DEAD_LETTERED}


class UnknownTrigger(LookupError):
    """No such Trigger in the contract the data plane runs."""


class InProcessDeliveries:
    def __init__(
        self,
        holder: ContractHolder,
        dispatcher: Dispatcher,
        log_limiter: logs.RateLimiter | None = None,
    ) -> None:
        self.holder = holder
        self.dispatcher = dispatcher
        self._limiter = log_limiter or logs.RateLimiter()

    def _retain(self) -> None:
        live = {(t.namespace, t.name) for t in self.holder.current.triggers}
        self.dispatcher.recorder.retain(live)

    def records(self, namespace: str, trigger: str) -> TriggerRecords | None:
        self._retain()
        return self.dispatcher.recorder.snapshot(namespace, trigger)

    def all_records(self) -> Mapping[tuple[str, str], TriggerRecords]:
        self._retain()
        return self.dispatcher.recorder.snapshot_all()

    def _trigger(self, namespace: str, name: str) -> tuple[contract.Trigger, contract.Broker]:
        for t in self.holder.current.triggers:
            if t.namespace == namespace and t.name == name:
                broker = self.holder.broker(t.broker_key)
                if broker is not None:
                    return t, broker
        raise UnknownTrigger(f"no Trigger {namespace}/{name} is running")

    async def redrive(
        self, namespace: str, trigger: str, events: Sequence[CloudEvent]
    ) -> list[Outcome]:
        t, broker = self._trigger(namespace, trigger)
        ring = self.dispatcher.recorder.ring(t)
        out = []
        for event in events:
            result = await self.dispatcher.dispatch(event, t, broker, (), 0.0)
            out.append(_recorded(ring, event, result.outcome.value))
            logs.emit(
                log,
                self._limiter,
                logging.INFO,
                logs.key(kind="redrive", namespace=namespace, trigger=trigger),
                "event redriven to its trigger's subscriber",
                {
                    "namespace": namespace,
                    "trigger": trigger,
                    "event_id": event.get("id"),
                    "outcome": result.outcome.value,
                    "attempts": result.attempts,
                },
            )
        return out


def _recorded(ring: OutcomeRing, event: CloudEvent, verdict: str) -> Outcome:
    """The outcome the dispatcher just recorded for `event` (the newest with its id)."""
    event_id = str(event.get("id") or "")
    for raw in reversed(ring.raw):
        if raw[0] == event_id:
            return ring.outcome(raw)
    # Not in the ring (a ring of size 0): what dispatch() answered.
    kind, source = str(event.get("type") or ""), str(event.get("source") or "")
    return Outcome(
        "", "", event_id, kind, source, _VERDICTS.get(verdict, Verdict.DROPPED), time.time()
    )


def from_standalone(src: status_api.StatusSource) -> InProcessDeliveries:
    """The port for `kbroker run` (found by kbroker.ui_wiring)."""
    return InProcessDeliveries(src.holder, src.pool.dispatcher)


# -- cluster mode --------------------------------------------------------------------------------
def records_route(dispatcher: Dispatcher, holder: ContractHolder) -> BaseRoute:
    """GET /records: this filter process's records of every Trigger, as JSON."""

    async def records(_: Request) -> Response:
        dispatcher.recorder.retain({(t.namespace, t.name) for t in holder.current.triggers})
        snap = dispatcher.recorder.snapshot_all()
        body = orjson.dumps({"records": [records_doc(r) for r in snap.values()]})
        return Response(body, media_type="application/json")

    return Route("/records", records)


def parse_records(body: bytes) -> dict[tuple[str, str], TriggerRecords]:
    """A `GET /records` answer; ValueError when it is not one."""
    try:
        doc = orjson.loads(body)
        items = [records_of(d) for d in doc["records"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a records document: {exc}") from None
    return {(r.namespace, r.trigger): r for r in items}


class HttpDeliveries:
    """Records merged from every filter process (`refresh()` polls them); redrive is the
    in-process port's alone, since a filter process takes no writes on its operational port."""

    def __init__(
        self,
        filter_urls: Sequence[str],
        token: str = "",
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = list(filter_urls)
        self.token = token
        self.timeout = timeout
        self.transport = transport
        self._merged: dict[tuple[str, str], TriggerRecords] = {}
        self.errors: dict[str, str] = {}  # url -> why its last poll failed

    async def refresh(self) -> None:
        import httpx

        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        parts = []
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            for url in self.urls:
                try:
                    resp = await client.get(url.rstrip("/") + "/records", headers=headers)
                    resp.raise_for_status()
                    parts.append(parse_records(resp.content))
                    self.errors.pop(url, None)
                except (httpx.HTTPError, ValueError) as exc:
                    self.errors[url] = str(exc) or type(exc).__name__
        self._merged = merge_all(parts)

    def records(self, namespace: str, trigger: str) -> TriggerRecords | None:
        return self._merged.get((namespace, trigger))

    def all_records(self) -> Mapping[tuple[str, str], TriggerRecords]:
        return dict(self._merged)

    async def redrive(
        self, namespace: str, trigger: str, events: Sequence[CloudEvent]
    ) -> list[Outcome]:
        raise RuntimeError("redrive is served by `kbroker run` only; not over a filter's ops port")
