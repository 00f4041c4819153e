"""Per-broker ingress quotas: token buckets on events/s and body bytes/s, answered with 429.

One broker flooding the shared ingress must not take the others down with it; Knative has no
quota at all, Kafka throttles clients by byte rate. Here a Broker's annotations
(controller/quotas.py) put a `contract.Quota` on its entry, and a request that would overdraw
either bucket is refused with 429 and a `Retry-After` saying when it would fit, as the CloudEvents
webhook spec asks. A refused request takes nothing from either bucket.

A request larger than the burst (a batch of more events, a body of more bytes) is admitted when
the bucket is full and leaves it in debt, so a quota never makes an otherwise valid request
impossible; the debt delays the requests after it instead.

What it refuses: any cost for brokers without a quota (routes.py looks at `broker.quota` and
calls nothing when it is None), sharing buckets between processes (each ingress process enforces
the quota on its own, so N processes admit up to N times the rate), and queueing (a client that
gets 429 retries after Retry-After; nothing waits here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from kbroker.core import contract

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def wait(self, n: float, now: float) -> float:
        """Seconds until `n` tokens may be taken (0.0: now). Refills, takes nothing."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        need = min(n, self.burst)  # more than the burst: admitted from a full bucket
        if self.tokens >= need:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, n: float) -> None:
        self.tokens -= n


class BrokerLimiter:
    """The buckets of one broker's quota."""

    def __init__(self, quota: contract.Quota, now: float) -> None:
        self.quota = quota
        self.events: TokenBucket | None = None
        self.bytes: TokenBucket | None = None
        if quota.events_per_second:
            rate = quota.events_per_second
            burst = quota.event_burst or max(1.0, rate)
            self.events = TokenBucket(rate, burst, now)
        if quota.bytes_per_second:
            rate = quota.bytes_per_second
            self.bytes = TokenBucket(rate, quota.byte_burst or rate, now)

    def admit(self, events: int, size: int, now: float) -> float:
        """0.0 and the tokens taken, or the seconds to wait and nothing taken."""
        wait = 0.0
        if self.events is not None:
            wait = self.events.wait(events, now)
        if self.bytes is not None:
            wait = max(wait, self.bytes.wait(size, now))
        if wait > 0.0:
            return wait
        if self.events is not None:
            self.events.take(events)
        if self.bytes is not None:
            self.bytes.take(size)
        return 0.0


class Quotas:
    """Every quota'd broker's limiter in this process, rebuilt when its quota changes."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._limiters: dict[str, BrokerLimiter] = {}

    def admit(self, broker: contract.Broker, events: int, size: int) -> float:
        """0.0 when `broker` may take `events` events of `size` body bytes now; else the
        seconds after which it could. `broker.quota` must be set."""
        quota = broker.quota
        assert quota is not None
        now = self.clock()
        limiter = self._limiters.get(broker.key)
        # Identity first: the same contract object serves every request until the next one.
        if limiter is None or (limiter.quota is not quota and limiter.quota != quota):
            if len(self._limiters) > 10_000:  # brokers come and go: never grow without bound
                self._limiters.clear()
            limiter = self._limiters[broker.key] = BrokerLimiter(quota, now)
        return limiter.admit(events, size, now)


def retry_after(wait: float) -> bytes:
    """Retry-After is whole seconds: round up, so a client that obeys it is admitted."""
    return str(max(1, math.ceil(wait))).encode()
