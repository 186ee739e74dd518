"""The engine's bookings: the store, the service the flows' `booking` steps call, the
outbox worker that delivers confirmations, and the sweep that releases expired holds.

Owns the I/O around `hotline.booking`: opening the store named by `database.url`
(SQLite by default, PostgreSQL for several nodes), seeding the sample clinics and their
slots when asked and the database has none, one asyncio task that delivers outbox
messages — POST JSON to `booking.notify_url` with the message's dedupe key as
`Idempotency-Key`, exponential backoff on failure, given up after
`notify_max_attempts`; a log line when no URL is set — and one task that sweeps expired
holds. A message is marked delivered only after the receiver answered 2xx, and the outbox
row was written in the booking's own transaction, so a confirmation survives a crash and
a restart and is sent once per booking change (the receiver deduplicates a retry by its
key).

Must not know: flows, SIP, audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Mapping
from importlib import resources
from typing import Any

from hotline.booking.csvfiles import parse_clinics
from hotline.booking.geo import shipped_postcodes
from hotline.booking.model import OutboxMessage, generate_slots, holidays_for
from hotline.booking.rules import Rules, default_rules, load_rules
from hotline.booking.service import BookingService, CallContext
from hotline.booking.store import Actor, Store, open_store
from hotline.config import Config

log = logging.getLogger("hotline.booking")

OUTBOX_IDLE = 1.0  # seconds between looks at an empty outbox
OUTBOX_LEASE = dt.timedelta(seconds=60)
FIRST_RETRY = 5.0  # seconds; doubles per attempt
MAX_RETRY = 1800.0


def _masked_phone(value: object) -> str:
    text = str(value or "")
    return "•" * max(0, len(text) - 3) + text[-3:] if text else "(none)"


class Bookings:
    """The booking side of a running engine."""

    def __init__(self, config: Config, tz: str) -> None:
        self.config = config
        self.tz = zoneinfo.ZoneInfo(tz)
        self.store: Store = open_store(config.database.dsn)
        rules_path = config.booking.rules
        self.rules: Rules = load_rules(rules_path) if rules_path is not None else default_rules()
        self.service = BookingService(self.store, self.rules, self.now)
        self._tasks: list[asyncio.Task[None]] = []
        self._http: Any = None
        self.delivered = 0
        self.failed = 0
        self.pending = 0  # outbox backlog at the last look
        self.opened = False

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)

    async def open(self) -> None:
        """Open the store (applying migrations), seed the sample data, start the tasks."""
        await self.store.open()
        self.opened = True
        if self.config.booking.sample_clinics:
            await self.seed_sample()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._outbox_worker()))
        self._tasks.append(loop.create_task(self._sweeper()))
        log.info("bookings: %s store open", self.config.database.kind)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.opened = False
        await self.store.close()

    async def seed_sample(self) -> None:
        """The shipped sample clinics when the database has no clinic; then slots for
        the next `sample_days` days for every clinic (slots already there are kept)."""
        clinics = await self.store.clinics()
        if not clinics:
            text = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text(
                encoding="utf-8")
            parsed = parse_clinics(text, "clinics_sample.csv", postcodes=shipped_postcodes(),
                                   vaccines=self.rules.vaccines.keys())
            await self.store.save_clinics(parsed, now=self.now())
            clinics = await self.store.clinics()
            log.info("bookings: loaded %d sample clinics", len(clinics))
        first = self.now().date()
        days = self.config.booking.sample_days
        added = 0
        for clinic in clinics:
            closed = holidays_for(clinic.region, first, days)
            added += await self.store.add_slots(
                generate_slots(clinic, first, days, self.rules.zone, closed=closed))
        if added:
            log.info("bookings: %d new slots over the next %d days", added, days)

    async def handle(self, action: str, args: Mapping[str, Any], call_id: str, caller: str
                     ) -> tuple[str, dict[str, Any]]:
        outcome, data = await self.service.handle(
            action, dict(args), CallContext(call_id=call_id, caller=caller))
        return outcome, dict(data)

    # -- background work ------------------------------------------------------------------

    async def _sweeper(self) -> None:
        period = self.config.booking.hold_sweep_seconds
        while True:
            await asyncio.sleep(period)
            try:
                released = await self.store.release_expired(self.now(), actor=Actor("system:sweep"))
                if released:
                    log.info("bookings: %d expired hold(s) released", released)
            except Exception:
                log.exception("bookings: hold sweep failed")

    async def _outbox_worker(self) -> None:
        while True:
            try:
                messages = await self.store.claim_outbox(self.now(), lease=OUTBOX_LEASE,
                                                         limit=20)
            except Exception:
                log.exception("bookings: cannot read the outbox")
                messages = []
            if not messages:
                try:
                    self.pending = await self.store.outbox_pending()
                except Exception:
                    log.exception("bookings: cannot count the outbox")
                await asyncio.sleep(OUTBOX_IDLE)
                continue
            for message in messages:
                await self._deliver(message)

    async def _deliver(self, message: OutboxMessage) -> None:
        url = self.config.booking.notify_url
        error: str | None = None
        if url is None:
            payload = message.payload
            log.info("confirmation (%s) for booking %s, reference %s, to %s: %s %s at %s",
                     message.kind.value, message.booking_id, payload.get("reference"),
                     _masked_phone(payload.get("phone")), payload.get("date"),
                     payload.get("time"), payload.get("clinic_name"))
        else:
            error = await self._post(url, message)
        now = self.now()
        if error is None:
            await self.store.outbox_delivered(message.id, now=now)
            self.delivered += 1
            return
        self.failed += 1
        attempts = message.attempts
        if attempts >= self.config.booking.notify_max_attempts:
            log.error("bookings: giving up on message %d for booking %d after %d attempts: %s",
                      message.id, message.booking_id, attempts, error)
            retry_at = None
        else:
            delay = min(MAX_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))
            retry_at = now + dt.timedelta(seconds=delay)
            log.warning("bookings: message %d for booking %d not delivered (%s); retry in "
                        "%.0f s", message.id, message.booking_id, error, delay)
        await self.store.outbox_failed(message.id, now=now, retry_at=retry_at, error=error)

    async def _post(self, url: str, message: OutboxMessage) -> str | None:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession()
        body = json.dumps(dict(message.payload), default=str)
        timeout = aiohttp.ClientTimeout(total=self.config.booking.notify_timeout_seconds)
        try:
            async with self._http.post(
                url, data=body, timeout=timeout,
                headers={"Content-Type": "application/json",
                         "Idempotency-Key": message.dedupe_key},
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
