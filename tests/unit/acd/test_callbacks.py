"""Callbacks: the book's state machine and store, and callbacks through the router —
the caller keeps their place, an agent is reserved before the caller is dialled,
de-duplication by number, retries, and surviving a restart."""

from __future__ import annotations

import pytest

from hotline.acd import router as r
from hotline.acd.agents import AgentPolicy, AgentState, AgentStatus, Login, Logout
from hotline.acd.callbacks import (
    CallbackBook,
    CallbackError,
    CallbackFailure,
    CallbackPolicy,
    CallbackState,
    InMemoryCallbackRepository,
    InvalidNumber,
    normalise_number,
)
from hotline.acd.errors import AcdConfigError, AcdError
from hotline.acd.queues import QueueConfig
from tests.unit.acd.rig import Rig, agent, of, offers

# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("0400 111 222", "0400111222"),
        ("(02) 6123-4567", "0261234567"),
        ("+61 400.111.222", "+61400111222"),
        ("000", "000"),
    ],
)
def test_numbers_are_normalised(raw: str, clean: str) -> None:
    assert normalise_number(raw) == clean


@pytest.mark.parametrize("raw", ["", "12", "0400 abc", "++61400", "1" * 21, "0400#1"])
def test_bad_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidNumber, match="not a callable number"):
        normalise_number(raw)


# -- the book ---------------------------------------------------------------------------


def make_book(max_attempts: int = 3) -> tuple[CallbackBook, InMemoryCallbackRepository]:
    repo = InMemoryCallbackRepository()
    return CallbackBook(repo, CallbackPolicy(max_attempts=max_attempts, retry_interval=60)), repo


def test_book_walks_retries_to_failure_and_saves_every_step() -> None:
    book, repo = make_book(max_attempts=2)
    book.create("cb1", "0400 111 222", "q", 0, 1.0, 1, now=1.0)
    book.dialing("cb1", "a", 10.0)
    record = book.failed("cb1", CallbackFailure.NO_ANSWER, 40.0)
    assert (record.state, record.attempts, record.due_at) == (CallbackState.RETRY_WAIT, 1, 100.0)
    book.due("cb1", 100.0)
    book.dialing("cb1", "b", 101.0)
    record = book.failed("cb1", CallbackFailure.BUSY, 120.0)
    assert (record.state, record.attempts, record.last_result) == (CallbackState.FAILED, 2, "busy")
    assert book.get("cb1") is None and book.active_for("0400111222") is None
    assert [s.state for s in repo.saved] == [
        CallbackState.WAITING,
        CallbackState.DIALING,
        CallbackState.RETRY_WAIT,
        CallbackState.WAITING,
        CallbackState.DIALING,
        CallbackState.FAILED,
    ]
    assert repo.load_active() == []


def test_book_agent_side_failure_is_not_a_try() -> None:
    book, _ = make_book()
    book.create("cb1", "0400111222", "q", 0, 1.0, 1, now=1.0)
    book.dialing("cb1", "a", 2.0)
    record = book.failed("cb1", CallbackFailure.AGENT_UNAVAILABLE, 3.0)
    assert (record.state, record.attempts, record.agent_id) == (CallbackState.WAITING, 0, None)


def test_book_refuses_transitions_that_make_no_sense() -> None:
    book, _ = make_book()
    book.create("cb1", "0400111222", "q", 0, 1.0, 1, now=1.0)
    with pytest.raises(CallbackError, match="cannot answered while waiting"):
        book.answered("cb1", 2.0)
    with pytest.raises(CallbackError, match="already has callback 'cb1'"):
        book.create("cb2", "0400-111-222", "q", 0, 1.0, 2, now=1.0)
    with pytest.raises(CallbackError, match="no active callback 'nope'"):
        book.due("nope", 1.0)


