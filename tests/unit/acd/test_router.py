"""The ACD router with a fake clock: strategies, escalation, RONA, wrap-up, priorities,
overflow, announcements and the screen pop."""

from __future__ import annotations

import pytest

from hotline.acd import router as r
from hotline.acd.agents import (
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
from hotline.acd.errors import (
    AcdConfigError,
    AcdError,
    AgentStateError,
    DuplicateCall,
    UnknownAgent,
    UnknownQueue,
)
from hotline.acd.presence import Expert, ExpertStatusSet, PresenceChanged, PresenceStatus
from hotline.acd.queues import (
    EscalationStep,
    OfferCallback,
    QueueConfig,
    SkillRequirement,
    Strategy,
    ToQueue,
    ToVoicemail,
)
from tests.unit.acd.rig import Rig, agent, of, offers


def serve(rig: Rig, agent_id: str, call_id: str, talk: float = 0.0) -> None:
    """Answer the offer and hang up after `talk` seconds (wrap-up follows)."""
    rig.send(r.OfferAnswered(agent_id, call_id))
    rig.advance(talk)
    rig.send(r.CallEnded(call_id))


# -- strategies -------------------------------------------------------------------------


def test_longest_idle_agent_gets_the_call() -> None:
    rig = Rig([QueueConfig("q", wrap_up=0)], [agent("a"), agent("b"), agent("c")])
    rig.ready("a")
    rig.advance(2)
    rig.ready("c")
    rig.advance(3)
    rig.ready("b")
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("a", "c1")]
    assert offers(rig.send(r.CallQueued("c2", "q"))) == [("c", "c2")]
    assert offers(rig.send(r.CallQueued("c3", "q"))) == [("b", "c3")]
    # a finishes first: idle again from then, so c (who finishes later) waits less
    serve(rig, "a", "c1")
    rig.advance(1)
    serve(rig, "c", "c2")
    rig.advance(1)
    assert offers(rig.send(r.CallQueued("c4", "q"))) == [("a", "c4")]


def test_round_robin_follows_the_members_order_and_wraps() -> None:
    rig = Rig(
        [QueueConfig("q", strategy=Strategy.ROUND_ROBIN, members=("b", "c", "a"), wrap_up=0)],
        [agent("a"), agent("b"), agent("c")],
    )
    rig.ready("a", "b", "c")
    got = []
    for i in range(5):
        [(who, call)] = offers(rig.send(r.CallQueued(f"c{i}", "q")))
        got.append(who)
        serve(rig, who, call)
        rig.advance(1)
    assert got == ["b", "c", "a", "b", "c"]


def test_round_robin_without_members_goes_by_agent_id_and_skips_busy_agents() -> None:
    rig = Rig(
        [QueueConfig("q", strategy=Strategy.ROUND_ROBIN, wrap_up=0)],
        [agent("a"), agent("b"), agent("c")],
    )
    rig.ready("a", "b", "c")
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("a", "c1")]
    rig.send(r.OfferAnswered("a", "c1"))
    assert offers(rig.send(r.CallQueued("c2", "q"))) == [("b", "c2")]
    rig.send(r.OfferAnswered("b", "c2"))
    assert offers(rig.send(r.CallQueued("c3", "q"))) == [("c", "c3")]
    rig.send(r.OfferAnswered("c", "c3"))
    rig.send(r.CallEnded("c2"))  # b is free; a is still on a call
    assert offers(rig.send(r.CallQueued("c4", "q"))) == [("b", "c4")]


def test_fewest_calls_then_longest_idle() -> None:
    rig = Rig(
        [QueueConfig("q", strategy=Strategy.FEWEST_CALLS, wrap_up=0)],
        [agent("a"), agent("b"), agent("c")],
    )
    rig.ready("a")
    for i in range(2):  # a takes two calls alone
        rig.send(r.CallQueued(f"x{i}", "q"))
        serve(rig, "a", f"x{i}")
    rig.ready("b")
    rig.send(r.CallQueued("x2", "q"))
    serve(rig, "b", "x2")
    rig.advance(1)
    rig.ready("c")
    counts = {a: rig.router.agent(a).calls_answered for a in "abc"}
    assert counts == {"a": 2, "b": 1, "c": 0}
    assert offers(rig.send(r.CallQueued("y1", "q"))) == [("c", "y1")]
    assert offers(rig.send(r.CallQueued("y2", "q"))) == [("b", "y2")]
    assert offers(rig.send(r.CallQueued("y3", "q"))) == [("a", "y3")]


