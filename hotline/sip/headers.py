"""Header names and the structured headers SIP routing depends on.

Owns: canonical names and compact forms (RFC 3261 §7.3.3), which headers may be
comma-combined, and the parsers for Via, name-addr headers (From, To, Contact, Route,
Record-Route, Refer-To, P-Asserted-Identity...), CSeq and small scalar headers. Knows
nothing about transactions or transports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hotline.sip.errors import ParseError
from hotline.sip.grammar import (
    WS,
    Params,
    Scanner,
    is_host,
    is_token,
    parse_params,
    quote,
    show,
    split_commas,
    unquote,
)
from hotline.sip.uri import URI, SipURI, parse_uri

_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate",
]
CANONICAL: dict[str, str] = {n.lower(): n for n in _CANONICAL}

COMPACT: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}

# Headers whose values may be combined with commas (RFC 3261 §7.3.1). The auth
# headers are *not* listed: their values contain commas of their own.
MULTI_VALUE = frozenset(
    n.lower() for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "In-Reply-To", "P-Asserted-Identity", "Path", "Proxy-Require", "Record-Route",
        "Reason", "Require", "Route", "Service-Route", "Supported", "Unsupported", "Via",
        "Warning",
    )
)

# Headers that must appear at most once in a request (multi01 in RFC 4475).
SINGLETONS = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length")


def canonical_name(name: str) -> str:
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    return CANONICAL.get(low, name)


@dataclass(eq=False)
class Via:
    """One Via header value: ``SIP/2.0/UDP host:port;branch=...;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{self.params}"


def parse_via(value: str) -> list[Via]:
    """Parse a Via header value (possibly several comma-separated via-parms)."""
    out: list[Via] = []
    for part in split_commas(value):
        sc = Scanner(part, "Via")
        if not part:
            raise ParseError(f"Via: empty value in {show(value)}")
        name = sc.token("a protocol name such as 'SIP'")
        sc.expect("/", "'/' after the protocol name")
        version = sc.token("a protocol version")
        sc.expect("/", "'/' before the transport")
        transport = sc.token("a transport such as UDP or TCP")
        if not sc.skip_ws():
            raise sc.error("whitespace before the sent-by host")
        hostport = sc.until(";" + WS)
        host: str
        port: int | None = None
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise ParseError(f"Via: IPv6 reference without ']' in {show(hostport)}")
            host = hostport[: end + 1]
            tail = hostport[end + 1 :]
        else:
            host, colon, port_text = hostport.partition(":")
            tail = ":" + port_text if colon else ""
        if not tail and sc.accept(":"):
            tail = ":" + sc.until(";" + WS)
        if tail:
            digits = tail[1:]
            if not tail.startswith(":") or not digits.isdigit() or int(digits) > 65535:
                raise ParseError(f"Via: invalid port in {show(hostport + tail[len(hostport):])}")
            port = int(digits)
        if not is_host(host):
            raise ParseError(f"Via: invalid sent-by host {show(host)}")
        params = parse_params(sc)
        sc.skip_ws()
        if not sc.at_end():
            raise sc.error("';' or ',' after the Via parameters")
        out.append(Via(transport.upper(), host, port, params, f"{name}/{version}"))
    return out


