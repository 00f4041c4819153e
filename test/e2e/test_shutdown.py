"""SIGTERM under load: every request gets its real answer, every 202 is delivered, exit code 0.

    64 keep-alive connections (Kbroker-Durability: all) --> kbroker run --> sink
                                         SIGTERM mid-stream, then restart on --data

A request may meet a closed port once the listener is gone (connection refused: it was never
sent); what must never happen is a connection that carried a request being closed without an
answer (a reset, "server disconnected"): the producer cannot tell whether its event was stored.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from e2e import knative_yaml as ky
from e2e.test_crash import wait_delivered
from fixtures.broker import ON_EVERY_CHANNEL, BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events

pytestmark = ON_EVERY_CHANNEL
CONNECTIONS = 64


@dataclass
class Ledger:
    sent: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    answers: Counter[int] = field(default_factory=Counter)
    refused: int = 0  # never reached the server: not in flight
    dropped: list[str] = field(default_factory=list)  # in flight, closed without an answer


async def load(proc: BrokerProcess, ledger: Ledger, started: asyncio.Event) -> None:
    """CONNECTIONS workers, each posting on its keep-alive connection until the port is closed."""
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def worker() -> None:
            while True:
                ev_id = f"e{next(counter)}"
                headers, body = events.encode_binary(make_event(ev_id))
                try:
                    async with session.post(
                        proc.broker_url(),
                        headers=[*headers, ("kbroker-durability", "all")],
                        data=body,
                    ) as resp:
                        await resp.read()
                except aiohttp.ClientConnectorError:
                    ledger.refused += 1  # the listener is gone: stop
                    return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    ledger.sent.add(ev_id)
                    ledger.dropped.append(f"{ev_id}: {exc!r}")
                    return
                ledger.sent.add(ev_id)
                ledger.answers[resp.status] += 1
                if resp.status == 202:
                    ledger.accepted.add(ev_id)
                if len(ledger.accepted) >= 200:
                    started.set()

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))


async def test_sigterm_under_load_answers_every_request_and_loses_nothing(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))})
    await proc.wait_ready_object("Trigger", "t")
    assert proc.proc is not None
    ledger = Ledger()
    started = asyncio.Event()
    sender = asyncio.create_task(load(proc, ledger, started))
    await asyncio.wait_for(started.wait(), 30)
    proc.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.proc.wait, 30)
    await asyncio.wait_for(sender, 30)
    log = proc.log_text()
    assert code == 0, log
    assert not ledger.dropped, f"{len(ledger.dropped)} requests got no answer: {ledger.dropped[:3]}"
    assert "shutting down" in log and "stopped" in log, log
    await proc.start()  # the same data folder: what was acknowledged is delivered
    missing = await wait_delivered(sink, ledger.accepted, 60.0)
    delivered = set(sink.ids())
    print(
        f"sent={len(ledger.sent)} acked={len(ledger.accepted)} delivered={len(delivered)} "
        f"lost={len(missing)} answers={dict(ledger.answers)} refused={ledger.refused}"
    )
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert delivered <= ledger.sent
