"""What the contact centre says to callers and agents, as playable parts, per language.

Owns the wording of the ACD's system messages (queue position and expected wait, the
callback offer and its confirmation, the callback greeting, voicemail, agent star-code
answers) in every language say-as speaks, and their assembly with spoken numbers:
`position_and_wait(...)` returns a list of `Part`s — a recorded phrase (`Phrase`: a
prompt key under the audio directory and the text it says, for synthesis when no
recording exists) or spoken words (`Words`: say-as word names).

Rules kept here: a wait is spoken in whole minutes, rounded up, and "less than a
minute" below one; nothing is said of a position or wait the router did not vouch for
(None). Must not know about audio files, playback, SIP or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hotline.media import sayas

PHRASES: Final[dict[str, dict[str, str]]] = {
    "en": {
        "position_before": "You are caller number",
        "position_after": "in the queue.",
        "wait_before": "Your expected wait is about",
        "wait_minutes": "minutes.",
        "wait_minute": "minute.",
        "wait_short": "Your expected wait is less than a minute.",
        "callback_offer": "To have us call you back instead, without losing your place, press",
        "callback_confirm_before": "We will call you back on",
        "callback_confirm_after": "To confirm, press 1. To keep waiting, press 2.",
        "callback_no_number": "We cannot call back this number. Please keep holding.",
        "callback_registered": "Thank you. We will call you back when it is your turn. Goodbye.",
        "callback_duplicate": (
            "You already have a call back booked. We will call you when it is your turn. Goodbye."
        ),
        "callback_greeting": (
            "Hello, this is the hotline calling you back. Please hold while we connect you."
        ),
        "voicemail": "Please leave a message after the tone. Hang up when you have finished.",
        "agent_login": "You are logged in.",
        "agent_logout": "You are logged out.",
        "agent_break": "You are on a break.",
        "agent_back": "You are available.",
        "agent_refused": "That code was not accepted.",
    },
    "zh": {
        "position_before": "您在队列中排第",
        "position_after": "位。",
        "wait_before": "预计等待时间大约",
        "wait_minutes": "分钟。",
        "wait_minute": "分钟。",
        "wait_short": "预计等待时间不到一分钟。",
        "callback_offer": "如需我们回电并保留您的位置，请按",
        "callback_confirm_before": "我们将回电到",
        "callback_confirm_after": "确认请按1，继续等待请按2。",
        "callback_no_number": "我们无法回拨这个号码，请继续等待。",
        "callback_registered": "谢谢。轮到您时我们会给您回电。再见。",
        "callback_duplicate": "您已经预约了回电。轮到您时我们会给您回电。再见。",
        "callback_greeting": "您好，这是热线给您回电。请稍候，我们正在为您接通。",
        "voicemail": "请在提示音后留言，留言完毕请挂机。",
        "agent_login": "您已登录。",
        "agent_logout": "您已退出。",
        "agent_break": "您已进入休息状态。",
        "agent_back": "您已恢复工作。",
        "agent_refused": "该代码未被接受。",
    },
}
LANGUAGES: Final = tuple(PHRASES)


@dataclass(frozen=True, slots=True)
class Phrase:
    """A recorded sentence: `key` names it under the audio directory
    (``system/<language>/<name>``), `text` is what it says."""

    key: str
    text: str
    language: str


@dataclass(frozen=True, slots=True)
class Words:
    """Say-as word recordings, in order."""

    names: tuple[str, ...]


Part = Phrase | Words


def language_of(value: object) -> str:
    """The language to speak to a caller whose flow chose `value` (default English)."""
    text = str(value or "en").split("-")[0].lower()
    return text if text in PHRASES else "en"


def phrase(language: str, name: str) -> Phrase:
    language = language_of(language)
    return Phrase(f"system/{language}/{name}", PHRASES[language][name], language)


def _number(language: str, n: int) -> Words:
    return Words(tuple(sayas.say(sayas.SayAs.NUMBER, str(n), language)))


def position_and_wait(
    language: str,
    position: int | None,
    ewt_seconds: float | None,
    callback_key: str | None = None,
) -> list[Part]:
    """The periodic queue announcement: position, expected wait, the callback offer —
    each only when known (or offered). An empty list when there is nothing to say."""
    lang = language_of(language)
    parts: list[Part] = []
    if position is not None and position >= 1:
        parts += [phrase(lang, "position_before"), _number(lang, position),
                  phrase(lang, "position_after")]
    if ewt_seconds is not None and ewt_seconds >= 0:
        if ewt_seconds < 60:
            parts.append(phrase(lang, "wait_short"))
        else:
            minutes = -(-int(ewt_seconds) // 60)
            parts += [phrase(lang, "wait_before"), _number(lang, minutes),
                      phrase(lang, "wait_minute" if minutes == 1 else "wait_minutes")]
    if callback_key is not None and parts:
        parts += [phrase(lang, "callback_offer"), _key(lang, callback_key)]
    return parts


def callback_offer(language: str, callback_key: str) -> list[Part]:
    lang = language_of(language)
    return [phrase(lang, "callback_offer"), _key(lang, callback_key)]


_KEY_WORDS: Final = {"en": {"*": "star", "#": "hash"}, "zh": {"*": "星号键", "#": "井号键"}}
_KEY_NAMES: Final = {"*": "star", "#": "hash"}


def _key_phrase(language: str, key: str) -> Phrase:
    """'*' and '#' have no word recordings: each is a phrase of its own."""
    return Phrase(f"system/{language}/key_{_KEY_NAMES[key]}", _KEY_WORDS[language][key],
                  language)


def _key(language: str, key: str) -> Part:
    if key.isdigit():
        return Words(tuple(sayas.say(sayas.SayAs.DIGITS, key, language)))
    return _key_phrase(language, key)


def callback_confirm(language: str, number: str) -> list[Part]:
    """"We will call you back on <number>. To confirm press 1, to keep waiting press 2.\""""
    lang = language_of(language)
    return [phrase(lang, "callback_confirm_before"),
            Words(tuple(sayas.say(sayas.SayAs.PHONE, number, lang))),
            phrase(lang, "callback_confirm_after")]


def every_phrase() -> list[Phrase]:
    """Every fixed phrase in every language (to record or synthesise them ahead)."""
    out = [phrase(lang, name) for lang in PHRASES for name in PHRASES[lang]]
    out += [_key_phrase(lang, k) for lang in PHRASES for k in "*#"]
    return out
