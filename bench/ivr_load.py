"""Benchmark: IVR calls at rising concurrency against `hotline serve`, measured on the wire.

Each level runs fresh engines (`hotline serve`, flow bench/flows/ivr_load.yaml: a 3 s
prompt, then 4 digits, then a BYE carrying `X-Hotline-Result: code_NNNN`) and SIPp
callers on loopback (UDP) that press one of five codes by RFC 4733:

* `dtmf`  — bench/scenarios/ivr_load_dtmf.xml: the stock `dtmf_2833_N.pcap` captures,
  first key 4 s after the ACK, then every 2.5 s; silent otherwise;
* `audio` — bench/scenarios/ivr_load_audio.xml: the caller also talks for the whole call
  (20 ms PCMU packets, 50/s, the keys embedded in the same RTP stream; captures from
  bench/caller_pcap.py, written into the run's work directory).

A call holds about 11.7 s. SIPp places `calls_factor × level` calls at a rate that reaches
the level (`-l level`, rate = 1.15 × level / hold), so the engine holds `level` calls for
15–18 s in the middle of each 40 s step. A call fails unless the BYE carries the code
pressed. Every run is bounded in time (SIPp `-timeout`, capture duration) and count.

tshark captures the engines' outgoing RTP on `lo` (capture filter: even source ports of
the engines' RTP range, 64-byte snap length) and per level this reports: calls, failed
calls, peak concurrent streams, server CPU (100 = one core; utime+stime of every engine
from /proc/PID/stat, over the plateau where the level is held, and over the whole step),
CPU per call (plateau CPU / mean concurrent calls, % of a core), RFC 3550 interarrival
jitter per stream (max and mean over streams), the largest gap between two packets of a
stream, gaps > 50 ms, and lost packets (sequence numbers never seen). Each level is then
held against issue 3's targets (≥ 800 concurrent DTMF-only calls, ≥ 400 with caller
audio; 0 failed, 0 gaps > 50 ms, max jitter ≤ 3 ms, CPU per call ≤ 0.11 % of a core).

`--processes 1,2` runs every level with one engine, then with two (one per core; each
with its own SIP port and RTP range, the load split between two SIPp instances).
Where the time goes: `--profile SECONDS` records each engine with py-spy during the
plateau; `--gc-trace` logs the engines' garbage collections (a `gc.callbacks` hook put in
front of `hotline.cli`) and counts the gaps over 50 ms that had a collection inside;
`--gc-off` is an experiment that runs the engines with the cyclic collector disabled
(marked as such in every line it prints).

    .venv/bin/python bench/ivr_load.py [--levels 100,200,400,800] [--audio-levels 100,200,400]
        [--processes 1,2] [--variants dtmf,audio] [--json PATH] [--profile 10] [--gc-trace]
        [--keep DIR]

Needs SIPp (Debian sip-tester) and tshark (Debian tshark), and root (SIPp plays pcaps
through a raw socket; tshark captures on lo).

Owns the load plan, the processes it starts (engines, SIPp, tshark, py-spy) and the
figures. Must not know the engine's internals: it sees processes, SIP results, RTP on
the wire and /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caller_pcap import (
    AUDIO_SCENARIO,
    DTMF_SCENARIO,
    EVENT_FRAMES,
    FRAME_SECONDS,
    scenario_codes,
    scenario_timing,
    write_caller_pcaps,
)

from hotline.loadtest.capture import tshark_command, wait_until_capturing
from hotline.loadtest.rtp import CaptureError, Packets, read_pcap

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "bench" / "flows"
FLOW = "ivr_load"
DIALLED = "4000"
STOCK_DTMF = Path("/usr/share/sip-tester")
VARIANTS = ("dtmf", "audio")

RTP_BASE = 11000  # engine i takes RTP ports RTP_BASE + i·RTP_SPAN …, below the ephemeral range
RTP_SPAN = 4000  # ports per engine: 2000 RTP/RTCP pairs
MAX_PROCESSES = 5
RATE_HEADROOM = 1.15  # call rate = headroom × level / hold: SIPp's -l caps the level
SIPP_MARGIN = 30.0  # seconds SIPp may run past the planned end before it is stopped
SAMPLE_SECONDS = 0.5  # CPU sampling period
PLATEAU_SHARE = 0.95  # the plateau: concurrent streams ≥ 95 % of the level
REACHED_SHARE = 0.97  # a level is reached when the peak is ≥ 97 % of it
PACKETS_PER_SECOND = 50  # one 20 ms packet per stream
GAP_LIMIT_MS = 50.0
RTP_CLOCK = 8000  # Hz, PCMU
RESYNC_TICKS = 2 * RTP_CLOCK  # a timestamp step over 2 s (or backwards) restarts the jitter


@dataclass(frozen=True)
class Targets:
    """Issue 3's targets on the 2-core machine."""

    dtmf_calls: int = 800
    audio_calls: int = 400
    failed: int = 0
    gaps_over_50ms: int = 0
    max_jitter_ms: float = 3.0
    cpu_per_call_pct: float = 0.11

    def calls(self, variant: str) -> int:
        return self.dtmf_calls if variant == "dtmf" else self.audio_calls


TARGETS = Targets()


