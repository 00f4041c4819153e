"""kill -9 of the dispatcher and of the ingress as separate processes (the cluster deployables),
under load, on both channels: every event answered 202 is delivered, nothing is invented.

    sender (all) --> kbroker ingress --> channel --> kbroker filter --> sink
                     kill -9, restart               kill -9, restart
                 (both read the same contract file, as pods read the mounted ConfigMap)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2e.test_crash import Ledger, load, wait_delivered
from fixtures.broker import ON_EVERY_CHANNEL
from fixtures.subscriber import SinkServer
from kbroker.core import contract

pytestmark = ON_EVERY_CHANNEL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Deployable:
    kind: str  # "ingress" | "filter"
    port: int
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self, client: httpx.AsyncClient, generation: int) -> None:
        path = "/readyz" if self.kind == "ingress" else "/contract-generation"
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                resp = await client.get(f"http://127.0.0.1:{self.port}{path}")
                if resp.status_code == 200 and (
                    self.kind == "ingress" or resp.json()["generation"] >= generation
                ):
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.kind} never ready: {self.log.read_text()[-2000:]}")


@dataclass
class Target:
    url: str

    def broker_url(self) -> str:
        return self.url


async def test_kill_9_filter_then_ingress_loses_nothing(
    tmp_path: Path, sinks: SinkServer, broker_channel: str, request: pytest.FixtureRequest
) -> None:
    sink = sinks.sink("s")
    ingress_port, filter_port = free_port(), free_port()
    tag = uuid.uuid4().hex[:8]
    address = f"http://127.0.0.1:{ingress_port}/default/default"
    extra: list[str] = []
    if broker_channel == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        from kbroker.core.channels import kafka

        broker = contract.Broker(
            "default",
            "default",
            "b",
            address,
            channel="kafka",
            topic=f"kb-{tag}",
            channel_config=(("bootstrap.servers", bootstrap), ("default.topic.partitions", "2")),
        )
        channel = kafka.KafkaChannel(kafka.KafkaSettings(bootstrap=bootstrap))
        await channel.start()
        await channel.ensure_broker(broker)  # what the controller does for a new Broker
        await channel.close()
        extra = ["--kafka", bootstrap]
    elif broker_channel == "nats":
        url = request.getfixturevalue("nats_url")
        from kbroker.core.channels import nats

        broker = contract.Broker(
            "default", "default", "b", address, channel="nats", topic=f"kb-{tag}"
        )
        nats_channel = nats.NatsChannel(nats.NatsSettings(url=url))
        await nats_channel.ensure_broker(broker)  # what the controller does for a new Broker
        await nats_channel.close()
        extra = ["--nats", url]
    elif broker_channel == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_url")
        from kbroker.core.channels import rabbitmq

        broker = contract.Broker(
            "default",
            "default",
            "b",
            address,
            channel="rabbitmq",
            topic=f"kb-{tag}",
            channel_config=(("queueType", "quorum"), ("url", url)),
        )
        rmq = rabbitmq.RabbitMQChannel(rabbitmq.RabbitMQSettings(url=url))
        await rmq.start()
        await rmq.ensure_broker(broker)  # what the controller does for a new Broker
        await rmq.close()
        extra = ["--rabbitmq", url]
    else:
        broker = contract.Broker("default", "default", "b", address, topic=f"kb-{tag}")
    trigger = contract.Trigger(
        "default", "t", contract.TriggerUid("t"), "default", sink.url, consumer_group=f"kb-{tag}"
    )
    contract_file = tmp_path / "contract.json"
    contract_file.write_bytes(contract.Contract(1, (broker,), (trigger,)).to_json())

    def deployable(kind: str, port: int) -> Deployable:
        argv = [
            sys.executable,
            "-m",
            "kbroker",
            kind,
            "--contract",
            str(contract_file),
            "--port",
            str(port),
            "--data",
            str(tmp_path / "data"),
            "--poll",
            "0.2",
            *extra,
        ]
        return Deployable(kind, port, argv, tmp_path / f"{kind}.log")

    ingress, filter_ = deployable("ingress", ingress_port), deployable("filter", filter_port)
    ledger = Ledger()
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            filter_.start()
            await filter_.ready(client, 1)  # start positions pinned
            ingress.start()
            await ingress.ready(client, 1)
            sender = asyncio.create_task(load(Target(address), ledger, stop, "s", concurrency=8))
            await asyncio.sleep(1.5)
            filter_.kill()  # the dispatcher, mid-stream
            await asyncio.sleep(1.0)
            filter_.start()
            await filter_.ready(client, 1)
            await asyncio.sleep(1.0)
            ingress.kill()  # the ingress, with requests in flight
            await asyncio.sleep(0.5)
            ingress.start()
            await ingress.ready(client, 1)
            await asyncio.sleep(1.0)
            stop.set()
            await sender
            assert len(ledger.accepted) > 100, "the load never got going"
            missing = await wait_delivered(sink, ledger.accepted, 60.0)
            assert not missing, f"{len(missing)} acknowledged events lost: {sorted(missing)[:5]}"
            assert set(sink.ids()) <= ledger.sent, "delivered an event that was never sent"
            print(
                f"{broker_channel}: sent={len(ledger.sent)} accepted={len(ledger.accepted)} "
                f"delivered={len(set(sink.ids()))} "
                f"duplicates={len(sink.ids()) - len(set(sink.ids()))} failed={ledger.failed}"
            )
        finally:
            stop.set()
            ingress.stop()
            filter_.stop()
