"""Property tests of the interpreter as a state machine: any sequence of caller keys,
prompt ends, timers, service answers and a hang-up, on the golden flow, never raises,
never emits an action after the call has ended, always keeps at most one deadline in
the future of the last event, and is deterministic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hotline.ivr import interpreter as it
from hotline.ivr.loader import load_flow

ROOT = Path(__file__).resolve().parents[2]
FLOW = load_flow(ROOT / "tests" / "data" / "flows" / "golden" / "flow.yaml",
                 audio_dir=ROOT / "audio")
WALL = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=11)))

moves = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.sampled_from(list("0123456789*#"))),
        st.tuples(st.just("play"), st.just("")),
        st.tuples(st.just("timer"), st.just("")),
        st.tuples(st.just("service"), st.sampled_from(["ok", "full", "error", "closed",
                                                       "bridged", "timeout"])),
        st.tuples(st.just("wait"), st.sampled_from(["0.3", "2", "6"])),
    ),
    max_size=120,
)


def run(steps: list[tuple[str, str]], hang_up: bool) -> list[object]:
    session = it.Session(FLOW)
    now = 0.0
    log: list[object] = list(session.step(it.Start(WALL, {"caller.number": "0400000000"}), now))
    pending: list[int] = []
    for kind, arg in steps:
        if kind == "wait":  # time passes; the engine fires every deadline that falls due
            until = now + float(arg)
            deadline = session.next_deadline()
            while deadline is not None and deadline <= until:
                now = max(now, deadline)
                log.extend(session.step(it.Timer(), now))
                deadline = session.next_deadline()
            now = until
            continue
        now += 0.05
        if kind == "key":
            event: it.Event = it.Digit(arg)
        elif kind == "play":
            event = it.PlayDone(session.playing if session.playing is not None else -1)
        elif kind == "timer":
            deadline = session.next_deadline()
            if deadline is not None:
                now = max(now, deadline)
            event = it.Timer()
        else:
            event = it.ServiceResult(pending[-1] if pending else 0, arg,
                                     {"reference": "HK7P2Q", "status": "ok"})
        finished_before = session.finished is not None
        actions = session.step(event, now)
        if finished_before:
            assert actions == []
        for action in actions:
            if isinstance(action, it.ServiceRequest):
                pending.append(action.id)
        deadline = session.next_deadline()
        assert deadline is None or deadline >= now
        log.extend(actions)
    if hang_up:
        log.extend(session.step(it.CallerHangup(), now + 1))
        assert session.finished is not None
        assert session.next_deadline() is None
    log.append(session.result)
    log.append(tuple(session.path))
    return log


@given(moves, st.booleans())
def test_any_event_sequence_is_handled_and_deterministic(steps: list[tuple[str, str]],
                                                         hang_up: bool) -> None:
    assert run(steps, hang_up) == run(steps, hang_up)
