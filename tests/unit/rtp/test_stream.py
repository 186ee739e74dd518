"""Per-leg receive/send state: jitter, resyncs, ptime, latching, inactivity, stamping."""

from __future__ import annotations

import random
import struct

import pytest

from hotline.rtp.packet import RtpPacket
from hotline.rtp.seq import SeqOutcome
from hotline.rtp.stream import (
    DropReason,
    LatchDecision,
    ResyncReason,
    RtpReceiver,
    RtpSender,
    SymmetricLatch,
)

PEER = ("192.0.2.10", 40000)


def rtp(seq: int, ts: int, ssrc: int = 0xA1, pt: int = 0, payload: bytes = bytes(160)) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def stream_of(
    n: int, *, seq0: int = 1000, ts0: int = 0, step: int = 160, ssrc: int = 0xA1
) -> list[bytes]:
    return [rtp(seq0 + i, ts0 + i * step, ssrc) for i in range(n)]


# -- jitter (RFC 3550 A.8) -----------------------------------------------------------


def test_jitter_matches_hand_computation() -> None:
    rx = RtpReceiver(8000)
    arrivals = [0.000, 0.020, 0.045, 0.060]
    for i, now in enumerate(arrivals):
        rx.receive(rtp(100 + i, 160 * i), now)
    # D(1,2) = (0.020*8000 - 160) = 0      -> J = 0
    # D(2,3) = (0.025*8000 - 160) = 40     -> J = 0 + (40 - 0)/16 = 2.5
    # D(3,4) = |0.015*8000 - 160| = 40     -> J = 2.5 + (40 - 2.5)/16 = 4.84375
    assert rx.jitter_ms == pytest.approx(4.84375 / 8, abs=1e-9)
    reports = rx.reception_reports()
    assert [r.jitter for r in reports] == [4]
    assert rx.stats().max_jitter_ms == pytest.approx(4.84375 / 8, abs=1e-9)


def test_jitter_ignores_timestamp_wrap() -> None:
    rx = RtpReceiver(8000)
    ts0 = (1 << 32) - 320
    for i in range(6):
        arrival = rx.receive(rtp(i, ts0 + 160 * i), 0.02 * i)
        assert arrival is not None
        assert arrival.resync in (None, ResyncReason.NEW_SOURCE)
    assert rx.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert rx.resyncs == 1


def test_jitter_uses_arrival_order_with_reordering() -> None:
    rx = RtpReceiver(8000, min_sequential=0)
    rx.receive(rtp(1, 0), 0.000)
    rx.receive(rtp(3, 320), 0.040)  # D = 0.040*8000 - 320 = 0
    late = rx.receive(rtp(2, 160), 0.041)  # D = |0.001*8000 - (-160)| = 168
    assert late is not None and late.status is SeqOutcome.LATE
    assert rx.jitter_ms == pytest.approx(168 / 16 / 8, abs=1e-6)


# -- the arrival -------------------------------------------------------------------


def test_arrival_fields_and_payload_offsets() -> None:
    rx = RtpReceiver(8000)
    data = RtpPacket(8, 65535, 1234, 0xBEEF, b"alaw", marker=True, csrcs=(9,)).serialize()
    arrival = rx.receive(data, 1.0, PEER)
    assert arrival is not None
    assert (arrival.payload_type, arrival.marker, arrival.sequence_number) == (8, True, 65535)
    assert (arrival.timestamp, arrival.ssrc) == (1234, 0xBEEF)
    assert arrival.payload == b"alaw"
    assert arrival.payload_start == 16
    assert arrival.resync is ResyncReason.NEW_SOURCE
    assert arrival.status is SeqOutcome.PROBATION


def test_extended_sequence_numbers_across_wrap() -> None:
    rx = RtpReceiver(8000, min_sequential=0)
    extended = []
    for i in range(5):
        arrival = rx.receive(rtp(65534 + i, 160 * i), 0.02 * i)
        assert arrival is not None
        extended.append(arrival.extended_sequence)
    assert extended == [65534, 65535, 65536, 65537, 65538]


