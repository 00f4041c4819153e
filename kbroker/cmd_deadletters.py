"""`kbroker deadletters list|redrive NS/BROKER`: a dead-letter Broker's events, and sending them on.

The twin of the console's dead-letters view, over the same API and service: `list` shows the
events a dead-letter Broker holds with why they failed (`knativeerrorcode`, the failing URL, the
subscriber's answer decoded) and the failing Trigger's attempt count; `redrive` sends chosen
events (`--id`, repeatable) or all of one Trigger's (`--all`) to that Trigger's subscriber only,
with its delivery spec, the ids kept, at most `--rate` events a second.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

import orjson

from kbroker import ui_client

HELP = "list a dead-letter broker's events, or redrive them to the Trigger that failed"
REDRIVE_TIMEOUT = 600.0  # seconds: a redrive waits for each event's retries to finish


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deadletters", help=HELP)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="the dead letters a Broker holds, decoded")
    ls.add_argument("broker", metavar="NS/BROKER", help="the dead-letter Broker")
    ls.add_argument("--trigger", help="only those of this Trigger (NAME or NS/NAME)")
    ls.add_argument("--code", help="only this error: 500, 5xx, or none (no response)")
    ls.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ui_client.add_arguments(ls)
    ls.set_defaults(func=list_main)
    rd = actions.add_parser("redrive", help="send dead letters to the failing Trigger again")
    rd.add_argument("broker", metavar="NS/BROKER", help="the dead-letter Broker")
    rd.add_argument("--trigger", required=True, help="the Trigger whose subscriber gets them")
    which = rd.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID", help="an event id")
    which.add_argument("--all", action="store_true", help="every dead letter of the Trigger")
    rd.add_argument("--rate", type=float, default=10.0, help="events per second (default 10)")
    rd.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ui_client.add_arguments(rd)
    rd.set_defaults(func=redrive_main)


def list_main(args: argparse.Namespace) -> int:
    try:
        namespace, broker = ui_client.split_ref(args.broker, "broker")
        with ui_client.client(args) as c:
            got = ui_client.get(
                c, f"/api/deadletters/{namespace}/{broker}", trigger=args.trigger, code=args.code
            )
    except ui_client.ApiError as exc:
        return ui_client.fail(exc)
    if args.output == "json":
        sys.stdout.buffer.write(orjson.dumps(got, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print("\n".join(listing(got)))
    return 0


def redrive_main(args: argparse.Namespace) -> int:
    try:
        namespace, broker = ui_client.split_ref(args.broker, "broker")
        body: dict[str, Any] = {"trigger": args.trigger, "rate": args.rate}
        if args.all:
            body["all"] = True
        else:
            body["ids"] = args.ids
        with ui_client.client(args, timeout=REDRIVE_TIMEOUT) as c:
            got = ui_client.post(c, f"/api/deadletters/{namespace}/{broker}/redrive", body)
    except ui_client.ApiError as exc:
        return ui_client.fail(exc)
    if args.output == "json":
        sys.stdout.buffer.write(orjson.dumps(got, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print("\n".join(redrive_report(got)))
    failed = [o for o in got["outcomes"] if o["verdict"] != "delivered"]
    return 1 if failed or got["missing"] else 0


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    at = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def listing(got: dict[str, Any]) -> list[str]:
    name = f"{got['namespace']}/{got['broker']}"
    if got["note"]:
        return [f"{name}: {got['note']}"]
    feeding = ", ".join(got["triggers"]) or "none"
    out = [f"{name}: {len(got['letters'])} dead letters (Triggers dead-lettering here: {feeding})"]
    for d in got["letters"]:
        code = d["code"] if d["code"] is not None else "no response"
        tries = d["attempts"] if d["attempts"] is not None else "?"
        out.append(
            f"{_when(d['time'])}  id={d['id']}  type={d['type']}  error={code}  "
            f"attempts={tries}  trigger={d['trigger'] or '?'}"
        )
        out.append(f"    failed at {d['dest']}" + (f": {d['data']}" if d["data"] else ""))
    return out


def redrive_report(got: dict[str, Any]) -> list[str]:
    out = []
    for o in got["outcomes"]:
        tries = sum(1 for a in o["attempts"] if a["target"] == "subscriber")
        out.append(f"{o['id']}: {o['verdict']} after {tries} attempt(s)")
    out += [f"{i}: not found among the dead letters" for i in got["missing"]]
    if got["capped"]:
        out.append(f"{got['capped']} more left out by the per-request limit; run again")
    return out or ["nothing to redrive"]
