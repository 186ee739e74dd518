"""The flow expression language: `branch` conditions, `set` values and `{...}` templates.

Owns: the syntax (a lexer and a recursive-descent parser that never calls Python's `eval`),
the tree it builds, its printing back to source (`unparse`), evaluation against a flat
mapping of variables, and the limits that keep a hostile or careless flow from exhausting
the process. Every parse error is an `ExprError` carrying the 0-based character offset and
length of the fault inside the text it was given, so the loader can point at FILE:LINE:COL.

Must not know: where variables come from, flows, steps, calls or the clock (`today` is
just a variable the interpreter supplies).

The language, in full:

- Values are `str | int | bool | None`. Numbers are whole decimal integers (no floats:
  nothing a caller types or a booking holds needs them); a literal may not start with 0
  (write a code such as "0412" as text). Text is 'single' or "double" quoted with the
  escapes \\\\ \\' \\" \\n \\r \\t; a raw line break inside quotes is refused.
- `true`, `false`, `null`; variables by dotted name (`caller.number`, `attempts`), looked
  up as one key in the mapping; these words are reserved: and or not in true false null.
- From loosest to tightest: `or`, `and`, `not`, comparisons (`== != < <= > >=`, `in`,
  `not in`; never chained), `+ -`, `* // %`, unary `-`, then literals, names, calls and
  parentheses. `in` takes a list literal `[a, b]` or text (substring test).
- Types are strict, so a mistake surfaces as an `EvalError` instead of a silent wrong
  branch: `and`/`or`/`not` take booleans only; `==`/`!=` need both sides of one type
  (`null` equals only `null` and may be compared with anything); ordering compares two
  numbers or two texts; `+` adds numbers or joins texts, `- * // %` take numbers (floor
  division and modulo, as in Python); division by zero is an error.
- Functions (a fixed set): len(text), lower(text), upper(text), digits(text) (keeps the
  ASCII digits), substr(text, start, length) (0-based, clamped at the end), int(value)
  (text of an optional sign and digits, or a number), str(value) (null → "", booleans →
  "true"/"false"), empty(value) (null or ""), startswith(text, prefix),
  age(date, today) (whole years between two "YYYY-MM-DD" texts), default(value, fallback)
  (fallback when value is null). `default` and `empty` also accept a variable that is
  not set at all and treat it as null.
- Templates: text where `{name}` or `{expression}` is replaced by the value as `str()`
  writes it; `{{` and `}}` stand for literal braces.

Limits: an expression is at most `MAX_SOURCE_LENGTH` characters and nests at most
`MAX_DEPTH` levels (parentheses, calls, lists, `not`, unary minus); a template is at most
`MAX_TEMPLATE_LENGTH` characters. At evaluation a computed text longer than
`MAX_STRING_LENGTH` or a number whose magnitude reaches `INT_LIMIT` is an `EvalError`.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NoReturn, TypeAlias

__all__ = [
    "INT_LIMIT",
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "MAX_STRING_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "Call",
    "Compare",
    "Constant",
    "EvalError",
    "ExprError",
    "Expression",
    "ListOf",
    "Logic",
    "Membership",
    "Name",
    "Negate",
    "Node",
    "Not",
    "Product",
    "Sum",
    "Template",
    "Value",
    "parse",
    "parse_template",
    "to_text",
    "unparse",
    "whole_years",
]

Value: TypeAlias = str | int | bool | None
"""What a variable holds and an expression yields."""

MAX_SOURCE_LENGTH: Final = 1000  # characters in one expression (or one template placeholder)
MAX_TEMPLATE_LENGTH: Final = 10_000  # characters in one template text
MAX_DEPTH: Final = 32  # nesting levels: parentheses, calls, lists, not, unary minus
MAX_STRING_LENGTH: Final = 10_000  # characters in any text an evaluation computes
INT_LIMIT: Final = 10**18  # every number an evaluation computes has |n| < INT_LIMIT

KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false", "null"})


class ExprError(Exception):
    """An expression or template that does not parse.

    `offset` is the 0-based index of the fault in the text given to `parse` or
    `parse_template`, `length` how many characters it spans (at least 1, except at the
    end of the text where it is 0).
    """

    def __init__(self, message: str, offset: int, length: int = 1) -> None:
        super().__init__(message, offset, length)
        self.message = message
        self.offset = offset
        self.length = length

    def __str__(self) -> str:
        return f"{self.message} (at character {self.offset + 1})"


class EvalError(Exception):
    """An expression that parsed but cannot be evaluated with these variables
    (unknown variable, wrong type, division by zero, a limit exceeded). The interpreter
    takes its error branch; the message is written for the person who edits the flow."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# -- the tree ------------------------------------------------------------------------------
# Nodes compare by structure only: the source span (offset, length) is left out of equality
# so that a tree printed with `unparse` and parsed again compares equal to the original.


def _span() -> int:
    return field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Constant:
    """A literal: a number, a text, true, false or null."""

    value: Value
    offset: int = _span()
    length: int = _span()

    def __eq__(self, other: object) -> bool:
        # `True == 1` in Python: compare the type too
        return (
            isinstance(other, Constant)
            and type(self.value) is type(other.value)
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True, slots=True)
class Name:
    """A variable, by its full dotted name."""

    name: str
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Negate:
    """Unary minus."""

    operand: Node
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Not:
    """Boolean negation."""

    operand: Node
    offset: int = _span()
    length: int = _span()


