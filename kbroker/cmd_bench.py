"""`kbroker bench`: measure the broker (and this machine's limits) with named scenarios.

Why a CLI of its own rather than a pytest plugin: benchmark runs last minutes, start real
servers, and produce figures that docs/benchmarks.md quotes with the command that produced
them. This module only turns flags into `kbroker.bench` calls and shows progress with rich; the
design notes live in kbroker/bench/*.py (open-loop scheduling in schedule.py, accounting in
runner.py, scenario names in scenarios.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

# rich and matplotlib come with the bench extra only, so that the broker's own installs stay
# small; without them this command says how to get them instead of showing a traceback.
BENCH_EXTRA = ("rich", "matplotlib")
MISSING_EXTRA = "kbroker bench needs the bench extra: pip install 'kbroker[bench]'"
try:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from kbroker.bench import (
        backends,
        brokerconfig,
        clients,
        execute,
        machine,
        payload,
        plot,
        report,
        runner,
        scenarios,
        targets,
    )
    from kbroker.bench.results import ScenarioResult, StepResult
except ModuleNotFoundError as exc:
    if (exc.name or "").split(".")[0] not in BENCH_EXTRA:
        raise
    raise SystemExit(MISSING_EXTRA) from None

EPILOG = """\
scenarios (configuration in the name):
  ceiling        bare ASGI 202 app under uvicorn+httptools: the HTTP limit of this machine
  direct         generator -> receiver, no broker: the delivery baseline
  ingress        kbroker run, no triggers: events/s and latency to 202
  e2e            kbroker run, 1 trigger: delivered events/s and end-to-end latency
  fanout-N-M     N triggers, each event matching M%% of them (fanout = fanout-100-10)
  triggers-N     N idle triggers: RSS per trigger, time to Ready (triggers = 0, 100, 1000)
  failing-P      a subscriber failing P%% with 503 next to a healthy one (failing = failing-10)
  otel-P         e2e with P%% of traces sampled via OTEL_* (otel = otel-0, otel-10, otel-100)
  tail           e2e at each rate without, then with a console live tail (SSE) open: its cost
  cesql          CESQL filter cost from kbroker.bench_cesql, when installed
  targets        every row of the target table in docs/benchmarks.md, met / not met with the gap
  backends       ingress (all, none) and e2e on embedded, Kafka, NATS and RabbitMQ side by side,
                 CPU per event of kbroker and of each server; ~5 minutes (--kafka/--nats/--rabbitmq)

examples:
  kbroker bench ceiling direct --rate 4000 --duration 10
  kbroker bench ingress --staircase 2000:1000:12000 --p99 100 --json out.json --plot out.png
  kbroker bench ingress --mode batch --batch-size 100 --rate 50000
  kbroker bench e2e --url http://127.0.0.1:8080 --broker-config examples/
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the broker: open-loop load, staircase knee, latency, CPU, RSS",
        description="Open-loop, fixed-rate benchmark of kbroker (no coordinated omission).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=command)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenarios", nargs="*", default=["ingress"], help="scenario names (see below)")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=float, default=1000.0, help="events/s (default 1000)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds at --rate (10)")
    load.add_argument(
        "--staircase",
        metavar="START:STEP:MAX",
        help="step the rate up; each step held --hold s; stops at the first failing step",
    )
    load.add_argument(
        "--hold", type=float, default=None,
        help=f"seconds per staircase step (30; backends: {backends.HOLD:g})",
    )  # fmt: skip
    load.add_argument(
        "--p99", type=float, default=None, metavar="MS",
        help="p99 bound for a passing step (default 100 with --staircase)",
    )  # fmt: skip
    load.add_argument("--concurrency", type=int, default=64, help="in-flight requests/generator")
    load.add_argument("--generators", type=int, default=1, help="generator processes (1)")
    load.add_argument(
        "--client", choices=clients.CLIENTS, default="raw",
        help="raw keep-alive asyncio client (default, ~3x less CPU) or aiohttp",
    )  # fmt: skip
    load.add_argument("--repeat", type=int, default=1, help="run each scenario N times; medians")
    ev = p.add_argument_group("events")
    ev.add_argument("--payload", type=int, default=1024, help="data bytes per event (1024)")
    ev.add_argument("--mode", choices=payload.MODES, default="binary", help="content mode")
    ev.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    ev.add_argument("--durability", choices=("none", "leader", "all"), default=None,
                    help="Kbroker-Durability header (default: the broker's)")  # fmt: skip
    br = p.add_argument_group("broker")
    br.add_argument("--channel", choices=brokerconfig.CHANNELS, default="embedded")
    br.add_argument(
        "--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers (--channel kafka)"
    )
    br.add_argument("--nats", metavar="URL", help="NATS JetStream server URL (--channel nats)")
    br.add_argument("--rabbitmq", metavar="URL", help="RabbitMQ AMQP URL (--channel rabbitmq)")
    br.add_argument("--processes", type=int, default=1, help="ingress processes (and ceiling's)")
    br.add_argument("--url", help="benchmark an already running broker at this base URL")
    br.add_argument(
        "--broker-config", type=Path, metavar="DIR",
        help="with --url: the folder that broker watches; bench adds its triggers",
    )  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write results as JSON")
    out.add_argument("--plot", type=Path, metavar="FILE", help="write the staircase as PNG")
    out.add_argument("--report", type=Path, metavar="FILE", help="render a saved JSON and exit")


