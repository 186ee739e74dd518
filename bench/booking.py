"""Benchmark: vaccine-booking throughput with many concurrent callers, on SQLite and on
PostgreSQL, hotline's stores beside a naive store (bench/_naive_booking.py) in the same run.

Every simulated caller runs the sequence a call makes, through the same
hotline.booking.service.BookingService the IVR uses: `find_caller` (by caller ID) →
`eligibility` (date of birth, Medicare number) → `clinics` (postcode, a first day; when no clinic
near has a time from that day, again from the earliest) → `slots` (one of the offered
clinics) → `hold` (one of the offered times; when the place has just gone the caller
hears the times again and picks again, up to `HOLD_TRIES` holds, and gives up when none
is left) → `confirm`. Callers are closed-loop (no think time), `--callers N`
of them at once, each person new (own Medicare number, date of birth, phone).

Data: the 15 sample clinics (hotline/booking/data/clinics_sample.csv) with slots for 14
days from Monday 2026-05-11 (public holidays skipped, as the engine seeds them), and a
"rush" clinic alone at the postcode furthest from every sample clinic, with 10 places
(5 slots of 2) on one day. The service's clock is fixed at 08:00 that Monday, so no hold
expires during a run. Two loads per level, each run in a fresh database:

* spread — `--bookings` callers (a fixed number per level) from postcodes within reach
  of a sample clinic, each asking from a random day of the 14, picking a random one of
  the clinics (up to 3) and times (up to 4) offered: most holds succeed;
* rush — N callers (N = the level) at the rush clinic's postcode, who all fetch their
  offers, wait for one another, then go for the same 10 places at once.

Reported per database, level and implementation (medians over `--repeat` runs): holds/s
and confirms/s over the spread load's wall time, p50/p99 latency of every operation, the
callers who got no booking, errors (exceptions from the store), and — checked in the
database after each run — anomalies: slots holding more active (held or confirmed)
bookings than their capacity (double booking), slots whose `taken` count differs from
their active bookings, `taken` above capacity, duplicate references, confirmed bookings
without exactly one confirmation message, holds left unconfirmed, references a caller
heard that the database does not hold, and confirmed bookings nobody heard. Anomalies are
summed over the repeats, never medianed. Ratios are hotline / naive (throughput: above 1
is hotline faster; latency: below 1 is hotline faster).

Durability is the same on both sides: SQLite in WAL with synchronous=FULL (the file under
`--workdir`, default the system temporary directory); PostgreSQL from tests/pgcluster.py
(Debian `postgresql`, a throwaway cluster as the `postgres` user on a free port),
restarted with fsync, full_page_writes and synchronous_commit on. Both implementations
get `--pool` PostgreSQL connections (hotline's default, 10) and the naive SQLite store as
many worker threads.

    .venv/bin/python bench/booking.py [--callers 1,10,50,200] [--bookings 1000]
        [--repeat 3] [--db sqlite,postgresql] [--quick] [--json PATH] [--pool 10]
        [--seed 1] [--workdir DIR]

Exit status 1 when hotline's stores show an anomaly or an error (the naive store's are
expected and only reported).

Owns the load, the data set, the invariant checks and the report. Must not know how the
stores work inside: it drives the service and reads the tables afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from _naive_booking import NaivePostgresStore, NaiveSqliteStore

from hotline.booking.csvfiles import parse_clinics
from hotline.booking.geo import PostcodeTable, haversine_km, nearest, shipped_postcodes
from hotline.booking.model import (
    Clinic,
    Scalar,
    Slot,
    generate_slots,
    holidays_for,
    medicare_problem,
    parse_sessions,
)
from hotline.booking.rules import Rules, default_rules
from hotline.booking.service import BookingService
from hotline.booking.store import BookingStore
from hotline.booking.store.postgres import PostgresStore
from hotline.booking.store.sqlite import SqliteStore
from tests.pgcluster import Cluster, PostgresMissing, running_cluster

NOW: Final = dt.datetime(2026, 5, 10, 22, 0, tzinfo=dt.UTC)  # Monday 11 May, 08:00 Sydney
FIRST_DAY: Final = dt.date(2026, 5, 11)
DAYS: Final = 14
RUSH_DAY: Final = FIRST_DAY + dt.timedelta(days=1)
RUSH_CLINIC: Final = "rush"
RUSH_SESSIONS: Final = "Mon-Sun 09:00-09:50 10min x2"  # 5 slots of 2 places
HOLD_TRIES: Final = 3
OPS: Final = ("find_caller", "eligibility", "clinics", "slots", "hold", "confirm")
IMPLS: Final = ("hotline", "naive")
DB_NAMES: Final = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
ANOMALIES: Final = (
    "oversold_slots",
    "oversold_places",
    "counter_drift",
    "taken_over_capacity",
    "duplicate_references",
    "confirmed_without_message",
    "duplicate_messages",
    "still_held",
    "lost_confirmations",
    "unheard_confirmations",
)


# -- the data set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    clinics: list[Clinic]  # the sample clinics and the rush clinic
    slots: list[Slot]
    sample_slots: int
    sample_places: int
    rush_postcode: str
    rush_locality: str
    rush_places: int
    caller_postcodes: list[str]  # within reach of a sample clinic, out of the rush clinic's


def build_dataset(rules: Rules, postcodes: PostcodeTable) -> Dataset:
    text = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text(
        encoding="utf-8"
    )
    sample = parse_clinics(
        text, "clinics_sample.csv", postcodes=postcodes, vaccines=rules.vaccines.keys()
    )
    slots: list[Slot] = []
    for clinic in sample:
        closed = holidays_for(clinic.region, FIRST_DAY, DAYS)
        slots.extend(generate_slots(clinic, FIRST_DAY, DAYS, rules.zone, closed=closed))
    sample_slots, sample_places = len(slots), sum(s.capacity for s in slots)

    def reach(code: str) -> float:
        place = postcodes[code]
        return min(haversine_km((place.lat, place.lon), (c.lat, c.lon)) for c in sample)

    far = max(sorted(postcodes), key=reach)
    if reach(far) <= rules.max_distance_km:
        raise SystemExit(
            f"error: every postcode is within {rules.max_distance_km} km of a sample clinic: "
            f"no place for the rush clinic"
        )
    place = postcodes[far]
    rush = Clinic(
        RUSH_CLINIC,
        "Rush Vaccination Clinic",
        f"1 Main Street {place.locality}",
        far,
        place.state,
        place.lat,
        place.lon,
        tuple(rules.vaccines),
        parse_sessions(RUSH_SESSIONS),
    )
    rush_slots = generate_slots(rush, RUSH_DAY, 1, rules.zone)
    slots.extend(rush_slots)
    covid = [c for c in sample if rules.default_vaccine in c.vaccines]
    callers = [
        code
        for code in sorted(postcodes)
        if nearest((postcodes[code].lat, postcodes[code].lon), covid, max_km=rules.max_distance_km)
        and haversine_km((postcodes[code].lat, postcodes[code].lon), (rush.lat, rush.lon))
        > rules.max_distance_km
    ]
    return Dataset(
        [*sample, rush],
        slots,
        sample_slots,
        sample_places,
        far,
        place.locality,
        sum(s.capacity for s in rush_slots),
        callers,
    )


# -- callers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """What one caller says and picks."""

    call_id: str
    medicare: str
    dob: str
    phone: str
    postcode: str
    day: str
    clinic_choice: int
    slot_choice: int


_MEDICARE_WEIGHTS: Final = (1, 3, 7, 9, 1, 3, 7, 9)


def medicare_for(n: int) -> str:
    """A valid Medicare number (10 digits, issue number 1) unique to `n` < 10**7."""
    first8 = f"{2 + n % 5}{n:07d}"
    check = sum(int(d) * w for d, w in zip(first8, _MEDICARE_WEIGHTS, strict=True)) % 10
    number = f"{first8}{check}1"
    problem = medicare_problem(number)
    if problem is not None:
        raise AssertionError(f"generated Medicare number for {n}: {problem}")
    return number


def _person(rng: random.Random, n: int) -> tuple[str, str, str]:
    dob = dt.date(1945, 1, 1) + dt.timedelta(days=rng.randrange(60 * 365))
    return medicare_for(n), dob.isoformat(), f"04{n:08d}"


def spread_scripts(rng: random.Random, count: int, data: Dataset) -> list[Script]:
    out = []
    for n in range(count):
        medicare, dob, phone = _person(rng, n)
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS))
        out.append(
            Script(
                f"spread-{n}",
                medicare,
                dob,
                phone,
                rng.choice(data.caller_postcodes),
                day.isoformat(),
                rng.randint(1, 3),
                rng.randint(1, 4),
            )
        )
    return out


def rush_scripts(rng: random.Random, count: int, first: int, data: Dataset) -> list[Script]:
    out = []
    for n in range(first, first + count):
        medicare, dob, phone = _person(rng, n)
        out.append(
            Script(
                f"rush-{n}",
                medicare,
                dob,
                phone,
                data.rush_postcode,
                RUSH_DAY.isoformat(),
                1,
                rng.randint(1, 4),
            )
        )
    return out


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    heard: dict[int, str] = field(default_factory=dict)  # booking id → reference read out
    holds: int = 0
    confirms: int = 0
    full: int = 0
    gave_up: int = 0


class Gate:
    """Holds callers until all `parties` have arrived, then lets them all through."""

    def __init__(self, parties: int) -> None:
        self.left = parties
        self.opened = asyncio.Event()
        self.opened_at = 0.0

    async def arrive(self) -> None:
        self.left -= 1
        if self.left <= 0 and not self.opened.is_set():
            self.opened_at = time.perf_counter()
            self.opened.set()
        await self.opened.wait()


def _int(data: Mapping[str, Scalar], key: str) -> int:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise AssertionError(f"service answer: expected an integer {key}, found {value!r}")


def _str(data: Mapping[str, Scalar], key: str) -> str:
    value = data.get(key)
    if isinstance(value, str):
        return value
    raise AssertionError(f"service answer: expected text {key}, found {value!r}")


async def call(service: BookingService, s: Script, tally: Tally, gate: Gate | None) -> None:
    """One caller's sequence. With a `gate`, the caller waits there after hearing the times
    offered (whatever happened before), so that every caller's hold starts together."""
    context = {"call_id": s.call_id, "caller": s.phone}
    person = {"dob": s.dob, "medicare": s.medicare}
    since = {"from": s.day}  # the first day the caller asked for

    async def step(op: str, args: Mapping[str, object]) -> tuple[str, Mapping[str, Scalar]]:
        started = time.perf_counter()
        try:
            outcome, data = await service.handle(op, args, context)
        except Exception as exc:
            tally.latencies[op].append(time.perf_counter() - started)
            tally.errors[op] += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{op}: {type(exc).__name__}: {exc}")
            return "error", {}
        tally.latencies[op].append(time.perf_counter() - started)
        tally.outcomes[f"{op}:{outcome}"] += 1
        return outcome, data

    async def offer() -> tuple[str, Mapping[str, Scalar]]:
        await step("find_caller", {})
        outcome, _ = await step("eligibility", person)
        if outcome != "eligible":
            return outcome, {}
        outcome, clinics = await step("clinics", {"postcode": s.postcode, "from": s.day})
        if outcome == "none":  # nothing near from that day: the caller takes the earliest
            since.clear()
            outcome, clinics = await step("clinics", {"postcode": s.postcode})
        if outcome != "found":
            return outcome, {}
        choice = min(s.clinic_choice, _int(clinics, "clinic_count"))
        offer = _str(clinics, "clinic_offer")
        outcome, times = await step("slots", {"choice": choice, "offer": offer, **since})
        return outcome, {**times, "_choice": choice, "_offer": offer}

    try:
        outcome, times = await offer()
    finally:
        if gate is not None:
            await gate.arrive()
    held: Mapping[str, Scalar] = {}
    for attempt in range(HOLD_TRIES):
        if outcome != "found":
            break
        choice = min(s.slot_choice, _int(times, "slot_count"))
        outcome, held = await step(
            "hold", {"choice": choice, "offer": _str(times, "slot_offer"), **person}
        )
        if outcome == "ok":
            tally.holds += 1
            break
        if outcome != "full":
            break
        tally.full += 1
        if attempt + 1 < HOLD_TRIES:
            again = {"choice": times["_choice"], "offer": times["_offer"], **since}
            outcome, fresh = await step("slots", again)
            times = {**fresh, "_choice": times["_choice"], "_offer": times["_offer"]}
    if outcome != "ok":
        tally.gave_up += 1
        return
    outcome, done = await step("confirm", {"hold": _int(held, "hold_id")})
    if outcome == "ok":
        tally.confirms += 1
        tally.heard[_int(done, "booking_id")] = _str(done, "reference")
    else:
        tally.gave_up += 1


