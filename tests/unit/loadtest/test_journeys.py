"""Journeys derived from flows: every one simulates to the ending it promises, per-call
values are valid and never repeat a person, the mix is honoured call by call."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hotline.booking.csvfiles import parse_clinics
from hotline.booking.geo import shipped_postcodes
from hotline.booking.rules import default_rules
from hotline.ivr import fields
from hotline.ivr.loader import load_flow, load_flow_text
from hotline.ivr.simulate import ServiceReply
from hotline.loadtest import journeys as jr
from hotline.loadtest.runner import prompt_seconds

ROOT = Path(__file__).resolve().parents[3]
SYDNEY = ZoneInfo("Australia/Sydney")
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=SYDNEY)  # a Tuesday morning
CLOSED = dt.datetime(2026, 11, 24, 22, 30, tzinfo=SYDNEY)
POSTCODES = [("2601", 3.0), ("2000", 2.0), ("2150", 1.0)]


@pytest.fixture(scope="module")
def vaccine():  # type: ignore[no-untyped-def]
    return load_flow(ROOT / "ivr_flows" / "vaccine.yaml", audio_dir=ROOT / "audio")


@pytest.fixture(scope="module")
def journeys(vaccine) -> list[jr.Journey]:  # type: ignore[no-untyped-def]
    return jr.journeys_from_flow(
        vaccine,
        services=jr.fresh_caller_services(OPEN.date(), agents=False),
        start=OPEN,
        duration_of=prompt_seconds,
        postcodes=POSTCODES,
    )


def _by_name(journeys: list[jr.Journey]) -> dict[str, jr.Journey]:
    return {j.name: j for j in journeys}


def test_the_vaccine_flow_gives_booked_agent_and_hangup(journeys: list[jr.Journey]) -> None:
    by = _by_name(journeys)
    assert set(by) == {"booked", "agent", "hangup"}
    booked, agent, hangup = by["booked"], by["agent"], by["hangup"]
    assert booked.result == "booked" and booked.books and not booked.queues
    assert [p.step for p in booked.presses] == [
        "language",
        "main",
        "ask_dob",
        "ask_dob (confirm)",
        "ask_medicare",
        "ask_medicare (confirm)",
        "ask_postcode",
        "choose_clinic",
        "choose_time",
        "confirm_booking",
        "confirm_booking (again, if the time was taken)",
        "confirm_booking (again, if the time was taken)",
    ]
    assert [p.fallback for p in booked.presses] == [False] * 10 + [True] * 2
    assert [p.field.variable if p.field else None for p in booked.presses][2:7] == [
        "dob",
        None,
        "medicare",
        None,
        "postcode",
    ]
    assert agent.result == "no_agent" and agent.queues and not agent.books
    assert [p.keys for p in agent.presses] == ["1", "0"]
    assert hangup.result is None and hangup.caller_hangs_up and hangup.ending == "caller_hangup"


def test_menu_keys_that_lead_to_the_same_booking_become_choices(journeys: list[jr.Journey]) -> None:
    booked = _by_name(journeys)["booked"]
    choices = {p.step: p.options for p in booked.presses}
    assert choices["choose_clinic"] == ("1", "2", "3")
    assert choices["choose_time"] == ("1", "2", "3", "4")
    # Mandarin (2) takes the same steps, but its prompts' lengths move the presses
    assert choices["language"] == ("1",)


def test_every_journey_simulates_to_its_ending_at_both_paces(vaccine, journeys) -> None:  # type: ignore[no-untyped-def]
    services = jr.fresh_caller_services(OPEN.date(), agents=False)
    calls = jr.plan_calls(
        journeys,
        [j.name for j in journeys for _ in range(3)],
        random.Random(5),
        OPEN.date(),
        base=1234,
        postcodes=POSTCODES,
    )
    for call in calls:
        journey = _by_name(journeys)[call.journey]
        for pace in ("listen", "ahead"):
            run = jr.check_journey(
                vaccine,
                journey,
                call.keys,
                services=services,
                start=OPEN,
                duration_of=prompt_seconds,
                caller_number=call.caller,
                pace=pace,
            )
            assert run.result == journey.ending
            if journey.result is not None:
                assert ("X-Hotline-Result", journey.result) in run.headers


def test_timing_follows_the_prompts(journeys: list[jr.Journey]) -> None:
    booked = _by_name(journeys)["booked"]
    listen = booked.waits("listen")
    ahead = booked.waits("ahead")
    # listening to the long date-of-birth prompt takes far longer than pressing into it
    assert listen[2] > 8.0 and ahead[2] <= 2.0
    assert booked.seconds("listen") > 2 * booked.seconds("ahead")
    assert booked.ahead_ok and booked.tail("listen") > 5.0


def test_a_booking_survives_a_time_taken_by_another_caller(vaccine, journeys) -> None:  # type: ignore[no-untyped-def]
    booked = _by_name(journeys)["booked"]
    keys = [p.keys for p in booked.presses]
    services = jr.fresh_caller_services(OPEN.date(), agents=False)
    simulator = jr._Simulator(vaccine, services, OPEN, {}, frozenset(), prompt_seconds)
    taken = {"done": False}

    def full_once(request):  # type: ignore[no-untyped-def]
        if request.kind == "booking" and request.name == "hold" and not taken["done"]:
            taken["done"] = True
            return ServiceReply("full", {})
        return None

    detour = simulator.run(keys, service=full_once)
    assert taken["done"] and detour.run.result == "booked"
    assert [s for _scope, s in detour.run.path].count("hold") == 2
    # without the extra keys the caller would be stuck at the confirmation
    taken["done"] = False
    assert simulator.run(keys[:-2], service=full_once).run.result != "booked"


def test_a_wrong_key_group_is_caught(vaccine, journeys) -> None:  # type: ignore[no-untyped-def]
    booked = _by_name(journeys)["booked"]
    keys = [p.keys for p in booked.presses]
    keys[1] = "0"  # the main menu's agent key instead of booking
    with pytest.raises(jr.JourneyError, match="ends 'no_agent', not 'booked'"):
        jr.check_journey(
            vaccine,
            booked,
            keys,
            services=jr.fresh_caller_services(OPEN.date(), agents=False),
            start=OPEN,
        )


def test_with_agents_the_agent_journey_ends_with_the_agent(vaccine) -> None:  # type: ignore[no-untyped-def]
    journeys = jr.journeys_from_flow(
        vaccine,
        services=jr.fresh_caller_services(OPEN.date(), agents=True),
        start=OPEN,
        postcodes=POSTCODES,
    )
    agent = _by_name(journeys)["agent"]
    assert agent.result == jr.AGENT_RESULT and agent.ending == "agent"


def test_after_hours_only_closed_and_hangup_remain(vaccine) -> None:  # type: ignore[no-untyped-def]
    journeys = jr.journeys_from_flow(
        vaccine,
        services=jr.fresh_caller_services(CLOSED.date(), agents=False),
        start=CLOSED,
        duration_of=prompt_seconds,
    )
    by = _by_name(journeys)
    assert set(by) == {"closed", "hangup"}
    assert by["closed"].presses == () and by["closed"].result == "closed"
    with pytest.raises(
        jr.JourneyError,
        match=r"'book' is not a journey of this flow "
        r"\(journeys: closed, hangup\)",
    ):
        jr.resolve_mix(jr.parse_mix("book=70,hangup=30"), journeys)


def test_unpredictable_services_leave_their_walks_out() -> None:
    flow = load_flow_text(
        "flow: t\nlanguages: [en]\nprompts:\n  hi: {en: 'Press 1 or 2.'}\n"
        "steps:\n"
        "  menu: {type: menu, prompt: hi, keys: {1: done, 2: away}, failed: done}\n"
        "  done: {type: hangup, result: done}\n"
        "  away: {type: transfer, to: 'sip:x@example.org', failed: done}\n",
        "t.yaml",
    )
    journeys = jr.journeys_from_flow(flow, services=jr.Services({}), start=OPEN)
    by = _by_name(journeys)
    assert set(by) == {"done", "hangup"}  # the transfer's end is not the engine's to say
    assert [p.keys for p in by["done"].presses] == ["1"]
    assert by["hangup"].presses == ()  # pressing 1 ends the call: hang up while it asks


def test_per_call_values_are_valid_and_distinct(journeys: list[jr.Journey]) -> None:
    booked = _by_name(journeys)["booked"]
    calls = jr.plan_calls(
        journeys,
        ["booked"] * 400,
        random.Random(1),
        OPEN.date(),
        base=98_765_432,
        postcodes=POSTCODES,
    )
    specs = {p.field.variable: p.field.spec for p in booked.presses if p.field is not None}
    people = set()
    for call in calls:
        dob, medicare, postcode = call.keys[2], call.keys[4], call.keys[6]
        assert isinstance(fields.validate(specs["medicare"], medicare, OPEN.date()), fields.Valid)
        born = fields.validate(specs["dob"], dob, OPEN.date())
        assert isinstance(born, fields.Valid)
        age = (OPEN.date() - dt.date.fromisoformat(str(born.value))).days / 365.25
        assert 18 <= age <= 81
        assert postcode in {p for p, _w in POSTCODES}
        assert call.keys[7] in ("1", "2", "3") and call.keys[8] in ("1", "2", "3", "4")
        people.add(medicare)
    assert len(people) == len(calls)  # nobody books twice
    assert len({c.caller for c in calls}) == len(calls)  # no caller is greeted as known
    assert len({c.keys[7] for c in calls}) == 3 and len({c.keys[8] for c in calls}) == 4


def test_medicare_numbers_carry_their_check_digit() -> None:
    numbers = {jr.medicare_number(i, 49_999_990) for i in range(30)}  # wraps past the top
    assert len(numbers) == 30
    for n in numbers:
        assert n[0] in "23456" and int(n[8]) == fields.medicare_check_digit(n[:8])
        assert n[9] != "0" and len(n) == 10
    assert len(jr.medicare_number(3, 0, irn=True)) == 11


def test_parse_mix_refuses_bad_input() -> None:
    assert jr.parse_mix("book=70, agent=20,hangup=10") == {"book": 70, "agent": 20, "hangup": 10}
    for text, message in (
        ("book", "expected NAME=WEIGHT"),
        ("book=x", "not a number"),
        ("book=-1", "0 or more"),
        ("a=1,a=2", "given twice"),
        ("a=0", "no journey with a weight above 0"),
    ):
        with pytest.raises(jr.JourneyError, match=message):
            jr.parse_mix(text)


def test_resolve_mix_by_prefix(journeys: list[jr.Journey]) -> None:
    shares = jr.resolve_mix(jr.parse_mix("book=70,agent=20,hangup=10"), journeys)
    assert shares == pytest.approx({"booked": 0.7, "agent": 0.2, "hangup": 0.1})
    assert jr.default_mix(journeys) == shares
    doubled = [*journeys, jr.Journey("bookish", "x", (), (), "x")]
    with pytest.raises(jr.JourneyError, match="'book' matches several"):
        jr.resolve_mix({"book": 1.0}, doubled)


def test_assign_keeps_every_prefix_close_to_the_shares() -> None:
    shares = {"booked": 0.7, "agent": 0.2, "hangup": 0.1}
    order = jr.assign(shares, 50)
    assert Counter(order) == {"booked": 35, "agent": 10, "hangup": 5}
    for n in range(1, 51):
        counts = Counter(order[:n])
        for name, share in shares.items():
            assert abs(counts[name] - share * n) <= 1.0


def test_capacity_and_postcodes_of_the_sample_clinics() -> None:
    rules = default_rules()
    text = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text()
    clinics = parse_clinics(
        text, "sample", postcodes=shipped_postcodes(), vaccines=rules.vaccines.keys()
    )
    capacity = jr.slot_capacity(clinics, dt.date(2026, 11, 23), 14, rules.zone, "covid")
    assert "dickson" not in capacity  # flu only
    assert sum(capacity.values()) > 5000  # "thousands of slots"
    postcodes = jr.booking_postcodes(
        clinics, shipped_postcodes(), capacity, max_km=rules.max_distance_km
    )
    names = [p for p, _w in postcodes]
    assert "2601" in names and "2602" not in names
    assert all(w > 0 for _p, w in postcodes)
