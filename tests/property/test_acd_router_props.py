"""Property tests of the ACD router as a state machine: random sequences of calls,
hang-ups, agent commands, registrations, answers, rejections, time passing and callback
requests never raise, never offer a call to two agents at once, never give an agent two
calls, leave the router's own bookkeeping consistent, are deterministic — and once every
agent is available and answers, every caller still in line is served."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.acd import router as r
from hotline.acd.agents import (
    AgentCommand,
    AgentConfig,
    AgentPolicy,
    AgentState,
    Back,
    Break,
    Login,
    Logout,
    OfferFailure,
)
from hotline.acd.callbacks import CallbackFailure, CallbackPolicy, InMemoryCallbackRepository
from hotline.acd.queues import (
    EscalationStep,
    OfferCallback,
    QueueConfig,
    SkillRequirement,
    Strategy,
    ToQueue,
    ToVoicemail,
)

AGENTS = ("a", "b", "c", "d")
QUEUES = (
    QueueConfig(
        "general",
        strategy=Strategy.LONGEST_IDLE,
        max_wait=90,
        overflow=ToQueue("overflow"),
        announce_first=5,
        announce_every=20,
    ),
    QueueConfig(
        "overflow",
        strategy=Strategy.ROUND_ROBIN,
        max_wait=200,
        overflow=ToVoicemail("1000"),
        wrap_up=0,
    ),
    QueueConfig(
        "vax",
        strategy=Strategy.SKILLS_BASED,
        skills=(SkillRequirement("vax", 8),),
        escalation=(EscalationStep(20, (SkillRequirement("vax", 4),)), EscalationStep(40, ())),
        max_wait=120,
        overflow=OfferCallback(),
        min_samples=2,
    ),
    QueueConfig(
        "zh",
        strategy=Strategy.FEWEST_CALLS,
        skills=(SkillRequirement("zh", 1),),
        announce_first=0,
        announce_every=15,
        announce_position=False,
    ),
)
SKILLS = {"a": {"vax": 9}, "b": {"vax": 5, "zh": 3}, "c": {"zh": 8}, "d": {}}
NUMBERS = ("0400111222", "0400 111 222", "0400333444", "+61 2 6123 4567")

agent_ids = st.sampled_from(AGENTS)


@dataclass(frozen=True)
class Move:
    kind: str
    agent: str = ""
    index: int = 0
    queue: str = ""
    priority: int = 0
    command: AgentCommand = field(default_factory=Login)
    failure: OfferFailure = OfferFailure.REJECTED
    cb_failure: CallbackFailure = CallbackFailure.NO_ANSWER
    number: str = ""
    seconds: float = 0.0


indexes = st.integers(0, 30)
moves = st.lists(
    st.one_of(
        st.builds(
            Move,
            st.just("queue"),
            queue=st.sampled_from([q.name for q in QUEUES]),
            priority=st.integers(0, 3),
        ),
        st.builds(Move, st.just("hangup"), index=indexes),
        st.builds(Move, st.just("register"), agent_ids),
        st.builds(Move, st.just("unregister"), agent_ids),
        st.builds(
            Move,
            st.just("command"),
            agent_ids,
            command=st.sampled_from([Login(), Logout(), Break("lunch"), Break(None), Back()]),
        ),
        st.builds(Move, st.just("answer"), agent_ids),
        st.builds(Move, st.just("reject"), agent_ids, failure=st.sampled_from(list(OfferFailure))),
        st.builds(Move, st.just("timeout"), agent_ids),
        st.builds(Move, st.just("stale"), agent_ids, index=indexes),
        st.builds(Move, st.just("callback"), index=indexes, number=st.sampled_from(NUMBERS)),
        st.builds(Move, st.just("cb_answer"), index=indexes),
        st.builds(
            Move,
            st.just("cb_fail"),
            index=indexes,
            cb_failure=st.sampled_from(list(CallbackFailure)),
        ),
        st.builds(Move, st.just("cb_cancel"), index=indexes),
        st.builds(Move, st.just("wait"), seconds=st.sampled_from([0.5, 3.0, 16.0, 45.0, 130.0])),
    ),
    min_size=5,
    max_size=80,
)
starting = st.sets(agent_ids)  # agents registered and logged in before the first move


@dataclass
class Model:
    """What the engine can know from the actions: who was offered what."""

    offered: dict[str, str] = field(default_factory=dict)  # call → agent
    dialing: dict[str, str] = field(default_factory=dict)  # callback → agent
    connected: dict[str, str] = field(default_factory=dict)  # call → agent
    wrapping: set[str] = field(default_factory=set)  # agents in wrap-up
    calls: list[str] = field(default_factory=list)
    callbacks: list[str] = field(default_factory=list)
    ever_offered: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # hung up, voicemail, became a callback
    given_up: set[str] = field(default_factory=set)

    def busy(self, agent: str) -> bool:
        return (
            agent in self.offered.values()
            or agent in self.dialing.values()
            or agent in self.connected.values()
            or agent in self.wrapping
        )


class Harness:
    def __init__(self) -> None:
        self.now = 0.0
        self.router = r.Router(
            QUEUES,
            [AgentConfig(a, uri=f"sip:{a}@t", skills=SKILLS[a]) for a in AGENTS],
            now=0.0,
            policy=AgentPolicy(wrap_up=5, pause_after_busy=30),
            callback_policy=CallbackPolicy(max_attempts=2, retry_interval=60),
            repository=InMemoryCallbackRepository(),
        )
        self.model = Model()
        self.trace: list[r.Action] = []
        self.n = 0

    # -- sending and checking ---------------------------------------------------------

    def send(self, event: r.Event) -> None:
        self.observe(self.router.handle(event, self.now))

    def tick(self, seconds: float) -> None:
        target = self.now + seconds
        for _ in range(10_000):
            deadline = self.router.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.observe(self.router.handle_timer(self.now))
        else:
            raise AssertionError(f"deadlines keep falling due at {self.now}: a timer loop")
        self.now = target

    def observe(self, actions: list[r.Action]) -> None:
        m = self.model
        for action in actions:
            self.trace.append(action)
            if isinstance(action, r.OfferCall):
                assert action.call_id not in m.offered, "a call offered to two agents at once"
                assert action.call_id not in m.connected
                assert not m.busy(action.agent_id), "an agent given a second call"
                m.offered[action.call_id] = action.agent_id
                m.ever_offered.add(action.call_id)
            elif isinstance(action, r.StartCallback):
                assert action.callback_id not in m.dialing
                assert not m.busy(action.agent_id), "an agent given a second call"
                m.dialing[action.callback_id] = action.agent_id
                m.ever_offered.add(action.callback_id)
            elif isinstance(action, r.CancelOffer):
                assert m.offered.pop(action.call_id) == action.agent_id
            elif isinstance(action, r.CancelCallback):
                m.dialing.pop(action.callback_id, None)
            elif isinstance(action, r.CallbackGaveUp):
                m.given_up.add(action.callback_id)
            elif isinstance(action, r.Overflowed) and isinstance(action.target, ToVoicemail):
                m.gone.add(action.call_id)
            elif isinstance(action, r.AgentStateChanged):
                change = action.change
                if change.previous_state is AgentState.WRAP_UP and change.state is (
                    AgentState.IDLE
                ):
                    m.wrapping.discard(change.agent_id)
                if change.previous_state is AgentState.RESERVED and change.state is (
                    AgentState.IDLE
                ):
                    for cb, who in list(m.dialing.items()):
                        if who == change.agent_id:
                            del m.dialing[cb]
        self.check_router()

    def check_router(self) -> None:
        """The router's own bookkeeping agrees with itself."""
        ready = {a.id for a in self.router.agents.values() if a.ready}
        assert set(self.router._ready) == ready  # the index of ready agents is exact
        holders: dict[str, str] = {}
        for agent in self.router.agents.values():
            if agent.state in (AgentState.OFFERED, AgentState.RESERVED, AgentState.ON_CALL):
                assert agent.call_id is not None
                assert agent.call_id not in holders, "two agents hold the same call"
                holders[agent.call_id] = agent.id
            if agent.state is AgentState.IDLE:
                assert agent.call_id is None and agent.deadline is None
        for name, queue in self.router.queues.items():
            for entry in queue.entries.values():
                assert entry.queue == name and self.router.entry(entry.id) is entry
                if entry.offered_to is not None:
                    assert holders.get(entry.id) == entry.offered_to

    # -- moves ------------------------------------------------------------------------

    def pick(self, items: list[str], index: int) -> str | None:
        return items[index % len(items)] if items else None

    def play(self, move: Move) -> None:
        m = self.model
        kind = move.kind
        self.now += 0.01
        if kind == "queue":
            self.n += 1
            call = f"call{self.n}"
            m.calls.append(call)
            self.send(r.CallQueued(call, move.queue, move.priority, {"ref": f"R{self.n}"}))
        elif kind == "hangup":
            picked = self.pick(m.calls, move.index)
            if picked is not None:
                if picked in m.connected:
                    m.wrapping.add(m.connected.pop(picked))
                m.gone.add(picked)
                self.send(r.CallEnded(picked))
        elif kind == "register":
            self.send(r.AgentRegistered(move.agent))
        elif kind == "unregister":
            self.send(r.AgentUnregistered(move.agent))
        elif kind == "command":
            self.send(r.AgentCommandIssued(move.agent, move.command))
        elif kind in ("answer", "reject", "timeout"):
            agent = move.agent
            found = next((c for c, a in m.offered.items() if a == agent), None)
            if found is None:
                return
            del m.offered[found]
            if kind == "answer":
                m.connected[found] = agent
                self.send(r.OfferAnswered(agent, found))
            elif kind == "reject":
                self.send(r.OfferRejected(agent, found, move.failure))
            else:
                self.send(r.OfferTimedOut(agent, found))
        elif kind == "stale":
            picked = self.pick(m.calls, move.index)
            if picked is not None and m.offered.get(picked) != move.agent:
                before = len(self.trace)
                self.send(r.OfferAnswered(move.agent, picked))
                assert len(self.trace) == before, "a stale answer changed something"
        elif kind == "callback":
            picked = self.pick(m.calls, move.index)
            self.n += 1
            new_cb = f"cb{self.n}"
            m.callbacks.append(new_cb)
            if picked is not None and self.router.entry(picked) is not None:
                m.gone.add(picked)
            self.send(r.CallbackRequested(new_cb, move.number, call_id=picked, queue="vax"))
        elif kind in ("cb_answer", "cb_fail"):
            dialing = self.pick(sorted(m.dialing), move.index)
            if dialing is None:
                return
            agent = m.dialing.pop(dialing)
            if kind == "cb_answer":
                self.n += 1
                call = f"back{self.n}"
                m.connected[call] = agent
                m.calls.append(call)
                self.send(r.CallbackAnswered(dialing, call))
            else:
                self.send(r.CallbackFailed(dialing, move.cb_failure))
        elif kind == "cb_cancel":
            chosen = self.pick(m.callbacks, move.index)
            if chosen is None:
                return
            m.dialing.pop(chosen, None)
            m.gone.add(chosen)
            self.send(r.CallbackCancelled(chosen))
        else:
            self.tick(move.seconds)

    def drain(self) -> None:
        """Every agent available, every offer answered, every call ended after a while:
        the line must empty."""
        for agent in AGENTS:
            self.send(r.AgentRegistered(agent))
            self.send(r.AgentCommandIssued(agent, Login()))
            self.send(r.AgentCommandIssued(agent, Back()))
        m = self.model
        for _ in range(400):
            while m.offered or m.dialing or m.connected:  # answer what rings, end what talks
                for call, agent in list(m.offered.items()):
                    del m.offered[call]
                    m.connected[call] = agent
                    self.send(r.OfferAnswered(agent, call))
                for cb in list(m.dialing):
                    agent = m.dialing.pop(cb)
                    self.n += 1
                    call = f"back{self.n}"
                    m.connected[call] = agent
                    self.send(r.CallbackAnswered(cb, call))
                for call in list(m.connected):
                    m.wrapping.add(m.connected.pop(call))
                    self.send(r.CallEnded(call))
            if not any(q.entries for q in self.router.queues.values()):
                return
            deadline = self.router.next_deadline()
            assert deadline is not None, "callers in line and nothing that could serve them"
            self.tick(max(0.0, deadline - self.now) + 0.01)
        raise AssertionError("callers still in line after every agent became available")


def run(ready: set[str], steps: list[Move]) -> Harness:
    h = Harness()
    for agent in sorted(ready):
        h.send(r.AgentRegistered(agent))
        h.send(r.AgentCommandIssued(agent, Login()))
    for move in steps:
        h.play(move)
    return h


@settings(max_examples=300)
@given(starting, moves)
def test_random_sequences_keep_the_invariants_and_serve_everyone(
    ready: set[str], steps: list[Move]
) -> None:
    h = run(ready, steps)
    h.drain()
    m = h.model
    for call in m.calls:
        if call.startswith("call"):
            assert call in m.ever_offered or call in m.gone, f"{call} was never served"
    for cb in m.callbacks:
        record = h.router.book.get(cb)
        assert record is None, f"{cb} still active after the drain"


@settings(max_examples=100)
@given(starting, moves)
def test_the_same_events_give_the_same_actions(ready: set[str], steps: list[Move]) -> None:
    assert run(ready, steps).trace == run(ready, steps).trace
