"""Agents: who may take a queued call, and what each one is doing right now.

Owns an agent's two independent axes, kept apart as in every serious contact centre:
the admin *status* an agent or supervisor sets (logged out, available, on break with a
reason) and the runtime *state* the ACD drives (idle, offered — the phone is ringing —,
reserved for a callback, on a call, wrap-up). Status changes never cut a call; state
changes never log anybody in or out. Every change is an `AgentChange` value, kept in a
bounded history and handed back to the caller (the router turns it into an action for
presence and metrics). Also owns the agent feature codes dialled from a phone
(`*41` login, `*42` logout, `*43[reason digits]` break, `*44` back) and the policy for
an offer that fails (ring-no-answer, reject, busy, unreachable): the agent goes on a
break, until they come back or for a set time.

Must not know: queues, calls beyond their ids, SIP, timers (deadlines are values the
router arms), or the clock — time comes in as `now`.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from hotline.acd.errors import AcdConfigError, AgentStateError, StarCodeError

MIN_PROFICIENCY = 1
MAX_PROFICIENCY = 10


class AgentStatus(Enum):
    """Admin status: set by the agent (star codes, desktop) or a supervisor."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    ON_BREAK = "on_break"


class AgentState(Enum):
    """Runtime state: driven by the ACD as calls are offered, answered and ended."""

    IDLE = "idle"
    OFFERED = "offered"  # a queued call is ringing the agent's phone
    RESERVED = "reserved"  # held for a callback while the caller is dialled
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class OfferFailure(Enum):
    NO_ANSWER = "no_answer"  # ring timeout (RONA)
    REJECTED = "rejected"  # the agent declined (603, or 486 pressed on purpose)
    BUSY = "busy"  # the phone is busy with something else (486/600)
    UNREACHABLE = "unreachable"  # no route, 404/480, transport failure


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Break:
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Back:
    pass


AgentCommand = Login | Logout | Break | Back

STAR_CODES = {"1": "login", "2": "logout", "3": "break", "4": "back"}
_STAR_PREFIX = re.compile(r"\*4[1-4]")
_STAR_CODE = re.compile(r"\*4([1-4])(?:\*?([0-9]{1,4}))?#?")


def parse_star_code(
    dialled: str, break_reasons: Mapping[str, str] | None = None
) -> AgentCommand | None:
    """The agent command in a dialled number, or None if it is not an agent code.

    `*41` login, `*42` logout, `*44` back, `*43` break; the break code may be followed by
    a reason code of 1–4 digits, directly or after a star (`*4312`, `*43*12`); a trailing
    `#` is allowed. With `break_reasons` (code → name) the reason is the name and an
    unknown code is an error; without it the reason is the digits themselves.
    Raises `StarCodeError` for a number that starts like an agent code but is not one.
    """
    text = dialled.strip()
    if not _STAR_PREFIX.match(text):
        return None
    m = _STAR_CODE.fullmatch(text)
    if m is None:
        raise StarCodeError(
            f"{text!r} is not an agent code: expected *41, *42, *43[reason digits] or *44"
        )
    code, digits = m.group(1), m.group(2)
    if code != "3" and digits is not None:
        raise StarCodeError(f"*4{code} ({STAR_CODES[code]}) takes no digits, got {text!r}")
    if code == "1":
        return Login()
    if code == "2":
        return Logout()
    if code == "4":
        return Back()
    if digits is None:
        return Break(None)
    if break_reasons is None:
        return Break(digits)
    name = break_reasons.get(digits)
    if name is None:
        known = ", ".join(f"{k} ({v})" for k, v in sorted(break_reasons.items())) or "none"
        raise StarCodeError(f"unknown break reason code {digits}; known: {known}")
    return Break(name)


# -- configuration ----------------------------------------------------------------------


def check_skills(owner: str, skills: Mapping[str, int]) -> None:
    for skill, level in skills.items():
        if not isinstance(skill, str) or not skill:
            raise AcdConfigError(f"{owner}: a skill needs a non-empty name, got {skill!r}")
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY
        ):
            raise AcdConfigError(
                f"{owner}: skill {skill!r} needs a proficiency from {MIN_PROFICIENCY} to "
                f"{MAX_PROFICIENCY}, got {level!r}"
            )


