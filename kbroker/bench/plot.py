"""The staircase as a PNG: offered vs achieved rate, and p99 latency, per scenario.

Why a picture: the knee (where achieved stops following offered and p99 turns upward) is seen
at a glance and is hard to see in a table. matplotlib with the Agg backend, imported lazily so
the rest of `kbroker bench` works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def staircase(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for sc in doc["scenarios"]:
        steps = sc["steps"]
        if not steps:
            continue
        offered = [s["target_rate"] for s in steps]
        has_delivery = any(s["expected"] > 0 for s in steps)
        achieved = [s["delivered_per_s" if has_delivery else "accepted_per_s"] for s in steps]
        key = "e2e_latency_ms" if has_delivery else "ingress_latency_ms"
        p99 = [max(s[key].get("p99", 0.0), 0.01) for s in steps]
        (line,) = top.plot(offered, achieved, marker="o", label=sc["name"])
        bottom.plot(offered, p99, marker="o", color=line.get_color(), label=sc["name"])
        if sc["knee_rate"] is not None:
            top.axvline(sc["knee_rate"], color=line.get_color(), linestyle=":", alpha=0.6)
    lim = max((s["target_rate"] for sc in doc["scenarios"] for s in sc["steps"]), default=1)
    top.plot([0, lim], [0, lim], color="grey", linestyle="--", linewidth=0.8, label="offered")
    top.set_ylabel("achieved events/s (delivered, or accepted)")
    top.legend(fontsize="small")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms (e2e, or to 202)")
    bottom.set_xlabel("offered events/s")
    bottom.grid(alpha=0.3, which="both")
    m = doc["machine"]
    fig.suptitle(
        f"kbroker bench: {doc['command']}\n{m['cores']} cores, {m['cpu_model']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
