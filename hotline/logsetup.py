"""Logging: the handler and formats `hotline serve` logs with, and per-subsystem levels
that can change while the engine runs.

Owns the two formats — text (one line per record) and JSON (one object per line with
ts, level, logger, msg and, when the record is about a call, `call_id`) — and the level
of each `hotline.*` logger. A record is about a call when it was logged with
``extra={"call_id": ...}`` or, as most engine lines are, as ``"call %s: ..."`` with the
Call-ID as its first argument; the JSON line then carries it as a field of its own, so
a log pipeline can gather one call's lines without parsing messages.

Levels are set at start-up from `logging.levels` in config.yaml and at run time through
the API (`PUT /api/logging`); names may be given with or without the `hotline.` prefix.
Must not know: the engine, SIP or calls beyond the Call-ID field.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping

LEVELS = ("debug", "info", "warning", "error")
_CALL_PREFIXES = ("call %s", "callback %s", "outbound call %s")


def call_id_of(record: logging.LogRecord) -> str | None:
    """The Call-ID a record is about, if any (see the module docstring)."""
    explicit = getattr(record, "call_id", None)
    if explicit:
        return str(explicit)
    msg, args = record.msg, record.args
    if isinstance(msg, str) and msg.startswith(_CALL_PREFIXES) and isinstance(args, tuple) \
            and args:
        return str(args[0])
    return None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = call_id_of(record)
        if call_id:
            out["call_id"] = call_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def logger_name(name: str) -> str:
    """`sip` → `hotline.sip`; `hotline` and `hotline.x` stay as they are."""
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"not a logger name: {name!r}")
    return name if name == "hotline" or name.startswith("hotline.") else f"hotline.{name}"


def set_level(name: str, level: str) -> str:
    """Set a subsystem's level now; returns the full logger name. ValueError for an
    unknown level or a bad name."""
    if level.lower() not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    full = logger_name(name)
    logging.getLogger(full).setLevel(level.upper())
    return full


def levels() -> dict[str, str]:
    """The effective level of `hotline` and every `hotline.*` logger that exists."""
    names = ["hotline", *sorted(n for n in logging.root.manager.loggerDict
                                if n.startswith("hotline."))]
    return {n: logging.getLevelName(logging.getLogger(n).getEffectiveLevel()).lower()
            for n in names}


def setup_logging(level: str, fmt: str = "text", levels: Mapping[str, str] | None = None
                  ) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, lvl in (levels or {}).items():
        set_level(name, lvl)
