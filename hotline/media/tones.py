"""Tone generation at 8 kHz as int16 arrays: DTMF, dual tones, ringback cadences, beeps.

Owns the level scale every media module shares — dBm0 on the int16 sample scale — and
pure functions that render tones from it. Nothing here keeps state: a tone is a function
of the absolute sample index, so a renderer called tick by tick with a moving
``start_sample`` gives a phase-continuous signal, and `Cadence.render_many` renders one
block for many legs, each at its own position in the cadence.

The dBm0 scale (ITU-T G.711 §2 and Tables 2a/2b): a sine whose peaks just reach the
µ-law overload point (8159 on the 14-bit scale, i.e. 32636 on the 16-bit scale) is at
+3.17 dBm0, so a 0 dBm0 sine has a peak of 32636 · 10^(−3.17/20) ≈ 22657 and an RMS of
≈ 16021. (A-law's overload, 4096 on its 13-bit scale, is +3.14 dBm0, which puts 0 dBm0
0.07 dB higher; the µ-law figure serves both.) A level in dBm0 always names the power of
one sine; a dual tone at −10 dBm0 per tone carries −7 dBm0 in total.

This module must not know about legs, RTP, codecs or time beyond sample indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000  # Hz, G.711
MULAW_OVERLOAD = 32636.0  # 8159 × 4: the µ-law overload point on the int16 scale
MULAW_OVERLOAD_DBM0 = 3.17  # dBm0 of a sine whose peak is the µ-law overload point
DBM0_PEAK = MULAW_OVERLOAD * 10.0 ** (-MULAW_OVERLOAD_DBM0 / 20.0)  # ≈ 22657
DBM0_RMS = DBM0_PEAK / math.sqrt(2.0)  # ≈ 16021

ROW_HZ = (697.0, 770.0, 852.0, 941.0)  # DTMF low group
COL_HZ = (1209.0, 1336.0, 1477.0, 1633.0)  # DTMF high group
KEYPAD = "123A456B789C*0#D"  # key at row r, column c is KEYPAD[4 * r + c]

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]


def dbm0_to_peak(level_dbm0: float) -> float:
    """Peak amplitude (int16 scale) of a sine at `level_dbm0`."""
    return float(DBM0_PEAK * 10.0 ** (level_dbm0 / 20.0))


def rms_to_dbm0(rms: float) -> float:
    """Level in dBm0 of a signal with this RMS (int16 scale); −inf for silence."""
    if rms <= 0.0:
        return -math.inf
    return 20.0 * math.log10(rms / DBM0_RMS)


def level_dbm0(samples: npt.NDArray[np.generic]) -> float:
    """Measured level in dBm0 of a block of samples (its RMS against a 0 dBm0 sine)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return -math.inf
    return rms_to_dbm0(float(np.sqrt(np.mean(values * values))))


def ms_to_samples(duration_ms: float) -> int:
    """Whole samples in `duration_ms` at 8 kHz (rounded to nearest)."""
    if duration_ms < 0:
        raise ValueError(f"duration must not be negative, got {duration_ms} ms")
    return round(duration_ms * SAMPLE_RATE / 1000.0)


def to_int16(signal: Float64Array) -> Int16Array:
    """Round and clip a float signal on the int16 scale to int16."""
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def _sines(
    components: Sequence[tuple[float, float]], sample_index: npt.NDArray[np.int64]
) -> Float64Array:
    """Sum of sines (frequency Hz, level dBm0) at the given absolute sample indices."""
    out = np.zeros(sample_index.shape, dtype=np.float64)
    for freq, level in components:
        if not 0.0 < freq < SAMPLE_RATE / 2:
            raise ValueError(f"tone frequency must be between 0 and 4000 Hz, got {freq}")
        cycles = np.mod(sample_index * (freq / SAMPLE_RATE), 1.0)
        out += dbm0_to_peak(level) * np.sin(2.0 * np.pi * cycles)
    return out


