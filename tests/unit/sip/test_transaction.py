"""Unit tests for hotline.sip.transaction: the four RFC 3261 §17 machines (with the
RFC 6026 Accepted states), their timers at exact instants on a fake clock, matching,
CANCEL, merged requests, the RFC 2543 fallback, stray messages and bookkeeping.

Everything goes through the sans-IO interface: requests are parsed from literal SIP
text, time is a float, and what the layer wants sent is parsed back from
`datagrams_to_send()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from hotline.sip.addr import Peer
from hotline.sip.errors import ParseError
from hotline.sip.message import Request, Response, make_response, parse_message
from hotline.sip.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    TxEvent,
    TxState,
)

UDP = Peer("udp", "192.0.2.10", 5062)
TCP = Peer("tcp", "192.0.2.10", 5062, conn=3)
CUSTOM = Timers(t1=0.1, t2=0.4, t4=0.5)

CALL_ID = "a84b4c76e66710@pc33.example.com"
FROM_TAG = "1928301774"
TO_TAG = "as83kd9bs"


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK776asdhds",
    call_id: str = CALL_ID,
    cseq: int = 314159,
    from_tag: str = FROM_TAG,
    to_tag: str | None = None,
    uri: str = "sip:1800@hotline.test",
    sent_by: str = "192.0.2.10:5062",
    transport: str = "UDP",
    routes: Iterable[str] = (),
    cseq_method: str | None = None,
) -> Request:
    """A request parsed from literal SIP text."""
    via = f"SIP/2.0/{transport} {sent_by}" + (f";branch={branch}" if branch is not None else "")
    to = "To: Hotline <sip:1800@hotline.test>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: Alice <sip:alice@example.com>;tag={from_tag}",
        to,
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *(f"Route: {r}" for r in routes),
        "Contact: <sip:alice@192.0.2.10:5062>",
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def outgoing(method: str = "INVITE", *, branch: str = "z9hG4bKout1", **kw: object) -> Request:
    """A request we send as a UAC (our own Via)."""
    return request(method, branch=branch, sent_by="198.51.100.1:5060", **kw)  # type: ignore[arg-type]


def response(req: Request, status: int, *, to_tag: str | None = TO_TAG) -> Response:
    """`req`'s response as it would come off the wire."""
    resp = make_response(req, status, to_tag=to_tag)
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, Response)
    return parsed


def ack_for_2xx(req: Request, *, branch: str = "z9hG4bKnewack1") -> Request:
    """The ACK a UAC sends for our 2xx: a new transaction, so a new branch."""
    return request("ACK", branch=branch, call_id=req.call_id, cseq=req.cseq.number,
                   from_tag=req.from_.tag or "", to_tag=TO_TAG,
                   uri="sip:alice@192.0.2.10:5062")


def ack_for_non2xx(req: Request) -> Request:
    """The ACK for a non-2xx final: same branch, part of the INVITE transaction."""
    return request("ACK", branch=req.top_via.branch, call_id=req.call_id,
                   cseq=req.cseq.number, from_tag=req.from_.tag or "", to_tag=TO_TAG,
                   uri=str(req.uri), sent_by=f"{req.top_via.host}:{req.top_via.port}")


def sent(layer: TransactionLayer) -> list[Request | Response]:
    return [parse_message(data) for data, _ in layer.datagrams_to_send()]


def sent_raw(layer: TransactionLayer) -> list[tuple[bytes, Peer]]:
    return layer.datagrams_to_send()


@dataclass
class Fired:
    at: float
    messages: list[Request | Response]
    events: list[TxEvent]


def run(layer: TransactionLayer, until: float) -> list[Fired]:
    """Fire every timer due up to `until`, each at its own deadline."""
    out: list[Fired] = []
    while (t := layer.next_timer()) is not None and t <= until:
        events = layer.handle_timer(t)
        out.append(Fired(t, sent(layer), events))
    return out


def send_times(fired: list[Fired]) -> list[float]:
    return [f.at for f in fired if f.messages]


def event_times(fired: list[Fired]) -> list[tuple[float, type]]:
    """(instant rounded to the nanosecond, event type) of every event."""
    return [(round(f.at, 9), type(e)) for f in fired for e in f.events]


def state(tx: ClientTransaction | ServerTransaction) -> TxState:
    """The state now (a call, so mypy does not keep an earlier narrowing)."""
    return tx.state


def expected_capped(t1: float, t2: float, end: float, start: float = 0.0) -> list[float]:
    """Instants of a retransmission timer that starts at T1 and doubles up to T2."""
    out, at, interval = [], start + t1, t1
    while at < end - 1e-9:
        out.append(at)
        interval = min(2 * interval, t2)
        at += interval
    return out


# ---------------------------------------------------------------------------
# Timers
# ---------------------------------------------------------------------------


def test_timer_defaults_follow_rfc3261() -> None:
    t = Timers()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.b == 32.0
    assert CUSTOM.b == pytest.approx(6.4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t1": 0.0}, "T1 must be positive, got 0.0"),
        ({"t1": -1.0}, "T1 must be positive, got -1.0"),
        ({"t1": 1.0, "t2": 0.5}, "T2 (0.5) must not be smaller than T1 (1.0)"),
        ({"t4": -0.1}, "T4 must not be negative, got -0.1"),
    ],
)
def test_timers_reject_values_that_would_loop_or_make_no_sense(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError) as exc:
        Timers(**kwargs)
    assert str(exc.value) == message


# ---------------------------------------------------------------------------
# Client INVITE (§17.1.1, RFC 6026 §7)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timers", "retransmits"),
    [
        (Timers(), [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]),
        (CUSTOM, [0.1, 0.3, 0.7, 1.5, 3.1, 6.3]),
    ],
)
def test_client_invite_timer_a_doubles_and_timer_b_times_out(
    timers: Timers, retransmits: list[float]
) -> None:
    layer = TransactionLayer(timers)
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    first = sent_raw(layer)
    assert len(first) == 1 and first[0][1] == UDP
    assert state(tx) is TxState.CALLING
    assert layer.next_timer() == pytest.approx(timers.t1)

    fired = run(layer, 1000.0)
    assert send_times(fired) == pytest.approx(retransmits)
    for f in fired:
        for m in f.messages:
            assert isinstance(m, Request) and m.to_bytes() == first[0][0]
    # Timer A intervals double without a cap (§17.1.1.2), unlike E and G.
    gaps = [b - a for a, b in zip([0.0, *retransmits], retransmits, strict=False)]
    assert gaps == pytest.approx([timers.t1 * 2**k for k in range(len(gaps))])
    assert event_times(fired) == [(round(timers.b, 9), TransactionTimedOut)]
    (ev,) = fired[-1].events
    assert isinstance(ev, TransactionTimedOut) and ev.tx is tx
    assert state(tx) is TxState.TERMINATED
    assert layer.client_count == 0
    assert layer.next_timer() is None
    assert layer.retransmissions == len(retransmits)


