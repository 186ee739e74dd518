"""Opening hours: is the service open at a given instant, and if not, why and until when.

Owns: a schedule's model and its parsing from the plain data a flow file gives (mappings,
lists, strings, dates), with errors that carry the key path of the bad item; the rules
that decide open or closed at an instant; and the search for the next opening.

Must not know: the wall clock (the instant is an argument), flows, calls, prompts. Public
holidays come from the `holidays` package (a pure calendar computation); time zones from
the standard `zoneinfo` database, read once when a schedule is parsed.

A schedule, as written in a flow:

    timezone: Australia/Sydney            # required, an IANA zone name
    monday: ["08:00-20:00"]               # each weekday: a list of intervals, one string
    tuesday: "08:00-12:00, 13:00-17:00"   #   (commas allowed), "closed", [] or absent
    friday: ["08:00-12:00", "22:00-02:00"]  # crossing midnight: ends the next day
    saturday: closed
    holidays: {country: AU, subdivision: ACT}   # optional: closed on public holidays
    closed_dates: [2025-12-24, "2025-12-27..2026-01-02"]   # dates or inclusive ranges
    open_dates: {2025-12-26: ["10:00-14:00"]}   # these hours instead of the usual ones

Rules:

- Times are local wall-clock times in the schedule's zone; "24:00" may end an interval.
  Within one day's list intervals may touch but not overlap.
- An interval belongs to the day it starts on: a "22:00-02:00" interval on a Friday keeps
  the service open until 02:00 on Saturday even if Saturday is a holiday, and is not
  opened at all when Friday is one.
- A day's hours are, in order of precedence: its `open_dates` entry; none if it is in
  `closed_dates` (reason `closed_date`); none if it is a public holiday (reason
  `public_holiday`, with the holiday's name); else its weekday's intervals.
- An emergency closure (an argument of `status`) closes everything; its end is unknown, so
  `next_open` is None then.
- When closed, `next_open` is the start of the next interval within `NEXT_OPEN_HORIZON_DAYS`
  days, as an aware datetime in the schedule's zone (None if there is none). Wall times
  that fall in a daylight-saving gap are taken as the instant after the gap.
"""

from __future__ import annotations

import datetime
import difflib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = [
    "NEXT_OPEN_HORIZON_DAYS",
    "WEEKDAYS",
    "ClosedReason",
    "HoursError",
    "HoursStatus",
    "Interval",
    "OpeningHours",
]

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NEXT_OPEN_HORIZON_DAYS: Final = 14
MAX_RANGE_DAYS: Final = 366  # the longest `closed_dates` range
MINUTES_PER_DAY: Final = 24 * 60

_OTHER_KEYS: Final = ("timezone", "holidays", "closed_dates", "open_dates")
_UTC: Final = datetime.UTC

Path = tuple[Any, ...]


class HoursError(Exception):
    """A schedule that cannot be used; `path` is the key path of the bad item inside the
    schedule's data, e.g. ("monday", 0) or ("holidays", "subdivision")."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        where = " → ".join(str(p) for p in self.path)
        return f"{where}: {self.message}" if where else self.message


class ClosedReason(Enum):
    OUTSIDE_HOURS = "outside_hours"
    PUBLIC_HOLIDAY = "public_holiday"
    CLOSED_DATE = "closed_date"
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True)
class HoursStatus:
    """`reason` is None exactly when `open`; `holiday_name` is set exactly when the reason
    is a public holiday; `next_open` only when closed and an opening lies within the
    horizon (never for an emergency closure)."""

    open: bool
    reason: ClosedReason | None
    holiday_name: str | None
    next_open: datetime.datetime | None


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """Opening time from `start` to `end`, in minutes after local midnight; `end` is
    1..1440 and, when not after `start`, falls on the next day."""

    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @property
    def end_minute(self) -> int:
        """The end on a scale where the next day's midnight is 1440."""
        return self.end + MINUTES_PER_DAY if self.crosses_midnight else self.end

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


_INTERVAL = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")
_RANGE = re.compile(r"\s*(\S+)\s*\.\.\s*(\S+)\s*")


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f'{value} (a number: quote times in YAML, like "08:00-20:00")'
    return f"{value!r} (a {type(value).__name__})"


