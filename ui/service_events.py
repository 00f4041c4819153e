"""The console's events service: test filters on real events, and a live tail of a broker.

Pure functions and small classes over the `Events` and `Objects` ports, shared by the JSON API
(ui/api_events.py), the pages, and the CLI twins (`kbroker trigger test`, `kbroker tail`) that
call that API. Every verdict comes from `core/explain`, which agrees with the dispatcher's own
filter code, so "matches 7 of 50" here is what the dispatcher would deliver.

Bounds: a pasted event is decoded with core's own limits; the tester reads at most MAX_RECENT
events; a tail holds at most `settings.tail_buffer` events per viewer (drop-oldest, counted);
payloads are cut at PAYLOAD_CUT bytes and hidden when `settings.show_payloads` is off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kbroker.core import cesql, events, filters
from kbroker.core.channel import ChannelError, Envelope
from kbroker.core.contract import Contract, FilterSpec, Trigger
from kbroker.core.events import CloudEvent
from kbroker.core.explain import Explain, explain
from kbroker.core.tailbuffer import TailBuffer
from kbroker.ui.context import ConsoleContext
from kbroker.ui.ports import OpenableTail

MAX_RECENT = 500  # events the tester reads at most, whatever the request asks
PAYLOAD_CUT = 64 * 1024  # bytes of data shown per event
_DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


class BadRequest(ValueError):
    """What the user asked cannot be answered: a 4xx (unknown trigger, bad event, bad filter), or
    503 when the broker's channel cannot be read right now."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- filters from what the user sent --------------------------------------------------------


def filters_from_spec(spec: Mapping[str, Any]) -> tuple[FilterSpec, ...]:
    """The effective filter list of a Trigger `spec` (`filter.attributes` and `filters`), read
    the way the controller does (dialect `{}` passes everything, attributes sorted). Shape errors
    are a BadRequest: validation with messages is the controller's (Objects.validate)."""
    out: list[FilterSpec] = []
    legacy = spec.get("filter")
    if legacy:
        if not isinstance(legacy, Mapping):
            raise BadRequest("spec.filter: expected a mapping with `attributes`")
        attrs = legacy.get("attributes")
        if attrs:
            out.append(FilterSpec("attributes", _pairs(attrs, "spec.filter.attributes")))
    raw = spec.get("filters")
    if raw is not None:
        if not isinstance(raw, list):
            raise BadRequest("spec.filters: expected a list of filters")
        out.extend(_filter(f, f"spec.filters[{i}]") for i, f in enumerate(raw))
    return tuple(out)


def _pairs(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise BadRequest(f"{where}: expected a map of attribute name to string value")
    return tuple(sorted(raw.items()))


def _is_set(dialect: str, value: Any) -> bool:
    if dialect == "not":
        return value is not None
    return value is not None and value != {} and value != [] and value != ""


def _filter(raw: Any, where: str) -> FilterSpec:
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where}: expected a mapping with one dialect")
    unknown = sorted(str(k) for k in raw if k not in _DIALECTS)
    chosen = [d for d in _DIALECTS if _is_set(d, raw.get(d))]
    if unknown or len(chosen) > 1:
        raise BadRequest(f"{where}: one dialect of {', '.join(_DIALECTS)} per filter")
    if not chosen:
        return FilterSpec("all")  # `{}` passes everything, as in Knative
    dialect = chosen[0]
    value = raw[dialect]
    at = f"{where}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        return FilterSpec(dialect, _pairs(value, at))
    if dialect in ("all", "any"):
        if not isinstance(value, list):
            raise BadRequest(f"{at}: expected a list of filters")
        return FilterSpec(
            dialect, children=tuple(_filter(c, f"{at}[{i}]") for i, c in enumerate(value))
        )
    if dialect == "not":
        return FilterSpec("not", children=(_filter(value, at),))
    if not isinstance(value, str):
        raise BadRequest(f"{at}: expected a CESQL expression string")
    return FilterSpec("cesql", expression=value)


def trigger_of(contract: Contract, namespace: str, name: str) -> Trigger:
    for t in contract.triggers:
        if t.namespace == namespace and t.name == name:
            return t
    raise BadRequest(f"trigger {namespace}/{name} is not in the running configuration", 404)


# --- pasted events ---------------------------------------------------------------------------


def parse_structured(body: bytes | str) -> list[CloudEvent]:
    """A pasted JSON-format event, or a JSON array of them (a batch)."""
    raw = body.encode() if isinstance(body, str) else body
    ctype = b"application/cloudevents+json"
    if raw.lstrip()[:1] == b"[":
        ctype = b"application/cloudevents-batch+json"
    return _decode([(b"content-type", ctype)], raw)


