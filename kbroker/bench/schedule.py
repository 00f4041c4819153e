"""The open-loop schedule: when each request *should* be sent, independent of the server.

Why this is a module of its own: coordinated omission. A closed-loop generator waits for a reply
before sending the next request, so a server that stalls for a second is asked for fewer requests
during that second and its stall vanishes from the percentiles. Here request `i` has an intended
send time fixed before the run starts (`start + i * interval`); latency is measured from that
intended time, so time spent waiting for a free connection or a slow reply counts against the
server, as it would for a real producer emitting at a fixed rate. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Schedule:
    """`count` requests at `rate` requests/s starting at `start` (seconds, any monotonic clock)."""

    start: float
    rate: float
    count: int
    offset: float = 0.0  # phase shift so that several generators interleave instead of colliding

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.count < 0:
            raise ValueError(f"count must not be negative, got {self.count}")

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def intended(self, index: int) -> float:
        """The intended send time of request `index` (0-based)."""
        return self.start + self.offset + index * self.interval

    @property
    def end(self) -> float:
        """When the last request is due."""
        return self.intended(self.count - 1) if self.count else self.start


def split_rate(rate: float, parts: int) -> list[float]:
    """Share an event rate between `parts` generator processes."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    return [rate / parts] * parts


def split_range(lo: int, count: int, parts: int) -> list[tuple[int, int]]:
    """Cut the sequence numbers [lo, lo+count) into `parts` contiguous (lo, count) slices."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    base, extra = divmod(count, parts)
    out: list[tuple[int, int]] = []
    cur = lo
    for p in range(parts):
        n = base + (1 if p < extra else 0)
        out.append((cur, n))
        cur += n
    return out
