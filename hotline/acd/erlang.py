"""Erlang B and Erlang C (M/M/N queues): the probability that a caller waits and how
long, for an estimated wait that is honest about what the model assumes.

Owns the formulas only. The Erlang B blocking probability is computed with its
recursion  B(0) = 1,  B(n) = A·B(n−1) / (n + A·B(n−1)),  which never forms a factorial
or a power, so it stays exact to rounding for thousands of agents; Erlang C follows from
it:  C = N·B / (N − A·(1 − B)).  Units: `traffic` in Erlangs (arrival rate × mean
handle time), `handle_time` and every result in seconds. Must not know about queues,
agents or the clock.
"""

from __future__ import annotations

import math


def _check(servers: int, traffic: float) -> None:
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 0:
        raise ValueError(f"servers must be a whole number ≥ 0, got {servers!r}")
    if not math.isfinite(traffic) or traffic < 0:
        raise ValueError(f"traffic must be a finite number of Erlangs ≥ 0, got {traffic!r}")


def _check_time(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def erlang_b(servers: int, traffic: float) -> float:
    """Probability that a call finds all `servers` busy in a loss system (Erlang B)."""
    _check(servers, traffic)
    b = 1.0
    for n in range(1, servers + 1):
        ab = traffic * b
        b = ab / (n + ab)
    return b


def erlang_c(servers: int, traffic: float) -> float:
    """Probability that a call has to wait (Erlang C). 1.0 when the offered traffic is
    at or above the number of servers: the queue grows without bound."""
    _check(servers, traffic)
    if traffic >= servers:
        return 1.0
    if traffic == 0:
        return 0.0
    b = erlang_b(servers, traffic)
    return servers * b / (servers - traffic * (1.0 - b))


def mean_wait(servers: int, traffic: float, handle_time: float) -> float:
    """Average speed of answer over all callers: C · AHT / (N − A). `math.inf` when the
    traffic is at or above the number of servers."""
    _check_time("handle_time", handle_time)
    c = erlang_c(servers, traffic)
    if traffic >= servers:
        return math.inf
    return c * handle_time / (servers - traffic)


def mean_wait_when_delayed(servers: int, traffic: float, handle_time: float) -> float:
    """Average wait of the callers who do wait: AHT / (N − A) (`math.inf` when A ≥ N)."""
    _check(servers, traffic)
    _check_time("handle_time", handle_time)
    if traffic >= servers:
        return math.inf
    return handle_time / (servers - traffic)


def service_level(servers: int, traffic: float, handle_time: float, target: float) -> float:
    """Fraction of callers answered within `target` seconds:
    1 − C · exp(−(N − A) · target / AHT); 0.0 when A ≥ N."""
    _check_time("handle_time", handle_time)
    if not math.isfinite(target) or target < 0:
        raise ValueError(f"target must be a finite number of seconds ≥ 0, got {target!r}")
    c = erlang_c(servers, traffic)
    if traffic >= servers:
        return 0.0
    return 1.0 - c * math.exp(-(servers - traffic) * target / handle_time)


def wait_at_position(position: int, servers: int, handle_time: float) -> float:
    """Expected wait of a caller who is `position`-th in line while all `servers` are
    busy: in the M/M/N model an agent frees up every AHT/N seconds on average, and the
    caller is served at the `position`-th release, so the wait is position · AHT / N."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise ValueError(f"position must be a whole number ≥ 1, got {position!r}")
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
        raise ValueError(f"servers must be a whole number ≥ 1, got {servers!r}")
    _check_time("handle_time", handle_time)
    return position * handle_time / servers
