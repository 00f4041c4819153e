"""The source kinds' REST resources and the references they make, for the Kubernetes controller.

Its own module so the Broker/Trigger parts (`api`, `decisions`) stay about Brokers: the controller
adds these with a few lines. A source's `spec.sink` is a Destination like a Trigger's subscriber,
so its `ref` must be looked up before compile, as subscribers are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kbroker.controller import resolve, status
from kbroker.controller.kube import decisions
from kbroker.controller.kube.api import MERGE_PATCH, KubeClient, KubeError, Obj, Resource
from kbroker.controller.kube.resolve import KubeResolver

PINGSOURCES = Resource("sources.knative.dev", "v1", "pingsources", "PingSource")
APISERVERSOURCES = Resource("sources.knative.dev", "v1", "apiserversources", "ApiServerSource")
SINKBINDINGS = Resource("sources.knative.dev", "v1", "sinkbindings", "SinkBinding")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace")
SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview"
)


def sink_refs(objects: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], str]]:
    """Every (spec.sink.ref, namespace) of these source objects."""
    out: list[tuple[Mapping[str, Any], str]] = []
    for obj in objects:
        spec = obj.get("spec")
        sink = spec.get("sink") if isinstance(spec, Mapping) else None
        ref = sink.get("ref") if isinstance(sink, Mapping) else None
        if isinstance(ref, Mapping):
            meta = obj.get("metadata")
            ns = meta.get("namespace") if isinstance(meta, Mapping) else None
            out.append((ref, str(ns or "default")))
    return out


async def write_status(
    client: KubeClient,
    resource: Resource,
    obj: Obj,
    st: status.ObjectStatus,
    extra: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Patch `obj`'s status subresource to `st` (+ `extra` fields) when it differs."""
    previous = obj.get("status") if isinstance(obj.get("status"), Mapping) else None
    desired = st.to_k8s(now or datetime.now(UTC), previous=previous)
    desired.update(extra or {})
    patch = decisions.status_patch(desired, previous)
    if patch is None:
        return
    meta = decisions.meta(obj)
    path = resource.path(str(meta["namespace"]), str(meta["name"]), "status")
    try:
        await client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
    except KubeError as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report on
            raise
    obj["status"] = desired  # the watch event follows; until then do not patch it again


async def sink_address(
    resolver: KubeResolver, sink: Any, namespace: str, served: Callable[[], set[str]]
) -> tuple[str, str]:
    """(URL, "ns/name" when it is a Broker kbroker serves) of a source's `spec.sink`;
    raises resolve.DestinationError."""
    ref = sink.get("ref") if isinstance(sink, Mapping) else None
    refs = [(ref, namespace)] if isinstance(ref, Mapping) else []
    prefetched = await resolver.prefetch(refs)
    url = resolve.resolve_destination(sink, namespace, "spec.sink", {}, prefetched)
    broker = ""
    if isinstance(ref, Mapping) and not sink.get("uri") and ref.get("kind") == "Broker":
        key = f"{ref.get('namespace') or namespace}/{ref.get('name')}"
        if ref.get("apiVersion") == "eventing.knative.dev/v1" and key in served():
            broker = key
    return url, broker