def canonical_argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces this run: scenarios plus every non-default option."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    out = [str(s) for s in args.scenarios]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("json", "plot", "report"):
            continue
        value = getattr(args, action.dest, action.default)
        if value != action.default:
            out += [
                action.option_strings[0],
                f"{value:g}" if isinstance(value, float) else str(value),
            ]
    return out


SUITES = (["targets"], ["backends"])  # names that run a fixed plan, not a list of scenarios


def options(args: argparse.Namespace) -> execute.BenchOptions:
    hold = args.hold
    if hold is None:
        hold = backends.HOLD if args.scenarios == ["backends"] else 30.0
    for channel, flag in (("kafka", "--kafka BOOTSTRAP"), ("nats", "--nats URL"),
                          ("rabbitmq", "--rabbitmq URL")):  # fmt: skip
        if args.channel == channel and not getattr(args, channel):
            raise scenarios.ScenarioError(f"--channel {channel} needs {flag}")
    if args.staircase or args.scenarios in SUITES:
        rates = tuple(scenarios.parse_staircase(args.staircase or f"{args.rate:g}:1:{args.rate:g}"))
        duration, bound = hold, (100.0 if args.p99 is None else args.p99)
    else:
        rates, duration, bound = (args.rate,), args.duration, args.p99
    load = runner.LoadOptions(
        mode=args.mode,
        size=args.payload,
        batch=args.batch_size if args.mode == "batch" else 1,
        durability=args.durability,
        concurrency=args.concurrency,
        generators=args.generators,
        client=args.client,
    )
    return execute.BenchOptions(
        load=load,
        rates=rates,
        duration=duration,
        staircase=bool(args.staircase),
        p99_bound_ms=bound,
        url=args.url,
        broker_config=args.broker_config,
        processes=args.processes,
        kafka=args.kafka if args.channel == "kafka" else None,
        nats=args.nats if args.channel == "nats" else None,
        rabbitmq=args.rabbitmq if args.channel == "rabbitmq" else None,
    )


def command(args: argparse.Namespace) -> int:
    if args.plot:  # matplotlib is imported only to draw; find out before minutes of load
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            print(MISSING_EXTRA, file=sys.stderr)
            return 2
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=220)  # a log file should get the whole table
    if args.report:
        doc = orjson.loads(args.report.read_bytes())
        report.render(doc, console)
        if args.plot:
            plot.staircase(doc, args.plot)
        return 0
    try:
        selected = [] if args.scenarios in SUITES else scenarios.parse_all(args.scenarios)
        opts = options(args)
    except scenarios.ScenarioError as exc:
        console.print(f"[red]kbroker bench: {exc}[/]")
        return 2
    facts = machine.facts()
    verdicts: list[targets.Verdict] | None = None
    compared: list[dict[str, Any]] | None = None
    if args.scenarios == ["backends"]:
        addresses = {"kafka": args.kafka, "nats": args.nats, "rabbitmq": args.rabbitmq}
        by_backend = asyncio.run(_run_backends(opts, addresses, console))
        results = [r for rows in by_backend.values() for r in rows.values()]
        compared = backends.table(by_backend)
    elif args.scenarios == ["targets"]:
        per_row = asyncio.run(_run_targets(opts, max(1, args.repeat), args.kafka, console))
        results = [r for runs in per_row.values() for r in runs]
        verdicts = targets.evaluate(per_row)
    else:
        results = asyncio.run(_run_all(selected, opts, max(1, args.repeat), console))
    doc = report.document(results, facts, canonical_argv(args))
    if args.repeat > 1:
        doc["medians"] = medians(results)
    if verdicts is not None:
        doc["targets"] = [v.to_json() for v in verdicts]
    if compared is not None:
        doc["backends"] = compared
    report.render(doc, console)
    if args.json:
        report.write_json(args.json, doc)
    if args.plot:
        plot.staircase(doc, args.plot)
    failed = [r for r in results if r.skipped is None and r.steps and r.knee is None]
    return 1 if failed and opts.staircase and compared is None else 0


