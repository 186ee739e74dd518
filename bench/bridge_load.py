"""Benchmark: SIPp callers bridged to SIPp agents at rising concurrency (issue 6).

Each step runs a fresh `hotline serve` (config generated into the step's directory) and,
on loopback (UDP):

* the agents' phones — one SIPp UAS (bench/scenarios/bridge/agent_uas_echo.xml, run
  with -rtp_echo, or agent_uas_stream.xml with `--agent-media stream`) that answers
  every INVITE with 200 + SDP and stays until the engine's BYE; a second SIPp
  (agent_register.xml) REGISTERs every agent user (agent0001 …) with digest (MD5,
  qop=auth) and that UAS as the contact. The step starts only when the engine shows
  every agent available and idle;
* the callers — SIPp (caller.xml) dialling the queue flow (tests/data/flows/queue.yaml:
  a beep, then queue `help`), talking from the ACK on without a break (SIPp's
  rtp_stream looping speech from audio/words/en, 20 ms PCMU, 50 packets/s) and hanging
  up after `--talk` seconds. SIPp places `calls_factor × level` calls at
  1.15 × level / hold calls per second with `-l level`, so the engine holds `level`
  bridges for a while in the middle of each step.

There are `level × 1.1 + 2` agents (wrap-up 0, logged in from the start), so a caller
never waits for one. An answered offer joins the caller's and the agent's legs in one
media conference (jitter buffer, concealment, mix-minus), so every bridge carries two
streams into the engine and two out of it.

The baseline, in the same run and at the same levels: the same callers sent to the
IVR only (tests/data/flows/listen.yaml: a beep, then a menu that waits; each call one
leg, no bridge, no agents), so a bridge's cost is set against an IVR call's.

Per step, from the engine's /metrics (scraped once a second), /proc and SIPp:

* calls and failed calls: SIPp's failed calls (-trace_stat, the final screen,
  -trace_err), calls that never finished, and, with agents, completed calls that were
  never bridged (`hotline_acd_events_total{event="bridged"}`); failed agent legs, judged
  too (the INVITEs the agents' UAS took less the calls it completed; the calls SIPp
  makes of stray retransmissions are shown apart);
  the callers' mean INVITE → 200 time (SIPp's) and datagrams dropped at the engine's
  SIP socket show signalling falling behind;
* peak and plateau concurrency: agents on a call (`hotline_agents{state="on_call"}`),
  or calls in progress for the IVR baseline; the plateau is where it stays at 95 % of
  the level or more;
* engine CPU over the plateau (utime + stime from /proc/PID/stat, the engine's and its
  media worker processes' with `--media-workers`; 100 = one core), CPU
  per bridge (per IVR call for the baseline) and per media leg, % of one core;
* the media tick's duration (p50, p99, p99.9 interpolated in the
  `hotline_media_tick_seconds` histogram over the plateau) and ticks skipped;
* packets: RTP in and out of the engine, sequence gaps it saw, and the engine's
  internal loss on bridged legs, defined as

      (D + L + O + S) / (P + D)

  where P = packets the bridged legs' jitter buffers received
  (`hotline_jitter_buffer_total{what="packets"}`), L = those that came too late to play
  (`late`), O = those dropped for room (`overflows`), S = frames lost to skipped media
  ticks (each skipped tick loses one 20 ms frame on every bridged leg: the increase of
  `hotline_media_ticks_skipped_total` between two scrapes × 2 × the larger bridge
  count of the two),
  and D = datagrams the kernel dropped at the engine's RTP sockets because the engine
  did not read them in time (the `drops` column of /proc/net/udp for the engine's RTP
  ports, sampled once a second; a socket's drops in the second before it closed are
  missed). All over the whole step, both directions (caller → agent and agent →
  caller). Exact while no tick is skipped; once ticks are skipped it is an upper bound
  (a frame of a skipped tick whose audio later overflows the buffer counts in S and O).
  Frames concealed (arrived too late or never) are shown apart, as a share of frames
  played.

With `--capture`, tshark also records the engine's RTP on `lo` (64-byte snap, bounded
in time and count) and the step reports packets on the wire per direction — callers →
engine against engine → agents, agents → engine against engine → callers — and the
engine's outgoing streams' gaps over 50 ms. It costs CPU on a 2-core machine; the CPU
figures of such a run are marked.

Steps after the first start after `--settle` seconds of rest (45 by default). On the
2-core development VM, 400-bridge steps run straight after another step met the target
in 0 of 8 runs (ticks skipped in stalls of 100 ms and more, 503s), and in 7 of 16 when
each started after 45 s of rest or more: the machine (whose kernel pages out and hands back
memory a step has just freed) needs the time, and the engine's capacity is what is
measured, not the last step's aftermath.

Targets (issue 6): ≥ 400 concurrent bridges with 0 failed calls and < 0.1 % of packets
lost inside the engine; CPU per bridge is reported, and its ratio to the CPU per IVR
call at the same level.

    .venv/bin/python bench/bridge_load.py [--levels 100,200,400] [--quick] [--talk 25]
        [--agent-media echo|stream] [--no-baseline] [--capture] [--media-workers N]
        [--settle 45] [--json PATH] [--keep DIR]

Needs SIPp (Debian sip-tester, built with RTP streaming: SIPp 3.6) and, for
`--capture`, tshark and root. Every process is bounded in time (SIPp -timeout and
-recv_timeout, capture duration and packet count) and stopped on exit, also on Ctrl-C.

Owns the load plan, the engine config of a step, the processes it starts (engine,
SIPp, tshark) and the figures. Must not know the engine's internals: it sees processes,
SIP results, /metrics, /proc and, with --capture, RTP on the wire.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
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
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caller_pcap import speech_samples

from hotline.loadtest.capture import tshark_command, wait_until_capturing
from hotline.media import g711

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "bench" / "scenarios" / "bridge"
FLOWS = ROOT / "tests" / "data" / "flows"
QUEUE_NUMBER = "queue"  # queue.yaml's number
IVR_NUMBER = "4000"  # no flow claims it: ivr.default_flow (listen) answers
VARIANTS = ("bridge", "ivr")
AGENT_MEDIA = ("echo", "stream")
QUEUE = "help"
DOMAIN = "hotline.bench"

AGENT_SHARE = 1.1  # agents per concurrent caller (plus AGENT_SPARE): nobody waits
AGENT_SPARE = 2
RATE_HEADROOM = 1.15  # call rate = headroom × level / hold: SIPp's -l caps the level
SETUP_SECONDS = 0.5  # answer → beep → offer → bridge, added to the talk time
SIPP_MARGIN = 60.0  # seconds SIPp may run past the planned end before it gives up
REGISTER_RATE = 200  # REGISTERs per second
SAMPLE_SECONDS = 1.0  # CPU, /metrics and socket drops, once a second
PLATEAU_SHARE = 0.95  # the plateau: concurrency ≥ 95 % of the level
REACHED_SHARE = 0.97  # a level is reached when the peak is ≥ 97 % of it
PACKETS_PER_SECOND = 50  # one 20 ms packet per stream
SPEECH_OFFSET_AGENT = 0.37  # the agents' speech starts this far into the recordings


@dataclass(frozen=True)
class Targets:
    """Issue 6's targets on the 2-core machine."""

    bridges: int = 400
    failed: int = 0
    internal_loss_pct: float = 0.1  # strictly below


