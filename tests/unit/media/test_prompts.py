"""Tests for hotline.media.prompts (WAV loading, conversion, caching) and hotline.engine.tts."""

from __future__ import annotations

import math
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hotline.engine.tts import espeak_synthesise
from hotline.media.g711 import Codec, encode
from hotline.media.prompts import (
    TTS_PREFIX,
    PromptCache,
    PromptError,
    SynthesisError,
    load_wav,
    tts_file_name,
)

Float = npt.NDArray[np.float64]


def _sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> Float:
    n = round(rate * seconds)
    return amplitude * np.sin(2.0 * np.pi * freq * np.arange(n) / rate)


def _pcm_bytes(signal: Float, bits: int) -> bytes:
    """Interleaved float frames in [-1, 1] → little-endian integer PCM bytes."""
    if bits == 8:
        return np.clip(np.rint(signal * 128.0 + 128.0), 0, 255).astype(np.uint8).tobytes()
    if bits == 16:
        return np.clip(np.rint(signal * 32768.0), -32768, 32767).astype("<i2").tobytes()
    if bits == 24:
        ints = np.clip(np.rint(signal * 8388608.0), -8388608, 8388607).astype("<i4")
        return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    ints32 = np.clip(np.rint(signal * 2147483648.0), -2147483648, 2147483647).astype("<i4")
    return ints32.tobytes()


def _write_pcm(path: Path, signal: Float, rate: int, bits: int = 16) -> Path:
    """Write with the stdlib wave module (signal shaped (frames,) or (frames, channels))."""
    frames = signal if signal.ndim == 2 else signal[:, None]
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(frames.shape[1])
        writer.setsampwidth(bits // 8)
        writer.setframerate(rate)
        writer.writeframes(_pcm_bytes(frames.reshape(-1), bits))
    return path


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _write_float(path: Path, signal: Float, rate: int, *, extensible: bool = False) -> Path:
    frames = signal if signal.ndim == 2 else signal[:, None]
    channels = frames.shape[1]
    data = frames.reshape(-1).astype("<f4").tobytes()
    if extensible:
        fmt = _fmt(0xFFFE, channels, rate, 32) + struct.pack("<HHI", 22, 32, 0)
        fmt += struct.pack("<H", 3) + bytes.fromhex("000000001000800000aa00389b71")
    else:
        fmt = _fmt(3, channels, rate, 32)
    path.write_bytes(_riff(_chunk(b"fmt ", fmt), _chunk(b"data", data)))
    return path


def _peak_hz(samples: npt.NDArray[np.int16], rate: int = 8000) -> float:
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[int(np.argmax(spectrum))])


# --- load_wav: rates, widths, channels -------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 22050, 11025])
def test_any_rate_becomes_8k_with_the_same_duration(tmp_path: Path, rate: int) -> None:
    frames = round(rate * 0.73)
    path = _write_pcm(tmp_path / "a.wav", _sine(440.0, rate, 0.73), rate)
    out = load_wav(path)
    assert out.dtype == np.int16
    assert out.ndim == 1
    assert abs(len(out) - frames * 8000 / rate) <= 1.0


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_every_integer_width_gives_the_same_level(tmp_path: Path, bits: int) -> None:
    signal = _sine(500.0, 16000, 0.5, amplitude=0.5)
    out = load_wav(_write_pcm(tmp_path / "w.wav", signal, 16000, bits))
    steady = out[400:-400].astype(np.float64)  # away from the resampler's edges
    rms = math.sqrt(float(np.mean(steady**2)))
    assert rms == pytest.approx(0.5 * 32768 / math.sqrt(2), rel=0.01)
    assert _peak_hz(out) == pytest.approx(500.0, abs=10.0)


def test_24_bit_negative_samples_are_sign_extended(tmp_path: Path) -> None:
    signal = np.array([-1.0, -0.5, -(2.0**-23), 0.0, 0.5, 1.0 - 2.0**-23])
    out = load_wav(_write_pcm(tmp_path / "n.wav", signal, 8000, 24))
    assert out.tolist() == [-32768, -16384, 0, 0, 16384, 32767]


def test_16_bit_mono_8k_is_returned_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    ints = rng.integers(-32768, 32768, 1000).astype(np.int16)
    path = tmp_path / "exact.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(ints.astype("<i2").tobytes())
    assert np.array_equal(load_wav(path), ints)


