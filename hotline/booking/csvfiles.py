"""The CSV files people exchange with the booking system: clinics in, bookings out.

Owns: the clinics file's columns and checks (every problem reported at once, each as
`FILE:LINE: COLUMN: what was expected, found what`), filling a clinic's coordinates from
its postcode when the file leaves them out, and the columns of the bookings export a
clinic prints for its day.

Must not know: storage, the clock, the command line (hotline.bookingcli reads and writes
the files).

The clinics file (UTF-8, a header line, `#` lines ignored):

    id,name,address,postcode,region,lat,lon,vaccines,sessions
    civic,Canberra City Health Centre,1 Moore St Canberra ACT,2601,ACT,-35.2790,149.1300,covid flu,Mon-Fri 09:00-17:00 15min x4

`lat` and `lon` may be empty (the postcode's centroid is used); `vaccines` are codes from
the rules separated by spaces; `sessions` as hotline.booking.model describes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping
from typing import Final

from hotline.booking.geo import PostcodeTable
from hotline.booking.model import (
    CLINIC_ID,
    Booking,
    Clinic,
    Session,
    SessionError,
    format_sessions,
    parse_sessions,
)

__all__ = [
    "CLINIC_COLUMNS",
    "EXPORT_COLUMNS",
    "ClinicFileError",
    "clinics_csv",
    "export_csv",
    "parse_clinics",
]

CLINIC_COLUMNS: Final = (
    "id",
    "name",
    "address",
    "postcode",
    "region",
    "lat",
    "lon",
    "vaccines",
    "sessions",
)
EXPORT_COLUMNS: Final = (
    "clinic_id",
    "clinic_name",
    "date",
    "time",
    "reference",
    "status",
    "vaccine",
    "dose",
    "medicare",
    "date_of_birth",
    "phone",
)
MAX_ERRORS: Final = 50


class ClinicFileError(ValueError):
    """Problems in a clinics file; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_clinics(
    text: str,
    name: str,
    *,
    postcodes: PostcodeTable,
    vaccines: Collection[str],
) -> list[Clinic]:
    """The clinics in a clinics file. Raises ClinicFileError listing every problem (up to
    `MAX_ERRORS`): a missing or unknown column, an empty field, a bad id or one given
    twice, a postcode the table does not know while lat/lon are empty, coordinates outside
    the globe or only one of them, a vaccine the rules do not have, bad sessions."""
    problems: list[str] = []
    lines = [
        (n, line)
        for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ClinicFileError([f"{name}: the file has no header and no clinics"])
    rows = list(csv.reader(line for _, line in lines))
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in CLINIC_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CLINIC_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        if len(set(header)) != len(header):
            parts.append("a column named twice")
        raise ClinicFileError(
            [
                f"{name}:{lines[0][0]}: expected the columns "
                f"{','.join(CLINIC_COLUMNS)}; {'; '.join(parts)}"
            ]
        )
    clinics: list[Clinic] = []
    seen: dict[str, int] = {}
    for (number, _), row in zip(lines[1:], rows[1:], strict=True):
        where = f"{name}:{number}"
        if len(problems) >= MAX_ERRORS:
            problems.append(f"{name}: more problems follow; fix these first")
            break
        if len(row) != len(header):
            problems.append(f"{where}: expected {len(header)} fields, found {len(row)}")
            continue
        field = {h: v.strip() for h, v in zip(header, row, strict=True)}
        before = len(problems)
        for column in ("id", "name", "address", "postcode", "region", "vaccines", "sessions"):
            if not field[column]:
                problems.append(f"{where}: {column}: expected a value, found an empty field")
        clinic_id = field["id"]
        if clinic_id and not CLINIC_ID.fullmatch(clinic_id):
            problems.append(
                f"{where}: id: expected 1 to 40 letters, digits, '-' or '_' "
                f"(starting with a letter or digit), found {clinic_id!r}"
            )
        elif clinic_id in seen:
            problems.append(f"{where}: id: {clinic_id!r} again (first on line {seen[clinic_id]})")
        seen.setdefault(clinic_id, number)
        postcode = field["postcode"]
        postcode_ok = len(postcode) == 4 and postcode.isascii() and postcode.isdigit()
        if postcode and not postcode_ok:
            problems.append(f"{where}: postcode: expected four digits, found {postcode!r}")
        lat_text, lon_text = field["lat"], field["lon"]
        coords: tuple[float, float] | None = None
        if lat_text or lon_text:
            try:
                coords = (float(lat_text), float(lon_text))
            except ValueError:
                problems.append(
                    f"{where}: lat, lon: expected both as decimal degrees (or "
                    f"both empty), found {lat_text!r}, {lon_text!r}"
                )
            else:
                if not (-90 <= coords[0] <= 90 and -180 <= coords[1] <= 180):
                    problems.append(
                        f"{where}: lat, lon: {lat_text}, {lon_text} is outside the globe"
                    )
        elif postcode_ok:
            coords = postcodes.coordinates(postcode)
            if coords is None:
                problems.append(
                    f"{where}: lat, lon: empty, and postcode {postcode} is not in "
                    f"the postcode table: give the clinic's coordinates"
                )
        codes = tuple(field["vaccines"].replace(",", " ").split())
        bad = [c for c in codes if c not in vaccines]
        if bad:
            problems.append(
                f"{where}: vaccines: expected codes from the rules "
                f"({', '.join(sorted(vaccines))}), found {', '.join(bad)}"
            )
        if len(set(codes)) != len(codes):
            problems.append(f"{where}: vaccines: a code is listed twice")
        sessions: tuple[Session, ...] = ()
        if field["sessions"]:
            try:
                sessions = parse_sessions(field["sessions"])
            except SessionError as exc:
                problems.append(f"{where}: sessions: {exc}")
        if len(problems) > before or coords is None:
            continue
        clinics.append(
            Clinic(
                clinic_id,
                field["name"],
                field["address"],
                postcode,
                field["region"],
                coords[0],
                coords[1],
                codes,
                sessions,
            )
        )
    if problems:
        raise ClinicFileError(problems)
    return clinics


def _csv(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def clinics_csv(clinics: Iterable[Clinic]) -> str:
    """A clinics file that `parse_clinics` reads back to the same clinics."""
    return _csv(
        [
            CLINIC_COLUMNS,
            *(
                (
                    c.id,
                    c.name,
                    c.address,
                    c.postcode,
                    c.region,
                    f"{c.lat:.5f}",
                    f"{c.lon:.5f}",
                    " ".join(c.vaccines),
                    format_sessions(c.sessions),
                )
                for c in clinics
            ),
        ]
    )


def export_csv(bookings: Iterable[Booking], clinics: Mapping[str, Clinic]) -> str:
    """The bookings export for clinics: one row per booking, sorted by clinic, time and
    reference. It carries Medicare numbers and dates of birth (the clinic checks who
    arrives): callers write it only where the clinic's staff can read it."""
    ordered = sorted(bookings, key=lambda b: (b.clinic_id, b.starts_at, b.reference or ""))
    return _csv(
        [
            EXPORT_COLUMNS,
            *(
                (
                    b.clinic_id,
                    clinics[b.clinic_id].name if b.clinic_id in clinics else "",
                    b.local_date.isoformat(),
                    f"{b.local_time:%H:%M}",
                    b.reference or "",
                    b.status.value,
                    b.vaccine,
                    b.dose,
                    b.person.medicare,
                    b.person.dob.isoformat(),
                    b.person.phone,
                )
                for b in ordered
            ),
        ]
    )
