"""Presence through the endpoint (RFC 3856): PUBLISH (RFC 3903), subscriptions to us
and subscriptions we hold (RFC 6665), with a fake clock and no sockets; and the pure
pieces of hotline.sip.events (header grammars, expiry policy, publication table)."""

from __future__ import annotations

import re
from typing import TypeVar

import pytest

from hotline.sip.addr import Peer
from hotline.sip.auth import Algorithm, DigestClient, DigestVerifier, compute_ha1
from hotline.sip.auth_policy import DigestAuthenticator
from hotline.sip.endpoint import (
    Endpoint,
    EndpointConfig,
    PresenceNotified,
    PresencePublished,
    PresenceRemoved,
    SubscriptionEnded,
    SubscriptionRequested,
)
from hotline.sip.errors import ParseError
from hotline.sip.events import (
    EventHeader,
    ExpiryPolicy,
    IntervalTooBrief,
    PresencePolicy,
    PublicationTable,
    Subscription,
    SubscriptionEndReason,
    SubscriptionRole,
    SubscriptionState,
    parse_event,
    parse_sipfrag_status,
    parse_subscription_state,
    sipfrag,
)
from hotline.sip.message import Request, Response
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.transaction import Timers
from tests.unit.sip.sipfake import CALLER, Harness, seeded_random, statuses

REALM = "hotline.test"
ALICE = f"sip:alice@{REALM}"
PIDF_OPEN = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:alice@hotline.test"><tuple id="t1"><status><basic>open</basic>'
    b"</status></tuple></presence>"
)
PIDF_CLOSED = PIDF_OPEN.replace(b">open<", b">closed<")
T = TypeVar("T")


def lookup(user: str) -> dict[Algorithm, str] | None:
    pw = {"alice": "wonderland", "bob": "builder"}.get(user)
    return (
        None if pw is None else {Algorithm.SHA256: compute_ha1(user, REALM, pw, Algorithm.SHA256)}
    )


def make(*, auth: bool = False, presence: bool = True, **policy: object) -> Harness:
    conf = EndpointConfig(local={"udp": ("198.51.100.1", 5060)}, timers=Timers())
    authenticator = None
    if auth:
        verifier = DigestVerifier(
            REALM,
            b"s" * 32,
            lookup,
            random_bytes=seeded_random(3).randbytes,
            algorithms=(Algorithm.SHA256,),
        )
        authenticator = DigestAuthenticator(verifier, RateLimiter(0.2, 3))
    ep = Endpoint(
        conf,
        seeded_random().randbytes,
        presence=PresencePolicy(**policy) if presence else None,  # type: ignore[arg-type]
        publish_auth=authenticator,
    )
    return Harness(ep)


def events_of(h: Harness, kind: type[T]) -> list[T]:
    return [e for e in h.take_events() if isinstance(e, kind)]


def one(h: Harness, data: str, peer: Peer = CALLER) -> Response:
    [r] = [m for m in h.feed(data, peer) if isinstance(m, Response)]
    return r


_n = [0]


