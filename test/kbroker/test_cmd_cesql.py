"""`kbroker cesql`: syntax check, warnings, evaluation on an event, exit statuses."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import orjson
import pytest

from kbroker import cmd_cesql

EVENT = {
    "specversion": "1.0",
    "id": "1",
    "source": "/orders",
    "type": "com.example.a",
    "seq": 5,
    "flag": True,
    "gone": None,
    "data": {"type": "not an attribute"},
    "data_base64": "AA==",
}


def _run(
    expression: str, event: object | None = None, *, path: Path | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdin = io.StringIO("" if event is None else orjson.dumps(event).decode())
    where = str(path) if path else ("-" if event is not None else None)
    code = cmd_cesql.run(expression, where, stdin, out, err)
    return code, out.getvalue(), err.getvalue()


def test_valid_without_event() -> None:
    code, out, err = _run("type = 'x' AND seq > 1")
    assert (code, err) == (0, "")
    assert out == "expression: type = 'x' AND seq > 1\nvalid\n"


def test_parse_error_shows_caret_and_exits_2() -> None:
    code, out, err = _run("type = 'x' AND")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "invalid CESQL: expected an expression, found end of expression at position 14",
        "  type = 'x' AND",
        "                ^",
    ]


def test_warnings_are_printed() -> None:
    code, out, _ = _run("a AND b OR NOPE()")
    assert code == 0
    assert "warning: mixes AND/OR/XOR without parentheses" in out
    assert "warning: unknown function NOPE" in out
    assert "expression: a AND (b OR NOPE())" in out


def test_matching_event_from_stdin() -> None:
    code, out, _ = _run("type = 'com.example.a' AND seq = '5' AND flag", EVENT)
    assert code == 0
    assert out.splitlines()[-3:] == ["value: TRUE (Boolean)", "errors: none", "match: yes"]


def test_event_from_file_value_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(orjson.dumps(EVENT))
    code, out, _ = _run("LENGTH(source) + seq", path=path)
    assert code == 1
    assert out.splitlines()[-3:] == ["value: 12 (Integer)", "errors: none", "match: no"]


@pytest.mark.parametrize("expression", ["EXISTS data", "EXISTS gone", "data = 'x'"])
def test_data_and_nulls_are_not_attributes(expression: str) -> None:
    code, out, _ = _run(expression, EVENT)
    assert code == 1
    assert "match: no" in out


def test_errors_are_listed() -> None:
    code, out, _ = _run("missing = 1", EVENT)
    assert code == 1
    assert "error: missingAttribute: attribute 'missing' is not in the event" in out


@pytest.mark.parametrize(
    "event",
    [[1, 2], {"id": "1", "x": 1.5}, {"id": "1", "x": {"a": 1}}, {"x": 2**31}],
    ids=["not an object", "float", "object", "over int32"],
)
def test_invalid_events_exit_2(event: object) -> None:
    code, _, err = _run("TRUE", event)
    assert code == 2
    assert err.startswith("invalid event: ")


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    code, _, err = _run("TRUE", path=tmp_path / "absent.json")
    assert code == 2 and err.startswith("invalid event: ")


def test_register_adds_the_subcommand() -> None:
    parser = argparse.ArgumentParser()
    cmd_cesql.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cesql", "type = 'x'", "--event", "-"])
    assert (args.expression, args.event, args.func) == ("type = 'x'", "-", cmd_cesql.main)
