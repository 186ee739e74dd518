"""RTCP packets, compound packets, RTT arithmetic and the reporting session."""

from __future__ import annotations

import struct

import pytest

from hotline.rtp.rtcp import (
    COMPENSATION,
    App,
    Bye,
    ByeReceived,
    ReceiverReport,
    ReceptionReportReceived,
    ReportBlock,
    RtcpError,
    RtcpSession,
    SdesChunk,
    SdesItem,
    SdesType,
    SenderReport,
    SenderReportReceived,
    SourceDescribed,
    SourceDescription,
    UnknownRtcpPacket,
    is_rtcp,
    ntp_from_unix,
    ntp_middle32,
    ntp_to_unix,
    parse_compound,
    round_trip_time,
    serialize_compound,
)
from hotline.rtp.stream import RtpReceiver, RtpSender

SSRC = 0x11223344

KNOWN_SR = bytes.fromhex(
    "81 c8 00 0c"  # V=2, RC=1, PT=200, length 12 words
    "11 22 33 44"  # SSRC of sender
    "e8 a6 5c 00 80 00 00 00"  # NTP timestamp
    "00 00 1f 40"  # RTP timestamp
    "00 00 00 0a"  # sender's packet count
    "00 00 06 40"  # sender's octet count
    "55 66 77 88"  # report block: SSRC
    "40 ff ff fb"  # fraction lost 64/256, cumulative lost -5 (signed 24-bit)
    "00 01 00 0a"  # extended highest sequence number
    "00 00 00 20"  # interarrival jitter
    "aa bb cc dd"  # LSR
    "00 01 00 00"  # DLSR (1 s)
)
KNOWN_SR_VALUE = SenderReport(
    ssrc=SSRC,
    ntp_timestamp=0xE8A65C0080000000,
    rtp_timestamp=8000,
    packet_count=10,
    octet_count=1600,
    reports=(ReportBlock(0x55667788, 64, -5, 0x0001000A, 32, 0xAABBCCDD, 0x00010000),),
)


def test_known_sender_report_bytes() -> None:
    assert KNOWN_SR_VALUE.serialize() == KNOWN_SR
    assert parse_compound(KNOWN_SR) == (KNOWN_SR_VALUE,)


def test_known_sdes_rr_and_bye_bytes() -> None:
    sdes = SourceDescription((SdesChunk(SSRC, (SdesItem(SdesType.CNAME, "ab"),)),))
    assert sdes.serialize() == bytes.fromhex("81 ca 00 03 11223344 01 02 61 62 00 00 00 00")
    rr = ReceiverReport(SSRC)
    assert rr.serialize() == bytes.fromhex("80 c9 00 01 11223344")
    bye = Bye((SSRC,), "bye")
    assert bye.serialize() == bytes.fromhex("81 cb 00 02 11223344 03 62 79 65")
    compound = serialize_compound([rr, sdes, bye])
    assert parse_compound(compound, strict=True) == (rr, sdes, bye)
    assert sdes.chunks[0].cname == "ab"


def test_sdes_alignment_needs_a_full_null_word_when_items_end_aligned() -> None:
    # items end on a 32-bit boundary: the end-of-list null takes a word of its own
    sdes = SourceDescription((SdesChunk(1, (SdesItem(SdesType.NAME, "abcdef"),)),))
    data = sdes.serialize()
    assert data == bytes.fromhex("81 ca 00 04 00000001 02 06") + b"abcdef" + bytes(4)
    assert parse_compound(data) == (sdes,)


def test_multiple_sdes_chunks_and_items() -> None:
    sdes = SourceDescription(
        (
            SdesChunk(1, (SdesItem(SdesType.CNAME, "a@b"), SdesItem(SdesType.TOOL, "hotline"))),
            SdesChunk(2, ()),
        )
    )
    assert parse_compound(sdes.serialize()) == (sdes,)
    assert sdes.chunks[1].cname is None


def test_bye_without_and_with_empty_reason() -> None:
    assert parse_compound(Bye((1, 2)).serialize()) == (Bye((1, 2)),)
    assert parse_compound(Bye((1,), "").serialize()) == (Bye((1,), ""),)


def test_app_and_unknown_packets_round_trip() -> None:
    app = App(3, SSRC, b"HTLN", b"\x00\x01\x02\x03")
    fb = UnknownRtcpPacket(205, 1, bytes(8))  # an RTPFB packet, carried as it is
    assert parse_compound(serialize_compound([ReceiverReport(1), app, fb])) == (
        ReceiverReport(1),
        app,
        fb,
    )


