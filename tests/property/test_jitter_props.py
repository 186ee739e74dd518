"""The jitter buffer as a state machine under any arrival order, duplication, loss,
source change and timestamp jump: it never raises, gives exactly one frame per tick,
plays only what was sent where it was sent, and never plays a sample twice."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hotline.rtp.jitter import Frame, FrameOutcome, JitterBuffer, PacketOutcome

TICK = 0.02
u32 = st.integers(0, 0xFFFFFFFF)


def code(ssrc: int, position: int) -> int:
    """What the test sender puts at RTP timestamp `position` (mod 2^32) of `ssrc`."""
    return ((position & 0xFFFFFFFF) * 7 + ssrc * 13) % 251


def payload(ssrc: int, ts: int, n: int) -> bytes:
    return bytes(code(ssrc, ts + k) for k in range(n))


@dataclass(frozen=True)
class Sent:
    seq: int
    ts: int
    ssrc: int
    data: bytes


class Checker:
    """What must hold of every frame, across a whole run."""

    def __init__(self) -> None:
        self.epoch_source: dict[int, int] = {}
        self.next_position: dict[int, int] = {}  # per epoch: where the next frame starts
        self.frames = 0
        self.puts = 0

    def put(self, jb: JitterBuffer, packet: Sent, now: float) -> PacketOutcome:
        counts = (jb.buffered, jb.late, jb.duplicates, jb.overflows, jb.resyncs)
        outcome = jb.put(packet.seq, packet.ts, packet.data, now, ssrc=packet.ssrc)
        self.puts += 1
        assert isinstance(outcome, PacketOutcome)
        after = (jb.buffered, jb.late, jb.duplicates, jb.overflows, jb.resyncs)
        assert sum(after) == sum(counts) + 1  # exactly one outcome counted
        if outcome is PacketOutcome.RESYNC or jb.epoch not in self.epoch_source:
            self.epoch_source[jb.epoch] = packet.ssrc
        return outcome

    def frame(self, jb: JitterBuffer, now: float) -> Frame:
        frame = jb.get(now)
        self.frames += 1
        assert len(frame.payload) == 160
        assert 0 <= frame.present <= 0b11
        if frame.outcome in (FrameOutcome.EXPANDED, FrameOutcome.BUFFERING):
            assert frame.present == 0 and frame.dropped == 0
            return frame
        if frame.outcome is FrameOutcome.PLAYED:
            assert frame.present == 0b11
        epoch = frame.epoch
        start = frame.position - frame.dropped
        expected = self.next_position.get(epoch)
        # Never backwards, never over what was played: samples are played at most once.
        assert expected is None or start >= expected, (epoch, start, expected)
        self.next_position[epoch] = frame.position + 160
        ssrc = self.epoch_source[epoch]
        for half in range(2):
            if frame.present >> half & 1:
                first = frame.position + 80 * half
                want = bytes(code(ssrc, p) for p in range(first, first + 80))
                assert frame.payload[80 * half : 80 * half + 80] == want
        return frame


class JitterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.jb = JitterBuffer(initial_delay=0.04, max_delay=0.3, capacity=0.5)
        self.check = Checker()
        self.now = 0.0
        self.ticks = 0
        self.seq = 0
        self.ts = 0
        self.ssrc = 1
        self.samples = 160
        self.in_flight: list[Sent] = []
        self.delivered: list[Sent] = []

    @initialize(seq=st.integers(0, 1 << 20), ts=u32, samples=st.sampled_from([80, 160, 240]))
    def start(self, seq: int, ts: int, samples: int) -> None:
        self.seq, self.ts, self.samples = seq, ts, samples

    @rule(count=st.integers(1, 4))
    def send(self, count: int) -> None:
        for _ in range(count):
            data = payload(self.ssrc, self.ts, self.samples)
            self.in_flight.append(Sent(self.seq, self.ts & 0xFFFFFFFF, self.ssrc, data))
            self.seq += 1
            self.ts += self.samples

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        packet = self.in_flight.pop(index)
        self.check.put(self.jb, packet, self.now)
        self.delivered.append(packet)

    @rule()
    def deliver_all(self) -> None:
        for packet in self.in_flight:
            self.check.put(self.jb, packet, self.now)
            self.delivered.append(packet)
        self.in_flight.clear()

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        packet = data.draw(st.sampled_from(self.delivered[-50:]))
        self.check.put(self.jb, packet, self.now)

    @rule(ticks=st.integers(1, 6))
    def tick(self, ticks: int) -> None:
        for _ in range(ticks):
            frames_before = self.jb.frames
            self.check.frame(self.jb, self.now)
            assert self.jb.frames == frames_before + 1
            self.now += TICK
            self.ticks += 1

    @rule(kind=st.sampled_from(["ssrc", "forward", "backward", "seq-restart"]), size=u32)
    def discontinuity(self, kind: str, size: int) -> None:
        if kind == "ssrc":
            self.ssrc += 1
        elif kind == "forward":
            self.ts += size % 200_000
        elif kind == "backward":
            self.ts -= size % 200_000
        else:
            self.seq = size % 5000

    @rule(samples=st.sampled_from([80, 160, 240]))
    def change_packet_size(self, samples: int) -> None:
        self.samples = samples

    @invariant()
    def counters_add_up(self) -> None:
        s = self.jb.stats(self.now)
        assert s.frames == s.played + s.concealed + s.expanded + s.buffering == self.ticks
        assert s.packets == self.check.puts
        assert 0 <= self.jb.buffered_samples <= round(0.5 * 8000)
        assert s.target_delay <= 0.3 + 1e-9


JitterMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestJitterMachine = JitterMachine.TestCase


chaos_op = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 1 << 20), u32, st.integers(0, 400), st.integers(1, 3)),
    st.tuples(st.just("tick"), st.integers(1, 5), st.just(0), st.just(0), st.just(0)),
)


def play_clean_stream(
    jb: JitterBuffer, check: Checker, now: float, seq: int, ts0: int, samples: int, lag: float
) -> list[Frame]:
    """150 ticks of a clean real-time stream of source 1 from `now`, each packet
    arriving `lag` seconds after its time; the frames."""
    frames: list[Frame] = []
    ts, sent = ts0, now
    for _ in range(150):
        while sent <= now - lag:
            check.put(jb, Sent(seq, ts & 0xFFFFFFFF, 1, payload(1, ts, samples)), sent + lag)
            seq, ts, sent = seq + 1, ts + samples, sent + samples / 8000
        frames.append(check.frame(jb, now))
        now += TICK
    return frames


# The bug this once pinned as a strict xfail: the delay reference was the packet with the
# least relative delay in the 5 s window, so one packet whose timestamp ran 0.5 s ahead
# (ts 3993 at t=0, then a clean stream from ts 0) made every later packet look 0.5 s
# late; the target sat at its 0.5 s maximum and the buffer expanded every third tick
# until that packet left the window. Records that later packets all undercut are now
# dropped (tests/unit/rtp/test_jitter_reference.py has the scripted cases).
@settings(max_examples=100, deadline=None)
@example(ops=[("put", 0, 0, 0, 1), ("put", 1, 3993, 0, 1)], ts0=0, samples=240)
@example(ops=[("put", 0, 0, 1, 1), ("put", 1, 3993, 0, 1)], ts0=1, samples=160)
@given(ops=st.lists(chaos_op, max_size=40), ts0=u32, samples=st.sampled_from([80, 160, 240]))
def test_a_clean_stream_plays_steadily_after_any_prefix(
    ops: list[tuple[str, int, int, int, int]], ts0: int, samples: int
) -> None:
    """Whatever came before, a clean real-time stream of the same source is playing
    without a gap within 1.5 s: a loss or a jump never stalls the buffer."""
    jb = JitterBuffer()
    check = Checker()
    now = 0.0
    top_seq = 0
    for kind, a, b, c, ssrc in ops:
        if kind == "put":
            check.put(jb, Sent(a, b, ssrc, payload(ssrc, b, c)), now)
            top_seq = max(top_seq, a)
        else:
            for _ in range(a):
                check.frame(jb, now)
                now += TICK
    frames = play_clean_stream(jb, check, now, top_seq + 1, ts0, samples, 0.005)
    assert all(f.outcome is FrameOutcome.PLAYED for f in frames[-75:])


near_op = st.one_of(
    st.tuples(
        st.just("put"),
        st.integers(0, 60),
        st.integers(-12_000, 12_000),  # timestamp, from the clean stream's first
        st.integers(0, 400),
        st.integers(1, 2),
    ),
    st.tuples(st.just("tick"), st.integers(1, 5), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=100, deadline=None)
@example(ops=[("put", 0, 1, 0, 1), ("tick", 2, 0, 0, 0)], ts0=0, samples=80, lag=0.0)
@given(
    ops=st.lists(near_op, max_size=40),
    ts0=u32,
    samples=st.sampled_from([80, 160, 240]),
    lag=st.floats(0.0, 0.05),
)
def test_a_clean_stream_plays_steadily_after_a_prefix_near_its_timestamps(
    ops: list[tuple[str, int, int, int, int]], ts0: int, samples: int, lag: float
) -> None:
    """The same, with the prefix's packets within 1.5 s of the clean stream's
    timestamps — packets ahead of it or behind it, empty or off its frame grid —
    where a random prefix would mostly resync: the stream plays steadily within
    1.5 s all the same (the example: one empty packet a sample off the 10 ms grid)."""
    jb = JitterBuffer()
    check = Checker()
    now = 0.0
    top_seq = 0
    for kind, a, b, c, ssrc in ops:
        if kind == "put":
            ts = (ts0 + b) & 0xFFFFFFFF
            check.put(jb, Sent(a, ts, ssrc, payload(ssrc, ts, c)), now)
            top_seq = max(top_seq, a)
        else:
            for _ in range(a):
                check.frame(jb, now)
                now += TICK
    frames = play_clean_stream(jb, check, now, top_seq + 1, ts0, samples, lag)
    assert all(f.outcome is FrameOutcome.PLAYED for f in frames[-75:])


# Quiet (µ-law silence) or loud codes, per packet: what the buffer may drop or insert before.
QUIET_CODES = bytes([0xFF, 0x7F])


@settings(max_examples=100, deadline=None)
@given(
    ts0=u32,
    phase=st.floats(0.0, 0.0199),
    packets=st.lists(
        st.tuples(
            st.floats(0.0, 0.25),  # extra delay on top of 5 ms
            st.sampled_from(["arrive", "lose", "twice"]),
            st.booleans(),  # quiet
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_packets_the_ticks_size_keep_the_playout_point_on_their_edges(
    ts0: int, phase: float, packets: list[tuple[float, str, bool]]
) -> None:
    """20 ms packets against the 20 ms tick, any jitter (reordering, stalls), loss,
    duplication and mix of quiet and loud packets: every frame played or concealed
    starts where a packet does, shrinking drops whole frames and only quiet ones (the
    excess never reaches the force threshold here), and no sample plays twice."""
    jb = JitterBuffer(quiet_codes=QUIET_CODES, initial_delay=0.04, max_delay=0.3, force_excess=1.0)
    check = Checker()
    sent: list[tuple[float, Sent]] = []
    quiet_at: dict[int, bool] = {}
    for i, (extra, fate, quiet) in enumerate(packets):
        ts = (ts0 + 160 * i) & 0xFFFFFFFF
        data = b"\xff" * 160 if quiet else payload(1, ts, 160)
        quiet_at[ts] = quiet
        if fate == "lose":
            continue
        arrival = i * TICK + 0.005 + extra
        sent.append((arrival, Sent(i, ts, 1, data)))
        if fate == "twice":
            sent.append((arrival + 0.003, Sent(i, ts, 1, data)))
    sent.sort(key=lambda item: item[0])
    ticks = len(packets) + 30
    j = 0
    for k in range(ticks):
        now = phase + k * TICK
        while j < len(sent) and sent[j][0] <= now:
            arrival, packet = sent[j]
            jb.put(packet.seq, packet.ts, packet.data, arrival, ssrc=1)
            j += 1
        frame = jb.get(now)
        assert len(frame.payload) == 160
        if frame.outcome not in (FrameOutcome.PLAYED, FrameOutcome.CONCEALED):
            continue
        # Positions extend the 32-bit timestamps from whichever packet came first.
        assert ((frame.position - ts0) & 0xFFFFFFFF) % 160 == 0
        assert frame.dropped % 160 == 0
        for start in range(frame.position - frame.dropped, frame.position, 160):
            assert quiet_at.get(start & 0xFFFFFFFF, False), start
        # Never backwards, never over what was played.
        previous = check.next_position.get(frame.epoch)
        assert previous is None or frame.position - frame.dropped >= previous
        check.next_position[frame.epoch] = frame.position + 160
    assert jb.resyncs == 0