async def drive(
    service: BookingService, scripts: Sequence[Script], callers: int, *, rush: bool
) -> tuple[Tally, float]:
    """Run `scripts` with `callers` at once; returns the tally and the wall time (for a
    rush: from the moment every caller was at the gate)."""
    tally = Tally()
    pending = iter(scripts)
    gate = Gate(len(scripts)) if rush else None

    async def caller() -> None:
        for script in pending:
            await call(service, script, tally, gate)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(max(1, min(callers, len(scripts))))))
    ended = time.perf_counter()
    return tally, ended - (gate.opened_at if gate is not None else started)


# -- checking the database afterwards -------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    slots: list[tuple[str, str, int, int, int]]  # id, clinic, capacity, taken, active bookings
    bookings: list[tuple[int, str | None, str, str]]  # id, reference, status, clinic
    messages: list[tuple[int, str]]  # booking id, kind


_SLOT_COUNTS: Final = (
    "SELECT s.id, s.clinic_id, s.capacity, s.taken, COUNT(b.id) FROM slots s "
    "LEFT JOIN bookings b ON b.slot_id = s.id AND b.status IN ('held', 'confirmed') "
    "GROUP BY s.id, s.clinic_id, s.capacity, s.taken"
)
_BOOKING_ROWS: Final = "SELECT id, reference, status, clinic_id FROM bookings"
_MESSAGE_ROWS: Final = "SELECT booking_id, kind FROM outbox"


