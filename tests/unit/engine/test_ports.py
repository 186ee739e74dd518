"""RTP port pool: even ports, round-robin reuse, exhaustion."""

from __future__ import annotations

import pytest

from hotline.engine.ports import PortsExhausted, RtpPortPool


def test_even_ports_round_robin_and_exhaustion() -> None:
    pool = RtpPortPool(20001, 20008)
    got = [pool.allocate() for _ in range(pool.capacity)]
    assert got == [20002, 20004, 20006] and pool.in_use == 3
    with pytest.raises(PortsExhausted, match="all 3 RTP port pairs are in use"):
        pool.allocate()
    pool.release(20002)
    pool.release(20002)  # releasing twice is harmless
    assert pool.allocate() == 20002 and pool.in_use == 3


def test_freed_port_goes_to_the_back() -> None:
    pool = RtpPortPool(30000, 30010)
    a = pool.allocate()
    pool.release(a)
    assert pool.allocate() != a
