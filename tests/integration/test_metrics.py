"""Health probes and Prometheus metrics of a live engine, after real calls: the counts match
what happened, and no caller's number or key is in the metrics text."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, run_sipp, start_server, stop_server
from tests.integration.test_flow_sipp import _counts, _scenario

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _value(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.M)
    assert match is not None, f"{name}{labels} not in the metrics"
    return float(match.group(1))


def test_health_and_metrics_after_calls(tmp_path: Path) -> None:
    http = free_port(("tcp",))
    server = start_server(tmp_path, http_enabled="true", http_port=http)
    try:
        assert _get(http, "/healthz") == (200, "ok\n")
        assert _get(http, "/readyz") == (200, "ready\n")
        res = run_sipp(["-sf", str(_scenario(tmp_path, "1", "pressed_1")), server.target,
                        "-s", "3000", "-m", "2", "-r", "2", "-l", "2"], timeout=60)
        assert _counts(res.stdout) == (2, 0), res.stdout[-2000:]
        status, text = _get(http, "/metrics")
        assert status == 200
        assert _value(text, "hotline_flow_calls_total", '{flow="keys",result="pressed_1"}') == 2
        assert _value(text, "hotline_dtmf_digits_total", '{method="rfc4733"}') == 2
        assert _value(text, "hotline_sip_calls_answered_total") == 2
        assert _value(text, "hotline_sip_responses_total", '{code="200"}') == 2  # the INVITEs
        assert _value(text, "hotline_calls_active") == 0
        assert _value(text, "hotline_media_tick_seconds_count") > 50
        assert _value(text, "hotline_rtp_packets_total", '{what="out"}') > 50
        assert _value(text, "hotline_flows_loaded", '{flow="keys"}') == 1
        assert "0412345678" not in text
    finally:
        assert stop_server(server) == 0
