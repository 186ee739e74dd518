"""A SIP registration client (RFC 3261 §10.2), sans-IO: REGISTER one contact per
address-of-record with digest authentication, refresh it before it lapses, and remove it.

Owns, per registration: the Call-ID, From tag and CSeq (one Call-ID for the life of a
binding, CSeq rising, §10.2.4), the digest client answering 401/407 (one retry per
challenge; a second non-stale challenge means the credentials are wrong), 423 Interval
Too Brief (once, with the registrar's Min-Expires), the expiry granted (from our Contact's
`expires` parameter, else the Expires header, else what we asked for) and the refresh
deadline, and retries after a failed refresh. Uses its own `TransactionLayer`; the
caller routes to it the responses whose CSeq method is REGISTER.

Interface (aioquic style): `register()` / `unregister()` take `now`; the caller feeds
`receive_response(resp, peer, now)`, sends `datagrams_to_send()`, arms one timer at
`next_timer()` and calls `handle_timer(now)`; `take_events()` says what happened.

Must not know: sockets, asyncio, the wall clock, WebSockets, calls. A password lives in
the registration's `DigestClient` only while the registration does.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum

from hotline.sip.addr import Peer
from hotline.sip.auth import DigestClient, DigestClientError
from hotline.sip.errors import ParseError
from hotline.sip.headers import parse_delta_seconds
from hotline.sip.message import Headers, Request, Response
from hotline.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    TxEvent,
)
from hotline.sip.uri import SipURI, parse_uri

__all__ = [
    "Registration",
    "RegistrationClient",
    "RegistrationEnded",
    "RegistrationEvent",
    "RegistrationFailed",
    "RegistrationState",
    "RegistrationSucceeded",
    "refresh_delay",
]

log = logging.getLogger("hotline.webrtc")

DEFAULT_EXPIRES = 300  # seconds asked for a binding
RETRY_INTERVAL = 30.0  # seconds before a failed refresh is tried again
MAX_RETRY_AFTER = 600  # seconds: a Retry-After longer than this is capped
REFRESH_MARGIN = 60.0  # seconds before expiry a refresh goes out (at most half the expiry)
MAX_AUTH_TRIES = 2  # digest answers per REGISTER before giving up
MAX_EXPIRES = 2**31 - 1  # RFC 3261 §20.19 upper bound of delta-seconds


class RegistrationState(Enum):
    REGISTERING = "registering"  # the first REGISTER is out (or its retry with credentials)
    REGISTERED = "registered"  # a binding is in place; a refresh may be out
    RETRYING = "retrying"  # a refresh failed; the next try waits for its deadline
    UNREGISTERING = "unregistering"  # Expires: 0 sent
    ENDED = "ended"


@dataclass(frozen=True)
class RegistrationSucceeded:
    """The registrar holds our contact for `expires` seconds (first time or refresh)."""

    key: Hashable
    expires: int
    refreshed: bool  # False for the first success of this registration


@dataclass(frozen=True)
class RegistrationFailed:
    """A REGISTER failed with `status` (408: no answer, 503: the transport failed).
    `retry_at` is when the client tries again (a refresh of a binding that existed);
    None: the registration is over (the first attempt failed, or credentials were
    refused) and the key is free again."""

    key: Hashable
    status: int
    reason: str
    retry_at: float | None


@dataclass(frozen=True)
class RegistrationEnded:
    """The binding was removed (Expires: 0 answered, or given up on); key is free."""

    key: Hashable
    status: int


RegistrationEvent = RegistrationSucceeded | RegistrationFailed | RegistrationEnded


def refresh_delay(granted: int) -> float:
    """Seconds after a success when the binding is refreshed: a minute before it lapses,
    or half-way through for short expiries (never sooner than one second)."""
    return max(1.0, granted - min(REFRESH_MARGIN, granted / 2))


@dataclass(eq=False)
class Registration:
    key: Hashable
    username: str
    aor: str  # sip:user@domain, the To and From URI
    contact: str  # the Contact URI, without angle brackets
    call_id: str
    from_tag: str
    digest: DigestClient
    expires: int  # what we ask for
    state: RegistrationState = RegistrationState.REGISTERING
    cseq: int = 0
    tx: ClientTransaction | None = None  # the REGISTER in flight (responses to others are old)
    auth_tries: int = 0
    retried_423: bool = False
    ever_registered: bool = False
    granted: int = 0
    deadline: float | None = None  # refresh or retry time


class RegistrationClient:
    """Registrations of several users through one registrar, from one local address."""

    def __init__(
        self,
        *,
        registrar: Peer,
        domain: str,
        local: tuple[str, int],
        random_bytes: Callable[[int], bytes],
        timers: Timers | None = None,
        user_agent: str = "hotline-webrtc",
    ) -> None:
        if registrar.transport != "udp":
            raise ValueError(f"only UDP registrars are supported, got {registrar.transport}")
        self.registrar = registrar
        self.domain = domain
        self.local = local
        self.random_bytes = random_bytes
        self.user_agent = user_agent
        self.layer = TransactionLayer(timers or Timers())
        self.registrations: dict[Hashable, Registration] = {}
        self._events: list[RegistrationEvent] = []

    # -- plumbing ---------------------------------------------------------------

    def _token(self, n: int = 8) -> str:
        return base64.b32encode(self.random_bytes(n)).decode().rstrip("=").lower()

    def _host(self) -> str:
        host = self.local[0]
        return f"[{host}]" if ":" in host else host

    def take_events(self) -> list[RegistrationEvent]:
        out, self._events = self._events, []
        return out

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.layer.datagrams_to_send()

    def next_timer(self) -> float | None:
        due = [r.deadline for r in self.registrations.values() if r.deadline is not None]
        layer = self.layer.next_timer()
        if layer is not None:
            due.append(layer)
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        for ev in self.layer.handle_timer(now):
            self._on_tx_event(ev, now)
        for reg in list(self.registrations.values()):
            if reg.deadline is not None and reg.deadline <= now:
                reg.deadline = None
                if reg.state in (RegistrationState.REGISTERED, RegistrationState.RETRYING):
                    reg.auth_tries = 0
                    self._send(reg, reg.expires, now)

    @staticmethod
    def owns(resp: Response) -> bool:
        """Is `resp` for this client (a response to a REGISTER)?"""
        try:
            return resp.cseq.method == "REGISTER"
        except ParseError:
            return False

    def state(self, key: Hashable) -> RegistrationState | None:
        reg = self.registrations.get(key)
        return reg.state if reg is not None else None

    # -- actions ------------------------------------------------------------------

    def register(
        self,
        key: Hashable,
        username: str,
        password: str,
        contact_user: str,
        now: float,
        *,
        expires: int = DEFAULT_EXPIRES,
    ) -> None:
        """Bind `sip:<contact_user>@<local>` to `sip:<username>@<domain>`."""
        if key in self.registrations:
            raise ValueError(f"registration {key!r} exists")
        if not 0 < expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 1-{MAX_EXPIRES} seconds, got {expires}")
        aor = f"sip:{username}@{self.domain}"
        contact = f"sip:{contact_user}@{self._host()}:{self.local[1]}"
        for what, text in (("username", aor), ("contact user", contact)):
            uri = parse_uri(text, what)  # raises ParseError for what cannot be a SIP URI
            if not isinstance(uri, SipURI) or str(uri) != text:
                raise ValueError(f"{what} cannot be used in a SIP URI as given")
        reg = Registration(
            key=key,
            username=username,
            aor=aor,
            contact=contact,
            call_id=f"{self._token(12)}@{self._host()}",
            from_tag=self._token(),
            digest=DigestClient(username, password, random_bytes=self.random_bytes),
            expires=expires,
        )
        self.registrations[key] = reg
        self._send(reg, expires, now)

    def unregister(self, key: Hashable, now: float) -> None:
        """Remove the binding (Expires: 0; a REGISTER still in flight is overtaken: the
        registrar keeps the higher CSeq of a Call-ID). `RegistrationEnded` follows."""
        reg = self.registrations.get(key)
        if reg is None or reg.state in (RegistrationState.UNREGISTERING, RegistrationState.ENDED):
            return
        reg.deadline = None
        reg.state = RegistrationState.UNREGISTERING
        reg.auth_tries = 0
        self._send(reg, 0, now)

    # -- wire ------------------------------------------------------------------------

    def _send(
        self, reg: Registration, expires: int, now: float, answer: tuple[str, str] | None = None
    ) -> None:
        """A new REGISTER of `reg` (fresh branch, next CSeq) asking for `expires`, with
        `answer` (an Authorization or Proxy-Authorization header) or, when there is
        none, credentials on the last nonce if we hold one."""
        reg.cseq += 1
        uri = f"sip:{self.domain}"
        h = Headers()
        h.add(
            "Via",
            f"SIP/2.0/UDP {self._host()}:{self.local[1]};branch=z9hG4bK{self._token(10)};rport",
        )
        h.add("Max-Forwards", "70")
        h.add("From", f"<{reg.aor}>;tag={reg.from_tag}")
        h.add("To", f"<{reg.aor}>")
        h.add("Call-ID", reg.call_id)
        h.add("CSeq", f"{reg.cseq} REGISTER")
        h.add("Contact", f"<{reg.contact}>")
        h.add("Expires", str(expires))
        h.add("User-Agent", self.user_agent)
        if answer is not None:
            h.add(*answer)
        else:
            credentials = reg.digest.authorization("REGISTER", uri)
            if credentials is not None:
                h.add("Authorization", credentials)
        tx = self.layer.send_request(
            Request(h, b"", "REGISTER", parse_uri(uri)), self.registrar, now
        )
        tx.user_data = reg
        reg.tx = tx

    def receive_response(self, resp: Response, peer: Peer, now: float) -> None:
        """A response to one of our REGISTERs (check `owns` first). Never raises on bad
        input: a response whose headers cannot be read is dropped and logged."""
        try:
            if len(resp.vias) != 1:
                return  # §18.1.2: not ours
            events = self.layer.receive_response(resp, peer, now)
        except ParseError as exc:
            log.info("dropped a %d response to REGISTER: %s", resp.status, exc.reason)
            return
        for ev in events:
            try:
                self._on_tx_event(ev, now)
            except ParseError as exc:
                log.info("dropped a %d response to REGISTER: %s", resp.status, exc.reason)

    def _on_tx_event(self, ev: TxEvent, now: float) -> None:
        if isinstance(ev, ResponseReceived):
            reg = ev.tx.user_data
            if isinstance(reg, Registration) and reg.tx is ev.tx:
                self._on_response(reg, ev.response, now)
        elif isinstance(ev, TransactionTimedOut | TransportFailed):
            reg = ev.tx.user_data
            if isinstance(reg, Registration) and reg.tx is ev.tx:
                timed_out = isinstance(ev, TransactionTimedOut)
                reason = (
                    "the registrar did not answer"
                    if timed_out
                    else "the registrar cannot be reached"
                )
                self._failed(reg, 408 if timed_out else 503, reason, None, now)

    def _on_response(self, reg: Registration, resp: Response, now: float) -> None:
        status = resp.status
        if status < 200:
            return
        reg.tx = None
        if reg.state is RegistrationState.UNREGISTERING:
            if status in (401, 407) and self._answer_challenge(reg, resp, now):
                return
            self._end(reg, status)
            return
        if status < 300:
            self._succeeded(reg, resp, now)
            return
        if status in (401, 407):
            if self._answer_challenge(reg, resp, now):
                return
            self._failed(
                reg,
                status,
                f"user {reg.username!r}: the credentials were refused",
                None,
                now,
                final=True,
            )
            return
        if status == 423 and not reg.retried_423:
            raw = resp.headers.get("Min-Expires")
            try:
                minimum = parse_delta_seconds(raw or "", "Min-Expires")
            except ParseError:
                minimum = 0
            if reg.expires < minimum <= MAX_EXPIRES:
                reg.retried_423 = True
                reg.expires = minimum
                self._send(reg, minimum, now)
                return
        retry_after = None
        if status in (500, 503, 600, 603):
            raw = resp.headers.get("Retry-After")
            if raw is not None:
                try:
                    retry_after = parse_delta_seconds(
                        raw.split(";", 1)[0].split("(", 1)[0].strip(), "Retry-After"
                    )
                except ParseError:
                    retry_after = None
        self._failed(
            reg,
            status,
            f"the registrar answered {status} {resp.reason}".rstrip(),
            retry_after,
            now,
            final=status in (403, 404, 603, 604),
        )

    def _answer_challenge(self, reg: Registration, resp: Response, now: float) -> bool:
        """Send the REGISTER again with the answer to a 401/407; False if we cannot or
        must not (no usable challenge, retries spent, credentials already refused)."""
        if reg.auth_tries >= MAX_AUTH_TRIES:
            return False
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenges = resp.headers.raw_values(header)
        if not challenges:
            return False
        try:
            value = reg.digest.authorize(challenges, "REGISTER", f"sip:{self.domain}")
        except DigestClientError as exc:
            log.info("registration of %s: giving up on authentication: %s", reg.username, exc)
            return False
        reg.auth_tries += 1
        expires = 0 if reg.state is RegistrationState.UNREGISTERING else reg.expires
        name = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        self._send(reg, expires, now, (name, value))
        return True

    def _granted(self, reg: Registration, resp: Response) -> int:
        """The expiry the registrar gave our contact (0: our contact is not listed)."""
        ours = parse_uri(reg.contact)
        listed = False
        for contact in resp.contacts:
            if contact.wildcard or not isinstance(contact.uri, SipURI):
                continue
            if contact.uri != ours:
                continue
            listed = True
            value = contact.params.get("expires")
            if value is not None:
                return parse_delta_seconds(value, "Contact expires")
        if resp.contacts and not listed:
            return 0
        raw = resp.headers.get("Expires")
        if raw is not None:
            return parse_delta_seconds(raw, "Expires")
        return reg.expires

    def _succeeded(self, reg: Registration, resp: Response, now: float) -> None:
        reg.digest.succeeded()
        reg.auth_tries = 0
        try:
            granted = self._granted(reg, resp)
        except ParseError as exc:
            self._failed(reg, 500, f"the registrar's 200 is malformed: {exc.reason}", None, now)
            return
        if granted <= 0:
            self._failed(reg, 500, "the registrar answered 200 without our contact", None, now)
            return
        refreshed = reg.ever_registered
        reg.ever_registered = True
        reg.state = RegistrationState.REGISTERED
        reg.granted = granted
        reg.deadline = now + refresh_delay(granted)
        self._events.append(RegistrationSucceeded(reg.key, granted, refreshed))

    def _failed(
        self,
        reg: Registration,
        status: int,
        reason: str,
        retry_after: int | None,
        now: float,
        *,
        final: bool = False,
    ) -> None:
        reg.tx = None
        if reg.state is RegistrationState.UNREGISTERING:
            self._end(reg, status)
            return
        if final or not reg.ever_registered:
            reg.state = RegistrationState.ENDED
            reg.deadline = None
            del self.registrations[reg.key]
            self._events.append(RegistrationFailed(reg.key, status, reason, None))
            return
        delay = float(min(retry_after, MAX_RETRY_AFTER)) if retry_after else RETRY_INTERVAL
        reg.state = RegistrationState.RETRYING
        reg.deadline = now + delay
        self._events.append(RegistrationFailed(reg.key, status, reason, reg.deadline))

    def _end(self, reg: Registration, status: int) -> None:
        reg.state = RegistrationState.ENDED
        reg.deadline = None
        reg.tx = None
        self.registrations.pop(reg.key, None)
        self._events.append(RegistrationEnded(reg.key, status))
