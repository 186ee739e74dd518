"""Integration fixtures: a real `hotline serve` process on loopback, and real peers.

Peers (SIPp, pyVoIP) are required: `make test` installs them. A missing peer fails the
test with the install command instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _defuse_pyvoip_finalizer() -> None:
    """pyVoIP's `VoIPCall.__del__` releases the call's RTP ports, which asks threads
    whether they are alive. When the cyclic garbage collector runs that finalizer inside
    `threading`'s own bookkeeping — a new thread registering itself, holding
    `_shutdown_locks_lock` — `is_alive()` takes that lock again and the thread hangs for
    good, and with it the `Thread.start()` that waits for it (seen: a pyVoIP call stuck
    in starting its RTP thread until the test timed out). Without the finalizer nothing
    leaks: pyVoIP reclaims ports of ended calls itself whenever its range runs out
    (`VoIPPhone.request_port`), and `stop()` ends everything."""
    try:
        from pyVoIP.VoIP import VoIPCall
    except ImportError:  # the tests that need pyVoIP say so themselves
        return
    VoIPCall.__del__ = lambda self: None  # type: ignore[method-assign]


_defuse_pyvoip_finalizer()


def free_port(transports: tuple[str, ...] = ("udp", "tcp")) -> int:
    """A port free for every transport in `transports` on 127.0.0.1."""
    for _ in range(200):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        ok = True
        for t in transports:
            kind = socket.SOCK_DGRAM if t == "udp" else socket.SOCK_STREAM
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no free port found")


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is required for this test: apt-get install {package} (make test does it)")
    return path


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path
    http_port: int | None = None  # set by tests that enable the HTTP listener

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


DEFAULT_CONFIG = """
node_name: test
sip:
  listen:
    - {{transport: udp, host: 127.0.0.1, port: {port}}}
    - {{transport: tcp, host: 127.0.0.1, port: {port}}}
  domain: hotline.test
  timers: {{t1_ms: {t1}, t2_ms: 4000, t4_ms: 5000}}
{sip_extra}limits:
  max_calls: {max_calls}
  max_cps: {max_cps}
  drain_seconds: {drain}
  register_per_source: {{rate: {reg_rate}, burst: {reg_burst}}}
  requests_per_source: {{rate: 5000.0, burst: 10000}}
registrar:
  realm: hotline.test
  require_auth: {require_auth}
{registrar_extra}  users:
    - {{username: alice, password: wonderland}}
    - {{username: bob, password: builder}}
{users_extra}rtp:
  port_min: {rtp_min}
  port_max: {rtp_max}
  inactivity_timeout_seconds: {rtp_inactivity}
{rtp_extra}paths:
  data: {data}
  flows: {flows}
  audio: {audio}
ivr:
  default_flow: {default_flow}
  reload_check_seconds: {reload_check}
database:
  url: sqlite:///{data}/hotline.db
http:
  enabled: {http_enabled}
  listen: 127.0.0.1:{http_port}
logging:
  level: info
  levels: {{dtmf: debug}}
"""


def start_server(tmp: Path, **overrides: object) -> Server:
    port = free_port()
    rtp_min = 30000 + (port % 1000) * 20
    values: dict[str, object] = {
        "port": port, "t1": 500, "max_calls": 500, "max_cps": 500.0, "drain": 30.0,
        "reg_rate": 5.0, "reg_burst": 20, "require_auth": "true",
        "rtp_min": rtp_min, "rtp_max": rtp_min + 2000, "data": tmp / "var",
        "registrar_extra": "", "users_extra": "", "sip_extra": "", "rtp_inactivity": 30.0, "rtp_extra": "",
        "flows": ROOT / "tests" / "data" / "flows", "audio": ROOT / "audio",
        "default_flow": "listen", "reload_check": 1.0,
        "http_enabled": "false", "http_port": 8080,
    }
    extra = str(overrides.pop("extra_yaml", ""))
    values.update(overrides)
    cfg = tmp / "config.yaml"
    cfg.write_text(textwrap.dedent(DEFAULT_CONFIG.format(**values)) + extra)
    log = tmp / "hotline.log"
    fh = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotline.cli", "serve", "--config", str(cfg)],
        stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = Server(proc, port, cfg, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hotline exited {proc.returncode}:\n{server.log_text()}")
        text = server.log_text()
        # SIP listens first; the HTTP listener (when enabled) a moment later.
        if re.search(r"listening on tcp", text) and (
                values["http_enabled"] != "true" or "http listening on" in text):
            return server
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"hotline did not start:\n{server.log_text()}")


def stop_server(server: Server, timeout: float = 15) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path)
    yield s
    stop_server(s)


def run_sipp(args: list[str], timeout: float = 60, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    sipp = require("sipp", "sip-tester")
    port = free_port(("udp",))
    cmd = [sipp, *args, "-i", "127.0.0.1", "-p", str(port), "-nostdin",
           "-timeout", f"{int(timeout)}s", "-timeout_error"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, cwd=cwd)


def sip_request(port: int, data: bytes, *, timeout: float = 2.0, expect: int = 1,
                transport: str = "udp") -> list[bytes]:
    """Send raw bytes to the server and collect up to `expect` replies."""
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        out: list[bytes] = []
        try:
            while len(out) < expect:
                out.append(s.recvfrom(65535)[0])
        except TimeoutError:
            pass
        s.close()
        return out
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.sendall(data)
    buf = b""
    try:
        while True:
            chunk = c.recv(65535)
            if not chunk:
                break
            buf += chunk
            if buf.count(b"SIP/2.0 ") >= expect and buf.endswith(b"\r\n\r\n"):
                break
    except TimeoutError:
        pass
    c.close()
    return [buf] if buf else []
