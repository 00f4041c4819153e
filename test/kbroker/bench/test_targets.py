"""The target table's verdicts from synthetic results: medians, baselines, bounds, gaps."""

from __future__ import annotations

from kbroker.bench import targets
from kbroker.bench.results import ProcessUsage, ScenarioResult, StepResult


def _step(rate: float, accepted_per_s: float, p99: float = 5.0, missing: int = 0) -> StepResult:
    return StepResult(
        target_rate=rate,
        duration=1.0,
        sent=int(accepted_per_s),
        accepted=int(accepted_per_s),
        errors=0,
        statuses={"202": int(accepted_per_s)},
        ingress_latency_ms={"p99": p99},
        missing=missing,
        send_seconds=1.0,
        p99_bound_ms=100.0,
        usage=(ProcessUsage("server", 1.0, 0.1, 0.5, 1, 1),),
    )


def _ingress(knee: float) -> ScenarioResult:
    # The step above the knee fails on p99, so the knee is the step at `knee`.
    return ScenarioResult("ingress", "", (_step(knee, knee), _step(knee * 2, knee, p99=500.0)))


def test_medians_and_baselines_decide_met_and_gap() -> None:
    results = {
        "ceiling": [_ingress(10_000), _ingress(12_000), _ingress(11_000)],
        "ingress": [_ingress(7_000), _ingress(9_000), _ingress(6_000)],
    }
    verdicts = {(v.row, v.check): v for v in targets.evaluate(results)}
    ceiling = verdicts[("ceiling", "ceiling")]
    assert ceiling.measured == 11_000
    assert ceiling.bound is None
    absolute = verdicts[("ingress", "ingress")]
    assert absolute.measured == 7_000
    assert not absolute.met
    assert absolute.gap == "-1,000 ev/s (-12%)"
    relative = verdicts[("ingress", "vs ceiling")]
    assert relative.bound is not None
    assert abs(relative.bound - 0.7 * 11_000) < 1e-9
    assert not relative.met


def test_upper_bounds_and_missing_runs() -> None:
    lossless = ScenarioResult("failing-10", "", (_step(1000, 1000, missing=0),))
    idle = ScenarioResult("triggers-1000", "", facts={"rss_kb_per_trigger": 120.0})
    verdicts = {(v.row, v.check): v for v in targets.evaluate(
        {"failing": [lossless], "triggers": [idle]}
    )}  # fmt: skip
    assert verdicts[("failing", "events lost")].met
    rss = verdicts[("triggers", "RSS per trigger")]
    assert not rss.met
    assert rss.gap == "+20.00 KB (+20%)"
    ready = verdicts[("triggers", "Ready")]  # the run did not report a Ready time
    assert ready.measured is None
    assert ready.gap == "not measured"
    assert not ready.met


def test_a_run_with_no_passing_step_measures_zero_not_nothing() -> None:
    failed = ScenarioResult("e2e", "", (_step(500, 500, p99=900.0),))
    verdicts = {(v.row, v.check): v for v in targets.evaluate({"e2e": [failed]})}
    delivered = verdicts[("e2e", "delivered")]
    assert delivered.measured == 0.0
    assert not delivered.met
    assert delivered.gap == "-3,000 ev/s (-100%)"
    p99 = verdicts[("e2e", "p99 at knee")]
    assert p99.measured == 900.0  # the lowest step's p99, not "nothing"
    assert not p99.met
