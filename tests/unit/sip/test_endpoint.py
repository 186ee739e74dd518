"""Endpoint (UAS/UAC) behaviour with a fake clock and no sockets."""

from __future__ import annotations

from hotline.sip.endpoint import (
    CallConfirmed,
    CallEnded,
    CallOffered,
    DtmfInfoReceived,
    EndReason,
    OutboundAnswered,
    SessionModified,
)
from hotline.sip.message import Request, Response
from tests.unit.sip.sipfake import (
    CALLER,
    SDP_OFFER,
    Harness,
    in_dialog,
    invite,
    statuses,
)

ANSWER = b"v=0\r\no=hotline 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"


def offered(h: Harness, data: str) -> CallOffered:
    out = h.feed(data)
    assert statuses(out) == [100]
    [ev] = [e for e in h.take_events() if isinstance(e, CallOffered)]
    return ev


def test_invite_answer_ack_bye() -> None:
    h = Harness.make()
    data = invite("c1")
    ev = offered(h, data)
    assert ev.sdp == SDP_OFFER
    assert ev.call.dialled == "1800" and ev.call.remote_user == "0412345678"
    h.ep.answer(ev.call, ANSWER, h.now)
    [ok] = h.flush()
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.body == ANSWER and ok.headers.get("Content-Type") == "application/sdp"
    assert ok.to.tag == ev.call.local_tag
    assert ok.headers.get("Contact") == "<sip:hotline@198.51.100.1:5060>"
    # The response goes back to the source (rport stamped into the Via).
    assert h.sent[-1][1] == CALLER
    assert "rport=5062" in (ok.headers.get("Via") or "")
    tag = ev.call.local_tag
    h.feed(in_dialog("ACK", "c1", tag, 1))
    assert any(isinstance(e, CallConfirmed) for e in h.take_events())
    # No 2xx retransmission after the ACK.
    assert h.advance(40) == []
    out = h.feed(in_dialog("BYE", "c1", tag, 2))
    assert statuses(out) == [200]
    [end] = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert end.reason is EndReason.REMOTE_BYE
    assert h.ep.active_calls == 0


def test_2xx_retransmitted_until_ack_then_bye_after_64_t1() -> None:
    h = Harness.make()
    ev = offered(h, invite("c2"))
    h.ep.answer(ev.call, ANSWER, h.now)
    h.flush()
    out = h.advance(31.9)
    assert statuses(out) == [200] * len(out) and len(out) >= 7  # 0.5,1,2,4,4,4,4,4,...
    out = h.advance(0.2)
    byes = [m for m in out if isinstance(m, Request) and m.method == "BYE"]
    assert len(byes) == 1
    assert byes[0].to.tag == "from1" and byes[0].from_.tag == ev.call.local_tag
    ends = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert ends and ends[0].reason is EndReason.NO_ACK


def test_invite_retransmission_absorbed() -> None:
    h = Harness.make()
    data = invite("c3", branch="z9hG4bKsame")
    offered(h, data)
    out = h.feed(data)  # retransmitted INVITE: the 100 is repeated, no new call
    assert statuses(out) == [100]
    assert not [e for e in h.take_events() if isinstance(e, CallOffered)]


def test_cancel_gives_200_then_487() -> None:
    h = Harness.make()
    data = invite("c4", branch="z9hG4bKcan")
    ev = offered(h, data)
    h.ep.ring(ev.call, h.now)
    assert statuses(h.flush()) == [180]
    cancel = data.replace("INVITE sip:", "CANCEL sip:", 1).replace("1 INVITE", "1 CANCEL")
    cancel = cancel.split("Content-Type")[0] + "Content-Length: 0\r\n\r\n"
    out = h.feed(cancel)
    assert statuses(out) == [200, 487]
    assert [m.cseq.method for m in out] == ["CANCEL", "INVITE"]
    [end] = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert end.reason is EndReason.CANCELLED


def test_cancel_without_invite_is_481() -> None:
    h = Harness.make()
    data = invite("c5", branch="z9hG4bKnone", body=b"", method="CANCEL")
    assert statuses(h.feed(data)) == [481]


def test_bye_for_unknown_dialog_is_481() -> None:
    h = Harness.make()
    assert statuses(h.feed(in_dialog("BYE", "nope", "xyz", 2))) == [481]


