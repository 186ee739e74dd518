"""The booking service behind the IVR's `booking` steps.

Owns: turning a flow's `booking` step (`action`, evaluated `args`, the call's context)
into store operations and eligibility checks, and their answers into an outcome plus flat
scalar data (`booking.<key>` flow variables); the keypad offers (up to `MAX_CLINICS`
clinics, up to `MAX_TIMES` times, option N on key N); the masking of what it logs.

Must not know: SIP, audio, prompts, the interpreter; which store it talks to.

    outcome, data = await service.handle(action, args, context)

`context`: `call_id`, `caller` (the caller ID number, any form) and `actor` (for the
audit trail: `call:<id>`, `agent:<name>`, `webhook`; default `call:<call_id>`).
A `CallContext` or a mapping with those keys. Store failures (StoreError, a lost
connection) are raised, and the engine sends the flow to the step's `failed`.

Args are what a flow passes: dates as "YYYY-MM-DD" (or 8 digits YYYYMMDD), Medicare as
its 10 or 11 digits, numbers and choices as ints or digit strings. A bad or missing
argument gives the outcome `invalid` with `error` naming the argument and what was
expected (never the value: it may be a Medicare number).

Booking summary keys (`found`, `hold`, `confirm`, `cancel`, `reschedule`):
    booking_id (int), reference (str, None until confirmed), reference_spoken
    ("F K 3 7, M 9 R"), status (held|confirmed|cancelled|attended|expired), clinic_id,
    clinic_name, clinic_address, date (YYYY-MM-DD, local), time (HH:MM, local), weekday
    (monday…sunday), vaccine, vaccine_name, dose (int)

Actions — args (* required) → outcomes: data

find_caller     phone (default: the caller ID)
                → found: summary of the soonest upcoming confirmed booking, count (int)
                → not_found: count (0)
find_reference  reference* (letters, or the keys a caller pressed: F=3 K=5 M=6 R=7 W=9),
                dob (when given it must match)
                → found: summary | not_found | ambiguous (keys match several bookings;
                  ask for dob) | invalid: error
eligibility     dob*, medicare, vaccine, doses (given elsewhere), last_dose
                → eligible: vaccine, vaccine_name, dose, age, earliest (first day a slot
                  may be on) | too_young | too_soon: the same plus earliest (past the
                  search window) | too_old | not_offered | complete: vaccine,
                  vaccine_name, age | already_booked: summary of that booking | invalid
clinics         postcode*, vaccine, from (earliest day)
                → found: locality, clinic_count, clinic_offer, clinicN_id, clinicN_name,
                  clinicN_address, clinicN_km (int), clinicN_date, clinicN_time (its
                  first free time), for N = 1…clinic_count
                → none: locality | unknown_postcode | invalid: error
slots           clinic (id) or choice* + offer* (clinic_offer); date (that day only),
                from (earliest day), after (a slot id: times after it)
                → found: clinic_id, clinic_name, slot_count, slot_offer, more (bool),
                  slotN_id, slotN_date, slotN_time, slotN_weekday
                → none: clinic_id, clinic_name | invalid: error
hold            slot (id) or choice* + offer* (slot_offer); dob*, medicare*, phone
                (default: the caller ID), vaccine, doses, last_dose, key (idempotency;
                default: call id + slot)
                → ok: summary, hold_id (int), hold_expires (HH:MM local), replayed (bool)
                → full (taken, or too soon now) | not_eligible: reason (too_young,
                  too_old, too_soon, complete, not_offered, already_booked), earliest
                → invalid: error
confirm         hold* (hold_id), key (default: call id + hold)
                → ok: summary (with reference), already (bool: it was confirmed before)
                → expired (the hold ran out; its place is released) | not_found | invalid
cancel          booking (booking_id) or reference (+ dob)
                → ok: summary | not_found (none, or not held/confirmed): status when known
                → too_late (the appointment has started) | invalid: error
reschedule      booking (booking_id) or reference (+ dob); slot or choice + offer
                → ok: summary | full | not_found | too_late | not_eligible: reason,
                  earliest | invalid: error
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from hotline.booking import reference as refs
from hotline.booking.geo import PostcodeTable, nearest, shipped_postcodes
from hotline.booking.model import (
    WEEKDAY_NAMES,
    Booking,
    BookingStatus,
    Clinic,
    MessageKind,
    Person,
    Scalar,
    Slot,
    dose_dates,
    medicare_problem,
    message_payload,
    normalise_phone,
)
from hotline.booking.rules import Eligibility, Rules, Verdict, assess
from hotline.booking.store import (
    Actor,
    BookingStore,
    ChangeStatus,
    HoldRequest,
    HoldStatus,
)

__all__ = [
    "ACTIONS",
    "MAX_CLINICS",
    "MAX_TIMES",
    "OUTCOMES",
    "BookingService",
    "CallContext",
    "Data",
]

log = logging.getLogger("hotline.booking")

Data = dict[str, Scalar]
MAX_CLINICS: Final = 3
MAX_TIMES: Final = 4
# Offers a caller is still deciding on: a time is offered to at most as many callers at
# once as it has free places, so a busy line's callers do not all race for the earliest
# times (they get the next ones instead). An offer counts for OFFER_PENDING_SECONDS, or
# until its caller holds a time; a caller asking again does not compete with themselves.
OFFER_PENDING_SECONDS: Final = 90.0
OFFER_LOOKAHEAD: Final = 24  # free times looked at to find enough uncontended ones
OFFER_SEPARATOR: Final = "|"

OUTCOMES: Final[dict[str, tuple[str, ...]]] = {
    "find_caller": ("found", "not_found"),
    "find_reference": ("found", "not_found", "ambiguous", "invalid"),
    "eligibility": (
        "eligible",
        "too_young",
        "too_old",
        "too_soon",
        "complete",
        "not_offered",
        "already_booked",
        "invalid",
    ),
    "clinics": ("found", "none", "unknown_postcode", "invalid"),
    "slots": ("found", "none", "invalid"),
    "hold": ("ok", "full", "not_eligible", "invalid"),
    "confirm": ("ok", "expired", "not_found", "invalid"),
    "cancel": ("ok", "not_found", "too_late", "invalid"),
    "reschedule": ("ok", "full", "not_found", "too_late", "not_eligible", "invalid"),
}
"""Every outcome each action can give (the flow checker can compare a step's map)."""
ACTIONS: Final = tuple(OUTCOMES)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the service knows about who asks."""

    call_id: str | None = None
    caller: str | None = None
    actor: str | None = None

    @classmethod
    def of(cls, context: CallContext | Mapping[str, object] | None) -> CallContext:
        if context is None:
            return cls()
        if isinstance(context, CallContext):
            return context

        def text(*names: str) -> str | None:
            for name in names:
                value = context.get(name)
                if value is not None and str(value) != "":
                    return str(value)
            return None

        return cls(text("call_id"), text("caller", "caller_number", "caller.number"), text("actor"))

    @property
    def audit_actor(self) -> Actor:
        name = self.actor or (f"call:{self.call_id}" if self.call_id else "unknown")
        return Actor(name, self.call_id)


_Handler = Callable[[Mapping[str, object], "CallContext", dt.datetime], Awaitable[tuple[str, Data]]]


class _Invalid(Exception):
    """A bad argument: becomes the outcome `invalid` with `error`."""


_DIGITS8: Final = re.compile(r"\d{8}")


def _date(args: Mapping[str, object], name: str, *, required: bool) -> dt.date | None:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(f"{name}: expected a date YYYY-MM-DD, found nothing")
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS8.fullmatch(text):
            text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise _Invalid(f"{name}: expected a date YYYY-MM-DD")


def _int(
    args: Mapping[str, object], name: str, *, required: bool, low: int = 0, high: int | None = None
) -> int | None:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(f"{name}: expected a number, found nothing")
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _Invalid(f"{name}: expected a whole number {span}")
    return number


def _text(args: Mapping[str, object], name: str, *, required: bool) -> str | None:
    value = args.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _Invalid(f"{name}: expected a value, found nothing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{name}: expected text")
    return str(value).strip()


def _pick(args: Mapping[str, object], direct: str, what: str) -> str:
    """The id given directly (`direct`), or the `choice`-th entry of `offer`."""
    chosen = _text(args, direct, required=False)
    if chosen is not None:
        return chosen
    if args.get("choice") is None and args.get("offer") is None:
        raise _Invalid(f"{direct}: expected a {what} id, or choice and offer")
    offer = _text(args, "offer", required=True) or ""
    entries = offer.split(OFFER_SEPARATOR)
    choice = _int(args, "choice", required=True, low=1, high=len(entries))
    assert choice is not None
    return entries[choice - 1]


def _hhmm(time: dt.time) -> str:
    return f"{time:%H:%M}"


class BookingService:
    """`handle(action, args, context)` for the IVR (see the module text)."""

    def __init__(
        self,
        store: BookingStore,
        rules: Rules,
        clock: Callable[[], dt.datetime],
        *,
        postcodes: PostcodeTable | None = None,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.postcodes = postcodes if postcodes is not None else shipped_postcodes()
        self._randbelow = randbelow
        self._pending: dict[str, dict[str, dt.datetime]] = {}  # slot → call → offered at
        self._handlers: dict[str, _Handler] = {
            "find_caller": self._find_caller,
            "find_reference": self._find_reference,
            "eligibility": self._eligibility,
            "clinics": self._clinics,
            "slots": self._slots,
            "hold": self._hold,
            "confirm": self._confirm,
            "cancel": self._cancel,
            "reschedule": self._reschedule,
        }

    # -- entry points --------------------------------------------------------------------

    async def handle(
        self,
        action: str,
        args: Mapping[str, object],
        context: CallContext | Mapping[str, object] | None = None,
    ) -> tuple[str, Data]:
        """Run one booking action; returns (outcome, data). Raises ValueError for an
        unknown action (the flow loader refuses those) and store errors as they come."""
        handler = self._handlers.get(action)
        if handler is None:
            raise ValueError(
                f"unknown booking action {action!r}; expected one of {', '.join(ACTIONS)}"
            )
        ctx = CallContext.of(context)
        now = self._now()
        try:
            outcome, data = await handler(args, ctx, now)
        except _Invalid as exc:
            outcome, data = "invalid", {"error": str(exc)}
        log.info(
            "call %s: booking %s → %s%s",
            ctx.call_id or "-",
            action,
            outcome,
            self._log_suffix(data),
        )
        return outcome, data

    async def release_expired(self) -> int:
        """Expire the holds whose time ran out (the engine calls this now and then)."""
        count = await self.store.release_expired(self._now(), actor=Actor("system:sweep"))
        if count:
            log.info("released %d expired hold(s)", count)
        return count

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the booking clock must return aware datetimes")
        return now.astimezone(dt.UTC)

    def _today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.rules.zone).date()

    def _day_start(self, day: dt.date) -> dt.datetime:
        local = dt.datetime.combine(day, dt.time(0, 0), tzinfo=self.rules.zone)
        return local.astimezone(dt.UTC)

    def _window(
        self, now: dt.datetime, first_day: dt.date | None
    ) -> tuple[dt.datetime, dt.datetime]:
        """[earliest start, end) of the slots offered now: from now + lead time (or
        `first_day`, if later) to the end of the search window."""
        start = now + self.rules.lead_time
        if first_day is not None:
            start = max(start, self._day_start(first_day))
        end = self._day_start(self._today(now) + dt.timedelta(days=self.rules.search_days + 1))
        return start, end

    @staticmethod
    def _log_suffix(data: Mapping[str, Scalar]) -> str:
        shown = [
            f"{k}={data[k]}"
            for k in (
                "booking_id",
                "reference",
                "hold_id",
                "reason",
                "error",
                "clinic_count",
                "slot_count",
            )
            if data.get(k) is not None
        ]
        return f" ({', '.join(shown)})" if shown else ""

    def _vaccine(self, args: Mapping[str, object]) -> str:
        code = _text(args, "vaccine", required=False) or self.rules.default_vaccine
        if code not in self.rules.vaccines:
            raise _Invalid(f"vaccine: expected one of {', '.join(sorted(self.rules.vaccines))}")
        return code

    def _vaccine_name(self, code: str) -> str:
        rule = self.rules.vaccines.get(code)
        return rule.name if rule is not None else code

    def _message(self, kind: MessageKind, booking: Booking, clinic: Clinic) -> Data:
        return message_payload(kind, booking, clinic, self._vaccine_name(booking.vaccine))

    def _new_reference(self) -> str:
        return refs.new_reference(self._randbelow)

    @staticmethod
    def _medicare(args: Mapping[str, object]) -> str:
        number = _text(args, "medicare", required=True) or ""
        problem = medicare_problem(number)
        if problem is not None:
            raise _Invalid(f"medicare: {problem}")
        return number

    def _dob(self, args: Mapping[str, object], now: dt.datetime) -> dt.date:
        dob = _date(args, "dob", required=True)
        assert dob is not None
        today = self._today(now)
        if dob > today:
            raise _Invalid("dob: expected a date of birth not after today")
        if dob.year < today.year - 130:
            raise _Invalid("dob: expected a date of birth within the last 130 years")
        return dob

    def _phone(self, args: Mapping[str, object], ctx: CallContext) -> str:
        given = _text(args, "phone", required=False)
        return normalise_phone(given if given is not None else (ctx.caller or ""))

    async def _summary(self, booking: Booking) -> Data:
        clinic = await self.store.clinic(booking.clinic_id)
        return {
            "booking_id": booking.id,
            "reference": booking.reference,
            "reference_spoken": None
            if booking.reference is None
            else refs.spoken(booking.reference),
            "status": booking.status.value,
            "clinic_id": booking.clinic_id,
            "clinic_name": clinic.name if clinic is not None else booking.clinic_id,
            "clinic_address": clinic.address if clinic is not None else "",
            "date": booking.local_date.isoformat(),
            "time": _hhmm(booking.local_time),
            "weekday": WEEKDAY_NAMES[booking.local_date.weekday()],
            "vaccine": booking.vaccine,
            "vaccine_name": self._vaccine_name(booking.vaccine),
            "dose": booking.dose,
        }

    async def _history(
        self,
        person: Person | None,
        dob: dt.date,
        vaccine: str,
        args: Mapping[str, object],
        now: dt.datetime,
    ) -> tuple[list[dt.date], Booking | None, list[Booking]]:
        """The dates of the doses given (the store's attended bookings, topped up with
        what the caller says: `doses`, `last_dose`), an upcoming confirmed booking for
        the vaccine if any, and all the person's bookings."""
        known: list[Booking] = []
        if person is not None:
            known = await self.store.bookings_of_person(person.card, person.dob)
        given = dose_dates(known, vaccine)
        said = _int(args, "doses", required=False, low=0, high=20)
        last = _date(args, "last_dose", required=False)
        if last is not None and last < dob:
            raise _Invalid("last_dose: expected a date after the date of birth")
        if said is not None and said > len(given):
            given = given + [last or dob] * (said - len(given))
        elif last is not None and given and last > max(given):
            given[-1] = last
        elif last is not None and not given:
            given = [last]
        upcoming = sorted(
            (
                b
                for b in known
                if b.vaccine == vaccine
                and b.status is BookingStatus.CONFIRMED
                and b.starts_at >= now
            ),
            key=lambda b: b.starts_at,
        )
        return sorted(given), (upcoming[0] if upcoming else None), known

    def _eligibility_data(self, verdict: Eligibility) -> Data:
        return {
            "vaccine": verdict.vaccine,
            "vaccine_name": self._vaccine_name(verdict.vaccine),
            "dose": verdict.dose,
            "age": verdict.age,
            "earliest": None if verdict.earliest is None else verdict.earliest.isoformat(),
        }

    async def _find_booking(self, args: Mapping[str, object]) -> tuple[str, Booking | None]:
        """The booking named by `booking` (id) or `reference` (+ dob):
        ("found" | "not_found" | "ambiguous", booking)."""
        booking_id = _int(args, "booking", required=False, low=1)
        if booking_id is not None:
            found = await self.store.booking(booking_id)
            return ("found", found) if found is not None else ("not_found", None)
        if args.get("reference") is None:
            raise _Invalid("booking: expected a booking id or a reference")
        text = _text(args, "reference", required=True) or ""
        compact = "".join(ch for ch in text if not ch.isspace() and ch not in "-.")
        if compact.isdigit():
            candidates = refs.from_keypad(compact)
            if not candidates:
                raise _Invalid("reference: those keys spell no valid booking reference")
        else:
            try:
                candidates = (refs.parse(text),)
            except refs.InvalidReference as exc:
                raise _Invalid(f"reference: {exc.reason}") from None
        bookings = await self.store.bookings_by_reference(candidates)
        dob = _date(args, "dob", required=False)
        if dob is not None:
            bookings = [b for b in bookings if b.person.dob == dob]
        if not bookings:
            return "not_found", None
        if len(bookings) > 1:
            return "ambiguous", None
        return "found", bookings[0]

    # -- actions -------------------------------------------------------------------------

    async def _find_caller(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        phone = self._phone(args, ctx)
        if not phone:
            return "not_found", {"count": 0}
        upcoming = await self.store.upcoming_by_phone(phone, since=now)
        if not upcoming:
            return "not_found", {"count": 0}
        data = await self._summary(upcoming[0])
        data["count"] = len(upcoming)
        return "found", data

    async def _find_reference(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        if args.get("reference") is None:
            raise _Invalid("reference: expected a booking reference, found nothing")
        outcome, booking = await self._find_booking(
            {k: v for k, v in args.items() if k != "booking"}
        )
        if booking is None:
            return outcome, {}
        return "found", await self._summary(booking)

    async def _eligibility(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        dob = self._dob(args, now)
        vaccine = self._vaccine(args)
        person = None
        if args.get("medicare") not in (None, ""):
            person = Person(self._medicare(args), dob)
        given, upcoming, _ = await self._history(person, dob, vaccine, args, now)
        if upcoming is not None:
            return "already_booked", await self._summary(upcoming)
        verdict = assess(
            self.rules, vaccine, dob, self._today(now), given, horizon_days=self.rules.search_days
        )
        data = self._eligibility_data(verdict)
        if verdict.verdict is Verdict.COMPLETE:
            data.pop("dose")
            data.pop("earliest")
        return verdict.verdict.value, data

    async def _clinics(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        postcode = _text(args, "postcode", required=True) or ""
        if not (len(postcode) == 4 and postcode.isdigit()):
            raise _Invalid("postcode: expected four digits")
        vaccine = self._vaccine(args)
        place = self.postcodes.get(postcode)
        if place is None:
            return "unknown_postcode", {}
        start, end = self._window(now, _date(args, "from", required=False))
        offering = [c for c in await self.store.clinics() if vaccine in c.vaccines]
        ranked = nearest((place.lat, place.lon), offering, max_km=self.rules.max_distance_km)
        data: Data = {"locality": place.locality}
        if not ranked:
            return "none", data
        first_free = await self.store.next_free([r.clinic.id for r in ranked], start=start, end=end)
        chosen = [r for r in ranked if r.clinic.id in first_free][:MAX_CLINICS]
        if not chosen:
            return "none", data
        data["clinic_count"] = len(chosen)
        data["clinic_offer"] = OFFER_SEPARATOR.join(r.clinic.id for r in chosen)
        for n, r in enumerate(chosen, start=1):
            first = first_free[r.clinic.id].astimezone(self.rules.zone)
            data[f"clinic{n}_id"] = r.clinic.id
            data[f"clinic{n}_name"] = r.clinic.name
            data[f"clinic{n}_address"] = r.clinic.address
            data[f"clinic{n}_km"] = round(r.km)
            data[f"clinic{n}_date"] = first.date().isoformat()
            data[f"clinic{n}_time"] = _hhmm(first.time())
        return "found", data

    async def _slots(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        clinic_id = _pick(args, "clinic", "clinic")
        clinic = await self.store.clinic(clinic_id)
        if clinic is None or not clinic.active:
            raise _Invalid("clinic: no such clinic")
        day = _date(args, "date", required=False)
        start, end = self._window(now, day or _date(args, "from", required=False))
        if day is not None:
            end = min(end, self._day_start(day + dt.timedelta(days=1)))
        after: dt.datetime | None = None
        after_id = _text(args, "after", required=False)
        if after_id is not None:
            after_slot = await self.store.slot(after_id)
            if after_slot is None:
                raise _Invalid("after: no such slot")
            after = after_slot.starts_at
        found = await self.store.free_slots(
            clinic.id, start=start, end=end, limit=OFFER_LOOKAHEAD, after=after
        )
        data: Data = {"clinic_id": clinic.id, "clinic_name": clinic.name}
        if not found:
            return "none", data
        offered = self._uncontended(found, ctx.call_id, now)
        data["slot_count"] = len(offered)
        data["slot_offer"] = OFFER_SEPARATOR.join(s.id for s in offered)
        data["more"] = len(found) > MAX_TIMES
        for n, s in enumerate(offered, start=1):
            data[f"slot{n}_id"] = s.id
            data[f"slot{n}_date"] = s.local_date.isoformat()
            data[f"slot{n}_time"] = _hhmm(s.local_time)
            data[f"slot{n}_weekday"] = WEEKDAY_NAMES[s.local_date.weekday()]
        return "found", data

    def _uncontended(self, found: Sequence[Slot], call_id: str | None,
                     now: dt.datetime) -> list[Slot]:
        """Up to MAX_TIMES of `found` (in time order), preferring times with more free
        places than other callers are deciding on; the rest of the offer, if needed,
        from the contended ones. The offer is remembered for `call_id`."""
        horizon = now - dt.timedelta(seconds=OFFER_PENDING_SECONDS)
        free: list[Slot] = []
        contended: list[Slot] = []
        for slot in found:
            offers = self._pending.get(slot.id)
            others = 0
            if offers:
                for call, at in list(offers.items()):
                    if at < horizon:
                        del offers[call]
                    elif call != call_id:
                        others += 1
                if not offers:
                    del self._pending[slot.id]
            (free if slot.free > others else contended).append(slot)
        offered = free[:MAX_TIMES]
        if len(offered) < MAX_TIMES:
            offered = sorted([*offered, *contended[: MAX_TIMES - len(offered)]],
                             key=lambda s: s.starts_at)
        if call_id is not None:
            for slot in offered:
                self._pending.setdefault(slot.id, {})[call_id] = now
        if len(self._pending) > 50_000:  # callers who never came back: forget them
            self._pending = {k: v for k, v in self._pending.items()
                             if any(at >= horizon for at in v.values())}
        return offered

    def _release_offers(self, call_id: str | None) -> None:
        """The caller holds a time: their offers no longer stand for anyone else."""
        if call_id is None:
            return
        for slot_id in [k for k, v in self._pending.items() if call_id in v]:
            offers = self._pending[slot_id]
            del offers[call_id]
            if not offers:
                del self._pending[slot_id]

    def _slot_verdict(
        self, slot: Slot, dob: dt.date, vaccine: str, given: Sequence[dt.date]
    ) -> Eligibility:
        return assess(self.rules, vaccine, dob, slot.local_date, given)

    async def _hold(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        slot_id = _pick(args, "slot", "slot")
        dob = self._dob(args, now)
        person = Person(self._medicare(args), dob, self._phone(args, ctx))
        vaccine = self._vaccine(args)
        slot = await self.store.slot(slot_id)
        if slot is None:
            raise _Invalid("slot: no such slot")
        given, upcoming, known = await self._history(person, dob, vaccine, args, now)
        if upcoming is not None:
            return "not_eligible", {"reason": "already_booked", "earliest": None}
        verdict = self._slot_verdict(slot, dob, vaccine, given)
        if not verdict.eligible or verdict.dose is None:
            earliest = assess(
                self.rules,
                vaccine,
                dob,
                self._today(now),
                given,
                horizon_days=self.rules.search_days,
            ).earliest
            return "not_eligible", {
                "reason": verdict.verdict.value,
                "earliest": None if earliest is None else earliest.isoformat(),
            }
        key = _text(args, "key", required=False)
        if key is None and ctx.call_id is not None:
            key = f"{ctx.call_id}:hold:{slot.id}"
        self._release_offers(ctx.call_id)
        result = await self.store.hold(
            HoldRequest(
                slot_id=slot.id,
                vaccine=vaccine,
                dose=verdict.dose,
                person=person,
                now=now,
                expires_at=now + self.rules.hold_time,
                not_before=now + self.rules.lead_time,
                actor=ctx.audit_actor,
                key=key,
            )
        )
        if result.status is not HoldStatus.OK or result.booking is None:
            return "full", {}
        booking = result.booking
        for other in known:  # a caller who went back for another time: free the old place
            if other.status is BookingStatus.HELD and other.id != booking.id:
                await self.store.cancel(
                    other.id, now=now, actor=ctx.audit_actor, message=self._message
                )
        data = await self._summary(booking)
        data["hold_id"] = booking.id
        data["hold_expires"] = _hhmm(booking.hold_expires_at.astimezone(self.rules.zone).time())
        data["replayed"] = result.replayed
        return "ok", data

    async def _confirm(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        hold_id = _int(args, "hold", required=True, low=1)
        assert hold_id is not None
        key = _text(args, "key", required=False)
        if key is None and ctx.call_id is not None:
            key = f"{ctx.call_id}:confirm:{hold_id}"
        result = await self.store.confirm(
            hold_id,
            now=now,
            actor=ctx.audit_actor,
            new_reference=self._new_reference,
            message=self._message,
            key=key,
        )
        if result.status is ChangeStatus.OK and result.booking is not None:
            data = await self._summary(result.booking)
            data["already"] = result.replayed
            return "ok", data
        if result.status is ChangeStatus.EXPIRED:
            return "expired", {}
        return "not_found", {} if result.booking is None else {
            "status": result.booking.status.value
        }

    async def _cancel(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        _, booking = await self._find_booking(args)
        if booking is None:
            return "not_found", {}
        if not booking.active:
            return "not_found", {"status": booking.status.value}
        if booking.starts_at <= now:
            return "too_late", await self._summary(booking)
        result = await self.store.cancel(
            booking.id, now=now, actor=ctx.audit_actor, message=self._message
        )
        if result.status is ChangeStatus.OK and result.booking is not None:
            return "ok", await self._summary(result.booking)
        return "not_found", {} if result.booking is None else {
            "status": result.booking.status.value
        }

    async def _reschedule(
        self, args: Mapping[str, object], ctx: CallContext, now: dt.datetime
    ) -> tuple[str, Data]:
        _, booking = await self._find_booking(args)
        slot_id = _pick(args, "slot", "slot")
        if booking is None or booking.status is not BookingStatus.CONFIRMED:
            return "not_found", {} if booking is None else {"status": booking.status.value}
        if booking.starts_at <= now:
            return "too_late", await self._summary(booking)
        slot = await self.store.slot(slot_id)
        if slot is None:
            raise _Invalid("slot: no such slot")
        history = await self.store.bookings_of_person(booking.person.card, booking.person.dob)
        given = [d for d in dose_dates(history, booking.vaccine)][: booking.dose - 1]
        verdict = self._slot_verdict(slot, booking.person.dob, booking.vaccine, given)
        if not verdict.eligible:
            earliest = assess(
                self.rules,
                booking.vaccine,
                booking.person.dob,
                self._today(now),
                given,
                horizon_days=self.rules.search_days,
            ).earliest
            return "not_eligible", {
                "reason": verdict.verdict.value,
                "earliest": None if earliest is None else earliest.isoformat(),
            }
        result = await self.store.reschedule(
            booking.id,
            slot.id,
            now=now,
            not_before=now + self.rules.lead_time,
            actor=ctx.audit_actor,
            message=self._message,
        )
        if result.status is ChangeStatus.OK and result.booking is not None:
            return "ok", await self._summary(result.booking)
        if result.status in (ChangeStatus.FULL, ChangeStatus.NO_SLOT):
            return "full", {}
        return "not_found", {}
