"""Per-leg RTP receive and send state, sans-IO.

Owns what one call leg knows about the RTP it receives and sends:

* `RtpReceiver` takes each datagram with its arrival time (``receive(data, now,
  source)``) and returns an `RtpArrival`: the header fields, the payload's offsets, the
  RFC 3550 A.1 classification of its sequence number (in order, late, duplicate, ...)
  and, when the stream was resynchronised, why (a new or returning SSRC, a timestamp
  jump, a sequence restart). It keeps per-SSRC extended sequence numbers, loss counts,
  the RFC 3550 A.8 interarrival jitter, the inbound packetisation time (20 or 30 ms, read
  from timestamp steps), the time of the last packet for the inactivity timeout, and the
  per-source figures RTCP report blocks are made of.
* `SymmetricLatch` decides which source address the leg listens to and answers
  (symmetric RTP, RFC 4961 style): it latches to the first source seen and re-latches
  only when the latched source has gone quiet and another one sends steadily.
* `RtpSender` stamps outbound packets: SSRC, sequence number, and a timestamp taken from
  the caller's media clock (samples per tick), never from wall time.

A change of SSRC, or a timestamp jump on the same SSRC, is a resync, not an error: the
arrival says so and the jitter buffer (a later consumer) starts over. SIPp's
``play_dtmf`` sends from a second SSRC, interleaved with the first; up to
``max_sources`` SSRCs keep separate state so such streams do not disturb each other.

How the engine uses an arrival: audio whose status is `SeqOutcome.DUPLICATE` or
`SeqOutcome.JUMP` is dropped; everything else goes to the jitter buffer. Telephone-event
packets go to `hotline.rtp.telephone_event.DtmfEventReceiver` whatever their status: it
has its own duplicate handling, keyed by RTP timestamp, which also copes with peers that
replay a capture (same sequence numbers twice).

This module must not read the clock, open sockets or decode audio.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from hotline.rtp.packet import BytesLike, RtpError, payload_bounds
from hotline.rtp.seq import (
    MAX_DROPOUT,
    MAX_MISORDER,
    MIN_SEQUENTIAL,
    SEQ_MASK,
    TS_HALF,
    TS_MASK,
    TS_MOD,
    SeqOutcome,
    SequenceState,
    clamp_cumulative_lost,
)

Address = tuple[Any, ...]
"""A transport address as the engine's datagram endpoint reports it, e.g. (host, port)."""

_unpack_fixed = struct.Struct("!BBHII").unpack_from
_pack_fixed = struct.Struct("!BBHII").pack
_tuple_new = tuple.__new__

PTIME_CONFIRMATIONS = 3  # equal timestamp steps in a row before a packetisation time is believed

_OTHER, _AUDIO, _EVENT = 0, 1, 2  # payload type kinds
_IN_ORDER = SeqOutcome.IN_ORDER
_LATE = SeqOutcome.LATE
_DUPLICATE = SeqOutcome.DUPLICATE
_RESTARTED = SeqOutcome.RESTARTED


class ResyncReason(Enum):
    """Why the receive state of a leg started over at this packet."""

    NEW_SOURCE = "new-source"  # first packet of an SSRC not heard before
    SOURCE_SWITCH = "source-switch"  # audio now comes from another SSRC heard before
    TIMESTAMP_JUMP = "timestamp-jump"  # same SSRC, timestamp moved unlike the arrival time
    SEQUENCE_RESTART = "sequence-restart"  # same SSRC, sequence numbers restarted (A.1)


class RtpArrival(NamedTuple):
    """One accepted packet. The payload is ``data[payload_start:payload_end]``.

    `status` is the RFC 3550 A.1 verdict on its sequence number: IN_ORDER (new
    highest), LATE (behind it, not seen before), DUPLICATE, PROBATION (first packets of
    a new SSRC, still usable), JUMP (a large jump not yet confirmed by a second packet)
    or RESTARTED (the stream restarted here). `resync` is set when the receive state of
    the stream starts over at this packet; `extended_sequence` counts wraps.
    """

    status: SeqOutcome
    resync: ResyncReason | None
    payload_type: int
    marker: bool
    sequence_number: int
    extended_sequence: int
    timestamp: int
    ssrc: int
    payload_start: int
    payload_end: int
    data: BytesLike

    @property
    def payload(self) -> bytes:
        return bytes(self.data[self.payload_start : self.payload_end])


