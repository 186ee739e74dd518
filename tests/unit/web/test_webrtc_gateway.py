"""The WebRTC gateway's pieces without a network: the page's messages, the screen pop, the
login throttle and origin rule, each call's state machine, the RTP rewriting towards the
engine, the playout and the outgoing track's framing on a fake clock, and the REGISTER
client driven against the engine's own registrar (sans-IO on both sides, fake clock)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.media.g711 import Codec as Law
from hotline.media.g711 import decode_payload, encode_payload
from hotline.rtp.packet import RtpPacket
from hotline.sip.addr import Peer
from hotline.sip.auth import Algorithm, DigestVerifier, compute_ha1
from hotline.sip.auth_policy import DigestAuthenticator
from hotline.sip.endpoint import Endpoint, EndpointConfig
from hotline.sip.message import Request, Response, make_response, parse_message
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import Registrar, RegistrarPolicy
from hotline.sip.transaction import Timers
from hotline.web.agent_call import (
    TRANSITIONS,
    Action,
    AgentCall,
    CallPhase,
    CallStateError,
    Input,
)
from hotline.web.agent_protocol import (
    MAX_MESSAGE,
    Accept,
    Hangup,
    Login,
    LoginThrottle,
    Logout,
    Mute,
    ProtocolError,
    Reject,
    origin_allowed,
    parse_client_message,
    screen_pop,
)
from hotline.web.rtp_bridge import FRAME_SAMPLES, EngineAudioTrack, Playout, RtpRewriter
from hotline.web.sip_register import (
    RETRY_INTERVAL,
    RegistrationClient,
    RegistrationEnded,
    RegistrationFailed,
    RegistrationState,
    RegistrationSucceeded,
    refresh_delay,
)
from hotline.web.webrtc_gateway import GatewayConfig, _same_host

# -- the page's messages --------------------------------------------------------------------


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def test_every_message_type_is_parsed_into_its_typed_form() -> None:
    assert parse_client_message(msg(type="login", username="bob", password="p w")) == Login(
        "bob", "p w"
    )
    assert parse_client_message(msg(type="logout")) == Logout()
    assert parse_client_message(msg(type="accept", call="c1", sdp="v=0\r\n")) == Accept(
        "c1", "v=0\r\n"
    )
    assert parse_client_message(msg(type="reject", call="c1")) == Reject("c1")
    assert parse_client_message(msg(type="hangup", call="c-1_x")) == Hangup("c-1_x")
    assert parse_client_message(msg(type="mute", call="c1", muted=False)) == Mute("c1", False)
    assert parse_client_message(msg(type="logout").encode()) == Logout()


def test_a_login_never_shows_its_password() -> None:
    login = parse_client_message(msg(type="login", username="bob", password="hunter2-secret"))
    assert "hunter2-secret" not in repr(login)
    with pytest.raises(ProtocolError) as exc:
        parse_client_message(msg(type="login", username="bob", password="hunter2\x01secret"))
    assert "hunter2" not in str(exc.value)
    assert str(exc.value) == "login: the password must not contain control characters"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            "{",
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1]", "expected a JSON object, found list"),
        (
            msg(type="dance"),
            "unknown message type 'dance': expected one of accept, hangup, login, "
            "logout, mute, reject",
        ),
        (
            msg(kind="login"),
            "unknown message type 'NoneType': expected one of accept, hangup, "
            "login, logout, mute, reject",
        ),
        (
            msg(type="login", username="bob"),
            "login: expected a string in 'password', found nothing",
        ),
        (
            msg(type="login", username=7, password="x"),
            "login: expected a string in 'username', found int",
        ),
        (
            msg(type="login", username="bob smith", password="x"),
            "login: the username must be 1-64 letters, digits or . _ ~ + -",
        ),
        (
            msg(type="login", username="b" * 65, password="x"),
            "login: the username must be 1-64 letters, digits or . _ ~ + -",
        ),
        (
            msg(type="login", username="bob", password=""),
            "login: the password must be 1-128 characters",
        ),
        (
            msg(type="login", username="bob", password="x" * 129),
            "login: the password must be 1-128 characters",
        ),
        (msg(type="logout", extra=1), "logout: unexpected field(s) 'extra'"),
        (msg(type="reject"), "reject: expected a string in 'call', found nothing"),
        (
            msg(type="hangup", call="c1;drop"),
            "hangup: 'call' must be 1-64 letters, digits, '-' or '_'",
        ),
        (msg(type="accept", call="c1", sdp="  "), "accept: 'sdp' is empty"),
        (
            msg(type="accept", call="c1", sdp="o=- 1 1 IN IP4 0.0.0.0"),
            "accept: 'sdp' is not a session description (no v=0 line)",
        ),
        (
            msg(type="accept", call="c1", sdp="v=0" + "x" * 50_000),
            "accept: 'sdp' is 50003 characters, at most 49152",
        ),
        (msg(type="mute", call="c1", muted="yes"), "mute: expected true or false in 'muted'"),
        (
            "x" * (MAX_MESSAGE + 1),
            f"message too large: {MAX_MESSAGE + 1} bytes, at most {MAX_MESSAGE}",
        ),
    ],
)
def test_each_malformed_message_gets_its_own_precise_refusal(raw: str, error: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_client_message(raw)
    assert str(exc.value) == error


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_no_input_escapes_as_anything_but_a_protocol_error(raw: str) -> None:
    try:
        parsed = parse_client_message(raw)
    except ProtocolError as exc:
        assert str(exc)  # every refusal says why
    else:
        assert isinstance(parsed, Login | Logout | Accept | Reject | Hangup | Mute)


# -- the screen pop -------------------------------------------------------------------------


def test_the_screen_pop_is_read_from_the_x_hotline_headers_and_masked_values_stay_masked() -> None:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx"),
        ("X-Hotline-Call-ID", "call-42@127.0.0.1"),
        ("X-Hotline-Queue", "help"),
        ("X-Hotline-Waited", "73"),
        ("X-Hotline-Priority", "1"),
        ("X-Hotline-Caller", "*******678"),
        ("x-hotline-var-topic", "vaccine"),
        ("X-Hotline-Var-medicare", "*******9012"),
        ("X-Hotline-Var-note", "line one\r\nInjected: yes"),
        ("X-Hotline-Monitor", "whisper"),
    ]
    pop = screen_pop(headers, "Hotline help")
    assert pop.queue == "help" and pop.waited == 73 and pop.priority == 1
    assert pop.caller == "*******678" and pop.call_ref == "call-42@127.0.0.1"
    assert pop.display == "Hotline help"
    assert pop.variables == (
        ("topic", "vaccine"),
        ("medicare", "*******9012"),
        ("note", "line one  Injected: yes"),
    )
    assert pop.context == (("monitor", "whisper"),)
    data = pop.to_json()
    assert data["variables"][1] == ["medicare", "*******9012"]
    assert json.loads(json.dumps(data)) == data


def test_the_screen_pop_is_bounded_and_tolerates_odd_values() -> None:
    headers = [(f"X-Hotline-Var-v{i}", "x" * 400) for i in range(100)]
    headers += [("X-Hotline-Waited", "a while"), ("X-Hotline-Call", "bridge-7")]
    pop = screen_pop(headers)
    assert len(pop.variables) == 64
    assert all(len(v) == 256 for _, v in pop.variables)
    assert pop.waited is None and pop.call_ref == "bridge-7" and pop.queue is None


# -- the login throttle and the origin rule ------------------------------------------------


def test_logins_are_limited_to_five_a_minute_per_websocket() -> None:
    throttle = LoginThrottle()
    assert [throttle.attempt("ws1", "192.0.2.1", 100.0) for _ in range(5)] == [0.0] * 5
    wait = throttle.attempt("ws1", "192.0.2.1", 100.0)
    assert wait == pytest.approx(12.0)
    assert throttle.attempt("ws1", "192.0.2.1", 100.0 + wait) == 0.0
    assert throttle.attempt("ws1", "192.0.2.1", 100.0 + wait) > 0


def test_logins_are_limited_per_address_across_websockets() -> None:
    throttle = LoginThrottle()
    for i in range(10):
        assert throttle.attempt(f"ws{i // 5}", "192.0.2.1", 50.0) == 0.0
    assert throttle.attempt("fresh", "192.0.2.1", 50.0) == pytest.approx(6.0)
    assert throttle.attempt("fresh", "192.0.2.2", 50.0) == 0.0  # another address is not held


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:8080", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://Agents.Example:443", "agents.example:443", True),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("http://127.0.0.1:9999", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", None, False),
    ],
)
def test_only_the_pages_own_origin_may_open_the_websocket(
    origin: str | None,
    host: str | None,
    allowed: bool,
) -> None:
    assert origin_allowed(origin, host) is allowed


def test_the_gateway_config_refuses_what_it_cannot_use() -> None:
    assert GatewayConfig("127.0.0.1", 5060, "hotline.test").path == "/agent"
    with pytest.raises(ValueError, match="engine_host must be an IP address, found 'engine'"):
        GatewayConfig("engine", 5060, "hotline.test")
    with pytest.raises(ValueError, match="engine_port out of range 1-65535: 0"):
        GatewayConfig("127.0.0.1", 0, "hotline.test")
    with pytest.raises(ValueError, match="path must start with /"):
        GatewayConfig("127.0.0.1", 5060, "hotline.test", path="/agent/")
    with pytest.raises(ValueError, match="register_expires must be 60-86400 s: 30"):
        GatewayConfig("127.0.0.1", 5060, "hotline.test", register_expires=30)


def test_addresses_compare_as_addresses() -> None:
    assert _same_host("127.0.0.1", "127.0.0.1")
    assert _same_host("::ffff:127.0.0.1", "127.0.0.1")
    assert _same_host("::1", "0:0:0:0:0:0:0:1")
    assert not _same_host("127.0.0.2", "127.0.0.1")


# -- a call's state machine ------------------------------------------------------------------


def test_ring_accept_connect_ack_hang_up() -> None:
    call = AgentCall("c1")
    assert call.handle(Input.ACCEPT) == (Action.START_MEDIA,)
    assert call.phase is CallPhase.ACCEPTING
    assert call.handle(Input.MEDIA_READY) == (Action.SIP_ANSWER,)
    assert call.handle(Input.ACK) == (Action.NOTIFY_CONNECTED,)
    assert call.handle(Input.MUTE, muted=True) == (Action.SET_MUTE,) and call.muted
    assert call.handle(Input.HANGUP) == (Action.SIP_BYE, Action.STOP_MEDIA, Action.NOTIFY_ENDED)
    assert call.ended and call.end_reason == "hung up by the agent"


def test_the_engines_cancel_stops_the_ringing_before_and_while_answering() -> None:
    ringing = AgentCall("c1")
    assert ringing.handle(Input.REMOTE_END, reason="withdrawn by the hotline") == (
        Action.STOP_MEDIA,
        Action.NOTIFY_CANCELLED,
    )
    assert ringing.end_reason == "withdrawn by the hotline"
    answering = AgentCall("c2")
    answering.handle(Input.ACCEPT)
    assert answering.handle(Input.REMOTE_END) == (Action.STOP_MEDIA, Action.NOTIFY_CANCELLED)
    # The WebRTC leg connecting afterwards is only released, never answered.
    assert answering.handle(Input.MEDIA_READY) == (Action.STOP_MEDIA,)
    assert answering.handle(Input.REMOTE_END) == ()
    assert answering.end_reason == "ended by the hotline"


def test_declining_is_603_and_a_leg_that_never_connects_is_480() -> None:
    assert AgentCall("c1").handle(Input.REJECT)[0] is Action.SIP_DECLINE
    assert AgentCall("c2").handle(Input.HANGUP)[0] is Action.SIP_DECLINE  # still ringing
    call = AgentCall("c3")
    call.handle(Input.ACCEPT)
    assert call.handle(Input.MEDIA_FAILED, reason="ICE failed") == (
        Action.SIP_UNAVAILABLE,
        Action.STOP_MEDIA,
        Action.NOTIFY_ENDED,
    )
    assert call.end_reason == "ICE failed"


def test_a_media_failure_while_talking_hangs_up_and_a_bye_just_ends() -> None:
    call = AgentCall("c1")
    for event in (Input.ACCEPT, Input.MEDIA_READY, Input.ACK):
        call.handle(event)
    assert call.handle(Input.MEDIA_FAILED)[0] is Action.SIP_BYE
    other = AgentCall("c2")
    for event in (Input.ACCEPT, Input.MEDIA_READY):
        other.handle(event)
    assert other.handle(Input.REMOTE_END) == (Action.STOP_MEDIA, Action.NOTIFY_ENDED)


@pytest.mark.parametrize(
    ("events", "refused", "message"),
    [
        ((), Input.ACK, "call c1 is ringing: cannot ack"),
        ((), Input.MUTE, "call c1 is ringing: cannot mute"),
        ((Input.ACCEPT,), Input.ACCEPT, "call c1 is accepting: cannot accept"),
        ((Input.ACCEPT, Input.MEDIA_READY), Input.REJECT, "call c1 is answered: cannot reject"),
        ((Input.REJECT,), Input.HANGUP, "call c1 is ended: cannot hang up"),
        ((Input.REJECT,), Input.ACCEPT, "call c1 is ended: cannot accept"),
    ],
)
def test_inputs_a_phase_does_not_take_are_refused_with_a_message(
    events: tuple[Input, ...],
    refused: Input,
    message: str,
) -> None:
    call = AgentCall("c1")
    for event in events:
        call.handle(event)
    phase = call.phase
    with pytest.raises(CallStateError) as exc:
        call.handle(refused, muted=True)
    assert str(exc.value) == message
    assert call.phase is phase  # nothing changed


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list(Input)), max_size=12))
def test_any_sequence_of_inputs_keeps_the_call_consistent(events: list[Input]) -> None:
    call = AgentCall("c1")
    actions: list[Action] = []
    for event in events:
        before = call.phase
        try:
            done = call.handle(event, muted=True)
        except CallStateError:
            assert (before, event) not in TRANSITIONS
            continue
        actions.extend(done)
        if before is CallPhase.ENDED:
            assert call.ended  # over is over
            assert set(done) <= {Action.STOP_MEDIA}
    assert actions.count(Action.SIP_ANSWER) <= 1
    finals = [
        a for a in actions if a in (Action.SIP_ANSWER, Action.SIP_DECLINE, Action.SIP_UNAVAILABLE)
    ]
    assert len(finals) <= 1  # one final response to the INVITE
    notices = [a for a in actions if a in (Action.NOTIFY_ENDED, Action.NOTIFY_CANCELLED)]
    assert len(notices) == (1 if call.ended else 0)
    if call.ended:
        assert Action.STOP_MEDIA in actions and call.end_reason


# -- RTP towards the engine --------------------------------------------------------------------


def rewrite(
    rw: RtpRewriter,
    ssrc: int,
    seq: int,
    ts: int,
    payload: bytes = b"\x11" * 160,
    marker: bool = False,
) -> RtpPacket:
    return RtpPacket.parse(
        rw.rewrite(ssrc=ssrc, sequence_number=seq, timestamp=ts, payload=payload, marker=marker)
    )


def test_browser_packets_become_our_stream_with_gaps_and_order_kept() -> None:
    rw = RtpRewriter(ssrc=0xCAFE, first_seq=1000, first_timestamp=50_000)
    first = rewrite(rw, 0xB0B, 7, 9_000)
    assert (first.ssrc, first.sequence_number, first.timestamp, first.payload_type) == (
        0xCAFE,
        1000,
        50_000,
        0,
    )
    assert first.marker  # the start of our stream
    assert first.payload == b"\x11" * 160
    later = rewrite(rw, 0xB0B, 9, 9_320)  # seq 8 lost: the gap stays a gap
    assert (later.sequence_number, later.timestamp, later.marker) == (1002, 50_320, False)
    late = rewrite(rw, 0xB0B, 8, 9_160)  # and arrives late: still in its place
    assert (late.sequence_number, late.timestamp) == (1001, 50_160)


def test_a_new_browser_source_continues_our_numbering_with_the_marker_set() -> None:
    rw = RtpRewriter(ssrc=1, first_seq=65534, first_timestamp=2**32 - 160)
    assert rewrite(rw, 10, 500, 0).sequence_number == 65534
    second = rewrite(rw, 10, 501, 160)
    assert (second.sequence_number, second.timestamp) == (65535, 0)  # both counters wrap
    other = rewrite(rw, 11, 42_000, 777)
    assert (other.sequence_number, other.timestamp, other.marker) == (0, 160, True)
    assert rw.source_changes == 1
    assert rewrite(rw, 11, 42_001, 937).sequence_number == 1


def test_muted_packets_carry_silence_and_keep_flowing() -> None:
    rw = RtpRewriter(ssrc=1, first_seq=0, first_timestamp=0)
    rw.muted = True
    packet = rewrite(rw, 5, 1, 0, payload=b"\x00" * 160)
    assert packet.payload == b"\xff" * 160
    rw.muted = False
    assert rewrite(rw, 5, 2, 160, payload=b"\x00" * 160).payload == b"\x00" * 160


# -- playout from the engine ------------------------------------------------------------------


def pcmu(value: int, n: int = FRAME_SAMPLES) -> bytes:
    return encode_payload(Law.PCMU, np.full(n, value, dtype=np.int16))


def level_of(value: int) -> int:
    return int(decode_payload(Law.PCMU, pcmu(value, 1))[0])


def test_playout_primes_two_frames_then_plays_them_in_order() -> None:
    playout = Playout()
    assert not playout.pop().any()  # nothing yet: silence
    playout.push(1, pcmu(1000))
    assert not playout.pop().any()  # one frame is not enough to start
    playout.push(2, pcmu(2000))
    first, second = playout.pop(), playout.pop()
    assert (first == level_of(1000)).all() and (second == level_of(2000)).all()
    assert first.dtype == np.int16 and first.shape == (FRAME_SAMPLES,)
    assert not playout.pop().any() and playout.underruns == 1
    playout.push(3, pcmu(3000))
    assert not playout.pop().any()  # re-priming after the underrun
    assert playout.frames == 2


def test_playout_drops_late_and_duplicate_packets() -> None:
    playout = Playout()
    assert playout.push(65535, pcmu(100))
    assert playout.push(0, pcmu(200))  # the sequence number wrapped: newer
    assert not playout.push(0, pcmu(300))
    assert not playout.push(65534, pcmu(400))
    assert playout.dropped_late == 2 and playout.held == 2 * FRAME_SAMPLES


def test_playout_reframes_30_ms_packets_into_20_ms_frames() -> None:
    playout = Playout()
    playout.push(1, pcmu(1000, 240))
    playout.push(2, pcmu(2000, 240))
    frames = [playout.pop() for _ in range(3)]
    joined = np.concatenate(frames)
    assert (joined[:240] == level_of(1000)).all() and (joined[240:] == level_of(2000)).all()


def test_playout_holds_at_most_ten_frames_dropping_the_oldest() -> None:
    playout = Playout()
    for seq in range(11):
        playout.push(seq, pcmu(100 * (seq + 1)))
    assert playout.held == 2 * FRAME_SAMPLES and playout.dropped_overflow == 9 * FRAME_SAMPLES
    assert (playout.pop() == level_of(1000)).all()
    assert (playout.pop() == level_of(1100)).all()


# -- the outgoing track on a fake clock ---------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_track_sends_20_ms_frames_on_its_own_schedule_with_silence_when_nothing_came() -> None:
    clock = FakeClock()
    playout = Playout()
    track = EngineAudioTrack(playout, clock=clock, sleep=clock.sleep)

    async def run() -> list[Any]:
        frames = [await track.recv()]
        playout.push(1, pcmu(1000))
        playout.push(2, pcmu(1000))
        frames.append(await track.recv())
        clock.now += 0.005  # the sender was late by 5 ms: the next sleep is shorter
        frames.append(await track.recv())
        clock.now += 0.5  # a stalled loop: skip ahead instead of bursting
        frames.append(await track.recv())
        track.stop()
        with pytest.raises(MediaStreamError):
            await track.recv()
        return frames

    frames = asyncio.run(run())
    # 0.5 s late at frame 4: the 24 frames due meanwhile are skipped, not sent in a burst.
    assert [f.pts for f in frames] == [0, 160, 320, 4320]
    assert track.skips == 24
    assert clock.slept[:2] == [0.02, 0.015] and all(s < 1e-6 for s in clock.slept[2:])
    for frame in frames:
        assert frame.sample_rate == 8000 and frame.samples == FRAME_SAMPLES
        assert frame.format.name == "s16" and frame.layout.name == "mono"
        assert str(frame.time_base) == "1/8000"
    assert not frames[0].to_ndarray().any()
    assert (frames[1].to_ndarray() == level_of(1000)).all()
    assert (frames[2].to_ndarray() == level_of(1000)).all()


# -- registering with the engine's registrar ---------------------------------------------------

ENGINE = Peer("udp", "127.0.0.1", 5060)
GATEWAY = ("127.0.0.1", 40000)
REALM = "hotline.test"


class Exchange:
    """The registration client and the engine's endpoint + registrar, wired by hand."""

    def __init__(self, *, policy: RegistrarPolicy | None = None) -> None:
        rng = random.Random(5)

        def lookup(user: str) -> dict[Algorithm, str] | None:
            if user != "bob":
                return None
            return {
                a: compute_ha1(user, REALM, "builder", a) for a in (Algorithm.SHA256, Algorithm.MD5)
            }

        verifier = DigestVerifier(REALM, b"k" * 32, lookup, random_bytes=rng.randbytes)
        self.registrar = Registrar(
            policy or RegistrarPolicy(), DigestAuthenticator(verifier, RateLimiter(0.2, 10))
        )
        self.engine = Endpoint(
            EndpointConfig(local={"udp": (ENGINE.host, ENGINE.port)}, domain=REALM),
            rng.randbytes,
            self.registrar,
        )
        self.client = RegistrationClient(
            registrar=ENGINE,
            domain=REALM,
            local=GATEWAY,
            random_bytes=rng.randbytes,
            timers=Timers(),
        )
        self.now = 1000.0
        self.engine_up = True
        self.requests: list[Request] = []
        self.responses: list[Response] = []

    def run(self) -> list[Any]:
        """Deliver datagrams both ways until quiet; the client's events."""
        while True:
            moved = False
            for data, peer in self.client.datagrams_to_send():
                assert peer == ENGINE
                moved = True
                request = parse_message(data)
                assert isinstance(request, Request)
                self.requests.append(request)
                if self.engine_up:
                    self.engine.receive(data, Peer("udp", *GATEWAY), self.now)
            for data, _peer in self.engine.datagrams_to_send():
                moved = True
                response = parse_message(data)
                assert isinstance(response, Response) and self.client.owns(response)
                self.responses.append(response)
                self.client.receive_response(response, ENGINE, self.now)
            self.engine.take_events()
            if not moved:
                return self.client.take_events()

    def advance(self, seconds: float) -> list[Any]:
        end = self.now + seconds
        events: list[Any] = []
        while (t := self.client.next_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            self.client.handle_timer(self.now)
            events += self.run()
        self.now = end
        return events

    def bound(self) -> list[str]:
        return [str(b.contact.uri) for b in self.registrar.lookup_user("bob", self.now)]


def test_register_with_digest_refresh_before_expiry_and_unregister() -> None:
    x = Exchange(policy=RegistrarPolicy(max_expires=120))
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now, expires=300)
    events = x.run()
    assert events == [RegistrationSucceeded("s1", 120, refreshed=False)]
    assert [r.status for r in x.responses] == [401, 200]
    assert x.bound() == ["sip:webrtc-s1@127.0.0.1:40000"]
    first, answered = x.requests
    assert "Authorization" not in first.headers and 'username="bob"' in (
        answered.headers.get("Authorization") or ""
    )
    assert "builder" not in answered.to_bytes().decode()
    assert answered.cseq.number == first.cseq.number + 1 and answered.call_id == first.call_id
    assert x.client.registrations["s1"].deadline == pytest.approx(x.now + refresh_delay(120))
    # The refresh goes out a minute before expiry, on the same Call-ID, and holds.
    events = x.advance(61.0)
    assert events == [RegistrationSucceeded("s1", 120, refreshed=True)]
    assert x.requests[-1].call_id == first.call_id
    assert x.requests[-1].cseq.number > answered.cseq.number
    x.advance(100.0)  # past the first expiry: still bound thanks to the refresh
    assert x.bound() == ["sip:webrtc-s1@127.0.0.1:40000"]
    x.client.unregister("s1", x.now)
    assert x.run() == [RegistrationEnded("s1", 200)]
    assert x.requests[-1].headers.get("Expires") == "0"
    assert x.bound() == [] and x.client.state("s1") is None


