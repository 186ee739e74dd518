"""What callers hear while they wait: parts in order, only what is known."""

from __future__ import annotations

from hotline.acd import announcements as a


def keys(parts: list[a.Part]) -> list[str]:
    return [p.key if isinstance(p, a.Phrase) else "+".join(p.names) for p in parts]


def test_position_and_wait_in_whole_minutes_rounded_up() -> None:
    assert keys(a.position_and_wait("en", 3, 121)) == [
        "system/en/position_before", "words/en/three", "system/en/position_after",
        "system/en/wait_before", "words/en/three", "system/en/wait_minutes",
    ]
    assert keys(a.position_and_wait("en", None, 60))[-1] == "system/en/wait_minute"
    assert keys(a.position_and_wait("en", None, 59)) == ["system/en/wait_short"]


def test_nothing_unknown_is_said() -> None:
    assert a.position_and_wait("en", None, None) == []
    assert a.position_and_wait("en", None, None, "1") == []  # no offer on its own
    assert keys(a.position_and_wait("zh", 1, None, "#")) == [
        "system/zh/position_before", "words/zh/yi1", "system/zh/position_after",
        "system/zh/callback_offer", "system/zh/key_hash",
    ]


def test_unknown_languages_fall_back_to_english_and_every_phrase_has_text() -> None:
    assert a.language_of("fr") == "en" and a.language_of("zh-CN") == "zh"
    phrases = a.every_phrase()
    assert len({p.key for p in phrases}) == len(phrases)
    assert all(p.text.strip() for p in phrases)
    assert {p.language for p in phrases} == {"en", "zh"}


def test_callback_confirmation_reads_the_number_back_in_groups() -> None:
    parts = a.callback_confirm("en", "0412345678")
    assert isinstance(parts[1], a.Words)
    assert "words/en/pause" in parts[1].names
    assert keys(parts)[0] == "system/en/callback_confirm_before"
