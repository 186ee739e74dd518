"""Our own requests inside a call, with a fake clock and no sockets: the re-INVITE
(`modify`: hold, glare, timeout, digest retry), REFER out with its NOTIFY progress
(RFC 3515, Replaces of RFC 3891), and the NOTIFYs we send for a REFER received."""

from __future__ import annotations

from typing import TypeVar

import pytest

from hotline.sip.addr import Peer
from hotline.sip.auth import Algorithm, DigestVerifier, compute_ha1
from hotline.sip.endpoint import (
    Call,
    CallOffered,
    CallState,
    ModifyAnswered,
    ReferAnswered,
    ReferProgress,
    ReferReceived,
    SessionModified,
)
from hotline.sip.headers import parse_address
from hotline.sip.message import Request, Response
from hotline.sip.uri import SipURI
from tests.unit.sip.sipfake import CALLER, SDP_OFFER, Harness, in_dialog, invite, statuses

ANSWER = (
    b"v=0\r\no=hotline 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0\r\n"
)
HOLD = ANSWER.replace(b"o=hotline 1 1", b"o=hotline 1 2") + b"a=sendonly\r\n"
HELD = SDP_OFFER.replace(b"o=caller 1 1", b"o=caller 1 2") + b"a=recvonly\r\n"
AGENT = "sip:agent1@192.0.2.20:5070"
SIPFRAG = "message/sipfrag;version=2.0"


