"""Smoke test of `kbroker bench`: real generator, receiver and servers, a second of load each.

    generator --POST--> ceiling app (uvicorn)            ceiling: counts at the generator only
    generator --POST--> receiver /t/direct               direct: + deliveries at the receiver
    generator --POST--> kbroker run --> receiver /t/t0   ingress, e2e: the real broker

Asserts that the numbers add up (sent = accepted + errors; delivered + dead letters + missing =
expected; nothing negative) and that the JSON, the re-rendered report and the PNG are produced.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker import cmd_bench
from kbroker.bench import brokerconfig

pytestmark = pytest.mark.timeout(120)
SERVERS = pytest.mark.slow  # starts real servers and puts seconds of load through them


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    code = cmd_bench.main(["bench", *args, "--json", str(out)])
    assert code == 0
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    return doc


def _check_counts(step: dict[str, Any], with_delivery: bool) -> None:
    for key in ("sent", "accepted", "errors", "delivered", "missing", "duplicates", "expected"):
        assert step[key] >= 0, key
    assert step["sent"] == step["accepted"] + step["errors"]
    assert sum(step["statuses"].values()) > 0
    assert step["ingress_latency_ms"]["count"] * 1 >= 1
    if with_delivery:
        assert step["expected"] == step["accepted"]
        assert step["delivered"] + step["dead_lettered"] + step["missing"] == step["expected"]
        for trigger in step["per_trigger"].values():
            owed = trigger["delivered"] + trigger["dead_lettered"] + trigger["missing"]
            assert owed == trigger["expected"]
        assert step["e2e_latency_ms"]["count"] >= step["delivered"]
    roles = {u["role"] for u in step["usage"]}
    assert "generator" in roles
    assert all(u["cpu_seconds"] >= 0 for u in step["usage"])


@SERVERS
def test_ceiling_and_direct(tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    doc = _run(
        tmp_path, "ceiling", "direct", "--rate", "400", "--duration", "1", "--plot", str(png)
    )
    assert doc["machine"]["cores"] >= 1
    assert doc["machine"]["versions"]["python"]
    assert "--rate 400" in doc["command"]
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert set(by_name) == {"ceiling", "direct"}
    ceiling, direct = by_name["ceiling"]["steps"][0], by_name["direct"]["steps"][0]
    assert ceiling["sent"] == direct["sent"] == 400
    _check_counts(ceiling, with_delivery=False)
    assert "server" in {u["role"] for u in ceiling["usage"]}
    _check_counts(direct, with_delivery=True)
    assert direct["missing"] == 0
    assert direct["duplicates"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A saved file renders again without a run.
    assert cmd_bench.main(["bench", "--report", str(tmp_path / "bench.json")]) == 0


@SERVERS
def test_batch_mode_direct_counts_events(tmp_path: Path) -> None:
    doc = _run(
        tmp_path, "direct", "--mode", "batch", "--batch-size", "10", "--rate", "500",
        "--duration", "1",
    )  # fmt: skip
    step = doc["scenarios"][0]["steps"][0]
    _check_counts(step, with_delivery=True)
    assert step["sent"] == 500
    assert sum(step["statuses"].values()) == 50  # requests, 10 events each


@SERVERS
def test_aiohttp_client(tmp_path: Path) -> None:
    doc = _run(tmp_path, "direct", "--client", "aiohttp", "--rate", "200", "--duration", "1")
    step = doc["scenarios"][0]["steps"][0]
    _check_counts(step, with_delivery=True)
    assert step["delivered"] == 200


@pytest.fixture
def running_server() -> Iterator[str]:
    """Someone else's server (the ceiling app under uvicorn), for --url."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "kbroker.bench.ceiling:app", "--port", str(port),
         "--log-level", "warning"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@SERVERS
def test_url_mode_loads_a_running_server_and_refuses_triggers_without_config(
    tmp_path: Path, running_server: str
) -> None:
    doc = _run(tmp_path, "ingress", "e2e", "--url", running_server, "--rate", "200",
               "--duration", "1")  # fmt: skip
    by_name = {s["name"]: s for s in doc["scenarios"]}
    step = by_name["ingress"]["steps"][0]
    _check_counts(step, with_delivery=False)
    assert step["accepted"] == 200
    assert "server" not in {u["role"] for u in step["usage"]}  # not ours: no pid, no CPU
    assert "--broker-config" in by_name["e2e"]["skipped"]


