"""The clinics file and the bookings export."""

from __future__ import annotations

import csv
import datetime as dt
import io
from importlib import resources

import pytest

from hotline.booking.csvfiles import (
    EXPORT_COLUMNS,
    ClinicFileError,
    clinics_csv,
    export_csv,
    parse_clinics,
)
from hotline.booking.geo import shipped_postcodes
from hotline.booking.model import Booking, BookingStatus, Clinic, Person, parse_sessions

HEADER = "id,name,address,postcode,region,lat,lon,vaccines,sessions\n"
VACCINES = {"covid", "flu"}


def parse(text: str) -> list[Clinic]:
    return parse_clinics(text, "clinics.csv", postcodes=shipped_postcodes(), vaccines=VACCINES)


def test_the_sample_file_parses_and_round_trips() -> None:
    text = resources.files("hotline.booking").joinpath("data/clinics_sample.csv").read_text()
    clinics = parse(text)
    assert 10 <= len(clinics) <= 20
    assert {c.region for c in clinics} == {"ACT", "NSW"}
    dickson = next(c for c in clinics if c.id == "dickson")
    assert (dickson.lat, dickson.lon) == (
        shipped_postcodes()["2602"].lat,
        shipped_postcodes()["2602"].lon,
    )
    assert dickson.vaccines == ("flu",)
    assert parse(clinics_csv(clinics)) == [
        Clinic(
            c.id,
            c.name,
            c.address,
            c.postcode,
            c.region,
            round(c.lat, 5),
            round(c.lon, 5),
            c.vaccines,
            c.sessions,
        )
        for c in clinics
    ]


def test_every_problem_is_reported_with_its_line() -> None:
    text = (
        HEADER
        + "# a comment line\n"
        + "ok,Good,1 St,2601,ACT,,,covid,Mon 09:00-10:00 15min x1\n"
        + "bad id!,X,1 St,2601,ACT,,,covid,Mon 09:00-10:00 15min x1\n"
        + "ok,Again,1 St,2601,ACT,,,covid,Mon 09:00-10:00 15min x1\n"
        + "c4,,1 St,999,ACT,,,measles,Mon 09:00-10:00 15min x1\n"
        + "c5,X,1 St,2601,ACT,-35,,covid,Mon 09:00-10:00 15min x1\n"
        + "c6,X,1 St,0999,NT,,,covid,Mon 09:00-10:00 15min x1\n"
        + "c7,X,1 St,2601,ACT,,,covid,Mon 10:00-09:00 15min x1\n"
        + "c8,X,1 St\n"
    )
    with pytest.raises(ClinicFileError) as info:
        parse(text)
    problems = info.value.problems
    expected = [
        "clinics.csv:4: id: expected 1 to 40 letters",
        "clinics.csv:5: id: 'ok' again (first on line 3)",
        "clinics.csv:6: name: expected a value, found an empty field",
        "clinics.csv:6: postcode: expected four digits, found '999'",
        "clinics.csv:6: vaccines: expected codes from the rules (covid, flu), found measles",
        "clinics.csv:7: lat, lon: expected both as decimal degrees",
        "clinics.csv:8: lat, lon: empty, and postcode 0999 is not in the postcode table",
        "clinics.csv:9: sessions: session 'Mon 10:00-09:00 15min x1': ends at 09:00",
        "clinics.csv:10: expected 9 fields, found 3",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no header and no clinics"),
        ("id,name\n", "missing address, postcode"),
        (HEADER.strip() + ",extra\n", "unknown extra"),
    ],
)
def test_header_problems(text: str, message: str) -> None:
    with pytest.raises(ClinicFileError) as info:
        parse(text)
    assert message in str(info.value)


def test_export_has_one_sorted_row_per_booking() -> None:
    clinic = Clinic(
        "c1",
        "Clinic One",
        "1 St",
        "2601",
        "ACT",
        -35.0,
        149.0,
        ("covid",),
        parse_sessions("Mon 09:00-10:00 15min x1"),
    )
    now = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)

    def booking(bid: int, hour: int, ref: str) -> Booking:
        return Booking(
            bid,
            ref,
            BookingStatus.CONFIRMED,
            "c1",
            f"c1@20260511T{hour:02}00",
            "covid",
            1,
            Person("2123456701", dt.date(1980, 1, 2), "0412345678"),
            now + dt.timedelta(hours=hour),
            dt.date(2026, 5, 11),
            dt.time(hour),
            now,
            now,
        )

    rows = list(
        csv.reader(
            io.StringIO(
                export_csv([booking(2, 10, "KKKKKK2"), booking(1, 9, "FFFFFF2")], {"c1": clinic})
            )
        )
    )
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert rows[1] == [
        "c1",
        "Clinic One",
        "2026-05-11",
        "09:00",
        "FFFFFF2",
        "confirmed",
        "covid",
        "1",
        "2123456701",
        "1980-01-02",
        "0412345678",
    ]
    assert rows[2][4] == "KKKKKK2"