def test_reinvite_and_info_in_dialog() -> None:
    h = Harness.make()
    ev = offered(h, invite("c6"))
    h.ep.answer(ev.call, ANSWER, h.now)
    h.flush()
    tag = ev.call.local_tag
    h.feed(in_dialog("ACK", "c6", tag, 1))
    hold = SDP_OFFER.replace(b"a=fmtp", b"a=sendonly\r\na=fmtp")
    h.feed(in_dialog("INVITE", "c6", tag, 2, body=hold, ctype="application/sdp"))
    [mod] = [e for e in h.take_events() if isinstance(e, SessionModified)]
    assert mod.sdp == hold and mod.method == "INVITE"
    h.ep.answer_modify(mod.call, 200, ANSWER, h.now)
    assert statuses(h.flush()) == [200]
    out = h.feed(in_dialog("INFO", "c6", tag, 3, body=b"Signal=5\r\nDuration=160\r\n",
                           ctype="application/dtmf-relay"))
    assert statuses(out) == [200]
    [d] = [e for e in h.take_events() if isinstance(e, DtmfInfoReceived)]
    assert (d.digit, d.duration_ms) == ("5", 160)
    # A lower CSeq than the last one is refused.
    assert statuses(h.feed(in_dialog("INFO", "c6", tag, 2))) == [500]


def test_unknown_method_501_with_allow_and_unsupported_405() -> None:
    h = Harness.make()
    [r] = h.feed(invite(method="FROB", body=b""))
    assert isinstance(r, Response) and r.status == 501 and "INVITE" in (r.headers.get("Allow") or "")
    [r] = h.feed(invite(method="SUBSCRIBE", body=b""))
    assert isinstance(r, Response) and r.status == 405 and r.headers.get("Allow")


def test_require_unsupported_is_420() -> None:
    h = Harness.make()
    [r] = h.feed(invite(extra="Require: 100rel, foo\r\n"))
    assert isinstance(r, Response) and r.status == 420
    assert r.headers.get("Unsupported") == "100rel, foo"


def test_overload_max_calls_then_drain() -> None:
    h = Harness.make(max_calls=1)
    offered(h, invite("o1"))
    [r] = h.feed(invite("o2"))
    assert isinstance(r, Response) and r.status == 503 and r.headers.get("Retry-After")
    h.ep.start_drain()
    [r] = h.feed(invite("o3"))
    assert isinstance(r, Response) and r.status == 503


def test_cps_limit() -> None:
    h = Harness.make(max_cps=2.0)
    codes = []
    for i in range(5):
        codes.append(statuses(h.feed(invite(f"cps{i}")))[0])
    assert codes.count(100) == 2 and codes.count(503) == 3
    h.advance(2.0)
    assert statuses(h.feed(invite("cps-later")))[0] == 100


def test_malformed_request_gets_400_and_endpoint_goes_on() -> None:
    h = Harness.make()
    bad = invite("m1").replace("CSeq: 1 INVITE", "CSeq: x INVITE")
    h.ep.receive(bad.encode(), CALLER, h.now)
    [(raw, peer)] = h.ep.datagrams_to_send()
    assert raw.startswith(b"SIP/2.0 400 Bad Request (CSeq: expected")
    assert b"\r\nCSeq: x INVITE\r\n" in raw and peer == CALLER
    assert statuses(h.feed(invite("m2")))[0] == 100


def test_merged_request_is_482() -> None:
    h = Harness.make()
    offered(h, invite("mg", branch="z9hG4bKa"))
    [r] = h.feed(invite("mg", branch="z9hG4bKb"))
    assert isinstance(r, Response) and r.status == 482


def test_uac_invite_ack_and_bye() -> None:
    h = Harness.make()
    call = h.ep.invite("sip:agent1@192.0.2.20:5070", h.now, sdp=SDP_OFFER)
    [inv] = h.flush()
    assert isinstance(inv, Request) and inv.method == "INVITE"
    assert h.sent[-1][1].host == "192.0.2.20" and h.sent[-1][1].port == 5070
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {inv.headers.get('Via')}\r\n"
        f"From: {inv.headers.get('From')}\r\n"
        f"To: {inv.headers.get('To')};tag=agent\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:agent1@192.0.2.20:5070>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(ANSWER)}\r\n\r\n"
    ) + ANSWER.decode()
    out = h.feed(ok, peer=h.sent[-1][1])
    [ack] = out
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.number == 1
    assert str(ack.uri) == "sip:agent1@192.0.2.20:5070"
    assert [e for e in h.take_events() if isinstance(e, OutboundAnswered)]
    # A retransmitted 200 is ACKed again and raises no new event.
    out = h.feed(ok, peer=h.sent[-1][1])
    assert [m.method for m in out if isinstance(m, Request)] == ["ACK"]
    assert not [e for e in h.take_events() if isinstance(e, OutboundAnswered)]
    h.ep.hangup(call, h.now)
    [bye] = h.flush()
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.cseq.number == 2


