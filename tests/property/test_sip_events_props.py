"""Hypothesis: the presence server of the Endpoint (RFC 3903 publications) driven by
random sequences of PUBLISH — initial, refresh, modify, remove, with live, superseded,
foreign and unknown entity-tags, good and too-brief intervals — and clock jumps,
checked against a model of the publication table:

* no publication that has expired is ever reported as live (by the table or by the
  model built from the events), and none outlives its expiry once timers have run;
* every entity-tag is announced by one PresencePublished at most, and ended by one
  PresenceRemoved at most (or superseded by one refresh/modify, never both);
* every response is the one the model predicts (200, 412, 423).

And: the header grammars of hotline.sip.events, and the endpoint fed PUBLISH, SUBSCRIBE
and NOTIFY with arbitrary header values, only ever fail with a response, never by
raising.
"""

from __future__ import annotations

import contextlib

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hotline.sip.endpoint import (
    CallOffered,
    Endpoint,
    EndpointConfig,
    PresencePublished,
    PresenceRemoved,
)
from hotline.sip.errors import ParseError
from hotline.sip.events import (
    PresencePolicy,
    parse_event,
    parse_sipfrag_status,
    parse_subscription_state,
)
from hotline.sip.message import Response
from hotline.sip.transaction import Timers
from tests.unit.sip.sipfake import CALLER, Harness, in_dialog, invite, seeded_random

REALM = "hotline.test"
ENTITIES = ("alice", "bob")
EXPIRES = (None, 0, 30, 60, 61, 300, 99999)  # the policy: min 60, max 3600, default 3600
BODY = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"/>'


def _endpoint() -> Harness:
    conf = EndpointConfig(local={"udp": ("198.51.100.1", 5060)}, timers=Timers())
    return Harness(Endpoint(conf, seeded_random().randbytes, presence=PresencePolicy()))