class DropReason(Enum):
    """Why `RtpReceiver.receive` returned None."""

    MALFORMED = "malformed"
    FOREIGN_SOURCE = "foreign-source"


@dataclass(frozen=True, slots=True)
class ReceptionReport:
    """The receiver's side of one RTCP report block (RFC 3550 §6.4.1), before the
    RTCP layer adds LSR/DLSR."""

    ssrc: int
    fraction_lost: int  # 0..255, loss over the interval since the previous report
    cumulative_lost: int  # signed 24-bit
    extended_highest_sequence: int  # 32-bit
    jitter: int  # timestamp units


@dataclass(frozen=True, slots=True)
class ReceiveStats:
    """Figures for the call record, over every source heard on the leg."""

    packets: int  # accepted packets, including late and duplicate ones
    octets: int  # payload octets of those packets
    expected: int  # packets expected from sequence numbers (RFC 3550 A.3)
    lost: int  # expected - received; negative when duplicates outnumber losses
    late: int
    duplicates: int
    malformed: int
    foreign: int  # packets refused by the symmetric-RTP latch
    resyncs: int
    jitter_ms: float  # current interarrival jitter of the audio source
    max_jitter_ms: float  # the highest jitter seen on any source
    ptime_ms: float | None  # detected inbound packetisation time

    @property
    def loss_ratio(self) -> float:
        """Fraction of expected packets that never arrived (0 when none expected)."""
        return max(0, self.lost) / self.expected if self.expected > 0 else 0.0


class LatchDecision(Enum):
    LATCHED = "latched"  # first source: now latched to it
    ACCEPTED = "accepted"  # from the latched source
    RELATCHED = "relatched"  # the latched source went quiet; now latched to this one
    REJECTED = "rejected"  # from another source: drop


class SymmetricLatch:
    """Which remote address a leg listens to and sends to (symmetric RTP).

    Rules: before any packet, media goes to the address the SDP gave (`expected`). The
    first packet latches the leg to its source address. After that, packets from other
    addresses are dropped, except that the leg re-latches to a new address when the
    latched one has been silent for `relatch_idle` seconds and the new one has sent
    `relatch_packets` packets in a row (a NAT rebinding or a media server taking over).
    An attacker who sprays packets at the port cannot take over a live stream (the
    "RTP bleed" class of faults). `reset()` re-learns from the next packet, for a
    re-INVITE that moved the remote media.
    """

    __slots__ = (
        "_candidate",
        "_candidate_count",
        "expected",
        "last_heard",
        "latched",
        "relatch_idle",
        "relatch_packets",
        "relatches",
    )

    def __init__(
        self,
        *,
        expected: Address | None = None,
        relatch_idle: float = 0.5,
        relatch_packets: int = 3,
    ) -> None:
        if relatch_idle < 0 or relatch_packets < 1:
            raise ValueError("relatch_idle must be >= 0 and relatch_packets >= 1")
        self.expected = expected
        self.relatch_idle = relatch_idle
        self.relatch_packets = relatch_packets
        self.latched: Address | None = None
        self.relatches = 0
        self.last_heard = 0.0
        self._candidate: Address | None = None
        self._candidate_count = 0

    @property
    def remote(self) -> Address | None:
        """Where to send media: the latched source, else the SDP address."""
        return self.latched if self.latched is not None else self.expected

    def check(self, source: Address, now: float) -> LatchDecision:
        if source == self.latched:
            self.last_heard = now
            self._candidate = None
            return LatchDecision.ACCEPTED
        if self.latched is None:
            self.latched = source
            self.last_heard = now
            return LatchDecision.LATCHED
        if source == self._candidate:
            self._candidate_count += 1
        else:
            self._candidate = source
            self._candidate_count = 1
        if (
            self._candidate_count >= self.relatch_packets
            and now - self.last_heard >= self.relatch_idle
        ):
            self.latched = source
            self.last_heard = now
            self._candidate = None
            self.relatches += 1
            return LatchDecision.RELATCHED
        return LatchDecision.REJECTED

    def reset(self, expected: Address | None = None) -> None:
        """Forget the latched source; the next packet latches again."""
        if expected is not None:
            self.expected = expected
        self.latched = None
        self._candidate = None
        self._candidate_count = 0


