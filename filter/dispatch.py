"""One event's whole hop to one trigger, top to bottom: send, retry, reply, dead-letter, outcome.

The flow Knative's Kafka dispatcher spreads over a callback chain reads here as one coroutine:

1. deliver in binary mode (or structured when the delivery spec says `format: json`) with
   `Prefer: reply` and `Kn-Namespace`, the TTL extension removed;
2. on a 2xx whose body is a CloudEvent, POST the reply back to the broker with TTL - 1 (dropped
   when the TTL runs out); a failure to store the reply fails the attempt, as the spec requires;
3. retry per `core.delivery`; when retries are exhausted, POST the original event to the
   dead-letter sink with `knativeerrordest`, `knativeerrorcode`, `knativeerrordata`;
4. return the outcome; the worker commits the position only then.

Deviation from Knative MT, on purpose: a 2xx reply body that does not claim to be a CloudEvent (no
`ce-specversion` header, not a CloudEvents content type) is ignored rather than failed, since plain
"OK" bodies are common; one that claims to be an event but is invalid fails the attempt (502).

A dead-letter sink that keeps failing is retried with a capped backoff until it succeeds: an event
is never committed past undelivered (the Kafka broker commits and loses it; we don't).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kbroker.core import contract, delivery, events, logs, telemetry
from kbroker.core import ttl as loop_guard
from kbroker.core.delivery import Outcome, Result
from kbroker.core.events import CloudEvent
from kbroker.core.outcome_ring import RawAttempt
from kbroker.core.reporters import DispatchReporter, Silent
from kbroker.core.settings import DispatcherSettings
from kbroker.filter import records
from kbroker.filter.sender import Response, Sender, SendError
from opentelemetry.trace import Span

log = logging.getLogger(__name__)

ERROR_DATA_MAX = 1024
DLS_RETRY_FLOOR = 1.0  # seconds: the least wait between rounds of a failing dead-letter sink
DLS_RETRY_CAP = 30.0


@dataclass(slots=True)
class Failure:
    status: int | None
    destination: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""  # why there was no response (status None), for the log


_TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(slots=True)
class Dispatcher:
    sender: Sender
    settings: DispatcherSettings = field(default_factory=DispatcherSettings)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], float] = time.time
    hooks: DispatchReporter = field(default_factory=Silent)
    tracing: telemetry.Tracing = field(default_factory=telemetry.disabled)
    # Retry / dead-letter / DLS-failure lines, limited per trigger and kind of line (None: the
    # limits in `settings`).
    log_limiter: logs.RateLimiter | None = None
    # Each finished event's outcome and attempts, per trigger (the console's and /status's).
    recorder: records.Recorder = field(default_factory=records.Recorder)
    _limiter: logs.RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self._limiter = self.log_limiter or logs.RateLimiter(
            s.log_burst, s.log_per_interval, s.log_interval
        )

    def flush_log(self) -> None:
        """Write how many delivery lines the rate limit held back and no later line reported
        (at shutdown: the count would otherwise be lost)."""
        logs.flush(log, self._limiter)

    async def dispatch(
        self,
        event: CloudEvent,
        trigger: contract.Trigger,
        broker: contract.Broker,
        extra_headers: tuple[tuple[str, str], ...] = (),
        arrival: float = 0.0,
    ) -> Result:
        spec = trigger.delivery
        ttl = loop_guard.parse(event.attributes)
        outgoing = CloudEvent(loop_guard.without(event.attributes), event.data)
        headers, body = _encode(outgoing, spec)
        span: Span | None = None
        if self.tracing.enabled:
            # The envelope's context is our parent; each attempt sends its own span's context.
            trace = dict(h for h in extra_headers if h[0] in _TRACE_HEADERS)
            extra_headers = tuple(h for h in extra_headers if h[0] not in _TRACE_HEADERS)
            span = self.tracing.trigger(
                trigger, broker, event, trace.get("traceparent"), trace.get("tracestate")
            )
        headers += [("prefer", "reply"), ("kn-namespace", trigger.namespace), *extra_headers]
        timeout = spec.timeout or self.settings.default_timeout
        total = delivery.attempts(spec)
        attempts_made = 0
        ring = self.recorder.ring(trigger)
        trail: list[RawAttempt] = []
        while True:
            failure = await self._attempt(
                trigger, broker, headers, body, timeout, ttl, span, attempts_made, trail
            )
            attempts_made += 1
            if failure is None:
                result = Result(Outcome.DELIVERED, attempts_made, 200)
                self.hooks.finished(trigger, result, arrival)
                records.finish(ring, event, result, trail, self.now(), arrival)
                if span is not None:
                    telemetry.end_trigger(span, result.outcome.value, False)
                return result
            if attempts_made >= total or not delivery.is_retryable(failure.status):
                break
            self.hooks.retry(trigger)
            wait = delivery.next_wait(
                spec,
                attempts_made - 1,  # the 0-based index of the attempt that just failed
                failure.status,
                failure.headers,
                self.now(),
                self.settings.max_backoff,
            )
            self._log(
                logging.INFO,
                "retry",
                "delivery failed, retrying",
                trigger,
                event,
                attempt=attempts_made,
                attempts=total,
                status=failure.status,
                error=failure.error,
                destination=failure.destination,
                next_delay=round(wait, 3),
            )
            if wait > 0:
                ring.waiting(id(trail), self.now() + wait)
                try:
                    await self.sleep(wait)
                finally:
                    ring.resumed(id(trail))
        if not spec.dead_letter_uri:
            self._log(
                logging.WARNING,
                "dropped",
                "event dropped: delivery failed and no dead-letter sink is set",
                trigger,
                event,
                attempts=attempts_made,
                status=failure.status,
                error=failure.error,
                destination=failure.destination,
            )
            result = Result(Outcome.DROPPED, attempts_made, failure.status)
        else:
            await self._dead_letter(event, trigger, spec, failure, span, trail)
            self._log(
                logging.WARNING,
                "dead_letter",
                "event dead-lettered",
                trigger,
                event,
                attempts=attempts_made,
                status=failure.status,
                error=failure.error,
                destination=failure.destination,
                dls_url=spec.dead_letter_uri,
            )
            result = Result(Outcome.DEAD_LETTERED, attempts_made, failure.status)
        self.hooks.finished(trigger, result, arrival)
        records.finish(ring, event, result, trail, self.now(), arrival)
        if span is not None:
            telemetry.end_trigger(span, result.outcome.value, True)
        return result

    async def _attempt(
        self,
        trigger: contract.Trigger,
        broker: contract.Broker,
        headers: list[tuple[str, str]],
        body: bytes,
        timeout: float,
        ttl: int | None,
        parent: Span | None = None,
        attempt: int = 0,
        trail: list[RawAttempt] | None = None,
    ) -> Failure | None:
        send_span = None
        if parent is not None:
            send_span = self.tracing.send(parent, trigger.subscriber_uri, attempt + 1)
            headers = _with_context(headers, send_span)
        started = time.perf_counter()
        at = self.now()
        try:
            resp = await self.sender.send(trigger.subscriber_uri, headers, body, timeout)
        except SendError as exc:
            took = time.perf_counter() - started
            self.hooks.attempt(trigger, None, took)
            if send_span is not None:
                telemetry.end(send_span, None)
            log.debug("delivery to %s failed: %s", trigger.subscriber_uri, exc)
            error = str(exc) or type(exc).__name__
            if trail is not None:
                records.note(trail, at, None, took, error)
            return Failure(None, trigger.subscriber_uri, error=error)
        took = time.perf_counter() - started
        self.hooks.attempt(trigger, resp.status, took)
        if trail is not None:
            records.note(trail, at, resp.status, took)
        if send_span is not None:
            telemetry.end(send_span, resp.status, not delivery.is_success(resp.status))
        if not delivery.is_success(resp.status):
            return Failure(resp.status, trigger.subscriber_uri, resp.body, resp.headers)
        return await self._reply(resp, trigger, broker, ttl, send_span, trail)

    async def _reply(
        self,
        resp: Response,
        trigger: contract.Trigger,
        broker: contract.Broker,
        ttl: int | None,
        parent: Span | None = None,
        trail: list[RawAttempt] | None = None,
    ) -> Failure | None:
        target = trigger.reply_address(broker)  # a Subscription without a reply: ""
        if not target or not _claims_event(resp):
            return None
        try:
            replies = events.decode_http(resp.raw_headers, resp.body)
        except events.EventError as exc:
            log.info("trigger %s/%s: invalid reply: %s", trigger.namespace, trigger.name, exc)
            return Failure(502, trigger.subscriber_uri, str(exc).encode(), error=str(exc))
        remaining = loop_guard.next_hop(ttl)
        if remaining is None:
            log.warning(
                "trigger %s/%s: reply dropped, %s exhausted (event loop?)",
                trigger.namespace,
                trigger.name,
                loop_guard.EXTENSION,
            )
            return None
        for reply in replies:
            if trigger.kind == contract.TRIGGER:  # a channel's events carry no extension
                loop_guard.stamp(reply.attributes, remaining)
            headers, body = events.encode_binary(reply)
            span = None
            if parent is not None:
                # The reply continues this trace: the next ingress span is the reply span's child.
                span = self.tracing.reply(parent, target)
                headers = _with_context(headers, span)
            try:
                stored = await self.sender.send(target, headers, body, 30.0)
            except SendError as exc:
                if span is not None:
                    telemetry.end(span, None)
                return Failure(None, target, error=str(exc) or type(exc).__name__)
            if span is not None:
                telemetry.end(span, stored.status, not delivery.is_success(stored.status))
            if trail is not None:
                records.note(trail, self.now(), stored.status, 0.0, target="reply")
            if not delivery.is_success(stored.status):
                return Failure(stored.status, target, stored.body, stored.headers)
        return None

    async def _dead_letter(
        self,
        event: CloudEvent,
        trigger: contract.Trigger,
        spec: contract.DeliverySpec,
        failure: Failure,
        parent: Span | None = None,
        trail: list[RawAttempt] | None = None,
    ) -> None:
        assert spec.dead_letter_uri is not None
        if parent is None:
            await self._dead_letter_rounds(event, trigger, spec, failure, [], trail)
            return
        span = self.tracing.dead_letter(parent, spec.dead_letter_uri)
        status: int | None = None
        try:
            status = await self._dead_letter_rounds(
                event, trigger, spec, failure, _with_context([], span), trail
            )
        finally:
            telemetry.end(span, status, status is None)

    async def _dead_letter_rounds(
        self,
        event: CloudEvent,
        trigger: contract.Trigger,
        spec: contract.DeliverySpec,
        failure: Failure,
        trace_headers: list[tuple[str, str]],
        trail: list[RawAttempt] | None = None,
    ) -> int:
        """Until the sink takes the event; its final status."""
        assert spec.dead_letter_uri is not None
        attrs = loop_guard.without(event.attributes)  # as a subscriber sees it, and as Knative
        attrs["knativeerrordest"] = failure.destination
        if failure.status is not None:
            attrs["knativeerrorcode"] = str(failure.status)
        if failure.body:
            attrs["knativeerrordata"] = base64.b64encode(failure.body).decode()[:ERROR_DATA_MAX]
        headers, body = _encode(CloudEvent(attrs, event.data), spec)
        headers.append(("kn-namespace", trigger.namespace))
        headers += trace_headers
        timeout = spec.timeout or self.settings.default_timeout
        rounds = 0
        while True:
            error = ""
            for attempt in range(delivery.attempts(spec)):
                at = self.now()
                try:
                    resp = await self.sender.send(spec.dead_letter_uri, headers, body, timeout)
                    status: int | None = resp.status
                    error = ""
                except SendError as exc:
                    status, error = None, str(exc) or type(exc).__name__
                if trail is not None:
                    records.note(trail, at, status, self.now() - at, error, "dead-letter")
                if status is not None and delivery.is_success(status):
                    return status
                if attempt + 1 < delivery.attempts(spec):
                    wait = delivery.backoff(spec, attempt, self.settings.max_backoff)
                    if wait > 0:
                        await self.sleep(wait)
            rounds += 1
            self.recorder.ring(trigger).dls_failed()
            pause = min(DLS_RETRY_CAP, DLS_RETRY_FLOOR * 2**rounds)
            self._log(
                logging.ERROR,
                "dls_failure",
                "dead-letter sink failing, retrying",
                trigger,
                event,
                dls_url=spec.dead_letter_uri,
                round=rounds,
                status=status,
                error=error,
                next_delay=pause,
            )
            await self.sleep(pause)

    def _log(
        self,
        level: int,
        kind: str,
        msg: str,
        trigger: contract.Trigger,
        event: CloudEvent,
        **fields: object,
    ) -> None:
        """One delivery line, unless this trigger's lines of this kind are over their rate.
        Empty fields (no status when there was no response, no error text) are left out."""
        logs.emit(
            log,
            self._limiter,
            level,
            logs.key(kind=kind, namespace=trigger.namespace, trigger=trigger.name),
            msg,
            {
                "namespace": trigger.namespace,
                "broker": trigger.broker,
                "trigger": trigger.name,
                "event_id": event.get("id"),
                "event_type": event.get("type"),
                **{k: v for k, v in fields.items() if v is not None and v != ""},
            },
        )


def _encode(event: CloudEvent, spec: contract.DeliverySpec) -> tuple[list[tuple[str, str]], bytes]:
    if spec.format == "json":
        return events.encode_structured(event)
    return events.encode_binary(event)


def _with_context(headers: list[tuple[str, str]], span: Span) -> list[tuple[str, str]]:
    traceparent, tracestate = telemetry.context_of(span)
    if traceparent is None:
        return headers
    out = [h for h in headers if h[0] not in _TRACE_HEADERS]
    out.append(("traceparent", traceparent))
    if tracestate:
        out.append(("tracestate", tracestate))
    return out


def _claims_event(resp: Response) -> bool:
    if "ce-specversion" in resp.headers:
        return True
    return resp.headers.get("content-type", "").lower().startswith("application/cloudevents")
