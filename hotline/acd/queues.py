"""Queues: who waits, in what order, which agents may take them, and how long the wait
is likely to be.

Owns:

* `QueueConfig` — the skills a queue needs (each with a minimum proficiency), the
  routing strategy, the escalation steps that widen the requirement the longer a caller
  waits, the maximum wait and where a caller goes after it (another queue, voicemail,
  an offer of a callback), and the announcement schedule.
* The waiting line (`Queue`, `QueueEntry`): callers by priority (higher first), then by
  the time they first arrived — a caller sent back after an agent did not answer, moved
  to an overflow queue, or turned into a callback keeps that place.
* Agent choice (`choose_agent`) for the four strategies: longest idle, round robin,
  fewest calls, skills-based (best proficiency first). Escalation applies to every
  strategy: level 0 is the queue's own requirement, level *k* the *k*-th step, and an
  agent matching an earlier level is always preferred to one matching a later level;
  the strategy orders agents within a level.
* Wait statistics (`WaitStats`): handle times and arrivals in a rolling window, giving
  the estimated wait of a caller at a position (only with at least `min_samples`
  handled calls in the window — otherwise None: nothing honest to say) and the Erlang C
  expected wait of a new caller.

Must not know: calls beyond their ids and variables, SIP, the clock, or how entries are
turned into offers (the router does that).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING

from hotline.acd import erlang
from hotline.acd.agents import MAX_PROFICIENCY, MIN_PROFICIENCY, check_seconds
from hotline.acd.errors import AcdConfigError

if TYPE_CHECKING:
    from hotline.acd.agents import Agent

Value = bool | int | str | None
TIME_EPSILON = 1e-6  # seconds: below any meaningful wait, above float rounding of times


class Strategy(Enum):
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    FEWEST_CALLS = "fewest_calls"
    SKILLS_BASED = "skills_based"


@dataclass(frozen=True)
class SkillRequirement:
    skill: str
    min_proficiency: int = MIN_PROFICIENCY

    def __post_init__(self) -> None:
        if not self.skill:
            raise AcdConfigError("a skill requirement needs a skill name")
        level = self.min_proficiency
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not (MIN_PROFICIENCY <= level <= MAX_PROFICIENCY)
        ):
            raise AcdConfigError(
                f"skill {self.skill!r}: minimum proficiency must be from {MIN_PROFICIENCY} "
                f"to {MAX_PROFICIENCY}, got {level!r}"
            )


Requirement = tuple[SkillRequirement, ...]  # all of them; () = any agent of the queue


@dataclass(frozen=True)
class EscalationStep:
    """After a caller has waited `after` seconds in the queue, agents meeting `skills`
    (all of them) may take the call too — in addition to every earlier level."""

    after: float
    skills: Requirement = ()


@dataclass(frozen=True)
class ToQueue:
    """Move the caller to another queue (they keep their place by arrival time)."""

    queue: str


@dataclass(frozen=True)
class ToVoicemail:
    """The caller leaves the ACD for a voicemail box."""

    mailbox: str


@dataclass(frozen=True)
class OfferCallback:
    """Offer the caller a callback; they stay in line until they accept one."""


OverflowTarget = ToQueue | ToVoicemail | OfferCallback


@dataclass(frozen=True)
class QueueConfig:
    """A queue. Times are in seconds.

    `members`: agent ids allowed to take calls from this queue (None: any agent with the
    skills); in round robin the rotation follows this order (else agent ids sorted).
    `announce_first` / `announce_every`: the first position/wait announcement after the
    caller enters the queue, then the interval (None: no further ones); both None: no
    announcements. `sensitive`: variable names masked in the agent's screen pop (on top
    of those the call marks sensitive). `stats_window` / `min_samples`: the rolling
    window of handled calls the wait estimate uses, and how many it needs."""

    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    skills: Requirement = ()
    escalation: tuple[EscalationStep, ...] = ()
    members: tuple[str, ...] | None = None
    max_wait: float | None = None
    overflow: OverflowTarget | None = None
    announce_first: float | None = None
    announce_every: float | None = None
    announce_position: bool = True
    announce_wait: bool = True
    hold_music: str = "default"
    wrap_up: float | None = None  # overrides the agent's and the policy's
    ring_timeout: float | None = None  # overrides the policy's
    stats_window: float = 1800.0
    min_samples: int = 10
    sensitive: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        owner = f"queue {self.name!r}"
        if not self.name:
            raise AcdConfigError("a queue needs a non-empty name")
        _check_requirement(owner, self.skills)
        previous = 0.0
        for i, step in enumerate(self.escalation, 1):
            check_seconds(f"{owner} escalation step {i}", "after", step.after, zero=False)
            if step.after <= previous:
                raise AcdConfigError(
                    f"{owner}: escalation step {i} comes after {step.after:g} s, not later "
                    f"than the step before it ({previous:g} s); steps must be in order"
                )
            previous = step.after
            _check_requirement(f"{owner} escalation step {i}", step.skills)
        check_seconds(owner, "max_wait", self.max_wait, zero=False)
        if (self.max_wait is None) != (self.overflow is None):
            raise AcdConfigError(
                f"{owner}: max_wait and overflow go together (max_wait="
                f"{self.max_wait!r}, overflow={self.overflow!r})"
            )
        if isinstance(self.overflow, ToQueue) and self.overflow.queue == self.name:
            raise AcdConfigError(f"{owner} overflows into itself")
        check_seconds(owner, "announce_first", self.announce_first)
        check_seconds(owner, "announce_every", self.announce_every, zero=False)
        if (self.announce_first is not None or self.announce_every is not None) and not (
            self.announce_position or self.announce_wait
        ):
            raise AcdConfigError(
                f"{owner}: announcements are scheduled but neither the "
                "position nor the wait is to be announced"
            )
        check_seconds(owner, "wrap_up", self.wrap_up)
        check_seconds(owner, "ring_timeout", self.ring_timeout, zero=False)
        check_seconds(owner, "stats_window", self.stats_window, zero=False)
        if (
            isinstance(self.min_samples, bool)
            or not isinstance(self.min_samples, int)
            or (self.min_samples < 1)
        ):
            raise AcdConfigError(f"{owner}: min_samples must be ≥ 1, got {self.min_samples!r}")
        if self.members is not None and len(set(self.members)) != len(self.members):
            raise AcdConfigError(f"{owner}: an agent is listed twice in members")

    @cached_property
    def levels(self) -> tuple[Requirement, ...]:
        return (self.skills, *(step.skills for step in self.escalation))

    @cached_property
    def _members(self) -> frozenset[str] | None:
        return None if self.members is None else frozenset(self.members)

    def level_count(self, waited: float) -> int:
        """How many levels are open after `waited` seconds (1 = only the queue's own).
        A step opens at its time give or take `TIME_EPSILON`: `waited` is a difference
        of two clock readings and must not miss the deadline armed for it."""
        return 1 + sum(1 for step in self.escalation if step.after <= waited + TIME_EPSILON)

    def next_escalation(self, waited: float) -> float | None:
        """Seconds of waiting at which the next level opens (None: all are open)."""
        for step in self.escalation:
            if step.after > waited + TIME_EPSILON:
                return step.after
        return None

    def first_announcement(self) -> float | None:
        return self.announce_first if self.announce_first is not None else self.announce_every

    def eligibility(self, agent: Agent, waited: float) -> int | None:
        """The first level whose requirement the agent meets after `waited` seconds, or
        None when the agent may not take this queue's call (yet)."""
        return self.level_of(agent, self.level_count(waited))

    def level_of(self, agent: Agent, levels_open: int) -> int | None:
        """The first of the `levels_open` first levels the agent meets, or None."""
        members = self._members
        if members is not None and agent.id not in members:
            return None
        skills = agent.config.skills
        for level in range(levels_open):
            if all(skills.get(r.skill, 0) >= r.min_proficiency for r in self.levels[level]):
                return level
        return None


def _check_requirement(owner: str, requirement: Requirement) -> None:
    names = [r.skill for r in requirement]
    if len(set(names)) != len(names):
        raise AcdConfigError(f"{owner}: a skill is required twice")


def check_overflow_graph(configs: Mapping[str, QueueConfig]) -> None:
    """Every overflow queue exists and no chain of overflows comes back on itself."""
    for config in configs.values():
        if isinstance(config.overflow, ToQueue) and config.overflow.queue not in configs:
            raise AcdConfigError(
                f"queue {config.name!r} overflows into unknown queue {config.overflow.queue!r}"
            )
    for start in configs:
        path = [start]
        current = configs[start]
        while isinstance(current.overflow, ToQueue):
            nxt = current.overflow.queue
            if nxt in path:
                loop = " → ".join([*path[path.index(nxt) :], nxt])
                raise AcdConfigError(f"queue overflow loop: {loop}")
            path.append(nxt)
            current = configs[nxt]


# -- choosing an agent ------------------------------------------------------------------


def choose_agent(
    config: QueueConfig,
    candidates: Iterable[Agent],
    waited: float,
    last_round_robin: str | None = None,
) -> Agent | None:
    """The agent the queue's strategy picks among `candidates` (agents ready now) for
    a caller who has waited `waited` seconds in the queue; None if none is eligible."""
    graded: list[tuple[int, Agent]] = []
    levels_open = config.level_count(waited)
    for agent in candidates:
        level = config.level_of(agent, levels_open)
        if level is not None:
            graded.append((level, agent))
    if not graded:
        return None
    best_level = min(level for level, _ in graded)
    pool = [agent for level, agent in graded if level == best_level]
    strategy = config.strategy
    if strategy is Strategy.LONGEST_IDLE:
        return min(pool, key=lambda a: (a.idle_since, a.id))
    if strategy is Strategy.FEWEST_CALLS:
        return min(pool, key=lambda a: (a.calls_answered, a.idle_since, a.id))
    if strategy is Strategy.SKILLS_BASED:
        requirement = config.levels[best_level] or config.skills
        return min(
            pool,
            key=lambda a: (-sum(a.proficiency(r.skill) for r in requirement), a.idle_since, a.id),
        )
    # round robin: the next agent after the last one offered, in the members' order
    # (or by id), wrapping around
    if config.members is None:
        last = last_round_robin
        later = [a for a in pool if last is None or a.id > last]
        return min(later or pool, key=lambda a: a.id)
    rank = {agent_id: i for i, agent_id in enumerate(config.members)}
    start = rank[last_round_robin] + 1 if last_round_robin in rank else 0
    size = len(rank)
    return min(pool, key=lambda a: (rank[a.id] - start) % size)


# -- the waiting line -------------------------------------------------------------------


class EntryKind(Enum):
    CALL = "call"  # a caller on the line
    CALLBACK = "callback"  # a caller who hung up and keeps their place


@dataclass(eq=False)
class QueueEntry:
    """One place in line. `id` is the call id (or callback id)."""

    id: str
    kind: EntryKind
    queue: str
    priority: int
    arrived_at: float  # when the caller first joined any queue: their place
    seq: int  # breaks ties between equal arrival times
    entered_at: float  # when they entered this queue: waits, escalation, announcements
    caller: str = ""
    variables: Mapping[str, Value] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    offered_to: str | None = None  # agent ringing (or reserved) for this entry
    held: bool = False  # a callback waiting to retry: keeps its place, not offered
    overflowed: bool = False  # max wait already acted on in this queue

    @property
    def key(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived_at, self.seq)

    @property
    def waiting(self) -> bool:
        """In line and not being offered or dialled."""
        return self.offered_to is None


class Queue:
    """A queue's configuration, line and statistics."""

    def __init__(self, config: QueueConfig, now: float) -> None:
        self.config = config
        self.entries: dict[str, QueueEntry] = {}
        self.stats = WaitStats(config.stats_window, config.min_samples, now)
        self.last_round_robin: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def ordered(self) -> list[QueueEntry]:
        return sorted(self.entries.values(), key=lambda e: e.key)

    def position(self, entry: QueueEntry) -> int:
        """1 + the callers ahead of `entry` still waiting (callbacks included; callers
        already ringing an agent are not counted: they are being served)."""
        key = entry.key
        return 1 + sum(
            1 for e in self.entries.values() if e is not entry and e.waiting and e.key < key
        )


# -- wait statistics --------------------------------------------------------------------


@dataclass(frozen=True)
class WaitEstimate:
    handle_time: float  # mean handle time in the window (talk + wrap-up)
    samples: int
    staffed: int


class WaitStats:
    """Handle times and arrivals over a rolling window of `window` seconds."""

    def __init__(self, window: float, min_samples: int, now: float) -> None:
        self.window = window
        self.min_samples = min_samples
        self.started_at = now
        self._handled: deque[tuple[float, float]] = deque()  # (ended at, handle seconds)
        self._arrivals: deque[float] = deque()

    def record_handled(self, now: float, handle_seconds: float) -> None:
        self._handled.append((now, max(0.0, handle_seconds)))
        self._prune(now)

    def record_arrival(self, now: float) -> None:
        self._arrivals.append(now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._handled and self._handled[0][0] < horizon:
            self._handled.popleft()
        while self._arrivals and self._arrivals[0] < horizon:
            self._arrivals.popleft()

    def samples(self, now: float) -> int:
        self._prune(now)
        return len(self._handled)

    def handle_time(self, now: float) -> float | None:
        """Mean handle time in the window, or None with fewer than `min_samples`."""
        self._prune(now)
        if len(self._handled) < self.min_samples:
            return None
        return sum(h for _, h in self._handled) / len(self._handled)

    def arrival_rate(self, now: float) -> float | None:
        """Calls per second over the window (or since the statistics began)."""
        self._prune(now)
        span = min(self.window, now - self.started_at)
        if span <= 0:
            return None
        return len(self._arrivals) / span

    def wait_at_position(self, position: int, staffed: int, now: float) -> float | None:
        """Estimated wait of the caller `position`-th in line with `staffed` agents able
        to take the call: position × AHT / staffed (see `erlang.wait_at_position`).
        None when there are not enough handled calls in the window, or nobody staffed."""
        aht = self.handle_time(now)
        if aht is None or staffed < 1 or aht <= 0:
            return None
        return erlang.wait_at_position(position, staffed, aht)

    def expected_wait(self, staffed: int, now: float) -> float | None:
        """Erlang C average speed of answer for a caller arriving now, from the arrival
        rate and handle time in the window (`math.inf` when the traffic is at or over the
        staffed agents); None without enough data or without staffed agents."""
        aht = self.handle_time(now)
        rate = self.arrival_rate(now)
        if aht is None or rate is None or staffed < 1 or aht <= 0:
            return None
        return erlang.mean_wait(staffed, rate * aht, aht)

    def probability_of_wait(self, staffed: int, now: float) -> float | None:
        aht = self.handle_time(now)
        rate = self.arrival_rate(now)
        if aht is None or rate is None or staffed < 1:
            return None
        return erlang.erlang_c(staffed, rate * aht)


def round_seconds(value: float | None) -> float | None:
    """Wait estimates are announced in whole seconds; infinity becomes None."""
    if value is None or not math.isfinite(value):
        return None
    return float(round(value))


def staffed_for(config: QueueConfig, agents: Iterable[Agent], waited: float) -> int:
    """Agents working (logged in, not on break, registered) who could take a call of
    this queue after `waited` seconds, whatever they are doing right now."""
    levels_open = config.level_count(waited)
    return sum(1 for a in agents if a.staffed and config.level_of(a, levels_open) is not None)