def test_1khz_sine_at_48k_comes_out_as_1khz_at_8k(tmp_path: Path) -> None:
    path = _write_pcm(tmp_path / "s.wav", _sine(1000.0, 48000, 1.0), 48000)
    out = load_wav(path)
    assert len(out) == 8000
    assert _peak_hz(out) == pytest.approx(1000.0, abs=2.0)


def test_tone_above_4khz_is_filtered_out_not_aliased(tmp_path: Path) -> None:
    path = _write_pcm(tmp_path / "hi.wav", _sine(6000.0, 48000, 0.5, amplitude=0.9), 48000)
    out = load_wav(path).astype(np.float64)
    # a 6 kHz tone would alias to 2 kHz at full level without the anti-alias filter
    assert float(np.max(np.abs(out[200:-200]))) < 0.01 * 32768


def test_float32_mono_and_extensible(tmp_path: Path) -> None:
    signal = _sine(1000.0, 44100, 0.5, amplitude=0.25)
    plain = load_wav(_write_float(tmp_path / "f.wav", signal, 44100))
    ext = load_wav(_write_float(tmp_path / "fx.wav", signal, 44100, extensible=True))
    assert np.array_equal(plain, ext)
    assert abs(len(plain) - 4000) <= 1
    assert _peak_hz(plain) == pytest.approx(1000.0, abs=4.0)
    assert float(np.max(np.abs(plain))) == pytest.approx(0.25 * 32768, rel=0.02)