def test_book_place_only_improves() -> None:
    book, _ = make_book()
    book.create("cb1", "0400111222", "q", 0, 50.0, 5, now=50.0)
    assert book.improve_place("cb1", 0, 60.0, 6, 60.0).arrived_at == 50.0
    moved = book.improve_place("cb1", 0, 10.0, 1, 60.0)
    assert (moved.arrived_at, moved.seq) == (10.0, 1)
    urgent = book.improve_place("cb1", 3, 70.0, 9, 70.0)
    assert (urgent.priority, urgent.arrived_at) == (3, 70.0)


def test_book_restore_puts_an_interrupted_dial_back_in_line_and_drops_duplicates() -> None:
    book, repo = make_book()
    book.create("cb1", "0400111222", "q", 0, 1.0, 1, now=1.0)
    book.dialing("cb1", "a", 2.0)
    twin = repo.records["cb1"]
    from dataclasses import replace

    repo.records["cb0"] = replace(twin, id="cb0", arrived_at=5.0, state=CallbackState.WAITING)
    fresh = CallbackBook(repo, CallbackPolicy())
    restored = fresh.load(now=100.0)
    assert [(x.id, x.state, x.last_result) for x in restored] == [
        ("cb1", CallbackState.WAITING, "interrupted")
    ]
    assert repo.records["cb0"].state is CallbackState.CANCELLED


def test_policy_is_checked() -> None:
    with pytest.raises(AcdConfigError, match="max_attempts must be ≥ 1"):
        CallbackPolicy(max_attempts=0)
    with pytest.raises(AcdConfigError, match="retry_interval must be > 0"):
        CallbackPolicy(retry_interval=0)


# -- through the router -----------------------------------------------------------------


def rig_with(repo: InMemoryCallbackRepository | None = None, **policy: float) -> Rig:
    return Rig(
        [QueueConfig("q", wrap_up=0), QueueConfig("other")],
        [agent("a"), agent("b")],
        callback_policy=CallbackPolicy(max_attempts=2, retry_interval=120),
        policy=AgentPolicy(**policy),  # type: ignore[arg-type]
        repository=repo or InMemoryCallbackRepository(),
    )


def test_callback_keeps_the_callers_place_and_reserves_the_agent_first() -> None:
    rig = rig_with()
    rig.send(r.CallQueued("c1", "q", priority=1, variables={"ref": "HK7P2Q"}))
    rig.advance(1)
    rig.send(r.CallQueued("c2", "q", priority=1))
    rig.advance(4)
    actions = rig.send(r.CallbackRequested("cb1", "0400 111 222", call_id="c1"))
    assert actions == [r.CallbackRegistered("cb1", "0400111222", "q", "c1", False)]
    assert rig.router.entry("c1") is None
    assert rig.router.position("cb1") == 1 and rig.router.position("c2") == 2
    assert rig.send(r.CallEnded("c1")) == []  # the caller hangs up: nothing to do
    actions = rig.ready("a")
    kinds = [type(x).__name__ for x in actions if not isinstance(x, r.CommandDone)]
    # the reservation comes before the dial, and c2 waits
    assert kinds[-2:] == ["AgentStateChanged", "StartCallback"]
    [start] = of(r.StartCallback, actions)
    assert (start.agent_id, start.number, start.attempt) == ("a", "0400111222", 1)
    assert ("X-Hotline-Callback", "cb1") in start.headers
    assert ("X-Hotline-Var-ref", "HK7P2Q") in start.headers
    assert rig.router.agent("a").state is AgentState.RESERVED
    assert offers(actions) == []
    actions = rig.send(r.CallbackAnswered("cb1", "out-1"))
    assert of(r.Connected, actions) == [r.Connected("out-1", "a", "q", 5.0)]
    assert rig.router.agent("a").state is AgentState.ON_CALL
    assert rig.router.callbacks() == []
    assert offers(rig.send(r.CallEnded("out-1"))) == [("a", "c2")]  # wrap-up 0 in q


