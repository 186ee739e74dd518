"""Caller journeys derived from a flow: the key presses that take a call to each ending,
with timing, checked by running the flow in the simulator.

Owns: exploring a `Flow` the way a caller with valid answers can walk it — every menu
key, the `yes` of every read-back, a valid value for every entry — against a model of
what the services will answer (`Services`: a caller the booking service has never
seen books as a new person; queues have no agent unless load-test agents answer), and
keeping, per ending, the shortest walk as a `Journey`. A journey is named by where it
ends — the `X-Hotline-Result` its hang-up step sets (`booked`, `no_agent`, …), `agent`
when it goes through a queue — plus `hangup`, a caller who hangs up early. Each press
carries its timing twice, both from `hotline.ivr.simulate` with the prompts' real
lengths: `listen` (the caller waits for the prompt to end) and `ahead` (a practised
caller presses a second into it); both walks must end as expected or the journey is
refused. Menu keys that lead to the same ending along the same steps with the same
timing (the clinic, the time) become per-call choices, so bookings spread over clinics
and times. Also owned: the per-call values (a date of birth, a Medicare number with its
check digit, a postcode that has clinics, caller numbers) — different for every call so
no two calls are the same person — the weighted mix (`book=70,agent=20,hangup=10`), and
the booking capacity of sample clinic data, so a run never plans more bookings than exist.

Must not know: SIP, SIPp, processes, files or the clock (`start`, `today`, prompt
lengths and the random generator come in as arguments).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from hotline.booking.geo import PostcodeTable, nearest
from hotline.booking.model import Clinic, generate_slots, holidays_for
from hotline.ivr import fields
from hotline.ivr import interpreter as it
from hotline.ivr import model as m
from hotline.ivr import simulate as sim
from hotline.ivr.loader import Flow, PromptAsset

HANGUP: Final = "hangup"
AGENT: Final = "agent"
AHEAD_SECONDS: Final = 1.0  # a practised caller presses this far into the prompt
HANGUP_AFTER: Final = 3.0  # the early hang-up: seconds after the first press
TIMING_TOLERANCE: Final = 1.0  # seconds a per-call choice may shift a press
TAKEN_RETRIES: Final = 2  # a booking caller chooses again this often when a time is taken
MAX_PRESSES: Final = 40
MAX_WALKS: Final = 20_000
ADULT_AGES: Final = (18, 80)
DEFAULT_MIX: Final = "book=70,agent=20,hangup=10"
AGENT_RESULT: Final = "ended_by_agent"  # the BYE an answered queue call ends with


class JourneyError(ValueError):
    """A flow, mix or data problem that stops a load test; the message says what to do."""


# -- the services' answers ----------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """What the engine's services answer a load-test caller, by `kind.name` or `kind`."""

    replies: Mapping[str, sim.ServiceReply]

    def reply(self, kind: str, name: str) -> sim.ServiceReply | None:
        return self.replies.get(f"{kind}.{name}") or self.replies.get(kind)


def fresh_caller_services(today: dt.date, *, agents: bool) -> Services:
    """A caller the booking service has never seen (new number, new Medicare number, an
    adult's date of birth, a postcode with clinics): not found by number or reference,
    eligible for a first dose, offered three clinics and four times, held and booked.
    Queues answer `bridged` when load-test agents take calls, else `no_agents`;
    transfers are not predictable (no journey goes through one)."""
    day = (today + dt.timedelta(days=1)).isoformat()
    clinics: dict[str, Any] = {
        "locality": "Canberra",
        "clinic_count": 3,
        "clinic_offer": "c1|c2|c3",
    }
    for n in (1, 2, 3):
        clinics.update(
            {
                f"clinic{n}_id": f"c{n}",
                f"clinic{n}_name": f"Clinic {n}",
                f"clinic{n}_km": n,
                f"clinic{n}_date": day,
                f"clinic{n}_time": "09:00",
            }
        )
    slots: dict[str, Any] = {
        "clinic_id": "c1",
        "clinic_name": "Clinic 1",
        "slot_count": 4,
        "slot_offer": "s1|s2|s3|s4",
        "more": True,
    }
    for n in (1, 2, 3, 4):
        slots.update(
            {
                f"slot{n}_id": f"s{n}",
                f"slot{n}_date": day,
                f"slot{n}_time": f"09:{15 * (n - 1):02d}",
                f"slot{n}_weekday": "monday",
            }
        )
    summary = {
        "booking_id": 1,
        "clinic_id": "c1",
        "clinic_name": "Clinic 1",
        "date": day,
        "time": "09:00",
        "vaccine": "covid",
        "vaccine_name": "COVID-19",
        "dose": 1,
    }
    reply = sim.ServiceReply
    return Services(
        {
            "booking.find_caller": reply("not_found", {"count": 0}),
            "booking.find_reference": reply("not_found", {}),
            "booking.eligibility": reply(
                "eligible",
                {
                    "vaccine": "covid",
                    "vaccine_name": "COVID-19",
                    "dose": 1,
                    "age": 40,
                    "earliest": day,
                },
            ),
            "booking.clinics": reply("found", clinics),
            "booking.slots": reply("found", slots),
            "booking.hold": reply(
                "ok", {**summary, "status": "held", "hold_id": 7, "hold_expires": "10:10"}
            ),
            "booking.confirm": reply(
                "ok", {**summary, "status": "confirmed", "reference": "FK37M9R"}
            ),
            "booking.cancel": reply("not_found", {}),
            "booking.reschedule": reply("not_found", {}),
            "queue": reply("bridged" if agents else "no_agents", {}),
            "webhook": reply("ok", {}),
        }
    )


