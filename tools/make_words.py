"""Generate the say-as word recordings (audio/words/<lang>/<word>.wav) with espeak-ng.

A development tool, not part of the engine: it runs ``espeak-ng`` once per word that
`hotline.media.sayas.words_needed` lists for the chosen languages and writes each as an
8 kHz mono 16-bit PCM WAV that `hotline.media.prompts.load_wav` plays without conversion.
It knows the espeak voices and the audio processing; the vocabulary and the word
rules belong to `hotline.media.sayas`.

Each word is synthesised, converted to 8 kHz mono by `load_wav`, trimmed to its speech
(10 ms margins, 5 ms raised-cosine fades), and scaled so that its active-speech level
(the RMS over the 10 ms frames within 30 dB of its loudest frame) is ``--level`` dBFS,
unless that would push a peak above −1 dBFS, where the gain stops at the peak limit.
The pause word is 250 ms of digital silence. WAVs under audio/words/<lang>/ that no
longer belong to the vocabulary are removed.

Voices: espeak-ng 1.51 has no Australian English voice, so English uses "en-gb" (the
closest: non-rhotic, "zed"). Mandarin uses "cmn-latn-pinyin" fed with the tone-numbered
pinyin of each word name: the plain "cmn" voice of espeak-ng 1.51 reads many characters
(零, 一, 星期…) as English spellings of their pinyin. Letters are English recordings in
both languages (``words/en/letter_a``).

Usage: ``.venv/bin/python tools/make_words.py [--languages en zh] [--audio-dir audio]``
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hotline.engine.tts import espeak_synthesise
from hotline.media.prompts import SAMPLE_RATE, PromptError, SynthesisError, load_wav
from hotline.media.sayas import LANGUAGES, PAUSE, word_text, words_needed

Float = npt.NDArray[np.float64]

REPO = Path(__file__).resolve().parent.parent
VOICES = {"en": "en-gb", "zh": "cmn-latn-pinyin"}
RATES_WPM = {"en": 160, "zh": 150}
DEFAULT_LEVEL_DBFS = -18.0  # active-speech RMS of every word
PEAK_LIMIT_DBFS = -1.0
FRAME = SAMPLE_RATE // 100  # 10 ms
TRIM_BELOW_PEAK_DB = 50.0  # frames this far below the loudest frame are silence
ACTIVE_BELOW_PEAK_DB = 30.0  # frames within this of the loudest frame are active speech
MARGIN = SAMPLE_RATE // 100  # 10 ms kept before and after the speech
FADE = SAMPLE_RATE // 200  # 5 ms fade in and out
PAUSE_SAMPLES = SAMPLE_RATE // 4  # 250 ms

_PINYIN_SYLLABLE = re.compile(r"[a-z]+[1-5]")


class MakeWordsError(Exception):
    """A word could not be made: the message names the word and the fault."""


@dataclass(frozen=True, slots=True)
class Made:
    """What was written for one word."""

    name: str
    samples: int
    level_dbfs: float  # active-speech RMS after scaling (−inf for the pause)
    peak_limited: bool


def synthesis_text(name: str) -> tuple[str, str]:
    """(voice, text) to synthesise the word ``name`` (``words/<lang>/<word>``)."""
    _, language, stem = name.split("/")
    if language == "zh":
        syllables = _PINYIN_SYLLABLE.findall(stem)
        if "".join(syllables) != stem:
            raise MakeWordsError(f"{name}: {stem!r} is not tone-numbered pinyin")
        return VOICES["zh"], " ".join(syllables)
    return VOICES["en"], word_text(name)


def _frame_rms(signal: Float) -> Float:
    frames = len(signal) // FRAME
    blocks = signal[: frames * FRAME].reshape(frames, FRAME)
    rms: Float = np.sqrt(np.mean(blocks * blocks, axis=1))
    return rms


def shape(name: str, samples: Float, level_dbfs: float) -> tuple[Float, float, bool]:
    """Trim, fade and scale one word: (signal in [−1, 1], active level dBFS, peak-limited)."""
    rms = _frame_rms(samples)
    if len(rms) == 0 or rms.max() <= 0.0:
        raise MakeWordsError(f"{name}: the synthesiser produced silence")
    loud = np.flatnonzero(rms >= rms.max() * 10.0 ** (-TRIM_BELOW_PEAK_DB / 20.0))
    start = max(0, int(loud[0]) * FRAME - MARGIN)
    end = min(len(samples), (int(loud[-1]) + 1) * FRAME + MARGIN)
    word = samples[start:end].copy()
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(FADE) / FADE)
    word[:FADE] *= ramp
    word[-FADE:] *= ramp[::-1]
    trimmed_rms = _frame_rms(word)
    active = trimmed_rms[trimmed_rms >= trimmed_rms.max() * 10.0 ** (-ACTIVE_BELOW_PEAK_DB / 20.0)]
    active_rms = float(np.sqrt(np.mean(active * active)))
    gain = 10.0 ** (level_dbfs / 20.0) / active_rms
    peak_gain = 10.0 ** (PEAK_LIMIT_DBFS / 20.0) / float(np.max(np.abs(word)))
    limited = peak_gain < gain
    gain = min(gain, peak_gain)
    return word * gain, 20.0 * math.log10(active_rms * gain), limited


def write_wav(path: Path, signal: Float) -> None:
    """Write 8 kHz mono 16-bit PCM atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.rint(signal * 32768.0), -32768, 32767).astype("<i2")
    part = path.with_name(path.name + ".part")
    with wave.open(str(part), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm.tobytes())
    part.replace(path)


