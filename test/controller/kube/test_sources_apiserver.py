"""controller/kube sources: owner filter, RBAC message, bookmarks file, and where a sink goes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kbroker.controller.kube.api import KubeError, Obj
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.controller.kube.sources_api import sink_address
from kbroker.controller.kube.sources_apiserver import Marks, owned_by, permission_message
from kbroker.controller.resolve import DestinationError


def obj(*refs: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "p", "ownerReferences": list(refs)}}


RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "controller": True}


def test_owner_filter_looks_at_the_controller_reference_only() -> None:
    assert owned_by(obj(), None)
    assert owned_by(obj(RS), ("apps/v1", "ReplicaSet"))
    assert owned_by(obj(RS), ("", "ReplicaSet"))  # empty parts match anything
    assert not owned_by(obj(RS), ("apps/v1", "StatefulSet"))
    assert not owned_by(obj({**RS, "controller": False}), ("apps/v1", "ReplicaSet"))
    assert not owned_by(obj(), ("apps/v1", "ReplicaSet"))


def test_permission_message_is_knatives() -> None:
    user = "system:serviceaccount:ns:sa"
    missing = {
        ("", "configmaps", "ns"): ["get", "list", "watch"],
        ("apps", "deployments", ""): ["watch"],
    }
    assert permission_message(user, missing) == (
        'User system:serviceaccount:ns:sa cannot get, list, watch resource "configmaps" in API '
        'group "" in Namespace "ns", User system:serviceaccount:ns:sa cannot watch resource '
        '"deployments" in API group "apps" cluster-wide'
    )


def test_marks_survive_a_restart_but_not_a_recreated_source(tmp_path: Path) -> None:
    marks = Marks(tmp_path, "ns", "src", "uid-1")
    marks.set("v1|ConfigMap|ns", "41")
    marks.set("v1|ConfigMap|ns", "42")
    assert Marks(tmp_path, "ns", "src", "uid-1").versions == {"v1|ConfigMap|ns": "42"}
    assert Marks(tmp_path, "ns", "src", "uid-2").versions == {}  # same name, another object
    marks.forget()
    assert Marks(tmp_path, "ns", "src", "uid-1").versions == {}


class OneBroker:
    """Answers GET of one Broker with its address (a KubeClient for the resolver only)."""

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        if path == "/apis/eventing.knative.dev/v1":
            return {"resources": [{"kind": "Broker", "name": "brokers"}]}
        if path == "/apis/eventing.knative.dev/v1/namespaces/ns/brokers/default":
            return {"status": {"address": {"url": "http://ingress/ns/default"}}}
        raise KubeError(404, path)

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> AsyncIterator[Obj]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


BROKER_REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}


async def test_a_served_broker_sink_is_appended_to_directly_others_are_posted() -> None:
    resolver = KubeResolver(OneBroker())
    served = {"ns/default"}
    url, broker = await sink_address(resolver, {"ref": BROKER_REF}, "ns", lambda: served)
    assert (url, broker) == ("http://ingress/ns/default", "ns/default")
    # Not (or no longer) in the contract: another implementation's Broker, reached over HTTP.
    url, broker = await sink_address(resolver, {"ref": BROKER_REF}, "ns", set)
    assert (url, broker) == ("http://ingress/ns/default", "")
    url, broker = await sink_address(resolver, {"uri": "http://elsewhere/"}, "ns", lambda: served)
    assert (url, broker) == ("http://elsewhere/", "")
    with pytest.raises(DestinationError, match="not found"):
        await sink_address(resolver, {"ref": {**BROKER_REF, "name": "gone"}}, "ns", lambda: served)
