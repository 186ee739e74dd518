"""Token buckets with a fake clock."""

from __future__ import annotations

import pytest

from hotline.sip.ratelimit import RateLimiter


def test_burst_then_refill() -> None:
    rl = RateLimiter(rate=2.0, burst=3)
    assert [rl.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.retry_after("a", 0.0) == pytest.approx(0.5)
    assert rl.allow("a", 0.5) and not rl.allow("a", 0.5)
    assert rl.allow("b", 0.5)  # keys are independent


def test_memory_is_bounded() -> None:
    rl = RateLimiter(rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        rl.allow(f"k{i}", 0.0)
    assert len(rl) == 100


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate=0, burst=1)
