"""Sans-IO RTP and RTCP for hotline's media plane.

Owns the RTP packet format (`packet`), sequence/timestamp wrap arithmetic and RFC 3550
source validation (`seq`), per-leg receive and send state (`stream`), RTCP reports and
call-quality figures (`rtcp`) and RFC 4733 telephone-events (`telephone_event`). A
jitter buffer and loss concealment join this package later.

Nothing here opens sockets, starts tasks or reads a clock: callers pass datagrams and
`now` in, and get values, events and deadlines back. Audio decoding and mixing belong
to `hotline.media`; sockets and timers to `hotline.engine`.
"""

from __future__ import annotations

from hotline.rtp.packet import HeaderExtension, RtpError, RtpHeader, RtpPacket, parse_header
from hotline.rtp.rtcp import CallQuality, RtcpError, RtcpSession, parse_compound
from hotline.rtp.stream import (
    ResyncReason,
    RtpArrival,
    RtpReceiver,
    RtpSender,
    SymmetricLatch,
)
from hotline.rtp.telephone_event import (
    DigitEnded,
    DigitStarted,
    DtmfEventReceiver,
    DtmfEventSender,
)

__all__ = [
    "CallQuality",
    "DigitEnded",
    "DigitStarted",
    "DtmfEventReceiver",
    "DtmfEventSender",
    "HeaderExtension",
    "ResyncReason",
    "RtcpError",
    "RtcpSession",
    "RtpArrival",
    "RtpError",
    "RtpHeader",
    "RtpPacket",
    "RtpReceiver",
    "RtpSender",
    "SymmetricLatch",
    "parse_compound",
    "parse_header",
]
