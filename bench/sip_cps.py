"""Benchmark: SIP calls per second against `hotline serve`, SIPp's `-sn uas` as the floor.

For each call rate (calls per second) SIPp's built-in UAC places `rate × seconds` calls
(INVITE → 200 → ACK → pause → BYE → 200) first against hotline, then against SIPp's own
UAS in the same run. A rate passes when every call succeeds. Reports, per target, the
highest passing rate (RFC 7502 style: zero failures) and the INVITE→200 response time
p50/p99 from SIPp's own measurement (-trace_rtt), and the ratio hotline / floor.

    .venv/bin/python bench/sip_cps.py [--rates 100,200,300,400,500] [--seconds 5]

Network traffic stays on 127.0.0.1; every run is bounded by count and time.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()


@dataclass
class Step:
    target: str
    rate: int
    calls: int
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    cpu_pct: float  # server CPU (100 = one core) over the step, hotline only


def start_hotline(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = tmp / "bench.yaml"
    cfg.write_text(textwrap.dedent(f"""
        sip:
          listen:
            - {{transport: udp, host: 127.0.0.1, port: {port}}}
            - {{transport: tcp, host: 127.0.0.1, port: {port}}}
        limits:
          max_calls: 9000
          max_cps: 5000.0
          requests_per_source: {{rate: 100000.0, burst: 100000}}
        rtp: {{port_min: 40000, port_max: 59999}}
        paths: {{data: {tmp}/var}}
        database: {{url: "sqlite:///{tmp}/var/hotline.db"}}
        http: {{enabled: false}}
        logging: {{level: warning}}
    """))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotline.cli", "serve", "--config", str(cfg)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / "hotline.err").open("wb"),
    )
    time.sleep(1.5)
    if proc.poll() is not None:
        raise SystemExit("hotline did not start:\n" + (tmp / "hotline.err").read_text())
    return proc, port


def start_sipp_uas(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run_step(label: str, target_port: int, rate: int, seconds: int, tmp: Path,
             server_pid: int | None) -> Step:
    calls = rate * seconds
    work = Path(tempfile.mkdtemp(dir=tmp))
    cmd = [
        "sipp", "-sn", "uac", f"127.0.0.1:{target_port}", "-i", "127.0.0.1",
        "-p", str(free_port()), "-r", str(rate), "-m", str(calls), "-l", str(calls),
        "-d", "500", "-nostdin", "-trace_rtt", "-rtt_freq", "1", "-trace_stat",
        "-timeout", f"{seconds + 40}s", "-timeout_error", "-max_socket", "1000",
    ]
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=seconds + 90)
    wall = time.monotonic() - t0
    cpu = (cpu_seconds(server_pid) - cpu0) / wall * 100 if server_pid else 0.0
    ok = failed = 0
    for stat in work.glob("*_.csv"):
        rows = list(csv.reader(stat.open(), delimiter=";"))
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            idx_ok = head.index("SuccessfulCall(C)")
            idx_fail = head.index("FailedCall(C)")
            ok, failed = int(last[idx_ok]), int(last[idx_fail])
    times: list[float] = []
    for rtt in work.glob("*_rtt.csv"):
        for row in list(csv.reader(rtt.open(), delimiter=";"))[1:]:
            try:
                times.append(float(row[2]))
            except (IndexError, ValueError):
                continue
    if not ok and proc.returncode == 0:
        ok = calls
    if ok + failed < calls:
        failed = calls - ok
    times.sort()
    p50 = statistics.median(times) if times else float("nan")
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
    return Step(label, rate, calls, ok, failed, p50, p99, cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="100,200,300,400,500,600")
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    steps: list[Step] = []
    hot, hot_port = start_hotline(tmp)
    uas_port = free_port()
    uas = start_sipp_uas(uas_port, tmp)
    try:
        for rate in rates:
            for label, port, pid in (("hotline", hot_port, hot.pid), ("sipp-uas", uas_port, None)):
                s = run_step(label, port, rate, args.seconds, tmp, pid)
                steps.append(s)
                print(f"{s.target:9} {s.rate:5d} cps  calls {s.calls:5d}  ok {s.ok:5d}  "
                      f"failed {s.failed:4d}  INVITE→200 p50 {s.p50_ms:6.2f} ms  "
                      f"p99 {s.p99_ms:6.2f} ms" + (f"  cpu {s.cpu_pct:5.1f}%" if pid else ""),
                      flush=True)
    finally:
        hot.send_signal(signal.SIGTERM)
        uas.send_signal(signal.SIGTERM)
        for p in (hot, uas):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    print()
    for label in ("hotline", "sipp-uas"):
        passing = [s for s in steps if s.target == label and s.failed == 0]
        best = max(passing, key=lambda s: s.rate) if passing else None
        if best:
            print(f"{label:9} highest rate with 0 failures: {best.rate} cps "
                  f"(p50 {best.p50_ms:.2f} ms, p99 {best.p99_ms:.2f} ms)")
        else:
            print(f"{label:9} no rate passed with 0 failures")
    hb = [s for s in steps if s.target == "hotline" and s.failed == 0]
    fb = [s for s in steps if s.target == "sipp-uas" and s.failed == 0]
    if hb and fb:
        h, f = max(s.rate for s in hb), max(s.rate for s in fb)
        print(f"ratio hotline/floor (max clean cps): {h / f:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