SumOp: TypeAlias = Literal["+", "-"]
ProductOp: TypeAlias = Literal["*", "//", "%"]
CompareOp: TypeAlias = Literal["==", "!=", "<", "<=", ">", ">="]
LogicOp: TypeAlias = Literal["and", "or"]


@dataclass(frozen=True, slots=True)
class Sum:
    """`first (+|- operand)*`, evaluated left to right."""

    first: Node
    rest: tuple[tuple[SumOp, Node], ...]
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Product:
    """`first (*|//|% operand)*`, evaluated left to right."""

    first: Node
    rest: tuple[tuple[ProductOp, Node], ...]
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Logic:
    """`a and b and c` or `a or b or c`, short-circuit."""

    op: LogicOp
    operands: tuple[Node, ...]
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Compare:
    """One comparison (they do not chain)."""

    op: CompareOp
    left: Node
    right: Node
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list literal; only ever the right side of `in` / `not in`."""

    items: tuple[Node, ...]
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Membership:
    """`item in container` or `item not in container`."""

    item: Node
    container: Node
    negated: bool
    offset: int = _span()
    length: int = _span()


@dataclass(frozen=True, slots=True)
class Call:
    """A call of one of the built-in functions (checked at parse: name and arity)."""

    function: str
    args: tuple[Node, ...]
    offset: int = _span()
    length: int = _span()


Node: TypeAlias = (
    Constant | Name | Negate | Not | Sum | Product | Logic | Compare | ListOf | Membership | Call
)

# -- lexing --------------------------------------------------------------------------------

_INT = "int"
_STR = "str"
_NAME = "name"
_KEYWORD = "keyword"
_OP = "op"
_END = "end"

_NAME_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")
_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">=", "//"})
_ONE_CHAR_OPS = frozenset("<>+-*%()[],")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_WRONG_OPERATORS = {
    "&&": "use 'and' instead of '&&'",
    "||": "use 'or' instead of '||'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
    "!": "use 'not' instead of '!'",
    "=": "use '==' to compare ('=' alone is not an operator)",
    "/": "use '//' to divide (whole numbers only)",
    "**": "there is no power operator '**'; multiply with '*'",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str  # the token as written (for names and keywords: the name)
    value: Value
    offset: int
    length: int


def _describe_token(token: _Token) -> str:
    if token.kind == _END:
        return token.text
    if token.kind == _INT:
        return f"the number {token.text}"
    if token.kind == _STR:
        return f"the text {_quote_short(str(token.value))}"
    if token.kind == _NAME:
        return f"the name '{token.text}'"
    return f"'{token.text}'"


def _quote_short(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return unparse(Constant(shown))


def _lex(text: str, start: int, stop: int, *, in_placeholder: bool) -> list[_Token]:
    """Tokens of text[start:stop]; in a placeholder, lexing stops at the first `}` outside
    quotes, which becomes the `_END` token (the caller checks it is there)."""
    tokens: list[_Token] = []
    i = start
    while True:
        while i < stop and text[i] in " \t\r\n":
            i += 1
        if i >= stop:
            end = "the end of the placeholder" if in_placeholder else "the end of the expression"
            tokens.append(_Token(_END, end, None, stop, 0))
            return tokens
        ch = text[i]
        if ch == "}" and in_placeholder:
            tokens.append(_Token(_END, "'}' (the end of the placeholder)", None, i, 1))
            return tokens
        if ch.isascii() and ch.isdigit():
            tokens.append(_lex_int(text, i, stop))
        elif ch == "_" or (ch.isascii() and ch.isalpha()):
            tokens.append(_lex_name(text, i, stop))
        elif ch in "'\"":
            tokens.append(_lex_string(text, i, stop))
        else:
            tokens.append(_lex_operator(text, i, stop, in_placeholder=in_placeholder))
        i = tokens[-1].offset + tokens[-1].length


def _lex_int(text: str, i: int, stop: int) -> _Token:
    match = _DIGITS.match(text, i, stop)
    assert match is not None
    j = match.end()
    digits = match.group()
    if j < stop and text[j] == "." and j + 1 < stop and text[j + 1].isdigit():
        raise ExprError(
            "decimal numbers are not supported: only whole numbers", i, _run_length(text, i, stop)
        )
    if j < stop and (text[j] == "_" or text[j].isalpha()):
        word = text[i : i + _run_length(text, i, stop)]
        raise ExprError(
            f"a number cannot run into letters: {word!r}; put a space or an operator "
            "between them (a name cannot start with a digit)",
            i,
            len(word),
        )
    if len(digits) > 1 and digits[0] == "0":
        raise ExprError(
            f"the number {digits} starts with 0; write it as text ('{digits}') if it is a "
            "code or a number to dial, or drop the leading zeros",
            i,
            len(digits),
        )
    if len(digits) > len(str(INT_LIMIT)) or int(digits) >= INT_LIMIT:
        raise ExprError(
            f"the number {digits[:24]}{'…' if len(digits) > 24 else ''} is too large "
            f"(numbers must stay below {INT_LIMIT:,})",
            i,
            len(digits),
        )
    return _Token(_INT, digits, int(digits), i, len(digits))


def _run_length(text: str, i: int, stop: int) -> int:
    """Length of the run of letters, digits, `_` and `.` at i (the offending 'word')."""
    j = i
    while j < stop and (text[j].isalnum() or text[j] in "_."):
        j += 1
    return max(1, j - i)


def _lex_name(text: str, i: int, stop: int) -> _Token:
    segments: list[str] = []
    j = i
    while True:
        match = _NAME_SEGMENT.match(text, j, stop)
        if match is None:
            raise ExprError(
                f"expected a name after '.', found {_char_at(text, j, stop)}",
                j,
                0 if j >= stop else 1,
            )
        segment = match.group()
        if segment in KEYWORDS and (segments or (match.end() < stop and text[match.end()] == ".")):
            raise ExprError(
                f"'{segment}' is a reserved word and cannot be part of a dotted name",
                match.start(),
                len(segment),
            )
        segments.append(segment)
        j = match.end()
        if j < stop and text[j] == ".":
            j += 1
            continue
        break
    if j < stop and not text[j].isascii() and text[j].isalnum():
        raise ExprError(
            f"names use ASCII letters, digits and '_' only, found {text[j]!r}",
            j,
            1,
        )
    name = ".".join(segments)
    if name in KEYWORDS:
        return _Token(_KEYWORD, name, None, i, j - i)
    lowered = name.lower()
    if lowered in KEYWORDS or name in ("None", "NONE", "Null"):
        proper = "null" if lowered == "none" else lowered
        raise ExprError(f"write '{proper}' in lower case (found '{name}')", i, j - i)
    return _Token(_NAME, name, name, i, j - i)


def _char_at(text: str, i: int, stop: int) -> str:
    if i >= stop:
        return "the end of the text"
    ch = text[i]
    return repr(ch) if ch.isprintable() else f"the character U+{ord(ch):04X}"


def _lex_string(text: str, i: int, stop: int) -> _Token:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while True:
        if j >= stop:
            raise ExprError(
                f"unterminated text: the {quote} opened here is never closed", i, stop - i
            )
        ch = text[j]
        if ch == quote:
            value = "".join(out)
            return _Token(_STR, text[i : j + 1], value, i, j + 1 - i)
        if ch in "\r\n":
            raise ExprError(
                f"unterminated text: the {quote} opened here is not closed before the end "
                "of the line (write \\n for a line break inside text)",
                i,
                j - i,
            )
        if ch == "\\":
            if j + 1 >= stop:
                raise ExprError(
                    f"unterminated text: the {quote} opened here is never closed", i, stop - i
                )
            escaped = text[j + 1]
            if escaped not in _ESCAPES:
                raise ExprError(
                    f"unknown escape \\{escaped} in text: use \\\\ \\' \\\" \\n \\r or \\t",
                    j,
                    2,
                )
            out.append(_ESCAPES[escaped])
            j += 2
            continue
        out.append(ch)
        j += 1


def _lex_operator(text: str, i: int, stop: int, *, in_placeholder: bool) -> _Token:
    two = text[i : min(i + 2, stop)]
    if two in ("&&", "||", "**"):
        raise ExprError(_WRONG_OPERATORS[two], i, 2)
    if two in _TWO_CHAR_OPS:
        return _Token(_OP, two, None, i, 2)
    ch = text[i]
    if ch in _ONE_CHAR_OPS:
        return _Token(_OP, ch, None, i, 1)
    if ch in _WRONG_OPERATORS:
        raise ExprError(_WRONG_OPERATORS[ch], i, 1)
    if ch == "{" and in_placeholder:
        raise ExprError(
            "'{' cannot appear inside a placeholder (write '{{' outside placeholders for "
            "a literal brace)",
            i,
            1,
        )
    if ch == ".":
        raise ExprError("unexpected '.': a name cannot start with a dot", i, 1)
    raise ExprError(f"unexpected character {_char_at(text, i, stop)}", i, 1)


# -- functions -----------------------------------------------------------------------------

_Impl: TypeAlias = Callable[[Sequence[Value], "_Context", Call], Value]


@dataclass(frozen=True, slots=True)
class _Function:
    params: tuple[str, ...]
    impl: _Impl

    def signature(self, name: str) -> str:
        return f"{name}({', '.join(self.params)})"


_FUNCTIONS: dict[str, _Function] = {}


def _function(name: str, *params: str) -> Callable[[_Impl], _Impl]:
    def register(impl: _Impl) -> _Impl:
        _FUNCTIONS[name] = _Function(params, impl)
        return impl

    return register


def _need_text(value: Value, call: Call, position: int, ctx: _Context) -> str:
    if isinstance(value, str):
        return value
    ctx.fail(
        call,
        f"{call.function}() needs text as its {_ORDINALS[position]} argument, "
        f"found {_describe(value)}",
    )


def _need_int(value: Value, call: Call, position: int, ctx: _Context) -> int:
    if type(value) is int:
        return value
    ctx.fail(
        call,
        f"{call.function}() needs a number as its {_ORDINALS[position]} argument, "
        f"found {_describe(value)}",
    )


_ORDINALS = ("first", "second", "third")


@_function("len", "text")
def _fn_len(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return len(_need_text(args[0], call, 0, ctx))


@_function("lower", "text")
def _fn_lower(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return ctx.text_result(_need_text(args[0], call, 0, ctx).lower(), call)


@_function("upper", "text")
def _fn_upper(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return ctx.text_result(_need_text(args[0], call, 0, ctx).upper(), call)


@_function("digits", "text")
def _fn_digits(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return "".join(ch for ch in _need_text(args[0], call, 0, ctx) if "0" <= ch <= "9")


@_function("substr", "text", "start", "length")
def _fn_substr(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    text = _need_text(args[0], call, 0, ctx)
    start = _need_int(args[1], call, 1, ctx)
    length = _need_int(args[2], call, 2, ctx)
    if start < 0 or length < 0:
        ctx.fail(
            call, f"substr() needs a start and a length of 0 or more, found {start} and {length}"
        )
    return text[start : start + length]


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


@_function("int", "value")
def _fn_int(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    value = args[0]
    if type(value) is int:
        return value
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value) is None:
            ctx.fail(call, f"int() cannot read {_describe(value)} as a whole number")
        digits = value.lstrip("+-").lstrip("0")
        if len(digits) > len(str(INT_LIMIT)):
            ctx.fail(call, f"int(): {_describe(value)} is too large")
        return ctx.int_result(int(value), call)
    ctx.fail(call, f"int() needs text or a number, found {_describe(value)}")


@_function("str", "value")
def _fn_str(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return to_text(args[0])


@_function("empty", "value")
def _fn_empty(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return args[0] is None or args[0] == ""


@_function("startswith", "text", "prefix")
def _fn_startswith(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return _need_text(args[0], call, 0, ctx).startswith(_need_text(args[1], call, 1, ctx))


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Value, call: Call, position: int, ctx: _Context) -> datetime.date:
    text = _need_text(value, call, position, ctx)
    if _ISO_DATE.fullmatch(text) is not None:
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            pass
    ctx.fail(
        call,
        f"age() cannot read {_describe(text)} (its {_ORDINALS[position]} argument) as a "
        "date: expected YYYY-MM-DD",
    )


@_function("age", "date", "today")
def _fn_age(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    born = _iso_date(args[0], call, 0, ctx)
    today = _iso_date(args[1], call, 1, ctx)
    if born > today:
        ctx.fail(call, f"age(): the date {born.isoformat()} is after {today.isoformat()}")
    return whole_years(born, today)


@_function("default", "value", "fallback")
def _fn_default(args: Sequence[Value], ctx: _Context, call: Call) -> Value:
    return args[1] if args[0] is None else args[0]


_LENIENT_FUNCTIONS = frozenset({"default", "empty"})  # first argument may be an unset name


def whole_years(born: datetime.date, on: datetime.date) -> int:
    """Completed years from `born` to `on` (negative if `on` is earlier). Someone born on
    29 February completes a year on 1 March in a common year."""
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years


def to_text(value: Value) -> str:
    """A value as `str()` and templates write it: null → "", true/false, decimal numbers."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _describe(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"the number {value}"
    return f"the text {_quote_short(value)}"


