"""The engine's HTTP listener: health probes and Prometheus metrics.

Owns the aiohttp application on `http.listen`: `/healthz` (the process is up and its loop
answers), `/readyz` (accepting calls: flows loaded, the booking store open, not draining —
what Kamailio's dispatcher and load balancers probe; 503 with the reason otherwise) and
`/metrics` (Prometheus text format). Metrics are read from the engine's own counters at
scrape time by one collector — nothing is counted twice and the call path pays nothing for
them. Labels never carry a caller's number, a key pressed or any value a caller typed.

Must not know: SIP, RTP or flows beyond the counters the engine exposes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hotline import __version__
from hotline.web.api import add_routes

if TYPE_CHECKING:
    from hotline.engine.media_loop import Histogram
    from hotline.engine.server import Engine

log = logging.getLogger("hotline.web")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets = [(("+Inf" if b == float("inf") else repr(b)), n) for b, n in hist.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


class EngineCollector(Collector):
    """Everything /metrics shows, read from a running engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        info = GaugeMetricFamily("hotline_info", "The engine's version and node name",
                                 labels=["version", "node"])
        info.add_metric([__version__, engine.config.node_name], 1.0)
        yield info
        ep = engine.endpoint
        if ep is not None:
            counters = dict(ep.counters)
            active = GaugeMetricFamily("hotline_calls_active", "Calls in progress (SIP dialogs "
                                       "and calls being set up)")
            active.add_metric([], float(ep.active_calls))
            yield active
            responses = CounterMetricFamily("hotline_sip_responses", "SIP responses sent, by "
                                            "status code", labels=["code"])
            for name, value in sorted(counters.items()):
                if name.startswith("responses_"):
                    responses.add_metric([name.removeprefix("responses_")], float(value))
            yield responses
            for name, doc in (
                ("messages_in", "SIP messages received"),
                ("parse_errors", "SIP messages that could not be parsed"),
                ("calls_offered", "INVITEs that started a call"),
                ("calls_answered", "Calls answered"),
                ("overload_calls", "Calls refused: max_calls reached"),
                ("overload_cps", "Calls refused: max_cps exceeded"),
                ("rate_limited", "Requests refused by the per-source rate limit"),
            ):
                family = CounterMetricFamily(f"hotline_sip_{name}", doc)
                family.add_metric([], float(counters.get(name, 0)))
                yield family
            retrans = CounterMetricFamily("hotline_sip_retransmissions",
                                          "SIP transaction retransmissions, ours and absorbed",
                                          labels=["direction"])
            retrans.add_metric(["sent"], float(ep.layer.retransmissions))
            retrans.add_metric(["absorbed"], float(ep.layer.absorbed))
            yield retrans
            draining = GaugeMetricFamily("hotline_draining", "1 while draining")
            draining.add_metric([], 1.0 if ep.draining else 0.0)
            yield draining
        ivr = engine.ivr
        if ivr is not None:
            flows = GaugeMetricFamily("hotline_flow_calls_active", "Calls running a flow",
                                      labels=["flow"])
            per_flow: dict[str, int] = {}
            for state in ivr.calls.values():
                name = state.loaded.flow.name
                per_flow[name] = per_flow.get(name, 0) + 1
            for name, n in sorted(per_flow.items()):
                flows.add_metric([name], float(n))
            yield flows
            ended = CounterMetricFamily("hotline_flow_calls", "Calls that ran a flow, by how "
                                        "they ended", labels=["flow", "result"])
            for (flow, result), n in sorted(ivr.results.items()):
                ended.add_metric([flow, _label(result)], float(n))
            yield ended
            services = CounterMetricFamily("hotline_flow_service_requests", "Webhook, booking, "
                                           "queue and transfer requests by outcome",
                                           labels=["service", "name", "outcome"])
            for (kind, name, outcome), n in sorted(ivr.service_results.items()):
                services.add_metric([kind, name, outcome], float(n))
            yield services
        loaded = GaugeMetricFamily("hotline_flows_loaded", "Flow files serving", labels=["flow"])
        for lf in engine.flows.flows():
            loaded.add_metric([lf.flow.name], 1.0)
        yield loaded
        rejected = CounterMetricFamily("hotline_flow_reloads_rejected",
                                       "Flow edits refused because they had errors")
        rejected.add_metric([], float(engine.flows.rejected))
        yield rejected
        dtmf = CounterMetricFamily("hotline_dtmf_digits", "Keys pressed, by how they came",
                                   labels=["method"])
        for method, n in sorted(engine.dtmf_counts.items()):
            dtmf.add_metric([method], float(n))
        yield dtmf
        media = engine.media
        if media is not None:
            legs = GaugeMetricFamily("hotline_media_legs", "RTP legs served by the tick")
            legs.add_metric([], float(media.leg_count))
            yield legs
            totals = media.rtp_totals()
            rtp = CounterMetricFamily("hotline_rtp_packets", "RTP packets", labels=["what"])
            for what in ("packets_in", "packets_out", "lost", "late", "duplicates", "malformed"):
                rtp.add_metric([what.removeprefix("packets_")], float(totals[what]))
            yield rtp
            yield _histogram("hotline_media_tick_seconds", "Time one media tick took",
                             media.tick_seconds)
            yield _histogram("hotline_media_tick_lateness_seconds",
                             "How late each media tick began", media.tick_lateness)
            load = GaugeMetricFamily("hotline_media_load", "Share of the 20 ms tick period "
                                     "the media ticks take, late start included (about the "
                                     "last second); above 0.8 new calls are refused")
            load.add_metric([], media.load)
            yield load
            refused = CounterMetricFamily("hotline_calls_refused_media_overload",
                                          "New calls refused (503) because the media tick "
                                          "was overloaded")
            refused.add_metric([], float(engine.media_refusals))
            yield refused
            from hotline.engine.media_workers import MediaWorkers

            if isinstance(media, MediaWorkers):
                workers = GaugeMetricFamily("hotline_media_workers",
                                            "Media worker processes serving the legs")
                workers.add_metric([], float(len(media.processes)))
                yield workers
                restarts = CounterMetricFamily("hotline_media_worker_restarts",
                                               "Media worker processes that died and were "
                                               "replaced (their calls were ended)")
                restarts.add_metric([], float(media.restarts))
                yield restarts
            skipped = CounterMetricFamily("hotline_media_ticks_skipped",
                                          "Ticks skipped to catch up after a stall")
            skipped.add_metric([], float(media.skipped_ticks))
            yield skipped
            yield _histogram("hotline_rtp_call_jitter_seconds",
                             "Each ended leg's highest interarrival jitter", engine.call_jitter)
            jb = media.jitter_totals()
            jitter = CounterMetricFamily("hotline_jitter_buffer", "Bridged legs' jitter "
                                         "buffers: packets and frames by outcome",
                                         labels=["what"])
            for what in ("packets", "late", "duplicates", "overflows", "resyncs", "played",
                         "concealed", "expanded"):
                jitter.add_metric([what], float(jb[what]))
            yield jitter
        acd = engine.acd
        if acd is not None:
            yield from _acd_metrics(acd)
        for generation, hist in enumerate(engine.gc_stats.durations):
            yield _histogram(f"hotline_gc_gen{generation}_seconds",
                             f"Garbage collections of generation {generation}: how long", hist)
        bookings = engine.bookings
        outbox = CounterMetricFamily("hotline_outbox_deliveries", "Confirmation messages",
                                     labels=["result"])
        outbox.add_metric(["delivered"], float(bookings.delivered))
        outbox.add_metric(["failed"], float(bookings.failed))
        yield outbox
        backlog = GaugeMetricFamily("hotline_outbox_backlog", "Messages waiting to be sent")
        backlog.add_metric([], float(bookings.pending))
        yield backlog