# -- journeys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """An entry whose value differs on every call (typed at a `collect` step)."""

    step: str
    variable: str
    spec: fields.FieldSpec
    terminator: str  # pressed after the value when its length does not end the entry
    sensitive: bool


@dataclass(frozen=True, slots=True)
class Press:
    """One group of keys: a menu key, a read-back's yes, or an entry.

    `listen` / `ahead`: seconds from the previous press's last key (the answer, for the
    first) to this press's first key, for a caller who waits for the prompt to end and
    for one who presses into it."""

    step: str
    keys: str  # the keys of the checked walk (for an entry: a sample value)
    field: Field | None = None
    choices: tuple[str, ...] = ()  # menu keys that give the same journey; empty: `keys`
    listen: float = 0.0
    ahead: float = 0.0
    fallback: bool = False  # only used when the flow took a detour; else ignored by it

    @property
    def options(self) -> tuple[str, ...]:
        return self.choices or (self.keys,)


Pace = Literal["listen", "ahead"]


@dataclass(frozen=True)
class Journey:
    """A walk through the flow and the ending the engine's BYE must show.

    `result`: the `X-Hotline-Result` expected on the engine's BYE; None when the caller
    hangs up (`hangup_after` seconds after the last press) or when the hang-up step sets
    no result (then any BYE passes). `tail_*`: seconds from the last key to the engine's
    BYE, as simulated."""

    name: str
    result: str | None
    presses: tuple[Press, ...]
    path: tuple[str, ...]
    ending: str  # the simulator's result word (booked, no_agent, agent, caller_hangup)
    books: bool = False
    queues: bool = False
    hangup_after: float | None = None
    tail_listen: float = 0.0
    tail_ahead: float = 0.0
    ahead_ok: bool = True  # typing ahead ends the same way (checked)

    @property
    def caller_hangs_up(self) -> bool:
        return self.hangup_after is not None

    def waits(self, pace: Pace) -> tuple[float, ...]:
        use_ahead = pace == "ahead" and self.ahead_ok
        return tuple(p.ahead if use_ahead else p.listen for p in self.presses)

    def tail(self, pace: Pace) -> float:
        return self.tail_ahead if pace == "ahead" and self.ahead_ok else self.tail_listen

    def seconds(self, pace: Pace, key_seconds: float = sim.KEY_GAP) -> float:
        """The simulated call length at `pace` (answer to BYE)."""
        keys = sum(max(0, len(p.keys) - 1) * key_seconds for p in self.presses)
        end = self.hangup_after if self.hangup_after is not None else self.tail(pace)
        return sum(self.waits(pace)) + keys + end

    def describe(self) -> str:
        parts = []
        for p in self.presses:
            what = f"<{p.field.variable}>" if p.field is not None else "|".join(p.options)
            parts.append(f"[{p.step}:{what}]" if p.fallback else f"{p.step}:{what}")
        tail = f" then hang up after {self.hangup_after:g}s" if self.hangup_after else ""
        return " ".join(parts) + tail


