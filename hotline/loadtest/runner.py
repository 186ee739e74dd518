"""Running a load test: SIPp callers (and agents) against an engine, tshark on its RTP,
its /metrics and /proc sampled, a live progress line; then every figure gathered.

Owns the processes it starts and their end (every child is stopped on return, on an
exception and on Ctrl-C or SIGTERM: SIPp gets SIGUSR1 — place no more calls, finish
those in progress — then SIGTERM, then SIGKILL), the safety checks before anything is
sent (a target outside 127.0.0.0/8 and ::1 is refused unless allowed; every run is
bounded by a number of calls and a number of seconds), the work directory (scenario,
injection file, captures, logs), steering SIPp's call rate along the traffic profile
through its control socket (`cset rate`, once a second), and reading SIPp's log back.

Must not know: how journeys are derived (hotline.loadtest.journeys), the XML
(hotline.loadtest.scenarios), how figures are judged and drawn (hotline.loadtest.report).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Final, Literal
from zoneinfo import ZoneInfo

from hotline.flowcli import prompt_seconds
from hotline.ivr.loader import Flow, FlowError, load_flow
from hotline.loadtest import agents as ag
from hotline.loadtest import capture, rtp
from hotline.loadtest import journeys as jr
from hotline.loadtest import metrics as mx
from hotline.loadtest import scenarios as sc
from hotline.loadtest.profiles import Traffic

PACKETS_PER_SECOND: Final = 50  # one 20 ms packet per stream
SAMPLE_SECONDS: Final = 1.0  # /proc sampling and rate steering period
PROGRESS_PLAIN_SECONDS: Final = 10.0  # a progress line this often when not on a terminal
STOP_GRACE: Final = 10.0  # seconds a child gets after SIGTERM before SIGKILL
AGENT_LOGIN_SECONDS: Final = 20.0
SILENCE_SECONDS: Final = 2  # the caller-audio loop (µ-law 0xFF is silence)
INBAND_SSRC: Final = 0x4C540000


class RunError(Exception):
    """A load test that cannot start or must stop; the message says what to do."""


# -- settings -------------------------------------------------------------------------------


@dataclass
class Settings:
    """Everything a run needs, resolved (the command line fills it in)."""

    host: str
    port: int
    flow_file: Path
    traffic: Traffic
    audio_dir: Path | None = None
    transport: Literal["udp", "tcp"] = "udp"
    dialled: str | None = None
    concurrent: int = 200
    calls: int | None = None
    max_calls: int = 10_000
    max_seconds: float = 1800.0
    mix: str | None = None
    pace: jr.Pace = "listen"
    dtmf: sc.DtmfMode = "rfc4733"
    tone_ms: int = 100
    caller_audio: bool = True
    agents: list[tuple[str, str]] = field(default_factory=list)
    agent_talk: float = 5.0
    queue_wait: float = 120.0
    metrics_url: str | None = None
    metrics_required: bool = False
    scrape_seconds: float = 2.0
    engine_pid: int | None = None
    capture: bool = True
    capture_packets: int = 2_000_000
    rtp_ports: tuple[int, int] = (20000, 29999)
    rtp_inactivity: float = 30.0
    local_ip: str | None = None
    traces_dir: Path | None = None  # the engine's per-call traces, when on this machine
    work_dir: Path | None = None
    seed: int | None = None
    timezone: str = "Australia/Sydney"
    closures: frozenset[str] = frozenset()
    clinics_csv: str | None = None  # sample clinic data (text), for postcodes and capacity
    rules_file: Path | None = None
    sample_days: int = 14
    max_bookings: int | None = None
    allow_remote: bool = False
    progress: Literal["tty", "plain", "off"] = "plain"
    command: str = ""


# -- safety ----------------------------------------------------------------------------------


def resolve_target(host: str, allow_remote: bool) -> str:
    """The target's address; a name is resolved. Outside 127.0.0.0/8 and ::1 only with
    `allow_remote` (a load test is an attack on anyone who did not ask for it)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except socket.gaierror as exc:
        raise RunError(f"cannot resolve the target {host!r}: {exc.strerror}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise RunError(
            f"refusing to load-test {host} ({', '.join(remote)}): it is not loopback "
            "(127.0.0.0/8 or ::1). A load test floods its target; pass --allow-remote only "
            "for an engine you run and may load."
        )
    loop = [a for a in addresses if ipaddress.ip_address(a.split("%")[0]).version == 4]
    return (loop or addresses)[0]


