"""The registrar (RFC 3261 §10.3): bindings of addresses-of-record to contacts, with
expiry, several contacts per AOR, wildcard un-REGISTER and Call-ID/CSeq ordering.

Owns the bindings table and the REGISTER decision (the response to send). Digest
authentication is delegated to an `Authenticator` passed in; this module never sees a
password. Time comes in as `now`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

from hotline.sip.errors import ParseError
from hotline.sip.headers import Address, parse_delta_seconds
from hotline.sip.message import Request, Response, make_response
from hotline.sip.uri import SipURI


@dataclass(frozen=True)
class AuthDecision:
    """What an authenticator concluded: `username` when accepted, otherwise the
    response to send (401/403) with its challenge headers."""

    username: str | None
    status: int = 401
    headers: tuple[tuple[str, str], ...] = ()


class Authenticator(Protocol):
    def authenticate(self, request: Request, now: float, source: str) -> AuthDecision: ...


@dataclass(eq=False)
class Binding:
    contact: Address  # as the UA sent it (URI and contact params kept)
    expires_at: float
    call_id: str
    cseq: int
    q: float = 1.0
    source: str = ""  # IP address the REGISTER came from

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts_per_aor: int = 10


@dataclass(frozen=True)
class RegistrationChanged:
    aor: str
    contacts: tuple[str, ...]
    username: str | None


@dataclass(eq=False)
class Registrar:
    policy: RegistrarPolicy = field(default_factory=RegistrarPolicy)
    authenticator: Authenticator | None = None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    _expiries: list[tuple[float, str]] = field(default_factory=list, repr=False)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings for `aor` (``sip:user@host``), highest q first."""
        live = [b for b in self.bindings.get(aor, []) if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def lookup_user(self, user: str, now: float) -> list[Binding]:
        """Live bindings of every AOR whose user part is `user` (any domain)."""
        out: list[Binding] = []
        for aor, bs in self.bindings.items():
            if aor.split(":", 1)[-1].split("@", 1)[0] == user:
                out.extend(b for b in bs if b.expires_at > now)
        return sorted(out, key=lambda b: -b.q)

    def expire(self, now: float) -> list[str]:
        """Drop bindings due by `now`; return the AORs that lost their last contact.
        Only AORs with a binding due are visited (a heap of expiry times)."""
        gone = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, aor = heapq.heappop(heap)
            bindings = self.bindings.get(aor)
            if bindings is None:
                continue
            live = [b for b in bindings if b.expires_at > now]
            if live:
                self.bindings[aor] = live
            else:
                del self.bindings[aor]
                gone.append(aor)
        return gone

    def next_expiry(self) -> float | None:
        """When `expire` next has work (may be early for a binding since refreshed)."""
        return self._expiries[0][0] if self._expiries else None

    def handle(self, req: Request, now: float, source: str = ""
               ) -> tuple[Response, RegistrationChanged | None]:
        """Process a REGISTER and return the response (and the change, if any)."""
        to_uri = req.to.uri
        if not isinstance(to_uri, SipURI):
            return make_response(req, 400, "To must be a sip or sips URI"), None
        try:
            req.contacts  # noqa: B018 - a malformed Contact is a 400 before any challenge
        except ParseError as exc:
            return make_response(req, 400, exc.reason[:120]), None
        username: str | None = None
        if self.authenticator is not None:
            decision = self.authenticator.authenticate(req, now, source)
            if decision.username is None:
                return make_response(req, decision.status, extra=list(decision.headers)), None
            username = decision.username
            if to_uri.user != username:
                return make_response(req, 403, "Not your address-of-record"), None
        aor = to_uri.aor()
        try:
            contacts = req.contacts
            expires_hdr = req.headers.get("Expires")
            default = (parse_delta_seconds(expires_hdr, "Expires") if expires_hdr is not None
                       else self.policy.default_expires)
            changed = self._apply(req, aor, contacts, default, now, source)
        except ParseError as exc:
            return make_response(req, 400, exc.reason[:120]), None
        except _IntervalTooBrief:
            return make_response(
                req, 423, extra=[("Min-Expires", str(self.policy.min_expires))]
            ), None
        except _TooManyContacts:
            return make_response(req, 403, "Too many contacts"), None
        live = self.lookup(aor, now)
        resp = make_response(req, 200)
        for b in live:
            resp.headers.add("Contact", f"{_contact_text(b.contact)};expires={b.remaining(now)}")
        event = None
        if changed:
            event = RegistrationChanged(aor, tuple(str(b.contact.uri) for b in live), username)
        return resp, event

    def _apply(self, req: Request, aor: str, contacts: list[Address], default: int,
               now: float, source: str) -> bool:
        if any(c.wildcard for c in contacts):
            if len(contacts) != 1 or default != 0 or req.headers.get("Expires") is None:
                raise ParseError("Contact: * needs Expires: 0 and no other contact")
            existing = self.bindings.pop(aor, [])
            return bool(existing)
        if not contacts:
            return False  # a query
        current = {_binding_key(b.contact): b for b in self.bindings.get(aor, [])
                   if b.expires_at > now}
        changed = False
        call_id = req.call_id
        cseq = req.cseq.number
        for c in contacts:
            if not isinstance(c.uri, SipURI):
                raise ParseError(f"Contact: unsupported contact URI scheme {c.uri}")
            p = c.params.get("expires")
            expires = parse_delta_seconds(p, "Contact expires") if p is not None else default
            if 0 < expires < self.policy.min_expires:
                raise _IntervalTooBrief()
            expires = min(expires, self.policy.max_expires)
            key = _binding_key(c)
            old = current.get(key)
            if old is not None and old.call_id == call_id and old.cseq >= cseq:
                continue  # out of order (§10.3 step 7)
            q = _q(c)
            if expires == 0:
                if current.pop(key, None) is not None:
                    changed = True
                continue
            current[key] = Binding(c, now + expires, call_id, cseq, q, source)
            heapq.heappush(self._expiries, (now + expires, aor))
            changed = changed or old is None
        if len(current) > self.policy.max_contacts_per_aor:
            raise _TooManyContacts()
        if current:
            self.bindings[aor] = list(current.values())
        else:
            self.bindings.pop(aor, None)
        return changed


class _IntervalTooBrief(Exception):
    pass


class _TooManyContacts(Exception):
    pass


def _binding_key(contact: Address) -> str:
    uri = contact.uri
    if isinstance(uri, SipURI):
        return f"{uri.scheme.lower()}:{uri.user}@{uri.host_bare}:{uri.port}{uri.params}" + (
            "?" + "&".join(f"{k}={v}" for k, v in uri.headers) if uri.headers else ""
        )
    return str(uri)


def _contact_text(contact: Address) -> str:
    params = contact.params.copy()
    params.remove("expires")
    return str(type(contact)(contact.uri, contact.display_name, params))


def _q(contact: Address) -> float:
    q = contact.params.get("q")
    try:
        return max(0.0, min(1.0, float(q))) if q is not None else 1.0
    except ValueError:
        return 1.0
