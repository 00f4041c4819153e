"""Retry policy: which outcomes retry, how long to wait, when to give up.

Pure functions over `contract.DeliverySpec`, so schedules are tested without waiting. The numbers
follow Knative core (the MT broker's retry rules), so a Trigger retries as it would on Knative:

- total attempts = `retry + 1`;
- retried: no response (network error, timeout), 5xx, 404, 408, 409, 429; everything else is final;
- waits use the 0-based index `n` of the attempt that just failed: linear `n*d` (the first retry is
  immediate), exponential `d*2**n`; no policy or no delay means no wait;
- `Retry-After` on 429/503 is honoured only when `retryAfterMax` is set (Knative's opt-in), as
  `max(backoff, min(retry_after, retryAfterMax))`.

Unlike Knative, one wait is capped (`max_backoff`, default one hour), the fix #9278 asks for.

The `Outcome` and `Result` of a delivery live here too: the dispatcher returns them, and the
metrics (in core, which must not import the dispatcher) count them.
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from kbroker.core.contract import BackoffPolicy, DeliverySpec

RETRYABLE_STATUSES = frozenset({404, 408, 409, 429})


def is_success(status: int) -> bool:
    return 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """Whether a failed attempt may be retried (None means no response at all)."""
    return status is None or status >= 500 or status in RETRYABLE_STATUSES


def backoff(spec: DeliverySpec, failed_attempt: int, max_backoff: float = 3600.0) -> float:
    """Seconds to wait after the 0-based attempt `failed_attempt` failed."""
    delay = spec.backoff_delay
    if not delay or spec.backoff_policy is None:
        return 0.0
    if spec.backoff_policy is BackoffPolicy.LINEAR:
        wait = delay * failed_attempt
    else:
        # 2**n grows past any cap quickly; stop multiplying once it is irrelevant.
        wait = delay * (2 ** min(failed_attempt, 62))
    return min(wait, max_backoff)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from `now` named by a Retry-After header (delta-seconds or an HTTP-date)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def next_wait(
    spec: DeliverySpec,
    failed_attempt: int,
    status: int | None,
    headers: Mapping[str, str],
    now: float,
    max_backoff: float = 3600.0,
) -> float:
    """The wait before the next attempt, Retry-After included when the spec opts in."""
    wait = backoff(spec, failed_attempt, max_backoff)
    if spec.retry_after_max and status in (429, 503):
        asked = retry_after(headers, now)
        if asked is not None:
            wait = max(wait, min(asked, spec.retry_after_max))
    return min(wait, max_backoff)


def attempts(spec: DeliverySpec) -> int:
    """Total attempts the spec allows (the first one plus `retry`)."""
    return max(0, spec.retry) + 1


class Outcome(enum.Enum):
    """How one event's delivery to one trigger ended (the dispatcher's answer, a metrics label)."""

    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"  # failed, no dead-letter sink: the spec says drop


@dataclass(frozen=True, slots=True)
class Result:
    """One event's delivery to one trigger, once finished."""

    outcome: Outcome
    attempts: int
    status: int | None  # the last subscriber status (None: no response)
