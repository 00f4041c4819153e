"""`kbroker cesql EXPR [--event FILE|-]`: check a CESQL expression, or try it on an event.

Why: a Trigger with a CESQL filter drops every event it does not match, silently. This command
shows what the broker will do, before deploying: the parse error with a caret, the warnings
(AND/OR grouping, bare NOT, unknown functions), and for an event in JSON structured form its
value, errors and the filter's decision.

Exit status: 0 valid (no event) or the event matches; 1 the event does not match; 2 the
expression or the event is invalid.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import orjson

from kbroker.core import cesql
from kbroker.core.cesql import ast, printer
from kbroker.core.cesql.casts import INT32_MAX, INT32_MIN, Value, type_name

_NOT_ATTRIBUTES = ("data", "data_base64")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cesql",
        help="check a CESQL filter expression, or evaluate it on an event",
        description="Parse a CESQL v1 expression; with --event, evaluate it as a Trigger would.",
        epilog="exit status: 0 valid / matches, 1 does not match, 2 invalid expression or event",
    )
    parser.add_argument("expression", help="the CESQL expression (quote it for the shell)")
    parser.add_argument(
        "--event", metavar="FILE", help="a CloudEvent in JSON structured form; '-' reads stdin"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run(args.expression, args.event, sys.stdin, sys.stdout, sys.stderr)


def run(expression: str, event_path: str | None, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    try:
        tree = cesql.parse(expression)
        notes = cesql.warnings(expression)
    except cesql.ParseError as error:
        print(f"invalid CESQL: {error}", file=err)
        return 2
    print(f"expression: {printer.to_source(tree)}", file=out)
    for note in notes:
        print(f"warning: {note}", file=out)
    if event_path is None:
        print("valid", file=out)
        return 0
    try:
        text = stdin.read() if event_path == "-" else _read(event_path)
        attributes = attributes_of(orjson.loads(text))
    except (OSError, ValueError) as error:
        print(f"invalid event: {error}", file=err)
        return 2
    value, errors = cesql.compile(tree)(attributes)
    shown = printer.to_source(ast.Constant(value))
    print(f"value: {shown} ({type_name(value.__class__)})", file=out)
    if not errors:
        print("errors: none", file=out)
    for problem in errors:
        print(f"error: {problem.kind}: {problem.message}", file=out)
    matches = value is True and not errors
    print(f"match: {'yes' if matches else 'no'}", file=out)
    return 0 if matches else 1


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def attributes_of(event: object) -> dict[str, Value]:
    """The context attributes of a JSON structured-mode event (data and nulls left out)."""
    if not isinstance(event, dict):
        raise ValueError("the event must be a JSON object")
    attributes: dict[str, Value] = {}
    for name, value in event.items():
        if name in _NOT_ATTRIBUTES or value is None:
            continue
        in_range = isinstance(value, int) and INT32_MIN <= value <= INT32_MAX
        if isinstance(value, bool | str) or in_range:
            attributes[name] = value
        else:
            raise ValueError(f"attribute {name!r}: {value!r} is not a string, int32 or boolean")
    return attributes
