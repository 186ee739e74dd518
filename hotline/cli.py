"""The `hotline` command line: `hotline serve` and `hotline flow check|simulate|graph|schema`.

Owns argument parsing, logging set-up and exit codes; the work is done by
hotline.engine (serve) and the other packages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from hotline import __version__


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            out["call_id"] = call_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text", levels: dict[str, str] | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, lvl in (levels or {}).items():
        logging.getLogger(name if name.startswith("hotline") else f"hotline.{name}").setLevel(
            lvl.upper()
        )


def _cmd_serve(args: argparse.Namespace) -> int:
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
    except FlowsBroken as exc:
        logging.getLogger("hotline").error("cannot start: %s", exc)
        return 2
    except OSError as exc:
        logging.getLogger("hotline").error("cannot start: %s", exc)
        return 1
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
    from hotline.flowcli import add_parser as add_flow_parser

    add_flow_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
