"""Tone generation and the dBm0 scale."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from hotline.media import g711, tones
from hotline.media.tones import (
    AU_RINGBACK,
    DBM0_PEAK,
    DBM0_RMS,
    RINGBACKS,
    US_RINGBACK,
    Cadence,
)


def spectrum_peaks(signal: np.ndarray, count: int) -> list[float]:
    """The `count` strongest frequencies (Hz, 1 Hz resolution) of a 1 s or longer signal."""
    n = tones.SAMPLE_RATE
    magnitude = np.abs(np.fft.rfft(signal[:n].astype(np.float64) * np.hanning(n)))
    order = np.argsort(magnitude)[::-1]
    peaks: list[float] = []
    for index in order:
        if all(abs(index - p) > 5 for p in peaks):
            peaks.append(float(index))
        if len(peaks) == count:
            break
    return sorted(peaks)


def test_zero_dbm0_follows_from_the_mulaw_overload_point() -> None:
    # +3.17 dBm0 is the sine whose peaks reach 8159 on the 14-bit scale (G.711).
    assert pytest.approx(8159 * 4 * 10 ** (-3.17 / 20)) == DBM0_PEAK
    assert pytest.approx(22657, abs=1) == DBM0_PEAK
    assert pytest.approx(16021, abs=1) == DBM0_RMS


@pytest.mark.parametrize(
    ("codes", "decode", "expected"),
    [
        # The digital milliwatt sequences of G.711 Tables 5 and 6: 1 kHz at 0 dBm0.
        ([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E], g711.ulaw_decode, 0.0),
        ([0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4], g711.alaw_decode, 0.07),
    ],
)
def test_the_digital_milliwatt_measures_0_dbm0(
    codes: list[int], decode: Callable[[np.ndarray], np.ndarray], expected: float
) -> None:
    signal = decode(np.array(codes * 100, dtype=np.uint8))
    assert tones.level_dbm0(signal) == pytest.approx(expected, abs=0.02)


def test_level_conversions() -> None:
    assert tones.dbm0_to_peak(0.0) == pytest.approx(DBM0_PEAK)
    assert tones.dbm0_to_peak(-20.0) == pytest.approx(DBM0_PEAK / 10)
    assert tones.rms_to_dbm0(DBM0_RMS) == pytest.approx(0.0)
    assert tones.rms_to_dbm0(DBM0_RMS / 100) == pytest.approx(-40.0)
    assert tones.rms_to_dbm0(0.0) == -math.inf
    assert tones.level_dbm0(np.zeros(10, dtype=np.int16)) == -math.inf
    assert tones.level_dbm0(np.zeros(0)) == -math.inf


@pytest.mark.parametrize("level", [-3.0, -10.0, -36.0])
def test_a_tone_measures_its_level(level: float) -> None:
    tone = tones.multi_tone([(1000.0, level)], 8000)
    assert tone.dtype == np.int16
    assert tones.level_dbm0(tone) == pytest.approx(level, abs=0.05)


def test_dual_tone_levels_add_in_power() -> None:
    signal = tones.dual_tone(697, 1209, 8000, -10.0, -10.0)
    assert tones.level_dbm0(signal) == pytest.approx(-10.0 + 10 * math.log10(2), abs=0.05)
    assert spectrum_peaks(signal, 2) == [697.0, 1209.0]


def test_dtmf_frequencies_of_every_key() -> None:
    assert tones.dtmf_frequencies("1") == (697.0, 1209.0)
    assert tones.dtmf_frequencies("5") == (770.0, 1336.0)
    assert tones.dtmf_frequencies("9") == (852.0, 1477.0)
    assert tones.dtmf_frequencies("*") == (941.0, 1209.0)
    assert tones.dtmf_frequencies("0") == (941.0, 1336.0)
    assert tones.dtmf_frequencies("#") == (941.0, 1477.0)
    assert tones.dtmf_frequencies("d") == (941.0, 1633.0)
    assert tones.dtmf_frequencies("A") == (697.0, 1633.0)
    for bad in ("E", "", "12", " "):
        with pytest.raises(ValueError, match="not a DTMF key"):
            tones.dtmf_frequencies(bad)


def test_dtmf_tone_twist_offsets_and_duration() -> None:
    press = tones.dtmf_tone("8", 1000, level_dbm0=-6.0, twist_db=4.0, high_offset=0.015)
    assert press.size == 8000
    low = tones.multi_tone([(852.0, -6.0)], 8000)
    assert tones.level_dbm0(press) == pytest.approx(
        10 * math.log10(10 ** (-0.6) + 10 ** (-1.0)), abs=0.05
    )
    assert spectrum_peaks(press, 2) == [852.0, round(1336 * 1.015)]
    assert tones.level_dbm0(low) == pytest.approx(-6.0, abs=0.05)
    assert tones.dtmf_tone("1", 40).size == 320
    assert tones.dtmf_tone("1", 23).size == 184


def test_dtmf_sequence_layout() -> None:
    sequence = tones.dtmf_sequence("12", on_ms=50, off_ms=30)
    assert sequence.size == 2 * (400 + 240)
    assert np.all(sequence[400:640] == 0) and np.all(sequence[1040:] == 0)
    assert np.any(sequence[:400] != 0) and np.any(sequence[640:1040] != 0)
    assert tones.dtmf_sequence("").size == 0


def test_consecutive_blocks_join_without_a_phase_jump() -> None:
    whole = tones.multi_tone([(440.0, -10.0), (480.0, -10.0)], 800)
    parts = [
        tones.multi_tone([(440.0, -10.0), (480.0, -10.0)], 160, start)
        for start in range(0, 800, 160)
    ]
    assert np.array_equal(np.concatenate(parts), whole)


def test_beep_has_smooth_edges() -> None:
    beep = tones.beep(duration_ms=100, freq_hz=1000, level_dbm0=-10, ramp_ms=5)
    assert beep.size == 800
    assert abs(int(beep[0])) < 200 and abs(int(beep[-1])) < 200
    assert tones.level_dbm0(beep[200:600]) == pytest.approx(-10.0, abs=0.1)
    assert tones.beep(duration_ms=1, ramp_ms=5).size == 8  # ramps shrink to fit


def test_cadences_render_their_pattern() -> None:
    assert US_RINGBACK.period_samples == 6 * 8000
    ring = US_RINGBACK.render(0, 6 * 8000)
    assert np.any(ring[:16000] != 0) and np.all(ring[16000:] == 0)
    assert spectrum_peaks(ring[:8000], 2) == [440.0, 480.0]
    assert tones.level_dbm0(ring[:16000]) == pytest.approx(-19 + 10 * math.log10(2), abs=0.1)
    double = AU_RINGBACK.render(0, AU_RINGBACK.period_samples)
    on = np.abs(double.astype(np.int32))
    # 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
    assert on[:3200].max() > 0 and on[3200:4800].max() == 0
    assert on[4800:8000].max() > 0 and on[8000:].max() == 0
    assert set(RINGBACKS) == {"us-ringback", "uk-ringback", "au-ringback", "eu-ringback"}


def test_cadence_render_many_matches_render_per_leg() -> None:
    starts = np.array([0, 15900, 47990, 123456])
    block = US_RINGBACK.render_many(starts, 160)
    assert block.shape == (4, 160) and block.dtype == np.int16
    for row, start in zip(block, starts, strict=True):
        assert np.array_equal(row, US_RINGBACK.render(int(start), 160))
    # The cadence repeats: a start one period later renders the same samples.
    later = US_RINGBACK.render(15900 + US_RINGBACK.period_samples, 160)
    assert np.array_equal(later, block[1])


def test_invalid_tones_are_refused() -> None:
    with pytest.raises(ValueError, match="tone frequency must be between 0 and 4000 Hz, got 4000"):
        tones.multi_tone([(4000.0, -10.0)], 10)
    with pytest.raises(ValueError, match="n_samples must not be negative, got -1"):
        tones.multi_tone([(400.0, -10.0)], -1)
    with pytest.raises(ValueError, match="duration must not be negative, got -5 ms"):
        tones.ms_to_samples(-5)
    with pytest.raises(ValueError, match="cadence 'x' needs on/off pairs in pattern_ms"):
        Cadence("x", ((400.0, -19.0),), (400,))
    with pytest.raises(ValueError, match="cadence 'x' has a non-positive duration"):
        Cadence("x", ((400.0, -19.0),), (400, 0))
    with pytest.raises(ValueError, match="cadence 'x' has no tone components"):
        Cadence("x", (), (400, 200))
    with pytest.raises(ValueError, match="cadence 'x' frequency must be between 0 and 4000 Hz"):
        Cadence("x", ((0.0, -19.0),), (400, 200))


def test_clipping_saturates_instead_of_wrapping() -> None:
    loud = tones.multi_tone([(500.0, 6.0), (700.0, 6.0)], 800)
    assert loud.max() == 32767 and loud.min() == -32768
