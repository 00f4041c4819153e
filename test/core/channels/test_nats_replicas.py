"""A Broker's stream follows its configured replicas: changing `replicas` (the NatsJetStreamChannel
template's `spec.stream.config.replicas`) updates the existing stream in place, on a real
three-node JetStream cluster, and the stream keeps its events."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import nats as nats_py
import pytest
from fixtures import channel_conformance as conformance
from fixtures.nats import Cluster
from kbroker.core import contract
from kbroker.core.channel import ChannelError
from kbroker.core.channels.nats import NatsChannel, NatsSettings, stream_of

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def _stream(url: str, name: str) -> tuple[int, int]:
    """(replicas, messages) of the stream as the server reports them."""
    nc = await nats_py.connect(url.split(","))
    try:
        info = await nc.jsm().stream_info(name)
    finally:
        await nc.close()
    return info.config.num_replicas or 1, info.state.messages


async def _until_replicas(url: str, name: str, want: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        replicas, messages = await _stream(url, name)
        if replicas == want or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.2)


async def test_replica_change_updates_the_stream(nats_cluster3: Cluster) -> None:
    url = nats_cluster3.url
    base = conformance.make_broker()
    ch = NatsChannel(NatsSettings(url=url))
    try:
        r1 = dataclasses.replace(base, channel_config=(("replicas", "1"),))
        await ch.ensure_broker(r1)
        await ch.append(
            r1, [conformance.envelope(f"e{i}") for i in range(5)], contract.Durability.ALL
        )
        assert await _stream(url, stream_of(r1)) == (1, 5)

        r3 = dataclasses.replace(base, channel_config=(("replicas", "3"),))
        await ch.ensure_broker(r3)
        assert await _until_replicas(url, stream_of(r3), 3) == 5
        assert (await _stream(url, stream_of(r3)))[0] == 3
        await ch.append(r3, [conformance.envelope("after")], contract.Durability.ALL)

        await ch.ensure_broker(r1)  # and back down
        assert await _until_replicas(url, stream_of(r1), 1) == 6

        # more replicas than the cluster has servers: refused, the stream is left as it was
        r5 = dataclasses.replace(base, channel_config=(("replicas", "5"),))
        with pytest.raises(ChannelError):
            await ch.ensure_broker(r5)
        assert await _stream(url, stream_of(r1)) == (1, 6)
    finally:
        await ch.delete_broker(base)
        await ch.close()
