"""Log lines an operator can search and a failing subscriber cannot flood.

Three things every process shares:

- `configure_logging(format, level)`: one stderr handler on the root logger, rendering each
  record as text (`time LEVEL logger: message key=value ...`) or as one JSON object per line.
  Either way the record's `extra` key/values (namespace, trigger, event_id, ...) are part of the
  line, so a retry can be found by trigger without parsing the message.
- `RateLimiter`: a token bucket per key (e.g. a trigger and the kind of line): a burst, then a
  few lines per interval. A subscriber that fails every event would otherwise write a line per
  attempt, thousands a second, drowning every other line and the disk. `emit()` logs through it,
  and the first line let through after some were held back carries `suppressed=N`; `flush()`
  writes one summary line per key still holding a count (at shutdown, or whenever called).
- `log_shutdown()`: the "shutting down" / "stopped" lines every deployable writes.

What this module refuses: reading the environment (core/settings.py does), and any clock but the
one it is given, so the limiter is tested without waiting.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

FORMATS: Final = ("text", "json")
LEVELS: Final = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; whatever else a record carries came from `extra=`. uvicorn
# adds `color_message` (its message with terminal colours) to some lines: not a field either.
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | frozenset(
    {"message", "asctime", "taskName", "color_message"}
)


def log_format(value: str) -> str:
    """A log format name, checked (an argparse `type=`, so a bad KBROKER_LOG_FORMAT default is
    reported like a bad flag instead of failing later)."""
    if value not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The key/values a record was given through `extra=`, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and k[0] != "_"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in fields_of(record).items():
            out.setdefault(k, v)  # an extra named like a base key must not hide it
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(out, default=str).decode()
        except TypeError:  # e.g. an int beyond 64 bits, which orjson refuses
            return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`: the classic line, fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = fields_of(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return f"{head} {pairs}{sep}{tail}"


def _text_value(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\n\t'):
        return json.dumps(s)
    return s


class _OurHandler(logging.StreamHandler[IO[str]]):
    """Marks the handler configure_logging installed, so a second call replaces only it."""


def configure_logging(
    format: str = "text", level: str = "info", stream: IO[str] | None = None
) -> None:
    """Route every logger to one handler on stderr (or `stream`) in the given format."""
    log_format(format)
    handler = _OurHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


# --- rate limiting -------------------------------------------------------------------------------

Key = tuple[tuple[str, str], ...]  # sorted (field, value) pairs, e.g. kind, namespace, trigger


@dataclass(frozen=True, slots=True)
class Admit:
    allowed: bool
    suppressed: int = 0  # lines held back for this key since the last one let through


class _Bucket:
    __slots__ = ("at", "level", "msg", "suppressed", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.suppressed = 0
        self.level = logging.INFO  # of the last line held back, for its summary
        self.msg = ""


class RateLimiter:
    """A token bucket per key: `burst` lines at once, then `per_interval` lines per `interval`
    seconds. Keys are few (triggers times kinds of line), but triggers come and go: past
    `max_keys`, buckets that are full again and owe no summary are forgotten."""

    def __init__(
        self,
        burst: int = 10,
        per_interval: int = 6,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if burst < 1 or per_interval < 0 or interval <= 0:
            raise ValueError("burst must be >= 1, per_interval >= 0, interval > 0")
        self.burst = burst
        self.rate = per_interval / interval  # tokens per second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Key, _Bucket] = {}

    def admit(self, key: Key, level: int = logging.INFO, msg: str = "") -> Admit:
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_idle(now)
            b = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            suppressed, b.suppressed = b.suppressed, 0
            return Admit(True, suppressed)
        b.suppressed += 1
        b.level, b.msg = level, msg
        return Admit(False)

    def take_suppressed(self) -> list[tuple[Key, int, int, str]]:
        """(key, count, level, message) of every key holding back lines; the counts reset."""
        out = []
        for key, b in self._buckets.items():
            if b.suppressed:
                out.append((key, b.suppressed, b.level, b.msg))
                b.suppressed = 0
        return out

    def _forget_idle(self, now: float) -> None:
        for key, b in list(self._buckets.items()):
            if not b.suppressed and b.tokens + (now - b.at) * self.rate >= self.burst:
                del self._buckets[key]


def emit(
    logger: logging.Logger,
    limiter: RateLimiter,
    level: int,
    key: Key,
    msg: str,
    fields: Mapping[str, object],
) -> bool:
    """Log `msg` with `fields` unless `key` is over its rate; True when the line was written.
    The line carries `suppressed=N` when N lines of this key were held back before it."""
    if not logger.isEnabledFor(level):
        return False
    admit = limiter.admit(key, level, msg)
    if not admit.allowed:
        return False
    # A field named like a LogRecord attribute ("message", "name", ...) makes logging raise;
    # a log line must never fail a delivery, so such a field is renamed instead.
    extra = {(f"{k}_" if k in _RECORD_ATTRS else k): v for k, v in fields.items()}
    if admit.suppressed:
        extra["suppressed"] = admit.suppressed
    logger.log(level, msg, extra=extra)
    return True


def flush(logger: logging.Logger, limiter: RateLimiter) -> int:
    """One summary line per key that held lines back since its last line; how many written."""
    pending = limiter.take_suppressed()
    for key, count, level, msg in pending:
        logger.log(
            level,
            "log lines suppressed",
            extra={**dict(key), "suppressed": count, "suppressed_msg": msg},
        )
    return len(pending)


def key(**parts: str) -> Key:
    """A limiter key from named parts, independent of their order."""
    return tuple(sorted(parts.items()))


# --- shutdown ------------------------------------------------------------------------------------


def log_shutdown(logger: logging.Logger, stage: str, component: str, **fields: object) -> None:
    """The two shutdown lines of a process: `stage` "stopping" ("shutting down", before anything
    closes) and "stopped" (the last line, once everything closed)."""
    if stage not in ("stopping", "stopped"):
        raise ValueError(f"stage must be 'stopping' or 'stopped', not {stage!r}")
    msg = "shutting down" if stage == "stopping" else "stopped"
    logger.info(msg, extra={"component": component, **fields})
