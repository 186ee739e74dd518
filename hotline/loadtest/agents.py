"""The load-test agents' phone line: REGISTER the agents and dial their star codes from
the address where SIPp will answer their calls.

Owns a small SIP user agent client over one UDP socket (this module does I/O): REGISTER
with digest authentication (`hotline.sip.auth.DigestClient`: SHA-256 or MD5, whichever
the registrar offers — SIPp 3.6 can only answer MD5 and stumbles on a registrar that
offers SHA-256 first), and a call to an agent code (`*41` log in, `*42` log out): INVITE
with an SDP, ACK, and the engine's BYE after it says whether it took the code. Requests
are retransmitted on RFC 3261's timer A schedule. The engine accepts star codes only
from where the agent registered, so the runner registers and logs in from the port the
agents' SIPp will then bind, and logs out from it again after SIPp has stopped.

Must not know: SIPp, the load test's plan, reports.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hotline.sip.auth import DigestClient, DigestClientError
from hotline.sip.errors import ParseError
from hotline.sip.message import Request, Response, parse_message

T1: Final = 0.5  # seconds: the first retransmission interval
TIMEOUT: Final = 8.0  # seconds a transaction may take
STAR_BYE_WAIT: Final = 20.0  # seconds the engine may take to say its phrase and hang up


class AgentLineError(RuntimeError):
    """An agent could not register or dial its code; the message says what the engine
    answered."""


@dataclass
class _Sent:
    method: str
    branch: str
    cseq: int
    call_id: str
    from_tag: str


class AgentLine:
    """One UDP socket at (`local`, `port`): the agents' phone address."""

    def __init__(self, target: tuple[str, int], local: str, port: int, media_port: int) -> None:
        self.target = target
        self.local = local
        self.port = port
        self.media_port = media_port
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((local, port))
        self.sock.settimeout(0.05)
        self.cseq = 0
        self._last = ""  # the text of the last request sent, for retransmission

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AgentLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- wire ------------------------------------------------------------------------

    @property
    def _host(self) -> str:
        return f"[{self.local}]" if ":" in self.local else self.local

    @property
    def _target_host(self) -> str:
        host = self.target[0]
        return f"[{host}]" if ":" in host else host

    def _send(self, text: str) -> None:
        self.sock.sendto(text.replace("\n", "\r\n").encode(), self.target)

    def _receive(self, deadline: float) -> Request | Response | None:
        while time.monotonic() < deadline:
            try:
                data, _addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                return parse_message(data)
            except ParseError:
                continue
        return None

    def _answer(self, request: Request, status: int = 200, reason: str = "OK") -> None:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.headers.raw_values("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {request.headers.get(name) or ''}")
        lines += ["Content-Length: 0", "", ""]
        self._send("\n".join(lines))

    def _request(
        self,
        method: str,
        uri: str,
        user: str,
        call_id: str,
        from_tag: str,
        to: str,
        extra: Sequence[str] = (),
        body: str = "",
        cseq: int | None = None,
    ) -> _Sent:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = "z9hG4bK" + uuid.uuid4().hex[:20]
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self._host}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self._target_host}>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{user}@{self._host}:{self.port}>",
            "User-Agent: hotline-loadtest",
            *extra,
        ]
        if body:
            lines += [
                "Content-Type: application/sdp",
                f"Content-Length: {len(body.replace(chr(10), chr(13) + chr(10)))}",
                "",
                body,
            ]
        else:
            lines += ["Content-Length: 0", "", ""]
        self._send("\n".join(lines))
        sent = _Sent(method, branch, cseq, call_id, from_tag)
        self._last = "\n".join(lines)
        return sent

    def _transaction(self, sent: _Sent, text: str) -> Response:
        """Wait for the final response to `sent`, retransmitting `text`; provisional
        responses are skipped, a BYE for the call (the engine hanging up) is answered."""
        start = time.monotonic()
        interval = T1
        resend = start + interval
        while time.monotonic() - start < TIMEOUT:
            message = self._receive(min(resend, start + TIMEOUT))
            if message is None:
                if time.monotonic() >= resend:
                    self._send(text)
                    interval = min(interval * 2, 4.0)
                    resend = time.monotonic() + interval
                continue
            if isinstance(message, Request):
                if message.method in ("BYE", "OPTIONS", "NOTIFY"):
                    self._answer(message)
                continue
            via = message.headers.get("Via") or ""
            if f"branch={sent.branch}" not in via or message.status < 200:
                continue
            return message
        raise AgentLineError(
            f"{sent.method}: no final response from {self.target[0]}:"
            f"{self.target[1]} in {TIMEOUT:g} s"
        )

    # -- what agents do ------------------------------------------------------------------

    def register(self, user: str, password: str, expires: int) -> None:
        """REGISTER `user` with this address as contact; answers one digest challenge."""
        call_id = f"{uuid.uuid4().hex}@loadtest"
        tag = uuid.uuid4().hex[:10]
        uri = f"sip:{self._target_host}:{self.target[1]}"
        to = f"<sip:{user}@{self._target_host}>"
        extra = [f"Expires: {expires}"]
        sent = self._request("REGISTER", uri, user, call_id, tag, to, extra)
        response = self._transaction(sent, self._last)
        if response.status in (401, 407):
            client = DigestClient(user, password, random_bytes=os.urandom)
            name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            try:
                auth = client.authorize(response.headers.raw_values(name), "REGISTER", uri)
            except DigestClientError as exc:
                raise AgentLineError(
                    f"{user}: cannot answer the registrar's challenge: {exc}"
                ) from None
            header = "Authorization" if response.status == 401 else "Proxy-Authorization"
            sent = self._request(
                "REGISTER", uri, user, call_id, tag, to, [*extra, f"{header}: {auth}"]
            )
            response = self._transaction(sent, self._last)
        if response.status != 200:
            raise AgentLineError(
                f"{user}: REGISTER answered {response.status} "
                f"{response.reason} (wrong password, or not a registrar "
                "user of the target's config?)"
            )

    def star_code(self, user: str, code: str) -> None:
        """Dial `code` as `user`; the engine answers, plays whether it took it, hangs up."""
        call_id = f"{uuid.uuid4().hex}@loadtest"
        tag = uuid.uuid4().hex[:10]
        host, port = self._target_host, self.target[1]
        uri = f"sip:{code}@{host}:{port}"
        family = "IP6" if ":" in self.local else "IP4"
        sdp = (
            f"v=0\no=agent 1 1 IN {family} {self.local}\ns=-\nc=IN {family} {self.local}\n"
            f"t=0 0\nm=audio {self.media_port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        )
        to = f"<sip:{code}@{host}>"
        sent = self._request("INVITE", uri, user, call_id, tag, to, body=sdp)
        response = self._transaction(sent, self._last)
        if response.status != 200:
            raise AgentLineError(f"{user}: {code} answered {response.status} {response.reason}")
        contacts = response.contacts
        target_uri = str(contacts[0].uri) if contacts else uri
        to_header = response.headers.get("To") or to
        self._request("ACK", target_uri, user, call_id, tag, to_header, cseq=sent.cseq)
        deadline = time.monotonic() + STAR_BYE_WAIT
        while time.monotonic() < deadline:
            message = self._receive(deadline)
            if isinstance(message, Request) and message.call_id == call_id:
                if message.method == "BYE":
                    self._answer(message)
                    return
                self._answer(message)
            elif (
                isinstance(message, Response)
                and message.status == 200
                and message.cseq.method == "INVITE"
            ):
                self._request("ACK", target_uri, user, call_id, tag, to_header, cseq=sent.cseq)
        bye = self._request("BYE", target_uri, user, call_id, tag, to_header)
        self._transaction(bye, self._last)


def log_in(
    target: tuple[str, str | int],
    local: str,
    port: int,
    media_port: int,
    agents: Sequence[tuple[str, str]],
    expires: int,
) -> None:
    """Register every agent at (`local`, `port`) and log it in (`*41`)."""
    with AgentLine((str(target[0]), int(target[1])), local, port, media_port) as line:
        for user, password in agents:
            line.register(user, password, expires)
            line.star_code(user, "*41")


def log_out(
    target: tuple[str, str | int],
    local: str,
    port: int,
    media_port: int,
    agents: Sequence[tuple[str, str]],
) -> None:
    """From the same address: log every agent out (`*42`) and unregister it."""
    with AgentLine((str(target[0]), int(target[1])), local, port, media_port) as line:
        for user, password in agents:
            line.register(user, password, 60)
            line.star_code(user, "*42")
            line.register(user, password, 0)