def test_wrong_credentials_end_the_registration_at_once() -> None:
    x = Exchange()
    x.client.register("s1", "bob", "wrong", "webrtc-s1", x.now)
    [event] = x.run()
    assert isinstance(event, RegistrationFailed)
    assert (event.status, event.retry_at) == (401, None)
    assert event.reason == "user 'bob': the credentials were refused"
    assert [r.status for r in x.responses] == [401, 401]  # answered once, then gave up
    assert x.client.registrations == {} and x.bound() == []


def test_a_registrar_that_never_answers_fails_the_login_after_timer_f() -> None:
    x = Exchange()
    x.engine_up = False
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
    assert x.run() == []
    events = x.advance(64 * 0.5)
    assert events == [RegistrationFailed("s1", 408, "the registrar did not answer", None)]
    assert len(x.requests) > 3  # retransmitted meanwhile (Timer E)


def test_a_failed_refresh_is_retried_and_recovers() -> None:
    x = Exchange(policy=RegistrarPolicy(max_expires=120))
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
    x.run()
    x.engine_up = False
    events = x.advance(60.0 + 32.0)
    [failed] = events
    assert isinstance(failed, RegistrationFailed) and failed.status == 408
    assert failed.retry_at == pytest.approx(x.now + RETRY_INTERVAL, abs=0.01)
    assert x.client.state("s1") is RegistrationState.RETRYING
    x.engine_up = True
    events = x.advance(RETRY_INTERVAL)
    assert events == [RegistrationSucceeded("s1", 120, refreshed=True)]
    assert x.client.state("s1") is RegistrationState.REGISTERED


