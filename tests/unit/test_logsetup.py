"""Log formats and per-subsystem levels."""

from __future__ import annotations

import json
import logging

import pytest

from hotline import logsetup


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("hotline.acd", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_lines_carry_the_call_id_of_call_lines() -> None:
    fmt = logsetup.JsonFormatter()
    line = json.loads(fmt.format(record("call %s: bridged to agent %s", "abc@host", "bob")))
    assert line["call_id"] == "abc@host"
    assert line["msg"] == "call abc@host: bridged to agent bob"
    assert line["level"] == "info" and line["logger"] == "hotline.acd"
    assert json.loads(fmt.format(record("callback %s: attempt %d", "cb-1", 2)))["call_id"] == "cb-1"
    assert json.loads(fmt.format(record("x", call_id="given")))["call_id"] == "given"
    assert "call_id" not in json.loads(fmt.format(record("agent %s: ready", "bob")))
    assert "call_id" not in json.loads(fmt.format(record("call answered")))


def test_levels_change_at_run_time_by_subsystem() -> None:
    logger = logging.getLogger("hotline.sip.testonly")
    try:
        assert logsetup.set_level("sip.testonly", "debug") == "hotline.sip.testonly"
        assert logger.isEnabledFor(logging.DEBUG)
        assert logsetup.levels()["hotline.sip.testonly"] == "debug"
        logsetup.set_level("hotline.sip.testonly", "ERROR")
        assert not logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(logging.NOTSET)
    with pytest.raises(ValueError, match="level must be one of"):
        logsetup.set_level("sip", "loud")
    with pytest.raises(ValueError, match="not a logger name"):
        logsetup.set_level("two words", "info")
