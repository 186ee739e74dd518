"""The PostgreSQL booking store, for several engine nodes sharing bookings
(`database.url: postgresql://USER@HOST/DB`).

Owns: the connection pool (psycopg 3's asyncio pool: typed, one library for the pool and
the protocol, server-side parameter binding), applying migrations under an advisory lock
so nodes starting together migrate once, and running hotline.booking.store.sqlops transactions
at READ COMMITTED with row locks (`FOR UPDATE`, `SKIP LOCKED` for the outbox). A
transaction that loses a race — a deadlock, a serialization failure, or a unique key
taken by a concurrent one (a booking reference, a hold's idempotency key) — is run again
from the start, up to `RETRIES` times. `close()` writes the queued call records before it
closes the pool.

Must not know: what the statements mean (hotline.booking.store.sqlops), flows, the clock. The
URL is never logged or put in an error with its password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hotline.booking.store import StoreError, load_migrations
from hotline.booking.store.sqlops import Json, Query, Rows, SqlStore, Transaction

__all__ = ["RETRIES", "PostgresStore", "redact"]

T = TypeVar("T")
RETRIES: Final = 10
MIGRATION_LOCK: Final = 0x686F746C696E65  # "hotline": the advisory lock id for migrations
_RETRYABLE: Final = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.UniqueViolation,
)


def redact(url: str) -> str:
    """The URL with its password replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def _describe(exc: psycopg.Error) -> str:
    """The error's primary message and SQLSTATE, without the server's DETAIL (which can
    quote a whole row, Medicare number included)."""
    text = str(exc).strip()
    primary = exc.diag.message_primary or (text.splitlines()[0] if text else type(exc).__name__)
    return f"{primary} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else primary


def _param(value: object) -> object:
    if isinstance(value, Json):
        return Jsonb(dict(value.value))
    return value


def _sql(query: Query) -> bytes:
    if "%" in query.sql:
        raise ValueError(f"statement holds a literal '%': {query.sql[:60]!r}")
    text = query.sql.replace("?", "%s")
    if query.lock == "update":
        text += " FOR UPDATE"
    elif query.lock == "skip":
        text += " FOR UPDATE SKIP LOCKED"
    return text.encode()


class PostgresStore(SqlStore):
    """Bookings in PostgreSQL, through a pool of at most `pool_size` connections."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError(f"expected a pool size of at least 1, found {pool_size}")
        super().__init__()
        self._url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Any] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self._url)!r})"

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:  # one direct connection first: its error says why (the pool would only time out)
            probe = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout))
            )
            await probe.close()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact(self._url)}: {_describe(exc)}"
            ) from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=self.connect_timeout,
            name="hotline-booking",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            reason = _describe(exc) if isinstance(exc, psycopg.Error) else str(exc)
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact(self._url)}: {reason}"
            ) from None
        self._pool = pool
        try:
            await self._migrate()
        except psycopg.Error as exc:
            self._pool = None
            await pool.close()
            raise StoreError(
                f"cannot migrate the PostgreSQL database at {redact(self._url)}: {_describe(exc)}"
            ) from None
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await self._close_cdrs()  # queued call records first
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def _migrate(self) -> None:
        migrations = load_migrations(self.dialect)
        assert self._pool is not None
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            row = await cursor.fetchone()
            applied = int(row[0]) if row is not None else 0
            if applied > len(migrations):
                raise StoreError(
                    f"PostgreSQL database at {redact(self._url)} has schema "
                    f"version {applied}; this hotline knows up to "
                    f"{len(migrations)}: upgrade it"
                )
            for migration in migrations[applied:]:
                async with conn.transaction():  # a savepoint per migration
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )

    async def _transact(self, make: Callable[[], Transaction[T]], *, write: bool) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is not open")
        for attempt in range(RETRIES):
            try:
                async with pool.connection() as conn:
                    if not write:
                        # Reads run statement by statement (autocommit): one round trip
                        # each instead of BEGIN/…/COMMIT. Nothing a read returns is acted on
                        # without a write that checks it again (a hold re-checks capacity).
                        return await self._drive(conn, make())
                    async with conn.transaction():
                        return await self._drive(conn, make())
            except _RETRYABLE:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
            except PoolTimeout as exc:
                raise StoreError(
                    f"no PostgreSQL connection free at {redact(self._url)} "
                    f"within {self.connect_timeout} s: {exc}"
                ) from None
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL at {redact(self._url)}: {_describe(exc)}") from None
        raise AssertionError("unreachable")

    @staticmethod
    async def _drive(conn: psycopg.AsyncConnection[Any], tx: Transaction[T]) -> T:
        try:
            query = next(tx)
            while True:
                cursor = await conn.execute(_sql(query), tuple(_param(p) for p in query.params))
                rows = await cursor.fetchall() if cursor.description is not None else []
                query = tx.send(Rows([tuple(r) for r in rows], cursor.rowcount))
        except StopIteration as done:
            result: T = done.value
            return result
