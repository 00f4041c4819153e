"""Dead letters: what a dead-letter Broker holds, why each event is there, and sending it again.

The recommended pattern in plain Knative YAML is a Trigger (or Broker) whose `deadLetterSink`
is another Broker. Its events are then stored in that Broker's log, with the extensions the
dispatcher adds: `knativeerrordest` (the URL that failed), `knativeerrorcode` (its last HTTP
status; absent when there was no response) and `knativeerrordata` (the start of its answer,
base64). This module lists them decoded, joins the attempt count from the failing Trigger's
outcome ring, filters by Trigger/error/time, and sends events again:

- **targeted redrive**: to the one failing Trigger's subscriber (through the dispatcher, with that
  Trigger's delivery spec; the id is kept so a subscriber can deduplicate; the outcome recorded);
- **republish**: back to the original Broker, where every matching Trigger gets it again (the
  console says so before doing it);
- **bulk**: either of them for many events, at a bounded rate and up to a cap.

The `knativeerror*` extensions are removed before sending: they describe the failed delivery,
not the event, and the subscriber saw the event without them the first time (Knative adds them
only on the way to the sink and defines no way back, so the event as first sent is the target).

For a dead-letter sink that is a plain URI nothing can be read back; what the dispatcher knows
(each dead-lettered event and the sink's answers, from the ring) is all that is shown, and
`uri_sink` says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from kbroker.core import contract, logs
from kbroker.core.events import CloudEvent
from kbroker.core.outcomes import Outcome, TriggerRecords, Verdict
from kbroker.ui.context import ConsoleContext

log = logging.getLogger(__name__)
_limiter = logs.RateLimiter()  # republish lines, per target broker

ERROR_EXTENSIONS = ("knativeerrorcode", "knativeerrordest", "knativeerrordata")
MAX_LIST = 1000  # dead letters read from the log at most per request
MAX_REDRIVE = 500  # events one bulk request may send
DEFAULT_RATE = 10.0  # events per second of a bulk redrive
MAX_RATE = 100.0
REPUBLISH_WARNING = (
    "Republishing appends the event to broker {broker} again: every Trigger of it whose filter "
    "matches gets it, including subscribers that already received it. To send it only to the "
    "Trigger that failed, use redrive."
)


class DeadLetterError(Exception):
    """A request the service cannot do, with the HTTP status it deserves."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: CloudEvent
    time: float  # when the dead-letter broker stored it (epoch seconds)
    code: int | None  # knativeerrorcode: the failing destination's last status
    dest: str  # knativeerrordest: the URL that failed
    data: str  # knativeerrordata, decoded (text, or "<N bytes, binary>")
    trigger: str | None  # "namespace/name" of the Trigger that failed, when it can be told
    attempts: int | None  # from that Trigger's outcome ring, while the outcome is still in it

    @property
    def id(self) -> str:
        return str(self.event.get("id") or "")


@dataclass(frozen=True, slots=True)
class Listing:
    namespace: str
    broker: str
    letters: tuple[DeadLetter, ...]  # oldest first
    triggers: tuple[str, ...]  # "ns/name" of the Triggers dead-lettering into this Broker
    note: str = ""  # why nothing can be listed, when so
    scanned: int = 0  # events read from the log


@dataclass(frozen=True, slots=True)
class Query:
    trigger: str | None = None  # "name" (in the broker's namespace) or "ns/name"
    code: str | None = None  # "500", "5xx", "none" (no response)
    since: float | None = None
    until: float | None = None
    limit: int = MAX_LIST