def test_float_full_scale_is_clipped_to_int16(tmp_path: Path) -> None:
    out = load_wav(_write_float(tmp_path / "c.wav", np.array([1.5, 1.0, -1.0, -3.0]), 8000))
    assert out.tolist() == [32767, 32767, -32768, -32768]


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = _sine(700.0, 8000, 0.25, amplitude=0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    out = load_wav(_write_pcm(tmp_path / "st.wav", stereo, 8000))
    expected = np.rint(left * 0.5 * 32768).astype(np.int16)
    assert np.max(np.abs(out.astype(np.int32) - expected)) <= 1
    # opposite channels cancel
    cancel = np.stack([left, -left], axis=1)
    assert np.max(np.abs(load_wav(_write_pcm(tmp_path / "x.wav", cancel, 8000)))) <= 1


def test_float_stereo_at_48k(tmp_path: Path) -> None:
    tone = _sine(1000.0, 48000, 0.5, amplitude=0.4)
    out = load_wav(_write_float(tmp_path / "fs.wav", np.stack([tone, tone], axis=1), 48000))
    assert len(out) == 4000
    assert _peak_hz(out) == pytest.approx(1000.0, abs=4.0)


@pytest.mark.parametrize(("tag", "codec"), [(6, Codec.PCMA), (7, Codec.PCMU)])
def test_g711_wav_is_decoded(tmp_path: Path, tag: int, codec: Codec) -> None:
    samples = np.rint(_sine(800.0, 8000, 0.1) * 32000).astype(np.int16)
    codes = encode(codec, samples).tobytes()
    path = tmp_path / "g.wav"
    path.write_bytes(_riff(_chunk(b"fmt ", _fmt(tag, 1, 8000, 8)), _chunk(b"data", codes)))
    out = load_wav(path)
    assert np.max(np.abs(out.astype(np.int32) - samples)) <= 1100  # G.711 quantisation


def test_data_before_fmt_and_odd_chunks_are_read(tmp_path: Path) -> None:
    samples = np.arange(-50, 51, dtype="<i2")
    path = tmp_path / "order.wav"
    path.write_bytes(
        _riff(
            _chunk(b"LIST", b"odd"),  # odd size: padded
            _chunk(b"data", samples.tobytes()),
            _chunk(b"fmt ", _fmt(1, 1, 8000, 16)),
        )
    )
    assert load_wav(path).tolist() == samples.tolist()


def test_truncated_data_chunk_keeps_whole_frames(tmp_path: Path) -> None:
    body = np.arange(10, dtype="<i2").tobytes() + b"\x01"  # half a frame at the end
    raw = _riff(
        _chunk(b"fmt ", _fmt(1, 1, 8000, 16)), b"data" + struct.pack("<I", 0xFFFFFFFF) + body
    )
    path = tmp_path / "stream.wav"
    path.write_bytes(raw)
    assert load_wav(path).tolist() == list(range(10))


# --- load_wav: errors --------------------------------------------------------------------


def _bad(tmp_path: Path, raw: bytes) -> str:
    path = tmp_path / "welcome.wav"
    path.write_bytes(raw)
    with pytest.raises(PromptError) as caught:
        load_wav(path)
    return str(caught.value)


def test_error_not_riff(tmp_path: Path) -> None:
    assert (
        _bad(tmp_path, b"ID3\x03 this is an mp3")
        == f"{tmp_path / 'welcome.wav'}: not a RIFF/WAVE file"
    )
    assert _bad(tmp_path, b"") == f"{tmp_path / 'welcome.wav'}: not a RIFF/WAVE file"
    assert _bad(tmp_path, b"RIFF\x04\x00\x00\x00AVI ").endswith(": not a RIFF/WAVE file")
    assert _bad(tmp_path, b"RIFX\x04\x00\x00\x00WAVE").endswith(
        ": big-endian RIFX files are not supported"
    )


def test_error_12_bit(tmp_path: Path) -> None:
    raw = _riff(_chunk(b"fmt ", _fmt(1, 1, 8000, 12)), _chunk(b"data", b"\0\0"))
    assert _bad(tmp_path, raw) == f"{tmp_path / 'welcome.wav'}: 12-bit samples are not supported"


def test_error_no_data_chunk(tmp_path: Path) -> None:
    raw = _riff(_chunk(b"fmt ", _fmt(1, 1, 8000, 16)))
    assert _bad(tmp_path, raw) == f"{tmp_path / 'welcome.wav'}: no 'data' chunk"


def test_error_no_fmt_chunk(tmp_path: Path) -> None:
    assert _bad(tmp_path, _riff(_chunk(b"data", b"\0\0"))).endswith(": no 'fmt ' chunk")


def test_error_other_faults(tmp_path: Path) -> None:
    def one(fmt: bytes, data: bytes = b"\0\0\0\0") -> str:
        return _bad(tmp_path, _riff(_chunk(b"fmt ", fmt), _chunk(b"data", data))).split(": ", 1)[1]

    assert one(_fmt(2, 1, 8000, 4)) == "format 0x0002 (Microsoft ADPCM) is not supported"
    assert one(_fmt(0x1234, 1, 8000, 16)) == "format 0x1234 is not supported"
    assert one(_fmt(3, 1, 8000, 16)) == "16-bit float samples are not supported"
    assert one(_fmt(7, 1, 8000, 16)) == "16-bit G.711 samples are not supported"
    assert one(_fmt(1, 0, 8000, 16)) == "0 channels"
    assert one(_fmt(1, 1, 0, 16)) == "sample rate of 0 Hz"
    assert one(_fmt(1, 1, 8000, 16)[:14]) == "'fmt ' chunk is 14 bytes, at least 16 expected"
    bad_align = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 2, 16)
    assert one(bad_align) == "block align 2 does not match 2 channel(s) of 16-bit samples"
    assert one(_fmt(0xFFFE, 1, 8000, 16)) == (
        "WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is 16 bytes, 40 expected"
    )
    odd_guid = _fmt(0xFFFE, 1, 8000, 16) + struct.pack("<HHI", 22, 16, 0) + bytes(range(16))
    assert one(odd_guid) == (
        "WAVE_FORMAT_EXTENSIBLE sub-format 000102030405060708090a0b0c0d0e0f is not supported"
    )
    assert one(_fmt(1, 1, 8000, 16), b"") == "the 'data' chunk holds no samples"
    nan = np.array([0.0, np.nan], dtype="<f4").tobytes()
    assert one(_fmt(3, 1, 8000, 32), nan) == "float samples include NaN or infinity"


def test_error_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"^.*nothere\.wav: file not found$"):
        load_wav(tmp_path / "nothere.wav")
    with pytest.raises(PromptError, match=r": is a directory, not a WAV file$"):
        load_wav(tmp_path)


def test_error_truncated_fmt(tmp_path: Path) -> None:
    raw = b"RIFF\x20\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"
    assert _bad(tmp_path, raw).endswith(": 'fmt ' chunk is truncated (2 of 16 bytes)")


# --- PromptCache ---------------------------------------------------------------------------


class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> npt.NDArray[np.int16]:
        self.calls.append(path)
        return load_wav(path)


