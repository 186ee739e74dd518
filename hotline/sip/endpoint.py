"""The SIP endpoint: one user agent (UAS for callers and registrations, UAC for the
engine's own calls) on top of the transaction layer, sans-IO.

Owns: turning malformed requests into the right response (or a silent drop), the
request checks of RFC 3261 §8.2 (method, URI scheme, Require, Accept, Content-Type),
overload control (503 + Retry-After), response routing (§18.2.2 with RFC 3581),
dialogs and calls (INVITE, ACK, CANCEL, BYE, re-INVITE, UPDATE, INFO, OPTIONS), our own
re-INVITE (`modify`, with its 491 glare rule), transfer (REFER in and out, RFC 3515, with
the implicit subscription's NOTIFYs and RFC 3891 Replaces), the registrar, presence
(RFC 3856: PUBLISH per RFC 3903 and SUBSCRIBE/NOTIFY per RFC 6665, both ways; the state
lives in sip/events.py), and the UAC side with digest retry. It speaks SDP and PIDF only
as bytes: offer/answer decisions belong to the caller of this class (see sip/sdp.py),
presence documents to hotline.acd.presence.

Interface (h11/aioquic style): `receive(data, peer, now)`; then `take_events()`,
`datagrams_to_send()`, `next_timer()`/`handle_timer(now)`. Application actions are
methods (`answer`, `reject`, `hangup`, `invite`, ...) that also take `now`.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hotline.sip.addr import Peer
from hotline.sip.auth import DigestClient, DigestClientError
from hotline.sip.dialog import Dialog, DialogState, Role
from hotline.sip.errors import ParseError
from hotline.sip.events import (
    PIDF,
    PRESENCE,
    REFER,
    SIPFRAG,
    SUBSCRIBABLE,
    EventHeader,
    IntervalTooBrief,
    PresencePolicy,
    PublicationTable,
    Subscription,
    SubscriptionEndReason,
    SubscriptionRole,
    SubscriptionState,
    SubscriptionTable,
    SubscriptionTimer,
    parse_event,
    parse_sipfrag_status,
    parse_subscription_state,
    refresh_time,
    sipfrag,
)
from hotline.sip.grammar import is_token as _is_token
from hotline.sip.headers import (
    MAX_CSEQ,
    Address,
    Via,
    media_range_matches,
    parse_address,
    parse_delta_seconds,
    parse_media_type,
    parse_tokens,
)
from hotline.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    parse_message,
    reason_phrase,
)
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import Authenticator, Registrar, RegistrationChanged
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
from hotline.sip.uri import URI, AbsoluteURI, SipURI, parse_uri

log = logging.getLogger("hotline.sip")

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "REFER",
        "NOTIFY",
        "PRACK",
        "SUBSCRIBE",
        "PUBLISH",
        "MESSAGE",
    }
)
ALLOWED = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "PUBLISH",
)
# Served only by an endpoint given a PresencePolicy; without one they get 405 and are
# left out of its Allow header (`Endpoint.allowed`).
PRESENCE_METHODS = frozenset({"SUBSCRIBE", "PUBLISH"})
ALLOW_HEADER = ", ".join(ALLOWED)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
ACCEPTED_BODIES = {
    "INVITE": ("application/sdp",),
    "ACK": ("application/sdp",),
    "UPDATE": ("application/sdp",),
    "INFO": ("application/dtmf-relay", "application/dtmf"),
    "NOTIFY": (SIPFRAG, PIDF),
    "PUBLISH": (PIDF,),
}
# Responses to a NOTIFY that mean the watcher has dropped the subscription (RFC 6665
# §4.2.2): the notifier must remove it.
NOTIFY_FATAL = frozenset({404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604})
REFER_NOTIFY_EXPIRES = 60  # seconds, in the Subscription-State of our refer NOTIFYs
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
    cancel_sent: bool = False  # one CANCEL per INVITE (the layer gives it up 64·T1 on)
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    app: object = None  # the engine's per-call object
    modify_tx: ClientTransaction | None = None  # our re-INVITE, until its final response
    modify_ack: Request | None = None  # the ACK for our last re-INVITE's 2xx
    refer_tx: ClientTransaction | None = None  # our REFER, until its final response
    refer_id: int | None = None  # CSeq of our REFER whose NOTIFYs are followed
    refer_deadline: float | None = None  # when that refer subscription is given up
    refer_received: int | None = None  # CSeq of the peer's REFER, for notify_refer

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


@dataclass(frozen=True)
class ModifyAnswered:
    """The final response to our re-INVITE (`modify`). On a 2xx the ACK is sent and
    `call.local_sdp`/`remote_sdp` hold the new offer/answer; `sdp` is the answer. A 491
    is glare: the caller may retry (RFC 3261 §14.1: after 2.1-4 s if it placed the call,
    0-2 s otherwise). 408 (no answer in time; 503 if the transport failed) and 481 mean
    the dialog is gone (RFC 3261 §14.1): hang up."""

    call: Call
    status: int
    sdp: bytes | None


@dataclass(frozen=True)
class ReferAnswered:
    """The final response to our REFER (`refer`): 202 (or 200) accepted, else refused
    (408: no answer in time, 503: the transport failed)."""

    call: Call
    status: int


@dataclass(frozen=True)
class ReferProgress:
    """A NOTIFY of the REFER's implicit subscription: `status` is the sipfrag status
    of the referred request (100, 180, 200, 486...); `final` once the subscription is
    terminated. 408 with `final` is reported when the notifier falls silent."""

    call: Call
    status: int
    final: bool


@dataclass(frozen=True)
class PresencePublished:
    """A PUBLISH created, refreshed or modified a publication of `entity` (an AOR,
    ``sip:user@host``). `expires` is the absolute time (the `now` clock) it lapses at;
    `previous_etag` names the publication this one replaces (refresh/modify), None for
    an initial one. Live publications: `Endpoint.publications.live(entity, now)`."""

    entity: str
    body: bytes
    etag: str
    expires: float
    previous_etag: str | None = None


@dataclass(frozen=True)
class PresenceRemoved:
    """A publication ended: removed by PUBLISH Expires: 0, or lapsed (`expired`)."""

    entity: str
    etag: str
    expired: bool = False


@dataclass(frozen=True)
class SubscriptionRequested:
    """Someone subscribed to `subscription.entity` (already answered 200): send its
    first NOTIFY now with `Endpoint.notify`, and again whenever the state changes."""

    subscription: Subscription


@dataclass(frozen=True)
class SubscriptionEnded:
    """A subscription ended, on either side; it gets no further event. On the notifier
    side the endpoint has already sent the final NOTIFY (terminated, with the last body
    sent), except after a NOTIFY failure. `status` is the SIP status that ended it
    (REJECTED, FAILED); `detail` the reason of a terminated Subscription-State."""

    subscription: Subscription
    reason: SubscriptionEndReason
    status: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class PresenceNotified:
    """A NOTIFY for one of our subscriptions (`subscribe`): `state` is its
    Subscription-State value (active, pending, terminated)."""

    subscription: Subscription
    body: bytes
    state: str


Event = (
    CallOffered
    | CallConfirmed
    | CallEnded
    | SessionModified
    | DtmfInfoReceived
    | ReferReceived
    | OutboundProgress
    | OutboundAnswered
    | Registered
    | ModifyAnswered
    | ReferAnswered
    | ReferProgress
    | PresencePublished
    | PresenceRemoved
    | SubscriptionRequested
    | SubscriptionEnded
    | PresenceNotified
)


# -- client transactions' context (ClientTransaction.user_data) ----------------


@dataclass(eq=False)
class _ModifyOp:
    call: Call
    sdp: bytes
    auth_tries: int = 0
    answered: bool = False


@dataclass(eq=False)
class _ReferOp:
    call: Call
    auth_tries: int = 0


@dataclass(eq=False)
class _SubIO:
    """What the endpoint keeps for a subscription beside the pure state of events.py."""

    request: Request | None = None  # subscriber: the last SUBSCRIBE sent
    credentials: tuple[str, str] | None = None
    digest: DigestClient | None = None
    requested: int = 0  # subscriber: the interval asked for
    notify_tx: ClientTransaction | None = None  # notifier: the NOTIFY in progress
    # notifier: the NOTIFY waiting for that one (body, content type, terminate reason)
    queued: tuple[bytes | None, str | None, str | None] | None = None
    unsubscribe_pending: bool = False  # subscriber: unsubscribe once the dialog exists


@dataclass(eq=False)
class _SubscribeOp:
    sub: Subscription
    io: _SubIO
    expires: int
    initial: bool
    auth_tries: int = 0
    retried_423: bool = False


@dataclass(eq=False)
class _NotifyOp:
    sub: Subscription
    io: _SubIO


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
    """`presence` turns the presence server on (PUBLISH and SUBSCRIBE are answered,
    not 405); `publish_auth` (a DigestAuthenticator, as the registrar's) then challenges
    every PUBLISH and SUBSCRIBE. Subscribing to others (`subscribe`) needs neither."""

    def __init__(
        self,
        config: EndpointConfig,
        random_bytes: Callable[[int], bytes],
        registrar: Registrar | None = None,
        *,
        presence: PresencePolicy | None = None,
        publish_auth: Authenticator | None = None,
    ) -> None:
        if publish_auth is not None and presence is None:
            raise ValueError(
                "publish_auth authenticates PUBLISH and SUBSCRIBE: it needs a presence policy"
            )
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
        self.presence = presence
        self.publish_auth = publish_auth
        self.allowed: tuple[str, ...] = (
            ALLOWED
            if presence is not None
            else tuple(m for m in ALLOWED if m not in PRESENCE_METHODS)
        )
        self.allow_header = ", ".join(self.allowed)
        self.allow_events = f"{PRESENCE}, {REFER}" if presence is not None else REFER
        policy = presence or PresencePolicy()
        self.publications = PublicationTable(policy.publish, self._token, policy.max_publications)
        self.subscriptions = SubscriptionTable(policy.max_subscriptions)
        self._sub_io: dict[str, _SubIO] = {}
        self._call_timers: list[tuple[float, int, Call]] = []
        self._timer_seq = itertools.count()

    # -- plumbing ---------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.layer.datagrams_to_send()

    def next_timer(self) -> float | None:
        due = [
            t
            for t in (
                self.layer.next_timer(),
                self.registrar.next_expiry() if self.registrar is not None else None,
                self.publications.next_expiry(),
                self.subscriptions.next_deadline(),
                self._next_call_timer(),
            )
            if t is not None
        ]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        for ev in self.layer.handle_timer(now):
            self._on_tx_event(ev, now)
        if self.registrar is not None:
            for aor in self.registrar.expire(now):
                self._events.append(Registered(RegistrationChanged(aor, (), None)))
        self._expire_publications(now)
        for sub, kind in self.subscriptions.due(now):
            self._on_sub_timer(sub, kind, now)
        self._run_call_timers(now)

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
            try:
                self._on_tx_event(ev, now)
            except ParseError as exc:
                # A header only the handler parses (Contact, Expires...) is malformed.
                self._count("parse_errors")
                log.info("dropped a %d response from %s: %s", resp.status, peer, exc.reason)

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
            return (
                peer
                if self.config.force_rport or via.port is None
                else Peer(peer.transport, peer.host, via.port)
            )
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

    def _respond_stateless(
        self,
        req: Request,
        peer: Peer,
        status: int,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
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
                self._respond_stateless(
                    req, peer, 503, "Rate limited", [("Retry-After", str(retry))]
                )
            return
        branch = req.top_via.branch
        if branch is not None and branch == "z9hG4bK":
            self._respond_stateless(req, peer, 400, "Branch has no transaction id")
            return
        reply_peer = self._reply_peer(req, peer)
        try:
            events = self.layer.receive_request(req, reply_peer, now)
        except ParseError as exc:
            self._respond_stateless(
                req, peer, exc.status or 400, _reason_for(exc.status or 400, exc.reason)
            )
            return
        for ev in events:
            try:
                self._on_tx_event(ev, now)
            except ParseError as exc:
                # A header only the handler parses is malformed: 400 if still unanswered.
                self._count("parse_errors")
                if (
                    isinstance(ev, RequestReceived)
                    and not ev.tx.final_sent
                    and ev.tx.state is not TxState.TERMINATED
                ):
                    self._respond(ev.tx, 400, _reason_for(400, exc.reason), now=now)

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
        contact: bool = False,
        now: float,
    ) -> Response:
        req = tx.request
        resp = make_response(
            req,
            status,
            reason,
            to_tag=to_tag or self._token(),
            extra=extra,
            body=body,
            content_type=content_type,
        )
        if contact:
            resp.headers.add("Contact", self.contact_for(tx.peer.transport))
        resp.headers.add("Server", self.config.user_agent)
        if status in (405, 501) or (req.method in ("INVITE", "OPTIONS") and status < 300):
            resp.headers.set("Allow", self.allow_header)
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
        if method not in self.allowed:
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
            required = [
                t for v in req.headers.raw_values("Require") for t in parse_tokens(v, "Require")
            ]
            unsupported = [t for t in required if t.lower() not in SUPPORTED_EXTENSIONS]
            if unsupported and method not in ("CANCEL", "ACK"):
                self._respond(tx, 420, extra=[("Unsupported", ", ".join(unsupported))], now=now)
                return False
            accepted = ACCEPTED_BODIES.get(method, ())
            if method in ("INVITE", "UPDATE") and req.headers.raw_values("Accept"):
                ranges = [
                    parse_media_type(v, "Accept")
                    for raw in req.headers.raw_values("Accept")
                    for v in raw.split(",")
                    if v.strip()
                ]
                if ranges and not any(
                    _matches(r.type, r.subtype, "application/sdp") for r in ranges
                ):
                    self._respond(tx, 406, extra=[("Accept", "application/sdp")], now=now)
                    return False
            if req.body.strip() or req.headers.get("Content-Type"):
                ctype = req.headers.get("Content-Type")
                mime = parse_media_type(ctype).mime if ctype else "application/sdp"
                enc = req.headers.get("Content-Encoding")
                if (
                    req.body and mime not in accepted and not (method == "INFO" and not req.body)
                ) or (enc and enc.strip().lower() != "identity"):
                    self._respond(
                        tx,
                        415,
                        extra=[
                            ("Accept", ", ".join(accepted) or "application/sdp"),
                            ("Accept-Encoding", "identity"),
                        ],
                        now=now,
                    )
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
                # RFC 3261 §8.1.3.1: a transport failure counts as 503, a timeout as 408.
                self._client_failed(tx, 408 if isinstance(ev, TransactionTimedOut) else 503, now)

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
            self._respond(
                tx,
                200,
                extra=[
                    ("Accept", "application/sdp"),
                    ("Accept-Encoding", "identity"),
                    ("Accept-Language", "en"),
                    ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
                    ("Allow-Events", self.allow_events),
                ],
                contact=True,
                now=now,
            )
            return
        if method == "REGISTER":
            self._on_register(tx, now)
            return
        if method == "PUBLISH":
            self._on_publish(tx, now)  # never inside a dialog (RFC 3903 §4)
            return
        if req.to.tag is None:
            if method == "INVITE":
                self._on_invite(tx, now)
            elif method == "SUBSCRIBE":
                self._on_subscribe(tx, now)
            elif method in ("BYE", "INFO", "UPDATE", "REFER", "NOTIFY"):
                self._respond(tx, 481, now=now)
            return
        call = self._call_for_request(req)
        if call is None or call.dialog is None:
            sub = self.subscriptions.get(req.call_id, req.to.tag)
            if sub is not None:
                self._on_subscription_request(sub, tx, now)
            else:
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
            # §14.2 / RFC 3311 §5.2: glare with an offer of ours still unanswered.
            if (
                call.pending_modify is not None
                or call.modify_tx is not None
                or (
                    call.client_tx is not None
                    and call.client_tx.is_invite
                    and call.client_tx.state is TxState.CALLING
                    and call.state is not CallState.CALLING
                )
            ):
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
            call.refer_received = req.cseq.number
            self._events.append(ReferReceived(call, refer_to, req.headers.get("Referred-By"), tx))
        elif method == "NOTIFY":
            self._on_call_notify(call, tx, now)
        elif method == "SUBSCRIBE":
            self._respond(
                tx,
                403,
                "SUBSCRIBE inside an INVITE dialog is not supported",
                to_tag=call.local_tag,
                now=now,
            )
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
            self._respond(
                tx, 503, "Call rate exceeded", extra=[("Retry-After", str(retry))], now=now
            )
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
            id=f"{req.call_id}/{local_tag}",
            inbound=True,
            invite=req,
            peer=tx.peer,
            state=CallState.OFFERED,
            invite_tx=tx,
            local_tag=local_tag,
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
        call.modify_tx = None
        call.refer_tx = None
        call.refer_id = None
        call.refer_deadline = None
        call.refer_received = None
        self._count(f"calls_ended_{reason.value}")
        self._events.append(CallEnded(call, reason, status))

    # -- application actions (UAS) ----------------------------------------------

    def ring(self, call: Call, now: float) -> None:
        if call.invite_tx is not None and call.state is CallState.OFFERED:
            self._respond(call.invite_tx, 180, to_tag=call.local_tag, contact=True, now=now)

    def answer(
        self, call: Call, sdp: bytes | None, now: float, extra: list[tuple[str, str]] | None = None
    ) -> None:
        """Send 200 OK (with our SDP answer, or our offer if the INVITE had none)."""
        if call.state is not CallState.OFFERED or call.invite_tx is None:
            raise ValueError(f"call {call.id} is {call.state.value}: cannot answer")
        call.local_sdp = sdp
        self._respond(
            call.invite_tx,
            200,
            to_tag=call.local_tag,
            contact=True,
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
            extra=[("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))), *(extra or [])],
            now=now,
        )
        call.state = CallState.ANSWERED
        if call.dialog is not None:
            call.dialog.state = DialogState.EARLY
        self._count("calls_answered")

    def reject(
        self,
        call: Call,
        status: int,
        now: float,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        if call.state is not CallState.OFFERED or call.invite_tx is None:
            return
        self._respond(call.invite_tx, status, reason, to_tag=call.local_tag, extra=extra, now=now)
        self._end(call, EndReason.REJECTED, status)

    def answer_modify(self, call: Call, status: int, sdp: bytes | None, now: float) -> None:
        tx = call.pending_modify
        if tx is None:
            raise ValueError("no re-INVITE/UPDATE is pending")
        call.pending_modify = None
        if status < 300 and sdp is not None:
            call.local_sdp = sdp
        self._respond(
            tx,
            status,
            to_tag=call.local_tag,
            contact=status < 300,
            body=sdp or b"" if status < 300 else b"",
            content_type="application/sdp" if status < 300 and sdp else None,
            now=now,
        )

    def answer_refer(self, event: ReferReceived, status: int, now: float) -> None:
        """Answer a REFER (202 to accept it, then report with `notify_refer`)."""
        call = event.call
        if status >= 300 and call.refer_received == event.tx.request.cseq.number:
            call.refer_received = None
        self._respond(event.tx, status, to_tag=call.local_tag, now=now)

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

    def invite(
        self,
        target: str,
        now: float,
        *,
        sdp: bytes | None,
        from_uri: str | None = None,
        display_name: str | None = None,
        peer: Peer | None = None,
        credentials: tuple[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        app: object = None,
    ) -> Call:
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
        h.add("Allow", self.allow_header)
        h.add("User-Agent", self.config.user_agent)
        for k, v in headers or []:
            h.add(k, v)
        if sdp:
            h.add("Content-Type", "application/sdp")
        req = Request(h, sdp or b"", "INVITE", uri)
        if (
            peer.transport == "udp"
            and "tcp" in self.config.local
            and len(req.to_bytes()) > self.config.mtu
        ):
            # RFC 3261 §18.1.1: a request larger than the MTU limit goes by TCP.
            peer = Peer("tcp", peer.host, peer.port)
            h.set("Via", self._via("tcp"))
            h.set("Contact", self.contact_for("tcp"))
        call = Call(
            id=f"{req.call_id}/{tag}",
            inbound=False,
            invite=req,
            peer=peer,
            state=CallState.CALLING,
            local_tag=tag,
            local_sdp=sdp,
            credentials=credentials,
            extra_headers=list(headers or []),
            app=app,
        )
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
        if call.cancel_sent:
            return  # one CANCEL per INVITE (same branch): the layer retransmits it
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
        call.cancel_sent = True

    def _on_client_response(self, tx: ClientTransaction, resp: Response, now: float) -> None:
        call = tx.user_data
        if isinstance(call, _ModifyOp):
            self._on_modify_response(call, tx, resp, now)
            return
        if isinstance(call, _ReferOp):
            self._on_refer_response(call, tx, resp, now)
            return
        if isinstance(call, _SubscribeOp):
            self._on_subscribe_response(call, tx, resp, now)
            return
        if isinstance(call, _NotifyOp):
            self._on_notify_response(call, tx, resp, now)
            return
        if not isinstance(call, Call):
            return  # BYE/CANCEL/INFO responses need nothing further
        status = resp.status
        if status >= 200 and status not in (401, 407) and call.digest is not None:
            call.digest.succeeded()  # so a later challenge (re-INVITE, REFER) is answered
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
        if (
            status in (401, 407)
            and call.credentials is not None
            and call.auth_tries < 2
            and self._retry_with_auth(call, resp, now)
        ):
            return
        self._end(call, EndReason.REJECTED if status != 487 else EndReason.CANCELLED, status)

    def _on_2xx(self, call: Call, resp: Response, peer: Peer, now: float) -> None:
        if call.dialog is None or call.dialog.remote_tag != (resp.to.tag or ""):
            call.dialog = Dialog.as_uac(call.invite, resp)
        call.dialog.state = DialogState.CONFIRMED
        _refresh_target(call.dialog, resp)
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
        if call is None:
            return
        ack = call.modify_ack
        if ack is not None and ack.cseq.number == resp.cseq.number:
            # Our re-INVITE's 2xx again after its transaction ended: ACK it again.
            self.layer.send_stateless(ack, call.peer)
            return
        if not call.inbound and resp.cseq.number == call.invite.cseq.number:
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
            self._end(call, EndReason.TIMEOUT, 408)
        elif isinstance(call, _ModifyOp):
            self._modify_failed(call, tx, status)
        elif isinstance(call, _ReferOp):
            self._refer_final(call, tx, status, now)
        elif isinstance(call, _SubscribeOp):
            self._subscribe_failed(call, tx, status, now)
        elif isinstance(call, _NotifyOp):
            self._notify_failed(call, tx, status, now)

    def _call_digest(self, call: Call) -> DigestClient | None:
        if call.credentials is None:
            return None
        if call.digest is None:
            user, password = call.credentials
            call.digest = DigestClient(user, password, random_bytes=self.random_bytes)
        return call.digest

    def _resend(
        self, req: Request, cseq: int, transport: str, headers: list[tuple[str, str]]
    ) -> Request:
        """A copy of `req` as a new transaction: fresh Via, CSeq `cseq`, `headers` set."""
        h = req.headers.copy()
        h.set("Via", self._via(transport))
        h.set("CSeq", f"{cseq} {req.method}")
        for name, value in headers:
            h.set(name, value)
        return Request(h, req.body, req.method, req.uri)

    def _authorized(
        self, req: Request, resp: Response, digest: DigestClient, cseq: int, transport: str
    ) -> Request | None:
        """`req` again with credentials answering the 401/407 `resp`, or None when the
        challenge cannot (or must not) be answered."""
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenges = resp.headers.raw_values(header)
        if not challenges:
            return None
        try:
            value = digest.authorize(challenges, req.method, str(req.uri))
        except DigestClientError as exc:
            log.info("%s %s: giving up on authentication: %s", req.method, req.call_id, exc)
            return None
        name = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        return self._resend(req, cseq, transport, [(name, value)])

    # -- re-INVITE from our side (hold, resume, renegotiation) -------------------

    def modify(self, call: Call, sdp: bytes, now: float) -> None:
        """Send a re-INVITE offering `sdp` in a confirmed call (either direction). The
        outcome arrives as ModifyAnswered; on a 2xx the ACK goes out here and
        `call.local_sdp`/`remote_sdp` are updated. A 401/407 is answered with the call's
        credentials, as for the initial INVITE. Raises ValueError when the call is not
        confirmed or an INVITE/UPDATE is in progress either way (RFC 3261 §14.1)."""
        if call.state is not CallState.CONFIRMED or call.dialog is None:
            raise ValueError(f"call {call.id} is {call.state.value}: cannot send a re-INVITE")
        if call.modify_tx is not None:
            raise ValueError(f"call {call.id}: our previous re-INVITE is still pending")
        if call.pending_modify is not None:
            raise ValueError(f"call {call.id}: the peer's re-INVITE/UPDATE awaits answer_modify")
        if not sdp:
            raise ValueError(f"call {call.id}: a re-INVITE needs an SDP offer")
        transport = call.peer.transport
        req = call.dialog.new_request("INVITE", self._via(transport), self.contact_for(transport))
        req.headers.add("Allow", self.allow_header)
        req.headers.add("User-Agent", self.config.user_agent)
        req.headers.add("Content-Type", "application/sdp")
        req.body = sdp
        tx = self.layer.send_request(req, call.peer, now)
        tx.user_data = _ModifyOp(call, sdp)
        call.modify_tx = tx
        call.modify_ack = None
        self._count("reinvites_sent")

    def _on_modify_response(
        self, op: _ModifyOp, tx: ClientTransaction, resp: Response, now: float
    ) -> None:
        call = op.call
        status = resp.status
        if status < 200:
            return
        if status < 300:
            if op.answered:  # a retransmitted 2xx: the ACK is all it needs
                if call.modify_ack is not None:
                    self.layer.send_stateless(call.modify_ack, call.peer)
                return
            op.answered = True
            self._ack_modify(call, tx.request, resp)
            if call.digest is not None:
                call.digest.succeeded()
            if call.modify_tx is tx:
                call.modify_tx = None
            if call.state is CallState.ENDED:
                return
            call.local_sdp = op.sdp
            if resp.body:
                call.remote_sdp = resp.body
            self._events.append(ModifyAnswered(call, status, resp.body or None))
            return
        if status in (401, 407) and self._retry_modify(op, tx, resp, now):
            return
        if status not in (401, 407) and call.digest is not None:
            call.digest.succeeded()
        self._modify_failed(op, tx, status)

    def _ack_modify(self, call: Call, req: Request, resp: Response) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        if call.state is not CallState.ENDED:
            _refresh_target(dialog, resp)
        ack = dialog.new_request("ACK", self._via(call.peer.transport), cseq=req.cseq.number)
        for name in ("Authorization", "Proxy-Authorization"):  # §13.2.2.4 / §22.2
            for value in req.headers.raw_values(name):
                ack.headers.add(name, value)
        call.modify_ack = ack
        self.layer.send_stateless(ack, call.peer)

    def _retry_modify(
        self, op: _ModifyOp, tx: ClientTransaction, resp: Response, now: float
    ) -> bool:
        resent = self._resend_authorized(op, tx, resp, now, op.call.modify_tx)
        if resent is None:
            return False
        op.call.modify_tx = resent
        return True

    def _resend_authorized(
        self,
        op: _ModifyOp | _ReferOp,
        tx: ClientTransaction,
        resp: Response,
        now: float,
        current: ClientTransaction | None,
    ) -> ClientTransaction | None:
        """Send an in-dialog request of ours again with the credentials a 401/407 asked
        for (at most twice per request, while the call is up and `tx` still current)."""
        call = op.call
        digest = self._call_digest(call)
        if (
            digest is None
            or op.auth_tries >= 2
            or call.dialog is None
            or call.state is not CallState.CONFIRMED
            or current is not tx
        ):
            return None
        cseq = call.dialog.local_seq + 1
        req = self._authorized(tx.request, resp, digest, cseq, call.peer.transport)
        if req is None:
            return None
        call.dialog.local_seq = cseq
        op.auth_tries += 1
        resent = self.layer.send_request(req, call.peer, now)
        resent.user_data = op
        return resent

    def _modify_failed(self, op: _ModifyOp, tx: ClientTransaction, status: int) -> None:
        call = op.call
        if call.modify_tx is not tx:
            return  # a transaction replaced by its authenticated retry
        call.modify_tx = None
        if call.state is not CallState.ENDED:
            self._events.append(ModifyAnswered(call, status, None))

    # -- transfer: REFER out, its NOTIFYs, and NOTIFYs for a REFER received ------

    def refer(
        self,
        call: Call,
        refer_to: str,
        now: float,
        *,
        referred_by: str | None = None,
        replaces: str | None = None,
    ) -> None:
        """Send a REFER in a confirmed call. `refer_to` is a URI (``sip:x@y``, or
        ``<sip:x@y>``); `replaces` (``call-id;to-tag=..;from-tag=..``, RFC 3891) makes
        it an attended transfer: it goes, escaped, into the Refer-To URI. The answer
        arrives as ReferAnswered, the progress as ReferProgress. Raises ValueError for a
        call not confirmed, a REFER of ours still unanswered, or a bad argument. A new
        REFER after the previous one's answer takes over: NOTIFYs of the older one then
        get 481."""
        if call.state is not CallState.CONFIRMED or call.dialog is None:
            raise ValueError(f"call {call.id} is {call.state.value}: cannot send a REFER")
        if call.refer_tx is not None:
            raise ValueError(f"call {call.id}: our previous REFER has no answer yet")
        target = _refer_target(refer_to, replaces)
        referrer: str | None = None
        if referred_by is not None:
            try:
                referrer = str(parse_address(referred_by, "Referred-By"))
            except ParseError as exc:
                raise ValueError(f"referred_by {referred_by!r}: {exc.reason}") from None
        transport = call.peer.transport
        req = call.dialog.new_request("REFER", self._via(transport), self.contact_for(transport))
        req.headers.add("Refer-To", target)
        if referrer is not None:
            req.headers.add("Referred-By", referrer)
        req.headers.add("User-Agent", self.config.user_agent)
        tx = self.layer.send_request(req, call.peer, now)
        tx.user_data = _ReferOp(call)
        call.refer_tx = tx
        call.refer_id = req.cseq.number
        call.refer_deadline = None
        self._count("refers_sent")

    def _on_refer_response(
        self, op: _ReferOp, tx: ClientTransaction, resp: Response, now: float
    ) -> None:
        status = resp.status
        if status < 200:
            return
        call = op.call
        if status in (401, 407) and self._retry_refer(op, tx, resp, now):
            return
        if status not in (401, 407) and call.digest is not None:
            call.digest.succeeded()
        self._refer_final(op, tx, status, now)

    def _retry_refer(self, op: _ReferOp, tx: ClientTransaction, resp: Response, now: float) -> bool:
        resent = self._resend_authorized(op, tx, resp, now, op.call.refer_tx)
        if resent is None:
            return False
        op.call.refer_tx = resent
        op.call.refer_id = resent.request.cseq.number
        return True

    def _refer_final(self, op: _ReferOp, tx: ClientTransaction, status: int, now: float) -> None:
        call = op.call
        if call.refer_tx is not tx:
            return
        call.refer_tx = None
        if call.state is CallState.ENDED:
            return
        mine = call.refer_id == tx.request.cseq.number
        if status >= 300:
            if mine:
                call.refer_id = None
                call.refer_deadline = None
        elif mine and call.refer_deadline is None:
            # RFC 6665 §4.1.2.4: the first NOTIFY is due within 64*T1 of the 2xx.
            self._set_refer_deadline(call, now + self.config.timers.b)
        self._events.append(ReferAnswered(call, status))

    def _set_refer_deadline(self, call: Call, at: float) -> None:
        call.refer_deadline = at
        heapq.heappush(self._call_timers, (at, next(self._timer_seq), call))

    def _next_call_timer(self) -> float | None:
        heap = self._call_timers
        while heap:
            at, _, call = heap[0]
            if call.refer_deadline == at and call.state is not CallState.ENDED:
                return at
            heapq.heappop(heap)
        return None

    def _run_call_timers(self, now: float) -> None:
        heap = self._call_timers
        while heap and heap[0][0] <= now:
            at, _, call = heapq.heappop(heap)
            if call.refer_deadline != at or call.state is CallState.ENDED or call.refer_id is None:
                continue
            call.refer_id = None
            call.refer_deadline = None
            self._events.append(ReferProgress(call, 408, True))

    def _on_call_notify(self, call: Call, tx: ServerTransaction, now: float) -> None:
        """A NOTIFY inside a call: refer progress (RFC 3515 §2.4.4) when it carries
        Event: refer; any other is acknowledged as before."""
        req = tx.request
        raw_event = req.headers.get("Event")
        event: EventHeader | None = None
        if raw_event is not None:
            try:
                event = parse_event(raw_event)
            except ParseError as exc:
                self._respond(tx, 400, exc.reason[:120], to_tag=call.local_tag, now=now)
                return
        if event is None or event.name != REFER:
            self._respond(tx, 200, to_tag=call.local_tag, now=now)
            return
        if call.refer_id is None or (
            event.id is not None and event.id.lstrip("0") != str(call.refer_id)
        ):
            self._respond(tx, 481, "No such refer subscription", to_tag=call.local_tag, now=now)
            return
        raw_state = req.headers.get("Subscription-State")
        if raw_state is None:
            self._respond(
                tx, 400, "NOTIFY without Subscription-State", to_tag=call.local_tag, now=now
            )
            return
        if req.body and req.content_type != SIPFRAG:
            self._respond(tx, 415, extra=[("Accept", SIPFRAG)], to_tag=call.local_tag, now=now)
            return
        try:
            state = parse_subscription_state(raw_state)
            status, _ = parse_sipfrag_status(req.body)
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], to_tag=call.local_tag, now=now)
            return
        self._respond(tx, 200, to_tag=call.local_tag, now=now)
        if state.terminated:
            call.refer_id = None
            call.refer_deadline = None
        else:
            left = state.expires if state.expires is not None else 3600
            self._set_refer_deadline(call, now + left + self.config.timers.b)
        self._events.append(ReferProgress(call, status, state.terminated))

    def notify_refer(self, call: Call, status: int, now: float, *, final: bool) -> None:
        """Report the progress of the REFER we received (accepted with `answer_refer`)
        in the implicit subscription's NOTIFY (RFC 3515 §2.4.4): Event: refer, a
        message/sipfrag `SIP/2.0 <status> <reason>`; `final` terminates the subscription
        (reason=noresource). Raises ValueError when the call is not confirmed or has no
        REFER to report on."""
        if call.state is not CallState.CONFIRMED or call.dialog is None:
            raise ValueError(f"call {call.id} is {call.state.value}: cannot send a NOTIFY")
        refer_cseq = call.refer_received
        if refer_cseq is None:
            raise ValueError(f"call {call.id}: no accepted REFER to report progress on")
        body = sipfrag(status, reason_phrase(status))
        transport = call.peer.transport
        req = call.dialog.new_request("NOTIFY", self._via(transport), self.contact_for(transport))
        req.headers.add("Event", f"{REFER};id={refer_cseq}")
        req.headers.add(
            "Subscription-State",
            "terminated;reason=noresource" if final else f"active;expires={REFER_NOTIFY_EXPIRES}",
        )
        req.headers.add("User-Agent", self.config.user_agent)
        req.headers.add("Content-Type", f"{SIPFRAG};version=2.0")
        req.body = body
        self.layer.send_request(req, call.peer, now).user_data = None
        if final:
            call.refer_received = None

    # -- presence server: PUBLISH (RFC 3903) -------------------------------------

    def _expire_publications(self, now: float) -> None:
        for pub in self.publications.expire(now):
            self._events.append(PresenceRemoved(pub.entity, pub.etag, expired=True))

    def _event_header(
        self, tx: ServerTransaction, to_tag: str | None, now: float
    ) -> EventHeader | None:
        """The request's Event header, or None once answered 400 for lacking one."""
        raw = tx.request.headers.get("Event")
        if raw is None:
            self._respond(
                tx, 400, f"{tx.request.method} without an Event header", to_tag=to_tag, now=now
            )
            return None
        try:
            return parse_event(raw)
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], to_tag=to_tag, now=now)
            return None

    def _authenticate(
        self, tx: ServerTransaction, to_tag: str | None, now: float
    ) -> tuple[bool, str | None]:
        """(go on, authenticated user). Without `publish_auth` everyone goes on;
        otherwise the authenticator's 401/403 (as the registrar's) is sent."""
        auth = self.publish_auth
        if auth is None:
            return True, None
        decision = auth.authenticate(tx.request, now, tx.peer.host)
        if decision.username is None:
            self._respond(tx, decision.status, extra=list(decision.headers), to_tag=to_tag, now=now)
            return False, None
        return True, decision.username

    def _resource(self, tx: ServerTransaction, now: float) -> SipURI | None:
        """The presentity the Request-URI names, or None once answered 404."""
        uri = tx.request.uri
        if isinstance(uri, SipURI) and uri.user:
            return uri
        self._respond(tx, 404, "No presentity in the Request-URI", now=now)
        return None

    def _on_publish(self, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        policy = self.presence
        assert policy is not None  # PUBLISH is 405 without a presence policy
        self._expire_publications(now)
        event = self._event_header(tx, None, now)
        if event is None:
            return
        if event.name != PRESENCE:
            self._respond(tx, 489, extra=[("Allow-Events", PRESENCE)], now=now)
            return
        uri = self._resource(tx, now)
        if uri is None:
            return
        go, username = self._authenticate(tx, None, now)
        if not go:
            return
        if self.publish_auth is not None and username != uri.user:
            self._respond(tx, 403, "Not your presentity", now=now)
            return
        if_match = req.headers.get("SIP-If-Match")
        if if_match is not None:
            if_match = if_match.strip()
            if not if_match or any(c in if_match for c in ' \t,;"<>'):
                self._respond(tx, 400, "SIP-If-Match must be one entity-tag", now=now)
                return
        raw_expires = req.headers.get("Expires")
        try:
            expires = (
                parse_delta_seconds(raw_expires, "Expires") if raw_expires is not None else None
            )
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], now=now)
            return
        if req.body and policy.check_body is not None:
            problem = policy.check_body(req.body)
            if problem is not None:
                self._respond(tx, 400, _reason_for(400, problem), now=now)
                return
        entity = uri.aor()
        result = self.publications.publish(
            entity, PRESENCE, req.body, req.content_type, expires, if_match, now
        )
        for lapsed in result.lapsed:
            self._events.append(PresenceRemoved(lapsed.entity, lapsed.etag, expired=True))
        if result.status == 423:
            self._respond(tx, 423, extra=[("Min-Expires", str(result.min_expires))], now=now)
            return
        if result.status == 503:
            self._respond(tx, 503, result.reason, extra=[("Retry-After", "60")], now=now)
            return
        if result.status != 200 or result.etag is None:
            self._respond(tx, result.status, result.reason, now=now)
            return
        self._respond(
            tx, 200, extra=[("SIP-ETag", result.etag), ("Expires", str(result.expires))], now=now
        )
        self._count("publications")
        if result.removed is not None:
            self._events.append(PresenceRemoved(entity, result.removed.etag))
        pub = result.published
        if pub is not None:
            self._events.append(
                PresencePublished(entity, pub.body, pub.etag, pub.expires_at, result.previous_etag)
            )

    # -- presence server: subscriptions to us (RFC 6665 notifier) ----------------

    def watchers(self, entity: str) -> list[Subscription]:
        """The live subscriptions to `entity` (an AOR, ``sip:user@host``): whom to
        `notify` when its state changes."""
        return self.subscriptions.watchers(entity)

    def _on_subscribe(self, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        policy = self.presence
        assert policy is not None  # SUBSCRIBE is 405 without a presence policy
        if self.draining:
            self._respond(tx, 503, "Draining", extra=[("Retry-After", "30")], now=now)
            return
        event = self._event_header(tx, None, now)
        if event is None:
            return
        if event.name != PRESENCE:
            self._respond(tx, 489, extra=[("Allow-Events", PRESENCE)], now=now)
            return
        ranges = [
            parse_media_type(v, "Accept")
            for raw in req.headers.raw_values("Accept")
            for v in raw.split(",")
            if v.strip()
        ]
        if ranges and not any(media_range_matches(r, PIDF) for r in ranges):
            self._respond(tx, 406, extra=[("Accept", PIDF)], now=now)
            return
        uri = self._resource(tx, now)
        if uri is None:
            return
        go, username = self._authenticate(tx, None, now)
        if not go:
            return
        contacts = [c for c in req.contacts if not c.wildcard]
        if not contacts:
            self._respond(tx, 400, "SUBSCRIBE without a Contact", now=now)
            return
        granted = self._granted(tx, policy.subscribe.grant, None, now)
        if granted is None:
            return
        if self.subscriptions.full:
            self._count("overload_subscriptions")
            self._respond(tx, 503, "Too many subscriptions", extra=[("Retry-After", "60")], now=now)
            return
        local_tag = self._token()
        dialog = Dialog.as_uas(req, local_tag, contacts[0].uri)
        dialog.state = DialogState.CONFIRMED
        sub = Subscription(
            id=f"{req.call_id}/{local_tag}",
            role=SubscriptionRole.NOTIFIER,
            event=PRESENCE,
            entity=uri.aor(),
            subscriber=_aor(req.from_.uri),
            peer=tx.peer,
            call_id=req.call_id,
            local_tag=local_tag,
            event_id=event.id,
            dialog=dialog,
            state=SubscriptionState.ACTIVE,
            expires=granted,
            expires_at=now + granted,
            created=now,
            username=username,
        )
        self.subscriptions.add(sub)
        self._sub_io[sub.id] = _SubIO()
        self._respond(
            tx, 200, extra=[("Expires", str(granted))], to_tag=local_tag, contact=True, now=now
        )
        # A fetch (Expires: 0) ends with the first NOTIFY; give the application 64*T1
        # to send it before a bodiless terminated NOTIFY goes out on its behalf.
        self.subscriptions.schedule(sub, now + granted if granted else now + self.config.timers.b)
        self._count("subscriptions_in")
        self._events.append(SubscriptionRequested(sub))

    def _granted(
        self,
        tx: ServerTransaction,
        grant: Callable[[int | None], int],
        to_tag: str | None,
        now: float,
    ) -> int | None:
        """The interval granted for the request's Expires, or None once answered
        (400 for a malformed value, 423 below the minimum)."""
        raw = tx.request.headers.get("Expires")
        try:
            return grant(parse_delta_seconds(raw, "Expires") if raw is not None else None)
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], to_tag=to_tag, now=now)
        except IntervalTooBrief as exc:
            self._respond(
                tx, 423, extra=[("Min-Expires", str(exc.min_expires))], to_tag=to_tag, now=now
            )
        return None

    def _on_subscription_request(
        self, sub: Subscription, tx: ServerTransaction, now: float
    ) -> None:
        method = tx.request.method
        if method == "SUBSCRIBE" and sub.role is SubscriptionRole.NOTIFIER:
            self._on_resubscribe(sub, tx, now)
        elif method == "NOTIFY" and sub.role is SubscriptionRole.SUBSCRIBER:
            self._on_subscriber_notify(sub, tx, now)
        else:
            self._respond(tx, 481, "No such dialog usage", now=now)

    def _on_resubscribe(self, sub: Subscription, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        policy = self.presence
        dialog = sub.dialog
        if policy is None or dialog is None or sub.state is SubscriptionState.TERMINATED:
            self._respond(tx, 481, now=now)
            return
        tag = sub.local_tag
        if not dialog.accept_remote_cseq(req):
            self._respond(
                tx, 500, "CSeq out of order", extra=[("Retry-After", "1")], to_tag=tag, now=now
            )
            return
        event = self._event_header(tx, tag, now)
        if event is None:
            return
        if not event.matches(sub.event, sub.event_id):
            self._respond(tx, 489, extra=[("Allow-Events", PRESENCE)], to_tag=tag, now=now)
            return
        go, _ = self._authenticate(tx, tag, now)
        if not go:
            return
        granted = self._granted(tx, policy.subscribe.grant, tag, now)
        if granted is None:
            return
        _refresh_target(dialog, req)
        self._respond(tx, 200, extra=[("Expires", str(granted))], to_tag=tag, contact=True, now=now)
        if granted == 0:
            self._end_notifier(sub, SubscriptionEndReason.UNSUBSCRIBED, "timeout", now)
            return
        sub.expires = granted
        sub.expires_at = now + granted
        self.subscriptions.schedule(sub, sub.expires_at)
        io = self._sub_io.get(sub.id)
        if io is not None and sub.notify_count:
            # RFC 6665 §4.2.1.2: a refresh is answered with the current state too.
            self._send_notify(sub, io, sub.last_body, sub.last_content_type, None, now)

    def notify(
        self,
        subscription: Subscription,
        body: bytes | None,
        now: float,
        content_type: str = PIDF,
        *,
        terminate: str | None = None,
    ) -> None:
        """Send a NOTIFY with `body` to a subscriber of ours (SubscriptionRequested).
        Its Subscription-State is ``active;expires=<seconds left>``; once the
        subscription has lapsed (a fetch: Expires 0), or with `terminate` (a reason
        such as ``noresource``, ``rejected``, ``deactivated``), it is
        ``terminated;reason=...`` and the subscription ends (SubscriptionEnded follows).
        A NOTIFY sent while the previous one is unanswered waits for that answer (only
        the latest waits). Raises ValueError for a subscription that is not ours to
        notify or has ended."""
        sub = subscription
        if sub.role is not SubscriptionRole.NOTIFIER:
            raise ValueError(f"subscription {sub.id} is one we hold: only its notifier notifies")
        io = self._sub_io.get(sub.id)
        if sub.state is SubscriptionState.TERMINATED or io is None or sub.dialog is None:
            raise ValueError(f"subscription {sub.id} has ended")
        if terminate is not None and not _is_token(terminate):
            raise ValueError(f"terminate reason {terminate!r} is not a token")
        if body is not None:
            sub.last_body = body
            sub.last_content_type = content_type
        if terminate is not None:
            self._end_notifier(sub, SubscriptionEndReason.TERMINATED, terminate, now)
        elif sub.remaining(now) <= 0:
            self._end_notifier(sub, SubscriptionEndReason.EXPIRED, "timeout", now)
        else:
            self._send_notify(sub, io, body, content_type if body is not None else None, None, now)

    def _send_notify(
        self,
        sub: Subscription,
        io: _SubIO,
        body: bytes | None,
        content_type: str | None,
        terminate: str | None,
        now: float,
    ) -> None:
        if io.notify_tx is not None:
            io.queued = (body, content_type, terminate)
            return
        dialog = sub.dialog
        if dialog is None:
            return
        transport = sub.peer.transport
        req = dialog.new_request("NOTIFY", self._via(transport), self.contact_for(transport))
        req.headers.add("Event", sub.event + (f";id={sub.event_id}" if sub.event_id else ""))
        req.headers.add(
            "Subscription-State",
            f"terminated;reason={terminate}"
            if terminate
            else f"active;expires={sub.remaining(now)}",
        )
        req.headers.add("User-Agent", self.config.user_agent)
        if body is not None:
            req.headers.add("Content-Type", content_type or PIDF)
            req.body = body
        tx = self.layer.send_request(req, sub.peer, now)
        tx.user_data = _NotifyOp(sub, io)
        io.notify_tx = tx
        sub.notify_count += 1

    def _on_notify_response(
        self, op: _NotifyOp, tx: ClientTransaction, resp: Response, now: float
    ) -> None:
        status = resp.status
        if status < 200:
            return
        if status >= 300 and status in NOTIFY_FATAL:
            self._notify_failed(op, tx, status, now, reason=SubscriptionEndReason.REJECTED)
            return
        io = op.io
        if io.notify_tx is tx:
            io.notify_tx = None
            queued, io.queued = io.queued, None
            if queued is not None:
                self._send_notify(op.sub, io, *queued, now)

    def _notify_failed(
        self,
        op: _NotifyOp,
        tx: ClientTransaction,
        status: int,
        now: float,
        reason: SubscriptionEndReason = SubscriptionEndReason.FAILED,
    ) -> None:
        io = op.io
        if io.notify_tx is not tx:
            return
        io.notify_tx = None
        io.queued = None
        sub = op.sub
        if sub.state is not SubscriptionState.TERMINATED:
            # The watcher is gone: no terminated NOTIFY to send it.
            self._end_notifier(sub, reason, None, now, status=status)

    def _end_notifier(
        self,
        sub: Subscription,
        reason: SubscriptionEndReason,
        notify_reason: str | None,
        now: float,
        *,
        status: int | None = None,
    ) -> None:
        """End a subscription to us; with `notify_reason`, send the terminated NOTIFY
        (with the last body sent) first."""
        if sub.state is SubscriptionState.TERMINATED:
            return
        io = self._sub_io.pop(sub.id, None)
        if notify_reason is not None and io is not None:
            self._send_notify(sub, io, sub.last_body, sub.last_content_type, notify_reason, now)
        sub.state = SubscriptionState.TERMINATED
        self.subscriptions.remove(sub)
        self._count(f"subscriptions_ended_{reason.value}")
        self._events.append(SubscriptionEnded(sub, reason, status, notify_reason))

    # -- presence client: subscriptions we hold (RFC 6665 subscriber) ------------

    def subscribe(
        self,
        target: str,
        now: float,
        *,
        event: str = PRESENCE,
        expires: int = 3600,
        credentials: tuple[str, str] | None = None,
        peer: Peer | None = None,
        from_uri: str | None = None,
        app: object = None,
    ) -> Subscription:
        """Subscribe to `target`'s `event` state (presence). The subscription is
        refreshed before it lapses, 401/407 are answered with `credentials`; each NOTIFY
        arrives as PresenceNotified, the end as SubscriptionEnded. `expires` 0 is a
        fetch (one NOTIFY). Raises ValueError for a bad target or package."""
        if event not in SUBSCRIBABLE:
            raise ValueError(
                f"cannot subscribe to event package {event!r}: only "
                f"{', '.join(sorted(SUBSCRIBABLE))}"
            )
        if not 0 <= expires <= MAX_CSEQ:
            raise ValueError(f"expires {expires} is not in 0-{MAX_CSEQ}")
        frm = from_uri or f"sip:{self.config.contact_user}@{self.config.domain}"
        try:
            uri = parse_uri(target, "target")
            watcher = parse_uri(frm, "from_uri")
        except ParseError as exc:
            raise ValueError(exc.reason) from None
        if not isinstance(uri, SipURI):
            raise ValueError(f"cannot subscribe to {target!r}: only sip/sips URIs")
        if peer is None:
            peer = Peer(uri.transport or "udp", uri.host_bare, uri.port or 5060)
        tag = self._token()
        call_id = f"{self._token(12)}@{self.config.domain}"
        h = Headers()
        h.add("Via", self._via(peer.transport))
        h.add("Max-Forwards", "70")
        h.add("From", f"<{frm}>;tag={tag}")
        h.add("To", f"<{target}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 SUBSCRIBE")
        h.add("Contact", self.contact_for(peer.transport))
        h.add("Event", event)
        h.add("Expires", str(expires))
        h.add("Accept", SUBSCRIBABLE[event])
        h.add("Allow", self.allow_header)
        h.add("User-Agent", self.config.user_agent)
        req = Request(h, b"", "SUBSCRIBE", uri)
        sub = Subscription(
            id=f"{call_id}/{tag}",
            role=SubscriptionRole.SUBSCRIBER,
            event=event,
            entity=uri.aor(),
            subscriber=_aor(watcher),
            peer=peer,
            call_id=call_id,
            local_tag=tag,
            created=now,
            target=target,
            app=app,
        )
        io = _SubIO(request=req, credentials=credentials, requested=expires)
        self.subscriptions.add(sub)
        self._sub_io[sub.id] = io
        tx = self.layer.send_request(req, peer, now)
        tx.user_data = _SubscribeOp(sub, io, expires, initial=True)
        self._count("subscriptions_out")
        return sub

    def unsubscribe(self, subscription: Subscription, now: float) -> None:
        """End a subscription we hold (SUBSCRIBE with Expires: 0). SubscriptionEnded
        (UNSUBSCRIBED) follows at once; the notifier's last NOTIFY is answered 200 and
        reported no further. Does nothing for one that has ended already."""
        sub = subscription
        if sub.role is not SubscriptionRole.SUBSCRIBER:
            raise ValueError(f"subscription {sub.id} is to us: only its subscriber unsubscribes")
        if sub.state is SubscriptionState.TERMINATED:
            return
        io = self._sub_io.get(sub.id)
        if io is not None:
            if sub.dialog is not None:
                self._send_subscribe(sub, io, 0, now)
            else:
                io.unsubscribe_pending = True  # sent once the 2xx makes the dialog
        self._end_subscriber(sub, SubscriptionEndReason.UNSUBSCRIBED, now, linger=True)

    def _send_subscribe(self, sub: Subscription, io: _SubIO, expires: int, now: float) -> None:
        """A SUBSCRIBE inside the subscription's dialog (refresh, or 0: unsubscribe)."""
        dialog = sub.dialog
        assert dialog is not None
        transport = sub.peer.transport
        req = dialog.new_request("SUBSCRIBE", self._via(transport), self.contact_for(transport))
        req.headers.add("Event", sub.event + (f";id={sub.event_id}" if sub.event_id else ""))
        req.headers.add("Expires", str(expires))
        req.headers.add("Accept", SUBSCRIBABLE.get(sub.event, PIDF))
        req.headers.add("Allow", self.allow_header)
        req.headers.add("User-Agent", self.config.user_agent)
        io.request = req
        tx = self.layer.send_request(req, sub.peer, now)
        tx.user_data = _SubscribeOp(sub, io, expires, initial=False)

    def _on_subscribe_response(
        self, op: _SubscribeOp, tx: ClientTransaction, resp: Response, now: float
    ) -> None:
        status = resp.status
        if status < 200:
            return
        sub, io = op.sub, op.io
        if status < 300:
            if io.digest is not None:
                io.digest.succeeded()
            self._subscribe_accepted(op, tx, resp, now)
            return
        if status in (401, 407) and self._retry_subscribe(op, tx, resp, now):
            return
        if status == 423 and self._retry_interval(op, tx, resp, now):
            return
        if io.digest is not None and status not in (401, 407):
            io.digest.succeeded()
        if status == 481 or op.initial:
            self._end_subscriber(sub, SubscriptionEndReason.REJECTED, now, status=status)
        # RFC 6665 §4.1.2.2: a refresh refused otherwise leaves the subscription valid
        # until it lapses (its EXPIRE deadline is set when the refresh goes out).

    def _subscribe_accepted(
        self, op: _SubscribeOp, tx: ClientTransaction, resp: Response, now: float
    ) -> None:
        sub, io = op.sub, op.io
        if op.initial and sub.dialog is None:
            sub.dialog = Dialog.as_uac(tx.request, resp)
            sub.dialog.state = DialogState.CONFIRMED
        elif sub.dialog is not None and sub.dialog.remote_tag == (resp.to.tag or ""):
            _refresh_target(sub.dialog, resp)
        if io.unsubscribe_pending and sub.dialog is not None:
            io.unsubscribe_pending = False
            self._send_subscribe(sub, io, 0, now)
            self.subscriptions.schedule(sub, now + self.config.timers.b, SubscriptionTimer.LINGER)
            return
        if sub.state is SubscriptionState.TERMINATED or (op.expires == 0 and not op.initial):
            return
        raw = resp.headers.get("Expires")
        granted = op.expires
        if raw is not None:
            try:
                granted = parse_delta_seconds(raw, "Expires")
            except ParseError:
                log.info("subscription %s: malformed Expires %r in the 2xx", sub.id, raw)
        sub.expires = granted
        sub.expires_at = now + granted
        if granted == 0:
            # A fetch: the notifier's terminated NOTIFY ends it; wait 64*T1 for it.
            self.subscriptions.schedule(sub, now + self.config.timers.b)
            return
        self._schedule_refresh(sub, now)

    def _schedule_refresh(self, sub: Subscription, now: float) -> None:
        sub.refresh_at = refresh_time(sub.expires_at - now, now)
        self.subscriptions.schedule(sub, sub.refresh_at, SubscriptionTimer.REFRESH)

    def _retry_subscribe(
        self, op: _SubscribeOp, tx: ClientTransaction, resp: Response, now: float
    ) -> bool:
        sub, io = op.sub, op.io
        unsubscribing = op.expires == 0 and not op.initial
        if (
            io.credentials is None
            or op.auth_tries >= 2
            or (sub.state is SubscriptionState.TERMINATED and not unsubscribing)
        ):
            return False
        if io.digest is None:
            user, password = io.credentials
            io.digest = DigestClient(user, password, random_bytes=self.random_bytes)
        in_dialog = not op.initial and sub.dialog is not None
        cseq = (sub.dialog.local_seq if in_dialog and sub.dialog else tx.request.cseq.number) + 1
        req = self._authorized(tx.request, resp, io.digest, cseq, sub.peer.transport)
        if req is None:
            return False
        if in_dialog and sub.dialog is not None:
            sub.dialog.local_seq = cseq
        op.auth_tries += 1
        io.request = req
        self.layer.send_request(req, sub.peer, now).user_data = op
        return True

    def _retry_interval(
        self, op: _SubscribeOp, tx: ClientTransaction, resp: Response, now: float
    ) -> bool:
        """423: ask once more with the notifier's Min-Expires."""
        sub, io = op.sub, op.io
        raw = resp.headers.get("Min-Expires")
        if raw is None or op.retried_423 or sub.state is SubscriptionState.TERMINATED:
            return False
        try:
            minimum = parse_delta_seconds(raw, "Min-Expires")
        except ParseError:
            return False
        if minimum <= op.expires:
            return False
        in_dialog = not op.initial and sub.dialog is not None
        cseq = (sub.dialog.local_seq if in_dialog and sub.dialog else tx.request.cseq.number) + 1
        req = self._resend(tx.request, cseq, sub.peer.transport, [("Expires", str(minimum))])
        if in_dialog and sub.dialog is not None:
            sub.dialog.local_seq = cseq
        op.retried_423 = True
        op.expires = io.requested = minimum
        io.request = req
        self.layer.send_request(req, sub.peer, now).user_data = op
        return True

    def _subscribe_failed(
        self, op: _SubscribeOp, tx: ClientTransaction, status: int, now: float
    ) -> None:
        if op.initial:
            self._end_subscriber(op.sub, SubscriptionEndReason.FAILED, now, status=status)
        # A refresh that timed out leaves the subscription until it lapses.

    def _on_subscriber_notify(self, sub: Subscription, tx: ServerTransaction, now: float) -> None:
        req = tx.request
        event = self._event_header(tx, None, now)
        if event is None:
            return
        if not event.matches(sub.event, sub.event_id):
            self._respond(tx, 489, extra=[("Allow-Events", sub.event)], now=now)
            return
        raw_state = req.headers.get("Subscription-State")
        if raw_state is None:
            self._respond(tx, 400, "NOTIFY without Subscription-State", now=now)
            return
        try:
            state = parse_subscription_state(raw_state)
        except ParseError as exc:
            self._respond(tx, 400, exc.reason[:120], now=now)
            return
        expected = SUBSCRIBABLE.get(sub.event, PIDF)
        if req.body and req.content_type != expected:
            self._respond(tx, 415, extra=[("Accept", expected)], now=now)
            return
        dialog = sub.dialog
        if dialog is None:
            # RFC 6665 §4.1.2.4: a NOTIFY may arrive before the 2xx; it makes the dialog.
            contacts = [c for c in req.contacts if not c.wildcard]
            if not contacts:
                self._respond(tx, 400, "NOTIFY without a Contact", now=now)
                return
            dialog = Dialog.as_uas(req, sub.local_tag, contacts[0].uri)
            dialog.role = Role.UAC
            io = self._sub_io.get(sub.id)
            dialog.local_seq = io.request.cseq.number if io and io.request else 1
            dialog.state = DialogState.CONFIRMED
            sub.dialog = dialog
        elif dialog.remote_tag != (req.from_.tag or ""):
            self._respond(tx, 481, "NOTIFY from another notifier", now=now)
            return
        elif not dialog.accept_remote_cseq(req):
            self._respond(tx, 500, "CSeq out of order", extra=[("Retry-After", "1")], now=now)
            return
        else:
            _refresh_target(dialog, req)
        self._respond(tx, 200, now=now)
        if sub.state is SubscriptionState.TERMINATED:
            if state.terminated:
                self._forget(sub)  # the notifier confirmed our unsubscription
            return
        if state.terminated:
            self._events.append(PresenceNotified(sub, req.body, state.state))
            self._end_subscriber(sub, SubscriptionEndReason.TERMINATED, now, detail=state.reason)
            return
        sub.state = SubscriptionState.ACTIVE if state.active else SubscriptionState.PENDING
        if state.expires is not None and (
            sub.expires_at <= now or now + state.expires < sub.expires_at
        ):
            # RFC 6665 §4.1.2.2: a shorter expiry in the NOTIFY moves the refresh up.
            sub.expires = state.expires
            sub.expires_at = now + state.expires
            self._schedule_refresh(sub, now)
        self._events.append(PresenceNotified(sub, req.body, state.state))

    def _end_subscriber(
        self,
        sub: Subscription,
        reason: SubscriptionEndReason,
        now: float,
        *,
        status: int | None = None,
        detail: str | None = None,
        linger: bool = False,
    ) -> None:
        """End a subscription we hold. With `linger` it stays known for 64*T1 so the
        notifier's last NOTIFY is answered 200 rather than 481."""
        if sub.state is SubscriptionState.TERMINATED:
            return
        sub.state = SubscriptionState.TERMINATED
        sub.refresh_at = None
        if linger:
            self.subscriptions.schedule(sub, now + self.config.timers.b, SubscriptionTimer.LINGER)
        else:
            self._forget(sub)
        self._count(f"subscriptions_ended_{reason.value}")
        self._events.append(SubscriptionEnded(sub, reason, status, detail))

    def _forget(self, sub: Subscription) -> None:
        self.subscriptions.remove(sub)
        self._sub_io.pop(sub.id, None)

    def _on_sub_timer(self, sub: Subscription, kind: SubscriptionTimer, now: float) -> None:
        if kind is SubscriptionTimer.LINGER:
            self._forget(sub)
            return
        if sub.role is SubscriptionRole.NOTIFIER:
            self._end_notifier(sub, SubscriptionEndReason.EXPIRED, "timeout", now)
            return
        if sub.state is SubscriptionState.TERMINATED:
            return
        io = self._sub_io.get(sub.id)
        if kind is SubscriptionTimer.REFRESH and io is not None and sub.dialog is not None:
            sub.refresh_at = None
            self._send_subscribe(sub, io, io.requested, now)
            # Lapses unless the refresh's 2xx schedules the next refresh first.
            self.subscriptions.schedule(sub, max(sub.expires_at, now))
            return
        self._end_subscriber(sub, SubscriptionEndReason.EXPIRED, now)

    def end_subscriptions(self, now: float, reason: str = "deactivated") -> int:
        """End every live subscription (for a drain): those to us get a terminated
        NOTIFY with `reason` (``deactivated`` asks the watcher to subscribe again at
        once, which reaches another node), ours are unsubscribed. SubscriptionEnded
        follows for each; returns how many ended."""
        if not _is_token(reason):
            raise ValueError(f"reason {reason!r} is not a token")
        live = [s for s in self.subscriptions if s.state is not SubscriptionState.TERMINATED]
        for sub in live:
            if sub.role is SubscriptionRole.NOTIFIER:
                self._end_notifier(sub, SubscriptionEndReason.TERMINATED, reason, now)
            else:
                self.unsubscribe(sub, now)
        return len(live)

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


def _aor(uri: URI) -> str:
    """``sip:user@host`` for a SIP URI (as registrar AORs); any other URI as written."""
    return uri.aor() if isinstance(uri, SipURI) else str(uri)


def _refresh_target(dialog: Dialog, message: Request | Response) -> None:
    """`dialog.refresh_target`, keeping the old target when the Contact is malformed."""
    try:
        dialog.refresh_target(message)
    except ParseError as exc:
        log.info("dialog %s: target not refreshed: %s", dialog.call_id, exc.reason)


def _refer_target(refer_to: str, replaces: str | None) -> str:
    """The Refer-To value for `refer_to`, with `replaces` (RFC 3891) as a URI header."""
    try:
        addr = parse_address(refer_to, "Refer-To")
    except ParseError as exc:
        raise ValueError(f"refer_to {refer_to!r}: {exc.reason}") from None
    if replaces is None:
        return str(addr)
    uri = addr.uri
    if not isinstance(uri, SipURI):
        raise ValueError(f"refer_to {refer_to!r}: Replaces needs a sip or sips URI")
    if any(name.lower() == "replaces" for name, _ in uri.headers):
        raise ValueError(f"refer_to {refer_to!r} already carries a Replaces header")
    _check_replaces(replaces)
    uri = uri.copy()
    uri.headers.append(("Replaces", replaces))
    return str(Address(uri, addr.display_name, addr.params))


def _check_replaces(value: str) -> None:
    """callid *(";" replaces-param) with to-tag and from-tag (RFC 3891 §6.1)."""
    call_id, *params = value.split(";")
    if not call_id or any(c in call_id for c in ' \t\r\n"<>'):
        raise ValueError(f"replaces {value!r}: expected 'call-id;to-tag=...;from-tag=...'")
    seen: set[str] = set()
    for param in params:
        name, eq, tag = param.partition("=")
        name = name.strip().lower()
        if name == "early-only" and not eq:
            continue
        if name not in ("to-tag", "from-tag") or not _is_token(tag.strip()):
            raise ValueError(f"replaces {value!r}: unexpected parameter {param!r}")
        seen.add(name)
    if seen != {"to-tag", "from-tag"}:
        raise ValueError(f"replaces {value!r}: both to-tag and from-tag are required")


def _matches(t: str, s: str, mime: str) -> bool:
    mt, _, ms = mime.partition("/")
    return (t == "*" or t.lower() == mt) and (s == "*" or s.lower() == ms)


def _reason_for(status: int, detail: str) -> str:
    from hotline.sip.message import reason_phrase

    base = reason_phrase(status)
    detail = "".join(c if 32 <= ord(c) < 127 else "?" for c in detail)[:100]
    return f"{base} ({detail})" if detail else base
