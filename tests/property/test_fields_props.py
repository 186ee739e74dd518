"""Hypothesis: any keys on any spec give Valid or Invalid, never an exception; generated
Medicare numbers, dates, phone numbers and postcodes validate to their normal forms;
a single mistyped digit of a Medicare number is caught; masks keep lengths."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.ivr.fields import (
    DTMF_KEYS,
    MAX_DIGITS,
    ChoiceField,
    DateField,
    DateFormat,
    DateRule,
    DigitsField,
    FieldSpec,
    Invalid,
    InvalidReason,
    IrnRule,
    MedicareField,
    PhoneField,
    PostcodeField,
    State,
    Valid,
    YesNoField,
    complete,
    mask,
    max_keys,
    medicare_check_digit,
    postcode_state,
    validate,
)

FUZZ = settings(max_examples=400)

todays = st.dates(datetime.date(1990, 1, 1), datetime.date(2090, 12, 31))
keys = st.text(DTMF_KEYS, max_size=14) | st.text("0123456789", max_size=14)


@st.composite
def date_fields(draw: st.DrawFn) -> DateField:
    date_format = draw(st.sampled_from(DateFormat))
    when = draw(st.sampled_from(DateRule))
    ages_allowed = date_format is not DateFormat.MMYYYY and when is not DateRule.FUTURE
    min_age = draw(st.none() | st.integers(0, 60)) if ages_allowed else None
    max_age = draw(st.none() | st.integers(min_age or 0, 150)) if ages_allowed else None
    low = -1000 if when is not DateRule.FUTURE else 0
    high = 0 if when is DateRule.PAST else 1000
    min_days = draw(st.none() | st.integers(low, high))
    max_days = draw(st.none() | st.integers(min_days if min_days is not None else low, high))
    return DateField(date_format, when, min_age, max_age, min_days, max_days)


@st.composite
def digits_fields(draw: st.DrawFn) -> DigitsField:
    low = draw(st.integers(1, MAX_DIGITS))
    return DigitsField(low, draw(st.integers(low, MAX_DIGITS)))


@st.composite
def yes_no_fields(draw: st.DrawFn) -> YesNoField:
    yes, no = draw(st.lists(st.sampled_from(DTMF_KEYS), min_size=2, max_size=2, unique=True))
    return YesNoField(yes, no)


choice_fields = st.dictionaries(
    st.sampled_from(DTMF_KEYS),
    st.text(min_size=1, max_size=5) | st.integers() | st.booleans(),
    min_size=1,
).map(ChoiceField)
specs: st.SearchStrategy[FieldSpec] = st.one_of(
    digits_fields(),
    date_fields(),
    st.sampled_from([(True, True), (True, False), (False, True)]).map(lambda ml: PhoneField(*ml)),
    st.builds(
        PostcodeField,
        st.booleans(),
        st.none() | st.frozensets(st.sampled_from(State), min_size=1),
    ),
    st.sampled_from(IrnRule).map(MedicareField),
    yes_no_fields(),
    choice_fields,
)


@FUZZ
@given(specs, keys, todays)
def test_any_keys_give_valid_or_invalid(spec: FieldSpec, typed: str, today: datetime.date) -> None:
    result = validate(spec, typed, today)
    assert isinstance(result, Valid | Invalid)
    assert isinstance(complete(spec, typed), bool)
    if isinstance(result, Invalid):
        assert result.message
        assert (result.reason is InvalidReason.EMPTY) == (typed == "")
        return
    assert len(typed) <= max_keys(spec)
    assert result.display
    if not isinstance(spec, YesNoField | ChoiceField):
        assert isinstance(result.value, str)
        masked = mask(spec, result.value)
        assert len(masked) == len(result.value)
        assert masked[:-3].count("•") == len(masked[:-3])


@FUZZ
@given(specs, st.text("0123456789", min_size=12, max_size=70))
def test_entries_at_the_key_limit_are_complete(spec: FieldSpec, typed: str) -> None:
    assert complete(spec, typed[: max_keys(spec)]) or len(typed) < max_keys(spec)


@st.composite
def medicare_numbers(draw: st.DrawFn) -> str:
    first_eight = str(draw(st.integers(2, 6))) + draw(st.text("0123456789", min_size=7, max_size=7))
    issue = str(draw(st.integers(1, 9)))
    irn = draw(st.sampled_from(["", "1", "2", "3", "4", "5", "6", "7", "8", "9"]))
    return first_eight + str(medicare_check_digit(first_eight)) + issue + irn


@FUZZ
@given(medicare_numbers(), todays)
def test_generated_medicare_numbers_validate(number: str, today: datetime.date) -> None:
    result = validate(MedicareField(), number, today)
    assert isinstance(result, Valid)
    assert result.value == number
    assert result.detail("card") == number[:10]
    assert result.detail("irn") == (number[10] if len(number) == 11 else None)
    assert complete(MedicareField(), number[:10])
    assert not complete(MedicareField(), number[:9])


@FUZZ
@given(medicare_numbers(), st.integers(1, 8), st.integers(1, 9))
def test_one_mistyped_digit_is_caught(number: str, position: int, shift: int) -> None:
    # the weights 1, 3, 7, 9 are prime to 10: changing any one of digits 2..9 changes
    # the sum mod 10 (digit 1 is also guarded by the 2-6 rule, so it is left out here)
    wrong = str((int(number[position]) + shift) % 10)
    typo = number[:position] + wrong + number[position + 1 :]
    result = validate(MedicareField(), typo, datetime.date(2025, 1, 1))
    assert isinstance(result, Invalid)
    assert result.reason is InvalidReason.BAD_CHECK_DIGIT


@FUZZ
@given(st.dates(datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)), todays)
def test_full_dates_round_trip(day: datetime.date, today: datetime.date) -> None:
    dd, mm, yyyy = f"{day.day:02d}", f"{day.month:02d}", f"{day.year:04d}"
    for spec, typed in (
        (DateField(DateFormat.DDMMYYYY), dd + mm + yyyy),
        (DateField(DateFormat.YYYYMMDD), yyyy + mm + dd),
    ):
        result = validate(spec, typed, today)
        assert isinstance(result, Valid)
        assert result.value == day.isoformat()
        assert complete(spec, typed)
    month = validate(DateField(DateFormat.MMYYYY), mm + yyyy, today)
    assert isinstance(month, Valid) and month.value == day.isoformat()[:7]


@FUZZ
@given(
    st.dates(datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)),
    todays,
    st.sampled_from(DateRule),
)
def test_two_digit_years_keep_day_month_and_year_digits(
    day: datetime.date, today: datetime.date, rule: DateRule
) -> None:
    typed = f"{day.day:02d}{day.month:02d}{day.year % 100:02d}"
    result = validate(DateField(DateFormat.DDMMYY, rule), typed, today)
    if isinstance(result, Invalid):
        # only the rule can refuse an existing day (or 29 Feb in a century without it)
        assert result.reason in (InvalidReason.IN_PAST, InvalidReason.BAD_DATE)
        return
    got = datetime.date.fromisoformat(str(result.value))
    assert (got.day, got.month, got.year % 100) == (day.day, day.month, day.year % 100)
    if rule is DateRule.PAST:
        assert got <= today
    else:
        assert abs((got - today).days) <= 50 * 366 + 1


@st.composite
def national_numbers(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from("23478"))
    return "0" + area + draw(st.text("0123456789", min_size=8, max_size=8))


@FUZZ
@given(national_numbers())
def test_phone_forms_normalise_to_the_same_number(number: str) -> None:
    forms = (number, "61" + number[1:], "61" + number)
    results = [validate(PhoneField(), form, datetime.date(2025, 1, 1)) for form in forms]
    assert all(isinstance(r, Valid) and r.value == number for r in results)
    for form in forms:
        assert complete(PhoneField(), form)
        assert not complete(PhoneField(), form[:-1])
    first = results[0]
    assert isinstance(first, Valid)
    assert first.detail("line") == ("mobile" if number[1] == "4" else "landline")
    assert first.display.replace(" ", "") == number


@FUZZ
@given(st.integers(0, 9999))
def test_postcodes_follow_the_range_table(number: int) -> None:
    code = f"{number:04d}"
    found = postcode_state(code)
    result = validate(PostcodeField(), code, datetime.date(2025, 1, 1))
    if found is None:
        assert isinstance(result, Invalid) and result.reason is InvalidReason.UNKNOWN_POSTCODE
    else:
        assert isinstance(result, Valid) and result.detail("state") == found[0].value
        street = validate(PostcodeField(po_boxes=False), code, datetime.date(2025, 1, 1))
        assert isinstance(street, Valid) != found[1]
