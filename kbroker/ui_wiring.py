"""The console inside `kbroker run`: its ports built from the running parts, mounted at `/-/ui`.

`console_routes(standalone)` returns the routes `kbroker run` adds to its operational app. The
console is served on the same host and port as the broker, so on the default loopback host it
needs nothing more. Bound to another address, it is served only when a token is configured
(`--ops-token FILE`, whose content the console then asks for): a console that can create
Triggers must never be open to a network by accident.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.routing import BaseRoute

from kbroker import ops_guard, ui_deliveries, ui_events
from kbroker.ui import app as console_app
from kbroker.ui import security
from kbroker.ui.context import ConsoleContext, ConsoleSettings
from kbroker.ui_objects import Source, StandaloneObjects

log = logging.getLogger("kbroker")


def context(src: Source, token: str = "") -> ConsoleContext:
    return ConsoleContext(
        objects=StandaloneObjects(src),
        events=ui_events.ChannelEvents(src.channels, src.holder),
        deliveries=ui_deliveries.from_standalone(src),
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
