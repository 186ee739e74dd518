"""Agents in a web browser: a WebRTC ↔ SIP gateway that runs in the engine's process
and event loop but talks to the engine only as a softphone would — SIP over UDP and RTP,
on loopback by default.

The page (`static/agent.html`) opens a WebSocket here and logs in with the agent's phone
credentials; the gateway REGISTERs that user with the engine from its own UDP socket
(digest auth, refreshed before expiry, removed on logout or when the WebSocket closes)
with a Contact naming this session. A queued call offered to the agent arrives as an
INVITE with the X-Hotline-* screen pop: the gateway answers 180 and rings the page with
the screen pop; the agent accepts (with the browser's WebRTC offer, PCMU only), and once
the browser's leg is connected the gateway answers 200 OK with an SDP pointing at an RTP
socket of its own. Rejecting sends 603; the engine's CANCEL stops the ringing; BYE from
either side ends the call.

Media: the browser's decrypted RTP packets are taken at aiortc's receiver (its jitter
buffer and decoder are never fed) and forwarded to the engine's RTP address as our own
stream (`rtp_bridge.RtpRewriter`) — the engine's adaptive jitter buffer does the playout.
The engine's packets feed `rtp_bridge.Playout`, read every 20 ms by the outgoing aiortc
track. RTP is accepted only from the engine's host, SIP only from the engine's address.

Security: the page and the WebSocket are served by the engine's HTTP listener
(`add_routes`); the upgrade is refused from a foreign Origin; credentials travel only in
the login message and live in the session's digest client until it ends; login attempts
are limited per WebSocket and per address; messages are bounded (64 KiB) and rate
limited. Logs never carry a password or screen-pop values.

Owns: the gateway's SIP socket and its endpoint (UAS) and registration client, the agents'
sessions, each call's RTP sockets and aiortc peer connection. Must not know: the engine's
objects — nothing here imports hotline.engine; SIP rules live in hotline.sip, the call's
state machine in agent_call, the wire protocol in agent_protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from hotline import __version__
from hotline.rtp.packet import RtpError, parse_header
from hotline.sip.addr import Peer
from hotline.sip.endpoint import (
    Call,
    CallConfirmed,
    CallEnded,
    CallOffered,
    EndpointConfig,
    EndReason,
    Event,
    ReferReceived,
    SessionModified,
)
from hotline.sip.endpoint import (
    Endpoint as SipEndpoint,
)
from hotline.sip.errors import ParseError
from hotline.sip.message import Response, parse_message
from hotline.sip.sdp import Codec, MediaCapabilities, NegotiatedMedia
from hotline.sip.sdp_session import MediaSession, SdpRejected
from hotline.sip.transaction import Timers
from hotline.web.agent_call import Action, AgentCall, CallPhase, CallStateError, Input
from hotline.web.agent_protocol import (
    MAX_MESSAGE,
    Accept,
    ClientMessage,
    Hangup,
    Login,
    LoginThrottle,
    Logout,
    Mute,
    ProtocolError,
    Reject,
    ScreenPop,
    origin_allowed,
    parse_client_message,
    screen_pop,
)
from hotline.web.rtp_bridge import EngineAudioTrack, Playout, RtpRewriter
from hotline.web.sip_register import (
    RegistrationClient,
    RegistrationEnded,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationSucceeded,
)

__all__ = ["AgentSession", "CallLeg", "GatewayConfig", "WebRtcGateway"]

log = logging.getLogger("hotline.webrtc")

STATIC = Path(__file__).with_name("static")
ASSETS = {  # file → content type
    "agent.html": "text/html; charset=utf-8",
    "agent.js": "text/javascript; charset=utf-8",
    "agent.css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self' blob: mediastream:; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HEARTBEAT = 20.0  # seconds between WebSocket pings (a dead page is noticed within two)
OUTBOX_LIMIT = 256  # messages queued towards one page before it counts as stuck
MESSAGES_PER_SECOND = 20.0  # from one page, sustained ...
MESSAGE_BURST = 50  # ... and in a burst
STOP_GRACE = 2.0  # seconds `stop` waits for un-REGISTERs to be answered
RTP_PAIR_TRIES = 64  # binds tried to find an RTP port whose successor is free for RTCP
PCMU_MIME = "audio/pcmu"


@dataclass(frozen=True)
class GatewayConfig:
    """Where the engine's SIP listener is and how the gateway reaches it."""

    engine_host: str  # the engine's SIP UDP address (an IP literal)
    engine_port: int
    domain: str  # the engine's SIP domain: agents register sip:<user>@<domain>
    bind_host: str = "127.0.0.1"  # the gateway's own SIP and RTP address
    register_expires: int = 300  # seconds asked for each registration
    answer_timeout: float = 10.0  # seconds a browser's WebRTC leg has to connect
    path: str = "/agent"  # where the page, its assets and the WebSocket are served
    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        for what, host in (("engine_host", self.engine_host), ("bind_host", self.bind_host)):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{what} must be an IP address, found {host!r}") from None
        if not 1 <= self.engine_port <= 65535:
            raise ValueError(f"engine_port out of range 1-65535: {self.engine_port}")
        if not 60 <= self.register_expires <= 86400:
            raise ValueError(f"register_expires must be 60-86400 s: {self.register_expires}")
        if not self.answer_timeout > 0:
            raise ValueError(f"answer_timeout must be positive: {self.answer_timeout}")
        if not self.path.startswith("/") or self.path.endswith("/") or "{" in self.path:
            raise ValueError(f"path must start with / and not end with one: {self.path!r}")


