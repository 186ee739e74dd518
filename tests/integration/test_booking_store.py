"""The booking stores, SQLite and PostgreSQL, through one suite: capacity under concurrency,
idempotent holds and confirms, expiry, the outbox and the audit trail.

PostgreSQL runs in a throwaway cluster (tests/pgcluster.py); each test gets a fresh database.
SQLite runs on a file, with several store instances (connections, worker threads) sharing
it where a test is about concurrency, as several processes would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import pytest

from hotline.booking import reference as refs
from hotline.booking.model import (
    Booking,
    BookingStatus,
    Clinic,
    MessageKind,
    Person,
    Scalar,
    Slot,
    message_payload,
    parse_sessions,
    slot_id,
)
from hotline.booking.rules import default_rules
from hotline.booking.service import BookingService
from hotline.booking.store import (
    Actor,
    BookingStore,
    ChangeResult,
    ChangeStatus,
    HoldRequest,
    HoldResult,
    HoldStatus,
    StoreError,
    load_migrations,
    open_store,
)
from hotline.booking.store.sqlite import SqliteStore
from tests.pgcluster import Cluster, postgres_cluster  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 5, 10, 22, 0, tzinfo=dt.UTC)  # Monday 11 May, 08:00 in Sydney
DAY = dt.date(2026, 5, 12)
ACTOR = Actor("call:test", "test")
MEDICARE = "2123456701"
DOB = dt.date(1980, 1, 2)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bookings.db'}"
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def clinic(cid: str, name: str = "") -> Clinic:
    return Clinic(
        cid,
        name or cid.title(),
        f"1 {cid} St",
        "2601",
        "ACT",
        -35.28,
        149.13,
        ("covid",),
        parse_sessions("Mon-Fri 09:00-12:00 15min x1"),
    )


def slot(cid: str, hour: int, minute: int = 0, capacity: int = 1, day: dt.date = DAY) -> Slot:
    local = dt.time(hour, minute)
    starts = dt.datetime.combine(day, local, tzinfo=dt.timezone(dt.timedelta(hours=10)))
    return Slot(slot_id(cid, day, local), cid, starts.astimezone(dt.UTC), day, local, 15, capacity)


def person(n: int = 0) -> Person:
    return Person(
        f"{MEDICARE[:8]}{n % 10}{(n // 10) % 9 + 1}", DOB + dt.timedelta(days=n), f"04{n:08d}"
    )


def hold_request(
    slot_name: str,
    who: Person,
    *,
    key: str | None = None,
    now: dt.datetime = NOW,
    minutes: int = 10,
) -> HoldRequest:
    return HoldRequest(
        slot_name, "covid", 1, who, now, now + dt.timedelta(minutes=minutes), now, ACTOR, key
    )


def message(kind: MessageKind, booking: Booking, clinic_: Clinic) -> Mapping[str, Scalar]:
    return message_payload(kind, booking, clinic_, "COVID-19")


def got(result: HoldResult | ChangeResult) -> Booking:
    """The booking of a result that must have one."""
    assert result.booking is not None, result
    return result.booking


def got_slot(found: Slot | None) -> Slot:
    assert found is not None
    return found


def fresh_reference() -> str:
    return refs.new_reference(secrets.randbelow)


async def seeded(url: str, slots: list[Slot]) -> BookingStore:
    store = open_store(url)
    await store.open()
    await store.save_clinics([clinic("c1"), clinic("c2")], now=NOW)
    await store.add_slots(slots)
    return store


async def confirm(
    store: BookingStore, booking_id: int, *, key: str | None = None, now: dt.datetime = NOW
) -> ChangeResult:
    return await store.confirm(
        booking_id, now=now, actor=ACTOR, new_reference=fresh_reference, message=message, key=key
    )


def other_instances(url: str, n: int) -> list[BookingStore]:
    """More stores on the same database: separate connections, as other processes or
    nodes would have."""
    return [open_store(url) for _ in range(n)]


# -- tests ----------------------------------------------------------------------------------


def test_migrations_apply_once(store_url: str) -> None:
    dialect = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    assert [m.version for m in load_migrations(dialect)] == [
        m.version for m in load_migrations("sqlite")
    ]

    async def main() -> None:
        async with open_store(store_url) as first:
            assert await first.schema_version() == len(load_migrations(dialect))
            async with open_store(store_url) as second:  # a second node starting
                assert await second.schema_version() == len(load_migrations(dialect))
                assert await second.clinics() == []

    run(main)


def test_200_concurrent_holds_on_the_last_10_places_give_exactly_10(store_url: str) -> None:
    places = [slot("c1", 9, 15 * i) for i in range(4)] + [
        slot("c2", 9 + i // 4, 15 * (i % 4)) for i in range(6)
    ]

    async def main() -> None:
        store = await seeded(store_url, places)
        more = other_instances(store_url, 3)
        for s in more:
            await s.open()
        stores = [store, *more]
        try:
            requests = [hold_request(places[i % 10].id, person(i)) for i in range(200)]
            results = await asyncio.gather(
                *(stores[i % len(stores)].hold(r) for i, r in enumerate(requests))
            )
            ok = [r for r in results if r.status is HoldStatus.OK]
            assert len(ok) == 10
            assert all(r.status is HoldStatus.FULL for r in results if r not in ok)
            assert sorted(r.booking.slot_id for r in ok if r.booking) == sorted(
                p.id for p in places
            )
            for p in places:
                stored = await store.slot(p.id)
                assert stored is not None and stored.taken == stored.capacity == 1
            confirmed = await asyncio.gather(
                *(confirm(stores[i % 4], r.booking.id) for i, r in enumerate(ok) if r.booking)
            )
            assert all(c.status is ChangeStatus.OK for c in confirmed)
            assert len(await store.bookings_on(DAY)) == 10
            assert (
                await store.free_slots("c1", start=NOW, end=NOW + dt.timedelta(days=3), limit=10)
                == []
            )
        finally:
            for s in stores:
                await s.close()

    run(main)


def test_concurrent_confirms_of_one_hold_make_one_booking_and_one_message(store_url: str) -> None:
    async def main() -> None:
        store = await seeded(store_url, [slot("c1", 9)])
        (other,) = other_instances(store_url, 1)
        await other.open()
        try:
            held = await store.hold(hold_request(slot("c1", 9).id, person()))
            assert held.booking is not None
            results = await asyncio.gather(
                *(
                    confirm(
                        store if i % 2 else other,
                        held.booking.id,
                        key="press" if i < 10 else f"webhook-{i}",
                    )
                    for i in range(20)
                )
            )
            assert {r.status for r in results} == {ChangeStatus.OK}
            assert len({got(r).reference for r in results}) == 1
            assert sum(not r.replayed for r in results) == 1
            messages = await store.claim_outbox(NOW, lease=dt.timedelta(minutes=1))
            assert [m.kind for m in messages] == [MessageKind.CONFIRMED]
            assert [a.action for a in await store.audit_trail(held.booking.id)] == [
                "hold",
                "confirm",
            ]
        finally:
            await store.close()
            await other.close()

    run(main)


def test_concurrent_holds_with_one_key_hold_one_place(store_url: str) -> None:
    async def main() -> None:
        store = await seeded(store_url, [slot("c1", 9, capacity=5)])
        (other,) = other_instances(store_url, 1)
        await other.open()
        try:
            results = await asyncio.gather(
                *(
                    (store if i % 2 else other).hold(
                        hold_request(slot("c1", 9).id, person(), key="call-9:hold")
                    )
                    for i in range(20)
                )
            )
            assert {r.status for r in results} == {HoldStatus.OK}
            assert len({r.booking.id for r in results if r.booking}) == 1
            assert sum(not r.replayed for r in results) == 1
            stored = await store.slot(slot("c1", 9).id)
            assert stored is not None and stored.taken == 1
        finally:
            await store.close()
            await other.close()

    run(main)


def test_holds_expire_and_their_places_come_back(store_url: str) -> None:
    async def main() -> None:
        place = slot("c1", 9, capacity=2)
        store = await seeded(store_url, [place])
        try:
            a = await store.hold(hold_request(place.id, person(1)))
            b = await store.hold(hold_request(place.id, person(2), minutes=20))
            full = await store.hold(hold_request(place.id, person(3)))
            assert (a.status, b.status, full.status) == (
                HoldStatus.OK,
                HoldStatus.OK,
                HoldStatus.FULL,
            )
            assert a.booking is not None and b.booking is not None
            later = NOW + dt.timedelta(minutes=10)
            # The expired hold is released when someone asks for its slot…
            c = await store.hold(hold_request(place.id, person(3), now=later))
            assert c.status is HoldStatus.OK
            expired = await store.booking(a.booking.id)
            assert expired is not None and expired.status is BookingStatus.EXPIRED
            gone = await confirm(store, a.booking.id, now=later)
            assert gone.status is ChangeStatus.EXPIRED
            # …and by the sweep.
            much_later = NOW + dt.timedelta(minutes=30)
            assert await store.release_expired(much_later, actor=Actor("system:sweep")) == 2
            assert await store.release_expired(much_later, actor=Actor("system:sweep")) == 0
            stored = await store.slot(place.id)
            assert stored is not None and stored.taken == 0
            trail = await store.audit_trail(b.booking.id)
            assert [(t.action, t.actor, t.before, t.after) for t in trail] == [
                ("hold", "call:test", None, BookingStatus.HELD),
                ("expire", "system:sweep", BookingStatus.HELD, BookingStatus.EXPIRED),
            ]
            # A confirm just before the end still counts.
            d = await store.hold(hold_request(place.id, person(4), now=much_later))
            assert d.booking is not None
            ok = await confirm(
                store, d.booking.id, now=much_later + dt.timedelta(minutes=9, seconds=59)
            )
            assert ok.status is ChangeStatus.OK
        finally:
            await store.close()

    run(main)


def test_cancel_and_reschedule(store_url: str) -> None:
    async def main() -> None:
        first, second, third = slot("c1", 9), slot("c2", 10), slot("c2", 11)
        store = await seeded(store_url, [first, second, third])
        try:
            held = await store.hold(hold_request(first.id, person(1)))
            assert held.booking is not None
            bid = held.booking.id
            done = await confirm(store, bid)
            reference = got(done).reference
            blocker = await store.hold(hold_request(third.id, person(2)))
            assert blocker.status is HoldStatus.OK

            full = await store.reschedule(
                bid, third.id, now=NOW, not_before=NOW, actor=ACTOR, message=message
            )
            assert full.status is ChangeStatus.FULL
            missing = await store.reschedule(
                bid, "nowhere", now=NOW, not_before=NOW, actor=ACTOR, message=message
            )
            assert missing.status is ChangeStatus.NO_SLOT
            moved = await store.reschedule(
                bid, second.id, now=NOW, not_before=NOW, actor=ACTOR, message=message
            )
            assert moved.status is ChangeStatus.OK and moved.booking is not None
            assert (moved.booking.slot_id, moved.booking.clinic_id, moved.booking.reference) == (
                second.id,
                "c2",
                reference,
            )
            same = await store.reschedule(
                bid, second.id, now=NOW, not_before=NOW, actor=ACTOR, message=message
            )
            assert same.status is ChangeStatus.OK and same.replayed
            taken = {s.id: got_slot(await store.slot(s.id)).taken for s in (first, second, third)}
            assert taken == {first.id: 0, second.id: 1, third.id: 1}

            cancelled = await store.cancel(bid, now=NOW, actor=ACTOR, message=message)
            assert cancelled.status is ChangeStatus.OK
            again = await store.cancel(bid, now=NOW, actor=ACTOR, message=message)
            assert again.status is ChangeStatus.NOT_ACTIVE
            assert (
                await store.cancel(99999, now=NOW, actor=ACTOR, message=message)
            ).status is ChangeStatus.NOT_FOUND
            after = await store.slot(second.id)
            assert after is not None and after.taken == 0
            kinds = [m.kind for m in await store.claim_outbox(NOW, lease=dt.timedelta(1))]
            assert kinds == [MessageKind.CONFIRMED, MessageKind.RESCHEDULED, MessageKind.CANCELLED]
            actions = [(a.action, a.after) for a in await store.audit_trail(bid)]
            assert actions == [
                ("hold", BookingStatus.HELD),
                ("confirm", BookingStatus.CONFIRMED),
                ("reschedule", BookingStatus.CONFIRMED),
                ("cancel", BookingStatus.CANCELLED),
            ]
            # A hold cancelled (the caller changed their mind) sends no message.
            assert blocker.booking is not None
            await store.cancel(blocker.booking.id, now=NOW, actor=ACTOR, message=message)
            assert await store.outbox_pending() == 3
        finally:
            await store.close()

    run(main)


def test_outbox_leases_retries_and_giving_up(store_url: str) -> None:
    async def main() -> None:
        places = [slot("c1", 9, 15 * i) for i in range(3)]
        store = await seeded(store_url, places)
        (other,) = other_instances(store_url, 1)
        await other.open()
        try:
            for i, p in enumerate(places):
                held = await store.hold(hold_request(p.id, person(i)))
                assert held.booking is not None
                await confirm(store, held.booking.id)
            assert await store.outbox_pending() == 3
            lease = dt.timedelta(seconds=30)
            a, b = await asyncio.gather(
                store.claim_outbox(NOW, lease=lease, limit=2),
                other.claim_outbox(NOW, lease=lease, limit=2),
            )
            claimed = [m.id for m in a] + [m.id for m in b]
            assert len(claimed) == len(set(claimed)) == 3
            assert await store.claim_outbox(NOW, lease=lease) == []
            first, second, third = sorted([*a, *b], key=lambda m: m.id)
            assert first.attempts == 1 and first.dedupe_key.startswith("confirmed:")
            assert first.payload["clinic_name"] == "C1" and "medicare" not in first.payload

            await store.outbox_delivered(first.id, now=NOW)
            retry_at = NOW + dt.timedelta(minutes=1)
            await store.outbox_failed(second.id, now=NOW, retry_at=retry_at, error="HTTP 503")
            await store.outbox_failed(third.id, now=NOW, retry_at=None, error="HTTP 400")
            assert await store.outbox_pending() == 1
            assert await store.claim_outbox(NOW + dt.timedelta(seconds=59), lease=lease) == []
            (retried,) = await store.claim_outbox(retry_at, lease=lease)
            assert (retried.id, retried.attempts, retried.last_error) == (second.id, 2, "HTTP 503")
            # A deliverer that died: the lease runs out and the message is handed out again.
            (again,) = await other.claim_outbox(retry_at + lease, lease=lease)
            assert (again.id, again.attempts) == (second.id, 3)
        finally:
            await store.close()
            await other.close()

    run(main)


def test_queries(store_url: str) -> None:
    async def main() -> None:
        day2 = DAY + dt.timedelta(days=1)
        places = [
            slot("c1", 9),
            slot("c1", 10),
            slot("c1", 11, capacity=2),
            slot("c2", 9),
            slot("c1", 9, day=day2),
        ]
        store = await seeded(store_url, places)
        try:
            assert await store.add_slots(places) == 0
            renamed = Clinic(
                "c2",
                "Renamed",
                "2 St",
                "2602",
                "ACT",
                -35.25,
                149.14,
                ("covid", "flu"),
                parse_sessions("Sat 09:00-10:00 30min x1"),
                active=False,
            )
            await store.save_clinics([renamed], now=NOW)
            assert [c.id for c in await store.clinics()] == ["c1"]
            assert await store.clinic("c2") == renamed
            assert [c.id for c in await store.clinics(active_only=False)] == ["c1", "c2"]

            end = NOW + dt.timedelta(days=5)
            free = await store.free_slots("c1", start=NOW, end=end, limit=3)
            assert [s.id for s in free] == [places[0].id, places[1].id, places[2].id]
            after = await store.free_slots(
                "c1", start=NOW, end=end, limit=9, after=places[1].starts_at
            )
            assert [s.id for s in after] == [places[2].id, places[4].id]
            assert await store.next_free(["c1", "c2", "nowhere"], start=NOW, end=end) == {
                "c1": places[0].starts_at,
                "c2": places[3].starts_at,
            }
            assert await store.next_free([], start=NOW, end=end) == {}

            made: list[Booking] = []
            for i, p in enumerate((places[1], places[4], places[2])):
                held = await store.hold(hold_request(p.id, person(7) if i < 2 else person(8)))
                assert held.booking is not None
                made.append(got(await confirm(store, held.booking.id)))
            mine = person(7)
            found = await store.upcoming_by_phone(mine.phone, since=NOW)
            assert [b.slot_id for b in found] == [places[1].id, places[4].id]
            assert [
                b.slot_id
                for b in await store.upcoming_by_phone(mine.phone, since=places[4].starts_at)
            ] == [places[4].id]
            assert len(await store.bookings_of_person(mine.card, mine.dob)) == 2
            assert await store.bookings_of_person(mine.card, mine.dob + dt.timedelta(1)) == []
            refs_ = [str(b.reference) for b in made]
            by_ref = await store.bookings_by_reference([*refs_, "FFFFFFF"])
            assert sorted(str(b.reference) for b in by_ref) == sorted(refs_)
            assert await store.bookings_by_reference([]) == []
            on_day = await store.bookings_on(DAY)
            assert [b.slot_id for b in on_day] == [places[1].id, places[2].id]
            assert await store.bookings_on(DAY, clinic_id="c2") == []
            b0 = made[0]
            assert b0.person.medicare == mine.medicare and b0.person.dob == mine.dob
            assert b0.local_date == DAY and b0.local_time == dt.time(10)
            attended = await store.mark_attended(b0.id, now=NOW, actor=Actor("cli"))
            assert attended.status is ChangeStatus.OK
            assert attended.booking is not None
            assert attended.booking.status is BookingStatus.ATTENDED
            assert [b.status for b in await store.bookings_on(DAY)] == [
                BookingStatus.ATTENDED,
                BookingStatus.CONFIRMED,
            ]
        finally:
            await store.close()

    run(main)


def test_reference_collisions_draw_again(store_url: str) -> None:
    async def main() -> None:
        places = [slot("c1", 9), slot("c1", 10), slot("c1", 11)]
        store = await seeded(store_url, places)
        try:
            held = [await store.hold(hold_request(p.id, person(i))) for i, p in enumerate(places)]
            taken = refs.new_reference(lambda n: 0)
            fresh = refs.new_reference(lambda n: 1)
            first = await store.confirm(
                got(held[0]).id,
                now=NOW,
                actor=ACTOR,
                new_reference=lambda: taken,
                message=message,
            )
            assert first.booking is not None and first.booking.reference == taken
            draws = iter([taken, fresh])
            second = await store.confirm(
                got(held[1]).id,
                now=NOW,
                actor=ACTOR,
                new_reference=lambda: next(draws),
                message=message,
            )
            assert second.booking is not None and second.booking.reference == fresh
            with pytest.raises(StoreError, match="no unused booking reference"):
                await store.confirm(
                    got(held[2]).id,
                    now=NOW,
                    actor=ACTOR,
                    new_reference=lambda: taken,
                    message=message,
                )
            still = await store.booking(got(held[2]).id)
            assert still is not None and still.status is BookingStatus.HELD
            assert await store.outbox_pending() == 2
        finally:
            await store.close()

    run(main)


def test_committed_bookings_are_there_after_reopening(store_url: str) -> None:
    async def main() -> None:
        store = await seeded(store_url, [slot("c1", 9)])
        held = await store.hold(hold_request(slot("c1", 9).id, person()))
        assert held.booking is not None
        done = await confirm(store, held.booking.id)
        await store.close()
        async with open_store(store_url) as reopened:
            again = await reopened.booking(held.booking.id)
            assert again is not None and again.status is BookingStatus.CONFIRMED
            assert again.reference == got(done).reference
            assert await reopened.outbox_pending() == 1

    run(main)


def test_audit_and_outbox_hold_no_medicare_number_or_birth_date(store_url: str) -> None:
    async def main() -> None:
        store = await seeded(store_url, [slot("c1", 9), slot("c1", 10)])
        try:
            who = Person(MEDICARE, DOB, "0412345678")
            held = await store.hold(hold_request(slot("c1", 9).id, who))
            assert held.booking is not None
            await confirm(store, held.booking.id)
            await store.reschedule(
                held.booking.id,
                slot("c1", 10).id,
                now=NOW,
                not_before=NOW,
                actor=ACTOR,
                message=message,
            )
            await store.cancel(held.booking.id, now=NOW, actor=ACTOR, message=message)
            text = " ".join(
                f"{a.detail} {a.actor} {a.call_id}"
                for a in await store.audit_trail(held.booking.id)
            )
            text += " ".join(
                str(m.payload) for m in await store.claim_outbox(NOW, lease=dt.timedelta(1))
            )
            for secret in (MEDICARE, MEDICARE[:9], DOB.isoformat(), "19800102"):
                assert secret not in text
            assert "reference=" in text
        finally:
            await store.close()

    run(main)


def test_the_service_books_on_this_store(store_url: str) -> None:
    async def main() -> None:
        rules = default_rules()
        store = await seeded(store_url, [slot("c1", 9), slot("c1", 9, 15)])
        try:
            service = BookingService(store, rules, lambda: NOW)
            context = {"call_id": "c-1", "caller": "0412345678"}
            person_args = {"dob": "1980-01-02", "medicare": MEDICARE}
            outcome, offered = await service.handle("clinics", {"postcode": "2601"}, context)
            assert outcome == "found" and offered["clinic1_id"] in ("c1", "c2")
            outcome, times = await service.handle("slots", {"clinic": "c1"}, context)
            assert outcome == "found" and times["slot_count"] == 2
            outcome, held = await service.handle(
                "hold", {"choice": 1, "offer": times["slot_offer"], **person_args}, context
            )
            assert outcome == "ok"
            outcome, done = await service.handle("confirm", {"hold": held["hold_id"]}, context)
            assert outcome == "ok" and refs.is_valid(str(done["reference"]))
            outcome, found = await service.handle("find_caller", {}, {"caller": "+61412345678"})
            assert outcome == "found" and found["reference"] == done["reference"]
            outcome, _ = await service.handle(
                "cancel", {"reference": done["reference"], "dob": "1980-01-02"}, context
            )
            assert outcome == "ok"
        finally:
            await store.close()

    run(main)


def test_sqlite_commits_durably_off_the_event_loop(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(tmp_path / "deep" / "dir" / "b.db") as store:
            settings = await store.settings()
            assert settings["journal_mode"] == "wal"
            assert settings["synchronous"] == "2"  # FULL: the WAL is synced at each commit
            assert settings["foreign_keys"] == "1"
            assert settings["thread"].startswith("hotline-sqlite")
            assert settings["thread"] != threading.current_thread().name

    run(main)


def test_store_errors_say_what_failed(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(
            StoreError,
            match=r"cannot connect to PostgreSQL at "
            r"postgresql://u:\*\*\*@127\.0\.0\.1:1/db",
        ):
            await open_store("postgresql://u:secret@127.0.0.1:1/db").open()
        with pytest.raises(StoreError, match="expected a database URL"):
            open_store("mysql://x/y")
        store = SqliteStore(tmp_path / "b.db")
        with pytest.raises(StoreError, match="is not open"):
            await store.clinics()
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StoreError, match="cannot open the SQLite database"):
            await SqliteStore(blocker / "b.db").open()

    run(main)
