"""The agent softphone harnesses (tests/peers) against real peers, with audio measured.

baresip 1.0 and pyVoIP 1.6 register with digest auth at a live `hotline serve`, dial its
IVR and hear it: levels and frequencies are measured on what they recorded, and the
engine's own in-band DTMF detector hears what they sent. The engine cannot call agents
yet, so incoming calls come from the peers themselves: baresip calls baresip (hold,
resume, blind transfer), and SIPp stands in for the engine calling an agent with
X-Hotline-* headers and echoes the agent's audio back. The tone meters are checked first,
without sockets.

Registrar settings these peers need: baresip 1.0 answers MD5 digest only and gives up
when any challenge names SHA-256 (`registrar.algorithms: [MD5]`); pyVoIP answers the
RFC 2069 way (`registrar.allow_rfc2069: true`).
"""

from __future__ import annotations

import re
import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import ROOT, Server, require, start_server, stop_server
from tests.peers import IncomingCall, PeerError, free_port, parse_headers, wait_until
from tests.peers.baresip import Baresip, find_baresip
from tests.peers.pyvoip_agent import PyVoipAgent, from_pyvoip, to_pyvoip
from tests.peers.tones import (
    RATE,
    Samples,
    block_levels,
    detect_tone,
    dominant_frequency,
    dtmf,
    read_wav,
    rms_dbfs,
    silence,
    tone,
    tone_level,
    write_wav,
)

pytestmark = pytest.mark.integration

PEER_REGISTRAR = "  algorithms: [MD5]\n  allow_rfc2069: true\n"
IVR_TONE_HZ = 600.0
IVR_TONE_DB = -20.0
KEYS = "159#"


# ------------------------------------------------------------------ tone meters (no sockets)


def test_tone_is_detected_at_its_frequency_and_not_elsewhere() -> None:
    x = tone(700, 1.0, -20.0)
    assert tone_level(x, 700) == pytest.approx(-20.0, abs=0.2)
    assert rms_dbfs(x) == pytest.approx(-20.0, abs=0.05)
    assert detect_tone(x, 700, min_db=-26.0, min_seconds=0.9)
    assert not detect_tone(x, 1100, min_db=-60.0, min_seconds=0.02)
    assert tone_level(x, 1100) < -80.0
    assert dominant_frequency(x) == pytest.approx(700.0, abs=0.5)


def test_tone_between_bins_keeps_its_level_and_frequency() -> None:
    x = tone(733, 1.0, -30.0)  # 733 Hz is not a multiple of the 50 Hz block resolution
    assert tone_level(x, 733) == pytest.approx(-30.0, abs=0.2)
    assert dominant_frequency(x) == pytest.approx(733.0, abs=1.0)


def test_detect_tone_needs_its_duration_without_a_break() -> None:
    burst = np.concatenate([silence(0.2), tone(1000, 0.1), silence(0.2), tone(1000, 0.1)])
    assert detect_tone(burst, 1000, min_db=-30.0, min_seconds=0.08)
    assert not detect_tone(burst, 1000, min_db=-30.0, min_seconds=0.15)
    assert not detect_tone(burst, 1000, min_db=-10.0, min_seconds=0.04)  # too quiet


def test_detect_tone_rejects_noise_and_shares_a_dual_tone() -> None:
    noise = np.random.default_rng(7).normal(0.0, 3000.0, RATE).astype(np.int16)
    assert rms_dbfs(noise) > -18.0
    assert not detect_tone(noise, 700, min_db=-60.0, min_seconds=0.02)
    pair = dtmf("1", on_seconds=0.2, off_seconds=0.0)
    assert tone_level(pair, 697) == pytest.approx(-13.0, abs=0.2)
    assert tone_level(pair, 1209) == pytest.approx(-13.0, abs=0.2)
    assert not detect_tone(pair, 697, min_db=-20.0, min_seconds=0.1)  # half the power only
    assert detect_tone(pair, 697, min_db=-20.0, min_seconds=0.1, min_share=0.4)


def test_block_levels_are_per_20_ms_and_silence_is_floor() -> None:
    x = np.concatenate([tone(500, 0.1, -10.0), silence(0.1)])
    levels = block_levels(x, 500)
    assert levels.shape == (10,)
    assert levels[:5] == pytest.approx(-10.0, abs=0.3)
    assert (levels[5:] == -200.0).all()
    assert rms_dbfs(silence(0.5)) == -200.0
    with pytest.raises(ValueError, match="no frequency in silence"):
        dominant_frequency(silence(0.5))
    with pytest.raises(ValueError, match="frequency must be between 0 and 4000 Hz"):
        tone(4000, 1.0)


