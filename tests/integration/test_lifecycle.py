"""Start-up and shutdown of `hotline serve`: config errors with positions, graceful drain."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, start_server

pytestmark = pytest.mark.integration

SDP = (
    "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _invite(port: int, call_id: str, branch: str) -> bytes:
    return (
        f"INVITE sip:1800@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        f"From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:1800@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:caller@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def _recv_until(s: socket.socket, pred: object, timeout: float) -> bytes:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = s.recvfrom(65535)[0]
        except TimeoutError:
            break
        if callable(pred) and pred(data):
            return data
    raise AssertionError("expected message did not arrive")


def _header(msg: bytes, name: bytes) -> bytes:
    for line in msg.split(b"\r\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError(f"no {name!r} in {msg[:200]!r}")


def test_sigterm_drains_then_byes_remaining_calls(tmp_path: Path) -> None:
    server = start_server(tmp_path, drain=1.0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    dest = ("127.0.0.1", server.port)
    try:
        s.sendto(_invite(me, "drain-1", "z9hG4bKdrain1"), dest)
        ok = _recv_until(s, lambda d: d.startswith(b"SIP/2.0 200 "), 5)
        to = _header(ok, b"To")
        ack = (
            f"ACK sip:hotline@127.0.0.1:{server.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKdrainack;rport\r\n"
            f"From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to.decode()}\r\n"
            "Call-ID: drain-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        s.sendto(ack, dest)
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # New calls are refused while draining.
        s.sendto(_invite(me, "drain-2", "z9hG4bKdrain2"), dest)
        busy = _recv_until(s, lambda d: b"drain-2" in d and d.startswith(b"SIP/2.0 5"), 5)
        assert busy.startswith(b"SIP/2.0 503 ")
        assert _header(busy, b"Retry-After")
        # After drain_seconds the call in progress gets a BYE.
        bye = _recv_until(s, lambda d: d.startswith(b"BYE "), 6)
        assert _header(bye, b"Call-ID") == b"drain-1"
        assert b"Shutting down" in _header(bye, b"Reason")
        reply = b"SIP/2.0 200 OK\r\n" + b"".join(
            ln + b"\r\n" for ln in bye.split(b"\r\n")
            if ln.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")
        ) + b"Content-Length: 0\r\n\r\n"
        s.sendto(reply, dest)
        assert server.proc.wait(15) == 0
    finally:
        s.close()
        if server.proc.poll() is None:
            server.proc.kill()
    log = server.log_text()
    assert "draining: 1 calls in progress" in log
    assert "drain time over: sent BYE to 1 calls" in log


def test_bad_config_stops_startup_with_positions(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sip:\n  listen:\n    - {transport: udp, host: 127.0.0.1, port: 99999}\n"
                   "  domian: x\n")
    res = subprocess.run([sys.executable, "-m", "hotline.cli", "serve", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"{cfg}:3:") and "sip.listen[0].port" in lines[0]
    assert "99999" in lines[0]
    assert lines[1].startswith(f"{cfg}:4:3: sip: unknown key 'domian' (did you mean 'domain'?)")


def test_bad_sip_listen_flag(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "hotline.cli", "serve", "--config",
                          str(ROOT / "config.yaml"), "--sip-listen", "nonsense"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert res.returncode == 2
    assert "--sip-listen: expected HOST:PORT" in res.stderr
