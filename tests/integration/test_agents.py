"""Agents on real softphones (pyVoIP): registering, logging in, answering queued calls,
and the bridge carrying audio both ways — measured, not assumed.

The caller is a pyVoIP phone too (it can write a tone and record what it hears). pyVoIP
1.6 answers digest challenges the RFC 2069 way, so the server enables
`registrar.allow_rfc2069`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone

from tests.integration.conftest import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.integration
TOKEN = "test-token-0123456789abcdef"
ACD = """
acd:
  agents:
    - {{id: bob, name: Bob Builder, skills: {{vaccine: 5}}, logged_in: {logged_in}}}
    - {{id: carol, name: Carol, supervisor: true, logged_in: false}}
  queues:
    - name: help
      skills: [{{skill: vaccine}}]
      announce_first_seconds: 1
      announce_every_seconds: 30
      callback_key: "1"
{queue_extra}  experts:
    - {{id: dave, name: Dave Expert, department: Pharmacy, uri: "sip:dave@hotline.test",
        skills: {{vaccine: 8}}}}
  ring_timeout_seconds: {ring}
  wrap_up_seconds: 1
  record_calls: {record}
  callback_uri: "sip:{{number}}@127.0.0.1:{citizen}"
"""
USERS = """    - {username: carol, password: carol-pass}
    - {username: dave, password: dave-pass}
    - {username: "0412345678", password: citizen-pass}
"""


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def level(samples: np.ndarray, freq: float) -> float:
    x = samples.astype(np.float64)
    t = np.arange(x.size) / 8000
    return float(2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) / max(1, x.size))


def tone(freq: float, seconds: float, amplitude: float = 60.0) -> bytes:
    """8-bit unsigned linear (what pyVoIP writes), `amplitude` of 127."""
    t = np.arange(int(seconds * 8000)) / 8000
    return (128 + amplitude * np.sin(2 * np.pi * freq * t)).astype(np.uint8).tobytes()


def keys(digits: str) -> bytes:
    """In-band key presses (100 ms each, 150 ms apart) as pyVoIP audio."""
    from hotline.media import tones as t

    out = bytearray()
    for digit in digits:
        press = t.dtmf_tone(digit, 100.0, level_dbm0=-6)
        out += (128 + press.astype(np.float64) / 256).clip(0, 255).astype(np.uint8).tobytes()
        out += bytes([128]) * 1200
    return bytes(out)


def to_int16(data: bytes) -> np.ndarray:
    return (np.frombuffer(data, np.uint8).astype(np.int16) - 128) * 256


class Phone:
    """A pyVoIP phone that answers (if asked), talks a tone and records what it hears."""

    def __init__(self, server: Server, user: str, password: str, *, answer: bool,
                 freq: float | None, sip_port: int | None = None) -> None:
        rtp = 40000 + (free_port(("udp",)) % 400) * 20
        self.freq = freq
        self.sip_port = sip_port or free_port(("udp",))
        self.inject = bytearray()  # audio to send before the tone (e.g. key presses)
        self.answer = answer
        self.heard = bytearray()
        self.calls: list[Any] = []
        self.stop_talking = threading.Event()
        self.phone = VoIPPhone("127.0.0.1", server.port, user, password, myIP="127.0.0.1",
                               sipPort=self.sip_port, rtpPortLow=rtp,
                               rtpPortHigh=rtp + 19, callCallback=self._incoming)

    def _incoming(self, call: Any) -> None:
        self.calls.append(call)
        if not self.answer:
            return
        call.answer()
        self._talk(call)

    def _talk(self, call: Any) -> None:
        chunks: dict[float | None, bytes] = {None: bytes([128]) * 160}
        while call.state == CallState.ANSWERED and not self.stop_talking.is_set():
            freq = self.freq
            chunk = chunks.get(freq)
            if chunk is None:
                chunk = chunks[freq] = tone(freq, 0.02) if freq else chunks[None]
            if self.inject:
                call.write_audio(bytes(self.inject[:160]))
                del self.inject[:160]
            else:
                call.write_audio(chunk)
            self.heard += call.read_audio(160, blocking=False)
            time.sleep(0.018)

    def dial(self, number: str) -> Any:
        call = self.phone.call(number)
        self.calls.append(call)
        assert wait_for(lambda: call.state == CallState.ANSWERED, 10)
        threading.Thread(target=self._talk, args=(call,), daemon=True).start()
        return call

    def start(self) -> None:
        self.phone.start()
        assert wait_for(lambda: self.phone.get_status() == PhoneStatus.REGISTERED)

    def last(self, seconds: float) -> np.ndarray:
        return to_int16(bytes(self.heard[-int(seconds * 8000):]))

    def stop(self) -> None:
        self.stop_talking.set()
        self.phone.stop()


def api(server_http: int, method: str, path: str, body: dict[str, Any] | None = None,
        token: str = TOKEN) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server_http}{path}", data=data,
                                 method=method, headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _server(tmp: Path, *, logged_in: bool = True, ring: float = 15.0,
            citizen: int = 5999, queue_extra: str = "",
            record: bool = False, md5_only: bool = False,
            workers: int = 0) -> tuple[Server, int]:
    """An engine for these tests; `md5_only` for baresip 1.0, which fails a challenge
    that offers any other algorithm; `workers`: media worker processes (0: the media
    tick in the engine's process)."""
    import os

    http = free_port(("tcp",))
    os.environ["HOTLINE_API_TOKEN"] = TOKEN
    try:
        server = start_server(
            tmp, users_extra=USERS,
            registrar_extra="  allow_rfc2069: true\n" + ("  algorithms: [MD5]\n" if md5_only
                                                          else ""),
            default_flow="queue", http_enabled="true", http_port=http, drain=3.0,
            rtp_extra=f"  media_workers: {workers}\n",
            extra_yaml=ACD.format(logged_in="true" if logged_in else "false", ring=ring,
                                  citizen=citizen, queue_extra=queue_extra,
                                  record="true" if record else "false"),
        )
    finally:
        del os.environ["HOTLINE_API_TOKEN"]
    return server, http


MEDIA = pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "media-workers"])


