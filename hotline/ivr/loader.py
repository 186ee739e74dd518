"""Loading a flow file: YAML → a checked, compiled `Flow` the interpreter runs.

Owns: reading one flow file through `hotline.yamlpos` (positions, duplicate keys, the
document model of `hotline.ivr.model`), compiling what the model leaves as text —
expressions and templates (`hotline.ivr.expr`), opening hours (`hotline.ivr.hours`),
typed inputs (`hotline.ivr.fields`) — and resolving prompts to what the media plane
plays (a recording under the audio directory, else text to synthesise). Every problem
becomes a `Diagnostic` at its `FILE:LINE:COL`; the static analysis proper lives in
`hotline.ivr.checker` and runs as part of `load_flow`. A `Flow` is immutable: a
reload builds a new one and calls in progress keep theirs.

The one I/O this module does is reading the flow file and looking whether prompt files
exist (`Path.is_file`); it never plays, synthesises or opens sockets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotline.ivr import expr, fields
from hotline.ivr import model as m
from hotline.yamlpos import (
    Diagnostic,
    DiagnosticsError,
    DocPath,
    LoadedDocument,
    Severity,
    load_yaml,
    read_text_file,
    sort_diagnostics,
    validate_document,
)

if TYPE_CHECKING:
    from hotline.ivr.hours import OpeningHours

_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a new line
MAIN = ""  # the scope name of a flow's own steps (sub-flows are scoped by their name)

# Variables every call has (see `hotline.ivr.interpreter.builtin_variables`).
BUILTIN_VARIABLES = frozenset(
    {
        "language",
        "caller.number",
        "caller.name",
        "called.number",
        "call.id",
        "today",
        "time",
        "weekday",
        "hours.closed_reason",
        "hours.holiday",
        "last.key",
        "last.outcome",
        "last.error",
        "queue.outcome",
        "transfer.outcome",
    }
)
# Namespaces service steps fill (any name under them is known once the flow uses one).
SERVICE_NAMESPACES = {"booking": "booking.", "webhook": "webhook."}


class FlowError(DiagnosticsError):
    """A flow that cannot be loaded: its error diagnostics (warnings ride along)."""


@dataclass(frozen=True, slots=True)
class PromptAsset:
    """One prompt in one language: a recording to play, or text to synthesise."""

    name: str
    language: str
    text: str | None
    file: Path | None  # an existing recording, resolved


@dataclass(frozen=True, slots=True)
class Edge:
    """A way from one step to another, labelled as the graph and coverage show it."""

    scope: str
    source: str
    target: str
    label: str
    path: DocPath  # where the target is written


@dataclass(frozen=True, slots=True)
class Scope:
    """The steps of the flow itself (scope "") or of one sub-flow, in file order."""

    name: str
    start: str
    steps: Mapping[str, Any]  # step id → hotline.ivr.model step
    order: tuple[str, ...]
    path: DocPath  # where the steps mapping sits in the document

    def step_path(self, step_id: str) -> DocPath:
        return (*self.path, step_id)

    def following(self, step_id: str) -> str | None:
        """The step written after `step_id`, if any."""
        i = self.order.index(step_id)
        return self.order[i + 1] if i + 1 < len(self.order) else None


@dataclass(frozen=True)
class Flow:
    """A loaded, checked flow. `version` is a hash of the file's bytes."""

    name: str
    file: str
    version: str
    document: m.FlowDocument
    source: LoadedDocument
    scopes: Mapping[str, Scope]
    prompts: Mapping[tuple[str, str], PromptAsset]  # (name, language)
    hours: Mapping[str, OpeningHours]
    expressions: Mapping[str, expr.Expression]
    templates: Mapping[str, expr.Template]
    inputs: Mapping[tuple[str, str], fields.FieldSpec]  # (scope, step) of collect steps
    sensitive: frozenset[str]
    warnings: tuple[Diagnostic, ...] = ()
    edges: tuple[Edge, ...] = field(default=())

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.document.languages)

    @property
    def defaults(self) -> m.Defaults:
        return self.document.defaults

    def step(self, scope: str, step_id: str) -> Any:
        return self.scopes[scope].steps[step_id]

    def next_of(self, scope: str, step_id: str) -> str | None:
        """Where a step goes on success: its `next`, else the step written after it."""
        step = self.scopes[scope].steps[step_id]
        explicit: str | None = getattr(step, "next", None)
        if explicit is not None:
            return explicit
        if isinstance(step, m.Play | m.SetVars | m.Collect | m.Webhook | m.CallSubflow):
            return self.scopes[scope].following(step_id)
        return None

    def where(self, path: DocPath) -> tuple[int, int]:
        pos = self.source.positions.value(path)
        return pos.line, pos.col


