"""Typed inputs a `collect` step gathers by keypad: what the keys a caller pressed mean.

Owns: the field kinds (digits, date, phone, postcode, Medicare card, yes/no, choice), one
frozen spec per kind that checks its own options, `validate` (keys → a normalised value or
the precise reason it was refused), `complete` (may collection stop without a terminator),
`max_keys` and `mask` (the form a sensitive value takes in logs and traces).

Must not know: DTMF timing, terminators and clear keys, prompts, flows, logging, the
clock (`today` is an argument). Nothing here decides *whether* a value is sensitive.

Australian facts used here:

- Phone: ten digits, 02 03 07 08 for landlines and 04 for mobiles. A keypad has no `+`,
  so 61 followed by the number without its 0 (eleven digits), or with it (twelve), is
  accepted and normalised to the 0… form.
- Postcodes: four digits in these ranges (the state is the one the range belongs to; a few
  localities near borders and the external territories are routed through a
  neighbouring state's range, and not every number inside a range is allocated):
  0200-0299 ACT*, 0800-0899 NT, 0900-0999 NT*, 1000-1999 NSW*, 2000-2599 NSW,
  2600-2618 ACT, 2619-2899 NSW, 2900-2920 ACT, 2921-2999 NSW, 3000-3999 VIC,
  4000-4999 QLD, 5000-5799 SA, 5800-5999 SA*, 6000-6797 WA (6798 Christmas Island and
  6799 Cocos (Keeling) Islands sit in it), 6800-6999 WA*, 7000-7799 TAS, 7800-7999 TAS*,
  8000-8999 VIC*, 9000-9999 QLD*. Ranges marked * serve PO boxes and large-volume
  receivers only; 0000-0199 and 0300-0799 are not used.
- Medicare card number: eight digits whose first is 2-6, a check digit equal to
  (d1 + 3·d2 + 7·d3 + 9·d4 + d5 + 3·d6 + 7·d7 + 9·d8) mod 10, an issue number 1-9, and
  optionally the individual reference number (IRN) 1-9 printed beside the person's name.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import ClassVar, Final, TypeAlias, TypeVar

from hotline.ivr.expr import to_text, whole_years

__all__ = [
    "DTMF_KEYS",
    "MAX_DIGITS",
    "ChoiceField",
    "DateField",
    "DateFormat",
    "DateRule",
    "DigitsField",
    "FieldKind",
    "FieldSpec",
    "FieldValue",
    "Invalid",
    "InvalidReason",
    "IrnRule",
    "MedicareField",
    "PhoneField",
    "PostcodeField",
    "SayAs",
    "State",
    "Valid",
    "YesNoField",
    "complete",
    "mask",
    "max_keys",
    "medicare_check_digit",
    "postcode_state",
    "spec_from_step",
    "validate",
]

DTMF_KEYS: Final = "0123456789*#ABCD"
MAX_DIGITS: Final = 64  # the longest DIGITS entry a spec may ask for
MIN_YEAR: Final = 1900  # earlier years are refused as keying mistakes
MASK_CHAR: Final = "•"

_E = TypeVar("_E", bound=Enum)

FieldValue: TypeAlias = str | int | bool
"""A collected value: text for every kind but YESNO (a boolean) and CHOICE (the option's
value as written in the flow: text, a number or a boolean)."""


class FieldKind(Enum):
    DIGITS = "digits"
    DATE = "date"
    PHONE = "phone"
    POSTCODE = "postcode"
    MEDICARE = "medicare"
    YESNO = "yesno"
    CHOICE = "choice"


class DateFormat(Enum):
    """The order the caller keys a date in."""

    DDMMYYYY = "DDMMYYYY"
    DDMMYY = "DDMMYY"
    YYYYMMDD = "YYYYMMDD"
    MMYYYY = "MMYYYY"  # a month (card expiry): the value is "YYYY-MM"


class DateRule(Enum):
    """Where a date may lie relative to today (today itself passes both PAST and FUTURE)."""

    PAST = "past"
    FUTURE = "future"
    ANY = "any"


class IrnRule(Enum):
    """Whether a Medicare entry carries the 11th digit, the individual reference number."""

    NONE = "none"  # exactly 10 digits
    OPTIONAL = "optional"  # 10 or 11 digits; collection stops by itself after 10
    REQUIRED = "required"  # exactly 11 digits


class State(Enum):
    ACT = "ACT"
    NSW = "NSW"
    NT = "NT"
    QLD = "QLD"
    SA = "SA"
    TAS = "TAS"
    VIC = "VIC"
    WA = "WA"


class SayAs(Enum):
    """How a value is read back to the caller."""

    DIGITS = "digits"  # digit by digit; a space marks a short pause ("0412 345 678")
    DATE = "date"  # an ISO date "YYYY-MM-DD", spoken as a date
    MONTH = "month"  # an ISO month "YYYY-MM", spoken as month and year
    TEXT = "text"  # words, spoken as they are ("yes", an option's value)


class InvalidReason(Enum):
    EMPTY = "empty"
    NOT_DIGITS = "not_digits"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BAD_DATE = "bad_date"
    IN_FUTURE = "in_future"
    IN_PAST = "in_past"
    TOO_YOUNG = "too_young"
    TOO_OLD = "too_old"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    BAD_PREFIX = "bad_prefix"
    BAD_CHECK_DIGIT = "bad_check_digit"
    BAD_ISSUE_NUMBER = "bad_issue_number"
    BAD_IRN = "bad_irn"
    UNKNOWN_POSTCODE = "unknown_postcode"
    PO_BOX_ONLY = "po_box_only"
    OUT_OF_AREA = "out_of_area"
    NOT_AN_OPTION = "not_an_option"


@dataclass(frozen=True, slots=True)
class Valid:
    """An accepted entry. `value` is normalised (ISO date, 0… phone number, …); `display`
    is the value formatted for a person to read; `say` how to read it back; `details`
    extra facts derived from it (a postcode's state, a phone's line type, …)."""

    value: FieldValue
    display: str
    say: tuple[SayAs, str]
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, key: str) -> str | None:
        return next((v for k, v in self.details if k == key), None)


@dataclass(frozen=True, slots=True)
class Invalid:
    """A refused entry: the reason (for the flow to branch on) and a sentence (for traces
    and the simulator) that says what was expected and what was keyed."""

    reason: InvalidReason
    message: str


Result: TypeAlias = Valid | Invalid


# -- specs ---------------------------------------------------------------------------------


def _check_int(option: str, value: object, low: int, high: int) -> None:
    if type(value) is not int:
        raise ValueError(f"{option} must be a whole number, found {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{option} must be between {low} and {high}, found {value}")


def _check_order(low_name: str, low: int | None, high_name: str, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{low_name} ({low}) is greater than {high_name} ({high})")


def _check_key(option: str, key: object) -> str:
    if not isinstance(key, str) or len(key) != 1 or key not in DTMF_KEYS:
        raise ValueError(f"{option} must be one keypad key (0-9, *, #, A-D), found {key!r}")
    return key


def _check_enum(option: str, value: object, enum: type[Enum]) -> None:
    if not isinstance(value, enum):
        choices = ", ".join(str(member.value) for member in enum)
        raise ValueError(f"{option} must be one of {choices}, found {value!r}")


def _check_bool(option: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{option} must be true or false, found {value!r}")


@dataclass(frozen=True, slots=True)
class DigitsField:
    """A run of digits (a reference number, a PIN, a count)."""

    kind: ClassVar[FieldKind] = FieldKind.DIGITS
    min_length: int = 1
    max_length: int = MAX_DIGITS

    def __post_init__(self) -> None:
        _check_int("min_length", self.min_length, 1, MAX_DIGITS)
        _check_int("max_length", self.max_length, 1, MAX_DIGITS)
        _check_order("min_length", self.min_length, "max_length", self.max_length)


_AGE_LIMIT: Final = 150
_DAYS_LIMIT: Final = 100 * 366


@dataclass(frozen=True, slots=True)
class DateField:
    """A date (or, with MMYYYY, a month). `when` places it relative to today; `min_age` /
    `max_age` bound the whole years from it to today (a birth date); `min_days` /
    `max_days` bound the days from today to it (negative: before today). A month passes
    a bound when any day of it would."""

    kind: ClassVar[FieldKind] = FieldKind.DATE
    format: DateFormat = DateFormat.DDMMYYYY
    when: DateRule = DateRule.ANY
    min_age: int | None = None
    max_age: int | None = None
    min_days: int | None = None
    max_days: int | None = None

    def __post_init__(self) -> None:
        _check_enum("format", self.format, DateFormat)
        _check_enum("when", self.when, DateRule)
        for option in ("min_age", "max_age"):
            value = getattr(self, option)
            if value is None:
                continue
            _check_int(option, value, 0, _AGE_LIMIT)
            if self.format is DateFormat.MMYYYY:
                raise ValueError(f"{option} needs a full date; format MMYYYY has no day")
            if self.when is DateRule.FUTURE:
                raise ValueError(
                    f"{option} measures years since a date in the past; it cannot be used "
                    "with when: future"
                )
        for option in ("min_days", "max_days"):
            value = getattr(self, option)
            if value is not None:
                _check_int(option, value, -_DAYS_LIMIT, _DAYS_LIMIT)
        _check_order("min_age", self.min_age, "max_age", self.max_age)
        _check_order("min_days", self.min_days, "max_days", self.max_days)
        if self.when is DateRule.PAST and self.min_days is not None and self.min_days > 0:
            raise ValueError(
                f"min_days ({self.min_days}) puts the date after today, which when: past refuses"
            )
        if self.when is DateRule.FUTURE and self.max_days is not None and self.max_days < 0:
            raise ValueError(
                f"max_days ({self.max_days}) puts the date before today, which when: future refuses"
            )

    @property
    def length(self) -> int:
        return len(self.format.value)


@dataclass(frozen=True, slots=True)
class PhoneField:
    """An Australian phone number; `mobile` / `landline` say which lines are accepted."""

    kind: ClassVar[FieldKind] = FieldKind.PHONE
    mobile: bool = True
    landline: bool = True

    def __post_init__(self) -> None:
        _check_bool("mobile", self.mobile)
        _check_bool("landline", self.landline)
        if not (self.mobile or self.landline):
            raise ValueError("mobile and landline are both false: no number could be accepted")


@dataclass(frozen=True, slots=True)
class PostcodeField:
    """An Australian postcode; `po_boxes` accepts the PO-box/large-receiver ranges,
    `states` (when given) the states the service covers."""

    kind: ClassVar[FieldKind] = FieldKind.POSTCODE
    po_boxes: bool = True
    states: frozenset[State] | None = None

    def __post_init__(self) -> None:
        _check_bool("po_boxes", self.po_boxes)
        if self.states is not None:
            if not isinstance(self.states, frozenset) or not self.states:
                raise ValueError(f"states must be a non-empty set of states, found {self.states!r}")
            for state in self.states:
                _check_enum("states", state, State)


@dataclass(frozen=True, slots=True)
class MedicareField:
    """An Australian Medicare card number, with or without the IRN (see `IrnRule`)."""

    kind: ClassVar[FieldKind] = FieldKind.MEDICARE
    irn: IrnRule = IrnRule.OPTIONAL

    def __post_init__(self) -> None:
        _check_enum("irn", self.irn, IrnRule)


@dataclass(frozen=True, slots=True)
class YesNoField:
    """One key for yes, another for no; the value is a boolean."""

    kind: ClassVar[FieldKind] = FieldKind.YESNO
    yes: str = "1"
    no: str = "2"

    def __post_init__(self) -> None:
        _check_key("yes", self.yes)
        _check_key("no", self.no)
        if self.yes == self.no:
            raise ValueError(f"yes and no are the same key ({self.yes!r})")


@dataclass(frozen=True, slots=True)
class ChoiceField:
    """One key from a fixed set; the value is the option's value as written."""

    kind: ClassVar[FieldKind] = FieldKind.CHOICE
    choices: Mapping[str, FieldValue]

    def __post_init__(self) -> None:
        if not isinstance(self.choices, Mapping) or not self.choices:
            raise ValueError("choices must map at least one key to a value")
        frozen: dict[str, FieldValue] = {}
        for key, value in self.choices.items():
            _check_key(f"choices: key {key!r}", key)
            if value is None or not isinstance(value, str | int):  # bool is an int
                raise ValueError(
                    f"choices: the value for key {key!r} must be text, a number or a boolean, "
                    f"found {value!r}"
                )
            if value == "":
                raise ValueError(f"choices: the value for key {key!r} is empty")
            frozen[key] = value
        object.__setattr__(self, "choices", MappingProxyType(frozen))

    def __hash__(self) -> int:
        return hash(tuple(self.choices.items()))