@dataclass(frozen=True, slots=True)
class _Where:
    scope: str
    step: str
    kind: Literal["menu", "confirm", "entry"]

    @property
    def label(self) -> str:
        base = f"{self.scope}:{self.step}" if self.scope else self.step
        return f"{base} (confirm)" if self.kind == "confirm" else base


@dataclass(frozen=True, slots=True)
class _Option:
    where: _Where
    keys: str
    field: Field | None = None


@dataclass
class _Drive:
    status: Literal["finished", "choice", "unpredictable", "stuck"]
    session: it.Session
    where: _Where | None = None
    detail: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # kind, name, outcome
    headers: tuple[tuple[str, str], ...] = ()


def _drive(
    flow: Flow,
    presses: Sequence[str],
    services: Services,
    start: dt.datetime,
    caller: Mapping[str, it.Value],
    closures: frozenset[str],
) -> _Drive:
    """Run the flow feeding `presses` whenever it waits for input; stop at the end, at
    the next input wanted, or at a service whose answer cannot be predicted."""
    session = it.Session(flow, closures=closures)
    drive = _Drive("stuck", session)
    events: deque[it.Event] = deque()
    now = 0.0

    def handle(actions: Sequence[it.Action]) -> None:
        for action in actions:
            if isinstance(action, it.Play):
                events.append(it.PlayDone(action.tag))
            elif isinstance(action, it.StopPlayback):
                for ev in list(events):
                    if isinstance(ev, it.PlayDone) and ev.tag == action.tag:
                        events.remove(ev)
            elif isinstance(action, it.ServiceRequest):
                reply = services.reply(action.kind, action.name)
                if reply is None:
                    drive.status = "unpredictable"
                    drive.detail = f"{action.kind} {action.name}"
                    continue
                drive.requests.append((action.kind, action.name, reply.outcome))
                events.append(it.ServiceResult(action.id, reply.outcome, dict(reply.data)))
            elif isinstance(action, it.Hangup):
                drive.headers = action.headers

    handle(session.step(it.Start(start, dict(caller)), now))
    pending = list(presses)
    for _ in range(100_000):
        if drive.status == "unpredictable":
            return drive
        if session.finished is not None:
            drive.status = "finished"
            return drive
        if events:
            now += 0.01
            handle(session.step(events.popleft(), now))
            continue
        if session.phase in (it.Phase.WAIT_KEY, it.Phase.ENTRY) and session.playing is None:
            if pending:
                for key in pending.pop(0):
                    now += 0.01
                    handle(session.step(it.Digit(key), now))
                continue
            step = flow.step(session.scope, session.step_id)
            kind: Literal["menu", "confirm", "entry"] = (
                "menu"
                if isinstance(step, m.Menu)
                else "confirm"
                if session.phase is it.Phase.WAIT_KEY
                else "entry"
            )
            drive.status = "choice"
            drive.where = _Where(session.scope, session.step_id, kind)
            return drive
        deadline = session.next_deadline()
        if deadline is None:
            drive.detail = f"stuck at {session.step_id} ({session.phase.value})"
            return drive
        now = max(now, deadline)
        handle(session.step(it.Timer(), now))
    drive.detail = "the flow does not settle"
    return drive


def _options(flow: Flow, where: _Where, sample: Callable[[Field], str]) -> list[_Option]:
    step = flow.step(where.scope, where.step)
    if where.kind == "menu":
        return [_Option(where, key) for key in step.keys]
    assert isinstance(step, m.Collect)
    if where.kind == "confirm":
        assert step.confirm is not None
        return [_Option(where, step.confirm.yes)]
    spec = flow.inputs[(where.scope, where.step)]
    if isinstance(spec, fields.YesNoField):
        return [_Option(where, spec.yes), _Option(where, spec.no)]
    if isinstance(spec, fields.ChoiceField):
        return [_Option(where, key) for key in spec.choices]
    terminator = step.terminator or flow.defaults.terminator
    f = Field(where.step, step.field, spec, terminator, step.sensitive)
    return [_Option(where, sample(f), f)]


@dataclass(frozen=True)
class _Walk:
    options: tuple[_Option, ...]
    name: str
    ending: str
    result: str | None
    path: tuple[str, ...]
    books: bool
    queues: bool

    @property
    def sort_key(self) -> tuple[int, int, str]:
        keys = [o.keys for o in self.options]
        return (len(keys), sum(map(len, keys)), ",".join(keys))