# -- walking the document --------------------------------------------------------------


def step_prompt_lists(step: Any, path: DocPath) -> Iterator[tuple[list[Any], DocPath]]:
    """Every prompt list of a step with its document path."""
    if isinstance(step, m.Play | m.Hangup):
        yield step.prompts, (*path, "prompts")
    if isinstance(step, m.Menu):
        yield step.prompt, (*path, "prompt")
        for i, p in enumerate(step.noinput):
            yield p, (*path, "noinput", i)
        for i, p in enumerate(step.nomatch):
            yield p, (*path, "nomatch", i)
    if isinstance(step, m.Collect):
        yield step.prompt, (*path, "prompt")
        for i, p in enumerate(step.noinput):
            yield p, (*path, "noinput", i)
        for i, p in enumerate(step.invalid):
            yield p, (*path, "invalid", i)
        if step.confirm is not None:
            yield step.confirm.prompt, (*path, "confirm", "prompt")


def step_expressions(step: Any, path: DocPath) -> Iterator[tuple[str, DocPath]]:
    for items, ppath in step_prompt_lists(step, path):
        for i, item in enumerate(items):
            if not isinstance(item, str) and item.when is not None:
                yield item.when, (*ppath, i, "if")
    if isinstance(step, m.SetVars):
        for name, source in step.values.items():
            yield source, (*path, "values", name)
    if isinstance(step, m.Branch):
        for i, case in enumerate(step.cases):
            yield case.when, (*path, "cases", i, "if")
    if isinstance(step, m.Menu):
        for key, target in step.keys.items():
            if isinstance(target, m.KeyAction):
                for name, source in target.set.items():
                    yield source, (*path, "keys", key, "set", name)
    if isinstance(step, m.Booking):
        for name, source in step.args.items():
            yield source, (*path, "args", name)


def step_templates(step: Any, path: DocPath) -> Iterator[tuple[str, DocPath, str]]:
    """(template, path, use) — use is "say", "audio", "header", "webhook" or "transfer"."""
    for items, ppath in step_prompt_lists(step, path):
        for i, item in enumerate(items):
            if isinstance(item, m.SayItem):
                yield item.value, (*ppath, i, "value"), "say"
            elif isinstance(item, m.AudioItem):
                yield item.audio, (*ppath, i, "audio"), "audio"
                if item.text is not None:
                    yield item.text, (*ppath, i, "text"), "audio"
    if isinstance(step, m.Hangup):
        if step.result is not None:
            yield step.result, (*path, "result"), "header"
        for name, t in step.headers.items():
            yield t, (*path, "headers", name), "header"
    if isinstance(step, m.Webhook):
        yield step.url, (*path, "url"), "webhook"
        for name, t in step.headers.items():
            yield t, (*path, "headers", name), "webhook"
        for name, t in step.body.items():
            yield t, (*path, "body", name), "webhook"
    if isinstance(step, m.Transfer):
        yield step.to, (*path, "to"), "transfer"


