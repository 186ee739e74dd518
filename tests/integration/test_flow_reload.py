"""Hot reload on a live engine: edits to ivr_flows/ while calls run.

20 SIPp calls are up on version A of a flow; the file is edited (version B) and then
broken. The watch reloads B, refuses the broken edit with FILE:LINE:COL errors and keeps
B serving; every one of the 20 calls finishes normally on version A, and a call placed
after the reload runs version B. SIGHUP reloads too.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, free_port, require, start_server, stop_server

pytestmark = pytest.mark.integration


def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _versions(log: str) -> list[str]:
    return re.findall(r"call \S+: flow listen version (\w+)", log)


def _sipp(target: str, calls: int, hold_ms: int) -> subprocess.Popen[str]:
    sipp = require("sipp", "sip-tester")
    port = free_port(("udp",))
    return subprocess.Popen(
        [sipp, "-sn", "uac", target, "-m", str(calls), "-r", str(calls), "-l", str(calls),
         "-d", str(hold_ms), "-i", "127.0.0.1", "-p", str(port), "-nostdin",
         "-timeout", "60s", "-timeout_error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _counts(out: str) -> tuple[int, int]:
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return (int(ok[-1]) if ok else -1, int(failed[-1]) if failed else -1)


def test_reload_during_20_live_calls_drops_nothing(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    flow = flows / "listen.yaml"
    shutil.copy(ROOT / "tests" / "data" / "flows" / "listen.yaml", flow)
    server = start_server(tmp_path, flows=flows, reload_check=0.2)
    try:
        loaded = re.findall(r"flow listen version (\w+) loaded", server.log_text())
        assert len(loaded) == 1
        version_a = loaded[0]
        sipp = _sipp(server.target, 20, 6000)
        assert _wait(lambda: len(_versions(server.log_text())) >= 20, 15), server.log_text()
        # edit: version B (a comment changes the bytes, so the version)
        flow.write_text(flow.read_text() + "\n# edited while 20 calls run\n")
        assert _wait(lambda: server.log_text().count("loaded from") >= 2, 10)
        version_b = re.findall(r"flow listen version (\w+) loaded", server.log_text())[-1]
        assert version_b != version_a
        # a broken edit: refused, with its place, and B keeps serving
        good = flow.read_text()
        flow.write_text(good.replace("type: menu", "type: menuu"))
        assert _wait(lambda: "keeping version" in server.log_text(), 10)
        log = server.log_text()
        assert re.search(r"listen\.yaml:\d+:\d+: .*menuu", log), log[-3000:]
        assert f"keeping version {version_b} serving" in log
        out, err = sipp.communicate(timeout=60)
        assert _counts(out) == (20, 0), out[-3000:] + err[-2000:]
        log = server.log_text()
        assert _versions(log)[:20] == [version_a] * 20
        assert len(re.findall(r"ended: remote-bye", log)) == 20
        # a new call now runs B; then repair the file and reload by SIGHUP
        res = _sipp(server.target, 1, 500).communicate(timeout=60)
        assert _counts(res[0]) == (1, 0)
        assert _versions(server.log_text())[-1] == version_b
        flow.write_text(good + "# repaired\n")
        server.proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: server.log_text().count("loaded from") >= 3, 10)
        assert server.alive()
    finally:
        assert stop_server(server) == 0
