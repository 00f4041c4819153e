"""controller/kube/sources_apiserver's pure parts: owner filter, RBAC message, bookmarks file."""

from __future__ import annotations

from pathlib import Path

from kbroker.controller.kube.sources_apiserver import Marks, owned_by, permission_message


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