def _type_name(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    return "text"


# -- parsing -------------------------------------------------------------------------------

_COMPARE_OPS: frozenset[str] = frozenset({"==", "!=", "<", "<=", ">", ">="})


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # token helpers

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def is_op(self, *ops: str) -> bool:
        return self.token.kind == _OP and self.token.text in ops

    def is_keyword(self, word: str, token: _Token | None = None) -> bool:
        t = self.token if token is None else token
        return t.kind == _KEYWORD and t.text == word

    def advance(self) -> _Token:
        token = self.token
        if token.kind != _END:
            self.pos += 1
        return token

    def fail(self, expected: str, token: _Token | None = None) -> NoReturn:
        t = self.token if token is None else token
        raise ExprError(f"expected {expected}, found {_describe_token(t)}", t.offset, t.length)

    def end_of(self, node_start: int) -> int:
        """Length from node_start to the end of the last consumed token."""
        last = self.tokens[self.pos - 1]
        return last.offset + last.length - node_start

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(
                f"the expression nests more than {MAX_DEPTH} levels deep; split it with "
                "`set` steps",
                token.offset,
                token.length,
            )

    def leave(self) -> None:
        self.depth -= 1

    # grammar

    def parse_all(self) -> Node:
        node = self.parse_or()
        if self.token.kind != _END:
            self.fail_after_value()
        return node

    def fail_after_value(self) -> NoReturn:
        token = self.token
        if self.is_op(")"):
            raise ExprError("unmatched ')': there is no '(' to close", token.offset, 1)
        if self.is_op("]"):
            raise ExprError("unmatched ']': there is no '[' to close", token.offset, 1)
        self.fail(f"an operator or {self.tokens[-1].text}")

    def parse_or(self) -> Node:
        return self.parse_logic("or", self.parse_and)

    def parse_and(self) -> Node:
        return self.parse_logic("and", self.parse_not)

    def parse_logic(self, op: LogicOp, operand: Callable[[], Node]) -> Node:
        start = self.token.offset
        first = operand()
        if not self.is_keyword(op):
            return first
        operands = [first]
        while self.is_keyword(op):
            self.advance()
            operands.append(operand())
        return Logic(op, tuple(operands), start, self.end_of(start))

    def parse_not(self) -> Node:
        if not self.is_keyword("not"):
            return self.parse_comparison()
        token = self.advance()
        self.enter(token)
        operand = self.parse_not()
        self.leave()
        return Not(operand, token.offset, self.end_of(token.offset))

    def parse_comparison(self) -> Node:
        start = self.token.offset
        left = self.parse_sum()
        token = self.token
        node: Node
        if token.kind == _OP and token.text in _COMPARE_OPS:
            self.advance()
            right = self.parse_sum()
            op: CompareOp = token.text  # type: ignore[assignment]
            node = Compare(op, left, right, start, self.end_of(start))
        elif self.at_membership():
            negated = self.is_keyword("not")
            if negated:
                self.advance()
            self.advance()
            container = self.parse_list() if self.is_op("[") else self.parse_sum()
            node = Membership(left, container, negated, start, self.end_of(start))
        else:
            node = left
        if self.is_keyword("not") and not self.is_keyword("in", self.peek()):
            self.fail("'in' after 'not' (as in: x not in [1, 2])", self.peek())
        if node is not left and (self.at_compare_op() or self.at_membership()):
            raise ExprError(
                "comparisons cannot be chained: join them with 'and' (a < b and b < c)",
                self.token.offset,
                self.token.length,
            )
        return node

    def at_compare_op(self) -> bool:
        return self.token.kind == _OP and self.token.text in _COMPARE_OPS

    def at_membership(self) -> bool:
        return self.is_keyword("in") or (
            self.is_keyword("not") and self.is_keyword("in", self.peek())
        )

    def parse_list(self) -> ListOf:
        open_token = self.advance()
        self.enter(open_token)
        items = self.parse_items("]", open_token)
        self.leave()
        return ListOf(tuple(items), open_token.offset, self.end_of(open_token.offset))

    def parse_items(self, closing: str, open_token: _Token) -> list[Node]:
        items: list[Node] = []
        if self.is_op(closing):
            self.advance()
            return items
        while True:
            items.append(self.parse_or())
            if self.is_op(","):
                self.advance()
                if self.is_op(closing):
                    self.fail("a value after ','")
                continue
            if self.is_op(closing):
                self.advance()
                return items
            if self.token.kind == _END:
                raise ExprError(
                    f"'{open_token.text}' is never closed: expected ',' or '{closing}', "
                    f"found {_describe_token(self.token)}",
                    open_token.offset,
                    1,
                )
            self.fail(f"',' or '{closing}'")

    def parse_sum(self) -> Node:
        start = self.token.offset
        first = self.parse_product()
        rest: list[tuple[SumOp, Node]] = []
        while self.is_op("+", "-"):
            op: SumOp = self.advance().text  # type: ignore[assignment]
            rest.append((op, self.parse_product()))
        return Sum(first, tuple(rest), start, self.end_of(start)) if rest else first

    def parse_product(self) -> Node:
        start = self.token.offset
        first = self.parse_unary()
        rest: list[tuple[ProductOp, Node]] = []
        while self.is_op("*", "//", "%"):
            op: ProductOp = self.advance().text  # type: ignore[assignment]
            rest.append((op, self.parse_unary()))
        return Product(first, tuple(rest), start, self.end_of(start)) if rest else first

    def parse_unary(self) -> Node:
        if not self.is_op("-"):
            return self.parse_primary()
        token = self.advance()
        self.enter(token)
        operand = self.parse_unary()
        self.leave()
        return Negate(operand, token.offset, self.end_of(token.offset))

    def parse_primary(self) -> Node:
        token = self.token
        if token.kind in (_INT, _STR):
            self.advance()
            return Constant(token.value, token.offset, token.length)
        if token.kind == _KEYWORD and token.text in ("true", "false", "null"):
            self.advance()
            value = {"true": True, "false": False, "null": None}[token.text]
            return Constant(value, token.offset, token.length)
        if token.kind == _NAME:
            self.advance()
            if self.is_op("("):
                return self.parse_call(token)
            return Name(token.text, token.offset, token.length)
        if self.is_op("("):
            self.advance()
            self.enter(token)
            node = self.parse_or()
            self.leave()
            if not self.is_op(")"):
                if self.token.kind == _END:
                    raise ExprError(
                        f"'(' is never closed: expected ')', found {_describe_token(self.token)}",
                        token.offset,
                        1,
                    )
                self.fail("')' or an operator")
            self.advance()
            return node
        if self.is_op("["):
            raise ExprError(
                "a list [...] can only follow 'in' or 'not in'", token.offset, token.length
            )
        if self.is_op("+"):
            raise ExprError(
                "a value cannot start with '+'; write the number alone", token.offset, 1
            )
        self.fail("a value (a number, 'text', true, false, null, a name, a call or '(')")

    def parse_call(self, name: _Token) -> Call:
        open_token = self.advance()
        function = _FUNCTIONS.get(name.text)
        if function is None:
            close = difflib.get_close_matches(name.text, list(_FUNCTIONS), n=1)
            hint = f"; did you mean {close[0]}()?" if close else ""
            raise ExprError(
                f"unknown function '{name.text}'{hint} (functions: "
                f"{', '.join(sorted(_FUNCTIONS))})",
                name.offset,
                name.length,
            )
        self.enter(open_token)
        args = self.parse_items(")", open_token)
        self.leave()
        length = self.end_of(name.offset)
        if len(args) != len(function.params):
            expected = len(function.params)
            raise ExprError(
                f"{function.signature(name.text)} takes {expected} "
                f"argument{'s' if expected != 1 else ''}, found {len(args)}",
                name.offset,
                length,
            )
        return Call(name.text, tuple(args), name.offset, length)


def _parse_node(text: str, start: int, stop: int) -> Node:
    if not text[start:stop].strip():
        raise ExprError("empty expression: expected a value or a condition", start, stop - start)
    return _Parser(text, _lex(text, start, stop, in_placeholder=False)).parse_all()


def _names(node: Node) -> Iterator[str]:
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            yield n.name
        elif isinstance(n, Negate | Not):
            stack.append(n.operand)
        elif isinstance(n, Sum | Product):
            stack.append(n.first)
            stack.extend(operand for _, operand in n.rest)
        elif isinstance(n, Logic):
            stack.extend(n.operands)
        elif isinstance(n, Compare):
            stack.extend((n.left, n.right))
        elif isinstance(n, Membership):
            stack.extend((n.item, n.container))
        elif isinstance(n, ListOf):
            stack.extend(n.items)
        elif isinstance(n, Call):
            stack.extend(n.args)


def parse(source: str) -> Expression:
    """Parse one expression; raise ExprError (offset into `source`) if it is malformed."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExprError(
            f"the expression is {len(source)} characters long; the limit is "
            f"{MAX_SOURCE_LENGTH} (split it with `set` steps)",
            MAX_SOURCE_LENGTH,
            len(source) - MAX_SOURCE_LENGTH,
        )
    node = _parse_node(source, 0, len(source))
    return Expression(source, node, frozenset(_names(node)))


# -- evaluation ----------------------------------------------------------------------------


class _Context:
    def __init__(self, source: str, variables: Mapping[str, Value]) -> None:
        self.source = source
        self.variables = variables

    def fail(self, node: Node, message: str) -> NoReturn:
        text = self.source[node.offset : node.offset + node.length]
        if node.length and text.strip() != self.source.strip():
            shown = text if len(text) <= 60 else text[:59] + "…"
            message = f"{message} (in `{shown}`)"
        raise EvalError(message)

    def int_result(self, value: int, node: Node) -> int:
        if -INT_LIMIT < value < INT_LIMIT:
            return value
        self.fail(node, f"the result is too large (numbers must stay below {INT_LIMIT:,})")

    def text_result(self, value: str, node: Node) -> str:
        if len(value) <= MAX_STRING_LENGTH:
            return value
        self.fail(
            node,
            f"the result is {len(value):,} characters long; texts are limited to "
            f"{MAX_STRING_LENGTH:,}",
        )

    def lookup(self, node: Name) -> Value:
        try:
            value = self.variables[node.name]
        except KeyError:
            self.fail(node, f"unknown variable '{node.name}'")
        if value is None or isinstance(value, str | int):  # bool is an int
            return value
        self.fail(
            node,
            f"variable '{node.name}' holds a {type(value).__name__}, which expressions cannot use",
        )

    def truth(self, value: Value, node: Node, what: str) -> bool:
        if isinstance(value, bool):
            return value
        self.fail(node, f"{what} needs true or false, found {_describe(value)}")

    def evaluate(self, node: Node) -> Value:
        if isinstance(node, Constant):
            return node.value
        if isinstance(node, Name):
            return self.lookup(node)
        if isinstance(node, Logic):
            # the value that decides: `or` stops at the first true, `and` at the first false
            decisive = node.op == "or"
            for operand in node.operands:
                what = f"'{node.op}'"
                if self.truth(self.evaluate(operand), operand, what) is decisive:
                    return decisive
            return not decisive
        if isinstance(node, Not):
            return not self.truth(self.evaluate(node.operand), node.operand, "'not'")
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Membership):
            return self.membership(node)
        if isinstance(node, Sum):
            return self.sum(node)
        if isinstance(node, Product):
            return self.product(node)
        if isinstance(node, Negate):
            value = self.evaluate(node.operand)
            if type(value) is not int:
                self.fail(node, f"'-' needs a number, found {_describe(value)}")
            return self.int_result(-value, node)
        if isinstance(node, Call):
            return self.call(node)
        # a list only stands after `in`, where `membership` reads its items
        self.fail(node, "a list [...] can only follow 'in' or 'not in'")

    def sum(self, node: Sum) -> Value:
        acc = self.evaluate(node.first)
        for op, operand in node.rest:
            right = self.evaluate(operand)
            if type(acc) is int and type(right) is int:
                acc = self.int_result(acc + right if op == "+" else acc - right, node)
            elif op == "+" and isinstance(acc, str) and isinstance(right, str):
                acc = self.text_result(acc + right, node)
            elif op == "+":
                hint = ""
                if {type(acc), type(right)} == {str, int}:
                    hint = "; turn the number into text with str(...) or the text into a number with int(...)"
                self.fail(
                    node,
                    f"'+' adds two numbers or joins two texts, found {_describe(acc)} and "
                    f"{_describe(right)}{hint}",
                )
            else:
                self.fail(
                    node, f"'-' needs two numbers, found {_describe(acc)} and {_describe(right)}"
                )
        return acc

    def product(self, node: Product) -> Value:
        acc = self.evaluate(node.first)
        for op, operand in node.rest:
            right = self.evaluate(operand)
            if type(acc) is not int or type(right) is not int:
                self.fail(
                    node,
                    f"'{op}' needs two numbers, found {_describe(acc)} and {_describe(right)}",
                )
            if op == "*":
                acc = self.int_result(acc * right, node)
            elif right == 0:
                self.fail(node, f"division by zero ('{op}' with 0 on its right)")
            else:
                acc = self.int_result(acc // right if op == "//" else acc % right, node)
        return acc

    def check_equality(self, left: Value, right: Value, node: Node, op: str) -> None:
        if left is None or right is None:
            return
        if _type_name(left) != _type_name(right):
            self.fail(
                node,
                f"cannot compare {_describe(left)} with {_describe(right)} using '{op}': "
                f"{_type_name(left)} and {_type_name(right)} are never equal (use str(...) "
                "or int(...) to convert)",
            )

    def compare(self, node: Compare) -> bool:
        left = self.evaluate(node.left)
        right = self.evaluate(node.right)
        if node.op in ("==", "!="):
            self.check_equality(left, right, node, node.op)
            same = _same(left, right)
            return same if node.op == "==" else not same
        # two branches (not one `or`) so that each narrows both sides to one type
        if type(left) is int and type(right) is int:  # noqa: SIM114
            sign = (left > right) - (left < right)
        elif isinstance(left, str) and isinstance(right, str):
            sign = (left > right) - (left < right)
        else:
            self.fail(
                node,
                f"'{node.op}' compares two numbers or two texts, found {_describe(left)} and "
                f"{_describe(right)}",
            )
        return _ORDER[node.op](sign)

    def membership(self, node: Membership) -> bool:
        item = self.evaluate(node.item)
        op = "not in" if node.negated else "in"
        if isinstance(node.container, ListOf):
            values = [self.evaluate(element) for element in node.container.items]
            for value in values:
                self.check_equality(item, value, node, op)
            found = any(_same(item, value) for value in values)
        else:
            container = self.evaluate(node.container)
            if not isinstance(container, str):
                self.fail(
                    node,
                    f"'{op}' needs a list [...] or text on its right, found {_describe(container)}",
                )
            if not isinstance(item, str):
                self.fail(
                    node,
                    f"'{op}' with text on its right needs text on its left, found "
                    f"{_describe(item)}",
                )
            found = item in container
        return not found if node.negated else found

    def call(self, node: Call) -> Value:
        args: list[Value] = []
        for index, arg in enumerate(node.args):
            if (
                index == 0
                and node.function in _LENIENT_FUNCTIONS
                and isinstance(arg, Name)
                and arg.name not in self.variables
            ):
                args.append(None)
            else:
                args.append(self.evaluate(arg))
        result = _FUNCTIONS[node.function].impl(args, self, node)
        return self.text_result(result, node) if isinstance(result, str) else result


_ORDER: dict[str, Callable[[int], bool]] = {  # by the sign of (left - right)
    "<": lambda sign: sign < 0,
    "<=": lambda sign: sign <= 0,
    ">": lambda sign: sign > 0,
    ">=": lambda sign: sign >= 0,
}


def _same(left: Value, right: Value) -> bool:
    """Equality once `check_equality` has ruled out mixed types."""
    if left is None or right is None:
        return left is None and right is None
    return left == right


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: its source, its tree and the variables it reads."""

    source: str
    node: Node = field(repr=False)
    names: frozenset[str] = field(repr=False)

    def evaluate(self, variables: Mapping[str, Value]) -> Value:
        """The value of the expression; EvalError if it cannot be computed."""
        return _Context(self.source, variables).evaluate(self.node)

    def evaluate_bool(self, variables: Mapping[str, Value]) -> bool:
        """A condition's value: EvalError unless the expression yields true or false."""
        value = self.evaluate(variables)
        if isinstance(value, bool):
            return value
        raise EvalError(f"a condition must be true or false, found {_describe(value)}")


# -- printing ------------------------------------------------------------------------------

_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _NEGATE, _ATOM = range(1, 9)


def _precedence(node: Node) -> int:
    if isinstance(node, Logic):
        return _OR if node.op == "or" else _AND
    if isinstance(node, Not):
        return _NOT
    if isinstance(node, Compare | Membership):
        return _COMPARE
    if isinstance(node, Sum):
        return _SUM
    if isinstance(node, Product):
        return _PRODUCT
    if isinstance(node, Negate):
        return _NEGATE
    return _ATOM


def _wrapped(node: Node, at_least: int) -> str:
    text = unparse(node)
    return text if _precedence(node) >= at_least else f"({text})"


def unparse(node: Node) -> str:
    """Source text for a tree, with only the parentheses it needs; parsing it gives back
    an equal tree. Text constants are printed in double quotes."""
    if isinstance(node, Constant):
        value = node.value
        if isinstance(value, str):
            escaped = (
                value.replace("\\", "\\\\")
                .replace('"', '\\"')
                .replace("\n", "\\n")
                .replace("\r", "\\r")
                .replace("\t", "\\t")
            )
            return f'"{escaped}"'
        return "null" if value is None else to_text(value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Logic):
        inner = _OR + 1 if node.op == "or" else _AND + 1
        return f" {node.op} ".join(_wrapped(o, inner) for o in node.operands)
    if isinstance(node, Not):
        return f"not {_wrapped(node.operand, _NOT)}"
    if isinstance(node, Compare):
        return f"{_wrapped(node.left, _SUM)} {node.op} {_wrapped(node.right, _SUM)}"
    if isinstance(node, Membership):
        op = "not in" if node.negated else "in"
        container = node.container
        right = unparse(container) if isinstance(container, ListOf) else _wrapped(container, _SUM)
        return f"{_wrapped(node.item, _SUM)} {op} {right}"
    if isinstance(node, Sum):
        return _wrapped(node.first, _SUM + 1) + "".join(
            f" {op} {_wrapped(operand, _SUM + 1)}" for op, operand in node.rest
        )
    if isinstance(node, Product):
        return _wrapped(node.first, _PRODUCT + 1) + "".join(
            f" {op} {_wrapped(operand, _PRODUCT + 1)}" for op, operand in node.rest
        )
    if isinstance(node, Negate):
        return f"-{_wrapped(node.operand, _NEGATE)}"
    if isinstance(node, ListOf):
        return f"[{', '.join(unparse(item) for item in node.items)}]"
    return f"{node.function}({', '.join(unparse(arg) for arg in node.args)})"


# -- templates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A text with placeholders. `parts` alternates literal text and expressions (empty
    literal parts are left out); `names` are the variables the placeholders read."""

    text: str
    parts: tuple[str | Expression, ...] = field(repr=False)
    names: frozenset[str] = field(repr=False)

    def render(self, variables: Mapping[str, Value]) -> str:
        """The text with every placeholder replaced by `to_text` of its value."""
        out: list[str] = []
        size = 0
        for part in self.parts:
            piece = part if isinstance(part, str) else to_text(part.evaluate(variables))
            size += len(piece)
            if size > MAX_STRING_LENGTH:
                raise EvalError(
                    f"the rendered text is longer than {MAX_STRING_LENGTH:,} characters"
                )
            out.append(piece)
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse a text with `{name}` / `{expression}` placeholders and `{{` / `}}` escapes;
    raise ExprError with the offset into `text` of the first problem."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise ExprError(
            f"the text is {len(text)} characters long; the limit is {MAX_TEMPLATE_LENGTH}",
            MAX_TEMPLATE_LENGTH,
            len(text) - MAX_TEMPLATE_LENGTH,
        )
    parts: list[str | Expression] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "{" and i + 1 < n and text[i + 1] == "{":
            literal.append("{")
            i += 2
        elif ch == "}":
            if i + 1 < n and text[i + 1] == "}":
                literal.append("}")
                i += 2
                continue
            raise ExprError("a single '}' must be written '}}' to appear in the text", i, 1)
        elif ch == "{":
            expression, i = _placeholder(text, i)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(expression)
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    names = frozenset(name for part in parts if isinstance(part, Expression) for name in part.names)
    return Template(text, tuple(parts), names)


def _placeholder(text: str, open_at: int) -> tuple[Expression, int]:
    """The expression of the placeholder opened at `open_at` and the index after its `}`."""
    start = open_at + 1
    if text.find("}", start) < 0:
        raise ExprError(
            "'{' is never closed: expected '}' after the placeholder (write '{{' for a "
            "literal brace)",
            open_at,
            1,
        )
    tokens = _lex(text, start, len(text), in_placeholder=True)
    end = tokens[-1]
    if end.length == 0:  # ran off the end of the text without a `}`
        raise ExprError(
            "'{' is never closed: expected '}' after the placeholder (write '{{' for a "
            "literal brace)",
            open_at,
            1,
        )
    close = end.offset
    if not text[start:close].strip():
        raise ExprError(
            "empty placeholder: put a variable name or an expression between the braces, "
            "or write '{{' for a literal brace",
            open_at,
            close + 1 - open_at,
        )
    if close - start > MAX_SOURCE_LENGTH:
        raise ExprError(
            f"the placeholder is {close - start} characters long; the limit is {MAX_SOURCE_LENGTH}",
            start,
            close - start,
        )
    parser = _Parser(text, tokens)
    node = parser.parse_all()
    source = text[start:close]
    # offsets in the tree are relative to the expression's own source, as with `parse`
    return Expression(source, _shift(node, -start), frozenset(_names(node))), close + 1


def _shift(node: Node, delta: int) -> Node:
    """The same tree with every source offset moved by `delta`."""
    offset = node.offset + delta
    if isinstance(node, Constant):
        return Constant(node.value, offset, node.length)
    if isinstance(node, Name):
        return Name(node.name, offset, node.length)
    if isinstance(node, Negate):
        return Negate(_shift(node.operand, delta), offset, node.length)
    if isinstance(node, Not):
        return Not(_shift(node.operand, delta), offset, node.length)
    if isinstance(node, Sum):
        return Sum(
            _shift(node.first, delta),
            tuple((op, _shift(o, delta)) for op, o in node.rest),
            offset,
            node.length,
        )
    if isinstance(node, Product):
        return Product(
            _shift(node.first, delta),
            tuple((op, _shift(o, delta)) for op, o in node.rest),
            offset,
            node.length,
        )
    if isinstance(node, Logic):
        return Logic(node.op, tuple(_shift(o, delta) for o in node.operands), offset, node.length)
    if isinstance(node, Compare):
        return Compare(
            node.op, _shift(node.left, delta), _shift(node.right, delta), offset, node.length
        )
    if isinstance(node, Membership):
        return Membership(
            _shift(node.item, delta),
            _shift(node.container, delta),
            node.negated,
            offset,
            node.length,
        )
    if isinstance(node, ListOf):
        return ListOf(tuple(_shift(i, delta) for i in node.items), offset, node.length)
    return Call(node.function, tuple(_shift(a, delta) for a in node.args), offset, node.length)
