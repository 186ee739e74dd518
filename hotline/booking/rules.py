"""Booking rules: which vaccines, who may have which dose and when, and the booking
policy (hold time, how far ahead to offer, the zone clinics keep time in).

Owns: the rules document's schema (a pydantic model, so a rules file or a `booking:`
section of config.yaml is checked with file, line and column by hotline.yamlpos), its
cross-field checks, loading the shipped default, and `assess`: given a date of birth, the
doses already given and a day, whether a person may book and from which day.

Must not know: storage, the clock (`today` is an argument), flows, how a caller proved
who they are.

The document (all keys but `vaccines` and `default_vaccine` have defaults):

    timezone: Australia/Sydney   # the zone clinics' sessions and callers' dates are in
    hold_minutes: 10             # how long a place is held while the caller confirms
    search_days: 14              # how far ahead clinics and times are offered
    lead_minutes: 60             # the soonest a slot may start after the call
    max_distance_km: 150         # clinics further from the caller's postcode are not offered
    default_vaccine: covid
    vaccines:
      covid:
        name: COVID-19
        doses: 3
        intervals_days: [21, 90] # at least 21 days from dose 1 to 2, 90 from 2 to 3
        age_bands:               # whole years on the day of the appointment
          - {min_age: 5, max_age: 11, doses: [1, 2]}
          - {min_age: 12, doses: [1, 2, 3]}

`assess` works on the day of the appointment: a person is eligible for dose n on a day
when some age band offering dose n holds their age that day and the interval since their
previous dose has passed. Searching from `today`, the earliest such day within
`horizon_days` is returned; past the horizon the verdict names what stands in the way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator
from pydantic.types import AllowInfNan, Strict

from hotline.yamlpos import load_yaml, load_yaml_file, located_errors, problem, validate_document

__all__ = [
    "AgeBand",
    "Eligibility",
    "Rules",
    "VaccineRule",
    "Verdict",
    "age_on",
    "assess",
    "default_rules",
    "load_rules",
]

MAX_AGE: Final = 130

VaccineCode = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Age = Annotated[StrictInt, Field(ge=0, le=MAX_AGE)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AgeBand(_Model):
    """Ages (whole years, both ends included; no `max_age`: no upper limit) at which the
    listed doses are given."""

    min_age: Age
    max_age: Age | None = None
    doses: list[Annotated[StrictInt, Field(ge=1, le=10)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max_age is not None and self.max_age < self.min_age:
            raise located_errors(
                "AgeBand",
                [
                    problem(
                        ("max_age",),
                        f"expected at least min_age ({self.min_age}), found {self.max_age}",
                        input=self.max_age,
                    )
                ],
            )
        if len(set(self.doses)) != len(self.doses):
            raise located_errors(
                "AgeBand",
                [
                    problem(
                        ("doses",), f"expected each dose once, found {self.doses}", input=self.doses
                    )
                ],
            )
        return self


class VaccineRule(_Model):
    """A vaccine: its spoken name, how many doses make a course, the minimum days between
    consecutive doses, and the age bands it is given to."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=60)]
    doses: Annotated[StrictInt, Field(ge=1, le=10)]
    intervals_days: list[Annotated[StrictInt, Field(ge=0, le=3660)]] = Field(default_factory=list)
    age_bands: list[AgeBand] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.intervals_days) != self.doses - 1:
            raise located_errors(
                "VaccineRule",
                [
                    problem(
                        ("intervals_days",),
                        f"expected {self.doses - 1} intervals (one between each pair of the "
                        f"{self.doses} doses), found {len(self.intervals_days)}",
                        input=self.intervals_days,
                    )
                ],
            )
        problems = [
            problem(
                ("age_bands", i, "doses"),
                f"expected doses from 1 to {self.doses}, found {dose}",
                input=dose,
            )
            for i, band in enumerate(self.age_bands)
            for dose in band.doses
            if dose > self.doses
        ]
        if problems:
            raise located_errors("VaccineRule", problems)
        return self


class Rules(_Model):
    """The rules document (see the module text)."""

    timezone: StrictStr = "Australia/Sydney"
    hold_minutes: Annotated[StrictInt, Field(ge=1, le=120)] = 10
    search_days: Annotated[StrictInt, Field(ge=1, le=180)] = 14
    lead_minutes: Annotated[StrictInt, Field(ge=0, le=10080)] = 60
    max_distance_km: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0, le=5000)] = 150.0
    default_vaccine: VaccineCode
    vaccines: dict[VaccineCode, VaccineRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                problem(
                    ("timezone",),
                    f"expected an IANA time zone such as Australia/Sydney, found {self.timezone!r}",
                    input=self.timezone,
                )
            )
        if self.default_vaccine not in self.vaccines:
            problems.append(
                problem(
                    ("default_vaccine",),
                    f"expected one of the vaccines "
                    f"({', '.join(sorted(self.vaccines))}), found {self.default_vaccine!r}",
                    input=self.default_vaccine,
                )
            )
        if problems:
            raise located_errors("Rules", problems)
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def hold_time(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.hold_minutes)

    @property
    def lead_time(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.lead_minutes)


