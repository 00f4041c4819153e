"""Where the data plane gets its contract: in process (standalone) or from a mounted file (cluster).

Both ingress and dispatcher depend on this seam only, never on the controller. A source holds the
current contract and tells subscribers about each new generation; it never goes backwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from kbroker.core.contract import Broker, Contract

log = logging.getLogger(__name__)

Listener = Callable[[Contract], Awaitable[None]]


class ContractHolder:
    """The current contract plus listeners called, in order, for every newer generation."""

    def __init__(self, initial: Contract | None = None) -> None:
        self.current: Contract = initial or Contract()
        self.loaded = initial is not None
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._indexed: Contract | None = None
        self._brokers: dict[str, Broker] = {}

    def broker(self, key: str) -> Broker | None:
        """The broker `<namespace>/<name>` of the current contract, by dict lookup (hot path)."""
        if self._indexed is not self.current:
            self._brokers = {b.key: b for b in self.current.brokers}
            self._indexed = self.current
        return self._brokers.get(key)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, contract: Contract) -> None:
        async with self._lock:
            if self.loaded and contract.generation <= self.current.generation:
                return
            self.current = contract
            self.loaded = True
            for listener in self._listeners:
                await listener(contract)


class FileContractSource:
    """Polls a contract JSON file (a ConfigMap mounted into a pod) and publishes new generations."""

    def __init__(self, path: Path, holder: ContractHolder, interval: float = 1.0) -> None:
        self.path = path
        self.holder = holder
        self.interval = interval
        self._stamp: tuple[float, int] | None = None

    async def poll_once(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            contract = Contract.from_json(self.path.read_bytes())
        except (ValueError, KeyError) as exc:
            log.error("contract file %s unreadable: %s", self.path, exc)
            return
        await self.holder.publish(contract)

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)
