"""The load test's report: the JSON document, the HTML page with its plots, the terminal
table, and the differences from a previous run.

Owns judging each call (passed, or the reason it failed), the figures over time
(calls in progress, call rate, set-up time, failures), the engine's and the media's
figures as the report shows them, the verdict, and drawing: every plot is an inline SVG
drawn here (axes, ticks, lines, bars — no plotting library), so the page is one file
that opens anywhere. `summarize` makes the JSON document (schema `hotline-loadtest/1`);
`render_html`, `render_table` and `compare` work from that document alone, so an old
JSON report can be compared and redrawn.

Must not know: processes, SIPp's files, sockets (it reads `runner.RunData`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import html
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from hotline import __version__
from hotline.loadtest import metrics as mx

if TYPE_CHECKING:
    from hotline.loadtest.journeys import Journey
    from hotline.loadtest.runner import RunData
    from hotline.loadtest.scenarios import CallRecord

SCHEMA: Final = "hotline-loadtest/1"
MAX_BUCKETS: Final = 300
PHRASES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    603: "Decline",
}
COLORS: Final = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


class ReportError(ValueError):
    """A JSON document that is not a load-test report this version reads."""


# -- judging calls ----------------------------------------------------------------------------


def divergence(rec: CallRecord, journey: Journey) -> str:
    """Where the engine's trace of a failed call left the journey's path, e.g. `left the
    journey at hold (full) → slot_gone, ended no_agent`; "" without a trace."""
    if not rec.engine_steps:
        return ""
    steps = [step for step, _outcome in rec.engine_steps]
    want = list(journey.path)
    i = 0
    while i < len(steps) and i < len(want) and steps[i] == want[i]:
        i += 1
    ended = f", ended {rec.engine_result}" if rec.engine_result else ""
    if i == len(steps):
        return f"the engine's call stopped at {steps[-1]}{ended}" if steps else ""
    if i == 0:
        return f"the engine's call began at {steps[0]}, not {want[0] if want else '?'}{ended}"
    step, outcome = rec.engine_steps[i - 1]
    at = f"{step} ({outcome})" if outcome else step
    return f"left the journey at {at} → {steps[i]}{ended}"


def judge(rec: CallRecord, journey: Journey | None, cut: bool) -> tuple[bool, str]:
    """(passed, why not) for one call; with the engine's trace, where it went instead."""
    ok, why = _judge(rec, journey, cut)
    if not ok and journey is not None:
        where = divergence(rec, journey)
        if where:
            why = f"{why}: {where}"
    return ok, why


def _judge(rec: CallRecord, journey: Journey | None, cut: bool) -> tuple[bool, str]:
    expected = journey.result if journey is not None else None
    want = f" (expected {expected})" if expected else ""
    if rec.rejected is not None:
        return False, f"SIP {rec.rejected} {PHRASES.get(rec.rejected, '')}".rstrip()
    if rec.answered is None:
        if rec.ended is None:
            return (
                False,
                "cut by the end of the run before an answer" if cut else "no answer to the INVITE",
            )
        return False, "ended before an answer"
    kind = rec.end_kind
    if kind == "caller":
        return True, ""
    if kind == "bye":
        if expected is None or rec.seen == expected:
            return True, ""
        return False, f"ended {rec.seen or 'without X-Hotline-Result'}{want}"
    if kind == "early":
        return False, f"engine hung up before the last key: {rec.seen or 'no result'}{want}"
    if kind == "late":
        return False, f"no BYE from the engine in time{want}"
    if kind == "gone":
        return False, "the engine had already ended the call (481 to our BYE)"
    if kind == "unknown":
        return False, "no journey for the call (injection file and scenario disagree)"
    return False, "cut by the end of the run" if cut else "never ended (SIPp stopped)"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _bucket(span: float) -> float:
    return float(max(1, math.ceil(span / MAX_BUCKETS)))


# -- the document ------------------------------------------------------------------------------


