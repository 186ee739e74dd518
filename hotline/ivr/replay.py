"""`flow replay`: re-run recorded calls against another version of a flow.

Owns reading a call trace (the JSON lines the engine writes per call: a header, then the
session's trace entries) and replaying it: the caller's keys and hang-up at the times
they happened, the services' answers in the order they came, prompts ending when they
ended in the recording (after that, when the new flow's prompts would end), and — since
the keys of a sensitive entry are masked in a trace — each sensitive entry's recorded
outcome (valid, or invalid for its reason) in place of validating its keys. The result
says whether the new version takes the same path and, if not, where it first differs.

Must not know: files beyond reading a trace, the clock, SIP or audio.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.ivr import fields
from hotline.ivr import interpreter as it
from hotline.ivr.loader import Flow, PromptAsset
from hotline.ivr.simulate import MAX_CALL, estimate_duration


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    file: str
    header: dict[str, Any]
    entries: list[dict[str, Any]]

    @property
    def call_id(self) -> str:
        return str(self.header.get("call_id", self.file))

    @property
    def path(self) -> list[str]:
        return [str(e["step"]) if not e.get("scope") else f"{e['scope']}:{e['step']}"
                for e in self.entries if e.get("event") == "step"]

    @property
    def result(self) -> str:
        return str(self.header.get("result", ""))


def read_trace(path: str | Path) -> Trace:
    name = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{name}: cannot read: {exc}") from None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{name}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise TraceError(f"{name}:{number}: expected a JSON object")
        records.append(record)
    if not records or "call_id" not in records[0]:
        raise TraceError(f"{name}:1: the first line must be the call header (call_id, flow, …)")
    entries = records[1:]
    if not entries or entries[0].get("event") != "start":
        raise TraceError(f"{name}:2: the trace does not begin with the call's start")
    return Trace(name, records[0], entries)


@dataclass(frozen=True)
class Replay:
    call_id: str
    old_path: list[str]
    new_path: list[str]
    old_result: str
    new_result: str

    @property
    def same(self) -> bool:
        return self.old_path == self.new_path and self.old_result == self.new_result

    def divergence(self) -> str:
        for i, (a, b) in enumerate(zip(self.old_path, self.new_path, strict=False)):
            if a != b:
                return f"step {i + 1}: was {a}, now {b}"
        if len(self.old_path) != len(self.new_path):
            i = min(len(self.old_path), len(self.new_path))
            was = self.old_path[i] if i < len(self.old_path) else "(end)"
            now = self.new_path[i] if i < len(self.new_path) else "(end)"
            return f"step {i + 1}: was {was}, now {now}"
        return f"result: was {self.old_result}, now {self.new_result}"


def _oracle(trace: Trace) -> Callable[[str], fields.Valid | fields.Invalid]:
    # the outcomes of entries in the order they happened ("invalid" entries carry no
    # field name: they belong to the entry being collected when the oracle is asked)
    pending: deque[dict[str, Any]] = deque(
        e for e in trace.entries if e.get("event") in ("collected", "invalid"))

    def oracle(field_name: str) -> fields.Valid | fields.Invalid:
        while pending:
            entry = pending.popleft()
            if entry.get("event") == "collected":
                if entry.get("field") != field_name:
                    continue
                return fields.Valid(it.MASK * 3, it.MASK * 3, (fields.SayAs.TEXT, it.MASK * 3))
            try:
                reason = fields.InvalidReason(entry.get("reason"))
            except ValueError:
                reason = fields.InvalidReason.EMPTY
            return fields.Invalid(reason, "as recorded")
        return fields.Invalid(fields.InvalidReason.EMPTY, "nothing more was recorded")

    return oracle


def replay(flow: Flow, trace: Trace, *,
           duration_of: Callable[[PromptAsset], float] = estimate_duration) -> Replay:
    start = trace.entries[0]
    try:
        wall = dt.datetime.fromisoformat(str(start["wall"]))
    except (KeyError, ValueError):
        raise TraceError(f"{trace.file}: the start entry has no wall-clock time") from None
    facts = start.get("facts") or {}
    session = it.Session(flow, sensitive_oracle=_oracle(trace))
    caller: deque[tuple[float, str, Any]] = deque()
    results: deque[dict[str, Any]] = deque()
    played: deque[float] = deque()
    for entry in trace.entries:
        kind = entry.get("event")
        t = float(entry.get("t", 0.0))
        if kind == "key" and not entry.get("swallowed"):
            caller.append((t, "key", str(entry.get("key"))))
        elif kind == "caller_hangup":
            caller.append((t, "hangup", None))
        elif kind == "result":
            results.append(entry)
        elif kind == "played":
            played.append(t)
    now = 0.0
    play_end: tuple[float, int] | None = None
    service: tuple[float, it.ServiceResult] | None = None

    def apply(actions: Iterable[it.Action]) -> None:
        nonlocal play_end, service
        for action in actions:
            if isinstance(action, it.Play):
                if played:
                    end = max(now, played.popleft())
                else:
                    end = now + sum(
                        duration_of(i.asset) if isinstance(i, it.PromptAudio)
                        else 0.45 * len(i.names) if isinstance(i, it.Words)
                        else 0.4 + 0.065 * len(i.text) if isinstance(i, it.Recording)
                        else i.seconds
                        for i in action.items)
                play_end = (end, action.tag)
            elif isinstance(action, it.StopPlayback):
                play_end = None
            elif isinstance(action, it.ServiceRequest) and results:
                rec = results.popleft()
                service = (max(now, float(rec.get("t", now))), it.ServiceResult(
                    action.id, str(rec.get("outcome", "error")), rec.get("data") or {}))

    apply(session.step(it.Start(wall, facts), now))
    while session.finished is None and now < MAX_CALL:
        candidates = []
        if caller:
            candidates.append(caller[0][0])
        if play_end is not None:
            candidates.append(play_end[0])
        if service is not None:
            candidates.append(service[0])
        deadline = session.next_deadline()
        if deadline is not None:
            candidates.append(deadline)
        if not candidates:
            break
        now = max(now, min(candidates))
        if caller and caller[0][0] <= now:
            _t, kind, key = caller.popleft()
            if kind == "hangup":
                apply(session.step(it.CallerHangup(), now))
                break
            apply(session.step(it.Digit("0" if key == it.MASK else key), now))
        elif play_end is not None and play_end[0] <= now:
            tag = play_end[1]
            play_end = None
            apply(session.step(it.PlayDone(tag), now))
        elif service is not None and service[0] <= now:
            result = service[1]
            service = None
            apply(session.step(result, now))
        elif deadline is not None and deadline <= now:
            apply(session.step(it.Timer(), now))
    new_path = [sid if not scope else f"{scope}:{sid}" for scope, sid in session.path]
    return Replay(trace.call_id, trace.path, new_path, trace.result, session.result)