def _tables(slots: Sequence[Any], bookings: Sequence[Any], messages: Sequence[Any]) -> Tables:
    return Tables(
        [(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in slots],
        [(int(r[0]), None if r[1] is None else str(r[1]), str(r[2]), str(r[3])) for r in bookings],
        [(int(r[0]), str(r[1])) for r in messages],
    )


def read_sqlite(path: Path) -> Tables:
    conn = sqlite3.connect(str(path))
    try:
        return _tables(
            conn.execute(_SLOT_COUNTS).fetchall(),
            conn.execute(_BOOKING_ROWS).fetchall(),
            conn.execute(_MESSAGE_ROWS).fetchall(),
        )
    finally:
        conn.close()


async def read_postgres(url: str) -> Tables:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        found = []
        for sql in (_SLOT_COUNTS, _BOOKING_ROWS, _MESSAGE_ROWS):
            cursor = await conn.execute(sql.encode())
            found.append(await cursor.fetchall())
        return _tables(*found)


def check(tables: Tables, heard: Mapping[int, str], *, rush: bool) -> dict[str, int]:
    """The anomalies of one load, from the rush clinic's rows (`rush`) or all the others';
    `heard` is that load's references as read out to callers, by booking id."""
    slots = [s for s in tables.slots if (s[1] == RUSH_CLINIC) == rush]
    bookings = [b for b in tables.bookings if (b[3] == RUSH_CLINIC) == rush]
    mine = {b[0] for b in bookings}
    confirmed = {b[0]: b[1] for b in bookings if b[2] == "confirmed"}
    references = Counter(b[1] for b in bookings if b[1] is not None)
    messages = Counter(m[0] for m in tables.messages if m[1] == "confirmed" and m[0] in mine)
    return {
        "oversold_slots": sum(1 for s in slots if s[4] > s[2]),
        "oversold_places": sum(max(0, s[4] - s[2]) for s in slots),
        "counter_drift": sum(1 for s in slots if s[3] != s[4]),
        "taken_over_capacity": sum(1 for s in slots if s[3] > s[2]),
        "duplicate_references": sum(1 for n in references.values() if n > 1),
        "confirmed_without_message": sum(1 for b in confirmed if messages[b] == 0),
        "duplicate_messages": sum(1 for n in messages.values() if n > 1),
        "still_held": sum(1 for b in bookings if b[2] == "held"),
        "lost_confirmations": sum(1 for b, ref in heard.items() if confirmed.get(b) != ref),
        "unheard_confirmations": sum(1 for b in confirmed if b not in heard),
    }


# -- one run --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 1]) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Phase:
    callers: int  # scripts run
    seconds: float
    holds: int
    confirms: int
    full: int
    gave_up: int
    errors: int
    error_samples: list[str]
    unexpected: dict[str, int]
    latency_ms: dict[str, list[float]]  # op → [p50, p99, count]
    anomalies: dict[str, int]

    @property
    def holds_per_s(self) -> float:
        return self.holds / self.seconds if self.seconds > 0 else math.nan

    @property
    def confirms_per_s(self) -> float:
        return self.confirms / self.seconds if self.seconds > 0 else math.nan


EXPECTED: Final = frozenset(
    {
        "find_caller:not_found",
        "eligibility:eligible",
        "clinics:found",
        "clinics:none",  # nothing near from the day asked: asked again from the earliest
        "slots:found",
        "slots:none",  # after a full hold: every place gone (the rush)
        "hold:ok",
        "hold:full",
        "confirm:ok",
    }
)


def phase(tally: Tally, callers: int, seconds: float, anomalies: dict[str, int]) -> Phase:
    return Phase(
        callers,
        seconds,
        tally.holds,
        tally.confirms,
        tally.full,
        tally.gave_up,
        sum(tally.errors.values()),
        tally.error_samples,
        {k: n for k, n in sorted(tally.outcomes.items()) if k not in EXPECTED},
        {
            op: [
                percentile(tally.latencies[op], 0.5) * 1e3,
                percentile(tally.latencies[op], 0.99) * 1e3,
                float(len(tally.latencies[op])),
            ]
            for op in OPS
        },
        anomalies,
    )


@dataclass
class Run:
    db: str
    impl: str
    callers: int
    repeat: int
    spread: Phase
    rush: Phase


@dataclass
class Bench:
    rules: Rules
    postcodes: PostcodeTable
    data: Dataset
    pool: int
    bookings: int
    seed: int
    workdir: Path
    cluster: Cluster | None


def make_store(bench: Bench, db: str, impl: str, where: str) -> BookingStore:
    if db == "sqlite":
        path = Path(where)
        return (
            SqliteStore(path) if impl == "hotline" else NaiveSqliteStore(path, pool_size=bench.pool)
        )
    if impl == "hotline":
        return PostgresStore(where, pool_size=bench.pool)
    return NaivePostgresStore(where, pool_size=bench.pool)


def drop_database(cluster: Cluster, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"'.encode())


async def run_one(bench: Bench, db: str, impl: str, callers: int, repeat: int) -> Run:
    rng = random.Random(f"{bench.seed}:{repeat}:{callers}")
    spread = spread_scripts(rng, bench.bookings, bench.data)
    rush = rush_scripts(rng, callers, bench.bookings, bench.data)
    if db == "sqlite":
        where = str(bench.workdir / f"{impl}-{callers}-{repeat}.db")
    else:
        assert bench.cluster is not None
        where = bench.cluster.new_database()
    store = make_store(bench, db, impl, where)
    await store.open()
    try:
        await store.save_clinics(bench.data.clinics, now=NOW)
        await store.add_slots(bench.data.slots)
        service = BookingService(store, bench.rules, lambda: NOW, postcodes=bench.postcodes)
        spread_tally, spread_s = await drive(service, spread, callers, rush=False)
        rush_tally, rush_s = await drive(service, rush, callers, rush=True)
    finally:
        await store.close()
    if db == "sqlite":
        tables = read_sqlite(Path(where))
        for suffix in ("", "-wal", "-shm"):
            Path(where + suffix).unlink(missing_ok=True)
    else:
        assert bench.cluster is not None
        tables = await read_postgres(where)
        drop_database(bench.cluster, where)
    return Run(
        db,
        impl,
        callers,
        repeat,
        phase(spread_tally, len(spread), spread_s, check(tables, spread_tally.heard, rush=False)),
        phase(rush_tally, len(rush), rush_s, check(tables, rush_tally.heard, rush=True)),
    )


# -- PostgreSQL -----------------------------------------------------------------------------


@contextlib.contextmanager
def durable_cluster() -> Iterator[Cluster]:
    """tests/pgcluster.py's throwaway cluster, restarted with durable commits (the test
    cluster runs with fsync off)."""
    with running_cluster() as cluster:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
            f"-c unix_socket_directories={cluster.root} -c fsync=on "
            f"-c full_page_writes=on -c synchronous_commit=on -c max_connections=100"
        )
        cluster._run(
            "pg_ctl",
            "-D",
            str(cluster.data),
            "-l",
            str(cluster.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "restart",
        )
        yield cluster


def pg_settings(cluster: Cluster) -> dict[str, str]:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        out = {}
        for name in (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "wal_sync_method",
        ):
            row = conn.execute(f"SHOW {name}".encode()).fetchone()
            out[name] = str(row[0]) if row is not None else "?"
        return out


def filesystem(path: Path) -> str:
    try:
        done = subprocess.run(
            ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=True
        )
        return done.stdout.split()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


# -- summaries and the report ---------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


@dataclass
class Row:
    """One (database, load, level, implementation): medians over the repeats, anomalies
    and errors summed."""

    db: str
    load: str
    callers: int
    impl: str
    runs: int
    holds_per_s: float
    confirms_per_s: float
    seconds: float
    holds: float
    confirms: float
    full: float
    gave_up: float
    errors: int
    latency_ms: dict[str, list[float]]  # op → [median p50, median p99]
    anomalies: dict[str, int]
    unexpected: dict[str, int]
    error_samples: list[str]


def summarise(runs: Sequence[Run], db: str, load: str, callers: int, impl: str) -> Row | None:
    phases = [
        r.spread if load == "spread" else r.rush
        for r in runs
        if r.db == db and r.callers == callers and r.impl == impl
    ]
    if not phases:
        return None
    unexpected: Counter[str] = Counter()
    for p in phases:
        unexpected.update(p.unexpected)
    return Row(
        db,
        load,
        callers,
        impl,
        len(phases),
        _median([p.holds_per_s for p in phases]),
        _median([p.confirms_per_s for p in phases]),
        _median([p.seconds for p in phases]),
        _median([p.holds for p in phases]),
        _median([p.confirms for p in phases]),
        _median([p.full for p in phases]),
        _median([p.gave_up for p in phases]),
        sum(p.errors for p in phases),
        {
            op: [
                _median([p.latency_ms[op][0] for p in phases]),
                _median([p.latency_ms[op][1] for p in phases]),
            ]
            for op in OPS
        },
        {a: sum(p.anomalies[a] for p in phases) for a in ANOMALIES},
        dict(sorted(unexpected.items())),
        [s for p in phases for s in p.error_samples][:5],
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(a) and not math.isnan(b) else math.nan


def _x(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _ms(pair: Sequence[float]) -> str:
    if any(math.isnan(v) for v in pair):
        return "-"
    return f"{pair[0]:.1f}/{pair[1]:.1f}"


def ratios(hot: Row, naive: Row) -> dict[str, float]:
    out = {
        "holds_per_s": _ratio(hot.holds_per_s, naive.holds_per_s),
        "confirms_per_s": _ratio(hot.confirms_per_s, naive.confirms_per_s),
    }
    for op in OPS:
        out[f"{op}_p50"] = _ratio(hot.latency_ms[op][0], naive.latency_ms[op][0])
        out[f"{op}_p99"] = _ratio(hot.latency_ms[op][1], naive.latency_ms[op][1])
    return out


def print_report(rows: list[Row], dbs: Sequence[str], levels: Sequence[int]) -> None:
    def find(db: str, load: str, n: int, impl: str) -> Row | None:
        for r in rows:
            if (r.db, r.load, r.callers, r.impl) == (db, load, n, impl):
                return r
        return None

    def anomalies(r: Row) -> str:
        return f"{r.anomalies['oversold_slots']}/{r.anomalies['oversold_places']}"

    def others(r: Row) -> int:
        skip = ("oversold_slots", "oversold_places")
        return sum(n for k, n in r.anomalies.items() if k not in skip)

    for db in dbs:
        name = DB_NAMES[db]
        print(f"\n== {name}: spread load (holds and confirms per second over the load's wall time)")
        print(
            f"{'callers':>7} {'impl':<8} {'holds/s':>8} {'confirms/s':>10} {'wall s':>7} "
            f"{'full':>5} {'no booking':>10} {'errors':>6} {'oversold':>9} {'other':>5}"
        )
        for n in levels:
            for impl in IMPLS:
                r = find(db, "spread", n, impl)
                if r is None:
                    continue
                print(
                    f"{n:>7} {impl:<8} {r.holds_per_s:>8.1f} {r.confirms_per_s:>10.1f} "
                    f"{r.seconds:>7.2f} {r.full:>5.0f} {r.gave_up:>10.0f} {r.errors:>6} "
                    f"{anomalies(r):>9} {others(r):>5}"
                )
            hot, naive = find(db, "spread", n, "hotline"), find(db, "spread", n, "naive")
            if hot is not None and naive is not None:
                q = ratios(hot, naive)
                print(
                    f"{'':>7} {'ratio':<8} {_x(q['holds_per_s']):>8} {_x(q['confirms_per_s']):>10}"
                )
        print(f"\n   {name}: spread load, latency p50/p99 ms per operation")
        print(f"{'callers':>7} {'impl':<8} " + " ".join(f"{op:>13}" for op in OPS))
        for n in levels:
            for impl in IMPLS:
                r = find(db, "spread", n, impl)
                if r is not None:
                    print(
                        f"{n:>7} {impl:<8} "
                        + " ".join(f"{_ms(r.latency_ms[op]):>13}" for op in OPS)
                    )
            hot, naive = find(db, "spread", n, "hotline"), find(db, "spread", n, "naive")
            if hot is not None and naive is not None:
                q = ratios(hot, naive)
                print(
                    f"{'':>7} {'p99 ratio':<8} "
                    + " ".join(f"{_x(q[f'{op}_p99']):>13}" for op in OPS)
                )
        print(f"\n== {name}: rush — N callers at once on the rush clinic's places")
        print(
            f"{'callers':>7} {'impl':<8} {'holds':>5} {'confirms':>8} {'full':>5} "
            f"{'hold p50/p99':>13} {'confirm p50/p99':>15} {'rush s':>7} {'errors':>6} "
            f"{'oversold':>9} {'drift':>5} {'other':>5}"
        )
        for n in levels:
            for impl in IMPLS:
                r = find(db, "rush", n, impl)
                if r is None:
                    continue
                print(
                    f"{n:>7} {impl:<8} {r.holds:>5.0f} {r.confirms:>8.0f} {r.full:>5.0f} "
                    f"{_ms(r.latency_ms['hold']):>13} {_ms(r.latency_ms['confirm']):>15} "
                    f"{r.seconds:>7.2f} {r.errors:>6} {anomalies(r):>9} "
                    f"{r.anomalies['counter_drift']:>5} "
                    f"{others(r) - r.anomalies['counter_drift']:>5}"
                )
    print(
        "\noversold = slots over capacity / places over capacity, summed over the runs; "
        "drift = slots whose taken count differs from their active bookings; other = "
        "the remaining checks (see --json)"
    )


def verdicts(rows: Sequence[Row]) -> tuple[list[str], bool]:
    """Lines on the naive store's overselling and hotline's invariants; whether hotline
    is clean."""
    lines = []
    for db in DB_NAMES:
        bad = [
            r for r in rows if r.db == db and r.impl == "naive" and r.anomalies["oversold_slots"]
        ]
        if not any(r.db == db and r.impl == "naive" for r in rows):
            continue
        if bad:
            parts = ", ".join(
                f"{r.load} at {r.callers} callers ({r.anomalies['oversold_slots']} slots, "
                f"{r.anomalies['oversold_places']} places over capacity in {r.runs} runs)"
                for r in bad
            )
            lines.append(f"naive store OVERSOLD on {DB_NAMES[db]}: {parts}")
        else:
            lines.append(f"naive store did not oversell on {DB_NAMES[db]} in these runs")
        drift = [
            r for r in rows if r.db == db and r.impl == "naive" and r.anomalies["counter_drift"]
        ]
        if drift:
            lines.append(
                f"naive store's taken counters drifted on {DB_NAMES[db]}: "
                + ", ".join(
                    f"{r.load} at {r.callers} ({r.anomalies['counter_drift']} slots)" for r in drift
                )
            )
    clean = True
    for r in rows:
        if r.impl != "hotline":
            continue
        problems = {k: n for k, n in r.anomalies.items() if n}
        if problems or r.errors:
            clean = False
            lines.append(
                f"HOTLINE ANOMALY {DB_NAMES[r.db]} {r.load} {r.callers} callers: "
                f"{problems} errors={r.errors} {r.error_samples}"
            )
    if clean:
        lines.append(
            "hotline: no anomaly and no error on any store, load or level (double-booked "
            "slots 0, counters exact, references unique, every heard reference stored)"
        )
    return lines, clean


# -- main -----------------------------------------------------------------------------------


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, found {text!r}"
        ) from None
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError(f"expected levels of at least 1, found {text!r}")
    return levels


def _dbs(text: str) -> list[str]:
    dbs = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [d for d in dbs if d not in DB_NAMES]
    if not dbs or unknown:
        raise argparse.ArgumentTypeError(
            f"expected sqlite and/or postgresql, found {', '.join(unknown) or 'nothing'}"
        )
    return dbs


async def bench_all(
    bench: Bench, dbs: Sequence[str], levels: Sequence[int], repeat: int
) -> list[Run]:
    runs = []
    for rep in range(repeat):
        for db in dbs:
            for n in levels:
                order = IMPLS if rep % 2 == 0 else tuple(reversed(IMPLS))
                for impl in order:
                    started = time.perf_counter()
                    run = await run_one(bench, db, impl, n, rep)
                    runs.append(run)
                    bad = sum(run.spread.anomalies.values()) + sum(run.rush.anomalies.values())
                    print(
                        f"  run {rep + 1}/{repeat} {DB_NAMES[db]:<10} {impl:<7} {n:>4} callers: "
                        f"{run.spread.holds_per_s:7.1f} holds/s, rush {run.rush.holds}/"
                        f"{bench.data.rush_places} held, anomalies {bad}, errors "
                        f"{run.spread.errors + run.rush.errors} "
                        f"({time.perf_counter() - started:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", type=_levels, default=None, help="levels (1,10,50,200)")
    parser.add_argument(
        "--bookings", type=int, default=None, help="callers of the spread load per level (1000)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="runs per level (3)")
    parser.add_argument("--db", type=_dbs, default=["sqlite", "postgresql"])
    parser.add_argument(
        "--quick", action="store_true", help="150 bookings per level, one run (unless given)"
    )
    parser.add_argument("--pool", type=int, default=10, help="PostgreSQL connections (10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="where SQLite files go")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    levels: list[int] = args.callers or [1, 10, 50, 200]
    bookings: int = args.bookings or (150 if args.quick else 1000)
    repeat: int = args.repeat or (1 if args.quick else 3)
    if bookings < 1 or repeat < 1 or args.pool < 1:
        parser.error("--bookings, --repeat and --pool must be at least 1")
    if bookings + max(levels) >= 10**7:
        parser.error("--bookings plus the largest level must stay below 10,000,000")

    rules = default_rules()
    postcodes = shipped_postcodes()
    data = build_dataset(rules, postcodes)
    with contextlib.ExitStack() as stack:
        base = args.workdir or Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        workdir = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="hotline-bench-booking-", dir=base)
            )
        )
        cluster: Cluster | None = None
        settings: dict[str, str] = {}
        if "postgresql" in args.db:
            try:
                cluster = stack.enter_context(durable_cluster())
            except PostgresMissing as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            settings = pg_settings(cluster)
        bench = Bench(rules, postcodes, data, args.pool, bookings, args.seed, workdir, cluster)

        print("hotline booking benchmark: hotline's stores against a naive store, same run")
        print(
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs; "
            f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL) on {filesystem(workdir)} "
            f"({workdir.parent})"
        )
        if cluster is not None:
            print(
                f"PostgreSQL {settings['server_version']} (fsync={settings['fsync']}, "
                f"synchronous_commit={settings['synchronous_commit']}, full_page_writes="
                f"{settings['full_page_writes']}, shared_buffers={settings['shared_buffers']}); "
                f"{args.pool} pooled connections for each implementation"
            )
        print(
            f"data: {len(data.clinics) - 1} sample clinics, {data.sample_slots} slots, "
            f"{data.sample_places} places over {DAYS} days from {FIRST_DAY}; rush clinic at "
            f"{data.rush_postcode} {data.rush_locality}: {data.rush_places} places on {RUSH_DAY}"
        )
        print(
            f"per caller: {' → '.join(OPS)} (up to {HOLD_TRIES} holds); spread load "
            f"{bookings} callers per level; rush: N callers at once; levels "
            f"{','.join(map(str, levels))}; medians of {repeat} run(s)"
        )
        started = time.perf_counter()
        runs = asyncio.run(bench_all(bench, args.db, levels, repeat))
        total = time.perf_counter() - started

    rows = [
        row
        for db in args.db
        for load in ("spread", "rush")
        for n in levels
        for impl in IMPLS
        if (row := summarise(runs, db, load, n, impl)) is not None
    ]
    print_report(rows, args.db, levels)
    lines, clean = verdicts(rows)
    print()
    for line in lines:
        print(line)
    print(f"total {total:.0f} s")
    if args.json is not None:
        pairs = []
        for hot in rows:
            if hot.impl != "hotline":
                continue
            naive = next(
                (
                    r
                    for r in rows
                    if (r.db, r.load, r.callers, r.impl) == (hot.db, hot.load, hot.callers, "naive")
                ),
                None,
            )
            if naive is not None:
                pairs.append(
                    {
                        "db": hot.db,
                        "load": hot.load,
                        "callers": hot.callers,
                        "hotline_over_naive": ratios(hot, naive),
                    }
                )
        document = {
            "config": {
                "callers": levels,
                "bookings": bookings,
                "repeat": repeat,
                "db": args.db,
                "pool": args.pool,
                "seed": args.seed,
                "hold_tries": HOLD_TRIES,
                "now": NOW.isoformat(),
                "days": DAYS,
            },
            "environment": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "sqlite": sqlite3.sqlite_version,
                "sqlite_filesystem": filesystem(
                    Path(tempfile.gettempdir()) if args.workdir is None else args.workdir
                ),
                "postgresql": settings,
            },
            "data": {
                "sample_clinics": len(data.clinics) - 1,
                "sample_slots": data.sample_slots,
                "sample_places": data.sample_places,
                "rush_postcode": data.rush_postcode,
                "rush_places": data.rush_places,
            },
            "summary": [asdict(r) for r in rows],
            "ratios": pairs,
            "verdicts": lines,
            "runs": [
                {
                    **asdict(r),
                    "spread_holds_per_s": r.spread.holds_per_s,
                    "spread_confirms_per_s": r.spread.confirms_per_s,
                }
                for r in runs
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(_finite(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        )
        print(f"results written to {args.json}")
    return 0 if clean else 1


def _finite(value: object) -> object:
    """`value` with every NaN (a percentile of no samples) replaced by None, for JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
