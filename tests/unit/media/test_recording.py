"""`hotline.media.recording`: the bounded capture buffer the media tick appends to, the
`Recording` it yields, and its WAV bytes read back by the standard library's `wave`."""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.media.recording import (
    COMPACT_EVERY,
    Channel,
    Recording,
    RecordingBuffer,
    mix_down,
    recording_to_wav_bytes,
)

Int16 = npt.NDArray[np.int16]


def block(start: int, n: int = 160) -> Int16:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def read_wav(data: bytes) -> tuple[tuple[int, int, int], Int16]:
    with wave.open(io.BytesIO(data)) as reader:
        params = (reader.getnchannels(), reader.getsampwidth(), reader.getframerate())
        frames = reader.readframes(reader.getnframes())
    return params, np.frombuffer(frames, "<i2").reshape(-1, params[0])


def test_two_channels_stay_aligned_block_for_block() -> None:
    buffer = RecordingBuffer(max_frames=8000)
    for n in range(5):
        buffer.add(block(1000 * n), -block(1000 * n))
    buffer.add_silence(320)
    buffer.add(block(7, 40), block(9, 40))
    recording = buffer.finish()
    assert recording.channels == (Channel.INBOUND, Channel.OUTBOUND)
    assert recording.frames == 5 * 160 + 320 + 40 and not recording.truncated
    assert recording.duration == pytest.approx(recording.frames / 8000)
    inbound = recording.channel(Channel.INBOUND)
    outbound = recording.channel(Channel.OUTBOUND)
    np.testing.assert_array_equal(inbound[160:320], block(1000))
    np.testing.assert_array_equal(outbound[160:320], -block(1000))
    assert np.all(inbound[800:1120] == 0) and np.all(outbound[800:1120] == 0)
    np.testing.assert_array_equal(outbound[1120:], block(9, 40))


def test_one_direction_gives_one_channel() -> None:
    buffer = RecordingBuffer(inbound=False, max_frames=1000)
    buffer.add(block(0), block(500))
    recording = buffer.finish()
    assert recording.channels == (Channel.OUTBOUND,)
    assert recording.samples.shape == (160, 1)
    np.testing.assert_array_equal(recording.channel(Channel.OUTBOUND), block(500))
    with pytest.raises(KeyError, match="the recording has no inbound channel"):
        recording.channel(Channel.INBOUND)


def test_the_limit_cuts_inside_a_block_and_marks_the_recording_truncated() -> None:
    buffer = RecordingBuffer(max_frames=400)
    buffer.add(block(0), block(0))
    buffer.add(block(160), block(160))
    assert not buffer.full and not buffer.truncated
    buffer.add(block(320), block(320))  # only 80 of these fit
    assert buffer.full and buffer.truncated
    buffer.add(block(480), block(480))
    recording = buffer.finish()
    assert recording.frames == 400 and recording.truncated
    np.testing.assert_array_equal(recording.channel(Channel.INBOUND), block(0, 400))


def test_reaching_the_limit_exactly_is_not_truncation_until_more_comes() -> None:
    buffer = RecordingBuffer(max_frames=320)
    buffer.add(block(0), block(0))
    buffer.add(block(160), block(160))
    assert buffer.full and not buffer.truncated
    buffer.add_silence(0)
    assert not buffer.truncated
    buffer.add_silence(160)
    assert buffer.truncated and buffer.finish().frames == 320


def test_compaction_keeps_every_sample() -> None:
    buffer = RecordingBuffer(max_frames=10**6)
    blocks = [block(i * 160) for i in range(COMPACT_EVERY * 2 + 7)]
    for b in blocks:
        buffer.add(b, b[::-1])
    assert len(buffer._blocks[0]) < COMPACT_EVERY  # joined as it went
    recording = buffer.finish()
    np.testing.assert_array_equal(recording.channel(Channel.INBOUND), np.concatenate(blocks))
    np.testing.assert_array_equal(
        recording.channel(Channel.OUTBOUND), np.concatenate([b[::-1] for b in blocks])
    )


