"""The cluster deployables as separate processes: /metrics on each, one trace across both,
and 503 (not 404) from an ingress that has no contract yet.

    producer --> kbroker ingress --> embedded log --> kbroker filter --> sink
                 /metrics: accepted             /metrics: deliveries
                 span broker:...  ------------> span trigger:... --> span send ...
                           (both export to one OTLP receiver, test/fixtures/otlp.py)

Both processes read the same contract file, as pods read the mounted ConfigMap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2e.test_metrics import Samples, value
from fixtures.broker import make_event
from fixtures.otlp import OtlpReceiver, ReceivedSpan
from fixtures.subscriber import SinkServer
from kbroker.core import contract, events
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Deployable:
    kind: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


Spawn = Callable[..., Deployable]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start `kbroker <kind> --port 0 ...` and wait for its "ready on URL" line."""
    started: list[Deployable] = []

    def start(kind: str, *args: str, env: dict[str, str] | None = None) -> Deployable:
        log = tmp_path / f"{kind}.log"
        argv = [sys.executable, "-m", "kbroker", kind, "--port", "0", *args]
        with log.open("ab") as err:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env={**os.environ, **(env or {})}
            )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        d = Deployable(kind, proc, log, line.rpartition(" ready on ")[2])
        started.append(d)
        assert line.startswith(f"kbroker {kind} ready on "), f"{line!r}: {d.tail()}"
        return d

    try:
        yield start
    finally:
        for d in started:
            if d.proc.poll() is None:
                d.proc.terminate()
                try:
                    d.proc.wait(30)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    d.proc.wait()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


async def scrape(client: httpx.AsyncClient, d: Deployable) -> Samples:
    resp = await client.get(f"{d.url}/metrics")
    assert resp.status_code == 200, f"{d.kind} /metrics: {resp.status_code}"
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def until(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


def otel(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": service,
    }


async def test_ingress_and_filter_processes_expose_metrics_and_one_trace(
    tmp_path: Path,
    spawn: Spawn,
    http: httpx.AsyncClient,
    sinks: SinkServer,
    otlp_receiver: OtlpReceiver,
) -> None:
    sink = sinks.sink("s")
    contract_file = tmp_path / "contract.json"
    # The address is the ingress's own, known only once it listens; nothing here replies.
    broker = contract.Broker("default", "default", "b", "http://ingress/default/default")
    trigger = contract.Trigger("default", "t", contract.TriggerUid("t"), "default", sink.url)
    contract_file.write_bytes(contract.Contract(1, (broker,), (trigger,)).to_json())
    common = ("--contract", str(contract_file), "--data", str(tmp_path / "data"), "--poll", "0.1")
    filter_ = spawn("filter", *common, env=otel(otlp_receiver, "kb-filter"))

    async def pinned() -> bool:
        resp = await http.get(f"{filter_.url}/contract-generation")
        return bool(resp.json()["generation"] >= 1)

    await until(pinned, f"filter never served generation 1: {filter_.tail()}")
    ingress = spawn("ingress", *common, env=otel(otlp_receiver, "kb-ingress"))
    await until(lambda: http.get(f"{ingress.url}/readyz"), f"ingress never ready: {ingress.tail()}")

    sent = 4
    for i in range(sent):
        headers, body = events.encode_binary(make_event(f"e{i}"))
        resp = await http.post(f"{ingress.url}/default/default", headers=headers, content=body)
        assert resp.status_code == 202, resp.text
    await sink.wait_for(sent)

    accepted = await scrape(http, ingress)
    assert (
        value(
            accepted,
            "kbroker_broker_ingress_event_count_total",
            broker_name="default",
            response_code="202",
        )
        == sent
    )

    async def delivered() -> bool:
        samples = await scrape(http, filter_)
        attempts = value(
            samples, "kbroker_trigger_event_count_total", trigger_name="t", response_code="200"
        )
        outcomes = value(
            samples, "kbroker_trigger_outcomes_total", trigger_name="t", outcome="delivered"
        )
        return attempts == sent and outcomes == sent

    await until(delivered, "the filter's /metrics never counted the deliveries", 10.0)

    # Three spans per event: two processes, one trace each, parent links across the channel.
    spans = await otlp_receiver.wait_for(3 * sent, timeout=20.0)
    traces: dict[str, dict[str, list[ReceivedSpan]]] = {}
    for s in spans:
        traces.setdefault(s.trace_id, {}).setdefault(s.name, []).append(s)
    assert len(traces) == sent, sorted((t, sorted(n)) for t, n in traces.items())
    for by_name in traces.values():
        ((ing,), (trig,), (send,)) = (
            by_name["broker:default.default"],
            by_name["trigger:t.default"],
            by_name[f"send {sink.url}"],
        )
        assert ing.resource["service.name"] == "kb-ingress"
        assert trig.resource["service.name"] == "kb-filter"
        assert trig.parent_span_id == ing.span_id
        assert send.parent_span_id == trig.span_id
    received = {r.event.id: r.headers["traceparent"] for r in sink.received if r.event}
    assert {tp.split("-")[1] for tp in received.values()} == set(traces)

    for d in (ingress, filter_):  # SIGTERM: a clean stop, said in the log
        d.proc.terminate()
        assert await asyncio.to_thread(d.proc.wait, 30) == 0, d.tail()
        log = d.tail()
        component = f'component="kbroker {d.kind}"'
        assert f"shutting down {component}" in log and f"stopped {component}" in log, log


async def test_ingress_without_a_contract_answers_503_not_404(
    tmp_path: Path, spawn: Spawn, http: httpx.AsyncClient
) -> None:
    """Before its first contract an ingress knows no broker at all: "not found" would be a lie
    that producers treat as final, so it asks them to come back."""
    contract_file = tmp_path / "contract.json"  # not written yet: the controller is late
    args = ("--contract", str(contract_file), "--data", str(tmp_path / "data"), "--poll", "0.1")
    ingress = spawn("ingress", *args)
    headers, body = events.encode_binary(make_event("early"))
    early = await http.post(f"{ingress.url}/default/default", headers=headers, content=body)
    assert early.status_code == 503, early.text
    assert early.headers["retry-after"] == "1"
    assert (await http.get(f"{ingress.url}/readyz")).status_code == 503

    broker = contract.Broker("default", "default", "b", f"{ingress.url}/default/default")
    contract_file.write_bytes(contract.Contract(1, (broker,)).to_json())

    async def loaded() -> bool:
        return (await http.get(f"{ingress.url}/readyz")).status_code == 200

    await until(loaded, f"ingress never read its contract: {ingress.tail()}")
    resp = await http.post(f"{ingress.url}/default/default", headers=headers, content=body)
    assert resp.status_code == 202
    resp = await http.post(f"{ingress.url}/default/other", headers=headers, content=body)
    assert resp.status_code == 404  # now it knows
