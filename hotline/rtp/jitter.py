"""An adaptive jitter buffer for one inbound audio leg, sans-IO.

Owns, for one leg, the samples that arrived and have not been played, the playout
point, and the playout delay: `JitterBuffer.put(seq_ext, timestamp, payload,
arrival_now)` files a packet's samples on the timeline and returns a `PacketOutcome`;
`JitterBuffer.get(now)`, called once per media tick, returns the tick's `Frame` (its
samples, which 10 ms subframes really arrived, and a `FrameOutcome`). Every outcome is
counted (`stats`).

Samples, not packets. The buffer is a timeline indexed by RTP timestamp: a packet's
payload (one byte per sample: G.711 codes) is written where its timestamp says, and
each tick takes the next `frame_samples` samples from the playout point. So 20 ms and
30 ms packets (and 10 or 40 ms) play against the 20 ms tick without waste; reordering
needs nothing special; a duplicate is a packet whose sequence number (or every sample)
was seen; a missing packet is a hole that is concealed — the stream goes on, a single
loss never stalls it (aiortc's buffer does).

The delay, as WebRTC NetEq measures it. Each packet's transit is its arrival time minus
its timestamp (in samples); its relative delay is that transit minus the smallest
transit over the last `window` seconds (the fastest path through the network). Transits
are kept as a histogram of 8-sample (1 ms) buckets, so a packet costs a dictionary
increment, not a sort. The target delay is the `quantile` (98.5 % by default) of the
relative delays, plus the alignment packets need against the tick, kept within
`min_delay` and `max_delay`. A tick takes a whole frame at once, so a packet that
starts k samples into the frame holding it must be there k samples before its own
playout time. Frames are counted from the playout point as it actually is (not from
an assumed grid), so k follows from each packet's offset to it: 10 ms for 30 ms packets
against a 20 ms tick, none when packets and frames share their edges.

Spikes do not set the target. The quantile is capped at Tukey's far-out fence of the
window — its third quartile plus `body_span` (3) times its interquartile range — so a
few percent of packets far beyond the body of the distribution (a stall every ten
seconds) leave it alone: they are ridden out (below) and the delay they leave behind is
shed. What does lift the target at once is a packet that comes after its place was
played while the delay in force was at the target (not while shedding what a stall
left): the target grows to cover its relative delay, so a rough spell costs a few late
packets before the quartiles follow. (With `recent` set, the quantile is also taken over
the last `recent` packets alone, and that part follows them down as fast as it rose.)
Until something is measured the target is `initial_delay`, one 20 ms packet by
default: a guess that costs at most a late packet, since the first packet to come later
than it lifts the target at once, where a deeper guess would hold every caller's first
seconds above what the network needs until quiet frames let it be shed. The target is
recomputed every `update_ticks` ticks, and within 5 ticks when a packet comes later
than it allows; it grows at once and shrinks by at most `shrink_rate`
seconds per second. The playout delay in force is measured the same way — ``now −
smallest transit − playout point`` — so it does not depend on how full the buffer
happens to be.

The reference is checked. A packet whose timestamp ran ahead of the stream has the
smallest transit, and every later packet would look late by as much. Where a gap wider
than `outlier_gap` splits the window's transits, the low side goes when at least as many
packets as it holds (and 10 or more) came after its last one, all above the gap — an
early outlier, or a fast start the network has left; the high side goes when all of it
is older than the low side and 10 or more packets confirm the low side — the stream
moved to a faster path, or its timestamps stepped ahead for good. `outliers` counts the
records dropped; the reference and target are then recomputed from the rest at once
(within 16 ticks of a step down). A spike over the body of the window drops nothing.

How the delay follows its target, in whole frames (no time-stretching; that is out of
scope). Moving the playout point by part of a frame would buy nothing on a tick: a
packet must be there when the tick that takes its first sample comes, and its audio
starts k samples later. Inserting s samples (s short of a frame) delays every later
sample by s and leaves each packet the same tick to meet; dropping s samples brings
them on by s but puts each packet's head into the frame before, a whole tick earlier.
So where packets and frames share their edges the playout point stays on them, and the
delay in force moves on a lattice of frames whose phase the tick and the network set
(bench/jitter.py's grid oracle is that floor; a free offset would need audio taken
sample by sample).

* Shrink: when the delay exceeds the target by a frame or more and the next frame is
  quiet (every code in `quiet_codes`; see `quiet_code_table`) and the frame after it is
  there, that frame is dropped (`Frame.dropped`) — as many quiet frames in one tick as
  the excess allows. Only when the excess passes `force_excess` is a frame that is not
  quiet dropped, one per tick.
* Grow: when the delay is below the target and the next frame is quiet, or the deficit
  passes `urgent_deficit`, a frame is inserted: the tick returns an EXPANDED frame with
  no samples (the concealment fills it) and the playout point stays. Running dry does
  the same: EXPANDED while waiting, so a delay spike is ridden out, not turned into late
  loss; after `idle` seconds dry the buffer counts BUFFERING (silence suppression, hold)
  and, when audio returns, it skips the gap and waits until the target delay is met.
* A frame missing in whole or in part, with audio after it, is waited for while the
  delay is below target, else concealed (CONCEALED, the playout point moves on). A gap
  the delay can afford to skip is skipped rather than concealed, frame by frame.

`quiet_codes` None means the content is not looked at: every frame counts as quiet.

Resynchronisation (`PacketOutcome.RESYNC`, a new `Frame.epoch`): a new SSRC, the
caller's `resync` flag (e.g. from `hotline.rtp.stream.RtpArrival.resync`), or a packet
newer than all others whose timestamp jumped — relative delay beyond ±`jump` seconds,
or entirely behind the playout point. What was buffered is dropped, the timeline starts
at the new packet, and the delay target is kept (the network has not changed). A
packet that would land more than `capacity` seconds ahead moves the playout point:
freely when nothing is buffered (after a long silence), else dropping the oldest
audio (OVERFLOW).

This module must not read the clock, open sockets, decode audio or know about legs:
time is passed in as `now` (seconds, any monotonic origin, the same for `put` and
`get`), payloads are opaque codes, and concealment belongs to `hotline.media.plc`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from hotline.rtp.seq import TS_HALF, TS_MASK

DUPLICATE_WINDOW = 128  # sequence numbers behind the newest remembered for duplicates
SEQ_RESTART = 1000  # a sequence step larger than this (either way) is a restarted count
DEFAULT_QUIET_LEVEL = 400  # |sample| at or below this is quiet (about −40 dBm0 peak)
_WINDOW_MASK = (1 << DUPLICATE_WINDOW) - 1
_MAX_ARRIVALS = 4096  # timing records kept at most, whatever the packet rate

_NEW, _BUFFERING, _PLAYING = 0, 1, 2


class PacketOutcome(Enum):
    """What `JitterBuffer.put` did with a packet."""

    BUFFERED = "buffered"  # its samples are on the timeline (some may have been late)
    LATE = "late"  # all its samples were behind the playout point: dropped
    DUPLICATE = "duplicate"  # seen before (sequence number, or every sample): dropped
    OVERFLOW = "overflow"  # buffered, after dropping the oldest audio to make room
    RESYNC = "resync"  # the stream started over at this packet (new epoch)


class FrameOutcome(Enum):
    """What one `JitterBuffer.get` tick played."""

    PLAYED = "played"  # a whole frame of received samples
    CONCEALED = "concealed"  # the playout point moved over samples that did not arrive
    EXPANDED = "expanded"  # a frame inserted (no samples): the delay grows by a frame
    BUFFERING = "buffering"  # no stream playing yet (start, resync, long silence)


class Frame(NamedTuple):
    """One tick of a leg's inbound audio.

    `payload` is `frame_samples` codes, `fill` where nothing arrived. Bit i of
    `present` is set when subframe i (`subframe_samples` long) consists of received
    samples only; a subframe with any hole is to be concealed as a whole. `position` is
    the timeline position (extended RTP timestamp) of ``payload[0]`` in epoch `epoch`;
    EXPANDED and BUFFERING frames play nothing and do not move it. `dropped` is how
    many samples were dropped just before this frame to shrink the delay.
    """

    outcome: FrameOutcome
    payload: bytes
    present: int
    position: int
    dropped: int
    epoch: int


_frame = tuple.__new__  # builds a Frame without NamedTuple's Python-level __new__
_PLAYED = FrameOutcome.PLAYED
_BUFFERED = PacketOutcome.BUFFERED
_SOON_TICKS = 5  # a late packet has the target updated within this many ticks
_BUCKET_SHIFT = 3  # transits are kept in buckets of 8 samples (1 ms at 8 kHz)
_CONFIRM_PACKETS = 10  # later packets, at least, that must all undercut an outlier
_STEP_CHECK_TICKS = 16  # ticks after a step down of the reference before it is checked
_RECENT_QUANTILE = 0.95  # of the `recent` packets' relative delays (25: the second latest)


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters of one buffer (packets and frames by outcome, samples by fate) and
    its delays in seconds."""

    packets: int
    buffered: int
    late: int
    duplicates: int
    overflows: int
    resyncs: int
    frames: int
    played: int
    concealed: int
    expanded: int
    buffering: int
    late_samples: int  # behind the playout point on arrival (whole or partly late)
    concealed_samples: int  # played over without having arrived
    dropped_samples: int  # dropped to shrink the delay
    skipped_samples: int  # gaps skipped (silence suppression, long losses)
    overflow_samples: int  # received samples dropped for room
    discarded_samples: int  # received samples dropped by a resync
    target_delay: float
    delay: float | None  # the playout delay in force at `now`, None before audio
    outliers: int = 0  # timing records dropped as off the stream's path (see the docs)