def test_duplicate_and_late_are_classified_and_counted() -> None:
    rx = RtpReceiver(8000, min_sequential=0)
    for i, seq in enumerate([1, 2, 4, 3, 4]):
        rx.receive(rtp(seq, 160 * seq), 0.02 * i)
    stats = rx.stats()
    assert stats.late == 1
    assert stats.duplicates == 1
    assert stats.packets == 5
    assert stats.expected == 4
    assert stats.lost == -1


def test_malformed_packets_are_counted_not_raised() -> None:
    rx = RtpReceiver(8000)
    assert rx.receive(b"\x80\x00\x00", 0.0) is None
    assert rx.last_drop is DropReason.MALFORMED
    assert rx.last_error == "RTP packet too short: 3 bytes, need 12"
    assert rx.receive(b"\x40" + bytes(15), 0.1) is None
    assert rx.last_error == "RTP version 1, expected 2"
    assert rx.stats().malformed == 2
    assert rx.last_activity == 0.0  # malformed packets are not activity


# -- resyncs ----------------------------------------------------------------------


def test_second_ssrc_with_events_interleaves_without_resyncing_audio() -> None:
    rx = RtpReceiver(8000, event_payload_types=frozenset({101}))
    reasons = []
    now = 0.0
    for i in range(3):
        arrival = rx.receive(rtp(500 + i, 160 * i, ssrc=1), now)
        assert arrival is not None
        reasons.append(arrival.resync)
        now += 0.02
    # SIPp play_dtmf: events from a second SSRC, interleaved with the audio.
    for i in range(3):
        event = rx.receive(rtp(9000 + i, 24000, ssrc=2, pt=101, payload=bytes(4)), now - 0.01)
        audio = rx.receive(rtp(503 + i, 480 + 160 * i, ssrc=1), now)
        assert event is not None and audio is not None
        reasons += [event.resync, audio.resync]
        now += 0.02
    assert reasons == [ResyncReason.NEW_SOURCE, None, None, ResyncReason.NEW_SOURCE] + [None] * 5
    assert rx.current_ssrc == 1
    assert rx.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert rx.stats().lost == 0
    assert sorted(rx.sources()) == [1, 2]


def test_audio_ssrc_change_is_a_resync() -> None:
    rx = RtpReceiver(8000)
    seen = []
    now = 0.0
    for ssrc, seq, ts in [(1, 10, 0), (1, 11, 160), (2, 700, 90000), (2, 701, 90160), (1, 12, 640)]:
        arrival = rx.receive(rtp(seq, ts, ssrc=ssrc), now)
        assert arrival is not None
        seen.append(arrival.resync)
        now += 0.02
    assert seen == [
        ResyncReason.NEW_SOURCE,
        None,
        ResyncReason.NEW_SOURCE,
        None,
        ResyncReason.SOURCE_SWITCH,
    ]
    assert rx.current_ssrc == 1
    assert rx.resyncs == 3


def test_timestamp_jump_on_same_ssrc_is_a_resync() -> None:
    rx = RtpReceiver(8000)
    for i, data in enumerate(stream_of(5)):
        rx.receive(data, 0.02 * i)
    jumped = rx.receive(rtp(1005, 800 + 8000 * 10), 0.10)  # 10 s of timestamps in 20 ms
    assert jumped is not None
    assert jumped.resync is ResyncReason.TIMESTAMP_JUMP
    assert jumped.status is SeqOutcome.RESTARTED
    after = rx.receive(rtp(1006, 800 + 8000 * 10 + 160), 0.12)
    assert after is not None and after.resync is None and after.status is SeqOutcome.IN_ORDER
    assert rx.jitter_ms == pytest.approx(0.0, abs=1e-6)  # the jump did not feed the jitter


