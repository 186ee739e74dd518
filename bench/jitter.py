"""Benchmark: hotline's jitter buffer and loss concealment against aiortc's and
libspeexdsp's jitter buffers, fixed playout buffers and spandsp's PLC, on recorded speech
sent over seeded networks — all in the same run, with the same packets and arrival times.

The speech: six clips of two or three sentences by espeak-ng (three male and three
female voice variants, about 60 s in all), resampled to 8 kHz, each at −26 dBov active
level, 0.6 s apart; cached under ``~/.cache/hotline-bench/jitter`` (``--cache-dir``) as a
WAV with its clip bounds beside it. It is sent as 20 ms G.711 µ-law RTP packets (packet
i sent at i · 20 ms) through the profiles of `_netprofiles` (delay model, loss model and
fit described there): **good** (p50 22 ms, p95 29 ms, 0.5 % random loss), **wifi**
(48/75 ms, 2 % in bursts of 2) and **spiky** (71/110 ms, 3.3 % in bursts of 3, +200 ms
spikes every 10 s). Each trace's achieved p50/p95/loss is printed.

Every buffer is driven by the same 20 ms tick clock (tick k at ``phase + k · 20 ms``, the
phase drawn per seed): before each tick, every packet that has arrived by then is handed
over in arrival order; then the tick takes one 20 ms frame.

* **hotline**: `JitterBuffer` as the engine builds it (µ-law silence fill, quiet codes at
  the default level; every other setting its default), ``get(now)`` per tick; the frame
  decoded and run through `ConcealmentBank` with the frame's ``present`` bits (as
  engine/media_loop does), which adds no delay.
* **aiortc**: ``aiortc.jitterbuffer.JitterBuffer(capacity=16, prefetch=4)``, as
  ``RTCRtpReceiver`` makes it for audio, fed one ``RtpPacket`` per arrival through
  ``add()`` with ``_data`` set to the payload (PCMU's depayload is the identity), exactly
  as ``RTCRtpReceiver._handle_rtp_packet`` does; every frame ``add()`` returns is decoded
  and queued, as the receiver's decoder thread queues frames on the track; each tick
  plays the oldest queued frame (``track.recv()`` without waiting), silence when none.
* **fixed 60 ms / fixed 100 ms**: packet i plays at the first tick at or after its send
  time plus 60 (100) ms if it has arrived by then; missing frames are concealed by
  hotline's `ConcealmentBank` (so the difference to hotline is the buffer alone).
* **libspeexdsp**: ``jitter_buffer_init(160)`` with its defaults; each packet
  ``jitter_buffer_put`` on arrival (timestamp in samples, span 160); each tick
  ``jitter_buffer_get(160)`` then ``jitter_buffer_tick`` (speexdsp's own usage); a frame
  it does not return (MISSING, INSERTION) is played as silence: speexdsp leaves the
  filling to the decoder, and G.711 has none.

Measures, per profile × buffer, medians over the seeds:

* **late %**: packets that arrived after the buffer had played past their place, per
  packet sent — hotline: behind its playout point on arrival (wholly or partly);
  aiortc: behind its origin, which ``add()`` discards (read from its ``_origin``);
  libspeexdsp: timestamp behind ``jitter_buffer_get_pointer_timestamp``; fixed: after
  the due tick;
* **drop %**: packets that arrived in time and were never played — discarded by the
  buffer to shorten its delay or make room (hotline's quiet frames, libspeexdsp's
  skips, aiortc's ``smart_remove`` after a loss stalls it);
* **loss %**: packets never played, network loss included, per packet sent. A packet
  is played only when all of its audio was: for hotline, every one of its samples in a
  subframe the frame marks present (so the concealment passes it through), none of
  them dropped to shrink the delay, skipped or concealed — a packet cut by any of these
  counts as not played (late or dropped), never as played with its delay measured from
  a start that survived; for the others, when its frame is returned or due;
* **added delay**: for each played packet, the time its audio starts playing minus its
  arrival time — the delay the buffer adds on top of the network; mean and 95th
  percentile. The start is the tick that took the packet's first sample plus that
  sample's place in the frame (hotline's frames need not begin where packets do; the
  others' always do);
* **PESQ**: ITU-T P.862 narrow-band MOS-LQO (P.862.1 mapping; the ``pesq`` package) of
  each clip of the output against the same clip of the clean µ-law stream (the packets
  as sent, decoded), the output clip found by cross-correlation (the best lag within
  0–1.5 s per clip; PESQ then aligns utterances within it itself); the mean over the
  clips.

PLC at 5 % random loss (no jitter, every packet that arrives is on time): hotline's
`ConcealmentBank` (which adds no delay), spandsp's ``plc_rx`` /
``plc_fillin`` (libspandsp2, through ctypes) and zero-fill, PESQ of each as above.

Targets checked (printed with the ratio or difference to each): hotline's late loss ≤
0.1 / 1 / 1.5 % with p95 added delay ≤ 30 / 80 / 140 ms on good / wifi / spiky; its PESQ
at least 0.3 above aiortc's and not below libspeexdsp's on every profile; its PLC at
least as good as spandsp's. Comparisons are paired: the median over seeds of the
per-seed difference (same trace, same speech), with its range. Beside the delay target
are two oracles, fixed playouts chosen with hindsight for the same late-loss budget.
The first is a floor: the best offset on the
same tick grid. It is the best of every fixed offset for a buffer that takes a frame per
tick, on the grid or between its points, since a packet must have arrived by the tick
that takes its first sample and an offset past that tick only adds to its delay; on a
stationary network an adaptive buffer has little room below it, and only one that
rides out spikes instead of covering them goes lower. The second frees the offset
from the tick, each packet due only when its first sample plays: what taking audio
sample by sample would cost, and so how much of the floor the 20 ms tick's phase
costs; no buffer on this 20 ms tick can reach it.

Needs: PyPI packages ``aiortc`` and ``pesq`` (bench-only), Debian packages ``espeak-ng``,
``libspeexdsp1`` and ``libspandsp2``; a missing one stops the run with its name.
Single-threaded (OPENBLAS_NUM_THREADS=1).

Run: ``python bench/jitter.py [--quick] [--json PATH] [--seed N] [--seeds 5]
[--cache-dir DIR] [--refresh-cache]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import correlate, resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _netprofiles import PROFILES, Trace, TraceStats, fit, loss_mask, make_trace

from hotline.media import g711
from hotline.media.plc import Concealer
from hotline.rtp.jitter import JitterBuffer, quiet_code_table

Int16Array = npt.NDArray[np.int16]
Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RATE = 8000
FRAME = 160  # samples per packet and per tick
TICK = FRAME / RATE
TS0 = 160 * 1000  # RTP timestamp of packet 0 (not 0: speexdsp treats 0 specially)
DRAIN_TICKS = 100  # ticks after the last packet was sent
LEVEL_DBOV = -26.0  # active speech level of every clip
PAUSE = 0.6  # seconds between clips
EDGE = 0.5  # seconds of silence before the first clip and after the last
MARGIN = 0.25  # seconds of context around a clip when it is scored
MAX_LAG = 1.5  # seconds: the latest a buffer's output is searched for
PLC_LOSS = 0.05
CORPUS_VERSION = 1

BUFFERS = ("hotline", "aiortc", "fixed 60 ms", "fixed 100 ms", "libspeexdsp")
PLC_METHODS = ("hotline", "spandsp", "zero-fill")


@dataclass(frozen=True)
class Target:
    late: float  # fraction
    p95: float  # seconds


TARGETS = {
    "good": Target(0.001, 0.030),
    "wifi": Target(0.01, 0.080),
    "spiky": Target(0.015, 0.140),
}
PESQ_OVER_AIORTC = 0.3

# (voice, text): espeak-ng voice with a male (m) or female (f) variant.
CLIPS: tuple[tuple[str, str], ...] = (
    (
        "en-us+m3",
        "Thank you for calling the vaccination hotline. Appointments are available from"
        " Monday to Saturday, between eight in the morning and six in the evening.",
    ),
    (
        "en-gb+f2",
        "Please have your Medicare card ready before we begin. You will be asked for your"
        " date of birth, your postcode, and a phone number we can call you back on.",
    ),
    (
        "en-us+m1",
        "The nearest clinic to your postcode is on Harbour Street, next to the library."
        " Parking is free for the first two hours, and the entrance has step free access.",
    ),
    (
        "en-us+f4",
        "Your booking is confirmed for Thursday the twelfth of June at half past ten."
        " A text message with the address will arrive in the next few minutes.",
    ),
    (
        "en-gb+m5",
        "If you have had a fever in the last two days, please call us again to move your"
        " appointment. Children under twelve must come with a parent or a guardian.",
    ),
    (
        "en-gb-x-rp+f3",
        "To hear these details again, press star. To speak with one of our nurses, stay"
        " on the line and the next available person will answer your call.",
    ),
)


# -- dependencies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Libraries:
    aiortc_jitter: ModuleType
    aiortc_rtp: ModuleType
    pesq: Callable[..., float]
    speex: ModuleType
    spandsp_plc: ModuleType


def check_dependencies() -> Libraries:
    """Everything the baselines need, or SystemExit naming every missing package."""
    missing: list[str] = []
    modules: dict[str, Any] = {}
    try:
        import aiortc.jitterbuffer
        import aiortc.rtp

        modules["aiortc_jitter"] = aiortc.jitterbuffer
        modules["aiortc_rtp"] = aiortc.rtp
    except ImportError as error:
        missing.append(f"the PyPI package aiortc ({error}): {sys.executable} -m pip install aiortc")
    try:
        from pesq import pesq

        modules["pesq"] = pesq
    except ImportError as error:
        missing.append(f"the PyPI package pesq ({error}): {sys.executable} -m pip install pesq")
    import _spandsp_plc
    import _speexdsp

    try:
        _speexdsp.load()
        modules["speex"] = _speexdsp
    except _speexdsp.SpeexUnavailable as error:
        missing.append(str(error))
    try:
        _spandsp_plc.load()
        modules["spandsp_plc"] = _spandsp_plc
    except _spandsp_plc.SpandspUnavailable as error:
        missing.append(str(error))
    if shutil.which("espeak-ng") is None:
        missing.append("the Debian package espeak-ng (as root: apt-get install espeak-ng)")
    if missing:
        raise SystemExit(
            "bench/jitter.py cannot run its baselines; missing:\n  - " + "\n  - ".join(missing)
        )
    return Libraries(**modules)


# -- speech ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speech:
    audio: Int16Array  # linear, 8 kHz, a whole number of packets long
    clips: tuple[tuple[int, int], ...]  # [start, end) samples of each clip's speech
    voices: tuple[str, ...]
    cached: bool


def espeak_version() -> str:
    done = subprocess.run(
        ["espeak-ng", "--version"], check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.split("Data at")[0].strip()


def speak(text: str, voice: str, workdir: Path) -> Float64Array:
    """espeak-ng's rendering of `text` at 8 kHz (float, its own scale)."""
    wav_path = workdir / "clip.wav"
    command = ["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav_path), text]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(
            f"espeak-ng failed (exit {done.returncode}) for voice {voice}: {done.stderr.strip()}"
        )
    with wave.open(str(wav_path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise SystemExit(
                f"espeak-ng wrote {wav.getnchannels()} channels of {8 * wav.getsampwidth()}"
                " bits; expected mono 16-bit"
            )
        rate = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if raw.size < rate or not np.any(raw):
        raise SystemExit(f"espeak-ng gave no speech for voice {voice}: {text[:50]!r}")
    common = math.gcd(RATE, rate)
    resampled = resample_poly(raw.astype(np.float64), RATE // common, rate // common)
    return np.asarray(resampled, dtype=np.float64)


def at_level(signal: Float64Array, dbov: float) -> Int16Array:
    """`signal` scaled so that its active part (20 ms frames within 40 dB of the
    loudest) has an RMS of `dbov` relative to full scale, trimmed of leading and
    trailing silence."""
    frames = signal[: signal.size // FRAME * FRAME].reshape(-1, FRAME)
    power = np.mean(frames * frames, axis=1)
    active = power >= power.max() * 1e-4
    rms = math.sqrt(float(np.mean(power[active])))
    first, last = np.flatnonzero(active)[[0, -1]]
    scaled = frames[first : last + 1].reshape(-1) * (32768.0 * 10 ** (dbov / 20) / rms)
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


def synthesise() -> tuple[Int16Array, tuple[tuple[int, int], ...]]:
    pieces = [np.zeros(round(EDGE * RATE), np.int16)]
    clips: list[tuple[int, int]] = []
    position = pieces[0].size
    with tempfile.TemporaryDirectory(prefix="hotline-bench-jitter-") as tmp:
        for index, (voice, text) in enumerate(CLIPS):
            clip = at_level(speak(text, voice, Path(tmp)), LEVEL_DBOV)
            clips.append((position, position + clip.size))
            gap = round((PAUSE if index < len(CLIPS) - 1 else EDGE) * RATE)
            pieces += [clip, np.zeros(gap, np.int16)]
            position += clip.size + gap
    audio = np.concatenate(pieces)
    audio = np.concatenate([audio, np.zeros(-audio.size % FRAME, np.int16)])
    return audio, tuple(clips)


def load_speech(cache_dir: Path, refresh: bool) -> Speech:
    """The clips, from the cache when it holds the same recipe's rendering."""
    recipe = json.dumps(
        {
            "version": CORPUS_VERSION,
            "espeak": espeak_version(),
            "clips": CLIPS,
            "level": LEVEL_DBOV,
            "pause": PAUSE,
            "edge": EDGE,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    wav_path = cache_dir / f"speech-{key}.wav"
    meta_path = cache_dir / f"speech-{key}.json"
    voices = tuple(voice for voice, _ in CLIPS)
    if not refresh and wav_path.exists() and meta_path.exists():
        with wave.open(str(wav_path), "rb") as wav:
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
        clips = tuple((int(a), int(b)) for a, b in json.loads(meta_path.read_text())["clips"])
        return Speech(audio, clips, voices, True)
    audio, clips = synthesise()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio.astype("<i2").tobytes())
    meta_path.write_text(json.dumps({"recipe": json.loads(recipe), "clips": clips}, indent=1))
    return Speech(audio, clips, voices, False)


# -- playout -------------------------------------------------------------------------------


@dataclass
class Playout:
    """What one buffer played: the audio of every tick, and for each packet the time
    at which its audio started playing (NaN: not played), on the tick clock."""

    audio: Int16Array  # (ticks × FRAME) flattened
    started: Float64Array  # per packet, seconds
    late: BoolArray  # per packet: arrived after the buffer had played past its place


@dataclass(frozen=True)
class Stream:
    """The packets of one run and the tick clock they meet."""

    trace: Trace
    codes: bytes  # µ-law, FRAME per packet
    order: Int64Array  # delivered packets in arrival order
    ticks: int
    phase: float

    @property
    def packets(self) -> int:
        return int(self.trace.send.size)

    def tick_time(self, k: int) -> float:
        return self.phase + k * TICK

    def arrivals_by_tick(self) -> list[list[int]]:
        """For each tick, the packets handed over just before it (arrived by then)."""
        arrival = self.trace.arrival
        per_tick: list[list[int]] = [[] for _ in range(self.ticks)]
        for i in self.order.tolist():
            k = max(0, math.ceil((arrival[i] - self.phase) / TICK - 1e-9))
            if k < self.ticks:
                per_tick[k].append(i)
        return per_tick


_ULAW_DECODE = g711.ULAW_DECODE
_QUIET = quiet_code_table(g711.ULAW_DECODE)


def run_hotline(stream: Stream) -> Playout:
    """hotline's buffer, each packet followed sample by sample: it is played when every
    one of its samples was played as received — in a subframe the frame marks present,
    which the concealment passes through — and its audio starts at the tick that took
    its first sample plus that sample's place in the frame. A packet any sample of
    which was dropped, skipped or concealed is not played."""
    jb = JitterBuffer(fill=g711.ULAW_SILENCE, quiet_codes=_QUIET)
    concealer = Concealer(FRAME)
    codes, arrival = stream.codes, stream.trace.arrival
    packets = stream.packets
    out = np.empty((stream.ticks, FRAME), dtype=np.int16)
    first_played = np.full(packets, np.nan)  # when each packet's first sample played
    samples_played = np.zeros(packets, dtype=np.int64)
    late = np.zeros(packets, dtype=np.bool_)
    halves = ([False, False], [True, False], [False, True], [True, True])
    sub = jb.subframe_samples
    for k, arrived in enumerate(stream.arrivals_by_tick()):
        now = stream.tick_time(k)
        for i in arrived:
            before = jb.late_samples
            jb.put(i, TS0 + FRAME * i, codes[i * FRAME : (i + 1) * FRAME], float(arrival[i]))
            late[i] = jb.late_samples > before  # wholly or partly behind the playout point
        frame = jb.get(now)
        present = frame.present
        if present:
            for half in range(jb.subframes):
                if not present >> half & 1:
                    continue
                start = frame.position - TS0 + half * sub  # the subframe's samples
                end = start + sub
                for i in range(max(0, start // FRAME), min(packets, -(-end // FRAME))):
                    low, high = max(start, i * FRAME), min(end, (i + 1) * FRAME)
                    samples_played[i] += high - low
                    if low == i * FRAME:  # the packet's first sample
                        first_played[i] = now + (TS0 + i * FRAME - frame.position) / RATE
        samples = _ULAW_DECODE[np.frombuffer(frame.payload, dtype=np.uint8)]
        out[k] = concealer.process(samples, halves[present])
    # No sample plays twice (the buffer's invariant), so FRAME samples is all of them.
    started = np.where(samples_played == FRAME, first_played, np.nan)
    return Playout(out.reshape(-1), started, late)


def run_fixed(stream: Stream, delay: float) -> Playout:
    """Packet i plays at the first tick at or after send + `delay`, if it is there."""
    concealer = Concealer(FRAME)
    trace = stream.trace
    due = np.ceil((trace.send + delay - stream.phase) / TICK - 1e-9).astype(np.int64)
    due_time = stream.phase + due * TICK
    on_time = ~np.isnan(trace.arrival) & (trace.arrival <= due_time + 1e-12)
    at_tick = np.full(stream.ticks, -1, dtype=np.int64)
    at_tick[due[due < stream.ticks]] = np.flatnonzero(due < stream.ticks)
    out = np.empty((stream.ticks, FRAME), dtype=np.int16)
    silence = np.zeros(FRAME, dtype=np.int16)
    codes = np.frombuffer(stream.codes, dtype=np.uint8)
    for k in range(stream.ticks):
        i = int(at_tick[k])
        if i >= 0 and on_time[i]:
            out[k] = concealer.process(_ULAW_DECODE[codes[i * FRAME : (i + 1) * FRAME]], None)
        else:
            out[k] = concealer.process(silence, (False, False))
    started = np.where(on_time & (due < stream.ticks), due_time, np.nan)
    late = ~np.isnan(trace.arrival) & ~on_time
    return Playout(out.reshape(-1), started, late)


def run_aiortc(stream: Stream, libs: Libraries) -> Playout:
    jitter = libs.aiortc_jitter.JitterBuffer(capacity=16, prefetch=4)
    packet_class = libs.aiortc_rtp.RtpPacket
    max_misorder = libs.aiortc_jitter.MAX_MISORDER
    codes = stream.codes
    queue: deque[tuple[int, Int16Array]] = deque()  # the track's queue of decoded frames
    out = np.zeros((stream.ticks, FRAME), dtype=np.int16)
    started = np.full(stream.packets, np.nan)
    late = np.zeros(stream.packets, dtype=np.bool_)
    for k, arrived in enumerate(stream.arrivals_by_tick()):
        for i in arrived:
            # aiortc drops a packet up to MAX_MISORDER behind its origin (the next packet
            # it would release): read from its state, for the count only.
            origin = jitter._origin
            if origin is not None:
                behind = (origin - i) & 0xFFFF
                late[i] = 0 < behind < (i - origin) & 0xFFFF and behind < max_misorder
            payload = codes[i * FRAME : (i + 1) * FRAME]
            packet = packet_class(
                payload_type=0,
                sequence_number=i & 0xFFFF,
                timestamp=(TS0 + FRAME * i) & 0xFFFFFFFF,
                ssrc=0x1234,
                payload=payload,
            )
            packet._data = payload  # what RTCRtpReceiver's depayload gives for PCMU
            _, frame = jitter.add(packet)
            if frame is not None:
                index = (frame.timestamp - TS0) // FRAME
                pcm = _ULAW_DECODE[np.frombuffer(frame.data, dtype=np.uint8)]
                queue.append((index, pcm))
        if queue:
            index, pcm = queue.popleft()
            out[k, : pcm.size] = pcm[:FRAME]
            started[index] = stream.tick_time(k)
    return Playout(out.reshape(-1), started, late)


def run_speex(stream: Stream, libs: Libraries) -> Playout:
    codes = stream.codes
    out = np.zeros((stream.ticks, FRAME), dtype=np.int16)
    started = np.full(stream.packets, np.nan)
    late = np.zeros(stream.packets, dtype=np.bool_)
    ok = libs.speex.GetResult.OK
    playing = False
    with libs.speex.SpeexJitterBuffer(FRAME) as jb:
        for k, arrived in enumerate(stream.arrivals_by_tick()):
            pointer = jb.pointer_timestamp()  # the next sample it will play
            for i in arrived:
                timestamp = TS0 + FRAME * i
                late[i] = playing and timestamp + FRAME <= pointer
                jb.put(codes[i * FRAME : (i + 1) * FRAME], timestamp, FRAME, i, i)
            result, payload, index = jb.get()
            if result == ok and len(payload) == FRAME:
                out[k] = _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]
                started[index] = stream.tick_time(k)
                playing = True
            jb.tick()
    return Playout(out.reshape(-1), started, late)


# -- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    late: float  # fraction of packets sent
    dropped: float  # arrived in time, never played (discarded by the buffer)
    loss: float
    mean_added: float  # seconds
    p95_added: float
    pesq: float
    pesq_failures: int


def pesq_of(
    libs: Libraries,
    reference: Int16Array,
    output: Int16Array,
    clips: Sequence[tuple[int, int]],
    lag: int | None = None,
) -> tuple[float, int]:
    """Mean MOS-LQO over the clips (and how many clips PESQ refused); each output clip
    found by cross-correlation within 0..MAX_LAG unless `lag` (samples) is given."""
    margin = round(MARGIN * RATE)
    longest = round(MAX_LAG * RATE)
    padded = np.concatenate([output, np.zeros(longest + 2 * margin, np.int16)])
    scores: list[float] = []
    failures = 0
    for start, end in clips:
        a, b = max(0, start - margin), min(reference.size, end + margin)
        ref = reference[a:b]
        shift = lag
        if shift is None:
            window = padded[a : b + longest].astype(np.float64)
            corr = correlate(window, ref.astype(np.float64), mode="valid", method="fft")
            shift = int(np.argmax(corr))
        deg = padded[a + shift : b + shift]
        try:
            scores.append(float(libs.pesq(RATE, ref, deg, "nb")))
        except Exception:  # the pesq package raises its own error classes per cause
            failures += 1
    return (statistics.fmean(scores) if scores else float("nan")), failures


def score(
    stream: Stream, playout: Playout, reference: Int16Array, speech: Speech, libs: Libraries
) -> Result:
    trace = stream.trace
    delivered = ~np.isnan(trace.arrival)
    played = ~np.isnan(playout.started)
    sent = stream.packets
    late = delivered & ~played & playout.late
    dropped = delivered & ~played & ~playout.late
    added = playout.started[played] - trace.arrival[played]
    mos, failures = pesq_of(libs, reference, playout.audio, speech.clips)
    return Result(
        late=float(np.count_nonzero(late)) / sent,
        dropped=float(np.count_nonzero(dropped)) / sent,
        loss=float(np.count_nonzero(~played)) / sent,
        mean_added=float(np.mean(added)) if added.size else float("nan"),
        p95_added=float(np.percentile(added, 95)) if added.size else float("nan"),
        pesq=mos,
        pesq_failures=failures,
    )


def oracle_p95(stream: Stream, late_budget: float) -> float:
    """The p95 added delay of the best fixed playout a tick-driven buffer could have
    chosen with hindsight: every packet played at send time plus one offset on this
    run's tick grid (``phase + 20 ms · k`` after its send time), the smallest offset
    whose late loss is within `late_budget`. It is also the best of all fixed offsets, on the grid or off it, for
    a buffer that takes a frame per tick: the frame holding a packet's first sample is
    taken at the last tick at or before that sample's time, so the packet must have
    arrived by then, and an offset `s` past a grid point leaves every packet the same
    deadline and adds `s` to its delay."""
    trace = stream.trace
    delivered = ~np.isnan(trace.arrival)
    network = (trace.arrival - trace.send)[delivered]
    first = stream.phase % TICK
    k = max(0, math.floor((float(network.min()) - first) / TICK))
    while True:
        offset = first + k * TICK
        late = float(np.count_nonzero(network > offset + 1e-12)) / stream.packets
        if late <= late_budget:
            on_time = network[network <= offset + 1e-12]
            return float(np.percentile(offset - on_time, 95))
        k += 1


def free_oracle_p95(stream: Stream, late_budget: float) -> float:
    """The same with the offset free of the tick grid and each packet due at its own
    playout time, not at the tick before it: the smallest offset whose late loss is
    within `late_budget`. What playout would cost if audio were taken sample by
    sample; no buffer that takes 20 ms frames on a 20 ms tick can reach it."""
    trace = stream.trace
    network = np.sort((trace.arrival - trace.send)[~np.isnan(trace.arrival)])
    allowed = math.floor(late_budget * stream.packets + 1e-9)  # packets that may be late
    offset = float(network[max(0, network.size - 1 - allowed)])
    on_time = network[network <= offset]
    return float(np.percentile(offset - on_time, 95))


def plc_run(
    codes: bytes, reference: Int16Array, speech: Speech, seed: int, libs: Libraries
) -> dict[str, float]:
    """5 % random loss, no jitter: each method's PESQ."""
    packets = len(codes) // FRAME
    lost = loss_mask(np.random.default_rng([seed, 0x91C]), packets, PLC_LOSS, 1)
    frames = reference.reshape(packets, FRAME)
    zero = frames.copy()
    zero[lost] = 0
    hotline = Concealer(FRAME)
    ours = np.empty((packets + 1, FRAME), dtype=np.int16)
    silence = np.zeros(FRAME, np.int16)
    with libs.spandsp_plc.SpandspConcealer() as spandsp:
        theirs = np.empty_like(frames)
        for i in range(packets):
            if lost[i]:
                ours[i] = hotline.process(silence, (False, False))
                theirs[i] = spandsp.process(None, FRAME)
            else:
                ours[i] = hotline.process(frames[i], None)
                theirs[i] = spandsp.process(frames[i], FRAME)
    ours[packets] = hotline.process(silence, None)
    aligned = ours.reshape(-1)[: reference.size]
    results: dict[str, float] = {}
    for name, audio in (
        ("hotline", aligned),
        ("spandsp", theirs.reshape(-1)),
        ("zero-fill", zero.reshape(-1)),
    ):
        results[name], _ = pesq_of(libs, reference, audio, speech.clips, lag=0)
    return results


# -- report --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    libs = check_dependencies()
    started = time.perf_counter()
    speech = load_speech(Path(args.cache_dir).expanduser(), args.refresh_cache)
    codes_array = g711.ulaw_encode(speech.audio)
    codes = codes_array.tobytes()
    reference = g711.ulaw_decode(codes_array)
    packets = len(codes) // FRAME
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(
        f"speech: {len(speech.clips)} clips, {speech.audio.size / RATE:.1f} s"
        f" ({'cached' if speech.cached else 'synthesised'}; voices {', '.join(speech.voices)});"
        f" {packets} packets of 20 ms G.711 µ-law per call; seeds {seeds}"
    )
    results: dict[str, dict[str, list[Result]]] = {p: {b: [] for b in BUFFERS} for p in PROFILES}
    achieved: dict[str, list[TraceStats]] = {p: [] for p in PROFILES}
    oracles: dict[str, list[float]] = {p: [] for p in PROFILES}
    free_oracles: dict[str, list[float]] = {p: [] for p in PROFILES}
    for name, profile in PROFILES.items():
        model = fit(profile)
        print(
            f"\n{name}: {profile.describe()} — model: {model.shift * 1e3:.1f} ms +"
            f" {model.scale * 1e3:.2f} ms × gamma({2})"
        )
        for seed in seeds:
            trace = make_trace(profile, packets, seed)
            stats = trace.stats()
            achieved[name].append(stats)
            rng = np.random.default_rng([seed, 0x71C])
            delivered = np.flatnonzero(~trace.lost)
            order = delivered[np.argsort(trace.arrival[delivered], kind="stable")]
            stream = Stream(trace, codes, order, packets + DRAIN_TICKS, float(rng.uniform(0, TICK)))
            runs = {
                "hotline": run_hotline(stream),
                "aiortc": run_aiortc(stream, libs),
                "fixed 60 ms": run_fixed(stream, 0.060),
                "fixed 100 ms": run_fixed(stream, 0.100),
                "libspeexdsp": run_speex(stream, libs),
            }
            for buffer, playout in runs.items():
                results[name][buffer].append(score(stream, playout, reference, speech, libs))
            oracles[name].append(oracle_p95(stream, TARGETS[name].late))
            free_oracles[name].append(free_oracle_p95(stream, TARGETS[name].late))
            print(
                f"  seed {seed}: achieved p50 {stats.p50 * 1e3:.1f} ms, p95 {stats.p95 * 1e3:.1f} ms,"
                f" loss {stats.loss * 100:.2f} % (mean burst {stats.mean_burst:.1f}),"
                f" reordered {stats.reordered * 100:.1f} %"
                + (f", {stats.spikes} spikes" if stats.spikes else "")
                + f"; hotline PESQ {results[name]['hotline'][-1].pesq:.2f}"
            )
    plc: dict[str, list[float]] = {m: [] for m in PLC_METHODS}
    for seed in seeds:
        for method, value in plc_run(codes, reference, speech, seed, libs).items():
            plc[method].append(value)
    elapsed = time.perf_counter() - started
    return report(results, achieved, oracles, free_oracles, plc, seeds, elapsed)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.1f}"


def report(
    results: dict[str, dict[str, list[Result]]],
    achieved: dict[str, list[TraceStats]],
    oracles: dict[str, list[float]],
    free_oracles: dict[str, list[float]],
    plc: dict[str, list[float]],
    seeds: list[int],
    elapsed: float,
) -> dict[str, Any]:
    medians: dict[str, dict[str, dict[str, float]]] = {}
    print(f"\nMedians over {len(seeds)} seeds (added delay = playout start − arrival)")
    print(
        f"{'profile':8} {'buffer':14} {'late %':>7} {'drop %':>7} {'loss %':>7}"
        f" {'add mean':>9} {'add p95':>8} {'PESQ':>6}"
    )
    for name, per_buffer in results.items():
        medians[name] = {}
        for index, (buffer, runs) in enumerate(per_buffer.items()):
            m = {
                field: median([getattr(r, field) for r in runs])
                for field in ("late", "dropped", "loss", "mean_added", "p95_added", "pesq")
            }
            m["pesq_failures"] = sum(r.pesq_failures for r in runs)
            medians[name][buffer] = m
            print(
                f"{name if index == 0 else '':8} {buffer:14} {m['late'] * 100:7.2f}"
                f" {m['dropped'] * 100:7.2f} {m['loss'] * 100:7.2f} {fmt_ms(m['mean_added'])} ms"
                f"{fmt_ms(m['p95_added'])} ms {m['pesq']:6.2f}"
                + (f"  ({m['pesq_failures']} clips PESQ refused)" if m["pesq_failures"] else "")
            )
    plc_medians = {method: median(values) for method, values in plc.items()}
    print(f"\nPLC at {PLC_LOSS:.0%} random loss, no jitter — PESQ (median over seeds):")
    for method, value in plc_medians.items():
        print(f"  {method:10} {value:5.2f}")

    checks: list[dict[str, Any]] = []

    def check(what: str, ok: bool, detail: str) -> None:
        checks.append({"target": what, "met": ok, "detail": detail})
        print(f"  [{'met' if ok else 'MISSED'}] {what}: {detail}")

    def paired(ours: Sequence[float], theirs: Sequence[float]) -> tuple[float, str]:
        """The median of the per-seed differences (same trace, same speech) and
        their range."""
        differences = [a - b for a, b in zip(ours, theirs, strict=True)]
        middle = median(differences)
        return middle, (
            f"median difference {middle:+.2f} over {len(differences)} seeds"
            f" ({min(differences):+.2f} … {max(differences):+.2f})"
        )

    print("\nTargets (hotline; figures are medians over seeds, comparisons paired by seed):")
    for name, target in TARGETS.items():
        ours = medians[name]["hotline"]
        late, p95 = ours["late"], ours["p95_added"]
        check(
            f"{name}: late loss <= {target.late * 100:g} %",
            late <= target.late,
            f"{late * 100:.2f} % (ratio {late / target.late:.2f})",
        )
        floor = median(oracles[name])
        check(
            f"{name}: p95 added delay <= {target.p95 * 1e3:g} ms",
            p95 <= target.p95,
            f"{p95 * 1e3:.1f} ms (ratio {p95 / target.p95:.2f}); the best fixed playout on"
            f" the same tick grid, chosen with hindsight for <= {target.late * 100:g} % late,"
            f" has {floor * 1e3:.1f} ms",
        )
        print(
            f"          (with the offset free of the 20 ms tick, each packet due when its"
            f" first sample plays — out of reach of a buffer taking a frame per tick —"
            f" {median(free_oracles[name]) * 1e3:.1f} ms)"
        )
        pesq = [r.pesq for r in results[name]["hotline"]]
        for other, margin in (("aiortc", PESQ_OVER_AIORTC), ("libspeexdsp", 0.0)):
            theirs = [r.pesq for r in results[name][other]]
            middle, detail = paired(pesq, theirs)
            check(
                f"{name}: PESQ >= {other}" + (f" + {margin}" if margin else ""),
                middle >= margin,
                f"{ours['pesq']:.2f} vs {medians[name][other]['pesq']:.2f}; {detail}",
            )
    middle, detail = paired(plc["hotline"], plc["spandsp"])
    check(
        f"PLC at {PLC_LOSS:.0%} loss: hotline >= spandsp",
        middle >= 0.0,
        f"{plc_medians['hotline']:.2f} vs {plc_medians['spandsp']:.2f}; {detail}",
    )
    print(
        f"\n{sum(c['met'] for c in checks)} of {len(checks)} targets met; run took {elapsed:.0f} s"
    )
    return {
        "seeds": seeds,
        "profiles": {
            name: {
                "profile": asdict(PROFILES[name]),
                "model": asdict(fit(PROFILES[name])),
                "achieved": [asdict(s) for s in achieved[name]],
            }
            for name in PROFILES
        },
        "oracle_p95_added": oracles,
        "free_oracle_p95_added": free_oracles,
        "per_seed": {
            name: {buffer: [asdict(r) for r in runs] for buffer, runs in per_buffer.items()}
            for name, per_buffer in results.items()
        },
        "medians": medians,
        "plc": {"per_seed": plc, "medians": plc_medians},
        "targets": checks,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two seeds instead of five")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument(
        "--cache-dir",
        default="~/.cache/hotline-bench/jitter",
        help="where the synthesised speech is kept (default ~/.cache/hotline-bench/jitter)",
    )
    parser.add_argument("--refresh-cache", action="store_true", help="synthesise again")
    args = parser.parse_args()
    if args.seeds is None:
        args.seeds = 2 if args.quick else 5
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    data = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=float))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