class _Live:
    """The rich progress bar and per-step lines shared by plain runs and the target suite."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=1.0, detail="")

    def on_progress(self, label: str, done: float, delivered: int) -> None:
        self.progress.update(
            self.task, description=label, completed=done, detail=f"{delivered:,} delivered"
        )

    def on_step(self, name: str, step: StepResult) -> None:
        row = report.live_row(name, step)
        self.progress.console.print(
            f"{name} @ {row[1]}/s: accepted {row[3]}, errors {row[4]}, delivered {row[5]}, "
            f"missing {row[7]}, p99 {row[12]} ms, others {row[18]} cores, pass {row[19]}"
            + (
                f" [yellow]saturated: {', '.join(sat)}[/]"
                if (sat := step.extra.get("saturated"))
                else ""
            )
        )

    def on_result(self, name: str, result: ScenarioResult) -> None:
        if result.skipped:  # facts and knees come in the final report
            self.progress.console.print(f"[yellow]{name}: {result.skipped}[/]")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _run_targets(
    opts: execute.BenchOptions, repeat: int, kafka: str | None, console: Console
) -> dict[str, list[ScenarioResult]]:
    if opts.p99_bound_ms is None:
        opts = dataclasses.replace(opts, p99_bound_ms=100.0)
    with _progress(console) as progress:
        live = _Live(progress)
        return await targets.run_suite(
            opts, repeat, kafka, live.on_result, live.on_progress, live.on_step
        )


async def _run_backends(
    opts: execute.BenchOptions, addresses: dict[str, str | None], console: Console
) -> dict[str, dict[str, ScenarioResult]]:
    with _progress(console) as progress:
        live = _Live(progress)
        return await backends.run_all(
            opts, addresses, live.on_result, live.on_progress, live.on_step
        )


async def _run_all(
    selected: list[scenarios.Scenario],
    opts: execute.BenchOptions,
    repeat: int,
    console: Console,
) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    with _progress(console) as progress:
        live = _Live(progress)
        task = live.task
        for sc in selected:
            for i in range(repeat):
                name = sc.name if repeat == 1 else f"{sc.name}#{i + 1}"
                progress.update(task, description=f"{name}: starting", completed=0, detail="")
                try:
                    result = await execute.run(sc, opts, live.on_progress, live.on_step)
                except Exception as exc:  # one broken scenario must not lose the others' results
                    console.print(f"[red]{name}: {type(exc).__name__}: {exc}[/]")
                    result = ScenarioResult(sc.name, sc.description, skipped=f"failed: {exc}")
                live.on_result(name, result)
                results.append(_renamed(result, name))
    return results


def _renamed(result: ScenarioResult, name: str) -> ScenarioResult:
    return ScenarioResult(name, result.description, result.steps, result.facts, result.skipped)


def medians(results: list[ScenarioResult]) -> dict[str, dict[str, Any]]:
    """Per scenario and offered rate: the median of each headline figure over the repeats."""
    groups: dict[tuple[str, float, str], list[StepResult]] = {}
    for r in results:
        base = r.name.split("#", 1)[0]
        for s in r.steps:
            # The tail scenario has two steps per rate, without and with the tail open.
            mode = f" (tail {s.extra['tail']})" if "tail" in s.extra else ""
            groups.setdefault((base, s.target_rate, mode), []).append(s)
    out: dict[str, dict[str, Any]] = {}
    for (base, rate, mode), steps in groups.items():
        key = f"{rate:g}{mode}"
        out.setdefault(base, {})[key] = {
            "runs": len(steps),
            "accepted_per_s": statistics.median(s.accepted_per_s for s in steps),
            "delivered_per_s": statistics.median(s.delivered_per_s for s in steps),
            "p50_ms": statistics.median(s.latency_ms.get("p50", 0.0) for s in steps),
            "p99_ms": statistics.median(s.latency_ms.get("p99", 0.0) for s in steps),
            "p99.9_ms": statistics.median(s.latency_ms.get("p99.9", 0.0) for s in steps),
            "passed": sum(s.passed for s in steps),
        }
        for role in ("generator", "server", "receiver", "backend"):
            cpu = [u.per_1k_events for s in steps for u in s.usage if u.role == role]
            if cpu:
                out[base][key][f"{role}_cpu_s_per_1k"] = statistics.median(cpu)
    return out


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: `python -m kbroker.cmd_bench ...` (the CLI's path is `kbroker bench`)."""
    parser = argparse.ArgumentParser(prog="kbroker")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
