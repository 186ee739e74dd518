"""Test tones and their measurement: generate a sine at a frequency and level, and measure
what a test peer recorded (levels, Goertzel tone detection, the dominant frequency).

Owns the 16-bit mono PCM arrays and WAV files the peer harnesses inject and record. It
knows nothing about SIP, RTP or the peers themselves, and it never imports `hotline`: the
measurements must stay independent of the engine they judge.

Levels are in dBFS with a full-scale sine at 0 dBFS (AES17): a sine of amplitude 32768
measures 0.0, one of amplitude 3277 about -20.0, whichever of `rms_dbfs` or `tone_level`
measures it.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

RATE = 8000  # samples per second: narrow-band telephony
BLOCK_SECONDS = 0.020  # analysis block: one 20 ms RTP frame
FULL_SCALE = 32768.0  # amplitude of a 0 dBFS sine
SILENT_DB = -200.0  # level reported for digital silence (log of zero)

Samples = NDArray[np.int16]


def _db(amplitude: float) -> float:
    if amplitude <= 0.0:
        return SILENT_DB
    return max(SILENT_DB, 20.0 * math.log10(amplitude / FULL_SCALE))


def tone(freq: float, seconds: float, level_db: float = -20.0, rate: int = RATE) -> Samples:
    """A sine at `freq` Hz lasting `seconds`, `level_db` dBFS (0 = full-scale sine)."""
    if not 0.0 < freq < rate / 2:
        raise ValueError(f"tone frequency must be between 0 and {rate / 2:g} Hz, got {freq:g}")
    if seconds < 0.0:
        raise ValueError(f"tone duration must be >= 0 seconds, got {seconds:g}")
    if level_db > 0.0:
        raise ValueError(f"tone level must be <= 0 dBFS, got {level_db:g}")
    n = round(seconds * rate)
    amplitude = FULL_SCALE * 10.0 ** (level_db / 20.0)
    wave_: NDArray[np.float64] = amplitude * np.sin(2.0 * np.pi * freq * np.arange(n) / rate)
    out: Samples = np.clip(np.rint(wave_), -32768, 32767).astype(np.int16)
    return out


def silence(seconds: float, rate: int = RATE) -> Samples:
    """Digital silence lasting `seconds`."""
    if seconds < 0.0:
        raise ValueError(f"silence duration must be >= 0 seconds, got {seconds:g}")
    return np.zeros(round(seconds * rate), dtype=np.int16)


# The DTMF keypad (ITU-T Q.23): key -> (row Hz, column Hz).
DTMF_FREQUENCIES = {
    key: (row, col)
    for row, keys in zip(
        (697.0, 770.0, 852.0, 941.0), ("123A", "456B", "789C", "*0#D"), strict=True
    )
    for col, key in zip((1209.0, 1336.0, 1477.0, 1633.0), keys, strict=True)
}


def dtmf(
    keys: str,
    on_seconds: float = 0.1,
    off_seconds: float = 0.1,
    level_db: float = -13.0,
    rate: int = RATE,
) -> Samples:
    """In-band key presses: each key's two tones, each at `level_db` dBFS, for
    `on_seconds`, then `off_seconds` of silence."""
    if level_db > -6.03:
        raise ValueError(
            f"each DTMF tone must be <= -6.03 dBFS so the pair cannot clip, got {level_db:g}"
        )
    parts: list[Samples] = []
    for key in keys:
        if key not in DTMF_FREQUENCIES:
            raise ValueError(f"not a DTMF key: {key!r}")
        low, high = DTMF_FREQUENCIES[key]
        pair = tone(low, on_seconds, level_db, rate).astype(np.int32) + tone(
            high, on_seconds, level_db, rate
        )
        parts += [pair.astype(np.int16), silence(off_seconds, rate)]
    return np.concatenate(parts) if parts else silence(0.0, rate)


def rms_dbfs(samples: Samples) -> float:
    """The RMS level of `samples` in dBFS (a full-scale sine is 0 dBFS); -200 for silence."""
    if samples.size == 0:
        return SILENT_DB
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return _db(rms * math.sqrt(2.0))


def _blocks(samples: Samples, rate: int) -> NDArray[np.float64]:
    n = round(BLOCK_SECONDS * rate)
    count = samples.size // n
    return samples[: count * n].astype(np.float64).reshape(count, n)


def block_levels(samples: Samples, freq: float, rate: int = RATE) -> NDArray[np.float64]:
    """The level (dBFS) of the `freq` component in each whole 20 ms block of `samples`.

    A Goertzel filter runs over every block at once (the recursion steps through the
    block's samples, each step vectorised across blocks), on Hann-windowed samples so a
    strong tone elsewhere does not leak into `freq`; the window's coherent gain (0.5) is
    divided out, so a steady sine at `freq` reads its own level.
    """
    if not 0.0 < freq < rate / 2:
        raise ValueError(f"frequency must be between 0 and {rate / 2:g} Hz, got {freq:g}")
    blocks = _blocks(samples, rate)
    count, n = blocks.shape
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    windowed = blocks * np.hanning(n + 2)[1:-1]
    omega = 2.0 * np.pi * freq / rate
    coeff = 2.0 * math.cos(omega)
    s1 = np.zeros(count)
    s2 = np.zeros(count)
    for column in windowed.T:
        s1, s2 = column + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2  # |X(freq)|^2 of each block
    amplitude = 2.0 * np.sqrt(np.maximum(power, 0.0)) / (n * 0.5)
    with np.errstate(divide="ignore"):
        levels: NDArray[np.float64] = 20.0 * np.log10(amplitude / FULL_SCALE)
    floored: NDArray[np.float64] = np.maximum(levels, SILENT_DB)
    return floored


def tone_level(samples: Samples, freq: float, rate: int = RATE) -> float:
    """The level (dBFS) of `freq` in the 20 ms block where it is strongest; -200 if none."""
    levels = block_levels(samples, freq, rate)
    return float(levels.max()) if levels.size else SILENT_DB


def detect_tone(
    samples: Samples,
    freq: float,
    min_db: float,
    min_seconds: float,
    rate: int = RATE,
    min_share: float = 0.5,
) -> bool:
    """Whether `freq` sounds at `min_db` dBFS or louder for `min_seconds` without a break.

    A block counts when the tone reaches `min_db` and carries at least `min_share` of the
    block's power, so speech, noise or a chord that merely contains `freq` does not count
    (a pure tone carries about all of it; each of a dual tone's two, half).
    """
    if min_seconds <= 0.0:
        raise ValueError(f"min_seconds must be > 0, got {min_seconds:g}")
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share:g}")
    levels = block_levels(samples, freq, rate)
    if levels.size == 0:
        return False
    tone_power = (FULL_SCALE * 10.0 ** (levels / 20.0)) ** 2 / 2.0
    block_power = np.mean(np.square(_blocks(samples, rate)), axis=1)
    hit = (levels >= min_db) & (tone_power >= min_share * block_power)
    needed = max(1, math.ceil(min_seconds / BLOCK_SECONDS - 1e-9))
    run = 0
    for h in hit.tolist():
        run = run + 1 if h else 0
        if run >= needed:
            return True
    return False


def dominant_frequency(samples: Samples, rate: int = RATE) -> float:
    """The frequency (Hz) with the most energy in `samples` (Hann-windowed FFT with
    parabolic interpolation between bins, so it is finer than rate/len). The DC bin is
    ignored. Raises ValueError on silence or fewer than 3 samples."""
    if samples.size < 3:
        raise ValueError(f"need at least 3 samples to find a frequency, got {samples.size}")
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    if spectrum[k] == 0.0:
        raise ValueError("no frequency in silence")
    offset = 0.0
    if 0 < k < spectrum.size - 1:
        a, b, c = (math.log(max(float(v), 1e-12)) for v in spectrum[k - 1 : k + 2])
        denom = a - 2.0 * b + c
        if denom != 0.0:
            offset = 0.5 * (a - c) / denom
    return float((k + offset) * rate / x.size)


def write_wav(path: Path, samples: Samples, rate: int = RATE) -> None:
    """Write `samples` as a 16-bit mono PCM WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[Samples, int]:
    """The samples and rate of a 16-bit mono PCM WAV file, including one still being
    written: a RIFF or data size left at 0 or beyond the end of the file (the writer has
    not closed it yet) reads every whole sample present."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos = 12
    rate = 0
    while pos + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if chunk == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt not in (1, 0xFFFE) or channels != 1 or bits != 16:
                raise ValueError(
                    f"{path}: need 16-bit mono PCM, found format {fmt}, "
                    f"{channels} channel(s), {bits} bits"
                )
        elif chunk == b"data":
            if rate == 0:
                raise ValueError(f"{path}: data chunk before the fmt chunk")
            end = len(data) if size == 0 or body + size > len(data) else body + size
            end -= (end - body) % 2
            return np.frombuffer(data[body:end], dtype="<i2").astype(np.int16), rate
        pos = body + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")