class SessionPhase(Enum):
    ANONYMOUS = "logged out"
    LOGGING_IN = "logging in"
    REGISTERED = "logged in"
    LOGGING_OUT = "logging out"


@dataclass(eq=False)
class CallLeg:
    """One call offered to a browser agent: its SIP call, its state, its media."""

    id: str
    session: AgentSession
    call: Call
    state: AgentCall
    pop: ScreenPop
    sdp: MediaSession  # our side of the engine leg's offer/answer
    answer: bytes  # the SDP of our 200 OK
    rtp_sock: socket.socket
    rtcp_sock: socket.socket
    playout: Playout
    track: EngineAudioTrack
    rewriter: RtpRewriter
    rtp: asyncio.DatagramTransport | None = None
    rtcp: asyncio.DatagramTransport | None = None
    rtp_task: asyncio.Task[None] | None = None
    pc: RTCPeerConnection | None = None
    setup: asyncio.Task[None] | None = None
    timeout: asyncio.TimerHandle | None = None
    media_stopped: bool = False
    packets_from_engine: int = 0
    packets_to_engine: int = 0
    dropped: int = 0  # RTP from elsewhere, malformed, or of another payload type

    @property
    def media(self) -> NegotiatedMedia:
        assert self.sdp.media is not None
        return self.sdp.media


class AgentSession:
    """One WebSocket: at most one agent logged in, at most one call."""

    def __init__(
        self, gateway: WebRtcGateway, ws: web.WebSocketResponse, address: str, key: str
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.address = address
        self.key = key
        self.contact_user = f"webrtc-{key}"
        self.username: str | None = None
        self.phase = SessionPhase.ANONYMOUS
        self.leg: CallLeg | None = None
        self.closed = False
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_LIMIT)
        self.writer: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message for the page (dropped once the page is gone)."""
        if self.ws.closed or self.writer is None or self.writer.done():
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("webrtc: session %s is not reading its messages: closing it", self.key)
            self.gateway.spawn(
                self.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"too many unread messages"
                )
            )

    async def write(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                return


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: WebRtcGateway) -> None:
        self.gateway = gateway

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.gateway.on_sip_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("webrtc: SIP socket error: %s", exc)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: WebRtcGateway, leg: CallLeg) -> None:
        self.gateway = gateway
        self.leg = leg

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.gateway.on_rtp(self.leg, data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        log.debug("webrtc: RTP socket error: %s", exc)


class _Discard(asyncio.DatagramProtocol):
    """The RTCP port: bound so the engine's reports find a socket, then dropped."""


def bind_rtp_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on `host`, ports p and p+1 (RTP and RTCP, RFC 3550 §11)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(RTP_PAIR_TRIES):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port >= 65535:
                rtp.close()
                continue
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
                rtp.close()
                continue
        except OSError:
            rtp.close()
            raise
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    raise OSError(f"no free RTP/RTCP port pair on {host} after {RTP_PAIR_TRIES} tries")


