"""A flow as a picture: Graphviz DOT text with one box per step and labelled edges.

Owns the drawing conventions: one cluster for the flow and one per sub-flow; a step's
shape and colour by its type (input steps blue, service steps amber, ends grey); edges
labelled with the key, outcome or condition that takes them; the start marked; a call
into a sub-flow drawn dashed to its start. Rendering DOT to SVG/PNG is Graphviz's job
(`hotline flow graph` runs `dot`).

Must not know: files, processes, the engine.
"""

from __future__ import annotations

from hotline.ivr import model as m
from hotline.ivr.loader import Flow

_STYLE: dict[str, tuple[str, str]] = {
    "play": ("box", "#ffffff"),
    "menu": ("box", "#dbeafe"),
    "collect": ("box", "#dbeafe"),
    "set": ("box", "#f3f4f6"),
    "branch": ("diamond", "#f3f4f6"),
    "hours": ("diamond", "#fef3c7"),
    "webhook": ("box", "#fef3c7"),
    "booking": ("box", "#fef3c7"),
    "queue": ("box", "#dcfce7"),
    "transfer": ("box", "#dcfce7"),
    "goto": ("circle", "#f3f4f6"),
    "call": ("box", "#ede9fe"),
    "return": ("oval", "#e5e7eb"),
    "hangup": ("oval", "#e5e7eb"),
}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(scope: str, sid: str) -> str:
    return _q(f"{scope}::{sid}" if scope else sid)


def _summary(step: object) -> str:
    if isinstance(step, m.Collect):
        return f"{step.field} ({step.input})" + (" •sensitive" if step.sensitive else "")
    if isinstance(step, m.Booking):
        return step.action
    if isinstance(step, m.Queue):
        return step.queue
    if isinstance(step, m.Hangup):
        return step.result or ""
    if isinstance(step, m.CallSubflow):
        return step.subflow
    if isinstance(step, m.HoursCheck):
        return step.schedule
    return ""


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def to_dot(flow: Flow) -> str:
    lines = [
        "digraph flow {",
        "  rankdir=TB;",
        '  graph [fontname="Helvetica", fontsize=11, labelloc=t, '
        f"label={_q(f'{flow.name} (version {flow.version})')}];",
        '  node [fontname="Helvetica", fontsize=10, style="filled,rounded"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for index, scope in enumerate(flow.scopes.values()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_q(scope.name or 'main')}; color=\"#9ca3af\";")
        for sid in scope.order:
            step = scope.steps[sid]
            shape, fill = _STYLE.get(step.type, ("box", "#ffffff"))
            summary = _summary(step)
            label = f"{sid}\n[{step.type}]" + (f"\n{summary}" if summary else "")
            extra = ", penwidth=2.5" if sid == scope.start else ""
            lines.append(f"    {_node(scope.name, sid)} [label={_q(label)}, shape={shape}, "
                         f'fillcolor="{fill}"{extra}];')
        lines.append("  }")
    for edge in flow.edges:
        attrs = f" [label={_q(_short(edge.label))}]" if edge.label else ""
        lines.append(f"  {_node(edge.scope, edge.source)} -> {_node(edge.scope, edge.target)}"
                     f"{attrs};")
    for scope in flow.scopes.values():
        for sid in scope.order:
            step = scope.steps[sid]
            if isinstance(step, m.CallSubflow) and step.subflow in flow.scopes:
                sub = flow.scopes[step.subflow]
                lines.append(f"  {_node(scope.name, sid)} -> {_node(sub.name, sub.start)} "
                             '[style=dashed, label="call"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
