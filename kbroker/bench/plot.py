"""The staircase as a PNG: offered vs achieved rate, and p99 latency, per scenario.

Why a picture: the knee (where achieved stops following offered and p99 turns upward) is seen
at a glance and is hard to see in a table. Repeats of one scenario (`name#2`) share a colour
and a legend entry. matplotlib with the Agg backend, imported lazily so the rest of
`kbroker bench` works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def staircase(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    colours: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rates = [s["target_rate"] for sc in doc["scenarios"] for s in sc["steps"]]
    for sc in doc["scenarios"]:
        steps = sc["steps"]
        if not steps:
            continue
        base = sc["name"].split("#", 1)[0]
        first = base not in colours
        colour = colours.setdefault(base, cycle[len(colours) % len(cycle)])
        label = base if first else None
        offered = [s["target_rate"] for s in steps]
        has_delivery = any(s["expected"] > 0 for s in steps)
        achieved = [s["delivered_per_s" if has_delivery else "accepted_per_s"] for s in steps]
        key = "e2e_latency_ms" if has_delivery else "ingress_latency_ms"
        p99 = [max(s[key].get("p99", 0.0), 0.01) for s in steps]
        top.plot(offered, achieved, marker="o", color=colour, label=label, alpha=0.8)
        bottom.plot(offered, p99, marker="o", color=colour, label=label, alpha=0.8)
        if sc["knee_rate"] is not None:
            top.axvline(sc["knee_rate"], color=colour, linestyle=":", alpha=0.5)
    if rates:
        lo, hi = min(rates), max(rates)
        top.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=0.8, label="offered")
    for bound in {s.get("p99_bound_ms") for sc in doc["scenarios"] for s in sc["steps"]}:
        if bound:
            bottom.axhline(bound, color="red", linestyle="--", linewidth=0.8)
    top.set_ylabel("achieved events/s\n(delivered, or accepted)")
    top.set_xscale("log")
    top.set_yscale("log")
    top.grid(alpha=0.3, which="both")
    top.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms\n(e2e, or to 202)")
    bottom.set_xlabel("offered events/s")
    bottom.grid(alpha=0.3, which="both")
    m = doc["machine"]
    fig.suptitle(
        f"{doc['command']}\n{m['cores']} cores, {m['cpu_model']}, load {m.get('load_average')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