class _Source:
    """Receive state for one SSRC."""

    __slots__ = (
        "duplicates",
        "jitter",
        "last_arrival",
        "last_heard",
        "last_seq",
        "last_ts",
        "late",
        "max_jitter",
        "octets",
        "packets",
        "ptime_candidate",
        "ptime_count",
        "reported_packets",
        "samples_per_packet",
        "seq",
        "ssrc",
    )

    def __init__(self, ssrc: int, seq: SequenceState, now: float) -> None:
        self.ssrc = ssrc
        self.seq = seq
        self.jitter = 0.0  # RFC 3550 A.8 estimate, timestamp units
        self.max_jitter = 0.0
        self.last_arrival: float | None = None  # of the previous audio packet
        self.last_ts = 0
        self.last_seq = -1
        self.last_heard = now
        self.packets = 0
        self.octets = 0
        self.late = 0
        self.duplicates = 0
        self.reported_packets = 0  # `packets` at the previous reception report
        self.ptime_candidate = 0
        self.ptime_count = 0
        self.samples_per_packet: int | None = None


class RtpReceiver:
    """Receive state of one leg. See the module docstring for how arrivals are used.

    `audio_payload_types`: payload types whose timestamps follow the sampling clock
    (jitter, timestamp-jump and packetisation-time detection use only these); None means
    every payload type that is not an event type. `event_payload_types`: RFC 4733
    telephone-event types, whose timestamp stays at the event start. Both may be changed
    by assignment after a re-INVITE.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        now: float = 0.0,
        audio_payload_types: frozenset[int] | None = None,
        event_payload_types: frozenset[int] = frozenset(),
        latch: SymmetricLatch | None = None,
        max_sources: int = 4,
        timestamp_jump: float = 1.0,
        min_sequential: int = MIN_SEQUENTIAL,
        max_dropout: int = MAX_DROPOUT,
        max_misorder: int = MAX_MISORDER,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {max_sources}")
        if timestamp_jump <= 0:
            raise ValueError(f"timestamp_jump must be positive, got {timestamp_jump}")
        self.clock_rate = clock_rate
        self._audio_payload_types = audio_payload_types
        self._event_payload_types = event_payload_types
        self._pt_kind = self._classify()
        self.latch = latch
        self.max_sources = max_sources
        self.timestamp_jump = timestamp_jump
        self._jump_samples = timestamp_jump * clock_rate
        self._min_sequential = min_sequential
        self._max_dropout = max_dropout
        self._max_misorder = max_misorder
        self._sources: dict[int, _Source] = {}
        self._current: _Source | None = None  # source of the last packet
        self._audio: _Source | None = None  # source of the last audio packet
        self.last_activity = now
        self.malformed = 0
        self.foreign = 0
        self.resyncs = 0
        self.last_error: str | None = None
        self.last_drop: DropReason | None = None
        self.samples_per_packet: int | None = None
        self._evicted_expected = 0
        self._evicted_lost = 0
        self._evicted_packets = 0
        self._evicted_octets = 0
        self._evicted_late = 0
        self._evicted_duplicates = 0
        self._max_jitter = 0.0

    @property
    def audio_payload_types(self) -> frozenset[int] | None:
        return self._audio_payload_types

    @audio_payload_types.setter
    def audio_payload_types(self, value: frozenset[int] | None) -> None:
        self._audio_payload_types = value
        self._pt_kind = self._classify()

    @property
    def event_payload_types(self) -> frozenset[int]:
        return self._event_payload_types

    @event_payload_types.setter
    def event_payload_types(self, value: frozenset[int]) -> None:
        self._event_payload_types = value
        self._pt_kind = self._classify()

    def _classify(self) -> bytes:
        audio, events = self._audio_payload_types, self._event_payload_types
        return bytes(
            _EVENT if pt in events else _AUDIO if audio is None or pt in audio else _OTHER
            for pt in range(128)
        )

    # -- the per-packet path -------------------------------------------------------

    def receive(
        self, data: BytesLike, now: float, source: Address | None = None
    ) -> RtpArrival | None:
        """Account for one datagram that arrived at `now` from `source`.

        Returns None when the packet is dropped (malformed, or refused by the latch;
        `last_drop` and `last_error` say why, the counters count it). Never raises for
        anything a peer can send.
        """
        try:
            b0, b1, seq, ts, ssrc = _unpack_fixed(data)
            if b0 == 0x80:
                start, end = 12, len(data)
            else:
                start, end = payload_bounds(data, b0)
        except (struct.error, RtpError) as exc:
            self.malformed += 1
            self.last_drop = DropReason.MALFORMED
            self.last_error = (
                str(exc)
                if isinstance(exc, RtpError)
                else f"RTP packet too short: {len(data)} bytes, need 12"
            )
            return None
        latch = self.latch
        if latch is not None and source is not None and source != latch.latched:
            # Every packet accepted since the latch was set came from the latched
            # source, so the last activity is when that source was last heard.
            latch.last_heard = self.last_activity
            if latch.check(source, now) is LatchDecision.REJECTED:
                self.foreign += 1
                self.last_drop = DropReason.FOREIGN_SOURCE
                return None

        resync: ResyncReason | None = None
        src = self._current
        if src is None or src.ssrc != ssrc:
            found = self._sources.get(ssrc)
            if found is None:
                found = self._new_source(ssrc, seq, now)
                resync = ResyncReason.NEW_SOURCE
            src = self._current = found

        pt = b1 & 0x7F
        state = src.seq
        status: SeqOutcome | None = None
        if self._pt_kind[pt] == _AUDIO:
            if src is not self._audio:
                # Audio now comes from this SSRC. Packets of other SSRCs in between
                # that carry no audio (events, SIPp's noop) are no switch.
                if resync is None and self._audio is not None:
                    resync = ResyncReason.SOURCE_SWITCH
                self._audio = src
            last_arrival = src.last_arrival
            if last_arrival is not None and resync is None:
                step = (ts - src.last_ts) & TS_MASK
                if step >= TS_HALF:
                    step -= TS_MOD
                d = (now - last_arrival) * self.clock_rate - step
                if d < 0:
                    d = -d
                if d > self._jump_samples:
                    state.restart(seq)
                    status = SeqOutcome.RESTARTED
                    resync = ResyncReason.TIMESTAMP_JUMP
                    src.ptime_count = 0
                else:
                    jitter = src.jitter + (d - src.jitter) * 0.0625
                    src.jitter = jitter
                    if jitter > src.max_jitter:
                        src.max_jitter = jitter
                    if ((seq - src.last_seq) & SEQ_MASK) == 1 and (
                        step != src.ptime_candidate or src.ptime_count < PTIME_CONFIRMATIONS
                    ):
                        self._ptime_step(src, step)
            src.last_arrival = now
            src.last_ts = ts
            src.last_seq = seq
        if status is None:
            status = state.update(seq)
            if status is not _IN_ORDER:
                if status is _LATE:
                    src.late += 1
                elif status is _DUPLICATE:
                    src.duplicates += 1
                elif status is _RESTARTED:
                    resync = ResyncReason.SEQUENCE_RESTART
        if resync is not None:
            self.resyncs += 1
        src.packets += 1
        src.octets += end - start
        src.last_heard = now
        self.last_activity = now
        return _tuple_new(
            RtpArrival,
            (
                status,
                resync,
                pt,
                b1 > 0x7F,
                seq,
                state.cycles + seq if status is _IN_ORDER else state.extended(seq),
                ts,
                ssrc,
                start,
                end,
                data,
            ),
        )

    def _new_source(self, ssrc: int, seq: int, now: float) -> _Source:
        if len(self._sources) >= self.max_sources:
            self._evict(min(self._sources.values(), key=lambda s: s.last_heard))
        state = SequenceState(
            seq,
            min_sequential=self._min_sequential,
            max_dropout=self._max_dropout,
            max_misorder=self._max_misorder,
        )
        src = _Source(ssrc, state, now)
        self._sources[ssrc] = src
        return src

    def _evict(self, src: _Source) -> None:
        del self._sources[src.ssrc]
        if self._audio is src:
            self._audio = None
        self._evicted_expected += src.seq.total_expected
        self._evicted_lost += src.seq.cumulative_lost
        self._evicted_packets += src.packets
        self._evicted_octets += src.octets
        self._evicted_late += src.late
        self._evicted_duplicates += src.duplicates
        self._max_jitter = max(self._max_jitter, src.max_jitter)

    def _ptime_step(self, src: _Source, step: int) -> None:
        rate = self.clock_rate
        if not rate // 100 <= step <= rate // 5:  # 10..200 ms: anything else is a gap
            src.ptime_count = 0
            return
        if step == src.ptime_candidate:
            src.ptime_count += 1
        else:
            src.ptime_candidate = step
            src.ptime_count = 1
        if src.ptime_count >= PTIME_CONFIRMATIONS and src.samples_per_packet != step:
            src.samples_per_packet = step
            self.samples_per_packet = step

    # -- inactivity ------------------------------------------------------------------

    def inactive_for(self, now: float) -> float:
        """Seconds since the last accepted packet (or since creation / `touch`)."""
        return now - self.last_activity

    def inactivity_deadline(self, timeout: float) -> float:
        """When the leg counts as dead if nothing arrives: last activity + timeout."""
        return self.last_activity + timeout

    def touch(self, now: float) -> None:
        """Restart the inactivity clock (e.g. when a re-INVITE resumes a held call)."""
        self.last_activity = now

    # -- figures -----------------------------------------------------------------------

    @property
    def current_ssrc(self) -> int | None:
        """The SSRC audio comes from (else the SSRC of the last packet), if any."""
        src = self._audio if self._audio is not None else self._current
        return src.ssrc if src is not None else None

    @property
    def ptime_ms(self) -> float | None:
        """Detected inbound packetisation time, ms (None until detected)."""
        spp = self.samples_per_packet
        return None if spp is None else spp * 1000.0 / self.clock_rate

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter of the current audio source, ms."""
        src = self._audio
        return 0.0 if src is None else src.jitter * 1000.0 / self.clock_rate

    def stats(self) -> ReceiveStats:
        sources = self._sources.values()
        rate = self.clock_rate
        max_jitter = max([self._max_jitter, *(s.max_jitter for s in sources)])
        return ReceiveStats(
            packets=self._evicted_packets + sum(s.packets for s in sources),
            octets=self._evicted_octets + sum(s.octets for s in sources),
            expected=self._evicted_expected + sum(s.seq.total_expected for s in sources),
            lost=self._evicted_lost + sum(s.seq.cumulative_lost for s in sources),
            late=self._evicted_late + sum(s.late for s in sources),
            duplicates=self._evicted_duplicates + sum(s.duplicates for s in sources),
            malformed=self.malformed,
            foreign=self.foreign,
            resyncs=self.resyncs,
            jitter_ms=self.jitter_ms,
            max_jitter_ms=max_jitter * 1000.0 / rate,
            ptime_ms=self.ptime_ms,
        )

    def reception_reports(self) -> list[ReceptionReport]:
        """One report per validated source heard since the previous call (RFC 3550
        §6.4: report only on sources heard since the last report); advances the
        interval marks used for the fraction lost."""
        reports = []
        for src in self._sources.values():
            if src.packets == src.reported_packets or src.seq.probation:
                continue
            src.reported_packets = src.packets
            state = src.seq
            reports.append(
                ReceptionReport(
                    ssrc=src.ssrc,
                    fraction_lost=state.interval_fraction_lost(),
                    cumulative_lost=clamp_cumulative_lost(state.cumulative_lost),
                    extended_highest_sequence=state.extended_max & TS_MASK,
                    jitter=int(src.jitter),
                )
            )
        return reports

    def sources(self) -> list[int]:
        """SSRCs with receive state, most recently heard last."""
        return [s.ssrc for s in sorted(self._sources.values(), key=lambda s: s.last_heard)]


