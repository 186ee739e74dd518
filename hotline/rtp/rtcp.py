"""RTCP (RFC 3550 §6): packets, compound packets, and one leg's reporting session.

Owns the wire format of SR, RR, SDES, BYE and APP packets (other types are carried as
`UnknownRtcpPacket`), compound packets, report blocks (fraction lost, signed 24-bit
cumulative loss, extended highest sequence number, jitter, LSR, DLSR), NTP timestamp
arithmetic and the round-trip time computed from LSR/DLSR (§6.4.1), and `RtcpSession`:

* it builds this leg's compound report (SR when we sent RTP in the last two intervals,
  else RR; then SDES CNAME) at the RFC 3550 §6.3 / A.7 interval — 5 s minimum (half of
  it before the first report), randomised over [0.5, 1.5] and divided by e - 3/2, with
  timer reconsideration — from the receiver's statistics and the sender's counters;
* it digests received reports into per-call figures: loss fraction and cumulative loss
  in both directions, jitter (ms) and round-trip time (ms).

Time is data: the caller passes `now` (monotonic seconds) and `ntp_now` (the 64-bit NTP
wall-clock timestamp) in; the random source for the interval is injected, so the same
inputs give the same reports. This module must not read clocks or open sockets; it does
not know about calls, SIP or audio.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from hotline.rtp.packet import BytesLike
from hotline.rtp.stream import RtpReceiver, RtpSender

RTCP_VERSION = 2
MAX_COUNT = 31  # 5-bit count field

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1

# RFC 3550 §6.2 / A.7 constants.
RTCP_MIN_INTERVAL = 5.0  # seconds
RTCP_BANDWIDTH_FRACTION = 0.05  # of the session bandwidth
RTCP_SENDER_BW_FRACTION = 0.25
RTCP_RCVR_BW_FRACTION = 0.75
COMPENSATION = 2.71828 - 1.5  # e - 3/2, for the timer reconsideration bias
IPV4_UDP_OVERHEAD = 28  # octets of IP + UDP header counted in the average RTCP size

_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")
_U32_STRUCT = struct.Struct("!I")


class RtcpError(ValueError):
    """A malformed RTCP packet, or values that cannot be serialized."""


class RtcpType(IntEnum):
    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


class SdesType(IntEnum):
    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


def _check_u32(value: int, what: str) -> None:
    if not 0 <= value <= _U32:
        raise RtcpError(f"RTCP {what} {value} out of range 0..4294967295")


def _check_text(value: str, what: str) -> None:
    if len(value.encode("utf-8")) > 255:
        raise RtcpError(f"RTCP {what} is longer than 255 octets")


# -- packets -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255: lost / expected over the interval, times 256
    cumulative_lost: int  # signed 24-bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, timestamp units
    last_sr: int = 0  # LSR: middle 32 bits of the NTP timestamp of the last SR
    delay_since_last_sr: int = 0  # DLSR, units of 1/65536 s

    def __post_init__(self) -> None:
        _check_u32(self.ssrc, "report block SSRC")
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpError(f"RTCP fraction lost {self.fraction_lost} out of range 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise RtcpError(
                f"RTCP cumulative lost {self.cumulative_lost} out of range -8388608..8388607"
            )
        _check_u32(self.highest_sequence, "extended highest sequence number")
        _check_u32(self.jitter, "jitter")
        _check_u32(self.last_sr, "LSR")
        _check_u32(self.delay_since_last_sr, "DLSR")

    def serialize(self) -> bytes:
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _check_reports(reports: tuple[ReportBlock, ...], extension: bytes, what: str) -> None:
    if len(reports) > MAX_COUNT:
        raise RtcpError(f"RTCP {what} cannot carry {len(reports)} report blocks, at most 31")
    if len(extension) % 4:
        raise RtcpError(
            f"RTCP {what} profile extension is {len(extension)} bytes, not a multiple of 4"
        )


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension

    def __post_init__(self) -> None:
        _check_u32(self.ssrc, "SR SSRC")
        if not 0 <= self.ntp_timestamp <= _U64:
            raise RtcpError(f"RTCP NTP timestamp {self.ntp_timestamp} out of 64-bit range")
        _check_u32(self.rtp_timestamp, "SR RTP timestamp")
        _check_u32(self.packet_count, "SR packet count")
        _check_u32(self.octet_count, "SR octet count")
        _check_reports(self.reports, self.extension, "SR")

    def serialize(self) -> bytes:
        body = [
            _SR_INFO.pack(
                self.ssrc,
                self.ntp_timestamp,
                self.rtp_timestamp,
                self.packet_count,
                self.octet_count,
            )
        ]
        body.extend(block.serialize() for block in self.reports)
        body.append(self.extension)
        return _packet(len(self.reports), RtcpType.SR, b"".join(body))


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __post_init__(self) -> None:
        _check_u32(self.ssrc, "RR SSRC")
        _check_reports(self.reports, self.extension, "RR")

    def serialize(self) -> bytes:
        body = [_U32_STRUCT.pack(self.ssrc)]
        body.extend(block.serialize() for block in self.reports)
        body.append(self.extension)
        return _packet(len(self.reports), RtcpType.RR, b"".join(body))


@dataclass(frozen=True, slots=True)
class SdesItem:
    """One SDES item; `kind` is an `SdesType` value (1..255). Text is UTF-8 on the wire;
    undecodable octets from a peer become U+FFFD."""

    kind: int
    value: str

    def __post_init__(self) -> None:
        if not 1 <= self.kind <= 255:
            raise RtcpError(f"RTCP SDES item type {self.kind} out of range 1..255")
        _check_text(self.value, "SDES item")


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[SdesItem, ...] = ()

    def __post_init__(self) -> None:
        _check_u32(self.ssrc, "SDES SSRC")

    @property
    def cname(self) -> str | None:
        for item in self.items:
            if item.kind == SdesType.CNAME:
                return item.value
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...] = ()

    def __post_init__(self) -> None:
        if len(self.chunks) > MAX_COUNT:
            raise RtcpError(f"RTCP SDES cannot carry {len(self.chunks)} chunks, at most 31")

    def serialize(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += _U32_STRUCT.pack(chunk.ssrc)
            for item in chunk.items:
                text = item.value.encode("utf-8")
                body += bytes((item.kind, len(text)))
                body += text
            body += b"\x00"  # end of the item list
            body += bytes(-len(body) % 4)  # null octets up to the 32-bit boundary
        return _packet(len(self.chunks), RtcpType.SDES, bytes(body))


@dataclass(frozen=True, slots=True)
class Bye:
    sources: tuple[int, ...]
    reason: str | None = None

    def __post_init__(self) -> None:
        if len(self.sources) > MAX_COUNT:
            raise RtcpError(f"RTCP BYE cannot carry {len(self.sources)} SSRCs, at most 31")
        for ssrc in self.sources:
            _check_u32(ssrc, "BYE SSRC")
        if self.reason is not None:
            _check_text(self.reason, "BYE reason")

    def serialize(self) -> bytes:
        body = bytearray()
        for ssrc in self.sources:
            body += _U32_STRUCT.pack(ssrc)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            body += bytes((len(text),))
            body += text
            body += bytes(-len(body) % 4)
        return _packet(len(self.sources), RtcpType.BYE, bytes(body))


@dataclass(frozen=True, slots=True)
class App:
    subtype: int
    ssrc: int
    name: bytes  # four ASCII octets
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.subtype <= MAX_COUNT:
            raise RtcpError(f"RTCP APP subtype {self.subtype} out of range 0..31")
        _check_u32(self.ssrc, "APP SSRC")
        if len(self.name) != 4:
            raise RtcpError(f"RTCP APP name must be 4 octets, got {len(self.name)}")
        if len(self.data) % 4:
            raise RtcpError(f"RTCP APP data is {len(self.data)} bytes, not a multiple of 4")

    def serialize(self) -> bytes:
        body = _U32_STRUCT.pack(self.ssrc) + self.name + self.data
        return _packet(self.subtype, RtcpType.APP, body)


@dataclass(frozen=True, slots=True)
class UnknownRtcpPacket:
    """A packet of a type this layer does not interpret (RTPFB, PSFB, XR, ...)."""

    packet_type: int
    count: int
    body: bytes

    def __post_init__(self) -> None:
        if not 192 <= self.packet_type <= 223:
            raise RtcpError(f"RTCP packet type {self.packet_type} out of range 192..223")
        if not 0 <= self.count <= MAX_COUNT:
            raise RtcpError(f"RTCP count {self.count} out of range 0..31")
        if len(self.body) % 4:
            raise RtcpError(f"RTCP packet body is {len(self.body)} bytes, not a multiple of 4")

    def serialize(self) -> bytes:
        return _packet(self.count, self.packet_type, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | App | UnknownRtcpPacket


def _packet(count: int, packet_type: int, body: bytes) -> bytes:
    length = (len(body) + 4) // 4 - 1
    if length > 0xFFFF:
        raise RtcpError(f"RTCP packet of {len(body) + 4} bytes is too long for its length field")
    return _HEADER.pack(0x80 | count, packet_type, length) + body


# -- compound packets ----------------------------------------------------------------


def is_rtcp(data: BytesLike) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP when the second octet is in 192..223."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    return b"".join(packet.serialize() for packet in packets)


def parse_compound(data: BytesLike, *, strict: bool = False) -> tuple[RtcpPacket, ...]:
    """Parse a (compound) RTCP datagram; raises `RtcpError` with a precise reason.

    The lengths must account for every octet, each packet must be version 2, and only
    the last one may be padded (RFC 3550 §6.4.1, A.2). With `strict`, the first packet
    must also be an SR or RR, as RFC 3550 compound packets require; by default a lone
    BYE or a reduced-size packet (RFC 5506) is accepted.
    """
    raw = bytes(data)
    n = len(raw)
    if n < 4:
        raise RtcpError(f"RTCP packet too short: {n} bytes, need 4")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < n:
        left = n - offset
        if left < 4:
            raise RtcpError(f"RTCP compound packet has {left} trailing bytes, need 4 for a header")
        b0, packet_type, length = _HEADER.unpack_from(raw, offset)
        version = b0 >> 6
        if version != RTCP_VERSION:
            raise RtcpError(f"RTCP version {version}, expected {RTCP_VERSION}")
        if not 192 <= packet_type <= 223:
            raise RtcpError(f"RTCP packet type {packet_type} is not in the RTCP range 192..223")
        size = (length + 1) * 4
        if size > left:
            raise RtcpError(
                f"RTCP length field {length} ({size} bytes) exceeds datagram: {left} bytes left"
            )
        end = offset + size
        body_end = end
        if b0 & 0x20:
            if end != n:
                raise RtcpError(
                    "RTCP padding bit set on a packet that is not the last in the compound"
                )
            padding = raw[end - 1]
            if padding == 0:
                raise RtcpError("RTCP padding length 0 is invalid: the count includes itself")
            if padding > size - 4:
                raise RtcpError(
                    f"RTCP padding length {padding} exceeds packet body of {size - 4} bytes"
                )
            body_end = end - padding
        packets.append(_parse_packet(packet_type, b0 & 0x1F, raw[offset + 4 : body_end]))
        offset = end
    if strict and not isinstance(packets[0], SenderReport | ReceiverReport):
        first = raw[1]
        raise RtcpError(f"RTCP compound packet must start with SR or RR, got type {first}")
    return tuple(packets)


def _parse_packet(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == RtcpType.SR:
        return _parse_sr(count, body)
    if packet_type == RtcpType.RR:
        return _parse_rr(count, body)
    if packet_type == RtcpType.SDES:
        return _parse_sdes(count, body)
    if packet_type == RtcpType.BYE:
        return _parse_bye(count, body)
    if packet_type == RtcpType.APP:
        if len(body) < 8:
            raise RtcpError(f"RTCP APP too short: {len(body) + 4} bytes, need 12")
        return App(count, _U32_STRUCT.unpack_from(body)[0], body[4:8], body[8:])
    return UnknownRtcpPacket(packet_type, count, body)


def _parse_sr(count: int, body: bytes) -> SenderReport:
    need = 24 + 24 * count
    if len(body) < need:
        raise RtcpError(
            f"RTCP SR with {count} report blocks needs {need + 4} bytes, packet has {len(body) + 4}"
        )
    ssrc, ntp, rtp_ts, packet_count, octet_count = _SR_INFO.unpack_from(body)
    blocks = tuple(ReportBlock.parse(body, 24 + 24 * i) for i in range(count))
    return SenderReport(ssrc, ntp, rtp_ts, packet_count, octet_count, blocks, body[need:])


def _parse_rr(count: int, body: bytes) -> ReceiverReport:
    need = 4 + 24 * count
    if len(body) < need:
        raise RtcpError(
            f"RTCP RR with {count} report blocks needs {need + 4} bytes, packet has {len(body) + 4}"
        )
    ssrc = _U32_STRUCT.unpack_from(body)[0]
    blocks = tuple(ReportBlock.parse(body, 4 + 24 * i) for i in range(count))
    return ReceiverReport(ssrc, blocks, body[need:])


def _parse_sdes(count: int, body: bytes) -> SourceDescription:
    n = len(body)
    pos = 0
    chunks = []
    for index in range(count):
        if pos + 4 > n:
            raise RtcpError(f"RTCP SDES chunk {index + 1} of {count} is truncated")
        ssrc = _U32_STRUCT.unpack_from(body, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= n:
                raise RtcpError(f"RTCP SDES chunk for SSRC {ssrc} has no end of its item list")
            kind = body[pos]
            if kind == SdesType.END:
                pos = (pos + 4) & ~3  # the null octet, then padding to the 32-bit boundary
                if pos > n:
                    raise RtcpError(
                        f"RTCP SDES chunk for SSRC {ssrc} is not padded to a 32-bit boundary"
                    )
                break
            if pos + 2 > n:
                raise RtcpError(f"RTCP SDES item of type {kind} is truncated")
            length = body[pos + 1]
            if pos + 2 + length > n:
                raise RtcpError(
                    f"RTCP SDES item length {length} exceeds packet: {n - pos - 2} bytes left"
                )
            text = body[pos + 2 : pos + 2 + length].decode("utf-8", "replace")
            items.append(SdesItem(kind, text))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    if pos != n:
        raise RtcpError(f"RTCP SDES has {n - pos} bytes after its {count} chunks")
    return SourceDescription(tuple(chunks))


def _parse_bye(count: int, body: bytes) -> Bye:
    need = 4 * count
    if len(body) < need:
        raise RtcpError(
            f"RTCP BYE with {count} SSRCs needs {need + 4} bytes, packet has {len(body) + 4}"
        )
    sources = struct.unpack_from(f"!{count}I", body)
    reason: str | None = None
    if len(body) > need:
        length = body[need]
        if need + 1 + length > len(body):
            raise RtcpError(
                f"RTCP BYE reason length {length} exceeds packet: {len(body) - need - 1} bytes left"
            )
        reason = body[need + 1 : need + 1 + length].decode("utf-8", "replace")
    return Bye(tuple(sources), reason)


# -- NTP time and round trips ------------------------------------------------------------


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP timestamp of a Unix time (seconds since 1970)."""
    return round((seconds + NTP_UNIX_OFFSET) * 4294967296.0) & _U64


