"""SIP error values raised by the sans-IO core.

Owns the exception types that carry a *status hint*: the response the edge should send
for a request that cannot be processed (400, 416, 420, 481, 488, 501, 505, ...), or
``None`` when the right reaction is a silent drop (a malformed response, RFC 3261 §18.1.2).
Must not know about transports or sockets: the endpoint turns these into responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hotline.sip.message import Request


class SipError(Exception):
    """Base class of every error raised by hotline.sip."""


class ParseError(SipError):
    """A message (or part of one) that does not follow the SIP grammar.

    ``status`` is the response a UAS should send (``None``: drop silently); ``partial``
    is whatever request could be recovered, so a stateless error response can copy
    Via, From, To, Call-ID and CSeq.
    """

    def __init__(
        self,
        reason: str,
        status: int | None = 400,
        *,
        partial: Request | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial

    def with_partial(self, partial: Request | None) -> ParseError:
        self.partial = partial
        return self


class FramingError(ParseError):
    """A stream cannot be framed any further (bad or conflicting Content-Length,
    oversized message): the connection must be closed after the error response."""
