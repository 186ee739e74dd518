"""Booking references: short codes a caller hears twice, writes down and reads back later.

Owns: the reference alphabet and why each symbol is in it, the check character, making a
fresh reference from a random source, parsing what a caller, an agent or an SMS gives
back (letters, or the keys a caller pressed for them), and the spoken and keypad forms.

Must not know: storage, the clock, where randomness comes from (a `randbelow` function is
passed in), flows or prompts.

A reference is `LENGTH` body symbols and one check symbol, all from `ALPHABET`:

    2 3 4 5 6 7 8 9 F K M R W      (13 symbols)

Chosen so that no two symbols sound alike over a narrow-band telephone line in English,
and no two look alike when written or sent by SMS. Every symbol was kept or dropped
against the classes in `CONFUSABLE` (sets of symbols whose names rhyme or differ only in
a sound the phone band blurs); the alphabet holds at most one member of each class:

- 0 and 1: read as O, I or L when written; O ("oh") is also said for 0. All dropped.
- the "ee" letters B C D E G P T V Z rhyme with each other and with 3 ("three"): 3 kept.
- the "ay" letters A H J K and 8 ("eight"): A is "eight" without its t, H ("aitch")
  differs from "eight" only in its last sound, J and K rhyme. 8 and K kept: "kay" and
  "eight" have different first and last sounds. A, H and J dropped.
- I and Y ("eye", "why") rhyme, and I looks like 1 and L: both dropped; 5 and 9 kept
  ("five" and "nine" end in different consonants and start with different ones).
- Q and U ("cue", "you") rhyme with 2 ("two"): 2 kept, Q and U dropped. W ("double-u") is
  three syllables and unlike anything else: kept.
- S and X ("ess", "ex") blur with F ("eff") and with 6 ("six") once the phone band
  smears s and f: F and 6 kept, S and X dropped (S also looks like 5).
- M and N ("em", "en") differ only in the nasal: M kept, N dropped. L ("el") dropped.
- R ("ar") is unlike any digit or kept letter, and 4 ("four") has another vowel: both kept.
- O looks like 0 and D; G like 6; B like 8; Z like 2; S like 5; U like V: all dropped.

13 symbols is a prime, so the check is a weighted sum modulo 13: body symbol values
(their index in `ALPHABET`) get weights 7, 6, 5, 4, 3, 2 and the check symbol weight 1,
and the total must be 0 (mod 13). With distinct non-zero weights modulo a prime, every
single wrong symbol and every swap of two symbols (next to each other or not) is caught.

Six body symbols give 13**6 = 4,826,809 references; the store keeps them unique and draws
again on a collision.

From a keypad a caller cannot type letters. Each letter is entered with the key that
carries it (ITU-T E.161: F on 3, K on 5, M on 6, R on 7, W on 9), so seven keys stand for
up to 2**7 references; `from_keypad` returns the valid ones (the check removes about
twelve in thirteen), and the store keeps whichever exist.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

__all__ = [
    "ALPHABET",
    "CONFUSABLE",
    "KEYPAD",
    "LENGTH",
    "InvalidReference",
    "check_symbol",
    "from_keypad",
    "is_valid",
    "keypad_form",
    "new_reference",
    "parse",
    "spoken",
]

ALPHABET: Final = "23456789FKMRW"
LENGTH: Final = 6  # body symbols; a reference is LENGTH + 1 symbols long
_MODULUS: Final = len(ALPHABET)
_WEIGHTS: Final = tuple(range(LENGTH + 1, 1, -1))  # 7 6 5 4 3 2; the check symbol weighs 1
_VALUE: Final = {symbol: i for i, symbol in enumerate(ALPHABET)}

# Symbols that sound or look alike (see the module text). The alphabet may hold at most one
# member of each class; tests check that it does.
CONFUSABLE: Final[tuple[frozenset[str], ...]] = (
    frozenset("0O"),
    frozenset("0D"),
    frozenset("0Q"),  # written: round shapes
    frozenset("1IL"),
    frozenset("17"),  # written: strokes
    frozenset("2Z"),
    frozenset("5S"),
    frozenset("6G"),
    frozenset("8B"),
    frozenset("UV"),
    frozenset("BCDEGPTVZ3"),  # spoken: the "ee" rhyme
    frozenset("AHJ8"),
    frozenset("JK"),
    frozenset("AK"),  # spoken: the "ay" sounds
    frozenset("IY"),
    frozenset("I5"),
    frozenset("I9"),
    frozenset("Y5"),
    frozenset("Y9"),
    frozenset("QU2"),
    frozenset("QW"),
    frozenset("UW"),  # spoken: the "you" rhyme
    frozenset("FSX"),
    frozenset("S6"),
    frozenset("X6"),  # spoken: s, f and ks
    frozenset("MN"),
    frozenset("LMN"),  # spoken: "el", "em", "en"
    frozenset("O4"),  # spoken: "oh" / "four"
)

# ITU-T E.161 key for each symbol (digits stand for themselves).
KEYPAD: Final[dict[str, str]] = {
    **{d: d for d in "23456789"},
    "F": "3",
    "K": "5",
    "M": "6",
    "R": "7",
    "W": "9",
}
_BY_KEY: Final[dict[str, tuple[str, ...]]] = {
    key: tuple(s for s in ALPHABET if KEYPAD[s] == key) for key in "23456789"
}
_SEPARATORS: Final = frozenset(" -.\t")


class InvalidReference(ValueError):
    """Text that is not a booking reference; `reason` says why, in words a person reads."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text, reason)
        self.text = text
        self.reason = reason

    def __str__(self) -> str:
        return f"not a booking reference ({self.reason}): {self.text!r}"


