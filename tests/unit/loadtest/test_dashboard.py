"""deploy/grafana/hotline.json: valid JSON, a Prometheus data-source variable, and every
metric its panels query is one the engine's /metrics exports (the collector of
hotline/web/http.py run against a stand-in engine that has something of everything)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hotline.acd.agents import AgentState, AgentStatus
from hotline.engine.media_loop import Histogram
from hotline.web.http import EngineCollector

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "hotline.json"
NAME = re.compile(r"\b((?:hotline|process)_[a-z0-9_]+)\b")


def _histogram() -> Histogram:
    h = Histogram((0.001, 0.01, 0.1))
    h.observe(0.002)
    return h


class _Stub(SimpleNamespace):
    """A stand-in whose unknown attributes read as 0 (a number the collector adds later)."""

    def __getattr__(self, name: str) -> float:
        if name.startswith("__"):
            raise AttributeError(name)
        return 0.0


def _engine() -> Any:
    """Every attribute the collector reads, each with at least one sample."""
    ns = _Stub
    endpoint = ns(
        counters={"responses_200": 3, "messages_in": 9, "calls_offered": 2},
        active_calls=1,
        layer=ns(retransmissions=1, absorbed=2),
        draining=False,
    )
    loaded = ns(flow=ns(name="vaccine"))
    ivr = ns(
        calls={"c1": ns(loaded=loaded)},
        results={("vaccine", "booked"): 1},
        service_results={("booking", "hold", "ok"): 1},
    )
    media = ns(
        leg_count=1,
        rtp_totals=lambda: dict.fromkeys(
            ("packets_in", "packets_out", "lost", "late", "duplicates", "malformed"), 1
        ),
        jitter_totals=lambda: dict.fromkeys(
            (
                "packets",
                "late",
                "duplicates",
                "overflows",
                "resyncs",
                "played",
                "concealed",
                "expanded",
            ),
            1,
        ),
        tick_seconds=_histogram(),
        tick_lateness=_histogram(),
        skipped_ticks=0,
    )
    agent = ns(status=AgentStatus.AVAILABLE, state=AgentState.IDLE)
    acd = ns(
        queues_view=lambda: [
            {
                "name": "bookings",
                "waiting": 1,
                "longest_wait": 3.0,
                "callbacks": 0,
                "expected_wait": 20.0,
            }
        ],
        router=ns(agents={"agent1": agent}),
        counters={"queued": 1},
    )
    return ns(
        config=ns(node_name="test"),
        endpoint=endpoint,
        ivr=ivr,
        flows=ns(flows=lambda: [loaded], rejected=0),
        dtmf_counts={"rfc4733": 4},
        media=media,
        call_jitter=_histogram(),
        acd=acd,
        gc_stats=ns(durations=[_histogram(), _histogram(), _histogram()]),
        bookings=ns(delivered=1, failed=0, pending=0),
    )


def _exported() -> set[str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(_engine()))
    text = generate_latest(registry).decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _queries(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_valid_grafana_json() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["title"] == "hotline" and doc["uid"] and doc["schemaVersion"] >= 30
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = _exported()
    queried = {m for q in _queries(json.loads(DASHBOARD.read_text())) for m in NAME.findall(q)}
    assert queried, "no metric found in the dashboard"
    missing = queried - exported
    assert not missing


def test_the_dashboard_covers_the_engines_subsystems() -> None:
    queried = {m for q in _queries(json.loads(DASHBOARD.read_text())) for m in NAME.findall(q)}
    for needed in (
        "hotline_calls_active",
        "hotline_sip_calls_offered_total",
        "hotline_sip_responses_total",
        "hotline_sip_retransmissions_total",
        "hotline_rtp_packets_total",
        "hotline_media_tick_seconds_bucket",
        "hotline_media_tick_lateness_seconds_bucket",
        "hotline_dtmf_digits_total",
        "hotline_queue_waiting",
        "hotline_queue_expected_wait_seconds",
        "hotline_agents",
        "hotline_outbox_backlog",
        "hotline_flow_calls_total",
        "hotline_flow_service_requests_total",
        "hotline_media_load",
    ):
        assert needed in queried, needed
