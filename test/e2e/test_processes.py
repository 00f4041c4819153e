"""`kbroker run --processes 2`: two ingress processes share the port, one dispatches.

    producers (new connections) --SO_REUSEPORT--> kbroker run  \\
                                                 kbroker ingress --> embedded log --> sink
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events


async def test_two_ingress_processes_deliver_each_event_once(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker(
        {"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))}, extra_args=["--processes", "2"]
    )
    await proc.wait_ready_object("Trigger", "t")
    assert proc.proc is not None

    async def helper_ready() -> bool:
        return (proc.data_dir / "contract.json").exists()

    await proc.until(helper_ready, 30, "the extra ingress never got its contract")
    pid = proc.proc.pid
    children = (Path(f"/proc/{pid}/task/{pid}/children").read_text()).split()
    commands = [Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0") for c in children]
    assert [c for c in commands if b"ingress" in c and b"--reuse-port" in c], commands
    await asyncio.sleep(1.0)  # its first contract poll

    async def send(i: int) -> int:
        headers, body = events.encode_binary(make_event(f"p{i}"))
        async with httpx.AsyncClient() as client:  # a new connection each: both processes serve
            return (await client.post(proc.broker_url(), headers=headers, content=body)).status_code

    statuses = await asyncio.gather(*(send(i) for i in range(40)))
    assert statuses == [202] * 40
    await sink.wait_for(40, 30)
    await asyncio.sleep(0.5)
    assert sorted(sink.ids()) == sorted(f"p{i}" for i in range(40))  # once each


async def test_extra_processes_listen_before_ready_is_reported(start_broker: StartBroker) -> None:
    """Connections opened the moment `kbroker ready` is printed already spread over both
    processes, and the extra one knows the broker (no 404 before its first contract poll);
    what is not an event (/status, /metrics) is answered by the primary whichever one it reaches."""
    proc = await start_broker({"o.yaml": ky.dump(ky.broker())}, extra_args=["--processes", "2"])

    async def send(i: int) -> int:
        headers, body = events.encode_binary(make_event(f"q{i}"))
        async with httpx.AsyncClient() as client:  # a new connection each
            return (await client.post(proc.broker_url(), headers=headers, content=body)).status_code

    statuses = await asyncio.gather(*(send(i) for i in range(40)))
    assert statuses == [202] * 40

    async def status() -> int:
        async with httpx.AsyncClient() as client:  # the extra process passes it to the primary
            return (await client.get(f"{proc.base}/status")).status_code

    assert await asyncio.gather(*(status() for _ in range(20))) == [200] * 20
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{proc.base}/metrics")).text
    served_here = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kbroker_broker_ingress_request_count_total{")
        and 'broker_name="default"' in line
    )
    # This process's metrics count only its own requests; 40 new connections all hashed to one of
    # two listeners has a chance of 2^-40.
    assert 0 < served_here < 40, [x for x in text.splitlines() if "request_count" in x]