@dataclass(slots=True)
class RedriveReport:
    outcomes: list[Outcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids asked for but not in the log
    capped: int = 0  # events left out by the cap
    published: int = 0  # events appended to a Broker (republish)
    warning: str = ""


# -- resolving -------------------------------------------------------------------------------------
def _norm(url: str) -> str:
    return url.strip().rstrip("/").lower()


def sink_broker(c: contract.Contract, dead_letter_uri: str | None) -> contract.Broker | None:
    """The Broker whose address is `dead_letter_uri`, if it is one of ours."""
    if not dead_letter_uri:
        return None
    want = _norm(dead_letter_uri)
    for b in c.brokers:
        if _norm(b.address) == want:
            return b
    return None


def feeding(c: contract.Contract, namespace: str, broker: str) -> list[contract.Trigger]:
    """The Triggers whose effective dead-letter sink is the Broker `namespace/broker`."""
    out = []
    for t in c.triggers:
        b = sink_broker(c, t.delivery.dead_letter_uri)
        if b is not None and (b.namespace, b.name) == (namespace, broker):
            out.append(t)
    return out


def find_trigger(c: contract.Contract, namespace: str, name: str) -> contract.Trigger:
    if "/" in name:
        namespace, name = name.split("/", 1)
    for t in c.triggers:
        if (t.namespace, t.name) == (namespace, name):
            return t
    raise DeadLetterError(f"no Trigger {namespace}/{name}", 404)


def uri_sink(
    trigger: contract.Trigger, records: TriggerRecords | None
) -> tuple[str, list[Outcome]]:
    """For a Trigger whose dead-letter sink is a plain URI: an honest note and what the
    dispatcher saw of its dead letters (each outcome with the sink's answers)."""
    uri = trigger.delivery.dead_letter_uri or ""
    note = (
        f"The dead-letter sink of {trigger.namespace}/{trigger.name} is {uri}, not a Broker: "
        "what it stored cannot be read back. Shown: the dead-lettered events this process "
        "still remembers and what the sink answered. Point the sink at a Broker to list, "
        "inspect and redrive dead letters."
    )
    if not uri:
        name = f"{trigger.namespace}/{trigger.name}"
        note = f"{name} has no dead-letter sink: events whose delivery fails are dropped."
    failed = (Verdict.DEAD_LETTERED, Verdict.DLS_FAILED)
    sent = [o for o in (records.recent if records else ()) if o.verdict in failed]
    return note, sent


# -- decoding ----------------------------------------------------------------------------------
def decode_data(value: object) -> str:
    """`knativeerrordata` as text: base64 (possibly cut short by the dispatcher's limit)."""
    if value is None or value == "":
        return ""
    text = str(value)
    whole = text[: len(text) - len(text) % 4]
    try:
        raw = base64.b64decode(whole, validate=True)
    except (binascii.Error, ValueError):
        return text  # not base64: shown as it came
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes, binary>"


def _code(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def stripped(event: CloudEvent) -> CloudEvent:
    """The event without the dead-letter extensions, as the subscriber first saw it."""
    attrs = {k: v for k, v in event.attributes.items() if k not in ERROR_EXTENSIONS}
    return CloudEvent(attrs, event.data)


def _attempts(records: TriggerRecords | None, event_id: str) -> int | None:
    if records is None:
        return None
    for o in reversed(records.recent):
        if o.event_id == event_id and o.verdict is not Verdict.DELIVERED:
            return sum(1 for a in o.attempts if a.target == "subscriber")
    return None


def _code_matches(code: int | None, want: str) -> bool:
    w = want.strip().lower()
    if w in ("none", "no response", ""):
        return code is None if w else True
    if code is None:
        return False
    if len(w) == 3 and w.endswith("xx") and w[0].isdigit():
        return code // 100 == int(w[0])
    return str(code) == w


# -- listing -------------------------------------------------------------------------------------
async def list_dead_letters(
    ctx: ConsoleContext, namespace: str, broker: str, query: Query = Query()
) -> Listing:
    c = ctx.objects.contract()
    if not any((b.namespace, b.name) == (namespace, broker) for b in c.brokers):
        raise DeadLetterError(f"no Broker {namespace}/{broker}", 404)
    sources = feeding(c, namespace, broker)
    names = tuple(f"{t.namespace}/{t.name}" for t in sources)
    by_dest: dict[str, contract.Trigger] = {}
    for source in sources:
        by_dest.setdefault(_norm(source.subscriber_uri), source)
    wanted: contract.Trigger | None = None
    if query.trigger:
        wanted = find_trigger(c, namespace, query.trigger)
    envelopes = await ctx.events.recent(namespace, broker, min(query.limit, MAX_LIST))
    if envelopes is None:
        note = (
            f"The backend of {namespace}/{broker} keeps no history (RabbitMQ): its dead letters "
            "cannot be listed here; Triggers on it receive them."
        )
        return Listing(namespace, broker, (), names, note)
    letters = []
    for env in envelopes:
        ev = env.event
        dest = str(ev.get("knativeerrordest") or "")
        t: contract.Trigger | None = by_dest.get(_norm(dest)) if dest else None
        if wanted is not None:
            if _norm(dest) != _norm(wanted.subscriber_uri):
                continue
            t = wanted
        code = _code(ev.get("knativeerrorcode"))
        if query.code is not None and not _code_matches(code, query.code):
            continue
        if query.since is not None and env.arrival < query.since:
            continue
        if query.until is not None and env.arrival > query.until:
            continue
        records = None if t is None else ctx.deliveries.records(t.namespace, t.name)
        event_id = str(ev.get("id") or "")
        letters.append(
            DeadLetter(
                event=ev,
                time=env.arrival,
                code=code,
                dest=dest,
                data=decode_data(ev.get("knativeerrordata")),
                trigger=None if t is None else f"{t.namespace}/{t.name}",
                attempts=_attempts(records, event_id),
            )
        )
    return Listing(namespace, broker, tuple(letters), names, scanned=len(envelopes))


def _select(
    listing: Listing, ids: Sequence[str] | None, cap: int
) -> tuple[list[DeadLetter], RedriveReport]:
    report = RedriveReport()
    if ids is None:
        chosen = list(listing.letters)
    else:
        by_id = {d.id: d for d in listing.letters}
        wanted = list(dict.fromkeys(ids))
        chosen = [by_id[i] for i in wanted if i in by_id]
        report.missing = [i for i in wanted if i not in by_id]
    if len(chosen) > cap:
        report.capped = len(chosen) - cap
        chosen = chosen[:cap]
    return chosen, report


Sleep = Callable[[float], Awaitable[None]]


class Pace:
    """At most `rate` sends per second: the k-th send starts no sooner than k/rate after the
    first."""

    def __init__(
        self, rate: float, sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0 < rate <= MAX_RATE:
            raise DeadLetterError(f"rate must be more than 0 and at most {MAX_RATE:g} events/s")
        self.interval = 1.0 / rate
        self.sleep = sleep
        self.clock = clock
        self._next: float | None = None

    async def wait(self) -> None:
        now = self.clock()
        if self._next is not None and self._next > now:
            await self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def _check_cap(cap: int) -> int:
    if not 1 <= cap <= MAX_REDRIVE:
        raise DeadLetterError(f"the number of events must be between 1 and {MAX_REDRIVE}")
    return cap


async def redrive(
    ctx: ConsoleContext,
    namespace: str,
    broker: str,
    trigger: str,
    ids: Sequence[str] | None,
    rate: float = DEFAULT_RATE,
    cap: int = MAX_REDRIVE,
    sleep: Sleep = asyncio.sleep,
) -> RedriveReport:
    """Send dead letters of the Broker `namespace/broker` to `trigger`'s subscriber only.

    `ids`: those events (wherever they failed: the operator chose them); None: every dead
    letter of that Trigger (matched by `knativeerrordest`), oldest first, up to `cap`."""
    pace = Pace(rate, sleep)
    c = ctx.objects.contract()
    t = find_trigger(c, namespace, trigger)
    query = Query() if ids is not None else Query(trigger=f"{t.namespace}/{t.name}")
    listing = await list_dead_letters(ctx, namespace, broker, query)
    chosen, report = _select(listing, ids, _check_cap(cap))
    for letter in chosen:
        await pace.wait()
        try:
            report.outcomes += await ctx.deliveries.redrive(
                t.namespace, t.name, [stripped(letter.event)]
            )
        except LookupError as exc:
            raise DeadLetterError(str(exc), 404) from None
        except RuntimeError as exc:  # a port that cannot redrive (cluster mode): say so
            raise DeadLetterError(str(exc), 501) from None
    return report


async def republish(
    ctx: ConsoleContext,
    namespace: str,
    broker: str,
    to: str,
    ids: Sequence[str] | None,
    rate: float = DEFAULT_RATE,
    cap: int = MAX_REDRIVE,
    sleep: Sleep = asyncio.sleep,
) -> RedriveReport:
    """Append dead letters (stripped) to the Broker `to` ("name" in `namespace`, or "ns/name"):
    every matching Trigger of it gets them again (`warning` says so)."""
    pace = Pace(rate, sleep)
    ns, name = to.split("/", 1) if "/" in to else (namespace, to)
    c = ctx.objects.contract()
    target = next((b for b in c.brokers if (b.namespace, b.name) == (ns, name)), None)
    if target is None:
        raise DeadLetterError(f"no Broker {ns}/{name}", 404)
    if (ns, name) == (namespace, broker):
        raise DeadLetterError("republishing a dead letter to its own dead-letter Broker")
    listing = await list_dead_letters(ctx, namespace, broker)
    chosen, report = _select(listing, ids, _check_cap(cap))
    report.warning = REPUBLISH_WARNING.format(broker=f"{ns}/{name}")
    for letter in chosen:
        await pace.wait()
        await ctx.events.publish(ns, name, stripped(letter.event), target.default_durability)
        report.published += 1
        logs.emit(
            log,
            _limiter,
            logging.INFO,
            logs.key(kind="republish", namespace=ns, broker=name),
            "dead letter republished to a broker",
            {"namespace": ns, "broker": name, "from_broker": broker, "event_id": letter.id},
        )
    return report
