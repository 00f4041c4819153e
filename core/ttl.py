"""The broker's loop guard: the `knativebrokerttl` extension, as ingress and dispatcher both use it.

Why it exists: a trigger whose subscriber replies with an event the same trigger matches would
loop forever. Knative bounds that with a hop count carried in the event: ingress stamps it on an
event that arrives without one and refuses one whose count is used up; the dispatcher strips it
before delivery and gives a reply the count minus one. Both sides must agree on the name, the
default and what counts as a valid value, so those live here, once.

What it refuses to do: read a boolean or a non-integer as a count (`"5.0"`, `true` are invalid,
never coerced), or decide what happens to an invalid event: ingress answers 400, the dispatcher
drops the reply and logs it; those choices stay with them.
"""

from __future__ import annotations

from collections.abc import Mapping

from kbroker.core.events import AttrValue

EXTENSION = "knativebrokerttl"
DEFAULT = 255  # Knative's default hop count, given to an event that arrives without one


def parse(attributes: Mapping[str, AttrValue]) -> int | None:
    """The hop count an event carries; None when it carries none or not an integer."""
    raw = attributes.get(EXTENSION)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def admit(attributes: dict[str, AttrValue], default: int = DEFAULT) -> bool:
    """Ingress: stamp `default` on an event that carries no count; False when the count it
    carries is used up (<= 0) or not an integer, True when the event may enter the broker."""
    if EXTENSION not in attributes:
        attributes[EXTENSION] = str(default)
        return True
    count = parse(attributes)
    return count is not None and count > 0


def next_hop(count: int | None) -> int | None:
    """Dispatcher: the count a reply to an event carrying `count` gets (an event that carried
    none counts as `DEFAULT`); None when the reply would have none left and must be dropped."""
    remaining = (count if count is not None else DEFAULT) - 1
    return remaining if remaining > 0 else None


def stamp(attributes: dict[str, AttrValue], count: int) -> None:
    """Set the count an event carries."""
    attributes[EXTENSION] = str(count)


def without(attributes: Mapping[str, AttrValue]) -> dict[str, AttrValue]:
    """The attributes minus the count: what a subscriber is sent (the count is the broker's)."""
    return {k: v for k, v in attributes.items() if k != EXTENSION}
