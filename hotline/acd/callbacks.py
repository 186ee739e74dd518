"""Callbacks: a caller who would rather hang up than wait keeps their place in line and
is called back when their turn comes.

Owns the life of a callback request — its states and the transitions between them, the
de-duplication by caller number, the retry rule — and the contract with the store that
keeps requests across a restart (`CallbackRepository`). A request is:

    WAITING ──(its turn: an agent is reserved)──► DIALING ──(caller answers)──► COMPLETED
       ▲                                            │
       │                   (no answer / busy / failed, tries left)
       └──(retry interval over)── RETRY_WAIT ◄──────┤
                                                    └──(no tries left)──► FAILED
    WAITING, RETRY_WAIT, DIALING ──(cancelled)──► CANCELLED

A try is counted when the caller does not answer; an attempt cut short on our side (the
reserved agent could not be reached, or the process restarted mid-dial) is not. The
order of the line is kept in the record (`priority`, `arrived_at`, `seq`), so a restored
request goes back to the same place; `arrived_at` is compared with other callers'
arrival times, so the engine must give the ACD a clock that survives a restart (wall
seconds) when callbacks are stored.

Must not know: how records are stored (SQL lives behind the repository), queues'
strategies, agents, SIP, or the clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from hotline.acd.agents import check_seconds
from hotline.acd.errors import AcdConfigError, AcdError

Value = bool | int | str | None


class CallbackState(Enum):
    WAITING = "waiting"
    DIALING = "dialing"
    RETRY_WAIT = "retry_wait"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({CallbackState.COMPLETED, CallbackState.FAILED, CallbackState.CANCELLED})


class CallbackFailure(Enum):
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"  # the number could not be reached (network, rejected, invalid)
    AGENT_UNAVAILABLE = "agent_unavailable"  # our side: the reserved agent dropped out


class InvalidNumber(AcdError):
    """A callback number that cannot be dialled."""


class CallbackError(AcdError):
    """A callback transition that makes no sense (a bug in the caller)."""


_SEPARATORS = re.compile(r"[\s().\-/]")
_NUMBER = re.compile(r"\+?[0-9]{3,20}")


def normalise_number(number: str) -> str:
    """The number as it is dialled and compared: spaces, dots, dashes, slashes and
    brackets removed, a leading + kept; 3 to 20 digits. Raises `InvalidNumber`."""
    text = _SEPARATORS.sub("", number.strip())
    if not _NUMBER.fullmatch(text):
        raise InvalidNumber(
            f"{number!r} is not a callable number: expected 3 to 20 digits, optionally after +"
        )
    return text


@dataclass(frozen=True)
class CallbackRecord:
    """A callback request as stored. Immutable: every change is a new record, so a
    repository may hand it to another thread as it is."""

    id: str
    number: str  # normalised
    queue: str
    priority: int
    arrived_at: float
    seq: int
    state: CallbackState
    created_at: float
    updated_at: float
    attempts: int = 0  # tries the caller did not answer
    due_at: float | None = None  # RETRY_WAIT: when it goes back in line
    agent_id: str | None = None  # DIALING: the reserved agent
    last_result: str | None = None
    variables: Mapping[str, Value] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.state not in FINAL_STATES


class CallbackRepository(Protocol):
    """Where callback records live between restarts. Two methods, both synchronous and
    called from the ACD's thread:

    * `load_active()` — every stored record whose state is not final (COMPLETED, FAILED,
      CANCELLED), in any order. Called once, when the router starts.
    * `save(record)` — store `record`, replacing any record with the same `id`. Called
      after every change, in the order of the changes. An implementation may write
      behind (queue the write for a worker) as long as writes of one id keep their
      order; a write that fails must be reported by the implementation itself — the ACD
      has already moved on.
    """

    def load_active(self) -> list[CallbackRecord]: ...

    def save(self, record: CallbackRecord) -> None: ...


class InMemoryCallbackRepository:
    """A `CallbackRepository` in a dict, for tests and single-process use without a
    database. `saved` lists every record saved, in order."""

    def __init__(self, records: list[CallbackRecord] | None = None) -> None:
        self.records: dict[str, CallbackRecord] = {r.id: r for r in records or []}
        self.saved: list[CallbackRecord] = []

    def load_active(self) -> list[CallbackRecord]:
        return [r for r in self.records.values() if r.active]

    def save(self, record: CallbackRecord) -> None:
        self.records[record.id] = record
        self.saved.append(record)


@dataclass(frozen=True)
class CallbackPolicy:
    max_attempts: int = 3  # tries before giving up
    retry_interval: float = 300.0  # seconds between tries

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or (self.max_attempts < 1)
        ):
            raise AcdConfigError(
                f"callback policy: max_attempts must be ≥ 1, got {self.max_attempts!r}"
            )
        check_seconds("callback policy", "retry_interval", self.retry_interval, zero=False)


# (state, transition) → next state; unlisted pairs are errors
_TRANSITIONS: dict[tuple[CallbackState, str], CallbackState] = {
    (CallbackState.WAITING, "dial"): CallbackState.DIALING,
    (CallbackState.DIALING, "answered"): CallbackState.COMPLETED,
    (CallbackState.DIALING, "retry"): CallbackState.RETRY_WAIT,
    (CallbackState.DIALING, "give_up"): CallbackState.FAILED,
    (CallbackState.DIALING, "requeue"): CallbackState.WAITING,
    (CallbackState.RETRY_WAIT, "due"): CallbackState.WAITING,
    (CallbackState.WAITING, "cancel"): CallbackState.CANCELLED,
    (CallbackState.RETRY_WAIT, "cancel"): CallbackState.CANCELLED,
    (CallbackState.DIALING, "cancel"): CallbackState.CANCELLED,
}


class CallbackBook:
    """The active callback requests, indexed by id and by number, saved through the
    repository on every change."""

    def __init__(self, repository: CallbackRepository, policy: CallbackPolicy) -> None:
        self.repository = repository
        self.policy = policy
        self._active: dict[str, CallbackRecord] = {}
        self._by_number: dict[str, str] = {}

    def load(self, now: float) -> list[CallbackRecord]:
        """Take over the stored active requests. One that was being dialled when the
        process stopped goes back in line (that try is not counted)."""
        restored: list[CallbackRecord] = []
        for record in sorted(self.repository.load_active(), key=lambda r: (r.arrived_at, r.seq)):
            if record.number in self._by_number:
                # two active requests for one number (written by an older version, or two
                # nodes): keep the earlier place, cancel the other
                self.repository.save(
                    replace(
                        record,
                        state=CallbackState.CANCELLED,
                        updated_at=now,
                        last_result="duplicate",
                    )
                )
                continue
            if record.state is CallbackState.DIALING:
                record = replace(
                    record,
                    state=CallbackState.WAITING,
                    agent_id=None,
                    updated_at=now,
                    last_result="interrupted",
                )
                self.repository.save(record)
            self._active[record.id] = record
            self._by_number[record.number] = record.id
            restored.append(record)
        return restored

    def get(self, callback_id: str) -> CallbackRecord | None:
        return self._active.get(callback_id)

    def active_for(self, number: str) -> CallbackRecord | None:
        callback_id = self._by_number.get(normalise_number(number))
        return None if callback_id is None else self._active[callback_id]

    def active(self) -> list[CallbackRecord]:
        return list(self._active.values())

    def create(
        self,
        callback_id: str,
        number: str,
        queue: str,
        priority: int,
        arrived_at: float,
        seq: int,
        now: float,
        variables: Mapping[str, Value] | None = None,
        sensitive: frozenset[str] = frozenset(),
    ) -> CallbackRecord:
        """A new WAITING request. Raises `CallbackError` when the id is taken or the
        number already has an active request (check `active_for` first)."""
        normalised = normalise_number(number)
        if callback_id in self._active:
            raise CallbackError(f"callback {callback_id!r} already exists")
        if normalised in self._by_number:
            raise CallbackError(
                f"number {normalised} already has callback {self._by_number[normalised]!r}"
            )
        record = CallbackRecord(
            id=callback_id,
            number=normalised,
            queue=queue,
            priority=priority,
            arrived_at=arrived_at,
            seq=seq,
            state=CallbackState.WAITING,
            created_at=now,
            updated_at=now,
            variables=dict(variables or {}),
            sensitive=sensitive,
        )
        self._store(record)
        return record

    def improve_place(
        self, callback_id: str, priority: int, arrived_at: float, seq: int, now: float
    ) -> CallbackRecord:
        """A duplicate request from a caller who was ahead of their own earlier request
        (or more urgent) moves the request up; never down."""
        record = self._get(callback_id)
        if (-priority, arrived_at, seq) >= (-record.priority, record.arrived_at, record.seq):
            return record
        return self._store(
            replace(
                record,
                priority=max(priority, record.priority),
                arrived_at=arrived_at,
                seq=seq,
                updated_at=now,
            )
        )

    def dialing(self, callback_id: str, agent_id: str, now: float) -> CallbackRecord:
        return self._move(callback_id, "dial", now, agent_id=agent_id)

    def answered(self, callback_id: str, now: float) -> CallbackRecord:
        return self._move(callback_id, "answered", now, last_result="answered")

    def failed(self, callback_id: str, failure: CallbackFailure, now: float) -> CallbackRecord:
        """The try failed. AGENT_UNAVAILABLE: back in line, not counted. Otherwise the
        try counts: RETRY_WAIT until `retry_interval` from now, or FAILED after the last."""
        if failure is CallbackFailure.AGENT_UNAVAILABLE:
            return self._move(callback_id, "requeue", now, last_result=failure.value)
        record = self._get(callback_id)
        attempts = record.attempts + 1
        if attempts >= self.policy.max_attempts:
            return self._move(
                callback_id, "give_up", now, attempts=attempts, last_result=failure.value
            )
        return self._move(
            callback_id,
            "retry",
            now,
            attempts=attempts,
            due_at=now + self.policy.retry_interval,
            last_result=failure.value,
        )

    def due(self, callback_id: str, now: float) -> CallbackRecord:
        return self._move(callback_id, "due", now)

    def cancel(self, callback_id: str, now: float, why: str = "cancelled") -> CallbackRecord:
        return self._move(callback_id, "cancel", now, last_result=why)

    # -- internals --------------------------------------------------------------------

    def _get(self, callback_id: str) -> CallbackRecord:
        record = self._active.get(callback_id)
        if record is None:
            raise CallbackError(f"no active callback {callback_id!r}")
        return record

    def _move(
        self,
        callback_id: str,
        transition: str,
        now: float,
        *,
        agent_id: str | None = None,
        attempts: int | None = None,
        due_at: float | None = None,
        last_result: str | None = None,
    ) -> CallbackRecord:
        record = self._get(callback_id)
        target = _TRANSITIONS.get((record.state, transition))
        if target is None:
            raise CallbackError(
                f"callback {callback_id!r}: cannot {transition.replace('_', ' ')}"
                f" while {record.state.value}"
            )
        return self._store(
            replace(
                record,
                state=target,
                updated_at=now,
                agent_id=agent_id,
                due_at=due_at,
                attempts=record.attempts if attempts is None else attempts,
                last_result=record.last_result if last_result is None else last_result,
            )
        )

    def _store(self, record: CallbackRecord) -> CallbackRecord:
        if record.active:
            self._active[record.id] = record
            self._by_number[record.number] = record.id
        else:
            self._active.pop(record.id, None)
            if self._by_number.get(record.number) == record.id:
                del self._by_number[record.number]
        self.repository.save(record)
        return record