def step_edges(flow_doc: m.FlowDocument, scope: Scope, step_id: str) -> Iterator[Edge]:
    """The ways on from one step (targets as written; defaults filled in)."""
    step = scope.steps[step_id]
    path = scope.step_path(step_id)
    name = scope.name

    def edge(target: str | None, label: str, at: DocPath) -> Iterator[Edge]:
        if target is not None:
            yield Edge(name, step_id, target, label, at)

    if isinstance(step, m.Menu):
        for key, action in step.keys.items():
            to = action.next if isinstance(action, m.KeyAction) else action
            at = (*path, "keys", key) + (("next",) if isinstance(action, m.KeyAction) else ())
            yield from edge(to, f"key {key}", at)
        yield from edge(step.failed, "failed", (*path, "failed"))
    elif isinstance(step, m.Branch):
        for i, case in enumerate(step.cases):
            yield from edge(case.next, f"if {case.when}", (*path, "cases", i, "next"))
        yield from edge(step.otherwise, "else", (*path, "else"))
    elif isinstance(step, m.HoursCheck):
        yield from edge(step.open, "open", (*path, "open"))
        yield from edge(step.closed, "closed", (*path, "closed"))
    elif isinstance(step, m.Booking):
        for outcome, target in step.outcomes.items():
            yield from edge(target, outcome, (*path, "outcomes", outcome))
        yield from edge(step.failed, "failed", (*path, "failed"))
    elif isinstance(step, m.Goto):
        yield from edge(step.to, "", (*path, "to"))
    elif isinstance(step, m.Transfer):
        yield from edge(step.failed, "failed", (*path, "failed"))
    elif isinstance(step, m.Queue):
        yield from edge(step.next, "returned", (*path, "next"))
    elif isinstance(step, m.Play | m.SetVars | m.Collect | m.Webhook | m.CallSubflow):
        explicit = step.next
        following = explicit if explicit is not None else scope.following(step_id)
        at = (*path, "next") if explicit is not None else path
        label = {m.Collect: "ok", m.Webhook: "ok", m.CallSubflow: "returned"}.get(type(step), "")
        yield from edge(following, label, at)
        if isinstance(step, m.Collect | m.Webhook) and step.failed is not None:
            yield from edge(step.failed, "failed", (*path, "failed"))


# -- loading ---------------------------------------------------------------------------


class _Compiler:
    def __init__(
        self, doc: LoadedDocument, model: m.FlowDocument, audio_dir: Path | None, lines: list[str]
    ) -> None:
        self.doc = doc
        self.lines = lines
        self.model = model
        self.audio_dir = audio_dir
        self.diagnostics: list[Diagnostic] = []
        self.expressions: dict[str, expr.Expression] = {}
        self.templates: dict[str, expr.Template] = {}

    def error(
        self,
        path: DocPath,
        message: str,
        code: str,
        *,
        at: str = "value",
        offset: int | None = None,
    ) -> None:
        self.diagnostics.append(self._diag(path, message, code, Severity.ERROR, at, offset))

    def warn(self, path: DocPath, message: str, code: str, *, at: str = "value") -> None:
        self.diagnostics.append(self._diag(path, message, code, Severity.WARNING, at, None))

    def _diag(
        self,
        path: DocPath,
        message: str,
        code: str,
        severity: Severity,
        at: str,
        offset: int | None,
    ) -> Diagnostic:
        where = self._document_path(path)
        located = self.doc.positions.get(where)
        if located is None:
            pos = self.doc.positions.key(where)
            line, col = pos.line, pos.col
        else:
            anchor = located.key if at == "key" and located.key is not None else located.value
            line, col = anchor.line, anchor.col
            value = self._value_at(where)
            if offset is not None and at == "value" and isinstance(value, str):
                inside = scalar_position(self.lines, line, col, value, offset)
                if inside is not None:
                    line, col = inside
        return Diagnostic(self.doc.file, line, col, path, message, severity, code)

    def _value_at(self, where: DocPath) -> Any:
        node: Any = self.doc.data
        for part in where:
            if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            ):
                node = node[part]
            else:
                return None
        return node

    def _document_path(self, path: DocPath) -> DocPath:
        """`path` as the document spells it: the model reads a menu key written `1:` as the
        text "1", where the document holds the integer 1."""
        node: Any = self.doc.data
        out: list[Any] = []
        for part in path:
            key: Any = part
            if isinstance(node, dict) and key not in node:
                key = next(
                    (
                        k
                        for k in node
                        if isinstance(k, int) and not isinstance(k, bool) and str(k) == part
                    ),
                    None,
                )
            if isinstance(node, dict) and key is not None:
                node = node[key]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return (*out, *path[len(out) :])
            out.append(key)
        return tuple(out)

    # expressions and templates

    def expression(self, source: str, path: DocPath) -> expr.Expression | None:
        if source in self.expressions:
            return self.expressions[source]
        try:
            compiled = expr.parse(source)
        except expr.ExprError as exc:
            self.error(path, f"bad expression: {exc.message}", "expression", offset=exc.offset)
            return None
        self.expressions[source] = compiled
        return compiled

    def template(self, source: str, path: DocPath) -> expr.Template | None:
        if source in self.templates:
            return self.templates[source]
        try:
            compiled = expr.parse_template(source)
        except expr.ExprError as exc:
            self.error(path, f"bad template: {exc.message}", "template", offset=exc.offset)
            return None
        self.templates[source] = compiled
        return compiled


