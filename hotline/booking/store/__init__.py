"""The booking store: one async interface that the service and the CLI use, and what
its two implementations (hotline.booking.store.sqlite, hotline.booking.store.postgres) share.

Owns: the interface and the meaning of each operation (below), the request and result
records, the versioned migrations' discovery (hotline/booking/migrations/<dialect>/
NNNN_name.sql, applied in order at `open()`, each in its own transaction), converting
stored values back to domain records, and choosing a store from a database URL.

Must not know: flows, prompts, the clock (every operation that needs the time takes `now`),
how eligibility is decided.

Guarantees every implementation keeps (the integration suite runs the same tests on both):

- Capacity: a hold takes a place with one conditional update (`taken < capacity`) in the
  transaction that inserts the booking, so concurrent holds never overfill a slot; no
  Python lock is involved, and several processes may share the database.
- A hold whose time ran out gives its place back: `release_expired` sweeps them all, and
  a hold on a slot first releases that slot's expired holds, so a slot never looks full
  because of holds nobody will confirm.
- Idempotency: a hold with a `key` already used by a live booking returns that booking
  (`replayed`); confirming a booking that is already confirmed returns it unchanged
  (`replayed`), so a retried confirm never makes a second booking nor a second message.
- Durability: a change has been committed (SQLite: WAL with synchronous=FULL;
  PostgreSQL: a synchronous commit) when its coroutine returns.
- Every change writes an audit row (booking, action, actor, call id, time, status before
  and after) and, for confirm/reschedule/cancel, its outbox message, in the same
  transaction. Neither holds a Medicare number or a date of birth.
- The outbox is claimed with a lease (`claim_outbox`), so one message is handed to one
  deliverer at a time even with several nodes; its `dedupe_key` is unique per booking
  change and goes to the receiver as an idempotency key, because a deliverer that dies
  between sending and `outbox_delivered` will have the message delivered again.

Call detail records (hotline.cdr.CallRecord) live in the same database, behind their own
interface (`CallRecordStore`; `Store` is both, and what `open_store` gives), written
behind: `add_cdr` queues a record and returns at once, one asyncio task per store
writes the queue a batch per transaction, and `close()` writes what is queued before it
disconnects. A record is identified by (node, call id, start), so writing it twice —
a batch retried after an error that hid its commit — stores it once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from hotline.booking.model import (
    AuditEntry,
    Booking,
    Clinic,
    MessageKind,
    OutboxMessage,
    Person,
    Scalar,
    Slot,
)
from hotline.cdr import CallRecord

__all__ = [
    "CDR_BACKLOG",
    "CDR_BATCH",
    "CDR_PAGE",
    "Actor",
    "BookingStore",
    "CallRecordStore",
    "ChangeResult",
    "ChangeStatus",
    "HoldRequest",
    "HoldResult",
    "HoldStatus",
    "MessageBuilder",
    "Migration",
    "Store",
    "StoreError",
    "load_migrations",
    "open_store",
]

MessageBuilder = Callable[[MessageKind, Booking, Clinic], Mapping[str, Scalar]]
"""Builds an outbox message's payload from the booking as changed and its clinic."""

MAX_REFERENCE_DRAWS: Final = 8  # fresh references tried before a confirm gives up
CDR_BACKLOG: Final = 20_000  # call records queued at most while the database refuses them
CDR_BATCH: Final = 500  # call records written per transaction
CDR_PAGE: Final = 1000  # call records read per query by `iter_cdrs`

cdr_log = logging.getLogger("hotline.cdr")


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreachable database, a schema newer than this
    code, references exhausted); the message says which."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, for the audit trail: `name` is `call:<call-id>`,
    `agent:<name>`, `webhook`, `cli` or `system:sweep`; `call_id` the SIP call, if any."""

    name: str
    call_id: str | None = None


class HoldStatus(StrEnum):
    OK = "ok"
    FULL = "full"  # the slot has no free place
    NO_SLOT = "no_slot"  # no such slot, or it starts before `not_before`


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Hold a place in `slot_id` for `person` until `expires_at`. `key` makes the request
    idempotent (the same key returns the same live booking); `not_before` refuses slots
    that start earlier (too soon to reach)."""

    slot_id: str
    vaccine: str
    dose: int
    person: Person
    now: dt.datetime
    expires_at: dt.datetime
    not_before: dt.datetime
    actor: Actor
    key: str | None = None

    def __repr__(self) -> str:  # the Person masks itself; keep the key out of logs too
        return (
            f"HoldRequest(slot_id={self.slot_id!r}, vaccine={self.vaccine!r}, "
            f"dose={self.dose}, person={self.person!r}, actor={self.actor!r})"
        )


