"""A naive booking store, the baseline of bench/booking.py: what a hurried implementation of
hotline.booking.store.BookingStore looks like, on SQLite and on PostgreSQL.

Owns: `NaiveSqliteStore` and `NaivePostgresStore`, complete BookingStore implementations
that the bench drives through the same hotline.booking.service.BookingService as hotline's
own stores. They are naive on purpose, in exactly three ways:

1. One transaction per SQL statement. Every statement runs on its own in autocommit mode
   (SQLite `isolation_level=None`; psycopg `autocommit=True`), each on a connection taken
   from a pool of `pool_size` (SQLite: one connection per worker thread of an executor;
   PostgreSQL: a psycopg pool, a connection per statement, as `pool.fetch(...)` does).
2. No indexes beyond primary keys. The schema is hotline's own migrations for the dialect
   with every `CREATE INDEX` statement and `UNIQUE` constraint removed, so the columns
   and types are the same; `open()` checks that only primary-key indexes exist.
3. Capacity checked in Python. A hold reads the slot, compares `taken` with `capacity`
   and writes the new count back as a value (`UPDATE slots SET taken = ?`), the way an
   ORM's `slot.taken += 1; save()` does; references are checked free with a SELECT and
   then written. Nothing stops two callers from reading the same count.

Everything else matches hotline's stores, so that a difference in the figures comes from
these three: the same rows are written (a booking, its audit rows, its outbox message),
the same operations are answered the same way when there is no concurrency, and commits
are as durable (SQLite: WAL journal with synchronous=FULL; PostgreSQL: the server's own
synchronous commit). Bulk imports (`save_clinics`, `add_slots`) run in one transaction,
as any implementation would for an import; the bench does not time them.

Must not know: the benchmark's load or its reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import threading
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hotline.booking.model import (
    AuditEntry,
    Booking,
    BookingStatus,
    Clinic,
    MessageKind,
    OutboxMessage,
    Person,
    Slot,
    format_sessions,
    parse_sessions,
)
from hotline.booking.store import (
    MAX_REFERENCE_DRAWS,
    Actor,
    BookingStore,
    ChangeResult,
    ChangeStatus,
    HoldRequest,
    HoldResult,
    HoldStatus,
    MessageBuilder,
    StoreError,
    load_migrations,
)
from hotline.booking.store.sqlops import Json, Rows, as_instant, utc_text

__all__ = ["NaivePostgresStore", "NaiveSqliteStore", "NaiveStore", "naive_schema"]

_SWEEPER: Final = Actor("system:sweep")
_BOOKING_COLUMNS: Final = (
    "b.id, b.reference, b.status, b.clinic_id, b.slot_id, b.vaccine, b.dose, b.medicare, "
    "b.dob, b.phone, s.starts_at, s.local_date, s.local_time, b.held_at, b.hold_expires_at, "
    "b.confirmed_at, b.cancelled_at, b.version"
)
_BOOKINGS: Final = f"SELECT {_BOOKING_COLUMNS} FROM bookings b JOIN slots s ON s.id = b.slot_id"
_SLOT_COLUMNS: Final = "id, clinic_id, starts_at, local_date, local_time, minutes, capacity, taken"
_CLINIC_COLUMNS: Final = "id, name, address, postcode, region, lat, lon, vaccines, sessions, active"
_OUTBOX_COLUMNS: Final = (
    "id, booking_id, kind, dedupe_key, payload, created_at, attempts, next_attempt_at, last_error"
)
_INDEX_STATEMENT: Final = re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\b[^;]*;", re.IGNORECASE)
_UNIQUE: Final = re.compile(r"\s+UNIQUE\b", re.IGNORECASE)


def naive_schema(dialect: str) -> str:
    """hotline's migrations for `dialect` ("sqlite" or "postgresql") as one script, with
    every CREATE INDEX statement and UNIQUE constraint removed."""
    script = "\n".join(m.sql for m in load_migrations(dialect))
    return _UNIQUE.sub("", _INDEX_STATEMENT.sub("", script))


# -- stored values --------------------------------------------------------------------------


def _date(value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise TypeError(f"expected a stored date, found {type(value).__name__}")


def _opt_instant(value: object) -> dt.datetime | None:
    return None if value is None else as_instant(value)


def _booking(row: Sequence[Any]) -> Booking:
    return Booking(
        id=int(row[0]),
        reference=None if row[1] is None else str(row[1]),
        status=BookingStatus(row[2]),
        clinic_id=str(row[3]),
        slot_id=str(row[4]),
        vaccine=str(row[5]),
        dose=int(row[6]),
        person=Person(str(row[7]), _date(row[8]), str(row[9])),
        starts_at=as_instant(row[10]),
        local_date=_date(row[11]),
        local_time=dt.time.fromisoformat(str(row[12])),
        held_at=as_instant(row[13]),
        hold_expires_at=as_instant(row[14]),
        confirmed_at=_opt_instant(row[15]),
        cancelled_at=_opt_instant(row[16]),
        version=int(row[17]),
    )


def _slot(row: Sequence[Any]) -> Slot:
    return Slot(
        str(row[0]),
        str(row[1]),
        as_instant(row[2]),
        _date(row[3]),
        dt.time.fromisoformat(str(row[4])),
        int(row[5]),
        int(row[6]),
        int(row[7]),
    )


def _clinic(row: Sequence[Any]) -> Clinic:
    return Clinic(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        str(row[4]),
        float(row[5]),
        float(row[6]),
        tuple(str(row[7]).split()),
        parse_sessions(str(row[8])),
        bool(row[9]),
    )


def _outbox(row: Sequence[Any]) -> OutboxMessage:
    payload = json.loads(row[4]) if isinstance(row[4], str) else row[4]
    if not isinstance(payload, dict):
        raise TypeError(f"expected a stored JSON object, found {type(payload).__name__}")
    return OutboxMessage(
        int(row[0]),
        int(row[1]),
        MessageKind(row[2]),
        str(row[3]),
        payload,
        as_instant(row[5]),
        int(row[6]),
        _opt_instant(row[7]),
        None if row[8] is None else str(row[8]),
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- the store ------------------------------------------------------------------------------


class NaiveStore(BookingStore):
    """BookingStore on one autocommitted statement at a time (`_query`)."""

    @abstractmethod
    async def _query(self, sql: str, params: tuple[object, ...] = ()) -> Rows:
        """Run one statement on its own (its own transaction) and return its rows."""

    @abstractmethod
    async def _bulk(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        """Run one statement for each of `rows` in a single transaction (imports);
        returns how many rows it changed."""

    # -- helpers -------------------------------------------------------------------------

    async def _audit(
        self,
        booking: Booking,
        action: str,
        actor: Actor,
        now: dt.datetime,
        before: BookingStatus | None,
        after: BookingStatus | None,
        detail: str = "",
    ) -> None:
        text = (
            f"slot={booking.slot_id} vaccine={booking.vaccine} dose={booking.dose}"
            + (f" reference={booking.reference}" if booking.reference else "")
            + (f" {detail}" if detail else "")
        )
        await self._query(
            "INSERT INTO audit (booking_id, action, actor, call_id, at, before_status, "
            "after_status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                booking.id,
                action,
                actor.name,
                actor.call_id,
                now,
                None if before is None else before.value,
                None if after is None else after.value,
                text,
            ),
        )

    async def _message(
        self, kind: MessageKind, booking: Booking, now: dt.datetime, build: MessageBuilder
    ) -> None:
        clinic = await self.clinic(booking.clinic_id)
        if clinic is None:
            raise StoreError(
                f"booking {booking.id} names clinic {booking.clinic_id!r}, which is not stored"
            )
        await self._query(
            "INSERT INTO outbox (booking_id, kind, dedupe_key, payload, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                booking.id,
                kind.value,
                f"{kind.value}:{booking.id}:{booking.version}",
                Json(dict(build(kind, booking, clinic))),
                now,
                now,
            ),
        )

    async def _add_taken(self, slot_id: str, delta: int) -> None:
        """Read the slot's count and write it back changed by `delta`."""
        slot = await self.slot(slot_id)
        if slot is not None:
            await self._query(
                "UPDATE slots SET taken = ? WHERE id = ?", (max(0, slot.taken + delta), slot_id)
            )

    async def _expire(
        self,
        now: dt.datetime,
        actor: Actor,
        *,
        slot_id: str | None = None,
        booking_id: int | None = None,
    ) -> int:
        where = "status = 'held' AND hold_expires_at <= ?"
        params: tuple[object, ...] = (now,)
        if slot_id is not None:
            where += " AND slot_id = ?"
            params += (slot_id,)
        if booking_id is not None:
            where += " AND id = ?"
            params += (booking_id,)
        done = await self._query(
            f"UPDATE bookings SET status = 'expired', updated_at = ?, version = version + 1 "
            f"WHERE {where} RETURNING id, slot_id",
            (now, *params),
        )
        for slot, count in sorted(Counter(str(r[1]) for r in done.rows).items()):
            await self._add_taken(slot, -count)
        for row in done.rows:
            booking = await self.booking(int(row[0]))
            if booking is not None:
                await self._audit(
                    booking, "expire", actor, now, BookingStatus.HELD, BookingStatus.EXPIRED
                )
        return len(done.rows)

    async def _take_place(
        self, slot_id: str, now: dt.datetime, not_before: dt.datetime, actor: Actor
    ) -> HoldStatus:
        slot = await self.slot(slot_id)
        if slot is None or slot.starts_at < not_before:
            return HoldStatus.NO_SLOT
        if await self._expire(now, actor, slot_id=slot_id):
            slot = await self.slot(slot_id)
            assert slot is not None
        if slot.taken >= slot.capacity:
            return HoldStatus.FULL
        await self._query("UPDATE slots SET taken = ? WHERE id = ?", (slot.taken + 1, slot_id))
        return HoldStatus.OK

    async def _where(
        self, where: str, params: tuple[object, ...], order: str = "b.id"
    ) -> list[Booking]:
        rows = await self._query(f"{_BOOKINGS} WHERE {where} ORDER BY {order}", params)
        return [_booking(r) for r in rows.rows]

    # -- clinics and slots ---------------------------------------------------------------

    async def schema_version(self) -> int:
        rows = await self._query("SELECT MAX(version) FROM schema_migrations")
        row = rows.one()
        return 0 if row is None or row[0] is None else int(row[0])

    async def save_clinics(self, clinics: Sequence[Clinic], *, now: dt.datetime) -> int:
        await self._bulk(
            "INSERT INTO clinics (id, name, address, postcode, region, lat, lon, vaccines, "
            "sessions, active, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address, "
            "postcode = excluded.postcode, region = excluded.region, lat = excluded.lat, "
            "lon = excluded.lon, vaccines = excluded.vaccines, sessions = excluded.sessions, "
            "active = excluded.active, updated_at = excluded.updated_at",
            [
                (
                    c.id,
                    c.name,
                    c.address,
                    c.postcode,
                    c.region,
                    c.lat,
                    c.lon,
                    " ".join(c.vaccines),
                    format_sessions(c.sessions),
                    c.active,
                    now,
                )
                for c in clinics
            ],
        )
        return len(clinics)

    async def clinics(self, *, active_only: bool = True) -> list[Clinic]:
        where = " WHERE active = ?" if active_only else ""
        rows = await self._query(
            f"SELECT {_CLINIC_COLUMNS} FROM clinics{where} ORDER BY id",
            (True,) if active_only else (),
        )
        return [_clinic(r) for r in rows.rows]

    async def clinic(self, clinic_id: str) -> Clinic | None:
        rows = await self._query(
            f"SELECT {_CLINIC_COLUMNS} FROM clinics WHERE id = ?", (clinic_id,)
        )
        row = rows.one()
        return None if row is None else _clinic(row)

    async def add_slots(self, slots: Sequence[Slot]) -> int:
        return await self._bulk(
            "INSERT INTO slots (id, clinic_id, starts_at, local_date, local_time, minutes, "
            "capacity, taken) VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (id) DO NOTHING",
            [
                (
                    s.id,
                    s.clinic_id,
                    s.starts_at,
                    s.local_date,
                    f"{s.local_time:%H:%M}",
                    s.minutes,
                    s.capacity,
                )
                for s in slots
            ],
        )

    async def slot(self, slot_id: str) -> Slot | None:
        rows = await self._query(f"SELECT {_SLOT_COLUMNS} FROM slots WHERE id = ?", (slot_id,))
        row = rows.one()
        return None if row is None else _slot(row)

    async def free_slots(
        self,
        clinic_id: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        limit: int,
        after: dt.datetime | None = None,
    ) -> list[Slot]:
        lower = start if after is None or after < start else after
        op = ">=" if after is None or after < start else ">"
        rows = await self._query(
            f"SELECT {_SLOT_COLUMNS} FROM slots WHERE clinic_id = ? AND taken < capacity "
            f"AND starts_at {op} ? AND starts_at < ? ORDER BY starts_at, id LIMIT ?",
            (clinic_id, lower, end, limit),
        )
        return [_slot(r) for r in rows.rows]

    async def next_free(
        self, clinic_ids: Collection[str], *, start: dt.datetime, end: dt.datetime
    ) -> dict[str, dt.datetime]:
        ids = sorted(set(clinic_ids))
        if not ids:
            return {}
        rows = await self._query(
            f"SELECT clinic_id, MIN(starts_at) FROM slots WHERE clinic_id IN "
            f"({_marks(len(ids))}) AND taken < capacity AND starts_at >= ? AND starts_at < ? "
            f"GROUP BY clinic_id",
            (*ids, start, end),
        )
        return {str(r[0]): as_instant(r[1]) for r in rows.rows}

    # -- bookings ------------------------------------------------------------------------

    async def hold(self, request: HoldRequest) -> HoldResult:
        req = request
        if req.key is not None:
            rows = await self._query("SELECT id FROM bookings WHERE hold_key = ?", (req.key,))
            if rows.rows:
                existing = await self.booking(int(rows.rows[0][0]))
                if existing is not None and (
                    existing.status is BookingStatus.CONFIRMED
                    or (existing.status is BookingStatus.HELD and not existing.expired_at(req.now))
                ):
                    return HoldResult(HoldStatus.OK, existing, replayed=True)
                await self._query(
                    "UPDATE bookings SET hold_key = NULL WHERE hold_key = ?", (req.key,)
                )
        status = await self._take_place(req.slot_id, req.now, req.not_before, req.actor)
        if status is not HoldStatus.OK:
            return HoldResult(status)
        slot = await self.slot(req.slot_id)
        assert slot is not None
        person = req.person
        inserted = await self._query(
            "INSERT INTO bookings (status, clinic_id, slot_id, vaccine, dose, medicare, card, "
            "dob, phone, hold_key, held_at, hold_expires_at, updated_at, version) "
            "VALUES ('held', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
            (
                slot.clinic_id,
                slot.id,
                req.vaccine,
                req.dose,
                person.medicare,
                person.card,
                person.dob,
                person.phone,
                req.key,
                req.now,
                req.expires_at,
                req.now,
            ),
        )
        booking = await self.booking(int(inserted.rows[0][0]))
        assert booking is not None
        await self._audit(
            booking,
            "hold",
            req.actor,
            req.now,
            None,
            BookingStatus.HELD,
            f"expires={utc_text(req.expires_at)}",
        )
        return HoldResult(HoldStatus.OK, booking)

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
        booking = await self.booking(booking_id)
        if booking is None:
            return ChangeResult(ChangeStatus.NOT_FOUND)
        if booking.status is BookingStatus.CONFIRMED:
            return ChangeResult(ChangeStatus.OK, booking, replayed=True)
        if booking.status is BookingStatus.EXPIRED:
            return ChangeResult(ChangeStatus.EXPIRED, booking)
        if booking.status is not BookingStatus.HELD:
            return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
        if booking.expired_at(now):
            await self._expire(now, actor, booking_id=booking_id)
            return ChangeResult(ChangeStatus.EXPIRED, await self.booking(booking_id))
        for _ in range(MAX_REFERENCE_DRAWS):
            reference = new_reference()
            taken = await self._query("SELECT 1 FROM bookings WHERE reference = ?", (reference,))
            if not taken.rows:
                break
        else:
            raise StoreError(f"no unused booking reference after {MAX_REFERENCE_DRAWS} draws")
        await self._query(
            "UPDATE bookings SET status = 'confirmed', reference = ?, confirm_key = ?, "
            "confirmed_at = ?, updated_at = ?, version = version + 1 WHERE id = ?",
            (reference, key, now, now, booking_id),
        )
        confirmed = await self.booking(booking_id)
        assert confirmed is not None
        await self._message(MessageKind.CONFIRMED, confirmed, now, message)
        await self._audit(
            confirmed, "confirm", actor, now, BookingStatus.HELD, BookingStatus.CONFIRMED
        )
        return ChangeResult(ChangeStatus.OK, confirmed)

    async def cancel(
        self, booking_id: int, *, now: dt.datetime, actor: Actor, message: MessageBuilder
    ) -> ChangeResult:
        booking = await self.booking(booking_id)
        if booking is None:
            return ChangeResult(ChangeStatus.NOT_FOUND)
        if not booking.active:
            return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
        await self._query(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = ?, updated_at = ?, "
            "version = version + 1 WHERE id = ?",
            (now, now, booking_id),
        )
        await self._add_taken(booking.slot_id, -1)
        cancelled = await self.booking(booking_id)
        assert cancelled is not None
        if booking.status is BookingStatus.CONFIRMED:
            await self._message(MessageKind.CANCELLED, cancelled, now, message)
        await self._audit(cancelled, "cancel", actor, now, booking.status, BookingStatus.CANCELLED)
        return ChangeResult(ChangeStatus.OK, cancelled)

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
        booking = await self.booking(booking_id)
        if booking is None:
            return ChangeResult(ChangeStatus.NOT_FOUND)
        if booking.status is not BookingStatus.CONFIRMED:
            return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
        if booking.slot_id == slot_id:
            return ChangeResult(ChangeStatus.OK, booking, replayed=True)
        status = await self._take_place(slot_id, now, not_before, actor)
        if status is HoldStatus.NO_SLOT:
            return ChangeResult(ChangeStatus.NO_SLOT, booking)
        if status is HoldStatus.FULL:
            return ChangeResult(ChangeStatus.FULL, booking)
        await self._add_taken(booking.slot_id, -1)
        target = await self.slot(slot_id)
        assert target is not None
        await self._query(
            "UPDATE bookings SET slot_id = ?, clinic_id = ?, updated_at = ?, "
            "version = version + 1 WHERE id = ?",
            (slot_id, target.clinic_id, now, booking_id),
        )
        moved = await self.booking(booking_id)
        assert moved is not None
        await self._message(MessageKind.RESCHEDULED, moved, now, message)
        await self._audit(
            moved,
            "reschedule",
            actor,
            now,
            BookingStatus.CONFIRMED,
            BookingStatus.CONFIRMED,
            f"from={booking.slot_id}",
        )
        return ChangeResult(ChangeStatus.OK, moved)

    async def mark_attended(
        self, booking_id: int, *, now: dt.datetime, actor: Actor
    ) -> ChangeResult:
        booking = await self.booking(booking_id)
        if booking is None:
            return ChangeResult(ChangeStatus.NOT_FOUND)
        if booking.status is BookingStatus.ATTENDED:
            return ChangeResult(ChangeStatus.OK, booking, replayed=True)
        if booking.status is not BookingStatus.CONFIRMED:
            return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
        await self._query(
            "UPDATE bookings SET status = 'attended', updated_at = ?, version = version + 1 "
            "WHERE id = ?",
            (now, booking_id),
        )
        attended = await self.booking(booking_id)
        assert attended is not None
        await self._audit(
            attended, "attend", actor, now, BookingStatus.CONFIRMED, BookingStatus.ATTENDED
        )
        return ChangeResult(ChangeStatus.OK, attended)

    async def release_expired(self, now: dt.datetime, *, actor: Actor = _SWEEPER) -> int:
        return await self._expire(now, actor)

    async def booking(self, booking_id: int) -> Booking | None:
        found = await self._where("b.id = ?", (booking_id,))
        return found[0] if found else None

    async def bookings_by_reference(self, references: Collection[str]) -> list[Booking]:
        refs = sorted(set(references))
        if not refs:
            return []
        return await self._where(f"b.reference IN ({_marks(len(refs))})", tuple(refs))

    async def upcoming_by_phone(self, phone: str, *, since: dt.datetime) -> list[Booking]:
        return await self._where(
            "b.phone = ? AND b.status = 'confirmed' AND s.starts_at >= ?",
            (phone, since),
            "s.starts_at, b.id",
        )

    async def bookings_of_person(self, card: str, dob: dt.date) -> list[Booking]:
        return await self._where("b.card = ? AND b.dob = ?", (card, dob))

    async def bookings_on(
        self, local_date: dt.date, *, clinic_id: str | None = None
    ) -> list[Booking]:
        where = "s.local_date = ? AND b.status IN ('confirmed', 'attended')"
        params: tuple[object, ...] = (local_date,)
        if clinic_id is not None:
            where += " AND b.clinic_id = ?"
            params += (clinic_id,)
        return await self._where(where, params, "b.clinic_id, s.starts_at, b.reference")

    async def audit_trail(self, booking_id: int) -> list[AuditEntry]:
        rows = await self._query(
            "SELECT booking_id, action, actor, call_id, at, before_status, after_status, "
            "detail FROM audit WHERE booking_id = ? ORDER BY id",
            (booking_id,),
        )
        return [
            AuditEntry(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                None if r[3] is None else str(r[3]),
                as_instant(r[4]),
                None if r[5] is None else BookingStatus(r[5]),
                None if r[6] is None else BookingStatus(r[6]),
                str(r[7]),
            )
            for r in rows.rows
        ]

    # -- outbox --------------------------------------------------------------------------

    async def claim_outbox(
        self, now: dt.datetime, *, lease: dt.timedelta, limit: int = 10
    ) -> list[OutboxMessage]:
        due = await self._query(
            "SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
            "ORDER BY id LIMIT ?",
            (now, now, limit),
        )
        claimed: list[OutboxMessage] = []
        for row in due.rows:
            done = await self._query(
                f"UPDATE outbox SET claimed_until = ?, attempts = attempts + 1 WHERE id = ? "
                f"RETURNING {_OUTBOX_COLUMNS}",
                (now + lease, int(row[0])),
            )
            claimed.extend(_outbox(r) for r in done.rows)
        return claimed

    async def outbox_delivered(self, message_id: int, *, now: dt.datetime) -> None:
        await self._query(
            "UPDATE outbox SET sent_at = ?, claimed_until = NULL, last_error = NULL WHERE id = ?",
            (now, message_id),
        )

    async def outbox_failed(
        self, message_id: int, *, now: dt.datetime, retry_at: dt.datetime | None, error: str
    ) -> None:
        if retry_at is None:
            await self._query(
                "UPDATE outbox SET failed_at = ?, claimed_until = NULL, last_error = ? "
                "WHERE id = ?",
                (now, error[:1000], message_id),
            )
        else:
            await self._query(
                "UPDATE outbox SET next_attempt_at = ?, claimed_until = NULL, last_error = ? "
                "WHERE id = ?",
                (retry_at, error[:1000], message_id),
            )

    async def outbox_pending(self) -> int:
        rows = await self._query(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        )
        row = rows.one()
        return 0 if row is None else int(row[0])


