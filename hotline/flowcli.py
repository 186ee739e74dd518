"""`hotline flow …`: check, simulate, replay, graph and schema of IVR flows, from the command line.

Owns the flow subcommands' arguments, output and exit codes (0 fine, 1 a flow has
errors or a simulation failed its expectation, 2 bad usage). The work is done by
hotline.ivr (loader, checker, simulator, graph); this module reads the files and runs
Graphviz for pictures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotline.yamlpos import DiagnosticsError, Severity, load_yaml_file

if TYPE_CHECKING:
    from hotline.ivr.loader import Flow, PromptAsset


def default_audio_dir(flow_file: Path) -> Path | None:
    """`audio/` beside the flows directory (ivr_flows/../audio), if there is one."""
    for candidate in (flow_file.resolve().parent.parent / "audio", Path.cwd() / "audio"):
        if candidate.is_dir():
            return candidate
    return None


def _audio_dir(args: argparse.Namespace, flow_file: Path) -> Path | None:
    if args.audio is not None:
        return Path(args.audio)
    return default_audio_dir(flow_file)


def _load(args: argparse.Namespace, file: str) -> Flow | None:
    """The flow named on the command line, or None with its errors printed."""
    from hotline.ivr.loader import FlowError, load_flow

    path = Path(file)
    try:
        return load_flow(path, audio_dir=_audio_dir(args, path), display_name=file)
    except FlowError as exc:
        print(str(exc), file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    from hotline.ivr.loader import FlowError, load_flow

    failed = False
    out: list[dict[str, Any]] = []
    for name in args.files:
        path = Path(name)
        try:
            flow = load_flow(path, audio_dir=_audio_dir(args, path), display_name=name)
            diagnostics = list(flow.warnings)
        except FlowError as exc:
            diagnostics = list(exc.diagnostics)
            failed = True
        if args.strict and any(d.severity is Severity.WARNING for d in diagnostics):
            failed = True
        for d in diagnostics:
            if args.format == "json":
                out.append(
                    {
                        "file": d.file,
                        "line": d.line,
                        "col": d.col,
                        "severity": d.severity.value,
                        "code": d.code,
                        "message": d.message,
                    }
                )
            else:
                print(f"{d.format()} [{d.code}]")
        if not diagnostics and args.format == "text" and not args.quiet:
            print(f"{name}: ok")
    if args.format == "json":
        print(json.dumps(out, indent=2, ensure_ascii=False))
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from hotline.ivr.model import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def recording_seconds(path: Path) -> float | None:
    """The length of a WAV recording from its header (None when it cannot be read)."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (OSError, wave.Error, EOFError):
        return None


def prompt_seconds(asset: PromptAsset) -> float:
    """How long a prompt plays for a simulated caller: its recording's length, else an
    estimate from its text (`hotline flow simulate` and `hotline loadtest` both)."""
    from hotline.ivr import simulate as sim

    if asset.file is not None:
        seconds = recording_seconds(asset.file)
        if seconds is not None:
            return seconds
    return sim.estimate_duration(asset)


