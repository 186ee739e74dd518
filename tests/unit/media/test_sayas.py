"""Tests for hotline.media.sayas (values → word names) and the word recordings it names."""

from __future__ import annotations

import datetime
import wave
from pathlib import Path

import numpy as np
import pytest

from hotline.media.g711 import Codec, encode
from hotline.media.prompts import SAMPLE_RATE, PromptCache, load_wav
from hotline.media.sayas import (
    LANGUAGES,
    SayAs,
    SayAsError,
    say,
    word_text,
    words_needed,
)

AUDIO = Path(__file__).resolve().parents[3] / "audio"


def words(kind: SayAs, value: str, language: str) -> list[str]:
    """The words without their ``words/<lang>/`` prefix."""
    return [name.removeprefix(f"words/{language}/") for name in say(kind, value, language)]


def zh_text(kind: SayAs, value: str, **options: object) -> str:
    """Mandarin as written, a pause as '|': easier to read than pinyin in a table."""
    return "".join(
        "|" if name.endswith("/pause") else word_text(name)
        for name in say(kind, value, "zh", options=options or None)
    )


def en_text(kind: SayAs, value: str, **options: object) -> str:
    return " ".join(
        "|" if name.endswith("/pause") else word_text(name)
        for name in say(kind, value, "en", options=options or None)
    )


# --- NUMBER ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "zero"),
        ("7", "seven"),
        ("10", "ten"),
        ("11", "eleven"),
        ("13", "thirteen"),
        ("19", "nineteen"),
        ("20", "twenty"),
        ("21", "twenty one"),
        ("99", "ninety nine"),
        ("100", "one hundred"),
        ("105", "one hundred and five"),
        ("110", "one hundred and ten"),
        ("115", "one hundred and fifteen"),
        ("999", "nine hundred and ninety nine"),
        ("1000", "one thousand"),
        ("1005", "one thousand and five"),
        ("1050", "one thousand and fifty"),
        ("1100", "one thousand one hundred"),
        ("1105", "one thousand one hundred and five"),
        ("12000", "twelve thousand"),
        ("100000", "one hundred thousand"),
        ("105000", "one hundred and five thousand"),
        ("123456", "one hundred and twenty three thousand four hundred and fifty six"),
        ("1000000", "one million"),
        ("1000005", "one million and five"),
        ("1000100", "one million one hundred"),
        ("2000010", "two million and ten"),
        ("20300400", "twenty million three hundred thousand four hundred"),
        (
            "999999999",
            "nine hundred and ninety nine million nine hundred and ninety nine thousand "
            "nine hundred and ninety nine",
        ),
        ("-1", "minus one"),
        ("-1005", "minus one thousand and five"),
        ("-0", "zero"),
        ("007", "seven"),
        (" 42 ", "forty two"),
    ],
)
def test_english_numbers(value: str, expected: str) -> None:
    assert en_text(SayAs.NUMBER, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "零"),
        ("2", "二"),
        ("10", "十"),
        ("12", "十二"),
        ("15", "十五"),
        ("20", "二十"),
        ("22", "二十二"),
        ("100", "一百"),
        ("101", "一百零一"),
        ("110", "一百一十"),
        ("111", "一百一十一"),
        ("200", "二百"),
        ("1000", "一千"),
        ("1005", "一千零五"),
        ("1010", "一千零一十"),
        ("1050", "一千零五十"),
        ("1500", "一千五百"),
        ("2000", "两千"),
        ("2002", "两千零二"),
        ("2222", "两千二百二十二"),
        ("10000", "一万"),
        ("10010", "一万零一十"),
        ("10100", "一万零一百"),
        ("12000", "一万两千"),
        ("20000", "两万"),
        ("22000", "两万两千"),
        ("100000", "十万"),
        ("110000", "十一万"),
        ("120000", "十二万"),
        ("105000", "十万五千"),
        ("1000000", "一百万"),
        ("1000005", "一百万零五"),
        ("2000000", "二百万"),
        ("10005000", "一千万五千"),
        ("20000000", "两千万"),
        ("100000000", "一亿"),
        ("100000005", "一亿零五"),
        ("100005000", "一亿零五千"),
        ("100100000", "一亿零一十万"),
        ("110000000", "一亿一千万"),
        ("200000000", "两亿"),
        ("999999999", "九亿九千九百九十九万九千九百九十九"),
        ("-5", "负五"),
        ("-10", "负十"),
    ],
)
def test_mandarin_numbers(value: str, expected: str) -> None:
    assert zh_text(SayAs.NUMBER, value) == expected