def publish(
    user: str = "alice",
    body: bytes = PIDF_OPEN,
    *,
    expires: int | None = None,
    if_match: str | None = None,
    event: str | None = "presence",
    auth: str | None = None,
    ctype: str = "application/pidf+xml",
    extra: str = "",
) -> str:
    _n[0] += 1
    n = _n[0]
    lines = [
        f"PUBLISH sip:{user}@{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKpub{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag=p{n}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: pub-{n}@192.0.2.10",
        f"CSeq: {n} PUBLISH",
    ]
    if event is not None:
        lines.append(f"Event: {event}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if if_match is not None:
        lines.append(f"SIP-If-Match: {if_match}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    if body:
        lines.append(f"Content-Type: {ctype}")
    head = "\r\n".join(lines) + "\r\n" + extra
    return head + f"Content-Length: {len(body)}\r\n\r\n" + body.decode()


# -- PUBLISH ---------------------------------------------------------------------


def test_initial_publish_gets_an_etag_and_reports_the_document() -> None:
    h = make()
    r = one(h, publish(expires=600))
    assert r.status == 200 and r.headers.get("Expires") == "600"
    etag = r.headers.get("SIP-ETag")
    assert etag
    [ev] = events_of(h, PresencePublished)
    assert ev == PresencePublished(ALICE, PIDF_OPEN, etag, h.now + 600, None)
    [pub] = h.ep.publications.live(ALICE, h.now)
    assert pub.etag == etag and pub.body == PIDF_OPEN


def test_publish_expiry_is_clamped_defaulted_and_423_below_the_minimum() -> None:
    h = make(publish=ExpiryPolicy(min_expires=60, max_expires=3600, default_expires=1800))
    assert one(h, publish(expires=99999)).headers.get("Expires") == "3600"
    assert one(h, publish()).headers.get("Expires") == "1800"
    r = one(h, publish(expires=10))
    assert r.status == 423 and r.headers.get("Min-Expires") == "60"
    assert len(events_of(h, PresencePublished)) == 2


def test_refresh_modify_and_remove_by_etag() -> None:
    h = make()
    etag1 = one(h, publish(expires=600)).headers.get("SIP-ETag") or ""
    h.take_events()
    h.now += 100
    # Refresh: no body; a new entity-tag, the same document, a new expiry.
    r = one(h, publish(body=b"", expires=600, if_match=etag1))
    etag2 = r.headers.get("SIP-ETag") or ""
    assert r.status == 200 and etag2 and etag2 != etag1
    assert events_of(h, PresencePublished) == [
        PresencePublished(ALICE, PIDF_OPEN, etag2, h.now + 600, etag1)
    ]
    # The old entity-tag is gone.
    assert one(h, publish(body=b"", if_match=etag1)).status == 412
    # Modify: a body with SIP-If-Match replaces the document.
    r = one(h, publish(body=PIDF_CLOSED, expires=300, if_match=etag2))
    etag3 = r.headers.get("SIP-ETag") or ""
    [ev] = events_of(h, PresencePublished)
    assert (ev.body, ev.etag, ev.previous_etag, ev.expires) == (
        PIDF_CLOSED,
        etag3,
        etag2,
        h.now + 300,
    )
    # Remove: Expires 0.
    r = one(h, publish(body=b"", expires=0, if_match=etag3))
    assert r.status == 200 and r.headers.get("Expires") == "0"
    assert events_of(h, PresenceRemoved) == [PresenceRemoved(ALICE, etag3, expired=False)]
    assert h.ep.publications.live(ALICE, h.now) == [] and len(h.ep.publications) == 0


def test_unknown_or_foreign_etag_is_412() -> None:
    h = make()
    etag = one(h, publish(expires=600)).headers.get("SIP-ETag") or ""
    assert one(h, publish(body=b"", if_match="nosuchtag")).status == 412
    # An entity-tag of alice's publication does not refresh bob's.
    assert one(h, publish("bob", body=b"", if_match=etag)).status == 412
    assert len(events_of(h, PresencePublished)) == 1


def test_other_event_packages_are_489_with_allow_events() -> None:
    h = make()
    r = one(h, publish(event="dialog"))
    assert r.status == 489 and r.headers.get("Allow-Events") == "presence"
    assert one(h, publish(event="presence.winfo")).status == 489


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"event": None}, 400, "without an Event header"),
        ({"event": "pres ence"}, 400, "Event: expected"),
        ({"body": b""}, 400, "needs a body"),
        ({"expires": None, "extra": "Expires: soon\r\n"}, 400, "Expires: expected delta-seconds"),
        ({"if_match": "a b"}, 400, "one entity-tag"),
        ({"ctype": "application/xpidf+xml"}, 415, "Unsupported Media Type"),
    ],
)
def test_malformed_publish(kwargs: dict[str, object], status: int, reason: str) -> None:
    h = make()
    r = one(h, publish(**kwargs))  # type: ignore[arg-type]
    assert r.status == status and reason in r.reason
    if status == 415:
        assert r.headers.get("Accept") == "application/pidf+xml"
    assert h.take_events() == []
    assert one(h, publish()).status == 200  # the endpoint goes on


def test_publication_lapses_through_the_timer() -> None:
    h = make()
    etag = one(h, publish(expires=60)).headers.get("SIP-ETag") or ""
    h.take_events()
    h.advance(40)  # the PUBLISH transaction's Timer J (32 s) has gone
    assert h.ep.next_timer() == h.now - 40 + 60
    h.advance(19.9)
    assert events_of(h, PresenceRemoved) == []
    h.advance(0.2)
    assert events_of(h, PresenceRemoved) == [PresenceRemoved(ALICE, etag, expired=True)]
    assert len(h.ep.publications) == 0 and h.ep.next_timer() is None
    assert one(h, publish(body=b"", if_match=etag)).status == 412


def test_a_lapsed_publication_is_reported_before_the_request_naming_it() -> None:
    h = make()
    etag = one(h, publish(expires=60)).headers.get("SIP-ETag") or ""
    h.take_events()
    h.now += 61  # no timer run: the PUBLISH itself finds it lapsed
    assert one(h, publish(body=b"", if_match=etag)).status == 412
    assert events_of(h, PresenceRemoved) == [PresenceRemoved(ALICE, etag, expired=True)]


def test_body_check_hook_turns_a_bad_document_into_400() -> None:
    h = make(check_body=lambda body: None if body.startswith(b"<?xml") else "not PIDF")
    r = one(h, publish(body=b"<presence/ garbage"))
    assert r.status == 400 and "not PIDF" in r.reason
    assert one(h, publish()).status == 200


def test_without_a_presence_policy_publish_and_subscribe_are_405() -> None:
    h = make(presence=False)
    r = one(h, publish())
    assert r.status == 405 and "PUBLISH" not in (r.headers.get("Allow") or "")
    assert one(h, subscribe_request()).status == 405
    with pytest.raises(ValueError, match="needs a presence policy"):
        Endpoint(
            h.ep.config,
            seeded_random().randbytes,
            publish_auth=DigestAuthenticator(
                DigestVerifier(REALM, b"s" * 32, lookup, random_bytes=lambda n: b"\x01" * n),
                RateLimiter(1, 1),
            ),
        )


