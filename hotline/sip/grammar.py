"""Lexical building blocks of RFC 3261 §25: character classes, a scanner over an
unfolded header value, quoted strings and generic parameters.

Owns nothing but text: it does not know what a Via or a URI means. Every failure is a
`ParseError` whose message says what was expected and what was found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from hotline.sip.errors import ParseError

ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN_CHARS = frozenset(ALPHANUM + "-.!%*_+`'~")
WS = " \t"
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$")


def is_token(text: str) -> bool:
    return bool(text) and _TOKEN_RE.fullmatch(text) is not None


def is_host(text: str) -> bool:
    """hostname / IPv4address / IPv6reference (tolerant of RFC 5118 §4.10's 3 colons)."""
    return bool(text) and _HOST_RE.match(text) is not None and ".." not in text


def show(text: str, limit: int = 40) -> str:
    """Quote a fragment of input for an error message, shortened and made printable."""
    frag = text if len(text) <= limit else text[:limit] + "…"
    return repr(frag)


class Scanner:
    """A cursor over one header value (already unfolded: CRLF+WSP became SP)."""

    __slots__ = ("pos", "text", "what")
    error_type: type[ParseError] = ParseError  # subclasses raise their own kind

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def error(self, expected: str) -> ParseError:
        rest = self.text[self.pos :]
        found = show(rest) if rest else "end of value"
        return self.error_type(f"{self.what}: expected {expected}, found {found}")

    def match(self, pattern: re.Pattern[str]) -> str | None:
        """The text `pattern` matches at the cursor (the cursor does not move)."""
        m = pattern.match(self.text, self.pos)
        return m.group() if m else None

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> bool:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in WS:
            self.pos += 1
        return self.pos > start

    def accept(self, ch: str) -> bool:
        """Skip LWS, then consume `ch` (and LWS after it) if present."""
        save = self.pos
        self.skip_ws()
        if self.peek() == ch:
            self.pos += 1
            self.skip_ws()
            return True
        self.pos = save
        return False

    def expect(self, ch: str, expected: str | None = None) -> None:
        if not self.accept(ch):
            self.skip_ws()
            raise self.error(expected or repr(ch))

    def token(self, expected: str = "a token") -> str:
        m = _TOKEN_RE.match(self.text, self.pos)
        if m is None:
            raise self.error(expected)
        self.pos = m.end()
        return m.group()

    def quoted_string(self) -> str:
        """Consume a quoted-string and return it *with* its quotes, escapes intact."""
        text = self.text
        if self.peek() != '"':
            raise self.error("'\"'")
        i = self.pos + 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text):
                    break
                i += 2
                continue
            if c == '"':
                out = text[self.pos : i + 1]
                self.pos = i + 1
                return out
            i += 1
        raise ParseError(f"{self.what}: unterminated quoted string {show(text[self.pos:])}")

    def until(self, stops: str) -> str:
        """Consume up to (not including) the first character in `stops`, or the end."""
        text = self.text
        i = self.pos
        while i < len(text) and text[i] not in stops:
            i += 1
        out = text[self.pos : i]
        self.pos = i
        return out

    def rest(self) -> str:
        out = self.text[self.pos :]
        self.pos = len(self.text)
        return out


def unquote(value: str) -> str:
    """The content of a quoted-string (quotes removed, backslash escapes resolved);
    a value that is not quoted is returned unchanged."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)
    return value


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Params:
    """Ordered generic parameters (``;name=value``), names compared case-insensitively.

    Values are kept as written (quoted strings keep their quotes) so a message
    re-serialises as it came; ``None`` is a parameter without ``=value``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items: list[tuple[str, str | None]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for k, v in self._items:
            if k.lower() == low:
                return v
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = name.lower()
        return any(k.lower() == low for k, _ in self._items)

    def set(self, name: str, value: str | None) -> None:
        low = name.lower()
        for i, (k, _) in enumerate(self._items):
            if k.lower() == low:
                self._items[i] = (k, value)
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        low = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def items(self) -> list[tuple[str, str | None]]:
        return list(self._items)

    def copy(self) -> Params:
        return Params(self._items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(self._items))

    def __repr__(self) -> str:
        return f"Params({self._items!r})"

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self._items)


def parse_params(sc: Scanner, *, stop: str = "") -> Params:
    """Parse ``*( SEMI generic-param )`` from the scanner's position.

    generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
    Empty parameters (``;;``) are an error.
    """
    params = Params()
    while True:
        save = sc.pos
        sc.skip_ws()
        if sc.peek() != ";":
            sc.pos = save
            return params
        sc.pos += 1
        sc.skip_ws()
        name = sc.token("a parameter name after ';'")
        value: str | None = None
        if sc.accept("="):
            if sc.peek() == '"':
                value = sc.quoted_string()
            else:
                value = sc.until(";," + WS + stop)
                if not value:
                    raise sc.error(f"a value for parameter {name!r}")
                if not all(c in TOKEN_CHARS or c in "[]:" for c in value):
                    raise ParseError(f"{sc.what}: parameter {name!r} has an invalid value {show(value)}")
        params._items.append((name, value))


def split_commas(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    out: list[str] = []
    depth = 0
    in_quote = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out
