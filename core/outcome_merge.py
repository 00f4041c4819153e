"""Delivery records as JSON, and merged across filter processes.

Why it exists: in cluster mode every filter process keeps its own records (a Trigger's events are
spread over the processes of the filter deployment), and the console shows one Trigger. Each
process serves its records as JSON (`GET /records`); the console decodes and merges them: counts
add, latency histograms add (so percentiles stay true to the bin), recent outcomes interleave by
time and keep the newest, the last failure is the newest one, retries waiting add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kbroker.core.outcome_ring import RECENT, percentile
from kbroker.core.outcomes import Attempt, Counters, Outcome, TriggerRecords, Verdict


def merge(parts: Iterable[TriggerRecords], size: int = RECENT) -> TriggerRecords | None:
    """One Trigger's records from several processes as one; None when there are none."""
    items = list(parts)
    if not items:
        return None
    first = items[0]
    names = {name for r in items for name in r.windows}
    windows = {name: _add([r.windows[name] for r in items if name in r.windows]) for name in names}
    recent = sorted((o for r in items for o in r.recent), key=lambda o: o.finished)[-size:]
    failures = [r.last_failure for r in items if r.last_failure is not None]
    retries = [r.next_retry for r in items if r.next_retry is not None]
    return TriggerRecords(
        namespace=first.namespace,
        trigger=first.trigger,
        windows=windows,
        recent=tuple(recent),
        last_failure=max(failures, key=lambda o: o.finished) if failures else None,
        in_retry=sum(r.in_retry for r in items),
        next_retry=min(retries) if retries else None,
    )


def merge_all(
    processes: Iterable[Mapping[tuple[str, str], TriggerRecords]],
) -> dict[tuple[str, str], TriggerRecords]:
    grouped: dict[tuple[str, str], list[TriggerRecords]] = {}
    for records in processes:
        for key, r in records.items():
            grouped.setdefault(key, []).append(r)
    out = {}
    for key, parts in grouped.items():
        merged = merge(parts)
        if merged is not None:
            out[key] = merged
    return out


def _add(counters: list[Counters]) -> Counters:
    bins: dict[int, int] = {}
    responses: dict[str, int] = {}
    for c in counters:
        for i, n in c.latency_bins.items():
            bins[i] = bins.get(i, 0) + n
        for k, n in c.responses.items():
            responses[k] = responses.get(k, 0) + n
    return Counters(
        matched=sum(c.matched for c in counters),
        delivered=sum(c.delivered for c in counters),
        retries=sum(c.retries for c in counters),
        dead_lettered=sum(c.dead_lettered for c in counters),
        dls_failed=sum(c.dls_failed for c in counters),
        dropped=sum(c.dropped for c in counters),
        replies=sum(c.replies for c in counters),
        p50=percentile(bins, 0.50),
        p95=percentile(bins, 0.95),
        responses=responses,
        latency_bins=bins,
    )


# -- JSON ----------------------------------------------------------------------------------------
def attempt_doc(a: Attempt) -> dict[str, Any]:
    return {
        "at": a.at,
        "status": a.status,
        "latency": a.latency,
        "error": a.error,
        "target": a.target,
    }


def outcome_doc(o: Outcome) -> dict[str, Any]:
    return {
        "namespace": o.namespace,
        "trigger": o.trigger,
        "id": o.event_id,
        "type": o.event_type,
        "source": o.event_source,
        "verdict": o.verdict.value,
        "finished": o.finished,
        "attempts": [attempt_doc(a) for a in o.attempts],
        "replied": o.replied,
        "latency": o.latency,
    }


def counters_doc(c: Counters) -> dict[str, Any]:
    return {
        "matched": c.matched,
        "delivered": c.delivered,
        "retries": c.retries,
        "deadLettered": c.dead_lettered,
        "dlsFailed": c.dls_failed,
        "dropped": c.dropped,
        "replies": c.replies,
        "p50": c.p50,
        "p95": c.p95,
        "responses": dict(c.responses),
        "latencyBins": {str(i): n for i, n in c.latency_bins.items()},
    }


