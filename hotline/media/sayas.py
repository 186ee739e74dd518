"""Say-as: the word recordings that speak a value, in English and in Mandarin Chinese.

Owns the rules that turn a value (a number, a date, a time, a booking reference, a
phone number) into the ordered list of word prompt names to play, such as
``["words/en/twenty", "words/en/three"]``; a name ``N`` is played from ``audio/N.wav``.
It also owns the vocabulary: `words_needed` lists every name `say` can return for a
language, so a flow checker can verify the recordings exist, and `word_text` gives the
written form of each word (for transcripts and for the tool that synthesises them).

This module is pure: it never reads files, never plays audio and never reads a clock
(weekdays come from the calendar date itself). It knows nothing of prompts, flows,
codecs or calls.

English (British/Australian usage):

* NUMBER: "one hundred and five", "one thousand and five", "two million one hundred",
  "minus seven". Compounds are spoken as two words ("twenty", "three").
* ORDINAL: the last word of the cardinal turned ordinal ("one hundred and first").
* DATE: "Monday the twenty-third of November twenty twenty-six". Years: 2000–2009 and
  x000–x009 as numbers ("two thousand and five"), x00 hundreds as "nineteen hundred",
  x01–x09 with "oh" ("nineteen oh five"), otherwise in pairs ("twenty twenty-six").
* TIME: "nine thirty a.m.", "nine oh five a.m.", "two o'clock p.m.", "twelve noon",
  "twelve midnight".
* DIGITS, REFERENCE, PHONE: one word per character; 0 is "zero".

Mandarin (names are tone-numbered pinyin, e.g. ``words/zh/liang3`` is 两):

* NUMBER: grouped by 万 and 亿. Inside a group a run of zeros between digits is one 零
  and trailing zeros are silent (1005 一千零五, 1050 一千零五十); a group below 1000 after
  a higher group, or after a group that is all zeros, starts with 零 (10010 一万零一十,
  100005000 一亿零五千), but 10005000 is 一千万五千. A number starting with 10–19 drops
  the 一 (10 十, 100000 十万) but not inside (110 一百一十). 两 is the digit 2 counting
  thousands, ten-thousands or hundred-millions on its own (两千, 两万, 两亿, 两万两千);
  二 everywhere else (二, 十二, 二十, 二百, 二百万). Negative numbers start with 负.
* ORDINAL: 第 + the cardinal (第二十三).
* DATE: the year digit by digit, then month, day and weekday: 二零二六年十一月二十三日星期一.
* TIME: a period of the day, the hour on the 12-hour clock and the minutes:
  凌晨 (00:01–05:59, hour 0 is 零点), 上午 (06–11), 中午 (12), 下午 (13–17), 晚上 (18–23);
  00:00 is 午夜十二点. 两点 for 2 o'clock; minutes 1–9 are 零X分, 0 minutes are silent
  (上午九点, 上午九点零五分, 下午两点三十分).
* DIGITS, REFERENCE, PHONE: one word per character, 1 is 幺 (the telephony reading that
  keeps it apart from 七), 0 is 零. Letters use the English letter recordings
  (``words/en/letter_a``), as Mandarin speakers say Latin letters by their English names.

PHONE groups an Australian number as it is spoken, with a pause word between groups:
mobiles (04, 05) and 1300/1800/1900 numbers 4-3-3, other ten-digit numbers (02, 03, 07,
08) 2-4-4, 13 xx xx numbers 2-2-2, eight-digit local numbers 4-4, up to four digits as
one group. ``+61`` becomes the national 0 (``+61 4…`` is read 04…); other international
numbers start with "plus". Anything else is read in groups of three, the last group of
four where a single digit would be left alone.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Final

__all__ = [
    "LANGUAGES",
    "MAX_NUMBER",
    "SayAs",
    "SayAsError",
    "say",
    "word_text",
    "words_needed",
]

LANGUAGES: Final = ("en", "zh")

MAX_NUMBER: Final = 999_999_999  # NUMBER and ORDINAL magnitude limit
MAX_DIGITS: Final = 32  # DIGITS length limit
MAX_REFERENCE: Final = 32  # REFERENCE length limit, separators included
MIN_PHONE_DIGITS: Final = 3
MAX_PHONE_DIGITS: Final = 15  # E.164

PAUSE: Final = "pause"  # the word stem of a short silence recording


class SayAs(Enum):
    """How to speak a value (the values are the `say:` kinds of a flow)."""

    DIGITS = "digits"
    NUMBER = "number"
    ORDINAL = "ordinal"
    DATE = "date"
    TIME = "time"
    REFERENCE = "reference"
    PHONE = "phone"


class SayAsError(ValueError):
    """A value cannot be spoken: malformed, out of range, or in an unsupported language."""


# --- vocabulary --------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_LETTER_STEMS = tuple(f"letter_{c}" for c in _LETTERS)

_EN_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_EN_SCALES = ("hundred", "thousand", "million")
_EN_ORDINALS: Mapping[str, str] = {
    "one": "first",
    "two": "second",
    "three": "third",
    "four": "fourth",
    "five": "fifth",
    "six": "sixth",
    "seven": "seventh",
    "eight": "eighth",
    "nine": "ninth",
    "ten": "tenth",
    "eleven": "eleventh",
    "twelve": "twelfth",
    "thirteen": "thirteenth",
    "fourteen": "fourteenth",
    "fifteen": "fifteenth",
    "sixteen": "sixteenth",
    "seventeen": "seventeenth",
    "eighteen": "eighteenth",
    "nineteen": "nineteenth",
    "twenty": "twentieth",
    "thirty": "thirtieth",
    "forty": "fortieth",
    "fifty": "fiftieth",
    "sixty": "sixtieth",
    "seventy": "seventieth",
    "eighty": "eightieth",
    "ninety": "ninetieth",
    "hundred": "hundredth",
    "thousand": "thousandth",
    "million": "millionth",
}
_EN_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_EN_TEXT: Mapping[str, str] = {
    **{stem: stem for stem in _EN_ONES},
    **{stem: stem for stem in _EN_TENS if stem},
    **{stem: stem for stem in _EN_SCALES},
    **{stem: stem for stem in _EN_ORDINALS.values()},
    **{stem: stem.capitalize() for stem in (*_EN_WEEKDAYS, *_EN_MONTHS)},
    **{stem: stem[-1].upper() for stem in _LETTER_STEMS},
    "and": "and",
    "minus": "minus",
    "plus": "plus",
    "the": "the",
    "of": "of",
    "oh": "oh",
    "o_clock": "o'clock",
    "am": "a.m.",
    "pm": "p.m.",
    "noon": "noon",
    "midnight": "midnight",
    PAUSE: "",
}

# Mandarin digits as counted (一) and as read digit by digit on the phone (幺 for 1).
_ZH_DIGITS = ("ling2", "yi1", "er4", "san1", "si4", "wu3", "liu4", "qi1", "ba1", "jiu3")
_ZH_READ_DIGITS = ("ling2", "yao1", *_ZH_DIGITS[2:])
_ZH_TEXT: Mapping[str, str] = {
    "ling2": "零",
    "yi1": "一",
    "er4": "二",
    "liang3": "两",
    "san1": "三",
    "si4": "四",
    "wu3": "五",
    "liu4": "六",
    "qi1": "七",
    "ba1": "八",
    "jiu3": "九",
    "yao1": "幺",
    "shi2": "十",
    "bai3": "百",
    "qian1": "千",
    "wan4": "万",
    "yi4": "亿",
    "fu4": "负",
    "di4": "第",
    "jia1": "加",
    "nian2": "年",
    "yue4": "月",
    "ri4": "日",
    "xing1qi1": "星期",
    "ling2chen2": "凌晨",
    "shang4wu3": "上午",
    "zhong1wu3": "中午",
    "xia4wu3": "下午",
    "wan3shang4": "晚上",
    "wu3ye4": "午夜",
    "dian3": "点",
    "fen1": "分",
    PAUSE: "",
}
# 星期一 … 星期六, 星期日 (date.weekday(): Monday is 0)
_ZH_WEEKDAYS = ("yi1", "er4", "san1", "si4", "wu3", "liu4", "ri4")


def _name(language: str, stem: str) -> str:
    """The prompt name of a word; letters are the English recordings in both languages."""
    if stem.startswith("letter_"):
        return f"words/en/{stem}"
    return f"words/{language}/{stem}"


def words_needed(language: str) -> frozenset[str]:
    """Every word name `say` can return for ``language`` (one of `LANGUAGES`)."""
    _check_language(language)
    table = _EN_TEXT if language == "en" else _ZH_TEXT
    stems = (*table, *_LETTER_STEMS)
    return frozenset(_name(language, stem) for stem in stems)


def word_text(name: str) -> str:
    """The written form of a word name: ``words/en/o_clock`` → "o'clock",
    ``words/zh/liang3`` → "两", a pause → ""."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "words" or parts[1] not in LANGUAGES:
        raise SayAsError(f"{name!r} is not a say-as word name (words/<language>/<word>)")
    table = _EN_TEXT if parts[1] == "en" else _ZH_TEXT
    text = table.get(parts[2])
    if text is None:
        raise SayAsError(f"{name!r} is not a say-as word of language {parts[1]!r}")
    return text


