"""What one load step produced, as plain frozen values that the table, JSON and plot all read.

Why separate from the runner: the report side (table, JSON file, PNG) must work from a JSON file
written earlier as well as from a live run, so results are values with `to_json`, and every
derived number (rates, CPU per 1,000 events, pass/fail) is computed once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One role's CPU seconds over the step and its memory at the end of it."""

    role: str  # generator | receiver | server (broker / ceiling app)
    cpu_seconds: float
    per_1k_events: float  # CPU seconds per 1,000 accepted events
    cores: float  # average cores busy during the step
    rss_kb: int
    hwm_kb: int  # peak RSS over the process lifetime (VmHWM), summed over the tree

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_s_per_1k_events": round(self.per_1k_events, 4),
            "cores": round(self.cores, 3),
            "rss_kb": self.rss_kb,
            "peak_rss_kb": self.hwm_kb,
        }


@dataclass(frozen=True, slots=True)
class StepResult:
    """One fixed-rate step: offered rate, counts that must add up, latency, resources."""

    target_rate: float
    duration: float
    sent: int
    accepted: int
    errors: int
    statuses: dict[str, int]
    ingress_latency_ms: dict[str, float]
    expected: int = 0  # deliveries owed by the receiver's triggers (0 without triggers)
    delivered: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    retries: int = 0
    failed_on_purpose: int = 0
    e2e_latency_ms: dict[str, float] = field(default_factory=dict)
    retry_gap_ms: dict[str, float] = field(default_factory=dict)
    per_trigger: dict[str, dict[str, Any]] = field(default_factory=dict)
    send_seconds: float = 0.0  # first intended send to last response
    deliver_seconds: float = 0.0  # first intended send to the last delivery (or drain timeout)
    usage: tuple[ProcessUsage, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    p99_bound_ms: float | None = None

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.send_seconds if self.send_seconds > 0 else 0.0

    @property
    def delivered_per_s(self) -> float:
        return self.delivered / self.deliver_seconds if self.deliver_seconds > 0 else 0.0

    @property
    def has_receiver(self) -> bool:
        return self.expected > 0 or self.delivered > 0

    @property
    def latency_ms(self) -> dict[str, float]:
        """The latency that judges the step: end to end when events are delivered, else ingress."""
        return self.e2e_latency_ms if self.has_receiver else self.ingress_latency_ms

    @property
    def passed(self) -> bool:
        """Zero errors, zero loss and p99 within the bound (when one was given)."""
        if self.errors or self.missing or self.sent == 0:
            return False
        bound = self.p99_bound_ms
        return bound is None or self.latency_ms.get("p99", 0.0) <= bound

    def to_json(self) -> dict[str, Any]:
        return {
            "target_rate": self.target_rate,
            "duration": self.duration,
            "sent": self.sent,
            "accepted": self.accepted,
            "errors": self.errors,
            "statuses": self.statuses,
            "expected": self.expected,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "retries": self.retries,
            "failed_on_purpose": self.failed_on_purpose,
            "accepted_per_s": round(self.accepted_per_s, 1),
            "delivered_per_s": round(self.delivered_per_s, 1),
            "send_seconds": round(self.send_seconds, 3),
            "deliver_seconds": round(self.deliver_seconds, 3),
            "ingress_latency_ms": self.ingress_latency_ms,
            "e2e_latency_ms": self.e2e_latency_ms,
            "retry_gap_ms": self.retry_gap_ms,
            "per_trigger": self.per_trigger,
            "usage": [u.to_json() for u in self.usage],
            "p99_bound_ms": self.p99_bound_ms,
            "passed": self.passed,
            "extra": self.extra,
        }


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    name: str
    description: str
    steps: tuple[StepResult, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)  # non-load figures (RSS per trigger ...)
    skipped: str | None = None  # why the scenario did not run

    @property
    def knee(self) -> StepResult | None:
        """The highest-rate step that passed, if any."""
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.target_rate) if passed else None

    def to_json(self) -> dict[str, Any]:
        knee = self.knee
        return {
            "name": self.name,
            "description": self.description,
            "skipped": self.skipped,
            "knee_rate": knee.target_rate if knee else None,
            "facts": self.facts,
            "steps": [s.to_json() for s in self.steps],
        }