def test_padding_on_last_packet_is_stripped() -> None:
    data = bytes.fromhex("a0 c9 00 02 11223344 00 00 00 04")  # RR + 4 octets of padding
    assert parse_compound(data) == (ReceiverReport(SSRC),)


def test_profile_extension_kept() -> None:
    rr = ReceiverReport(SSRC, (), b"\xde\xad\xbe\xef")
    assert parse_compound(rr.serialize()) == (rr,)


def test_is_rtcp_demultiplexing() -> None:
    assert is_rtcp(KNOWN_SR)
    assert not is_rtcp(bytes.fromhex("80 00 00 01"))  # RTP PCMU
    assert not is_rtcp(bytes.fromhex("80 e5 00 01"))  # RTP PT 101 with marker
    assert not is_rtcp(b"\x80")


MALFORMED = [
    (b"\x80\xc9\x00", "RTCP packet too short: 3 bytes, need 4"),
    (b"\x40\xc9\x00\x01" + bytes(4), "RTCP version 1, expected 2"),
    (
        b"\x80\xc9\x00\x05" + bytes(4),
        "RTCP length field 5 (24 bytes) exceeds datagram: 8 bytes left",
    ),
    (
        ReceiverReport(1).serialize() + b"\x80\xc9",
        "RTCP compound packet has 2 trailing bytes, need 4 for a header",
    ),
    (
        b"\xa0\xc9\x00\x01" + bytes(4) + ReceiverReport(1).serialize(),
        "RTCP padding bit set on a packet that is not the last in the compound",
    ),
    (
        b"\xa0\xc9\x00\x02" + bytes(8),
        "RTCP padding length 0 is invalid: the count includes itself",
    ),
    (b"\xa0\xc9\x00\x01\x00\x00\x00\x09", "RTCP padding length 9 exceeds packet body of 4 bytes"),
    (b"\x80\x00\x00\x00", "RTCP packet type 0 is not in the RTCP range 192..223"),
    (
        b"\x81\xc8\x00\x06" + bytes(24),
        "RTCP SR with 1 report blocks needs 52 bytes, packet has 28",
    ),
    (
        b"\x82\xc9\x00\x07" + bytes(28),
        "RTCP RR with 2 report blocks needs 56 bytes, packet has 32",
    ),
    (
        b"\x82\xca\x00\x02" + struct.pack("!I", SSRC) + b"\x01\x01a\x00",
        "RTCP SDES chunk 2 of 2 is truncated",
    ),
    (
        b"\x81\xca\x00\x02" + struct.pack("!I", SSRC) + b"\x01\x09ab",
        "RTCP SDES item length 9 exceeds packet: 2 bytes left",
    ),
    (
        b"\x81\xca\x00\x02" + struct.pack("!I", SSRC) + b"\x01\x02ab",
        "RTCP SDES chunk for SSRC 287454020 has no end of its item list",
    ),
    (
        b"\x81\xca\x00\x03" + struct.pack("!I", SSRC) + bytes(8),
        "RTCP SDES has 4 bytes after its 1 chunks",
    ),
    (
        b"\x82\xcb\x00\x01" + struct.pack("!I", SSRC),
        "RTCP BYE with 2 SSRCs needs 12 bytes, packet has 8",
    ),
    (
        b"\x81\xcb\x00\x02" + struct.pack("!I", SSRC) + b"\x09abc",
        "RTCP BYE reason length 9 exceeds packet: 3 bytes left",
    ),
    (b"\x80\xcc\x00\x01" + bytes(4), "RTCP APP too short: 8 bytes, need 12"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_rtcp_message(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError) as err:
        parse_compound(data)
    assert str(err.value) == message


def test_strict_compound_must_start_with_a_report() -> None:
    data = Bye((1,)).serialize()
    assert parse_compound(data) == (Bye((1,)),)
    with pytest.raises(RtcpError) as err:
        parse_compound(data, strict=True)
    assert str(err.value) == "RTCP compound packet must start with SR or RR, got type 203"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ReportBlock(1, 256, 0, 0, 0), "RTCP fraction lost 256 out of range 0..255"),
        (
            lambda: ReportBlock(1, 0, 0x800000, 0, 0),
            "RTCP cumulative lost 8388608 out of range -8388608..8388607",
        ),
        (
            lambda: ReceiverReport(1, (), b"abc"),
            "RTCP RR profile extension is 3 bytes, not a multiple of 4",
        ),
        (lambda: SdesItem(0, "x"), "RTCP SDES item type 0 out of range 1..255"),
        (lambda: SdesItem(1, "é" * 200), "RTCP SDES item is longer than 255 octets"),
        (lambda: Bye(tuple(range(32))), "RTCP BYE cannot carry 32 SSRCs, at most 31"),
        (lambda: App(0, 1, b"abc"), "RTCP APP name must be 4 octets, got 3"),
    ],
)
def test_values_that_cannot_be_serialized(build: object, message: str) -> None:
    with pytest.raises(RtcpError) as err:
        build()  # type: ignore[operator]
    assert str(err.value) == message


