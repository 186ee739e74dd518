"""Property tests for hotline.rtp: round trips, robustness on hostile bytes, and every
scripted key press reported exactly once whatever the network does to its packets."""

from __future__ import annotations

import contextlib
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.rtp.packet import HeaderExtension, RtpError, RtpPacket, parse_header
from hotline.rtp.rtcp import (
    App,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    RtcpSession,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    UnknownRtcpPacket,
    parse_compound,
    serialize_compound,
)
from hotline.rtp.seq import SequenceState, seq_add, seq_delta, ts_add, ts_delta
from hotline.rtp.stream import RtpReceiver, RtpSender, SymmetricLatch
from hotline.rtp.telephone_event import (
    DigitEnded,
    DigitStarted,
    DtmfEvent,
    DtmfEventReceiver,
    DtmfEventSender,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=48).map(lambda b: b[: len(b) // 4 * 4])

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | st.builds(HeaderExtension, u16, words),
    padding=st.integers(0, 255),
)


@settings(max_examples=200)
@given(rtp_packets)
def test_rtp_parse_serialize_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    header = parse_header(data)
    assert header.payload_type == packet.payload_type
    assert header.marker == packet.marker
    assert (header.sequence_number, header.timestamp, header.ssrc) == (
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
    )
    assert data[header.payload_start : header.payload_end] == packet.payload


def _mutations(base: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(base)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    return bytes(data[: max(0, len(data) - cut)])


hostile_rtp = st.binary(max_size=80) | st.builds(
    _mutations,
    rtp_packets.map(RtpPacket.serialize),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=4),
    st.integers(0, 8),
)


@settings(max_examples=200)
@given(hostile_rtp)
def test_hostile_bytes_only_raise_rtp_error(data: bytes) -> None:
    full: RtpPacket | None
    try:
        full = RtpPacket.parse(data)
    except RtpError as exc:
        full = None
        message = str(exc)
    try:
        header = parse_header(data)
    except RtpError as exc:
        assert full is None and str(exc) == message  # same verdict, same reason
    else:
        assert full is not None
        assert data[header.payload_start : header.payload_end] == full.payload
    receiver = RtpReceiver(8000, latch=SymmetricLatch())
    arrival = receiver.receive(data, 1.0, ("192.0.2.1", 4000))
    assert (arrival is None) == (full is None)


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=24), max_size=30))
def test_receivers_never_raise_on_random_datagrams(datagrams: list[bytes]) -> None:
    rx = RtpReceiver(8000, event_payload_types=frozenset({101}))
    dtmf = DtmfEventReceiver()
    for i, data in enumerate(datagrams):
        arrival = rx.receive(data, i * 0.01)
        if arrival is not None:
            dtmf.receive(arrival.ssrc, arrival.timestamp, arrival.payload, i * 0.01)
        dtmf.handle_timer(i * 0.01)
    assert rx.stats().malformed + rx.stats().packets == len(datagrams)


# -- wrap arithmetic -------------------------------------------------------------------


@given(u16, st.integers(-32768, 32767))
def test_seq_add_and_delta_are_inverse(a: int, n: int) -> None:
    assert seq_delta(seq_add(a, n), a) == n


@given(u32, st.integers(-(2**31), 2**31 - 1))
def test_ts_add_and_delta_are_inverse(a: int, n: int) -> None:
    assert ts_delta(ts_add(a, n), a) == n


@settings(max_examples=100)
@given(u16, st.lists(st.booleans(), min_size=3, max_size=400))
def test_sequence_state_counts_losses_across_wrap(first: int, delivered: list[bool]) -> None:
    delivered[0] = delivered[1] = delivered[-1] = True  # validated start, known end
    state = SequenceState(first)
    for i, ok in enumerate(delivered):
        if ok:
            state.update(seq_add(first, i))
    # Probation swallows the first packet (RFC 3550 A.1): count from the second.
    assert state.cumulative_lost == delivered[1:].count(False)
    assert state.extended_max == state.cycles + seq_add(first, len(delivered) - 1)


# -- RTCP -----------------------------------------------------------------------------

blocks = st.builds(
    ReportBlock,
    u32,
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    u32,
    u32,
    u32,
    u32,
)
text = st.text(max_size=40)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        u32,
        st.integers(0, 2**64 - 1),
        u32,
        u32,
        u32,
        st.lists(blocks, max_size=4).map(tuple),
        words,
    ),
    st.builds(ReceiverReport, u32, st.lists(blocks, max_size=4).map(tuple), words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                u32,
                st.lists(st.builds(SdesItem, st.integers(1, 255), text), max_size=3).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=5).map(tuple), st.none() | text),
    st.builds(App, st.integers(0, 31), u32, st.binary(min_size=4, max_size=4), words),
    st.builds(UnknownRtcpPacket, st.integers(205, 223), st.integers(0, 31), words),
)


