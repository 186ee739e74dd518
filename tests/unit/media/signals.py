"""Test signals for the media tests: speech-like, chirps, music-like, noise.

Everything is generated from a seeded numpy Generator, at 8 kHz, on the int16 scale, so
a test is reproducible and needs no recordings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from hotline.media import g711
from hotline.media.dtmf import (
    DigitEvent,
    DtmfDetectorBank,
    DtmfDetectorConfig,
    InbandDigitEnded,
    InbandDigitStarted,
)
from hotline.media.tones import DBM0_RMS, SAMPLE_RATE

Float = npt.NDArray[np.float64]
Int16 = npt.NDArray[np.int16]

# Formant frequencies (Hz) of a few vowels, adult voices (Peterson & Barney averages).
VOWELS = (
    (730, 1090, 2440),  # a
    (270, 2290, 3010),  # i
    (300, 870, 2240),  # u
    (530, 1840, 2480),  # e
    (570, 840, 2410),  # o
    (660, 1720, 2410),  # ae
    (490, 1350, 1690),  # er
    (640, 1190, 2390),  # uh
)


def to_int16(signal: Float) -> Int16:
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def scale_to_dbm0(signal: Float, level_dbm0: float) -> Float:
    rms = float(np.sqrt(np.mean(signal * signal)))
    if rms == 0.0:
        return signal
    scaled: Float = signal * (DBM0_RMS * 10.0 ** (level_dbm0 / 20.0) / rms)
    return scaled


def through_ulaw(samples: Int16) -> Int16:
    return g711.ulaw_decode(g711.ulaw_encode(samples))


def through_alaw(samples: Int16) -> Int16:
    return g711.alaw_decode(g711.alaw_encode(samples))


def with_noise(rng: np.random.Generator, signal: npt.NDArray[np.generic], snr_db: float) -> Int16:
    """`signal` plus white noise `snr_db` below the signal's own power."""
    values = np.asarray(signal, dtype=np.float64)
    power = float(np.mean(values * values))
    noise = rng.standard_normal(values.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return to_int16(values + noise)


def detect(
    signals: Sequence[npt.NDArray[np.generic]],
    config: DtmfDetectorConfig | None = None,
    lead: int = 160,
    tail: int = 800,
) -> list[list[DigitEvent]]:
    """Run one detector bank over one signal per leg (each padded with `lead` samples of
    silence before and `tail` after, all legs stepped together tick by tick); returns
    each leg's events in order."""
    legs = len(signals)
    length = max(len(s) for s in signals) + lead + tail
    length = -(-length // 160) * 160
    block = np.zeros((legs, length), dtype=np.int16)
    for i, signal in enumerate(signals):
        block[i, lead : lead + len(signal)] = signal
    bank = DtmfDetectorBank(max(legs, 1), config)
    slots = np.array([bank.add_leg() for _ in range(legs)])
    events: list[list[DigitEvent]] = [[] for _ in range(legs)]
    for tick in range(length // 160):
        for event in bank.process(block[:, tick * 160 : (tick + 1) * 160], slots, tick):
            events[int(np.flatnonzero(slots == event.slot)[0])].append(event)
    return events


def keys(events: Sequence[DigitEvent]) -> str:
    """The keys reported as started, in order."""
    return "".join(e.digit for e in events if isinstance(e, InbandDigitStarted))


def well_formed(events: Sequence[DigitEvent]) -> bool:
    """Every start is followed by its end before the next start."""
    open_key: str | None = None
    for event in events:
        if isinstance(event, InbandDigitStarted):
            if open_key is not None:
                return False
            open_key = event.digit
        elif isinstance(event, InbandDigitEnded):
            if open_key != event.digit:
                return False
            open_key = None
    return open_key is None


def white_noise(rng: np.random.Generator, n: int, level_dbm0: float) -> Float:
    return scale_to_dbm0(rng.standard_normal(n), level_dbm0)


def _resonator(frequency: float, bandwidth: float) -> tuple[Float, Float]:
    """Second-order all-pole resonator (unity gain at DC)."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * frequency / SAMPLE_RATE
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([a.sum()]), a


def speech_like(rng: np.random.Generator, seconds: float, level_dbm0: float = -18.0) -> Float:
    """Vowel-like speech: a glottal pulse train with a wandering pitch (80-350 Hz, with
    steady stretches, vibrato and jitter) through moving formants, syllable envelopes,
    pauses, and noisy fricatives in between."""
    n_total = int(seconds * SAMPLE_RATE)
    out = np.zeros(n_total)
    position = 0
    while position < n_total:
        syllable = int(rng.uniform(0.08, 0.35) * SAMPLE_RATE)
        syllable = min(syllable, n_total - position)
        t = np.arange(syllable) / SAMPLE_RATE
        base = rng.uniform(80, 350)
        glide = rng.uniform(-0.5, 0.5) * base * np.clip(t / max(t[-1], 1e-3), 0, 1)
        if rng.random() < 0.4:
            glide[:] = 0.0  # a steady stretch, the hardest case for a detector
        vibrato = rng.uniform(0, 0.02) * base * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
        pitch = base + glide + vibrato
        phase = np.cumsum(pitch / SAMPLE_RATE)
        pulses = np.diff(np.floor(phase), prepend=np.floor(phase[0])) > 0
        source = pulses.astype(np.float64) * (1 + 0.05 * rng.standard_normal(syllable))
        source = lfilter([1.0], [1.0, -0.97], source)  # glottal roll-off
        source = lfilter([1.0], [1.0, -0.9], source)
        first, second = VOWELS[rng.integers(len(VOWELS))], VOWELS[rng.integers(len(VOWELS))]
        half = syllable // 2
        voiced = np.zeros(syllable)
        for part, formants in ((slice(0, half), first), (slice(half, syllable), second)):
            segment = source[part]
            for f in formants:
                b, a = _resonator(f * rng.uniform(0.9, 1.1), rng.uniform(60, 150))
                segment = lfilter(b, a, segment)
            voiced[part] = segment
        envelope = np.sin(np.pi * np.arange(syllable) / max(syllable, 1)) ** 0.5
        voiced *= envelope * rng.uniform(0.3, 1.0) / (np.std(voiced) + 1e-9)
        out[position : position + syllable] += voiced
        position += syllable
        gap = int(rng.uniform(0.0, 0.12) * SAMPLE_RATE)
        if rng.random() < 0.5 and min(gap, n_total - position) > 0:
            fricative = rng.standard_normal(min(gap, n_total - position))
            fricative = lfilter([1.0, -0.95], [1.0], fricative) * rng.uniform(0.05, 0.3)
            out[position : position + fricative.size] += fricative
        position += gap
    return scale_to_dbm0(out, level_dbm0)


def chirps(rng: np.random.Generator, seconds: float, level_dbm0: float = -12.0) -> Float:
    """Single and dual sweeps across the voice band, at least 1.5 kHz/s, either direction."""
    n_total = int(seconds * SAMPLE_RATE)
    out = np.zeros(n_total)
    position = 0
    while position < n_total:
        n = min(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE), n_total - position)
        t = np.arange(n) / SAMPLE_RATE
        voices = 1 if rng.random() < 0.5 else 2
        for _ in range(voices):
            start = rng.uniform(300, 3400)
            # At least 1.5 kHz/s: slower dual sweeps that sit on a key's two tones for
            # 40 ms are, by Q.24's own measures, that key.
            span = max(1500.0 * n / SAMPLE_RATE, rng.uniform(0, 3100))
            end = start + span if start + span <= 3400 or start - span < 300 else start - span
            end = float(np.clip(end, 300, 3400))
            if rng.random() < 0.5:
                freq = start + (end - start) * t / max(t[-1], 1e-3)  # linear
            else:
                freq = start * (end / start) ** (t / max(t[-1], 1e-3))  # exponential
            out[position : position + n] += np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
        position += n + int(rng.uniform(0, 0.05) * SAMPLE_RATE)
    return scale_to_dbm0(out, level_dbm0)


def music_like(rng: np.random.Generator, seconds: float, level_dbm0: float = -15.0) -> Float:
    """Chords of three or four equal-tempered notes (C4-C7) with instrument-like
    harmonic spectra (string, reed, brass, soft flute), attack/decay envelopes, and
    melodies over held chords."""
    n_total = int(seconds * SAMPLE_RATE)
    out = np.zeros(n_total)
    position = 0
    timbres = (
        np.array([1.0, 0.5, 0.33, 0.25, 0.2, 0.16]),  # string (saw-like)
        np.array([1.0, 0.05, 0.4, 0.05, 0.25, 0.03, 0.15]),  # reed (odd harmonics)
        np.array([1.0, 0.8, 0.6, 0.45, 0.3]),  # brass
        np.array([1.0, 0.35, 0.15]),  # flute
    )
    while position < n_total:
        n = min(int(rng.uniform(0.15, 1.0) * SAMPLE_RATE), n_total - position)
        t = np.arange(n) / SAMPLE_RATE
        root = rng.integers(48, 80)  # MIDI note
        intervals = (0, 4, 7, 12) if rng.random() < 0.5 else (0, 3, 7, 10)
        notes = [root + i for i in intervals[: rng.integers(3, 5)]]
        chord = np.zeros(n)
        for note in notes:
            freq = 440.0 * 2 ** ((note - 69) / 12)
            timbre = timbres[rng.integers(len(timbres))]
            for k, amplitude in enumerate(timbre, start=1):
                if k * freq < SAMPLE_RATE / 2:
                    chord += amplitude * np.sin(2 * np.pi * k * freq * t + rng.uniform(0, 6.28))
        attack = np.minimum(t / 0.02, 1.0)
        decay = np.exp(-t * rng.uniform(0.5, 4.0))
        out[position : position + n] += chord * attack * decay
        position += n
    return scale_to_dbm0(out, level_dbm0)
