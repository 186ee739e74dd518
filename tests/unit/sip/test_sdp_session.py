"""MediaSession: answer, offer-in-2xx/answer-in-ACK, re-INVITE versions, refusals."""

from __future__ import annotations

import pytest

from hotline.sip.sdp import Codec, SessionDescription
from hotline.sip.sdp_session import MediaSession, SdpRejected
from tests.unit.sip.sipfake import SDP_OFFER


def test_answer_then_hold_reoffer_bumps_version() -> None:
    s = MediaSession("198.51.100.1", 20000)
    first = SessionDescription.parse(s.answer_or_offer(SDP_OFFER))
    assert s.media is not None and s.media.codec is Codec.PCMU and s.media.telephone_event == 101
    assert first.media[0].port == 20000
    hold = SDP_OFFER.replace(b"a=fmtp", b"a=sendonly\r\na=fmtp")
    second = SessionDescription.parse(s.answer_or_offer(hold))
    assert second.origin.session_version == first.origin.session_version + 1
    assert s.media is not None and not s.media.sends
    # The same offer again changes nothing: same version.
    third = SessionDescription.parse(s.answer_or_offer(hold))
    assert third.origin.session_version == second.origin.session_version


def test_offer_in_2xx_answer_in_ack() -> None:
    s = MediaSession("198.51.100.1", 20002)
    offer = SessionDescription.parse(s.answer_or_offer(None))
    assert offer.media[0].payload_types[:2] == [0, 8]
    answer = SDP_OFFER.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 101")
    media = s.accept_answer(answer)
    assert media.remote_port == 40000 and media.codec is Codec.PCMU


def test_refusals_carry_status() -> None:
    s = MediaSession("198.51.100.1", 20004)
    with pytest.raises(SdpRejected) as info:
        s.answer_or_offer(SDP_OFFER.replace(b"RTP/AVP 0 101", b"RTP/AVP 18"))
    assert info.value.status == 488
    with pytest.raises(SdpRejected) as info:
        s.answer_or_offer(b"v=0\r\nbogus\r\n")
    assert info.value.status == 400
    with pytest.raises(SdpRejected) as info:
        s.accept_answer(SDP_OFFER)
    assert info.value.status == 400
