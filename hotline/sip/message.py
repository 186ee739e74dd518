"""SIP messages: the Request/Response model, parsing of datagrams and of byte streams
(Content-Length framing), serialization, and building responses (RFC 3261 §7, §8.2.6,
§18.3, §20).

Owns the syntax of whole messages and the checks that make one processable at all
(mandatory headers present once, well-formed Via/From/To/CSeq, sane Content-Length).
Semantic checks that depend on what *we* support (methods, URI schemes, extensions,
bodies) belong to the endpoint. Knows nothing about transactions or sockets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hotline.sip.errors import FramingError, ParseError
from hotline.sip.grammar import is_token, show, split_commas
from hotline.sip.headers import (
    MULTI_VALUE,
    SINGLETONS,
    Address,
    CSeq,
    Via,
    canonical_name,
    parse_address,
    parse_address_list,
    parse_cseq,
    parse_uint,
    parse_via,
)
from hotline.sip.uri import URI, parse_uri

SIP_VERSION = "SIP/2.0"

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASONS.get(status) or REASONS.get(status // 100 * 100, "Unknown")


class Headers:
    """Ordered header fields. Names are canonicalised (compact forms expanded); values
    are kept as received after unfolding. Parsed forms of structured headers are
    cached and dropped on any change."""

    __slots__ = ("_cache", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = [
            (canonical_name(n), v) for n, v in (items or [])
        ]
        self._cache: dict[str, Any] = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = canonical_name(name).lower()
        return any(n.lower() == low for n, _ in self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        low = canonical_name(name).lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return default

    def raw_values(self, name: str) -> list[str]:
        """Every field value for `name`, one per header line, not split at commas."""
        low = canonical_name(name).lower()
        return [v for n, v in self._items if n.lower() == low]

    def get_all(self, name: str) -> list[str]:
        """Every value for `name`; comma-combined lists are split for headers that
        allow it (Via, Contact, Route, Allow, Supported, ...)."""
        cname = canonical_name(name)
        values = self.raw_values(cname)
        if cname.lower() not in MULTI_VALUE:
            return values
        out: list[str] = []
        for v in values:
            out.extend(p for p in split_commas(v) if p)
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        self._cache.clear()

    def insert(self, index: int, name: str, value: str) -> None:
        self._items.insert(index, (canonical_name(name), value))
        self._cache.clear()

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first field of the same name (or at the top)."""
        low = canonical_name(name).lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == low:
                self.insert(i, name, value)
                return
        self.insert(0, name, value)

    def set(self, name: str, value: str) -> None:
        """Replace every field of `name` with one field, in the first one's place."""
        cname = canonical_name(name)
        low = cname.lower()
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self._items:
            if n.lower() == low:
                if not done:
                    out.append((cname, value))
                    done = True
            else:
                out.append((n, v))
        if not done:
            out.append((cname, value))
        self._items = out
        self._cache.clear()

    def remove(self, name: str) -> None:
        low = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != low]
        self._cache.clear()

    def cached(self, key: str) -> Any:
        return self._cache.get(key)

    def store(self, key: str, value: Any) -> Any:
        self._cache[key] = value
        return value


@dataclass(eq=False)
class Message(ABC):
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # -- structured accessors (parsed on first use, cached until headers change) --
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        c = self.headers.cached("cseq")
        if c is None:
            raw = self.headers.get("CSeq")
            if raw is None:
                raise ParseError("missing CSeq header")
            c = self.headers.store("cseq", parse_cseq(raw))
        assert isinstance(c, CSeq)
        return c

    @property
    def vias(self) -> list[Via]:
        v = self.headers.cached("via")
        if v is None:
            v = []
            for raw in self.headers.raw_values("Via"):
                v.extend(parse_via(raw))
            self.headers.store("via", v)
        assert isinstance(v, list)
        return v

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise ParseError("missing Via header")
        return vias[0]

    def _address(self, name: str) -> Address:
        key = "addr:" + name
        a = self.headers.cached(key)
        if a is None:
            raw = self.headers.get(name)
            if raw is None:
                raise ParseError(f"missing {name} header")
            a = self.headers.store(key, parse_address(raw, name))
        assert isinstance(a, Address)
        return a

    @property
    def from_(self) -> Address:
        return self._address("From")

    @property
    def to(self) -> Address:
        return self._address("To")

    def addresses(self, name: str, *, allow_wildcard: bool = False) -> list[Address]:
        """All addresses of a list header (Contact, Route, Record-Route, Path...)."""
        key = "list:" + name
        a = self.headers.cached(key)
        if a is None:
            a = []
            for raw in self.headers.raw_values(name):
                a.extend(parse_address_list(raw, canonical_name(name),
                                            allow_wildcard=allow_wildcard))
            self.headers.store(key, a)
        assert isinstance(a, list)
        return a

    @property
    def contacts(self) -> list[Address]:
        return self.addresses("Contact", allow_wildcard=True)

    @property
    def content_type(self) -> str | None:
        ct = self.headers.get("Content-Type")
        if ct is None:
            return None
        return ct.split(";", 1)[0].strip().lower()

    @abstractmethod
    def start_line(self) -> str:
        """The request line or status line, without CRLF."""

    def to_bytes(self) -> bytes:
        """Serialise, setting Content-Length from the body."""
        lines = [self.start_line()]
        for n, v in self.headers:
            if n == "Content-Length":
                continue
            lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=False)