def test_replayed_capture_resyncs_instead_of_counting_duplicates() -> None:
    # SIPp play_pcap_audio replays the same packets (same SSRC, seq and timestamps).
    capture = [
        rtp(59133 + i, 240 * (i + 1), ssrc=0xDEE0EE8F, pt=8, payload=bytes(240)) for i in range(20)
    ]
    rx = RtpReceiver(8000, audio_payload_types=frozenset({8}))
    now = 0.0
    for data in capture:
        rx.receive(data, now)
        now += 0.03
    now += 1.0
    statuses = []
    for data in capture:
        arrival = rx.receive(data, now)
        assert arrival is not None
        statuses.append((arrival.status, arrival.resync))
        now += 0.03
    assert statuses[0] == (SeqOutcome.RESTARTED, ResyncReason.TIMESTAMP_JUMP)
    assert all(s == (SeqOutcome.IN_ORDER, None) for s in statuses[1:])
    assert rx.ptime_ms == 30.0


def test_small_timestamp_drift_is_not_a_jump() -> None:
    rx = RtpReceiver(8000, timestamp_jump=1.0)
    rx.receive(rtp(1, 0), 0.0)
    arrival = rx.receive(rtp(2, 160), 0.9)  # 880 ms late: below the threshold
    assert arrival is not None and arrival.resync is None


def test_event_packets_do_not_feed_jitter_or_jump_detection() -> None:
    rx = RtpReceiver(8000, event_payload_types=frozenset({101}))
    for i in range(3):
        rx.receive(rtp(i, 160 * i), 0.02 * i)
    # An RFC 4733 event: the timestamp stays at the event start for 1.5 s.
    for i in range(75):
        arrival = rx.receive(rtp(3 + i, 480, pt=101, payload=bytes(4)), 0.06 + 0.02 * i)
        assert arrival is not None and arrival.resync is None
    resumed = rx.receive(rtp(78, 480 + 75 * 160), 0.06 + 0.02 * 75)
    assert resumed is not None and resumed.resync is None
    assert rx.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_non_audio_payload_types_are_sequence_counted_only() -> None:
    rx = RtpReceiver(8000, audio_payload_types=frozenset({0}))
    rx.receive(rtp(1, 0), 0.0)
    # A SIPp noop packet (PT 97) whose timestamps step in milliseconds.
    noop = rx.receive(rtp(2, 99_000, pt=97, payload=b""), 0.02)
    assert noop is not None and noop.resync is None
    assert rx.receive(rtp(3, 320), 0.04) is not None
    assert rx.jitter_ms == pytest.approx(0.0, abs=1e-6)
    rx.audio_payload_types = None  # every non-event type counts as audio again
    jump = rx.receive(rtp(4, 50_000_000, pt=97, payload=b""), 0.06)
    assert jump is not None and jump.resync is ResyncReason.TIMESTAMP_JUMP


def test_source_eviction_keeps_totals() -> None:
    rx = RtpReceiver(8000, max_sources=2, min_sequential=0)
    now = 0.0
    for ssrc in (1, 2, 3):
        for i in (0, 1, 3):  # one lost each
            rx.receive(rtp(i, 160 * i, ssrc=ssrc), now)
            now += 0.02
    assert sorted(rx.sources()) == [2, 3]
    stats = rx.stats()
    assert stats.packets == 9
    assert stats.expected == 12
    assert stats.lost == 3
    assert stats.loss_ratio == pytest.approx(0.25)


def test_reception_reports_only_for_sources_heard_since_last_report() -> None:
    rx = RtpReceiver(8000, min_sequential=0)
    for i in (0, 1, 2, 4):
        rx.receive(rtp(i, 160 * i, ssrc=7), 0.02 * i)
    [report] = rx.reception_reports()
    assert report.ssrc == 7
    assert report.cumulative_lost == 1
    assert report.fraction_lost == 256 // 5
    assert report.extended_highest_sequence == 4
    assert rx.reception_reports() == []
    rx.receive(rtp(5, 800, ssrc=7), 0.2)
    [again] = rx.reception_reports()
    assert again.fraction_lost == 0


# -- packetisation time -------------------------------------------------------------