def test_bad_buffers_and_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one direction"):
        RecordingBuffer(inbound=False, outbound=False, max_frames=10)
    with pytest.raises(ValueError, match="max_frames must be positive, got 0"):
        RecordingBuffer(max_frames=0)
    with pytest.raises(ValueError, match="sample rate must be positive, got -1"):
        RecordingBuffer(max_frames=10, sample_rate=-1)
    buffer = RecordingBuffer(max_frames=1000)
    with pytest.raises(ValueError, match="blocks differ in length: 160 and 80"):
        buffer.add(block(0), block(0, 80))
    with pytest.raises(ValueError, match="frames must not be negative, got -5"):
        buffer.add_silence(-5)
    assert buffer.frames == 0


def test_recording_checks_its_shape() -> None:
    stereo = np.zeros((10, 2), np.int16)
    with pytest.raises(ValueError, match="must be 2-D int16, got float64"):
        Recording(np.zeros((10, 2)), (Channel.INBOUND, Channel.OUTBOUND))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be 2-D int16, got int16 \(10,\)"):
        Recording(np.zeros(10, np.int16), (Channel.INBOUND,))
    with pytest.raises(ValueError, match="have 2 column\\(s\\) for 1 channel\\(s\\)"):
        Recording(stereo, (Channel.INBOUND,))
    with pytest.raises(ValueError, match="channels repeat"):
        Recording(stereo, (Channel.INBOUND, Channel.INBOUND))
    with pytest.raises(ValueError, match="one or two channels, got 0"):
        Recording(np.zeros((10, 0), np.int16), ())
    with pytest.raises(ValueError, match="sample rate must be positive, got 0"):
        Recording(stereo, (Channel.INBOUND, Channel.OUTBOUND), sample_rate=0)


def test_stereo_wav_has_the_caller_left_and_the_engine_right() -> None:
    buffer = RecordingBuffer(max_frames=8000)
    for n in range(3):
        buffer.add(block(n * 160), (-block(n * 160)))
    recording = buffer.finish()
    params, frames = read_wav(recording_to_wav_bytes(recording))
    assert params == (2, 2, 8000)
    np.testing.assert_array_equal(frames[:, 0], block(0, 480))  # left: inbound
    np.testing.assert_array_equal(frames[:, 1], -block(0, 480))  # right: outbound


def test_mono_and_empty_recordings_make_valid_wav_files() -> None:
    mono = Recording(block(-5000, 100).reshape(-1, 1), (Channel.OUTBOUND,), sample_rate=16000)
    params, frames = read_wav(recording_to_wav_bytes(mono))
    assert params == (1, 2, 16000)
    np.testing.assert_array_equal(frames[:, 0], block(-5000, 100))
    empty = RecordingBuffer(max_frames=10).finish()
    assert empty.frames == 0 and empty.samples.shape == (0, 2)
    params, frames = read_wav(recording_to_wav_bytes(empty))
    assert params == (2, 2, 8000) and frames.size == 0


def test_mix_down_sums_and_saturates() -> None:
    samples = np.array([[30000, 30000], [-30000, -30000], [100, -40], [5, 0]], np.int16)
    recording = Recording(samples, (Channel.INBOUND, Channel.OUTBOUND))
    np.testing.assert_array_equal(mix_down(recording), [32767, -32768, 60, 5])
    mono = Recording(samples[:, :1].copy(), (Channel.INBOUND,))
    np.testing.assert_array_equal(mix_down(mono), samples[:, 0])


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=400)), max_size=30),
    limit=st.integers(min_value=1, max_value=3000),
)
def test_whatever_is_appended_the_channels_are_the_inputs_cut_at_the_limit(
    steps: list[tuple[bool, int]], limit: int
) -> None:
    buffer = RecordingBuffer(max_frames=limit)
    inbound: list[Int16] = []
    outbound: list[Int16] = []
    position = 0
    for silence, n in steps:
        if silence:
            buffer.add_silence(n)
            inbound.append(np.zeros(n, np.int16))
            outbound.append(np.zeros(n, np.int16))
        else:
            buffer.add(block(position, n), block(position + 7, n))
            inbound.append(block(position, n))
            outbound.append(block(position + 7, n))
        position += n
    recording = buffer.finish()
    total = sum(n for _, n in steps)
    assert recording.frames == min(total, limit)
    assert recording.truncated == (total > limit)
    expected_in = np.concatenate([np.zeros(0, np.int16), *inbound])[:limit]
    expected_out = np.concatenate([np.zeros(0, np.int16), *outbound])[:limit]
    np.testing.assert_array_equal(recording.channel(Channel.INBOUND), expected_in)
    np.testing.assert_array_equal(recording.channel(Channel.OUTBOUND), expected_out)
