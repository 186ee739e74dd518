"""Queue configuration, eligibility by level, the strategies' choice, the line's
order and positions, and the wait statistics."""

from __future__ import annotations

import pytest

from hotline.acd.agents import Agent, AgentConfig
from hotline.acd.errors import AcdConfigError
from hotline.acd.queues import (
    EntryKind,
    EscalationStep,
    Queue,
    QueueConfig,
    QueueEntry,
    SkillRequirement,
    Strategy,
    ToQueue,
    ToVoicemail,
    WaitStats,
    choose_agent,
    round_seconds,
    staffed_for,
)


def make_agent(agent_id: str, idle_since: float = 0.0, calls: int = 0, **skills: int) -> Agent:
    a = Agent(AgentConfig(agent_id, skills=skills), 0.0)
    a.set_registered(True, 0.0)
    a.login(0.0)
    a.idle_since = idle_since
    a.calls_answered = calls
    return a


LEVELS = QueueConfig(
    "q",
    skills=(SkillRequirement("vax", 8),),
    escalation=(
        EscalationStep(30, (SkillRequirement("vax", 5),)),
        EscalationStep(60, (SkillRequirement("general"),)),
    ),
)


def test_levels_open_with_the_wait() -> None:
    mid = make_agent("mid", vax=6)
    gen = make_agent("gen", general=2)
    top = make_agent("top", vax=9)
    assert [LEVELS.eligibility(mid, w) for w in (0, 29.9, 30, 60)] == [None, None, 1, 1]
    assert [LEVELS.eligibility(gen, w) for w in (0, 59, 60)] == [None, None, 2]
    assert LEVELS.eligibility(top, 0) == 0
    assert LEVELS.next_escalation(0) == 30 and LEVELS.next_escalation(30) == 60
    assert LEVELS.next_escalation(60) is None


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_prefers_an_earlier_level(strategy: Strategy) -> None:
    config = QueueConfig("q", strategy=strategy, skills=LEVELS.skills, escalation=LEVELS.escalation)
    gen = make_agent("gen", idle_since=0, general=9)  # idle longest, fewest calls
    mid = make_agent("mid", idle_since=50, calls=5, vax=6)
    assert choose_agent(config, [gen, mid], waited=70) is mid


def test_longest_idle() -> None:
    agents = [make_agent("a", 30), make_agent("b", 10), make_agent("c", 20)]
    config = QueueConfig("q")
    assert choose_agent(config, agents, 0).id == "b"  # type: ignore[union-attr]


def test_fewest_calls_breaks_ties_by_idle_time() -> None:
    agents = [make_agent("a", 5, calls=1), make_agent("b", 9, calls=0), make_agent("c", 1, calls=0)]
    config = QueueConfig("q", strategy=Strategy.FEWEST_CALLS)
    assert choose_agent(config, agents, 0).id == "c"  # type: ignore[union-attr]


def test_round_robin_resumes_after_the_last_agent() -> None:
    config = QueueConfig("q", strategy=Strategy.ROUND_ROBIN, members=("c", "a", "b"))
    agents = [make_agent("a"), make_agent("b"), make_agent("c")]
    picks = []
    last = None
    for _ in range(4):
        chosen = choose_agent(config, agents, 0, last)
        assert chosen is not None
        picks.append(chosen.id)
        last = chosen.id
    assert picks == ["c", "a", "b", "c"]
    # b is busy: after a comes c
    assert choose_agent(config, [agents[0], agents[2]], 0, "a").id == "c"  # type: ignore[union-attr]


def test_skills_based_scores_the_sum_of_required_skills() -> None:
    config = QueueConfig(
        "q",
        strategy=Strategy.SKILLS_BASED,
        skills=(SkillRequirement("vax", 2), SkillRequirement("zh", 2)),
    )
    agents = [
        make_agent("a", vax=9, zh=2),
        make_agent("b", vax=6, zh=6),
        make_agent("c", vax=10, zh=1),
    ]
    assert choose_agent(config, agents, 0).id == "b"  # type: ignore[union-attr]


def test_members_limit_the_queue() -> None:
    config = QueueConfig("q", members=("a",))
    assert choose_agent(config, [make_agent("b")], 0) is None


def test_queue_config_is_checked() -> None:
    with pytest.raises(AcdConfigError, match="steps must be in order"):
        QueueConfig("q", escalation=(EscalationStep(30), EscalationStep(30)))
    with pytest.raises(AcdConfigError, match="max_wait and overflow go together"):
        QueueConfig("q", max_wait=60)
    with pytest.raises(AcdConfigError, match="overflows into itself"):
        QueueConfig("q", max_wait=60, overflow=ToQueue("q"))
    with pytest.raises(AcdConfigError, match="neither the position nor the wait"):
        QueueConfig("q", announce_every=30, announce_position=False, announce_wait=False)
    with pytest.raises(AcdConfigError, match="minimum proficiency must be from 1 to 10"):
        SkillRequirement("vax", 11)
    with pytest.raises(AcdConfigError, match="a skill is required twice"):
        QueueConfig("q", skills=(SkillRequirement("vax"), SkillRequirement("vax", 3)))
    with pytest.raises(AcdConfigError, match="listed twice"):
        QueueConfig("q", members=("a", "a"))
    assert QueueConfig("q", max_wait=1, overflow=ToVoicemail("1")).max_wait == 1


def test_line_order_and_positions() -> None:
    q = Queue(QueueConfig("q"), 0.0)

    def add(entry_id: str, priority: int, arrived: float, seq: int) -> QueueEntry:
        e = QueueEntry(entry_id, EntryKind.CALL, "q", priority, arrived, seq, arrived)
        q.entries[entry_id] = e
        return e

    old = add("old", 0, 1.0, 1)
    vip = add("vip", 5, 9.0, 3)
    tie = add("tie", 0, 1.0, 2)
    assert [e.id for e in q.ordered()] == ["vip", "old", "tie"]
    assert [q.position(e) for e in (vip, old, tie)] == [1, 2, 3]
    vip.offered_to = "agent"  # being served: no longer ahead of anyone
    assert q.position(old) == 1 and q.position(tie) == 2


def test_wait_stats_need_enough_samples_in_the_window() -> None:
    stats = WaitStats(window=600, min_samples=3, now=0.0)
    stats.record_handled(10, 100)
    stats.record_handled(20, 200)
    assert stats.handle_time(20) is None and stats.wait_at_position(1, 2, 20) is None
    stats.record_handled(30, 300)
    assert stats.handle_time(30) == 200
    assert stats.wait_at_position(3, 2, 30) == 300.0
    assert stats.wait_at_position(3, 0, 30) is None  # nobody staffed: say nothing
    assert stats.handle_time(610.5) is None  # the first sample left the window
    assert stats.samples(610.5) == 2


def test_erlang_expected_wait_from_the_window() -> None:
    stats = WaitStats(window=3600, min_samples=1, now=0.0)
    for i in range(80):  # 80 calls an hour, 180 s each → 4 Erlangs
        stats.record_arrival(i * 45.0)
        stats.record_handled(i * 45.0, 180.0)
    assert stats.arrival_rate(3600) == pytest.approx(80 / 3600)
    # C(5, 4) = 0.5541, ASA = C · 180 / (5 − 4)
    assert stats.probability_of_wait(5, 3600) == pytest.approx(0.55411, abs=1e-5)
    assert stats.expected_wait(5, 3600) == pytest.approx(0.55411 * 180, abs=1e-2)
    assert stats.expected_wait(4, 3600) == float("inf")
    assert round_seconds(stats.expected_wait(4, 3600)) is None
    assert round_seconds(99.6) == 100.0


def test_staffed_counts_working_agents_whatever_their_state() -> None:
    busy = make_agent("busy", vax=9)
    busy.offer("c1", 0.0, 15.0)
    busy.answer(1.0)
    away = make_agent("away", vax=9)
    away.start_break("lunch", 0.0)
    novice = make_agent("novice", vax=5)
    assert staffed_for(LEVELS, [busy, away, novice], 0.0) == 1
    assert staffed_for(LEVELS, [busy, away, novice], 30.0) == 2
