"""Percent-encoding of binary-mode HTTP header values (CloudEvents HTTP binding 3.1.3.2).

Why our own: the stdlib `unquote` silently turns invalid UTF-8 into U+FFFD and knows nothing of
RFC 7230 quoted-strings, both of which the spec makes the receiver handle. Decoding is done on
bytes, once, and the result must be strict UTF-8 (so the overlong `%C0%A0` fails).

Go and Java senders do not encode at all (their SDKs write header values as they are), so a `%` not
followed by two hex digits is kept literally when `lenient`, else rejected.
A lone `"` that is not part of a whole quoted-string is treated the same way.

Leaf module: raises ValueError with a short reason; `core.events` maps it to EventError.
"""

from __future__ import annotations

from urllib.parse import quote

# Every two-character hex spelling (either case) -> its byte: one dict lookup per escape.
_HEXBYTE = {
    f"{hi}{lo}".encode(): int(hi + lo, 16)
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}
# The sender encodes space, '"', '%' and everything outside U+0021..U+007E, nothing else.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def encode(value: str) -> str:
    """The header form of one attribute string (upper-case hex, UTF-8 per code point)."""
    # isprintable() on ASCII means U+0020..U+007E; space, '"' and '%' are then the only exceptions.
    if (
        value.isascii()
        and value.isprintable()
        and " " not in value
        and '"' not in value
        and "%" not in value
    ):
        return value
    return quote(value, safe=_SAFE, errors="strict")


def _unquote_string(raw: bytes) -> bytes:
    """The content of an RFC 7230 quoted-string (`raw` includes both DQUOTEs)."""
    out = bytearray()
    i, end = 1, len(raw) - 1
    while i < end:
        c = raw[i]
        if c == 0x5C:  # backslash: the next byte is taken literally
            if i + 1 >= end:
                raise ValueError("quoted-string ends in a lone backslash")
            out.append(raw[i + 1])
            i += 2
            continue
        if c == 0x22:
            raise ValueError("unescaped '\"' inside a quoted-string")
        out.append(c)
        i += 1
    return bytes(out)


def decode(raw: bytes, lenient: bool) -> str:
    """Header value -> attribute string: unquote, percent-decode once, then strict UTF-8."""
    if len(raw) >= 2 and raw[0] == 0x22 and raw[-1] == 0x22:
        raw = _unquote_string(raw)
    elif not lenient and b'"' in raw:
        raise ValueError("'\"' in a header value must be percent-encoded")
    if b"%" in raw:
        parts = raw.split(b"%")
        out = bytearray(parts[0])
        for part in parts[1:]:
            byte = _HEXBYTE.get(part[:2])
            if byte is not None:
                out.append(byte)
                out += part[2:]
            elif lenient:
                out.append(0x25)
                out += part
            else:
                raise ValueError("malformed percent-encoding in a header value")
        raw = bytes(out)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("header value is not valid UTF-8 after percent-decoding") from None
