"""ingress/deadlines: a stuck append becomes TimeoutError (503) on time; nothing else changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import pytest
from kbroker.core import contract
from kbroker.core.channel import Envelope
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import IngressSettings
from kbroker.ingress.app import build_app
from kbroker.ingress.deadlines import Deadlines

BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b", channel="memory")
BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


class StuckChannel(MemoryChannel):
    def __init__(self) -> None:
        super().__init__()
        self.name = "memory"
        self.stuck = True

    async def append(
        self, broker: contract.Broker, envelopes: Sequence[Envelope], d: contract.Durability
    ) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        await super().append(broker, envelopes, d)


async def _ready() -> tuple[bool, str]:
    return True, "ok"


async def test_a_stuck_channel_answers_503_after_the_append_timeout() -> None:
    channel = StuckChannel()
    app = build_app(
        IngressSettings(append_timeout=0.3),
        {"memory": channel},
        ContractHolder(contract.Contract(1, (BROKER,))),
        _ready,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        t0 = time.perf_counter()
        resp = await c.post("/ns/b", headers=BINARY, content=b"{}")
        took = time.perf_counter() - t0
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert 0.3 <= took < 2.0  # the timeout (plus a sweep), far below the 5 s default
        channel.stuck = False  # the same task machinery still serves healthy appends
        assert (await c.post("/ns/b", headers=BINARY, content=b"{}")).status_code == 202


async def test_only_overdue_tasks_are_cancelled() -> None:
    d = Deadlines(0.5, granularity=0.02)
    gate = asyncio.Event()

    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    async def quick() -> str:
        await gate.wait()
        return "done"

    stuck = asyncio.create_task(d.wait(slow(), time.perf_counter()))
    await asyncio.sleep(0.3)
    fine = asyncio.create_task(d.wait(quick(), time.perf_counter()))
    await asyncio.sleep(0.35)  # the first is overdue (0.5 s), the second not (due at 0.8 s)
    assert stuck.done() and not fine.done()
    with pytest.raises(TimeoutError):
        stuck.result()
    gate.set()
    assert await fine == "done"
    await asyncio.sleep(0.05)
    assert d._sweeper is not None and d._sweeper.done()  # idle: no periodic wake-ups
    assert not d._waiting and not d._expired


async def test_other_cancellations_pass_through() -> None:
    d = Deadlines(10.0)
    task = asyncio.create_task(d.wait(asyncio.Event().wait(), time.perf_counter()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not d._waiting and not d._expired