def test_mandarin_numbers_are_pinyin_names() -> None:
    assert say(SayAs.NUMBER, "2002", "zh") == [
        "words/zh/liang3",
        "words/zh/qian1",
        "words/zh/ling2",
        "words/zh/er4",
    ]


# --- ORDINAL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "english", "mandarin"),
    [
        ("1", "first", "第一"),
        ("2", "second", "第二"),
        ("3", "third", "第三"),
        ("5", "fifth", "第五"),
        ("8", "eighth", "第八"),
        ("9", "ninth", "第九"),
        ("11", "eleventh", "第十一"),
        ("12", "twelfth", "第十二"),
        ("20", "twentieth", "第二十"),
        ("23", "twenty third", "第二十三"),
        ("31", "thirty first", "第三十一"),
        ("40", "fortieth", "第四十"),
        ("100", "one hundredth", "第一百"),
        ("101", "one hundred and first", "第一百零一"),
        ("1000", "one thousandth", "第一千"),
        ("2000000", "two millionth", "第二百万"),
    ],
)
def test_ordinals(value: str, english: str, mandarin: str) -> None:
    assert en_text(SayAs.ORDINAL, value) == english
    assert zh_text(SayAs.ORDINAL, value) == mandarin


# --- DATE --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "english", "mandarin"),
    [
        (
            "2026-11-23",
            "Monday the twenty third of November twenty twenty six",
            "二零二六年十一月二十三日星期一",
        ),
        (
            "2024-02-29",
            "Thursday the twenty ninth of February twenty twenty four",
            "二零二四年二月二十九日星期四",
        ),
        (
            "2000-02-29",
            "Tuesday the twenty ninth of February two thousand",
            "二零零零年二月二十九日星期二",
        ),
        (
            "2005-01-01",
            "Saturday the first of January two thousand and five",
            "二零零五年一月一日星期六",
        ),
        ("2010-10-10", "Sunday the tenth of October twenty ten", "二零一零年十月十日星期日"),
        (
            "1999-12-31",
            "Friday the thirty first of December nineteen ninety nine",
            "一九九九年十二月三十一日星期五",
        ),
        ("1905-07-04", "Tuesday the fourth of July nineteen oh five", "一九零五年七月四日星期二"),
        ("1900-03-01", "Thursday the first of March nineteen hundred", "一九零零年三月一日星期四"),
        (
            "2100-12-02",
            "Thursday the second of December twenty one hundred",
            "二一零零年十二月二日星期四",
        ),
    ],
)
def test_dates(value: str, english: str, mandarin: str) -> None:
    assert en_text(SayAs.DATE, value) == english
    assert zh_text(SayAs.DATE, value) == mandarin


def test_date_options_drop_the_weekday_and_the_year() -> None:
    assert en_text(SayAs.DATE, "2026-11-23", weekday=False) == (
        "the twenty third of November twenty twenty six"
    )
    assert en_text(SayAs.DATE, "2026-11-23", year=False) == "Monday the twenty third of November"
    assert zh_text(SayAs.DATE, "2026-11-23", weekday=False) == "二零二六年十一月二十三日"
    assert zh_text(SayAs.DATE, "2026-11-23", year=False, weekday=False) == "十一月二十三日"


def test_weekdays_follow_the_calendar_for_a_whole_week() -> None:
    english = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    mandarin = ["一", "二", "三", "四", "五", "六", "日"]
    for offset in range(7):
        value = (datetime.date(2026, 11, 23) + datetime.timedelta(days=offset)).isoformat()
        assert en_text(SayAs.DATE, value).split()[0] == english[offset]
        assert zh_text(SayAs.DATE, value).endswith("星期" + mandarin[offset])