def load_rules(path: str | Path, *, display_name: str | None = None) -> Rules:
    """Read and check a rules file; raises hotline.yamlpos.DiagnosticsError whose lines
    name the file, line and column of each problem."""
    return validate_document(Rules, load_yaml_file(path, display_name=display_name))


def default_rules() -> Rules:
    """The rules shipped with hotline (hotline/booking/data/rules.yaml)."""
    text = resources.files("hotline.booking").joinpath("data/rules.yaml").read_text("utf-8")
    return validate_document(Rules, load_yaml(text, "hotline/booking/data/rules.yaml"))


# -- eligibility ----------------------------------------------------------------------------


class Verdict(StrEnum):
    ELIGIBLE = "eligible"
    TOO_YOUNG = "too_young"  # old enough only after the horizon
    TOO_OLD = "too_old"  # no band offering the dose holds them now or later
    TOO_SOON = "too_soon"  # the interval since the previous dose ends after the horizon
    COMPLETE = "complete"  # every dose of the course has been given
    NOT_OFFERED = "not_offered"  # no age band offers the next dose at all


@dataclass(frozen=True, slots=True)
class Eligibility:
    """The answer of `assess`. `dose` is the dose being booked (None when complete);
    `earliest` the first day it may be given (ELIGIBLE: within the horizon; TOO_YOUNG and
    TOO_SOON: the day past it; else None)."""

    verdict: Verdict
    vaccine: str
    dose: int | None
    age: int
    earliest: dt.date | None = None

    @property
    def eligible(self) -> bool:
        return self.verdict is Verdict.ELIGIBLE


def _birthday(dob: dt.date, years: int) -> dt.date:
    """The day someone born on `dob` turns `years` (29 February → 1 March)."""
    try:
        return dob.replace(year=dob.year + years)
    except ValueError:
        return dt.date(dob.year + years, 3, 1)


def age_on(dob: dt.date, day: dt.date) -> int:
    """Whole years between `dob` and `day` (a 29 February birthday counts from 1 March)."""
    years = day.year - dob.year
    if _birthday(dob, years) > day:
        years -= 1
    return years


def assess(
    rules: Rules,
    vaccine: str,
    dob: dt.date,
    today: dt.date,
    doses_given: Sequence[dt.date],
    *,
    horizon_days: int = 0,
) -> Eligibility:
    """May someone born on `dob`, given doses on `doses_given`, book the next dose of
    `vaccine` on a day from `today` to `today + horizon_days`? (Horizon 0: on `today`.)

    Raises KeyError for a vaccine the rules do not have and ValueError for a date of birth
    after `today`."""
    rule = rules.vaccines[vaccine]
    if dob > today:
        raise ValueError(f"date of birth {dob.isoformat()} is after {today.isoformat()}")
    age = age_on(dob, today)
    dose = len(doses_given) + 1
    if dose > rule.doses:
        return Eligibility(Verdict.COMPLETE, vaccine, None, age)
    after_interval = today
    if doses_given:
        after_interval = max(
            max(doses_given) + dt.timedelta(days=rule.intervals_days[dose - 2]), today
        )
    bands = [b for b in rule.age_bands if dose in b.doses]
    if not bands:
        return Eligibility(Verdict.NOT_OFFERED, vaccine, dose, age)
    horizon = today + dt.timedelta(days=horizon_days)
    best: dt.date | None = None
    age_bound = False  # whether the best candidate waits for a birthday
    for band in bands:
        opens = _birthday(dob, band.min_age)
        closes = (
            None
            if band.max_age is None
            else _birthday(dob, band.max_age + 1) - dt.timedelta(days=1)
        )
        day = max(after_interval, opens)
        if closes is not None and day > closes:
            continue
        if best is None or day < best:
            best, age_bound = day, opens > after_interval
    if best is None:
        return Eligibility(Verdict.TOO_OLD, vaccine, dose, age)
    if best > horizon:
        verdict = Verdict.TOO_YOUNG if age_bound else Verdict.TOO_SOON
        return Eligibility(verdict, vaccine, dose, age, best)
    return Eligibility(Verdict.ELIGIBLE, vaccine, dose, age, best)
