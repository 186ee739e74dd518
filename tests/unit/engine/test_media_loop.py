"""The pure parts of the media tick: schedule arithmetic, and `MediaCore` driven with
datagrams and tick indices on a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import random
import struct
import wave
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from hotline.engine.media_loop import (
    MAX_BEHIND_TICKS,
    SAMPLES_PER_TICK,
    TICK_SECONDS,
    DtmfMethod,
    MediaCore,
    MediaLeg,
    MediaLoop,
    OutboundSource,
    SendTo,
    TickSchedule,
)
from hotline.media import g711, tones
from hotline.media.dtmf import DtmfDetectorBank, InbandDigitStarted
from hotline.media.prompts import load_wav
from hotline.media.recording import Channel, Recording
from hotline.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SdesItem,
    SdesType,
    SenderReport,
    SourceDescription,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    serialize_compound,
)
from hotline.rtp.stream import Address
from hotline.rtp.telephone_event import (
    DigitEnded,
    DigitStarted,
    DtmfEvent,
    DtmfEventReceiver,
    EndReason,
    parse_events,
)
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

PEER = ("127.0.0.1", 7000)


def media(codec: Codec = Codec.PCMU, port: int = 7000, te: int | None = 101) -> NegotiatedMedia:
    pt = codec.static_payload_type
    return NegotiatedMedia(
        "127.0.0.1",
        port,
        "127.0.0.1",
        port + 1,
        codec,
        pt,
        te,
        20,
        Direction.SENDRECV,
        ((pt, codec),),
        te,
    )


def rtp(
    pt: int, seq: int, ts: int, payload: bytes, ssrc: int = 0xABC, marker: bool = False
) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq, ts, ssrc) + payload


class Recorder:
    def __init__(self) -> None:
        self.digits: list[tuple[Hashable, str, DtmfMethod]] = []
        self.inactive: list[Hashable] = []
        self.sent: dict[Hashable, list[tuple[bytes, Address]]] = {}

    def core(self, **kw: Any) -> MediaCore:
        return MediaCore(
            on_digit=lambda k, d, m: self.digits.append((k, d, m)),
            on_inactive=self.inactive.append,
            **kw,
        )

    def sink(self, key: Hashable) -> SendTo:
        out = self.sent.setdefault(key, [])
        return lambda data, addr: out.append((data, addr))


Int16 = npt.NDArray[np.int16]


def through(codec: g711.Codec, samples: npt.NDArray[np.generic]) -> Int16:
    """`samples` after a G.711 round trip: what a peer decodes from what we encode."""
    return g711.decode(codec, g711.encode(codec, np.asarray(samples, dtype=np.int16)))


def through_ulaw(samples: npt.NDArray[np.generic]) -> Int16:
    return through(g711.Codec.PCMU, samples)


def header(packet: bytes) -> tuple[int, bool, int, int, int]:
    """(payload type, marker, sequence number, timestamp, SSRC) of an RTP packet."""
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    assert b0 == 0x80
    return b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc


def sent_audio(packets: Sequence[bytes], codec: g711.Codec = g711.Codec.PCMU) -> Int16:
    """The decoded samples of every audio packet (payload type of `codec`), in order."""
    audio = [
        g711.decode(codec, np.frombuffer(p[12:], np.uint8))
        for p in packets
        if p[1] & 0x7F == int(codec)
    ]
    return np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)


class Tap:
    """Every RTP datagram one leg sends, with the index of the tick that sent it."""

    def __init__(self) -> None:
        self.tick = -1
        self.packets: list[tuple[int, bytes]] = []

    def __call__(self, data: bytes, addr: Address) -> None:
        self.packets.append((self.tick, data))

    def audio(self, codec: g711.Codec = g711.Codec.PCMU) -> Int16:
        return sent_audio([p for _, p in self.packets], codec)

    def in_tick(self, tick: int) -> list[bytes]:
        return [p for n, p in self.packets if n == tick]


def drive(core: MediaCore, first: int, last: int, *taps: Tap) -> None:
    """Run ticks first … last − 1 on the fake clock, telling the taps which it is."""
    for n in range(first, last):
        for tap in taps:
            tap.tick = n
        core.tick(n, n * TICK_SECONDS)


class Plays:
    """What `on_play_done` reported, with the tick it was reported in."""

    def __init__(self, tap: Tap | None = None) -> None:
        self.tap = tap
        self.log: list[tuple[Hashable, Hashable, bool]] = []
        self.ticks: list[int] = []
        self.sent_before: list[int] = []  # packets the tap had seen when it was reported

    def __call__(self, key: Hashable, tag: Hashable, completed: bool) -> None:
        self.log.append((key, tag, completed))
        if self.tap is not None:
            self.ticks.append(self.tap.tick)
            self.sent_before.append(len(self.tap.packets))


# -- schedule -----------------------------------------------------------------------------


def test_schedule_runs_on_time_ticks_in_order_without_drift() -> None:
    s = TickSchedule(100.0)
    for n in range(5):
        slot = s.begin(100.0 + n * TICK_SECONDS + 0.001)  # each wake-up 1 ms late
        assert (slot.index, slot.skipped) == (n, 0)
        assert slot.due == pytest.approx(100.0 + n * TICK_SECONDS)
        assert s.next_due == pytest.approx(100.0 + (n + 1) * TICK_SECONDS)
    assert s.late_ticks == 0 and s.skipped_ticks == 0
    assert s.max_lateness == pytest.approx(0.001)


def test_a_late_tick_runs_and_the_next_is_due_from_the_schedule_not_the_wakeup() -> None:
    s = TickSchedule(0.0)
    s.begin(0.0)
    slot = s.begin(0.020 + 0.045)  # tick 1, 45 ms late: under 5 periods, no skipping
    assert (slot.index, slot.skipped) == (1, 0)
    assert slot.lateness == pytest.approx(0.045)
    assert s.next_due == pytest.approx(0.040)  # already past: the loop catches up at once
    assert s.begin(0.066).index == 2
    assert s.late_ticks == 2


def test_far_behind_skips_ahead_and_counts_skipped_ticks() -> None:
    s = TickSchedule(10.0, max_behind=5)
    s.begin(10.0)
    slot = s.begin(10.0 + 0.5 + 0.003)  # tick 1 due at 10.02; now tick 25 is due
    assert slot.index == 25
    assert slot.skipped == 24
    assert slot.lateness == pytest.approx(0.003)
    assert s.skipped_ticks == 24
    assert s.next_due == pytest.approx(10.0 + 26 * TICK_SECONDS)


def test_a_stall_up_to_200ms_is_caught_up_tick_by_tick_and_a_longer_one_skipped() -> None:
    s = TickSchedule(10.0)  # the default: MAX_BEHIND_TICKS
    assert s.max_behind == MAX_BEHIND_TICKS == 10
    s.begin(10.0)
    # Stalled 190 ms: ticks 1..10 are all run, in order, each as soon as the last ends.
    indexes = [s.begin(10.19 + 0.001 * k).index for k in range(10)]
    assert indexes == list(range(1, 11)) and s.skipped_ticks == 0
    assert s.begin(10.22).index == 11  # on time again
    # Stalled 250 ms past tick 12's due time: past the limit, it skips ahead.
    slot = s.begin(10.24 + 0.25)
    assert slot.skipped == 12 and slot.index == 24 and s.skipped_ticks == 12


def test_restart_keeps_the_index_sequence() -> None:
    s = TickSchedule(0.0)
    s.begin(0.0)
    s.begin(0.02)
    s.restart(50.0)
    assert s.next_due == 50.0
    assert s.begin(50.0).index == 2


def test_schedule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="tick period must be positive, got 0"):
        TickSchedule(0.0, period=0)
    with pytest.raises(ValueError, match="max_behind must be at least 1, got 0"):
        TickSchedule(0.0, max_behind=0)


# -- inbound ------------------------------------------------------------------------------


def test_one_tick_decodes_pcmu_and_pcma_legs_together() -> None:
    rec = Recorder()
    core = rec.core(prefill_samples=160)
    a = core.add_leg("a", 20000, media(Codec.PCMU), 0.0)
    b = core.add_leg("b", 20002, media(Codec.PCMA, port=7002), 0.0)
    sa = tones.dtmf_tone("1", 20.0, level_dbm0=-10)
    sb = tones.beep(20.0, 700.0, ramp_ms=0)
    core.receive_rtp(a, rtp(0, 1, 0, g711.ulaw_encode(sa).tobytes()), PEER, 0.001)
    core.receive_rtp(b, rtp(8, 1, 0, g711.alaw_encode(sb).tobytes()), ("127.0.0.1", 7002), 0.002)
    report = core.tick(0, 0.02)
    assert set(report.inbound_keys) == {"a", "b"}
    assert report.inbound.shape == (2, SAMPLES_PER_TICK)
    rows = dict(zip(report.inbound_keys, report.inbound, strict=True))
    np.testing.assert_array_equal(rows["a"], g711.ulaw_decode(g711.ulaw_encode(sa)))
    np.testing.assert_array_equal(rows["b"], g711.alaw_decode(g711.alaw_encode(sb)))
    assert core.tick(1, 0.04).inbound_keys == ()  # nothing more queued


def test_reordered_packets_play_in_sequence_order_and_duplicates_are_dropped() -> None:
    rec = Recorder()
    core = rec.core(prefill_samples=320)
    leg = core.add_leg("a", 20000, media(), 0.0)
    signal = (np.arange(960) * 25 - 12000).astype(np.int16)
    codes = g711.ulaw_encode(signal).tobytes()
    # The first packets validate the source (RFC 3550 probation); then 5 before 4, 4 twice.
    for seq in (1, 2, 3, 5, 4, 4, 6):
        i = seq - 1
        core.receive_rtp(
            leg, rtp(0, seq, 160 * i, codes[160 * i : 160 * (i + 1)]), PEER, 0.001 * seq
        )
    played = [core.tick(n, 0.02 * (n + 1)).inbound for n in range(8)]
    joined = np.concatenate([p.ravel() for p in played])
    np.testing.assert_array_equal(joined, g711.ulaw_decode(np.frombuffer(codes, np.uint8)))


def test_30ms_inbound_packets_play_out_continuously_on_the_20ms_tick() -> None:
    rec = Recorder()
    core = rec.core()
    leg = core.add_leg("a", 20000, media(), 0.0)
    signal = tones.multi_tone([(440.0, -10.0)], 240 * 20)
    codes = g711.ulaw_encode(signal).tobytes()
    out: list[np.ndarray] = []
    packet = 0
    for n in range(30):
        now = n * TICK_SECONDS
        while packet < 20 and packet * 0.030 <= now:  # a 30 ms packet is due
            payload = codes[240 * packet : 240 * (packet + 1)]
            core.receive_rtp(leg, rtp(0, packet, 240 * packet, payload), PEER, packet * 0.030)
            packet += 1
        report = core.tick(n, now)
        out.extend(report.inbound)
    played = np.concatenate(out)
    expected = g711.ulaw_decode(np.frombuffer(codes, np.uint8))
    assert leg.underruns == 0
    assert played.size >= 160 * 25
    np.testing.assert_array_equal(played, expected[: played.size])
    assert leg.receiver.ptime_ms == 30.0


def test_unknown_payload_types_are_counted_not_played() -> None:
    rec = Recorder()
    core = rec.core(prefill_samples=160)
    leg = core.add_leg("a", 20000, media(), 0.0)
    core.receive_rtp(leg, rtp(13, 1, 0, b"\x40"), PEER, 0.001)  # comfort noise
    core.receive_rtp(leg, b"\x80\x00", PEER, 0.002)  # malformed
    assert core.tick(0, 0.02).inbound_keys == ()
    assert leg.unknown_payload == 1
    assert leg.receiver.malformed == 1


# -- outbound -----------------------------------------------------------------------------


def test_outbound_timestamps_step_160_per_tick_and_follow_skipped_ticks() -> None:
    rec = Recorder()
    core = rec.core()
    core.add_leg("a", 20000, media(), 0.0, sendto=rec.sink("a"))
    core.add_leg("b", 20002, media(Codec.PCMA, port=7002), 0.0, sendto=rec.sink("b"))
    for n in range(3):
        assert core.tick(n, n * TICK_SECONDS).sent == 2
    core.tick(10, 10 * TICK_SECONDS, skipped=7)
    for key, payload_type, silence in (("a", 0, 0xFF), ("b", 8, 0xD5)):
        packets = rec.sent[key]
        headers = [struct.unpack("!BBHII", p[:12]) for p, _ in packets]
        stamps = [h[3] for h in headers]
        steps = [(y - x) % 2**32 for x, y in itertools.pairwise(stamps)]
        assert steps == [160, 160, 160 * 8]
        seqs = [h[2] for h in headers]
        assert [(y - x) % 65536 for x, y in itertools.pairwise(seqs)] == [1, 1, 1]
        assert [h[1] for h in headers] == [0x80 | payload_type] + [payload_type] * 3
        assert all(
            addr == (("127.0.0.1", 7000) if key == "a" else ("127.0.0.1", 7002))
            for _, addr in packets
        )
        assert packets[-1][0][12:] == bytes([silence]) * 160


def test_outbound_source_plays_then_silence_and_symmetric_rtp_follows_the_source() -> None:
    rec = Recorder()
    core = rec.core()
    tone = tones.beep(30.0, 1000.0, ramp_ms=0)  # 240 samples: one and a half ticks
    leg = core.add_leg("a", 20000, media(), 0.0, source=OutboundSource(tone), sendto=rec.sink("a"))
    core.receive_rtp(leg, rtp(0, 1, 0, b"\xff" * 160), ("10.0.0.9", 5555), 0.001)
    for n in range(3):
        core.tick(n, n * TICK_SECONDS)
    payloads = [g711.ulaw_decode(np.frombuffer(p[12:], np.uint8)) for p, _ in rec.sent["a"]]
    np.testing.assert_array_equal(payloads[0], g711.ulaw_decode(g711.ulaw_encode(tone[:160])))
    np.testing.assert_array_equal(payloads[1][:80], g711.ulaw_decode(g711.ulaw_encode(tone[160:])))
    assert np.all(payloads[1][80:] == 0) and np.all(payloads[2] == 0)
    assert {addr for _, addr in rec.sent["a"]} == {("10.0.0.9", 5555)}


def test_a_looping_source_from_the_factory_wraps_and_reports_under_its_tag() -> None:
    rec = Recorder()
    done: list[tuple[Hashable, Hashable, bool]] = []
    ramp = np.arange(100, dtype=np.int16) * 50
    core = rec.core(
        source_factory=lambda: OutboundSource(ramp, loop=True, tag="hold"),
        on_play_done=lambda *a: done.append(a),
    )
    core.add_leg("a", 20000, media(), 0.0, sendto=rec.sink("a"))
    for n in range(3):
        core.tick(n, n * TICK_SECONDS)
    audio = sent_audio([p for p, _ in rec.sent["a"]])
    np.testing.assert_array_equal(audio, through_ulaw(np.resize(ramp, 480)))
    core.stop_playback("a")
    assert done == [("a", "hold", False)]
    with pytest.raises(ValueError, match="outbound audio must be 1-D int16 samples"):
        OutboundSource(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="a looping outbound source needs at least one sample"):
        OutboundSource(np.zeros(0, dtype=np.int16), loop=True)


def test_held_leg_sends_nothing_but_its_clock_moves() -> None:
    rec = Recorder()
    core = rec.core()
    held = media()
    held = NegotiatedMedia(
        held.remote_address,
        held.remote_port,
        held.remote_rtcp_address,
        held.remote_rtcp_port,
        held.codec,
        held.payload_type,
        held.telephone_event,
        20,
        Direction.RECVONLY,
        held.receive_codecs,
        held.receive_telephone_event,
    )
    leg = core.add_leg("a", 20000, held, 0.0, sendto=rec.sink("a"))
    start = leg.sender.timestamp
    core.tick(0, 0.0)
    core.tick(1, 0.02)
    assert rec.sent["a"] == []
    assert (leg.sender.timestamp - start) % 2**32 == 320
    core.update("a", media(), 0.05)
    core.tick(2, 0.04)
    assert len(rec.sent["a"]) == 1


# -- DTMF ---------------------------------------------------------------------------------


def _event(code: int, end: bool, duration: int) -> bytes:
    return struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)


def test_rfc4733_press_with_triple_end_is_reported_once() -> None:
    rec = Recorder()
    core = rec.core()
    leg = core.add_leg("a", 20000, media(), 0.0)
    seq, t = 1, 0.0
    for i, (end, duration) in enumerate(
        [(False, 160), (False, 320), (False, 480), (True, 640), (True, 640), (True, 640)]
    ):
        t = 0.01 + 0.02 * i
        core.receive_rtp(leg, rtp(101, seq, 8000, _event(5, end, duration), marker=i == 0), PEER, t)
        seq += 1
    for n in range(8):
        core.tick(n, n * TICK_SECONDS + 0.019)
    assert rec.digits == [("a", "5", DtmfMethod.RFC4733)]


def test_lost_end_packets_still_count_once_after_the_timeout() -> None:
    rec = Recorder()
    core = rec.core()
    leg = core.add_leg("a", 20000, media(), 0.0)
    core.receive_rtp(leg, rtp(101, 1, 800, _event(11, False, 160)), PEER, 0.005)
    for n in range(40):
        core.tick(n, n * TICK_SECONDS)
    assert rec.digits == [("a", "#", DtmfMethod.RFC4733)]
    assert leg.events.timeouts == 1


def _press(core: MediaCore, leg_key: str, digit: str, *, events: bool, ticks: int = 30) -> None:
    """100 ms of in-band tone for `digit` (and, if `events`, the same press as RFC 4733
    events), one packet per tick."""
    leg = core.legs[leg_key]
    audio = np.concatenate(
        [
            tones.silence(320),
            tones.dtmf_tone(digit, 100.0, level_dbm0=-10),
            tones.silence(160 * ticks),
        ]
    )
    codes = g711.ulaw_encode(audio).tobytes()
    code = "0123456789*#".index(digit)
    for n in range(ticks):
        now = n * TICK_SECONDS
        if 160 * (n + 1) <= len(codes):
            core.receive_rtp(leg, rtp(0, n, 160 * n, codes[160 * n : 160 * (n + 1)]), PEER, now)
        k = n - 2  # the tone runs over ticks 2..6
        if events and 0 <= k <= 7:
            end = k >= 5
            core.receive_rtp(
                leg,
                rtp(101, 1000 + n, 320, _event(code, end, 160 * min(k + 1, 5)), ssrc=0xABC),
                PEER,
                now + 0.001,
            )
        core.tick(n, now + 0.002)


def test_inband_press_alone_is_reported_once_by_inband() -> None:
    rec = Recorder()
    core = rec.core()
    core.add_leg("a", 20000, media(), 0.0)
    _press(core, "a", "8", events=False)
    assert rec.digits == [("a", "8", DtmfMethod.INBAND)]


def test_press_sent_both_as_rfc4733_and_inband_counts_once() -> None:
    rec = Recorder()
    core = rec.core()
    core.add_leg("a", 20000, media(), 0.0)
    _press(core, "a", "6", events=True)
    assert rec.digits == [("a", "6", DtmfMethod.RFC4733)]


def test_digits_on_two_legs_in_the_same_ticks_stay_apart() -> None:
    rec = Recorder()
    core = rec.core()
    core.add_leg("a", 20000, media(), 0.0)
    core.add_leg("b", 20002, media(Codec.PCMA, port=7002), 0.0)
    a_audio = g711.ulaw_encode(
        np.concatenate([tones.dtmf_tone("2", 100.0, -10), tones.silence(3200)])
    ).tobytes()
    b_audio = g711.alaw_encode(
        np.concatenate([tones.silence(800), tones.dtmf_tone("9", 100.0, -10), tones.silence(2400)])
    ).tobytes()
    for n in range(25):
        now = n * TICK_SECONDS
        core.receive_rtp(
            core.legs["a"], rtp(0, n, 160 * n, a_audio[160 * n : 160 * n + 160]), PEER, now
        )
        core.receive_rtp(
            core.legs["b"],
            rtp(8, n, 160 * n, b_audio[160 * n : 160 * n + 160]),
            ("127.0.0.1", 7002),
            now,
        )
        core.tick(n, now + 0.002)
    assert sorted(rec.digits) == [("a", "2", DtmfMethod.INBAND), ("b", "9", DtmfMethod.INBAND)]


# -- legs and inactivity --------------------------------------------------------------------


def test_inactivity_is_reported_once_per_silent_leg() -> None:
    rec = Recorder()
    core = rec.core(inactivity_timeout=2.0)
    talking = core.add_leg("talking", 20000, media(), 0.0)
    core.add_leg("silent", 20002, media(port=7002), 0.0)
    for n in range(0, 301):
        now = n * TICK_SECONDS
        if n % 10 == 0:
            core.receive_rtp(talking, rtp(0, n, 160 * n, b"\xff" * 160), PEER, now)
        core.tick(n, now)
    assert rec.inactive == ["silent"]


def test_removed_leg_frees_its_detector_slot_and_ticks_must_advance() -> None:
    rec = Recorder()
    core = rec.core()
    core.add_leg("a", 20000, media(), 0.0)
    assert len(core.bank) == 1
    with pytest.raises(ValueError, match="media leg 'a' already exists"):
        core.add_leg("a", 20000, media(), 0.0)
    assert core.remove_leg("a") is not None
    assert core.remove_leg("a") is None
    assert len(core.bank) == 0
    core.tick(3, 0.06)
    with pytest.raises(ValueError, match="tick 3 is not after the last tick 3"):
        core.tick(3, 0.06)


# -- RTCP ---------------------------------------------------------------------------------

WALL0 = 1_700_000_000.0  # the fake wall clock at monotonic time 0
PEER_SSRC = 0xABC


def ntp(now: float) -> int:
    return ntp_from_unix(WALL0 + now)


class Wire:
    """Every datagram a leg sends, in order, tagged with the socket it left from."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes, Address]] = []

    def rtp(self, data: bytes, addr: Address) -> None:
        self.log.append(("rtp", data, addr))

    def rtcp(self, data: bytes, addr: Address) -> None:
        self.log.append(("rtcp", data, addr))

    def of(self, kind: str) -> list[tuple[bytes, Address]]:
        return [(d, a) for k, d, a in self.log if k == kind]