def records_doc(r: TriggerRecords) -> dict[str, Any]:
    return {
        "namespace": r.namespace,
        "trigger": r.trigger,
        "windows": {name: counters_doc(c) for name, c in r.windows.items()},
        "recent": [outcome_doc(o) for o in r.recent],
        "lastFailure": None if r.last_failure is None else outcome_doc(r.last_failure),
        "inRetry": r.in_retry,
        "nextRetry": r.next_retry,
    }


def summary_doc(r: TriggerRecords) -> dict[str, Any]:
    """The compact per-Trigger stats for /status: the windows' counts, no outcome lists."""
    out: dict[str, Any] = {}
    for name, c in r.windows.items():
        doc = counters_doc(c)
        del doc["latencyBins"]
        out[name] = doc
    last = r.last_failure
    return {
        "windows": out,
        "inRetry": r.in_retry,
        "nextRetry": r.next_retry,
        "lastFailure": None if last is None else _failure_summary(last),
    }


def _failure_summary(o: Outcome) -> dict[str, Any]:
    tried = [a for a in o.attempts if a.target == "subscriber"]
    final = tried[-1] if tried else None
    return {
        "id": o.event_id,
        "verdict": o.verdict.value,
        "finished": o.finished,
        "attempts": len(tried),
        "status": None if final is None else final.status,
        "error": "" if final is None else final.error,
    }


def attempt_of(d: Mapping[str, Any]) -> Attempt:
    return Attempt(
        at=float(d["at"]),
        status=None if d.get("status") is None else int(d["status"]),
        latency=float(d.get("latency", 0.0)),
        error=str(d.get("error", "")),
        target=str(d.get("target", "subscriber")),
    )


def outcome_of(d: Mapping[str, Any]) -> Outcome:
    return Outcome(
        namespace=str(d["namespace"]),
        trigger=str(d["trigger"]),
        event_id=str(d["id"]),
        event_type=str(d.get("type", "")),
        event_source=str(d.get("source", "")),
        verdict=Verdict(d["verdict"]),
        finished=float(d["finished"]),
        attempts=tuple(attempt_of(a) for a in d.get("attempts", ())),
        replied=bool(d.get("replied", False)),
        latency=float(d.get("latency", 0.0)),
    )


def counters_of(d: Mapping[str, Any]) -> Counters:
    return Counters(
        matched=int(d.get("matched", 0)),
        delivered=int(d.get("delivered", 0)),
        retries=int(d.get("retries", 0)),
        dead_lettered=int(d.get("deadLettered", 0)),
        dls_failed=int(d.get("dlsFailed", 0)),
        dropped=int(d.get("dropped", 0)),
        replies=int(d.get("replies", 0)),
        p50=None if d.get("p50") is None else float(d["p50"]),
        p95=None if d.get("p95") is None else float(d["p95"]),
        responses={str(k): int(v) for k, v in d.get("responses", {}).items()},
        latency_bins={int(k): int(v) for k, v in d.get("latencyBins", {}).items()},
    )


def records_of(d: Mapping[str, Any]) -> TriggerRecords:
    """Decodes `records_doc`; a malformed document raises KeyError, ValueError or TypeError."""
    last = d.get("lastFailure")
    return TriggerRecords(
        namespace=str(d["namespace"]),
        trigger=str(d["trigger"]),
        windows={str(k): counters_of(v) for k, v in d.get("windows", {}).items()},
        recent=tuple(outcome_of(o) for o in d.get("recent", ())),
        last_failure=None if last is None else outcome_of(last),
        in_retry=int(d.get("inRetry", 0)),
        next_retry=None if d.get("nextRetry") is None else float(d["nextRetry"]),
    )
