"""The SIPp scenario, injection file and tone captures of a plan: well-formed, pressing
the journeys' keys at their times, and checking the result on the BYE."""

from __future__ import annotations

import datetime as dt
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hotline.ivr.loader import load_flow
from hotline.loadtest import journeys as jr
from hotline.loadtest import rtp
from hotline.loadtest import scenarios as sc
from hotline.loadtest.runner import prompt_seconds
from hotline.media import g711
from tests.unit.media.signals import detect, keys

ROOT = Path(__file__).resolve().parents[3]
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Australia/Sydney"))


@pytest.fixture(scope="module")
def plan() -> tuple[list[jr.Journey], list[jr.Call]]:
    flow = load_flow(ROOT / "ivr_flows" / "vaccine.yaml", audio_dir=ROOT / "audio")
    journeys = jr.journeys_from_flow(
        flow,
        services=jr.fresh_caller_services(OPEN.date(), agents=False),
        start=OPEN,
        duration_of=prompt_seconds,
        postcodes=[("2601", 1.0), ("2000", 1.0)],
    )
    order = jr.assign({"booked": 0.7, "agent": 0.2, "hangup": 0.1}, 20)
    calls = jr.plan_calls(
        journeys,
        order,
        random.Random(3),
        OPEN.date(),
        base=77,
        postcodes=[("2601", 1.0), ("2000", 1.0)],
    )
    return journeys, calls


def _scenario(
    plan: tuple[list[jr.Journey], list[jr.Call]], options: sc.Options
) -> tuple[str, ET.Element, dict[str, list[list[frozenset[int]]]]]:
    journeys, calls = plan
    layout = sc.key_layout(journeys, calls)
    text = sc.caller_scenario("vaccine", journeys, layout, options)
    return text, ET.fromstring(text.split("\n", 1)[1]), layout


def test_rfc4733_scenario_presses_keys_and_checks_the_result(plan) -> None:  # type: ignore[no-untyped-def]
    journeys, _calls = plan
    text, root, _layout = _scenario(plan, sc.Options(caller_audio="/tmp/silence.ulaw"))
    assert root.tag == "scenario" and len(text.encode()) < sc.MAX_SCENARIO_BYTES
    names = [j.name for j in journeys]
    booked = names.index("booked")
    dtmf = [e.get("play_dtmf") for e in root.iter("exec") if e.get("play_dtmf")]
    presses = sum(len(j.presses) for j in journeys)
    assert len(dtmf) == presses
    assert dtmf.count("[field2],100") == len(journeys) and "[field11],100" in dtmf
    checks = [
        e.get("regexp")
        for e in root.iter("ereg")
        if e.get("check_it") == "true" and e.get("search_in") == "msg"
    ]
    assert "X-Hotline-Result: *booked[[:space:]]" in checks
    assert "X-Hotline-Result: *no_agent[[:space:]]" in checks
    assert any(e.get("rtp_stream") == "/tmp/silence.ulaw,-1,0" for e in root.iter("exec"))
    jumps = [(n.get("test"), n.get("next")) for n in root.iter("nop") if n.get("test")]
    assert (f"j{booked}", f"j{booked}") in jumps
    assert "m=audio [media_port] RTP/AVP 0 96" in text and "telephone-event/8000" in text
    # every label a jump names exists
    labels = {e.get("id") for e in root.iter("label")}
    targets = {e.get(a) for e in root.iter() for a in ("next", "ontimeout") if e.get(a)}
    assert targets <= labels
    # the booking's fallback key: a BYE before it is the normal end, checked as such
    fallback = [e for e in root.iter("recv") if e.get("next") == f"j{booked}ok"]
    assert len(fallback) == 2 and fallback[0].get("request") == "BYE"
    assert any(
        e.get("check_it") == "true" and "booked" in (e.get("regexp") or "")
        for e in fallback[0].iter("ereg")
    )
    hangup = names.index("hangup")
    assert f"j{hangup}bye" in labels
    assert root.find("Reference").get("variables") == "failed,checked"  # type: ignore[union-attr]


def test_the_injection_file_carries_each_calls_journey_and_keys(plan) -> None:  # type: ignore[no-untyped-def]
    journeys, calls = plan
    layout = sc.key_layout(journeys, calls)
    text = sc.injection_file(journeys, calls, layout, sc.Options())
    rows = text.splitlines()
    assert rows[0] == "SEQUENTIAL" and len(rows) == len(calls) + 1
    widths = {len(r.split(";")) for r in rows[1:]}
    assert widths == {2 + max(len(j.presses) for j in journeys)}
    names = [j.name for j in journeys]
    for row, call in zip(rows[1:], calls, strict=True):
        cells = row.split(";")
        assert names[int(cells[0])] == call.journey and cells[1] == call.caller
        assert cells[2 : 2 + len(call.keys)] == list(call.keys)


def test_presses_keep_the_simulated_gaps(plan) -> None:  # type: ignore[no-untyped-def]
    journeys, _calls = plan
    booked = next(j for j in journeys if j.name == "booked")
    options = sc.Options(pace="listen")
    lengths = [len(p.keys) for p in booked.presses]
    tl = sc.timeline(booked, lengths, options)
    waits = booked.waits("listen")
    previous_last = 0.0
    previous_done = 0.0
    for step, wait in zip(tl.steps, waits, strict=True):
        assert step.wait >= 0 and step.first >= previous_done
        if wait >= 1.0:  # room enough: the gap from the last key to the next is kept
            assert step.first - previous_last == pytest.approx(wait, abs=1e-6)
        previous_last, previous_done = step.last, step.busy_until
    assert tl.expected_end == pytest.approx(previous_last + booked.tail("listen"))
    first, last, done = sc.press_timing(8, options)
    assert (first, last, done) == pytest.approx((0.6, 2.0, 2.2))  # 400 ms lead, 200 ms a key