def ntp_to_unix(ntp: int) -> float:
    return ntp / 4294967296.0 - NTP_UNIX_OFFSET


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR / arrival-time format."""
    return (ntp >> 16) & _U32


def round_trip_time(arrival_ntp: int, last_sr: int, delay_since_last_sr: int) -> float | None:
    """RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in seconds, from a report block that
    arrived at NTP time `arrival_ntp`. None when the block carries no LSR (the peer
    has had no SR from us yet) or the result is negative (inconsistent DLSR)."""
    if last_sr == 0:
        return None
    rtt = (ntp_middle32(arrival_ntp) - last_sr - delay_since_last_sr) & _U32
    if rtt >= 1 << 31:
        return None
    return rtt / 65536.0


# -- the session ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderReportReceived:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True, slots=True)
class ReceptionReportReceived:
    """A peer reported on our stream. `round_trip` in seconds, when computable."""

    reporter_ssrc: int
    block: ReportBlock
    round_trip: float | None


@dataclass(frozen=True, slots=True)
class SourceDescribed:
    ssrc: int
    cname: str


@dataclass(frozen=True, slots=True)
class ByeReceived:
    sources: tuple[int, ...]
    reason: str | None


RtcpEvent = SenderReportReceived | ReceptionReportReceived | SourceDescribed | ByeReceived


@dataclass(frozen=True, slots=True)
class StreamQuality:
    """Loss and jitter of one direction of a call."""

    fraction_lost: float  # over the last report interval, 0..1
    cumulative_lost: int
    loss_ratio: float  # over the call so far, 0..1
    jitter_ms: float  # latest
    max_jitter_ms: float


@dataclass(frozen=True, slots=True)
class CallQuality:
    """Per-call RTCP figures for the call record. `inbound` is what we measured of the
    peer's stream; `outbound` is what the peer reported about ours."""

    inbound: StreamQuality | None
    outbound: StreamQuality | None
    rtt_ms: float | None  # latest
    max_rtt_ms: float | None
    mean_rtt_ms: float | None
    reports_sent: int
    reports_received: int
    malformed: int

    def summary(self) -> str:
        """One line for the call's end log: what we measured of the peer's stream, what
        the peer reported of ours, and the round trip."""

        def one(name: str, q: StreamQuality | None) -> str:
            if q is None:
                return f"{name} no reports"
            return (f"{name} loss {q.loss_ratio * 100:.1f}% ({q.cumulative_lost} packets), "
                    f"jitter {q.jitter_ms:.1f} ms (max {q.max_jitter_ms:.1f})")

        rtt = "rtt n/a" if self.mean_rtt_ms is None else (
            f"rtt mean {self.mean_rtt_ms:.1f} ms (max {self.max_rtt_ms or 0.0:.1f})")
        return f"{one('in', self.inbound)}; {one('out', self.outbound)}; {rtt}"