@MEDIA
def test_a_queued_caller_is_bridged_to_a_registered_agent_and_audio_flows_both_ways(
    tmp_path: Path, workers: int,
) -> None:
    server, http = _server(tmp_path, workers=workers)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    caller = Phone(server, "alice", "wonderland", answer=False, freq=700.0)
    try:
        agent.start()
        assert wait_for(lambda: "agent bob: available/idle" in server.log_text()), \
            server.log_text()[-3000:]
        caller.start()
        call = caller.dial("queue")
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15), \
            server.log_text()[-3000:]
        # The agent's phone got the screen pop in the INVITE.
        headers = {k.lower(): v for k, v in agent.calls[0].request.headers.items()}
        assert headers.get("x-hotline-queue") == "help", headers
        assert headers.get("x-hotline-var-topic") == "vaccine", headers
        time.sleep(2.5)
        heard_by_agent = agent.last(1.5)
        heard_by_caller = caller.last(1.5)
        assert level(heard_by_agent, 700.0) > 2000, level(heard_by_agent, 700.0)
        assert level(heard_by_agent, 1100.0) < 500  # never their own voice
        assert level(heard_by_caller, 1100.0) > 2000, level(heard_by_caller, 1100.0)
        assert level(heard_by_caller, 700.0) < 500
        status, view = api(http, "GET", "/api/agents/bob")
        assert status == 200 and view["state"] == "on_call", view
        # Muted, the agent is heard by nobody; unmuted, again.
        assert api(http, "POST", "/api/agents/bob/call/mute", {"muted": True})[0] == 200
        time.sleep(1.2)
        assert level(caller.last(1.0), 1100.0) < 500
        assert api(http, "POST", "/api/agents/bob/call/mute", {"muted": False})[0] == 200
        time.sleep(1.2)
        assert level(caller.last(1.0), 1100.0) > 2000
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'hotline_agents{state="on_call",status="available"} 1.0' in metrics, metrics
        assert 'hotline_acd_events_total{event="bridged"} 1.0' in metrics
        assert 'hotline_queue_waiting{queue="help"} 0.0' in metrics
        assert 'hotline_jitter_buffer_total{what="played"}' in metrics
        played = re.search(r'hotline_jitter_buffer_total\{what="played"\} (\S+)', metrics)
        assert played is not None and float(played.group(1)) > 0, metrics
        assert "hotline_media_legs 2.0" in metrics, metrics
        if workers:
            # The media ran in worker processes (the engine serves none itself).
            assert "media worker 1 started" in server.log_text()
            assert "hotline_media_workers 2.0" in metrics, metrics
            assert "hotline_media_worker_restarts_total 0.0" in metrics, metrics
        call.hangup()
        assert wait_for(lambda: "over (caller hung up)" in server.log_text()), \
            server.log_text()[-3000:]
        assert wait_for(lambda: agent.calls[0].state == CallState.ENDED, 5)
    finally:
        agent.stop()
        caller.stop()
        assert stop_server(server) == 0
    # A detail record per leg: the caller's with the queue, the wait and the agent; the
    # agent's leg with the agent; MOS estimated from the RTCP figures.
    rows = cdr_rows(server)
    callers = [r for r in rows if r["direction"] == "inbound" and r["called"] == "queue"]
    agents = [r for r in rows if r["direction"] == "outbound" and r["called"] == "bob"]
    assert len(callers) == 1 and len(agents) == 1, rows
    (c,), (a,) = callers, agents
    assert (c["flow"], c["flow_result"], c["queue"], c["agent"]) == \
        ("queue", "agent", "help", "bob"), c
    assert c["hangup_side"] == "caller" and float(c["queue_wait_s"]) < 15, c
    assert c["answered_at"] and float(c["talk_s"]) > 2, c
    assert (a["agent"], a["hangup_side"]) == ("bob", "engine"), a


