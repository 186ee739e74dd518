"""G.711 tables: bit-exact with ITU-T G.711 (the G.191 reference rules) and with audioop."""

from __future__ import annotations

import bisect
import warnings
from types import ModuleType

import numpy as np
import pytest

from hotline.media import g711
from hotline.media.g711 import Codec

audioop: ModuleType | None
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13 removed it; the scalar references below still run
        audioop = None

@pytest.fixture
def _audioop() -> None:
    """The independent reference is required: stdlib audioop up to 3.12, the audioop-lts
    package (a test dependency) from 3.13. Missing, the test fails; it never skips."""
    if audioop is None:
        pytest.fail("audioop is required: pip install audioop-lts (make test installs it)")


needs_audioop = pytest.mark.usefixtures("_audioop")

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


# --- Scalar references written from the decision tables of G.711 -------------------
# µ-law (Table 2a): the magnitude of the 14-bit sample (one's complement for negative
# samples, as G.191 applies it) falls into 8 segments whose decision values are spaced
# 2, 4, 8, …, 256 apart; the segment ends are 31, 95, 223, 479, 991, 2015, 4063, 8159.
_ULAW_DECISIONS: list[int] = []
_low = -1
for _segment, _end in enumerate((31, 95, 223, 479, 991, 2015, 4063, 8159)):
    _step = 2 << _segment
    _ULAW_DECISIONS.extend(range(_low + _step, _end + 1, _step))
    _low = _end
# A-law (Table 1a) on the 13-bit magnitude halved to 12 bits: segments 1 and 2 share
# the step 1 (magnitudes 0-31), then the step doubles each segment up to 2047.
_ALAW_DECISIONS = list(range(1, 32))
for _segment in range(2, 8):
    _start = 16 << (_segment - 1)
    _ALAW_DECISIONS.extend(range(_start, 2 * _start, 1 << (_segment - 1)))


def reference_ulaw(sample: int) -> int:
    magnitude = (~sample if sample < 0 else sample) >> 2
    interval = bisect.bisect_right(_ULAW_DECISIONS, magnitude)  # 0 … 127
    interval = min(interval, 127)
    code = 0x7F - interval  # all bits inverted; sign bit set for positive samples
    return code | 0x80 if sample >= 0 else code


def reference_alaw(sample: int) -> int:
    magnitude = (~sample if sample < 0 else sample) >> 4
    interval = min(bisect.bisect_right(_ALAW_DECISIONS, magnitude), 127)
    code = interval | (0x80 if sample >= 0 else 0)
    return code ^ 0x55


def reference_ulaw_value(code: int) -> int:
    """Middle of the quantisation interval, 16-bit left-justified (Table 2a)."""
    inverted = ~code & 0xFF
    segment, step = (inverted >> 4) & 7, inverted & 15
    value = ((2 * step + 33) << segment) - 33  # 14-bit, the µ-law bias removed
    value *= 4
    return -value if code < 0x80 else value


def reference_alaw_value(code: int) -> int:
    toggled = code ^ 0x55
    segment, step = (toggled >> 4) & 7, toggled & 15
    value = 2 * step + 1 if segment == 0 else (2 * step + 33) << (segment - 1)
    value *= 8
    return value if code >= 0x80 else -value


# --- tests ----------------------------------------------------------------------------


