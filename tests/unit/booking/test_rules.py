"""Eligibility rules: the document's checks and `assess`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hotline.booking.rules import Rules, Verdict, age_on, assess, default_rules, load_rules
from hotline.yamlpos import DiagnosticsError

D = dt.date
TODAY = D(2026, 5, 12)


@pytest.fixture
def rules() -> Rules:
    return default_rules()


def test_shipped_rules_load(rules: Rules) -> None:
    assert rules.default_vaccine == "covid"
    assert rules.vaccines["covid"].doses == 3
    assert str(rules.zone) == "Australia/Sydney"
    assert rules.hold_time == dt.timedelta(minutes=10)


def test_age_on_counts_whole_years_and_29_february() -> None:
    assert age_on(D(2000, 5, 12), D(2026, 5, 11)) == 25
    assert age_on(D(2000, 5, 12), D(2026, 5, 12)) == 26
    assert age_on(D(2004, 2, 29), D(2026, 2, 28)) == 21
    assert age_on(D(2004, 2, 29), D(2026, 3, 1)) == 22


def test_adult_first_dose_is_eligible_today(rules: Rules) -> None:
    e = assess(rules, "covid", D(1980, 1, 1), TODAY, [], horizon_days=14)
    assert (e.verdict, e.dose, e.earliest, e.age) == (Verdict.ELIGIBLE, 1, TODAY, 46)


def test_too_young_names_the_birthday_that_opens_the_band(rules: Rules) -> None:
    e = assess(rules, "covid", D(2022, 1, 1), TODAY, [], horizon_days=14)
    assert (e.verdict, e.earliest) == (Verdict.TOO_YOUNG, D(2027, 1, 1))


def test_a_birthday_inside_the_horizon_makes_the_child_eligible_from_it(rules: Rules) -> None:
    e = assess(rules, "covid", D(2021, 5, 20), TODAY, [], horizon_days=14)
    assert (e.verdict, e.earliest) == (Verdict.ELIGIBLE, D(2026, 5, 20))
    assert assess(rules, "covid", D(2021, 5, 20), TODAY, []).verdict is Verdict.TOO_YOUNG


def test_interval_between_doses(rules: Rules) -> None:
    first = D(2026, 5, 1)
    soon = assess(rules, "covid", D(1980, 1, 1), TODAY, [first])
    assert (soon.verdict, soon.dose, soon.earliest) == (Verdict.TOO_SOON, 2, D(2026, 5, 22))
    later = assess(rules, "covid", D(1980, 1, 1), TODAY, [first], horizon_days=14)
    assert (later.verdict, later.earliest) == (Verdict.ELIGIBLE, D(2026, 5, 22))
    on_day = assess(rules, "covid", D(1980, 1, 1), D(2026, 5, 22), [first])
    assert on_day.eligible


def test_third_dose_waits_for_the_child_to_reach_the_band_offering_it(rules: Rules) -> None:
    dob = D(2015, 1, 10)  # 11: the 5-11 band gives doses 1 and 2 only
    e = assess(rules, "covid", dob, TODAY, [D(2025, 1, 1), D(2025, 2, 1)], horizon_days=14)
    assert (e.verdict, e.dose, e.earliest) == (Verdict.TOO_YOUNG, 3, D(2027, 1, 10))


def test_complete_course(rules: Rules) -> None:
    e = assess(rules, "covid", D(1980, 1, 1), TODAY, [D(2024, 1, 1), D(2024, 2, 1), D(2024, 6, 1)])
    assert (e.verdict, e.dose) == (Verdict.COMPLETE, None)


def _rules(text: str, tmp_path: Path) -> Rules:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path, display_name="rules.yaml")


def test_too_old_and_not_offered(tmp_path: Path) -> None:
    rules = _rules(
        "default_vaccine: rsv\n"
        "vaccines:\n"
        "  rsv:\n"
        "    name: RSV\n"
        "    doses: 2\n"
        "    intervals_days: [30]\n"
        "    age_bands:\n"
        "      - {min_age: 60, max_age: 74, doses: [1]}\n",
        tmp_path,
    )
    old = assess(rules, "rsv", D(1940, 1, 1), TODAY, [], horizon_days=14)
    assert old.verdict is Verdict.TOO_OLD
    second = assess(rules, "rsv", D(1960, 1, 1), TODAY, [D(2025, 1, 1)], horizon_days=14)
    assert second.verdict is Verdict.NOT_OFFERED
    band_closes = assess(rules, "rsv", D(1951, 5, 20), TODAY, [], horizon_days=14)
    assert (band_closes.verdict, band_closes.earliest) == (Verdict.ELIGIBLE, TODAY)


def test_assess_refuses_a_birth_after_today(rules: Rules) -> None:
    with pytest.raises(ValueError, match="after"):
        assess(rules, "covid", D(2027, 1, 1), TODAY, [])


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "default_vaccine: x\nvaccines:\n  covid: {name: C, doses: 1, age_bands: [{min_age: 1, doses: [1]}]}\n",
            "rules.yaml:1:18: default_vaccine",
            "expected one of the vaccines (covid), found 'x'",
        ),
        (
            "default_vaccine: c\nvaccines:\n  c: {name: C, doses: 2, age_bands: [{min_age: 1, doses: [1]}]}\n",
            "rules.yaml:3:",
            "expected 1 intervals",
        ),
        (
            "default_vaccine: c\nvaccines:\n  c: {name: C, doses: 1, age_bands: [{min_age: 9, max_age: 3, doses: [1]}]}\n",
            "rules.yaml:3:",
            "expected at least min_age (9), found 3",
        ),
        (
            "default_vaccine: c\nvaccines:\n  c: {name: C, doses: 1, age_bands: [{min_age: 1, doses: [2]}]}\n",
            "rules.yaml:3:",
            "expected doses from 1 to 1, found 2",
        ),
        (
            "timezone: Mars/Olympus\ndefault_vaccine: c\nvaccines:\n  c: {name: C, doses: 1, age_bands: [{min_age: 1, doses: [1]}]}\n",
            "rules.yaml:1:11: timezone",
            "expected an IANA time zone",
        ),
        (
            "hold_minutes: 0\ndefault_vaccine: c\nvaccines:\n  c: {name: C, doses: 1, age_bands: [{min_age: 1, doses: [1]}]}\n",
            "rules.yaml:1:15: hold_minutes",
            "",
        ),
    ],
)
def test_rule_errors_name_file_line_and_key(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    with pytest.raises(DiagnosticsError) as info:
        _rules(text, tmp_path)
    shown = str(info.value)
    assert shown.startswith(where), shown
    assert message in shown
