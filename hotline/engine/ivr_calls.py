"""Running flows on live calls: the glue between SIP calls, the media tick and sessions.

Owns, per answered call, its `hotline.ivr.interpreter.Session` and the execution of the
actions it returns: `Play` → the media loop's play queue (prompt samples rendered once
per action), `StopPlayback` → barge-in, `ServiceRequest` → an asyncio task (webhooks
over aiohttp with timeout, retries and backoff; bookings over `hotline.engine.bookings`;
queue and transfer over the engine's contact centre), `Hangup` → a BYE with the flow's
X- headers. Digits from RFC 4733, in-band detection and SIP INFO, play completions from
the tick, and the sessions' deadlines (one heap, one loop timer for all calls) are fed back as events. When a call
ends its trace (JSON lines, sensitive values masked by the session) is written off the
event loop.

Must not know: SIP parsing, RTP, or the meaning of steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import heapq
import itertools
import json
import logging
import zoneinfo
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotline.engine.flows import FlowSet, LoadedFlow
from hotline.ivr import interpreter as it
from hotline.rtp.rtcp import CallQuality

log = logging.getLogger("hotline.ivr")

HangupFn = Callable[[Any, list[tuple[str, str]]], None]
# (action, args, call id, caller number) → (outcome, data): the booking service
BookingFn = Callable[[str, Mapping[str, Any], str, str], Awaitable[tuple[str, dict[str, Any]]]]
# (call key, queue, args, sensitive names, caller number) → (outcome, data), when it ends
QueueFn = Callable[[Hashable, str, Mapping[str, Any], frozenset[str], str],
                   Awaitable[tuple[str, dict[str, Any]]]]
# (call key, target, caller number) → ("ok" once bridged, or "failed", data)
TransferFn = Callable[[Hashable, str, str], Awaitable[tuple[str, dict[str, Any]]]]
WEBHOOK_BACKOFF = 0.5  # seconds before the first retry; doubles
MAX_WEBHOOK_BYTES = 1 << 20


@dataclass
class IvrCall:
    key: Hashable  # the media leg key (the SIP call object)
    call_id: str
    loaded: LoadedFlow
    session: it.Session
    started: float
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    ended: bool = False
    quality: dict[str, Any] | None = None


class IvrCalls:
    """Every call running a flow."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        flows: FlowSet,
        *,
        media: Any,  # hotline.engine.media_workers.MediaPlane (play/stop_playback)
        hangup: HangupFn,
        timezone: str,
        trace_dir: Path | None,
        closures: set[str],
        booking: BookingFn | None = None,
        queue: QueueFn | None = None,
        transfer: TransferFn | None = None,
    ) -> None:
        self.loop = loop
        self.flows = flows
        self.media = media
        self.hangup = hangup
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.trace_dir = trace_dir
        self.closures = closures
        self.booking = booking
        self.queue = queue
        self.transfer = transfer
        self.calls: dict[Hashable, IvrCall] = {}
        self._deadlines: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._http: Any = None  # aiohttp.ClientSession, opened on first webhook
        self.results: dict[tuple[str, str], int] = {}  # (flow, result) → calls
        self.service_results: dict[tuple[str, str, str], int] = {}  # (kind, name, outcome)

    # -- calls ------------------------------------------------------------------------

    def start(self, key: Hashable, call_id: str, dialled: str, facts: Mapping[str, it.Value]
              ) -> bool:
        """Run the flow for `dialled` on a call whose media is up. False: no flow."""
        loaded = self.flows.route(dialled)
        if loaded is None:
            log.warning("call %s: no flow answers %r and no default flow is loaded",
                        call_id, dialled)
            return False
        session = it.Session(loaded.flow, closures=self.closures)
        state = IvrCall(key, call_id, loaded, session, self.loop.time())
        self.calls[key] = state
        variables = dict(facts)
        variables["call.id"] = call_id
        variables["called.number"] = dialled
        log.info("call %s: flow %s version %s", call_id, loaded.flow.name, loaded.flow.version)
        self._feed(state, it.Start(dt.datetime.now(self.tz), variables))
        return True

    def digit(self, key: Hashable, digit: str) -> None:
        state = self.calls.get(key)
        if state is not None:
            self._feed(state, it.Digit(digit))

    def play_done(self, key: Hashable, tag: Hashable, completed: bool) -> None:
        state = self.calls.get(key)
        if state is not None and isinstance(tag, int):
            self._feed(state, it.PlayDone(tag, completed))

    def ended(self, key: Hashable, quality: CallQuality | None = None) -> IvrCall | None:
        """The call is over (either side); the session hears of a caller hang-up. The
        media's RTCP figures go into the trace's header. Returns the call's flow state
        (its result final), None when no flow ran on it."""
        state = self.calls.pop(key, None)
        if state is None:
            return None
        state.ended = True
        state.quality = None if quality is None else dataclasses.asdict(quality)
        if state.session.finished is None:
            state.session.step(it.CallerHangup(), self.loop.time())
        for task in state.tasks:
            task.cancel()
        result = state.session.result or "unknown"
        key = (state.loaded.flow.name, result)
        self.results[key] = self.results.get(key, 0) + 1
        log.info("call %s: flow %s ended: %s", state.call_id, state.loaded.flow.name, result)
        if self.trace_dir is not None:
            self.loop.run_in_executor(None, self._write_trace, state)
        return state

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self.calls):
            self.ended(key)
        if self._http is not None:
            self.loop.create_task(self._http.close())
            self._http = None

    # -- feeding the session --------------------------------------------------------------

    def _feed(self, state: IvrCall, event: it.Event) -> None:
        now = self.loop.time()
        try:
            actions = state.session.step(event, now)
        except Exception:
            log.exception("call %s: flow %s failed on %s", state.call_id,
                          state.loaded.flow.name, type(event).__name__)
            actions = [it.Hangup("error", (("X-Hotline-Result", "error"),))]
        self._perform(state, actions)
        deadline = state.session.next_deadline()
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, next(self._order), state.key))
            self._arm()

    def _perform(self, state: IvrCall, actions: Sequence[it.Action]) -> None:
        for action in actions:
            if state.ended:
                return
            if isinstance(action, it.Play):
                samples = self.flows.render(state.loaded, action.items)
                try:
                    self.media.play(state.key, samples, tag=action.tag)
                except KeyError:
                    log.info("call %s: no media leg to play on", state.call_id)
            elif isinstance(action, it.StopPlayback):
                with contextlib.suppress(KeyError):
                    self.media.stop_playback(state.key)
            elif isinstance(action, it.ServiceRequest):
                task = self.loop.create_task(self._service(state, action))
                state.tasks.add(task)
                task.add_done_callback(state.tasks.discard)
            elif isinstance(action, it.Hangup):
                log.info("call %s: flow hangs up (%s)", state.call_id, action.result)
                self.hangup(state.key, list(action.headers))

    # -- timers ---------------------------------------------------------------------------

    def _arm(self) -> None:
        if not self._deadlines:
            return
        at = self._deadlines[0][0]
        if self._timer_at is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _at, _n, key = heapq.heappop(self._deadlines)
            state = self.calls.get(key)
            if state is None:
                continue
            deadline = state.session.next_deadline()
            if deadline is not None and deadline <= now:
                self._feed(state, it.Timer())
        self._arm()

    # -- services ------------------------------------------------------------------------

    async def _service(self, state: IvrCall, request: it.ServiceRequest) -> None:
        if request.kind == "webhook":
            outcome, data = await self._webhook(state, request.args)
        elif request.kind == "booking" and self.booking is not None:
            caller = str(state.session.variables.get("caller.number") or "")
            try:
                outcome, data = await self.booking(request.name, request.args, state.call_id,
                                                   caller)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the flow's `failed` step; never the values
                log.error("call %s: booking %s failed: %s", state.call_id, request.name,
                          type(exc).__name__)
                outcome, data = "error", {}
        elif request.kind == "queue" and self.queue is not None:
            caller = str(state.session.variables.get("caller.number") or "")
            try:
                outcome, data = await self.queue(state.key, request.name, request.args,
                                                 request.sensitive, caller)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call %s: queue %s failed", state.call_id, request.name)
                outcome, data = "error", {}
        elif request.kind == "transfer" and self.transfer is not None:
            caller = str(state.session.variables.get("caller.number") or "")
            try:
                outcome, data = await self.transfer(state.key, str(request.args["to"]), caller)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call %s: transfer failed", state.call_id)
                outcome, data = "failed", {}
        else:
            log.warning("call %s: %s service %r is not available on this engine yet",
                        state.call_id, request.kind, request.name)
            outcome, data = "unavailable", {}
        counted = (request.kind, "" if request.kind == "webhook" else request.name, outcome)
        self.service_results[counted] = self.service_results.get(counted, 0) + 1
        if not state.ended:
            self._feed(state, it.ServiceResult(request.id, outcome, data))

    async def _webhook(self, state: IvrCall, args: Mapping[str, Any]
                       ) -> tuple[str, dict[str, Any]]:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession()
        method, url = str(args["method"]), str(args["url"])
        timeout = aiohttp.ClientTimeout(total=float(args["timeout"]))
        body = dict(args.get("body") or {})
        headers = dict(args.get("headers") or {})
        attempts = int(args.get("retries", 0)) + 1
        delay = WEBHOOK_BACKOFF
        outcome = "error"
        for attempt in range(attempts):
            try:
                async with self._http.request(
                    method, url, json=body if method != "GET" else None,
                    params=body if method == "GET" else None, headers=headers, timeout=timeout,
                ) as response:
                    raw = await response.content.read(MAX_WEBHOOK_BYTES + 1)
                    if response.status >= 500:
                        outcome = f"http_{response.status}"
                    elif response.status >= 400:
                        return f"http_{response.status}", {}
                    else:
                        if len(raw) > MAX_WEBHOOK_BYTES:
                            return "error", {}
                        data = json.loads(raw) if raw.strip() else {}
                        return "ok", data if isinstance(data, dict) else {"value": data}
            except (aiohttp.ClientError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                outcome = "error"
                log.info("call %s: webhook %s attempt %d failed: %s", state.call_id,
                         _safe_url(url), attempt + 1, exc)
            except TimeoutError:
                outcome = "timeout"
                log.info("call %s: webhook %s attempt %d timed out", state.call_id,
                         _safe_url(url), attempt + 1)
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        return outcome, {}

    # -- traces ------------------------------------------------------------------------------

    def _write_trace(self, state: IvrCall) -> None:
        assert self.trace_dir is not None
        day = dt.datetime.now(self.tz).strftime("%Y-%m-%d")
        folder = self.trace_dir / day
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in state.call_id)[:120]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            header = {"call_id": state.call_id, "flow": state.loaded.flow.name,
                      "version": state.loaded.flow.version, "file": state.loaded.flow.file,
                      "result": state.session.result, "quality": state.quality}
            with open(folder / f"{safe}.jsonl", "w", encoding="utf-8") as fh:
                fh.write(json.dumps(header, ensure_ascii=False) + "\n")
                for entry in state.session.trace:
                    fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        except OSError as exc:
            log.warning("call %s: cannot write trace: %s", state.call_id, exc)


def _safe_url(url: str) -> str:
    """A URL for logs: no query string (it may carry values)."""
    return url.split("?", 1)[0]
