"""Position-aware YAML loading and diagnostics people can act on (`FILE:LINE:COL: ...`).

Owns: turning YAML text into plain Python values (dict, list, str, int, float, bool, None,
dates) while remembering where every mapping key, mapping value and sequence item sits
(1-based line and column, addressed by its document path, a tuple of keys and indices);
the `Diagnostic` record and its one-line format; and the translation of pydantic
`ValidationError`s into diagnostics that name the file, line, column, document path, what
was expected and what was found. Every problem is reported at once, sorted by line.

Must not know: what any document means. The config model (hotline.config) and the IVR
flow loader bring their own pydantic models; this module only needs a model class to
describe what a key expects and which keys a mapping allows.

YAML rules, on purpose stricter than PyYAML's defaults:

- Parsing is PyYAML's SafeLoader (YAML 1.1 scalars: `yes`/`no` are booleans, `0o17`
  octal, ...). One document per file.
- Duplicate keys in a mapping are an error, reported at the second occurrence and naming
  the line of the first (PyYAML silently keeps the last).
- Aliases (`*name`) and merge keys (`<<`) are refused. A value written once and used in
  several places has no single line to blame when it is wrong, and alias expansion is the
  "billion laughs" hazard. Anchors alone (`&name` with no alias) are harmless and allowed.
- Only the standard tags are accepted (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`,
  `!!binary`, `!!timestamp`, `!!map`, `!!seq`); keys must be scalars.
- Syntax errors, tabs used for indentation and undecodable bytes are fatal and reported at
  the mark the parser gives. Structural problems (duplicates, aliases, odd keys and tags)
  are collected and reported together with the schema errors of the rest of the document.

Validators of a model can point an error at a precise key by raising the `ValidationError`
built by `located_errors` (see `problem`); pydantic prefixes the locations as usual.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import json
import math
import os
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "CUSTOM_ERROR_TYPE",
    "DEFAULT_MAX_BYTES",
    "SECRET",
    "Diagnostic",
    "DiagnosticsError",
    "DocPath",
    "Expect",
    "LoadedDocument",
    "Located",
    "Position",
    "PositionMap",
    "Secret",
    "Severity",
    "describe_found",
    "diagnostics_from_validation_error",
    "format_path",
    "load_yaml",
    "load_yaml_file",
    "located_errors",
    "problem",
    "read_text_file",
    "validate_document",
]

DocPath = tuple[Any, ...]
"""A path into a document: mapping keys (usually str) and sequence indices (int)."""

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
"""Largest file `load_yaml_file` reads (bytes); configs and flows are far smaller."""

CUSTOM_ERROR_TYPE = "hotline"
"""pydantic error type of the errors built by `problem`: their message is used verbatim."""

M = TypeVar("M", bound=BaseModel)


# -- positions and diagnostics ---------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Position:
    """A place in a text file: 1-based line and 1-based column (in characters)."""

    line: int
    col: int


@dataclass(frozen=True)
class Located:
    """Where one document node sits: its key (None for sequence items and the root), the
    start of its value and the end of its value (just past the last character)."""

    key: Position | None
    value: Position
    end: Position

    @property
    def anchor(self) -> Position:
        """The place that names the node: its key if it has one, else its value."""
        return self.key if self.key is not None else self.value


class PositionMap:
    """Document path → `Located`, for every mapping key/value and sequence item."""

    def __init__(self, entries: Mapping[DocPath, Located]) -> None:
        self._entries: dict[DocPath, Located] = dict(entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: DocPath) -> Located | None:
        return self._entries.get(tuple(path))

    def nearest(self, path: DocPath) -> tuple[DocPath, Located]:
        """The node at `path`, or its closest ancestor that the document has."""
        p = tuple(path)
        while p not in self._entries and p:
            p = p[:-1]
        located = self._entries.get(p)
        if located is None:  # a map without a root entry: nothing better than the start
            return (), Located(None, Position(1, 1), Position(1, 1))
        return p, located

    def value(self, path: DocPath) -> Position:
        """Where the value at `path` starts; if the document lacks it, where its closest
        ancestor is named."""
        p, located = self.nearest(path)
        return located.value if p == tuple(path) else located.anchor

    def key(self, path: DocPath) -> Position:
        """Where the key of `path` is written (its value for sequence items and the root);
        if the document lacks it, where its closest ancestor is named."""
        return self.nearest(path)[1].anchor

    def paths(self) -> list[DocPath]:
        return list(self._entries)


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in one file, printed as `FILE:LINE:COL: PATH: MESSAGE`.

    `path` is the document path the message is about (printed as `sip.listen[0].port`,
    omitted when empty); `message` says what was expected and what was found. `line` and
    `col` are None for problems without a place in a file (a command-line flag: then
    `file` names the flag). `code` is a short stable identifier for tools and tests
    (`yaml-syntax`, `duplicate-key`, `unknown-key`, `missing-key`, `type`, `value`, ...).
    Warnings print `warning: ` before the path; errors print nothing extra.
    """

    file: str
    line: int | None
    col: int | None
    path: DocPath
    message: str
    severity: Severity = Severity.ERROR
    code: str = "value"

    def format(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.col or 1}"
        parts = [where]
        if self.severity is Severity.WARNING:
            parts.append("warning")
        if self.path:
            parts.append(format_path(self.path))
        parts.append(self.message)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.format()

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line or 0, self.col or 0, format_path(self.path), self.message)


