"""Knative Broker/Trigger YAML builders for end-to-end tests (the text users would write)."""

from __future__ import annotations

from typing import Any

import yaml


def broker(
    name: str = "default",
    namespace: str = "default",
    delivery: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }
    if annotations:
        obj["metadata"]["annotations"] = annotations
    if delivery is not None:
        obj["spec"]["delivery"] = delivery
    return obj


def trigger(
    name: str,
    subscriber: str,
    broker: str = "default",
    namespace: str = "default",
    attributes: dict[str, str] | None = None,
    filters: list[Any] | None = None,
    delivery: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"broker": broker, "subscriber": {"uri": subscriber}}
    if attributes is not None:
        spec["filter"] = {"attributes": attributes}
    if filters is not None:
        spec["filters"] = filters
    if delivery is not None:
        spec["delivery"] = delivery
    obj: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


def dump(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def dls(url: str, retry: int | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"deadLetterSink": {"uri": url}, **extra}
    if retry is not None:
        spec["retry"] = retry
    return spec
