"""Ordered and unordered delivery through the running broker, on both channels.

producer (interleaved keys k0..k3) --> kbroker run --> slow sink (ordered trigger)
                                                 \\--> slow sink (unordered, max-in-flight 4)
"""

from __future__ import annotations

from e2e import knative_yaml as ky
from fixtures.broker import ON_EVERY_CHANNEL, StartBroker, make_event
from fixtures.subscriber import SinkServer

pytestmark = ON_EVERY_CHANNEL


async def test_ordered_per_key_and_in_flight_bound(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    ordered = sinks.sink("ordered", delay=0.02)
    bounded = sinks.sink("bounded", delay=0.05)
    proc = await start_broker(
        {
            "o.yaml": ky.dump(
                ky.broker(),
                ky.trigger(
                    "ordered",
                    ordered.url,
                    annotations={"kafka.eventing.knative.dev/delivery.order": "ordered"},
                ),
                ky.trigger("bounded", bounded.url, annotations={"kbroker.dev/max-in-flight": "4"}),
            )
        }
    )
    await proc.wait_ready_object("Trigger", "ordered")
    await proc.wait_ready_object("Trigger", "bounded")
    sent = [(f"k{i % 4}", f"e{i}") for i in range(60)]
    for key, ev_id in sent:
        ev = make_event(ev_id, partitionkey=key)
        assert (await proc.send(ev)).status_code == 202
    await ordered.wait_for(60, 60)
    await bounded.wait_for(60, 60)
    for key in ("k0", "k1", "k2", "k3"):
        want = [ev_id for k, ev_id in sent if k == key]
        got = [r.headers["ce-id"] for r in ordered.received if r.headers["ce-partitionkey"] == key]
        assert got == want, f"{key} delivered out of order"
    assert ordered.peak <= 4  # one at a time per key
    assert 1 < bounded.peak <= 4  # concurrent, never above the trigger's bound
