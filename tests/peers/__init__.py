"""Real third-party SIP softphones as test peers: baresip (`tests.peers.baresip`), pyVoIP
(`tests.peers.pyvoip_agent`), and the tone generator and meters that judge what they heard
(`tests.peers.tones`).

This package owns what the harnesses share: the error they raise, a loopback port finder,
bounded polling, and the description of an incoming call with its SIP headers. It knows
nothing of the engine under test: harnesses talk SIP and RTP to an address and port.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


class PeerError(RuntimeError):
    """A test peer failed: not installed, did not start, refused a command, or an awaited
    event did not come in time. The message says which, with the peer's log tail."""


def free_port(transports: tuple[str, ...] = ("udp", "tcp")) -> int:
    """A port on 127.0.0.1 free for every transport in `transports` at the time of asking."""
    for _ in range(200):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        probe.close()
        if all(_bindable(port, t) for t in transports):
            return port
    raise PeerError(f"no port on {LOOPBACK} free for {'+'.join(transports)} after 200 tries")


def _bindable(port: int, transport: str) -> bool:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((LOOPBACK, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `cond` until it holds or `timeout` seconds pass; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return cond()


# RFC 3261 §7.3.3 compact header forms, and RFC 3515/3892's for REFER.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
}


@dataclass(frozen=True)
class IncomingCall:
    """A call offered to a test peer: its Call-ID, who calls, and the INVITE's headers in
    the order received (names as sent; look them up with `header`, case-insensitively)."""

    call_id: str
    peer_uri: str
    peer_name: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case, compact form understood), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` in the order received."""
        want = canonical_header(name)
        return [v for n, v in self.headers if canonical_header(n) == want]

    def headers_with_prefix(self, prefix: str) -> dict[str, str]:
        """Headers whose name starts with `prefix` (any case), e.g. "X-Hotline-": name as
        sent → first value."""
        out: dict[str, str] = {}
        for n, v in self.headers:
            if n.lower().startswith(prefix.lower()):
                out.setdefault(n, v)
        return out


def canonical_header(name: str) -> str:
    """A header name lower-cased with its compact form expanded ("i" → "call-id")."""
    low = name.strip().lower()
    return _COMPACT.get(low, low)


def parse_headers(message: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The start line and the (name, value) headers of a SIP message's text, with folded
    continuation lines joined; the body is ignored. Raises ValueError when there is no
    start line or a header line has no colon."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    start = lines[0].strip()
    if not start:
        raise ValueError("SIP message has no start line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"SIP header line without a colon: {line!r}")
        headers.append((name.strip(), value.strip()))
    return start, tuple(headers)
