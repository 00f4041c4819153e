"""`kbroker trigger test` against a real `kbroker run` (the console mounted in it) and a real
subscriber, on every backend: "matches K of N" on the broker's recent events equals what the
dispatcher delivered (RabbitMQ says it has no history),
each event has its explain tree, and a pasted event file is tested the same way."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from fixtures.broker import ON_EVERY_CHANNEL, BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer

YAML = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: orders, namespace: default}}
spec:
  broker: default
  filters:
    - any:
        - exact: {{type: order.created}}
        - cesql: "subject LIKE 'vip-%'"
  subscriber: {{uri: "{sink}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: audit, namespace: default}}
spec:
  broker: default
  filter: {{attributes: {{source: /shop}}}}
  subscriber: {{uri: "{sink}-audit"}}
"""


async def kbroker(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kbroker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def started(start_broker: StartBroker, sinks: SinkServer) -> BrokerProcess:
    sink = sinks.sink("orders")
    sinks.sink("orders-audit")
    b = await start_broker({"b.yaml": YAML.format(sink=sink.url)})
    await b.wait_ready_object("Trigger", "orders")
    await b.wait_ready_object("Trigger", "audit")
    return b


@ON_EVERY_CHANNEL
async def test_matches_equal_what_the_dispatcher_delivers(
    start_broker: StartBroker, sinks: SinkServer, broker_channel: str
) -> None:
    b = await started(start_broker, sinks)
    sent = [
        make_event("1", "order.created", "/shop"),
        make_event("2", "order.paid", "/shop"),
        make_event("3", "order.paid", "/shop", subject="vip-7"),
        make_event("4", "user.created", "/users"),
        make_event("5", "order.created", "/shop"),
    ]
    for e in sent:
        assert (await b.send(e)).status_code == 202
    delivered = await sinks.sinks["orders"].wait_for(3)
    code, out, err = await kbroker("trigger", "test", "default/orders", "--server", b.base)
    assert code == 0, err
    if broker_channel == "rabbitmq":  # an exchange keeps no history: said, not faked
        assert "keeps no history" in out.splitlines()[0]
        return
    assert out.splitlines()[0] == "trigger default/orders: matches 3 of 5"
    assert "✗ no match  id=2  type=order.paid" in out
    assert "✗ exact: type = 'order.created': type = 'order.paid' expected 'order.created'" in out
    assert "also matched by: audit" in out

    code, out, err = await kbroker(
        "trigger", "test", "default/orders", "--server", b.base, "--last", "2", "-o", "json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert [r["id"] for r in result["rows"]] == ["4", "5"]
    assert [r["matched"] for r in result["rows"]] == [False, True]
    assert sorted(e.id for e in delivered) == ["1", "3", "5"]


async def test_an_event_file_and_errors(
    start_broker: StartBroker, sinks: SinkServer, tmp_path: Path
) -> None:
    b = await started(start_broker, sinks)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"specversion": "1.0", "id": "x", "source": "/else", "type": "t"}))
    code, out, err = await kbroker(
        "trigger", "test", "default/orders", "--server", b.base, "--event", str(event)
    )
    assert code == 0, err
    assert out.splitlines()[0] == "trigger default/orders: matches 0 of 1"
    assert "missingAttribute" in out

    code, _, err = await kbroker("trigger", "test", "default/nope", "--server", b.base)
    assert code == 1 and "404" in err and "default/nope" in err
    event.write_text("{not json")
    code, _, err = await kbroker(
        "trigger", "test", "default/orders", "--server", b.base, "--event", str(event)
    )
    assert code == 1 and err.startswith("error: 400")


async def test_with_a_token(start_broker: StartBroker, sinks: SinkServer, tmp_path: Path) -> None:
    """A console with a token: refused without it; with it (flag or KBROKER_UI_TOKEN) both the
    read and the POST (bearer plus the CSRF echo) pass the console's guard."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    sink = sinks.sink("orders")
    sinks.sink("orders-audit")
    b = await start_broker(
        {"b.yaml": YAML.format(sink=sink.url)}, extra_args=["--ops-token", str(token)]
    )
    code, _, err = await kbroker("trigger", "test", "default/orders", "--server", b.base)
    assert code == 1 and err.startswith("error: 401"), err
    deadline = time.monotonic() + 30  # /status needs the token too: poll the command instead
    while True:
        code, out, err = await kbroker(
            "trigger",
            "test",
            "default/orders",
            "--server",
            b.base,
            env={"KBROKER_UI_TOKEN": "s3cret"},
        )
        if code == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert code == 0, err
    assert out.startswith("trigger default/orders: matches 0 of 0")
    event = tmp_path / "e.json"
    event.write_text(
        json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "order.created"})
    )
    code, out, err = await kbroker(
        "trigger",
        "test",
        "default/orders",
        "--server",
        b.base,
        "--token",
        "s3cret",
        "--event",
        str(event),
    )
    assert code == 0, err
    assert out.startswith("trigger default/orders: matches 1 of 1")