def test_client_invite_provisional_stops_timers_a_and_b() -> None:
    layer = TransactionLayer()
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    layer.datagrams_to_send()
    fired = run(layer, 0.5)
    assert send_times(fired) == [0.5]
    events = layer.receive_response(response(inv, 180), UDP, 0.7)
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, ResponseReceived) and ev.tx is tx and ev.response.status == 180
    assert state(tx) is TxState.PROCEEDING
    assert layer.next_timer() is None  # A and B both gone
    assert run(layer, 10_000.0) == []
    assert state(tx) is TxState.PROCEEDING
    # Further provisionals are passed up too.
    more = layer.receive_response(response(inv, 183), UDP, 50.0)
    assert [type(e) for e in more] == [ResponseReceived]
    assert state(tx) is TxState.PROCEEDING
    assert sent(layer) == []


@pytest.mark.parametrize("timers", [Timers(), CUSTOM])
@pytest.mark.parametrize("provisional_first", [False, True])
def test_client_invite_2xx_goes_to_accepted_and_timer_m_ends_it(
    timers: Timers, provisional_first: bool
) -> None:
    layer = TransactionLayer(timers)
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    layer.datagrams_to_send()
    if provisional_first:
        layer.receive_response(response(inv, 180), UDP, 0.05)
    ok = response(inv, 200)
    events = layer.receive_response(ok, UDP, 0.08)
    assert [type(e) for e in events] == [ResponseReceived]
    assert state(tx) is TxState.ACCEPTED
    assert sent(layer) == []  # the ACK for a 2xx is the TU's, not the transaction's
    assert layer.next_timer() == pytest.approx(0.08 + timers.b)  # Timer M only

    # Retransmitted 2xx (or one from another fork) is passed up in Accepted.
    again = layer.receive_response(response(inv, 200), UDP, 1.0)
    assert len(again) == 1 and isinstance(again[0], ResponseReceived)
    assert again[0].tx is tx
    # Provisionals and non-2xx finals are dropped in Accepted.
    assert layer.receive_response(response(inv, 180), UDP, 1.1) == []
    assert layer.receive_response(response(inv, 486), UDP, 1.2) == []
    assert sent(layer) == []

    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(0.08 + timers.b)]
    assert fired[0].events == [] and fired[0].messages == []
    assert state(tx) is TxState.TERMINATED
    assert layer.client_count == 0
    # After Timer M a retransmitted 2xx is stray: the TU must still ACK it.
    late = layer.receive_response(ok, UDP, 1000.0)
    assert len(late) == 1 and isinstance(late[0], StrayResponse)
    assert late[0].response is ok and late[0].peer == UDP


@pytest.mark.parametrize("status", [300, 302, 404, 486, 487, 500, 503, 600, 603])
def test_client_invite_non2xx_final_generates_the_ack(status: int) -> None:
    layer = TransactionLayer()
    routes = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    inv = outgoing(routes=routes)
    tx = layer.send_request(inv, UDP, 0.0)
    layer.datagrams_to_send()
    layer.receive_response(response(inv, 180), UDP, 0.2)
    final = response(inv, status)
    events = layer.receive_response(final, UDP, 1.0)
    assert len(events) == 1
    assert isinstance(events[0], ResponseReceived) and events[0].response.status == status
    assert state(tx) is TxState.COMPLETED

    out = layer.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == UDP
    ack = parse_message(out[0][0])
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert str(ack.uri) == str(inv.uri)
    assert ack.headers.raw_values("Via") == inv.headers.raw_values("Via")
    assert len(ack.vias) == 1 and ack.top_via.branch == "z9hG4bKout1"
    assert ack.call_id == inv.call_id
    assert ack.headers.get("From") == inv.headers.get("From")
    assert ack.to.tag == TO_TAG
    assert ack.headers.get("To") == final.headers.get("To")
    assert str(ack.cseq) == "314159 ACK"
    assert ack.headers.raw_values("Route") == routes
    assert ack.headers.get("Max-Forwards") == "70"
    assert ack.body == b""
    assert "Contact" not in ack.headers


def test_client_invite_ack_has_one_via_even_from_a_combined_via_line() -> None:
    """§17.1.1.3: the ACK carries a single Via equal to the INVITE's top one, also when
    the INVITE's first Via header line held several comma-separated values."""
    text = (
        "INVITE sip:1800@hotline.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKtop;rport, "
        "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKinner\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=f\r\n"
        "To: <sip:1800@hotline.test>\r\nCall-ID: multi-via\r\nCSeq: 9 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    inv = parse_message(text.encode())
    assert isinstance(inv, Request) and len(inv.vias) == 2
    layer = TransactionLayer()
    layer.send_request(inv, UDP, 0.0)
    layer.datagrams_to_send()
    layer.receive_response(response(inv, 404), UDP, 0.1)
    (ack,) = sent(layer)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert len(ack.vias) == 1
    assert ack.headers.raw_values("Via") == ["SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKtop;rport"]


@pytest.mark.parametrize("timers", [Timers(), CUSTOM])
def test_client_invite_completed_resends_ack_and_timer_d_is_32s(timers: Timers) -> None:
    layer = TransactionLayer(timers)
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    layer.datagrams_to_send()
    final = response(inv, 486)
    layer.receive_response(final, UDP, 0.05)  # in Calling: stops Timer A too
    (ack_bytes, _), = layer.datagrams_to_send()
    # Timer D waits at least 32 s over UDP whatever T1 is (§17.1.1.2).
    assert layer.next_timer() == pytest.approx(0.05 + 32.0)

    assert layer.receive_response(response(inv, 486), UDP, 3.0) == []
    assert layer.datagrams_to_send() == [(ack_bytes, UDP)]
    # Provisionals and 2xx are ignored in Completed.
    assert layer.receive_response(response(inv, 180), UDP, 4.0) == []
    assert layer.receive_response(response(inv, 200), UDP, 4.0) == []
    assert layer.datagrams_to_send() == []

    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(32.05)]
    assert fired[0].events == [] and fired[0].messages == []
    assert state(tx) is TxState.TERMINATED
    assert layer.client_count == 0
    assert layer.retransmissions == 0


