"""Benchmark: hotline's in-band DTMF detector beside spandsp's ``dtmf_rx``, on the same audio.

Both detectors hear exactly the same samples: 8 kHz int16, passed through G.711 µ-law by
default (``--codec``), as the engine hears a caller. hotline's `DtmfDetectorBank` is
stepped one 20 ms tick (160 samples) at a time over a (legs × 160) block; spandsp's
receiver (libspandsp2, through ctypes, with its default settings) gets one context per
stream. Three parts:

1. **ITU-T Q.24 suite** — every key of the 16, each case a fresh stream (200 ms of
   silence plus a random 0–50 ms before it, at least 200 ms after) with its expected
   keys: frequency offsets (0, ±1.0 %, ±1.5 % on both tones, ±1.5 % opposed: accept;
   ±3.5 % on either or both: reject) on 100 ms tones; durations (40, 50, 100 ms:
   accept; 20, 23 ms: reject) at four random alignments; twist (normal 0/4/8 dB and
   reverse 2/4 dB: accept; normal 10/12 dB and reverse 6/8 dB: reject, the stronger tone
   at −8 dBm0); level per tone (−3 … −36 dBm0: accept; −45 and −50 dBm0, below hotline's
   −42 dBm0 floor: reject); a 10 ms dropout inside a 100 ms tone (one key, not two);
   white noise at 15 dB SNR against the tones' power, all through the stream (−10 and
   −25 dBm0, 50 and 100 ms tones); and, as hotline's docstring reads Q.24, two 40 ms
   tones 40 ms apart (two keys). A case is correct when the keys reported equal the
   keys expected.
2. **Talk-off** — keys reported where none was pressed: at least 30 minutes of speech
   synthesised by espeak-ng (44 languages, 36 voice variants, 110–260 words per
   minute, pitch 10–90, generated English sentences and number-heavy text, each
   utterance at −30 … −10 dBm0 active level), resampled to 8 kHz with
   ``scipy.signal.resample_poly`` and cached under ``~/.cache/hotline-bench/dtmf`` (a
   rerun reuses it); beside it, music-like chords and frequency sweeps (the generators
   of hotline's talk-off tests). Each corpus is cut into ``--streams`` equal streams.
3. **Throughput** — samples per second over the speech streams: spandsp fed each stream
   whole and fed 160 samples per call (as a 20 ms media loop would), hotline with banks
   of 1 and 100 legs (``--legs``). The keys each run reports are checked to agree.

Single-threaded: OPENBLAS_NUM_THREADS=1 is set before numpy loads.

Run: ``python bench/dtmf.py [--quick] [--json PATH] [--speech-minutes 30]
[--music-minutes 5] [--streams 100] [--legs 1,100] [--codec pcmu|pcma|linear]
[--cache-dir DIR] [--refresh-cache] [--seed 1] [--list 12]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import gc
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _spandsp import LIBRARY, SpandspDtmfReceiver, SpandspUnavailable, load

from hotline.media import g711
from hotline.media.dtmf import DtmfDetectorBank, InbandDigitStarted
from hotline.media.tones import DBM0_RMS, KEYPAD, SAMPLE_RATE, dtmf_tone, to_int16
from tests.unit.media.signals import chirps, music_like

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]

TICK = 160  # samples per 20 ms media tick
MS = SAMPLE_RATE // 1000  # samples per millisecond
LEAD_MS = 200  # silence before each Q.24 case ...
LEAD_JITTER = 400  # ... plus up to this many samples (50 ms), to vary the alignment
TAIL_MS = 200  # at least this much silence after it
CORPUS_VERSION = 2  # bump when the speech generator changes: the cache key holds it
QUICK_SPEECH_MINUTES = 2.0
QUICK_MUSIC_MINUTES = 0.5


# -- the Q.24 suite ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One Q.24 case: a whole stream and the keys a detector must report in it."""

    category: str
    condition: str  # what is tested, without the key (the same for the 16 keys)
    key: str
    expected: str  # keys to report, in order; "" for a case to reject
    samples: Int16Array = field(repr=False)


def _framed(rng: np.random.Generator, core: Int16Array) -> Int16Array:
    """`core` with silence around it: 200 ms plus a random jitter before, 200 ms after."""
    lead = LEAD_MS * MS + int(rng.integers(LEAD_JITTER))
    tail = TAIL_MS * MS
    return np.concatenate([np.zeros(lead, np.int16), core, np.zeros(tail, np.int16)]).astype(
        np.int16
    )


def _tone(
    rng: np.random.Generator,
    key: str,
    duration_ms: float,
    level_dbm0: float = -10.0,
    twist_db: float = 2.0,
    low_offset: float = 0.0,
    high_offset: float = 0.0,
) -> Int16Array:
    """A key press starting at a random phase of its tones."""
    phase = int(rng.integers(SAMPLE_RATE))
    return dtmf_tone(key, duration_ms, level_dbm0, twist_db, low_offset, high_offset, phase)


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %".replace("+0.0", "0.0").replace("-", "−")


