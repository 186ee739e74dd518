"""RTP packet parse/serialize (RFC 3550 §5.1) and the header fast path."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from hotline.rtp.packet import (
    HeaderExtension,
    RtpError,
    RtpHeader,
    RtpPacket,
    parse_header,
    payload_bounds,
)


def fixed(
    b0: int = 0x80, b1: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 0x12345678
) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc)


# -- known bytes ----------------------------------------------------------------------


def test_parse_plain_packet_fields() -> None:
    data = bytes.fromhex("80 e5 ff ff 00 00 03 20 de ad be ef") + b"abc"
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=101,
        sequence_number=0xFFFF,
        timestamp=800,
        ssrc=0xDEADBEEF,
        payload=b"abc",
        marker=True,
    )
    assert packet.serialize() == data


def test_serialize_all_features_known_bytes() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence_number=0x0102,
        timestamp=0x03040506,
        ssrc=0x0708090A,
        payload=b"\xaa\xbb",
        marker=False,
        csrcs=(0x11111111, 0x22222222),
        extension=HeaderExtension(0xBEDE, b"\x10\x01\x00\x00"),
        padding=3,
    )
    expected = (
        bytes.fromhex("b2 00 01 02 03 04 05 06 07 08 09 0a")  # V=2 P=1 X=1 CC=2
        + bytes.fromhex("11111111 22222222")
        + bytes.fromhex("be de 00 01 10 01 00 00")  # profile, 1 word, data
        + b"\xaa\xbb"
        + b"\x00\x00\x03"  # padding: zeros, then the count (including itself)
    )
    assert packet.serialize() == expected
    assert RtpPacket.parse(expected) == packet


def test_padding_is_stripped_whatever_the_filler() -> None:
    # payload "voice" + 3 padding octets whose last says 3
    data = fixed(b0=0xA0) + b"voice" + b"\xff\xff\x03"
    packet = RtpPacket.parse(data)
    assert packet.payload == b"voice"
    assert packet.padding == 3
    assert parse_header(data)[5:] == (12, 17)


def test_padding_may_fill_whole_payload() -> None:
    data = fixed(b0=0xA0) + b"\x00\x00\x00\x04"
    assert RtpPacket.parse(data).payload == b""
    assert parse_header(data).payload_end == 12


def test_csrc_and_extension_offsets() -> None:
    data = fixed(b0=0x91) + b"\x00\x00\x00\x01" + b"\x12\x34\x00\x02" + bytes(8) + b"pay"
    header = parse_header(data)
    assert header.payload_start == 12 + 4 + 4 + 8
    assert data[header.payload_start : header.payload_end] == b"pay"
    packet = RtpPacket.parse(data)
    assert packet.csrcs == (1,)
    assert packet.extension == HeaderExtension(0x1234, bytes(8))


def test_empty_extension_data_is_allowed() -> None:
    data = fixed(b0=0x90) + b"\x10\x00\x00\x00" + b"x"
    packet = RtpPacket.parse(data)
    assert packet.extension == HeaderExtension(0x1000, b"")
    assert packet.payload == b"x"


def test_header_fast_path_fields() -> None:
    data = fixed(b1=0x80 | 8, seq=7, ts=0xFFFFFFFF, ssrc=5) + bytes(160)
    header = parse_header(data)
    assert header == RtpHeader(8, True, 7, 0xFFFFFFFF, 5, 12, 172)
    assert header.marker is True
    assert isinstance(header, RtpHeader)


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = fixed() + b"pcmu"
    assert RtpPacket.parse(bytearray(data)).payload == b"pcmu"
    assert RtpPacket.parse(memoryview(data)).payload == b"pcmu"
    assert parse_header(memoryview(data)).payload_end == 16


# -- every malformed packet, with its message ----------------------------------------

MALFORMED = [
    (b"", "RTP packet too short: 0 bytes, need 12"),
    (fixed()[:7], "RTP packet too short: 7 bytes, need 12"),
    (fixed()[:11], "RTP packet too short: 11 bytes, need 12"),
    (fixed(b0=0x40), "RTP version 1, expected 2"),
    (fixed(b0=0x00), "RTP version 0, expected 2"),
    (fixed(b0=0xC0) + b"x", "RTP version 3, expected 2"),
    (
        fixed(b0=0x83) + bytes(8),
        "RTP packet has truncated CSRC list: 3 CSRCs need 24 bytes, packet has 20",
    ),
    (
        fixed(b0=0x8F),
        "RTP packet has truncated CSRC list: 15 CSRCs need 72 bytes, packet has 12",
    ),
    (
        fixed(b0=0x90) + b"\x00\x01",
        "RTP packet has truncated header extension: its header needs 16 bytes, packet has 14",
    ),
    (
        fixed(b0=0x91) + bytes(4) + b"\x00\x01",
        "RTP packet has truncated header extension: its header needs 20 bytes, packet has 18",
    ),
    (
        fixed(b0=0x90) + b"\xbe\xde\x00\x03" + bytes(8),
        "RTP header extension length 3 words exceeds packet: needs 28 bytes, packet has 24",
    ),
    (fixed(b0=0xA0), "RTP padding bit set but no octets follow the header"),
    (
        fixed(b0=0xB0) + b"\x00\x00\x00\x00",
        "RTP padding bit set but no octets follow the header",
    ),
    (fixed(b0=0xA0) + b"abc\x00", "RTP padding length 0 is invalid: the count includes itself"),
    (
        fixed(b0=0xA0) + bytes(11) + bytes((40,)),
        "RTP padding length 40 exceeds payload: 12 bytes follow the header",
    ),
    (
        fixed(b0=0xA1) + b"\x00\x00\x00\x05" + b"\x00\x09",
        "RTP padding length 9 exceeds payload: 2 bytes follow the header",
    ),
    (
        fixed(b0=0xA1) + b"\x00\x00\x00\x05",
        "RTP padding bit set but no octets follow the header",
    ),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_packet_message(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as full:
        RtpPacket.parse(data)
    assert str(full.value) == message
    with pytest.raises(RtpError) as fast:
        parse_header(data)
    assert str(fast.value) == message
    if len(data) >= 12:
        with pytest.raises(RtpError) as bounds:
            payload_bounds(data)
        assert str(bounds.value) == message


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


# -- values that cannot be serialized -----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "RTP payload type 128 out of range 0..127"),
        ({"payload_type": -1}, "RTP payload type -1 out of range 0..127"),
        ({"sequence_number": 65536}, "RTP sequence number 65536 out of range 0..65535"),
        ({"timestamp": 1 << 32}, "RTP timestamp 4294967296 out of range 0..4294967295"),
        ({"ssrc": -5}, "RTP SSRC -5 out of range 0..4294967295"),
        ({"csrcs": tuple(range(16))}, "RTP packet cannot carry 16 CSRCs, at most 15"),
        ({"csrcs": (1 << 32,)}, "RTP CSRC 4294967296 out of range 0..4294967295"),
        ({"padding": 256}, "RTP padding length 256 out of range 0..255"),
    ],
)
def test_invalid_field_values(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "payload_type": 0,
        "sequence_number": 0,
        "timestamp": 0,
        "ssrc": 0,
    }
    base.update(kwargs)
    with pytest.raises(RtpError) as err:
        RtpPacket(**base)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_invalid_extension_values() -> None:
    with pytest.raises(
        RtpError, match=r"^RTP header extension data is 3 bytes, not a multiple of 4$"
    ):
        HeaderExtension(1, b"abc")
    with pytest.raises(RtpError, match=r"^RTP header extension profile 65536 out of range"):
        HeaderExtension(65536)


# -- the fast path is cheap -----------------------------------------------------------


def _per_packet_ns(call: Callable[[bytes], object], packets: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for data in packets:
            call(data)
        best = min(best, time.perf_counter() - start)
    return best / len(packets) * 1e9


def test_fast_path_cost_per_packet(capsys: pytest.CaptureFixture[str]) -> None:
    packets = [fixed(seq=i, ts=160 * i) + bytes(160) for i in range(5000)]
    fast = _per_packet_ns(parse_header, packets, 5)
    full = _per_packet_ns(RtpPacket.parse, packets[:1000], 3)
    with capsys.disabled():
        print(
            f"\n[rtp bench] parse_header {fast:.0f} ns/packet, RtpPacket.parse {full:.0f} ns/packet"
        )
    # Relative, so a loaded machine does not fail it: the fast path must be far cheaper
    # than building the full value, and well under the 20 ms packet budget.
    assert fast * 3 < full
    assert fast < 20_000