# -- processes --------------------------------------------------------------------------


def free_port(span: int = 1) -> int:
    """A port p with p … p+span-1 free for UDP and TCP on 127.0.0.1."""
    for _ in range(500):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
        probe.close()
        if port % 2 or port + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(port, port + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port found on 127.0.0.1")


def which(tool: str) -> str | None:
    """A tool on PATH, or beside this Python (py-spy installed into the venv)."""
    beside = Path(sys.executable).parent / tool
    return shutil.which(tool) or (str(beside) if beside.exists() else None)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_rusage(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, float]:
    """Reap `proc` by `deadline` (monotonic) and return (exit code, its CPU seconds,
    children included); (None, 0.0) when it is still running at the deadline."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            return None, 0.0
        time.sleep(0.1)


def stop(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 15.0
) -> tuple[int | None, float]:
    """Signal `proc` (if still running), reap it, and return (exit code, CPU seconds)."""
    if proc.returncode is not None:
        return proc.returncode, 0.0
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    code, cpu = wait_rusage(proc, time.monotonic() + grace)
    if code is None:
        proc.kill()
        code, cpu = wait_rusage(proc, time.monotonic() + 5)
    return code, cpu


class StartError(RuntimeError):
    """An engine or the capture did not start; the step is reported as failed."""


@dataclass
class Engine:
    index: int
    proc: subprocess.Popen[bytes]
    sip_port: int
    rtp_min: int
    rtp_max: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


ENGINE_CONFIG = """
node_name: bench-{index}
sip:
  listen:
    - {{transport: udp, host: 127.0.0.1, port: {port}}}
  domain: hotline.bench
limits:
  max_calls: {max_calls}
  max_cps: 5000.0
  requests_per_source: {{rate: 100000.0, burst: 100000}}
rtp:
  port_min: {rtp_min}
  port_max: {rtp_max}
paths:
  data: {data}
  flows: {flows}
  audio: {audio}
ivr:
  default_flow: {flow}
database:
  url: sqlite:///{data}/hotline.db
http:
  enabled: false
logging:
  level: {log_level}
"""


# Run with --gc-trace: the engine's garbage collections of 1 ms or more, logged by a
# gc.callbacks hook installed before hotline starts (the engine's code is unchanged).
# With --gc-off the hook also disables the cyclic collector: an experiment that shows
# the figures without collection pauses, not how hotline runs.
GC_HOOK = """
import gc, os, sys, time
if os.environ.get("HOTLINE_BENCH_GC_OFF") == "1":
    gc.disable()
out = open(os.environ["HOTLINE_BENCH_GC_LOG"], "w", buffering=1)
began = [0.0, 0.0]
def pause(phase, info):
    if phase == "start":
        began[0], began[1] = time.time(), time.perf_counter()
    elif time.perf_counter() - began[1] >= 0.001:
        out.write(f"{began[0]:.6f} {time.perf_counter() - began[1]:.6f} {info['generation']}\\n")
gc.callbacks.append(pause)
from hotline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_engine(
    index: int, work: Path, log_level: str, gc_trace: bool = False, gc_off: bool = False
) -> Engine:
    """`hotline serve` with the bench flow; RTP ports RTP_BASE + index·RTP_SPAN …"""
    port = free_port()
    rtp_min = RTP_BASE + index * RTP_SPAN
    rtp_max = rtp_min + RTP_SPAN - 1
    data = work / f"engine{index}"
    data.mkdir(parents=True, exist_ok=True)
    cfg = data / "config.yaml"
    cfg.write_text(
        textwrap.dedent(
            ENGINE_CONFIG.format(
                index=index,
                port=port,
                max_calls=RTP_SPAN // 2,
                rtp_min=rtp_min,
                rtp_max=rtp_max,
                data=data,
                flows=FLOWS,
                audio=ROOT / "audio",
                flow=FLOW,
                log_level=log_level,
            )
        )
    )
    log = data / "hotline.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    launcher = ["-m", "hotline.cli"]
    if gc_trace or gc_off:
        env["HOTLINE_BENCH_GC_LOG"] = str(data / "gc.log")
        env["HOTLINE_BENCH_GC_OFF"] = "1" if gc_off else "0"
        launcher = ["-c", GC_HOOK]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *launcher, "serve", "--config", str(cfg)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    engine = Engine(index, proc, port, rtp_min, rtp_max, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"hotline exited {proc.returncode} at start:\n{engine.log_text()}")
        text = engine.log_text()
        if "listening on udp" in text and f"flow {FLOW} version" in text:
            return engine
        time.sleep(0.05)
    proc.kill()
    raise StartError(f"hotline did not start within 30 s:\n{engine.log_text()}")


# -- the capture ------------------------------------------------------------------------


@dataclass
class Capture:
    proc: subprocess.Popen[bytes]
    path: Path
    stderr: Path
    max_packets: int


def start_capture(
    path: Path, engines: Sequence[Engine], seconds: float, max_packets: int
) -> Capture:
    lo = min(e.rtp_min for e in engines)
    hi = max(e.rtp_max for e in engines)
    # RTP leaves from the leg's even port; RTCP (odd) and the callers' packets stay out
    bpf = f"udp and src host 127.0.0.1 and src portrange {lo}-{hi} and (udp[0:2] & 1) = 0"
    err = path.with_suffix(".tshark.log")
    with err.open("wb") as out:
        proc = subprocess.Popen(
            tshark_command("lo", bpf, path, seconds, max_packets),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    problem = wait_until_capturing(proc, err)
    if problem is not None:
        proc.kill()
        raise StartError(problem)
    return Capture(proc, path, err, max_packets)


Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]


def read_rtp(path: Path) -> Packets:
    """The IPv4/UDP/RTP packets of a classic pcap (the load test's reader; its
    `CaptureError` is a ValueError naming what is wrong, here prefixed with the file)."""
    try:
        return read_pcap(path.read_bytes())
    except CaptureError as exc:
        raise CaptureError(f"{path}: {exc}") from exc


@dataclass
class StreamStats:
    """Figures over every stream of a capture."""

    packets: int = 0
    streams: int = 0
    max_jitter_ms: float = 0.0  # the largest running RFC 3550 jitter seen in any stream
    mean_jitter_ms: float = 0.0  # mean over streams of their mean running jitter
    streams_over_3ms: int = 0  # streams whose running jitter went above 3 ms
    max_gap_ms: float = 0.0
    gaps_over_50ms: int = 0
    lost: int = 0  # sequence numbers never seen
    duplicates: int = 0
    resyncs: int = 0  # timestamp steps > 2 s or backwards (jitter restarted)
    long_gaps: Float64Array = field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    first: Float64Array = field(default_factory=lambda: np.zeros(0), repr=False)
    last: Float64Array = field(default_factory=lambda: np.zeros(0), repr=False)

    def active(self, at: Float64Array) -> Int64Array:
        """Streams under way at each time of `at`."""
        firsts = np.sort(self.first)
        lasts = np.sort(self.last)
        started = np.searchsorted(firsts, at, side="right")
        ended = np.searchsorted(lasts, at, side="left")
        return (started - ended).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["first"], out["last"], out["long_gaps"]
        return out


def analyse(p: Packets) -> StreamStats:
    """Per stream (source port, destination port, SSRC): RFC 3550 A.8 interarrival
    jitter J += (|D| - J)/16 with D = arrival spacing - RTP timestamp spacing, the gaps
    between arrivals, and the sequence numbers missing between the first and the last."""
    stats = StreamStats(packets=len(p.time))
    if not len(p.time):
        return stats
    key = (p.sport << 48) | (p.dport << 32) | p.ssrc
    order = np.lexsort((p.time, key))
    key, t, seq, ts = key[order], p.time[order], p.seq[order], p.timestamp[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(key)]))
    stats.streams = len(starts)
    stats.first = t[starts]
    stats.last = t[ends - 1]
    max_j: list[float] = []
    mean_j: list[float] = []
    long_gaps: list[Float64Array] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        n = b - a
        ext = np.concatenate(([0], np.cumsum(((np.diff(seq[a:b]) + 32768) % 65536) - 32768)))
        unique = len(np.unique(ext))
        stats.duplicates += n - unique
        stats.lost += int(ext.max() - ext.min() + 1) - unique
        if n < 2:
            continue
        arrival = np.diff(t[a:b])
        stats.max_gap_ms = max(stats.max_gap_ms, float(arrival.max()) * 1000)
        long = np.flatnonzero(arrival > GAP_LIMIT_MS / 1000)
        if len(long):
            stats.gaps_over_50ms += len(long)
            long_gaps.append(np.column_stack((t[a:b][long], t[a:b][long + 1])))
        step = ((np.diff(ts[a:b]) + (1 << 31)) % (1 << 32)) - (1 << 31)
        resync = (step < 0) | (step > RESYNC_TICKS)
        stats.resyncs += int(np.count_nonzero(resync))
        d = np.where(resync, 0.0, arrival - step / RTP_CLOCK)
        jitter = lfilter([1 / 16], [1, -15 / 16], np.abs(d))
        max_j.append(float(jitter.max()) * 1000)
        mean_j.append(float(jitter.mean()) * 1000)
    if long_gaps:
        stats.long_gaps = np.concatenate(long_gaps)
    if max_j:
        stats.max_jitter_ms = max(max_j)
        stats.mean_jitter_ms = float(np.mean(mean_j))
        stats.streams_over_3ms = sum(1 for j in max_j if j > TARGETS.max_jitter_ms)
    return stats


