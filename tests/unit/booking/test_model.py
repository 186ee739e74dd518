"""Domain records: sessions, slot generation, people and their masking."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hotline.booking.model import (
    Booking,
    BookingStatus,
    Clinic,
    Person,
    SessionError,
    format_sessions,
    generate_slots,
    mask_digits,
    medicare_problem,
    normalise_phone,
    parse_sessions,
    slot_id,
)

SYDNEY = ZoneInfo("Australia/Sydney")


def clinic(sessions: str) -> Clinic:
    return Clinic(
        "c1", "Clinic", "1 St", "2601", "ACT", -35.28, 149.13, ("covid",), parse_sessions(sessions)
    )


def test_sessions_parse_and_format_back() -> None:
    text = "Mon-Fri 08:30-12:00 15min x4; Sat 09:00-12:00 20min x2; Tue,Thu 17:00-19:00 15min x3"
    sessions = parse_sessions(text)
    assert [sorted(s.days) for s in sessions] == [[0, 1, 2, 3, 4], [5], [1, 3]]
    assert sessions[0].start == dt.time(8, 30) and sessions[0].capacity == 4
    assert format_sessions(sessions) == text
    assert parse_sessions(format_sessions(sessions)) == sessions
    assert parse_sessions("daily 09:00-10:00 30min x1")[0].days == frozenset(range(7))
    assert format_sessions(parse_sessions("Mon,Tue 09:00-10:00 30min x1")) == (
        "Mon,Tue 09:00-10:00 30min x1"
    )


def test_session_starts_fit_inside_the_range() -> None:
    (session,) = parse_sessions("Mon 09:00-10:10 20min x1")
    assert session.starts() == [dt.time(9, 0), dt.time(9, 20), dt.time(9, 40)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected at least one session"),
        ("Mon 09:00-10:00", "expected DAYS HH:MM-HH:MM Nmin xCAPACITY"),
        ("Funday 09:00-10:00 15min x1", "expected days such as Mon"),
        ("Fri-Mon 09:00-10:00 15min x1", "runs backwards"),
        ("Mon 10:00-09:00 15min x1", "not after its start 10:00"),
        ("Mon 09:00-25:00 15min x1", "from 00:00 to 23:59, found '25:00'"),
        ("Mon 09:00-10:00 1min x1", "slot length from 5 to 240 minutes, found 1"),
        ("Mon 09:00-10:00 15min x0", "capacity from 1 to 1000"),
        ("Mon 09:00-09:10 15min x1", "no 15-minute slot fits"),
        ("Mon-Wed 09:00-12:00 15min x1; Wed 11:00-13:00 15min x1", "overlaps"),
    ],
)
def test_session_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SessionError) as info:
        parse_sessions(text)
    assert message in str(info.value)


def test_generate_slots_by_weekday_and_skipping_closed_days() -> None:
    c = clinic("Mon-Fri 09:00-10:00 30min x3; Sat 09:00-09:30 30min x1")
    monday = dt.date(2026, 5, 11)
    slots = generate_slots(c, monday, 7, SYDNEY, closed=frozenset({dt.date(2026, 5, 12)}))
    assert len(slots) == 4 * 2 + 1
    assert dt.date(2026, 5, 12) not in {s.local_date for s in slots}
    first = slots[0]
    assert first.id == slot_id("c1", monday, dt.time(9, 0)) == "c1@20260511T0900"
    assert first.starts_at == dt.datetime(2026, 5, 10, 23, 0, tzinfo=dt.UTC)  # AEST +10
    assert first.capacity == 3 and first.free == 3 and first.minutes == 30
    assert slots[-1].local_date.weekday() == 5 and slots[-1].capacity == 1
    assert [s.starts_at for s in slots] == sorted(s.starts_at for s in slots)


def test_generate_slots_across_daylight_saving_changes() -> None:
    c = clinic("Sun 01:00-04:00 60min x1")
    spring = generate_slots(c, dt.date(2026, 10, 4), 1, SYDNEY)  # 02:00 does not exist
    assert [s.local_time for s in spring] == [dt.time(1, 0), dt.time(3, 0)]
    autumn = generate_slots(c, dt.date(2026, 4, 5), 1, SYDNEY)  # 02:00 happens twice
    assert [s.local_time for s in autumn] == [dt.time(1, 0), dt.time(2, 0), dt.time(3, 0)]
    assert autumn[1].starts_at == dt.datetime(2026, 4, 4, 15, 0, tzinfo=dt.UTC)  # first one
    assert len({s.id for s in autumn}) == 3


def test_generate_slots_refuses_negative_days() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        generate_slots(clinic("Mon 09:00-10:00 30min x1"), dt.date(2026, 5, 11), -1, SYDNEY)


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("2123456701", None),
        ("21234567011", None),
        ("2123456791", "check digit"),
        ("2123456700", "issue number"),
        ("21234567010", "individual reference number"),
        ("1123456701", "first digit from 2 to 6"),
        ("212345670", "expected 10 or 11 digits, found 9"),
        ("21234567O1", "digits only"),
    ],
)
def test_medicare_numbers(number: str, problem: str | None) -> None:
    found = medicare_problem(number)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert number not in found


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0412345678", "0412345678"),
        ("+61 412 345 678", "0412345678"),
        ("61412345678", "0412345678"),
        ("610412345678", "0412345678"),
        ("(02) 6123 4567", "0261234567"),
        ("+44 20 7946 0000", "+442079460000"),
        ("anonymous", ""),
    ],
)
def test_normalise_phone(given: str, stored: str) -> None:
    assert normalise_phone(given) == stored


def test_people_and_bookings_print_masked() -> None:
    person = Person("2123456701", dt.date(1980, 7, 14), "0412345678")
    assert person.card == "212345670"
    now = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
    booking = Booking(
        1,
        None,
        BookingStatus.HELD,
        "c1",
        "c1@20260511T0900",
        "covid",
        1,
        person,
        now,
        dt.date(2026, 5, 11),
        dt.time(9),
        now,
        now + dt.timedelta(minutes=10),
    )
    for text in (repr(person), str(person), repr(booking)):
        assert "2123456701" not in text and "1980" not in text and "0412345678" not in text
    assert "••••••••01" in repr(person)
    assert booking.active and not booking.expired_at(now)
    assert booking.expired_at(now + dt.timedelta(minutes=10))
    assert mask_digits("12", 3) == "••"
