"""`kbroker trigger test NS/NAME`: would this Trigger match these events, and why (not)?

The twin of the console's filter tester: the Trigger's effective filter, as the running
dispatcher has it, evaluated on the broker's last N stored events (`--last`) or on an event from a
file (`--event`, structured JSON or a batch), each with its verdict and explain tree, plus the
other Triggers of the broker matching the same events. Evaluated by the broker, through the
console's API, with the dispatcher's own filter code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from kbroker import ui_client

HELP = "test a Trigger's filter on a broker's recent events or an event file"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trigger", help=HELP)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("test", help="match the Trigger's filter against events, with reasons")
    t.add_argument("trigger", metavar="NS/NAME", help="the Trigger, as namespace/name")
    source = t.add_mutually_exclusive_group()
    source.add_argument("--last", type=int, help="the broker's last N events (default 50)")
    source.add_argument(
        "--event",
        type=Path,
        metavar="FILE",
        help="a JSON-format event (or array) to test; - is stdin",
    )
    t.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ui_client.add_arguments(t)
    t.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        namespace, name = ui_client.split_ref(args.trigger, "name")
        if args.last is not None and args.last < 1:
            raise ui_client.ApiError("--last must be at least 1")
        with ui_client.client(args) as c:
            if args.event is not None:
                raw = sys.stdin.read() if str(args.event) == "-" else _read(args.event)
                body = {"namespace": namespace, "trigger": name, "event": raw}
                result = ui_client.post(c, "/api/filter-test", body)
            else:
                result = ui_client.get(c, f"/api/triggers/{namespace}/{name}/test", last=args.last)
    except ui_client.ApiError as exc:
        return ui_client.fail(exc)
    if args.output == "json":
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print("\n".join(report(f"{namespace}/{name}", result)))
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ui_client.ApiError(f"cannot read {path}: {exc.strerror}") from None


def report(trigger: str, result: dict[str, Any]) -> list[str]:
    """The result for people: the summary, then per event its verdict and explain tree."""
    out = [f"trigger {trigger}: {result['summary']}"]
    for r in result["rows"]:
        mark = "✓ match   " if r["matched"] else "✗ no match"
        out.append(f"{mark}  id={r['id']}  type={r['type']}  source={r['source']}")
        out.extend(_tree(r["explain"], "      "))
        if r["others"]:
            out.append(f"      also matched by: {', '.join(r['others'])}")
    if result["overlap"]:
        shared = ", ".join(f"{n} ({k})" for n, k in sorted(result["overlap"].items()))
        out.append(f"other triggers matching these events: {shared}")
    return out


def _tree(node: dict[str, Any], indent: str) -> list[str]:
    mark = "✓" if node["matched"] else "✗"
    detail = f": {node['detail']}" if node.get("detail") else ""
    lines = [f"{indent}{mark} {node['label']}{detail}"]
    for child in node.get("children", ()):
        lines.extend(_tree(child, indent + "  "))
    return lines