def _rtcp_leg(
    rec: Recorder, wire: Wire, key: str = "a", m: NegotiatedMedia | None = None, **kw: object
) -> tuple[MediaCore, MediaLeg]:
    core = rec.core(rng=random.Random(7), cname="hotline@192.0.2.1", **kw)
    leg = core.add_leg(key, 20000, m or media(), 0.0, sendto=wire.rtp, rtcp_sendto=wire.rtcp)
    return core, leg


def _run(core: MediaCore, first: int, last: int, *, with_ntp: bool = True) -> None:
    for n in range(first, last):
        now = n * TICK_SECONDS
        core.tick(n, now, ntp_now=ntp(now) if with_ntp else None)


def test_a_sending_leg_sends_a_sender_report_within_six_seconds() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    ssrc = leg.sender.ssrc
    _run(core, 0, 300)
    assert wire.of("rtcp"), "no RTCP report in 6 s"
    rtp_before = 0
    reports = 0
    for kind, data, addr in wire.log:
        if kind == "rtp":
            rtp_before += 1
            continue
        reports += 1
        assert addr == ("127.0.0.1", 7001)  # the SDP's RTCP address
        packets = parse_compound(data, strict=True)
        sr = packets[0]
        assert isinstance(sr, SenderReport)
        assert sr.ssrc == ssrc
        assert sr.packet_count == rtp_before  # every RTP packet up to this tick
        assert sr.octet_count == 160 * rtp_before
        assert sr.reports == ()  # nothing received, nothing to report on
        sdes = packets[1]
        assert isinstance(sdes, SourceDescription)
        assert sdes.chunks[0].ssrc == ssrc and sdes.chunks[0].cname == "hotline@192.0.2.1"
        # the SR's NTP / RTP pair belongs to one tick's scheduled instant
        tick_time = ntp_to_seconds(sr.ntp_timestamp) - WALL0
        n = round(tick_time / TICK_SECONDS)
        assert tick_time == pytest.approx(n * TICK_SECONDS, abs=1e-6)
        rtp_at_tick = struct.unpack("!I", wire.of("rtp")[n][0][4:8])[0]
        assert sr.rtp_timestamp == rtp_at_tick
    # first report after 1.03..3.08 s, then every 2.05..6.16 s: one or two in 6 s
    assert 1 <= reports <= 3
    assert leg.rtcp.reports_sent == reports == leg.rtcp_sent


