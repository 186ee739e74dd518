"""The flow simulator: a scripted caller, a fake clock, and a transcript.

Owns running a `Flow` offline exactly as the engine runs it — the same
`hotline.ivr.interpreter.Session`, fed the same events — with a caller who follows a
script (keys with timing, silence, hang-up), services that answer from canned replies,
and prompts that take as long as their recordings (or an estimate from their text).
It produces a transcript people read (what the caller hears, what they press, where the
call goes) and the coverage of steps and edges over many runs.

A script, as YAML or built in code::

    caller: {number: "0412345678"}    # call facts (caller.number, called.number, …)
    start: 2026-11-23T10:00:00+11:00   # the wall-clock time the call starts (local)
    services:                          # canned answers: "<kind>.<name>" or "<kind>"
      booking.hold: {outcome: ok, data: {reference: ABC123}}
      webhook: {outcome: ok, data: {eligible: true}}
    steps:
      - keys: "1"                      # pressed once the system waits for input
      - keys: "19800101"
        during_prompt: 1.0             # …or this many seconds into the next prompt
      - silence: 10s                   # do nothing for a while
      - hangup                         # hang up now
    closed: [main]                     # opening-hours schedules closed by the emergency switch

Must not know: files (durations of recordings come from an injected function), the
clock, SIP or audio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hotline.ivr import interpreter as it
from hotline.ivr.loader import Edge, Flow, PromptAsset
from hotline.ivr.model import parse_duration

KEY_GAP = 0.25  # seconds between keys of one group
SERVICE_DELAY = 0.2  # seconds a canned service takes to answer
MAX_CALL = 3600.0  # a simulated call never runs longer than this
DEFAULT_START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=11)))


class ScriptError(ValueError):
    """A script that cannot be run; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class Keys:
    keys: str
    during_prompt: float | None = None  # seconds into the next prompt; None = when asked


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class HangUp:
    pass


CallerStep = Keys | Wait | HangUp


@dataclass(frozen=True)
class ServiceReply:
    outcome: str
    data: Mapping[str, Any] = field(default_factory=dict)
    delay: float = SERVICE_DELAY


@dataclass(frozen=True)
class Script:
    steps: tuple[CallerStep, ...]
    caller: Mapping[str, it.Value] = field(default_factory=dict)
    start: dt.datetime = DEFAULT_START
    services: Mapping[str, ServiceReply] = field(default_factory=dict)
    name: str = "script"
    closed: frozenset[str] = frozenset()  # schedules under emergency closure


def parse_keys(text: str) -> Script:
    """`--keys "1,19800101#,,2"`: each comma group is pressed when the system waits for
    input; an empty group is 10 s of silence."""
    steps: list[CallerStep] = []
    for group in text.split(","):
        group = group.strip()
        if not group:
            steps.append(Wait(10.0))
            continue
        bad = [k for k in group if k not in "0123456789*#ABCD"]
        if bad:
            raise ScriptError(f"--keys: {bad[0]!r} is not a keypad key (0-9, *, #)")
        steps.append(Keys(group))
    return Script(tuple(steps), name="--keys")