def test_ulaw_encode_matches_the_decision_tables_for_every_sample() -> None:
    expected = np.array([reference_ulaw(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
    assert np.array_equal(g711.ulaw_encode(ALL_SAMPLES), expected)


def test_alaw_encode_matches_the_decision_tables_for_every_sample() -> None:
    expected = np.array([reference_alaw(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
    assert np.array_equal(g711.alaw_encode(ALL_SAMPLES), expected)


def test_decoders_match_the_quantised_values_for_every_code() -> None:
    assert g711.ulaw_decode(ALL_CODES).tolist() == [reference_ulaw_value(c) for c in range(256)]
    assert g711.alaw_decode(ALL_CODES).tolist() == [reference_alaw_value(c) for c in range(256)]


@needs_audioop
def test_decoders_match_audioop_for_every_code() -> None:
    assert audioop is not None
    ulaw = np.frombuffer(audioop.ulaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
    alaw = np.frombuffer(audioop.alaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
    assert np.array_equal(g711.ulaw_decode(ALL_CODES), ulaw)
    assert np.array_equal(g711.alaw_decode(ALL_CODES), alaw)


@needs_audioop
def test_alaw_encode_matches_audioop_for_every_sample() -> None:
    assert audioop is not None
    expected = np.frombuffer(audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
    assert np.array_equal(g711.alaw_encode(ALL_SAMPLES), expected)


@needs_audioop
def test_ulaw_encode_matches_audioop_up_to_its_documented_negative_offset() -> None:
    """audioop (Sun's g711.c) negates negative µ-law inputs instead of complementing them:
    its code for x < 0 is G.191's code for x − 4. Positive samples agree exactly."""
    assert audioop is not None
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
    ours = g711.ulaw_encode(ALL_SAMPLES)
    positive = ALL_SAMPLES >= 0
    assert np.array_equal(ours[positive], theirs[positive])
    shifted = np.maximum(ALL_SAMPLES.astype(np.int32) - 4, -32768).astype(np.int16)
    assert np.array_equal(g711.ulaw_encode(shifted)[~positive], theirs[~positive])
    assert np.count_nonzero(ours != theirs) == 508  # one 14-bit step at 127 boundaries


def test_encoders_are_symmetric_about_minus_half_lsb() -> None:
    complement = ~ALL_SAMPLES
    assert np.array_equal(g711.ulaw_encode(complement), g711.ulaw_encode(ALL_SAMPLES) ^ 0x80)
    assert np.array_equal(g711.alaw_encode(complement), g711.alaw_encode(ALL_SAMPLES) ^ 0x80)


@pytest.mark.parametrize("codec", list(Codec))
def test_decode_then_encode_returns_every_code(codec: Codec) -> None:
    decoded = g711.decode(codec, ALL_CODES)
    again = g711.encode(codec, decoded)
    if codec is Codec.PCMU:
        # 0x7F (negative zero) decodes to 0, which encodes as positive zero 0xFF.
        assert np.array_equal(again[ALL_CODES != 0x7F], ALL_CODES[ALL_CODES != 0x7F])
        assert again[0x7F] == 0xFF
    else:
        assert np.array_equal(again, ALL_CODES)


def test_round_trip_error_stays_within_half_a_quantisation_step() -> None:
    x = ALL_SAMPLES.astype(np.int32)
    ulaw_error = np.abs(g711.ulaw_decode(g711.ulaw_encode(ALL_SAMPLES)).astype(np.int32) - x)
    alaw_error = np.abs(g711.alaw_decode(g711.alaw_encode(ALL_SAMPLES)).astype(np.int32) - x)
    magnitude = np.abs(x)
    # Step sizes on the 16-bit scale: µ-law 8·2^segment (biased), A-law 32 below 1024.
    small = magnitude < 100
    assert ulaw_error[small].max() <= 8
    assert alaw_error[magnitude < 1024].max() <= 16
    # Relative error of a logarithmic law above the linear region (clipping aside): at
    # most half a step, and a step is 1/16 of its segment's start (µ-law's bias of 33
    # makes it slightly more, hence 1/29).
    unclipped = (magnitude > 1024) & (magnitude < 32000)
    assert (ulaw_error[unclipped] / magnitude[unclipped]).max() < 1 / 29
    assert (alaw_error[unclipped] / magnitude[unclipped]).max() < 1 / 29
    assert (ulaw_error[unclipped] / magnitude[unclipped]).mean() < 1 / 60
    # Full scale: µ-law saturates at ±32124, A-law at ±32256.
    assert g711.ULAW_DECODE.max() == 32124 and g711.ULAW_DECODE.min() == -32124
    assert g711.ALAW_DECODE.max() == 32256 and g711.ALAW_DECODE.min() == -32256


def test_blocks_keep_their_shape() -> None:
    block = (np.arange(3 * 160, dtype=np.int32).reshape(3, 160) * 97 - 20000).astype(np.int16)
    codes = g711.ulaw_encode(block)
    assert codes.shape == (3, 160) and codes.dtype == np.uint8
    decoded = g711.ulaw_decode(codes)
    assert decoded.shape == (3, 160) and decoded.dtype == np.int16
    # Row by row equals the flat result: the tables do not care about layout.
    assert np.array_equal(codes[1], g711.ulaw_encode(block[1].copy()))
    # A strided view encodes like its copy.
    view = block[:, ::2]
    assert np.array_equal(g711.alaw_encode(view), g711.alaw_encode(view.copy()))


def test_codec_enum_payload_types_and_silence() -> None:
    assert int(Codec.PCMU) == 0 and int(Codec.PCMA) == 8
    assert Codec(0) is Codec.PCMU and Codec(8) is Codec.PCMA
    assert Codec.PCMU.encoding_name == "PCMU" and Codec.PCMA.encoding_name == "PCMA"
    assert Codec.PCMU.clock_rate == Codec.PCMA.clock_rate == 8000
    assert Codec.PCMU.silence == 0xFF and Codec.PCMA.silence == 0xD5
    zeros = np.zeros(4, dtype=np.int16)
    for codec in Codec:
        assert g711.encode(codec, zeros).tolist() == [codec.silence] * 4
    # µ-law has a zero level; A-law does not: its zero code decodes to +8, half a step.
    assert g711.ulaw_decode(np.full(2, Codec.PCMU.silence, dtype=np.uint8)).tolist() == [0, 0]
    assert g711.alaw_decode(np.full(2, Codec.PCMA.silence, dtype=np.uint8)).tolist() == [8, 8]


def test_payload_helpers() -> None:
    samples = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    for codec in Codec:
        payload = g711.encode_payload(codec, samples)
        assert isinstance(payload, bytes) and len(payload) == 5
        decoded = g711.decode_payload(codec, payload)
        assert np.array_equal(decoded, g711.decode(codec, g711.encode(codec, samples)))
        assert np.array_equal(g711.decode_payload(codec, memoryview(payload)), decoded)


def test_saturate_int16() -> None:
    values = np.array([-40000.0, -1.5, 0.4, 1.5, 40000.0])
    assert g711.saturate_int16(values).tolist() == [-32768, -2, 0, 2, 32767]
    assert g711.saturate_int16(np.array([70000, -5], dtype=np.int32)).tolist() == [32767, -5]
    same = np.array([1, 2], dtype=np.int16)
    assert g711.saturate_int16(same) is same


def test_wrong_dtypes_are_refused_with_the_expected_type_named() -> None:
    with pytest.raises(TypeError, match="ulaw_encode expects int16 samples, got float64"):
        g711.ulaw_encode(np.zeros(4))
    with pytest.raises(TypeError, match="alaw_encode expects int16 samples, got int32"):
        g711.alaw_encode(np.zeros(4, dtype=np.int32))
    with pytest.raises(TypeError, match="ulaw_decode expects uint8 codes, got int16"):
        g711.ulaw_decode(np.zeros(4, dtype=np.int16))
    with pytest.raises(TypeError, match="alaw_decode expects uint8 codes, got int64"):
        g711.alaw_decode(np.zeros(4, dtype=np.int64))


def test_tables_are_read_only() -> None:
    for table in (g711.ULAW_ENCODE, g711.ULAW_DECODE, g711.ALAW_ENCODE, g711.ALAW_DECODE):
        with pytest.raises(ValueError, match="read-only"):
            table[0] = 1
    assert g711.ULAW_ENCODE.shape == (65536,) and g711.ULAW_DECODE.shape == (256,)
