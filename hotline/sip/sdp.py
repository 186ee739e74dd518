"""SDP (RFC 4566) text model and the offer/answer decisions (RFC 3264) of a G.711 endpoint.

Owns:

* the text model: a `SessionDescription` with its session-level lines and one
  `MediaDescription` per ``m=`` line. Lines are kept in order and attribute values as
  written, so unknown attributes and unknown line types survive a parse/serialize round
  trip; typed views (``rtpmap``, ``fmtp``, ``ptime``, ``maxptime``, direction, ``rtcp``
  (RFC 3605), ``rtcp-mux`` (RFC 5761)) are computed from them on demand.
* the syntax checks that matter for a call, each failing with the line number, what was
  expected and what was found: ``v=0`` first; one ``o=`` and one ``s=``; well-formed
  ``c=`` (IPv4, IPv6 without brackets as RFC 5118 §4.6/§4.8 writes them, or a host name);
  ``m=`` syntax, ports and RTP payload numbers (0-127); ``a=rtpmap``, ``a=fmtp``,
  ``a=ptime``, ``a=maxptime``, ``a=rtcp`` and the direction attributes. Everything else
  is tolerated: LF-only line ends, a missing final CRLF, blank lines, trailing blanks,
  lines out of the RFC 4566 order (they are written back in that order).
* the offer/answer rules of one audio stream: which offered stream and codec to take
  (the offerer's order among the codecs we support, RFC 3264 §6.1), telephone-event
  (RFC 4733) at whatever dynamic payload type the offerer chose, ptime, direction and
  hold (``a=sendonly``/``recvonly``/``inactive`` and the old ``c=IN IP4 0.0.0.0``, RFC
  3264 §8.4), the remote RTCP port, rejecting every other ``m=`` line with port 0 while
  keeping the count and order of the offer's (RFC 3264 §6), and the origin's version
  rule (RFC 3264 §8: it moves by one exactly when the SDP we send changes).

Must not know: SIP messages, dialogs or transactions (callers hand SDP bytes in and take
bytes or models out), sockets, clocks, or how audio is encoded.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from hotline.sip.errors import SipError
from hotline.sip.grammar import show

# -- errors ----------------------------------------------------------------------------


class SdpError(SipError):
    """An SDP body that cannot be used: malformed (``status`` 400) or, for subclasses,
    well-formed but not acceptable (488). ``reason`` is the precise message."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class NoCommonCodec(SdpError):
    """No offered audio stream can be used (no codec in common, no audio at all, or a
    transport we do not speak); a UAS answers 488 Not Acceptable Here."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 488)


class _Expected(Exception):
    """Internal: a line does not have the shape `what` (turned into an SdpError)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Bad(Exception):
    """Internal: a line has the right shape but a wrong value (turned into an SdpError)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- small value types -----------------------------------------------------------------


class Direction(Enum):
    """A stream's direction, as seen by whoever wrote the SDP (RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)


DIRECTION_ATTRIBUTES = frozenset(d.value for d in Direction)


