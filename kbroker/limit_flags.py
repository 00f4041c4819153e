"""--max-header-bytes and friends: one flag per ingress limit, its default from the settings.

Why a module: `kbroker run` and `kbroker ingress` take the same limits, and the flag list is
derived from the settings dataclasses (`ServerLimits` and the size caps of `DecodeLimits`), so a
limit added there gets its flag, its KBROKER_* variable and its help here without a second list.
The defaults and their meaning are documented in docs/limits.md.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from kbroker.core.events import DecodeLimits
from kbroker.core.settings import IngressSettings, ServerLimits, env

_DECODE_FIELDS = (
    "max_event_bytes",
    "max_body_bytes",
    "max_batch_events",
    "max_attributes",
    "max_attribute_bytes",
)


def _flags() -> list[tuple[str, str, Any]]:
    """(group, field, default) for every limit flag."""
    server = [("server", f.name, f.default) for f in dataclasses.fields(ServerLimits)]
    decode = DecodeLimits()
    return [*server, *(("limits", name, getattr(decode, name)) for name in _DECODE_FIELDS)]


def register(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ingress limits (docs/limits.md)")
    for _, name, default in _flags():
        var = "KBROKER_" + name.upper()
        raw = env(var)
        kind = type(default)
        g.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=kind(raw) if raw else default,
            metavar="N",
            help=f"default %(default)s; {var}",
        )


def apply(settings: IngressSettings, args: argparse.Namespace) -> IngressSettings:
    """`settings` with the limits given on the command line (raises ValueError if they do not
    fit together, see IngressSettings)."""
    server = {n: getattr(args, n) for g, n, _ in _flags() if g == "server" and hasattr(args, n)}
    decode = {n: getattr(args, n) for g, n, _ in _flags() if g == "limits" and hasattr(args, n)}
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, **server),
        limits=dataclasses.replace(settings.limits, **decode),
    )


def argv(settings: IngressSettings) -> list[str]:
    """The flags that give another process these limits (extra ingress processes)."""
    out: list[str] = []
    for group, name, _ in _flags():
        out += ["--" + name.replace("_", "-"), str(getattr(getattr(settings, group), name))]
    return out
