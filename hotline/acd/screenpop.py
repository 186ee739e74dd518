"""Screen pop: the SIP headers that carry a queued call's facts to the agent's phone.

Owns the header names and how values are made safe for a header: variables become
`X-Hotline-Var-<name>` headers in the order they were attached; sensitive ones are
masked (a long value keeps its last three characters, enough to tell two apart; a short
one — a PIN — is masked whole); control characters (CR, LF — header injection) are
replaced by spaces; values are cut at `MAX_VALUE` characters and at most `MAX_VARIABLES`
variables are sent. Must not know: SIP messages, queues' rules, the clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Value = bool | int | str | None
MASK = "*"
MAX_VALUE = 200
MAX_VARIABLES = 40
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def mask(value: str) -> str:
    return MASK * (len(value) - 3) + value[-3:] if len(value) >= 8 else MASK * len(value)


def header_value(value: Value) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    else:
        text = str(value)
    return _CONTROL.sub(" ", text).strip()[:MAX_VALUE]


def header_name(variable: str) -> str:
    return "X-Hotline-Var-" + (_NOT_TOKEN.sub("-", variable)[:60] or "-")


def screen_pop(
    *,
    call_id: str,
    queue: str,
    waited: float,
    priority: int,
    caller: str = "",
    variables: Mapping[str, Value] | None = None,
    sensitive: frozenset[str] = frozenset(),
    callback_id: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """The headers for an offer (INVITE to the agent) or a callback."""
    headers: list[tuple[str, str]] = [
        ("X-Hotline-Call-ID", header_value(call_id)),
        ("X-Hotline-Queue", header_value(queue)),
        ("X-Hotline-Waited", str(max(0, round(waited)))),
        ("X-Hotline-Priority", str(priority)),
    ]
    if caller:
        headers.append(("X-Hotline-Caller", header_value(caller)))
    if callback_id is not None:
        headers.append(("X-Hotline-Callback", header_value(callback_id)))
    for i, (name, value) in enumerate((variables or {}).items()):
        if i >= MAX_VARIABLES:
            break
        text = header_value(value)
        if name in sensitive and text:
            text = mask(text)
        headers.append((header_name(name), text))
    return tuple(headers)