def summarize(data: RunData) -> dict[str, Any]:
    """The JSON report of a run."""
    s, p = data.settings, data.plan
    used = [j for j in p.journeys if j.name in p.shares]
    records = sorted(data.records.values(), key=lambda r: r.call)
    cut = "cut" in data.stopped or "interrupted" in data.stopped
    t0 = min([r.started for r in records if r.started is not None] or [data.started])
    end = max([data.ended] + [r.ended for r in records if r.ended is not None])
    verdicts: list[tuple[CallRecord, bool, str]] = []
    for rec in records:
        journey = used[rec.journey] if 0 <= rec.journey < len(used) else None
        ok, why = judge(rec, journey, cut)
        verdicts.append((rec, ok, why))
    failures: dict[str, int] = {}
    for _rec, ok, why in verdicts:
        if not ok:
            failures[why] = failures.get(why, 0) + 1
    planned_by_journey: dict[str, int] = {}
    for call in p.calls:
        planned_by_journey[call.journey] = planned_by_journey.get(call.journey, 0) + 1
    journeys = []
    for i, j in enumerate(used):
        mine = [(r, ok, why) for r, ok, why in verdicts if r.journey == i]
        seen: dict[str, int] = {}
        for r, _ok, _why in mine:
            label = r.seen or {"caller": "(caller hung up)", "": "(no end)"}.get(
                r.end_kind, f"({r.end_kind or 'rejected'})"
            )
            if r.rejected is not None:
                label = f"(SIP {r.rejected})"
            seen[label] = seen.get(label, 0) + 1
        lengths = [
            r.ended - r.answered
            for r, ok, _w in mine
            if ok and r.ended is not None and r.answered is not None
        ]
        journeys.append(
            {
                "name": j.name,
                "expected_result": j.result,
                "share": round(p.shares[j.name], 4),
                "planned": planned_by_journey.get(j.name, 0),
                "placed": len(mine),
                "passed": sum(1 for _r, ok, _w in mine if ok),
                "failed": sum(1 for _r, ok, _w in mine if not ok),
                "seen": dict(sorted(seen.items(), key=lambda kv: -kv[1])),
                "keys": j.describe(),
                "books": j.books,
                "simulated_seconds": round(j.seconds(s.pace), 1),
                "call_seconds": {
                    k: round(v, 1) for k, v in mx.percentiles(lengths, (50, 95)).items()
                },
                "path": list(j.path),
            }
        )
    setup = [
        1000 * (r.answered - r.started)
        for r in records
        if r.answered is not None and r.started is not None
    ]
    placed = len(records)
    passed = sum(1 for _r, ok, _w in verdicts if ok)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "hotline_version": __version__,
        "run": {
            "started": dt.datetime.fromtimestamp(t0, dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(end - t0, 1),
            "target": f"{s.host}:{s.port}/{s.transport}",
            "flow": p.flow.name,
            "flow_version": p.flow.version,
            "dialled": p.dialled,
            "traffic": s.traffic.describe() + (f", at most {s.calls} calls" if s.calls else ""),
            "pace": s.pace,
            "dtmf": s.dtmf,
            "caller_audio": s.caller_audio,
            "concurrent_limit": s.concurrent,
            "calls_limit": s.calls,
            "max_calls": s.max_calls,
            "max_seconds": s.max_seconds,
            "agents": len(s.agents),
            "stopped": data.stopped,
            "command": s.command,
            "notes": list(p.notes),
            "work_dir": str(data.work_dir),
        },
        "calls": {
            "planned": len(p.calls),
            "expected_by_profile": round(p.expected_calls, 1),
            "placed": placed,
            "answered": sum(1 for r in records if r.answered is not None),
            "passed": passed,
            "failed": placed - passed,
            "bookings_planned": p.bookings,
            "booking_capacity": p.capacity,
        },
        "journeys": journeys,
        "setup_ms": {k: round(v, 2) for k, v in mx.percentiles(setup, (50, 90, 95, 99)).items()},
        "failures": dict(sorted(failures.items(), key=lambda kv: -kv[1])),
        "sipp": {"counters": data.sipp_counters, "errors": data.sipp_errors},
        "timeline": _timeline(verdicts, data.planned_rate, data.started, t0, end),
        "media": _media(data, t0),
        "engine": _engine(data, t0),
        "metrics": _metrics(data),
    }
    doc["verdict"] = _verdict(doc)
    return doc


