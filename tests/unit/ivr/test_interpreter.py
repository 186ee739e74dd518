"""The interpreter driven event by event with a fake clock: the rules callers rely on,
each pinned where the golden transcripts do not reach."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hotline.ivr import interpreter as it
from hotline.ivr.loader import Flow, load_flow_text

ROOT = Path(__file__).resolve().parents[3]
WALL = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=11)))

FLOW = """
flow: unit
languages: [en]
defaults: {first_digit_timeout: 5s, inter_digit_timeout: 3s, menu_timeout: 4s}
variables: {zero: 0}
prompts:
  hello: {en: "Hello."}
  menu: {en: "Press 1 or 2."}
  code: {en: "Enter the code."}
  sorry: {en: "Sorry."}
  bye: {en: "Bye."}
steps:
  hello: {type: play, prompts: [hello]}
  menu:
    type: menu
    prompt: menu
    barge_in: false
    keys: {1: code, 2: broken, 3: lookup}
    noinput: [sorry]
    nomatch: [sorry]
    failed: bye
  code:
    type: collect
    field: code
    input: digits
    min_length: 4
    max_length: 6
    prompt: code
    sensitive: true
    noinput: [sorry]
    invalid: [sorry]
    failed: bye
    next: done
  done: {type: hangup, result: "done"}
  broken: {type: set, values: {x: "1 // zero"}, next: done}
  lookup:
    type: webhook
    url: "http://127.0.0.1:9/x"
    timeout: 2s
    retries: 1
    save: {answer: "data.answer"}
    failed: bye
  after: {type: hangup, result: "{answer}"}
  bye: {type: hangup, prompts: [bye], result: "bye"}