def parse_script(data: Any, name: str = "script") -> Script:
    """A script from plain data (a parsed YAML document)."""
    if not isinstance(data, Mapping):
        raise ScriptError(f"{name}: expected a mapping with `steps:`, found {type(data).__name__}")
    unknown = set(data) - {"caller", "start", "services", "steps", "called", "variables",
                           "closed"}
    if unknown:
        raise ScriptError(f"{name}: unknown key {sorted(map(str, unknown))[0]!r} (expected caller, "
                          "called, variables, start, services, closed, steps)")
    closed = data.get("closed") or []
    if not isinstance(closed, list) or not all(isinstance(c, str) for c in closed):
        raise ScriptError(f"{name}: `closed` must be a list of opening-hours schedule names")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise ScriptError(f"{name}: `steps` must be a list")
    steps: list[CallerStep] = []
    for i, raw in enumerate(raw_steps):
        where = f"{name}: steps[{i}]"
        if raw == "hangup":
            steps.append(HangUp())
        elif isinstance(raw, Mapping) and "keys" in raw:
            keys = str(raw["keys"])
            if any(k not in "0123456789*#ABCD" for k in keys) or not keys:
                raise ScriptError(f"{where}: keys must be keypad keys, found {keys!r}")
            during = raw.get("during_prompt")
            steps.append(Keys(keys, None if during is None else _seconds(during, where)))
        elif isinstance(raw, Mapping) and "silence" in raw:
            steps.append(Wait(_seconds(raw["silence"], where)))
        else:
            raise ScriptError(f"{where}: expected `keys: …`, `silence: …` or `hangup`, found {raw!r}")
    caller: dict[str, it.Value] = {}
    for group, prefix in (("caller", "caller."), ("called", "called.")):
        facts = data.get(group) or {}
        if not isinstance(facts, Mapping):
            raise ScriptError(f"{name}: `{group}` must be a mapping")
        for k, v in facts.items():
            caller[prefix + str(k)] = v if v is None or isinstance(v, bool | int) else str(v)
    for k, v in (data.get("variables") or {}).items():
        caller[str(k)] = v
    start = data.get("start", DEFAULT_START)
    if isinstance(start, str):
        try:
            start = dt.datetime.fromisoformat(start)
        except ValueError:
            raise ScriptError(f"{name}: start {start!r} is not an ISO date-time") from None
    if isinstance(start, dt.date) and not isinstance(start, dt.datetime):
        start = dt.datetime.combine(start, dt.time(10, 0), DEFAULT_START.tzinfo)
    if not isinstance(start, dt.datetime):
        raise ScriptError(f"{name}: start must be a date-time")
    if start.tzinfo is None:
        start = start.replace(tzinfo=DEFAULT_START.tzinfo)
    services: dict[str, ServiceReply] = {}
    for key, reply in (data.get("services") or {}).items():
        if not isinstance(reply, Mapping) or "outcome" not in reply:
            raise ScriptError(f"{name}: services.{key} needs an `outcome`")
        services[str(key)] = ServiceReply(str(reply["outcome"]), dict(reply.get("data") or {}),
                                          _seconds(reply.get("delay", SERVICE_DELAY), name))
    return Script(tuple(steps), caller, start, services, name, frozenset(closed))


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ScriptError(f"{where}: {exc}") from None
    if not isinstance(seconds, float) or seconds < 0:
        raise ScriptError(f"{where}: expected a duration, found {value!r}")
    return seconds


def estimate_duration(asset: PromptAsset) -> float:
    """How long a prompt takes when its recording's length is not known: from its text."""
    text = asset.text or ""
    return 0.4 + 0.065 * len(text)


@dataclass
class Line:
    t: float
    kind: str  # hear, press, step, note, end
    text: str

    def format(self) -> str:
        marks = {"hear": "♪", "press": "☎", "step": "→", "note": "·", "end": "■"}
        return f"[{self.t:7.2f}] {marks.get(self.kind, ' ')} {self.text}"


@dataclass
class Run:
    """The outcome of one simulated call."""

    script: str
    lines: list[Line]
    result: str
    end_reason: str
    headers: tuple[tuple[str, str], ...]
    path: list[tuple[str, str]]
    edges: list[tuple[str, str, str, str]]
    trace: list[dict[str, Any]]
    variables: dict[str, it.Value]
    requests: list[it.ServiceRequest]

    def transcript(self) -> str:
        return "\n".join(line.format() for line in self.lines)


def _item_text(item: it.AudioItem) -> str:
    if isinstance(item, it.PromptAudio):
        return f"{item.asset.name}: “{item.asset.text or item.asset.file}”"
    if isinstance(item, it.Words):
        return item.text
    if isinstance(item, it.Recording):
        return f"{item.name}: “{item.text}”"
    return f"(silence {item.seconds:g}s)"