def scalar_position(
    lines: list[str], line: int, col: int, value: str, offset: int
) -> tuple[int, int] | None:
    """Where character `offset` of the string scalar `value`, written at `line`:`col` of
    `lines`, sits in the file — past the opening quote, escapes (`\\"`, `''`) and folded
    line breaks, for plain, quoted and block (`|`, `>`) scalars alike. None when the text
    there does not spell `value` (the caller then points at the scalar's start)."""
    if not 0 < line <= len(lines) or not 0 <= offset <= len(value):
        return None
    starts = [0]  # the index in `text` where each line from `line` on begins
    for raw in lines[line - 1 :]:
        starts.append(starts[-1] + len(raw) + 1)
    text = "\n".join(lines[line - 1 :])
    p = col - 1
    if p >= len(lines[line - 1]):
        return None
    style = text[p]
    indent: int | None = None  # a block scalar's indentation; None for flow scalars
    if style in "\"'":
        p += 1
    elif style in "|>":
        header = lines[line - 1][col - 1 :].split(" #", 1)[0].strip()
        if any(ch.isdigit() for ch in header):
            return None  # an explicit indentation indicator: rare, not worth guessing
        p = text.find("\n", p) + 1
        if p == 0:
            return None
        body = text[p:].split("\n")
        first = next((raw for raw in body if raw.strip()), "")
        indent = len(first) - len(first.lstrip(" "))
    else:
        style = ""

    def skip_indentation(q: int) -> int:
        limit = len(text) if indent is None else q + indent
        while q < min(limit, len(text)) and text[q] in (" \t" if indent is None else " "):
            q += 1
        return q

    if indent is not None:
        p = skip_indentation(p)
    i = 0
    while p <= len(text):
        if style == '"' and text.startswith("\\\n", p):  # an escaped line break: no value
            p = skip_indentation(p + 2)
            continue
        if i == offset:
            row = next(n for n in range(len(starts) - 1) if p < starts[n + 1])
            return line + row, p - starts[row] + 1
        if p == len(text) or i >= len(value):
            return None
        ch, want = text[p], value[i]
        if style == '"' and ch == "\\":
            p += 2 + {"x": 2, "u": 4, "U": 8}.get(text[p + 1 : p + 2], 0)
            i += 1
        elif style == "'" and text.startswith("''", p):
            p += 2
            i += 1
        elif ch == want:
            p = skip_indentation(p + 1) if ch == "\n" else p + 1
            i += 1
        elif ch in " \t" and indent is None:  # whitespace folded away before a line break
            p += 1
        elif ch == "\n":  # a folded line break: one space in the value, or nothing
            if want == " ":
                i += 1
            p = skip_indentation(p + 1)
        else:
            return None
    return None


def _scopes(model: m.FlowDocument) -> dict[str, Scope]:
    scopes = {
        MAIN: Scope(
            MAIN,
            model.start or next(iter(model.steps)),
            model.steps,
            tuple(model.steps),
            ("steps",),
        )
    }
    for name, sub in model.subflows.items():
        scopes[name] = Scope(
            name,
            sub.start or next(iter(sub.steps)),
            sub.steps,
            tuple(sub.steps),
            ("subflows", name, "steps"),
        )
    return scopes


