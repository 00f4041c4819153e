"""Changing a NatsJetStreamChannel template's replicas under a running `kbroker run` updates the
Broker's stream on a real three-node JetStream cluster, and the Broker keeps delivering."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker
from fixtures.nats import Cluster
from fixtures.subscriber import SinkServer
from kbroker.core import events

pytestmark = [pytest.mark.nats, pytest.mark.slow]

TEMPLATE = """\
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
          replicas: {replicas}
"""


async def _replicas(url: str) -> list[int]:
    nc = await nats.connect(url.split(","))
    try:
        streams = await nc.jsm().streams_info()
    finally:
        await nc.close()
    return [
        s.config.num_replicas or 1 for s in streams if (s.config.name or "").endswith("-default")
    ]


@pytest.mark.parametrize("broker_channel", ["embedded"])  # the template picks NATS
async def test_template_replicas_change_updates_the_stream(
    start_broker: StartBroker, sinks: SinkServer, nats_cluster3: Cluster
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker(
        {
            "channel.yaml": TEMPLATE.format(replicas=1),
            "o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url)),
        },
        extra_args=["--nats", nats_cluster3.url],
    )
    await proc.wait_ready_object("Trigger", "t")
    assert await _replicas(nats_cluster3.url) == [1]
    proc.write("channel.yaml", TEMPLATE.format(replicas=3))
    deadline = time.monotonic() + 30
    while await _replicas(nats_cluster3.url) != [3]:
        assert time.monotonic() < deadline, "the stream kept its old replica count"
        await asyncio.sleep(0.2)
    await proc.wait_ready_object("Trigger", "t")
    event = events.CloudEvent({"specversion": "1.0", "id": "after", "source": "/t", "type": "x"})
    assert (await proc.send(event)).status_code == 202  # still taking events on the R3 stream
    await sink.wait_for(1, timeout=20)
    assert sink.ids() == ["after"]
