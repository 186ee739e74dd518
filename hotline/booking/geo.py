"""Where things are: postcodes to coordinates, distances, and the clinics nearest a caller.

Owns: the postcode table's format and parsing (CSV: postcode, locality, state, lat, lon,
with `#` comment lines), loading the table shipped for ACT and NSW, the great-circle
(haversine) distance, and ranking clinics by distance from a point.

Must not know: storage, slots (which clinics have room is the caller's filter), flows.

The shipped table (hotline/booking/data/postcodes_act_nsw.csv) holds approximate
centroids — good to a few kilometres, which is all ranking clinics needs.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from hotline.booking.model import Clinic

__all__ = [
    "EARTH_RADIUS_KM",
    "Place",
    "PostcodeError",
    "PostcodeTable",
    "Ranked",
    "haversine_km",
    "nearest",
    "parse_postcodes",
    "shipped_postcodes",
]

EARTH_RADIUS_KM: Final = 6371.0088  # mean radius (IUGG)
_POSTCODE: Final = re.compile(r"\d{4}")
_STATES: Final = frozenset({"ACT", "NSW", "NT", "QLD", "SA", "TAS", "VIC", "WA", "JBT"})


class PostcodeError(ValueError):
    """A postcode table that cannot be used; the message names the line."""


@dataclass(frozen=True, slots=True)
class Place:
    postcode: str
    locality: str
    state: str
    lat: float
    lon: float


class PostcodeTable(Mapping[str, Place]):
    """Postcode → its place (centroid). A read-only mapping."""

    def __init__(self, places: Iterable[Place]) -> None:
        self._places = {p.postcode: p for p in places}

    def __getitem__(self, postcode: str) -> Place:
        return self._places[postcode]

    def __iter__(self) -> Iterator[str]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)

    def coordinates(self, postcode: str) -> tuple[float, float] | None:
        place = self._places.get(postcode.strip())
        return None if place is None else (place.lat, place.lon)


def parse_postcodes(text: str, name: str = "postcodes") -> PostcodeTable:
    """Parse a postcode table. Raises PostcodeError at the first bad line
    (`NAME:LINE: …`): wrong column count, a postcode that is not four digits, an unknown
    state, coordinates outside the globe, or a postcode given twice."""
    places: list[Place] = []
    seen: dict[str, int] = {}
    header_seen = False
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for (number, _), row in zip(lines, csv.reader(line for _, line in lines), strict=True):
        where = f"{name}:{number}"
        if not header_seen:
            header_seen = True
            if [c.strip().lower() for c in row] == ["postcode", "locality", "state", "lat", "lon"]:
                continue
            raise PostcodeError(
                f"{where}: expected the header postcode,locality,state,lat,"
                f"lon, found {','.join(row)!r}"
            )
        if len(row) != 5:
            raise PostcodeError(f"{where}: expected 5 columns, found {len(row)}")
        postcode, locality, state, lat_text, lon_text = (c.strip() for c in row)
        if not _POSTCODE.fullmatch(postcode):
            raise PostcodeError(f"{where}: expected a four-digit postcode, found {postcode!r}")
        if state not in _STATES:
            raise PostcodeError(
                f"{where}: expected a state ({', '.join(sorted(_STATES))}), found {state!r}"
            )
        try:
            lat, lon = float(lat_text), float(lon_text)
        except ValueError:
            raise PostcodeError(
                f"{where}: expected decimal degrees, found {lat_text!r}, {lon_text!r}"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise PostcodeError(f"{where}: coordinates {lat}, {lon} are outside the globe")
        if postcode in seen:
            raise PostcodeError(
                f"{where}: postcode {postcode} again (first on line {seen[postcode]})"
            )
        seen[postcode] = number
        places.append(Place(postcode, locality, state, lat, lon))
    if not header_seen:
        raise PostcodeError(f"{name}: the table is empty")
    return PostcodeTable(places)


@cache
def shipped_postcodes() -> PostcodeTable:
    """The ACT and NSW table shipped with hotline (read once)."""
    text = (
        resources.files("hotline.booking").joinpath("data/postcodes_act_nsw.csv").read_text("utf-8")
    )
    return parse_postcodes(text, "postcodes_act_nsw.csv")


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two (lat, lon) points in degrees."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Ranked:
    clinic: Clinic
    km: float


def nearest(
    origin: tuple[float, float], clinics: Iterable[Clinic], *, max_km: float | None = None
) -> list[Ranked]:
    """`clinics` by distance from `origin` (ties by name, then id), those further than
    `max_km` left out."""
    ranked = [Ranked(c, haversine_km(origin, (c.lat, c.lon))) for c in clinics]
    if max_km is not None:
        ranked = [r for r in ranked if r.km <= max_km]
    ranked.sort(key=lambda r: (r.km, r.clinic.name, r.clinic.id))
    return ranked
