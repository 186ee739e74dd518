"""RFC 4733 telephone-events: every key press exactly once, and the send side."""

from __future__ import annotations

import pytest

from hotline.rtp.packet import RtpPacket
from hotline.rtp.stream import RtpSender
from hotline.rtp.telephone_event import (
    FLASH,
    MAX_DURATION,
    DigitEnded,
    DigitStarted,
    DtmfEvent,
    DtmfEventReceiver,
    DtmfEventSender,
    EndReason,
    TelephoneEvent,
    TelephoneEventError,
    digit_of,
    event_code,
    parse_events,
)

SSRC = 0x0E05384E
TS = 13280

# The RTP payloads of SIPp's stock pcap/dtmf_2833_1.pcap (digit 1, PT 101, one packet
# every 20 ms; the end packet three times, identical, at 140 ms).
CAPTURED_1 = [
    (0.00, "010a0000"),
    (0.02, "010a0140"),
    (0.04, "010a0280"),
    (0.06, "010a03c0"),
    (0.08, "010a0500"),
    (0.10, "010a0640"),
    (0.12, "010a0780"),
    (0.14, "018a08c0"),
    (0.14, "018a08c0"),
    (0.14, "018a08c0"),
]

Packet = tuple[float, int, int, bytes]  # arrival time, SSRC, RTP timestamp, payload


