"""Token-bucket rate limiter: refill, cost, retry-after, bounded memory, odd clocks."""

from __future__ import annotations

import math

import pytest

from hotline.sip.ratelimit import RateLimiter


def test_burst_is_available_at_once_then_the_rate_applies() -> None:
    rl = RateLimiter(rate=5.0, burst=20)
    assert sum(rl.allow("203.0.113.9", 0.0) for _ in range(25)) == 20
    assert not rl.allow("203.0.113.9", 0.1)  # 0.5 token
    assert rl.allow("203.0.113.9", 0.2)  # 1 token
    assert not rl.allow("203.0.113.9", 0.2)
    # one second later: five more
    assert sum(rl.allow("203.0.113.9", 1.2) for _ in range(10)) == 5


def test_refill_never_exceeds_the_burst() -> None:
    rl = RateLimiter(rate=1.0, burst=3)
    rl.allow("k", 0.0, cost=3)
    assert rl.tokens("k", 1000.0) == 3.0
    assert sum(rl.allow("k", 1000.0) for _ in range(5)) == 3


def test_retry_after_is_exactly_enough() -> None:
    rl = RateLimiter(rate=3.0, burst=2)
    assert rl.retry_after("k", 0.0) == 0.0  # unknown key: full bucket
    assert rl.allow("k", 0.0) and rl.allow("k", 0.0)
    wait = rl.retry_after("k", 0.0)
    assert wait == pytest.approx(1 / 3)
    assert not rl.allow("k", 0.0 + wait * 0.99)
    assert rl.allow("k", wait)
    assert rl.retry_after("k", wait, cost=2) == pytest.approx(2 / 3)


def test_costs() -> None:
    rl = RateLimiter(rate=1.0, burst=10)
    assert rl.allow("k", 0.0, cost=7.5)
    assert not rl.allow("k", 0.0, cost=3)  # refused: takes nothing
    assert rl.tokens("k", 0.0) == pytest.approx(2.5)
    assert rl.allow("k", 0.0, cost=2.5)
    assert rl.allow("k", 0.0, cost=0)
    assert not rl.allow("k", 100.0, cost=11)  # more than the bucket ever holds
    assert rl.retry_after("k", 100.0, cost=11) == math.inf
    with pytest.raises(ValueError, match="cost must not be negative, got -1"):
        rl.allow("k", 0.0, cost=-1)


def test_keys_are_independent() -> None:
    rl = RateLimiter(rate=1.0, burst=1)
    assert rl.allow("a", 0.0) and not rl.allow("a", 0.0)
    assert rl.allow("b", 0.0)
    assert rl.allow(("192.0.2.1", "alice"), 0.0)  # any hashable key


def test_memory_is_bounded_least_recently_used_first() -> None:
    rl = RateLimiter(rate=1.0, burst=1, max_keys=3)
    for k in ("a", "b", "c"):
        assert rl.allow(k, 0.0)
    assert rl.allow("a", 5.0)  # "a" is now the most recently used
    assert rl.allow("d", 5.0)  # evicts "b"
    assert len(rl) == 3
    assert "b" not in rl and "a" in rl and "c" in rl and "d" in rl
    rl.forget("a")
    assert "a" not in rl and len(rl) == 2


def test_prune_drops_full_buckets_only() -> None:
    rl = RateLimiter(rate=1.0, burst=2)
    rl.allow("idle", 0.0)
    rl.allow("busy", 9.5, cost=2)
    assert rl.prune(10.0) == 1
    assert "idle" not in rl and "busy" in rl
    assert rl.tokens("idle", 10.0) == 2.0  # a dropped bucket is a full one


def test_time_running_backwards_refills_nothing() -> None:
    rl = RateLimiter(rate=10.0, burst=1)
    assert rl.allow("k", 100.0)
    assert not rl.allow("k", 50.0)
    assert not rl.allow("k", 100.05)  # the clock went back; no credit for that
    assert rl.allow("k", 100.1)


def test_failed_auth_throttling_pattern() -> None:
    failures = RateLimiter(rate=1 / 60, burst=5)  # five failures, then one a minute
    source = "198.51.100.66"
    for _ in range(5):
        assert failures.retry_after(source, 0.0) == 0.0
        failures.allow(source, 0.0)
    assert failures.retry_after(source, 0.0) == pytest.approx(60.0)
    assert failures.retry_after(source, 59.0) == pytest.approx(1.0)
    assert failures.retry_after(source, 60.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0, "burst": 1}, "rate must be positive and finite, got 0"),
        ({"rate": -1.0, "burst": 1}, "rate must be positive and finite, got -1.0"),
        ({"rate": math.inf, "burst": 1}, "rate must be positive and finite, got inf"),
        ({"rate": 1, "burst": 0}, "burst must be positive and finite, got 0"),
        ({"rate": 1, "burst": math.nan}, "burst must be positive and finite, got nan"),
        ({"rate": 1, "burst": 1, "max_keys": 0}, "max_keys must be positive, got 0"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        RateLimiter(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_repr() -> None:
    rl = RateLimiter(rate=2.0, burst=4, max_keys=10)
    rl.allow("x", 0.0)
    assert repr(rl) == "RateLimiter(rate=2.0, burst=4.0, keys=1/10)"