def ntp_to_seconds(value: int) -> float:
    return value / 2**32 - 2_208_988_800


def test_no_ntp_time_means_no_reports_and_they_resume_when_it_comes() -> None:
    rec, wire = Recorder(), Wire()
    core, _leg = _rtcp_leg(rec, wire)
    _run(core, 0, 300, with_ntp=False)
    assert wire.of("rtcp") == [] and len(wire.of("rtp")) == 300
    core.tick(300, 6.0, ntp_now=ntp(6.0))
    assert len(wire.of("rtcp")) == 1  # the overdue report goes at once


def test_a_receiver_report_about_our_stream_updates_the_call_quality() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    ssrc = leg.sender.ssrc
    _run(core, 0, 300)
    sr_data, _ = wire.of("rtcp")[0]
    sr = parse_compound(sr_data)[0]
    assert isinstance(sr, SenderReport)
    before = core.leg_quality("a")
    assert before is not None and before.outbound is None and before.reports_received == 0
    # The peer got our SR, held it 0.5 s, and its RR reaches us 0.6 s after we sent
    # the SR: 100 ms round trip. A quarter of our packets were lost this interval.
    sent_at = ntp_to_seconds(sr.ntp_timestamp) - WALL0
    block = ReportBlock(
        ssrc,
        64,
        12,
        (leg.sender.initial_sequence_number + 99) & 0xFFFF,
        80,
        ntp_middle32(sr.ntp_timestamp),
        32768,
    )
    rr = serialize_compound(
        [
            ReceiverReport(PEER_SSRC, (block,)),
            SourceDescription((SdesChunk(PEER_SSRC, (SdesItem(SdesType.CNAME, "peer@x"),)),)),
        ]
    )
    core.receive_rtcp(leg, rr, ("127.0.0.1", 7001), sent_at + 0.6, ntp(sent_at + 0.6))
    quality = core.leg_quality("a")
    assert quality is not None and quality.outbound is not None
    assert quality.outbound.fraction_lost == 0.25
    assert quality.outbound.cumulative_lost == 12
    assert quality.outbound.loss_ratio == pytest.approx(12 / 100)
    assert quality.outbound.jitter_ms == pytest.approx(10.0)
    assert quality.rtt_ms == pytest.approx(100.0, abs=0.1)
    assert quality.reports_received == 1 and quality.malformed == 0
    assert leg.rtcp.remote_cnames == {PEER_SSRC: "peer@x"}
    assert core.leg_quality("nobody") is None


