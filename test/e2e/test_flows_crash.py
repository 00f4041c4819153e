"""kill -9 in the middle of a Sequence under load, on the embedded log and on Kafka.

    sender (16 in flight) --> Sequence: channel 0 --> step 0 --> channel 1 --> step 1 --> sink
                              kill -9 / restart on the same --data, twice

Every event the Sequence's address answered 202 must reach the final reply at least once, whatever
hop it was on when the process died (stored in channel 0, being delivered to a step, its reply
being stored in channel 1); the sink never sees an event that was never sent.
"""

from __future__ import annotations

import asyncio
import functools

import httpx
import pytest
from e2e import flows_yaml as fy
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker
from fixtures.subscriber import Sink, SinkServer
from kbroker.core import events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize(
        "broker_channel", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]
    ),
]
NS = "crash"


async def load(url: str, accepted: set[str], sent: set[str], stop: asyncio.Event) -> None:
    counter = iter(range(10**9))
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def one() -> None:
            while not stop.is_set():
                ev_id = f"c-{next(counter)}"
                headers, body = events.encode_binary(fy.text_event(ev_id, ev_id))
                sent.add(ev_id)
                try:
                    resp = await client.post(
                        url, headers=[*headers, ("kbroker-durability", "all")], content=body
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                if resp.status_code == 202:
                    accepted.add(ev_id)

        await asyncio.gather(*(one() for _ in range(16)))


async def _flowing(accepted: set[str], target: int, out: Sink, received: int) -> bool:
    return len(accepted) >= target and len(out.received) > received


async def missing_after(sink: Sink, ids: set[str], timeout: float) -> set[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and ids - set(sink.ids()):
        await asyncio.sleep(0.1)
    return ids - set(sink.ids())


async def test_kill_9_mid_sequence_loses_no_acknowledged_event(
    start_broker: StartBroker, sinks: SinkServer, broker_channel: str
) -> None:
    out = sinks.sink("out")
    steps = [fy.uri(sinks.sink(f"step{i}", reply=fy.appender(f"-{i}")).url) for i in (0, 1)]
    flow = fy.sequence("crashy", NS, steps, fy.TEMPLATES[broker_channel], fy.uri(out.url))
    proc = await start_broker({"seq.yaml": ky.dump(flow)})
    obj = await fy.wait_ready(proc, "Sequence", "crashy", NS)
    url = obj["status"]["address"]["url"]
    sent: set[str] = set()
    accepted: set[str] = set()
    for _ in range(2):
        stop = asyncio.Event()
        sender = asyncio.create_task(load(url, accepted, sent, stop))
        target, seen = len(accepted) + 100, len(out.received)
        # Kill once this round's events are being accepted and flowing through both steps.
        await proc.until(
            functools.partial(_flowing, accepted, target, out, seen + 20),
            30.0,
            "the load never got going",
        )
        proc.kill()
        await asyncio.sleep(0.2)
        stop.set()
        await sender
        await proc.start()
    assert len(accepted) > 100, "the load never got going"
    missing = await missing_after(out, accepted, 60.0)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    delivered = {e.id for e in out.events}
    assert delivered <= sent, "delivered an event that was never sent"
    assert all(e.data == e.id.encode() + b"-0-1" for e in out.events)  # both steps, in order
    print(
        f"sent={len(sent)} accepted={len(accepted)} delivered={len(delivered)} "
        f"duplicates={len(out.events) - len(delivered)}"
    )
