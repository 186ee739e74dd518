"""The browser agent's WebSocket protocol: what the page may send (validated into typed
messages), the screen pop read from an offered call's X-Hotline-* headers, the login
throttle and the same-origin rule for the WebSocket upgrade.

Messages are JSON objects with a "type". The page sends:

    {"type": "login", "username": "bob", "password": "..."}
    {"type": "logout"}
    {"type": "accept", "call": "<id>", "sdp": "<WebRTC offer>"}
    {"type": "reject", "call": "<id>"}
    {"type": "hangup", "call": "<id>"}
    {"type": "mute", "call": "<id>", "muted": true}

and receives `registered`, `login_failed`, `registration_failed`, `logged_out`,
`ringing` (with the screen pop), `answer` (the WebRTC answer), `connected`, `cancelled`,
`ended` and `error` (see hotline/web/webrtc_gateway.py, which sends them).

Owns: the limits on every field (sizes, characters), the precise message of each refusal
(`ProtocolError`), and which X-Hotline-* header becomes which screen-pop field. Values the
engine masked stay masked; nothing here logs. Must not know: sockets, SIP transactions,
WebRTC, the clock (the throttle takes `now`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hotline.sip.ratelimit import RateLimiter

__all__ = [
    "MAX_MESSAGE",
    "Accept",
    "ClientMessage",
    "Hangup",
    "Login",
    "LoginThrottle",
    "Logout",
    "Mute",
    "ProtocolError",
    "Reject",
    "ScreenPop",
    "origin_allowed",
    "parse_client_message",
    "screen_pop",
]

MAX_MESSAGE = 64 * 1024  # bytes of one WebSocket message from the page
MAX_SDP = 48 * 1024  # characters of a WebRTC offer
MAX_PASSWORD = 128  # characters
MAX_CALL_ID = 64  # characters of a call id (ours are much shorter)
MAX_POP_FIELDS = 64  # X-Hotline-Var-* headers passed to the page
MAX_POP_VALUE = 256  # characters of one screen-pop value passed to the page
LOGIN_ATTEMPTS = 5  # per WebSocket ...
LOGIN_WINDOW = 60.0  # ... per this many seconds
LOGIN_ATTEMPTS_PER_ADDRESS = 10  # per remote address, per LOGIN_WINDOW
# A SIP user part we put in a URI unescaped: letters, digits and the unreserved marks.
_USERNAME = re.compile(r"[A-Za-z0-9._~+-]{1,64}")
_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_POP_PREFIX = "x-hotline-"
_VAR_PREFIX = "x-hotline-var-"


class ProtocolError(ValueError):
    """A message from the page that cannot be acted on; the text is sent back as is."""


@dataclass(frozen=True)
class Login:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Logout:
    pass


@dataclass(frozen=True)
class Accept:
    call: str
    sdp: str = field(repr=False)


@dataclass(frozen=True)
class Reject:
    call: str


@dataclass(frozen=True)
class Hangup:
    call: str


@dataclass(frozen=True)
class Mute:
    call: str
    muted: bool


ClientMessage = Login | Logout | Accept | Reject | Hangup | Mute
_FIELDS: dict[str, frozenset[str]] = {
    "login": frozenset({"username", "password"}),
    "logout": frozenset(),
    "accept": frozenset({"call", "sdp"}),
    "reject": frozenset({"call"}),
    "hangup": frozenset({"call"}),
    "mute": frozenset({"call", "muted"}),
}


def _string(data: dict[str, Any], name: str, kind: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        found = "nothing" if value is None else type(value).__name__
        raise ProtocolError(f"{kind}: expected a string in {name!r}, found {found}")
    return value


def _call_id(data: dict[str, Any], kind: str) -> str:
    value = _string(data, "call", kind)
    if not _CALL_ID.fullmatch(value):
        raise ProtocolError(f"{kind}: 'call' must be 1-{MAX_CALL_ID} letters, digits, '-' or '_'")
    return value


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """One message from the page, checked field by field; `ProtocolError` says what is
    wrong (never echoing a password)."""
    if len(raw) > MAX_MESSAGE:
        raise ProtocolError(f"message too large: {len(raw)} bytes, at most {MAX_MESSAGE}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, found {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        known = ", ".join(sorted(_FIELDS))
        shown = kind if isinstance(kind, str) and len(kind) <= 32 else type(kind).__name__
        raise ProtocolError(f"unknown message type {shown!r}: expected one of {known}")
    extra = set(data) - _FIELDS[kind] - {"type"}
    if extra:
        names = ", ".join(sorted(repr(n)[:40] for n in extra)[:5])
        raise ProtocolError(f"{kind}: unexpected field(s) {names}")
    if kind == "login":
        username = _string(data, "username", kind)
        if not _USERNAME.fullmatch(username):
            raise ProtocolError("login: the username must be 1-64 letters, digits or . _ ~ + -")
        password = _string(data, "password", kind)
        if not 0 < len(password) <= MAX_PASSWORD:
            raise ProtocolError(f"login: the password must be 1-{MAX_PASSWORD} characters")
        if _CONTROL.search(password):
            raise ProtocolError("login: the password must not contain control characters")
        return Login(username, password)
    if kind == "logout":
        return Logout()
    call = _call_id(data, kind)
    if kind == "accept":
        sdp = _string(data, "sdp", kind)
        if not sdp.strip():
            raise ProtocolError("accept: 'sdp' is empty")
        if len(sdp) > MAX_SDP:
            raise ProtocolError(f"accept: 'sdp' is {len(sdp)} characters, at most {MAX_SDP}")
        if not sdp.startswith("v=0"):
            raise ProtocolError("accept: 'sdp' is not a session description (no v=0 line)")
        return Accept(call, sdp)
    if kind == "reject":
        return Reject(call)
    if kind == "hangup":
        return Hangup(call)
    muted = data.get("muted")
    if not isinstance(muted, bool):
        raise ProtocolError("mute: expected true or false in 'muted'")
    return Mute(call, muted)


# -- the screen pop ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScreenPop:
    """What the engine told the agent's phone about an offered call."""

    queue: str | None = None
    waited: int | None = None  # seconds the caller waited
    priority: int | None = None
    caller: str | None = None
    call_ref: str | None = None  # the engine's call id (X-Hotline-Call-ID / X-Hotline-Call)
    callback: str | None = None
    display: str | None = None  # the From display name ("Hotline help")
    variables: tuple[tuple[str, str], ...] = ()  # in the order they were attached
    context: tuple[tuple[str, str], ...] = ()  # other X-Hotline-* (consult, monitor, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "waited": self.waited,
            "priority": self.priority,
            "caller": self.caller,
            "call_ref": self.call_ref,
            "callback": self.callback,
            "display": self.display,
            "variables": [[k, v] for k, v in self.variables],
            "context": dict(self.context),
        }


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()[:MAX_POP_VALUE]