def cdr_rows(server: Server) -> list[dict[str, str]]:
    """The engine's call detail records, through `hotline cdr export` (CSV)."""
    import csv
    import subprocess
    import sys

    out = server.config.parent / "cdr.csv"
    done = subprocess.run([sys.executable, "-m", "hotline.cli", "cdr", "export", "--config",
                           str(server.config), "--since", "2000-01-01", "--out", str(out)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_star_codes_from_the_agents_phone_and_the_api_change_the_agents_status(
    tmp_path: Path,
) -> None:
    server, http = _server(tmp_path, logged_in=False)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    try:
        agent.start()
        assert wait_for(lambda: "registration sip:bob@" in server.log_text())
        assert api(http, "GET", "/api/agents/bob")[1]["status"] == "logged_out"
        call = agent.phone.call("*41")
        assert wait_for(lambda: "agent bob: login accepted" in server.log_text()), \
            server.log_text()[-2000:]
        # The engine answered, said so, and hung up by itself.
        assert wait_for(lambda: call.state == CallState.ENDED, 10)
        assert api(http, "GET", "/api/agents/bob")[1]["status"] == "available"
        history = api(http, "GET", "/api/agents/bob/history")[1]
        assert history[0]["cause"] == "login" and history[0]["status"] == "available", history
        assert history[0]["at"].endswith("+00:00")
        status, view = api(http, "POST", "/api/agents/bob/break", {"reason": "lunch"})
        assert status == 200 and view["status"] == "on_break", view
        assert view["break_reason"] == "lunch"
        agent.phone.call("*44")
        assert wait_for(lambda: "agent bob: back accepted" in server.log_text())
        assert api(http, "GET", "/api/agents/bob")[1]["status"] == "available"
        # A code that is not one is refused (and said so), the status is unchanged.
        bad = agent.phone.call("*42*7")  # logout takes no digits
        assert wait_for(lambda: "refused star code" in server.log_text())
        assert wait_for(lambda: bad.state == CallState.ENDED, 10)
        # The API wants its token; a wrong one changes nothing.
        assert api(http, "POST", "/api/agents/bob/logout", token="x" * 20)[0] == 401
        assert api(http, "GET", "/api/agents/bob")[1]["status"] == "available"
        assert api(http, "GET", "/api/agents/nobody")[0] == 404
        # Log levels per subsystem while running.
        status, levels = api(http, "PUT", "/api/logging", {"logger": "acd", "level": "debug"})
        assert status == 200 and levels["hotline.acd"] == "debug", levels
        assert api(http, "PUT", "/api/logging", {"logger": "acd", "level": "loud"})[0] == 400
        assert wait_for(lambda: "log level of hotline.acd set to debug" in server.log_text())
    finally:
        agent.stop()
        assert stop_server(server) == 0


def test_no_answer_puts_the_agent_on_break_and_the_caller_keeps_their_place(
    tmp_path: Path,
) -> None:
    server, http = _server(tmp_path, ring=2.0)
    agent = Phone(server, "bob", "builder", answer=False, freq=1100.0)
    caller = Phone(server, "alice", "wonderland", answer=False, freq=700.0)
    try:
        agent.start()
        assert wait_for(lambda: "agent bob: available/idle" in server.log_text())
        caller.start()
        caller.dial("queue")
        assert wait_for(lambda: "offer to bob withdrawn (no_answer)" in server.log_text(), 10), \
            server.log_text()[-3000:]
        view = api(http, "GET", "/api/agents/bob")[1]
        assert view["status"] == "on_break" and view["state"] == "idle", view
        queue = api(http, "GET", "/api/queues")[1][0]
        assert queue["name"] == "help" and queue["waiting"] == 1, queue
        # Back from the break, the agent answers this time: the same caller is offered.
        agent.answer = True
        agent.calls.clear()
        api(http, "POST", "/api/agents/bob/back")
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 10), \
            server.log_text()[-3000:]
        assert api(http, "GET", "/api/queues")[1][0]["waiting"] == 0
    finally:
        agent.stop()
        caller.stop()
        assert stop_server(server) == 0


def _bridged(tmp_path: Path, **kw: Any) -> tuple[Server, int, Phone, Phone, Any]:
    server, http = _server(tmp_path, **kw)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    caller = Phone(server, "alice", "wonderland", answer=False, freq=700.0)
    agent.start()
    assert wait_for(lambda: "agent bob: available/idle" in server.log_text())
    caller.start()
    call = caller.dial("queue")
    assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15), \
        server.log_text()[-3000:]
    return server, http, agent, caller, call


