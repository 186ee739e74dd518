"""The vaccine line end to end on a live engine: SIPp dials the reference flow and books by
keypad (RFC 4733, typed ahead the way a practised caller does), the booking is in the
database and its confirmation reaches a local SMS-gateway webhook (with an idempotency
key); a repeat call from the same number is greeted with the booking and cancels it.
And durability: the engine is killed with SIGKILL in the middle of a batch of booking
calls; after a restart every booking whose reference a caller heard exists, confirmed,
and nothing half-made remains (holds expire; slot counts match the bookings).

The flow under test is ivr_flows/vaccine.yaml with one change: its opening hours are
made 24/7 so the test passes at any hour (the hours are tested by the simulator)."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.integration.conftest import ROOT, free_port, require, run_sipp, start_server, stop_server
from tests.integration.test_flow_sipp import _counts, _scenario

pytestmark = pytest.mark.integration

BOOK_KEYS = "1" + "1" + "01011980" + "1" + "2123456701" + "1" + "2600" + "1" + "1" + "1"


class _Gateway(BaseHTTPRequestHandler):
    """A stand-in SMS gateway: records each message and its idempotency key."""

    received: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Gateway.received.append((self.headers.get("Idempotency-Key", ""), body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _dtmf_scenario(tmp: Path, keys: str, result: str) -> Path:
    """The flow scenario with the keys sent by SIPp's own RFC 4733 generator (`play_dtmf`,
    payload type 96 in SIPp 3.6): one stream with a new timestamp per key. (Replaying a
    stock capture twice sends the same packets twice — same sequence numbers and
    timestamp — which a receiver rightly takes as one press: "11" would arrive as "1".)"""
    path = _scenario(tmp, "", result)
    text = path.read_text()
    text = text.replace("RTP/AVP 0 101", "RTP/AVP 0 96")
    text = text.replace("rtpmap:101 ", "rtpmap:96 ").replace("fmtp:101 ", "fmtp:96 ")
    text = text.replace('  <recv request="BYE"', f'  <pause milliseconds="300"/>\n'
                        f'  <nop><action><exec play_dtmf="{keys}"/></action></nop>\n'
                        '  <recv request="BYE"', 1)
    path.write_text(text)
    return path


def _flows(tmp: Path) -> Path:
    flows = tmp / "flows"
    flows.mkdir()
    text = (ROOT / "ivr_flows" / "vaccine.yaml").read_text()
    text = re.sub(r'(monday|tuesday|wednesday|thursday|friday|saturday|sunday): "[^"]+"',
                  r'\1: "00:00-24:00"', text)
    (flows / "vaccine.yaml").write_text(text)
    return flows


def _extra(url: str) -> str:
    return f"booking:\n  notify_url: {url}\n  hold_sweep_seconds: 1.0\n"


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "media-workers"])
def test_book_by_keypad_then_cancel_on_a_repeat_call(tmp_path: Path, workers: int) -> None:
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    _Gateway.received = []
    url = f"http://127.0.0.1:{gateway.server_address[1]}/sms"
    http_port = free_port(("tcp",))
    server = start_server(tmp_path, flows=_flows(tmp_path), default_flow="vaccine",
                          extra_yaml=_extra(url), http_enabled="true", http_port=http_port,
                          rtp_extra=f"  media_workers: {workers}\n")
    db = tmp_path / "var" / "hotline.db"
    try:
        res = run_sipp(["-sf", str(_dtmf_scenario(tmp_path, BOOK_KEYS, "booked")), server.target,
                        "-s", "1800822463", "-m", "1"], timeout=120)
        assert _counts(res.stdout) == (1, 0), res.stdout[-2000:] + server.log_text()[-4000:]
        assert "flow hangs up (booked)" in server.log_text()
        ((reference, medicare, dob),) = _rows(
            db, "SELECT reference, medicare, dob FROM bookings WHERE status='confirmed'")
        assert re.fullmatch(r"[23456789FKMRW]{7}", str(reference))
        assert (medicare, dob) == ("2123456701", "1980-01-01")
        end = time.monotonic() + 10
        while not _Gateway.received and time.monotonic() < end:
            time.sleep(0.05)
        (key, message), = _Gateway.received
        assert message["reference"] == reference and message["kind"] == "confirmed"
        assert key and "2123456701" not in json.dumps(message)
        # the same number calls again: greeted with the booking, presses 3 (cancel), 1 (yes)
        res = run_sipp(["-sf", str(_dtmf_scenario(tmp_path, "131", "cancelled")), server.target,
                        "-s", "1800822463", "-m", "1"], timeout=120)
        assert _counts(res.stdout) == (1, 0), res.stdout[-2000:] + server.log_text()[-4000:]
        assert _rows(db, "SELECT status FROM bookings") == [("cancelled",)]
        end = time.monotonic() + 10
        while len(_Gateway.received) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert [m["kind"] for _k, m in _Gateway.received] == ["confirmed", "cancelled"]
        assert len({k for k, _m in _Gateway.received}) == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
    finally:
        gateway.shutdown()
        assert stop_server(server) == 0
    # No sensitive digit anywhere: the log, the detail records, the traces, the metrics.
    # (The flow marks the Medicare number sensitive; the date of birth is read back to
    # the caller and shown to agents, so the trace may hold it — nothing else may.)
    from tests.integration.test_agents import cdr_rows

    rows = cdr_rows(server)
    assert [r["flow_result"] for r in rows] == ["booked", "cancelled"], rows
    assert all(r["flow"] == "vaccine" and r["hangup_side"] == "engine" for r in rows), rows
    traces = "".join(p.read_text() for p in (tmp_path / "var" / "traces").rglob("*.jsonl"))
    assert traces.count("\n") > 20  # the two calls' traces were written
    cdrs = (server.config.parent / "cdr.csv").read_text()
    for where, text in (("log", server.log_text()), ("cdr", cdrs), ("traces", traces),
                        ("metrics", metrics)):
        for secret in ("2123456701", "01011980", "1980-01-01"):
            if where == "traces" and secret != "2123456701":
                continue
            assert secret not in text, (where, secret)
    assert '"key": "•"' in traces and '"medicare": "•••"' in traces  # the keys, masked


def _heard(callers: list[tuple[subprocess.Popen[str], Path]]) -> set[str]:
    """The references the callers' BYEs carried, from their SIPp message traces."""
    heard: set[str] = set()
    for _proc, trace in callers:
        if trace.exists():
            heard |= set(re.findall(r"X-Hotline-Reference: ([23456789FKMRW]{7})",
                                    trace.read_text(errors="replace")))
    return heard