def test_callback_requests_are_deduplicated_by_number() -> None:
    repo = InMemoryCallbackRepository()
    rig = rig_with(repo)
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.advance(10)
    rig.send(r.CallQueued("c9", "q"))
    actions = rig.send(r.CallbackRequested("cb2", "0400 111 222", queue="q"))
    assert actions == [r.CallbackRegistered("cb1", "0400111222", "q", None, True)]
    actions = rig.send(r.CallbackRequested("cb3", "(0400) 111-222", call_id="c9"))
    assert actions == [r.CallbackRegistered("cb1", "0400111222", "q", "c9", True)]
    assert [x.id for x in rig.router.callbacks()] == ["cb1"]
    assert rig.router.entry("c9") is None  # the caller is covered by cb1
    assert set(repo.records) == {"cb1"}


def test_duplicate_request_from_an_earlier_caller_moves_the_callback_up() -> None:
    rig = rig_with()
    rig.send(r.CallQueued("early", "q"))
    rig.advance(5)
    rig.send(r.CallQueued("middle", "q"))
    rig.advance(5)
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))  # behind both
    assert rig.router.position("cb1") == 3
    rig.send(r.CallbackRequested("cb2", "0400111222", call_id="early"))
    assert rig.router.position("cb1") == 1


def test_unanswered_callback_is_retried_then_given_up() -> None:
    repo = InMemoryCallbackRepository()
    rig = rig_with(repo)
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.ready("a")
    rig.advance(30)
    actions = rig.send(r.CallbackFailed("cb1", CallbackFailure.NO_ANSWER))
    a = rig.router.agent("a")
    assert (a.status, a.state) == (AgentStatus.AVAILABLE, AgentState.IDLE)  # not blamed
    assert of(r.StartCallback, actions) == []
    # meanwhile the agent takes live calls
    assert offers(rig.send(r.CallQueued("c1", "q"))) == [("a", "c1")]
    rig.send(r.OfferAnswered("a", "c1"))
    rig.send(r.CallEnded("c1"))
    assert of(r.StartCallback, rig.advance(119)) == []
    [retry] = of(r.StartCallback, rig.advance(1))
    assert retry.attempt == 2 and rig.now == 150
    actions = rig.send(r.CallbackFailed("cb1", CallbackFailure.BUSY))
    assert of(r.CallbackGaveUp, actions) == [r.CallbackGaveUp("cb1", "0400111222", 2)]
    assert rig.router.entry("cb1") is None and rig.router.callbacks() == []
    assert repo.records["cb1"].state is CallbackState.FAILED


def test_waiting_retry_keeps_its_place_at_the_head() -> None:
    rig = rig_with()
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.ready("a")
    rig.send(r.CallbackFailed("cb1", CallbackFailure.NO_ANSWER))
    rig.send(r.AgentCommandIssued("a", Logout()))
    rig.send(r.CallQueued("c1", "q"))
    assert rig.router.position("c1") == 2  # cb1 is ahead, between tries
    rig.advance(120)
    actions = rig.send(r.AgentCommandIssued("a", Login()))
    assert [x.callback_id for x in of(r.StartCallback, actions)] == ["cb1"]
    assert offers(actions) == []


def test_reservation_timeout_cancels_the_dial_and_counts_a_try() -> None:
    rig = rig_with(reservation_timeout=45)
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.ready("a")
    actions = rig.advance(45)
    assert of(r.CancelCallback, actions) == [r.CancelCallback("cb1", "timeout")]
    record = rig.router.book.get("cb1")
    assert record is not None and (record.state, record.attempts) == (CallbackState.RETRY_WAIT, 1)
    assert rig.router.agent("a").state is AgentState.IDLE


