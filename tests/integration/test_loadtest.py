"""`hotline loadtest` against a live engine: 50 SIPp callers walk the vaccine line's
journeys (70 % book, 20 % ask for a person, 10 % hang up early), each checked on the
engine's BYE; the JSON report shows no failure and the mix, the engine's own counters
agree, every booking is a different person, and the HTML report has its plots.

The flow is ivr_flows/vaccine.yaml made open every hour of every day (no holidays), as
in test_vaccine_e2e.py, so the test passes whenever it runs."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from pathlib import Path

import pytest

from hotline import loadtestcli
from tests.integration.conftest import ROOT, free_port, require, start_server, stop_server

pytestmark = pytest.mark.integration

QUEUE = """
acd:
  queues:
    - name: bookings
"""


def _flows(tmp: Path) -> Path:
    flows = tmp / "flows"
    flows.mkdir()
    text = (ROOT / "ivr_flows" / "vaccine.yaml").read_text()
    text = re.sub(
        r'(monday|tuesday|wednesday|thursday|friday|saturday|sunday): "[^"]+"',
        r'\1: "00:00-24:00"',
        text,
    )
    text = re.sub(r"\n    holidays: .*", "", text)
    (flows / "vaccine.yaml").write_text(text)
    return flows


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hotline")
    loadtestcli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["loadtest", *argv])


def test_fifty_calls_pass_with_the_expected_mix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require("sipp", "sip-tester")
    require("tshark", "tshark")
    http = free_port(("tcp",))
    server = start_server(
        tmp_path,
        flows=_flows(tmp_path),
        default_flow="vaccine",
        http_enabled="true",
        http_port=http,
        extra_yaml=QUEUE,
    )
    report_json, report_html = tmp_path / "report.json", tmp_path / "report.html"
    try:
        code = loadtestcli.run(
            _args(
                "--config",
                str(server.config),
                "--calls",
                "50",
                "--cps",
                "10",
                "--duration",
                "10",
                "--pace",
                "ahead",
                "--mix",
                "book=70,agent=20,hangup=10",
                "--seed",
                "7",
                "--max-seconds",
                "120",
                "--quiet",
                "--report-json",
                str(report_json),
                "--report-html",
                str(report_html),
            )
        )
    finally:
        assert stop_server(server) == 0
    out = capsys.readouterr()
    context = out.out + out.err[-3000:] + server.log_text()[-3000:]
    assert code == 0, context
    doc = json.loads(report_json.read_text())
    calls = doc["calls"]
    assert (calls["planned"], calls["placed"], calls["answered"]) == (50, 50, 50), context
    assert (calls["passed"], calls["failed"]) == (50, 0) and doc["failures"] == {}
    mix = {j["name"]: j for j in doc["journeys"]}
    for name, share in (("booked", 0.7), ("agent", 0.2), ("hangup", 0.1)):
        assert abs(mix[name]["placed"] / 50 - share) <= 0.04, mix[name]
        assert mix[name]["passed"] == mix[name]["placed"]
    assert mix["booked"]["seen"] == {"booked": mix["booked"]["placed"]}
    assert mix["agent"]["seen"] == {"no_agent": mix["agent"]["placed"]}
    # the engine counted the same endings
    results = doc["metrics"]["deltas"]["hotline_flow_calls_total"]
    assert results == {
        "booked": mix["booked"]["placed"],
        "no_agent": mix["agent"]["placed"],
        "caller_hangup": mix["hangup"]["placed"],
    }
    assert doc["metrics"]["deltas"]["hotline_dtmf_digits_total"]["rfc4733"] > 500
    # every booking is a different person, from a different number
    with sqlite3.connect(tmp_path / "var" / "hotline.db") as db:
        rows = list(db.execute("SELECT medicare, phone FROM bookings WHERE status='confirmed'"))
    assert len(rows) == mix["booked"]["placed"]
    assert len({m for m, _p in rows}) == len(rows) == len({p for _m, p in rows})
    # the media and the engine were watched
    media = doc["media"]
    assert media["captured"] and media["streams"] >= 50 and media["lost"] == 0, media
    assert doc["engine"]["source"] == f"/proc/{server.proc.pid}"
    assert doc["setup_ms"]["p95"] < 1000
    page = report_html.read_text()
    for plot in (
        "concurrency",
        "cps",
        "setup",
        "failures",
        "journeys",
        "jitter",
        "gaps",
        "cpu",
        "memory",
    ):
        assert f'data-plot="{plot}"' in page, plot
    assert "PASSED" in page and "verdict   PASSED" in out.out