def test_skills_based_prefers_the_most_proficient() -> None:
    queue = QueueConfig(
        "q",
        strategy=Strategy.SKILLS_BASED,
        skills=(SkillRequirement("vax", 3), SkillRequirement("zh", 1)),
    )
    rig = Rig(
        [queue],
        [
            agent("a", vax=4, zh=9),
            agent("b", vax=9, zh=2),
            agent("c", vax=10),
            agent("d", vax=2, zh=10),
        ],
    )
    rig.ready("a", "b", "c", "d")
    # c lacks zh, d's vax is too low; a scores 13, b scores 11
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("a", "c1")]
    assert offers(rig.send(r.CallQueued("c2", "q"))) == [("b", "c2")]
    assert offers(rig.send(r.CallQueued("c3", "q"))) == []


def test_skills_based_ties_go_to_the_longest_idle() -> None:
    queue = QueueConfig("q", strategy=Strategy.SKILLS_BASED, skills=(SkillRequirement("vax"),))
    rig = Rig([queue], [agent("a", vax=5), agent("b", vax=5)])
    rig.ready("b")
    rig.advance(1)
    rig.ready("a")
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("b", "c1")]


# -- escalation -------------------------------------------------------------------------


ESCALATING = QueueConfig(
    "q",
    strategy=Strategy.SKILLS_BASED,
    skills=(SkillRequirement("vax", 8),),
    escalation=(
        EscalationStep(30, (SkillRequirement("vax", 5),)),
        EscalationStep(60, (SkillRequirement("general", 1),)),
    ),
)


def test_escalation_widens_the_proficiency_after_its_delay() -> None:
    rig = Rig([ESCALATING], [agent("a", vax=6)])
    rig.ready("a")
    assert offers(rig.send(r.CallQueued("c1", "q"))) == []
    assert offers(rig.advance(29.9)) == []
    actions = rig.advance(0.1)
    assert offers(actions) == [("a", "c1")]
    assert rig.now == 30.0


def test_escalation_widens_to_another_skill_in_a_later_step() -> None:
    rig = Rig([ESCALATING], [agent("a", vax=6), agent("g", general=3)])
    rig.ready("g")
    rig.send(r.CallQueued("c1", "q"))
    assert offers(rig.advance(59)) == []
    assert offers(rig.advance(1)) == [("g", "c1")]


def test_escalation_counts_from_entering_the_queue_not_from_a_failed_offer() -> None:
    rig = Rig([ESCALATING], [agent("x", vax=9), agent("a", vax=6)])
    rig.ready("x", "a")
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("x", "c1")]
    rig.advance(10)
    rig.send(r.OfferRejected("x", "c1"))
    assert offers(rig.advance(19.5)) == []
    assert offers(rig.advance(0.5)) == [("a", "c1")]


# -- RONA, reject, busy -----------------------------------------------------------------


