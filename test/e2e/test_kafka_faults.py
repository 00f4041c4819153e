"""Kafka faults end to end: a Kafka broker killed under load on a 3-node cluster (replication 3,
min.insync.replicas 2), and a subscriber that is down for a while.

    sender (all) --> kbroker run --kafka n1,n2,n3 --> sink
                               kill -9 one Kafka node, restart it

The ledger of test_crash.py: every 202 delivered at least once, nothing invented.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from e2e import knative_yaml as ky
from e2e.test_crash import Ledger, load, wait_delivered
from fixtures.broker import ON_EVERY_CHANNEL, StartBroker, make_event
from fixtures.kafka import Cluster
from fixtures.subscriber import SinkServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("broker_channel", ["embedded"])  # the default class, on --kafka below
async def test_kafka_node_killed_under_load(
    start_broker: StartBroker,
    sinks: SinkServer,
    kafka_cluster3: Cluster,
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))},
        extra_args=["--kafka", kafka_cluster3.bootstrap],
    )
    await proc.wait_ready_object("Trigger", "t")
    ledger = Ledger()
    stop = asyncio.Event()
    sender = asyncio.create_task(load(proc, ledger, stop, "k", concurrency=8))
    await asyncio.sleep(2.0)
    await asyncio.to_thread(kafka_cluster3.kill_node, 2)
    await asyncio.sleep(3.0)
    await asyncio.to_thread(kafka_cluster3.restart_node, 2)
    await asyncio.sleep(1.0)
    stop.set()
    await sender
    assert len(ledger.accepted) > 100, "the load never got going"
    missing = await wait_delivered(sink, ledger.accepted, 60.0)
    delivered = set(sink.ids())
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert delivered <= ledger.sent
    print(
        f"sent={len(ledger.sent)} accepted={len(ledger.accepted)} delivered={len(delivered)} "
        f"duplicates={len(sink.ids()) - len(delivered)} failed_requests={ledger.failed}"
    )


@ON_EVERY_CHANNEL
async def test_subscriber_down_for_a_while_then_dead_letter(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    """Down for 8 attempts: retried on the schedule, then every event reaches the dead-letter
    sink; a second trigger whose subscriber is up is not slowed down."""
    down = sinks.sink("down", fail_first=10**6, fail_status=503)
    up, dls = sinks.sink("up"), sinks.sink("dls")
    delivery = ky.dls(dls.url, retry=3, backoffPolicy="exponential", backoffDelay="PT0.1S")
    proc = await start_broker(
        {
            "o.yaml": ky.dump(
                ky.broker(),
                ky.trigger("down", down.url, delivery=delivery),
                ky.trigger("up", up.url),
            )
        }
    )
    await proc.wait_ready_object("Trigger", "down")
    await proc.wait_ready_object("Trigger", "up")
    ids = [f"d{i}" for i in range(20)]
    for ev_id in ids:
        assert (await proc.send(make_event(ev_id))).status_code == 202
    await up.wait_for(20, 10)
    await dls.wait_for(20, 30)
    assert sorted(dls.ids()) == sorted(ids)
    assert len(down.received) == 20 * 4  # one attempt and three retries each
    per_event: dict[str, list[float]] = {}
    for r in down.received:
        per_event.setdefault(r.headers["ce-id"], []).append(r.at)
    gaps = [b - a for times in per_event.values() for a, b in itertools.pairwise(times)]
    # Exponential from 0.1 s: waits of 0.1, 0.2, 0.4 s; never shorter than the schedule.
    assert min(gaps) >= 0.09