class DiagnosticsError(Exception):
    """One or more error diagnostics; `str()` is their lines, sorted, one per line."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(sort_diagnostics(diagnostics))
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by file, line and column, exact duplicates removed."""
    seen: set[str] = set()
    out: list[Diagnostic] = []
    for d in sorted(diagnostics, key=Diagnostic.sort_key):
        text = d.format()
        if text not in seen:
            seen.add(text)
            out.append(d)
    return out


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def format_path(path: DocPath) -> str:
    """`("sip", "listen", 0, "port")` → `sip.listen[0].port`; keys that are not plain
    names are quoted (`logging.levels["hotline.sip"]`); non-string keys and indices are
    bracketed (`choices[1]`)."""
    out = ""
    for part in path:
        if isinstance(part, str) and _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        elif isinstance(part, str):
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        elif isinstance(part, bool) or part is None:
            out += f"[{describe_found(part)}]"
        else:
            out += f"[{part}]"
    return out


# -- describing values ----------------------------------------------------------------------


_MAX_SHOWN = 60


def describe_found(value: object, *, secret: bool = False) -> str:
    """How a message shows what the document holds: `'abc'`, `70000`, `true`, `null`,
    `a list`. With `secret`, only the kind of value is shown, never the value."""
    if value is None:
        return "null"
    if isinstance(value, SecretStr | SecretBytes):
        return "a secret"
    if isinstance(value, bool):
        return "a boolean" if secret else ("true" if value else "false")
    if isinstance(value, int):
        return "an integer" if secret else str(value)
    if isinstance(value, float):
        if secret:
            return "a number"
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        if value == "":
            return "an empty string"
        if secret:
            return "a string"
        if len(value) > _MAX_SHOWN:
            return f"{value[:_MAX_SHOWN]!r}… ({len(value)} characters)"
        return repr(value)
    if isinstance(value, bytes | bytearray):
        return "binary data"
    if isinstance(value, datetime.datetime):
        return "a timestamp" if secret else f"a timestamp {value.isoformat()}"
    if isinstance(value, datetime.date):
        return "a date" if secret else f"a date {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    if isinstance(value, set | frozenset):
        return "a set"
    if isinstance(value, PurePath):
        return "a path" if secret else repr(str(value))
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Expect:
    """`Annotated` metadata that says, in words, what a field expects (`"a host name or
    an IP address"`); it replaces the description derived from the type."""

    text: str


@dataclass(frozen=True)
class Secret:
    """`Annotated` metadata: never show this field's value in a message."""


SECRET = Secret()


def _keys_text(keys: Sequence[str]) -> str:
    return ", ".join(keys)


# -- YAML loading ---------------------------------------------------------------------------


_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(
    _TAG + t for t in ("null", "bool", "int", "float", "str", "binary", "timestamp")
)
_MERGE_TAG = _TAG + "merge"
_ALIAS_TAG = "tag:hotline.invalid,2024:alias"


