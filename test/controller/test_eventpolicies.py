"""controller/eventpolicies, features and audiences through the compiler: EventPolicy status, the
Broker's EventPoliciesReady / status.policies / address audience, and what reaches the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kbroker.controller import compiler, eventpolicies, status
from kbroker.core import contract

BASE = "http://127.0.0.1:8080"
SA = "system:serviceaccount"


def features(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": "knative-eventing"},
        "data": data,
    }


OIDC_ON = features(
    **{
        "authentication-oidc": "Enabled",
        "kbroker.oidc-issuers": "https://issuer.test",
        "kbroker.oidc-jwks": "http://127.0.0.1:1/jwks",
    }
)


def broker(name: str = "b", ns: str = "ns", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": meta}


def policy(
    name: str = "p", ns: str = "ns", spec: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    spec = {**(spec or {}), **fields}
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def trigger(name: str = "t", ns: str = "ns", **subscriber: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"broker": "b", "subscriber": subscriber or {"uri": "http://sink/"}},
    }


def run(*docs: dict[str, Any]) -> compiler.CompileResult:
    return compiler.compile(
        [compiler.SourcedObject(d, "/cfg/x.yaml") for d in docs], compiler.Environment(BASE)
    )


def cond(r: compiler.CompileResult, kind: str, name: str, type_: str) -> status.Condition:
    c = r.statuses[(kind, "ns", name)].condition(type_)
    assert c is not None
    return c


def entry(r: compiler.CompileResult, name: str = "b") -> contract.Broker:
    b = r.contract.broker(f"ns/{name}")
    assert b is not None, f"Broker {name} not in the contract"
    return b


def test_oidc_off_by_default() -> None:
    r = run(broker(), policy(spec={"from": [{"sub": "x"}]}))
    c = cond(r, "Broker", "b", "EventPoliciesReady")
    assert (c.status, c.reason) == ("True", "OIDCDisabled")
    assert entry(r).audience == "" and entry(r).policies == ()
    assert r.contract.oidc is None
    assert "audience" not in r.statuses[("Broker", "ns", "b")].to_k8s()["address"]
    p = cond(r, "EventPolicy", "p", "AuthenticationEnabled")
    assert (p.status, p.reason) == ("False", "OIDCAuthenticationDisabled")
    assert not r.statuses[("EventPolicy", "ns", "p")].ready


def test_oidc_on_without_policies_uses_the_default_mode() -> None:
    r = run(OIDC_ON, broker())
    assert entry(r).audience == "eventing.knative.dev/broker/ns/b"
    c = cond(r, "Broker", "b", "EventPoliciesReady")
    assert (c.status, c.reason) == ("True", "DefaultAuthorizationMode")
    assert c.message == 'Default authz mode is "Allow-Same-Namespace"'
    k8s = r.statuses[("Broker", "ns", "b")].to_k8s()
    assert k8s["address"]["audience"] == "eventing.knative.dev/broker/ns/b"
    assert r.contract.oidc == contract.OIDC(
        issuers=("https://issuer.test",), jwks="http://127.0.0.1:1/jwks"
    )
    assert not r.problems


def test_ready_policy_is_listed_and_compiled_into_the_contract() -> None:
    spec = {
        "to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "B"}}],
        "from": [
            {"sub": f"{SA}:ns:*"},
            {"ref": {"apiVersion": "v1", "kind": "ServiceAccount", "name": "sa", "namespace": "o"}},
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "name": "t"}},
        ],
        "filters": [{"exact": {"type": "order.created"}}],
    }
    r = run(OIDC_ON, broker(), broker("other"), trigger(), policy(spec=spec))
    assert r.statuses[("EventPolicy", "ns", "p")].ready
    subjects = (
        f"{SA}:ns:*",
        f"{SA}:o:sa",
        f"{SA}:ns:t-oidc-eventing.knative.dev-trigger",
    )
    assert r.statuses[("EventPolicy", "ns", "p")].to_k8s()["from"] == list(subjects)
    assert entry(r).policies == (
        contract.Policy(
            "p", subjects, (contract.FilterSpec("exact", (("type", "order.created"),)),)
        ),
    )
    assert cond(r, "Broker", "b", "EventPoliciesReady") == status.true("EventPoliciesReady")
    assert r.statuses[("Broker", "ns", "b")].to_k8s()["policies"] == [
        {"apiVersion": "eventing.knative.dev/v1alpha1", "name": "p"}
    ]
    assert entry(r, "other").policies == ()  # the ref names only b


def test_policy_that_is_not_ready_makes_its_broker_not_ready() -> None:
    ref = {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "name": "missing"}
    r = run(OIDC_ON, broker(), policy("bad", spec={"from": [{"ref": ref}]}), policy("good"))
    p = cond(r, "EventPolicy", "bad", "SubjectsResolved")
    assert (p.status, p.reason) == ("False", "SubjectsNotResolved")
    c = cond(r, "Broker", "b", "EventPoliciesReady")
    assert (c.status, c.reason, c.message) == (
        "False",
        "EventPoliciesNotReady",
        "event policies bad are not ready",
    )
    assert cond(r, "Broker", "b", "Ready").status == "False"
    assert r.contract.broker("ns/b") is None


def test_empty_to_applies_to_every_broker_of_the_namespace_only() -> None:
    r = run(OIDC_ON, broker("a"), broker("b"), broker("c", ns="elsewhere"), policy())
    assert [p.name for p in entry(r, "a").policies] == ["p"]
    assert [p.name for p in entry(r, "b").policies] == ["p"]
    other = r.contract.broker("elsewhere/c")
    assert other is not None and other.policies == ()


@pytest.mark.parametrize(
    ("selector", "labels", "applies"),
    [
        ({"matchLabels": {"team": "a"}}, {"team": "a"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            {"team": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": "a"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "Bogus"}]}, {"team": "a"}, False),
        ({}, {"x": "y"}, True),
    ],
)
def test_selectors(selector: dict[str, Any], labels: dict[str, str], applies: bool) -> None:
    assert eventpolicies.matches_selector(selector, labels) is applies
    to = [{"selector": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", **selector}}]
    r = run(OIDC_ON, broker(labels=labels), policy(to=to))
    assert bool(entry(r).policies) is applies


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"from": [{"sub": "a", "ref": {"kind": "x"}}]}, "expected exactly one, got both"),
        ({"from": [{}]}, "expected exactly one, got neither"),
        ({"from": [{"sub": "system:*:x"}]}, "'*' is only allowed as suffix"),
        (
            {"from": [{"ref": {"kind": "ServiceAccount"}}]},
            "missing field(s): spec.from[0].ref.apiVersion",
        ),
        (
            {"to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker"}}]},
            "missing field(s): spec.to[0].ref.name",
        ),
        ({"to": [{}]}, "expected exactly one, got neither: spec.to[0].ref, spec.to[0].selector"),
        ({"filters": [{"cesql": "type ="}]}, ""),
    ],
)
def test_invalid_policies_apply_to_nothing(spec: dict[str, Any], message: str) -> None:
    r = run(OIDC_ON, broker(), policy(spec=spec))
    ready = cond(r, "EventPolicy", "p", "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidEventPolicy")
    assert message in ready.message
    assert any(p.kind == "EventPolicy" for p in r.problems)
    assert entry(r).policies == ()  # as if the webhook had refused it: the default mode decides


def test_trigger_audiences_and_identity() -> None:
    ref = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    r = run(
        OIDC_ON,
        broker(),
        trigger("explicit", uri="http://sink/", audience="my-sink"),
        trigger("to-broker", ref=ref),
        trigger("none"),
    )
    got = {t.name: (t.subscriber_audience, t.identity) for t in r.contract.triggers}
    assert got["explicit"] == ("my-sink", f"{SA}:ns:explicit-oidc-eventing.knative.dev-trigger")
    assert got["to-broker"][0] == "eventing.knative.dev/broker/ns/b"
    assert got["none"][0] == ""
    k8s = r.statuses[("Trigger", "ns", "explicit")].to_k8s()
    assert k8s["subscriberAudience"] == "my-sink"
    assert cond(r, "Trigger", "explicit", "OIDCIdentityCreated").reason == ""


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"authentication-oidc": "maybe"}, "must be enabled or disabled"),
        (
            {"authentication-oidc": "enabled"},
            "neither kbroker.oidc-jwks nor oidc-discovery-base-url",
        ),
        ({"authentication-oidc": "enabled", "kbroker.oidc-jwks": "/k.json"}, "required with"),
        (
            {
                "authentication-oidc": "enabled",
                "oidc-discovery-base-url": "https://x",
                "default-authorization-mode": "allow-some",
            },
            "must be one of allow-same-namespace, allow-all, deny-all",
        ),
        (
            {
                "authentication-oidc": "enabled",
                "oidc-discovery-base-url": "https://x",
                "kbroker.oidc-leeway-seconds": "-1",
            },
            "from 0 to 600",
        ),
    ],
)
def test_config_features_problems(data: dict[str, str], problem: str) -> None:
    r = run(features(**data), broker())
    assert any(problem in p.reason for p in r.problems), [str(p) for p in r.problems]


def test_config_features_modes_and_relative_paths() -> None:
    data = {
        "authentication-oidc": "enabled",
        "default-authorization-mode": "Deny-All",
        "kbroker.oidc-issuers": "a, b",
        "kbroker.oidc-jwks": "keys/jwks.json",
        "kbroker.oidc-signing-key": "keys/dispatcher.pem",
        "kbroker.oidc-leeway-seconds": "5",
    }
    r = run(features(**data), broker())
    assert r.contract.oidc == contract.OIDC(
        issuers=("a", "b"),
        jwks="/cfg/keys/jwks.json",
        leeway=5.0,
        default_mode=contract.AuthorizationMode.DENY_ALL,
        signing_key="/cfg/keys/dispatcher.pem",
    )
    c = cond(r, "Broker", "b", "EventPoliciesReady")
    assert c.message == 'Default authz mode is "Deny-All"'


def test_contract_round_trip() -> None:
    spec = {"from": [{"sub": "s"}], "filters": [{"cesql": "type = 'x'"}]}
    r = run(OIDC_ON, broker(), trigger(uri="http://s/", audience="a"), policy(spec=spec))
    assert contract.Contract.from_json(r.contract.to_json()) == r.contract
    # an older contract (no auth fields) still reads, with authentication off
    old = json.loads(r.contract.to_json())
    del old["oidc"]
    for b in old["brokers"]:
        del b["audience"], b["policies"]
    assert contract.Contract.from_json(json.dumps(old)).oidc is None
