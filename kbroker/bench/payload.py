"""Benchmark events on the wire: binary, structured and batch requests built cheaply per send.

Why not core/events: the generator is the scarce resource on a 2-core machine, so it must not
build CloudEvent objects per request. Every request here is a prebuilt template plus four values
that change per event: `id`, and the extensions `benchseq` (sequence number), `benchts`
(intended send time, epoch microseconds: the receiver measures end-to-end latency from it) and
`benchgroup` (`benchseq % groups`, which fan-out triggers filter on, so each event matches a
known fraction of the triggers). The payload is a JSON string of exactly `size` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

CE_TYPE = "dev.kbroker.bench"
CE_SOURCE = "/kbroker/bench"
MODES = ("binary", "structured", "batch")

_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"


def payload(size: int) -> bytes:
    """A JSON string body of exactly `size` bytes (at least 2: the quotes)."""
    size = max(2, size)
    return b'"' + b"x" * (size - 2) + b'"'


@dataclass(frozen=True, slots=True)
class EventShape:
    """What every event of a run looks like; the per-event values come at send time."""

    mode: str = "binary"
    size: int = 1024
    batch: int = 1  # events per request in batch mode
    groups: int = 1  # benchgroup = benchseq % groups
    durability: str | None = None  # Kbroker-Durability header
    data: bytes = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch < 1 or self.groups < 1:
            raise ValueError("batch and groups must be at least 1")
        object.__setattr__(self, "data", payload(self.size))

    @property
    def per_request(self) -> int:
        return self.batch if self.mode == "batch" else 1

    def _json_event(self, seq: int, ts_us: int) -> dict[str, str]:
        return {
            "specversion": "1.0",
            "id": f"b-{seq}",
            "source": CE_SOURCE,
            "type": CE_TYPE,
            "benchseq": str(seq),
            "benchts": str(ts_us),
            "benchgroup": str(seq % self.groups),
            "datacontenttype": "application/json",
        }

    def build(self, seq: int, count: int, ts_us: int) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body of one request carrying events seq .. seq+count-1."""
        headers: list[tuple[str, str]] = []
        if self.durability:
            headers.append(("Kbroker-Durability", self.durability))
        if self.mode == "binary":
            headers += [
                ("Content-Type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", f"b-{seq}"),
                ("ce-source", CE_SOURCE),
                ("ce-type", CE_TYPE),
                ("ce-benchseq", str(seq)),
                ("ce-benchts", str(ts_us)),
                ("ce-benchgroup", str(seq % self.groups)),
            ]
            return headers, self.data
        # The data member is spliced in as raw JSON so orjson never re-encodes the payload.
        if self.mode == "structured":
            headers.append(("Content-Type", _STRUCTURED))
            head = orjson.dumps(self._json_event(seq, ts_us))
            return headers, head[:-1] + b',"data":' + self.data + b"}"
        headers.append(("Content-Type", _BATCH))
        parts = [
            orjson.dumps(self._json_event(s, ts_us))[:-1] + b',"data":' + self.data + b"}"
            for s in range(seq, seq + count)
        ]
        return headers, b"[" + b",".join(parts) + b"]"
