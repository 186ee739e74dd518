"""Expert presence over SIP on a live engine: PUBLISH (RFC 3903) with digest auth feeds
the directory, a watcher's SUBSCRIBE (RFC 3856) gets NOTIFYs as it changes, and the API
sees the same presence. The SIP client here is a bare UDP socket: every byte is on the
wire as written.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from hotline.sip.auth import DigestClient
from hotline.sip.message import Request, Response, parse_message
from tests.integration.conftest import stop_server
from tests.integration.test_agents import _server, api, wait_for

pytestmark = pytest.mark.integration

PIDF = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:dave@hotline.test">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>
</presence>
"""


class Client:
    """A UDP SIP client for one user: requests with digest retry, and what arrives."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.server = ("127.0.0.1", port)
        self.user = user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]
        self.password = password
        self.cseq = 0
        self.call_id = f"{os.urandom(6).hex()}@test"
        self.tag = os.urandom(4).hex()

    def _send(self, method: str, uri: str, headers: list[tuple[str, str]], body: bytes,
              auth: str | None) -> None:
        self.cseq += 1
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{os.urandom(6).hex()}",
                 "Max-Forwards: 70",
                 f"From: <sip:{self.user}@hotline.test>;tag={self.tag}",
                 f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} {method}",
                 f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>"]
        lines += [f"{k}: {v}" for k, v in headers]
        if auth is not None:
            lines.append(f"Authorization: {auth}")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.server)

    def receive(self) -> Request | Response:
        data, _ = self.sock.recvfrom(65535)
        return parse_message(data)

    def final(self) -> Response:
        while True:
            msg = self.receive()
            if isinstance(msg, Response) and msg.status >= 200:
                return msg
            if isinstance(msg, Request):  # a NOTIFY racing the 200
                self.pending.append(msg)

    pending: list[Request]

    def request(self, method: str, uri: str, headers: list[tuple[str, str]],
                body: bytes = b"") -> Response:
        self.pending = []
        self._send(method, uri, headers, body, None)
        resp = self.final()
        if resp.status == 401:
            digest = DigestClient(self.user, self.password, random_bytes=os.urandom)
            auth = digest.authorize(resp.headers.get_all("WWW-Authenticate"), method, uri)
            self._send(method, uri, headers, body, auth)
            resp = self.final()
        return resp

    def notify(self) -> Request:
        """The next NOTIFY (answered 200)."""
        msg = self.pending.pop(0) if self.pending else self.receive()
        while not (isinstance(msg, Request) and msg.method == "NOTIFY"):
            msg = self.receive()
        via = msg.headers.get_all("Via")
        reply = ["SIP/2.0 200 OK", *(f"Via: {v}" for v in via),
                 f"From: {msg.headers.get('From')}", f"To: {msg.headers.get('To')}",
                 f"Call-ID: {msg.call_id}", f"CSeq: {msg.headers.get('CSeq')}",
                 "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(reply) + "\r\n\r\n").encode(), self.server)
        return msg


def test_publish_feeds_the_directory_and_watchers_are_notified(tmp_path: Path) -> None:
    server, http = _server(tmp_path)
    dave = Client(server.port, "dave", "dave-pass")
    alice = Client(server.port, "alice", "wonderland")
    try:
        uri = "sip:dave@hotline.test"
        presence = [("To", f"<{uri}>"), ("Event", "presence"), ("Expires", "120"),
                    ("Content-Type", "application/pidf+xml")]
        resp = dave.request("PUBLISH", uri, presence, PIDF.encode())
        assert resp.status == 200, resp.status
        etag = resp.headers.get("SIP-ETag")
        assert etag
        assert wait_for(lambda: api(http, "GET", "/api/experts")[1][0]["status"] == "busy", 5), \
            api(http, "GET", "/api/experts")
        # Busy on the phone: not among the available experts for the skill.
        assert api(http, "GET", "/api/experts?skill=vaccine&available=1")[1] == []
        # Alice may not publish dave's presence.
        assert alice.request("PUBLISH", uri, presence, PIDF.encode()).status == 403
        # A watcher: 200, then a NOTIFY with dave's merged presence.
        resp = alice.request("SUBSCRIBE", uri, [("To", f"<{uri}>"), ("Event", "presence"),
                                                ("Accept", "application/pidf+xml"),
                                                ("Expires", "300")])
        assert resp.status == 200, resp.status
        first = alice.notify()
        assert b"dave" in first.body
        assert "active" in (first.headers.get("Subscription-State") or "")
        # An explicit status from the API wins over what was published: watchers hear.
        status, body = api(http, "POST", "/api/experts/dave/status",
                           {"status": "dnd", "note": "in a meeting"})
        assert status == 200 and body["status"] == "dnd", body
        update = alice.notify()
        assert update.body != first.body
        status, body = api(http, "POST", "/api/experts/dave/status", {"status": None})
        assert body["status"] == "busy", body  # the published presence again
        alice.notify()
        # dave's phone system publishes a change (same entity-tag): open, off the phone.
        free = PIDF.replace("<rpid:activities><rpid:on-the-phone/></rpid:activities>", "")
        resp = dave.request("PUBLISH", uri, [*presence, ("SIP-If-Match", etag)], free.encode())
        assert resp.status == 200
        etag = resp.headers.get("SIP-ETag")
        assert b"open" in alice.notify().body
        assert [e["id"] for e in api(http, "GET", "/api/experts?skill=vaccine&available=1")[1]] \
            == ["dave"]
        # Removing the publication (Expires: 0 with SIP-If-Match): dave is not registered,
        # so nothing says he is there any more.
        removed = dave.request("PUBLISH", uri, [("To", f"<{uri}>"), ("Event", "presence"),
                                                ("Expires", "0"), ("SIP-If-Match", etag)])
        assert removed.status == 200
        alice.notify()
        assert api(http, "GET", "/api/experts")[1][0]["status"] == "offline"
        # An event package the engine does not serve.
        bad = alice.request("SUBSCRIBE", uri, [("To", f"<{uri}>"), ("Event", "dialog"),
                                               ("Expires", "60")])
        assert bad.status == 489
        time.sleep(0.2)
        assert server.alive()
    finally:
        dave.sock.close()
        alice.sock.close()
        assert stop_server(server) == 0
