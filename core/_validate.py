"""Context-attribute validation shared by every CloudEvents binding (spec 1.0 and 0.3).

Why a separate leaf module: the HTTP, JSON-format and Kafka readers all apply the same rules, and
this module must not import `core.events` (which imports it). It raises plain `ValueError` with a
short reason; `core.events` turns that into `EventError` (400) at its boundary.

What it checks (the spec's context attributes): specversion is exactly "1.0" or "0.3";
id, source and type are present non-empty strings; names are `[a-z0-9]+` and not `data` (long names
are accepted, as the Knative SDKs do); known attributes have string values; extension values are
strings, booleans or int32 integers; `time` is RFC 3339; `dataschema` (1.0) is an absolute URI;
`subject` and `datacontenttype` are non-empty, and `datacontenttype` is ASCII without control
characters (it is the Content-Type header in binary mode, which is not percent-encoded). What it
refuses to do: normalise anything. `time` is checked but stays the string received, so forwarding
and CESQL see the sender's text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

_NAME = re.compile(r"[a-z0-9]+")
# Digits are spelled [0-9] (\d would accept non-ASCII digits). Field ranges live in the pattern so
# the common timestamp is checked by one regex match; only days 29-31 need a calendar look.
_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
# C0 controls but HTAB, and DEL: what an HTTP field value may not hold. datacontenttype becomes the
# Content-Type header verbatim in binary mode (it cannot be percent-encoded like the ce- headers),
# so a CR or LF in it would let whoever sent the event write headers of their own.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

SPECVERSIONS = frozenset({"1.0", "0.3"})
REQUIRED = ("id", "source", "type")
# Attributes whose type is String, URI, URI-reference or Timestamp in 1.0 or 0.3: they may never
# carry a JSON boolean or number.
STRING_TYPED = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "schemaurl",
        "datacontentencoding",
    }
)


def valid_name(name: str) -> bool:
    """An attribute name per spec 1.0: lower-case ASCII letters and digits, and never `data`."""
    if type(name) is not str:  # from_json may be handed any Python object
        return False
    return name in STRING_TYPED or _valid_extension_name(name)


@functools.lru_cache(maxsize=1024)
def _valid_extension_name(name: str) -> bool:
    # Cached: a batch repeats the same few extension names in every event, and the regular
    # expression was most of the per-attribute cost of parsing JSON-format events.
    return _NAME.fullmatch(name) is not None and name != "data"


def valid_time(value: str) -> bool:
    """RFC 3339 date-time (section 5.6): offset or Z required, a fraction of any length; second
    60 (a leap second) is allowed, as RFC 3339 does."""
    m = _TIME.fullmatch(value)
    if m is None:
        return False
    day = m.group(3)
    if day < "29":
        return True
    month = int(m.group(2))
    if month == 2 and day == "29":
        year = int(m.group(1))
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return int(day) <= _DAYS[month - 1]


def check_value(name: str, value: object) -> None:
    """One attribute value's type as JSON gives it (binary mode only ever has strings)."""
    kind = type(value)
    if kind is str:
        return
    if name in STRING_TYPED:
        raise ValueError(f"attribute {name!r} must be a string")
    if kind is bool:
        return
    if isinstance(value, int) and kind is int:
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise ValueError(f"attribute {name!r}: integer out of int32 range")
        return
    raise ValueError(f"attribute {name!r}: invalid value type {kind.__name__}")


def check(attrs: Mapping[str, object]) -> None:
    """Raise ValueError naming the first rule `attrs` breaks; names and value types are the
    caller's job (checked while reading, where the raw form is known)."""
    spec = attrs.get("specversion")
    if spec is None:
        raise ValueError("missing required attribute 'specversion'")
    if spec not in SPECVERSIONS:
        raise ValueError(f"unsupported specversion {spec!r} (expected '1.0' or '0.3')")
    for name in REQUIRED:
        value = attrs.get(name)
        if value is None:
            raise ValueError(f"missing required attribute {name!r}")
        if value == "":
            raise ValueError(f"attribute {name!r} must not be empty")
    time = attrs.get("time")
    if time is not None and not (isinstance(time, str) and valid_time(time)):
        raise ValueError(f"attribute 'time' is not an RFC 3339 timestamp: {time!r}")
    if attrs.get("subject") == "":
        raise ValueError("attribute 'subject' must not be empty")
    ctype = attrs.get("datacontenttype")
    if ctype == "":
        raise ValueError("attribute 'datacontenttype' must not be empty")
    # isprintable() on ASCII is the common answer without a regex search; tabs take the long way.
    if isinstance(ctype, str) and not (ctype.isascii() and ctype.isprintable()):
        if _CONTROL.search(ctype):
            raise ValueError(f"attribute 'datacontenttype' holds a control character: {ctype!r}")
        # An RFC 2046 media type is ASCII, and only ASCII crosses every binding intact (HTTP
        # senders and receivers disagree on header charsets): refused, never sent garbled.
        if not ctype.isascii():
            raise ValueError(
                f"attribute 'datacontenttype' is not a media type (non-ASCII): {ctype!r}"
            )
    if spec == "1.0":
        schema = attrs.get("dataschema")
        if schema is not None and not (isinstance(schema, str) and _ABSOLUTE_URI.fullmatch(schema)):
            raise ValueError(f"attribute 'dataschema' is not an absolute URI: {schema!r}")
    else:
        if attrs.get("schemaurl") == "":
            raise ValueError("attribute 'schemaurl' must not be empty")
        encoding = attrs.get("datacontentencoding")
        # RFC 2045 encodings are case-insensitive; 0.3 defines only base64.
        if encoding is not None and str(encoding).lower() != "base64":
            raise ValueError(f"unsupported datacontentencoding {encoding!r}")