def simulate(
    flow: Flow,
    script: Script,
    *,
    duration_of: Callable[[PromptAsset], float] = estimate_duration,
    word_seconds: float = 0.45,
    closures: Iterable[str] = (),
    service: Callable[[it.ServiceRequest], ServiceReply | None] | None = None,
) -> Run:
    """Run one call of `flow` with the scripted caller; returns the transcript and path.
    `service`, when given, answers requests first (a real booking service in tests);
    the script's canned replies answer what it does not."""
    session = it.Session(flow, closures=frozenset(closures) | script.closed)
    lines: list[Line] = []
    requests: list[it.ServiceRequest] = []
    headers: tuple[tuple[str, str], ...] = ()
    now = 0.0
    play_end: tuple[float, int] | None = None  # (when, tag)
    pending_service: tuple[float, it.ServiceResult] | None = None
    script_steps = list(script.steps)
    waiting_until: float | None = None  # a Wait step in progress
    group: list[tuple[float, str]] = []  # keys of the group being pressed
    play_started: tuple[float, int] | None = None
    current_play: list[Line] = []
    trace_seen = 0

    def note_trace() -> None:
        nonlocal trace_seen
        for entry in session.trace[trace_seen:]:
            kind = entry["event"]
            t = now
            if kind == "step":
                lines.append(Line(t, "step", f"{entry['step']} ({entry['type']})"))
            elif kind in ("nomatch", "noinput", "invalid", "failed", "confirm_no", "clear",
                          "collected", "hours", "result", "service_timeout", "error"):
                detail = " ".join(f"{k}={v}" for k, v in entry.items()
                                  if k not in ("t", "event") and v != {})
                lines.append(Line(t, "note", f"{kind} {detail}".strip()))
        trace_seen = len(session.trace)

    def apply(actions: Sequence[it.Action]) -> None:
        nonlocal play_end, pending_service, headers, play_started
        for action in actions:
            if isinstance(action, it.Play):
                total = 0.0
                current_play.clear()
                for item in action.items:
                    line = Line(now + total, "hear", _item_text(item))
                    lines.append(line)
                    current_play.append(line)
                    if isinstance(item, it.PromptAudio):
                        total += duration_of(item.asset)
                    elif isinstance(item, it.Words):
                        total += word_seconds * len(item.names)
                    elif isinstance(item, it.Recording):
                        total += 0.4 + 0.065 * len(item.text)
                    else:
                        total += item.seconds
                play_end = (now + total, action.tag)
                play_started = (now, action.tag)
            elif isinstance(action, it.StopPlayback):
                if play_end is not None and play_end[1] == action.tag:
                    lines.append(Line(now, "note", "prompt stopped (barge-in)"))
                    play_end = (now, action.tag)
                    for line in current_play:  # items that never started were not heard
                        if line.t > now:
                            lines.remove(line)
                    current_play.clear()
            elif isinstance(action, it.ServiceRequest):
                requests.append(action)
                reply = service(action) if service is not None else None
                if reply is None:
                    reply = (script.services.get(f"{action.kind}.{action.name}")
                             or script.services.get(action.kind))
                if reply is not None:
                    pending_service = (now + reply.delay,
                                       it.ServiceResult(action.id, reply.outcome, reply.data))
                else:
                    lines.append(Line(now, "note", f"{action.kind} {action.name}: no canned "
                                      "reply in the script; it will time out"))
            elif isinstance(action, it.Hangup):
                headers = action.headers
                shown = ", ".join(f"{k}: {v}" for k, v in headers)
                lines.append(Line(now, "end", f"system hangs up ({action.result})"
                                  + (f" [{shown}]" if shown else "")))

    def feed(event: it.Event) -> None:
        actions = session.step(event, now)
        note_trace()
        apply(actions)

    feed(it.Start(script.start, dict(script.caller)))
    while session.finished is None and now < MAX_CALL:
        waiting_for_input = session.phase in (it.Phase.WAIT_KEY, it.Phase.ENTRY) and (
            session.playing is None)
        # the caller's next move
        if not group and waiting_until is None and script_steps:
            nxt = script_steps[0]
            if isinstance(nxt, HangUp):
                script_steps.pop(0)
                lines.append(Line(now, "end", "caller hangs up"))
                for line in current_play:  # what had not started yet is never heard
                    if line.t > now:
                        lines.remove(line)
                feed(it.CallerHangup())
                break
            if isinstance(nxt, Wait):
                script_steps.pop(0)
                waiting_until = now + nxt.seconds
            elif isinstance(nxt, Keys):
                if nxt.during_prompt is not None and play_started is not None and \
                        session.playing == play_started[1]:
                    script_steps.pop(0)
                    t0 = max(now, play_started[0] + nxt.during_prompt)
                    group = [(t0 + i * KEY_GAP, k) for i, k in enumerate(nxt.keys)]
                elif nxt.during_prompt is None and waiting_for_input:
                    script_steps.pop(0)
                    group = [(now + 0.5 + i * KEY_GAP, k) for i, k in enumerate(nxt.keys)]
        candidates: list[float] = []
        if group:
            candidates.append(group[0][0])
        if waiting_until is not None:
            candidates.append(waiting_until)
        if play_end is not None:
            candidates.append(play_end[0])
        if pending_service is not None:
            candidates.append(pending_service[0])
        deadline = session.next_deadline()
        if deadline is not None:
            candidates.append(deadline)
        if not candidates:
            lines.append(Line(now, "note", "the call is stuck: nothing more can happen"))
            break
        now = max(now, min(candidates))
        if group and group[0][0] <= now:
            _t, key = group.pop(0)
            lines.append(Line(now, "press", f"caller presses {key}"))
            feed(it.Digit(key))
        elif waiting_until is not None and waiting_until <= now:
            waiting_until = None
        elif play_end is not None and play_end[0] <= now:
            tag = play_end[1]
            play_end = None
            feed(it.PlayDone(tag, True))
        elif pending_service is not None and pending_service[0] <= now:
            _t, result = pending_service
            pending_service = None
            feed(result)
        elif deadline is not None and deadline <= now:
            feed(it.Timer())
    if session.finished is None:
        lines.append(Line(now, "end", "simulation stopped: the call did not end"))
    lines.sort(key=lambda line: line.t)  # stable: prompts queued ahead fall into place
    return Run(
        script=script.name,
        lines=lines,
        result=session.result,
        end_reason=session.finished.value if session.finished else "unfinished",
        headers=headers,
        path=session.path,
        edges=session.edges,
        trace=session.trace,
        variables=dict(session.variables),
        requests=requests,
    )


