"""The SIP endpoint: one user agent (UAS for callers and registrations, UAC for the
engine's own calls) on top of the transaction layer, sans-IO.

Owns: turning malformed requests into the right response (or a silent drop), the
request checks of RFC 3261 §8.2 (method, URI scheme, Require, Accept, Content-Type),
overload control (503 + Retry-After), response routing (§18.2.2 with RFC 3581),
dialogs and calls (INVITE, ACK, CANCEL, BYE, re-INVITE, UPDATE, INFO, OPTIONS, REFER
hook), the registrar, and the UAC side with digest retry. It speaks SDP only as bytes:
offer/answer decisions belong to the caller of this class (see sip/sdp.py).

Interface (h11/aioquic style): `receive(data, peer, now)`; then `take_events()`,
`datagrams_to_send()`, `next_timer()`/`handle_timer(now)`. Application actions are
methods (`answer`, `reject`, `hangup`, `invite`, ...) that also take `now`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hotline.sip.addr import Peer
from hotline.sip.auth import DigestClient, DigestClientError
from hotline.sip.dialog import Dialog, DialogState
from hotline.sip.errors import ParseError
from hotline.sip.headers import Address, Via, parse_address, parse_media_type, parse_tokens
from hotline.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    parse_message,
)
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import Registrar, RegistrationChanged
from hotline.sip.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    TxEvent,
    TxState,
)
from hotline.sip.uri import AbsoluteURI, SipURI, parse_uri

log = logging.getLogger("hotline.sip")

KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "REFER",
    "NOTIFY", "PRACK", "SUBSCRIBE", "PUBLISH", "MESSAGE",
})
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE",
           "REFER", "NOTIFY")
ALLOW_HEADER = ", ".join(ALLOWED)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
ACCEPTED_BODIES = {
    "INVITE": ("application/sdp",),
    "ACK": ("application/sdp",),
    "UPDATE": ("application/sdp",),
    "INFO": ("application/dtmf-relay", "application/dtmf"),
    "NOTIFY": ("message/sipfrag",),
}
DTMF_SIGNALS = frozenset("0123456789*#ABCD")


class EndReason(Enum):
    REMOTE_BYE = "remote-bye"
    LOCAL_BYE = "local-bye"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NO_ACK = "no-ack"
    TIMEOUT = "timeout"
    FAILED = "failed"


class CallState(Enum):
    OFFERED = "offered"  # INVITE received, no final response yet
    CALLING = "calling"  # our INVITE sent, no final response yet
    ANSWERED = "answered"  # 2xx sent/received, waiting for ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(eq=False)
class Call:
    """One INVITE dialog as the application sees it."""

    id: str
    inbound: bool
    invite: Request
    peer: Peer  # where in-dialog requests go (symmetric with the INVITE's source)
    state: CallState
    dialog: Dialog | None = None
    invite_tx: ServerTransaction | None = None
    client_tx: ClientTransaction | None = None
    local_tag: str = ""
    local_sdp: bytes | None = None
    remote_sdp: bytes | None = None
    pending_modify: ServerTransaction | None = None
    credentials: tuple[str, str] | None = None
    digest: DigestClient | None = None  # one per call: nc continuity, wrong-password detection
    auth_tries: int = 0
    cancel_requested: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    app: object = None  # the engine's per-call object

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def remote_user(self) -> str:
        uri = self.invite.from_.uri if self.inbound else self.invite.to.uri
        return uri.user or "" if isinstance(uri, SipURI) else str(uri)

    @property
    def dialled(self) -> str:
        """The Request-URI user of an inbound call (the number dialled)."""
        uri = self.invite.uri
        return uri.user or "" if isinstance(uri, SipURI) else str(uri)


# -- events -----------------------------------------------------------------


@dataclass(frozen=True)
class CallOffered:
    """A new inbound INVITE: answer with `answer()`, `ring()` or `reject()`."""

    call: Call
    sdp: bytes | None


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK for our 2xx arrived (with the SDP answer if we offered in the 2xx)."""

    call: Call
    sdp: bytes | None


@dataclass(frozen=True)
class CallEnded:
    call: Call
    reason: EndReason
    status: int | None = None


