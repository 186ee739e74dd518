"""The report: every call judged, the JSON document's shape, the HTML page and its SVG
plots, the terminal table and the comparison with an earlier run; and the figures it
is made of (Prometheus text, RTP streams)."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hotline.loadtest import metrics as mx
from hotline.loadtest import report as rp
from hotline.loadtest import rtp
from hotline.loadtest.profiles import Ramp
from hotline.loadtest.runner import Plan, RunData, Settings, plan
from hotline.loadtest.scenarios import CallRecord

ROOT = Path(__file__).resolve().parents[3]
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Australia/Sydney"))
T0 = 1_800_000_000.0

METRICS_BEFORE = """\
# TYPE hotline_calls_active gauge
hotline_calls_active 0
# TYPE hotline_sip_responses counter
hotline_sip_responses_total{code="200"} 5
hotline_sip_responses_total{code="503"} 0
# TYPE hotline_flow_calls counter
hotline_flow_calls_total{flow="vaccine",result="booked"} 2
# TYPE hotline_media_tick_seconds histogram
hotline_media_tick_seconds_bucket{le="0.001"} 10
hotline_media_tick_seconds_bucket{le="0.002"} 10
hotline_media_tick_seconds_bucket{le="+Inf"} 10
hotline_media_tick_seconds_sum 0.005
hotline_media_tick_seconds_count 10
"""
METRICS_AFTER = """\
# TYPE hotline_calls_active gauge
hotline_calls_active 3
# TYPE hotline_sip_responses counter
hotline_sip_responses_total{code="200"} 22
hotline_sip_responses_total{code="503"} 1
# TYPE hotline_flow_calls counter
hotline_flow_calls_total{flow="vaccine",result="booked"} 13
hotline_flow_calls_total{flow="vaccine",result="no_agent"} 4
# TYPE hotline_sip_overload_calls counter
hotline_sip_overload_calls_total 1
# TYPE hotline_media_tick_seconds histogram
hotline_media_tick_seconds_bucket{le="0.001"} 60
hotline_media_tick_seconds_bucket{le="0.002"} 110
hotline_media_tick_seconds_bucket{le="+Inf"} 110
hotline_media_tick_seconds_sum 0.1
hotline_media_tick_seconds_count 110
"""


def _plan() -> Plan:
    settings = Settings(
        host="127.0.0.1",
        port=5060,
        flow_file=ROOT / "ivr_flows" / "vaccine.yaml",
        audio_dir=ROOT / "audio",
        traffic=Ramp(2, 10),
        seed=11,
    )
    return plan(settings, now=OPEN)


def _capture() -> rtp.Quality:
    # two streams: one perfect, one with a lost packet and a 100 ms gap
    rows = []
    for ssrc, port in ((1, 20000), (2, 20002)):
        for i in range(50):
            if ssrc == 2 and i == 20:
                continue
            t = T0 + 1 + 0.02 * i + (0.1 if ssrc == 2 and i > 30 else 0)
            rows.append((t, port, 7000, ssrc, 100 + i, 160 * i))
    cols = list(zip(*rows, strict=True))
    ints = [np.array(c, dtype=np.int64) for c in cols[1:6]]
    packets = rtp.Packets(np.array(cols[0]), ints[0], ints[1], ints[2], ints[3], ints[4])
    return rtp.analyse(packets)


def _data(capture: bool = True) -> RunData:
    p = _plan()
    settings = Settings(
        host="127.0.0.1",
        port=5060,
        flow_file=ROOT / "ivr_flows" / "vaccine.yaml",
        traffic=Ramp(2, 10),
        metrics_url="http://127.0.0.1:8080/metrics",
        command="hotline loadtest --cps 2 --duration 10",
    )
    used = [j.name for j in p.journeys if j.name in p.shares]
    records: dict[int, CallRecord] = {}
    for i, call in enumerate(p.calls, start=1):
        journey = next(j for j in p.journeys if j.name == call.journey)
        rec = CallRecord(
            i,
            used.index(call.journey),
            f"{i}-1@127.0.0.1",
            T0 + 0.5 * i,
            T0 + 0.5 * i + 0.004,
            T0 + 0.5 * i + 30,
        )
        rec.end_kind = "caller" if journey.caller_hangs_up else "bye"
        rec.seen = journey.result or ""
        records[i] = rec
    booked = [r for r in records.values() if used[r.journey] == "booked"]
    booked[0].seen = "no_agent"  # wrong ending
    booked[1].end_kind, booked[1].seen = "late", ""
    booked[2].answered, booked[2].rejected, booked[2].end_kind = None, 503, ""
    return RunData(
        settings=settings,
        plan=p,
        started=T0,
        ended=T0 + 45,
        stopped="the planned calls were placed",
        records=records,
        sipp_counters={"FailedCall": 3},
        sipp_errors=["1 × something odd"],
        planned_rate=[(float(t), 2.0) for t in range(10)],
        scrapes=[mx.parse(METRICS_BEFORE, T0 - 1), mx.parse(METRICS_AFTER, T0 + 44)],
        proc=[(T0 + t, 0.1 * t, 150e6 + t * 1e5) for t in range(0, 40, 2)],
        engine_pid=4242,
        metrics_note="",
        capture=_capture() if capture else None,
        capture_note="" if capture else "not captured: --no-capture",
        agents_note="",
        work_dir=Path("/tmp/x"),
    )


def test_every_call_is_judged_and_failures_have_reasons() -> None:
    doc = rp.summarize(_data())
    calls = doc["calls"]
    assert calls["placed"] == len(_plan().calls) == calls["planned"]
    assert calls["failed"] == 3 and calls["passed"] == calls["placed"] - 3
    assert doc["failures"] == {
        "ended no_agent (expected booked)": 1,
        "no BYE from the engine in time (expected booked)": 1,
        "SIP 503 Service Unavailable": 1,
    }
    booked = next(j for j in doc["journeys"] if j["name"] == "booked")
    assert booked["failed"] == 3 and booked["seen"]["no_agent"] == 1
    assert booked["seen"]["(SIP 503)"] == 1 and booked["expected_result"] == "booked"
    assert doc["verdict"]["passed"] is False
    assert doc["verdict"]["reasons"] == [f"3 of {calls['placed']} calls failed"]
    assert any("refused 1 calls for overload" in w for w in doc["verdict"]["warnings"])


def test_the_json_document_has_its_schema() -> None:
    doc = json.loads(json.dumps(rp.summarize(_data())))
    assert doc["schema"] == rp.SCHEMA
    for key in (
        "run",
        "calls",
        "journeys",
        "setup_ms",
        "failures",
        "timeline",
        "media",
        "engine",
        "metrics",
        "verdict",
        "sipp",
    ):
        assert key in doc
    tl = doc["timeline"]
    n = len(tl["t"])
    assert n > 10 and all(
        len(tl[k]) == n
        for k in ("active", "cps", "planned_cps", "failed", "setup_p50_ms", "setup_p95_ms")
    )
    assert max(tl["active"]) > 0 and sum(tl["failed"]) == 3
    assert doc["setup_ms"]["p50"] == pytest.approx(4.0, abs=0.01)
    assert doc["media"]["captured"] is True and doc["media"]["streams"] == 2
    assert doc["media"]["lost"] == 1 and doc["media"]["gaps_over_50ms"] == 1
    assert doc["engine"]["source"] == "/proc/4242"
    assert doc["engine"]["cpu_pct"]["max"] == pytest.approx(10.0)  # 0.2 s of CPU every 2 s
    assert doc["metrics"]["deltas"]["hotline_flow_calls_total"] == {"booked": 11.0, "no_agent": 4.0}
    assert doc["metrics"]["deltas"]["hotline_sip_responses_total"] == {"200": 17.0, "503": 1.0}
    assert doc["metrics"]["tick_ms"]["p50"] == pytest.approx(1.0, abs=0.05)
    assert rp.load(json.dumps(doc))["calls"] == doc["calls"]


def test_the_html_page_draws_every_plot() -> None:
    doc = rp.summarize(_data())
    page = rp.render_html(doc)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    svgs = page.count("<svg ")
    plots = {
        name
        for name in (
            "concurrency",
            "cps",
            "setup",
            "failures",
            "journeys",
            "jitter",
            "gaps",
            "cpu",
            "memory",
            "metrics",
        )
        if f'data-plot="{name}"' in page
    }
    assert plots == {
        "concurrency",
        "cps",
        "setup",
        "failures",
        "journeys",
        "jitter",
        "gaps",
        "cpu",
        "memory",
        "metrics",
    }
    assert svgs == len(plots)
    for chunk in page.split("<svg ")[1:]:  # each plot is well-formed XML
        svg = "<svg " + chunk.split("</svg>")[0] + "</svg>"
        root = ET.fromstring(svg)
        assert (
            root.find("{http://www.w3.org/2000/svg}polyline") is not None
            or root.find("{http://www.w3.org/2000/svg}rect") is not None
        )
    assert "SIP 503 Service Unavailable" in page and "FAILED" in page


def test_a_run_without_capture_says_so() -> None:
    doc = rp.summarize(_data(capture=False))
    assert doc["media"] == {"captured": False, "note": "not captured: --no-capture"}
    page = rp.render_html(doc)
    assert "not captured: --no-capture" in page and 'data-plot="jitter"' not in page
    assert "media     not captured: --no-capture" in rp.render_table(doc)


def test_the_terminal_table_sums_it_up() -> None:
    table = rp.render_table(rp.summarize(_data()))
    assert "verdict   FAILED: 3 of" in table
    assert "booked" in table and "SIP 503 Service Unavailable" in table
    assert "media     2 streams, 99 packets" in table
    assert "engine    CPU p50" in table and "from /proc/4242" in table


def test_compare_shows_what_changed() -> None:
    new = rp.summarize(_data())
    old = json.loads(json.dumps(new))
    old["calls"]["failed"] = 5
    old["setup_ms"]["p95"] = 2.0
    rows = {r["what"]: r for r in rp.compare(old, new)}
    assert rows["calls failed"]["change"] == -2 and rows["calls failed"]["better"] is True
    assert rows["set-up p95 ms"]["better"] is False and rows["set-up p95 ms"]["change"] > 0
    assert rows["calls placed"]["change"] == 0 and rows["calls placed"]["better"] is None
    new["compare"] = {"against": "old.json", "rows": list(rows.values())}
    assert "compared with old.json" in rp.render_table(new)
    assert "Compared with old.json" in rp.render_html(new)


def test_load_refuses_what_is_not_a_report() -> None:
    with pytest.raises(rp.ReportError, match="not JSON"):
        rp.load("{", "x.json")
    with pytest.raises(rp.ReportError, match="not a hotline load-test report"):
        rp.load('{"schema": "other/1"}', "x.json")


def test_prometheus_text_and_histograms() -> None:
    before, after = mx.parse(METRICS_BEFORE, 1.0), mx.parse(METRICS_AFTER, 2.0)
    assert after.get("hotline_calls_active") == 3
    assert after.get("hotline_sip_responses_total", code="503") == 1
    assert after.by_label("hotline_flow_calls_total", "result") == {"booked": 13, "no_agent": 4}
    buckets = mx.histogram_delta(before, after, "hotline_media_tick_seconds")
    assert buckets == {0.001: 50, 0.002: 100, float("inf"): 100}
    assert mx.histogram_quantile(0.5, buckets) == pytest.approx(0.001)
    assert mx.histogram_quantile(0.75, buckets) == pytest.approx(0.0015)
    assert mx.histogram_quantile(0.5, {}) is None
    with pytest.raises(mx.MetricsError):
        mx.parse("hotline_calls_active{ 3", 0.0)
    restarted = mx.parse(METRICS_BEFORE.replace(" 5\n", " 1\n"), 3.0)
    assert mx.deltas(before, restarted)["hotline_sip_responses_total"] == {"200": 1.0}


def test_rtp_streams_loss_jitter_and_gaps() -> None:
    q = _capture()
    by_ssrc = {s.ssrc: s for s in q.streams}
    assert by_ssrc[1].lost == 0 and by_ssrc[1].max_jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert by_ssrc[2].lost == 1 and by_ssrc[2].gaps_over_50ms == 1
    assert by_ssrc[2].max_gap_ms == pytest.approx(120.0, abs=0.5)
    assert by_ssrc[2].max_jitter_ms > 5.0
    assert len(q.gaps) == 1 and q.summary()["loss_pct"] == pytest.approx(100 / 100, abs=0.01)
    with pytest.raises(rtp.CaptureError, match="pcapng"):
        rtp.read_pcap(b"\x0a\x0d\x0d\x0a" + b"\0" * 40)
    with pytest.raises(rtp.CaptureError, match="shorter than its header"):
        rtp.read_pcap(b"abc")


def test_a_failed_call_is_explained_by_the_engines_trace() -> None:
    data = _data()
    p = data.plan
    booked = next(j for j in p.journeys if j.name == "booked")
    rec = next(r for r in data.records.values() if r.end_kind == "late")
    path = list(booked.path)
    at = path.index("hold")
    rec.engine_steps = tuple(
        [(s, "") for s in path[:at]]
        + [("hold", "full"), ("slot_gone", ""), ("find_times", "found"), ("choose_time", "")]
    )
    rec.engine_result = "no_agent"
    assert rp.divergence(rec, booked) == (
        "left the journey at hold (full) → slot_gone, ended no_agent"
    )
    doc = rp.summarize(data)
    assert (
        "no BYE from the engine in time (expected booked): left the journey at hold (full) "
        "→ slot_gone, ended no_agent" in doc["failures"]
    )
    rec.engine_steps = tuple((s, "") for s in path[:3])
    assert rp.divergence(rec, booked).startswith(f"the engine's call stopped at {path[2]}")