class Request(Message):
    method: str = ""
    uri: URI = field(default_factory=lambda: parse_uri("sip:invalid"))
    version: str = SIP_VERSION

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass(eq=False)
class Response(Message):
    status: int = 200
    reason: str = ""
    version: str = SIP_VERSION

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def _split_head(data: bytes) -> tuple[bytes, bytes, bool]:
    """(header block, rest, terminated) — the head ends at the first empty line."""
    i = data.find(b"\r\n\r\n")
    if i >= 0:
        return data[:i], data[i + 4 :], True
    j = data.find(b"\n\n")
    if j >= 0:
        return data[:j], data[j + 2 :], True
    return data.rstrip(b"\r\n"), b"", False


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]]]:
    """Start line and unfolded (name, value) pairs. Raises ParseError on a line that is
    not `name: value`."""
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0]
    fields: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise ParseError(f"continuation line before any header: {show(line)}")
            fields[-1][1] += " " + line.strip(" \t")
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise ParseError(f"malformed header line {show(line)} (expected 'Name: value')")
        fields.append([name, value.strip(" \t")])
    return start, [(canonical_name(n), v) for n, v in fields]


def _parse_status_line(start: str) -> tuple[int, str]:
    parts = start.split(" ", 2)
    if len(parts) < 2:
        raise ParseError(f"malformed status line {show(start)}", None)
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise ParseError(f"status code {show(code)} is not in 100-699", None)
    return int(code), parts[2] if len(parts) > 2 else ""