def _audio(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    (audio / "en").mkdir(parents=True, exist_ok=True)
    _write_pcm(audio / "welcome.wav", _sine(440.0, 16000, 0.5), 16000)
    _write_pcm(audio / "en" / "bye.wav", _sine(440.0, 8000, 0.25), 8000)
    return audio


def test_cache_loads_once_and_encodes_once_per_codec(tmp_path: Path) -> None:
    loader = CountingLoader()
    cache = PromptCache(_audio(tmp_path), tmp_path / "cache", loader=loader)
    ulaw = cache.get("welcome", Codec.PCMU)
    alaw = cache.get("welcome.wav", Codec.PCMA)
    pcm = cache.pcm("welcome")
    assert len(loader.calls) == 1
    assert len(ulaw) == len(alaw) == len(pcm) == 4000
    assert ulaw == encode(Codec.PCMU, pcm).tobytes()
    assert alaw == encode(Codec.PCMA, pcm).tobytes()
    assert cache.get("welcome", Codec.PCMU) is ulaw
    assert cache.pcm("en/bye") is cache.pcm("en/bye.wav")
    assert len(loader.calls) == 2
    assert not pcm.flags.writeable


def test_cache_errors_name_prompt_file_and_context(tmp_path: Path) -> None:
    audio = _audio(tmp_path)
    cache = PromptCache(audio, tmp_path / "cache")
    ctx = "flow vaccine.yaml, step welcome"
    with pytest.raises(PromptError) as caught:
        cache.get("greeting", Codec.PCMU, context=ctx)
    assert (
        str(caught.value) == f"{ctx}: prompt 'greeting': {audio / 'greeting.wav'}: file not found"
    )
    (audio / "broken.wav").write_bytes(b"nonsense")
    with pytest.raises(PromptError) as caught:
        cache.pcm("broken")
    assert str(caught.value) == f"prompt 'broken': {audio / 'broken.wav'}: not a RIFF/WAVE file"
    for name in ("../secret", "/etc/x", "a//b", "", "a\\b"):
        with pytest.raises(PromptError, match=r"^prompt '.*': "):
            cache.pcm(name)
    with pytest.raises(
        PromptError, match=r"^prompt 'tts:abc': no synthesised prompt of that name$"
    ):
        cache.pcm("tts:abc")


class CountingSynth:
    def __init__(self, real: bool = True) -> None:
        self.calls: list[tuple[str, str, int, Path]] = []
        self.real = real

    def __call__(self, text: str, voice: str, rate_wpm: int, out_path: Path) -> None:
        self.calls.append((text, voice, rate_wpm, out_path))
        if self.real:
            espeak_synthesise(text, voice, rate_wpm, out_path)
        else:
            _write_pcm(out_path, _sine(300.0, 22050, 0.2), 22050)


def test_recording_wins_over_text(tmp_path: Path) -> None:
    synth = CountingSynth(real=False)
    cache = PromptCache(_audio(tmp_path), tmp_path / "cache", synthesise=synth)
    assert cache.text("welcome", "Welcome to the hotline") == "welcome"
    assert cache.text("en/bye", "Goodbye") == "en/bye"
    assert synth.calls == []


@pytest.fixture
def espeak() -> str:
    """espeak-ng is required (make test installs it): a missing one fails, never skips."""
    path = shutil.which("espeak-ng")
    if path is None:
        pytest.fail("espeak-ng is required: apt-get install espeak-ng (make test does it)")
    return path


needs_espeak = pytest.mark.usefixtures("espeak")


@needs_espeak
def test_espeak_synthesises_once_and_again_when_text_changes(tmp_path: Path) -> None:
    synth = CountingSynth()
    cache_dir = tmp_path / "cache"
    cache = PromptCache(_audio(tmp_path), cache_dir, synthesise=synth)
    name = cache.text("opening", "The clinic opens at nine", voice="en", rate_wpm=160)
    assert name.startswith(TTS_PREFIX)
    target = cache_dir / "tts" / tts_file_name("The clinic opens at nine", "en", 160)
    assert target.is_file()
    pcm = cache.pcm(name)
    assert len(pcm) > 4000  # more than half a second of speech
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 300.0  # not silent
    assert len(cache.get(name, Codec.PCMA)) == len(pcm)
    assert cache.text("opening", "The clinic opens at nine", voice="en", rate_wpm=160) == name
    assert len(synth.calls) == 1
    # a restart: a new cache over the same directory reuses the file
    again = PromptCache(_audio(tmp_path), cache_dir, synthesise=synth)
    assert again.text("opening", "The clinic opens at nine", voice="en", rate_wpm=160) == name
    assert len(synth.calls) == 1
    # changed text (or voice or rate) → a new file
    changed = again.text("opening", "The clinic opens at ten", voice="en", rate_wpm=160)
    assert changed != name
    assert len(synth.calls) == 2
    faster = again.text("opening", "The clinic opens at ten", voice="en", rate_wpm=200)
    assert faster not in (name, changed)
    assert len(synth.calls) == 3
    assert sorted(p.name for p in (cache_dir / "tts").iterdir()) == sorted(
        [
            tts_file_name("The clinic opens at nine", "en", 160),
            tts_file_name("The clinic opens at ten", "en", 160),
            tts_file_name("The clinic opens at ten", "en", 200),
        ]
    )  # no temporary files left behind


@needs_espeak
def test_espeak_bad_voice_is_a_clear_error_and_nothing_is_cached(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = PromptCache(_audio(tmp_path), cache_dir, synthesise=espeak_synthesise)
    with pytest.raises(PromptError) as caught:
        cache.text("hello", "Hello", voice="zz", context="flow a.yaml, step hello")
    message = str(caught.value)
    assert message.startswith("flow a.yaml, step hello: prompt 'hello': no recording ")
    assert "speech synthesis failed: espeak-ng -v zz exited with status 1" in message
    assert list((cache_dir / "tts").iterdir()) == []


def test_missing_tts_engine_names_prompt_and_flow(tmp_path: Path) -> None:
    def missing(text: str, voice: str, rate_wpm: int, out_path: Path) -> None:
        espeak_synthesise(text, voice, rate_wpm, out_path, command="no-such-espeak-command")

    audio = _audio(tmp_path)
    cache = PromptCache(audio, tmp_path / "cache", synthesise=missing)
    with pytest.raises(PromptError) as caught:
        cache.text("opening", "We open at nine", context="flow vaccine.yaml, step opening")
    assert str(caught.value) == (
        f"flow vaccine.yaml, step opening: prompt 'opening': no recording {audio / 'opening.wav'}"
        " and speech synthesis failed: no-such-espeak-command is not installed"
        " (no 'no-such-espeak-command' command on PATH; on Debian: apt-get install espeak-ng)"
    )
    with pytest.raises(SynthesisError, match="is not installed"):
        missing("x", "en", 150, tmp_path / "x.wav")


def test_no_synthesiser_and_no_recording(tmp_path: Path) -> None:
    audio = _audio(tmp_path)
    cache = PromptCache(audio, tmp_path / "cache")
    with pytest.raises(PromptError) as caught:
        cache.text("opening", "We open at nine", context="flow v.yaml, step opening")
    assert str(caught.value) == (
        f"flow v.yaml, step opening: prompt 'opening': no recording {audio / 'opening.wav'}"
        " and no speech synthesiser to speak its text"
    )


def test_empty_text_and_unusable_synthesis_are_rejected(tmp_path: Path) -> None:
    def writes_garbage(text: str, voice: str, rate_wpm: int, out_path: Path) -> None:
        out_path.write_bytes(b"not audio")

    audio = _audio(tmp_path)
    cache = PromptCache(audio, tmp_path / "cache", synthesise=writes_garbage)
    with pytest.raises(PromptError, match=r"^prompt 'x': no recording .* and the text is empty$"):
        cache.text("x", "   ")
    with pytest.raises(PromptError, match=r"^prompt 'x': speech rate must be positive, got 0$"):
        cache.text("x", "hi", rate_wpm=0)
    with pytest.raises(PromptError, match=r"speech synthesis wrote an unusable file: .*not a RIFF"):
        cache.text("x", "hi")
    assert list((tmp_path / "cache" / "tts").iterdir()) == []


def test_fake_synthesiser_file_is_resampled_and_cached(tmp_path: Path) -> None:
    synth = CountingSynth(real=False)
    cache = PromptCache(_audio(tmp_path), tmp_path / "cache", synthesise=synth)
    name = cache.text("hold", "Please hold")
    assert len(cache.pcm(name)) == 1600  # 0.2 s at 22.05 kHz → 8 kHz
    assert _peak_hz(cache.pcm(name)) == pytest.approx(300.0, abs=10.0)
    assert synth.calls[0][:3] == ("Please hold", "en", 150)


def test_tts_file_name_depends_on_text_voice_and_rate() -> None:
    names = {
        tts_file_name("a", "en", 150),
        tts_file_name("b", "en", 150),
        tts_file_name("a", "en-us", 150),
        tts_file_name("a", "en", 151),
    }
    assert len(names) == 4
    assert tts_file_name("a", "en", 150) == tts_file_name("a", "en", 150)