def check_seconds(owner: str, name: str, value: float | None, *, zero: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AcdConfigError(f"{owner}: {name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        bound = "≥ 0" if zero else "> 0"
        raise AcdConfigError(f"{owner}: {name} must be {bound} seconds, got {value!r}")


@dataclass(frozen=True)
class AgentConfig:
    """An agent as configured: `uri` is the address-of-record the engine rings;
    `skills` maps a skill name to a proficiency from 1 (novice) to 10 (expert);
    `wrap_up` overrides the policy's wrap-up time for this agent."""

    id: str
    name: str = ""
    uri: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    wrap_up: float | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise AcdConfigError("an agent needs a non-empty id")
        check_skills(f"agent {self.id!r}", self.skills)
        check_seconds(f"agent {self.id!r}", "wrap_up", self.wrap_up)


@dataclass(frozen=True)
class AgentPolicy:
    """How the ACD treats agents. `pause_after_*`: what an offer that fails does to the
    agent — None puts them on break until they come back (`*44`), a number of seconds
    puts them on a break that ends by itself."""

    ring_timeout: float = 15.0
    wrap_up: float = 10.0
    pause_after_no_answer: float | None = None
    pause_after_rejected: float | None = None
    pause_after_busy: float | None = None
    pause_after_unreachable: float | None = None
    reservation_timeout: float = 90.0  # an agent held for a callback, at most
    history_size: int = 100

    def __post_init__(self) -> None:
        owner = "agent policy"
        check_seconds(owner, "ring_timeout", self.ring_timeout, zero=False)
        check_seconds(owner, "wrap_up", self.wrap_up)
        check_seconds(owner, "reservation_timeout", self.reservation_timeout, zero=False)
        for failure in OfferFailure:
            check_seconds(
                owner, f"pause_after_{failure.value}", self.pause_after(failure), zero=False
            )
        if (
            isinstance(self.history_size, bool)
            or not isinstance(self.history_size, int)
            or (self.history_size < 1)
        ):
            raise AcdConfigError(f"{owner}: history_size must be ≥ 1, got {self.history_size!r}")

    def pause_after(self, failure: OfferFailure) -> float | None:
        return {
            OfferFailure.NO_ANSWER: self.pause_after_no_answer,
            OfferFailure.REJECTED: self.pause_after_rejected,
            OfferFailure.BUSY: self.pause_after_busy,
            OfferFailure.UNREACHABLE: self.pause_after_unreachable,
        }[failure]


# -- the agent --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentChange:
    """One change of an agent's status or state, as it was after the change."""

    agent_id: str
    at: float
    cause: str  # login, logout, break, back, offer, answer, offer_failed, ...
    status: AgentStatus
    state: AgentState
    previous_status: AgentStatus
    previous_state: AgentState
    reason: str | None = None  # the break reason while on break
    call_id: str | None = None  # the call (or callback) the state is about


# (state, transition) → next state; an unlisted pair is a bug in the caller
_TRANSITIONS: dict[tuple[AgentState, str], AgentState] = {
    (AgentState.IDLE, "offer"): AgentState.OFFERED,
    (AgentState.OFFERED, "answer"): AgentState.ON_CALL,
    (AgentState.OFFERED, "offer_failed"): AgentState.IDLE,
    (AgentState.OFFERED, "offer_withdrawn"): AgentState.IDLE,
    (AgentState.IDLE, "reserve"): AgentState.RESERVED,
    (AgentState.RESERVED, "connect"): AgentState.ON_CALL,
    (AgentState.RESERVED, "release"): AgentState.IDLE,
    (AgentState.ON_CALL, "end"): AgentState.WRAP_UP,
    (AgentState.WRAP_UP, "ready"): AgentState.IDLE,
}


class Agent:
    """One agent's status, state and counters. Mutated only through its methods; each
    method that changes something returns the `AgentChange` (None when nothing changed)
    and raises `AgentStateError` for a transition that makes no sense."""

    def __init__(self, config: AgentConfig, now: float, history_size: int = 100) -> None:
        self.config = config
        self.status = AgentStatus.LOGGED_OUT
        self.state = AgentState.IDLE
        self.break_reason: str | None = None
        self.break_until: float | None = None  # a break that ends by itself
        self.status_since = now
        self.state_since = now
        self.idle_since = now  # when the agent last became ready for a call
        self.registered = False
        self.call_id: str | None = None  # offered, reserved-for, on-call or wrap-up call
        self.deadline: float | None = None  # ring timeout, reservation timeout, wrap-up end
        self.calls_answered = 0  # since the last login
        self.history: deque[AgentChange] = deque(maxlen=history_size)

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def ready(self) -> bool:
        """May be offered a call now: available, idle and reachable."""
        return (
            self.status is AgentStatus.AVAILABLE
            and self.state is AgentState.IDLE
            and self.registered
        )

    @property
    def staffed(self) -> bool:
        """Counts as working the queues (for wait estimates): logged in, not on break,
        reachable — whatever the runtime state."""
        return self.status is AgentStatus.AVAILABLE and self.registered

    def proficiency(self, skill: str) -> int:
        return self.config.skills.get(skill, 0)

    # -- admin status ---------------------------------------------------------------------

    def login(self, now: float) -> AgentChange | None:
        if self.status is AgentStatus.AVAILABLE:
            return None
        if self.status is AgentStatus.LOGGED_OUT:
            self.calls_answered = 0
        return self._set_status(AgentStatus.AVAILABLE, None, None, now, "login")

    def logout(self, now: float) -> AgentChange | None:
        if self.status is AgentStatus.LOGGED_OUT:
            return None
        return self._set_status(AgentStatus.LOGGED_OUT, None, None, now, "logout")

    def start_break(
        self, reason: str | None, now: float, until: float | None = None, cause: str = "break"
    ) -> AgentChange:
        if self.status is AgentStatus.LOGGED_OUT:
            raise AgentStateError(f"agent {self.id!r} is logged out: log in before a break")
        return self._set_status(AgentStatus.ON_BREAK, reason, until, now, cause)

    def back(self, now: float, cause: str = "back") -> AgentChange | None:
        if self.status is AgentStatus.LOGGED_OUT:
            raise AgentStateError(f"agent {self.id!r} is logged out: log in instead")
        if self.status is AgentStatus.AVAILABLE:
            return None
        return self._set_status(AgentStatus.AVAILABLE, None, None, now, cause)

    def set_registered(self, registered: bool, now: float) -> AgentChange | None:
        if self.registered == registered:
            return None
        self.registered = registered
        if registered and self.status is AgentStatus.AVAILABLE and self.state is AgentState.IDLE:
            self.idle_since = now
        return self._record(
            now, "registered" if registered else "unregistered", self.status, self.state
        )

    # -- runtime state --------------------------------------------------------------------

    def offer(self, call_id: str, now: float, ring_timeout: float) -> AgentChange:
        if not self.ready:
            raise AgentStateError(
                f"agent {self.id!r} is not ready for a call "
                f"({self.status.value}, {self.state.value})"
            )
        return self._move("offer", now, call_id, now + ring_timeout)

    def answer(self, now: float) -> AgentChange:
        change = self._move("answer", now, self.call_id, None)
        self.calls_answered += 1
        return change

    def offer_failed(self, now: float) -> AgentChange:
        return self._move("offer_failed", now, None, None)

    def withdraw_offer(self, now: float) -> AgentChange:
        return self._move("offer_withdrawn", now, None, None)

    def reserve(self, callback_id: str, now: float, timeout: float) -> AgentChange:
        if not self.ready:
            raise AgentStateError(
                f"agent {self.id!r} cannot be reserved ({self.status.value}, {self.state.value})"
            )
        return self._move("reserve", now, callback_id, now + timeout)

    def connect(self, call_id: str, now: float) -> AgentChange:
        change = self._move("connect", now, call_id, None)
        self.calls_answered += 1
        return change

    def release(self, now: float) -> AgentChange:
        return self._move("release", now, None, None)

    def end_call(self, now: float, wrap_up: float) -> AgentChange:
        return self._move("end", now, self.call_id, now + wrap_up)

    def finish_wrap_up(self, now: float) -> AgentChange:
        change = self._move("ready", now, None, None)
        self.idle_since = now
        return change

    # -- internals ------------------------------------------------------------------------

    def _set_status(
        self, status: AgentStatus, reason: str | None, until: float | None, now: float, cause: str
    ) -> AgentChange:
        previous = self.status
        self.status = status
        self.break_reason = reason if status is AgentStatus.ON_BREAK else None
        self.break_until = until if status is AgentStatus.ON_BREAK else None
        if status is not previous:
            self.status_since = now
        if status is AgentStatus.AVAILABLE and self.state is AgentState.IDLE:
            self.idle_since = now
        return self._record(now, cause, previous, self.state)

    def _move(
        self, transition: str, now: float, call_id: str | None, deadline: float | None
    ) -> AgentChange:
        target = _TRANSITIONS.get((self.state, transition))
        if target is None:
            raise AgentStateError(
                f"agent {self.id!r}: cannot {transition.replace('_', ' ')} while {self.state.value}"
            )
        previous = self.state
        subject = call_id if call_id is not None else self.call_id
        self.state = target
        self.state_since = now
        self.call_id = call_id
        self.deadline = deadline
        return self._record(now, transition, self.status, previous, subject)

    def _record(
        self,
        now: float,
        cause: str,
        previous_status: AgentStatus,
        previous_state: AgentState,
        call_id: str | None = None,
    ) -> AgentChange:
        change = AgentChange(
            agent_id=self.id,
            at=now,
            cause=cause,
            status=self.status,
            state=self.state,
            previous_status=previous_status,
            previous_state=previous_state,
            reason=self.break_reason,
            call_id=call_id if call_id is not None else self.call_id,
        )
        self.history.append(change)
        return change
