"""The RTP port pool: even RTP ports (RTCP on the odd one above) from the configured
range, handed out round-robin so a just-freed port is not reused at once (late packets
of the old call must not land in a new one).
"""

from __future__ import annotations

from collections import deque


class PortsExhausted(Exception):
    pass


class RtpPortPool:
    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min % 2)
        self._free: deque[int] = deque(range(first, port_max, 2))
        self._used: set[int] = set()
        self.capacity = len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise PortsExhausted(f"all {self.capacity} RTP port pairs are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._used)
