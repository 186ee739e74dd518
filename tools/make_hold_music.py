"""Generate hotline's hold music: `audio/hold_music.wav`, 24 s, 8 kHz mono, 16-bit.

The piece is made here from sines and envelopes — nothing sampled, so it is free of
anyone's rights — and written deterministically: running the script again gives the
same bytes. Eight chords of three seconds each (80 beats a minute, four beats a chord):
Cmaj7 Am7 Fmaj7 G(add9) | Em7 Am7 Dm7 G7sus4, and back to Cmaj7 when it loops. Over
the chords: a warm pad (two slightly detuned voices with a few harmonics, slow attack
and long release), a bass rich in harmonics (a telephone's band starts near 300 Hz, so
the bass is heard through its overtones), and a soft bell arpeggio in eighth notes.

The loop is seamless by construction: every note is added into a circular buffer of
the piece's length, so the tails ringing past the end come back in at the start, under
the first chord, exactly as they would when the file plays again. The level is set to
−21 dBm0 RMS (on hotline's dBm0 scale), comfortably below speech prompts.

Run: ``python tools/make_hold_music.py [--out audio/hold_music.wav]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hotline.media.tones import DBM0_RMS, SAMPLE_RATE  # noqa: E402

Float64Array = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]

DEFAULT_OUT = ROOT / "audio" / "hold_music.wav"
BEAT_SECONDS = 0.75  # 80 beats a minute
BEATS_PER_CHORD = 4
LEVEL_DBM0 = -21.0  # RMS of the whole piece
MAX_PEAK = 0.5 * 32767  # headroom: peaks stay 6 dB below full scale

# (bass, pad voices, arpeggio notes) as MIDI note numbers (60 = middle C, 261.6 Hz).
CHORDS: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...] = (
    (48, (64, 67, 71), (72, 76, 79, 83)),  # Cmaj7
    (45, (64, 67, 72), (69, 72, 76, 79)),  # Am7
    (41, (65, 69, 72), (72, 76, 77, 81)),  # Fmaj7
    (43, (67, 71, 74), (74, 79, 81, 83)),  # G(add9)
    (40, (64, 67, 71), (71, 74, 76, 79)),  # Em7
    (45, (64, 67, 72), (72, 76, 79, 81)),  # Am7
    (38, (65, 69, 72), (74, 77, 81, 84)),  # Dm7
    (43, (65, 67, 72), (74, 77, 79, 84)),  # G7sus4
)
# Which arpeggio note sounds on each eighth of a chord (None: a rest).
ARPEGGIO_FIRST_HALF = (0, 1, 2, 3, 2, 1, 0, 1)
ARPEGGIO_SECOND_HALF = (0, 2, 1, 3, 1, 2, 0, None)


def midi_hz(note: int) -> float:
    """Equal-tempered frequency of a MIDI note (A4 = 69 = 440 Hz)."""
    return float(440.0 * 2.0 ** ((note - 69) / 12.0))


def raised_cosine(n: int) -> Float64Array:
    """A smooth rise from 0 to 1 over `n` samples."""
    if n <= 0:
        return np.zeros(0)
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def partials(
    freq: float, n: int, harmonics: tuple[tuple[float, float], ...], detune: float = 0.0
) -> Float64Array:
    """`n` samples of a tone: (multiple of `freq`, amplitude) pairs, pitch × (1 + detune)."""
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for multiple, amplitude in harmonics:
        f = freq * multiple * (1.0 + detune)
        if f < SAMPLE_RATE / 2:
            out += amplitude * np.sin(2.0 * np.pi * f * t)
    return out


def pad_note(freq: float, hold: int, release: int) -> Float64Array:
    """A pad voice: two voices detuned by ±0.15 %, slow attack, long raised-cosine release."""
    n = hold + release
    timbre = ((1.0, 1.0), (2.0, 0.3), (3.0, 0.12))
    tone = 0.5 * (partials(freq, n, timbre, 0.0015) + partials(freq, n, timbre, -0.0015))
    envelope = np.ones(n)
    attack = round(0.6 * SAMPLE_RATE)
    envelope[:attack] = raised_cosine(attack)
    envelope[hold:] = raised_cosine(release)[::-1]
    return tone * envelope


def bass_note(freq: float, hold: int, release: int) -> Float64Array:
    """A round bass with strong overtones, soft attack, gentle decay, long release."""
    n = hold + release
    tone = partials(freq, n, ((1.0, 0.5), (2.0, 0.7), (3.0, 0.5), (4.0, 0.3), (5.0, 0.15)))
    envelope = np.exp(-np.arange(n) / (2.5 * SAMPLE_RATE))
    attack = round(0.08 * SAMPLE_RATE)
    envelope[:attack] *= raised_cosine(attack)
    envelope[hold:] *= raised_cosine(release)[::-1]
    return tone * envelope


def bell_note(freq: float) -> Float64Array:
    """A soft bell: a quick attack and an exponential decay, upper partials dying first."""
    n = round(2.0 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.sin(2.0 * np.pi * freq * t) * np.exp(-t / 0.7)
    out += 0.2 * np.sin(2.0 * np.pi * 2.0 * freq * t) * np.exp(-t / 0.3)
    out += 0.06 * np.sin(2.0 * np.pi * 3.01 * freq * t) * np.exp(-t / 0.15)
    attack = round(0.012 * SAMPLE_RATE)
    out[:attack] *= raised_cosine(attack)
    fade = round(0.2 * SAMPLE_RATE)
    out[n - fade :] *= raised_cosine(fade)[::-1]
    return out


def add_circular(buffer: Float64Array, at: int, note: Float64Array) -> None:
    """Add `note` into `buffer` from `at`, wrapping past the end to the start."""
    size = buffer.size
    index = (at + np.arange(note.size)) % size
    np.add.at(buffer, index, note)


def render() -> Int16Array:
    """The whole piece as 8 kHz int16 samples, ready to loop."""
    chord_samples = round(BEAT_SECONDS * BEATS_PER_CHORD * SAMPLE_RATE)
    eighth = round(BEAT_SECONDS / 2 * SAMPLE_RATE)
    release = round(1.2 * SAMPLE_RATE)
    piece = np.zeros(chord_samples * len(CHORDS))
    for index, (bass, pad, arpeggio) in enumerate(CHORDS):
        start = index * chord_samples
        add_circular(piece, start, 0.22 * bass_note(midi_hz(bass), chord_samples, release))
        for note in pad:
            add_circular(piece, start, 0.16 * pad_note(midi_hz(note), chord_samples, release))
        pattern = ARPEGGIO_FIRST_HALF if index < len(CHORDS) // 2 else ARPEGGIO_SECOND_HALF
        for step, which in enumerate(pattern):
            if which is None:
                continue
            accent = 1.0 if step % 2 == 0 else 0.75  # on the beat a little louder
            add_circular(
                piece, start + step * eighth, 0.14 * accent * bell_note(midi_hz(arpeggio[which]))
            )
    rms = float(np.sqrt(np.mean(piece * piece)))
    gain = DBM0_RMS * 10.0 ** (LEVEL_DBM0 / 20.0) / rms
    peak = float(np.max(np.abs(piece))) * gain
    if peak > MAX_PEAK:
        gain *= MAX_PEAK / peak
    samples: Int16Array = np.rint(piece * gain).astype(np.int16)
    return samples


def wav_bytes(samples: Int16Array) -> bytes:
    """A 16-bit mono WAV file at 8 kHz."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the WAV")
    args = parser.parse_args(argv)
    samples = render()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(wav_bytes(samples))
    print(f"{out}: {samples.size / SAMPLE_RATE:.1f} s, 8 kHz mono, 16-bit")


if __name__ == "__main__":
    main()