@MEDIA
def test_consult_an_expert_then_conference_all_three_each_hearing_the_other_two(
    tmp_path: Path, workers: int,
) -> None:
    server, http, agent, caller, _call = _bridged(tmp_path, workers=workers)
    expert = Phone(server, "dave", "dave-pass", answer=True, freq=1500.0)
    try:
        expert.start()
        found = api(http, "GET", "/api/experts?skill=vaccine&available=1")[1]
        assert [e["id"] for e in found] == ["dave"], found
        status, body = api(http, "POST", "/api/agents/bob/call/consult", {"expert": "dave"})
        assert status == 200, body
        assert wait_for(lambda: "consult answered" in server.log_text(), 10), \
            server.log_text()[-3000:]
        time.sleep(2.0)
        # Consulting: agent and expert talk; the caller hears neither (music instead).
        assert level(agent.last(1.0), 1500.0) > 2000
        assert level(expert.last(1.0), 1100.0) > 2000
        assert level(caller.last(1.0), 1100.0) < 500
        assert level(caller.last(1.0), 1500.0) < 500
        assert level(expert.last(1.0), 700.0) < 500
        status, body = api(http, "POST", "/api/agents/bob/call/conference")
        assert status == 200 and body["parties"] == 3, body
        time.sleep(2.0)
        for phone, own, others in ((caller, 700.0, (1100.0, 1500.0)),
                                   (agent, 1100.0, (700.0, 1500.0)),
                                   (expert, 1500.0, (700.0, 1100.0))):
            heard = phone.last(1.0)
            assert level(heard, own) < 500, (own, level(heard, own))
            for f in others:
                assert level(heard, f) > 1500, (own, f, level(heard, f))
    finally:
        for p in (agent, caller, expert):
            p.stop()
        assert stop_server(server) == 0


@MEDIA
def test_a_supervisor_whisper_is_heard_by_the_agent_only(tmp_path: Path, workers: int) -> None:
    server, http, agent, caller, _call = _bridged(tmp_path, workers=workers)
    boss = Phone(server, "carol", "carol-pass", answer=True, freq=1900.0)
    try:
        boss.start()
        assert api(http, "POST", "/api/agents/bob/call/monitor",
                   {"supervisor": "bob", "mode": "whisper"})[0] == 403  # not a supervisor
        status, body = api(http, "POST", "/api/agents/bob/call/monitor",
                           {"supervisor": "carol", "mode": "whisper"})
        assert status == 200, body
        assert wait_for(lambda: "supervisor carol whisper" in server.log_text(), 10), \
            server.log_text()[-3000:]
        time.sleep(2.0)
        assert level(agent.last(1.0), 1900.0) > 1500
        assert level(caller.last(1.0), 1900.0) < 500
        heard = boss.last(1.0)
        assert level(heard, 700.0) > 1500 and level(heard, 1100.0) > 1500
        # Barge: now the caller hears the supervisor too.
        assert api(http, "POST", "/api/agents/bob/call/monitor",
                   {"supervisor": "carol", "mode": "barge"})[0] == 200
        time.sleep(1.5)
        assert level(caller.last(1.0), 1900.0) > 1500
    finally:
        for p in (agent, caller, boss):
            p.stop()
        assert stop_server(server) == 0


