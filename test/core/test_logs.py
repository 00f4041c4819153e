"""core/logs.py: the per-key token bucket (on a fake clock), the JSON and text formats, shutdown."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from kbroker.core import logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


K = logs.key(kind="retry", namespace="ns", trigger="t")


# (burst, per_interval, interval, [(advance seconds, lines tried)], lines allowed per step)
LIMITER_CASES = [
    ("burst then nothing", 3, 1, 60.0, [(0, 10)], [3]),
    ("no refill before a token is whole", 3, 1, 60.0, [(0, 3), (59, 5)], [3, 0]),
    ("one token per interval/per_interval", 3, 6, 60.0, [(0, 3), (10, 5), (10, 5)], [3, 1, 1]),
    ("refill never exceeds the burst", 3, 6, 60.0, [(0, 3), (3600, 10)], [3, 3]),
    ("zero rate: burst only, ever", 2, 0, 60.0, [(0, 2), (10**6, 4)], [2, 0]),
]


@pytest.mark.parametrize(
    "burst,per_interval,interval,steps,allowed",
    [c[1:] for c in LIMITER_CASES],
    ids=[c[0] for c in LIMITER_CASES],
)
def test_token_bucket(
    burst: int,
    per_interval: int,
    interval: float,
    steps: list[tuple[float, int]],
    allowed: list[int],
) -> None:
    clock = Clock()
    limiter = logs.RateLimiter(burst, per_interval, interval, clock)
    got = []
    for advance, tries in steps:
        clock.now += advance
        got.append(sum(limiter.admit(K).allowed for _ in range(tries)))
    assert got == allowed


def test_suppressed_count_rides_on_the_next_allowed_line() -> None:
    clock = Clock()
    limiter = logs.RateLimiter(2, 1, 10.0, clock)
    admits = [limiter.admit(K) for _ in range(7)]
    assert [a.allowed for a in admits] == [True, True, False, False, False, False, False]
    clock.now += 10
    assert limiter.admit(K) == logs.Admit(True, 5)
    clock.now += 10
    assert limiter.admit(K) == logs.Admit(True, 0)  # reported once, then reset


def test_keys_are_independent() -> None:
    limiter = logs.RateLimiter(1, 1, 60.0, Clock())
    other = logs.key(kind="retry", namespace="ns", trigger="u")
    assert limiter.admit(K).allowed
    assert not limiter.admit(K).allowed
    assert limiter.admit(other).allowed
    assert logs.key(trigger="t", namespace="ns", kind="retry") == K  # order does not matter


def test_idle_keys_are_forgotten_past_max_keys_but_not_pending_counts() -> None:
    clock = Clock()
    limiter = logs.RateLimiter(1, 6, 60.0, clock, max_keys=2)
    a, b, c = (logs.key(trigger=n) for n in "abc")
    limiter.admit(a)
    limiter.admit(b)
    limiter.admit(b)  # b now owes a summary
    clock.now += 3600
    limiter.admit(c)  # over max_keys: a (idle, full) goes, b stays
    assert [k for k, *_ in limiter.take_suppressed()] == [b]


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, list[logging.LogRecord]]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.core.logs")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, records
    logger.removeHandler(handler)


def test_emit_and_flush(captured: tuple[logging.Logger, list[logging.LogRecord]]) -> None:
    logger, records = captured
    clock = Clock()
    limiter = logs.RateLimiter(2, 1, 10.0, clock)
    written = [logs.emit(logger, limiter, logging.INFO, K, "retrying", {"n": i}) for i in range(5)]
    assert written == [True, True, False, False, False]
    assert logs.flush(logger, limiter) == 1
    summary = records[-1]
    assert summary.getMessage() == "log lines suppressed"
    assert logs.fields_of(summary) == {
        "kind": "retry",
        "namespace": "ns",
        "trigger": "t",
        "suppressed": 3,
        "suppressed_msg": "retrying",
    }
    assert logs.flush(logger, limiter) == 0  # nothing owed twice
    logs.emit(logger, limiter, logging.INFO, K, "retrying", {"n": 9})  # no token: held back
    clock.now += 10
    logs.emit(logger, limiter, logging.INFO, K, "retrying", {"n": 10})
    assert logs.fields_of(records[-1]) == {"n": 10, "suppressed": 1}
    assert len(records) == 4


def test_emit_renames_fields_that_logging_reserves(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    limiter = logs.RateLimiter(clock=Clock())
    logs.emit(logger, limiter, logging.INFO, K, "m", {"message": "x", "name": "y", "ok": 1})
    assert logs.fields_of(records[0]) == {"message_": "x", "name_": "y", "ok": 1}


def test_emit_below_level_costs_no_token(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    logger.setLevel(logging.WARNING)
    limiter = logs.RateLimiter(1, 1, 60.0, Clock())
    assert not logs.emit(logger, limiter, logging.INFO, K, "quiet", {})
    assert logs.emit(logger, limiter, logging.WARNING, K, "loud", {})
    assert [r.getMessage() for r in records] == ["loud"]


def _record(msg: str = "event %s dead-lettered", **extra: object) -> logging.LogRecord:
    record = logging.getLogger("kbroker.filter.dispatch").makeRecord(
        "kbroker.filter.dispatch", logging.WARNING, "f.py", 1, msg, ("e1",), None, extra=extra
    )
    return record


def test_json_line_has_the_base_keys_and_the_extra_fields() -> None:
    line = logs.JsonFormatter().format(
        _record(namespace="ns", trigger="t", attempt=3, status=None, url=object())
    )
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "warning"
    assert doc["logger"] == "kbroker.filter.dispatch"
    assert doc["msg"] == "event e1 dead-lettered"
    assert doc["ts"].endswith("+00:00")
    assert (doc["namespace"], doc["trigger"], doc["attempt"], doc["status"]) == ("ns", "t", 3, None)
    assert doc["url"].startswith("<object")  # anything else is rendered with str()


def test_uvicorn_color_message_is_not_a_field() -> None:
    doc = json.loads(logs.JsonFormatter().format(_record(color_message="\x1b[32mx\x1b[0m")))
    assert "color_message" not in doc


def test_json_keeps_a_traceback_on_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f.py", 1, "failed", (), sys.exc_info()
        )
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exc"]


def test_text_line_appends_the_fields_quoting_where_needed() -> None:
    line = logs.TextFormatter().format(_record(trigger="t", error="connection refused", empty=""))
    assert line.endswith(
        "kbroker.filter.dispatch: event e1 dead-lettered"
        ' trigger=t error="connection refused" empty=""'
    )


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_configure_logging_routes_the_root_logger(fmt: str) -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        logs.configure_logging(fmt, "info", first)
        logs.configure_logging(fmt, "info", second)  # replaces its own handler, not others
        assert len([h for h in root.handlers if h not in before[0]]) == 1
        logging.getLogger("kbroker.x").info("hello", extra={"trigger": "t"})
        logging.getLogger("kbroker.x").debug("not at info")
    finally:
        for h in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(h)
        root.setLevel(before[1])
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    assert len(lines) == 1
    if fmt == "json":
        assert json.loads(lines[0])["trigger"] == "t"
    else:
        assert lines[0].endswith("kbroker.x: hello trigger=t")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.log_format("xml")


def test_shutdown_lines(captured: tuple[logging.Logger, list[logging.LogRecord]]) -> None:
    logger, records = captured
    logs.log_shutdown(logger, "stopping", "kbroker run")
    logs.log_shutdown(logger, "stopped", "kbroker run", seconds=1.5)
    assert [(r.getMessage(), logs.fields_of(r)) for r in records] == [
        ("shutting down", {"component": "kbroker run"}),
        ("stopped", {"component": "kbroker run", "seconds": 1.5}),
    ]
    with pytest.raises(ValueError):
        logs.log_shutdown(logger, "paused", "kbroker run")
