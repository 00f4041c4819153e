"""An informer: one resource's objects kept in memory by list + watch, resumed by resourceVersion.

The controller is level-based: it never acts on a single watch event, it only needs to know that
*something* changed and to read the current state of everything. So an informer is a dict of the
latest objects plus a callback "changed". It lists once, then watches from the list's
resourceVersion; a watch the server ends (timeout) resumes from the last version seen, bookmarks
included; a 410 Gone (that version was compacted away) means list again; any other error is
retried with exponential backoff. It never gives up: the API server may be restarting.

An optional informer is for a kind whose CRD may not be installed (KafkaChannel without Kafka), or
that the controller's RBAC does not cover yet: "no such resource" or "forbidden" counts as an
empty, synced list, so the other kinds reconcile; it keeps looking, slowly, for the kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kbroker.controller.kube.api import KubeClient, KubeError, Obj, Resource

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)


class _Gone(Exception):
    """The watch's resourceVersion is too old: the informer must list again."""


class Informer:
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        on_change: Callable[[Obj | None], None],
        *,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.2, 30.0),
        optional: bool = False,
    ) -> None:
        self.client = client
        self.resource = resource
        self.on_change = on_change  # the changed object, or None after a (re)list
        self.items: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.relists = 0
        self.optional = optional
        self.absent = False  # optional and its resource is not served (yet)

    async def run(self) -> None:
        version = ""
        delay = self.backoff[0]
        while True:
            try:
                if not version:
                    version = await self._list()
                async for event in self.client.watch(
                    self.resource.path(), version, self.watch_timeout
                ):
                    version = self._apply(event) or version
                delay = self.backoff[0]
            except _Gone:
                log.info("%s: watch expired, listing again", self.resource.plural)
                version = ""
            except KubeError as exc:
                if exc.status == 410:
                    version = ""
                    continue
                if exc.status in (403, 404) and self.optional:
                    self._absent(exc)
                    version = ""
                    await asyncio.sleep(self.backoff[1])
                    continue
                log.warning("%s: %s; retrying in %.1fs", self.resource.plural, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A malformed event (a proxy's error page, a truncated line): start over.
                log.warning("%s: bad watch data (%r); listing again", self.resource.plural, exc)
                version = ""
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    def _absent(self, exc: KubeError) -> None:
        if not self.absent:
            # 404: the CRD is not installed; 403: RBAC that predates the kind (say so louder).
            (log.info if exc.status == 404 else log.warning)(
                "%s: cannot be listed (%s); treated as none until it can",
                self.resource.plural,
                exc,
            )
        self.absent = True
        had = bool(self.items)
        self.items = {}
        self.synced.set()
        if had:
            self.on_change(None)

    async def _list(self) -> str:
        listing = await self.client.request("GET", self.resource.path())
        self.absent = False
        items: dict[Key, Obj] = {}
        for obj in listing.get("items") or ():
            # List items carry no apiVersion/kind; compile needs them.
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", self.resource.kind)
            items[_key(obj)] = obj
        self.items = items
        self.relists += 1
        self.synced.set()
        self.on_change(None)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _apply(self, event: dict[str, Any]) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise _Gone
            raise KubeError(code, str(obj.get("message") or obj))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            return version
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        if kind == "DELETED":
            self.items.pop(_key(obj), None)
        else:
            self.items[_key(obj)] = obj
        self.on_change(obj)
        return version


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