@dataclass(frozen=True, slots=True)
class HoldResult:
    status: HoldStatus
    booking: Booking | None = None
    replayed: bool = False


class ChangeStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"  # no such booking
    EXPIRED = "expired"  # confirm: the hold's time ran out (its place is released)
    NOT_ACTIVE = "not_active"  # cancelled, expired or attended: nothing to change
    FULL = "full"  # reschedule: the new slot has no free place
    NO_SLOT = "no_slot"  # reschedule: no such slot, or it starts before `not_before`


@dataclass(frozen=True, slots=True)
class ChangeResult:
    status: ChangeStatus
    booking: Booking | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION_FILE: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations shipped for `dialect` ("sqlite" or "postgresql"), in order. Raises
    StoreError when a file name is malformed or the versions are not 1, 2, 3, …"""
    folder = resources.files("hotline.booking").joinpath("migrations").joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match is None:
            raise StoreError(
                f"migration file {dialect}/{entry.name}: expected a name NNNN_words.sql"
            )
        found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migrations for {dialect}: expected version {expected}, found "
                f"{migration.version:04d}_{migration.name}.sql"
            )
    if not found:
        raise StoreError(f"no migrations for {dialect}")
    return found


# -- the interface --------------------------------------------------------------------------


class BookingStore(ABC):
    """Durable bookings. Open with `await store.open()` (or `async with store:`), which
    applies pending migrations; close with `await store.close()`."""

    dialect: str

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. Raises StoreError when the database
        cannot be reached or its schema is newer than this code knows."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending work and disconnect; safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def schema_version(self) -> int:
        """The highest migration applied."""

    # clinics and slots

    @abstractmethod
    async def save_clinics(self, clinics: Sequence[Clinic], *, now: dt.datetime) -> int:
        """Insert or update clinics by id; returns how many were written."""

    @abstractmethod
    async def clinics(self, *, active_only: bool = True) -> list[Clinic]:
        """Clinics sorted by id."""

    @abstractmethod
    async def clinic(self, clinic_id: str) -> Clinic | None: ...

    @abstractmethod
    async def add_slots(self, slots: Sequence[Slot]) -> int:
        """Insert the slots not already there (by id); returns how many were new. An
        existing slot keeps its capacity and bookings."""

    @abstractmethod
    async def slot(self, slot_id: str) -> Slot | None: ...

    @abstractmethod
    async def free_slots(
        self,
        clinic_id: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        limit: int,
        after: dt.datetime | None = None,
    ) -> list[Slot]:
        """Slots of a clinic with a free place, starting in [start, end) and after
        `after` when given, earliest first (ties by id), at most `limit`."""

    @abstractmethod
    async def next_free(
        self, clinic_ids: Collection[str], *, start: dt.datetime, end: dt.datetime
    ) -> dict[str, dt.datetime]:
        """For each clinic with a free slot starting in [start, end): its earliest."""

    # bookings

    @abstractmethod
    async def hold(self, request: HoldRequest) -> HoldResult: ...

    @abstractmethod
    async def confirm(
        self,
        booking_id: int,
        *,
        now: dt.datetime,
        actor: Actor,
        new_reference: Callable[[], str],
        message: MessageBuilder,
        key: str | None = None,
    ) -> ChangeResult:
        """Confirm a live hold: give it a reference (drawn with `new_reference` until
        unused), write its outbox message and audit row. OK (replayed) for a booking
        already confirmed; EXPIRED (and the place released) for a hold out of time;
        NOT_ACTIVE for cancelled, attended or expired bookings."""

    @abstractmethod
    async def cancel(
        self, booking_id: int, *, now: dt.datetime, actor: Actor, message: MessageBuilder
    ) -> ChangeResult:
        """Cancel a held or confirmed booking and give its place back (a confirmed one
        also gets a `cancelled` message). NOT_ACTIVE when already cancelled, expired or
        attended."""

    @abstractmethod
    async def reschedule(
        self,
        booking_id: int,
        slot_id: str,
        *,
        now: dt.datetime,
        not_before: dt.datetime,
        actor: Actor,
        message: MessageBuilder,
    ) -> ChangeResult:
        """Move a confirmed booking to another slot (any clinic), keeping its reference:
        the new place is taken before the old one is given back. OK (replayed) when it
        is already in that slot."""

    @abstractmethod
    async def mark_attended(
        self, booking_id: int, *, now: dt.datetime, actor: Actor
    ) -> ChangeResult:
        """Record that a confirmed booking's dose was given."""

    @abstractmethod
    async def release_expired(self, now: dt.datetime, *, actor: Actor) -> int:
        """Expire every hold whose time ran out by `now`, giving places back; returns how
        many."""

    @abstractmethod
    async def booking(self, booking_id: int) -> Booking | None: ...

    @abstractmethod
    async def bookings_by_reference(self, references: Collection[str]) -> list[Booking]:
        """The bookings with any of these references, sorted by id."""

    @abstractmethod
    async def upcoming_by_phone(self, phone: str, *, since: dt.datetime) -> list[Booking]:
        """Confirmed bookings for this phone starting at or after `since`, soonest first."""

    @abstractmethod
    async def bookings_of_person(self, card: str, dob: dt.date) -> list[Booking]:
        """Every booking of the person (card's first nine digits and date of birth), by
        id."""

    @abstractmethod
    async def bookings_on(
        self, local_date: dt.date, *, clinic_id: str | None = None
    ) -> list[Booking]:
        """Confirmed and attended bookings whose slot is on this local date, by clinic
        and time."""

    @abstractmethod
    async def audit_trail(self, booking_id: int) -> list[AuditEntry]:
        """The booking's audit rows, oldest first."""

    # outbox

    @abstractmethod
    async def claim_outbox(
        self, now: dt.datetime, *, lease: dt.timedelta, limit: int = 10
    ) -> list[OutboxMessage]:
        """Up to `limit` due messages, oldest first, leased until `now + lease` (another
        claim skips them until then) with `attempts` counted."""

    @abstractmethod
    async def outbox_delivered(self, message_id: int, *, now: dt.datetime) -> None: ...

    @abstractmethod
    async def outbox_failed(
        self, message_id: int, *, now: dt.datetime, retry_at: dt.datetime | None, error: str
    ) -> None:
        """Record a failed delivery: try again at `retry_at`, or never (None)."""

    @abstractmethod
    async def outbox_pending(self) -> int:
        """Messages neither delivered nor given up."""


