"""Which extensions were booleans or integers, carried beside an event whose binding has only text.

The Kafka and NATS bindings carry every attribute as a header string, so `true` and `7` come back
as strings and a CESQL filter comparing them as a boolean or integer would stop matching after a
trip through the channel. The record carries one extra header (`b` boolean, `i` integer per name)
that kbroker writes and reads; other readers ignore it and see a plain CloudEvent. It refuses to
guess: a value that no longer parses as its recorded type stays a string.
"""

from __future__ import annotations

from kbroker.core.events import AttrValue

_CODES: dict[type, str] = {bool: "b", int: "i"}


def types_of(attributes: dict[str, AttrValue]) -> str | None:
    """`name=code,...` for the non-string attributes, or None when every one is a string."""
    typed = [f"{k}={_CODES[type(v)]}" for k, v in attributes.items() if type(v) in _CODES]
    return ",".join(typed) if typed else None


def retype(attributes: dict[str, AttrValue], spec: str) -> None:
    """Give the attributes named in `spec` (from `types_of`) their types back, in place."""
    for item in spec.split(","):
        name, _, code = item.partition("=")
        value = attributes.get(name)
        if not isinstance(value, str):
            continue
        if code == "b" and value in ("true", "false"):
            attributes[name] = value == "true"
        elif code == "i" and value.lstrip("-").isdigit():
            attributes[name] = int(value)