def _walks(
    flow: Flow,
    services: Services,
    start: dt.datetime,
    caller: Mapping[str, it.Value],
    closures: frozenset[str],
    sample: Callable[[Field], str],
) -> list[_Walk]:
    """Every walk with valid answers that ends predictably, without entering an input
    step twice (a loop back to a menu adds nothing)."""
    out: list[_Walk] = []
    stack: list[tuple[_Option, ...]] = [()]
    budget = MAX_WALKS
    while stack and budget > 0:
        budget -= 1
        options = stack.pop()
        drive = _drive(flow, [o.keys for o in options], services, start, caller, closures)
        if drive.status == "finished":
            session = drive.session
            queued = any(kind == "queue" for kind, _n, _o in drive.requests)
            books = any(
                kind == "booking" and name == "confirm" and outcome == "ok"
                for kind, name, outcome in drive.requests
            )
            reason = session.finished
            if reason is it.EndReason.ERROR:
                continue
            if reason is it.EndReason.HANDED_OFF:
                if not queued:
                    continue  # a transfer: where it ends is not the engine's to say
                result: str | None = AGENT_RESULT
            else:
                result = dict(drive.headers).get("X-Hotline-Result")
            name = AGENT if queued else session.result
            path = tuple(f"{s}:{sid}" if s else sid for s, sid in session.path)
            out.append(_Walk(options, name, session.result, result, path, books, queued))
        elif drive.status == "choice" and drive.where is not None:
            if len(options) >= MAX_PRESSES or any(o.where == drive.where for o in options):
                continue
            for option in reversed(_options(flow, drive.where, sample)):
                stack.append((*options, option))
    return out


def _choices(walk: _Walk, walks: Sequence[_Walk]) -> list[tuple[str, ...]]:
    """Per press, the keys that give the same ending along the same steps."""
    same = [
        w
        for w in walks
        if w.name == walk.name
        and w.path == walk.path
        and len(w.options) == len(walk.options)
        and all(a.where == b.where for a, b in zip(w.options, walk.options, strict=True))
    ]
    out: list[tuple[str, ...]] = []
    for i, option in enumerate(walk.options):
        if option.field is not None:
            out.append(())
            continue
        keys = {
            w.options[i].keys
            for w in same
            if all(
                w.options[j].keys == walk.options[j].keys
                for j in range(len(walk.options))
                if j != i
            )
        }
        out.append(tuple(sorted(keys)) if len(keys) > 1 else ())
    return out


# -- timing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timed:
    waits: tuple[float, ...]
    tail: float
    run: sim.Run


@dataclass(frozen=True)
class _Simulator:
    """Timed runs of the flow in `hotline.ivr.simulate`, for one kind of caller."""

    flow: Flow
    services: Services
    start: dt.datetime
    caller: Mapping[str, it.Value]
    closures: frozenset[str]
    duration_of: Callable[[PromptAsset], float]

    def run(
        self,
        keys: Sequence[str],
        *,
        ahead: bool = False,
        hangup_after: float | None = None,
        service: Callable[[it.ServiceRequest], sim.ServiceReply | None] | None = None,
    ) -> _Timed:
        """Press each group when asked (`ahead`: a second into the prompt), optionally
        hang up `hangup_after` seconds after the last; the waits between groups and the
        time from the last key to the end. `service` answers before the canned replies."""
        steps: list[sim.CallerStep] = [
            sim.Keys(k, AHEAD_SECONDS if ahead and i else None) for i, k in enumerate(keys)
        ]
        if hangup_after is not None:
            steps += [sim.Wait(hangup_after), sim.HangUp()]
        script = sim.Script(
            tuple(steps),
            dict(self.caller),
            self.start,
            dict(self.services.replies),
            "journey",
            self.closures,
        )
        run = sim.simulate(self.flow, script, duration_of=self.duration_of, service=service)
        presses = [line.t for line in run.lines if line.kind == "press"]
        waits: list[float] = []
        last = 0.0
        at = 0
        for group in keys:
            if at + len(group) > len(presses):
                break
            waits.append(round(presses[at] - last, 3))
            last = presses[at + len(group) - 1]
            at += len(group)
        ends = [line.t for line in run.lines if line.kind == "end"]
        tail = round((ends[-1] if ends else last) - last, 3)
        return _Timed(tuple(waits), tail, run)


def _sample_value(f: Field, today: dt.date, postcodes: Sequence[tuple[str, float]]) -> str:
    return field_keys(f, random.Random(7), today, serial=0, base=0, postcodes=postcodes)