def _publish(n: int, user: str, body: bytes, expires: int | None, if_match: str | None) -> str:
    lines = [
        f"PUBLISH sip:{user}@{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKprop{n};rport",
        f"From: <sip:{user}@{REALM}>;tag=f{n}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: prop-{n}",
        f"CSeq: {n} PUBLISH",
        "Event: presence",
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if if_match is not None:
        lines.append(f"SIP-If-Match: {if_match}")
    if body:
        lines.append("Content-Type: application/pidf+xml")
    return "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body.decode()


_publish_op = st.tuples(st.just("initial"), st.sampled_from(ENTITIES), st.sampled_from(EXPIRES))
_tagged_op = st.tuples(
    st.sampled_from(("refresh", "modify", "remove", "foreign")),
    # Which entity-tag ever issued, counted from the latest (beyond the list: unknown).
    st.one_of(st.integers(0, 2), st.integers(0, 12)),
    st.sampled_from(EXPIRES),
)
_advance_op = st.tuples(
    st.just("advance"),
    st.sampled_from((0.5, 1.0, 29.0, 30.0, 31.0, 59.5, 60.0, 61.0, 300.0, 3600.0)),
    st.none(),
)
_ops = st.lists(st.one_of(_publish_op, _tagged_op, _advance_op), min_size=1, max_size=40)


@settings(max_examples=500)
@given(_ops)
def test_publication_table_matches_the_model(ops: list[tuple[str, object, object]]) -> None:
    h = _endpoint()
    live: dict[str, tuple[str, float]] = {}  # etag -> (entity AOR, expires at)
    issued: list[tuple[str, str]] = []  # (etag, user) in the order announced
    announced: set[str] = set()
    ended: set[str] = set()
    for n, (kind, arg, expires) in enumerate(ops, start=1):
        expected: int | None = None
        if kind == "advance":
            assert isinstance(arg, float)
            h.advance(arg)
        else:
            assert expires is None or isinstance(expires, int)
            if kind == "initial":
                assert isinstance(arg, str)
                user, body, tag = arg, BODY, None
                expected = 423 if expires is not None and 0 < expires < 60 else 200
            else:
                assert isinstance(arg, int)
                tag, owner = issued[-1 - arg] if arg < len(issued) else ("unknowntag", "alice")
                user = owner if kind != "foreign" else next(u for u in ENTITIES if u != owner)
                body = BODY if kind == "modify" else b""
                if kind == "remove":
                    expires = 0
                valid = (
                    tag in live and live[tag][1] > h.now and live[tag][0] == f"sip:{user}@{REALM}"
                )
                if not valid:
                    expected = 412
                elif expires is not None and 0 < expires < 60:
                    expected = 423
                else:
                    expected = 200
            [resp] = [
                m for m in h.feed(_publish(n, user, body, expires, tag)) if isinstance(m, Response)
            ]
            assert resp.status == expected, (kind, tag, expires, resp)
            event(f"{kind} -> {resp.status}")
            if expected == 200:
                granted = int(resp.headers.get("Expires") or "-1")
                want = 3600 if expires is None else min(expires, 3600)
                assert granted == want and resp.headers.get("SIP-ETag")
        for ev in h.take_events():
            if isinstance(ev, PresencePublished):
                assert ev.etag not in announced, "an entity-tag announced twice"
                announced.add(ev.etag)
                if ev.previous_etag is not None:
                    assert ev.previous_etag in live, "a refresh of a publication not live"
                    del live[ev.previous_etag]
                assert ev.expires > h.now
                live[ev.etag] = (ev.entity, ev.expires)
                issued.append((ev.etag, ev.entity.split(":", 1)[1].split("@", 1)[0]))
            elif isinstance(ev, PresenceRemoved):
                assert ev.etag in live, "removal of a publication not live (or removed twice)"
                assert ev.etag not in ended
                ended.add(ev.etag)
                entity, expires_at = live.pop(ev.etag)
                assert entity == ev.entity
                assert (expires_at <= h.now) == ev.expired
        # Nothing expired is still live, in the model or in the endpoint's table.
        assert all(at > h.now for _, at in live.values())
        assert {p.etag for p in h.ep.publications} == set(live)
        for user in ENTITIES:
            aor = f"sip:{user}@{REALM}"
            shown = {p.etag for p in h.ep.publications.live(aor, h.now)}
            assert shown == {t for t, (e, _) in live.items() if e == aor}
    # Once every deadline has passed, nothing is left and each announcement ended once.
    h.advance(3601)
    for ev in h.take_events():
        if isinstance(ev, PresenceRemoved):
            assert ev.expired and ev.etag in live and ev.etag not in ended
            ended.add(ev.etag)
            del live[ev.etag]
    assert live == {} and len(h.ep.publications) == 0
    assert ended <= announced


_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(_value)
def test_header_grammars_fail_only_with_parse_error(text: str) -> None:
    for parse in (parse_event, parse_subscription_state):
        with contextlib.suppress(ParseError):
            parse(text)
    try:
        status, _ = parse_sipfrag_status(text.encode())
    except ParseError:
        pass
    else:
        assert 100 <= status <= 699


_header_values = st.fixed_dictionaries(
    {
        "Event": st.one_of(
            st.sampled_from(("presence", "refer", "presence;id=1", "dialog")), _value
        ),
        "Expires": st.one_of(st.sampled_from(("0", "60", "3600", "99999999999")), _value),
        "SIP-If-Match": st.one_of(st.sampled_from(("abc", "")), _value),
        "Accept": st.one_of(st.sampled_from(("application/pidf+xml", "*/*")), _value),
        "Subscription-State": st.one_of(
            st.sampled_from(("active;expires=60", "terminated;reason=noresource")), _value
        ),
        "Content-Type": st.sampled_from(("application/pidf+xml", "message/sipfrag", "text/plain")),
    }
)
_body = st.one_of(
    st.just(b""), st.just(BODY), st.just(b"SIP/2.0 180 Ringing\r\n"), st.binary(max_size=30)
)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("PUBLISH", "SUBSCRIBE", "NOTIFY")),
            _header_values,
            st.sets(
                st.sampled_from(
                    (
                        "Event",
                        "Expires",
                        "SIP-If-Match",
                        "Accept",
                        "Subscription-State",
                        "Content-Type",
                    )
                )
            ),
            _body,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_endpoint_answers_arbitrary_event_requests(
    reqs: list[tuple[str, dict[str, str], set[str], bytes]],
) -> None:
    h = _endpoint()
    h.feed(invite("fuzz-call"))
    [offered] = [e for e in h.take_events() if isinstance(e, CallOffered)]
    call = offered.call
    h.ep.answer(call, None, h.now)
    h.feed(in_dialog("ACK", "fuzz-call", call.local_tag, 1))
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)  # NOTIFYs may be refer progress
    h.flush()
    for n, (method, values, present, body) in enumerate(reqs, start=2):
        extra = "".join(
            f"{k}: {v}\r\n" for k, v in values.items() if k in present and k != "Content-Type"
        )
        ctype = values["Content-Type"] if "Content-Type" in present else None
        if method == "NOTIFY":
            text = in_dialog(
                "NOTIFY",
                "fuzz-call",
                call.local_tag,
                n,
                ctype=ctype,
                extra=extra + "Contact: <sip:caller@192.0.2.10:5062>\r\n",
            )
        else:
            text = invite(
                f"fuzz-{n}",
                method=method,
                body=b"",
                extra=extra + (f"Content-Type: {ctype}\r\n" if ctype else ""),
            )
        data = (
            text.encode().replace(
                b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body)
            )
            + body
        )
        h.ep.receive(data, CALLER, h.now)
        out = h.flush()
        answers = [m for m in out if isinstance(m, Response)]
        assert len(answers) <= 1
        h.now += 1.0
    h.advance(4000)  # every timer runs without raising
    h.take_events()