def test_sigkill_mid_batch_loses_no_heard_reference(tmp_path: Path) -> None:
    flows = _flows(tmp_path)
    server = start_server(tmp_path, flows=flows, default_flow="vaccine")
    db = tmp_path / "var" / "hotline.db"
    sipp = require("sipp", "sip-tester")
    # 8 different people (date of birth) from 8 numbers, one SIPp each, half a second apart
    callers: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for n in range(8):
            keys = BOOK_KEYS.replace("01011980", f"{n + 1:02d}011980")
            scenario = _dtmf_scenario(tmp_path, keys, "booked")
            text = scenario.read_text().replace("sip:0412345678@", f"sip:04123456{n:02d}@")
            own = tmp_path / f"caller{n}.xml"
            own.write_text(text)
            trace = tmp_path / f"caller{n}.msgs"
            callers.append((subprocess.Popen(
                [sipp, "-sf", str(own), server.target, "-s", "1800822463", "-m", "1",
                 "-i", "127.0.0.1", "-p", str(free_port(("udp",))), "-nostdin",
                 "-trace_msg", "-message_file", str(trace), "-timeout", "90s"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), trace))
            time.sleep(0.5)
        end = time.monotonic() + 90
        while server.log_text().count("flow hangs up (booked)") < 2:
            assert time.monotonic() < end, server.log_text()[-4000:]
            time.sleep(0.05)
        # The log line comes just before the BYE carrying the reference leaves: kill once
        # two callers have it in hand (their traces), not on the log line alone.
        end = time.monotonic() + 5
        while len(_heard(callers)) < 2 and time.monotonic() < end:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        for proc, _trace in callers:
            proc.kill()
            proc.communicate()
        if server.alive():  # the test failed before the kill: leave no engine behind
            stop_server(server)
    heard = _heard(callers)
    assert len(heard) >= 2
    # restart on the same database: every reference a caller heard is there, confirmed
    server = start_server(tmp_path, flows=flows, default_flow="vaccine")
    try:
        confirmed = {str(r) for (r,) in _rows(db, "SELECT reference FROM bookings "
                                              "WHERE status='confirmed'")}
        assert heard <= confirmed
        # nothing half-made: a confirmed booking has its reference and its outbox message,
        # and every slot's count of places taken matches its held and confirmed bookings
        assert _rows(db, "SELECT count(*) FROM bookings WHERE status='confirmed' AND "
                         "reference IS NULL") == [(0,)]
        assert _rows(db, "SELECT count(*) FROM bookings b WHERE status='confirmed' AND NOT "
                         "EXISTS (SELECT 1 FROM outbox o WHERE o.booking_id = b.id)") == [(0,)]
        assert _rows(db, "SELECT count(*) FROM slots s WHERE s.taken != (SELECT count(*) "
                         "FROM bookings b WHERE b.slot_id = s.id AND b.status IN "
                         "('held', 'confirmed'))") == [(0,)]
    finally:
        assert stop_server(server) == 0