def input_spec(step: m.Collect, defaults: m.Defaults) -> fields.FieldSpec:
    """The typed-input spec of a collect step (raises ValueError on bad options)."""
    return fields.spec_from_step(
        kind=step.input,
        min_length=step.min_length,
        max_length=step.max_length,
        date_format=step.format,
        when=step.when,
        min_age=step.min_age,
        max_age=step.max_age,
        choices=None if step.choices is None else dict(step.choices),
        yes=step.yes,
        no=step.no,
    )


def _prompt_file(
    audio_dir: Path | None, language: str, name: str, given: str | None
) -> tuple[Path | None, bool]:
    """(the recording to use, whether a named file is missing)."""
    if audio_dir is None:
        return None, False
    if given is not None:
        path = (audio_dir / given).resolve()
        return (path, False) if path.is_file() else (None, True)
    for candidate in (audio_dir / "prompts" / language / f"{name}.wav",):
        if candidate.is_file():
            return candidate, False
    return None, False


def compile_flow(doc: LoadedDocument, *, audio_dir: Path | None, raw: bytes) -> Flow:
    """Validate and compile a parsed flow document; raise FlowError on any error."""
    if doc.is_empty:
        raise FlowError(
            [
                Diagnostic(
                    doc.file,
                    1,
                    1,
                    (),
                    "the file holds no flow (it is empty "
                    "or only comments); a flow needs `flow:`, `languages:` "
                    "and `steps:`",
                    Severity.ERROR,
                    "empty",
                )
            ]
        )
    model = validate_document(m.FlowDocument, doc)
    lines = _LINE_BREAK.split(raw.decode("utf-8-sig", errors="replace"))
    c = _Compiler(doc, model, audio_dir, lines)
    _check_raw_keys(c)
    scopes = _scopes(model)

    # hours
    hours: dict[str, OpeningHours] = {}
    if model.hours:
        from hotline.ivr.hours import HoursError, OpeningHours  # the holidays tables load lazily
    for name, spec in model.hours.items():
        try:
            hours[name] = OpeningHours.parse(spec)
        except HoursError as exc:
            c.error(("hours", name, *exc.path), exc.message, "hours")

    # prompts
    prompts: dict[tuple[str, str], PromptAsset] = {}
    declared = set(model.languages)
    for name, by_language in model.prompts.items():
        for language, definition in by_language.items():
            ppath = ("prompts", name, language)
            if language not in declared:
                c.error(
                    ppath,
                    f"language {language!r} is not one of the flow's languages "
                    f"({', '.join(model.languages)})",
                    "prompt-language",
                    at="key",
                )
                continue
            text, given = (
                (definition, None)
                if isinstance(definition, str)
                else (definition.text, definition.file)
            )
            if text is None and given is None:
                c.error(ppath, "a prompt needs `text`, `file` or both", "prompt-empty")
                continue
            recording, missing = _prompt_file(audio_dir, language, name, given)
            if missing:
                c.error(
                    (*ppath, "file"),
                    f"recording {given!r} not found under {audio_dir}",
                    "prompt-file",
                )
            prompts[(name, language)] = PromptAsset(name, language, text, recording)
        for language in model.languages:
            if language not in by_language:
                c.error(
                    ("prompts", name),
                    f"prompt {name!r} has no {language!r} version "
                    f"(the flow declares {', '.join(model.languages)})",
                    "prompt-missing-language",
                    at="key",
                )

    # expressions, templates, inputs
    inputs: dict[tuple[str, str], fields.FieldSpec] = {}
    for scope in scopes.values():
        for step_id, step in scope.steps.items():
            path = scope.step_path(step_id)
            for source, epath in step_expressions(step, path):
                c.expression(source, epath)
            for source, tpath, _use in step_templates(step, path):
                c.template(source, tpath)
            if isinstance(step, m.Collect):
                try:
                    inputs[(scope.name, step_id)] = input_spec(step, model.defaults)
                except ValueError as exc:
                    opath, at = _option_blamed(c, path, str(exc))
                    c.error(opath, f"collect {step.input}: {exc}", "input", at=at)

    sensitive = frozenset(
        step.field
        for scope in scopes.values()
        for step in scope.steps.values()
        if isinstance(step, m.Collect) and step.sensitive
    )
    edges = tuple(
        e for scope in scopes.values() for sid in scope.order for e in step_edges(model, scope, sid)
    )
    version = hashlib.sha256(raw).hexdigest()[:12]
    flow = Flow(
        model.flow,
        doc.file,
        version,
        model,
        doc,
        scopes,
        prompts,
        hours,
        c.expressions,
        c.templates,
        inputs,
        sensitive,
        (),
        edges,
    )

    from hotline.ivr.checker import check  # the analysis needs the compiled flow

    c.diagnostics.extend(check(flow, c))
    problems = sort_diagnostics(c.diagnostics)
    if any(d.severity is Severity.ERROR for d in problems):
        raise FlowError(problems)
    return dataclasses.replace(flow, warnings=tuple(problems))


