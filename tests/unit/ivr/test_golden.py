"""Golden transcripts: the golden flow run by the simulator with each script must print
exactly the committed transcript (regenerate with UPDATE_GOLDEN=1 and review the diff).

Every step type and the caller-facing edge cases are covered by the scripts: type-ahead
across prompts (barge-in on and off), first-digit vs inter-digit timeouts, retries
exhausted, the terminator, hang-up mid-entry, confirm/no, sub-flow call and return,
services answering ok, failing and handing the call off, and a second language.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from hotline.ivr import simulate as sim
from hotline.ivr.loader import Flow, load_flow

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "data" / "flows" / "golden"
SCRIPTS = sorted(GOLDEN.glob("*.script.yaml"))


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(GOLDEN / "flow.yaml", audio_dir=ROOT / "audio",
                     display_name="tests/data/flows/golden/flow.yaml")


def run(flow: Flow, script_path: Path) -> sim.Run:
    script = sim.parse_script(yaml.safe_load(script_path.read_text()), script_path.name)
    return sim.simulate(flow, script)


@pytest.mark.parametrize("script_path", SCRIPTS, ids=lambda p: p.name.split(".")[0])
def test_transcript_matches_golden(flow: Flow, script_path: Path) -> None:
    result = run(flow, script_path)
    text = result.transcript() + f"\n== result: {result.result} ({result.end_reason})\n"
    golden = script_path.with_name(script_path.name.replace(".script.yaml", ".txt"))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden transcript {golden.name}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


EXPECTED_RESULTS = {
    "book_ok": ("booked", "flow"),
    "type_ahead": ("caller_hangup", "caller"),
    "timeouts": ("caller_hangup", "caller"),
    "retries": ("busy_2", "flow"),
    "pin_webhook": ("agent", "handed_off"),
    "confirm_no": ("caller_hangup", "caller"),
    "chinese_minor": ("minor", "flow"),
    "closed_holiday": ("closed_public_holiday", "flow"),
    "closed_night": ("closed_outside_hours", "flow"),
    "closed_emergency": ("closed_emergency", "flow"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_RESULTS))
def test_results(flow: Flow, name: str) -> None:
    result = run(flow, GOLDEN / f"{name}.script.yaml")
    assert (result.result, result.end_reason) == EXPECTED_RESULTS[name]


def test_book_ok_headers_and_service_arguments(flow: Flow) -> None:
    result = run(flow, GOLDEN / "book_ok.script.yaml")
    assert result.headers == (("X-Hotline-Result", "booked"),
                              ("X-Hotline-Reference", "HK7P2Q"))
    (hold,) = [r for r in result.requests if r.kind == "booking"]
    assert hold.name == "hold"
    assert hold.args == {"medicare": "2123456701", "dob": "1980-01-01"}
    assert hold.sensitive == frozenset({"medicare"})
    assert result.variables["booking.reference"] == "HK7P2Q"


@pytest.mark.parametrize("name", ["book_ok", "pin_webhook", "chinese_minor"])
def test_trace_never_holds_a_sensitive_value(flow: Flow, name: str) -> None:
    result = run(flow, GOLDEN / f"{name}.script.yaml")
    dumped = json.dumps(result.trace, ensure_ascii=False)
    for secret in ("2123456701", "21234567", "5927"):
        assert secret not in dumped
    # the keys typed into sensitive entries are masked one by one
    masked = [e for e in result.trace if e["event"] == "key" and e["key"] == "•"]
    assert len(masked) >= 4


def test_type_ahead_keys_skip_the_prompts_they_answer(flow: Flow) -> None:
    result = run(flow, GOLDEN / "type_ahead.script.yaml")
    heard = [line.text for line in result.lines if line.kind == "hear"]
    # welcome was cut, notice (barge_in: false) played whole, both menus were answered
    # by the keys typed during the welcome without playing their prompts
    assert heard[:2] == ["welcome: “Welcome.”", "notice: “Calls may be recorded.”"]
    assert not any(text.startswith(("language:", "main:")) for text in heard)
    assert ("", "ask_dob") not in result.path
    assert ("identify", "ask_dob") in result.path


def test_coverage_over_all_scripts(flow: Flow) -> None:
    runs = [run(flow, p) for p in SCRIPTS]
    cov = sim.coverage(flow, runs)
    missed = {sid for _scope, sid in cov.steps_missed}
    assert missed <= {"give_up"}, cov.report()
    report = cov.report()
    assert report.startswith(f"steps: {cov.steps_total - len(cov.steps_missed)}/")
