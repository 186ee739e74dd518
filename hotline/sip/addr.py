"""Where a SIP message came from or goes to, as the sans-IO core sees it.

Owns the `Peer` value shared by the core and the engine's transports; knows nothing of
sockets (a TCP connection is just an opaque id the engine hands in).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """A remote transport address. `conn` names an open stream connection (TCP);
    None for UDP, or for "reuse any connection to host:port, or open one"."""

    transport: str  # "udp" | "tcp"
    host: str  # IP literal (IPv6 without brackets) or host name
    port: int
    conn: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
