"""Token-bucket rate limiting keyed by a string (a source IP, a user), sans-IO.

Owns the buckets and their bounded memory (least recently used keys are evicted);
the caller passes `now`. Used for per-source request and REGISTER limits, failed-auth
throttling and the call-rate (CPS) limit.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """`rate` tokens per second refill a bucket holding at most `burst` tokens."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be positive, got {rate} and {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return self.burst
        tokens, then = entry
        return min(self.burst, tokens + max(0.0, now - then) * self.rate)

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens if there are that many; say whether it was allowed."""
        tokens = self._level(key, now)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, key: str, now: float, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available for `key` (0 if now)."""
        missing = cost - self._level(key, now)
        return max(0.0, missing / self.rate)

    def __len__(self) -> int:
        return len(self._buckets)
