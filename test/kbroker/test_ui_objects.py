"""The console's Objects port in `kbroker run`: the controller's own validation of a candidate,
one console-owned file per object written atomically, hand-written files never touched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kbroker.controller import compiler

from kbroker import ui_objects

BROKER = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
---
# a comment the console must never lose
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: hand, namespace: default}
spec:
  broker: default
  subscriber: {uri: "http://127.0.0.1:9/hand"}
"""


class _Folder:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.env = compiler.Environment(ingress_base_url="http://127.0.0.1:1")


class _Source:
    def __init__(self, config_dir: Path) -> None:
        self.folder = _Folder(config_dir)


def trigger(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"broker": "default", "subscriber": {"uri": "http://127.0.0.1:9/x"}, **spec},
    }


@pytest.fixture
def objects(tmp_path: Path) -> ui_objects.StandaloneObjects:
    (tmp_path / "hand.yaml").write_text(BROKER)
    return ui_objects.StandaloneObjects(_Source(tmp_path))  # type: ignore[arg-type]


def test_validation_is_the_controllers(objects: ui_objects.StandaloneObjects) -> None:
    assert objects.validate(trigger("ok", filters=[{"cesql": "type = 'a'"}])) == []
    bad_cesql = objects.validate(trigger("bad", filters=[{"cesql": "type = = 'a'"}]))
    assert any(e.startswith("spec.filters") for e in bad_cesql), bad_cesql
    two = objects.validate(trigger("two", filters=[{"exact": {"type": "a"}, "prefix": {"s": "b"}}]))
    assert any("one dialect" in e for e in two), two
    assert any("name" in e for e in objects.validate(trigger("Not_A_Name")))


def test_changing_an_immutable_field_is_refused(objects: ui_objects.StandaloneObjects) -> None:
    moved = trigger("hand")
    moved["spec"]["broker"] = "other"
    assert any("spec.broker" in e for e in objects.validate(moved))


async def test_hand_written_objects_are_read_only_and_never_rewritten(
    objects: ui_objects.StandaloneObjects, tmp_path: Path
) -> None:
    origin = objects.origin(trigger("hand"))
    assert not origin.editable
    assert origin.path == str(tmp_path / "hand.yaml")
    assert "hand.yaml" in origin.reason
    before = (tmp_path / "hand.yaml").read_bytes()
    with pytest.raises(PermissionError):
        await objects.apply(trigger("hand"))
    assert (tmp_path / "hand.yaml").read_bytes() == before
    assert objects.origin(trigger("new-one")).editable


async def test_apply_writes_one_console_file_atomically(
    objects: ui_objects.StandaloneObjects, tmp_path: Path
) -> None:
    obj = trigger("from-ui", filters=[{"cesql": "type = 'a'"}])
    obj["status"] = {"conditions": []}  # never written
    await objects.apply(obj)
    path = tmp_path / "ui.default.from-ui.trigger.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["spec"]["filters"] == [{"cesql": "type = 'a'"}]
    assert "status" not in doc
    assert objects.origin(obj).editable  # the console's own file stays editable
    inode = path.stat().st_ino
    obj["spec"]["filters"] = [{"cesql": "type = 'b'"}]
    await objects.apply(obj)
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert "type = 'b'" in path.read_text()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with pytest.raises(ValueError):
        await objects.apply(trigger("from-ui", filters=[{"cesql": "(("}]))
    assert "type = 'b'" in path.read_text()  # an invalid edit leaves the file as it was


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "x.yaml"
    with pytest.raises(OSError):
        ui_objects.write_atomically(target, b"x")
    ui_objects.write_atomically(tmp_path / "x.yaml", b"a: 1\n")
    assert (tmp_path / "x.yaml").read_text() == "a: 1\n"
    assert sorted(os.listdir(tmp_path)) == ["x.yaml"]
