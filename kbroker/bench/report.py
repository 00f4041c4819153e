"""The three outputs of a run: a rich table on the terminal, a JSON file, and (plot.py) a PNG.

Why JSON is the source of truth: docs/benchmarks.md quotes figures from these files, and the
table and plot can be rebuilt from them (`kbroker bench --report FILE`). Every file carries the
machine facts and library versions next to the numbers, and the exact command line.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from kbroker.bench.results import ScenarioResult, StepResult


def document(
    results: Sequence[ScenarioResult], machine: dict[str, Any], argv: Sequence[str]
) -> dict[str, Any]:
    return {
        "kind": "kbroker-bench",
        "version": 1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["kbroker", "bench", *argv]),
        "machine": machine,
        "scenarios": [r.to_json() for r in results],
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _cpu(usage: Sequence[dict[str, Any]], role: str) -> str:
    for u in usage:
        if u["role"] == role:
            return f"{u['cpu_s_per_1k_events']:.3f}/{u['cores']:.2f}"
    return "-"


def _rss_mb(usage: Sequence[dict[str, Any]], role: str) -> str:
    for u in usage:
        if u["role"] == role:
            return f"{u['peak_rss_kb'] / 1024:.0f}"
    return "-"


def step_row(name: str, step: dict[str, Any]) -> list[str]:
    """One table row from a step's JSON (so a saved file renders like a live run)."""
    has_delivery = step["expected"] > 0 or step["delivered"] > 0
    lat = step["e2e_latency_ms"] if has_delivery else step["ingress_latency_ms"]
    usage = step["usage"]
    if "tail" in step.get("extra", {}):
        name = f"{name} ({step['extra']['tail']})"  # the tail scenario's two steps per rate
    return [
        name,
        f"{step['target_rate']:,.0f}",
        f"{step['sent']:,}",
        f"{step['accepted']:,}",
        f"{step['errors']:,}",
        f"{step['delivered']:,}" if has_delivery else "-",
        f"{step['duplicates']:,}" if has_delivery else "-",
        f"{step['missing']:,}" if has_delivery else "-",
        f"{step['accepted_per_s']:,.0f}",
        f"{step['delivered_per_s']:,.0f}" if has_delivery else "-",
        ("e2e " if has_delivery else "202 ") + _ms(lat.get("p50")),
        _ms(lat.get("p90")),
        _ms(lat.get("p99")),
        _ms(lat.get("p99.9")),
        _cpu(usage, "generator"),
        _cpu(usage, "server"),
        _cpu(usage, "receiver"),
        _rss_mb(usage, "server"),
        f"{step.get('extra', {}).get('other_busy_cores', '-')}",
        "[green]yes[/]" if step["passed"] else "[red]no[/]",
        _cpu(usage, "backend"),  # the messaging server's process (Kafka, nats-server, RabbitMQ)
    ]


COLUMNS = (
    "scenario", "rate", "sent", "accepted", "errors", "delivered", "dup", "missing",
    "acc/s", "deliv/s", "p50 ms", "p90", "p99", "p99.9",
    "gen cpu", "server cpu", "recv cpu", "server MB", "others", "pass", "backend cpu",
)  # fmt: skip


