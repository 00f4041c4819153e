"""`kbroker run --log-format json`: every line the process logs is one JSON object, and a failing
trigger's retries show up with their fields.

    event --> kbroker run --> sink (answers 500) --retries--> log lines (stderr, JSON)
"""

from __future__ import annotations

import json
from typing import Any

from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer


def records(proc: BrokerProcess) -> list[dict[str, Any]]:
    text = proc.log_path.read_text()
    out = []
    for line in text.splitlines():
        doc = json.loads(line)  # a line that is not JSON fails the test here
        assert isinstance(doc, dict), line
        out.append(doc)
    return out


async def test_json_log_lines(start_broker: StartBroker, sinks: SinkServer) -> None:
    sink = sinks.sink("s", status=500)
    delivery = {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url, delivery=delivery))},
        extra_args=["--log-format", "json"],
    )
    await proc.wait_ready_object("Trigger", "t")
    assert (await proc.send(make_event("x1"))).status_code == 202
    await sink.wait_for(3)

    async def dropped() -> bool:
        return any(r["msg"].startswith("event dropped") for r in records(proc))

    await proc.until(dropped, 15, "no 'event dropped' line")
    await proc.stop()

    logged = records(proc)
    msgs = [r["msg"] for r in logged]
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in logged)
    [compiled] = [r for r in logged if r["msg"] == "config compiled"]
    assert (compiled["generation"], compiled["triggers"], compiled["problems"]) == (1, 1, 0)
    [ready] = [r for r in logged if r["msg"] == "trigger ready"]
    assert (ready["namespace"], ready["trigger"], ready["broker"]) == ("default", "t", "default")
    retries = [r for r in logged if r["msg"] == "delivery failed, retrying"]
    assert [(r["attempt"], r["status"], r["event_id"], r["trigger"]) for r in retries] == [
        (1, 500, "x1", "t"),
        (2, 500, "x1", "t"),
    ]
    assert retries[0]["logger"] == "kbroker.filter.dispatch"
    assert msgs[-2:] == ["shutting down", "stopped"]
