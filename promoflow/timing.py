"""Time as promotions.yaml and the CLI write it: durations (`24h`), moments (ISO 8601 with a zone, or `+2h`), time
zones (IANA names), and the windows an environment opens (weekdays and hours, or a cron start and a duration).

Pure functions of the moment they are asked about: the engine passes its clock, so tests move time instead of
sleeping. Local times are read in the window's zone with zoneinfo, so a window at 09:00 Europe/Berlin opens at
07:00 UTC in summer and 08:00 UTC in winter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
MAX_DURATION = timedelta(days=366)
# How far ahead a window's next opening is looked for: a cron that never fires within it is refused.
HORIZON = timedelta(days=366)


def duration(value: object) -> timedelta:
    """`90s`, `30m`, `24h`, `2d`, `1h30m`, or a number of seconds; ValueError says what is wrong."""
    if isinstance(value, timedelta):
        found = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and any(match.groups()):
        found = timedelta(seconds=sum(int(n) * s for n, s in zip(match.groups(), _UNITS.values(), strict=True) if n))
    else:
        raise ValueError("expected a duration such as 90s, 30m, 24h, 2d or 1h30m (or a number of seconds)")
    if found <= timedelta(0) or found > MAX_DURATION:
        raise ValueError("a duration must be more than 0 and at most 366 days")
    return found


def words(span: timedelta) -> str:
    """A duration as `duration` reads it: `1d2h`, `30m`, `90s` -> `1m30s`."""
    seconds, out = int(span.total_seconds()), ""
    for unit, size in _UNITS.items():
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def moment(text: str, now: datetime) -> datetime:
    """A moment in time, in UTC: ISO 8601 with a zone (`2026-12-24T18:00:00+01:00`, `...Z`) or relative to `now`
    (`+2h`, `+1d`, `+30m`). ValueError says what to write instead."""
    text = text.strip()
    if text.startswith("+"):
        return now.astimezone(UTC) + duration(text[1:])
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: write ISO 8601 with a zone (2026-12-24T18:00:00+01:00, or Z for UTC) "
            "or a time from now (+2h, +30m, +1d)"
        ) from None
    if found.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add one (+01:00, or Z for UTC) so it means one moment")
    return found.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (`Europe/Berlin`, `UTC`); ValueError for one zoneinfo does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


def hours(value: str) -> tuple[time, time | None]:
    """`09:00-17:00` -> (09:00, 17:00); an end of 24:00 is None (midnight at the end of the day). An end at or
    before the start runs past midnight (`22:00-06:00`)."""
    match = _HOURS.match(value.strip())
    if match is None:
        raise ValueError("expected hours as HH:MM-HH:MM, e.g. 09:00-17:00 (22:00-06:00 runs past midnight)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2:
        raise ValueError("expected hours as HH:MM-HH:MM; the latest end is 24:00")
    return time(h1, m1), None if h2 == 24 else time(h2, m2)


def cron(expression: str) -> str:
    """A five-field cron expression cronsim reads (as Prefect's cron schedules); ValueError says why not."""
    if len(expression.split()) != 5:
        raise ValueError("expected a cron expression of five fields: minute hour day-of-month month day-of-week")
    try:
        next(CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as error:
        raise ValueError(f"not a cron expression cron can read: {error or 'it never fires'}") from None
    return expression


def rrule(expression: str) -> str:
    """An iCalendar recurrence rule (`FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=10`) as Prefect's RRule schedules read it."""
    from dateutil.rrule import rrulestr

    try:
        rrulestr(expression)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a recurrence rule (RFC 5545 RRULE): {error}") from None
    return expression


def local(at: date, clock: time, where: ZoneInfo) -> datetime:
    """The moment a wall clock in `where` shows `clock` on `at`. A reading the clocks skip (02:30 on the night
    they jump from 02:00 to 03:00) is read with the offset before the jump, as PEP 495 does: 03:30."""
    return datetime.combine(at, clock, tzinfo=where)


class Opening:
    """When a window is open: weekly `days` and `hours`, or from each `cron` fire for `length`, in `where`."""

    def __init__(
        self,
        where: ZoneInfo,
        days: Iterable[str] = DAYS,
        span: tuple[time, time | None] = (time(0), None),
        cron: str | None = None,
        length: timedelta | None = None,
    ) -> None:
        self.where, self.days = where, frozenset(DAYS.index(d) for d in days)
        self.start, self.end = span
        self.cron, self.length = cron, length

    def open_at(self, at: datetime) -> bool:
        return self.opened(at) is not None

    def opened(self, at: datetime) -> datetime | None:
        """When the opening that `at` falls in began, None if the window is closed at `at`."""
        if self.cron is not None:
            assert self.length is not None
            # reverse from a moment with microseconds yields the latest fire at or before it (cronsim's rule)
            there = at.astimezone(self.where).replace(microsecond=max(at.microsecond, 1))
            latest = next(CronSim(self.cron, there, reverse=True))
            return latest if at < latest + self.length else None
        there = at.astimezone(self.where)
        for day in (there.date(), there.date() - timedelta(days=1)):  # an opening past midnight began the day before
            begins, ends = self._span(day)
            if day.weekday() in self.days and begins <= at < ends:
                return begins
        return None

    def next_opening(self, at: datetime) -> datetime | None:
        """The first moment after `at` the window opens; None if it never does within a year."""
        if self.cron is not None:
            found = next(CronSim(self.cron, at.astimezone(self.where)), None)
            return found if found is not None and found - at <= HORIZON else None
        day = at.astimezone(self.where).date()
        for offset in range(8):
            candidate = day + timedelta(days=offset)
            begins, _ = self._span(candidate)
            if candidate.weekday() in self.days and begins > at:
                return begins
        return None

    def _span(self, day: date) -> tuple[datetime, datetime]:
        begins = local(day, self.start, self.where)
        overnight = self.end is None or self.end <= self.start
        ends = local(day + timedelta(days=1) if overnight else day, self.end or time(0), self.where)
        return begins, ends


def first_opening(openings: Iterable[Opening], at: datetime) -> datetime | None:
    """The earliest moment after `at` that any of `openings` opens."""
    found = [t for t in (o.next_opening(at) for o in openings) if t is not None]
    return min(found) if found else None
