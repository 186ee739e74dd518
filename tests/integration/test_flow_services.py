"""Flow services on a live engine: a webhook over real HTTP (retried after a 500, its JSON
mapped into a variable that ends up in the BYE header), and the emergency-closure switch
flipped at run time with `hotline closure set`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.integration.conftest import ROOT, run_sipp, start_server, stop_server
from tests.integration.test_flow_sipp import _counts, _scenario

pytestmark = pytest.mark.integration

FLOW = """
flow: services
numbers: ["4000"]
languages: [en]
hours:
  main:
    timezone: Australia/Sydney
    monday: "00:00-24:00"
    tuesday: "00:00-24:00"
    wednesday: "00:00-24:00"
    thursday: "00:00-24:00"
    friday: "00:00-24:00"
    saturday: "00:00-24:00"
    sunday: "00:00-24:00"
prompts:
  beep: {en: {text: "(beep)", file: tones/beep.wav}}
steps:
  open_check: {type: hours, schedule: main, open: hook, closed: closed}
  hook:
    type: webhook
    url: "http://127.0.0.1:PORT/check"
    body: {caller: "{caller.number}", dialled: "{called.number}"}
    timeout: 2s
    retries: 2
    save: {status: "result.status"}
    failed: hook_failed
  done: {type: hangup, prompts: [beep], result: "{status}"}
  hook_failed: {type: hangup, result: hook_failed}
  closed: {type: hangup, prompts: [beep], result: "closed_{hours.closed_reason}"}
"""


class _Hook(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.requests.append(body)
        if len(_Hook.requests) % 2 == 1:  # every first attempt fails: the engine retries
            self.send_response(500)
            self.end_headers()
            return
        payload = json.dumps({"result": {"status": "eligible"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_webhook_retry_and_runtime_closure(tmp_path: Path) -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    _Hook.requests = []
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "services.yaml").write_text(FLOW.replace("PORT", str(http.server_address[1])))
    server = start_server(tmp_path, flows=flows, reload_check=0.2)
    try:
        res = run_sipp(["-sf", str(_scenario(tmp_path, "", "eligible")), server.target,
                        "-s", "4000", "-m", "1"], timeout=60)
        assert _counts(res.stdout) == (1, 0), res.stdout[-2000:] + server.log_text()[-2000:]
        assert len(_Hook.requests) == 2  # a 500, then the retry
        assert _Hook.requests[-1]["caller"] == "0412345678"
        assert _Hook.requests[-1]["dialled"] == "4000"
        # ops flip the emergency switch: the next call hears the closed branch
        done = subprocess.run([sys.executable, "-m", "hotline.cli", "closure", "set", "main",
                               "--config", str(server.config)], capture_output=True, text=True,
                              cwd=ROOT, timeout=30)
        assert done.returncode == 0, done.stderr
        end = time.monotonic() + 5
        while "closure of opening hours 'main': ON" not in server.log_text():
            assert time.monotonic() < end, server.log_text()[-2000:]
            time.sleep(0.05)
        res = run_sipp(["-sf", str(_scenario(tmp_path, "", "closed_emergency")), server.target,
                        "-s", "4000", "-m", "1"], timeout=60)
        assert _counts(res.stdout) == (1, 0), res.stdout[-2000:]
        assert len(_Hook.requests) == 2  # closed: no webhook
        listed = subprocess.run([sys.executable, "-m", "hotline.cli", "closure", "list",
                                 "--config", str(server.config)], capture_output=True,
                                text=True, cwd=ROOT, timeout=30)
        assert re.search(r"^main\tclosed", listed.stdout, re.M)
        subprocess.run([sys.executable, "-m", "hotline.cli", "closure", "clear", "main",
                        "--config", str(server.config)], check=True, capture_output=True,
                       cwd=ROOT, timeout=30)
        end = time.monotonic() + 5
        while "closure of opening hours 'main': OFF" not in server.log_text():
            assert time.monotonic() < end
            time.sleep(0.05)
    finally:
        http.shutdown()
        assert stop_server(server) == 0


WHOAMI = """
flow: whoami
numbers: ["5000"]
languages: [en]
prompts:
  beep: {en: {text: "(beep)", file: tones/beep.wav}}
steps:
  say: {type: hangup, prompts: [beep], result: "n{digits(caller.number)}"}
"""


@pytest.mark.parametrize(("trusted", "expected"), [(True, "n61299998888"),
                                                   (False, "n0412345678")],
                         ids=["trusted-proxy", "untrusted"])
def test_p_asserted_identity_only_from_trusted_proxies(tmp_path: Path, trusted: bool,
                                                       expected: str) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "whoami.yaml").write_text(WHOAMI)
    sip_extra = "  trusted_proxies: [127.0.0.1]\n" if trusted else ""
    server = start_server(tmp_path, flows=flows, sip_extra=sip_extra)
    try:
        scenario = _scenario(tmp_path, "", expected)
        text = scenario.read_text().replace(
            "      Max-Forwards: 70\n      Content-Type: application/sdp",
            "      Max-Forwards: 70\n      P-Asserted-Identity: \"Front Desk\" <tel:+61299998888>\n"
            "      Content-Type: application/sdp", 1)
        assert "P-Asserted-Identity" in text
        scenario.write_text(text)
        res = run_sipp(["-sf", str(scenario), server.target, "-s", "5000", "-m", "1"],
                       timeout=60)
        assert _counts(res.stdout) == (1, 0), res.stdout[-2000:] + server.log_text()[-2000:]
    finally:
        assert stop_server(server) == 0
