"""NATS faults end to end: one node of a 3-node JetStream cluster killed under load, with the
Broker's stream replicated three times (a NatsJetStreamChannel template with replicas: 3).

    sender (all) --> kbroker run --nats n1,n2,n3 --> sink
                               kill -9 one NATS node, restart it

The ledger of test_crash.py: every 202 delivered at least once, nothing invented. With R3 a PubAck
means two of three nodes stored the event, so losing any one node loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from e2e import knative_yaml as ky
from e2e.test_crash import Ledger, load, wait_delivered
from fixtures.broker import StartBroker
from fixtures.nats import Cluster
from fixtures.subscriber import SinkServer

pytestmark = [pytest.mark.nats, pytest.mark.slow]

R3_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-br-default-channel
  namespace: knative-eventing
data:
  channel-template-spec: |
    apiVersion: messaging.knative.dev/v1alpha1
    kind: NatsJetStreamChannel
    spec:
      stream:
        config:
          replicas: 3
"""


@pytest.mark.parametrize("broker_channel", ["embedded"])  # the template below picks NATS
@pytest.mark.parametrize("victim", [1, 2])
async def test_nats_node_killed_under_load(
    start_broker: StartBroker, sinks: SinkServer, nats_cluster3: Cluster, victim: int
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker(
        {
            "channel.yaml": R3_TEMPLATE,
            "o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url)),
        },
        extra_args=["--nats", nats_cluster3.url],
    )
    await proc.wait_ready_object("Trigger", "t")
    assert await _replicas(nats_cluster3.url) == [3], "the template's replicas did not apply"
    ledger = Ledger()
    stop = asyncio.Event()
    sender = asyncio.create_task(load(proc, ledger, stop, "n", concurrency=8))
    await asyncio.sleep(2.0)
    await asyncio.to_thread(nats_cluster3.kill_node, victim)
    await asyncio.sleep(3.0)
    await asyncio.to_thread(nats_cluster3.restart_node, victim)
    await asyncio.sleep(1.0)
    stop.set()
    await sender
    assert len(ledger.accepted) > 100, "the load never got going"
    missing = await wait_delivered(sink, ledger.accepted, 60.0)
    delivered = set(sink.ids())
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert delivered <= ledger.sent
    print(
        f"victim=node-{victim} sent={len(ledger.sent)} accepted={len(ledger.accepted)} "
        f"delivered={len(delivered)} duplicates={len(sink.ids()) - len(delivered)} "
        f"failed_requests={ledger.failed}"
    )


async def _replicas(url: str) -> list[int]:
    """The replica counts of the cluster's broker streams."""
    nc = await nats.connect(url.split(","))
    try:
        streams = await nc.jsm().streams_info()
    finally:
        await nc.close()
    return [
        s.config.num_replicas or 1 for s in streams if (s.config.name or "").endswith("-default")
    ]