TARGETS = Targets()


# -- processes --------------------------------------------------------------------------


class Processes:
    """Every process this run started, so that all of them are stopped on the way out
    (normal end, error, Ctrl-C or SIGTERM), each by its own pid."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        cmd: Sequence[str],
        *,
        out: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                list(cmd), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        self.live.append(proc)
        return proc

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0
    ) -> float:
        """Signal `proc` if it still runs, reap it, and return its CPU seconds (its
        children's included; 0.0 when it had been reaped before)."""
        cpu = 0.0
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            code, cpu = reap(proc, time.monotonic() + grace)
            if code is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                _, cpu = reap(proc, time.monotonic() + 5)
        if proc in self.live:
            self.live.remove(proc)
        return cpu

    def stop_all(self) -> None:
        for proc in list(reversed(self.live)):
            self.stop(proc, signal.SIGINT if _is_sipp(proc) else signal.SIGTERM, grace=5.0)


def _is_sipp(proc: subprocess.Popen[bytes]) -> bool:
    args = proc.args
    return isinstance(args, list) and bool(args) and Path(str(args[0])).name == "sipp"


def reap(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, float]:
    """Wait for `proc` until `deadline` (monotonic); (exit code, CPU seconds with its
    children), or (None, 0.0) when it still runs at the deadline."""
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return proc.returncode if proc.returncode is not None else -1, 0.0
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            return None, 0.0
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads) and of its live child
    processes (the engine's media workers), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(int(child))
    return total


def free_port(span: int = 1) -> int:
    """An even port p with p … p+span-1 free for UDP and TCP on 127.0.0.1."""
    for _ in range(500):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
        probe.close()
        if port % 2 or port + span > 65535:
            continue
        if _ports_free(range(port, port + span), (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def _ports_free(ports: range, kinds: Sequence[int]) -> bool:
    held: list[socket.socket] = []
    try:
        for p in ports:
            for kind in kinds:
                s = socket.socket(socket.AF_INET, kind)
                held.append(s)
                s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in held:
            s.close()


def free_rtp_range(span: int) -> int:
    """The first port of `span` consecutive UDP ports free on 127.0.0.1, outside the
    kernel's ephemeral range (so no outgoing socket takes one while the engine runs)."""
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    low, high = int(text[0]), int(text[1])
    bases: list[int] = [*range(16000, low - span, 1000), *range(2000, 16000 - span, 1000)]
    bases += list(range(high + 1 + (high + 1) % 2, 65535 - span, 1000))
    for base in bases:
        if not (base + span <= low or base > high):
            continue
        if _ports_free(range(base, base + span), (socket.SOCK_DGRAM,)):
            return base
    raise RuntimeError(f"no {span} free UDP ports outside the ephemeral range {low}-{high}")


# -- the engine's metrics ---------------------------------------------------------------

_SAMPLE_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
LabelSet = frozenset[tuple[str, str]]


class Metrics:
    """One scrape of /metrics (Prometheus text format), by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[str, list[tuple[LabelSet, float]]] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE_LINE.match(line)
            if match is None:
                continue
            name, labels, value = match.groups()
            try:
                number = float(value)
            except ValueError:
                continue
            label_set = frozenset(_LABEL.findall(labels or ""))
            self.values.setdefault(name, []).append((label_set, number))

    def total(self, name: str, **labels: str) -> float:
        """The sum over the series of `name` whose labels include `labels` (0.0 if
        none)."""
        want = set(labels.items())
        return sum(v for ls, v in self.values.get(name, []) if want <= ls)

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets (upper bound, count), sorted by bound."""
        out: list[tuple[float, float]] = []
        for ls, v in self.values.get(f"{name}_bucket", []):
            le = dict(ls).get("le")
            if le is not None:
                out.append((math.inf if le == "+Inf" else float(le), v))
        return sorted(out)


def scrape(port: int, timeout: float = 3.0) -> Metrics | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return Metrics(r.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


def quantiles(
    first: Metrics, last: Metrics, name: str, qs: Sequence[float]
) -> tuple[int, list[float | None]]:
    """(observations, the `qs` quantiles in seconds) of a histogram between two
    scrapes, interpolated linearly inside buckets; None for a quantile that lies in
    the +Inf bucket (above the last bound)."""
    before = dict(first.buckets(name))
    after = last.buckets(name)
    cumulative = [(bound, count - before.get(bound, 0.0)) for bound, count in after]
    if not cumulative:
        return 0, [None for _ in qs]
    total = cumulative[-1][1]
    out: list[float | None] = []
    for q in qs:
        rank = q * total
        previous_bound, previous_count = 0.0, 0.0
        value: float | None = None
        for bound, count in cumulative:
            if count >= rank and count > 0:
                if math.isinf(bound):
                    value = None
                else:
                    inside = count - previous_count
                    share = (rank - previous_count) / inside if inside > 0 else 1.0
                    value = previous_bound + share * (bound - previous_bound)
                break
            previous_bound, previous_count = bound, count
        out.append(value)
    return round(total), out


# -- kernel socket drops ------------------------------------------------------------------


class SocketDrops:
    """Datagrams the kernel dropped at UDP sockets on 127.0.0.1 whose port `wanted`
    accepts (receive buffer full), from the `drops` column of /proc/net/udp: the
    largest value seen per socket (port, inode), summed."""

    def __init__(self, wanted: Callable[[int], bool]) -> None:
        self.wanted = wanted
        self.seen: dict[tuple[int, str], int] = {}

    def update(self) -> None:
        try:
            text = Path("/proc/net/udp").read_text()
        except OSError:
            return
        for line in text.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 13 or not parts[1].startswith("0100007F:"):
                continue
            port = int(parts[1].split(":")[1], 16)
            if not self.wanted(port):
                continue
            key = (port, parts[9])
            drops = int(parts[-1])
            if drops > self.seen.get(key, 0):
                self.seen[key] = drops

    @property
    def total(self) -> int:
        return sum(self.seen.values())


# -- the engine ---------------------------------------------------------------------------


ENGINE_CONFIG = """
node_name: bench-bridge
sip:
  listen:
    - {{transport: udp, host: 127.0.0.1, port: {sip_port}}}
  domain: {domain}
limits:
  max_calls: {max_calls}
  max_cps: 5000.0
  drain_seconds: 2.0
  register_per_source: {{rate: 100000.0, burst: 100000}}
  requests_per_source: {{rate: 100000.0, burst: 100000}}
registrar:
  realm: {domain}
  algorithms: [MD5]
  users:
{users}
rtp:
  port_min: {rtp_min}
  port_max: {rtp_max}
  media_workers: {media_workers}
paths:
  data: {data}
  flows: {flows}
  audio: {audio}
ivr:
  default_flow: listen
  reload_check_seconds: 0
database:
  url: sqlite:///{data}/hotline.db
http:
  enabled: true
  listen: 127.0.0.1:{http_port}
acd:
  agents:
{agents}
  queues:
    - {{name: {queue}, announce_first_seconds: null}}
  ring_timeout_seconds: 120.0
  wrap_up_seconds: 0.0
logging:
  level: {log_level}
"""


def agent_name(i: int) -> str:
    return f"agent{i + 1:04d}"


def agent_password(i: int) -> str:
    return f"bench-secret-{i + 1:04d}"


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    rtp_min: int
    rtp_max: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class StartError(RuntimeError):
    """A process of the step did not start or agents did not register: the step is
    reported as failed with this message."""


def start_engine(
    procs: Processes,
    step: Path,
    agents: int,
    legs: int,
    log_level: str,
    media_workers: int = 0,
) -> Engine:
    """`hotline serve` with `agents` agent users, room for `legs` media legs."""
    flows = step / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    for name in ("queue.yaml", "listen.yaml"):
        shutil.copyfile(FLOWS / name, flows / name)
    data = step / "var"
    data.mkdir(exist_ok=True)
    sip_port, http_port = free_port(), free_port()
    max_calls = legs + 50
    rtp_min = free_rtp_range(2 * max_calls)
    users = "\n".join(
        f"    - {{username: {agent_name(i)}, password: {agent_password(i)}}}" for i in range(agents)
    )
    agent_rows = "\n".join(f"    - {{id: {agent_name(i)}, logged_in: true}}" for i in range(agents))
    cfg = step / "config.yaml"
    cfg.write_text(
        textwrap.dedent(ENGINE_CONFIG).format(
            sip_port=sip_port,
            domain=DOMAIN,
            max_calls=max_calls,
            users=users or "    []",
            rtp_min=rtp_min,
            rtp_max=rtp_min + 2 * max_calls - 1,
            data=data,
            flows=flows,
            audio=ROOT / "audio",
            http_port=http_port,
            agents=agent_rows or "    []",
            queue=QUEUE,
            log_level=log_level,
            media_workers=media_workers,
        )
    )
    log = step / "hotline.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    proc = procs.start(
        [sys.executable, "-m", "hotline.cli", "serve", "--config", str(cfg)],
        out=log,
        cwd=ROOT,
        env=env,
    )
    engine = Engine(proc, sip_port, http_port, rtp_min, rtp_min + 2 * max_calls - 1, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(
                f"hotline exited {proc.returncode} at start: {_tail(engine.log_text())}"
            )
        text = engine.log_text()
        if "listening on udp" in text and "http listening on" in text:
            return engine
        time.sleep(0.05)
    raise StartError(f"hotline did not start within 30 s: {_tail(engine.log_text())}")


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def engine_outcome(engine: Engine) -> tuple[int, list[str]]:
    """(agents the log shows registered, the log's warnings/errors grouped)."""
    text = engine.log_text()
    registered = len(set(re.findall(r"agent (agent\d{4}): available/idle \(registered\)", text)))
    warnings: Counter[str] = Counter()
    for line in text.splitlines():
        if " WARNING " in line or " ERROR " in line or "Traceback" in line:
            msg = re.sub(r"^\S+ \S+ ", "", line)
            msg = re.sub(r"call \S+@\S+", "call …", msg)
            msg = re.sub(r"\d+(\.\d+)?", "N", msg)
            warnings[msg[:160]] += 1
    return registered, [f"{n} × {m}" for m, n in warnings.most_common(5)]


# -- SIPp ---------------------------------------------------------------------------------


@dataclass
class Sipp:
    proc: subprocess.Popen[bytes]
    stat: Path
    screen: Path
    err: Path
    media_port: int = 0

    def counts(self) -> tuple[int, int]:
        return sipp_counts(self.stat, self.screen)

    def received(self, request: str) -> int:
        """How many `request`s the scenario's first step took (the final screen's
        message count: retransmissions and stray requests are counted apart)."""
        text = self.screen.read_text(errors="replace") if self.screen.exists() else ""
        found = re.findall(rf"---------->\s+{request}\s+(\d+)", text)
        return int(found[-1]) if found else 0

    def mean_response_ms(self) -> float | None:
        """SIPp's mean response time 1 (the `rtd` of the scenario: INVITE → 200), ms."""
        if not self.stat.exists():
            return None
        with self.stat.open(newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) < 2 or "ResponseTime1(C)" not in rows[0]:
            return None
        value = rows[-1][rows[0].index("ResponseTime1(C)")]
        parts = value.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        h, m, sec, micros = (int(p) for p in parts)
        return round((h * 3600 + m * 60 + sec) * 1000 + micros / 1000, 1)


def start_sipp(
    procs: Processes,
    tag: str,
    step: Path,
    scenario: Path,
    args: Sequence[str],
    *,
    budget: float,
    media: bool = False,
    cwd: Path | None = None,
) -> Sipp:
    stat, screen, err = step / f"{tag}.csv", step / f"{tag}.out", step / f"{tag}.err"
    media_port = free_port(4) if media else 0
    cmd = [
        "sipp", "-sf", str(scenario), *args, "-i", "127.0.0.1", "-p", str(free_port()),
        *(["-mp", str(media_port)] if media else []),
        "-nostdin", "-timeout", f"{math.ceil(budget)}s", "-timeout_error",
        "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_err", "-error_file", str(err),
    ]  # fmt: skip
    return Sipp(procs.start(cmd, out=screen, cwd=cwd), stat, screen, err, media_port)


def sipp_counts(stat: Path, screen: Path) -> tuple[int, int]:
    """(successful, failed) calls: the larger of SIPp's last statistics line and its
    final screen."""
    ok = failed = -1
    if stat.exists():
        with stat.open(newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            with contextlib.suppress(ValueError, IndexError):
                ok = int(last[head.index("SuccessfulCall(C)")])
                failed = int(last[head.index("FailedCall(C)")])
    if screen.exists():
        text = screen.read_text(errors="replace")
        oks = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
        fails = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
        if oks:
            ok = max(ok, int(oks[-1]))
        if fails:
            failed = max(failed, int(fails[-1]))
    return max(ok, 0), max(failed, 0)


SIPP_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")


def sipp_errors(path: Path, limit: int = 4) -> list[str]:
    """SIPp's error file, grouped (its events are stamped 'date<TAB>time<TAB>epoch: ')."""
    if not path.exists():
        return []
    seen: Counter[str] = Counter()
    for event in SIPP_EVENT.split(path.read_text(errors="replace")):
        text = " ".join(event.split())
        if not text or text.startswith("The following events occurred"):
            continue
        text = re.sub(r"'(\w+ sip:|SIP/2\.0 \d+)[^']*'?", r"'\1…'", text)
        text = re.sub(r"(Call-I[Dd]:?|call(-id)?) *'?[\w.@:-]+'?", r"\1 …", text)
        seen[text[:200]] += 1
    return [f"{n} × {msg}" for msg, n in seen.most_common(limit)]


def write_speech(path: Path, offset: float) -> None:
    """Raw µ-law speech for SIPp's rtp_stream: the English word recordings back to
    back, starting `offset` (0..1) of the way in, a whole number of 20 ms frames."""
    ulaw = g711.ulaw_encode(speech_samples(ROOT / "audio" / "words" / "en")).tobytes()
    start = int(len(ulaw) * offset) // 160 * 160
    ulaw = ulaw[start:] + ulaw[:start]
    path.write_bytes(ulaw[: len(ulaw) // 160 * 160])


def register_agents(
    procs: Processes, engine: Engine, step: Path, agents: int, contact: str
) -> tuple[int, int, list[str]]:
    """REGISTER agent users 1…`agents` with `contact`; (200s, failures, SIPp errors)."""
    inf = step / "agent_logins.csv"
    lines = ["SEQUENTIAL"] + [
        f"{agent_name(i)};{agent_password(i)};{contact}" for i in range(agents)
    ]
    inf.write_text("\n".join(lines) + "\n")
    budget = 20 + agents / REGISTER_RATE * 2
    sipp = start_sipp(
        procs, "register", step, SCENARIOS / "agent_register.xml",
        [f"127.0.0.1:{engine.sip_port}", "-inf", str(inf), "-m", str(agents),
         "-r", str(REGISTER_RATE), "-l", str(REGISTER_RATE)],
        budget=budget,
    )  # fmt: skip
    code, _ = reap(sipp.proc, time.monotonic() + budget + 15)
    if code is None:
        procs.stop(sipp.proc, signal.SIGINT)
    else:
        procs.live.remove(sipp.proc)
    ok, failed = sipp.counts()
    return ok, failed, sipp_errors(sipp.err)


def wait_agents_idle(engine: Engine, agents: int, seconds: float = 20.0) -> int:
    """Wait until /metrics shows `agents` available and idle; returns how many were."""
    deadline = time.monotonic() + seconds
    idle = 0
    while time.monotonic() < deadline:
        m = scrape(engine.http_port)
        if m is not None:
            idle = round(m.total("hotline_agents", status="available", state="idle"))
            if idle >= agents:
                return idle
        time.sleep(0.25)
    return idle


# -- the capture --------------------------------------------------------------------------


@dataclass
class Capture:
    proc: subprocess.Popen[bytes]
    path: Path
    log: Path
    max_packets: int


def start_capture(
    procs: Processes, path: Path, engine: Engine, seconds: float, max_packets: int
) -> Capture:
    """tshark on lo: the engine's RTP both ways (even ports of its range)."""
    lo, hi = engine.rtp_min, engine.rtp_max
    bpf = (
        f"udp and ((src portrange {lo}-{hi} and (udp[0:2] & 1) = 0) or "
        f"(dst portrange {lo}-{hi} and (udp[2:2] & 1) = 0))"
    )
    log = path.with_suffix(".tshark.log")
    proc = procs.start(tshark_command("lo", bpf, path, seconds, max_packets), out=log)
    problem = wait_until_capturing(proc, log)
    if problem is not None:
        raise StartError(_tail(problem))
    return Capture(proc, path, log, max_packets)


def wire_figures(cap: Capture, engine: Engine, caller_port: int, agent_port: int) -> dict[str, Any]:
    """Packets per direction and the engine's outgoing streams' gaps, from the capture."""
    from ivr_load import Packets, analyse, read_rtp  # the pcap reader and stream analysis

    p = read_rtp(cap.path)
    ours_src = (p.sport >= engine.rtp_min) & (p.sport <= engine.rtp_max)
    ours_dst = (p.dport >= engine.rtp_min) & (p.dport <= engine.rtp_max)

    def part(mask: np.ndarray[Any, np.dtype[np.bool_]]) -> Packets:
        return Packets(
            p.time[mask], p.sport[mask], p.dport[mask], p.ssrc[mask], p.seq[mask], p.timestamp[mask]
        )

    out: dict[str, Any] = {"packets": len(p.time)}
    directions = {
        "callers_to_engine": ours_dst & (p.sport == caller_port),
        "engine_to_callers": ours_src & (p.dport == caller_port),
    }
    if agent_port:
        directions["agents_to_engine"] = ours_dst & (p.sport == agent_port)
        directions["engine_to_agents"] = ours_src & (p.dport == agent_port)
    for name, mask in directions.items():
        out[name] = int(np.count_nonzero(mask))
    for name in ("engine_to_callers", "engine_to_agents"):
        if name in directions:
            stats = analyse(part(directions[name]))
            out[f"{name}_streams"] = stats.streams
            out[f"{name}_gaps_over_50ms"] = stats.gaps_over_50ms
            out[f"{name}_max_gap_ms"] = round(stats.max_gap_ms, 1)
            out[f"{name}_max_jitter_ms"] = round(stats.max_jitter_ms, 2)
    if agent_port and out["callers_to_engine"]:
        out["agents_vs_callers_pct"] = round(
            100 * out["engine_to_agents"] / out["callers_to_engine"], 2
        )
    if agent_port and out["agents_to_engine"]:
        out["callers_vs_agents_pct"] = round(
            100 * out["engine_to_callers"] / out["agents_to_engine"], 2
        )
    log = cap.log.read_text(errors="replace")
    out["dropped_by_capture"] = sum(int(d) for d in re.findall(r"(\d+) packets? dropped", log))
    out["truncated"] = len(p.time) >= cap.max_packets
    return out


# -- one step -----------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # monotonic seconds
    cpu: float  # engine CPU seconds so far
    sipp_cpu: float  # SIPp processes' CPU seconds so far (those alive)
    metrics: Metrics | None

    def concurrency(self, variant: str) -> float:
        if self.metrics is None:
            return math.nan
        if variant == "bridge":
            return self.metrics.total("hotline_agents", state="on_call")
        return self.metrics.total("hotline_calls_active")


@dataclass
class Step:
    variant: str  # bridge | ivr
    level: int
    agents: int = 0
    agents_registered: int = 0
    calls: int = 0
    ok: int = 0
    failed: int = 0  # SIPp-failed + never finished + (bridge) completed but not bridged
    sipp_failed: int = 0
    unfinished: int = 0
    not_bridged: int = 0
    bridged: int = 0
    agent_legs_ok: int = 0
    agent_legs_failed: int = 0  # INVITEs the agents' UAS took − calls it completed
    agent_stray_failed: int = 0  # SIPp's failed calls beyond those (stray requests)
    invite_to_200_ms: float | None = None  # callers' mean, SIPp's measure
    rate_cps: float = 0.0
    wall_s: float = 0.0
    peak: int = 0  # bridges (bridge) or calls in progress (ivr)
    plateau_s: float = 0.0
    plateau_mean: float = 0.0
    cpu_pct: float = 0.0  # engine over the plateau, 100 = one core
    cpu_step_pct: float = 0.0  # engine over the whole step
    cpu_per_unit_pct: float = 0.0  # per bridge (bridge) or per IVR call (ivr)
    cpu_per_leg_pct: float = 0.0
    sipp_cpu_pct: float = 0.0  # every SIPp over the step
    tick_count: int = 0
    tick_p50_ms: float | None = None
    tick_p99_ms: float | None = None
    tick_p999_ms: float | None = None
    ticks_skipped: int = 0
    ticks_skipped_plateau: int = 0
    rtp_in: int = 0
    rtp_out: int = 0
    rtp_seq_gaps: int = 0  # sequence numbers the engine never saw (before or at its socket)
    jb_packets: int = 0
    jb_late: int = 0
    jb_overflows: int = 0
    jb_played: int = 0
    jb_concealed: int = 0
    skipped_frames: int = 0
    socket_drops: int = 0  # the engine's RTP sockets
    agent_socket_drops: int = 0  # the echoing UAS's media socket (echo mode)
    sip_socket_drops: int = 0  # the engine's SIP socket
    internal_lost: int = 0
    internal_loss_pct: float = 0.0
    concealed_pct: float = 0.0
    wire: dict[str, Any] = field(default_factory=dict)
    capture_cpu_pct: float = 0.0
    engine_warnings: list[str] = field(default_factory=list)
    sipp_errors: list[str] = field(default_factory=list)
    error: str = ""
    misses: list[str] = field(default_factory=list)

    @property
    def meets(self) -> bool:
        return not self.misses


@dataclass
class Plan:
    talk: float
    calls_factor: float
    agent_media: str
    capture: bool
    log_level: str
    work: Path
    keep: bool
    media_workers: int = 0

    @property
    def hold(self) -> float:
        return self.talk + SETUP_SECONDS


def judge(step: Step) -> list[str]:
    """What keeps this step from meeting the targets (bridge steps), each with by how
    much; IVR baseline steps are held to reaching the level with 0 failed calls."""
    if step.error:
        return [step.error]
    misses: list[str] = []
    unit = "bridges" if step.variant == "bridge" else "IVR calls"
    if step.peak < REACHED_SHARE * step.level:
        misses.append(f"peak {step.peak} of {step.level} concurrent {unit}")
    if step.failed > TARGETS.failed:
        parts = [
            f"{n} {what}"
            for n, what in (
                (step.sipp_failed, "failed in SIPp"),
                (step.unfinished, "never finished"),
                (step.not_bridged, "never bridged"),
            )
            if n
        ]
        misses.append(
            f"{step.failed} failed calls ({100 * step.failed / max(step.calls, 1):.1f} %: "
            + ", ".join(parts)
            + ")"
        )
    if step.variant == "bridge":
        if step.agent_legs_failed:
            misses.append(f"{step.agent_legs_failed} agent legs failed")
        if step.internal_loss_pct >= TARGETS.internal_loss_pct:
            misses.append(
                f"internal loss {step.internal_loss_pct:.3f} % ≥ {TARGETS.internal_loss_pct:g} % "
                f"({step.internal_lost} of {step.jb_packets + step.socket_drops})"
            )
    if step.wire.get("dropped_by_capture"):
        misses.append(
            f"capture dropped {step.wire['dropped_by_capture']} packets (wire figures incomplete)"
        )
    if step.wire.get("truncated"):
        misses.append("capture stopped at its packet limit (wire figures incomplete)")
    return misses


def run_step(procs: Processes, variant: str, level: int, plan: Plan) -> Step:
    """One step: a fresh engine (and agents), the callers, then the figures."""
    step = Step(variant, level)
    bridge = variant == "bridge"
    folder = plan.work / f"{variant}-{level}"
    folder.mkdir(parents=True)
    step.agents = math.ceil(level * AGENT_SHARE) + AGENT_SPARE if bridge else 0
    step.calls = max(1, round(level * plan.calls_factor))
    step.rate_cps = round(RATE_HEADROOM * level / plan.hold, 2)
    planned = step.calls / step.rate_cps + plan.hold * (plan.calls_factor + 1)
    budget = planned + SIPP_MARGIN
    legs = 2 * level + step.agents + 10 if bridge else level + 10
    samples: list[Sample] = []
    started: list[Sipp] = []
    done = threading.Event()
    engine: Engine | None = None
    capture: Capture | None = None
    echo_port = 0
    rtp_drops: SocketDrops | None = None
    agent_drops: SocketDrops | None = None
    sip_drops: SocketDrops | None = None

    def sample() -> None:
        assert engine is not None and rtp_drops is not None
        while True:
            try:
                cpu = cpu_seconds(engine.proc.pid)
            except (OSError, IndexError, ValueError):
                return
            sipp_cpu = 0.0
            for s in started:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    sipp_cpu += cpu_seconds(s.proc.pid)
            at = time.monotonic()
            metrics = scrape(engine.http_port)
            rtp_drops.update()
            if sip_drops is not None:
                sip_drops.update()
            if agent_drops is not None:
                agent_drops.update()
            samples.append(Sample(at, cpu, sipp_cpu, metrics))
            if done.wait(SAMPLE_SECONDS):
                return

    sampler = threading.Thread(target=sample, daemon=True, name="bridge-load-sampler")
    capture_cpu = 0.0
    try:
        engine = start_engine(
            procs,
            folder,
            step.agents,
            legs,
            plan.log_level,
            plan.media_workers,
        )
        rtp_lo, rtp_hi = engine.rtp_min, engine.rtp_max
        rtp_drops = SocketDrops(lambda port: rtp_lo <= port <= rtp_hi and port % 2 == 0)
        sip = engine.sip_port
        sip_drops = SocketDrops(lambda port: port == sip)
        if bridge:
            agent_args = ["-recv_timeout", str(int((plan.hold + budget) * 1000))]
            if plan.agent_media == "echo":
                scenario = SCENARIOS / "agent_uas_echo.xml"
                agent_args.append("-rtp_echo")
            else:
                scenario = SCENARIOS / "agent_uas_stream.xml"
            uas = start_sipp(
                procs, "agent_phones", folder, scenario, agent_args,
                budget=budget + 60, media=True, cwd=plan.work,
            )  # fmt: skip
            started.append(uas)
            uas_port = _sipp_sip_port(uas)
            if plan.agent_media == "echo":
                echo_port = uas.media_port
                agent_drops = SocketDrops(lambda port: port == echo_port)
            time.sleep(0.5)
            if uas.proc.poll() is not None:
                screen = uas.screen.read_text(errors="replace")
                raise StartError(f"the agents' SIPp exited {uas.proc.returncode}: {_tail(screen)}")
            ok, failed, errors = register_agents(
                procs, engine, folder, step.agents, f"127.0.0.1:{uas_port}"
            )
            idle = wait_agents_idle(engine, step.agents)
            step.agents_registered = engine_outcome(engine)[0]
            if ok < step.agents or idle < step.agents:
                raise StartError(
                    f"agents: {ok} of {step.agents} REGISTERs got 200 ({failed} failed), "
                    f"{idle} available and idle, {step.agents_registered} logged as registered"
                    + (f"; SIPp: {errors[0]}" if errors else "")
                )
        if plan.capture:
            seconds = budget + 30
            capture = start_capture(
                procs, folder / "rtp.pcap", engine, seconds,
                int(4 * level * PACKETS_PER_SECOND * seconds * 1.2) + 10_000,
            )  # fmt: skip
        sampler.start()
        while not samples and sampler.is_alive():
            time.sleep(0.05)
        t0 = time.monotonic()
        callers = start_sipp(
            procs, "callers", folder, SCENARIOS / "caller.xml",
            [f"127.0.0.1:{engine.sip_port}", "-s", QUEUE_NUMBER if bridge else IVR_NUMBER,
             "-d", str(int(plan.talk * 1000)), "-r", f"{step.rate_cps:.2f}", "-l", str(level),
             "-m", str(step.calls), "-recv_timeout", str(int((plan.hold + 60) * 1000))],
            budget=budget, media=True, cwd=plan.work,
        )  # fmt: skip
        started.append(callers)
        code, _ = reap(callers.proc, time.monotonic() + budget + 30)
        if code is None:
            procs.stop(callers.proc, signal.SIGINT)
        else:
            procs.live.remove(callers.proc)
        step.wall_s = round(time.monotonic() - t0, 1)
        _wait_drained(engine)
        time.sleep(SAMPLE_SECONDS * 1.5)  # one more sample with every leg gone
        done.set()
        sampler.join(10)
        if bridge:
            procs.stop(started[0].proc, signal.SIGINT)
        if capture is not None:
            capture_cpu = procs.stop(capture.proc, signal.SIGINT)
    except StartError as exc:
        step.error = " ".join(str(exc).split())[:400]
        step.failed = step.calls
        step.misses = judge(step)
        return step
    finally:
        done.set()
        for s in started:
            procs.stop(s.proc, signal.SIGINT)
        if capture is not None:
            procs.stop(capture.proc, signal.SIGINT)
        if engine is not None:
            procs.stop(engine.proc)
    callers_sipp = started[-1]
    step.ok, step.sipp_failed = callers_sipp.counts()
    step.unfinished = max(0, step.calls - step.ok - step.sipp_failed)
    step.sipp_errors = sipp_errors(callers_sipp.err)
    step.invite_to_200_ms = callers_sipp.mean_response_ms()
    if bridge:
        phones = started[0]
        step.agent_legs_ok, sipp_failed = phones.counts()
        step.agent_legs_failed = max(0, phones.received("INVITE") - step.agent_legs_ok)
        step.agent_stray_failed = max(0, sipp_failed - step.agent_legs_failed)
        step.sipp_errors += [f"agents: {e}" for e in sipp_errors(started[0].err)]
    assert engine is not None and rtp_drops is not None
    _, step.engine_warnings = engine_outcome(engine)
    _figures(step, samples)
    step.socket_drops = rtp_drops.total
    step.sip_socket_drops = sip_drops.total if sip_drops is not None else 0
    step.agent_socket_drops = agent_drops.total if agent_drops is not None else 0
    _loss(step)
    if bridge:
        step.not_bridged = max(0, step.ok - step.bridged)
    step.failed = step.sipp_failed + step.unfinished + step.not_bridged
    if step.wall_s > 0:
        step.capture_cpu_pct = round(100 * capture_cpu / step.wall_s, 1)
    if capture is not None:
        step.wire = wire_figures(
            capture,
            engine,
            callers_sipp.media_port,
            echo_port or (started[0].media_port if bridge else 0),
        )
        if not plan.keep:
            capture.path.unlink(missing_ok=True)
    step.misses = judge(step)
    return step


def _sipp_sip_port(s: Sipp) -> int:
    args = s.proc.args
    assert isinstance(args, list)
    return int(args[args.index("-p") + 1])


def _wait_drained(engine: Engine, seconds: float = 15.0) -> None:
    """Wait (bounded) until the engine serves no media leg and no call."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = scrape(engine.http_port)
        if (
            m is not None
            and m.total("hotline_media_legs") == 0
            and m.total("hotline_calls_active") == 0
        ):
            return
        time.sleep(0.25)


def _figures(step: Step, samples: Sequence[Sample]) -> None:
    """Concurrency, CPU, ticks and the counters' deltas over the step."""
    good = [s for s in samples if s.metrics is not None]
    if len(samples) < 2 or len(good) < 2:
        step.misses.append("fewer than two scrapes of /metrics: no figures")
        return
    first, last = good[0], good[-1]
    assert first.metrics is not None and last.metrics is not None
    span = samples[-1].at - samples[0].at
    if span > 0:
        step.cpu_step_pct = round(100 * (samples[-1].cpu - samples[0].cpu) / span, 1)
        step.sipp_cpu_pct = round(100 * (samples[-1].sipp_cpu - samples[0].sipp_cpu) / span, 1)
    conc = np.asarray([s.concurrency(step.variant) for s in good])
    step.peak = int(np.nanmax(conc)) if len(conc) else 0
    bridge = step.variant == "bridge"
    legs_per_unit = 2 if bridge else 1

    def delta(name: str, **labels: str) -> int:
        assert first.metrics is not None and last.metrics is not None
        return round(last.metrics.total(name, **labels) - first.metrics.total(name, **labels))

    step.bridged = delta("hotline_acd_events_total", event="bridged")
    step.rtp_in = delta("hotline_rtp_packets_total", what="in")
    step.rtp_out = delta("hotline_rtp_packets_total", what="out")
    step.rtp_seq_gaps = delta("hotline_rtp_packets_total", what="lost")
    step.jb_packets = delta("hotline_jitter_buffer_total", what="packets")
    step.jb_late = delta("hotline_jitter_buffer_total", what="late")
    step.jb_overflows = delta("hotline_jitter_buffer_total", what="overflows")
    step.jb_played = delta("hotline_jitter_buffer_total", what="played")
    step.jb_concealed = delta("hotline_jitter_buffer_total", what="concealed")
    step.ticks_skipped = delta("hotline_media_ticks_skipped_total")
    frames = 0.0
    for before, after in itertools.pairwise(good):
        assert before.metrics is not None and after.metrics is not None
        skipped = after.metrics.total("hotline_media_ticks_skipped_total") - before.metrics.total(
            "hotline_media_ticks_skipped_total"
        )
        if skipped > 0 and bridge:
            frames += skipped * 2 * max(before.concurrency("bridge"), after.concurrency("bridge"))
    step.skipped_frames = round(frames)
    if step.peak == 0:
        return
    threshold = PLATEAU_SHARE * min(step.level, step.peak)
    held = np.flatnonzero(conc >= threshold)
    a, b = int(held[0]), int(held[-1])
    if b <= a:
        a, b = max(0, a - 1), min(len(good) - 1, a + 1)
    pa, pb = good[a], good[b]
    assert pa.metrics is not None and pb.metrics is not None
    dt = pb.at - pa.at
    if dt <= 0:
        return
    step.plateau_s = round(dt, 1)
    step.plateau_mean = round(float(np.nanmean(conc[a : b + 1])), 1)
    step.cpu_pct = round(100 * (pb.cpu - pa.cpu) / dt, 1)
    if step.plateau_mean > 0:
        step.cpu_per_unit_pct = round(step.cpu_pct / step.plateau_mean, 4)
        step.cpu_per_leg_pct = round(step.cpu_pct / (legs_per_unit * step.plateau_mean), 4)
    count, (p50, p99, p999) = quantiles(
        pa.metrics, pb.metrics, "hotline_media_tick_seconds", (0.5, 0.99, 0.999)
    )
    step.tick_count = count
    step.tick_p50_ms = None if p50 is None else round(p50 * 1000, 2)
    step.tick_p99_ms = None if p99 is None else round(p99 * 1000, 2)
    step.tick_p999_ms = None if p999 is None else round(p999 * 1000, 2)
    step.ticks_skipped_plateau = round(
        pb.metrics.total("hotline_media_ticks_skipped_total")
        - pa.metrics.total("hotline_media_ticks_skipped_total")
    )


def _loss(step: Step) -> None:
    """The internal loss (module docstring): (D + L + O + S) / (P + D)."""
    if step.variant == "bridge":
        lost = step.socket_drops + step.jb_late + step.jb_overflows + step.skipped_frames
        received = step.jb_packets + step.socket_drops
    else:  # no jitter buffer on an IVR leg: what its sockets dropped
        lost = step.socket_drops
        received = step.rtp_in + step.socket_drops
    step.internal_lost = lost
    step.internal_loss_pct = round(100 * lost / received, 4) if received else 0.0
    frames = step.jb_played + step.jb_concealed
    step.concealed_pct = round(100 * step.jb_concealed / frames, 3) if frames else 0.0


# -- report -------------------------------------------------------------------------------

HEADER = (
    f"{'variant':7} {'level':>5} {'calls':>5} {'failed':>6} {'peak':>5} {'CPU %':>6} "
    f"{'CPU/unit %':>10} {'CPU/leg %':>9} {'tick p50/p99 ms':>15} {'skipped':>7} "
    f"{'loss %':>7}  verdict"
)


def _ms(value: float | None) -> str:
    return ">0.25" if value is None else f"{value:.2f}"


def row(step: Step) -> str:
    verdict = "meets" if step.meets else "misses: " + "; ".join(step.misses)
    ticks = f"{_ms(step.tick_p50_ms)} / {_ms(step.tick_p99_ms)}"
    return (
        f"{step.variant:7} {step.level:>5} {step.calls:>5} {step.failed:>6} {step.peak:>5} "
        f"{step.cpu_pct:>6.1f} {step.cpu_per_unit_pct:>10.3f} {step.cpu_per_leg_pct:>9.3f} "
        f"{ticks:>15} {step.ticks_skipped:>7} {step.internal_loss_pct:>7.3f}  {verdict}"
    )


def details(step: Step, capture: bool) -> str:
    if step.error:
        return f"      {step.error}"
    unit = "bridges" if step.variant == "bridge" else "IVR calls"
    perturbed = (
        f", capture {step.capture_cpu_pct:.0f} % [CPU figures perturbed by the capture]"
        if capture
        else ""
    )
    invite = "?" if step.invite_to_200_ms is None else f"{step.invite_to_200_ms:.0f} ms"
    lines = [
        f"      step {step.wall_s:.0f} s at {step.rate_cps:g} calls/s; plateau "
        f"{step.plateau_s:.0f} s at {step.plateau_mean:.0f} {unit}; engine CPU over the step "
        f"{step.cpu_step_pct:.1f} %; SIPp {step.sipp_cpu_pct:.0f} %{perturbed}",
        f"      ticks {step.tick_count} on the plateau (p99.9 {_ms(step.tick_p999_ms)} ms), "
        f"skipped {step.ticks_skipped_plateau} there / {step.ticks_skipped} over the step; "
        f"INVITE→200 mean {invite}; engine SIP socket drops {step.sip_socket_drops}",
        f"      RTP in {step.rtp_in}, out {step.rtp_out}, sequence gaps seen {step.rtp_seq_gaps}; "
        f"engine RTP socket drops {step.socket_drops}",
    ]
    if step.variant == "bridge":
        echo = (
            f"; drops at the agents' echo socket {step.agent_socket_drops}"
            if step.agent_socket_drops
            else ""
        )
        stray = (
            f" (SIPp also failed {step.agent_stray_failed} calls made of stray requests)"
            if step.agent_stray_failed
            else ""
        )
        lines += [
            f"      bridged {step.bridged} (agents {step.agents}, registered "
            f"{step.agents_registered}); agent legs ok {step.agent_legs_ok}, failed "
            f"{step.agent_legs_failed}{stray}",
            f"      jitter buffers: packets {step.jb_packets}, late {step.jb_late}, overflows "
            f"{step.jb_overflows}; frames on skipped ticks {step.skipped_frames}; lost inside "
            f"{step.internal_lost}{echo}; concealed {step.concealed_pct:.2f} % of frames played",
        ]
    if step.wire:
        parts = [f"{k} {v}" for k, v in step.wire.items() if k != "truncated"]
        lines.append("      wire: " + ", ".join(parts))
    lines += [f"      engine log: {w}" for w in step.engine_warnings[:3]]
    lines += [f"      SIPp error: {e}" for e in step.sipp_errors[:3]]
    return "\n".join(lines)


def verdicts(steps: Sequence[Step]) -> list[str]:
    out: list[str] = []
    bridges = [s for s in steps if s.variant == "bridge"]
    if bridges:
        clean = [s.level for s in bridges if s.meets]
        best = max(clean, default=0)
        need = TARGETS.bridges
        targets = (
            f"≥ {need} concurrent bridges, {TARGETS.failed} failed, internal loss "
            f"< {TARGETS.internal_loss_pct:g} %"
        )
        if best >= need:
            out.append(f"bridges: target {targets} MET (clean up to {best})")
        else:
            failing = [s for s in bridges if not s.meets and s.level >= need]
            at = min(failing, key=lambda s: s.level) if failing else None
            tail = (
                f"; at {at.level}: " + "; ".join(at.misses)
                if at
                else f"; no level ≥ {need} was run"
            )
            out.append(
                f"bridges: target {targets} MISSED (highest clean level {best or 'none'}){tail}"
            )
    for s in bridges:
        if s.plateau_mean:
            out.append(
                f"bridges at {s.level}: CPU per bridge {s.cpu_per_unit_pct:.3f} % of a core "
                f"({s.cpu_per_leg_pct:.3f} % per leg), internal loss {s.internal_loss_pct:.3f} %"
            )
    return out


def ratios(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Per level with both: CPU per bridge against CPU per IVR call."""
    ivr = {s.level: s for s in steps if s.variant == "ivr" and s.cpu_per_unit_pct > 0}
    out: list[dict[str, Any]] = []
    for s in steps:
        base = ivr.get(s.level)
        if s.variant != "bridge" or base is None or s.cpu_per_unit_pct <= 0:
            continue
        out.append(
            {
                "level": s.level,
                "cpu_per_bridge_pct": s.cpu_per_unit_pct,
                "cpu_per_ivr_call_pct": base.cpu_per_unit_pct,
                "bridge_over_ivr_call": round(s.cpu_per_unit_pct / base.cpu_per_unit_pct, 2),
                "bridge_leg_over_ivr_leg": round(s.cpu_per_leg_pct / base.cpu_per_leg_pct, 2),
            }
        )
    return out


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=20)
    match = re.search(r"SIPp v\S+", out.stdout + out.stderr)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sipp": match.group(0) if match else "?",
        "load_average": os.getloadavg(),
    }


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected levels like 100,200,400, found {text!r}"
        ) from None
    if not levels or any(v <= 0 for v in levels):
        raise argparse.ArgumentTypeError(f"levels must be positive, found {text!r}")
    return levels


def write_json(
    path: Path, info: dict[str, Any], args: argparse.Namespace, steps: Sequence[Step]
) -> None:
    """Every figure so far (rewritten after each step, so a stopped run keeps its steps)."""
    doc = {
        "benchmark": "bridge_load",
        "machine": info,
        "targets": asdict(TARGETS),
        "internal_loss": "(engine socket drops + jitter-buffer late + overflows + frames on "
        "skipped ticks) / (jitter-buffer packets + engine socket drops), bridged legs, both ways",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "steps": [{**asdict(s), "meets": s.meets} for s in steps],
        "ratios": ratios(steps),
        "verdicts": verdicts(steps),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


@contextlib.contextmanager
def stopping_on_signals(procs: Processes) -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C: every started process is stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        procs.stop_all()
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--levels",
        type=_levels,
        default=None,
        help="concurrent bridges per step (default 100,200,400; --quick: 20,50)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a short check: levels 20,50, 15 s talk, 2 × level calls per step",
    )
    ap.add_argument(
        "--talk",
        type=float,
        default=None,
        help="seconds each caller talks before hanging up (default 25; --quick 15)",
    )
    ap.add_argument(
        "--calls-factor",
        type=float,
        default=None,
        help="calls per step as a multiple of the level (default 2.5; --quick 2)",
    )
    ap.add_argument(
        "--agent-media",
        choices=AGENT_MEDIA,
        default="echo",
        help="agents echo what they hear (SIPp -rtp_echo, default) or stream speech",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the IVR-only baseline steps")
    ap.add_argument(
        "--capture",
        action="store_true",
        help="also record the engine's RTP with tshark for wire figures (needs root)",
    )
    ap.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="the engine's log level (default info, as shipped)",
    )
    ap.add_argument(
        "--media-workers",
        type=int,
        default=0,
        help="the engine's rtp.media_workers (default 0: the media tick in its own process)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds of rest before each step after the first (default 45; --quick 5)",
    )
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    ap.add_argument("--keep", type=Path, help="keep configs, logs and SIPp files in this directory")
    args = ap.parse_args(argv)  # fmt: skip
    levels: list[int] = args.levels or ([20, 50] if args.quick else [100, 200, 400])
    talk: float = args.talk if args.talk is not None else (15.0 if args.quick else 25.0)
    factor: float = (
        args.calls_factor if args.calls_factor is not None else (2.0 if args.quick else 2.5)
    )
    settle: float = args.settle if args.settle is not None else (5.0 if args.quick else 45.0)
    if not 0 <= settle <= 600:
        ap.error(f"--settle: expected 0 to 600 seconds, found {settle:g}")
    if talk < 5 or talk > 600:
        ap.error(f"--talk: expected 5 to 600 seconds, found {talk:g}")
    if factor < 1:
        ap.error("--calls-factor must be at least 1")
    if max(levels) > 2000:
        ap.error(f"--levels: at most 2000 concurrent bridges per step, found {max(levels)}")
    if shutil.which("sipp") is None:
        print("missing: sipp — apt-get install sip-tester", file=sys.stderr)
        return 2
    if args.capture:
        if shutil.which("tshark") is None:
            print("missing: tshark — apt-get install tshark", file=sys.stderr)
            return 2
        if os.geteuid() != 0:
            print("--capture needs root: tshark captures on lo", file=sys.stderr)
            return 2

    work = args.keep or Path(tempfile.mkdtemp(prefix="hotline-bridge-load-"))
    work.mkdir(parents=True, exist_ok=True)
    write_speech(work / "caller_speech.ulaw", 0.0)
    write_speech(work / "agent_speech.ulaw", SPEECH_OFFSET_AGENT)
    info = machine()
    plan = Plan(
        talk,
        factor,
        args.agent_media,
        args.capture,
        args.log_level,
        work,
        args.keep is not None,
        args.media_workers,
    )
    variants = ["bridge"] if args.no_baseline else ["bridge", "ivr"]
    print(
        f"bridge_load: {info['cpus']} CPUs ({info['cpu_model']}), {info['sipp']}, load average "
        f"{' '.join(f'{x:.2f}' for x in info['load_average'])}; talk {talk:g} s, "
        f"{factor:g} × level calls per step, {settle:g} s rest between steps, agents "
        f"{args.agent_media}, media "
        f"{f'in {args.media_workers} worker processes' if args.media_workers else 'in the engine process'}"
        f"; work dir {work}"
    )
    print(
        f"targets: ≥ {TARGETS.bridges} concurrent bridges, {TARGETS.failed} failed calls, "
        f"internal loss < {TARGETS.internal_loss_pct:g} %; CPU per bridge reported (unit = a "
        f"bridge, or an IVR call for the baseline; % of one core)\n",
        flush=True,
    )
    print(HEADER, flush=True)
    steps: list[Step] = []
    procs = Processes()
    interrupted = False
    with stopping_on_signals(procs):
        try:
            for level in levels:
                for variant in variants:
                    if steps:
                        time.sleep(settle)  # let the machine recover from the last step
                    step = run_step(procs, variant, level, plan)
                    steps.append(step)
                    print(row(step))
                    print(details(step, args.capture), flush=True)
                    if args.json:
                        write_json(args.json, info, args, steps)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: stopping every process this run started", file=sys.stderr)
    print()
    for r in ratios(steps):
        print(
            f"level {r['level']}: CPU per bridge {r['cpu_per_bridge_pct']:.3f} % vs per IVR "
            f"call {r['cpu_per_ivr_call_pct']:.3f} % of a core: a bridge costs "
            f"{r['bridge_over_ivr_call']:.2f} IVR calls ({r['bridge_leg_over_ivr_leg']:.2f} × "
            "per leg)"
        )
    for line in verdicts(steps):
        print(line)
    if args.json:
        write_json(args.json, info, args, steps)
        print(f"\nfigures written to {args.json}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
