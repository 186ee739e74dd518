"""The IVR interpreter: one call's walk through a flow, as a pure state machine.

Owns the run-time meaning of every step type. A `Session` is one call on one `Flow`
version; the engine (or the simulator, or a replay) feeds it events with the time they
happened — `session.step(event, now) -> list[Action]` — and performs the actions it
returns (play, stop playback, ask a service, hang up). `session.next_deadline()` is the
one timeout the session is waiting for; when it passes, the caller sends `Timer()`.
Nothing here awaits, sleeps, reads a clock or touches a file: the same events give the
same actions, which is what makes the simulator, golden transcripts and `flow replay`
honest. (`step` mutates the session rather than returning a new state: the state is
private to the session and the effect is the same — a function of the events so far.)

Caller-facing rules this module keeps:

* Type-ahead: a key pressed at any time is kept (up to 64) and used by the next step
  that takes input; a step whose input is already typed does not play its prompt.
* Barge-in (on by default, per step): a key stops the prompt that is playing. With
  barge-in off, keys pressed during the prompt are kept, not lost.
* No overall timeout on an entry: the first-digit timeout runs until the first key, then
  the inter-digit timeout restarts at every key, so a slow typist is never cut off
  half-way; the terminator, or an entry that is complete by its type, ends it at once.
* `noinput` / `nomatch` (menus) and `noinput` / `invalid` (collects) count failures;
  their prompts escalate (1st, 2nd, … the last repeats); at `max_attempts` failures the
  call goes to `failed`.
* Sensitive fields are masked in the trace (the keys pressed, the value, the variables
  derived from it).

Must not know: SIP, RTP, files, audio formats, HTTP, databases or the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hotline.ivr import expr, fields
from hotline.ivr import model as m
from hotline.ivr.loader import MAIN, Flow, PromptAsset
from hotline.media import sayas

Value = expr.Value
MAX_TYPE_AHEAD = 64
MAX_ENTRY = 64
MAX_INSTANT_STEPS = 200  # steps in a row that neither wait nor play: a runaway flow
SERVICE_GRACE = 2.0  # seconds beyond a service's own budget before the session gives up
MASK = "•"

# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The call was answered. `variables` are the call's facts (caller.number, …);
    `wall` is the local wall-clock time of `now` (for hours, today, age rules)."""

    wall: dt.datetime
    variables: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Digit:
    key: str


@dataclass(frozen=True, slots=True)
class PlayDone:
    tag: int
    completed: bool = True


@dataclass(frozen=True, slots=True)
class Timer:
    pass


@dataclass(frozen=True, slots=True)
class ServiceResult:
    """The answer to a `ServiceRequest`: an outcome word and data (flat names)."""

    request: int
    outcome: str
    data: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallerHangup:
    pass


Event = Start | Digit | PlayDone | Timer | ServiceResult | CallerHangup

# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptAudio:
    asset: PromptAsset


@dataclass(frozen=True, slots=True)
class Words:
    """Say-as output: word recordings by name (``words/en/twenty``), and what they say."""

    names: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording named at run time (``clinics/12``), and what it says."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Silence:
    seconds: float


AudioItem = PromptAudio | Words | Recording | Silence


@dataclass(frozen=True, slots=True)
class Play:
    """Play the items in order; report `PlayDone(tag)` when done or stopped."""

    tag: int
    items: tuple[AudioItem, ...]
    barge_in: bool


@dataclass(frozen=True, slots=True)
class StopPlayback:
    tag: int


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    """Ask the engine for something that takes time; answer with `ServiceResult(id)`.

    kind: "webhook" (args: method, url, headers, body, timeout, retries),
    "booking" (name = action; args = evaluated expressions), "queue" (name = queue;
    args: priority and the attached variables), "transfer" (args: to)."""

    id: int
    kind: str
    name: str
    args: Mapping[str, Any]
    sensitive: frozenset[str] = frozenset()  # arg names holding sensitive values


@dataclass(frozen=True, slots=True)
class Hangup:
    result: str
    headers: tuple[tuple[str, str], ...] = ()


Action = Play | StopPlayback | ServiceRequest | Hangup