# -- NTP and round trip ---------------------------------------------------------------


def test_ntp_conversions() -> None:
    assert ntp_from_unix(0.0) == 2_208_988_800 << 32
    assert ntp_from_unix(1.5) == ((2_208_988_800 + 1) << 32) | (1 << 31)
    assert ntp_to_unix(ntp_from_unix(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)
    assert ntp_middle32(0x0000_1234_5678_0000) == 0x12345678


def test_round_trip_time_from_lsr_and_dlsr() -> None:
    # RFC 3550 §6.4.1 example: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000
    # (46853.125 s), DLSR = 0x0005:4000 (5.250 s): RTT = 6.125 s.
    arrival = 0xB7108000 << 16
    assert round_trip_time(arrival, 0xB7052000, 0x00054000) == 6.125
    assert round_trip_time(arrival, 0, 0x00054000) is None  # no SR received yet
    assert round_trip_time(arrival, 0xB7108000, 0x00010000) is None  # negative


# -- the session -------------------------------------------------------------------


def ntp(now: float) -> int:
    return ntp_from_unix(1_700_000_000.0 + now)


def half() -> float:
    return 0.5


def test_first_report_interval_is_deterministic() -> None:
    session = RtcpSession(ssrc=1, cname="hotline@example", now=100.0, rng=half)
    assert session.next_deadline() == pytest.approx(100.0 + 2.5 / COMPENSATION)
    assert session.handle_timer(101.0, ntp(101.0)) is None
    data = session.handle_timer(session.next_deadline(), ntp(102.0))
    assert data is not None
    rr, sdes = parse_compound(data, strict=True)
    assert rr == ReceiverReport(1)
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "hotline@example"
    sent_at = 100.0 + 2.5 / COMPENSATION
    assert session.next_deadline() == pytest.approx(sent_at + 5.0 / COMPENSATION)


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.5), (0.999, 1.499)])
def test_interval_randomisation_bounds(draw: float, factor: float) -> None:
    session = RtcpSession(ssrc=1, cname="x", now=0.0, rng=lambda: draw)
    assert session.next_deadline() == pytest.approx(2.5 * factor / COMPENSATION)


def test_timer_reconsideration_postpones_when_the_group_grows() -> None:
    # A tiny session bandwidth makes the interval depend on membership.
    session = RtcpSession(ssrc=1, cname="x", now=0.0, rng=half, session_bandwidth=800.0)
    first = session.next_deadline()
    session.receive(ReceiverReport(2).serialize(), 1.0, ntp(1.0))
    session.receive(ReceiverReport(3).serialize(), 1.0, ntp(1.0))
    assert session.handle_timer(first, ntp(first)) is None  # reconsidered
    assert session.next_deadline() > first
    assert session.handle_timer(session.next_deadline(), ntp(session.next_deadline())) is not None


def make_pair() -> tuple[RtcpSession, RtpSender, RtcpSession, RtpReceiver]:
    tx = RtpSender(0xA, sequence_number=1000, timestamp=0)
    rx = RtpReceiver(8000)
    a = RtcpSession(ssrc=0xA, cname="a@x", now=0.0, sender=tx, rng=half)
    b = RtcpSession(ssrc=0xB, cname="b@y", now=0.0, receiver=rx, rng=half)
    return a, tx, b, rx


