"""`hotline loadtest`: load-test an engine with SIPp callers whose journeys come from a flow.

Owns the command's arguments, their defaults (taken from the target engine's config
file, so a bare `hotline loadtest` tests the engine `make run` starts: SIP on
127.0.0.1:5060, /metrics on 127.0.0.1:8080, RTP ports 20000-29999, the vaccine flow),
writing the reports and the exit code: 0 every call passed, 1 some failed, 2 the run was
refused or could not start. The work is hotline.loadtest's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

DEFAULT_TARGET = "127.0.0.1:5060"
DEFAULT_METRICS = "http://127.0.0.1:8080/metrics"
DEFAULT_CPS = 1.0
DEFAULT_DURATION = 60.0

EPILOG = """\
examples:
  hotline loadtest                                    # 1 call/s for 60 s against make run
  hotline loadtest --profile 10k-per-day --speedup 60 --duration 120 \\
      --report-html report.html --report-json report.json
  hotline loadtest --cps 5 --ramp-up 20 --duration 120 --mix book=70,agent=20,hangup=10
  hotline loadtest --calls 50 --cps 2 --pace ahead --compare report.json
  hotline loadtest --list-journeys                    # what the flow's callers will do

Journeys are derived from the flow and checked in the simulator: `booked` (book an
appointment with a new person's date of birth, Medicare number and postcode), `agent`
(ask for a person: `no_agent` is the expected ending when nobody is logged in;
`ended_by_agent` with --agents), `hangup` (hang up during the second prompt), and every
other ending a caller with valid answers can reach. Each call's ending is checked on the
engine's BYE (X-Hotline-Result).

Needs SIPp (Debian sip-tester) and root or CAP_NET_RAW on sipp (keys go through a raw
socket); tshark for the media figures (else --no-capture). Targets outside 127.0.0.0/8
and ::1 are refused unless --allow-remote. Every run is bounded by --max-calls and
--max-seconds.
"""


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit() or not 0 < int(lo) < int(hi) < 65536:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH ports, found {text!r}")
    return int(lo), int(hi)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, found {text!r}")
        return value

    return parse


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "loadtest",
        help="load-test an engine with SIPp callers derived from a flow",
        description=__doc__.split("\n\n", 1)[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        nargs="?",
        metavar="HOST[:PORT]",
        help="the engine's SIP address (default: the config's first UDP listen "
        f"address, else {DEFAULT_TARGET})",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="the target engine's config, for its SIP address, RTP ports, HTTP "
        "listener, flows, opening-hours closures and agents (default: "
        "config.yaml when present)",
    )
    g = p.add_argument_group("journeys")
    g.add_argument(
        "--flow",
        metavar="FILE",
        help="the flow the engine answers (default: the config's ivr.default_flow)",
    )
    g.add_argument(
        "--dial", metavar="NUMBER", help="the number to dial (default: the flow's first number)"
    )
    g.add_argument(
        "--mix",
        metavar="NAME=WEIGHT,…",
        help="journeys and their weights, e.g. book=70,agent=20,hangup=10 (a "
        "unique prefix names a journey; default that mix when the flow has "
        "those journeys, else equal shares)",
    )
    g.add_argument(
        "--list-journeys",
        action="store_true",
        help="print the flow's journeys and exit (places no call)",
    )
    g.add_argument(
        "--pace",
        choices=["listen", "ahead"],
        default="listen",
        help="listen: press after each prompt ends (default); ahead: a practised "
        "caller presses a second into each prompt",
    )
    g.add_argument(
        "--dtmf",
        choices=["rfc4733", "inband"],
        default="rfc4733",
        help="keys as RFC 4733 events (default) or in-band tones in the audio",
    )
    g.add_argument(
        "--no-caller-audio",
        action="store_true",
        help="the callers send no audio between keys (the engine hangs up a call "
        "silent for rtp.inactivity_timeout_seconds)",
    )
    g.add_argument("--seed", type=int, help="random seed for callers' data and choices")
    t = p.add_argument_group("traffic (a constant rate, or a daily profile)")
    t.add_argument(
        "--cps",
        type=_positive(float),
        help=f"calls per second (default {DEFAULT_CPS:g} without --profile)",
    )
    t.add_argument(
        "--duration",
        type=_positive(float),
        metavar="SECONDS",
        help=f"seconds of traffic (default {DEFAULT_DURATION:g} with --cps; "
        "with --profile, cuts the compressed day to this long, around its "
        "busiest part unless --from)",
    )
    t.add_argument("--ramp-up", type=float, default=0.0, metavar="SECONDS")
    t.add_argument("--ramp-down", type=float, default=0.0, metavar="SECONDS")
    t.add_argument(
        "--profile", metavar="NAME", help="a daily profile: 10k-per-day, 1k-per-day, 100k-per-day"
    )
    t.add_argument(
        "--speedup",
        type=_positive(float),
        default=1.0,
        metavar="N",
        help="play the profile's day N times faster (default 1)",
    )
    t.add_argument(
        "--from", dest="day_from", metavar="HH:MM", help="where in the profile's day to start"
    )
    t.add_argument("--calls", type=_positive(int), metavar="N", help="place at most N calls")
    t.add_argument(
        "--concurrent",
        type=_positive(int),
        default=200,
        metavar="N",
        help="at most N calls at once (default 200; more wait for a free place)",
    )
    t.add_argument(
        "--max-calls",
        type=_positive(int),
        default=10_000,
        metavar="N",
        help="hard limit on calls per run (default 10000)",
    )
    t.add_argument(
        "--max-seconds",
        type=_positive(float),
        default=1800.0,
        metavar="S",
        help="hard limit on a run's length; calls still up are cut (default 1800)",
    )
    t.add_argument(
        "--max-bookings",
        type=int,
        metavar="N",
        help="refuse a run that would book more (default: half the places the "
        "sample clinics offer over booking.sample_days)",
    )
    a = p.add_argument_group("agents")
    a.add_argument(
        "--agents",
        type=int,
        default=0,
        metavar="N",
        help="N agents register, log in (*41) and answer queued calls (SIPp with "
        "an RTP echo), then log out (*42). They must be acd.agents and "
        "registrar users with a password (or password_env) in the target's "
        "config: make run's has agent1 and agent2",
    )
    a.add_argument(
        "--agent-talk",
        type=_positive(float),
        default=5.0,
        metavar="SECONDS",
        help="how long an agent talks before hanging up (default 5)",
    )
    a.add_argument(
        "--queue-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long a queued caller may wait for an agent (default 120)",
    )
    o = p.add_argument_group("observing the engine")
    o.add_argument(
        "--metrics",
        metavar="URL",
        help=f"the engine's /metrics (default: from the config, else "
        f"{DEFAULT_METRICS}; skipped when it does not answer)",
    )
    o.add_argument("--no-metrics", action="store_true")
    o.add_argument(
        "--engine-pid",
        type=int,
        metavar="PID",
        help="the engine's process, for CPU and memory (default: the process "
        "holding the SIP port, on this machine)",
    )
    o.add_argument(
        "--no-capture",
        action="store_true",
        help="no tshark capture of the engine's RTP (no media figures)",
    )
    o.add_argument(
        "--capture-packets",
        type=_positive(int),
        default=2_000_000,
        metavar="N",
        help="stop capturing after N packets (default 2000000)",
    )
    o.add_argument(
        "--rtp-ports",
        type=_port_range,
        metavar="LOW-HIGH",
        help="the engine's RTP ports (default: the config's, else 20000-29999)",
    )
    r = p.add_argument_group("report")
    r.add_argument("--report-json", metavar="FILE")
    r.add_argument("--report-html", metavar="FILE")
    r.add_argument(
        "--compare",
        metavar="PREVIOUS.json",
        help="show the differences from an earlier run's JSON report",
    )
    r.add_argument(
        "--keep", metavar="DIR", help="keep the scenario, injection file, logs and capture in DIR"
    )
    r.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target outside 127.0.0.0/8 and ::1 (an engine you run)",
    )
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The target's config (None when there is none to read)."""
    from hotline.config import ConfigError, load_config

    path = Path(args.config) if args.config else Path("config.yaml")
    if not path.exists():
        if args.config:
            raise SystemExit(_fail(f"--config: {path} does not exist"))
        return None, None
    try:
        return load_config(path), path
    except ConfigError as exc:
        raise SystemExit(_fail(f"the target's config does not load:\n{exc}")) from None


def _fail(message: str) -> int:
    print(f"hotline loadtest: {message}", file=sys.stderr)
    return 2


def _flow_file(args: argparse.Namespace, cfg: Any) -> Path:
    if args.flow:
        return Path(args.flow)
    if cfg is not None and cfg.ivr.default_flow:
        flows = Path(cfg.paths.flows)
        direct = flows / f"{cfg.ivr.default_flow}.yaml"
        if direct.exists():
            return direct
        for candidate in sorted(flows.glob("*.yaml")):
            try:
                head = candidate.read_text(errors="replace")[:4000]
            except OSError:
                continue
            if f"flow: {cfg.ivr.default_flow}\n" in head:
                return candidate
        raise SystemExit(
            _fail(
                f"no flow file for ivr.default_flow {cfg.ivr.default_flow!r} in "
                f"{flows}: give --flow"
            )
        )
    default = Path("ivr_flows/vaccine.yaml")
    if default.exists():
        return default
    raise SystemExit(_fail("which flow does the engine run? give --flow FILE"))


def _agents(args: argparse.Namespace, cfg: Any, path: Path | None) -> list[tuple[str, str]]:
    """The first N agents of the config that are registrar users with a password (read
    from the file itself: the loaded config keeps only digests)."""
    if args.agents <= 0:
        return []
    if cfg is None or path is None:
        raise SystemExit(
            _fail(
                "--agents needs the target's config (--config) for the agents' names and passwords"
            )
        )
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    users = (raw.get("registrar") or {}).get("users") or []
    secrets: dict[str, str] = {}
    for user in users:
        if not isinstance(user, dict) or "username" not in user:
            continue
        if user.get("password"):
            secrets[str(user["username"])] = str(user["password"])
        elif user.get("password_env") and os.environ.get(str(user["password_env"])):
            secrets[str(user["username"])] = os.environ[str(user["password_env"])]
    ids = [a.id for a in cfg.acd.agents if a.id in secrets]
    if len(ids) < args.agents:
        raise SystemExit(
            _fail(
                f"--agents {args.agents}: the config {path} has {len(ids)} agent(s) that are "
                f"registrar users with a password ({', '.join(ids) or 'none'}); add agents to "
                "acd.agents and registrar.users, or ask for fewer"
            )
        )
    return [(agent_id, secrets[agent_id]) for agent_id in ids[: args.agents]]


def _traffic(args: argparse.Namespace) -> Any:
    from hotline.loadtest import profiles

    if args.profile:
        if args.cps:
            raise SystemExit(_fail("give --cps or --profile, not both"))
        profile = profiles.PROFILES.get(args.profile)
        if profile is None:
            raise SystemExit(
                _fail(
                    f"--profile {args.profile!r}: known profiles are "
                    + ", ".join(profiles.PROFILES)
                )
            )
        start = profiles.parse_clock(args.day_from) if args.day_from else None
        return profiles.compress(profile, args.speedup, duration=args.duration, start=start)
    if args.speedup != 1.0 or args.day_from:
        raise SystemExit(_fail("--speedup and --from go with --profile"))
    return profiles.Ramp(
        args.cps or DEFAULT_CPS, args.duration or DEFAULT_DURATION, args.ramp_up, args.ramp_down
    )


def settings(args: argparse.Namespace) -> Any:
    """Arguments and the target's config → runner.Settings."""
    from hotline.config import parse_host_port
    from hotline.loadtest import profiles
    from hotline.loadtest.runner import Settings

    cfg, cfg_path = _config(args)
    if args.target:
        try:
            host, port = parse_host_port(args.target)
        except ValueError as exc:
            raise SystemExit(_fail(f"target: {exc}")) from None
    elif cfg is not None:
        udp = [a for a in cfg.sip.listen if a.transport == args.transport] or list(cfg.sip.listen)
        host, port = udp[0].host, udp[0].port
    else:
        host, port = parse_host_port(DEFAULT_TARGET)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    metrics_url: str | None = None
    if not args.no_metrics:
        if args.metrics:
            metrics_url = args.metrics
        elif cfg is not None and cfg.http.enabled:
            h = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
            metrics_url = f"http://{h}:{cfg.http.port}/metrics"
        elif cfg is None:
            metrics_url = DEFAULT_METRICS
    try:
        traffic = _traffic(args)
    except profiles.ProfileError as exc:
        raise SystemExit(_fail(str(exc))) from None
    closures: set[str] = set()
    clinics: str | None = None
    rules: Path | None = None
    sample_days = 14
    if cfg is not None:
        from hotline.engine.closures import closures_file, read_closures

        closures = set(cfg.ivr.closed) | read_closures(closures_file(Path(cfg.paths.data)))
        sample_days = cfg.booking.sample_days
        rules = Path(cfg.booking.rules) if cfg.booking.rules else None
    if cfg is None or cfg.booking.sample_clinics:
        clinics = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text(
            encoding="utf-8"
        )
    audio = (
        Path(cfg.paths.audio)
        if cfg is not None
        else (Path("audio") if Path("audio").is_dir() else None)
    )
    rtp_ports = args.rtp_ports or (
        (cfg.rtp.port_min, cfg.rtp.port_max) if cfg is not None else (20000, 29999)
    )
    traces: Path | None = None
    if cfg is not None and cfg.ivr.traces and Path(cfg.paths.data).is_dir():
        traces = Path(cfg.paths.data) / "traces"  # readable when the engine is this machine's
    progress: Literal["tty", "plain", "off"] = (
        "off" if args.quiet else "tty" if sys.stderr.isatty() else "plain"
    )
    return Settings(
        host=host,
        port=port,
        transport=args.transport,
        flow_file=_flow_file(args, cfg),
        audio_dir=audio,
        dialled=args.dial,
        traffic=traffic,
        concurrent=args.concurrent,
        calls=args.calls,
        max_calls=args.max_calls,
        max_seconds=args.max_seconds,
        mix=args.mix,
        pace=args.pace,
        dtmf=args.dtmf,
        caller_audio=not args.no_caller_audio,
        agents=_agents(args, cfg, cfg_path),
        agent_talk=args.agent_talk,
        queue_wait=args.queue_wait,
        metrics_url=metrics_url,
        metrics_required=bool(args.metrics),
        engine_pid=args.engine_pid,
        capture=not args.no_capture,
        capture_packets=args.capture_packets,
        rtp_ports=rtp_ports,
        rtp_inactivity=cfg.rtp.inactivity_timeout_seconds if cfg is not None else 30.0,
        work_dir=Path(args.keep) if args.keep else None,
        seed=args.seed,
        timezone=cfg.ivr.timezone if cfg is not None else "Australia/Sydney",
        closures=frozenset(closures),
        clinics_csv=clinics,
        rules_file=rules,
        sample_days=sample_days,
        max_bookings=args.max_bookings,
        allow_remote=args.allow_remote,
        progress=progress,
        traces_dir=traces,
        command="hotline loadtest " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )


def _print_journeys(plan: Any) -> None:
    print(f"flow {plan.flow.name} (version {plan.flow.version}), dialled {plan.dialled}:")
    for j in plan.journeys:
        share = plan.shares.get(j.name)
        mark = f"{100 * share:5.1f} %" if share else "   –   "
        ending = j.result or ("(the caller hangs up)" if j.caller_hangs_up else "(any BYE)")
        print(
            f"  {mark}  {j.name:<14} ends {ending:<18} ≈{j.seconds('listen'):5.0f} s "
            f"listening, {j.seconds('ahead'):4.0f} s typing ahead"
        )
        print(f"            {j.describe()}")
    print(f"{len(plan.calls)} calls planned; {plan.bookings} would book")
    for note in plan.notes:
        print(f"note: {note}")


def run(args: argparse.Namespace) -> int:
    """The command: 0 every call passed, 1 some failed, 2 refused or could not start."""
    from hotline.loadtest import report
    from hotline.loadtest.runner import RunError, plan, resolve_target
    from hotline.loadtest.runner import run as run_test

    try:
        s = settings(args)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    previous = None
    if args.compare:
        try:
            previous = report.load(Path(args.compare).read_text(), args.compare)
        except (OSError, report.ReportError) as exc:
            return _fail(f"--compare: {exc}")
    try:
        if not args.list_journeys:
            resolve_target(s.host, s.allow_remote)  # before anything else is done
        p = plan(s)
        if args.list_journeys:
            _print_journeys(p)
            return 0
        print(
            f"hotline loadtest: flow {p.flow.name}, {len(p.calls)} calls planned "
            f"({s.traffic.describe()}), mix "
            + ", ".join(f"{k} {100 * v:.0f} %" for k, v in p.shares.items())
            + f", target {s.host}:{s.port}",
            file=sys.stderr,
        )
        data = run_test(s, sys.stderr, p)
    except RunError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(
            "hotline loadtest: interrupted; every SIPp and tshark process was stopped",
            file=sys.stderr,
        )
        return 130
    doc = report.summarize(data)
    if previous is not None:
        doc["compare"] = {"against": args.compare, "rows": report.compare(previous, doc)}
    written: list[str] = []
    try:
        if args.report_json:
            import json

            Path(args.report_json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            written.append(args.report_json)
        if args.report_html:
            Path(args.report_html).write_text(report.render_html(doc))
            written.append(args.report_html)
    except OSError as exc:
        print(report.render_table(doc))
        return _fail(f"cannot write the report: {exc}")
    print(report.render_table(doc))
    if written:
        print(f"  written   {', '.join(written)}")
    if args.keep:
        print(f"  kept      {data.work_dir}")
    elif s.work_dir is None:
        import shutil

        shutil.rmtree(data.work_dir, ignore_errors=True)
    return 0 if doc["verdict"]["passed"] else 1