def test_inbound_audio_shows_in_our_report_blocks_and_inbound_quality() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    for n in range(300):
        now = n * TICK_SECONDS
        if n % 10 != 9:  # every tenth packet lost
            core.receive_rtp(
                leg, rtp(0, 1000 + n, 160 * n, b"\xff" * 160, ssrc=PEER_SSRC), PEER, now
            )
        core.tick(n, now, ntp_now=ntp(now))
    last, _ = wire.of("rtcp")[-1]
    sr = parse_compound(last)[0]
    assert isinstance(sr, SenderReport)
    (block,) = sr.reports
    assert block.ssrc == PEER_SSRC
    assert block.cumulative_lost > 0
    quality = core.leg_quality("a")
    assert quality is not None and quality.inbound is not None
    assert quality.inbound.loss_ratio == pytest.approx(0.1, abs=0.02)


def test_rtcp_from_another_host_is_dropped_and_malformed_rtcp_counted() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    forged = serialize_compound([Bye((PEER_SSRC,), "forged")])
    core.receive_rtcp(leg, forged, ("203.0.113.9", 7001), 0.1, ntp(0.1))
    assert leg.rtcp_foreign == 1 and leg.rtcp.reports_received == 0
    core.receive_rtcp(leg, b"\x80\xc9\x00", ("127.0.0.1", 7001), 0.2, ntp(0.2))
    assert leg.rtcp_malformed == 1 and leg.rtcp_packets == 2
    quality = core.leg_quality("a")
    assert quality is not None and quality.malformed == 1 and quality.reports_received == 0