def test_client_invite_over_tcp_has_no_timer_a_and_timer_d_is_zero() -> None:
    layer = TransactionLayer()
    inv = outgoing(transport="TCP")
    tx = layer.send_request(inv, TCP, 0.0)
    assert len(layer.datagrams_to_send()) == 1
    assert layer.next_timer() == 32.0  # only Timer B
    layer.receive_response(response(inv, 404), TCP, 2.0)
    (ack_bytes, peer), = layer.datagrams_to_send()
    assert peer == TCP and parse_message(ack_bytes).method == "ACK"  # type: ignore[union-attr]
    assert layer.next_timer() == 2.0
    assert layer.handle_timer(2.0) == []
    assert state(tx) is TxState.TERMINATED
    assert layer.client_count == 0 and layer.next_timer() is None


def test_client_invite_over_tcp_timer_b_still_fires() -> None:
    layer = TransactionLayer()
    tx = layer.send_request(outgoing(transport="TCP"), TCP, 10.0)
    layer.datagrams_to_send()
    fired = run(layer, 100.0)
    assert send_times(fired) == []
    assert event_times(fired) == [(42.0, TransactionTimedOut)]
    assert state(tx) is TxState.TERMINATED


def test_client_responses_match_on_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    # Same branch but CSeq method CANCEL: belongs to a CANCEL transaction, not this one.
    other = response(outgoing("CANCEL"), 200)
    ev = layer.receive_response(other, UDP, 0.1)
    assert len(ev) == 1 and isinstance(ev[0], StrayResponse)
    # ACK has no responses: a "200 (ACK)" must not complete the INVITE.
    bogus = response(outgoing("ACK"), 200)
    ev = layer.receive_response(bogus, UDP, 0.1)
    assert len(ev) == 1 and isinstance(ev[0], StrayResponse)
    # Another branch: stray.
    ev = layer.receive_response(response(outgoing(branch="z9hG4bKother"), 200), UDP, 0.1)
    assert len(ev) == 1 and isinstance(ev[0], StrayResponse)
    assert state(tx) is TxState.CALLING


def test_cancel_bounds_a_proceeding_invite_to_64_t1() -> None:
    """§9.1: after a CANCEL, no final response for the INVITE within 64*T1 means the
    INVITE transaction is destroyed (otherwise it would live for ever)."""
    layer = TransactionLayer()
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    layer.receive_response(response(inv, 180), UDP, 0.3)
    layer.datagrams_to_send()
    cancel = outgoing("CANCEL")
    ctx = layer.send_request(cancel, UDP, 10.0)
    assert ctx is not tx and state(ctx) is TxState.TRYING
    assert layer.client_count == 2
    layer.receive_response(response(cancel, 200), UDP, 10.1)
    assert state(ctx) is TxState.COMPLETED
    fired = run(layer, 100.0)
    assert (42.0, TransactionTimedOut) in event_times(fired)
    timeouts = [e for f in fired for e in f.events if isinstance(e, TransactionTimedOut)]
    assert [e.tx for e in timeouts] == [tx]
    assert state(tx) is TxState.TERMINATED
    assert layer.client_count == 0


def test_cancel_guard_is_disarmed_by_the_487() -> None:
    layer = TransactionLayer()
    inv = outgoing()
    tx = layer.send_request(inv, UDP, 0.0)
    layer.receive_response(response(inv, 180), UDP, 0.3)
    layer.send_request(outgoing("CANCEL"), UDP, 10.0)
    layer.send_request(outgoing("CANCEL", branch="z9hG4bKunrelated"), UDP, 10.0)
    events = layer.receive_response(response(inv, 487), UDP, 11.0)
    assert [type(e) for e in events] == [ResponseReceived]
    assert state(tx) is TxState.COMPLETED
    fired = run(layer, 1000.0)
    assert all(not isinstance(e, TransactionTimedOut) or e.tx is not tx
               for f in fired for e in f.events)
    assert state(tx) is TxState.TERMINATED


# ---------------------------------------------------------------------------
# Client non-INVITE (§17.1.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timers", "intervals"),
    [
        (Timers(), [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]),
        (CUSTOM, [0.1, 0.2] + [0.4] * 15),
    ],
)
def test_client_non_invite_timer_e_caps_at_t2_and_timer_f_times_out(
    timers: Timers, intervals: list[float]
) -> None:
    layer = TransactionLayer(timers)
    req = outgoing("OPTIONS")
    tx = layer.send_request(req, UDP, 0.0)
    (first, _), = layer.datagrams_to_send()
    assert state(tx) is TxState.TRYING
    fired = run(layer, 1000.0)
    times = send_times(fired)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == pytest.approx(intervals)
    assert times == pytest.approx(expected_capped(timers.t1, timers.t2, timers.b))
    assert all(m.to_bytes() == first for f in fired for m in f.messages)
    assert event_times(fired) == [(round(timers.b, 9), TransactionTimedOut)]
    assert state(tx) is TxState.TERMINATED and layer.client_count == 0


def test_client_non_invite_after_provisional_timer_e_fires_every_t2() -> None:
    layer = TransactionLayer()
    req = outgoing("REGISTER")
    tx = layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    events = layer.receive_response(response(req, 100), UDP, 0.2)
    assert [type(e) for e in events] == [ResponseReceived]
    assert state(tx) is TxState.PROCEEDING
    fired = run(layer, 1000.0)
    # The pending E (0.5) still fires, then every T2.
    assert send_times(fired) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert event_times(fired) == [(32.0, TransactionTimedOut)]


def test_client_non_invite_provisional_in_trying_then_more_provisionals() -> None:
    layer = TransactionLayer(CUSTOM)
    req = outgoing("OPTIONS")
    tx = layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    run(layer, 0.35)  # fires at 0.1 and 0.3; next E due at 0.7
    layer.datagrams_to_send()
    layer.receive_response(response(req, 100), UDP, 0.4)
    fired = run(layer, 2.0)
    assert send_times(fired) == pytest.approx([0.7, 1.1, 1.5, 1.9])
    assert state(tx) is TxState.PROCEEDING


@pytest.mark.parametrize(("timers", "k"), [(Timers(), 5.0), (CUSTOM, 0.5)])
@pytest.mark.parametrize("status", [200, 404, 503])
def test_client_non_invite_final_completes_and_timer_k_is_t4(
    timers: Timers, k: float, status: int
) -> None:
    layer = TransactionLayer(timers)
    req = outgoing("OPTIONS")
    tx = layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    final = response(req, status)
    events = layer.receive_response(final, UDP, 0.05)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].response is final and events[0].tx is tx
    assert state(tx) is TxState.COMPLETED
    assert layer.next_timer() == pytest.approx(0.05 + k)
    # Retransmitted finals and late provisionals are absorbed in Completed.
    assert layer.receive_response(response(req, status), UDP, 0.06) == []
    assert layer.receive_response(response(req, 100), UDP, 0.07) == []
    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(0.05 + k)]
    assert fired[0].messages == [] and fired[0].events == []
    assert state(tx) is TxState.TERMINATED and layer.client_count == 0
    assert layer.retransmissions == 0


def test_client_non_invite_over_tcp_no_timer_e_and_k_zero() -> None:
    layer = TransactionLayer()
    req = outgoing("BYE", transport="TCP", to_tag=TO_TAG)
    tx = layer.send_request(req, TCP, 0.0)
    layer.datagrams_to_send()
    assert layer.next_timer() == 32.0  # only Timer F
    layer.receive_response(response(req, 200), TCP, 1.0)
    assert layer.next_timer() == 1.0
    assert layer.handle_timer(1.0) == []
    assert state(tx) is TxState.TERMINATED
    assert layer.datagrams_to_send() == []

    tx2 = layer.send_request(outgoing("BYE", branch="z9hG4bKout2", transport="TCP"), TCP, 5.0)
    assert len(layer.datagrams_to_send()) == 1
    fired = run(layer, 1000.0)
    assert send_times(fired) == []
    assert event_times(fired) == [(37.0, TransactionTimedOut)]
    assert state(tx2) is TxState.TERMINATED and layer.client_count == 0


def test_send_request_rejects_illegal_requests() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError) as exc:
        layer.send_request(outgoing("ACK"), UDP, 0.0)
    assert str(exc.value) == "ACK for 2xx is sent with send_stateless, not in a transaction"
    with pytest.raises(ValueError) as exc:
        layer.send_request(request("OPTIONS", branch="abc"), UDP, 0.0)
    assert str(exc.value) == "branch 'abc' lacks the RFC 3261 magic cookie"
    layer.send_request(outgoing("OPTIONS"), UDP, 0.0)
    with pytest.raises(ValueError) as exc:
        layer.send_request(outgoing("OPTIONS"), UDP, 0.0)
    assert str(exc.value) == "a client transaction with branch 'z9hG4bKout1' exists"
    assert layer.client_count == 1
    assert len(layer.datagrams_to_send()) == 1


def test_send_stateless_queues_the_bytes() -> None:
    layer = TransactionLayer()
    ack = ack_for_2xx(outgoing())
    layer.send_stateless(ack, UDP)
    assert layer.datagrams_to_send() == [(ack.to_bytes(), UDP)]
    assert layer.datagrams_to_send() == []
    assert layer.next_timer() is None


# ---------------------------------------------------------------------------
# Server INVITE (§17.2.1, RFC 6026 §7.1)
# ---------------------------------------------------------------------------


def new_server(layer: TransactionLayer, req: Request, peer: Peer = UDP,
               now: float = 0.0) -> ServerTransaction:
    events = layer.receive_request(req, peer, now)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    assert events[0].request is req
    return events[0].tx


def test_server_invite_starts_in_proceeding_and_resends_last_provisional() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    assert state(tx) is TxState.PROCEEDING and tx.is_invite
    assert layer.server_count == 1
    assert layer.find_server(inv) is tx
    # Nothing sent yet: a retransmission is absorbed silently.
    assert layer.receive_request(request(), UDP, 0.1) == []
    assert layer.datagrams_to_send() == []
    layer.respond(tx, make_response(inv, 100), 0.1)
    (trying, _), = layer.datagrams_to_send()
    assert layer.receive_request(request(), UDP, 0.2) == []
    assert layer.datagrams_to_send() == [(trying, UDP)]
    layer.respond(tx, make_response(inv, 180, to_tag=TO_TAG), 0.3)
    (ringing, _), = layer.datagrams_to_send()
    assert layer.receive_request(request(), UDP, 0.4) == []
    assert layer.datagrams_to_send() == [(ringing, UDP)]
    assert state(tx) is TxState.PROCEEDING
    assert layer.absorbed == 3
    assert layer.next_timer() is None  # Proceeding has no timer: the TU answers


@pytest.mark.parametrize("timers", [Timers(), CUSTOM])
def test_server_invite_non2xx_timer_g_until_timer_h(timers: Timers) -> None:
    layer = TransactionLayer(timers)
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 486, to_tag=TO_TAG), 1.0)
    (busy, _), = layer.datagrams_to_send()
    assert parse_message(busy).status == 486  # type: ignore[union-attr]
    assert state(tx) is TxState.COMPLETED
    fired = run(layer, 1000.0)
    times = send_times(fired)
    assert times == pytest.approx(expected_capped(timers.t1, timers.t2, 1.0 + timers.b, 1.0))
    gaps = [b - a for a, b in zip([1.0, *times], times, strict=False)]
    assert max(gaps) == pytest.approx(timers.t2)
    assert gaps[:3] == pytest.approx([timers.t1, 2 * timers.t1, min(4 * timers.t1, timers.t2)])
    assert all(m.to_bytes() == busy for f in fired for m in f.messages)
    assert event_times(fired) == [(round(1.0 + timers.b, 9), TransactionTimedOut)]
    ev = fired[-1].events[0]
    assert isinstance(ev, TransactionTimedOut) and ev.tx is tx
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0
    assert layer.retransmissions == len(times)