class EndReason(Enum):
    HANGUP_STEP = "flow"
    CALLER = "caller"
    HANDED_OFF = "handed_off"  # bridged to an agent or transferred
    ERROR = "error"


class Phase(Enum):
    IDLE = "idle"
    PLAYING = "playing"  # a play step's prompts
    PROMPT = "prompt"  # an input step's prompt
    WAIT_KEY = "wait_key"  # a menu, or a confirm, waiting for a key
    ENTRY = "entry"  # a collect taking digits
    CONFIRM = "confirm"  # a collect's read-back playing
    SERVICE = "service"
    FAREWELL = "farewell"  # a hangup step's last prompts
    DONE = "done"


class FlowRuntimeError(Exception):
    """A run-time fault of the flow (an expression that fails on this call's values)."""


def builtin_variables(wall: dt.datetime) -> dict[str, Value]:
    return {
        "today": wall.date().isoformat(),
        "time": wall.strftime("%H:%M"),
        "weekday": wall.strftime("%A").lower(),
    }


def lookup_path(data: Mapping[str, Any], path: str) -> Value:
    """`a.b.c` in nested mappings (lists by index); None when absent; scalars only."""
    node: Any = data
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, bool | int | str) or node is None:
        return node
    if isinstance(node, float):
        return int(node) if node.is_integer() else str(node)
    return None