def _answer(r: Response, user: str, password: str, method: str, uri: str) -> str:
    client = DigestClient(user, password, random_bytes=lambda n: b"\x02" * n)
    return client.authorize(r.headers.raw_values("WWW-Authenticate"), method, uri)


def _without_nonce(r: Response) -> list[str]:
    return [re.sub(r'nonce="[^"]+"', "", v) for v in r.headers.raw_values("WWW-Authenticate")]


def test_publish_is_challenged_like_register() -> None:
    h = make(auth=True)
    r = one(h, publish())
    assert r.status == 401 and h.take_events() == []
    challenge = r.headers.raw_values("WWW-Authenticate")
    assert challenge and all(f'realm="{REALM}"' in v for v in challenge)
    # A wrong password and an unknown user get the same answer.
    bad = one(h, publish(auth=_answer(r, "alice", "nope", "PUBLISH", ALICE)))
    unknown = one(
        h, publish("mallory", auth=_answer(r, "mallory", "nope", "PUBLISH", f"sip:mallory@{REALM}"))
    )
    assert bad.status == unknown.status == 401
    assert _without_nonce(bad) == _without_nonce(unknown)
    ok = one(h, publish(auth=_answer(r, "alice", "wonderland", "PUBLISH", ALICE)))
    assert ok.status == 200 and len(events_of(h, PresencePublished)) == 1
    # Bob may not publish alice's presence.
    r = one(h, publish())
    assert one(h, publish(auth=_answer(r, "bob", "builder", "PUBLISH", ALICE))).status == 403


# -- subscriptions to us ------------------------------------------------------------


