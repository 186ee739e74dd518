"""Every read and write of the booking stores, written once for SQLite and PostgreSQL.

Owns: each store operation as a *transaction generator* — a generator that yields the
statements to run (`Query`) and receives their results (`Rows`), and returns the
operation's answer — so the locking and capacity logic lives in one place and does no I/O
itself; the conversion of stored values back to domain records; and `SqlStore`, which
implements hotline.booking.store.BookingStore on top of a driver's `_transact`.

Must not know: connections, threads, the event loop or a driver's API. A driver (the
SQLite and PostgreSQL stores) runs a generator inside one transaction, translating:

- `?` placeholders (PostgreSQL: `%s`; statements here hold no other `?` or `%`);
- parameters: aware datetimes (SQLite: fixed-width UTC text), dates (SQLite: ISO text),
  `Json` (SQLite: text; PostgreSQL: jsonb);
- `Query.lock`: "update" appends `FOR UPDATE` and "skip" `FOR UPDATE SKIP LOCKED` on
  PostgreSQL; SQLite's write transactions (`BEGIN IMMEDIATE`) already exclude other
  writers, so it ignores them.

Capacity is taken only by `UPDATE slots SET taken = taken + 1 WHERE id = ? AND taken <
capacity`: PostgreSQL re-checks the condition on the locked row under concurrent updates,
and SQLite runs one writer at a time, so no interleaving can overfill a slot.

Call detail records: `cdr_row` and `cdr_record` map a hotline.cdr.CallRecord to the `cdr`
table's columns (`CDR_COLUMNS`) and back; `insert_cdrs` writes a batch (multi-row
inserts, `ON CONFLICT DO NOTHING` on the record's identity) and `cdr_page` reads them in
start order by keyset (start, id), so a long export never re-reads or skips a row.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeVar

from hotline.booking.model import (
    AuditEntry,
    Booking,
    BookingStatus,
    Clinic,
    MessageKind,
    OutboxMessage,
    Person,
    Scalar,
    Slot,
    format_sessions,
    parse_sessions,
)
from hotline.booking.store import (
    MAX_REFERENCE_DRAWS,
    Actor,
    ChangeResult,
    ChangeStatus,
    HoldRequest,
    HoldResult,
    HoldStatus,
    MessageBuilder,
    Store,
    StoreError,
)
from hotline.cdr import FIELDS, CallRecord, Direction, HangupSide, MediaQuality
from hotline.sip.endpoint import EndReason

__all__ = [
    "CDR_COLUMNS",
    "Json",
    "Query",
    "Rows",
    "SqlStore",
    "Transaction",
    "as_instant",
    "cdr_page",
    "cdr_record",
    "cdr_row",
    "insert_cdrs",
    "utc_text",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Json:
    """A parameter stored as JSON."""

    value: Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: tuple[object, ...] = ()
    lock: Literal["update", "skip"] | None = None


@dataclass(frozen=True, slots=True)
class Rows:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


Transaction: TypeAlias = Generator[Query, Rows, T]
"""A transaction generator: yields statements, receives their rows, returns its answer."""

# -- stored values --------------------------------------------------------------------------


def utc_text(instant: dt.datetime) -> str:
    """A UTC instant as fixed-width text (text order is time order)."""
    if instant.tzinfo is None:
        raise ValueError(f"expected an aware datetime, found naive {instant.isoformat()}")
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_instant(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    raise TypeError(f"expected a stored instant, found {type(value).__name__}")


def _opt_instant(value: object) -> dt.datetime | None:
    return None if value is None else as_instant(value)


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        raise TypeError("expected a stored date, found a datetime")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise TypeError(f"expected a stored date, found {type(value).__name__}")


def _time(value: object) -> dt.time:
    if isinstance(value, str):
        return dt.time.fromisoformat(value)
    raise TypeError(f"expected a stored HH:MM time, found {type(value).__name__}")


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected a stored integer, found {type(value).__name__}")


def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected stored text, found {type(value).__name__}")


def _float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a stored number, found {type(value).__name__}")


def _payload(value: object) -> dict[str, Scalar]:
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise TypeError(f"expected a stored JSON object, found {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def _hhmm(value: dt.time) -> str:
    return f"{value:%H:%M}"


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


def _booking(row: Sequence[Any]) -> Booking:
    (
        id_,
        reference,
        status,
        clinic_id,
        slot_id,
        vaccine,
        dose,
        medicare,
        dob,
        phone,
        starts_at,
        local_date,
        local_time,
        held_at,
        expires,
        confirmed_at,
        cancelled_at,
        version,
    ) = row
    return Booking(
        id=_int(id_),
        reference=None if reference is None else _str(reference),
        status=BookingStatus(status),
        clinic_id=_str(clinic_id),
        slot_id=_str(slot_id),
        vaccine=_str(vaccine),
        dose=_int(dose),
        person=Person(_str(medicare), _date(dob), _str(phone)),
        starts_at=as_instant(starts_at),
        local_date=_date(local_date),
        local_time=_time(local_time),
        held_at=as_instant(held_at),
        hold_expires_at=as_instant(expires),
        confirmed_at=_opt_instant(confirmed_at),
        cancelled_at=_opt_instant(cancelled_at),
        version=_int(version),
    )


def _slot(row: Sequence[Any]) -> Slot:
    id_, clinic_id, starts_at, local_date, local_time, minutes, capacity, taken = row
    return Slot(
        _str(id_),
        _str(clinic_id),
        as_instant(starts_at),
        _date(local_date),
        _time(local_time),
        _int(minutes),
        _int(capacity),
        _int(taken),
    )


def _clinic(row: Sequence[Any]) -> Clinic:
    id_, name, address, postcode, region, lat, lon, vaccines, sessions, active = row
    return Clinic(
        _str(id_),
        _str(name),
        _str(address),
        _str(postcode),
        _str(region),
        _float(lat),
        _float(lon),
        tuple(_str(vaccines).split()),
        parse_sessions(_str(sessions)),
        bool(active),
    )


def _outbox(row: Sequence[Any]) -> OutboxMessage:
    id_, booking_id, kind, key, payload, created, attempts, next_at, error = row
    return OutboxMessage(
        _int(id_),
        _int(booking_id),
        MessageKind(kind),
        _str(key),
        _payload(payload),
        as_instant(created),
        _int(attempts),
        _opt_instant(next_at),
        None if error is None else _str(error),
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- call detail records --------------------------------------------------------------------

CDR_COLUMNS: Final = FIELDS  # the table's columns are the record's fields, in order
_CDR_SELECT: Final = ", ".join(CDR_COLUMNS)
_CDR_ROWS_PER_INSERT: Final = 100  # 2,800 parameters: within both databases' limits


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: object) -> float | None:
    return None if value is None else _float(value)


def cdr_row(record: CallRecord) -> tuple[object, ...]:
    """The `cdr` columns (CDR_COLUMNS, in order) of a record."""
    q = record.quality
    return (
        record.call_id,
        record.node,
        record.direction.value,
        record.caller,
        record.called,
        record.started_at,
        record.answered_at,
        record.ended_at,
        record.duration_s,
        record.talk_s,
        record.flow,
        record.flow_version,
        record.flow_result,
        record.queue,
        record.queue_wait_s,
        record.agent,
        record.transferred_to,
        record.hangup_side.value,
        record.end_reason.value,
        record.sip_status,
        None if q is None else q.rx_packets,
        None if q is None else q.rx_loss_pct,
        None if q is None else q.rx_jitter_ms,
        None if q is None else q.tx_packets,
        None if q is None else q.tx_loss_pct,
        None if q is None else q.tx_jitter_ms,
        None if q is None else q.rtt_ms,
        None if q is None else q.mos,
    )


def cdr_record(row: Sequence[Any]) -> CallRecord:
    """The record a `cdr` row (CDR_COLUMNS, in order) holds. `duration_s` and `talk_s`
    are stored for SQL reports only: the record derives them from its instants."""
    if len(row) != len(CDR_COLUMNS):
        raise TypeError(f"expected {len(CDR_COLUMNS)} cdr columns, found {len(row)}")
    (
        call_id,
        node,
        direction,
        caller,
        called,
        started_at,
        answered_at,
        ended_at,
        _duration,
        _talk,
        flow,
        flow_version,
        flow_result,
        queue,
        queue_wait_s,
        agent,
        transferred_to,
        side,
        end_reason,
        sip_status,
        *media,
    ) = row
    figures = (
        _opt_int(media[0]),
        _opt_float(media[1]),
        _opt_float(media[2]),
        _opt_int(media[3]),
        _opt_float(media[4]),
        _opt_float(media[5]),
        _opt_float(media[6]),
        _opt_float(media[7]),
    )
    return CallRecord(
        call_id=_str(call_id),
        node=_str(node),
        direction=Direction(direction),
        caller=_str(caller),
        called=_str(called),
        started_at=as_instant(started_at),
        ended_at=as_instant(ended_at),
        hangup_side=HangupSide(side),
        end_reason=EndReason(end_reason),
        answered_at=_opt_instant(answered_at),
        sip_status=_opt_int(sip_status),
        flow=_opt_str(flow),
        flow_version=_opt_str(flow_version),
        flow_result=_opt_str(flow_result),
        queue=_opt_str(queue),
        queue_wait_s=_opt_float(queue_wait_s),
        agent=_opt_str(agent),
        transferred_to=_opt_str(transferred_to),
        quality=None if all(v is None for v in figures) else MediaQuality(*figures),
    )


# -- building blocks ------------------------------------------------------------------------


def _get_booking(booking_id: int, *, lock: bool = False) -> Transaction[Booking | None]:
    if lock:
        # Lock the booking row alone (PostgreSQL refuses FOR UPDATE across an outer join
        # and a plain join would lock the slot too), then read it with its slot.
        found = yield Query("SELECT id FROM bookings WHERE id = ?", (booking_id,), "update")
        if not found.rows:
            return None
    rows = yield Query(f"{_BOOKINGS} WHERE b.id = ?", (booking_id,))
    row = rows.one()
    return None if row is None else _booking(row)


def _get_slot(slot_id: str) -> Transaction[Slot | None]:
    rows = yield Query(f"SELECT {_SLOT_COLUMNS} FROM slots WHERE id = ?", (slot_id,))
    row = rows.one()
    return None if row is None else _slot(row)


def _get_clinic(clinic_id: str) -> Transaction[Clinic | None]:
    rows = yield Query(f"SELECT {_CLINIC_COLUMNS} FROM clinics WHERE id = ?", (clinic_id,))
    row = rows.one()
    return None if row is None else _clinic(row)


def _audit(
    booking: Booking,
    action: str,
    actor: Actor,
    now: dt.datetime,
    before: BookingStatus | None,
    after: BookingStatus | None,
    detail: str = "",
) -> Transaction[None]:
    text = (
        f"slot={booking.slot_id} vaccine={booking.vaccine} dose={booking.dose}"
        + (f" reference={booking.reference}" if booking.reference else "")
        + (f" {detail}" if detail else "")
    )
    yield Query(
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


def _message(
    kind: MessageKind, booking: Booking, now: dt.datetime, build: MessageBuilder
) -> Transaction[None]:
    clinic = yield from _get_clinic(booking.clinic_id)
    if clinic is None:
        raise StoreError(
            f"booking {booking.id} names clinic {booking.clinic_id!r}, which is not in the store"
        )
    payload = dict(build(kind, booking, clinic))
    yield Query(
        "INSERT INTO outbox (booking_id, kind, dedupe_key, payload, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (
            booking.id,
            kind.value,
            f"{kind.value}:{booking.id}:{booking.version}",
            Json(payload),
            now,
            now,
        ),
    )


def _expire_holds(
    now: dt.datetime, actor: Actor, *, slot_id: str | None = None, booking_id: int | None = None
) -> Transaction[int]:
    """Expire the holds out of time by `now` (all, one slot's, or one booking) and give
    their places back."""
    where = "status = 'held' AND hold_expires_at <= ?"
    params: tuple[object, ...] = (now,)
    if slot_id is not None:
        where += " AND slot_id = ?"
        params += (slot_id,)
    if booking_id is not None:
        where += " AND id = ?"
        params += (booking_id,)
    done = yield Query(
        f"UPDATE bookings SET status = 'expired', updated_at = ?, version = version + 1 "
        f"WHERE {where} RETURNING id, slot_id",
        (now, *params),
    )
    if not done.rows:
        return 0
    per_slot = Counter(_str(row[1]) for row in done.rows)
    for slot, count in sorted(per_slot.items()):
        yield Query("UPDATE slots SET taken = taken - ? WHERE id = ?", (count, slot))
    for row in done.rows:
        booking = yield from _get_booking(_int(row[0]))
        if booking is not None:
            yield from _audit(
                booking, "expire", actor, now, BookingStatus.HELD, BookingStatus.EXPIRED
            )
    return len(done.rows)


def _take_place(
    slot_id: str, now: dt.datetime, not_before: dt.datetime, actor: Actor
) -> Transaction[HoldStatus]:
    slot = yield from _get_slot(slot_id)
    if slot is None or slot.starts_at < not_before:
        return HoldStatus.NO_SLOT
    yield from _expire_holds(now, actor, slot_id=slot_id)
    taken = yield Query(
        "UPDATE slots SET taken = taken + 1 WHERE id = ? AND taken < capacity", (slot_id,)
    )
    return HoldStatus.OK if taken.rowcount == 1 else HoldStatus.FULL


_SWEEPER: Final = Actor("system:sweep")

# -- operations -----------------------------------------------------------------------------


def save_clinics(clinics: Sequence[Clinic], now: dt.datetime) -> Transaction[int]:
    for c in clinics:
        yield Query(
            "INSERT INTO clinics (id, name, address, postcode, region, lat, lon, vaccines, "
            "sessions, active, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address, "
            "postcode = excluded.postcode, region = excluded.region, lat = excluded.lat, "
            "lon = excluded.lon, vaccines = excluded.vaccines, sessions = excluded.sessions, "
            "active = excluded.active, updated_at = excluded.updated_at",
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
            ),
        )
    return len(clinics)


def list_clinics(active_only: bool) -> Transaction[list[Clinic]]:
    where = " WHERE active = ?" if active_only else ""
    rows = yield Query(
        f"SELECT {_CLINIC_COLUMNS} FROM clinics{where} ORDER BY id", (True,) if active_only else ()
    )
    return [_clinic(r) for r in rows.rows]


def add_slots(slots: Sequence[Slot]) -> Transaction[int]:
    added = 0
    for s in slots:
        done = yield Query(
            "INSERT INTO slots (id, clinic_id, starts_at, local_date, local_time, minutes, "
            "capacity, taken) VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (id) DO NOTHING",
            (
                s.id,
                s.clinic_id,
                s.starts_at,
                s.local_date,
                _hhmm(s.local_time),
                s.minutes,
                s.capacity,
            ),
        )
        added += max(done.rowcount, 0)
    return added


def free_slots(
    clinic_id: str, start: dt.datetime, end: dt.datetime, limit: int, after: dt.datetime | None
) -> Transaction[list[Slot]]:
    lower = start if after is None or after < start else after
    op = ">=" if after is None or after < start else ">"
    rows = yield Query(
        f"SELECT {_SLOT_COLUMNS} FROM slots WHERE clinic_id = ? AND taken < capacity "
        f"AND starts_at {op} ? AND starts_at < ? ORDER BY starts_at, id LIMIT ?",
        (clinic_id, lower, end, limit),
    )
    return [_slot(r) for r in rows.rows]


def next_free(
    clinic_ids: Collection[str], start: dt.datetime, end: dt.datetime
) -> Transaction[dict[str, dt.datetime]]:
    ids = sorted(set(clinic_ids))
    if not ids:
        return {}
    rows = yield Query(
        f"SELECT clinic_id, MIN(starts_at) FROM slots WHERE clinic_id IN ({_marks(len(ids))}) "
        f"AND taken < capacity AND starts_at >= ? AND starts_at < ? GROUP BY clinic_id",
        (*ids, start, end),
    )
    return {_str(r[0]): as_instant(r[1]) for r in rows.rows}


def hold(req: HoldRequest) -> Transaction[HoldResult]:
    if req.key is not None:
        rows = yield Query("SELECT id FROM bookings WHERE hold_key = ?", (req.key,), "update")
        if rows.rows:
            existing = yield from _get_booking(_int(rows.rows[0][0]))
            if existing is not None and (
                existing.status is BookingStatus.CONFIRMED
                or (existing.status is BookingStatus.HELD and not existing.expired_at(req.now))
            ):
                return HoldResult(HoldStatus.OK, existing, replayed=True)
            # The key's booking is over (expired, cancelled): the key may start a new one.
            yield Query("UPDATE bookings SET hold_key = NULL WHERE hold_key = ?", (req.key,))
    status = yield from _take_place(req.slot_id, req.now, req.not_before, req.actor)
    if status is not HoldStatus.OK:
        return HoldResult(status)
    slot = yield from _get_slot(req.slot_id)
    assert slot is not None
    person = req.person
    inserted = yield Query(
        "INSERT INTO bookings (status, clinic_id, slot_id, vaccine, dose, medicare, card, dob, "
        "phone, hold_key, held_at, hold_expires_at, updated_at, version) "
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
    booking = yield from _get_booking(_int(inserted.rows[0][0]))
    assert booking is not None
    yield from _audit(
        booking,
        "hold",
        req.actor,
        req.now,
        None,
        BookingStatus.HELD,
        f"expires={utc_text(req.expires_at)}",
    )
    return HoldResult(HoldStatus.OK, booking)


def confirm(
    booking_id: int,
    now: dt.datetime,
    actor: Actor,
    new_reference: Callable[[], str],
    build: MessageBuilder,
    key: str | None,
) -> Transaction[ChangeResult]:
    booking = yield from _get_booking(booking_id, lock=True)
    if booking is None:
        return ChangeResult(ChangeStatus.NOT_FOUND)
    if booking.status is BookingStatus.CONFIRMED:
        return ChangeResult(ChangeStatus.OK, booking, replayed=True)
    if booking.status is BookingStatus.EXPIRED:
        return ChangeResult(ChangeStatus.EXPIRED, booking)
    if booking.status is not BookingStatus.HELD:
        return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
    if booking.expired_at(now):
        yield from _expire_holds(now, actor, booking_id=booking_id)
        expired = yield from _get_booking(booking_id)
        return ChangeResult(ChangeStatus.EXPIRED, expired)
    for _ in range(MAX_REFERENCE_DRAWS):
        reference = new_reference()
        taken = yield Query("SELECT 1 FROM bookings WHERE reference = ?", (reference,))
        if not taken.rows:
            break
    else:
        raise StoreError(
            f"no unused booking reference after {MAX_REFERENCE_DRAWS} draws: the "
            f"reference space is nearly full"
        )
    yield Query(
        "UPDATE bookings SET status = 'confirmed', reference = ?, confirm_key = ?, "
        "confirmed_at = ?, updated_at = ?, version = version + 1 WHERE id = ? "
        "AND status = 'held'",
        (reference, key, now, now, booking_id),
    )
    confirmed = yield from _get_booking(booking_id)
    assert confirmed is not None
    yield from _message(MessageKind.CONFIRMED, confirmed, now, build)
    yield from _audit(confirmed, "confirm", actor, now, BookingStatus.HELD, BookingStatus.CONFIRMED)
    return ChangeResult(ChangeStatus.OK, confirmed)


def cancel(
    booking_id: int, now: dt.datetime, actor: Actor, build: MessageBuilder
) -> Transaction[ChangeResult]:
    booking = yield from _get_booking(booking_id, lock=True)
    if booking is None:
        return ChangeResult(ChangeStatus.NOT_FOUND)
    if not booking.active:
        return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
    yield Query(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = ?, updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (now, now, booking_id),
    )
    yield Query("UPDATE slots SET taken = taken - 1 WHERE id = ?", (booking.slot_id,))
    cancelled = yield from _get_booking(booking_id)
    assert cancelled is not None
    if booking.status is BookingStatus.CONFIRMED:
        yield from _message(MessageKind.CANCELLED, cancelled, now, build)
    yield from _audit(cancelled, "cancel", actor, now, booking.status, BookingStatus.CANCELLED)
    return ChangeResult(ChangeStatus.OK, cancelled)


def reschedule(
    booking_id: int,
    slot_id: str,
    now: dt.datetime,
    not_before: dt.datetime,
    actor: Actor,
    build: MessageBuilder,
) -> Transaction[ChangeResult]:
    booking = yield from _get_booking(booking_id, lock=True)
    if booking is None:
        return ChangeResult(ChangeStatus.NOT_FOUND)
    if booking.status is not BookingStatus.CONFIRMED:
        return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
    if booking.slot_id == slot_id:
        return ChangeResult(ChangeStatus.OK, booking, replayed=True)
    status = yield from _take_place(slot_id, now, not_before, actor)
    if status is HoldStatus.NO_SLOT:
        return ChangeResult(ChangeStatus.NO_SLOT, booking)
    if status is HoldStatus.FULL:
        return ChangeResult(ChangeStatus.FULL, booking)
    yield Query("UPDATE slots SET taken = taken - 1 WHERE id = ?", (booking.slot_id,))
    yield Query(
        "UPDATE bookings SET slot_id = ?, clinic_id = (SELECT clinic_id FROM slots "
        "WHERE id = ?), updated_at = ?, version = version + 1 WHERE id = ?",
        (slot_id, slot_id, now, booking_id),
    )
    moved = yield from _get_booking(booking_id)
    assert moved is not None
    yield from _message(MessageKind.RESCHEDULED, moved, now, build)
    yield from _audit(
        moved,
        "reschedule",
        actor,
        now,
        BookingStatus.CONFIRMED,
        BookingStatus.CONFIRMED,
        f"from={booking.slot_id}",
    )
    return ChangeResult(ChangeStatus.OK, moved)


def mark_attended(booking_id: int, now: dt.datetime, actor: Actor) -> Transaction[ChangeResult]:
    booking = yield from _get_booking(booking_id, lock=True)
    if booking is None:
        return ChangeResult(ChangeStatus.NOT_FOUND)
    if booking.status is BookingStatus.ATTENDED:
        return ChangeResult(ChangeStatus.OK, booking, replayed=True)
    if booking.status is not BookingStatus.CONFIRMED:
        return ChangeResult(ChangeStatus.NOT_ACTIVE, booking)
    yield Query(
        "UPDATE bookings SET status = 'attended', updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (now, booking_id),
    )
    attended = yield from _get_booking(booking_id)
    assert attended is not None
    yield from _audit(
        attended, "attend", actor, now, BookingStatus.CONFIRMED, BookingStatus.ATTENDED
    )
    return ChangeResult(ChangeStatus.OK, attended)


def release_expired(now: dt.datetime, actor: Actor) -> Transaction[int]:
    return (yield from _expire_holds(now, actor))


def bookings_where(
    where: str, params: tuple[object, ...], order: str = "b.id"
) -> Transaction[list[Booking]]:
    rows = yield Query(f"{_BOOKINGS} WHERE {where} ORDER BY {order}", params)
    return [_booking(r) for r in rows.rows]


def audit_trail(booking_id: int) -> Transaction[list[AuditEntry]]:
    rows = yield Query(
        "SELECT booking_id, action, actor, call_id, at, before_status, after_status, detail "
        "FROM audit WHERE booking_id = ? ORDER BY id",
        (booking_id,),
    )
    return [
        AuditEntry(
            _int(r[0]),
            _str(r[1]),
            _str(r[2]),
            None if r[3] is None else _str(r[3]),
            as_instant(r[4]),
            None if r[5] is None else BookingStatus(r[5]),
            None if r[6] is None else BookingStatus(r[6]),
            _str(r[7]),
        )
        for r in rows.rows
    ]


def claim_outbox(
    now: dt.datetime, lease: dt.timedelta, limit: int
) -> Transaction[list[OutboxMessage]]:
    due = yield Query(
        "SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
        "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
        "ORDER BY id LIMIT ?",
        (now, now, limit),
        "skip",
    )
    ids = [_int(r[0]) for r in due.rows]
    if not ids:
        return []
    rows = yield Query(
        f"UPDATE outbox SET claimed_until = ?, attempts = attempts + 1 "
        f"WHERE id IN ({_marks(len(ids))}) RETURNING {_OUTBOX_COLUMNS}",
        (now + lease, *ids),
    )
    return sorted((_outbox(r) for r in rows.rows), key=lambda m: m.id)


def outbox_delivered(message_id: int, now: dt.datetime) -> Transaction[None]:
    yield Query(
        "UPDATE outbox SET sent_at = ?, claimed_until = NULL, last_error = NULL WHERE id = ?",
        (now, message_id),
    )


def outbox_failed(
    message_id: int, now: dt.datetime, retry_at: dt.datetime | None, error: str
) -> Transaction[None]:
    if retry_at is None:
        yield Query(
            "UPDATE outbox SET failed_at = ?, claimed_until = NULL, last_error = ? WHERE id = ?",
            (now, error[:1000], message_id),
        )
    else:
        yield Query(
            "UPDATE outbox SET next_attempt_at = ?, claimed_until = NULL, "
            "last_error = ? WHERE id = ?",
            (retry_at, error[:1000], message_id),
        )


def single(sql: str, params: tuple[object, ...] = ()) -> Transaction[Rows]:
    return (yield Query(sql, params))


def insert_cdrs(records: Sequence[CallRecord]) -> Transaction[int]:
    added = 0
    row_marks = f"({_marks(len(CDR_COLUMNS))})"
    for start in range(0, len(records), _CDR_ROWS_PER_INSERT):
        chunk = records[start : start + _CDR_ROWS_PER_INSERT]
        params = tuple(value for record in chunk for value in cdr_row(record))
        done = yield Query(
            f"INSERT INTO cdr ({_CDR_SELECT}) VALUES {', '.join([row_marks] * len(chunk))} "
            f"ON CONFLICT (node, call_id, started_at) DO NOTHING",
            params,
        )
        added += max(0, done.rowcount)
    return added


def cdr_page(
    since: dt.datetime,
    until: dt.datetime,
    after: tuple[dt.datetime, int] | None,
    limit: int,
) -> Transaction[list[tuple[tuple[dt.datetime, int], CallRecord]]]:
    where = "started_at >= ? AND started_at < ?"
    params: tuple[object, ...] = (since, until)
    if after is not None:
        where += " AND (started_at > ? OR (started_at = ? AND id > ?))"
        params += (after[0], after[0], after[1])
    rows = yield Query(
        f"SELECT id, {_CDR_SELECT} FROM cdr WHERE {where} ORDER BY started_at, id LIMIT ?",
        (*params, limit),
    )
    out: list[tuple[tuple[dt.datetime, int], CallRecord]] = []
    for row in rows.rows:
        record = cdr_record(row[1:])
        out.append(((record.started_at, _int(row[0])), record))
    return out


# -- the store ------------------------------------------------------------------------------


class SqlStore(Store):
    """BookingStore and CallRecordStore on a driver that runs transaction generators
    (`_transact`)."""

    @abstractmethod
    async def _transact(self, make: Callable[[], Transaction[T]], *, write: bool) -> T:
        """Run a fresh generator from `make` in one transaction (a driver may call `make`
        again to retry after a serialization failure) and return its answer."""

    async def schema_version(self) -> int:
        rows = await self._transact(
            lambda: single("SELECT MAX(version) FROM schema_migrations"), write=False
        )
        row = rows.one()
        return 0 if row is None or row[0] is None else _int(row[0])

    async def save_clinics(self, clinics: Sequence[Clinic], *, now: dt.datetime) -> int:
        return await self._transact(lambda: save_clinics(clinics, now), write=True)

    async def clinics(self, *, active_only: bool = True) -> list[Clinic]:
        return await self._transact(lambda: list_clinics(active_only), write=False)

    async def clinic(self, clinic_id: str) -> Clinic | None:
        return await self._transact(lambda: _get_clinic(clinic_id), write=False)

    async def add_slots(self, slots: Sequence[Slot]) -> int:
        return await self._transact(lambda: add_slots(slots), write=True)

    async def slot(self, slot_id: str) -> Slot | None:
        return await self._transact(lambda: _get_slot(slot_id), write=False)

    async def free_slots(
        self,
        clinic_id: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        limit: int,
        after: dt.datetime | None = None,
    ) -> list[Slot]:
        return await self._transact(
            lambda: free_slots(clinic_id, start, end, limit, after), write=False
        )

    async def next_free(
        self, clinic_ids: Collection[str], *, start: dt.datetime, end: dt.datetime
    ) -> dict[str, dt.datetime]:
        return await self._transact(lambda: next_free(clinic_ids, start, end), write=False)

    async def hold(self, request: HoldRequest) -> HoldResult:
        return await self._transact(lambda: hold(request), write=True)

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
        return await self._transact(
            lambda: confirm(booking_id, now, actor, new_reference, message, key), write=True
        )

    async def cancel(
        self, booking_id: int, *, now: dt.datetime, actor: Actor, message: MessageBuilder
    ) -> ChangeResult:
        return await self._transact(lambda: cancel(booking_id, now, actor, message), write=True)

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
        return await self._transact(
            lambda: reschedule(booking_id, slot_id, now, not_before, actor, message), write=True
        )

    async def mark_attended(
        self, booking_id: int, *, now: dt.datetime, actor: Actor
    ) -> ChangeResult:
        return await self._transact(lambda: mark_attended(booking_id, now, actor), write=True)

    async def release_expired(self, now: dt.datetime, *, actor: Actor = _SWEEPER) -> int:
        return await self._transact(lambda: release_expired(now, actor), write=True)

    async def booking(self, booking_id: int) -> Booking | None:
        return await self._transact(lambda: _get_booking(booking_id), write=False)

    async def bookings_by_reference(self, references: Collection[str]) -> list[Booking]:
        refs = sorted(set(references))
        if not refs:
            return []
        return await self._transact(
            lambda: bookings_where(f"b.reference IN ({_marks(len(refs))})", tuple(refs)),
            write=False,
        )

    async def upcoming_by_phone(self, phone: str, *, since: dt.datetime) -> list[Booking]:
        return await self._transact(
            lambda: bookings_where(
                "b.phone = ? AND b.status = 'confirmed' AND s.starts_at >= ?",
                (phone, since),
                "s.starts_at, b.id",
            ),
            write=False,
        )

    async def bookings_of_person(self, card: str, dob: dt.date) -> list[Booking]:
        return await self._transact(
            lambda: bookings_where("b.card = ? AND b.dob = ?", (card, dob)), write=False
        )

    async def bookings_on(
        self, local_date: dt.date, *, clinic_id: str | None = None
    ) -> list[Booking]:
        where = "s.local_date = ? AND b.status IN ('confirmed', 'attended')"
        params: tuple[object, ...] = (local_date,)
        if clinic_id is not None:
            where += " AND b.clinic_id = ?"
            params += (clinic_id,)
        return await self._transact(
            lambda: bookings_where(where, params, "b.clinic_id, s.starts_at, b.reference"),
            write=False,
        )

    async def audit_trail(self, booking_id: int) -> list[AuditEntry]:
        return await self._transact(lambda: audit_trail(booking_id), write=False)

    async def claim_outbox(
        self, now: dt.datetime, *, lease: dt.timedelta, limit: int = 10
    ) -> list[OutboxMessage]:
        return await self._transact(lambda: claim_outbox(now, lease, limit), write=True)

    async def outbox_delivered(self, message_id: int, *, now: dt.datetime) -> None:
        await self._transact(lambda: outbox_delivered(message_id, now), write=True)

    async def outbox_failed(
        self, message_id: int, *, now: dt.datetime, retry_at: dt.datetime | None, error: str
    ) -> None:
        await self._transact(lambda: outbox_failed(message_id, now, retry_at, error), write=True)

    async def outbox_pending(self) -> int:
        rows = await self._transact(
            lambda: single(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
            ),
            write=False,
        )
        row = rows.one()
        return 0 if row is None else _int(row[0])

    async def add_cdrs(self, records: Sequence[CallRecord]) -> int:
        batch = list(records)
        if not batch:
            return 0
        return await self._transact(lambda: insert_cdrs(batch), write=True)

    async def _cdr_page(
        self,
        since: dt.datetime,
        until: dt.datetime,
        after: tuple[dt.datetime, int] | None,
        limit: int,
    ) -> list[tuple[tuple[dt.datetime, int], CallRecord]]:
        return await self._transact(lambda: cdr_page(since, until, after, limit), write=False)