def reply(
    req: Request,
    status: int,
    *,
    extra: str = "",
    tag: str = "agent",
    body: bytes = b"",
    ctype: str = "application/sdp",
) -> str:
    """A response to `req` as its peer would send it (To tag added when missing)."""
    to = req.headers.get("To") or ""
    if req.to.tag is None:
        to += f";tag={tag}"
    vias = "".join(f"Via: {v}\r\n" for v in req.headers.raw_values("Via"))
    ct = f"Content-Type: {ctype}\r\n" if body else ""
    return (
        f"SIP/2.0 {status} Whatever\r\n{vias}From: {req.headers.get('From')}\r\nTo: {to}\r\n"
        f"Call-ID: {req.call_id}\r\nCSeq: {req.headers.get('CSeq')}\r\n{extra}{ct}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


def requests(msgs: list[Response | Request], method: str | None = None) -> list[Request]:
    return [m for m in msgs if isinstance(m, Request) and (method is None or m.method == method)]


def inbound_call(h: Harness, call_id: str) -> Call:
    """A confirmed call from CALLER (INVITE, our 200, its ACK)."""
    h.feed(invite(call_id))
    [ev] = [e for e in h.take_events() if isinstance(e, CallOffered)]
    h.ep.answer(ev.call, ANSWER, h.now)
    h.flush()
    h.feed(in_dialog("ACK", call_id, ev.call.local_tag, 1))
    h.take_events()
    assert ev.call.state is CallState.CONFIRMED
    return ev.call


def outbound_call(h: Harness, credentials: tuple[str, str] | None = None) -> tuple[Call, Peer]:
    """A confirmed call to AGENT (our INVITE, its 200 with a Contact, our ACK)."""
    call = h.ep.invite(AGENT, h.now, sdp=SDP_OFFER, credentials=credentials)
    [inv] = requests(h.flush())
    peer = h.sent[-1][1]
    h.feed(reply(inv, 200, extra=f"Contact: <{AGENT}>\r\n", body=ANSWER), peer)
    h.take_events()
    assert call.state is CallState.CONFIRMED
    return call, peer


def one_request(h: Harness, method: str) -> Request:
    [req] = requests(h.flush(), method)
    return req


T = TypeVar("T")


def events_of(h: Harness, kind: type[T]) -> list[T]:
    return [e for e in h.take_events() if isinstance(e, kind)]


# -- modify: re-INVITE from our side -------------------------------------------


def test_hold_reinvite_on_an_inbound_call_is_acked_with_its_cseq() -> None:
    h = Harness.make()
    call = inbound_call(h, "m1")
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    assert h.sent[-1][1] == CALLER
    assert str(reinv.uri) == "sip:caller@192.0.2.10:5062"  # the caller's Contact
    assert reinv.call_id == "m1" and reinv.from_.tag == call.local_tag and reinv.to.tag == "from1"
    assert reinv.cseq.number == 1  # our first request in a dialog we answered
    assert reinv.body == HOLD and reinv.headers.get("Content-Type") == "application/sdp"
    assert reinv.headers.get("Contact") == "<sip:hotline@198.51.100.1:5060>"
    out = h.feed(reply(reinv, 200, tag="from1", body=HELD))
    [ack] = requests(out, "ACK")
    assert ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.top_via.branch != reinv.top_via.branch  # a 2xx ACK is its own transaction
    [ev] = events_of(h, ModifyAnswered)
    assert (ev.call, ev.status, ev.sdp) == (call, 200, HELD)
    assert call.local_sdp == HOLD and call.remote_sdp == HELD and call.modify_tx is None
    # A retransmitted 200 is ACKed again with the same CSeq and reported no further.
    out = h.feed(reply(reinv, 200, tag="from1", body=HELD))
    assert [m.cseq.number for m in requests(out, "ACK")] == [1]
    assert events_of(h, ModifyAnswered) == []
    # ... even once the transaction has ended (RFC 6026: a stray 2xx).
    h.advance(40)
    out = h.feed(reply(reinv, 200, tag="from1", body=HELD))
    assert [m.cseq.number for m in requests(out, "ACK")] == [1]
    h.ep.hangup(call, h.now)
    assert one_request(h, "BYE").cseq.number == 2


def test_reinvite_on_an_outbound_call_follows_the_invite_cseq_and_new_target() -> None:
    h = Harness.make()
    call, peer = outbound_call(h)
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    assert reinv.cseq.number == 2 and str(reinv.uri) == AGENT
    moved = "sip:agent1@192.0.2.21:5070"
    out = h.feed(reply(reinv, 200, extra=f"Contact: <{moved}>\r\n", body=HELD), peer)
    [ack] = requests(out, "ACK")
    assert ack.cseq.number == 2 and str(ack.uri) == moved  # the 2xx refreshed the target
    [ev] = events_of(h, ModifyAnswered)
    assert ev.status == 200 and call.remote_sdp == HELD


def test_491_is_reported_and_a_later_retry_is_allowed() -> None:
    h = Harness.make()
    call, peer = outbound_call(h)
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    out = h.feed(reply(reinv, 491), peer)
    # The transaction ACKs the non-2xx itself, with the INVITE's branch and CSeq.
    [ack] = requests(out, "ACK")
    assert ack.top_via.branch == reinv.top_via.branch and ack.cseq.number == 2
    [ev] = events_of(h, ModifyAnswered)
    assert (ev.status, ev.sdp) == (491, None)
    assert call.modify_tx is None and call.local_sdp == SDP_OFFER  # nothing changed
    h.ep.modify(call, HOLD, h.now)
    assert one_request(h, "INVITE").cseq.number == 3


def test_peer_reinvite_while_ours_is_pending_gets_491() -> None:
    h = Harness.make()
    call = inbound_call(h, "m3")
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    out = h.feed(in_dialog("INVITE", "m3", call.local_tag, 2, body=HELD, ctype="application/sdp"))
    assert statuses(out) == [491]
    # Still pending after its 100 Trying (the transaction is Proceeding, not Calling).
    h.feed(reply(reinv, 100, tag="from1"))
    out = h.feed(in_dialog("UPDATE", "m3", call.local_tag, 3, body=HELD, ctype="application/sdp"))
    assert statuses(out) == [491]
    assert events_of(h, SessionModified) == []
    h.feed(reply(reinv, 200, tag="from1", body=HELD))
    assert [e.status for e in events_of(h, ModifyAnswered)] == [200]
    # Answered: the peer may renegotiate again.
    h.feed(in_dialog("INVITE", "m3", call.local_tag, 4, body=HELD, ctype="application/sdp"))
    assert len(events_of(h, SessionModified)) == 1


def test_modify_refuses_when_not_confirmed_or_busy() -> None:
    h = Harness.make()
    h.feed(invite("m4"))
    [offered] = events_of(h, CallOffered)
    with pytest.raises(ValueError, match="offered: cannot send a re-INVITE"):
        h.ep.modify(offered.call, HOLD, h.now)
    call = inbound_call(h, "m5")
    with pytest.raises(ValueError, match="needs an SDP offer"):
        h.ep.modify(call, b"", h.now)
    h.feed(in_dialog("INVITE", "m5", call.local_tag, 2, body=HELD, ctype="application/sdp"))
    with pytest.raises(ValueError, match="awaits answer_modify"):
        h.ep.modify(call, HOLD, h.now)
    h.ep.answer_modify(call, 200, ANSWER, h.now)
    h.flush()
    h.ep.modify(call, HOLD, h.now)
    with pytest.raises(ValueError, match="still pending"):
        h.ep.modify(call, HOLD, h.now)


def test_unanswered_reinvite_times_out_as_408() -> None:
    h = Harness.make()
    call, _ = outbound_call(h)
    h.ep.modify(call, HOLD, h.now)
    h.flush()
    out = h.advance(31.9)
    assert len(requests(out, "INVITE")) >= 5  # Timer A retransmissions: 0.5, 1, 2, 4, 8, 16
    assert events_of(h, ModifyAnswered) == []
    h.advance(0.2)
    [ev] = events_of(h, ModifyAnswered)
    assert (ev.status, ev.sdp) == (408, None) and call.modify_tx is None
    assert call.state is CallState.CONFIRMED  # hanging up is the application's decision


def _verifier(*, proxy: bool = False) -> DigestVerifier:
    def lookup(user: str) -> dict[Algorithm, str] | None:
        if user != "agent1":
            return None
        return {Algorithm.SHA256: compute_ha1(user, "pbx", "s3cret", Algorithm.SHA256)}

    return DigestVerifier(
        "pbx",
        b"k" * 32,
        lookup,
        random_bytes=lambda n: b"r" * n,
        algorithms=(Algorithm.SHA256,),
        proxy=proxy,
    )


def _challenge(v: DigestVerifier, now: float) -> str:
    return "".join(f"{v.challenge_header}: {c}\r\n" for c in v.challenge(now))


def test_reinvite_answers_a_challenge_with_the_call_credentials() -> None:
    h = Harness.make()
    www, proxy = _verifier(), _verifier(proxy=True)
    call = h.ep.invite(AGENT, h.now, sdp=SDP_OFFER, credentials=("agent1", "s3cret"))
    [inv] = requests(h.flush())
    peer = h.sent[-1][1]
    retry = requests(h.feed(reply(inv, 401, extra=_challenge(www, h.now)), peer), "INVITE")[0]
    assert www.verify_request(retry, h.now).accepted
    h.feed(reply(retry, 200, extra=f"Contact: <{AGENT}>\r\n", body=ANSWER), peer)
    h.take_events()
    assert call.state is CallState.CONFIRMED
    # The re-INVITE meets a proxy challenge in the same realm: answered again.
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    assert reinv.cseq.number == 3
    out = h.feed(reply(reinv, 407, extra=_challenge(proxy, h.now)), peer)
    [again] = requests(out, "INVITE")
    assert again.cseq.number == 4 and again.top_via.branch != reinv.top_via.branch
    assert again.call_id == reinv.call_id and again.to.tag == "agent" and again.body == HOLD
    outcome = proxy.verify_request(again, h.now)
    assert outcome.accepted and outcome.username == "agent1"
    assert events_of(h, ModifyAnswered) == []
    out = h.feed(reply(again, 200, body=HELD), peer)
    [ack] = requests(out, "ACK")
    assert ack.cseq.number == 4 and ack.headers.get("Proxy-Authorization")
    assert [e.status for e in events_of(h, ModifyAnswered)] == [200]


def test_reinvite_gives_up_on_rejected_credentials_and_without_any() -> None:
    h = Harness.make()
    www = _verifier()
    call, peer = outbound_call(h, credentials=("agent1", "wrong"))
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    [again] = requests(h.feed(reply(reinv, 401, extra=_challenge(www, h.now)), peer), "INVITE")
    assert not www.verify_request(again, h.now).accepted
    out = h.feed(reply(again, 401, extra=_challenge(www, h.now)), peer)
    assert requests(out, "INVITE") == []  # a second non-stale challenge: no third try
    assert [e.status for e in events_of(h, ModifyAnswered)] == [401]
    # An inbound call has no credentials: the challenge is reported as it is.
    call2 = inbound_call(h, "m7")
    h.ep.modify(call2, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    h.feed(reply(reinv, 401, tag="from1", extra=_challenge(www, h.now)))
    assert [e.status for e in events_of(h, ModifyAnswered)] == [401]


def test_reinvite_answered_after_the_call_ended_is_acked_silently() -> None:
    h = Harness.make()
    call = inbound_call(h, "m8")
    h.ep.modify(call, HOLD, h.now)
    reinv = one_request(h, "INVITE")
    h.feed(in_dialog("BYE", "m8", call.local_tag, 2))
    assert call.state is CallState.ENDED
    out = h.feed(reply(reinv, 200, tag="from1", body=HELD))
    assert [m.cseq.number for m in requests(out, "ACK")] == [1]
    assert events_of(h, ModifyAnswered) == []


# -- REFER out -----------------------------------------------------------------


def refer_notify(
    call: Call,
    cseq: int,
    status_line: str,
    state: str = "active;expires=60",
    *,
    event: str = "refer",
    ctype: str = SIPFRAG,
) -> str:
    body = f"{status_line}\r\n".encode() if status_line else b""
    return in_dialog(
        "NOTIFY",
        call.call_id,
        call.local_tag,
        cseq,
        body=body,
        ctype=ctype,
        extra=f"Event: {event}\r\nSubscription-State: {state}\r\n"
        "Contact: <sip:caller@192.0.2.10:5062>\r\n",
    )


def test_blind_transfer_refer_and_its_progress() -> None:
    h = Harness.make()
    call = inbound_call(h, "r1")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now, referred_by="sip:hotline@hotline.test")
    ref = one_request(h, "REFER")
    assert ref.headers.get("Refer-To") == "<sip:bob@192.0.2.30>"
    assert ref.headers.get("Referred-By") == "<sip:hotline@hotline.test>"
    assert ref.headers.get("Contact") and ref.cseq.number == 1 and ref.to.tag == "from1"
    # Progress may come before the 202.
    assert statuses(h.feed(refer_notify(call, 2, "SIP/2.0 100 Trying"))) == [200]
    h.feed(reply(ref, 202, tag="from1"))
    assert statuses(h.feed(refer_notify(call, 3, "SIP/2.0 180 Ringing"))) == [200]
    out = h.feed(refer_notify(call, 4, "SIP/2.0 200 OK", "terminated;reason=noresource"))
    assert statuses(out) == [200]
    evs = [e for e in h.take_events() if isinstance(e, ReferAnswered | ReferProgress)]
    assert evs == [
        ReferProgress(call, 100, False),
        ReferAnswered(call, 202),
        ReferProgress(call, 180, False),
        ReferProgress(call, 200, True),
    ]
    # The subscription has ended: a further refer NOTIFY matches nothing.
    assert statuses(h.feed(refer_notify(call, 5, "SIP/2.0 200 OK"))) == [481]
    assert events_of(h, ReferProgress) == []


def test_attended_transfer_carries_an_escaped_replaces() -> None:
    h = Harness.make()
    call, _ = outbound_call(h)
    replaces = "abc123@192.0.2.40;to-tag=t1;from-tag=f1"
    h.ep.refer(call, "<sip:agent2@192.0.2.40>", h.now, replaces=replaces)
    ref = one_request(h, "REFER")
    value = ref.headers.get("Refer-To") or ""
    assert (
        value
        == "<sip:agent2@192.0.2.40?Replaces=abc123%40192.0.2.40%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"
    )
    uri = parse_address(value, "Refer-To").uri
    assert isinstance(uri, SipURI) and uri.headers == [("Replaces", replaces)]
    assert ref.cseq.number == 2


@pytest.mark.parametrize(
    ("refer_to", "replaces", "message"),
    [
        ("sip:bob@x", "abc;to-tag=t1", "both to-tag and from-tag"),
        ("sip:bob@x", "abc;to-tag=t1;from-tag=f1;foo=1", "unexpected parameter"),
        ("sip:bob@x", ";to-tag=t1;from-tag=f1", "expected 'call-id"),
        ("tel:+4311", "abc;to-tag=t1;from-tag=f1", "needs a sip or sips URI"),
        ("<sip:bob@x?Replaces=a>", "abc;to-tag=t1;from-tag=f1", "already carries"),
        ("not a uri", None, "refer_to 'not a uri'"),
    ],
)
def test_refer_arguments_are_checked(refer_to: str, replaces: str | None, message: str) -> None:
    h = Harness.make()
    call = inbound_call(h, f"ra-{message}")
    with pytest.raises(ValueError, match=message):
        h.ep.refer(call, refer_to, h.now, replaces=replaces)
    assert h.flush() == []


def test_refer_refused_while_one_is_unanswered_or_call_not_confirmed() -> None:
    h = Harness.make()
    call = inbound_call(h, "r3")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    with pytest.raises(ValueError, match="no answer yet"):
        h.ep.refer(call, "sip:carol@192.0.2.31", h.now)
    h.ep.hangup(call, h.now)
    with pytest.raises(ValueError, match="ended: cannot send a REFER"):
        h.ep.refer(call, "sip:bob@192.0.2.30", h.now)


def test_bad_refer_notifies_get_400_or_415_and_no_event() -> None:
    h = Harness.make()
    call = inbound_call(h, "r4")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    h.feed(reply(one_request(h, "REFER"), 202, tag="from1"))
    h.take_events()
    assert statuses(h.feed(refer_notify(call, 2, "SIP/2.0 18 Ringing"))) == [400]
    assert statuses(h.feed(refer_notify(call, 3, "INVITE sip:bob@x SIP/2.0"))) == [400]
    assert statuses(h.feed(refer_notify(call, 4, ""))) == [400]  # no sipfrag at all
    assert statuses(h.feed(refer_notify(call, 5, "SIP/2.0 180 Ringing", "active;expires=x"))) == [
        400
    ]
    assert statuses(h.feed(refer_notify(call, 6, "<presence/>", ctype="application/pidf+xml"))) == [
        415
    ]
    no_state = in_dialog(
        "NOTIFY",
        "r4",
        call.local_tag,
        7,
        body=b"SIP/2.0 180 Ringing\r\n",
        ctype=SIPFRAG,
        extra="Event: refer\r\n",
    )
    assert statuses(h.feed(no_state)) == [400]
    assert events_of(h, ReferProgress) == []
    # The endpoint goes on: a good one is reported.
    assert statuses(h.feed(refer_notify(call, 8, "SIP/2.0 180 Ringing"))) == [200]
    assert events_of(h, ReferProgress) == [ReferProgress(call, 180, False)]


def test_notify_that_is_not_refer_progress_is_still_answered_200() -> None:
    h = Harness.make()
    call = inbound_call(h, "r5")
    plain = in_dialog("NOTIFY", "r5", call.local_tag, 2)
    assert statuses(h.feed(plain)) == [200]
    other = in_dialog("NOTIFY", "r5", call.local_tag, 3, extra="Event: dialog\r\n")
    assert statuses(h.feed(other)) == [200]
    assert events_of(h, ReferProgress) == []


def test_refer_notify_with_the_wrong_id_is_481() -> None:
    h = Harness.make()
    call = inbound_call(h, "r6")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    ref = one_request(h, "REFER")
    assert statuses(h.feed(refer_notify(call, 2, "SIP/2.0 100 Trying", event="refer;id=99"))) == [
        481
    ]
    ok = refer_notify(call, 3, "SIP/2.0 100 Trying", event=f"refer;id={ref.cseq.number}")
    assert statuses(h.feed(ok)) == [200]
    assert events_of(h, ReferProgress) == [ReferProgress(call, 100, False)]


def test_refer_refused_or_unanswered() -> None:
    h = Harness.make()
    call = inbound_call(h, "r7")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    h.feed(reply(one_request(h, "REFER"), 603, tag="from1"))
    assert events_of(h, ReferAnswered) == [ReferAnswered(call, 603)]
    assert statuses(h.feed(refer_notify(call, 2, "SIP/2.0 100 Trying"))) == [481]
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    h.flush()
    h.advance(32.1)  # Timer F
    assert events_of(h, ReferAnswered) == [ReferAnswered(call, 408)]
    assert call.refer_tx is None and call.refer_id is None


def test_silent_notifier_ends_the_refer_subscription() -> None:
    h = Harness.make()
    call = inbound_call(h, "r8")
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    h.feed(reply(one_request(h, "REFER"), 202, tag="from1"))
    h.take_events()
    h.advance(31.9)
    assert events_of(h, ReferProgress) == []
    h.advance(0.2)  # no NOTIFY within 64*T1 of the 202
    assert events_of(h, ReferProgress) == [ReferProgress(call, 408, True)]
    assert call.refer_id is None
    h.advance(4000)
    assert events_of(h, ReferProgress) == []  # given up once, reported once


def test_refer_answers_a_challenge_with_the_call_credentials() -> None:
    h = Harness.make()
    www = _verifier()
    call, peer = outbound_call(h, credentials=("agent1", "s3cret"))
    h.ep.refer(call, "sip:bob@192.0.2.30", h.now)
    ref = one_request(h, "REFER")
    [again] = requests(h.feed(reply(ref, 401, extra=_challenge(www, h.now)), peer), "REFER")
    assert www.verify_request(again, h.now).accepted and again.cseq.number == ref.cseq.number + 1
    h.feed(reply(again, 202), peer)
    assert events_of(h, ReferAnswered) == [ReferAnswered(call, 202)]
    # NOTIFYs name the REFER that got through.
    note = refer_notify(call, 1, "SIP/2.0 180 Ringing", event=f"refer;id={again.cseq.number}")
    notify = note.replace(
        'From: "Caller" <sip:0412345678@192.0.2.10>;tag=from1',
        "From: <sip:agent1@192.0.2.20:5070>;tag=agent",
    )
    notify = notify.replace(
        f"To: <sip:1800@hotline.test>;tag={call.local_tag}",
        f"To: <sip:hotline@hotline.local>;tag={call.local_tag}",
    )
    assert statuses(h.feed(notify, peer)) == [200]
    assert events_of(h, ReferProgress) == [ReferProgress(call, 180, False)]


# -- NOTIFY for a REFER received -------------------------------------------------


def test_notify_refer_reports_progress_in_the_implicit_subscription() -> None:
    h = Harness.make()
    call = inbound_call(h, "n1")
    out = h.feed(
        in_dialog("REFER", "n1", call.local_tag, 2, extra="Refer-To: <sip:bob@192.0.2.30>\r\n")
    )
    assert out == []  # the application answers
    [ev] = events_of(h, ReferReceived)
    h.ep.answer_refer(ev, 202, h.now)
    assert statuses(h.flush()) == [202]
    h.ep.notify_refer(call, 180, h.now, final=False)
    first = one_request(h, "NOTIFY")
    assert str(first.uri) == "sip:caller@192.0.2.10:5062" and h.sent[-1][1] == CALLER
    assert first.headers.get("Event") == "refer;id=2"
    assert first.headers.get("Subscription-State") == "active;expires=60"
    assert first.headers.get("Content-Type") == SIPFRAG
    assert first.body == b"SIP/2.0 180 Ringing\r\n"
    assert first.headers.get("Contact") and first.to.tag == "from1"
    h.ep.notify_refer(call, 200, h.now, final=True)
    last = one_request(h, "NOTIFY")
    assert last.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert last.body == b"SIP/2.0 200 OK\r\n" and last.cseq.number == first.cseq.number + 1
    with pytest.raises(ValueError, match="no accepted REFER"):
        h.ep.notify_refer(call, 200, h.now, final=True)


def test_notify_refer_needs_an_accepted_refer() -> None:
    h = Harness.make()
    call = inbound_call(h, "n2")
    with pytest.raises(ValueError, match="no accepted REFER"):
        h.ep.notify_refer(call, 100, h.now, final=False)
    h.feed(in_dialog("REFER", "n2", call.local_tag, 2, extra="Refer-To: <sip:bob@192.0.2.30>\r\n"))
    [ev] = events_of(h, ReferReceived)
    h.ep.answer_refer(ev, 603, h.now)
    assert statuses(h.flush()) == [603]
    with pytest.raises(ValueError, match="no accepted REFER"):
        h.ep.notify_refer(call, 100, h.now, final=False)


def test_cancel_is_sent_once_and_a_peer_that_never_answers_it_is_given_up() -> None:
    """A second hang-up of a ringing call sends no second CANCEL (same branch: it would
    be a second transaction for one CANCEL); with no 487 after 64·T1 the call ends
    (RFC 3261 §9.1)."""
    from hotline.sip.endpoint import CallEnded, EndReason

    h = Harness.make()
    call = h.ep.invite(AGENT, h.now, sdp=SDP_OFFER)
    [inv] = requests(h.flush())
    peer = h.sent[-1][1]
    h.feed(reply(inv, 180), peer)
    h.take_events()
    h.ep.hangup(call, h.now)
    assert len(requests(h.flush(), "CANCEL")) == 1
    h.ep.hangup(call, h.now)  # e.g. the drain hanging up every call
    assert requests(h.flush(), "CANCEL") == []
    assert call.state is CallState.CALLING
    h.advance(h.ep.config.timers.b - 1)
    assert not [e for e in h.take_events() if isinstance(e, CallEnded)]
    h.advance(2)
    [ended] = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert ended.reason is EndReason.TIMEOUT and ended.status == 408
    assert call.state is CallState.ENDED and h.ep.active_calls == 0
