"""Scenarios by name, with their configuration encoded in the name (as Hyperfoil's runs are).

    ceiling            bare ASGI app answering 202 under uvicorn+httptools: the machine's HTTP limit
    direct             generator -> receiver, no broker: the delivery baseline
    ingress            broker, no triggers: time to 202 only
    e2e                broker, 1 trigger: time to delivery
    fanout-N-M         broker, N triggers, each event matching M% of them (default fanout-100-10)
    triggers-N         idle trigger scale: RSS per trigger, time to Ready (`triggers`: 0,100,1000)
    failing-P          one subscriber failing P% of requests with 503, one healthy (default 10)
    otel-P             e2e with P% of traces sampled, exported to the receiver (`otel` = 0,10,100)
    tail               e2e at each rate twice, without and then with a console live tail (SSE)
                       open on the broker: what a browser tab watching events costs delivery
    overload           backlog, Trigger added live, e2e to the knee, then 1.5x and 2x the
                       sustainable rate: delivered/s must stay >= 0.95x it (kbroker.bench.overload)
    cesql              filter evaluation cost, from kbroker.bench_cesql when it is importable

Why names: a result file, a plot legend and a line of docs/benchmarks.md then say exactly what
was measured, and `kbroker bench fanout-100-10` reproduces it. Parsing is pure and tested; what
a scenario *does* lives in `kbroker.bench.execute`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kbroker.bench.brokerconfig import Delivery
from kbroker.bench.receiver import TriggerSpec

KINDS = (
    "ceiling", "direct", "ingress", "e2e", "fanout", "triggers", "failing", "otel", "overload",
    "tail", "cesql",
)  # fmt: skip
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "fanout": ("fanout-100-10",),
    "triggers": ("triggers-0", "triggers-100", "triggers-1000"),
    "failing": ("failing-10",),
    "otel": ("otel-0", "otel-10", "otel-100"),
}


class ScenarioError(ValueError):
    """A scenario name that does not parse."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    kind: str
    triggers: int = 0  # fanout and triggers: how many
    percent: float = 0.0  # fanout: matching; failing: failing; otel: sampled

    @property
    def needs_broker(self) -> bool:
        return self.kind in (
            "ingress", "e2e", "fanout", "triggers", "failing", "otel", "overload", "tail",
        )  # fmt: skip

    @property
    def groups(self) -> int:
        """benchgroup modulus: each event then matches 1/groups of the triggers."""
        if self.kind == "fanout":
            return max(1, round(100.0 / self.percent))
        if self.kind == "triggers":
            return max(1, self.triggers)
        return 1

    def trigger_specs(self) -> list[TriggerSpec]:
        """The receiver's subscribers; one per trigger (direct: the generator's own target)."""
        if self.kind == "direct":
            return [TriggerSpec("direct")]
        if self.kind in ("e2e", "otel", "overload", "tail"):
            return [TriggerSpec("t0")]
        if self.kind in ("fanout", "triggers"):
            g = self.groups
            width = len(str(max(self.triggers - 1, 0)))
            return [TriggerSpec(f"t{i:0{width}d}", g, i % g) for i in range(self.triggers)]
        if self.kind == "failing":
            return [TriggerSpec("failing", fail=self.percent / 100.0), TriggerSpec("healthy")]
        return []

    def delivery(self) -> Delivery | None:
        """Knative delivery spec for the triggers: retries and a dead-letter sink when failing."""
        if self.kind == "failing":
            return Delivery(retry=3, backoff_policy="exponential", backoff_delay="PT0.05S")
        return None

    def broker_env(self, otlp_endpoint: str) -> dict[str, str]:
        """OTEL_* variables for the broker process (standard OpenTelemetry SDK configuration)."""
        if self.kind != "otel":
            return {}
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{otlp_endpoint}/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "500",  # export within a short step, not after it
        }
        if self.percent <= 0:
            env["OTEL_TRACES_SAMPLER"] = "always_off"
        elif self.percent >= 100:
            env["OTEL_TRACES_SAMPLER"] = "always_on"
        else:
            env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            env["OTEL_TRACES_SAMPLER_ARG"] = f"{self.percent / 100.0:g}"
        return env

    @property
    def description(self) -> str:
        return {
            "ceiling": "bare ASGI 202 app (uvicorn+httptools): HTTP limit of this machine",
            "direct": "generator -> receiver, no broker: delivery baseline",
            "ingress": "broker ingress, no triggers: latency to 202",
            "e2e": "broker, 1 trigger: latency to delivery",
            "fanout": f"broker, {self.triggers} triggers, {self.percent:g}% matching each event",
            "triggers": f"{self.triggers} idle triggers: RSS per trigger, time to Ready",
            "failing": f"one subscriber failing {self.percent:g}% with 503, one healthy",
            "otel": f"1 trigger, {self.percent:g}% of traces sampled",
            "overload": "backlog, live Trigger, e2e past the knee: does delivered/s hold",
            "tail": "1 trigger, each rate without and with a console live tail open",
            "cesql": "CESQL filter evaluation cost (kbroker.bench_cesql)",
        }[self.kind]


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"{name}: {text!r} is not a number") from None
    if value < 0:
        raise ScenarioError(f"{name}: {text!r} must not be negative")
    return value


def parse(name: str) -> list[Scenario]:
    """One scenario name -> the scenarios it stands for (`otel` and `triggers` expand to 3)."""
    if name in _DEFAULTS and "-" not in name:
        return [s for full in _DEFAULTS[name] for s in parse(full)]
    kind, *args = name.split("-")
    if kind not in KINDS:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(KINDS)}")
    if kind == "fanout":
        if len(args) != 2:
            raise ScenarioError(f"{name}: expected fanout-TRIGGERS-PERCENT, e.g. fanout-100-10")
        n, pct = int(_number(args[0], name)), _number(args[1], name)
        if n < 1 or not 0 < pct <= 100:
            raise ScenarioError(f"{name}: need >= 1 trigger and 0 < percent <= 100")
        return [Scenario(name, kind, triggers=n, percent=pct)]
    if kind in ("triggers", "failing", "otel"):
        if len(args) != 1:
            raise ScenarioError(f"{name}: expected {kind}-NUMBER")
        value = _number(args[0], name)
        if kind == "triggers":
            return [Scenario(name, kind, triggers=int(value))]
        if value > 100:
            raise ScenarioError(f"{name}: percent must be within 0..100")
        return [Scenario(name, kind, percent=value)]
    if args:
        raise ScenarioError(f"{name}: {kind} takes no parameters")
    return [Scenario(name, kind)]


def parse_all(names: list[str]) -> list[Scenario]:
    return [s for name in names for s in parse(name)]


def parse_staircase(text: str) -> list[float]:
    """START:STEP:MAX -> the rates of each step, MAX included when it is on the grid."""
    try:
        start, step, top = (float(x) for x in text.split(":"))
    except ValueError:
        raise ScenarioError(f"staircase {text!r}: expected START:STEP:MAX") from None
    if start <= 0 or step <= 0 or top < start:
        raise ScenarioError(f"staircase {text!r}: need START > 0, STEP > 0, MAX >= START")
    rates: list[float] = []
    k = 0
    while start + k * step <= top + 1e-9:
        rates.append(start + k * step)
        k += 1
    return rates
