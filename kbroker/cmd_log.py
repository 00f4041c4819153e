"""`kbroker log check|salvage`: find damaged embedded logs and recover what they still hold.

Why: a broker whose log file is damaged is refused (not Ready, 503 at its ingress) and its file
is left exactly as found, so the operator decides what happens next. `check` runs SQLite's full
`integrity_check` plus the WAL and end-marker checks the broker runs at open, on every log in the
data folder or on one broker's; it only reads (safe while kbroker runs). `salvage` copies the
damaged files aside and rebuilds the log from every readable event, at the same offsets; stop
kbroker first.

Exit status: 0 every checked log is whole / salvage done; 1 damage found; 2 usage error (no such
broker or log).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TextIO

from kbroker.core import contract
from kbroker.core.channels import _sqlite_check as check
from kbroker.core.channels import _sqlite_salvage as salvage
from kbroker.core.channels.embedded import db_path
from kbroker.core.settings import RunSettings

BUSY_TIMEOUT = 5.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "log",
        help="check embedded broker logs for damage, or salvage a damaged one",
        description="Check (read only) or salvage the embedded channel's per-broker logs.",
        epilog="exit status: 0 whole / salvaged, 1 damage found, 2 no such broker or log",
    )
    sub = parser.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    chk = sub.add_parser("check", help="integrity_check every log (or one broker's)")
    chk.add_argument("broker", nargs="?", metavar="NS/BROKER", help="only this broker's log")
    sal = sub.add_parser(
        "salvage", help="copy a damaged log aside and rebuild it from its readable events"
    )
    sal.add_argument("broker", metavar="NS/BROKER")
    for p in (chk, sal):
        p.add_argument("--data", type=Path, required=True, help="the kbroker run --data folder")
        p.add_argument(
            "--topic-template",
            default=RunSettings().topic_template,
            help="as given to kbroker run (names the log files; default %(default)s)",
        )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.log_command == "check":
        return run_check(args.data, args.broker, args.topic_template, sys.stdout, sys.stderr)
    return run_salvage(args.data, args.broker, args.topic_template, sys.stdout, sys.stderr)


def find_log(data: Path, broker: str, topic_template: str) -> Path | None:
    """The log file of `ns/name`: named after its topic (the default), else ns.name."""
    ns, _, name = broker.partition("/")
    if not ns or not name:
        return None
    topic = topic_template.format(namespace=ns, name=name)
    for candidate in (
        contract.Broker(ns, name, "", "", topic=topic),
        contract.Broker(ns, name, "", ""),
    ):
        path = db_path(data, candidate)
        if path.exists():
            return path
    return None


def run_check(data: Path, broker: str | None, topic_template: str, out: TextIO, err: TextIO) -> int:
    if broker is not None:
        path = find_log(data, broker, topic_template)
        if path is None:
            print(f"no embedded log for broker {broker} in {data}", file=err)
            return 2
        logs = [(f"{broker} ({path.name})", path)]
    else:
        logs = [(p.name, p) for p in sorted(data.glob("*.db"))]
        if not logs:
            print(f"no embedded logs in {data}", file=err)
            return 2
    damaged = 0
    for label, path in logs:
        try:
            problems = check.inspect(path, BUSY_TIMEOUT, full=True)
        except sqlite3.Error as exc:
            problems = [f"cannot check: {exc}"]
        if not problems:
            print(f"{label}: OK", file=out)
            continue
        damaged += 1
        print(f"{label}: DAMAGED", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
    if damaged:
        print(
            f"{damaged} damaged log(s); stop kbroker and run"
            f" `kbroker log salvage --data {data} NS/BROKER` for each",
            file=out,
        )
        return 1
    return 0


def run_salvage(data: Path, broker: str, topic_template: str, out: TextIO, err: TextIO) -> int:
    path = find_log(data, broker, topic_template)
    if path is None:
        print(f"no embedded log for broker {broker} in {data}", file=err)
        return 2
    result = salvage.salvage(path)
    print(f"damaged log copied to {result.copy}", file=out)
    span = f" (offsets {result.first}-{result.end})" if result.recovered else ""
    print(
        f"recovered {result.recovered} events{span} and {result.positions} trigger positions"
        f" into {path}",
        file=out,
    )
    if result.lost:
        ranges = ", ".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in result.lost)
        print(f"lost {result.lost_events()} events: offsets {ranges}", file=out)
    else:
        print("lost no event that a trigger still needed", file=out)
    if result.unreadable_positions:
        print(
            f"{result.unreadable_positions} trigger positions were unreadable: those triggers"
            " start again from their Trigger's start setting",
            file=out,
        )
    return 0