def _reply(inv: Request, status: int, extra: str = "", tag: str = "agent",
           body: bytes = b"") -> str:
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"SIP/2.0 {status} X\r\nVia: {inv.headers.get('Via')}\r\nFrom: {inv.headers.get('From')}\r\n"
        f"To: {inv.headers.get('To')};tag={tag}\r\nCall-ID: {inv.call_id}\r\n"
        f"CSeq: {inv.cseq.number} INVITE\r\n{extra}{ctype}Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


def test_uac_digest_retry_then_wrong_password_gives_up() -> None:
    from hotline.sip.auth import DigestVerifier

    h = Harness.make()
    secrets = {"agent1": "s3cret"}
    from hotline.sip.auth import Algorithm, compute_ha1

    def lookup(user: str) -> dict[Algorithm, str] | None:
        pw = secrets.get(user)
        return None if pw is None else {Algorithm.SHA256: compute_ha1(user, "pbx", pw, Algorithm.SHA256)}

    verifier = DigestVerifier("pbx", b"k" * 32, lookup, random_bytes=lambda n: b"r" * n,
                              algorithms=(Algorithm.SHA256,))
    call = h.ep.invite("sip:agent1@192.0.2.20", h.now, sdp=SDP_OFFER,
                       credentials=("agent1", "s3cret"))
    [inv] = h.flush()
    assert isinstance(inv, Request)
    challenge = "".join(f"WWW-Authenticate: {c}\r\n" for c in verifier.challenge(h.now))
    out = h.feed(_reply(inv, 401, challenge), peer=h.sent[-1][1])
    methods = [m.method for m in out if isinstance(m, Request)]
    assert methods == ["ACK", "INVITE"]  # ACK for the 401 inside its transaction, then retry
    retry = next(m for m in out if isinstance(m, Request) and m.method == "INVITE")
    assert retry.cseq.number == 2 and retry.top_via.branch != inv.top_via.branch
    outcome = verifier.verify_request(retry, h.now)
    assert outcome.accepted and outcome.username == "agent1"
    # A second, non-stale challenge means the password is wrong: no third INVITE.
    challenge = "".join(f"WWW-Authenticate: {c}\r\n" for c in verifier.challenge(h.now))
    out = h.feed(_reply(retry, 401, challenge), peer=h.sent[-1][1])
    assert [m.method for m in out if isinstance(m, Request)] == ["ACK"]
    [end] = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert end.call is call and end.status == 401


def test_uac_large_invite_goes_by_tcp() -> None:
    h = Harness.make(mtu=1300)
    big = SDP_OFFER + b"".join(b"a=x-padding:%d\r\n" % i for i in range(80))
    h.ep.invite("sip:agent1@192.0.2.20", h.now, sdp=big)
    [inv] = h.flush()
    assert isinstance(inv, Request)
    assert h.sent[-1][1].transport == "tcp"
    assert inv.top_via.transport == "TCP"


def test_uac_cancel_after_provisional() -> None:
    h = Harness.make()
    call = h.ep.invite("sip:agent1@192.0.2.20", h.now, sdp=SDP_OFFER)
    [inv] = h.flush()
    assert isinstance(inv, Request)
    h.ep.cancel(call, h.now)
    assert h.flush() == []  # §9.1: no CANCEL before a provisional response
    out = h.feed(_reply(inv, 180), peer=h.sent[-1][1])
    [cancel] = [m for m in out if isinstance(m, Request)]
    assert cancel.method == "CANCEL" and cancel.top_via.branch == inv.top_via.branch
    out = h.feed(_reply(inv, 487), peer=h.sent[-1][1])
    assert [m.method for m in out if isinstance(m, Request)] == ["ACK"]
    [end] = [e for e in h.take_events() if isinstance(e, CallEnded)]
    assert end.reason is EndReason.CANCELLED
