"""The audio between a browser's WebRTC leg and the engine's RTP leg, both ways, without
aiortc's jitter buffer (it stalls on a single loss; ARCHITECTURE.md).

* Browser → engine: `RtpRewriter` turns each decrypted PCMU packet the browser sent into
  an RTP packet of our own stream (our SSRC; sequence numbers and timestamps shifted by
  fixed offsets, so the engine's adaptive jitter buffer still sees every gap, reordering
  and duplicate as it happened). A new browser SSRC continues our numbering with the
  marker bit set. Muted, the payload becomes µ-law silence and the stream keeps flowing.
* Engine → browser: `Playout` holds the samples of the engine's PCMU packets (the engine
  paces them on its media tick) and hands out 20 ms frames; `EngineAudioTrack` is the
  aiortc track whose `recv()` returns one such frame every 20 ms on its own schedule —
  silence while nothing came — for aiortc to encode (PCMU) and send to the browser,
  whose own jitter buffer does the playout.

Must not know: SIP, sockets, WebSockets. The track's clock and sleep are arguments, so
its framing is tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from hotline.media.g711 import ULAW_SILENCE, decode_payload
from hotline.media.g711 import Codec as Law
from hotline.rtp.packet import RtpPacket
from hotline.rtp.seq import SEQ_MASK, TS_MASK, seq_delta
from hotline.sip.sdp import Codec

__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE", "EngineAudioTrack", "Playout", "RtpRewriter"]

SAMPLE_RATE = 8000  # Hz, G.711
FRAME_SAMPLES = 160  # samples in 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
PRIME_FRAMES = 2  # frames held before playing out (after a start or an underrun): 40 ms
MAX_FRAMES = 10  # frames held at most; beyond, the oldest are dropped down to PRIME_FRAMES
MAX_LAG = 0.1  # seconds the track may fall behind its schedule before it skips ahead
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class RtpRewriter:
    """Browser packets → our RTP stream towards the engine."""

    def __init__(
        self,
        ssrc: int,
        first_seq: int,
        first_timestamp: int,
        payload_type: int = Codec.PCMU.static_payload_type,
    ) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.muted = False
        self.packets = 0
        self.source_changes = 0
        self._source: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._next_seq = first_seq & SEQ_MASK  # where a new source starts
        self._next_ts = first_timestamp & TS_MASK
        self._highest: int | None = None  # highest sequence number sent (ours)

    def rewrite(
        self,
        *,
        ssrc: int,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        marker: bool = False,
    ) -> bytes:
        """Our RTP packet carrying `payload` (or silence of its length when muted)."""
        if ssrc != self._source:
            if self._source is not None:
                self.source_changes += 1
            self._source = ssrc
            self._seq_offset = (self._next_seq - sequence_number) & SEQ_MASK
            self._ts_offset = (self._next_ts - timestamp) & TS_MASK
            self._highest = None
            marker = True
        seq = (sequence_number + self._seq_offset) & SEQ_MASK
        ts = (timestamp + self._ts_offset) & TS_MASK
        if self._highest is None or seq_delta(seq, self._highest) > 0:
            self._highest = seq
            # A later source change continues after the newest packet we sent.
            self._next_seq = (seq + 1) & SEQ_MASK
            self._next_ts = (ts + max(len(payload), 1)) & TS_MASK
        body = bytes([ULAW_SILENCE]) * len(payload) if self.muted else payload
        self.packets += 1
        return RtpPacket(self.payload_type, seq, ts, self.ssrc, body, marker).serialize()


class Playout:
    """The engine's PCMU packets as a queue of samples, handed out 20 ms at a time.

    Play-out starts once `prime` frames are held and stops (silence) when the queue runs
    dry, until it holds `prime` frames again; more than `limit` frames (the engine's clock
    ahead of the track's, or a burst after a stall) drops the oldest samples down to
    `prime`. Packets older than the newest one seen are late or duplicates: dropped."""

    def __init__(self, *, prime: int = PRIME_FRAMES, limit: int = MAX_FRAMES) -> None:
        if not 1 <= prime <= limit:
            raise ValueError(f"need 1 <= prime <= limit, got prime={prime} limit={limit}")
        self.prime = prime
        self.limit = limit
        self._samples: list[npt.NDArray[np.int16]] = []
        self._held = 0  # samples in _samples
        self._playing = False
        self._newest: int | None = None
        self.frames = 0  # frames handed out with audio
        self.underruns = 0  # frames handed out as silence while playing had started
        self.dropped_late = 0
        self.dropped_overflow = 0  # samples

    @property
    def held(self) -> int:
        """Samples waiting."""
        return self._held

    def push(self, sequence_number: int, payload: bytes | bytearray | memoryview) -> bool:
        """Queue one packet's payload; False if it was late or a duplicate."""
        if self._newest is not None and seq_delta(sequence_number, self._newest) <= 0:
            self.dropped_late += 1
            return False
        self._newest = sequence_number
        if not payload:
            return True
        samples = decode_payload(Law.PCMU, payload)
        self._samples.append(samples)
        self._held += samples.size
        if self._held > self.limit * FRAME_SAMPLES:
            self._drop(self._held - self.prime * FRAME_SAMPLES)
        return True

    def _drop(self, count: int) -> None:
        self.dropped_overflow += count
        self._held -= count
        while count > 0:
            first = self._samples[0]
            if first.size <= count:
                count -= first.size
                self._samples.pop(0)
            else:
                self._samples[0] = first[count:]
                count = 0

    def pop(self) -> npt.NDArray[np.int16]:
        """The next 160 samples (a copy), or silence."""
        if not self._playing:
            if self._held < self.prime * FRAME_SAMPLES:
                return _SILENCE.copy()
            self._playing = True
        if self._held < FRAME_SAMPLES:
            self._playing = False
            self.underruns += 1
            return _SILENCE.copy()
        out = np.empty(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES:
            first = self._samples[0]
            take = min(first.size, FRAME_SAMPLES - filled)
            out[filled : filled + take] = first[:take]
            filled += take
            if take == first.size:
                self._samples.pop(0)
            else:
                self._samples[0] = first[take:]
        self._held -= FRAME_SAMPLES
        self.frames += 1
        return out


class EngineAudioTrack(MediaStreamTrack):
    """The engine's audio as an aiortc track: 20 ms frames, 8 kHz mono s16, paced by
    its own schedule (start + n × 20 ms on `clock`); a track that fell more than 100 ms
    behind (a stalled loop) skips ahead instead of sending a burst."""

    kind = "audio"

    def __init__(
        self,
        playout: Playout,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__()
        self.playout = playout
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._pts = 0
        self.skips = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME_SAMPLES
            due = self._start + self._pts / SAMPLE_RATE
            if due - now < -MAX_LAG:
                # Behind schedule: the frames not sent are a gap for the browser.
                behind = int((now - due) / FRAME_SECONDS + 1e-6)
                self._pts += behind * FRAME_SAMPLES
                self.skips += behind
                due = self._start + self._pts / SAMPLE_RATE
            if due > now:
                await self._sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        samples = self.playout.pop()
        frame = AudioFrame.from_ndarray(
            samples.reshape(1, FRAME_SAMPLES), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame
