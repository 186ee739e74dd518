"""SIPp, a real third-party SIP peer, placing calls against `hotline serve`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Server,
    run_sipp,
    sip_request,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration
SCENARIOS = Path(__file__).parent / "scenarios"


def _counts(out: str) -> tuple[int, int]:
    """Successful and failed call totals from SIPp's final screen."""
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return (int(ok[-1]) if ok else -1, int(failed[-1]) if failed else -1)


def test_sipp_uac_calls_over_udp(server: Server) -> None:
    res = run_sipp(["-sn", "uac", server.target, "-m", "30", "-r", "15", "-l", "30",
                    "-d", "300"], timeout=60)
    ok, failed = _counts(res.stdout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert (ok, failed) == (30, 0)
    assert server.alive()
    assert server.log_text().count("answered call") == 30


def test_sipp_uac_calls_over_tcp(server: Server) -> None:
    res = run_sipp(["-sn", "uac", server.target, "-t", "t1", "-m", "10", "-r", "10",
                    "-d", "200"], timeout=60)
    ok, failed = _counts(res.stdout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert (ok, failed) == (10, 0)


def test_every_call_completes_with_ten_percent_loss(server: Server) -> None:
    # SIPp drops 10 % of the messages it sends and receives; RFC 3261 retransmission
    # on both sides (INVITE, 2xx until ACK, BYE and its 200) must still finish every call.
    res = run_sipp(["-sn", "uac", server.target, "-m", "25", "-r", "5", "-l", "25",
                    "-d", "200", "-lost", "10"], timeout=120)
    ok, failed = _counts(res.stdout)
    assert (ok, failed) == (25, 0), res.stdout[-3000:]
    assert res.returncode == 0
    assert server.alive()


def test_cancel_before_answer(tmp_path: Path) -> None:
    server = start_server(tmp_path, sip_extra="  ring_ms: 3000\n")
    try:
        res = run_sipp(["-sf", str(SCENARIOS / "uac_cancel.xml"), server.target, "-m", "5",
                        "-r", "5", "-l", "5"], timeout=60)
        ok, failed = _counts(res.stdout)
        assert (ok, failed) == (5, 0), res.stdout[-3000:] + res.stderr[-2000:]
        assert res.returncode == 0
        log = server.log_text()
        assert log.count("ended: cancelled") == 5
        assert "answered call" not in log
    finally:
        stop_server(server)


def test_options_answers_capabilities(server: Server) -> None:
    req = (
        b"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt1;rport\r\n"
        b"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:hotline@127.0.0.1>\r\n"
        b"Call-ID: options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    [resp] = sip_request(server.port, req)
    text = resp.decode()
    assert text.startswith("SIP/2.0 200 OK\r\n")
    assert re.search(r"^Allow: .*INVITE.*BYE.*CANCEL", text, re.M)
    assert "Accept: application/sdp" in text
    assert re.search(r"^Supported:", text, re.M)
    assert re.search(r";received=127\.0\.0\.1|;rport=\d+", text)
