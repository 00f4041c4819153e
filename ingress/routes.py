"""POST /{namespace}/{broker}: look up, read, decode, TTL, append, answer.

A plain ASGI handler rather than a Starlette route: this is the hot path, and a framework's
request object, routing and response classes cost more than the work itself. Every answer follows
the CloudEvents HTTP binding: 202 once the channel says the events are safe at the chosen
durability; 400 invalid (naming the problem, and the batch index); 404 unknown broker; 405 other
methods (OPTIONS answers 200 with `Allow`, like Knative's ingress); 413 too large (checked against
Content-Length before reading, and while streaming); 415 unsupported format; 503 + Retry-After when
the channel cannot take the events in time, or when the bodies being read already hold the
process's body budget (`limits.BodyBudget`: checked against Content-Length before reading, and
per chunk for a chunked body; the rest of a refused body is read and dropped, never held); 507
when the broker's storage is full; 429 + Retry-After when the broker's quota (ingress/quota.py)
is exceeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from kbroker.core import contract, events, telemetry, ttl
from kbroker.core.channel import Channel, ChannelFull, ChannelUnavailable, Envelope, EventTooLarge
from kbroker.core.contract_source import ContractHolder
from kbroker.core.reporters import IngressReporter, Silent
from kbroker.core.settings import IngressSettings
from kbroker.ingress import auth, quota
from kbroker.ingress.deadlines import Deadlines
from kbroker.ingress.limits import BodyBudget
from kbroker.ingress.priority import DeliveryPriority
from opentelemetry.trace import Span
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)


DURABILITY_HEADER = b"kbroker-durability"
ARRIVAL = "knativearrivaltime"
_DURABILITIES = {d.value: d for d in contract.Durability}


class Reject(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class BrokerIngress:
    def __init__(
        self,
        settings: IngressSettings,
        channels: Mapping[str, Channel],
        holder: ContractHolder,
        observer: IngressReporter | None = None,
        tracing: telemetry.Tracing | None = None,
        priority: DeliveryPriority | None = None,
    ) -> None:
        self.settings = settings
        self.priority = priority  # delivery before ingress (one process running both)
        self.channels = channels
        self.holder = holder
        self.observer = observer or Silent()
        self.tracing = tracing or telemetry.disabled()
        self.retry_after = str(settings.retry_after).encode()
        self.deadlines = Deadlines(settings.append_timeout)
        self.budget = BodyBudget(settings.server.max_buffered_body_bytes)
        self._over_budget = ((b"retry-after", self.retry_after),)
        self._clock = ArrivalClock()
        self.auth = auth.Gate(holder)
        self.quotas = quota.Quotas()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ns: str, name: str) -> None:
        started = time.perf_counter()
        key = f"{ns}/{name}"
        try:
            status = await self._handle(scope, receive, send, ns, name, started)
        except auth.Denied as d:
            self.observer.denied(key, d.status, d.reason)
            self.observer.rejected(key, d.status, time.perf_counter() - started)
            await respond(send, d.status, d.message, d.headers)
            return
        except Reject as rej:
            self.observer.rejected(key, rej.status, time.perf_counter() - started)
            await respond(send, rej.status, rej.message, rej.headers)
            return
        if status is not None:
            self.observer.rejected(key, status, time.perf_counter() - started)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, ns: str, name: str, started: float
    ) -> int | None:
        method = scope["method"]
        if method == "OPTIONS":
            await respond(send, 200, "", _OPTIONS_HEADERS)
            return None
        if method != "POST":
            raise Reject(405, f"method {method} not allowed; POST CloudEvents here", _ALLOW)
        broker = self.holder.broker(f"{ns}/{name}")
        if broker is None:
            raise Reject(404, f"broker {ns}/{name} not found")
        channel = self.channels.get(broker.channel)
        if channel is None:
            raise Reject(
                503,
                f"broker {ns}/{name}: channel {broker.channel!r} is not running here",
                ((b"retry-after", self.retry_after),),
            )
        priority = self.priority
        gate = priority.gates.get(broker.key) if priority is not None else None
        if priority is not None and gate is not None and not await priority.admit(gate):
            raise Reject(
                503,
                f"broker {ns}/{name}: delivery is behind; retry later",
                ((b"retry-after", self.retry_after),),
            )
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        # authentication-oidc: an audience is set only when it is on (the only cost when off)
        subject = await self.auth.authenticate(headers, broker) if broker.audience else None
        durability = broker.default_durability
        limits = self.settings.limits
        traceparent = tracestate = None  # W3C context: the parent, or passed through as is
        length = 0
        for hname, hvalue in headers:
            if hname == b"content-length":
                try:
                    length = int(hvalue)
                except ValueError:
                    raise Reject(400, "invalid Content-Length header") from None
                if length > limits.max_body_bytes:
                    self.observer.refused("body_size")
                    raise Reject(
                        413,
                        f"body of {length} bytes is over the {limits.max_body_bytes}-byte limit",
                    )
            elif hname == DURABILITY_HEADER:
                d = _DURABILITIES.get(hvalue.decode("latin-1").strip().lower())
                if d is None:
                    raise Reject(400, "Kbroker-Durability must be one of none, leader, all")
                durability = d
            elif hname == b"traceparent":
                traceparent = hvalue.decode("latin-1")
            elif hname == b"tracestate":
                tracestate = hvalue.decode("latin-1")
        budget = self.budget
        if length and not budget.reserve(length):
            self.observer.refused("body_budget")
            raise Reject(503, _BUSY, self._over_budget)
        try:
            body = await read_body(receive, limits.max_body_bytes, budget, length)
        except Reject as rej:
            budget.release(length)
            if rej.status == 503:
                self.observer.refused("body_budget")
                rej.headers = self._over_budget
            elif rej.status == 413:
                self.observer.refused("body_size")
            raise
        except BaseException:
            budget.release(length)
            raise
        held = max(length, len(body))
        try:
            try:
                evs = events.decode_http(headers, body, limits)
            except events.UnsupportedMediaType as exc:
                raise Reject(415, str(exc)) from None
            except events.PayloadTooLarge as exc:
                raise Reject(413, str(exc)) from None
            except events.EventError as exc:
                raise Reject(400, str(exc)) from None
            if subject is not None:
                self.auth.authorize(broker, subject, evs)
            if not evs:
                await respond(send, 202, "")
                return None
            if broker.quota is not None and (
                wait := self.quotas.admit(broker, len(evs), len(body))
            ):
                raise Reject(
                    429,
                    f"broker {ns}/{name}: over its ingress quota; retry later",
                    ((b"retry-after", quota.retry_after(wait)),),
                )
            now = time.time()
            self._stamp(evs, now)
            span: Span | None = None
            if self.tracing.enabled:
                span = self.tracing.ingress(broker, evs, traceparent, tracestate, started)
                traceparent, tracestate = telemetry.context_of(span)
            envelopes = [Envelope(ev, now, traceparent, tracestate) for ev in evs]
            t0 = time.perf_counter()
            try:
                await self._append(channel, broker, envelopes, durability, t0)
            except Reject as rej:
                if span is not None:
                    telemetry.end(span, rej.status)
                raise
            t1 = time.perf_counter()
            await respond(send, 202, "")
            if span is not None:
                telemetry.end(span, 202)
            self.observer.accepted(broker, evs, len(body), t1 - started, t1 - t0)
            return None
        finally:
            budget.release(held)

    async def _append(
        self,
        channel: Channel,
        broker: contract.Broker,
        envelopes: list[Envelope],
        durability: contract.Durability,
        now: float,
    ) -> None:
        ns, name = broker.namespace, broker.name
        try:
            await self.deadlines.wait(channel.append(broker, envelopes, durability), now)
        except (TimeoutError, ChannelUnavailable) as exc:
            log.warning("broker %s/%s: append failed: %s", ns, name, exc or "timeout")
            raise Reject(
                503,
                "the broker cannot store events right now; retry later",
                ((b"retry-after", self.retry_after),),
            ) from None
        except ChannelFull:
            raise Reject(
                507,
                f"broker {ns}/{name}: storage full; retry later",
                ((b"retry-after", self.retry_after),),
            ) from None
        except EventTooLarge as exc:
            raise Reject(413, str(exc)) from None

    def _stamp(self, evs: list[events.CloudEvent], now: float) -> None:
        """Loop guard and arrival time, on every event of the request (all-or-nothing)."""
        arrival = None
        for index, ev in enumerate(evs):
            if not ttl.admit(ev.attributes, self.settings.max_ttl):
                where = f"event {index}: " if len(evs) > 1 else ""
                raw = ev.attributes[ttl.EXTENSION]
                raise Reject(
                    400, f"{where}{ttl.EXTENSION} exhausted or invalid ({raw!r}): event loop?"
                )
            if self.settings.add_arrival_time and ARRIVAL not in ev.attributes:
                if arrival is None:
                    arrival = self._clock.format(now)
                ev.attributes[ARRIVAL] = arrival


class ArrivalClock:
    """knativearrivaltime values: RFC 3339 UTC with microseconds, as Knative's ingress sets them.
    The date and time of day are formatted once per second and reused: building a timezone-aware
    datetime and its isoformat() per request cost ~3 µs, most of `_stamp`."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((epoch - second) * 1_000_000):06d}Z"


_BUSY = "too many request bodies in flight; retry later"


async def read_body(receive: Receive, limit: int, budget: BodyBudget, held: int) -> bytes:
    """The whole body; `held` bytes of it are already reserved in `budget` (Content-Length),
    and bytes beyond those (a chunked body) are reserved as they arrive: on success the caller
    owns max(held, len(body)) of the budget, on any exception only `held`."""
    chunks: list[bytes] = []
    size = 0
    extra = 0  # reserved here, beyond `held`
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Reject(400, "client disconnected before the body was complete")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise Reject(413, f"body over the {limit}-byte limit")
                if size > held + extra:
                    more = size - held - extra
                    if not budget.reserve(more):
                        raise Reject(503, _BUSY)
                    extra += more
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        budget.release(extra)
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_ALLOW = ((b"allow", b"POST, OPTIONS"),)
_OPTIONS_HEADERS = (
    (b"allow", b"POST, OPTIONS"),
    (b"webhook-allowed-origin", b"*"),
    (b"webhook-allowed-rate", b"*"),
)


async def respond(
    send: Send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = (message + "\n").encode() if message else b""
    raw = [
        (b"content-length", str(len(body)).encode()),
        *(((b"content-type", b"text/plain; charset=utf-8"),) if body else ()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
