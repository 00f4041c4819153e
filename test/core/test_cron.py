"""core/cron: robfig-compatible parsing and next-tick search, including DST edges."""

from __future__ import annotations

import datetime as dt

import pytest
from kbroker.core import cron

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ticks(spec: str, start: str, n: int, timezone: str = "") -> list[str]:
    s = cron.parse(spec, timezone)
    out, t = [], at(start)
    for _ in range(n):
        nxt = s.next(t)
        assert nxt is not None
        out.append(nxt.astimezone(s.zone).isoformat())
        t = nxt
    return out


@pytest.mark.parametrize(
    ("spec", "start", "expected"),
    [
        ("* * * * *", "2026-01-01T00:00:30+00:00", ["2026-01-01T00:01:00+00:00"]),
        ("*/15 * * * *", "2026-01-01T00:01:00+00:00", ["2026-01-01T00:15:00+00:00"]),
        ("5-10/5 3 * * *", "2026-01-01T00:00:00+00:00", ["2026-01-01T03:05:00+00:00"]),
        ("0 0 1,15 * *", "2026-01-02T00:00:00+00:00", ["2026-01-15T00:00:00+00:00"]),
        ("0 12 * feb MON", "2026-01-01T00:00:00+00:00", ["2026-02-02T12:00:00+00:00"]),
        ("0 0 * * sun", "2026-01-01T00:00:00+00:00", ["2026-01-04T00:00:00+00:00"]),
        # day-of-month and day-of-week both restricted: either matches (Vixie/robfig)
        ("0 0 13 * fri", "2026-01-01T00:00:00+00:00", ["2026-01-02T00:00:00+00:00"]),
        ("0 0 13 * ?", "2026-01-01T00:00:00+00:00", ["2026-01-13T00:00:00+00:00"]),
        ("10 0/1 * * * ?", "2026-01-01T00:00:00+00:00", ["2026-01-01T00:00:10+00:00"]),
        ("*/2 * * * * *", "2026-01-01T00:00:00.5+00:00", ["2026-01-01T00:00:02+00:00"]),
        ("@hourly", "2026-01-01T00:00:00+00:00", ["2026-01-01T01:00:00+00:00"]),
        ("@yearly", "2026-03-01T00:00:00+00:00", ["2027-01-01T00:00:00+00:00"]),
        ("5 4 29 2 *", "2026-01-01T00:00:00+00:00", ["2028-02-29T04:05:00+00:00"]),
        (
            "CRON_TZ=Europe/Paris 0 9 * * *",
            "2026-01-01T00:00:00+00:00",
            ["2026-01-01T09:00:00+01:00"],
        ),
        ("TZ=Asia/Tokyo 0 9 * * *", "2026-01-01T00:00:00+00:00", ["2026-01-02T09:00:00+09:00"]),
    ],
)
def test_next(spec: str, start: str, expected: list[str]) -> None:
    assert ticks(spec, start, len(expected)) == expected


def test_timezone_field_is_a_cron_tz_prefix() -> None:
    assert ticks("0 9 * * *", "2026-07-01T00:00:00+00:00", 1, "America/New_York") == [
        "2026-07-01T09:00:00-04:00"
    ]


def test_dst_gap_skips_the_missing_wall_time() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day, robfig skips it.
    got = ticks("30 2 * * *", "2026-03-07T12:00:00-05:00", 2, "America/New_York")
    assert got == ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    hourly = ticks("0 * * * *", "2026-03-08T00:30:00-05:00", 3, "America/New_York")
    assert hourly == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_dst_overlap_fires_once_per_offset() -> None:
    # 2026-11-01 02:00 EDT falls back to 01:00 EST: 01:30 happens twice, robfig fires twice.
    got = ticks("30 1 * * *", "2026-11-01T00:00:00-04:00", 3, "America/New_York")
    assert got == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_never_matching_schedule_gives_none() -> None:
    assert cron.parse("0 0 30 2 *").next(at("2026-01-01T00:00:00+00:00")) is None


@pytest.mark.parametrize(
    ("spec", "timezone", "message", "tz_error"),
    [
        ("* * * *", "", "expected 5 to 6 fields, found 4", False),
        ("* * * * * * *", "", "expected 5 to 6 fields, found 7", False),
        ("60 * * * *", "", "above maximum (59)", False),
        ("* 24 * * *", "", "above maximum (23)", False),
        ("* * 0 * *", "", "below minimum (1)", False),
        ("* * * * 7", "", "above maximum (6)", False),
        ("5-1 * * * *", "", "beyond end of range", False),
        ("*/0 * * * *", "", "should be a positive number", False),
        ("* * * foo *", "", "failed to parse int from foo", False),
        ("@every 1m", "", "unsupported descriptor @every", False),
        ("@sometimes", "", "unrecognized descriptor", False),
        ("* * * * *", "Mars/Olympus", "provided bad location Mars/Olympus", True),
        ("CRON_TZ=Nowhere * * * * *", "", "provided bad location Nowhere", True),
    ],
)
def test_invalid(spec: str, timezone: str, message: str, tz_error: bool) -> None:
    with pytest.raises(cron.CronError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        cron.parse(spec, timezone)
    assert e.value.timezone is tz_error


NY = "TZ=America/New_York "


@pytest.mark.parametrize(
    ("start", "spec", "expected"),
    [
        # robfig/cron v3's own DST cases (spec_test.go), which Knative inherits.
        ("2012-03-11T00:00:00-05:00", "0 30 2 11 Mar ?", "2013-03-11T02:30:00-04:00"),
        ("2012-03-11T00:00:00-05:00", "0 0 * * * ?", "2012-03-11T01:00:00-05:00"),
        ("2012-03-11T01:00:00-05:00", "0 0 * * * ?", "2012-03-11T03:00:00-04:00"),
        ("2012-03-11T01:00:00-05:00", "0 0 1 * * ?", "2012-03-12T01:00:00-04:00"),
        ("2012-03-11T00:00:00-05:00", "0 0 2 * * ?", "2012-03-12T02:00:00-04:00"),
        ("2012-11-04T00:00:00-04:00", "0 30 2 04 Nov ?", "2012-11-04T02:30:00-05:00"),
        ("2012-11-04T01:45:00-04:00", "0 30 1 04 Nov ?", "2012-11-04T01:30:00-05:00"),
        ("2012-11-04T01:00:00-04:00", "0 0 * * * ?", "2012-11-04T01:00:00-05:00"),
        ("2012-11-04T01:00:00-05:00", "0 0 * * * ?", "2012-11-04T02:00:00-05:00"),
        ("2012-11-04T00:00:00-04:00", "0 0 1 * * ?", "2012-11-04T01:00:00-04:00"),
        ("2012-11-04T01:00:00-04:00", "0 0 1 * * ?", "2012-11-04T01:00:00-05:00"),
        ("2012-11-04T01:00:00-05:00", "0 0 1 * * ?", "2012-11-05T01:00:00-05:00"),
    ],
)
def test_robfig_dst_cases(start: str, spec: str, expected: str) -> None:
    assert ticks(NY + spec, start, 1) == [expected]