@dataclass(frozen=True)
class Coverage:
    steps_total: int
    steps_missed: tuple[tuple[str, str], ...]
    edges_total: int
    edges_missed: tuple[Edge, ...]

    def report(self) -> str:
        covered_steps = self.steps_total - len(self.steps_missed)
        covered_edges = self.edges_total - len(self.edges_missed)
        out = [f"steps: {covered_steps}/{self.steps_total} taken",
               f"edges: {covered_edges}/{self.edges_total} taken"]
        for scope, sid in self.steps_missed:
            out.append(f"  step never taken: {scope + ':' if scope else ''}{sid}")
        for e in self.edges_missed:
            label = f" [{e.label}]" if e.label else ""
            out.append(f"  edge never taken: {e.scope + ':' if e.scope else ''}{e.source} → "
                       f"{e.target}{label}")
        return "\n".join(out)


def coverage(flow: Flow, runs: Iterable[Run]) -> Coverage:
    steps = {(s.name, sid) for s in flow.scopes.values() for sid in s.order}
    taken_steps: set[tuple[str, str]] = set()
    taken_edges: set[tuple[str, str, str]] = set()
    for run in runs:
        taken_steps.update(run.path)
        taken_edges.update((scope, a, b) for scope, a, b, _label in run.edges)
    missed_steps = tuple(sorted(steps - taken_steps))
    missed_edges = tuple(e for e in flow.edges if (e.scope, e.source, e.target) not in taken_edges)
    return Coverage(len(steps), missed_steps, len(flow.edges), missed_edges)