def test_every_day_of_several_years_is_spoken_distinctly() -> None:
    for language in LANGUAGES:
        needed = words_needed(language)
        seen: set[tuple[str, ...]] = set()
        day = datetime.date(1999, 1, 1)
        while day <= datetime.date(2001, 12, 31):
            names = tuple(say(SayAs.DATE, day.isoformat(), language))
            assert set(names) <= needed
            seen.add(names)
            day += datetime.timedelta(days=1)
        assert len(seen) == 365 + 366 + 365


# --- TIME --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "english", "mandarin"),
    [
        ("00:00", "twelve midnight", "午夜十二点"),
        ("00:01", "twelve oh one a.m.", "凌晨零点零一分"),
        ("00:30", "twelve thirty a.m.", "凌晨零点三十分"),
        ("05:59", "five fifty nine a.m.", "凌晨五点五十九分"),
        ("06:00", "six o'clock a.m.", "上午六点"),
        ("09:05", "nine oh five a.m.", "上午九点零五分"),
        ("9:30", "nine thirty a.m.", "上午九点三十分"),
        ("10:10", "ten ten a.m.", "上午十点十分"),
        ("11:59", "eleven fifty nine a.m.", "上午十一点五十九分"),
        ("12:00", "twelve noon", "中午十二点"),
        ("12:02", "twelve oh two p.m.", "中午十二点零二分"),
        ("12:30", "twelve thirty p.m.", "中午十二点三十分"),
        ("13:00", "one o'clock p.m.", "下午一点"),
        ("14:00", "two o'clock p.m.", "下午两点"),
        ("14:15", "two fifteen p.m.", "下午两点十五分"),
        ("17:59", "five fifty nine p.m.", "下午五点五十九分"),
        ("18:00", "six o'clock p.m.", "晚上六点"),
        ("22:45", "ten forty five p.m.", "晚上十点四十五分"),
        ("23:59", "eleven fifty nine p.m.", "晚上十一点五十九分"),
    ],
)
def test_times(value: str, english: str, mandarin: str) -> None:
    assert en_text(SayAs.TIME, value) == english
    assert zh_text(SayAs.TIME, value) == mandarin


def test_every_minute_of_the_day_is_spoken_distinctly() -> None:
    for language in LANGUAGES:
        needed = words_needed(language)
        seen: set[tuple[str, ...]] = set()
        for hour in range(24):
            for minute in range(60):
                names = tuple(say(SayAs.TIME, f"{hour:02}:{minute:02}", language))
                assert set(names) <= needed
                seen.add(names)
        assert len(seen) == 24 * 60


# --- DIGITS, REFERENCE, PHONE ------------------------------------------------------------


def test_digits_one_word_per_digit() -> None:
    assert words(SayAs.DIGITS, "0123456789", "en") == [
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
    ]
    assert zh_text(SayAs.DIGITS, "0123456789") == "零幺二三四五六七八九"
    assert words(SayAs.DIGITS, "007", "en") == ["zero", "zero", "seven"]


def test_reference_letters_and_digits() -> None:
    assert say(SayAs.REFERENCE, "AB12Z", "en") == [
        "words/en/letter_a",
        "words/en/letter_b",
        "words/en/one",
        "words/en/two",
        "words/en/letter_z",
    ]
    assert say(SayAs.REFERENCE, "x1", "zh") == ["words/en/letter_x", "words/zh/yao1"]
    assert en_text(SayAs.REFERENCE, "hq7") == "H Q seven"


def test_reference_separators_and_groups_become_pauses() -> None:
    assert en_text(SayAs.REFERENCE, "ab-12  cd") == "A B | one two | C D"
    assert en_text(SayAs.REFERENCE, "-AB-") == "A B"
    assert en_text(SayAs.REFERENCE, "ABC123", group=3) == "A B C | one two three"
    assert en_text(SayAs.REFERENCE, "ABCD-12", group=2) == "A B | C D | one two"
    assert zh_text(SayAs.REFERENCE, "AB-10", group=0) == "AB|幺零"


