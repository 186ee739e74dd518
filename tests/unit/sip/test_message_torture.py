"""RFC 4475 / RFC 5118 torture messages through the message parser, bytes unchanged.

Endpoint-level verdicts (the response a UAS sends) are in test_endpoint_torture.py;
here each message either parses, or fails with the status hint its verdict names.
"""

from __future__ import annotations

import pytest

from hotline.sip.errors import ParseError
from hotline.sip.message import Request, Response, parse_message
from hotline.sip.uri import SipURI
from tests.conftest import TORTURE

# file → None (parses) or the ParseError status hint (None inside a tuple: drop)
PARSE_VERDICTS: dict[str, int | tuple[None] | None] = {
    "rfc4475/wsinv.dat": None,
    "rfc4475/intmeth.dat": None,
    "rfc4475/esc01.dat": None,
    "rfc4475/escnull.dat": None,
    "rfc4475/esc02.dat": None,
    "rfc4475/lwsdisp.dat": None,
    "rfc4475/longreq.dat": None,
    "rfc4475/dblreq.dat": None,
    "rfc4475/semiuri.dat": None,
    "rfc4475/transports.dat": None,
    "rfc4475/mpart01.dat": None,
    "rfc4475/unreason.dat": None,
    "rfc4475/noreason.dat": None,
    "rfc4475/badinv01.dat": 400,
    "rfc4475/clerr.dat": 400,
    "rfc4475/ncl.dat": 400,
    "rfc4475/scalar02.dat": 400,
    "rfc4475/scalarlg.dat": (None,),
    "rfc4475/quotbal.dat": 400,
    "rfc4475/ltgtruri.dat": 400,
    "rfc4475/lwsruri.dat": 400,
    "rfc4475/lwsstart.dat": None,
    "rfc4475/trws.dat": None,
    "rfc4475/escruri.dat": None,  # parses; the endpoint answers 400
    "rfc4475/baddate.dat": None,
    "rfc4475/regbadct.dat": None,  # parses; the registrar answers 400
    "rfc4475/badaspec.dat": 400,
    "rfc4475/baddn.dat": 400,
    "rfc4475/baddn-with-final-crlf.dat.alt": 400,
    "rfc4475/badvers.dat": 505,
    "rfc4475/mismatch01.dat": None,
    "rfc4475/mismatch02.dat": None,
    "rfc4475/bigcode.dat": (None,),
    "rfc4475/badbranch.dat": None,
    "rfc4475/insuf.dat": 400,
    "rfc4475/unkscm.dat": None,
    "rfc4475/novelsc.dat": None,
    "rfc4475/unksm2.dat": None,
    "rfc4475/bext01.dat": None,
    "rfc4475/invut.dat": None,
    "rfc4475/regaut01.dat": None,
    "rfc4475/multi01.dat": 400,
    "rfc4475/mcl01.dat": 400,
    "rfc4475/bcast.dat": None,
    "rfc4475/zeromf.dat": None,
    "rfc4475/cparam01.dat": None,
    "rfc4475/cparam02.dat": None,
    "rfc4475/regescrt.dat": None,
    "rfc4475/sdp01.dat": None,
    "rfc4475/inv2543.dat": None,
    "rfc5118/ipv6-good": None,
    "rfc5118/ipv6-bad": 400,
    "rfc5118/port-ambiguous": None,
    "rfc5118/port-unambiguous": None,
    "rfc5118/via-received-param-with-delim": None,
    "rfc5118/via-received-param-no-delim": None,
    "rfc5118/ipv6-in-sdp": None,
    "rfc5118/mult-ip-in-header": None,
    "rfc5118/mult-ip-in-sdp": None,
    "rfc5118/ipv4-mapped-ipv6": None,
    "rfc5118/ipv6-bug-abnf-3-colons": None,
    "rfc5118/ipv6-correct-abnf-2-colons": None,
}


