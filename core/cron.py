"""Cron schedules as Knative's PingSource reads them: parse, validate, and find the next tick.

Knative parses `spec.schedule` with robfig/cron v3 (optional leading seconds field, descriptors
such as `@hourly`, `CRON_TZ=`/`TZ=` prefixes, `?` for "any"); a PingSource written for Knative
must mean the same instants here, so this module follows robfig's rules rather than a library's
(croniter differs on day-of-week 7, on `?`, and on DST folds, and adds a dependency for ~150 lines).

Daylight-saving edges, as robfig does them: the search walks real (absolute) time and fires when
the local wall clock matches, so a wall time that does not exist (spring forward) never fires
that day, and a wall time that happens twice (fall back) fires twice, once per offset.

What this module refuses: clocks (callers pass the instant to search from), I/O, and `@every`
(Knative's webhook rejects it too).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

UTC = dt.UTC


class CronError(ValueError):
    """A schedule robfig would refuse; `timezone` tells a bad zone from a bad expression."""

    def __init__(self, message: str, timezone: bool = False) -> None:
        super().__init__(message)
        self.timezone = timezone


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day of month", 1, 31)
_MONTH = _Field(
    "month",
    1,
    12,
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
)
_DOW = _Field("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

# robfig gives up after five years of searching (a schedule such as Feb 30 never fires).
_HORIZON = dt.timedelta(days=366 * 5)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    dom: frozenset[int]
    months: frozenset[int]
    dow: frozenset[int]
    dom_star: bool  # `*`/`?`: then day-of-month AND day-of-week, else OR (robfig, Vixie cron)
    dow_star: bool
    zone: dt.tzinfo

    def _day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.dom
        dow = (t.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after `after` (aware), in UTC; None if none within 5 years."""
        cur = after.astimezone(UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        limit = cur + _HORIZON
        while cur < limit:
            local = cur.astimezone(self.zone)
            if local.month not in self.months:
                y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                cur = _later(cur, dt.datetime(y, m, 1, tzinfo=self.zone))
            elif not self._day_matches(local):
                day = local.date() + dt.timedelta(days=1)
                cur = _later(cur, dt.datetime(day.year, day.month, day.day, tzinfo=self.zone))
            elif local.hour not in self.hours:
                cur += dt.timedelta(minutes=60 - local.minute, seconds=-local.second)
            elif local.minute not in self.minutes:
                cur += dt.timedelta(seconds=60 - local.second)
            elif local.second not in self.seconds:
                cur += dt.timedelta(seconds=1)
            else:
                return cur
        return None


def _later(cur: dt.datetime, local: dt.datetime) -> dt.datetime:
    # A local midnight inside a DST gap maps to the first instant after the gap (fold=0 takes the
    # offset before the transition); never step backwards whatever the zone does.
    return max(local.astimezone(UTC), cur + dt.timedelta(seconds=1))


def zone(name: str) -> dt.tzinfo:
    if name in ("", "UTC", "Local"):
        # The adapter's system zone in Knative is the container's, which is UTC.
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"provided bad location {name}: {exc}", timezone=True) from None


def parse(spec: str, timezone: str = "") -> Schedule:
    """A robfig-compatible schedule; `timezone` is prepended as `CRON_TZ=` like Knative does."""
    text = spec.strip()
    if timezone:
        text = f"CRON_TZ={timezone} {text}"
    tz: dt.tzinfo = UTC
    if text.startswith(("CRON_TZ=", "TZ=")):
        head, _, text = text.partition(" ")
        tz = zone(head.split("=", 1)[1])
        text = text.strip()
    if text.startswith("@"):
        if text.startswith("@every"):
            raise CronError(f"unsupported descriptor {text.split()[0]}")
        if text not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(f"expected 5 to 6 fields, found {len(fields)}: {spec}")
    parsed = [
        _parse_field(f, d)
        for f, d in zip(fields, (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW), strict=True)
    ]
    return Schedule(
        seconds=parsed[0][0],
        minutes=parsed[1][0],
        hours=parsed[2][0],
        dom=parsed[3][0],
        months=parsed[4][0],
        dow=parsed[5][0],
        dom_star=parsed[3][1],
        dow_star=parsed[5][1],
        zone=tz,
    )


def _parse_field(text: str, f: _Field) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        got, is_star = _parse_range(part, f)
        values |= got
        star = star or is_star
    return frozenset(values), star


def _parse_range(expr: str, f: _Field) -> tuple[set[int], bool]:
    rng, _, step_text = expr.partition("/")
    star = False
    if rng in ("*", "?"):
        low, high, star = f.low, f.high, True
    else:
        lo_text, dash, hi_text = rng.partition("-")
        low = _value(lo_text, f)
        high = _value(hi_text, f) if dash else low
        if step_text and not dash:  # "N/step" means "N-max/step"
            high = f.high
    step = 1
    if step_text or expr.endswith("/"):
        try:
            step = int(step_text)
        except ValueError:
            raise CronError(f"failed to parse int from {step_text}: {expr}") from None
        if step <= 0:
            raise CronError(f"step of range should be a positive number: {expr}")
        if step > 1:
            star = False
    if low < f.low:
        raise CronError(f"beginning of range ({low}) below minimum ({f.low}): {expr}")
    if high > f.high:
        raise CronError(f"end of range ({high}) above maximum ({f.high}): {expr}")
    if low > high:
        raise CronError(f"beginning of range ({low}) beyond end of range ({high}): {expr}")
    return set(range(low, high + 1, step)), star


def _value(text: str, f: _Field) -> int:
    lower = text.lower()
    if lower in f.names:
        return f.names.index(lower) + f.low
    try:
        n = int(text)
    except ValueError:
        raise CronError(f"failed to parse int from {text}: {f.name}") from None
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {text}")
    return n