def test_agent_unreachable_for_a_callback_goes_on_break_and_another_agent_is_reserved() -> None:
    rig = rig_with()
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.ready("a")
    rig.advance(1)
    rig.ready("b")  # idle, but a holds the callback
    actions = rig.send(r.CallbackFailed("cb1", CallbackFailure.AGENT_UNAVAILABLE))
    assert rig.router.agent("a").status is AgentStatus.ON_BREAK
    [start] = of(r.StartCallback, actions)
    assert (start.agent_id, start.attempt) == ("b", 1)


def test_cancelling_a_callback_being_dialled_frees_the_agent() -> None:
    rig = rig_with()
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    rig.ready("a")
    actions = rig.send(r.CallbackCancelled("cb1"))
    assert of(r.CancelCallback, actions) == [r.CancelCallback("cb1", "cancelled")]
    assert rig.router.agent("a").state is AgentState.IDLE
    assert rig.router.entry("cb1") is None
    assert rig.send(r.CallbackCancelled("cb1")) == []


def test_callbacks_survive_a_restart_in_their_place() -> None:
    repo = InMemoryCallbackRepository()
    rig = rig_with(repo)
    rig.send(r.CallQueued("c1", "q"))
    rig.advance(5)
    rig.send(r.CallbackRequested("cb1", "0400111222", call_id="c1"))
    rig.send(r.CallbackRequested("cb2", "0400333444", queue="q"))
    rig.ready("a")  # cb1 is being dialled when the process dies
    rig.send(r.CallbackFailed("cb1", CallbackFailure.NO_ANSWER))  # cb1 now between tries
    rig.send(r.CallbackFailed("cb2", CallbackFailure.NO_ANSWER))
    assert {x.id: x.state for x in repo.load_active()} == {
        "cb1": CallbackState.RETRY_WAIT,
        "cb2": CallbackState.RETRY_WAIT,
    }
    later = Rig(
        [QueueConfig("q", wrap_up=0), QueueConfig("other")],
        [agent("a")],
        callback_policy=CallbackPolicy(max_attempts=2, retry_interval=120),
        repository=repo,
    )
    later.now = 0.0
    assert later.router.position("cb1") == 1 and later.router.position("cb2") == 2
    assert later.router.next_deadline() == 125.0  # cb1's retry, as stored
    later.send(r.CallQueued("new", "q"))
    later.ready("a")
    assert offers(later.log) == [("a", "new")]  # both callbacks are between tries
    later.send(r.OfferAnswered("a", "new"))
    later.send(r.CallEnded("new"))
    [start] = of(r.StartCallback, later.advance(125))
    assert (start.callback_id, start.attempt) == ("cb1", 2)


def test_restart_with_a_callback_in_a_queue_no_longer_configured_is_refused() -> None:
    repo = InMemoryCallbackRepository()
    rig_with(repo).send(r.CallbackRequested("cb1", "0400111222", queue="other"))
    with pytest.raises(AcdConfigError, match=r"cb1 wait in queue\(s\) other"):
        r.Router([QueueConfig("q")], now=0, repository=repo)


def test_callback_request_errors() -> None:
    rig = rig_with()
    with pytest.raises(AcdError, match="not in line and no queue was given"):
        rig.send(r.CallbackRequested("cb1", "0400111222", call_id="ghost"))
    with pytest.raises(InvalidNumber):
        rig.send(r.CallbackRequested("cb1", "12", queue="q"))
    rig.send(r.CallbackRequested("cb1", "0400111222", queue="q"))
    with pytest.raises(CallbackError, match="'cb1' already exists"):
        rig.send(r.CallbackRequested("cb1", "0400999888", queue="q"))


def test_callback_requested_while_the_call_rings_an_agent() -> None:
    rig = rig_with()
    rig.ready("a")
    rig.send(r.CallQueued("c1", "q"))
    actions = rig.send(r.CallbackRequested("cb1", "0400111222", call_id="c1"))
    assert of(r.CancelOffer, actions) == [r.CancelOffer("a", "c1", "callback_requested")]
    # the same agent is reserved for the callback at once
    assert [x.agent_id for x in of(r.StartCallback, actions)] == ["a"]