def subscribe_request(
    user: str = "alice",
    *,
    expires: int | None = 600,
    event: str = "presence",
    accept: str | None = "application/pidf+xml",
    to_tag: str | None = None,
    cseq: int = 1,
    call_id: str = "sub-1",
    auth: str | None = None,
    contact: bool = True,
) -> str:
    _n[0] += 1
    lines = [
        f"SUBSCRIBE sip:{user}@{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKsub{_n[0]};rport",
        "Max-Forwards: 70",
        "From: <sip:bob@192.0.2.10>;tag=w1",
        f"To: <sip:{user}@{REALM}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} SUBSCRIBE",
        f"Event: {event}",
    ]
    if contact:
        lines.append("Contact: <sip:bob@192.0.2.10:5062>")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if accept is not None:
        lines.append(f"Accept: {accept}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


def subscribed(h: Harness, **kw: object) -> tuple[Subscription, Response]:
    r = one(h, subscribe_request(**kw))  # type: ignore[arg-type]
    assert r.status == 200, r
    [ev] = events_of(h, SubscriptionRequested)
    return ev.subscription, r


def notify_sent(h: Harness, out: list[Response | Request] | None = None) -> Request:
    """The one NOTIFY sent (in `out`, or among what is waiting to be sent)."""
    [req] = [m for m in (h.flush() if out is None else out) if isinstance(m, Request)]
    assert req.method == "NOTIFY"
    return req


def reply(req: Request, status: int) -> str:
    return (
        f"SIP/2.0 {status} X\r\nVia: {req.headers.get('Via')}\r\nFrom: {req.headers.get('From')}\r\n"
        f"To: {req.headers.get('To')}\r\nCall-ID: {req.call_id}\r\nCSeq: {req.headers.get('CSeq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def test_subscribe_is_answered_then_notified_with_subscription_state() -> None:
    h = make()
    sub, r = subscribed(h)
    assert r.headers.get("Expires") == "600" and r.headers.get("Contact")
    assert r.to.tag == sub.local_tag
    assert (sub.role, sub.entity, sub.subscriber, sub.expires) == (
        SubscriptionRole.NOTIFIER,
        ALICE,
        "sip:bob@192.0.2.10",
        600,
    )
    assert sub.expires_at == h.now + 600 and sub.state is SubscriptionState.ACTIVE
    assert h.ep.watchers(ALICE) == [sub]
    h.now += 10
    h.ep.notify(sub, PIDF_OPEN, h.now)
    n = notify_sent(h)
    assert str(n.uri) == "sip:bob@192.0.2.10:5062" and h.sent[-1][1] == CALLER
    assert n.to.tag == "w1" and n.from_.tag == sub.local_tag and n.call_id == "sub-1"
    assert n.headers.get("Event") == "presence"
    assert n.headers.get("Subscription-State") == "active;expires=590"
    assert n.headers.get("Content-Type") == "application/pidf+xml" and n.body == PIDF_OPEN
    assert n.cseq.number == 1 and n.headers.get("Contact")
    h.feed(reply(n, 200))
    assert h.take_events() == []


def test_notifies_wait_for_the_previous_answer_and_only_the_latest_waits() -> None:
    h = make()
    sub, _ = subscribed(h)
    h.ep.notify(sub, PIDF_OPEN, h.now)
    first = notify_sent(h)
    h.ep.notify(sub, PIDF_CLOSED, h.now)
    h.ep.notify(sub, PIDF_OPEN + b" ", h.now)
    assert h.flush() == []
    second = notify_sent(h, h.feed(reply(first, 200)))
    assert second.body == PIDF_OPEN + b" " and second.cseq.number == 2


def test_refresh_updates_expiry_and_resends_the_state() -> None:
    h = make()
    sub, _ = subscribed(h)
    h.ep.notify(sub, PIDF_OPEN, h.now)
    h.feed(reply(notify_sent(h), 200))
    h.now += 300
    out = h.feed(subscribe_request(expires=1200, to_tag=sub.local_tag, cseq=2))
    [r] = [m for m in out if isinstance(m, Response)]
    assert r.status == 200 and r.headers.get("Expires") == "1200"
    assert sub.expires_at == h.now + 1200
    n = notify_sent(h, out)
    assert n.headers.get("Subscription-State") == "active;expires=1200" and n.body == PIDF_OPEN
    # An out-of-order refresh is refused.
    assert one(h, subscribe_request(to_tag=sub.local_tag, cseq=2)).status == 500
    # A refresh for another package or id is 489.
    assert (
        one(h, subscribe_request(to_tag=sub.local_tag, cseq=3, event="presence;id=7")).status == 489
    )


def test_unsubscribe_sends_the_final_notify_with_the_last_body() -> None:
    h = make()
    sub, _ = subscribed(h)
    h.ep.notify(sub, PIDF_OPEN, h.now)
    h.feed(reply(notify_sent(h), 200))
    out = h.feed(subscribe_request(expires=0, to_tag=sub.local_tag, cseq=2))
    [r] = [m for m in out if isinstance(m, Response)]
    [n] = [m for m in out if isinstance(m, Request)]
    assert r.status == 200 and r.headers.get("Expires") == "0"
    assert (
        n.headers.get("Subscription-State") == "terminated;reason=timeout" and n.body == PIDF_OPEN
    )
    [ended] = events_of(h, SubscriptionEnded)
    assert ended.subscription is sub and ended.reason is SubscriptionEndReason.UNSUBSCRIBED
    assert h.ep.watchers(ALICE) == [] and sub.state is SubscriptionState.TERMINATED
    assert one(h, subscribe_request(to_tag=sub.local_tag, cseq=3)).status == 481
    with pytest.raises(ValueError, match="has ended"):
        h.ep.notify(sub, PIDF_OPEN, h.now)


def test_subscription_expiry_notifies_terminated_and_ends_it() -> None:
    h = make()
    sub, _ = subscribed(h, expires=60)
    h.ep.notify(sub, PIDF_OPEN, h.now)
    h.feed(reply(notify_sent(h), 200))
    out = h.advance(59.9)
    assert events_of(h, SubscriptionEnded) == []
    out = h.advance(0.2)
    [n] = [m for m in out if isinstance(m, Request) and m.method == "NOTIFY"]
    assert (
        n.headers.get("Subscription-State") == "terminated;reason=timeout" and n.body == PIDF_OPEN
    )
    [ended] = events_of(h, SubscriptionEnded)
    assert ended.reason is SubscriptionEndReason.EXPIRED and ended.detail == "timeout"
    assert len(h.ep.subscriptions) == 0


def test_fetch_ends_with_the_first_notify() -> None:
    h = make()
    sub, r = subscribed(h, expires=0)
    assert r.headers.get("Expires") == "0"
    h.ep.notify(sub, PIDF_OPEN, h.now)
    n = notify_sent(h)
    assert (
        n.headers.get("Subscription-State") == "terminated;reason=timeout" and n.body == PIDF_OPEN
    )
    [ended] = events_of(h, SubscriptionEnded)
    assert ended.reason is SubscriptionEndReason.EXPIRED


def test_application_terminates_and_watcher_rejects() -> None:
    h = make()
    sub, _ = subscribed(h, call_id="s-a")
    h.ep.notify(sub, None, h.now, terminate="noresource")
    n = notify_sent(h)
    assert n.headers.get("Subscription-State") == "terminated;reason=noresource" and n.body == b""
    [ended] = events_of(h, SubscriptionEnded)
    assert ended.reason is SubscriptionEndReason.TERMINATED and ended.detail == "noresource"
    sub2, _ = subscribed(h, call_id="s-b")
    h.ep.notify(sub2, PIDF_OPEN, h.now)
    h.feed(reply(notify_sent(h), 481))
    [ended] = events_of(h, SubscriptionEnded)
    assert (ended.subscription, ended.reason, ended.status) == (
        sub2,
        SubscriptionEndReason.REJECTED,
        481,
    )
    assert h.flush() == []  # no terminated NOTIFY to a watcher that dropped it


def test_unanswered_notify_ends_the_subscription() -> None:
    h = make()
    sub, _ = subscribed(h)
    h.ep.notify(sub, PIDF_OPEN, h.now)
    h.flush()
    h.advance(32.1)  # Timer F
    [ended] = events_of(h, SubscriptionEnded)
    assert (ended.reason, ended.status) == (SubscriptionEndReason.FAILED, 408)


@pytest.mark.parametrize(
    ("kw", "status", "header"),
    [
        ({"event": "dialog"}, 489, ("Allow-Events", "presence")),
        ({"accept": "application/xpidf+xml"}, 406, ("Accept", "application/pidf+xml")),
        ({"expires": 10}, 423, ("Min-Expires", "60")),
        ({"contact": False}, 400, None),
        ({"accept": "application/pidf+xml;q=x y"}, 400, None),
    ],
)
def test_refused_subscribes(
    kw: dict[str, object], status: int, header: tuple[str, str] | None
) -> None:
    h = make()
    r = one(h, subscribe_request(**kw))  # type: ignore[arg-type]
    assert r.status == status
    if header is not None:
        assert r.headers.get(header[0]) == header[1]
    assert h.take_events() == [] and len(h.ep.subscriptions) == 0


def test_subscribe_accepts_wildcards_and_clamps() -> None:
    h = make()
    sub, r = subscribed(h, accept="application/*, text/plain", expires=99999)
    assert r.headers.get("Expires") == "3600" and sub.expires == 3600


def test_subscribe_is_authenticated_too() -> None:
    h = make(auth=True)
    r = one(h, subscribe_request())
    assert r.status == 401 and h.take_events() == []
    # The retry carries a higher CSeq (the same one would be a merged request: 482).
    sub, _ = subscribed(h, cseq=2, auth=_answer(r, "bob", "builder", "SUBSCRIBE", ALICE))
    assert sub.username == "bob"


def test_too_many_subscriptions_is_503() -> None:
    h = make(max_subscriptions=1)
    subscribed(h, call_id="one")
    r = one(h, subscribe_request(call_id="two"))
    assert r.status == 503 and r.headers.get("Retry-After")


# -- subscriptions we hold --------------------------------------------------------


CAROL = "sip:carol@192.0.2.50"
NOTIFIER = Peer("udp", "192.0.2.50", 5060)


def sub_reply(req: Request, status: int, *, extra: str = "", tag: str = "n1") -> str:
    to = req.headers.get("To") or ""
    if req.to.tag is None:
        to += f";tag={tag}"
    return (
        f"SIP/2.0 {status} X\r\nVia: {req.headers.get('Via')}\r\nFrom: {req.headers.get('From')}\r\n"
        f"To: {to}\r\nCall-ID: {req.call_id}\r\nCSeq: {req.headers.get('CSeq')}\r\n"
        f"Contact: <sip:carol@192.0.2.50>\r\n{extra}Content-Length: 0\r\n\r\n"
    )


def incoming_notify(
    sub: Subscription,
    cseq: int,
    state: str = "active;expires=600",
    body: bytes = PIDF_OPEN,
    *,
    tag: str = "n1",
    to_tag: str | None = None,
    event: str = "presence",
    contact: str = "<sip:carol@192.0.2.50>",
) -> str:
    _n[0] += 1
    ct = "Content-Type: application/pidf+xml\r\n" if body else ""
    return (
        f"NOTIFY sip:hotline@198.51.100.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKnot{_n[0]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <{CAROL}>;tag={tag}\r\n"
        f"To: <sip:hotline@hotline.local>;tag={to_tag or sub.local_tag}\r\n"
        f"Call-ID: {sub.call_id}\r\nCSeq: {cseq} NOTIFY\r\nEvent: {event}\r\n"
        f"Subscription-State: {state}\r\nContact: {contact}\r\n{ct}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


def sent_subscribe(h: Harness, out: list[Response | Request] | None = None) -> Request:
    """The one SUBSCRIBE sent (in `out`, or among what is waiting to be sent)."""
    msgs = h.flush() if out is None else out
    [req] = [m for m in msgs if isinstance(m, Request) and m.method == "SUBSCRIBE"]
    return req


def active_subscription(h: Harness, expires: int = 600) -> tuple[Subscription, Request]:
    sub = h.ep.subscribe(CAROL, h.now, expires=expires)
    req = sent_subscribe(h)
    h.feed(sub_reply(req, 200, extra=f"Expires: {expires}\r\n"), NOTIFIER)
    return sub, req


def test_subscribe_out_then_notify_events() -> None:
    h = make(presence=False)  # watching needs no presence server
    sub = h.ep.subscribe(CAROL, h.now, expires=600)
    req = sent_subscribe(h)
    assert h.sent[-1][1] == NOTIFIER
    assert req.headers.get("Event") == "presence" and req.headers.get("Expires") == "600"
    assert req.headers.get("Accept") == "application/pidf+xml" and req.cseq.number == 1
    assert req.from_.tag == sub.local_tag and req.to.tag is None and req.headers.get("Contact")
    assert (sub.role, sub.entity, sub.state) == (
        SubscriptionRole.SUBSCRIBER,
        CAROL,
        SubscriptionState.PENDING,
    )
    h.feed(sub_reply(req, 200, extra="Expires: 600\r\n"), NOTIFIER)
    assert h.take_events() == []
    assert statuses(h.feed(incoming_notify(sub, 1), NOTIFIER)) == [200]
    assert events_of(h, PresenceNotified) == [PresenceNotified(sub, PIDF_OPEN, "active")]
    assert sub.state is SubscriptionState.ACTIVE
    assert statuses(h.feed(incoming_notify(sub, 2, "pending", b""), NOTIFIER)) == [200]
    assert events_of(h, PresenceNotified) == [PresenceNotified(sub, b"", "pending")]


def test_subscription_we_hold_is_refreshed_before_it_lapses() -> None:
    h = make()
    start = h.now
    sub, first = active_subscription(h, expires=600)
    assert sub.refresh_at == start + 540  # a minute before the end
    out = h.advance(539.9)
    assert [m for m in out if isinstance(m, Request)] == []
    out = h.advance(0.2)
    [refresh] = [m for m in out if isinstance(m, Request) and m.method == "SUBSCRIBE"]
    assert refresh.call_id == first.call_id and refresh.to.tag == "n1"
    assert refresh.cseq.number == 2 and refresh.headers.get("Expires") == "600"
    assert str(refresh.uri) == "sip:carol@192.0.2.50"  # the 2xx's Contact
    h.feed(sub_reply(refresh, 200, extra="Expires: 120\r\n"), NOTIFIER)
    # A shorter interval: refreshed half-way through it.
    assert sub.expires == 120 and sub.refresh_at == h.now + 60
    assert events_of(h, SubscriptionEnded) == []


def test_notify_for_an_unknown_subscription_is_481() -> None:
    h = make()
    sub, _ = active_subscription(h)
    assert statuses(h.feed(incoming_notify(sub, 1, to_tag="nosuchtag"), NOTIFIER)) == [481]
    assert statuses(h.feed(incoming_notify(sub, 1, tag="otherfork"), NOTIFIER)) == [481]
    assert h.take_events() == []


def test_bad_notifies_for_a_subscription() -> None:
    h = make()
    sub, _ = active_subscription(h)
    assert statuses(h.feed(incoming_notify(sub, 1, event="dialog"), NOTIFIER)) == [489]
    assert statuses(h.feed(incoming_notify(sub, 2, state="active;expires=soon"), NOTIFIER)) == [400]
    no_state = incoming_notify(sub, 3).replace("Subscription-State: active;expires=600\r\n", "")
    assert statuses(h.feed(no_state, NOTIFIER)) == [400]
    assert h.take_events() == []
    assert statuses(h.feed(incoming_notify(sub, 4), NOTIFIER)) == [200]
    assert statuses(h.feed(incoming_notify(sub, 4), NOTIFIER)) == [500]  # CSeq not higher


def test_notifier_terminates_our_subscription() -> None:
    h = make()
    sub, _ = active_subscription(h)
    h.feed(incoming_notify(sub, 1, "terminated;reason=deactivated", b""), NOTIFIER)
    evs = h.take_events()
    assert evs == [
        PresenceNotified(sub, b"", "terminated"),
        SubscriptionEnded(sub, SubscriptionEndReason.TERMINATED, None, "deactivated"),
    ]
    assert statuses(h.feed(incoming_notify(sub, 2), NOTIFIER)) == [481]
    assert h.ep.next_timer() is None or h.advance(4000) is not None
    assert h.take_events() == []


def test_notify_may_come_before_the_2xx() -> None:
    h = make()
    sub = h.ep.subscribe(CAROL, h.now, expires=600)
    req = sent_subscribe(h)
    note = incoming_notify(sub, 5, contact="<sip:carol@192.0.2.51:5070>")
    assert statuses(h.feed(note, NOTIFIER)) == [200]
    assert events_of(h, PresenceNotified) == [PresenceNotified(sub, PIDF_OPEN, "active")]
    assert sub.dialog is not None and sub.dialog.remote_tag == "n1"
    assert str(sub.dialog.remote_target) == "sip:carol@192.0.2.51:5070"  # the NOTIFY's Contact
    h.feed(sub_reply(req, 200, extra="Expires: 600\r\n"), NOTIFIER)
    assert sub.refresh_at == h.now + 540
    h.ep.unsubscribe(sub, h.now)
    unsub = sent_subscribe(h)
    assert str(unsub.uri) == "sip:carol@192.0.2.50"  # the 2xx refreshed the target again
    assert unsub.cseq.number == 2 and unsub.to.tag == "n1" and unsub.headers.get("Expires") == "0"


def test_unsubscribe_ends_at_once_and_absorbs_the_last_notify() -> None:
    h = make()
    sub, _ = active_subscription(h)
    h.feed(incoming_notify(sub, 1), NOTIFIER)
    h.take_events()
    h.ep.unsubscribe(sub, h.now)
    unsub = sent_subscribe(h)
    assert unsub.headers.get("Expires") == "0" and unsub.to.tag == "n1"
    assert events_of(h, SubscriptionEnded) == [
        SubscriptionEnded(sub, SubscriptionEndReason.UNSUBSCRIBED)
    ]
    h.feed(sub_reply(unsub, 200, extra="Expires: 0\r\n"), NOTIFIER)
    out = h.feed(incoming_notify(sub, 2, "terminated;reason=timeout"), NOTIFIER)
    assert statuses(out) == [200] and h.take_events() == []
    assert len(h.ep.subscriptions) == 0
    h.ep.unsubscribe(sub, h.now)  # a second time: nothing
    assert h.flush() == []


def test_unsubscribe_before_the_dialog_exists_goes_out_with_the_2xx() -> None:
    h = make()
    sub = h.ep.subscribe(CAROL, h.now, expires=600)
    req = sent_subscribe(h)
    h.ep.unsubscribe(sub, h.now)
    assert h.flush() == [] and len(events_of(h, SubscriptionEnded)) == 1
    unsub = sent_subscribe(h, h.feed(sub_reply(req, 200, extra="Expires: 600\r\n"), NOTIFIER))
    assert unsub.headers.get("Expires") == "0" and unsub.to.tag == "n1"
    h.advance(40)
    assert len(h.ep.subscriptions) == 0 and h.take_events() == []


def test_subscribe_answers_a_challenge() -> None:
    h = make()
    verifier = DigestVerifier(
        REALM,
        b"s" * 32,
        lookup,
        random_bytes=seeded_random(5).randbytes,
        algorithms=(Algorithm.SHA256,),
    )
    sub = h.ep.subscribe(CAROL, h.now, credentials=("alice", "wonderland"))
    req = sent_subscribe(h)
    challenge = "".join(f"WWW-Authenticate: {c}\r\n" for c in verifier.challenge(h.now))
    again = sent_subscribe(h, h.feed(sub_reply(req, 401, extra=challenge), NOTIFIER))
    assert again.cseq.number == 2 and again.call_id == req.call_id and again.to.tag is None
    assert again.from_.tag == sub.local_tag and verifier.verify_request(again, h.now).accepted
    h.feed(sub_reply(again, 200, extra="Expires: 3600\r\n"), NOTIFIER)
    assert sub.dialog is not None and sub.dialog.local_seq == 2
    assert sub.refresh_at == h.now + 3540
    # The unsubscription is challenged too, and answered although the subscription ended.
    h.ep.unsubscribe(sub, h.now)
    unsub = sent_subscribe(h)
    challenge = "".join(f"WWW-Authenticate: {c}\r\n" for c in verifier.challenge(h.now))
    again = sent_subscribe(h, h.feed(sub_reply(unsub, 401, extra=challenge), NOTIFIER))
    assert again.headers.get("Expires") == "0" and again.cseq.number == 4
    assert verifier.verify_request(again, h.now).accepted


def test_subscribe_retries_once_with_min_expires() -> None:
    h = make()
    sub = h.ep.subscribe(CAROL, h.now, expires=30)
    req = sent_subscribe(h)
    again = sent_subscribe(h, h.feed(sub_reply(req, 423, extra="Min-Expires: 300\r\n"), NOTIFIER))
    assert again.headers.get("Expires") == "300" and again.cseq.number == 2
    h.feed(sub_reply(again, 423, extra="Min-Expires: 900\r\n"), NOTIFIER)
    [ended] = events_of(h, SubscriptionEnded)
    assert (ended.subscription, ended.reason, ended.status) == (
        sub,
        SubscriptionEndReason.REJECTED,
        423,
    )


def test_refused_or_unanswered_subscribe_ends_it() -> None:
    h = make()
    sub = h.ep.subscribe(CAROL, h.now)
    h.feed(sub_reply(sent_subscribe(h), 403), NOTIFIER)
    assert events_of(h, SubscriptionEnded) == [
        SubscriptionEnded(sub, SubscriptionEndReason.REJECTED, 403)
    ]
    sub2 = h.ep.subscribe(CAROL, h.now)
    h.flush()
    h.advance(32.1)
    assert events_of(h, SubscriptionEnded) == [
        SubscriptionEnded(sub2, SubscriptionEndReason.FAILED, 408)
    ]
    assert len(h.ep.subscriptions) == 0


def test_refresh_refused_with_481_ends_it_but_a_timeout_waits_for_expiry() -> None:
    h = make()
    active_subscription(h, expires=600)
    h.feed(sub_reply(sent_subscribe(h, h.advance(540.1)), 481), NOTIFIER)
    assert [e.reason for e in events_of(h, SubscriptionEnded)] == [SubscriptionEndReason.REJECTED]
    sub2, _ = active_subscription(h, expires=600)
    end = h.now + 600
    out = h.advance(540.1)
    assert [m.method for m in out if isinstance(m, Request)] == ["SUBSCRIBE"]
    h.advance(32.1)  # the refresh timed out: still valid until it lapses
    assert events_of(h, SubscriptionEnded) == []
    h.advance(end - h.now + 0.1)
    assert events_of(h, SubscriptionEnded) == [
        SubscriptionEnded(sub2, SubscriptionEndReason.EXPIRED)
    ]


def test_subscribe_arguments_are_checked() -> None:
    h = make()
    with pytest.raises(ValueError, match="event package 'dialog'"):
        h.ep.subscribe(CAROL, h.now, event="dialog")
    with pytest.raises(ValueError, match="only sip/sips URIs"):
        h.ep.subscribe("tel:+4311", h.now)
    with pytest.raises(ValueError, match=r"target: expected 'scheme:\.\.\.'"):
        h.ep.subscribe("carol", h.now)
    with pytest.raises(ValueError, match="expires -1"):
        h.ep.subscribe(CAROL, h.now, expires=-1)
    sub, _ = active_subscription(h)
    with pytest.raises(ValueError, match="only its notifier"):
        h.ep.notify(sub, PIDF_OPEN, h.now)


def test_end_subscriptions_for_a_drain() -> None:
    h = make()
    theirs, _ = subscribed(h)
    h.ep.notify(theirs, PIDF_OPEN, h.now)
    h.feed(reply(notify_sent(h), 200))
    ours, _ = active_subscription(h)
    assert h.ep.end_subscriptions(h.now) == 2
    sent = {m.method: m for m in h.flush() if isinstance(m, Request)}
    assert sent["NOTIFY"].headers.get("Subscription-State") == "terminated;reason=deactivated"
    assert sent["NOTIFY"].body == PIDF_OPEN
    assert sent["SUBSCRIBE"].headers.get("Expires") == "0"
    ended = {e.subscription.id: e.reason for e in events_of(h, SubscriptionEnded)}
    assert ended == {
        theirs.id: SubscriptionEndReason.TERMINATED,
        ours.id: SubscriptionEndReason.UNSUBSCRIBED,
    }
    assert h.ep.end_subscriptions(h.now) == 0


# -- the pure parts ----------------------------------------------------------------


def test_parse_event() -> None:
    assert parse_event("presence") == EventHeader("presence")
    e = parse_event(" Presence.WINFO ;id=7;x=y")
    assert (e.name, e.id, str(e)) == ("presence.winfo", "7", "presence.winfo;id=7")
    assert e.matches("presence.winfo", "7") and not e.matches("presence", "7")
    for bad in ("", "pres ence", "presence.", "presence;id=", "presence;;id=1", "presence,dialog"):
        with pytest.raises(ParseError):
            parse_event(bad)


def test_parse_subscription_state() -> None:
    s = parse_subscription_state("active;expires=600")
    assert (s.state, s.expires, s.active, s.terminated) == ("active", 600, True, False)
    s = parse_subscription_state("Terminated;reason=Timeout;retry-after=30")
    assert (s.terminated, s.reason, s.retry_after) == (True, "timeout", 30)
    assert str(s) == "terminated;reason=timeout;retry-after=30"
    assert parse_subscription_state("waiting").state == "waiting"
    for bad in ("", "active;expires=", "active;expires=-1", "active garbage", ";expires=5"):
        with pytest.raises(ParseError):
            parse_subscription_state(bad)


def test_sipfrag() -> None:
    assert parse_sipfrag_status(b"SIP/2.0 180 Ringing\r\n") == (180, "Ringing")
    assert parse_sipfrag_status(b"SIP/2.0 200 OK\r\nContact: <sip:x@y>\r\n\r\n") == (200, "OK")
    assert parse_sipfrag_status(b"sip/2.0 603") == (603, "")
    assert sipfrag(486, "Busy Here") == b"SIP/2.0 486 Busy Here\r\n"
    for bad in (
        b"",
        b"SIP/2.0 99 Low",
        b"SIP/3.0 200 OK",
        b"INVITE sip:a@b SIP/2.0",
        b"\xff\xfe",
        b"\r\nSIP/2.0 200 OK",
        b"SIP/2.0 200OK",
    ):
        with pytest.raises(ParseError):
            parse_sipfrag_status(bad)
    with pytest.raises(ValueError):
        sipfrag(99, "x")


def test_expiry_policy() -> None:
    p = ExpiryPolicy(60, 3600, 1800)
    assert (p.grant(None), p.grant(0), p.grant(60), p.grant(10**6)) == (1800, 0, 60, 3600)
    with pytest.raises(IntervalTooBrief) as info:
        p.grant(59)
    assert info.value.min_expires == 60
    for args in ((0, 10, 5), (100, 10, 50), (10, 100, 5)):
        with pytest.raises(ValueError):
            ExpiryPolicy(*args)


def test_publication_table_rules() -> None:
    tags = iter(["a", "a", "b", "c", "d"])
    table = PublicationTable(ExpiryPolicy(60, 3600, 3600), lambda: next(tags), max_publications=1)
    r = table.publish(ALICE, "presence", PIDF_OPEN, None, 60, None, 0.0)
    assert (r.status, r.etag, r.expires) == (200, "a", 60) and r.published is not None
    assert r.published.content_type == "application/pidf+xml"
    # A refresh never reuses the entity-tag it replaces ("a" is skipped).
    r = table.publish(ALICE, "presence", b"", None, None, "a", 10.0)
    assert (r.etag, r.previous_etag, r.expires) == ("b", "a", 3600)
    assert table.publish("sip:bob@x", "presence", PIDF_OPEN, None, 60, None, 10.0).status == 503
    # Lapsed entries are dropped (and returned) before the request is looked at.
    r = table.publish(ALICE, "presence", b"", None, None, "b", 3610.0)
    assert r.status == 412 and [p.etag for p in r.lapsed] == ["b"] and len(table) == 0
    r = table.publish(ALICE, "presence", PIDF_OPEN, None, 0, None, 3610.0)
    assert (r.status, r.expires, r.published) == (200, 0, None) and len(table) == 0
