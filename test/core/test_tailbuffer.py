"""core/tailbuffer: bounded, drop-oldest, counted, and a waiting reader wakes."""

from __future__ import annotations

import asyncio

import pytest
from kbroker.core.tailbuffer import TailBuffer


def test_drops_the_oldest_and_counts() -> None:
    buf: TailBuffer[int] = TailBuffer(3)
    for i in range(5):
        buf.push(i)
    assert len(buf) == 3 and buf.dropped == 2
    assert buf.take() == [2, 3, 4]
    assert buf.take() == []


def test_take_limit_keeps_the_rest_in_order() -> None:
    buf: TailBuffer[int] = TailBuffer(10)
    for i in range(4):
        buf.push(i)
    assert buf.take(3) == [0, 1, 2]
    assert buf.take(3) == [3]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TailBuffer(0)


async def test_get_waits_for_a_push() -> None:
    buf: TailBuffer[str] = TailBuffer(2)
    waiter = asyncio.create_task(buf.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    buf.push("a")
    assert await asyncio.wait_for(waiter, 1) == ["a"]


async def test_get_times_out_empty_and_close_releases() -> None:
    buf: TailBuffer[str] = TailBuffer(2)
    assert await buf.get(timeout=0.01) == []
    waiter = asyncio.create_task(buf.get())
    await asyncio.sleep(0)
    buf.close()
    assert await asyncio.wait_for(waiter, 1) == []
