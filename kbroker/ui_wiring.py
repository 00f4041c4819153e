"""The console inside `kbroker run`: its ports built from the running parts, mounted at `/-/ui`.

`console_routes(standalone)` returns the routes `kbroker run` adds to its operational app. The
console is served on the same host and port as the broker, so on the default loopback host it
needs nothing more. Bound to another address, it is served only when a token is configured
(`--ops-token FILE`, whose content the console then asks for): a console that can create
Triggers must never be open to a network by accident.

The Events and Deliveries ports come from their own modules when present; until then the
console runs with empty ones that say so, rather than not at all.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from kbroker import ops_guard
from kbroker.core.channel import Envelope
from kbroker.core.contract import Durability
from kbroker.core.events import CloudEvent
from kbroker.core.outcomes import Outcome, TriggerRecords
from kbroker.ui import app as console_app
from kbroker.ui import security
from kbroker.ui.context import ConsoleContext, ConsoleSettings
from kbroker.ui.ports import Deliveries, Events
from kbroker.ui_objects import Source, StandaloneObjects

log = logging.getLogger("kbroker")


class NoEvents:
    """Events port of a build without the events part: no history, no tail."""

    async def recent(self, namespace: str, broker: str, limit: int) -> list[Envelope] | None:
        return None

    async def tail(self, namespace: str, broker: str) -> AsyncIterator[Envelope]:
        return
        yield  # an async generator that ends at once

    async def publish(
        self, namespace: str, broker: str, event: CloudEvent, durability: Durability
    ) -> None:
        raise RuntimeError("publishing from the console is not available in this build")


class NoDeliveries:
    """Deliveries port of a build without delivery records."""

    def records(self, namespace: str, trigger: str) -> TriggerRecords | None:
        return None

    def all_records(self) -> Mapping[tuple[str, str], TriggerRecords]:
        return {}

    async def redrive(
        self, namespace: str, trigger: str, events: Sequence[CloudEvent]
    ) -> list[Outcome]:
        raise RuntimeError("redrive is not available in this build")


def _port(module: str, factory: str, src: Any) -> Any:
    """The port `module.factory(src)`, or None while that module does not exist."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    make = getattr(mod, factory, None)
    return None if make is None else make(src)


def context(src: Source, token: str = "") -> ConsoleContext:
    events: Events = _port("kbroker.ui_events", "from_standalone", src) or NoEvents()
    deliveries: Deliveries = (
        _port("kbroker.ui_deliveries", "from_standalone", src) or NoDeliveries()
    )
    return ConsoleContext(
        objects=StandaloneObjects(src),
        events=events,
        deliveries=deliveries,
        settings=ConsoleSettings(token=token),
    )


def console_routes(src: Source, host: str, token_file: Path | None = None) -> list[BaseRoute]:
    """The console's routes for `kbroker run`, or none when `host` is not loopback and no
    token is configured (logged once, so the operator knows why `/-/ui/` answers 404)."""
    token = ops_guard.TokenFile(token_file).read().decode() if token_file is not None else ""
    if not token and not security.is_loopback(host):
        log.warning("console not served: --host %s is not loopback and no --ops-token is set", host)
        return []
    return console_app.mount(context(src, token))
