"""The media plane's one clock: a single 20 ms tick that serves every call leg at once.

Owns, for every leg of every call: the RTP and RTCP sockets (bound on the leg's port
pair; all read at the start of each tick, `SocketReader`), the per-leg inbound queue and
playout buffer, the tick schedule, and the tick itself — take each leg's due audio,
decode G.711 for all legs in one table lookup per codec, run the in-band DTMF bank over
the whole (legs × 160) block, report digits exactly once (RFC 4733 and in-band
de-duplicated), render and encode each leg's outbound audio in one lookup per codec,
and send one RTP packet per leg stamped from the tick schedule. Each leg also has an
RTCP session (RFC 3550): inbound reports are digested into per-call quality figures, and
the tick sends each leg's compound report when its randomised interval is up — one
heap of deadlines for all legs, no timer per leg — and a BYE when the leg is removed.

What a leg sends, in order of precedence, each tick:

* Key presses (`MediaCore.send_digits`): while presses are queued or under way they own
  the leg's ticks. With a telephone-event payload type negotiated for sending, a press
  goes out as RFC 4733 event packets (`hotline.rtp.telephone_event.DtmfEventSender`: the
  leg's SSRC and sequence space, the press's start timestamp, the marker on its first
  packet, an update every tick, the end packet three times) instead of audio; without
  one, it is rendered in-band as a DTMF tone. The gap after each press is silence.
* The play queue (`MediaCore.play`): items play back to back, sample-exact — the next
  item continues in the tick where the previous one ended. A looping item plays until
  `stop_playback`. `on_play_done(leg, tag, True)` is reported from the tick whose packet
  carried an item's last sample; `stop_playback` reports the items it drops with False.
  The queue waits (nothing is skipped) while the leg cannot send: on hold, or before
  its socket is open.
* Otherwise silence.

A leg can be recorded (`MediaCore.start_recording`): each tick appends the leg's
decoded inbound block (silence when no audio was due) and its rendered outbound block
(silence when it sent none, or sent RFC 4733 events) to a bounded
`hotline.media.recording.RecordingBuffer`, so the two channels stay aligned.

Two layers:

* `TickSchedule` and `MediaCore` are pure: no sockets, no clock. `MediaCore.receive_rtp`
  is what a datagram costs (parse, latch, sequence check, append to the leg's queue);
  `MediaCore.tick(index, now, skipped, ntp_now=...)` is one tick; the NTP wall-clock
  time RTCP sender reports carry is passed in. Tests drive both with fake time.
* `MediaLoop` owns the asyncio side: it binds the sockets, reads them all at the start
  of each tick (one readiness poll, kernel arrival timestamps), and fires tick n at
  ``t0 + n · 20 ms`` with `loop.call_at` — never `sleep` — so lateness never
  accumulates; ticks missed in a stall are run back to back, unless the stall passed
  `max_behind` periods (`MAX_BEHIND_TICKS`, 200 ms): then it skips ahead (counted), and
  skipped ticks still advance every leg's RTP clock. It is the one that reads the
  wall clock, for the NTP timestamps of RTCP, and writes recordings to files, off the
  event loop.

Legs in a conference (`MediaCore.join`: a caller bridged to an agent, a consult, a
supervisor) play their inbound audio through an adaptive jitter buffer and loss
concealment, from their first join on, and each hears the mix-minus of its conference
(all conferences in one numpy pass, `hotline.media.mixer`); roles, mute and gain shape
who hears whom. Legs that were never joined (the IVR) play their packets in sequence
order after a short fixed prefill: cheaper, and all a menu needs.

Not here: the jitter buffer's and concealment's algorithms (`hotline.rtp.jitter`,
`hotline.media.plc`), prompt files (the engine passes samples), the WAV format
(`hotline.media.recording`), and the RTCP wire format, interval and statistics
(`hotline.rtp.rtcp`). This module must not know about SIP dialogs or IVR flows: legs
are keyed by an opaque hashable the engine chooses, plays by an opaque tag, and the
engine is told about digits, finished plays and dead legs through callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import os
import platform
import random
import select
import socket
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from hotline.media import g711
from hotline.media.dtmf import DtmfDetectorBank, InbandDigitEnded, InbandDigitStarted
from hotline.media.mixer import Hearing, MixPlan
from hotline.media.plc import ConcealmentBank
from hotline.media.recording import Recording, RecordingBuffer, recording_to_wav_bytes
from hotline.media.tones import SAMPLE_RATE, dtmf_frequencies, dual_tone
from hotline.rtp.jitter import JitterBuffer, quiet_code_table
from hotline.rtp.rtcp import CallQuality, RtcpSession, ntp_from_unix
from hotline.rtp.seq import SeqOutcome
from hotline.rtp.stream import Address, RtpReceiver, RtpSender, SymmetricLatch
from hotline.rtp.telephone_event import (
    DigitEnded,
    DtmfEvent,
    DtmfEventReceiver,
    DtmfEventSender,
)
from hotline.sip.sdp import NegotiatedMedia

log = logging.getLogger("hotline.media")

SAMPLES_PER_TICK = 160
TICK_SECONDS = SAMPLES_PER_TICK / SAMPLE_RATE  # 0.020
# Ticks a late timer catches up on, back to back, before it skips ahead instead: 200 ms.
# A stall that short (the process descheduled, a slow page fault) loses nothing inside
# the engine, and the far end sees a delay spike of that size, which an adaptive buffer
# rides out (hotline's own does on bench/jitter's spiky profile, +200 ms every 10 s);
# skipping would cut every leg's audio for as long. A longer stall, or an engine that
# cannot keep up, skips, so that catching up cannot snowball.
MAX_BEHIND_TICKS = 10
INACTIVITY_CHECK_TICKS = 50  # look for dead legs once a second
RTCP_RETRY_SECONDS = 1.0  # a due report with nowhere to go is looked at again this much later
MAX_RTCP_PER_TICK = 64  # reports beyond this wait for the next tick (after a stall)

Int16Array = npt.NDArray[np.int16]

_DUPLICATE = SeqOutcome.DUPLICATE
_JUMP = SeqOutcome.JUMP
_LATE = SeqOutcome.LATE
_DECODE = {g711.Codec.PCMU: g711.ULAW_DECODE, g711.Codec.PCMA: g711.ALAW_DECODE}
_ENCODE = {g711.Codec.PCMU: g711.ULAW_ENCODE, g711.Codec.PCMA: g711.ALAW_ENCODE}
_SILENCE_PAYLOAD = {c: bytes([c.silence]) * SAMPLES_PER_TICK for c in g711.Codec}
_SILENT_ROW: Int16Array = np.zeros(SAMPLES_PER_TICK, dtype=np.int16)
_SILENT_ROW.setflags(write=False)
_SUBFRAME_SHIFTS = np.arange(2, dtype=np.int64)  # bit i of a frame's `present`: subframe i
_UNSPECIFIED = ("0.0.0.0", "::")
DTMF_KEYS = "0123456789*#ABCD"  # what send_digits accepts (case-insensitive A-D)
INBAND_TWIST_DB = 2.0  # in-band presses: the high tone this much below the low one
DEFAULT_MAX_RECORDING_SECONDS = 600.0  # a recording stops capturing after this long
DEFAULT_PREFILL_SAMPLES = 2 * SAMPLES_PER_TICK  # an unbridged leg's playout buffer
# The counters of `MediaCore.rtp_totals`, over every leg served.
RTP_COUNTERS = ("packets_in", "lost", "late", "duplicates", "malformed", "packets_out")


class Role(Enum):
    """How a leg takes part in its conference."""

    MEMBER = "member"  # hears everyone else, heard by everyone else
    LISTEN = "listen"  # a supervisor listening: hears everyone, heard by nobody
    WHISPER = "whisper"  # a supervisor coaching: hears everyone, heard only by its `coach` leg


_QUIET = {c: quiet_code_table(_DECODE[c].tolist()) for c in g711.Codec}
JITTER_COUNTERS = (
    "packets",
    "late",
    "duplicates",
    "overflows",
    "resyncs",
    "frames",
    "played",
    "concealed",
    "expanded",
    "buffering",
    "late_samples",
    "concealed_samples",
    "dropped_samples",
)


class DtmfMethod(Enum):
    """How a digit reached us."""

    RFC4733 = "rfc4733"
    INBAND = "inband"


DigitCallback = Callable[[Any, str, DtmfMethod], None]
InactiveCallback = Callable[[Any], None]
PlayDoneCallback = Callable[[Hashable, Hashable, bool], None]
SendTo = Callable[[bytes, Address], None]


# -- the schedule ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickSlot:
    """The tick to run now: its index, when it was due, how late it runs, and how many
    ticks before it were skipped (not run) to catch up."""

    index: int
    due: float
    lateness: float
    skipped: int


class TickSchedule:
    """Tick n is due at ``t0 + n · period``; pure arithmetic on the `now` it is given.

    `begin(now)` says which tick to run when the timer fires at `now`: the next one in
    order, or — when that one is more than `max_behind` periods overdue — the latest one
    due, the ones in between counted as skipped. `next_due` is when to fire next; it is
    always taken from the schedule, never from `now`, so late wake-ups do not drift.
    """

    def __init__(
        self, t0: float, period: float = TICK_SECONDS, max_behind: int = MAX_BEHIND_TICKS
    ) -> None:
        if period <= 0:
            raise ValueError(f"tick period must be positive, got {period}")
        if max_behind < 1:
            raise ValueError(f"max_behind must be at least 1, got {max_behind}")
        self.t0 = t0
        self.period = period
        self.max_behind = max_behind
        self.next_index = 0
        self.ticks = 0  # ticks run
        self.late_ticks = 0  # ticks run more than half a period after they were due
        self.skipped_ticks = 0
        self.max_lateness = 0.0

    def due_time(self, index: int) -> float:
        return self.t0 + index * self.period

    @property
    def next_due(self) -> float:
        return self.due_time(self.next_index)

    def begin(self, now: float) -> TickSlot:
        index = self.next_index
        lateness = now - self.due_time(index)
        skipped = 0
        if lateness > self.max_behind * self.period:
            latest = int((now - self.t0) // self.period)
            skipped = latest - index
            index = latest
            lateness = now - self.due_time(index)
            self.skipped_ticks += skipped
        if lateness > self.period / 2:
            self.late_ticks += 1
        self.max_lateness = max(self.max_lateness, lateness)
        self.ticks += 1
        self.next_index = index + 1
        return TickSlot(index, self.due_time(index), lateness, skipped)

    def restart(self, now: float) -> None:
        """Resume after an idle spell: the next tick (same index sequence) is due `now`."""
        self.t0 = now - self.next_index * self.period


# -- outbound audio -------------------------------------------------------------------


def _checked_samples(samples: object, what: str) -> Int16Array:
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype != np.int16:
        shape = getattr(samples, "shape", None)
        dtype = getattr(samples, "dtype", type(samples).__name__)
        raise ValueError(f"{what} must be 1-D int16 samples, got {dtype} {shape}")
    return cast(Int16Array, samples)


class OutboundSource:
    """Audio a leg starts with (`MediaCore.add_leg`'s `source`, or what its
    `source_factory` returns): int16 samples at 8 kHz, once or looped. It becomes the
    first item of the leg's play queue, reported to `on_play_done` under `tag`."""

    __slots__ = ("loop", "samples", "tag")

    def __init__(
        self, samples: npt.NDArray[np.generic], loop: bool = False, tag: Hashable = "source"
    ) -> None:
        data = _checked_samples(np.asarray(samples), "outbound audio")
        if loop and data.size == 0:
            raise ValueError("a looping outbound source needs at least one sample")
        self.samples: Int16Array = data
        self.loop = loop
        self.tag = tag