def test_server_invite_default_timer_g_instants() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 603, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    fired = run(layer, 100.0)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert event_times(fired) == [(32.0, TransactionTimedOut)]


@pytest.mark.parametrize(("timers", "i"), [(Timers(), 5.0), (CUSTOM, 0.5)])
def test_server_invite_ack_confirms_and_timer_i_terminates(timers: Timers, i: float) -> None:
    layer = TransactionLayer(timers)
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 404, to_tag=TO_TAG), 0.0)
    (final, _), = layer.datagrams_to_send()
    fired = run(layer, 0.2)
    assert send_times(fired) == ([0.1] if timers is CUSTOM else [])  # Timer G
    layer.datagrams_to_send()
    # A retransmitted INVITE in Completed gets the final response again.
    assert layer.receive_request(request(), UDP, 0.25) == []
    assert layer.datagrams_to_send() == [(final, UDP)]

    assert layer.receive_request(ack_for_non2xx(inv), UDP, 0.3) == []
    assert state(tx) is TxState.CONFIRMED
    assert layer.next_timer() == pytest.approx(0.3 + i)  # G and H are gone
    # Confirmed absorbs both ACKs and INVITEs.
    assert layer.receive_request(ack_for_non2xx(inv), UDP, 0.31) == []
    assert layer.receive_request(request(), UDP, 0.32) == []
    assert layer.datagrams_to_send() == []
    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(0.3 + i)]
    assert fired[0].events == [] and fired[0].messages == []
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0


def test_server_invite_over_tcp_no_timer_g_and_timer_i_zero() -> None:
    layer = TransactionLayer()
    inv = request(transport="TCP")
    tx = new_server(layer, inv, TCP)
    layer.respond(tx, make_response(inv, 480, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    assert layer.next_timer() == 32.0  # only Timer H
    layer.receive_request(ack_for_non2xx(inv), TCP, 1.0)
    assert state(tx) is TxState.CONFIRMED
    assert layer.next_timer() == 1.0
    assert layer.handle_timer(1.0) == []
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0

    inv2 = request(branch="z9hG4bKsecond", transport="TCP", cseq=2)
    tx2 = new_server(layer, inv2, TCP, 2.0)
    layer.respond(tx2, make_response(inv2, 480, to_tag=TO_TAG), 2.0)
    layer.datagrams_to_send()
    fired = run(layer, 1000.0)
    assert send_times(fired) == []
    assert event_times(fired) == [(34.0, TransactionTimedOut)]


@pytest.mark.parametrize("timers", [Timers(), CUSTOM])
def test_server_invite_2xx_retransmitted_until_ack_with_new_branch(timers: Timers) -> None:
    layer = TransactionLayer(timers)
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 180, to_tag=TO_TAG), 0.0)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    out = layer.datagrams_to_send()
    ok = out[-1][0]
    assert state(tx) is TxState.ACCEPTED
    ack_at = 7 * timers.t1 + 0.01  # after three retransmissions
    fired = run(layer, ack_at)
    assert send_times(fired) == pytest.approx([timers.t1, 3 * timers.t1, 7 * timers.t1])
    assert all(m.to_bytes() == ok for f in fired for m in f.messages)
    # A retransmitted INVITE is absorbed in Accepted: nothing sent by the transaction.
    assert layer.receive_request(request(), UDP, ack_at) == []
    assert layer.datagrams_to_send() == []

    ack = ack_for_2xx(inv)
    events = layer.receive_request(ack, UDP, ack_at)
    assert len(events) == 1 and isinstance(events[0], AckReceived)
    assert events[0].request is ack and events[0].peer == UDP
    assert tx.acked and state(tx) is TxState.ACCEPTED
    fired = run(layer, 1000.0)
    assert send_times(fired) == []  # no more 2xx
    assert [f.at for f in fired] == [pytest.approx(timers.b)]  # Timer L
    assert fired[0].events == []
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0
    assert layer.retransmissions == 3


def test_server_invite_2xx_default_instants_and_ack_timeout() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    fired = run(layer, 1000.0)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert event_times(fired) == [(32.0, AckTimedOut)]
    ev = fired[-1].events[0]
    assert isinstance(ev, AckTimedOut) and ev.tx is tx
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0
    # A late ACK is still passed up for the dialog layer.
    late = layer.receive_request(ack_for_2xx(inv), UDP, 40.0)
    assert [type(e) for e in late] == [AckReceived]


def test_server_invite_custom_2xx_retransmissions_cap_at_t2() -> None:
    layer = TransactionLayer(CUSTOM)
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    fired = run(layer, 100.0)
    times = send_times(fired)
    assert times == pytest.approx(expected_capped(0.1, 0.4, 6.4))
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[:4] == pytest.approx([0.1, 0.2, 0.4, 0.4])
    assert max(gaps) <= 0.4 + 1e-9
    assert event_times(fired) == [(round(6.4, 9), AckTimedOut)]
    assert state(tx) is TxState.TERMINATED


def test_server_invite_ack_with_the_invite_branch_also_stops_2xx() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    events = layer.receive_request(ack_for_non2xx(inv), UDP, 0.2)
    assert [type(e) for e in events] == [AckReceived]
    assert tx.acked
    fired = run(layer, 100.0)
    assert send_times(fired) == [] and event_times(fired) == []
    assert state(tx) is TxState.TERMINATED


def test_server_invite_2xx_is_retransmitted_over_tcp_too() -> None:
    """§13.3.1.4: the 2xx is retransmitted end to end (a later hop may be UDP)."""
    layer = TransactionLayer()
    inv = request(transport="TCP")
    tx = new_server(layer, inv, TCP)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    peers = []
    times = []
    while (t := layer.next_timer()) is not None and t <= 4.0:
        layer.handle_timer(t)
        out = layer.datagrams_to_send()
        times += [t] * len(out)
        peers += [p for _, p in out]
    assert times == [0.5, 1.5, 3.5]
    assert peers == [TCP] * 3
    layer.receive_request(ack_for_2xx(inv), TCP, 4.0)
    fired = run(layer, 100.0)
    assert send_times(fired) == [] and event_times(fired) == []