def parse_binary(headers: Mapping[str, str], body: bytes | str) -> CloudEvent:
    """A pasted binary-mode event: `ce-` headers (and Content-Type) plus the body as data."""
    raw = body.encode() if isinstance(body, str) else body
    pairs = [(k.strip().lower().encode("latin-1"), v.strip().encode()) for k, v in headers.items()]
    found = _decode(pairs, raw)
    if len(found) != 1:
        raise BadRequest("binary mode carries exactly one event")
    return found[0]


def parse_headers_text(text: str) -> dict[str, str]:
    """`Name: value` lines, as copied from curl -v or a browser's network tab."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise BadRequest(f"header line {n}: expected `Name: value`")
        out[name.strip()] = value.strip()
    return out


def _decode(headers: list[tuple[bytes, bytes]], body: bytes) -> list[CloudEvent]:
    try:
        return events.decode_http(headers, body)
    except events.UnsupportedMediaType as exc:
        raise BadRequest(str(exc), 415) from None
    except events.PayloadTooLarge as exc:
        raise BadRequest(str(exc), 413) from None
    except events.EventError as exc:
        raise BadRequest(f"not a CloudEvent: {exc}") from None


# --- the filter tester ------------------------------------------------------------------------


async def recent(
    ctx: ConsoleContext, namespace: str, broker: str, limit: int
) -> list[Envelope] | None:
    """The broker's last `limit` events (None: the channel keeps no history); BadRequest 404 for
    an unknown broker, 503 when the channel cannot be read now."""
    if ctx.objects.contract().broker(f"{namespace}/{broker}") is None:
        raise BadRequest(f"broker {namespace}/{broker} is not in the running configuration", 404)
    try:
        return await ctx.events.recent(namespace, broker, max(1, min(limit, MAX_RECENT)))
    except ChannelError as exc:
        raise BadRequest(f"cannot read broker {namespace}/{broker}: {exc}", 503) from None


class Matchers:
    """The current contract's Triggers compiled once per contract, for "matched by" columns."""

    def __init__(self) -> None:
        self._contract: Contract | None = None
        self._by_broker: dict[str, list[tuple[str, filters.Predicate]]] = {}

    def of(self, contract: Contract, broker_key: str) -> list[tuple[str, filters.Predicate]]:
        if contract is not self._contract:
            self._contract = contract
            self._by_broker = {}
        found = self._by_broker.get(broker_key)
        if found is None:
            found = self._by_broker[broker_key] = [
                (t.name, filters.build(t.filters)) for t in contract.triggers_of(broker_key)
            ]
        return found

    def matching(
        self, contract: Contract, broker_key: str, attrs: filters.Attributes, skip: str = ""
    ) -> list[str]:
        return [n for n, p in self.of(contract, broker_key) if n != skip and p(attrs)]


@dataclass(frozen=True, slots=True)
class FilterRow:
    envelope: Envelope
    explain: Explain
    others: tuple[str, ...]  # other Triggers of the broker matching this event

    @property
    def matched(self) -> bool:
        return self.explain.matched


@dataclass(frozen=True, slots=True)
class FilterResult:
    rows: tuple[FilterRow, ...]
    source: str  # "recent" | "pasted"
    history: bool = True  # False: the backend cannot read back stored events
    overlap: dict[str, int] = field(default_factory=dict)  # other trigger -> events it matches

    @property
    def matched(self) -> int:
        return sum(r.matched for r in self.rows)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def summary(self) -> str:
        if not self.history:
            return "this broker's channel keeps no history to test against; paste an event"
        return f"matches {self.matched} of {self.total}"


async def test_filter(
    ctx: ConsoleContext,
    namespace: str,
    broker: str,
    specs: Sequence[FilterSpec],
    *,
    pasted: Sequence[CloudEvent] | None = None,
    limit: int | None = None,
    skip: str = "",
    matchers: Matchers | None = None,
) -> FilterResult:
    """`specs` against the broker's last `limit` events (or the `pasted` ones). `skip` names the
    Trigger under test, left out of the overlap."""
    contract = ctx.objects.contract()
    key = f"{namespace}/{broker}"
    if contract.broker(key) is None:
        raise BadRequest(f"broker {key} is not in the running configuration", 404)
    history = True
    if pasted is not None:
        envelopes = [Envelope(e, 0.0) for e in pasted]
        source = "pasted"
    else:
        n = max(1, min(limit or ctx.settings.recent_limit, MAX_RECENT))
        found = await recent(ctx, namespace, broker, n)
        history = found is not None
        envelopes = list(found or ())
        source = "recent"
    m = matchers or Matchers()
    rows: list[FilterRow] = []
    overlap: dict[str, int] = {}
    for env in envelopes:
        attrs = env.event.attributes
        others = tuple(m.matching(contract, key, attrs, skip))
        for name in others:
            overlap[name] = overlap.get(name, 0) + 1
        rows.append(FilterRow(env, explain(specs, attrs), others))
    return FilterResult(tuple(rows), source, history, overlap)


test_filter.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function