# --- value parsing -----------------------------------------------------------------------

_INTEGER = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_REFERENCE_CHARS = frozenset("0123456789" + _LETTERS + _LETTERS.upper())
_REFERENCE_SEPARATORS = frozenset("- ")
_PHONE_PUNCTUATION = frozenset(" -.()")


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise SayAsError(f"unsupported language {language!r}: say-as speaks {', '.join(LANGUAGES)}")


def _bad(kind: SayAs, value: str, reason: str) -> SayAsError:
    return SayAsError(f"{kind.name} value {value!r}: {reason}")


def _integer(kind: SayAs, value: str, *, minimum: int) -> int:
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise _bad(kind, value, "expected an integer of ASCII digits with an optional '-'")
    number = int(text)
    if not minimum <= number <= MAX_NUMBER:
        raise _bad(kind, value, f"out of range {minimum} … {MAX_NUMBER}")
    return number


def _options(
    kind: SayAs, options: Mapping[str, object] | None, defaults: Mapping[str, object]
) -> dict[str, object]:
    """The options of one kind: ``defaults`` overridden by ``options``, types checked."""
    chosen = dict(defaults)
    for key, given in (options or {}).items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise SayAsError(f"{kind.name} has no option {key!r} (its options: {known})")
        expected = type(defaults[key])
        if type(given) is not expected:
            raise SayAsError(
                f"{kind.name} option {key!r} must be {expected.__name__}, "
                f"got {type(given).__name__} {given!r}"
            )
        chosen[key] = given
    return chosen


