"""The adaptive jitter buffer on scripted arrival patterns, with a fake clock."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

from hotline.media import g711
from hotline.rtp.jitter import (
    DEFAULT_QUIET_LEVEL,
    Frame,
    FrameOutcome,
    JitterBuffer,
    PacketOutcome,
    quiet_code_table,
)

TICK = 0.02
RATE = 8000
PLAYED = FrameOutcome.PLAYED
CONCEALED = FrameOutcome.CONCEALED
EXPANDED = FrameOutcome.EXPANDED
BUFFERING = FrameOutcome.BUFFERING


def sample(position: int, salt: int = 0) -> int:
    """The code the test sender puts at timeline position `position`."""
    return (position * 7 + salt * 31 + 3) % 251


def content(ts: int, n: int, salt: int = 0) -> bytes:
    return bytes(sample(ts + k, salt) for k in range(n))


@dataclass
class Packet:
    seq: int
    ts: int
    payload: bytes
    arrival: float
    ssrc: int = 0xA1


def stream(
    count: int,
    *,
    samples: int = 160,
    seq0: int = 100,
    ts0: int = 8000,
    t0: float = 0.0,
    transit: float = 0.005,
    ssrc: int = 0xA1,
    salt: int = 0,
) -> list[Packet]:
    """`count` packets sent in real time from `t0`, each arriving `transit` later."""
    return [
        Packet(
            seq0 + i,
            (ts0 + i * samples) & 0xFFFFFFFF,
            content(ts0 + i * samples, samples, salt),
            t0 + i * samples / RATE + transit,
            ssrc,
        )
        for i in range(count)
    ]


@dataclass
class Run:
    frames: list[Frame]
    outcomes: list[PacketOutcome]

    def kinds(self) -> list[FrameOutcome]:
        return [f.outcome for f in self.frames]

    def played_positions(self) -> list[int]:
        return [f.position for f in self.frames if f.outcome in (PLAYED, CONCEALED)]


def run(
    jb: JitterBuffer,
    packets: Iterable[Packet],
    ticks: int,
    *,
    tick0: float = 0.0,
    with_ssrc: bool = False,
) -> Run:
    """Deliver packets in arrival order and tick every 20 ms: at each tick, the
    packets that arrived by then are put first, then one frame is taken."""
    queue = sorted(packets, key=lambda p: p.arrival)
    frames: list[Frame] = []
    outcomes: list[PacketOutcome] = []
    i = 0
    for k in range(ticks):
        now = tick0 + k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            outcome = jb.put(p.seq, p.ts, p.payload, p.arrival, ssrc=p.ssrc if with_ssrc else None)
            outcomes.append(outcome)
            i += 1
        frames.append(jb.get(now))
    return Run(frames, outcomes)


def assert_content(frames: Sequence[Frame], salt: int = 0) -> None:
    """Every subframe marked present holds what the sender put at its positions."""
    for f in frames:
        if f.outcome not in (PLAYED, CONCEALED):
            continue
        for half in range(2):
            if f.present >> half & 1:
                start = f.position + 80 * half
                positions = range(start, start + 80)
                expected = bytes(sample(p, salt) for p in positions)
                assert f.payload[80 * half : 80 * half + 80] == expected, (f.position, half)


def assert_counters(jb: JitterBuffer, puts: int | None = None) -> None:
    s = jb.stats()
    assert s.frames == s.played + s.concealed + s.expanded + s.buffering
    if puts is not None:  # every packet got exactly one outcome
        assert s.packets == s.buffered + s.late + s.duplicates + s.overflows + s.resyncs == puts


# -- start, steady play --------------------------------------------------------------


def test_nothing_received_gives_buffering_silence() -> None:
    jb = JitterBuffer(fill=0xD5)
    frame = jb.get(0.0)
    assert frame.outcome is BUFFERING
    assert frame.payload == b"\xd5" * 160
    assert frame.present == 0
    assert jb.delay(0.0) is None
    assert_counters(jb)


def test_steady_stream_waits_for_the_initial_delay_then_plays_every_sample_once() -> None:
    jb = JitterBuffer(initial_delay=0.06, min_delay=0.06)
    packets = stream(100)
    result = run(jb, packets, 110)
    kinds = result.kinds()
    # The first packet arrives 5 ms after it was sent; playing starts once it has
    # waited 60 ms, i.e. at the tick at 80 ms (tick 4): ticks 0..3 buffer.
    assert kinds[:4] == [BUFFERING] * 4
    assert kinds[4] is PLAYED
    assert result.outcomes == [PacketOutcome.BUFFERED] * 100
    positions = result.played_positions()
    assert positions == sorted(positions)
    assert all(b - a == 160 for a, b in itertools.pairwise(positions))
    assert_content(result.frames)
    assert jb.late == jb.duplicates == jb.concealed == 0
    assert_counters(jb, 100)


def test_by_default_it_starts_one_packet_deep_and_grows_to_what_the_network_needs() -> None:
    """The start-up delay is a guess made before anything is measured: one packet
    (20 ms). Every third packet then comes 25 ms late; the first of them costs at most
    itself, the target grows at once to cover them, and nothing later is lost."""
    jb = JitterBuffer()
    packets = stream(250)
    for p in packets[1::3]:
        p.arrival += 0.025
    result = run(jb, packets, 260)
    kinds = result.kinds()
    # The first packet arrives at 5 ms and has waited 20 ms by the tick at 40 ms.
    assert kinds[:2] == [BUFFERING] * 2
    assert kinds[2] is PLAYED
    assert jb.target_delay >= 0.025
    assert jb.late <= 1
    assert [o for o in result.outcomes[3:] if o is not PacketOutcome.BUFFERED] == []
    assert CONCEALED not in kinds[10:]
    assert_content(result.frames)
    assert_counters(jb, 250)


def test_the_delay_converges_down_to_what_the_network_needs() -> None:
    """No jitter at all: the 60 ms start-up delay shrinks (content not looked at, so
    any frame may go) to about the 10 ms floor, at the 20 ms/s shrink rate."""
    jb = JitterBuffer(initial_delay=0.06, min_delay=0.01, shrink_rate=0.02)
    result = run(jb, stream(300), 300)
    assert jb.target_delay == pytest.approx(0.01)
    delay = jb.delay(300 * TICK)  # of the next frame, were it played at the next tick
    assert delay is not None and 0.01 <= delay < 0.03
    assert jb.dropped_samples >= 160 * 2
    assert jb.late == 0 and jb.concealed == 0
    assert_content(result.frames)


# -- loss, reordering, duplicates, lateness ---------------------------------------------


def test_a_single_loss_is_concealed_and_the_stream_goes_on() -> None:
    jb = JitterBuffer(initial_delay=0.06, min_delay=0.06)
    packets = [p for p in stream(60) if p.seq != 130]
    result = run(jb, packets, 65)
    lost = 8000 + 30 * 160
    frames_at_loss = [f for f in result.frames if f.position == lost]
    assert [f.outcome for f in frames_at_loss] == [CONCEALED]
    assert frames_at_loss[0].present == 0
    # Everything else that was sent is played, in order, once.
    positions = result.played_positions()
    played = [p for p in positions if p != lost]
    assert played == [8000 + 160 * i for i in range(len(played) + 1) if 8000 + 160 * i != lost]
    assert jb.concealed == 1 and jb.concealed_samples == 160
    assert_content(result.frames)
    assert_counters(jb)


def test_a_loss_with_an_empty_buffer_is_ridden_over_not_stalled_on() -> None:
    """At a 10 ms delay the buffer is empty when the lost packet is due: it holds one
    tick (EXPANDED), then skips the missing frame when the next one is there."""
    jb = JitterBuffer(initial_delay=0.01, min_delay=0.01)
    packets = [p for p in stream(60) if p.seq != 130]
    result = run(jb, packets, 65)
    lost = 8000 + 30 * 160
    assert lost not in result.played_positions()
    positions = result.played_positions()
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    # Every packet that arrived and was due was played; the stream went on after the loss.
    assert [p for p in positions if p > lost][:5] == [lost + 160 * k for k in range(1, 6)]
    assert jb.expanded + jb.concealed >= 1
    assert jb.late == 0
    assert_content(result.frames)
    assert_counters(jb)


def test_reordered_packets_play_in_order() -> None:
    jb = JitterBuffer(initial_delay=0.06, min_delay=0.06)
    packets = stream(50)
    for i in range(10, 40, 4):  # every 4th packet comes 30 ms late, after the next one
        packets[i].arrival += 0.03
    result = run(jb, packets, 55)
    assert result.outcomes.count(PacketOutcome.BUFFERED) == 50
    positions = result.played_positions()
    assert positions == [8000 + 160 * i for i in range(len(positions))]
    assert len(positions) >= 45
    assert jb.concealed == 0 and jb.late == 0
    assert_content(result.frames)


def test_duplicates_are_reported_and_never_played_twice() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    packets = stream(40)
    copies = [Packet(p.seq, p.ts, p.payload, p.arrival + 0.003, p.ssrc) for p in packets[5:30:5]]
    late_copy = Packet(packets[2].seq, packets[2].ts, packets[2].payload, 0.5)  # long after
    result = run(jb, [*packets, *copies, late_copy], 45)
    assert result.outcomes.count(PacketOutcome.DUPLICATE) == len(copies) + 1
    assert jb.duplicates == len(copies) + 1
    positions = result.played_positions()
    assert len(positions) == len(set(positions))
    assert_content(result.frames)
    assert_counters(jb, len(result.outcomes))
    assert len(result.outcomes) == 40 + len(copies) + 1


def test_a_duplicate_with_another_sequence_number_is_caught_by_its_samples() -> None:
    jb = JitterBuffer()
    assert jb.put(1, 0, content(0, 160), 0.0) is PacketOutcome.BUFFERED
    assert jb.put(2, 160, content(160, 160), 0.02) is PacketOutcome.BUFFERED
    assert jb.put(7, 160, content(160, 160), 0.021) is PacketOutcome.DUPLICATE


def test_a_packet_behind_the_playout_point_is_late() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    packets = stream(40)
    straggler = packets[20]
    straggler.arrival += 0.3  # long after its frame was played
    result = run(jb, packets, 45)
    assert PacketOutcome.LATE in result.outcomes
    assert jb.late == 1 and jb.late_samples == 160
    assert straggler.ts in [f.position for f in result.frames if f.outcome is CONCEALED]
    assert_counters(jb, 40)


def test_a_partly_late_packet_keeps_its_samples_still_to_come() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04, quiet_codes=b"")  # nothing quiet
    assert jb.put(1, 0, content(0, 160), 0.0) is PacketOutcome.BUFFERED
    assert [jb.get(t).outcome for t in (0.0, 0.02)] == [BUFFERING, BUFFERING]
    first = jb.get(0.04)  # waited 40 ms: plays
    assert first.outcome is PLAYED and first.position == 0
    assert jb.put(3, 400, content(400, 160), 0.05) is PacketOutcome.BUFFERED
    gap = jb.get(0.06)  # 160..319: nothing of it arrived, and no delay to spare
    assert gap.outcome is CONCEALED and gap.present == 0 and gap.position == 160
    # Packet 2 carries 240 samples, 160..399: 160 of them are behind the playout point.
    assert jb.put(2, 160, content(160, 240), 0.065) is PacketOutcome.BUFFERED
    assert jb.late_samples == 160 and jb.late == 0
    frame = jb.get(0.08)
    assert frame.outcome is PLAYED and frame.position == 320
    assert frame.payload == content(320, 160)


# -- packet sizes against the tick ---------------------------------------------------


def test_30ms_packets_play_sample_exact_against_the_20ms_tick() -> None:
    jb = JitterBuffer(initial_delay=0.06, min_delay=0.02)
    packets = stream(100, samples=240)
    result = run(jb, packets, 160)
    positions = result.played_positions()
    assert positions[:10] == [8000 + 160 * i for i in range(10)]
    assert all(b - a in (160, 320) for a, b in itertools.pairwise(positions))
    assert jb.concealed == 0 and jb.late == 0
    # A 30 ms packet can start inside a frame: the target keeps 10 ms for that.
    assert jb.target_delay >= 0.02 + 0.01 - 1e-9
    assert_content(result.frames)


def test_10ms_packets_fill_a_frame_from_two_packets() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    result = run(jb, stream(200, samples=80), 100)
    positions = result.played_positions()
    assert len(positions) > 90
    assert positions == [8000 + 160 * i for i in range(len(positions))]
    assert all(f.present == 0b11 for f in result.frames if f.outcome is PLAYED)
    assert_content(result.frames)


def test_a_lost_30ms_packet_leaves_one_half_frame_present() -> None:
    jb = JitterBuffer(initial_delay=0.08, min_delay=0.08)
    packets = [p for p in stream(40, samples=240) if p.seq != 111]  # 8000+2640 .. +2880
    result = run(jb, packets, 60)
    lost = range(8000 + 11 * 240, 8000 + 12 * 240)
    concealed = [f for f in result.frames if f.outcome is CONCEALED]
    assert [(f.position, f.present) for f in concealed] == [(10560, 0b01), (10720, 0b00)]
    for f in concealed:  # the present halves hold real audio, the others lie in the loss
        for half in range(2):
            start = f.position + 80 * half
            assert (start in lost) != bool(f.present >> half & 1)
    assert jb.concealed_samples == 240
    assert_content(result.frames)


# -- resynchronisation ----------------------------------------------------------------


def test_a_new_ssrc_resyncs_and_the_new_stream_plays() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    first = stream(30, ssrc=1)
    second = stream(30, ssrc=2, seq0=9000, ts0=500_000, t0=0.6, salt=1)
    result = run(jb, [*first, *second], 70, with_ssrc=True)
    assert result.outcomes.count(PacketOutcome.RESYNC) == 1
    assert jb.resyncs == 1 and jb.epoch == 1
    old = [f for f in result.frames if f.epoch == 0 and f.outcome is PLAYED]
    new = [f for f in result.frames if f.epoch == 1 and f.outcome is PLAYED]
    assert old and new
    assert_content(old)
    assert_content(new, salt=1)
    assert new[0].position == 500_000
    assert_counters(jb, 60)


def test_the_callers_resync_flag_starts_over() -> None:
    jb = JitterBuffer()
    jb.put(1, 0, content(0, 160), 0.0)
    assert jb.put(2, 160, content(160, 160), 0.02, resync=True) is PacketOutcome.RESYNC
    assert jb.epoch == 1
    assert jb.stats().discarded_samples == 160


@pytest.mark.parametrize("jump", [80_000, -80_000, 4_000_000])
def test_a_timestamp_jump_on_the_same_source_resyncs(jump: int) -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    before = stream(30, ts0=1_000_000)
    after = stream(30, seq0=130, ts0=1_000_000 + 30 * 160 + jump, t0=0.6, salt=0)
    result = run(jb, [*before, *after], 70)
    assert result.outcomes.count(PacketOutcome.RESYNC) == 1
    new = [f for f in result.frames if f.epoch == 1 and f.outcome is PLAYED]
    assert new and new[0].position == 1_000_000 + 30 * 160 + jump
    assert_content([f for f in result.frames if f.outcome is PLAYED])


def test_silence_suppression_skips_the_gap_without_a_resync() -> None:
    """A talk spurt, 3 s of nothing (timestamps keep counting), another talk spurt."""
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04, idle=0.2)
    first = stream(25)
    second = stream(25, seq0=125, ts0=8000 + (25 + 150) * 160, t0=(25 + 150) * TICK)
    result = run(jb, [*first, *second], 230)
    assert jb.resyncs == 0
    kinds = Counter(result.kinds()[:175])
    # Running dry is ridden over for `idle` (10 ticks), then it is a pause, not a loss.
    assert kinds[EXPANDED] == 9
    assert kinds[BUFFERING] > 130
    assert jb.concealed == 0
    assert jb.skipped_samples == 150 * 160
    assert_content(result.frames)
    positions = result.played_positions()
    assert positions == [8000 + 160 * i for i in range(25)] + [
        8000 + 160 * i for i in range(175, 200)
    ]


def test_a_pause_longer_than_the_buffer_moves_the_playout_point_on_arrival() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04, capacity=1.0)
    first = stream(20)
    gap = 10 * RATE
    second = stream(20, seq0=120, ts0=8000 + 20 * 160 + gap, t0=20 * TICK + 10.0)
    result = run(jb, [*first, *second], 20 + 500 + 30)
    assert jb.resyncs == 0 and jb.overflows == 0
    assert jb.skipped_samples == gap
    played = [f for f in result.frames if f.outcome is PLAYED]
    assert played[-1].position >= 8000 + 20 * 160 + gap
    assert_content(played)


def test_timestamps_wrap_at_2_pow_32_without_a_break() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    ts0 = (1 << 32) - 10 * 160
    result = run(jb, stream(40, ts0=ts0), 45)
    positions = result.played_positions()
    assert positions == [ts0 + 160 * i for i in range(len(positions))]
    assert positions[-1] > 1 << 32  # extended past the wrap
    assert jb.resyncs == 0
    assert_content(result.frames)


def test_a_restarted_sequence_count_with_steady_timestamps_is_played() -> None:
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    packets = stream(40, seq0=50_000)
    for p in packets[20:]:
        p.seq -= 49_990  # the receiver's extended count restarted
    result = run(jb, packets, 45)
    assert jb.duplicates == 0 and jb.late == 0 and jb.resyncs == 0
    assert result.outcomes.count(PacketOutcome.BUFFERED) == 40
    assert_content(result.frames)


# -- adaptation -------------------------------------------------------------------------


def jittery(
    count: int,
    rng: random.Random,
    spread: float,
    *,
    t0: float = 0.0,
    seq0: int = 100,
    ts0: int = 8000,
) -> list[Packet]:
    packets = stream(count, t0=t0, seq0=seq0, ts0=ts0)
    for p in packets:
        p.arrival += rng.uniform(0.0, spread)
    return packets


def test_with_recent_set_the_target_grows_fast_on_jitter_and_shrinks_slowly() -> None:
    rng = random.Random(7)
    jb = JitterBuffer(
        initial_delay=0.02, min_delay=0.01, shrink_rate=0.02, window=2.0, recent=25, quantile=0.95
    )
    calm = jittery(250, rng, 0.002)
    rough = jittery(100, rng, 0.12, t0=5.0, seq0=350, ts0=8000 + 250 * 160)
    calm_again = jittery(300, rng, 0.002, t0=7.0, seq0=450, ts0=8000 + 350 * 160)
    targets: list[float] = []
    queue = sorted([*calm, *rough, *calm_again], key=lambda p: p.arrival)
    i = 0
    for k in range(650):
        now = k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            jb.put(p.seq, p.ts, p.payload, p.arrival)
            i += 1
        jb.get(now)
        targets.append(jb.target_delay)
    assert targets[249] < 0.02
    # Within half a second of rough network the target covers most of its jitter.
    assert max(targets[250:275]) > 0.08
    peak = max(targets[250:360])
    assert peak <= 0.5
    # Calm again from 7.1 s: the window forgets the rough spell after 2 s, then the
    # target falls by at most 20 ms per second (it is updated every 25 ticks or sooner).
    for span in (1, 50):
        for a, b in zip(targets[350:], targets[350 + span :], strict=False):
            assert b >= a - 0.02 * (span + 25) * TICK - 1e-9
    assert targets[-1] < peak - 0.05
    assert_counters(jb)


def loud_or_quiet(ts: int, n: int, quiet_frames: set[int], frame0: int = 8000) -> bytes:
    """µ-law codes: silence for frames listed in `quiet_frames`, a loud square wave else."""
    out = bytearray()
    for k in range(n):
        frame = (ts + k - frame0) // 160
        out.append(0xFF if frame in quiet_frames else (0x80 if (ts + k) % 40 < 20 else 0x00))
    return bytes(out)


def test_the_delay_is_shrunk_by_dropping_quiet_frames_only() -> None:
    quiet = quiet_code_table(g711.ULAW_DECODE)
    quiet_frames = {30, 31, 60, 61, 62, 90}
    jb = JitterBuffer(
        initial_delay=0.12, min_delay=0.01, quiet_codes=quiet, shrink_rate=1.0, force_excess=0.5
    )
    packets = stream(140)
    for p in packets:
        p.payload = loud_or_quiet(p.ts, 160, quiet_frames)
    result = run(jb, packets, 140)
    dropped = [f for f in result.frames if f.dropped]
    assert dropped, "the excess delay should have been shed"
    for f in dropped:
        for start in range(f.position - f.dropped, f.position, 160):
            assert (start - 8000) // 160 in quiet_frames
    assert jb.dropped_samples == sum(f.dropped for f in dropped)
    # A run of quiet frames goes in one tick, as far as the excess allows.
    assert max(f.dropped for f in dropped) >= 2 * 160
    assert jb.concealed == 0 and jb.late == 0


def test_a_frame_that_is_not_quiet_is_dropped_only_past_the_force_threshold() -> None:
    quiet = quiet_code_table(g711.ULAW_DECODE)
    jb = JitterBuffer(
        initial_delay=0.4, min_delay=0.01, quiet_codes=quiet, shrink_rate=10.0, force_excess=0.2
    )
    packets = stream(100)
    for p in packets:
        p.payload = loud_or_quiet(p.ts, 160, set())
    run(jb, packets, 100)
    delay = jb.delay(100 * TICK)
    # All loud: frames go only while the excess is 200 ms or more, so it ends just below.
    assert delay is not None and 0.18 - 1e-9 <= delay - jb.target_delay < 0.2
    assert jb.dropped_samples > 0


def test_a_delay_spike_is_ridden_out_without_late_loss() -> None:
    """A 200 ms stall: every packet in it arrives at once when it ends. The buffer
    waits (EXPANDED) instead of declaring them lost, then plays all of them."""
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    packets = stream(150)
    stall_end = 1.5 + 0.2
    for p in packets:
        if 1.5 <= p.arrival < stall_end:
            p.arrival = stall_end
    result = run(jb, packets, 200)
    assert jb.late == 0
    assert jb.expanded >= 9
    assert jb.concealed == 0
    # Every sample is played, except frames dropped afterwards to bring the delay down.
    positions = result.played_positions()
    dropped = [
        start
        for f in result.frames
        if f.dropped
        for start in range(f.position - f.dropped, f.position, 160)
    ]
    assert dropped
    assert sorted(positions + dropped) == [8000 + 160 * i for i in range(150)]
    assert_content(result.frames)


def test_the_buffer_grows_by_inserting_before_a_quiet_frame() -> None:
    """The network gets 15 ms slower for good (no packet comes late): once the window
    has forgotten the faster path the delay in force is 15 ms short of the 30 ms floor,
    and the buffer makes it up by inserting a frame before the next quiet one."""
    quiet = quiet_code_table(g711.ULAW_DECODE)
    jb = JitterBuffer(initial_delay=0.03, min_delay=0.03, quiet_codes=quiet, window=1.0)
    packets = stream(260)
    for p in packets:
        p.payload = loud_or_quiet(p.ts, 160, {200})
        if p.seq >= 200:
            p.arrival += 0.015
    result = run(jb, packets, 260)
    inserted = [k for k, f in enumerate(result.frames) if f.outcome is EXPANDED]
    assert len(inserted) == 1
    after = result.frames[inserted[0] + 1]
    assert after.outcome is PLAYED and after.position == 8000 + 200 * 160
    assert jb.late == 0 and jb.concealed == 0
    delay = jb.delay(260 * TICK)
    assert delay is not None and delay >= 0.03


# -- the playout point against the tick --------------------------------------------------


@pytest.mark.parametrize("phase", [0.0, 0.001, 0.0075, 0.013, 0.0199])
def test_playout_starts_at_the_first_tick_whose_delay_meets_the_target(phase: float) -> None:
    """Whatever the tick's phase against the packets, the first frame plays at the
    first tick at which the delay in force reaches the target, so it starts less than a
    frame above it; the ticks before it buffered below it."""
    jb = JitterBuffer(initial_delay=0.045, min_delay=0.045)
    packets = stream(40, transit=0.004)
    queue = sorted(packets, key=lambda p: p.arrival)
    i = 0
    below: list[float] = []
    for k in range(40):
        now = phase + k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            jb.put(p.seq, p.ts, p.payload, p.arrival)
            i += 1
        frame = jb.get(now)
        delay = jb.delay(now)
        if frame.outcome is BUFFERING:
            if delay is not None:
                below.append(delay - jb.target_delay)
            continue
        assert frame.outcome is PLAYED and frame.position == 8000
        assert delay is not None
        started_at = delay + 160 / RATE  # the playout point has moved past the frame
        assert jb.target_delay <= started_at < jb.target_delay + 160 / RATE
        break
    else:
        pytest.fail("the stream never started playing")
    assert below and all(gap < 0 for gap in below)


def test_20ms_packets_keep_the_playout_point_on_their_edges_through_every_edit() -> None:
    """Start, growth for a slower path, shrinking after a stall, a loss and quiet
    frames dropped: with packets the tick's size, every frame the buffer plays begins
    where a packet does, and every drop is of whole frames — a playout point off their
    edges would make each packet straddle two ticks and need to be there a tick early."""
    quiet = quiet_code_table(g711.ULAW_DECODE)
    rng = random.Random(17)
    quiet_frames = {k for k in range(400) if k % 7 in (0, 1)}
    jb = JitterBuffer(initial_delay=0.02, min_delay=0.01, quiet_codes=quiet, window=1.0)
    packets = [p for p in stream(400) if p.seq != 250]
    for p in packets:
        p.payload = loud_or_quiet(p.ts, 160, quiet_frames)
        p.arrival += rng.uniform(0.0, 0.01)
        if p.seq >= 200:
            p.arrival += 0.025  # a slower path for good
        if 5.0 <= p.arrival < 5.2:
            p.arrival = 5.2  # a stall
    result = run(jb, packets, 420, tick0=0.0123)
    played = [f for f in result.frames if f.outcome in (PLAYED, CONCEALED)]
    assert played and all((f.position - 8000) % 160 == 0 for f in played)
    assert all(f.dropped % 160 == 0 for f in result.frames)
    # The run did exercise the edits it is about.
    assert jb.dropped_samples > 0 and jb.expanded > 0 and jb.concealed > 0
    for f in played:  # and what it played is what was sent there
        for half in range(2):
            if f.present >> half & 1:
                start = f.position + 80 * half
                expected = loud_or_quiet(start, 80, quiet_frames)
                assert f.payload[80 * half : 80 * half + 80] == expected, (f.position, half)


def test_overflow_drops_the_oldest_audio_for_a_packet_far_ahead() -> None:
    jb = JitterBuffer(initial_delay=0.1, max_delay=0.1, capacity=0.2)
    for i in range(5):
        jb.put(i, i * 160, content(i * 160, 160), 0.0 + i * 0.02)
    # 1600 samples is the capacity: a packet ending beyond it pushes the oldest out.
    outcome = jb.put(20, 1700, content(1700, 160), 0.1)
    assert outcome is PacketOutcome.OVERFLOW
    assert jb.overflows == 1
    assert jb.overflow_samples == 260
    assert jb.buffered_samples == 800 - 260 + 160
    assert_counters(jb, 6)


def test_an_empty_payload_is_accepted_and_changes_nothing() -> None:
    jb = JitterBuffer()
    jb.put(1, 0, content(0, 160), 0.0)
    assert jb.put(2, 160, b"", 0.02) is PacketOutcome.BUFFERED
    assert jb.buffered_samples == 160


# -- configuration and helpers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_samples": 0}, "must be positive"),
        ({"subframe_samples": 70}, "must divide frame_samples"),
        ({"fill": 256}, "fill must be a byte value"),
        ({"quantile": 0.0}, "quantile must be within"),
        ({"window": 0.0}, "window must be a positive number"),
        ({"jump": float("nan")}, "jump must be a positive number"),
        ({"shrink_rate": -1.0}, "shrink_rate must be >= 0"),
        ({"min_delay": 0.2, "initial_delay": 0.1}, "min_delay <= initial_delay"),
        ({"update_ticks": 0}, "update_ticks must be at least 1"),
    ],
)
def test_bad_settings_are_refused_precisely(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JitterBuffer(**kwargs)  # type: ignore[arg-type]


def test_quiet_code_table_from_g711() -> None:
    ulaw = quiet_code_table(g711.ULAW_DECODE)
    assert 0xFF in ulaw and 0x7F in ulaw  # ±0
    assert 0x80 not in ulaw and 0x00 not in ulaw  # full scale
    assert all(abs(int(g711.ULAW_DECODE[c])) <= DEFAULT_QUIET_LEVEL for c in ulaw)
    alaw = quiet_code_table(g711.ALAW_DECODE, level=8)
    assert set(alaw) == {0xD5, 0x55}
    with pytest.raises(ValueError, match="256 entries"):
        quiet_code_table([0] * 10)
    with pytest.raises(ValueError, match="quiet level must be >= 0"):
        quiet_code_table(g711.ULAW_DECODE, level=-1)


def test_reset_forgets_the_stream_but_not_the_counters() -> None:
    jb = JitterBuffer()
    jb.put(1, 0, content(0, 160), 0.0)
    jb.reset()
    assert jb.buffered_samples == 0
    assert jb.get(0.1).outcome is BUFFERING
    assert jb.put(50, 999_999, content(999_999, 160), 0.2) is PacketOutcome.BUFFERED
    assert jb.packets == 2


def test_a_source_named_late_is_adopted_without_a_resync() -> None:
    jb = JitterBuffer()
    jb.put(1, 0, content(0, 160), 0.0)
    assert jb.put(2, 160, content(160, 160), 0.02, ssrc=5) is PacketOutcome.BUFFERED
    assert jb.put(3, 320, content(320, 160), 0.04, ssrc=5) is PacketOutcome.BUFFERED
    assert jb.put(4, 480, content(480, 160), 0.06, ssrc=6) is PacketOutcome.RESYNC
    assert jb.epoch == 1
