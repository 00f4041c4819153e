"""Scenario names -> configuration, the staircase grid, and the broker config they generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kbroker.bench import brokerconfig
from kbroker.bench.scenarios import Scenario, ScenarioError, parse, parse_all, parse_staircase


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("ceiling", [Scenario("ceiling", "ceiling")]),
        ("e2e", [Scenario("e2e", "e2e")]),
        ("fanout", [Scenario("fanout-100-10", "fanout", triggers=100, percent=10.0)]),
        ("fanout-20-50", [Scenario("fanout-20-50", "fanout", triggers=20, percent=50.0)]),
        ("failing-25", [Scenario("failing-25", "failing", percent=25.0)]),
        ("triggers-1000", [Scenario("triggers-1000", "triggers", triggers=1000)]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_names_carry_their_configuration(name: str, want: list[Scenario]) -> None:
    assert parse(name) == want


def test_bare_names_expand_to_their_series() -> None:
    assert [s.name for s in parse_all(["otel", "triggers"])] == [
        "otel-0", "otel-10", "otel-100", "triggers-0", "triggers-100", "triggers-1000",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["nope", "fanout-10", "fanout-0-10", "fanout-10-0", "failing-101", "e2e-3", "otel-x"],
)
def test_bad_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(ScenarioError, match=name.split("-")[0]):
        parse(name)


def test_fanout_triggers_each_get_their_share() -> None:
    sc = parse("fanout-100-10")[0]
    specs = sc.trigger_specs()
    assert sc.groups == 10
    assert len(specs) == 100
    # Every event matches exactly 10 of the 100 triggers.
    for seq in range(50):
        assert sum(s.matches(seq) for s in specs) == 10


@pytest.mark.parametrize(
    ("pct", "sampler"),
    [(0, "always_off"), (10, "parentbased_traceidratio"), (100, "always_on")],
)
def test_otel_sampling_goes_through_standard_variables(pct: int, sampler: str) -> None:
    env = parse(f"otel-{pct}")[0].broker_env("http://127.0.0.1:9")
    assert env["OTEL_TRACES_SAMPLER"] == sampler
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:9/v1/traces"
    assert ("OTEL_TRACES_SAMPLER_ARG" in env) == (pct == 10)


@pytest.mark.parametrize(
    ("text", "want"),
    [("1000:500:2000", [1000, 1500, 2000]), ("100:300:500", [100, 400]), ("5:1:5", [5])],
)
def test_staircase_grid(text: str, want: list[float]) -> None:
    assert parse_staircase(text) == want


@pytest.mark.parametrize("text", ["1000", "a:b:c", "0:1:5", "5:0:10", "10:1:5"])
def test_staircase_refuses_nonsense(text: str) -> None:
    with pytest.raises(ScenarioError, match="staircase"):
        parse_staircase(text)


def test_generated_config_is_knative_yaml(tmp_path: Path) -> None:
    sc = parse("failing-10")[0]
    brokerconfig.write(tmp_path, sc.trigger_specs(), "http://127.0.0.1:5", sc.delivery())
    broker = yaml.safe_load((tmp_path / "broker.yaml").read_text())
    triggers = list(yaml.safe_load_all((tmp_path / "triggers.yaml").read_text()))
    assert broker["kind"] == "Broker"
    assert [t["metadata"]["name"] for t in triggers] == ["failing", "healthy"]
    spec = triggers[0]["spec"]
    assert spec["broker"] == broker["metadata"]["name"]
    assert spec["subscriber"]["uri"] == "http://127.0.0.1:5/t/failing"
    assert spec["delivery"]["deadLetterSink"]["uri"] == "http://127.0.0.1:5/dls/failing"
    assert spec["filter"]["attributes"] == {"type": "dev.kbroker.bench"}


def test_prefixed_config_files_sit_next_to_the_users(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("kind: Broker\n")
    written = brokerconfig.write(tmp_path, [], "http://127.0.0.1:5", prefix="kbroker-bench-")
    assert sorted(p.name for p in written) == [
        "kbroker-bench-broker.yaml",
        "kbroker-bench-triggers.yaml",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kbroker-bench-broker.yaml", "kbroker-bench-triggers.yaml", "mine.yaml",
    ]  # fmt: skip