@pytest.mark.parametrize(("step", "ptime"), [(160, 20.0), (240, 30.0), (80, 10.0)])
def test_ptime_detection(step: int, ptime: float) -> None:
    rx = RtpReceiver(8000)
    for i, data in enumerate(stream_of(3, step=step)):
        rx.receive(data, i * step / 8000)
    assert rx.ptime_ms is None  # two steps are not enough
    rx.receive(rtp(1003, 3 * step), 3 * step / 8000)
    assert rx.ptime_ms == ptime


def test_ptime_ignores_silence_gaps_and_follows_changes() -> None:
    rx = RtpReceiver(8000)
    seq, ts, now = 0, 0, 0.0
    for _ in range(5):
        rx.receive(rtp(seq, ts), now)
        seq, ts, now = seq + 1, ts + 160, now + 0.02
    assert rx.ptime_ms == 20.0
    ts += 8000  # 1 s of silence suppressed (DTX), next seq is consecutive
    now += 1.0
    rx.receive(rtp(seq, ts), now)
    assert rx.ptime_ms == 20.0
    for _ in range(4):
        seq, ts, now = seq + 1, ts + 240, now + 0.03
        rx.receive(rtp(seq, ts), now)
    assert rx.ptime_ms == 30.0
    assert rx.stats().ptime_ms == 30.0


# -- inactivity ----------------------------------------------------------------------


def test_inactivity_clock() -> None:
    rx = RtpReceiver(8000, now=100.0)
    assert rx.inactive_for(110.0) == 10.0
    assert rx.inactivity_deadline(30.0) == 130.0
    rx.receive(rtp(1, 0), 112.5)
    assert rx.inactivity_deadline(30.0) == 142.5
    assert rx.inactive_for(120.0) == 7.5
    rx.touch(130.0)
    assert rx.inactivity_deadline(30.0) == 160.0


# -- symmetric RTP latching ------------------------------------------------------------


def test_latch_to_first_source_and_reject_others() -> None:
    latch = SymmetricLatch(expected=("198.51.100.1", 5000))
    rx = RtpReceiver(8000, latch=latch)
    assert latch.remote == ("198.51.100.1", 5000)
    assert rx.receive(rtp(1, 0), 0.0, PEER) is not None
    assert latch.latched == PEER and latch.remote == PEER
    intruder = ("203.0.113.66", 9999)
    assert rx.receive(rtp(2, 160), 0.02, intruder) is None
    assert rx.last_drop is DropReason.FOREIGN_SOURCE
    assert rx.stats().foreign == 1
    assert rx.receive(rtp(2, 160), 0.02, PEER) is not None


def test_spraying_attacker_cannot_take_over_live_stream() -> None:
    rx = RtpReceiver(8000, latch=SymmetricLatch(relatch_idle=0.5, relatch_packets=3))
    attacker = ("203.0.113.66", 9999)
    now = 0.0
    for i in range(100):
        assert rx.receive(rtp(i, 160 * i), now, PEER) is not None
        assert rx.receive(rtp(5000 + i, 0, ssrc=666), now + 0.001, attacker) is None
        now += 0.02
    assert rx.latch is not None and rx.latch.latched == PEER
    assert rx.stats().foreign == 100


def test_relatch_after_source_goes_quiet() -> None:
    latch = SymmetricLatch(relatch_idle=0.5, relatch_packets=3)
    rx = RtpReceiver(8000, latch=latch)
    rx.receive(rtp(1, 0), 0.0, PEER)
    rebound = ("192.0.2.10", 40002)  # NAT rebinding: new port
    results = [rx.receive(rtp(2 + i, 160 * (1 + i)), 0.6 + 0.02 * i, rebound) for i in range(4)]
    assert [r is not None for r in results] == [False, False, True, True]
    assert latch.latched == rebound
    assert latch.relatches == 1


