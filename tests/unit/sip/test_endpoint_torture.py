"""RFC 4475 / RFC 5118 torture messages through the whole UAS: the response each gets.

The verdicts come from tests/data/sip-torture/README.md. Each message goes to a fresh
endpoint (with a registrar that does not require auth, so the REGISTER verdicts of the
RFC — 200 — apply; regaut01 with auth is tested in test_registrar_auth.py).
"""

from __future__ import annotations

import pytest

from hotline.sip.endpoint import CallOffered, Registered
from hotline.sip.registrar import Registrar
from tests.conftest import TORTURE
from tests.unit.sip.sipfake import CALLER, Harness

# file → the status of the first response, or None for a silent drop
VERDICTS: dict[str, int | None] = {
    "rfc4475/wsinv.dat": 481,  # parses; its To tag names a dialog we do not have
    "rfc4475/intmeth.dat": 501,
    "rfc4475/esc01.dat": 100,
    "rfc4475/escnull.dat": 200,
    "rfc4475/esc02.dat": 501,
    "rfc4475/lwsdisp.dat": 200,
    "rfc4475/longreq.dat": 100,
    "rfc4475/dblreq.dat": 200,
    "rfc4475/semiuri.dat": 200,
    "rfc4475/transports.dat": 200,
    "rfc4475/mpart01.dat": 405,  # MESSAGE parsed and framed; not a method we serve
    "rfc4475/unreason.dat": None,
    "rfc4475/noreason.dat": None,
    "rfc4475/badinv01.dat": 400,
    "rfc4475/clerr.dat": 400,
    "rfc4475/ncl.dat": 400,
    "rfc4475/scalar02.dat": 400,
    "rfc4475/scalarlg.dat": None,
    "rfc4475/quotbal.dat": 400,
    "rfc4475/ltgtruri.dat": 400,
    "rfc4475/lwsruri.dat": 400,
    "rfc4475/lwsstart.dat": 100,
    "rfc4475/trws.dat": 200,
    "rfc4475/escruri.dat": 400,
    "rfc4475/baddate.dat": 100,
    "rfc4475/regbadct.dat": 400,
    "rfc4475/badaspec.dat": 400,
    "rfc4475/baddn.dat": 400,
    "rfc4475/baddn-with-final-crlf.dat.alt": 400,
    "rfc4475/badvers.dat": 505,
    "rfc4475/mismatch01.dat": 400,
    "rfc4475/mismatch02.dat": 501,
    "rfc4475/bigcode.dat": None,
    "rfc4475/badbranch.dat": 400,
    "rfc4475/insuf.dat": 400,
    "rfc4475/unkscm.dat": 416,
    "rfc4475/novelsc.dat": 416,
    "rfc4475/unksm2.dat": 400,
    "rfc4475/bext01.dat": 420,
    "rfc4475/invut.dat": 415,
    "rfc4475/regaut01.dat": 200,
    "rfc4475/multi01.dat": 400,
    "rfc4475/mcl01.dat": 400,
    "rfc4475/bcast.dat": None,
    "rfc4475/zeromf.dat": 200,
    "rfc4475/cparam01.dat": 200,
    "rfc4475/cparam02.dat": 200,
    "rfc4475/regescrt.dat": 200,
    "rfc4475/sdp01.dat": 406,
    "rfc4475/inv2543.dat": 100,
    "rfc5118/ipv6-good": 200,
    "rfc5118/ipv6-bad": 400,
    "rfc5118/port-ambiguous": 200,
    "rfc5118/port-unambiguous": 200,
    "rfc5118/via-received-param-with-delim": 481,  # a BYE for no dialog of ours
    "rfc5118/via-received-param-no-delim": 200,
    "rfc5118/ipv6-in-sdp": 100,
    "rfc5118/mult-ip-in-header": 481,  # a BYE for no dialog of ours
    "rfc5118/mult-ip-in-sdp": 100,
    "rfc5118/ipv4-mapped-ipv6": 100,
    "rfc5118/ipv6-bug-abnf-3-colons": 200,
    "rfc5118/ipv6-correct-abnf-2-colons": 200,
}


def run(name: str) -> tuple[Harness, list[bytes]]:
    h = Harness.make(registrar=Registrar())
    h.ep.receive((TORTURE / name).read_bytes(), CALLER, h.now)
    return h, [d for d, _ in h.ep.datagrams_to_send()]


def test_every_corpus_file_has_a_verdict() -> None:
    files = {str(p.relative_to(TORTURE)) for p in TORTURE.rglob("*")
             if p.is_file() and p.name != "README.md"}
    assert files == set(VERDICTS)


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_torture_verdict(name: str) -> None:
    _, out = run(name)
    expected = VERDICTS[name]
    if expected is None:
        assert out == []
        return
    assert out, "no response"
    first = out[0].split(b"\r\n", 1)[0]
    assert first.startswith(f"SIP/2.0 {expected} ".encode()), first
    # Every answer copies the request's transaction identity back.
    assert b"\r\nCSeq: " in out[0] or b"\r\nCseq" in out[0]


def test_unknown_method_answers_carry_allow() -> None:
    for name in ("rfc4475/intmeth.dat", "rfc4475/esc02.dat", "rfc4475/mismatch02.dat"):
        _, out = run(name)
        assert b"\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS" in out[0]


def test_420_lists_the_require_tags() -> None:
    _, out = run("rfc4475/bext01.dat")
    assert b"\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n" in out[0]


def test_415_names_what_we_accept() -> None:
    _, out = run("rfc4475/invut.dat")
    assert b"\r\nAccept: application/sdp\r\n" in out[0]


def test_escnull_registers_two_distinct_contacts() -> None:
    h, out = run("rfc4475/escnull.dat")
    assert out[0].startswith(b"SIP/2.0 200 ")
    bindings = h.ep.registrar.lookup("sip:null-%00-null@example.com", h.now) if h.ep.registrar else []
    assert len(bindings) == 2
    assert any(isinstance(e, Registered) for e in h.ep.take_events())


def test_regescrt_binding_keeps_the_escaped_route() -> None:
    h, _ = run("rfc4475/regescrt.dat")
    assert h.ep.registrar is not None
    [b] = h.ep.registrar.lookup("sip:user@example.com", h.now)
    assert str(b.contact.uri).endswith("?Route=%3Csip:sip.example.com%3E")


def test_cparam01_unknownparam_stays_a_contact_param() -> None:
    h, out = run("rfc4475/cparam01.dat")
    assert b";unknownparam" in out[0]
    assert h.ep.registrar is not None
    [b] = h.ep.registrar.lookup("sip:watson@example.com", h.now)
    assert "unknownparam" in b.contact.params


def test_dblreq_processes_only_the_register() -> None:
    h, out = run("rfc4475/dblreq.dat")
    assert len(out) == 1 and out[0].startswith(b"SIP/2.0 200 ")
    assert not [e for e in h.ep.take_events() if isinstance(e, CallOffered)]


def test_responses_go_back_to_the_source() -> None:
    h = Harness.make(registrar=Registrar())
    h.ep.receive((TORTURE / "rfc4475/badinv01.dat").read_bytes(), CALLER, h.now)
    [(_, peer)] = h.ep.datagrams_to_send()
    assert peer == CALLER
