"""Destination references resolved against the API server, fetched before each compile.

`controller.compiler` is pure and calls a synchronous `Resolver`; looking an object up is async
I/O. So the controller collects every reference the objects contain, fetches them concurrently
here, and hands compile a `Prefetched` resolver that only answers from those results. The
Addressable duck type: a `v1/Service` resolves to its cluster DNS name; any
other object to its `status.address.url`. The REST path of an arbitrary kind comes from API
discovery (cached), else from the conventional plural.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kbroker.controller.kube import decisions
from kbroker.controller.kube.api import SERVICES, KubeClient, KubeError
from kbroker.controller.resolve import ResolveError

log = logging.getLogger(__name__)

RefKey = tuple[str, str, str, str]  # apiVersion, kind, namespace, name
CONCURRENCY = 16


class Prefetched:
    """The compile-time Resolver: answers only from what `KubeResolver.prefetch` found."""

    def __init__(self, results: Mapping[RefKey, str | ResolveError]) -> None:
        self.results = dict(results)

    def resolve(self, ref: Mapping[str, Any], namespace: str) -> str:
        found = self.results.get(decisions.ref_key(ref, namespace))
        if found is None:
            raise ResolveError(f"{ref.get('kind')} {ref.get('name')!r} was not looked up")
        if isinstance(found, ResolveError):
            raise found
        return found


class KubeResolver:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._plurals: dict[tuple[str, str], str] = {}

    async def prefetch(self, refs: Iterable[tuple[Mapping[str, Any], str]]) -> Prefetched:
        wanted = {decisions.ref_key(ref, ns) for ref, ns in refs}
        wanted = {k for k in wanted if all(k)}  # incomplete refs: compile reports them itself
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(key: RefKey) -> tuple[RefKey, str | ResolveError]:
            async with gate:
                try:
                    return key, await self.lookup(*key)
                except ResolveError as exc:
                    return key, exc

        results = await asyncio.gather(*(one(k) for k in sorted(wanted)))
        return Prefetched(dict(results))

    async def lookup(self, api_version: str, kind: str, namespace: str, name: str) -> str:
        what = f"{kind} {namespace}/{name}"
        if api_version == "v1" and kind == "Service":
            path = SERVICES.path(namespace, name)
        else:
            plural = await self.plural(api_version, kind)
            root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            path = f"{root}/namespaces/{namespace}/{plural}/{name}"
        try:
            obj = await self.client.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                raise ResolveError(f"{what} ({api_version}) not found") from exc
            raise ResolveError(f"{what}: {exc.message}") from exc
        if api_version == "v1" and kind == "Service":
            return decisions.service_url(name, namespace, obj)
        st = obj.get("status")
        address = st.get("address") if isinstance(st, Mapping) else None
        url = address.get("url") if isinstance(address, Mapping) else None
        if not url:
            raise ResolveError(f"{what} is not addressable yet (no status.address.url)")
        return str(url)

    async def plural(self, api_version: str, kind: str) -> str:
        cached = self._plurals.get((api_version, kind))
        if cached is not None:
            return cached
        root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        plural = decisions.plural_guess(kind)
        try:
            listing = await self.client.request("GET", root)
        except KubeError as exc:
            log.info("discovery of %s failed (%s): guessing %r", api_version, exc, plural)
            return plural  # not cached: the group may appear later (a CRD being installed)
        for res in listing.get("resources") or ():
            if res.get("kind") == kind and "/" not in str(res.get("name", "")):
                plural = str(res["name"])
                break
        self._plurals[(api_version, kind)] = plural
        return plural
