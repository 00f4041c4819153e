"""The `kbroker` command: argument parsing and dispatch to the subcommand modules (wiring only).

Why the subcommands are listed here instead of every module being imported to register itself:
`kbroker --help` and each extra ingress process of `kbroker run --processes N` (a `kbroker
ingress` child) start often and must stay light. So only the module of the subcommand being run is
imported; the others appear in `kbroker --help` through the one-line help in COMMANDS. In
particular nothing here imports the benchmark (rich, matplotlib) unless `kbroker bench` runs.
`build_parser()` imports every module, for tests that check command lines against the real CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[Subparsers], None]

# Subcommand -> the help line `kbroker --help` shows; test/test_packaging.py checks that each
# equals the help its module registers.
COMMANDS: dict[str, str] = {
    "run": "run the standalone broker (ingress + dispatcher + folder controller)",
    "send": "send a CloudEvent to a broker URL",
    "get": (
        "show Brokers, Triggers, EventPolicies, PingSources, Sequences, Parallels, "
        "channels or Subscriptions and their status"
    ),
    "cesql": "check a CESQL filter expression, or evaluate it on an event",
    "bench": "benchmark the broker: open-loop load, staircase knee, latency, CPU, RSS",
    "log": "check embedded broker logs for damage, or salvage a damaged one",
    "controller": "cluster mode: reconcile Brokers/Triggers from Kubernetes into the contract",
    "ingress": "cluster mode data plane: HTTP -> channel",
    "filter": "cluster mode data plane: channel -> subscribers",
    "tail": "follow a broker's events as they arrive (the console's live tail)",
    "trigger": "test a Trigger's filter on a broker's recent events or an event file",
    "deadletters": "list a dead-letter broker's events, or redrive them to the Trigger that failed",
    "ui": "cluster mode: the trigger console (pages under /-/ui/), behind a bearer token",
}


def register_of(command: str) -> Register:
    """Import the one module implementing `command`; it registers every subcommand it serves."""
    if command == "run":
        from kbroker import cmd_run

        return cmd_run.register
    if command == "send":
        from kbroker import cmd_send

        return cmd_send.register
    if command == "get":
        from kbroker import cmd_get

        return cmd_get.register
    if command == "cesql":
        from kbroker import cmd_cesql

        return cmd_cesql.register
    if command == "bench":
        from kbroker import cmd_bench  # exits with an install hint without the bench extra

        return cmd_bench.register
    if command == "log":
        from kbroker import cmd_log

        return cmd_log.register
    if command == "tail":
        from kbroker import cmd_tail

        return cmd_tail.register
    if command == "trigger":
        from kbroker import cmd_trigger

        return cmd_trigger.register
    if command == "ui":
        from kbroker import cmd_ui

        return cmd_ui.register
    if command == "deadletters":
        from kbroker import cmd_deadletters

        return cmd_deadletters.register
    if command in ("controller", "ingress", "filter"):
        from kbroker import cmd_cluster

        return cmd_cluster.register
    raise KeyError(command)


def _top() -> tuple[argparse.ArgumentParser, Subparsers]:
    parser = argparse.ArgumentParser(
        prog="kbroker",
        description="Knative-compatible Broker and Trigger, standalone or on Kubernetes.",
    )
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    """The complete parser, every subcommand module imported (tests; not the command's path)."""
    parser, sub = _top()
    done: set[Register] = set()
    for command in COMMANDS:
        register = register_of(command)
        if register not in done:
            done.add(register)
            register(sub)
    return parser


def parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """A parser that imports only the module of the subcommand in argv (none for `--help`).

    The other subcommands get an empty parser with their help line, so `kbroker --help` lists
    them all and a misspelt one still gets argparse's "invalid choice" message."""
    parser, sub = _top()
    # The top-level parser has no options but -h, so the first word is the subcommand.
    command = next((a for a in argv if not a.startswith("-")), None)
    served: set[str] = set()
    if command in COMMANDS:
        register_of(command)(sub)
        served = set(sub.choices)
    for name, help_line in COMMANDS.items():
        if name not in served:
            sub.add_parser(name, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser_for(argv).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
