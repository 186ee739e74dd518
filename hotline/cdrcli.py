"""`hotline cdr export`: the call detail records of a period as CSV.

    hotline cdr export [--since WHEN] [--until WHEN] [-o FILE] [--tz ZONE]
                       [--config FILE | --database URL]

WHEN is a date, `YYYY-MM-DD` (its midnight; for --until the end of that day, so
`--since 2026-05-01 --until 2026-05-31` is all of May), or a date and time,
`YYYY-MM-DDTHH:MM[:SS][±HH:MM|Z]`. Without an offset it is in the hotline's time zone:
--tz, else the config's `ivr.timezone` (UTC with --database and no --tz). By default the
export runs from the start of today to the end of today. Calls are chosen by when they
started, from --since (included) to --until (excluded).

Owns: these arguments, the CSV columns and their formats (`CSV_COLUMNS`, `csv_row`:
ISO-8601 UTC instants to the millisecond, seconds to 3 decimals, loss % to 2, jitter and
round trip to 0.1 ms, MOS to 2 decimals, unknown figures empty; a text cell that a
spreadsheet would run as a formula starts with `'`), and the exit codes (0 done, 1 the
database failed, 2 bad usage or config). The file holds callers' numbers: written to a
file it is readable by its owner only, and it appears whole or not at all (written
beside, then renamed).

Must not know: how the store does its work (hotline.booking.store), SQL, flows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import os
import sys
import tempfile
import zoneinfo
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

from hotline.booking.store import CallRecordStore, StoreError, open_store
from hotline.cdr import FIELDS, CallRecord

__all__ = [
    "CSV_COLUMNS",
    "add_parser",
    "cmd_export",
    "csv_row",
    "export",
    "parse_when",
    "run_export",
    "write_csv",
]

CSV_COLUMNS: Final = FIELDS  # one column per field of the record, in order
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


class _UsageError(Exception):
    pass


# -- CSV ------------------------------------------------------------------------------------


def _instant(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    utc = value.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _number(value: float | None, places: int) -> str:
    return "" if value is None else f"{value:.{places}f}"


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _text(value: str | None) -> str:
    """A text cell; one a spreadsheet would take for a formula gets a leading `'` (a
    number such as +61412345678 stays as it is)."""
    if not value:
        return ""
    if value.startswith(_FORMULA_START) and not (
        value[0] in "+-" and len(value) > 1 and value[1:].isdigit()
    ):
        return "'" + value
    return value


def csv_row(record: CallRecord) -> list[str]:
    """The CSV cells of a record, in CSV_COLUMNS order."""
    q = record.quality
    return [
        _text(record.call_id),
        _text(record.node),
        record.direction.value,
        _text(record.caller),
        _text(record.called),
        _instant(record.started_at),
        _instant(record.answered_at),
        _instant(record.ended_at),
        _number(record.duration_s, 3),
        _number(record.talk_s, 3),
        _text(record.flow),
        _text(record.flow_version),
        _text(record.flow_result),
        _text(record.queue),
        _number(record.queue_wait_s, 3),
        _text(record.agent),
        _text(record.transferred_to),
        record.hangup_side.value,
        record.end_reason.value,
        _count(record.sip_status),
        _count(None if q is None else q.rx_packets),
        _number(None if q is None else q.rx_loss_pct, 2),
        _number(None if q is None else q.rx_jitter_ms, 1),
        _count(None if q is None else q.tx_packets),
        _number(None if q is None else q.tx_loss_pct, 2),
        _number(None if q is None else q.tx_jitter_ms, 1),
        _number(None if q is None else q.rtt_ms, 1),
        _number(None if q is None else q.mos, 2),
    ]


def _writer(out: TextIO) -> Any:
    return csv.writer(out, lineterminator="\n")


def write_csv(records: Iterable[CallRecord], out: TextIO) -> int:
    """The header and a row per record; returns how many records."""
    writer = _writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        writer.writerow(csv_row(record))
        count += 1
    return count


async def export(
    store: CallRecordStore, since: dt.datetime, until: dt.datetime, out: TextIO
) -> int:
    """Write the records of calls started in [since, until) as CSV, read page by page;
    returns how many."""
    writer = _writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for record in store.iter_cdrs(since, until):
        writer.writerow(csv_row(record))
        count += 1
    return count


# -- the command ----------------------------------------------------------------------------


def parse_when(text: str, zone: dt.tzinfo, *, end: bool) -> dt.datetime:
    """--since/--until: a date (its midnight in `zone`; with `end`, the next midnight)
    or an ISO date and time (in `zone` unless it carries an offset). Raises ValueError
    with the expected forms."""
    value = text.strip()
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        pass
    else:
        if len(value) == 10:  # YYYY-MM-DD, not a week or ordinal date
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), tzinfo=zone)
    try:
        instant = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][±HH:MM|Z], found {text!r}"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone)
    return instant


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _UsageError(
            f"--tz: expected an IANA time zone such as Australia/Sydney, found {name!r}"
        ) from None


def _target(args: argparse.Namespace) -> tuple[str, str, dt.tzinfo]:
    """(database URL, the URL as printed, the zone of dates) from the arguments."""
    if args.database:
        from hotline.booking.store.postgres import redact

        return args.database, redact(args.database), _zone(args.tz or "UTC")
    from hotline.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise _UsageError(f"{exc}\n(give --config FILE or --database URL)") from None
    return cfg.database.dsn, cfg.database.display_url, _zone(args.tz or cfg.ivr.timezone)


def run_export(
    database: str, since: dt.datetime, until: dt.datetime, out: Path | TextIO | None = None
) -> int:
    """Export the records of calls started in [since, until) from the database at URL
    `database` to `out` (a file path, made readable by its owner only and replaced
    whole; a text stream; None: stdout). Returns how many records. Raises StoreError
    when the database fails (a file is then left as it was) and ValueError for a bad
    period."""
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ValueError(f"{name}: expected an aware datetime, found naive {value}")
    if until < since:
        raise ValueError(f"--until {until.isoformat()} is before --since {since.isoformat()}")

    async def go(stream: TextIO) -> int:
        async with open_store(database) as store:
            return await export(store, since, until, stream)

    if out is None:
        return asyncio.run(go(sys.stdout))
    if not isinstance(out, Path):
        return asyncio.run(go(out))
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            os.fchmod(fh.fileno(), 0o600)
            count = asyncio.run(go(fh))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return count


def cmd_export(args: argparse.Namespace) -> int:
    try:
        database, shown, zone = _target(args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    today = dt.datetime.now(zone).date().isoformat()
    bounds: list[dt.datetime] = []
    for flag, text, end in (("--since", args.since, False), ("--until", args.until, True)):
        try:
            bounds.append(parse_when(text or today, zone, end=end))
        except ValueError as exc:
            print(f"error: {flag}: {exc}", file=sys.stderr)
            return 2
    since, until = bounds
    if until < since:
        print(
            f"error: --until ({until.isoformat()}) is before --since ({since.isoformat()})",
            file=sys.stderr,
        )
        return 2
    out = None if args.output in (None, "-") else Path(args.output)
    try:
        count = run_export(database, since, until, out)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    where = "stdout" if out is None else str(out)
    print(
        f"exported {count} call record(s) from {shown}, calls started "
        f"{since.isoformat()} to {until.isoformat()}, to {where}",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: Any) -> None:
    c = sub.add_parser("cdr", help="call detail records")
    csub = c.add_subparsers(dest="cdr_command", required=True)
    e = csub.add_parser("export", help="the call records of a period as CSV")
    e.add_argument(
        "--since",
        metavar="WHEN",
        help="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][±HH:MM] (default: the start of today)",
    )
    e.add_argument(
        "--until",
        metavar="WHEN",
        help="YYYY-MM-DD (to the end of that day) or a date and time, excluded "
        "(default: the end of today)",
    )
    e.add_argument("-o", "--output", "--out", metavar="FILE", help="write here (default: stdout)")
    e.add_argument(
        "--tz",
        metavar="ZONE",
        help="time zone of dates and times without an offset (default: the config's "
        "ivr.timezone; UTC with --database)",
    )
    e.add_argument(
        "--config",
        default="config.yaml",
        help="config file whose database.url is used (default: config.yaml)",
    )
    e.add_argument(
        "--database", metavar="URL", help="sqlite:///PATH or postgresql://… instead of the config's"
    )
    e.set_defaults(func=cmd_export)