# -- call detail records --------------------------------------------------------------------


def _check_range(since: dt.datetime, until: dt.datetime) -> None:
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name}: expected an aware datetime, found naive {value}")
    if until < since:
        raise ValueError(f"until {until.isoformat()} is before since {since.isoformat()}")


class CallRecordStore(ABC):
    """Call detail records. `add_cdr` queues a record for writing and returns at once
    (it needs a running event loop: the engine calls it from its event handlers); one
    writer task per store writes the queue, a batch of up to CDR_BATCH records per
    transaction, so records that end while a batch commits go together in the next one
    (group commit, no timer). `flush_cdrs()` waits until the queue is written.

    When the database refuses a batch (a StoreError), the batch goes back to the front
    of the queue, in order, and is tried again at the next `add_cdr` or `flush_cdrs`;
    beyond CDR_BACKLOG queued records the oldest are dropped (counted in
    `cdr_dropped`). `cdr_written`, `cdr_failures` and `cdr_error` (the last failure,
    None once a batch went through) are for metrics and health checks."""

    def __init__(self) -> None:
        super().__init__()
        self._cdr_queue: deque[CallRecord] = deque()
        self._cdr_writer: asyncio.Task[None] | None = None
        self.cdr_written = 0
        self.cdr_dropped = 0
        self.cdr_failures = 0
        self.cdr_error: str | None = None

    @abstractmethod
    async def add_cdrs(self, records: Sequence[CallRecord]) -> int:
        """Write `records` now, in one transaction; a record already stored (same node,
        call id and start) is skipped. Returns how many were new."""

    @abstractmethod
    async def _cdr_page(
        self,
        since: dt.datetime,
        until: dt.datetime,
        after: tuple[dt.datetime, int] | None,
        limit: int,
    ) -> list[tuple[tuple[dt.datetime, int], CallRecord]]:
        """Up to `limit` records started in [since, until) and after the position
        `after` (start, row id), in start order; each with its position."""

    # the write-behind queue

    @property
    def cdr_pending(self) -> int:
        """Records queued and not yet written."""
        return len(self._cdr_queue)

    def add_cdr(self, record: CallRecord) -> None:
        """Queue `record` for writing; returns at once."""
        if not isinstance(record, CallRecord):
            raise TypeError(f"expected a CallRecord, found {type(record).__name__}")
        self._cdr_queue.append(record)
        self._trim_cdr_queue()
        if self._cdr_writer is None:
            self._start_cdr_writer()

    def _trim_cdr_queue(self) -> None:
        while len(self._cdr_queue) > CDR_BACKLOG:
            lost = self._cdr_queue.popleft()
            self.cdr_dropped += 1
            cdr_log.error(
                "call record of %s dropped: %d records wait for the database (%s)",
                lost.call_id,
                CDR_BACKLOG,
                self.cdr_error or "writing",
            )

    def _start_cdr_writer(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            self._write_cdr_queue(), name="hotline-cdr-writer"
        )
        self._cdr_writer = task
        return task

    async def _write_cdr_queue(self) -> None:
        try:
            while self._cdr_queue:
                batch = [
                    self._cdr_queue.popleft() for _ in range(min(CDR_BATCH, len(self._cdr_queue)))
                ]
                try:
                    await self.add_cdrs(batch)
                except StoreError as exc:
                    self._cdr_queue.extendleft(reversed(batch))
                    self._trim_cdr_queue()
                    self.cdr_failures += 1
                    self.cdr_error = str(exc)
                    cdr_log.warning(
                        "%d call record(s) not written yet: %s", len(self._cdr_queue), exc
                    )
                    return
                except BaseException:
                    # Cancelled, or a bug: keep the batch (writing it again is harmless).
                    self._cdr_queue.extendleft(reversed(batch))
                    raise
                self.cdr_written += len(batch)
                self.cdr_error = None
        finally:
            self._cdr_writer = None

    async def flush_cdrs(self) -> None:
        """Wait until every queued record is written. Raises StoreError when the
        database refuses them (they stay queued)."""
        failures = self.cdr_failures
        while True:
            writer = self._cdr_writer
            if writer is None:
                if not self._cdr_queue:
                    return
                if self.cdr_failures != failures:
                    raise StoreError(
                        f"{len(self._cdr_queue)} call record(s) not written: {self.cdr_error}"
                    )
                writer = self._start_cdr_writer()
            await asyncio.shield(writer)

    async def _close_cdrs(self) -> None:
        """For `close()`: write the queue; what cannot be written is logged as lost."""
        try:
            await self.flush_cdrs()
        except StoreError as exc:
            lost = len(self._cdr_queue)
            self._cdr_queue.clear()
            self.cdr_dropped += lost
            cdr_log.error("closing the store: %d call record(s) lost: %s", lost, exc)

    # reading

    async def iter_cdrs(
        self, since: dt.datetime, until: dt.datetime, *, page: int = CDR_PAGE
    ) -> AsyncIterator[CallRecord]:
        """The records of calls started in [since, until), in start order, read `page`
        at a time (records added meanwhile may or may not be seen)."""
        _check_range(since, until)
        if page < 1:
            raise ValueError(f"page: expected at least 1, found {page}")
        after: tuple[dt.datetime, int] | None = None
        while True:
            rows = await self._cdr_page(since, until, after, page)
            for _position, record in rows:
                yield record
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def cdrs(self, since: dt.datetime, until: dt.datetime) -> list[CallRecord]:
        """Every record of a call started in [since, until), in start order."""
        return [record async for record in self.iter_cdrs(since, until)]


class Store(BookingStore, CallRecordStore):
    """Bookings and call records in one database: what `open_store` gives."""


def open_store(url: str, *, pool_size: int = 10) -> Store:
    """The store a database URL names (not yet opened): `sqlite:///PATH` (or
    `sqlite:///:memory:`) or `postgresql://…` (`postgres://` too). `pool_size` bounds
    PostgreSQL connections. Raises StoreError for other schemes."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest.startswith("/"):
        from hotline.booking.store.sqlite import SqliteStore

        path_text = rest[1:].partition("?")[0]
        return SqliteStore(":memory:" if path_text == ":memory:" else Path(path_text))
    if scheme in ("postgresql", "postgres") and sep:
        from hotline.booking.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    raise StoreError(
        f"expected a database URL sqlite:///PATH or postgresql://…, found scheme {scheme!r}"
    )
