"""URIs as SIP uses them: sip/sips (RFC 3261 §19.1), tel (RFC 3966) and any other
absolute URI kept opaque.

Owns URI syntax, %HEX escaping (never recursive: ``%2541`` is ``%41``, not ``A``),
IPv6 references (RFC 5118) and URI comparison (RFC 3261 §19.1.4). Knows nothing about
headers or messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hotline.sip.errors import ParseError
from hotline.sip.grammar import Params, is_host, show

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")
_USER_SAFE = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE = _UNRESERVED | frozenset("[]/?:+$")
_FORBIDDEN_IN_URI = frozenset(' \t\r\n<>"')


def unescape(text: str, what: str) -> str:
    """Resolve %HEX escapes once (as UTF-8 octets; invalid UTF-8 survives as surrogate
    escapes). A '%' not followed by two hex digits is an error."""
    if "%" not in text:
        return text
    pieces = text.split("%")
    out = bytearray(pieces[0].encode("utf-8", "surrogateescape"))
    for piece in pieces[1:]:
        if len(piece) < 2 or not _PCT_RE.match("%" + piece[:2]):
            raise ParseError(f"{what}: bad %-escape in {show(text)}")
        out.append(int(piece[:2], 16))
        out += piece[2:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


def escape(text: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


@dataclass(eq=False)
class SipURI:
    """A sip: or sips: URI. `user` and `password` are unescaped; `host` keeps IPv6
    brackets (``[2001:db8::1]``) and its case as written."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=Params)
    headers: list[tuple[str, str]] = field(default_factory=list)
    scheme: str = "sip"

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets, lower-cased (for sockets and comparison)."""
        h = self.host[1:-1] if self.host.startswith("[") else self.host
        return h.lower()

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    def aor(self) -> str:
        """The address-of-record key: scheme, user and host, no port or params."""
        user = escape(self.user, _USER_SAFE) + "@" if self.user is not None else ""
        return f"{self.scheme.lower()}:{user}{self.host.lower()}"

    def copy(self) -> SipURI:
        return SipURI(
            self.host, self.user, self.password, self.port, self.params.copy(),
            list(self.headers), self.scheme,
        )

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":" + escape(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(str(self.params))
        if self.headers:
            out.append("?")
            out.append("&".join(
                f"{escape(k, _HEADER_SAFE)}={escape(v, _HEADER_SAFE)}" for k, v in self.headers
            ))
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipURI):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), self.user, self.host_bare, self.port))

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"


@dataclass(eq=True)
class TelURI:
    """A tel: URI (RFC 3966): the number and its parameters."""

    number: str
    params: Params = field(default_factory=Params)

    @property
    def scheme(self) -> str:
        return "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"


@dataclass(eq=True, frozen=True)
class AbsoluteURI:
    """Any other scheme (http:, mailto:, urn:, nobodyknowsthisscheme:, ...), opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


URI = SipURI | TelURI | AbsoluteURI


def _parse_uri_params(text: str, what: str) -> Params:
    params = Params()
    if not text:
        return params
    for piece in text.split(";"):
        if not piece:
            raise ParseError(f"{what}: empty URI parameter in {show(text)}")
        name, eq, value = piece.partition("=")
        if not name:
            raise ParseError(f"{what}: URI parameter without a name in {show(text)}")
        unescape(name, what)
        if eq:
            if not value:
                raise ParseError(f"{what}: URI parameter {name!r} has '=' but no value")
            unescape(value, what)
        params._items.append((name, value if eq else None))
    return params


def _parse_host_port(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"{what}: IPv6 reference without ']' in {show(text)}")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError(f"{what}: expected ':port' after {host}, found {show(rest)}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    if not is_host(host):
        raise ParseError(f"{what}: invalid host {show(host)}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            raise ParseError(f"{what}: invalid port {show(port_text)} (expected 0-65535)")
        port = int(port_text)
    return host, port


def parse_uri(text: str, what: str = "URI") -> URI:
    """Parse a URI; raises ParseError (status 400) on bad syntax."""
    m = _SCHEME_RE.match(text)
    if m is None or m.end() >= len(text) + 1 or text[m.end() : m.end() + 1] != ":":
        raise ParseError(f"{what}: expected 'scheme:...', found {show(text)}")
    bad = next((c for c in text if c in _FORBIDDEN_IN_URI), None)
    if bad is not None:
        raise ParseError(f"{what}: character {bad!r} is not allowed in a URI: {show(text)}")
    scheme = m.group()
    rest = text[m.end() + 1 :]
    low = scheme.lower()
    if low in ("sip", "sips"):
        return _parse_sip(scheme, rest, what)
    if low == "tel":
        number, _, ptext = rest.partition(";")
        if not number:
            raise ParseError(f"{what}: tel URI without a number")
        return TelURI(number, _parse_uri_params(ptext, what))
    if not rest:
        raise ParseError(f"{what}: empty {scheme}: URI")
    return AbsoluteURI(scheme, rest)


def _parse_sip(scheme: str, rest: str, what: str) -> SipURI:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        u, colon, p = userinfo.partition(":")
        if not u:
            raise ParseError(f"{what}: empty user part before '@'")
        user = unescape(u, what)
        password = unescape(p, what) if colon else None
    head, qmark, htext = rest.partition("?")
    hostport, _, ptext = head.partition(";")
    if not hostport:
        raise ParseError(f"{what}: missing host in {scheme}: URI")
    host, port = _parse_host_port(hostport, what)
    params = _parse_uri_params(ptext, what)
    headers: list[tuple[str, str]] = []
    if qmark:
        for piece in htext.split("&"):
            name, eq, value = piece.partition("=")
            if not name or not eq:
                raise ParseError(f"{what}: bad URI header {show(piece)} (expected name=value)")
            headers.append((unescape(name, what), unescape(value, what)))
    return SipURI(host, user, password, port, params, headers, scheme)


_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def uri_equal(a: SipURI, b: SipURI) -> bool:
    """RFC 3261 §19.1.4 comparison of two SIP URIs."""
    if a.scheme.lower() != b.scheme.lower():
        return False
    if a.user != b.user or a.password != b.password:
        return False
    if a.host_bare != b.host_bare or a.port != b.port:
        return False
    for name in _SIGNIFICANT_PARAMS:
        va, vb = a.params.get(name), b.params.get(name)
        if (name in a.params) != (name in b.params):
            return False
        if va is not None and vb is not None and va.lower() != vb.lower():
            return False
    for name, va in a.params:
        if name.lower() in _SIGNIFICANT_PARAMS or name not in b.params:
            continue
        vb = b.params.get(name)
        if (va or "").lower() != (vb or "").lower():
            return False
    ha = sorted((k.lower(), v) for k, v in a.headers)
    hb = sorted((k.lower(), v) for k, v in b.headers)
    return ha == hb
