"""ApiServerSource on Kubernetes: validate, check RBAC, watch, and hand each change to a sender.

Per source, on every change and every `resync` seconds (level-based, like the Broker loop):

  spec -> validate (controller/apiserversources) -> resolve sink -> watched namespaces
       -> SubjectAccessReview: may system:serviceaccount:<ns>:<serviceAccountName> get, list and
          watch each kind in each namespace? -> status -> (Ready) one watch per kind x namespace

Knative's annotation `features.knative.dev/apiserversource-skip-permissions-check: "true"` skips
the check (SufficientPermissions True without asking). Not Ready means not watched: an invalid
spec, an unresolvable sink, a kind the API server does not serve, or missing permissions
(`SufficientPermissions` False, reason `InsufficientPermissions`, Knative's message) stop its
watches.

The watches run here, in the controller, with the controller's identity, after the check above
said the source's ServiceAccount may do the same (Knative runs one adapter Deployment per source
under that ServiceAccount instead; there are no pods to run here, and one process means one
sender). Each watch starts from the resourceVersion it last handled, recorded per source in
`<state_dir>/<namespace>_<name>.json` after each event is handed over, and receives bookmarks, so:

- the first start lists only to learn the current resourceVersion: objects that already exist
  produce no events (as Knative's adapter);
- a restart resumes where it stopped: changes made while the controller was down are delivered,
  and at most the events in flight at the crash are sent again (same `id`, see sources/apiserver);
- if the API server no longer has that history (410 Gone: etcd compaction, ~5 minutes by default),
  the changes in between are skipped, with a warning, and the watch restarts from now.

What this module refuses: event shapes and sending (injected `deliver`), and PingSources.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from kbroker.controller import apiserversources, resolve, selectors, status
from kbroker.controller.kube import decisions
from kbroker.controller.kube.api import KubeClient, KubeError, Obj
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.controller.kube.sources_api import (
    APISERVERSOURCES,
    NAMESPACES,
    SUBJECT_ACCESS_REVIEWS,
    sink_address,
    write_status,
)
from kbroker.controller.kube.watch import Informer
from kbroker.core.contract_apiserver import ApiServerSource, WatchedResource

log = logging.getLogger(__name__)

Deliver = Callable[[ApiServerSource, str, Obj], Awaitable[bool]]
VERB_OF = {"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}
REASON_PERMISSIONS = "InsufficientPermissions"
REASON_INVALID = "InvalidSpec"
REASON_RESOURCE = "ResourceNotFound"
REASON_WATCHING = "Watching"
SKIP_PERMISSIONS = "features.knative.dev/apiserversource-skip-permissions-check"
SAR_TTL = 10.0  # seconds a permission answer is trusted before it is asked again


@dataclasses.dataclass(frozen=True, slots=True)
class Watch:
    """One list+watch: a kind in one namespace ("" = all namespaces)."""

    resource: WatchedResource
    path: str
    namespace: str

    @property
    def mark_key(self) -> str:
        return f"{self.resource.api_version}|{self.resource.kind}|{self.namespace}"


class Marks:
    """The last resourceVersion each watch of one source handled, in one small file."""

    def __init__(self, directory: Path, namespace: str, name: str, uid: str) -> None:
        self.path = directory / f"{namespace}_{name}.json"
        self.uid = uid
        self.versions: dict[str, str] = {}
        try:
            doc = orjson.loads(self.path.read_bytes())
            if doc.get("uid") == uid:
                self.versions = {str(k): str(v) for k, v in doc.get("marks", {}).items()}
        except (OSError, ValueError, AttributeError):
            pass

    def set(self, key: str, version: str) -> None:
        if not version or self.versions.get(key) == version:
            return
        self.versions[key] = version
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"uid": self.uid, "marks": self.versions}))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("apiserversource %s: bookmark not saved: %s", self.path.name, exc)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def owned_by(obj: Mapping[str, Any], owner: tuple[str, str] | None) -> bool:
    """Knative's owner filter: only the controller ownerReference counts."""
    if owner is None:
        return True
    refs = decisions.meta(obj).get("ownerReferences") or ()
    ctrl = next((r for r in refs if isinstance(r, Mapping) and r.get("controller")), None)
    if ctrl is None:
        return False
    api, kind = owner
    return (not api or ctrl.get("apiVersion") == api) and (not kind or ctrl.get("kind") == kind)