def test_rtcp_follows_the_peer_symmetric_rtp_then_its_own_rtcp_source() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    core.receive_rtp(leg, rtp(0, 1, 0, b"\xff" * 160, ssrc=PEER_SSRC), ("10.0.0.9", 5554), 0.0)
    assert leg.rtcp_destination == ("10.0.0.9", 5555)
    rr = serialize_compound([ReceiverReport(PEER_SSRC)])
    core.receive_rtcp(leg, rr, ("10.0.0.9", 40001), 0.5, ntp(0.5))
    _run(core, 0, 300)
    assert {addr for _, addr in wire.of("rtcp")} == {("10.0.0.9", 40001)}
    # a re-INVITE that moves the media forgets both
    core.update("a", media(port=7100), 6.0)
    assert leg.rtcp_destination == ("127.0.0.1", 7101)


def test_rtcp_mux_sends_reports_from_the_rtp_socket_to_the_rtp_destination() -> None:
    m = media()
    muxed = NegotiatedMedia(
        m.remote_address,
        m.remote_port,
        m.remote_address,
        m.remote_port,
        m.codec,
        m.payload_type,
        m.telephone_event,
        20,
        m.direction,
        m.receive_codecs,
        m.receive_telephone_event,
        rtcp_mux=True,
    )
    rec, wire = Recorder(), Wire()
    core, _leg = _rtcp_leg(rec, wire, m=muxed)
    _run(core, 0, 300)
    assert wire.of("rtcp") == []
    reports = [(d, a) for d, a in wire.of("rtp") if 192 <= d[1] <= 223]
    assert reports and {a for _, a in reports} == {("127.0.0.1", 7000)}
    assert isinstance(parse_compound(reports[0][0])[0], SenderReport)


def test_no_rtcp_destination_means_no_reports_until_there_is_one() -> None:
    m = media()
    no_rtcp = NegotiatedMedia(
        m.remote_address,
        m.remote_port,
        m.remote_address,
        0,
        m.codec,
        m.payload_type,
        m.telephone_event,
        20,
        m.direction,
        m.receive_codecs,
        m.receive_telephone_event,
    )
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire, m=no_rtcp)
    _run(core, 0, 300)
    assert wire.of("rtcp") == [] and leg.rtcp.reports_sent == 0
    core.update("a", m, 6.0)
    _run(core, 300, 360)  # the overdue timer is looked at again within a second
    assert len(wire.of("rtcp")) == 1


def test_removal_sends_a_bye_and_returns_the_leg_with_its_figures() -> None:
    rec, wire = Recorder(), Wire()
    core, leg = _rtcp_leg(rec, wire)
    ssrc = leg.sender.ssrc
    _run(core, 0, 100)
    reports = len(wire.of("rtcp"))
    removed = core.remove_leg("a", 2.0, ntp(2.0), "call ended")
    assert removed is leg
    assert len(wire.of("rtcp")) == reports + 1
    data, addr = wire.of("rtcp")[-1]
    assert addr == ("127.0.0.1", 7001)
    packets = parse_compound(data, strict=True)
    assert isinstance(packets[0], SenderReport) and packets[0].packet_count == 100
    assert packets[-1] == Bye((ssrc,), "call ended")
    assert removed.rtcp.quality().reports_sent == reports + 1
    assert core.leg_quality("a") is None
    _run(core, 100, 600)  # its pending timer entry comes up and is dropped
    assert len(wire.of("rtcp")) == reports + 1


def test_a_leg_that_never_sent_anything_leaves_without_a_bye() -> None:
    rec, wire = Recorder(), Wire()
    core, _leg = _rtcp_leg(rec, wire)
    assert core.remove_leg("a", 0.5, ntp(0.5)) is not None
    assert wire.log == []


def test_many_legs_report_at_their_own_randomised_times_from_one_heap() -> None:
    rec = Recorder()
    core = rec.core(rng=random.Random(3))
    wires = {}
    for i in range(40):
        wires[i] = Wire()
        core.add_leg(
            i,
            20000 + 2 * i,
            media(port=7000 + 2 * i),
            0.0,
            sendto=wires[i].rtp,
            rtcp_sendto=wires[i].rtcp,
        )
    sent_per_tick = []
    for n in range(1000):  # 20 s
        now = n * TICK_SECONDS
        sent_per_tick.append(core.tick(n, now, ntp_now=ntp(now)).rtcp_sent)
    counts = [len(w.of("rtcp")) for w in wires.values()]
    # first report by 3.08 s, then one every 2.05..6.16 s: 3..9 each in 20 s
    assert all(3 <= c <= 9 for c in counts), counts
    assert sum(sent_per_tick) == sum(counts)
    assert max(sent_per_tick) <= 4  # spread out, not all on one tick
    first = [parse_compound(w.of("rtcp")[0][0])[0] for w in wires.values()]
    assert len({p.ssrc for p in first}) == 40  # type: ignore[union-attr]


# -- the play queue -------------------------------------------------------------------------


def test_back_to_back_items_play_sample_exact_across_tick_boundaries() -> None:
    rng = np.random.default_rng(5)
    plays = Plays()
    core = Recorder().core(on_play_done=plays)
    taps = {"u": Tap(), "a": Tap()}
    core.add_leg("u", 20000, media(), 0.0, sendto=taps["u"])
    core.add_leg("a", 20002, media(Codec.PCMA, port=7002), 0.0, sendto=taps["a"])
    lengths = (100, 250, 37, 413, 160, 1)  # 961 samples: ends one sample into tick 6
    items = {
        key: [rng.integers(-20000, 20000, n).astype(np.int16) for n in lengths] for key in taps
    }
    for key, samples in items.items():
        for i, x in enumerate(samples):
            core.play(key, x, tag=(key, i))
    assert core.is_playing("u") and core.is_playing("a")
    drive(core, 0, 10, *taps.values())
    for key, codec in (("u", g711.Codec.PCMU), ("a", g711.Codec.PCMA)):
        audio = taps[key].audio(codec)
        assert audio.size == 10 * SAMPLES_PER_TICK
        expected = np.concatenate([*items[key], np.zeros(1600 - sum(lengths), np.int16)])
        np.testing.assert_array_equal(audio, through(codec, expected))
        assert [(k, t, c) for k, t, c in plays.log if k == key] == [
            (key, (key, i), True) for i in range(len(lengths))
        ]
        assert not core.is_playing(key)


