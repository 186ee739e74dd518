"""SDP parse/serialize and offer/answer (hotline.sip.sdp): captured offers from real
phones, softphones, trunks and test tools; every parse error message; the RFC 3264
answer rules; our own offers and the answers to them; session versions across
re-INVITEs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotline.sip.errors import SipError
from hotline.sip.sdp import (
    Answer,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaCapabilities,
    MediaChange,
    MediaDescription,
    NegotiatedMedia,
    NoCommonCodec,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpError,
    SdpLine,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
)

DATA = Path(__file__).resolve().parents[2] / "data"
SDP_DIR = DATA / "sdp"
TORTURE = DATA / "sip-torture" / "rfc5118"

CAPS = MediaCapabilities("192.0.2.10", 40000)
S, R, SR, IA = Direction.SENDONLY, Direction.RECVONLY, Direction.SENDRECV, Direction.INACTIVE


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((SDP_DIR / name).read_bytes())


def answer_to(offer: SessionDescription | str, caps: MediaCapabilities = CAPS,
              **kw: object) -> Answer:
    if isinstance(offer, str):
        offer = SessionDescription.parse(offer)
    kw.setdefault("session_id", 7)
    kw.setdefault("session_version", 1)
    return negotiate_answer(offer, caps, **kw)  # type: ignore[arg-type]


HEAD = ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n")


def offer_text(media: str, head: str = HEAD) -> str:
    return head + media


# -- captured offers --------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    address: str
    port: int
    rtcp_address: str
    rtcp_port: int
    codec: Codec
    payload_type: int
    telephone_event: int | None
    ptime: int
    direction: Direction
    m_lines: int = 1
    index: int = 0


FIXTURES: dict[str, Expect | str] = {
    # Yealink T46U: static G.711 with rtpmaps, G722, G729, te/101 after a=sendrecv.
    "yealink_t46u.sdp": Expect("192.168.1.71", 11796, "192.168.1.71", 11797,
                               Codec.PCMU, 0, 101, 20, SR),
    # The same phone pressing Hold: re-INVITE with a=sendonly (RFC 3264 §8.4).
    "yealink_hold_sendonly.sdp": Expect("192.168.1.71", 11796, "192.168.1.71", 11797,
                                        Codec.PCMU, 0, 101, 20, R),
    # Polycom VVX: G722 and G.722.1 first, session-level a=sendrecv, te at 127.
    "polycom_vvx.sdp": Expect("10.20.0.45", 2226, "10.20.0.45", 2227,
                              Codec.PCMU, 0, 127, 20, SR),
    # Linphone: opus/speex first, G.711 without rtpmap, te at 48k/16k/8k, a=rtcp:<port>.
    "linphone.sdp": Expect("192.168.1.23", 7078, "192.168.1.23", 7079,
                           Codec.PCMU, 0, 100, 20, SR),
    # baresip: many codecs, PCMU/8000/1 with a channel count, a=rtcp-mux (we do not mux).
    "baresip.sdp": Expect("192.168.1.42", 10318, "192.168.1.42", 10319,
                          Codec.PCMU, 0, 101, 20, SR),
    # MicroSIP (pjsip): PCMA first, c= only at media level, a=rtcp with its address.
    "microsip.sdp": Expect("192.168.1.77", 4002, "192.168.1.77", 4003,
                           Codec.PCMA, 8, 101, 20, SR),
    # pyVoIP 1.6.8 VoIPPhone.call(): PCMU + te/101, ptime 20, maxptime 150, sendrecv last.
    "pyvoip.sdp": Expect("192.168.1.60", 10522, "192.168.1.60", 10523,
                         Codec.PCMU, 0, 101, 20, SR),
    # SIPp's built-in uac scenario with -mp 6000: PCMU only, no telephone-event.
    "sipp_uac.sdp": Expect("127.0.1.1", 6000, "127.0.1.1", 6001, Codec.PCMU, 0, None, 20, SR),
    # SIPp pcap-play style: PCMA + te/101 (events 0-11,16), 30 ms packets.
    "sipp_pcap_g711a_ptime30.sdp": Expect("127.0.1.1", 6000, "127.0.1.1", 6001,
                                          Codec.PCMA, 8, 101, 30, SR),
    # Asterisk (chan_pjsip) trunk.
    "asterisk_trunk.sdp": Expect("203.0.113.10", 13876, "203.0.113.10", 13877,
                                 Codec.PCMU, 0, 101, 20, SR),
    # FreeSWITCH trunk: G722, PCMA, PCMU order, CN, a=rtcp with address.
    "freeswitch_trunk.sdp": Expect("198.51.100.7", 21814, "198.51.100.7", 21815,
                                   Codec.PCMA, 8, 101, 20, SR),
    # FreeSWITCH holding a call that was already on hold: a=inactive.
    "freeswitch_hold_inactive.sdp": Expect("198.51.100.7", 21814, "198.51.100.7", 21815,
                                           Codec.PCMA, 8, 101, 20, IA),
    # A browser behind a media gateway (RTP/AVP): opus first, te at 48k (110) and 8k (126).
    "webrtc_gateway_opus_first.sdp": Expect("192.0.2.80", 30050, "192.0.2.80", 30051,
                                            Codec.PCMU, 0, 126, 20, SR),
    # A browser's own offer: DTLS-SRTP with ICE, which this engine does not speak.
    "webrtc_browser_dtls.sdp": "no acceptable audio stream in the SDP offer: stream 1: "
                               "transport 'UDP/TLS/RTP/SAVPF' is not RTP/AVP",
    "g729_only.sdp": "no acceptable audio stream in the SDP offer: stream 1: no common codec "
                     "(offered 18 G729/8000, 101 telephone-event/8000; "
                     "we support PCMU/8000, PCMA/8000)",
    # Grandstream with RFC 2543 hold: c=IN IP4 0.0.0.0, sendrecv.
    "grandstream_hold_0000.sdp": Expect("0.0.0.0", 5004, "0.0.0.0", 5005,
                                        Codec.PCMU, 0, 101, 20, R),
    # snom over IPv6, lower-case encoding names.
    "snom_ipv6.sdp": Expect("2001:db8:10::25", 62012, "2001:db8:10::25", 62013,
                            Codec.PCMU, 0, 101, 20, SR),
    # A gateway putting telephone-event at 96.
    "gateway_telephone_event_96.sdp": Expect("198.51.100.40", 17390, "198.51.100.40", 17391,
                                             Codec.PCMA, 8, 96, 20, SR),
    # Zoiper with video: the video m-line is answered with port 0.
    "zoiper_audio_video.sdp": Expect("192.168.1.64", 8000, "192.168.1.64", 8001,
                                     Codec.PCMU, 0, 101, 20, SR, m_lines=2),
}


def test_every_fixture_file_has_an_expectation() -> None:
    on_disk = {p.name for p in SDP_DIR.glob("*.sdp")}
    assert on_disk == set(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_serializes_back_byte_for_byte(name: str) -> None:
    raw = (SDP_DIR / name).read_bytes()
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # whatever the checkout did
    sdp = SessionDescription.parse(raw)
    assert sdp.serialize() == raw
    assert SessionDescription.parse(sdp.serialize()) == sdp


@pytest.mark.parametrize("name", sorted(n for n, e in FIXTURES.items() if isinstance(e, Expect)))
def test_fixture_negotiates(name: str) -> None:
    exp = FIXTURES[name]
    assert isinstance(exp, Expect)
    offer = load(name)
    answer = answer_to(offer)
    m = answer.media
    assert (m.remote_address, m.remote_port) == (exp.address, exp.port)
    assert (m.remote_rtcp_address, m.remote_rtcp_port) == (exp.rtcp_address, exp.rtcp_port)
    assert (m.codec, m.payload_type) == (exp.codec, exp.payload_type)
    assert m.telephone_event == exp.telephone_event
    assert m.receive_telephone_event == exp.telephone_event
    assert m.receive_codecs == ((exp.payload_type, exp.codec),)
    assert m.ptime == exp.ptime
    assert m.direction is exp.direction
    assert m.stream_index == exp.index
    assert not m.rtcp_mux

    # the answer: same m-line count and media types, only our audio stream open
    sdp = answer.sdp
    assert len(sdp.media) == len(offer.media) == exp.m_lines
    assert [x.media for x in sdp.media] == [x.media for x in offer.media]
    assert [x.port for x in sdp.media] == [40000 if i == exp.index else 0
                                           for i in range(exp.m_lines)]
    audio = sdp.media[exp.index]
    te = [] if exp.telephone_event is None else [str(exp.telephone_event)]
    assert audio.formats == [str(exp.payload_type), *te]
    assert audio.rtpmap(exp.payload_type) == RtpMap(exp.payload_type, exp.codec.value, 8000)
    if exp.telephone_event is not None:
        assert audio.rtpmap(exp.telephone_event) == RtpMap(exp.telephone_event,
                                                           "telephone-event", 8000)
        assert audio.fmtp(exp.telephone_event) == "0-15"
    assert audio.ptime == exp.ptime
    assert audio.direction is exp.direction
    assert sdp.connection == Connection("192.0.2.10", "IP4")
    assert SessionDescription.parse(sdp.serialize()) == sdp


@pytest.mark.parametrize("name", sorted(n for n, e in FIXTURES.items() if isinstance(e, str)))
def test_fixture_has_no_common_codec(name: str) -> None:
    with pytest.raises(NoCommonCodec) as err:
        answer_to(load(name))
    assert err.value.reason == FIXTURES[name]
    assert err.value.status == 488


def test_yealink_answer_text() -> None:
    answer = answer_to(load("yealink_t46u.sdp"))
    assert answer.sdp.serialize() == (
        b"v=0\r\n"
        b"o=hotline 7 1 IN IP4 192.0.2.10\r\n"
        b"s=hotline\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_audio_video_answer_rejects_video_keeping_its_formats() -> None:
    answer = answer_to(load("zoiper_audio_video.sdp"))
    assert list(answer.sdp.lines())[-7:] == [
        "m=audio 40000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
        "m=video 0 RTP/AVP 99 100",
    ]


def test_baresip_rtcp_mux_when_we_support_it() -> None:
    caps = dataclasses.replace(CAPS, rtcp_mux=True)
    answer = answer_to(load("baresip.sdp"), caps)
    assert answer.media.rtcp_mux
    assert (answer.media.remote_rtcp_address, answer.media.remote_rtcp_port) == (
        "192.168.1.42", 10318)
    assert answer.sdp.media[0].rtcp_mux
    # and a mux-capable engine facing a peer that does not mux
    plain = answer_to(load("pyvoip.sdp"), caps)
    assert not plain.media.rtcp_mux and not plain.sdp.media[0].rtcp_mux
    assert plain.media.remote_rtcp_port == 10523


def test_snom_ipv6_answered_from_an_ipv6_address() -> None:
    caps = MediaCapabilities("2001:db8::10", 40002)
    answer = answer_to(load("snom_ipv6.sdp"), caps)
    text = answer.sdp.serialize()
    assert b"o=hotline 7 1 IN IP6 2001:db8::10\r\n" in text
    assert b"c=IN IP6 2001:db8::10\r\n" in text
    assert b"a=rtpmap:0 PCMU/8000\r\n" in text  # canonical name, not the offer's "pcmu"


def test_old_style_hold_means_we_send_nothing() -> None:
    media = answer_to(load("grandstream_hold_0000.sdp")).media
    assert not media.sends and media.receives


# -- parsing: the model and its typed views ---------------------------------------------


def test_parse_linphone_views() -> None:
    sdp = load("linphone.sdp")
    assert sdp.version == 0
    assert sdp.origin == Origin("alice", "1982", 3318, "IN", "IP4", "192.168.1.23")
    assert sdp.name == "Talk"
    assert sdp.other_lines == [SdpLine("t", "0 0")]
    assert sdp.attributes[0] == Attribute(
        "rtcp-xr", "rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics")
    assert sdp.attribute("record") == "off"
    [audio] = sdp.media
    assert audio.payload_types == [96, 97, 98, 0, 8, 18, 101, 99, 100]
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)  # static, no rtpmap line
    assert audio.rtpmap(18) == RtpMap(18, "G729", 8000)
    assert audio.rtpmap(96) == RtpMap(96, "opus", 48000, 2)
    assert audio.rtpmap(120) is None
    assert audio.fmtp(18) == "annexb=yes"
    assert audio.fmtp("96") == "useinbandfec=1"
    assert audio.fmtp(0) is None
    assert audio.rtcp == RtcpAttribute(7079)
    assert audio.ptime is None and audio.maxptime is None
    assert audio.direction is None and sdp.direction is None
    assert sdp.direction_of(audio) is SR
    assert audio.attribute_values("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]


def test_parse_microsip_views() -> None:
    sdp = load("microsip.sdp")
    assert sdp.connection is None
    assert sdp.bandwidths == ["AS:84"]
    assert sdp.attributes == [Attribute("X-nat", "0")]
    [audio] = sdp.media
    assert audio.connection == Connection("192.168.1.77")
    assert sdp.connection_for(audio) == Connection("192.168.1.77")
    assert audio.bandwidths == ["TIAS:64000"]
    assert audio.rtcp == RtcpAttribute(4003, Connection("192.168.1.77"))
    assert audio.direction is SR
    assert audio.fmtp(101) == "0-16"


def test_parse_pyvoip_views() -> None:
    [audio] = load("pyvoip.sdp").media
    assert audio.ptime == 20.0 and audio.maxptime == 150.0
    assert audio.rtpmaps() == {0: RtpMap(0, "PCMU", 8000),
                               101: RtpMap(101, "telephone-event", 8000)}
    assert audio.rtpmaps()[101].is_telephone_event


def test_parse_baresip_views() -> None:
    [audio] = load("baresip.sdp").media
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000, 1)
    assert audio.rtcp_mux and audio.has_attribute("label")
    assert audio.attribute("rtcp-mux") == ""
    assert audio.attribute("nothing") is None


def test_parse_polycom_session_direction_applies_to_media() -> None:
    sdp = load("polycom_vvx.sdp")
    assert sdp.direction is SR and sdp.media[0].direction is None
    assert sdp.direction_of(sdp.media[0]) is SR


def test_media_direction_overrides_session_direction() -> None:
    sdp = SessionDescription.parse(offer_text(
        "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n", HEAD + "a=inactive\r\n"))
    assert sdp.direction is IA
    assert sdp.direction_of(sdp.media[0]) is S
    assert answer_to(sdp).media.direction is R


def test_webrtc_attribute_with_space_after_colon_round_trips() -> None:
    sdp = load("webrtc_gateway_opus_first.sdp")
    assert sdp.attributes == [
        Attribute("msid-semantic", " WMS 9b1b3f4e-6c55-4bb5-a4cd-6e54f0bc2a1d")]


def test_multicast_connection_with_ttl_and_count() -> None:
    sdp = SessionDescription.parse(offer_text(
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127/3\r\n"
        "m=audio 4002 RTP/AVP 0\r\nc=IN IP6 ff15::101/3\r\n"))
    assert sdp.media[0].connection == Connection("224.2.1.1", "IP4", "IN", 127, 3)
    assert sdp.media[1].connection == Connection("ff15::101", "IP6", "IN", None, 3)
    assert str(sdp.media[0].connection) == "IN IP4 224.2.1.1/127/3"
    assert SessionDescription.parse(sdp.serialize()) == sdp
    with pytest.raises(NoCommonCodec) as err:
        answer_to(sdp)
    assert err.value.reason == (
        "no acceptable audio stream in the SDP offer: "
        "stream 1: multicast connection 'c=IN IP4 224.2.1.1/127/3' is not supported; "
        "stream 2: multicast connection 'c=IN IP6 ff15::101/3' is not supported")


def test_host_names_and_other_address_types_are_kept() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 host.example.com\r\ns=-\r\nc=IN IP4 media.example.com\r\n"
        "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\nc=ATM NSAP 47.0091/x\r\n")
    assert sdp.connection == Connection("media.example.com")
    assert sdp.media[1].connection == Connection("47.0091/x", "NSAP", "ATM")
    assert SessionDescription.parse(sdp.serialize()) == sdp
    assert answer_to(sdp).media.remote_address == "media.example.com"
    sdp.media.reverse()
    answer = answer_to(sdp)
    assert answer.media.stream_index == 1
    assert [m.port for m in answer.sdp.media] == [0, 40000]


def test_non_rtp_media_formats_are_tokens() -> None:
    sdp = SessionDescription.parse(offer_text(
        "m=audio 4000 RTP/AVP 0\r\nm=image 4004 udptl t38\r\na=T38FaxVersion:0\r\n"
        "a=fmtp:t38 whatever\r\nm=message 2855 TCP/MSRP *\r\na=accept-types:text/plain\r\n"))
    assert sdp.media[1].formats == ["t38"] and sdp.media[1].payload_types == []
    assert sdp.media[1].fmtp("t38") == "whatever"
    assert sdp.media[2].formats == ["*"]
    answer = answer_to(sdp)
    assert [str(next(m.lines())) for m in answer.sdp.media] == [
        "m=audio 40000 RTP/AVP 0", "m=image 0 udptl t38", "m=message 0 TCP/MSRP *"]


def test_port_count_round_trips() -> None:
    sdp = SessionDescription.parse(offer_text("m=audio 4000/2 RTP/AVP 0\r\n"))
    assert sdp.media[0].port == 4000 and sdp.media[0].port_count == 2
    assert b"m=audio 4000/2 RTP/AVP 0\r\n" in sdp.serialize()


def test_rejected_stream_may_have_no_formats_and_no_connection() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP\r\n"
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n")
    assert sdp.media[0].formats == []
    answer = answer_to(sdp)
    assert list(answer.sdp.media[0].lines()) == ["m=video 0 RTP/AVP"]
    assert answer.media.stream_index == 1


# -- parsing: what is tolerated -----------------------------------------------------------

PLAIN = ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
         "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@pytest.mark.parametrize("variant", [
    PLAIN.replace("\r\n", "\n"),                       # LF only
    PLAIN[:-2],                                        # no final CRLF
    PLAIN.replace("\r\n", "\n")[:-1],                  # LF only, no final LF
    PLAIN + "\r\n\r\n",                                # trailing blank lines
    PLAIN.replace("s=-\r\n", "s=-\r\n\r\n"),           # a blank line inside
    PLAIN.replace("\r\n", " \t\r\n"),                  # trailing blanks
    PLAIN.encode(),                                    # bytes
    bytearray(PLAIN.encode()),
])
def test_tolerated_variants_parse_to_the_same_model(variant: str | bytes) -> None:
    assert SessionDescription.parse(variant) == SessionDescription.parse(PLAIN)
    assert SessionDescription.parse(variant).serialize() == PLAIN.encode()


def test_blanks_between_fields_are_tolerated() -> None:
    sdp = SessionDescription.parse(PLAIN.replace("m=audio 4000 RTP/AVP 0",
                                                 "m=audio  4000\tRTP/AVP  0")
                                   .replace("o=- 1 1", "o=-  1 1"))
    assert sdp == SessionDescription.parse(PLAIN)


def test_lines_out_of_order_are_written_back_in_rfc_order() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=x\r\nt=0 0\r\na=tool:y\r\nc=IN IP4 192.0.2.1\r\n"
        "x=experimental\r\nb=AS:64\r\ni=about\r\nk=prompt\r\nr=7d 1h 0 25h\r\nz=0 -1h\r\n"
        "u=http://example.com/\r\ne=ops@example.com\r\np=+1 617 555-6011\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=ptime:20\r\nk=clear:x\r\nb=AS:80\r\n"
        "c=IN IP4 192.0.2.2\r\ni=voice\r\ny=other\r\n")
    assert sdp.text() == (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=x\r\ni=about\r\nu=http://example.com/\r\n"
        "e=ops@example.com\r\np=+1 617 555-6011\r\nc=IN IP4 192.0.2.1\r\nb=AS:64\r\n"
        "t=0 0\r\nr=7d 1h 0 25h\r\nz=0 -1h\r\nk=prompt\r\nx=experimental\r\na=tool:y\r\n"
        "m=audio 4000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 192.0.2.2\r\nb=AS:80\r\nk=clear:x\r\n"
        "y=other\r\na=ptime:20\r\n")
    assert str(sdp) == sdp.text()
    assert bytes(sdp) == sdp.serialize()
    assert SessionDescription.parse(sdp.serialize()) == SessionDescription.parse(sdp.text())


def test_empty_session_name_and_missing_timing_are_tolerated() -> None:
    sdp = SessionDescription.parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=\nc=IN IP4 192.0.2.1\n"
                                   "m=audio 4000 RTP/AVP 0\n")
    assert sdp.name == "" and sdp.other_lines == []
    assert answer_to(sdp).media.codec is Codec.PCMU


def test_utf8_and_invalid_utf8_survive() -> None:
    raw = PLAIN.replace("s=-", "s=Réunion ☎").encode() + b"a=x:\xff\xfe\r\n"
    sdp = SessionDescription.parse(raw)
    assert sdp.name == "Réunion ☎"
    assert sdp.serialize() == raw


def test_unknown_attributes_and_rtpmaps_outside_the_format_list_are_kept() -> None:
    text = PLAIN + "a=rtpmap:97 iLBC/8000\r\na=fmtp:97 mode=30\r\na=foo\r\na=bar:\r\n"
    sdp = SessionDescription.parse(text)
    audio = sdp.media[0]
    assert audio.attributes[-2:] == [Attribute("foo"), Attribute("bar", "")]
    assert audio.payload_types == [0] and audio.rtpmap(97) == RtpMap(97, "iLBC", 8000)
    assert sdp.serialize() == text.encode()


def test_same_except_version() -> None:
    a = SessionDescription.parse(PLAIN)
    b = SessionDescription.parse(PLAIN.replace("o=- 1 1", "o=- 1 9"))
    c = SessionDescription.parse(PLAIN.replace("o=- 1 1", "o=- 2 1"))
    d = SessionDescription.parse(PLAIN.replace("4000", "4002"))
    assert a.same_except_version(b) and not a.same_except_version(c)
    assert not a.same_except_version(d)


# -- parsing: every error ------------------------------------------------------------------

H = HEAD
M = "m=audio 4000 RTP/AVP 0\r\n"
ERRORS: list[tuple[str, str]] = [
    ("", "SDP is empty"),
    ("\r\n \r\n", "SDP is empty"),
    ("o=- 1 1 IN IP4 192.0.2.1\r\n",
     "SDP line 1: expected 'v=0', found 'o=- 1 1 IN IP4 192.0.2.1'"),
    ("v=1\r\n", "SDP line 1: expected 'v=0', found 'v=1'"),
    ("v=0\r\ns=-\r\n", "SDP has no 'o=' line"),
    ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n", "SDP has no 's=' line"),
    ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",
     "SDP line 2: expected 'o=<username> <sess-id> <sess-version> <nettype> <addrtype> "
     "<unicast-address>', found 'o=- 1 1 IN IP4'"),
    ("v=0\r\no=- 1 x IN IP4 192.0.2.1\r\ns=-\r\n",
     "SDP line 2: expected 'o=<username> <sess-id> <sess-version> <nettype> <addrtype> "
     "<unicast-address>', found 'o=- 1 x IN IP4 192.0.2.1'"),
    (H + "v=0\r\n", "SDP line 6: second 'v=' line: 'v=0'"),
    (H + "o=- 1 1 IN IP4 192.0.2.1\r\n",
     "SDP line 6: second 'o=' line: 'o=- 1 1 IN IP4 192.0.2.1'"),
    (H + "s=again\r\n", "SDP line 6: second 's=' line: 's=again'"),
    (H + "hello\r\n", "SDP line 6: expected '<type>=<value>', found 'hello'"),
    (H + "1=x\r\n", "SDP line 6: expected '<type>=<value>', found '1=x'"),
    (H + " a=x\r\n", "SDP line 6: expected '<type>=<value>', found ' a=x'"),
    (H + "s=a\x00b\r\n", "SDP line 6: CR or NUL inside a line: 's=a\\x00b'"),
    (H + "s=a\rb\r\n", "SDP line 6: CR or NUL inside a line: 's=a\\rb'"),
    (H + "c=IN IP4 192.0.2.1\r\n",
     "SDP line 6: second 'c=' line at session level: 'c=IN IP4 192.0.2.1'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4"),
     "SDP line 4: expected 'c=<nettype> <addrtype> <connection-address>', found 'c=IN IP4'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 999.1.1.1"),
     "SDP line 4: '999.1.1.1' is not an IPv4 address or host name: 'c=IN IP4 999.1.1.1'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 2001:db8::1"),
     "SDP line 4: '2001:db8::1' is not an IPv4 address or host name: 'c=IN IP4 2001:db8::1'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP6 [2001:db8::1]"),
     "SDP line 4: IPv6 address '[2001:db8::1]' in brackets (SDP writes IPv6 without them): "
     "'c=IN IP6 [2001:db8::1]'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP6 2001:db8::g"),
     "SDP line 4: '2001:db8::g' is not an IPv6 address or host name: 'c=IN IP6 2001:db8::g'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/300"),
     "SDP line 4: TTL 300 out of range 0-255: 'c=IN IP4 224.2.1.1/300'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/127/0"),
     "SDP line 4: address count 0: 'c=IN IP4 224.2.1.1/127/0'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/127/3/4"),
     "SDP line 4: expected 'c=<nettype> <addrtype> <connection-address>', "
     "found 'c=IN IP4 224.2.1.1/127/3/4'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP6 ff15::101/3/4"),
     "SDP line 4: expected 'c=<nettype> <addrtype> <connection-address>', "
     "found 'c=IN IP6 ff15::101/3/4'"),
    (H.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/x"),
     "SDP line 4: expected 'c=<nettype> <addrtype> <connection-address>', "
     "found 'c=IN IP4 224.2.1.1/x'"),
    (H + "m=audio x RTP/AVP 0\r\n",
     "SDP line 6: expected 'm=<media> <port> <proto> <fmt>...', found 'm=audio x RTP/AVP 0'"),
    (H + "m=audio 70000 RTP/AVP 0\r\n",
     "SDP line 6: port 70000 out of range 0-65535: 'm=audio 70000 RTP/AVP 0'"),
    (H + "m=audio 4000 RTP/AVP\r\n",
     "SDP line 6: expected 'm=<media> <port> <proto> <fmt>...', found 'm=audio 4000 RTP/AVP'"),
    (H + "m=audio 4000\r\n",
     "SDP line 6: expected 'm=<media> <port> <proto> <fmt>...', found 'm=audio 4000'"),
    (H + "m=audio 4000/0 RTP/AVP 0\r\n",
     "SDP line 6: expected 'm=<media> <port> <proto> <fmt>...', "
     "found 'm=audio 4000/0 RTP/AVP 0'"),
    (H + "m=audio 4000 RTP/AVP 0 128\r\n",
     "SDP line 6: RTP payload type '128' is not a number 0-127: 'm=audio 4000 RTP/AVP 0 128'"),
    (H + "m=audio 4000 RTP/AVP PCMU\r\n",
     "SDP line 6: RTP payload type 'PCMU' is not a number 0-127: 'm=audio 4000 RTP/AVP PCMU'"),
    (H.replace("c=IN IP4 192.0.2.1\r\n", "") + M,
     "SDP line 5: media section 1 has no 'c=' line and the session has none"),
    (H + M + "t=0 0\r\n",
     "SDP line 7: 't=' line inside media section 1 (it belongs to the session level): "
     "'t=0 0'"),
    (H + M + "c=IN IP4 192.0.2.2\r\nc=IN IP4 192.0.2.3\r\n",
     "SDP line 8: second 'c=' line in media section 1: 'c=IN IP4 192.0.2.3'"),
    (H + M + "a=rtpmap:x PCMU/8000\r\n",
     "SDP line 7: expected 'a=rtpmap:<payload type> <encoding name>/<clock rate>"
     "[/<channels>]', found 'a=rtpmap:x PCMU/8000'"),
    (H + M + "a=rtpmap:0 PCMU\r\n",
     "SDP line 7: expected 'a=rtpmap:<payload type> <encoding name>/<clock rate>"
     "[/<channels>]', found 'a=rtpmap:0 PCMU'"),
    (H + M + "a=rtpmap:200 PCMU/8000\r\n",
     "SDP line 7: RTP payload type '200' is not a number 0-127: 'a=rtpmap:200 PCMU/8000'"),
    (H + M + "a=rtpmap:0 PCMU/0\r\n", "SDP line 7: clock rate 0: 'a=rtpmap:0 PCMU/0'"),
    (H + M + "a=rtpmap:0 PCMU/8000/0\r\n",
     "SDP line 7: channel count 0: 'a=rtpmap:0 PCMU/8000/0'"),
    (H + "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
     "a=rtpmap:101 telephone-event/8000\r\n",
     "SDP line 8: second 'a=rtpmap' for payload type 101 in media section 1: "
     "'a=rtpmap:101 telephone-event/8000'"),
    (H + M + "a=fmtp:\r\n",
     "SDP line 7: expected 'a=fmtp:<format> <format specific parameters>', found 'a=fmtp:'"),
    (H + M + "a=fmtp:abc 0-15\r\n",
     "SDP line 7: RTP payload type 'abc' is not a number 0-127: 'a=fmtp:abc 0-15'"),
    (H + M + "a=ptime:abc\r\n",
     "SDP line 7: expected 'a=ptime:<milliseconds>' (a positive number), found 'a=ptime:abc'"),
    (H + M + "a=ptime:0\r\n",
     "SDP line 7: expected 'a=ptime:<milliseconds>' (a positive number), found 'a=ptime:0'"),
    (H + "a=ptime:x\r\n",
     "SDP line 6: expected 'a=ptime:<milliseconds>' (a positive number), found 'a=ptime:x'"),
    (H + M + "a=maxptime:-5\r\n",
     "SDP line 7: expected 'a=maxptime:<milliseconds>' (a positive number), "
     "found 'a=maxptime:-5'"),
    (H + M + "a=rtcp:x\r\n",
     "SDP line 7: expected 'a=rtcp:<port> [<nettype> <addrtype> <connection-address>]', "
     "found 'a=rtcp:x'"),
    (H + M + "a=rtcp:70000\r\n", "SDP line 7: port 70000 out of range 0-65535: 'a=rtcp:70000'"),
    (H + M + "a=rtcp:4001 IN IP4\r\n",
     "SDP line 7: expected 'a=rtcp:<port> [<nettype> <addrtype> <connection-address>]', "
     "found 'a=rtcp:4001 IN IP4'"),
    (H + M + "a=rtcp:4001 IN IP4 300.1.1.1\r\n",
     "SDP line 7: '300.1.1.1' is not an IPv4 address or host name: "
     "'a=rtcp:4001 IN IP4 300.1.1.1'"),
    (H + M + "a=sendonly\r\na=sendrecv\r\n",
     "SDP line 8: second direction attribute in media section 1 (already 'a=sendonly'): "
     "'a=sendrecv'"),
    (H + "a=inactive\r\na=sendonly\r\n",
     "SDP line 7: second direction attribute at session level (already 'a=inactive'): "
     "'a=sendonly'"),
    (H + M + "a=sendonly:x\r\n",
     "SDP line 7: expected 'a=sendonly' without a value, found 'a=sendonly:x'"),
    (H + M + "a=\r\n", "SDP line 7: expected 'a=<attribute>[:<value>]', found 'a='"),
    (H + M + "a=:x\r\n", "SDP line 7: expected 'a=<attribute>[:<value>]', found 'a=:x'"),
    (H + "m=audio 1234567890123456 RTP/AVP 0\r\n",
     "SDP line 6: port 123456789012… out of range 0-65535: "
     "'m=audio 1234567890123456 RTP/AVP 0'"),
    (H + "m=audio 4000 RTP/AVP 0000\r\n",
     "SDP line 6: RTP payload type '0000' is not a number 0-127: 'm=audio 4000 RTP/AVP 0000'"),
    ("v=0\r\no=- 1 " + "9" * 41 + " IN IP4 192.0.2.1\r\ns=-\r\n",
     "SDP line 2: expected 'o=<username> <sess-id> <sess-version> <nettype> <addrtype> "
     "<unicast-address>', found 'o=- 1 " + "9" * 41 + " IN IP4 192.0.2.1'"),
    (H + M + "a=ptime:1234567890\r\n",
     "SDP line 7: expected 'a=ptime:<milliseconds>' (a positive number), "
     "found 'a=ptime:1234567890'"),
    (H + M + "a=rtpmap:0 PCMU/12345678901\r\n",
     "SDP line 7: expected 'a=rtpmap:<payload type> <encoding name>/<clock rate>"
     "[/<channels>]', found 'a=rtpmap:0 PCMU/12345678901'"),
    ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=" + "x" * 100 + "\r\nq\r\n",
     "SDP line 4: expected '<type>=<value>', found 'q'"),
    ("v=0\r\no=- 1 1 IN IP4 192.0.2.1 " + "y" * 100 + "\r\n",
     "SDP line 2: expected 'o=<username> <sess-id> <sess-version> <nettype> <addrtype> "
     "<unicast-address>', found 'o=- 1 1 IN IP4 192.0.2.1 " + "y" * 55 + "…'"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_parse_error_message(text: str, message: str) -> None:
    with pytest.raises(SdpError) as err:
        SessionDescription.parse(text)
    assert str(err.value) == message
    assert err.value.reason == message
    assert err.value.status == 400
    assert type(err.value) is SdpError


def test_unencodable_text_is_an_sdp_error() -> None:
    with pytest.raises(SdpError, match=r"^SDP text has characters that cannot be encoded"):
        SessionDescription.parse(PLAIN.replace("s=-", "s=\ud800"))


def test_session_level_rtpmap_and_non_rtp_attributes_are_not_checked() -> None:
    sdp = SessionDescription.parse(H + "a=rtpmap:banana\r\nm=image 4000 udptl t38\r\n"
                                   "a=rtpmap:x y\r\na=fmtp:\r\n")
    assert sdp.attribute("rtpmap") == "banana"
    assert sdp.media[0].attribute("fmtp") == ""


@pytest.mark.parametrize(("attr", "call", "message"), [
    (Attribute("ptime", "abc"), lambda m: m.ptime,
     "SDP attribute 'a=ptime:abc': expected 'a=ptime:<milliseconds>' (a positive number)"),
    (Attribute("maxptime"), lambda m: m.maxptime,
     "SDP attribute 'a=maxptime': expected 'a=maxptime:<milliseconds>' (a positive number)"),
    (Attribute("rtpmap", "0 PCMU"), lambda m: m.rtpmaps(),
     "SDP attribute 'a=rtpmap:0 PCMU': expected "
     "'a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]'"),
    (Attribute("rtpmap", "300 X/8000"), lambda m: m.rtpmap(0),
     "SDP attribute 'a=rtpmap:300 X/8000': RTP payload type '300' is not a number 0-127"),
    (Attribute("fmtp", ""), lambda m: m.fmtp(0),
     "SDP attribute 'a=fmtp:': expected 'a=fmtp:<format> <format specific parameters>'"),
    (Attribute("rtcp", "99999"), lambda m: m.rtcp,
     "SDP attribute 'a=rtcp:99999': port 99999 out of range 0-65535"),
])
def test_typed_views_of_a_built_model_report_bad_attributes(
        attr: Attribute, call: object, message: str) -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"], attributes=[attr])
    with pytest.raises(SdpError) as err:
        call(media)  # type: ignore[operator]
    assert err.value.reason == message


def test_error_types() -> None:
    assert issubclass(SdpError, SipError)
    assert issubclass(NoCommonCodec, SdpError)
    assert NoCommonCodec("x").status == 488


# -- RFC 5118 torture bodies ---------------------------------------------------------------


def torture_body(name: str) -> bytes:
    return (TORTURE / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def test_rfc5118_ipv6_in_sdp() -> None:
    sdp = SessionDescription.parse(torture_body("ipv6-in-sdp"))
    assert sdp.origin.address == "2001:db8::20" and sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("2001:db8::20", "IP6")
    assert sdp.media[0].rtpmap(2) == RtpMap(2, "G726-32", 8000)
    with pytest.raises(NoCommonCodec, match=r"stream 1: no common codec \(offered 2 G726-32"):
        answer_to(sdp)


def test_answer_repeats_the_offers_timing() -> None:
    answer = answer_to(torture_body("ipv6-in-sdp").replace(b"RTP/AVP 2", b"RTP/AVP 0").decode())
    assert answer.sdp.other_lines == [SdpLine("t", "3338481189 3370017201")]
    assert answer_to(load("sipp_uac.sdp")).sdp.other_lines == [SdpLine("t", "0 0")]
    untimed = offer_text(M).replace("t=0 0\r\n", "")
    assert answer_to(untimed).sdp.other_lines == [SdpLine("t", "0 0")]


def test_remote_rtcp_port_when_there_is_none() -> None:
    assert answer_to(offer_text("m=audio 65535 RTP/AVP 0\r\n")).media.remote_rtcp_port == 0
    assert answer_to(offer_text(M + "a=rtcp:0\r\n")).media.remote_rtcp_port == 0


def test_rfc5118_multiple_addresses_in_sdp() -> None:
    sdp = SessionDescription.parse(torture_body("mult-ip-in-sdp"))
    assert sdp.name == "" and sdp.connection is None
    assert sdp.media[0].connection == Connection("192.0.2.1")
    assert sdp.media[1].connection == Connection("2001:db8::1", "IP6")
    media = answer_to(sdp).media
    assert (media.remote_address, media.remote_port, media.codec) == (
        "192.0.2.1", 22334, Codec.PCMU)


def test_rfc5118_ipv4_mapped_ipv6() -> None:
    sdp = SessionDescription.parse(torture_body("ipv4-mapped-ipv6"))
    assert sdp.connection == Connection("::ffff:192.0.2.2", "IP6")
    assert sdp.serialize() == torture_body("ipv4-mapped-ipv6")


# -- negotiation rules ----------------------------------------------------------------------


def test_offerer_order_wins_among_codecs_we_support() -> None:
    for formats, codec in [("8 0", Codec.PCMA), ("0 8", Codec.PCMU), ("18 8 0", Codec.PCMA)]:
        media = answer_to(offer_text(f"m=audio 4000 RTP/AVP {formats}\r\n")).media
        assert media.codec is codec
    # our preference list restricts, it does not reorder
    only_a = dataclasses.replace(CAPS, codecs=(Codec.PCMA,))
    assert answer_to(offer_text("m=audio 4000 RTP/AVP 0 8\r\n"), only_a).media.codec is Codec.PCMA
    with pytest.raises(NoCommonCodec) as err:
        answer_to(offer_text("m=audio 4000 RTP/AVP 0\r\n"), only_a)
    assert err.value.reason.endswith("(offered 0 PCMU/8000; we support PCMA/8000)")


def test_g711_at_a_dynamic_payload_type_is_mirrored() -> None:
    answer = answer_to(offer_text("m=audio 4000 RTP/AVP 98 101\r\na=rtpmap:98 pcmu/8000\r\n"
                                  "a=rtpmap:101 telephone-event/8000\r\n"))
    assert (answer.media.codec, answer.media.payload_type) == (Codec.PCMU, 98)
    assert answer.sdp.media[0].formats == ["98", "101"]
    assert answer.sdp.media[0].rtpmap(98) == RtpMap(98, "PCMU", 8000)


def test_rtpmap_overrides_a_static_payload_type() -> None:
    media = answer_to(offer_text("m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 G729/8000\r\n")).media
    assert (media.codec, media.payload_type) == (Codec.PCMA, 8)


@pytest.mark.parametrize("rtpmap", ["PCMU/16000", "PCMU/8000/2"])
def test_g711_at_another_rate_or_in_stereo_is_not_ours(rtpmap: str) -> None:
    with pytest.raises(NoCommonCodec, match=f"offered 96 {rtpmap}"):
        answer_to(offer_text(f"m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\n"))


def test_dynamic_payload_without_rtpmap_is_described() -> None:
    with pytest.raises(NoCommonCodec) as err:
        answer_to(offer_text("m=audio 4000 RTP/AVP 96 35\r\n"))
    assert "offered 96 (no rtpmap), 35 (no rtpmap);" in err.value.reason


@pytest.mark.parametrize("pt", [96, 100, 101, 110, 127])
def test_telephone_event_at_any_dynamic_payload_type(pt: int) -> None:
    answer = answer_to(offer_text(f"m=audio 4000 RTP/AVP 0 {pt}\r\n"
                                  f"a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"))
    assert answer.media.telephone_event == pt == answer.media.receive_telephone_event
    assert answer.sdp.media[0].formats == ["0", str(pt)]
    assert answer.sdp.media[0].fmtp(pt) == "0-15"


def test_telephone_event_only_at_8000_hz() -> None:
    media = answer_to(offer_text("m=audio 4000 RTP/AVP 0 110\r\n"
                                 "a=rtpmap:110 telephone-event/48000\r\n")).media
    assert media.telephone_event is None


def test_telephone_event_switched_off_in_caps() -> None:
    caps = dataclasses.replace(CAPS, telephone_event=False)
    answer = answer_to(load("yealink_t46u.sdp"), caps)
    assert answer.media.telephone_event is None
    assert answer.sdp.media[0].formats == ["0"]


def test_telephone_event_alone_is_not_a_codec() -> None:
    with pytest.raises(NoCommonCodec, match="offered 101 telephone-event/8000;"):
        answer_to(offer_text("m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n"))


@pytest.mark.parametrize(("attrs", "ptime"), [
    ("", 20),
    ("a=ptime:20\r\n", 20),
    ("a=ptime:30\r\n", 30),
    ("a=ptime:30.0\r\n", 30),
    ("a=ptime:10\r\n", 20),
    ("a=ptime:40\r\n", 20),
    ("a=ptime:60\r\na=maxptime:60\r\n", 20),
    ("a=ptime:30\r\na=maxptime:20\r\n", 20),
    ("a=maxptime:20\r\n", 20),
    ("a=ptime:10\r\na=maxptime:10\r\n", 20),  # nothing fits: our smallest
])
def test_ptime_choice(attrs: str, ptime: int) -> None:
    answer = answer_to(offer_text("m=audio 4000 RTP/AVP 0\r\n" + attrs))
    assert answer.media.ptime == ptime
    assert answer.sdp.media[0].attribute("ptime") == str(ptime)


def test_session_level_ptime_is_a_fallback() -> None:
    head = HEAD + "a=ptime:30\r\n"
    assert answer_to(offer_text(M, head)).media.ptime == 30
    assert answer_to(offer_text(M + "a=ptime:20\r\n", head)).media.ptime == 20
    assert answer_to(offer_text(M, HEAD + "a=maxptime:20\r\n"),
                     dataclasses.replace(CAPS, ptimes=(30, 20))).media.ptime == 20


def test_ptime_default_is_the_first_of_caps() -> None:
    caps = dataclasses.replace(CAPS, ptimes=(30, 20))
    assert answer_to(offer_text(M), caps).media.ptime == 30
    assert answer_to(offer_text(M + "a=maxptime:20\r\n"), caps).media.ptime == 20


@pytest.mark.parametrize(("offered", "ours", "sends", "receives"), [
    ("a=sendrecv\r\n", SR, True, True),
    ("", SR, True, True),
    ("a=sendonly\r\n", R, False, True),
    ("a=recvonly\r\n", S, True, False),
    ("a=inactive\r\n", IA, False, False),
])
def test_answer_direction(offered: str, ours: Direction, sends: bool, receives: bool) -> None:
    answer = answer_to(offer_text(M + offered))
    assert answer.media.direction is ours
    assert (answer.media.sends, answer.media.receives) == (sends, receives)
    assert answer.sdp.media[0].direction is ours


@pytest.mark.parametrize(("offered", "ours"), [
    ("a=sendrecv\r\n", R), ("a=sendonly\r\n", R), ("a=recvonly\r\n", IA), ("a=inactive\r\n", IA),
])
def test_old_style_hold_direction(offered: str, ours: Direction) -> None:
    head = HEAD.replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0")
    media = answer_to(offer_text(M + offered, head)).media
    assert media.direction is ours and media.remote_address == "0.0.0.0"


def test_unspecified_ipv6_address_is_hold_too() -> None:
    head = HEAD.replace("c=IN IP4 192.0.2.1", "c=IN IP6 ::")
    assert answer_to(offer_text(M, head)).media.direction is R


def test_media_level_zero_address_only_holds_that_stream() -> None:
    media = answer_to(offer_text(M + "c=IN IP4 0.0.0.0\r\n")).media
    assert media.direction is R


@pytest.mark.parametrize(("wish", "offered", "ours"), [
    (S, "", S), (S, "a=sendonly\r\n", IA), (R, "", R), (IA, "", IA), (S, "a=recvonly\r\n", S),
])
def test_our_wished_direction_intersects(wish: Direction, offered: str,
                                         ours: Direction) -> None:
    assert answer_to(offer_text(M + offered), direction=wish).media.direction is ours


def test_direction_helpers() -> None:
    assert [d.reversed() for d in (SR, S, R, IA)] == [SR, R, S, IA]
    assert Direction.from_flags(sends=True, receives=False) is S


@pytest.mark.parametrize(("attrs", "rtcp"), [
    ("", ("192.0.2.1", 4001)),
    ("a=rtcp:5005\r\n", ("192.0.2.1", 5005)),
    ("a=rtcp:5005 IN IP4 198.51.100.9\r\n", ("198.51.100.9", 5005)),
    ("a=rtcp:5005 IN IP6 2001:db8::9\r\n", ("2001:db8::9", 5005)),
    ("a=rtcp-mux\r\n", ("192.0.2.1", 4001)),  # we do not mux unless caps say so
])
def test_remote_rtcp(attrs: str, rtcp: tuple[str, int]) -> None:
    media = answer_to(offer_text(M + attrs)).media
    assert (media.remote_rtcp_address, media.remote_rtcp_port) == rtcp


def test_first_usable_audio_stream_is_taken_others_get_port_zero() -> None:
    sdp = SessionDescription.parse(offer_text(
        "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        "m=audio 0 RTP/AVP 0\r\n"
        "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n"
        "m=audio 4002 RTP/AVP 18\r\n"
        "m=audio 4004 RTP/AVP 8\r\n"
        "m=audio 4006 RTP/AVP 0\r\n"))
    answer = answer_to(sdp)
    assert answer.media.stream_index == 4
    assert (answer.media.remote_port, answer.media.codec) == (4004, Codec.PCMA)
    assert [next(m.lines()) for m in answer.sdp.media] == [
        "m=video 0 RTP/AVP 96", "m=audio 0 RTP/AVP 0", "m=audio 0 RTP/SAVP 0",
        "m=audio 0 RTP/AVP 18", "m=audio 40000 RTP/AVP 8", "m=audio 0 RTP/AVP 0"]
    assert all(m.attributes == [] for i, m in enumerate(answer.sdp.media) if i != 4)


def test_no_usable_stream_lists_every_reason() -> None:
    sdp = SessionDescription.parse(offer_text(
        "m=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 18\r\n"
        "m=audio 4004 RTP/AVP 0\r\nc=TN RFC2543 +1-617-555-0100\r\n"))
    with pytest.raises(NoCommonCodec) as err:
        answer_to(sdp)
    assert err.value.reason == (
        "no acceptable audio stream in the SDP offer: "
        "stream 1: rejected by the offerer (port 0); "
        "stream 2: transport 'RTP/SAVP' is not RTP/AVP; "
        "stream 3: no common codec (offered 18 G729/8000; we support PCMU/8000, PCMA/8000); "
        "stream 4: connection 'c=TN RFC2543 +1-617-555-0100' is not IN IP4 or IN IP6")


@pytest.mark.parametrize("media", ["", "m=video 5000 RTP/AVP 31\r\n",
                                   "m=image 5000 udptl t38\r\n"])
def test_offer_without_audio(media: str) -> None:
    with pytest.raises(NoCommonCodec) as err:
        answer_to(offer_text(media))
    assert err.value.reason == "SDP offer has no audio stream"


def test_built_model_without_connection_is_not_usable() -> None:
    sdp = SessionDescription(Origin("-", "1", 1),
                             media=[MediaDescription("audio", 4000, "RTP/AVP", ["0"])])
    with pytest.raises(NoCommonCodec, match="stream 1: no 'c=' line at media or session level"):
        answer_to(sdp)


# -- session versions and re-INVITEs -----------------------------------------------------------


def test_versions_follow_rfc3264_section_8() -> None:
    first = answer_to(load("yealink_t46u.sdp"), session_id=900, session_version=4)
    assert (first.sdp.origin.session_id, first.sdp.origin.session_version) == ("900", 4)

    # the same offer again (a session refresh re-INVITE): nothing changed, same version
    again = negotiate_answer(load("yealink_t46u.sdp"), CAPS, previous=first.sdp)
    assert again.sdp == first.sdp and again.sdp.serialize() == first.sdp.serialize()
    assert again.media.changes(first.media) == frozenset()

    # hold: our answer changes (recvonly): version + 1, origin otherwise the same
    held = negotiate_answer(load("yealink_hold_sendonly.sdp"), CAPS, previous=again.sdp)
    assert held.sdp.origin == dataclasses.replace(first.sdp.origin, session_version=5)
    assert held.media.changes(again.media) == {MediaChange.DIRECTION}
    assert not held.media.sends and held.media.receives

    # resume
    resumed = negotiate_answer(load("yealink_t46u.sdp"), CAPS, previous=held.sdp)
    assert resumed.sdp.origin.session_version == 6
    assert resumed.media == first.media
    assert resumed.media.changes(held.media) == {MediaChange.DIRECTION}

    # the phone moved (new address and port): our answer is the same, so is its version
    moved_offer = load("yealink_t46u.sdp")
    moved_offer.connection = Connection("192.168.1.99")
    moved_offer.media[0].port = 12000
    moved = negotiate_answer(moved_offer, CAPS, previous=resumed.sdp)
    assert moved.sdp.origin.session_version == 6
    assert moved.media.changes(resumed.media) == {MediaChange.ADDRESS}

    # codec change: PCMA only now
    pcma = negotiate_answer(SessionDescription.parse(offer_text(
        "m=audio 11796 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        HEAD.replace("192.0.2.1", "192.168.1.71"))), CAPS, previous=moved.sdp)
    assert pcma.sdp.origin.session_version == 7
    assert pcma.media.changes(resumed.media) == {MediaChange.CODEC}

    # old-style hold: the address and the direction change
    old_hold = negotiate_answer(load("grandstream_hold_0000.sdp"), CAPS, previous=pcma.sdp)
    assert old_hold.media.changes(pcma.media) == {MediaChange.ADDRESS, MediaChange.DIRECTION,
                                                  MediaChange.CODEC}
    assert first.media.changes(None) == frozenset(MediaChange)


def test_our_port_change_moves_the_version() -> None:
    first = answer_to(load("pyvoip.sdp"))
    moved = negotiate_answer(load("pyvoip.sdp"), dataclasses.replace(CAPS, port=40010),
                             previous=first.sdp)
    assert moved.sdp.origin.session_version == first.sdp.origin.session_version + 1
    assert moved.sdp.media[0].port == 40010


@pytest.mark.parametrize("kw", [
    {}, {"session_id": 1}, {"session_version": 1},
    {"session_id": 1, "session_version": 1, "previous": "prev"},
    {"session_version": 1, "previous": "prev"},
])
def test_session_identity_arguments_are_checked(kw: dict[str, object]) -> None:
    prev = build_offer(CAPS, session_id=1, session_version=1)
    kw = {k: (prev if v == "prev" else v) for k, v in kw.items()}
    with pytest.raises(TypeError, match="pass either session_id and session_version, or previous"):
        negotiate_answer(load("pyvoip.sdp"), CAPS, **kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        build_offer(CAPS, **kw)  # type: ignore[arg-type]


# -- our offers and the answers to them ---------------------------------------------------------


def test_build_offer_text() -> None:
    offer = build_offer(CAPS, session_id=42, session_version=1)
    assert offer.serialize() == (
        b"v=0\r\n"
        b"o=hotline 42 1 IN IP4 192.0.2.10\r\n"
        b"s=hotline\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert SessionDescription.parse(offer.serialize()) == offer


def test_build_offer_variants() -> None:
    caps = MediaCapabilities("2001:db8::10", 40002, codecs=(Codec.PCMA, Codec.PCMU),
                             telephone_event_payload_type=96, telephone_events="0-16",
                             ptimes=(30, 20), rtcp_mux=True)
    offer = build_offer(caps, session_id=1, session_version=3, direction=S)
    assert list(offer.lines())[1:] == [
        "o=hotline 1 3 IN IP6 2001:db8::10", "s=hotline", "c=IN IP6 2001:db8::10", "t=0 0",
        "m=audio 40002 RTP/AVP 8 0 96", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-16", "a=ptime:30", "a=rtcp-mux",
        "a=sendonly"]
    plain = build_offer(dataclasses.replace(CAPS, telephone_event=False),
                        session_id=1, session_version=1)
    assert plain.media[0].formats == ["0", "8"]


def test_build_offer_after_an_answer_keeps_the_m_lines() -> None:
    answer = answer_to(SessionDescription.parse(offer_text(
        "m=video 5000 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 8\r\n")))
    offer = build_offer(CAPS, previous=answer.sdp)
    assert [next(m.lines()) for m in offer.media] == [
        "m=video 0 RTP/AVP 31", "m=audio 40000 RTP/AVP 0 8 101"]
    assert offer.origin.session_version == answer.sdp.origin.session_version + 1
    # offering the same again does not move the version
    assert build_offer(CAPS, previous=offer).origin == offer.origin
    # hold from our side
    held = build_offer(CAPS, previous=offer, direction=S)
    assert held.origin.session_version == offer.origin.session_version + 1
    assert held.media[1].direction is S


def test_build_offer_reuses_a_disabled_slot_or_appends() -> None:
    prev = SessionDescription.parse(offer_text(
        "m=video 0 RTP/AVP 31\r\nm=audio 0 RTP/AVP 0\r\n"))
    prev.origin = Origin("hotline", "1", 3, "IN", "IP4", "192.0.2.10")
    offer = build_offer(CAPS, previous=prev)
    assert [m.port for m in offer.media] == [0, 40000]
    prev.media = prev.media[:1]
    assert [m.port for m in build_offer(CAPS, previous=prev).media] == [40000]
    prev.media = [MediaDescription("video", 5000, "RTP/AVP", ["31"])]
    assert [m.port for m in build_offer(CAPS, previous=prev).media] == [0, 40000]


OUR_OFFER = build_offer(CAPS, session_id=42, session_version=1)


def answer_sdp(media: str, head: str = HEAD) -> SessionDescription:
    return SessionDescription.parse(head + media)


def test_accept_answer_typical() -> None:
    media = accept_answer(OUR_OFFER, SessionDescription.parse(
        HEAD + "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
               "a=ptime:20\r\na=sendrecv\r\n"), CAPS)
    assert media == NegotiatedMedia(
        remote_address="192.0.2.1", remote_port=4000, remote_rtcp_address="192.0.2.1",
        remote_rtcp_port=4001, codec=Codec.PCMU, payload_type=0, telephone_event=101,
        ptime=20, direction=SR, receive_codecs=((0, Codec.PCMU),),
        receive_telephone_event=101, rtcp_mux=False, stream_index=0)


def test_accept_answer_payload_numbers_of_each_side() -> None:
    media = accept_answer(OUR_OFFER, answer_sdp(
        "m=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n"),
        CAPS)
    assert (media.codec, media.payload_type) == (Codec.PCMA, 8)
    assert media.receive_codecs == ((0, Codec.PCMU), (8, Codec.PCMA))
    assert (media.telephone_event, media.receive_telephone_event) == (96, 101)
    assert media.ptime == 30


def test_accept_answer_without_telephone_event() -> None:
    media = accept_answer(OUR_OFFER, answer_sdp("m=audio 4000 RTP/AVP 0\r\n"), CAPS)
    assert media.telephone_event is None and media.receive_telephone_event is None


@pytest.mark.parametrize(("attrs", "head", "ours"), [
    ("a=sendonly\r\n", HEAD, R),
    ("a=recvonly\r\n", HEAD, S),
    ("a=inactive\r\n", HEAD, IA),
    ("", HEAD + "a=recvonly\r\n", S),
    ("", HEAD.replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0"), R),
])
def test_accept_answer_direction(attrs: str, head: str, ours: Direction) -> None:
    media = accept_answer(OUR_OFFER, answer_sdp("m=audio 4000 RTP/AVP 0\r\n" + attrs, head),
                          CAPS)
    assert media.direction is ours


def test_accept_answer_to_our_hold_offer_never_sends_back() -> None:
    offer = build_offer(CAPS, session_id=1, session_version=1, direction=S)
    media = accept_answer(offer, answer_sdp("m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"), CAPS)
    assert media.direction is S


def test_accept_answer_rtcp_mux_needs_both_sides() -> None:
    mux_caps = dataclasses.replace(CAPS, rtcp_mux=True)
    mux_offer = build_offer(mux_caps, session_id=1, session_version=1)
    answer = answer_sdp("m=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\n")
    media = accept_answer(mux_offer, answer, mux_caps)
    assert media.rtcp_mux and media.remote_rtcp_port == 4000
    assert not accept_answer(OUR_OFFER, answer, CAPS).rtcp_mux
    no_mux = accept_answer(mux_offer, answer_sdp("m=audio 4000 RTP/AVP 0\r\n"), mux_caps)
    assert not no_mux.rtcp_mux and no_mux.remote_rtcp_port == 4001


@pytest.mark.parametrize(("media", "error", "message"), [
    ("m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n", SdpError,
     "SDP answer has 2 media lines, the offer had 1"),
    ("", SdpError, "SDP answer has 0 media lines, the offer had 1"),
    ("m=video 4000 RTP/AVP 31\r\n", SdpError,
     "SDP answer media line 1 is 'video', the offer's is 'audio'"),
    ("m=audio 0 RTP/AVP 0\r\n", NoCommonCodec,
     "SDP answer rejected the audio stream (media line 1 has port 0)"),
    ("m=audio 4000 RTP/SAVP 0\r\n", SdpError,
     "SDP answer's audio transport 'RTP/SAVP' differs from the offered 'RTP/AVP'"),
    ("m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n", NoCommonCodec,
     "SDP answer chose none of the offered codecs: offered PCMU/8000, PCMA/8000; "
     "answered 18 G729/8000, 101 telephone-event/8000"),
    ("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 239.1.1.1/16\r\n", SdpError,
     "SDP answer's audio stream: multicast connection 'c=IN IP4 239.1.1.1/16' "
     "is not supported"),
])
def test_accept_answer_rejects(media: str, error: type[SdpError], message: str) -> None:
    with pytest.raises(error) as err:
        accept_answer(OUR_OFFER, answer_sdp(media), CAPS)
    assert type(err.value) is error
    assert err.value.reason == message


def test_accept_answer_only_codecs_we_offered() -> None:
    offer = build_offer(dataclasses.replace(CAPS, codecs=(Codec.PCMA,)),
                        session_id=1, session_version=1)
    with pytest.raises(NoCommonCodec, match="offered PCMA/8000; answered 0 PCMU/8000"):
        accept_answer(offer, answer_sdp("m=audio 4000 RTP/AVP 0\r\n"), CAPS)


def test_accept_answer_needs_our_audio_stream() -> None:
    offer = SessionDescription.parse(offer_text("m=audio 0 RTP/AVP 0\r\n"))
    with pytest.raises(ValueError, match="our offer has no active audio stream"):
        accept_answer(offer, offer, CAPS)


def test_two_engines_agree() -> None:
    """Our offer answered by our own negotiation, and the answer accepted: both sides
    agree on codec, telephone-event and complementary directions."""
    caller = MediaCapabilities("192.0.2.20", 30000, codecs=(Codec.PCMA, Codec.PCMU))
    callee = MediaCapabilities("192.0.2.30", 31000)
    offer = build_offer(caller, session_id=1, session_version=1, direction=S)
    answer = negotiate_answer(SessionDescription.parse(offer.serialize()), callee,
                              session_id=2, session_version=1)
    ours = accept_answer(offer, SessionDescription.parse(answer.sdp.serialize()), caller)
    theirs = answer.media
    assert ours.codec is theirs.codec is Codec.PCMA
    assert (ours.remote_address, ours.remote_port) == ("192.0.2.30", 31000)
    assert (theirs.remote_address, theirs.remote_port) == ("192.0.2.20", 30000)
    assert ours.direction is S and theirs.direction is R
    assert ours.telephone_event == theirs.telephone_event == 101


# -- capabilities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "message"), [
    ({"codecs": ()}, "codecs must be a non-empty list without repeats"),
    ({"codecs": (Codec.PCMU, Codec.PCMU)}, "codecs must be a non-empty list without repeats"),
    ({"ptimes": ()}, "ptimes must be positive milliseconds"),
    ({"ptimes": (20, 0)}, "ptimes must be positive milliseconds"),
    ({"telephone_event_payload_type": 95}, "telephone_event_payload_type must be a dynamic"),
    ({"port": 0}, "port out of range 1-65535: 0"),
    ({"port": 65536}, "port out of range 1-65535: 65536"),
    ({"address": "300.1.1.1"}, "address: '300.1.1.1' is not an IPv4 address or host name"),
    ({"address": "[2001:db8::1]"}, "address: IPv6 address '[2001:db8::1]' in brackets"),
])
def test_caps_are_checked(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        dataclasses.replace(CAPS, **kw)  # type: ignore[arg-type]


def test_codec_facts() -> None:
    assert [(c.static_payload_type, c.clock_rate, c.rtpmap) for c in Codec] == [
        (0, 8000, "PCMU/8000"), (8, 8000, "PCMA/8000")]
    assert Codec.matching(RtpMap(97, "pcma", 8000, 1)) is Codec.PCMA
    assert Codec.matching(RtpMap(97, "G722", 8000)) is None
    assert CAPS.connection == Connection("192.0.2.10", "IP4")
    assert MediaCapabilities("pbx.example.com", 4000).addrtype == "IP4"
