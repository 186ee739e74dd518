"""The media tick against real peers: SIPp sending RFC 4733 DTMF (a stock capture and its
own `play_dtmf`), and a plain-socket peer that sends in-band DTMF tones, reads the RTP the
engine sends back, and stays silent to trigger the RTP inactivity hang-up."""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from hotline.media import g711, tones
from tests.integration.conftest import Server, run_sipp, start_server, stop_server

pytestmark = pytest.mark.integration
SCENARIOS = Path(__file__).parent / "scenarios"
DTMF_2833 = SCENARIOS / "uac_dtmf_2833.xml"


def _counts(out: str) -> tuple[int, int]:
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return (int(ok[-1]) if ok else -1, int(failed[-1]) if failed else -1)


def _digits_by_call(log: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for call_id, digit, method in re.findall(r"call (\S+): DTMF (\S) by (\w+)", log):
        out.setdefault(call_id, []).append((digit, method))
    return out


def _wait_for(server: Server, pattern: str, count: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = server.log_text()
        if len(re.findall(pattern, log)) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_sipp_stock_rfc4733_capture_reports_each_press_once(server: Server) -> None:
    res = run_sipp(["-sf", str(DTMF_2833), server.target, "-m", "3", "-r", "3", "-l", "3"],
                   timeout=60)
    assert _counts(res.stdout) == (3, 0), res.stdout[-3000:] + res.stderr[-2000:]
    assert res.returncode == 0
    log = _wait_for(server, r"ended: remote-bye", 3)
    answered = re.findall(r"answered call (\S+) from", log)
    assert len(answered) == 3
    digits = _digits_by_call(log)
    for call_id in answered:
        assert digits.get(call_id) == [("1", "rfc4733")], log[-3000:]
    assert log.count("DTMF 1 by rfc4733") == 3
    assert server.alive()


def test_sipp_every_stock_capture_in_one_call(server: Server, tmp_path: Path) -> None:
    # SIPp ships dtmf_2833_0 … _9: all ten, one after another, in each of two calls
    presses = "\n".join(
        f'<nop><action><exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_{d}.pcap"/>'
        '</action></nop>\n<pause milliseconds="450"/>' for d in "0123456789")
    text = re.sub(r'<nop>\s*<action>\s*<exec play_pcap_audio="[^"]+"/>\s*</action>\s*</nop>',
                  lambda _m: presses, DTMF_2833.read_text())
    assert text.count("dtmf_2833_") == 10
    scenario = tmp_path / "uac_all_digits.xml"
    scenario.write_text(text)
    res = run_sipp(["-sf", str(scenario), server.target, "-m", "2", "-r", "2", "-l", "2"],
                   timeout=60)
    assert _counts(res.stdout) == (2, 0), res.stdout[-3000:] + res.stderr[-2000:]
    log = _wait_for(server, r"ended: remote-bye", 2)
    answered = re.findall(r"answered call (\S+) from", log)
    assert len(answered) == 2
    digits = _digits_by_call(log)
    for call_id in answered:
        assert digits.get(call_id) == [(d, "rfc4733") for d in "0123456789"], log[-3000:]


def test_sipp_play_dtmf_digits_arrive_in_order(server: Server, tmp_path: Path) -> None:
    # SIPp 3.6.1's play_dtmf sends telephone-events with payload type 96 (fixed in its
    # source), from a second SSRC, after 400 ms of payload-type-97 no-op packets.
    text = DTMF_2833.read_text()
    text = text.replace("RTP/AVP 0 101", "RTP/AVP 0 96")
    text = text.replace("rtpmap:101 ", "rtpmap:96 ").replace("fmtp:101 ", "fmtp:96 ")
    text = re.sub(r'<exec play_pcap_audio="[^"]+"/>', '<exec play_dtmf="4#9"/>', text)
    text = text.replace('<pause milliseconds="1500"/>', '<pause milliseconds="2500"/>')
    scenario = tmp_path / "uac_play_dtmf.xml"
    scenario.write_text(text)
    res = run_sipp(["-sf", str(scenario), server.target, "-m", "2", "-r", "2", "-l", "2"],
                   timeout=60)
    assert _counts(res.stdout) == (2, 0), res.stdout[-3000:] + res.stderr[-2000:]
    log = _wait_for(server, r"ended: remote-bye", 2)
    answered = re.findall(r"answered call (\S+) from", log)
    assert len(answered) == 2
    digits = _digits_by_call(log)
    for call_id in answered:
        assert digits.get(call_id) == [("4", "rfc4733"), ("#", "rfc4733"), ("9", "rfc4733")]


# -- a plain-socket peer ---------------------------------------------------------------


class RawCaller:
    """Just enough of a UAC over UDP to set up a call and exchange RTP with the engine."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(3.0)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(1.0)
        self.sip_port = self.sip.getsockname()[1]
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = f"raw-{self.sip_port}@127.0.0.1"
        self.to_tag = ""
        self.remote_rtp: tuple[str, int] | None = None

    def _request(self, method: str, cseq: int, body: bytes = b"", branch: str = "") -> bytes:
        to = f"<sip:hotline@127.0.0.1:{self.server.port}>"
        if self.to_tag:
            to += f";tag={self.to_tag}"
        headers = [
            f"{method} sip:hotline@127.0.0.1:{self.server.port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{branch or method}{cseq}",
            f"From: <sip:raw@127.0.0.1:{self.sip_port}>;tag=rawtag",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:raw@127.0.0.1:{self.sip_port}>",
            "Max-Forwards: 70",
        ]
        if body:
            headers.append("Content-Type: application/sdp")
        headers.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(headers) + "\r\n\r\n").encode() + body

    def _response(self, method: str) -> str:
        while True:
            text = self.sip.recv(65535).decode()
            if text.startswith("SIP/2.0 1"):
                continue
            assert re.search(rf"^CSeq: \d+ {method}", text, re.M), text
            return text

    def call(self) -> None:
        sdp = (
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        ).encode()
        self.sip.sendto(self._request("INVITE", 1, sdp), ("127.0.0.1", self.server.port))
        ok = self._response("INVITE")
        assert ok.startswith("SIP/2.0 200"), ok
        tag = re.search(r"^To: .*;tag=([^;\s]+)", ok, re.M)
        assert tag is not None
        self.to_tag = tag.group(1)
        port = re.search(r"^m=audio (\d+) ", ok, re.M)
        assert port is not None
        self.remote_rtp = ("127.0.0.1", int(port.group(1)))
        self.sip.sendto(self._request("ACK", 1, branch="ack"), ("127.0.0.1", self.server.port))

    def send_audio(self, samples: np.ndarray, ssrc: int = 0x5EED) -> None:
        assert self.remote_rtp is not None
        codes = g711.ulaw_encode(samples.astype(np.int16))
        start = time.monotonic()
        for i in range(len(codes) // 160):
            packet = struct.pack("!BBHII", 0x80, 0, i, 1000 + 160 * i, ssrc)
            self.rtp.sendto(packet + codes[160 * i : 160 * (i + 1)].tobytes(), self.remote_rtp)
            delay = start + 0.02 * (i + 1) - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def received_rtp(self) -> list[bytes]:
        self.rtp.settimeout(0.0)
        out = []
        try:
            while True:
                out.append(self.rtp.recv(2048))
        except (BlockingIOError, TimeoutError):
            pass
        self.rtp.settimeout(1.0)
        return out

    def bye(self) -> str:
        self.sip.sendto(self._request("BYE", 2), ("127.0.0.1", self.server.port))
        return self._response("BYE")

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()


def test_inband_digits_detected_and_engine_rtp_paced_by_the_tick(server: Server) -> None:
    caller = RawCaller(server)
    try:
        caller.call()
        audio = np.concatenate([
            tones.silence(1600),
            tones.dtmf_sequence("73", on_ms=80, off_ms=120, level_dbm0=-10),
            tones.silence(1600),
        ])
        caller.send_audio(audio)
        time.sleep(0.3)
        packets = caller.received_rtp()
        assert caller.bye().startswith("SIP/2.0 200")
    finally:
        caller.close()
    log = _wait_for(server, rf"call {re.escape(caller.call_id)} ended", 1)
    assert _digits_by_call(log).get(caller.call_id) == [("7", "inband"), ("3", "inband")], log[-2000:]

    # The engine's RTP: one PCMU packet per tick, timestamps and sequence numbers
    # stepping by exactly 160 and 1, one SSRC, marker on the first packet only.
    assert len(packets) >= 30
    headers = [struct.unpack("!BBHII", p[:12]) for p in packets]
    assert {h[4] for h in headers} == {headers[0][4]}
    assert all(h[1] & 0x7F == 0 for h in headers)
    assert headers[0][1] & 0x80 and not any(h[1] & 0x80 for h in headers[1:])
    seqs = np.array([h[2] for h in headers])
    stamps = np.array([h[3] for h in headers], dtype=np.int64)
    assert set(np.diff(seqs) % 65536) == {1}
    assert set(np.diff(stamps) % 2**32) == {160}
    assert all(len(p) == 12 + 160 for p in packets)
    # An answered call plays a short beep, then silence.
    first = g711.ulaw_decode(np.frombuffer(packets[2][12:], dtype=np.uint8))
    last = g711.ulaw_decode(np.frombuffer(packets[-1][12:], dtype=np.uint8))
    assert tones.level_dbm0(first) > -20
    assert np.all(last == 0)


def test_silent_call_is_hung_up_after_rtp_inactivity(tmp_path: Path) -> None:
    # The rtp section of the test config takes the timeout on the line after port_max.
    server = start_server(tmp_path, rtp_min=41000, max_calls=50,
                          rtp_max=41998, rtp_inactivity=1.5)
    caller = RawCaller(server)
    try:
        caller.call()
        answered = time.monotonic()
        caller.sip.settimeout(6.0)
        bye = caller.sip.recv(65535).decode()
        waited = time.monotonic() - answered
        assert bye.startswith("BYE "), bye
        assert 1.4 <= waited <= 4.0
        via = re.search(r"^Via: .*$", bye, re.M)
        cseq = re.search(r"^CSeq: .*$", bye, re.M)
        frm = re.search(r"^From: .*$", bye, re.M)
        to = re.search(r"^To: .*$", bye, re.M)
        assert via and cseq and frm and to
        ok = "\r\n".join([
            "SIP/2.0 200 OK", via.group(0), frm.group(0), to.group(0),
            f"Call-ID: {caller.call_id}", cseq.group(0), "Content-Length: 0", "", "",
        ])
        caller.sip.sendto(ok.encode(), ("127.0.0.1", server.port))
        log = _wait_for(server, rf"call {re.escape(caller.call_id)} ended", 1)
        assert f"call {caller.call_id}: no RTP for 1.5 s, hanging up" in log
        assert re.search(rf"call {re.escape(caller.call_id)} ended: ", log)
    finally:
        caller.close()
        stop_server(server)
