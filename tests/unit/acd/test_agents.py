"""Agents: status apart from state, the transition table, star codes, policy checks."""

from __future__ import annotations

import pytest

from hotline.acd.agents import (
    Agent,
    AgentConfig,
    AgentPolicy,
    AgentState,
    AgentStatus,
    Back,
    Break,
    Login,
    Logout,
    OfferFailure,
    parse_star_code,
)
from hotline.acd.errors import AcdConfigError, AgentStateError, StarCodeError


def ready_agent(now: float = 0.0) -> Agent:
    a = Agent(AgentConfig("ann", skills={"vax": 7}), now)
    a.set_registered(True, now)
    a.login(now)
    return a


# -- star codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "command"),
    [
        ("*41", Login()),
        ("*42", Logout()),
        ("*44#", Back()),
        ("*43", Break(None)),
        ("*4312", Break("12")),
        ("*43*7", Break("7")),
        (" *43 ", Break(None)),
    ],
)
def test_star_codes(dialled: str, command: object) -> None:
    assert parse_star_code(dialled) == command


def test_star_code_reasons_by_name() -> None:
    reasons = {"1": "lunch", "2": "training"}
    assert parse_star_code("*432", reasons) == Break("training")
    with pytest.raises(
        StarCodeError,
        match=r"unknown break reason code 9; known: 1 \(lunch\), "
        r"2 \(training\)",
    ):
        parse_star_code("*439", reasons)


@pytest.mark.parametrize("dialled", ["0400111222", "*45", "*4", "41", "", "*99"])
def test_other_numbers_are_not_agent_codes(dialled: str) -> None:
    assert parse_star_code(dialled) is None


@pytest.mark.parametrize(
    ("dialled", "message"),
    [
        ("*4112", r"\*41 \(login\) takes no digits"),
        ("*43abc", "is not an agent code"),
        ("*4312345", "is not an agent code"),
        ("*44##", "is not an agent code"),
    ],
)
def test_malformed_agent_codes(dialled: str, message: str) -> None:
    with pytest.raises(StarCodeError, match=message):
        parse_star_code(dialled)


# -- status and state -------------------------------------------------------------------


def test_status_and_state_are_independent() -> None:
    a = ready_agent()
    assert a.ready
    a.offer("c1", 1.0, 15.0)
    a.answer(2.0)
    change = a.start_break("lunch", 3.0)
    assert (change.status, change.state, change.reason) == (
        AgentStatus.ON_BREAK,
        AgentState.ON_CALL,
        "lunch",
    )
    assert a.call_id == "c1" and not a.ready
    a.end_call(10.0, wrap_up=5.0)
    assert (a.state, a.deadline) == (AgentState.WRAP_UP, 15.0)
    a.finish_wrap_up(15.0)
    assert a.state is AgentState.IDLE and a.status is AgentStatus.ON_BREAK and not a.ready
    a.back(20.0)
    assert a.ready and a.idle_since == 20.0


def test_transitions_outside_the_table_are_errors() -> None:
    a = ready_agent()
    with pytest.raises(AgentStateError, match="cannot answer while idle"):
        a.answer(1.0)
    a.offer("c1", 1.0, 15.0)
    with pytest.raises(AgentStateError, match="not ready for a call"):
        a.offer("c2", 1.0, 15.0)
    with pytest.raises(AgentStateError, match="cannot end while offered"):
        a.end_call(2.0, 0.0)


def test_offer_sets_the_ring_deadline_and_failure_clears_it() -> None:
    a = ready_agent()
    change = a.offer("c1", 10.0, 15.0)
    assert (change.call_id, a.deadline) == ("c1", 25.0)
    failed = a.offer_failed(25.0)
    assert failed.call_id == "c1" and a.call_id is None and a.deadline is None


def test_idle_since_is_kept_when_an_offer_is_withdrawn() -> None:
    a = ready_agent(now=5.0)
    a.offer("c1", 10.0, 15.0)
    a.withdraw_offer(12.0)
    assert a.idle_since == 5.0  # still the longest idle: the caller just hung up


def test_login_resets_the_call_count_and_logout_keeps_the_call() -> None:
    a = ready_agent()
    a.offer("c1", 1.0, 15.0)
    a.answer(2.0)
    assert a.calls_answered == 1
    a.logout(3.0)
    assert a.state is AgentState.ON_CALL
    a.end_call(4.0, 0.0)
    a.finish_wrap_up(4.0)
    a.login(5.0)
    assert a.calls_answered == 0


def test_break_and_back_need_a_login() -> None:
    a = Agent(AgentConfig("bob"), 0.0)
    with pytest.raises(AgentStateError, match="log in before a break"):
        a.start_break(None, 1.0)
    with pytest.raises(AgentStateError, match="log in instead"):
        a.back(1.0)
    assert a.logout(1.0) is None


def test_history_keeps_the_last_changes() -> None:
    a = Agent(AgentConfig("cy"), 0.0, history_size=3)
    a.set_registered(True, 0.0)
    a.login(1.0)
    a.start_break("tea", 2.0)
    a.back(3.0)
    assert [c.cause for c in a.history] == ["login", "break", "back"]
    assert a.history[1].reason == "tea" and a.history[2].previous_status is AgentStatus.ON_BREAK


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skills", "message"),
    [
        ({"vax": 0}, "proficiency from 1 to 10, got 0"),
        ({"vax": 11}, "got 11"),
        ({"vax": True}, "got True"),
        ({"": 3}, "non-empty name"),
    ],
)
def test_agent_skills_are_checked(skills: dict[str, int], message: str) -> None:
    with pytest.raises(AcdConfigError, match=message):
        AgentConfig("ann", skills=skills)


def test_policy_is_checked() -> None:
    with pytest.raises(AcdConfigError, match="ring_timeout must be > 0"):
        AgentPolicy(ring_timeout=0)
    with pytest.raises(AcdConfigError, match="pause_after_busy must be > 0"):
        AgentPolicy(pause_after_busy=0)
    with pytest.raises(AcdConfigError, match="wrap_up must be ≥ 0"):
        AgentPolicy(wrap_up=-1)
    assert AgentPolicy(pause_after_busy=30).pause_after(OfferFailure.BUSY) == 30
