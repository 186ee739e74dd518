"""RTP data packets (RFC 3550 §5.1): parse, serialize, and a lean header fast path.

Owns the wire format of an RTP packet — version, padding, extension bit, CSRC count,
marker, payload type, sequence number, timestamp, SSRC, CSRC list, header extension and
padding — and `RtpError`, whose message says exactly what is wrong with a malformed
packet (tests assert those messages).

Two ways in:

* `RtpPacket.parse(data)` / `RtpPacket.serialize()`: every field, as a frozen value;
  for tests, tools and anything off the per-packet path.
* `parse_header(data)`: the media loop's fast path. It returns an `RtpHeader` tuple
  (payload type, marker, sequence number, timestamp, SSRC and the payload's
  [start, end) offsets inside `data`) without copying the payload. The common case
  (version 2, no padding, no extension, no CSRC) costs one `struct.unpack_from`;
  anything else goes through the same checks as the full parser, so both reject
  exactly the same packets with exactly the same messages.

This module must not know about streams, sequence state, sockets or time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # octets of the fixed header
MAX_CSRC = 15

_FIXED = struct.Struct("!BBHII")
_unpack_fixed = _FIXED.unpack_from
_pack_fixed = _FIXED.pack
_EXT_HEADER = struct.Struct("!HH")
_tuple_new = tuple.__new__

BytesLike = bytes | bytearray | memoryview


class RtpError(ValueError):
    """A malformed RTP packet, or field values that cannot be serialized."""


class RtpHeader(NamedTuple):
    """What the media loop needs from one packet; the payload is
    ``data[payload_start:payload_end]`` (padding already excluded)."""

    payload_type: int
    marker: bool
    sequence_number: int
    timestamp: int
    ssrc: int
    payload_start: int
    payload_end: int


@dataclass(frozen=True, slots=True)
class HeaderExtension:
    """An RFC 3550 §5.3.1 header extension: a 16-bit profile-defined value and data
    whose length is a multiple of four octets (RFC 8285 one/two-byte forms are data
    to this layer)."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise RtpError(f"RTP header extension profile {self.profile} out of range 0..65535")
        if len(self.data) % 4:
            raise RtpError(
                f"RTP header extension data is {len(self.data)} bytes, not a multiple of 4"
            )
        if len(self.data) > 0xFFFF * 4:
            raise RtpError(f"RTP header extension data is {len(self.data)} bytes, more than 262140")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. `padding` is the number of padding octets at the end of the
    packet including the count octet itself (0: no padding, P bit clear)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: HeaderExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"RTP payload type {self.payload_type} out of range 0..127")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise RtpError(f"RTP sequence number {self.sequence_number} out of range 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise RtpError(f"RTP timestamp {self.timestamp} out of range 0..4294967295")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise RtpError(f"RTP SSRC {self.ssrc} out of range 0..4294967295")
        if len(self.csrcs) > MAX_CSRC:
            raise RtpError(f"RTP packet cannot carry {len(self.csrcs)} CSRCs, at most 15")
        for csrc in self.csrcs:
            if not 0 <= csrc <= 0xFFFFFFFF:
                raise RtpError(f"RTP CSRC {csrc} out of range 0..4294967295")
        if not 0 <= self.padding <= 255:
            raise RtpError(f"RTP padding length {self.padding} out of range 0..255")

    # -- wire format ----------------------------------------------------------------

    @classmethod
    def parse(cls, data: BytesLike) -> RtpPacket:
        """Parse one RTP packet; raises `RtpError` with a precise reason."""
        n = len(data)
        b0, b1, seq, ts, ssrc = _fixed_header(data, n)
        _check_version(b0)
        cc = b0 & 0x0F
        offset = _csrc_end(cc, n)
        csrcs = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
        extension: HeaderExtension | None = None
        if b0 & 0x10:
            end = _extension_end(data, offset, n)
            profile = _EXT_HEADER.unpack_from(data, offset)[0]
            extension = HeaderExtension(profile, bytes(data[offset + 4 : end]))
            offset = end
        padding = _padding_length(data, offset, n) if b0 & 0x20 else 0
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[offset : n - padding]),
            marker=bool(b1 & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """The packet's octets. Padding octets are zero except the final count."""
        b0 = 0x80 | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        parts = [_pack_fixed(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXT_HEADER.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


# -- the fast path --------------------------------------------------------------------


def parse_header(data: BytesLike) -> RtpHeader:
    """Parse the header of one RTP packet without copying its payload.

    Raises `RtpError` for exactly the packets `RtpPacket.parse` rejects, with the same
    messages. Meant to be called once per datagram from the media loop.
    """
    try:
        b0, b1, seq, ts, ssrc = _unpack_fixed(data)
    except struct.error:
        raise RtpError(f"RTP packet too short: {len(data)} bytes, need {RTP_HEADER_SIZE}") from None
    if b0 == 0x80:  # version 2, no padding, no extension, no CSRC: the usual packet
        return _tuple_new(RtpHeader, (b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, 12, len(data)))
    start, end = payload_bounds(data, b0)
    return _tuple_new(RtpHeader, (b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, start, end))


def payload_bounds(data: BytesLike, b0: int | None = None) -> tuple[int, int]:
    """The [start, end) offsets of the payload of a packet, after validating its
    version, CSRC list, header extension and padding. `b0` is the first octet when the
    caller already has it."""
    n = len(data)
    if b0 is None:
        b0 = _fixed_header(data, n)[0]
    elif n < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {n} bytes, need {RTP_HEADER_SIZE}")
    _check_version(b0)
    offset = _csrc_end(b0 & 0x0F, n)
    if b0 & 0x10:
        offset = _extension_end(data, offset, n)
    end = n - _padding_length(data, offset, n) if b0 & 0x20 else n
    return offset, end


# -- shared checks (one message per fault) ---------------------------------------------


def _fixed_header(data: BytesLike, n: int) -> tuple[int, int, int, int, int]:
    if n < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {n} bytes, need {RTP_HEADER_SIZE}")
    b0, b1, seq, ts, ssrc = _unpack_fixed(data)
    return b0, b1, seq, ts, ssrc


def _check_version(b0: int) -> None:
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected {RTP_VERSION}")


def _csrc_end(cc: int, n: int) -> int:
    end = RTP_HEADER_SIZE + 4 * cc
    if end > n:
        raise RtpError(
            f"RTP packet has truncated CSRC list: {cc} CSRCs need {end} bytes, packet has {n}"
        )
    return end


def _extension_end(data: BytesLike, offset: int, n: int) -> int:
    if offset + 4 > n:
        raise RtpError(
            f"RTP packet has truncated header extension: its header needs {offset + 4} bytes,"
            f" packet has {n}"
        )
    words: int = _EXT_HEADER.unpack_from(data, offset)[1]
    end = offset + 4 + 4 * words
    if end > n:
        raise RtpError(
            f"RTP header extension length {words} words exceeds packet: needs {end} bytes,"
            f" packet has {n}"
        )
    return end


def _padding_length(data: BytesLike, offset: int, n: int) -> int:
    available = n - offset
    if available == 0:
        raise RtpError("RTP padding bit set but no octets follow the header")
    padding = data[n - 1]
    if padding == 0:
        raise RtpError("RTP padding length 0 is invalid: the count includes itself")
    if padding > available:
        raise RtpError(
            f"RTP padding length {padding} exceeds payload: {available} bytes follow the header"
        )
    return padding
