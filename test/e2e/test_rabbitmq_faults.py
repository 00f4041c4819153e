"""RabbitMQ faults end to end: the RabbitMQ node killed with SIGKILL under load and restarted.

    sender (all) --> kbroker run --rabbitmq URL --> sink
                           kill -9 the RabbitMQ node, restart it on its data

The ledger of test_crash.py: every 202 delivered at least once (persistent messages on a durable
quorum queue survive the kill), nothing invented; requests while the node is down answer 503.
kill -9 of kbroker itself under load runs on RabbitMQ through test_crash.py's ON_EVERY_CHANNEL.
"""

from __future__ import annotations

import asyncio

import pytest
from e2e import knative_yaml as ky
from e2e.test_crash import Ledger, load, wait_delivered
from fixtures.broker import StartBroker
from fixtures.rabbitmq import Node
from fixtures.subscriber import SinkServer

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.mark.parametrize("broker_channel", ["rabbitmq"])
async def test_rabbitmq_node_killed_under_load(
    start_broker: StartBroker,
    sinks: SinkServer,
    rabbitmq_node: Node | None,
) -> None:
    if rabbitmq_node is None:
        pytest.skip("RABBITMQ_URL names a server this session did not start")
    sink = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))})
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    stop = asyncio.Event()
    sender = asyncio.create_task(load(proc, ledger, stop, "r", concurrency=8))
    # RabbitMQ 3.10 can bring back leaderless a quorum queue killed within seconds of its
    # creation (docs/channels.md): the queue lives ~10 s before the kill.
    await asyncio.sleep(10.0)
    accepted_before = len(ledger.accepted)
    await asyncio.to_thread(rabbitmq_node.kill)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(rabbitmq_node.restart)
    await asyncio.sleep(5.0)
    stop.set()
    await sender
    assert accepted_before > 100, "the load never got going"
    assert ledger.failed > 0, "no request saw the node down"
    missing = await wait_delivered(sink, ledger.accepted, 60.0)
    delivered = set(sink.ids())
    print(
        f"sent={len(ledger.sent)} accepted={len(ledger.accepted)} delivered={len(delivered)} "
        f"duplicates={len(sink.ids()) - len(delivered)} failed_requests={ledger.failed} "
        f"lost={len(missing)}"
    )
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert delivered <= ledger.sent