# -- SQLite ---------------------------------------------------------------------------------


def _sqlite_param(value: object) -> object:
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Json):
        return json.dumps(dict(value.value), separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


class NaiveSqliteStore(NaiveStore):
    """The naive store on one SQLite file: `pool_size` worker threads, each with its own
    connection, every statement autocommitted."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, pool_size: int = 10, busy_timeout: float = 30.0) -> None:
        if pool_size < 1:
            raise ValueError(f"expected a pool size of at least 1, found {pool_size}")
        self.path = path
        self.pool_size = pool_size
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"NaiveSqliteStore({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def _execute(self, sql: str, params: tuple[object, ...]) -> Rows:
        try:
            cursor = self._connection().execute(sql, tuple(_sqlite_param(p) for p in params))
            return Rows(cursor.fetchall(), cursor.rowcount)
        except sqlite3.Error as exc:
            raise StoreError(f"naive SQLite store {self.path}: {exc}") from None

    def _execute_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                for row in rows:
                    changed += max(conn.execute(sql, tuple(map(_sqlite_param, row))).rowcount, 0)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return changed
        except sqlite3.Error as exc:
            raise StoreError(f"naive SQLite store {self.path}: {exc}") from None

    def _setup(self) -> None:
        conn = self._connection()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"naive SQLite store {self.path}: no WAL journal (got {mode!r})")
            known = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            if known is None:
                conn.executescript(
                    "BEGIN IMMEDIATE;\n"
                    + naive_schema(self.dialect)
                    + "\nCREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL);\n"
                    + "".join(
                        f"INSERT INTO schema_migrations VALUES ({m.version}, '{m.name}', "
                        f"'{utc_text(dt.datetime.now(dt.UTC))}');\n"
                        for m in load_migrations(self.dialect)
                    )
                    + "COMMIT;"
                )
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            extra = [
                f"{table}.{index[1]}"
                for table in tables
                for index in conn.execute(f"PRAGMA index_list({table!r})")
                if index[3] != "pk"
            ]
        except sqlite3.Error as exc:
            raise StoreError(f"naive SQLite store {self.path}: {exc}") from None
        if extra:
            raise StoreError(
                f"naive SQLite store {self.path}: expected primary-key indexes only, "
                f"found {', '.join(extra)}"
            )

    async def _call(self, fn: Callable[[], Any]) -> Any:
        if self._executor is None:
            raise StoreError(f"{self!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(
            max_workers=self.pool_size, thread_name_prefix="naive-sqlite"
        )
        try:
            await self._call(self._setup)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.shutdown(wait=True)
        with self._guard:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    async def _query(self, sql: str, params: tuple[object, ...] = ()) -> Rows:
        result: Rows = await self._call(partial(self._execute, sql, params))
        return result

    async def _bulk(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        changed: int = await self._call(partial(self._execute_many, sql, rows))
        return changed


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg_param(value: object) -> object:
    if isinstance(value, Json):
        return Jsonb(dict(value.value))
    return value


def _pg_sql(sql: str) -> bytes:
    return sql.replace("?", "%s").encode()


class NaivePostgresStore(NaiveStore):
    """The naive store on PostgreSQL: a pool of at most `pool_size` autocommit
    connections, one taken for each statement."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError(f"expected a pool size of at least 1, found {pool_size}")
        self._url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Any] | None = None

    def __repr__(self) -> str:
        return "NaivePostgresStore()"

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=self.connect_timeout,
            name="naive-booking",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT 1 FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename = 'schema_migrations'"
                )
                if await cursor.fetchone() is None:
                    async with conn.transaction():
                        await conn.execute(naive_schema(self.dialect).encode())
                        await conn.execute(
                            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                        )
                        for m in load_migrations(self.dialect):
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                (m.version, m.name),
                            )
                cursor = await conn.execute(
                    "SELECT i.indexname FROM pg_indexes i WHERE i.schemaname = 'public' AND "
                    "NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class c ON c.oid = "
                    "x.indexrelid WHERE c.relname = i.indexname AND x.indisprimary)"
                )
                extra = [str(r[0]) for r in await cursor.fetchall()]
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreError(f"naive PostgreSQL store: cannot open: {exc}") from None
        if extra:
            await pool.close()
            raise StoreError(
                f"naive PostgreSQL store: expected primary-key indexes only, found "
                f"{', '.join(sorted(extra))}"
            )
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _query(self, sql: str, params: tuple[object, ...] = ()) -> Rows:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is not open")
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(_pg_sql(sql), tuple(_pg_param(p) for p in params))
                rows = await cursor.fetchall() if cursor.description is not None else []
                return Rows([tuple(r) for r in rows], cursor.rowcount)
        except PoolTimeout as exc:
            raise StoreError(f"naive PostgreSQL store: no connection free: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"naive PostgreSQL store: {exc}") from None

    async def _bulk(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is not open")
        try:
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                changed = 0
                for row in rows:
                    await cursor.execute(_pg_sql(sql), tuple(_pg_param(p) for p in row))
                    changed += max(cursor.rowcount, 0)
                return changed
        except PoolTimeout as exc:
            raise StoreError(f"naive PostgreSQL store: no connection free: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"naive PostgreSQL store: {exc}") from None
