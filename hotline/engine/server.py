"""The composition root behind `hotline serve`: config → transports → SIP endpoint →
call handling, one timer for the earliest core deadline, graceful drain on SIGTERM.

Owns the asyncio loop's use: sockets (through engine.transport), the single timer
handle, signal handlers and the clock (`loop.time()` is the `now` fed to the cores).
Everything protocol-shaped is delegated to hotline.sip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import signal
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from hotline.cdr import DEFAULT_PLAYOUT_MS, CallRecord, Direction, hangup_side, media_quality
from hotline.config import Config
from hotline.engine.bookings import Bookings
from hotline.engine.callback_store import FileCallbackRepository
from hotline.engine.closures import closures_file, read_closures
from hotline.engine.contact_centre import ContactCentre
from hotline.engine.flows import FlowSet
from hotline.engine.gctune import GcStats, freeze_startup, full_collection_due, tune
from hotline.engine.ivr_calls import IvrCall, IvrCalls
from hotline.engine.media_loop import DtmfMethod, Histogram, LegSummary, MediaLoop
from hotline.engine.media_workers import MediaPlane, MediaWorkers
from hotline.engine.ports import PortsExhausted, RtpPortPool
from hotline.engine.transport import SipTransports
from hotline.engine.tts import espeak_synthesise
from hotline.media.prompts import PromptCache
from hotline.sip.addr import Peer
from hotline.sip.auth import Algorithm, DigestVerifier
from hotline.sip.auth_policy import DigestAuthenticator
from hotline.sip.endpoint import (
    Call,
    CallConfirmed,
    CallEnded,
    CallOffered,
    CallState,
    DtmfInfoReceived,
    Endpoint,
    EndpointConfig,
    Event,
    OutboundAnswered,
    OutboundProgress,
    PresenceNotified,
    PresencePublished,
    PresenceRemoved,
    ReferAnswered,
    ReferProgress,
    ReferReceived,
    Registered,
    SessionModified,
    SubscriptionRequested,
)
from hotline.sip.errors import FramingError, ParseError
from hotline.sip.events import PresencePolicy
from hotline.sip.headers import parse_address
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import Registrar, RegistrarPolicy
from hotline.sip.sdp_session import MediaSession, SdpRejected
from hotline.sip.transaction import Timers
from hotline.sip.uri import SipURI, TelURI
from hotline.web.http import HttpServer
from hotline.web.webrtc_gateway import GatewayConfig, WebRtcGateway

log = logging.getLogger("hotline.engine")
dtmf_log = logging.getLogger("hotline.dtmf")  # digits shown only at debug level


@dataclass
class CallMedia:
    """What the engine keeps per call until the media plane takes over."""

    rtp_port: int
    session: MediaSession
    dtmf: list[str] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    answered_at: dt.datetime | None = None


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transports = SipTransports(
            self._on_message,
            max_message=config.sip.max_message_bytes,
            on_stream_error=self._on_stream_error,
        )
        self.ports = RtpPortPool(config.rtp.port_min, config.rtp.port_max)
        self.endpoint: Endpoint | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self.media_host = config.sip.advertised_host or config.sip.listen[0].host
        self.media: MediaPlane | None = None
        paths = config.paths
        self.prompts = PromptCache(paths.audio, paths.data / "cache",
                                   synthesise=espeak_synthesise)
        self.flows = FlowSet(paths.flows, paths.audio, self.prompts, config.ivr.default_flow)
        self.closures_path = closures_file(paths.data)
        # shared with every session: an hours step reads it when the call reaches it
        self.closures: set[str] = set(config.ivr.closed) | read_closures(self.closures_path)
        if self.closures:
            log.warning("emergency closure in force for: %s", ", ".join(sorted(self.closures)))
        self.ivr: IvrCalls | None = None
        self.bookings = Bookings(config, config.ivr.timezone)
        self.dtmf_counts: dict[str, int] = {}
        self.call_jitter = Histogram((0.001, 0.002, 0.005, 0.010, 0.020, 0.030, 0.050, 0.100))
        self.http: HttpServer | None = None
        self.gc_stats = GcStats()
        self._reload_task: asyncio.Task[None] | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._drain_pending = False
        self._reloading = False
        self.acd: ContactCentre | None = None
        self.media_refusals = 0  # new calls refused because the media tick is overloaded
        self.webrtc: WebRtcGateway | None = None
        env = config.http.api_token_env
        token = os.environ.get(env, "") if env else ""
        self.api_token: str | None = token if len(token) >= 16 else None
        if token and self.api_token is None:
            log.warning("%s is shorter than 16 characters: the /api stays disabled", env)
        self.callbacks = FileCallbackRepository(paths.data / "callbacks.json")
        self._flush_soon = False

    def load_flows(self) -> bool:
        """Load every flow before taking calls; False (errors logged) if any is broken."""
        return self.flows.load_now()

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._install_signals()
        local: dict[str, tuple[str, int]] = {}
        for la in self.config.sip.listen:
            bound = await self.transports.listen(la.transport, la.host, la.port)
            host = self.config.sip.advertised_host or bound.host
            local.setdefault(la.transport, (host, bound.port))
            log.info("listening on %s %s:%d", la.transport, bound.host, bound.port)
        cfg = self.config
        timers = Timers(cfg.sip.timers.t1_ms / 1000, cfg.sip.timers.t2_ms / 1000,
                        cfg.sip.timers.t4_ms / 1000)
        reg = cfg.registrar
        registrar = Registrar(
            RegistrarPolicy(reg.min_expires, reg.max_expires, reg.default_expires,
                            reg.max_contacts_per_aor),
            self._authenticator() if reg.require_auth else None,
        )
        self.endpoint = Endpoint(
            EndpointConfig(
                local=local,
                domain=cfg.sip.domain,
                user_agent=cfg.sip.user_agent,
                timers=timers,
                force_rport=cfg.sip.force_rport,
                mtu=cfg.sip.mtu,
                max_calls=cfg.limits.max_calls,
                max_cps=cfg.limits.max_cps,
                requests_per_source=(cfg.limits.requests_per_source.rate,
                                     cfg.limits.requests_per_source.burst),
                register_per_source=(cfg.limits.register_per_source.rate,
                                     cfg.limits.register_per_source.burst),
            ),
            random_bytes=os.urandom,
            registrar=registrar,
            presence=PresencePolicy(check_body=_pidf_problem),
            publish_auth=registrar.authenticator,
        )
        if cfg.rtp.media_workers:
            self.media = MediaWorkers(
                self.loop, cfg.sip.listen[0].host, workers=cfg.rtp.media_workers,
                on_digit=self._on_digit, on_inactive=self._on_rtp_inactive,
                inactivity_timeout=cfg.rtp.inactivity_timeout_seconds,
                on_play_done=self._on_play_done, log_format=cfg.logging.format,
            )
        else:
            self.media = MediaLoop(
                self.loop, cfg.sip.listen[0].host, on_digit=self._on_digit,
                on_inactive=self._on_rtp_inactive,
                inactivity_timeout=cfg.rtp.inactivity_timeout_seconds,
                on_play_done=self._on_play_done,
            )
        self.acd = ContactCentre(
            self.loop, cfg.acd, endpoint=self.endpoint, registrar=registrar, media=self.media,
            prompts=self.prompts, new_leg=self._new_leg, start_media=self._start_media,
            flush=self.flush, domain=cfg.sip.domain, data_dir=cfg.paths.data,
            repository=self.callbacks, callback_uri=cfg.acd.callback_uri,
        )
        self.loop.run_in_executor(None, self.acd.prepare)
        if cfg.acd.watch_expert_presence:
            self.acd.watch_experts()
        self.ivr = IvrCalls(
            self.loop, self.flows, media=self.media, hangup=self._flow_hangup,
            timezone=cfg.ivr.timezone,
            trace_dir=cfg.paths.data / "traces" if cfg.ivr.traces else None,
            closures=self.closures,
            booking=self.bookings.handle,
            queue=self._queue_service,
            transfer=self._transfer_service,
        )
        if cfg.ivr.reload_check_seconds > 0:
            self._reload_task = self.loop.create_task(self._watch_flows())
        self._gc_task = self.loop.create_task(self._collect_garbage())
        if cfg.webrtc.enabled:
            host, port = next((h, p) for t, h, p in self.local_addrs if t == "udp")
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            self.webrtc = WebRtcGateway(GatewayConfig(
                engine_host=host, engine_port=port, domain=cfg.sip.domain,
                bind_host=cfg.webrtc.bind_host, register_expires=cfg.webrtc.register_expires,
                answer_timeout=cfg.webrtc.answer_timeout_seconds, timers=timers))
            await self.webrtc.start()
        if cfg.http.enabled:
            self.http = HttpServer(self)
            await self.http.start(cfg.http.host, cfg.http.port)

    def not_ready_reason(self) -> str | None:
        """Why the engine should not get new calls now (None: it should)."""
        if self.endpoint is None:
            return "starting"
        if self.endpoint.draining:
            return "draining"
        if not any(True for _ in self.flows.flows()):
            return "no flow loaded"
        if not self.bookings.opened:
            return "booking store not open"
        if self.media is not None and not self.media.available:
            return "no media worker running"
        return None

    def _authenticator(self) -> DigestAuthenticator:
        cfg = self.config
        reg = cfg.registrar
        realm = reg.realm or cfg.sip.domain
        algorithms = tuple(Algorithm(a) for a in reg.algorithms)

        def lookup(username: str) -> dict[Algorithm, str] | None:
            user = reg.user(username)
            if user is None:
                return None
            out = {}
            for name in reg.algorithms:
                ha1 = user.ha1(name)
                if ha1 is not None:
                    out[Algorithm(name)] = ha1
            return out

        verifier = DigestVerifier(
            realm, os.urandom(32), lookup, random_bytes=os.urandom, algorithms=algorithms,
            nonce_ttl=float(reg.nonce_ttl_seconds), allow_no_qop=reg.allow_rfc2069,
        )
        fail = cfg.limits.auth_failures_per_source
        return DigestAuthenticator(verifier, RateLimiter(fail.rate, fail.burst, max_keys=100_000))

    @property
    def local_addrs(self) -> list[tuple[str, str, int]]:
        return [(a.transport, a.host, a.port) for a in self.transports.local_addrs]

    def _install_signals(self) -> None:
        """SIGTERM/SIGINT drain, SIGHUP reloads — from the first moment of start-up, so a
        signal that comes while the engine is still starting is never the default kill."""
        assert self.loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(sig, self.request_drain)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            self.loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def run_until_stopped(self) -> None:
        if self._drain_pending:  # asked to stop while starting
            self.request_drain()
        await self._stopped.wait()

    def request_drain(self) -> None:
        if self.endpoint is None or self.media is None:
            self._drain_pending = True  # still starting: drain once started
            return
        if self._drain_task is None:
            assert self.loop is not None
            self._drain_task = self.loop.create_task(self.drain())

    async def drain(self) -> None:
        """Stop taking calls (503), let calls finish for drain_seconds, BYE the rest.
        Whatever goes wrong on the way, the engine stops."""
        try:
            await self._drain()
        except Exception:
            log.exception("draining failed: stopping now")
            await self.stop()

    async def _drain(self) -> None:
        ep = self.endpoint
        assert ep is not None and self.loop is not None
        ep.start_drain()
        if ep.end_subscriptions(self.loop.time()):  # watchers hear "terminated" now
            self._after_input()
        log.info("draining: %d calls in progress, up to %.0f s",
                 ep.active_calls, self.config.limits.drain_seconds)
        deadline = self.loop.time() + self.config.limits.drain_seconds
        while ep.active_calls and self.loop.time() < deadline:
            await asyncio.sleep(0.2)
        if ep.active_calls:
            n = ep.hangup_all(self.loop.time(), [("Reason", 'SIP;cause=503;text="Shutting down"')])
            self._after_input()
            log.info("drain time over: sent BYE to %d calls", n)
            # Give the BYEs a moment to be answered (or retransmitted a few times).
            end = self.loop.time() + min(2.0, 4 * ep.config.timers.t1)
            while ep.layer.client_count and self.loop.time() < end:
                await asyncio.sleep(0.05)
        await self.stop()

    # -- flows -------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload changed flows and the closure switch (SIGHUP): flows are checked first
        and swapped in only if good."""
        assert self.loop is not None
        try:
            self.refresh_closures()
        except OSError as exc:
            log.warning("cannot read %s: %s", self.closures_path, exc)
        self.loop.create_task(self.reload_flows())

    async def reload_flows(self) -> bool:
        """Load changed flow files in a worker thread, then swap them in at once. True
        when every file loaded; files with errors keep their running version."""
        assert self.loop is not None
        if self._reloading:
            return False
        self._reloading = True
        try:
            prepared = await self.loop.run_in_executor(None, self.flows.prepare)
        except Exception:
            log.exception("flow reload failed")
            return False
        finally:
            self._reloading = False
        self.flows.commit(*prepared)
        return not prepared[1]

    def refresh_closures(self) -> None:
        """Apply the closure file (and config's `ivr.closed`) to the shared set in place."""
        wanted = set(self.config.ivr.closed) | read_closures(self.closures_path)
        for name in sorted(wanted - self.closures):
            log.warning("emergency closure of opening hours %r: ON", name)
        for name in sorted(self.closures - wanted):
            log.warning("emergency closure of opening hours %r: OFF", name)
        self.closures.intersection_update(wanted)
        self.closures.update(wanted)

    async def _collect_garbage(self) -> None:
        """Full collections at quiet moments (see hotline.engine.gctune)."""
        assert self.loop is not None
        last = self.loop.time()
        while True:
            await asyncio.sleep(10.0)
            active = self.endpoint.active_calls if self.endpoint is not None else 0
            if full_collection_due(self.loop.time() - last, active):
                gc.collect()
                last = self.loop.time()

    async def _watch_flows(self) -> None:
        period = self.config.ivr.reload_check_seconds
        while True:
            await asyncio.sleep(period)
            try:
                self.refresh_closures()
            except OSError as exc:
                log.warning("cannot read %s: %s", self.closures_path, exc)
            try:
                changed = await asyncio.get_running_loop().run_in_executor(
                    None, self.flows.changed)
            except Exception:
                log.exception("cannot look at the flows directory")
                continue
            if changed:
                log.info("flow files changed: reloading")
                await self.reload_flows()

    async def stop(self) -> None:
        if self.webrtc is not None:  # first: the engine still answers its un-REGISTERs
            await self.webrtc.stop()
            self.webrtc = None
        if self.http is not None:
            await self.http.stop()
        if self._reload_task is not None:
            self._reload_task.cancel()
        if self._gc_task is not None:
            self._gc_task.cancel()
        if self.ivr is not None:
            self.ivr.close()
        if self.acd is not None:
            self.acd.close()
        await self.loop.run_in_executor(None, self.callbacks.close) if self.loop else None
        if self._timer is not None:
            self._timer.cancel()
        if self.media is not None:
            self.media.close()
        await self.transports.close()
        # Last: the store writes the detail records still queued (a late BYE's too).
        await self.bookings.close()
        self._stopped.set()

    # -- input ------------------------------------------------------------------

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _on_message(self, data: bytes, peer: Peer, local: object) -> None:
        ep = self.endpoint
        if ep is None:
            return
        ep.receive(data, peer, self._now())
        self._after_input()

    def _on_stream_error(self, data: bytes, peer: Peer, err: FramingError) -> None:
        log.info("closing %s: %s", peer, err.reason)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        ep = self.endpoint
        if ep is None:
            return
        ep.handle_timer(self._now())
        self._after_input()

    def _after_input(self) -> None:
        ep = self.endpoint
        assert ep is not None and self.loop is not None
        # Handling events may queue more events (e.g. answering ends a call).
        for _ in range(8):
            events = ep.take_events()
            if not events:
                break
            for ev in events:
                try:
                    self._on_event(ev)
                except Exception:
                    log.exception("error handling %s", type(ev).__name__)
        for data, peer in ep.datagrams_to_send():
            self.transports.send(data, peer)
        self._arm(ep.next_timer())

    def flush(self) -> None:
        """Get the endpoint's datagrams out soon (after work done outside an input)."""
        if self._flush_soon or self.loop is None:
            return
        self._flush_soon = True

        def run() -> None:
            self._flush_soon = False
            if self.endpoint is not None:
                self._after_input()

        self.loop.call_soon(run)

    def _new_leg(self) -> tuple[CallMedia, bytes]:
        """A media port and our SDP offer for a call the engine places."""
        port = self.ports.allocate()
        session = MediaSession(self.media_host, port)
        return CallMedia(port, session), session.answer_or_offer(None)

    def _queue_service(self, key: object, name: str, args: Any, sensitive: frozenset[str],
                       caller: str) -> asyncio.Future[tuple[str, dict[str, Any]]]:
        assert self.acd is not None
        if not isinstance(key, Call):
            raise TypeError("a queued call is a SIP call")
        return self.acd.enqueue(key, name, args, sensitive, caller)

    def _transfer_service(self, key: object, to: str, caller: str
                          ) -> asyncio.Future[tuple[str, dict[str, Any]]]:
        assert self.acd is not None
        if not isinstance(key, Call):
            raise TypeError("a transferred call is a SIP call")
        return self.acd.transfer_call(key, to, caller)

    def _arm(self, at: float | None) -> None:
        assert self.loop is not None
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)

    # -- calls ------------------------------------------------------------------

    def _answer(self, call: Call, sdp: bytes, from_timer: bool) -> None:
        ep = self.endpoint
        assert ep is not None
        if call.state is not CallState.OFFERED:
            return  # cancelled or ended while ringing
        ep.answer(call, sdp, self._now())
        if isinstance(call.app, CallMedia):
            call.app.answered_at = dt.datetime.now(dt.UTC)
        log.info("answered call %s from %s to %s", call.call_id, call.remote_user, call.dialled)
        self._start_media(call)
        if from_timer:
            self._after_input()

    def _on_event(self, ev: Event) -> None:
        ep = self.endpoint
        assert ep is not None
        now = self._now()
        if isinstance(ev, CallOffered):
            call = ev.call
            agent_code = self.acd is not None and self.acd.on_offered(call)
            if not agent_code and self.flows.route(call.dialled) is None:
                ep.reject(call, 404, now, "No flow for this number")
                log.info("call %s to %r: no flow answers it (404)", call.call_id, call.dialled)
                return
            if self.media is not None and self.media.overloaded():
                self.media_refusals += 1
                ep.reject(call, 503, now, "Media overloaded", [("Retry-After", "5")])
                log.warning("call %s refused: the media tick is overloaded (load %.2f)",
                            call.call_id, self.media.load)
                return
            try:
                port = self.ports.allocate()
            except PortsExhausted:
                ep.reject(call, 503, now, "No media ports", [("Retry-After", "5")])
                return
            session = MediaSession(self.media_host, port)
            try:
                sdp = session.answer_or_offer(ev.sdp)
            except SdpRejected as exc:
                self.ports.release(port)
                ep.reject(call, exc.status, now, exc.reason[:100])
                return
            call.app = CallMedia(port, session)
            ring = self.config.sip.ring_ms / 1000
            if ring > 0:
                ep.ring(call, now)
                assert self.loop is not None
                self.loop.call_later(ring, self._answer, call, sdp, True)
            else:
                self._answer(call, sdp, False)
        elif isinstance(ev, CallConfirmed):
            media = ev.call.app
            if isinstance(media, CallMedia) and ev.sdp is not None:
                try:
                    media.session.accept_answer(ev.sdp)
                except SdpRejected as exc:
                    log.info("bad SDP answer in ACK on %s: %s", ev.call.call_id, exc.reason)
                    ep.hangup(ev.call, now)
                    return
            self._start_media(ev.call)
        elif isinstance(ev, SessionModified):
            media = ev.call.app
            if not isinstance(media, CallMedia):
                ep.answer_modify(ev.call, 488, None, now)
                return
            try:
                sdp = media.session.answer_or_offer(ev.sdp)
            except SdpRejected as exc:
                ep.answer_modify(ev.call, exc.status, None, now)
                return
            ep.answer_modify(ev.call, 200, sdp, now)
            if self.media is not None and media.session.media is not None:
                self.media.update(ev.call, media.session.media)
                if self.acd is not None:
                    self.acd.on_modified(ev.call, held=not media.session.media.sends)
        elif isinstance(ev, CallEnded):
            facts: dict[str, Any] = {}
            if self.acd is not None:
                facts = self.acd.cdr_facts(ev.call)
                self.acd.on_ended(ev.call, ev.reason, ev.status)
            media = ev.call.app
            if isinstance(media, CallMedia) and self.media is not None:
                # The leg's sockets are closed (by a worker process, perhaps) before
                # its port is given out again.
                ended = self.media.end_leg(ev.call)
                if ended.done():
                    self._call_ended(ev, media, ended, facts)
                else:
                    ended.add_done_callback(
                        lambda f: self._call_ended(ev, media, f, facts))
            else:
                self._call_ended(ev, media, None, facts)
        elif isinstance(ev, DtmfInfoReceived):
            media = ev.call.app
            if isinstance(media, CallMedia):
                media.dtmf.append(ev.digit)
            dtmf_log.info("call %s: DTMF %s by INFO", ev.call.call_id, _shown(ev.digit))
            self.dtmf_counts["info"] = self.dtmf_counts.get("info", 0) + 1
            if self.acd is not None and self.acd.on_digit(ev.call, ev.digit):
                return
            if self.ivr is not None:
                self.ivr.digit(ev.call, ev.digit)
        elif isinstance(ev, ReferReceived):
            if self.acd is None or not self.acd.on_refer(ev):
                ep.answer_refer(ev, 603, now)
        elif isinstance(ev, Registered):
            log.info("registration %s: %d contact(s)", ev.change.aor, len(ev.change.contacts))
            if self.acd is not None:
                self.acd.on_registration(ev.change)
        elif isinstance(ev, PresencePublished):
            if self.acd is not None:
                self.acd.on_presence_published(ev.entity, ev.body, ev.expires)
        elif isinstance(ev, PresenceRemoved):
            if self.acd is not None:
                self.acd.on_presence_published(ev.entity, None, None)
        elif isinstance(ev, SubscriptionRequested):
            if self.acd is not None:
                self.acd.on_subscription(ev.subscription)
            else:
                ep.notify(ev.subscription, None, now, terminate="noresource")
        elif isinstance(ev, PresenceNotified):
            if self.acd is not None and ev.body:
                self.acd.on_presence_notified(ev.subscription, ev.body)
        elif isinstance(ev, ReferAnswered):
            if self.acd is not None:
                self.acd.on_refer_answered(ev.call, ev.status)
        elif isinstance(ev, ReferProgress):
            if self.acd is not None:
                self.acd.on_refer_progress(ev.call, ev.status, ev.final)
        elif isinstance(ev, OutboundProgress):
            if self.acd is not None:
                self.acd.on_progress(ev.call, ev.status)
        elif isinstance(ev, OutboundAnswered):
            self._outbound_answered(ev.call, ev.sdp)

    def _call_ended(self, ev: CallEnded, media: Any,
                    ended: asyncio.Future[LegSummary | None] | None,
                    facts: dict[str, Any]) -> None:
        """The rest of a call's end, once its media leg is gone: the flow's end, the
        port back to the pool, the detail record."""
        summary = None
        if ended is not None:
            if ended.cancelled() or ended.exception() is not None:
                log.error("call %s: its media leg did not end cleanly: %s", ev.call.call_id,
                          "cancelled" if ended.cancelled() else ended.exception())
            else:
                summary = ended.result()
        quality = None
        if summary is not None:
            quality = summary.quality
            self.call_jitter.observe(summary.max_jitter_ms / 1000)
            log.info("call %s quality: %s", ev.call.call_id, quality.summary())
        flow = self.ivr.ended(ev.call, quality) if self.ivr is not None else None
        if isinstance(media, CallMedia):
            self.ports.release(media.rtp_port)
            if ev.call.app is media:
                ev.call.app = None
        log.info("call %s ended: %s", ev.call.call_id, ev.reason.value)
        self._record_call(ev, media if isinstance(media, CallMedia) else None, summary,
                          flow, facts)

    def _record_call(self, ev: CallEnded, media: CallMedia | None, leg: LegSummary | None,
                     flow: IvrCall | None, facts: dict[str, Any]) -> None:
        """The call's detail record, written behind to the database. Nothing the caller
        keyed is in it (see hotline/cdr.py)."""
        call = ev.call
        now = dt.datetime.now(dt.UTC)
        playout_ms = DEFAULT_PLAYOUT_MS
        rx = tx = None
        quality = None
        if leg is not None:
            rx, tx, playout_ms = leg.packets_in, leg.packets_out, leg.playout_ms
            quality = leg.quality
        if call.inbound:
            caller, called = self._caller_identity(call)[0], call.dialled
        else:
            uri = call.invite.from_.uri
            caller = (uri.user or "") if isinstance(uri, SipURI) else ""
            called = call.remote_user
        try:
            record = CallRecord(
                call_id=call.call_id, node=self.config.node_name,
                direction=Direction.INBOUND if call.inbound else Direction.OUTBOUND,
                caller=caller or "", called=called or "",
                started_at=media.started_at if media is not None else now,
                ended_at=now,
                hangup_side=hangup_side(ev.reason, inbound=call.inbound,
                                        remote_agent=bool(facts.get("remote_agent")),
                                        ended_by_agent=bool(facts.get("ended_by_agent"))),
                end_reason=ev.reason, sip_status=ev.status,
                answered_at=media.answered_at if media is not None else None,
                flow=flow.loaded.flow.name if flow is not None else None,
                flow_version=flow.loaded.flow.version if flow is not None else None,
                flow_result=flow.session.result if flow is not None else None,
                queue=facts.get("queue"), queue_wait_s=facts.get("queue_wait_s"),
                agent=facts.get("agent"), transferred_to=facts.get("transferred_to"),
                quality=media_quality(quality, rx_packets=rx, tx_packets=tx,
                                      playout_ms=playout_ms),
            )
        except ValueError as exc:
            log.warning("call %s: no detail record: %s", call.call_id, exc)
            return
        try:
            self.bookings.store.add_cdr(record)
        except Exception:
            log.exception("call %s: cannot queue its detail record", call.call_id)

    def _outbound_answered(self, call: Call, sdp: bytes | None) -> None:
        ep = self.endpoint
        assert ep is not None
        media = call.app
        log.info("outbound call %s answered", call.call_id)
        if isinstance(media, CallMedia):
            media.answered_at = dt.datetime.now(dt.UTC)
        if not isinstance(media, CallMedia) or sdp is None:
            log.info("outbound call %s: answered without SDP: hanging up", call.call_id)
            ep.hangup(call, self._now())
            return
        try:
            media.session.accept_answer(sdp)
        except SdpRejected as exc:
            log.info("outbound call %s: bad SDP answer: %s", call.call_id, exc.reason)
            ep.hangup(call, self._now())
            return
        if not self._start_media(call):
            ep.hangup(call, self._now())
            return
        if self.acd is not None:
            self.acd.on_answered(call)

    # -- media ------------------------------------------------------------------

    def _start_media(self, call: Call) -> bool:
        """Serve the call's media leg (True when it is being served)."""
        media = call.app
        if (not isinstance(media, CallMedia) or media.session.media is None
                or self.media is None):
            return False
        if self.media.has_leg(call):
            return True
        try:
            near = self.acd.media_near(call) if self.acd is not None else None
            self.media.add_leg(call, media.rtp_port, media.session.media, near=near)
        except OSError as exc:
            log.warning("call %s: cannot serve media on RTP port %d: %s", call.call_id,
                        media.rtp_port, exc)
            return False
        if self.acd is not None and call.inbound and self.acd.on_media(call):
            return True
        if self.ivr is not None and call.inbound:
            number, display = self._caller_identity(call)
            facts = {"caller.number": number, "caller.name": display}
            if not self.ivr.start(call, call.call_id, call.dialled, facts):
                self._flow_hangup(call, [("X-Hotline-Result", "no_flow")])
        return True

    def _caller_identity(self, call: Call) -> tuple[str, str]:
        """(number, display name): from P-Asserted-Identity when the INVITE came from a
        trusted proxy (RFC 3325), else from the From header."""
        number = call.remote_user
        display = call.invite.from_.display_name or ""
        if call.peer.host in self.config.sip.trusted_proxies:
            for value in call.invite.headers.get_all("P-Asserted-Identity"):
                try:
                    asserted = parse_address(value, "P-Asserted-Identity")
                except ParseError:
                    continue
                uri = asserted.uri
                user = uri.user if isinstance(uri, SipURI) else (
                    uri.number if isinstance(uri, TelURI) else None)
                if user:
                    return user, asserted.display_name or display
        return number, display

    def _flow_hangup(self, call: Call, headers: list[tuple[str, str]]) -> None:
        ep = self.endpoint
        assert ep is not None and self.loop is not None
        ep.hangup(call, self._now(), headers)
        self.loop.call_soon(self._after_input)

    def _on_play_done(self, call: Hashable, tag: Hashable, completed: bool) -> None:
        if self.acd is not None and isinstance(call, Call):
            self.acd.on_play_done(call, tag, completed)
        if self.ivr is not None:
            self.ivr.play_done(call, tag, completed)

    def _on_digit(self, call: Call, digit: str, method: DtmfMethod) -> None:
        media = call.app
        if isinstance(media, CallMedia):
            media.dtmf.append(digit)
        dtmf_log.info("call %s: DTMF %s by %s", call.call_id, _shown(digit), method.value)
        self.dtmf_counts[method.value] = self.dtmf_counts.get(method.value, 0) + 1
        if self.acd is not None and self.acd.on_digit(call, digit):
            return
        if self.ivr is not None:
            self.ivr.digit(call, digit)

    def _on_rtp_inactive(self, call: Call) -> None:
        ep = self.endpoint
        assert ep is not None
        log.info("call %s: no RTP for %g s, hanging up", call.call_id,
                 self.config.rtp.inactivity_timeout_seconds)
        ep.hangup(call, self._now())
        self._after_input()


def _pidf_problem(body: bytes) -> str | None:
    """Why a published PIDF document is refused (None: it is a good one)."""
    from hotline.acd.errors import PidfError
    from hotline.acd.presence import parse_pidf

    try:
        parse_pidf(body)
    except PidfError as exc:
        return str(exc)[:200]
    return None


def _shown(digit: str) -> str:
    """Digits in logs: masked, since a key may belong to a sensitive entry (the flow's
    trace records them, masked where they must be). Set the `dtmf` logger to debug
    (logging.levels in config.yaml) to see them, e.g. while testing."""
    return digit if dtmf_log.isEnabledFor(logging.DEBUG) else "•"


class FlowsBroken(Exception):
    """A flow has errors at start-up (they were logged)."""


async def serve(config: Config) -> None:
    engine = Engine(config)
    engine.loop = asyncio.get_running_loop()
    engine._install_signals()  # a SIGTERM while loading drains once started, never kills
    if not engine.load_flows():
        raise FlowsBroken("a flow file has errors (see above); fix it or run `hotline flow "
                          "check` on it")
    await engine.bookings.open()
    await engine.start()
    freeze_startup()
    tune(engine.gc_stats)
    await engine.run_until_stopped()
