"""Properties of say-as: every value speaks only known words, and the words give the value back.

The readers below are independent of hotline.media.sayas: they turn the spoken words
back into the number, so a number spoken wrongly (a lost "thousand", a wrong 万 group)
fails even where no table of expected sentences covers it.
"""

from __future__ import annotations

import datetime
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.media.sayas import LANGUAGES, MAX_NUMBER, SayAs, say, words_needed

NEEDED = {language: words_needed(language) for language in LANGUAGES}

numbers = st.integers(-MAX_NUMBER, MAX_NUMBER)
languages = st.sampled_from(LANGUAGES)

_EN_SMALL = {
    word: value
    for value, word in enumerate(
        [
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
        ]
    )
}
_EN_SMALL.update(
    {
        word: 10 * tens
        for tens, word in enumerate(
            ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2
        )
    }
)
_ZH_DIGIT = {
    "ling2": 0,
    "yi1": 1,
    "er4": 2,
    "liang3": 2,
    "san1": 3,
    "si4": 4,
    "wu3": 5,
    "liu4": 6,
    "qi1": 7,
    "ba1": 8,
    "jiu3": 9,
}


def _stems(names: list[str], language: str) -> list[str]:
    prefix = f"words/{language}/"
    assert all(name.startswith(prefix) for name in names), names
    return [name.removeprefix(prefix) for name in names]


def read_english(words: list[str]) -> int:
    """English cardinal words → the integer."""
    sign = -1 if words[:1] == ["minus"] else 1
    total = current = 0
    for word in words[1:] if sign < 0 else words:
        if word in _EN_SMALL:
            current += _EN_SMALL[word]
        elif word == "hundred":
            assert 1 <= current <= 9, words
            current *= 100
        elif word in ("thousand", "million"):
            assert 1 <= current <= 999, words
            total += current * (1000 if word == "thousand" else 1_000_000)
            current = 0
        else:
            assert word == "and", words
    return sign * (total + current)


def read_mandarin(words: list[str]) -> int:
    """Mandarin cardinal words (pinyin stems) → the integer."""
    sign = -1 if words[:1] == ["fu4"] else 1
    words = words[1:] if sign < 0 else words
    if words == ["ling2"]:
        return 0
    total = section = 0
    digit: int | None = None
    for word in words:
        if word == "ling2":
            assert digit is None, words
        elif word in _ZH_DIGIT:
            digit = _ZH_DIGIT[word]
        elif word in ("shi2", "bai3", "qian1"):
            if digit is None:
                assert word == "shi2", words  # only 十 stands without its digit
                digit = 1
            section += digit * {"shi2": 10, "bai3": 100, "qian1": 1000}[word]
            digit = None
        elif word == "wan4":
            total += (section + (digit or 0)) * 10_000
            section, digit = 0, None
        else:
            assert word == "yi4", words
            total = (total + section + (digit or 0)) * 100_000_000
            section, digit = 0, None
    return sign * (total + section + (digit or 0))


@settings(max_examples=500, deadline=None)
@given(numbers, languages)
def test_numbers_use_known_words_and_read_back(n: int, language: str) -> None:
    names = say(SayAs.NUMBER, str(n), language)
    assert set(names) <= NEEDED[language]
    stems = _stems(names, language)
    assert (read_english if language == "en" else read_mandarin)(stems) == n


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX_NUMBER), languages)
def test_ordinals_use_known_words_and_read_back(n: int, language: str) -> None:
    names = say(SayAs.ORDINAL, str(n), language)
    assert set(names) <= NEEDED[language]
    stems = _stems(names, language)
    if language == "zh":
        assert stems[0] == "di4"
        assert read_mandarin(stems[1:]) == n
    else:
        assert stems[:-1] == _stems(say(SayAs.NUMBER, str(n), "en"), "en")[:-1]
        assert stems[-1].endswith(("first", "second", "third", "th"))


@settings(max_examples=200, deadline=None)
@given(st.integers(-999, 999), st.integers(-999, 999), languages)
def test_different_numbers_below_1000_sound_different(a: int, b: int, language: str) -> None:
    if a != b:
        assert say(SayAs.NUMBER, str(a), language) != say(SayAs.NUMBER, str(b), language)


def test_every_number_below_ten_thousand_is_spoken_distinctly() -> None:
    for language in LANGUAGES:
        spoken = {tuple(say(SayAs.NUMBER, str(n), language)) for n in range(-9999, 10000)}
        assert len(spoken) == 19999


@settings(max_examples=300, deadline=None)
@given(st.dates(), languages, st.booleans(), st.booleans())
def test_dates_use_known_words(
    date: datetime.date, language: str, weekday: bool, year: bool
) -> None:
    options: dict[str, object] = {"weekday": weekday, "year": year}
    names = say(SayAs.DATE, date.isoformat(), language, options=options)
    assert set(names) <= NEEDED[language]
    stems = _stems(names, language)
    if language == "en":
        assert date.strftime("%B").lower() in stems
        assert (date.strftime("%A").lower() in stems) == weekday
    else:
        assert ("nian2" in stems) == year
        assert ("xing1qi1" in stems) == weekday
        assert stems[stems.index("yue4") + 1 : stems.index("ri4")] == _stems(
            say(SayAs.NUMBER, str(date.day), "zh"), "zh"
        )


reference_chars = st.sampled_from(string.ascii_letters + string.digits + "- ")


@settings(max_examples=300, deadline=None)
@given(st.text(reference_chars, min_size=1, max_size=32), languages, st.integers(0, 5))
def test_references_speak_each_character(text: str, language: str, group: int) -> None:
    if not any(char.isalnum() for char in text):
        return
    names = say(SayAs.REFERENCE, text, language, options={"group": group})
    assert set(names) <= NEEDED[language]
    spoken = [name for name in names if not name.endswith("/pause")]
    assert len(spoken) == sum(char.isalnum() for char in text)
    assert not names[0].endswith("/pause") and not names[-1].endswith("/pause")


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(string.digits), min_size=3, max_size=15), languages)
def test_phone_numbers_speak_every_digit_in_groups(digits: str, language: str) -> None:
    names = say(SayAs.PHONE, digits, language)
    assert set(names) <= NEEDED[language]
    groups: list[list[str]] = [[]]
    for name in names:
        if name.endswith("/pause"):
            groups.append([])
        else:
            groups[-1].append(name)
    assert sum(len(group) for group in groups) == len(digits)
    assert all(2 <= len(group) <= 4 for group in groups) or len(groups) == 1
    assert names == say(SayAs.PHONE, "-".join(digits), language)
