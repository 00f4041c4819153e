"""Retry decisions and backoff schedules (Knative core's schedule), with no real waiting."""

from __future__ import annotations

import email.utils

import pytest
from kbroker.core import delivery
from kbroker.core.contract import BackoffPolicy, DeliverySpec


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (None, True),
        (500, True),
        (503, True),
        (404, True),
        (408, True),
        (409, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (422, False),
        (302, False),
        (200, False),
    ],
)
def test_retryable(status: int | None, retry: bool) -> None:
    assert delivery.is_retryable(status) is retry


def test_linear_schedule_first_retry_immediate() -> None:
    spec = DeliverySpec(retry=4, backoff_policy=BackoffPolicy.LINEAR, backoff_delay=0.5)
    assert [delivery.backoff(spec, n) for n in range(4)] == [0.0, 0.5, 1.0, 1.5]


def test_exponential_schedule() -> None:
    spec = DeliverySpec(retry=4, backoff_policy=BackoffPolicy.EXPONENTIAL, backoff_delay=0.2)
    assert [delivery.backoff(spec, n) for n in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])


def test_no_policy_or_delay_means_no_wait() -> None:
    assert delivery.backoff(DeliverySpec(retry=3, backoff_delay=1.0), 2) == 0.0
    assert delivery.backoff(DeliverySpec(retry=3, backoff_policy=BackoffPolicy.LINEAR), 2) == 0.0


def test_backoff_is_capped() -> None:
    spec = DeliverySpec(retry=100, backoff_policy=BackoffPolicy.EXPONENTIAL, backoff_delay=1.0)
    assert delivery.backoff(spec, 90, max_backoff=60.0) == 60.0


def test_attempts() -> None:
    assert delivery.attempts(DeliverySpec()) == 1
    assert delivery.attempts(DeliverySpec(retry=3)) == 4


def test_retry_after_only_when_opted_in() -> None:
    spec = DeliverySpec(retry=2, backoff_policy=BackoffPolicy.LINEAR, backoff_delay=0.1)
    assert delivery.next_wait(spec, 0, 503, {"retry-after": "7"}, 0.0) == 0.0
    opted = DeliverySpec(
        retry=2, backoff_policy=BackoffPolicy.LINEAR, backoff_delay=0.1, retry_after_max=5.0
    )
    assert delivery.next_wait(opted, 0, 503, {"retry-after": "7"}, 0.0) == 5.0
    assert delivery.next_wait(opted, 0, 429, {"retry-after": "2"}, 0.0) == 2.0
    assert delivery.next_wait(opted, 0, 500, {"retry-after": "2"}, 0.0) == 0.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert delivery.retry_after({"retry-after": header}, now) == pytest.approx(30.0, abs=1.0)
    assert delivery.retry_after({"retry-after": "garbage"}, now) is None