def make_word(name: str, audio_dir: Path, work_dir: Path, level_dbfs: float) -> Made:
    """Synthesise, shape and write one word; the pause word is written as silence."""
    target = audio_dir / f"{name}.wav"
    if name.rsplit("/", 1)[1] == PAUSE:
        write_wav(target, np.zeros(PAUSE_SAMPLES))
        return Made(name, PAUSE_SAMPLES, -math.inf, peak_limited=False)
    voice, text = synthesis_text(name)
    raw = work_dir / (name.replace("/", "_") + ".wav")
    language = name.split("/")[1]
    try:
        espeak_synthesise(text, voice, RATES_WPM[language], raw)
        samples = load_wav(raw).astype(np.float64) / 32768.0
    except (SynthesisError, PromptError) as exc:
        raise MakeWordsError(f"{name}: {exc}") from exc
    signal, level, limited = shape(name, samples, level_dbfs)
    write_wav(target, signal)
    return Made(name, len(signal), level, limited)


def prune(audio_dir: Path, languages: Sequence[str], keep: set[str]) -> list[Path]:
    """Remove WAVs under audio/words/<lang>/ that are not in ``keep``; returns them."""
    removed: list[Path] = []
    for language in languages:
        folder = audio_dir / "words" / language
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.wav")):
            if f"words/{language}/{path.stem}" not in keep:
                path.unlink()
                removed.append(path)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate the say-as word recordings with espeak-ng."
    )
    parser.add_argument("--languages", nargs="+", choices=LANGUAGES, default=list(LANGUAGES))
    parser.add_argument("--audio-dir", type=Path, default=REPO / "audio")
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL_DBFS, help="dBFS")
    args = parser.parse_args(argv)
    if not -40.0 <= args.level <= -6.0:
        parser.error(f"--level must be between -40 and -6 dBFS, got {args.level}")
    names: set[str] = set()
    for language in args.languages:
        names |= words_needed(language)
    made: list[Made] = []
    with tempfile.TemporaryDirectory(prefix="make_words.") as work:
        for name in sorted(names):
            try:
                made.append(make_word(name, args.audio_dir, Path(work), args.level))
            except MakeWordsError as exc:
                print(f"make_words: {exc}", file=sys.stderr)
                return 1
    folders = sorted({name.split("/")[1] for name in names})
    for path in prune(args.audio_dir, args.languages, names):
        print(f"removed {path} (no longer a say-as word)")
    for folder in folders:
        files = [args.audio_dir / f"{m.name}.wav" for m in made if m.name.split("/")[1] == folder]
        size = sum(path.stat().st_size for path in files)
        seconds = sum(m.samples for m in made if m.name.split("/")[1] == folder) / SAMPLE_RATE
        print(f"words/{folder}: {len(files)} words, {seconds:.1f} s, {size / 1024:.0f} KiB")
    limited = [m.name for m in made if m.peak_limited]
    if limited:
        levels = ", ".join(f"{m.name} {m.level_dbfs:.1f}" for m in made if m.peak_limited)
        print(f"peak-limited below {args.level:g} dBFS: {levels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