class WebRtcGateway:
    """Start with `await start()` (binds the SIP socket), mount with `add_routes(app)`,
    end with `await stop()` (hangs up, un-REGISTERs, closes)."""

    def __init__(
        self, config: GatewayConfig, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.config = config
        self.random_bytes = random_bytes
        self.assets = {name: (STATIC / name).read_bytes() for name in ASSETS}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.endpoint: SipEndpoint | None = None
        self.registrations: RegistrationClient | None = None
        self.engine = Peer("udp", config.engine_host, config.engine_port)
        self.sessions: dict[str, AgentSession] = {}
        self.by_contact: dict[str, AgentSession] = {}
        self.throttle = LoginThrottle()
        self.counters: dict[str, int] = {}
        self._message_limit: dict[str, tuple[float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._pumping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sip_port = 0

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        cfg = self.config
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SipProtocol(self), local_addr=(cfg.bind_host, 0)
        )
        self.transport = transport
        self.sip_port = int(transport.get_extra_info("sockname")[1])
        self.endpoint = SipEndpoint(
            EndpointConfig(
                local={"udp": (cfg.bind_host, self.sip_port)},
                domain=cfg.domain,
                user_agent=f"hotline-webrtc/{__version__}",
                timers=cfg.timers,
                contact_user="webrtc",
                max_calls=10_000,
                max_cps=1000.0,
                requests_per_source=(10_000.0, 20_000.0),
            ),
            self.random_bytes,
        )
        self.registrations = RegistrationClient(
            registrar=self.engine,
            domain=cfg.domain,
            local=(cfg.bind_host, self.sip_port),
            random_bytes=self.random_bytes,
            timers=cfg.timers,
            user_agent=f"hotline-webrtc/{__version__}",
        )
        log.info(
            "webrtc gateway: SIP on udp:%s:%d, registering with %s, page at %s/",
            cfg.bind_host,
            self.sip_port,
            self.engine,
            cfg.path,
        )

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Hang up every call, un-REGISTER every agent (waiting up to `grace` seconds
        for the answers), close every page and socket."""
        if self.loop is None:
            return
        for session in list(self.sessions.values()):
            self.close_session(session, "the hotline is shutting down")
            self.spawn(
                session.ws.close(
                    code=WSCloseCode.GOING_AWAY, message=b"the hotline is shutting down"
                )
            )
        self._pump()
        deadline = self.loop.time() + grace
        while (
            self.registrations is not None
            and self.registrations.registrations
            and self.loop.time() < deadline
        ):
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.sessions.clear()
        self.by_contact.clear()
        self.loop = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` in the background; its failure is logged, never lost."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("webrtc: background task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _token(self, n: int = 8) -> str:
        return base64.b32encode(self.random_bytes(n)).decode().rstrip("=").lower()

    def _now(self) -> float:
        assert self.loop is not None, "the gateway is not started"
        return self.loop.time()

    # -- HTTP -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """The page at <path>/ (and <path> redirecting there), its assets, the WebSocket
        at <path>/ws."""
        path = self.config.path

        async def redirect(_request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(path + "/")

        async def page(_request: web.Request) -> web.StreamResponse:
            return self._asset("agent.html")

        async def script(_request: web.Request) -> web.StreamResponse:
            return self._asset("agent.js")

        async def style(_request: web.Request) -> web.StreamResponse:
            return self._asset("agent.css")

        app.router.add_get(path, redirect)
        app.router.add_get(path + "/", page)
        app.router.add_get(path + "/agent.js", script)
        app.router.add_get(path + "/agent.css", style)
        app.router.add_get(path + "/ws", self.websocket)

    def _asset(self, name: str) -> web.Response:
        return web.Response(
            body=self.assets[name], headers={"Content-Type": ASSETS[name], **PAGE_HEADERS}
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.loop is None:
            raise web.HTTPServiceUnavailable(text="the WebRTC gateway is not running\n")
        if not origin_allowed(request.headers.get("Origin"), request.host):
            self._count("ws_foreign_origin")
            raise web.HTTPForbidden(text="a WebSocket from another origin is refused\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT, compress=False)
        await ws.prepare(request)
        session = AgentSession(self, ws, request.remote or "unknown", self._token())
        session.writer = self.spawn(session.write())
        self.sessions[session.key] = session
        self._count("ws_opened")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.on_page_message(session, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    session.send(
                        {
                            "type": "error",
                            "message": "binary messages are not accepted: send JSON text",
                        }
                    )
                else:
                    break
        finally:
            self.close_session(session, "the page closed")
            self._pump()
        return ws

    # -- the page's messages --------------------------------------------------------------

    def _allow_message(self, session: AgentSession, now: float) -> bool:
        tokens, stamp = self._message_limit.get(session.key, (float(MESSAGE_BURST), now))
        tokens = min(float(MESSAGE_BURST), tokens + (now - stamp) * MESSAGES_PER_SECOND)
        if tokens < 1.0:
            self._message_limit[session.key] = (tokens, now)
            return False
        self._message_limit[session.key] = (tokens - 1.0, now)
        return True

    def on_page_message(self, session: AgentSession, text: str) -> None:
        """One message from the page: act on it, or tell the page why not."""
        now = self._now()
        if session.closed:
            return
        if not self._allow_message(session, now):
            self._count("ws_flooded")
            log.warning("webrtc: session %s sends too many messages: closing it", session.key)
            self.spawn(
                session.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
            )
            return
        try:
            message = parse_client_message(text)
            self._on_message(session, message, now)
        except (ProtocolError, CallStateError) as exc:
            session.send({"type": "error", "message": str(exc)})
        finally:
            self._pump()

    def _on_message(self, session: AgentSession, message: ClientMessage, now: float) -> None:
        if isinstance(message, Login):
            self._login(session, message, now)
        elif isinstance(message, Logout):
            self._logout(session, now)
        else:
            leg = session.leg
            if leg is None or leg.id != message.call:
                raise ProtocolError(f"there is no call {message.call}")
            if isinstance(message, Accept):
                self.apply(leg, Input.ACCEPT, offer=message.sdp)
            elif isinstance(message, Reject):
                self.apply(leg, Input.REJECT)
            elif isinstance(message, Hangup):
                self.apply(leg, Input.HANGUP)
            elif isinstance(message, Mute):
                self.apply(leg, Input.MUTE, muted=message.muted)

    def _login(self, session: AgentSession, message: Login, now: float) -> None:
        assert self.registrations is not None
        if session.phase is not SessionPhase.ANONYMOUS:
            raise ProtocolError(f"cannot log in: this session is {session.phase.value}")
        wait = self.throttle.attempt(session.key, session.address, now)
        if wait > 0:
            self._count("logins_throttled")
            session.send(
                {
                    "type": "login_failed",
                    "status": 429,
                    "reason": f"too many login attempts: try again in {int(wait) + 1} s",
                }
            )
            return
        session.username = message.username
        session.phase = SessionPhase.LOGGING_IN
        self.by_contact[session.contact_user] = session
        self.registrations.register(
            session.key,
            message.username,
            message.password,
            session.contact_user,
            now,
            expires=self.config.register_expires,
        )
        log.info("webrtc: %s logging in from %s", message.username, session.address)

    def _logout(self, session: AgentSession, now: float) -> None:
        assert self.registrations is not None
        if session.phase in (SessionPhase.ANONYMOUS, SessionPhase.LOGGING_OUT):
            raise ProtocolError(f"cannot log out: this session is {session.phase.value}")
        if session.leg is not None:
            self.apply(session.leg, Input.HANGUP, reason="the agent logged out")
        self.by_contact.pop(session.contact_user, None)
        session.phase = SessionPhase.LOGGING_OUT
        self.registrations.unregister(session.key, now)

    def close_session(self, session: AgentSession, reason: str) -> None:
        """The page is gone (or we are stopping): end its call, un-REGISTER, forget."""
        if session.closed:
            return
        session.closed = True
        self._message_limit.pop(session.key, None)
        if session.leg is not None:
            self.apply(session.leg, Input.HANGUP, reason=reason)
        try:
            session.outbox.put_nowait(None)  # the writer ends after what is queued
        except asyncio.QueueFull:
            if session.writer is not None:
                session.writer.cancel()
        self.by_contact.pop(session.contact_user, None)
        registrations = self.registrations
        if registrations is not None and session.key in registrations.registrations:
            session.phase = SessionPhase.LOGGING_OUT
            registrations.unregister(session.key, self._now())
            # the session is forgotten when RegistrationEnded comes
        else:
            self.sessions.pop(session.key, None)
        self._count("ws_closed")

    # -- SIP plumbing -------------------------------------------------------------------

    def on_sip_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram on the SIP socket: only the engine may talk to us."""
        endpoint, registrations = self.endpoint, self.registrations
        if endpoint is None or registrations is None or self.loop is None:
            return
        if not _same_host(addr[0], self.engine.host) or addr[1] != self.engine.port:
            self._count("sip_foreign_dropped")
            return
        now = self.loop.time()
        peer = Peer("udp", addr[0], addr[1])
        try:
            message = parse_message(data)
        except ParseError:
            message = None  # the endpoint answers (or drops) what cannot be parsed
        if isinstance(message, Response) and registrations.owns(message):
            registrations.receive_response(message, peer, now)
        else:
            endpoint.receive(data, peer, now)
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        if self.endpoint is None or self.registrations is None or self.loop is None:
            return
        now = self.loop.time()
        self.endpoint.handle_timer(now)
        self.registrations.handle_timer(now)
        self._pump()

    def _pump(self) -> None:
        """Act on the SIP cores' events until there are none, send what they produced,
        arm the one timer. Re-entrant calls return at once: the outer loop goes on."""
        endpoint, registrations = self.endpoint, self.registrations
        if self._pumping or endpoint is None or registrations is None or self.loop is None:
            return
        self._pumping = True
        try:
            while True:
                events = endpoint.take_events()
                reg_events = registrations.take_events()
                if not events and not reg_events:
                    break
                for event in events:
                    try:
                        self._on_sip_event(event)
                    except Exception:
                        log.exception("webrtc: handling %s failed", type(event).__name__)
                for reg_event in reg_events:
                    try:
                        self._on_registration_event(reg_event)
                    except Exception:
                        log.exception("webrtc: handling %s failed", type(reg_event).__name__)
            if self.transport is not None:
                for data, peer in endpoint.datagrams_to_send() + registrations.datagrams_to_send():
                    self.transport.sendto(data, (peer.host, peer.port))
            else:
                endpoint.datagrams_to_send()
                registrations.datagrams_to_send()
        finally:
            self._pumping = False
        due = [t for t in (endpoint.next_timer(), registrations.next_timer()) if t is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due:
            self._timer = self.loop.call_at(min(due), self._on_timer)

    def _on_registration_event(self, event: RegistrationEvent) -> None:
        session = self.sessions.get(str(event.key))
        if session is None:
            return
        if isinstance(event, RegistrationSucceeded):
            if session.phase is SessionPhase.LOGGING_IN:
                session.phase = SessionPhase.REGISTERED
                log.info("webrtc: %s registered (%d s)", session.username, event.expires)
                session.send(
                    {"type": "registered", "username": session.username, "expires": event.expires}
                )
            elif event.refreshed:
                log.debug(
                    "webrtc: %s registration refreshed (%d s)", session.username, event.expires
                )
        elif isinstance(event, RegistrationFailed):
            if event.retry_at is not None:
                retry = max(0, round(event.retry_at - self._now()))
                log.warning(
                    "webrtc: %s: refreshing the registration failed (%s); retrying in %d s",
                    session.username,
                    event.reason,
                    retry,
                )
                session.send(
                    {"type": "registration_failed", "reason": event.reason, "retry_in": retry}
                )
                return
            was = session.phase
            log.info(
                "webrtc: %s: %s failed: %s",
                session.username,
                "login" if was is SessionPhase.LOGGING_IN else "registration",
                event.reason,
            )
            self._forget_login(session)
            if was is SessionPhase.LOGGING_IN:
                session.send(
                    {"type": "login_failed", "status": event.status, "reason": event.reason}
                )
            else:
                session.send({"type": "logged_out", "reason": event.reason})
        elif isinstance(event, RegistrationEnded):
            log.info("webrtc: %s logged out", session.username)
            self._forget_login(session)
            session.send({"type": "logged_out", "reason": "logged out"})

    def _forget_login(self, session: AgentSession) -> None:
        if session.leg is not None:
            self.apply(session.leg, Input.HANGUP, reason="the registration ended")
        self.by_contact.pop(session.contact_user, None)
        session.username = None
        session.phase = SessionPhase.ANONYMOUS
        if session.closed:
            self.sessions.pop(session.key, None)

    def _on_sip_event(self, event: Event) -> None:
        assert self.endpoint is not None
        if isinstance(event, CallOffered):
            self._offered(event.call, event.sdp)
        elif isinstance(event, CallConfirmed):
            leg = _leg_of(event.call)
            if leg is not None:
                self._sip_input(leg, Input.ACK)
        elif isinstance(event, CallEnded):
            leg = _leg_of(event.call)
            if leg is not None and not leg.state.ended:
                reason = _END_REASONS.get(event.reason, "ended by the hotline")
                self._sip_input(leg, Input.REMOTE_END, reason)
        elif isinstance(event, SessionModified):
            self._modified(event)
        elif isinstance(event, ReferReceived):
            self.endpoint.answer_refer(event, 403, self._now())

    def _sip_input(self, leg: CallLeg, event: Input, reason: str | None = None) -> None:
        try:
            self.apply(leg, event, reason=reason)
        except CallStateError as exc:  # SIP news the phase does not take: nothing to do
            log.debug("webrtc: %s", exc)

    def _offered(self, call: Call, offer: bytes | None) -> None:
        assert self.endpoint is not None
        now = self._now()
        ep = self.endpoint
        session = self.by_contact.get(call.dialled)
        if session is None:
            ep.reject(call, 404, now)
            return
        if session.phase is not SessionPhase.REGISTERED or session.closed:
            ep.reject(call, 480, now)
            return
        if session.leg is not None:
            self._count("calls_busy")
            ep.reject(call, 486, now)
            return
        if offer is None:
            ep.reject(call, 488, now, reason="An SDP offer is required")
            return
        host = self.config.bind_host
        try:
            rtp_sock, rtcp_sock = bind_rtp_pair(host)
        except OSError as exc:
            log.error("webrtc: no RTP socket for a call to %s: %s", session.username, exc)
            ep.reject(call, 503, now, reason="No RTP port")
            return
        port = rtp_sock.getsockname()[1]
        sdp = MediaSession(host, port)
        sdp.caps = MediaCapabilities(host, port, codecs=(Codec.PCMU,), telephone_event=False)
        try:
            answer = sdp.answer_or_offer(offer)
        except SdpRejected as exc:
            rtp_sock.close()
            rtcp_sock.close()
            log.info("webrtc: refused a call to %s: %s", session.username, exc.reason)
            ep.reject(call, exc.status, now, reason=exc.reason[:80])
            return
        playout = Playout()
        seeds = self.random_bytes(10)
        leg = CallLeg(
            id="c" + self._token(5),
            session=session,
            call=call,
            state=AgentCall(""),
            pop=screen_pop(call.invite.headers, call.invite.from_.display_name),
            sdp=sdp,
            answer=answer,
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            playout=playout,
            track=EngineAudioTrack(playout),
            rewriter=RtpRewriter(
                int.from_bytes(seeds[:4], "big"),
                int.from_bytes(seeds[4:6], "big"),
                int.from_bytes(seeds[6:10], "big"),
            ),
        )
        leg.state.id = leg.id
        call.app = leg
        session.leg = leg
        ep.ring(call, now)
        leg.rtp_task = self.spawn(self._open_rtp(leg))
        self._count("calls_offered")
        log.info(
            "webrtc: call %s from queue %s ringing %s",
            leg.id,
            leg.pop.queue or "-",
            session.username,
        )
        session.send({"type": "ringing", "call": leg.id, **leg.pop.to_json()})

    def _modified(self, event: SessionModified) -> None:
        """A re-INVITE or UPDATE from the engine: answer it from our side of the SDP."""
        assert self.endpoint is not None
        now = self._now()
        leg = _leg_of(event.call)
        if leg is None or leg.state.ended:
            self.endpoint.answer_modify(event.call, 481, None, now)
            return
        try:
            body = leg.sdp.answer_or_offer(event.sdp)
        except SdpRejected as exc:
            self.endpoint.answer_modify(event.call, exc.status, None, now)
            return
        self.endpoint.answer_modify(event.call, 200, body, now)

    # -- the call's state machine, performed --------------------------------------------

    def apply(
        self,
        leg: CallLeg,
        event: Input,
        *,
        offer: str | None = None,
        muted: bool | None = None,
        reason: str | None = None,
    ) -> None:
        """Feed `event` to the call's state machine and perform its actions in order.
        `CallStateError` (an input the phase does not take) propagates."""
        assert self.endpoint is not None
        was_over = leg.state.ended
        actions = leg.state.handle(event, muted=muted, reason=reason)
        now = self._now()
        ep = self.endpoint
        for action in actions:
            if action is Action.START_MEDIA:
                assert offer is not None
                leg.setup = self.spawn(self._connect_browser(leg, offer))
            elif action is Action.SET_MUTE:
                leg.rewriter.muted = leg.state.muted
            elif action is Action.SIP_ANSWER:
                if leg.timeout is not None:
                    leg.timeout.cancel()
                    leg.timeout = None
                ep.answer(leg.call, leg.answer, now)
            elif action is Action.SIP_DECLINE:
                ep.reject(leg.call, 603, now)
            elif action is Action.SIP_UNAVAILABLE:
                ep.reject(leg.call, 480, now)
            elif action is Action.SIP_BYE:
                ep.hangup(leg.call, now)
            elif action is Action.STOP_MEDIA:
                self._stop_media(leg)
            elif action is Action.NOTIFY_CONNECTED:
                log.info("webrtc: call %s connected to %s", leg.id, leg.session.username)
                leg.session.send({"type": "connected", "call": leg.id})
            elif action is Action.NOTIFY_CANCELLED:
                leg.session.send(
                    {"type": "cancelled", "call": leg.id, "reason": leg.state.end_reason}
                )
            elif action is Action.NOTIFY_ENDED:
                leg.session.send({"type": "ended", "call": leg.id, "reason": leg.state.end_reason})
        if leg.state.ended and not was_over:
            if leg.session.leg is leg:
                leg.session.leg = None
            log.info(
                "webrtc: call %s to %s over (%s)",
                leg.id,
                leg.session.username,
                leg.state.end_reason,
            )
        self._pump()

    def _media_event(
        self, leg: CallLeg, pc: RTCPeerConnection, event: Input, reason: str | None = None
    ) -> None:
        """News from a WebRTC leg; stale news (of a replaced leg) and news a phase does
        not take (a reconnect while talking) are ignored."""
        if leg.pc is not pc:
            return
        if event is Input.MEDIA_FAILED and reason:
            log.info("webrtc: call %s: %s", leg.id, reason)
        with contextlib.suppress(CallStateError):
            self.apply(leg, event, reason=reason)

    async def _connect_browser(self, leg: CallLeg, offer: str) -> None:
        """Answer the browser's offer (PCMU only, our track sending the engine's audio,
        its packets taken at the receiver) and wait for the leg to connect."""
        pc = RTCPeerConnection()
        leg.pc = pc

        @pc.on("connectionstatechange")
        def changed() -> None:
            state = pc.connectionState
            if state == "connected":
                self._media_event(leg, pc, Input.MEDIA_READY)
            elif state == "failed":
                self._media_event(
                    leg, pc, Input.MEDIA_FAILED, "the browser's audio connection failed"
                )

        try:
            transceiver = pc.addTransceiver(leg.track, direction="sendrecv")
            pcmu = [
                c
                for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == PCMU_MIME
            ]
            transceiver.setCodecPreferences(pcmu)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            if transceiver.mid is None:
                raise ValueError("the offer has no audio")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            codecs = transceiver._codecs
            if (
                not codecs
                or codecs[0].mimeType.lower() != PCMU_MIME
                or codecs[0].payloadType is None
            ):
                raise ValueError("the offer has no PCMU (G.711 µ-law)")
            self._take_packets(leg, transceiver.receiver, codecs[0].payloadType)
            local = pc.localDescription
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            if "Failed to set remote audio description" in detail:
                detail = "the offer has no PCMU (G.711 µ-law)"
            self._media_event(
                leg, pc, Input.MEDIA_FAILED, f"the browser's offer was refused: {detail}"
            )
            return
        if leg.state.ended or leg.pc is not pc:
            return
        leg.session.send({"type": "answer", "call": leg.id, "sdp": local.sdp})
        if pc.connectionState == "connected":
            self._media_event(leg, pc, Input.MEDIA_READY)
        elif leg.state.phase is CallPhase.ACCEPTING:
            assert self.loop is not None
            leg.timeout = self.loop.call_later(
                self.config.answer_timeout,
                self._media_event,
                leg,
                pc,
                Input.MEDIA_FAILED,
                f"the browser's audio did not connect within {self.config.answer_timeout:g} s",
            )

    def _take_packets(self, leg: CallLeg, receiver: RTCRtpReceiver, payload_type: int) -> None:
        """Replace the receiver's packet handler: PCMU packets go to the engine as they
        come (never into aiortc's jitter buffer or decoder), anything else is dropped."""
        engine_leg = (leg.media.remote_address, leg.media.remote_port)

        async def forward(packet: AiortcRtpPacket, arrival_time_ms: int) -> None:
            transport = leg.rtp
            if (
                packet.payload_type != payload_type
                or transport is None
                or leg.state.phase not in (CallPhase.ANSWERED, CallPhase.CONFIRMED)
                or not leg.media.sends
            ):
                return
            data = leg.rewriter.rewrite(
                ssrc=packet.ssrc,
                sequence_number=packet.sequence_number,
                timestamp=packet.timestamp,
                payload=packet.payload,
                marker=bool(packet.marker),
            )
            transport.sendto(data, engine_leg)
            leg.packets_to_engine += 1

        setattr(receiver, "_handle_rtp_packet", forward)  # noqa: B010 - patching an instance

    async def _open_rtp(self, leg: CallLeg) -> None:
        assert self.loop is not None
        try:
            rtp, _ = await self.loop.create_datagram_endpoint(
                lambda: _RtpProtocol(self, leg), sock=leg.rtp_sock
            )
            rtcp, _ = await self.loop.create_datagram_endpoint(_Discard, sock=leg.rtcp_sock)
        except OSError as exc:
            log.error("webrtc: call %s: cannot use its RTP socket: %s", leg.id, exc)
            leg.rtp_sock.close()
            leg.rtcp_sock.close()
            if leg.state.phase is CallPhase.RINGING and self.endpoint is not None:
                self.endpoint.reject(leg.call, 503, self._now(), reason="No RTP port")
                self._sip_input(leg, Input.REMOTE_END, "no RTP socket")
            elif leg.pc is not None:
                self._media_event(leg, leg.pc, Input.MEDIA_FAILED, "no RTP socket")
            return
        if leg.media_stopped:
            rtp.close()
            rtcp.close()
            return
        leg.rtp = rtp
        leg.rtcp = rtcp

    def on_rtp(self, leg: CallLeg, data: bytes, host: str) -> None:
        """A packet on a call's RTP socket: the engine's audio for the browser."""
        media = leg.media
        if not (_same_host(host, media.remote_address) or _same_host(host, self.engine.host)):
            leg.dropped += 1
            return
        try:
            header = parse_header(data)
        except RtpError:
            leg.dropped += 1
            return
        if not any(
            pt == header.payload_type and codec is Codec.PCMU for pt, codec in media.receive_codecs
        ):
            leg.dropped += 1
            return
        leg.packets_from_engine += 1
        leg.playout.push(
            header.sequence_number, memoryview(data)[header.payload_start : header.payload_end]
        )

    def _stop_media(self, leg: CallLeg) -> None:
        if leg.media_stopped:
            return
        leg.media_stopped = True
        if leg.timeout is not None:
            leg.timeout.cancel()
            leg.timeout = None
        if (
            leg.setup is not None
            and not leg.setup.done()
            and leg.setup is not asyncio.current_task()
        ):
            leg.setup.cancel()
        leg.track.stop()
        if leg.pc is not None:
            pc, leg.pc = leg.pc, None
            self.spawn(pc.close())
        if leg.rtp is not None and leg.rtcp is not None:
            leg.rtp.close()
            leg.rtcp.close()
        elif leg.rtp_task is None or leg.rtp_task.done():
            leg.rtp_sock.close()
            leg.rtcp_sock.close()
        log.debug(
            "webrtc: call %s media: %d packets from the engine, %d to it, %d dropped, %d underruns",
            leg.id,
            leg.packets_from_engine,
            leg.packets_to_engine,
            leg.dropped,
            leg.playout.underruns,
        )


_END_REASONS = {
    EndReason.CANCELLED: "withdrawn by the hotline",
    EndReason.REMOTE_BYE: "ended by the hotline",
    EndReason.NO_ACK: "the hotline did not confirm the answer",
    EndReason.TIMEOUT: "the hotline stopped answering",
    EndReason.FAILED: "the hotline could not be reached",
}


def _leg_of(call: Call) -> CallLeg | None:
    return call.app if isinstance(call.app, CallLeg) else None


def _same_host(a: str, b: str) -> bool:
    """Two IP literals name the same address (IPv4-mapped IPv6 counts as IPv4)."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y
