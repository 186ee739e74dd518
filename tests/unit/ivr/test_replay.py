"""`flow replay`: recorded calls re-run against a flow version find the calls whose path
changes — including calls through sensitive entries, whose keys the trace masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hotline.cli import main
from hotline.ivr import simulate as sim
from hotline.ivr.loader import Flow, load_flow, load_flow_text
from hotline.ivr.replay import TraceError, read_trace, replay

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "data" / "flows" / "golden"


def _trace_file(tmp: Path, flow: Flow, script: str) -> Path:
    run = sim.simulate(flow, sim.parse_script(yaml.safe_load((GOLDEN / script).read_text())))
    path = tmp / f"{script}.jsonl"
    header = {"call_id": script, "flow": flow.name, "version": flow.version,
              "result": run.result}
    with path.open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for entry in run.trace:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(GOLDEN / "flow.yaml", audio_dir=ROOT / "audio")


SCRIPTS = ["book_ok.script.yaml", "pin_webhook.script.yaml", "timeouts.script.yaml",
           "retries.script.yaml", "confirm_no.script.yaml", "chinese_minor.script.yaml"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_flow_replays_the_same_path(tmp_path: Path, flow: Flow, script: str) -> None:
    trace = read_trace(_trace_file(tmp_path, flow, script))
    result = replay(flow, trace)
    assert result.same, result.divergence()
    assert result.new_result == trace.result


def test_a_changed_flow_reports_where_calls_diverge(tmp_path: Path, flow: Flow) -> None:
    text = (GOLDEN / "flow.yaml").read_text()
    changed = load_flow_text(text.replace('{if: "age(dob, today) >= 18", next: adult}',
                                          '{if: "age(dob, today) >= 50", next: adult}'),
                             "changed.yaml", audio_dir=ROOT / "audio")
    booked = replay(changed, read_trace(_trace_file(tmp_path, flow, "book_ok.script.yaml")))
    assert not booked.same
    assert booked.old_result == "booked" and booked.new_result == "minor"
    assert "was adult, now minor" in booked.divergence()
    # a call that never reached the changed branch is unaffected
    pin = replay(changed, read_trace(_trace_file(tmp_path, flow, "pin_webhook.script.yaml")))
    assert pin.same


def test_trace_files_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"call_id": "x"}\nnot json\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:2: not JSON"):
        read_trace(bad)
    bad.write_text('{"event": "start"}\n')
    with pytest.raises(TraceError, match="call header"):
        read_trace(bad)


def test_cli_lists_changed_calls(tmp_path: Path, flow: Flow,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    traces = [str(_trace_file(tmp_path, flow, s)) for s in SCRIPTS]
    changed = tmp_path / "changed.yaml"
    changed.write_text((GOLDEN / "flow.yaml").read_text().replace(
        "      1: book\n", "      1: to_agent\n"))
    rc = main(["flow", "replay", *traces, "--flow", str(changed), "--audio",
               str(ROOT / "audio"), "--fail-on-change"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "book_ok.script.yaml: different path — step 6: was book, now to_agent" in out
    assert f"{len(SCRIPTS)} calls replayed" in out
    rc = main(["flow", "replay", *traces, "--flow", str(GOLDEN / "flow.yaml"), "--audio",
               str(ROOT / "audio"), "--fail-on-change"])
    assert rc == 0
    assert "0 would take a different path" in capsys.readouterr().out
