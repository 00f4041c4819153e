"""controller/pingsources: Knative's PingSource validation, status and contract entry."""

from __future__ import annotations

from typing import Any

import pytest
from kbroker.controller import compiler
from kbroker.core import contract

ENV = compiler.Environment(ingress_base_url="http://kbroker.test")
BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "default"},
}
BROKER_SINK = {
    "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
}


def ping(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": meta,
        "spec": spec,
    }


def run(*objects: dict[str, Any]) -> compiler.CompileResult:
    return compiler.compile([compiler.SourcedObject(o, "t.yaml") for o in objects], ENV)


def status_of(result: compiler.CompileResult) -> dict[str, Any]:
    doc: dict[str, Any] = result.statuses[("PingSource", "default", "p")].to_k8s()
    return doc


def test_valid_pingsource_to_a_broker_is_ready_and_in_the_contract() -> None:
    result = run(
        BROKER,
        ping(
            {
                "schedule": "*/5 * * * *",
                "timezone": "Europe/Paris",
                "contentType": "application/json",
                "data": '{"hello": "world"}',
                "sink": BROKER_SINK,
                "ceOverrides": {"extensions": {"team": "a"}},
            },
            {"kbroker.dev/catch-up": "PT1H"},
        ),
    )
    st = status_of(result)
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {
        "Ready": "True",
        "SinkProvided": "True",
        "Deployed": "True",
        "OIDCIdentityCreated": "True",
    }
    assert st["sinkUri"] == "http://kbroker.test/default/default"
    assert st["ceAttributes"] == [
        {"type": "dev.knative.sources.ping", "source": "/apis/v1/namespaces/default/pingsources/p"}
    ]
    (p,) = result.contract.sources
    assert (p.schedule, p.timezone, p.sink_broker, p.extensions, p.catch_up) == (
        "*/5 * * * *",
        "Europe/Paris",
        "default/default",
        (("team", "a"),),
        3600.0,
    )
    assert contract.Contract.from_json(result.contract.to_json()).sources == (p,)


def test_schedule_defaults_to_every_minute_and_uri_sinks_are_not_brokers() -> None:
    result = run(ping({"sink": {"uri": "http://example.test/x"}}))
    (p,) = result.contract.sources
    assert (p.schedule, p.sink_uri, p.sink_broker) == ("* * * * *", "http://example.test/x", "")


@pytest.mark.parametrize(
    ("spec", "annotations", "condition", "message"),
    [
        ({"schedule": "61 * * * *"}, None, "Deployed", "invalid value: end of range (61) above"),
        (
            {"schedule": "@every 1m"},
            None,
            "Deployed",
            "unsupported descriptor @every: spec.schedule",
        ),
        ({"timezone": "Mars/Base"}, None, "Deployed", "provided bad location Mars/Base"),
        (
            {"data": "x", "dataBase64": "eA=="},
            None,
            "Deployed",
            "expected exactly one, got both: spec.data, spec.dataBase64",
        ),
        ({"dataBase64": "not base64!"}, None, "Deployed", "spec.dataBase64"),
        (
            {"contentType": "application/json", "data": "[1]"},
            None,
            "Deployed",
            "data is not a JSON object",
        ),
        (
            {"ceOverrides": {"extensions": {"bad-key": "v"}}},
            None,
            "Deployed",
            'invalid key name "bad-key"',
        ),
        ({}, {"kbroker.dev/catch-up": "an hour"}, "Deployed", "invalid ISO-8601 duration"),
        ({"sink": None}, None, "SinkProvided", "expected a mapping"),
        ({"sink": {}}, None, "SinkProvided", "expected at least one, got none: ref, uri"),
        (
            {"sink": {**BROKER_SINK, "uri": "http://x.test/"}},
            None,
            "Deployed",
            "Absolute URI is not allowed when Ref",
        ),
        (
            {"sink": {"ref": {**BROKER_SINK["ref"], "name": "nope"}}},
            None,
            "SinkProvided",
            "nope",
        ),
    ],
)
def test_invalid_pingsources_are_not_ready_and_say_why(
    spec: dict[str, Any], annotations: dict[str, str] | None, condition: str, message: str
) -> None:
    full = {"sink": BROKER_SINK, **spec}
    result = run(BROKER, ping(full, annotations))
    st = status_of(result)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds[condition]["status"] == "False"
    assert message in conds[condition].get("message", ""), conds[condition]
    assert result.contract.sources == ()
    assert any(p.kind == "PingSource" for p in result.problems)
