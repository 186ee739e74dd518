"""Token-bucket rate limiting per key (a source IP, a user, "invite"), sans-IO.

Owns the buckets and their bounded memory: at most `max_keys` keys are held, the least
recently used is evicted first, and a bucket that has refilled completely is the same as
no bucket at all (`prune` drops those). Must not know what the keys mean or read the
clock: every call takes `now` (monotonic seconds).

Uses: per-source request and REGISTER limits (``allow`` per request, answer 503 with
``Retry-After: ceil(retry_after)`` when refused), the call-rate limit, and failed-auth
throttling — spend a token per failure (``allow`` after each failure), and while
``retry_after(source, now) > 0`` refuse that source's authentication attempts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

# Slack for float rounding: waiting exactly `retry_after` seconds must be enough.
_EPSILON = 1e-9


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """`rate` tokens per second refill each key's bucket, which holds at most `burst`.

    A new key starts with a full bucket. Time that runs backwards refills nothing.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be positive and finite, got {rate!r}")
        if not (math.isfinite(burst) and burst > 0):
            raise ValueError(f"burst must be positive and finite, got {burst!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be positive, got {max_keys!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __repr__(self) -> str:
        return (f"RateLimiter(rate={self.rate}, burst={self.burst}, "
                f"keys={len(self._buckets)}/{self.max_keys})")

    def _level(self, bucket: _Bucket | None, now: float) -> float:
        if bucket is None:
            return self.burst
        elapsed = now - bucket.stamp
        if elapsed <= 0:
            return bucket.tokens
        return min(self.burst, bucket.tokens + elapsed * self.rate)

    def tokens(self, key: Hashable, now: float) -> float:
        """Tokens `key` holds at `now` (without touching its bucket)."""
        return self._level(self._buckets.get(key), now)

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens from `key`'s bucket if it holds that many; say whether it
        did. A refused call takes nothing."""
        if cost < 0 or math.isnan(cost):
            raise ValueError(f"cost must not be negative, got {cost!r}")
        buckets = self._buckets
        bucket = buckets.get(key)
        level = self._level(bucket, now)
        allowed = level + _EPSILON * max(1.0, cost) >= cost
        if allowed:
            level = max(0.0, level - cost)
        if bucket is None:
            bucket = buckets[key] = _Bucket(level, now)
            while len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            bucket.tokens = level
            bucket.stamp = max(bucket.stamp, now)
            buckets.move_to_end(key)
        return allowed

    def retry_after(self, key: Hashable, now: float, cost: float = 1.0) -> float:
        """Seconds until `key` holds `cost` tokens (0.0 if it does now; infinity if
        `cost` exceeds the burst, which never refills that far)."""
        if cost > self.burst:
            return math.inf
        missing = cost - self.tokens(key, now)
        return max(0.0, missing / self.rate)

    def forget(self, key: Hashable) -> None:
        """Drop `key`'s bucket (it starts full again)."""
        self._buckets.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop every bucket that has refilled completely; return how many."""
        full = [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets
