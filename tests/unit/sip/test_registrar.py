"""Registrar (RFC 3261 §10.3) through the endpoint, with digest auth and a fake clock."""

from __future__ import annotations

import re

from hotline.sip.auth import Algorithm, DigestClient, DigestVerifier, compute_ha1
from hotline.sip.auth_policy import DigestAuthenticator
from hotline.sip.endpoint import Registered
from hotline.sip.message import Response
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import Registrar, RegistrarPolicy
from tests.unit.sip.sipfake import CALLER, Harness

REALM = "hotline.test"
USERS = {"alice": "wonderland"}


def lookup(user: str) -> dict[Algorithm, str] | None:
    pw = USERS.get(user)
    if pw is None:
        return None
    return {a: compute_ha1(user, REALM, pw, a) for a in (Algorithm.SHA256, Algorithm.MD5)}


def make(auth: bool = True, **policy: int) -> Harness:
    authenticator = None
    if auth:
        verifier = DigestVerifier(REALM, b"s" * 32, lookup, random_bytes=lambda n: b"\x01" * n)
        authenticator = DigestAuthenticator(verifier, RateLimiter(0.2, 3))
    return Harness.make(registrar=Registrar(RegistrarPolicy(**policy), authenticator))


_n = [0]


def register(user: str = "alice", contacts: str = "<sip:alice@192.0.2.10:5062>",
             expires: int | None = 600, auth: str | None = None, call_id: str = "reg-1",
             cseq: int | None = None) -> str:
    _n[0] += 1
    cseq = cseq if cseq is not None else _n[0]
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKreg{_n[0]};rport",
        f"From: <sip:{user}@{REALM}>;tag=f{_n[0]}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    if contacts:
        lines.append(f"Contact: {contacts}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


def one(h: Harness, data: str) -> Response:
    [r] = h.feed(data)
    assert isinstance(r, Response)
    return r


def authorized(h: Harness, user: str = "alice", password: str = "wonderland", **kw: object) -> Response:
    r = one(h, register(user, **kw))  # type: ignore[arg-type]
    assert r.status == 401
    client = DigestClient(user, password, random_bytes=lambda n: b"\x02" * n)
    value = client.authorize(r.headers.raw_values("WWW-Authenticate"), "REGISTER", f"sip:{REALM}")
    return one(h, register(user, auth=value, **kw))  # type: ignore[arg-type]


def test_challenge_offers_sha256_then_md5() -> None:
    r = one(make(), register())
    assert r.status == 401
    values = r.headers.raw_values("WWW-Authenticate")
    assert [re.search(r"algorithm=([\w-]+)", v).group(1) for v in values] == ["SHA-256", "MD5"]  # type: ignore[union-attr]
    assert all('qop="auth"' in v and f'realm="{REALM}"' in v for v in values)


def test_authorized_register_binds_and_reports_expiry() -> None:
    h = make()
    r = authorized(h)
    assert r.status == 200
    assert r.headers.get_all("Contact") == ["<sip:alice@192.0.2.10:5062>;expires=600"]
    [ev] = [e for e in h.take_events() if isinstance(e, Registered)]
    assert ev.change.aor == f"sip:alice@{REALM}" and ev.change.username == "alice"
    assert h.ep.registrar is not None
    [b] = h.ep.registrar.lookup(f"sip:alice@{REALM}", h.now)
    assert b.source == CALLER.host
    # Bindings expire.
    h.advance(601)
    assert h.ep.registrar.lookup(f"sip:alice@{REALM}", h.now) == []


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    h = make()
    bad = authorized(h, password="nope")
    unknown = authorized(h, user="mallory", password="nope")
    assert bad.status == unknown.status == 401
    strip = lambda r: [re.sub(r'nonce="[^"]+"', "", v) for v in r.headers.raw_values("WWW-Authenticate")]  # noqa: E731
    assert strip(bad) == strip(unknown)


def test_failures_are_throttled_per_source() -> None:
    h = make()
    codes = [authorized(h, password="nope").status for _ in range(3)]
    assert codes == [401, 401, 401]
    # The burst (3) of failures is spent: the source is refused outright.
    assert one(h, register()).status == 403
    h.advance(6)  # 0.2 tokens/s refill one attempt
    assert one(h, register()).status == 401


def test_cannot_register_someone_elses_aor() -> None:
    h = make()
    r = one(h, register(user="bob"))
    client = DigestClient("alice", "wonderland", random_bytes=lambda n: b"\x03" * n)
    value = client.authorize(r.headers.raw_values("WWW-Authenticate"), "REGISTER", f"sip:{REALM}")
    assert one(h, register(user="bob", auth=value)).status == 403


def test_multiple_contacts_query_and_unregister() -> None:
    h = make(auth=False)
    r = one(h, register(contacts="<sip:a@192.0.2.10:5062>;q=0.5, <sip:a@192.0.2.11:5062>"))
    assert r.status == 200 and len(r.headers.get_all("Contact")) == 2
    assert h.ep.registrar is not None
    order = [str(b.contact.uri) for b in h.ep.registrar.lookup(f"sip:alice@{REALM}", h.now)]
    assert order == ["sip:a@192.0.2.11:5062", "sip:a@192.0.2.10:5062"]  # by q
    # A query (no Contact) lists the bindings and changes nothing.
    r = one(h, register(contacts=""))
    assert r.status == 200 and len(r.headers.get_all("Contact")) == 2
    # expires=0 on one contact removes just that one.
    r = one(h, register(contacts="<sip:a@192.0.2.10:5062>;expires=0"))
    assert r.headers.get_all("Contact") == ["<sip:a@192.0.2.11:5062>;expires=600"]
    # Contact: * with Expires: 0 removes all.
    r = one(h, register(contacts="*", expires=0))
    assert r.status == 200 and r.headers.get_all("Contact") == []


def test_wildcard_needs_expires_zero() -> None:
    assert one(make(auth=False), register(contacts="*", expires=600)).status == 400


def test_interval_too_brief_and_clamped() -> None:
    h = make(auth=False, min_expires=60, max_expires=3600)
    r = one(h, register(expires=10))
    assert r.status == 423 and r.headers.get("Min-Expires") == "60"
    r = one(h, register(expires=99999))
    assert r.headers.get_all("Contact") == ["<sip:alice@192.0.2.10:5062>;expires=3600"]


def test_too_many_contacts() -> None:
    h = make(auth=False, max_contacts_per_aor=2)
    r = one(h, register(contacts=", ".join(f"<sip:a@192.0.2.{i}>" for i in range(1, 4))))
    assert r.status == 403


def test_out_of_order_cseq_does_not_overwrite() -> None:
    h = make(auth=False)
    one(h, register(cseq=10, expires=600))
    r = one(h, register(cseq=5, contacts="<sip:alice@192.0.2.10:5062>;expires=0"))
    assert r.headers.get_all("Contact") == ["<sip:alice@192.0.2.10:5062>;expires=600"]


def test_expiry_is_a_timer_and_reports_the_aor_gone() -> None:
    h = make(auth=False)
    one(h, register(expires=600))
    h.take_events()
    assert h.ep.next_timer() == h.now + 32  # Timer J of the REGISTER transaction first
    h.advance(40)
    assert h.ep.next_timer() == h.now - 40 + 600  # then the binding's expiry
    h.advance(559)
    assert not [e for e in h.take_events() if isinstance(e, Registered)]
    h.advance(2)
    [gone] = [e for e in h.take_events() if isinstance(e, Registered)]
    assert gone.change.aor == f"sip:alice@{REALM}" and gone.change.contacts == ()
    assert h.ep.registrar is not None and h.ep.registrar.bindings == {}
    assert h.ep.next_timer() is None