FieldSpec: TypeAlias = (
    DigitsField | DateField | PhoneField | PostcodeField | MedicareField | YesNoField | ChoiceField
)

_SPEC_CLASSES: Final[dict[FieldKind, type[FieldSpec]]] = {
    FieldKind.DIGITS: DigitsField,
    FieldKind.DATE: DateField,
    FieldKind.PHONE: PhoneField,
    FieldKind.POSTCODE: PostcodeField,
    FieldKind.MEDICARE: MedicareField,
    FieldKind.YESNO: YesNoField,
    FieldKind.CHOICE: ChoiceField,
}


def _enum_option(option: str, value: object, enum: type[_E]) -> _E:
    if isinstance(value, enum):
        return value
    for member in enum:
        if isinstance(value, str) and value.lower() == str(member.value).lower():
            return member
    names = [str(member.value) for member in enum]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{option} must be one of {', '.join(names)}, found {value!r}{hint}")


def spec_from_step(
    kind: str | FieldKind,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    date_format: str | DateFormat | None = None,
    when: str | DateRule | None = None,
    min_age: int | None = None,
    max_age: int | None = None,
    min_days: int | None = None,
    max_days: int | None = None,
    choices: Mapping[str, FieldValue | None] | None = None,
    yes: str | None = None,
    no: str | None = None,
    irn: str | IrnRule | None = None,
    mobile: bool | None = None,
    landline: bool | None = None,
    po_boxes: bool | None = None,
    states: frozenset[str | State] | list[str | State] | None = None,
) -> FieldSpec:
    """The spec of a collect step from its options as the flow writes them (`date_format`
    is the flow's `format`). An option given for a kind it does not apply to, or a bad
    value, raises ValueError naming the option."""
    field_kind = _enum_option("input", kind, FieldKind)
    given: dict[str, object] = {
        name: value
        for name, value in {
            "min_length": min_length,
            "max_length": max_length,
            "format": date_format,
            "when": when,
            "min_age": min_age,
            "max_age": max_age,
            "min_days": min_days,
            "max_days": max_days,
            "choices": choices,
            "yes": yes,
            "no": no,
            "irn": irn,
            "mobile": mobile,
            "landline": landline,
            "po_boxes": po_boxes,
            "states": states,
        }.items()
        if value is not None
    }
    cls = _SPEC_CLASSES[field_kind]
    accepted = [name for name in cls.__dataclass_fields__ if name != "kind"]
    for name in given:
        if name not in accepted:
            applies = ", ".join(accepted) if accepted else "none"
            raise ValueError(
                f"{name} does not apply to a {field_kind.value} input (its options: {applies})"
            )
    if "format" in given:
        given["format"] = _enum_option("format", given["format"], DateFormat)
    if "when" in given:
        given["when"] = _enum_option("when", given["when"], DateRule)
    if "irn" in given:
        given["irn"] = _enum_option("irn", given["irn"], IrnRule)
    if "states" in given:
        raw = given["states"]
        if not isinstance(raw, list | tuple | set | frozenset):
            raise ValueError(f"states must be a list of states, found {raw!r}")
        given["states"] = frozenset(_enum_option("states", s, State) for s in raw)
    if field_kind is FieldKind.CHOICE and "choices" not in given:
        raise ValueError("a choice input needs choices (key: value)")
    return cls(**given)  # type: ignore[arg-type]