@pytest.mark.parametrize(
    ("value", "english", "mandarin"),
    [
        (
            "0412 345 678",
            "zero four one two | three four five | six seven eight",
            "零四幺二|三四五|六七八",
        ),
        (
            "0412345678",
            "zero four one two | three four five | six seven eight",
            "零四幺二|三四五|六七八",
        ),
        (
            "+61 412 345 678",
            "zero four one two | three four five | six seven eight",
            "零四幺二|三四五|六七八",
        ),
        (
            "(02) 9876-5432",
            "zero two | nine eight seven six | five four three two",
            "零二|九八七六|五四三二",
        ),
        (
            "+61 (0)3 9876 5432",
            "zero three | nine eight seven six | five four three two",
            "零三|九八七六|五四三二",
        ),
        (
            "1800 123 456",
            "one eight zero zero | one two three | four five six",
            "幺八零零|幺二三|四五六",
        ),
        ("13 14 50", "one three | one four | five zero", "幺三|幺四|五零"),
        ("9876.5432", "nine eight seven six | five four three two", "九八七六|五四三二"),
        ("000", "zero zero zero", "零零零"),
        ("1234567", "one two three | four five six seven", "幺二三|四五六七"),
        ("12345", "one two three | four five", "幺二三|四五"),
        (
            "+44 20 7946 0958",
            "plus | four four two | zero seven nine | four six zero | nine five eight",
            "加|四四二|零七九|四六零|九五八",
        ),
    ],
)
def test_phone_numbers_are_grouped_as_spoken(value: str, english: str, mandarin: str) -> None:
    assert en_text(SayAs.PHONE, value) == english
    assert zh_text(SayAs.PHONE, value) == mandarin


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            SayAs.NUMBER,
            "",
            "NUMBER value '': expected an integer of ASCII digits with an optional '-'",
        ),
        (SayAs.NUMBER, "1,000", "NUMBER value '1,000': expected an integer"),
        (SayAs.NUMBER, "+5", "NUMBER value '+5': expected an integer"),
        (SayAs.NUMBER, "1.5", "NUMBER value '1.5': expected an integer"),
        (SayAs.NUMBER, "٣", "NUMBER value '٣': expected an integer of ASCII digits"),
        (
            SayAs.NUMBER,
            "1000000000",
            "NUMBER value '1000000000': out of range -999999999 … 999999999",
        ),
        (SayAs.NUMBER, "-1000000000", "out of range -999999999 … 999999999"),
        (SayAs.ORDINAL, "0", "ORDINAL value '0': out of range 1 … 999999999"),
        (SayAs.ORDINAL, "-3", "ORDINAL value '-3': out of range 1 … 999999999"),
        (SayAs.DIGITS, "12a", "DIGITS value '12a': expected ASCII digits 0-9 only"),
        (SayAs.DIGITS, "", "DIGITS value '': expected ASCII digits 0-9 only"),
        (SayAs.DIGITS, "1" * 33, "33 digits, at most 32"),
        (SayAs.DATE, "23/11/2026", "DATE value '23/11/2026': expected an ISO date YYYY-MM-DD"),
        (SayAs.DATE, "2026-1-5", "expected an ISO date YYYY-MM-DD"),
        (SayAs.DATE, "20261123", "expected an ISO date YYYY-MM-DD"),
        (SayAs.DATE, "2026-13-01", "DATE value '2026-13-01': month 13 is out of range 1 … 12"),
        (SayAs.DATE, "2026-00-10", "month 0 is out of range 1 … 12"),
        (
            SayAs.DATE,
            "2026-02-29",
            "DATE value '2026-02-29': day 29 is out of range: February 2026 has 28 days",
        ),
        (SayAs.DATE, "1900-02-29", "day 29 is out of range: February 1900 has 28 days"),
        (SayAs.DATE, "2026-04-31", "day 31 is out of range: April 2026 has 30 days"),
        (SayAs.DATE, "2026-04-00", "day 0 is out of range: April 2026 has 30 days"),
        (SayAs.DATE, "0000-01-01", "year 0000 is not a calendar year (0001 … 9999)"),
        (SayAs.TIME, "9.30", "TIME value '9.30': expected a 24-hour time HH:MM"),
        (SayAs.TIME, "09:30:00", "expected a 24-hour time HH:MM"),
        (SayAs.TIME, "9:5", "expected a 24-hour time HH:MM"),
        (SayAs.TIME, "24:00", "TIME value '24:00': hour 24 is out of range 0 … 23"),
        (SayAs.TIME, "12:60", "TIME value '12:60': minute 60 is out of range 0 … 59"),
        (SayAs.REFERENCE, "", "REFERENCE value '': empty reference"),
        (SayAs.REFERENCE, " - ", "REFERENCE value ' - ': no letters or digits, only separators"),
        (
            SayAs.REFERENCE,
            "AB_12",
            "REFERENCE value 'AB_12': '_' at position 3: only letters A-Z, digits 0-9 and "
            "'-' or space between groups are allowed",
        ),
        (SayAs.REFERENCE, "ÄB", "'Ä' at position 1"),
        (SayAs.REFERENCE, "A" * 33, "33 characters, at most 32"),
        (SayAs.PHONE, "12", "PHONE value '12': 2 digits, expected 3 … 15"),
        (SayAs.PHONE, "+61", "PHONE value '+61': 1 digits, expected 3 … 15"),
        (SayAs.PHONE, "1" * 16, "16 digits, expected 3 … 15"),
        (
            SayAs.PHONE,
            "0412 abc",
            "PHONE value '0412 abc': 'a' at position 6: only digits, a leading '+', "
            "spaces, '-', '.' and parentheses are allowed",
        ),
        (SayAs.PHONE, "04+12345678", "'+' at position 3"),
    ],
)
def test_malformed_values_are_named_precisely(kind: SayAs, value: str, message: str) -> None:
    for language in LANGUAGES:
        with pytest.raises(SayAsError) as caught:
            say(kind, value, language)
        assert message in str(caught.value)


