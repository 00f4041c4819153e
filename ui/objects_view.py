"""Reading Knative-shaped objects for people: Ready and why, the dead-letter sink that applies.

Every page shows the same few facts about a Broker or Trigger; they are read here, once, from the
plain dicts the Objects port returns (what `/status` and `kubectl get -o json` show).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kbroker.ui.ports import KObject


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool | None  # None: no Ready condition yet (just created, not reconciled)
    reason: str = ""
    message: str = ""

    @property
    def label(self) -> str:
        return {True: "Ready", False: "Not ready", None: "Unknown"}[self.ready]


def meta(obj: KObject) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def spec(obj: KObject) -> dict[str, Any]:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def name(obj: KObject) -> str:
    return str(meta(obj).get("name", ""))


def namespace(obj: KObject) -> str:
    return str(meta(obj).get("namespace", "default"))


def conditions(obj: KObject) -> list[dict[str, Any]]:
    status = obj.get("status")
    conds = status.get("conditions") if isinstance(status, dict) else None
    return [c for c in conds if isinstance(c, dict)] if isinstance(conds, list) else []


def readiness(obj: KObject) -> Readiness:
    for c in conditions(obj):
        if c.get("type") == "Ready":
            state = str(c.get("status", "Unknown"))
            ready = {"True": True, "False": False}.get(state)
            return Readiness(ready, str(c.get("reason", "")), str(c.get("message", "")))
    return Readiness(None)


def address(broker: KObject) -> str:
    status = broker.get("status")
    if isinstance(status, dict):
        addr = status.get("address")
        if isinstance(addr, dict) and addr.get("url"):
            return str(addr["url"])
    return ""


def delivery(obj: KObject) -> dict[str, Any]:
    d = spec(obj).get("delivery")
    return d if isinstance(d, dict) else {}


def has_dead_letter_sink(trigger: KObject, broker: KObject | None) -> bool:
    """A Trigger's own deadLetterSink, else its Broker's (Knative's inheritance)."""
    if delivery(trigger).get("deadLetterSink"):
        return True
    return broker is not None and bool(delivery(broker).get("deadLetterSink"))


def broker_of(trigger: KObject) -> str:
    return str(spec(trigger).get("broker", "default"))