class _Loader:
    """A SafeLoader whose composer replaces every alias by a placeholder node (so nothing
    is ever expanded) and remembers which anchor each placeholder stood for.

    Built by composition (the composer's `compose_node` is replaced on the instance)
    rather than subclassing, so the module type-checks with or without PyYAML's stubs.
    """

    def __init__(self, text: str) -> None:
        self.yaml: Any = yaml.SafeLoader(text)
        self.alias_targets: dict[int, tuple[str, Any]] = {}
        original = self.yaml.compose_node

        def compose_node(parent: Any, index: Any) -> Any:
            if self.yaml.check_event(yaml.AliasEvent):
                event = self.yaml.get_event()
                anchor: str = event.anchor
                target = self.yaml.anchors.get(anchor)
                if target is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"found undefined alias {anchor!r}", event.start_mark
                    )
                node = ScalarNode(_ALIAS_TAG, anchor, event.start_mark, event.end_mark)
                self.alias_targets[id(node)] = (anchor, target.start_mark)
                return node
            return original(parent, index)

        setattr(self.yaml, "compose_node", compose_node)  # noqa: B010

    def construct(self, node: Node) -> Any:
        return self.yaml.construct_object(node, deep=True)


def _pos(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a scalar"


@dataclass(frozen=True)
class LoadedDocument:
    """A parsed YAML document: plain values, where each of them is, and the structural
    problems found (duplicate keys, aliases, unsupported tags or keys).

    `invalid_paths` are the nodes whose value could not be taken (their value is None or
    the entry is absent); schema errors at or under them are not reported again.
    `is_empty` is true when the file holds no document at all (blank or only comments).
    """

    file: str
    data: Any
    positions: PositionMap
    problems: tuple[Diagnostic, ...] = ()
    invalid_paths: frozenset[DocPath] = frozenset()
    is_empty: bool = False

    def diagnostic(
        self,
        path: DocPath,
        message: str,
        *,
        at: Literal["value", "key"] = "value",
        severity: Severity = Severity.ERROR,
        code: str = "value",
        shown_path: DocPath | None = None,
    ) -> Diagnostic:
        """A diagnostic about the node at `path`, placed at its value or its key (or its
        closest ancestor's key when the document lacks it)."""
        pos = self.positions.value(path) if at == "value" else self.positions.key(path)
        return Diagnostic(
            self.file, pos.line, pos.col, tuple(path) if shown_path is None else shown_path,
            message, severity, code,
        )


@dataclass
class _Builder:
    file: str
    loader: _Loader
    positions: dict[DocPath, Located] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    invalid: set[DocPath] = field(default_factory=set)

    def problem(self, path: DocPath, where: Position, message: str, code: str) -> None:
        self.problems.append(Diagnostic(self.file, where.line, where.col, path, message,
                                        Severity.ERROR, code))

    def build(self, node: Node, path: DocPath, key: Position | None) -> Any:
        start = _pos(node.start_mark)
        self.positions[path] = Located(key, start, _pos(node.end_mark))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                return self._bad_tag(node, path)
            return [self.build(item, (*path, i), None) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                return self._bad_tag(node, path)
            return self._mapping(node, path)
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _bad_tag(self, node: Node, path: DocPath) -> None:
        self.problem(path, _pos(node.start_mark),
                     f"unsupported YAML tag {node.tag!r}; only the standard tags are allowed",
                     "yaml-tag")
        self.invalid.add(path)
        return None

    def _scalar(self, node: ScalarNode, path: DocPath) -> Any:
        if node.tag == _ALIAS_TAG:
            anchor, target = self.loader.alias_targets[id(node)]
            self.problem(path, _pos(node.start_mark),
                         f"aliases are not supported (*{anchor} refers to &{anchor} at line "
                         f"{target.line + 1}); write the value out in full", "yaml-alias")
            self.invalid.add(path)
            return None
        if node.tag not in _SCALAR_TAGS:
            return self._bad_tag(node, path)
        try:
            return self.loader.construct(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc)
            self.problem(path, _pos(node.start_mark),
                         f"invalid {node.tag.removeprefix(_TAG)} value {node.value!r}: {reason}",
                         "yaml-value")
            self.invalid.add(path)
            return None

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_seen: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            kpos = _pos(key_node.start_mark)
            if not isinstance(key_node, ScalarNode) or key_node.tag == _ALIAS_TAG:
                found = "an alias" if isinstance(key_node, ScalarNode) else _kind(key_node)
                self.problem(path, kpos, f"expected a plain key, found {found}", "yaml-key")
                continue
            if key_node.tag == _MERGE_TAG:
                self.problem(path, kpos, "merge keys (<<) are not supported; write the keys "
                             "out in full", "yaml-merge")
                continue
            if key_node.tag not in _SCALAR_TAGS:
                self.problem(path, kpos, f"unsupported YAML tag {key_node.tag!r} on a key",
                             "yaml-tag")
                continue
            try:
                key = self.loader.construct(key_node)
                hash(key)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError):
                self.problem(path, kpos, f"invalid key {key_node.value!r}", "yaml-key")
                continue
            if key in first_seen:
                self.problem(path, kpos,
                             f"duplicate key {describe_found(key)}; first defined at line "
                             f"{first_seen[key].line}", "duplicate-key")
                continue
            first_seen[key] = kpos
            out[key] = self.build(value_node, (*path, key), kpos)
        return out


# PyYAML's token names, as words
_TOKEN_WORDS = {
    "<scalar>": "a value",
    "<stream end>": "the end of the file",
    "end of stream": "end of the file",
    "<block end>": "the end of an indented block",
    "<block mapping start>": "a new indented mapping",
    "<block sequence start>": "a new indented list",
    "<block collection start>": "a new indented block",
    "<flow mapping start>": "'{'",
    "<flow sequence start>": "'['",
    "<flow mapping end>": "'}'",
    "<flow sequence end>": "']'",
    "<document start>": "'---'",
    "'?'": "a mapping key",
}


def _syntax_diagnostic(file: str, text: str, exc: yaml.YAMLError) -> Diagnostic:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Diagnostic(file, line, col, (),
                          f"character U+{char:04X} is not allowed in YAML (control "
                          f"characters must be escaped in a double-quoted string)",
                          Severity.ERROR, "yaml-syntax")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem_text = exc.problem or "invalid YAML"
        if "'\\t'" in problem_text:
            message = "found a tab character; YAML indents and separates with spaces only"
        elif isinstance(exc, yaml.composer.ComposerError) and "another document" in problem_text:
            message = "expected a single YAML document, found another one (---)"
        else:
            for token, words in _TOKEN_WORDS.items():
                problem_text = problem_text.replace(f"'{token}'", words).replace(token, words)
            message = f"invalid YAML: {problem_text}"
            if "mapping values are not allowed" in problem_text:
                message += " (quote a value that contains ': ')"
            if exc.context and exc.context_mark is not None and exc.context_mark != mark:
                message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
            elif exc.context:
                message += f" ({exc.context})"
        if mark is None:
            return Diagnostic(file, 1, 1, (), message, Severity.ERROR, "yaml-syntax")
        return Diagnostic(file, mark.line + 1, mark.column + 1, (), message, Severity.ERROR,
                          "yaml-syntax")
    return Diagnostic(file, 1, 1, (), f"invalid YAML: {exc}", Severity.ERROR, "yaml-syntax")


def load_yaml(text: str, file: str) -> LoadedDocument:
    """Parse one YAML document from `text`; `file` is the name diagnostics print.

    Raises DiagnosticsError for syntax errors (a single positioned diagnostic: the parser
    cannot go on). Structural problems are returned in `LoadedDocument.problems`.
    """
    text = text.removeprefix("\ufeff")
    try:
        loader = _Loader(text)
        try:
            root = loader.yaml.get_single_node()
        finally:
            loader.yaml.dispose()
    except yaml.YAMLError as exc:
        raise DiagnosticsError([_syntax_diagnostic(file, text, exc)]) from None
    except RecursionError:
        raise DiagnosticsError([Diagnostic(file, 1, 1, (), "the document is nested too deeply",
                                           Severity.ERROR, "yaml-syntax")]) from None
    if root is None:
        start = Position(1, 1)
        return LoadedDocument(file, None, PositionMap({(): Located(None, start, start)}),
                              is_empty=True)
    builder = _Builder(file, loader)
    try:
        data = builder.build(root, (), None)
    except RecursionError:
        raise DiagnosticsError([Diagnostic(file, 1, 1, (), "the document is nested too deeply",
                                           Severity.ERROR, "yaml-syntax")]) from None
    return LoadedDocument(
        file, data, PositionMap(builder.positions), tuple(sort_diagnostics(builder.problems)),
        frozenset(builder.invalid),
    )


def read_text_file(
    path: str | os.PathLike[str],
    *,
    display_name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[bytes, str]:
    """A UTF-8 text file's bytes and text (a leading BOM dropped). A missing, unreadable,
    oversized or undecodable file raises DiagnosticsError placed at 1:1 (or at the first
    bad byte), named `display_name` (default: the path as given)."""
    name = display_name if display_name is not None else os.fspath(path)

    def fail(line: int, col: int, message: str) -> NoReturn:
        raise DiagnosticsError([Diagnostic(name, line, col, (), message, Severity.ERROR, "file")])

    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        fail(1, 1, "cannot read the file: it does not exist")
    except IsADirectoryError:
        fail(1, 1, "cannot read the file: it is a directory")
    except PermissionError:
        fail(1, 1, "cannot read the file: permission denied")
    except OSError as exc:
        fail(1, 1, f"cannot read the file: {exc.strerror or exc}")
    if len(raw) > max_bytes:
        fail(1, 1, f"the file is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8-sig", errors="replace")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1) + 1
        fail(line, col, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
    return raw, text


def load_yaml_file(
    path: str | os.PathLike[str],
    *,
    display_name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedDocument:
    """Read and parse a UTF-8 YAML file (see `read_text_file` for the file's errors)."""
    name = display_name if display_name is not None else os.fspath(path)
    _raw, text = read_text_file(path, display_name=name, max_bytes=max_bytes)
    return load_yaml(text, name)


# -- pydantic errors → diagnostics -------------------------------------------------------------


def problem(
    loc: DocPath, message: str, *, input: object = None, code: str = "value"
) -> InitErrorDetails:
    """An error for `located_errors`: `loc` is relative to the model being validated, the
    message is printed verbatim (say what was expected and what was found)."""
    return InitErrorDetails(
        type=PydanticCustomError(CUSTOM_ERROR_TYPE, "{message}",
                                 {"message": message, "code": code}),
        loc=tuple(loc),
        input=input,
    )


def located_errors(title: str, problems: Sequence[InitErrorDetails],
                   prior: ValidationError | None = None) -> ValidationError:
    """A ValidationError holding `problems` (after the errors of `prior`, if given).

    Raised from a model validator, pydantic nests it under the model's location, so each
    problem is reported at its own key rather than at the whole mapping.
    """
    details: list[InitErrorDetails] = []
    if prior is not None:
        for err in prior.errors():
            d = InitErrorDetails(type=err["type"], loc=err["loc"], input=err["input"])
            if err["type"] == CUSTOM_ERROR_TYPE and "ctx" in err:
                d["type"] = PydanticCustomError(CUSTOM_ERROR_TYPE, "{message}",
                                                dict(err["ctx"]))
            elif "ctx" in err:
                d["ctx"] = dict(err["ctx"])
            details.append(d)
    details.extend(problems)
    return ValidationError.from_exception_data(title, details)


@dataclass
class _Expectation:
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    min_length: int | None = None
    max_length: int | None = None
    text: str | None = None
    secret: bool = False

    def absorb(self, metadata: Iterable[Any]) -> None:
        for m in metadata:
            if isinstance(m, FieldInfo):
                self.absorb(m.metadata)
            elif isinstance(m, Expect):
                self.text = m.text
            elif isinstance(m, Secret):
                self.secret = True
            elif isinstance(m, annotated_types.BaseMetadata):
                for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
                    v = getattr(m, attr, None)
                    if v is not None:
                        setattr(self, attr, v)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _flatten(tp: Any, exp: _Expectation | None = None) -> list[Any]:
    """Strip Annotated (collecting its metadata) and split unions; None is dropped."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        if exp is not None:
            exp.absorb(meta)
        return _flatten(base, exp)
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in get_args(tp):
            if arg is not type(None):
                out.extend(_flatten(arg, exp))
        return out
    if (tp is SecretStr or tp is SecretBytes) and exp is not None:
        exp.secret = True
    return [tp]


def _field_key(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias if isinstance(info.validation_alias, str) else None
    return alias or info.alias or name


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [_field_key(n, f) for n, f in model.model_fields.items()]


def _field(model: type[BaseModel], key: object) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if _field_key(name, info) == key:
            return info
    return None


_SEQUENCE_ORIGINS: tuple[Any, ...] = (list, tuple, set, frozenset, Sequence)
_MAPPING_ORIGINS: tuple[Any, ...] = (dict, Mapping)


def _step(types_here: list[Any], part: object) -> list[Any] | None:
    """The annotations one loc element below `types_here`, or None if `part` does not
    address anything there (a union tag)."""
    nxt: list[Any] = []
    for tp in types_here:
        if _is_model(tp):
            info = _field(tp, part)
            if info is not None:
                ann = info.annotation
                nxt.append(Annotated[(ann, *info.metadata)] if info.metadata else ann)
            continue
        origin = get_origin(tp) or tp
        args = get_args(tp)
        if origin in _SEQUENCE_ORIGINS and isinstance(part, int):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if 0 <= part < len(args):
                    nxt.append(args[part])
            else:
                nxt.append(args[0] if args else Any)
        elif origin in _MAPPING_ORIGINS:
            nxt.append(args[1] if len(args) == 2 else Any)
        elif tp is Any:
            nxt.append(Any)
    return nxt or None


def _range_text(exp: _Expectation) -> str:
    lo = exp.ge if exp.ge is not None else exp.gt
    hi = exp.le if exp.le is not None else exp.lt
    if exp.ge is not None and exp.le is not None:
        return f" from {exp.ge} to {exp.le}"
    if lo is not None and hi is not None:
        lo_word = "at least" if exp.ge is not None else "greater than"
        hi_word = "at most" if exp.le is not None else "less than"
        return f" {lo_word} {lo} and {hi_word} {hi}"
    if exp.ge is not None:
        return f" of at least {exp.ge}"
    if exp.gt is not None:
        return f" greater than {exp.gt}"
    if exp.le is not None:
        return f" of at most {exp.le}"
    if exp.lt is not None:
        return f" less than {exp.lt}"
    return ""


def _quote(v: object) -> str:
    return repr(v.value) if isinstance(v, enum.Enum) else repr(v)


def _describe_one(tp: Any, exp: _Expectation) -> str | None:
    origin = get_origin(tp)
    if origin is Literal:
        values = get_args(tp)
        if len(values) == 1:
            return _quote(values[0])
        return "one of " + ", ".join(_quote(v) for v in values)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(_quote(m) for m in tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer" + _range_text(exp)
    if tp is float:
        return "a number" + _range_text(exp)
    if tp in (str, SecretStr):
        if exp.min_length and exp.max_length:
            return f"a string of {exp.min_length} to {exp.max_length} characters"
        if exp.max_length:
            return f"a string of at most {exp.max_length} characters"
        if exp.min_length == 1:
            return "a non-empty string"
        if exp.min_length:
            return f"a string of at least {exp.min_length} characters"
        return "a string"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "a path"
    if _is_model(tp) or (origin or tp) in _MAPPING_ORIGINS:
        return "a mapping"
    if (origin or tp) in _SEQUENCE_ORIGINS:
        if exp.min_length == 1 and not exp.max_length:
            return "a non-empty list"
        if exp.min_length and exp.max_length:
            return f"a list of {exp.min_length} to {exp.max_length} items"
        if exp.min_length:
            return f"a list of at least {exp.min_length} items"
        if exp.max_length:
            return f"a list of at most {exp.max_length} items"
        return "a list"
    return None


def _describe(annotations: list[Any]) -> tuple[str | None, bool]:
    """(what the annotations expect, in words; whether the value is secret)."""
    exp = _Expectation()
    flat: list[Any] = []
    for ann in annotations:
        flat.extend(_flatten(ann, exp))
    if exp.text is not None:
        return exp.text, exp.secret
    words: list[str] = []
    for tp in flat:
        w = _describe_one(tp, exp)
        if w is None:
            return None, exp.secret
        if w not in words:
            words.append(w)
    return (" or ".join(words) if words else None), exp.secret


# pydantic error types whose meaning is "this is not the expected kind of value"
_TYPE_ERRORS = frozenset({
    "int_type", "int_parsing", "int_from_float", "int_parsing_size", "float_type",
    "float_parsing", "bool_type", "bool_parsing", "string_type", "string_unicode", "list_type",
    "tuple_type", "set_type", "frozen_set_type", "dict_type", "model_type",
    "model_attributes_type", "literal_error", "enum", "path_type", "is_instance_of",
    "none_required", "bytes_type", "date_type", "datetime_type", "finite_number",
    "dataclass_type", "iterable_type", "mapping_type",
})
_RANGE_ERRORS = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
    "too_short", "too_long", "string_too_short", "string_too_long", "string_pattern_mismatch",
})


def _strip_prefix(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _fallback(msg: str, found: str) -> str:
    text = msg
    if text.startswith("Input should be "):
        text = "expected " + text[len("Input should be "):]
    else:
        text = text[:1].lower() + text[1:]
    return f"{text}, found {found}"


def diagnostics_from_validation_error(
    error: ValidationError,
    doc: LoadedDocument,
    model: type[BaseModel] | None = None,
    *,
    prefix: DocPath = (),
) -> list[Diagnostic]:
    """Turn each error of `error` (from validating the value at `prefix` of `doc` against
    `model`) into a positioned diagnostic, sorted by line.

    Unknown keys are reported at the key, with the keys the mapping allows and the
    closest one; missing keys at the mapping that lacks them; everything else at the
    value, saying what was expected and what was found. Errors under a node the YAML
    loader already reported (doc.invalid_paths) are dropped.
    """
    out: list[Diagnostic] = []
    root_types: list[Any] = [model] if model is not None else [Any]
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        on_key = bool(loc) and loc[-1] == "[key]"
        if on_key:
            loc = loc[:-1]
        etype = err["type"]

        # walk the loc through the data (where is it?) and the types (what is it?)
        node: Any = doc.data
        for part in prefix:
            node = _child(node, part)
        logical: list[Any] = list(prefix)
        present: list[Any] = list(prefix)
        is_present = True
        types_here: list[Any] = root_types
        parent_types: list[Any] = root_types
        union_types: list[Any] | None = None  # set when the loc ends in a union member's tag
        for part in loc:
            flat = [t for ann in types_here for t in _flatten(ann)]
            nxt = _step(flat, part)
            in_data = is_present and _has_child(node, part)
            if nxt is None and not in_data:
                if len(flat) > 1 and isinstance(part, str):
                    # a union tag ('int', 'function-after[...]', a model's name): not a
                    # place in the document; a model name narrows the union to it
                    named = [t for t in flat if getattr(t, "__name__", None) == part
                             or _has_literal_tag(t, part)]
                    union_types = union_types or types_here
                    types_here = named or types_here
                    continue
                nxt = [Any]
            parent_types = flat
            union_types = None
            logical.append(part)
            types_here = nxt if nxt is not None else [Any]
            if in_data:
                node = _child(node, part)
                present.append(part)
            else:
                is_present = False
        path = tuple(logical)
        where = tuple(present)
        if any(where[: len(bad)] == bad for bad in doc.invalid_paths):
            continue

        found_value = err.get("input")
        if union_types is not None:
            # one error per union member: describe the whole union, so the lines coincide
            # and are printed once ("expected an integer or a string, found a list")
            types_here = union_types
        if on_key:  # the error is about a mapping key: describe the key type
            types_here = [get_args(t)[0] for t in parent_types
                          if (get_origin(t) or t) in _MAPPING_ORIGINS and get_args(t)] or [Any]
        described, secret = _describe(types_here)
        found = describe_found(found_value, secret=secret)
        ctx = err.get("ctx") or {}
        parent_models = [t for t in parent_types if _is_model(t)]

        if etype == CUSTOM_ERROR_TYPE:
            message, code = str(ctx.get("message", err["msg"])), str(ctx.get("code", "value"))
            pos = doc.positions.value(where) if where == path else doc.positions.key(where)
            out.append(Diagnostic(doc.file, pos.line, pos.col, path, message,
                                  Severity.ERROR, code))
            continue
        if etype in ("extra_forbidden", "invalid_key") and path:
            key = path[-1]
            allowed: list[str] = []
            for m in parent_models:
                allowed.extend(k for k in _model_keys(m) if k not in allowed)
            message = f"unknown key {describe_found(key)}"
            if isinstance(key, str):
                close = difflib.get_close_matches(key.lower(), [a.lower() for a in allowed],
                                                  n=1, cutoff=0.6)
                if close:
                    suggestion = next(a for a in allowed if a.lower() == close[0])
                    message += f" (did you mean {suggestion!r}?)"
            if allowed:
                message += f"; expected one of: {_keys_text(allowed)}"
            pos = doc.positions.key(where)
            out.append(Diagnostic(doc.file, pos.line, pos.col, path[:-1], message,
                                  Severity.ERROR, "unknown-key"))
            continue
        if etype == "missing" and path:
            parent = path[:-1]
            pos = doc.positions.key(where[: len(parent)] if where[: len(parent)] == parent
                                    else where)
            out.append(Diagnostic(doc.file, pos.line, pos.col, parent,
                                  f"missing required key {describe_found(path[-1])}",
                                  Severity.ERROR, "missing-key"))
            continue
        if etype == "union_tag_invalid" and isinstance(found_value, Mapping):
            key = str(ctx.get("discriminator", "")).strip("'")
            tag_path = (*path, key)
            tag_where = (*where, key) if where == path and key in found_value else where
            pos = (doc.positions.value(tag_where) if tag_where == tag_path
                   else doc.positions.key(tag_where))
            out.append(Diagnostic(
                doc.file, pos.line, pos.col, tag_path,
                f"expected one of {ctx.get('expected_tags', '')}, found "
                f"{describe_found(ctx.get('tag'))}", Severity.ERROR, "value"))
            continue
        if etype == "union_tag_not_found" and isinstance(found_value, Mapping):
            key = str(ctx.get("discriminator", "")).strip("'")
            pos = doc.positions.key(where)
            out.append(Diagnostic(doc.file, pos.line, pos.col, path,
                                  f"missing required key {key!r}", Severity.ERROR,
                                  "missing-key"))
            continue
        if etype == "too_short" and isinstance(found_value, Sequence | Mapping) and (
            len(found_value) >= int(ctx.get("min_length", 0))
        ):
            continue  # pydantic's echo of failed items, not a real length problem

        if on_key:
            pos = doc.positions.key(where)
            key_text = describe_found(path[-1]) if path else "key"
            if described is not None and etype not in (CUSTOM_ERROR_TYPE,):
                message = f"invalid key {key_text}: expected {described}"
            elif etype in _TYPE_ERRORS or etype in _RANGE_ERRORS:
                message = f"invalid key {key_text}: expected a valid key"
            elif etype in ("value_error", "assertion_error"):
                message = f"invalid key {key_text}: {_strip_prefix(err['msg'])}"
            else:
                message = f"invalid key {key_text}: {_fallback(_strip_prefix(err['msg']), found)}"
            out.append(Diagnostic(doc.file, pos.line, pos.col, path[:-1], message,
                                  Severity.ERROR, "key"))
            continue

        pos = doc.positions.value(where) if where == path else doc.positions.key(where)
        if etype in ("value_error", "assertion_error"):
            message, code = _strip_prefix(err["msg"]), "value"
        elif (etype in _TYPE_ERRORS or etype in _RANGE_ERRORS) and described is not None:
            if not path and etype in ("model_type", "dict_type"):
                described = "a mapping at the top level"
            message, code = f"expected {described}, found {found}", (
                "type" if etype in _TYPE_ERRORS else "value")
        else:
            message, code = _fallback(_strip_prefix(err["msg"]), found), "value"
        out.append(Diagnostic(doc.file, pos.line, pos.col, path, message, Severity.ERROR, code))
    return sort_diagnostics(out)


def _has_literal_tag(tp: Any, tag: object) -> bool:
    """Whether model `tp` has a field whose Literal type admits `tag` (a discriminator)."""
    if not _is_model(tp):
        return False
    for info in tp.model_fields.values():
        for member in _flatten(info.annotation):
            if get_origin(member) is Literal and tag in get_args(member):
                return True
    return False


def _has_child(node: Any, part: object) -> bool:
    if isinstance(node, dict):
        try:
            return part in node
        except TypeError:
            return False
    if isinstance(node, list) and isinstance(part, int) and not isinstance(part, bool):
        return 0 <= part < len(node)
    return False


def _child(node: Any, part: object) -> Any:
    if _has_child(node, part):
        return node[part]
    return None


def validate_document(
    model: type[M],
    doc: LoadedDocument,
    *,
    context: Any = None,
    path: DocPath = (),
) -> M:
    """Validate the value at `path` of `doc` against `model`.

    Raises DiagnosticsError holding the document's own problems and every validation
    error, sorted by line; returns the model instance only when there are none.
    """
    node: Any = doc.data
    for part in path:
        node = _child(node, part)
    problems = [p for p in doc.problems if p.path[: len(path)] == tuple(path)] if path else list(
        doc.problems)
    try:
        result = model.model_validate(node, context=context)
    except ValidationError as exc:
        problems.extend(diagnostics_from_validation_error(exc, doc, model, prefix=path))
        raise DiagnosticsError(problems) from None
    if any(p.severity is Severity.ERROR for p in problems):
        raise DiagnosticsError(problems)
    return result