def journeys_from_flow(
    flow: Flow,
    *,
    services: Services,
    start: dt.datetime,
    duration_of: Callable[[PromptAsset], float] = sim.estimate_duration,
    closures: Iterable[str] = (),
    caller_number: str = "0400000000",
    postcodes: Sequence[tuple[str, float]] = (),
) -> list[Journey]:
    """The journeys of `flow` for a call answered at `start` (an aware wall-clock time:
    opening hours and age rules use it), each checked in the simulator at both paces."""
    if start.tzinfo is None:
        raise JourneyError("journeys_from_flow needs an aware start time (with a time zone)")
    closed = frozenset(closures)
    caller: dict[str, it.Value] = {
        "caller.number": caller_number,
        "called.number": flow.document.numbers[0] if flow.document.numbers else "",
    }
    today = start.date()

    def sample(f: Field) -> str:
        return _sample_value(f, today, postcodes)

    walks = _walks(flow, services, start, caller, closed, sample)
    simulator = _Simulator(flow, services, start, caller, closed, duration_of)
    best: dict[str, _Walk] = {}
    for walk in walks:
        if walk.name not in best or walk.sort_key < best[walk.name].sort_key:
            best[walk.name] = walk
    out = [_journey(simulator, best[name], walks) for name in sorted(best)]
    hangup = _hangup_journey(simulator, walks)
    if hangup is not None:
        out.append(hangup)
    return out


def _journey(simulator: _Simulator, walk: _Walk, walks: Sequence[_Walk]) -> Journey:
    keys = [o.keys for o in walk.options]
    listen = simulator.run(keys)
    if listen.run.result != walk.ending or len(listen.waits) != len(keys):
        raise JourneyError(
            f"journey {walk.name!r} ({', '.join(keys)}) ends {listen.run.result!r} in the "
            f"simulator with the prompts' timing, not {walk.ending!r}: a timeout fires "
            "before the caller's next key; check the flow's timeouts against its prompts"
        )
    ahead = simulator.run(keys, ahead=True)
    ahead_ok = ahead.run.result == walk.ending and len(ahead.waits) == len(keys)
    choices = _choices(walk, walks)
    presses: list[Press] = []
    for i, option in enumerate(walk.options):
        kept: list[str] = []
        for alt in choices[i]:
            if alt == option.keys:
                kept.append(alt)
                continue
            trial = simulator.run([*keys[:i], alt, *keys[i + 1 :]])
            if (
                trial.run.result == walk.ending
                and len(trial.waits) == len(keys)
                and all(
                    abs(a - b) <= TIMING_TOLERANCE
                    for a, b in zip(trial.waits, listen.waits, strict=True)
                )
            ):
                kept.append(alt)
        presses.append(
            Press(
                step=option.where.label,
                keys=option.keys,
                field=option.field,
                choices=tuple(kept) if len(kept) > 1 else (),
                listen=listen.waits[i],
                ahead=ahead.waits[i] if ahead_ok else listen.waits[i],
            )
        )
    tails = (listen.tail, ahead.tail if ahead_ok else listen.tail)
    if walk.books:
        extra, after = _taken_slot_fallback(simulator, walk, keys, ahead_ok)
        if extra:
            presses += extra
            tails = after
    return Journey(
        name=walk.name,
        result=walk.result,
        presses=tuple(presses),
        path=walk.path,
        ending=walk.ending,
        books=walk.books,
        queues=walk.queues,
        tail_listen=tails[0],
        tail_ahead=tails[1],
        ahead_ok=ahead_ok,
    )


