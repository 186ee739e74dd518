"""Real UDP/TCP against `hotline serve`: the torture corpus as datagrams, a REGISTER flood,
and user enumeration resistance."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import TORTURE
from tests.integration.conftest import Server, sip_request, start_server, stop_server
from tests.unit.sip.test_endpoint_torture import VERDICTS

pytestmark = pytest.mark.integration

# With digest auth on (the default), REGISTERs are challenged instead of bound.
AUTH_VERDICTS = {
    **VERDICTS,
    "rfc4475/escnull.dat": 401, "rfc4475/dblreq.dat": 401, "rfc4475/regaut01.dat": 401,
    "rfc4475/cparam01.dat": 401, "rfc4475/cparam02.dat": 401, "rfc4475/regescrt.dat": 401,
    "rfc5118/ipv6-good": 401, "rfc5118/port-ambiguous": 401, "rfc5118/port-unambiguous": 401,
}


def _tx_key(data: bytes) -> bytes:
    """Top Via and method: RFC 4475's messages reuse branches (z9hG4bKkdjuw...)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    via = next((ln for ln in head if ln.lower().startswith((b"via:", b"v:"))), b"")
    return head[0].split(b" ", 1)[0] + b" " + via


def test_torture_corpus_over_udp(tmp_path: Path) -> None:
    # A short T1 lets a finished transaction (64*T1) make way for the next message
    # that carries the same branch, as the corpus files often do.
    server = start_server(tmp_path, t1=20)
    seen: set[bytes] = set()
    try:
        _torture(server, seen)
    finally:
        stop_server(server)


def _torture(server: Server, seen: set[bytes]) -> None:
    for name, expected in sorted(AUTH_VERDICTS.items()):
        key = _tx_key((TORTURE / name).read_bytes())
        if key in seen:
            time.sleep(64 * 0.020 + 0.3)
            seen.clear()
        seen.add(key)
        replies = sip_request(server.port, (TORTURE / name).read_bytes(),
                              timeout=0.3 if expected is None else 2.0)
        if expected is None:
            assert replies == [], name
            continue
        assert replies, f"{name}: no reply"
        first = replies[0].split(b"\r\n", 1)[0].decode("utf-8", "replace")
        assert first.startswith(f"SIP/2.0 {expected} "), f"{name}: {first}"
        assert server.alive(), name
    # Still serving afterwards.
    assert sip_request(server.port, OPTIONS)[0].startswith(b"SIP/2.0 200 ")


def test_regaut01_gets_a_digest_challenge(server: Server) -> None:
    [r] = sip_request(server.port, (TORTURE / "rfc4475/regaut01.dat").read_bytes())
    assert r.startswith(b"SIP/2.0 401 ")
    assert re.search(rb"\r\nWWW-Authenticate: Digest .*algorithm=SHA-256", r)
    assert re.search(rb"\r\nWWW-Authenticate: Digest .*algorithm=MD5", r)


OPTIONS = (
    b"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKoptafter;rport\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:hotline@127.0.0.1>\r\n"
    b"Call-ID: options-after\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def register(user: str, n: int) -> bytes:
    return (
        f"REGISTER sip:hotline.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKreg{user}{n};rport\r\n"
        f"From: <sip:{user}@hotline.test>;tag=r{n}\r\nTo: <sip:{user}@hotline.test>\r\n"
        f"Call-ID: reg-{user}-{n}\r\nCSeq: {n} REGISTER\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{user}@127.0.0.1:5999>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_unauthenticated_register_flood_is_rate_limited(server: Server) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    sent = 300
    for i in range(sent):
        s.sendto(register("mallory", i), ("127.0.0.1", server.port))
    codes: list[int] = []
    try:
        while True:
            data = s.recvfrom(65535)[0]
            codes.append(int(data.split(b" ", 2)[1]))
    except TimeoutError:
        pass
    s.close()
    challenged = codes.count(401)
    limited = codes.count(503)
    # The configured burst (20) is challenged; the rest is refused with Retry-After.
    assert 15 <= challenged <= 40, codes[:50]
    assert limited + challenged == len(codes) and limited > 200
    # The engine keeps serving other sources.
    assert sip_request(server.port, OPTIONS)[0].startswith(b"SIP/2.0 200 ")


def test_unknown_and_known_users_get_the_same_challenge(server: Server) -> None:
    def challenge(user: str) -> tuple[bytes, float]:
        t0 = time.perf_counter()
        [r] = sip_request(server.port, register(user, 1))
        return r, time.perf_counter() - t0

    known, _ = challenge("alice")
    unknown, _ = challenge("nobody-here")

    def shape(r: bytes) -> list[bytes]:
        lines = [ln for ln in r.split(b"\r\n") if ln]
        out = []
        for ln in lines:
            name = ln.split(b":", 1)[0]
            if name == b"WWW-Authenticate":
                out.append(re.sub(rb'nonce="[^"]*"', b'nonce="N"', ln))
            elif name in (b"SIP/2.0 401 Unauthorized",):
                out.append(ln)
            else:
                out.append(name)
        return out

    assert known.startswith(b"SIP/2.0 401 ") and unknown.startswith(b"SIP/2.0 401 ")
    assert shape(known) == shape(unknown)
