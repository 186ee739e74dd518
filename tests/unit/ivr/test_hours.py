"""Opening hours: parsing with key paths, open/closed and why, intervals across midnight,
public holidays (AU/ACT), closed and open dates, emergencies, next opening, daylight
saving. Instants are fixed datetimes: no clock is read."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hotline.ivr.hours import (
    NEXT_OPEN_HORIZON_DAYS,
    ClosedReason,
    HoursError,
    HoursStatus,
    Interval,
    OpeningHours,
)

CANBERRA = ZoneInfo("Australia/Canberra")
SYDNEY = ZoneInfo("Australia/Sydney")
UTC = datetime.UTC

SCHEDULE: dict[str, Any] = {
    "timezone": "Australia/Canberra",
    "monday": ["08:00-20:00"],
    "tuesday": "08:00-12:00, 13:00-17:00",
    "wednesday": ["08:00-20:00"],
    "thursday": ["08:00-20:00"],
    "friday": ["08:00-12:00", "22:00-02:00"],
    "saturday": "closed",
    "sunday": [],
    "holidays": {"country": "AU", "subdivision": "ACT"},
    "closed_dates": [datetime.date(2025, 12, 24), "2025-12-29..2025-12-31"],
    "open_dates": {"2025-12-26": ["10:00-14:00"], datetime.date(2025, 6, 9): ["09:00-11:00"]},
}
HOURS = OpeningHours.parse(SCHEDULE)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: ZoneInfo = CANBERRA
) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=tz)


def closed(
    reason: ClosedReason, next_open: datetime.datetime | None, holiday: str | None = None
) -> HoursStatus:
    return HoursStatus(False, reason, holiday, next_open)


OPEN = HoursStatus(True, None, None, None)

# 2025-06-02 is Reconciliation Day in the ACT (a Monday); 2025-06-03 a Tuesday;
# 2025-06-06 a Friday; 2025-06-09 King's Birthday (Monday).


# -- the weekly schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (at(2025, 6, 3, 7, 59), closed(ClosedReason.OUTSIDE_HOURS, at(2025, 6, 3, 8))),
        (at(2025, 6, 3, 8), OPEN),
        (at(2025, 6, 3, 11, 59), OPEN),
        (at(2025, 6, 3, 12), closed(ClosedReason.OUTSIDE_HOURS, at(2025, 6, 3, 13))),
        (at(2025, 6, 3, 13), OPEN),
        (at(2025, 6, 3, 17), closed(ClosedReason.OUTSIDE_HOURS, at(2025, 6, 4, 8))),
        (at(2025, 6, 4, 19, 59), OPEN),
        (at(2025, 6, 4, 20), closed(ClosedReason.OUTSIDE_HOURS, at(2025, 6, 5, 8))),
    ],
)
def test_weekday_intervals(instant: datetime.datetime, expected: HoursStatus) -> None:
    assert HOURS.status(instant, False) == expected


def test_interval_crossing_midnight_belongs_to_its_start_day() -> None:
    assert HOURS.status(at(2025, 6, 6, 21, 59), False).open is False
    assert HOURS.status(at(2025, 6, 6, 22), False) == OPEN
    assert HOURS.status(at(2025, 6, 7, 1, 59), False) == OPEN  # Saturday, "closed" itself
    after = HOURS.status(at(2025, 6, 7, 2), False)
    # Monday 9 June is King's Birthday: the special 09:00-11:00 of open_dates applies
    assert after == closed(ClosedReason.OUTSIDE_HOURS, at(2025, 6, 9, 9))


def test_any_time_zone_for_the_instant() -> None:
    assert HOURS.status(datetime.datetime(2025, 6, 3, 22, 30, tzinfo=UTC), False) == OPEN
    new_york = ZoneInfo("America/New_York")
    assert HOURS.status(datetime.datetime(2025, 6, 2, 18, 30, tzinfo=new_york), False) == OPEN
    status = HOURS.status(datetime.datetime(2025, 6, 3, 2, 30, tzinfo=UTC), False)  # 12:30 local
    assert status.next_open == at(2025, 6, 3, 13)
    assert status.next_open is not None and status.next_open.tzinfo == CANBERRA


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        HOURS.status(datetime.datetime(2025, 6, 3, 9), False)
    with pytest.raises(ValueError, match="aware datetime"):
        HOURS.next_open(datetime.datetime(2025, 6, 3, 9))


# -- holidays, dates, emergencies ------------------------------------------------------------


def test_public_holiday_closes_all_day_with_its_name() -> None:
    status = HOURS.status(at(2025, 6, 2, 10), False)
    assert status == closed(
        ClosedReason.PUBLIC_HOLIDAY, at(2025, 6, 3, 8), holiday="Reconciliation Day"
    )
    assert HOURS.holiday_name(datetime.date(2025, 6, 2)) == "Reconciliation Day"
    assert HOURS.holiday_name(datetime.date(2025, 3, 10)) == "Canberra Day"
    assert HOURS.holiday_name(datetime.date(2025, 6, 3)) is None
    assert HOURS.hours_on(datetime.date(2025, 6, 2)) == ()
    # even outside the usual hours, the day's reason is the holiday
    assert HOURS.status(at(2025, 6, 2, 23), False).reason is ClosedReason.PUBLIC_HOLIDAY


def test_open_dates_override_holidays_and_weekdays() -> None:
    assert HOURS.status(at(2025, 12, 26, 10), False) == OPEN  # Boxing Day, open 10-14
    assert HOURS.status(at(2025, 12, 26, 14), False) == closed(
        ClosedReason.OUTSIDE_HOURS, at(2026, 1, 1, 0, 0) + datetime.timedelta(days=1, hours=8)
    )
    assert HOURS.hours_on(datetime.date(2025, 12, 26)) == (Interval(600, 840),)


def test_closed_dates_and_ranges() -> None:
    status = HOURS.status(at(2025, 12, 24, 10), False)
    assert status == closed(ClosedReason.CLOSED_DATE, at(2025, 12, 26, 10))
    for day in (29, 30, 31):
        assert HOURS.status(at(2025, 12, day, 10), False).reason is ClosedReason.CLOSED_DATE
    assert HOURS.is_closed_date(datetime.date(2025, 12, 30))
    assert not HOURS.is_closed_date(datetime.date(2025, 12, 28))
    # 1 January is a holiday, 2 January a Friday: open at 08:00
    assert HOURS.status(at(2025, 12, 31, 10), False).next_open == at(2026, 1, 2, 8)


def test_suppressed_night_interval_reports_the_reason_of_its_day() -> None:
    # Good Friday 2026-04-03: no 22:00-02:00 that night; 01:00 Saturday is closed
    # because of Friday's holiday (Saturday itself is Easter Saturday too)
    friday_night = HOURS.status(at(2026, 4, 3, 23), False)
    assert friday_night.reason is ClosedReason.PUBLIC_HOLIDAY
    assert friday_night.holiday_name == "Good Friday"
    plain = OpeningHours.parse(
        {"timezone": "UTC", "friday": ["22:00-02:00"], "closed_dates": ["2025-06-06"]}
    )
    saturday = plain.status(datetime.datetime(2025, 6, 7, 1, tzinfo=UTC), False)
    assert saturday.reason is ClosedReason.CLOSED_DATE
    later = plain.status(datetime.datetime(2025, 6, 7, 3, tzinfo=UTC), False)
    assert later.reason is ClosedReason.OUTSIDE_HOURS


def test_emergency_closes_everything_without_a_next_opening() -> None:
    assert HOURS.status(at(2025, 6, 3, 9), True) == closed(ClosedReason.EMERGENCY, None)
    assert HOURS.status(at(2025, 6, 2, 9), True).holiday_name is None
    # the schedule's own next opening can still be asked for
    assert HOURS.next_open(at(2025, 6, 3, 12)) == at(2025, 6, 3, 13)


def test_next_open_horizon() -> None:
    never = OpeningHours.parse({"timezone": "UTC"})
    assert never.status(datetime.datetime(2025, 6, 3, tzinfo=UTC), False) == closed(
        ClosedReason.OUTSIDE_HOURS, None
    )
    monthly = OpeningHours.parse({"timezone": "UTC", "open_dates": {"2025-06-20": "09:00-10:00"}})
    start = datetime.datetime(2025, 6, 20, 9, tzinfo=UTC)
    just_in = start - datetime.timedelta(days=NEXT_OPEN_HORIZON_DAYS)
    assert monthly.next_open(just_in) == start
    assert monthly.next_open(just_in - datetime.timedelta(minutes=1)) is None


def test_whole_day_and_no_holidays() -> None:
    always = OpeningHours.parse(
        {"timezone": "UTC", **{day: ["00:00-24:00"] for day in ("monday", "tuesday")}}
    )
    assert always.status(datetime.datetime(2025, 6, 2, 0, 0, tzinfo=UTC), False) == OPEN
    assert always.status(datetime.datetime(2025, 6, 3, 23, 59, tzinfo=UTC), False) == OPEN
    assert always.status(datetime.datetime(2025, 6, 4, 0, 0, tzinfo=UTC), False).open is False
    assert always.holiday_name(datetime.date(2025, 12, 25)) is None
    assert always.holiday_country is None


# -- daylight saving -------------------------------------------------------------------------


def test_daylight_saving_start_and_end() -> None:
    # Sydney: clocks go 02:00 → 03:00 on 5 Oct 2025, 03:00 → 02:00 on 6 Apr 2025
    night = OpeningHours.parse(
        {"timezone": "Australia/Sydney", "saturday": ["22:00-04:00"], "sunday": ["01:00-02:30"]}
    )
    # 22:00 Saturday to 04:00 Sunday is 5 hours of real time on the spring-forward night
    start = datetime.datetime(2025, 10, 4, 22, tzinfo=SYDNEY).astimezone(UTC)
    assert night.status(start + datetime.timedelta(hours=4, minutes=59), False).open
    assert not night.status(start + datetime.timedelta(hours=5), False).open
    # and 7 hours on the fall-back night
    start = datetime.datetime(2025, 4, 5, 22, tzinfo=SYDNEY).astimezone(UTC)
    assert night.status(start + datetime.timedelta(hours=6, minutes=59), False).open
    assert not night.status(start + datetime.timedelta(hours=7), False).open


def test_interval_emptied_by_the_clock_change_is_never_next() -> None:
    odd = OpeningHours.parse(
        {"timezone": "Australia/Sydney", "sunday": ["02:30-03:00", "09:00-10:00"]}
    )
    saturday = datetime.datetime(2025, 10, 4, 12, tzinfo=SYDNEY)
    # 02:30 does not exist that night; 02:30-03:00 is empty, so 09:00 is the next opening
    assert odd.next_open(saturday) == datetime.datetime(2025, 10, 5, 9, tzinfo=SYDNEY)


# -- parsing ---------------------------------------------------------------------------------


def test_parsed_model() -> None:
    assert HOURS.timezone == CANBERRA
    assert HOURS.weekly[1] == (Interval(480, 720), Interval(780, 1020))
    assert HOURS.weekly[4][1].crosses_midnight
    assert str(HOURS.weekly[4][1]) == "22:00-02:00"
    assert HOURS.weekly[5] == () and HOURS.weekly[6] == ()
    assert HOURS.closed_dates == (
        (datetime.date(2025, 12, 24), datetime.date(2025, 12, 24)),
        (datetime.date(2025, 12, 29), datetime.date(2025, 12, 31)),
    )
    assert (HOURS.holiday_country, HOURS.holiday_subdivision) == ("AU", "ACT")
    relaxed = OpeningHours.parse(
        {
            "timezone": " UTC ",
            "monday": " 8:00 - 9:30 ",
            "tuesday": None,
            "wednesday": "CLOSED",
            "thursday": ["12:00-24:00"],
            "holidays": {"country": "au", "subdivision": "nsw"},
        }
    )
    assert relaxed.weekly[0] == (Interval(480, 570),)
    assert relaxed.weekly[1:3] == ((), ())
    assert relaxed.weekly[3] == (Interval(720, 1440),)
    assert not relaxed.weekly[3][0].crosses_midnight
    assert relaxed.holiday_subdivision == "NSW"
    assert OpeningHours.parse({"timezone": "UTC", "holidays": None}).holiday_country is None
    assert OpeningHours.parse({"timezone": "UTC", "holidays": False}).holiday_country is None


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ([], (), "expected a schedule"),
        ({}, (), "a schedule needs a timezone"),
        ({"timezone": "Mars/Olympus"}, ("timezone",), "unknown time zone 'Mars/Olympus'"),
        ({"timezone": ""}, ("timezone",), "expected a time zone name"),
        ({"timezone": 10}, ("timezone",), "expected a time zone name"),
        (
            {"timezone": "UTC", "mondy": []},
            ("mondy",),
            "unknown key 'mondy'; did you mean 'monday'?",
        ),
        (
            {"timezone": "UTC", "monday": ["8am-5pm"]},
            ("monday", 0),
            'expected an interval "HH:MM-HH:MM"',
        ),
        ({"timezone": "UTC", "monday": ["08:00-12:00", "9-5"]}, ("monday", 1), "found '9-5'"),
        (
            {"timezone": "UTC", "monday": [480]},
            ("monday", 0),
            "found 480 (a number: quote times in YAML",
        ),
        ({"timezone": "UTC", "monday": 480}, ("monday",), "found 480 (a number"),
        ({"timezone": "UTC", "monday": {"a": 1}}, ("monday",), "expected a list of intervals"),
        (
            {"timezone": "UTC", "monday": "08:00-12:00, 25:00-26:00"},
            ("monday",),
            "the start time 25:00 is not a time of day",
        ),
        (
            {"timezone": "UTC", "monday": ["08:00-24:30"]},
            ("monday", 0),
            "the end time 24:30 is not a time of day (00:00 to 24:00)",
        ),
        ({"timezone": "UTC", "monday": ["08:60-09:00"]}, ("monday", 0), "the start time 08:60"),
        ({"timezone": "UTC", "monday": ["24:00-02:00"]}, ("monday", 0), "the start time 24:00"),
        (
            {"timezone": "UTC", "monday": ["08:00-08:00"]},
            ("monday", 0),
            "starts and ends at the same time",
        ),
        (
            {"timezone": "UTC", "monday": ["00:00-00:00"]},
            ("monday", 0),
            'write "00:00-24:00" for the whole day',
        ),
        (
            {"timezone": "UTC", "monday": ["08:00-12:00", "11:00-13:00"]},
            ("monday", 1),
            "11:00-13:00 overlaps 08:00-12:00 on the same day",
        ),
        (
            {"timezone": "UTC", "monday": ["13:00-14:00", "08:00-20:00"]},
            ("monday", 0),
            "13:00-14:00 overlaps 08:00-20:00",
        ),
        (
            {"timezone": "UTC", "monday": ["20:00-02:00", "21:00-22:00"]},
            ("monday", 1),
            "overlaps 20:00-02:00",
        ),
        (
            {"timezone": "UTC", "closed_dates": "2025-12-25"},
            ("closed_dates",),
            "expected a list of dates or ranges",
        ),
        (
            {"timezone": "UTC", "closed_dates": ["2025-02-30"]},
            ("closed_dates", 0),
            "'2025-02-30' is not a date of the calendar",
        ),
        (
            {"timezone": "UTC", "closed_dates": ["25/12/2025"]},
            ("closed_dates", 0),
            "expected a date YYYY-MM-DD, found '25/12/2025'",
        ),
        (
            {"timezone": "UTC", "closed_dates": [datetime.datetime(2025, 12, 25, 9)]},
            ("closed_dates", 0),
            "without a time",
        ),
        (
            {"timezone": "UTC", "closed_dates": ["2025-03-02..2025-03-01"]},
            ("closed_dates", 0),
            "ends before it starts",
        ),
        (
            {"timezone": "UTC", "closed_dates": ["2025-01-01..2026-06-01"]},
            ("closed_dates", 0),
            "longer than 366 days",
        ),
        (
            {"timezone": "UTC", "closed_dates": ["2025-01-01..soon"]},
            ("closed_dates", 0),
            "found 'soon'",
        ),
        (
            {"timezone": "UTC", "open_dates": ["2025-12-25"]},
            ("open_dates",),
            "expected dates with their hours",
        ),
        (
            {"timezone": "UTC", "open_dates": {"tomorrow": []}},
            ("open_dates", "tomorrow"),
            "expected a date YYYY-MM-DD",
        ),
        (
            {"timezone": "UTC", "open_dates": {"2025-12-25": ["x"]}},
            ("open_dates", "2025-12-25", 0),
            "expected an interval",
        ),
        (
            {"timezone": "UTC", "open_dates": {"2025-12-25": [], datetime.date(2025, 12, 25): []}},
            ("open_dates", datetime.date(2025, 12, 25)),
            "2025-12-25 is given twice",
        ),
        (
            {
                "timezone": "UTC",
                "closed_dates": ["2025-12-20..2025-12-31"],
                "open_dates": {datetime.date(2025, 12, 27): []},
            },
            ("open_dates", datetime.date(2025, 12, 27)),
            "2025-12-27 is also in closed_dates",
        ),
        (
            {"timezone": "UTC", "holidays": "AU"},
            ("holidays",),
            "expected {country: AU, subdivision: ACT}",
        ),
        (
            {"timezone": "UTC", "holidays": {"country": "XX"}},
            ("holidays", "country"),
            "no public-holiday calendar for country 'XX'",
        ),
        (
            {"timezone": "UTC", "holidays": {"country": "AUU"}},
            ("holidays", "country"),
            "did you mean",
        ),
        (
            {"timezone": "UTC", "holidays": {}},
            ("holidays", "country"),
            "expected a country code such as AU, found nothing (null)",
        ),
        (
            {"timezone": "UTC", "holidays": {"country": "AU", "subdivision": "CBR"}},
            ("holidays", "subdivision"),
            "AU has no subdivision 'CBR' (known: ACT, NSW, NT, QLD, SA, TAS, VIC, WA",
        ),
        (
            {"timezone": "UTC", "holidays": {"country": "AU", "subdivision": 2600}},
            ("holidays", "subdivision"),
            "expected a subdivision code",
        ),
        (
            {"timezone": "UTC", "holidays": {"country": "AU", "state": "ACT"}},
            ("holidays", "state"),
            "unknown key 'state'",
        ),
    ],
)
def test_parse_errors_carry_the_key_path(data: Any, path: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(HoursError) as info:
        OpeningHours.parse(data)
    assert fragment in info.value.message
    assert info.value.path == path


def test_hours_error_text() -> None:
    error = HoursError("bad", ("monday", 0))
    assert str(error) == "monday → 0: bad"
    assert str(HoursError("bad")) == "bad"


# -- property: between an instant and its next opening the service is closed -----------------

intervals = st.tuples(st.integers(0, 47), st.integers(1, 48)).map(
    lambda p: f"{p[0] // 2:02d}:{p[0] % 2 * 30:02d}-{p[1] // 2:02d}:{p[1] % 2 * 30:02d}"
)


@st.composite
def schedules(draw: st.DrawFn) -> OpeningHours:
    zone = draw(
        st.sampled_from(["UTC", "Australia/Sydney", "Australia/Lord_Howe", "America/New_York"])
    )
    data: dict[str, Any] = {"timezone": zone}
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"):
        data[day] = draw(st.lists(intervals, max_size=2))
    if draw(st.booleans()):
        data["holidays"] = {"country": "AU", "subdivision": "ACT"}
    try:
        return OpeningHours.parse(data)
    except HoursError:
        # overlapping or empty intervals are refused; keep the first of each day only
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"):
            data[day] = [i for i in data[day][:1] if i[:5] != i[6:].replace("24:00", "00:00")]
        try:
            return OpeningHours.parse(data)
        except HoursError:
            return OpeningHours.parse({"timezone": zone})


instants = st.datetimes(
    datetime.datetime(2024, 1, 1), datetime.datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(schedules(), instants, st.floats(0.0, 1.0))
def test_closed_until_next_open(
    hours: OpeningHours, instant: datetime.datetime, fraction: float
) -> None:
    status = hours.status(instant, False)
    assert (status.reason is None) == status.open
    assert (status.holiday_name is not None) == (status.reason is ClosedReason.PUBLIC_HOLIDAY)
    event(
        "open" if status.open else f"closed, next opening {'un' * (status.next_open is None)}known"
    )
    if status.open:
        assert status.next_open is None
        return
    if status.next_open is None:
        return
    assert instant < status.next_open <= instant + datetime.timedelta(days=NEXT_OPEN_HORIZON_DAYS)
    assert hours.status(status.next_open, False).open
    between = instant + (status.next_open - instant) * fraction
    if between < status.next_open:
        assert not hours.status(between, False).open