class _HoldsFull:
    """A booking service whose first `n` holds find the time taken."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.answered = 0

    def __call__(self, request: it.ServiceRequest) -> sim.ServiceReply | None:
        if request.kind == "booking" and request.name == "hold" and self.answered < self.n:
            self.answered += 1
            return sim.ServiceReply("full", {})
        return None


def _taken_slot_fallback(
    simulator: _Simulator, walk: _Walk, keys: Sequence[str], ahead_ok: bool
) -> tuple[list[Press], tuple[float, float]]:
    """A booking caller whose time is taken by another caller between its offer and the
    hold hears the times again; the journey's last key, pressed once more, then chooses
    again and confirms — up to `TAKEN_RETRIES` times. Each extra press is kept when the
    simulator shows it: with the first n holds answered `full` the journey still ends the
    same way (and with none: the flow ignores the extra keys while it says goodbye).
    Returns the presses and the tails (listen, ahead) after the last."""
    last = walk.options[-1]
    presses: list[Press] = []
    tails: tuple[float, float] = (0.0, 0.0)
    if last.field is not None:
        return presses, tails
    for n in range(1, TAKEN_RETRIES + 1):
        extended = [*keys, *[last.keys] * n]
        waits: list[float] = []
        ends: list[float] = []
        for ahead in (False, True) if ahead_ok else (False,):
            hold_full = _HoldsFull(n)
            detour = simulator.run(extended, ahead=ahead, service=hold_full)
            plain = simulator.run(extended, ahead=ahead)
            if (
                hold_full.answered < n
                or detour.run.result != walk.ending
                or len(detour.waits) != len(extended)
                or plain.run.result != walk.ending
            ):
                return presses, tails
            waits.append(detour.waits[-1])
            ends.append(detour.tail)
        if len(waits) == 1:
            waits.append(waits[0])
            ends.append(ends[0])
        presses.append(
            Press(
                step=f"{last.where.label} (again, if the time was taken)",
                keys=last.keys,
                listen=waits[0],
                ahead=waits[1],
                fallback=True,
            )
        )
        tails = (ends[0], ends[1])
    return presses, tails


def _hangup_journey(simulator: _Simulator, walks: Sequence[_Walk]) -> Journey | None:
    """A caller who makes the first choice most journeys make, then hangs up while the
    next prompt plays; or, when that choice ends the call at once, who hangs up during
    the first prompt."""
    firsts = [w.options[0] for w in walks if w.options and w.options[0].field is None]
    candidates: list[tuple[str, list[str]]] = []
    if firsts:
        counts: dict[tuple[str, str], int] = {}
        for o in firsts:
            counts[(o.where.label, o.keys)] = counts.get((o.where.label, o.keys), 0) + 1
        (step, keys), _n = max(counts.items(), key=lambda kv: (kv[1], kv[0][1] == "1"))
        candidates.append((step, [keys]))
    candidates.append(("", []))
    for step, presses in candidates:
        timed = simulator.run(presses, hangup_after=HANGUP_AFTER)
        if timed.run.end_reason != it.EndReason.CALLER.value or len(timed.waits) != len(presses):
            continue  # the flow ends by itself before the caller would hang up
        ahead = simulator.run(presses, ahead=True, hangup_after=HANGUP_AFTER)
        return Journey(
            name=HANGUP,
            result=None,
            presses=tuple(
                Press(step, k, listen=w, ahead=w) for k, w in zip(presses, timed.waits, strict=True)
            ),
            path=tuple(f"{s}:{sid}" if s else sid for s, sid in timed.run.path),
            ending=timed.run.result,
            hangup_after=HANGUP_AFTER,
            ahead_ok=ahead.run.end_reason == it.EndReason.CALLER.value,
        )
    return None


def check_journey(
    flow: Flow,
    journey: Journey,
    keys: Sequence[str],
    *,
    services: Services,
    start: dt.datetime,
    duration_of: Callable[[PromptAsset], float] = sim.estimate_duration,
    closures: Iterable[str] = (),
    caller_number: str = "0400000000",
    pace: Pace = "listen",
) -> sim.Run:
    """Simulate one call of `journey` with these concrete keys (one group per press) at
    `pace` and return the run; raises JourneyError when it does not end as the journey
    says."""
    if len(keys) != len(journey.presses):
        raise JourneyError(
            f"journey {journey.name!r} has {len(journey.presses)} presses, "
            f"{len(keys)} key groups given"
        )
    simulator = _Simulator(
        flow, services, start, {"caller.number": caller_number}, frozenset(closures), duration_of
    )
    timed = simulator.run(keys, ahead=pace == "ahead", hangup_after=journey.hangup_after)
    if timed.run.result != journey.ending:
        raise JourneyError(
            f"journey {journey.name!r} with keys {','.join(keys)} ends "
            f"{timed.run.result!r}, not {journey.ending!r}"
        )
    return timed.run


# -- per-call values ------------------------------------------------------------------------


def medicare_number(serial: int, base: int, irn: bool = False) -> str:
    """A valid Medicare card number (check digit, issue number 1-9), different for every
    `base + serial` below 5·10⁷."""
    n = (base + serial) % 50_000_000
    first8 = f"{2 + n // 10_000_000}{n % 10_000_000:07d}"
    number = first8 + str(fields.medicare_check_digit(first8)) + str(1 + serial % 9)
    return number + (str(1 + serial % 9) if irn else "")


def caller_number(serial: int, base: int) -> str:
    """An Australian mobile number, different for every `base + serial` below 10⁸."""
    return f"04{(base + serial) % 100_000_000:08d}"


def _date_keys(spec: fields.DateField, day: dt.date) -> str:
    fmt = spec.format
    if fmt is fields.DateFormat.DDMMYYYY:
        return day.strftime("%d%m%Y")
    if fmt is fields.DateFormat.DDMMYY:
        return day.strftime("%d%m%y")
    if fmt is fields.DateFormat.YYYYMMDD:
        return day.strftime("%Y%m%d")
    return day.strftime("%m%Y")


def _date_candidate(spec: fields.DateField, rng: random.Random, today: dt.date) -> dt.date:
    if spec.when is fields.DateRule.FUTURE:
        low, high = max(1, spec.min_days or 1), max(1, min(spec.max_days or 30, 30))
        return today + dt.timedelta(days=rng.randint(min(low, high), max(low, high)))
    if spec.min_days is not None or spec.max_days is not None:
        low = spec.min_days if spec.min_days is not None else -36_500
        high = spec.max_days if spec.max_days is not None else 0
        return today + dt.timedelta(days=rng.randint(min(low, high), max(low, high)))
    young = max(spec.min_age or 0, ADULT_AGES[0])
    old = min(spec.max_age if spec.max_age is not None else 120, ADULT_AGES[1])
    if young > old:
        young, old = spec.min_age or 0, spec.max_age if spec.max_age is not None else 120
    days = rng.randint(int(young * 365.25) + 2, int((old + 1) * 365.25) - 2)
    return today - dt.timedelta(days=days)


def field_keys(
    f: Field,
    rng: random.Random,
    today: dt.date,
    *,
    serial: int,
    base: int,
    postcodes: Sequence[tuple[str, float]] = (),
) -> str:
    """The keys of a valid value for `f` on a call: unique per `serial` for Medicare
    numbers and phone numbers; a postcode from `postcodes` (weighted) when given. The
    terminator follows when the value's length does not end the entry."""
    spec = f.spec
    for _attempt in range(200):
        if isinstance(spec, fields.DateField):
            digits = _date_keys(spec, _date_candidate(spec, rng, today))
        elif isinstance(spec, fields.MedicareField):
            digits = medicare_number(serial, base, spec.irn is fields.IrnRule.REQUIRED)
        elif isinstance(spec, fields.PhoneField):
            digits = caller_number(serial, base) if spec.mobile else f"02{rng.randrange(10**8):08d}"
        elif isinstance(spec, fields.PostcodeField):
            if postcodes:
                names = [p for p, _w in postcodes]
                weights = [w for _p, w in postcodes]
                digits = rng.choices(names, weights)[0]
            else:
                digits = f"{rng.randint(2000, 2999):04d}"
        elif isinstance(spec, fields.DigitsField):
            digits = "".join(rng.choice("0123456789") for _ in range(spec.min_length))
        elif isinstance(spec, fields.YesNoField):
            digits = spec.yes
        else:
            digits = next(iter(spec.choices))
        if isinstance(fields.validate(spec, digits, today), fields.Valid):
            return digits if fields.complete(spec, digits) else digits + f.terminator
        if isinstance(spec, fields.MedicareField | fields.PhoneField):
            serial += 1  # the next number of the series
    raise JourneyError(
        f"cannot make a valid value for {f.variable!r} at step {f.step!r} "
        f"({type(spec).__name__}): the field's limits leave none"
    )