class _PlayItem:
    """One entry of a leg's play queue and how far it has played."""

    __slots__ = ("loop", "position", "samples", "size", "tag")

    def __init__(self, samples: Int16Array, tag: Hashable, loop: bool) -> None:
        self.samples = samples
        self.size = int(samples.size)
        self.tag = tag
        self.loop = loop
        self.position = 0


@dataclass(frozen=True, slots=True)
class _KeyPress:
    digit: str
    duration: int  # samples of tone (or of RFC 4733 event)
    gap: int  # samples of silence after it
    volume: int  # -dBm0


class _Keypad:
    """The key presses a leg is sending: the queue, and the press under way.

    Each press is sent the way the leg's media allows when it starts: as RFC 4733
    events when a telephone-event payload type is negotiated for sending, else as an
    in-band tone. `wait` counts the samples until the next press may start (its tone or
    event, then its gap); presses start on tick boundaries, so gaps round up to a tick.
    """

    __slots__ = ("duration", "level", "pending", "position", "rfc", "sender", "tone", "wait")

    def __init__(self) -> None:
        self.pending: deque[_KeyPress] = deque()
        self.sender: DtmfEventSender | None = None  # made at the first RFC 4733 press
        self.rfc = False  # an RFC 4733 press is being sent
        self.tone: tuple[float, float] | None = None  # (low, high) Hz of an in-band press
        self.position = 0  # samples of the in-band press rendered
        self.duration = 0
        self.level = 0.0  # dBm0 of the in-band low tone
        self.wait = 0

    def start(self, press: _KeyPress, telephone_event: int | None) -> None:
        self.wait = press.duration + press.gap
        if telephone_event is not None:
            sender = self.sender
            if sender is None:
                sender = self.sender = DtmfEventSender(telephone_event, volume=press.volume)
            sender.payload_type = telephone_event
            sender.volume = press.volume
            sender.press(press.digit, press.duration, 0)
            self.rfc = True
        else:
            self.tone = dtmf_frequencies(press.digit)
            self.position = 0
            self.duration = press.duration
            self.level = -float(press.volume)

    def tone_row(self) -> Int16Array:
        """The next tick of the in-band press (silence after its end)."""
        assert self.tone is not None
        low, high = self.tone
        n = min(SAMPLES_PER_TICK, self.duration - self.position)
        row = dual_tone(low, high, n, self.level, self.level - INBAND_TWIST_DB, self.position)
        self.position += n
        self.wait -= SAMPLES_PER_TICK
        if self.position >= self.duration:
            self.tone = None
        if n < SAMPLES_PER_TICK:
            row = np.concatenate((row, _SILENT_ROW[n:]))
        return row


# -- legs -----------------------------------------------------------------------------


def _g711(codec: object) -> g711.Codec:
    return g711.Codec[getattr(codec, "name", str(codec))]


@dataclass(slots=True)
class _PendingInband:
    digit: str
    started_at: float  # arrival timeline
    commit_at: float


class MediaLeg:
    """Everything the media plane keeps for one leg."""

    def __init__(
        self,
        key: Hashable,
        port: int,
        media: NegotiatedMedia,
        slot: int,
        now: float,
        rng: random.Random,
        cname: str = "hotline@localhost",
    ) -> None:
        self.key = key
        self.port = port
        self.slot = slot
        self.latch = SymmetricLatch()
        self.receiver = RtpReceiver(now=now, latch=self.latch)
        self.sender = RtpSender.with_random_start(rng)
        self.rtcp = RtcpSession(
            ssrc=self.sender.ssrc,
            cname=cname,
            now=now,
            receiver=self.receiver,
            sender=self.sender,
            rng=rng.random,
        )
        self.rtcp_sendto: SendTo | None = None  # the RTCP socket's raw sendto
        self.rtcp_source: Address | None = None  # where the peer's valid RTCP came from
        self.rtcp_mux = False
        self.rtcp_sent = 0  # RTCP datagrams sent (reports and BYE)
        self.rtcp_send_errors = 0
        self.rtcp_foreign = 0  # RTCP datagrams from a host that is not the peer
        self.events = DtmfEventReceiver()
        self.queue: list[tuple[int, g711.Codec, bytes]] = []  # (extended seq, codec, payload)
        self.reordered = False
        self.buffer = bytearray()  # inbound codes waiting for their tick
        self.buffer_codec: g711.Codec | None = None
        self.playing = False
        self.playlist: deque[_PlayItem] = deque()
        self.keypad: _Keypad | None = None  # key presses being sent
        self.capture: RecordingBuffer | None = None  # set while recording
        self.capture_rx: Int16Array = _SILENT_ROW  # this tick's blocks for the capture
        self.capture_tx: Int16Array = _SILENT_ROW
        self.sendto: SendTo | None = None
        self.sockets: list[socket.socket] = []  # its RTP and RTCP sockets (MediaLoop's)
        self.first_packet = True
        self.pending_inband: list[_PendingInband] = []
        self.inband_reported: deque[tuple[str, float]] = deque(maxlen=8)
        self.rfc_skipped: set[tuple[int, int]] = set()  # (ssrc, start_ts) copies of in-band keys
        self.rtcp_packets = 0
        self.rtcp_malformed = 0
        self.unknown_payload = 0
        self.underruns = 0
        self.overflow_samples = 0
        self.inactive_reported = False
        self.delay = 0.0  # seconds between arrival and analysis of the last tick's audio
        # Bridged (once the leg first joins a conference): inbound audio goes through an
        # adaptive jitter buffer and loss concealment instead of the fixed prefill.
        self.jitter: JitterBuffer | None = None
        self.jitter_codec: g711.Codec | None = None
        self.plc_slot = -1
        self.conference: Hashable | None = None
        self.role = Role.MEMBER
        self.coach: Hashable | None = None  # the leg a WHISPER leg is heard by
        self.gain = 1.0
        self.muted = False
        self.mix_row: Int16Array | None = None  # what the conference gives it this tick
        self.capture_paused = False
        self.media = media
        self.codec = g711.Codec.PCMU
        self.payload_type = 0
        self.rx_codecs: dict[int, g711.Codec] = {}
        self.event_types: frozenset[int] = frozenset()
        self.remote: Address | None = None
        self.sends = False
        self.receives = True
        self.apply(media, now)

    def apply(self, media: NegotiatedMedia, now: float) -> None:
        """Take a (re)negotiated media description."""
        self.media = media
        self.codec = _g711(media.codec)
        self.payload_type = media.payload_type
        self.rx_codecs = {pt: _g711(c) for pt, c in media.receive_codecs}
        te = media.receive_telephone_event
        self.event_types = frozenset() if te is None else frozenset({te})
        self.receiver.audio_payload_types = frozenset(self.rx_codecs)
        self.receiver.event_payload_types = self.event_types
        remote: Address | None = (media.remote_address, media.remote_port)
        if media.remote_address in ("0.0.0.0", "::") or media.remote_port == 0:
            remote = None
        if remote != self.remote:
            self.latch.reset(remote)
            self.latch.expected = remote
            self.remote = remote
            self.rtcp_source = None
        self.rtcp_mux = media.rtcp_mux
        self.sends = media.sends and remote is not None
        self.receives = media.receives
        self.receiver.touch(now)
        self.inactive_reported = False

    @property
    def destination(self) -> Address | None:
        """Where RTP goes: the latched source (symmetric RTP), else the SDP address."""
        return self.latch.remote

    @property
    def rtcp_destination(self) -> Address | None:
        """Where RTCP goes. With rtcp-mux, where RTP goes. Otherwise: where the peer's
        RTCP comes from (symmetric RTCP, RFC 4961); else, when symmetric latching moved
        RTP away from the SDP address, the latched source's port + 1; else the SDP RTCP
        address (none when its port is 0 or its address unspecified)."""
        latch = self.latch
        if self.rtcp_mux:
            return latch.remote
        if self.rtcp_source is not None:
            return self.rtcp_source
        latched = latch.latched
        if latched is not None and latched != latch.expected and latched[1] < 65535:
            return (latched[0], latched[1] + 1)
        media = self.media
        if media.remote_rtcp_port == 0 or media.remote_rtcp_address in _UNSPECIFIED:
            return None
        return (media.remote_rtcp_address, media.remote_rtcp_port)

    @property
    def rtcp_send(self) -> SendTo | None:
        """The socket RTCP leaves from: the RTP socket with rtcp-mux, else port + 1."""
        return self.sendto if self.rtcp_mux else self.rtcp_sendto

    def rtcp_peer(self, source: Address) -> bool:
        """May RTCP from `source` speak for this leg's peer? Only from the host RTP is
        exchanged with or the SDP's RTCP host, so a stray sender cannot forge reports
        or a BYE about the call."""
        host: str = source[0]
        remote = self.latch.remote
        if remote is not None and host == remote[0]:
            return True
        return host == self.media.remote_rtcp_address

    def take_recording(self) -> Recording | None:
        """End the leg's recording and return it (None when it was not recording).
        After `MediaCore.remove_leg` this is how a recording still running is kept."""
        capture = self.capture
        if capture is None:
            return None
        self.capture = None
        self.capture_rx = self.capture_tx = _SILENT_ROW
        return capture.finish()


