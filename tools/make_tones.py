"""Generate the tone recordings under audio/tones/ (development tool; the WAVs are committed).

beep.wav: 200 ms of 1 kHz at -10 dBm0 with 5 ms fades, 8 kHz 16-bit mono — the "ready"
beep flows can play, and the prompt the integration tests' `listen` flow plays.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from hotline.media.tones import DBM0_PEAK, SAMPLE_RATE

OUT = Path(__file__).resolve().parents[1] / "audio" / "tones"


def beep(seconds: float = 0.2, hz: float = 1000.0, level_dbm0: float = -10.0) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    amplitude = DBM0_PEAK * 10 ** (level_dbm0 / 20)
    signal = amplitude * np.sin(2 * np.pi * hz * t)
    fade = int(0.005 * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade)
    signal[:fade] *= ramp
    signal[-fade:] *= ramp[::-1]
    return np.round(signal).astype(np.int16)


def write(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())


if __name__ == "__main__":
    write(OUT / "beep.wav", beep())
    print(f"wrote {OUT / 'beep.wav'}")
