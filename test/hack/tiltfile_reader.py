"""Evaluate the Tiltfile without Tilt, recording the resources each mode declares.

A cold build of Tilt (hack/tilt.sh) takes longer than the rest of `make test`, so the real
`tilt ci` (test_tilt.py) runs only where the binary was built. This check runs everywhere and in
seconds: the Tiltfile's Starlark is also valid Python, so this module runs it with stand-ins for
Tilt's built-ins that only record what is declared; test_tiltfile.py then checks the declarations
against the real CLI and runs the process-mode data plane the way Tilt would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Resource:
    name: str
    cmd: str | None = None
    serve_cmd: str | None = None
    deps: list[str] = field(default_factory=list)
    resource_deps: list[str] = field(default_factory=list)
    readiness_probe: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Declared:
    resources: dict[str, Resource] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    k8s_resources: list[str] = field(default_factory=list)
    k8s_objects: list[dict[str, Any]] = field(default_factory=list)


class _Config:
    def __init__(self, values: dict[str, str], subcommand: str) -> None:
        self._values = values
        self.tilt_subcommand = subcommand

    def define_string(self, name: str, usage: str = "") -> None:
        return None

    def parse(self) -> dict[str, str]:
        return dict(self._values)


class TiltfileError(Exception):
    """The Tiltfile called fail()."""


def evaluate(path: Path, mode: str = "process", subcommand: str = "ci") -> Declared:
    declared = Declared()
    root = path.parent

    def local_resource(
        name: str,
        cmd: str | None = None,
        serve_cmd: str | None = None,
        deps: list[str] | None = None,
        resource_deps: list[str] | None = None,
        readiness_probe: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        declared.resources[name] = Resource(
            name,
            cmd,
            serve_cmd,
            list(deps or []),
            list(resource_deps or []),
            readiness_probe,
            options,
        )

    def fail(message: str) -> None:
        raise TiltfileError(message)

    def read_yaml_stream(f: str) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all((root / f).read_text()) if d]

    def record(kind: str) -> Any:
        def recorder(*args: Any, **kwargs: Any) -> Any:
            if kind == "image":
                declared.images.append(args[0])
            elif kind == "k8s_resource":
                declared.k8s_resources.append(args[0])
            elif kind == "k8s_yaml":
                declared.k8s_objects.extend(yaml.safe_load_all(args[0]))
            return {"kind": kind, "args": args, **kwargs}

        return recorder

    builtins: dict[str, Any] = {
        "config": _Config({"mode": mode}, subcommand),
        "local_resource": local_resource,
        "fail": fail,
        "read_yaml_stream": read_yaml_stream,
        "encode_yaml_stream": lambda objs: yaml.safe_dump_all(objs),
        "docker_build": record("image"),
        "k8s_yaml": record("k8s_yaml"),
        "k8s_resource": record("k8s_resource"),
        "TRIGGER_MODE_MANUAL": "manual",
    }
    for name in (
        "update_settings",
        "ci_settings",
        "probe",
        "http_get_action",
        "exec_action",
        "tcp_socket_action",
        "sync",
        "run",
        "fall_back_on",
        "allow_k8s_contexts",
    ):
        builtins[name] = _plain(name)
    exec(
        compile(path.read_text(), str(path), "exec"), builtins
    )  # our own file, Starlark = Python here
    return declared


def _plain(kind: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"kind": kind, "args": list(args), **kwargs}

    return call
