"""Refusing Trigger destinations that point back into the console's own host (cluster mode).

A console that creates Triggers can be made to send events anywhere its dispatcher can reach.
On Kubernetes that includes the node's loopback and the cloud metadata endpoint (link-local
169.254.169.254), which no subscriber has a reason to be. So in cluster mode a subscriber or
dead-letter `uri` whose host is, or resolves to, a loopback, link-local or unspecified address
is refused, unless the operator allowed it (`--allow-private-uris`). Standalone, loopback is the
normal place for a subscriber and nothing is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from kbroker.ui.context import ConsoleSettings
from kbroker.ui.ports import KObject

_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def _private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


def destinations(obj: KObject) -> list[tuple[str, str]]:
    """(field, uri) of every absolute URI the Trigger would send to."""
    spec: Any = obj.get("spec") or {}
    out = []
    sub = spec.get("subscriber") if isinstance(spec, dict) else None
    if isinstance(sub, dict) and isinstance(sub.get("uri"), str) and "://" in sub["uri"]:
        out.append(("spec.subscriber.uri", sub["uri"]))
    delivery = spec.get("delivery") if isinstance(spec, dict) else None
    dls = delivery.get("deadLetterSink") if isinstance(delivery, dict) else None
    if isinstance(dls, dict) and isinstance(dls.get("uri"), str) and "://" in dls["uri"]:
        out.append(("spec.delivery.deadLetterSink.uri", dls["uri"]))
    return out


def literal_problems(obj: KObject, settings: ConsoleSettings) -> list[str]:
    """Problems visible without DNS (for the live preview)."""
    if not settings.cluster or settings.allow_private_uris:
        return []
    problems = []
    for fld, uri in destinations(obj):
        host = (urlsplit(uri).hostname or "").lower()
        if host in _NAMES or _private(host):
            problems.append(f"{fld}: {host} is a loopback or link-local address (refused)")
    return problems


async def problems(obj: KObject, settings: ConsoleSettings) -> list[str]:
    """Everything `literal_problems` finds, plus host names that resolve to such addresses."""
    found = literal_problems(obj, settings)
    if found or not settings.cluster or settings.allow_private_uris:
        return found
    for fld, uri in destinations(obj):
        host = urlsplit(uri).hostname or ""
        try:
            infos = await asyncio.wait_for(
                asyncio.to_thread(socket.getaddrinfo, host, None), timeout=2.0
            )
        except (OSError, TimeoutError):
            continue  # unresolvable here: the dispatcher will report it, nothing to refuse
        if any(_private(str(info[4][0])) for info in infos):
            found.append(f"{fld}: {host} resolves to a loopback or link-local address (refused)")
    return found