def _content_length(headers: Headers) -> int | None:
    values = headers.raw_values("Content-Length")
    if not values:
        return None
    lengths = set()
    for v in values:
        for piece in v.split(","):
            text = piece.strip()
            if not text.isdigit():
                raise FramingError(f"Content-Length: expected a non-negative integer, found {show(text)}")
            lengths.add(int(text))
    if len(lengths) > 1:
        raise FramingError(f"conflicting Content-Length values {sorted(lengths)}")
    return lengths.pop()


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole SIP message.

    `data` is one UDP datagram, or one frame cut by `StreamFramer` when `stream` is
    true. Raises ParseError whose `status` is the response to send (None: drop) and
    whose `partial` carries the recoverable request headers.
    """
    # RFC 3261 §7.5: implementations should ignore empty lines before the start line.
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("empty message", None)
    head_b, rest, terminated = _split_head(data)
    try:
        head = head_b.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"header block is not UTF-8 (byte {exc.start})", None) from None
    first = head.split("\n", 1)[0].rstrip("\r")
    is_response = first.startswith("SIP/")
    try:
        start, fields = _header_lines(head)
    except ParseError as exc:
        if is_response:
            exc.status = None
        raise
    headers = Headers(fields)
    if is_response:
        return _finish_response(start, headers, rest, terminated, stream)
    return _finish_request(start, headers, rest, terminated, stream)


def _body(headers: Headers, rest: bytes, terminated: bool, stream: bool) -> bytes:
    length = _content_length(headers)
    if length is None:
        # RFC 3261 §18.3: over UDP the body runs to the end of the datagram.
        return b"" if stream else rest
    if length > len(rest):
        raise ParseError(
            f"Content-Length {length} exceeds the {len(rest)} bytes of body received"
        )
    if length and not terminated:
        raise ParseError("no empty line ends the headers")
    return rest[:length]


def _finish_response(
    start: str, headers: Headers, rest: bytes, terminated: bool, stream: bool
) -> Response:
    try:
        version = start.split(" ", 1)[0]
        if version.upper() != SIP_VERSION:
            raise ParseError(f"unsupported version {show(version)}", None)
        status, reason = _parse_status_line(start)
        resp = Response(headers, _body(headers, rest, terminated, stream), status, reason)
        _check_common(resp)
    except ParseError as exc:
        exc.status = None  # a malformed response is dropped (RFC 3261 §18.1.2)
        raise
    return resp


def _finish_request(
    start: str, headers: Headers, rest: bytes, terminated: bool, stream: bool
) -> Request:
    partial = Request(headers, b"", "", parse_uri("sip:invalid"))
    parts = start.split()
    if len(parts) != 3:
        raise ParseError(
            f"malformed request line {show(start)} (expected 'METHOD Request-URI SIP/2.0')",
            partial=partial,
        )
    method, uri_text, version = parts
    partial.method = method
    if not is_token(method):
        raise ParseError(f"invalid method {show(method)}", partial=partial)
    if version.upper() != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise ParseError(f"SIP version {show(version)} is not supported", 505,
                             partial=partial)
        raise ParseError(f"malformed SIP version {show(version)}", partial=partial)
    try:
        uri = parse_uri(uri_text, "Request-URI")
        partial.uri = uri
        body = _body(headers, rest, terminated, stream)
        req = Request(headers, body, method, uri, SIP_VERSION)
        _check_common(req)
        if not req.from_:
            raise ParseError("missing From header")
    except ParseError as exc:
        exc.partial = partial
        raise
    return req


def _check_common(msg: Message) -> None:
    """Mandatory headers present exactly once and well-formed (RFC 3261 §8.1.1)."""
    h = msg.headers
    for name in SINGLETONS:
        n = len(h.raw_values(name))
        if n > 1 and name != "Content-Length":
            raise ParseError(f"{n} {name} headers; exactly one is allowed")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in h:
            raise ParseError(f"missing {name} header")
    if not msg.call_id.strip():
        raise ParseError("empty Call-ID header")
    vias = msg.vias
    if not vias:
        raise ParseError("missing Via header")
    msg.from_  # noqa: B018 - parse for validation
    msg.to  # noqa: B018
    msg.cseq  # noqa: B018
    mf = h.get("Max-Forwards")
    if mf is not None:
        parse_uint(mf, "Max-Forwards", 255)


# ---------------------------------------------------------------------------
# Stream framing (TCP, TLS)
# ---------------------------------------------------------------------------


class StreamFramer:
    """Cut a byte stream into whole messages by Content-Length (RFC 3261 §18.3).

    `feed()` only buffers; `next_frame()` returns the next whole frame's bytes, the
    keep-alive marker ``b"\\r\\n\\r\\n"`` (RFC 5626 ping: answer with CRLF), or None
    when more data is needed. A FramingError means the connection must be closed.
    """

    PING = b"\r\n\r\n"

    def __init__(self, max_message: int = 65535) -> None:
        self._buf = bytearray()
        self.max_message = max_message
        self.broken = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        if self.broken:
            return None
        buf = self._buf
        if buf[:4] == self.PING:
            del buf[:4]
            return self.PING
        # Single CRLFs between messages are keep-alive pongs or padding.
        i = 0
        while i + 1 < len(buf) and buf[i : i + 2] == b"\r\n" and buf[i : i + 4] != self.PING:
            i += 2
        if i:
            del buf[:i]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_message:
                self.broken = True
                raise FramingError(f"header block larger than {self.max_message} bytes", 513)
            return None
        head = bytes(buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            lname = name.strip().lower()
            if lname in (b"content-length", b"l"):
                text = value.strip()
                if not text.isdigit():
                    self.broken = True
                    raise FramingError(
                        f"Content-Length: expected a non-negative integer, found {show(text.decode('latin-1'))}"
                    )
                n = int(text)
                if length and n != length:
                    self.broken = True
                    raise FramingError("conflicting Content-Length values")
                length = n
        total = end + 4 + length
        if total > self.max_message:
            self.broken = True
            raise FramingError(f"message of {total} bytes exceeds {self.max_message}", 513)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame


# ---------------------------------------------------------------------------
# Building responses
# ---------------------------------------------------------------------------


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6: Via (all, in order), From, To
    (with our tag when given and none is present), Call-ID, CSeq copied; Record-Route
    copied for responses that may create a dialog. Works on a partially parsed request
    too (raw values are copied, nothing is re-parsed)."""
    h = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for v in request.headers.raw_values(name):
            h.add(name, v)
    if to_tag is not None and status != 100:
        raw_to = request.headers.get("To")
        if raw_to is not None:
            try:
                addr = parse_address(raw_to, "To")
                if addr.tag is None:
                    h.set("To", f"{raw_to};tag={to_tag}")
            except ParseError:
                pass
    if 100 < status < 300 and request.method == "INVITE":
        for v in request.headers.raw_values("Record-Route"):
            h.add("Record-Route", v)
    if status == 100 and "Timestamp" in request.headers:
        h.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in extra or []:
        h.add(name, value)
    if body and content_type:
        h.set("Content-Type", content_type)
    return Response(h, body, status, reason if reason is not None else reason_phrase(status))