def frequency_cases(rng: np.random.Generator) -> list[Case]:
    accept = [
        (0.0, 0.0),
        (0.01, 0.01),
        (-0.01, -0.01),
        (0.015, 0.015),
        (-0.015, -0.015),
        (0.015, -0.015),
        (-0.015, 0.015),
    ]
    reject = [
        (0.035, 0.0),
        (-0.035, 0.0),
        (0.0, 0.035),
        (0.0, -0.035),
        (0.035, 0.035),
        (-0.035, -0.035),
    ]
    cases = []
    for low, high in accept + reject:
        expect = (low, high) in accept
        condition = f"low {_percent(low)}, high {_percent(high)}, 100 ms"
        for key in KEYPAD:
            tone = _tone(rng, key, 100, -10.0, 2.0, low, high)
            cases.append(
                Case("frequency", condition, key, key if expect else "", _framed(rng, tone))
            )
    return cases


def duration_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for duration, expect in ((20, False), (23, False), (40, True), (50, True), (100, True)):
        condition = f"{duration} ms, 4 alignments"
        for key in KEYPAD:
            for _ in range(4):
                tone = _tone(rng, key, duration)
                cases.append(
                    Case("duration", condition, key, key if expect else "", _framed(rng, tone))
                )
    return cases


def twist_cases(rng: np.random.Generator) -> list[Case]:
    """Positive twist: the high-group tone weaker ("normal"); negative: stronger."""
    settings = [
        (0.0, True),
        (4.0, True),
        (8.0, True),
        (10.0, False),
        (12.0, False),
        (-2.0, True),
        (-4.0, True),
        (-6.0, False),
        (-8.0, False),
    ]
    cases = []
    for twist, expect in settings:
        kind = "normal" if twist >= 0 else "reverse"
        low_level = -8.0 if twist >= 0 else -8.0 + twist  # the stronger tone at −8 dBm0
        condition = f"{kind} twist {abs(twist):.0f} dB"
        for key in KEYPAD:
            tone = _tone(rng, key, 100, low_level, twist)
            cases.append(Case("twist", condition, key, key if expect else "", _framed(rng, tone)))
    return cases


def level_cases(rng: np.random.Generator) -> list[Case]:
    settings = [
        (-3.0, True),
        (-10.0, True),
        (-20.0, True),
        (-30.0, True),
        (-33.0, True),
        (-36.0, True),
        (-45.0, False),
        (-50.0, False),
    ]
    cases = []
    for level, expect in settings:
        condition = f"{level:.0f} dBm0 per tone".replace("-", "−")
        for key in KEYPAD:
            tone = _tone(rng, key, 100, level, 0.0)
            cases.append(Case("level", condition, key, key if expect else "", _framed(rng, tone)))
    return cases


def dropout_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for at_ms in (20, 45, 70):
        condition = f"100 ms, 10 ms dropout at {at_ms} ms"
        for key in KEYPAD:
            tone = _tone(rng, key, 100).copy()
            tone[at_ms * MS : (at_ms + 10) * MS] = 0
            cases.append(Case("dropout", condition, key, key, _framed(rng, tone)))
    return cases


def noise_cases(rng: np.random.Generator, snr_db: float = 15.0) -> list[Case]:
    """White noise through the whole stream, `snr_db` below the two tones' power."""
    cases = []
    for level in (-10.0, -25.0):
        twist = 2.0
        tone_power = DBM0_RMS**2 * (10 ** (level / 10) + 10 ** ((level - twist) / 10))
        noise_rms = math.sqrt(tone_power / 10 ** (snr_db / 10))
        for duration in (50, 100):
            condition = f"{snr_db:.0f} dB SNR, {level:.0f} dBm0, {duration} ms, 2 seeds".replace(
                "-", "−"
            )
            for key in KEYPAD:
                for _ in range(2):
                    clean = _framed(rng, _tone(rng, key, duration, level, twist))
                    noisy = clean + rng.standard_normal(clean.size) * noise_rms
                    cases.append(Case("noise", condition, key, key, to_int16(noisy)))
    return cases


def pause_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for same in (True, False):
        condition = f"40 ms on, 40 ms off, 40 ms on, {'same' if same else 'other'} key"
        for i, key in enumerate(KEYPAD):
            second = key if same else KEYPAD[(i + 5) % len(KEYPAD)]
            for _ in range(2):
                core = np.concatenate(
                    [_tone(rng, key, 40), np.zeros(40 * MS, np.int16), _tone(rng, second, 40)]
                )
                cases.append(Case("pause", condition, key, key + second, _framed(rng, core)))
    return cases


CATEGORIES: dict[str, tuple[str, Callable[[np.random.Generator], list[Case]]]] = {
    "frequency": ("±1.0/1.5 % accept, ±3.5 % reject", frequency_cases),
    "duration": ("≥ 40 ms accept, ≤ 23 ms reject", duration_cases),
    "twist": ("normal ≤ 8 / reverse ≤ 4 dB accept", twist_cases),
    "level": ("≥ −36 accept, ≤ −45 dBm0 reject", level_cases),
    "dropout": ("10 ms gap: one key", dropout_cases),
    "noise": ("15 dB SNR: accept", noise_cases),
    "pause": ("40 ms pause: two keys", pause_cases),
}


# -- running the detectors ------------------------------------------------------------------


def through_codec(samples: Int16Array, codec: str) -> Int16Array:
    """The samples as a G.711 receiver decodes them (or unchanged for ``linear``)."""
    if codec == "pcmu":
        return g711.ulaw_decode(g711.ulaw_encode(samples))
    if codec == "pcma":
        return g711.alaw_decode(g711.alaw_encode(samples))
    return samples


