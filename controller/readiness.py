"""One log line when a Broker or Trigger becomes Ready or stops being Ready, not one per reload.

Status is recomputed on every contract generation (every edit of the config folder, every
reconcile in the cluster); a line per object per pass would bury the one that matters: "trigger
ns/t not ready: Unable to get the Subscriber's URI". `ReadinessLog` remembers each object's last
Ready condition (status and reason) and logs only what changed; an object seen for the first
time is a change, a removed one is forgotten silently (its removal is the user's doing).

What this module refuses: computing status (controller/status.py and the compiler do) and deciding
what Ready means; it only compares what it is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.controller import compiler, status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Readiness:
    kind: str  # "Broker" | "Trigger"
    namespace: str
    name: str
    status: str  # the Ready condition's status: "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    broker: str = ""  # a Trigger's Broker, when known


def from_compile(result: compiler.CompileResult) -> list[Readiness]:
    """The Ready condition of every object a compile pass produced."""
    brokers = {(t.namespace, t.name): t.broker for t in result.contract.triggers}
    out = []
    for (kind, ns, name), st in result.statuses.items():
        ready = st.condition(status.READY) or status.unknown(status.READY)
        broker = brokers.get((ns, name), "") if kind == "Trigger" else ""
        out.append(Readiness(kind, ns, name, ready.status, ready.reason, ready.message, broker))
    return out


def from_k8s(
    kind: str, namespace: str, name: str, st: Mapping[str, Any], broker: str = ""
) -> Readiness:
    """The Ready condition of a Knative-shaped status (what the cluster controller writes)."""
    for c in st.get("conditions", ()) or ():
        if isinstance(c, Mapping) and c.get("type") == status.READY:
            return Readiness(
                kind,
                namespace,
                name,
                str(c.get("status", status.UNKNOWN)),
                str(c.get("reason", "")),
                str(c.get("message", "")),
                broker,
            )
    return Readiness(kind, namespace, name, status.UNKNOWN, broker=broker)


class ReadinessLog:
    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self._last: dict[tuple[str, str, str], tuple[str, str]] = {}

    def observe(self, objects: Iterable[Readiness], complete: bool = True) -> list[Readiness]:
        """Log the objects whose Ready status or reason changed; those objects. `complete`: the
        objects are all there are, so any not among them are forgotten."""
        changed = []
        seen = set()
        for r in objects:
            key = (r.kind, r.namespace, r.name)
            seen.add(key)
            state = (r.status, r.reason)
            if self._last.get(key) == state:
                continue
            self._last[key] = state
            changed.append(r)
            self._line(r)
        if complete:
            for key in [k for k in self._last if k not in seen]:
                del self._last[key]
        return changed

    def _line(self, r: Readiness) -> None:
        kind = r.kind.lower()
        fields: dict[str, object] = {"kind": r.kind, "namespace": r.namespace, kind: r.name}
        if r.broker:
            fields["broker"] = r.broker
        if r.status == status.TRUE:
            self.logger.info(f"{kind} ready", extra=fields)
            return
        fields.update(ready=r.status, reason=r.reason, detail=r.message)
        level = logging.WARNING if r.status == status.FALSE else logging.INFO
        self.logger.log(level, f"{kind} not ready", extra=fields)
