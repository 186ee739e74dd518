"""Dialog rules (RFC 3261 §12): identity, route sets, CSeq, in-dialog requests."""

from __future__ import annotations

from hotline.sip.dialog import Dialog, DialogState, Role
from hotline.sip.message import Request, Response, parse_message

INVITE = (
    "INVITE sip:1800@hotline.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP proxy.test;branch=z9hG4bKp1\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKc1\r\n"
    "Record-Route: <sip:p2.test;lr>, <sip:p1.test;lr>\r\n"
    "From: <sip:caller@example.com>;tag=ft\r\nTo: <sip:1800@hotline.test>\r\n"
    "Call-ID: d1\r\nCSeq: 7 INVITE\r\nContact: <sip:caller@192.0.2.10:5062>\r\n"
    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _msg(text: str) -> Request | Response:
    return parse_message(text.encode())


def test_uas_dialog_keeps_record_route_order_and_targets_contact() -> None:
    inv = _msg(INVITE)
    assert isinstance(inv, Request)
    contact = inv.contacts[0].uri
    d = Dialog.as_uas(inv, "lt", contact)
    assert d.id == ("d1", "lt", "ft") and d.role is Role.UAS and d.state is DialogState.EARLY
    assert d.route_set == ["<sip:p2.test;lr>", "<sip:p1.test;lr>"]
    bye = d.new_request("BYE", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx")
    assert str(bye.uri) == "sip:caller@192.0.2.10:5062"
    assert bye.headers.get_all("Route") == ["<sip:p2.test;lr>", "<sip:p1.test;lr>"]
    assert bye.from_.tag == "lt" and bye.to.tag == "ft"
    assert bye.cseq.number == 1 and bye.cseq.method == "BYE"


def test_uac_dialog_reverses_record_route() -> None:
    inv = _msg(INVITE)
    assert isinstance(inv, Request)
    ok = _msg(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKc1\r\n"
        "Record-Route: <sip:p2.test;lr>, <sip:p1.test;lr>\r\n"
        "From: <sip:caller@example.com>;tag=ft\r\nTo: <sip:1800@hotline.test>;tag=tt\r\n"
        "Call-ID: d1\r\nCSeq: 7 INVITE\r\nContact: <sip:agent@192.0.2.20>\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    d = Dialog.as_uac(inv, ok)
    assert d.route_set == ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]
    assert str(d.remote_target) == "sip:agent@192.0.2.20"
    ack = d.new_request("ACK", "SIP/2.0/UDP h;branch=z9hG4bKa", cseq=7)
    assert ack.cseq.number == 7 and d.local_seq == 7
    assert d.new_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKb").cseq.number == 8


def test_remote_cseq_must_grow() -> None:
    inv = _msg(INVITE)
    assert isinstance(inv, Request)
    d = Dialog.as_uas(inv, "lt", inv.contacts[0].uri)
    later = _msg(INVITE.replace("CSeq: 7 INVITE", "CSeq: 8 INVITE"))
    earlier = _msg(INVITE.replace("CSeq: 7 INVITE", "CSeq: 6 INVITE"))
    assert isinstance(later, Request) and isinstance(earlier, Request)
    assert d.accept_remote_cseq(later)
    assert not d.accept_remote_cseq(earlier)
