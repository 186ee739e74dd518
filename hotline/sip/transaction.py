"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted states), sans-IO.

Owns the four transaction state machines, their timers A-M, request/response matching
(§17.1.3, §17.2.3, with the RFC 2543 fallback), retransmission and its absorption,
CANCEL matching, merged-request detection (§8.2.2.2 → 482), the retransmission of a
UAS's 2xx until its ACK arrives (§13.3.1.4) and the §9.1 bound on an INVITE the TU has
CANCELled (no final response within 64*T1: the client transaction is destroyed). It
does not know what a dialog or a call is: it tells its user (the endpoint) what
happened through events.

Time is data: every timer is a deadline; `next_timer()` is the earliest and
`handle_timer(now)` fires whatever is due.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum

from hotline.sip.addr import Peer
from hotline.sip.errors import ParseError
from hotline.sip.message import Headers, Request, Response

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer base values, seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        # A zero T1 would re-arm Timer A/E/G at the instant it fires, forever.
        if not self.t1 > 0:
            raise ValueError(f"T1 must be positive, got {self.t1}")
        if not self.t2 >= self.t1:
            raise ValueError(f"T2 ({self.t2}) must not be smaller than T1 ({self.t1})")
        if not self.t4 >= 0:
            raise ValueError(f"T4 must not be negative, got {self.t4}")

    @property
    def b(self) -> float:
        return 64 * self.t1


class TxState(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# ---------------------------------------------------------------------------
# Events for the transaction user
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A new request; the user must answer it through `respond(tx, ...)`."""

    request: Request
    tx: ServerTransaction


@dataclass(frozen=True)
class AckReceived:
    """An ACK for a 2xx (its own transaction-less request), for the dialog layer."""

    request: Request
    peer: Peer


@dataclass(frozen=True)
class CancelReceived:
    """A CANCEL matched `invite_tx`. The CANCEL's own RequestReceived follows: the
    user answers it 200, and answers the INVITE 487 if it has no final response yet."""

    request: Request
    invite_tx: ServerTransaction


@dataclass(frozen=True)
class ResponseReceived:
    response: Response
    tx: ClientTransaction


@dataclass(frozen=True)
class StrayResponse:
    """A response matching no client transaction. A 2xx to INVITE must still be ACKed
    by the user (RFC 6026 §7.2: retransmitted 2xx after the transaction ended)."""

    response: Response
    peer: Peer


@dataclass(frozen=True)
class TransactionTimedOut:
    """Timer B/F (client: no final response — act as if 408) or Timer H (server: no
    ACK for our non-2xx final response)."""

    tx: ClientTransaction | ServerTransaction


@dataclass(frozen=True)
class AckTimedOut:
    """Our 2xx to an INVITE got no ACK within 64*T1: the user should BYE the dialog."""

    tx: ServerTransaction


@dataclass(frozen=True)
class TransportFailed:
    tx: ClientTransaction | ServerTransaction


TxEvent = (
    RequestReceived | AckReceived | CancelReceived | ResponseReceived | StrayResponse
    | TransactionTimedOut | AckTimedOut | TransportFailed
)


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


_METHOD_AT = 4  # index of the method in both forms of the server key


def _server_key(req: Request) -> tuple[str, ...]:
    """§17.2.3 matching key. ACK maps onto its INVITE's key."""
    via = req.top_via
    method = "INVITE" if req.method == "ACK" else req.method
    branch = via.branch or ""
    host, port = via.sent_by
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, host, str(port), method)
    # RFC 2543 fallback (§17.2.3, last paragraph).
    return (
        "2543", req.call_id, req.from_.tag or "", str(req.cseq.number), method,
        str(req.uri), host, str(port), branch,
    )


def _client_key(branch: str, method: str) -> tuple[str, str]:
    return (branch, method)


def _ack_key(req: Request) -> tuple[str, str, int]:
    """How an ACK for a 2xx (new branch, §13.2.2.4) finds the INVITE it acknowledges:
    same Call-ID, From tag and CSeq number."""
    return (req.call_id, req.from_.tag or "", req.cseq.number)


# ---------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Tx(ABC):
    layer: TransactionLayer
    request: Request
    peer: Peer
    state: TxState
    key: tuple[str, ...]
    timers: dict[str, float] = field(default_factory=dict)
    interval: float = 0.0
    created: float = 0.0

    @property
    def reliable(self) -> bool:
        return self.peer.reliable

    @property
    def method(self) -> str:
        return self.request.method

    def _arm(self, name: str, at: float) -> None:
        self.timers[name] = at
        self.layer._schedule(at, self, name)

    def _disarm(self, *names: str) -> None:
        for n in names:
            self.timers.pop(n, None)

    def _terminate(self) -> None:
        self.state = TxState.TERMINATED
        self.timers.clear()
        self.layer._forget(self)

    @abstractmethod
    def fire(self, name: str, now: float) -> list[TxEvent]:
        """Run timer `name`, due at `now`."""


