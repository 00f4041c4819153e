"""/metrics after known traffic, and /readyz following the channel, on the real `kbroker run`.

    producer --> kbroker run --> trigger ok   --> sink "ok"        (every event)
                             --> trigger bad  --> sink "bad" (503) --> dead-letter sink
                             --> trigger drop --> sink "bad" (503), no dead-letter sink: dropped

Counts are exact: the scrape is parsed with prometheus-client's own parser and compared to the
requests and deliveries the test caused. Readiness is checked against a real fault: another
process holding the embedded log's write lock (SQLite BEGIN EXCLUSIVE), then releasing it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping

import httpx
import pytest
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.kafka import Cluster
from fixtures.subscriber import SinkServer
from kbroker.core import events
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}


async def scrape(proc: BrokerProcess) -> Samples:
    resp = await proc.client.get(f"{proc.base}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def series(samples: Samples, name: str) -> list[Mapping[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]


async def test_metrics_count_known_traffic(start_broker: StartBroker, sinks: SinkServer) -> None:
    ok, bad, dls = sinks.sink("ok"), sinks.sink("bad", status=503), sinks.sink("dls")
    proc = await start_broker(
        {
            "o.yaml": ky.dump(
                ky.broker(),
                ky.trigger("ok", ok.url),
                ky.trigger(
                    "bad",
                    bad.url,
                    attributes={"type": "com.example.bad"},
                    delivery=ky.dls(dls.url, 1, **FAST),
                ),
                ky.trigger(
                    "drop",
                    bad.url,
                    attributes={"type": "com.example.drop"},
                    delivery={"retry": 0},
                ),
            )
        }
    )
    for name in ("ok", "bad", "drop"):
        await proc.wait_ready_object("Trigger", name)
    before = await scrape(proc)
    assert value(before, "kbroker_broker_ingress_event_count_total") == 0
    for i in range(5):
        assert (await proc.send(make_event(f"a{i}", type="com.example.a"))).status_code == 202
    for i in range(2):
        assert (await proc.send(make_event(f"b{i}", type="com.example.bad"))).status_code == 202
    assert (await proc.send(make_event("d0", type="com.example.drop"))).status_code == 202
    batch = [make_event(f"x{i}", type="com.example.batch") for i in range(3)]
    resp = await proc.client.post(
        proc.broker_url(),
        content=events.encode_batch(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert resp.status_code == 202
    assert (await proc.send(make_event("n"), broker="nope")).status_code == 404
    invalid = await proc.client.post(
        proc.broker_url(), content=b"{}", headers={"ce-specversion": "1.0"}
    )
    assert invalid.status_code == 400

    await ok.wait_for(11)
    await dls.wait_for(2)
    deadline = time.monotonic() + 10
    while True:  # outcomes are counted just after the last delivery finishes
        m = await scrape(proc)
        done = value(m, "kbroker_trigger_outcomes_total", outcome="delivered") >= 11
        if done and value(m, "kbroker_trigger_outcomes_total", outcome="dropped") >= 1:
            break
        assert time.monotonic() < deadline, "outcomes never counted"
        await asyncio.sleep(0.1)

    ingress = "kbroker_broker_ingress_event_count_total"
    default = {"namespace_name": "default", "broker_name": "default"}
    for etype, count in [
        ("com.example.a", 5),
        ("com.example.bad", 2),
        ("com.example.drop", 1),
        ("com.example.batch", 3),
    ]:
        assert value(m, ingress, event_type=etype, response_code="202", **default) == count
    assert value(m, ingress, broker_name="unknown", response_code="404") == 1
    assert value(m, ingress, event_type="unknown", response_code="400", **default) == 1
    assert value(m, ingress) == 13
    requests = "kbroker_broker_ingress_request_count_total"
    assert value(m, requests, response_code_class="2xx", **default) == 9
    assert value(m, requests, response_code_class="4xx") == 2
    assert value(m, "kbroker_broker_ingress_batch_size_count", **default) == 9
    assert value(m, "kbroker_broker_ingress_batch_size_sum", **default) == 11
    assert value(m, "kbroker_broker_ingress_batch_size_bucket", le="1.0") == 8
    assert value(m, "kbroker_broker_ingress_bytes_total", **default) > 0
    assert value(m, "kbroker_broker_ingress_event_dispatch_latencies_seconds_count") == 9
    assert value(m, "kbroker_broker_ingress_event_dispatch_latencies_seconds_sum") > 0
    append = "kbroker_channel_append_latencies_seconds"
    assert value(m, f"{append}_count", channel="embedded", **default) == 9
    assert value(m, f"{append}_sum") > 0

    trig = "kbroker_trigger_event_count_total"
    assert value(m, trig, trigger_name="ok", response_code="200", response_code_class="2xx") == 11
    assert value(m, trig, trigger_name="bad", response_code="503", response_code_class="5xx") == 4
    assert value(m, trig, trigger_name="drop", response_code_class="5xx") == 1
    assert all("id" not in labels for labels in series(m, trig))  # no event ids in labels
    lat = "kbroker_trigger_event_dispatch_latencies_seconds"
    assert value(m, f"{lat}_count", trigger_name="ok", response_code_class="2xx") == 11
    assert value(m, f"{lat}_count", trigger_name="bad", response_code_class="5xx") == 4
    assert value(m, "kbroker_trigger_event_e2e_latencies_seconds_count", trigger_name="ok") == 11
    assert value(m, "kbroker_trigger_event_e2e_latencies_seconds_sum", trigger_name="ok") > 0
    assert value(m, "kbroker_trigger_retries_total", trigger_name="bad") == 2
    assert value(m, "kbroker_trigger_retries_total", trigger_name="drop") == 0
    outcomes = "kbroker_trigger_outcomes_total"
    assert value(m, outcomes, trigger_name="ok", outcome="delivered") == 11
    assert value(m, outcomes, trigger_name="bad", outcome="dead_lettered") == 2
    assert value(m, outcomes, trigger_name="drop", outcome="dropped") == 1
    assert value(m, outcomes, trigger_name="bad", outcome="delivered") == 0
    assert len(series(m, "kbroker_trigger_in_flight")) == 3
    assert {s["trigger_name"] for s in series(m, "kbroker_trigger_lag_events")} == {
        "ok",
        "bad",
        "drop",
    }

    assert value(m, "kbroker_channel_stored_events_total", **default) == 11
    assert value(m, "kbroker_channel_transactions_total", **default) >= 1
    assert value(m, "kbroker_channel_storage_bytes", channel="embedded", **default) > 0
    assert value(m, "kbroker_controller_reconcile_count_total", kind="Trigger", result="ready") >= 3
    assert value(m, "kbroker_controller_objects", kind="Trigger", ready="true") == 3
    assert value(m, "kbroker_controller_objects", kind="Broker", ready="true") == 1
    assert value(m, "kbroker_controller_reconcile_latencies_seconds_count") >= 1
    assert value(m, "process_cpu_seconds_total") > 0


async def test_lag_counts_undelivered_events(start_broker: StartBroker, sinks: SinkServer) -> None:
    slow = sinks.sink("slow", delay=3.0)
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("slow", slow.url, annotations=_ORDERED))}
    )
    await proc.wait_ready_object("Trigger", "slow")
    for i in range(4):
        assert (await proc.send(make_event(f"l{i}"))).status_code == 202
    await slow.wait_for(1)
    m = await scrape(proc)
    assert value(m, "kbroker_trigger_lag_events", trigger_name="slow") == 4
    assert value(m, "kbroker_trigger_in_flight", trigger_name="slow") >= 1


_ORDERED = {"kafka.eventing.knative.dev/delivery.order": "ordered"}


async def test_readyz_follows_the_channel(start_broker: StartBroker) -> None:
    proc = await start_broker({"o.yaml": ky.dump(ky.broker())})
    await proc.wait_ready_object("Broker", "default")
    assert (await proc.client.get(f"{proc.base}/readyz")).status_code == 200
    # Another process takes the log's write lock: appends and the readiness probe time out.
    (log_file,) = proc.data_dir.glob("*.db")  # the broker's log (named by the channel)
    db = sqlite3.connect(log_file, isolation_level=None, timeout=5)
    try:
        db.execute("BEGIN EXCLUSIVE")
        ready = await proc.client.get(f"{proc.base}/readyz", timeout=httpx.Timeout(15.0))
        assert ready.status_code == 503
        assert "channel embedded of broker default/default unavailable" in ready.text
        refused = await proc.send(make_event("while-locked"))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
    finally:
        db.execute("ROLLBACK")
        db.close()
    await proc.wait_ready(10.0)
    assert (await proc.send(make_event("after"))).status_code == 202
    healthz = await proc.client.get(f"{proc.base}/healthz")
    assert healthz.status_code == 200


@pytest.mark.kafka
@pytest.mark.slow
async def test_readyz_follows_kafka(
    start_broker: StartBroker, kafka_single: Cluster | None, kafka_bootstrap: str
) -> None:
    """Kafka stopped (SIGKILL of its only node): /readyz 503; started again: 200."""
    if kafka_single is None:
        pytest.skip("KAFKA_BOOTSTRAP names an external Kafka, which this test must not stop")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker("kready"))}, extra_args=["--kafka", kafka_bootstrap]
    )
    await proc.wait_ready_object("Broker", "kready", timeout=60.0)

    async def not_ready() -> bool:
        resp = await proc.client.get(f"{proc.base}/readyz", timeout=httpx.Timeout(30.0))
        return resp.status_code == 503 and "channel kafka" in resp.text

    await asyncio.to_thread(kafka_single.kill_node, 1)
    try:
        await proc.until(not_ready, 60.0, "/readyz stayed 200 with Kafka down")
    finally:
        await asyncio.to_thread(kafka_single.restart_node, 1)
    await proc.wait_ready(60.0)
    assert (await proc.send(make_event("back"), broker="kready")).status_code == 202