@dataclass(frozen=True)
class SessionModified:
    """A re-INVITE or UPDATE inside the call: reply with `answer_modify()`."""

    call: Call
    method: str
    sdp: bytes | None


@dataclass(frozen=True)
class DtmfInfoReceived:
    call: Call
    digit: str
    duration_ms: int | None


@dataclass(frozen=True)
class ReferReceived:
    """A REFER inside a call; reply with `answer_refer()`."""

    call: Call
    refer_to: Address
    referred_by: str | None
    tx: ServerTransaction


@dataclass(frozen=True)
class OutboundProgress:
    call: Call
    status: int


@dataclass(frozen=True)
class OutboundAnswered:
    call: Call
    sdp: bytes | None


@dataclass(frozen=True)
class Registered:
    change: RegistrationChanged


Event = (
    CallOffered | CallConfirmed | CallEnded | SessionModified | DtmfInfoReceived
    | ReferReceived | OutboundProgress | OutboundAnswered | Registered
)


# -- configuration ------------------------------------------------------------


@dataclass
class EndpointConfig:
    local: dict[str, tuple[str, int]]  # transport → (advertised host, port)
    domain: str = "hotline.local"
    user_agent: str = "hotline/0.1"
    timers: Timers = field(default_factory=Timers)
    force_rport: bool = True
    mtu: int = 1300
    max_calls: int = 500
    max_cps: float = 200.0
    requests_per_source: tuple[float, float] = (200.0, 400.0)  # rate, burst
    register_per_source: tuple[float, float] = (5.0, 20.0)
    contact_user: str = "hotline"