class RtpSender:
    """Stamps outbound RTP packets for one leg.

    `timestamp` is the leg's media clock: the RTP timestamp of the next sample to be
    sent. It moves only when the caller says so — by the samples of each packet
    (`next_packet`) or of a tick sent without a packet (`advance`) — so timestamps follow
    the media loop's tick schedule, never wake-up times. `packet_at` sends at an explicit
    timestamp without moving the clock (RFC 4733 events keep their start timestamp).
    When the caller passes the tick's scheduled time as `now`, the sender remembers it
    so RTCP can map wall time to RTP time for sender reports (`rtp_timestamp_at`).
    """

    __slots__ = (
        "_anchor_now",
        "_anchor_ts",
        "clock_rate",
        "initial_sequence_number",
        "initial_timestamp",
        "octets_sent",
        "packets_sent",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        ssrc: int,
        *,
        sequence_number: int,
        timestamp: int,
        clock_rate: int = 8000,
    ) -> None:
        if not 0 <= ssrc <= TS_MASK:
            raise ValueError(f"SSRC {ssrc} out of range 0..4294967295")
        if not 0 <= sequence_number <= SEQ_MASK:
            raise ValueError(f"sequence number {sequence_number} out of range 0..65535")
        if not 0 <= timestamp <= TS_MASK:
            raise ValueError(f"timestamp {timestamp} out of range 0..4294967295")
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        self.ssrc = ssrc
        self.sequence_number = sequence_number  # of the next packet
        self.timestamp = timestamp  # media clock: timestamp of the next sample
        self.initial_sequence_number = sequence_number
        self.initial_timestamp = timestamp
        self.clock_rate = clock_rate
        self.packets_sent = 0
        self.octets_sent = 0  # payload octets, as RTCP SR counts them
        self._anchor_now: float | None = None
        self._anchor_ts = timestamp

    @classmethod
    def with_random_start(cls, rng: random.Random, clock_rate: int = 8000) -> RtpSender:
        """A sender with random SSRC, sequence number and timestamp (RFC 3550 §5.1)
        drawn from the caller's random source."""
        return cls(
            rng.getrandbits(32),
            sequence_number=rng.getrandbits(16),
            timestamp=rng.getrandbits(32),
            clock_rate=clock_rate,
        )

    def next_packet(
        self,
        payload: bytes,
        payload_type: int,
        samples: int,
        marker: bool = False,
        *,
        now: float | None = None,
    ) -> bytes:
        """A packet carrying `samples` samples starting at the media clock, which then
        advances by `samples`. `now`: the scheduled time of this media (optional)."""
        ts = self.timestamp
        if now is not None:
            self._anchor_now = now
            self._anchor_ts = ts
        data = self._stamp(payload, payload_type, ts, marker)
        self.timestamp = (ts + samples) & TS_MASK
        return data

    def packet_at(
        self, payload: bytes, payload_type: int, timestamp: int, marker: bool = False
    ) -> bytes:
        """A packet at an explicit timestamp; the media clock does not move."""
        return self._stamp(payload, payload_type, timestamp & TS_MASK, marker)

    def advance(self, samples: int, *, now: float | None = None) -> None:
        """Move the media clock over `samples` samples sent without an audio packet."""
        if now is not None:
            self._anchor_now = now
            self._anchor_ts = self.timestamp
        self.timestamp = (self.timestamp + samples) & TS_MASK

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp that corresponds to time `now` (for an RTCP SR), from the
        last anchored tick; the media clock itself when no tick time was given."""
        if self._anchor_now is None:
            return self.timestamp
        offset = round((now - self._anchor_now) * self.clock_rate)
        return (self._anchor_ts + offset) & TS_MASK

    def _stamp(self, payload: bytes, payload_type: int, ts: int, marker: bool) -> bytes:
        if not 0 <= payload_type <= 127:
            raise RtpError(f"RTP payload type {payload_type} out of range 0..127")
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & SEQ_MASK
        self.packets_sent += 1
        self.octets_sent += len(payload)
        b1 = (payload_type | 0x80) if marker else payload_type
        return _pack_fixed(0x80, b1, seq, ts, self.ssrc) + payload
