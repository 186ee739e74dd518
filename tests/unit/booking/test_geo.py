"""Postcodes, distances and the nearest clinics."""

from __future__ import annotations

import pytest

from hotline.booking.geo import (
    PostcodeError,
    haversine_km,
    nearest,
    parse_postcodes,
    shipped_postcodes,
)
from hotline.booking.model import Clinic

ACT_POSTCODES = [
    "0200",
    "2600",
    "2601",
    "2602",
    "2603",
    "2604",
    "2605",
    "2606",
    "2607",
    "2609",
    "2611",
    "2612",
    "2614",
    "2615",
    "2617",
    "2618",
    "2900",
    "2902",
    "2903",
    "2904",
    "2905",
    "2906",
    "2911",
    "2912",
    "2913",
    "2914",
]


def test_haversine_distances() -> None:
    canberra, sydney = (-35.2809, 149.1300), (-33.8688, 151.2093)
    assert haversine_km(canberra, sydney) == pytest.approx(247, abs=3)
    assert haversine_km(sydney, canberra) == pytest.approx(haversine_km(canberra, sydney))
    assert haversine_km(sydney, sydney) == 0
    assert haversine_km((0.0, 0.0), (0.0, 180.0)) == pytest.approx(20015, rel=1e-3)


def test_shipped_table_covers_the_act_and_nsw() -> None:
    table = shipped_postcodes()
    assert len(table) >= 300
    for code in ACT_POSTCODES:
        place = table[code]
        assert place.state == "ACT", code
        assert -35.93 < place.lat < -35.12 and 148.76 < place.lon < 149.40, code
    nsw = [p for p in table.values() if p.state == "NSW"]
    assert len(nsw) >= 250
    for place in nsw:
        assert -37.6 < place.lat < -28.1 and 140.9 < place.lon < 153.7, place
        assert place.postcode.startswith("2"), place
    for code in ("2000", "2150", "2300", "2500", "2620", "2650", "2830", "2880"):
        assert table[code].state == "NSW"
    assert table.coordinates(" 2601 ") == (table["2601"].lat, table["2601"].lon)
    assert table.coordinates("9999") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the table is empty"),
        ("# only a comment\n", "the table is empty"),
        ("code,place\n", "expected the header postcode,locality,state,lat,lon"),
        ("postcode,locality,state,lat,lon\n2601,Civic,ACT,-35.2\n", "t:2: expected 5 columns"),
        ("postcode,locality,state,lat,lon\n261,Civic,ACT,-35.2,149\n", "four-digit postcode"),
        ("postcode,locality,state,lat,lon\n2601,Civic,XX,-35.2,149\n", "expected a state"),
        ("postcode,locality,state,lat,lon\n2601,Civic,ACT,south,149\n", "decimal degrees"),
        ("postcode,locality,state,lat,lon\n2601,Civic,ACT,-95,149\n", "outside the globe"),
        (
            "postcode,locality,state,lat,lon\n2601,A,ACT,-35,149\n# x\n2601,B,ACT,-35,149\n",
            "t:4: postcode 2601 again (first on line 2)",
        ),
    ],
)
def test_postcode_table_errors(text: str, message: str) -> None:
    with pytest.raises(PostcodeError) as info:
        parse_postcodes(text, "t")
    assert message in str(info.value)


def _clinic(cid: str, name: str, lat: float, lon: float) -> Clinic:
    return Clinic(cid, name, "", "2600", "ACT", lat, lon, ("covid",), ())


def test_nearest_orders_by_distance_and_drops_far_ones() -> None:
    table = shipped_postcodes()
    origin = table.coordinates("2617")  # Belconnen
    assert origin is not None
    clinics = [
        _clinic("sydney", "Sydney", -33.863, 151.207),
        _clinic("woden", "Woden", -35.345, 149.088),
        _clinic("belconnen", "Belconnen", -35.238, 149.066),
        _clinic("civic", "Civic", -35.279, 149.130),
    ]
    ranked = nearest(origin, clinics)
    assert [r.clinic.id for r in ranked] == ["belconnen", "civic", "woden", "sydney"]
    assert ranked[0].km < 1.0 < ranked[1].km
    assert [r.clinic.id for r in nearest(origin, clinics, max_km=50)] == [
        "belconnen",
        "civic",
        "woden",
    ]
    twins = [_clinic("b", "Same", -35.3, 149.1), _clinic("a", "Same", -35.3, 149.1)]
    assert [r.clinic.id for r in nearest(origin, twins)] == ["a", "b"]