def _parse_interval(text: str, path: Path) -> Interval:
    match = _INTERVAL.fullmatch(text)
    if match is None:
        raise HoursError(
            f'expected an interval "HH:MM-HH:MM" such as "08:00-20:00", found {text!r}', path
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hours, minutes, which in ((h1, m1, "start"), (h2, m2, "end")):
        limit = 24 if which == "end" else 23
        if hours > limit or minutes > 59 or (hours == 24 and minutes != 0):
            raise HoursError(
                f"{text.strip()!r}: the {which} time {hours:02d}:{minutes:02d} is not a time "
                f"of day (00:00 to {'24:00' if which == 'end' else '23:59'})",
                path,
            )
    start = h1 * 60 + m1
    end = h2 * 60 + m2
    if end % MINUTES_PER_DAY == start and not (start == 0 and end == MINUTES_PER_DAY):
        raise HoursError(
            f'{text.strip()!r} starts and ends at the same time; write "00:00-24:00" for '
            "the whole day",
            path,
        )
    return Interval(start, end)


def _parse_day(value: object, path: Path) -> tuple[Interval, ...]:
    """A day's hours: a list of interval strings, one string (comma-separated intervals or
    "closed"), or nothing."""
    if value is None:
        return ()
    parsed: list[tuple[Interval, Path]] = []
    if isinstance(value, str):
        if value.strip().lower() == "closed":
            return ()
        for piece in value.split(","):
            parsed.append((_parse_interval(piece, path), path))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise HoursError(
                    f'expected an interval "HH:MM-HH:MM", found {_describe(item)}',
                    (*path, index),
                )
            parsed.append((_parse_interval(item, (*path, index)), (*path, index)))
    else:
        raise HoursError(
            'expected a list of intervals like ["08:00-20:00"], "closed" or nothing, found '
            f"{_describe(value)}",
            path,
        )
    ordered = sorted(parsed, key=lambda pair: pair[0])
    for (before, _), (after, after_path) in itertools.pairwise(ordered):
        if after.start < before.end_minute:
            raise HoursError(f"{after} overlaps {before} on the same day", after_path)
    return tuple(interval for interval, _ in ordered)


def _parse_date(value: object, path: Path) -> datetime.date:
    if isinstance(value, datetime.datetime):
        raise HoursError(f"expected a date (YYYY-MM-DD) without a time, found {value}", path)
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            try:
                return datetime.date.fromisoformat(text)
            except ValueError:
                raise HoursError(f"{text!r} is not a date of the calendar", path) from None
    raise HoursError(f"expected a date YYYY-MM-DD, found {_describe(value)}", path)


def _parse_closed(value: object, path: Path) -> tuple[tuple[datetime.date, datetime.date], ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise HoursError(
            f'expected a list of dates or ranges ("2025-12-24..2026-01-02"), found '
            f"{_describe(value)}",
            path,
        )
    spans: list[tuple[datetime.date, datetime.date]] = []
    for index, item in enumerate(value):
        item_path = (*path, index)
        match = _RANGE.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            day = _parse_date(item, item_path)
            spans.append((day, day))
            continue
        first = _parse_date(match.group(1), item_path)
        last = _parse_date(match.group(2), item_path)
        if last < first:
            raise HoursError(f"the range {item.strip()!r} ends before it starts", item_path)
        if (last - first).days >= MAX_RANGE_DAYS:
            raise HoursError(
                f"the range {item.strip()!r} is longer than {MAX_RANGE_DAYS} days", item_path
            )
        spans.append((first, last))
    return tuple(spans)


def _parse_open(value: object, path: Path) -> dict[datetime.date, tuple[Interval, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise HoursError(
            f'expected dates with their hours (2025-12-26: ["10:00-14:00"]), found '
            f"{_describe(value)}",
            path,
        )
    days: dict[datetime.date, tuple[Interval, ...]] = {}
    for key, hours in value.items():
        day = _parse_date(key, (*path, key))
        if day in days:
            raise HoursError(f"{day.isoformat()} is given twice", (*path, key))
        days[day] = _parse_day(hours, (*path, key))
    return days


def _parse_timezone(value: object) -> ZoneInfo:
    path = ("timezone",)
    if not isinstance(value, str) or not value.strip():
        raise HoursError(
            f"expected a time zone name such as Australia/Sydney, found {_describe(value)}", path
        )
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(
            f"unknown time zone {value!r}: expected an IANA name such as Australia/Sydney", path
        ) from None


def _parse_holidays(value: object) -> tuple[str, str | None, holidays.HolidayBase] | None:
    path: Path = ("holidays",)
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise HoursError(
            f"expected {{country: AU, subdivision: ACT}}, found {_describe(value)}", path
        )
    for key in value:
        if key not in ("country", "subdivision"):
            raise HoursError(
                f"unknown key {key!r} (holidays take country and subdivision)", (*path, key)
            )
    country = value.get("country")
    if not isinstance(country, str):
        raise HoursError(
            f"expected a country code such as AU, found {_describe(country)}", (*path, "country")
        )
    supported: dict[str, list[str]] = holidays.list_supported_countries()
    code = country.strip().upper()
    if code not in supported:
        close = difflib.get_close_matches(code, list(supported), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise HoursError(
            f"no public-holiday calendar for country {country!r}{hint}", (*path, "country")
        )
    subdivision = value.get("subdivision")
    chosen: str | None = None
    if subdivision is not None:
        if not isinstance(subdivision, str):
            raise HoursError(
                f"expected a subdivision code such as ACT, found {_describe(subdivision)}",
                (*path, "subdivision"),
            )
        by_upper = {s.upper(): s for s in supported[code]}
        chosen = by_upper.get(subdivision.strip().upper())
        if chosen is None:
            known = ", ".join(supported[code]) or "none"
            raise HoursError(
                f"{code} has no subdivision {subdivision!r} (known: {known})",
                (*path, "subdivision"),
            )
    calendar = holidays.country_holidays(code, subdiv=chosen)
    return code, chosen, calendar


@dataclass(frozen=True, slots=True, eq=False)
class OpeningHours:
    """A parsed schedule (build it with `parse`)."""

    timezone: ZoneInfo
    weekly: tuple[tuple[Interval, ...], ...]  # Monday first
    closed_dates: tuple[tuple[datetime.date, datetime.date], ...]
    open_dates: Mapping[datetime.date, tuple[Interval, ...]]
    holiday_country: str | None
    holiday_subdivision: str | None
    _calendar: holidays.HolidayBase | None = field(repr=False)

    @classmethod
    def parse(cls, data: object) -> OpeningHours:
        """A schedule from plain data (see the module's docstring); HoursError on the
        first problem, with the key path of the offending item."""
        if not isinstance(data, Mapping):
            raise HoursError(
                f"expected a schedule (timezone, weekdays, …), found {_describe(data)}"
            )
        known = (*WEEKDAYS, *_OTHER_KEYS)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key).lower(), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise HoursError(
                    f"unknown key {key!r}{hint} (a schedule has: {', '.join(known)})", (key,)
                )
        if "timezone" not in data:
            raise HoursError("a schedule needs a timezone, such as Australia/Sydney")
        zone = _parse_timezone(data["timezone"])
        weekly = tuple(_parse_day(data.get(day), (day,)) for day in WEEKDAYS)
        closed = _parse_closed(data.get("closed_dates"), ("closed_dates",))
        opened = _parse_open(data.get("open_dates"), ("open_dates",))
        for day in opened:
            for first, last in closed:
                if first <= day <= last:
                    raise HoursError(
                        f"{day.isoformat()} is also in closed_dates: it cannot be both",
                        ("open_dates", _original_key(data.get("open_dates"), day)),
                    )
        found = _parse_holidays(data.get("holidays"))
        country, subdivision, calendar = found if found is not None else (None, None, None)
        return cls(zone, weekly, closed, MappingProxyType(opened), country, subdivision, calendar)

    # -- questions about days --------------------------------------------------------------

    def holiday_name(self, day: datetime.date) -> str | None:
        """The public holiday on `day` (names joined by "; " if several), else None."""
        if self._calendar is None:
            return None
        name = self._calendar.get(day)
        return None if name is None else str(name)

    def is_closed_date(self, day: datetime.date) -> bool:
        return any(first <= day <= last for first, last in self.closed_dates)

    def _plan(
        self, day: datetime.date
    ) -> tuple[tuple[Interval, ...], ClosedReason | None, str | None]:
        """The intervals that start on `day`, or why there are none though the weekday
        has some (closed date, public holiday with its name)."""
        if day in self.open_dates:
            return self.open_dates[day], None, None
        if self.is_closed_date(day):
            return (), ClosedReason.CLOSED_DATE, None
        name = self.holiday_name(day)
        if name is not None:
            return (), ClosedReason.PUBLIC_HOLIDAY, name
        return self.weekly[day.weekday()], None, None

    def hours_on(self, day: datetime.date) -> tuple[Interval, ...]:
        """The intervals that start on `day` once dates and holidays are applied."""
        return self._plan(day)[0]

    def _span(
        self, day: datetime.date, interval: Interval
    ) -> tuple[datetime.datetime, datetime.datetime]:
        """The interval on `day` as two UTC instants."""
        start = self._instant(day, interval.start)
        end = self._instant(day, interval.end_minute)
        return start, end

    def _instant(self, day: datetime.date, minute: int) -> datetime.datetime:
        days, minute = divmod(minute, MINUTES_PER_DAY)
        local = datetime.datetime.combine(
            day + datetime.timedelta(days=days),
            datetime.time(minute // 60, minute % 60),
            tzinfo=self.timezone,
        )
        return local.astimezone(_UTC)

    # -- the question ----------------------------------------------------------------------

    def status(self, at: datetime.datetime, emergency_closed: bool = False) -> HoursStatus:
        """Open or closed at the instant `at` (an aware datetime in any zone)."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"status() needs an aware datetime (with a time zone), got {at}")
        if emergency_closed:
            return HoursStatus(False, ClosedReason.EMERGENCY, None, None)
        now = at.astimezone(_UTC)
        today = at.astimezone(self.timezone).date()
        yesterday = today - datetime.timedelta(days=1)
        for day in (yesterday, today):
            for interval in self.hours_on(day):
                start, end = self._span(day, interval)
                if start <= now < end:
                    return HoursStatus(True, None, None, None)
        reason, name = self._why_closed(now, today, yesterday)
        return HoursStatus(False, reason, name, self.next_open(at))

    def _why_closed(
        self, now: datetime.datetime, today: datetime.date, yesterday: datetime.date
    ) -> tuple[ClosedReason, str | None]:
        _, reason, name = self._plan(today)
        if reason is not None:
            return reason, name
        # today is a normal day: was a late interval of yesterday suppressed?
        _, reason, name = self._plan(yesterday)
        if reason is not None:
            for interval in self.weekly[yesterday.weekday()]:
                start, end = self._span(yesterday, interval)
                if interval.crosses_midnight and start <= now < end:
                    return reason, name
        return ClosedReason.OUTSIDE_HOURS, None

    def next_open(self, at: datetime.datetime) -> datetime.datetime | None:
        """The first interval start after `at` within the horizon, in the schedule's zone
        (ignores emergency closures)."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"next_open() needs an aware datetime (with a time zone), got {at}")
        now = at.astimezone(_UTC)
        first_day = at.astimezone(self.timezone).date()
        limit = now + datetime.timedelta(days=NEXT_OPEN_HORIZON_DAYS)
        best: datetime.datetime | None = None
        for offset in range(NEXT_OPEN_HORIZON_DAYS + 1):
            day = first_day + datetime.timedelta(days=offset)
            for interval in self.hours_on(day):
                start, end = self._span(day, interval)
                if end <= start:
                    continue  # emptied by a daylight-saving jump ("02:30-03:00" that night)
                if now < start <= limit and (best is None or start < best):
                    best = start
            if best is not None:
                break  # later days start later
        return None if best is None else best.astimezone(self.timezone)


def _original_key(mapping: object, day: datetime.date) -> object:
    """The key as written (a date or a string) under which `day` appears in `mapping`."""
    if isinstance(mapping, Mapping):
        for key in mapping:
            if key == day or (isinstance(key, str) and key.strip() == day.isoformat()):
                return key
    return day.isoformat()
