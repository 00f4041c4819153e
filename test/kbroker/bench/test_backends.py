"""`kbroker bench backends`: finding each server's process by its port, the side-by-side table
and its per-backend targets, and (with real servers, tiny rates) one run over two backends."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kbroker.bench import backends, execute, runner
from kbroker.bench.results import ProcessUsage, ScenarioResult, StepResult


@pytest.mark.parametrize(
    ("backend", "address", "port"),
    [
        ("kafka", "127.0.0.1:9092,127.0.0.1:9093", 9092),
        ("nats", "nats://127.0.0.1:4222,nats://127.0.0.1:4223", 4222),
        ("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", 5672),
        ("kafka", "nonsense", None),
    ],
)
def test_server_port(backend: str, address: str, port: int | None) -> None:
    assert backends.server_port(backend, address) == port


def test_the_listening_process_is_found_by_its_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert backends.backend_pids("nats", f"nats://127.0.0.1:{port}") == (os.getpid(),)
    assert backends.backend_pids("nats", None) == ()


def _step(rate: float, accepted: int, delivered: int = 0, p99: float = 10.0) -> StepResult:
    usage = (
        ProcessUsage("server", accepted * 0.0002, 0.2, 0.5, 1, 1),
        ProcessUsage("backend", accepted * 0.0001, 0.1, 0.2, 1, 1),
    )
    return StepResult(
        target_rate=rate, duration=1.0, sent=accepted, accepted=accepted, errors=0,
        statuses={"202": accepted}, ingress_latency_ms={"p99": p99},
        expected=delivered, delivered=delivered, e2e_latency_ms={"p99": p99},
        send_seconds=1.0, deliver_seconds=1.0, usage=usage, p99_bound_ms=100.0,
    )  # fmt: skip


def _result(*steps: StepResult) -> ScenarioResult:
    return ScenarioResult("x", "", steps)


def test_table_judges_each_backend_against_the_same_runs_kafka_row() -> None:
    results = {
        "kafka": {
            "ingress-all": _result(_step(5000, 5000), _step(7500, 7500, p99=500)),
            "e2e": _result(_step(3000, 3000, 3000)),
        },
        "nats": {
            "ingress-all": _result(_step(2000, 2000), _step(4500, 4500, p99=500)),
            "e2e": _result(_step(1000, 1000, 1000, p99=500)),  # no knee
        },
    }
    rows = {r["backend"]: r for r in backends.table(results)}
    kafka, nats = rows["kafka"], rows["nats"]
    assert kafka["ingress-all_knee"] == 5000
    assert kafka["ingress-all_best"] == 7500  # lossless, whatever its p99
    assert kafka["target_ingress"].startswith("met")
    assert kafka["target_e2e"].startswith("met")
    assert nats["target_ingress"] == "not met (2,000 vs 4,000)"
    assert nats["e2e_knee"] == 0.0 and nats["target_e2e"].startswith("not met")
    assert nats["ingress-all_kbroker_cpu_s_per_1k"] == pytest.approx(0.2)
    assert nats["ingress-all_server_cpu_s_per_1k"] == pytest.approx(0.1)
    assert nats["e2e_server_cpu_s_per_1k"] == pytest.approx(0.1)  # per delivered event
    assert nats["ingress-none_knee"] is None  # not run: not judged as zero


@pytest.mark.slow
@pytest.mark.nats
@pytest.mark.timeout(180)
async def test_one_run_over_two_backends(nats_url: str, tmp_path: Path) -> None:
    tiny = (backends.Row("ingress-all", "ingress", "all", (50, 50, 100)),
            backends.Row("e2e", "e2e", "all", (50, 50, 50)))  # fmt: skip
    base = execute.BenchOptions(load=runner.LoadOptions(concurrency=4), rates=(50.0,), duration=1.0)
    seen: list[str] = []
    got = await backends.run_all(
        base, {"nats": nats_url, "kafka": None}, lambda n, _: seen.append(n), rows=tiny
    )
    assert seen == ["embedded/ingress-all", "embedded/e2e", "nats/ingress-all", "nats/e2e"]
    assert set(got) == {"embedded", "nats"}  # no Kafka address: no Kafka rows
    for by_row in got.values():
        for result in by_row.values():
            assert result.skipped is None, result.skipped
            assert result.facts["channel"] in ("embedded", "nats")
    table = {r["backend"]: r for r in backends.table(got)}
    assert table["nats"]["e2e_best"] and table["nats"]["e2e_best"] > 0
    assert table["nats"]["ingress-all_server_cpu_s_per_1k"] is not None  # nats-server found
    assert table["embedded"]["ingress-all_server_cpu_s_per_1k"] is None  # no server process