@dataclass(eq=False)
class ServerTransaction(_Tx):
    last_response: Response | None = None
    last_bytes: bytes = b""
    acked: bool = False
    merge_key: tuple[str, ...] | None = None
    user_data: object = None

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, resp: Response, now: float) -> None:
        if self.state in (TxState.COMPLETED, TxState.CONFIRMED, TxState.TERMINATED):
            raise ValueError(f"transaction already {self.state.value}: cannot send {resp.status}")
        if self.state is TxState.ACCEPTED:
            # RFC 6026 §8.7: further 2xx from the TU are passed on in Accepted.
            if resp.status // 100 != 2:
                raise ValueError("only 2xx may follow a 2xx")
            self._send_response(resp)
            return
        self._send_response(resp)
        status = resp.status
        if status < 200:
            self.state = TxState.PROCEEDING
            return
        if self.is_invite:
            if status < 300:
                self.state = TxState.ACCEPTED
                self.layer._accepted[_ack_key(self.request)] = self
                self._arm("L", now + self.layer.timers.b)
                self.interval = self.layer.timers.t1
                self._arm("G2xx", now + self.interval)
            else:
                self.state = TxState.COMPLETED
                if not self.reliable:
                    self.interval = self.layer.timers.t1
                    self._arm("G", now + self.interval)
                self._arm("H", now + self.layer.timers.b)
        else:
            self.state = TxState.COMPLETED
            self._arm("J", now + (0.0 if self.reliable else self.layer.timers.b))

    def _send_response(self, resp: Response) -> None:
        self.last_response = resp
        self.last_bytes = resp.to_bytes()
        self.layer._send(self.last_bytes, self.peer)

    def on_retransmission(self, req: Request, now: float) -> list[TxEvent]:
        if req.method == "ACK":
            if self.is_invite and self.state is TxState.COMPLETED:
                self.state = TxState.CONFIRMED
                self._disarm("G", "H")
                self._arm("I", now + (0.0 if self.reliable else self.layer.timers.t4))
            return []
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED) and self.last_bytes:
            self.layer._send(self.last_bytes, self.peer)
        # TRYING (non-INVITE, nothing sent yet), ACCEPTED, CONFIRMED: absorb silently.
        return []

    def on_2xx_ack(self, now: float) -> None:
        self.acked = True
        self._disarm("G2xx")

    def fire(self, name: str, now: float) -> list[TxEvent]:
        t = self.layer.timers
        if name == "G":
            if self.state is TxState.COMPLETED:
                self.layer._send(self.last_bytes, self.peer)
                self.interval = min(2 * self.interval, t.t2)
                self._arm("G", now + self.interval)
            return []
        if name == "G2xx":
            if self.state is TxState.ACCEPTED and not self.acked:
                self.layer._send(self.last_bytes, self.peer)
                self.interval = min(2 * self.interval, t.t2)
                self._arm("G2xx", now + self.interval)
            return []
        if name == "H":
            self._terminate()
            return [TransactionTimedOut(self)]
        if name == "L":
            acked = self.acked
            self._terminate()
            return [] if acked else [AckTimedOut(self)]
        if name in ("I", "J"):
            self._terminate()
            return []
        raise ValueError(f"unknown server timer {name}")


