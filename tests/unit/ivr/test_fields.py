"""Typed keypad inputs: normalisation, every refusal reason, completion, masking, and the
specs' checks of their own options. `today` is fixed: 15 June 2025."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from hotline.ivr.fields import (
    ChoiceField,
    DateField,
    DateFormat,
    DateRule,
    DigitsField,
    FieldKind,
    FieldSpec,
    Invalid,
    InvalidReason,
    IrnRule,
    MedicareField,
    PhoneField,
    PostcodeField,
    SayAs,
    State,
    Valid,
    YesNoField,
    complete,
    mask,
    max_keys,
    medicare_check_digit,
    postcode_state,
    spec_from_step,
    validate,
)

TODAY = datetime.date(2025, 6, 15)


def valid(spec: FieldSpec, keys: str, today: datetime.date = TODAY) -> Valid:
    result = validate(spec, keys, today)
    assert isinstance(result, Valid), result
    return result


def invalid(spec: FieldSpec, keys: str, today: datetime.date = TODAY) -> Invalid:
    result = validate(spec, keys, today)
    assert isinstance(result, Invalid), result
    return result


# -- digits ----------------------------------------------------------------------------------


def test_digits() -> None:
    spec = DigitsField(min_length=4, max_length=6)
    assert valid(spec, "0042") == Valid("0042", "0042", (SayAs.DIGITS, "0042"))
    assert valid(spec, "123456").value == "123456"
    short = invalid(spec, "123")
    assert short.reason is InvalidReason.TOO_SHORT
    assert short.message == "the entry needs at least 4 digits, found 3"
    long = invalid(spec, "1234567")
    assert long.reason is InvalidReason.TOO_LONG
    assert long.message == "the entry has at most 6 digits, found 7"
    assert invalid(spec, "12*4").reason is InvalidReason.NOT_DIGITS
    assert invalid(spec, "12#4").message == "only digits are accepted, found '#'"
    assert invalid(spec, "").reason is InvalidReason.EMPTY
    assert invalid(spec, "١٢٣٤").reason is InvalidReason.NOT_DIGITS  # ASCII digits only


# -- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_format", "keys", "iso"),
    [
        (DateFormat.DDMMYYYY, "17051980", "1980-05-17"),
        (DateFormat.YYYYMMDD, "19800517", "1980-05-17"),
        (DateFormat.DDMMYYYY, "29022024", "2024-02-29"),
        (DateFormat.DDMMYYYY, "01011900", "1900-01-01"),
        (DateFormat.DDMMYYYY, "31122099", "2099-12-31"),
    ],
)
def test_dates_normalise_to_iso(date_format: DateFormat, keys: str, iso: str) -> None:
    result = valid(DateField(format=date_format), keys)
    assert result.value == iso
    assert result.say == (SayAs.DATE, iso)
    assert result.display == f"{iso[8:]}/{iso[5:7]}/{iso[:4]}"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("31021980", "February 1980 has no day 31"),
        ("29022023", "February 2023 has no day 29"),
        ("00011980", "January 1980 has no day 00"),
        ("31041980", "April 1980 has no day 31"),
        ("17131980", "13 is not a month (01 to 12)"),
        ("17001980", "00 is not a month (01 to 12)"),
        ("01011899", "the year 1899 is before 1900"),
        ("01010000", "the year 0000 is before 1900"),
    ],
)
def test_impossible_dates(keys: str, message: str) -> None:
    result = invalid(DateField(), keys)
    assert result.reason is InvalidReason.BAD_DATE
    assert result.message == message


def test_date_length() -> None:
    assert invalid(DateField(), "1705198").message == (
        "a date keyed as DDMMYYYY needs 8 digits, found 7"
    )
    assert invalid(DateField(), "170519800").reason is InvalidReason.TOO_LONG
    assert invalid(DateField(format=DateFormat.DDMMYY), "1705198").reason is InvalidReason.TOO_LONG


@pytest.mark.parametrize(
    ("rule", "keys", "iso"),
    [
        # past: the latest century not after today
        (DateRule.PAST, "170580", "1980-05-17"),
        (DateRule.PAST, "150625", "2025-06-15"),  # today itself is not in the future
        (DateRule.PAST, "160625", "1925-06-16"),
        (DateRule.PAST, "010100", "2000-01-01"),
        # future and any: the century nearest today
        (DateRule.FUTURE, "160625", "2025-06-16"),
        (DateRule.FUTURE, "010170", "2070-01-01"),
        (DateRule.ANY, "010180", "1980-01-01"),
        (DateRule.ANY, "010170", "2070-01-01"),
        (DateRule.ANY, "290200", "2000-02-29"),
    ],
)
def test_two_digit_years(rule: DateRule, keys: str, iso: str) -> None:
    assert valid(DateField(format=DateFormat.DDMMYY, when=rule), keys).value == iso


def test_two_digit_year_leap_day_only_in_a_leap_century() -> None:
    # 29/02/00 exists in 2000 but not 1900 or 2100: ANY keeps 2000, PAST too
    assert valid(DateField(format=DateFormat.DDMMYY, when=DateRule.PAST), "290200").value == (
        "2000-02-29"
    )
    result = invalid(DateField(format=DateFormat.DDMMYY), "290201")
    assert result.reason is InvalidReason.BAD_DATE


def test_two_digit_year_in_the_past_for_a_future_rule() -> None:
    result = invalid(DateField(format=DateFormat.DDMMYY, when=DateRule.FUTURE), "010125")
    assert result.reason is InvalidReason.IN_PAST
    assert result.message == "01/01/2025 is in the past"


def test_past_and_future_rules() -> None:
    past = DateField(when=DateRule.PAST)
    future = DateField(when=DateRule.FUTURE)
    assert valid(past, "15062025").value == "2025-06-15"
    assert valid(future, "15062025").value == "2025-06-15"
    assert invalid(past, "16062025") == Invalid(
        InvalidReason.IN_FUTURE, "16/06/2025 is in the future"
    )
    assert invalid(future, "14062025") == Invalid(
        InvalidReason.IN_PAST, "14/06/2025 is in the past"
    )
    assert valid(DateField(), "01012090").value == "2090-01-01"


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ("15062007", None),  # 18 today
        ("16062007", InvalidReason.TOO_YOUNG),  # 18 tomorrow
        ("16061960", None),  # 64, 65 tomorrow
        ("15061960", InvalidReason.TOO_OLD),  # 65 today
        ("01011900", InvalidReason.TOO_OLD),
    ],
)
def test_age_bounds(keys: str, reason: InvalidReason | None) -> None:
    spec = DateField(when=DateRule.PAST, min_age=18, max_age=64)
    result = validate(spec, keys, TODAY)
    if reason is None:
        assert isinstance(result, Valid)
    else:
        assert isinstance(result, Invalid) and result.reason is reason


def test_age_messages() -> None:
    spec = DateField(when=DateRule.PAST, min_age=18, max_age=64)
    assert invalid(spec, "16062007").message == (
        "16/06/2007 is less than 18 years ago (the minimum age)"
    )
    assert invalid(spec, "15061960").message == (
        "15/06/1960 is more than 64 years ago (the maximum age)"
    )


def test_leap_day_birthday_counts_from_first_of_march() -> None:
    spec = DateField(when=DateRule.PAST, min_age=18)
    born = "29022004"
    assert invalid(spec, born, datetime.date(2022, 2, 28)).reason is InvalidReason.TOO_YOUNG
    assert isinstance(validate(spec, born, datetime.date(2022, 3, 1)), Valid)


def test_day_bounds() -> None:
    spec = DateField(when=DateRule.FUTURE, min_days=1, max_days=30)
    assert invalid(spec, "15062025") == Invalid(
        InvalidReason.TOO_EARLY, "15/06/2025 is before 16/06/2025, the earliest date"
    )
    assert valid(spec, "16062025").value == "2025-06-16"
    assert valid(spec, "15072025").value == "2025-07-15"
    assert invalid(spec, "16072025") == Invalid(
        InvalidReason.TOO_LATE, "16/07/2025 is after 15/07/2025, the latest date"
    )
    recent = DateField(min_days=-7, max_days=0)
    assert valid(recent, "08062025").value == "2025-06-08"
    assert invalid(recent, "07062025").reason is InvalidReason.TOO_EARLY


def test_months() -> None:
    expiry = DateField(format=DateFormat.MMYYYY, when=DateRule.FUTURE)
    this_month = valid(expiry, "062025")
    assert this_month == Valid("2025-06", "06/2025", (SayAs.MONTH, "2025-06"))
    assert invalid(expiry, "052025") == Invalid(InvalidReason.IN_PAST, "05/2025 is in the past")
    assert invalid(expiry, "132025").reason is InvalidReason.BAD_DATE
    assert invalid(expiry, "001999").reason is InvalidReason.BAD_DATE
    assert valid(expiry, "122099").value == "2099-12"
    # a month passes a bound when some day of it does
    past = DateField(format=DateFormat.MMYYYY, when=DateRule.PAST)
    assert valid(past, "062025").value == "2025-06"
    assert invalid(past, "072025").reason is InvalidReason.IN_FUTURE
    soon = DateField(format=DateFormat.MMYYYY, min_days=20, max_days=40)
    # the window is 5 July .. 25 July 2025: June ends before it, August starts after it
    assert invalid(soon, "062025") == Invalid(
        InvalidReason.TOO_EARLY, "06/2025 is before 05/07/2025, the earliest date"
    )
    assert valid(soon, "072025").value == "2025-07"
    assert invalid(soon, "082025").reason is InvalidReason.TOO_LATE


# -- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "value", "display", "line"),
    [
        ("0412345678", "0412345678", "0412 345 678", "mobile"),
        ("61412345678", "0412345678", "0412 345 678", "mobile"),
        ("610412345678", "0412345678", "0412 345 678", "mobile"),
        ("0261234567", "0261234567", "02 6123 4567", "landline"),
        ("0398765432", "0398765432", "03 9876 5432", "landline"),
        ("0733334444", "0733334444", "07 3333 4444", "landline"),
        ("0889990000", "0889990000", "08 8999 0000", "landline"),
        ("61261234567", "0261234567", "02 6123 4567", "landline"),
    ],
)
def test_phone_numbers(keys: str, value: str, display: str, line: str) -> None:
    result = valid(PhoneField(), keys)
    assert (result.value, result.display, result.detail("line")) == (value, display, line)
    assert result.say == (SayAs.DIGITS, display)
    assert result.detail("state") is None


@pytest.mark.parametrize(
    ("keys", "reason", "fragment"),
    [
        ("1300123456", InvalidReason.BAD_PREFIX, "starts with 0 (or 61), found 13"),
        ("1800123456", InvalidReason.BAD_PREFIX, "starts with 0 (or 61)"),
        ("6212345678", InvalidReason.BAD_PREFIX, "starts with 0 (or 61)"),
        ("0512345678", InvalidReason.BAD_PREFIX, "numbers starting 05 are not accepted"),
        ("0112345678", InvalidReason.BAD_PREFIX, "numbers starting 01"),
        ("0012345678", InvalidReason.BAD_PREFIX, "numbers starting 00"),
        ("615412345678", InvalidReason.BAD_PREFIX, "numbers starting 05"),
        (
            "041234567",
            InvalidReason.TOO_SHORT,
            "an Australian phone number needs 10 digits, found 9",
        ),
        ("04123456789", InvalidReason.TOO_LONG, "has 10 digits, found 11"),
        (
            "6141234567",
            InvalidReason.TOO_SHORT,
            "a phone number keyed from 61 needs 11 digits, found 10",
        ),
        ("614123456789", InvalidReason.TOO_LONG, "keyed from 61 has 11 digits, found 12"),
        ("61041234567", InvalidReason.TOO_SHORT, "keyed from 61 needs 12 digits"),
        ("04", InvalidReason.TOO_SHORT, "needs 10 digits, found 2"),
        ("0", InvalidReason.TOO_SHORT, "needs 10 digits, found 1"),
        ("041234567#", InvalidReason.NOT_DIGITS, "found '#'"),
        ("", InvalidReason.EMPTY, "nothing was entered"),
    ],
)
def test_bad_phone_numbers(keys: str, reason: InvalidReason, fragment: str) -> None:
    result = invalid(PhoneField(), keys)
    assert result.reason is reason
    assert fragment in result.message


def test_phone_line_restrictions() -> None:
    mobiles = PhoneField(landline=False)
    assert valid(mobiles, "0412345678").detail("line") == "mobile"
    assert invalid(mobiles, "0261234567") == Invalid(
        InvalidReason.BAD_PREFIX, "a landline number is not accepted here: key a mobile"
    )
    landlines = PhoneField(mobile=False)
    assert invalid(landlines, "0412345678").message == (
        "a mobile number is not accepted here: key a landline"
    )


# -- postcodes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("postcode", "state", "po_only"),
    [
        ("0200", State.ACT, True),
        ("0299", State.ACT, True),
        ("0800", State.NT, False),
        ("0899", State.NT, False),
        ("0900", State.NT, True),
        ("0999", State.NT, True),
        ("1000", State.NSW, True),
        ("2000", State.NSW, False),
        ("2599", State.NSW, False),
        ("2600", State.ACT, False),
        ("2618", State.ACT, False),
        ("2619", State.NSW, False),
        ("2899", State.NSW, False),
        ("2900", State.ACT, False),
        ("2920", State.ACT, False),
        ("2921", State.NSW, False),
        ("3000", State.VIC, False),
        ("3999", State.VIC, False),
        ("4000", State.QLD, False),
        ("5000", State.SA, False),
        ("5799", State.SA, False),
        ("5800", State.SA, True),
        ("6000", State.WA, False),
        ("6799", State.WA, False),
        ("6800", State.WA, True),
        ("7000", State.TAS, False),
        ("7800", State.TAS, True),
        ("8000", State.VIC, True),
        ("9000", State.QLD, True),
        ("9999", State.QLD, True),
    ],
)
def test_postcode_ranges(postcode: str, state: State, po_only: bool) -> None:
    assert postcode_state(postcode) == (state, po_only)
    result = valid(PostcodeField(), postcode)
    assert (result.value, result.detail("state")) == (postcode, state.value)
    assert result.say == (SayAs.DIGITS, postcode)


@pytest.mark.parametrize("postcode", ["0000", "0199", "0300", "0500", "0799"])
def test_unused_postcodes(postcode: str) -> None:
    assert postcode_state(postcode) is None
    assert invalid(PostcodeField(), postcode) == Invalid(
        InvalidReason.UNKNOWN_POSTCODE, f"{postcode} is not an Australian postcode"
    )


def test_postcode_options() -> None:
    street_only = PostcodeField(po_boxes=False)
    assert invalid(street_only, "0200") == Invalid(
        InvalidReason.PO_BOX_ONLY,
        "0200 is a postcode for PO boxes and large-volume receivers only (ACT)",
    )
    assert valid(street_only, "2600").detail("state") == "ACT"
    canberra_region = PostcodeField(states=frozenset({State.ACT, State.NSW}))
    assert valid(canberra_region, "2620").detail("state") == "NSW"
    assert invalid(canberra_region, "3000") == Invalid(
        InvalidReason.OUT_OF_AREA, "3000 is in VIC; this service covers ACT, NSW"
    )
    assert invalid(PostcodeField(), "260").reason is InvalidReason.TOO_SHORT
    assert invalid(PostcodeField(), "26000").message == "a postcode has 4 digits, found 5"
    assert postcode_state("26a0") is None
    assert postcode_state("260") is None


# -- Medicare --------------------------------------------------------------------------------


def test_medicare_published_example() -> None:
    # the conformance example: 2123 4567 → check digit (2+3+14+27+4+15+42+63) % 10 = 0
    assert medicare_check_digit("21234567") == 0
    result = valid(MedicareField(), "2123456701")
    assert result == Valid(
        "2123456701", "2123 45670 1", (SayAs.DIGITS, "2123 45670 1"), (("card", "2123456701"),)
    )
    with_irn = valid(MedicareField(), "21234567013")
    assert with_irn.value == "21234567013"
    assert with_irn.display == "2123 45670 1 / 3"
    assert with_irn.detail("card") == "2123456701"
    assert with_irn.detail("irn") == "3"


@pytest.mark.parametrize(
    ("keys", "reason", "message"),
    [
        (
            "2123456711",
            InvalidReason.BAD_CHECK_DIGIT,
            "the check digit (9th) does not match: a digit was probably mistyped",
        ),
        (
            "2123456791",
            InvalidReason.BAD_CHECK_DIGIT,
            "the check digit (9th) does not match: a digit was probably mistyped",
        ),
        (
            "1123456701",
            InvalidReason.BAD_PREFIX,
            "a Medicare card number starts with 2, 3, 4, 5 or 6, found 1",
        ),
        (
            "7123456701",
            InvalidReason.BAD_PREFIX,
            "a Medicare card number starts with 2, 3, 4, 5 or 6, found 7",
        ),
        ("2123456700", InvalidReason.BAD_ISSUE_NUMBER, "the issue number (10th digit) cannot be 0"),
        (
            "21234567010",
            InvalidReason.BAD_IRN,
            "the reference number (11th digit) is 1 to 9, found 0",
        ),
        (
            "212345670",
            InvalidReason.TOO_SHORT,
            "a Medicare card number needs at least 10 digits, found 9",
        ),
        (
            "212345670111",
            InvalidReason.TOO_LONG,
            "a Medicare card number has at most 11 digits, found 12",
        ),
        ("21234*6701", InvalidReason.NOT_DIGITS, "only digits are accepted, found '*'"),
    ],
)
def test_bad_medicare_numbers(keys: str, reason: InvalidReason, message: str) -> None:
    assert invalid(MedicareField(), keys) == Invalid(reason, message)


def test_medicare_irn_rules() -> None:
    without = MedicareField(irn=IrnRule.NONE)
    assert valid(without, "2123456701").value == "2123456701"
    assert invalid(without, "21234567011") == Invalid(
        InvalidReason.TOO_LONG, "a Medicare card number has 10 digits, found 11"
    )
    required = MedicareField(irn=IrnRule.REQUIRED)
    assert invalid(required, "2123456701") == Invalid(
        InvalidReason.TOO_SHORT,
        "a Medicare card number and its reference number needs 11 digits, found 10",
    )
    assert valid(required, "21234567011").detail("irn") == "1"


def test_every_single_digit_typo_of_the_first_nine_is_caught() -> None:
    number = "2123456701"
    for position in range(9):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            typo = number[:position] + digit + number[position + 1 :]
            result = validate(MedicareField(), typo, TODAY)
            assert isinstance(result, Invalid), typo


# -- yes/no and choices ----------------------------------------------------------------------


def test_yes_no() -> None:
    spec = YesNoField()
    assert valid(spec, "1") == Valid(True, "yes", (SayAs.TEXT, "yes"))
    assert valid(spec, "2") == Valid(False, "no", (SayAs.TEXT, "no"))
    assert invalid(spec, "3") == Invalid(
        InvalidReason.NOT_AN_OPTION, "press 1 for yes or 2 for no, found '3'"
    )
    assert invalid(spec, "12").reason is InvalidReason.NOT_AN_OPTION
    assert invalid(spec, "").reason is InvalidReason.EMPTY
    custom = YesNoField(yes="9", no="*")
    assert valid(custom, "*").value is False
    assert invalid(custom, "1").message == "press 9 for yes or * for no, found '1'"


def test_choices() -> None:
    spec = ChoiceField({"1": "pfizer", "2": "moderna", "3": 3, "#": True})
    assert valid(spec, "2") == Valid("moderna", "moderna", (SayAs.TEXT, "moderna"), (("key", "2"),))
    three = valid(spec, "3")
    assert three.value == 3 and type(three.value) is int and three.display == "3"
    assert valid(spec, "#").value is True
    assert invalid(spec, "4") == Invalid(
        InvalidReason.NOT_AN_OPTION, "'4' is not an option (keys: 1, 2, 3, #)"
    )


def test_choice_spec_is_frozen_and_hashable() -> None:
    source = {"1": "a", "2": "b"}
    spec = ChoiceField(source)
    source["3"] = "c"  # the spec keeps its own copy
    assert "3" not in spec.choices
    with pytest.raises(TypeError):
        spec.choices["3"] = "c"  # type: ignore[index]
    assert spec == ChoiceField({"1": "a", "2": "b"})
    assert hash(spec) == hash(ChoiceField({"1": "a", "2": "b"}))
    assert len({spec, ChoiceField({"1": "a", "2": "b"})}) == 1


# -- completion, key counts, masking ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "keys", "done"),
    [
        (DigitsField(max_length=4), "123", False),
        (DigitsField(max_length=4), "1234", True),
        (DigitsField(), "1" * 63, False),
        (DateField(), "1705198", False),
        (DateField(), "17051980", True),
        (DateField(format=DateFormat.DDMMYY), "170580", True),
        (DateField(format=DateFormat.MMYYYY), "06202", False),
        (DateField(format=DateFormat.MMYYYY), "062025", True),
        (PhoneField(), "041234567", False),
        (PhoneField(), "0412345678", True),
        (PhoneField(), "6", False),
        (PhoneField(), "61", False),
        (PhoneField(), "6141234567", False),
        (PhoneField(), "61412345678", True),
        (PhoneField(), "61041234567", False),
        (PhoneField(), "610412345678", True),
        (PostcodeField(), "260", False),
        (PostcodeField(), "2600", True),
        (MedicareField(), "212345670", False),
        (MedicareField(), "2123456701", True),
        (MedicareField(irn=IrnRule.NONE), "2123456701", True),
        (MedicareField(irn=IrnRule.REQUIRED), "2123456701", False),
        (MedicareField(irn=IrnRule.REQUIRED), "21234567011", True),
        (YesNoField(), "", False),
        (YesNoField(), "7", True),
        (ChoiceField({"1": "a"}), "1", True),
        (ChoiceField({"1": "a"}), "", False),
    ],
)
def test_complete(spec: FieldSpec, keys: str, done: bool) -> None:
    assert complete(spec, keys) is done


def test_max_keys() -> None:
    assert max_keys(DigitsField(max_length=7)) == 7
    assert max_keys(DateField()) == 8
    assert max_keys(DateField(format=DateFormat.DDMMYY)) == 6
    assert max_keys(PhoneField()) == 12
    assert max_keys(PostcodeField()) == 4
    assert max_keys(MedicareField()) == 11
    assert max_keys(MedicareField(irn=IrnRule.NONE)) == 10
    assert max_keys(YesNoField()) == 1
    assert max_keys(ChoiceField({"1": "a"})) == 1


def test_mask() -> None:
    assert mask(PhoneField(), "0412345678") == "•••••••678"
    assert mask(MedicareField(), "21234567011") == "••••••••011"
    assert mask(DigitsField(), "1234567") == "••••567"
    assert mask(DigitsField(), "123456") == "••••••"  # too short to show any of it
    assert mask(DateField(), "1980-05-17") == "••••••••••"
    assert mask(PostcodeField(), "2600") == "••••"
    assert mask(YesNoField(), True) == "••••"
    assert mask(ChoiceField({"1": 42}), 42) == "••"


# -- specs check their options ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DigitsField(min_length=0), "min_length must be between 1 and 64, found 0"),
        (lambda: DigitsField(max_length=65), "max_length must be between 1 and 64, found 65"),
        (
            lambda: DigitsField(min_length=5, max_length=3),
            "min_length (5) is greater than max_length (3)",
        ),
        (lambda: DigitsField(min_length=True), "min_length must be a whole number, found True"),
        (
            lambda: DateField(format="DDMMYYYY"),  # type: ignore[arg-type]
            "format must be one of DDMMYYYY, DDMMYY, YYYYMMDD, MMYYYY, found 'DDMMYYYY'",
        ),
        (lambda: DateField(when="past"), "when must be one of past, future, any"),  # type: ignore[arg-type]
        (lambda: DateField(min_age=-1), "min_age must be between 0 and 150, found -1"),
        (lambda: DateField(min_age=30, max_age=20), "min_age (30) is greater than max_age (20)"),
        (lambda: DateField(min_days=5, max_days=1), "min_days (5) is greater than max_days (1)"),
        (
            lambda: DateField(format=DateFormat.MMYYYY, min_age=18),
            "min_age needs a full date; format MMYYYY has no day",
        ),
        (
            lambda: DateField(when=DateRule.FUTURE, max_age=3),
            "max_age measures years since a date in the past",
        ),
        (
            lambda: DateField(when=DateRule.PAST, min_days=1),
            "min_days (1) puts the date after today, which when: past refuses",
        ),
        (
            lambda: DateField(when=DateRule.FUTURE, max_days=-1),
            "max_days (-1) puts the date before today",
        ),
        (lambda: PhoneField(mobile=False, landline=False), "mobile and landline are both false"),
        (lambda: PhoneField(mobile=1), "mobile must be true or false, found 1"),  # type: ignore[arg-type]
        (lambda: PostcodeField(states=frozenset()), "states must be a non-empty set of states"),
        (lambda: PostcodeField(states=frozenset({"ACT"})), "states must be one of ACT, NSW"),  # type: ignore[arg-type]
        (lambda: MedicareField(irn="optional"), "irn must be one of none, optional, required"),  # type: ignore[arg-type]
        (lambda: YesNoField(yes="11"), "yes must be one keypad key (0-9, *, #, A-D), found '11'"),
        (lambda: YesNoField(no="x"), "no must be one keypad key"),
        (lambda: YesNoField(yes="1", no="1"), "yes and no are the same key ('1')"),
        (lambda: ChoiceField({}), "choices must map at least one key to a value"),
        (lambda: ChoiceField({"12": "a"}), "choices: key '12' must be one keypad key"),
        (
            lambda: ChoiceField({"1": None}),  # type: ignore[dict-item]
            "choices: the value for key '1' must be text, a number or a boolean, found None",
        ),
        (lambda: ChoiceField({"1": 1.5}), "found 1.5"),  # type: ignore[dict-item]
        (lambda: ChoiceField({"1": ""}), "choices: the value for key '1' is empty"),
    ],
)
def test_spec_options_are_checked(build: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert message in str(info.value)


def test_spec_from_step_as_the_loader_calls_it() -> None:
    none: dict[str, Any] = {
        "min_length": None,
        "max_length": None,
        "date_format": None,
        "when": None,
        "min_age": None,
        "max_age": None,
        "choices": None,
        "yes": None,
        "no": None,
    }
    assert spec_from_step(kind="digits", **none) == DigitsField()
    assert spec_from_step(
        kind="date", **{**none, "date_format": "DDMMYY", "when": "past", "min_age": 18}
    ) == (DateField(format=DateFormat.DDMMYY, when=DateRule.PAST, min_age=18))
    assert spec_from_step(kind="phone", **none) == PhoneField()
    assert spec_from_step(kind="postcode", **none) == PostcodeField()
    assert spec_from_step(kind="medicare", **none) == MedicareField()
    assert spec_from_step(kind="yesno", **{**none, "yes": "9", "no": "6"}) == YesNoField("9", "6")
    assert spec_from_step(kind="choice", **{**none, "choices": {"1": "a", "2": 2}}) == (
        ChoiceField({"1": "a", "2": 2})
    )
    assert spec_from_step(FieldKind.MEDICARE, irn="required") == MedicareField(IrnRule.REQUIRED)
    assert spec_from_step("postcode", states=["act", "NSW"], po_boxes=False) == PostcodeField(
        po_boxes=False, states=frozenset({State.ACT, State.NSW})
    )
    assert spec_from_step("DIGITS", min_length=2).kind is FieldKind.DIGITS


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (
            "phone",
            {"min_age": 18},
            "min_age does not apply to a phone input (its options: mobile, landline)",
        ),
        ("date", {"choices": {"1": "a"}}, "choices does not apply to a date input"),
        (
            "yesno",
            {"max_length": 3},
            "max_length does not apply to a yesno input (its options: yes, no)",
        ),
        ("medicare", {"date_format": "DDMMYY"}, "format does not apply to a medicare input"),
        (
            "date",
            {"date_format": "DDMMYYY"},
            "format must be one of DDMMYYYY, DDMMYY, YYYYMMDD, MMYYYY, found 'DDMMYYY' (did you mean DDMMYYYY?)",
        ),
        ("date", {"when": "later"}, "when must be one of past, future, any, found 'later'"),
        ("choice", {}, "a choice input needs choices (key: value)"),
        ("choice", {"choices": {"1": None}}, "choices: the value for key '1' must be text"),
        (
            "digits",
            {"min_length": 9, "max_length": 4},
            "min_length (9) is greater than max_length (4)",
        ),
        (
            "number",
            {},
            "input must be one of digits, date, phone, postcode, medicare, yesno, choice, found 'number'",
        ),
        ("postcode", {"states": "ACT"}, "states must be a list of states"),
        (
            "postcode",
            {"states": ["XX"]},
            "states must be one of ACT, NSW, NT, QLD, SA, TAS, VIC, WA, found 'XX'",
        ),
    ],
)
def test_spec_from_step_errors(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        spec_from_step(kind, **options)
    assert message in str(info.value)


def test_specs_are_immutable() -> None:
    spec = DigitsField()
    with pytest.raises(AttributeError):
        spec.min_length = 3  # type: ignore[misc]