def result_json(result: FilterResult, settings_show_payloads: bool) -> dict[str, Any]:
    return {
        "source": result.source,
        "history": result.history,
        "matched": result.matched,
        "total": result.total,
        "summary": result.summary,
        "overlap": result.overlap,
        "rows": [
            {
                **event_json(r.envelope, settings_show_payloads),
                "matched": r.matched,
                "explain": r.explain.to_json(),
                "others": list(r.others),
            }
            for r in result.rows
        ],
    }


# --- rendering events -------------------------------------------------------------------------


def _is_json(ctype: str) -> bool:
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def render_payload(event: CloudEvent, show: bool) -> dict[str, Any]:
    """The event's data for people: pretty JSON, text, or hex for binary; cut at PAYLOAD_CUT."""
    data = event.data or b""
    out: dict[str, Any] = {"size": len(data)}
    if not show:
        out["hidden"] = True
        return out
    cut = data[:PAYLOAD_CUT]
    out["truncated"] = len(data) > len(cut)
    ctype = str(event.attributes.get("datacontenttype", ""))
    if not out["truncated"] and (_is_json(ctype) or not ctype):
        try:
            pretty = orjson.dumps(orjson.loads(cut), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            pass
        else:
            out.update(kind="json", text=pretty)
            return out
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError:
        out.update(kind="hex", text=cut.hex(" "))
        return out
    printable = all(ch.isprintable() or ch in "\n\r\t" for ch in text)
    out.update(kind="text", text=text) if printable else out.update(kind="hex", text=cut.hex(" "))
    return out


def event_json(env: Envelope, show_payloads: bool) -> dict[str, Any]:
    attrs = {k: v for k, v in env.event.attributes.items()}
    return {
        "id": env.event.attributes.get("id"),
        "type": env.event.attributes.get("type"),
        "source": env.event.attributes.get("source"),
        "subject": env.event.attributes.get("subject"),
        "time": env.event.attributes.get("time"),
        "arrival": env.arrival or None,
        "attributes": attrs,
        "data": render_payload(env.event, show_payloads),
    }


# --- the live tail ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailItem:
    envelope: Envelope
    matched_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TailBatch:
    items: tuple[TailItem, ...]
    dropped: int  # events dropped for this viewer so far (buffer full)


def compile_tail_filter(expression: str) -> filters.Predicate | None:
    """The tail's server-side CESQL filter; None for none; BadRequest when it is not CESQL."""
    if not expression.strip():
        return None
    try:
        return cesql.compile_filter(expression)
    except cesql.CesqlError as exc:
        raise BadRequest(f"filter: {exc}") from None


async def open_tail(
    ctx: ConsoleContext,
    namespace: str,
    broker: str,
    expression: str = "",
    *,
    idle: float = 1.0,
    capacity: int | None = None,
) -> AsyncIterator[TailBatch]:
    """Batches of events appended from now on, with the Triggers matching each, and an empty
    batch every `idle` s (so callers can report drops and notice gone clients). Returns once the
    reader is positioned (BadRequest for an unknown broker or a bad filter, ChannelError when the
    channel cannot tail). Closing the iterator stops the reader and closes the channel's tail."""
    key = f"{namespace}/{broker}"
    if ctx.objects.contract().broker(key) is None:
        raise BadRequest(f"broker {key} is not in the running configuration", 404)
    predicate = compile_tail_filter(expression)
    source = ctx.events.tail(namespace, broker)
    if isinstance(source, OpenableTail):
        try:
            await source.opened()
        except BaseException:
            await _close(source)
            raise
    buffer: TailBuffer[TailItem] = TailBuffer(capacity or ctx.settings.tail_buffer)
    return _run_tail(ctx, key, source, predicate, buffer, idle)


async def _close(source: AsyncIterator[Envelope]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _run_tail(
    ctx: ConsoleContext,
    key: str,
    source: AsyncIterator[Envelope],
    predicate: filters.Predicate | None,
    buffer: TailBuffer[TailItem],
    idle: float,
) -> AsyncIterator[TailBatch]:
    matchers = Matchers()

    async def read() -> None:
        try:
            async for env in source:
                attrs = env.event.attributes
                if predicate is not None and not predicate(attrs):
                    continue
                contract = ctx.objects.contract()
                buffer.push(TailItem(env, tuple(matchers.matching(contract, key, attrs))))
        finally:
            buffer.close()

    reader = asyncio.create_task(read(), name=f"console-tail-{key}")
    try:
        while True:
            items = await buffer.get(timeout=idle)
            if not items and buffer.closed:
                failure = reader.exception() if reader.done() else None
                if failure is not None:
                    raise failure
                return
            yield TailBatch(tuple(items), buffer.dropped)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await _close(source)


def tail_item_json(item: TailItem, show_payloads: bool) -> dict[str, Any]:
    return {**event_json(item.envelope, show_payloads), "matchedBy": list(item.matched_by)}
