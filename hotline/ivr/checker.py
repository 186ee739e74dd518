"""Static analysis of a compiled flow: the mistakes ops must see before a caller does.

Owns the rules, each with a stable code, an error or a warning, and a place in the file:

errors
  undefined-target   a `next`/key/outcome names a step the flow (or sub-flow) lacks
  undefined-start    `start` names no step
  undefined-subflow  `call` names no sub-flow;  subflow-recursion: a sub-flow calls itself
                     (directly or through other sub-flows)
  return-outside     `return` in the flow's own steps
  dead-end           a step with no way on that is not a hangup/transfer/return
  no-failure-exit    a menu or collect without `failed` (where does attempt 4 go?)
  loop-no-exit       steps that lead only to each other, with no hangup/transfer/queue out
  loop-no-wait       a cycle of steps none of which waits for the caller (it would spin)
                     (a `call` counts as waiting, or as an exit, when its sub-flow
                     can wait, or can end the call)
  undefined-prompt   a prompt name not in `prompts:`
  undefined-hours    an `hours` step naming no schedule
  unknown-variable   an expression or template reading a variable nothing sets
  unknown-language   `language` set to a language the flow does not declare
  sensitive-spoken   a sensitive value spoken back whole (use `last: N`)
  sensitive-header   a sensitive value in a BYE header
  sensitive-webhook  a sensitive value sent to a webhook that does not list it in
                     `send_sensitive`, or listed for a plain-HTTP, non-loopback URL
  sayas-missing      a word recording say-as needs is not on disk
  key-conflict       a confirm's yes and no keys are the same; a key of a collect's
                     choices is its terminator or clear key; the terminator is the
                     clear key
warnings
  unreachable        a step no path from the start reaches;  unused-prompt, unused-subflow
  no-reprompt        a menu or collect with no noinput/nomatch prompts (callers hear
                     only silence and a repeat)

Must not know: the engine, files beyond what the loader resolved, or how steps run.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hotline.ivr import expr
from hotline.ivr import model as m
from hotline.yamlpos import Diagnostic

if TYPE_CHECKING:
    from hotline.ivr.loader import Flow, Scope, _Compiler

WAITING_STEPS = (m.Menu, m.Collect, m.Play, m.Hangup, m.Webhook, m.Booking, m.Queue, m.Transfer)
TERMINAL_STEPS = (m.Hangup, m.Transfer, m.Queue, m.Return)


def _suggest(name: str, choices: Iterator[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check(flow: Flow, c: _Compiler) -> list[Diagnostic]:
    """Run every rule; the diagnostics are added to `c` and returned."""
    before = len(c.diagnostics)
    _targets(flow, c)
    _reachability(flow, c)
    _loops(flow, c)
    _prompts(flow, c)
    _variables(flow, c)
    _keys(flow, c)
    out = c.diagnostics[before:]
    del c.diagnostics[before:]
    return out


def _targets(flow: Flow, c: _Compiler) -> None:
    doc = flow.document
    main = flow.scopes[""]
    if doc.start is not None and doc.start not in main.steps:
        c.error(
            ("start",),
            f"start step {doc.start!r} does not exist{_suggest(doc.start, list(main.steps))}",
            "undefined-start",
        )
    for name, sub in doc.subflows.items():
        if sub.start is not None and sub.start not in sub.steps:
            c.error(
                ("subflows", name, "start"),
                f"start step {sub.start!r} does not exist in "
                f"sub-flow {name!r}{_suggest(sub.start, list(sub.steps))}",
                "undefined-start",
            )
    for edge in flow.edges:
        scope = flow.scopes[edge.scope]
        if edge.target not in scope.steps:
            where = "this flow" if not edge.scope else f"sub-flow {edge.scope!r}"
            c.error(
                edge.path,
                f"step {edge.target!r} does not exist in {where}"
                f"{_suggest(edge.target, list(scope.steps))}",
                "undefined-target",
            )
    calls = _calls(flow)
    for scope in flow.scopes.values():
        for sid in scope.order:
            step = scope.steps[sid]
            path = scope.step_path(sid)
            if isinstance(step, m.CallSubflow):
                if step.subflow not in doc.subflows:
                    c.error(
                        (*path, "subflow"),
                        f"sub-flow {step.subflow!r} does not exist"
                        f"{_suggest(step.subflow, list(doc.subflows))}",
                        "undefined-subflow",
                    )
                elif scope.name:
                    chain = _call_chain(calls, step.subflow, scope.name)
                    if chain is not None:
                        through = f" (through {' → '.join(chain[:-1])})" if chain[:-1] else ""
                        c.error(
                            (*path, "subflow"),
                            f"sub-flow {scope.name!r} calls itself{through}",
                            "subflow-recursion",
                        )
            if isinstance(step, m.Return) and not scope.name:
                c.error(
                    path,
                    "`return` only ends a sub-flow; use `hangup` or `goto` here",
                    "return-outside",
                    at="key",
                )
            if isinstance(step, m.HoursCheck) and step.schedule not in doc.hours:
                c.error(
                    (*path, "schedule"),
                    f"opening hours {step.schedule!r} are not defined "
                    f"under `hours:`{_suggest(step.schedule, list(doc.hours))}",
                    "undefined-hours",
                )
            if (
                isinstance(step, m.Play | m.SetVars | m.Collect | m.Webhook | m.CallSubflow)
                and flow.next_of(scope.name, sid) is None
            ):
                c.error(
                    path,
                    f"{step.type} step {sid!r} has no `next` and no step is written "
                    "after it: the call would have nowhere to go",
                    "dead-end",
                    at="key",
                )
            if isinstance(step, m.Menu | m.Collect) and step.failed is None:
                c.error(
                    path,
                    f"{step.type} step {sid!r} has no `failed` step: say where the "
                    "call goes when the caller runs out of attempts",
                    "no-failure-exit",
                    at="key",
                )
            if isinstance(step, m.Menu | m.Collect):
                retries = step.noinput
                wrong = step.nomatch if isinstance(step, m.Menu) else step.invalid
                if not retries or not wrong:
                    missing = " and ".join(
                        n
                        for n, v in (
                            ("noinput", retries),
                            ("nomatch" if isinstance(step, m.Menu) else "invalid", wrong),
                        )
                        if not v
                    )
                    c.warn(
                        path,
                        f"{step.type} step {sid!r} has no {missing} prompts: a caller "
                        "who is silent or presses a wrong key hears no explanation",
                        "no-reprompt",
                        at="key",
                    )


def _calls(flow: Flow) -> dict[str, set[str]]:
    """Scope → the sub-flows its steps call (that exist)."""
    return {
        scope.name: {
            step.subflow
            for step in scope.steps.values()
            if isinstance(step, m.CallSubflow) and step.subflow in flow.scopes
        }
        for scope in flow.scopes.values()
    }


def _call_chain(calls: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """The sub-flows from `start` to `goal` through calls (both included), if any."""
    came_from: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        name = todo.pop(0)
        if name == goal:
            chain = [name]
            while (before := came_from[chain[-1]]) is not None:
                chain.append(before)
            return chain[::-1]
        for callee in sorted(calls.get(name, ())):
            if callee not in came_from:
                came_from[callee] = name
                todo.append(callee)
    return None


def _subflow_effects(flow: Flow) -> tuple[set[str], set[str]]:
    """(sub-flows that may wait for the caller, sub-flows that may end the call), counting
    what the sub-flows they call do."""
    waits: set[str] = set()
    ends: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, sub in flow.document.subflows.items():
            for step in sub.steps.values():
                callee = step.subflow if isinstance(step, m.CallSubflow) else None
                if name not in waits and (isinstance(step, WAITING_STEPS) or callee in waits):
                    waits.add(name)
                    changed = True
                if name not in ends and (
                    isinstance(step, m.Hangup | m.Transfer | m.Queue) or callee in ends
                ):
                    ends.add(name)
                    changed = True
    return waits, ends


def _successors(flow: Flow, scope: Scope, sid: str) -> list[str]:
    return [
        e.target
        for e in flow.edges
        if e.scope == scope.name and e.source == sid and e.target in scope.steps
    ]


def _reachability(flow: Flow, c: _Compiler) -> None:
    called: set[str] = set()
    reached_scopes = [""]
    seen_scopes = {""}
    while reached_scopes:
        name = reached_scopes.pop()
        scope = flow.scopes[name]
        seen = _reach(flow, scope)
        for sid in scope.order:
            step = scope.steps[sid]
            if sid not in seen and scope.start in scope.steps:  # else undefined-start says it
                c.warn(
                    scope.step_path(sid),
                    f"step {sid!r} is never reached from {scope.start!r}",
                    "unreachable",
                    at="key",
                )
            elif isinstance(step, m.CallSubflow) and step.subflow in flow.scopes:
                called.add(step.subflow)
                if step.subflow not in seen_scopes:
                    seen_scopes.add(step.subflow)
                    reached_scopes.append(step.subflow)
    for name in flow.document.subflows:
        if name not in called:
            c.warn(
                ("subflows", name), f"sub-flow {name!r} is never called", "unused-subflow", at="key"
            )


def _reach(flow: Flow, scope: Scope) -> set[str]:
    if scope.start not in scope.steps:
        return set()
    seen = {scope.start}
    todo = [scope.start]
    while todo:
        for nxt in _successors(flow, scope, todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _sccs(nodes: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on.add(node)
            children = succ.get(node, [])
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            for child in children:
                if child in on:
                    low[node] = min(low[node], low[child])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
    return out


def _loops(flow: Flow, c: _Compiler) -> None:
    waits, ends_call = _subflow_effects(flow)

    def waiting(step: Any) -> bool:
        return isinstance(step, WAITING_STEPS) or (
            isinstance(step, m.CallSubflow) and step.subflow in waits
        )

    def terminal(step: Any) -> bool:
        return isinstance(step, TERMINAL_STEPS) or (
            isinstance(step, m.CallSubflow) and step.subflow in ends_call
        )

    for scope in flow.scopes.values():
        succ = {sid: _successors(flow, scope, sid) for sid in scope.order}
        for comp in _sccs(list(scope.order), succ):
            members = set(comp)
            cyclic = len(comp) > 1 or comp[0] in succ[comp[0]]
            if not cyclic:
                continue
            first = min(comp, key=scope.order.index)
            path = scope.step_path(first)
            names = ", ".join(sorted(comp, key=scope.order.index))
            if not any(waiting(scope.steps[s]) for s in comp):
                c.error(
                    path,
                    f"steps {names} loop without waiting for the caller or playing "
                    "anything: the call would spin forever",
                    "loop-no-wait",
                    at="key",
                )
                continue
            leaves = any(t not in members for s in comp for t in succ[s])
            ends = any(terminal(scope.steps[s]) for s in comp)
            if not leaves and not ends:
                c.error(
                    path,
                    f"steps {names} lead only to each other: no hangup, transfer or "
                    "queue can ever be reached from them",
                    "loop-no-exit",
                    at="key",
                )


def _prompts(flow: Flow, c: _Compiler) -> None:
    from hotline.ivr.loader import step_prompt_lists

    doc = flow.document
    used: set[str] = set()
    say_kinds: set[str] = set()
    for scope in flow.scopes.values():
        for sid in scope.order:
            for items, ppath in step_prompt_lists(scope.steps[sid], scope.step_path(sid)):
                for i, item in enumerate(items):
                    if isinstance(item, str | m.PromptRef):
                        name = item if isinstance(item, str) else item.prompt
                        used.add(name)
                        if name not in doc.prompts:
                            c.error(
                                (*ppath, i) if isinstance(item, str) else (*ppath, i, "prompt"),
                                f"prompt {name!r} is not defined under "
                                f"`prompts:`{_suggest(name, list(doc.prompts))}",
                                "undefined-prompt",
                            )
                    elif isinstance(item, m.SayItem):
                        say_kinds.add(item.say)
    for name in doc.prompts:
        if name not in used:
            c.warn(("prompts", name), f"prompt {name!r} is never played", "unused-prompt", at="key")
    if c.audio_dir is not None and say_kinds:
        from hotline.media import sayas

        for index, language in enumerate(doc.languages):
            if language not in sayas.LANGUAGES:
                c.error(
                    ("languages", index),
                    f"say-as has no words for language {language!r} "
                    f"(it has {', '.join(sayas.LANGUAGES)})",
                    "sayas-missing",
                )
                continue
            missing = sorted(
                w for w in sayas.words_needed(language) if not (c.audio_dir / f"{w}.wav").is_file()
            )
            if missing:
                shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                c.error(
                    ("languages", index),
                    f"{len(missing)} word recordings for {language!r} "
                    f"are missing under {c.audio_dir}: {shown}",
                    "sayas-missing",
                )


def _defined_variables(flow: Flow) -> tuple[set[str], set[str]]:
    """(names set somewhere, namespace prefixes filled by service steps)."""
    from hotline.ivr.loader import BUILTIN_VARIABLES

    doc = flow.document
    names = set(BUILTIN_VARIABLES) | set(doc.variables)
    prefixes: set[str] = set()
    for scope in flow.scopes.values():
        for step in scope.steps.values():
            if isinstance(step, m.Collect):
                names.add(step.field)
            elif isinstance(step, m.SetVars):
                names.update(step.values)
            elif isinstance(step, m.Menu):
                for target in step.keys.values():
                    if isinstance(target, m.KeyAction):
                        names.update(target.set)
            elif isinstance(step, m.Webhook):
                names.update(step.save)
                prefixes.add("webhook.")
            elif isinstance(step, m.Booking):
                prefixes.add("booking.")
    return names, prefixes


def _tainted(flow: Flow) -> set[str]:
    """Sensitive fields and every variable set from an expression that reads one."""
    from hotline.ivr.loader import step_expressions

    tainted = set(flow.sensitive)
    changed = True
    while changed:
        changed = False
        for scope in flow.scopes.values():
            for sid in scope.order:
                step = scope.steps[sid]
                for source, epath in step_expressions(step, scope.step_path(sid)):
                    compiled = flow.expressions.get(source)
                    target = epath[-1] if epath[-2] in ("values", "set") else None
                    if (
                        compiled is not None
                        and isinstance(target, str)
                        and target not in tainted
                        and compiled.names & tainted
                    ):
                        tainted.add(target)
                        changed = True
    return tainted


def _is_loopback_or_https(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _variables(flow: Flow, c: _Compiler) -> None:
    from hotline.ivr.loader import step_expressions, step_templates

    names, prefixes = _defined_variables(flow)
    tainted = _tainted(flow)
    known = sorted(names)

    def unknown(used: frozenset[str], path: Any, where: Any) -> None:
        for name in sorted(used):
            if name in names or any(name.startswith(p) for p in prefixes):
                continue
            c.error(
                path,
                f"variable {name!r} is never set by this flow{_suggest(name, known)}",
                "unknown-variable",
                offset=where(name),
            )

    for scope in flow.scopes.values():
        for sid in scope.order:
            step = scope.steps[sid]
            path = scope.step_path(sid)
            for source, epath in step_expressions(step, path):
                compiled = flow.expressions.get(source)
                if compiled is not None:
                    unknown(
                        compiled.names, epath, lambda name, e=compiled: _name_offset(e.node, name)
                    )
                    _language_literal(flow, c, epath, source)
            for source, tpath, use in step_templates(step, path):
                template = flow.templates.get(source)
                if template is None:
                    continue
                unknown(
                    template.names, tpath, lambda name, t=template: _template_name_offset(t, name)
                )
                leaked = sorted(template.names & tainted)
                if not leaked:
                    continue
                at = _template_name_offset(template, leaked[0])
                if use == "say":
                    item = _say_item(step, tpath)
                    if item is not None and item.last is None:
                        c.error(
                            tpath,
                            f"sensitive value {', '.join(leaked)} would be spoken "
                            "back whole; speak only its end with `last: 3`",
                            "sensitive-spoken",
                            offset=at,
                        )
                elif use == "header":
                    c.error(
                        tpath,
                        f"sensitive value {', '.join(leaked)} may not go into a SIP header",
                        "sensitive-header",
                        offset=at,
                    )
                elif use == "webhook" and isinstance(step, m.Webhook):
                    allowed = set(step.send_sensitive)
                    refused = sorted(set(leaked) - allowed)
                    if refused:
                        c.error(
                            tpath,
                            f"sensitive value {', '.join(refused)} is sent to a "
                            "webhook that does not list it in `send_sensitive`",
                            "sensitive-webhook",
                            offset=_template_name_offset(template, refused[0]),
                        )
                    elif not _is_loopback_or_https(step.url.split("{", 1)[0]):
                        c.error(
                            (*path, "url"),
                            "sensitive values may only be sent over HTTPS "
                            "(or to a loopback address)",
                            "sensitive-webhook",
                        )
                elif use == "transfer":
                    c.error(
                        tpath,
                        f"sensitive value {', '.join(leaked)} may not go into a transfer address",
                        "sensitive-header",
                        offset=at,
                    )


def _name_offset(node: expr.Node, name: str) -> int | None:
    """The offset of the first place an expression reads variable `name`."""
    stack: list[expr.Node] = [node]
    found: list[int] = []
    while stack:
        n = stack.pop()
        if isinstance(n, expr.Name):
            if n.name == name:
                found.append(n.offset)
        elif isinstance(n, expr.Negate | expr.Not):
            stack.append(n.operand)
        elif isinstance(n, expr.Sum | expr.Product):
            stack.append(n.first)
            stack.extend(operand for _, operand in n.rest)
        elif isinstance(n, expr.Logic):
            stack.extend(n.operands)
        elif isinstance(n, expr.Compare):
            stack.extend((n.left, n.right))
        elif isinstance(n, expr.Membership):
            stack.extend((n.item, n.container))
        elif isinstance(n, expr.ListOf):
            stack.extend(n.items)
        elif isinstance(n, expr.Call):
            stack.extend(n.args)
    return min(found) if found else None


def _template_name_offset(template: expr.Template, name: str) -> int | None:
    """The offset in the template's text of the first placeholder reading `name`."""
    placeholders = iter(p for p in template.parts if isinstance(p, expr.Expression))
    text = template.text
    i = 0
    while i < len(text):
        if text.startswith(("{{", "}}"), i):
            i += 2
        elif text[i] == "{":
            part = next(placeholders, None)
            if part is None:
                return None
            inner = _name_offset(part.node, name)
            if inner is not None:
                return i + 1 + inner
            i += len(part.source) + 2
        else:
            i += 1
    return None