class RtcpSession:
    """RTCP for one leg: when to report, what to report, and what the peer reported.

    Drive it with `next_deadline()` / `handle_timer(now, ntp_now)` (which returns the
    compound packet to send when one is due) and `receive(data, now, ntp_now)` for each
    RTCP datagram. `bye(now, ntp_now)` gives the final compound packet with a BYE.
    `session_bandwidth` is in bits per second (the default fits G.711 with headers).
    `rng` returns uniform floats in [0, 1); inject a seeded one for determinism.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        cname: str,
        now: float,
        receiver: RtpReceiver | None = None,
        sender: RtpSender | None = None,
        clock_rate: int = 8000,
        session_bandwidth: float = 80_000.0,
        min_interval: float = RTCP_MIN_INTERVAL,
        rng: Callable[[], float] | None = None,
    ) -> None:
        _check_u32(ssrc, "SSRC")
        _check_text(cname, "CNAME")
        if session_bandwidth <= 0 or min_interval <= 0:
            raise ValueError("session_bandwidth and min_interval must be positive")
        self.ssrc = ssrc
        self.cname = cname
        self.receiver = receiver
        self.sender = sender
        self.clock_rate = clock_rate
        self.rtcp_bandwidth = session_bandwidth * RTCP_BANDWIDTH_FRACTION / 8.0  # octets/s
        self.min_interval = min_interval
        self._rng = rng if rng is not None else random.random
        self._initial = True
        self._tp = now
        self._avg_rtcp_size = float(len(self._sdes().serialize()) + 32 + IPV4_UDP_OVERHEAD)
        self._members: set[int] = set()  # remote SSRCs heard and not said BYE
        self._byes: set[int] = set()
        self._recent_senders: list[set[int]] = [set(), set()]  # last two report intervals
        self._sent_marks = [0, 0]  # sender packet counts at the last two reports
        self._last_sr: dict[int, tuple[int, float]] = {}  # ssrc -> (LSR, arrival now)
        self.remote_cnames: dict[int, str] = {}
        self.reports_sent = 0
        self.reports_received = 0
        self.malformed = 0
        self.last_error: str | None = None
        self.last_received_at: float | None = None
        self._inbound_fraction = 0.0
        self._outbound: ReportBlock | None = None
        self._outbound_max_jitter = 0
        self._rtt_last: float | None = None
        self._rtt_max = 0.0
        self._rtt_sum = 0.0
        self._rtt_count = 0
        self._tn = now + self._interval(initial=True)

    # -- timing ------------------------------------------------------------------

    def next_deadline(self) -> float:
        return self._tn

    def handle_timer(self, now: float, ntp_now: int) -> bytes | None:
        """The compound report to send when the report timer has expired, else None
        (not yet due, or rescheduled by timer reconsideration, RFC 3550 A.7)."""
        if now < self._tn:
            return None
        interval = self._interval(initial=self._initial)
        if self._tp + interval > now:
            self._tn = self._tp + interval
            return None
        data = self.build_report(now, ntp_now)
        self._tp = now
        self._initial = False
        self._tn = now + self._interval(initial=False)
        return data

    def _we_sent(self) -> bool:
        return self.sender is not None and self.sender.packets_sent != self._sent_marks[0]

    def _interval(self, *, initial: bool) -> float:
        """RFC 3550 A.7 rtcp_interval()."""
        senders_remote = self._recent_senders[0] | self._recent_senders[1]
        if self.receiver is not None:
            senders_remote |= {s for s in self.receiver.sources() if s not in self._byes}
        members = 1 + len(self._members | senders_remote)
        we_sent = self._we_sent()
        senders = len(senders_remote) + (1 if we_sent else 0)
        bandwidth = self.rtcp_bandwidth
        n = members
        if senders <= members * RTCP_SENDER_BW_FRACTION:
            if we_sent:
                bandwidth *= RTCP_SENDER_BW_FRACTION
                n = senders
            else:
                bandwidth *= RTCP_RCVR_BW_FRACTION
                n -= senders
        interval = self._avg_rtcp_size * n / bandwidth
        minimum = self.min_interval / 2 if initial else self.min_interval
        interval = max(interval, minimum)
        return interval * (self._rng() + 0.5) / COMPENSATION

    def _account_size(self, octets: int) -> None:
        self._avg_rtcp_size += ((octets + IPV4_UDP_OVERHEAD) - self._avg_rtcp_size) / 16.0

    # -- building reports ------------------------------------------------------------

    def _sdes(self) -> SourceDescription:
        return SourceDescription((SdesChunk(self.ssrc, (SdesItem(SdesType.CNAME, self.cname),)),))

    def _report_packets(self, now: float, ntp_now: int) -> list[RtcpPacket]:
        blocks: list[ReportBlock] = []
        heard: set[int] = set()
        if self.receiver is not None:
            reports = self.receiver.reception_reports()
            current = self.receiver.current_ssrc
            for report in reports:
                heard.add(report.ssrc)
                lsr, dlsr = 0, 0
                last = self._last_sr.get(report.ssrc)
                if last is not None:
                    lsr = last[0]
                    dlsr = min(_U32, max(0, round((now - last[1]) * 65536.0)))
                blocks.append(
                    ReportBlock(
                        report.ssrc,
                        report.fraction_lost,
                        report.cumulative_lost,
                        report.extended_highest_sequence,
                        min(report.jitter, _U32),
                        lsr,
                        dlsr,
                    )
                )
                if report.ssrc == current:
                    self._inbound_fraction = report.fraction_lost / 256.0
        self._recent_senders = [self._recent_senders[1], heard]
        first: RtcpPacket
        sender = self.sender
        if sender is not None and self._we_sent():
            first = SenderReport(
                self.ssrc,
                ntp_now & _U64,
                sender.rtp_timestamp_at(now),
                sender.packets_sent & _U32,
                sender.octets_sent & _U32,
                tuple(blocks[:MAX_COUNT]),
            )
        else:
            first = ReceiverReport(self.ssrc, tuple(blocks[:MAX_COUNT]))
        packets: list[RtcpPacket] = [first]
        for start in range(MAX_COUNT, len(blocks), MAX_COUNT):
            packets.append(ReceiverReport(self.ssrc, tuple(blocks[start : start + MAX_COUNT])))
        packets.append(self._sdes())
        if sender is not None:
            self._sent_marks = [self._sent_marks[1], sender.packets_sent]
        return packets

    def build_report(self, now: float, ntp_now: int) -> bytes:
        """A compound report now, regardless of the timer (also used by `handle_timer`)."""
        data = serialize_compound(self._report_packets(now, ntp_now))
        self._account_size(len(data))
        self.reports_sent += 1
        return data

    def bye(self, now: float, ntp_now: int, reason: str | None = None) -> bytes:
        """The last compound packet of the leg: report, SDES and BYE (RFC 3550 §6.6)."""
        packets = self._report_packets(now, ntp_now)
        packets.append(Bye((self.ssrc,), reason))
        data = serialize_compound(packets)
        self.reports_sent += 1
        return data

    # -- receiving -----------------------------------------------------------------

    def receive(self, data: BytesLike, now: float, ntp_now: int) -> list[RtcpEvent]:
        """Digest one RTCP datagram that arrived at `now` (NTP time `ntp_now`).

        A malformed datagram is counted (`malformed`, `last_error`) and yields nothing;
        it never raises for anything a peer can send.
        """
        try:
            packets = parse_compound(data)
        except RtcpError as exc:
            self.malformed += 1
            self.last_error = str(exc)
            return []
        self._account_size(len(data))
        self.reports_received += 1
        self.last_received_at = now
        events: list[RtcpEvent] = []
        for packet in packets:
            if isinstance(packet, SenderReport):
                if packet.ssrc == self.ssrc:
                    continue  # our own report looped back
                self._heard(packet.ssrc)
                self._last_sr[packet.ssrc] = (ntp_middle32(packet.ntp_timestamp), now)
                events.append(
                    SenderReportReceived(
                        packet.ssrc,
                        packet.ntp_timestamp,
                        packet.rtp_timestamp,
                        packet.packet_count,
                        packet.octet_count,
                    )
                )
                self._digest_blocks(packet.ssrc, packet.reports, ntp_now, events)
            elif isinstance(packet, ReceiverReport):
                if packet.ssrc == self.ssrc:
                    continue
                self._heard(packet.ssrc)
                self._digest_blocks(packet.ssrc, packet.reports, ntp_now, events)
            elif isinstance(packet, SourceDescription):
                for chunk in packet.chunks:
                    cname = chunk.cname
                    if cname is not None and chunk.ssrc != self.ssrc:
                        self.remote_cnames[chunk.ssrc] = cname
                        events.append(SourceDescribed(chunk.ssrc, cname))
            elif isinstance(packet, Bye):
                for ssrc in packet.sources:
                    self._members.discard(ssrc)
                    self._byes.add(ssrc)
                    self._last_sr.pop(ssrc, None)
                events.append(ByeReceived(packet.sources, packet.reason))
        return events

    def _heard(self, ssrc: int) -> None:
        self._members.add(ssrc)
        self._byes.discard(ssrc)

    def _digest_blocks(
        self,
        reporter: int,
        blocks: Sequence[ReportBlock],
        ntp_now: int,
        events: list[RtcpEvent],
    ) -> None:
        for block in blocks:
            if block.ssrc != self.ssrc:
                continue
            rtt = round_trip_time(ntp_now, block.last_sr, block.delay_since_last_sr)
            if rtt is not None:
                self._rtt_last = rtt
                self._rtt_max = max(self._rtt_max, rtt)
                self._rtt_sum += rtt
                self._rtt_count += 1
            self._outbound = block
            self._outbound_max_jitter = max(self._outbound_max_jitter, block.jitter)
            events.append(ReceptionReportReceived(reporter, block, rtt))

    # -- figures -----------------------------------------------------------------------

    def quality(self) -> CallQuality:
        to_ms = 1000.0 / self.clock_rate
        inbound: StreamQuality | None = None
        if self.receiver is not None and self.receiver.current_ssrc is not None:
            stats = self.receiver.stats()
            inbound = StreamQuality(
                fraction_lost=self._inbound_fraction,
                cumulative_lost=stats.lost,
                loss_ratio=stats.loss_ratio,
                jitter_ms=stats.jitter_ms,
                max_jitter_ms=stats.max_jitter_ms,
            )
        outbound: StreamQuality | None = None
        block = self._outbound
        if block is not None:
            ratio = 0.0
            if self.sender is not None:
                expected = block.highest_sequence - self.sender.initial_sequence_number + 1
                if expected > 0:
                    ratio = min(1.0, max(0, block.cumulative_lost) / expected)
            outbound = StreamQuality(
                fraction_lost=block.fraction_lost / 256.0,
                cumulative_lost=block.cumulative_lost,
                loss_ratio=ratio,
                jitter_ms=block.jitter * to_ms,
                max_jitter_ms=self._outbound_max_jitter * to_ms,
            )
        count = self._rtt_count
        return CallQuality(
            inbound=inbound,
            outbound=outbound,
            rtt_ms=self._rtt_last * 1000.0 if self._rtt_last is not None else None,
            max_rtt_ms=self._rtt_max * 1000.0 if count else None,
            mean_rtt_ms=self._rtt_sum * 1000.0 / count if count else None,
            reports_sent=self.reports_sent,
            reports_received=self.reports_received,
            malformed=self.malformed,
        )