# --- English -----------------------------------------------------------------------------


def _en_below_100(n: int) -> list[str]:
    if n < 20:
        return [_EN_ONES[n]]
    tens, ones = divmod(n, 10)
    return [_EN_TENS[tens]] + ([_EN_ONES[ones]] if ones else [])


def _en_below_1000(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _en_below_100(rest)
    return [_EN_ONES[hundreds], "hundred"] + (["and", *_en_below_100(rest)] if rest else [])


def _en_cardinal(n: int) -> list[str]:
    if n < 0:
        return ["minus", *_en_cardinal(-n)]
    if n == 0:
        return ["zero"]
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words: list[str] = []
    if millions:
        words += [*_en_below_1000(millions), "million"]
    if thousands:
        words += [*_en_below_1000(thousands), "thousand"]
    if units:
        if words and units < 100:
            words.append("and")  # one thousand and five, two million and ten
        words += _en_below_1000(units)
    return words


def _en_ordinal(n: int) -> list[str]:
    words = _en_cardinal(n)
    return [*words[:-1], _EN_ORDINALS[words[-1]]]


def _en_year(year: int) -> list[str]:
    century, rest = divmod(year, 100)
    if year < 1000 or year % 1000 < 10:
        return _en_cardinal(year)  # nine hundred and ninety-nine, two thousand and five
    if rest == 0:
        return [*_en_below_100(century), "hundred"]  # nineteen hundred
    if rest < 10:
        return [*_en_below_100(century), "oh", _EN_ONES[rest]]  # nineteen oh five
    return [*_en_below_100(century), *_en_below_100(rest)]  # twenty twenty-six


def _en_date(date: datetime.date, *, weekday: bool, year: bool) -> list[str]:
    words = [_EN_WEEKDAYS[date.weekday()]] if weekday else []
    words += ["the", *_en_ordinal(date.day), "of", _EN_MONTHS[date.month - 1]]
    return words + (_en_year(date.year) if year else [])


def _en_time(hour: int, minute: int) -> list[str]:
    if minute == 0 and hour in (0, 12):
        return ["twelve", "midnight" if hour == 0 else "noon"]
    clock = _EN_ONES[hour % 12 or 12]
    period = "am" if hour < 12 else "pm"
    if minute == 0:
        return [clock, "o_clock", period]
    if minute < 10:
        return [clock, "oh", _EN_ONES[minute], period]
    return [clock, *_en_below_100(minute), period]


# --- Mandarin ----------------------------------------------------------------------------

_ZH_GROUP_UNITS = ((1000, "qian1"), (100, "bai3"), (10, "shi2"), (1, ""))


def _zh_group(n: int, *, leading: bool) -> list[str]:
    """1 … 9999 within a larger number: one 零 per inner run of zeros, trailing zeros silent."""
    words: list[str] = []
    zeros = False
    for size, unit in _ZH_GROUP_UNITS:
        digit = n // size % 10
        if digit == 0:
            zeros = bool(words)
            continue
        if zeros:
            words.append("ling2")
            zeros = False
        if unit == "shi2" and digit == 1 and leading and not words:
            words.append("shi2")  # 十, 十五, 十万: no 一 at the very start
            continue
        words.append("liang3" if digit == 2 and unit == "qian1" else _ZH_DIGITS[digit])
        if unit:
            words.append(unit)
    return words


def _zh_cardinal(n: int) -> list[str]:
    if n < 0:
        return ["fu4", *_zh_cardinal(-n)]
    if n == 0:
        return ["ling2"]
    groups = ((n // 100_000_000, "yi4"), (n // 10_000 % 10_000, "wan4"), (n % 10_000, ""))
    words: list[str] = []
    after_empty_group = False
    for group, scale in groups:
        if group == 0:
            after_empty_group = bool(words)
            continue
        if words and (group < 1000 or after_empty_group):
            words.append("ling2")
        if group == 2 and scale:
            words.append("liang3")  # 两万, 两亿
        else:
            words += _zh_group(group, leading=not words)
        if scale:
            words.append(scale)
        after_empty_group = False
    return words


def _zh_date(date: datetime.date, *, weekday: bool, year: bool) -> list[str]:
    words: list[str] = []
    if year:
        words += [_ZH_DIGITS[int(d)] for d in f"{date.year}"] + ["nian2"]
    words += [*_zh_cardinal(date.month), "yue4", *_zh_cardinal(date.day), "ri4"]
    if weekday:
        words += ["xing1qi1", _ZH_WEEKDAYS[date.weekday()]]
    return words


def _zh_time(hour: int, minute: int) -> list[str]:
    if hour == 0 and minute == 0:
        return ["wu3ye4", "shi2", "er4", "dian3"]  # 午夜十二点
    if hour < 6:
        period = "ling2chen2"
    elif hour < 12:
        period = "shang4wu3"
    elif hour < 13:
        period = "zhong1wu3"
    elif hour < 18:
        period = "xia4wu3"
    else:
        period = "wan3shang4"
    clock = hour % 12 if hour != 12 else 12  # 凌晨零点 … 中午十二点
    words = [period, *(["liang3"] if clock == 2 else _zh_cardinal(clock)), "dian3"]
    if minute == 0:
        return words
    if minute < 10:
        return [*words, "ling2", _ZH_DIGITS[minute], "fen1"]
    return [*words, *_zh_cardinal(minute), "fen1"]


# --- the kinds ---------------------------------------------------------------------------


def _read_digit(language: str, digit: str) -> str:
    return (_EN_ONES if language == "en" else _ZH_READ_DIGITS)[int(digit)]


def _say_digits(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    _options(SayAs.DIGITS, options, {})
    text = value.strip()
    if not _DIGITS.fullmatch(text):
        raise _bad(SayAs.DIGITS, value, "expected ASCII digits 0-9 only")
    if len(text) > MAX_DIGITS:
        raise _bad(SayAs.DIGITS, value, f"{len(text)} digits, at most {MAX_DIGITS}")
    return [_read_digit(language, d) for d in text]


def _say_number(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    _options(SayAs.NUMBER, options, {})
    number = _integer(SayAs.NUMBER, value, minimum=-MAX_NUMBER)
    return _en_cardinal(number) if language == "en" else _zh_cardinal(number)


def _say_ordinal(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    _options(SayAs.ORDINAL, options, {})
    number = _integer(SayAs.ORDINAL, value, minimum=1)
    return _en_ordinal(number) if language == "en" else ["di4", *_zh_cardinal(number)]


def _say_date(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    chosen = _options(SayAs.DATE, options, {"weekday": True, "year": True})
    match = _DATE.fullmatch(value.strip())
    if match is None:
        raise _bad(SayAs.DATE, value, "expected an ISO date YYYY-MM-DD")
    year, month, day = (int(part) for part in match.groups())
    if year == 0:
        raise _bad(SayAs.DATE, value, "year 0000 is not a calendar year (0001 … 9999)")
    if not 1 <= month <= 12:
        raise _bad(SayAs.DATE, value, f"month {month} is out of range 1 … 12")
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        raise _bad(
            SayAs.DATE,
            value,
            f"day {day} is out of range: {calendar.month_name[month]} {year} has {days} days",
        )
    date = datetime.date(year, month, day)
    weekday, with_year = bool(chosen["weekday"]), bool(chosen["year"])
    if language == "en":
        return _en_date(date, weekday=weekday, year=with_year)
    return _zh_date(date, weekday=weekday, year=with_year)


def _say_time(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    _options(SayAs.TIME, options, {})
    match = _TIME.fullmatch(value.strip())
    if match is None:
        raise _bad(SayAs.TIME, value, "expected a 24-hour time HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23:
        raise _bad(SayAs.TIME, value, f"hour {hour} is out of range 0 … 23")
    if minute > 59:
        raise _bad(SayAs.TIME, value, f"minute {minute} is out of range 0 … 59")
    return _en_time(hour, minute) if language == "en" else _zh_time(hour, minute)


def _say_reference(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    group = _options(SayAs.REFERENCE, options, {"group": 0})["group"]
    if not isinstance(group, int) or group < 0:
        raise SayAsError(f"REFERENCE option 'group' must be 0 (off) or more, got {group!r}")
    text = value.strip()
    if not text:
        raise _bad(SayAs.REFERENCE, value, "empty reference")
    if len(text) > MAX_REFERENCE:
        raise _bad(SayAs.REFERENCE, value, f"{len(text)} characters, at most {MAX_REFERENCE}")
    for position, char in enumerate(text, 1):
        if char not in _REFERENCE_CHARS and char not in _REFERENCE_SEPARATORS:
            raise _bad(
                SayAs.REFERENCE,
                value,
                f"{char!r} at position {position}: only letters A-Z, digits 0-9 and "
                "'-' or space between groups are allowed",
            )
    if all(char in _REFERENCE_SEPARATORS for char in text):
        raise _bad(SayAs.REFERENCE, value, "no letters or digits, only separators")
    words: list[str] = []
    for part in re.split(r"[- ]+", text):
        for index, char in enumerate(part):
            if words and (index == 0 or (group and index % group == 0)):
                words.append(PAUSE)
            if char.isdigit():
                words.append(_read_digit(language, char))
            else:
                words.append(f"letter_{char.lower()}")
    return words


def _phone_groups(digits: str) -> list[str]:
    """Cut a national number into the groups it is spoken in."""
    sizes: tuple[int, ...]
    count = len(digits)
    if count <= 4:
        sizes = (count,)
    elif count == 10 and digits.startswith(("04", "05", "1300", "1800", "1900")):
        sizes = (4, 3, 3)
    elif count == 10 and digits.startswith(("02", "03", "07", "08")):
        sizes = (2, 4, 4)
    elif count == 6 and digits.startswith("13"):
        sizes = (2, 2, 2)
    elif count == 8:
        sizes = (4, 4)
    else:
        threes, left = divmod(count, 3)
        if left == 1:  # never a digit alone: the last group takes four
            sizes = (3,) * (threes - 1) + (4,)
        else:
            sizes = (3,) * threes + ((left,) if left else ())
    groups: list[str] = []
    start = 0
    for size in sizes:
        groups.append(digits[start : start + size])
        start += size
    return groups


def _say_phone(value: str, language: str, options: Mapping[str, object] | None) -> list[str]:
    _options(SayAs.PHONE, options, {})
    text = value.strip()
    international = text.startswith("+")
    body = text[1:] if international else text
    for position, char in enumerate(body, 2 if international else 1):
        if not ("0" <= char <= "9" or char in _PHONE_PUNCTUATION):
            raise _bad(
                SayAs.PHONE,
                value,
                f"{char!r} at position {position}: only digits, a leading '+', "
                "spaces, '-', '.' and parentheses are allowed",
            )
    digits = "".join(char for char in body if "0" <= char <= "9")
    if international and digits.startswith("61"):
        national = digits[2:]  # +61 4xx … is read 04xx …; +61 (0)4xx … too
        digits = national if national.startswith("0") else "0" + national
        international = False
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        raise _bad(
            SayAs.PHONE,
            value,
            f"{len(digits)} digits, expected {MIN_PHONE_DIGITS} … {MAX_PHONE_DIGITS}",
        )
    words = [("plus" if language == "en" else "jia1"), PAUSE] if international else []
    for index, group in enumerate(_phone_groups(digits)):
        if index:
            words.append(PAUSE)
        words += [_read_digit(language, d) for d in group]
    return words


_SAYERS: Mapping[SayAs, Callable[[str, str, Mapping[str, object] | None], list[str]]] = {
    SayAs.DIGITS: _say_digits,
    SayAs.NUMBER: _say_number,
    SayAs.ORDINAL: _say_ordinal,
    SayAs.DATE: _say_date,
    SayAs.TIME: _say_time,
    SayAs.REFERENCE: _say_reference,
    SayAs.PHONE: _say_phone,
}


def say(
    kind: SayAs, value: str, language: str, *, options: Mapping[str, object] | None = None
) -> list[str]:
    """The word names that speak ``value`` as ``kind`` in ``language``, in playing order.

    Options: DATE takes ``weekday`` and ``year`` (bools, both True by default);
    REFERENCE takes ``group`` (an int: a pause after every N characters of a group,
    0 for none, the default). Other kinds take none. Raises `SayAsError` naming the kind,
    the value and the fault for a malformed value, an unknown option or language.
    """
    if not isinstance(kind, SayAs):
        raise SayAsError(f"{kind!r} is not a SayAs kind")
    _check_language(language)
    if not isinstance(value, str):
        raise SayAsError(
            f"{kind.name} value must be a string, got {type(value).__name__} {value!r}"
        )
    return [_name(language, stem) for stem in _SAYERS[kind](value, language, options)]