def test_latch_decisions_and_reset() -> None:
    latch = SymmetricLatch(relatch_idle=1.0, relatch_packets=2)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)
    assert latch.check(a, 0.0) is LatchDecision.LATCHED
    assert latch.check(a, 0.5) is LatchDecision.ACCEPTED
    assert latch.check(b, 0.6) is LatchDecision.REJECTED
    assert latch.check(b, 1.4) is LatchDecision.REJECTED  # a heard 0.9 s ago
    assert latch.check(b, 1.6) is LatchDecision.RELATCHED
    latch.reset(expected=("10.0.0.9", 9))
    assert latch.remote == ("10.0.0.9", 9)
    assert latch.check(a, 2.0) is LatchDecision.LATCHED


# -- sending -------------------------------------------------------------------------


def test_sender_stamps_sequence_and_tick_timestamps() -> None:
    tx = RtpSender(0xCAFE, sequence_number=65534, timestamp=(1 << 32) - 160)
    packets = [
        RtpPacket.parse(tx.next_packet(b"\xff" * 160, 0, 160, marker=(i == 0))) for i in range(3)
    ]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert [p.timestamp for p in packets] == [(1 << 32) - 160, 0, 160]
    assert [p.marker for p in packets] == [True, False, False]
    assert all(p.ssrc == 0xCAFE and p.payload_type == 0 for p in packets)
    assert tx.packets_sent == 3 and tx.octets_sent == 480
    assert tx.timestamp == 320


def test_sender_advance_and_explicit_timestamp() -> None:
    tx = RtpSender(1, sequence_number=10, timestamp=1000)
    tx.advance(160)  # a tick without a packet (silence suppressed)
    event = RtpPacket.parse(tx.packet_at(b"\x05\x0a\x00\xa0", 101, 1160, marker=True))
    assert (event.timestamp, event.sequence_number, event.marker) == (1160, 10, True)
    assert tx.timestamp == 1160  # packet_at does not move the media clock
    audio = RtpPacket.parse(tx.next_packet(b"x", 0, 160))
    assert (audio.timestamp, audio.sequence_number) == (1160, 11)


def test_sender_maps_wall_time_to_rtp_time_for_reports() -> None:
    tx = RtpSender(1, sequence_number=0, timestamp=5000)
    assert tx.rtp_timestamp_at(99.0) == 5000  # no tick time yet: the media clock
    tx.next_packet(b"", 0, 160, now=10.0)  # media at ts 5000 was scheduled for t=10.0
    assert tx.rtp_timestamp_at(10.0) == 5000
    assert tx.rtp_timestamp_at(10.5) == 5000 + 4000
    tx.advance(160, now=10.02)
    assert tx.rtp_timestamp_at(10.02) == 5160


def test_sender_random_start_is_reproducible() -> None:
    a = RtpSender.with_random_start(random.Random(42))
    b = RtpSender.with_random_start(random.Random(42))
    assert (a.ssrc, a.sequence_number, a.timestamp) == (b.ssrc, b.sequence_number, b.timestamp)
    assert a.initial_sequence_number == a.sequence_number


def test_sender_validation() -> None:
    tx = RtpSender(1, sequence_number=0, timestamp=0)
    with pytest.raises(ValueError, match="payload type 128 out of range"):
        tx.next_packet(b"", 128, 160)
    with pytest.raises(ValueError, match="sequence number 65536 out of range"):
        RtpSender(1, sequence_number=65536, timestamp=0)


def test_receive_cost_per_packet(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    tx = RtpSender(0x1234, sequence_number=0, timestamp=0)
    packets = [tx.next_packet(bytes(160), 0, 160) for _ in range(5000)]
    best = float("inf")
    for _ in range(3):
        rx = RtpReceiver(8000, latch=SymmetricLatch())
        receive = rx.receive
        start = time.perf_counter()
        now = 0.0
        for data in packets:
            receive(data, now, PEER)
            now += 0.02
        best = min(best, time.perf_counter() - start)
    per_packet = best / len(packets) * 1e9
    with capsys.disabled():
        print(f"\n[rtp bench] RtpReceiver.receive {per_packet:.0f} ns/packet")
    assert rx.stats().packets == 5000
    assert per_packet < 50_000  # far under the 20 ms a packet lasts, even on a loaded box