def test_wav_round_trip_and_a_file_still_being_written(tmp_path: Path) -> None:
    x = tone(440, 0.5, -6.0)
    path = tmp_path / "a.wav"
    write_wav(path, x)
    y, rate = read_wav(path)
    assert rate == RATE
    assert np.array_equal(x, y)
    # A writer that has not closed the file yet leaves the data size at 0.
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    raw[data_at + 4 : data_at + 8] = b"\0\0\0\0"
    path.write_bytes(bytes(raw) + b"\x01")  # and half a sample
    z, _ = read_wav(path)
    assert np.array_equal(x, z)


def test_pyvoip_audio_conversion_keeps_the_top_byte() -> None:
    x = tone(300, 0.2, -3.0)
    back = from_pyvoip(to_pyvoip(x))
    assert np.abs(back.astype(np.int32) - x).max() < 256
    assert to_pyvoip(silence(0.01)) == b"\x80" * 80


def test_sip_headers_parse_folded_and_compact_forms() -> None:
    start, headers = parse_headers(
        "INVITE sip:a@b SIP/2.0\r\ni: abc\r\nX-Hotline-Caller: 0412\r\n  345678\r\n"
        "f: <sip:q@h>;tag=1\r\n\r\nv=0\r\n"
    )
    assert start == "INVITE sip:a@b SIP/2.0"
    call = IncomingCall("abc", "sip:q@h", "", headers)
    assert call.header("Call-ID") == "abc"
    assert call.header("x-hotline-caller") == "0412 345678"
    assert call.header("From") == "<sip:q@h>;tag=1"
    assert call.headers_with_prefix("X-Hotline-") == {"X-Hotline-Caller": "0412 345678"}
    with pytest.raises(ValueError, match="without a colon"):
        parse_headers("INVITE sip:a@b SIP/2.0\r\nbroken\r\n\r\n")


# ------------------------------------------------------------------ helpers for live peers


def _need_baresip() -> None:
    try:
        find_baresip()
    except PeerError as e:
        pytest.fail(str(e))


def _server(tmp: Path, **overrides: object) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    return start_server(tmp, registrar_extra=PEER_REGISTRAR, **overrides)


def _tone_ivr(tmp: Path) -> dict[str, object]:
    """A flow that answers any number with a long steady tone (the menu waits for D)."""
    flows, audio = tmp / "flows", tmp / "audio"
    flows.mkdir(parents=True)
    (audio / "test").mkdir(parents=True)
    write_wav(audio / "test" / "tone.wav", tone(IVR_TONE_HZ, 10.0, IVR_TONE_DB))
    (flows / "tone.yaml").write_text(
        textwrap.dedent("""\
        flow: tone
        description: a steady test tone for the peers' audio checks
        languages: [en]
        prompts:
          tone: {en: {text: "(test tone)", file: test/tone.wav}}
        steps:
          listen:
            type: menu
            prompt: tone
            keys: {D: bye}
            timeout: 1s
            max_attempts: 10
            noinput: [tone]
            nomatch: [tone]
            repeat_prompt: false
            failed: again
          again: {type: goto, to: listen}
          bye: {type: hangup}
        """)
    )
    return {"flows": flows, "audio": audio, "default_flow": "tone"}


def _vaccine_ivr(tmp: Path) -> dict[str, object]:
    """ivr_flows/vaccine.yaml open 24/7, answering any number."""
    flows = tmp / "flows"
    flows.mkdir(parents=True)
    text = (ROOT / "ivr_flows" / "vaccine.yaml").read_text()
    text = re.sub(
        r'(monday|tuesday|wednesday|thursday|friday|saturday|sunday): "[^"]+"',
        r'\1: "00:00-24:00"',
        text,
    )
    (flows / "vaccine.yaml").write_text(text)
    return {"flows": flows, "default_flow": "vaccine"}


@contextmanager
def _diagnose(server: Server | None, *peers: Baresip) -> Iterator[None]:
    """On failure, print the engine's and the phones' log tails (pytest shows them)."""
    try:
        yield
    except BaseException:
        if server is not None:
            print(f"--- hotline log ({server.log}) ---\n{server.log_text()[-4000:]}")
        for p in peers:
            print(p.log_tail())
        raise