def test_rona_puts_the_agent_on_break_and_the_caller_back_at_the_head() -> None:
    rig = Rig([QueueConfig("q")], [agent("a"), agent("b")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(1)
    rig.send(r.CallQueued("c2", "q"))
    actions = rig.advance(14)  # ring timeout 15 s from t=0
    assert of(r.CancelOffer, actions) == [r.CancelOffer("a", "c1", "no_answer")]
    a = rig.router.agent("a")
    assert (a.status, a.break_reason, a.state) == (
        AgentStatus.ON_BREAK,
        "no_answer",
        AgentState.IDLE,
    )
    # never shown as available and idle in between
    changes = [x.change for x in of(r.AgentStateChanged, actions)]
    assert all(
        not (c.status is AgentStatus.AVAILABLE and c.state is AgentState.IDLE) for c in changes
    )
    assert rig.router.position("c1") == 1
    assert rig.router.position("c2") == 2
    assert offers(rig.ready("b")) == [("b", "c1")]


def test_rona_pause_ends_by_itself_when_configured() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")], policy=AgentPolicy(pause_after_no_answer=60))
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(15)
    assert rig.router.agent("a").status is AgentStatus.ON_BREAK
    assert offers(rig.advance(59.9)) == []
    actions = rig.advance(0.1)
    assert offers(actions) == [("a", "c1")]
    assert any(x.change.cause == "break_over" for x in of(r.AgentStateChanged, actions))


@pytest.mark.parametrize(
    "reason", [OfferFailure.REJECTED, OfferFailure.BUSY, OfferFailure.UNREACHABLE]
)
def test_reject_and_busy_are_handled_like_rona(reason: OfferFailure) -> None:
    rig = Rig([QueueConfig("q")], [agent("a"), agent("b")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.send(r.CallQueued("c2", "q"))
    actions = rig.send(r.OfferRejected("a", "c1", reason))
    assert of(r.CancelOffer, actions) == []  # the phone already said no
    assert rig.router.agent("a").break_reason == reason.value
    assert offers(rig.ready("b")) == [("b", "c1")]


def test_offer_timed_out_reported_by_the_engine() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(5)
    actions = rig.send(r.OfferTimedOut("a", "c1"))
    assert of(r.CancelOffer, actions) == []
    assert rig.router.agent("a").break_reason == "no_answer"
    assert rig.router.entry("c1") is not None and rig.router.entry("c1").waiting  # type: ignore[union-attr]
    assert rig.advance(30) == []  # the ring deadline went with the offer


def test_late_answer_after_rona_is_ignored() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(15)
    assert rig.send(r.OfferAnswered("a", "c1")) == []
    assert rig.router.agent("a").state is AgentState.IDLE


def test_agent_back_after_rona_with_star_code() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(15)
    command = parse_star_code("*44")
    assert command == Back()
    actions = rig.send(r.AgentCommandIssued("a", command))
    assert of(r.CommandDone, actions) == [r.CommandDone("a", Back(), True, "back")]
    assert offers(actions) == [("a", "c1")]


# -- wrap-up ----------------------------------------------------------------------------


def test_wrap_up_after_each_call() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")], policy=AgentPolicy(wrap_up=20))
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    serve(rig, "a", "c1", talk=100)
    assert rig.router.agent("a").state is AgentState.WRAP_UP
    assert offers(rig.send(r.CallQueued("c2", "q"))) == []
    assert offers(rig.advance(19.9)) == []
    assert offers(rig.advance(0.1)) == [("a", "c2")]


def test_wrap_up_of_the_queue_overrides_the_agents() -> None:
    rig = Rig([QueueConfig("q", wrap_up=5)], [agent("a")], policy=AgentPolicy(wrap_up=60))
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    serve(rig, "a", "c1", talk=10)
    assert rig.router.next_deadline() == rig.now + 5


def test_zero_wrap_up_makes_the_agent_ready_at_once() -> None:
    rig = Rig([QueueConfig("q", wrap_up=0)], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.send(r.CallQueued("c2", "q"))
    rig.send(r.OfferAnswered("a", "c1"))
    assert offers(rig.send(r.CallEnded("c1"))) == [("a", "c2")]


# -- status and registration ------------------------------------------------------------


def test_logout_while_ringing_withdraws_the_offer_without_losing_the_caller() -> None:
    rig = Rig([QueueConfig("q")], [agent("a"), agent("b")])
    rig.ready("a", "b")
    rig.send(r.CallQueued("c1", "q"))  # to a (longest idle)
    actions = rig.send(r.AgentCommandIssued("a", Logout()))
    assert of(r.CancelOffer, actions) == [r.CancelOffer("a", "c1", "agent_logout")]
    assert offers(actions) == [("b", "c1")]


def test_break_never_cuts_a_connected_call() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    rig.send(r.OfferAnswered("a", "c1"))
    actions = rig.send(r.AgentCommandIssued("a", Break("12")))
    assert of(r.CancelOffer, actions) == []
    a = rig.router.agent("a")
    assert (a.status, a.state, a.call_id) == (AgentStatus.ON_BREAK, AgentState.ON_CALL, "c1")
    rig.send(r.CallEnded("c1"))
    rig.advance(60)
    assert offers(rig.send(r.CallQueued("c2", "q"))) == []


def test_break_while_logged_out_is_refused() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    actions = rig.send(r.AgentCommandIssued("a", Break(None)))
    [done] = of(r.CommandDone, actions)
    assert not done.accepted and "logged out" in done.detail
    assert of(r.AgentStateChanged, actions) == []


def test_login_twice_is_harmless() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    rig.ready("a")
    actions = rig.send(r.AgentCommandIssued("a", Login()))
    assert of(r.CommandDone, actions) == [r.CommandDone("a", Login(), True, "already logged in")]


def test_unregistered_agent_is_not_offered_and_loses_a_ringing_offer() -> None:
    rig = Rig([QueueConfig("q")], [agent("a"), agent("b")])
    rig.send(r.AgentCommandIssued("a", Login()))  # logged in, not registered
    assert offers(rig.send(r.CallQueued("c1", "q"))) == []
    assert offers(rig.send(r.AgentRegistered("a"))) == [("a", "c1")]
    actions = rig.send(r.AgentUnregistered("a"))
    assert of(r.CancelOffer, actions) == [r.CancelOffer("a", "c1", "unregistered")]
    assert rig.router.agent("a").status is AgentStatus.AVAILABLE  # not blamed


def test_caller_hangs_up_while_ringing() -> None:
    rig = Rig(
        [QueueConfig("q", announce_every=30, max_wait=300, overflow=ToVoicemail("vm"))],
        [agent("a")],
    )
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    actions = rig.send(r.CallAbandoned("c1"))
    assert of(r.CancelOffer, actions) == [r.CancelOffer("a", "c1", "caller_gone")]
    a = rig.router.agent("a")
    assert (a.status, a.state) == (AgentStatus.AVAILABLE, AgentState.IDLE)
    assert rig.router.entry("c1") is None
    assert rig.router.next_deadline() is None  # nothing left armed for the call
    assert rig.send(r.CallEnded("c1")) == []  # the engine's own hang-up report


# -- priority ---------------------------------------------------------------------------


def test_higher_priority_first_then_arrival_across_queues() -> None:
    rig = Rig([QueueConfig("q1"), QueueConfig("q2")], [agent("a")], policy=AgentPolicy(wrap_up=0))
    rig.send(r.CallQueued("low", "q1", priority=0))
    rig.advance(1)
    rig.send(r.CallQueued("other-queue", "q2", priority=0))
    rig.advance(1)
    rig.send(r.CallQueued("high", "q1", priority=5))
    [(_, call)] = offers(rig.ready("a"))
    got = [call]
    for _ in range(2):
        rig.send(r.OfferAnswered("a", call))
        [(_, call)] = offers(rig.send(r.CallEnded(call)))
        got.append(call)
    assert got == ["high", "low", "other-queue"]


# -- overflow ---------------------------------------------------------------------------


def test_max_wait_to_voicemail_removes_the_call() -> None:
    rig = Rig([QueueConfig("q", max_wait=60, overflow=ToVoicemail("1000"))])
    rig.send(r.CallQueued("c1", "q"))
    assert rig.advance(59.9) == []
    actions = rig.advance(0.1)
    assert actions == [r.Overflowed("c1", "q", ToVoicemail("1000"))]
    assert rig.router.entry("c1") is None
    assert rig.router.next_deadline() is None


def test_max_wait_to_another_queue_keeps_the_callers_place() -> None:
    rig = Rig(
        [
            QueueConfig("q1", max_wait=60, overflow=ToQueue("q2")),
            QueueConfig("q2", hold_music="jazz"),
        ],
        [agent("a")],
    )
    rig.send(r.CallQueued("c1", "q1"))
    rig.advance(10)
    rig.send(r.CallQueued("c2", "q2"))
    actions = rig.advance(50)
    assert actions == [r.Overflowed("c1", "q1", ToQueue("q2")), r.PlayHold("c1", "jazz")]
    entry = rig.router.entry("c1")
    assert entry is not None and entry.queue == "q2" and entry.entered_at == 60
    assert rig.router.position("c1") == 1 and rig.router.position("c2") == 2
    assert offers(rig.ready("a")) == [("a", "c1")]


def test_max_wait_offers_a_callback_and_the_caller_keeps_waiting() -> None:
    rig = Rig([QueueConfig("q", max_wait=60, overflow=OfferCallback())])
    rig.send(r.CallQueued("c1", "q"))
    assert rig.advance(120) == [r.Overflowed("c1", "q", OfferCallback())]  # once only
    assert rig.router.entry("c1") is not None


def test_max_wait_during_an_offer_waits_for_its_outcome() -> None:
    rig = Rig([QueueConfig("q", max_wait=10, overflow=ToVoicemail("vm"))], [agent("a")])
    rig.advance(1)
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(5)
    rig.ready("a")  # offered at t=6, rings until t=21
    assert of(r.Overflowed, rig.advance(10)) == []
    actions = rig.advance(5)  # RONA at 21: the wait limit has passed
    assert of(r.Overflowed, actions) == [r.Overflowed("c1", "q", ToVoicemail("vm"))]


def test_overflow_loop_is_refused() -> None:
    with pytest.raises(AcdConfigError, match="loop: a → b → c → a"):
        r.Router(
            [
                QueueConfig("a", max_wait=1, overflow=ToQueue("b")),
                QueueConfig("b", max_wait=1, overflow=ToQueue("c")),
                QueueConfig("c", max_wait=1, overflow=ToQueue("a")),
            ],
            now=0,
        )
    with pytest.raises(AcdConfigError, match="unknown queue 'nowhere'"):
        r.Router([QueueConfig("a", max_wait=1, overflow=ToQueue("nowhere"))], now=0)


# -- announcements ----------------------------------------------------------------------


def test_announcements_say_only_the_position_until_there_is_enough_data() -> None:
    rig = Rig([QueueConfig("q", announce_first=5, announce_every=30)])
    rig.send(r.CallQueued("c1", "q"))
    rig.send(r.CallQueued("c2", "q"))
    actions = rig.advance(36)
    assert of(r.Announce, actions) == [
        r.Announce("c1", "q", 1, None),
        r.Announce("c2", "q", 2, None),
        r.Announce("c1", "q", 1, None),
        r.Announce("c2", "q", 2, None),
    ]


def test_no_announcement_when_there_is_nothing_honest_to_say() -> None:
    rig = Rig([QueueConfig("q", announce_first=0, announce_every=30, announce_position=False)])
    rig.send(r.CallQueued("c1", "q"))
    assert of(r.Announce, rig.advance(100)) == []


def _handled(rig: Rig, count: int, talk: float, agents: tuple[str, ...]) -> None:
    for i in range(count):
        who = agents[i % len(agents)]
        rig.send(r.CallQueued(f"h{i}", "q"))
        rig.send(r.OfferAnswered(who, f"h{i}"))
        rig.advance(talk)
        rig.send(r.CallEnded(f"h{i}"))
        rig.advance(rig.router.policy.wrap_up)


def test_estimated_wait_from_handle_times_and_staffed_agents() -> None:
    queue = QueueConfig("q", announce_first=0, announce_every=60, stats_window=3600)
    rig = Rig([queue], [agent("a"), agent("b")], policy=AgentPolicy(wrap_up=10))
    rig.ready("a")
    _handled(rig, 9, talk=90, agents=("a",))
    rig.ready("b")
    rig.send(r.CallQueued("busy1", "q"))
    rig.send(r.CallQueued("busy2", "q"))
    rig.send(r.OfferAnswered("a", "busy1"))
    rig.send(r.OfferAnswered("b", "busy2"))
    rig.send(r.CallQueued("w1", "q"))
    [first] = of(r.Announce, rig.advance(0))
    assert first == r.Announce("w1", "q", 1, None)  # 9 handled calls: not enough
    rig.send(r.CallEnded("busy1"))  # the 10th: handle time 60 s talk... + 10 wrap-up
    rig.send(r.CallQueued("w2", "q"))
    rig.send(r.CallQueued("w3", "q"))
    actions = rig.advance(0)
    # handle times: nine of 100 s and one of 10 s → mean 91 s; 2 staffed agents
    stats = rig.router.queue_status("q", rig.now)
    assert stats.samples == 10 and stats.handle_time == pytest.approx(91.0)
    # w2 and w3 announce on entering (w1 is being offered to a once a's wrap-up ends)
    assert of(r.Announce, actions) == [
        r.Announce("w2", "q", 2, round(2 * 91 / 2)),
        r.Announce("w3", "q", 3, round(3 * 91 / 2)),
    ]


def test_queue_status_reports_erlang_c_once_there_is_data() -> None:
    rig = Rig(
        [QueueConfig("q", stats_window=3600, min_samples=10)],
        [agent("a"), agent("b")],
        policy=AgentPolicy(wrap_up=0),
    )
    rig.ready("a", "b")
    assert rig.router.queue_status("q", rig.now).expected_wait is None
    _handled(rig, 10, talk=60, agents=("a", "b"))
    status = rig.router.queue_status("q", rig.now)
    assert status.staffed == 2 and status.samples == 10
    # 10 arrivals over 600 s, AHT 60 s → 1 Erlang on 2 agents: C = 1/3, ASA = 20 s
    assert status.probability_of_wait == pytest.approx(1 / 3)
    assert status.expected_wait == pytest.approx(20.0)


def test_no_announcement_while_ringing_an_agent() -> None:
    rig = Rig([QueueConfig("q", announce_first=5, announce_every=10)], [agent("a")])
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    assert of(r.Announce, rig.advance(14)) == []
    assert of(r.Announce, rig.advance(1)) == [r.Announce("c1", "q", 1, None)]  # after RONA


# -- screen pop -------------------------------------------------------------------------


def test_offer_carries_the_screen_pop_with_sensitive_fields_masked() -> None:
    queue = QueueConfig("vax", sensitive=frozenset({"dob"}))
    rig = Rig([queue], [agent("a")])
    rig.ready("a")
    rig.advance(3)
    actions = rig.send(
        r.CallQueued(
            "c1",
            "vax",
            priority=2,
            caller="0400111222",
            variables={
                "booking.reference": "HK7P2Q",
                "medicare": "2950123456",
                "dob": "19800101",
                "pin": "1234",
                "note": "line1\r\nInjected: yes",
            },
            sensitive=frozenset({"medicare", "pin"}),
        )
    )
    [offer] = of(r.OfferCall, actions)
    assert offer.uri == "sip:a@hotline.test" and offer.ring_timeout == 15.0
    assert dict(offer.headers) == {
        "X-Hotline-Call-ID": "c1",
        "X-Hotline-Queue": "vax",
        "X-Hotline-Waited": "0",
        "X-Hotline-Priority": "2",
        "X-Hotline-Caller": "0400111222",
        "X-Hotline-Var-booking.reference": "HK7P2Q",
        "X-Hotline-Var-medicare": "*******456",
        "X-Hotline-Var-dob": "*****101",
        "X-Hotline-Var-pin": "****",
        "X-Hotline-Var-note": "line1 Injected: yes",
    }


# -- errors and presence ----------------------------------------------------------------


def test_unknown_names_raise_before_anything_changes() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")])
    with pytest.raises(UnknownQueue, match="unknown queue 'nope'"):
        rig.send(r.CallQueued("c1", "nope"))
    with pytest.raises(UnknownAgent, match="unknown agent 'zed'"):
        rig.send(r.AgentRegistered("zed"))
    rig.send(r.CallQueued("c1", "q"))
    with pytest.raises(DuplicateCall):
        rig.send(r.CallQueued("c1", "q"))
    assert rig.router.position("c1") == 1


def test_presence_events_go_through_the_router_with_one_deadline() -> None:
    rig = Rig(
        [QueueConfig("q")],
        experts=[Expert("e1", "Dr Ann", "sip:ann@hotline.test", "pharmacy", {"vax": 9})],
    )
    actions = rig.send(ExpertStatusSet("e1", PresenceStatus.AVAILABLE, until=120))
    assert actions == [
        PresenceChanged("e1", PresenceStatus.AVAILABLE, PresenceStatus.OFFLINE, None, 0.0)
    ]
    assert rig.router.next_deadline() == 120
    assert [v.expert.id for v in rig.router.directory.available_experts("vax")] == ["e1"]
    assert rig.advance(120) == [
        PresenceChanged("e1", PresenceStatus.OFFLINE, PresenceStatus.AVAILABLE, None, 120.0)
    ]


def test_agent_history_is_bounded() -> None:
    rig = Rig([QueueConfig("q")], [agent("a")], policy=AgentPolicy(history_size=5))
    rig.ready("a")
    for _ in range(10):
        rig.send(r.AgentCommandIssued("a", Break("lunch")))
        rig.send(r.AgentCommandIssued("a", Back()))
    history = rig.router.agent("a").history
    assert len(history) == 5 and history[-1].cause == "back"


def test_escalation_opens_at_its_deadline_whatever_the_float_rounding() -> None:
    rig = Rig([ESCALATING], [agent("a", vax=6)])
    rig.ready("a")
    rig.now = 2.05  # (2.05 + 30) − 2.05 < 30 in binary floating point
    assert (rig.now + 30) - rig.now < 30
    rig.send(r.CallQueued("c1", "q"))
    actions = rig.advance(30)
    assert offers(actions) == [("a", "c1")]
    assert rig.router.agent("a").state_since == 2.05 + 30


def test_reconfiguring_a_queue_rearms_its_callers() -> None:
    rig = Rig([QueueConfig("q")])
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(100)
    rig.router.set_queue(
        QueueConfig(
            "q", max_wait=60, overflow=ToVoicemail("vm"), announce_first=30, announce_every=45
        ),
        rig.now,
    )
    # the wait limit has passed: at once; the announcements continue on their schedule
    assert rig.router.next_deadline() == 100
    assert rig.advance(0) == [r.Overflowed("c1", "q", ToVoicemail("vm"))]
    announcing = QueueConfig("q", announce_first=30, announce_every=45)
    rig.router.set_queue(announcing, rig.now)
    rig.send(r.CallQueued("c2", "q"))
    assert of(r.Announce, rig.advance(70)) == [r.Announce("c2", "q", 1, None)]  # at 130
    rig.router.set_queue(announcing, rig.now)
    assert rig.router.next_deadline() == 100 + 30 + 45  # not repeated early


def test_removing_agents_and_queues_in_use_is_refused() -> None:
    rig = Rig(
        [QueueConfig("q"), QueueConfig("spill", max_wait=5, overflow=ToQueue("q"))], [agent("a")]
    )
    rig.ready("a")
    with pytest.raises(AgentStateError, match="must be logged out and idle"):
        rig.router.remove_agent("a")
    rig.send(r.AgentCommandIssued("a", Logout()))
    rig.router.remove_agent("a")
    with pytest.raises(UnknownAgent):
        rig.router.agent("a")
    with pytest.raises(AcdConfigError, match="'spill' overflows into 'q'"):
        rig.router.remove_queue("q")
    rig.send(r.CallQueued("c1", "spill"))
    with pytest.raises(AcdConfigError, match="still has 1 caller"):
        rig.router.remove_queue("spill")


def test_an_unknown_event_is_an_error() -> None:
    rig = Rig([QueueConfig("q")])
    with pytest.raises(AcdError, match="not an ACD event"):
        rig.router.handle("hello", 0.0)  # type: ignore[arg-type]


def test_new_skills_or_rules_offer_waiting_calls_at_once() -> None:
    queue = QueueConfig("q", skills=(SkillRequirement("vax", 8),))
    rig = Rig([queue], [agent("a", vax=5), agent("b", zh=9)])
    rig.ready("a", "b")
    rig.send(r.CallQueued("c1", "q"))
    rig.send(r.CallQueued("c2", "q"))
    assert offers(rig.router.update_agent(agent("a", vax=9), rig.now)) == [("a", "c1")]
    relaxed = QueueConfig("q", skills=(SkillRequirement("zh", 1),))
    assert offers(rig.router.set_queue(relaxed, rig.now)) == [("b", "c2")]
