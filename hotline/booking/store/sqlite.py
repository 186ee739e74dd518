"""The SQLite booking store: the embedded default (`database.url: sqlite:///PATH`).

Owns: the one connection and the dedicated worker thread it lives on (every statement
runs there, so the event loop never waits on the disk), the pragmas that make a commit
durable (WAL journal, synchronous=FULL: a commit has reached the disk when the coroutine
returns), applying migrations, and running hotline.booking.store.sqlops transactions: writes in
`BEGIN IMMEDIATE` (one writer at a time, across processes too; others wait up to
`busy_timeout`), reads in a plain `BEGIN` (one consistent snapshot). `close()` writes the
queued call records before it disconnects.

Must not know: what the statements mean (hotline.booking.store.sqlops), flows, the clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from hotline.booking.store import StoreError, load_migrations
from hotline.booking.store.sqlops import Json, Query, Rows, SqlStore, Transaction, utc_text

__all__ = ["SqliteStore"]

T = TypeVar("T")
MEMORY: Final = ":memory:"


def _param(value: object) -> object:
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Json):
        return json.dumps(dict(value.value), separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


def _statements(sql: str) -> Iterator[str]:
    """The statements of a migration script, one at a time."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    rest = "\n".join(ln for ln in buffer.splitlines() if not ln.strip().startswith("--"))
    if rest.strip():
        raise StoreError(f"migration script ends inside a statement: {rest.strip()[:60]!r}")


class SqliteStore(SqlStore):
    """Bookings in one SQLite file (or `":memory:"` for tests of one process)."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = path if path == MEMORY else Path(path)
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hotline-sqlite")
        try:
            await self._call(self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._close_cdrs()  # queued call records first
            await self._call(self._disconnect)
        finally:
            self._executor = None
            executor.shutdown(wait=True)

    def _connect(self) -> None:
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the SQLite database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self.path != MEMORY and str(mode).lower() != "wal":
                raise StoreError(
                    f"SQLite database {self.path}: cannot use the WAL journal "
                    f"(got {mode!r}); is it on a network file system?"
                )
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = load_migrations(self.dialect)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for migration in migrations:
            conn.execute("BEGIN IMMEDIATE")
            try:
                applied = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
                applied = applied or 0
                if applied > len(migrations):
                    raise StoreError(
                        f"SQLite database {self.path} has schema version {applied}; "
                        f"this hotline knows up to {len(migrations)}: upgrade it"
                    )
                if migration.version > applied:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (migration.version, migration.name, utc_text(dt.datetime.now(dt.UTC))),
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def settings(self) -> dict[str, str]:
        """What the connection runs with: `journal_mode`, `synchronous` (2 is FULL),
        `foreign_keys`, and the `thread` its statements run on."""

        def read() -> dict[str, str]:
            conn = self._conn
            if conn is None:
                raise StoreError(f"{self!r} is not open")
            out = {
                name: str(conn.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("journal_mode", "synchronous", "foreign_keys")
            }
            out["thread"] = threading.current_thread().name
            return out

        return await self._call(read)

    # -- running transactions -------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"{self!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _transact(self, make: Callable[[], Transaction[T]], *, write: bool) -> T:
        return await self._call(lambda: self._run(make(), write))

    def _run(self, tx: Transaction[T], write: bool) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self!r} is not open")
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = _drive(tx, lambda q: _execute(conn, q))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None
        return result


def _execute(conn: sqlite3.Connection, query: Query) -> Rows:
    cursor = conn.execute(query.sql, tuple(_param(p) for p in query.params))
    rows = cursor.fetchall()
    return Rows(rows, cursor.rowcount)


def _drive(tx: Transaction[T], execute: Callable[[Query], Rows]) -> T:
    """Run a transaction generator to its answer, executing each statement it yields."""
    try:
        query = next(tx)
        while True:
            query = tx.send(execute(query))
    except StopIteration as done:
        result: T = done.value
        return result