def test_every_corpus_file_has_a_verdict() -> None:
    files = {
        str(p.relative_to(TORTURE))
        for p in TORTURE.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert files == set(PARSE_VERDICTS)


@pytest.mark.parametrize("name", sorted(PARSE_VERDICTS))
def test_parse_verdict(name: str) -> None:
    data = (TORTURE / name).read_bytes()
    verdict = PARSE_VERDICTS[name]
    if verdict is None:
        msg = parse_message(data)
        assert isinstance(msg, Request | Response)
        assert msg.call_id
        return
    with pytest.raises(ParseError) as info:
        parse_message(data)
    expected = None if isinstance(verdict, tuple) else verdict
    assert info.value.status == expected, info.value.reason


def _req(name: str) -> Request:
    msg = parse_message((TORTURE / name).read_bytes())
    assert isinstance(msg, Request)
    return msg


def test_wsinv_folding_and_lws() -> None:
    req = _req("rfc4475/wsinv.dat")
    assert req.method == "INVITE"
    assert req.to.tag == "1918181833n"
    assert req.from_.tag == "98asjd8"
    assert req.from_.display_name == 'J Rosenberg \\"'
    assert req.cseq.number == 9 and req.cseq.method == "INVITE"
    assert req.headers.get("Max-Forwards") == "0068"
    assert [v.transport for v in req.vias] == ["UDP", "TCP", "UDP"]
    assert req.vias[0].host == "192.0.2.2" and req.vias[0].branch == "390skdjuw"
    assert req.vias[2].branch == "z9hG4bK30239"
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(req.body) == 150


def test_esc01_unescapes_once() -> None:
    req = _req("rfc4475/esc01.dat")
    assert isinstance(req.uri, SipURI)
    assert req.uri.user == "sips:user@example.com"
    assert str(req.uri) == "sip:sips%3Auser%40example.com@example.net"


def test_escnull_keeps_nul_in_user() -> None:
    req = _req("rfc4475/escnull.dat")
    assert isinstance(req.to.uri, SipURI)
    assert req.to.uri.user == "null-\x00-null"
    users = [c.uri.user for c in req.contacts if isinstance(c.uri, SipURI)]
    assert users == ["\x00", "\x00\x00"]


def test_semiuri_user_with_semicolon() -> None:
    req = _req("rfc4475/semiuri.dat")
    assert isinstance(req.uri, SipURI)
    assert req.uri.user == "user;par=u@example.net"
    assert req.uri.host == "example.com"


def test_dblreq_ignores_trailing_octets() -> None:
    req = _req("rfc4475/dblreq.dat")
    assert req.method == "REGISTER" and req.body == b""


def test_mpart01_binary_body_framed_by_length() -> None:
    req = _req("rfc4475/mpart01.dat")
    assert len(req.body) == int(req.headers.get("Content-Length") or 0)
    assert b"\x00" in req.body


def test_inv2543_body_is_rest_of_datagram() -> None:
    req = _req("rfc4475/inv2543.dat")
    assert req.body.startswith(b"v=0")
    assert req.from_.tag is None


def test_cparam_params_placement() -> None:
    c1 = _req("rfc4475/cparam01.dat").contacts[0]
    assert "unknownparam" in c1.params
    assert isinstance(c1.uri, SipURI) and "unknownparam" not in c1.uri.params
    c2 = _req("rfc4475/cparam02.dat").contacts[0]
    assert isinstance(c2.uri, SipURI) and "unknownparam" in c2.uri.params


def test_regescrt_keeps_escaped_route_header() -> None:
    c = _req("rfc4475/regescrt.dat").contacts[0]
    assert isinstance(c.uri, SipURI)
    assert c.uri.headers == [("Route", "<sip:sip.example.com>")]
    assert "?Route=%3Csip:sip.example.com%3E" in str(c.uri)


def test_regbadct_contact_is_rejected_when_parsed() -> None:
    with pytest.raises(ParseError, match="must be enclosed"):
        _ = _req("rfc4475/regbadct.dat").contacts


def test_ipv6_references() -> None:
    req = _req("rfc5118/port-unambiguous")
    assert isinstance(req.uri, SipURI)
    assert req.uri.host == "[2001:db8::10]" and req.uri.port == 5070
    amb = _req("rfc5118/port-ambiguous")
    assert isinstance(amb.uri, SipURI)
    assert amb.uri.host == "[2001:db8::10:5070]" and amb.uri.port is None


def test_unreason_utf8_reason_phrase() -> None:
    msg = parse_message((TORTURE / "rfc4475/unreason.dat").read_bytes())
    assert isinstance(msg, Response) and msg.status == 200
    assert "простое" in msg.reason


def test_noreason_empty_phrase() -> None:
    msg = parse_message((TORTURE / "rfc4475/noreason.dat").read_bytes())
    assert isinstance(msg, Response) and msg.reason == ""