class Codec(Enum):
    """The audio codecs the engine can encode and decode (G.711, 8 kHz, mono)."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def static_payload_type(self) -> int:
        """The RFC 3551 static payload type (usable without an rtpmap)."""
        return 0 if self is Codec.PCMU else 8

    @property
    def clock_rate(self) -> int:
        return 8000  # Hz

    @property
    def rtpmap(self) -> str:
        """The rtpmap encoding as we write it: ``PCMU/8000``."""
        return f"{self.value}/{self.clock_rate}"

    @classmethod
    def matching(cls, rtpmap: RtpMap) -> Codec | None:
        """The codec an rtpmap (explicit or static) describes, if it is one of ours."""
        if rtpmap.clock_rate != 8000 or rtpmap.channels not in (None, 1):
            return None
        name = rtpmap.encoding.upper()
        for codec in cls:
            if codec.value == name:
                return codec
        return None


TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_RATE = 8000  # Hz: the only rate the engine's DTMF receiver/sender uses


@dataclass(frozen=True)
class Connection:
    """A connection address (``c=``, or the address part of ``a=rtcp``).

    ``ttl`` exists for IPv4 multicast only, ``count`` for multicast of either family;
    for address types other than IP4/IP6 the address is kept exactly as written."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    count: int | None = None

    def __str__(self) -> str:
        text = f"{self.nettype} {self.addrtype} {self.address}"
        if self.ttl is not None:
            text += f"/{self.ttl}"
        if self.count is not None:
            text += f"/{self.count}"
        return text

    @property
    def is_ip(self) -> bool:
        """``IN IP4`` or ``IN IP6``: an address we can send RTP to."""
        return self.nettype == "IN" and self.addrtype in ("IP4", "IP6")

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` (RFC 2543 hold, RFC 3264 §8.4) or ``::``: send nothing there."""
        try:
            return ipaddress.ip_address(self.address).is_unspecified
        except ValueError:
            return False

    @property
    def is_multicast(self) -> bool:
        try:
            return ipaddress.ip_address(self.address).is_multicast
        except ValueError:
            return False


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line. ``session_id`` is kept as written; ``session_version`` is the
    number that moves by one whenever its author's SDP changes (RFC 3264 §8)."""

    username: str
    session_id: str
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass(frozen=True)
class Attribute:
    """One ``a=`` line: ``a=name`` (``value`` None) or ``a=name:value`` (value as written)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``, or a static payload type."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        text = f"{self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"

    @property
    def is_telephone_event(self) -> bool:
        return (self.encoding.lower() == TELEPHONE_EVENT
                and self.clock_rate == TELEPHONE_EVENT_RATE)


@dataclass(frozen=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605)."""

    port: int
    connection: Connection | None = None

    def __str__(self) -> str:
        return str(self.port) if self.connection is None else f"{self.port} {self.connection}"


class SdpLine(NamedTuple):
    """A line the model keeps but does not interpret (``i=``, ``t=``, ``k=``, unknown
    types...): its one-letter type and its value as written."""

    type: str
    value: str


# RFC 3551 §6 static payload types (encoding, clock rate, channels).
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in [
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None),
        (5, "DVI4", 8000, None), (6, "DVI4", 16000, None), (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None), (9, "G722", 8000, None), (10, "L16", 44100, 2),
        (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None), (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None), (28, "nv", 90000, None), (31, "H261", 90000, None),
        (32, "MPV", 90000, None), (33, "MP2T", 90000, None), (34, "H263", 90000, None),
    ]
}

# -- syntax helpers ----------------------------------------------------------------------

_M_SHAPE = "'m=<media> <port> <proto> <fmt>...'"
_O_SHAPE = "'o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>'"
_C_SHAPE = "'c=<nettype> <addrtype> <connection-address>'"
_A_SHAPE = "'a=<attribute>[:<value>]'"
_RTPMAP_SHAPE = "'a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]'"
_FMTP_SHAPE = "'a=fmtp:<format> <format specific parameters>'"
_RTCP_SHAPE = "'a=rtcp:<port> [<nettype> <addrtype> <connection-address>]'"
_LINE_SHAPE = "'<type>=<value>'"

_DIGITS_RE = re.compile(r"[0-9]+")
_NUMBER_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
)
_RTPMAP_RE = re.compile(r"([0-9]+)[ \t]+([^/ \t]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")
_SESSION_ONLY = frozenset("vosueptrz")
# Written order (RFC 4566 §5): session v o s i u e p c b t r z k a; media m i c b k a.
# Unknown types go with k, just before the attributes.
_SESSION_BEFORE_C = {"i": 0, "u": 1, "e": 2, "p": 3}
_SESSION_AFTER_B = {"t": 0, "r": 0, "z": 1, "k": 2}
_MEDIA_BEFORE_C = {"i": 0}


def _digits(text: str, max_digits: int) -> bool:
    """ASCII digits only, at most `max_digits` of them (int() of longer strings is slow
    or refused)."""
    return len(text) <= max_digits and _DIGITS_RE.fullmatch(text) is not None


def _is_hostname(text: str) -> bool:
    """A fully qualified or plain host name whose last label is not numeric."""
    return len(text) <= 255 and _HOSTNAME_RE.fullmatch(text) is not None


def _check_address(addrtype: str, address: str) -> None:
    """Raise `_Bad` unless `address` suits `addrtype` (IP4/IP6; others are not checked)."""
    if addrtype == "IP4":
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            if not _is_hostname(address):
                raise _Bad(f"{address!r} is not an IPv4 address or host name") from None
    elif addrtype == "IP6":
        if address.startswith("["):
            raise _Bad(f"IPv6 address {address!r} in brackets (SDP writes IPv6 without them)")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            if not _is_hostname(address):
                raise _Bad(f"{address!r} is not an IPv6 address or host name") from None


def _parse_connection(fields: list[str], shape: str) -> Connection:
    """``<nettype> <addrtype> <connection-address>`` already split on blanks."""
    if len(fields) != 3:
        raise _Expected(shape)
    nettype, addrtype, text = fields
    ttl: int | None = None
    count: int | None = None
    address = text
    if nettype == "IN" and addrtype in ("IP4", "IP6"):
        address, *suffix = text.split("/")
        if not all(_digits(s, 10) for s in suffix):
            raise _Expected(shape)
        numbers = [int(s) for s in suffix]
        if addrtype == "IP4" and len(numbers) <= 2:
            ttl = numbers[0] if numbers else None
            count = numbers[1] if len(numbers) == 2 else None
            if ttl is not None and ttl > 255:
                raise _Bad(f"TTL {ttl} out of range 0-255")
        elif addrtype == "IP6" and len(numbers) <= 1:
            count = numbers[0] if numbers else None
        else:
            raise _Expected(shape)
        if count == 0:
            raise _Bad("address count 0")
        _check_address(addrtype, address)
    elif not address:
        raise _Expected(shape)
    return Connection(address, addrtype, nettype, ttl, count)


def _parse_port(text: str, shape: str) -> int:
    if _DIGITS_RE.fullmatch(text) is None:
        raise _Expected(shape)
    if len(text) > 5 or int(text) > 65535:
        shown = text if len(text) <= 12 else text[:12] + "…"
        raise _Bad(f"port {shown} out of range 0-65535")
    return int(text)


def _parse_payload_type(text: str) -> int:
    if not _digits(text, 3) or int(text) > 127:
        raise _Bad(f"RTP payload type {text!r} is not a number 0-127")
    return int(text)


def _parse_rtpmap(value: str) -> RtpMap:
    m = _RTPMAP_RE.fullmatch(value)
    if m is None:
        raise _Expected(_RTPMAP_SHAPE)
    pt = _parse_payload_type(m.group(1))
    rate = int(m.group(3))
    channels = int(m.group(4)) if m.group(4) is not None else None
    if rate == 0:
        raise _Bad("clock rate 0")
    if channels == 0:
        raise _Bad("channel count 0")
    return RtpMap(pt, m.group(2), rate, channels)


def _parse_fmtp(value: str, rtp: bool) -> tuple[str, str]:
    fmt, _, params = value.partition(" ")
    if not fmt:
        raise _Expected(_FMTP_SHAPE)
    if rtp:
        _parse_payload_type(fmt)
    return fmt, params.strip(" \t")


def _parse_milliseconds(name: str, value: str) -> float:
    if not _NUMBER_RE.fullmatch(value) or float(value) <= 0:
        raise _Expected(f"'a={name}:<milliseconds>' (a positive number)")
    return float(value)


def _parse_rtcp(value: str) -> RtcpAttribute:
    fields = value.split()
    if len(fields) not in (1, 4):
        raise _Expected(_RTCP_SHAPE)
    port = _parse_port(fields[0], _RTCP_SHAPE)
    connection = _parse_connection(fields[1:], _RTCP_SHAPE) if len(fields) == 4 else None
    return RtcpAttribute(port, connection)


def _is_rtp(proto: str) -> bool:
    """RTP profiles (RTP/AVP, RTP/SAVP, RTP/AVPF, UDP/TLS/RTP/SAVPF...): formats are
    payload type numbers."""
    return "RTP/" in proto.upper()


def _attribute_error(attr: Attribute, exc: _Expected | _Bad) -> SdpError:
    if isinstance(exc, _Expected):
        return SdpError(f"SDP attribute {show('a=' + str(attr), 80)}: expected {exc.what}")
    return SdpError(f"SDP attribute {show('a=' + str(attr), 80)}: {exc.reason}")


# -- the model ---------------------------------------------------------------------------


class _Attributes:
    """Typed views over a list of attributes (shared by session and media level)."""

    attributes: list[Attribute]

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (``""`` for a value-less ``a=name``)."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def attribute_values(self, name: str) -> list[str | None]:
        return [a.value for a in self.attributes if a.name == name]

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, if any."""
        for attr in self.attributes:
            if attr.name in DIRECTION_ATTRIBUTES:
                return Direction(attr.name)
        return None

    def _milliseconds(self, name: str) -> float | None:
        for attr in self.attributes:
            if attr.name == name:
                try:
                    return _parse_milliseconds(name, attr.value or "")
                except _Expected as exc:
                    raise _attribute_error(attr, exc) from None
        return None

    @property
    def ptime(self) -> float | None:
        """``a=ptime`` in milliseconds (the packet time the author wants to receive),
        written at this level."""
        return self._milliseconds("ptime")

    @property
    def maxptime(self) -> float | None:
        """``a=maxptime`` in milliseconds."""
        return self._milliseconds("maxptime")


@dataclass
class MediaDescription(_Attributes):
    """One ``m=`` section. ``formats`` are kept as written (RTP payload type numbers for
    RTP profiles); ``attributes`` in order, values as written."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[SdpLine] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        return _is_rtp(self.proto)

    @property
    def payload_types(self) -> list[int]:
        """The formats as payload type numbers, in the offered order, duplicates dropped
        (RTP profiles only; empty otherwise)."""
        if not self.is_rtp:
            return []
        out: list[int] = []
        for fmt in self.formats:
            if _digits(fmt, 3) and int(fmt) <= 127 and int(fmt) not in out:
                out.append(int(fmt))
        return out

    def rtpmaps(self) -> dict[int, RtpMap]:
        """The explicit ``a=rtpmap`` lines by payload type (the first one of each)."""
        out: dict[int, RtpMap] = {}
        for attr in self.attributes:
            if attr.name == "rtpmap":
                try:
                    rtpmap = _parse_rtpmap(attr.value or "")
                except (_Expected, _Bad) as exc:
                    raise _attribute_error(attr, exc) from None
                out.setdefault(rtpmap.payload_type, rtpmap)
        return out

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """What `payload_type` means here: its ``a=rtpmap``, else its RFC 3551 static
        assignment, else None."""
        return self.rtpmaps().get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)

    def fmtp(self, fmt: int | str) -> str | None:
        """The parameters of the first ``a=fmtp`` for `fmt`, if any."""
        key = str(fmt)
        for attr in self.attributes:
            if attr.name == "fmtp":
                try:
                    name, params = _parse_fmtp(attr.value or "", self.is_rtp)
                except (_Expected, _Bad) as exc:
                    raise _attribute_error(attr, exc) from None
                if name == key or (self.is_rtp and _digits(name, 3) and _digits(key, 3)
                                   and int(name) == int(key)):
                    return params
        return None

    @property
    def rtcp(self) -> RtcpAttribute | None:
        """``a=rtcp`` (RFC 3605): where the author receives RTCP, when not port + 1."""
        for attr in self.attributes:
            if attr.name == "rtcp":
                try:
                    return _parse_rtcp(attr.value or "")
                except (_Expected, _Bad) as exc:
                    raise _attribute_error(attr, exc) from None
        return None

    @property
    def rtcp_mux(self) -> bool:
        """``a=rtcp-mux`` (RFC 5761): RTP and RTCP on the same port."""
        return self.has_attribute("rtcp-mux")

    def lines(self) -> Iterator[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        yield " ".join(["m=" + self.media, port, self.proto, *self.formats])
        for line in self.other_lines:
            if line.type in _MEDIA_BEFORE_C:
                yield f"{line.type}={line.value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        for line in self.other_lines:
            if line.type not in _MEDIA_BEFORE_C:
                yield f"{line.type}={line.value}"
        for attr in self.attributes:
            yield f"a={attr}"


@dataclass
class SessionDescription(_Attributes):
    """A whole SDP body. ``connection`` and ``attributes`` are the session-level ones;
    ``other_lines`` keeps ``i= u= e= p= t= r= z= k=`` and unknown types in order."""

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    other_lines: list[SdpLine] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raise `SdpError` naming the line, what was expected and
        what was found."""
        return _Parser(data).run()

    def serialize(self) -> bytes:
        """The body with CRLF line ends, lines in RFC 4566 order."""
        return self.text().encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.serialize()

    def text(self) -> str:
        return "".join(line + "\r\n" for line in self.lines())

    def __str__(self) -> str:
        return self.text()

    def lines(self) -> Iterator[str]:
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.name}"
        before = [ln for ln in self.other_lines if ln.type in _SESSION_BEFORE_C]
        for line in sorted(before, key=lambda ln: _SESSION_BEFORE_C[ln.type]):
            yield f"{line.type}={line.value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        after = [ln for ln in self.other_lines if ln.type not in _SESSION_BEFORE_C]
        for line in sorted(after, key=lambda ln: _SESSION_AFTER_B.get(ln.type, 3)):
            yield f"{line.type}={line.value}"
        for attr in self.attributes:
            yield f"a={attr}"
        for media in self.media:
            yield from media.lines()

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media-level ``c=``, else the session-level one."""
        return media.connection or self.connection

    def direction_of(self, media: MediaDescription) -> Direction:
        """The media-level direction, else the session-level one, else sendrecv."""
        return media.direction or self.direction or Direction.SENDRECV

    def same_except_version(self, other: SessionDescription) -> bool:
        """Equal in everything but the origin's session version (RFC 3264 §8)."""
        mine = dataclasses.replace(self.origin, session_version=0)
        theirs = dataclasses.replace(other.origin, session_version=0)
        return (mine == theirs
                and dataclasses.replace(self, origin=mine)
                == dataclasses.replace(other, origin=theirs))


# -- the parser ----------------------------------------------------------------------------


class _Parser:
    """One pass over the lines; session-level state, then one section per ``m=``."""

    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, str):
            try:
                raw = data.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise SdpError("SDP text has characters that cannot be encoded as UTF-8") \
                    from None
        else:
            raw = bytes(data)
        self.text = raw.decode("utf-8", "surrogateescape")
        self.origin: Origin | None = None
        self.name: str | None = None
        self.session = SessionDescription(Origin("-", "0", 0))
        self.media_lines: list[int] = []  # line number of each m=
        self.line_no = 0
        self.line = ""
        # per section (session, then each media): direction seen, rtpmap payload types
        self.direction_line = ""
        self.rtpmap_pts: set[int] = set()

    # errors
    def expected(self, what: str) -> SdpError:
        return SdpError(f"SDP line {self.line_no}: expected {what}, found {show(self.line, 80)}")

    def bad(self, reason: str) -> SdpError:
        return SdpError(f"SDP line {self.line_no}: {reason}: {show(self.line, 80)}")

    def section(self) -> str:
        if not self.session.media:
            return "at session level"
        return f"in media section {len(self.session.media)}"

    def numbered_lines(self) -> Iterator[tuple[int, str]]:
        for number, line in enumerate(self.text.split("\n"), 1):
            if line.endswith("\r"):
                line = line[:-1]
            line = line.rstrip(" \t")
            if line:
                yield number, line

    def run(self) -> SessionDescription:
        first = True
        for number, line in self.numbered_lines():
            self.line_no, self.line = number, line
            if "\r" in line or "\x00" in line:
                raise SdpError(f"SDP line {number}: CR or NUL inside a line: {show(line, 80)}")
            if first:
                if line != "v=0":
                    raise self.expected("'v=0'")
                first = False
                continue
            if len(line) < 2 or line[1] != "=" or not (line[0].isascii() and line[0].isalpha()):
                raise self.expected(_LINE_SHAPE)
            try:
                self.dispatch(line[0], line[2:])
            except _Expected as exc:
                raise self.expected(exc.what) from None
            except _Bad as exc:
                raise self.bad(exc.reason) from None
        if first:
            raise SdpError("SDP is empty")
        if self.origin is None:
            raise SdpError("SDP has no 'o=' line")
        if self.name is None:
            raise SdpError("SDP has no 's=' line")
        self.session.origin = self.origin
        self.session.name = self.name
        sections = zip(self.session.media, self.media_lines, strict=True)
        for index, (media, number) in enumerate(sections, 1):
            if media.port != 0 and self.session.connection_for(media) is None:
                raise SdpError(f"SDP line {number}: media section {index} has no 'c=' line "
                               "and the session has none")
        return self.session

    def dispatch(self, kind: str, value: str) -> None:
        in_media = bool(self.session.media)
        if kind == "m":
            self.start_media(value)
        elif in_media and kind in _SESSION_ONLY:
            raise _Bad(f"'{kind}=' line inside media section {len(self.session.media)} "
                       "(it belongs to the session level)")
        elif kind == "v":
            raise _Bad("second 'v=' line")
        elif kind == "o":
            if self.origin is not None:
                raise _Bad("second 'o=' line")
            self.origin = self.parse_origin(value)
        elif kind == "s":
            if self.name is not None:
                raise _Bad("second 's=' line")
            self.name = value
        elif kind == "c":
            target = self.session.media[-1] if in_media else self.session
            if target.connection is not None:
                raise _Bad(f"second 'c=' line {self.section()}")
            target.connection = _parse_connection(value.split(), _C_SHAPE)
        elif kind == "b":
            (self.session.media[-1] if in_media else self.session).bandwidths.append(value)
        elif kind == "a":
            self.attribute(value)
        else:
            (self.session.media[-1] if in_media else self.session).other_lines.append(
                SdpLine(kind, value))

    def parse_origin(self, value: str) -> Origin:
        fields = value.split()
        if len(fields) != 6 or not _digits(fields[2], 40):
            raise _Expected(_O_SHAPE)
        username, session_id, version, nettype, addrtype, address = fields
        return Origin(username, session_id, int(version), nettype, addrtype, address)

    def start_media(self, value: str) -> None:
        fields = value.split()
        if len(fields) < 3:
            raise _Expected(_M_SHAPE)
        media, port_text, proto, *formats = fields
        port_text, slash, count_text = port_text.partition("/")
        port = _parse_port(port_text, _M_SHAPE)
        port_count: int | None = None
        if slash:
            if not _digits(count_text, 5) or int(count_text) == 0:
                raise _Expected(_M_SHAPE)
            port_count = int(count_text)
        if not formats and port != 0:
            raise _Expected(_M_SHAPE)
        if _is_rtp(proto):
            for fmt in formats:
                _parse_payload_type(fmt)
        self.session.media.append(MediaDescription(media, port, proto, formats, port_count))
        self.media_lines.append(self.line_no)
        self.direction_line = ""
        self.rtpmap_pts = set()

    def attribute(self, value: str) -> None:
        name, colon, rest = value.partition(":")
        if not name:
            raise _Expected(_A_SHAPE)
        attr = Attribute(name, rest if colon else None)
        in_media = bool(self.session.media)
        if name in ("ptime", "maxptime"):
            _parse_milliseconds(name, rest)
        elif name in DIRECTION_ATTRIBUTES:
            if colon:
                raise _Expected(f"'a={name}' without a value")
            if self.direction_line:
                raise _Bad(f"second direction attribute {self.section()} "
                           f"(already {show(self.direction_line, 80)})")
            self.direction_line = self.line
        elif in_media:
            media = self.session.media[-1]
            rtp = media.is_rtp
            if name == "rtpmap" and rtp:
                rtpmap = _parse_rtpmap(rest)
                if rtpmap.payload_type in self.rtpmap_pts:
                    raise _Bad(f"second 'a=rtpmap' for payload type {rtpmap.payload_type} "
                               f"{self.section()}")
                self.rtpmap_pts.add(rtpmap.payload_type)
            elif name == "fmtp" and rtp:
                _parse_fmtp(rest, rtp)
            elif name == "rtcp":
                _parse_rtcp(rest)
        (self.session.media[-1] if in_media else self.session).attributes.append(attr)


# -- offer/answer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaCapabilities:
    """What the engine can do on one call leg: its RTP address and port (RTCP on port +
    1 unless muxed), the codecs in the order it prefers them for its own offers, whether
    it handles telephone-events (and at which payload type it offers them, with which
    events), the packet times it can send (the first is the default) and whether it
    accepts RTCP multiplexed on the RTP port."""

    address: str
    port: int
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    telephone_event: bool = True
    telephone_event_payload_type: int = 101
    telephone_events: str = "0-15"  # the events we can receive: DTMF 0-9 * # A-D
    ptimes: tuple[int, ...] = (20, 30)  # ms
    rtcp_mux: bool = False

    def __post_init__(self) -> None:
        if not self.codecs or len(set(self.codecs)) != len(self.codecs):
            raise ValueError(f"codecs must be a non-empty list without repeats: {self.codecs}")
        if not self.ptimes or any(p <= 0 for p in self.ptimes):
            raise ValueError(f"ptimes must be positive milliseconds: {self.ptimes}")
        if not 96 <= self.telephone_event_payload_type <= 127:
            raise ValueError("telephone_event_payload_type must be a dynamic payload type "
                             f"96-127: {self.telephone_event_payload_type}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port out of range 1-65535: {self.port}")
        try:
            _check_address(self.addrtype, self.address)
        except _Bad as exc:
            raise ValueError(f"address: {exc.reason}") from None

    @property
    def addrtype(self) -> str:
        return "IP6" if ":" in self.address else "IP4"

    @property
    def connection(self) -> Connection:
        return Connection(self.address, self.addrtype)


class MediaChange(Enum):
    """What differs between two negotiations of the same call (see
    `NegotiatedMedia.changes`)."""

    ADDRESS = "address"  # remote RTP/RTCP address or port, mux, or the m-line used
    CODEC = "codec"  # codec, payload types, telephone-event, ptime
    DIRECTION = "direction"  # who sends and who receives


@dataclass(frozen=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange for the audio stream, from OUR side.

    ``payload_type`` and ``telephone_event`` are what we send with (the remote's
    numbers); ``receive_codecs`` and ``receive_telephone_event`` are the payload types
    the remote may send to us (our numbers: equal to the remote's when we answered).
    ``remote_address`` may be unspecified (``0.0.0.0``, old-style hold): ``sends`` is
    then False. ``remote_rtcp_port`` 0 means there is nowhere to send RTCP (``a=rtcp:0``
    or an RTP port of 65535). ``stream_index`` is the audio m-line's position
    (0-based)."""

    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    codec: Codec
    payload_type: int
    telephone_event: int | None
    ptime: int  # ms, the packet time we send at
    direction: Direction
    receive_codecs: tuple[tuple[int, Codec], ...]
    receive_telephone_event: int | None
    rtcp_mux: bool = False
    stream_index: int = 0

    @property
    def sends(self) -> bool:
        """Do we send RTP?"""
        return self.direction.sends

    @property
    def receives(self) -> bool:
        """Do we expect RTP?"""
        return self.direction.receives

    def changes(self, previous: NegotiatedMedia | None) -> frozenset[MediaChange]:
        """What differs from `previous` (everything, when there was none): a hold or
        resume is ``{DIRECTION}`` alone; a moved peer has ``ADDRESS``."""
        if previous is None:
            return frozenset(MediaChange)
        out: set[MediaChange] = set()
        if (self.remote_address, self.remote_port, self.remote_rtcp_address,
                self.remote_rtcp_port, self.rtcp_mux, self.stream_index) != (
                previous.remote_address, previous.remote_port, previous.remote_rtcp_address,
                previous.remote_rtcp_port, previous.rtcp_mux, previous.stream_index):
            out.add(MediaChange.ADDRESS)
        if (self.codec, self.payload_type, self.telephone_event, self.ptime,
                self.receive_codecs, self.receive_telephone_event) != (
                previous.codec, previous.payload_type, previous.telephone_event,
                previous.ptime, previous.receive_codecs, previous.receive_telephone_event):
            out.add(MediaChange.CODEC)
        if self.direction is not previous.direction:
            out.add(MediaChange.DIRECTION)
        return frozenset(out)


@dataclass(frozen=True)
class Answer:
    """Our SDP answer and what it means for the media plane."""

    sdp: SessionDescription
    media: NegotiatedMedia


USERNAME = "hotline"  # o= username and s= of the SDP we write


def _describe_formats(media: MediaDescription) -> str:
    parts: list[str] = []
    for pt in media.payload_types:
        rtpmap = media.rtpmap(pt)
        parts.append(f"{pt} {rtpmap}" if rtpmap is not None else f"{pt} (no rtpmap)")
    return ", ".join(parts) or "no formats"


def _describe_caps(caps: MediaCapabilities) -> str:
    return ", ".join(codec.rtpmap for codec in caps.codecs)


def _choose_codec(media: MediaDescription,
                  accept: Iterable[Codec]) -> tuple[int, Codec] | None:
    """The first format (in the author's order) that is one of `accept`."""
    wanted = set(accept)
    for pt in media.payload_types:
        rtpmap = media.rtpmap(pt)
        codec = Codec.matching(rtpmap) if rtpmap is not None else None
        if codec is not None and codec in wanted:
            return pt, codec
    return None


def _telephone_event_pt(media: MediaDescription) -> int | None:
    """The first telephone-event/8000 format (RFC 4733 needs an rtpmap: no static one)."""
    rtpmaps = media.rtpmaps()
    for pt in media.payload_types:
        rtpmap = rtpmaps.get(pt)
        if rtpmap is not None and rtpmap.is_telephone_event:
            return pt
    return None


def _choose_ptime(sdp: SessionDescription, media: MediaDescription,
                  caps: MediaCapabilities) -> int:
    """The remote's a=ptime (media level, else session level, where some phones put it)
    when we can send at it; else our default, within the remote's a=maxptime."""
    wanted = media.ptime if media.ptime is not None else sdp.ptime
    ceiling = media.maxptime if media.maxptime is not None else sdp.maxptime
    if wanted is not None and wanted in caps.ptimes and (ceiling is None or wanted <= ceiling):
        return int(wanted)
    fitting = [p for p in caps.ptimes if ceiling is None or p <= ceiling]
    return fitting[0] if fitting else min(caps.ptimes)


def _usable_connection(sdp: SessionDescription, media: MediaDescription) -> Connection | str:
    conn = sdp.connection_for(media)
    if conn is None:
        return "no 'c=' line at media or session level"
    if not conn.is_ip:
        return f"connection 'c={conn}' is not IN IP4 or IN IP6"
    if conn.is_multicast:
        return f"multicast connection 'c={conn}' is not supported"
    return conn


def _rtcp_target(media: MediaDescription, conn: Connection,
                 mux: bool) -> tuple[str, int]:
    """Where the remote wants RTCP: the RTP port when muxed, its a=rtcp, else RTP + 1
    (RFC 3550 §11; port 0 when there is no such port)."""
    if mux:
        return conn.address, media.port
    rtcp = media.rtcp
    if rtcp is None:
        return conn.address, media.port + 1 if media.port < 65535 else 0
    if rtcp.connection is not None and rtcp.connection.is_ip:
        return rtcp.connection.address, rtcp.port
    return conn.address, rtcp.port


@dataclass(frozen=True)
class _Choice:
    index: int
    media: MediaDescription
    connection: Connection
    payload_type: int
    codec: Codec
    telephone_event: int | None


def _evaluate(sdp: SessionDescription, index: int, media: MediaDescription,
              caps: MediaCapabilities) -> _Choice | str:
    """Can this offered audio stream be used? A choice, or the reason why not."""
    if media.port == 0:
        return "rejected by the offerer (port 0)"
    if media.proto != "RTP/AVP":
        return f"transport {media.proto!r} is not RTP/AVP"
    conn = _usable_connection(sdp, media)
    if isinstance(conn, str):
        return conn
    chosen = _choose_codec(media, caps.codecs)
    if chosen is None:
        return (f"no common codec (offered {_describe_formats(media)}; "
                f"we support {_describe_caps(caps)})")
    te = _telephone_event_pt(media) if caps.telephone_event else None
    return _Choice(index, media, conn, chosen[0], chosen[1], te)


def _session(caps: MediaCapabilities, media: list[MediaDescription], *,
             session_id: int | None, session_version: int | None,
             previous: SessionDescription | None,
             timing: list[SdpLine] | None = None) -> SessionDescription:
    """Wrap `media` in our session level, with the origin RFC 3264 §8 asks for: the
    previous one unchanged when nothing else changed, its version + 1 otherwise.
    `timing` is the offer's t= lines when answering (RFC 3264 §6: the answer's t= equals
    the offer's); ``t=0 0`` otherwise."""
    if previous is not None:
        if session_id is not None or session_version is not None:
            raise TypeError("pass either session_id and session_version, or previous")
        origin = previous.origin
    elif session_id is None or session_version is None:
        raise TypeError("pass either session_id and session_version, or previous")
    else:
        origin = Origin(USERNAME, str(session_id), session_version, "IN", caps.addrtype,
                        caps.address)
    sdp = SessionDescription(
        origin=origin,
        name=USERNAME,
        connection=caps.connection,
        other_lines=timing or [SdpLine("t", "0 0")],
        media=media,
    )
    if previous is not None and sdp != previous:
        sdp.origin = dataclasses.replace(origin, session_version=origin.session_version + 1)
    return sdp


def _audio_section(caps: MediaCapabilities, formats: list[tuple[int, str]],
                   telephone_event: int | None, ptime: int, direction: Direction,
                   rtcp_mux: bool) -> MediaDescription:
    attributes = [Attribute("rtpmap", f"{pt} {name}") for pt, name in formats]
    pts = [pt for pt, _ in formats]
    if telephone_event is not None:
        pts.append(telephone_event)
        attributes.append(Attribute(
            "rtpmap", f"{telephone_event} {TELEPHONE_EVENT}/{TELEPHONE_EVENT_RATE}"))
        attributes.append(Attribute("fmtp", f"{telephone_event} {caps.telephone_events}"))
    attributes.append(Attribute("ptime", str(ptime)))
    if rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))
    attributes.append(Attribute(direction.value))
    return MediaDescription("audio", caps.port, "RTP/AVP", [str(pt) for pt in pts],
                            attributes=attributes)


def _rejected(media: MediaDescription) -> MediaDescription:
    """An m-line answered (or re-offered) with port 0: same media, proto and formats."""
    return MediaDescription(media.media, 0, media.proto, list(media.formats))


def negotiate_answer(
    offer: SessionDescription,
    caps: MediaCapabilities,
    *,
    session_id: int | None = None,
    session_version: int | None = None,
    previous: SessionDescription | None = None,
    direction: Direction = Direction.SENDRECV,
) -> Answer:
    """Answer `offer` (RFC 3264 §6): take the first offered audio stream that has a codec
    in common, with the offerer's preference among those we support; reject every other
    m-line with port 0, keeping the offer's count and order.

    Pass ``session_id`` and ``session_version`` for the first SDP of a session, and
    ``previous`` (the last SDP we sent in it) afterwards: its origin is kept, with the
    version moved by one only when the answer differs from it (RFC 3264 §8).
    ``direction`` is what we want (``SENDONLY`` while we hold the call, say); the answer
    is the intersection with what the offer allows. Raise `NoCommonCodec` when no audio
    stream is usable."""
    if not any(m.media.lower() == "audio" for m in offer.media):
        raise NoCommonCodec("SDP offer has no audio stream")
    choice: _Choice | None = None
    reasons: list[str] = []
    for index, media in enumerate(offer.media):
        if media.media.lower() != "audio":
            continue
        outcome = _evaluate(offer, index, media, caps)
        if isinstance(outcome, _Choice):
            choice = outcome
            break
        reasons.append(f"stream {index + 1}: {outcome}")
    if choice is None:
        raise NoCommonCodec("no acceptable audio stream in the SDP offer: " + "; ".join(reasons))

    media = choice.media
    offered = offer.direction_of(media)
    hold = choice.connection.is_unspecified
    ours = Direction.from_flags(
        sends=offered.receives and not hold and direction.sends,
        receives=offered.sends and direction.receives,
    )
    ptime = _choose_ptime(offer, media, caps)
    mux = caps.rtcp_mux and media.rtcp_mux
    rtcp_address, rtcp_port = _rtcp_target(media, choice.connection, mux)
    section = _audio_section(caps, [(choice.payload_type, choice.codec.rtpmap)],
                             choice.telephone_event, ptime, ours, mux)
    sections = [section if i == choice.index else _rejected(m)
                for i, m in enumerate(offer.media)]
    sdp = _session(caps, sections, session_id=session_id, session_version=session_version,
                   previous=previous,
                   timing=[line for line in offer.other_lines if line.type == "t"])
    negotiated = NegotiatedMedia(
        remote_address=choice.connection.address,
        remote_port=media.port,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        codec=choice.codec,
        payload_type=choice.payload_type,
        telephone_event=choice.telephone_event,
        ptime=ptime,
        direction=ours,
        receive_codecs=((choice.payload_type, choice.codec),),
        receive_telephone_event=choice.telephone_event,
        rtcp_mux=mux,
        stream_index=choice.index,
    )
    return Answer(sdp, negotiated)


def build_offer(
    caps: MediaCapabilities,
    *,
    session_id: int | None = None,
    session_version: int | None = None,
    previous: SessionDescription | None = None,
    direction: Direction = Direction.SENDRECV,
) -> SessionDescription:
    """Our offer: one audio stream with every codec of `caps` in preference order,
    telephone-event, our default ptime and `direction`.

    Session id/version or ``previous`` as for `negotiate_answer`. With ``previous``, the
    offer keeps its m-lines (RFC 3264 §8: none may be removed): the audio goes where the
    previous active audio stream was, every other m-line is offered with port 0."""
    formats = [(codec.static_payload_type, codec.rtpmap) for codec in caps.codecs]
    te = caps.telephone_event_payload_type if caps.telephone_event else None
    audio = _audio_section(caps, formats, te, caps.ptimes[0], direction, caps.rtcp_mux)
    sections: list[MediaDescription] = [audio]
    if previous is not None and previous.media:
        old = previous.media
        # the active audio stream's place; else a disabled slot, audio first (RFC 3264
        # §8.3 lets a port-0 m-line be reused); else a new m-line at the end
        candidates = [i for i, m in enumerate(old) if m.media == "audio" and m.port != 0]
        candidates += [i for i, m in enumerate(old) if m.media == "audio" and m.port == 0]
        candidates += [i for i, m in enumerate(old) if m.port == 0]
        slot = candidates[0] if candidates else len(old)
        sections = [audio if i == slot else _rejected(m) for i, m in enumerate(old)]
        if slot == len(old):
            sections.append(audio)
    return _session(caps, sections, session_id=session_id, session_version=session_version,
                    previous=previous)


def _our_audio_index(offer: SessionDescription) -> int:
    for index, media in enumerate(offer.media):
        if media.media == "audio" and media.port != 0:
            return index
    raise ValueError("our offer has no active audio stream")


def accept_answer(offer: SessionDescription, answer: SessionDescription,
                  caps: MediaCapabilities) -> NegotiatedMedia:
    """Check that `answer` answers our `offer` (same m-lines, a codec we offered) and say
    what it means. Raise `SdpError` for an answer that does not fit the offer, and
    `NoCommonCodec` when it rejects our audio or picks none of our codecs."""
    if len(answer.media) != len(offer.media):
        raise SdpError(f"SDP answer has {len(answer.media)} media lines, "
                       f"the offer had {len(offer.media)}")
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True), 1):
        if ours.media != theirs.media:
            raise SdpError(f"SDP answer media line {index} is {theirs.media!r}, "
                           f"the offer's is {ours.media!r}")
    index = _our_audio_index(offer)
    ours, theirs = offer.media[index], answer.media[index]
    if theirs.port == 0:
        raise NoCommonCodec(f"SDP answer rejected the audio stream (media line {index + 1} "
                            "has port 0)")
    if theirs.proto != ours.proto:
        raise SdpError(f"SDP answer's audio transport {theirs.proto!r} differs from the "
                       f"offered {ours.proto!r}")
    conn = _usable_connection(answer, theirs)
    if isinstance(conn, str):
        raise SdpError(f"SDP answer's audio stream: {conn}")

    offered: list[tuple[int, Codec]] = []
    for pt in ours.payload_types:
        rtpmap = ours.rtpmap(pt)
        codec = Codec.matching(rtpmap) if rtpmap is not None else None
        if codec is not None and codec in caps.codecs and codec not in (c for _, c in offered):
            offered.append((pt, codec))
    chosen = _choose_codec(theirs, (codec for _, codec in offered))
    if chosen is None:
        raise NoCommonCodec(
            "SDP answer chose none of the offered codecs: offered "
            f"{', '.join(codec.rtpmap for _, codec in offered)}; answered "
            f"{_describe_formats(theirs)}")
    receive = tuple((pt, codec) for pt, codec in offered
                    if _choose_codec(theirs, [codec]) is not None)

    our_te = _telephone_event_pt(ours) if caps.telephone_event else None
    their_te = _telephone_event_pt(theirs) if our_te is not None else None

    hold = conn.is_unspecified
    wanted = offer.direction_of(ours)
    granted = answer.direction_of(theirs)
    direction = Direction.from_flags(
        sends=wanted.sends and granted.receives and not hold,
        receives=wanted.receives and granted.sends,
    )
    mux = ours.rtcp_mux and theirs.rtcp_mux
    rtcp_address, rtcp_port = _rtcp_target(theirs, conn, mux)
    return NegotiatedMedia(
        remote_address=conn.address,
        remote_port=theirs.port,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        codec=chosen[1],
        payload_type=chosen[0],
        telephone_event=their_te,
        ptime=_choose_ptime(answer, theirs, caps),
        direction=direction,
        receive_codecs=receive,
        receive_telephone_event=our_te if their_te is not None else None,
        rtcp_mux=mux,
        stream_index=index,
    )


__all__ = [
    "DIRECTION_ATTRIBUTES",
    "STATIC_PAYLOAD_TYPES",
    "Answer",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaCapabilities",
    "MediaChange",
    "MediaDescription",
    "NegotiatedMedia",
    "NoCommonCodec",
    "Origin",
    "RtcpAttribute",
    "RtpMap",
    "SdpError",
    "SdpLine",
    "SessionDescription",
    "accept_answer",
    "build_offer",
    "negotiate_answer",
]