def test_server_invite_directly_responded_tx_still_matches_its_ack() -> None:
    """ServerTransaction.respond is public: a 2xx sent through it must still be
    found by the 2xx ACK (new branch), or the 2xx would be resent until Timer L."""
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    tx.respond(make_response(inv, 200, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    events = layer.receive_request(ack_for_2xx(inv), UDP, 0.2)
    assert [type(e) for e in events] == [AckReceived]
    assert tx.acked
    fired = run(layer, 100.0)
    assert send_times(fired) == [] and event_times(fired) == []


def test_server_invite_2xx_ack_needs_the_same_from_tag() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    other = request("ACK", branch="z9hG4bKx", cseq=inv.cseq.number, from_tag="someoneelse",
                    to_tag=TO_TAG)
    assert [type(e) for e in layer.receive_request(other, UDP, 0.1)] == [AckReceived]
    assert not tx.acked


def test_server_invite_further_2xx_in_accepted_and_illegal_responses() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    second = make_response(inv, 200, to_tag=TO_TAG, extra=[("X-Second", "1")])
    layer.respond(tx, second, 0.1)
    (data, _), = layer.datagrams_to_send()[-1:]
    assert data == second.to_bytes()
    fired = run(layer, 0.6)
    assert [m.headers.get("X-Second") for f in fired for m in f.messages] == ["1"]
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(inv, 486, to_tag=TO_TAG), 1.0)
    assert str(exc.value) == "only 2xx may follow a 2xx"
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(inv, 180, to_tag=TO_TAG), 1.0)
    assert str(exc.value) == "only 2xx may follow a 2xx"
    assert state(tx) is TxState.ACCEPTED


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        (486, 200, "transaction already completed: cannot send 200"),
        (486, 180, "transaction already completed: cannot send 180"),
    ],
)
def test_server_invite_cannot_respond_after_a_non2xx(first: int, then: int, message: str) -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, first, to_tag=TO_TAG), 0.0)
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(inv, then, to_tag=TO_TAG), 0.1)
    assert str(exc.value) == message
    layer.receive_request(ack_for_non2xx(inv), UDP, 0.2)
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(inv, then, to_tag=TO_TAG), 0.3)
    assert str(exc.value) == f"transaction already confirmed: cannot send {then}"
    run(layer, 100.0)
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(inv, then, to_tag=TO_TAG), 100.0)
    assert str(exc.value) == f"transaction already terminated: cannot send {then}"


def test_ack_in_proceeding_is_ignored() -> None:
    layer = TransactionLayer()
    inv = request()
    tx = new_server(layer, inv)
    assert layer.receive_request(ack_for_non2xx(inv), UDP, 0.1) == []
    assert state(tx) is TxState.PROCEEDING


def test_ack_matching_nothing_is_passed_up() -> None:
    layer = TransactionLayer()
    ack = ack_for_2xx(request())
    events = layer.receive_request(ack, UDP, 0.0)
    assert len(events) == 1 and isinstance(events[0], AckReceived)
    assert events[0].request is ack and events[0].peer == UDP
    assert layer.server_count == 0


# ---------------------------------------------------------------------------
# Server non-INVITE (§17.2.2)
# ---------------------------------------------------------------------------


def test_server_non_invite_trying_proceeding_completed() -> None:
    layer = TransactionLayer()
    req = request("REGISTER", branch="z9hG4bKreg1")
    tx = new_server(layer, req)
    assert state(tx) is TxState.TRYING and not tx.is_invite
    assert layer.receive_request(request("REGISTER", branch="z9hG4bKreg1"), UDP, 0.1) == []
    assert layer.datagrams_to_send() == []  # Trying absorbs silently
    assert layer.next_timer() is None

    layer.respond(tx, make_response(req, 100), 0.2)
    (trying, _), = layer.datagrams_to_send()
    assert state(tx) is TxState.PROCEEDING
    assert layer.receive_request(request("REGISTER", branch="z9hG4bKreg1"), UDP, 0.3) == []
    assert layer.datagrams_to_send() == [(trying, UDP)]

    layer.respond(tx, make_response(req, 200, to_tag=TO_TAG), 0.4)
    (ok, _), = layer.datagrams_to_send()
    assert state(tx) is TxState.COMPLETED and tx.final_sent
    assert layer.receive_request(request("REGISTER", branch="z9hG4bKreg1"), UDP, 0.5) == []
    assert layer.datagrams_to_send() == [(ok, UDP)]
    with pytest.raises(ValueError) as exc:
        layer.respond(tx, make_response(req, 500), 0.6)
    assert str(exc.value) == "transaction already completed: cannot send 500"

    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(32.4)]  # Timer J = 64*T1
    assert fired[0].events == [] and fired[0].messages == []
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0
    assert layer.retransmissions == 0 and layer.absorbed == 3


@pytest.mark.parametrize(("timers", "peer", "j"),
                         [(CUSTOM, UDP, 6.4), (Timers(), TCP, 0.0), (CUSTOM, TCP, 0.0)])
def test_server_non_invite_timer_j(timers: Timers, peer: Peer, j: float) -> None:
    layer = TransactionLayer(timers)
    req = request("OPTIONS", transport=peer.transport.upper())
    tx = new_server(layer, req, peer, 10.0)
    layer.respond(tx, make_response(req, 200, to_tag=TO_TAG), 11.0)
    assert layer.datagrams_to_send()[0][1] == peer
    assert layer.next_timer() == pytest.approx(11.0 + j)
    fired = run(layer, 1000.0)
    assert [f.at for f in fired] == [pytest.approx(11.0 + j)]
    assert state(tx) is TxState.TERMINATED and layer.server_count == 0


def test_server_non_invite_final_without_provisional() -> None:
    layer = TransactionLayer()
    req = request("INFO", to_tag=TO_TAG)
    tx = new_server(layer, req)
    layer.respond(tx, make_response(req, 481), 0.0)
    assert state(tx) is TxState.COMPLETED
    assert parse_message(layer.datagrams_to_send()[0][0]).status == 481  # type: ignore[union-attr]


def test_a_new_request_after_the_transaction_ended_is_new() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", transport="TCP")
    tx = new_server(layer, req, TCP)
    layer.respond(tx, make_response(req, 200), 0.0)
    layer.handle_timer(0.0)
    assert state(tx) is TxState.TERMINATED
    tx2 = new_server(layer, request("OPTIONS", transport="TCP"), TCP, 1.0)
    assert tx2 is not tx and state(tx2) is TxState.TRYING


# ---------------------------------------------------------------------------
# CANCEL (§9.2)
# ---------------------------------------------------------------------------


