"""Erlang B/C against exact rational arithmetic, published table values, and a
log-space computation for hundreds of agents."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from hotline.acd import erlang


def exact_erlang_c(servers: int, traffic: int) -> Fraction:
    """The textbook formula in exact rationals (small cases only)."""
    a = Fraction(traffic)
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / math.factorial(servers) * Fraction(servers) / (servers - a)
    return tail / (head + tail)


def log_space_erlang_c(servers: int, traffic: float) -> float:
    """An independent computation for large cases: the terms A^k/k! in logarithms."""
    logs = [k * math.log(traffic) - math.lgamma(k + 1) for k in range(servers)]
    last = (
        servers * math.log(traffic)
        - math.lgamma(servers + 1)
        + math.log(servers / (servers - traffic))
    )
    top = max([*logs, last])
    total = sum(math.exp(x - top) for x in logs) + math.exp(last - top)
    return math.exp(last - top) / total


def test_ten_agents_eight_erlangs() -> None:
    # the classic example: 10 agents, 8 Erlangs, AHT 180 s
    c = erlang.erlang_c(10, 8.0)
    assert c == pytest.approx(0.40918, abs=5e-6)
    assert c == pytest.approx(float(exact_erlang_c(10, 8)), rel=1e-12)
    assert erlang.mean_wait(10, 8.0, 180.0) == pytest.approx(36.826, abs=1e-3)
    assert erlang.mean_wait_when_delayed(10, 8.0, 180.0) == 90.0
    # service level within 20 s: 1 − C·e^(−(10−8)·20/180)
    assert erlang.service_level(10, 8.0, 180.0, 20.0) == pytest.approx(
        1 - c * math.exp(-2 * 20 / 180)
    )


@pytest.mark.parametrize(
    ("servers", "traffic", "expected"),
    [
        (2, 1, Fraction(1, 3)),
        (3, 2, Fraction(4, 9)),
        (1, 0, Fraction(0)),
    ],
)
def test_small_cases_are_exact(servers: int, traffic: int, expected: Fraction) -> None:
    assert erlang.erlang_c(servers, float(traffic)) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("servers", [1, 2, 5, 17, 40])
def test_against_exact_rationals(servers: int) -> None:
    for traffic in range(1, servers):
        assert erlang.erlang_c(servers, float(traffic)) == pytest.approx(
            float(exact_erlang_c(servers, traffic)), rel=1e-11
        )


def test_erlang_b_of_known_values() -> None:
    assert erlang.erlang_b(1, 1.0) == 0.5
    assert erlang.erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang.erlang_b(0, 3.0) == 1.0


@pytest.mark.parametrize(
    ("servers", "traffic"), [(300, 280.0), (350, 330.0), (1000, 950.5), (3000, 2900.0)]
)
def test_stable_for_hundreds_of_agents(servers: int, traffic: float) -> None:
    c = erlang.erlang_c(servers, traffic)
    assert 0.0 < c < 1.0
    assert c == pytest.approx(log_space_erlang_c(servers, traffic), rel=1e-9)
    assert math.isfinite(erlang.mean_wait(servers, traffic, 180.0))


def test_overload_means_everyone_waits_forever() -> None:
    assert erlang.erlang_c(10, 10.0) == 1.0
    assert erlang.erlang_c(10, 12.5) == 1.0
    assert erlang.mean_wait(10, 10.0, 180.0) == math.inf
    assert erlang.service_level(10, 11.0, 180.0, 20.0) == 0.0
    assert erlang.erlang_c(0, 0.0) == 1.0


def test_wait_at_position() -> None:
    assert erlang.wait_at_position(1, 10, 180.0) == 18.0
    assert erlang.wait_at_position(4, 2, 91.0) == 182.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang.erlang_c(-1, 1.0), "servers must be a whole number"),
        (lambda: erlang.erlang_c(2, -0.5), "traffic must be a finite number"),
        (lambda: erlang.erlang_b(2, math.nan), "traffic must be a finite number"),
        (lambda: erlang.mean_wait(2, 1.0, 0.0), "handle_time must be"),
        (lambda: erlang.service_level(2, 1.0, 10.0, -1.0), "target must be"),
        (lambda: erlang.wait_at_position(0, 2, 10.0), "position must be"),
        (lambda: erlang.wait_at_position(1, 0, 10.0), "servers must be a whole number ≥ 1"),
    ],
)
def test_bad_arguments(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
