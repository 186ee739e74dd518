"""The booking domain's records: clinics and their opening sessions, slots, people,
bookings and their statuses, audit entries and outbox messages.

Owns: these immutable records, the text form of a clinic's sessions (parsed with precise
errors, written back the same way), slot identifiers, turning sessions into slots for a
range of days, the masking of sensitive values (Medicare number, date of birth, phone)
wherever a record is printed, and the payload of the message sent when a booking is
confirmed, changed or cancelled.

Must not know: storage, SQL, the clock (instants are arguments), asyncio, flows.

Instants are aware `datetime`s in UTC; a slot also carries its local date and time in the
booking zone, which is what callers hear and clinics print.

Sessions, as written in a clinic file (`;` between entries):

    Mon-Fri 09:00-12:30 15min x4; Sat 09:00-12:00 20min x2; Tue,Thu 17:00-19:00 15min x3

Each entry: days (`Mon`…`Sun`, ranges `Mon-Fri`, lists `Tue,Thu`, or `Daily`), a local
time range, the slot length in minutes and the capacity of each slot (people per slot).
Entries on the same weekday must not overlap; slots are laid from the start while they
end by the end of the range.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

__all__ = [
    "ACTIVE_STATUSES",
    "CLINIC_ID",
    "WEEKDAY_NAMES",
    "AuditEntry",
    "Booking",
    "BookingStatus",
    "Clinic",
    "MessageKind",
    "OutboxMessage",
    "Person",
    "Scalar",
    "Session",
    "SessionError",
    "Slot",
    "dose_dates",
    "format_sessions",
    "generate_slots",
    "mask_digits",
    "medicare_problem",
    "message_payload",
    "normalise_phone",
    "parse_sessions",
    "slot_id",
]

Scalar: TypeAlias = str | int | bool | None

CLINIC_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
WEEKDAY_NAMES: Final = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_DAY_ABBR: Final = {name[:3]: i for i, name in enumerate(WEEKDAY_NAMES)}
MAX_CAPACITY: Final = 1000  # people in one slot
MIN_SLOT_MINUTES: Final = 5
MAX_SLOT_MINUTES: Final = 240


class BookingStatus(StrEnum):
    """Where a booking is in its life. `held` keeps a place for a few minutes while the
    caller confirms; a hold not confirmed in time becomes `expired` and its place returns
    to the slot. `cancelled` also returns the place; `attended` is set by the clinic."""

    HELD = "held"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    ATTENDED = "attended"
    EXPIRED = "expired"


ACTIVE_STATUSES: Final = frozenset({BookingStatus.HELD, BookingStatus.CONFIRMED})


class MessageKind(StrEnum):
    """What an outbox message tells the person."""

    CONFIRMED = "confirmed"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"


def mask_digits(text: str, keep: int = 2) -> str:
    """`text` with all but its last `keep` characters replaced by `•` (for logs)."""
    if len(text) <= keep:
        return "•" * len(text)
    return "•" * (len(text) - keep) + text[len(text) - keep :]


# -- sessions -------------------------------------------------------------------------------


class SessionError(ValueError):
    """A sessions text that cannot be used; the message says which entry and why."""


@dataclass(frozen=True, slots=True)
class Session:
    """Opening hours that produce slots: on `days` (0 = Monday), from `start` to `end`
    local time, slots of `slot_minutes`, each for `capacity` people."""

    days: frozenset[int]
    start: dt.time
    end: dt.time
    slot_minutes: int
    capacity: int

    def starts(self) -> list[dt.time]:
        """The local start time of every slot in one day of this session."""
        out: list[dt.time] = []
        begin = self.start.hour * 60 + self.start.minute
        stop = self.end.hour * 60 + self.end.minute
        t = begin
        while t + self.slot_minutes <= stop:
            out.append(dt.time(t // 60, t % 60))
            t += self.slot_minutes
        return out


_ENTRY = re.compile(
    r"(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"\s+(?P<minutes>\d+)\s*min\s+x\s*(?P<capacity>\d+)"
)


def _parse_days(text: str, entry: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        a = _DAY_ABBR.get(first.lower())
        b = _DAY_ABBR.get(last.lower()) if dash else a
        if a is None or b is None:
            raise SessionError(
                f"session {entry!r}: expected days such as Mon, Mon-Fri, "
                f"Tue,Thu or Daily, found {text!r}"
            )
        if b < a:
            raise SessionError(
                f"session {entry!r}: the day range {part!r} runs backwards "
                f"(write Mon-Fri, not Fri-Mon)"
            )
        days.update(range(a, b + 1))
    return frozenset(days)


def _parse_time(text: str, entry: str) -> dt.time:
    hours, _, minutes = text.partition(":")
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise SessionError(
            f"session {entry!r}: expected a time HH:MM from 00:00 to 23:59, found {text!r}"
        )
    return dt.time(h, m)


def parse_sessions(text: str) -> tuple[Session, ...]:
    """The sessions written in `text` (see the module text). Raises SessionError."""
    entries = [e.strip() for e in text.split(";") if e.strip()]
    if not entries:
        raise SessionError(
            "expected at least one session such as 'Mon-Fri 09:00-17:00 15min x4', found nothing"
        )
    sessions: list[Session] = []
    for entry in entries:
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise SessionError(
                f"session {entry!r}: expected DAYS HH:MM-HH:MM Nmin xCAPACITY, "
                f"for example 'Mon-Fri 09:00-17:00 15min x4'"
            )
        days = _parse_days(match["days"], entry)
        start = _parse_time(match["start"], entry)
        end = _parse_time(match["end"], entry)
        minutes, capacity = int(match["minutes"]), int(match["capacity"])
        if end <= start:
            raise SessionError(
                f"session {entry!r}: ends at {match['end']}, not after its start {match['start']}"
            )
        if not MIN_SLOT_MINUTES <= minutes <= MAX_SLOT_MINUTES:
            raise SessionError(
                f"session {entry!r}: expected a slot length from "
                f"{MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES} minutes, "
                f"found {minutes}"
            )
        if not 1 <= capacity <= MAX_CAPACITY:
            raise SessionError(
                f"session {entry!r}: expected a capacity from 1 to "
                f"{MAX_CAPACITY} people per slot, found {capacity}"
            )
        session = Session(days, start, end, minutes, capacity)
        if not session.starts():
            raise SessionError(
                f"session {entry!r}: no {minutes}-minute slot fits between "
                f"{match['start']} and {match['end']}"
            )
        for other, other_entry in zip(sessions, entries, strict=False):
            if other.days & days and other.start < end and start < other.end:
                day = WEEKDAY_NAMES[min(other.days & days)].capitalize()
                raise SessionError(f"session {entry!r} overlaps {other_entry!r} on {day}")
        sessions.append(session)
    return tuple(sessions)


def _format_days(days: frozenset[int]) -> str:
    if days == frozenset(range(7)):
        return "Daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for d in ordered:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = []
    for run in runs:
        first = WEEKDAY_NAMES[run[0]][:3].capitalize()
        last = WEEKDAY_NAMES[run[-1]][:3].capitalize()
        parts.append(
            first if len(run) == 1 else f"{first}-{last}" if len(run) > 2 else f"{first},{last}"
        )
    return ",".join(parts)


def format_sessions(sessions: Iterable[Session]) -> str:
    """The text form `parse_sessions` reads back to the same sessions."""
    return "; ".join(
        f"{_format_days(s.days)} {s.start:%H:%M}-{s.end:%H:%M} {s.slot_minutes}min x{s.capacity}"
        for s in sessions
    )


# -- clinics and slots ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clinic:
    """A place that vaccinates. `vaccines` are the codes of the rules' vaccines it gives."""

    id: str
    name: str
    address: str
    postcode: str
    region: str
    lat: float
    lon: float
    vaccines: tuple[str, ...]
    sessions: tuple[Session, ...]
    active: bool = True


