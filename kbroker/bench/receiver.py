"""The built-in subscriber: one HTTP endpoint per trigger that accounts for every event it gets.

Why a raw asyncio server with httptools instead of aiohttp or an ASGI app: the receiver shares the
machine with the broker and the generator, and its per-request cost must stay small next to
theirs. It answers every delivery itself and keeps, per trigger: deliveries, duplicates, the
end-to-end latency histogram (now minus the event's `benchts`, the generator's *intended* send
time), the failures it answered on purpose and the gaps between retries of the same event
(the broker's real backoff), and dead letters. Paths:

    POST /t/<trigger>     a subscriber; 202, or 503 for a configured fraction of requests
    POST /dls/<trigger>   that trigger's dead-letter sink; 202
    POST /v1/traces       an OTLP/HTTP sink for the broker's spans; 200, only counted

Loss is computed per step against a window of sequence numbers the coordinator announces with
`expect`; `collect` returns the counts and starts a new window. Driven over stdin/stdout
(`kbroker.bench.worker`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import orjson

from kbroker.bench import worker
from kbroker.bench.histogram import Histogram

_ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
_FAILED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
_OTLP = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """Which events a trigger should get (benchseq % groups == residue) and how often to fail."""

    name: str
    groups: int = 1
    residue: int = 0
    fail: float = 0.0  # fraction of requests answered 503

    def matches(self, seq: int) -> bool:
        return seq % self.groups == self.residue

    def count_in(self, lo: int, hi: int) -> int:
        """How many sequence numbers in [lo, hi) this trigger matches."""
        first = lo + (self.residue - lo) % self.groups
        return max(0, -(-(hi - first) // self.groups)) if first < hi else 0


@dataclass(slots=True)
class TriggerState:
    spec: TriggerSpec
    lo: int = 0
    hi: int = 0
    seen: bytearray = field(default_factory=bytearray)  # one byte per seq in [lo, hi)
    dead: bytearray = field(default_factory=bytearray)
    requests: int = 0
    delivered: int = 0  # unique, inside the window
    duplicates: int = 0
    outside: int = 0  # deliveries of sequence numbers outside the window (late or stray)
    failed: int = 0  # 503s answered on purpose
    retries: int = 0  # attempts at an event this receiver had failed before
    dead_lettered: int = 0
    latency: Histogram = field(default_factory=Histogram)
    gaps: Histogram = field(default_factory=Histogram)
    last_failure: dict[int, int] = field(default_factory=dict)  # seq -> ns of the last 503

    def window(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.seen = bytearray(hi - lo)
        self.dead = bytearray(hi - lo)

    def deliver(self, seq: int, ts_us: int, now_ns: int) -> bytes:
        self.requests += 1
        last = self.last_failure.pop(seq, None)
        if last is not None:
            self.retries += 1
            self.gaps.record((now_ns - last) // 1000)
        fail = self.spec.fail
        if fail and int(self.requests * fail) > int((self.requests - 1) * fail):
            self.failed += 1
            self.last_failure[seq] = now_ns
            return _FAILED
        self.latency.record(now_ns // 1000 - ts_us)
        i = seq - self.lo
        if 0 <= i < len(self.seen):
            if self.seen[i]:
                self.duplicates += 1
            else:
                self.seen[i] = 1
                self.delivered += 1
        else:
            self.outside += 1
        return _ACCEPTED

    def dead_letter(self, seq: int) -> None:
        self.last_failure.pop(seq, None)
        i = seq - self.lo
        if 0 <= i < len(self.dead) and not self.dead[i]:
            self.dead[i] = 1
            self.dead_lettered += 1

    def collect(self, rejected: list[int]) -> dict[str, Any]:
        spec = self.spec
        expected = spec.count_in(self.lo, self.hi)
        delivered, dead = self.delivered, self.dead_lettered
        stray = 0
        for seq in rejected:  # refused at ingress: not owed, even if it arrived anyway
            i = seq - self.lo
            if spec.matches(seq) and 0 <= i < len(self.seen):
                expected -= 1
                if self.seen[i]:
                    delivered -= 1
                    stray += 1
                if self.dead[i]:
                    dead -= 1
        return {
            "expected": expected,
            "delivered": delivered,
            "dead_lettered": dead,
            "missing": max(0, expected - delivered - dead),
            "duplicates": self.duplicates,
            "unexpected": self.outside + stray,
            "requests": self.requests,
            "failed": self.failed,
            "retries": self.retries,
            "latency": self.latency.to_dict(),
            "gaps": self.gaps.to_dict(),
        }

    def reset_counts(self) -> None:
        self.requests = self.delivered = self.duplicates = self.outside = 0
        self.failed = self.retries = self.dead_lettered = 0
        self.latency = Histogram()
        self.gaps = Histogram()


class Receiver:
    """Per-trigger accounting shared by all connections of the server."""

    def __init__(self) -> None:
        self.triggers: dict[bytes, TriggerState] = {}
        self.otlp_requests = 0
        self.otlp_bytes = 0
        self.unknown = 0

    def configure(self, specs: list[TriggerSpec]) -> None:
        self.triggers = {s.name.encode(): TriggerState(s) for s in specs}

    def handle(self, path: bytes, seqs: list[tuple[int, int]], body_len: int) -> bytes:
        now = time.time_ns()
        if path.startswith(b"/t/"):
            state = self.triggers.get(path[3:])
            if state is None:
                self.unknown += 1
                return _NOT_FOUND
            answer = _ACCEPTED
            for seq, ts in seqs:
                if state.deliver(seq, ts, now) is _FAILED:
                    answer = _FAILED
            return answer
        if path.startswith(b"/dls/"):
            state = self.triggers.get(path[5:])
            if state is None:
                self.unknown += 1
                return _NOT_FOUND
            for seq, _ in seqs:
                state.dead_letter(seq)
            return _ACCEPTED
        if path == b"/v1/traces":
            self.otlp_requests += 1
            self.otlp_bytes += body_len
            return _OTLP
        self.unknown += 1
        return _NOT_FOUND


def _events_from_body(body: bytes) -> list[tuple[int, int]]:
    """benchseq/benchts of structured or batch bodies (direct mode; brokers deliver binary)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    items = doc if isinstance(doc, list) else [doc]
    out = []
    for item in items:
        if isinstance(item, dict) and "benchseq" in item:
            out.append((int(item["benchseq"]), int(item.get("benchts", 0))))
    return out