def quiet_code_table(decoded: Iterable[int], level: int = DEFAULT_QUIET_LEVEL) -> bytes:
    """The codes whose decoded sample has magnitude `level` or less, for `quiet_codes`:
    `decoded` gives the sample of each code 0..255 (e.g. `hotline.media.g711`'s
    decoding table)."""
    values = [int(v) for v in decoded]
    if len(values) != 256:
        raise ValueError(f"a decoding table has 256 entries, got {len(values)}")
    if level < 0:
        raise ValueError(f"quiet level must be >= 0, got {level}")
    return bytes(code for code, value in enumerate(values) if abs(value) <= level)


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")


class JitterBuffer:
    """The adaptive playout buffer of one leg; see the module docstring.

    Delays and durations are in seconds. `fill` is the code written where nothing
    arrived (the codec's silence). Call `get` exactly once per tick, with the tick's
    scheduled time; call `put` for every audio packet the receiver accepted, with its
    arrival time on the same clock.
    """

    __slots__ = (
        "_align",
        "_all_present",
        "_arrivals",
        "_buckets",
        "_capacity",
        "_codes",
        "_counts",
        "_epoch",
        "_evict_after",
        "_ext_ref",
        "_fills",
        "_force",
        "_full",
        "_full2",
        "_have",
        "_idle_ticks",
        "_initial",
        "_jump",
        "_last_update",
        "_late_above",
        "_max_delay",
        "_max_seq",
        "_min_delay",
        "_next_update",
        "_ones",
        "_outlier_gap",
        "_outlier_span",
        "_pending",
        "_pos",
        "_rate",
        "_seen",
        "_shrink",
        "_silence",
        "_sizes",
        "_slow",
        "_ssrc",
        "_starved",
        "_state",
        "_step_check",
        "_target",
        "_tmin",
        "_ts_ref",
        "_update_ticks",
        "_urgent",
        "_zeros",
        "body_span",
        "buffered",
        "buffering",
        "clock_rate",
        "concealed",
        "concealed_samples",
        "discarded_samples",
        "dropped_samples",
        "duplicates",
        "expanded",
        "fill",
        "frame_samples",
        "frames",
        "late",
        "late_samples",
        "outliers",
        "overflow_samples",
        "overflows",
        "played",
        "quantile",
        "quiet_codes",
        "recent",
        "resyncs",
        "skipped_samples",
        "subframe_samples",
        "subframes",
        "window",
    )

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        subframe_samples: int = 80,
        fill: int = 0xFF,
        quiet_codes: bytes | None = None,
        quantile: float = 0.985,
        window: float = 5.0,
        recent: int | None = None,
        initial_delay: float = 0.02,
        min_delay: float = 0.01,
        max_delay: float = 0.5,
        shrink_rate: float = 0.02,
        urgent_deficit: float = 0.04,
        force_excess: float = 0.3,
        capacity: float = 1.0,
        idle: float = 0.2,
        jump: float = 1.0,
        update_ticks: int = 25,
        outlier_gap: float = 0.04,
        body_span: float = 3.0,
    ) -> None:
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError(
                f"clock_rate and frame_samples must be positive, got {clock_rate}, {frame_samples}"
            )
        if subframe_samples <= 0 or frame_samples % subframe_samples:
            raise ValueError(
                f"subframe_samples ({subframe_samples}) must divide frame_samples ({frame_samples})"
            )
        if not 0 <= fill <= 255:
            raise ValueError(f"fill must be a byte value 0..255, got {fill}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be within (0, 1], got {quantile}")
        for name, value in (
            ("window", window),
            ("max_delay", max_delay),
            ("capacity", capacity),
            ("idle", idle),
            ("jump", jump),
            ("urgent_deficit", urgent_deficit),
            ("force_excess", force_excess),
            ("outlier_gap", outlier_gap),
        ):
            _positive(name, value)
        if jump <= max_delay:
            raise ValueError(f"jump ({jump} s) must exceed max_delay ({max_delay} s)")
        if not (math.isfinite(shrink_rate) and shrink_rate >= 0):
            raise ValueError(f"shrink_rate must be >= 0, got {shrink_rate}")
        if not 0.0 <= min_delay <= initial_delay <= max_delay:
            raise ValueError(
                "delays must satisfy 0 <= min_delay <= initial_delay <= max_delay, got"
                f" {min_delay}, {initial_delay}, {max_delay}"
            )
        if not body_span > 0:
            raise ValueError(f"body_span must be positive, got {body_span}")
        if recent is not None and recent < 1:
            raise ValueError(f"recent must be at least 1 packet (or None), got {recent}")
        if update_ticks < 1:
            raise ValueError(f"update_ticks must be at least 1, got {update_ticks}")
        rate = float(clock_rate)
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.subframe_samples = subframe_samples
        self.subframes = frame_samples // subframe_samples
        self.fill = fill
        self.quiet_codes = quiet_codes
        self.quantile = quantile
        self.window = window
        self._evict_after = window + 1.0  # records are dropped in batches, once a second
        self.recent = recent
        self.body_span = body_span
        self._rate = rate
        self._min_delay = min_delay * rate
        self._max_delay = max_delay * rate
        self._shrink = shrink_rate * rate  # samples of target per second
        self._urgent = urgent_deficit * rate
        self._force = max(force_excess * rate, float(frame_samples))
        self._capacity = max(round(capacity * rate), round(max_delay * rate) + 2 * frame_samples)
        self._idle_ticks = max(1, math.ceil(idle * rate / frame_samples))
        self._jump = jump * rate
        self._outlier_gap = max(1, round(outlier_gap * rate) >> _BUCKET_SHIFT)  # buckets
        self._outlier_span = float(self._outlier_gap << _BUCKET_SHIFT)  # samples
        self._update_ticks = update_ticks
        self._full = b"\x01" * frame_samples
        self._full2 = b"\x01" * (2 * frame_samples)
        self._all_present = (1 << self.subframes) - 1
        self._silence = bytes([fill]) * frame_samples
        self._ones = memoryview(b"\x01" * self._capacity)
        self._zeros = memoryview(bytes(self._capacity))
        self._fills = memoryview(bytes([fill]) * self._capacity)
        self._initial = min(max(initial_delay * rate, self._min_delay), self._max_delay)
        # Counters.
        self.buffered = 0
        self.late = 0
        self.duplicates = 0
        self.overflows = 0
        self.resyncs = 0
        self.frames = 0
        self.played = 0
        self.concealed = 0
        self.expanded = 0
        self.buffering = 0
        self.late_samples = 0
        self.concealed_samples = 0
        self.dropped_samples = 0
        self.skipped_samples = 0
        self.overflow_samples = 0
        self.discarded_samples = 0
        self.outliers = 0
        self._target = self._initial
        self._slow = self._initial
        self._clear()

    def _clear(self) -> None:
        """Back to the state before the first packet (counters and target kept)."""
        self._state = _NEW
        self._epoch = 0
        self._pos = 0  # timeline position of the next sample to play
        self._codes = bytearray()  # samples from _pos on
        self._have = bytearray()  # 1 where a sample arrived, 0 in holes
        self._pending = 0  # arrived samples from _pos on
        self._ts_ref = 0  # a recent RTP timestamp and its extended value
        self._ext_ref = 0
        self._max_seq = 0
        self._seen = 0  # bit k: sequence number _max_seq - k arrived
        self._ssrc: int | None = None
        self._arrivals: deque[float] = deque()  # arrival times over the window
        self._buckets: deque[int] = deque()  # and the transit of each, in `_bucket` units
        self._counts: dict[int, int] = {}  # the histogram of those transits
        self._tmin = 0.0  # smallest transit over the window, samples
        self._align = 0  # extra delay packets not aligned to frames need, samples
        self._late_above = self._target - self._align  # relative delay that asks for more
        self._sizes: dict[int, bytes] = {}  # packet sizes seen: a run of ones that long
        self._next_update = 0
        self._step_check = 0  # the tick at which a step down of the reference is checked
        self._last_update: float | None = None
        self._starved = 0  # consecutive ticks with nothing buffered

    def reset(self) -> None:
        """Forget the stream (not the counters, nor the learned delay target)."""
        self._clear()

    # -- properties ----------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Number of resyncs of the current stream (as `Frame.epoch`)."""
        return self._epoch

    @property
    def target_delay(self) -> float:
        """The playout delay the buffer aims at, seconds."""
        return self._target / self._rate

    def delay(self, now: float) -> float | None:
        """The playout delay in force at `now`, seconds (None before any audio)."""
        if self._state == _NEW:
            return None
        return (now * self._rate - self._tmin - self._pos) / self._rate

    @property
    def packets(self) -> int:
        """Packets handed to `put`, whatever became of them."""
        return self.buffered + self.late + self.duplicates + self.overflows + self.resyncs

    @property
    def buffered_samples(self) -> int:
        """Received samples waiting to be played."""
        return self._pending

    def stats(self, now: float | None = None) -> JitterStats:
        return JitterStats(
            packets=self.packets,
            buffered=self.buffered,
            late=self.late,
            duplicates=self.duplicates,
            overflows=self.overflows,
            resyncs=self.resyncs,
            frames=self.frames,
            played=self.played,
            concealed=self.concealed,
            expanded=self.expanded,
            buffering=self.buffering,
            late_samples=self.late_samples,
            concealed_samples=self.concealed_samples,
            dropped_samples=self.dropped_samples,
            skipped_samples=self.skipped_samples,
            overflow_samples=self.overflow_samples,
            discarded_samples=self.discarded_samples,
            target_delay=self.target_delay,
            delay=None if now is None else self.delay(now),
            outliers=self.outliers,
        )

    # -- packets ---------------------------------------------------------------------

    def put(
        self,
        seq_ext: int,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
        arrival_now: float,
        *,
        ssrc: int | None = None,
        resync: bool = False,
    ) -> PacketOutcome:
        """File one audio packet: `seq_ext` its extended sequence number, `timestamp`
        its RTP timestamp (32-bit), `payload` its codes (one per sample), arriving at
        `arrival_now`. `ssrc`: its source (a change resynchronises); `resync`: the
        caller knows the stream started over here. Never raises for what a peer sends."""
        if self._state == _NEW or resync or (ssrc is not None and ssrc != self._ssrc):
            if self._state == _NEW or resync or self._ssrc is not None:
                return self._start(seq_ext, timestamp & TS_MASK, payload, arrival_now, ssrc)
            self._ssrc = ssrc
        timestamp &= TS_MASK
        n = len(payload)
        ext = self._ext_ref + ((timestamp - self._ts_ref + TS_HALF) & TS_MASK) - TS_HALF
        transit = arrival_now * self._rate - ext
        relative = transit - self._tmin
        offset = ext - self._pos
        have = self._have
        filled = len(have)
        step = seq_ext - self._max_seq

        ones = self._sizes.get(n)
        if (
            step == 1
            and offset == filled
            and 0.0 <= relative <= self._late_above
            and ones is not None
            and offset % self.frame_samples <= self._align
            and offset + n <= self._capacity
        ):
            # The usual case: the next packet, in time, right after what is buffered.
            self._seen = ((self._seen << 1) | 1) & _WINDOW_MASK
            self._max_seq = seq_ext
            if ext > self._ext_ref:
                self._ts_ref = timestamp
                self._ext_ref = ext
            arrivals = self._arrivals
            arrivals.append(arrival_now)
            bucket = int(transit) >> _BUCKET_SHIFT
            self._buckets.append(bucket)
            counts = self._counts
            counts[bucket] = counts.get(bucket, 0) + 1
            if arrivals[0] < arrival_now - self._evict_after:
                self._forget(arrival_now)
            self._codes += payload
            have += ones
            self._pending += n
            self.buffered += 1
            return _BUFFERED

        # Sequence number: duplicates, and whether this is the newest packet.
        if step == 0:
            self.duplicates += 1
            return PacketOutcome.DUPLICATE
        newest = step > 0 or step < -SEQ_RESTART
        if not newest and -step < DUPLICATE_WINDOW and (self._seen >> -step) & 1:
            self.duplicates += 1
            return PacketOutcome.DUPLICATE
        if newest and (relative > self._jump or relative < -self._jump or (n and offset + n <= 0)):
            # The timestamp jumped (or ran backwards): the stream starts over.
            return self._start(seq_ext, timestamp, payload, arrival_now, ssrc)
        if (
            n
            and 0 <= offset < filled
            and offset + n <= filled
            and have.find(0, offset, offset + n) < 0
        ):  # every sample of it is here already
            self.duplicates += 1
            return PacketOutcome.DUPLICATE

        if newest:
            if 0 < step <= SEQ_RESTART:
                self._seen = ((self._seen << step) | 1) & _WINDOW_MASK
            else:
                self._seen = 1
            self._max_seq = seq_ext
        elif -step < DUPLICATE_WINDOW:
            self._seen |= 1 << -step
        if ext > self._ext_ref:
            self._ts_ref = timestamp
            self._ext_ref = ext
        # Timing: the window of transits, its minimum, and whether to look again soon.
        arrivals = self._arrivals
        arrivals.append(arrival_now)
        bucket = int(transit) >> _BUCKET_SHIFT
        self._buckets.append(bucket)
        counts = self._counts
        counts[bucket] = counts.get(bucket, 0) + 1
        if arrivals[0] < arrival_now - self._evict_after or len(arrivals) > _MAX_ARRIVALS:
            self._forget(arrival_now)
        if relative < 0.0:
            self._tmin = transit
            if relative < -self._outlier_span:
                # A step down by more than the outlier gap: see soon whether the
                # packets after it confirm the new reference or all undercut it.
                check = self.frames + _STEP_CHECK_TICKS
                self._step_check = check
                if check < self._next_update:
                    self._next_update = check
        elif relative > self._late_above:
            self._look_soon()  # later than the current target allows
        if not n:  # nothing to play, but its timing counts
            self.buffered += 1
            return _BUFFERED
        self._learn(n, offset)

        if offset + n <= 0:
            self.late += 1
            self.late_samples += n
            self._cover(relative, offset)
            return PacketOutcome.LATE
        if offset < 0:  # the front of it is late; keep the rest
            self.late_samples -= offset
            self._cover(relative, offset)
            payload = payload[-offset:]
            n += offset
            offset = 0
        outcome = _BUFFERED
        end = offset + n
        capacity = self._capacity
        if end > capacity:
            if n > capacity:  # a packet longer than the buffer: keep its end
                payload = payload[n - capacity :]
                offset += n - capacity
                n = capacity
            # After a long silence (nothing buffered) skip to the packet; else drop
            # the oldest audio to make room.
            shift = offset + n - capacity if self._pending else offset
            if self._pending:
                outcome = PacketOutcome.OVERFLOW
                self.overflows += 1
                self.overflow_samples += have.count(1, 0, shift)
            else:
                self.skipped_samples += shift
                self._state = _BUFFERING
            self._advance(shift)
            offset -= shift
            end = offset + n
            filled = len(have)
        codes = self._codes
        if offset == filled:
            codes += payload
            have += self._ones[:n]
            self._pending += n
        else:
            short = end - filled
            if short > 0:
                codes += self._fills[:short]
                have += self._zeros[:short]
            already = have.count(1, offset, end) if offset < filled else 0
            codes[offset:end] = payload
            have[offset:end] = self._ones[:n]
            self._pending += n - already
        if outcome is _BUFFERED:
            self.buffered += 1
        return outcome

    def _cover(self, relative: float, offset: int) -> None:
        """A packet came `-offset` samples after its place was played: unless the
        delay in force then (its relative delay less that) was already a frame or
        more above the target — the buffer is shedding what a stall left, and this is
        a straggler of the stall — the target grows at once to cover its relative
        delay. It is looked at again soon either way."""
        if relative + offset >= self._target + self.frame_samples:
            self._look_soon()
            return
        wanted = min(
            self._max_delay,
            max(self._min_delay, relative + (1 << _BUCKET_SHIFT)) + self._align,
        )
        if wanted > self._slow:
            self._slow = wanted
        if wanted > self._target:
            self._target = wanted
            self._late_above = wanted - self._align
        self._look_soon()

    def _look_soon(self) -> None:
        """Update the target within `_SOON_TICKS` ticks (a packet came later than it
        allows): growth does not wait for the periodic update."""
        soon = self.frames + _SOON_TICKS
        if soon < self._next_update:
            self._next_update = soon

    def _start(
        self,
        seq_ext: int,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
        arrival_now: float,
        ssrc: int | None,
    ) -> PacketOutcome:
        """Begin the timeline at this packet (the first one, or a resync)."""
        outcome = PacketOutcome.BUFFERED
        if self._state != _NEW:
            outcome = PacketOutcome.RESYNC
            self.resyncs += 1
            self.discarded_samples += self._pending
            self._epoch += 1
        else:
            self.buffered += 1
        data = bytes(payload[-self._capacity :]) if len(payload) > self._capacity else payload
        n = len(data)
        self._state = _BUFFERING
        self._pos = timestamp
        self._ts_ref = timestamp
        self._ext_ref = timestamp
        self._codes = bytearray(data)
        self._have = bytearray(self._ones[:n])
        self._pending = n
        self._max_seq = seq_ext
        self._seen = 1
        if ssrc is not None:
            self._ssrc = ssrc
        transit = arrival_now * self._rate - timestamp
        bucket = int(transit) >> _BUCKET_SHIFT
        self._arrivals.clear()
        self._buckets.clear()
        self._arrivals.append(arrival_now)
        self._buckets.append(bucket)
        self._counts = {bucket: 1}
        self._tmin = transit
        self._late_above = self._target - self._align
        self._last_update = None
        self._starved = 0
        if n:
            self._learn(n, 0)
        return outcome

    def _learn(self, n: int, offset: int) -> None:
        """The alignment margin a packet of `n` samples, `offset` samples from the
        playout point, needs, and so do the packets of its size that follow it back to
        back: a packet that starts `k` samples into a frame must arrive `k` samples
        before its own time, when that frame starts playing. Such packets start at
        ``offset`` modulo the gcd of the two sizes, so at most ``frame − gcd +
        offset mod gcd`` into a frame (0 when packets and frames share their edges)."""
        frame = self.frame_samples
        if n not in self._sizes and len(self._sizes) < 64:  # a peer varying sizes
            self._sizes[n] = b"\x01" * n  # wildly is not tracked further
        common = math.gcd(n, frame)
        need = frame - common + offset % common
        if need > self._align:
            self._align = need
            self._late_above = self._target - need
            self._look_soon()

    def _forget(self, now: float) -> None:
        """Drop timing records older than the window."""
        arrivals, buckets, counts = self._arrivals, self._buckets, self._counts
        horizon = now - self.window
        while arrivals and (arrivals[0] < horizon or len(arrivals) > _MAX_ARRIVALS):
            arrivals.popleft()
            bucket = buckets.popleft()
            left = counts[bucket] - 1
            if left:
                counts[bucket] = left
            else:
                del counts[bucket]

    def _update_target(self, now: float) -> None:
        """Recompute the target from the transit histogram, after dropping records
        later packets show to be off the stream's path: the lowest bucket is the
        fastest path, and the quantile's bucket (its upper edge: rounding errs on the
        side of delay), capped at the window's far-out fence, gives the spread. That
        part grows at once and shrinks at `shrink_rate` (at once after outliers went);
        the part from the `recent` packets, when set, follows them both ways."""
        self._forget(now)
        buckets = self._buckets
        last = self._last_update
        self._last_update = now
        count = len(buckets)
        if not count:
            return
        keys = sorted(self._counts)
        fresh = self._drop_outliers(keys)
        if fresh:
            buckets = self._buckets
            count = len(buckets)
            keys = sorted(self._counts)
        low = keys[0]
        counts = self._counts
        cumulative = list(itertools.accumulate(counts[key] for key in keys))

        def bucket_at(fraction: float) -> int:
            return keys[bisect.bisect_left(cumulative, max(1, math.ceil(fraction * count)))]

        top = bucket_at(self.quantile)
        upper = bucket_at(0.75)
        body = upper + self.body_span * (upper - bucket_at(0.25))
        if top > body:
            top = math.ceil(body)
        recent = self.recent
        fast = low
        if recent is not None and count > recent:
            latest = sorted(itertools.islice(buckets, count - recent, count))
            fast = latest[max(0, math.ceil(_RECENT_QUANTILE * recent) - 1)]
        width = 1 << _BUCKET_SHIFT
        self._tmin = low * width
        floor, ceiling, align = self._min_delay, self._max_delay, self._align
        wanted = min(ceiling, max(floor, (top + 1 - low) * width) + align)
        if wanted >= self._slow or fresh:
            self._slow = wanted
        elif last is not None and now > last:
            self._slow = max(wanted, self._slow - self._shrink * (now - last))
        quick = min(ceiling, max(floor, (fast + 1 - low) * width) + align)
        self._target = max(self._slow, quick)
        self._late_above = self._target - align

    def _drop_outliers(self, keys: list[int]) -> bool:
        """Drop the timing records that later packets show to be off the stream's
        path; returns whether any were dropped (the reference and the target then
        start afresh).

        `keys` are the histogram's buckets, sorted. Where a gap wider than
        `outlier_gap` (no record in between) splits the window into a low and a high
        side, the low side having at most as many records as the high side:

        * the low side goes when the packets that arrived after the last of its
          records are all on the high side, and number as many as the low side and
          `_CONFIRM_PACKETS` at least: the later packets all undercut it. A packet
          whose timestamp ran ahead is such an outlier, and so is the fastest path of
          a short start that the network has since left for a slower one.
        * the high side goes when all its records are older than all the low side's
          and the low side holds `_CONFIRM_PACKETS` records or more: the stream has
          moved to a faster path (or its timestamps stepped ahead) and stays there, so
          the old path no longer says anything about lateness.

        The body of a window under a spike is never dropped (the spike's packets are
        fewer and come after it), nor a faster path that packets keep taking."""
        counts, buckets = self._counts, self._buckets
        count = len(buckets)
        gap = self._outlier_gap
        below = 0
        low_split: int | None = None
        high_split: int | None = None
        for key, above in itertools.pairwise(keys):
            below += counts[key]
            if 2 * below > count:
                break
            if above - key <= gap:
                continue
            run = 0  # the latest records that lie on the same side as the last one
            high_last = buckets[-1] > key
            for bucket in reversed(buckets):
                if (bucket > key) != high_last:
                    break
                run += 1
            if high_last:
                if run >= below and run >= _CONFIRM_PACKETS:
                    low_split = key  # the highest such gap drops the most
            elif run == below and below >= _CONFIRM_PACKETS:
                high_split = key
                break  # the lowest such gap: everything above it is the old path
        if high_split is not None:
            drop = [k for k in keys if k > high_split]
            keep_low = True
            split = high_split
        elif low_split is not None:
            drop = [k for k in keys if k <= low_split]
            keep_low = False
            split = low_split
        else:
            return False
        kept = [
            (t, b) for t, b in zip(self._arrivals, buckets, strict=True) if (b <= split) == keep_low
        ]
        self._arrivals = deque(t for t, _ in kept)
        self._buckets = deque(b for _, b in kept)
        dropped = 0
        for key in drop:
            dropped += counts.pop(key)
        self.outliers += dropped
        return True

    def _advance(self, count: int) -> None:
        """Move the playout point `count` samples on, dropping what lies before it."""
        have = self._have
        if count >= len(have):
            self._pending = 0
            self._codes.clear()
            have.clear()
        else:
            self._pending -= have.count(1, 0, count)
            del self._codes[:count]
            del have[:count]
        self._pos += count

    # -- ticks -----------------------------------------------------------------------

    def get(self, now: float) -> Frame:
        """The audio of the tick scheduled at `now`: exactly one frame per call."""
        self.frames += 1
        state = self._state
        if state == _NEW:
            self.buffering += 1
            return Frame(FrameOutcome.BUFFERING, self._silence, 0, 0, 0, 0)
        if self.frames >= self._next_update:
            self._update_target(now)
            upcoming = self.frames + self._update_ticks
            step_check = self._step_check
            self._next_update = step_check if self.frames < step_check < upcoming else upcoming
        frame = self.frame_samples
        delay = now * self._rate - self._tmin - self._pos
        target = self._target
        have = self._have

        if state == _BUFFERING:
            if not self._pending:
                return self._hold(FrameOutcome.BUFFERING)
            if not have.startswith(b"\x01"):
                delay = self._skip(delay, target)
            if delay < target:
                return self._hold(FrameOutcome.BUFFERING)
            self._state = _PLAYING
        elif not self._pending:
            self._starved += 1
            if self._starved >= self._idle_ticks:
                self._state = _BUFFERING
                return self._hold(FrameOutcome.BUFFERING)
            return self._hold(FrameOutcome.EXPANDED)
        self._starved = 0

        if have.startswith(self._full):
            excess = delay - target
            dropped = 0
            if excess >= frame:
                # Quiet frames go as many at a time as the excess allows, a frame that
                # is not quiet one per tick and only past `force_excess`; the frame
                # after a dropped one must be there.
                full2, force = self._full2, self._force
                while (
                    excess >= frame
                    and have.startswith(full2)
                    and (self._quiet() or (not dropped and excess >= force))
                ):
                    self._advance(frame)
                    dropped += frame
                    excess -= frame
                self.dropped_samples += dropped
            elif excess < 0 and (-excess >= self._urgent or self._quiet()):
                return self._hold(FrameOutcome.EXPANDED)
            # Play the complete frame (inline: this is the common case).
            position = self._pos
            codes = self._codes
            payload = bytes(codes[:frame])
            del codes[:frame]
            del have[:frame]
            self._pending -= frame
            self._pos = position + frame
            self.played += 1
            return _frame(
                Frame, (_PLAYED, payload, self._all_present, position, dropped, self._epoch)
            )

        if have.find(1, 0, frame) < 0:  # nothing of this frame arrived
            delay = self._skip(delay, target)
            if have.startswith(self._full):
                return self._play(0)
            if delay < target and have.find(1, 0, frame) < 0:
                return self._hold(FrameOutcome.EXPANDED)  # wait for it
        elif delay < target:
            return self._hold(FrameOutcome.EXPANDED)  # the rest of it may still come
        return self._partial()

    def _play(self, dropped: int) -> Frame:
        """Play the next frame, which arrived complete."""
        frame = self.frame_samples
        position = self._pos
        codes = self._codes
        payload = bytes(codes[:frame])
        del codes[:frame]
        del self._have[:frame]
        self._pending -= frame
        self._pos = position + frame
        self.played += 1
        return _frame(Frame, (_PLAYED, payload, self._all_present, position, dropped, self._epoch))

    def _hold(self, outcome: FrameOutcome) -> Frame:
        """A frame that plays nothing and leaves the playout point where it is."""
        if outcome is FrameOutcome.EXPANDED:
            self.expanded += 1
        else:
            self.buffering += 1
        return _frame(Frame, (outcome, self._silence, 0, self._pos, 0, self._epoch))

    def _quiet(self) -> bool:
        """Is the next frame quiet (or is the content not to be looked at)?"""
        quiet = self.quiet_codes
        if quiet is None:
            return True
        return not self._codes[: self.frame_samples].translate(None, quiet)

    def _skip(self, delay: float, target: float) -> float:
        """Skip whole frames of a gap at the playout point, as far as the delay in
        excess of the target allows and never past an arrived sample; returns the new
        delay."""
        frame = self.frame_samples
        allowed = delay - target
        if allowed < frame:
            return delay
        first = self._have.find(1)
        if first < frame:
            return delay
        skip = min(first // frame, int(allowed // frame)) * frame
        self._advance(skip)
        self.skipped_samples += skip
        return delay - skip

    def _partial(self) -> Frame:
        """Play the next frame, holes and all: CONCEALED, with the subframes that
        arrived complete marked in `present`."""
        frame = self.frame_samples
        codes, have = self._codes, self._have
        short = frame - len(have)
        if short > 0:
            codes += self._fills[:short]
            have += self._zeros[:short]
        sub = self.subframe_samples
        present = 0
        for i in range(self.subframes):
            if have.find(0, i * sub, (i + 1) * sub) < 0:
                present |= 1 << i
        arrived = have.count(1, 0, frame)
        position = self._pos
        payload = bytes(codes[:frame])
        del codes[:frame]
        del have[:frame]
        self._pending -= arrived
        self._pos = position + frame
        self.concealed += 1
        self.concealed_samples += frame - arrived
        return Frame(FrameOutcome.CONCEALED, payload, present, position, 0, self._epoch)