@dataclass(eq=False)
class ClientTransaction(_Tx):
    request_bytes: bytes = b""
    last_status: int = 0
    user_data: object = None
    ack_bytes: bytes = b""

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    def start(self, now: float) -> None:
        t = self.layer.timers
        self.request_bytes = self.request.to_bytes()
        self.layer._send(self.request_bytes, self.peer)
        self.interval = t.t1
        if self.is_invite:
            self.state = TxState.CALLING
            if not self.reliable:
                self._arm("A", now + t.t1)
            self._arm("B", now + t.b)
        else:
            self.state = TxState.TRYING
            if not self.reliable:
                self._arm("E", now + t.t1)
            self._arm("F", now + t.b)

    def on_response(self, resp: Response, now: float) -> list[TxEvent]:
        status = resp.status
        t = self.layer.timers
        st = self.state
        if self.is_invite:
            if st in (TxState.CALLING, TxState.PROCEEDING):
                self._disarm("A")
                if status < 200:
                    self.state = TxState.PROCEEDING
                    self._disarm("B")  # Timer B only fires in Calling
                    self.last_status = status
                    return [ResponseReceived(resp, self)]
                self.last_status = status
                self._disarm("cancel")
                if status < 300:
                    self.state = TxState.ACCEPTED
                    self._disarm("B")
                    self._arm("M", now + t.b)
                    return [ResponseReceived(resp, self)]
                self.state = TxState.COMPLETED
                self._disarm("B")
                self._send_ack(resp)
                self._arm("D", now + (0.0 if self.reliable else max(32.0, t.b)))
                return [ResponseReceived(resp, self)]
            if st is TxState.ACCEPTED and 200 <= status < 300:
                return [ResponseReceived(resp, self)]
            if st is TxState.COMPLETED and status >= 300:
                self.layer._send(self.ack_bytes, self.peer)
            return []
        # non-INVITE
        if st in (TxState.TRYING, TxState.PROCEEDING):
            self.last_status = status
            if status < 200:
                self.state = TxState.PROCEEDING
                return [ResponseReceived(resp, self)]
            self.state = TxState.COMPLETED
            self._disarm("E", "F")
            self._arm("K", now + (0.0 if self.reliable else t.t4))
            return [ResponseReceived(resp, self)]
        return []

    def cancelled(self, now: float) -> None:
        """The TU sent a CANCEL for this INVITE. §9.1: without a final response within
        64*T1 the transaction is considered cancelled and destroyed (timer "cancel")."""
        if (self.is_invite and self.state in (TxState.CALLING, TxState.PROCEEDING)
                and "cancel" not in self.timers):
            self._arm("cancel", now + self.layer.timers.b)

    def _send_ack(self, resp: Response) -> None:
        """§17.1.1.3: the ACK for a non-2xx final response, inside the transaction."""
        req = self.request
        h = Headers()
        top = req.headers.raw_values("Via")[0]
        # Exactly one Via, equal to the request's top one (even if that header line
        # carried several comma-separated values).
        h.add("Via", top if len(req.vias) == 1 else str(req.top_via))
        for v in req.headers.raw_values("Route"):
            h.add("Route", v)
        h.add("Max-Forwards", "70")
        h.add("From", req.headers.get("From") or "")
        h.add("To", resp.headers.get("To") or "")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", f"{req.cseq.number} ACK")
        ack = Request(h, b"", "ACK", req.uri)
        self.ack_bytes = ack.to_bytes()
        self.layer._send(self.ack_bytes, self.peer)

    def fire(self, name: str, now: float) -> list[TxEvent]:
        t = self.layer.timers
        if name == "A":
            if self.state is TxState.CALLING:
                self.layer._send(self.request_bytes, self.peer)
                self.interval *= 2
                self._arm("A", now + self.interval)
            return []
        if name == "E":
            if self.state in (TxState.TRYING, TxState.PROCEEDING):
                self.layer._send(self.request_bytes, self.peer)
                self.interval = (
                    t.t2 if self.state is TxState.PROCEEDING else min(2 * self.interval, t.t2)
                )
                self._arm("E", now + self.interval)
            return []
        if name in ("B", "F"):
            self._terminate()
            return [TransactionTimedOut(self)]
        if name == "cancel":
            # Armed only in Calling/Proceeding and disarmed by any final response.
            self._terminate()
            return [TransactionTimedOut(self)]
        if name in ("D", "K", "M"):
            self._terminate()
            return []
        raise ValueError(f"unknown client timer {name}")