def test_completion_is_reported_from_the_tick_that_sends_the_last_sample() -> None:
    tap = Tap()
    plays = Plays(tap)
    core = Recorder().core(on_play_done=plays)
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    for tag, n in (("A", 160), ("B", 321), ("C", 159), ("D", 0), ("E", 480)):
        core.play("a", np.full(n, 1000, np.int16), tag=tag)
    drive(core, 0, 9, tap)
    # A fills tick 0; B ends one sample into tick 3, C fills the rest of it and the
    # empty D is reached there too; E fills ticks 4-6 exactly.
    assert plays.log == [("a", t, True) for t in "ABCDE"]
    assert plays.ticks == [0, 3, 3, 3, 6]
    # reported after the tick's packet went out
    assert plays.sent_before == [1, 4, 4, 4, 7]
    audio = tap.audio()
    assert np.all(audio[: 7 * 160] == through_ulaw(np.array([1000]))[0])
    assert np.all(audio[7 * 160 :] == 0)


def test_a_failing_play_done_callback_is_logged_and_the_tick_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Hashable] = []

    def callback(key: Hashable, tag: Hashable, completed: bool) -> None:
        seen.append(tag)
        raise RuntimeError("flow broke")

    tap = Tap()
    core = Recorder().core(on_play_done=callback)
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    core.play("a", np.full(100, 9, np.int16), tag="one")
    core.play("a", np.full(100, 9, np.int16), tag="two")
    with caplog.at_level("ERROR", logger="hotline.media"):
        drive(core, 0, 3, tap)
    assert seen == ["one", "two"] and len(tap.packets) == 3
    assert "play-done callback failed for 'a' (tag 'one')" in caplog.text


def test_stop_playback_clears_the_queue_at_once_and_reports_each_item_not_completed() -> None:
    tap = Tap()
    plays = Plays(tap)
    core = Recorder().core(on_play_done=plays)
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    core.play("a", np.full(1000, 3000, np.int16), tag="welcome")
    core.play("a", np.full(500, 3000, np.int16), tag="menu")
    drive(core, 0, 2, tap)
    core.stop_playback("a")
    assert plays.log == [("a", "welcome", False), ("a", "menu", False)]
    assert not core.is_playing("a")
    drive(core, 2, 4, tap)
    assert all(p[12:] == b"\xff" * 160 for p in tap.in_tick(2) + tap.in_tick(3))
    core.stop_playback("a")  # nothing queued: nothing reported
    assert len(plays.log) == 2
    core.play("a", np.full(160, 3000, np.int16), tag="again")
    drive(core, 4, 5, tap)
    assert plays.log[-1] == ("a", "again", True) and plays.ticks[-1] == 4


def test_a_looping_item_plays_until_stopped_and_nothing_queues_behind_it() -> None:
    plays = Plays()
    core = Recorder().core(on_play_done=plays)
    taps = {"short": Tap(), "long": Tap()}
    core.add_leg("short", 20000, media(), 0.0, sendto=taps["short"])
    core.add_leg("long", 20002, media(port=7002), 0.0, sendto=taps["long"])
    short = (np.arange(70) * 300 - 10000).astype(np.int16)  # shorter than a tick
    long = (np.arange(1000) * 37 - 18000).astype(np.int16)
    core.play("short", short, tag="s", loop=True)
    core.play("long", np.full(30, 500, np.int16), tag="intro")
    core.play("long", long, tag="music", loop=True)
    with pytest.raises(ValueError, match="'long' is playing a looping item \\(tag 'music'\\)"):
        core.play("long", long, tag="late")
    with pytest.raises(ValueError, match="a looping item needs at least one sample"):
        core.play("short", np.zeros(0, np.int16), tag="x", loop=True)
    drive(core, 0, 40, *taps.values())
    np.testing.assert_array_equal(taps["short"].audio(), through_ulaw(np.resize(short, 6400)))
    expected = np.concatenate([np.full(30, 500, np.int16), np.resize(long, 6370)])
    np.testing.assert_array_equal(taps["long"].audio(), through_ulaw(expected))
    assert plays.log == [("long", "intro", True)]
    core.stop_playback("long")
    assert plays.log[-1] == ("long", "music", False)
    core.remove_leg("short")  # removal reports nothing
    assert len(plays.log) == 2


def test_ringback_cadence_rendered_once_loops_seamlessly() -> None:
    tap = Tap()
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    cadence = tones.UK_RINGBACK
    period = cadence.render(0, cadence.period_samples)  # 3 s: 150 ticks
    core.play("a", period, tag="ringback", loop=True)
    drive(core, 0, 170, tap)
    np.testing.assert_array_equal(tap.audio(), through_ulaw(cadence.render(0, 170 * 160)))


def test_the_play_queue_waits_while_the_leg_cannot_send() -> None:
    tap = Tap()
    plays = Plays(tap)
    core = Recorder().core(on_play_done=plays)
    m = media()
    held = NegotiatedMedia(
        m.remote_address,
        m.remote_port,
        m.remote_rtcp_address,
        m.remote_rtcp_port,
        m.codec,
        m.payload_type,
        m.telephone_event,
        20,
        Direction.RECVONLY,
        m.receive_codecs,
        m.receive_telephone_event,
    )
    leg = core.add_leg("a", 20000, m, 0.0)  # its socket is not open yet
    prompt = (np.arange(400) * 100 - 20000).astype(np.int16)
    core.play("a", prompt, tag="p")
    drive(core, 0, 2, tap)
    leg.sendto = tap
    drive(core, 2, 3, tap)
    core.update("a", held, 0.06)  # the peer put us on hold
    drive(core, 3, 6, tap)
    assert core.is_playing("a") and plays.log == []
    core.update("a", m, 0.12)
    drive(core, 6, 9, tap)
    assert [n for n, _ in tap.packets] == [2, 6, 7, 8]
    np.testing.assert_array_equal(tap.audio()[:400], through_ulaw(prompt))
    assert plays.log == [("a", "p", True)] and plays.ticks == [7]


def test_unknown_legs_and_bad_audio_are_refused() -> None:
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0)
    x = np.zeros(10, np.int16)
    for call in (
        lambda: core.play("b", x, tag=1),
        lambda: core.stop_playback("b"),
        lambda: core.is_playing("b"),
        lambda: core.send_digits("b", "1"),
        lambda: core.start_recording("b"),
        lambda: core.stop_recording("b"),
    ):
        with pytest.raises(KeyError, match="no media leg 'b'"):
            call()
    with pytest.raises(ValueError, match="played audio must be 1-D int16 samples, got float64"):
        core.play("a", np.zeros(10), tag=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"got int16 \(2, 5\)"):
        core.play("a", np.zeros((2, 5), np.int16), tag=1)
    assert not core.is_playing("a")


HOLD_MUSIC = Path(__file__).resolve().parents[3] / "audio" / "hold_music.wav"
HOLD_TOOL = Path(__file__).resolve().parents[3] / "tools" / "make_hold_music.py"


def test_hold_music_is_24_seconds_of_quiet_8khz_audio_the_tool_makes() -> None:
    music = load_wav(HOLD_MUSIC)
    assert 20 * 8000 <= music.size <= 30 * 8000
    assert tones.level_dbm0(music) == pytest.approx(-21.0, abs=0.5)
    assert int(np.abs(music).max()) <= 16384
    spec = importlib.util.spec_from_file_location("make_hold_music", HOLD_TOOL)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rendered = tool.render()
    assert rendered.shape == music.shape
    assert int(np.abs(rendered.astype(np.int32) - music).max()) <= 1  # libm may differ by 1
    with wave.open(str(HOLD_MUSIC)) as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getsampwidth()) == (1, 8000, 2)