def _say_item(step: Any, tpath: tuple[Any, ...]) -> m.SayItem | None:
    node: Any = step
    for part in tpath[2:-1] if tpath[0] == "steps" else tpath[4:-1]:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node if isinstance(node, m.SayItem) else None


def _language_literal(flow: Flow, c: _Compiler, epath: tuple[Any, ...], source: str) -> None:
    if epath[-1] != "language":
        return
    text = source.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        value = text[1:-1]
        if value not in flow.languages:
            c.error(
                epath,
                f"language {value!r} is not one of the flow's languages "
                f"({', '.join(flow.languages)})",
                "unknown-language",
                offset=len(source) - len(source.lstrip()),
            )


def _keys(flow: Flow, c: _Compiler) -> None:
    defaults = flow.defaults
    for scope in flow.scopes.values():
        for sid in scope.order:
            step = scope.steps[sid]
            path = scope.step_path(sid)
            if isinstance(step, m.Collect):
                if step.confirm is not None and step.confirm.yes == step.confirm.no:
                    c.error(
                        (*path, "confirm", "no"),
                        "the confirm `yes` and `no` keys are the same key",
                        "key-conflict",
                    )
                terminator = step.terminator or defaults.terminator
                clear = step.clear or defaults.clear
                if terminator == clear:
                    # blame what this step writes; the defaults when it writes neither
                    where = (
                        (*path, "terminator")
                        if step.terminator is not None
                        else (*path, "clear")
                        if step.clear is not None
                        else ("defaults", "terminator")
                        if ("defaults", "terminator") in c.doc.positions
                        else ("defaults", "clear")
                    )
                    c.error(
                        where, "the terminator and the clear key are the same key", "key-conflict"
                    )
                if step.choices:
                    for key in step.choices:
                        if key in (terminator, clear):
                            c.error(
                                (*path, "choices", key),
                                f"choice key {key!r} is also the entry's terminator or clear key",
                                "key-conflict",
                                at="key",
                            )