def test_say_as_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        say(SayAs.NUMBER, "x", "en")


def test_unsupported_language() -> None:
    with pytest.raises(SayAsError, match=r"^unsupported language 'fr': say-as speaks en, zh$"):
        say(SayAs.NUMBER, "5", "fr")
    with pytest.raises(SayAsError, match="unsupported language 'en-AU'"):
        words_needed("en-AU")


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (SayAs.NUMBER, {"weekday": True}, "NUMBER has no option 'weekday' (its options: none)"),
        (
            SayAs.DATE,
            {"weekdays": False},
            "DATE has no option 'weekdays' (its options: weekday, year)",
        ),
        (SayAs.DATE, {"weekday": "no"}, "DATE option 'weekday' must be bool, got str 'no'"),
        (SayAs.DATE, {"year": 0}, "DATE option 'year' must be bool, got int 0"),
        (SayAs.REFERENCE, {"group": True}, "REFERENCE option 'group' must be int, got bool True"),
        (
            SayAs.REFERENCE,
            {"group": -1},
            "REFERENCE option 'group' must be 0 (off) or more, got -1",
        ),
    ],
)
def test_bad_options(kind: SayAs, options: dict[str, object], message: str) -> None:
    value = {SayAs.NUMBER: "5", SayAs.DATE: "2026-11-23", SayAs.REFERENCE: "AB1"}[kind]
    with pytest.raises(SayAsError) as caught:
        say(kind, value, "en", options=options)
    assert str(caught.value) == message


def test_values_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(SayAsError, match=r"^NUMBER value must be a string, got int 5$"):
        say(SayAs.NUMBER, 5, "en")  # type: ignore[arg-type]
    with pytest.raises(SayAsError, match=r"^'number' is not a SayAs kind$"):
        say("number", "5", "en")  # type: ignore[arg-type]


def test_kinds_are_named_as_in_flows() -> None:
    assert [kind.value for kind in SayAs] == [
        "digits",
        "number",
        "ordinal",
        "date",
        "time",
        "reference",
        "phone",
    ]
    assert SayAs("phone") is SayAs.PHONE


