"""The jitter buffer's delay reference and target on scripted arrival patterns: packets
that ran ahead of the stream, a path that got slower, spikes over a steady body, rough
spells, and packets off the frame grid. Fake clock throughout."""

from __future__ import annotations

import random

import pytest

from hotline.rtp.jitter import FrameOutcome, JitterBuffer, PacketOutcome
from tests.unit.rtp.test_jitter import (
    TICK,
    Packet,
    assert_content,
    content,
    run,
    stream,
)

PLAYED = FrameOutcome.PLAYED
CONCEALED = FrameOutcome.CONCEALED
EXPANDED = FrameOutcome.EXPANDED


def targets_and_frames(
    jb: JitterBuffer, packets: list[Packet], ticks: int
) -> tuple[list[float], list[FrameOutcome]]:
    """Like `run`, also recording the target after every tick."""
    queue = sorted(packets, key=lambda p: p.arrival)
    targets: list[float] = []
    kinds: list[FrameOutcome] = []
    i = 0
    for k in range(ticks):
        now = k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            jb.put(p.seq, p.ts, p.payload, p.arrival)
            i += 1
        kinds.append(jb.get(now).outcome)
        targets.append(jb.target_delay)
    return targets, kinds


# -- a packet that ran ahead -----------------------------------------------------------


def test_the_pinned_case_an_early_packet_half_a_second_ahead_is_an_outlier() -> None:
    """The known bug: an empty packet at ts 3993 next to the first one, then a clean
    stream from ts 0 with 30 ms packets. Every clean packet undercuts it by 0.5 s; once
    ten have, it is dropped from the statistics and the stream plays steadily."""
    jb = JitterBuffer()
    assert jb.put(0, 0, b"", 0.0) is PacketOutcome.BUFFERED
    assert jb.put(1, 3993, b"", 0.0) is PacketOutcome.BUFFERED
    clean = stream(100, samples=240, seq0=2, ts0=0, transit=0.005)
    result = run(jb, clean, 150)
    assert jb.target_delay < 0.05  # it sat at its 0.5 s maximum before the fix
    kinds = result.kinds()
    assert all(k is PLAYED for k in kinds[40:140])
    assert jb.outliers == 1
    assert jb.resyncs == 0
    delay = jb.delay(100 * TICK)
    assert delay is not None and delay < 0.06
    assert jb.stats().outliers == 1
    assert_content(result.frames)


def test_a_packet_ahead_in_the_middle_of_a_stream_stops_counting_within_half_a_second() -> None:
    jb = JitterBuffer(quiet_codes=None)
    packets = stream(250, transit=0.005)
    # Packet 100's timestamp ran 0.4 s ahead (its content is what would be there).
    stray = packets[100]
    ahead = stray.ts + 3200
    packets[100] = Packet(stray.seq, ahead, content(ahead, 160), stray.arrival)
    targets, kinds = targets_and_frames(jb, packets, 260)
    late_by = 100 * 160 / 8000 + 0.005  # when packet 100 arrived
    recovered = round((late_by + 0.5) / TICK)
    assert max(targets[recovered:]) < 0.05
    # The stream went on: packet 100's own place is concealed, nothing stalls.
    assert kinds[recovered:250].count(PLAYED) >= 250 - recovered - 3
    assert jb.resyncs == 0 and jb.late == 0
    assert jb.outliers == 1


def test_a_forward_step_that_later_packets_confirm_leaves_the_old_path_behind() -> None:
    """The sender's timestamps step 0.3 s ahead for good (within the jump limit): the
    packets after the step keep the new, smaller transit, so they are the reference and
    the 100 records of the old path (0.3 s "late" against it) are dropped once ten
    confirm it — not after the 5 s window; the delay the gap added is then shed."""
    jb = JitterBuffer(quiet_codes=None)
    before = stream(100, transit=0.005)
    after = stream(150, seq0=200, ts0=8000 + 100 * 160 + 2400, t0=2.0, transit=0.005)
    queue = sorted([*before, *after], key=lambda p: p.arrival)
    delays: list[float] = []
    frames = []
    i = 0
    for k in range(250):
        now = k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            jb.put(p.seq, p.ts, p.payload, p.arrival)
            i += 1
        frames.append(jb.get(now))
        delay = jb.delay(now)
        delays.append(0.0 if delay is None else delay)
    assert max(delays[100 + 25 :]) < 0.05  # half a second after the step
    assert jb.outliers == 100
    assert jb.resyncs == 0 and jb.late == 0
    assert jb.target_delay < 0.05
    played = [f for f in frames[125:] if f.outcome is PLAYED]
    assert len(played) == 125
    assert_content(frames)


def test_a_fast_start_then_a_slower_path_moves_the_reference_within_a_second() -> None:
    """The first five packets came 5 ms after they were sent, every later one 120 ms:
    those five are outliers (outnumbered, all undercut), and the 115 ms they would
    add to every relative delay for five seconds are gone once ten packets show it."""
    jb = JitterBuffer(quiet_codes=None)
    packets = stream(150, transit=0.005)
    for p in packets[5:]:
        p.arrival += 0.115
    targets, kinds = targets_and_frames(jb, packets, 150)
    assert max(targets[50:]) < 0.05
    assert kinds[60:150].count(PLAYED) == 90
    assert jb.outliers == 5
    assert jb.late == 0


