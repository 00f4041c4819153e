"""The open-loop schedule, and the generator honouring it against a slow and a fast fake server.

The generator's `clients.Client` Protocol is the seam: the fakes here record when each request
was handed over and what `benchts` (intended send time) it carried.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import uvloop

from kbroker.bench import generator, payload
from kbroker.bench.schedule import Schedule, split_range


def test_intended_times_are_fixed_in_advance() -> None:
    s = Schedule(start=100.0, rate=4.0, count=5, offset=0.1)
    assert [s.intended(i) for i in range(5)] == [100.1, 100.35, 100.6, 100.85, 101.1]
    assert s.end == 101.1


@pytest.mark.parametrize(("rate", "count"), [(0.0, 1), (-1.0, 1), (1.0, -1)])
def test_schedule_rejects_nonsense(rate: float, count: int) -> None:
    with pytest.raises(ValueError):
        Schedule(start=0.0, rate=rate, count=count)


@pytest.mark.parametrize(
    ("lo", "count", "parts", "want"),
    [
        (0, 10, 1, [(0, 10)]),
        (5, 10, 3, [(5, 4), (9, 3), (12, 3)]),
        (0, 2, 3, [(0, 1), (1, 1), (2, 0)]),
    ],
    ids=["one", "uneven", "more-parts-than-events"],
)
def test_split_range_covers_every_sequence_number_once(
    lo: int, count: int, parts: int, want: list[tuple[int, int]]
) -> None:
    got = split_range(lo, count, parts)
    assert got == want
    assert [s for a, n in got for s in range(a, a + n)] == list(range(lo, lo + count))


class FakeClient:
    """Answers 202 after `delay` seconds; records (loop time handed over, benchts, seq)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[tuple[float, int, int]] = []  # time.monotonic() when handed over

    async def post(self, slot: int, headers: list[tuple[str, str]], body: bytes) -> int:
        h = dict(headers)
        self.calls.append(
            (
                time.monotonic(),
                int(h.get("ce-benchts", -1)),
                int(h.get("ce-benchseq", -1)),
            )
        )
        await asyncio.sleep(self.delay)
        return 202

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_slow_server_is_charged_for_queueing_no_coordinated_omission() -> None:
    # 100 events/s, one connection, a server taking 50 ms: a closed-loop tool would report
    # 50 ms. Event i is due at i*10 ms but can only go out at i*50 ms, so latency from the
    # intended time grows to about 19*40+50 = 810 ms, and that is what must be reported.
    client = FakeClient(delay=0.05)
    start = time.time() + 0.05
    stats = await generator.run(client, payload.EventShape(), 1, 0, 20, 100.0, start)
    assert stats.sent == stats.accepted == 20
    assert stats.errors == 0
    assert stats.latency.percentile(99) >= 600_000
    assert stats.latency.percentile(50) >= 300_000
    ts = [c[1] for c in client.calls]
    assert [b - a for a, b in itertools.pairwise(ts)] == [10_000] * 19
    assert abs(ts[0] - start * 1e6) < 1000


async def _fast_run() -> tuple[FakeClient, generator.RunStats, float]:
    client = FakeClient(delay=0.0)
    start = time.time() + 0.05
    offset = time.monotonic() - time.time()
    stats = await generator.run(client, payload.EventShape(), 4, 1000, 40, 200.0, start)
    return client, stats, offset


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_fast_server_gets_requests_on_schedule_not_earlier(loop: str) -> None:
    # uvloop's timers fire up to a millisecond early: the generator must wait out the rest.
    client, stats, offset = (
        uvloop.run(_fast_run()) if loop == "uvloop" else asyncio.run(_fast_run())
    )
    assert stats.accepted == 40
    assert sorted(c[2] for c in client.calls) == list(range(1000, 1040))
    for handed, ts_us, _ in client.calls:
        due = ts_us / 1e6 + offset
        assert handed >= due - 0.0001, f"sent {(due - handed) * 1e3:.2f} ms before its time"
        # Loose: a shared CI machine can stall a process for tens of ms; a broken scheduler
        # (sending everything at once, or one interval late per event) is off by far more.
        assert handed - due < 0.25, "sent far after its intended time on an idle server"
    assert stats.latency.percentile(50) < 100_000


async def test_batch_mode_counts_events_not_requests() -> None:
    client = FakeClient(delay=0.0)
    shape = payload.EventShape(mode="batch", batch=7)
    stats = await generator.run(client, shape, 2, 0, 30, 3000.0, time.time() + 0.02)
    assert stats.requests == 5  # 7+7+7+7+2
    assert stats.sent == stats.accepted == 30
