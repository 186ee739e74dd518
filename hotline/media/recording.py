"""Call recordings: capture a leg's audio block by block, and turn it into WAV bytes.

Owns three things:

* `Recording`: captured audio as int16 samples shaped (frames × channels), the
  `Channel` each column holds, the sample rate, and whether the capture hit its limit.
  A two-channel recording keeps what the peer sent (`Channel.INBOUND`, the caller) in
  the first column and what the engine sent (`Channel.OUTBOUND`) in the second, so a
  stereo WAV has the caller on the left and the engine on the right.
* `RecordingBuffer`: what the media tick appends to — one block per channel per tick,
  always the same length for every channel, so the channels stay aligned by
  construction. It is bounded: beyond `max_frames` it stops capturing and marks the
  recording truncated. Blocks are kept as a list of arrays and compacted into one from
  time to time, so appending costs a list append, never a copy of what came before.
* `recording_to_wav_bytes` (16-bit PCM, one or two channels) and `mix_down` (both
  channels summed into one, saturating).

This module is pure: it opens no files, reads no clock and knows nothing of RTP, legs
or codecs. The engine decides when a tick's blocks are captured and where bytes go.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from hotline.media.g711 import saturate_int16

SAMPLE_RATE = 8000  # Hz: what the media tick captures
COMPACT_EVERY = 512  # blocks (about 10 s of 20 ms ticks) kept apart before they are joined

Int16Array = npt.NDArray[np.int16]


class Channel(Enum):
    """Which way the audio of a channel went."""

    INBOUND = "inbound"  # what the peer sent us: the caller's voice
    OUTBOUND = "outbound"  # what the engine sent: prompts, tones, hold music


@dataclass(frozen=True, slots=True, eq=False)
class Recording:
    """Captured audio: `samples` is int16 (frames × channels), column i holding
    `channels[i]`; `truncated` says the capture stopped at its limit."""

    samples: Int16Array
    channels: tuple[Channel, ...]
    sample_rate: int = SAMPLE_RATE
    truncated: bool = False

    def __post_init__(self) -> None:
        samples = self.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 2:
            shape = getattr(samples, "shape", None)
            dtype = getattr(samples, "dtype", type(samples).__name__)
            raise ValueError(f"recording samples must be 2-D int16, got {dtype} {shape}")
        if not 1 <= len(self.channels) <= 2:
            raise ValueError(f"a recording has one or two channels, got {len(self.channels)}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"recording channels repeat: {self.channels}")
        if samples.shape[1] != len(self.channels):
            raise ValueError(
                f"recording samples have {samples.shape[1]} column(s)"
                f" for {len(self.channels)} channel(s)"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")

    @property
    def frames(self) -> int:
        """Samples per channel."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate

    def channel(self, which: Channel) -> Int16Array:
        """The samples of one channel (a view); KeyError when it was not captured."""
        try:
            column = self.channels.index(which)
        except ValueError:
            raise KeyError(f"the recording has no {which.value} channel") from None
        out: Int16Array = self.samples[:, column]
        return out


class RecordingBuffer:
    """Appends a leg's audio one tick at a time, bounded by `max_frames` per channel.

    `add(inbound, outbound)` takes the tick's block of each direction (equal lengths;
    a direction not captured is ignored); `add_silence(frames)` pads both, e.g. for
    ticks that were skipped or had no audio. `finish()` returns the `Recording`.
    """

    __slots__ = (
        "_blocks",
        "_inbound",
        "_outbound",
        "channels",
        "frames",
        "max_frames",
        "sample_rate",
        "truncated",
    )

    def __init__(
        self,
        *,
        inbound: bool = True,
        outbound: bool = True,
        max_frames: int,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if not inbound and not outbound:
            raise ValueError("a recording needs at least one direction: inbound or outbound")
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self._inbound = inbound
        self._outbound = outbound
        self.channels: tuple[Channel, ...] = tuple(
            c for c, wanted in ((Channel.INBOUND, inbound), (Channel.OUTBOUND, outbound)) if wanted
        )
        self.max_frames = max_frames
        self.sample_rate = sample_rate
        self.frames = 0
        self.truncated = False
        self._blocks: list[list[Int16Array]] = [[] for _ in self.channels]

    @property
    def full(self) -> bool:
        """The limit was reached: nothing more is captured."""
        return self.frames >= self.max_frames

    def add(self, inbound: Int16Array, outbound: Int16Array) -> None:
        """Append one block per direction. The blocks are kept, not copied: the caller
        must not modify them afterwards."""
        n = inbound.shape[0]
        if outbound.shape[0] != n:
            raise ValueError(
                f"inbound and outbound blocks differ in length: {n} and {outbound.shape[0]}"
            )
        room = self.max_frames - self.frames
        if room <= 0:
            self.truncated = self.truncated or n > 0
            return
        if n > room:
            inbound, outbound, n = inbound[:room], outbound[:room], room
            self.truncated = True
        blocks = self._blocks
        if self._inbound:
            blocks[0].append(inbound)
        if self._outbound:
            blocks[-1].append(outbound)
        self.frames += n
        if len(blocks[0]) >= COMPACT_EVERY:
            for i, chunks in enumerate(blocks):
                blocks[i] = [np.concatenate(chunks)]

    def add_silence(self, frames: int) -> None:
        """Append `frames` zero samples to every channel."""
        if frames < 0:
            raise ValueError(f"frames must not be negative, got {frames}")
        zeros = np.zeros(min(frames, max(0, self.max_frames - self.frames)), dtype=np.int16)
        if zeros.size < frames:
            self.truncated = True
        if zeros.size:
            self.add(zeros, zeros)

    def finish(self) -> Recording:
        """The recording captured so far."""
        columns = [
            np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
            for chunks in self._blocks
        ]
        samples = np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.int16)
        return Recording(samples, self.channels, self.sample_rate, self.truncated)


def recording_to_wav_bytes(recording: Recording) -> bytes:
    """A 16-bit PCM WAV file of the recording: mono for one channel; stereo for two,
    the channels in `recording.channels` order (inbound left, outbound right)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(len(recording.channels))
        writer.setsampwidth(2)
        writer.setframerate(recording.sample_rate)
        writer.writeframes(np.ascontiguousarray(recording.samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def mix_down(recording: Recording) -> Int16Array:
    """Both directions in one channel: the sum of the channels, saturated to int16."""
    if len(recording.channels) == 1:
        return recording.samples[:, 0].copy()
    summed = recording.samples.astype(np.int32).sum(axis=1)
    return saturate_int16(summed)