class _Connection(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._seq: int | None = None
        self._ts = 0
        self._ctype = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Lower-casing every header name costs more than the rest of the request: filter on
        # length first (ce-benchseq 11, ce-benchts 10, content-type 12).
        size = len(name)
        if size == 11 and name.lower() == b"ce-benchseq":
            self._seq = int(value)
        elif size == 10 and name.lower() == b"ce-benchts":
            self._ts = int(value)
        elif size == 12 and name.lower() == b"content-type":
            self._ctype = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._body)
        if self._seq is not None:
            seqs = [(self._seq, self._ts)]
        elif self._ctype.startswith(b"application/cloudevents"):
            seqs = _events_from_body(body)
        else:
            seqs = []
        answer = self._receiver.handle(self._url.split(b"?", 1)[0], seqs, len(body))
        if self._transport is not None:
            self._transport.write(answer)
            if not self._parser.should_keep_alive():
                self._transport.close()
        self._reset()


class ReceiverServer:
    """The stdin/stdout face of the receiver: `listen`, `configure`, `expect`, `peek`, `collect`."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._server: asyncio.Server | None = None

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        rec = self.receiver
        if op == "listen":
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Connection(rec), str(cmd.get("host", "127.0.0.1")), 0, backlog=4096
            )
            return {"port": self._server.sockets[0].getsockname()[1]}
        if op == "configure":
            rec.configure([TriggerSpec(**t) for t in cmd["triggers"]])
            return {"ok": True}
        if op == "expect":
            for state in rec.triggers.values():
                state.window(int(cmd["lo"]), int(cmd["hi"]))
            return {"ok": True}
        if op == "peek":
            return {
                "delivered": sum(s.delivered for s in rec.triggers.values()),
                "dead_lettered": sum(s.dead_lettered for s in rec.triggers.values()),
            }
        if op == "collect":
            rejected = [int(s) for s in cmd.get("rejected", [])]
            out = {
                "triggers": {
                    name.decode(): state.collect(rejected) for name, state in rec.triggers.items()
                },
                "otlp_requests": rec.otlp_requests,
                "otlp_bytes": rec.otlp_bytes,
                "unknown": rec.unknown,
            }
            for state in rec.triggers.values():
                state.reset_counts()
            rec.otlp_requests = rec.otlp_bytes = rec.unknown = 0
            return out
        raise worker.WorkerError(f"unknown op {op!r}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


if __name__ == "__main__":
    worker.serve(ReceiverServer)
