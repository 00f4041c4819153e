"""Per-broker quotas: the token buckets on a fake clock, then the ingress answers (429 +
Retry-After, nothing appended, other brokers untouched) on the ASGI app with a memory channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import IngressSettings
from kbroker.ingress import quota
from kbroker.ingress.app import build_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def broker(q: contract.Quota | None, name: str = "b") -> contract.Broker:
    return contract.Broker("ns", name, "uid", f"http://x/ns/{name}", channel="memory", quota=q)


# (quota, [(seconds since start, events, bytes, expected wait)])
CASES = [
    pytest.param(
        contract.Quota(events_per_second=10, event_burst=3),
        [(0, 1, 0, 0.0), (0, 1, 0, 0.0), (0, 1, 0, 0.0), (0, 1, 0, 0.1), (0.1, 1, 0, 0.0)],
        id="event burst then refill at the rate",
    ),
    pytest.param(
        contract.Quota(events_per_second=2),
        [(0, 1, 0, 0.0), (0, 1, 0, 0.0), (0, 1, 0, 0.5), (10, 2, 0, 0.0), (10, 1, 0, 0.5)],
        id="default burst is one second's worth; a quiet spell never over-fills",
    ),
    pytest.param(
        contract.Quota(events_per_second=1, event_burst=2),
        [(0, 5, 0, 0.0), (0, 1, 0, 4.0), (4, 1, 0, 0.0)],
        id="a batch over the burst passes from a full bucket and leaves a debt",
    ),
    pytest.param(
        contract.Quota(bytes_per_second=1000),
        [(0, 1, 600, 0.0), (0, 1, 600, 0.2), (0.2, 1, 600, 0.0)],
        id="bytes per second",
    ),
    pytest.param(
        contract.Quota(events_per_second=100, bytes_per_second=1000),
        [(0, 1, 1000, 0.0), (0, 1, 10, 0.01), (0.01, 1, 10, 0.0), (0.01, 1, 0, 0.0)],
        id="both buckets; a refused request takes no event token",
    ),
]


@pytest.mark.parametrize(("q", "steps"), CASES)
def test_buckets(q: contract.Quota, steps: list[tuple[float, int, int, float]]) -> None:
    clock = FakeClock()
    start = clock.now
    quotas = quota.Quotas(clock)
    b = broker(q)
    for at, n, size, expected in steps:
        clock.now = start + at
        assert quotas.admit(b, n, size) == pytest.approx(expected), (at, n, size)


def test_changed_quota_gets_new_buckets() -> None:
    clock = FakeClock()
    quotas = quota.Quotas(clock)
    assert quotas.admit(broker(contract.Quota(events_per_second=1)), 1, 0) == 0.0
    assert quotas.admit(broker(contract.Quota(events_per_second=1)), 1, 0) > 0
    assert quotas.admit(broker(contract.Quota(events_per_second=5)), 1, 0) == 0.0


@pytest.mark.parametrize(("wait", "header"), [(0.01, b"1"), (1.0, b"1"), (1.2, b"2"), (30, b"30")])
def test_retry_after_rounds_up(wait: float, header: bytes) -> None:
    assert quota.retry_after(wait) == header


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/s",
    "ce-type": "t",
    "content-type": "application/json",
}


async def _ready() -> tuple[bool, str]:
    return True, "ok"


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryChannel]]:
    channel = MemoryChannel()
    limited = broker(contract.Quota(events_per_second=0.5, event_burst=2), "limited")
    holder = ContractHolder(contract.Contract(1, (limited, broker(None, "free"))))
    app = build_app(IngressSettings(), {"memory": channel}, holder, _ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, channel


async def test_ingress_answers_429_with_retry_after(
    client: tuple[httpx.AsyncClient, MemoryChannel],
) -> None:
    c, channel = client
    codes = [(await c.post("/ns/limited", headers=BINARY, content=b"{}")) for _ in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert codes[2].headers["retry-after"] == "2"
    assert "quota" in codes[2].text
    for _ in range(20):  # the broker without a quota is not affected
        assert (await c.post("/ns/free", headers=BINARY, content=b"{}")).status_code == 202
    stored = channel.store.logs[contract.BrokerKey("ns/limited")].records
    assert len(stored) == 2  # the refused event was not stored