def test_sender_report_then_receiver_report_gives_rtt_and_figures() -> None:
    a, tx, b, rx = make_pair()
    # A sends 50 packets of 20 ms; 5 are lost on the way to B.
    for i in range(50):
        data = tx.next_packet(bytes(160), 0, 160, now=0.02 * i)
        if i not in (10, 11, 20, 30, 40):
            rx.receive(data, 0.02 * i + 0.04)

    sr_data = a.build_report(10.0, ntp(10.0))
    sr = parse_compound(sr_data)[0]
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.packet_count, sr.octet_count) == (0xA, 50, 8000)
    assert sr.rtp_timestamp == 49 * 160 + round((10.0 - 0.98) * 8000)

    events = b.receive(sr_data, 10.05, ntp(10.05))
    assert isinstance(events[0], SenderReportReceived)
    assert events[0].packet_count == 50
    assert SourceDescribed(0xA, "a@x") in events

    rr_data = b.build_report(12.0, ntp(12.0))
    rr = parse_compound(rr_data)[0]
    assert isinstance(rr, ReceiverReport)
    [block] = rr.reports
    assert block.ssrc == 0xA
    assert block.cumulative_lost == 5
    assert block.highest_sequence == 1049
    assert block.last_sr == ntp_middle32(ntp(10.0))
    assert block.delay_since_last_sr == round(1.95 * 65536)

    events = a.receive(rr_data, 12.05, ntp(12.05))
    [report] = [e for e in events if isinstance(e, ReceptionReportReceived)]
    assert report.reporter_ssrc == 0xB
    assert report.round_trip == pytest.approx(0.1, abs=2 / 65536)

    quality = a.quality()
    assert quality.rtt_ms == pytest.approx(100.0, abs=0.05)
    assert quality.mean_rtt_ms == quality.rtt_ms == quality.max_rtt_ms
    assert quality.outbound is not None
    assert quality.outbound.cumulative_lost == 5
    assert quality.outbound.loss_ratio == pytest.approx(5 / 50)
    assert quality.outbound.fraction_lost == block.fraction_lost / 256
    assert quality.reports_received == 1
    assert quality.inbound is None  # A receives no RTP

    inbound = b.quality().inbound
    assert inbound is not None
    assert inbound.cumulative_lost == 5
    assert inbound.fraction_lost == block.fraction_lost / 256
    assert b.quality().rtt_ms is None  # B sends no SR: it cannot measure RTT


def test_sr_only_while_we_sent_in_the_last_two_intervals() -> None:
    a, tx, _, _ = make_pair()
    assert isinstance(parse_compound(a.build_report(1.0, ntp(1.0)))[0], ReceiverReport)
    tx.next_packet(bytes(160), 0, 160)
    assert isinstance(parse_compound(a.build_report(2.0, ntp(2.0)))[0], SenderReport)
    assert isinstance(parse_compound(a.build_report(3.0, ntp(3.0)))[0], SenderReport)
    assert isinstance(parse_compound(a.build_report(4.0, ntp(4.0)))[0], ReceiverReport)


def test_more_than_31_sources_spill_into_extra_receiver_reports() -> None:
    rx = RtpReceiver(8000, max_sources=40, min_sequential=0)
    for ssrc in range(1, 34):
        rx.receive(struct.pack("!BBHII", 0x80, 0, 1, 0, ssrc), 0.0)
    session = RtcpSession(ssrc=0xF, cname="x", now=0.0, receiver=rx, rng=half)
    packets = parse_compound(session.build_report(1.0, ntp(1.0)))
    assert [type(p).__name__ for p in packets] == [
        "ReceiverReport",
        "ReceiverReport",
        "SourceDescription",
    ]
    first, second = packets[0], packets[1]
    assert isinstance(first, ReceiverReport) and isinstance(second, ReceiverReport)
    assert len(first.reports) == 31 and len(second.reports) == 2


def test_bye_is_reported_and_malformed_rtcp_is_counted() -> None:
    a, _, b, _ = make_pair()
    events = b.receive(a.bye(5.0, ntp(5.0), reason="hang-up"), 5.01, ntp(5.01))
    assert ByeReceived((0xA,), "hang-up") in events
    assert b.receive(b"\x80\xc9\x00", 6.0, ntp(6.0)) == []
    assert b.malformed == 1
    assert b.last_error == "RTCP packet too short: 3 bytes, need 4"
    assert b.quality().malformed == 1
    assert b.last_received_at == 5.01


def test_own_reports_looped_back_are_ignored() -> None:
    a, _, _, _ = make_pair()
    assert a.receive(a.build_report(1.0, ntp(1.0)), 1.0, ntp(1.0)) == []
