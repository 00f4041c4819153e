"""`kbroker tail` against a real `kbroker run` (the console mounted in it), on every backend: events
sent after the tail opened arrive in order with the Triggers that match them, a CESQL --filter is
applied by the server, and on the embedded log the tail leaves no position behind."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time

import httpx
import nats as nats_py
import pytest
from fixtures.broker import ON_EVERY_CHANNEL, BrokerProcess, StartBroker, make_event

YAML = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: paid, namespace: default}
spec:
  broker: default
  filter: {attributes: {type: order.paid}}
  subscriber: {uri: "http://127.0.0.1:9/never"}
"""


async def open_tail(b: BrokerProcess, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kbroker",
        "tail",
        "default/default",
        "--server",
        b.base,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert line.decode().startswith("tailing default/default"), line
    return proc


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, list[str]]:
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines()


@ON_EVERY_CHANNEL
async def test_json_lines_in_order_with_server_side_filter(
    start_broker: StartBroker, broker_channel: str
) -> None:
    b = await start_broker({"b.yaml": YAML})
    await b.wait_ready_object("Trigger", "paid")
    assert (await b.send(make_event("before", "order.paid"))).status_code == 202
    proc = await open_tail(b, "-o", "json", "--count", "3", "--filter", "type LIKE 'order.%'")
    for i, type_ in enumerate(["order.paid", "user.created", "order.created", "order.paid"]):
        assert (await b.send(make_event(f"e{i}", type_))).status_code == 202
    code, lines = await finish(proc)
    assert code == 0
    got = [json.loads(line) for line in lines]
    assert [g["id"] for g in got] == ["e0", "e2", "e3"]
    assert [g["matchedBy"] for g in got] == [["paid"], [], ["paid"]]
    assert got[0]["data"]["kind"] == "json" and '"hello"' in got[0]["data"]["text"]
    if broker_channel == "embedded":  # each backend's own "no trace" test is in test/core
        # The tail was not a Trigger: the log holds a position for `paid` only.
        (db,) = b.data_dir.rglob("*.db")
        with sqlite3.connect(db) as conn:
            assert len(conn.execute("SELECT trigger FROM positions").fetchall()) == 1
    # The client went away mid-stream: the server closed its tail without an error.
    assert (await b.client.get(f"{b.base}/readyz")).status_code == 200
    assert "Traceback" not in b.log_text()


async def test_table_and_bad_filter(start_broker: StartBroker) -> None:
    b = await start_broker({"b.yaml": YAML})
    await b.wait_ready_object("Trigger", "paid")
    proc = await open_tail(b, "--count", "1")
    assert (await b.send(make_event("t1", "order.paid", subject="s-1"))).status_code == 202
    code, lines = await finish(proc)
    assert code == 0
    assert lines[0].split() == ["TIME", "TYPE", "SOURCE", "SUBJECT", "ID", "MATCHED", "BY"]
    assert lines[1].split()[1:] == ["order.paid", "/test", "s-1", "t1", "paid"]

    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kbroker",
        "tail",
        "default/default",
        "--server",
        b.base,
        "--filter",
        "type =",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 30)
    assert bad.returncode == 1 and err.decode().startswith("error: 400: filter:")


async def _consumers(nats_url: str) -> int:
    nc = await nats_py.connect(nats_url)
    try:
        jsm = nc.jsm()
        return sum(s.state.consumer_count for s in await jsm.streams_info())
    finally:
        await nc.close()


@pytest.mark.nats
@pytest.mark.parametrize("broker_channel", ["nats"])
async def test_a_gone_client_closes_the_servers_reader(
    start_broker: StartBroker, nats_url: str
) -> None:
    """The server notices a client that went away and closes its reader: the tail's ephemeral
    JetStream consumer disappears at once, not after JetStream's inactivity timeout."""
    b = await start_broker({"b.yaml": YAML})
    await b.wait_ready_object("Trigger", "paid")
    before = await _consumers(nats_url)
    url = f"{b.base}/-/ui/api/brokers/default/default/tail"
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        assert await _consumers(nats_url) == before + 1
    deadline = time.monotonic() + 15  # well under the consumer's 30 s inactivity timeout
    while await _consumers(nats_url) != before:
        assert time.monotonic() < deadline, "the tail's consumer outlived its client"
        await asyncio.sleep(0.1)
