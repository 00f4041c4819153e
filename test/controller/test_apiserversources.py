"""controller/apiserversources: Knative's ApiServerSource validation, with Knative's messages."""

from __future__ import annotations

from typing import Any

import pytest
from kbroker.controller import apiserversources
from kbroker.core.contract_apiserver import WatchedResource

SINK = {"uri": "http://sink.example/"}
CM = {"apiVersion": "v1", "kind": "ConfigMap"}


def spec(**fields: Any) -> dict[str, Any]:
    return {"resources": [CM], "sink": SINK, **fields}


def test_defaults_are_knatives() -> None:
    parsed, issues = apiserversources.parse(spec())
    assert not issues.items
    assert parsed.mode == "Reference"
    assert parsed.service_account == "default"
    assert parsed.namespace_selector is None  # own namespace only
    assert parsed.owner is None
    assert parsed.resources == (WatchedResource("v1", "ConfigMap"),)


def test_all_fields_honoured() -> None:
    parsed, issues = apiserversources.parse(
        spec(
            mode="Resource",
            serviceAccountName="watcher",
            owner={"apiVersion": "apps/v1", "kind": "ReplicaSet"},
            namespaceSelector={},
            resources=[
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "selector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
                    },
                }
            ],
            ceOverrides={"extensions": {"team": "ops"}},
        )
    )
    assert not issues.items
    assert parsed.mode == "Resource"
    assert parsed.service_account == "watcher"
    assert parsed.owner == ("apps/v1", "ReplicaSet")
    assert parsed.namespace_selector is not None and parsed.namespace_selector.empty
    assert parsed.resources[0].match_labels == (("app", "web"),)
    assert parsed.resources[0].match_expressions == (("tier", "In", ("a",)),)
    assert parsed.extensions == (("team", "ops"),)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"resources": []}, "spec.resources", "missing field(s): spec.resources"),
        (
            {"resources": [{"apiVersion": "a/b/c", "kind": "X"}]},
            "spec.resources[0].apiVersion",
            "invalid value: a/b/c: spec.resources[0].apiVersion",
        ),
        (
            {"resources": [{"apiVersion": "v1", "kind": " "}]},
            "spec.resources[0].kind",
            "missing field(s): spec.resources[0].kind",
        ),
        (
            {"owner": {"apiVersion": "", "kind": "Deployment"}},
            "spec.owner.apiVersion",
            "invalid value: : spec.owner.apiVersion",
        ),
        ({"mode": "reference"}, "spec.mode", "invalid value: reference: spec.mode"),
        (
            {"sink": {}},
            "spec.sink",
            "expected at least one, got none: ref, uri: spec.sink",
        ),
        (
            {"filters": [{"exact": {"type": "x"}}]},
            "spec.filters",
            "Filters is not empty but the NewAPIServerFilters feature is disabled.",
        ),
        (
            {"ceOverrides": {"extensions": {"bad-key": "x"}}},
            "spec.ceOverrides.extensions",
            'invalid key name "bad-key": keys are expected to be alphanumeric',
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            "spec.namespaceSelector",
            'invalid value: matchExpressions[0]: "Near" is not a valid selector operator: '
            "spec.namespaceSelector",
        ),
    ],
)
def test_invalid_specs_are_reported_as_knative_words_them(
    fields: dict[str, Any], field: str, message: str
) -> None:
    _, issues = apiserversources.parse(spec(**fields))
    assert (field, message) in [(i.field, i.message) for i in issues.errors]


def test_ce_attributes_list_the_modes_three_types_in_knatives_order() -> None:
    server = "https://10.96.0.1:443"
    assert apiserversources.ce_attributes("Reference", server) == (
        ("dev.knative.apiserver.ref.add", server),
        ("dev.knative.apiserver.ref.delete", server),
        ("dev.knative.apiserver.ref.update", server),
    )


@pytest.mark.parametrize("kind", ["ApiServerSource", "SinkBinding"])
def test_standalone_reports_kubernetes_only_kinds_not_ready(kind: str) -> None:
    from kbroker.controller import compiler

    obj = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": kind,
        "metadata": {"name": "s", "namespace": "default"},
        "spec": spec(),
    }
    env = compiler.Environment(ingress_base_url="http://kbroker.test")
    result = compiler.compile([compiler.SourcedObject(obj, "s.yaml")], env)
    st = result.statuses[(kind, "default", "s")]
    ready = st.condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "KubernetesOnly"
    assert any(p.severity == "error" and "needs Kubernetes" in str(p) for p in result.problems)
    assert result.contract.sources == ()
