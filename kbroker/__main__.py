"""The `kbroker` command: argument parsing and dispatch to the subcommand modules (wiring only)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes register(subparsers); its parser sets `func(args) -> int`.
_COMMANDS = ("cmd_run", "cmd_send", "cmd_get", "cmd_cesql", "cmd_bench", "cmd_cluster", "cmd_log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbroker",
        description="Knative-compatible Broker and Trigger, standalone or on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"kbroker.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kbroker.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