def test_cancel_matches_the_invite_server_transaction() -> None:
    layer = TransactionLayer()
    inv = request()
    itx = new_server(layer, inv)
    layer.respond(itx, make_response(inv, 180, to_tag=TO_TAG), 0.0)
    layer.datagrams_to_send()
    cancel = request("CANCEL")
    events = layer.receive_request(cancel, UDP, 1.0)
    assert [type(e) for e in events] == [CancelReceived, RequestReceived]
    c_ev, r_ev = events
    assert isinstance(c_ev, CancelReceived) and c_ev.invite_tx is itx and c_ev.request is cancel
    assert isinstance(r_ev, RequestReceived) and r_ev.request is cancel
    ctx = r_ev.tx
    assert ctx is not itx and state(ctx) is TxState.TRYING and not ctx.is_invite
    assert layer.server_count == 2
    assert layer.datagrams_to_send() == []  # the TU answers both
    layer.respond(ctx, make_response(cancel, 200, to_tag=TO_TAG), 1.0)
    layer.respond(itx, make_response(inv, 487, to_tag=TO_TAG), 1.0)
    sent_now = sent(layer)
    assert [(m.status, m.cseq.method) for m in sent_now] == [  # type: ignore[union-attr]
        (200, "CANCEL"), (487, "INVITE")]
    # A retransmitted CANCEL gets its 200 again and is not reported again.
    assert layer.receive_request(request("CANCEL"), UDP, 1.5) == []
    again = sent(layer)
    assert len(again) == 1 and again[0].cseq.method == "CANCEL"


def test_cancel_matching_nothing_is_only_reported_as_a_request() -> None:
    layer = TransactionLayer()
    new_server(layer, request())
    for cancel in (request("CANCEL", branch="z9hG4bKnope"),
                   request("CANCEL", sent_by="192.0.2.99:5062")):
        events = layer.receive_request(cancel, UDP, 1.0)
        assert len(events) == 1 and isinstance(events[0], RequestReceived)
        layer.respond(events[0].tx, make_response(cancel, 481), 1.0)
        assert sent(layer)[0].status == 481  # type: ignore[union-attr]


def test_cancel_after_final_still_matches_the_invite() -> None:
    layer = TransactionLayer()
    inv = request()
    itx = new_server(layer, inv)
    layer.respond(itx, make_response(inv, 200, to_tag=TO_TAG), 0.0)
    events = layer.receive_request(request("CANCEL"), UDP, 0.1)
    assert [type(e) for e in events] == [CancelReceived, RequestReceived]
    assert itx.final_sent and state(itx) is TxState.ACCEPTED


# ---------------------------------------------------------------------------
# Merged requests (§8.2.2.2)
# ---------------------------------------------------------------------------


def test_merged_request_is_482_while_the_first_lives() -> None:
    layer = TransactionLayer()
    first = request("INVITE", branch="z9hG4bKpath1")
    tx = new_server(layer, first)
    with pytest.raises(ParseError) as exc:
        layer.receive_request(request("INVITE", branch="z9hG4bKpath2"), UDP, 0.1)
    assert exc.value.status == 482
    assert str(exc.value) == ("merged request: same From tag, Call-ID and CSeq as a request "
                              "in progress with another branch")
    assert layer.server_count == 1
    # Another sent-by with the same branch is another transaction too: also merged.
    with pytest.raises(ParseError):
        layer.receive_request(request("INVITE", branch="z9hG4bKpath1",
                                      sent_by="192.0.2.77:5060"), UDP, 0.1)

    layer.respond(tx, make_response(first, 486, to_tag=TO_TAG), 0.2)
    layer.receive_request(ack_for_non2xx(first), UDP, 0.3)
    # Confirmed is still alive (Timer I): still merged.
    with pytest.raises(ParseError):
        layer.receive_request(request("INVITE", branch="z9hG4bKpath2"), UDP, 0.4)
    run(layer, 100.0)
    assert state(tx) is TxState.TERMINATED
    late = new_server(layer, request("INVITE", branch="z9hG4bKpath2"), UDP, 100.0)
    assert state(late) is TxState.PROCEEDING


def test_not_merged_when_to_tag_cseq_method_or_from_tag_differ() -> None:
    layer = TransactionLayer()
    new_server(layer, request("INVITE", branch="z9hG4bKa"))
    # In-dialog (To tag): §8.2.2.2 applies only to requests without a To tag.
    new_server(layer, request("INVITE", branch="z9hG4bKb", to_tag=TO_TAG))
    new_server(layer, request("INVITE", branch="z9hG4bKc", cseq=2))
    new_server(layer, request("INVITE", branch="z9hG4bKd", from_tag="other"))
    new_server(layer, request("OPTIONS", branch="z9hG4bKe"))
    assert layer.server_count == 5


def test_merge_detection_also_covers_non_invite() -> None:
    layer = TransactionLayer()
    new_server(layer, request("MESSAGE", branch="z9hG4bKm1"))
    with pytest.raises(ParseError) as exc:
        layer.receive_request(request("MESSAGE", branch="z9hG4bKm2"), UDP, 0.0)
    assert exc.value.status == 482


# ---------------------------------------------------------------------------
# RFC 2543 fallback (§17.2.3)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("branch", [None, "1234abcd", "z9hG4bK"])
def test_rfc2543_requests_match_retransmissions_and_ack(branch: str | None) -> None:
    layer = TransactionLayer()
    inv = request(branch=branch)
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 486, to_tag=TO_TAG), 0.0)
    (busy, _), = layer.datagrams_to_send()
    assert layer.receive_request(request(branch=branch), UDP, 0.1) == []
    assert layer.datagrams_to_send() == [(busy, UDP)]
    ack = request("ACK", branch=branch, to_tag=TO_TAG)
    assert layer.receive_request(ack, UDP, 0.2) == []
    assert state(tx) is TxState.CONFIRMED
    assert layer.server_count == 1


def test_rfc2543_requests_differing_in_uri_or_cseq_are_distinct() -> None:
    layer = TransactionLayer()
    a = new_server(layer, request("OPTIONS", branch=None))
    b = new_server(layer, request("OPTIONS", branch=None, cseq=2))
    c = new_server(layer, request("OPTIONS", branch=None, uri="sip:other@hotline.test",
                                  cseq=3))
    assert len({id(a), id(b), id(c)}) == 3
    assert layer.server_count == 3


