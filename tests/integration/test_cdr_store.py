"""Call detail records in the real databases, SQLite and PostgreSQL: written behind and
read back equal, chosen by start time, paged, written once, kept across a clean close,
held back while the database is away, and exported as CSV by `hotline cdr export`.

PostgreSQL runs in a throwaway cluster (tests/pgcluster.py); each test gets a fresh
database.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import datetime as dt
import io
import stat
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hotline.booking.store import (
    CDR_PAGE,
    StoreError,
    load_migrations,
    open_store,
)
from hotline.booking.store.sqlite import SqliteStore
from hotline.cdr import CallRecord, Direction, HangupSide, MediaQuality
from hotline.cdrcli import CSV_COLUMNS, cmd_export, run_export
from hotline.sip.endpoint import EndReason
from tests.pgcluster import Cluster, postgres_cluster  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 12, 1, 0, 0, 123456, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hotline.db'}"
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def call(
    n: int, *, node: str = "hotline-1", at: dt.datetime | None = None, **changes: Any
) -> CallRecord:
    start = at if at is not None else T0 + dt.timedelta(minutes=n)
    base = CallRecord(
        call_id=f"{n:04d}-call@203.0.113.7",
        node=node,
        direction=Direction.INBOUND,
        caller=f"04{n:08d}",
        called="1800020080",
        started_at=start,
        answered_at=start + dt.timedelta(seconds=0.75),
        ended_at=start + dt.timedelta(seconds=61.5),
        hangup_side=HangupSide.CALLER,
        end_reason=EndReason.REMOTE_BYE,
        flow="vaccine",
        flow_version="3f2a9c1b7d0e",
        flow_result="booked",
        queue="general",
        queue_wait_s=8.25,
        agent="alice",
        transferred_to=None,
        quality=MediaQuality(
            rx_packets=3000 + n,
            rx_loss_pct=0.5,
            rx_jitter_ms=4.125,
            tx_packets=3010,
            tx_loss_pct=1.25,
            tx_jitter_ms=9.5,
            rtt_ms=38.0,
            mos=4.29,
        ),
    )
    return dataclasses.replace(base, **changes)


REJECTED: dict[str, Any] = dict(
    direction=Direction.INBOUND,
    answered_at=None,
    hangup_side=HangupSide.ENGINE,
    end_reason=EndReason.REJECTED,
    sip_status=404,
    flow=None,
    flow_version=None,
    flow_result=None,
    queue=None,
    queue_wait_s=None,
    agent=None,
    quality=None,
)


def test_schema_has_the_cdr_table_and_its_start_index(store_url: str) -> None:
    async def main() -> None:
        async with open_store(store_url) as store:
            assert await store.schema_version() == 2
            names = [m.name for m in load_migrations(store.dialect)]
            assert names == ["initial", "call_records"]
            if store.dialect == "sqlite":
                assert isinstance(store, SqliteStore)
                sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cdr'"
            else:
                sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'cdr'"
            from hotline.booking.store.sqlops import single

            rows = await store._transact(lambda: single(sql), write=False)  # type: ignore[attr-defined]
            indexes = {r[0] for r in rows.rows}
            assert {"cdr_started", "cdr_identity"} <= indexes

    run(main)


def test_records_written_behind_read_back_equal(store_url: str) -> None:
    records = [call(1), call(2, **REJECTED), call(3, transferred_to="sip:nurse@example.org")]

    async def main() -> None:
        async with open_store(store_url) as store:
            for r in records:
                store.add_cdr(r)
            assert store.cdr_pending + store.cdr_written <= 3
            await store.flush_cdrs()
            assert (store.cdr_pending, store.cdr_written, store.cdr_dropped) == (0, 3, 0)
            got = await store.cdrs(T0, T0 + DAY)
            assert got == records
            assert got[1].quality is None and got[1].sip_status == 404
            assert got[0].started_at.tzinfo is dt.UTC

    run(main)


def test_period_is_by_start_since_included_until_excluded(store_url: str) -> None:
    async def main() -> None:
        async with open_store(store_url) as store:
            before = call(1, at=T0 - dt.timedelta(microseconds=1))
            first = call(2, at=T0)
            last = call(3, at=T0 + DAY - dt.timedelta(microseconds=1))
            after = call(4, at=T0 + DAY)
            assert await store.add_cdrs([after, last, first, before]) == 4
            assert await store.cdrs(T0, T0 + DAY) == [first, last]
            assert await store.cdrs(T0 - DAY, T0 + 2 * DAY) == [before, first, last, after]
            assert await store.cdrs(T0 + 2 * DAY, T0 + 3 * DAY) == []
            # any zone: the same instants
            sydney = dt.timezone(dt.timedelta(hours=10))
            assert await store.cdrs(T0.astimezone(sydney), (T0 + DAY).astimezone(sydney)) == [
                first,
                last,
            ]
            with pytest.raises(ValueError, match="before since"):
                await store.cdrs(T0 + DAY, T0)
            with pytest.raises(ValueError, match="naive"):
                await store.cdrs(T0.replace(tzinfo=None), T0 + DAY)

    run(main)


def test_a_record_written_twice_is_stored_once(store_url: str) -> None:
    async def main() -> None:
        async with open_store(store_url) as store:
            assert await store.add_cdrs([call(1), call(2)]) == 2
            assert await store.add_cdrs([call(2), call(3)]) == 1
            # the same call id on another node, or started again, is another record
            assert await store.add_cdrs([call(1, node="hotline-2")]) == 1
            other_start = call(1, at=T0 + dt.timedelta(hours=5), call_id=call(1).call_id)
            assert await store.add_cdrs([other_start]) == 1
            assert await store.add_cdrs([]) == 0
            assert len(await store.cdrs(T0, T0 + DAY)) == 5

    run(main)


def test_pages_keep_start_order_without_gaps_or_repeats(store_url: str) -> None:
    # Ties on the start (several nodes at the same instant) straddle page boundaries.
    records = [
        call(n, node=f"node-{n % 3}", at=T0 + dt.timedelta(seconds=n // 3)) for n in range(20)
    ]

    async def main() -> None:
        async with open_store(store_url) as store:
            await store.add_cdrs(list(reversed(records)))
            paged = [r async for r in store.iter_cdrs(T0, T0 + DAY, page=4)]
            assert len(paged) == 20
            assert {(r.node, r.call_id) for r in paged} == {(r.node, r.call_id) for r in records}
            starts = [r.started_at for r in paged]
            assert starts == sorted(starts)
            assert [r async for r in store.iter_cdrs(T0, T0 + DAY, page=1)] == paged
            with pytest.raises(ValueError, match="page: expected at least 1"):
                [r async for r in store.iter_cdrs(T0, T0 + DAY, page=0)]

    run(main)


def test_many_records_go_in_batches(store_url: str) -> None:
    n = CDR_PAGE + 250  # more than a page, several multi-row inserts

    async def main() -> None:
        async with open_store(store_url) as store:
            for i in range(n):
                store.add_cdr(call(i, at=T0 + dt.timedelta(milliseconds=i)))
            await store.flush_cdrs()
            assert store.cdr_written == n
            got = await store.cdrs(T0, T0 + DAY)
            assert len(got) == n
            assert got[0] == call(0, at=T0) and got[-1].call_id == call(n - 1).call_id

    run(main)


def test_a_clean_close_writes_the_queue(store_url: str) -> None:
    async def main() -> None:
        store = open_store(store_url)
        await store.open()
        for i in range(5):
            store.add_cdr(call(i))
        await store.close()  # no flush: close must write them
        assert store.cdr_pending == 0 and store.cdr_dropped == 0
        async with open_store(store_url) as again:
            assert [r.call_id for r in await again.cdrs(T0, T0 + DAY)] == [
                call(i).call_id for i in range(5)
            ]

    run(main)


def test_records_wait_while_the_database_is_away(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hotline.db'}"

    async def main() -> None:
        store = open_store(url)  # not open: every write fails
        store.add_cdr(call(1))
        store.add_cdr(call(2))
        with pytest.raises(StoreError, match=r"2 call record\(s\) not written: .*not open"):
            await store.flush_cdrs()
        assert store.cdr_pending == 2 and store.cdr_failures >= 1
        assert store.cdr_error is not None
        await store.open()
        store.add_cdr(call(3))  # the next record takes the waiting ones along, in order
        await store.flush_cdrs()
        assert store.cdr_pending == 0 and store.cdr_error is None
        assert [r.call_id for r in await store.cdrs(T0, T0 + DAY)] == [
            call(i).call_id for i in (1, 2, 3)
        ]
        await store.close()

    run(main)


def test_postgres_store_fails_cleanly_when_unreachable() -> None:
    async def main() -> None:
        store = open_store("postgresql://nobody@127.0.0.1:1/none")
        store.add_cdr(call(1))
        with pytest.raises(StoreError, match="not written"):
            await store.flush_cdrs()
        assert store.cdr_pending == 1
        await store.close()  # never opened: nothing to do, nothing raised

    run(main)


# -- hotline cdr export ---------------------------------------------------------------------


def seed(url: str, records: list[CallRecord]) -> None:
    async def main() -> None:
        async with open_store(url) as store:
            await store.add_cdrs(records)

    run(main)


def test_export_writes_the_period_as_csv(store_url: str, tmp_path: Path) -> None:
    inside = [call(1), call(2, **REJECTED)]
    seed(store_url, [*inside, call(3, at=T0 + DAY)])
    out = tmp_path / "calls.csv"
    assert run_export(store_url, T0, T0 + DAY, out) == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".calls.csv.*"))  # no temporary file left
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["call_id"] for r in rows] == [r.call_id for r in inside]
    assert rows[0]["started_at"] == "2026-05-12T01:01:00.123Z"
    assert rows[0]["mos"] == "4.29" and rows[0]["flow_result"] == "booked"
    assert rows[1]["answered_at"] == "" and rows[1]["sip_status"] == "404"
    assert rows[1]["hangup_side"] == "engine" and rows[1]["end_reason"] == "rejected"
    stream = io.StringIO()
    assert run_export(store_url, T0 + DAY, T0 + 2 * DAY, stream) == 1
    assert stream.getvalue().splitlines()[0] == ",".join(CSV_COLUMNS)


def test_export_command(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(store_url, [call(1), call(2, at=T0 + DAY), call(3, at=T0 + 2 * DAY)])
    out = tmp_path / "may.csv"

    def args(**kw: Any) -> argparse.Namespace:
        base = dict(
            since=None,
            until=None,
            output=str(out),
            tz="UTC",
            config="none.yaml",
            database=store_url,
        )
        base.update(kw)
        return argparse.Namespace(**base)

    # dates are whole days: --until 2026-05-13 takes in all of the 13th
    assert cmd_export(args(since="2026-05-12", until="2026-05-13")) == 0
    assert len(out.read_text().splitlines()) == 3
    assert "exported 2 call record(s)" in capsys.readouterr().err
    assert cmd_export(args(since="2026-05-13T01:00:00Z", until="2026-05-13T01:00:00.123Z")) == 0
    assert len(out.read_text().splitlines()) == 1  # --until is excluded: header only
    assert cmd_export(args(since="2026-05-13T01:00:00Z", until="2026-05-13T01:00:00.124Z")) == 0
    assert len(out.read_text().splitlines()) == 2
    # in Sydney (UTC+10), the 12th local runs 2026-05-11T14:00Z to 2026-05-12T14:00Z
    assert cmd_export(args(since="2026-05-12", until="2026-05-12", tz="Australia/Sydney")) == 0
    assert len(out.read_text().splitlines()) == 2
    capsys.readouterr()
    assert cmd_export(args(since="12/05/2026")) == 2
    assert "--since: expected YYYY-MM-DD" in capsys.readouterr().err
    assert cmd_export(args(since="2026-05-13", until="2026-05-11")) == 2
    assert "is before --since" in capsys.readouterr().err
    assert cmd_export(args(tz="Mars/Olympus")) == 2
    assert "--tz: expected an IANA time zone" in capsys.readouterr().err


def test_export_failure_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "calls.csv"
    out.write_text("previous\n")
    code = cmd_export(
        argparse.Namespace(
            since="2026-05-12",
            until=None,
            output=str(out),
            tz=None,
            config="none.yaml",
            database="postgresql://nobody@127.0.0.1:1/none",
        )
    )
    assert code == 1
    assert "cannot connect to PostgreSQL" in capsys.readouterr().err
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["calls.csv"]