_OPTION_NAMED = re.compile(r"[a-z_]+")


def _option_blamed(c: _Compiler, path: DocPath, message: str) -> tuple[DocPath, str]:
    """Where a collect option error belongs: at the option its message starts with (its
    key when the option does not apply to the input kind, else its value); at the step
    when the message names no option the step writes."""
    match = _OPTION_NAMED.match(message)
    if match is not None:
        option = (*path, match.group())
        if c.doc.positions.get(option) is not None:
            return option, "key" if "does not apply" in message else "value"
    return path, "key"


def _check_raw_keys(c: _Compiler) -> None:
    """Menu keys written both as `1:` and `"1":` are the same key: ambiguous."""
    data = c.doc.data
    if not isinstance(data, dict):
        return
    containers: list[tuple[DocPath, Any]] = []
    for sname, steps in _raw_scopes(data):
        for sid, step in steps.items():
            if isinstance(step, dict):
                for key in ("keys", "choices"):
                    if isinstance(step.get(key), dict):
                        containers.append(((*sname, sid, key), step[key]))
    for path, keys in containers:
        seen: dict[str, object] = {}
        for raw_key in keys:
            text = str(raw_key) if not isinstance(raw_key, bool) else None
            if text is None:
                continue
            if text in seen:
                c.error(
                    (*path, raw_key),
                    f"key {text!r} is given twice (as {seen[text]!r} and "
                    f"{raw_key!r}); each key may lead to one place only",
                    "ambiguous-key",
                    at="key",
                )
            else:
                seen[text] = raw_key


def _raw_scopes(data: dict[Any, Any]) -> Iterable[tuple[DocPath, dict[Any, Any]]]:
    if isinstance(data.get("steps"), dict):
        yield ("steps",), data["steps"]
    subs = data.get("subflows")
    if isinstance(subs, dict):
        for name, sub in subs.items():
            if isinstance(sub, dict) and isinstance(sub.get("steps"), dict):
                yield ("subflows", name, "steps"), sub["steps"]


def load_flow_text(text: str, file: str, *, audio_dir: Path | None = None) -> Flow:
    raw = text.encode("utf-8")
    return compile_flow(load_yaml(text, file), audio_dir=audio_dir, raw=raw)


def load_flow(
    path: str | Path, *, audio_dir: Path | None = None, display_name: str | None = None
) -> Flow:
    """Load, compile and check one flow file. Raises FlowError (DiagnosticsError)."""
    name = display_name if display_name is not None else str(path)
    try:
        raw, text = read_text_file(path, display_name=name)
    except DiagnosticsError as exc:
        raise FlowError(exc.diagnostics) from None
    try:
        doc = load_yaml(text, name)
    except DiagnosticsError as exc:
        raise FlowError(exc.diagnostics) from None
    try:
        return compile_flow(doc, audio_dir=audio_dir, raw=raw)
    except FlowError:
        raise
    except DiagnosticsError as exc:
        raise FlowError(exc.diagnostics) from None