def test_hold_music_loops_through_play_and_sets_off_no_dtmf_detector() -> None:
    music = load_wav(HOLD_MUSIC)
    ticks = music.size // 160 + 30  # past the loop point
    tap = Tap()
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    core.play("a", music, tag="hold", loop=True)
    drive(core, 0, ticks, tap)
    heard = tap.audio()
    np.testing.assert_array_equal(heard, through_ulaw(np.resize(music, ticks * 160)))
    bank = DtmfDetectorBank()
    slot = bank.add_leg()
    events = []
    for n in range(ticks):
        events += bank.process(heard[n * 160 : (n + 1) * 160].reshape(1, 160), [slot], n)
    assert events == []


# -- sending key presses --------------------------------------------------------------------


def _press_packets(tap: Tap) -> dict[int, list[tuple[int, int, bytes, bool]]]:
    """Event packets by event timestamp: (tick, sequence number, payload, marker)."""
    out: dict[int, list[tuple[int, int, bytes, bool]]] = {}
    for tick, packet in tap.packets:
        pt, marker, seq, ts, _ssrc = header(packet)
        if pt == 101:
            out.setdefault(ts, []).append((tick, seq, packet[12:], marker))
    return out


def test_digits_go_out_as_rfc4733_events_that_parse_back_exactly_once() -> None:
    tap = Tap()
    core = Recorder().core(rng=random.Random(11))
    leg = core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    ts0 = leg.sender.timestamp
    prompt = (np.arange(20 * 160) % 400 * 40 - 8000).astype(np.int16)
    core.play("a", prompt, tag="prompt")
    drive(core, 0, 3, tap)
    core.send_digits("a", "1#9", volume=12)
    drive(core, 3, 60, tap)

    headers = [header(p) for _, p in tap.packets]
    assert {h[4] for h in headers} == {leg.sender.ssrc}  # one SSRC
    seqs = [h[2] for h in headers]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))  # one sequence space
    for tick in range(60):
        kinds = {header(p)[0] for p in tap.in_tick(tick)}
        assert kinds in ({0}, {101}), (tick, kinds)  # events replace audio in their ticks
        for p in tap.in_tick(tick):
            if header(p)[0] == 0:
                assert header(p)[3] == (ts0 + 160 * tick) % 2**32  # the tick schedule

    presses = _press_packets(tap)
    assert len(presses) == 3
    receiver = DtmfEventReceiver()
    events: list[DtmfEvent] = []
    for tick, packet in tap.packets:
        pt, _marker, _seq, ts, ssrc = header(packet)
        if pt == 101:
            events += receiver.receive(ssrc, ts, packet[12:], tick * TICK_SECONDS)
    started = [e for e in events if isinstance(e, DigitStarted)]
    ended = [e for e in events if isinstance(e, DigitEnded)]
    assert [e.digit for e in started] == ["1", "#", "9"]
    assert [e.digit for e in ended] == ["1", "#", "9"]
    assert all(e.reason is EndReason.END_PACKET and e.duration_samples == 800 for e in ended)
    assert all(e.volume == 12 for e in started)
    assert receiver.duplicates == 6  # the two repeats of each end packet

    starts = sorted(presses)
    for ts in starts:
        packets = presses[ts]
        first_tick = packets[0][0]
        assert ts == (ts0 + 160 * first_tick) % 2**32  # stamped with the press's start
        assert [m for *_, m in packets] == [True] + [False] * 6  # marker on the first only
        blocks = [parse_events(p)[0] for _, _, p, _ in packets]
        assert [b.duration for b in blocks] == [160, 320, 480, 640, 800, 800, 800]
        assert [b.end for b in blocks] == [False] * 4 + [True] * 3  # the end sent 3 times
        assert [t for t, *_ in packets] == list(range(first_tick, first_tick + 7))
    assert [(b - a) % 2**32 for a, b in itertools.pairwise(starts)] == [1440, 1440]
    # 800 samples of key, a 70 ms gap rounded up to the tick: 1440 − 800 = 640 ≥ 560

    # the prompt paused for the presses and their gaps, then went on where it stopped
    audio = tap.audio()
    spoken = audio[audio != 0]
    np.testing.assert_array_equal(spoken, through_ulaw(prompt)[through_ulaw(prompt) != 0])
    assert not core.is_playing("a")


def test_without_a_telephone_event_type_presses_are_in_band_tones_the_detector_hears() -> None:
    tap = Tap()
    core = Recorder().core()
    core.add_leg("a", 20000, media(te=None), 0.0, sendto=tap)
    core.start_recording("a", inbound=False)
    core.send_digits("a", "1559#")
    drive(core, 0, 70, tap)
    assert {header(p)[0] for _, p in tap.packets} == {0}  # audio only
    heard = tap.audio()
    bank = DtmfDetectorBank()
    slot = bank.add_leg()
    found: list[InbandDigitStarted] = []
    for n in range(70):
        block = heard[n * 160 : (n + 1) * 160].reshape(1, 160)
        found += [e for e in bank.process(block, [slot], n) if isinstance(e, InbandDigitStarted)]
    assert "".join(e.digit for e in found) == "1559#"
    # each tone starts on a tick boundary, 1440 samples apart (800 tone + 640 gap)
    assert [e.start_sample for e in found] == pytest.approx([0, 1440, 2880, 4320, 5760], abs=50)
    assert tones.level_dbm0(heard[:800]) == pytest.approx(-7.9, abs=0.3)  # −10 and −12 dBm0
    # what was recorded is exactly what was encoded and sent
    recording = core.stop_recording("a")
    assert recording is not None and recording.channels == (Channel.OUTBOUND,)
    np.testing.assert_array_equal(through_ulaw(recording.samples[:, 0]), heard)


def test_each_press_uses_what_the_media_offers_when_it_starts() -> None:
    tap = Tap()
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    core.send_digits("a", "37", duration=0.06, gap=0.04)
    drive(core, 0, 2, tap)
    core.update("a", media(te=None), 0.04)  # a re-INVITE drops telephone-event
    drive(core, 2, 20, tap)
    presses = _press_packets(tap)
    assert len(presses) == 1
    (packets,) = presses.values()
    assert {parse_events(p)[0].code for _, _, p, _ in packets} == {3}
    assert [parse_events(p)[0].duration for _, _, p, _ in packets] == [160, 320, 480, 480, 480]
    heard = tap.audio()
    tone_at = int(np.flatnonzero(heard)[0]) // 160 * 160  # starts on a tick, at sin(0) = 0
    assert np.all(heard[:tone_at] == 0)
    low, high = tones.dtmf_frequencies("7")
    expected = tones.dual_tone(low, high, 480, -10.0, -12.0)
    np.testing.assert_array_equal(heard[tone_at : tone_at + 480], through_ulaw(expected))