def _wait_audio(get: Callable[[], Samples], seconds: float, timeout: float = 8.0) -> Samples:
    """Poll a recorder until it holds `seconds` of audio; that audio."""
    got: list[Samples] = []

    def enough() -> bool:
        try:
            got[:] = [get()]
        except PeerError:
            return False
        return bool(got[0].size >= seconds * RATE)

    assert wait_until(enough, timeout, 0.1), (
        f"only {got[0].size / RATE if got else 0:.2f} s of audio after {timeout} s"
    )
    return got[0]


def _digits(server: Server, call_id: str) -> list[str]:
    return re.findall(rf"call {re.escape(call_id)}: DTMF (\S) by inband", server.log_text())


def _sipp(tmp: Path, scenario: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    sipp = require("sipp", "sip-tester")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "scenario.xml").write_text(scenario)
    log = tmp / "sipp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sipp,
                *args,
                "-sf",
                str(tmp / "scenario.xml"),
                "-i",
                "127.0.0.1",
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "20s",
                "-timeout_error",
                "-trace_err",
                "-error_file",
                str(tmp / "sipp_errors.log"),
                "-trace_msg",
                "-message_file",
                str(tmp / "sipp_messages.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    return proc, tmp


def _sipp_result(proc: subprocess.Popen[bytes], tmp: Path, timeout: float = 15.0) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = ""
    for name in ("sipp_errors.log", "sipp_messages.log"):
        if (tmp / name).exists():
            text += f"--- {name} ---\n{(tmp / name).read_text(errors='replace')[-3000:]}\n"
    return text


def _sipp_stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# The engine's side of a call to an agent, as SIPp plays it: INVITE with the screen-pop
# headers, wait for the answer, keep the call 2.5 s (SIPp echoes the agent's RTP), BYE.
CALL_AGENT = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="hotline stand-in calls an agent">
{register}
  <send retrans="500">
    <![CDATA[

      INVITE {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Vaccine Queue" <sip:queue@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <{target}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:queue@[local_ip]:[local_port]>
      Max-Forwards: 70
      X-Hotline-Caller: +61412345678
      X-Hotline-Queue: vaccine
      X-Hotline-Booking-Ref: HX7Q2K
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=hotline 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[

      ACK {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Vaccine Queue" <sip:queue@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <{target}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:queue@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="2500"/>
  <send retrans="500">
    <![CDATA[

      BYE {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Vaccine Queue" <sip:queue@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <{target}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:queue@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

# For pyVoIP, which sends everything to its registrar: SIPp is the registrar too.
ACCEPT_REGISTER = """
  <recv request="REGISTER">
    <action>
      <ereg regexp="sip:[^>;]+" search_in="hdr" header="Contact:" check_it="true"
            assign_to="contact"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag00[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      Expires: 120
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="200"/>
"""


def _check_screen_pop(call: IncomingCall) -> None:
    assert call.headers_with_prefix("X-Hotline-") == {
        "X-Hotline-Caller": "+61412345678",
        "X-Hotline-Queue": "vaccine",
        "X-Hotline-Booking-Ref": "HX7Q2K",
    }
    assert call.peer_uri.startswith("sip:queue@127.0.0.1:")
    assert call.peer_name == "Vaccine Queue"


# ------------------------------------------------------------------ baresip and the engine


def test_baresip_registers_with_md5_digest_and_unregisters_on_stop(tmp_path: Path) -> None:
    _need_baresip()
    server = _server(tmp_path / "engine")
    try:
        with (
            Baresip(
                tmp_path / "phone", registrar_port=server.port, user="alice", password="wonderland"
            ) as phone,
            _diagnose(server, phone),
        ):
            phone.wait_registered()
            assert wait_until(
                lambda: "registration sip:alice@127.0.0.1: 1 contact(s)" in server.log_text(), 5
            )
            authorized = [
                m
                for m in phone.sip_trace()
                if m.startswith("REGISTER ") and "Authorization: Digest" in m
            ]
            assert authorized, "baresip registered without answering a challenge"
            assert 'username="alice"' in authorized[0]
            assert "qop=auth" in authorized[0]
        # baresip unregisters on SIGTERM.
        assert wait_until(
            lambda: "registration sip:alice@127.0.0.1: 0 contact(s)" in server.log_text(), 5
        ), server.log_text()[-2000:]
    finally:
        assert stop_server(server) == 0
    assert "wonderland" not in server.log_text()


def test_baresip_wrong_password_is_refused(tmp_path: Path) -> None:
    _need_baresip()
    server = _server(tmp_path / "engine")
    try:
        with (
            Baresip(
                tmp_path / "phone", registrar_port=server.port, user="alice", password="not-it"
            ) as phone,
            _diagnose(server, phone),
        ):
            with pytest.raises(PeerError, match="registration failed"):
                phone.wait_registered()
            assert wait_until(
                lambda: 'auth failure from 127.0.0.1 user="alice"' in server.log_text(), 5
            )
    finally:
        stop_server(server)
    assert "registration sip:alice@127.0.0.1: 1" not in server.log_text()


def test_baresip_1_0_gives_up_on_a_sha256_challenge(tmp_path: Path) -> None:
    """Pins the interop fact behind `algorithms: [MD5]` for baresip 1.0 agents: libre 1.0
    fails the registration when any challenge in the 401 names SHA-256. A newer baresip
    that passes here means the restriction can go."""
    _need_baresip()
    (tmp_path / "engine").mkdir()
    server = start_server(tmp_path / "engine")  # the default offer: SHA-256, then MD5
    try:
        with (
            Baresip(
                tmp_path / "phone", registrar_port=server.port, user="alice", password="wonderland"
            ) as phone,
            _diagnose(server, phone),
            pytest.raises(PeerError, match="Function not implemented"),
        ):
            phone.wait_registered()
    finally:
        stop_server(server)
    assert "registration sip:alice@127.0.0.1: 1" not in server.log_text()


def test_baresip_hears_the_vaccine_line_and_hangs_up(tmp_path: Path) -> None:
    _need_baresip()
    server = _server(tmp_path / "engine", **_vaccine_ivr(tmp_path))
    try:
        with (
            Baresip(
                tmp_path / "phone", registrar_port=server.port, user="alice", password="wonderland"
            ) as phone,
            _diagnose(server, phone),
        ):
            phone.wait_registered()
            phone.dial(f"sip:1800@127.0.0.1:{server.port}")
            call_id = phone.wait_established().call_id
            assert wait_until(
                lambda: f"answered call {call_id} from alice to 1800" in server.log_text(), 5
            )
            heard = _wait_audio(phone.recorded, 2.0)[: 2 * RATE]
            level = rms_dbfs(heard)
            print(f"baresip heard the vaccine greeting at {level:.1f} dBFS RMS (first 2 s)")
            assert level > -35.0, f"the greeting is silence: {level:.1f} dBFS"
            phone.hangup()
            assert phone.wait_closed(call_id=call_id).param == "Connection reset by user"
            assert wait_until(lambda: f"call {call_id} ended: remote-bye" in server.log_text(), 5)
    finally:
        assert stop_server(server) == 0


def test_baresip_measures_the_ivr_tone_and_the_engine_hears_its_keys(tmp_path: Path) -> None:
    """Both directions measured: baresip records the flow's 600 Hz at its level; the keys
    in baresip's source (in-band, from 3 s) reach the engine's DTMF detector."""
    _need_baresip()
    server = _server(tmp_path / "engine", **_tone_ivr(tmp_path))
    source = np.concatenate([silence(3.0), dtmf(KEYS, 0.1, 0.15)])
    try:
        with (
            Baresip(
                tmp_path / "phone",
                registrar_port=server.port,
                user="alice",
                password="wonderland",
                source=source,
            ) as phone,
            _diagnose(server, phone),
        ):
            phone.wait_registered()
            phone.dial(f"sip:1800@127.0.0.1:{server.port}")
            call_id = phone.wait_established().call_id
            heard = _wait_audio(phone.recorded, 2.5)[: int(2.5 * RATE)]
            level = tone_level(heard, IVR_TONE_HZ)
            print(
                f"baresip heard {dominant_frequency(heard):.1f} Hz at {level:.2f} dBFS "
                f"(sent {IVR_TONE_DB} dBFS), RMS {rms_dbfs(heard):.2f} dBFS"
            )
            assert detect_tone(heard, IVR_TONE_HZ, IVR_TONE_DB - 1.0, 2.0)
            assert level == pytest.approx(IVR_TONE_DB, abs=1.0)
            assert dominant_frequency(heard) == pytest.approx(IVR_TONE_HZ, abs=2.0)
            assert wait_until(lambda: len(_digits(server, call_id)) >= len(KEYS), 8), (
                server.log_text()[-2000:]
            )
            assert _digits(server, call_id) == list(KEYS)
            sent = phone.sent()
            assert detect_tone(sent, 697, -16.0, 0.08, min_share=0.4)  # key 1's row tone
            phone.hangup()
            phone.wait_closed(call_id=call_id)
            assert wait_until(lambda: f"call {call_id} ended: remote-bye" in server.log_text(), 5)
    finally:
        assert stop_server(server) == 0


# ------------------------------------------------------------------ pyVoIP and the engine


def test_pyvoip_agent_registers_dials_hears_and_is_heard(tmp_path: Path) -> None:
    server = _server(tmp_path / "engine", **_tone_ivr(tmp_path))
    try:
        with (
            PyVoipAgent(registrar_port=server.port, user="bob", password="builder") as agent,
            _diagnose(server),
        ):
            assert agent.registered
            assert wait_until(
                lambda: "registration sip:bob@127.0.0.1: 1 contact(s)" in server.log_text(), 5
            )
            agent.dial("1800")
            call_id = agent.call_id
            assert wait_until(
                lambda: f"answered call {call_id} from bob to 1800" in server.log_text(), 5
            )
            # pyVoIP's Python RTP thread drops or repeats a packet now and then on a busy
            # machine (a break in the tone): listen longer, ask for 1.5 s unbroken.
            heard = _wait_audio(agent.recorded, 4.5)[: int(4.5 * RATE)]
            level = tone_level(heard, IVR_TONE_HZ)
            print(
                f"pyVoIP heard {dominant_frequency(heard):.1f} Hz at {level:.2f} dBFS, "
                f"RMS {rms_dbfs(heard):.2f} dBFS"
            )
            assert detect_tone(heard, IVR_TONE_HZ, IVR_TONE_DB - 1.5, 1.5)
            assert level == pytest.approx(IVR_TONE_DB, abs=1.5)
            agent.play(dtmf(KEYS, 0.1, 0.15))
            assert wait_until(lambda: len(_digits(server, call_id)) >= len(KEYS), 8)
            assert _digits(server, call_id) == list(KEYS)
            agent.hangup()
            assert wait_until(lambda: f"call {call_id} ended: remote-bye" in server.log_text(), 5)
    finally:
        assert stop_server(server) == 0
    assert "builder" not in server.log_text()


# ------------------------------------------------------------------ incoming calls


def test_baresip_to_baresip_answer_hold_resume_and_blind_transfer(tmp_path: Path) -> None:
    """Alice calls Bob directly; each measures the other's tone. Bob holds and resumes
    (re-INVITEs), then transfers Alice to Carol (REFER); Carol, on auto-answer, hears
    Alice."""
    _need_baresip()
    with (
        Baresip(tmp_path / "alice", user="alice", source=tone(700, 5.0)) as alice,
        Baresip(tmp_path / "bob", user="bob", source=tone(1100, 5.0)) as bob,
        Baresip(
            tmp_path / "carol", user="carol", answer_mode="auto", source=tone(1500, 5.0)
        ) as carol,
        _diagnose(None, alice, bob, carol),
    ):
        alice.dial(bob.uri)
        offered = bob.wait_incoming()
        assert offered.peer_uri == alice.uri
        assert (offered.header("To") or "").startswith(f"<{bob.uri};")
        bob.answer()
        call_id = alice.wait_established().call_id
        assert bob.wait_established().call_id == call_id == offered.call_id
        alice_heard = _wait_audio(alice.recorded, 1.5)
        bob_heard = _wait_audio(bob.recorded, 1.5)
        print(
            f"alice heard 1100 Hz at {tone_level(alice_heard, 1100):.2f} dBFS, "
            f"bob heard 700 Hz at {tone_level(bob_heard, 700):.2f} dBFS (sent -20)"
        )
        assert detect_tone(alice_heard, 1100, -21.0, 1.0)
        assert detect_tone(bob_heard, 700, -21.0, 1.0)
        assert not detect_tone(bob_heard, 1100, -60.0, 0.1)  # no echo of his own

        bob.hold()
        assert wait_until(lambda: _reinvites(alice) == ["sendonly"], 5)
        bob.resume()
        assert wait_until(lambda: _reinvites(alice) == ["sendonly", "sendrecv"], 5)

        bob.transfer(carol.uri)
        assert alice.wait_event("TRANSFER").param == carol.uri
        assert bob.wait_closed(call_id=call_id).param == "Call transfered"
        to_carol = carol.wait_incoming()
        assert to_carol.peer_uri == alice.uri
        assert alice.wait_established().call_id == to_carol.call_id
        carol_heard = _wait_audio(carol.recorded, 1.0)
        assert detect_tone(carol_heard, 700, -21.0, 0.8)


def _reinvites(phone: Baresip) -> list[str]:
    """The SDP direction of each re-INVITE `phone` received (To has a tag)."""
    out = []
    for message in phone.sip_trace():
        if not message.startswith("INVITE "):
            continue
        _, headers = parse_headers(message)
        to = next((v for n, v in headers if n.lower() in ("to", "t")), "")
        if ";tag=" in to:
            found = re.search(r"a=(sendrecv|sendonly|recvonly|inactive)", message)
            out.append(found.group(1) if found else "sendrecv")
    return out


def test_baresip_agent_gets_screen_pop_headers_and_is_heard(tmp_path: Path) -> None:
    """SIPp plays the engine calling an agent: baresip sees the X-Hotline-* headers
    before answering, and hears its own tone back through SIPp's RTP echo."""
    _need_baresip()
    scenario = CALL_AGENT.replace("{register}", "").replace(
        "{target}", "sip:agent1@[remote_ip]:[remote_port]"
    )
    with (
        Baresip(tmp_path / "phone", user="agent1", source=tone(900, 5.0)) as phone,
        _diagnose(None, phone),
    ):
        proc, sipp_dir = _sipp(
            tmp_path / "sipp",
            scenario,
            [
                f"127.0.0.1:{phone.sip_port}",
                "-p",
                str(free_port(("udp",))),
                "-mp",
                str(free_port(("udp",)) & ~1),
                "-rtp_echo",
            ],
        )
        try:
            offered = phone.wait_incoming()
            _check_screen_pop(offered)
            phone.answer()
            phone.wait_established()
            closed = phone.wait_closed(timeout=10)
            assert closed.call_id == offered.call_id
            sipp_errors = _sipp_result(proc, sipp_dir)
            assert proc.returncode == 0, sipp_errors
        finally:
            _sipp_stop(proc)
        echoed = phone.recorded()
        print(
            f"baresip heard its 900 Hz back at {tone_level(echoed, 900):.2f} dBFS "
            f"over {echoed.size / RATE:.2f} s"
        )
        assert detect_tone(echoed, 900, -21.0, 1.5)


def test_pyvoip_agent_gets_screen_pop_headers_answers_and_is_heard(tmp_path: Path) -> None:
    """SIPp is pyVoIP's registrar and the caller (pyVoIP answers only its registrar):
    the agent registers, sees the X-Hotline-* headers, answers, plays a tone and hears it
    back through SIPp's RTP echo; SIPp hangs up."""
    scenario = CALL_AGENT.replace("{register}", ACCEPT_REGISTER).replace("{target}", "[$contact]")
    sipp_port = free_port(("udp",))
    proc, sipp_dir = _sipp(
        tmp_path / "sipp",
        scenario,
        ["-p", str(sipp_port), "-mp", str(free_port(("udp",)) & ~1), "-rtp_echo"],
    )
    try:
        assert wait_until(lambda: _udp_bound(sipp_port), 5), "SIPp did not bind its port"
        with PyVoipAgent(registrar_port=sipp_port, user="agent2", password="unused") as agent:
            offered = agent.wait_incoming()
            _check_screen_pop(offered)
            agent.answer()
            agent.play(tone(900, 1.5))
            agent.wait_ended(timeout=10)
            echoed = agent.recorded()
        sipp_errors = _sipp_result(proc, sipp_dir)
        assert proc.returncode == 0, sipp_errors
    finally:
        _sipp_stop(proc)
    print(
        f"pyVoIP heard its 900 Hz back at {tone_level(echoed, 900):.2f} dBFS "
        f"over {echoed.size / RATE:.2f} s"
    )
    assert detect_tone(echoed, 900, -21.5, 1.2)


def _udp_bound(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return True
    finally:
        s.close()
    return False


def test_baresip_refuses_credentials_that_would_break_its_account_line() -> None:
    for bad in ("", "pass word", "a;b", "a<b", 'a"b'):
        with pytest.raises(ValueError, match="password must be non-empty"):
            Baresip(Path("/nonexistent"), user="alice", password=bad)
    with pytest.raises(ValueError, match="regint must be >= 1"):
        Baresip(Path("/nonexistent"), user="alice", registrar_port=5060, regint=0)