def test_bad_scenario_is_a_usage_error(tmp_path: Path) -> None:
    assert cmd_bench.main(["bench", "fanout-x-y"]) == 2


@SERVERS
def test_ingress_and_e2e_against_kbroker_run(tmp_path: Path) -> None:
    doc = _run(tmp_path, "ingress", "e2e", "--rate", "300", "--duration", "1")
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert by_name["ingress"]["skipped"] is None, by_name["ingress"]["skipped"]
    assert by_name["e2e"]["skipped"] is None, by_name["e2e"]["skipped"]
    ingress, e2e = by_name["ingress"]["steps"][0], by_name["e2e"]["steps"][0]
    _check_counts(ingress, with_delivery=False)
    _check_counts(e2e, with_delivery=True)
    assert ingress["accepted"] == e2e["accepted"] == 300
    assert e2e["missing"] == 0
    assert by_name["e2e"]["facts"]["first_delivery_seconds"] >= 0


@SERVERS
def test_overload_plumbing_at_tiny_rates(tmp_path: Path) -> None:
    """Backlog, live trigger, a staircase, then 1.5x and 2x the sustainable rate: every step
    accounted for and a verdict printed (tiny rates: this checks the plumbing, not the broker)."""
    doc = _run(tmp_path, "overload", "--staircase", "50:50:100", "--hold", "1", "--p99", "100000")
    sc = doc["scenarios"][0]
    assert sc["skipped"] is None, sc["skipped"]
    backlog, *e2e = sc["steps"]
    _check_counts(backlog, with_delivery=False)
    assert backlog["expected"] == backlog["delivered"] == 0  # owed to no trigger
    assert [s["target_rate"] for s in e2e] == [50, 100, 150, 200]
    for step in e2e:
        _check_counts(step, with_delivery=True)
        assert step["missing"] == 0
    facts = sc["facts"]
    assert facts["sustainable_rate"] == 100
    assert facts["overload_target"].split(":")[0] in ("met", "not met")
    assert len(facts["overload_ratio"]) == 2


@SERVERS
@pytest.mark.parametrize(
    ("channel", "server"),
    [
        pytest.param("nats", "nats_url", marks=pytest.mark.nats),
        pytest.param("rabbitmq", "rabbitmq_url", marks=pytest.mark.rabbitmq),
    ],
)
def test_e2e_on_a_server_channel(
    tmp_path: Path, channel: str, server: str, request: pytest.FixtureRequest
) -> None:
    """`--channel nats|rabbitmq`: the generated Broker selects that backend and every accepted
    event is delivered through it (tiny rate: this checks the wiring, not the server)."""
    url = request.getfixturevalue(server)
    doc = _run(tmp_path, "e2e", "--channel", channel, f"--{channel}", url, "--rate", "100",
               "--duration", "1")  # fmt: skip
    sc = doc["scenarios"][0]
    assert sc["skipped"] is None, sc["skipped"]
    step = sc["steps"][0]
    _check_counts(step, with_delivery=True)
    assert step["accepted"] == 100
    assert step["missing"] == 0
    assert f"--{channel} {url}" in doc["command"]
    assert sc["facts"]["channel"] == channel  # the broker's own status, not our request


@pytest.mark.parametrize("channel", ["kafka", "nats", "rabbitmq"])
def test_server_channel_without_its_server_is_a_usage_error(channel: str) -> None:
    assert cmd_bench.main(["bench", "e2e", "--channel", channel]) == 2


@pytest.mark.parametrize(
    ("channel", "kinds", "broker_class"),
    [
        ("embedded", ["Broker"], None),
        ("kafka", ["Broker"], None),
        ("nats", ["ConfigMap", "Broker"], "MTChannelBasedBroker"),
        ("rabbitmq", ["RabbitmqBrokerConfig", "Broker"], "RabbitMQBroker"),
    ],
)
def test_broker_yaml_selects_the_channel(
    channel: str, kinds: list[str], broker_class: str | None
) -> None:
    docs = brokerconfig.broker_docs(channel)
    assert [d["kind"] for d in docs] == kinds
    broker = docs[-1]
    annotations = broker["metadata"].get("annotations", {})
    assert annotations.get("eventing.knative.dev/broker.class") == broker_class
    if len(docs) == 2:
        config = docs[0]
        ref = broker["spec"]["config"]
        assert (ref["kind"], ref["name"], ref["namespace"]) == (
            config["kind"],
            config["metadata"]["name"],
            config["metadata"]["namespace"],
        )
