"""One call leg's offer/answer state (RFC 3264): the last SDP we sent, the current
negotiated media, and the answer-or-offer decision for INVITE, re-INVITE, UPDATE and
ACK bodies.

Owns nothing but SDP state of one leg; the endpoint moves the bytes, the engine moves
the media. Every refusal is an `SdpRejected` carrying the SIP status to answer with.
"""

from __future__ import annotations

import zlib

from hotline.sip.sdp import (
    Answer,
    MediaCapabilities,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
)


class SdpRejected(Exception):
    """An offer or answer we cannot take; `status` is the SIP response (400 or 488)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class MediaSession:
    def __init__(self, address: str, port: int, *, session_id: int | None = None) -> None:
        self.caps = MediaCapabilities(address, port)
        # A stable, per-leg session id derived from the port keeps the core clock-free.
        self.session_id = session_id if session_id is not None else zlib.crc32(
            f"{address}:{port}".encode()) + 1
        self.local: SessionDescription | None = None  # the last SDP we sent
        self.pending_offer: SessionDescription | None = None  # our offer awaiting answer
        self.media: NegotiatedMedia | None = None

    def _origin(self) -> tuple[int | None, int | None]:
        """Session id and version for our first SDP; afterwards `previous` carries them."""
        return (None, None) if self.local else (self.session_id, 1)

    def answer_or_offer(self, sdp: bytes | None) -> bytes:
        """The body for our 2xx: an answer to `sdp`, or our offer when there was none."""
        if sdp is None:
            sid, ver = self._origin()
            offer = build_offer(self.caps, previous=self.local, session_id=sid,
                                session_version=ver)
            self.local = offer
            self.pending_offer = offer
            return offer.serialize()
        try:
            parsed = SessionDescription.parse(sdp)
        except SdpError as exc:
            raise SdpRejected(400, f"malformed SDP: {exc}") from None
        try:
            sid, ver = self._origin()
            answer: Answer = negotiate_answer(parsed, self.caps, previous=self.local,
                                              session_id=sid, session_version=ver)
        except NoCommonCodec as exc:
            raise SdpRejected(488, str(exc)) from None
        except SdpError as exc:
            raise SdpRejected(488, str(exc)) from None
        self.local = answer.sdp
        self.pending_offer = None
        self.media = answer.media
        return answer.sdp.serialize()

    def accept_answer(self, sdp: bytes) -> NegotiatedMedia:
        """The peer's answer (in an ACK or a 2xx) to our pending offer."""
        if self.pending_offer is None:
            raise SdpRejected(400, "SDP answer without an offer of ours")
        try:
            media = accept_answer(self.pending_offer, SessionDescription.parse(sdp), self.caps)
        except NoCommonCodec as exc:
            raise SdpRejected(488, str(exc)) from None
        except SdpError as exc:
            raise SdpRejected(400, f"bad SDP answer: {exc}") from None
        self.pending_offer = None
        self.media = media
        return media