@MEDIA
def test_a_callback_keeps_the_callers_place_and_calls_them_back_to_a_reserved_agent(
    tmp_path: Path, workers: int,
) -> None:
    citizen_port = free_port(("udp",))
    server, http = _server(tmp_path, citizen=citizen_port, workers=workers)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    first = Phone(server, "alice", "wonderland", answer=False, freq=None)
    citizen = Phone(server, "0412345678", "citizen-pass", answer=True, freq=None,
                    sip_port=citizen_port)
    try:
        for phone in (agent, first, citizen):
            phone.start()
        assert wait_for(lambda: "agent bob: available/idle" in server.log_text())
        busy = first.dial("queue")
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15)
        waiting = citizen.dial("queue")
        # The citizen hears the offer, presses 1, hears the number read back, presses 1.
        assert wait_for(lambda: api(http, "GET", "/api/queues")[1][0]["waiting"] == 1, 10)
        time.sleep(2.0)
        citizen.inject += keys("1")
        time.sleep(2.0)
        citizen.inject += keys("1")
        assert wait_for(lambda: "callback cb-" in server.log_text(), 10), \
            server.log_text()[-3000:]
        assert wait_for(lambda: waiting.state == CallState.ENDED, 15)  # thanked, hung up
        callbacks = api(http, "GET", "/api/callbacks")[1]
        assert len(callbacks) == 1 and callbacks[0]["number"] == "•••••••678", callbacks
        stored = (tmp_path / "var" / "callbacks.json").read_text()
        assert "0412345678" in stored  # kept for the restart (mode 0600)
        # The agent finishes the first call: they are reserved, rung, then the citizen.
        citizen.freq = 700.0
        busy.hangup()
        assert wait_for(lambda: server.log_text().count("bridged to agent bob") == 2, 30), \
            server.log_text()[-4000:]
        time.sleep(2.5)
        assert level(agent.last(1.0), 700.0) > 1500
        assert level(citizen.last(1.0), 1100.0) > 1500
        assert api(http, "GET", "/api/callbacks")[1] == []
    finally:
        for phone in (agent, first, citizen):
            phone.stop()
        assert stop_server(server) == 0


@MEDIA
def test_a_blind_transfer_from_the_api_hands_the_caller_to_another_phone(
    tmp_path: Path, workers: int,
) -> None:
    server, http, agent, caller, call = _bridged(tmp_path, workers=workers)
    target = Phone(server, "dave", "dave-pass", answer=True, freq=1500.0)
    try:
        target.start()
        status, body = api(http, "POST", "/api/agents/bob/call/transfer", {"to": "dave"})
        assert status == 200, body
        assert wait_for(lambda: "transferred to the consulted party" in server.log_text(), 10), \
            server.log_text()[-3000:]
        assert wait_for(lambda: agent.calls[0].state == CallState.ENDED, 5)  # the agent is free
        time.sleep(2.0)
        assert level(caller.last(1.0), 1500.0) > 1500
        assert level(target.last(1.0), 700.0) > 1500
        assert wait_for(lambda: api(http, "GET", "/api/agents/bob")[1]["state"] != "on_call", 5)
        call.hangup()
        assert wait_for(lambda: target.calls[0].state == CallState.ENDED, 5)
    finally:
        for p in (agent, caller, target):
            p.stop()
        assert stop_server(server) == 0


