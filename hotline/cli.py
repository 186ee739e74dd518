"""The `hotline` command line: `hotline serve`, `hotline flow …`, `hotline booking …`,
`hotline cdr …`, `hotline closure …` and `hotline loadtest …`.

Owns argument parsing, logging set-up and exit codes; the work is done by
hotline.engine (serve) and the other packages.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from hotline import __version__
from hotline.logsetup import setup_logging


def _cmd_serve(args: argparse.Namespace) -> int:
    from hotline.acd.errors import AcdConfigError
    from hotline.booking.store import StoreError
    from hotline.config import ConfigError, apply_overrides, load_config
    from hotline.engine.server import FlowsBroken, serve

    try:
        cfg = load_config(args.config)
        cfg = apply_overrides(cfg, sip_listen=args.sip_listen, log_level=args.log_level)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_logging(cfg.logging.level, cfg.logging.format, dict(cfg.logging.levels))
    logging.getLogger("hotline").info("hotline %s starting (node %s)", __version__, cfg.node_name)
    try:
        asyncio.run(serve(cfg))
    except (FlowsBroken, AcdConfigError) as exc:
        logging.getLogger("hotline").error("cannot start: %s", exc)
        return 2
    except (OSError, StoreError) as exc:
        logging.getLogger("hotline").error("cannot start: %s", exc)
        return 1
    return 0


def _cmd_closure(args: argparse.Namespace) -> int:
    from hotline.config import ConfigError, load_config
    from hotline.engine.closures import closures_file, read_closures, write_closures

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    path = closures_file(cfg.paths.data)
    names = read_closures(path)
    if args.action == "list":
        for name in sorted(names | set(cfg.ivr.closed)):
            where = "config.yaml ivr.closed" if name in cfg.ivr.closed else str(path)
            print(f"{name}\tclosed ({where})")
        return 0
    if not args.names:
        print("error: name the opening-hours schedule(s)", file=sys.stderr)
        return 2
    try:
        if args.action == "set":
            write_closures(path, names | set(args.names))
        else:
            write_closures(path, names - set(args.names))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stuck = set(args.names) & set(cfg.ivr.closed) if args.action == "clear" else set()
    if stuck:
        print(f"note: {', '.join(sorted(stuck))} stay closed by ivr.closed in the config",
              file=sys.stderr)
    print(f"{'closed' if args.action == 'set' else 'reopened'}: {', '.join(args.names)} "
          "(a running engine applies it within ivr.reload_check_seconds, or on SIGHUP)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="SIP/VoIP hotline engine")
    p.add_argument("--version", action="version", version=f"hotline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the engine")
    s.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    s.add_argument("--sip-listen", metavar="HOST:PORT",
                   help="listen for SIP on HOST:PORT over UDP and TCP (overrides the config)")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="log level (overrides the config)")
    s.set_defaults(func=_cmd_serve)
    c = sub.add_parser("closure", help="the emergency closure switch of opening hours")
    c.add_argument("action", choices=["set", "clear", "list"])
    c.add_argument("names", nargs="*", metavar="SCHEDULE")
    c.add_argument("--config", default="config.yaml")
    c.set_defaults(func=_cmd_closure)
    from hotline.bookingcli import add_parser as add_booking_parser
    from hotline.cdrcli import add_parser as add_cdr_parser
    from hotline.flowcli import add_parser as add_flow_parser
    from hotline.loadtestcli import add_parser as add_loadtest_parser

    add_booking_parser(sub)
    add_cdr_parser(sub)
    add_flow_parser(sub)
    add_loadtest_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
