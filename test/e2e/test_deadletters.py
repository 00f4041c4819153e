"""Dead letters end to end, on a real `kbroker run` with real subscribers.

A Trigger whose subscriber fails dead-letters into another Broker (plain Knative YAML: a
`deadLetterSink` ref to it). Then: the Trigger's records (/status and the console API) show the
retries and dead-lettered counts; `kbroker deadletters list` shows the dead letters with their
`knativeerrorcode` and attempt count; `kbroker deadletters redrive --id` sends one to the now
healthy subscriber, which receives it exactly once, with the same id and without the error
extensions, and the outcome is recorded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer

YAML = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: dlq, namespace: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: pay, namespace: default}}
spec:
  broker: default
  subscriber: {{uri: "{pay}"}}
  delivery:
    retry: 2
    backoffPolicy: linear
    backoffDelay: PT0.05S
    deadLetterSink:
      ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: dlq}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: watch, namespace: default}}
spec:
  broker: dlq
  subscriber: {{uri: "{watch}"}}
"""

ATTEMPTS = 3  # retry: 2

# Every backend that keeps a log to read dead letters from (RabbitMQ keeps none: the service's
# note for it is tested in test/ui/test_service_deadletters.py).
pytestmark = pytest.mark.parametrize(
    "broker_channel",
    [
        "embedded",
        pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow]),
        pytest.param("nats", marks=[pytest.mark.nats, pytest.mark.slow]),
    ],
)


async def kbroker(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kbroker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def stats(b: BrokerProcess) -> dict[str, Any]:
    obj = await b.object_status("Trigger", "pay")
    assert obj is not None
    got: dict[str, Any] = obj["status"].get("kbroker.dev/stats") or {}
    return got


async def test_failing_subscriber_dead_letter_then_targeted_redrive(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    pay = sinks.sink("pay", fail_first=2 * ATTEMPTS, fail_status=500, fail_body=b"db down")
    watch = sinks.sink("watch")
    b = await start_broker({"b.yaml": YAML.format(pay=pay.url, watch=watch.url)})
    await b.wait_ready_object("Trigger", "pay")
    await b.wait_ready_object("Trigger", "watch")
    for i in ("e1", "e2"):
        assert (await b.send(make_event(i, "order.created"))).status_code == 202
    dead = await watch.wait_for(2)
    assert sorted(e.id for e in dead) == ["e1", "e2"]
    assert dead[0].attributes["knativeerrorcode"] == "500"

    # The records: /status carries the Trigger's counts.
    async def counted() -> bool:
        w = (await stats(b)).get("windows", {}).get("1m", {})
        return bool(w.get("deadLettered") == 2)

    await b.until(counted, 30.0, "the dead letters were never counted")
    w = (await stats(b))["windows"]["1m"]
    assert (w["matched"], w["delivered"], w["retries"]) == (2, 0, 2 * (ATTEMPTS - 1))
    assert w["responses"] == {"5xx": 2 * ATTEMPTS}
    assert (await stats(b))["lastFailure"]["status"] == 500

    code, out, err = await kbroker(
        "deadletters", "list", "default/dlq", "--server", b.base, "-o", "json"
    )
    assert code == 0, err
    listed = json.loads(out)
    assert listed["triggers"] == ["default/pay"]
    letters = {d["id"]: d for d in listed["letters"]}
    assert set(letters) == {"e1", "e2"}
    assert letters["e1"]["code"] == 500
    assert letters["e1"]["data"] == "db down"
    assert letters["e1"]["dest"] == pay.url
    assert (letters["e1"]["trigger"], letters["e1"]["attempts"]) == ("default/pay", ATTEMPTS)

    code, out, _ = await kbroker("deadletters", "list", "default/dlq", "--server", b.base)
    assert code == 0 and "error=500" in out and "attempts=3" in out

    before = len(pay.received)
    code, out, err = await kbroker(
        "deadletters", "redrive", "default/dlq", "--trigger", "pay", "--id", "e1",
        "--server", b.base,
    )  # fmt: skip
    assert code == 0, out + err
    assert out.strip() == "e1: delivered after 1 attempt(s)"
    # The redrive answered after the delivery: whatever the subscriber got, it has by now.
    got = pay.received[before:]
    assert [r.event.id for r in got if r.event is not None] == ["e1"]
    assert not any(h.startswith("ce-knativeerror") for h in got[0].headers)
    assert len(watch.received) == 2  # nothing went through a Broker again

    r = await b.client.get(f"{b.base}/-/ui/api/triggers/default/pay/records")
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    newest = records["recent"][-1]
    assert (newest["id"], newest["verdict"]) == ("e1", "delivered")
    assert records["windows"]["1m"]["delivered"] == 1
    assert r.json()["deadLetterSink"] == {"kind": "broker", "broker": "default/dlq"}