@dataclass(frozen=True, slots=True)
class LegSummary:
    """What the call's detail record keeps of an ended leg: picklable, so a media
    worker process can hand it back."""

    quality: CallQuality  # the leg's RTCP figures
    max_jitter_ms: float  # the highest interarrival jitter measured on it
    packets_in: int
    packets_out: int
    playout_ms: float  # the playout delay its audio had at the end


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did (for tests and figures)."""

    index: int
    inbound_keys: tuple[Hashable, ...]  # legs whose audio was decoded, in block order
    inbound: Int16Array  # their decoded samples, (len(inbound_keys) × 160)
    sent: int  # RTP packets sent
    rtcp_sent: int = 0  # RTCP compound reports sent


def check_role(key: Hashable, role: Role, coach: Hashable | None) -> None:
    """ValueError unless `coach` fits `role`: a WHISPER leg needs another leg as the
    one that hears it; no other role has one."""
    if role is Role.WHISPER:
        if coach is None or coach == key:
            raise ValueError("a whispering leg needs another leg as its coach target")
    elif coach is not None:
        raise ValueError(f"only a WHISPER leg has a coach target, not {role.value}")


def _check_recording_seconds(seconds: float) -> None:
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a recording's length limit must be positive seconds, got {seconds}")


# -- the pure core --------------------------------------------------------------------


class MediaCore:
    """The legs and the work of one tick, without sockets or a clock.

    `prefill_samples`: inbound audio a leg buffers before it starts playing out (and
    again after an underrun): 320 absorbs 30 ms packetisation against the 20 ms tick.
    `max_buffer_samples`: beyond this the oldest buffered audio is dropped.
    `cname`: the RTCP canonical name every leg reports (``hotline@<host>``).
    RTCP reports are sent only by ticks given an `ntp_now`.
    `on_play_done(leg_key, tag, completed)`: an item of a leg's play queue finished
    (True: its last sample went out this tick) or was dropped by `stop_playback` (False).
    `source_factory`: what each new leg plays first, unless `add_leg` is given a source.
    `max_recording_seconds`: a recording stops capturing after this much audio.
    """

    def __init__(
        self,
        *,
        on_digit: DigitCallback,
        on_inactive: InactiveCallback,
        inactivity_timeout: float = 30.0,
        rng: random.Random | None = None,
        prefill_samples: int = DEFAULT_PREFILL_SAMPLES,
        max_buffer_samples: int = 10 * SAMPLES_PER_TICK,
        claim_guard: float = 0.1,
        source_factory: Callable[[], OutboundSource | None] | None = None,
        cname: str = "hotline@localhost",
        on_play_done: PlayDoneCallback | None = None,
        max_recording_seconds: float = DEFAULT_MAX_RECORDING_SECONDS,
    ) -> None:
        if prefill_samples < SAMPLES_PER_TICK:
            raise ValueError(
                f"prefill_samples must be at least {SAMPLES_PER_TICK}, got {prefill_samples}"
            )
        if max_buffer_samples < prefill_samples + SAMPLES_PER_TICK:
            raise ValueError("max_buffer_samples must exceed prefill_samples by a tick at least")
        if inactivity_timeout <= 0:
            raise ValueError(f"inactivity timeout must be positive, got {inactivity_timeout}")
        _check_recording_seconds(max_recording_seconds)
        self.on_digit = on_digit
        self.on_play_done = on_play_done
        self.max_recording_seconds = max_recording_seconds
        self.on_inactive = on_inactive
        self.inactivity_timeout = inactivity_timeout
        self.rng = rng or random.Random()
        self.prefill = prefill_samples
        self.max_buffer = max_buffer_samples
        self.claim_guard = claim_guard
        self.source_factory = source_factory
        self.cname = cname
        self.bank = DtmfDetectorBank()
        self.legs: dict[Hashable, MediaLeg] = {}
        self._by_slot: dict[int, MediaLeg] = {}
        self._rx_active: set[MediaLeg] = set()  # legs with queued or buffered audio
        self._dtmf_open: set[MediaLeg] = set()  # legs whose RFC 4733 receiver may time out
        self._rfc_events: list[tuple[MediaLeg, DtmfEvent, float]] = []
        self._inband_pending: set[MediaLeg] = set()
        self._capturing: set[MediaLeg] = set()  # legs whose recording is capturing
        # (when to look at the leg's RTCP timer, tie-break, leg): one entry per leg;
        # entries of removed legs are dropped when they come up.
        self._rtcp_due: list[tuple[float, int, MediaLeg]] = []
        self._rtcp_order = itertools.count()
        self.plc = ConcealmentBank()
        self._bridged: dict[MediaLeg, None] = {}  # legs with a jitter buffer, in order
        self._plan: MixPlan | None = None  # None: the layout changed, rebuild it
        self._plan_gain: npt.NDArray[np.float32] | None = None
        self._plan_muted: npt.NDArray[np.bool_] | None = None
        self.jitter_ended = dict.fromkeys(JITTER_COUNTERS, 0)
        self.last_index = -1
        self.digits = 0
        self.ended = dict.fromkeys(RTP_COUNTERS, 0)

    # -- legs --------------------------------------------------------------------

    def add_leg(
        self,
        key: Hashable,
        port: int,
        media: NegotiatedMedia,
        now: float,
        *,
        source: OutboundSource | None = None,
        sendto: SendTo | None = None,
        rtcp_sendto: SendTo | None = None,
    ) -> MediaLeg:
        """Serve a new leg from the next tick. `sendto` sends from its RTP socket and
        `rtcp_sendto` from its RTCP socket (the asyncio side sets them once they open)."""
        if key in self.legs:
            raise ValueError(f"media leg {key!r} already exists")
        if source is None and self.source_factory is not None:
            source = self.source_factory()
        leg = MediaLeg(key, port, media, self.bank.add_leg(), now, self.rng, self.cname)
        leg.sendto = sendto
        leg.rtcp_sendto = rtcp_sendto
        if source is not None:
            leg.playlist.append(_PlayItem(source.samples, source.tag, source.loop))
        self.legs[key] = leg
        self._by_slot[leg.slot] = leg
        self._schedule_rtcp(leg, leg.rtcp.next_deadline())
        return leg

    def update(self, key: Hashable, media: NegotiatedMedia, now: float) -> None:
        leg = self.legs.get(key)
        if leg is not None:
            leg.apply(media, now)

    def remove_leg(
        self,
        key: Hashable,
        now: float | None = None,
        ntp_now: int | None = None,
        reason: str | None = None,
    ) -> MediaLeg | None:
        """Stop serving the leg and return it (its `rtcp.quality()` is the call's final
        figures). Given the time, send the leg's RTCP BYE first — when it has sent any
        RTP or RTCP at all (RFC 3550 §6.3.7) and has somewhere to send it.

        Its play queue and key presses are dropped without reports. A recording still
        running is kept: `take_recording()` on the returned leg yields it."""
        leg = self.legs.pop(key, None)
        if leg is None:
            return None
        if now is not None and ntp_now is not None and (leg.sender.packets_sent or leg.rtcp_sent):
            self._send_rtcp(leg, leg.rtcp.bye(now, ntp_now, reason))
        self._add_totals(self.ended, leg)
        self.bank.remove_leg(leg.slot)
        del self._by_slot[leg.slot]
        self._rx_active.discard(leg)
        self._dtmf_open.discard(leg)
        self._inband_pending.discard(leg)
        self._capturing.discard(leg)
        self._rfc_events = [e for e in self._rfc_events if e[0] is not leg]
        if leg.jitter is not None:
            self._add_jitter_totals(self.jitter_ended, leg.jitter)
            self.plc.remove_leg(leg.plc_slot)
            del self._bridged[leg]
            self._plan = None
        leg.playlist.clear()
        leg.keypad = None
        return leg

    def leg_quality(self, key: Hashable) -> CallQuality | None:
        """The leg's RTCP figures so far (None for no such leg)."""
        leg = self.legs.get(key)
        return None if leg is None else leg.rtcp.quality()

    def summarise(self, leg: MediaLeg) -> LegSummary:
        """The leg's figures for the call record (of a live or a removed leg)."""
        if leg.jitter is not None:
            stats = leg.jitter.stats()
            playout = stats.delay if stats.delay is not None else stats.target_delay
        else:
            playout = self.prefill / SAMPLE_RATE
        received = leg.receiver.stats()
        return LegSummary(
            quality=leg.rtcp.quality(),
            max_jitter_ms=received.max_jitter_ms,
            packets_in=received.packets,
            packets_out=leg.sender.packets_sent,
            playout_ms=1000 * playout,
        )

    @staticmethod
    def _add_totals(totals: dict[str, int], leg: MediaLeg) -> None:
        stats = leg.receiver.stats()
        totals["packets_in"] += stats.packets
        totals["lost"] += max(0, stats.lost)
        totals["late"] += stats.late
        totals["duplicates"] += stats.duplicates
        totals["malformed"] += stats.malformed
        totals["packets_out"] += leg.sender.packets_sent

    def rtp_totals(self) -> dict[str, int]:
        """RTP counters over every leg served so far (ended and live): for metrics."""
        totals = dict(self.ended)
        for leg in self.legs.values():
            self._add_totals(totals, leg)
        return totals

    def _leg(self, key: Hashable) -> MediaLeg:
        leg = self.legs.get(key)
        if leg is None:
            raise KeyError(f"no media leg {key!r}")
        return leg

    @staticmethod
    def _add_jitter_totals(totals: dict[str, int], jitter: JitterBuffer) -> None:
        stats = jitter.stats()
        for name in JITTER_COUNTERS:
            totals[name] += getattr(stats, name)

    def jitter_totals(self) -> dict[str, int]:
        """Jitter-buffer counters over every bridged leg so far (ended and live)."""
        totals = dict(self.jitter_ended)
        for leg in self._bridged:
            assert leg.jitter is not None
            self._add_jitter_totals(totals, leg.jitter)
        return totals

    # -- conferences ----------------------------------------------------------------------

    def join(
        self,
        key: Hashable,
        conference: Hashable,
        *,
        role: Role = Role.MEMBER,
        coach: Hashable | None = None,
    ) -> None:
        """Put the leg into `conference` (any hashable the engine chooses) from the next
        tick: it hears the mix-minus of the others (what its role allows) whenever its
        play queue and key presses are idle. The first time a leg joins a conference its
        inbound audio moves to an adaptive jitter buffer with loss concealment, for the
        rest of its life. A WHISPER leg needs `coach`, the member that alone hears it."""
        leg = self._leg(key)
        check_role(key, role, coach)
        if leg.jitter is None:
            self._start_jitter(leg)
        leg.conference = conference
        leg.role = role
        leg.coach = coach
        self._plan = None

    def leave(self, key: Hashable) -> None:
        """Take the leg out of its conference: nobody hears it, it hears only its play
        queue (e.g. hold music) or silence. Its jitter buffer goes on."""
        leg = self._leg(key)
        if leg.conference is not None:
            leg.conference = None
            leg.role = Role.MEMBER
            leg.coach = None
            leg.mix_row = None
            self._plan = None

    def conference_of(self, key: Hashable) -> Hashable | None:
        return self._leg(key).conference

    def members(self, conference: Hashable) -> list[Hashable]:
        """The legs in `conference`, in the order they were bridged."""
        return [leg.key for leg in self._bridged if leg.conference == conference]

    def set_gain(self, key: Hashable, gain: float) -> None:
        """How loudly the others hear this leg (1.0 as received, at most 16)."""
        if not (math.isfinite(gain) and 0.0 <= gain <= 16.0):
            raise ValueError(f"gain must be within 0..16, got {gain}")
        self._leg(key).gain = float(gain)
        self._plan = None

    def set_muted(self, key: Hashable, muted: bool) -> None:
        """A muted leg is heard by nobody in its conference (it still hears them)."""
        self._leg(key).muted = bool(muted)
        self._plan = None

    def pause_recording(self, key: Hashable, paused: bool) -> None:
        """While paused, the leg's recording gets silence on both channels (a sensitive
        entry being spoken), so the file keeps its timing."""
        self._leg(key).capture_paused = bool(paused)

    def jitter_stats(self, key: Hashable) -> Any:
        """The leg's jitter-buffer statistics (None before it was bridged)."""
        leg = self._leg(key)
        return None if leg.jitter is None else leg.jitter.stats()

    def _start_jitter(self, leg: MediaLeg, codec: g711.Codec | None = None) -> None:
        codec = codec or leg.buffer_codec or leg.codec
        leg.jitter = JitterBuffer(fill=codec.silence, quiet_codes=_QUIET[codec])
        leg.jitter_codec = codec
        if leg.plc_slot < 0:
            leg.plc_slot = self.plc.add_leg()
            self._bridged[leg] = None
            self._plan = None
        else:
            self.plc.reset(leg.plc_slot)
        # What waited in the fixed buffer is dropped: the jitter buffer starts afresh.
        leg.queue.clear()
        leg.buffer.clear()
        leg.playing = False
        self._rx_active.discard(leg)

    # -- what legs play ------------------------------------------------------------

    def play(
        self, key: Hashable, samples: npt.NDArray[np.int16], *, tag: Hashable, loop: bool = False
    ) -> None:
        """Queue 8 kHz int16 `samples` on the leg: they play right after what is queued
        before them. A looping item plays until `stop_playback`, so nothing can be queued
        behind it. The samples are played in place, not copied: do not modify them.
        Raises KeyError for an unknown leg, ValueError for anything else amiss."""
        leg = self._leg(key)
        data = _checked_samples(samples, "played audio")
        if loop and data.size == 0:
            raise ValueError(f"a looping item needs at least one sample (tag {tag!r})")
        playlist = leg.playlist
        if playlist and playlist[-1].loop:
            raise ValueError(
                f"media leg {key!r} is playing a looping item (tag {playlist[-1].tag!r}):"
                f" nothing queued behind it would play; call stop_playback first"
            )
        playlist.append(_PlayItem(data, tag, loop))

    def stop_playback(self, key: Hashable) -> None:
        """Drop everything queued on the leg at once (barge-in): the next tick sends
        silence. Each dropped item is reported to `on_play_done` with completed=False."""
        leg = self._leg(key)
        if not leg.playlist:
            return
        dropped = list(leg.playlist)
        leg.playlist.clear()
        for item in dropped:
            self._play_done(key, item.tag, False)

    def is_playing(self, key: Hashable) -> bool:
        """Is anything queued on the leg (playing, or waiting while the leg cannot send)?"""
        return bool(self._leg(key).playlist)

    def send_digits(
        self,
        key: Hashable,
        digits: str,
        *,
        duration: float = 0.1,
        gap: float = 0.07,
        volume: int = 10,
    ) -> None:
        """Queue key presses (0-9, *, #, A-D) on the leg: each `duration` seconds long,
        then `gap` seconds of silence, at `volume` (−dBm0: the RFC 4733 power level, and
        the level of an in-band press's low tone). While presses are under way they take
        the place of the play queue, which resumes after the last gap; like the play
        queue, they wait while the leg cannot send. `stop_playback` leaves them be."""
        leg = self._leg(key)
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(
                f"key press duration must be a positive number of seconds, got {duration}"
            )
        if not math.isfinite(gap) or gap < 0:
            raise ValueError(f"gap between key presses must be >= 0 seconds, got {gap}")
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 63:
            raise ValueError(f"volume must be an integer -dBm0 level 0..63, got {volume!r}")
        samples = round(duration * SAMPLE_RATE)
        if samples < 1:
            raise ValueError(f"key press duration {duration} s is shorter than one sample")
        pause = round(gap * SAMPLE_RATE)
        presses = []
        for digit in digits:
            if len(digit) != 1 or digit.upper() not in DTMF_KEYS:
                raise ValueError(
                    f"not a DTMF key: {digit!r} in {digits!r} (expected 0-9, *, # or A-D)"
                )
            presses.append(_KeyPress(digit.upper(), samples, pause, volume))
        if not presses:
            return
        keypad = leg.keypad
        if keypad is None:
            keypad = leg.keypad = _Keypad()
        keypad.pending.extend(presses)

    # -- recording -------------------------------------------------------------------

    def start_recording(
        self,
        key: Hashable,
        *,
        inbound: bool = True,
        outbound: bool = True,
        max_seconds: float | None = None,
    ) -> None:
        """Capture the leg's audio from the next tick: what it receives (`inbound`, the
        caller) and what it sends (`outbound`), as two aligned channels, for at most
        `max_seconds` (default: the core's `max_recording_seconds`). Raises ValueError
        when the leg is already recording or neither direction is asked for."""
        leg = self._leg(key)
        if leg.capture is not None:
            raise ValueError(f"media leg {key!r} is already recording")
        seconds = self.max_recording_seconds if max_seconds is None else max_seconds
        _check_recording_seconds(seconds)
        leg.capture = RecordingBuffer(
            inbound=inbound,
            outbound=outbound,
            max_frames=max(1, round(seconds * SAMPLE_RATE)),
            sample_rate=SAMPLE_RATE,
        )
        self._capturing.add(leg)

    def stop_recording(self, key: Hashable) -> Recording | None:
        """End the leg's recording and return it (None when it was not recording)."""
        leg = self._leg(key)
        self._capturing.discard(leg)
        return leg.take_recording()

    def is_recording(self, key: Hashable) -> bool:
        """Has the leg a recording (capturing, or stopped at its limit and not taken)?"""
        return self._leg(key).capture is not None

    def _play_done(self, key: Hashable, tag: Hashable, completed: bool) -> None:
        callback = self.on_play_done
        if callback is None:
            return
        try:
            callback(key, tag, completed)
        except Exception:
            log.exception("play-done callback failed for %r (tag %r)", key, tag)

    # -- the per-packet path ---------------------------------------------------------

    def receive_rtp(self, leg: MediaLeg, data: bytes, source: Address | None, now: float) -> None:
        arrival = leg.receiver.receive(data, now, source)
        if arrival is None:
            return
        pt = arrival.payload_type
        if pt in leg.event_types:
            events = leg.events.receive_arrival(arrival, now)
            for event in events:
                self._rfc_events.append((leg, event, now))
            self._dtmf_open.add(leg)
            return
        codec = leg.rx_codecs.get(pt)
        if codec is None:
            leg.unknown_payload += 1
            return
        status = arrival.status
        jitter = leg.jitter
        if jitter is not None:
            if status is _JUMP:
                return
            if codec is not leg.jitter_codec:  # a codec switch: the stream starts over
                old = jitter
                self._start_jitter(leg, codec)
                assert leg.jitter is not None
                self._add_jitter_totals(self.jitter_ended, old)
                jitter = leg.jitter
            jitter.put(
                arrival.extended_sequence,
                arrival.timestamp,
                data[arrival.payload_start : arrival.payload_end],
                now,
                ssrc=arrival.ssrc,
                resync=arrival.resync is not None,
            )
            return
        if status is _DUPLICATE or status is _JUMP:
            return
        if status is _LATE:
            leg.reordered = True
        leg.queue.append(
            (arrival.extended_sequence, codec, data[arrival.payload_start : arrival.payload_end])
        )
        self._rx_active.add(leg)

    def receive_rtcp(
        self, leg: MediaLeg, data: bytes, source: Address | None, now: float, ntp_now: int
    ) -> None:
        """One RTCP datagram for `leg` from `source`, arrived at `now` (NTP `ntp_now`).
        Datagrams from hosts other than the peer's are counted and dropped; the source
        of a well-formed one becomes where this leg's RTCP goes (symmetric RTCP)."""
        leg.rtcp_packets += 1
        if source is not None and not leg.rtcp_peer(source):
            leg.rtcp_foreign += 1
            return
        session = leg.rtcp
        malformed = session.malformed
        session.receive(data, now, ntp_now)
        if session.malformed != malformed:
            leg.rtcp_malformed += 1
        elif source is not None and not leg.rtcp_mux:
            leg.rtcp_source = source

    # -- the tick -------------------------------------------------------------------------

    def tick(
        self, index: int, now: float, skipped: int = 0, ntp_now: int | None = None
    ) -> TickReport:
        """Run tick `index` (its samples are index·160 … index·160+159 of the media
        timeline) at `now`; `skipped` ticks before it were not run. `ntp_now` is the
        NTP wall-clock time of `now`; without it no RTCP reports are sent this tick."""
        if index <= self.last_index:
            raise ValueError(f"tick {index} is not after the last tick {self.last_index}")
        self.last_index = index
        self._dtmf_timers(now)
        keys, block = self._inbound(index, now)
        if self._bridged:
            self._bridge(now)
        self._rfc_digits(index)
        self._commit_inband(now)
        done: list[tuple[Hashable, Hashable]] = []
        sent = self._outbound(now, skipped, done)
        if self._capturing:
            self._capture(skipped)
        rtcp_sent = 0 if ntp_now is None else self._rtcp_reports(now, ntp_now)
        if index % INACTIVITY_CHECK_TICKS == 0:
            self._check_inactive(now)
        for key, tag in done:
            self._play_done(key, tag, True)
        return TickReport(index, keys, block, sent, rtcp_sent)

    def _dtmf_timers(self, now: float) -> None:
        if not self._dtmf_open:
            return
        for leg in list(self._dtmf_open):
            deadline = leg.events.next_deadline()
            if deadline is None:
                self._dtmf_open.discard(leg)
            elif deadline <= now:
                for event in leg.events.handle_timer(now):
                    self._rfc_events.append((leg, event, now))

    def _inbound(self, index: int, now: float) -> tuple[tuple[Hashable, ...], Int16Array]:
        groups: dict[g711.Codec, tuple[list[bytes], list[MediaLeg]]] = {}
        prefill, max_buffer = self.prefill, self.max_buffer
        for leg in list(self._rx_active):
            buffer = leg.buffer
            queue = leg.queue
            if queue:
                if leg.reordered:
                    queue.sort(key=lambda item: item[0])
                    leg.reordered = False
                for _seq, codec, payload in queue:
                    if codec is not leg.buffer_codec:
                        buffer.clear()
                        leg.buffer_codec = codec
                        leg.playing = False
                    buffer += payload
                queue.clear()
                excess = len(buffer) - max_buffer
                if excess > 0:
                    drop = len(buffer) - prefill
                    del buffer[:drop]
                    leg.overflow_samples += drop
            n = len(buffer)
            if not leg.playing:
                if n < prefill:
                    if n == 0:
                        self._rx_active.discard(leg)
                    continue
                leg.playing = True
            if n < SAMPLES_PER_TICK:
                leg.playing = False
                leg.underruns += 1
                if n == 0:
                    self._rx_active.discard(leg)
                continue
            leg.delay = n / SAMPLE_RATE
            assert leg.buffer_codec is not None
            chunks, members = groups.setdefault(leg.buffer_codec, ([], []))
            chunks.append(bytes(buffer[:SAMPLES_PER_TICK]))
            del buffer[:SAMPLES_PER_TICK]
            members.append(leg)
        if not groups:
            return (), np.zeros((0, SAMPLES_PER_TICK), dtype=np.int16)
        blocks: list[Int16Array] = []
        legs: list[MediaLeg] = []
        for codec, (chunks, members) in groups.items():
            codes = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(-1, SAMPLES_PER_TICK)
            blocks.append(_DECODE[codec].take(codes))
            legs.extend(members)
        block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        slots = np.fromiter((leg.slot for leg in legs), dtype=np.intp, count=len(legs))
        for event in self.bank.process(block, slots, index):
            self._inband_event(event, index, now)
        if self._capturing:
            for row, leg in enumerate(legs):
                if leg.capture is not None:
                    leg.capture_rx = block[row].copy()  # not a view: the block is big
        return tuple(leg.key for leg in legs), block

    def _bridge(self, now: float) -> None:
        """This tick of every bridged leg: one frame from each jitter buffer, decoded,
        concealed where it did not arrive (all legs in one call), then mix-minus over
        every conference at once; each leg's `mix_row` is what it hears."""
        legs = list(self._bridged)
        n = len(legs)
        payloads: list[bytes] = []
        bits = np.empty(n, dtype=np.int64)
        alaw: list[int] = []
        pcma = g711.Codec.PCMA
        for row, leg in enumerate(legs):
            jitter = leg.jitter
            assert jitter is not None
            frame = jitter.get(now)
            payloads.append(frame.payload)
            bits[row] = frame.present
            if leg.jitter_codec is pcma:
                alaw.append(row)
        codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, SAMPLES_PER_TICK)
        decoded = _DECODE[g711.Codec.PCMU].take(codes)
        if alaw:
            decoded[alaw] = _DECODE[pcma].take(codes[alaw])
        present = (bits[:, None] >> _SUBFRAME_SHIFTS) & 1 == 1
        slots = np.fromiter((leg.plc_slot for leg in legs), dtype=np.intp, count=n)
        heard = self.plc.process(decoded, slots, present)
        if self._capturing:
            for row, leg in enumerate(legs):
                if leg.capture is not None:
                    leg.capture_rx = heard[row].copy()
        plan = self._plan
        if plan is None:
            plan = self._make_plan(legs)
        if plan.conferences == 0:
            for leg in legs:
                leg.mix_row = None
            return
        mixed = plan.mix(heard, self._plan_gain, self._plan_muted)
        for row, leg in enumerate(legs):
            leg.mix_row = mixed[row] if leg.conference is not None else None

    def _make_plan(self, legs: list[MediaLeg]) -> MixPlan:
        """The mix layout of the bridged legs (rebuilt only when it changes)."""
        ids: dict[Hashable, int] = {}
        conference = np.full(len(legs), -1, dtype=np.int64)
        rows: dict[Hashable, list[int]] = {}
        for row, leg in enumerate(legs):
            if leg.conference is None:
                continue
            cid = ids.setdefault(leg.conference, len(ids))
            conference[row] = cid
            rows.setdefault(leg.conference, []).append(row)
        hearing: list[Hearing] = []
        row_of = {leg.key: row for row, leg in enumerate(legs)}
        for members in rows.values():
            special = [r for r in members if legs[r].role is not Role.MEMBER]
            if not special or len(members) < 2:
                continue
            k = len(members)
            index = {r: i for i, r in enumerate(members)}
            matrix = [[0.0 if i == j else 1.0 for j in range(k)] for i in range(k)]
            for r in special:
                j = index[r]
                for i in range(k):
                    matrix[i][j] = 0.0  # nobody hears a supervisor …
                leg = legs[r]
                target = row_of.get(leg.coach) if leg.role is Role.WHISPER else None
                if target is not None and target in index and target != r:
                    matrix[index[target]][j] = 1.0  # … but the coached agent
            hearing.append(Hearing(tuple(members), tuple(tuple(line) for line in matrix)))
        plan = MixPlan(conference, hearing)
        gains = np.fromiter((leg.gain for leg in legs), dtype=np.float32, count=len(legs))
        muted = np.fromiter((leg.muted for leg in legs), dtype=np.bool_, count=len(legs))
        self._plan_gain = None if bool(np.all(gains == 1.0)) else gains
        self._plan_muted = muted if bool(muted.any()) else None
        self._plan = plan
        return plan

    def _sample_time(self, leg: MediaLeg, sample: int, index: int, now: float) -> float:
        """Arrival-timeline time of a sample of the tick timeline."""
        return now + (sample - index * SAMPLES_PER_TICK) / SAMPLE_RATE - leg.delay

    def _inband_event(
        self, event: InbandDigitStarted | InbandDigitEnded, index: int, now: float
    ) -> None:
        leg = self._by_slot.get(event.slot)
        if leg is None:
            return
        if isinstance(event, InbandDigitStarted):
            started = self._sample_time(leg, event.start_sample, index, now)
            detected = self._sample_time(leg, event.detected_sample, index, now)
            if leg.events.claims(event.digit, started, detected):
                return
            leg.pending_inband.append(_PendingInband(event.digit, started, now + self.claim_guard))
            self._inband_pending.add(leg)
        elif event.suppressed:
            leg.pending_inband = [p for p in leg.pending_inband if p.digit != event.digit]

    def _commit_inband(self, now: float) -> None:
        if not self._inband_pending:
            return
        for leg in list(self._inband_pending):
            keep: list[_PendingInband] = []
            for pending in leg.pending_inband:
                if pending.commit_at > now:
                    keep.append(pending)
                elif not leg.events.claims(pending.digit, pending.started_at, now):
                    leg.inband_reported.append((pending.digit, pending.started_at))
                    self._report(leg, pending.digit, DtmfMethod.INBAND)
            leg.pending_inband = keep
            if not keep:
                self._inband_pending.discard(leg)

    def _rfc_digits(self, index: int) -> None:
        if not self._rfc_events:
            return
        events, self._rfc_events = self._rfc_events, []
        guard = self.claim_guard
        suppress_ahead = self.prefill + round(guard * SAMPLE_RATE)
        for leg, event, _at in events:
            # An in-band copy of this press is in audio that arrived up to now; it is
            # analysed up to a playout buffer later. Tones of this key starting before
            # then (plus the guard) are the same press.
            self.bank.suppress(
                leg.slot, (index + 1) * SAMPLES_PER_TICK + suppress_ahead, event.digit
            )
            if isinstance(event, DigitEnded):
                continue
            ident = (event.ssrc, event.start_ts)
            if any(
                digit == event.digit and abs(started - event.started_at) <= guard + 0.1
                for digit, started in leg.inband_reported
            ):
                leg.rfc_skipped.add(ident)
                continue
            leg.pending_inband = [p for p in leg.pending_inband if p.digit != event.digit]
            self._report(leg, event.digit, DtmfMethod.RFC4733)

    def _report(self, leg: MediaLeg, digit: str, method: DtmfMethod) -> None:
        self.digits += 1
        try:
            self.on_digit(leg.key, digit, method)
        except Exception:
            log.exception("digit callback failed for %r", leg.key)

    def _outbound(self, now: float, skipped: int, done: list[tuple[Hashable, Hashable]]) -> int:
        """Render, encode and send every leg's packet of this tick; items of the play
        queues that finished are added to `done`."""
        legs = self.legs.values()
        if skipped:
            for leg in legs:
                leg.sender.advance(skipped * SAMPLES_PER_TICK)
        rows: dict[g711.Codec, list[Int16Array]] = {}
        members: dict[g711.Codec, list[MediaLeg]] = {}
        silent: list[MediaLeg] = []
        sent = 0
        for leg in legs:
            if not leg.sends or leg.sendto is None:
                leg.sender.advance(SAMPLES_PER_TICK, now=now)
                continue
            row: Int16Array | None = None
            keypad = leg.keypad
            if keypad is not None:
                keyed = self._key_tick(leg, keypad, now)
                if isinstance(keyed, list):
                    for packet in keyed:
                        sent += self._deliver(leg, packet)
                    continue
                row = keyed
            if row is None:
                playlist = leg.playlist
                if playlist:
                    item = playlist[0]
                    start = item.position
                    end = start + SAMPLES_PER_TICK
                    if end < item.size:  # the common case: the tick lies inside one item
                        item.position = end
                        row = item.samples[start:end]
                    else:
                        row = self._fill(leg, playlist, done)
                else:
                    row = leg.mix_row  # a bridged leg hears its conference
                    if row is None:
                        silent.append(leg)
                        continue
            codec = leg.codec
            group = rows.get(codec)
            if group is None:
                rows[codec] = [row]
                members[codec] = [leg]
            else:
                group.append(row)
                members[codec].append(leg)
            if leg.capture is not None:
                leg.capture_tx = row
        for codec, samples in rows.items():
            codes = _ENCODE[codec].take(np.stack(samples).view(np.uint16))
            for leg, code_row in zip(members[codec], codes, strict=True):
                sent += self._send(leg, code_row.tobytes(), now)
        for leg in silent:
            sent += self._send(leg, _SILENCE_PAYLOAD[leg.codec], now)
        return sent

    @staticmethod
    def _fill(
        leg: MediaLeg, playlist: deque[_PlayItem], done: list[tuple[Hashable, Hashable]]
    ) -> Int16Array:
        """One tick from the play queue when it crosses the end of an item: the items
        follow each other sample by sample, silence after the last one."""
        out = np.zeros(SAMPLES_PER_TICK, dtype=np.int16)
        filled = 0
        while playlist:
            item = playlist[0]
            need = SAMPLES_PER_TICK - filled
            start = item.position
            if item.loop:
                size = item.size
                if start + need <= size:
                    out[filled:] = item.samples[start : start + need]
                else:  # wraps, perhaps many times for a loop shorter than a tick
                    out[filled:] = item.samples[np.arange(start, start + need) % size]
                item.position = (start + need) % size
                break
            take = min(need, item.size - start)
            if take:
                out[filled : filled + take] = item.samples[start : start + take]
                filled += take
                item.position = start + take
            if item.position < item.size:
                break  # the tick is full; the item goes on in the next one
            playlist.popleft()  # its last sample is in this tick (an empty item has none)
            done.append((leg.key, item.tag))
        return out

    def _key_tick(
        self, leg: MediaLeg, keypad: _Keypad, now: float
    ) -> list[bytes] | Int16Array | None:
        """This tick of the leg's key presses: RFC 4733 packets to send instead of audio,
        or the audio to send (an in-band tone, or the silence of a gap), or None once
        the presses are over (the play queue has the tick)."""
        while True:
            if keypad.rfc:
                sender = keypad.sender
                assert sender is not None
                packets = sender.tick(leg.sender, SAMPLES_PER_TICK, now=now)
                if packets is None:  # nothing was under way after all
                    keypad.rfc = False
                    continue
                keypad.rfc = sender.busy
                keypad.wait -= SAMPLES_PER_TICK
                return packets
            if keypad.tone is not None:
                return keypad.tone_row()
            if keypad.wait > 0:
                keypad.wait -= SAMPLES_PER_TICK
                return _SILENT_ROW
            if not keypad.pending:
                leg.keypad = None
                return None
            keypad.start(keypad.pending.popleft(), leg.media.telephone_event)

    def _deliver(self, leg: MediaLeg, packet: bytes) -> int:
        destination = leg.latch.remote
        sendto = leg.sendto
        if destination is None or sendto is None:
            return 0
        try:
            sendto(packet, destination)
        except OSError as exc:
            log.debug("RTP send to %s failed: %s", destination, exc)
            return 0
        return 1

    def _capture(self, skipped: int) -> None:
        """Append this tick's blocks (and silence for skipped ticks) to every capture."""
        for leg in list(self._capturing):
            capture = leg.capture
            if capture is None:
                self._capturing.discard(leg)
                continue
            if skipped:
                capture.add_silence(skipped * SAMPLES_PER_TICK)
            if leg.capture_paused:
                capture.add_silence(SAMPLES_PER_TICK)
            else:
                capture.add(leg.capture_rx, leg.capture_tx)
            leg.capture_rx = leg.capture_tx = _SILENT_ROW
            if capture.truncated:  # audio beyond its limit came and was dropped
                self._capturing.discard(leg)

    def _send(self, leg: MediaLeg, payload: bytes, now: float) -> int:
        packet = leg.sender.next_packet(
            payload, leg.payload_type, SAMPLES_PER_TICK, leg.first_packet, now=now
        )
        leg.first_packet = False
        return self._deliver(leg, packet)

    # -- RTCP ----------------------------------------------------------------------------

    def _schedule_rtcp(self, leg: MediaLeg, when: float) -> None:
        heapq.heappush(self._rtcp_due, (when, next(self._rtcp_order), leg))

    def _rtcp_reports(self, now: float, ntp_now: int) -> int:
        """Send the compound report of every leg whose RTCP timer has expired."""
        due = self._rtcp_due
        legs = self.legs
        sent = 0
        looked = 0
        while due and due[0][0] <= now and looked < MAX_RTCP_PER_TICK:
            _when, _order, leg = heapq.heappop(due)
            if legs.get(leg.key) is not leg:
                continue  # removed
            looked += 1
            session = leg.rtcp
            deadline = session.next_deadline()
            if deadline > now:
                self._schedule_rtcp(leg, deadline)
                continue
            if leg.rtcp_destination is None or leg.rtcp_send is None:
                # Nowhere to send (on hold at 0.0.0.0, a=rtcp:0, socket not yet open):
                # keep the timer expired and look again later.
                self._schedule_rtcp(leg, now + RTCP_RETRY_SECONDS)
                continue
            data = session.handle_timer(now, ntp_now)
            if data is not None:
                sent += self._send_rtcp(leg, data)
            self._schedule_rtcp(leg, session.next_deadline())
        return sent

    def _send_rtcp(self, leg: MediaLeg, data: bytes) -> int:
        destination = leg.rtcp_destination
        sendto = leg.rtcp_send
        if destination is None or sendto is None:
            return 0
        try:
            sendto(data, destination)
        except OSError as exc:
            leg.rtcp_send_errors += 1
            log.debug("RTCP send to %s failed: %s", destination, exc)
            return 0
        leg.rtcp_sent += 1
        return 1

    def _check_inactive(self, now: float) -> None:
        timeout = self.inactivity_timeout
        for leg in list(self.legs.values()):
            if (
                leg.receives
                and not leg.inactive_reported
                and now - leg.receiver.last_activity >= timeout
            ):
                leg.inactive_reported = True
                try:
                    self.on_inactive(leg.key)
                except Exception:
                    log.exception("inactivity callback failed for %r", leg.key)