"""


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow_text(FLOW, "unit.yaml", audio_dir=ROOT / "audio")


class Call:
    """A session with a clock and helpers to feed it."""

    def __init__(self, flow: Flow) -> None:
        self.session = it.Session(flow)
        self.now = 0.0
        self.actions: list[it.Action] = []
        self.feed(it.Start(WALL, {"caller.number": "0412345678"}))

    def feed(self, event: it.Event, at: float | None = None) -> list[it.Action]:
        if at is not None:
            self.now = at
        out = self.session.step(event, self.now)
        self.actions.extend(out)
        return out

    @property
    def playing(self) -> int:
        tag = self.session.playing
        assert tag is not None
        return tag

    def finish_prompt(self, at: float) -> list[it.Action]:
        return self.feed(it.PlayDone(self.playing), at)

    def keys(self, keys: str, at: float, gap: float = 0.2) -> None:
        for i, k in enumerate(keys):
            self.feed(it.Digit(k), at + i * gap)


def _to_menu(call: Call) -> None:
    call.finish_prompt(1.0)
    assert call.session.step_id == "menu"


def test_timer_before_the_deadline_does_nothing(flow: Flow) -> None:
    call = Call(flow)
    _to_menu(call)
    call.finish_prompt(3.0)
    assert call.session.next_deadline() == pytest.approx(7.0)
    assert call.feed(it.Timer(), 6.9) == []
    assert call.session.failures == 0
    out = call.feed(it.Timer(), 7.0)
    assert call.session.failures == 1
    assert [type(a) for a in out] == [it.Play]  # the noinput prompt


def test_a_stale_play_done_is_ignored(flow: Flow) -> None:
    call = Call(flow)
    old = call.playing
    _to_menu(call)
    assert call.feed(it.PlayDone(old), 2.0) == []
    assert call.session.phase is it.Phase.PROMPT


def test_barge_in_off_keeps_keys_and_the_prompt(flow: Flow) -> None:
    call = Call(flow)
    _to_menu(call)
    out = call.feed(it.Digit("1"), 1.5)
    assert out == []  # no StopPlayback: the menu prompt has barge_in: false
    assert call.session.step_id == "menu"
    call.finish_prompt(3.0)
    assert call.session.step_id == "code"  # the key was kept and used


def test_runtime_error_hangs_up_with_error_result(flow: Flow) -> None:
    call = Call(flow)
    _to_menu(call)
    call.finish_prompt(3.0)
    out = call.feed(it.Digit("2"), 3.5)
    assert out[-1] == it.Hangup("error", (("X-Hotline-Result", "error"),))
    assert call.session.finished is it.EndReason.ERROR
    assert "division" in str(call.session.variables["last.error"]).lower() or \
        "zero" in str(call.session.variables["last.error"]).lower()


def _to_code(call: Call) -> None:
    _to_menu(call)
    call.finish_prompt(3.0)
    call.feed(it.Digit("1"), 3.5)
    assert call.session.step_id == "code"


def test_first_digit_then_inter_digit_timeouts(flow: Flow) -> None:
    call = Call(flow)
    _to_code(call)
    call.finish_prompt(5.0)
    assert call.session.next_deadline() == pytest.approx(10.0)  # first digit: 5 s
    call.keys("12", 6.0)
    assert call.session.next_deadline() == pytest.approx(6.2 + 3.0)  # inter-digit: 3 s
    call.feed(it.Timer(), 9.2)
    assert call.session.failures == 1  # "12" is too short: invalid, re-prompted
    assert any(e["event"] == "invalid" and e["reason"] == "too_short"
               for e in call.session.trace)


def test_clear_key_restarts_the_entry_and_terminator_ends_it(flow: Flow) -> None:
    call = Call(flow)
    _to_code(call)
    call.finish_prompt(5.0)
    call.keys("99*1234#", 6.0)
    assert call.session.finished is it.EndReason.HANGUP_STEP
    assert call.session.variables["code"] == "1234"


def test_complete_entry_swallows_the_terminator_typed_after_it(flow: Flow) -> None:
    call = Call(flow)
    _to_code(call)
    call.finish_prompt(5.0)
    call.keys("123456", 6.0)  # max_length 6: complete without '#'
    assert call.session.finished is it.EndReason.HANGUP_STEP
    assert call.session.variables["code"] == "123456"


def test_hangup_mid_entry_masks_every_key_of_the_sensitive_entry(flow: Flow) -> None:
    call = Call(flow)
    _to_code(call)
    call.keys("8765", 4.0)  # typed during the prompt (barge-in on): 8 stops it
    call.feed(it.CallerHangup(), 6.0)
    keys = [e for e in call.session.trace if e["event"] == "key"]
    assert [e["key"] for e in keys] == ["1", "•", "•", "•", "•"]
    assert call.session.finished is it.EndReason.CALLER
    assert call.feed(it.Digit("1"), 7.0) == []  # nothing after the end


def test_type_ahead_is_bounded(flow: Flow) -> None:
    call = Call(flow)
    call.keys("1" * 80, 0.1, gap=0.01)  # during the hello prompt
    dropped = [e for e in call.session.trace if e.get("dropped")]
    # the first key stopped hello; the menu (barge_in: false) plays on, keeping keys
    assert len(dropped) == 80 - it.MAX_TYPE_AHEAD
    assert len(call.session.buffer) == it.MAX_TYPE_AHEAD


def test_webhook_retries_budget_and_result_mapping(flow: Flow) -> None:
    call = Call(flow)
    _to_menu(call)
    call.finish_prompt(3.0)
    out = call.feed(it.Digit("3"), 3.5)
    (request,) = [a for a in out if isinstance(a, it.ServiceRequest)]
    assert request.kind == "webhook" and request.args["retries"] == 1
    # 2 attempts × 2 s plus the grace: the session's own deadline
    assert call.session.next_deadline() == pytest.approx(3.5 + 4.0 + it.SERVICE_GRACE)
    assert call.feed(it.ServiceResult(request.id + 1, "ok"), 4.0) == []  # not ours
    call.feed(it.Timer(), 3.5 + 4.0 + it.SERVICE_GRACE)
    assert call.session.step_id == "bye"  # timed out: the failed branch


def test_same_events_give_the_same_actions(flow: Flow) -> None:
    def script() -> tuple[list[it.Action], list[dict[str, object]]]:
        call = Call(flow)
        _to_code(call)
        call.keys("12", 4.0)
        call.feed(it.Timer(), 20.0)
        call.finish_prompt(22.0)
        call.keys("123456", 23.0)
        return call.actions, call.session.trace

    assert script() == script()


def test_a_recording_named_at_run_time() -> None:
    flow = load_flow_text("""
flow: dyn
languages: [en]
variables: {clinic: 7, name: "Civic Clinic"}
prompts: {at: {en: "Your clinic is"}}
steps:
  say: {type: hangup, prompts: [at, {audio: "clinics/{clinic}", text: "{name}"}], result: ok}
""", "dyn.yaml")
    session = it.Session(flow)
    (play,) = [a for a in session.step(it.Start(WALL), 0.0) if isinstance(a, it.Play)]
    assert play.items[1] == it.Recording("clinics/7", "Civic Clinic")


def test_conditional_items_and_slow_references() -> None:
    flow = load_flow_text("""
flow: cond
languages: [en]
variables: {count: 2, ref: "FK37M9R"}
prompts:
  one: {en: "Press 1."}
  two: {en: "Press 2."}
  three: {en: "Press 3."}
steps:
  say:
    type: hangup
    prompts:
      - one
      - {prompt: two, if: "count >= 2"}
      - {prompt: three, if: "count >= 3"}
      - {say: reference, value: "{ref}", slow: true, if: "not empty(ref)"}
    result: ok
""", "cond.yaml")
    session = it.Session(flow)
    (play,) = [a for a in session.step(it.Start(WALL), 0.0) if isinstance(a, it.Play)]
    names = [i.asset.name for i in play.items if isinstance(i, it.PromptAudio)]
    assert names == ["one", "two"]
    (words,) = [i for i in play.items if isinstance(i, it.Words)]
    assert words.names.count("words/en/pause") == 6  # between the 7 characters