@dataclass(eq=False)
class Address:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route..."""

    uri: URI
    display_name: str | None = None
    params: Params = field(default_factory=Params)
    wildcard: bool = False  # Contact: *

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> Address:
        params = self.params.copy()
        params.set("tag", tag)
        return Address(self.uri, self.display_name, params)

    @property
    def sip_uri(self) -> SipURI | None:
        return self.uri if isinstance(self.uri, SipURI) else None

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = ""
        if self.display_name:
            name = (self.display_name if is_token(self.display_name.replace(" ", ""))
                    else quote(self.display_name)) + " "
        return f"{name}<{self.uri}>{self.params}"


def parse_address(value: str, what: str, *, allow_wildcard: bool = False) -> Address:
    """Parse one name-addr / addr-spec followed by header parameters."""
    sc = Scanner(value.strip(), what)
    if allow_wildcard and sc.text == "*":
        return Address(_WILDCARD_URI, wildcard=True)
    display: str | None = None
    if sc.peek() == '"':
        display = unquote(sc.quoted_string())
        sc.skip_ws()
        if sc.peek() != "<":
            raise sc.error("'<' after the quoted display name")
    else:
        lt = sc.text.find("<")
        if lt >= 0:
            words = sc.text[:lt].split()
            for w in words:
                if not is_token(w):
                    raise ParseError(
                        f"{what}: display name {show(sc.text[:lt].strip())} must be a quoted "
                        "string or tokens separated by spaces"
                    )
            display = " ".join(words) or None
            sc.pos = lt
    if sc.peek() == "<":
        sc.pos += 1
        end = sc.text.find(">", sc.pos)
        if end < 0:
            raise ParseError(f"{what}: '<' without a matching '>' in {show(value)}")
        uri_text = sc.text[sc.pos : end]
        if uri_text != uri_text.strip():
            raise ParseError(f"{what}: whitespace inside <{uri_text}>")
        uri = parse_uri(uri_text, what)
        sc.pos = end + 1
    else:
        uri_text = sc.until(";" + WS)
        if "?" in uri_text:
            raise ParseError(
                f"{what}: a URI with headers ('?') must be enclosed in '<>': {show(uri_text)}"
            )
        if "," in uri_text:
            raise ParseError(f"{what}: unexpected ',' in {show(uri_text)}")
        uri = parse_uri(uri_text, what)
    params = parse_params(sc)
    sc.skip_ws()
    if not sc.at_end():
        raise sc.error("';' and header parameters after the address")
    return Address(uri, display, params)


_WILDCARD_URI = parse_uri("sip:wildcard.invalid")


def parse_address_list(value: str, what: str, *, allow_wildcard: bool = False) -> list[Address]:
    parts = split_commas(value)
    if any(not p for p in parts):
        raise ParseError(f"{what}: empty element in a comma-separated list {show(value)}")
    return [parse_address(p, what, allow_wildcard=allow_wildcard) for p in parts]


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


MAX_CSEQ = 2**32 - 1


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise ParseError(f"CSeq: expected '<number> <method>', found {show(value)}")
    number = int(parts[0])
    if number > MAX_CSEQ:
        raise ParseError(f"CSeq: sequence number {parts[0]} exceeds 2**32-1")
    if not is_token(parts[1]):
        raise ParseError(f"CSeq: invalid method {show(parts[1])}")
    return CSeq(number, parts[1])


def parse_uint(value: str, what: str, maximum: int) -> int:
    text = value.strip()
    if not text.isdigit():
        raise ParseError(f"{what}: expected a non-negative integer, found {show(text)}")
    n = int(text)
    if n > maximum:
        raise ParseError(f"{what}: {text} exceeds the maximum {maximum}")
    return n


def parse_delta_seconds(value: str, what: str) -> int:
    """delta-seconds; values beyond 2**32-1 are taken as 2**32-1 (RFC 3261 §20.19)."""
    text = value.strip()
    if not text.isdigit():
        raise ParseError(f"{what}: expected delta-seconds, found {show(text)}")
    return min(int(text), MAX_CSEQ)


def parse_tokens(value: str, what: str) -> list[str]:
    """A comma-separated list of tokens (Require, Supported, Allow...)."""
    out = []
    for p in split_commas(value):
        if not p:
            continue
        if not is_token(p):
            raise ParseError(f"{what}: expected an option tag, found {show(p)}")
        out.append(p)
    return out


@dataclass(frozen=True)
class MediaType:
    type: str
    subtype: str
    params: tuple[tuple[str, str | None], ...] = ()

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k.lower() == name.lower():
                return unquote(v) if v is not None else None
        return None


def parse_media_type(value: str, what: str = "Content-Type") -> MediaType:
    sc = Scanner(value.strip(), what)
    t = sc.token("a media type such as 'application'")
    sc.expect("/", "'/' in the media type")
    s = sc.token("a media subtype")
    params = parse_params(sc)
    sc.skip_ws()
    if not sc.at_end():
        raise sc.error("';' and parameters after the media type")
    return MediaType(t, s, tuple(params.items()))


def media_range_matches(range_: MediaType, mime: str) -> bool:
    t, _, s = mime.lower().partition("/")
    rt, rs = range_.type.lower(), range_.subtype.lower()
    return (rt == "*" or rt == t) and (rs == "*" or rs == s)
