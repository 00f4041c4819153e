"""core/metrics: bounded labels, scrape-time gauges, and the exposition's names (no HTTP here;
test/e2e/test_metrics.py scrapes the real `kbroker run`)."""

from __future__ import annotations

from kbroker.core import contract, metrics
from kbroker.core.delivery import Outcome, Result
from kbroker.core.events import CloudEvent
from kbroker.core.reporters import DispatchReporter, IngressReporter
from prometheus_client.parser import text_string_to_metric_families

BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b")
TRIGGER = contract.Trigger("ns", "t", contract.TriggerUid("tuid"), "b", "http://sub/")


def samples(m: metrics.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(m: metrics.Metrics, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(m).items() if n == name and want <= ls)


def event(etype: str) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": etype}, None)


def test_event_types_are_capped_per_broker() -> None:
    m = metrics.Metrics(max_event_types=2)
    for etype in ["a", "b", "c", "d", "a"]:
        m.accepted(BROKER, [event(etype)], 10, 0.001, 0.0005)
    name = "kbroker_broker_ingress_event_count_total"
    assert total(m, name, event_type="a") == 2
    assert total(m, name, event_type="b") == 1
    assert total(m, name, event_type="other") == 2
    assert total(m, name, event_type="c") == 0
    assert len(m._types) == 2  # the cache is as bounded as the labels


def test_rejections_of_unknown_brokers_share_one_label() -> None:
    m = metrics.Metrics()
    for i in range(5):
        m.rejected(f"random/{i}", 404, 0.0)
    m.rejected("ns/b", 400, 0.0)
    name = "kbroker_broker_ingress_request_count_total"
    assert total(m, name, broker_name="unknown", response_code="404") == 5
    assert total(m, name, broker_name="b", namespace_name="ns", response_code_class="4xx") == 1
    brokers = {dict(ls).get("broker_name") for (n, ls) in samples(m) if n == name}
    assert brokers == {"unknown", "b"}


def test_metrics_is_both_reporters() -> None:
    """mypy checks these assignments against the Protocols; the run checks the methods exist."""
    m = metrics.Metrics()
    ingress: IngressReporter = m
    dispatch: DispatchReporter = m
    for name in ("accepted", "rejected"):
        assert callable(getattr(ingress, name))
    for name in ("attempt", "retry", "finished"):
        assert callable(getattr(dispatch, name))


def test_dispatch_reports() -> None:
    m = metrics.Metrics()
    m.attempt(TRIGGER, None, 0.5)
    m.attempt(TRIGGER, 200, 0.01)
    m.retry(TRIGGER)
    m.finished(TRIGGER, Result(Outcome.DELIVERED, 1, 200), 0.0)  # no arrival: no e2e sample
    m.finished(TRIGGER, Result(Outcome.DROPPED, 2, 500), 1.0)
    name = "kbroker_trigger_event_count_total"
    assert total(m, name, response_code="none", response_code_class="none") == 1
    assert total(m, name, response_code="200", response_code_class="2xx", broker_name="b") == 1
    assert total(m, "kbroker_trigger_retries_total", trigger_name="t") == 1
    assert total(m, "kbroker_trigger_outcomes_total", outcome="delivered") == 1
    assert total(m, "kbroker_trigger_outcomes_total", outcome="dropped") == 1
    assert total(m, "kbroker_trigger_event_e2e_latencies_seconds_count") == 0


def test_scrape_time_gauges_follow_the_current_state() -> None:
    m = metrics.Metrics()
    m.refresh(
        [metrics.TriggerState("ns", "t", "b", 7, 2), metrics.TriggerState("ns", "u", "b", None, 0)]
    )
    assert total(m, "kbroker_trigger_lag_events", trigger_name="t") == 7
    assert total(m, "kbroker_trigger_in_flight", trigger_name="t") == 2
    assert (
        "kbroker_trigger_lag_events",
        frozenset({("namespace_name", "ns"), ("trigger_name", "u"), ("broker_name", "b")}),
    ) not in samples(m)
    m.refresh([])
    assert total(m, "kbroker_trigger_in_flight") == 0
    assert not [n for (n, _) in samples(m) if n == "kbroker_trigger_lag_events"]


def test_reconciled_replaces_object_counts() -> None:
    m = metrics.Metrics()
    m.reconciled([("Broker", True), ("Trigger", True), ("Trigger", False)], 0.01)
    m.reconciled([("Broker", True), ("Trigger", True)], 0.02)
    assert total(m, "kbroker_controller_objects", kind="Trigger", ready="true") == 1
    assert total(m, "kbroker_controller_objects", kind="Trigger", ready="false") == 0
    assert total(m, "kbroker_controller_reconcile_count_total", kind="Trigger") == 3
    assert total(m, "kbroker_controller_reconcile_latencies_seconds_count") == 2


def test_code_class() -> None:
    assert [metrics.code_class(c) for c in (None, 202, 404, 503)] == ["none", "2xx", "4xx", "5xx"]


def test_grafana_dashboard_uses_only_exposed_names() -> None:
    """Every kbroker_* series the dashboard queries is one core/telemetry.py defines."""
    import json
    import re
    from pathlib import Path

    from kbroker.core import telemetry

    text = (Path(__file__).parents[2] / "config" / "grafana" / "kbroker-dashboard.json").read_text()
    json.loads(text)  # valid JSON
    defined = {v for k, v in vars(telemetry).items() if k.startswith("M_")}
    used = set(re.findall(r"kbroker_[a-z0-9_]+", text))
    suffixes = ("_bucket", "_sum", "_count", "_total")
    base = {next((u.removesuffix(s) for s in suffixes if u.endswith(s)), u) for u in used}
    # Counters end in _count_total (e.g. ..._event_count_total): strip once more for those.
    base = {b if b in defined else b.removesuffix("_count") for b in base}
    assert base and base <= defined, sorted(base - defined)
