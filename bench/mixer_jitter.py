"""Benchmark: per-tick cost of the mix-minus mixer, the jitter buffers and the loss
concealment for every leg of a busy node, against naive per-leg Python in the same run.

The node: 1000 legs in 500 two-party calls, plus conferences of 3, 4 and 5 parties (8 of
each, 96 legs; 4 of the 4-party ones have a supervisor coaching the agent), 1096 legs.

What is timed, single-threaded (OPENBLAS_NUM_THREADS=1), with `time.perf_counter_ns`,
per 20 ms tick:

* ``mixer``: `MixPlan.mix` over the (legs × 160) block — unity gains (the int32 path),
  and per-leg gains with the coach matrices (the float32 path). Baseline: for each leg,
  the rows of the other members summed one by one in int32 and clipped — a Python loop
  over legs, numpy per row. Both outputs are checked equal before timing.
* ``jitter get``: `JitterBuffer.get` for every leg. Baseline: a straightforward
  per-leg buffer — packets in a dict by sequence number, the target recomputed every
  tick by sorting the window of transits, frames assembled by concatenating payloads.
* ``jitter put`` (for information): `JitterBuffer.put` for every packet that arrived
  during the tick.
* ``plc`` (for information): `ConcealmentBank.process` over the whole block, with the
  presence masks of that tick's frames.

The network, per leg (seeded): 80 % of legs send 20 ms packets, 20 % 30 ms; one-way
delay 20 ms plus a gamma-distributed jitter (mean 8 ms, long tail), 1 % random loss,
0.3 % duplicated packets. Payloads are µ-law speech-like audio with pauses (so quiet
frames exist for the buffer to drop or insert). All packets are made before timing.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/mixer_jitter.py [--ticks 500]
[--naive-ticks 100] [--seed 1]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.media import g711
from hotline.media.mixer import Hearing, MixPlan, coach
from hotline.media.plc import ConcealmentBank, presence_from_bits
from hotline.rtp.jitter import Frame, JitterBuffer, quiet_code_table

Int16Array = npt.NDArray[np.int16]

TICK = 0.02
SAMPLES = 160
RATE = 8000
WARMUP_TICKS = 50  # not timed: prefill, first allocations
TWO_PARTY_CALLS = 500
CONFERENCES = {3: 8, 4: 8, 5: 8}  # size: how many
COACHED = 4  # 4-party conferences with a supervisor coaching the agent
SPEECH_SECONDS = 8.0


# -- audio and network --------------------------------------------------------------------


def speech(rng: np.random.Generator, seconds: float) -> Int16Array:
    """Voiced syllables on a wandering pitch (90–250 Hz) with three harmonics' worth of
    brightness, 150–350 ms long, separated by pauses of 60–250 ms, about −18 dBm0."""
    n = int(seconds * RATE)
    out = np.zeros(n)
    position = 0
    while position < n:
        length = min(int(rng.uniform(0.15, 0.35) * RATE), n - position)
        t = np.arange(length) / RATE
        f0 = rng.uniform(90, 250) * (1 + 0.1 * t)
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        voice = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 8))
        out[position : position + length] = voice * np.sin(np.pi * t / t[-1]) * 3000
        position += length + int(rng.uniform(0.06, 0.25) * RATE)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


@dataclass
class Arrival:
    leg: int
    seq: int
    ts: int
    payload: bytes
    at: float


def network(rng: random.Random, legs: int, ticks: int, codes: bytes) -> list[list[Arrival]]:
    """Per tick, the packets that arrive during the 20 ms before it, in arrival order."""
    per_tick: list[list[Arrival]] = [[] for _ in range(ticks)]
    horizon = ticks * TICK
    for leg in range(legs):
        samples = 240 if rng.random() < 0.2 else 160
        offset = rng.randrange(len(codes))
        seq, ts = rng.randrange(1 << 16), rng.randrange(1 << 32)
        sent = rng.uniform(0, TICK)
        k = 0
        while sent < horizon:
            if rng.random() >= 0.01:  # 1 % lost
                copies = 2 if rng.random() < 0.003 else 1
                for _ in range(copies):
                    at = sent + 0.020 + rng.gammavariate(2.0, 0.004)
                    tick = int(at / TICK) + 1  # delivered before the next tick
                    if tick < ticks:
                        start = (offset + k * samples) % (len(codes) - samples)
                        payload = codes[start : start + samples]
                        per_tick[tick].append(
                            Arrival(leg, seq + k, (ts + k * samples) & 0xFFFFFFFF, payload, at)
                        )
            k += 1
            sent += samples / RATE
    for arrivals in per_tick:
        arrivals.sort(key=lambda a: a.at)
    return per_tick


# -- baselines ---------------------------------------------------------------------------


def naive_mix(block: Int16Array, others: list[list[int]]) -> Int16Array:
    out = np.empty_like(block)
    for leg, members in enumerate(others):
        acc = np.zeros(block.shape[1], dtype=np.int32)
        for other in members:
            acc += block[other]
        np.clip(acc, -32768, 32767, out=acc)
        out[leg] = acc
    return out


class NaiveJitter:
    """A plain per-leg buffer: packets by sequence number; each tick the target is the
    95th percentile of the transits in the window (sorted every tick), and the frame is
    cut from payloads concatenated in sequence order."""

    def __init__(self) -> None:
        self.packets: dict[int, bytes] = {}
        self.transits: list[float] = []
        self.next_seq: int | None = None
        self.carry = bytearray()
        self.first_arrival: float | None = None
        self.playing = False

    def put(self, seq: int, ts: int, payload: bytes, now: float) -> None:
        if self.next_seq is not None and seq < self.next_seq:
            return  # late
        self.packets[seq] = payload
        self.transits.append(now * RATE - ts)
        if len(self.transits) > 250:
            del self.transits[0]
        if self.next_seq is None:
            self.next_seq = seq
            self.first_arrival = now

    def get(self, now: float) -> bytes:
        ordered = sorted(self.transits)
        target = 0.0
        if ordered:
            target = (ordered[int(0.95 * (len(ordered) - 1))] - ordered[0]) / RATE
        if self.next_seq is None or self.first_arrival is None:
            return b"\xff" * SAMPLES
        if not self.playing:
            if now - self.first_arrival < max(target, 0.04):
                return b"\xff" * SAMPLES
            self.playing = True
        while len(self.carry) < SAMPLES:
            payload = self.packets.pop(self.next_seq, None)
            if payload is None:
                if not any(seq > self.next_seq for seq in self.packets):
                    break  # nothing later: wait
                payload = b"\xff" * SAMPLES  # lost: fill and move on
            self.carry += payload
            self.next_seq += 1
        if len(self.carry) < SAMPLES:
            return b"\xff" * SAMPLES
        frame = bytes(self.carry[:SAMPLES])
        del self.carry[:SAMPLES]
        return frame


# -- timing ------------------------------------------------------------------------------


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(np.array(values, dtype=np.float64), q)) / 1000.0


@dataclass
class Figure:
    name: str
    hotline: list[int]
    baseline: list[int] | None

    def row(self) -> str:
        h_med, h_p99 = percentile(self.hotline, 50), percentile(self.hotline, 99)
        if self.baseline is None:
            return f"{self.name:<28}{h_med:>10.0f}{h_p99:>10.0f}{'—':>12}{'—':>10}"
        b_med = percentile(self.baseline, 50)
        return f"{self.name:<28}{h_med:>10.0f}{h_p99:>10.0f}{b_med:>12.0f}{b_med / h_med:>9.1f}×"


def timed(call: Callable[..., object], *args: object) -> int:
    """Nanoseconds `call(*args)` takes."""
    start = time.perf_counter_ns()
    call(*args)
    return time.perf_counter_ns() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ticks", type=int, default=500, help="timed ticks (default 500)")
    parser.add_argument(
        "--naive-ticks", type=int, default=100, help="timed ticks of the baselines (100)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ticks = WARMUP_TICKS + args.ticks

    # Layout: two-party calls, then conferences; coached ones get a hearing matrix.
    conference: list[int] = []
    for call in range(TWO_PARTY_CALLS):
        conference += [call, call]
    hearing: list[Hearing] = []
    cid = TWO_PARTY_CALLS
    for size, count in CONFERENCES.items():
        for number in range(count):
            first = len(conference)
            conference += [cid] * size
            if size == 4 and number < COACHED:
                members = list(range(first, first + size))
                hearing.append(coach(members, supervisor=members[-1], agent=members[0]))
            cid += 1
    legs = len(conference)
    others = [
        [j for j in range(legs) if conference[j] == conference[i] and j != i] for i in range(legs)
    ]
    plan = MixPlan(conference)
    coached_plan = MixPlan(conference, hearing)

    rng = np.random.default_rng(args.seed)
    pcm = speech(rng, SPEECH_SECONDS)
    codes = g711.ULAW_ENCODE.take(pcm.view(np.uint16)).tobytes()
    decoded = g711.ULAW_DECODE
    gains = rng.uniform(0.5, 1.5, legs)
    starts = rng.integers(0, pcm.size, legs)
    print(
        f"legs: {legs} ({TWO_PARTY_CALLS} two-party calls; conferences of"
        f" {', '.join(f'{k}×{v}' for k, v in CONFERENCES.items())}; {COACHED} coached);"
        f" {args.ticks} ticks timed, baselines {args.naive_ticks}"
    )
    print("building the network schedule ...", flush=True)
    schedule = network(random.Random(args.seed), legs, ticks, codes)
    packets = sum(len(t) for t in schedule)

    quiet = quiet_code_table(decoded)
    buffers = [JitterBuffer(quiet_codes=quiet) for _ in range(legs)]
    naive_buffers = [NaiveJitter() for _ in range(legs)]
    bank = ConcealmentBank(capacity=legs)
    slots = np.array([bank.add_leg() for _ in range(legs)], dtype=np.intp)

    mix_unity: list[int] = []
    mix_gain: list[int] = []
    gets: list[int] = []
    puts: list[int] = []
    plcs: list[int] = []
    naive_mix_times: list[int] = []
    naive_gets: list[int] = []
    outcomes: dict[str, int] = {}
    gc.disable()
    try:
        for tick in range(ticks):
            now = tick * TICK
            arrivals = schedule[tick]
            start = time.perf_counter_ns()
            for a in arrivals:
                buffers[a.leg].put(a.seq, a.ts, a.payload, a.at)
            put_ns = time.perf_counter_ns() - start
            start = time.perf_counter_ns()
            frames: list[Frame] = [jb.get(now) for jb in buffers]
            get_ns = time.perf_counter_ns() - start
            for f in frames:
                outcomes[f.outcome.value] = outcomes.get(f.outcome.value, 0) + 1
            block_codes = np.frombuffer(b"".join(f.payload for f in frames), dtype=np.uint8)
            block = decoded.take(block_codes).reshape(legs, SAMPLES)
            present = presence_from_bits([f.present for f in frames])
            plc_ns = timed(bank.process, block, slots, present)
            # The mixer runs on the source audio (every leg speaking), so that its
            # result can be compared with the baseline's on the same block.
            source = pcm[(starts[:, None] + tick * SAMPLES + np.arange(SAMPLES)) % pcm.size]
            unity_ns = timed(plan.mix, source)
            gain_ns = timed(coached_plan.mix, source, gains)
            if tick >= WARMUP_TICKS:
                puts.append(put_ns)
                gets.append(get_ns)
                plcs.append(plc_ns)
                mix_unity.append(unity_ns)
                mix_gain.append(gain_ns)
            if tick == WARMUP_TICKS:
                assert np.array_equal(plan.mix(source), naive_mix(source, others))
            if WARMUP_TICKS <= tick < WARMUP_TICKS + args.naive_ticks:
                naive_mix_times.append(timed(naive_mix, source, others))
            if tick < WARMUP_TICKS + args.naive_ticks:
                for a in arrivals:
                    naive_buffers[a.leg].put(a.seq, a.ts, a.payload, a.at)
                start = time.perf_counter_ns()
                for nb in naive_buffers:
                    nb.get(now)
                if tick >= WARMUP_TICKS:
                    naive_gets.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()

    stats = [jb.stats() for jb in buffers]
    late = sum(s.late for s in stats)
    received = sum(s.packets - s.duplicates for s in stats)
    print(
        f"packets: {packets} ({packets / ticks:.0f} per tick); frames by outcome:"
        f" {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}"
    )
    print(
        f"late packets {late} ({100 * late / max(received, 1):.2f} %), duplicates"
        f" {sum(s.duplicates for s in stats)}, mean target delay"
        f" {1000 * float(np.mean([s.target_delay for s in stats])):.1f} ms"
    )
    print()
    header = f"{'µs per tick, all legs':<28}{'median':>10}{'p99':>10}{'baseline':>12}{'ratio':>10}"
    print(header)
    print("-" * len(header))
    for figure in (
        Figure("mixer, unity gains", mix_unity, naive_mix_times),
        Figure("mixer, gains + coach", mix_gain, naive_mix_times),
        Figure("jitter get()", gets, naive_gets),
        Figure("jitter put() (arrivals)", puts, None),
        Figure("plc process()", plcs, None),
    ):
        print(figure.row())
    print()
    print("ratio = baseline median / hotline median (same run, same data); tick budget 20000 µs.")
    per_leg = ", ".join(
        f"{name} {percentile(times, 50) / legs * 1000:.0f} ns"
        for name, times in (("mixer", mix_unity), ("get()", gets), ("plc", plcs))
    )
    print(
        f"per leg: {per_leg}; put() {percentile(puts, 50) / (packets / ticks) * 1000:.0f} ns a packet"
    )


if __name__ == "__main__":
    main()
