"""Delivery before ingress: the gate engages only when delivery is behind *and* the loop is
starved, releases when delivery catches up, and the ingress then holds requests (202 once
released, 503 + Retry-After after max_wait) for that broker only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import IngressSettings
from kbroker.ingress.app import build_app
from kbroker.ingress.priority import DeliveryPriority, PrioritySettings

LATE = 0.02  # a timer 20 ms late: the loop is starved
ON_TIME = 0.0


class Behind:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self) -> dict[str, float]:
        return self.seconds


def _priority(max_wait: float = 1.0) -> tuple[DeliveryPriority, Behind]:
    behind = Behind()
    return DeliveryPriority(behind, PrioritySettings(max_wait=max_wait)), behind


async def test_engages_only_when_behind_and_starved() -> None:
    p, behind = _priority()
    behind.seconds = {"ns/a": 2.0, "ns/b": 0.1}
    p.observe(0.0, ON_TIME)
    assert p.gates == {}  # behind, but the loop is idle: a slow subscriber, not a CPU shortage
    for t in range(5):
        p.observe(0.05 * t, LATE)
    assert set(p.gates) == {"ns/a"}  # only the broker whose delivery is behind


async def test_releases_when_delivery_catches_up_or_the_loop_recovers() -> None:
    p, behind = _priority()
    behind.seconds = {"ns/a": 2.0}
    for t in range(5):
        p.observe(0.05 * t, LATE)
    gate = p.gates["ns/a"]
    behind.seconds = {"ns/a": 0.3}  # between release and engage: stays engaged (hysteresis)
    p.observe(0.3, LATE)
    assert "ns/a" in p.gates and not gate.is_set()
    behind.seconds = {"ns/a": 0.1}
    p.observe(0.35, LATE)
    assert p.gates == {} and gate.is_set()  # waiters go on
    behind.seconds = {"ns/a": 2.0}
    p.observe(0.4, LATE)
    assert "ns/a" in p.gates
    for t in range(100):  # the loop is on time for longer than starved_hold
        p.observe(0.5 + 0.05 * t, ON_TIME)
    assert p.gates == {}


async def test_admit_waits_then_gives_up() -> None:
    p, _ = _priority(max_wait=0.05)
    gate = asyncio.Event()
    assert await p.admit(gate) is False
    assert (p.waited, p.shed) == (1, 1)
    gate2 = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, gate2.set)
    assert await p.admit(gate2) is True


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/s",
    "ce-type": "t",
    "content-type": "application/json",
}


async def _ready() -> tuple[bool, str]:
    return True, "ok"


def _broker(name: str) -> contract.Broker:
    return contract.Broker("ns", name, "uid", f"http://x/ns/{name}", channel="memory")


@pytest.fixture
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryChannel, DeliveryPriority]]:
    channel = MemoryChannel()
    holder = ContractHolder(contract.Contract(1, (_broker("slow"), _broker("other"))))
    p, _ = _priority(max_wait=0.1)
    app = build_app(IngressSettings(), {"memory": channel}, holder, _ready, priority=p)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, channel, p


async def test_ingress_holds_then_503_only_for_the_lagging_broker(
    served: tuple[httpx.AsyncClient, MemoryChannel, DeliveryPriority],
) -> None:
    c, channel, p = served
    p.gates["ns/slow"] = asyncio.Event()
    refused = await c.post("/ns/slow", headers=BINARY, content=b"{}")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "delivery is behind" in refused.text
    assert (await c.post("/ns/other", headers=BINARY, content=b"{}")).status_code == 202
    # released while waiting: the held request is accepted
    gate = p.gates["ns/slow"]
    asyncio.get_running_loop().call_later(0.02, gate.set)
    assert (await c.post("/ns/slow", headers=BINARY, content=b"{}")).status_code == 202
    assert len(channel.store.logs[contract.BrokerKey("ns/slow")].records) == 1
    assert p.shed == 1
