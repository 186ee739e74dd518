"""`hotline booking …`: load clinics, open their slots, export a day's bookings.

    hotline booking import clinics.csv          # insert or update clinics by id
    hotline booking slots --clinic civic --days 14   # (or --all) slots from sessions
    hotline booking export --date 2026-05-12 [--clinic civic] [-o day.csv]

Each takes `--config FILE` (default config.yaml: its `database.url`), or `--database URL`
instead, and `--rules FILE` (default: the rules shipped in hotline/booking/data).

Owns: these subcommands' arguments, output and exit codes (0 done; 1 the data was refused
— a clinics file with problems, an unknown clinic; 2 bad usage or config). Slots skip the
public holidays of the clinic's region (ACT, NSW, … via the `holidays` calendar) unless
`--include-holidays`. The export holds Medicare numbers and dates of birth for clinic
staff; written to a file it is made readable by its owner only.

Must not know: how the store does its work (hotline.booking.store), flows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from hotline.booking.csvfiles import ClinicFileError, export_csv, parse_clinics
from hotline.booking.geo import shipped_postcodes
from hotline.booking.model import Clinic, generate_slots, holidays_for
from hotline.booking.rules import Rules, default_rules, load_rules
from hotline.booking.store import BookingStore, StoreError, open_store
from hotline.yamlpos import DiagnosticsError

__all__ = ["add_parser", "cmd_export", "cmd_import", "cmd_slots"]



class _UsageError(Exception):
    pass


def _database_url(args: argparse.Namespace) -> tuple[str, str]:
    """(URL, the URL as printed) from --database or the config's database.url."""
    if args.database:
        from hotline.booking.store.postgres import redact

        return args.database, redact(args.database)
    from hotline.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise _UsageError(f"{exc}\n(give --config FILE or --database URL)") from None
    return cfg.database.dsn, cfg.database.display_url


def _rules(args: argparse.Namespace) -> Rules:
    try:
        return load_rules(args.rules) if args.rules else default_rules()
    except DiagnosticsError as exc:
        raise _UsageError(str(exc)) from None


def _run(args: argparse.Namespace, work: Any) -> int:
    """Open the store, run `work(store, rules)`, print errors; returns the exit code."""
    try:
        url, shown = _database_url(args)
        rules = _rules(args)
        store = open_store(url)
    except (_UsageError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        async with store:
            code: int = await work(store, rules, shown)
            return code

    try:
        return asyncio.run(go())
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2

    async def work(store: BookingStore, rules: Rules, shown: str) -> int:
        try:
            clinics = parse_clinics(
                text, args.file, postcodes=shipped_postcodes(), vaccines=rules.vaccines.keys()
            )
        except ClinicFileError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            return 1
        count = await store.save_clinics(clinics, now=dt.datetime.now(dt.UTC))
        print(f"imported {count} clinic(s) into {shown}")
        return 0

    return _run(args, work)


def cmd_slots(args: argparse.Namespace) -> int:
    if args.days < 1 or args.days > 366:
        print(f"error: --days: expected 1 to 366, found {args.days}", file=sys.stderr)
        return 2
    if not args.all and not args.clinic:
        print("error: name the clinics with --clinic ID (repeat it) or give --all", file=sys.stderr)
        return 2
    start: dt.date | None = None
    if args.start:
        try:
            start = dt.date.fromisoformat(args.start)
        except ValueError:
            print(f"error: --from: expected YYYY-MM-DD, found {args.start!r}", file=sys.stderr)
            return 2

    async def work(store: BookingStore, rules: Rules, shown: str) -> int:
        first = start if start is not None else dt.datetime.now(rules.zone).date()
        known = {c.id: c for c in await store.clinics()}
        chosen: list[Clinic]
        if args.all:
            chosen = sorted(known.values(), key=lambda c: c.id)
        else:
            missing = [c for c in args.clinic if c not in known]
            if missing:
                print(
                    f"error: no active clinic {', '.join(missing)} in {shown} (import the "
                    f"clinics file first)",
                    file=sys.stderr,
                )
                return 1
            chosen = [known[c] for c in dict.fromkeys(args.clinic)]
        last = first + dt.timedelta(days=args.days - 1)
        for clinic in chosen:
            closed = (
                frozenset()
                if args.include_holidays
                else holidays_for(clinic.region, first, args.days)
            )
            slots = generate_slots(clinic, first, args.days, rules.zone, closed=closed)
            added = await store.add_slots(slots)
            print(
                f"{clinic.id}: {added} new slot(s), {len(slots) - added} already there "
                f"({first.isoformat()} to {last.isoformat()}"
                f"{f', {len(closed)} public holiday(s) skipped' if closed else ''})"
            )
        return 0

    return _run(args, work)


def cmd_export(args: argparse.Namespace) -> int:
    try:
        day = dt.date.fromisoformat(args.date)
    except ValueError:
        print(f"error: --date: expected YYYY-MM-DD, found {args.date!r}", file=sys.stderr)
        return 2

    async def work(store: BookingStore, rules: Rules, shown: str) -> int:
        clinics = {c.id: c for c in await store.clinics(active_only=False)}
        if args.clinic and args.clinic not in clinics:
            print(f"error: no clinic {args.clinic!r} in {shown}", file=sys.stderr)
            return 1
        bookings = await store.bookings_on(day, clinic_id=args.clinic)
        text = export_csv(bookings, clinics)
        if args.output in (None, "-"):
            sys.stdout.write(text)
        else:
            out = Path(args.output)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.chmod(out, 0o600)
            print(
                f"exported {len(bookings)} booking(s) on {day.isoformat()} to {out}",
                file=sys.stderr,
            )
        return 0

    return _run(args, work)


def add_parser(sub: Any) -> None:
    b = sub.add_parser("booking", help="vaccine booking data: clinics, slots, exports")
    bsub = b.add_subparsers(dest="booking_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            default="config.yaml",
            help="config file whose database.url is used (default: config.yaml)",
        )
        p.add_argument(
            "--database",
            metavar="URL",
            help="sqlite:///PATH or postgresql://… instead of the config's",
        )
        p.add_argument(
            "--rules",
            metavar="FILE",
            help="booking rules (default: the shipped hotline/booking/data/rules.yaml)",
        )

    i = bsub.add_parser("import", help="insert or update clinics from a CSV file")
    i.add_argument("file", metavar="CLINICS.csv")
    common(i)
    i.set_defaults(func=cmd_import)

    s = bsub.add_parser("slots", help="open slots from the clinics' sessions")
    s.add_argument("--clinic", action="append", metavar="ID", help="a clinic (repeatable)")
    s.add_argument("--all", action="store_true", help="every active clinic")
    s.add_argument("--days", type=int, default=14, help="how many days (default 14)")
    s.add_argument(
        "--from",
        dest="start",
        metavar="YYYY-MM-DD",
        help="the first day (default: today in the rules' time zone)",
    )
    s.add_argument(
        "--include-holidays", action="store_true", help="open slots on public holidays too"
    )
    common(s)
    s.set_defaults(func=cmd_slots)

    e = bsub.add_parser("export", help="a day's bookings as CSV, for the clinics")
    e.add_argument("--date", required=True, metavar="YYYY-MM-DD")
    e.add_argument("--clinic", metavar="ID", help="one clinic only")
    e.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    common(e)
    e.set_defaults(func=cmd_export)