def cmd_simulate(args: argparse.Namespace) -> int:
    from hotline.ivr import simulate as sim

    flow = _load(args, args.file)
    if flow is None:
        return 1
    scripts: list[sim.Script] = []
    try:
        if args.keys is not None:
            scripts.append(sim.parse_keys(args.keys))
        for name in args.script or []:
            try:
                doc = load_yaml_file(name)
            except DiagnosticsError as exc:
                print(str(exc), file=sys.stderr)
                return 2
            scripts.append(sim.parse_script(doc.data, name))
    except sim.ScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not scripts:
        print("error: give --keys or --script", file=sys.stderr)
        return 2

    runs = []
    for script in scripts:
        run = sim.simulate(flow, script, duration_of=prompt_seconds, closures=args.closed or ())
        runs.append(run)
        if not args.coverage or len(scripts) == 1:
            print(f"== {script.name}: {flow.name} (version {flow.version})")
            print(run.transcript())
            print(f"== result: {run.result} ({run.end_reason})")
    if args.coverage:
        print(sim.coverage(flow, runs).report())
    if args.expect is not None and any(r.result != args.expect for r in runs):
        bad = [f"{r.script}: {r.result}" for r in runs if r.result != args.expect]
        print(f"expected result {args.expect!r}; got {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from hotline.ivr.graph import to_dot

    flow = _load(args, args.file)
    if flow is None:
        return 1
    dot = to_dot(flow)
    output = Path(args.output)
    fmt = output.suffix.lstrip(".").lower()
    if fmt == "dot":
        output.write_text(dot, encoding="utf-8")
        return 0
    if fmt not in ("svg", "png", "pdf"):
        print(
            f"error: -o must end in .svg, .png, .pdf or .dot, found {output.name!r}",
            file=sys.stderr,
        )
        return 2
    exe = shutil.which("dot")
    if exe is None:
        print(
            "error: Graphviz `dot` is not installed (Debian: apt-get install graphviz); "
            "-o FILE.dot writes the graph source instead",
            file=sys.stderr,
        )
        return 1
    done = subprocess.run(
        [exe, f"-T{fmt}", "-o", str(output)],
        input=dot.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        print(f"error: dot failed: {done.stderr.decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from hotline.ivr.replay import TraceError, read_trace, replay

    flow = _load(args, args.flow)
    if flow is None:
        return 1
    changed = 0
    for name in args.traces:
        try:
            trace = read_trace(name)
            result = replay(flow, trace)
        except TraceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if result.same:
            if args.verbose:
                print(
                    f"{result.call_id}: same path ({len(result.new_path)} steps, "
                    f"{result.new_result})"
                )
            continue
        changed += 1
        print(
            f"{result.call_id}: different path — {result.divergence()}; result was "
            f"{result.old_result}, now {result.new_result}"
        )
    print(
        f"{len(args.traces)} calls replayed on {flow.name} version {flow.version}: "
        f"{changed} would take a different path"
    )
    return 1 if changed and args.fail_on_change else 0


def add_parser(sub: Any) -> None:
    f = sub.add_parser("flow", help="check, simulate and draw IVR flows")
    fsub = f.add_subparsers(dest="flow_command", required=True)

    c = fsub.add_parser("check", help="load and analyse flows; exit 1 on any error")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--audio", metavar="DIR", help="the audio directory (default: ../audio)")
    c.add_argument("--strict", action="store_true", help="warnings fail the check too")
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for good files")
    c.set_defaults(func=cmd_check)

    s = fsub.add_parser("schema", help="print the JSON Schema of flow files")
    s.set_defaults(func=cmd_schema)

    m = fsub.add_parser("simulate", help="run a flow offline with a scripted caller")
    m.add_argument("file", metavar="FILE")
    m.add_argument(
        "--script",
        action="append",
        metavar="SCRIPT.yaml",
        help="a caller script (repeat for several calls)",
    )
    m.add_argument("--keys", help='quick script: key groups pressed in turn, "1,19800101#,2"')
    m.add_argument("--coverage", action="store_true", help="report steps and edges no script took")
    m.add_argument(
        "--closed",
        action="append",
        metavar="SCHEDULE",
        help="simulate the emergency closure of this opening-hours schedule",
    )
    m.add_argument("--expect", metavar="RESULT", help="exit 1 unless every call ends so")
    m.add_argument("--audio", metavar="DIR")
    m.set_defaults(func=cmd_simulate)

    r = fsub.add_parser("replay", help="re-run recorded call traces against a flow version")
    r.add_argument("traces", nargs="+", metavar="TRACE.jsonl")
    r.add_argument("--flow", required=True, metavar="NEW.yaml")
    r.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 when any call would take a different path",
    )
    r.add_argument("-v", "--verbose", action="store_true", help="list unchanged calls too")
    r.add_argument("--audio", metavar="DIR")
    r.set_defaults(func=cmd_replay)

    g = fsub.add_parser("graph", help="draw a flow (SVG, PNG, PDF or DOT)")
    g.add_argument("file", metavar="FILE")
    g.add_argument("-o", "--output", required=True, metavar="OUT.svg")
    g.add_argument("--audio", metavar="DIR")
    g.set_defaults(func=cmd_graph)