# -- profiles ---------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for prefix in (str(ROOT) + "/", "/usr/lib/python3.11/"):
        path = path.removeprefix(prefix)
    path = re.sub(r".*/site-packages/", "", path)
    return f"{match.group('func')} ({path})"


EPOLL_LEAVES = ("EpollSelector.select (selectors.py)", "select (selectors.py)")


def profile_summary(path: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """py-spy's collapsed stacks → the functions with the most samples, on the CPU
    themselves ('self') and hotline's functions with their callees ('total'), as % of the
    samples py-spy took (it skips idle ones); the event loop inside epoll is counted apart
    ('epoll', % of all samples)."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = epoll = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1] in EPOLL_LEAVES:
            epoll += count
            continue
        samples += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            if "(hotline/" in name:
                total_counts[name] += count
    if not samples:
        return {"self": [], "total": [], "epoll": []}
    return {
        "epoll": [("event loop in epoll", round(100 * epoll / (samples + epoll), 1))],
        "self": [(k, round(100 * v / samples, 1)) for k, v in self_counts.most_common(top)],
        "total": [(k, round(100 * v / samples, 1)) for k, v in total_counts.most_common(top)],
    }


# -- one level --------------------------------------------------------------------------


@dataclass
class Level:
    processes: int
    variant: str
    level: int
    calls: int = 0
    ok: int = 0
    failed: int = 0
    rate_cps: float = 0.0
    wall_s: float = 0.0
    peak_concurrent: int = 0
    plateau_s: float = 0.0
    plateau_mean_concurrent: float = 0.0
    cpu_pct: float = 0.0  # all engines, over the plateau (100 = one core)
    cpu_step_pct: float = 0.0  # all engines, over the whole step
    cpu_per_call_pct: float = 0.0
    cpu_per_engine_pct: list[float] = field(default_factory=list)
    sipp_cpu_pct: float = 0.0  # all SIPp instances over the step
    capture_cpu_pct: float = 0.0  # tshark and dumpcap over the step
    stream: dict[str, Any] = field(default_factory=dict)
    capture_packets: int = 0
    capture_dropped: int = 0
    capture_truncated: bool = False
    engine_results: dict[str, int] = field(default_factory=dict)
    engine_warnings: list[str] = field(default_factory=list)
    sipp_errors: list[str] = field(default_factory=list)
    profile: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    gc: dict[str, Any] = field(default_factory=dict)
    gc_off: bool = False  # the experiment: engines ran with the cyclic GC disabled
    error: str = ""
    misses: list[str] = field(default_factory=list)

    @property
    def meets(self) -> bool:
        return not self.misses


def judge(lv: Level) -> list[str]:
    """What keeps this level from meeting the targets, each with by how much."""
    misses: list[str] = []
    if lv.error:
        return [lv.error]
    if lv.peak_concurrent < REACHED_SHARE * lv.level:
        misses.append(f"peak {lv.peak_concurrent} of {lv.level} concurrent calls")
    if lv.failed > TARGETS.failed:
        misses.append(f"{lv.failed} failed calls ({100 * lv.failed / max(lv.calls, 1):.1f} %)")
    gaps = int(lv.stream.get("gaps_over_50ms", 0))
    if gaps > TARGETS.gaps_over_50ms:
        misses.append(f"{gaps} gaps > 50 ms (max {lv.stream.get('max_gap_ms', 0):.0f} ms)")
    jitter = float(lv.stream.get("max_jitter_ms", 0.0))
    if jitter > TARGETS.max_jitter_ms:
        misses.append(
            f"max jitter {jitter:.2f} ms > {TARGETS.max_jitter_ms:g} ms "
            f"(+{jitter - TARGETS.max_jitter_ms:.2f} ms, "
            f"{lv.stream.get('streams_over_3ms', 0)} of "
            f"{lv.stream.get('streams', 0)} streams)"
        )
    if lv.cpu_per_call_pct > TARGETS.cpu_per_call_pct:
        misses.append(
            f"CPU/call {lv.cpu_per_call_pct:.3f} % > {TARGETS.cpu_per_call_pct:g} % "
            f"(+{100 * (lv.cpu_per_call_pct / TARGETS.cpu_per_call_pct - 1):.0f} %)"
        )
    if lv.capture_dropped:
        misses.append(f"capture dropped {lv.capture_dropped} packets (figures incomplete)")
    if lv.capture_truncated:
        misses.append("capture stopped at its packet limit (figures incomplete)")
    return misses


@dataclass
class Plan:
    scenario: Path
    cwd: Path
    hold: float
    calls_factor: float
    profile_seconds: float
    log_level: str
    work: Path
    keep: bool
    gc_trace: bool
    gc_off: bool


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _sipp_counts(stat: Path, screen: Path) -> tuple[int, int]:
    ok = failed = -1
    if stat.exists():
        rows = list(csv.reader(stat.open(), delimiter=";"))
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            ok = int(last[head.index("SuccessfulCall(C)")])
            failed = int(last[head.index("FailedCall(C)")])
    if screen.exists():
        text = screen.read_text(errors="replace")
        oks = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
        fails = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
        if oks and int(oks[-1]) > ok:
            ok = int(oks[-1])
        if fails and int(fails[-1]) > failed:
            failed = int(fails[-1])
    return max(ok, 0), max(failed, 0)


SIPP_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
SIPP_NOISE = ("prefers looking for pcap files next to the scenario",)


def _sipp_errors(path: Path, limit: int = 4) -> list[str]:
    """SIPp's error file, grouped: its events are stamped 'date<TAB>time<TAB>epoch: ' and
    not always separated by a newline."""
    if not path.exists():
        return []
    seen: Counter[str] = Counter()
    for event in SIPP_EVENT.split(path.read_text(errors="replace")):
        text = " ".join(event.split())
        if (
            not text
            or text.startswith("The following events occurred")
            or any(noise in text for noise in SIPP_NOISE)
        ):
            continue
        text = re.sub(r"'(\w+ sip:|SIP/2\.0 \d+)[^']*'?", r"'\1…'", text)
        text = re.sub(r"(Call-I[Dd]:?|call(-id)?) *'?[\w.@:-]+'?", r"\1 …", text)
        seen[text[:200]] += 1
    return [f"{n} × {msg}" for msg, n in seen.most_common(limit)]


def _engine_outcome(engines: Sequence[Engine]) -> tuple[dict[str, int], list[str]]:
    results: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for e in engines:
        text = e.log_text()
        for result in re.findall(rf"flow {FLOW} ended: (\S+)", text):
            results["code_NNNN" if re.fullmatch(r"code_\d{4}", result) else result] += 1
        for line in text.splitlines():
            if " WARNING " in line or " ERROR " in line or "Traceback" in line:
                msg = re.sub(r"^\S+ \S+ ", "", line)
                msg = re.sub(r"call \S+@\S+", "call …", msg)
                msg = re.sub(r"\d+(\.\d+)?", "N", msg)
                warnings[msg[:160]] += 1
    return dict(results), [f"{n} × {m}" for m, n in warnings.most_common(5)]


def _start_sipp(
    plan: Plan, engine: Engine, step: Path, rate: float, limit: int, calls: int, budget: float
) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    tag = f"sipp{engine.index}"
    stat, screen, err = step / f"{tag}.csv", step / f"{tag}.out", step / f"{tag}.err"
    cmd = [
        "sipp", "-sf", str(plan.scenario), f"127.0.0.1:{engine.sip_port}", "-s", DIALLED,
        "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port(4)),
        "-r", f"{rate:.2f}", "-l", str(limit), "-m", str(calls), "-nostdin",
        "-timeout", f"{math.ceil(budget)}s", "-timeout_error",
        "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_err", "-error_file", str(err),
    ]  # fmt: skip
    with screen.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=plan.cwd, stdout=out, stderr=subprocess.STDOUT)
    return proc, stat, screen, err


def _start_pyspy(engine: Engine, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    cmd = [
        which("py-spy") or "py-spy", "record", "-p", str(engine.proc.pid), "-d", str(math.ceil(seconds)),
        "-r", "100", "-f", "raw", "--nonblocking", "-o", str(out),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_level(processes: int, variant: str, level: int, plan: Plan) -> Level:
    """One step: fresh engines, a capture, SIPp placing the calls; then the figures."""
    lv = Level(processes, variant, level, gc_off=plan.gc_off)
    step = plan.work / f"p{processes}-{variant}-{level}{'-gc-off' if plan.gc_off else ''}"
    step.mkdir(parents=True)
    lv.calls = max(1, round(level * plan.calls_factor))
    lv.rate_cps = round(RATE_HEADROOM * level / plan.hold, 2)
    planned = lv.calls / lv.rate_cps + plan.hold
    budget = planned + SIPP_MARGIN
    engines: list[Engine] = []
    capture: Capture | None = None
    sipps: list[tuple[subprocess.Popen[bytes], Path, Path, Path]] = []
    profiles: list[tuple[subprocess.Popen[bytes], Path, int]] = []
    samples: list[tuple[float, float, list[float]]] = []
    done = threading.Event()

    def sample() -> None:
        while True:
            now = time.time()
            try:
                per = [cpu_seconds(e.proc.pid) for e in engines]
            except OSError:
                return
            samples.append((now, sum(per), per))
            if done.wait(SAMPLE_SECONDS):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sipp_cpu = capture_cpu = wall = 0.0
    try:
        for i in range(processes):  # one by one: the finally stops those that started
            engines.append(start_engine(i, step, plan.log_level, plan.gc_trace, plan.gc_off))
        seconds = budget + 15
        capture = start_capture(
            step / "rtp.pcap",
            engines,
            seconds,
            int(level * PACKETS_PER_SECOND * seconds * 1.2) + 10_000,
        )
        sampler.start()
        t0 = time.monotonic()
        for e, n_level, n_calls in zip(
            engines, _split(level, processes), _split(lv.calls, processes), strict=True
        ):
            if n_level and n_calls:
                sipps.append(
                    _start_sipp(
                        plan, e, step, lv.rate_cps * n_level / level, n_level, n_calls, budget
                    )
                )
        if plan.profile_seconds > 0:
            # the plateau begins once the level is reached, level / rate seconds in
            time.sleep(min(level / lv.rate_cps + 2, planned))
            for e in engines:
                out_path = step / f"engine{e.index}.pyspy.txt"
                profiles.append(
                    (_start_pyspy(e, plan.profile_seconds, out_path), out_path, e.index)
                )
        deadline = time.monotonic() + budget + 30
        for proc, *_ in sipps:
            code, cpu = wait_rusage(proc, deadline)
            if code is None:
                code, cpu = stop(proc, signal.SIGINT)
            sipp_cpu += cpu
        wall = time.monotonic() - t0
        time.sleep(1.0)  # the streams of the last BYEs end
        done.set()
        sampler.join()
        for prof, out_path, index in profiles:
            wait_rusage(prof, time.monotonic() + plan.profile_seconds + 20)
            stop(prof)
            if out_path.exists():
                lv.profile[f"engine{index}"] = profile_summary(out_path)
        _, capture_cpu = stop(capture.proc, signal.SIGINT)
    except StartError as exc:
        lv.error = " ".join(str(exc).split())[:300]
        lv.failed = lv.calls
        lv.misses = judge(lv)
        return lv
    finally:
        done.set()
        for proc, *_ in sipps:
            stop(proc, signal.SIGINT)
        for prof, *_ in profiles:
            stop(prof)
        if capture is not None:
            stop(capture.proc, signal.SIGINT)
        for e in engines:
            stop(e.proc)
    lv.wall_s = round(wall, 1)
    lv.sipp_cpu_pct = round(100 * sipp_cpu / wall, 1)
    lv.capture_cpu_pct = round(100 * capture_cpu / wall, 1)
    for _, stat, screen, err in sipps:
        ok, failed = _sipp_counts(stat, screen)
        lv.ok += ok
        lv.failed += failed
        lv.sipp_errors += _sipp_errors(err)
    lv.failed = max(lv.failed, lv.calls - lv.ok)  # calls never finished count as failed
    lv.engine_results, lv.engine_warnings = _engine_outcome(engines)
    tshark_log = capture.stderr.read_text(errors="replace")
    dropped = re.findall(r"(\d+) packets? dropped", tshark_log)
    lv.capture_dropped = sum(int(d) for d in dropped)
    packets = read_rtp(capture.path)
    lv.capture_packets = len(packets.time)
    lv.capture_truncated = lv.capture_packets >= capture.max_packets
    stats = analyse(packets)
    lv.stream = stats.summary()
    _cpu_figures(lv, stats, samples, engines)
    if plan.gc_trace or plan.gc_off:
        lv.gc = _gc_figures(engines, stats)
    lv.misses = judge(lv)
    if not plan.keep:
        capture.path.unlink(missing_ok=True)
    return lv


def _gc_figures(engines: Sequence[Engine], stats: StreamStats) -> dict[str, Any]:
    """The engines' collections of 1 ms or more, and how many of the gaps over 50 ms had
    a collection of 5 ms or more running inside them."""
    rows: list[tuple[float, float, int]] = []
    for e in engines:
        path = e.log.parent / "gc.log"
        if path.exists():
            for line in path.read_text().splitlines():
                at, seconds, generation = line.split()
                rows.append((float(at), float(seconds), int(generation)))
    out: dict[str, Any] = {"pauses_over_1ms": len(rows)}
    for gen in (0, 1, 2):
        pauses = [r[1] * 1000 for r in rows if r[2] == gen]
        out[f"gen{gen}"] = {
            "count": len(pauses),
            "max_ms": round(max(pauses, default=0.0), 1),
            "total_ms": round(sum(pauses), 1),
        }
    long = [(r[0], r[0] + r[1]) for r in rows if r[1] >= 0.005]
    gaps = stats.long_gaps
    during = 0
    if len(gaps) and long:
        began = np.asarray([g[0] for g in long])
        ended = np.asarray([g[1] for g in long])
        for start, end in gaps.tolist():
            if np.any((began < end) & (ended > start)):
                during += 1
    out["gaps_over_50ms_during_gc"] = during
    return out


def _cpu_figures(
    lv: Level,
    stats: StreamStats,
    samples: list[tuple[float, float, list[float]]],
    engines: Sequence[Engine],
) -> None:
    if len(samples) < 2:
        return
    times = np.asarray([s[0] for s in samples])
    cpu = np.asarray([s[1] for s in samples])
    span = times[-1] - times[0]
    lv.cpu_step_pct = round(float(100 * (cpu[-1] - cpu[0]) / span), 1) if span > 0 else 0.0
    active = stats.active(times) if stats.streams else np.zeros(len(times), dtype=np.int64)
    lv.peak_concurrent = int(active.max()) if len(active) else 0
    if lv.peak_concurrent == 0:
        return
    threshold = PLATEAU_SHARE * min(lv.level, lv.peak_concurrent)
    held = np.flatnonzero(active >= threshold)
    a, b = int(held[0]), int(held[-1])
    if b <= a:
        a, b = max(0, a - 1), min(len(times) - 1, a + 1)
    dt = times[b] - times[a]
    if dt <= 0:
        return
    lv.plateau_s = round(float(dt), 1)
    lv.plateau_mean_concurrent = round(float(active[a : b + 1].mean()), 1)
    lv.cpu_pct = round(float(100 * (cpu[b] - cpu[a]) / dt), 1)
    lv.cpu_per_engine_pct = [
        round(float(100 * (samples[b][2][i] - samples[a][2][i]) / dt), 1)
        for i in range(len(engines))
    ]
    lv.cpu_per_call_pct = round(lv.cpu_pct / lv.plateau_mean_concurrent, 4)


# -- report -----------------------------------------------------------------------------

HEADER = (
    f"{'procs':>5} {'variant':7} {'level':>5} {'calls':>5} {'failed':>6} {'peak':>5} "
    f"{'CPU %':>6} {'CPU/call %':>10} {'jitter max/mean ms':>18} {'max gap ms':>10} "
    f"{'gaps>50':>7} {'lost':>6}  verdict"
)


def row(lv: Level) -> str:
    s = lv.stream
    jitter = f"{s.get('max_jitter_ms', 0):.2f} / {s.get('mean_jitter_ms', 0):.2f}"
    verdict = "meets" if lv.meets else "misses: " + "; ".join(lv.misses)
    if lv.gc_off:
        verdict = "[GC OFF, experiment] " + verdict
    return (
        f"{lv.processes:>5} {lv.variant:7} {lv.level:>5} {lv.calls:>5} {lv.failed:>6} "
        f"{lv.peak_concurrent:>5} {lv.cpu_pct:>6.1f} {lv.cpu_per_call_pct:>10.3f} "
        f"{jitter:>18} {s.get('max_gap_ms', 0):>10.1f} {s.get('gaps_over_50ms', 0):>7} "
        f"{s.get('lost', 0):>6}  {verdict}"
    )


def details(lv: Level) -> str:
    if lv.error:
        return f"      {lv.error}"
    lines = [
        f"      step {lv.wall_s:.0f} s at {lv.rate_cps:g} calls/s; plateau {lv.plateau_s:.0f} s at "
        f"{lv.plateau_mean_concurrent:.0f} calls; engine CPU over the step {lv.cpu_step_pct:.1f} %"
        + (f" (per engine {lv.cpu_per_engine_pct})" if len(lv.cpu_per_engine_pct) > 1 else "")
        + f"; SIPp {lv.sipp_cpu_pct:.0f} %, capture {lv.capture_cpu_pct:.0f} %",
        f"      streams {lv.stream.get('streams', 0)}, packets {lv.capture_packets}, "
        f"duplicates {lv.stream.get('duplicates', 0)}, timestamp resyncs "
        f"{lv.stream.get('resyncs', 0)}; engine results {lv.engine_results}",
    ]
    if lv.gc:
        g = lv.gc
        lines.append(
            f"      GC pauses ≥ 1 ms: {g['pauses_over_1ms']} (gen2 {g['gen2']['count']}, max "
            f"{g['gen2']['max_ms']} ms; gen1 max {g['gen1']['max_ms']} ms; gen0 max "
            f"{g['gen0']['max_ms']} ms); gaps > 50 ms with a GC pause ≥ 5 ms inside: "
            f"{g['gaps_over_50ms_during_gc']} of {lv.stream.get('gaps_over_50ms', 0)}"
        )
    lines += [f"      engine log: {w}" for w in lv.engine_warnings[:3]]
    lines += [f"      SIPp error: {e}" for e in lv.sipp_errors[:3]]
    for engine, prof in lv.profile.items():
        top = ", ".join(f"{name} {pct:g} %" for name, pct in prof["self"][:6])
        epoll = prof["epoll"][0][1] if prof["epoll"] else 0.0
        lines.append(f"      py-spy {engine} ({epoll:g} % in epoll), self: {top}")
    return "\n".join(lines)


def verdicts(results: Sequence[Level]) -> list[str]:
    out: list[str] = []
    for procs in sorted({r.processes for r in results}):
        for variant in VARIANTS:
            runs = [r for r in results if r.processes == procs and r.variant == variant]
            if not runs:
                continue
            need = TARGETS.calls(variant)
            clean = [r for r in runs if r.meets]
            best = max((r.level for r in clean), default=0)
            what = "DTMF-only" if variant == "dtmf" else "with caller audio"
            name = f"{procs} engine process{'es' if procs > 1 else ''}, {what}"
            if any(r.gc_off for r in runs):
                name += " [cyclic GC OFF: an experiment, not how hotline runs]"
            if best >= need:
                out.append(f"{name}: target ≥ {need} concurrent calls MET (clean up to {best})")
                continue
            failing = [r for r in runs if not r.meets and r.level >= need]
            at = min(failing, key=lambda r: r.level) if failing else None
            tail = (
                (f"; at {at.level}: " + "; ".join(at.misses))
                if at
                else f"; no level ≥ {need} was run"
            )
            out.append(
                f"{name}: target ≥ {need} concurrent calls MISSED "
                f"(highest clean level {best or 'none'}){tail}"
            )
    return out


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for tool, flag in (("sipp", "-v"), ("tshark", "--version")):
        out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=20)
        match = re.search(r"(SIPp v\S+|TShark \(Wireshark\) \S+)", out.stdout + out.stderr)
        versions[tool] = match.group(1) if match else "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected levels like 100,200,400, found {text!r}"
        ) from None
    if any(v <= 0 for v in levels):
        raise argparse.ArgumentTypeError(f"levels must be positive, found {text!r}")
    return levels


def write_json(
    path: Path,
    info: dict[str, Any],
    hold: float,
    args: argparse.Namespace,
    results: Sequence[Level],
) -> None:
    """Every figure so far (rewritten after each step, so a stopped run keeps its steps)."""
    doc = {
        "benchmark": "ivr_load",
        "machine": info,
        "targets": asdict(TARGETS),
        "call_hold_s": round(hold, 2),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "levels": [{**asdict(r), "meets": r.meets} for r in results],
        "verdicts": verdicts(results),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--levels",
        type=_levels,
        default=[100, 200, 400, 800],
        help="concurrent DTMF-only calls per step (default 100,200,400,800)",
    )
    ap.add_argument(
        "--audio-levels",
        type=_levels,
        default=[100, 200, 400],
        help="concurrent calls with caller audio per step (default 100,200,400)",
    )
    ap.add_argument(
        "--variants", default="dtmf,audio", help="dtmf, audio or both (default dtmf,audio)"
    )
    ap.add_argument(
        "--processes",
        type=_levels,
        default=[1],
        help="engine processes, e.g. 1,2 to run every level with one, then two",
    )
    ap.add_argument(
        "--calls-factor",
        type=float,
        default=2.5,
        help="calls per step as a multiple of the level (default 2.5)",
    )
    ap.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="record each engine with py-spy for SECONDS during each plateau",
    )
    ap.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="the engines' log level (default info, as shipped)",
    )
    ap.add_argument(
        "--gc-trace",
        action="store_true",
        help="log the engines' garbage collections (a gc.callbacks hook) and count the gaps "
        "over 50 ms they explain",
    )
    ap.add_argument(
        "--gc-off",
        action="store_true",
        help="EXPERIMENT: run the engines with Python's cyclic GC disabled (implies "
        "--gc-trace), to see the figures without collection pauses",
    )
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    ap.add_argument("--keep", type=Path, help="keep logs and captures in this directory")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        ap.error(f"--variants: expected dtmf and/or audio, found {args.variants!r}")
    if any(n > MAX_PROCESSES for n in args.processes):
        ap.error(f"--processes: at most {MAX_PROCESSES} engines (RTP ranges below 32768)")
    if args.calls_factor < 1:
        ap.error("--calls-factor must be at least 1")
    tools = {"sipp": "sip-tester", "tshark": "tshark"}
    if args.profile > 0:
        tools["py-spy"] = "py-spy (pip install py-spy)"
    missing = [pkg for tool, pkg in tools.items() if which(tool) is None]
    if missing:
        print(
            f"missing: {', '.join(missing)} — install them (make bench-ivr-load does)",
            file=sys.stderr,
        )
        return 2
    if os.geteuid() != 0:
        print(
            "needs root: SIPp plays pcaps through a raw socket and tshark captures on lo",
            file=sys.stderr,
        )
        return 2
    absent = [
        str(STOCK_DTMF / f"dtmf_2833_{k}.pcap")
        for k in "0123456789"
        if not (STOCK_DTMF / f"dtmf_2833_{k}.pcap").exists()
    ]
    if absent:
        print(f"SIPp's stock DTMF captures are missing: {absent[0]} …", file=sys.stderr)
        return 2
    for procs in args.processes:
        top = max(args.levels + args.audio_levels) // procs
        if top > RTP_SPAN // 2:
            ap.error(f"level {top} per engine needs more than {RTP_SPAN // 2} RTP port pairs")

    work = args.keep or Path(tempfile.mkdtemp(prefix="hotline-ivr-load-"))
    work.mkdir(parents=True, exist_ok=True)
    first_key, key_gap = scenario_timing(DTMF_SCENARIO)
    codes = scenario_codes(AUDIO_SCENARIO)
    pcaps = work / "pcaps"
    write_caller_pcaps(
        pcaps,
        codes,
        first_key=first_key,
        key_gap=key_gap,
        tail=2.0,
        words_dir=ROOT / "audio" / "words" / "en",
    )
    n_keys = len(codes[0])
    hold = first_key + (n_keys - 1) * key_gap + EVENT_FRAMES * FRAME_SECONDS
    info = machine()
    print(
        f"ivr_load: {info['cpus']} CPUs ({info['cpu_model']}), {info['sipp']}, "
        f"{info['tshark']}; call hold ≈ {hold:.1f} s; work dir {work}"
    )
    print(
        f"targets: ≥ {TARGETS.dtmf_calls} DTMF-only / ≥ {TARGETS.audio_calls} with audio, "
        f"0 failed, 0 gaps > 50 ms, max jitter ≤ {TARGETS.max_jitter_ms:g} ms, "
        f"CPU/call ≤ {TARGETS.cpu_per_call_pct:g} % of a core\n",
        flush=True,
    )
    results: list[Level] = []
    print(HEADER, flush=True)
    for procs in args.processes:
        for variant in variants:
            plan = Plan(
                scenario=DTMF_SCENARIO if variant == "dtmf" else AUDIO_SCENARIO,
                cwd=work if variant == "dtmf" else pcaps,
                hold=hold,
                calls_factor=args.calls_factor,
                profile_seconds=args.profile,
                log_level=args.log_level,
                work=work,
                keep=args.keep is not None,
                gc_trace=args.gc_trace,
                gc_off=args.gc_off,
            )
            for level in args.levels if variant == "dtmf" else args.audio_levels:
                lv = run_level(procs, variant, level, plan)
                results.append(lv)
                print(row(lv))
                print(details(lv), flush=True)
                if args.json:
                    write_json(args.json, info, hold, args, results)
    print()
    summary = verdicts(results)
    for line in summary:
        print(line)
    if args.json:
        write_json(args.json, info, hold, args, results)
        print(f"\nfigures written to {args.json}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