def test_a_spike_above_a_dense_body_is_no_outlier() -> None:
    rng = random.Random(3)
    jb = JitterBuffer()
    packets = stream(400, transit=0.02)
    for p in packets:
        p.arrival += rng.uniform(0.0, 0.01)
        if 5.0 <= p.arrival < 5.2:  # a 200 ms stall: its packets come out together
            p.arrival = 5.2
    run(jb, packets, 410)
    assert jb.outliers == 0
    assert jb.late == 0


# -- spikes and rough spells --------------------------------------------------------------


def test_stalls_every_few_seconds_are_ridden_out_and_do_not_set_the_target() -> None:
    """Steady 0–10 ms jitter with a 200 ms stall every 3 s: 10 of every 150 packets
    (7 %) are stalled, far beyond the body of the distribution, so the target stays
    with the body; the stalls are ridden out (no late loss) and the delay each leaves
    behind is shed within a second."""
    rng = random.Random(5)
    jb = JitterBuffer(quiet_codes=None)
    packets = stream(700, transit=0.02)
    stalls = [2.0 + 3.0 * k for k in range(4)]
    for p in packets:
        p.arrival += rng.uniform(0.0, 0.01)
        for start in stalls:
            if start <= p.arrival < start + 0.2:
                p.arrival = start + 0.2
    queue = sorted(packets, key=lambda p: p.arrival)
    targets: list[float] = []
    delays: list[float] = []
    i = 0
    for k in range(700):
        now = k * TICK
        while i < len(queue) and queue[i].arrival <= now:
            p = queue[i]
            jb.put(p.seq, p.ts, p.payload, p.arrival)
            i += 1
        jb.get(now)
        targets.append(jb.target_delay)
        delay = jb.delay(now)
        delays.append(0.0 if delay is None else delay)
    assert jb.late == 0
    assert max(targets[100:]) < 0.05
    for start in stalls:
        shed = round((start + 0.2 + 1.0) / TICK)
        assert max(delays[shed : shed + 40]) < 0.08, start


def test_a_rough_spell_lifts_the_target_within_a_second() -> None:
    """Calm, then 0–100 ms of jitter (and reordering) for good: the first packets that
    come too late lift the target to cover them, and it stays up."""
    rng = random.Random(11)
    jb = JitterBuffer(quiet_codes=None)
    calm = stream(250, transit=0.02)
    rough = stream(250, seq0=350, ts0=8000 + 250 * 160, t0=5.0, transit=0.02)
    for p in calm:
        p.arrival += rng.uniform(0.0, 0.002)
    for p in rough:
        p.arrival += rng.uniform(0.0, 0.1)
    targets, _ = targets_and_frames(jb, [*calm, *rough], 500)
    assert targets[249] < 0.02
    # Each packet that comes after its place was played lifts the target at once.
    assert jb.late <= 5
    assert min(targets[250 + 50 :]) > 0.07


# -- alignment and partial frames -------------------------------------------------------------


def test_a_talkspurt_off_the_frame_grid_is_waited_for_not_concealed() -> None:
    """After a pause the sender's next talkspurt starts 40 samples off the frame grid:
    every frame then takes its last 40 samples from the next packet. The buffer learns
    the 5 ms that needs and waits for it, instead of concealing half of every frame."""
    jb = JitterBuffer(initial_delay=0.04, min_delay=0.02, quiet_codes=None)
    first = stream(25, transit=0.005)
    ts0 = 8000 + (25 + 50) * 160 + 40
    second = stream(100, seq0=125, ts0=ts0, t0=(25 + 50) * TICK + 40 / 8000, transit=0.005)
    result = run(jb, [*first, *second], 190)
    assert jb.resyncs == 0
    second_spurt = result.frames[85:170]
    assert [f.outcome for f in second_spurt].count(CONCEALED) == 0
    assert all(f.present == 0b11 for f in second_spurt if f.outcome is PLAYED)
    assert sum(f.outcome is PLAYED for f in second_spurt) == 85
    assert jb.target_delay >= 0.02 + 40 / 8000 - 1e-9
    assert_content(result.frames)


def test_alignment_is_counted_from_the_playout_point_not_from_timestamp_multiples() -> None:
    """20 ms packets whose timestamps are no multiple of 160: the playout point starts
    at the first packet, so frames and packets share their edges and no alignment is
    added; 30 ms packets from the same start need 10 ms for every other packet."""
    for samples, align in ((160, 0), (240, 80)):
        jb = JitterBuffer(initial_delay=0.02, min_delay=0.02, quiet_codes=None)
        result = run(jb, stream(150, samples=samples, ts0=8043, transit=0.005), 150)
        assert jb.target_delay == pytest.approx((0.02 * 8000 + align) / 8000)
        played = [f for f in result.frames if f.outcome is PLAYED]
        assert played[0].position == 8043
        assert all(f.present == 0b11 for f in played)
        assert sum(f.outcome is CONCEALED for f in result.frames) == 0
        assert_content(result.frames)


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outlier_gap": 0.0}, "outlier_gap must be a positive number"),
        ({"body_span": 0.0}, "body_span must be positive"),
        ({"recent": 0}, "recent must be at least 1 packet"),
    ],
)
def test_new_settings_are_refused_precisely(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JitterBuffer(**kwargs)  # type: ignore[arg-type]