def _acd_metrics(acd: Any) -> Iterator[Metric]:
    """Queues, agents and the contact centre's counters."""
    waiting = GaugeMetricFamily("hotline_queue_waiting", "Callers waiting in a queue",
                                labels=["queue"])
    ewt = GaugeMetricFamily("hotline_queue_expected_wait_seconds", "Erlang C expected wait "
                            "for a caller arriving now (absent while unknown)", labels=["queue"])
    longest = GaugeMetricFamily("hotline_queue_longest_wait_seconds", "Longest current wait",
                                labels=["queue"])
    callbacks = GaugeMetricFamily("hotline_queue_callbacks", "Callback requests in line",
                                  labels=["queue"])
    for q in acd.queues_view():
        waiting.add_metric([q["name"]], float(q["waiting"]))
        longest.add_metric([q["name"]], float(q["longest_wait"]))
        callbacks.add_metric([q["name"]], float(q["callbacks"]))
        if q["expected_wait"] is not None:
            ewt.add_metric([q["name"]], float(q["expected_wait"]))
    yield from (waiting, ewt, longest, callbacks)
    agents = GaugeMetricFamily("hotline_agents", "Agents by status and state",
                               labels=["status", "state"])
    counts: dict[tuple[str, str], int] = {}
    for agent in acd.router.agents.values():
        key = (agent.status.value, agent.state.value)
        counts[key] = counts.get(key, 0) + 1
    for (status, state), n in sorted(counts.items()):
        agents.add_metric([status, state], float(n))
    yield agents
    events = CounterMetricFamily("hotline_acd_events", "Contact-centre events (queued, "
                                 "offers, bridged, overflows, callbacks, voicemails, ...)",
                                 labels=["event"])
    for name, n in sorted(acd.counters.items()):
        events.add_metric([_label(name)], float(n))
    yield events


def _label(value: str) -> str:
    return value if len(value) <= 64 else value[:64]


def build_app(engine: Engine) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        reason = engine.not_ready_reason()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    add_routes(app, lambda: engine.acd, engine.api_token)
    if engine.webrtc is not None:
        engine.webrtc.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(build_app(self.engine), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server: Any = site._server  # the bound socket tells the port when 0 was asked
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("http listening on %s:%d (/healthz /readyz /metrics /api)", host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