def test_interval_too_brief_is_retried_once_with_min_expires() -> None:
    x = Exchange(policy=RegistrarPolicy(min_expires=600))
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now, expires=300)
    events = x.run()
    assert events == [RegistrationSucceeded("s1", 600, refreshed=False)]
    assert 423 in [r.status for r in x.responses]
    assert x.requests[-1].headers.get("Expires") == "600"


def test_the_client_reads_the_expiry_from_our_contact_and_refuses_a_200_without_it() -> None:
    x = Exchange()
    x.engine_up = False
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
    x.run()
    request = x.requests[-1]
    other = make_response(request, 200, extra=[("Contact", "<sip:other@192.0.2.9>;expires=99")])
    x.client.receive_response(other, ENGINE, x.now)
    [event] = x.client.take_events()
    assert event == RegistrationFailed(
        "s1", 500, "the registrar answered 200 without our contact", None
    )


def test_a_200_whose_expiry_cannot_be_read_fails_instead_of_hanging() -> None:
    x = Exchange()
    x.engine_up = False
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
    x.run()
    bad = make_response(
        x.requests[-1], 200, extra=[("Contact", "<sip:webrtc-s1@127.0.0.1:40000>;expires=soon")]
    )
    x.client.receive_response(bad, ENGINE, x.now)
    [event] = x.client.take_events()
    assert isinstance(event, RegistrationFailed) and event.retry_at is None
    assert event.reason.startswith("the registrar's 200 is malformed: ")
    assert x.client.registrations == {}


def test_refresh_delay_is_a_minute_early_or_half_way_for_short_expiries() -> None:
    assert refresh_delay(3600) == 3540
    assert refresh_delay(300) == 240
    assert refresh_delay(60) == 30
    assert refresh_delay(1) == 1.0


def test_register_refuses_what_cannot_be_a_sip_uri() -> None:
    x = Exchange()
    with pytest.raises(ValueError, match="expires must be 1-"):
        x.client.register("s1", "bob", "builder", "webrtc-s1", x.now, expires=0)
    x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
    with pytest.raises(ValueError, match="registration 's1' exists"):
        x.client.register("s1", "bob", "builder", "webrtc-s1", x.now)
