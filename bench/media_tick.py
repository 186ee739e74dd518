"""Benchmark: the cost of one 20 ms media tick of `MediaCore` for 100, 500 and 1000 legs.

What is timed, single-threaded (OPENBLAS_NUM_THREADS=1 is set before numpy loads),
with `time.perf_counter_ns`:

* ``receive_rtp``: every datagram of one tick (one 20 ms speech packet per leg, plus
  the RFC 4733 event packets of the legs pressing keys), fed through
  `MediaCore.receive_rtp` — parse, latch, sequence check, queue.
* ``tick``: `MediaCore.tick` — playout, G.711 decode of every leg, the in-band DTMF bank
  over the (legs × 160) block, RFC 4733 / in-band de-duplication, the outbound prompt of
  every leg encoded and packetised, and handed to `sendto` (a counting no-op: no
  sockets are involved).

Legs are half PCMU, half PCMA. Inbound audio is a vowel-like harmonic series whose
pitch wanders (90–260 Hz) through moving formants, with syllable envelopes and pauses,
at about −18 dBm0, G.711-encoded; each leg reads it from its own offset. On 10 % of the
legs a key is pressed about every 1.2 s: half of those legs send RFC 4733 events
(alongside their audio), the other half play the key in-band as 100 ms of DTMF tone.
Every leg plays a looped speech prompt outbound. All packets are built before timing.

Baselines, measured in the same run on the same payloads: the same amount of G.711
work — decode each leg's 160 inbound codes and encode its 160 outbound samples — done
naively per leg in Python, (a) with the standard library's `audioop` (C per call, one
call per leg and direction), and (b) with a per-sample dict lookup in pure Python
(fewer ticks: it is slow). The ratio column is hotline's tick over baseline (a); the
hotline tick does much more than G.711 (DTMF detection, RTP, de-duplication), so a
ratio near 1 means that extra work costs about what per-leg codec calls cost alone.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/media_tick.py [--legs 100,500,1000]
[--ticks 200] [--naive-ticks 20] [--seed 1]``.
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
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.engine.media_loop import (
    SAMPLES_PER_TICK,
    TICK_SECONDS,
    DtmfMethod,
    MediaCore,
    MediaLeg,
    OutboundSource,
)
from hotline.media import g711
from hotline.media.tones import SAMPLE_RATE, dbm0_to_peak, dtmf_tone, to_int16
from hotline.rtp.stream import Address, RtpSender
from hotline.rtp.telephone_event import DtmfEventSender
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated in 3.11, removed in 3.13: the baseline only

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]

TICK_US = TICK_SECONDS * 1e6  # 20000 µs: the budget of one tick
WARMUP_TICKS = 10  # not timed: prefill, latching, first allocations
TELEPHONE_EVENT_PT = 101
DTMF_SHARE = 0.10  # of legs that press keys
KEY_PERIOD_TICKS = 60  # one key every 1.2 s on a pressing leg
KEY_MS = 100.0  # length of a key press (RFC 4733 event or in-band tone)
KEYS = "0123456789*#"
VOICE_SECONDS = 6.0
LOCAL_ADDRESS = "192.0.2.1"  # TEST-NET-1: the peers' addresses, never contacted

# (F1, F2, F3) Hz of a few vowels: /a/, /e/, /i/, /o/, /u/, /ə/.
VOWELS = (
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
    (500.0, 1500.0, 2500.0),
)
FORMANT_WIDTHS = (90.0, 110.0, 170.0)  # Hz, half-width of each formant's bump


# -- signals -----------------------------------------------------------------------------


def vowel_speech(rng: np.random.Generator, seconds: float, level_dbm0: float = -18.0) -> Int16Array:
    """Speech-like audio: a harmonic series on a wandering pitch through moving formants.

    Syllables of 120–350 ms each glide from one random pitch (90–260 Hz) and vowel to
    the next, with vibrato; syllables rise and fall and are separated by short pauses.
    The voiced parts sit at `level_dbm0` RMS. Vectorised over samples; the only loop
    runs over harmonics.
    """
    n = int(seconds * SAMPLE_RATE)
    # Syllable boundaries (in samples) and the targets each one glides between.
    lengths = rng.integers(int(0.12 * SAMPLE_RATE), int(0.35 * SAMPLE_RATE), size=n // 960 + 2)
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    bounds = bounds[: np.searchsorted(bounds, n) + 1]
    knots = bounds.astype(np.float64)
    pitch_targets = rng.uniform(90.0, 260.0, size=knots.size)
    vowel_index = rng.integers(len(VOWELS), size=knots.size)
    formant_targets = np.asarray(VOWELS)[vowel_index]  # (knots × 3)
    t_samples = np.arange(n, dtype=np.float64)
    t = t_samples / SAMPLE_RATE
    vibrato = 1.0 + 0.015 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi))
    f0 = np.interp(t_samples, knots, pitch_targets) * vibrato
    formants = [np.interp(t_samples, knots, formant_targets[:, j]) for j in range(3)]
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = np.zeros(n)
    for k in range(1, 45):
        fk = k * f0
        amplitude = np.zeros(n)
        for centre, width in zip(formants, FORMANT_WIDTHS, strict=True):
            amplitude += 1.0 / (1.0 + ((fk - centre) / width) ** 2)
        amplitude *= k**-0.7  # spectral tilt of the glottal source
        amplitude[fk >= 0.45 * SAMPLE_RATE] = 0.0
        voice += amplitude * np.sin(k * phase)
    # Syllable envelope: rise and fall inside each syllable, the last 15 % silent.
    syllable = np.searchsorted(bounds, t_samples, side="right") - 1
    start = bounds[syllable]
    span = (bounds[np.minimum(syllable + 1, bounds.size - 1)] - start).clip(min=1)
    position = (t_samples - start) / span
    envelope = np.where(position < 0.85, np.sin(np.pi * position / 0.85).clip(min=0.0) ** 0.6, 0.0)
    voice *= envelope * rng.uniform(0.5, 1.0, size=bounds.size)[syllable]
    voiced = envelope > 0.1
    rms = float(np.sqrt(np.mean(voice[voiced] ** 2)))
    target = dbm0_to_peak(level_dbm0) / np.sqrt(2.0)
    return to_int16(voice * (target / rms))


# -- the scenario --------------------------------------------------------------------------


class CountingSink:
    """`sendto` for every leg: counts packets and octets, sends nothing."""

    __slots__ = ("octets", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    def __call__(self, data: bytes, address: Address) -> None:
        self.packets += 1
        self.octets += len(data)


class DigitLog:
    """`on_digit`: counts reported digits by method."""

    def __init__(self) -> None:
        self.by_method = {method: 0 for method in DtmfMethod}

    def __call__(self, key: object, digit: str, method: DtmfMethod) -> None:
        self.by_method[method] += 1


@dataclass
class Scenario:
    core: MediaCore
    sink: CountingSink
    digits: DigitLog
    feeds: list[list[tuple[MediaLeg, bytes, Address]]]  # per tick: what arrives
    audio_payloads: list[list[bytes]]  # per tick, per leg: the inbound G.711 payload
    prompts: list[bytes]  # per leg: its outbound prompt, int16 native bytes
    laws: list[g711.Codec]
    rfc_presses: int
    inband_presses: int


def _media(law: g711.Codec, remote: Address) -> NegotiatedMedia:
    codec = Codec.PCMU if law is g711.Codec.PCMU else Codec.PCMA
    return NegotiatedMedia(
        remote_address=remote[0],
        remote_port=remote[1],
        remote_rtcp_address=remote[0],
        remote_rtcp_port=remote[1] + 1,
        codec=codec,
        payload_type=int(law),
        telephone_event=TELEPHONE_EVENT_PT,
        ptime=20,
        direction=Direction.SENDRECV,
        receive_codecs=((0, Codec.PCMU), (8, Codec.PCMA)),
        receive_telephone_event=TELEPHONE_EVENT_PT,
    )


def build(legs: int, ticks: int, seed: int, voice: Int16Array, prompt: Int16Array) -> Scenario:
    """Every packet of the run, built before anything is timed."""
    rng = np.random.default_rng(seed)
    sink = CountingSink()
    digits = DigitLog()
    core = MediaCore(
        on_digit=digits,
        on_inactive=lambda key: None,
        rng=random.Random(seed),
    )
    total = ticks * SAMPLES_PER_TICK
    key_samples = round(KEY_MS * SAMPLE_RATE / 1000)
    pressing = max(1, round(legs * DTMF_SHARE))
    feeds: list[list[tuple[MediaLeg, bytes, Address]]] = [[] for _ in range(ticks)]
    audio_payloads: list[list[bytes]] = [[] for _ in range(ticks)]
    prompts: list[bytes] = []
    laws: list[g711.Codec] = []
    rfc_presses = inband_presses = 0
    for i in range(legs):
        law = g711.Codec.PCMU if i % 2 == 0 else g711.Codec.PCMA
        remote: Address = (f"198.51.100.{1 + i % 250}", 20000 + 2 * i)
        offset = int(rng.integers(voice.size))
        outbound = np.roll(prompt, -int(rng.integers(prompt.size)))
        leg = core.add_leg(
            ("leg", i),
            10000 + 2 * i,
            _media(law, remote),
            0.0,
            source=OutboundSource(outbound, loop=True),
            sendto=sink,
        )
        laws.append(law)
        prompts.append(np.resize(outbound, total).tobytes())
        audio = voice[(offset + np.arange(total)) % voice.size]
        # Legs 0, 10, 20, … press keys: even ones by RFC 4733, odd ones in-band.
        kind = None
        if i % round(1 / DTMF_SHARE) == 0 and i // round(1 / DTMF_SHARE) < pressing:
            kind = "rfc" if (i // round(1 / DTMF_SHARE)) % 2 == 0 else "inband"
        phase = int(rng.integers(WARMUP_TICKS, WARMUP_TICKS + KEY_PERIOD_TICKS))
        press_ticks = set(range(phase, ticks - 10, KEY_PERIOD_TICKS)) if kind else set()
        if kind == "inband":
            for n, tick in enumerate(sorted(press_ticks)):
                at = tick * SAMPLES_PER_TICK
                audio[at : at + key_samples] = dtmf_tone(KEYS[(i + n) % len(KEYS)], KEY_MS)
                inband_presses += 1
        codes = g711.encode(law, audio).tobytes()
        rtp = RtpSender.with_random_start(random.Random(seed * 100003 + i))
        events = DtmfEventSender(TELEPHONE_EVENT_PT) if kind == "rfc" else None
        presses = 0
        for tick in range(ticks):
            payload = codes[tick * SAMPLES_PER_TICK : (tick + 1) * SAMPLES_PER_TICK]
            audio_payloads[tick].append(payload)
            sent: list[bytes] = []
            if events is not None:
                if tick in press_ticks:
                    events.press(KEYS[(i + presses) % len(KEYS)], key_samples)
                    presses += 1
                ts = rtp.timestamp
                event_packets = events.tick(rtp, SAMPLES_PER_TICK)
                if event_packets is not None:
                    sent.extend(event_packets)
                    sent.append(rtp.packet_at(payload, int(law), ts))
                else:
                    sent.append(rtp.next_packet(payload, int(law), SAMPLES_PER_TICK))
            else:
                sent.append(rtp.next_packet(payload, int(law), SAMPLES_PER_TICK, tick == 0))
            feeds[tick].extend((leg, packet, remote) for packet in sent)
        rfc_presses += presses
    return Scenario(core, sink, digits, feeds, audio_payloads, prompts, laws,
                    rfc_presses, inband_presses)


# -- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    median_us: float
    p95_us: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        data = np.asarray(samples_ns, dtype=np.float64) / 1000.0
        return cls(float(np.median(data)), float(np.percentile(data, 95)))


@dataclass(frozen=True)
class Result:
    legs: int
    packets_per_tick: float
    receive: Stats
    tick: Stats
    whole: Stats  # receive + tick of the same tick
    audioop: Stats
    naive: Stats
    sent: int
    rfc_presses: int
    inband_presses: int
    reported: dict[DtmfMethod, int]


def run_hotline(scenario: Scenario, ticks: int) -> tuple[list[int], list[int]]:
    core = scenario.core
    receive = core.receive_rtp
    clock = time.perf_counter_ns
    receive_ns: list[int] = []
    tick_ns: list[int] = []
    for index in range(ticks):
        due = index * TICK_SECONDS
        arrival = due - 0.005
        feed = scenario.feeds[index]
        start = clock()
        for leg, packet, source in feed:
            receive(leg, packet, source, arrival)
        middle = clock()
        core.tick(index, due)
        end = clock()
        if index >= WARMUP_TICKS:
            receive_ns.append(middle - start)
            tick_ns.append(end - middle)
    return receive_ns, tick_ns


def run_audioop(scenario: Scenario, ticks: int) -> list[int]:
    """Per leg: `audioop.ulaw2lin`/`alaw2lin` of its inbound payload, and
    `lin2ulaw`/`lin2alaw` of its next 20 ms of outbound prompt."""
    decoders = {g711.Codec.PCMU: audioop.ulaw2lin, g711.Codec.PCMA: audioop.alaw2lin}
    encoders = {g711.Codec.PCMU: audioop.lin2ulaw, g711.Codec.PCMA: audioop.lin2alaw}
    rows = list(zip(scenario.laws, scenario.prompts, strict=True))
    chunk = 2 * SAMPLES_PER_TICK
    clock = time.perf_counter_ns
    out: list[int] = []
    sink: list[bytes] = []
    for index in range(ticks):
        payloads = scenario.audio_payloads[index]
        at = index * chunk
        start = clock()
        for (law, prompt), payload in zip(rows, payloads, strict=True):
            decoders[law](payload, 2)
            sink.append(encoders[law](prompt[at : at + chunk], 2))
        end = clock()
        sink.clear()
        if index >= WARMUP_TICKS:
            out.append(end - start)
    return out


def run_naive(scenario: Scenario, ticks: int) -> list[int]:
    """Per leg and per sample: a dict lookup to decode, another to encode."""
    decode = {
        law: dict(enumerate(g711.decode(law, np.arange(256, dtype=np.uint8)).tolist()))
        for law in g711.Codec
    }
    every = np.arange(-32768, 32768, dtype=np.int32)
    encode = {
        law: dict(zip(every.tolist(), g711.encode(law, every.astype(np.int16)).tolist(),
                      strict=True))
        for law in g711.Codec
    }
    rows = list(zip(scenario.laws, scenario.prompts, strict=True))
    chunk = 2 * SAMPLES_PER_TICK
    clock = time.perf_counter_ns
    out: list[int] = []
    for index in range(ticks):
        payloads = scenario.audio_payloads[index]
        at = index * chunk
        start = clock()
        for (law, prompt), payload in zip(rows, payloads, strict=True):
            table = decode[law]
            array("h", [table[code] for code in payload])
            table_out = encode[law]
            bytes([table_out[s] for s in array("h", prompt[at : at + chunk])])
        end = clock()
        if index >= WARMUP_TICKS:
            out.append(end - start)
    return out


def measure(
    legs: int, ticks: int, naive_ticks: int, seed: int, voice: Int16Array, prompt: Int16Array
) -> Result:
    scenario = build(legs, ticks + WARMUP_TICKS, seed, voice, prompt)
    packets = sum(len(feed) for feed in scenario.feeds[WARMUP_TICKS:]) / ticks
    gc.collect()
    receive_ns, tick_ns = run_hotline(scenario, ticks + WARMUP_TICKS)
    whole_ns = [r + t for r, t in zip(receive_ns, tick_ns, strict=True)]
    gc.collect()
    audioop_ns = run_audioop(scenario, ticks + WARMUP_TICKS)
    gc.collect()
    naive_ns = run_naive(scenario, min(ticks, naive_ticks) + WARMUP_TICKS)
    return Result(
        legs=legs,
        packets_per_tick=packets,
        receive=Stats.of(receive_ns),
        tick=Stats.of(tick_ns),
        whole=Stats.of(whole_ns),
        audioop=Stats.of(audioop_ns),
        naive=Stats.of(naive_ns),
        sent=scenario.sink.packets,
        rfc_presses=scenario.rfc_presses,
        inband_presses=scenario.inband_presses,
        reported=dict(scenario.digits.by_method),
    )


# -- reporting -----------------------------------------------------------------------------


def _pair(stats: Stats) -> str:
    return f"{stats.median_us:>6.0f}/{stats.p95_us:<6.0f}"


def report(results: Sequence[Result], ticks: int, naive_ticks: int) -> None:
    print(
        f"median / p95 over {ticks} ticks ({naive_ticks} for the per-sample baseline),"
        f" after {WARMUP_TICKS} warm-up ticks; µs"
    )
    header = (
        f"{'legs':>5} {'pkts':>5} | {'receive_rtp':>13} {'/pkt':>5} | {'tick()':>13}"
        f" {'/leg':>5} | {'rx+tick':>13} {'/leg':>5} | {'audioop':>13} {'/leg':>5}"
        f" | {'tick/aop':>8} {'all/aop':>7} | {'py/sample':>9} {'tick/py':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.legs:>5} {r.packets_per_tick:>5.0f} | {_pair(r.receive)} "
            f"{r.receive.median_us / r.packets_per_tick:>5.2f} | {_pair(r.tick)} "
            f"{r.tick.median_us / r.legs:>5.2f} | {_pair(r.whole)} "
            f"{r.whole.median_us / r.legs:>5.2f} | {_pair(r.audioop)} "
            f"{r.audioop.median_us / r.legs:>5.2f} | "
            f"{r.tick.median_us / r.audioop.median_us:>8.2f} "
            f"{r.whole.median_us / r.audioop.median_us:>7.2f} | "
            f"{r.naive.median_us:>9.0f} {r.tick.median_us / r.naive.median_us:>7.3f}"
        )
    print()
    print("columns: receive_rtp = every datagram of the tick; tick() = MediaCore.tick;")
    print("  rx+tick = both; audioop = per-leg audioop decode+encode (baseline);")
    print("  tick/aop, all/aop = hotline over that baseline; py/sample = per-sample dict")
    print("  lookup baseline (median µs per tick); /leg and /pkt = median divided out.")
    print()
    for r in results:
        print(
            f"budget {r.legs:>5} legs: rx+tick uses {r.whole.median_us / TICK_US:6.1%} of the"
            f" 20 ms tick at the median, {r.whole.p95_us / TICK_US:6.1%} at p95"
            f" (tick() alone {r.tick.median_us / TICK_US:.1%} / {r.tick.p95_us / TICK_US:.1%});"
            f" linear extrapolation: ~{TICK_US / (r.whole.median_us / r.legs):,.0f} legs fit"
        )
    print()
    for r in results:
        rfc = r.reported[DtmfMethod.RFC4733]
        inband = r.reported[DtmfMethod.INBAND]
        print(
            f"sanity {r.legs:>5} legs: {r.sent} RTP packets sent; keys pressed"
            f" {r.rfc_presses} RFC 4733 + {r.inband_presses} in-band,"
            f" reported {rfc} RFC 4733 + {inband} in-band"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--legs", default="100,500,1000", help="comma-separated leg counts")
    parser.add_argument("--ticks", type=int, default=200, help="ticks timed per leg count")
    parser.add_argument(
        "--naive-ticks", type=int, default=20, help="ticks timed for the per-sample baseline"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        leg_counts = [int(part) for part in args.legs.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--legs must be comma-separated integers, got {args.legs!r}")
    if not leg_counts or min(leg_counts) < 1:
        parser.error("--legs needs at least one positive leg count")
    if args.ticks < 1 or args.naive_ticks < 1:
        parser.error("--ticks and --naive-ticks must be at least 1")
    rng = np.random.default_rng(args.seed)
    voice = vowel_speech(rng, VOICE_SECONDS)
    prompt = vowel_speech(rng, 3.0, level_dbm0=-16.0)
    print(
        f"Python {sys.version.split()[0]}, numpy {np.__version__},"
        f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; legs half PCMU /"
        f" half PCMA; {DTMF_SHARE:.0%} of legs press a key every"
        f" {KEY_PERIOD_TICKS * TICK_SECONDS:.1f} s (half RFC 4733, half in-band)"
    )
    results = [
        measure(legs, args.ticks, args.naive_ticks, args.seed, voice, prompt)
        for legs in leg_counts
    ]
    print()
    report(results, args.ticks, min(args.ticks, args.naive_ticks))


if __name__ == "__main__":
    main()
