"""The NATS JetStream channel against a real nats-server: the conformance suite, plus what is
particular to JetStream (durability levels, outage and recovery, other clients on the subject)."""

from __future__ import annotations

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core.channels.nats import NatsChannel, NatsSettings

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check, nats_url: str) -> None:
    await check(lambda: NatsChannel(NatsSettings(url=nats_url)))
