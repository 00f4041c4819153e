"""Fuzz targets: one function per untrusted-input parser, taking raw bytes, checking properties.

Why one module for every driver: the same target runs under atheris (coverage-guided, in
hack/fuzz.py), under hypothesis (test/fuzz/test_fuzz.py, with raw-byte and mutated-seed
strategies) and as a replay of every seed kept in test/fuzz/corpus/<target>/. A target returns a
progress score (how far the input got: events decoded, tree size) that hypothesis' `target()`
climbs; it signals a property violation by raising anything at all (an AssertionError for a broken
property, any other exception for one escaping the documented error model).

Input formats, chosen so seed files are readable and mutations stay meaningful:

* http, kafka: an HTTP-like message: `name: value` lines, a blank line, then the body. One space
  after the colon is dropped; a line without a colon is a header with an empty value (for Kafka,
  a header without a value, which confluent-kafka gives as None); no blank line means no body
  (for Kafka, a record with a null value).
* json: the JSON text of one structured event (or anything else).
* cesql: the expression text, UTF-8 (invalid bytes become U+FFFD).

Properties, per the modules' documented error models:

* decoders raise only EventError and its subclasses (UnsupportedMediaType, PayloadTooLarge);
* what a strict or tightly capped decoder accepts, the lenient or default one accepts the same;
* every accepted event survives re-encoding: binary HTTP, structured, batch and Kafka;
* CESQL parsing raises only ParseError; printing and re-parsing gives the same tree; evaluation
  returns a CESQL value with at most one error of a known kind, never raises, and the compiled
  evaluator and predicate agree with the reference interpreter.

The inputs are bounded by the drivers (MAX_LEN), so "never hangs" is checked as a per-input time
limit by the driver (libFuzzer's -timeout, pytest's timeout), not here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from kbroker.core import _jsonformat, _validate, events
from kbroker.core.cesql import CesqlError, ParseError, compile, compile_filter, parse, warnings
from kbroker.core.cesql import ast as cesql_ast
from kbroker.core.cesql.casts import INT32_MAX, INT32_MIN, Value
from kbroker.core.cesql.errors import KINDS
from kbroker.core.cesql.interpreter import evaluate
from kbroker.core.cesql.lint import walk
from kbroker.core.cesql.parser import DEPTH_CEILING
from kbroker.core.cesql.printer import to_source
from kbroker.core.events import CloudEvent, DecodeLimits, EventError

HERE: Final = Path(__file__).resolve().parent
ERRORS: Final = (events.EventError, events.UnsupportedMediaType, events.PayloadTooLarge)
# Caps small enough that fuzzed inputs (at most a few KiB) cross every one of them.
TIGHT: Final = DecodeLimits(
    max_event_bytes=512,
    max_batch_events=3,
    max_body_bytes=2048,
    max_json_depth=6,
    max_attributes=6,
    max_attribute_bytes=256,
    lenient_percent=False,
)
STRICT: Final = DecodeLimits(lenient_percent=False)
LENIENT: Final = DecodeLimits()
# The reference interpreter is deliberately naive (LIKE by sets of positions): keep the
# differential check to expressions it answers quickly.
REFERENCE_MAX_LEN: Final = 1024


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], int]
    max_len: int  # bytes per input: large enough to cross every cap the target has
    home: Path = HERE  # holds corpus/<name>/ and dicts/<name>.dict (tests point it elsewhere)

    @property
    def corpus(self) -> Path:
        return self.home / "corpus" / self.name

    @property
    def dictionary(self) -> Path:
        return self.home / "dicts" / f"{self.name}.dict"

    def seeds(self) -> list[Path]:
        if not self.corpus.is_dir():
            return []
        return sorted(p for p in self.corpus.iterdir() if p.is_file())


# --- message format ---------------------------------------------------------------------------


def split_message(data: bytes) -> tuple[list[tuple[bytes, bytes | None]], bytes | None]:
    """`name: value` lines, a blank line, the body (None when there is no blank line)."""
    head, sep, body = data.partition(b"\n\n")
    headers: list[tuple[bytes, bytes | None]] = []
    for line in head.split(b"\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        headers.append((name, (value[1:] if value[:1] == b" " else value) if colon else None))
    return headers, (body if sep else None)


def join_message(headers: list[tuple[str, str]], body: bytes | None) -> bytes:
    """The inverse of split_message for headers whose values hold no newline."""
    head = b"".join(f"{k}: {v}\n".encode() for k, v in headers)
    return head if body is None else head + b"\n" + body


# --- round trips shared by the codec targets --------------------------------------------------


def as_strings(event: CloudEvent) -> dict[str, str]:
    """Attributes as binary modes carry them; `datacontentencoding` is undone by binary modes."""
    return {
        k: events.attr_string(v) for k, v in event.attributes.items() if k != "datacontentencoding"
    }


def same_data(got: bytes | None, want: bytes | None) -> bool:
    """Equal bytes, or the same JSON value: decoding a structured event re-serialises JSON data
    (the envelope is parsed as a whole), so `{"a": 1}` may come back as `{"a":1}`."""
    if (got or None) == (want or None):
        return True
    try:
        return bool(
            got is not None and want is not None and orjson.loads(got) == orjson.loads(want)
        )
    except orjson.JSONDecodeError:
        return False


def binary_safe(event: CloudEvent) -> bool:
    """Whether binary modes can carry the event: a Content-Type naming a CloudEvents format would
    make the receiver read the body as a structured event (the binding decides by Content-Type)."""
    ct = event.attributes.get("datacontenttype")
    return not (isinstance(ct, str) and ct.lstrip()[:23].lower() == "application/cloudevents")


def raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers]


TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def check_wire(headers: list[tuple[str, str]]) -> None:
    """Headers an encoder produces go onto the wire as they are: a name must be an HTTP token and
    a value must hold no control character, or it would end the header (CR, LF) and let an event
    attribute write headers, or a whole request, of its own."""
    for name, value in headers:
        assert TOKEN.fullmatch(name), f"header name {name!r}"
        assert not CONTROL.search(value), f"header {name}: {value!r}"


def check_event(event: CloudEvent) -> None:
    """Invariants of every decoded event, then every re-encoding round trip."""
    for name, value in event.attributes.items():
        assert _validate.valid_name(name), name
        _validate.check_value(name, value)
    _validate.check(event.attributes)

    headers, body = events.encode_structured(event)
    [back] = events.decode_http(raw(headers), body)
    assert back.attributes == event.attributes, (back, event)
    assert same_data(back.data, event.data), (back, event)

    assert events.from_json(orjson.loads(orjson.dumps(events.to_json(event)))) == back

    if binary_safe(event):
        headers, body = events.encode_binary(event)
        check_wire(headers)
        [back] = events.decode_http(raw(headers), body)
        assert back.attributes == as_strings(event), (back, event)
        assert back.data == (event.data or None), (back, event)

        key, kheaders, kvalue = events.to_kafka(event)
        back = events.from_kafka(kheaders, kvalue)
        assert back.attributes == as_strings(event), (back, event)
        assert back.data == event.data, (back, event)
        pk = event.attributes.get("partitionkey")
        assert key == (None if pk is None else events.attr_string(pk).encode())


def check_batch(decoded: list[CloudEvent]) -> None:
    back = events.decode_http(
        [(b"content-type", b"application/cloudevents-batch+json")], events.encode_batch(decoded)
    )
    assert len(back) == len(decoded)
    for got, want in zip(back, decoded, strict=True):
        assert got.attributes == want.attributes and same_data(got.data, want.data)


def _decode(
    headers: list[tuple[bytes, bytes]], body: bytes, limits: DecodeLimits
) -> list[CloudEvent] | EventError:
    try:
        return events.decode_http(headers, body, limits)
    except ERRORS as e:  # exactly these types: anything else escapes as a finding
        assert type(e) in ERRORS and e.reason, repr(e)
        return e


# --- targets ----------------------------------------------------------------------------------


def http(data: bytes) -> int:
    """decode_http over binary, structured and batch requests."""
    parsed, body = split_message(data)
    headers = [(k, v or b"") for k, v in parsed]
    payload = body or b""
    lenient = _decode(headers, payload, LENIENT)
    strict = _decode(headers, payload, STRICT)
    tight = _decode(headers, payload, TIGHT)
    if isinstance(strict, list):
        assert strict == lenient, "the strict decoder accepted what the lenient one decodes else"
    if isinstance(tight, list):
        assert tight == strict, "a capped decoder accepted what the default one decodes else"
    if isinstance(lenient, EventError):
        if lenient.index is not None:
            assert 0 <= lenient.index < events.DecodeLimits().max_batch_events
        return 0
    for event in lenient:
        check_event(event)
    ct = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
    if _jsonformat.media_type(ct.decode("latin-1")) == "application/cloudevents-batch+json":
        check_batch(lenient)
    return 1 + sum(len(e.attributes) for e in lenient)


def kafka(data: bytes) -> int:
    """from_kafka over binary and structured records (header names as confluent-kafka gives
    them: str, decoded from UTF-8)."""
    parsed, value = split_message(data)
    headers = [(k.decode("utf-8", "replace"), v) for k, v in parsed]
    try:
        event = events.from_kafka(headers, value)  # type: ignore[arg-type]  # None: no value
    except ERRORS as e:
        assert type(e) in ERRORS and e.reason, repr(e)
        return 0
    check_event(event)
    return 1 + len(event.attributes)


def json(data: bytes) -> int:
    """from_json over whatever JSON the input is (and nothing else: non-JSON is orjson's job)."""
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    try:
        event = events.from_json(obj)
    except ERRORS as e:
        assert type(e) in ERRORS and e.reason, repr(e)
        return 0
    tight: CloudEvent | EventError
    try:
        tight = events.from_json(obj, TIGHT)
    except ERRORS as e:
        tight = e
    if isinstance(tight, CloudEvent):
        assert tight == event
    check_event(event)
    return 1 + len(event.attributes)


# Attribute values the CESQL target gives the names an expression uses: every type, the int32
# edges, strings that cast (or almost cast) to integers and booleans, LIKE metacharacters.
VALUES: Final[tuple[Value, ...]] = (
    "",
    "abc",
    "42",
    "-7",
    "+5",
    "007",
    "true",
    "FALSE",
    "a%b_c\\",
    "2147483648",
    " 1",
    "é😀",
    0,
    1,
    -1,
    INT32_MAX,
    INT32_MIN,
    True,
    False,
)


def cesql_events(tree: cesql_ast.Expr) -> Iterator[dict[str, Value]]:
    """No attributes at all, then two deterministic assignments of VALUES to the names used."""
    yield {}
    names = sorted(
        {n.name for n in walk(tree) if isinstance(n, cesql_ast.Attribute | cesql_ast.Exists)}
    )
    for shift in (0, 7):
        yield {name: VALUES[(zlib.crc32(name.encode()) + shift) % len(VALUES)] for name in names}


def cesql(data: bytes) -> int:
    """parse, print, compile and evaluate one CESQL expression."""
    text = data.decode("utf-8", "replace")
    try:
        tree = parse(text)
        found = warnings(text)
    except ParseError as e:
        assert e.kind == "parse" and 0 <= e.position <= len(text), repr(e)
        assert "^" in str(e)
        return 0
    assert all(isinstance(w, str) for w in found)
    printed = to_source(tree)
    assert parse(printed, max_length=len(printed), max_depth=DEPTH_CEILING) == tree, printed
    evaluator = compile(tree)
    predicate = compile_filter(text)
    for attributes in cesql_events(tree):
        value, errors = evaluator(attributes)
        assert type(value) in (str, int, bool), value
        assert type(value) is not int or INT32_MIN <= value <= INT32_MAX, value
        assert len(errors) <= 1 and all(
            isinstance(e, CesqlError) and e.kind in KINDS for e in errors
        ), errors
        assert predicate(attributes) is (value is True and not errors), (text, attributes)
        if len(text) <= REFERENCE_MAX_LEN:
            ref_value, ref_errors = evaluate(tree, attributes)
            # Messages differ by design (the reference says less); kinds and values must not.
            got = (type(value), value, [e.kind for e in errors])
            assert got == (type(ref_value), ref_value, [e.kind for e in ref_errors]), (
                text,
                attributes,
                (value, errors),
                (ref_value, ref_errors),
            )
    return sum(1 for _ in walk(tree))


TARGETS: Final = {
    t.name: t
    for t in (
        Target("http", http, 4096),
        Target("kafka", kafka, 4096),
        Target("json", json, 4096),
        Target("cesql", cesql, 4200),  # just over the parser's 4096-character cap
    )
}
