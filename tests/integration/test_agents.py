"""Agents on real softphones (pyVoIP): registering, logging in, answering queued calls,
and the bridge carrying audio both ways — measured, not assumed.

The caller is a pyVoIP phone too (it can write a tone and record what it hears). pyVoIP
1.6 answers digest challenges the RFC 2069 way, so the server enables
`registrar.allow_rfc2069`.
"""

from __future__ import annotations

import json
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
  experts:
    - {{id: dave, name: Dave Expert, department: Pharmacy, uri: "sip:dave@hotline.test",
        skills: {{vaccine: 8}}}}
  ring_timeout_seconds: {ring}
  wrap_up_seconds: 1
"""
USERS = """    - {username: carol, password: carol-pass}
    - {username: dave, password: dave-pass}
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


def to_int16(data: bytes) -> np.ndarray:
    return (np.frombuffer(data, np.uint8).astype(np.int16) - 128) * 256


class Phone:
    """A pyVoIP phone that answers (if asked), talks a tone and records what it hears."""

    def __init__(self, server: Server, user: str, password: str, *, answer: bool,
                 freq: float) -> None:
        rtp = 40000 + (free_port(("udp",)) % 400) * 20
        self.freq = freq
        self.answer = answer
        self.heard = bytearray()
        self.calls: list[Any] = []
        self.stop_talking = threading.Event()
        self.phone = VoIPPhone("127.0.0.1", server.port, user, password, myIP="127.0.0.1",
                               sipPort=free_port(("udp",)), rtpPortLow=rtp,
                               rtpPortHigh=rtp + 19, callCallback=self._incoming)

    def _incoming(self, call: Any) -> None:
        self.calls.append(call)
        if not self.answer:
            return
        call.answer()
        self._talk(call)

    def _talk(self, call: Any) -> None:
        chunk = tone(self.freq, 0.02)
        while call.state == CallState.ANSWERED and not self.stop_talking.is_set():
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


def _server(tmp: Path, *, logged_in: bool = True, ring: float = 15.0) -> tuple[Server, int]:
    import os

    http = free_port(("tcp",))
    os.environ["HOTLINE_API_TOKEN"] = TOKEN
    try:
        server = start_server(
            tmp, registrar_extra="  allow_rfc2069: true\n", users_extra=USERS,
            default_flow="queue", http_enabled="true", http_port=http,
            extra_yaml=ACD.format(logged_in="true" if logged_in else "false", ring=ring),
        )
    finally:
        del os.environ["HOTLINE_API_TOKEN"]
    return server, http


def test_a_queued_caller_is_bridged_to_a_registered_agent_and_audio_flows_both_ways(
    tmp_path: Path,
) -> None:
    server, http = _server(tmp_path)
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
        call.hangup()
        assert wait_for(lambda: "over (caller hung up)" in server.log_text()), \
            server.log_text()[-3000:]
        assert wait_for(lambda: agent.calls[0].state == CallState.ENDED, 5)
    finally:
        agent.stop()
        caller.stop()
        assert stop_server(server) == 0