# -- validation ----------------------------------------------------------------------------


def _digits_only(keys: str) -> Invalid | None:
    if keys == "":
        return Invalid(InvalidReason.EMPTY, "nothing was entered")
    for ch in keys:
        if not "0" <= ch <= "9":
            return Invalid(InvalidReason.NOT_DIGITS, f"only digits are accepted, found {ch!r}")
    return None


def _length(keys: str, low: int, high: int, what: str) -> Invalid | None:
    if len(keys) < low:
        need = f"{low}" if low == high else f"at least {low}"
        return Invalid(InvalidReason.TOO_SHORT, f"{what} needs {need} digits, found {len(keys)}")
    if len(keys) > high:
        most = f"{high}" if low == high else f"at most {high}"
        return Invalid(InvalidReason.TOO_LONG, f"{what} has {most} digits, found {len(keys)}")
    return None


def _group(text: str, *sizes: int) -> str:
    out: list[str] = []
    i = 0
    for size in sizes:
        if i >= len(text):
            break
        out.append(text[i : i + size])
        i += size
    if i < len(text):
        out.append(text[i:])
    return " ".join(out)


def _validate_digits(spec: DigitsField, keys: str) -> Result:
    problem = _digits_only(keys) or _length(keys, spec.min_length, spec.max_length, "the entry")
    if problem:
        return problem
    return Valid(keys, keys, (SayAs.DIGITS, keys))