# -- the mix ----------------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, float]:
    """`book=70,agent=20,hangup=10` → {name: weight}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise JourneyError(f"--mix: expected NAME=WEIGHT, found {part!r}")
        try:
            weight = float(value)
        except ValueError:
            raise JourneyError(
                f"--mix: the weight of {name!r} is not a number: {value.strip()!r}"
            ) from None
        if not math.isfinite(weight) or weight < 0:
            raise JourneyError(f"--mix: the weight of {name!r} must be 0 or more, found {value}")
        if name in out:
            raise JourneyError(f"--mix: {name!r} is given twice")
        out[name] = weight
    if not out or sum(out.values()) <= 0:
        raise JourneyError(f"--mix: no journey with a weight above 0 in {text!r}")
    return out


def resolve_mix(mix: Mapping[str, float], journeys: Sequence[Journey]) -> dict[str, float]:
    """Names (a journey's name, or a prefix naming exactly one: `book` for `booked`)
    → shares summing to 1, in the journeys' order. Weight-0 entries are dropped."""
    names = [j.name for j in journeys]
    shares: dict[str, float] = {}
    for given, weight in mix.items():
        matches = [n for n in names if n == given] or [n for n in names if n.startswith(given)]
        if len(matches) != 1:
            known = ", ".join(names) or "none"
            why = "matches several" if matches else "is not a journey of this flow"
            raise JourneyError(f"--mix: {given!r} {why} (journeys: {known})")
        if matches[0] in shares:
            raise JourneyError(f"--mix: {given!r} names {matches[0]!r} again")
        if weight > 0:
            shares[matches[0]] = weight
    total = sum(shares.values())
    return {n: shares[n] / total for n in names if n in shares}


def default_mix(journeys: Sequence[Journey]) -> dict[str, float]:
    """The issue's example mix when the flow has those journeys, else equal shares."""
    try:
        return resolve_mix(parse_mix(DEFAULT_MIX), journeys)
    except JourneyError:
        return {j.name: 1 / len(journeys) for j in journeys} if journeys else {}


def assign(shares: Mapping[str, float], n: int) -> list[str]:
    """`n` journey names in an order that keeps every prefix of the list as close to the
    shares as whole calls allow (smooth weighted round-robin)."""
    current = dict.fromkeys(shares, 0.0)
    out: list[str] = []
    for _ in range(n):
        for name, share in shares.items():
            current[name] += share
        pick = max(current, key=lambda k: (current[k], -list(shares).index(k)))
        current[pick] -= 1.0
        out.append(pick)
    return out


@dataclass(frozen=True, slots=True)
class Call:
    """One planned call: its journey, caller number and the keys of each press."""

    serial: int
    journey: str
    caller: str
    keys: tuple[str, ...]


def plan_calls(
    journeys: Sequence[Journey],
    order: Sequence[str],
    rng: random.Random,
    today: dt.date,
    *,
    base: int,
    postcodes: Sequence[tuple[str, float]] = (),
) -> list[Call]:
    """Per call: a new caller number and person (values unique per serial), a random
    choice where a press has choices."""
    by_name = {j.name: j for j in journeys}
    out: list[Call] = []
    for serial, name in enumerate(order):
        journey = by_name[name]
        keys: list[str] = []
        for press in journey.presses:
            if press.field is not None:
                keys.append(
                    field_keys(
                        press.field, rng, today, serial=serial, base=base, postcodes=postcodes
                    )
                )
            else:
                keys.append(rng.choice(press.options))
        out.append(Call(serial, name, caller_number(serial, base), tuple(keys)))
    return out


# -- booking capacity ---------------------------------------------------------------------------


def slot_capacity(
    clinics: Iterable[Clinic], first_day: dt.date, days: int, zone: ZoneInfo, vaccine: str
) -> dict[str, int]:
    """Places per clinic offering `vaccine` over `days` days from `first_day` (public
    holidays of the clinic's region closed), as the engine's sample data generates them."""
    out: dict[str, int] = {}
    for clinic in clinics:
        if not clinic.active or vaccine not in clinic.vaccines:
            continue
        closed = holidays_for(clinic.region, first_day, days)
        slots = generate_slots(clinic, first_day, days, zone, closed=closed)
        out[clinic.id] = sum(s.capacity for s in slots)
    return out


def booking_postcodes(
    clinics: Iterable[Clinic],
    table: PostcodeTable,
    capacity: Mapping[str, int],
    *,
    max_km: float,
    need: int = 3,
) -> list[tuple[str, float]]:
    """The postcodes of clinics from which at least `need` clinics are in reach (so every
    offered clinic key works), weighted by the places of the clinics there."""
    offering = [c for c in clinics if c.id in capacity]
    weights: dict[str, float] = {}
    for clinic in offering:
        place = table.get(clinic.postcode)
        if place is None:
            continue
        if len(nearest((place.lat, place.lon), offering, max_km=max_km)) >= need:
            weights[clinic.postcode] = weights.get(clinic.postcode, 0.0) + capacity[clinic.id]
    return sorted(weights.items())