def stack(streams: Sequence[Int16Array]) -> Int16Array:
    """Streams as rows of one array, zero-padded to a common whole number of ticks."""
    length = -(-max(s.size for s in streams) // TICK) * TICK
    out = np.zeros((len(streams), length), dtype=np.int16)
    for row, stream in zip(out, streams, strict=True):
        row[: stream.size] = stream
    return out


Hits = list[list[tuple[str, int]]]  # per stream: (key, sample) of every key reported


def run_hotline(streams: Int16Array, legs: int) -> Hits:
    """hotline over every row of `streams`, `legs` rows per bank (a fresh bank per group),
    one tick of 160 samples at a time; each key with its estimated onset sample."""
    count, length = streams.shape
    hits: Hits = [[] for _ in range(count)]
    for first in range(0, count, legs):
        group = streams[first : first + legs]
        bank = DtmfDetectorBank(group.shape[0])
        slots = np.array([bank.add_leg() for _ in range(group.shape[0])], dtype=np.intp)
        row_of = {int(slot): first + i for i, slot in enumerate(slots.tolist())}
        for tick in range(length // TICK):
            for event in bank.process(group[:, tick * TICK : (tick + 1) * TICK], slots, tick):
                if isinstance(event, InbandDigitStarted):
                    hits[row_of[event.slot]].append((event.digit, event.start_sample))
    return hits


def run_spandsp(streams: Int16Array, chunk: int | None) -> Hits:
    """spandsp over every row, a fresh receiver each, fed whole or `chunk` samples per
    call; each key with the stream position at the end of the call that reported it."""
    hits: Hits = []
    for row in streams:
        with SpandspDtmfReceiver() as receiver:
            receiver.feed(row, chunk)
            hits.append(list(receiver.digits))
    return hits


def keys_of(hits: Hits) -> list[str]:
    return ["".join(key for key, _ in stream) for stream in hits]


# -- part 1: Q.24 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    category: str
    condition: str
    key: str
    expected: str
    hotline: str
    spandsp: str


def run_q24(seed: int, codec: str) -> list[CaseResult]:
    results: list[CaseResult] = []
    for number, (_, build) in enumerate(CATEGORIES.values()):
        cases = build(np.random.default_rng([seed, 24, number]))
        streams = through_codec(stack([case.samples for case in cases]), codec)
        ours = keys_of(run_hotline(streams, len(cases)))
        theirs = keys_of(run_spandsp(streams, None))
        results.extend(
            CaseResult(c.category, c.condition, c.key, c.expected, h, s)
            for c, h, s in zip(cases, ours, theirs, strict=True)
        )
    return results


def _ratio(good: int, total: int) -> str:
    return f"{good}/{total}"


def _outcome(result: CaseResult, got: str) -> str:
    """What a detector did wrong in a case, in words."""
    if not got:
        return "reported nothing"
    if not result.expected:
        return "reported the key" if got == result.key else f"reported {got!r}"
    if got == result.expected * 2 or (
        len(got) > len(result.expected) and set(got) == set(result.expected)
    ):
        return "reported it more than once"
    return f"reported {got!r}"


def _failures(results: Sequence[CaseResult], got: Callable[[CaseResult], str]) -> str:
    """The failing cases, grouped by what went wrong: the keys (×n for repeats)."""
    by_outcome: dict[str, list[str]] = {}
    for r in results:
        if got(r) != r.expected:
            by_outcome.setdefault(_outcome(r, got(r)), []).append(r.key)
    parts = []
    for outcome, keys in sorted(by_outcome.items()):
        counts = {key: keys.count(key) for key in dict.fromkeys(keys)}
        listed = " ".join(f"{k}×{n}" if n > 1 else k for k, n in counts.items())
        parts.append(f"{outcome} for {len(keys)} ({listed})")
    return "; ".join(parts)


def report_q24(results: Sequence[CaseResult]) -> None:
    print(f"1. ITU-T Q.24 suite: {len(results)} cases, each a fresh stream with silence around it")
    header = (
        f"{'category':<10} {'cases':>5}  {'what is expected':<37} {'hotline':>9} {'spandsp':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, (expectation, _) in CATEGORIES.items():
        rows = [r for r in results if r.category == name]
        print(
            f"{name:<10} {len(rows):>5}  {expectation:<37}"
            f" {_ratio(sum(r.hotline == r.expected for r in rows), len(rows)):>9}"
            f" {_ratio(sum(r.spandsp == r.expected for r in rows), len(rows)):>9}"
        )
    print(
        f"{'all':<10} {len(results):>5}  {'':<37}"
        f" {_ratio(sum(r.hotline == r.expected for r in results), len(results)):>9}"
        f" {_ratio(sum(r.spandsp == r.expected for r in results), len(results)):>9}"
    )
    print()
    header = f"{'category':<10} {'condition':<48} {'expect':<6} {'hotline':>8} {'spandsp':>8}"
    print(header)
    print("-" * len(header))
    conditions = list(dict.fromkeys((r.category, r.condition) for r in results))
    for category, condition in conditions:
        rows = [r for r in results if (r.category, r.condition) == (category, condition)]
        expect = "reject" if not rows[0].expected else f"{len(rows[0].expected)} key"
        print(
            f"{category:<10} {condition:<48} {expect:<6}"
            f" {_ratio(sum(r.hotline == r.expected for r in rows), len(rows)):>8}"
            f" {_ratio(sum(r.spandsp == r.expected for r in rows), len(rows)):>8}"
        )
    print()
    for detector, got in (("hotline", _hotline_of), ("spandsp", _spandsp_of)):
        failing = [
            (category, condition)
            for category, condition in conditions
            if any(
                got(r) != r.expected
                for r in results
                if (r.category, r.condition) == (category, condition)
            )
        ]
        if not failing:
            print(f"{detector} fails no case")
            continue
        print(f"{detector} fails:")
        for category, condition in failing:
            rows = [r for r in results if (r.category, r.condition) == (category, condition)]
            print(f"  {category}, {condition}: {_failures(rows, got)}")
    print()


def _hotline_of(result: CaseResult) -> str:
    return result.hotline


def _spandsp_of(result: CaseResult) -> str:
    return result.spandsp


# -- part 2: the speech corpus --------------------------------------------------------------

# Languages whose voices read Latin-script text: they speak the generated sentences (with
# their own phonology) and the number-heavy text.
SENTENCE_LANGUAGES = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "de", "fr-fr", "es",
    "es-419", "it", "pt-br", "pt", "nl", "pl", "sv", "cs", "fi", "tr", "ro", "hu", "id",
    "sw", "da", "nb", "hr", "sk", "ca",
)  # fmt: skip
# Number-heavy text is read in every language, each saying the numbers its own way.
NUMBER_LANGUAGES = (
    *SENTENCE_LANGUAGES, "ru", "uk", "el", "hi", "ar", "he", "cmn", "yue", "ja", "ko",
    "vi", "th", "ta", "bn", "fa", "ka", "hy",
)  # fmt: skip
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
    "klatt2", "klatt3", "klatt4", "croak", "whisper", "grandma", "grandpa", "steph",
    "annie", "belinda", "michel", "john", "max", "quincy", "edward", "linda", "aunty",
    "boris", "david", "norbert", "pablo", "Andy", "Alicia",
)  # fmt: skip

_SUBJECTS = (
    "the nurse", "my neighbour", "our clinic", "a young doctor", "the pharmacist",
    "your daughter", "the receptionist", "an old friend of mine", "the bus driver",
    "my colleague", "the manager", "her grandmother", "the caller", "nobody",
    "the night shift", "a volunteer", "the council", "his brother", "the lady upstairs",
)  # fmt: skip
_VERBS = (
    "booked", "cancelled", "moved", "confirmed", "forgot", "asked about", "called about",
    "wrote down", "checked", "missed", "changed", "complained about", "paid for",
    "explained", "found", "lost", "printed", "repeated", "recorded", "postponed",
)  # fmt: skip
_OBJECTS = (
    "the appointment", "a second dose", "the booster", "my prescription",
    "the waiting list", "a new date", "the letter", "the address", "the parking ticket",
    "the results", "an urgent visit", "the opening hours", "a taxi", "the form",
    "the wrong vaccine", "a quiet room", "the whole morning", "the insurance card",
)  # fmt: skip
_WHEN = (
    "on Monday morning", "after lunch", "last week", "before the weekend",
    "as soon as possible", "without telling anyone", "twice", "in a hurry",
    "during the storm", "at the very last minute", "yesterday evening", "again",
    "for the third time", "just before closing", "while we were waiting",
)  # fmt: skip
_LINKS = ("because", "although", "so", "and then", "but", "while", "until", "unless")
_OPENERS = (
    "Well,", "Honestly,", "To be fair,", "Listen,", "Oh dear,", "Right,", "You know,",
    "Apparently", "As I said,", "Hmm, let me think.", "Yes, of course.", "Sorry,",
)  # fmt: skip
_QUESTIONS = (
    "Could you tell me whether {s} {v} {o}?", "Is it true that {s} {v} {o} {w}?",
    "Why on earth {s} {v} {o}?", "Who {v} {o} {w}?", "Did you know {s} {v} {o}?",
)  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip


def _pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def sentences_text(rng: np.random.Generator, count: int) -> str:
    """`count` generated English sentences: statements, compounds, questions, asides."""
    out = []
    for _ in range(count):
        s, v, o, w = (_pick(rng, words) for words in (_SUBJECTS, _VERBS, _OBJECTS, _WHEN))
        form = rng.random()
        if form < 0.35:
            sentence = f"{s} {v} {o} {w}."
        elif form < 0.6:
            s2, v2, o2 = (_pick(rng, words) for words in (_SUBJECTS, _VERBS, _OBJECTS))
            sentence = f"{s} {v} {o} {_pick(rng, _LINKS)} {s2} {v2} {o2}."
        elif form < 0.8:
            sentence = _pick(rng, _QUESTIONS).format(s=s, v=v, o=o, w=w)
        else:
            sentence = f"{_pick(rng, _OPENERS)} {s} {v} {o}, {w}."
        out.append(sentence[0].upper() + sentence[1:])
    return " ".join(out)


def numbers_text(rng: np.random.Generator, count: int) -> str:
    """`count` number-heavy phrases: phone numbers, dates, times, sums, references."""
    out = []
    for _ in range(count):
        form = int(rng.integers(9))
        digits = "".join(str(d) for d in rng.integers(10, size=11))
        if form == 0:  # a phone number read digit by digit, in groups
            out.append(
                f"{digits[:1]} {' '.join(digits[1:5])}, {' '.join(digits[5:8])}, "
                f"{' '.join(digits[8:])}."
            )
        elif form == 1:  # a phone number in blocks
            out.append(f"{digits[:5]} {digits[5:]}.")
        elif form == 2:  # a date
            out.append(
                f"{int(rng.integers(1, 29))} {_pick(rng, _MONTHS)} {int(rng.integers(1930, 2031))}."
            )
        elif form == 3:  # a numeric date and a time
            out.append(
                f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/"
                f"{int(rng.integers(2020, 2031))}, {int(rng.integers(24)):02d}:"
                f"{int(rng.integers(60)):02d}."
            )
        elif form == 4:  # a sum of money
            out.append(
                f"{int(rng.integers(1, 100000)):,}.{int(rng.integers(100)):02d} "
                f"{_pick(rng, ('euros', 'dollars', 'pounds', 'EUR', '€', '$'))}."
            )
        elif form == 5:  # a booking reference
            letters = "".join(chr(65 + int(c)) for c in rng.integers(26, size=3))
            out.append(f"{letters} {digits[:4]}.")
        elif form == 6:  # a count
            out.append(f"{int(rng.integers(0, 10 ** int(rng.integers(1, 8))))}.")
        elif form == 7:  # a percentage or an ordinal
            out.append(f"{int(rng.integers(101))}% and {int(rng.integers(1, 32))}.")
        else:  # a run of single digits
            out.append(", ".join(digits[: int(rng.integers(3, 11))]) + ".")
    return " ".join(out)


@dataclass(frozen=True)
class Segment:
    """One utterance of the corpus, followed by a pause (both within `span`)."""

    start: int  # first sample in the corpus
    speech: int  # samples of the utterance
    span: int  # samples up to the next utterance
    kind: str  # "sentences" or "numbers"
    voice: str
    rate: int  # words per minute
    pitch: int  # espeak-ng 0-99
    level_dbm0: float  # active speech level
    text: str  # its first words


@dataclass(frozen=True)
class Corpus:
    audio: Int16Array  # linear 8 kHz
    segments: list[Segment]
    cached: bool


def espeak_version() -> str:
    try:
        done = subprocess.run(
            ["espeak-ng", "--version"], check=True, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError as error:
        raise SystemExit(
            "espeak-ng is not installed: install the Debian package espeak-ng "
            "(make sysdeps does it as root)"
        ) from error
    return done.stdout.split("Data at")[0].strip()


def speak(text: str, voice: str, rate: int, pitch: int, workdir: Path) -> Float64Array:
    """espeak-ng's rendering of `text`, resampled to 8 kHz (float, its own scale)."""
    text_path = workdir / "text.txt"
    wav_path = workdir / "speech.wav"
    text_path.write_text(text, encoding="utf-8")
    command = [
        "espeak-ng",
        "-v",
        voice,
        "-s",
        str(rate),
        "-p",
        str(pitch),
        "-w",
        str(wav_path),
        "-f",
        str(text_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(
            f"espeak-ng failed (exit {done.returncode}) for voice {voice}: {done.stderr.strip()}"
        )
    with wave.open(str(wav_path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise RuntimeError(
                f"espeak-ng wrote {wav.getnchannels()} channels of {8 * wav.getsampwidth()}"
                " bits; expected mono 16-bit"
            )
        rate_hz = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    common = math.gcd(SAMPLE_RATE, rate_hz)
    resampled = resample_poly(raw.astype(np.float64), SAMPLE_RATE // common, rate_hz // common)
    return np.asarray(resampled, dtype=np.float64)


def at_active_level(signal: Float64Array, level_dbm0: float) -> Int16Array:
    """`signal` scaled so that its active part (20 ms frames within 40 dB of the loudest)
    has an RMS of `level_dbm0`."""
    frames = signal[: signal.size // TICK * TICK].reshape(-1, TICK)
    power = np.mean(frames * frames, axis=1)
    active = power[power >= power.max() * 1e-4]
    rms = math.sqrt(float(np.mean(active)))
    return to_int16(signal * (DBM0_RMS * 10 ** (level_dbm0 / 20) / rms))


def synthesise_corpus(speech_seconds: float, seed: int) -> list[tuple[Segment, Int16Array]]:
    rng = np.random.default_rng([seed, 0xE5])
    pieces: list[tuple[Segment, Int16Array]] = []
    position = speech = 0
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        while speech < speech_seconds * SAMPLE_RATE:
            kind = "numbers" if rng.random() < 0.5 else "sentences"
            if kind == "numbers":
                language = _pick(rng, NUMBER_LANGUAGES)
                text = numbers_text(rng, int(rng.integers(3, 11)))
            else:
                language = _pick(rng, SENTENCE_LANGUAGES)
                text = sentences_text(rng, int(rng.integers(2, 8)))
            voice = f"{language}+{_pick(rng, VARIANTS)}"
            rate = int(rng.integers(110, 261))
            pitch = int(rng.integers(10, 91))
            level = float(rng.uniform(-30.0, -10.0))
            rendered = speak(text, voice, rate, pitch, Path(tmp))
            if rendered.size < SAMPLE_RATE // 2 or not np.any(rendered):
                raise RuntimeError(f"espeak-ng gave no speech for voice {voice}: {text[:60]!r}")
            utterance = at_active_level(rendered, level)
            pause = int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)
            audio = np.concatenate([utterance, np.zeros(pause, np.int16)])
            words = " ".join(text.split()[:8])
            segment = Segment(
                position,
                utterance.size,
                audio.size,
                kind,
                voice,
                rate,
                pitch,
                round(level, 1),
                words,
            )
            pieces.append((segment, audio))
            position += audio.size
            speech += utterance.size
    return pieces


def load_corpus(cache_dir: Path, speech_minutes: float, seed: int, refresh: bool) -> Corpus:
    """The speech corpus, from the cache when it holds one made the same way."""
    version = espeak_version()
    recipe = {
        "corpus": CORPUS_VERSION,
        "espeak": version,
        "minutes": speech_minutes,
        "seed": seed,
        "rate": SAMPLE_RATE,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"speech-{speech_minutes:g}min-{digest}.npz"
    if path.exists() and not refresh:
        try:
            with np.load(path, allow_pickle=False) as data:
                audio = np.asarray(data["audio"], dtype=np.int16)
                meta = json.loads(str(data["meta"]))
            return Corpus(audio, [Segment(**item) for item in meta["segments"]], cached=True)
        except (OSError, KeyError, ValueError, TypeError) as error:
            print(f"cache {path} unreadable ({error}); making the corpus again", file=sys.stderr)
    # The utterances ran over the target, so a few at the end can go: cut at the target
    # plus 1 % (the streams' tick rounding loses less than that).
    pieces = synthesise_corpus(speech_minutes * 60.0 * 1.01, seed)
    audio = np.concatenate([audio for _, audio in pieces])
    segments = [segment for segment, _ in pieces]
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps({"recipe": recipe, "segments": [asdict(s) for s in segments]})
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, audio=audio, meta=np.array(meta_json))
    os.replace(partial, path)
    return Corpus(audio, segments, cached=False)


def cut(audio: Int16Array, streams: int) -> Int16Array:
    """`audio` cut into `streams` rows of equal length, a whole number of ticks each."""
    length = audio.size // (streams * TICK) * TICK
    if length == 0:
        raise SystemExit(
            f"the corpus ({audio.size / SAMPLE_RATE:.1f} s) is too short for {streams} streams"
        )
    return audio[: streams * length].reshape(streams, length)


# -- part 2: talk-off -------------------------------------------------------------------------


@dataclass(frozen=True)
class FalseHit:
    detector: str
    row: str
    stream: int
    second: float  # in its stream: hotline's estimated onset, spandsp's report time
    key: str
    source: str  # what was playing there


@dataclass
class TalkoffRow:
    name: str
    minutes: float  # of audio, pauses included
    hotline: int = 0
    spandsp: int = 0
    voiced_minutes: float | None = None  # of speech alone, for the speech rows


def _describe(segments: Sequence[Segment], starts: npt.NDArray[np.int64], sample: int) -> str:
    index = int(np.searchsorted(starts, sample, side="right")) - 1
    if index < 0:
        return "before the first utterance"
    s = segments[index]
    where = "speech" if sample < s.start + s.speech else "pause after"
    return (
        f"{where} {s.kind} {s.voice} {s.rate} wpm pitch {s.pitch} {s.level_dbm0} dBm0: {s.text!r}"
    )


def speech_talkoff(
    corpus: Corpus, streams: Int16Array, hotline: Hits, spandsp: Hits
) -> tuple[list[TalkoffRow], list[FalseHit]]:
    """False keys in the speech streams, attributed to the utterance they fell in."""
    length = streams.shape[1]
    used = streams.size
    starts = np.array([s.start for s in corpus.segments], dtype=np.int64)
    rows = {
        kind: TalkoffRow(f"speech: {kind}", 0.0, voiced_minutes=0.0)
        for kind in ("sentences", "numbers")
    }
    for s in corpus.segments:
        row = rows[s.kind]
        row.minutes += max(0, min(s.start + s.span, used) - s.start) / SAMPLE_RATE / 60
        voiced = max(0, min(s.start + s.speech, used) - s.start) / SAMPLE_RATE / 60
        row.voiced_minutes = (row.voiced_minutes or 0.0) + voiced
    hits: list[FalseHit] = []
    for detector, found in (("hotline", hotline), ("spandsp", spandsp)):
        for stream, keys in enumerate(found):
            for key, at in keys:
                sample = stream * length + min(max(at, 0), length - 1)
                index = int(np.searchsorted(starts, sample, side="right")) - 1
                row = rows[corpus.segments[max(index, 0)].kind]
                setattr(row, detector, getattr(row, detector) + 1)
                hits.append(
                    FalseHit(
                        detector,
                        row.name,
                        stream,
                        at / SAMPLE_RATE,
                        key,
                        _describe(corpus.segments, starts, sample),
                    )
                )
    total = TalkoffRow(
        "speech: all",
        sum(r.minutes for r in rows.values()),
        sum(r.hotline for r in rows.values()),
        sum(r.spandsp for r in rows.values()),
        sum(r.voiced_minutes or 0.0 for r in rows.values()),
    )
    return [*rows.values(), total], hits


def program_talkoff(
    name: str,
    generator: Callable[[np.random.Generator, float, float], Float64Array],
    minutes: float,
    streams: int,
    seed: int,
    codec: str,
) -> tuple[TalkoffRow, list[FalseHit]]:
    """False keys in generated program audio, one generated stream per leg, each at its
    own level (−30 … −6 dBm0)."""
    seconds = minutes * 60.0 / streams
    audio = []
    for index in range(streams):
        rng = np.random.default_rng([seed, 0x3A, index])
        audio.append(to_int16(generator(rng, seconds, float(rng.uniform(-30.0, -6.0)))))
    block = through_codec(stack(audio), codec)
    row = TalkoffRow(name, block.size / SAMPLE_RATE / 60)
    hits: list[FalseHit] = []
    for detector, found in (
        ("hotline", run_hotline(block, streams)),
        ("spandsp", run_spandsp(block, TICK)),
    ):
        for stream, keys in enumerate(found):
            for key, at in keys:
                setattr(row, detector, getattr(row, detector) + 1)
                hits.append(FalseHit(detector, name, stream, at / SAMPLE_RATE, key, name))
    return row, hits


def report_talkoff(
    rows: Sequence[TalkoffRow], hits: Sequence[FalseHit], streams: int, listed: int
) -> None:
    print(f"2. Talk-off: keys reported in audio where none was pressed ({streams} streams a row)")
    header = (
        f"{'audio':<20} {'minutes':>8} {'voiced':>7} {'hotline':>8} {'spandsp':>8}"
        f"  {'hotline/h':>9} {'spandsp/h':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        hours = r.minutes / 60 if r.minutes else math.inf
        voiced = "" if r.voiced_minutes is None else f"{r.voiced_minutes:.1f}"
        print(
            f"{r.name:<20} {r.minutes:>8.1f} {voiced:>7} {r.hotline:>8} {r.spandsp:>8}"
            f"  {r.hotline / hours:>9.1f} {r.spandsp / hours:>9.1f}"
        )
    print("minutes: of audio, pauses included; voiced: of speech alone; /h: per hour of audio")
    speech = next(r for r in rows if r.name == "speech: all")
    met = speech.hotline <= speech.spandsp
    print(
        f"target, hotline no more talk-off on speech than spandsp: "
        f"{'met' if met else 'NOT met'} ({speech.hotline} against {speech.spandsp})"
    )
    for detector in ("hotline", "spandsp"):
        mine = [h for h in hits if h.detector == detector]
        if not mine:
            continue
        print(f"{detector}'s false keys ({len(mine)}; first {min(listed, len(mine))}):")
        for h in mine[:listed]:
            print(f"  {h.row:<18} stream {h.stream:>3} at {h.second:7.2f} s  {h.key!r}  {h.source}")
    print()


# -- part 3: throughput ---------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    detector: str
    how: str
    seconds: float
    samples: int

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds


def timed(run: Callable[[], Hits]) -> tuple[Hits, float]:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        hits = run()
        return hits, time.perf_counter() - start
    finally:
        gc.enable()


def measure_throughput(
    streams: Int16Array, legs: Sequence[int]
) -> tuple[list[Throughput], Hits, Hits, list[str]]:
    """Every way of running each detector over the speech streams; the keys of the last
    hotline run and of spandsp's per-tick run, and the disagreements between runs."""
    samples = streams.size
    results: list[Throughput] = []
    problems: list[str] = []
    whole, seconds = timed(lambda: run_spandsp(streams, None))
    results.append(Throughput("spandsp", "whole stream per dtmf_rx call", seconds, samples))
    ticked, seconds = timed(lambda: run_spandsp(streams, TICK))
    results.append(Throughput("spandsp", "160 samples per dtmf_rx call", seconds, samples))
    if keys_of(whole) != keys_of(ticked):
        problems.append("spandsp reported different keys fed whole and fed 160 per call")
    reference: Hits | None = None
    for count in legs:
        hits, seconds = timed(partial(run_hotline, streams, count))
        how = f"{count} leg{'s' if count > 1 else ''} per bank, 160-sample ticks"
        results.append(Throughput("hotline", how, seconds, samples))
        if reference is not None and keys_of(hits) != keys_of(reference):
            problems.append(f"hotline reported different keys with {count} legs per bank")
        reference = hits
    assert reference is not None
    return results, reference, ticked, problems


def report_throughput(results: Sequence[Throughput], streams: Int16Array) -> None:
    count, length = streams.shape
    print(
        f"3. Throughput over the speech streams ({count} × {length / SAMPLE_RATE:.1f} s ="
        f" {streams.size / SAMPLE_RATE / 60:.1f} min), one core"
    )
    header = (
        f"{'detector':<8} {'how it is fed':<38} {'seconds':>8} {'Msamples/s':>10}"
        f" {'x real time':>11} {'vs spandsp':>10}"
    )
    print(header)
    print("-" * len(header))
    baseline = results[0].samples_per_second
    for r in results:
        print(
            f"{r.detector:<8} {r.how:<38} {r.seconds:>8.2f} {r.samples_per_second / 1e6:>10.2f}"
            f" {r.samples_per_second / SAMPLE_RATE:>11,.0f} {r.samples_per_second / baseline:>10.3f}"
        )
    print("x real time: 8 kHz streams one core keeps up with; vs spandsp: over its first row")
    print()


# -- main ------------------------------------------------------------------------------------


def _positive_legs(text: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        legs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--legs must be comma-separated integers, got {text!r}")
    if not legs or min(legs) < 1:
        parser.error("--legs needs at least one positive leg count")
    return legs


def _environment() -> dict[str, str]:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libspandsp2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        spandsp = done.stdout.strip() if done.returncode == 0 else "unknown"
    except FileNotFoundError:
        spandsp = "unknown"
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "libspandsp2": spandsp,
        "espeak-ng": espeak_version(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SPEECH_MINUTES:g} min of speech, "
        f"{QUICK_MUSIC_MINUTES:g} min of music and of sweeps",
    )
    parser.add_argument(
        "--speech-minutes",
        type=float,
        default=None,
        help="minutes of synthesised speech (default 30)",
    )
    parser.add_argument(
        "--music-minutes",
        type=float,
        default=None,
        help="minutes of music-like chords, and again of sweeps (default 5)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=100,
        help="streams each talk-off corpus is cut into (default 100)",
    )
    parser.add_argument(
        "--legs",
        default="1,100",
        help="hotline legs per bank in the throughput runs; each must divide"
        " --streams (default 1,100)",
    )
    parser.add_argument(
        "--codec",
        choices=("pcmu", "pcma", "linear"),
        default="pcmu",
        help="what the audio passes through before detection (default pcmu)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "hotline-bench"
        / "dtmf",
        help="where the speech corpus is kept between runs",
    )
    parser.add_argument(
        "--refresh-cache", action="store_true", help="synthesise the speech corpus again"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--list", type=int, default=12, help="false keys listed per detector (all are in --json)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    legs = _positive_legs(args.legs, parser)
    if args.streams < 1:
        parser.error("--streams must be at least 1")
    bad = [count for count in legs if args.streams % count]
    if bad:
        parser.error(f"--legs {bad[0]} does not divide --streams {args.streams}")
    speech_minutes = args.speech_minutes
    if speech_minutes is None:
        speech_minutes = QUICK_SPEECH_MINUTES if args.quick else 30.0
    music_minutes = args.music_minutes
    if music_minutes is None:
        music_minutes = QUICK_MUSIC_MINUTES if args.quick else 5.0
    if speech_minutes <= 0 or music_minutes < 0:
        parser.error("--speech-minutes must be positive and --music-minutes not negative")
    if args.list < 0:
        parser.error("--list must not be negative")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: install the Debian package espeak-ng")
    try:
        load()
    except SpandspUnavailable as error:
        raise SystemExit(str(error)) from error

    environment = _environment()
    codec = {"pcmu": "G.711 µ-law", "pcma": "G.711 A-law", "linear": "no codec"}[args.codec]
    print(
        f"hotline DtmfDetectorBank against spandsp dtmf_rx ({LIBRARY}, libspandsp2"
        f" {environment['libspandsp2']}); audio through {codec}"
    )
    print(
        f"Python {environment['python']}, numpy {environment['numpy']},"
        f" {environment['espeak-ng']},"
        f" OPENBLAS_NUM_THREADS={environment['OPENBLAS_NUM_THREADS']}"
    )
    print()

    q24 = run_q24(args.seed, args.codec)
    report_q24(q24)

    started = time.perf_counter()
    corpus = load_corpus(args.cache_dir, speech_minutes, args.seed, args.refresh_cache)
    made = "read from the cache" if corpus.cached else "synthesised and cached"
    print(
        f"speech corpus: {len(corpus.segments)} utterances, {made} in"
        f" {time.perf_counter() - started:.1f} s ({args.cache_dir})"
    )
    speech = cut(through_codec(corpus.audio, args.codec), args.streams)
    throughput, hotline_hits, spandsp_hits, problems = measure_throughput(speech, legs)
    rows, hits = speech_talkoff(corpus, speech, hotline_hits, spandsp_hits)
    if music_minutes > 0:
        for name, generator in (("music-like chords", music_like), ("sweeps", chirps)):
            row, found = program_talkoff(
                name, generator, music_minutes, args.streams, args.seed, args.codec
            )
            rows.append(row)
            hits.extend(found)
    print()
    report_talkoff(rows, hits, args.streams, args.list)
    report_throughput(throughput, speech)
    for problem in problems:
        print(f"warning: {problem}")

    failed_hotline = [r for r in q24 if r.hotline != r.expected]
    failed_spandsp = [r for r in q24 if r.spandsp != r.expected]
    speech_row = next(r for r in rows if r.name == "speech: all")
    hotline_rate = next(
        t for t in throughput if t.detector == "hotline" and t.how.startswith(f"{max(legs)} leg")
    )
    print(
        f"summary: Q.24 hotline {len(q24) - len(failed_hotline)}/{len(q24)},"
        f" spandsp {len(q24) - len(failed_spandsp)}/{len(q24)};"
        f" talk-off on {speech_row.minutes:.0f} min of speech hotline {speech_row.hotline},"
        f" spandsp {speech_row.spandsp};"
        f" throughput hotline ({max(legs)} legs) / spandsp (whole streams) ="
        f" {hotline_rate.samples_per_second / throughput[0].samples_per_second:.3f}"
    )

    if args.json is not None:
        document: dict[str, Any] = {
            "environment": environment,
            "settings": {
                "codec": args.codec,
                "seed": args.seed,
                "streams": args.streams,
                "legs": legs,
                "speech_minutes": speech_minutes,
                "music_minutes": music_minutes,
            },
            "q24": {
                "categories": {
                    name: {
                        "expectation": expectation,
                        "cases": sum(r.category == name for r in q24),
                        "hotline_correct": sum(
                            r.category == name and r.hotline == r.expected for r in q24
                        ),
                        "spandsp_correct": sum(
                            r.category == name and r.spandsp == r.expected for r in q24
                        ),
                    }
                    for name, (expectation, _) in CATEGORIES.items()
                },
                "cases": [asdict(r) for r in q24],
            },
            "talkoff": {
                "rows": [asdict(r) for r in rows],
                "false_keys": [asdict(h) for h in hits],
                "speech_utterances": len(corpus.segments),
            },
            "throughput": [
                {**asdict(t), "samples_per_second": t.samples_per_second} for t in throughput
            ],
            "warnings": problems,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