def multi_tone(
    components: Sequence[tuple[float, float]], n_samples: int, start_sample: int = 0
) -> Int16Array:
    """A sum of sines, each given as (frequency Hz, level dBm0), `n_samples` long.

    Phase is taken from the absolute sample index, so consecutive calls with
    ``start_sample`` advancing by ``n_samples`` join without a click.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must not be negative, got {n_samples}")
    index = np.arange(start_sample, start_sample + n_samples, dtype=np.int64)
    return to_int16(_sines(components, index))


def dual_tone(
    low_hz: float,
    high_hz: float,
    n_samples: int,
    low_dbm0: float = -7.0,
    high_dbm0: float = -5.0,
    start_sample: int = 0,
) -> Int16Array:
    """Two sines at their own levels (dBm0 per tone)."""
    return multi_tone([(low_hz, low_dbm0), (high_hz, high_dbm0)], n_samples, start_sample)


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """The (low, high) frequencies of a DTMF key: 0-9, *, #, A-D."""
    index = KEYPAD.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF key: {digit!r} (expected one of 0-9 * # A-D)")
    return ROW_HZ[index // 4], COL_HZ[index % 4]


def dtmf_tone(
    digit: str,
    duration_ms: float,
    level_dbm0: float = -6.0,
    twist_db: float = 2.0,
    low_offset: float = 0.0,
    high_offset: float = 0.0,
    start_sample: int = 0,
) -> Int16Array:
    """One DTMF key press.

    `level_dbm0` is the level of the low-group tone; the high-group tone sits
    `twist_db` below it (positive: "normal" twist, the high tone weaker; negative:
    "reverse" twist). The defaults (−6 and −8 dBm0) suit in-band sending. The offsets
    are relative frequency errors (0.015 = +1.5 %) for testing detectors.
    """
    low, high = dtmf_frequencies(digit)
    return dual_tone(
        low * (1.0 + low_offset),
        high * (1.0 + high_offset),
        ms_to_samples(duration_ms),
        level_dbm0,
        level_dbm0 - twist_db,
        start_sample,
    )


def dtmf_sequence(
    digits: str,
    on_ms: float = 100.0,
    off_ms: float = 100.0,
    level_dbm0: float = -6.0,
    twist_db: float = 2.0,
) -> Int16Array:
    """Key presses separated by silence: each `on_ms` long, followed by `off_ms` of silence."""
    pause = silence(ms_to_samples(off_ms))
    parts: list[Int16Array] = []
    for digit in digits:
        parts.append(dtmf_tone(digit, on_ms, level_dbm0, twist_db))
        parts.append(pause)
    return np.concatenate(parts) if parts else silence(0)


def silence(n_samples: int) -> Int16Array:
    """`n_samples` zero samples."""
    if n_samples < 0:
        raise ValueError(f"n_samples must not be negative, got {n_samples}")
    return np.zeros(n_samples, dtype=np.int16)


def beep(
    duration_ms: float = 250.0,
    freq_hz: float = 1000.0,
    level_dbm0: float = -10.0,
    ramp_ms: float = 5.0,
) -> Int16Array:
    """A single tone with raised-cosine ramps at both ends (no click at start or end)."""
    n = ms_to_samples(duration_ms)
    ramp = min(ms_to_samples(ramp_ms), n // 2)
    signal = _sines([(freq_hz, level_dbm0)], np.arange(n, dtype=np.int64))
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        signal[:ramp] *= rise
        signal[n - ramp :] *= rise[::-1]
    return to_int16(signal)


@dataclass(frozen=True, slots=True)
class Cadence:
    """A repeating tone pattern: components sound during the "on" parts of `pattern_ms`.

    `pattern_ms` alternates on and off durations, starting with on: ``(400, 200, 400,
    2000)`` is the double ring of the UK and Australia. `components` are (frequency Hz,
    level dBm0) pairs.
    """

    name: str
    components: tuple[tuple[float, float], ...]
    pattern_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError(f"cadence {self.name!r} has no tone components")
        if not self.pattern_ms or len(self.pattern_ms) % 2:
            raise ValueError(
                f"cadence {self.name!r} needs on/off pairs in pattern_ms, got {self.pattern_ms}"
            )
        if any(part <= 0 for part in self.pattern_ms):
            raise ValueError(
                f"cadence {self.name!r} has a non-positive duration in {self.pattern_ms}"
            )
        for freq, _level in self.components:
            if not 0.0 < freq < SAMPLE_RATE / 2:
                raise ValueError(
                    f"cadence {self.name!r} frequency must be between 0 and 4000 Hz, got {freq}"
                )

    @property
    def period_samples(self) -> int:
        """Length of one full on/off cycle."""
        return sum(ms_to_samples(part) for part in self.pattern_ms)

    def _gate(self, sample_index: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        edges = np.cumsum([ms_to_samples(part) for part in self.pattern_ms])
        position = np.mod(sample_index, edges[-1])
        segment = np.searchsorted(edges, position, side="right")
        return np.asarray(segment % 2 == 0)

    def render(self, start_sample: int, n_samples: int) -> Int16Array:
        """Samples `start_sample` … `start_sample + n_samples − 1` of the cadence."""
        index = np.arange(start_sample, start_sample + n_samples, dtype=np.int64)
        return to_int16(np.where(self._gate(index), _sines(self.components, index), 0.0))

    def render_many(self, start_samples: npt.ArrayLike, n_samples: int) -> Int16Array:
        """One block per leg, (legs × n_samples), each leg at its own cadence position."""
        starts = np.asarray(start_samples, dtype=np.int64).reshape(-1, 1)
        index = starts + np.arange(n_samples, dtype=np.int64)
        return to_int16(np.where(self._gate(index), _sines(self.components, index), 0.0))


US_RINGBACK = Cadence("us-ringback", ((440.0, -19.0), (480.0, -19.0)), (2000, 4000))
"""North American ringback (ANSI T1.401 precise tone plan): 440+480 Hz, 2 s on, 4 s off."""
UK_RINGBACK = Cadence("uk-ringback", ((400.0, -19.0), (450.0, -19.0)), (400, 200, 400, 2000))
"""UK double ring: 400+450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off."""
AU_RINGBACK = Cadence("au-ringback", ((400.0, -19.0), (450.0, -19.0)), (400, 200, 400, 2000))
"""Australian ringback: 400+450 Hz with the same double-ring cadence as the UK."""
EU_RINGBACK = Cadence("eu-ringback", ((425.0, -19.0),), (1000, 4000))
"""CEPT/ETSI ringback used across most of Europe: 425 Hz, 1 s on, 4 s off."""
RINGBACKS = {c.name: c for c in (US_RINGBACK, UK_RINGBACK, AU_RINGBACK, EU_RINGBACK)}