# -- the asyncio side -----------------------------------------------------------------

TICK_BUCKETS = (0.001, 0.002, 0.005, 0.010, 0.015, 0.020, 0.030, 0.050, 0.100, 0.250)
LOAD_SMOOTHING = 0.02  # per tick: the load average follows about the last second
OVERLOAD_LOAD = 0.8  # ticks busy (or late) for 80 % of their period: refuse new calls
OVERLOAD_HOLD = 2.0  # seconds after skipped ticks during which new calls are refused


def overloaded(load: float, last_skip: float, now: float) -> bool:
    """A media tick whose `load` is over `OVERLOAD_LOAD`, or that skipped ticks (last at
    `last_skip`) in the last `OVERLOAD_HOLD` seconds, takes no new calls."""
    return load > OVERLOAD_LOAD or now - last_skip < OVERLOAD_HOLD


MAX_READS_PER_SOCKET = 64  # datagrams read from one socket in one tick at most
RECEIVE_SIZE = 2048  # bytes: larger than any RTP or RTCP datagram a G.711 leg gets
MAX_STAMP_AGE = 5.0  # seconds: an older kernel timestamp means the wall clock stepped
# SO_TIMESTAMPNS (its control message type, SCM_TIMESTAMPNS, has the same number):
# Python does not export it; 35 on every Linux architecture that uses the generic
# socket options (x86, Arm, RISC-V, PowerPC, s390). Elsewhere the read time stands in.
_TIMESTAMPNS: int | None = getattr(
    socket,
    "SO_TIMESTAMPNS",
    35
    if sys.platform == "linux"
    and platform.machine() in {"x86_64", "i686", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x"}
    else None,
)
_TIMESPEC = struct.Struct("@ll")  # struct timespec: time_t and long, both C longs on Linux
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class Histogram:
    """Cumulative bucket counts, a sum and a count: what a metrics scrape reads (the
    media loop must not depend on a metrics library)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # observations <= bounds[i] (not cumulative)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                return

    def add(self, other: Histogram) -> None:
        """Count `other`'s observations here too (same bounds)."""
        if other.bounds != self.bounds:
            raise ValueError("histograms with different bounds cannot be added")
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), +inf last."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            total += n
            out.append((bound, total))
        out.append((float("inf"), self.count))
        return out