class Endpoint:
    def __init__(
        self,
        config: EndpointConfig,
        random_bytes: Callable[[int], bytes],
        registrar: Registrar | None = None,
    ) -> None:
        self.config = config
        self.random_bytes = random_bytes
        self.layer = TransactionLayer(config.timers)
        self.registrar = registrar
        self.calls: dict[tuple[str, str], Call] = {}  # (Call-ID, local tag)
        self.draining = False
        self._events: list[Event] = []
        self._cps = RateLimiter(rate=config.max_cps, burst=max(1.0, config.max_cps))
        self._per_source = RateLimiter(*config.requests_per_source, max_keys=100_000)
        self._register_limit = RateLimiter(*config.register_per_source, max_keys=100_000)
        self.counters: dict[str, int] = {}
        self._cancel_target: ServerTransaction | None = None

    # -- plumbing ---------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.layer.datagrams_to_send()

    def next_timer(self) -> float | None:
        t = self.layer.next_timer()
        r = self.registrar.next_expiry() if self.registrar is not None else None
        if t is None or r is None:
            return t if r is None else r
        return min(t, r)

    def handle_timer(self, now: float) -> None:
        for ev in self.layer.handle_timer(now):
            self._on_tx_event(ev, now)
        if self.registrar is not None:
            for aor in self.registrar.expire(now):
                self._events.append(Registered(RegistrationChanged(aor, (), None)))

    def _token(self, n: int = 8) -> str:
        return base64.b32encode(self.random_bytes(n)).decode().rstrip("=").lower()

    def new_branch(self) -> str:
        return "z9hG4bK" + self._token(10)

    def _via(self, transport: str) -> str:
        host, port = self.config.local.get(transport) or next(iter(self.config.local.values()))
        return f"SIP/2.0/{transport.upper()} {_host(host)}:{port};branch={self.new_branch()};rport"

    def contact_for(self, transport: str) -> str:
        host, port = self.config.local.get(transport) or next(iter(self.config.local.values()))
        t = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{self.config.contact_user}@{_host(host)}:{port}{t}>"

    @property
    def active_calls(self) -> int:
        # `_end` removes a call from `calls`, so every call held is live.
        return len(self.calls)

    # -- inbound ----------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Handle one datagram or stream frame. Never raises on bad input."""
        self._count("messages_in")
        try:
            msg = parse_message(data, stream=peer.reliable)
        except ParseError as exc:
            self._count("parse_errors")
            self._reject_unparsed(exc, peer)
            return
        if isinstance(msg, Response):
            self._on_response(msg, peer, now)
        else:
            self._on_request(msg, peer, now)

    def _on_response(self, resp: Response, peer: Peer, now: float) -> None:
        if len(resp.vias) > 1:
            return  # §18.1.2: a response with more than one Via is not for us (bcast.dat)
        for ev in self.layer.receive_response(resp, peer, now):
            self._on_tx_event(ev, now)

    def _reject_unparsed(self, exc: ParseError, peer: Peer) -> None:
        req = exc.partial
        if exc.status is None or req is None or not req.headers.raw_values("Via"):
            log.debug("dropped malformed message from %s: %s", peer, exc.reason)
            return
        if req.method == "ACK":
            return
        resp = make_response(req, exc.status, _reason_for(exc.status, exc.reason))
        if exc.status == 505:
            resp.headers.add("Supported", "")
        self.layer.send_stateless(resp, self._reply_peer(req, peer, stateless=True))
        self._count(f"responses_{exc.status}")

    def _reply_peer(self, req: Request, peer: Peer, *, stateless: bool = False) -> Peer:
        """§18.2.2 and RFC 3581: where responses to `req` go. Stamps received/rport."""
        if peer.reliable:
            return peer
        try:
            via = req.top_via
        except ParseError:
            return peer
        if stateless:
            return peer if self.config.force_rport or via.port is None else Peer(
                peer.transport, peer.host, via.port)
        return self._stamp_via(req, via, peer)

    def _stamp_via(self, req: Request, via: Via, peer: Peer) -> Peer:
        changed = False
        if via.host.strip("[]").lower() != peer.host.lower():
            via.params.set("received", peer.host)
            changed = True
        if "rport" in via.params:
            via.params.set("rport", str(peer.port))
            changed = True
        if changed:
            vias = req.vias
            req.headers.remove("Via")
            for i, v in enumerate(vias):
                req.headers.insert(i, "Via", str(v))
            req.headers.store("via", vias)
        if self.config.force_rport or "rport" in via.params:
            return peer
        return Peer(peer.transport, peer.host, via.port or 5060)

    def _respond_stateless(self, req: Request, peer: Peer, status: int, reason: str | None = None,
                           extra: list[tuple[str, str]] | None = None) -> None:
        resp = make_response(req, status, reason, to_tag=self._token(), extra=extra)
        resp.headers.add("Server", self.config.user_agent)
        self.layer.send_stateless(resp, self._reply_peer(req, peer))
        self._count(f"responses_{status}")

    def _on_request(self, req: Request, peer: Peer, now: float) -> None:
        method = req.method
        if method != "ACK" and not self._per_source.allow(peer.host, now):
            self._count("rate_limited")
            if method == "INVITE" or method == "REGISTER":
                retry = max(1, int(self._per_source.retry_after(peer.host, now) + 0.999))
                self._respond_stateless(req, peer, 503, "Rate limited",
                                        [("Retry-After", str(retry))])
            return
        branch = req.top_via.branch
        if branch is not None and branch == "z9hG4bK":
            self._respond_stateless(req, peer, 400, "Branch has no transaction id")
            return
        reply_peer = self._reply_peer(req, peer)
        try:
            events = self.layer.receive_request(req, reply_peer, now)
        except ParseError as exc:
            self._respond_stateless(req, peer, exc.status or 400, _reason_for(exc.status or 400, exc.reason))
            return
        for ev in events:
            self._on_tx_event(ev, now)

    def _respond(self, tx: ServerTransaction, status: int, reason: str | None = None,
                 *, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                 content_type: str | None = None, to_tag: str | None = None,
                 contact: bool = False, now: float) -> Response:
        req = tx.request
        resp = make_response(req, status, reason, to_tag=to_tag or self._token(), extra=extra,
                             body=body, content_type=content_type)
        if contact:
            resp.headers.add("Contact", self.contact_for(tx.peer.transport))
        resp.headers.add("Server", self.config.user_agent)
        if status in (405, 501) or (req.method in ("INVITE", "OPTIONS") and status < 300):
            resp.headers.set("Allow", ALLOW_HEADER)
        self.layer.respond(tx, resp, now)
        self._count(f"responses_{status}")
        return resp

    def _validate(self, tx: ServerTransaction, now: float) -> bool:
        """RFC 3261 §8.2.1-§8.2.3; answers and returns False when the request fails."""
        req = tx.request
        method = req.method
        if method not in KNOWN_METHODS:
            self._respond(tx, 501, now=now)
            return False
        if req.cseq.method != method:
            self._respond(tx, 400, "CSeq method does not match the request method", now=now)
            return False
        if method not in ALLOWED:
            self._respond(tx, 405, now=now)
            return False
        uri = req.uri
        if isinstance(uri, AbsoluteURI):
            self._respond(tx, 416, now=now)
            return False
        if isinstance(uri, SipURI) and uri.headers:
            self._respond(tx, 400, "Request-URI must not carry headers", now=now)
            return False
        try:
            required = [t for v in req.headers.raw_values("Require")
                        for t in parse_tokens(v, "Require")]
            unsupported = [t for t in required if t.lower() not in SUPPORTED_EXTENSIONS]
            if unsupported and method not in ("CANCEL", "ACK"):
                self._respond(tx, 420, extra=[("Unsupported", ", ".join(unsupported))], now=now)
                return False
            accepted = ACCEPTED_BODIES.get(method, ())
            if method in ("INVITE", "UPDATE") and req.headers.raw_values("Accept"):
                ranges = [parse_media_type(v, "Accept") for raw in req.headers.raw_values("Accept")
                          for v in raw.split(",") if v.strip()]
                if ranges and not any(_matches(r.type, r.subtype, "application/sdp")
                                      for r in ranges):
                    self._respond(tx, 406, extra=[("Accept", "application/sdp")], now=now)
                    return False
            if req.body.strip() or req.headers.get("Content-Type"):
                ctype = req.headers.get("Content-Type")
                mime = parse_media_type(ctype).mime if ctype else "application/sdp"
                enc = req.headers.get("Content-Encoding")
                if (req.body and mime not in accepted and not (method == "INFO" and not req.body)
                        ) or (enc and enc.strip().lower() != "identity"):
                    self._respond(tx, 415, extra=[("Accept", ", ".join(accepted) or "application/sdp"),
                                                  ("Accept-Encoding", "identity")], now=now)
                    return False
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], now=now)
            return False
        return True

    def _on_tx_event(self, ev: TxEvent, now: float) -> None:
        if isinstance(ev, RequestReceived):
            self._on_new_request(ev.tx, now)
        elif isinstance(ev, AckReceived):
            self._on_ack(ev.request, now)
        elif isinstance(ev, CancelReceived):
            self._on_cancel(ev.invite_tx, now)
        elif isinstance(ev, ResponseReceived):
            self._on_client_response(ev.tx, ev.response, now)
        elif isinstance(ev, StrayResponse):
            self._on_stray(ev.response, ev.peer, now)
        elif isinstance(ev, AckTimedOut):
            call = self._call_for_tx(ev.tx)
            if call is not None and call.state is CallState.ANSWERED:
                self._bye(call, now)
                self._end(call, EndReason.NO_ACK)
        elif isinstance(ev, TransactionTimedOut | TransportFailed):
            tx = ev.tx
            if isinstance(tx, ClientTransaction):
                self._client_failed(tx, 408, now)

    def _on_new_request(self, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        target, self._cancel_target = self._cancel_target, None
        self._count(f"requests_{req.method}" if req.method in KNOWN_METHODS else "requests_other")
        if not self._validate(tx, now):
            return
        method = req.method
        if method == "CANCEL":
            # The layer reports CancelReceived just before a matched CANCEL's own
            # RequestReceived: _cancel_target is the INVITE this CANCEL found.
            self._respond(tx, 200 if target is not None else 481, now=now)
            if target is not None and not target.final_sent:
                call = self._call_for_tx(target)
                self._respond(target, 487, to_tag=call.local_tag if call else None, now=now)
                if call is not None:
                    self._end(call, EndReason.CANCELLED, 487)
            return
        if method == "OPTIONS":
            self._respond(tx, 200, extra=[("Accept", "application/sdp"),
                                          ("Accept-Encoding", "identity"),
                                          ("Accept-Language", "en"),
                                          ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS)))],
                          contact=True, now=now)
            return
        if method == "REGISTER":
            self._on_register(tx, now)
            return
        if req.to.tag is None:
            if method == "INVITE":
                self._on_invite(tx, now)
            elif method in ("BYE", "INFO", "UPDATE", "REFER", "NOTIFY"):
                self._respond(tx, 481, now=now)
            return
        call = self._call_for_request(req)
        if call is None or call.dialog is None:
            self._respond(tx, 481, now=now)
            return
        if not call.dialog.accept_remote_cseq(req):
            self._respond(tx, 500, "CSeq out of order", extra=[("Retry-After", "1")], now=now)
            return
        if method == "BYE":
            self._respond(tx, 200, to_tag=call.local_tag, now=now)
            if call.invite_tx is not None and call.state is CallState.OFFERED:
                self._respond(call.invite_tx, 487, to_tag=call.local_tag, now=now)
            self._end(call, EndReason.REMOTE_BYE)
        elif method in ("INVITE", "UPDATE"):
            if call.pending_modify is not None or (call.client_tx is not None
                                                    and call.client_tx.is_invite
                                                    and call.client_tx.state is TxState.CALLING
                                                    and call.state is not CallState.CALLING):
                self._respond(tx, 491, to_tag=call.local_tag, now=now)
                return
            call.dialog.refresh_target(req)
            call.pending_modify = tx
            self._events.append(SessionModified(call, method, req.body or None))
        elif method == "INFO":
            self._on_info(call, tx, now)
        elif method == "REFER":
            try:
                refer_to = parse_address(req.headers.get("Refer-To") or "", "Refer-To")
            except ParseError as exc:
                self._respond(tx, 400, exc.reason[:120], to_tag=call.local_tag, now=now)
                return
            self._events.append(ReferReceived(call, refer_to, req.headers.get("Referred-By"), tx))
        elif method == "NOTIFY":
            self._respond(tx, 200, to_tag=call.local_tag, now=now)
        else:
            self._respond(tx, 405, to_tag=call.local_tag, now=now)

    def _on_invite(self, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        if self.draining:
            self._respond(tx, 503, "Draining", extra=[("Retry-After", "30")], now=now)
            return
        if self.active_calls >= self.config.max_calls:
            self._count("overload_calls")
            self._respond(tx, 503, "Too many calls", extra=[("Retry-After", "5")], now=now)
            return
        if not self._cps.allow("invite", now):
            self._count("overload_cps")
            retry = max(1, int(self._cps.retry_after("invite", now) + 0.999))
            self._respond(tx, 503, "Call rate exceeded", extra=[("Retry-After", str(retry))],
                          now=now)
            return
        contacts = []
        try:
            contacts = [c for c in req.contacts if not c.wildcard]
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], now=now)
            return
        # RFC 2543 INVITEs may lack a Contact: the From URI is the remote target then.
        target = contacts[0].uri if contacts else req.from_.uri
        self._respond(tx, 100, now=now)
        local_tag = self._token()
        call = Call(
            id=f"{req.call_id}/{local_tag}", inbound=True, invite=req, peer=tx.peer,
            state=CallState.OFFERED, invite_tx=tx, local_tag=local_tag,
            remote_sdp=req.body or None,
        )
        call.dialog = Dialog.as_uas(req, local_tag, target)
        tx.user_data = call
        self.calls[(req.call_id, local_tag)] = call
        self._count("calls_offered")
        self._events.append(CallOffered(call, req.body or None))

    def _on_ack(self, ack: Request, now: float) -> None:
        call = self._call_for_request(ack)
        if call is None:
            return
        if call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            if call.dialog is not None:
                call.dialog.state = DialogState.CONFIRMED
            if ack.body:
                call.remote_sdp = ack.body
            self._events.append(CallConfirmed(call, ack.body or None))

    def _on_cancel(self, invite_tx: ServerTransaction, now: float) -> None:
        # The CANCEL's own RequestReceived follows at once; it answers 200 and then
        # ends the INVITE with 487 (§9.2).
        self._cancel_target = invite_tx

    def _on_info(self, call: Call, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        mime = req.content_type
        digit: str | None = None
        duration: int | None = None
        if req.body:
            text = req.body.decode("utf-8", "replace")
            if mime == "application/dtmf-relay":
                for line in text.splitlines():
                    k, _, v = line.partition("=")
                    k, v = k.strip().lower(), v.strip()
                    if k == "signal":
                        digit = v.upper()[:1] if v else None
                    elif k == "duration" and v.isdigit():
                        duration = int(v)
            elif mime == "application/dtmf":
                digit = text.strip().upper()[:1] or None
            if digit is None or digit not in DTMF_SIGNALS:
                self._respond(tx, 400, "Unrecognised DTMF signal", to_tag=call.local_tag, now=now)
                return
        self._respond(tx, 200, to_tag=call.local_tag, now=now)
        if digit is not None:
            self._count("dtmf_info")
            self._events.append(DtmfInfoReceived(call, digit, duration))

    def _on_register(self, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        if self.registrar is None:
            self._respond(tx, 405, now=now)
            return
        if not self._register_limit.allow(tx.peer.host, now):
            self._count("register_rate_limited")
            retry = max(1, int(self._register_limit.retry_after(tx.peer.host, now) + 0.999))
            self._respond(tx, 503, "Rate limited", extra=[("Retry-After", str(retry))], now=now)
            return
        resp, change = self.registrar.handle(req, now, source=tx.peer.host)
        resp.headers.add("Server", self.config.user_agent)
        if resp.to.tag is None:
            resp.headers.set("To", f"{req.headers.get('To')};tag={self._token()}")
        self.layer.respond(tx, resp, now)
        self._count(f"responses_{resp.status}")
        if change is not None:
            self._events.append(Registered(change))

    # -- lookups ----------------------------------------------------------------

    def _call_for_request(self, req: Request) -> Call | None:
        tag = req.to.tag
        if tag is None:
            return None
        call = self.calls.get((req.call_id, tag))
        if call is not None and call.state is not CallState.ENDED:
            return call
        return None

    def _call_for_tx(self, tx: ServerTransaction) -> Call | None:
        c = tx.user_data
        return c if isinstance(c, Call) else None

    def _end(self, call: Call, reason: EndReason, status: int | None = None) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        if call.dialog is not None:
            call.dialog.state = DialogState.TERMINATED
        self.calls.pop((call.call_id, call.local_tag), None)
        # A transaction that outlives the call still points at it (`user_data`, for its
        # late events); the call lets go of its transactions so no reference cycle keeps
        # an ended call's objects for the garbage collector to find.
        call.invite_tx = None
        call.client_tx = None
        call.pending_modify = None
        self._count(f"calls_ended_{reason.value}")
        self._events.append(CallEnded(call, reason, status))

    # -- application actions (UAS) ----------------------------------------------

    def ring(self, call: Call, now: float) -> None:
        if call.invite_tx is not None and call.state is CallState.OFFERED:
            self._respond(call.invite_tx, 180, to_tag=call.local_tag, contact=True, now=now)

    def answer(self, call: Call, sdp: bytes | None, now: float,
               extra: list[tuple[str, str]] | None = None) -> None:
        """Send 200 OK (with our SDP answer, or our offer if the INVITE had none)."""
        if call.state is not CallState.OFFERED or call.invite_tx is None:
            raise ValueError(f"call {call.id} is {call.state.value}: cannot answer")
        call.local_sdp = sdp
        self._respond(call.invite_tx, 200, to_tag=call.local_tag, contact=True,
                      body=sdp or b"", content_type="application/sdp" if sdp else None,
                      extra=[("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
                             *(extra or [])], now=now)
        call.state = CallState.ANSWERED
        if call.dialog is not None:
            call.dialog.state = DialogState.EARLY
        self._count("calls_answered")

    def reject(self, call: Call, status: int, now: float, reason: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> None:
        if call.state is not CallState.OFFERED or call.invite_tx is None:
            return
        self._respond(call.invite_tx, status, reason, to_tag=call.local_tag, extra=extra,
                      now=now)
        self._end(call, EndReason.REJECTED, status)

    def answer_modify(self, call: Call, status: int, sdp: bytes | None, now: float) -> None:
        tx = call.pending_modify
        if tx is None:
            raise ValueError("no re-INVITE/UPDATE is pending")
        call.pending_modify = None
        if status < 300 and sdp is not None:
            call.local_sdp = sdp
        self._respond(tx, status, to_tag=call.local_tag, contact=status < 300,
                      body=sdp or b"" if status < 300 else b"",
                      content_type="application/sdp" if status < 300 and sdp else None, now=now)

    def answer_refer(self, event: ReferReceived, status: int, now: float) -> None:
        self._respond(event.tx, status, to_tag=event.call.local_tag, now=now)

    def hangup(self, call: Call, now: float, headers: list[tuple[str, str]] | None = None) -> None:
        """End the call from our side: BYE, CANCEL or a final error, as its state needs."""
        if call.state is CallState.ENDED:
            return
        if call.inbound and call.state is CallState.OFFERED:
            self.reject(call, 480, now)
            return
        if not call.inbound and call.state is CallState.CALLING:
            self.cancel(call, now)
            return
        self._bye(call, now, headers)
        self._end(call, EndReason.LOCAL_BYE)

    def _bye(self, call: Call, now: float, headers: list[tuple[str, str]] | None = None) -> None:
        if call.dialog is None:
            return
        req = call.dialog.new_request("BYE", self._via(call.peer.transport))
        req.headers.add("User-Agent", self.config.user_agent)
        for k, v in headers or []:
            req.headers.add(k, v)
        tx = self.layer.send_request(req, call.peer, now)
        tx.user_data = None

    # -- UAC --------------------------------------------------------------------

    def invite(self, target: str, now: float, *, sdp: bytes | None,
               from_uri: str | None = None, display_name: str | None = None,
               peer: Peer | None = None, credentials: tuple[str, str] | None = None,
               headers: list[tuple[str, str]] | None = None, app: object = None) -> Call:
        """Place a call. `peer` is the next hop (defaults to the target's host:port)."""
        uri = parse_uri(target, "target")
        if not isinstance(uri, SipURI):
            raise ValueError(f"cannot call {target!r}: only sip/sips URIs")
        if peer is None:
            transport = uri.transport or "udp"
            peer = Peer(transport, uri.host_bare, uri.port or 5060)
        tag = self._token()
        frm = from_uri or f"sip:{self.config.contact_user}@{self.config.domain}"
        name = f'"{display_name}" ' if display_name else ""
        h = Headers()
        h.add("Via", self._via(peer.transport))
        h.add("Max-Forwards", "70")
        h.add("From", f"{name}<{frm}>;tag={tag}")
        h.add("To", f"<{target}>")
        h.add("Call-ID", f"{self._token(12)}@{self.config.domain}")
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self.contact_for(peer.transport))
        h.add("Allow", ALLOW_HEADER)
        h.add("User-Agent", self.config.user_agent)
        for k, v in headers or []:
            h.add(k, v)
        if sdp:
            h.add("Content-Type", "application/sdp")
        req = Request(h, sdp or b"", "INVITE", uri)
        if (peer.transport == "udp" and "tcp" in self.config.local
                and len(req.to_bytes()) > self.config.mtu):
            # RFC 3261 §18.1.1: a request larger than the MTU limit goes by TCP.
            peer = Peer("tcp", peer.host, peer.port)
            h.set("Via", self._via("tcp"))
            h.set("Contact", self.contact_for("tcp"))
        call = Call(id=f"{req.call_id}/{tag}", inbound=False, invite=req, peer=peer,
                    state=CallState.CALLING, local_tag=tag, local_sdp=sdp,
                    credentials=credentials, extra_headers=list(headers or []), app=app)
        self.calls[(req.call_id, tag)] = call
        call.client_tx = self.layer.send_request(req, peer, now)
        call.client_tx.user_data = call
        return call

    def cancel(self, call: Call, now: float) -> None:
        tx = call.client_tx
        if call.state is not CallState.CALLING or tx is None:
            return
        if tx.state is not TxState.PROCEEDING:
            call.cancel_requested = True  # §9.1: wait for a provisional response
            return
        inv = tx.request
        h = Headers()
        h.add("Via", inv.headers.raw_values("Via")[0])
        for r in inv.headers.raw_values("Route"):
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers.get("From") or "")
        h.add("To", inv.headers.get("To") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq.number} CANCEL")
        self.layer.send_request(Request(h, b"", "CANCEL", inv.uri), tx.peer, now)
        call.cancel_requested = False

    def _on_client_response(self, tx: ClientTransaction, resp: Response, now: float) -> None:
        call = tx.user_data
        if not isinstance(call, Call):
            return  # BYE/CANCEL/INFO responses need nothing further
        status = resp.status
        if status < 200:
            if call.cancel_requested:
                self.cancel(call, now)
            if status > 100:
                if call.dialog is None and resp.to.tag:
                    call.dialog = Dialog.as_uac(tx.request, resp)
                self._events.append(OutboundProgress(call, status))
            return
        if status < 300:
            self._on_2xx(call, resp, tx.peer, now)
            return
        if (status in (401, 407) and call.credentials is not None and call.auth_tries < 2
                and self._retry_with_auth(call, resp, now)):
            return
        self._end(call, EndReason.REJECTED if status != 487 else EndReason.CANCELLED, status)

    def _on_2xx(self, call: Call, resp: Response, peer: Peer, now: float) -> None:
        if call.dialog is None or call.dialog.remote_tag != (resp.to.tag or ""):
            call.dialog = Dialog.as_uac(call.invite, resp)
        call.dialog.state = DialogState.CONFIRMED
        call.dialog.refresh_target(resp)
        self._send_ack(call, now)
        if call.state is not CallState.CALLING:
            return  # a retransmitted 2xx: the ACK was all it needed
        if call.cancel_requested:
            call.state = CallState.CONFIRMED
            self._bye(call, now)
            self._end(call, EndReason.CANCELLED)
            return
        call.state = CallState.CONFIRMED
        call.remote_sdp = resp.body or None
        self._events.append(OutboundAnswered(call, resp.body or None))

    def _send_ack(self, call: Call, now: float) -> None:
        assert call.dialog is not None
        cseq = call.invite.cseq.number
        ack = call.dialog.new_request("ACK", self._via(call.peer.transport), cseq=cseq)
        self.layer.send_stateless(ack, call.peer)

    def _on_stray(self, resp: Response, peer: Peer, now: float) -> None:
        if resp.cseq.method != "INVITE" or not 200 <= resp.status < 300:
            return
        call = self.calls.get((resp.call_id, resp.from_.tag or ""))
        if call is not None and not call.inbound:
            self._on_2xx(call, resp, peer, now)

    def _retry_with_auth(self, call: Call, resp: Response, now: float) -> bool:
        assert call.credentials is not None
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenges = resp.headers.raw_values(header)
        if not challenges:
            return False
        if call.digest is None:
            user, password = call.credentials
            call.digest = DigestClient(user, password, random_bytes=self.random_bytes)
        client = call.digest
        inv = call.invite
        try:
            value = client.authorize(challenges, "INVITE", str(inv.uri))
        except DigestClientError as exc:
            log.info("call %s: giving up on authentication: %s", call.call_id, exc)
            return False
        call.auth_tries += 1
        h = inv.headers.copy()
        h.set("Via", self._via(call.peer.transport))
        h.set("CSeq", f"{inv.cseq.number + 1} INVITE")
        h.set("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        req = Request(h, inv.body, "INVITE", inv.uri)
        call.invite = req
        call.client_tx = self.layer.send_request(req, call.peer, now)
        call.client_tx.user_data = call
        return True

    def _client_failed(self, tx: ClientTransaction, status: int, now: float) -> None:
        call = tx.user_data
        if isinstance(call, Call) and call.state is CallState.CALLING:
            self._end(call, EndReason.TIMEOUT, status)

    # -- drain ------------------------------------------------------------------

    def start_drain(self) -> None:
        self.draining = True

    def hangup_all(self, now: float, headers: list[tuple[str, str]] | None = None) -> int:
        calls = [c for c in self.calls.values() if c.state is not CallState.ENDED]
        for c in calls:
            self.hangup(c, now, headers)
        return len(calls)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _matches(t: str, s: str, mime: str) -> bool:
    mt, _, ms = mime.partition("/")
    return (t == "*" or t.lower() == mt) and (s == "*" or s.lower() == ms)


def _reason_for(status: int, detail: str) -> str:
    from hotline.sip.message import reason_phrase

    base = reason_phrase(status)
    detail = "".join(c if 32 <= ord(c) < 127 else "?" for c in detail)[:100]
    return f"{base} ({detail})" if detail else base
