"""Property tests of Erlang C: a probability, monotone in agents and in traffic, equal
to a log-space computation, and finite for hundreds of agents."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from hotline.acd import erlang


def log_space(servers: int, traffic: float) -> float:
    logs = [k * math.log(traffic) - math.lgamma(k + 1) for k in range(servers)]
    last = (
        servers * math.log(traffic)
        - math.lgamma(servers + 1)
        + math.log(servers / (servers - traffic))
    )
    top = max([*logs, last])
    total = sum(math.exp(x - top) for x in logs) + math.exp(last - top)
    return math.exp(last - top) / total


loads = st.tuples(st.integers(1, 600), st.floats(0.01, 0.995))


@given(loads)
def test_probability_and_log_space_agree(load: tuple[int, float]) -> None:
    servers, occupancy = load
    traffic = servers * occupancy
    c = erlang.erlang_c(servers, traffic)
    assert 0.0 <= c <= 1.0
    assert math.isclose(c, log_space(servers, traffic), rel_tol=1e-9, abs_tol=1e-300)
    assert 0.0 <= erlang.erlang_b(servers, traffic) <= c


@given(loads)
def test_more_agents_never_wait_longer(load: tuple[int, float]) -> None:
    servers, occupancy = load
    traffic = servers * occupancy
    assert erlang.erlang_c(servers + 1, traffic) <= erlang.erlang_c(servers, traffic) + 1e-12
    assert (
        erlang.mean_wait(servers + 1, traffic, 180.0)
        <= erlang.mean_wait(servers, traffic, 180.0) + 1e-9
    )


@given(loads, st.floats(0.0, 0.5))
def test_more_traffic_never_waits_less(load: tuple[int, float], more: float) -> None:
    servers, occupancy = load
    traffic = servers * occupancy
    heavier = min(traffic + more, servers * 0.999)
    assert erlang.erlang_c(servers, heavier) >= erlang.erlang_c(servers, traffic) - 1e-12
