"""Test helpers for driving an Endpoint with plain function calls and a fake clock."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from hotline.sip.addr import Peer
from hotline.sip.endpoint import Endpoint, EndpointConfig, Event
from hotline.sip.message import Request, Response, parse_message
from hotline.sip.registrar import Registrar
from hotline.sip.transaction import Timers

CALLER = Peer("udp", "192.0.2.10", 5062)
SDP_OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def seeded_random(seed: int = 7) -> random.Random:
    return random.Random(seed)


@dataclass
class Harness:
    ep: Endpoint
    now: float = 1000.0
    sent: list[tuple[bytes, Peer]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def make(cls, registrar: Registrar | None = None, **cfg: object) -> Harness:
        rng = seeded_random()
        conf = EndpointConfig(local={"udp": ("198.51.100.1", 5060), "tcp": ("198.51.100.1", 5060)},
                              timers=Timers(), **cfg)  # type: ignore[arg-type]
        return cls(Endpoint(conf, rng.randbytes, registrar))

    def feed(self, data: bytes | str, peer: Peer = CALLER) -> list[Response | Request]:
        raw = data.encode() if isinstance(data, str) else data
        self.ep.receive(raw, peer, self.now)
        return self.flush()

    def flush(self) -> list[Response | Request]:
        self.events.extend(self.ep.take_events())
        out = self.ep.datagrams_to_send()
        self.sent.extend(out)
        return [parse_message(d) for d, _ in out]

    def take_events(self) -> list[Event]:
        self.events.extend(self.ep.take_events())
        ev, self.events = self.events, []
        return ev

    def advance(self, seconds: float) -> list[Response | Request]:
        """Move the fake clock, firing every timer due on the way."""
        end = self.now + seconds
        out: list[Response | Request] = []
        while (t := self.ep.next_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            self.ep.handle_timer(self.now)
            out.extend(self.flush())
        self.now = end
        return out


_ids = itertools.count(1)


def invite(call_id: str | None = None, *, branch: str | None = None, body: bytes = SDP_OFFER,
           extra: str = "", cseq: int = 1, to_tag: str | None = None,
           method: str = "INVITE") -> str:
    n = next(_ids)
    call_id = call_id or f"call-{n}@192.0.2.10"
    branch = branch or f"z9hG4bKtest{n}"
    to = "<sip:1800@hotline.test>" + (f";tag={to_tag}" if to_tag else "")
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:1800@hotline.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Caller\" <sip:0412345678@192.0.2.10>;tag=from1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:caller@192.0.2.10:5062>\r\n"
        f"{ctype}{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


def in_dialog(method: str, call_id: str, to_tag: str, cseq: int, *, branch: str | None = None,
              body: bytes = b"", ctype: str | None = None, extra: str = "") -> str:
    n = next(_ids)
    branch = branch or f"z9hG4bKdlg{n}"
    ct = f"Content-Type: {ctype}\r\n" if ctype else ""
    return (
        f"{method} sip:hotline@198.51.100.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Caller\" <sip:0412345678@192.0.2.10>;tag=from1\r\n"
        f"To: <sip:1800@hotline.test>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{ct}{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ) + body.decode()


def statuses(msgs: list[Response | Request]) -> list[int]:
    return [m.status for m in msgs if isinstance(m, Response)]
