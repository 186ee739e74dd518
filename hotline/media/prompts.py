"""Prompts: WAV files read once, converted to 8 kHz mono int16 and cached pre-encoded per codec.

Owns three things:

* `load_wav`, which turns ANY WAV file into the 8 kHz mono int16 samples the media tick
  plays: 8/16/24/32-bit integer PCM, 32/64-bit IEEE float, G.711 A-law/µ-law, plain or
  WAVE_FORMAT_EXTENSIBLE, any number of channels (averaged to mono) and any sample rate
  (``scipy.signal.resample_poly`` with the up/down ratio reduced by their gcd). The
  stdlib `wave` module decodes plain integer PCM; a small RIFF chunk reader of this
  module validates every file's header and supplies the samples of the formats `wave`
  refuses. Each malformed or unsupported file raises `PromptError` naming the file and
  the fault (``audio/welcome.wav: no 'data' chunk``).
* `PromptCache`, which resolves prompt names under an audio directory, loads each file
  once, and keeps its samples and its whole G.711 payload per codec.
* Text prompts: `PromptCache.text` gives a prompt that has text but no recording a
  name whose audio is synthesised ONCE into the cache directory, under a file named by
  a hash of (text, voice, rate), so it survives restarts and is re-synthesised only
  when one of them changes.

This module reads files and writes the synthesised ones, but it never runs a
subprocess and never reads a clock: speech synthesis is the injected `Synthesiser`
callable. The engine passes in `hotline.engine.tts.espeak_synthesise`, the one I/O
helper behind this module, which runs ``espeak-ng``. Prompts are loaded at start-up
(or flow reload), never on the per-packet path. This module knows nothing of RTP,
legs, flows or time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from hotline.media.g711 import Codec, decode, encode, saturate_int16

SAMPLE_RATE = 8000  # Hz: what every prompt is converted to (G.711)

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

# The 14 bytes every KSDATAFORMAT_SUBTYPE_* GUID of a WAVE format tag ends with: the tag
# fills the first two bytes, then 00 00 00 00 10 00 80 00 00 AA 00 38 9B 71.
_SUBFORMAT_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")

_KNOWN_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MPEG Layer 3",
}

_TTS_HASH_VERSION = "hotline-tts-1"  # changes the cache file names if the hashing ever changes
TTS_PREFIX = "tts:"  # names `PromptCache.text` returns for synthesised prompts start with this


class PromptError(Exception):
    """A prompt cannot be loaded: the message names the file (and the prompt and flow) and the fault."""


class SynthesisError(Exception):
    """Raised by a `Synthesiser` that cannot produce speech (engine missing, bad voice, …)."""


class Synthesiser(Protocol):
    """Writes ``text`` spoken with ``voice`` at ``rate_wpm`` words per minute to a WAV at
    ``out_path``; raises `SynthesisError` (or `OSError`) when it cannot."""

    def __call__(self, text: str, voice: str, rate_wpm: int, out_path: Path) -> None: ...


Loader = Callable[[Path], Int16Array]


class _Encoding(Enum):
    """How the bytes of one sample are to be read."""

    PCM = "pcm"
    FLOAT = "float"
    ALAW = "alaw"
    MULAW = "mulaw"


@dataclass(frozen=True, slots=True)
class _WavLayout:
    """What the RIFF reader found: the sample format and where the samples are."""

    encoding: _Encoding
    format_tag: int  # as written in the 'fmt ' chunk (WAVE_FORMAT_EXTENSIBLE kept as such)
    channels: int
    rate: int
    bits: int  # container size of one sample in bits
    data: memoryview  # the 'data' chunk, cut to whole frames


def _fail(path: Path | str, reason: str) -> PromptError:
    return PromptError(f"{path}: {reason}")


def _read_layout(path: Path | str, raw: bytes) -> _WavLayout:
    """Walk the RIFF chunks of a WAVE file and validate its 'fmt ' chunk."""
    if len(raw) >= 4 and raw[:4] == b"RIFX":
        raise _fail(path, "big-endian RIFX files are not supported")
    if len(raw) >= 4 and raw[:4] == b"RF64":
        raise _fail(path, "RF64 files are not supported")
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise _fail(path, "not a RIFF/WAVE file")
    view = memoryview(raw)
    fmt: memoryview | None = None
    data: memoryview | None = None
    position = 12
    while position + 8 <= len(raw):
        chunk_id = bytes(raw[position : position + 4])
        (size,) = struct.unpack_from("<I", raw, position + 4)
        start = position + 8
        end = start + size
        if chunk_id == b"fmt " and fmt is None:
            if end > len(raw):
                raise _fail(path, f"'fmt ' chunk is truncated ({len(raw) - start} of {size} bytes)")
            fmt = view[start:end]
        elif chunk_id == b"data" and data is None:
            # Streaming writers leave the size at 0xFFFFFFFF or cut files short: keep what is there.
            data = view[start : min(end, len(raw))]
        position = end + (size & 1)  # chunks are padded to an even size
    if fmt is None:
        raise _fail(path, "no 'fmt ' chunk")
    if data is None:
        raise _fail(path, "no 'data' chunk")
    if len(fmt) < 16:
        raise _fail(path, f"'fmt ' chunk is {len(fmt)} bytes, at least 16 expected")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    format_tag = tag
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise _fail(
                path, f"WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {len(fmt)} bytes, 40 expected"
            )
        subformat = bytes(fmt[24:40])
        if subformat[2:] != _SUBFORMAT_GUID_TAIL:
            raise _fail(
                path, f"WAVE_FORMAT_EXTENSIBLE sub-format {subformat.hex()} is not supported"
            )
        (tag,) = struct.unpack_from("<H", subformat, 0)
    if tag == WAVE_FORMAT_PCM:
        encoding = _Encoding.PCM
        if bits not in (8, 16, 24, 32):
            raise _fail(path, f"{bits}-bit samples are not supported")
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        encoding = _Encoding.FLOAT
        if bits not in (32, 64):
            raise _fail(path, f"{bits}-bit float samples are not supported")
    elif tag in (WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW):
        encoding = _Encoding.ALAW if tag == WAVE_FORMAT_ALAW else _Encoding.MULAW
        if bits != 8:
            raise _fail(path, f"{bits}-bit G.711 samples are not supported")
    else:
        name = _KNOWN_FORMAT_NAMES.get(tag)
        label = f"format 0x{tag:04X}" + (f" ({name})" if name else "")
        raise _fail(path, f"{label} is not supported")
    if channels == 0:
        raise _fail(path, "0 channels")
    if rate == 0:
        raise _fail(path, "sample rate of 0 Hz")
    if block_align != channels * bits // 8:
        raise _fail(
            path,
            f"block align {block_align} does not match {channels} channel(s) of {bits}-bit samples",
        )
    whole = len(data) - len(data) % block_align
    return _WavLayout(encoding, format_tag, channels, rate, bits, data[:whole])


def _samples_with_wave(raw: bytes, layout: _WavLayout) -> bytes:
    """The sample bytes of a plain PCM file, read by the stdlib `wave` module.

    `wave` refuses some files the RIFF reader accepts (a 'data' chunk before the 'fmt '
    chunk, for one); for those, and should it ever read the format differently, the
    'data' chunk found by the RIFF reader is used.
    """
    try:
        with wave.open(io.BytesIO(raw), "rb") as reader:
            found = (reader.getnchannels(), reader.getframerate(), reader.getsampwidth() * 8)
            if found != (layout.channels, layout.rate, layout.bits):
                return bytes(layout.data)
            samples = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError):
        return bytes(layout.data)
    frame_size = layout.channels * layout.bits // 8
    return samples[: len(samples) - len(samples) % frame_size]  # a cut-off file ends mid-frame


def _to_float(path: Path | str, samples: bytes | memoryview, layout: _WavLayout) -> Float64Array:
    """Sample bytes → float64 in [−1, 1] shaped (frames, channels)."""
    if layout.encoding is _Encoding.FLOAT:
        dtype = np.dtype("<f4") if layout.bits == 32 else np.dtype("<f8")
        values = np.frombuffer(samples, dtype=dtype).astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise _fail(path, "float samples include NaN or infinity")
        values = np.clip(values, -1.0, 1.0)
    elif layout.encoding is _Encoding.ALAW or layout.encoding is _Encoding.MULAW:
        codec = Codec.PCMA if layout.encoding is _Encoding.ALAW else Codec.PCMU
        codes = np.frombuffer(samples, dtype=np.uint8)
        values = decode(codec, codes).astype(np.float64) / 32768.0
    elif layout.bits == 8:  # 8-bit WAV is unsigned, centred on 128
        values = (np.frombuffer(samples, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif layout.bits == 16:
        values = np.frombuffer(samples, dtype="<i2").astype(np.float64) / 32768.0
    elif layout.bits == 24:
        triplets = np.frombuffer(samples, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        unsigned = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
        signed = (unsigned << 8) >> 8  # sign-extend bit 23 through the int32
        values = signed.astype(np.float64) / 8388608.0
    else:
        values = np.frombuffer(samples, dtype="<i4").astype(np.float64) / 2147483648.0
    frames: Float64Array = values.reshape(-1, layout.channels)
    return frames


def load_wav(path: Path | str) -> Int16Array:
    """Read any WAV file and return its audio as 8 kHz mono int16 samples.

    Multi-channel audio is averaged to mono; other rates are resampled with
    ``resample_poly``, so the result holds ``ceil(frames · 8000 / rate)`` samples.
    Raises `PromptError` ("<path>: <fault>") for a missing, malformed or unsupported file.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a WAV file") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or exc}") from exc
    layout = _read_layout(path, raw)
    if layout.encoding is _Encoding.PCM and layout.format_tag == WAVE_FORMAT_PCM:
        samples: bytes | memoryview = _samples_with_wave(raw, layout)
    else:
        samples = layout.data
    if len(samples) == 0:
        raise _fail(path, "the 'data' chunk holds no samples")
    if (
        layout.encoding is _Encoding.PCM
        and layout.bits == 16
        and layout.channels == 1
        and layout.rate == SAMPLE_RATE
    ):
        exact: Int16Array = np.frombuffer(samples, dtype="<i2").astype(np.int16)
        return exact  # already what the tick plays: no float round trip
    frames = _to_float(path, samples, layout)
    mono: Float64Array = frames.mean(axis=1) if layout.channels > 1 else frames[:, 0]
    if layout.rate != SAMPLE_RATE:
        common = math.gcd(layout.rate, SAMPLE_RATE)
        mono = np.asarray(
            resample_poly(mono, SAMPLE_RATE // common, layout.rate // common), dtype=np.float64
        )
    return saturate_int16(mono * 32768.0)


def tts_file_name(text: str, voice: str, rate_wpm: int) -> str:
    """The cache file name of a synthesised prompt: a SHA-256 of (text, voice, rate)."""
    key = json.dumps([_TTS_HASH_VERSION, text, voice, rate_wpm], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".wav"


class PromptCache:
    """Prompt audio by name: loaded once from ``audio_dir``, kept as samples and per-codec payloads.

    A name is a path relative to ``audio_dir`` with or without ``.wav`` (``welcome``,
    ``en/welcome``). Names returned by `text` for synthesised prompts start with
    ``tts:`` and live in ``cache_dir``. Every error is a `PromptError` naming the prompt,
    the file and, when given, the caller's ``context`` ("flow vaccine.yaml, step welcome").
    """

    def __init__(
        self,
        audio_dir: Path | str,
        cache_dir: Path | str,
        *,
        synthesise: Synthesiser | None = None,
        loader: Loader = load_wav,
    ) -> None:
        self._audio_dir = Path(audio_dir)
        self._cache_dir = Path(cache_dir)
        self._synthesise = synthesise
        self._loader = loader
        self._synthesised: dict[str, Path] = {}
        self._pcm: dict[Path, Int16Array] = {}
        self._payloads: dict[tuple[Path, Codec], bytes] = {}

    @property
    def audio_dir(self) -> Path:
        return self._audio_dir

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir

    def path_of(self, name: str, *, context: str | None = None) -> Path:
        """The file a prompt name stands for (without checking that it exists)."""
        if name.startswith(TTS_PREFIX):
            try:
                return self._synthesised[name]
            except KeyError:
                raise self._error(name, context, "no synthesised prompt of that name") from None
        if not name or "\\" in name:
            raise self._error(name, context, "not a valid prompt name")
        relative = PurePosixPath(name)
        if relative.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
            raise self._error(name, context, "prompt names must stay inside the audio directory")
        if relative.suffix.lower() != ".wav":
            relative = relative.with_name(relative.name + ".wav")
        return self._audio_dir / relative

    def pcm(self, name: str, *, context: str | None = None) -> Int16Array:
        """The prompt as 8 kHz mono int16 samples (read-only; loaded on first use, then kept)."""
        path = self.path_of(name, context=context)
        cached = self._pcm.get(path)
        if cached is not None:
            return cached
        try:
            samples = self._loader(path)
        except PromptError as exc:
            raise self._error(name, context, str(exc)) from exc
        samples = np.ascontiguousarray(samples, dtype=np.int16)
        samples.setflags(write=False)
        self._pcm[path] = samples
        return samples

    def get(self, name: str, codec: Codec, *, context: str | None = None) -> bytes:
        """The whole prompt encoded with ``codec`` (one byte per 8 kHz sample), encoded once."""
        path = self.path_of(name, context=context)
        payload = self._payloads.get((path, codec))
        if payload is None:
            payload = encode(codec, self.pcm(name, context=context)).tobytes()
            self._payloads[(path, codec)] = payload
        return payload

    def text(
        self,
        key: str,
        text: str,
        voice: str = "en",
        rate_wpm: int = 150,
        *,
        context: str | None = None,
    ) -> str:
        """The prompt name to play for ``key`` whose words are ``text``.

        A recording ``audio_dir/<key>.wav`` wins and ``key`` is returned. Otherwise the
        text is synthesised once into ``cache_dir/tts/<hash>.wav`` (reused across restarts,
        redone when text, voice or rate change) and a ``tts:`` name for it is returned.
        """
        recording = self.path_of(key, context=context)
        if recording.is_file():
            return key
        if not text.strip():
            raise self._error(key, context, f"no recording {recording} and the text is empty")
        if rate_wpm <= 0:
            raise self._error(key, context, f"speech rate must be positive, got {rate_wpm}")
        file_name = tts_file_name(text, voice, rate_wpm)
        name = TTS_PREFIX + file_name.removesuffix(".wav")
        target = self._cache_dir / "tts" / file_name
        if not target.is_file():
            self._synthesise_to(key, context, recording, text, voice, rate_wpm, target)
        self._synthesised[name] = target
        return name

    def _synthesise_to(
        self,
        key: str,
        context: str | None,
        recording: Path,
        text: str,
        voice: str,
        rate_wpm: int,
        target: Path,
    ) -> None:
        if self._synthesise is None:
            raise self._error(
                key,
                context,
                f"no recording {recording} and no speech synthesiser to speak its text",
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, part_name = tempfile.mkstemp(
                dir=target.parent, prefix=target.stem + ".", suffix=".part.wav"
            )
            os.close(handle)
        except OSError as exc:
            raise self._error(
                key, context, f"cannot write to the cache directory {target.parent}: {exc}"
            ) from exc
        part = Path(part_name)
        try:
            try:
                self._synthesise(text, voice, rate_wpm, part)
            except (SynthesisError, OSError) as exc:
                raise self._error(
                    key, context, f"no recording {recording} and speech synthesis failed: {exc}"
                ) from exc
            try:
                load_wav(part)  # a broken or empty synthesis must not be cached
            except PromptError as exc:
                raise self._error(
                    key, context, f"speech synthesis wrote an unusable file: {exc}"
                ) from exc
            # atomic: a crash never leaves half a file under the final name
            os.replace(part, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()

    @staticmethod
    def _error(name: str, context: str | None, reason: str) -> PromptError:
        where = f"{context}: " if context else ""
        return PromptError(f"{where}prompt {name!r}: {reason}")