@MEDIA
def test_after_the_longest_wait_the_caller_leaves_a_voicemail(tmp_path: Path, workers: int
                                                              ) -> None:
    import wave

    server, _http = _server(tmp_path, queue_extra="      max_wait_seconds: 2\n"
                                                 "      overflow: {voicemail: help}\n", workers=workers)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    first = Phone(server, "alice", "wonderland", answer=False, freq=None)
    second = Phone(server, "dave", "dave-pass", answer=False, freq=None)
    try:
        for phone in (agent, first, second):
            phone.start()
        assert wait_for(lambda: "agent bob: available/idle" in server.log_text())
        first.dial("queue")
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15)
        call = second.dial("queue")
        assert wait_for(lambda: "to voicemail help" in server.log_text(), 10), \
            server.log_text()[-3000:]
        time.sleep(8.0)  # the greeting and the beep, then the message
        second.freq = 700.0
        time.sleep(2.5)
        call.hangup()
        assert wait_for(lambda: "voicemail saved to" in server.log_text(), 10), \
            server.log_text()[-3000:]
        files = list((tmp_path / "var" / "voicemail" / "help").rglob("*.wav"))
        assert len(files) == 1
        with wave.open(str(files[0])) as w:
            assert w.getframerate() == 8000
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        assert level(audio[-12000:], 700.0) > 1500  # the caller's message is in it
    finally:
        for phone in (agent, first, second):
            phone.stop()
        assert stop_server(server) == 0


@MEDIA
def test_a_bridged_call_is_recorded_in_stereo_and_the_pause_leaves_silence(
    tmp_path: Path, workers: int,
) -> None:
    import wave

    server, http, agent, caller, call = _bridged(tmp_path, record=True, workers=workers)
    try:
        time.sleep(2.0)
        status, body = api(http, "POST", "/api/agents/bob/call/recording", {"paused": True})
        assert status == 200 and body["recording_paused"] is True, body
        time.sleep(2.0)
        assert api(http, "POST", "/api/agents/bob/call/recording", {"paused": False})[0] == 200
        time.sleep(2.0)
        call.hangup()
        assert wait_for(lambda: "recording saved to" in server.log_text(), 10), \
            server.log_text()[-3000:]
        (path,) = list((tmp_path / "var" / "recordings").rglob("*.wav"))
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getframerate()) == (2, 8000)
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
        caller_side, agent_side = audio[:, 0], audio[:, 1]
        first = slice(4000, 12000)  # the first second after the bridge
        assert level(caller_side[first], 700.0) > 1500  # the caller's own channel
        assert level(agent_side[first], 1100.0) > 1500  # what the caller heard: the agent
        assert level(caller_side[first], 1100.0) < 500
        # Somewhere in the middle two seconds are silent on both channels: the pause.
        blocks = np.abs(audio[: audio.shape[0] // 800 * 800]).reshape(-1, 800, 2).max(axis=(1, 2))
        silent = np.flatnonzero(blocks == 0)
        assert silent.size >= 15, silent  # ≥ 1.5 s of 0.1 s blocks with nothing at all
        assert level(caller_side[-12000:-4000], 700.0) > 1500  # recording again after it
    finally:
        agent.stop()
        caller.stop()
        assert stop_server(server) == 0


def test_a_flows_transfer_step_bridges_the_caller_or_takes_its_failed_branch(
    tmp_path: Path,
) -> None:
    server, _http = _server(tmp_path)
    caller = Phone(server, "alice", "wonderland", answer=False, freq=700.0)
    target = Phone(server, "dave", "dave-pass", answer=True, freq=1500.0)
    try:
        caller.start()
        # dave is not registered yet: the transfer fails and the flow says goodbye.
        first = caller.phone.call("transfer")
        assert wait_for(lambda: "flow transfer ended: transfer_failed" in server.log_text(), 10), \
            server.log_text()[-3000:]
        assert wait_for(lambda: first.state == CallState.ENDED, 5)
        target.start()
        call = caller.dial("transfer")
        assert wait_for(lambda: "transferred to the consulted party" in server.log_text(), 10), \
            server.log_text()[-3000:]
        time.sleep(2.0)
        assert level(caller.last(1.0), 1500.0) > 1500
        assert level(target.last(1.0), 700.0) > 1500
        call.hangup()
        assert wait_for(lambda: target.calls[0].state == CallState.ENDED, 5)
        assert "flow transfer ended: transferred" in server.log_text()
    finally:
        caller.stop()
        target.stop()
        assert stop_server(server) == 0
