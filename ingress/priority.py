"""Delivery before ingress: hold new events back while this process's own delivery falls behind
for want of CPU.

Why: in `kbroker run` the ingress and the dispatcher share one event loop (and one GIL). Offered
more than it can deliver, the process spends its CPU taking in events it cannot deliver, so
delivery slows below the rate it sustains when it is not overloaded. A producer can wait or
retry; an event already accepted can only wait longer. So once the broker's delivery is behind by
more than `engage` seconds (the age of the newest event its dispatchers just read) *and* the
event loop is starved (a periodic timer fires late on average), new requests for that broker wait
(up to `max_wait`, costing no CPU while they wait: a keep-alive client sends nothing more on that
connection) and then get 503 with Retry-After. Delivery is judged per broker, so one broker's
backlog never slows producers of another.

Opt-in (`KBROKER_DELIVERY_PRIORITY=on` for `kbroker run`): on a machine shared with other busy
processes it delivered less per second than no gate at all (docs/benchmarks.md, Overload), because
a broker whose requests wait gives its CPU share away; it is kept for measuring on a quiet one.

What it refuses: to hold ingress back for a slow or failing subscriber. Then the loop is idle
(deliveries wait on the network or on backoff), so the starvation test fails and the broker keeps
accepting events, as Knative promises: its storage is the buffer. And to engage on a single late
timer: lateness is averaged, and engaging needs both signals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOG_EVERY = 30.0  # seconds between a broker's "delivery is behind" lines
Behind = Callable[[], Mapping[str, float]]  # broker key -> seconds its delivery is behind


@dataclass(frozen=True, slots=True)
class PrioritySettings:
    engage: float = 0.5  # seconds behind before ingress waits
    release: float = 0.2  # ... and until it is back under this
    starved_ms: float = 2.0  # mean timer lateness (ms) that counts as a starved event loop
    starved_hold: float = 2.0  # seconds a starved reading keeps counting
    max_wait: float = 1.0  # seconds a request waits before 503
    tick: float = 0.05  # seconds between readings


class DeliveryPriority:
    def __init__(self, behind: Behind, settings: PrioritySettings | None = None) -> None:
        self.behind = behind
        self.settings = settings or PrioritySettings()
        self.gates: dict[str, asyncio.Event] = {}  # engaged brokers; set() releases waiters
        self.lateness_ms = 0.0  # moving mean of the timer's lateness
        self.waited = 0  # requests that waited
        self.shed = 0  # requests answered 503 after waiting
        self._starved_until = 0.0
        self._logged: dict[str, float] = {}  # broker -> loop time of its last log line

    async def admit(self, gate: asyncio.Event) -> bool:
        """Wait while the broker's gate is engaged; False when `max_wait` ran out (answer 503)."""
        self.waited += 1
        try:
            await asyncio.wait_for(gate.wait(), self.settings.max_wait)
        except TimeoutError:
            self.shed += 1
            return False
        return True

    def observe(self, now: float, lateness: float) -> None:
        """One reading: the timer's lateness (seconds) at loop time `now`."""
        s = self.settings
        self.lateness_ms = 0.8 * self.lateness_ms + 0.2 * lateness * 1000.0
        if self.lateness_ms > s.starved_ms:
            self._starved_until = now + s.starved_hold
        starved = now < self._starved_until
        behind = self.behind()
        for key in list(self.gates):
            if not starved or behind.get(key, 0.0) < s.release:
                self.gates.pop(key).set()
        if starved:
            for key, seconds in behind.items():
                if seconds > s.engage and key not in self.gates:
                    self.gates[key] = asyncio.Event()
                    if now - self._logged.get(key, -LOG_EVERY) < LOG_EVERY:
                        continue
                    self._logged[key] = now
                    log.warning(
                        "broker %s: delivery is %.1fs behind and the process is short of CPU: "
                        "new events wait (then 503) until delivery catches up",
                        key,
                        seconds,
                    )

    async def run(self) -> None:
        """Take a reading every `tick` seconds until cancelled; waiters are released on exit."""
        loop = asyncio.get_running_loop()
        tick = self.settings.tick
        try:
            while True:
                due = loop.time() + tick
                await asyncio.sleep(tick)
                now = loop.time()
                self.observe(now, max(0.0, now - due))
        finally:
            self._release_all()

    def _release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.gates.clear()