class Session:
    """One call's run of one flow version."""

    def __init__(
        self,
        flow: Flow,
        *,
        closures: frozenset[str] | set[str] = frozenset(),
        sensitive_oracle: Callable[[str], fields.Valid | fields.Invalid] | None = None,
    ) -> None:
        self.flow = flow
        self.closures = closures  # schedules closed by ops right now (emergency switch)
        # `flow replay`: a sensitive entry's keys are masked in a trace, so a replay asks
        # this for the entry's recorded outcome instead of validating the keys
        self.sensitive_oracle = sensitive_oracle
        self.variables: dict[str, Value] = {}
        self.sensitive: set[str] = set(flow.sensitive)
        self.scope = MAIN
        self.step_id = ""
        self.stack: list[tuple[str, str, str | None]] = []  # (scope, call step, next)
        self.phase = Phase.IDLE
        # keys typed and not yet used, each with its trace entry (masked if it turns out
        # to belong to a sensitive entry)
        self.buffer: list[tuple[str, dict[str, Any]]] = []
        self.entry: list[str] = []
        self.failures = 0
        self.confirm_noes = 0
        self.pending_value: fields.Valid | None = None
        # an entry complete by its length swallows the terminator typed right after it
        self.swallow: tuple[str, float] | None = None  # (key, until)
        self.deadline: float | None = None
        self.play_tag = 0
        self.playing: int | None = None  # tag of our prompt being played
        self.play_barge_in = False
        self.request_id = 0
        self.waiting_request: int | None = None
        self.started_at = 0.0
        self.wall0: dt.datetime | None = None
        self.finished: EndReason | None = None
        self.result = ""
        self.path: list[tuple[str, str]] = []  # (scope, step) entered, in order
        self.edges: list[tuple[str, str, str, str]] = []  # (scope, from, to, label)
        self.trace: list[dict[str, Any]] = []
        self._actions: list[Action] = []
        self._now = 0.0

    # -- the public surface ---------------------------------------------------------

    def next_deadline(self) -> float | None:
        return None if self.finished is not None else self.deadline

    @property
    def current_step(self) -> tuple[str, str]:
        return self.scope, self.step_id

    def step(self, event: Event, now: float) -> list[Action]:
        """Feed one event that happened at `now`; returns the actions to perform."""
        self._now = now
        self._actions = []
        if self.finished is not None and not isinstance(event, Start):
            return []
        try:
            self._dispatch(event)
        except FlowRuntimeError as exc:
            self._record("error", message=str(exc))
            self.variables["last.error"] = str(exc)
            self._end(EndReason.ERROR, "error")
        return self._actions

    def wall_now(self) -> dt.datetime:
        assert self.wall0 is not None
        return self.wall0 + dt.timedelta(seconds=self._now - self.started_at)

    # -- dispatch ---------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Start):
            self._start(event)
        elif isinstance(event, Digit):
            self._digit(event.key)
        elif isinstance(event, PlayDone):
            self._play_done(event)
        elif isinstance(event, Timer):
            if self.deadline is not None and self.deadline <= self._now:
                self.deadline = None
                self._timeout()
        elif isinstance(event, ServiceResult):
            self._service_result(event)
        elif isinstance(event, CallerHangup):
            self._record("caller_hangup")
            if self.playing is not None:
                self.playing = None
            self._mask_leftovers()
            self.finished = EndReason.CALLER
            self.result = self.result or "caller_hangup"
            self.phase = Phase.DONE
            self.deadline = None

    def _start(self, event: Start) -> None:
        if self.wall0 is not None:
            return
        self.started_at = self._now
        self.wall0 = event.wall
        self.variables.update({k: v for k, v in self.flow.document.variables.items()})
        self.variables.update(builtin_variables(event.wall))
        self.variables["language"] = self.flow.languages[0]
        for name in ("caller.number", "caller.name", "called.number", "call.id"):
            self.variables.setdefault(name, "")
        self.variables.update(event.variables)
        facts = {k: v for k, v in event.variables.items() if k not in self.sensitive}
        self._record("start", flow=self.flow.name, version=self.flow.version,
                     wall=event.wall.isoformat(), facts=facts)
        scope = self.flow.scopes[MAIN]
        self._enter(MAIN, scope.start, "")

    # -- moving between steps -----------------------------------------------------------

    def _goto(self, target: str | None, label: str) -> None:
        if target is None:
            raise FlowRuntimeError(f"step {self.step_id!r} has nowhere to go ({label})")
        self._enter(self.scope, target, label)

    def _enter(self, scope: str, step_id: str, label: str) -> None:
        instant = 0
        while True:
            if self.step_id and scope == self.scope and label not in ("call", "return"):
                self.edges.append((scope, self.step_id, step_id, label))
            self.scope, self.step_id = scope, step_id
            self.path.append((scope, step_id))
            self.failures = 0
            self.confirm_noes = 0
            self.entry = []
            self.pending_value = None
            self.deadline = None
            step = self.flow.step(scope, step_id)
            self._record("step", step=step_id, scope=scope or None, type=step.type)
            jump = self._run(step)
            if jump is None:
                return
            scope, step_id, label = jump
            instant += 1
            if instant > MAX_INSTANT_STEPS:
                raise FlowRuntimeError(
                    f"{MAX_INSTANT_STEPS} steps in a row without waiting for anything"
                )

    def _run(self, step: Any) -> tuple[str, str, str] | None:
        """Start a step. Returns the next (scope, step, label) for steps that finish at
        once, None when the step waits for an event."""
        flow, scope, sid = self.flow, self.scope, self.step_id
        if isinstance(step, m.Play):
            barge = flow.defaults.barge_in if step.barge_in is None else step.barge_in
            if barge and self.buffer:
                return self._following(flow.next_of(scope, sid), "type-ahead")
            self.phase = Phase.PLAYING
            self._play(step.prompts, barge)
            return None
        if isinstance(step, m.Menu):
            self._menu_prompt(first=True)
            return None
        if isinstance(step, m.Collect):
            self._collect_prompt(first=True)
            return None
        if isinstance(step, m.SetVars):
            for name, source in step.values.items():
                self._set(name, self._eval(source))
            return self._following(flow.next_of(scope, sid), "")
        if isinstance(step, m.Branch):
            for case in step.cases:
                if _truthy(self._eval(case.when)):
                    return (scope, case.next, f"if {case.when}")
            return (scope, step.otherwise, "else")
        if isinstance(step, m.HoursCheck):
            schedule = flow.hours[step.schedule]
            status = schedule.status(self.wall_now(), step.schedule in self.closures)
            reason = status.reason
            self.variables["hours.closed_reason"] = None if reason is None else reason.value
            self.variables["hours.holiday"] = status.holiday_name
            self._record("hours", open=status.open,
                         reason=None if reason is None else reason.value)
            return (scope, step.open, "open") if status.open else (scope, step.closed, "closed")
        if isinstance(step, m.Webhook):
            self._webhook(step)
            return None
        if isinstance(step, m.Booking):
            args = {name: self._eval(source) for name, source in step.args.items()}
            secret = frozenset(n for n, src in step.args.items()
                               if flow.expressions[src].names & self.sensitive)
            self._request("booking", step.action, args, secret, 30.0)
            return None
        if isinstance(step, m.Queue):
            attached: dict[str, Any] = {}
            secret_names: set[str] = set()
            for name in step.attach:
                attached[name] = self.variables.get(name)
                if name in self.sensitive:
                    secret_names.add(name)
            queued: dict[str, Any] = {"priority": step.priority, "variables": attached,
                                      "language": self.variables.get("language")}
            self._request("queue", step.queue, queued, frozenset(secret_names), None)
            return None
        if isinstance(step, m.Transfer):
            to = self._render(step.to)
            self._request("transfer", "transfer", {"to": to}, frozenset(), 60.0)
            return None
        if isinstance(step, m.Goto):
            return (scope, step.to, "")
        if isinstance(step, m.CallSubflow):
            self.stack.append((scope, sid, flow.next_of(scope, sid)))
            sub = flow.scopes[step.subflow]
            return (step.subflow, sub.start, "call")
        if isinstance(step, m.Return):
            if not self.stack:
                raise FlowRuntimeError("`return` with no sub-flow to return from")
            back_scope, call_step, back_step = self.stack.pop()
            if back_step is None:
                raise FlowRuntimeError("the step that called the sub-flow has no `next`")
            self.edges.append((back_scope, call_step, back_step, "returned"))
            return (back_scope, back_step, "return")
        if isinstance(step, m.Hangup):
            if step.prompts:
                self.phase = Phase.FAREWELL
                self._play(step.prompts, False)
                return None
            self._hangup(step)
            return None
        raise FlowRuntimeError(f"unknown step type {type(step).__name__}")  # pragma: no cover

    def _following(self, target: str | None, label: str) -> tuple[str, str, str]:
        if target is None:
            raise FlowRuntimeError(f"step {self.step_id!r} has nowhere to go")
        return (self.scope, target, label)

    # -- playing ----------------------------------------------------------------------

    def _resolve(self, items: list[Any]) -> tuple[AudioItem, ...]:
        language = str(self.variables.get("language") or self.flow.languages[0])
        if language not in self.flow.languages:
            language = self.flow.languages[0]
        out: list[AudioItem] = []
        for item in items:
            if not isinstance(item, str) and item.when is not None and \
                    not _truthy(self._eval(item.when)):
                continue
            if isinstance(item, str | m.PromptRef):
                name = item if isinstance(item, str) else item.prompt
                asset = self.flow.prompts.get((name, language)) or self.flow.prompts[
                    (name, self.flow.languages[0])]
                out.append(PromptAudio(asset))
            elif isinstance(item, m.SilenceItem):
                out.append(Silence(item.silence))
            elif isinstance(item, m.AudioItem):
                name = self._render(item.audio)
                text = self._render(item.text) if item.text is not None else name
                out.append(Recording(name, text))
            else:
                value = self._render(item.value)
                if item.last is not None:
                    value = value[-item.last:]
                if MASK in value:  # a replayed sensitive value: known valid, not known
                    out.append(Words((), f"[{item.say} {value}]"))
                    continue
                options = {"group": 1} if item.slow and item.say == "reference" else None
                try:
                    names = sayas.say(sayas.SayAs(item.say), value, language, options=options)
                except sayas.SayAsError as exc:
                    raise FlowRuntimeError(f"cannot say {value!r} as {item.say}: {exc}") from exc
                secret = bool(self.flow.templates[item.value].names & self.sensitive)
                shown = _mask(value) if secret and item.last is None else value
                out.append(Words(tuple(names), f"[{item.say} {shown}]"))
        return tuple(out)

    def _play(self, items: list[Any], barge_in: bool) -> None:
        resolved = self._resolve(items)
        self.play_tag += 1
        self.playing = self.play_tag
        self.play_barge_in = barge_in
        self._actions.append(Play(self.play_tag, resolved, barge_in))
        self._record("play", tag=self.play_tag, items=[_describe(i) for i in resolved])

    def _stop(self) -> None:
        if self.playing is not None:
            self._actions.append(StopPlayback(self.playing))
            self._record("stop", tag=self.playing)
            self.playing = None

    def _play_done(self, event: PlayDone) -> None:
        if event.tag != self.playing:
            return
        self._record("played", tag=event.tag, completed=event.completed)
        self.playing = None
        if self.phase is Phase.PLAYING:
            self._goto(self.flow.next_of(self.scope, self.step_id), "")
        elif self.phase is Phase.PROMPT:
            self._prompt_finished()
        elif self.phase is Phase.CONFIRM:
            self._confirm_wait(self.flow.step(self.scope, self.step_id))
        elif self.phase is Phase.FAREWELL:
            self._hangup(self.flow.step(self.scope, self.step_id))

    # -- keys ------------------------------------------------------------------------------

    def _digit(self, key: str) -> None:
        swallow, self.swallow = self.swallow, None
        if (swallow is not None and key == swallow[0] and self._now <= swallow[1]
                and not self.buffer):
            self._record("key", key=key, swallowed=True)
            return
        entry = self._record("key", key=key)
        if len(self.buffer) < MAX_TYPE_AHEAD:
            self.buffer.append((key, entry))
        else:
            entry["dropped"] = True
        phase = self.phase
        if phase is Phase.PLAYING:
            if self.play_barge_in:
                self._stop()
                self._goto(self.flow.next_of(self.scope, self.step_id), "barge-in")
        elif phase is Phase.PROMPT:
            if self.play_barge_in:
                self._stop()
                self._prompt_finished()
        elif phase is Phase.CONFIRM:
            self._stop()
            self.phase = Phase.WAIT_KEY
            self._drain_buffer()
        elif phase in (Phase.WAIT_KEY, Phase.ENTRY):
            self._drain_buffer()

    def _take_key(self) -> str:
        key, entry = self.buffer.pop(0)
        step = self.flow.step(self.scope, self.step_id)
        if isinstance(step, m.Collect) and step.sensitive and self.phase is Phase.ENTRY:
            entry["key"] = MASK
        else:
            self.variables["last.key"] = key
        return key

    def _mask_leftovers(self) -> None:
        """Keys never used may be the start of a sensitive entry: mask them when the
        flow has any sensitive field."""
        if self.flow.sensitive:
            for _key, entry in self.buffer:
                entry["key"] = MASK

    def _clear_buffer(self) -> None:
        step = self.flow.step(self.scope, self.step_id)
        if isinstance(step, m.Collect) and step.sensitive:
            for _key, entry in self.buffer:
                entry["key"] = MASK
        self.buffer.clear()

    def _drain_buffer(self) -> None:
        """Hand buffered keys to the step waiting for them, one at a time, until it
        stops taking them (it moved on, or it is now playing a re-prompt)."""
        while self.buffer and self.finished is None:
            phase = self.phase
            if phase is Phase.WAIT_KEY:
                key = self._take_key()
                step = self.flow.step(self.scope, self.step_id)
                if isinstance(step, m.Menu):
                    self._menu_key(step, key)
                else:
                    self._confirm_key(step, key)
            elif phase is Phase.ENTRY:
                key = self._take_key()
                self._entry_key(self.flow.step(self.scope, self.step_id), key)
            else:
                return

    # -- menus ------------------------------------------------------------------------------

    def _menu_prompt(self, *, first: bool, extra: list[Any] | None = None) -> None:
        step = self.flow.step(self.scope, self.step_id)
        barge = self.flow.defaults.barge_in if step.barge_in is None else step.barge_in
        if barge and self.buffer:
            self._prompt_finished()
            return
        items = list(extra or [])
        if first or step.repeat_prompt or not items:
            items.extend(step.prompt)
        self.phase = Phase.PROMPT
        self._play(items, barge)

    def _prompt_finished(self) -> None:
        """The input step's prompt ended (or was barged into): wait for input."""
        step = self.flow.step(self.scope, self.step_id)
        if isinstance(step, m.Menu):
            self.phase = Phase.WAIT_KEY
            self.deadline = self._now + (step.timeout or self.flow.defaults.menu_timeout)
        else:
            self.phase = Phase.ENTRY
            self._arm_entry_timer(step)
        self._drain_buffer()

    def _menu_key(self, step: m.Menu, key: str) -> None:
        target = step.keys.get(key)
        if target is None:
            self._record("nomatch", key=key)
            self._menu_failure(step, step.nomatch, "nomatch")
            return
        self.deadline = None
        if isinstance(target, m.KeyAction):
            for name, source in target.set.items():
                self._set(name, self._eval(source))
            self._goto(target.next, f"key {key}")
        else:
            self._goto(target, f"key {key}")

    def _menu_failure(self, step: m.Menu, prompts: list[Any], kind: str) -> None:
        self._failure(step, prompts, kind, self._menu_prompt)

    def _failure(self, step: m.Menu | m.Collect, prompts: list[Any], kind: str,
                 reprompt: Callable[..., None]) -> None:
        """One more failed attempt at an input step: its `failed` step once attempts run
        out, else the escalating re-prompt (the nth failure plays the nth prompt list;
        the last repeats) and the step's prompt again."""
        self.failures += 1
        self._clear_buffer()
        self.deadline = None
        limit = step.max_attempts or self.flow.defaults.max_attempts
        if self.failures >= limit:
            self._record("failed", reason=kind, attempts=self.failures)
            self._goto(step.failed, "failed")
            return
        extra = list(prompts[min(self.failures, len(prompts)) - 1]) if prompts else []
        reprompt(first=False, extra=extra)

    # -- collecting -------------------------------------------------------------------------

    def _collect_prompt(self, *, first: bool, extra: list[Any] | None = None) -> None:
        step = self.flow.step(self.scope, self.step_id)
        barge = self.flow.defaults.barge_in if step.barge_in is None else step.barge_in
        self.entry = []
        if barge and self.buffer:
            self._prompt_finished()
            return
        items = list(extra or []) + list(step.prompt)
        self.phase = Phase.PROMPT
        self._play(items, barge)

    def _arm_entry_timer(self, step: m.Collect) -> None:
        d = self.flow.defaults
        if self.entry:
            self.deadline = self._now + (step.inter_digit_timeout or d.inter_digit_timeout)
        else:
            self.deadline = self._now + (step.first_digit_timeout or d.first_digit_timeout)

    def _entry_key(self, step: m.Collect, key: str) -> None:
        d = self.flow.defaults
        spec = self.flow.inputs[(self.scope, self.step_id)]
        terminator = step.terminator or d.terminator
        clear = step.clear or d.clear
        choice_like = step.input in ("yesno", "choice")
        if key == terminator and not (choice_like and not self.entry):
            self._finish_entry(step)
            return
        if key == clear and not choice_like:
            self.entry = []
            self._record("clear")
            self._arm_entry_timer(step)
            return
        self.entry.append(key)
        if fields.complete(spec, "".join(self.entry)) or len(self.entry) >= MAX_ENTRY:
            if not choice_like:
                self.swallow = (terminator, self._now + (step.inter_digit_timeout
                                                         or d.inter_digit_timeout))
            self._finish_entry(step)
            return
        self._arm_entry_timer(step)

    def _finish_entry(self, step: m.Collect) -> None:
        self.deadline = None
        typed = "".join(self.entry)
        self.entry = []
        if not typed:
            self._collect_failure(step, step.noinput, "noinput")
            return
        spec = self.flow.inputs[(self.scope, self.step_id)]
        if step.sensitive and self.sensitive_oracle is not None:
            outcome = self.sensitive_oracle(step.field)
        else:
            outcome = fields.validate(spec, typed, self.wall_now().date())
        if isinstance(outcome, fields.Invalid):
            self.variables["last.error"] = outcome.reason.value
            self._record("invalid", reason=outcome.reason.value,
                         typed=_mask(typed) if step.sensitive else typed)
            self._collect_failure(step, step.invalid, "invalid")
            return
        if step.confirm is None:
            self._commit(step, outcome)
            return
        self.pending_value = outcome
        self._set(step.field, outcome.value)  # so the read-back can say it
        if self.buffer:  # the answer is typed already: like any input step, no prompt
            self._confirm_wait(step)
            return
        self.phase = Phase.CONFIRM
        self._play(step.confirm.prompt, True)

    def _confirm_wait(self, step: m.Collect) -> None:
        assert step.confirm is not None
        self.phase = Phase.WAIT_KEY
        self.deadline = self._now + (step.confirm.timeout or self.flow.defaults.menu_timeout)
        self._drain_buffer()

    def _confirm_key(self, step: m.Collect, key: str) -> None:
        assert step.confirm is not None and self.pending_value is not None
        if key == step.confirm.yes:
            self._commit(step, self.pending_value)
        elif key == step.confirm.no:
            self._record("confirm_no")
            self.variables.pop(step.field, None)
            self.pending_value = None
            self.confirm_noes += 1
            self._clear_buffer()
            limit = step.max_attempts or self.flow.defaults.max_attempts
            if self.confirm_noes >= limit:
                self._goto(step.failed, "failed")
                return
            self._collect_prompt(first=False)
        else:
            self._record("nomatch", key=key)
            self._clear_buffer()
            self.deadline = None
            self.phase = Phase.CONFIRM
            self._play(step.confirm.prompt, True)

    def _commit(self, step: m.Collect, outcome: fields.Valid) -> None:
        self.pending_value = None
        self._set(step.field, outcome.value)
        self._record("collected", field=step.field,
                     value=_mask(str(outcome.value)) if step.sensitive else outcome.value)
        self._goto(self.flow.next_of(self.scope, self.step_id), "ok")

    def _collect_failure(self, step: m.Collect, prompts: list[Any], kind: str) -> None:
        self._failure(step, prompts, kind, self._collect_prompt)

    # -- timeouts ---------------------------------------------------------------------------

    def _timeout(self) -> None:
        step = self.flow.step(self.scope, self.step_id)
        if self.phase is Phase.WAIT_KEY and isinstance(step, m.Menu):
            self._record("noinput")
            self._menu_failure(step, step.noinput, "noinput")
        elif self.phase is Phase.WAIT_KEY and isinstance(step, m.Collect):
            self._record("noinput")  # no answer to the read-back: ask again
            self.pending_value = None
            self._collect_failure(step, step.noinput, "noinput")
        elif self.phase is Phase.ENTRY and isinstance(step, m.Collect):
            if self.entry:
                self._finish_entry(step)
            else:
                self._record("noinput")
                self._collect_failure(step, step.noinput, "noinput")
        elif self.phase is Phase.SERVICE:
            self._record("service_timeout", request=self.waiting_request)
            self.waiting_request = None
            self._service_outcome(step, "timeout", {})

    # -- services ---------------------------------------------------------------------------

    def _request(self, kind: str, name: str, args: Mapping[str, Any], secret: frozenset[str],
                 budget: float | None) -> None:
        self.request_id += 1
        self.waiting_request = self.request_id
        self.phase = Phase.SERVICE
        self.deadline = None if budget is None else self._now + budget
        self._actions.append(ServiceRequest(self.request_id, kind, name, dict(args), secret))
        shown = {k: (MASK * 3 if k in secret else v) for k, v in args.items()
                 if k != "variables"}
        self._record("request", id=self.request_id, service=kind, name=name, args=shown)

    def _webhook(self, step: m.Webhook) -> None:
        args = {
            "method": step.method,
            "url": self._render(step.url),
            "headers": {k: self._render(v) for k, v in step.headers.items()},
            "body": {k: self._render(v) for k, v in step.body.items()},
            "timeout": step.timeout,
            "retries": step.retries,
        }
        budget = step.timeout * (step.retries + 1) + SERVICE_GRACE
        secret = frozenset({"body"}) if any(
            self.flow.templates[t].names & self.sensitive for t in step.body.values()
        ) else frozenset()
        self._request("webhook", step.url, args, secret, budget)

    def _service_result(self, event: ServiceResult) -> None:
        if event.request != self.waiting_request or self.phase is not Phase.SERVICE:
            return
        self.waiting_request = None
        self.deadline = None
        self._record("result", id=event.request, outcome=event.outcome,
                     data={k: v for k, v in event.data.items()
                           if f"booking.{k}" not in self.sensitive and k not in self.sensitive})
        self._service_outcome(self.flow.step(self.scope, self.step_id), event.outcome, event.data)

    def _service_outcome(self, step: Any, outcome: str, data: Mapping[str, Value]) -> None:
        self.variables["last.outcome"] = outcome
        if isinstance(step, m.Webhook):
            if outcome == "ok":
                for name, source in step.save.items():
                    self._set(name, lookup_path(data, source))
                self._goto(self.flow.next_of(self.scope, self.step_id), "ok")
            else:
                self._goto(step.failed, "failed")
        elif isinstance(step, m.Booking):
            for key, value in data.items():
                self._set(f"booking.{key}", value)
            target = step.outcomes.get(outcome)
            if target is not None:
                self._goto(target, outcome)
            else:
                self._goto(step.failed, "failed")
        elif isinstance(step, m.Queue):
            self.variables["queue.outcome"] = outcome
            if outcome in ("bridged", "answered"):
                self._end(EndReason.HANDED_OFF, "agent")
            else:
                self._goto(step.next, "returned")
        elif isinstance(step, m.Transfer):
            self.variables["transfer.outcome"] = outcome
            if outcome == "ok":
                self._end(EndReason.HANDED_OFF, "transferred")
            else:
                self._goto(step.failed, "failed")

    # -- the end ------------------------------------------------------------------------------

    def _hangup(self, step: m.Hangup) -> None:
        headers: list[tuple[str, str]] = []
        result = "completed"
        if step.result is not None:
            result = self._render(step.result)
            headers.append(("X-Hotline-Result", result))
        for name, template in step.headers.items():
            headers.append((name, self._render(template)))
        self._end(EndReason.HANGUP_STEP, result, tuple(headers))

    def _end(self, reason: EndReason, result: str,
             headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._stop()
        self.finished = reason
        self.result = result
        self.phase = Phase.DONE
        self.deadline = None
        if reason in (EndReason.HANGUP_STEP, EndReason.ERROR):
            if reason is EndReason.ERROR and not headers:
                headers = (("X-Hotline-Result", "error"),)
            self._actions.append(Hangup(result, headers))
        self._mask_leftovers()
        self._record("end", reason=reason.value, result=result)

    # -- values -------------------------------------------------------------------------------

    def _set(self, name: str, value: Value) -> None:
        self.variables[name] = value
        self._record("set", name=name, value=MASK * 3 if name in self.sensitive else value)

    def _eval(self, source: str) -> Value:
        compiled = self.flow.expressions[source]
        try:
            value = compiled.evaluate(self.variables)
        except expr.EvalError as exc:
            raise FlowRuntimeError(f"{source}: {exc}") from exc
        return value

    def _render(self, source: str) -> str:
        try:
            return self.flow.templates[source].render(self.variables)
        except expr.EvalError as exc:
            raise FlowRuntimeError(f"{source}: {exc}") from exc

    def _record(self, kind: str, **data: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"t": round(self._now - self.started_at, 3), "event": kind}
        entry.update({k: v for k, v in data.items() if v is not None})
        self.trace.append(entry)
        return entry


def _truthy(value: Value) -> bool:
    return value is not None and value is not False and value != "" and value != 0


def _mask(value: str) -> str:
    """Long values keep their last three characters (enough to tell entries apart in a
    trace); short ones — a PIN — are masked whole."""
    return MASK * (len(value) - 3) + value[-3:] if len(value) >= 8 else MASK * len(value)


def _describe(item: AudioItem) -> str:
    if isinstance(item, PromptAudio):
        return item.asset.name
    if isinstance(item, Words):
        return item.text
    if isinstance(item, Recording):
        return f"[{item.name}]"
    return f"[silence {item.seconds:g}s]"