def _ntp_now() -> int:
    return ntp_from_unix(time.time())


def _write_recording(recording: Recording, path: Path) -> Recording | None:
    """Encode and write a WAV file atomically: a temporary file in the same directory,
    renamed over `path` once complete (its directory made, mode 0700, if missing). Runs
    in an executor thread."""
    data = recording_to_wav_bytes(recording)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return recording


class SocketReader:
    """Every leg's RTP and RTCP sockets, read once per tick.

    One readiness poll for all sockets (epoll on Linux), then one datagram from each
    ready socket per round, rounds repeated while sockets stay ready — at most
    `max_per_socket` datagrams from one socket per tick, the rest waiting in its
    kernel buffer for the next tick. A datagram's arrival time is the kernel's
    receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME) brought onto the loop's clock,
    so the jitter buffers and RTCP see when packets really came, not when the tick
    read them. Without kernel timestamps (another platform) the read time stands in.

    Why not a `DatagramProtocol` per socket: at 400 bridges the engine takes 40,000
    datagrams a second, each of which would then wait in the event loop's queue behind
    the others (and behind SIP) to be stamped with the loop's time — late, by however
    busy the loop was — and cost a callback; read here they cost a few per cent less
    CPU (bench/media_io.py measures both ways) and carry the kernel's own time.
    """

    def __init__(
        self,
        core: MediaCore,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
        max_per_socket: int = MAX_READS_PER_SOCKET,
    ) -> None:
        self.core = core
        self.clock = clock
        self.wall = wall
        self.max_per_socket = max_per_socket
        # epoll where there is one (Linux); poll(2) elsewhere. Both answer (fd, events)
        # pairs in C, where `selectors` would build a key per ready socket in Python.
        self._poller: Any = select.epoll() if hasattr(select, "epoll") else select.poll()
        self._by_fd: dict[int, tuple[Callable[..., Any], MediaLeg, bool]] = {}
        self._timestamps = _TIMESTAMPNS is not None
        self.read_errors = 0  # reads that failed (e.g. ICMP port unreachable reported)
        self.datagrams = 0

    def register(self, sock: socket.socket, leg: MediaLeg, rtcp: bool) -> None:
        if self._timestamps:
            try:
                sock.setsockopt(socket.SOL_SOCKET, cast(int, _TIMESTAMPNS), 1)
            except OSError:
                self._timestamps = False
        fd = sock.fileno()
        if fd in self._by_fd:
            raise ValueError(f"socket {fd} is already registered")
        self._poller.register(fd, select.POLLIN)
        self._by_fd[fd] = (sock.recvmsg, leg, rtcp)

    def unregister(self, sock: socket.socket) -> None:
        """Stop reading `sock` (before it is closed); unknown sockets are ignored."""
        fd = sock.fileno()
        if self._by_fd.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, OSError):
                self._poller.unregister(fd)

    def close(self) -> None:
        self._by_fd.clear()
        if hasattr(self._poller, "close"):
            self._poller.close()

    def __len__(self) -> int:
        return len(self._by_fd)

    def drain(self) -> int:
        """Read what every socket holds (up to the per-socket limit) into the core;
        returns the datagrams read."""
        poll = self._poller.poll
        by_fd = self._by_fd
        ready = poll(0)
        if not ready:
            return 0
        core = self.core
        now = self.clock()
        wall_now = self.wall()
        to_loop = now - wall_now  # a wall-clock stamp plus this is loop time
        space = _STAMP_SPACE if self._timestamps else 0
        unpack, stamp_size = _TIMESPEC.unpack, _TIMESPEC.size
        level_type = (socket.SOL_SOCKET, _TIMESTAMPNS)
        oldest = wall_now - MAX_STAMP_AGE
        receive_rtp, receive_rtcp = core.receive_rtp, core.receive_rtcp
        read = 0
        for _ in range(self.max_per_socket):
            for fd, _events in ready:
                entry = by_fd.get(fd)
                if entry is None:  # unregistered since the poll
                    continue
                recvmsg, leg, rtcp = entry
                try:
                    data, ancillary, _flags, source = recvmsg(RECEIVE_SIZE, space)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:  # an ICMP error for something this socket sent
                    self.read_errors += 1
                    log.debug("media socket of port %d: %s", leg.port + rtcp, exc)
                    continue
                read += 1
                wall = wall_now
                for level, kind, value in ancillary:
                    if (level, kind) == level_type and len(value) >= stamp_size:
                        seconds, nanos = unpack(value[:stamp_size])
                        stamp = seconds + nanos * 1e-9
                        if oldest <= stamp <= wall_now:
                            wall = stamp  # else a wall-clock step: the read time stands
                # RTCP on its own socket, or multiplexed on RTP's (RFC 5761 §4).
                if rtcp or (leg.rtcp_mux and len(data) > 1 and 192 <= data[1] <= 223):
                    receive_rtcp(leg, data, source, wall + to_loop, ntp_from_unix(wall))
                else:
                    receive_rtp(leg, data, source, wall + to_loop)
            ready = poll(0)
            if not ready:
                break
        self.datagrams += read
        return read


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A leg's RTP and RTCP sockets, bound to `port` and `port + 1` on `host`
    (non-blocking); OSError if either cannot be bound (neither is left open)."""
    rtp = _bind_udp(host, port)
    try:
        rtcp = _bind_udp(host, port + 1)
    except OSError:
        rtp.close()
        raise
    return rtp, rtcp


def _bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class MediaLoop:
    """The asyncio driver: sockets per leg, and the one tick timer for all of them."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        *,
        on_digit: DigitCallback,
        on_inactive: InactiveCallback,
        inactivity_timeout: float = 30.0,
        max_behind: int = MAX_BEHIND_TICKS,
        source_factory: Callable[[], OutboundSource | None] | None = None,
        on_play_done: PlayDoneCallback | None = None,
        max_recording_seconds: float = DEFAULT_MAX_RECORDING_SECONDS,
    ) -> None:
        self.loop = loop
        self.host = host
        self.core = MediaCore(
            on_digit=on_digit,
            on_inactive=on_inactive,
            inactivity_timeout=inactivity_timeout,
            source_factory=source_factory,
            cname=f"hotline@{host}",
            on_play_done=on_play_done,
            max_recording_seconds=max_recording_seconds,
        )
        self.schedule = TickSchedule(loop.time(), TICK_SECONDS, max_behind)
        self._handle: asyncio.TimerHandle | None = None
        self.reader = SocketReader(self.core, loop.time)
        self._closed = False
        self.tick_errors = 0
        self.tick_seconds = Histogram(TICK_BUCKETS)  # how long each tick took
        self.load = 0.0  # share of the tick period the ticks take (moving average, ~1 s)
        self.last_skip = -math.inf  # when ticks were last skipped to catch up
        self.tick_lateness = Histogram(TICK_BUCKETS)  # how late each tick began

    # -- legs ------------------------------------------------------------------------

    def add_leg(
        self,
        key: Hashable,
        port: int,
        media: NegotiatedMedia,
        *,
        source: OutboundSource | None = None,
        near: Hashable | None = None,
    ) -> MediaLeg:
        """Bind the leg's RTP and RTCP sockets now (raises OSError if it cannot) and
        start serving it from the next tick. (`near`, the leg it will be bridged with,
        matters only to `MediaWorkers`: here every leg shares the one tick.)"""
        if self._closed:
            raise RuntimeError("the media loop is closed")
        rtp, rtcp = bind_pair(self.host, port)
        return self.adopt_leg(key, port, media, (rtp, rtcp), source=source)

    def adopt_leg(
        self,
        key: Hashable,
        port: int,
        media: NegotiatedMedia,
        sockets: tuple[socket.socket, socket.socket],
        *,
        source: OutboundSource | None = None,
    ) -> MediaLeg:
        """Serve a leg on RTP and RTCP sockets bound already (to `port` and the one
        after it), from the next tick; the loop owns and closes them from now on, and
        closes them at once if the leg cannot be added."""
        rtp, rtcp = sockets
        if self._closed:
            rtp.close()
            rtcp.close()
            raise RuntimeError("the media loop is closed")
        try:
            leg = self.core.add_leg(key, port, media, self.loop.time(), source=source)
        except Exception:
            rtp.close()
            rtcp.close()
            raise
        # Read once per tick by the reader; sent to straight from the tick: one system
        # call per packet, no asyncio write buffering (a full socket buffer drops the
        # packet, which is what a real-time stream wants).
        leg.sockets = [rtp, rtcp]
        try:
            self.reader.register(rtp, leg, rtcp=False)
            self.reader.register(rtcp, leg, rtcp=True)
        except (OSError, ValueError):
            self.core.remove_leg(key)
            self._close_sockets(leg)
            raise
        leg.sendto = cast(SendTo, rtp.sendto)
        leg.rtcp_sendto = cast(SendTo, rtcp.sendto)
        if self._handle is None:
            self.schedule.restart(self.loop.time())
            self._handle = self.loop.call_at(self.schedule.next_due, self._fire)
        return leg

    def update(self, key: Hashable, media: NegotiatedMedia) -> None:
        self.core.update(key, media, self.loop.time())

    def remove_leg(self, key: Hashable, reason: str | None = None) -> MediaLeg | None:
        """Send the leg's RTCP BYE, close its sockets and return it: its
        `rtcp.quality()` is the call's final figures (None for no such leg)."""
        leg = self.core.remove_leg(key, self.loop.time(), _ntp_now(), reason)
        if leg is not None:
            leg.sendto = None
            leg.rtcp_sendto = None
            self._close_sockets(leg)
        if not self.core.legs and self._handle is not None:
            self._handle.cancel()
            self._handle = None
        return leg

    def end_leg(self, key: Hashable) -> asyncio.Future[LegSummary | None]:
        """`remove_leg`, giving what the call record keeps of the leg (None for no such
        leg) — here at once; a media worker answers a moment later."""
        leg = self.remove_leg(key)
        future: asyncio.Future[LegSummary | None] = self.loop.create_future()
        future.set_result(None if leg is None else self.core.summarise(leg))
        return future

    def has_leg(self, key: Hashable) -> bool:
        return key in self.core.legs

    @property
    def available(self) -> bool:
        """Can a leg be served (until the loop is closed)?"""
        return not self._closed

    @property
    def leg_count(self) -> int:
        return len(self.core.legs)

    @property
    def prefill(self) -> int:
        """Samples an unbridged leg buffers before playing out."""
        return self.core.prefill

    @property
    def skipped_ticks(self) -> int:
        return self.schedule.skipped_ticks

    def leg_quality(self, key: Hashable) -> CallQuality | None:
        """The leg's RTCP figures so far (None for no such leg)."""
        return self.core.leg_quality(key)

    def rtp_totals(self) -> dict[str, int]:
        """`MediaCore.rtp_totals`."""
        return self.core.rtp_totals()

    def jitter_totals(self) -> dict[str, int]:
        """`MediaCore.jitter_totals`."""
        return self.core.jitter_totals()

    # -- conferences ---------------------------------------------------------------------

    def join(
        self,
        key: Hashable,
        conference: Hashable,
        *,
        role: Role = Role.MEMBER,
        coach: Hashable | None = None,
    ) -> None:
        """`MediaCore.join`."""
        self.core.join(key, conference, role=role, coach=coach)

    def leave(self, key: Hashable) -> None:
        """`MediaCore.leave`."""
        self.core.leave(key)

    def set_muted(self, key: Hashable, muted: bool) -> None:
        """`MediaCore.set_muted`."""
        self.core.set_muted(key, muted)

    # -- what legs play, and recordings -------------------------------------------------

    def play(
        self, key: Hashable, samples: npt.NDArray[np.int16], *, tag: Hashable, loop: bool = False
    ) -> None:
        """`MediaCore.play`."""
        self.core.play(key, samples, tag=tag, loop=loop)

    def stop_playback(self, key: Hashable) -> None:
        """`MediaCore.stop_playback`."""
        self.core.stop_playback(key)

    def is_playing(self, key: Hashable) -> bool:
        """`MediaCore.is_playing`."""
        return self.core.is_playing(key)

    def send_digits(
        self,
        key: Hashable,
        digits: str,
        *,
        duration: float = 0.1,
        gap: float = 0.07,
        volume: int = 10,
    ) -> None:
        """`MediaCore.send_digits`."""
        self.core.send_digits(key, digits, duration=duration, gap=gap, volume=volume)

    def start_recording(
        self,
        key: Hashable,
        *,
        inbound: bool = True,
        outbound: bool = True,
        max_seconds: float | None = None,
    ) -> None:
        """`MediaCore.start_recording`."""
        self.core.start_recording(key, inbound=inbound, outbound=outbound, max_seconds=max_seconds)

    def pause_recording(self, key: Hashable, paused: bool) -> None:
        """`MediaCore.pause_recording`."""
        self.core.pause_recording(key, paused)

    def stop_recording(
        self, key: Hashable, path: str | os.PathLike[str]
    ) -> asyncio.Future[Recording | None]:
        """End the leg's recording and write it to `path` as a WAV file, off the event
        loop. The future gives the recording once the file is complete (written to a
        temporary file beside it, mode 0600 — recordings are personal data — then
        renamed over `path`), None when the leg was not recording (no file is written),
        or raises the OSError that writing met. KeyError at once for an unknown leg; for
        a leg already removed, use `save_recording` with its `take_recording()`."""
        recording = self.core.stop_recording(key)
        if recording is None:
            future: asyncio.Future[Recording | None] = self.loop.create_future()
            future.set_result(None)
            return future
        return self.save_recording(recording, path)

    def save_recording(
        self, recording: Recording, path: str | os.PathLike[str]
    ) -> asyncio.Future[Recording | None]:
        """Write `recording` to `path` as a WAV file in the loop's default executor."""
        return self.loop.run_in_executor(None, _write_recording, recording, Path(path))

    def _close_sockets(self, leg: MediaLeg) -> None:
        for sock in leg.sockets:
            self.reader.unregister(sock)
            sock.close()
        leg.sockets.clear()

    def close(self) -> None:
        self._closed = True
        for key in list(self.core.legs):
            self.remove_leg(key)
        self.reader.close()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def overloaded(self) -> bool:
        """Is the media plane at its limit — ticks taking (or starting late by) most of
        their period, or skipped in the last seconds? New calls should be refused then:
        one more leg would degrade every call's audio."""
        return overloaded(self.load, self.last_skip, self.loop.time())

    # -- the tick ----------------------------------------------------------------------

    def _fire(self) -> None:
        now = self.loop.time()
        slot = self.schedule.begin(now)
        # The wall-clock time of the tick's scheduled instant, which is what the media
        # clock (and so an SR's RTP timestamp) follows — not of the late wake-up.
        ntp_now = ntp_from_unix(time.time() - (now - slot.due))
        started = time.perf_counter()
        try:
            self.reader.drain()
        except Exception:
            self.tick_errors += 1
            log.exception("reading the media sockets before tick %d failed", slot.index)
        try:
            self.core.tick(slot.index, slot.due, slot.skipped, ntp_now)
        except Exception:
            self.tick_errors += 1
            log.exception("media tick %d failed", slot.index)
        took = time.perf_counter() - started
        self.tick_seconds.observe(took)
        self.tick_lateness.observe(max(0.0, slot.lateness))
        self.load += LOAD_SMOOTHING * ((took + max(0.0, slot.lateness)) / TICK_SECONDS - self.load)
        if slot.skipped:
            self.last_skip = now
        if self.core.legs and not self._closed:
            self._handle = self.loop.call_at(self.schedule.next_due, self._fire)
        else:
            self._handle = None