# dates

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _date_from(day: int, month: int, year: int) -> datetime.date | Invalid:
    if not 1 <= month <= 12:
        return Invalid(InvalidReason.BAD_DATE, f"{month:02d} is not a month (01 to 12)")
    if year < MIN_YEAR:
        return Invalid(InvalidReason.BAD_DATE, f"the year {year:04d} is before {MIN_YEAR}")
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return Invalid(
            InvalidReason.BAD_DATE,
            f"{_MONTHS[month - 1]} {year} has no day {day:02d}",
        )


def _two_digit_year(
    day: int, month: int, yy: int, rule: DateRule, today: datetime.date
) -> datetime.date | Invalid:
    """A DDMMYY date: for `past`, the latest century that is not after today; otherwise
    the century nearest today."""
    century = today.year // 100 * 100
    candidates: list[datetime.date] = []
    problem: Invalid | None = None
    for base in (century - 100, century, century + 100):
        result = _date_from(day, month, base + yy)
        if isinstance(result, Invalid):
            problem = problem or result
        else:
            candidates.append(result)
    if not candidates:
        assert problem is not None
        return problem
    if rule is DateRule.PAST:
        not_after = [d for d in candidates if d <= today]
        if not_after:
            return max(not_after)
        if problem is not None:
            # the one reading in the past does not exist (before MIN_YEAR, or 29 Feb of
            # a year without it): say that, not that a later century is in the future
            return problem
    return min(candidates, key=lambda d: (abs((d - today).days), d))