def test_rfc2543_2xx_ack_and_cancel() -> None:
    layer = TransactionLayer()
    inv = request(branch=None)
    tx = new_server(layer, inv)
    layer.respond(tx, make_response(inv, 180, to_tag=TO_TAG), 0.0)
    # CANCEL for another Request-URI is not this INVITE's (it must match exactly).
    wrong = request("CANCEL", branch=None, uri="sip:someone@hotline.test")
    assert [type(e) for e in layer.receive_request(wrong, UDP, 0.05)] == [RequestReceived]
    events = layer.receive_request(request("CANCEL", branch=None), UDP, 0.1)
    assert [type(e) for e in events] == [CancelReceived, RequestReceived]
    assert isinstance(events[0], CancelReceived) and events[0].invite_tx is tx
    layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), 0.2)
    # The 2xx ACK goes to the remote target: another Request-URI, found by dialog ids.
    ack = request("ACK", branch=None, to_tag=TO_TAG, uri="sip:alice@192.0.2.10:5062")
    assert [type(e) for e in layer.receive_request(ack, UDP, 0.3)] == [AckReceived]
    assert tx.acked


# ---------------------------------------------------------------------------
# Stray responses, timers, bookkeeping
# ---------------------------------------------------------------------------


def test_stray_response() -> None:
    layer = TransactionLayer()
    resp = response(outgoing(branch="z9hG4bKnobody"), 200)
    events = layer.receive_response(resp, UDP, 0.0)
    assert len(events) == 1
    assert isinstance(events[0], StrayResponse)
    assert events[0].response is resp and events[0].peer == UDP
    assert layer.datagrams_to_send() == []


def test_next_timer_is_the_earliest_live_deadline() -> None:
    layer = TransactionLayer()
    assert layer.next_timer() is None
    inv = outgoing()
    layer.send_request(inv, UDP, 0.0)  # A at 0.5
    opt = outgoing("OPTIONS", branch="z9hG4bKopt")
    layer.send_request(opt, UDP, 0.2)  # E at 0.7
    assert layer.next_timer() == 0.5
    layer.receive_response(response(inv, 180), UDP, 0.3)  # A and B gone
    assert layer.next_timer() == 0.7
    layer.receive_response(response(opt, 200), UDP, 0.4)  # K at 5.4
    assert layer.next_timer() == 5.4
    assert layer.handle_timer(5.3) == []  # nothing due yet
    assert layer.client_count == 2
    assert layer.handle_timer(5.4) == []
    assert layer.client_count == 1
    assert layer.next_timer() is None  # INVITE in Proceeding has no timer


def test_late_wake_fires_everything_due_at_once() -> None:
    layer = TransactionLayer()
    tx = layer.send_request(outgoing("OPTIONS"), UDP, 0.0)
    layer.datagrams_to_send()
    events = layer.handle_timer(100.0)
    assert [type(e) for e in events] == [TransactionTimedOut]
    assert len(layer.datagrams_to_send()) == 1  # E fired once, then F
    assert state(tx) is TxState.TERMINATED


def test_transport_error_terminates_once() -> None:
    layer = TransactionLayer()
    ctx = layer.send_request(outgoing(), UDP, 0.0)
    stx = new_server(layer, request())
    for tx in (ctx, stx):
        events = layer.transport_error(tx)
        assert len(events) == 1 and isinstance(events[0], TransportFailed)
        assert events[0].tx is tx and state(tx) is TxState.TERMINATED
        assert layer.transport_error(tx) == []
    assert layer.server_count == 0 and layer.client_count == 0
    assert layer.next_timer() is None


def test_no_leaks_after_thousands_of_transactions() -> None:
    layer = TransactionLayer()
    now = 0.0
    for i in range(1500):
        now += 0.01
        # Server INVITE answered 200 and ACKed; server INVITE rejected and ACKed.
        inv = request(branch=f"z9hG4bKs{i}", call_id=f"c{i}")
        tx = new_server(layer, inv, UDP, now)
        layer.respond(tx, make_response(inv, 200, to_tag=TO_TAG), now)
        layer.receive_request(ack_for_2xx(inv, branch=f"z9hG4bKa{i}"), UDP, now)
        rej = request(branch=f"z9hG4bKr{i}", call_id=f"r{i}")
        rtx = new_server(layer, rej, UDP, now)
        layer.respond(rtx, make_response(rej, 486, to_tag=TO_TAG), now)
        layer.receive_request(ack_for_non2xx(rej), UDP, now)
        # Server non-INVITE over TCP; client INVITE rejected; client OPTIONS answered.
        opt = request("OPTIONS", branch=f"z9hG4bKo{i}", call_id=f"o{i}", transport="TCP")
        otx = new_server(layer, opt, TCP, now)
        layer.respond(otx, make_response(opt, 200), now)
        cinv = outgoing(branch=f"z9hG4bKci{i}", call_id=f"ci{i}")
        layer.send_request(cinv, UDP, now)
        layer.receive_response(response(cinv, 503), UDP, now)
        copt = outgoing("OPTIONS", branch=f"z9hG4bKco{i}", call_id=f"co{i}")
        layer.send_request(copt, UDP, now)
        layer.receive_response(response(copt, 200), UDP, now)
        if i % 100 == 0:
            layer.handle_timer(now)
            layer.datagrams_to_send()
    assert layer.server_count > 0 and layer.client_count > 0
    run(layer, now + 100.0)
    layer.datagrams_to_send()
    assert layer.server_count == 0 and layer.client_count == 0
    assert layer.next_timer() is None
    # Internal indexes must be empty too (white-box: these are the leak suspects).
    assert layer._merge == {} and layer._accepted == {} and layer._heap == []
    assert layer.retransmissions == 0


def test_event_types_are_frozen_dataclasses() -> None:
    layer = TransactionLayer()
    (ev,) = layer.receive_request(request(), UDP, 0.0)
    assert isinstance(ev, RequestReceived)
    with pytest.raises(AttributeError):
        ev.request = request()  # type: ignore[misc]
    assert isinstance(ev.tx, ServerTransaction)
    ctx = layer.send_request(outgoing(), UDP, 0.0)
    assert isinstance(ctx, ClientTransaction)
