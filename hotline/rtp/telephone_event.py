"""RFC 4733 telephone-events (DTMF) over RTP: receive every key press exactly once, and send.

Owns the telephone-event payload (event code, E bit, volume, duration; several 4-octet
blocks per packet, RFC 4733 §2.5.1.5), `DtmfEventReceiver` and `DtmfEventSender`.

Receiving — what makes a key press count exactly once:

* An event is identified by its RTP timestamp (its start), within its SSRC; never by the
  marker bit, which may be lost. Every packet of one press carries the same timestamp;
  the first packet seen with a new timestamp reports `DigitStarted`, whichever packet it
  is (the start and any number of updates may be lost).
* The end packet (E bit) is sent three times; the first one seen reports `DigitEnded`,
  the others are duplicates. A press whose end packets are all lost is closed by a
  timeout (`end_timeout` seconds without an update: `next_deadline()` /
  `handle_timer(now)`), or as soon as a newer event starts on the same stream.
* Events longer than 0xFFFF timestamp units (8.19 s at 8 kHz) arrive as segments: a new
  timestamp, the same event, no end in between, starting where the previous segment
  ended. A timestamp that continues a press this way joins it instead of starting a new
  one, in either arrival order.
* Late packets of a press already reported are absorbed; a press that arrives entirely
  after a newer one is still reported (once, started and ended at once).
* A peer that replays a capture (SIPp's ``play_pcap_audio`` with the stock
  ``dtmf_2833_*.pcap`` files) sends the same timestamp, sequence numbers and SSRC each
  time the same digit is pressed. A packet for an ended press counts as a new press of
  the same key only when it restarts it — no E bit, a duration below the largest one
  seen for that timestamp — at least `key_reuse_after` seconds after the press ended;
  genuine duplicates never arrive that late.
* A new SSRC is a new stream with its own state (SIPp's ``play_dtmf`` uses a second
  SSRC); up to `max_streams` are kept.

In-band copies of the same press — how the engine de-duplicates: some gateways send a
key both as RFC 4733 events and as tones in the audio. The receiver keeps the interval of
each press on the engine's arrival timeline (`started_at` is the arrival time of the
first packet seen minus the duration it reported; `ended_at` the arrival of the end, or
of the last update when the end was lost). When the in-band detector reports a digit, the
engine maps the detection to the same timeline (the media tick's time minus the
jitter-buffer delay of the audio it analysed) and asks `claims(digit, start, end)`: True
means the RFC 4733 side already has this press and the in-band copy is dropped. Because
events are not delayed by the jitter buffer they normally arrive first; to cover the
opposite race the engine holds an in-band digit for `claim_guard` seconds after its end
before committing it, and asks again.

Sending: `DtmfEventSender` turns queued digits into packets, one media tick at a time:
the first packet carries the marker, updates follow every `update_every` ticks with the
same timestamp and a growing duration, the end packet goes out three times, and long
presses are segmented. Timing comes from the caller's ticks, never from a clock.

This module must not read clocks, open sockets or look at audio samples.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum

from hotline.rtp.packet import BytesLike, RtpError
from hotline.rtp.seq import TS_MASK, ts_delta, ts_is_newer
from hotline.rtp.stream import RtpArrival, RtpSender

DIGITS = "0123456789*#ABCD"  # event codes 0..15
FLASH = "!"  # event code 16, hook flash
FLASH_CODE = 16
MAX_DURATION = 0xFFFF  # the duration field saturates here: longer events are segmented

_BLOCK = struct.Struct("!BBH")


class TelephoneEventError(RtpError):
    """A malformed telephone-event payload."""


def digit_of(code: int) -> str | None:
    """The digit for an event code (0-9, *, #, A-D, flash as "!"), None for others."""
    if 0 <= code < 16:
        return DIGITS[code]
    if code == FLASH_CODE:
        return FLASH
    return None


def event_code(digit: str) -> int:
    """The RFC 4733 event code of a digit (case-insensitive for A-D)."""
    if digit == FLASH:
        return FLASH_CODE
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r} (expected 0-9, *, #, A-D or !)")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One 4-octet event block of a telephone-event payload."""

    code: int
    end: bool
    volume: int  # power level, -dBm0 (0..63)
    duration: int  # timestamp units since the event (segment) started

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 255:
            raise TelephoneEventError(f"telephone-event code {self.code} out of range 0..255")
        if not 0 <= self.volume <= 63:
            raise TelephoneEventError(f"telephone-event volume {self.volume} out of range 0..63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise TelephoneEventError(
                f"telephone-event duration {self.duration} out of range 0..65535"
            )

    def serialize(self) -> bytes:
        return _BLOCK.pack(self.code, (0x80 if self.end else 0) | self.volume, self.duration)


def parse_events(payload: BytesLike) -> tuple[TelephoneEvent, ...]:
    """The event blocks of a telephone-event payload; raises `TelephoneEventError`."""
    n = len(payload)
    if n == 0 or n % 4:
        raise TelephoneEventError(
            f"telephone-event payload length {n} is not a positive multiple of 4"
        )
    events = []
    for offset in range(0, n, 4):
        code, flags, duration = _BLOCK.unpack_from(payload, offset)
        events.append(TelephoneEvent(code, bool(flags & 0x80), flags & 0x3F, duration))
    return tuple(events)


# -- receive ---------------------------------------------------------------------------


class EndReason(Enum):
    END_PACKET = "end-packet"  # an E-bit packet arrived
    TIMEOUT = "timeout"  # no update for end_timeout seconds: the end packets were lost
    SUPERSEDED = "superseded"  # a newer event started on the same stream before the end
    LATE = "late"  # the whole press arrived after a newer one: reported at once
    STREAM_GONE = "stream-gone"  # its SSRC was evicted or the receiver was reset


@dataclass(frozen=True, slots=True)
class DigitStarted:
    """A key went down. Emitted once per key press."""

    digit: str
    ssrc: int
    start_ts: int  # RTP timestamp of the event: its identity within the SSRC
    started_at: float  # estimated, on the arrival timeline (seconds)
    volume: int


@dataclass(frozen=True, slots=True)
class DigitEnded:
    """The key press is over. Emitted once per key press, after its `DigitStarted`."""

    digit: str
    ssrc: int
    start_ts: int
    duration_samples: int  # over all segments, timestamp units
    started_at: float
    ended_at: float
    reason: EndReason
    segments: int


DtmfEvent = DigitStarted | DigitEnded


@dataclass(frozen=True, slots=True)
class DigitInterval:
    """When an RFC 4733 press was active, on the arrival timeline (`ended_at` None while
    it still is)."""

    digit: str
    started_at: float
    ended_at: float | None


class _Press:
    __slots__ = (
        "code",
        "digit",
        "durations",
        "end_reason",
        "ended_at",
        "first_ts",
        "last_ts",
        "last_update",
        "ssrc",
        "start_ts",
        "started_at",
        "volume",
    )

    def __init__(
        self, code: int, digit: str, ssrc: int, ts: int, started_at: float, now: float, volume: int
    ) -> None:
        self.code = code
        self.digit = digit
        self.ssrc = ssrc
        self.start_ts = ts  # the timestamp it was first seen with: its identity
        self.first_ts = ts  # earliest known segment
        self.last_ts = ts  # latest known segment
        self.durations: dict[int, int] = {}  # segment timestamp -> largest duration seen
        self.started_at = started_at
        self.last_update = now
        self.ended_at: float | None = None
        self.end_reason: EndReason | None = None
        self.volume = volume

    @property
    def total_duration(self) -> int:
        return ts_delta(self.last_ts, self.first_ts) + self.durations.get(self.last_ts, 0)


class _Stream:
    __slots__ = ("active", "keys", "last_heard", "presses", "ssrc")

    def __init__(self, ssrc: int, now: float) -> None:
        self.ssrc = ssrc
        self.keys: dict[tuple[int, int], _Press] = {}  # (event timestamp, code) -> press
        self.presses: deque[_Press] = deque()
        self.active: _Press | None = None
        self.last_heard = now


class DtmfEventReceiver:
    """RFC 4733 receive side for one leg. See the module docstring for the rules.

    Feed it every telephone-event packet of the leg (`receive`) and arm a timer for
    `next_deadline()`, calling `handle_timer(now)` when it expires. Both return the
    `DigitStarted` / `DigitEnded` events that became known.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        packet_interval: float = 0.05,
        timeout_intervals: int = 3,
        timeout_margin: float = 0.05,
        key_reuse_after: float = 0.5,
        segment_tolerance: float = 0.1,
        continuation_window: float = 2.0,
        claim_guard: float = 0.1,
        history: int = 32,
        max_streams: int = 4,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        if packet_interval <= 0 or timeout_intervals < 1 or timeout_margin < 0:
            raise ValueError("packet_interval > 0, timeout_intervals >= 1, timeout_margin >= 0")
        if history < 1 or max_streams < 1:
            raise ValueError("history and max_streams must be >= 1")
        self.clock_rate = clock_rate
        self.end_timeout = packet_interval * timeout_intervals + timeout_margin
        self.key_reuse_after = key_reuse_after
        self.continuation_window = continuation_window
        self.claim_guard = claim_guard
        self.history = history
        self.max_streams = max_streams
        self._segment_min = MAX_DURATION - max(0, round(segment_tolerance * clock_rate))
        self._streams: dict[int, _Stream] = {}
        self._intervals: deque[DigitInterval] = deque(maxlen=4 * history)
        self.digits = 0
        self.duplicates = 0
        self.malformed = 0
        self.unsupported = 0
        self.timeouts = 0
        self.last_error: str | None = None

    # -- input ---------------------------------------------------------------------

    def receive(self, ssrc: int, timestamp: int, payload: BytesLike, now: float) -> list[DtmfEvent]:
        """One telephone-event packet (SSRC, RTP timestamp, payload) that arrived at
        `now`. A malformed payload is counted and yields nothing."""
        try:
            blocks = parse_events(payload)
        except TelephoneEventError as exc:
            self.malformed += 1
            self.last_error = str(exc)
            return []
        events: list[DtmfEvent] = []
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._new_stream(ssrc, now, events)
        stream.last_heard = now
        key = timestamp & TS_MASK
        for block in blocks:
            self._block(stream, key, block, now, events)
            # RFC 4733 §2.5.1.5: events packed in one packet are contiguous.
            key = (key + block.duration) & TS_MASK
        return events

    def receive_arrival(self, arrival: RtpArrival, now: float) -> list[DtmfEvent]:
        """`receive` for an arrival from `RtpReceiver`, without copying its payload."""
        payload = memoryview(arrival.data)[arrival.payload_start : arrival.payload_end]
        return self.receive(arrival.ssrc, arrival.timestamp, payload, now)

    def next_deadline(self) -> float | None:
        """When an open press without news would be closed by timeout."""
        deadlines = [
            s.active.last_update + self.end_timeout
            for s in self._streams.values()
            if s.active is not None
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[DtmfEvent]:
        events: list[DtmfEvent] = []
        for stream in self._streams.values():
            press = stream.active
            if press is not None and press.last_update + self.end_timeout <= now:
                self.timeouts += 1
                self._end(stream, press, press.last_update, EndReason.TIMEOUT, events)
        return events

    def reset(self, now: float) -> list[DtmfEvent]:
        """Forget every stream (e.g. the remote media changed); open presses end."""
        events: list[DtmfEvent] = []
        for stream in list(self._streams.values()):
            self._drop_stream(stream, now, events)
        return events

    # -- in-band de-duplication ----------------------------------------------------------

    def claims(self, digit: str, start: float, end: float, guard: float | None = None) -> bool:
        """True when an RFC 4733 press of `digit` overlaps [start, end] (arrival-time
        seconds) widened by `guard` (default `claim_guard`) on both sides: an in-band
        detection there is a copy of that press."""
        g = self.claim_guard if guard is None else guard
        for interval in self.intervals():
            if interval.digit != digit:
                continue
            finish = interval.ended_at
            if interval.started_at - g <= end and (finish is None or start <= finish + g):
                return True
        return False

    def intervals(self) -> list[DigitInterval]:
        """Recent presses (bounded history) and the ones still active."""
        result = list(self._intervals)
        result.extend(
            DigitInterval(s.active.digit, s.active.started_at, None)
            for s in self._streams.values()
            if s.active is not None
        )
        return result

    # -- the rules -----------------------------------------------------------------------

    def _block(
        self, stream: _Stream, key: int, block: TelephoneEvent, now: float, events: list[DtmfEvent]
    ) -> None:
        digit = digit_of(block.code)
        if digit is None:
            self.unsupported += 1
            return
        press = stream.keys.get((key, block.code))
        if press is not None:
            if press.end_reason is None:
                self._update(stream, press, key, block, now, events)
                return
            restarts = not block.end and block.duration < press.durations.get(key, 0)
            ended_at = now if press.ended_at is None else press.ended_at
            if not (restarts and now - ended_at >= self.key_reuse_after):
                self.duplicates += 1
                return
            # The same timestamp pressed again (a replayed capture): a new press.
        else:
            owner = self._continued(stream, key, block.code, now)
            if owner is not None:
                self._attach(stream, owner, key, block, now, events)
                return
        self._start(stream, key, digit, block, now, events)

    def _continued(self, stream: _Stream, key: int, code: int, now: float) -> _Press | None:
        """The press that `key` is another segment of, if any: it starts where that
        press's last segment would end (never after an end packet: that is a new press),
        or ends where its first known segment starts (an earlier segment arriving late)."""
        low = self._segment_min
        for press in reversed(stream.presses):
            if press.code != code:
                continue
            if press.end_reason is not None and now - press.last_update > self.continuation_window:
                continue
            if (
                press.end_reason is not EndReason.END_PACKET
                and low <= ts_delta(key, press.last_ts) <= MAX_DURATION
            ):
                return press
            if low <= ts_delta(press.first_ts, key) <= MAX_DURATION:
                return press
        return None

    def _attach(
        self,
        stream: _Stream,
        press: _Press,
        key: int,
        block: TelephoneEvent,
        now: float,
        events: list[DtmfEvent],
    ) -> None:
        stream.keys[(key, press.code)] = press
        press.durations[key] = block.duration
        if ts_is_newer(key, press.last_ts):
            press.last_ts = key
        elif ts_is_newer(press.first_ts, key):
            press.first_ts = key
        if press.end_reason is not None:
            self.duplicates += 1  # the press was already reported ended: nothing new
            return
        press.last_update = now
        if block.end and key == press.last_ts:
            self._end(stream, press, now, EndReason.END_PACKET, events)

    def _update(
        self,
        stream: _Stream,
        press: _Press,
        key: int,
        block: TelephoneEvent,
        now: float,
        events: list[DtmfEvent],
    ) -> None:
        if block.duration > press.durations.get(key, -1):
            press.durations[key] = block.duration
        press.last_update = now
        if block.end and key == press.last_ts:
            self._end(stream, press, now, EndReason.END_PACKET, events)

    def _start(
        self,
        stream: _Stream,
        key: int,
        digit: str,
        block: TelephoneEvent,
        now: float,
        events: list[DtmfEvent],
    ) -> None:
        started_at = now - block.duration / self.clock_rate
        press = _Press(block.code, digit, stream.ssrc, key, started_at, now, block.volume)
        press.durations[key] = block.duration
        stream.keys[(key, block.code)] = press
        stream.presses.append(press)
        if len(stream.presses) > self.history:
            old = stream.presses.popleft()
            if old is stream.active:  # never forget the open press
                keep, old = old, stream.presses.popleft()
                stream.presses.appendleft(keep)
            for ts in old.durations:
                if stream.keys.get((ts, old.code)) is old:
                    del stream.keys[(ts, old.code)]
        self.digits += 1
        active = stream.active
        late = active is not None and not ts_is_newer(key, active.last_ts)
        if active is not None and not late:
            # A newer event started: the open one is over (its end packets were lost).
            self._end(stream, active, active.last_update, EndReason.SUPERSEDED, events)
        events.append(DigitStarted(digit, stream.ssrc, key, started_at, block.volume))
        if late:
            # The whole press arrived after a newer one: report it, and it is over.
            self._end(stream, press, now, EndReason.LATE, events)
        elif block.end:
            self._end(stream, press, now, EndReason.END_PACKET, events)
        else:
            stream.active = press

    def _end(
        self,
        stream: _Stream,
        press: _Press,
        ended_at: float,
        reason: EndReason,
        events: list[DtmfEvent],
    ) -> None:
        press.ended_at = ended_at
        press.end_reason = reason
        if stream.active is press:
            stream.active = None
        segments = len(press.durations)
        events.append(
            DigitEnded(
                press.digit,
                press.ssrc,
                press.start_ts,
                press.total_duration,
                press.started_at,
                ended_at,
                reason,
                segments,
            )
        )
        self._intervals.append(DigitInterval(press.digit, press.started_at, ended_at))

    def _new_stream(self, ssrc: int, now: float, events: list[DtmfEvent]) -> _Stream:
        if len(self._streams) >= self.max_streams:
            oldest = min(self._streams.values(), key=lambda s: s.last_heard)
            self._drop_stream(oldest, now, events)
        stream = _Stream(ssrc, now)
        self._streams[ssrc] = stream
        return stream

    def _drop_stream(self, stream: _Stream, now: float, events: list[DtmfEvent]) -> None:
        press = stream.active
        if press is not None:
            self._end(stream, press, press.last_update, EndReason.STREAM_GONE, events)
        del self._streams[stream.ssrc]


# -- send ------------------------------------------------------------------------------


class _Outgoing:
    __slots__ = (
        "code",
        "elapsed",
        "ends_sent",
        "gap",
        "seg_start",
        "seg_ts",
        "started",
        "ticks",
        "total",
    )

    def __init__(self, code: int, total: int, gap: int, ts: int) -> None:
        self.code = code
        self.total = total  # samples of tone
        self.gap = gap  # samples of silence after it
        self.seg_ts = ts  # timestamp of the current segment
        self.seg_start = 0  # elapsed samples when the current segment began
        self.elapsed = 0
        self.ends_sent = 0
        self.ticks = 0
        self.started = False


class DtmfEventSender:
    """RFC 4733 send side for one leg, driven by the media tick.

    Queue digits with `press` / `send`. Each tick, call `tick(rtp, samples)`: None means
    no event owns this tick (send audio as usual); a list (possibly empty) means the tick
    belongs to an event — send those packets instead of audio; the sender has already
    advanced the media clock of `rtp` by `samples`, so audio after the event continues
    with the right timestamps.
    """

    def __init__(
        self,
        payload_type: int,
        *,
        clock_rate: int = 8000,
        volume: int = 10,
        end_repeats: int = 3,
        update_every: int = 1,
        duration: float = 0.1,
        gap: float = 0.1,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range 0..127")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} out of range 0..63")
        if end_repeats < 1 or update_every < 1:
            raise ValueError("end_repeats and update_every must be >= 1")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.volume = volume
        self.end_repeats = end_repeats
        self.update_every = update_every
        self.default_duration = round(duration * clock_rate)
        self.default_gap = round(gap * clock_rate)
        self._queue: deque[tuple[int, int, int]] = deque()
        self._current: _Outgoing | None = None
        self._gap_left = 0
        self.sent = 0  # digits completed

    @property
    def busy(self) -> bool:
        """An event is being sent or waits in the queue."""
        return self._current is not None or bool(self._queue)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def press(self, digit: str, duration: int | None = None, gap: int | None = None) -> None:
        """Queue one key press: `duration` samples of event, then `gap` samples before
        the next one (defaults from the constructor)."""
        total = self.default_duration if duration is None else duration
        if total <= 0:
            raise ValueError(f"event duration must be positive, got {total}")
        pause = self.default_gap if gap is None else gap
        if pause < 0:
            raise ValueError(f"gap must be >= 0, got {pause}")
        self._queue.append((event_code(digit), total, pause))

    def send(self, digits: str) -> None:
        """Queue several digits with the default duration and gap."""
        codes = [event_code(d) for d in digits]  # validate all before queueing any
        for code in codes:
            self._queue.append((code, self.default_duration, self.default_gap))

    def cancel_pending(self) -> int:
        """Drop queued digits that have not started; the current one finishes."""
        dropped = len(self._queue)
        self._queue.clear()
        return dropped

    def tick(self, rtp: RtpSender, samples: int, *, now: float | None = None) -> list[bytes] | None:
        if samples <= 0:
            raise ValueError(f"samples per tick must be positive, got {samples}")
        current = self._current
        if current is None:
            if self._gap_left > 0 or not self._queue:
                self._gap_left = max(0, self._gap_left - samples)
                return None
            code, total, gap = self._queue.popleft()
            current = _Outgoing(code, total, gap, rtp.timestamp)
            self._current = current
        packets: list[bytes] = []
        if current.ends_sent == 0:
            current.elapsed = min(current.total, current.elapsed + samples)
            while current.elapsed - current.seg_start > MAX_DURATION:
                # Close the segment at the largest duration and start the next one
                # where it ends (RFC 4733 long-duration events).
                final = self._payload(current.code, False, MAX_DURATION)
                for _ in range(self.end_repeats):
                    packets.append(rtp.packet_at(final, self.payload_type, current.seg_ts))
                current.seg_start += MAX_DURATION
                current.seg_ts = (current.seg_ts + MAX_DURATION) & TS_MASK
            duration = current.elapsed - current.seg_start
            if current.elapsed >= current.total:
                packets.append(self._end_packet(rtp, current, duration))
            elif not current.started or current.ticks % self.update_every == 0:
                payload = self._payload(current.code, False, duration)
                packets.append(
                    rtp.packet_at(payload, self.payload_type, current.seg_ts, not current.started)
                )
            current.started = True
        elif current.ticks % self.update_every == 0:
            packets.append(self._end_packet(rtp, current, current.total - current.seg_start))
        current.ticks += 1
        if current.ends_sent >= self.end_repeats:
            self._current = None
            self._gap_left = current.gap
            self.sent += 1
        rtp.advance(samples, now=now)
        return packets

    def _end_packet(self, rtp: RtpSender, current: _Outgoing, duration: int) -> bytes:
        current.ends_sent += 1
        marker = not current.started
        payload = self._payload(current.code, True, duration)
        return rtp.packet_at(payload, self.payload_type, current.seg_ts, marker)

    def _payload(self, code: int, end: bool, duration: int) -> bytes:
        return _BLOCK.pack(code, (0x80 if end else 0) | self.volume, duration)
