"""The contact centre on live calls: the ACD router's actions performed with SIP calls
and media legs, and what calls and phones do fed back to it as events.

Owns, per queued or bridged call, a `Bridge`: the caller's leg, the agent leg being
offered (an outgoing INVITE to the agent's registered contact, carrying the screen pop
in X-Hotline-* headers), the connected agent, a consulted expert, further conference
parties and a supervisor — and which media conference each leg is in. The engine is a
back-to-back user agent: hold, consult, conference, transfer and supervision are moves
between conferences of the one media tick (`MediaCore.join/leave`), never media
relayed by the phones. Also owned here: star codes dialled from agents' phones (`*41`
login …), callbacks (agent first, then the citizen), voicemail on overflow, the queue
announcements and hold music, and registration → agent/expert presence.

Must not know: SIP parsing (hotline.sip), the routing rules (hotline.acd.router), mixing
arithmetic (hotline.media). Every router event is fed through `_route`, every action it
returns performed in order; SIP and media work goes through the engine's endpoint and
media loop, and `flush()` gets the endpoint's datagrams out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import re
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hotline.acd import announcements as say
from hotline.acd.agents import (
    AgentCommand,
    AgentConfig,
    AgentPolicy,
    Back,
    Break,
    Login,
    Logout,
    OfferFailure,
    parse_star_code,
)
from hotline.acd.callbacks import CallbackFailure, CallbackPolicy
from hotline.acd.errors import AcdError, PidfError, StarCodeError
from hotline.acd.presence import (
    Expert,
    ExpertCallEnded,
    ExpertCallStarted,
    ExpertRegistration,
    ExpertStatusSet,
    PresenceChanged,
    PresencePublished,
    PresenceStatus,
    parse_pidf,
)
from hotline.acd.queues import (
    EscalationStep,
    OfferCallback,
    QueueConfig,
    SkillRequirement,
    Strategy,
    ToQueue,
    ToVoicemail,
)
from hotline.acd.router import (
    Action,
    AgentCommandIssued,
    AgentRegistered,
    AgentStateChanged,
    AgentUnregistered,
    Announce,
    CallbackAnswered,
    CallbackFailed,
    CallbackGaveUp,
    CallbackRegistered,
    CallbackRequested,
    CallEnded,
    CallQueued,
    CancelCallback,
    CancelOffer,
    CommandDone,
    Connected,
    Event,
    OfferAnswered,
    OfferCall,
    OfferRejected,
    OfferTimedOut,
    Overflowed,
    PlayHold,
    Router,
    StartCallback,
    Timer,
)
from hotline.config import AcdSettings, QueueSettings
from hotline.engine.media_loop import Role
from hotline.engine.media_workers import MediaPlane
from hotline.media import tones
from hotline.media.prompts import PromptCache, PromptError
from hotline.sip.addr import Peer
from hotline.sip.endpoint import Call, CallState, Endpoint, EndReason, ReferReceived
from hotline.sip.events import Subscription
from hotline.sip.registrar import Registrar, RegistrationChanged
from hotline.sip.uri import SipURI, parse_uri

log = logging.getLogger("hotline.acd")

Int16Array = npt.NDArray[np.int16]
QueueResult = tuple[str, dict[str, Any]]
VOICEMAIL_SECONDS = 120.0
CALLBACK_RING_SECONDS = 40.0
_SAFE_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
# Ringback while a transfer rings (Australian cadence: 400+450 Hz, 0.4 on 0.2 off 0.4 on 2 off).
_RING = tones.dual_tone(400.0, 450.0, 3200, -19.0, -19.0)
RINGBACK: Int16Array = np.concatenate([_RING, np.zeros(1600, np.int16), _RING,
                                       np.zeros(16000, np.int16)])
RINGBACK.setflags(write=False)


class ApiError(Exception):
    """A request the contact centre refuses: `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(eq=False)
class Bridge:
    """One caller's time with the contact centre, from joining a queue to hanging up."""

    id: str  # the router's call id
    caller: Call | None
    queue: str
    language: str
    number: str
    variables: dict[str, Any] = field(default_factory=dict)
    future: asyncio.Future[QueueResult] | None = None
    agent_id: str | None = None
    agent: Call | None = None  # the connected agent's leg
    offer: Call | None = None  # the agent leg ringing
    offer_agent: str | None = None
    consult: Call | None = None  # a third party the agent called (expert, URI)
    consult_expert: str | None = None
    consult_answered: bool = False
    blind: bool = False  # the consult leg is a blind transfer's target
    refer_to: str | None = None  # a REFER sent to the caller's side, to this URI
    others: list[Call] = field(default_factory=list)  # parties conferenced in
    supervisor: Call | None = None
    supervisor_id: str | None = None
    supervisor_mode: Role = Role.LISTEN
    supervisor_answered: bool = False
    held: bool = False
    music: bool = False  # a looping hold music item is queued on the caller
    callback_key: str | None = None
    confirming: bool = False  # the callback number is being confirmed
    callback_id: str | None = None  # an outgoing callback's id
    callback_agent: Call | None = None  # its agent leg (called first)
    voicemail: str | None = None
    queued_at: float = 0.0
    waited: float | None = None  # from joining the queue to an agent answering (or leaving)
    transferred_to: str | None = None
    ended_by: str | None = None  # which side's hang-up ended the bridge
    connected_at: float | None = None
    recording: bool = False
    ended: bool = False

    @property
    def conference(self) -> str:
        return f"bridge:{self.id}"

    @property
    def consult_conference(self) -> str:
        return f"consult:{self.id}"


# Roles of SIP legs the contact centre owns.
CALLER, OFFER, AGENT, CONSULT, OTHER, SUPERVISOR, CB_AGENT, STAR = (
    "caller", "offer", "agent", "consult", "other", "supervisor", "callback-agent", "star")


def queue_config(q: QueueSettings, sensitive: frozenset[str] = frozenset()) -> QueueConfig:
    """The router's queue from the config section."""
    overflow: ToQueue | ToVoicemail | OfferCallback | None = None
    if q.overflow is not None:
        if q.overflow.queue is not None:
            overflow = ToQueue(q.overflow.queue)
        elif q.overflow.voicemail is not None:
            overflow = ToVoicemail(q.overflow.voicemail)
        else:
            overflow = OfferCallback()
    return QueueConfig(
        name=q.name,
        strategy=Strategy(q.strategy),
        skills=tuple(SkillRequirement(s.skill, s.min) for s in q.skills),
        escalation=tuple(
            EscalationStep(e.after_seconds, tuple(SkillRequirement(s.skill, s.min)
                                                  for s in e.skills))
            for e in q.escalation
        ),
        members=q.members,
        max_wait=q.max_wait_seconds,
        overflow=overflow,
        announce_first=q.announce_first_seconds,
        announce_every=q.announce_every_seconds if q.announce_first_seconds is not None
        else None,
        announce_position=q.announce_position,
        announce_wait=q.announce_wait,
        hold_music=q.hold_music,
        wrap_up=q.wrap_up_seconds,
        ring_timeout=q.ring_timeout_seconds,
        min_samples=q.min_samples,
        sensitive=frozenset(q.sensitive) | sensitive,
    )


class ContactCentre:
    """See the module docstring. The engine calls the `on_*` hooks and the API methods
    from the event loop; nothing here blocks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: AcdSettings,
        *,
        endpoint: Endpoint,
        registrar: Registrar,
        media: MediaPlane,
        prompts: PromptCache,
        new_leg: Callable[[], tuple[Any, bytes]],  # → (CallMedia, our SDP offer)
        start_media: Callable[[Call], bool],
        flush: Callable[[], None],
        domain: str,
        data_dir: Path,
        repository: Any = None,
        callback_uri: str | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.ep = endpoint
        self.registrar = registrar
        self.media = media
        self.prompts = prompts
        self.new_leg = new_leg
        self.start_media = start_media
        self.flush = flush
        self.domain = domain
        self.data_dir = data_dir
        self.callback_uri = callback_uri
        self.queue_settings = {q.name: q for q in settings.queues}
        now = loop.time()
        policy = AgentPolicy(
            ring_timeout=settings.ring_timeout_seconds,
            wrap_up=settings.wrap_up_seconds,
            pause_after_no_answer=settings.pause_after_failed_offer_seconds,
            pause_after_rejected=settings.pause_after_failed_offer_seconds,
            pause_after_busy=settings.pause_after_failed_offer_seconds,
            pause_after_unreachable=settings.pause_after_failed_offer_seconds,
        )
        self.agent_settings = {a.id: a for a in settings.agents}
        self.router = Router(
            [queue_config(q) for q in settings.queues],
            [AgentConfig(a.id, a.name, f"sip:{a.id}@{domain}", dict(a.skills),
                         a.wrap_up_seconds) for a in settings.agents],
            now=now,
            policy=policy,
            callback_policy=CallbackPolicy(settings.callback_max_attempts,
                                           settings.callback_retry_seconds),
            repository=repository,
            experts=[Expert(e.id, e.name, e.uri, e.department, dict(e.skills))
                     for e in settings.experts],
        )
        self.bridges: dict[str, Bridge] = {}
        self.legs: dict[Call, tuple[Bridge | None, str]] = {}
        self.star: dict[Call, tuple[str, AgentCommand | None, str | None]] = {}
        self._callbacks: dict[str, Bridge] = {}
        # Legs of finished bridges, until their own end is reported (for their CDRs).
        self._finished: dict[Call, tuple[Bridge, str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._music: dict[str, Int16Array] = {}
        self._ids = itertools.count(1)
        self.counters: dict[str, int] = {}
        self.recordings_dir = data_dir / "recordings"
        self.voicemail_dir = data_dir / "voicemail"
        for agent in settings.agents:
            if agent.logged_in:  # ready as soon as their phone registers
                self.router.handle(AgentCommandIssued(agent.id, Login()), now)
        self._arm()

    # -- the router -------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _route(self, event: Event) -> list[Action]:
        """Feed one event and perform what the router answers; the actions are returned
        too (the API reads CommandDone from them)."""
        now = self.loop.time()
        try:
            actions = self.router.handle(event, now)
        except AcdError as exc:
            log.warning("ACD refused %s: %s", type(event).__name__, exc)
            return []
        self._perform(actions)
        self._arm()
        return actions

    def _arm(self) -> None:
        at = self.router.next_deadline()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._route(Timer())
        self.flush()

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._act(action)
            except Exception:
                log.exception("ACD action %s failed", type(action).__name__)

    def _act(self, action: Action) -> None:
        if isinstance(action, OfferCall):
            self._offer(action)
        elif isinstance(action, CancelOffer):
            self._cancel_offer(action)
        elif isinstance(action, PlayHold):
            bridge = self.bridges.get(action.call_id)
            if bridge is not None and bridge.caller is not None:
                self._hold_music(bridge, restart=False)
        elif isinstance(action, Announce):
            self._announce(action)
        elif isinstance(action, Connected):
            self._connected(action)
        elif isinstance(action, Overflowed):
            self._overflowed(action)
        elif isinstance(action, CallbackRegistered):
            self._callback_registered(action)
        elif isinstance(action, StartCallback):
            self._start_callback(action)
        elif isinstance(action, CancelCallback):
            self._cancel_callback(action.callback_id, action.reason)
        elif isinstance(action, CallbackGaveUp):
            log.info("callback %s: gave up after %d attempts", action.callback_id,
                     action.attempts)
            self._count("callbacks_gave_up")
        elif isinstance(action, AgentStateChanged):
            c = action.change
            log.info("agent %s: %s/%s (%s)", c.agent_id, c.status.value, c.state.value,
                     c.cause)
        elif isinstance(action, CommandDone):
            self._command_done(action)
        elif isinstance(action, PresenceChanged):
            log.info("expert %s presence: %s", action.expert_id, action.status.value)
            self._notify_watchers(action.expert_id)

    # -- audio ----------------------------------------------------------------------------------

    def _render(self, parts: list[say.Part]) -> Int16Array:
        chunks: list[Int16Array] = []
        for part in parts:
            try:
                if isinstance(part, say.Phrase):
                    voice = "cmn" if part.language == "zh" else "en"
                    name = self.prompts.text(part.key, part.text, voice)
                    chunks.append(self.prompts.pcm(name))
                else:
                    chunks.extend(self.prompts.pcm(n) for n in part.names)
            except PromptError as exc:
                log.warning("cannot play %s: %s", part, exc)
        return np.concatenate(chunks) if chunks else np.zeros(160, dtype=np.int16)

    def prepare(self) -> None:
        """Render every system phrase and the hold music once (call off the event loop
        at start-up: synthesis of missing recordings takes seconds)."""
        for phrase in say.every_phrase():
            try:
                voice = "cmn" if phrase.language == "zh" else "en"
                self.prompts.pcm(self.prompts.text(phrase.key, phrase.text, voice))
            except PromptError as exc:
                log.warning("%s", exc)
        for q in self.settings.queues:
            self._music_for(q.name)

    def _music_for(self, queue: str) -> Int16Array:
        settings = self.queue_settings.get(queue)
        name = settings.hold_music if settings is not None else "hold_music"
        music = self._music.get(name)
        if music is None:
            try:
                music = self.prompts.pcm(name)
            except PromptError as exc:
                log.warning("queue %s: hold music: %s; playing a soft tone instead", queue, exc)
                music = tones.beep(2000, 425.0, level_dbm0=-30)
            self._music[name] = music
        return music

    def _play(self, call: Call | None, samples: Int16Array, tag: Hashable) -> None:
        if call is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.media.play(call, samples, tag=tag)

    def _stop(self, call: Call | None) -> None:
        if call is not None:
            with contextlib.suppress(KeyError):
                self.media.stop_playback(call)

    def _hold_music(self, bridge: Bridge, *, restart: bool) -> None:
        caller = bridge.caller
        if caller is None:
            return
        if restart:
            self._stop(caller)
            bridge.music = False
        if bridge.music:
            return
        try:
            self.media.play(caller, self._music_for(bridge.queue), tag=("acd", "music"),
                            loop=True)
            bridge.music = True
        except (KeyError, ValueError):
            pass

    def _announce(self, action: Announce) -> None:
        bridge = self.bridges.get(action.call_id)
        if bridge is None or bridge.caller is None or bridge.confirming or bridge.held:
            return
        key = bridge.callback_key if self._callback_possible(bridge) else None
        parts = say.position_and_wait(bridge.language, action.position, action.ewt_seconds,
                                      key)
        if not parts:
            return
        self._count("announcements")
        self._stop(bridge.caller)
        bridge.music = False
        self._play(bridge.caller, self._render(parts), ("acd", "announce"))
        self._hold_music(bridge, restart=False)

    # -- the flow's queue step ----------------------------------------------------------------

    def enqueue(
        self,
        call: Call,
        queue: str,
        args: Mapping[str, Any],
        sensitive: frozenset[str],
        caller_number: str,
    ) -> asyncio.Future[QueueResult]:
        """A flow's `queue` step: join `queue`. The future gives the step's outcome:
        "bridged" once an agent answered (the flow ends, the bridge owns the call), or
        "unavailable" (no such queue) / "no_agents" (nobody is staffed for it) at once,
        which take the step's `next`. Voicemail and callbacks end the call here."""
        future: asyncio.Future[QueueResult] = self.loop.create_future()
        if queue not in self.router.queues:
            future.set_result(("unavailable", {}))
            return future
        now = self.loop.time()
        status = self.router.queue_status(queue, now)
        if status.staffed == 0:
            self._count("queue_no_agents")
            future.set_result(("no_agents", {}))
            return future
        settings = self.queue_settings[queue]
        variables = dict(args.get("variables") or {})
        bridge = Bridge(
            id=call.call_id, caller=call, queue=queue,
            language=say.language_of(args.get("language")), number=caller_number,
            variables=variables, future=future, callback_key=settings.callback_key,
            queued_at=now,
        )
        self.bridges[bridge.id] = bridge
        self.legs[call] = (bridge, CALLER)
        priority = int(args.get("priority") or 0)
        plain = {k: v for k, v in variables.items()
                 if isinstance(v, bool | int | str) or v is None}
        self._count("queued")
        self._route(CallQueued(bridge.id, queue, priority, plain, frozenset(sensitive),
                               caller_number))
        self.flush()
        return future

    def transfer_call(self, call: Call, to: str, caller_number: str
                      ) -> asyncio.Future[QueueResult]:
        """A flow's `transfer` step: call `to` (a SIP URI, or a registered user) and
        bridge the caller to it. The future gives "ok" once it answered (the bridge owns
        the call from then on) or "failed" (with the SIP status) — the step's `failed`.
        The caller hears ringback meanwhile."""
        future: asyncio.Future[QueueResult] = self.loop.create_future()
        bridge = Bridge(id=call.call_id, caller=call, queue="", language="en",
                        number=caller_number, future=future)
        try:
            target, peer = self._target(to)
        except ApiError as exc:
            log.info("call %s: cannot transfer to %r: %s", call.call_id, to, exc.message)
            future.set_result(("failed", {"reason": exc.message}))
            return future
        self.bridges[bridge.id] = bridge
        self.legs[call] = (bridge, CALLER)
        bridge.transferred_to = to
        with contextlib.suppress(KeyError, ValueError):
            self.media.play(call, RINGBACK, tag=("acd", "music"), loop=True)
            bridge.music = True
        leg = self._invite(target, peer, [("X-Hotline-Call", bridge.id),
                                          ("X-Hotline-Transfer", "flow")],
                           caller_number, "Hotline")
        bridge.consult = leg
        bridge.blind = True
        self.legs[leg] = (bridge, CONSULT)
        self._count("transfers_flow")
        log.info("call %s: flow transfers to %s", bridge.id, target)
        self.flush()
        return future

    def _target(self, to: str) -> tuple[str, Peer | None]:
        """Where to call `to`: a registered user's contact, or the SIP URI itself."""
        if not to.startswith(("sip:", "sips:")):
            contact = self._contact(to)
            if contact is None:
                raise ApiError(404, f"{to!r} is not a SIP URI nor a registered user")
            return contact
        try:
            parsed = parse_uri(to, "to")
        except Exception as exc:
            raise ApiError(400, f"not a SIP URI: {to!r}: {exc}") from None
        if not isinstance(parsed, SipURI):
            raise ApiError(400, f"not a SIP URI: {to!r}")
        if parsed.user and parsed.host_bare == self.domain:
            # One of ours: only where they registered (the domain itself names no host).
            contact = self._contact(parsed.user)
            if contact is None:
                raise ApiError(480, f"{parsed.user} is not registered")
            return contact
        if parsed.user and parsed.host_bare in ("127.0.0.1", "localhost", "::1"):
            contact = self._contact(parsed.user)
            if contact is not None:
                return contact
        return to, None

    def _callback_possible(self, bridge: Bridge) -> bool:
        return (self.callback_uri is not None and bridge.callback_key is not None
                and bool(_SAFE_NUMBER.match(bridge.number or "")))

    # -- offers to agents ----------------------------------------------------------------------

    def _contact(self, user: str) -> tuple[str, Peer] | None:
        """The agent's (or any registered user's) best contact and the next hop to it."""
        bindings = self.registrar.lookup_user(user, self.loop.time())
        for binding in bindings:
            uri = binding.contact.uri
            if isinstance(uri, SipURI):
                transport = (uri.transport or "udp").lower()
                return str(uri), Peer(transport, uri.host_bare, uri.port or 5060)
        return None

    def _invite(self, target: str, peer: Peer | None, headers: list[tuple[str, str]],
                from_user: str, display: str) -> Call:
        media, sdp = self.new_leg()
        return self.ep.invite(
            target, self.loop.time(), sdp=sdp, peer=peer,
            from_uri=f"sip:{from_user or 'anonymous'}@{self.domain}",
            display_name=display, headers=headers, app=media,
        )

    def _offer(self, action: OfferCall) -> None:
        bridge = self.bridges.get(action.call_id)
        if bridge is None or bridge.caller is None:
            self._route(OfferRejected(action.agent_id, action.call_id,
                                      OfferFailure.UNREACHABLE))
            return
        contact = self._contact(action.agent_id)
        if contact is None:
            log.info("call %s: agent %s has no registered phone", bridge.id, action.agent_id)
            self._route(OfferRejected(action.agent_id, action.call_id,
                                      OfferFailure.UNREACHABLE))
            return
        target, peer = contact
        call = self._invite(target, peer, list(action.headers), bridge.number,
                            f"Hotline {bridge.queue}")
        bridge.offer = call
        bridge.offer_agent = action.agent_id
        self.legs[call] = (bridge, OFFER)
        self._count("offers")
        log.info("call %s: offering to agent %s", bridge.id, action.agent_id)

    def _cancel_offer(self, action: CancelOffer) -> None:
        bridge = self.bridges.get(action.call_id)
        if bridge is None or bridge.offer is None or bridge.offer_agent != action.agent_id:
            return
        call = bridge.offer
        bridge.offer = None
        bridge.offer_agent = None
        self.legs[call] = (None, OFFER)  # its end is no longer news for the router
        log.info("call %s: offer to %s withdrawn (%s)", bridge.id, action.agent_id,
                 action.reason)
        self.ep.hangup(call, self.loop.time())
        self._count(f"offers_withdrawn_{action.reason}")

    def _connected(self, action: Connected) -> None:
        bridge = self.bridges.get(action.call_id)
        if bridge is None:
            return
        agent = bridge.offer if bridge.offer_agent == action.agent_id else bridge.callback_agent
        if agent is None or bridge.caller is None:
            log.warning("call %s: connected to %s without a leg", bridge.id, action.agent_id)
            return
        if bridge.offer is agent:
            bridge.offer = None
            bridge.offer_agent = None
        bridge.callback_agent = None
        bridge.agent = agent
        bridge.agent_id = action.agent_id
        bridge.connected_at = self.loop.time()
        bridge.waited = action.waited
        self.legs[agent] = (bridge, AGENT)
        self._stop(bridge.caller)
        self._stop(agent)
        bridge.music = False
        try:
            self.media.join(bridge.caller, bridge.conference)
            self.media.join(agent, bridge.conference)
        except KeyError:
            log.warning("call %s: a leg has no media to bridge", bridge.id)
        if self.settings.record_calls:
            self._start_recording(bridge)
        self._count("bridged")
        log.info("call %s: bridged to agent %s after %.1f s in %s", bridge.id,
                 action.agent_id, action.waited, action.queue)
        if bridge.future is not None and not bridge.future.done():
            bridge.future.set_result(("bridged", {"agent": action.agent_id,
                                                  "waited": round(action.waited, 1)}))

    def _overflowed(self, action: Overflowed) -> None:
        bridge = self.bridges.get(action.call_id)
        if bridge is None or bridge.caller is None:
            return
        target = action.target
        self._count("overflows")
        if isinstance(target, ToQueue):
            log.info("call %s: overflow from %s to queue %s", bridge.id, action.queue,
                     target.queue)
            bridge.queue = target.queue
            self._hold_music(bridge, restart=True)
        elif isinstance(target, ToVoicemail):
            self._voicemail(bridge, target.mailbox)
        elif isinstance(target, OfferCallback) and self._callback_possible(bridge):
            assert bridge.callback_key is not None
            self._stop(bridge.caller)
            bridge.music = False
            self._play(bridge.caller,
                       self._render(say.callback_offer(bridge.language, bridge.callback_key)),
                       ("acd", "offer"))
            self._hold_music(bridge, restart=False)

    # -- voicemail -------------------------------------------------------------------------------

    def _voicemail(self, bridge: Bridge, mailbox: str) -> None:
        caller = bridge.caller
        assert caller is not None
        bridge.voicemail = mailbox
        self._stop(caller)
        bridge.music = False
        greeting = self._render([say.phrase(bridge.language, "voicemail")])
        beep = tones.beep(400, 1000.0, level_dbm0=-12)
        self._play(caller, np.concatenate([greeting, np.zeros(1600, np.int16), beep]),
                   ("acd", "voicemail"))
        log.info("call %s: to voicemail %s", bridge.id, mailbox)

    def on_play_done(self, call: Call, tag: Hashable, completed: bool) -> None:
        """A play item of a leg we own finished."""
        if not (isinstance(tag, tuple) and tag and tag[0] == "acd"):
            return
        kind = tag[1]
        entry = self.legs.get(call)
        bridge = entry[0] if entry is not None else None
        if kind == "voicemail" and completed and bridge is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.media.start_recording(call, inbound=True, outbound=False,
                                           max_seconds=VOICEMAIL_SECONDS)
            self.loop.call_later(VOICEMAIL_SECONDS, self._hangup, call,
                                 [("X-Hotline-Result", "voicemail")])
        elif kind in ("bye", "star"):
            result = "callback" if kind == "bye" else "agent_code"
            self._hangup(call, [("X-Hotline-Result", result)])

    def _hangup(self, call: Call, headers: list[tuple[str, str]] | None = None) -> None:
        if call.state is not CallState.ENDED:
            self.ep.hangup(call, self.loop.time(), headers)
            self.flush()

    # -- callbacks ---------------------------------------------------------------------------

    def on_digit(self, call: Call, digit: str) -> bool:
        """A key from a leg: True when the contact centre took it (callers in a queue)."""
        entry = self.legs.get(call)
        if entry is None:
            return False
        bridge, role = entry
        if bridge is None or role != CALLER or bridge.agent is not None:
            return role != CALLER  # agents' and experts' keys are not the IVR's
        if bridge.confirming:
            if digit == "1":
                bridge.confirming = False
                callback_id = f"cb-{self.loop.time():.0f}-{next(self._ids)}"
                self._count("callbacks_requested")
                self._route(CallbackRequested(callback_id, bridge.number, call_id=bridge.id))
                self.flush()
            elif digit == "2":
                bridge.confirming = False
                self._hold_music(bridge, restart=True)
            return True
        if digit == bridge.callback_key and self._callback_possible(bridge):
            bridge.confirming = True
            self._stop(call)
            bridge.music = False
            self._play(call, self._render(say.callback_confirm(bridge.language, bridge.number)),
                       ("acd", "confirm"))
            return True
        return True  # keys while waiting are not the flow's any more

    def _callback_registered(self, action: CallbackRegistered) -> None:
        bridge = self.bridges.get(action.call_id or "")
        log.info("callback %s registered for queue %s%s", action.callback_id, action.queue,
                 " (already requested)" if action.duplicate else "")
        if bridge is None or bridge.caller is None:
            return
        name = "callback_duplicate" if action.duplicate else "callback_registered"
        self._stop(bridge.caller)
        bridge.music = False
        self._play(bridge.caller, self._render([say.phrase(bridge.language, name)]),
                   ("acd", "bye"))
        # The caller leaves the queue (the router turned the entry into the callback):
        # the bridge is done with this call.
        self.bridges.pop(bridge.id, None)
        self.legs[bridge.caller] = (None, CALLER)

    def _start_callback(self, action: StartCallback) -> None:
        """Agent first: ring the reserved agent; when they answer, dial the citizen."""
        contact = self._contact(action.agent_id)
        if contact is None or self.callback_uri is None:
            self._route(CallbackFailed(action.callback_id, CallbackFailure.AGENT_UNAVAILABLE))
            return
        bridge = Bridge(id=action.callback_id, caller=None, queue=action.queue,
                        language="en", number=action.number, callback_id=action.callback_id)
        self._callbacks[action.callback_id] = bridge
        target, peer = contact
        call = self._invite(target, peer, list(action.headers), action.number,
                            "Hotline callback")
        bridge.callback_agent = call
        bridge.agent_id = action.agent_id
        self.legs[call] = (bridge, CB_AGENT)
        log.info("callback %s: attempt %d, ringing agent %s first", action.callback_id,
                 action.attempt, action.agent_id)

    def _dial_citizen(self, bridge: Bridge) -> None:
        assert self.callback_uri is not None
        target = self.callback_uri.replace("{number}", bridge.number)
        try:
            uri = parse_uri(target, "callback_uri")
        except Exception:
            uri = None
        if not isinstance(uri, SipURI):
            self._callback_failed(bridge, CallbackFailure.FAILED)
            return
        call = self._invite(target, None, [("X-Hotline-Callback", bridge.callback_id or "")],
                            "hotline", "Hotline")
        bridge.caller = call
        self.legs[call] = (bridge, CALLER)
        self.loop.call_later(CALLBACK_RING_SECONDS, self._callback_ring_out, call)

    def _callback_ring_out(self, call: Call) -> None:
        if call.state is CallState.CALLING:
            self.ep.cancel(call, self.loop.time())
            self.flush()

    def _callback_failed(self, bridge: Bridge, failure: CallbackFailure) -> None:
        callback_id = bridge.callback_id or ""
        self._callbacks.pop(callback_id, None)
        for leg in (bridge.callback_agent, bridge.caller):
            if leg is not None:
                self.legs[leg] = (None, OTHER)
                self._hangup(leg)
        self._route(CallbackFailed(callback_id, failure))

    def _cancel_callback(self, callback_id: str, reason: str) -> None:
        bridge = self._callbacks.pop(callback_id, None)
        if bridge is None:
            return
        log.info("callback %s: cancelled (%s)", callback_id, reason)
        for leg in (bridge.callback_agent, bridge.caller):
            if leg is not None:
                self.legs[leg] = (None, OTHER)
                self._hangup(leg)

    # -- agents' star codes ------------------------------------------------------------------------

    def on_offered(self, call: Call) -> bool:
        """An inbound INVITE: True when it is an agent's star code (the engine answers it
        as usual; `on_media` then plays the answer)."""
        dialled = call.dialled
        if not dialled.startswith("*"):
            return False
        agent_id = call.remote_user
        if agent_id not in self.router.agents or not self._from_registered_phone(call):
            return False
        try:
            command = parse_star_code(dialled, self.settings.break_reasons or None)
        except StarCodeError as exc:
            self.star[call] = (agent_id, None, str(exc))
            self.legs[call] = (None, STAR)
            return True
        if command is None:
            return False
        self.star[call] = (agent_id, command, None)
        self.legs[call] = (None, STAR)
        return True

    def _from_registered_phone(self, call: Call) -> bool:
        """Is the INVITE from where the agent's authenticated registration came from
        (source address and contact port)? Star codes change an agent's status, so a
        forged From alone must not do it."""
        for binding in self.registrar.lookup_user(call.remote_user, self.loop.time()):
            uri = binding.contact.uri
            port = uri.port or 5060 if isinstance(uri, SipURI) else None
            if binding.source == call.peer.host and port == call.peer.port:
                return True
        log.warning("star code %r claiming agent %s from %s:%d, which is not their "
                    "registered phone: ignored", call.dialled, call.remote_user,
                    call.peer.host, call.peer.port)
        return False

    def media_near(self, call: Call) -> Call | None:
        """Another leg of the bridge `call` belongs to that has media, if any: legs
        mixed together must share a media worker (see hotline.engine.media_workers)."""
        entry = self.legs.get(call)
        bridge = entry[0] if entry is not None else None
        if bridge is None:
            return None
        leg: Call | None
        for leg in (bridge.caller, bridge.agent, bridge.callback_agent, bridge.consult,
                    bridge.offer, bridge.supervisor, *bridge.others):
            if leg is not None and leg is not call and self.media.has_leg(leg):
                return leg
        return None

    def on_media(self, call: Call) -> bool:
        """The media of a leg we own is up (True: the IVR must not start on it)."""
        entry = self.star.get(call)
        if entry is None:
            return call in self.legs
        agent_id, command, error = entry
        if command is None:
            self._play(call, self._render([say.phrase("en", "agent_refused")]), ("acd", "star"))
            log.info("agent %s: refused star code: %s", agent_id, error)
            return True
        actions = self._route(AgentCommandIssued(agent_id, command))
        done = next((a for a in actions if isinstance(a, CommandDone)), None)
        name = _command_phrase(command) if done is not None and done.accepted else "agent_refused"
        self._play(call, self._render([say.phrase("en", name)]), ("acd", "star"))
        return True

    def _command_done(self, action: CommandDone) -> None:
        log.info("agent %s: %s %s%s", action.agent_id, type(action.command).__name__.lower(),
                 "accepted" if action.accepted else "refused",
                 f" ({action.detail})" if action.detail else "")

    # -- presence (RFC 3856/3903: PUBLISH in, SUBSCRIBE in and out) ----------------------------------

    def _expert_for(self, entity: str) -> str | None:
        """The expert a presentity (``sip:user@host``) is, by their own URI or by user at
        our domain."""
        directory = self.router.directory
        expert = directory.find_by_uri(entity)
        if expert is None:
            user = entity.split(":", 1)[-1].split("@", 1)[0]
            expert = directory.find_by_uri(f"sip:{user}@{self.domain}")
        return expert.id if expert is not None else None

    def on_presence_published(self, entity: str, body: bytes | None,
                              expires_at: float | None) -> None:
        """A PUBLISH (or its removal: body None) for `entity`."""
        expert_id = self._expert_for(entity)
        if expert_id is None:
            log.info("presence published for %s, who is not in the directory", entity)
            return
        document = None
        if body is not None:
            try:
                document = parse_pidf(body)
            except PidfError as exc:
                log.info("presence for %s ignored: %s", entity, exc)
                return
        self._route(PresencePublished(expert_id, document, expires_at))
        self.flush()

    def on_subscription(self, subscription: Subscription) -> None:
        """A watcher subscribed to `subscription.entity`: the first NOTIFY at once."""
        expert_id = self._expert_for(subscription.entity)
        now = self.loop.time()
        if expert_id is None:
            self.ep.notify(subscription, None, now, terminate="noresource")
        else:
            self.ep.notify(subscription, self.router.directory.pidf(expert_id), now)
        self.flush()

    def _notify_watchers(self, expert_id: str) -> None:
        expert = self.router.directory.view(expert_id).expert
        user = expert.uri.split(":", 1)[-1].split("@", 1)[0]
        body = self.router.directory.pidf(expert_id)
        now = self.loop.time()
        for entity in {expert.uri.split(";", 1)[0].lower(), f"sip:{user}@{self.domain}"}:
            for watcher in self.ep.watchers(entity):
                self.ep.notify(watcher, body, now)

    def watch_experts(self) -> int:
        """Subscribe to the presence of every expert outside our domain (an enterprise
        phone system's presence server answers); their NOTIFYs feed the directory."""
        count = 0
        now = self.loop.time()
        for view in self.router.directory.experts():
            uri = view.expert.uri
            host = uri.split("@", 1)[-1].split(";", 1)[0].split(":", 1)[0].lower()
            if host == self.domain.lower():
                continue
            try:
                self.ep.subscribe(uri, now, app=view.expert.id)
            except ValueError as exc:
                log.warning("cannot watch %s's presence at %s: %s", view.expert.id, uri, exc)
                continue
            count += 1
        self.flush()
        return count

    def on_presence_notified(self, subscription: Subscription, body: bytes) -> None:
        """A NOTIFY of one of our subscriptions (`watch_experts`)."""
        expert_id = subscription.app if isinstance(subscription.app, str) else None
        if expert_id is None:
            return
        try:
            document = parse_pidf(body)
        except PidfError as exc:
            log.info("presence NOTIFY for %s ignored: %s", expert_id, exc)
            return
        self._route(PresencePublished(expert_id, document, subscription.expires_at))
        self.flush()

    # -- registrations --------------------------------------------------------------------------

    def on_registration(self, change: RegistrationChanged) -> None:
        user = change.username or change.aor.split(":", 1)[-1].split("@", 1)[0]
        live = bool(self.registrar.lookup_user(user, self.loop.time()))
        if user in self.router.agents:
            self._route(AgentRegistered(user) if live else AgentUnregistered(user))
        expert = self.router.directory.find_by_uri(f"sip:{user}@{self.domain}")
        if expert is not None:
            self._route(ExpertRegistration(expert.id, live))
        self.flush()

    # -- SIP outcomes of our legs ------------------------------------------------------------------

    def owns(self, call: Call) -> bool:
        return call in self.legs

    def on_progress(self, call: Call, status: int) -> None:
        entry = self.legs.get(call)
        if entry is None:
            return
        bridge, role = entry
        del bridge, role, status  # ringing needs nothing: the hold music plays on

    def on_answered(self, call: Call) -> None:
        """An INVITE of ours was answered (its media is up)."""
        entry = self.legs.get(call)
        if entry is None:
            return
        bridge, role = entry
        if bridge is None:  # answered after we gave up on it
            self._hangup(call)
            return
        if role == OFFER:
            assert bridge.offer_agent is not None
            self._route(OfferAnswered(bridge.offer_agent, bridge.id))
        elif role == CB_AGENT:
            self._hold_music_to(call, bridge.queue)
            self._dial_citizen(bridge)
        elif role == CALLER and bridge.callback_id is not None:
            self._callbacks.pop(bridge.callback_id, None)
            callback_id = bridge.callback_id
            bridge.id = call.call_id
            self.bridges[bridge.id] = bridge
            self._play(call, self._render([say.phrase(bridge.language, "callback_greeting")]),
                       ("acd", "greeting"))
            self._route(CallbackAnswered(callback_id, bridge.id))
        elif role == CONSULT:
            bridge.consult_answered = True
            if bridge.blind:
                bridge.blind = False
                self._transfer_to_consult(bridge)
            else:
                self._consult_up(bridge)
        elif role == SUPERVISOR:
            bridge.supervisor_answered = True
            self._supervise_up(bridge)
        self.flush()

    def _hold_music_to(self, call: Call, queue: str) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.media.play(call, self._music_for(queue), tag=("acd", "music"), loop=True)

    def cdr_facts(self, call: Call) -> dict[str, Any]:
        """What the contact centre knows of a leg for its call detail record (call before
        `on_ended`): queue, wait, agent, transfer target, and whether the peer is an
        agent's phone or the agent's hang-up ended it."""
        entry = self.legs.get(call)
        found = (entry[0], entry[1]) if entry is not None and entry[0] is not None else None
        if found is None:
            found = self._finished.get(call)
        if found is None:
            return {"remote_agent": entry is not None and entry[1] in (OFFER, AGENT, CB_AGENT)}
        bridge, role = found
        facts: dict[str, Any] = {"remote_agent": role in (OFFER, AGENT, CB_AGENT),
                                 "ended_by_agent": bridge.ended_by == "agent"}
        if role == CALLER:
            waited = bridge.waited
            if waited is None and bridge.queue and bridge.connected_at is None:
                waited = self.loop.time() - bridge.queued_at
            facts.update(queue=bridge.queue or None, queue_wait_s=waited,
                         agent=bridge.agent_id, transferred_to=bridge.transferred_to)
        elif role in (AGENT, OFFER, CB_AGENT):
            facts.update(queue=bridge.queue or None, agent=bridge.agent_id or bridge.offer_agent)
        return facts

    def on_ended(self, call: Call, reason: EndReason, status: int | None) -> None:
        """A leg we own ended (either side)."""
        self._finished.pop(call, None)
        entry = self.legs.pop(call, None)
        self.star.pop(call, None)
        if entry is None:
            return
        bridge, role = entry
        if bridge is None:
            return
        now_ended = reason.value
        if role == CALLER:
            self._caller_gone(bridge, call)
        elif role == OFFER:
            if bridge.offer is call:
                bridge.offer = None
                agent = bridge.offer_agent
                bridge.offer_agent = None
                if agent is not None:
                    self._route(_offer_failure(agent, bridge.id, reason, status))
        elif role == AGENT:
            self._agent_gone(bridge, call)
        elif role == CB_AGENT:
            if bridge.callback_agent is call:
                bridge.callback_agent = None
                self._callback_failed(bridge, CallbackFailure.AGENT_UNAVAILABLE)
        elif role == CONSULT:
            self._consult_gone(bridge, call)
        elif role == OTHER:
            if call in bridge.others:
                bridge.others.remove(call)
            self._maybe_finish(bridge)
        elif role == SUPERVISOR and bridge.supervisor is call:
            bridge.supervisor = None
            bridge.supervisor_id = None
        log.debug("leg %s (%s) ended: %s", call.call_id, role, now_ended)
        self.flush()

    def _caller_gone(self, bridge: Bridge, call: Call) -> None:
        if bridge.callback_id is not None and bridge.agent is None and bridge.id not in self.bridges:
            # A callback's citizen leg that never answered (or was cancelled).
            failure = CallbackFailure.NO_ANSWER
            bridge.caller = None
            self._callback_failed(bridge, failure)
            return
        bridge.caller = None
        if bridge.connected_at is None and bridge.queue and bridge.waited is None:
            bridge.waited = self.loop.time() - bridge.queued_at
        if bridge.connected_at is None and bridge.voicemail is None and bridge.queue:
            self._count("abandoned")  # hung up while waiting
            log.info("call %s: abandoned after %.1f s in %s", bridge.id,
                     self.loop.time() - bridge.queued_at, bridge.queue)
        if bridge.voicemail is not None:
            self._save_voicemail(bridge, call)
        if bridge.recording:
            self._save_recording(bridge, call)
        self._finish(bridge, "caller")

    def _agent_gone(self, bridge: Bridge, call: Call) -> None:
        if bridge.agent is not call:
            return
        bridge.agent = None
        if bridge.consult is not None and bridge.consult_answered and bridge.caller is not None:
            # The agent hung up during a consult: that is an attended transfer.
            self._transfer_to_consult(bridge)
            self._route(CallEnded(bridge.id))
            return
        if bridge.others and bridge.caller is not None:
            # A conference goes on without the agent.
            self._route(CallEnded(bridge.id))
            return
        self._finish(bridge, "agent")

    def _finish(self, bridge: Bridge, side: str) -> None:
        """The call is over: release the agent (wrap-up) and hang up every other leg."""
        if bridge.ended:
            return
        bridge.ended = True
        bridge.ended_by = side
        self.bridges.pop(bridge.id, None)
        if bridge.future is not None and not bridge.future.done():
            bridge.future.cancel()
        if bridge.caller is not None and bridge.recording:
            self._save_recording(bridge, bridge.caller)
        self._route(CallEnded(bridge.id))
        for leg in (bridge.caller, bridge.agent, bridge.offer, bridge.consult,
                    bridge.supervisor, bridge.callback_agent, *bridge.others):
            if leg is not None:
                entry = self.legs.get(leg)
                if entry is not None and entry[0] is bridge:
                    self._finished[leg] = (bridge, entry[1])
                self.legs[leg] = (None, OTHER)
                self._hangup(leg, [("X-Hotline-Result", f"ended_by_{side}")])
        log.info("call %s: over (%s hung up)", bridge.id, side)

    def _maybe_finish(self, bridge: Bridge) -> None:
        parties = [p for p in (bridge.caller, bridge.agent, *bridge.others) if p is not None]
        if len(parties) < 2 and not bridge.ended:
            self._finish(bridge, "last_party")

    # -- agent features: hold, consult, conference, transfer, supervision --------------------------

    def _bridge_of_agent(self, agent_id: str) -> Bridge:
        for bridge in self.bridges.values():
            if bridge.agent_id == agent_id and bridge.agent is not None and not bridge.ended:
                return bridge
        raise ApiError(409, f"agent {agent_id} has no call in progress")

    def hold(self, agent_id: str, held: bool) -> dict[str, Any]:
        """Put the caller on hold (music; the agent hears silence) or back."""
        bridge = self._bridge_of_agent(agent_id)
        self._set_hold(bridge, held)
        return {"call": bridge.id, "held": bridge.held}

    def _set_hold(self, bridge: Bridge, held: bool) -> None:
        if bridge.caller is None or bridge.held == held:
            return
        bridge.held = held
        if held:
            self.media.leave(bridge.caller)
            self._hold_music(bridge, restart=True)
        else:
            self._stop(bridge.caller)
            bridge.music = False
            self.media.join(bridge.caller, bridge.conference)
        log.info("call %s: caller %s", bridge.id, "on hold" if held else "resumed")

    def mute(self, agent_id: str, muted: bool) -> dict[str, Any]:
        """Mute the agent's microphone in the conference (they still hear everyone)."""
        bridge = self._bridge_of_agent(agent_id)
        assert bridge.agent is not None
        self.media.set_muted(bridge.agent, muted)
        log.info("call %s: agent %s %s", bridge.id, agent_id, "muted" if muted else "unmuted")
        return {"call": bridge.id, "muted": muted}

    def on_modified(self, call: Call, *, held: bool) -> None:
        """A re-INVITE from a leg: an agent's phone putting the call on hold
        (sendonly/inactive: we may not send to it) or resuming it (sendrecv)."""
        entry = self.legs.get(call)
        if entry is None or entry[0] is None:
            return
        bridge, role = entry
        if role == AGENT and bridge is not None:
            self._set_hold(bridge, held)

    def consult(self, agent_id: str, *, expert: str | None = None,
                uri: str | None = None) -> dict[str, Any]:
        """The agent calls an expert (from the directory) or a SIP URI; the caller hears
        hold music; agent and third party talk in a conference of their own."""
        bridge = self._bridge_of_agent(agent_id)
        if bridge.consult is not None:
            raise ApiError(409, f"agent {agent_id} is already consulting")
        if expert is not None:
            try:
                view = self.router.directory.view(expert)
            except (AcdError, KeyError):
                raise ApiError(404, f"no expert {expert!r} in the directory") from None
            target = view.expert.uri
        elif uri is not None:
            target = uri
        else:
            raise ApiError(400, "consult needs an expert or a uri")
        try:
            target, target_peer = self._target(target)
        except ApiError as exc:
            raise ApiError(409 if exc.status == 480 else exc.status, exc.message) from None
        self._set_hold(bridge, True)
        call = self._invite(target, target_peer,
                            [("X-Hotline-Call", bridge.id), ("X-Hotline-Consult", agent_id)],
                            agent_id, f"Agent {agent_id}")
        bridge.consult = call
        bridge.consult_expert = expert
        bridge.consult_answered = False
        self.legs[call] = (bridge, CONSULT)
        if expert is not None:
            self._route(ExpertCallStarted(expert, call.call_id))
        self.flush()
        return {"call": bridge.id, "consult": call.call_id, "target": target}

    def _consult_up(self, bridge: Bridge) -> None:
        if bridge.consult is None or bridge.agent is None:
            return
        self._stop(bridge.consult)
        # The agent leaves the caller's conference for the consult one.
        self.media.join(bridge.agent, bridge.consult_conference)
        self.media.join(bridge.consult, bridge.consult_conference)
        log.info("call %s: consult answered", bridge.id)

    def _consult_gone(self, bridge: Bridge, call: Call) -> None:
        if bridge.consult is not call:
            return
        if bridge.consult_expert is not None:
            self._route(ExpertCallEnded(bridge.consult_expert, call.call_id))
        answered, blind = bridge.consult_answered, bridge.blind
        bridge.consult = None
        bridge.consult_expert = None
        bridge.consult_answered = False
        bridge.blind = False
        if blind and not answered and bridge.queue == "" and bridge.caller is not None:
            # A flow's transfer that failed: the flow goes on with the caller.
            self._stop(bridge.caller)
            self.bridges.pop(bridge.id, None)
            self.legs.pop(bridge.caller, None)
            if bridge.future is not None and not bridge.future.done():
                bridge.future.set_result(("failed", {}))
            return
        if blind and not answered and bridge.caller is not None and not bridge.ended:
            # The transfer target did not answer: the caller goes back to the head of
            # the queue rather than being left on hold.
            log.info("call %s: transfer target did not answer: back to queue %s",
                     bridge.id, bridge.queue)
            bridge.agent_id = None
            self._count("transfers_failed")
            self._route(CallQueued(bridge.id, bridge.queue, 9, {}, frozenset(), bridge.number))
            return
        if bridge.agent is not None and not bridge.ended:
            with contextlib.suppress(KeyError):
                self.media.join(bridge.agent, bridge.conference)
            self._set_hold(bridge, False)

    def conference(self, agent_id: str) -> dict[str, Any]:
        """Everyone together: caller, agent and the consulted party."""
        bridge = self._bridge_of_agent(agent_id)
        if bridge.consult is None or not bridge.consult_answered:
            raise ApiError(409, f"agent {agent_id} has no answered consult to conference")
        third = bridge.consult
        self._set_hold(bridge, False)
        assert bridge.agent is not None
        self.media.join(bridge.agent, bridge.conference)
        self.media.join(third, bridge.conference)
        bridge.others.append(third)
        self.legs[third] = (bridge, OTHER)
        bridge.consult = None
        bridge.consult_answered = False
        log.info("call %s: conference of %d", bridge.id, 2 + len(bridge.others))
        return {"call": bridge.id, "parties": 2 + len(bridge.others)}

    def transfer(self, agent_id: str, to: str | None = None, *,
                 refer: bool = False) -> dict[str, Any]:
        """Attended (no `to`: the consulted party takes the caller) or blind (`to`: a
        SIP URI or a registered user, called now; the agent leaves at once). With
        `refer`, the caller's own phone is asked to call `to` (REFER, RFC 3515); if it
        refuses or the call fails, the engine calls `to` itself."""
        bridge = self._bridge_of_agent(agent_id)
        if refer:
            if to is None or not to.startswith(("sip:", "sips:")):
                raise ApiError(400, "a transfer by REFER needs a SIP URI in 'to'")
            if bridge.caller is None or bridge.caller.state is not CallState.CONFIRMED:
                raise ApiError(409, f"call {bridge.id}: the caller's leg cannot take a REFER")
            self.ep.refer(bridge.caller, to, self.loop.time(),
                          referred_by=f"<sip:{agent_id}@{self.domain}>")
            bridge.refer_to = to
            self._set_hold(bridge, True)
            self._count("transfers_refer")
            log.info("call %s: REFER to %s sent to the caller's side", bridge.id, to)
        elif to is None:
            if bridge.consult is None or not bridge.consult_answered:
                raise ApiError(409, f"agent {agent_id} has no answered consult to transfer to")
            self._transfer_to_consult(bridge)
        else:
            self._blind_transfer(bridge, to)
        agent = bridge.agent
        bridge.agent = None
        if agent is not None:
            self.legs[agent] = (None, OTHER)
            self._hangup(agent, [("X-Hotline-Result", "transferred")])
        self._route(CallEnded(bridge.id))
        self.flush()
        return {"call": bridge.id, "transferred": True}

    def _transfer_to_consult(self, bridge: Bridge) -> None:
        third = bridge.consult
        assert third is not None
        if bridge.transferred_to is None:
            bridge.transferred_to = bridge.consult_expert or str(third.invite.uri)
        bridge.consult = None
        bridge.consult_answered = False
        bridge.others.append(third)
        self.legs[third] = (bridge, OTHER)
        self._set_hold(bridge, False)
        assert bridge.caller is not None
        self._stop(bridge.caller)
        bridge.music = False
        self._stop(third)
        self.media.join(bridge.caller, bridge.conference)
        self.media.join(third, bridge.conference)
        self._count("transfers_completed")
        log.info("call %s: transferred to the consulted party", bridge.id)
        if bridge.future is not None and not bridge.future.done():
            bridge.future.set_result(("ok", {}))

    def _blind_transfer(self, bridge: Bridge, to: str) -> None:
        target, peer = self._target(to)
        bridge.transferred_to = to
        self._set_hold(bridge, True)
        call = self._invite(target, peer, [("X-Hotline-Call", bridge.id),
                                           ("X-Hotline-Transfer", "blind")],
                            bridge.number, f"Hotline {bridge.queue}")
        bridge.consult = call
        bridge.consult_answered = False
        bridge.blind = True
        self.legs[call] = (bridge, CONSULT)
        self._count("transfers_blind")
        log.info("call %s: blind transfer to %s", bridge.id, target)

    def on_refer_answered(self, call: Call, status: int) -> None:
        """The caller's side answered our REFER: 2xx — it will call; else we do."""
        bridge = self._bridge_of_caller(call)
        if bridge is None or bridge.refer_to is None:
            return
        if status >= 300:
            log.info("call %s: REFER refused (%d): calling %s ourselves", bridge.id, status,
                     bridge.refer_to)
            self._refer_failed(bridge)
        self.flush()

    def on_refer_progress(self, call: Call, status: int, final: bool) -> None:
        """A NOTIFY about our REFER: a final 2xx means the caller is with the target."""
        bridge = self._bridge_of_caller(call)
        if bridge is None or bridge.refer_to is None or not final:
            return
        if 200 <= status < 300:
            log.info("call %s: the caller's side reached %s: transferred", bridge.id,
                     bridge.refer_to)
            bridge.transferred_to, bridge.refer_to = bridge.refer_to, None
            self._count("transfers_completed")
            self._hangup(call, [("X-Hotline-Result", "transferred")])
        else:
            log.info("call %s: the caller's side could not reach %s (%d): calling it "
                     "ourselves", bridge.id, bridge.refer_to, status)
            self._refer_failed(bridge)
        self.flush()

    def _refer_failed(self, bridge: Bridge) -> None:
        to, bridge.refer_to = bridge.refer_to, None
        assert to is not None
        try:
            self._blind_transfer(bridge, to)
        except ApiError as exc:
            log.info("call %s: cannot transfer to %s: %s; back to the queue", bridge.id, to,
                     exc.message)
            self._route(CallQueued(bridge.id, bridge.queue, 9, {}, frozenset(), bridge.number))

    def _bridge_of_caller(self, call: Call) -> Bridge | None:
        entry = self.legs.get(call)
        if entry is None or entry[1] != CALLER:
            return None
        return entry[0]

    def on_refer(self, event: ReferReceived) -> bool:
        """A REFER from an agent's phone (its transfer key): a blind transfer of the
        caller to the Refer-To target. True when handled (answered 202 or an error)."""
        entry = self.legs.get(event.call)
        if entry is None or entry[1] != AGENT or entry[0] is None:
            return False
        bridge = entry[0]
        now = self.loop.time()
        target = str(event.refer_to.uri)
        try:
            self._blind_transfer(bridge, target.split("?", 1)[0])
        except ApiError as exc:
            log.info("call %s: REFER to %s refused: %s", bridge.id, target, exc.message)
            self.ep.answer_refer(event, 403 if exc.status == 404 else 400, now)
            return True
        self.ep.answer_refer(event, 202, now)
        notify = getattr(self.ep, "notify_refer", None)
        if notify is not None:
            with contextlib.suppress(Exception):
                notify(event.call, 200, now, final=True)
        agent = bridge.agent
        bridge.agent = None
        if agent is not None:
            self.legs[agent] = (None, OTHER)
            self.loop.call_later(0.5, self._hangup, agent, [("X-Hotline-Result", "transferred")])
        self._route(CallEnded(bridge.id))
        return True

    def monitor(self, agent_id: str, supervisor_id: str, mode: str) -> dict[str, Any]:
        """A supervisor joins the agent's call: listen, whisper (only the agent hears
        them) or barge (everyone does). Their phone is called; an active supervisor
        changes mode at once."""
        roles = {"listen": Role.LISTEN, "whisper": Role.WHISPER, "barge": Role.MEMBER}
        if mode not in roles:
            raise ApiError(400, f"mode must be listen, whisper or barge, not {mode!r}")
        settings = self.agent_settings.get(supervisor_id)
        if settings is None or not settings.supervisor:
            raise ApiError(403, f"{supervisor_id!r} is not a supervisor")
        bridge = self._bridge_of_agent(agent_id)
        bridge.supervisor_mode = roles[mode]
        if bridge.supervisor is not None and bridge.supervisor_id == supervisor_id:
            if bridge.supervisor_answered:
                self._supervise_up(bridge)
            return {"call": bridge.id, "mode": mode}
        if bridge.supervisor is not None:
            raise ApiError(409, f"call {bridge.id} already has a supervisor")
        contact = self._contact(supervisor_id)
        if contact is None:
            raise ApiError(409, f"supervisor {supervisor_id} has no registered phone")
        target, peer = contact
        call = self._invite(target, peer, [("X-Hotline-Call", bridge.id),
                                           ("X-Hotline-Monitor", mode)],
                            agent_id, f"Monitor {agent_id}")
        bridge.supervisor = call
        bridge.supervisor_id = supervisor_id
        bridge.supervisor_answered = False
        self.legs[call] = (bridge, SUPERVISOR)
        self.flush()
        return {"call": bridge.id, "mode": mode, "supervisor_leg": call.call_id}

    def _supervise_up(self, bridge: Bridge) -> None:
        leg = bridge.supervisor
        if leg is None or bridge.agent is None:
            return
        mode = bridge.supervisor_mode
        self.media.join(leg, bridge.conference, role=mode,
                             coach=bridge.agent if mode is Role.WHISPER else None)
        log.info("call %s: supervisor %s %s", bridge.id, bridge.supervisor_id, mode.value)

    # -- recording -----------------------------------------------------------------------------

    def _start_recording(self, bridge: Bridge) -> None:
        if bridge.caller is None:
            return
        try:
            self.media.start_recording(bridge.caller, max_seconds=3600.0)
        except (KeyError, ValueError) as exc:
            log.warning("call %s: cannot record: %s", bridge.id, exc)
            return
        bridge.recording = True

    def pause_recording(self, agent_id: str, paused: bool) -> dict[str, Any]:
        """Pause while the caller speaks a sensitive value (card, Medicare number)."""
        bridge = self._bridge_of_agent(agent_id)
        if not bridge.recording or bridge.caller is None:
            raise ApiError(409, f"call {bridge.id} is not being recorded")
        self.media.pause_recording(bridge.caller, paused)
        return {"call": bridge.id, "recording_paused": paused}

    def _save_recording(self, bridge: Bridge, call: Call) -> None:
        bridge.recording = False
        if not self.media.has_leg(call):
            return
        path = self._file_for(self.recordings_dir, bridge.id)
        self._saved(self.media.stop_recording(call, path), bridge.id, "recording", path)

    def _saved(self, future: asyncio.Future[Any], call_id: str, what: str, path: Path,
               saved: Callable[[], None] | None = None) -> None:
        """Log how writing a recording (a future of it, None when there was none) went;
        `saved` is called once one was written."""
        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                log.error("call %s: cannot write the %s to %s: %s", call_id, what, path, exc)
            elif f.result() is not None:
                log.info("call %s: %s saved to %s", call_id, what, path)
                if saved is not None:
                    saved()

        future.add_done_callback(done)

    def _save_voicemail(self, bridge: Bridge, call: Call) -> None:
        if not self.media.has_leg(call):
            return
        path = self._file_for(self.voicemail_dir / (bridge.voicemail or "default"), bridge.id)
        self._saved(self.media.stop_recording(call, path), bridge.id, "voicemail", path,
                    lambda: self._count("voicemails"))

    def _file_for(self, folder: Path, call_id: str) -> Path:
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in call_id)[:120]
        return folder / day / f"{safe}.wav"

    # -- the API's commands and views ------------------------------------------------------------

    def command(self, agent_id: str, command: AgentCommand) -> dict[str, Any]:
        if agent_id not in self.router.agents:
            raise ApiError(404, f"no agent {agent_id!r}")
        actions = self._route(AgentCommandIssued(agent_id, command))
        self.flush()
        done = next((a for a in actions if isinstance(a, CommandDone)), None)
        if done is not None and not done.accepted:
            raise ApiError(409, done.detail or "refused")
        return self.agent_view(agent_id)

    def set_expert_status(self, expert_id: str, status: str | None,
                          note: str | None) -> dict[str, Any]:
        try:
            self.router.directory.view(expert_id)
        except (AcdError, KeyError):
            raise ApiError(404, f"no expert {expert_id!r}") from None
        try:
            value = None if status is None else PresenceStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in PresenceStatus)
            raise ApiError(400, f"status must be one of {allowed}, or null") from None
        self._route(ExpertStatusSet(expert_id, value, note))
        return self.expert_view(expert_id)

    def _wall(self, at: float) -> str:
        """A loop-clock instant as UTC ISO-8601 (for people and other systems)."""
        offset = time.time() - self.loop.time()
        return dt.datetime.fromtimestamp(at + offset, dt.UTC).isoformat(timespec="seconds")

    def agent_history(self, agent_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The agent's latest status and state changes, newest first."""
        agent = self.router.agent(agent_id)
        return [{"at": self._wall(c.at), "cause": c.cause, "status": c.status.value,
                 "state": c.state.value, "reason": c.reason, "call": c.call_id}
                for c in list(agent.history)[::-1][:limit]]

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        agent = self.router.agent(agent_id)
        bridge = next((b for b in self.bridges.values() if b.agent_id == agent_id), None)
        return {
            "id": agent.id, "name": agent.config.name,
            "status": agent.status.value, "state": agent.state.value,
            "status_since": self._wall(agent.status_since),
            "state_since": self._wall(agent.state_since),
            "break_reason": getattr(agent, "break_reason", None),
            "call": agent.call_id, "skills": dict(agent.config.skills),
            "registered": bool(self.registrar.lookup_user(agent_id, self.loop.time())),
            "held": bridge.held if bridge is not None else None,
            "supervisor": self.agent_settings[agent_id].supervisor
            if agent_id in self.agent_settings else False,
        }

    def agents_view(self) -> list[dict[str, Any]]:
        return [self.agent_view(a) for a in sorted(self.router.agents)]

    def queues_view(self) -> list[dict[str, Any]]:
        now = self.loop.time()
        out = []
        for name in sorted(self.router.queues):
            s = self.router.queue_status(name, now)
            out.append({
                "name": s.name, "waiting": s.waiting, "offered": s.offered,
                "callbacks": s.callbacks, "longest_wait": round(s.longest_wait, 1),
                "staffed": s.staffed, "ready": s.ready,
                "handle_time": None if s.handle_time is None else round(s.handle_time, 1),
                "samples": s.samples,
                "expected_wait": None if s.expected_wait is None else round(s.expected_wait),
            })
        return out

    def expert_view(self, expert_id: str) -> dict[str, Any]:
        view = self.router.directory.view(expert_id)
        return _expert_dict(view)

    def experts_view(self, skill: str | None, available: bool,
                     min_proficiency: int = 1) -> list[dict[str, Any]]:
        directory = self.router.directory
        if skill is not None and available:
            views = directory.available_experts(skill, min_proficiency)
        else:
            views = directory.experts()
            if skill is not None:
                views = [v for v in views if v.proficiency(skill) >= min_proficiency]
            if available:
                views = [v for v in views if v.status is PresenceStatus.AVAILABLE]
        return [_expert_dict(v) for v in views]

    def callbacks_view(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "queue": r.queue, "state": r.state.value,
                 "attempts": r.attempts, "number": _mask_number(r.number)}
                for r in self.router.callbacks()]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _expert_dict(view: Any) -> dict[str, Any]:
    e = view.expert
    return {"id": e.id, "name": e.name, "department": e.department, "uri": e.uri,
            "skills": dict(e.skills), "status": view.status.value,
            "note": getattr(view, "note", None)}


def _mask_number(number: str) -> str:
    return "•" * max(0, len(number) - 3) + number[-3:]


def _command_phrase(command: AgentCommand) -> str:
    if isinstance(command, Login):
        return "agent_login"
    if isinstance(command, Logout):
        return "agent_logout"
    if isinstance(command, Break):
        return "agent_break"
    assert isinstance(command, Back)
    return "agent_back"


def _offer_failure(agent_id: str, call_id: str, reason: EndReason,
                   status: int | None) -> Event:
    if reason is EndReason.TIMEOUT or status == 408:
        return OfferTimedOut(agent_id, call_id)
    if status in (486, 600):
        return OfferRejected(agent_id, call_id, OfferFailure.BUSY)
    if status in (603, 403):
        return OfferRejected(agent_id, call_id, OfferFailure.REJECTED)
    return OfferRejected(agent_id, call_id, OfferFailure.UNREACHABLE)