def check_url_host(url: str, allow_remote: bool) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if not host:
        raise RunError(f"--metrics: {url!r} is not an http:// URL")
    resolve_target(host, allow_remote)


def sip_ping(host: str, port: int, timeout: float = 2.0) -> str | None:
    """Send one SIP OPTIONS over UDP; the status line of the answer, None if none came."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        local, lport = s.getsockname()[:2]
        shown = f"[{local}]" if family == socket.AF_INET6 else local
        call_id = uuid.uuid4().hex
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {shown}:{lport};branch=z9hG4bK{call_id[:16]};rport\r\n"
            f"From: <sip:loadtest@{shown}>;tag={call_id[:8]}\r\nTo: <sip:{host}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        try:
            s.send(msg.encode())
            data = s.recv(65535)
        except (TimeoutError, ConnectionRefusedError, OSError):
            return None
    return data.split(b"\r\n", 1)[0].decode("latin-1", "replace")


def local_address(host: str, port: int) -> str:
    """The local address that reaches `host` (loopback reaches itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


def free_udp_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A port p with p … p+span-1 free for UDP on `host`; even when span > 1."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if span > 1 and port % 2:
            continue
        if port + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(port, port + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RunError(f"no free UDP port on {host}")


def raw_socket_allowed(sipp: str) -> bool:
    """SIPp sends keys and tones through a raw socket: root, or CAP_NET_RAW on sipp."""
    if os.geteuid() == 0:
        return True
    try:
        return bool(os.getxattr(sipp, "security.capability"))
    except OSError:
        return False


# -- the engine process -----------------------------------------------------------------------


def find_listener_pid(port: int) -> int | None:
    """The process holding a UDP socket on `port` (this machine only; root sees all)."""
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def proc_sample(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, resident bytes) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except (OSError, IndexError):
        return None
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(statm[1]) * os.sysconf("SC_PAGE_SIZE")


def fetch_metrics(url: str, timeout: float = 2.0) -> mx.Scrape:
    """One scrape of `url`; raises RunError with the reason when it fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RunError(f"cannot read {url}: {reason}") from None
    try:
        return mx.parse(body, time.time())
    except mx.MetricsError as exc:
        raise RunError(f"{url}: {exc}") from None


# -- children -----------------------------------------------------------------------------------


class Children:
    """The processes a run started; `stop_all` ends every one still running."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, cmd: Sequence[str], *, cwd: Path, out: Path
    ) -> subprocess.Popen[bytes]:
        with out.open("wb") as fh:
            try:
                proc = subprocess.Popen(
                    list(cmd),
                    cwd=cwd,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RunError(f"cannot start {name} ({cmd[0]}): {exc.strerror}") from None
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def stop(
        proc: subprocess.Popen[bytes], first: int = signal.SIGTERM, grace: float = STOP_GRACE
    ) -> int | None:
        """Signal `proc` if it runs, wait `grace` seconds, then kill it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(first)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            self.stop(proc, signal.SIGTERM, 3.0)


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """SIGTERM (and SIGHUP) end the run like Ctrl-C does: through every `finally`."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- the plan ------------------------------------------------------------------------------------


@dataclass
class Plan:
    flow: Flow
    journeys: list[jr.Journey]
    shares: dict[str, float]
    calls: list[jr.Call]
    options: sc.Options
    dialled: str
    expected_calls: float
    bookings: int
    capacity: int | None
    notes: list[str] = field(default_factory=list)


def _booking_data(s: Settings, today: dt.date) -> tuple[list[tuple[str, float]], int | None]:
    """Postcodes that reach three clinics, and the places the sample clinics offer over
    `sample_days` (None without clinic data)."""
    if s.clinics_csv is None:
        return [], None
    from hotline.booking.csvfiles import ClinicFileError, parse_clinics
    from hotline.booking.geo import shipped_postcodes
    from hotline.booking.rules import default_rules, load_rules

    try:
        rules = load_rules(s.rules_file) if s.rules_file is not None else default_rules()
        clinics = parse_clinics(
            s.clinics_csv, "clinics", postcodes=shipped_postcodes(), vaccines=rules.vaccines.keys()
        )
    except (ClinicFileError, ValueError) as exc:
        raise RunError(f"the clinic data cannot be read: {exc}") from None
    capacity = jr.slot_capacity(clinics, today, s.sample_days, rules.zone, rules.default_vaccine)
    postcodes = jr.booking_postcodes(
        clinics, shipped_postcodes(), capacity, max_km=rules.max_distance_km
    )
    return postcodes, sum(capacity.values())


def plan(s: Settings, now: dt.datetime | None = None) -> Plan:
    """Journeys of the flow for a call answered now, the mix, and every call's keys."""
    try:
        flow = load_flow(s.flow_file, audio_dir=s.audio_dir)
    except FlowError as exc:
        raise RunError(f"the flow does not load:\n{exc}") from None
    zone = ZoneInfo(s.timezone)
    start = (now or dt.datetime.now(zone)).astimezone(zone)
    postcodes, capacity = _booking_data(s, start.date())
    services = jr.fresh_caller_services(start.date(), agents=bool(s.agents))
    try:
        journeys = jr.journeys_from_flow(
            flow,
            services=services,
            start=start,
            duration_of=prompt_seconds,
            closures=s.closures,
            postcodes=postcodes,
        )
    except jr.JourneyError as exc:
        raise RunError(str(exc)) from None
    if not journeys:
        raise RunError(
            f"flow {flow.name}: no journey ends predictably (every walk needs a "
            "service whose answer the load test cannot know)"
        )
    notes: list[str] = []
    closed = [j.name for j in journeys if j.name.startswith("closed")]
    hint = (
        (
            f"\nThe flow is closed now ({start:%a %H:%M} {s.timezone}) by its opening hours: "
            f"every call ends {closed[0]!r}. Run during opening hours or against an engine "
            f"whose flow is open; to load the closed message itself: --mix {closed[0]}=1"
        )
        if closed
        else ""
    )
    try:
        if s.mix:
            shares = jr.resolve_mix(jr.parse_mix(s.mix), journeys)
        else:
            try:
                shares = jr.resolve_mix(jr.parse_mix(jr.DEFAULT_MIX), journeys)
            except jr.JourneyError as exc:
                if closed:
                    raise RunError(
                        f"the default mix ({jr.DEFAULT_MIX}) does not fit: "
                        f"{str(exc).removeprefix('--mix: ')}{hint}"
                    ) from None
                shares = jr.default_mix(journeys)
                notes.append(
                    f"the flow has no journeys for the default mix {jr.DEFAULT_MIX}: "
                    "every journey gets an equal share"
                )
    except jr.JourneyError as exc:
        raise RunError(f"{exc}{hint}") from None
    expected = s.traffic.calls(0, s.traffic.duration)
    n = math.ceil(expected * 1.05) + 2
    if s.calls is not None:
        n = min(n, s.calls)
    if n > s.max_calls:
        notes.append(
            f"the profile would place about {expected:.0f} calls: capped at "
            f"--max-calls {s.max_calls}"
        )
        n = s.max_calls
    if n < 1:
        raise RunError(f"the profile places no call ({s.traffic.describe()})")
    order = jr.assign(shares, n)
    booking = {j.name for j in journeys if j.books}
    bookings = sum(1 for name in order if name in booking)
    limit = (
        s.max_bookings
        if s.max_bookings is not None
        else (capacity // 2 if capacity is not None else None)
    )
    if bookings and limit is not None and bookings > limit:
        raise RunError(
            f"this run would book up to {bookings} appointments; the sample clinics offer "
            f"{capacity} places over the next {s.sample_days} days and a run may take at most "
            f"{limit} of them (--max-bookings). Lower --calls, the booking share of --mix, "
            "or raise --max-bookings for an engine with more slots."
        )
    seed = s.seed if s.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    base = rng.randrange(10**8)
    calls = jr.plan_calls(journeys, order, rng, start.date(), base=base, postcodes=postcodes)
    by_name = {j.name: j for j in journeys}
    if s.pace == "ahead":
        for name in shares:
            if not by_name[name].ahead_ok:
                notes.append(
                    f"journey {name}: typing ahead ends differently in the "
                    "simulator; its keys keep the listening pace"
                )
    if not s.caller_audio:
        for name in shares:
            waits = [*by_name[name].waits(s.pace), by_name[name].tail(s.pace)]
            if max(waits) >= s.rtp_inactivity:
                notes.append(
                    f"journey {name}: the caller is silent for {max(waits):.0f} s, "
                    f"longer than the engine's RTP inactivity timeout "
                    f"({s.rtp_inactivity:g} s): its calls will be cut; keep caller "
                    "audio on"
                )
    options = sc.Options(
        dtmf=s.dtmf,
        pace=s.pace,
        tone_ms=s.tone_ms,
        queue_wait=s.queue_wait,
        agent_talk=s.agent_talk,
        agents=bool(s.agents),
        caller_audio=None,
    )
    dialled = s.dialled or (flow.document.numbers[0] if flow.document.numbers else "")
    if not dialled:
        raise RunError(f"flow {flow.name} lists no number: give the number to dial (--dial)")
    plan_ = Plan(
        flow, journeys, shares, calls, options, dialled, expected, bookings, capacity, notes
    )
    plan_.notes.append(f"seed {seed}")
    return plan_


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """Calls started, completed and failed, the current call rate and the elapsed time:
    one line rewritten in place on a terminal, a plain line every 10 s otherwise."""

    def __init__(self, mode: Literal["tty", "plain", "off"], out: IO[str]) -> None:
        self.mode = mode
        self.out = out
        self.last_plain = -math.inf
        self.width = 0

    def show(
        self,
        elapsed: float,
        started: int,
        answered: int,
        completed: int,
        failed: int,
        active: int,
        cps: float,
        planned_cps: float,
        total: int,
        note: str = "",
    ) -> None:
        if self.mode == "off":
            return
        mins, secs = divmod(int(elapsed), 60)
        bar = ""
        if total:
            done = min(1.0, started / total)
            filled = round(done * 20)
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        text = (
            f"{bar}{mins:02d}:{secs:02d} started {started}/{total}  answered {answered}  "
            f"completed {completed}  failed {failed}  active {active}  "
            f"cps {cps:.1f} (plan {planned_cps:.1f}){'  ' + note if note else ''}"
        )
        if self.mode == "tty":
            pad = max(0, self.width - len(text))
            self.out.write("\r" + text + " " * pad)
            self.out.flush()
            self.width = len(text)
        elif elapsed - self.last_plain >= PROGRESS_PLAIN_SECONDS:
            self.last_plain = elapsed
            self.out.write(text + "\n")
            self.out.flush()

    def done(self) -> None:
        if self.mode == "tty" and self.width:
            self.out.write("\n")
            self.out.flush()


# -- what a run leaves -----------------------------------------------------------------------


@dataclass
class RunData:
    """Everything gathered: the report is made from this."""

    settings: Settings
    plan: Plan
    started: float  # epoch of the first call (or of the start)
    ended: float
    stopped: str  # why placing calls ended
    records: dict[int, sc.CallRecord]
    sipp_counters: dict[str, int]
    sipp_errors: list[str]
    planned_rate: list[tuple[float, float]]  # (seconds into the run, calls/s)
    scrapes: list[mx.Scrape]
    proc: list[tuple[float, float, float]]  # (epoch, CPU seconds, RSS bytes)
    engine_pid: int | None
    metrics_note: str
    capture: rtp.Quality | None
    capture_note: str
    agents_note: str
    work_dir: Path


_SIPP_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
_NOISE = (
    "receive timeout on message",
    "prefers looking for pcap files",
    "The following events occurred",
    "Aborting call on UNexpected message",
)


def sipp_errors(text: str, limit: int = 8) -> list[str]:
    """SIPp's error file grouped by message, without the expected noise (timeouts our
    pauses take on purpose)."""
    seen: dict[str, int] = {}
    for event in _SIPP_EVENT.split(text):
        line = " ".join(event.split())
        if not line or any(n in line for n in _NOISE[:3]):
            continue
        line = re.sub(r"Call-I[Dd]:? *'?[\w.@:-]+'?", "Call-ID …", line)
        line = re.sub(r"\b\d+-\d+@[\d.]+", "…", line)
        seen[line[:240]] = seen.get(line[:240], 0) + 1
    return [f"{n} × {msg}" for msg, n in sorted(seen.items(), key=lambda kv: -kv[1])[:limit]]


def sipp_counters(stat_file: Path) -> dict[str, int]:
    """The last line's cumulative failure counters of SIPp's `-trace_stat` file."""
    try:
        rows = [r.split(";") for r in stat_file.read_text(errors="replace").splitlines() if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    head, last = rows[0], rows[-1]
    out: dict[str, int] = {}
    for name, value in zip(head, last, strict=False):
        if name.endswith("(C)") and (
            name.startswith(("Failed", "Successful", "Retrans")) or name.startswith("OutOfCall")
        ):
            with contextlib.suppress(ValueError):
                out[name[:-3]] = int(value)
    return out


class _LogTail:
    """Reads new lines of a growing file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def lines(self) -> list[str]:
        try:
            with self.path.open("r", errors="replace") as fh:
                fh.seek(self.offset)
                data = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        data = self.partial + data
        lines = data.split("\n")
        self.partial = lines.pop()
        return lines


# -- running --------------------------------------------------------------------------------------


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RunError(f"{tool} is not installed: apt-get install {package}")
    return path


def _write_inputs(s: Settings, p: Plan, work: Path) -> None:
    """The scenario, the injection file, the caller audio and the tone captures."""
    silence = work / "caller_silence.ulaw"
    if s.caller_audio:
        silence.write_bytes(b"\xff" * (8000 * SILENCE_SECONDS))
    o = p.options
    p.options = sc.Options(
        dtmf=o.dtmf,
        pace=o.pace,
        tone_ms=o.tone_ms,
        caller_audio=str(silence) if s.caller_audio else None,
        queue_wait=o.queue_wait,
        agent_talk=o.agent_talk,
        agents=o.agents,
    )
    used = [j for j in p.journeys if j.name in p.shares]
    layout = sc.key_layout(used, p.calls)
    try:
        scenario = sc.caller_scenario(p.flow.name, used, layout, p.options)
        calls = sc.injection_file(used, p.calls, layout, p.options)
    except sc.ScenarioError as exc:
        raise RunError(str(exc)) from None
    (work / "callers.xml").write_text(scenario, encoding="iso-8859-1", errors="replace")
    (work / "calls.csv").write_text(calls)
    if s.dtmf == "inband":
        for name, data in rtp.inband_captures(
            sc.inband_plan(used, layout, p.options).captures, INBAND_SSRC
        ).items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
    if s.agents:
        (work / "agent_phone.xml").write_text(sc.agent_answer_scenario(s.agent_talk))


def _control(port: int, command: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(("c" + command).encode(), ("127.0.0.1", port))


def run(s: Settings, out: IO[str] = sys.stderr, p: Plan | None = None) -> RunData:
    """Plan (unless given), check, run and gather. Raises RunError before any call is
    placed when something is missing or refused."""
    address = resolve_target(s.host, s.allow_remote)
    if s.metrics_url:
        check_url_host(s.metrics_url, s.allow_remote)
    p = p or plan(s)
    sipp = _need("sipp", "sip-tester")
    if not raw_socket_allowed(sipp):
        raise RunError(
            "SIPp sends key presses through a raw socket: run as root, or give "
            f"it the capability once: setcap cap_net_raw+ep {sipp}"
        )
    capture_note = ""
    if s.capture and shutil.which("tshark") is None:
        s.capture = False
        capture_note = "not captured: tshark is not installed (apt-get install tshark)"
    elif not s.capture:
        capture_note = "not captured: --no-capture"
    if s.transport == "udp":
        status = sip_ping(address, s.port)
        if status is None:
            raise RunError(
                f"no SIP answer from {address}:{s.port} (UDP OPTIONS): is the engine "
                "running? (make run starts it on 127.0.0.1:5060)"
            )
    work = s.work_dir or Path(tempfile.mkdtemp(prefix="hotline-loadtest-"))
    work.mkdir(parents=True, exist_ok=True)
    _write_inputs(s, p, work)
    metrics_note = ""
    scrapes: list[mx.Scrape] = []
    if s.metrics_url:
        try:
            scrapes.append(fetch_metrics(s.metrics_url))
        except RunError as exc:
            if s.metrics_required:
                raise
            metrics_note = f"not scraped: {exc}"
            s.metrics_url = None
    else:
        metrics_note = "not scraped: no --metrics URL"
    engine_pid = s.engine_pid
    if engine_pid is None and ipaddress.ip_address(address).is_loopback:
        engine_pid = find_listener_pid(s.port)
    with _terminate_raises():
        children = Children()
        try:
            return _run(
                s, p, address, work, children, out, scrapes, metrics_note, engine_pid, capture_note
            )
        finally:
            children.stop_all()


def _start_capture(
    s: Settings, address: str, children: Children, work: Path, media_ports: Sequence[int]
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """tshark on the engine's RTP towards our SIPp processes: from its RTP port range
    (even ports: RTCP stays out) to the SIPp media ports (other engines on the machine
    stay out), 64 bytes per packet, bounded in time and count."""
    lo, hi = s.rtp_ports
    ours = " or ".join(f"dst portrange {p}-{p + 3}" for p in media_ports)
    bpf = (
        f"udp and src host {address} and src portrange {lo}-{hi} "
        f"and (udp[0:2] & 1) = 0 and ({ours})"
    )
    iface = "lo" if ipaddress.ip_address(address).is_loopback else "any"
    path = work / "engine_rtp.pcap"
    log = work / "tshark.log"
    cmd = capture.tshark_command(iface, bpf, path, s.max_seconds + 120, s.capture_packets)
    proc = children.start("tshark", cmd, cwd=work, out=log)
    problem = capture.wait_until_capturing(proc, log)
    if problem is not None:
        raise RunError(problem)
    return proc, path, log


def _start_agents(
    s: Settings, address: str, children: Children, work: Path, out: IO[str], media: int
) -> tuple[subprocess.Popen[bytes], int, int]:
    """Register and log the agents in from a free port, then let SIPp answer their
    calls on that port (with an RTP echo on `media`)."""
    port = free_udp_port()
    local = local_address(address, s.port)
    try:
        ag.log_in(
            (address, s.port), local, port, media, s.agents, expires=math.ceil(s.max_seconds + 600)
        )
    except (ag.AgentLineError, OSError) as exc:
        raise RunError(
            f"the load-test agents could not log in: {exc}. They must be acd agents "
            "and registrar users of the target's config, with passwords"
        ) from None
    cmd = [
        "sipp",
        "-sf",
        str(work / "agent_phone.xml"),
        "-i",
        local,
        "-p",
        str(port),
        "-mp",
        str(media),
        "-rtp_echo",
        "-nostdin",
        "-trace_logs",
        "-log_file",
        str(work / "agents.log"),
        "-trace_err",
        "-error_file",
        str(work / "agents_errors.log"),
        "-cp",
        str(free_udp_port()),
        "-timeout",
        f"{math.ceil(s.max_seconds + 120)}s",
        "-trace_stat",
        "-stf",
        str(work / "agents_stats.csv"),
        "-fd",
        "1",
    ]
    proc = children.start("SIPp agents", cmd, cwd=work, out=work / "agents.out")
    time.sleep(0.5)
    if proc.poll() is not None:
        _logout_agents(s, address, port, media)
        raise RunError(
            "the agents' SIPp stopped at once: "
            + (work / "agents.out").read_text(errors="replace")[-600:]
        )
    out.write(
        f"{len(s.agents)} agent(s) registered and logged in: {', '.join(u for u, _p in s.agents)}\n"
    )
    return proc, port, media


def _logout_agents(s: Settings, address: str, port: int, media: int) -> str:
    try:
        ag.log_out((address, s.port), local_address(address, s.port), port, media, s.agents)
    except (ag.AgentLineError, OSError) as exc:
        return f"the agents could not all log out ({exc}): log them out with *42"
    return "agents logged out (*42) and unregistered"


def _run(
    s: Settings,
    p: Plan,
    address: str,
    work: Path,
    children: Children,
    out: IO[str],
    scrapes: list[mx.Scrape],
    metrics_note: str,
    engine_pid: int | None,
    capture_note: str,
) -> RunData:
    progress = Progress(s.progress, out)
    capture: tuple[subprocess.Popen[bytes], Path, Path] | None = None
    caller_media = free_udp_port(span=4)
    agent_media = free_udp_port(span=4) if s.agents else None
    if s.capture:
        ports = [caller_media] + ([agent_media] if agent_media is not None else [])
        capture = _start_capture(s, address, children, work, ports)
    agents: tuple[subprocess.Popen[bytes], int, int] | None = None
    agents_note = ""
    if agent_media is not None:
        agents = _start_agents(s, address, children, work, out, agent_media)
    log = work / "callers.log"
    errors = work / "callers_errors.log"
    stat = work / "callers_stats.csv"
    control = free_udp_port()
    initial = s.traffic.calls(0.0, SAMPLE_SECONDS) / SAMPLE_SECONDS
    cmd = [
        "sipp",
        "-sf",
        str(work / "callers.xml"),
        f"{address}:{s.port}",
        "-s",
        p.dialled,
        "-inf",
        str(work / "calls.csv"),
        "-m",
        str(len(p.calls)),
        "-r",
        f"{initial:.3f}",
        "-rp",
        "1000",
        "-l",
        str(s.concurrent),
        "-t",
        "u1" if s.transport == "udp" else "t1",
        "-i",
        s.local_ip or local_address(address, s.port),
        "-p",
        str(free_udp_port()),
        "-mp",
        str(caller_media),
        "-cp",
        str(control),
        "-ci",
        "127.0.0.1",
        "-nostdin",
        "-trace_logs",
        "-log_file",
        str(log),
        "-trace_err",
        "-error_file",
        str(errors),
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-timeout",
        f"{math.ceil(s.max_seconds + 60)}s",
        "-deadcall_wait",
        "3000",
        "-max_recv_loops",
        "10000",
    ]
    tail = _LogTail(log)
    records: dict[int, sc.CallRecord] = {}
    expected = {i: j.result for i, j in enumerate(j for j in p.journeys if j.name in p.shares)}
    counts = {"started": 0, "answered": 0, "completed": 0, "failed": 0}
    starts: list[float] = []
    planned: list[tuple[float, float]] = []
    proc_samples: list[tuple[float, float, float]] = []
    stopped = "the planned calls were placed"
    t_start = time.time()
    mono0 = time.monotonic()
    sipp = children.start("SIPp callers", cmd, cwd=work, out=work / "callers.out")
    last_rate = initial
    next_tick = 0.0
    next_scrape = 0.0
    quitting = False
    try:
        while True:
            elapsed = time.monotonic() - mono0
            if elapsed >= next_tick:
                next_tick = elapsed + SAMPLE_SECONDS
                rate = s.traffic.calls(elapsed, elapsed + SAMPLE_SECONDS) / SAMPLE_SECONDS
                exhausted = counts["started"] >= len(p.calls) or quitting
                planned.append((round(elapsed, 2), 0.0 if exhausted else round(rate, 4)))
                if not quitting and abs(rate - last_rate) > max(0.01, 0.02 * last_rate):
                    with contextlib.suppress(OSError):
                        _control(control, f"set rate {rate:.4f}")
                    last_rate = rate
                if engine_pid is not None:
                    sample = proc_sample(engine_pid)
                    if sample is not None:
                        proc_samples.append((time.time(), *sample))
            if s.metrics_url and elapsed >= next_scrape:
                next_scrape = elapsed + s.scrape_seconds
                with contextlib.suppress(RunError):
                    scrapes.append(fetch_metrics(s.metrics_url, timeout=1.0))
            for line in tail.lines():
                _count(line, records, counts, starts, expected)
            if not quitting and elapsed >= s.traffic.duration:
                quitting = True
                stopped = f"the profile's {s.traffic.duration:g} s ended"
                with contextlib.suppress(ProcessLookupError):
                    sipp.send_signal(signal.SIGUSR1)
            if elapsed >= s.max_seconds:
                stopped = f"--max-seconds {s.max_seconds:g} reached: calls in progress were cut"
                Children.stop(sipp, signal.SIGTERM, 5.0)
            now = time.time()
            recent = sum(1 for t in starts[-500:] if t >= now - 5.0) / 5.0
            active = counts["started"] - counts["completed"] - counts["failed"]
            progress.show(
                elapsed,
                counts["started"],
                counts["answered"],
                counts["completed"],
                counts["failed"],
                max(0, active),
                recent,
                s.traffic.rate(elapsed)
                if elapsed < s.traffic.duration and counts["started"] < len(p.calls)
                else 0.0,
                len(p.calls),
                "stopping: waiting for calls in progress"
                if quitting and sipp.poll() is None
                else "",
            )
            if sipp.poll() is not None:
                break
            time.sleep(0.25)
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C or a signal): calls in progress were cut"
        Children.stop(sipp, signal.SIGUSR1, 2.0)
        raise
    finally:
        progress.done()
        Children.stop(sipp, signal.SIGTERM, 5.0)
    for line in [*tail.lines(), tail.partial]:
        _count(line, records, counts, starts, expected)
    if not records and not quitting and stopped == "the planned calls were placed":
        said = (work / "callers.out").read_text(errors="replace").strip().splitlines()
        raise RunError(
            f"SIPp stopped (exit {sipp.returncode}) without placing a call: "
            + " | ".join(line.strip() for line in said[-4:])
        )
    ended = time.time()
    if s.traces_dir is not None:
        read_traces(records, expected, s.traces_dir)
    if s.metrics_url:
        time.sleep(min(2.0, s.scrape_seconds))
        try:
            scrapes.append(fetch_metrics(s.metrics_url))
        except RunError as exc:
            metrics_note = f"the last scrape failed: {exc}"
    if agents is not None:
        Children.stop(agents[0], signal.SIGTERM, 5.0)
        agents_note = _logout_agents(s, address, agents[1], agents[2])
    quality: rtp.Quality | None = None
    if capture is not None:
        Children.stop(capture[0], signal.SIGINT, 15.0)
        try:
            packets = rtp.read_pcap(capture[1].read_bytes())
            quality = rtp.analyse(packets)
            dropped = sum(
                int(n)
                for n in re.findall(
                    r"(\d+) packets? dropped", capture[2].read_text(errors="replace")
                )
            )
            notes = []
            if dropped:
                notes.append(f"the capture dropped {dropped} packets (figures incomplete)")
            if len(packets) >= s.capture_packets:
                notes.append(
                    f"the capture stopped at {s.capture_packets} packets "
                    "(--capture-packets): later streams are missing"
                )
            capture_note = "; ".join(notes)
        except (OSError, rtp.CaptureError) as exc:
            capture_note = f"the capture could not be read: {exc}"
    return RunData(
        settings=s,
        plan=p,
        started=t_start,
        ended=ended,
        stopped=stopped,
        records=records,
        sipp_counters=sipp_counters(stat),
        sipp_errors=sipp_errors(errors.read_text(errors="replace") if errors.exists() else ""),
        planned_rate=planned,
        scrapes=scrapes,
        proc=proc_samples,
        engine_pid=engine_pid,
        metrics_note=metrics_note,
        capture=quality,
        capture_note=capture_note,
        agents_note=agents_note,
        work_dir=work,
    )


MAX_TRACES: Final = 500  # traces of failed calls read to explain them


def trace_name(call_id: str) -> str:
    """The file name the engine gives a call's trace (hotline.engine.ivr_calls)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in call_id)[:120] + ".jsonl"


def read_traces(
    records: dict[int, sc.CallRecord], expected: dict[int, str | None], traces_dir: Path
) -> int:
    """For calls that did not end as their journey says, the steps the engine's trace
    shows (with each service's outcome) and the flow's result; returns how many were
    read. A missing or unreadable trace leaves the call as it was."""
    from hotline.ivr.replay import TraceError, read_trace

    read = 0
    for rec in records.values():
        if read >= MAX_TRACES:
            break
        want = expected.get(rec.journey)
        ok = rec.end_kind == "caller" or (
            rec.end_kind == "bye" and (want is None or rec.seen == want)
        )
        if ok or not rec.call_id or rec.rejected is not None:
            continue
        found = sorted(traces_dir.glob(f"*/{trace_name(rec.call_id)}"))
        if not found:
            continue
        try:
            trace = read_trace(found[-1])
        except TraceError:
            continue
        steps: list[list[str]] = []
        for entry in trace.entries:
            if entry.get("event") == "step":
                scope = entry.get("scope")
                steps.append([f"{scope}:{entry['step']}" if scope else str(entry["step"]), ""])
            elif entry.get("event") == "result" and steps and not steps[-1][1]:
                steps[-1][1] = str(entry.get("outcome", ""))
        rec.engine_steps = tuple((a, b) for a, b in steps)
        rec.engine_result = str(trace.header.get("result") or "")
        read += 1
    return read


def _count(
    line: str,
    records: dict[int, sc.CallRecord],
    counts: dict[str, int],
    starts: list[float],
    expected: dict[int, str | None],
) -> None:
    """Feed one log line to the live counters (the report re-reads the whole log)."""
    parsed = sc.parse_log(line)
    for number, rec in parsed.items():
        current = records.setdefault(number, sc.CallRecord(number))
        kind = line[:1]
        if kind == "S":
            current.journey, current.started, current.call_id = (
                rec.journey,
                rec.started,
                rec.call_id,
            )
            counts["started"] += 1
            starts.append(rec.started or time.time())
        elif kind == "A":
            current.answered = rec.answered
            counts["answered"] += 1
        elif kind == "R":
            current.rejected, current.ended = rec.rejected, rec.ended
            counts["failed"] += 1
        elif kind == "E":
            current.ended, current.end_kind, current.seen = rec.ended, rec.end_kind, rec.seen
            want = expected.get(current.journey)
            good = rec.end_kind == "caller" or (
                rec.end_kind == "bye" and (want is None or rec.seen == want)
            )
            counts["completed" if good else "failed"] += 1