def permission_message(user: str, missing: Mapping[tuple[str, str, str], list[str]]) -> str:
    """Knative's wording: `User <u> cannot get, list, watch resource "x" in API group "" in
    Namespace "ns"`, one entry per resource and namespace, joined by ", "."""
    parts = []
    for (group, plural, ns), verbs in sorted(missing.items()):
        where = f' in Namespace "{ns}"' if ns else " cluster-wide"
        parts.append(
            f'User {user} cannot {", ".join(verbs)} resource "{plural}" in API group "{group}"'
            + where
        )
    return ", ".join(parts)


class ApiServerSources:
    def __init__(
        self,
        client: KubeClient,
        deliver: Deliver,
        server: str,
        state_dir: Path,
        served_brokers: Callable[[], set[str]],
        *,
        resync: float = 5.0,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.server = server
        self.state_dir = state_dir
        self.served_brokers = served_brokers
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.resolver = KubeResolver(client)
        self.dirty = asyncio.Event()
        self.informer = Informer(
            client, APISERVERSOURCES, lambda _: self.dirty.set(), watch_timeout=watch_timeout
        )
        self._running: dict[
            str, tuple[ApiServerSource, tuple[Watch, ...], list[asyncio.Task[None]]]
        ]
        self._running = {}
        self._marks: dict[str, Marks] = {}
        self._sar: dict[tuple[str, str, str, str, str], tuple[bool, float]] = {}
        self._discovery: dict[str, dict[str, tuple[str, bool]]] = {}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.informer.run(), name="watch:apiserversources")
                tg.create_task(self._loop(), name="apiserversources")
        finally:
            await self.stop_all()

    async def _loop(self) -> None:
        await self.informer.synced.wait()
        delay = 0.2
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), self.resync)
            self.dirty.clear()
            try:
                await self.reconcile()
                delay = 0.2
            except Exception as exc:  # a bug must not stop the Broker controller
                if isinstance(exc, KubeError):
                    log.warning("apiserversources: %s; retrying in %.1fs", exc, delay)
                else:
                    log.exception("apiserversources: reconcile failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self.dirty.set()

    async def reconcile(self) -> None:
        self._discovery.clear()  # kinds appear and go with CRDs: asked again each round
        seen = set()
        for obj in list(self.informer.items.values()):
            if decisions.deleting(obj):
                continue
            key = "/".join(decisions.key_of(obj)[1:])
            seen.add(key)
            try:
                await self._one(obj, key)
            except KubeError as exc:
                log.warning("apiserversource %s: %s", key, exc)
        for key in set(self._running) - seen:
            await self._stop(key)
            marks = self._marks.pop(key, None)
            if marks is not None:
                marks.forget()

    async def _one(self, obj: Obj, key: str) -> None:
        meta = decisions.meta(obj)
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        parsed, issues = apiserversources.parse(obj.get("spec"))
        conds: dict[str, status.Condition] = {
            "OIDCIdentityCreated": status.true(
                "OIDCIdentityCreated", status.REASON_OIDC_DISABLED_TRIGGER
            )
        }
        sink_uri, sink_broker = "", ""
        try:
            sink_uri, sink_broker = await sink_address(
                self.resolver, (obj.get("spec") or {}).get("sink"), ns, self.served_brokers
            )
            conds["SinkProvided"] = status.true("SinkProvided")
        except resolve.DestinationError as exc:
            conds["SinkProvided"] = status.false("SinkProvided", "NotFound", str(exc))
        watches: tuple[Watch, ...] = ()
        namespaces: list[str] = []
        errors = [i for i in issues.items if i.severity == "error"]
        if errors:
            message = "; ".join(f"{i.field}: {i.message}" for i in errors)
            conds["Deployed"] = status.false("Deployed", REASON_INVALID, message)
            conds["SufficientPermissions"] = status.unknown("SufficientPermissions")
        else:
            namespaces = await self._namespaces(ns, parsed.namespace_selector)
            watches, unknown_kinds = await self._watches(parsed.resources, namespaces)
            user = f"system:serviceaccount:{ns}:{parsed.service_account}"
            skip = (meta.get("annotations") or {}).get(SKIP_PERMISSIONS) == "true"
            missing = {} if skip else await self._permissions(user, watches)
            if missing:
                conds["SufficientPermissions"] = status.false(
                    "SufficientPermissions", REASON_PERMISSIONS, permission_message(user, missing)
                )
            else:
                conds["SufficientPermissions"] = status.true("SufficientPermissions")
            if unknown_kinds:
                conds["Deployed"] = status.false(
                    "Deployed",
                    REASON_RESOURCE,
                    "the API server does not serve " + ", ".join(unknown_kinds),
                )
            else:
                conds["Deployed"] = status.true("Deployed", REASON_WATCHING)
        st = status.ObjectStatus(
            kind="ApiServerSource",
            namespace=ns,
            name=name,
            generation=int(meta.get("generation") or 0),
            conditions=status.with_ready(apiserversources.CONDITIONS, conds),
            sink_uri=sink_uri or None,
            ce_attributes=apiserversources.ce_attributes(parsed.mode, self.server),
        )
        src = ApiServerSource(
            namespace=ns,
            name=name,
            uid=str(meta.get("uid") or ""),
            mode=parsed.mode,
            resources=parsed.resources,
            owner=parsed.owner,
            service_account=parsed.service_account,
            sink_uri=sink_uri,
            sink_broker=sink_broker,
            extensions=parsed.extensions,
            server=self.server,
            generation=st.generation,
        )
        if st.ready:
            self._ensure(key, src, watches)
        else:
            await self._stop(key)
        await write_status(
            self.client, APISERVERSOURCES, obj, st, {"namespaces": sorted(namespaces)}
        )

    # --- what to watch --------------------------------------------------------------------------

    async def _namespaces(self, own: str, selector: selectors.Selector | None) -> list[str]:
        if selector is None:
            return [own]
        if selector.empty:
            return [""]  # every namespace: one cluster-wide watch per kind
        listing = await self.client.request("GET", NAMESPACES.path())
        return sorted(
            str(decisions.meta(n).get("name"))
            for n in listing.get("items") or ()
            if selector.matches(decisions.meta(n).get("labels"))
        )

    async def _kinds(self, api_version: str) -> dict[str, tuple[str, bool]]:
        """kind -> (plural, namespaced) served under `api_version` ({} when the version is not)."""
        found = self._discovery.get(api_version)
        if found is None:
            root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            try:
                listing = await self.client.request("GET", root)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                listing = {}
            found = {
                str(r.get("kind")): (str(r.get("name")), bool(r.get("namespaced")))
                for r in listing.get("resources") or ()
                if "/" not in str(r.get("name", ""))
            }
            self._discovery[api_version] = found
        return found

    async def _watches(
        self, resources: tuple[WatchedResource, ...], namespaces: list[str]
    ) -> tuple[tuple[Watch, ...], list[str]]:
        out, unknown = [], []
        for r in resources:
            served = (await self._kinds(r.api_version)).get(r.kind)
            if served is None:
                unknown.append(f"{r.kind} ({r.api_version})")
                continue
            plural, namespaced = served
            root = f"/apis/{r.api_version}" if "/" in r.api_version else f"/api/{r.api_version}"
            for ns in namespaces if namespaced else [""]:
                where = f"/namespaces/{ns}" if ns else ""
                out.append(Watch(r, f"{root}{where}/{plural}", ns))
        return tuple(out), unknown

    async def _permissions(
        self, user: str, watches: tuple[Watch, ...]
    ) -> dict[tuple[str, str, str], list[str]]:
        ns_of_user = user.split(":")[2]
        missing: dict[tuple[str, str, str], list[str]] = {}
        for w in watches:
            group = w.resource.api_version.rpartition("/")[0]
            plural = w.path.rsplit("/", 1)[1]
            for verb in ("get", "list", "watch"):
                key = (user, group, plural, w.namespace, verb)
                cached = self._sar.get(key)
                if cached is not None and time.monotonic() - cached[1] < SAR_TTL:
                    allowed = cached[0]
                else:
                    review = {
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview",
                        "spec": {
                            "user": user,
                            "groups": [
                                "system:serviceaccounts",
                                f"system:serviceaccounts:{ns_of_user}",
                                "system:authenticated",
                            ],
                            "resourceAttributes": {
                                "namespace": w.namespace,
                                "verb": verb,
                                "group": group,
                                "resource": plural,
                            },
                        },
                    }
                    answer = await self.client.request(
                        "POST", SUBJECT_ACCESS_REVIEWS.path(), body=review
                    )
                    allowed = bool((answer.get("status") or {}).get("allowed"))
                    self._sar[key] = (allowed, time.monotonic())
                if not allowed:
                    missing.setdefault((group, plural, w.namespace), []).append(verb)
        return missing

    # --- the watches ----------------------------------------------------------------------------

    def _ensure(self, key: str, src: ApiServerSource, watches: tuple[Watch, ...]) -> None:
        running = self._running.get(key)
        if running is not None and running[0] == src and running[1] == watches:
            return
        if running is not None:
            for t in running[2]:
                t.cancel()
        marks = self._marks.get(key)
        if marks is None or marks.uid != src.uid:
            marks = self._marks[key] = Marks(self.state_dir, src.namespace, src.name, src.uid)
        tasks = [
            asyncio.create_task(self._watch(src, w, marks), name=f"apiserversource:{key}")
            for w in watches
        ]
        self._running[key] = (src, watches, tasks)
        log.info("apiserversource %s: watching %d kind/namespace pair(s)", key, len(watches))

    async def _stop(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is None:
            return
        for t in running[2]:
            t.cancel()
        await asyncio.gather(*running[2], return_exceptions=True)

    async def stop_all(self) -> None:
        for key in list(self._running):
            await self._stop(key)

    async def _watch(self, src: ApiServerSource, w: Watch, marks: Marks) -> None:
        version = marks.versions.get(w.mark_key, "")
        delay = 0.2
        while True:
            try:
                if not version:
                    listing = await self.client.request("GET", w.path)
                    version = str(decisions.meta(listing).get("resourceVersion") or "")
                    marks.set(w.mark_key, version)
                async for event in self.client.watch(w.path, version, self.watch_timeout):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        raise KubeError(int(obj.get("code") or 0), str(obj.get("message") or obj))
                    if kind in VERB_OF:
                        obj.setdefault("apiVersion", w.resource.api_version)
                        obj.setdefault("kind", w.resource.kind)
                    if kind in VERB_OF and self._wanted(src, w, obj):
                        await self.deliver(src, VERB_OF[str(kind)], obj)
                    version = str(decisions.meta(obj).get("resourceVersion") or version)
                    marks.set(w.mark_key, version)
                delay = 0.2
            except KubeError as exc:
                if exc.status == 410:
                    log.warning(
                        "apiserversource %s: %s changes since resourceVersion %s are no longer "
                        "kept by the API server; watching from now (changes in between skipped)",
                        src.key,
                        w.path,
                        version,
                    )
                    version = ""
                    continue
                log.warning("apiserversource %s: watch %s: %s", src.key, w.path, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except (ValueError, TypeError, KeyError, AttributeError):
                # A malformed event, or a bug: this watch starts over from its last mark.
                log.exception("apiserversource %s: watch %s failed", src.key, w.path)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _wanted(self, src: ApiServerSource, w: Watch, obj: Mapping[str, Any]) -> bool:
        sel = selectors.Selector(w.resource.match_labels, w.resource.match_expressions)
        if not sel.matches(decisions.meta(obj).get("labels")):
            return False
        return owned_by(obj, src.owner)
