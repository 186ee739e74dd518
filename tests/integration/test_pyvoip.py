"""pyVoIP (a real, independent softphone stack) registering with digest auth and calling.

pyVoIP 1.6 answers challenges the RFC 2069 way (MD5, no qop), so these servers enable
`registrar.allow_rfc2069`; the default config keeps qop=auth mandatory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone

from tests.integration.conftest import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.integration
LEGACY = "  allow_rfc2069: true\n"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _server(tmp: Path) -> Server:
    return start_server(tmp, registrar_extra=LEGACY)


def _phone(server: Server, user: str, password: str) -> VoIPPhone:
    rtp = 40000 + (server.port % 500) * 10
    return VoIPPhone("127.0.0.1", server.port, user, password, myIP="127.0.0.1",
                     sipPort=free_port(("udp",)), rtpPortLow=rtp, rtpPortHigh=rtp + 9)


def test_pyvoip_registers_with_digest_and_places_a_call(tmp_path: Path) -> None:
    server = _server(tmp_path)
    phone = _phone(server, "alice", "wonderland")
    try:
        phone.start()
        assert wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED)
        assert wait_for(lambda: "registration sip:alice@127.0.0.1: 1 contact" in server.log_text())
        call = phone.call("1800")
        assert wait_for(lambda: call.state == CallState.ANSWERED), server.log_text()[-2000:]
        assert "answered call" in server.log_text()
        call.hangup()
        assert wait_for(lambda: "ended: remote-bye" in server.log_text()), server.log_text()[-2000:]
    finally:
        phone.stop()
        assert stop_server(server) == 0
    # The clear password never reaches the log.
    assert "wonderland" not in server.log_text()


def test_pyvoip_wrong_password_is_refused_and_logged(tmp_path: Path) -> None:
    server = _server(tmp_path)
    phone = _phone(server, "alice", "not-the-password")
    try:
        with contextlib.suppress(Exception):  # pyVoIP raises or gives up after failures
            phone.start()
        assert wait_for(lambda: 'auth failure from 127.0.0.1 user="alice"' in server.log_text())
        assert phone.get_status() != PhoneStatus.REGISTERED
    finally:
        phone.stop()
        stop_server(server)
    assert "not-the-password" not in server.log_text()


def test_pyvoip_caller_pressing_in_band_keys(tmp_path: Path) -> None:
    """pyVoIP can only press keys as tones in its audio: the media tick must hear them."""
    import numpy as np

    from hotline.media.tones import dtmf_sequence, silence

    server = _server(tmp_path)
    phone = _phone(server, "alice", "wonderland")
    try:
        phone.start()
        call = phone.call("1800")
        assert wait_for(lambda: call.state == CallState.ANSWERED), server.log_text()[-2000:]
        pcm = np.concatenate([silence(1600), dtmf_sequence("159#", 120, 120, -10.0), silence(1600)])
        # pyVoIP takes 8-bit unsigned linear audio.
        call.write_audio(((pcm.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes())
        assert wait_for(lambda: server.log_text().count(" by inband") >= 4, 15), \
            server.log_text()[-2000:]
        call.hangup()
    finally:
        phone.stop()
        stop_server(server)
    digits = [line.split("DTMF ")[1].split(" ")[0] for line in server.log_text().splitlines()
              if "DTMF " in line]
    assert digits == ["1", "5", "9", "#"]