def ev(code: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return TelephoneEvent(code, end, volume, duration).serialize()


def captured(t0: float = 0.0, ssrc: int = SSRC, ts: int = TS) -> list[Packet]:
    return [(t0 + t, ssrc, ts, bytes.fromhex(p)) for t, p in CAPTURED_1]


def press(
    digit: str,
    ts: int,
    t0: float,
    *,
    ssrc: int = SSRC,
    duration: int = 800,
    step: int = 160,
    interval: float = 0.02,
) -> list[Packet]:
    """The packets a well-behaved sender emits for one press."""
    code = event_code(digit)
    packets = []
    t = t0
    for d in range(step, duration, step):
        packets.append((t, ssrc, ts, ev(code, d)))
        t += interval
    for _ in range(3):
        packets.append((t, ssrc, ts, ev(code, duration, end=True)))
        t += interval
    return packets


def run(
    rx: DtmfEventReceiver, packets: list[Packet], until: float | None = None
) -> list[DtmfEvent]:
    """Feed packets in order, firing the receiver's timer as a fake clock passes it."""
    events: list[DtmfEvent] = []
    for now, ssrc, ts, payload in packets:
        deadline = rx.next_deadline()
        if deadline is not None and deadline <= now:
            events += rx.handle_timer(deadline)
        events += rx.receive(ssrc, ts, payload, now)
    if until is not None:
        deadline = rx.next_deadline()
        while deadline is not None and deadline <= until:
            events += rx.handle_timer(deadline)
            deadline = rx.next_deadline()
    return events


def digits(events: list[DtmfEvent]) -> str:
    return "".join(e.digit for e in events if isinstance(e, DigitStarted))


def ended(events: list[DtmfEvent]) -> list[DigitEnded]:
    return [e for e in events if isinstance(e, DigitEnded)]


# -- payload ---------------------------------------------------------------------------


def test_payload_round_trip_and_codes() -> None:
    block = TelephoneEvent(11, True, 10, 0x0640)
    assert block.serialize() == bytes.fromhex("0b8a0640")
    assert parse_events(bytes.fromhex("0b8a0640")) == (block,)
    assert [digit_of(c) for c in range(17)] == [*list("0123456789*#ABCD"), FLASH]
    assert digit_of(17) is None
    assert event_code("#") == 11 and event_code("d") == 15 and event_code("!") == 16
    with pytest.raises(ValueError, match="not a DTMF digit: 'x'"):
        event_code("x")


@pytest.mark.parametrize("size", [0, 3, 5])
def test_malformed_payload(size: int) -> None:
    with pytest.raises(TelephoneEventError) as err:
        parse_events(bytes(size))
    assert (
        str(err.value) == f"telephone-event payload length {size} is not a positive multiple of 4"
    )
    rx = DtmfEventReceiver()
    assert rx.receive(SSRC, TS, bytes(size), 0.0) == []
    assert rx.malformed == 1
    assert rx.last_error == str(err.value)


# -- receive: the sequences -----------------------------------------------------------


def test_normal_press_from_sipp_capture() -> None:
    rx = DtmfEventReceiver()
    events = run(rx, captured())
    assert events == [
        DigitStarted("1", SSRC, TS, 0.0, 10),
        DigitEnded("1", SSRC, TS, 0x08C0, 0.0, 0.14, EndReason.END_PACKET, 1),
    ]
    assert rx.duplicates == 2  # the second and third end packets
    assert rx.next_deadline() is None


def test_triple_end_counts_once_even_spread_out() -> None:
    rx = DtmfEventReceiver()
    packets = press("7", 5000, 0.0)
    events = run(rx, packets)
    assert digits(events) == "7"
    [end] = ended(events)
    assert end.reason is EndReason.END_PACKET
    assert end.duration_samples == 800
    assert end.ended_at == pytest.approx(0.08)


def test_lost_end_packets_closed_by_timeout() -> None:
    rx = DtmfEventReceiver()  # end_timeout = 3 x 50 ms + 50 ms
    packets = [p for p in captured() if p[3][1] & 0x80 == 0]
    events = run(rx, packets)
    assert digits(events) == "1" and ended(events) == []
    assert rx.end_timeout == pytest.approx(0.2)
    assert rx.next_deadline() == pytest.approx(0.12 + 0.2)
    assert rx.handle_timer(0.31) == []
    [end] = rx.handle_timer(0.32)
    assert isinstance(end, DigitEnded)
    assert (end.reason, end.duration_samples, end.ended_at) == (EndReason.TIMEOUT, 0x0780, 0.12)
    assert rx.next_deadline() is None
    # The end packets arriving after all are duplicates, not a new press.
    assert rx.receive(SSRC, TS, bytes.fromhex("018a08c0"), 0.40) == []
    assert rx.timeouts == 1


def test_timeout_is_configurable() -> None:
    rx = DtmfEventReceiver(packet_interval=0.02, timeout_intervals=4, timeout_margin=0.0)
    rx.receive(SSRC, TS, ev(1, 160), 1.0)
    assert rx.next_deadline() == pytest.approx(1.08)


def test_lost_marker_packet() -> None:
    rx = DtmfEventReceiver()
    events = run(rx, captured()[1:])
    assert digits(events) == "1"
    started = events[0]
    assert isinstance(started, DigitStarted)
    assert started.started_at == pytest.approx(0.02 - 0x140 / 8000)
    assert ended(events)[0].reason is EndReason.END_PACKET


def test_lost_start_packets_only_end_arrives() -> None:
    rx = DtmfEventReceiver()
    events = run(rx, captured()[7:])
    assert [type(e) for e in events] == [DigitStarted, DigitEnded]
    assert ended(events)[0].duration_samples == 0x08C0
    assert events[0].started_at == pytest.approx(0.14 - 0x08C0 / 8000)


def test_every_packet_duplicated() -> None:
    rx = DtmfEventReceiver()
    packets = [p for p in captured() for _ in range(2)]
    events = run(rx, packets)
    assert digits(events) == "1"
    assert len(ended(events)) == 1


def test_reordered_end_before_updates() -> None:
    rx = DtmfEventReceiver()
    packets = captured()
    reordered = [
        packets[0],
        packets[7],
        packets[3],
        packets[1],
        packets[2],
        *packets[4:7],
        *packets[8:],
    ]
    events = run(rx, reordered)
    assert digits(events) == "1"
    [end] = ended(events)
    assert end.duration_samples == 0x08C0 and end.reason is EndReason.END_PACKET


def test_two_quick_presses_of_the_same_digit() -> None:
    rx = DtmfEventReceiver()
    events = run(rx, press("5", 1000, 0.0) + press("5", 2600, 0.2))
    assert digits(events) == "55"
    assert [e.start_ts for e in ended(events)] == [1000, 2600]


def test_same_digit_again_with_first_end_lost_is_superseded() -> None:
    rx = DtmfEventReceiver()
    first = [p for p in press("5", 1000, 0.0) if p[3][1] & 0x80 == 0]
    events = run(rx, first + press("5", 2600, 0.1))
    assert digits(events) == "55"
    assert [type(e).__name__ for e in events[:3]] == ["DigitStarted", "DigitEnded", "DigitStarted"]
    assert ended(events)[0].reason is EndReason.SUPERSEDED
    assert ended(events)[0].ended_at == pytest.approx(first[-1][0])


def test_ssrc_change_mid_call_is_a_new_stream() -> None:
    rx = DtmfEventReceiver()
    # Same timestamp value on another SSRC: a different event (SIPp play_dtmf SSRC).
    events = run(rx, press("1", 24400, 0.0, ssrc=1) + press("2", 24400, 0.3, ssrc=2))
    assert digits(events) == "12"
    assert [e.ssrc for e in ended(events)] == [1, 2]


def test_ssrc_change_mid_press_leaves_old_press_to_timeout() -> None:
    rx = DtmfEventReceiver()
    old = press("4", 100, 0.0, ssrc=1)[:3]
    new = press("6", 900, 0.06, ssrc=2)
    events = run(rx, old + new, until=2.0)
    assert digits(events) == "46"
    reasons = {e.digit: e.reason for e in ended(events)}
    assert reasons == {"4": EndReason.TIMEOUT, "6": EndReason.END_PACKET}


def test_press_arriving_after_a_newer_one_is_reported_late() -> None:
    rx = DtmfEventReceiver()
    first, second = press("1", 1000, 0.0), press("2", 3000, 0.3)
    events = run(rx, second[:2] + first + second[2:])
    assert digits(events) == "21"
    late = next(e for e in ended(events) if e.digit == "1")
    assert late.reason is EndReason.LATE


def test_replayed_capture_counts_each_press() -> None:
    # SIPp play_pcap_audio of the same pcap twice: identical packets a second apart.
    rx = DtmfEventReceiver()
    events = run(rx, captured(0.0) + captured(1.14))
    assert digits(events) == "11"
    assert [e.reason for e in ended(events)] == [EndReason.END_PACKET] * 2


def test_late_duplicate_soon_after_end_is_not_a_new_press() -> None:
    rx = DtmfEventReceiver(key_reuse_after=0.5)
    events = run(rx, [*captured(0.0), (0.3, SSRC, TS, bytes.fromhex("010a0140"))])
    assert digits(events) == "1"
    assert rx.duplicates == 3


def test_long_event_in_segments_counts_once() -> None:
    rx = DtmfEventReceiver()
    packets: list[Packet] = []
    t = 0.0
    code = event_code("#")
    # 0xFFFF units (8.19 s) in the first segment, then 2 s more in a second one.
    for d in range(400, MAX_DURATION, 400):
        packets.append((t, SSRC, 7000, ev(code, d)))
        t += 0.05
    for _ in range(3):
        packets.append((t, SSRC, 7000, ev(code, MAX_DURATION)))  # final of segment 1, no E
    second_ts = 7000 + MAX_DURATION
    for d in range(400, 16000, 400):
        t += 0.05
        packets.append((t, SSRC, second_ts, ev(code, d)))
    for _ in range(3):
        t += 0.05
        packets.append((t, SSRC, second_ts, ev(code, 16000, end=True)))
    events = run(rx, packets)
    assert digits(events) == "#"
    [end] = ended(events)
    assert end.segments == 2
    assert end.duration_samples == MAX_DURATION + 16000
    assert end.start_ts == 7000
    assert end.reason is EndReason.END_PACKET


def test_long_event_segments_arriving_in_reverse_order() -> None:
    rx = DtmfEventReceiver()
    second = [
        (0.0, SSRC, 7000 + MAX_DURATION, ev(3, 800)),
        (0.02, SSRC, 7000 + MAX_DURATION, ev(3, 960)),
    ]
    first = [(0.03, SSRC, 7000, ev(3, MAX_DURATION))]
    end = [(0.05, SSRC, 7000 + MAX_DURATION, ev(3, 1200, end=True))]
    events = run(rx, second + first + end)
    assert digits(events) == "3"
    [done] = ended(events)
    assert done.duration_samples == MAX_DURATION + 1200
    assert done.segments == 2


def test_segment_rule_does_not_merge_a_later_press_of_the_same_digit() -> None:
    rx = DtmfEventReceiver()
    first = [p for p in press("9", 0, 0.0) if p[3][1] & 0x80 == 0]  # end lost
    events = run(rx, first + press("9", 30000, 4.0), until=10.0)
    assert digits(events) == "99"


def test_multiple_events_in_one_packet() -> None:
    rx = DtmfEventReceiver()
    # RFC 4733 §2.5.1.5: '1' (ended, 800 units) then '2' starting where '1' ended.
    events = rx.receive(SSRC, 1000, ev(1, 800, end=True) + ev(2, 400), 0.0)
    assert [(type(e).__name__, e.digit, e.start_ts) for e in events] == [
        ("DigitStarted", "1", 1000),
        ("DigitEnded", "1", 1000),
        ("DigitStarted", "2", 1800),
    ]
    events = rx.receive(SSRC, 1000, ev(1, 800, end=True) + ev(2, 800, end=True), 0.05)
    assert [(type(e).__name__, e.digit) for e in events] == [("DigitEnded", "2")]


def test_unsupported_events_are_ignored() -> None:
    rx = DtmfEventReceiver()
    assert rx.receive(SSRC, 10, ev(32, 160), 0.0) == []  # a modem tone, not a key
    assert rx.unsupported == 1
    events = rx.receive(SSRC, 20, ev(16, 800, end=True), 0.1)
    assert digits(events) == FLASH


def test_stream_eviction_ends_open_press() -> None:
    rx = DtmfEventReceiver(max_streams=1)
    rx.receive(1, 10, ev(4, 160), 0.0)
    events = rx.receive(2, 10, ev(5, 160), 0.05)
    assert [(type(e).__name__, e.digit) for e in events] == [
        ("DigitEnded", "4"),
        ("DigitStarted", "5"),
    ]
    assert ended(events)[0].reason is EndReason.STREAM_GONE


def test_reset_ends_open_presses() -> None:
    rx = DtmfEventReceiver()
    rx.receive(1, 10, ev(8, 160), 0.0)
    [done] = rx.reset(0.1)
    assert isinstance(done, DigitEnded) and done.reason is EndReason.STREAM_GONE
    assert rx.next_deadline() is None


# -- de-duplication with in-band detection ---------------------------------------------


def test_claims_in_band_copies_of_rfc4733_presses() -> None:
    rx = DtmfEventReceiver(claim_guard=0.05)
    run(rx, press("5", 1000, 1.0, duration=1600))  # 1.0 .. ~1.2 s
    [interval] = rx.intervals()
    assert interval.digit == "5"
    assert interval.started_at == pytest.approx(1.0 - 160 / 8000)
    assert interval.ended_at == pytest.approx(1.0 + 9 * 0.02)
    assert rx.claims("5", 1.05, 1.15)  # overlapping: the in-band copy
    assert rx.claims("5", 1.20, 1.26)  # just after, within the guard
    assert not rx.claims("5", 1.40, 1.50)  # a later, separate press
    assert not rx.claims("6", 1.05, 1.15)  # another digit
    assert rx.claims("5", 1.40, 1.50, guard=0.3)


def test_claims_while_press_is_still_active() -> None:
    rx = DtmfEventReceiver()
    rx.receive(SSRC, 50, ev(0, 160), 2.0)
    assert rx.claims("0", 2.5, 2.6)  # open-ended while active
    assert [i.ended_at for i in rx.intervals()] == [None]


# -- send ------------------------------------------------------------------------------


def parse_all(packets: list[bytes]) -> list[tuple[RtpPacket, TelephoneEvent]]:
    out = []
    for data in packets:
        packet = RtpPacket.parse(data)
        [block] = parse_events(packet.payload)
        out.append((packet, block))
    return out


def test_sender_packet_sequence_for_one_digit() -> None:
    rtp = RtpSender(0x51, sequence_number=65534, timestamp=8000)
    tx = DtmfEventSender(101, duration=0.1, gap=0.1)
    tx.press("#")
    assert tx.busy and tx.pending == 1
    ticks = [tx.tick(rtp, 160) for _ in range(7)]
    assert all(t is not None and len(t) == 1 for t in ticks)
    sent = parse_all([t[0] for t in ticks if t])
    assert [b.duration for _, b in sent] == [160, 320, 480, 640, 800, 800, 800]
    assert [b.end for _, b in sent] == [False] * 4 + [True] * 3
    assert [p.marker for p, _ in sent] == [True] + [False] * 6
    assert {p.timestamp for p, _ in sent} == {8000}
    assert [p.sequence_number for p, _ in sent] == [65534, 65535, 0, 1, 2, 3, 4]
    assert {(p.payload_type, b.code, b.volume) for p, b in sent} == {(101, 11, 10)}
    assert rtp.timestamp == 8000 + 7 * 160  # the media clock kept running
    assert not tx.busy and tx.sent == 1
    # The gap belongs to audio again.
    assert [tx.tick(rtp, 160) for _ in range(5)] == [None] * 5


def test_sender_queue_gap_and_next_digit() -> None:
    rtp = RtpSender(1, sequence_number=0, timestamp=0)
    tx = DtmfEventSender(96, duration=0.04, gap=0.06)
    tx.send("12")
    results = []
    for _ in range(12):
        out = tx.tick(rtp, 160)
        if out is None:
            rtp.next_packet(bytes(160), 0, 160)  # the engine sends audio on this tick
        results.append(out)
    owned = [r is not None for r in results]
    # '1': 2 ticks of tone + 2 more end packets = 4 ticks; gap 3 ticks; '2': 4 ticks.
    assert owned == [True] * 4 + [False] * 3 + [True] * 4 + [False]
    first = parse_all(results[0] or [])
    second = parse_all(results[7] or [])
    assert first[0][0].timestamp == 0
    assert second[0][0].timestamp == 7 * 160  # the media clock at tick 7
    assert second[0][0].marker


def test_sender_update_interval_in_ticks() -> None:
    rtp = RtpSender(1, sequence_number=0, timestamp=0)
    tx = DtmfEventSender(101, duration=0.1, update_every=2)
    tx.press("3")
    results = [tx.tick(rtp, 160) for _ in range(10)]
    counts = [len(r) if r is not None else None for r in results]
    assert counts == [1, 0, 1, 0, 1, 0, 1, 0, 1, None]
    durations = [b.duration for r in results if r for _, b in parse_all(r)]
    assert durations == [160, 480, 800, 800, 800]


def test_sender_short_event_ends_on_first_tick_with_marker() -> None:
    rtp = RtpSender(1, sequence_number=0, timestamp=0)
    tx = DtmfEventSender(101)
    tx.press("4", duration=100)
    packets = tx.tick(rtp, 160)
    assert packets is not None
    [(packet, block)] = parse_all(packets)
    assert packet.marker and block.end and block.duration == 100


def test_sender_segments_long_events() -> None:
    rtp = RtpSender(1, sequence_number=0, timestamp=1000)
    tx = DtmfEventSender(101)
    tx.press("0", duration=10 * 8000)
    sent: list[bytes] = []
    while tx.busy:
        out = tx.tick(rtp, 160)
        assert out is not None
        sent += out
    parsed = parse_all(sent)
    assert {p.timestamp for p, _ in parsed} == {1000, 1000 + MAX_DURATION}
    finals = [(p, b) for p, b in parsed if p.timestamp == 1000 and b.duration == MAX_DURATION]
    assert len(finals) == 3 and not any(b.end for _, b in finals)
    assert sum(p.marker for p, _ in parsed) == 1
    last = [b for _, b in parsed if b.end]
    assert len(last) == 3 and last[0].duration == 80000 - MAX_DURATION
    # The receiver sees one press of the full length.
    rx = DtmfEventReceiver()
    events: list[DtmfEvent] = []
    for i, (packet, _) in enumerate(parsed):
        events += rx.receive(packet.ssrc, packet.timestamp, packet.payload, i * 0.02)
    assert digits(events) == "0"
    assert ended(events)[0].duration_samples == 80000


def test_sender_cancel_pending_and_validation() -> None:
    tx = DtmfEventSender(101)
    tx.send("123")
    assert tx.cancel_pending() == 3 and not tx.busy
    with pytest.raises(ValueError, match="not a DTMF digit"):
        tx.send("12x")
    assert tx.pending == 0  # nothing queued from the bad string
    with pytest.raises(ValueError, match="event duration must be positive"):
        tx.press("1", duration=0)
    with pytest.raises(ValueError, match="payload type 200 out of range"):
        DtmfEventSender(200)


def test_sender_to_receiver_digit_string() -> None:
    rtp = RtpSender(0x77, sequence_number=10, timestamp=0)
    tx = DtmfEventSender(101, duration=0.08, gap=0.06)
    tx.send("0123456789*#ABCD")
    rx = DtmfEventReceiver()
    events: list[DtmfEvent] = []
    now = 0.0
    while tx.busy:
        for data in tx.tick(rtp, 160) or []:
            packet = RtpPacket.parse(data)
            events += rx.receive(packet.ssrc, packet.timestamp, packet.payload, now)
        now += 0.02
    assert digits(events) == "0123456789*#ABCD"
    assert all(
        e.reason is EndReason.END_PACKET and e.duration_samples == 640 for e in ended(events)
    )


def test_receive_arrival_from_the_rtp_receiver() -> None:
    from hotline.rtp.stream import RtpReceiver

    rtp_rx = RtpReceiver(8000, event_payload_types=frozenset({101}))
    rx = DtmfEventReceiver()
    events: list[DtmfEvent] = []
    for i, (t, payload) in enumerate(CAPTURED_1):
        data = RtpPacket(101, 7984 + min(i, 7), TS, SSRC, bytes.fromhex(payload), i == 0)
        arrival = rtp_rx.receive(data.serialize(), t)
        assert arrival is not None
        events += rx.receive_arrival(arrival, t)
    assert digits(events) == "1"
    assert len(ended(events)) == 1


def test_history_is_bounded_and_keeps_the_open_press() -> None:
    rx = DtmfEventReceiver(history=2)
    rx.receive(SSRC, 10_000, ev(1, 160), 0.0)  # stays open
    for i in range(3):  # older presses arriving late: each reported and closed at once
        events = rx.receive(SSRC, 100 * i, ev(2, 800, end=True), 0.01 * i)
        assert digits(events) == "2"
    events = rx.receive(SSRC, 10_000, ev(1, 800, end=True), 0.1)
    assert [(type(e).__name__, e.digit) for e in events] == [("DigitEnded", "1")]


def test_first_segment_arriving_after_the_end_of_the_press() -> None:
    rx = DtmfEventReceiver()
    later = 7000 + MAX_DURATION
    packets = [
        (0.0, SSRC, later, ev(6, 800)),
        (0.05, SSRC, later, ev(6, 1200, end=True)),
        (0.06, SSRC, 7000, ev(6, MAX_DURATION)),  # the first segment, very late
    ]
    events = run(rx, packets)
    assert digits(events) == "6"
    assert rx.duplicates == 1
