"""The CloudEvents JSON event format (formats/json-format.md), spec 1.0 and 0.3, over orjson.

Why a separate leaf module: structured HTTP, batch and structured Kafka all read and write it.
It never imports `core.events`; it raises ValueError with a short reason and `core.events` maps it
to EventError (400).

Data rules (JSON format, `data` and `data_base64`): the in-memory event always holds data as the
bytes a binary-mode body would carry, so
* reading `data_base64` gives its bytes, whatever the content type (never assume JSON);
* reading `data` with a JSON-like or absent type gives the JSON text of the value (a JSON string
  stays quoted); when the type was absent, the implied `application/json` is written out as
  `datacontenttype`, because that is what the binary-mode Content-Type must then say;
* reading `data` with any other type requires a string and gives its UTF-8 bytes;
* writing embeds JSON data as a JSON value (spliced byte for byte, so it round-trips exactly),
  text data as a string, and anything else, or data with no type, as `data_base64`.
A 0.3 event with `datacontentencoding: base64` carries base64 text in `data` both ways.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from kbroker.core import _validate

AttrValue = str | int | bool
_MEMBERS = frozenset({"data", "data_base64"})
_NOT_JSON = object()  # "data is not JSON text" (None is a JSON value, so cannot say that)


def media_type(content_type: str) -> str:
    """`type/subtype` of a content type, parameters stripped, lower-cased."""
    return content_type.partition(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    """`*/json` or `*/*+json`, compared case-insensitively."""
    mt = media_type(content_type)
    return "/" in mt and (mt.endswith("/json") or mt.endswith("+json"))


def is_text(content_type: str) -> bool:
    """Types whose data the JSON format carries as a string: text/* and XML."""
    mt = media_type(content_type)
    return mt.startswith("text/") or mt.endswith("/xml") or mt.endswith("+xml")


def depth_ok(value: Any, start: int, limit: int) -> bool:
    """Whether containers nest at most `limit` deep, `value` being at level `start` (iterative:
    a hostile body must not reach the recursion limit)."""
    stack = [(value, start)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return False
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return True


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except (ValueError, RecursionError) as e:  # orjson.JSONDecodeError is a ValueError
        raise ValueError(f"malformed JSON: {e}") from None


def _b64decode(text: object, member: str) -> bytes:
    if type(text) is not str:
        raise ValueError(f"{member!r} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{member!r} is not valid base64") from None


def parse_event(obj: Any, max_depth: int) -> tuple[dict[str, AttrValue], bytes | None]:
    """One JSON-format event object -> (validated attributes, data bytes)."""
    if type(obj) is not dict:
        raise ValueError("a structured event must be a JSON object")
    attrs: dict[str, AttrValue] = {}
    for name, value in obj.items():
        if value is None or name in _MEMBERS:
            continue  # a null attribute is an absent one
        if not _validate.valid_name(name):
            raise ValueError(f"invalid attribute name {name!r}")
        if type(value) is not str:  # strings are valid for every attribute: the common case
            _validate.check_value(name, value)
        attrs[name] = value
    _validate.check(attrs)
    has_data = "data" in obj
    b64 = obj.get("data_base64")
    if has_data and b64 is not None:
        raise ValueError("an event must not have both 'data' and 'data_base64'")
    if b64 is not None:
        return attrs, _b64decode(b64, "data_base64")
    if not has_data:
        return attrs, None
    value = obj["data"]
    if isinstance(value, dict | list) and not depth_ok(value, 2, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    encoding = attrs.get("datacontentencoding")
    if attrs["specversion"] == "0.3" and encoding is not None:  # "base64", as checked
        return attrs, None if value is None else _b64decode(value, "data")
    ct = attrs.get("datacontenttype")
    if ct is None:
        attrs["datacontenttype"] = "application/json"
        return attrs, _dumps(value)
    if is_json(str(ct)):
        return attrs, _dumps(value)
    if value is None:
        return attrs, None
    if type(value) is not str:
        raise ValueError(f"'data' must be a string for content type {ct!r}")
    return attrs, value.encode("utf-8")


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        # orjson.JSONEncodeError: its serialiser stops at 255 levels, below what loads accepts, so
        # a max_json_depth configured above ~250 meets this; a caller's odd Python object too.
        raise ValueError("data cannot be serialised as JSON (nested too deep?)") from None


def json_data(data: bytes, max_depth: int) -> Any:
    """`data` parsed as JSON if it is JSON text nesting within the limit, else a sentinel."""
    try:
        value = orjson.loads(data)
    except ValueError:
        return _NOT_JSON
    return value if depth_ok(value, 2, max_depth) else _NOT_JSON


def members(
    attrs: dict[str, AttrValue], data: bytes | None, max_depth: int
) -> tuple[dict[str, Any], Any]:
    """The JSON-format members of an event, and the parsed JSON `data` value (or `_NOT_JSON`).

    The JSON `data` is returned separately so `encode` can splice the original bytes."""
    out: dict[str, Any] = dict(attrs)
    if data is None:
        return out, _NOT_JSON
    ct = attrs.get("datacontenttype")
    if attrs.get("specversion") == "0.3" and attrs.get("datacontentencoding") is not None:
        out["data"] = base64.b64encode(data).decode("ascii")
        return out, _NOT_JSON
    if isinstance(ct, str):
        if is_json(ct):
            value = json_data(data, max_depth)
            if value is not _NOT_JSON:
                return out, value
        elif is_text(ct):
            try:
                out["data"] = data.decode("utf-8")
                return out, _NOT_JSON
            except UnicodeDecodeError:
                pass
    out["data_base64"] = base64.b64encode(data).decode("ascii")
    return out, _NOT_JSON


def to_dict(attrs: dict[str, AttrValue], data: bytes | None, max_depth: int) -> dict[str, Any]:
    """The JSON-format object, JSON data as its parsed value."""
    out, value = members(attrs, data, max_depth)
    if value is not _NOT_JSON:
        out["data"] = value
    return out


def encode(attrs: dict[str, AttrValue], data: bytes | None, max_depth: int) -> bytes:
    """The JSON-format body; JSON data is spliced in as the exact bytes given."""
    out, value = members(attrs, data, max_depth)
    body = orjson.dumps(out)
    if value is _NOT_JSON or data is None:
        return body
    # JSON data implies a datacontenttype member, so `body` is never the empty object "{}".
    return body[:-1] + b',"data":' + data + b"}"