# --- vocabulary --------------------------------------------------------------------------


def test_vocabulary() -> None:
    assert LANGUAGES == ("en", "zh")
    english, mandarin = words_needed("en"), words_needed("zh")
    assert len(english) == 118
    assert len(mandarin) == 33 + 26  # its own words and the English letter names
    assert {f"words/en/letter_{c}" for c in "az"} <= mandarin
    assert {"words/en/pause", "words/en/and", "words/en/o_clock"} <= english
    assert {"words/zh/pause", "words/zh/liang3", "words/zh/yao1"} <= mandarin
    assert not any(name.startswith("words/zh/letter_") for name in mandarin)
    for language in LANGUAGES:
        for name in words_needed(language):
            assert word_text(name) or name.endswith("/pause")


def test_word_text() -> None:
    assert word_text("words/en/o_clock") == "o'clock"
    assert word_text("words/en/am") == "a.m."
    assert word_text("words/en/letter_q") == "Q"
    assert word_text("words/en/november") == "November"
    assert word_text("words/zh/liang3") == "两"
    assert word_text("words/zh/xing1qi1") == "星期"
    assert word_text("words/zh/pause") == ""
    with pytest.raises(
        SayAsError, match=r"'words/zh/twenty' is not a say-as word of language 'zh'"
    ):
        word_text("words/zh/twenty")
    with pytest.raises(SayAsError, match=r"is not a say-as word name \(words/<language>/<word>\)"):
        word_text("en/twenty")


# --- the recordings ----------------------------------------------------------------------

ACTIVE_FRAME = SAMPLE_RATE // 100  # 10 ms


def _active_level_dbfs(samples: np.ndarray) -> float:
    """RMS over the 10 ms frames within 30 dB of the loudest frame, in dBFS."""
    frames = samples[: len(samples) // ACTIVE_FRAME * ACTIVE_FRAME].astype(np.float64) / 32768.0
    rms = np.sqrt(np.mean(frames.reshape(-1, ACTIVE_FRAME) ** 2, axis=1))
    active = rms[rms >= rms.max() * 10 ** (-30 / 20)]
    return float(20 * np.log10(np.sqrt(np.mean(active**2))))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_word_has_a_playable_recording(language: str) -> None:
    for name in sorted(words_needed(language)):
        path = AUDIO / f"{name}.wav"
        assert path.is_file(), f"{path} is missing: run tools/make_words.py"
        with wave.open(str(path), "rb") as reader:
            header = (reader.getframerate(), reader.getnchannels(), reader.getsampwidth())
        assert header == (SAMPLE_RATE, 1, 2), f"{path}: {header}"
        samples = load_wav(path)
        assert len(samples) > 0, path
        peak = int(np.max(np.abs(samples.astype(np.int32))))
        if name.endswith("/pause"):
            assert len(samples) == SAMPLE_RATE // 4 and peak == 0, path
            continue
        assert peak < 32000, f"{path}: peak {peak} is at or near clipping"
        assert 0.15 <= len(samples) / SAMPLE_RATE <= 1.2, f"{path}: {len(samples)} samples"
        level = _active_level_dbfs(samples)
        assert -20.0 <= level <= -17.5, f"{path}: active level {level:.1f} dBFS"
        assert abs(int(samples[0])) < 2000 and abs(int(samples[-1])) < 2000, path  # faded


def test_recordings_stay_small() -> None:
    total = sum(path.stat().st_size for path in (AUDIO / "words").rglob("*.wav"))
    assert 0 < total < 3 * 1024 * 1024


def test_prompt_cache_plays_the_names_say_returns(tmp_path: Path) -> None:
    cache = PromptCache(AUDIO, tmp_path)
    names = say(SayAs.TIME, "14:05", "zh")
    assert names[0] == "words/zh/xia4wu3"
    played = [cache.get(name, Codec.PCMU) for name in names]
    assert all(len(payload) > 0 for payload in played)
    assert played[-1] == encode(Codec.PCMU, load_wav(AUDIO / "words/zh/fen1.wav")).tobytes()