def test_inband_scenario_plays_a_tone_capture_per_key(plan, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    journeys, calls = plan
    options = sc.Options(dtmf="inband", caller_audio="/tmp/silence.ulaw")
    text, root, layout = _scenario(plan, options)
    assert len(text.encode()) < sc.MAX_SCENARIO_BYTES
    assert "RTP/AVP 0\n" in text and "telephone-event" not in text
    played = {e.get("play_pcap_audio") for e in root.iter("exec") if e.get("play_pcap_audio")}
    captures = sc.inband_plan(journeys, layout, options).captures
    assert played == set(captures)
    pauses = [
        e.get("rtp_stream") for e in root.iter("exec") if e.get("rtp_stream") in ("pause", "resume")
    ]
    assert pauses.count("pause") == pauses.count("resume") == sum(len(j.presses) for j in journeys)
    # the injection file names the key of every position that differs between calls
    rows = sc.injection_file(journeys, calls, layout, options).splitlines()[1:]
    booked = [j.name for j in journeys].index("booked")
    call = next(c for c in calls if c.journey == "booked")
    row = rows[calls.index(call)].split(";")
    varying = [
        (k, p)
        for k, positions in enumerate(layout["booked"])
        for p, codes in enumerate(positions)
        if len(codes) > 1
    ]
    for (k, p), cell in zip(varying, row[2:], strict=False):
        assert int(cell) == sc.KEY_CODES[call.keys[k][p]]
    assert int(row[0]) == booked
    # a capture holds the key's tone, found by the engine's own detector
    name = next(n for n, (_ts, _seq, key, _first) in captures.items() if key == "7")
    ts, seq, _key, _first = captures[name]
    data = rtp.inband_captures({name: captures[name]}, 0x1234)[name]
    packets = rtp.read_pcap(data)
    assert len(packets) == rtp.KEY_FRAMES
    assert packets.seq.tolist() == list(range(seq, seq + rtp.KEY_FRAMES))
    assert packets.timestamp.tolist() == [ts + 160 * i for i in range(rtp.KEY_FRAMES)]
    payloads = _payloads(data)
    audio = g711.ulaw_decode(np.frombuffer(b"".join(payloads), dtype=np.uint8))
    assert keys(detect([audio])[0]) == "7"


def _payloads(pcap: bytes) -> list[bytes]:
    out, offset = [], 24
    while offset < len(pcap):
        length = int.from_bytes(pcap[offset + 8 : offset + 12], "little")
        frame = pcap[offset + 16 : offset + 16 + length]
        out.append(frame[14 + 20 + 8 + 12 :])
        offset += 16 + length
    return out


def test_a_scenario_too_big_for_sipp_is_refused() -> None:
    journey = jr.Journey("long", "done", (jr.Press("x", "1" * 64),), (), "done")
    layout = {"long": [[frozenset(range(12))] * 64]}
    with pytest.raises(sc.ScenarioError, match="SIPp reads at most 65536"):
        sc.caller_scenario("f", [journey], layout, sc.Options(dtmf="inband"))


def test_results_are_checked_only_when_they_are_plain_words() -> None:
    journey = jr.Journey("odd", "a|b", (jr.Press("m", "1"),), (), "a|b")
    with pytest.raises(sc.ScenarioError, match="only letters, digits"):
        sc.caller_scenario("f", [journey], {"odd": [[frozenset({1})]]}, sc.Options())


def test_parse_log_reads_the_calls_back() -> None:
    log = "\n".join(
        [
            "S|1|0|1795445689.000000|870469.000000|1-14675@127.0.0.1",
            "A|1|1795445689.000000|874745.000000",
            "E|1|1795445722.000000|377517.000000|bye|booked|X-Hotline-Result: booked",
            "S|2|2|1795445690.000000|0.000000|2-14675@127.0.0.1",
            "R|2|1795445690.000000|500000.000000|503",
            "D|1",
            "garbage line",
            "E|x|1|2|bye|a|b",
        ]
    )
    records = sc.parse_log(log)
    assert set(records) == {1, 2}
    one, two = records[1], records[2]
    assert one.journey == 0 and one.call_id == "1-14675@127.0.0.1"
    assert one.answered is not None and one.started is not None
    assert one.answered - one.started == pytest.approx(0.004276, abs=1e-6)
    assert (one.end_kind, one.seen) == ("bye", "booked")
    assert two.rejected == 503 and two.answered is None
    assert two.ended == pytest.approx(1795445690.5)


def test_the_agents_phone_answers_and_hangs_up() -> None:
    text = sc.agent_answer_scenario(4.0)
    root = ET.fromstring(text.split("\n", 1)[1])
    recvs = [e.get("request") or e.get("response") for e in root.iter("recv")]
    assert recvs == ["INVITE", "ACK", "BYE", "200"]
    bye_wait = next(e for e in root.iter("recv") if e.get("request") == "BYE")
    assert bye_wait.get("timeout") == "4000" and bye_wait.get("ontimeout") == "hangup"
    assert re.search(r"BYE \[next_url\] SIP/2.0", text)
