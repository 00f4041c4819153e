"""controller/kube/sources_lease: one holder at a time, takeover only after expiry, release.

Against an in-memory Lease store that enforces resourceVersion like the API server (the real one
is exercised by test_sources.py's two-controller test); the clock is fake so expiry is exact.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kbroker.controller.kube.api import KubeError, Obj
from kbroker.controller.kube.sources_lease import Lease


class Store:
    def __init__(self) -> None:
        self.obj: Obj | None = None
        self.version = 0

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Obj:
        if method == "GET":
            if self.obj is None:
                raise KubeError(404, path)
            return copy.deepcopy(self.obj)
        if method == "POST":
            if self.obj is not None:
                raise KubeError(409, "exists")
        elif method == "PUT":
            given = (body.get("metadata") or {}).get("resourceVersion")
            if self.obj is None or given != self.obj["metadata"]["resourceVersion"]:
                raise KubeError(409, "conflict")
        self.version += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.obj)

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> AsyncIterator[Obj]:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    @property
    def holder(self) -> str:
        spec: Mapping[str, Any] = (self.obj or {}).get("spec") or {}
        return str(spec.get("holderIdentity") or "")


async def test_one_holder_takeover_after_expiry_and_release() -> None:
    store, now = Store(), [0.0]
    a = Lease(store, "sys", identity="a", duration=15, monotonic=lambda: now[0])
    b = Lease(store, "sys", identity="b", duration=15, monotonic=lambda: now[0])
    assert await a.try_acquire()
    assert not await b.try_acquire()
    now[0] = 10.0
    assert await a.try_acquire()  # a renews: b sees a new renewTime and waits again
    assert not await b.try_acquire()
    now[0] = 24.0
    assert not await b.try_acquire()  # 14 s since b last saw a renewal: not yet
    now[0] = 25.5
    assert await b.try_acquire()  # a silent for more than 15 s: taken over
    assert store.holder == "b"
    assert not await a.try_acquire()  # a's view is stale: it must not take it back
    await b.release()
    assert store.holder == ""
    assert await a.try_acquire()  # released: no waiting
    assert store.holder == "a"
