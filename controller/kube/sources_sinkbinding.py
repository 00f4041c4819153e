"""SinkBinding on Kubernetes: the controller patches the subjects' pod templates itself.

Knative injects `K_SINK` with a mutating admission webhook on the subjects (and patches them so
the webhook runs). kbroker patches the subject directly instead: the controller needs no webhook
server, no serving certificate and no cluster-wide admission hook that every Deployment write in
the cluster goes through (and that blocks them when it is down). The cost: a `kubectl apply` of
the subject's own YAML removes `K_SINK` until the next resync (`resync` seconds) puts it back,
which also rolls the pods once more; Knative's webhook would add it during that apply.

Per binding, on every change and every `resync` seconds: validate, resolve the sink, list the
subject's kind in the namespace, and for each match make its containers carry exactly the
binding's `K_SINK`/`K_CE_OVERRIDES` (a merge patch guarded by resourceVersion, written only when
something differs, so a steady state writes nothing). Bound subjects carry the annotation
`kbroker.dev/sinkbinding: <binding>`; one that stops matching, and every one when the binding is
deleted (our finalizer holds the deletion until then), gets the variables and the annotation
removed.

What this module refuses: what to inject (controller/sinkbindings) and sending events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kbroker.controller import resolve, sinkbindings, status
from kbroker.controller.kube import decisions
from kbroker.controller.kube.api import MERGE_PATCH, KubeClient, KubeError, Obj
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.controller.kube.sources_api import SINKBINDINGS, sink_address, write_status
from kbroker.controller.kube.watch import Informer

log = logging.getLogger(__name__)

FINALIZER = "sinkbindings.sources.knative.dev"
BOUND_ANNOTATION = "kbroker.dev/sinkbinding"
OIDC_OFF = "authentication-oidc feature disabled"


class SinkBindings:
    def __init__(
        self,
        client: KubeClient,
        served_brokers: Callable[[], set[str]],
        *,
        resync: float = 5.0,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.served_brokers = served_brokers
        self.resync = resync
        self.resolver = KubeResolver(client)
        self.dirty = asyncio.Event()
        self.informer = Informer(
            client, SINKBINDINGS, lambda _: self.dirty.set(), watch_timeout=watch_timeout
        )

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.informer.run(), name="watch:sinkbindings")
            tg.create_task(self._loop(), name="sinkbindings")

    async def _loop(self) -> None:
        await self.informer.synced.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), self.resync)
            self.dirty.clear()
            for obj in list(self.informer.items.values()):
                try:
                    await self.reconcile(obj)
                except KubeError as exc:
                    log.warning("sinkbinding %s: %s", "/".join(decisions.key_of(obj)[1:]), exc)
                    if exc.status == 409:
                        self.dirty.set()
                except Exception:  # a bug must not stop the Broker controller
                    log.exception("sinkbinding %s: reconcile failed", decisions.key_of(obj)[2])

    async def reconcile(self, obj: Obj) -> None:
        meta = decisions.meta(obj)
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        raw_spec = obj.get("spec")
        spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
        subject, extensions, issues = sinkbindings.parse(spec, ns)
        errors = [i for i in issues.items if i.severity == "error"]
        if decisions.deleting(obj):
            if FINALIZER in (meta.get("finalizers") or ()):
                if subject.api_version and subject.kind:
                    await self._unbind_all(subject, name)
                await self._finalizers(obj, add=False)
            return
        if FINALIZER not in (meta.get("finalizers") or ()):
            await self._finalizers(obj, add=True)
        conds = {
            "OIDCIdentityCreated": status.true("OIDCIdentityCreated", OIDC_OFF),
            "OIDCTokenSecretCreated": status.true("OIDCTokenSecretCreated", OIDC_OFF),
            "TrustBundlePropagated": status.true("TrustBundlePropagated"),
        }
        sink_uri = ""
        try:
            sink_uri, _ = await sink_address(
                self.resolver, spec.get("sink"), ns, self.served_brokers
            )
            conds["SinkProvided"] = status.true("SinkProvided")
        except resolve.DestinationError as exc:
            conds["SinkProvided"] = status.false("SinkProvided", "NoAddressable", str(exc))
        if errors:
            message = "; ".join(f"{i.field}: {i.message}" for i in errors)
            conds["SinkBindingAvailable"] = status.false(
                "SinkBindingAvailable", "InvalidSpec", message
            )
        elif sink_uri:
            conds["SinkBindingAvailable"] = await self._bind(
                subject, name, sinkbindings.bound_env(sink_uri, extensions)
            )
        st = status.ObjectStatus(
            kind="SinkBinding",
            namespace=ns,
            name=name,
            generation=int(meta.get("generation") or 0),
            conditions=status.with_ready(sinkbindings.CONDITIONS, conds),
            sink_uri=sink_uri or None,
        )
        await write_status(self.client, SINKBINDINGS, obj, st)

    async def _path(self, subject: sinkbindings.Subject) -> str:
        plural = await self.resolver.plural(subject.api_version, subject.kind)
        api = subject.api_version
        root = f"/apis/{api}" if "/" in api else f"/api/{api}"
        return f"{root}/namespaces/{subject.namespace}/{plural}"

    async def _candidates(self, subject: sinkbindings.Subject) -> tuple[str, list[Obj]]:
        path = await self._path(subject)
        listing = await self.client.request("GET", path)
        return path, [o for o in listing.get("items") or () if isinstance(o, dict)]

    async def _bind(
        self, subject: sinkbindings.Subject, binding: str, env: list[dict[str, str]]
    ) -> status.Condition:
        try:
            path, items = await self._candidates(subject)
        except KubeError as exc:
            if exc.status in (403, 404):
                return status.false(
                    "SinkBindingAvailable", "SubjectUnavailable", f"{subject.kind}: {exc.message}"
                )
            raise
        matched = [o for o in items if _matches(subject, o)]
        if subject.name and not matched:
            return status.false(
                "SinkBindingAvailable",
                "SubjectMissing",
                f'{subject.kind} "{subject.namespace}/{subject.name}" not found',
            )
        try:
            for o in matched:
                await self._patch(path, o, env, binding)
            for o in items:
                if _bound_to(o, binding) and not _matches(subject, o):
                    await self._patch(path, o, [], None)
        except KubeError as exc:
            if exc.status == 409:
                raise
            return status.false("SinkBindingAvailable", "BindingFailed", exc.message)
        return status.true("SinkBindingAvailable")

    async def _unbind_all(self, subject: sinkbindings.Subject, binding: str) -> None:
        try:
            path, items = await self._candidates(subject)
        except KubeError as exc:
            if exc.status in (403, 404):
                return  # the kind is gone: nothing left to clean
            raise
        for o in items:
            if _bound_to(o, binding):
                await self._patch(path, o, [], None)

    async def _patch(
        self, path: str, obj: Obj, env: list[dict[str, str]], binding: str | None
    ) -> None:
        meta = decisions.meta(obj)
        patch: dict[str, Any] = sinkbindings.template_patch(obj, env) or {}
        annotations = meta.get("annotations") or {}
        if annotations.get(BOUND_ANNOTATION) != binding:
            patch.setdefault("metadata", {})["annotations"] = {BOUND_ANNOTATION: binding}
        if not patch:
            return
        patch.setdefault("metadata", {})["resourceVersion"] = meta.get("resourceVersion")
        await self.client.request(
            "PATCH", f"{path}/{meta.get('name')}", body=patch, content_type=MERGE_PATCH
        )
        what = "bound" if binding else "unbound"
        log.info("sinkbinding: %s %s/%s", what, meta.get("namespace"), meta.get("name"))

    async def _finalizers(self, obj: Obj, *, add: bool) -> None:
        meta = decisions.meta(obj)
        current = list(meta.get("finalizers") or ())
        kept = [f for f in current if f != FINALIZER]
        body = {
            "metadata": {
                "resourceVersion": meta.get("resourceVersion"),
                "finalizers": [*kept, FINALIZER] if add else kept,
            }
        }
        path = SINKBINDINGS.path(str(meta.get("namespace")), str(meta.get("name")))
        try:
            await self.client.request("PATCH", path, body=body, content_type=MERGE_PATCH)
        except KubeError as exc:
            if exc.status != 404:
                raise


def _matches(subject: sinkbindings.Subject, obj: Mapping[str, Any]) -> bool:
    meta = decisions.meta(obj)
    if subject.name:
        return meta.get("name") == subject.name
    return subject.selector is not None and subject.selector.matches(meta.get("labels"))


def _bound_to(obj: Mapping[str, Any], binding: str) -> bool:
    return (decisions.meta(obj).get("annotations") or {}).get(BOUND_ANNOTATION) == binding
