"""The contract's way to the data plane in cluster mode, and the check that it arrived.

- `ContractStore`: the ConfigMap `kbroker-contract` (key `contract.json`) that ingress and filter
  mount as a file. Writes use optimistic concurrency: a replace names the resourceVersion the
  controller last saw, so two controllers (a rolling update, a mistaken second replica) can never
  overwrite each other silently; the loser reloads and recompiles on top. Optionally the same
  contract also goes to a local file, for data-plane processes that are not pods.
- `DataPlaneProbe`: asks each data-plane process which generation it serves
  (GET /contract-generation) and remembers the highest generation all of them reached, so a
  blip in probing never turns a Ready object back to not Ready.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from pathlib import Path

import aiohttp
import orjson
from kbroker.controller.kube.api import CONFIGMAPS, KubeClient, KubeError, Obj
from kbroker.core import contract

log = logging.getLogger(__name__)

CONTRACT_KEY = "contract.json"


class Conflict(Exception):
    """Someone else wrote the contract ConfigMap; the store reloaded it: reconcile again."""


class ContractStore:
    def __init__(
        self, client: KubeClient, namespace: str, name: str, file: Path | None = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.file = file
        self.current: contract.Contract | None = None  # last one written (or found)
        self._version: str | None = None  # the ConfigMap's resourceVersion; None: absent
        self._file_generation = -1

    async def load(self) -> contract.Contract | None:
        """The contract in the ConfigMap, if any (a restart continues its generation line)."""
        try:
            cm = await self.client.request("GET", CONFIGMAPS.path(self.namespace, self.name))
        except KubeError as exc:
            if exc.status != 404:
                raise
            self.current, self._version = None, None
            return None
        self._version = str(cm["metadata"]["resourceVersion"])
        raw = (cm.get("data") or {}).get(CONTRACT_KEY)
        try:
            self.current = contract.Contract.from_json(raw) if raw else None
        except (ValueError, KeyError) as exc:
            log.error("contract ConfigMap unreadable (%s): starting a new generation line", exc)
            self.current = None
        return self.current

    async def write(self, c: contract.Contract) -> None:
        """Create or replace the ConfigMap; raises Conflict (after reloading) on a lost race."""
        # Compact JSON: a ConfigMap holds at most 1 MiB.
        compact = orjson.dumps(orjson.loads(c.to_json())).decode()
        body: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/part-of": "kbroker"},
                "annotations": {"kbroker.dev/generation": str(c.generation)},
            },
            "data": {CONTRACT_KEY: compact},
        }
        try:
            if self._version is None:
                path = CONFIGMAPS.path(self.namespace)
                written = await self.client.request("POST", path, body=body)
            else:
                body["metadata"]["resourceVersion"] = self._version
                path = CONFIGMAPS.path(self.namespace, self.name)
                written = await self.client.request("PUT", path, body=body)
        except KubeError as exc:
            if exc.status == 409:
                log.info("contract ConfigMap changed under us: reloading")
                await self.load()
                raise Conflict from exc
            raise
        self._version = str(written["metadata"]["resourceVersion"])
        self.current = c
        log.info(
            "contract generation %d written: %d brokers, %d triggers",
            c.generation,
            len(c.brokers),
            len(c.triggers),
        )

    def write_file(self, c: contract.Contract) -> None:
        if self.file is None or c.generation == self._file_generation:
            return
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_bytes(c.to_json())
        tmp.replace(self.file)  # atomic: a polling reader never sees half a contract
        self._file_generation = c.generation


class DataPlaneProbe:
    def __init__(
        self,
        urls: tuple[str, ...],
        timeout: float = 2.0,
        token_file: Path | None = None,
        ca: Path | None = None,
    ) -> None:
        self.urls = urls
        self.timeout = timeout
        # The data plane's /contract-generation may sit behind an ops token and https.
        self.token_file = token_file
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.served = -1  # highest generation every process has reported
        self._http: aiohttp.ClientSession | None = None

    async def generation(self) -> int | None:
        """The generation all processes serve (never going back); None when nothing is probed."""
        if not self.urls:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self.ssl),
            )
        headers = {}
        if self.token_file is not None:
            with contextlib.suppress(OSError):  # unreadable: 401, counted as not serving yet
                headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
        seen = []
        for base in self.urls:
            try:
                url = f"{base.rstrip('/')}/contract-generation"
                async with self._http.get(url, headers=headers) as resp:
                    seen.append(int((await resp.json())["generation"]) if resp.ok else -1)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                seen.append(-1)
        self.served = max(self.served, min(seen))
        return self.served

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