def check_symbol(body: str) -> str:
    """The check symbol for `LENGTH` body symbols (upper case, from `ALPHABET`)."""
    if len(body) != LENGTH:
        raise ValueError(f"expected {LENGTH} body symbols, found {len(body)}")
    total = 0
    for weight, symbol in zip(_WEIGHTS, body, strict=True):
        value = _VALUE.get(symbol)
        if value is None:
            raise ValueError(f"expected symbols from {ALPHABET}, found {symbol!r}")
        total += weight * value
    return ALPHABET[(-total) % _MODULUS]


def is_valid(reference: str) -> bool:
    """Whether `reference` is exactly a well-formed reference (canonical form)."""
    if len(reference) != LENGTH + 1 or any(s not in _VALUE for s in reference):
        return False
    return check_symbol(reference[:LENGTH]) == reference[LENGTH]


def new_reference(randbelow: Callable[[int], int]) -> str:
    """A fresh reference; `randbelow(n)` returns a uniform integer in [0, n) (for example
    `secrets.randbelow`)."""
    body = "".join(ALPHABET[randbelow(_MODULUS)] for _ in range(LENGTH))
    return body + check_symbol(body)


def parse(text: str) -> str:
    """The canonical reference in `text` (any case; spaces, dashes and dots ignored).

    Raises InvalidReference naming the first problem: a symbol outside the alphabet (with a
    hint for the look-alikes 0, 1, O, I, L, …), the wrong length or a failed check."""
    cleaned = "".join(ch for ch in text.upper() if ch not in _SEPARATORS)
    if not cleaned:
        raise InvalidReference(text, "it is empty")
    for ch in cleaned:
        if ch not in _VALUE:
            raise InvalidReference(
                text, f"{ch!r} is never used in references, which use only {' '.join(ALPHABET)}"
            )
    if len(cleaned) != LENGTH + 1:
        raise InvalidReference(text, f"expected {LENGTH + 1} symbols, found {len(cleaned)}")
    if not is_valid(cleaned):
        raise InvalidReference(
            text, "the check symbol does not match: a symbol is mistyped or two are swapped"
        )
    return cleaned


def keypad_form(reference: str) -> str:
    """The keys a caller presses for `reference` (F→3, K→5, M→6, R→7, W→9)."""
    return "".join(KEYPAD[s] for s in reference)


def from_keypad(keys: str) -> tuple[str, ...]:
    """Every valid reference whose keypad form is `keys`, sorted; empty when none is
    (wrong length, a key that carries no symbol such as 0, 1, * or #, or no candidate
    passes the check)."""
    if len(keys) != LENGTH + 1 or any(k not in _BY_KEY for k in keys):
        return ()
    choices = [_BY_KEY[k] for k in keys]
    return tuple(
        sorted(ref for ref in ("".join(p) for p in itertools.product(*choices)) if is_valid(ref))
    )


def spoken(reference: str) -> str:
    """The reference as read out: symbols apart, a longer pause after the fourth
    ("F K 3 7, M 9 R")."""
    head, tail = reference[:4], reference[4:]
    return " ".join(head) + (", " + " ".join(tail) if tail else "")
