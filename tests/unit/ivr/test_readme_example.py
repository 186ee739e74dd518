"""The README's complete flow example is a flow that loads with no errors and no warnings,
and runs: the documentation cannot drift from the language."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hotline.ivr import simulate as sim
from hotline.ivr.loader import load_flow_text

ROOT = Path(__file__).resolve().parents[3]


def _example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Writing flows"):]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_readme_flow_loads_cleanly_and_runs() -> None:
    flow = load_flow_text(_example(), "README.md", audio_dir=ROOT / "audio")
    assert flow.warnings == ()
    script = sim.parse_script(yaml.safe_load("steps: [{keys: '2'}, {keys: '01011960'}, "
                                             "{keys: '1'}]"))
    run = sim.simulate(flow, sim.Script(script.steps, services={
        "queue": sim.ServiceReply("closed")}))
    assert run.result == "done"
    assert run.headers == (("X-Hotline-Result", "done"), ("X-Hotline-Path", "zh"))
