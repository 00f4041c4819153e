"""One sender at a time: a coordination.k8s.io Lease held by the controller that runs the sources.

PingSource ticks and ApiServerSource changes must each be sent by one process. The controller
Deployment has one replica and the `Recreate` strategy, but a pod on a node that lost contact
with the cluster can keep running while its replacement starts; two senders would double every
event. So the sources run only while this process holds the Lease `kbroker-sources` in the system
namespace, as client-go's leader election does it:

- acquire: create the Lease, or take it over when its holder is empty or has not renewed for
  `duration` seconds *as observed by this process's clock* (no comparison of two machines' clocks);
  every write is a replace guarded by resourceVersion, so two candidates cannot both win;
- hold: renew every `renew` seconds; a holder that cannot renew for two thirds of `duration`
  stops its sources before anyone else may take over (so the two never overlap);
- release on shutdown (empty holder), so the next controller starts at once instead of waiting.

What this module refuses: what runs under the Lease (kbroker/cluster_sources).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from kbroker.controller.kube.api import KubeClient, KubeError, Obj, Resource

log = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAME = "kbroker-sources"


def _micro(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        name: str = NAME,
        duration: float = 15.0,
        renew: float = 5.0,
        identity: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.duration = duration
        self.renew = renew
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.monotonic = monotonic
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self._version = ""

    def _body(self, holder: str) -> Obj:
        now = _micro(datetime.now(UTC))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                **({"resourceVersion": self._version} if self._version else {}),
            },
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": int(self.duration),
                "acquireTime": now,
                "renewTime": now,
            },
        }

    async def try_acquire(self) -> bool:
        """One attempt: True when this process holds the Lease afterwards."""
        path = LEASES.path(self.namespace, self.name)
        try:
            current = await self.client.request("GET", path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            self._version = ""
            try:
                created = await self.client.request(
                    "POST", LEASES.path(self.namespace), body=self._body(self.identity)
                )
            except KubeError as err:
                if err.status == 409:  # another candidate created it first
                    return False
                raise
            self._remember(created)
            return True
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._seen:
            self._seen, self._seen_at = record, self.monotonic()
        expired = self.monotonic() - self._seen_at > self.duration
        if holder and holder != self.identity and not expired:
            return False
        self._version = str((current.get("metadata") or {}).get("resourceVersion") or "")
        try:
            replaced = await self.client.request("PUT", path, body=self._body(self.identity))
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        if holder != self.identity:
            log.info("sources: lease %s acquired (previous holder %r)", self.name, holder)
        self._remember(replaced)
        return True

    def _remember(self, obj: Obj) -> None:
        self._version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        spec = obj.get("spec") or {}
        self._seen = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
        self._seen_at = self.monotonic()

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        while True:
            try:
                if await self.try_acquire():
                    return
            except KubeError as exc:
                log.warning("sources: lease %s: %s", self.name, exc)
            await asyncio.sleep(self.renew / 2)

    async def hold(self) -> None:
        """Renew until the Lease is lost (returns then), or can no longer be trusted to be ours:
        after failing to renew for two thirds of `duration`, well before another candidate,
        which waits the whole `duration` from its last sight of a renewal, may take it."""
        last_ok = self.monotonic()
        wait = self.renew
        while True:
            await asyncio.sleep(wait)
            try:
                if await self.try_acquire():
                    last_ok, wait = self.monotonic(), self.renew
                    continue
                log.warning("sources: lease %s taken by another controller", self.name)
                return
            except KubeError as exc:
                log.warning("sources: lease %s not renewed: %s", self.name, exc)
                wait = min(1.0, self.renew)
            if self.monotonic() - last_ok > self.duration * 2 / 3:
                log.warning("sources: lease %s could not be renewed in time", self.name)
                return

    async def release(self) -> None:
        try:
            await self.client.request(
                "PUT", LEASES.path(self.namespace, self.name), body=self._body("")
            )
        except KubeError as exc:
            log.info("sources: lease %s not released: %s", self.name, exc)
