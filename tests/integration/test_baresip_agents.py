"""Agents on baresip (Debian), a second real softphone: log in by star code, answer a
queued call with audio measured both ways, hold from the phone (re-INVITE), and a blind
transfer by REFER from the phone.

The callers and transfer targets are pyVoIP phones (tests/integration/test_agents.py).
baresip 1.0 answers MD5 digest only, so these engines offer MD5 alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyVoIP.VoIP import CallState

from tests.integration.conftest import stop_server
from tests.integration.test_agents import MEDIA, Phone, _server, api, level, wait_for
from tests.peers import PeerError
from tests.peers.baresip import Baresip, find_baresip
from tests.peers.tones import tone

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _need_baresip() -> None:
    try:
        find_baresip()
    except PeerError as exc:
        pytest.fail(str(exc))


@MEDIA
def test_a_baresip_agent_logs_in_answers_holds_and_transfers_by_refer(
    tmp_path: Path, workers: int
) -> None:
    (tmp_path / "engine").mkdir()
    server, http = _server(tmp_path / "engine", logged_in=False, md5_only=True,
                           workers=workers)
    caller = Phone(server, "alice", "wonderland", answer=False, freq=700.0)
    target = Phone(server, "dave", "dave-pass", answer=True, freq=1500.0)
    agent = Baresip(tmp_path / "bob", user="bob", password="builder",
                    registrar_port=server.port, answer_mode="auto",
                    source=tone(1100.0, 30.0, level_db=-12))
    try:
        agent.start()
        agent.wait_registered()
        # Log in from the phone: *41 is answered, confirmed and hung up by the engine.
        agent.dial(f"sip:*41@127.0.0.1:{server.port}")
        assert wait_for(lambda: "agent bob: login accepted" in server.log_text(), 10), \
            server.log_text()[-3000:]
        agent.wait_closed(10)
        assert api(http, "GET", "/api/agents/bob")[1]["status"] == "available"
        caller.start()
        target.start()
        call = caller.dial("queue")
        incoming = agent.wait_incoming(15)
        assert incoming.header("X-Hotline-Queue") == "help"
        assert incoming.header("X-Hotline-Var-topic") == "vaccine"
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15), \
            server.log_text()[-3000:]
        time.sleep(2.0)
        assert level(caller.last(1.0), 1100.0) > 1500  # the caller hears the agent …
        # … and the agent hears the caller (baresip's dump of what it decoded).
        assert wait_for(lambda: level(agent.recorded()[-8000:], 700.0) > 1500, 5)
        # Hold from the phone: a re-INVITE sendonly; the caller hears music, not the agent.
        agent.hold()
        assert wait_for(lambda: "caller on hold" in server.log_text(), 5), \
            server.log_text()[-3000:]
        time.sleep(1.5)
        assert level(caller.last(1.0), 1100.0) < 500
        agent.resume()
        assert wait_for(lambda: "caller resumed" in server.log_text(), 5)
        time.sleep(1.5)
        assert level(caller.last(1.0), 1100.0) > 1500
        # Blind transfer from the phone's transfer key: REFER to dave.
        agent.transfer(f"sip:dave@127.0.0.1:{server.port}")
        assert wait_for(lambda: "transferred to the consulted party" in server.log_text(), 10), \
            server.log_text()[-3000:]
        agent.wait_closed(10)
        time.sleep(2.0)
        assert level(caller.last(1.0), 1500.0) > 1500
        assert level(target.last(1.0), 700.0) > 1500
        call.hangup()
        assert wait_for(lambda: target.calls[0].state == CallState.ENDED, 5)
    finally:
        agent.stop()
        caller.stop()
        target.stop()
        assert stop_server(server) == 0


def test_an_api_transfer_by_refer_sends_the_callers_own_phone_to_the_target(
    tmp_path: Path,
) -> None:
    """REFER out (RFC 3515): the caller's phone (baresip) is asked to call the target (a
    baresip reached directly); once its NOTIFY says 200 the engine leaves the call."""
    (tmp_path / "engine").mkdir()
    server, http = _server(tmp_path / "engine", md5_only=True)
    agent = Phone(server, "bob", "builder", answer=True, freq=1100.0)
    caller = Baresip(tmp_path / "alice", user="alice", password="wonderland",
                     registrar_port=server.port, source=tone(700.0, 40.0, level_db=-12))
    target = Baresip(tmp_path / "dave", user="dave", answer_mode="auto",
                     source=tone(1500.0, 40.0, level_db=-12))
    try:
        agent.start()
        caller.start()
        target.start()
        caller.wait_registered()
        assert wait_for(lambda: "agent bob: available/idle" in server.log_text())
        caller.dial(f"sip:queue@127.0.0.1:{server.port}")
        assert wait_for(lambda: "bridged to agent bob" in server.log_text(), 15), \
            server.log_text()[-3000:]
        status, body = api(http, "POST", "/api/agents/bob/call/transfer",
                           {"to": target.uri, "method": "refer"})
        assert status == 200, body
        assert wait_for(lambda: "transferred" in server.log_text()
                        and "reached" in server.log_text(), 15), \
            server.log_text()[-3000:] + caller.log_tail()
        time.sleep(2.5)
        # Caller and target talk directly now: each hears the other.
        assert level(target.recorded()[-8000:], 700.0) > 1500
        assert level(caller.recorded()[-8000:], 1500.0) > 1500
        assert wait_for(lambda: api(http, "GET", "/api/agents/bob")[1]["state"] != "on_call", 5)
    finally:
        caller.stop()
        target.stop()
        agent.stop()
        assert stop_server(server) == 0