def _int(value: str) -> int | None:
    text = value.strip()
    if re.fullmatch(r"-?[0-9]{1,9}", text):
        return int(text)
    return None


def screen_pop(headers: Iterable[tuple[str, str]], display: str | None = None) -> ScreenPop:
    """The screen pop of an INVITE's headers. Values are passed on as the engine wrote
    them (sensitive ones are already masked there), control characters removed, each cut
    at 256 characters, at most 64 variables."""
    fields: dict[str, str] = {}
    variables: list[tuple[str, str]] = []
    context: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if not lower.startswith(_POP_PREFIX):
            continue
        text = _clean(value)
        if lower.startswith(_VAR_PREFIX):
            if len(variables) < MAX_POP_FIELDS:
                variables.append((_clean(name[len(_VAR_PREFIX) :])[:64], text))
            continue
        key = lower[len(_POP_PREFIX) :]
        if key in ("call-id", "queue", "waited", "priority", "caller", "callback"):
            fields.setdefault(key, text)
        elif key == "call":
            fields.setdefault("call-id", text)
        elif len(context) < MAX_POP_FIELDS:
            context.append((key[:64], text))
    waited = fields.get("waited")
    priority = fields.get("priority")
    return ScreenPop(
        queue=fields.get("queue"),
        waited=_int(waited) if waited is not None else None,
        priority=_int(priority) if priority is not None else None,
        caller=fields.get("caller"),
        call_ref=fields.get("call-id"),
        callback=fields.get("callback"),
        display=_clean(display) if display else None,
        variables=tuple(variables),
        context=tuple(context),
    )


# -- logins and origins ----------------------------------------------------------------


class LoginThrottle:
    """Login attempts allowed per WebSocket (5 a minute) and per remote address (10 a
    minute): every REGISTER the gateway sends comes from one address, so the engine's
    own per-source failure throttle would otherwise lock every agent out at once."""

    def __init__(
        self,
        *,
        per_socket: int = LOGIN_ATTEMPTS,
        per_address: int = LOGIN_ATTEMPTS_PER_ADDRESS,
        window: float = LOGIN_WINDOW,
    ) -> None:
        self._sockets = RateLimiter(per_socket / window, per_socket, max_keys=10_000)
        self._addresses = RateLimiter(per_address / window, per_address, max_keys=10_000)

    def attempt(self, socket_key: Hashable, address: str, now: float) -> float:
        """Spend an attempt; 0 if allowed, else the seconds to wait (nothing spent)."""
        wait = max(
            self._sockets.retry_after(socket_key, now), self._addresses.retry_after(address, now)
        )
        if wait > 1e-6:  # the limiter allows within a rounding epsilon; so do we
            return wait
        self._sockets.allow(socket_key, now)
        self._addresses.allow(address, now)
        return 0.0


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """The WebSocket upgrade's Origin names the page's own host (a page elsewhere must
    not drive an agent's session); no Origin at all is a non-browser client."""
    if origin is None:
        return True
    if host is None:
        return False
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host.strip().lower()
