"""Micro-benchmark: cost of one 20 ms media tick of in-band DTMF detection and G.711.

Times `DtmfDetectorBank.process` for 100, 500 and 1000 legs, single-threaded
(OPENBLAS_NUM_THREADS=1 is set before numpy loads), on four kinds of audio: digital
silence, speech-like audio at −18 dBm0, white noise at −20 dBm0, and the worst case,
every leg pressing keys all the time. Beside it, as the baseline measured in the same
run: G.711 µ-law decode and encode of the same block (two table look-ups), which every
tick pays anyway.

Run: ``python bench/media_dtmf_micro.py [--ticks N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.media import g711
from hotline.media.dtmf import DtmfDetectorBank
from hotline.media.tones import KEYPAD, dtmf_sequence
from tests.unit.media.signals import speech_like, through_ulaw, to_int16, white_noise

TICK = 160
LEG_COUNTS = (100, 500, 1000)


def make_audio(kind: str, legs: int, ticks: int, rng: np.random.Generator) -> np.ndarray:
    n = ticks * TICK
    if kind == "silence":
        return np.zeros((legs, n), dtype=np.int16)
    if kind == "noise":
        return through_ulaw(to_int16(white_noise(rng, legs * n, -20.0))).reshape(legs, n)
    if kind == "speech":
        voice = through_ulaw(to_int16(speech_like(rng, n / 8000 + 2.0)))
        starts = rng.integers(0, voice.size - n, size=legs)
        return np.stack([voice[s : s + n] for s in starts])
    if kind == "keys":
        keys = through_ulaw(dtmf_sequence(KEYPAD * 4, on_ms=60, off_ms=40))
        reps = -(-n // keys.size) + 1
        looped = np.tile(keys, reps)
        starts = rng.integers(0, keys.size, size=legs)
        return np.stack([looped[s : s + n] for s in starts])
    raise ValueError(kind)


def time_ticks(audio: np.ndarray, ticks: int) -> tuple[float, int]:
    legs = audio.shape[0]
    bank = DtmfDetectorBank(legs)
    slots = np.array([bank.add_leg() for _ in range(legs)])
    warm = 5
    events = 0
    for t in range(warm):
        bank.process(audio[:, t * TICK : (t + 1) * TICK], slots, t)
    start = time.perf_counter()
    for t in range(warm, ticks):
        events += len(bank.process(audio[:, t * TICK : (t + 1) * TICK], slots, t))
    return (time.perf_counter() - start) / (ticks - warm), events


def time_g711(audio: np.ndarray, ticks: int) -> float:
    codes = g711.ulaw_encode(audio)
    start = time.perf_counter()
    for t in range(ticks):
        block = g711.ulaw_decode(codes[:, t * TICK : (t + 1) * TICK])
        g711.ulaw_encode(block)
    return (time.perf_counter() - start) / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=150, help="ticks timed per case")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(
        f"{'legs':>5} {'audio':>8} {'dtmf µs/tick':>13} {'µs/leg':>7} {'events':>7}"
        f" {'g711 dec+enc µs/tick':>21} {'ratio':>6}"
    )
    for legs in LEG_COUNTS:
        for kind in ("silence", "speech", "noise", "keys"):
            audio = make_audio(kind, legs, args.ticks, rng)
            per_tick, events = time_ticks(audio, args.ticks)
            baseline = time_g711(audio, args.ticks)
            print(
                f"{legs:>5} {kind:>8} {per_tick * 1e6:>13.0f} {per_tick * 1e6 / legs:>7.2f}"
                f" {events:>7} {baseline * 1e6:>21.0f} {per_tick / baseline:>6.1f}"
            )


if __name__ == "__main__":
    main()
