"""The engine's `/metrics` as a load test reads it: Prometheus text parsed into samples,
and the figures a report shows — before/after differences and series over the run.

Owns parsing (prometheus-client's parser), looking samples up by name and labels,
histogram quantiles from cumulative buckets, and which engine figures are compared.

Must not know: HTTP (the runner fetches), SIP, SIPp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]

# counters whose increase over the run the report lists: (sample name, label to split by)
DELTAS: Final = (
    ("hotline_sip_calls_offered_total", ""),
    ("hotline_sip_calls_answered_total", ""),
    ("hotline_sip_overload_calls_total", ""),
    ("hotline_sip_overload_cps_total", ""),
    ("hotline_calls_refused_media_overload_total", ""),
    ("hotline_sip_rate_limited_total", ""),
    ("hotline_sip_parse_errors_total", ""),
    ("hotline_sip_responses_total", "code"),
    ("hotline_sip_retransmissions_total", "direction"),
    ("hotline_flow_calls_total", "result"),
    ("hotline_flow_service_requests_total", "service,name,outcome"),
    ("hotline_dtmf_digits_total", "method"),
    ("hotline_rtp_packets_total", "what"),
    ("hotline_media_ticks_skipped_total", ""),
    ("hotline_acd_events_total", "event"),
    ("hotline_outbox_deliveries_total", "result"),
)


class MetricsError(ValueError):
    """Text that is not the Prometheus exposition format."""


@dataclass
class Scrape:
    """One scrape: when (seconds since the epoch) and every sample."""

    at: float
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels (or, with no labels given, the sum of
        every sample of that name); None when absent."""
        if labels:
            return self.samples.get((name, tuple(sorted(labels.items()))))
        values = [v for (n, _l), v in self.samples.items() if n == name]
        return sum(values) if values else None

    def by_label(self, name: str, label: str, **where: str) -> dict[str, float]:
        """Samples of `name` summed by the value of `label` (several labels, comma-separated:
        their values joined by ":"), among those matching `where`."""
        out: dict[str, float] = {}
        keys = label.split(",")
        for (n, labels), value in self.samples.items():
            if n != name:
                continue
            d = dict(labels)
            if any(d.get(k) != v for k, v in where.items()):
                continue
            key = ":".join(d.get(k, "") for k in keys)
            out[key] = out.get(key, 0.0) + value
        return out

    def names(self) -> set[str]:
        return {n for n, _l in self.samples}


def parse(text: str, at: float) -> Scrape:
    """A scrape from the exposition text."""
    scrape = Scrape(at)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted((str(k), str(v)) for k, v in sample.labels.items()))
                scrape.samples[(sample.name, labels)] = float(sample.value)
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsError(f"not Prometheus text: {exc}") from None
    return scrape


def deltas(before: Scrape, after: Scrape) -> dict[str, dict[str, float]]:
    """The increase of every `DELTAS` counter between two scrapes, by its label (key ""
    when it has none); counters absent from both scrapes are left out. A counter that
    went down (the engine restarted) counts from zero."""
    out: dict[str, dict[str, float]] = {}
    for name, label in DELTAS:
        if name not in after.names() and name not in before.names():
            continue
        if label:
            a, b = after.by_label(name, label), before.by_label(name, label)
        else:
            a = {"": after.get(name) or 0.0}
            b = {"": before.get(name) or 0.0}
        diff = {
            k: (a.get(k, 0.0) - b.get(k, 0.0)) if a.get(k, 0.0) >= b.get(k, 0.0) else a.get(k, 0.0)
            for k in sorted(set(a) | set(b))
        }
        out[name] = {k: round(v, 6) for k, v in diff.items() if v}
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The `q` quantile of a cumulative histogram {upper bound: count} (linear within a
    bucket, as Prometheus does); None without observations."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return bounds[-1]


def histogram(scrape: Scrape, name: str) -> dict[float, float]:
    """The cumulative buckets of histogram `name` ({le: count})."""
    out: dict[float, float] = {}
    for (n, labels), value in scrape.samples.items():
        if n == f"{name}_bucket":
            le = dict(labels).get("le", "")
            out[float("inf") if le == "+Inf" else float(le)] = value
    return out


def histogram_delta(before: Scrape, after: Scrape, name: str) -> dict[float, float]:
    b = histogram(before, name)
    return {le: v - b.get(le, 0.0) for le, v in histogram(after, name).items()}


@dataclass
class EngineSample:
    """The engine seen at one moment: from /metrics and /proc (None when unknown)."""

    at: float
    calls_active: float | None = None
    cpu_seconds: float | None = None
    rss_bytes: float | None = None
    tick_p99_ms: float | None = None
    media_load: float | None = None  # share of the 20 ms tick period the ticks take


def engine_sample(scrape: Scrape, previous: Scrape | None) -> EngineSample:
    """Calls in progress, process CPU and memory when the engine exports them (the
    `process_*` metrics of prometheus-client), and the media tick's 99th percentile
    since the previous scrape."""
    sample = EngineSample(
        scrape.at,
        calls_active=scrape.get("hotline_calls_active"),
        cpu_seconds=scrape.get("process_cpu_seconds_total"),
        rss_bytes=scrape.get("process_resident_memory_bytes"),
        media_load=scrape.get("hotline_media_load"),
    )
    if previous is not None:
        buckets = histogram_delta(previous, scrape, "hotline_media_tick_seconds")
        p99 = histogram_quantile(0.99, buckets) if buckets else None
        sample.tick_p99_ms = None if p99 is None else round(p99 * 1000, 3)
    return sample


def percentiles(
    values: Iterable[float], qs: Sequence[float] = (50, 90, 95, 99)
) -> dict[str, float]:
    """{"p50": …, "max": …, "mean": …} of `values` (empty: {})."""
    data = sorted(values)
    if not data:
        return {}
    out: dict[str, float] = {}
    for q in qs:
        rank = (len(data) - 1) * q / 100
        lo = math.floor(rank)
        hi = min(lo + 1, len(data) - 1)
        out[f"p{q:g}"] = data[lo] + (data[hi] - data[lo]) * (rank - lo)
    out["max"] = data[-1]
    out["mean"] = sum(data) / len(data)
    return out