# ---------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of one endpoint, their timers and what they want sent."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        self._merge: dict[tuple[str, ...], ServerTransaction] = {}
        # Accepted INVITE server transactions by (Call-ID, From tag, CSeq number): 2xx
        # ACKs carry a new branch, so they are matched on the dialog's identity instead.
        self._accepted: dict[tuple[str, str, int], ServerTransaction] = {}
        self._heap: list[tuple[float, int, _Tx, str]] = []
        self._seq = itertools.count()
        self._out: list[tuple[bytes, Peer]] = []
        self.retransmissions = 0  # our own resends (timers A, E, G, 2xx)
        self.absorbed = 0  # peer retransmissions matched to a transaction

    # -- bookkeeping used by the transactions --
    def _send(self, data: bytes, peer: Peer) -> None:
        self._out.append((data, peer))

    def _schedule(self, at: float, tx: _Tx, name: str) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), tx, name))

    def _forget(self, tx: _Tx) -> None:
        if isinstance(tx, ServerTransaction):
            if self._server.get(tx.key) is tx:
                del self._server[tx.key]
            if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
                del self._merge[tx.merge_key]
            akey = _ack_key(tx.request)
            if tx.is_invite and self._accepted.get(akey) is tx:
                del self._accepted[akey]
        elif self._client.get(tx.key) is tx:
            del self._client[tx.key]

    # -- I/O-free interface --
    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self._out = self._out, []
        return out

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self._send(message.to_bytes(), peer)

    def next_timer(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, tx, name = heap[0]
            if tx.timers.get(name) == at:
                return at
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[TxEvent]:
        events: list[TxEvent] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, tx, name = heapq.heappop(heap)
            if tx.timers.get(name) != at:
                continue
            del tx.timers[name]
            if name in ("A", "E", "G", "G2xx"):
                self.retransmissions += 1
            events.extend(tx.fire(name, now))
        return events

    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    def find_server(self, req: Request) -> ServerTransaction | None:
        return self._server.get(_server_key(req))

    # -- inbound --
    def receive_request(self, req: Request, peer: Peer, now: float) -> list[TxEvent]:
        """Match a parsed request. Raises ParseError(482) for a merged request."""
        key = _server_key(req)
        tx = self._server.get(key)
        if tx is not None:
            if req.method == "ACK" and tx.state is TxState.ACCEPTED:
                # ACK with the INVITE's branch (some UAs do this for 2xx too).
                tx.on_2xx_ack(now)
                return [AckReceived(req, peer)]
            if req.method != "ACK":
                self.absorbed += 1
            return tx.on_retransmission(req, now)
        if req.method == "ACK":
            acc = self._accepted.get(_ack_key(req))
            if acc is not None:
                acc.on_2xx_ack(now)
            return [AckReceived(req, peer)]
        if req.method == "CANCEL":
            # §9.2: the INVITE's key with the method replaced (in the RFC 2543 form,
            # Request-URI, From tag, Call-ID, CSeq number and top Via must all match).
            invite_key = (*key[:_METHOD_AT], "INVITE", *key[_METHOD_AT + 1 :])
            invite_tx = self._server.get(invite_key)
            tx = self._new_server(req, peer, key, now)
            if invite_tx is None:
                return [RequestReceived(req, tx)]  # the user answers 481
            return [CancelReceived(req, invite_tx), RequestReceived(req, tx)]
        merge_key: tuple[str, ...] | None = None
        if req.to.tag is None:
            merge_key = (req.from_.tag or "", req.call_id, str(req.cseq.number), req.method)
            other = self._merge.get(merge_key)
            if other is not None and other.state is not TxState.TERMINATED:
                raise ParseError("merged request: same From tag, Call-ID and CSeq as a "
                                 "request in progress with another branch", 482)
        tx = self._new_server(req, peer, key, now)
        if merge_key is not None:
            tx.merge_key = merge_key
            self._merge[merge_key] = tx
        return [RequestReceived(req, tx)]

    def _new_server(self, req: Request, peer: Peer, key: tuple[str, ...],
                    now: float) -> ServerTransaction:
        state = TxState.PROCEEDING if req.method == "INVITE" else TxState.TRYING
        tx = ServerTransaction(self, req, peer, state, key, created=now)
        self._server[key] = tx
        return tx

    def respond(self, tx: ServerTransaction, resp: Response, now: float) -> None:
        """Send `resp` on `tx`. Raises ValueError for a response the state forbids."""
        tx.respond(resp, now)

    def receive_response(self, resp: Response, peer: Peer, now: float) -> list[TxEvent]:
        branch = resp.top_via.branch or ""
        # ACK has no responses: one claiming CSeq method ACK matches no transaction.
        tx = None if resp.cseq.method == "ACK" else self._client.get(
            _client_key(branch, resp.cseq.method))
        if tx is None:
            return [StrayResponse(resp, peer)]
        return tx.on_response(resp, now)

    # -- outbound --
    def send_request(self, req: Request, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction for `req` (its top Via must carry a fresh branch).
        ACK for a 2xx is not a transaction: use `send_stateless`."""
        if req.method == "ACK":
            raise ValueError("ACK for 2xx is sent with send_stateless, not in a transaction")
        branch = req.top_via.branch or ""
        if not branch.startswith(MAGIC_COOKIE):
            raise ValueError(f"branch {branch!r} lacks the RFC 3261 magic cookie")
        key = _client_key(branch, req.method)
        if key in self._client:
            raise ValueError(f"a client transaction with branch {branch!r} exists")
        state = TxState.CALLING if req.method == "INVITE" else TxState.TRYING
        tx = ClientTransaction(self, req, peer, state, key, created=now)
        self._client[key] = tx
        tx.start(now)
        if req.method == "CANCEL":
            invite_tx = self._client.get(_client_key(branch, "INVITE"))
            if invite_tx is not None:
                invite_tx.cancelled(now)
        return tx

    def transport_error(self, tx: ClientTransaction | ServerTransaction) -> list[TxEvent]:
        if tx.state is TxState.TERMINATED:
            return []
        tx._terminate()
        return [TransportFailed(tx)]