def test_send_digits_refuses_what_it_cannot_send() -> None:
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0)
    with pytest.raises(ValueError, match="not a DTMF key: 'x' in '12x'"):
        core.send_digits("a", "12x")
    with pytest.raises(ValueError, match="not a DTMF key: '!'"):
        core.send_digits("a", "!")
    with pytest.raises(ValueError, match="key press duration must be a positive"):
        core.send_digits("a", "1", duration=0)
    with pytest.raises(ValueError, match="shorter than one sample"):
        core.send_digits("a", "1", duration=1e-5)
    with pytest.raises(ValueError, match="gap between key presses must be >= 0"):
        core.send_digits("a", "1", gap=-0.1)
    with pytest.raises(ValueError, match=r"volume must be an integer -dBm0 level 0\.\.63, got 64"):
        core.send_digits("a", "1", volume=64)
    assert core.legs["a"].keypad is None  # nothing was queued by a refused call
    core.send_digits("a", "")
    assert core.legs["a"].keypad is None
    core.send_digits("a", "d")
    keypad = core.legs["a"].keypad
    assert keypad is not None and [p.digit for p in keypad.pending] == ["D"]


# -- recording ------------------------------------------------------------------------------


def test_recording_keeps_both_directions_aligned_with_silence_where_nothing_arrived() -> None:
    tap = Tap()
    core = Recorder().core(prefill_samples=160)
    leg = core.add_leg("a", 20000, media(), 0.0, sendto=tap)
    caller = tones.multi_tone([(300.0, -12.0)], 12 * 160)
    codes = g711.ulaw_encode(caller).tobytes()
    prompt = (np.arange(5 * 160 + 40) % 200 * 100 - 10000).astype(np.int16)
    core.play("a", prompt, tag="p")
    core.start_recording("a")
    assert core.is_recording("a")
    rows = []
    for n in range(12):
        if not 5 <= n <= 7:  # three packets lost in a row
            core.receive_rtp(
                leg, rtp(0, n, 160 * n, codes[160 * n : 160 * (n + 1)]), PEER, n * 0.02
            )
        tap.tick = n
        report = core.tick(n, n * TICK_SECONDS + 0.001)
        got = dict(zip(report.inbound_keys, report.inbound, strict=True))
        rows.append(got.get("a", np.zeros(160, np.int16)))
    recording = core.stop_recording("a")
    assert recording is not None and not core.is_recording("a")
    assert recording.channels == (Channel.INBOUND, Channel.OUTBOUND)
    assert recording.frames == 12 * 160 and recording.sample_rate == 8000
    assert not recording.truncated
    inbound = recording.channel(Channel.INBOUND)
    np.testing.assert_array_equal(inbound, np.concatenate(rows))
    assert np.all(inbound[5 * 160 : 8 * 160] == 0)  # the lost packets: silence, in place
    np.testing.assert_array_equal(inbound[8 * 160 :], through_ulaw(caller[8 * 160 :]))
    outbound = recording.channel(Channel.OUTBOUND)
    np.testing.assert_array_equal(outbound[: prompt.size], prompt)
    assert np.all(outbound[prompt.size :] == 0)
    assert core.stop_recording("a") is None
    core.tick(12, 0.24)  # no longer captured
    assert leg.capture is None


def test_recording_stops_capturing_at_its_limit_and_pads_skipped_ticks() -> None:
    core = Recorder().core(max_recording_seconds=0.1)
    leg = core.add_leg("a", 20000, media(), 0.0, sendto=Tap())
    core.play("a", np.full(4000, 700, np.int16), tag="p")
    core.start_recording("a")
    with pytest.raises(ValueError, match="media leg 'a' is already recording"):
        core.start_recording("a")
    core.tick(0, 0.0)
    core.tick(3, 0.06, skipped=2)  # two ticks skipped: recorded as silence
    for n in range(4, 10):
        core.tick(n, n * TICK_SECONDS)
    recording = core.stop_recording("a")
    assert recording is not None
    assert recording.frames == 800 and recording.truncated
    outbound = recording.channel(Channel.OUTBOUND)
    assert np.all(outbound[:160] == 700) and np.all(outbound[160:480] == 0)
    assert np.all(outbound[480:] == 700)
    assert leg not in core._capturing
    with pytest.raises(ValueError, match="at least one direction"):
        core.start_recording("a", inbound=False, outbound=False)
    with pytest.raises(ValueError, match="length limit must be positive seconds, got 0"):
        core.start_recording("a", max_seconds=0)
    with pytest.raises(ValueError, match="length limit must be positive seconds"):
        Recorder().core(max_recording_seconds=float("nan"))


def test_a_removed_leg_keeps_its_recording_for_the_engine() -> None:
    core = Recorder().core()
    core.add_leg("a", 20000, media(), 0.0, sendto=Tap())
    core.start_recording("a")
    drive(core, 0, 5)
    leg = core.remove_leg("a")
    assert leg is not None
    recording = leg.take_recording()
    assert recording is not None and recording.frames == 5 * 160
    assert leg.take_recording() is None


def test_media_loop_writes_the_recording_as_a_wav_off_the_event_loop(tmp_path: Path) -> None:
    async def scenario() -> tuple[Recording | None, Recording | None]:
        loop = asyncio.get_running_loop()
        ml = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None, on_inactive=lambda k: None)
        try:
            ml.core.add_leg("a", 20000, media(), loop.time(), sendto=Tap())
            ml.play("a", np.full(800, 1234, np.int16), tag="p")
            ml.start_recording("a")
            drive(ml.core, 0, 10)
            written = await ml.stop_recording("a", tmp_path / "call.wav")
            nothing = await ml.stop_recording("a", tmp_path / "none.wav")
            with pytest.raises(KeyError):
                ml.stop_recording("b", tmp_path / "b.wav")
            return written, nothing
        finally:
            ml.close()

    written, nothing = asyncio.run(scenario())
    assert nothing is None and not (tmp_path / "none.wav").exists()
    assert written is not None
    with wave.open(str(tmp_path / "call.wav")) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").reshape(-1, 2)
    np.testing.assert_array_equal(frames, written.samples)
    assert np.all(frames[:800, 1] == 1234) and np.all(frames[:, 0] == 0)
    assert [p.name for p in tmp_path.iterdir()] == ["call.wav"]  # no temporary left behind
    assert (tmp_path / "call.wav").stat().st_mode & 0o777 == 0o600  # personal data


def test_histograms_add_up_and_refuse_other_bounds() -> None:
    from hotline.engine.media_loop import Histogram

    a, b = Histogram((0.01, 0.02)), Histogram((0.01, 0.02))
    for value in (0.005, 0.015, 0.5):
        a.observe(value)
    b.observe(0.015)
    a.add(b)
    assert (a.counts, a.count, round(a.sum, 6)) == ([1, 2], 4, 0.535)
    assert a.cumulative()[-1] == (float("inf"), 4)  # the 0.5 is above every bound
    with pytest.raises(ValueError, match="bounds"):
        a.add(Histogram((0.01,)))


def test_one_overload_rule_for_every_tick() -> None:
    from hotline.engine.media_loop import OVERLOAD_HOLD, overloaded

    assert not overloaded(0.79, -float("inf"), 100.0)
    assert overloaded(0.81, -float("inf"), 100.0)
    assert overloaded(0.1, 100.0 - OVERLOAD_HOLD + 0.1, 100.0)  # skipped a moment ago
    assert not overloaded(0.1, 100.0 - OVERLOAD_HOLD - 0.1, 100.0)
