"""The overload verdict: sustainable steps, and met / not met against 0.95x the sustainable rate."""

from __future__ import annotations

import pytest

from kbroker.bench import overload
from kbroker.bench.results import StepResult


def _step(rate: float, delivered: int, seconds: float, missing: int = 0) -> StepResult:
    return StepResult(
        target_rate=rate, duration=seconds, sent=delivered + missing,
        accepted=delivered + missing, errors=0, statuses={}, ingress_latency_ms={},
        expected=delivered + missing, delivered=delivered, missing=missing,
        send_seconds=seconds, deliver_seconds=seconds,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("step", "ok"),
    [
        (_step(1000, 10000, 10.0), True),
        (_step(1000, 10000, 10.4), True),  # 962/s: within 0.95
        (_step(1000, 10000, 11.0), False),  # 909/s: fell behind
        (_step(1000, 9999, 10.0, missing=1), False),  # lost one
    ],
)
def test_sustainable(step: StepResult, ok: bool) -> None:
    assert overload.sustainable(step) is ok


@pytest.mark.parametrize(
    ("delivered_per_s", "word"),
    [((4000, 3900), "met"), ((4000, 3700), "not met"), ((3600, 3900), "not met")],
)
def test_verdict(delivered_per_s: tuple[int, int], word: str) -> None:
    pairs = zip((1.5, 2.0), delivered_per_s, strict=True)
    steps = [_step(4000 * f, d * 10, 10.0) for f, d in pairs]
    facts = overload.verdict(4000.0, steps)
    assert facts["overload_target"].split(":")[0] == word
    assert facts["overload_ratio"] == [round(d / 4000, 3) for d in delivered_per_s]


def test_no_sustainable_rate_is_never_met() -> None:
    assert overload.verdict(None, [])["overload_target"] == "no sustainable rate"