@settings(max_examples=200)
@given(st.lists(rtcp_packets, min_size=1, max_size=5))
def test_rtcp_compound_round_trip(packets: list[RtcpPacket]) -> None:
    assert parse_compound(serialize_compound(packets)) == tuple(packets)


hostile_rtcp = st.binary(max_size=80) | st.builds(
    _mutations,
    st.lists(rtcp_packets, min_size=1, max_size=3).map(serialize_compound),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=4),
    st.integers(0, 8),
)


@settings(max_examples=200)
@given(hostile_rtcp)
def test_hostile_bytes_only_raise_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_compound(data)
    session = RtcpSession(ssrc=1, cname="x", now=0.0, rng=lambda: 0.5)
    session.receive(data, 1.0, 1 << 40)  # never raises
    session.quality()


# -- RFC 4733: every key press exactly once ---------------------------------------------

Packet = tuple[float, int, int, bytes]


def scripted_presses(keys: str, durations: list[int], seed: int) -> tuple[list[Packet], list[int]]:
    """Packets (send time, SSRC, timestamp, payload) of a key sequence from our sender,
    and the RTP timestamp of each press."""
    rtp = RtpSender.with_random_start(random.Random(seed))
    tx = DtmfEventSender(101)
    for key, duration in zip(keys, durations, strict=True):
        tx.press(key, duration=duration, gap=480)
    packets: list[Packet] = []
    starts: list[int] = []
    now = 0.0
    while tx.busy:
        out = tx.tick(rtp, 160)
        if out is None:
            rtp.advance(160)
        for data in out or []:
            packet = RtpPacket.parse(data)
            if packet.marker:
                starts.append(packet.timestamp)
            packets.append((now, packet.ssrc, packet.timestamp, packet.payload))
        now += 0.02
    return packets, starts


def deliver(rx: DtmfEventReceiver, arrivals: list[Packet]) -> list[DtmfEvent]:
    events: list[DtmfEvent] = []
    for now, ssrc, ts, payload in arrivals:
        deadline = rx.next_deadline()
        while deadline is not None and deadline <= now:
            events += rx.handle_timer(deadline)
            deadline = rx.next_deadline()
        events += rx.receive(ssrc, ts, payload, now)
    events += rx.handle_timer(arrivals[-1][0] + 10.0)
    return events


def assert_each_press_once(events: list[DtmfEvent], keys: str, starts: list[int]) -> None:
    started = [e for e in events if isinstance(e, DigitStarted)]
    finished = [e for e in events if isinstance(e, DigitEnded)]
    assert Counter(e.digit for e in started) == Counter(keys)
    assert sorted(e.start_ts for e in started) == sorted(starts)
    assert sorted(e.start_ts for e in finished) == sorted(starts)  # each ends once too
    by_ts = {e.start_ts: e.digit for e in started}
    assert [by_ts[ts] for ts in starts] == list(keys)


key_sequences = st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(key_sequences, st.data())
def test_any_packet_order_yields_each_press_once(keys: str, data: st.DataObject) -> None:
    durations = data.draw(st.lists(st.integers(320, 1600), min_size=len(keys), max_size=len(keys)))
    packets, starts = scripted_presses(keys, durations, data.draw(st.integers(0, 2**32)))
    order = data.draw(st.permutations(list(range(len(packets)))))
    # Any order at all, delivered within a short burst.
    arrivals = [(i * 0.001, *packets[j][1:]) for i, j in enumerate(order)]
    assert_each_press_once(deliver(DtmfEventReceiver(), arrivals), keys, starts)


@settings(max_examples=150, deadline=None)
@given(key_sequences, st.data())
def test_jitter_duplicates_and_loss_yield_each_press_once(keys: str, data: st.DataObject) -> None:
    durations = data.draw(st.lists(st.integers(320, 1600), min_size=len(keys), max_size=len(keys)))
    packets, starts = scripted_presses(keys, durations, data.draw(st.integers(0, 2**32)))
    arrivals: list[Packet] = []
    survivors: dict[int, int] = Counter()
    for sent, ssrc, ts, payload in packets:
        copies = data.draw(st.integers(0, 2))  # lost, delivered, or duplicated
        for _ in range(copies):
            delay = data.draw(st.floats(0.0, 0.15))
            arrivals.append((sent + delay, ssrc, ts, payload))
            survivors[ts] += 1
    # A press none of whose packets arrived cannot be seen: give it one.
    for sent, ssrc, ts, payload in packets:
        if survivors[ts] == 0:
            arrivals.append((sent, ssrc, ts, payload))
            survivors[ts] = 1
    arrivals.sort(key=lambda p: p[0])
    assert_each_press_once(deliver(DtmfEventReceiver(), arrivals), keys, starts)
