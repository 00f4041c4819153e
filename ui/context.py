"""Everything a console route needs, built once by whoever serves the console.

`kbroker run` builds it with in-process ports; `kbroker ui` with HTTP/API-server ones. Route
modules take a `ConsoleContext` and return Starlette routes, so each part of the console (pages,
events API, dead-letters API) is assembled the same way and tested with fake ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from kbroker.ui.ports import Deliveries, Events, Objects


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """What the operator decided about the console."""

    show_payloads: bool = True  # event data in the tail and inspector (off: attributes only)
    cluster: bool = False  # cluster mode: refs resolve through the API server, SSRF checks apply
    allow_private_uris: bool = False  # cluster mode: allow loopback/link-local subscriber URIs
    token: str = ""  # bearer token required on every request ("" only on loopback)
    tail_buffer: int = 500  # events buffered per open tail before the oldest are dropped
    recent_limit: int = 50  # events the filter tester reads by default
    trace_url: str = ""  # e.g. "http://jaeger:16686/trace/{trace_id}"; "" hides trace links


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    objects: Objects
    events: Events
    deliveries: Deliveries
    settings: ConsoleSettings
