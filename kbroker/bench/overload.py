"""The overload scenario's verdict: does delivery hold its rate when offered more than it can take?

Why it exists: a broker past its knee should deliver at about its sustainable rate and queue the
rest, not deliver less the more it is offered. A staircase stops at the knee, so it never shows
that; this scenario keeps going to 1.5x and 2x the highest sustainable end-to-end rate, after a
backlog was written and a Trigger was added live (the shape in which delivery once collapsed).

The target: offered 1.5x and 2x the sustainable rate S, delivered/s stays >= 0.95 x S.
A step is sustainable when it lost nothing and delivered >= 0.95 x its offered rate.

What it refuses to do: judge without a sustainable step (the verdict is then "no sustainable
rate", never "met"). Pure functions only; running the steps lives in `kbroker.bench.execute`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kbroker.bench.results import StepResult

FACTORS = (1.5, 2.0)  # overload steps, as multiples of the sustainable rate
HOLD = 0.95  # delivered/s must stay at this fraction of the sustainable rate


def sustainable(step: StepResult) -> bool:
    return step.missing == 0 and step.delivered_per_s >= HOLD * step.target_rate


def verdict(rate: float | None, overload: Sequence[StepResult]) -> dict[str, Any]:
    """The facts a report prints: the sustainable rate, each overload step's ratio, met or not."""
    if rate is None or not overload:
        return {"sustainable_rate": rate, "overload_target": "no sustainable rate"}
    ratios = [round(s.delivered_per_s / rate, 3) for s in overload]
    met = all(r >= HOLD for r in ratios)
    return {
        "sustainable_rate": rate,
        "overload_offered": [s.target_rate for s in overload],
        "overload_delivered_per_s": [round(s.delivered_per_s, 1) for s in overload],
        "overload_ratio": ratios,
        "overload_target": (
            f"{'met' if met else 'not met'}: offered "
            + " and ".join(f"{f:g}x" for f in FACTORS)
            + f" of {rate:g}/s, delivered/s >= {HOLD:g}x {rate:g}/s"
        ),
    }
