"""Talk-off: speech, music, sweeps, noise and call-progress tones must give no key."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hotline.media import tones
from tests.unit.media import signals
from tests.unit.media.signals import detect, keys, through_ulaw, to_int16

SECONDS = 20.0  # per leg; each test runs several legs at once


@pytest.mark.parametrize(
    ("generator", "legs"),
    [(signals.speech_like, 12), (signals.music_like, 6), (signals.chirps, 6)],
    ids=["speech", "music", "sweeps"],
)
def test_no_key_in_generated_program_audio(
    generator: Callable[[np.random.Generator, float, float], np.ndarray], legs: int
) -> None:
    audio = []
    for seed in range(legs):
        rng = np.random.default_rng(4000 + seed)
        level = rng.uniform(-30.0, -6.0)
        audio.append(through_ulaw(to_int16(generator(rng, SECONDS, level))))
    heard = [keys(events) for events in detect(audio)]
    assert heard == [""] * legs


def test_no_key_in_white_noise_at_any_level() -> None:
    rng = np.random.default_rng(9)
    audio = [
        through_ulaw(to_int16(signals.white_noise(rng, 5 * 8000, level)))
        for level in (-50.0, -30.0, -15.0, -5.0)
    ]
    assert [keys(events) for events in detect(audio)] == [""] * 4


def test_no_key_in_single_tones_or_call_progress_tones() -> None:
    audio = [
        tones.multi_tone([(f, -10.0)], 8000)
        for f in (*tones.ROW_HZ, *tones.COL_HZ)  # one tone of a pair is not a key
    ]
    audio.append(tones.multi_tone([(350.0, -13.0), (440.0, -13.0)], 8000))  # US dial tone
    audio.append(tones.multi_tone([(425.0, -10.0)], 8000))  # European dial tone
    audio.extend(cadence.render(0, 6 * 8000) for cadence in tones.RINGBACKS.values())
    audio.append(tones.beep(500, 1000.0, -10.0))
    # Two tones of the same group are not a key either.
    audio.append(tones.multi_tone([(697.0, -10.0), (852.0, -10.0)], 8000))
    audio.append(tones.multi_tone([(1209.0, -10.0), (1477.0, -10.0)], 8000))
    assert [keys(events) for events in detect([through_ulaw(a) for a in audio])] == [""] * len(
        audio
    )


def test_a_key_with_a_strong_second_harmonic_is_refused() -> None:
    """Voiced sounds have harmonics; a DTMF generator does not."""
    pure = tones.multi_tone([(770.0, -10.0), (1336.0, -12.0)], 800)
    rich = tones.multi_tone([(770.0, -10.0), (1336.0, -12.0), (1540.0, -16.0)], 800)
    heard = [keys(e) for e in detect([through_ulaw(pure), through_ulaw(rich)])]
    assert heard == ["5", ""]


def test_a_key_under_a_third_tone_is_refused() -> None:
    """The two tones must carry most of the power: a chord is not a key."""
    chord = tones.multi_tone([(697.0, -10.0), (1209.0, -10.0), (500.0, -12.0)], 800)
    assert [keys(e) for e in detect([through_ulaw(chord)])] == [""]


def dual_sweep(rate_hz_per_s: float) -> np.ndarray:
    """Two tones gliding together, crossing 697 and 1209 Hz at the same moment (0.5 s)."""
    t = np.arange(8000) / 8000
    low = 697.0 + rate_hz_per_s * (t - 0.5)
    high = 1209.0 + rate_hz_per_s * (t - 0.5)
    phases = 2 * np.pi * np.cumsum(np.stack([low, high]), axis=1) / 8000
    return through_ulaw(to_int16(tones.dbm0_to_peak(-10.0) * np.sin(phases).sum(axis=0)))


def test_a_dual_sweep_through_a_key_is_refused() -> None:
    """At 1 kHz/s both tones spend some 25 ms inside the frequency tolerance together,
    long enough for four windows, but they do not hold their frequency."""
    assert [keys(e) for e in detect([dual_sweep(1000.0), dual_sweep(-2000.0)])] == ["", ""]


def test_a_glide_slow_enough_to_be_a_steady_pair_is_a_key() -> None:
    """At 40 Hz/s the pair stays within 1.5 % for over half a second: by Q.24's measures
    that is the key, and the detector says so."""
    assert [keys(e) for e in detect([dual_sweep(40.0)])] == ["1"]