def _timeline(
    verdicts: Sequence[tuple[CallRecord, bool, str]],
    planned: Sequence[tuple[float, float]],
    run_start: float,
    t0: float,
    end: float,
) -> dict[str, Any]:
    span = max(1.0, end - t0)
    step = _bucket(span)
    n = math.ceil(span / step)
    t = [round(i * step, 1) for i in range(n)]
    active = [0] * n
    started = [0] * n
    failed = [0] * n
    setups: list[list[float]] = [[] for _ in range(n)]
    for rec, ok, _why in verdicts:
        if rec.started is None:
            continue
        a = rec.started - t0
        b = (rec.ended if rec.ended is not None else end) - t0
        i0 = min(n - 1, int(a // step))
        started[i0] += 1
        if rec.answered is not None:
            setups[i0].append(1000 * (rec.answered - rec.started))
        for i in range(i0, min(n, int(b // step) + 1)):
            mid = (i + 0.5) * step
            if a <= mid < b:
                active[i] += 1
        if not ok:
            failed[min(n - 1, int(max(0.0, b) // step))] += 1
    shift = run_start - t0
    planned_cps = [0.0] * n
    samples = sorted((at + shift, rate) for at, rate in planned)
    if samples:
        times = [at for at, _rate in samples]
        for i in range(n):  # the planned rate at the middle of each bucket
            k = bisect.bisect_right(times, (i + 0.5) * step) - 1
            planned_cps[i] = samples[k][1] if k >= 0 else 0.0
    return {
        "step_seconds": step,
        "t": t,
        "active": active,
        "cps": [round(c / step, 3) for c in started],
        "planned_cps": planned_cps,
        "failed": failed,
        "setup_p50_ms": [_round(mx.percentiles(x, (50,)).get("p50")) for x in setups],
        "setup_p95_ms": [_round(mx.percentiles(x, (95,)).get("p95")) for x in setups],
        "setup_max_ms": [_round(max(x)) if x else None for x in setups],
    }


def _media(data: RunData, t0: float) -> dict[str, Any]:
    q = data.capture
    if q is None:
        return {"captured": False, "note": data.capture_note or "not captured"}
    summary = q.summary()
    jitters = [s.max_jitter_ms for s in q.streams]
    return {
        "captured": True,
        "note": data.capture_note,
        **summary,
        "stream_max_jitter_ms": sorted(round(j, 3) for j in jitters),
        "gaps": [[round(at - t0, 3), round(length * 1000, 1)] for at, length in q.gaps[:5000]],
        "rtp_ports": list(data.settings.rtp_ports),
    }


def _engine(data: RunData, t0: float) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": data.engine_pid}
    t: list[float] = []
    cpu: list[float] = []
    rss: list[float] = []
    source = ""
    if len(data.proc) >= 2:
        source = f"/proc/{data.engine_pid}"
        for (a, ca, _ra), (b, cb, rb) in zip(data.proc, data.proc[1:], strict=False):
            if b > a:
                t.append(round(b - t0, 2))
                cpu.append(round(100 * (cb - ca) / (b - a), 2))
                rss.append(round(rb / 2**20, 2))
    elif len(data.scrapes) >= 2:
        samples = [mx.engine_sample(sc, None) for sc in data.scrapes]
        pairs = [
            (a, b)
            for a, b in itertools.pairwise(samples)
            if a.cpu_seconds is not None and b.cpu_seconds is not None and b.at > a.at
        ]
        if pairs:
            source = "process_* metrics"
            for first, second in pairs:
                assert first.cpu_seconds is not None and second.cpu_seconds is not None
                t.append(round(second.at - t0, 2))
                cpu.append(
                    round(
                        100 * (second.cpu_seconds - first.cpu_seconds) / (second.at - first.at), 2
                    )
                )
                rss.append(round((second.rss_bytes or 0.0) / 2**20, 2))
    out["source"] = source or None
    if not source:
        out["note"] = (
            "engine CPU and memory unknown: the engine's process was not found on "
            "this machine (give --engine-pid) and /metrics has no process_* metrics"
        )
    out["cpu_pct"] = {k: round(v, 1) for k, v in mx.percentiles(cpu, (50, 95)).items()}
    out["rss_mb"] = {"start": rss[0], "end": rss[-1], "max": max(rss)} if rss else {}
    mt: list[float] = []
    active: list[float | None] = []
    tick: list[float | None] = []
    load: list[float | None] = []
    previous: mx.Scrape | None = None
    for scrape in data.scrapes:
        sample = mx.engine_sample(scrape, previous)
        previous = scrape
        mt.append(round(scrape.at - t0, 2))
        active.append(sample.calls_active)
        tick.append(sample.tick_p99_ms)
        load.append(sample.media_load)
    out["timeline"] = {"t": t, "cpu_pct": cpu, "rss_mb": rss}
    out["metrics_timeline"] = {
        "t": mt,
        "calls_active": active,
        "tick_p99_ms": tick,
        "media_load": load,
    }
    values = [a for a in active if a is not None]
    out["calls_active_max"] = max(values) if values else None
    loads = [v for v in load if v is not None]
    out["media_load_max"] = round(max(loads), 3) if loads else None
    return out


def _metrics(data: RunData) -> dict[str, Any]:
    if len(data.scrapes) < 2:
        return {
            "scraped": len(data.scrapes),
            "note": data.metrics_note or "fewer than two scrapes: no differences",
        }
    before, after = data.scrapes[0], data.scrapes[-1]
    tick = mx.histogram_delta(before, after, "hotline_media_tick_seconds")
    late = mx.histogram_delta(before, after, "hotline_media_tick_lateness_seconds")
    out: dict[str, Any] = {
        "url": data.settings.metrics_url,
        "scraped": len(data.scrapes),
        "note": data.metrics_note,
        "deltas": mx.deltas(before, after),
        "tick_ms": {
            f"p{q:g}": _round(1000 * v)
            if (v := mx.histogram_quantile(q / 100, tick)) is not None
            else None
            for q in (50, 99, 99.9)
        },
        "tick_lateness_ms": {
            f"p{q:g}": _round(1000 * v)
            if (v := mx.histogram_quantile(q / 100, late)) is not None
            else None
            for q in (50, 99, 99.9)
        },
    }
    if data.agents_note:
        out["agents"] = data.agents_note
    return out


def _verdict(doc: Mapping[str, Any]) -> dict[str, Any]:
    calls = doc["calls"]
    reasons: list[str] = []
    warnings: list[str] = []
    if calls["placed"] == 0:
        reasons.append("no call was placed")
    if calls["failed"]:
        reasons.append(f"{calls['failed']} of {calls['placed']} calls failed")
    if calls["placed"] < calls["planned"] and "cut" in doc["run"]["stopped"]:
        warnings.append(
            f"{calls['planned'] - calls['placed']} planned calls were never placed "
            f"({doc['run']['stopped']})"
        )
    media = doc["media"]
    if media.get("captured"):
        if media.get("gaps_over_50ms"):
            warnings.append(f"{media['gaps_over_50ms']} gaps over 50 ms in the engine's RTP")
        if media.get("lost"):
            warnings.append(f"{media['lost']} RTP packets lost ({media['loss_pct']} %)")
    deltas = doc["metrics"].get("deltas", {})
    refused = sum(
        sum(deltas.get(name, {}).values())
        for name in (
            "hotline_sip_overload_calls_total",
            "hotline_sip_overload_cps_total",
            "hotline_calls_refused_media_overload_total",
        )
    )
    if refused:
        warnings.append(f"the engine refused {refused:g} calls for overload (503)")
    taken = deltas.get("hotline_flow_service_requests_total", {}).get("booking:hold:full", 0)
    if taken:
        warnings.append(
            f"{taken:g} holds were answered 'full': another caller took the time "
            "between its offer and the hold; the flow offered other times, which "
            "a scripted caller does not follow"
        )
    expected = calls.get("expected_by_profile") or 0
    if calls["placed"] and expected and calls["placed"] < 0.9 * min(expected, calls["planned"]):
        warnings.append(
            f"placed {calls['placed']} calls where the profile expected "
            f"{min(expected, calls['planned']):.0f}: calls in progress reached "
            f"--concurrent {doc['run']['concurrent_limit']} (more wait), or the "
            "engine answered slowly"
        )
    return {"passed": not reasons, "reasons": reasons, "warnings": warnings}


def load(text: str, name: str = "report") -> dict[str, Any]:
    """A report read back from JSON text; checks it is one."""
    import json

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ReportError(
            f"{name}: not a hotline load-test report (schema {found!r}, expected {SCHEMA!r})"
        )
    return doc


# -- compare ----------------------------------------------------------------------------------------


def _dig(doc: Mapping[str, Any], path: str) -> float | None:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


COMPARED: Final = (
    ("calls placed", "calls.placed", True),
    ("calls passed", "calls.passed", True),
    ("calls failed", "calls.failed", False),
    ("set-up p50 ms", "setup_ms.p50", False),
    ("set-up p95 ms", "setup_ms.p95", False),
    ("set-up p99 ms", "setup_ms.p99", False),
    ("set-up max ms", "setup_ms.max", False),
    ("RTP streams", "media.streams", True),
    ("RTP loss %", "media.loss_pct", False),
    ("RTP jitter max ms", "media.max_jitter_ms", False),
    ("RTP jitter mean ms", "media.mean_jitter_ms", False),
    ("RTP gaps > 50 ms", "media.gaps_over_50ms", False),
    ("RTP max gap ms", "media.max_gap_ms", False),
    ("engine CPU p50 %", "engine.cpu_pct.p50", False),
    ("engine CPU max %", "engine.cpu_pct.max", False),
    ("engine RSS max MB", "engine.rss_mb.max", False),
    ("engine calls active max", "engine.calls_active_max", True),
    ("media tick p99 ms", "metrics.tick_ms.p99", False),
    ("tick lateness p99 ms", "metrics.tick_lateness_ms.p99", False),
)


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows (what, before, now, change, better?) for the figures both reports have."""
    rows: list[dict[str, Any]] = []
    for label, path, higher_is_better in COMPARED:
        a, b = _dig(old, path), _dig(new, path)
        if a is None and b is None:
            continue
        change = None if a is None or b is None else round(b - a, 3)
        pct = None if change is None or not a else round(100 * change / abs(a), 1)
        better = None if not change else (change > 0) == higher_is_better
        rows.append(
            {
                "what": label,
                "before": a,
                "now": b,
                "change": change,
                "change_pct": pct,
                "better": better,
            }
        )
    old_j = {j["name"]: j for j in old.get("journeys", [])}
    for j in new.get("journeys", []):
        before = old_j.get(j["name"])
        if before is None:
            continue
        for key in ("placed", "failed"):
            a, b = float(before.get(key, 0)), float(j.get(key, 0))
            if a or b:
                change = round(b - a, 3)
                better = None if not change else ((change > 0) == (key == "placed"))
                rows.append(
                    {
                        "what": f"journey {j['name']} {key}",
                        "before": a,
                        "now": b,
                        "change": change,
                        "change_pct": round(100 * change / a, 1) if a else None,
                        "better": better,
                    }
                )
    return rows


# -- the terminal table ------------------------------------------------------------------------------


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}{unit}"
    return f"{int(value)}{unit}" if isinstance(value, int | float) else f"{value}{unit}"


def render_table(doc: Mapping[str, Any]) -> str:
    """The summary people read in the terminal."""
    run, calls = doc["run"], doc["calls"]
    lines = [
        f"hotline loadtest — flow {run['flow']} ({run['flow_version']}) at {run['target']}",
        f"  traffic   {run['traffic']}; pace {run['pace']}, keys {run['dtmf']}, "
        f"{run['seconds']:g} s; {run['stopped']}",
        f"  calls     planned {calls['planned']}  placed {calls['placed']}  answered "
        f"{calls['answered']}  passed {calls['passed']}  failed {calls['failed']}",
    ]
    rows = [("journey", "share", "planned", "placed", "passed", "failed", "expects", "seen")]
    for j in doc["journeys"]:
        seen = ", ".join(f"{k} {v}" for k, v in list(j["seen"].items())[:3])
        rows.append(
            (
                j["name"],
                f"{100 * j['share']:.0f}%",
                str(j["planned"]),
                str(j["placed"]),
                str(j["passed"]),
                str(j["failed"]),
                j["expected_result"] or "(any)",
                seen,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append(
            "  "
            + "  ".join(
                c.ljust(w) if i in (0, 6, 7) else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    su = doc["setup_ms"]
    if su:
        lines.append(
            f"  set-up    INVITE → 200 OK  p50 {_num(su.get('p50'), ' ms')}  p95 "
            f"{_num(su.get('p95'), ' ms')}  p99 {_num(su.get('p99'), ' ms')}  max "
            f"{_num(su.get('max'), ' ms')}"
        )
    if doc["failures"]:
        lines.append("  failures")
        lines += [f"    {n:>6} × {why}" for why, n in list(doc["failures"].items())[:10]]
    media = doc["media"]
    if media.get("captured"):
        lines.append(
            f"  media     {media['streams']} streams, {media['packets']} packets, loss "
            f"{media['loss_pct']} %, jitter max {media['max_jitter_ms']} ms mean "
            f"{media['mean_jitter_ms']} ms, gaps > 50 ms {media['gaps_over_50ms']} "
            f"(largest {media['max_gap_ms']} ms)"
            + (f"; {media['note']}" if media.get("note") else "")
        )
    else:
        lines.append(f"  media     {media['note']}")
    eng = doc["engine"]
    if eng.get("source"):
        cpu, rss = eng["cpu_pct"], eng["rss_mb"]
        lines.append(
            f"  engine    CPU p50 {_num(cpu.get('p50'), ' %')} max "
            f"{_num(cpu.get('max'), ' %')} (100 % = one core), RSS "
            f"{_num(rss.get('start'), ' MB')} → {_num(rss.get('end'), ' MB')} (max "
            f"{_num(rss.get('max'), ' MB')}), from {eng['source']}"
        )
    else:
        lines.append(f"  engine    {eng.get('note', '')}")
    met = doc["metrics"]
    if met.get("deltas") is not None and "deltas" in met:
        d = met["deltas"]
        codes = ", ".join(
            f"{k}: {v:g}" for k, v in d.get("hotline_sip_responses_total", {}).items()
        )
        results = ", ".join(f"{k}: {v:g}" for k, v in d.get("hotline_flow_calls_total", {}).items())
        retrans = d.get("hotline_sip_retransmissions_total", {})
        lines.append(
            f"  /metrics  flow results {results or 'none'}; SIP responses "
            f"{codes or 'none'}; retransmissions sent {retrans.get('sent', 0):g}, "
            f"absorbed {retrans.get('absorbed', 0):g}; media tick p99 "
            f"{_num(met['tick_ms'].get('p99'), ' ms', 2)}"
        )
        if eng.get("calls_active_max") is not None:
            lines[-1] += f"; calls active max {eng['calls_active_max']:g}"
        if eng.get("media_load_max") is not None:
            lines[-1] += f"; media load max {eng['media_load_max']:g}"
    else:
        lines.append(f"  /metrics  {met.get('note', '')}")
    for note in run.get("notes", []):
        lines.append(f"  note      {note}")
    if doc.get("compare"):
        lines.append(f"  compared with {doc['compare']['against']}:")
        for row in doc["compare"]["rows"]:
            if row["change"]:
                mark = {True: "better", False: "worse", None: ""}[row["better"]]
                pct = f" ({row['change_pct']:+g} %)" if row["change_pct"] is not None else ""
                lines.append(
                    f"    {row['what']:<26} {_num(row['before'])} → {_num(row['now'])}{pct} {mark}"
                )
    verdict = doc["verdict"]
    lines.append(
        "  verdict   "
        + ("PASSED" if verdict["passed"] else "FAILED: " + "; ".join(verdict["reasons"]))
    )
    lines += [f"  warning   {w}" for w in verdict["warnings"]]
    return "\n".join(lines)


# -- SVG plots ------------------------------------------------------------------------------------


def _nice(span: float) -> float:
    """A tick step of 1, 2 or 5 × 10^k giving about five ticks over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / 5
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return float(m * power)
    return float(10 * power)


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:.3g}k"
    if float(v).is_integer():
        return f"{v:g}"
    return f"{v:.3g}" if abs(v) >= 1 else f"{v:.2g}"


class _Axes:
    """A plot area with linear x and y scales."""

    def __init__(
        self, width: int, height: int, x_max: float, y_max: float, x_min: float = 0.0
    ) -> None:
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 56, 16, 40, 40
        self.x_min = x_min
        self.x_step = _nice(max(x_max - x_min, 1e-9))
        self.x_min = math.floor(x_min / self.x_step) * self.x_step
        self.x_max = max(self.x_min + self.x_step, math.ceil(x_max / self.x_step) * self.x_step)
        self.y_step = _nice(max(y_max, 1e-9))
        self.y_max = max(self.y_step, math.ceil(y_max / self.y_step) * self.y_step)

    def x(self, v: float) -> float:
        pw = self.w - self.left - self.right
        return self.left + pw * (v - self.x_min) / (self.x_max - self.x_min)

    def y(self, v: float) -> float:
        ph = self.h - self.top - self.bottom
        return self.top + ph * (1 - min(v, self.y_max) / self.y_max)

    def frame(self, title: str, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        out = [f'<text x="{self.left}" y="16" class="title">{html.escape(title)}</text>']
        v = 0.0
        while v <= self.y_max + 1e-9:
            y = self.y(v)
            out.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.w - self.right}" '
                f'y2="{y:.1f}" class="grid"/>'
            )
            out.append(
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" class="tick" '
                f'text-anchor="end">{_fmt(v)}</text>'
            )
            v += self.y_step
        if x_ticks:
            v = math.ceil(self.x_min / self.x_step) * self.x_step
            while v <= self.x_max + 1e-9:
                x = self.x(v)
                out.append(
                    f'<line x1="{x:.1f}" y1="{self.h - self.bottom}" x2="{x:.1f}" '
                    f'y2="{self.h - self.bottom + 4}" class="axis"/>'
                )
                out.append(
                    f'<text x="{x:.1f}" y="{self.h - self.bottom + 16}" class="tick" '
                    f'text-anchor="middle">{_fmt(v)}</text>'
                )
                v += self.x_step
        out.append(
            f'<line x1="{self.left}" y1="{self.h - self.bottom}" '
            f'x2="{self.w - self.right}" y2="{self.h - self.bottom}" class="axis"/>'
        )
        out.append(
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" '
            f'y2="{self.h - self.bottom}" class="axis"/>'
        )
        out.append(
            f'<text x="{(self.left + self.w - self.right) / 2:.0f}" y="{self.h - 6}" '
            f'class="label" text-anchor="middle">{html.escape(x_label)}</text>'
        )
        out.append(
            f'<text x="12" y="{(self.top + self.h - self.bottom) / 2:.0f}" class="label" '
            f'text-anchor="middle" transform="rotate(-90 12 '
            f'{(self.top + self.h - self.bottom) / 2:.0f})">{html.escape(y_label)}</text>'
        )
        return out


def _svg(width: int, height: int, body: Sequence[str], name: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{name}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        + "".join(body)
        + "</svg>"
    )


def _legend(items: Sequence[tuple[str, str]], axes: _Axes) -> list[str]:
    out = []
    x = axes.w - axes.right
    for label, color in reversed(items):
        width = 14 + 7 * len(label)
        x -= width + 10
        out.append(
            f'<rect x="{x}" y="22" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="31" class="tick">{html.escape(label)}</text>'
        )
    return out


def line_chart(
    name: str,
    title: str,
    x: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_label: str,
    y_label: str,
    width: int = 660,
    height: int = 230,
    steps: bool = False,
) -> str:
    """Lines over a shared x (None values break a line)."""
    values = [v for _l, ys in series for v in ys if v is not None]
    if not x or not values:
        return empty_chart(name, title, "no data", width, height)
    axes = _Axes(width, height, max(x), max(values) * 1.05 or 1.0, min(0.0, min(x)))
    body = axes.frame(title, x_label, y_label)
    for (label, ys), color in zip(series, COLORS, strict=False):
        del label
        segments: list[list[str]] = [[]]
        prev: float | None = None
        for xv, yv in zip(x, ys, strict=False):
            if yv is None:
                segments.append([])
                prev = None
                continue
            if steps and prev is not None:
                segments[-1].append(f"{axes.x(xv):.1f},{axes.y(prev):.1f}")
            segments[-1].append(f"{axes.x(xv):.1f},{axes.y(yv):.1f}")
            prev = yv
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                body.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif seg:
                body.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.6" '
                    f'points="{" ".join(seg)}"/>'
                )
    body += _legend([(label, c) for (label, _y), c in zip(series, COLORS, strict=False)], axes)
    return _svg(width, height, body, name)


def bar_chart(
    name: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    y_label: str,
    width: int = 660,
    height: int = 240,
) -> str:
    """Grouped vertical bars, one group per category."""
    values = [v for _l, vs in series for v in vs]
    if not categories or not values:
        return empty_chart(name, title, "no data", width, height)
    axes = _Axes(width, height, float(len(categories)), max(values) * 1.1 or 1.0)
    body = axes.frame(title, "", y_label, x_ticks=False)
    group = (axes.x(1) - axes.x(0)) * 0.8
    bar = group / max(1, len(series))
    for ci, cat in enumerate(categories):
        x0 = axes.x(ci) + (axes.x(1) - axes.x(0)) * 0.1
        for si, ((_label, vs), color) in enumerate(zip(series, COLORS, strict=False)):
            v = vs[ci] if ci < len(vs) else 0.0
            y = axes.y(v)
            body.append(
                f'<rect x="{x0 + si * bar:.1f}" y="{y:.1f}" width="{bar * 0.92:.1f}" '
                f'height="{axes.y(0) - y:.1f}" fill="{color}"><title>'
                f"{html.escape(cat)}: {v:g}</title></rect>"
            )
            body.append(
                f'<text x="{x0 + (si + 0.46) * bar:.1f}" y="{y - 3:.1f}" class="tick" '
                f'text-anchor="middle">{_fmt(v)}</text>'
            )
        body.append(
            f'<text x="{x0 + group / 2:.1f}" y="{axes.h - axes.bottom + 16}" '
            f'class="tick" text-anchor="middle">{html.escape(cat[:24])}</text>'
        )
    body += _legend([(label, c) for (label, _v), c in zip(series, COLORS, strict=False)], axes)
    return _svg(width, height, body, name)


def hbar_chart(
    name: str,
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    width: int = 660,
    color: str = COLORS[1],
) -> str:
    """Horizontal bars, largest first, each under its label (reasons are long)."""
    if not items:
        return empty_chart(name, title, "none: every call passed", width, 90)
    items = sorted(items, key=lambda kv: -kv[1])[:10]
    height = 34 + 44 * len(items)
    top = max(v for _l, v in items) or 1.0
    left, right = 8, 60
    body = [f'<text x="8" y="16" class="title">{html.escape(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = 30 + 44 * i
        w = (width - left - right) * v / top
        lines = _wrap(label, 100)[:2]
        for j, line in enumerate(lines):
            body.append(
                f'<text x="{left}" y="{y + 11 + 13 * j}" class="tick">{html.escape(line)}</text>'
            )
        bar_y = y + 4 + 13 * len(lines)
        body.append(
            f'<rect x="{left}" y="{bar_y}" width="{max(w, 1):.1f}" height="12" '
            f'fill="{color}"><title>{html.escape(label)}: {v:g}</title></rect>'
        )
        body.append(f'<text x="{left + w + 6:.1f}" y="{bar_y + 11}" class="tick">{_fmt(v)}</text>')
    return _svg(width, height + 13, body, name)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines or [""]


def empty_chart(name: str, title: str, message: str, width: int = 660, height: int = 120) -> str:
    body = [
        f'<text x="8" y="16" class="title">{html.escape(title)}</text>',
        f'<rect x="8" y="28" width="{width - 16}" height="{height - 40}" class="empty"/>',
        f'<text x="{width / 2:.0f}" y="{(height + 20) / 2:.0f}" class="label" '
        f'text-anchor="middle">{html.escape(message)}</text>',
    ]
    return _svg(width, height, body, name)


def _histogram(values: Sequence[float], bins: int = 20) -> tuple[list[str], list[float]]:
    if not values:
        return [], []
    top = max(values)
    step = _nice(top) / 2 if top > 0 else 1.0
    n = max(1, min(bins, math.ceil(top / step) + 1 if top > 0 else 1))
    counts = [0.0] * n
    for v in values:
        counts[min(n - 1, int(v // step))] += 1
    return [f"{_fmt(i * step)}–{_fmt((i + 1) * step)}" for i in range(n)], counts


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1380px;
color:#1b1f24;background:#fafbfc;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:10px 0}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}
.warn{color:#9a6700}.muted{color:#57606a}
.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px 20px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 12px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eaeef2;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f6f8fa}
.kpis{display:flex;flex-wrap:wrap;gap:10px}.kpi{background:#fff;border:1px solid #d0d7de;
border-radius:8px;padding:8px 14px;min-width:110px}.kpi b{display:block;font-size:20px}
svg.plot{max-width:100%;height:auto;background:#fff}
svg .title{font:600 13px system-ui,sans-serif;fill:#1b1f24}svg .tick{font:11px system-ui,sans-serif;
fill:#57606a}svg .label{font:12px system-ui,sans-serif;fill:#57606a}
svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}svg .empty{fill:#f6f8fa;stroke:#d0d7de}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _kpi(label: str, value: str) -> str:
    return (
        f'<div class="kpi"><span class="muted">{html.escape(label)}</span><b>'
        f"{html.escape(value)}</b></div>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(_num(c) if not isinstance(c, str) else c)}</td>" for c in row
            )
            + "</tr>"
        )
    return "".join(out) + "</table>"


def _from_zero(t: Sequence[float], values: Sequence[float | None]) -> list[float | None]:
    """The values from the run's start on (the scrape before it is left out of plots)."""
    return [v for at, v in zip(t, values, strict=True) if at >= 0]


def render_html(doc: Mapping[str, Any]) -> str:
    """One self-contained page: verdict and figures at the top, plots below."""
    run, calls, tl = doc["run"], doc["calls"], doc["timeline"]
    verdict = doc["verdict"]
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>hotline loadtest: {e(run['flow'])} {e(run['started'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>hotline loadtest — {e(run['flow'])} at {e(run['target'])}</h1>",
        f'<div class="muted">{e(run["started"])} · {run["seconds"]:g} s · {e(run["traffic"])} · '
        f"pace {e(run['pace'])} · keys {e(run['dtmf'])} · hotline {e(doc['hotline_version'])}"
        "</div>",
        f'<div class="verdict {"pass" if verdict["passed"] else "fail"}">'
        + ("PASSED" if verdict["passed"] else "FAILED: " + e("; ".join(verdict["reasons"])))
        + "</div>",
    ]
    parts += [f'<div class="warn">⚠ {e(w)}</div>' for w in verdict["warnings"]]
    su = doc["setup_ms"]
    media = doc["media"]
    eng = doc["engine"]
    kpis = [
        _kpi("calls placed", f"{calls['placed']} / {calls['planned']}"),
        _kpi("passed", str(calls["passed"])),
        _kpi("failed", str(calls["failed"])),
        _kpi("peak in progress", str(max(tl["active"], default=0))),
        _kpi("set-up p95", _num(su.get("p95"), " ms")),
    ]
    if media.get("captured"):
        kpis += [
            _kpi("RTP jitter max", f"{media['max_jitter_ms']} ms"),
            _kpi("gaps > 50 ms", str(media["gaps_over_50ms"])),
            _kpi("RTP loss", f"{media['loss_pct']} %"),
        ]
    if eng.get("source"):
        kpis.append(_kpi("engine CPU max", _num(eng["cpu_pct"].get("max"), " %")))
        kpis.append(_kpi("engine RSS max", _num(eng["rss_mb"].get("max"), " MB")))
    parts.append('<div class="kpis">' + "".join(kpis) + "</div>")
    parts.append(
        f'<p class="muted">Stopped: {e(run["stopped"])}. Command: '
        f"<code>{e(run['command'])}</code></p>"
    )
    # traffic
    parts.append("<h2>Traffic</h2><div class=grid2>")
    parts.append(
        '<div class="card">'
        + line_chart(
            "concurrency",
            "Calls in progress",
            tl["t"],
            [("in progress", tl["active"])],
            x_label="seconds",
            y_label="calls",
            steps=True,
        )
        + "</div>"
    )
    parts.append(
        '<div class="card">'
        + line_chart(
            "cps",
            "Call rate",
            tl["t"],
            [("placed", tl["cps"]), ("planned", tl["planned_cps"])],
            x_label="seconds",
            y_label="calls per second",
        )
        + "</div>"
    )
    parts.append(
        '<div class="card">'
        + line_chart(
            "setup",
            "Set-up time, INVITE → 200 OK",
            tl["t"],
            [("p50", tl["setup_p50_ms"]), ("p95", tl["setup_p95_ms"]), ("max", tl["setup_max_ms"])],
            x_label="seconds",
            y_label="ms",
        )
        + (
            f'<p class="muted">Over the run: p50 {_num(su.get("p50"), " ms", 2)}, p90 '
            f"{_num(su.get('p90'), ' ms', 2)}, p95 {_num(su.get('p95'), ' ms', 2)}, p99 "
            f"{_num(su.get('p99'), ' ms', 2)}, max {_num(su.get('max'), ' ms', 2)}</p>"
            if su
            else ""
        )
        + "</div>"
    )
    parts.append(
        '<div class="card">'
        + hbar_chart("failures", "Failures by reason", list(doc["failures"].items()))
        + "</div>"
    )
    parts.append("</div>")
    # journeys
    js = doc["journeys"]
    parts.append("<h2>Journeys</h2><div class=grid2><div class=card>")
    total = max(1, sum(j["placed"] for j in js))
    parts.append(
        bar_chart(
            "journeys",
            "Journey mix: planned share vs placed, and calls that passed",
            [j["name"] for j in js],
            [
                ("expected %", [100 * j["share"] for j in js]),
                ("placed %", [100 * j["placed"] / total for j in js]),
                ("passed %", [100 * j["passed"] / total for j in js]),
            ],
            y_label="% of calls",
        )
    )
    parts.append("</div><div class=card>")
    parts.append(
        _table(
            ["journey", "expects", "planned", "placed", "passed", "failed", "seen on the BYE"],
            [
                [
                    j["name"],
                    j["expected_result"] or "(caller hangs up)",
                    j["planned"],
                    j["placed"],
                    j["passed"],
                    j["failed"],
                    ", ".join(f"{k} × {v}" for k, v in j["seen"].items()),
                ]
                for j in js
            ],
        )
    )
    parts.append(
        '<p class="muted">'
        + "<br>".join(
            f"<b>{e(j['name'])}</b>: {e(j['keys'])} (≈ {j['simulated_seconds']:g} s)" for j in js
        )
        + "</p></div></div>"
    )
    # media
    parts.append("<h2>Media: the engine's RTP</h2>")
    if media.get("captured"):
        labels, counts = _histogram(media["stream_max_jitter_ms"])
        gaps = media["gaps"]
        step = tl["step_seconds"]
        per = [0.0] * len(tl["t"])
        for at, _ms in gaps:
            i = int(at // step)
            if 0 <= i < len(per):
                per[i] += 1
        parts.append(
            "<div class=grid2><div class=card>"
            + bar_chart(
                "jitter",
                "Streams by their highest interarrival jitter (RFC 3550)",
                labels,
                [("streams", counts)],
                y_label="streams",
            )
            + "</div><div class=card>"
            + line_chart(
                "gaps",
                "Gaps over 50 ms between packets of a stream",
                tl["t"],
                [("gaps", per)],
                x_label="seconds",
                y_label="gaps",
            )
            + "</div></div>"
        )
        parts.append(
            f'<p class="muted">{media["streams"]} streams, {media["packets"]} packets, '
            f"{media['lost']} lost ({media['loss_pct']} %), {media['duplicates']} "
            f"duplicates; jitter max {media['max_jitter_ms']} ms, p95 of streams "
            f"{media['p95_stream_jitter_ms']} ms, mean {media['mean_jitter_ms']} ms; "
            f"largest gap {media['max_gap_ms']} ms. " + e(media.get("note") or "") + "</p>"
        )
    else:
        parts.append(f'<p class="warn">{e(media["note"])}</p>')
    # engine
    parts.append("<h2>Engine</h2><div class=grid2>")
    et = eng.get("timeline", {})
    if eng.get("source"):
        parts.append(
            '<div class="card">'
            + line_chart(
                "cpu",
                "Engine CPU (100 % = one core)",
                et["t"],
                [("CPU %", et["cpu_pct"])],
                x_label="seconds",
                y_label="%",
            )
            + "</div>"
        )
        parts.append(
            '<div class="card">'
            + line_chart(
                "memory",
                "Engine memory (resident)",
                et["t"],
                [("RSS MB", et["rss_mb"])],
                x_label="seconds",
                y_label="MB",
            )
            + "</div>"
        )
    else:
        parts.append(
            '<div class="card">'
            + empty_chart("cpu", "Engine CPU and memory", eng.get("note", "unknown"))
            + "</div>"
        )
    mt = eng.get("metrics_timeline", {})
    if mt.get("t"):
        parts.append(
            '<div class="card">'
            + line_chart(
                "metrics",
                "From /metrics: calls active, media tick p99 (ms)",
                [t for t in mt["t"] if t >= 0],
                [
                    ("calls active", _from_zero(mt["t"], mt["calls_active"])),
                    ("tick p99 ms", _from_zero(mt["t"], mt["tick_p99_ms"])),
                ],
                x_label="seconds",
                y_label="",
            )
            + "</div>"
        )
    parts.append("</div>")
    met = doc["metrics"]
    if met.get("deltas"):
        rows = [
            [
                name.removeprefix("hotline_").removesuffix("_total"),
                ", ".join(f"{k or 'all'}: {_count(v)}" for k, v in values.items()) or "0",
            ]
            for name, values in met["deltas"].items()
        ]
        parts.append("<h3>Engine counters over the run</h3>" + _table(["metric", "increase"], rows))
    elif met.get("note"):
        parts.append(f'<p class="muted">/metrics: {e(met["note"])}</p>')
    if doc.get("compare"):
        cmp_ = doc["compare"]
        parts.append(f"<h2>Compared with {e(cmp_['against'])}</h2>")
        parts.append(
            _table(
                ["figure", "before", "now", "change", ""],
                [
                    [
                        r["what"],
                        r["before"],
                        r["now"],
                        "–"
                        if r["change"] is None
                        else f"{r['change']:+g}"
                        + (f" ({r['change_pct']:+g} %)" if r["change_pct"] is not None else ""),
                        {True: "better", False: "worse", None: ""}[r["better"]],
                    ]
                    for r in cmp_["rows"]
                ],
            )
        )
    if run.get("notes"):
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in run["notes"]) + "</ul>"
        )
    sipp = doc["sipp"]
    if sipp.get("errors"):
        parts.append(
            "<h2>SIPp's errors</h2><ul>"
            + "".join(f"<li><code>{e(x)}</code></li>" for x in sipp["errors"])
            + "</ul>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)
