"""ISO-8601 durations (`PT0.2S`, `P1DT2H`), the format of Knative's DeliverySpec time fields.

Knative parses these with a period library and then takes an approximate `time.Duration`; we do
the same arithmetic in seconds (a year is 365.2425 days, a month a twelfth of that) so the
contract carries plain floats and the data plane never sees the text form.

What this module refuses: negative durations, empty ones (`P`, `PT`), a `T` with nothing after
it, and anything with trailing garbage. A bad duration is a user error the controller reports,
not something to guess at.
"""

from __future__ import annotations

import re

_NUM = r"(\d+(?:[.,]\d+)?)"
_PATTERN = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)

_DAY = 86400.0
_YEAR = 365.2425 * _DAY
# Seconds per unit, in the order of the pattern's number groups (the `T` group is skipped).
_UNITS = (_YEAR, _YEAR / 12, 7 * _DAY, _DAY, 3600.0, 60.0, 1.0)


class DurationError(ValueError):
    """The text is not an ISO-8601 duration we accept."""


def parse(text: str) -> float:
    """Seconds in an ISO-8601 duration such as `PT0.2S`, `PT1M30.5S` or `P1DT2H`."""
    if not isinstance(text, str):
        raise DurationError(f"expected an ISO-8601 duration string, got {type(text).__name__}")
    m = _PATTERN.fullmatch(text.strip().upper())
    if m is None:
        raise DurationError(f"invalid ISO-8601 duration {text!r} (expected e.g. PT0.2S, P1DT2H)")
    groups = m.groups()
    time_part = groups[4]
    numbers = groups[:4] + groups[5:]
    if all(n is None for n in numbers):
        raise DurationError(f"invalid ISO-8601 duration {text!r}: no components")
    if time_part is not None and all(n is None for n in groups[5:]):
        raise DurationError(
            f"invalid ISO-8601 duration {text!r}: 'T' without hours/minutes/seconds"
        )
    return sum(
        float(n.replace(",", ".")) * unit for n, unit in zip(numbers, _UNITS, strict=True) if n
    )