def new_table() -> Table:
    table = Table(
        title="kbroker bench (cpu = CPU-seconds per 1,000 events / cores busy; "
        "others = cores other processes on this machine used meanwhile)",
        show_lines=False,
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    return table


def render(doc: dict[str, Any], console: Console) -> None:
    """The whole run: step rows, knees, non-load facts, and the machine it ran on."""
    table = new_table()
    for sc in doc["scenarios"]:
        for step in sc["steps"]:
            table.add_row(*step_row(sc["name"], step))
    if table.row_count:
        console.print(table)
    for sc in doc["scenarios"]:
        if sc["skipped"]:
            console.print(f"[yellow]{sc['name']}[/]: skipped ({sc['skipped']})")
        if sc["knee_rate"] is not None and len(sc["steps"]) > 1:
            console.print(f"[bold]{sc['name']}[/]: knee at {sc['knee_rate']:,.0f} events/s")
        cases = sc["facts"].get("cases")
        if isinstance(cases, list) and cases and isinstance(cases[0], dict):
            console.print(cases_table(sc["name"], cases))
        elif sc["facts"]:
            console.print(f"[bold]{sc['name']}[/]: {orjson.dumps(sc['facts']).decode()}")
    if doc.get("medians"):
        console.print(medians_table(doc["medians"]))
    if doc.get("targets"):
        console.print(targets_table(doc["targets"]))
    if doc.get("backends"):
        console.print(backends_table(doc["backends"]))
    m = doc["machine"]
    console.print(
        f"[dim]{m['cores']} cores, {m['cpu_model']}, load {m.get('load_average')}, "
        f"python {m['versions']['python']}[/]"
    )


def medians_table(medians: dict[str, dict[str, dict[str, Any]]]) -> Table:
    """--repeat N: the median of each headline figure per scenario and offered rate."""
    table = Table(title="medians over the repeats")
    cols = ("scenario", "rate", "runs", "passed", "acc/s", "deliv/s", "p50 ms", "p99 ms",
            "p99.9 ms", "server cpu/1k")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for name, rates in medians.items():
        for rate, m in rates.items():
            cpu = m.get("server_cpu_s_per_1k")
            table.add_row(
                name,
                rate,
                str(m["runs"]),
                str(m["passed"]),
                f"{m['accepted_per_s']:,.0f}",
                f"{m['delivered_per_s']:,.0f}",
                _ms(m["p50_ms"]),
                _ms(m["p99_ms"]),
                _ms(m["p99.9_ms"]),
                "-" if cpu is None else f"{cpu:.3f}",
            )
    return table


def cases_table(name: str, cases: Sequence[dict[str, Any]]) -> Table:
    """Measurements that are a list of cases (cesql): one row per case, one column per key."""
    table = Table(title=name)
    keys = list(cases[0])
    for key in keys:
        table.add_column(key, justify="right" if isinstance(cases[0][key], int | float) else "left")
    for case in cases:
        table.add_row(
            *(
                f"{v:,}" if isinstance(v, int | float) else str(v)
                for v in (case.get(k) for k in keys)
            )
        )
    return table


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} {unit}" if abs(value) >= 100 else f"{value:,.2f} {unit}"


def targets_table(verdicts: Sequence[dict[str, Any]]) -> Table:
    """The target table: median measured, bound, met, and the gap when not met."""
    table = Table(title="targets (medians over the repeats)")
    for col in ("row", "check", "measured", "bound", "met", "gap"):
        table.add_column(col, justify="left" if col in ("row", "check", "gap") else "right")
    for v in verdicts:
        if v["bound"] is None and v["measured"] is not None:
            met = "[dim]info[/]" if v.get("info") else "[dim]baseline[/]"
        elif v["measured"] is None:
            met = "[yellow]not measured[/]"
        else:
            met = "[green]met[/]" if v["met"] else "[red]not met[/]"
        table.add_row(
            v["row"],
            v["check"],
            _figure(v["measured"], v["unit"]),
            _figure(v["bound"], v["unit"]),
            met,
            v["gap"] if v["bound"] is not None else "",
        )
    return table


def live_row(name: str, step: StepResult) -> list[str]:
    return step_row(name, step.to_json())


def backends_table(rows: Sequence[dict[str, Any]]) -> Table:
    """`kbroker bench backends`: one row per backend, knees and CPU per 1,000 events (kbroker's
    process / the messaging server's process), and the per-backend targets."""
    table = Table(title="backends side by side (one run)")
    cols = ("backend", "ingress all knee (best)", "p99 ms", "cpu/1k kb/srv",
            "ingress none knee (best)", "p99 ms", "cpu/1k kb/srv", "e2e knee (best)", "p99 ms",
            "cpu/1k kb/srv", "ingress >= 0.8x Kafka", "e2e >= 3,000")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "backend" else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,.0f}"

    def cpu(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in rows:
        cells = [r["backend"]]
        for key in ("ingress-all", "ingress-none", "e2e"):
            cells += [
                f"{num(r.get(f'{key}_knee'))} ({num(r.get(f'{key}_best'))})",
                _ms(r.get(f"{key}_p99_ms")),
                f"{cpu(r.get(f'{key}_kbroker_cpu_s_per_1k'))}/"
                f"{cpu(r.get(f'{key}_server_cpu_s_per_1k'))}",
            ]
        cells += [str(r.get("target_ingress")), str(r.get("target_e2e"))]
        table.add_row(*cells)
    return table
