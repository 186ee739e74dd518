"""The booking service as the IVR uses it, over an in-memory SQLite store and a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from hotline.booking import reference as refs
from hotline.booking.model import Clinic, generate_slots, parse_sessions
from hotline.booking.rules import default_rules
from hotline.booking.service import OUTCOMES, BookingService
from hotline.booking.store import Actor
from hotline.booking.store.sqlite import SqliteStore

MEDICARE = "2123456701"
OTHER_MEDICARE = "3123456711"  # another valid card (check digit 1)
DOB = "1980-01-02"
CALLER = "+61 412 345 678"
START = dt.datetime(2026, 5, 10, 22, 0, tzinfo=dt.UTC)  # Monday 11 May 08:00 in Canberra


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def clinic(cid: str, name: str, lat: float, lon: float, vaccines: str, sessions: str) -> Clinic:
    return Clinic(
        cid,
        name,
        f"{name} street",
        "2600",
        "ACT",
        lat,
        lon,
        tuple(vaccines.split()),
        parse_sessions(sessions),
    )


CLINICS = [
    clinic("civic", "Civic", -35.279, 149.130, "covid flu", "Mon-Fri 09:00-11:00 30min x2"),
    clinic("belconnen", "Belconnen", -35.238, 149.066, "covid", "Mon-Fri 09:00-10:00 30min x1"),
    clinic("woden", "Woden", -35.345, 149.088, "covid", "Mon-Fri 09:00-10:00 30min x1"),
    clinic("dickson", "Dickson", -35.251, 149.139, "flu", "Mon-Fri 09:00-10:00 30min x1"),
    clinic("sydney", "Sydney", -33.863, 151.207, "covid", "Mon-Fri 09:00-10:00 30min x5"),
]

Scenario = Callable[[BookingService, SqliteStore, Clock], Awaitable[None]]


def run(scenario: Scenario, *, randbelow: Callable[[int], int] | None = None) -> None:
    async def main() -> None:
        clock = Clock(START)
        rules = default_rules()
        async with SqliteStore(":memory:") as store:
            await store.save_clinics(CLINICS, now=START)
            for c in CLINICS:
                await store.add_slots(generate_slots(c, dt.date(2026, 5, 11), 5, rules.zone))
            kwargs: dict[str, Any] = {} if randbelow is None else {"randbelow": randbelow}
            service = BookingService(store, rules, clock, **kwargs)
            await scenario(service, store, clock)

    asyncio.run(main())


async def handle(
    service: BookingService,
    action: str,
    args: dict[str, Any],
    context: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """`service.handle` with the data typed loosely, as a flow sees it."""
    outcome, data = await service.handle(action, args, context)
    return outcome, dict(data)


def ctx(call_id: str = "call-1", caller: str = CALLER) -> dict[str, str]:
    return {"call_id": call_id, "caller": caller}


PERSON = {"dob": DOB, "medicare": MEDICARE}


async def book(
    service: BookingService,
    *,
    clinic_choice: int = 1,
    slot_choice: int = 1,
    postcode: str = "2617",
    call: str = "call-1",
    person: dict[str, str] = PERSON,
) -> dict[str, Any]:
    outcome, clinics = await handle(service, "clinics", {"postcode": postcode}, ctx(call))
    assert outcome == "found", clinics
    outcome, slots = await handle(
        service, "slots", {"choice": clinic_choice, "offer": clinics["clinic_offer"]}, ctx(call)
    )
    assert outcome == "found", slots
    outcome, held = await handle(
        service, "hold", {"choice": slot_choice, "offer": slots["slot_offer"], **person}, ctx(call)
    )
    assert outcome == "ok", held
    outcome, done = await handle(service, "confirm", {"hold": held["hold_id"]}, ctx(call))
    assert outcome == "ok", done
    return done


def test_outcomes_cover_every_flow_action() -> None:
    from typing import get_args

    from hotline.ivr.model import BookingAction

    assert set(OUTCOMES) == set(get_args(BookingAction))


def test_a_caller_books_finds_and_cancels_by_keypad() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        outcome, data = await handle(service, "eligibility", PERSON, ctx())
        assert outcome == "eligible"
        assert data == {
            "vaccine": "covid",
            "vaccine_name": "COVID-19",
            "dose": 1,
            "age": 46,
            "earliest": "2026-05-11",
        }

        outcome, clinics = await handle(service, "clinics", {"postcode": "2617"}, ctx())
        assert outcome == "found"
        assert clinics["locality"] == "Belconnen"
        assert clinics["clinic_count"] == 3
        assert [clinics[f"clinic{n}_id"] for n in (1, 2, 3)] == ["belconnen", "civic", "woden"]
        assert clinics["clinic_offer"] == "belconnen|civic|woden"
        assert clinics["clinic1_km"] == 0 and clinics["clinic2_km"] == 8
        assert (clinics["clinic2_date"], clinics["clinic2_time"]) == ("2026-05-11", "09:00")
        assert "clinic4_id" not in clinics

        outcome, slots = await handle(
            service, "slots", {"choice": "2", "offer": clinics["clinic_offer"]}, ctx()
        )
        assert outcome == "found"
        assert slots["clinic_name"] == "Civic" and slots["slot_count"] == 4
        assert [slots[f"slot{n}_time"] for n in range(1, 5)] == ["09:00", "09:30", "10:00", "10:30"]
        assert slots["slot1_date"] == "2026-05-11" and slots["slot1_weekday"] == "monday"
        assert slots["more"] is True

        outcome, held = await handle(
            service, "hold", {"choice": 2, "offer": slots["slot_offer"], **PERSON}, ctx()
        )
        assert outcome == "ok"
        assert held["status"] == "held" and held["reference"] is None
        assert (held["clinic_name"], held["date"], held["time"]) == ("Civic", "2026-05-11", "09:30")
        assert held["hold_expires"] == "08:10" and held["replayed"] is False

        outcome, done = await handle(service, "confirm", {"hold": held["hold_id"]}, ctx())
        assert outcome == "ok" and done["already"] is False
        reference = done["reference"]
        assert refs.is_valid(reference)
        assert done["reference_spoken"] == refs.spoken(reference)
        assert done["status"] == "confirmed" and done["booking_id"] == held["hold_id"]

        # A repeat caller is recognised by caller ID, in any number format.
        outcome, again = await handle(service, "find_caller", {}, ctx("call-2", "0412345678"))
        assert outcome == "found" and again["reference"] == reference and again["count"] == 1
        assert again["weekday"] == "monday" and again["clinic_address"] == "Civic street"
        outcome, _ = await handle(service, "find_caller", {}, ctx("call-2", "0299999999"))
        assert outcome == "not_found"

        # …or by the keys of the reference, with the date of birth.
        keys = refs.keypad_form(reference)
        outcome, found = await handle(
            service, "find_reference", {"reference": keys, "dob": DOB}, ctx("call-2")
        )
        assert outcome == "found" and found["booking_id"] == done["booking_id"]
        outcome, _ = await handle(
            service, "find_reference", {"reference": keys, "dob": "1990-01-01"}, ctx()
        )
        assert outcome == "not_found"
        outcome, found = await handle(
            service, "find_reference", {"reference": reference.lower()}, ctx()
        )
        assert outcome == "found"

        outcome, cancelled = await handle(
            service, "cancel", {"booking": found["booking_id"]}, ctx("call-2")
        )
        assert outcome == "ok" and cancelled["status"] == "cancelled"
        outcome, _ = await handle(service, "find_caller", {}, ctx("call-3", CALLER))
        assert outcome == "not_found"
        outcome, data = await handle(service, "cancel", {"booking": found["booking_id"]}, ctx())
        assert (outcome, data) == ("not_found", {"status": "cancelled"})
        slot = await store.slot("civic@20260511T0930")
        assert slot is not None and slot.taken == 0
        trail = await store.audit_trail(done["booking_id"])
        assert [(a.action, a.actor, a.call_id) for a in trail] == [
            ("hold", "call:call-1", "call-1"),
            ("confirm", "call:call-1", "call-1"),
            ("cancel", "call:call-2", "call-2"),
        ]

    run(scenario)


def test_holds_expire_with_the_clock() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        slot = {"slot": "belconnen@20260512T0900"}  # one place
        outcome, first = await handle(service, "hold", {**slot, **PERSON}, ctx("a"))
        assert outcome == "ok"
        other = {"dob": "1975-03-04", "medicare": OTHER_MEDICARE}
        outcome, _ = await handle(service, "hold", {**slot, **other}, ctx("b"))
        assert outcome == "full"

        clock.advance(minutes=9, seconds=59)
        outcome, _ = await handle(service, "hold", {**slot, **other}, ctx("b"))
        assert outcome == "full"
        clock.advance(seconds=1)  # exactly hold_minutes after the hold: it is over
        outcome, second = await handle(service, "hold", {**slot, **other}, ctx("b"))
        assert outcome == "ok"
        outcome, _ = await handle(service, "confirm", {"hold": first["hold_id"]}, ctx("a"))
        assert outcome == "expired"
        expired = await store.booking(first["hold_id"])
        assert expired is not None and expired.status.value == "expired"

        clock.advance(minutes=10)
        assert await service.release_expired() == 1
        assert await service.release_expired() == 0
        taken = await store.slot(slot["slot"])
        assert taken is not None and taken.taken == 0
        outcome, _ = await handle(service, "confirm", {"hold": second["hold_id"]}, ctx("b"))
        assert outcome == "expired"
        actors = [a.actor for a in await store.audit_trail(int(second["hold_id"]))]
        assert actors == ["call:b", "system:sweep"]

    run(scenario)


def test_retried_hold_and_confirm_make_one_booking_and_one_message() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        args = {"slot": "civic@20260511T0900", **PERSON}
        outcome, held = await handle(service, "hold", args, ctx())
        outcome2, again = await handle(service, "hold", args, ctx())  # the caller pressed twice
        assert (outcome, outcome2) == ("ok", "ok")
        assert again["hold_id"] == held["hold_id"] and again["replayed"] is True

        first = await handle(service, "confirm", {"hold": held["hold_id"]}, ctx())
        clock.advance(seconds=5)
        second = await handle(service, "confirm", {"hold": held["hold_id"]}, ctx())
        webhook = await handle(
            service, "confirm", {"hold": held["hold_id"], "key": "wh-1"}, {"actor": "webhook"}
        )
        assert first[0] == second[0] == webhook[0] == "ok"
        assert first[1]["reference"] == second[1]["reference"] == webhook[1]["reference"]
        assert (first[1]["already"], second[1]["already"]) == (False, True)

        slot = await store.slot("civic@20260511T0900")
        assert slot is not None and slot.taken == 1
        messages = await store.claim_outbox(clock(), lease=dt.timedelta(minutes=1))
        assert len(messages) == 1
        assert messages[0].payload["reference"] == first[1]["reference"]
        assert messages[0].payload["phone"] == "0412345678"
        assert MEDICARE not in str(messages[0].payload) and DOB not in str(messages[0].payload)
        actions = [a.action for a in await store.audit_trail(int(held["hold_id"]))]
        assert actions == ["hold", "confirm"]

    run(scenario)


def test_going_back_for_another_time_frees_the_first_hold() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        outcome, first = await handle(
            service, "hold", {"slot": "belconnen@20260511T0900", **PERSON}, ctx()
        )
        assert outcome == "ok"
        outcome, second = await handle(
            service, "hold", {"slot": "belconnen@20260511T0930", **PERSON}, ctx()
        )
        assert outcome == "ok" and second["hold_id"] != first["hold_id"]
        freed = await store.slot("belconnen@20260511T0900")
        assert freed is not None and freed.taken == 0

    run(scenario)


def test_eligibility_outcomes() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        outcome, data = await handle(service, "eligibility", {"dob": "2023-02-01"}, ctx())
        assert (outcome, data["earliest"]) == ("too_young", "2028-02-01")
        outcome, data = await handle(
            service, "eligibility", {"dob": DOB, "doses": 1, "last_dose": "2026-05-01"}, ctx()
        )
        assert (outcome, data["dose"], data["earliest"]) == ("eligible", 2, "2026-05-22")
        outcome, data = await handle(service, "eligibility", {"dob": DOB, "doses": "3"}, ctx())
        assert outcome == "complete" and "dose" not in data

        done = await book(service)
        outcome, data = await handle(service, "eligibility", PERSON, ctx("call-2"))
        assert (outcome, data["reference"]) == ("already_booked", done["reference"])
        outcome, data = await handle(
            service, "hold", {"slot": "woden@20260512T0900", **PERSON}, ctx("call-2")
        )
        assert (outcome, data["reason"]) == ("not_eligible", "already_booked")

        await store.mark_attended(done["booking_id"], now=clock(), actor=Actor("cli"))
        outcome, data = await handle(service, "eligibility", PERSON, ctx("call-3"))
        assert (outcome, data["dose"], data["earliest"]) == ("too_soon", 2, "2026-06-01")
        outcome, data = await handle(
            service, "hold", {"slot": "woden@20260512T0900", **PERSON}, ctx("call-3")
        )
        assert (outcome, data) == ("not_eligible", {"reason": "too_soon", "earliest": "2026-06-01"})

        child = {"dob": "2022-06-01", "medicare": OTHER_MEDICARE}
        outcome, data = await handle(
            service, "hold", {"slot": "woden@20260512T0900", **child}, ctx("call-4")
        )
        assert (outcome, data["reason"]) == ("not_eligible", "too_young")

    run(scenario)


@pytest.mark.parametrize(
    ("action", "args", "error"),
    [
        ("eligibility", {}, "dob: expected a date YYYY-MM-DD, found nothing"),
        ("eligibility", {"dob": "1980-13-01"}, "dob: expected a date YYYY-MM-DD"),
        ("eligibility", {"dob": "2030-01-01"}, "dob: expected a date of birth not after today"),
        ("eligibility", {"dob": DOB, "vaccine": "measles"}, "vaccine: expected one of covid, flu"),
        (
            "hold",
            {"slot": "civic@20260511T0900", "dob": DOB, "medicare": "2123456791"},
            "medicare: the check digit (9th) does not match",
        ),
        ("hold", {"slot": "nowhere@1", **PERSON}, "slot: no such slot"),
        ("hold", PERSON, "slot: expected a slot id, or choice and offer"),
        (
            "hold",
            {"choice": 4, "offer": "a|b", **PERSON},
            "choice: expected a whole number from 1 to 2",
        ),
        ("clinics", {"postcode": "26"}, "postcode: expected four digits"),
        ("slots", {"clinic": "nowhere"}, "clinic: no such clinic"),
        ("confirm", {"hold": "x"}, "hold: expected a whole number"),
        ("find_reference", {"reference": "FK37M90"}, "reference: '0' is never used"),
        ("find_reference", {"reference": "1111111"}, "reference: those keys spell no valid"),
        ("cancel", {}, "booking: expected a booking id or a reference"),
    ],
)
def test_bad_arguments_give_invalid_without_echoing_values(
    action: str, args: dict[str, Any], error: str
) -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        outcome, data = await handle(service, action, args, ctx())
        assert outcome == "invalid"
        assert str(data["error"]).startswith(error), data
        assert "2123456791" not in str(data["error"])

    run(scenario)


def test_unknown_action_is_refused() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        with pytest.raises(ValueError, match="unknown booking action 'teleport'"):
            await handle(service, "teleport", {}, ctx())

    run(scenario)


def test_nothing_sensitive_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        done = await book(service)
        await handle(service, "find_reference", {"reference": done["reference"], "dob": DOB}, ctx())
        await handle(
            service,
            "hold",
            {"slot": "civic@20260511T0900", "dob": DOB, "medicare": "2123456791"},
            ctx(),
        )
        await handle(service, "cancel", {"booking": done["booking_id"]}, ctx())

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "booking confirm → ok" in text
    for secret in (MEDICARE, "2123456791", DOB, "19800102", "412345678"):
        assert secret not in text


def test_reschedule_keeps_the_reference_and_moves_the_place() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        done = await book(service, clinic_choice=2)  # civic 09:00
        outcome, moved = await handle(
            service,
            "reschedule",
            {"reference": done["reference"], "dob": DOB, "slot": "woden@20260513T0930"},
            ctx("call-2"),
        )
        assert outcome == "ok"
        assert (moved["reference"], moved["clinic_name"], moved["date"], moved["time"]) == (
            done["reference"],
            "Woden",
            "2026-05-13",
            "09:30",
        )
        old = await store.slot("civic@20260511T0900")
        new = await store.slot("woden@20260513T0930")
        assert old is not None and new is not None and (old.taken, new.taken) == (0, 1)
        kinds = [
            m.kind.value for m in await store.claim_outbox(clock(), lease=dt.timedelta(minutes=1))
        ]
        assert kinds == ["confirmed", "rescheduled"]

        other = {"dob": "1975-03-04", "medicare": OTHER_MEDICARE}
        outcome, _ = await handle(
            service, "hold", {"slot": "belconnen@20260512T0900", **other}, ctx("call-3")
        )
        assert outcome == "ok"
        outcome, _ = await handle(
            service,
            "reschedule",
            {"booking": done["booking_id"], "slot": "belconnen@20260512T0900"},
            ctx("call-2"),
        )
        assert outcome == "full"
        clock.advance(days=3)  # the appointment on 13 May has started
        outcome, _ = await handle(
            service,
            "reschedule",
            {"booking": done["booking_id"], "slot": "civic@20260515T0900"},
            ctx("call-2"),
        )
        assert outcome == "too_late"
        outcome, _ = await handle(service, "cancel", {"booking": done["booking_id"]}, ctx())
        assert outcome == "too_late"

    run(scenario)


def test_clinic_search_outcomes_and_slot_paging() -> None:
    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        outcome, data = await handle(service, "clinics", {"postcode": "2880"}, ctx())
        assert (outcome, data) == ("none", {"locality": "Broken Hill"})
        outcome, data = await handle(service, "clinics", {"postcode": "3000"}, ctx())
        assert (outcome, data) == ("unknown_postcode", {})
        outcome, data = await handle(service, "clinics", {"postcode": "2000"}, ctx())
        assert (outcome, data["clinic_count"], data["clinic1_id"]) == ("found", 1, "sydney")
        outcome, data = await handle(
            service, "clinics", {"postcode": "2602", "vaccine": "flu"}, ctx()
        )
        assert [data[f"clinic{n}_id"] for n in (1, 2)] == ["dickson", "civic"]
        outcome, data = await handle(
            service, "clinics", {"postcode": "2602", "from": "2026-05-14"}, ctx()
        )
        assert data["clinic1_date"] == "2026-05-14"

        outcome, page1 = await handle(service, "slots", {"clinic": "civic"}, ctx())
        outcome, page2 = await handle(
            service, "slots", {"clinic": "civic", "after": page1["slot4_id"]}, ctx()
        )
        assert outcome == "found"
        assert (page2["slot1_date"], page2["slot1_time"]) == ("2026-05-12", "09:00")
        outcome, day = await handle(
            service, "slots", {"clinic": "civic", "date": "20260515"}, ctx()
        )
        assert day["slot_count"] == 4 and day["more"] is False
        assert {day[f"slot{n}_date"] for n in range(1, 5)} == {"2026-05-15"}
        outcome, data = await handle(
            service, "slots", {"clinic": "civic", "date": "2026-05-16"}, ctx()
        )
        assert (outcome, data) == ("none", {"clinic_id": "civic", "clinic_name": "Civic"})

        clock.advance(minutes=1)  # 08:01: 09:00 is inside the hour of lead time now
        outcome, data = await handle(service, "slots", {"clinic": "civic"}, ctx())
        assert data["slot1_time"] == "09:30"

    run(scenario)


def _twin_references() -> tuple[str, str]:
    """Two valid references with the same keypad keys."""
    by_keys: dict[str, list[str]] = {}
    for body in itertools.product("3F", repeat=6):
        ref = "".join(body) + refs.check_symbol("".join(body))
        by_keys.setdefault(refs.keypad_form(ref), []).append(ref)
    pair = next(v for v in by_keys.values() if len(v) >= 2)
    return pair[0], pair[1]


def test_keys_matching_two_references_ask_for_the_date_of_birth() -> None:
    first, second = _twin_references()

    def draws() -> Iterator[int]:
        for ref in (first, second):
            for symbol in ref[:6]:
                yield refs.ALPHABET.index(symbol)

    source = draws()

    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        a = await book(service, slot_choice=1)
        other = {"dob": "1975-03-04", "medicare": OTHER_MEDICARE}
        b = await book(service, slot_choice=2, call="call-2", person=other)
        assert (a["reference"], b["reference"]) == (first, second)
        keys = refs.keypad_form(first)
        outcome, data = await handle(service, "find_reference", {"reference": keys}, ctx())
        assert (outcome, data) == ("ambiguous", {})
        outcome, data = await handle(
            service, "find_reference", {"reference": keys, "dob": "1975-03-04"}, ctx()
        )
        assert (outcome, data["reference"]) == ("found", second)

    run(scenario, randbelow=lambda n: next(source))


def test_a_time_is_offered_to_no_more_callers_at_once_than_it_has_places() -> None:
    """On a busy line callers do not all race for the earliest times: Civic's times have
    two places each, so a third caller deciding at the same moment as two others is
    offered the next times that still have room (the next day's here)."""

    async def first(service: BookingService, call: str) -> str:
        outcome, data = await handle(service, "slots", {"clinic": "civic"}, ctx(call))
        assert outcome == "found" and data["slot_count"] == 4, data
        return f"{data['slot1_date']} {data['slot1_time']}"

    async def scenario(service: BookingService, store: SqliteStore, clock: Clock) -> None:
        day1, day2 = "2026-05-11", "2026-05-12"
        assert [await first(service, c) for c in ("c1", "c2", "c3")] == [
            f"{day1} 09:00", f"{day1} 09:00", f"{day2} 09:00"]
        assert await first(service, "c1") == f"{day1} 09:00"  # no rival of their own
        # c1 holds 09:00: its other offers lapse; 09:00 has one place and c2 deciding.
        _, offer = await handle(service, "slots", {"clinic": "civic"}, ctx("c1"))
        outcome, held = await handle(
            service, "hold", {"choice": 1, "offer": offer["slot_offer"], **PERSON}, ctx("c1")
        )
        assert outcome == "ok", held
        assert await first(service, "c4") == f"{day1} 09:30"
        # c2's and c4's offers keep day 1 busy until they lapse (09:00 is inside the hour
        # of lead time by then).
        assert await first(service, "c5") == f"{day2} 09:30"
        clock.advance(seconds=91)
        assert await first(service, "c6") == f"{day1} 09:30"

    run(scenario)
