"""CESQL trigger filters in the running broker: exactly the matching events are delivered, an
invalid expression keeps only its own Trigger from being Ready, and mixed AND/OR is a warning.

    producer --> kbroker run --(cesql filters)--> sinks
"""

from __future__ import annotations

import asyncio

from e2e import knative_yaml as ky
from fixtures.broker import ON_EVERY_CHANNEL, StartBroker, make_event
from fixtures.subscriber import SinkServer

COMBO = "source LIKE '/shop/%' AND amount > 100 AND region IN ('eu', 'us')"


pytestmark = ON_EVERY_CHANNEL


async def test_cesql_triggers_deliver_exactly_matching_events(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    eq, combo, nested, everything = (sinks.sink(n) for n in ("eq", "combo", "nested", "all"))
    proc = await start_broker(
        {
            "c.yaml": ky.dump(
                ky.broker(),
                ky.trigger("eq", eq.url, filters=[{"cesql": "type = 'order.created'"}]),
                ky.trigger(
                    "combo",
                    combo.url,
                    filters=[{"cesql": COMBO}],
                ),
                ky.trigger(
                    "nested",
                    nested.url,
                    filters=[
                        {
                            "any": [
                                {"cesql": "EXISTS vip"},
                                {"not": {"cesql": "LOWER(type) LIKE 'order.%'"}},
                            ]
                        }
                    ],
                ),
                ky.trigger("all", everything.url),
            )
        }
    )
    for name in ("eq", "combo", "nested", "all"):
        await proc.wait_ready_object("Trigger", name)
    cases = [
        ("1", {"type": "order.created", "source": "/shop/a", "amount": "50", "region": "eu"}),
        ("2", {"type": "order.paid", "source": "/shop/b", "amount": "150", "region": "us"}),
        ("3", {"type": "ORDER.x", "source": "/other", "amount": "500", "region": "eu", "vip": "1"}),
        ("4", {"type": "user.created", "source": "/shop/c", "amount": "abc", "region": "eu"}),
    ]
    for ev_id, attrs in cases:
        ev = make_event(ev_id)
        ev.attributes.update(attrs)
        assert (await proc.send(ev)).status_code == 202
    await everything.wait_for(4)
    await asyncio.sleep(0.5)
    assert sorted(eq.ids()) == ["1"]
    assert sorted(combo.ids()) == ["2"]  # "abc" > 100 is a cast error: no match, never open
    assert sorted(nested.ids()) == ["3", "4"]


async def test_invalid_cesql_only_breaks_its_trigger(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    good = sinks.sink("good")
    proc = await start_broker(
        {
            "c.yaml": ky.dump(
                ky.broker(),
                ky.trigger("bad", good.url, filters=[{"cesql": "type = "}]),
                ky.trigger("mixed", good.url, filters=[{"cesql": "true AND false OR true"}]),
                ky.trigger("good", good.url, filters=[{"cesql": "type = 'ok'"}]),
            )
        }
    )
    await proc.wait_ready_object("Trigger", "good")
    await proc.wait_ready_object("Trigger", "mixed")
    bad = await proc.object_status("Trigger", "bad")
    assert bad is not None
    ready = next(c for c in bad["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert "type = " in ready["message"]  # the parse error names the expression
    mixed = await proc.object_status("Trigger", "mixed")
    assert mixed is not None
    assert "AND" in str(mixed["status"]) and "OR" in str(mixed["status"])  # the grouping warning
    ev = make_event("g1", type="ok")
    await proc.send(ev)
    await good.wait_for(2)  # `good` and `mixed` (which is true) both deliver; `bad` never does
    await asyncio.sleep(0.3)
    assert len(good.received) == 2