def slot_id(clinic_id: str, local_date: dt.date, local_time: dt.time) -> str:
    """A slot's identifier: the clinic and the local start (`civic@20260512T0930`). The
    same clinic and start always give the same id, so generating slots twice adds none."""
    return f"{clinic_id}@{local_date:%Y%m%d}T{local_time:%H%M}"


@dataclass(frozen=True, slots=True)
class Slot:
    """A start time at a clinic with room for `capacity` people; `taken` counts the held
    and confirmed bookings in it."""

    id: str
    clinic_id: str
    starts_at: dt.datetime  # UTC
    local_date: dt.date
    local_time: dt.time
    minutes: int
    capacity: int
    taken: int = 0

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.taken)


def _local_instant(day: dt.date, time: dt.time, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant of a local wall time, or None when the wall time does not exist
    (skipped by a daylight-saving change). A repeated wall time takes its first instant."""
    local = dt.datetime.combine(day, time, tzinfo=zone)
    utc = local.astimezone(dt.UTC)
    back = utc.astimezone(zone)
    if (back.date(), back.time().replace(tzinfo=None)) != (day, time):
        return None
    return utc


def generate_slots(
    clinic: Clinic,
    first_day: dt.date,
    days: int,
    zone: ZoneInfo,
    *,
    closed: frozenset[dt.date] = frozenset(),
) -> list[Slot]:
    """The slots of `clinic`'s sessions over `days` days from `first_day` (local dates in
    `zone`), skipping `closed` dates (public holidays) and wall times that a
    daylight-saving change skips. Sorted by start."""
    if days < 0:
        raise ValueError(f"expected a number of days of at least 0, found {days}")
    out: list[Slot] = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        if day in closed:
            continue
        for session in clinic.sessions:
            if day.weekday() not in session.days:
                continue
            for start in session.starts():
                instant = _local_instant(day, start, zone)
                if instant is None:
                    continue
                out.append(
                    Slot(
                        slot_id(clinic.id, day, start),
                        clinic.id,
                        instant,
                        day,
                        start,
                        session.slot_minutes,
                        session.capacity,
                    )
                )
    out.sort(key=lambda s: (s.starts_at, s.id))
    return out


# -- people and bookings --------------------------------------------------------------------

_MEDICARE_WEIGHTS: Final = (1, 3, 7, 9, 1, 3, 7, 9)


def medicare_problem(number: str) -> str | None:
    """Why `number` is not a Medicare number as keyed (10 digits: eight starting 2-6, a
    check digit, an issue number 1-9; optionally an 11th, the individual reference number
    1-9), or None when it is one. The reason never repeats the number."""
    if not number.isascii() or not number.isdigit():
        return "expected digits only"
    if len(number) not in (10, 11):
        return f"expected 10 or 11 digits, found {len(number)}"
    if number[0] not in "23456":
        return "expected a first digit from 2 to 6"
    check = sum(int(d) * w for d, w in zip(number[:8], _MEDICARE_WEIGHTS, strict=True)) % 10
    if int(number[8]) != check:
        return "the check digit (9th) does not match"
    if number[9] == "0":
        return "the issue number (10th digit) cannot be 0"
    if len(number) == 11 and number[10] == "0":
        return "the individual reference number (11th digit) cannot be 0"
    return None


def normalise_phone(text: str) -> str:
    """A caller number in the form bookings store it: Australian numbers in the national
    form (`+61 412 345 678`, `61412345678` and `0412345678` all give `0412345678`); other
    numbers as their digits (with a leading `+` kept); "" when `text` has no digits."""
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if not digits:
        return ""
    if digits.startswith("61") and len(digits) == 11:
        return "0" + digits[2:]
    if digits.startswith("610") and len(digits) == 12:
        return digits[2:]
    if len(digits) == 10 and digits.startswith("0"):
        return digits
    return ("+" + digits) if text.strip().startswith("+") else digits


@dataclass(frozen=True, slots=True)
class Person:
    """Who a booking is for. `medicare` is the number as keyed (10 digits, or 11 with the
    individual reference number); `phone` the national form (`0412345678`) or "" when
    unknown. Printing a Person never shows the Medicare number or date of birth."""

    medicare: str = field(repr=False)
    dob: dt.date = field(repr=False)
    phone: str = ""

    @property
    def card(self) -> str:
        """The card number without its issue number (the first nine digits): with the
        date of birth, what recognises a person across card reissues."""
        return self.medicare[:9]

    def __repr__(self) -> str:
        return (
            f"Person(medicare={mask_digits(self.medicare)!r}, dob='••••-••-••', "
            f"phone={mask_digits(self.phone, 3)!r})"
        )


@dataclass(frozen=True, slots=True)
class Booking:
    """A booking with its slot's times. `reference` is set when the booking is confirmed;
    `version` counts its changes (hold = 1)."""

    id: int
    reference: str | None
    status: BookingStatus
    clinic_id: str
    slot_id: str
    vaccine: str
    dose: int
    person: Person
    starts_at: dt.datetime
    local_date: dt.date
    local_time: dt.time
    held_at: dt.datetime
    hold_expires_at: dt.datetime
    confirmed_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    version: int = 1

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def expired_at(self, now: dt.datetime) -> bool:
        """Whether this is a hold whose time ran out by `now`."""
        return self.status is BookingStatus.HELD and self.hold_expires_at <= now


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to one booking: what, by whom (`actor`: `call:<id>`, `agent:<name>`,
    `webhook`, `system:sweep`, `cli`), during which call, and the statuses around it.
    `detail` never holds a Medicare number or a date of birth."""

    booking_id: int
    action: str
    actor: str
    call_id: str | None
    at: dt.datetime
    before: BookingStatus | None
    after: BookingStatus | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to deliver once: written in the transaction that made the change.
    `dedupe_key` is unique per booking change; deliverers pass it on as an idempotency
    key so a retried delivery is recognised by the receiver."""

    id: int
    booking_id: int
    kind: MessageKind
    dedupe_key: str
    payload: Mapping[str, Scalar]
    created_at: dt.datetime
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None


def message_payload(
    kind: MessageKind, booking: Booking, clinic: Clinic, vaccine_name: str
) -> dict[str, Scalar]:
    """What the notifier needs to tell the person: no Medicare number, no date of birth."""
    return {
        "kind": kind.value,
        "booking_id": booking.id,
        "reference": booking.reference,
        "phone": booking.person.phone or None,
        "clinic_id": clinic.id,
        "clinic_name": clinic.name,
        "clinic_address": clinic.address,
        "date": booking.local_date.isoformat(),
        "time": f"{booking.local_time:%H:%M}",
        "vaccine": booking.vaccine,
        "vaccine_name": vaccine_name,
        "dose": booking.dose,
    }


def dose_dates(bookings: Sequence[Booking], vaccine: str) -> list[dt.date]:
    """The dates of the doses `bookings` show were given (attended) for `vaccine`."""
    return sorted(
        b.local_date
        for b in bookings
        if b.vaccine == vaccine and b.status is BookingStatus.ATTENDED
    )


AU_SUBDIVISIONS = frozenset({"ACT", "NSW", "NT", "QLD", "SA", "TAS", "VIC", "WA"})


def holidays_for(region: str, first: dt.date, days: int) -> frozenset[dt.date]:
    """Public holidays of an Australian state or territory (`region`) over the days from
    `first`; none for another region."""
    code = region.strip().upper()
    if code not in AU_SUBDIVISIONS or days <= 0:
        return frozenset()
    import holidays

    last = first + dt.timedelta(days=days)
    calendar = holidays.country_holidays("AU", subdiv=code, years=range(first.year, last.year + 1))
    return frozenset(d for d in calendar if first <= d < last)
