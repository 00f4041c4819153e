"""sources/apiserver: Knative's ApiServerSource event shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kbroker.core.contract_apiserver import ApiServerSource, WatchedResource
from kbroker.sources import apiserver

SERVER = "https://10.96.0.1:443"
CM: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
    "data": {"k": "v"},
}


def source(mode: str, extensions: tuple[tuple[str, str], ...] = ()) -> ApiServerSource:
    return ApiServerSource(
        namespace="ns",
        name="src",
        uid="s1",
        mode=mode,
        resources=(WatchedResource("v1", "ConfigMap"),),
        extensions=extensions,
        server=SERVER,
    )


@pytest.mark.parametrize("verb", ["add", "update", "delete"])
def test_reference_mode(verb: str) -> None:
    e = apiserver.event_for(source("Reference"), verb, CM)
    assert e.type == f"dev.knative.apiserver.ref.{verb}"
    assert e.attributes["source"] == SERVER
    assert e.attributes["subject"] == "/apis/v1/namespaces/ns/configmaps/cfg"
    assert e.attributes["datacontenttype"] == "application/json"
    assert {k: e.attributes[k] for k in ("kind", "apiversion", "name", "namespace")} == {
        "kind": "ConfigMap",
        "apiversion": "v1",
        "name": "cfg",
        "namespace": "ns",
    }
    assert json.loads(e.data or b"") == {
        "kind": "ConfigMap",
        "namespace": "ns",
        "name": "cfg",
        "apiVersion": "v1",
    }


def test_resource_mode_carries_the_object_and_overrides_win() -> None:
    e = apiserver.event_for(source("Resource", (("kind", "mine"), ("team", "a"))), "update", CM)
    assert e.type == "dev.knative.apiserver.resource.update"
    assert json.loads(e.data or b"") == CM
    assert e.attributes["team"] == "a"
    assert e.attributes["kind"] == "mine"  # ceOverrides overwrite, as in Knative


def test_ids_are_stable_per_change_and_differ_between_changes() -> None:
    src = source("Reference")
    first = apiserver.event_for(src, "add", CM).id
    assert apiserver.event_for(src, "add", CM).id == first  # a resend after a restart
    changed = {**CM, "metadata": {**CM["metadata"], "resourceVersion": "8"}}
    assert apiserver.event_for(src, "update", changed).id != first


@pytest.mark.parametrize(
    ("api", "kind", "expected"),
    [
        ("v1", "Pod", "/apis/v1/namespaces/ns/pods/n"),
        ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/ns/deployments/n"),
        ("networking.k8s.io/v1", "Ingress", "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/n"),
        ("example.com/v1", "Policy", "/apis/example.com/v1/namespaces/ns/policies/n"),
        ("example.com", "Thing", "/apis/example.com/versionUnknown/namespaces/ns/things/n"),
    ],
)
def test_subject_paths(api: str, kind: str, expected: str) -> None:
    assert apiserver.subject(api, kind, "ns", "n") == expected


def test_cluster_scoped_objects_have_no_namespace_extension() -> None:
    node = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "uid": "u"}}
    e = apiserver.event_for(source("Reference"), "add", node)
    assert e.attributes["subject"] == "/apis/v1/namespaces//namespaces/x"
    assert "namespace" not in e.attributes
