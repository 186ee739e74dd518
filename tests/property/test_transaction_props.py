"""Hypothesis: the four transaction machines of hotline.sip.transaction driven by random
sequences of requests, retransmissions, ACKs, CANCELs, responses of every class, user
answers, timer firings and time jumps (on time or late).

The RFC 3261 §17 / RFC 6026 transitions are written below as data, h11-style: a dict
from (state, input) to (next state, events reported). Every observed step must be in
the table, so an unlisted pair is a failure by construction. Besides the table:

* no exception escapes except the documented ValueError for an illegal user action;
* every retransmission timer is re-armed with exactly the RFC interval: T1 doubling,
  capped at T2 for E, G and the 2xx (Timer A doubles without a cap, §17.1.1.2, and is
  cut by Timer B at 64*T1);
* whatever is sent is what the state calls for (the request, the ACK, the last response);
* once inputs stop (the user having answered, and CANCELled a ringing INVITE, as the
  endpoint does), everything is gone after 64*T1 + T4 + 32 s: no transaction, no timer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.sip.addr import Peer
from hotline.sip.message import Request, Response, make_response, parse_message
from hotline.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    Timers,
    TransactionLayer,
    TxEvent,
    TxState,
)

S = TxState
Outcome = tuple[TxState, tuple[str, ...]]
Table = dict[tuple[TxState, str], Outcome]

RAISES = ("ValueError",)
RR = ("ResponseReceived",)
TTO = ("TransactionTimedOut",)
ALIVE = {
    "client_invite": (S.CALLING, S.PROCEEDING, S.ACCEPTED, S.COMPLETED),
    "client_non_invite": (S.TRYING, S.PROCEEDING, S.COMPLETED),
    "server_invite": (S.PROCEEDING, S.ACCEPTED, S.COMPLETED, S.CONFIRMED),
    "server_non_invite": (S.TRYING, S.PROCEEDING, S.COMPLETED),
}


def _same(states: tuple[TxState, ...], label: str, events: tuple[str, ...] = ()) -> Table:
    return {(s, label): (s, events) for s in states}


def _transport_error(machine: str) -> Table:
    t: Table = {(s, "transport_error"): (S.TERMINATED, ("TransportFailed",))
                for s in ALIVE[machine]}
    t[(S.TERMINATED, "transport_error")] = (S.TERMINATED, ())
    return t


# --- client INVITE: §17.1.1.2 with RFC 6026 §7.2 (Accepted, Timer M) and §9.1 -------------
CLIENT_INVITE: Table = {
    (S.CALLING, "1xx"): (S.PROCEEDING, RR),
    (S.CALLING, "2xx"): (S.ACCEPTED, RR),
    (S.CALLING, "final"): (S.COMPLETED, RR),
    (S.CALLING, "timer:A"): (S.CALLING, ()),
    (S.CALLING, "timer:B"): (S.TERMINATED, TTO),
    (S.PROCEEDING, "1xx"): (S.PROCEEDING, RR),
    (S.PROCEEDING, "2xx"): (S.ACCEPTED, RR),
    (S.PROCEEDING, "final"): (S.COMPLETED, RR),
    (S.PROCEEDING, "timer:cancel"): (S.TERMINATED, TTO),
    (S.ACCEPTED, "1xx"): (S.ACCEPTED, ()),
    (S.ACCEPTED, "2xx"): (S.ACCEPTED, RR),
    (S.ACCEPTED, "final"): (S.ACCEPTED, ()),
    (S.ACCEPTED, "timer:M"): (S.TERMINATED, ()),
    (S.COMPLETED, "1xx"): (S.COMPLETED, ()),
    (S.COMPLETED, "2xx"): (S.COMPLETED, ()),
    (S.COMPLETED, "final"): (S.COMPLETED, ()),
    (S.COMPLETED, "timer:D"): (S.TERMINATED, ()),
    (S.TERMINATED, "1xx"): (S.TERMINATED, ("StrayResponse",)),
    (S.TERMINATED, "2xx"): (S.TERMINATED, ("StrayResponse",)),
    (S.TERMINATED, "final"): (S.TERMINATED, ("StrayResponse",)),
    # The user may CANCEL at any time; a second CANCEL while the first one's
    # transaction lives is refused (same branch).
    **_same((*ALIVE["client_invite"], S.TERMINATED), "cancel"),
    **_same((*ALIVE["client_invite"], S.TERMINATED), "cancel_again", RAISES),
    # Responses to the CANCEL never move the INVITE.
    **_same((*ALIVE["client_invite"], S.TERMINATED), "cancel_response"),
    **_transport_error("client_invite"),
}

# --- client non-INVITE: §17.1.2.2 ------------------------------------------------------------
CLIENT_NON_INVITE: Table = {
    (S.TRYING, "1xx"): (S.PROCEEDING, RR),
    (S.TRYING, "final"): (S.COMPLETED, RR),
    (S.TRYING, "timer:E"): (S.TRYING, ()),
    (S.TRYING, "timer:F"): (S.TERMINATED, TTO),
    (S.PROCEEDING, "1xx"): (S.PROCEEDING, RR),
    (S.PROCEEDING, "final"): (S.COMPLETED, RR),
    (S.PROCEEDING, "timer:E"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "timer:F"): (S.TERMINATED, TTO),
    (S.COMPLETED, "1xx"): (S.COMPLETED, ()),
    (S.COMPLETED, "final"): (S.COMPLETED, ()),
    (S.COMPLETED, "timer:K"): (S.TERMINATED, ()),
    (S.TERMINATED, "1xx"): (S.TERMINATED, ("StrayResponse",)),
    (S.TERMINATED, "final"): (S.TERMINATED, ("StrayResponse",)),
    **_transport_error("client_non_invite"),
}

# --- server INVITE: §17.2.1 with RFC 6026 §7.1 (Accepted, Timer L) ---------------------------
_SI_ALIVE = ALIVE["server_invite"]
SERVER_INVITE: Table = {
    (S.PROCEEDING, "invite"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "ack_same"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "ack_new"): (S.PROCEEDING, ("AckReceived",)),
    (S.PROCEEDING, "tu1xx"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "tu2xx"): (S.ACCEPTED, ()),
    (S.PROCEEDING, "tu_final"): (S.COMPLETED, ()),
    (S.ACCEPTED, "invite"): (S.ACCEPTED, ()),
    (S.ACCEPTED, "ack_same"): (S.ACCEPTED, ("AckReceived",)),
    (S.ACCEPTED, "ack_new"): (S.ACCEPTED, ("AckReceived",)),
    (S.ACCEPTED, "tu1xx"): (S.ACCEPTED, RAISES),
    (S.ACCEPTED, "tu2xx"): (S.ACCEPTED, ()),
    (S.ACCEPTED, "tu_final"): (S.ACCEPTED, RAISES),
    (S.ACCEPTED, "timer:G2xx"): (S.ACCEPTED, ()),
    (S.ACCEPTED, "timer:L"): (S.TERMINATED, ("AckTimedOut",)),
    (S.ACCEPTED, "timer:L+acked"): (S.TERMINATED, ()),
    (S.COMPLETED, "invite"): (S.COMPLETED, ()),
    (S.COMPLETED, "ack_same"): (S.CONFIRMED, ()),
    (S.COMPLETED, "ack_new"): (S.COMPLETED, ("AckReceived",)),
    (S.COMPLETED, "timer:G"): (S.COMPLETED, ()),
    (S.COMPLETED, "timer:H"): (S.TERMINATED, TTO),
    (S.CONFIRMED, "invite"): (S.CONFIRMED, ()),
    (S.CONFIRMED, "ack_same"): (S.CONFIRMED, ()),
    (S.CONFIRMED, "ack_new"): (S.CONFIRMED, ("AckReceived",)),
    (S.CONFIRMED, "timer:I"): (S.TERMINATED, ()),
    # A request after the end is a new transaction (the machine restarts).
    (S.TERMINATED, "invite"): (S.PROCEEDING, ("RequestReceived",)),
    (S.TERMINATED, "ack_same"): (S.TERMINATED, ("AckReceived",)),
    (S.TERMINATED, "ack_new"): (S.TERMINATED, ("AckReceived",)),
    (S.TERMINATED, "cancel"): (S.TERMINATED, ("RequestReceived",)),
    **_same(_SI_ALIVE, "cancel", ("CancelReceived", "RequestReceived")),
    **_same((*_SI_ALIVE, S.TERMINATED), "cancel_again"),
    **{(s, label): (s, RAISES) for s in (S.COMPLETED, S.CONFIRMED, S.TERMINATED)
       for label in ("tu1xx", "tu2xx", "tu_final")},
    **_transport_error("server_invite"),
}

# --- server non-INVITE: §17.2.2 --------------------------------------------------------------
SERVER_NON_INVITE: Table = {
    (S.TRYING, "request"): (S.TRYING, ()),
    (S.TRYING, "tu1xx"): (S.PROCEEDING, ()),
    (S.TRYING, "tu_final"): (S.COMPLETED, ()),
    (S.PROCEEDING, "request"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "tu1xx"): (S.PROCEEDING, ()),
    (S.PROCEEDING, "tu_final"): (S.COMPLETED, ()),
    (S.COMPLETED, "request"): (S.COMPLETED, ()),
    (S.COMPLETED, "tu1xx"): (S.COMPLETED, RAISES),
    (S.COMPLETED, "tu_final"): (S.COMPLETED, RAISES),
    (S.COMPLETED, "timer:J"): (S.TERMINATED, ()),
    (S.TERMINATED, "request"): (S.TRYING, ("RequestReceived",)),
    (S.TERMINATED, "tu1xx"): (S.TERMINATED, RAISES),
    (S.TERMINATED, "tu_final"): (S.TERMINATED, RAISES),
    **_transport_error("server_non_invite"),
}

RETRANSMIT_TIMERS = ("A", "E", "G", "G2xx")
UNRELIABLE_ONLY = ("A", "E", "G")  # the 2xx is retransmitted end to end, even over TCP


def one_shot_duration(name: str, t: Timers, reliable: bool) -> float:
    """How long after being armed each one-shot timer fires (RFC 3261 table 4, RFC 6026
    Timers L and M, §9.1 for the CANCEL guard)."""
    if name in ("B", "F", "H", "L", "M", "cancel"):
        return t.b
    if name == "J":
        return 0.0 if reliable else t.b
    if name in ("K", "I"):
        return 0.0 if reliable else t.t4
    if name == "D":
        return 0.0 if reliable else max(32.0, t.b)
    raise AssertionError(f"unknown timer {name}")
SEEN: set[tuple[int, TxState, str]] = set()  # (table, state, input) pairs exercised

# --- inputs ----------------------------------------------------------------------------------
TIMERS = [Timers(), Timers(t1=0.1, t2=0.4, t4=0.5)]
STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 487, 503, 603]
statuses = st.sampled_from(STATUSES)
timer_step = st.just(("timer",))
jumps = st.tuples(st.just("jump"), st.floats(0.0, 40.0, allow_nan=False), st.booleans())
small_jumps = st.tuples(st.just("jump"), st.floats(0.0, 2.0, allow_nan=False), st.booleans())
rare_error = st.integers(0, 14).map(lambda n: ("transport_error",) if n == 0 else ("timer",))
rare_jump = st.tuples(st.integers(0, 2), jumps).map(lambda t: t[1] if t[0] == 0 else ("timer",))
common = [timer_step, small_jumps, small_jumps, rare_jump, rare_error]

client_invite_inputs = st.one_of(
    st.tuples(st.just("resp"), statuses), st.tuples(st.just("resp"), statuses),
    st.just(("cancel",)), st.tuples(st.just("cancel_resp"), statuses), *common,
)
client_non_invite_inputs = st.one_of(
    st.tuples(st.just("resp"), statuses), st.tuples(st.just("resp"), statuses), *common,
)
server_invite_inputs = st.one_of(
    st.just(("request",)), st.just(("ack_same",)), st.just(("ack_new",)), st.just(("cancel",)),
    st.tuples(st.just("tu"), statuses), st.tuples(st.just("tu"), statuses), *common,
)
server_non_invite_inputs = st.one_of(
    st.just(("request",)), st.tuples(st.just("tu"), statuses),
    st.tuples(st.just("tu"), statuses), *common,
)
SETTINGS = settings(max_examples=200, deadline=None)

PEERS = {"udp": Peer("udp", "192.0.2.10", 5062), "tcp": Peer("tcp", "192.0.2.10", 5062, 9)}


def build(method: str, *, branch: str | None, transport: str, uri: str = "sip:1800@hotline.test",
          to_tag: str | None = None, sent_by: str = "192.0.2.10:5062",
          cseq_method: str | None = None) -> Request:
    via = f"SIP/2.0/{transport.upper()} {sent_by}" + (f";branch={branch}" if branch else "")
    text = "\r\n".join([
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=f1",
        "To: <sip:1800@hotline.test>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: prop-call@example.com",
        f"CSeq: 7 {cseq_method or method}",
        "Content-Length: 0",
        "", "",
    ])
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def wire_response(req: Request, status: int) -> Response:
    resp = parse_message(make_response(req, status, to_tag="t1").to_bytes())
    assert isinstance(resp, Response)
    return resp


def status_label(status: int, *, invite: bool) -> str:
    if status < 200:
        return "1xx"
    if invite and status < 300:
        return "2xx"
    return "final"


# --- the harness -------------------------------------------------------------------------


@dataclass
class Harness:
    """Drives one machine through the layer and checks every step against `table`."""

    table: Table
    timers: Timers
    transport: str
    layer: TransactionLayer = field(init=False)
    now: float = 0.0
    tx: ClientTransaction | ServerTransaction | None = None
    every_tx: list[ClientTransaction | ServerTransaction] = field(default_factory=list)
    intervals: dict[str, float] = field(default_factory=dict)
    last_checked: tuple[TxState, str] | None = None

    def __post_init__(self) -> None:
        self.layer = TransactionLayer(self.timers)

    @property
    def peer(self) -> Peer:
        return PEERS[self.transport]

    @property
    def current(self) -> ClientTransaction | ServerTransaction:
        assert self.tx is not None
        return self.tx

    def step(self, label: str, act: Callable[[], list[TxEvent]],
             due: list[str] | None = None) -> list[bytes]:
        """Run `act` (one input; `due` lists the timers a handle_timer call fires, in
        deadline order), check the outcome against the table and the timers' durations,
        and return the datagrams sent."""
        tx = self.current
        before = tx.state
        before_timers = dict(tx.timers)
        events: list[TxEvent] = []
        try:
            events = act()
            names: tuple[str, ...] = tuple(type(e).__name__ for e in events
                                           if getattr(e, "tx", tx) is tx
                                           or type(e).__name__ in ("CancelReceived",
                                                                   "RequestReceived"))
        except ValueError:
            names = RAISES
        if due is not None:
            expected = self.compose(before, due)
        else:
            SEEN.add((id(self.table), before, label))
            assert (before, label) in self.table, f"unlisted input {label!r} in {before}"
            expected = self.table[(before, label)]
        for ev in events:
            if isinstance(ev, RequestReceived) and ev.request.method != "CANCEL":
                self.tx = ev.tx
                self.every_tx.append(ev.tx)
                self.intervals.clear()
        assert (self.current.state, names) == expected, (
            f"{before} --{label if due is None else due}--> "
            f"{self.current.state} {names}, table says {expected}")
        self.check_rearm(tx, before_timers, due or [])
        nt = self.layer.next_timer()
        assert nt is None or nt >= self.now, "a timer was left in the past"
        self.last_checked = (before, label)
        out = self.layer.datagrams_to_send()
        assert all(peer == self.peer for _, peer in out)
        return [data for data, _ in out]

    def compose(self, state: TxState, due: list[str]) -> Outcome:
        """Several timers fired in one handle_timer call: apply them in deadline order."""
        events: tuple[str, ...] = ()
        for name in due:
            if state is S.TERMINATED:
                break
            label = self.timer_label(name)
            SEEN.add((id(self.table), state, label))
            assert (state, label) in self.table, f"timer {name} fired in {state}"
            state, evs = self.table[(state, label)]
            events += evs
        return state, events

    def timer_label(self, name: str) -> str:
        return f"timer:{name}"

    def check_rearm(self, tx: ClientTransaction | ServerTransaction,
                    before: dict[str, float], fired: list[str]) -> None:
        """Every timer (re)armed in this step has the RFC duration."""
        t = self.timers
        reliable = self.transport != "udp"
        for name, at in tx.timers.items():
            assert not (reliable and name in UNRELIABLE_ONLY), f"Timer {name} over {tx.peer}"
            if name in RETRANSMIT_TIMERS or before.get(name) == at:
                continue
            assert at - self.now == pytest.approx(one_shot_duration(name, t, reliable)), (
                f"Timer {name} armed for {at - self.now}")
        for name in RETRANSMIT_TIMERS:
            deadline = tx.timers.get(name)
            if deadline is None:
                self.intervals.pop(name, None)
                continue
            if before.get(name) == deadline:
                continue
            interval = deadline - self.now
            if name in fired and name in self.intervals:
                prev = self.intervals[name]
                if name == "A":
                    want = 2 * prev
                elif name == "E" and tx.state is S.PROCEEDING:
                    want = t.t2
                else:
                    want = min(2 * prev, t.t2)
            else:
                want = t.t1
            assert interval == pytest.approx(want), f"Timer {name} re-armed after {interval}"
            if name != "A":
                assert interval <= t.t2 + 1e-9
            self.intervals[name] = interval

    # -- time --
    def due_names(self, at: float) -> list[str]:
        tx = self.current
        return [n for n, d in sorted(tx.timers.items(), key=lambda kv: kv[1]) if d <= at]

    def fire_next(self) -> list[bytes]:
        t = self.layer.next_timer()
        if t is None:
            return []
        assert t >= self.now
        self.now = t
        return self.step("timer", lambda: self.layer.handle_timer(t), self.due_names(t))

    def jump(self, dt: float, late: bool) -> list[bytes]:
        target = self.now + dt
        out: list[bytes] = []
        if late:
            self.now = target
            return self.step("timer", lambda: self.layer.handle_timer(target),
                             self.due_names(target))
        while (t := self.layer.next_timer()) is not None and t <= target:
            out += self.fire_next()
        self.now = target
        return out

    def transport_error(self) -> list[bytes]:
        tx = self.current
        return self.step("transport_error", lambda: self.layer.transport_error(tx))

    def finish(self) -> None:
        """Inputs have stopped: after 64*T1 + T4 + 32 s nothing may be left."""
        t = self.timers
        end = self.now + 64 * t.t1 + t.t4 + 32.0 + 1e-6
        while (nt := self.layer.next_timer()) is not None and nt <= end:
            self.fire_next()
        self.now = end
        for tx in self.every_tx:
            assert tx.state is S.TERMINATED, f"{tx.method} left in {tx.state}"
            assert tx.timers == {}
        assert self.layer.server_count == 0
        assert self.layer.client_count == 0
        assert self.layer.next_timer() is None


    # -- what each machine's driver provides --
    def apply(self, inp: tuple[Any, ...]) -> None:
        """Feed one input and check what the layer did."""
        raise NotImplementedError

    def epilogue(self) -> None:
        """What the user does before falling silent (answer, CANCEL)."""

    def run(self, inputs: list[tuple[Any, ...]]) -> None:
        for inp in inputs:
            self.apply(inp)
        self.epilogue()
        self.finish()

    def apply_time(self, inp: tuple[Any, ...]) -> list[bytes]:
        if inp[0] == "transport_error":
            return self.transport_error()
        if inp[0] == "jump":
            return self.jump(inp[1], inp[2])
        assert inp[0] == "timer"
        return self.fire_next()


# --- client INVITE -------------------------------------------------------------------------


class ClientInvite(Harness):
    def __init__(self, timers: Timers, transport: str) -> None:
        super().__init__(CLIENT_INVITE, timers, transport)
        via = "198.51.100.1:5060"
        self.invite = build("INVITE", branch="z9hG4bKci", transport=transport, sent_by=via)
        self.cancel = build("CANCEL", branch="z9hG4bKci", transport=transport, sent_by=via)
        tx = self.layer.send_request(self.invite, self.peer, 0.0)
        self.tx = tx
        self.every_tx.append(tx)
        if transport == "udp":
            self.intervals["A"] = timers.t1
        assert self.layer.datagrams_to_send() == [(self.invite.to_bytes(), self.peer)]
        assert self.layer.next_timer() == (timers.t1 if transport == "udp" else timers.b)
        self.cancels: list[ClientTransaction] = []
        self.ack: bytes | None = None

    def send_cancel(self) -> list[TxEvent]:
        c = self.layer.send_request(self.cancel, self.peer, self.now)
        self.cancels.append(c)
        self.every_tx.append(c)
        return []

    def apply(self, inp: tuple[Any, ...]) -> None:
        layer, tx, kind = self.layer, self.current, inp[0]
        state = tx.state
        if kind == "resp":
            label = status_label(inp[1], invite=True)
            resp = wire_response(self.invite, inp[1])
            out = self.step(label, lambda: layer.receive_response(resp, self.peer, self.now))
            if label == "final" and state in (S.CALLING, S.PROCEEDING, S.COMPLETED):
                assert len(out) == 1
                ack = parse_message(out[0])
                assert isinstance(ack, Request) and ack.method == "ACK"
                assert str(ack.cseq) == "7 ACK" and ack.top_via.branch == "z9hG4bKci"
                assert ack.to.tag == "t1" and str(ack.uri) == str(self.invite.uri)
                self.ack = self.ack or out[0]
                assert out[0] == self.ack  # a retransmitted final gets the same ACK
            else:
                assert out == []
        elif kind == "cancel":
            again = bool(self.cancels) and self.cancels[-1].state is not S.TERMINATED
            out = self.step("cancel_again" if again else "cancel", self.send_cancel)
            assert out == ([] if again else [self.cancel.to_bytes()])
        elif kind == "cancel_resp":
            resp = wire_response(self.cancel, inp[1])

            def to_cancel() -> list[TxEvent]:
                layer.receive_response(resp, self.peer, self.now)  # the CANCEL's business
                return []

            assert self.step("cancel_response", to_cancel) == []
        else:
            out = self.apply_time(inp)
            assert all(d in (self.invite.to_bytes(), self.cancel.to_bytes()) for d in out)
        if self.transport == "tcp":
            assert "A" not in tx.timers

    def epilogue(self) -> None:
        # The user hangs up a ringing call with CANCEL; §9.1 bounds what follows. Any
        # CANCEL sent in Calling or Proceeding armed the guard, so none was sent yet.
        tx = self.current
        if tx.state is S.PROCEEDING and "cancel" not in tx.timers:
            assert not self.cancels
            self.step("cancel", self.send_cancel)


# --- client non-INVITE ---------------------------------------------------------------------


class ClientNonInvite(Harness):
    def __init__(self, timers: Timers, transport: str, method: str = "OPTIONS") -> None:
        super().__init__(CLIENT_NON_INVITE, timers, transport)
        self.request = build(method, branch="z9hG4bKcn", transport=transport,
                             sent_by="198.51.100.1:5060")
        tx = self.layer.send_request(self.request, self.peer, 0.0)
        self.tx = tx
        self.every_tx.append(tx)
        if transport == "udp":
            self.intervals["E"] = timers.t1
        assert self.layer.datagrams_to_send() == [(self.request.to_bytes(), self.peer)]

    def apply(self, inp: tuple[Any, ...]) -> None:
        if inp[0] == "resp":
            resp = wire_response(self.request, inp[1])
            out = self.step(status_label(inp[1], invite=False),
                            lambda: self.layer.receive_response(resp, self.peer, self.now))
            assert out == []
        else:
            out = self.apply_time(inp)
            assert all(d == self.request.to_bytes() for d in out)
            if self.transport == "tcp":
                assert out == []


# --- server INVITE -------------------------------------------------------------------------


class ServerInvite(Harness):
    def __init__(self, timers: Timers, transport: str, rfc3261: bool = True,
                 final: int = 486) -> None:
        super().__init__(SERVER_INVITE, timers, transport)
        self.branch = "z9hG4bKsi" if rfc3261 else None
        self.final = final
        self.last: bytes | None = None  # the last response the user sent
        self.acked = False  # an ACK arrived while Accepted
        self.cancel_tx: ServerTransaction | None = None
        self.acks = itertools.count()
        (ev,) = self.layer.receive_request(self.invite(), self.peer, 0.0)
        assert isinstance(ev, RequestReceived) and ev.tx.state is S.PROCEEDING
        self.tx = ev.tx
        self.every_tx.append(ev.tx)

    def invite(self) -> Request:
        return build("INVITE", branch=self.branch, transport=self.transport)

    def timer_label(self, name: str) -> str:
        # After the ACK, Timer L ends quietly and the 2xx is never sent again (no
        # "timer:G2xx+acked" in the table).
        return f"timer:{name}+acked" if name in ("L", "G2xx") and self.acked else f"timer:{name}"

    def answer_cancels(self, events: list[TxEvent]) -> list[TxEvent]:
        matched = any(type(e).__name__ == "CancelReceived" for e in events)
        for e in events:
            if isinstance(e, RequestReceived) and e.request.method == "CANCEL":
                self.cancel_tx = e.tx
                self.every_tx.append(e.tx)
                self.layer.respond(e.tx, make_response(e.request, 200 if matched else 481),
                                   self.now)
        return events

    def tu(self, status: int) -> list[TxEvent]:
        stx = self.current
        assert isinstance(stx, ServerTransaction)
        resp = make_response(stx.request, status, to_tag="t1")
        self.layer.respond(stx, resp, self.now)
        self.last = resp.to_bytes()
        return []

    def apply(self, inp: tuple[Any, ...]) -> None:
        layer, kind = self.layer, inp[0]
        state = self.current.state
        if kind == "request":
            if state is S.TERMINATED:
                self.last, self.acked = None, False
            out = self.step("invite", lambda: layer.receive_request(self.invite(), self.peer,
                                                                    self.now))
            resend = state in (S.PROCEEDING, S.COMPLETED) and self.last is not None
            assert out == ([self.last] if resend else [])
        elif kind in ("ack_same", "ack_new"):
            if kind == "ack_same":
                ack = build("ACK", branch=self.branch, transport=self.transport, to_tag="t1")
            else:
                branch = f"z9hG4bKack{next(self.acks)}" if self.branch else None
                ack = build("ACK", branch=branch, transport=self.transport, to_tag="t1",
                            uri="sip:alice@192.0.2.10")
            out = self.step(kind, lambda: layer.receive_request(ack, self.peer, self.now))
            if state is S.ACCEPTED:
                self.acked = True
            assert out == []
        elif kind == "cancel":
            again = self.cancel_tx is not None and self.cancel_tx.state is not S.TERMINATED
            cancel = build("CANCEL", branch=self.branch, transport=self.transport)
            out = self.step("cancel_again" if again else "cancel",
                            lambda: self.answer_cancels(
                                layer.receive_request(cancel, self.peer, self.now)))
            assert len(out) == 1
            resp = parse_message(out[0])
            assert isinstance(resp, Response) and resp.cseq.method == "CANCEL"
            if again:
                assert self.cancel_tx is not None and out[0] == self.cancel_tx.last_bytes
            else:
                assert resp.status == (481 if state is S.TERMINATED else 200)
        elif kind == "tu":
            status = inp[1]
            label = "tu1xx" if status < 200 else "tu2xx" if status < 300 else "tu_final"
            last = self.last
            out = self.step(label, lambda: self.tu(status))
            if SERVER_INVITE[(state, label)][1] == RAISES:
                assert out == [] and self.last == last
            else:
                assert out == [self.last]
        else:
            out = self.apply_time(inp)
            assert all(d == self.last for d in out)

    def epilogue(self) -> None:
        # The user always answers (the endpoint does).
        if self.current.state is S.PROCEEDING:
            self.step("tu2xx" if self.final < 300 else "tu_final", lambda: self.tu(self.final))


# --- server non-INVITE ---------------------------------------------------------------------


class ServerNonInvite(Harness):
    def __init__(self, timers: Timers, transport: str, rfc3261: bool = True,
                 method: str = "OPTIONS") -> None:
        super().__init__(SERVER_NON_INVITE, timers, transport)
        self.branch = "z9hG4bKsn" if rfc3261 else None
        self.method = method
        self.last: bytes | None = None
        (ev,) = self.layer.receive_request(self.request(), self.peer, 0.0)
        assert isinstance(ev, RequestReceived) and ev.tx.state is S.TRYING
        self.tx = ev.tx
        self.every_tx.append(ev.tx)

    def request(self) -> Request:
        return build(self.method, branch=self.branch, transport=self.transport)

    def tu(self, status: int) -> list[TxEvent]:
        stx = self.current
        assert isinstance(stx, ServerTransaction)
        resp = make_response(stx.request, status, to_tag="t1")
        self.layer.respond(stx, resp, self.now)
        self.last = resp.to_bytes()
        return []

    def apply(self, inp: tuple[Any, ...]) -> None:
        kind = inp[0]
        state = self.current.state
        if kind == "request":
            if state is S.TERMINATED:
                self.last = None
            out = self.step("request", lambda: self.layer.receive_request(
                self.request(), self.peer, self.now))
            resend = state in (S.PROCEEDING, S.COMPLETED)
            assert out == ([self.last] if resend else [])
        elif kind == "tu":
            label = "tu1xx" if inp[1] < 200 else "tu_final"
            before = self.last
            out = self.step(label, lambda: self.tu(inp[1]))
            if SERVER_NON_INVITE[(state, label)][1] == RAISES:
                assert out == [] and self.last == before
            else:
                assert out == [self.last]
        else:
            assert self.apply_time(inp) == []  # a non-INVITE server never resends by itself

    def epilogue(self) -> None:
        if self.current.state in (S.TRYING, S.PROCEEDING):
            self.step("tu_final", lambda: self.tu(200))


# --- random sequences ----------------------------------------------------------------------

transports = st.sampled_from(["udp", "tcp"])


@given(st.sampled_from(TIMERS), transports, st.lists(client_invite_inputs, max_size=40))
@SETTINGS
def test_client_invite_machine(timers: Timers, transport: str,
                               inputs: list[tuple[Any, ...]]) -> None:
    ClientInvite(timers, transport).run(inputs)


@given(st.sampled_from(TIMERS), transports,
       st.sampled_from(["OPTIONS", "BYE", "REGISTER", "INFO", "MESSAGE", "CANCEL"]),
       st.lists(client_non_invite_inputs, max_size=40))
@SETTINGS
def test_client_non_invite_machine(timers: Timers, transport: str, method: str,
                                   inputs: list[tuple[Any, ...]]) -> None:
    ClientNonInvite(timers, transport, method).run(inputs)


@given(st.sampled_from(TIMERS), transports, st.booleans(), st.sampled_from([200, 404, 486, 603]),
       st.lists(server_invite_inputs, max_size=40))
@SETTINGS
def test_server_invite_machine(timers: Timers, transport: str, rfc3261: bool, final: int,
                               inputs: list[tuple[Any, ...]]) -> None:
    ServerInvite(timers, transport, rfc3261, final).run(inputs)


@given(st.sampled_from(TIMERS), transports, st.booleans(),
       st.sampled_from(["OPTIONS", "BYE", "REGISTER", "INFO", "MESSAGE"]),
       st.lists(server_non_invite_inputs, max_size=40))
@SETTINGS
def test_server_non_invite_machine(timers: Timers, transport: str, rfc3261: bool, method: str,
                                   inputs: list[tuple[Any, ...]]) -> None:
    ServerNonInvite(timers, transport, rfc3261, method).run(inputs)


# --- every (state, input) pair of the tables, deterministically ---------------------------

# How to reach each state, and which inputs make each label.
PREFIXES: dict[str, dict[TxState, list[tuple[Any, ...]]]] = {
    "client_invite": {S.CALLING: [], S.PROCEEDING: [("resp", 180)], S.ACCEPTED: [("resp", 200)],
                      S.COMPLETED: [("resp", 486)], S.TERMINATED: [("transport_error",)]},
    "client_non_invite": {S.TRYING: [], S.PROCEEDING: [("resp", 100)],
                          S.COMPLETED: [("resp", 200)], S.TERMINATED: [("transport_error",)]},
    "server_invite": {S.PROCEEDING: [], S.ACCEPTED: [("tu", 200)], S.COMPLETED: [("tu", 486)],
                      S.CONFIRMED: [("tu", 486), ("ack_same",)],
                      S.TERMINATED: [("transport_error",)]},
    "server_non_invite": {S.TRYING: [], S.PROCEEDING: [("tu", 100)], S.COMPLETED: [("tu", 200)],
                          S.TERMINATED: [("transport_error",)]},
}
LABEL_INPUTS: dict[str, list[tuple[Any, ...]]] = {
    "1xx": [("resp", 180)], "2xx": [("resp", 200)], "final": [("resp", 486)],
    "cancel": [("cancel",)], "cancel_again": [("cancel",), ("cancel",)],
    "cancel_response": [("cancel_resp", 200)], "transport_error": [("transport_error",)],
    "invite": [("request",)], "request": [("request",)], "ack_same": [("ack_same",)],
    "ack_new": [("ack_new",)], "tu1xx": [("tu", 180)], "tu2xx": [("tu", 200)],
    "tu_final": [("tu", 486)],
}
MACHINES: dict[str, tuple[Table, Callable[[Timers, str], Harness]]] = {
    "client_invite": (CLIENT_INVITE, ClientInvite),
    "client_non_invite": (CLIENT_NON_INVITE, ClientNonInvite),
    "server_invite": (SERVER_INVITE, ServerInvite),
    "server_non_invite": (SERVER_NON_INVITE, ServerNonInvite),
}
PAIRS = [(machine, state, label) for machine, (table, _) in MACHINES.items()
         for (state, label) in table if not label.startswith("timer:")]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("machine", "state", "label"), PAIRS,
                         ids=[f"{m}-{s.name}-{lab}" for m, s, lab in PAIRS])
def test_every_state_input_pair(machine: str, state: TxState, label: str,
                                transport: str) -> None:
    _table, make = MACHINES[machine]
    h = make(Timers(), transport)
    for inp in PREFIXES[machine][state]:
        h.apply(inp)
    assert h.current.state is state
    for inp in LABEL_INPUTS[label]:
        h.apply(inp)
    assert h.last_checked == (state, label)
    h.epilogue()
    h.finish()


# --- the tables themselves ------------------------------------------------------------------


def test_tables_reach_terminated_and_leave_it_only_by_a_new_request() -> None:
    for machine, (table, _) in MACHINES.items():
        for state in ALIVE[machine]:
            reach, frontier = {state}, [state]
            while frontier:
                s = frontier.pop()
                for (src, _label), (dst, _) in table.items():
                    if src is s and dst not in reach:
                        reach.add(dst)
                        frontier.append(dst)
            assert S.TERMINATED in reach, f"{machine}: {state} cannot terminate"
        for (src, label), (dst, _) in table.items():
            if src is S.TERMINATED and dst is not S.TERMINATED:
                assert label in ("invite", "request"), (machine, label)
