"""The ACD facade: events in, actions out, one deadline.

Owns the coupling of agents, queues, callbacks and the expert directory: which waiting
caller is offered to which ready agent and when, what happens when an offer fails (the
agent goes on a break, the caller goes back to their place — the head of the line),
wrap-up after each call, the wait limit and overflow, position and wait announcements,
and callbacks (an agent is reserved *first*, then the caller is dialled).

The engine feeds `Router.handle(event, now)` with what happened and performs the
actions it returns, in order; `Router.next_deadline()` is the earliest time the router
needs `handle_timer(now)`. Nothing here awaits, sleeps or reads a clock: the same events
at the same times give the same actions. Events about things that no longer apply (an
answer to an offer already withdrawn, a second hang-up) are ignored and return []; an
event naming an agent, queue or call the router does not know raises an `AcdError`
before anything changes.

Rules kept here, whatever the sequence of events:

* a call is offered to at most one agent at a time, and an agent holds at most one
  call (offered, reserved for a callback, connected or in wrap-up);
* the longest-waiting caller of the highest priority is served first, across queues,
  among those an agent is eligible for;
* an agent's status change (logout, break) or lost registration withdraws a ringing
  offer but never cuts a connected call;
* a call that leaves the router (answered, abandoned, overflowed to voicemail, turned
  into a callback) leaves no timer behind.

Must not know: SIP, RTP, sockets, databases (callbacks are stored through the
`CallbackRepository` the engine passes in) or the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hotline.acd.agents import (
    Agent,
    AgentChange,
    AgentCommand,
    AgentConfig,
    AgentPolicy,
    AgentState,
    AgentStatus,
    Back,
    Break,
    Login,
    Logout,
    OfferFailure,
)
from hotline.acd.callbacks import (
    CallbackBook,
    CallbackError,
    CallbackFailure,
    CallbackPolicy,
    CallbackRecord,
    CallbackRepository,
    CallbackState,
    InMemoryCallbackRepository,
    normalise_number,
)
from hotline.acd.errors import (
    AcdConfigError,
    AcdError,
    AgentStateError,
    DuplicateCall,
    UnknownAgent,
    UnknownQueue,
)
from hotline.acd.presence import (
    Directory,
    Expert,
    ExpertCallEnded,
    ExpertCallStarted,
    ExpertRegistration,
    ExpertStatusSet,
    PresenceChanged,
    PresenceEvent,
    PresencePublished,
)
from hotline.acd.queues import (
    EntryKind,
    OfferCallback,
    OverflowTarget,
    Queue,
    QueueConfig,
    QueueEntry,
    ToQueue,
    ToVoicemail,
    check_overflow_graph,
    choose_agent,
    round_seconds,
    staffed_for,
)
from hotline.acd.screenpop import screen_pop
from hotline.acd.timers import Deadlines

Value = bool | int | str | None

# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRegistered:
    """The agent's phone (or browser leg) can be reached."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentUnregistered:
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentCommandIssued:
    """A command from a star code (`agents.parse_star_code`) or the HTTP API."""

    agent_id: str
    command: AgentCommand


@dataclass(frozen=True, slots=True)
class CallQueued:
    """A caller joins `queue`. `priority`: higher is served first (the flow's 0–9).
    `variables`: what the agent's screen pop shows; names in `sensitive` are masked."""

    call_id: str
    queue: str
    priority: int = 0
    variables: Mapping[str, Value] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    caller: str = ""


@dataclass(frozen=True, slots=True)
class CallAbandoned:
    """The caller hung up while queued (same handling as `CallEnded`)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class OfferAnswered:
    agent_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """The agent's phone declined the offer: REJECTED (603/decline), BUSY (486/600),
    UNREACHABLE (404/480/transport) — or NO_ANSWER if the engine timed it out itself."""

    agent_id: str
    call_id: str
    reason: OfferFailure = OfferFailure.REJECTED


@dataclass(frozen=True, slots=True)
class OfferTimedOut:
    """The offer rang out on the SIP side (408, or the engine's own ring limit)."""

    agent_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over, whoever hung up and whatever stage it was at."""

    call_id: str


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    """Call back `number` instead of waiting. With `call_id` of a queued call the caller
    keeps that call's place (and queue, priority, variables); without one, `queue` is
    required and the request joins the end of the line. `callback_id` is minted by the
    engine (unique, stored); a number that already has an active request is not
    requested twice (`CallbackRegistered.duplicate`)."""

    callback_id: str
    number: str
    call_id: str | None = None
    queue: str | None = None
    priority: int = 0
    variables: Mapping[str, Value] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CallbackAnswered:
    """The caller answered the callback; `call_id` names the new call from now on."""

    callback_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class CallbackFailed:
    callback_id: str
    reason: CallbackFailure


@dataclass(frozen=True, slots=True)
class CallbackCancelled:
    callback_id: str


@dataclass(frozen=True, slots=True)
class Timer:
    pass


Event = (
    AgentRegistered
    | AgentUnregistered
    | AgentCommandIssued
    | CallQueued
    | CallAbandoned
    | OfferAnswered
    | OfferRejected
    | OfferTimedOut
    | CallEnded
    | CallbackRequested
    | CallbackAnswered
    | CallbackFailed
    | CallbackCancelled
    | Timer
    | PresenceEvent
)

# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferCall:
    """Ring the agent (`uri`) with the call; report OfferAnswered / OfferRejected /
    OfferTimedOut. The router withdraws the offer itself after `ring_timeout` seconds
    (`CancelOffer`). `headers`: the screen pop, sensitive values masked."""

    agent_id: str
    uri: str
    call_id: str
    queue: str
    ring_timeout: float
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing the agent (CANCEL). reason: no_answer (RONA), caller_gone,
    agent_logout, agent_break, unregistered, callback_requested."""

    agent_id: str
    call_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlayHold:
    """Play the queue's hold music to the caller (on joining a queue)."""

    call_id: str
    music: str


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the caller their position and/or estimated wait (seconds, rounded); a
    None part is not to be said (not asked for, or not known well enough)."""

    call_id: str
    queue: str
    position: int | None
    ewt_seconds: float | None


@dataclass(frozen=True, slots=True)
class Connected:
    """The call is with the agent (for the flow's `queue.outcome`, CDRs and metrics)."""

    call_id: str
    agent_id: str
    queue: str
    waited: float


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The caller waited `max_wait` in `queue`. ToQueue: the router has already moved
    the call (it keeps its place and now hears that queue's music); ToVoicemail: the
    call has left the router — take it to the mailbox; OfferCallback: the call stays in
    line — offer a callback, and send CallbackRequested if the caller accepts."""

    call_id: str
    queue: str
    target: OverflowTarget


@dataclass(frozen=True, slots=True)
class CallbackRegistered:
    """The request is recorded (`duplicate`: it merged into an active one with
    `callback_id`); the caller may be told and hang up."""

    callback_id: str
    number: str
    queue: str
    call_id: str | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StartCallback:
    """An agent is reserved for the callback: call the caller back and connect them to
    the agent; report CallbackAnswered or CallbackFailed."""

    callback_id: str
    agent_id: str
    uri: str
    number: str
    queue: str
    attempt: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CancelCallback:
    """Stop dialling the callback (the reservation ran out, or it was cancelled)."""

    callback_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallbackGaveUp:
    callback_id: str
    number: str
    attempts: int


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """An agent's status or state changed (presence, dashboards, metrics)."""

    change: AgentChange


@dataclass(frozen=True, slots=True)
class CommandDone:
    """The answer to an agent command (a confirmation tone, or the reason it failed)."""

    agent_id: str
    command: AgentCommand
    accepted: bool
    detail: str


Action = (
    OfferCall
    | CancelOffer
    | PlayHold
    | Announce
    | Connected
    | Overflowed
    | CallbackRegistered
    | StartCallback
    | CancelCallback
    | CallbackGaveUp
    | AgentStateChanged
    | CommandDone
    | PresenceChanged
)


@dataclass(frozen=True)
class QueueStatus:
    name: str
    waiting: int  # callers on the line, not being offered
    offered: int  # callers ringing an agent (or callbacks being dialled)
    callbacks: int  # callback requests in line (waiting or between tries)
    longest_wait: float  # seconds, of the callers on the line
    staffed: int  # agents working who may take the queue's calls (base level)
    ready: int  # of those, idle now
    handle_time: float | None  # mean, when the window has enough handled calls
    samples: int
    expected_wait: float | None  # Erlang C, for a caller arriving now
    probability_of_wait: float | None


@dataclass(eq=False)
class _Connected:
    agent_id: str
    queue: str
    answered_at: float


class Router:
    """See the module docstring. `now` at construction starts the statistics windows
    and restores stored callbacks."""

    def __init__(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentConfig] = (),
        *,
        now: float,
        policy: AgentPolicy | None = None,
        callback_policy: CallbackPolicy | None = None,
        repository: CallbackRepository | None = None,
        experts: Iterable[Expert] = (),
    ) -> None:
        self.policy = policy or AgentPolicy()
        configs: dict[str, QueueConfig] = {}
        for config in queues:
            if config.name in configs:
                raise AcdConfigError(f"queue {config.name!r} is defined twice")
            configs[config.name] = config
        check_overflow_graph(configs)
        self.queues: dict[str, Queue] = {name: Queue(c, now) for name, c in configs.items()}
        self.agents: dict[str, Agent] = {}
        for agent_config in agents:
            self.add_agent(agent_config, now)
        self.directory = Directory(experts, now)
        self.book = CallbackBook(
            repository if repository is not None else InMemoryCallbackRepository(),
            callback_policy or CallbackPolicy(),
        )
        self._entries: dict[str, QueueEntry] = {}
        self._connected: dict[str, _Connected] = {}
        self._timers = Deadlines()
        self._staffed_cache: dict[tuple[str, int], int] = {}
        self._ready: dict[str, Agent] = {}  # agents that may be offered a call now
        self._seq = 0
        self._now = now
        self._out: list[Action] = []
        self._restore_callbacks(now)
        self._handlers: dict[type, Callable[[Any], None]] = {
            AgentRegistered: self._on_registered,
            AgentUnregistered: self._on_unregistered,
            AgentCommandIssued: self._on_command,
            CallQueued: self._on_queued,
            CallAbandoned: self._on_call_gone,
            CallEnded: self._on_call_gone,
            OfferAnswered: self._on_answered,
            OfferRejected: self._on_rejected,
            OfferTimedOut: self._on_timed_out,
            CallbackRequested: self._on_callback_requested,
            CallbackAnswered: self._on_callback_answered,
            CallbackFailed: self._on_callback_failed,
            CallbackCancelled: self._on_callback_cancelled,
            Timer: self._on_timer,
        }

    # -- the public surface ---------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Feed one event that happened at `now`; returns the actions to perform."""
        self._now = now
        self._out = []
        self._staffed_cache.clear()
        if isinstance(
            event,
            ExpertRegistration
            | ExpertCallStarted
            | ExpertCallEnded
            | ExpertStatusSet
            | PresencePublished,
        ):
            self._out.extend(self.directory.handle(event, now))
            return self._out
        handler = self._handlers.get(type(event))
        if handler is None:
            raise AcdError(f"not an ACD event: {event!r}")
        handler(event)
        self._dispatch()
        return self._out

    def handle_timer(self, now: float) -> list[Action]:
        """Act on every deadline due at or before `now` (in the order they fell due)."""
        return self.handle(Timer(), now)

    def next_deadline(self) -> float | None:
        own = self._timers.next()
        presence = self.directory.next_deadline()
        if own is None:
            return presence
        return own if presence is None else min(own, presence)

    # -- configuration at run time ----------------------------------------------------

    def add_agent(self, config: AgentConfig, now: float) -> Agent:
        if config.id in self.agents:
            raise AcdConfigError(f"agent {config.id!r} is already known")
        agent = Agent(config, now, self.policy.history_size)
        self.agents[config.id] = agent
        return agent

    def update_agent(self, config: AgentConfig, now: float) -> list[Action]:
        """New skills, URI, name or wrap-up for a known agent; status and state stay.
        Returns the offers the new skills make possible."""
        agent = self._agent(config.id)
        self._now = now
        self._out = []
        self._staffed_cache.clear()
        agent.config = config
        self._dispatch()
        return self._out

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.status is not AgentStatus.LOGGED_OUT or agent.state is not AgentState.IDLE:
            raise AgentStateError(
                f"agent {agent_id!r} must be logged out and idle to be "
                f"removed ({agent.status.value}, {agent.state.value})"
            )
        del self.agents[agent_id]
        self._ready.pop(agent_id, None)
        self._staffed_cache.clear()
        self._timers.cancel(("agent", agent_id))
        self._timers.cancel(("break", agent_id))

    def set_queue(self, config: QueueConfig, now: float) -> list[Action]:
        """Add a queue or replace a queue's configuration; callers keep their places
        and their deadlines are re-armed under the new rules (a limit already passed
        falls due at once). Returns the offers the new rules make possible."""
        configs = {name: q.config for name, q in self.queues.items()}
        configs[config.name] = config
        check_overflow_graph(configs)
        self._now = now
        self._out = []
        self._staffed_cache.clear()
        queue = self.queues.get(config.name)
        if queue is None:
            self.queues[config.name] = Queue(config, now)
            return []
        queue.config = config
        queue.stats.window = config.stats_window
        queue.stats.min_samples = config.min_samples
        for entry in queue.entries.values():
            self._arm_entry(entry, now)
        self._dispatch()
        return self._out

    def remove_queue(self, name: str) -> None:
        queue = self._queue(name)
        if queue.entries:
            raise AcdConfigError(f"queue {name!r} still has {len(queue.entries)} caller(s) in line")
        for other in self.queues.values():
            if isinstance(other.config.overflow, ToQueue) and other.config.overflow.queue == name:
                raise AcdConfigError(f"queue {other.name!r} overflows into {name!r}")
        del self.queues[name]

    # -- queries ----------------------------------------------------------------------

    def agent(self, agent_id: str) -> Agent:
        return self._agent(agent_id)

    def entry(self, entry_id: str) -> QueueEntry | None:
        """A caller (call id) or callback (callback id) in line, or None."""
        return self._entries.get(entry_id)

    def connected_agent(self, call_id: str) -> str | None:
        conn = self._connected.get(call_id)
        return None if conn is None else conn.agent_id

    def position(self, entry_id: str) -> int | None:
        entry = self._entries.get(entry_id)
        return None if entry is None else self.queues[entry.queue].position(entry)

    def callbacks(self) -> list[CallbackRecord]:
        return self.book.active()

    def queue_status(self, name: str, now: float) -> QueueStatus:
        queue = self._queue(name)
        calls = [e for e in queue.entries.values() if e.kind is EntryKind.CALL]
        agents = list(self.agents.values())
        staffed = staffed_for(queue.config, agents, 0.0)
        stats = queue.stats
        return QueueStatus(
            name=name,
            waiting=sum(1 for e in calls if e.waiting),
            offered=sum(1 for e in queue.entries.values() if not e.waiting),
            callbacks=sum(
                1 for e in queue.entries.values() if e.kind is EntryKind.CALLBACK and e.waiting
            ),
            longest_wait=max((now - e.entered_at for e in calls), default=0.0),
            staffed=staffed,
            ready=sum(
                1 for a in agents if a.ready and queue.config.eligibility(a, 0.0) is not None
            ),
            handle_time=stats.handle_time(now),
            samples=stats.samples(now),
            expected_wait=stats.expected_wait(staffed, now),
            probability_of_wait=stats.probability_of_wait(staffed, now),
        )

    # -- event handlers ---------------------------------------------------------------

    def _on_registered(self, event: AgentRegistered) -> None:
        agent = self._agent(event.agent_id)
        self._emit(agent.set_registered(True, self._now))

    def _on_unregistered(self, event: AgentUnregistered) -> None:
        agent = self._agent(event.agent_id)
        if agent.state is AgentState.OFFERED:
            self._withdraw(agent, "unregistered")
        self._emit(agent.set_registered(False, self._now))

    def _on_command(self, event: AgentCommandIssued) -> None:
        agent = self._agent(event.agent_id)
        command = event.command
        now = self._now
        try:
            change: AgentChange | None
            if isinstance(command, Login):
                change = agent.login(now)
                detail = "logged in" if change else "already logged in"
            elif isinstance(command, Logout):
                if agent.state is AgentState.OFFERED:
                    self._withdraw(agent, "agent_logout")
                change = agent.logout(now)
                detail = "logged out" if change else "already logged out"
            elif isinstance(command, Break):
                if agent.status is AgentStatus.LOGGED_OUT:
                    raise AgentStateError(
                        f"agent {agent.id!r} is logged out: log in before a break"
                    )
                if agent.state is AgentState.OFFERED:
                    self._withdraw(agent, "agent_break")
                change = agent.start_break(command.reason, now)
                detail = "on break" + (f" ({command.reason})" if command.reason else "")
            else:
                assert isinstance(command, Back)
                change = agent.back(now)
                detail = "back" if change else "already available"
        except AgentStateError as exc:
            self._out.append(CommandDone(agent.id, command, False, str(exc)))
            return
        self._emit(change)
        self._out.append(CommandDone(agent.id, command, True, detail))

    def _on_queued(self, event: CallQueued) -> None:
        queue = self._queue(event.queue)
        if event.call_id in self._entries or event.call_id in self._connected:
            raise DuplicateCall(event.call_id)
        if isinstance(event.priority, bool) or not isinstance(event.priority, int):
            raise AcdError(
                f"call {event.call_id!r}: priority must be a whole number, got {event.priority!r}"
            )
        now = self._now
        entry = QueueEntry(
            id=event.call_id,
            kind=EntryKind.CALL,
            queue=queue.name,
            priority=event.priority,
            arrived_at=now,
            seq=self._next_seq(),
            entered_at=now,
            caller=event.caller,
            variables=dict(event.variables),
            sensitive=frozenset(event.sensitive),
        )
        self._add_entry(entry)
        queue.stats.record_arrival(now)
        self._out.append(PlayHold(entry.id, queue.config.hold_music))

    def _on_call_gone(self, event: CallEnded | CallAbandoned) -> None:
        now = self._now
        conn = self._connected.pop(event.call_id, None)
        if conn is not None:
            agent = self.agents[conn.agent_id]
            queue = self.queues.get(conn.queue)
            wrap = self._wrap_up(agent, queue)
            self._emit(agent.end_call(now, wrap))
            if queue is not None:
                queue.stats.record_handled(now, (now - conn.answered_at) + wrap)
            if wrap == 0:
                self._emit(agent.finish_wrap_up(now))
            return
        entry = self._entries.get(event.call_id)
        if entry is None or entry.kind is not EntryKind.CALL:
            return
        if entry.offered_to is not None:
            self._withdraw(self.agents[entry.offered_to], "caller_gone")
        self._remove_entry(entry)

    def _on_answered(self, event: OfferAnswered) -> None:
        agent = self._agent(event.agent_id)
        if agent.state is not AgentState.OFFERED or agent.call_id != event.call_id:
            return
        entry = self._entries[event.call_id]
        self._remove_entry(entry)
        self._emit(agent.answer(self._now))
        self._connected[entry.id] = _Connected(agent.id, entry.queue, self._now)
        self._out.append(Connected(entry.id, agent.id, entry.queue, self._now - entry.arrived_at))

    def _on_rejected(self, event: OfferRejected) -> None:
        agent = self._agent(event.agent_id)
        if agent.state is AgentState.OFFERED and agent.call_id == event.call_id:
            self._offer_failed(agent, event.reason, cancel=False)

    def _on_timed_out(self, event: OfferTimedOut) -> None:
        agent = self._agent(event.agent_id)
        if agent.state is AgentState.OFFERED and agent.call_id == event.call_id:
            self._offer_failed(agent, OfferFailure.NO_ANSWER, cancel=False)

    def _on_callback_requested(self, event: CallbackRequested) -> None:
        now = self._now
        number = normalise_number(event.number)
        if self.book.get(event.callback_id) is not None or event.callback_id in self._entries:
            raise CallbackError(f"callback {event.callback_id!r} already exists")
        source = self._entries.get(event.call_id) if event.call_id is not None else None
        if source is not None and source.kind is not EntryKind.CALL:
            source = None
        if source is None:
            if event.queue is None:
                raise AcdError(
                    f"callback {event.callback_id!r}: call {event.call_id!r} is "
                    "not in line and no queue was given"
                )
            queue = self._queue(event.queue)
            priority, arrived, seq = event.priority, now, self._next_seq()
            variables: dict[str, Value] = dict(event.variables)
            sensitive = frozenset(event.sensitive)
            entered = now
        else:
            queue = self.queues[source.queue]
            priority, arrived, seq = source.priority, source.arrived_at, source.seq
            variables = {**source.variables, **event.variables}
            sensitive = source.sensitive | event.sensitive
            entered = source.entered_at
            if source.offered_to is not None:
                self._withdraw(self.agents[source.offered_to], "callback_requested")
            self._remove_entry(source)
        existing = self.book.active_for(number)
        if existing is not None:
            record = self.book.improve_place(existing.id, priority, arrived, seq, now)
            entry = self._entries[existing.id]
            entry.priority, entry.arrived_at, entry.seq = (
                record.priority,
                record.arrived_at,
                record.seq,
            )
            self._out.append(
                CallbackRegistered(existing.id, number, existing.queue, event.call_id, True)
            )
            return
        record = self.book.create(
            event.callback_id, number, queue.name, priority, arrived, seq, now, variables, sensitive
        )
        self._add_entry(
            QueueEntry(
                id=record.id,
                kind=EntryKind.CALLBACK,
                queue=queue.name,
                priority=priority,
                arrived_at=arrived,
                seq=seq,
                entered_at=entered,
                caller=number,
                variables=variables,
                sensitive=sensitive,
            )
        )
        self._out.append(CallbackRegistered(record.id, number, queue.name, event.call_id, False))

    def _on_callback_answered(self, event: CallbackAnswered) -> None:
        record = self.book.get(event.callback_id)
        if record is None or record.state is not CallbackState.DIALING:
            return
        if event.call_id in self._connected or event.call_id in self._entries:
            raise DuplicateCall(event.call_id)
        assert record.agent_id is not None
        agent = self.agents[record.agent_id]
        self.book.answered(record.id, self._now)
        self._remove_entry(self._entries[record.id])
        self._emit(agent.connect(event.call_id, self._now))
        self._connected[event.call_id] = _Connected(agent.id, record.queue, self._now)
        self._out.append(
            Connected(event.call_id, agent.id, record.queue, self._now - record.arrived_at)
        )

    def _on_callback_failed(self, event: CallbackFailed) -> None:
        record = self.book.get(event.callback_id)
        if record is not None and record.state is CallbackState.DIALING:
            self._callback_failed(record, event.reason)

    def _on_callback_cancelled(self, event: CallbackCancelled) -> None:
        record = self.book.get(event.callback_id)
        if record is None:
            return
        if record.state is CallbackState.DIALING:
            self._release_reserved(record)
            self._out.append(CancelCallback(record.id, "cancelled"))
        self.book.cancel(record.id, self._now)
        entry = self._entries.get(record.id)
        if entry is not None:
            self._remove_entry(entry)

    def _on_timer(self, _: Timer) -> None:
        now = self._now
        self._out.extend(self.directory.handle_timer(now))
        mark = self._timers.mark()  # deadlines armed from here on wait for the next call
        while (key := self._timers.pop_due(now, mark)) is not None:
            assert isinstance(key, tuple)
            kind, ident = key
            if kind == "agent":
                self._agent_deadline(self.agents[ident])
            elif kind == "break":
                agent = self.agents[ident]
                if agent.status is AgentStatus.ON_BREAK:
                    self._emit(agent.back(now, cause="break_over"))
            elif kind == "announce":
                self._announce(self._entries[ident])
                continue  # changes nothing an offer depends on
            elif kind == "maxwait":
                self._max_wait_reached(self._entries[ident])
            elif kind == "escalate":
                self._arm_escalation(self._entries[ident], now)
            else:
                assert kind == "retry"
                record = self.book.get(ident)
                if record is not None and record.state is CallbackState.RETRY_WAIT:
                    self.book.due(ident, now)
                    self._entries[ident].held = False
            self._dispatch()

    # -- offers -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Offer waiting callers to ready agents: callers in order of priority then
        arrival, each to the agent its queue's strategy picks among the ready ones."""
        if not self._ready:
            return
        ready = list(self._ready.values())
        line = sorted(
            (e for e in self._entries.values() if e.waiting and not e.held), key=lambda e: e.key
        )
        now = self._now
        # the ready agents only get fewer in this pass: a queue and escalation level that
        # found nobody will find nobody for the callers behind either
        nobody: set[tuple[str, int]] = set()
        for entry in line:
            queue = self.queues[entry.queue]
            waited = now - entry.entered_at
            reach = (queue.name, queue.config.level_count(waited))
            if reach in nobody:
                continue
            agent = choose_agent(queue.config, ready, waited, queue.last_round_robin)
            if agent is None:
                nobody.add(reach)
                continue
            ready.remove(agent)
            queue.last_round_robin = agent.id
            if entry.kind is EntryKind.CALL:
                self._offer(entry, agent, queue)
            else:
                self._reserve(entry, agent, queue)
            if not ready:
                return

    def _offer(self, entry: QueueEntry, agent: Agent, queue: Queue) -> None:
        ring = queue.config.ring_timeout or self.policy.ring_timeout
        self._emit(agent.offer(entry.id, self._now, ring))
        entry.offered_to = agent.id
        headers = screen_pop(
            call_id=entry.id,
            queue=queue.name,
            waited=self._now - entry.arrived_at,
            priority=entry.priority,
            caller=entry.caller,
            variables=entry.variables,
            sensitive=entry.sensitive | queue.config.sensitive,
        )
        self._out.append(OfferCall(agent.id, agent.config.uri, entry.id, queue.name, ring, headers))

    def _reserve(self, entry: QueueEntry, agent: Agent, queue: Queue) -> None:
        self._emit(agent.reserve(entry.id, self._now, self.policy.reservation_timeout))
        entry.offered_to = agent.id
        record = self.book.dialing(entry.id, agent.id, self._now)
        headers = screen_pop(
            call_id=entry.id,
            queue=queue.name,
            waited=self._now - entry.arrived_at,
            priority=entry.priority,
            caller=record.number,
            variables=entry.variables,
            sensitive=entry.sensitive | queue.config.sensitive,
            callback_id=entry.id,
        )
        self._out.append(
            StartCallback(
                entry.id,
                agent.id,
                agent.config.uri,
                record.number,
                queue.name,
                record.attempts + 1,
                headers,
            )
        )

    def _withdraw(self, agent: Agent, reason: str) -> None:
        """Take back a ringing offer without blaming the agent; the caller keeps their
        place."""
        call_id = agent.call_id
        assert call_id is not None
        self._emit(agent.withdraw_offer(self._now))
        self._out.append(CancelOffer(agent.id, call_id, reason))
        entry = self._entries.get(call_id)
        if entry is not None:
            entry.offered_to = None

    def _offer_failed(self, agent: Agent, failure: OfferFailure, *, cancel: bool) -> None:
        """RONA, reject, busy, unreachable: the agent goes on a break, the caller goes
        back to their place in line (the head, unless someone more urgent came)."""
        now = self._now
        call_id = agent.call_id
        assert call_id is not None
        # status first, so that no change ever shows the agent available and idle
        pause = self.policy.pause_after(failure)
        self._emit(
            agent.start_break(
                failure.value, now, None if pause is None else now + pause, cause=failure.value
            )
        )
        self._emit(agent.offer_failed(now))
        if cancel:
            self._out.append(CancelOffer(agent.id, call_id, failure.value))
        entry = self._entries[call_id]
        entry.offered_to = None
        config = self.queues[entry.queue].config
        if config.max_wait is not None and now >= entry.entered_at + config.max_wait:
            self._max_wait_reached(entry)

    def _agent_deadline(self, agent: Agent) -> None:
        if agent.state is AgentState.OFFERED:
            self._offer_failed(agent, OfferFailure.NO_ANSWER, cancel=True)
        elif agent.state is AgentState.RESERVED:
            assert agent.call_id is not None
            record = self.book.get(agent.call_id)
            assert record is not None
            self._out.append(CancelCallback(record.id, "timeout"))
            self._callback_failed(record, CallbackFailure.NO_ANSWER)
        elif agent.state is AgentState.WRAP_UP:
            self._emit(agent.finish_wrap_up(self._now))

    # -- callbacks --------------------------------------------------------------------

    def _release_reserved(self, record: CallbackRecord) -> Agent | None:
        agent = self.agents.get(record.agent_id or "")
        if agent is None or agent.state is not AgentState.RESERVED or agent.call_id != record.id:
            return None
        self._emit(agent.release(self._now))
        return agent

    def _callback_failed(self, record: CallbackRecord, failure: CallbackFailure) -> None:
        now = self._now
        agent = self.agents.get(record.agent_id or "")
        if (
            failure is CallbackFailure.AGENT_UNAVAILABLE
            and agent is not None
            and agent.state is AgentState.RESERVED
            and agent.call_id == record.id
            and agent.status is not AgentStatus.LOGGED_OUT
        ):
            pause = self.policy.pause_after(OfferFailure.NO_ANSWER)
            self._emit(
                agent.start_break(
                    OfferFailure.NO_ANSWER.value,
                    now,
                    None if pause is None else now + pause,
                    cause=OfferFailure.NO_ANSWER.value,
                )
            )
        self._release_reserved(record)
        entry = self._entries[record.id]
        entry.offered_to = None
        record = self.book.failed(record.id, failure, now)
        if record.state is CallbackState.RETRY_WAIT:
            assert record.due_at is not None
            entry.held = True
            self._timers.set(("retry", record.id), record.due_at)
        elif record.state is CallbackState.FAILED:
            self._remove_entry(entry)
            self._out.append(CallbackGaveUp(record.id, record.number, record.attempts))

    def _restore_callbacks(self, now: float) -> None:
        records = self.book.load(now)
        orphans = sorted(r.id for r in records if r.queue not in self.queues)
        if orphans:
            queues = sorted({r.queue for r in records if r.queue not in self.queues})
            raise AcdConfigError(
                f"stored callbacks {', '.join(orphans)} wait in queue(s) "
                f"{', '.join(queues)}, which are not configured"
            )
        for record in records:
            self._seq = max(self._seq, record.seq + 1)
            entry = QueueEntry(
                id=record.id,
                kind=EntryKind.CALLBACK,
                queue=record.queue,
                priority=record.priority,
                arrived_at=record.arrived_at,
                seq=record.seq,
                entered_at=record.arrived_at,
                caller=record.number,
                variables=dict(record.variables),
                sensitive=record.sensitive,
                held=record.state is CallbackState.RETRY_WAIT,
            )
            self._add_entry(entry)
            if record.state is CallbackState.RETRY_WAIT:
                self._timers.set(
                    ("retry", record.id), record.due_at if record.due_at is not None else now
                )

    # -- the line ---------------------------------------------------------------------

    def _add_entry(self, entry: QueueEntry) -> None:
        self.queues[entry.queue].entries[entry.id] = entry
        self._entries[entry.id] = entry
        self._arm_entry(entry, self._now)

    def _remove_entry(self, entry: QueueEntry) -> None:
        del self.queues[entry.queue].entries[entry.id]
        del self._entries[entry.id]
        for kind in ("announce", "maxwait", "escalate", "retry"):
            self._timers.cancel((kind, entry.id))

    def _arm_entry(self, entry: QueueEntry, now: float) -> None:
        """(Re)arm an entry's deadlines for its current queue."""
        config = self.queues[entry.queue].config
        if entry.kind is EntryKind.CALL:
            first = config.first_announcement()
            waited = now - entry.entered_at
            if first is None:
                self._timers.cancel(("announce", entry.id))
            else:
                when = entry.entered_at + first
                if when < now:  # a new schedule for a caller already waiting
                    every = config.announce_every
                    when = (
                        now
                        if every is None
                        else entry.entered_at + first + every * (-(-(waited - first) // every))
                    )
                self._timers.set(("announce", entry.id), when)
            if config.max_wait is None or entry.overflowed:
                self._timers.cancel(("maxwait", entry.id))
            else:
                self._timers.set(
                    ("maxwait", entry.id), max(now, entry.entered_at + config.max_wait)
                )
        self._arm_escalation(entry, now)

    def _arm_escalation(self, entry: QueueEntry, now: float) -> None:
        config = self.queues[entry.queue].config
        step = config.next_escalation(now - entry.entered_at)
        if step is None:
            self._timers.cancel(("escalate", entry.id))
        else:
            self._timers.set(("escalate", entry.id), entry.entered_at + step)

    def _announce(self, entry: QueueEntry) -> None:
        queue = self.queues[entry.queue]
        config = queue.config
        now = self._now
        if config.announce_every is not None:
            self._timers.set(("announce", entry.id), now + config.announce_every)
        if not entry.waiting:
            return  # ringing an agent: nothing to say
        position = queue.position(entry)
        ewt = None
        if config.announce_wait:
            staffed = self._staffed(config, now - entry.entered_at)
            ewt = round_seconds(queue.stats.wait_at_position(position, staffed, now))
        said_position = position if config.announce_position else None
        if said_position is None and ewt is None:
            return  # nothing honest to say
        self._out.append(Announce(entry.id, queue.name, said_position, ewt))

    def _max_wait_reached(self, entry: QueueEntry) -> None:
        if entry.offered_to is not None or entry.overflowed:
            return  # the offer decides; checked again if it fails
        queue = self.queues[entry.queue]
        target = queue.config.overflow
        if target is None:
            return
        entry.overflowed = True
        self._timers.cancel(("maxwait", entry.id))
        self._out.append(Overflowed(entry.id, queue.name, target))
        if isinstance(target, ToVoicemail):
            self._remove_entry(entry)
        elif isinstance(target, ToQueue):
            self._remove_entry(entry)
            destination = self.queues[target.queue]
            entry.queue = destination.name
            entry.entered_at = self._now
            entry.overflowed = False
            self._add_entry(entry)
            destination.stats.record_arrival(self._now)
            self._out.append(PlayHold(entry.id, destination.config.hold_music))
        else:
            assert isinstance(target, OfferCallback)

    # -- helpers ----------------------------------------------------------------------

    def _emit(self, change: AgentChange | None) -> None:
        """Report an agent change and keep the agent's deadlines in step with it."""
        if change is None:
            return
        self._staffed_cache.clear()
        agent = self.agents[change.agent_id]
        if agent.ready:
            self._ready[agent.id] = agent
        else:
            self._ready.pop(agent.id, None)
        if agent.deadline is None:
            self._timers.cancel(("agent", agent.id))
        else:
            self._timers.set(("agent", agent.id), agent.deadline)
        if agent.break_until is None:
            self._timers.cancel(("break", agent.id))
        else:
            self._timers.set(("break", agent.id), agent.break_until)
        self._out.append(AgentStateChanged(change))

    def _staffed(self, config: QueueConfig, waited: float) -> int:
        """`staffed_for`, remembered until an agent changes (announcements ask it for
        every caller of a queue at once)."""
        key = (config.name, config.level_count(waited))
        count = self._staffed_cache.get(key)
        if count is None:
            count = staffed_for(config, self.agents.values(), waited)
            self._staffed_cache[key] = count
        return count

    def _wrap_up(self, agent: Agent, queue: Queue | None) -> float:
        if queue is not None and queue.config.wrap_up is not None:
            return queue.config.wrap_up
        if agent.config.wrap_up is not None:
            return agent.config.wrap_up
        return self.policy.wrap_up

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise UnknownQueue(name)
        return queue