def _display_date(d: datetime.date) -> str:
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def _validate_date(spec: DateField, keys: str, today: datetime.date) -> Result:
    problem = _digits_only(keys) or _length(
        keys, spec.length, spec.length, f"a date keyed as {spec.format.value}"
    )
    if problem:
        return problem
    if spec.format is DateFormat.MMYYYY:
        return _validate_month(spec, int(keys[:2]), int(keys[2:]), today)
    if spec.format is DateFormat.DDMMYYYY:
        parsed = _date_from(int(keys[:2]), int(keys[2:4]), int(keys[4:]))
    elif spec.format is DateFormat.YYYYMMDD:
        parsed = _date_from(int(keys[6:]), int(keys[4:6]), int(keys[:4]))
    else:
        parsed = _two_digit_year(int(keys[:2]), int(keys[2:4]), int(keys[4:]), spec.when, today)
    if isinstance(parsed, Invalid):
        return parsed
    problem = _check_date_bounds(spec, parsed, parsed, today, _display_date(parsed))
    if problem:
        return problem
    iso = parsed.isoformat()
    return Valid(iso, _display_date(parsed), (SayAs.DATE, iso))


def _validate_month(spec: DateField, month: int, year: int, today: datetime.date) -> Result:
    first = _date_from(1, month, year)
    if isinstance(first, Invalid):
        return first
    following = datetime.date(year + month // 12, month % 12 + 1, 1)
    last = following - datetime.timedelta(days=1)
    shown = f"{month:02d}/{year:04d}"
    problem = _check_date_bounds(spec, first, last, today, shown)
    if problem:
        return problem
    iso = f"{year:04d}-{month:02d}"
    return Valid(iso, shown, (SayAs.MONTH, iso))


def _check_date_bounds(
    spec: DateField, first: datetime.date, last: datetime.date, today: datetime.date, shown: str
) -> Invalid | None:
    """Bounds on the days first..last (one day for a date, a month for MMYYYY): a bound
    passes when some day of the span passes it."""
    if spec.when is DateRule.PAST and first > today:
        return Invalid(InvalidReason.IN_FUTURE, f"{shown} is in the future")
    if spec.when is DateRule.FUTURE and last < today:
        return Invalid(InvalidReason.IN_PAST, f"{shown} is in the past")
    if spec.min_age is not None or spec.max_age is not None:
        age = whole_years(first, today)
        if spec.min_age is not None and age < spec.min_age:
            return Invalid(
                InvalidReason.TOO_YOUNG,
                f"{shown} is less than {spec.min_age} years ago (the minimum age)",
            )
        if spec.max_age is not None and age > spec.max_age:
            return Invalid(
                InvalidReason.TOO_OLD,
                f"{shown} is more than {spec.max_age} years ago (the maximum age)",
            )
    if spec.min_days is not None and (last - today).days < spec.min_days:
        earliest = _display_date(today + datetime.timedelta(days=spec.min_days))
        return Invalid(InvalidReason.TOO_EARLY, f"{shown} is before {earliest}, the earliest date")
    if spec.max_days is not None and (first - today).days > spec.max_days:
        latest = _display_date(today + datetime.timedelta(days=spec.max_days))
        return Invalid(InvalidReason.TOO_LATE, f"{shown} is after {latest}, the latest date")
    return None


# phones

_LANDLINE_AREAS: Final = frozenset("2378")


def _validate_phone(spec: PhoneField, keys: str) -> Result:
    problem = _digits_only(keys)
    if problem:
        return problem
    if keys.startswith("61"):
        with_zero = keys[2:3] == "0"
        national = keys[2:] if with_zero else "0" + keys[2:]
        expected = 12 if with_zero else 11
        what = "a phone number keyed from 61"
    else:
        national = keys
        expected = 10
        what = "an Australian phone number"
    if national[0] != "0":
        return Invalid(
            InvalidReason.BAD_PREFIX,
            f"an Australian phone number starts with 0 (or 61), found {keys[:2]}…",
        )
    if len(national) > 1 and national[1] not in _LANDLINE_AREAS | {"4"}:
        return Invalid(
            InvalidReason.BAD_PREFIX,
            f"numbers starting 0{national[1]} are not accepted: mobiles start 04, landlines "
            "02, 03, 07 or 08",
        )
    problem = _length(keys, expected, expected, what)
    if problem:
        return problem
    mobile = national[1] == "4"
    if mobile and not spec.mobile:
        return Invalid(
            InvalidReason.BAD_PREFIX, "a mobile number is not accepted here: key a landline"
        )
    if not mobile and not spec.landline:
        return Invalid(
            InvalidReason.BAD_PREFIX, "a landline number is not accepted here: key a mobile"
        )
    display = _group(national, 4, 3, 3) if mobile else _group(national, 2, 4, 4)
    line = "mobile" if mobile else "landline"
    return Valid(national, display, (SayAs.DIGITS, display), (("line", line),))


# postcodes

_POSTCODE_RANGES: Final[tuple[tuple[int, int, State, bool], ...]] = (
    # (first, last, state, PO boxes and large-volume receivers only)
    (200, 299, State.ACT, True),
    (800, 899, State.NT, False),
    (900, 999, State.NT, True),
    (1000, 1999, State.NSW, True),
    (2000, 2599, State.NSW, False),
    (2600, 2618, State.ACT, False),
    (2619, 2899, State.NSW, False),
    (2900, 2920, State.ACT, False),
    (2921, 2999, State.NSW, False),
    (3000, 3999, State.VIC, False),
    (4000, 4999, State.QLD, False),
    (5000, 5799, State.SA, False),
    (5800, 5999, State.SA, True),
    (6000, 6799, State.WA, False),
    (6800, 6999, State.WA, True),
    (7000, 7799, State.TAS, False),
    (7800, 7999, State.TAS, True),
    (8000, 8999, State.VIC, True),
    (9000, 9999, State.QLD, True),
)


def postcode_state(postcode: str) -> tuple[State, bool] | None:
    """The state of a four-digit postcode and whether its range is for PO boxes and
    large-volume receivers only; None outside every range."""
    if len(postcode) != 4 or not postcode.isascii() or not postcode.isdigit():
        return None
    number = int(postcode)
    for first, last, state, po_only in _POSTCODE_RANGES:
        if first <= number <= last:
            return state, po_only
    return None


def _validate_postcode(spec: PostcodeField, keys: str) -> Result:
    problem = _digits_only(keys) or _length(keys, 4, 4, "a postcode")
    if problem:
        return problem
    found = postcode_state(keys)
    if found is None:
        return Invalid(InvalidReason.UNKNOWN_POSTCODE, f"{keys} is not an Australian postcode")
    state, po_only = found
    if po_only and not spec.po_boxes:
        return Invalid(
            InvalidReason.PO_BOX_ONLY,
            f"{keys} is a postcode for PO boxes and large-volume receivers only ({state.value})",
        )
    if spec.states is not None and state not in spec.states:
        covered = ", ".join(sorted(s.value for s in spec.states))
        return Invalid(
            InvalidReason.OUT_OF_AREA,
            f"{keys} is in {state.value}; this service covers {covered}",
        )
    return Valid(keys, keys, (SayAs.DIGITS, keys), (("state", state.value),))


# Medicare

_MEDICARE_WEIGHTS: Final = (1, 3, 7, 9, 1, 3, 7, 9)


def medicare_check_digit(first_eight: str) -> int:
    """The check digit (9th) of a Medicare card number from its first eight digits."""
    return sum(int(d) * w for d, w in zip(first_eight, _MEDICARE_WEIGHTS, strict=True)) % 10


def _validate_medicare(spec: MedicareField, keys: str) -> Result:
    problem = _digits_only(keys)
    if problem:
        return problem
    low = 11 if spec.irn is IrnRule.REQUIRED else 10
    high = 10 if spec.irn is IrnRule.NONE else 11
    what = "a Medicare card number" + (
        " and its reference number" if spec.irn is IrnRule.REQUIRED else ""
    )
    problem = _length(keys, low, high, what)
    if problem:
        return problem
    if keys[0] not in "23456":
        return Invalid(
            InvalidReason.BAD_PREFIX,
            f"a Medicare card number starts with 2, 3, 4, 5 or 6, found {keys[0]}",
        )
    if int(keys[8]) != medicare_check_digit(keys[:8]):
        return Invalid(
            InvalidReason.BAD_CHECK_DIGIT,
            "the check digit (9th) does not match: a digit was probably mistyped",
        )
    if keys[9] == "0":
        return Invalid(InvalidReason.BAD_ISSUE_NUMBER, "the issue number (10th digit) cannot be 0")
    card = _group(keys[:10], 4, 5, 1)
    if len(keys) == 11:
        if keys[10] == "0":
            return Invalid(
                InvalidReason.BAD_IRN, "the reference number (11th digit) is 1 to 9, found 0"
            )
        return Valid(
            keys,
            f"{card} / {keys[10]}",
            (SayAs.DIGITS, f"{card} {keys[10]}"),
            (("card", keys[:10]), ("irn", keys[10])),
        )
    return Valid(keys, card, (SayAs.DIGITS, card), (("card", keys),))


# keys


def _validate_yesno(spec: YesNoField, keys: str) -> Result:
    if keys == "":
        return Invalid(InvalidReason.EMPTY, "nothing was entered")
    if keys == spec.yes:
        return Valid(True, "yes", (SayAs.TEXT, "yes"))
    if keys == spec.no:
        return Valid(False, "no", (SayAs.TEXT, "no"))
    return Invalid(
        InvalidReason.NOT_AN_OPTION,
        f"press {spec.yes} for yes or {spec.no} for no, found {keys!r}",
    )


def _validate_choice(spec: ChoiceField, keys: str) -> Result:
    if keys == "":
        return Invalid(InvalidReason.EMPTY, "nothing was entered")
    if keys in spec.choices:
        value = spec.choices[keys]
        text = to_text(value)
        return Valid(value, text, (SayAs.TEXT, text), (("key", keys),))
    return Invalid(
        InvalidReason.NOT_AN_OPTION,
        f"{keys!r} is not an option (keys: {', '.join(spec.choices)})",
    )


def validate(spec: FieldSpec, digits: str, today: datetime.date) -> Valid | Invalid:
    """What the keys a caller pressed (`digits`, terminator excluded) mean for `spec`."""
    if isinstance(spec, DigitsField):
        return _validate_digits(spec, digits)
    if isinstance(spec, DateField):
        return _validate_date(spec, digits, today)
    if isinstance(spec, PhoneField):
        return _validate_phone(spec, digits)
    if isinstance(spec, PostcodeField):
        return _validate_postcode(spec, digits)
    if isinstance(spec, MedicareField):
        return _validate_medicare(spec, digits)
    if isinstance(spec, YesNoField):
        return _validate_yesno(spec, digits)
    return _validate_choice(spec, digits)


def max_keys(spec: FieldSpec) -> int:
    """The most keys a valid entry can have: collection never needs more."""
    if isinstance(spec, DigitsField):
        return spec.max_length
    if isinstance(spec, DateField):
        return spec.length
    if isinstance(spec, PhoneField):
        return 12  # 61 0412 345 678
    if isinstance(spec, PostcodeField):
        return 4
    if isinstance(spec, MedicareField):
        return 10 if spec.irn is IrnRule.NONE else 11
    return 1


def complete(spec: FieldSpec, digits: str) -> bool:
    """Whether collection can stop without a terminator: the entry has the length a valid
    one has (it may still be invalid; `validate` says why). A Medicare entry stops after
    10 digits unless the IRN is required; a phone entry after 10, or 11/12 when it starts
    with 61."""
    n = len(digits)
    if isinstance(spec, PhoneField):
        if digits.startswith("61"):
            return n >= (12 if digits[2:3] == "0" else 11)
        return n >= 10
    if isinstance(spec, MedicareField):
        return n >= (11 if spec.irn is IrnRule.REQUIRED else 10)
    return n >= max_keys(spec)


def mask(spec: FieldSpec, value: FieldValue) -> str:
    """The value for logs and traces: long numbers (digits, phone, Medicare) keep their
    last 3 characters, everything else is masked whole; the length is kept."""
    text = to_text(value)
    keep = 3 if isinstance(spec, DigitsField | PhoneField | MedicareField) and len(text) >= 7 else 0
    return MASK_CHAR * (len(text) - keep) + text[len(text) - keep :]
