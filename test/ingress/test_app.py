"""build_app before and after the first contract: 503 + Retry-After while starting, then the real
answers (202 for a known broker, 404 for an unknown one), and the readiness it composes."""

from __future__ import annotations

import httpx
import pytest
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import IngressSettings
from kbroker.ingress.app import build_app, ingress_ready

BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b", channel="memory")
EVENT = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


def _client(holder: ContractHolder) -> httpx.AsyncClient:
    channels = {"memory": MemoryChannel()}
    ready = ingress_ready(holder, channels, "no contract yet")
    app = build_app(IngressSettings(retry_after=3), channels, holder, ready)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


CASES = [
    # (contract loaded?, method, path, status)
    (False, "POST", "/ns/b", 503),
    (False, "POST", "/ns/unknown", 503),
    (False, "OPTIONS", "/ns/b", 503),
    (True, "POST", "/ns/b", 202),
    (True, "POST", "/ns/unknown", 404),
]


@pytest.mark.parametrize(("loaded", "method", "path", "status"), CASES)
async def test_answers_before_and_after_the_first_contract(
    loaded: bool, method: str, path: str, status: int
) -> None:
    holder = ContractHolder()
    if loaded:
        await holder.publish(contract.Contract(1, (BROKER,)))
    async with _client(holder) as c:
        resp = await c.request(method, path, headers=EVENT, content=b"{}")
    assert resp.status_code == status, resp.text
    if status == 503:
        assert resp.headers["retry-after"] == "3"


async def test_readiness_follows_the_first_contract() -> None:
    holder = ContractHolder()
    async with _client(holder) as c:
        before = await c.get("/readyz")
        assert (before.status_code, before.text) == (503, "no contract yet\n")
        assert (await c.get("/healthz")).status_code == 200  # alive while starting
        await holder.publish(contract.Contract(1, (BROKER,)))
        assert (await c.get("/readyz")).status_code == 200
