"""Hypothesis: SDP models serialize and parse back equal; the parser fails on any input
with nothing but SdpError; whatever parses negotiates to an answer that keeps the
offer's m-lines, or to NoCommonCodec."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.sip.sdp import (
    DIRECTION_ATTRIBUTES,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaCapabilities,
    MediaDescription,
    NoCommonCodec,
    Origin,
    SdpError,
    SdpLine,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
)

SDP_DIR = Path(__file__).resolve().parents[1] / "data" / "sdp"
FIXTURE_TEXTS = [p.read_text() for p in sorted(SDP_DIR.glob("*.sdp"))]
CAPS = MediaCapabilities("192.0.2.10", 40000)
# generated models are costly to draw: fewer of them; the fuzzers are cheap: more
MODELS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None)

# -- building blocks ---------------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10)
# a line's value: anything but CR, LF and NUL, and no trailing blank (trimmed on parse)
free_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]),
    max_size=24,
).filter(lambda s: s == s.rstrip(" \t"))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hostname = st.from_regex(r"[a-z][a-z0-9\-]{0,6}[a-z0-9](\.[a-z]{2,5}){0,2}", fullmatch=True)
port = st.integers(0, 65535)
pt = st.integers(0, 127)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    kind = draw(st.sampled_from(["IP4", "IP6", "host4", "host6", "other"]))
    if kind == "IP4":
        ttl = draw(st.none() | st.integers(0, 255))
        count = draw(st.none() | st.integers(1, 9)) if ttl is not None else None
        return Connection(draw(ipv4), "IP4", "IN", ttl, count)
    if kind == "IP6":
        return Connection(draw(ipv6), "IP6", "IN", None, draw(st.none() | st.integers(1, 9)))
    if kind in ("host4", "host6"):
        return Connection(draw(hostname), "IP4" if kind == "host4" else "IP6")
    return Connection(draw(token), draw(token.filter(lambda t: t not in ("IP4", "IP6"))),
                      draw(token.filter(lambda t: t != "IN")))


SPECIAL = DIRECTION_ATTRIBUTES | {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp"}
attr_name = st.from_regex(r"[a-zA-Z][a-zA-Z0-9\-_.]{0,10}", fullmatch=True).filter(
    lambda n: n not in SPECIAL)
generic_attribute = st.builds(Attribute, attr_name, st.none() | free_text)


def other_lines(types: str) -> st.SearchStrategy[list[SdpLine]]:
    return st.lists(st.builds(SdpLine, st.sampled_from(list(types)), free_text), max_size=3)


SESSION_BEFORE_C = "iuep"
SESSION_AFTER_B = "trzkxyq"
MEDIA_TYPES = "ikxyq"
RANK = {"i": 0, "u": 1, "e": 2, "p": 3, "t": 0, "r": 0, "z": 1, "k": 2}


def canonical(lines: list[SdpLine]) -> list[SdpLine]:
    """The order the serializer writes them in (stable within a rank)."""
    return sorted(lines, key=lambda ln: RANK.get(ln.type, 3))


@st.composite
def rtp_attributes(draw: st.DrawFn, formats: list[int]) -> list[Attribute]:
    attrs: list[Attribute] = []
    mapped = draw(st.lists(st.sampled_from(formats), unique=True)) if formats else []
    for number in mapped:
        encoding = draw(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=16))
        rate = draw(st.integers(1, 999_999_999))
        channels = draw(st.none() | st.integers(1, 8))
        text = f"{number} {encoding}/{rate}" + ("" if channels is None else f"/{channels}")
        attrs.append(Attribute("rtpmap", text))
        if draw(st.booleans()):
            attrs.append(Attribute("fmtp", f"{number} {draw(free_text)}".rstrip()))
    return attrs


@st.composite
def media_descriptions(draw: st.DrawFn, need_connection: bool) -> MediaDescription:
    rtp = draw(st.booleans())
    number = draw(port)
    if rtp:
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "UDP/TLS/RTP/SAVPF"]))
        numbers = draw(st.lists(pt, min_size=0 if number == 0 else 1, max_size=6))
        formats = [str(n) for n in numbers]
        attrs = draw(rtp_attributes(numbers))
    else:
        proto = draw(st.sampled_from(["udptl", "TCP/MSRP", "UDP/BFCP"]))
        formats = draw(st.lists(token, min_size=0 if number == 0 else 1, max_size=3))
        attrs = []
    if draw(st.booleans()):
        attrs.append(Attribute("ptime", str(draw(st.integers(1, 1000)))))
    if draw(st.booleans()):
        attrs.append(Attribute("maxptime", f"{draw(st.integers(1, 999))}.5"))
    if draw(st.booleans()):
        rtcp_conn = draw(st.none() | connections().filter(lambda c: c.nettype == "IN"
                                                           and c.addrtype in ("IP4", "IP6")))
        attrs.append(Attribute("rtcp", f"{draw(port)}" + ("" if rtcp_conn is None
                                                          else f" {rtcp_conn}")))
    attrs += draw(st.lists(generic_attribute, max_size=3))
    direction = draw(st.none() | st.sampled_from(list(Direction)))
    if direction is not None:
        attrs.insert(draw(st.integers(0, len(attrs))), Attribute(direction.value))
    connection = draw(connections()) if need_connection or draw(st.booleans()) else None
    before = draw(other_lines("i"))
    after = draw(other_lines("kxyq"))
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "image", "application", "text"])),
        port=number,
        proto=proto,
        formats=formats,
        port_count=draw(st.none() | st.integers(1, 4)),
        connection=connection,
        bandwidths=draw(st.lists(free_text, max_size=2)),
        attributes=attrs,
        other_lines=canonical(before) + canonical(after),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | connections())
    addrtype = draw(st.sampled_from(["IP4", "IP6"]))
    origin = Origin(draw(token), draw(st.text(alphabet="0123456789", min_size=1, max_size=20)),
                    draw(st.integers(0, 2**64)), "IN", addrtype,
                    draw(ipv4 if addrtype == "IP4" else ipv6))
    attrs = draw(st.lists(generic_attribute, max_size=3))
    direction = draw(st.none() | st.sampled_from(list(Direction)))
    if direction is not None:
        attrs.append(Attribute(direction.value))
    media = draw(st.lists(media_descriptions(need_connection=connection is None), max_size=3))
    return SessionDescription(
        origin=origin,
        name=draw(free_text),
        connection=connection,
        bandwidths=draw(st.lists(free_text, max_size=2)),
        other_lines=(canonical(draw(other_lines(SESSION_BEFORE_C)))
                     + canonical(draw(other_lines(SESSION_AFTER_B)))),
        attributes=attrs,
        media=media,
    )


# -- round trip -----------------------------------------------------------------------------


@given(session_descriptions())
@MODELS
def test_serialize_then_parse_is_identity(sdp: SessionDescription) -> None:
    data = sdp.serialize()
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    again = SessionDescription.parse(data)
    assert again == sdp
    assert again.serialize() == data
    # LF-only line ends and a missing final line end give the same model
    assert SessionDescription.parse(data.replace(b"\r\n", b"\n").rstrip(b"\n")) == sdp


# -- negotiation over generated offers ---------------------------------------------------------


@st.composite
def g711_offers(draw: st.DrawFn) -> SessionDescription:
    """Generated offers with at least one audio RTP/AVP stream carrying some G.711 (often
    not the first stream, not the first format, sometimes disabled)."""
    sdp = draw(session_descriptions())
    audio = MediaDescription(
        "audio", draw(st.integers(1, 65535)), "RTP/AVP",
        [str(n) for n in draw(st.permutations([0, 8, 18, 101]))[: draw(st.integers(1, 4))]],
        connection=draw(connections()),
        attributes=[Attribute("rtpmap", "101 telephone-event/8000")]
        + ([Attribute(draw(st.sampled_from(list(Direction))).value)]
           if draw(st.booleans()) else []),
    )
    sdp.media.insert(draw(st.integers(0, len(sdp.media))), audio)
    return sdp


@given(g711_offers())
@MODELS
def test_answers_keep_the_offers_m_lines(offer: SessionDescription) -> None:
    try:
        answer = negotiate_answer(offer, CAPS, session_id=1, session_version=1)
    except NoCommonCodec as exc:
        assert exc.reason.startswith("no acceptable audio stream in the SDP offer: stream ")
        return
    sdp = answer.sdp
    assert len(sdp.media) == len(offer.media)
    assert [m.media for m in sdp.media] == [m.media for m in offer.media]
    assert [m.proto for m in sdp.media] == [m.proto for m in offer.media]
    open_ports = [i for i, m in enumerate(sdp.media) if m.port != 0]
    assert open_ports == [answer.media.stream_index]
    chosen = offer.media[answer.media.stream_index]
    assert chosen.media == "audio" and chosen.port != 0 and chosen.proto == "RTP/AVP"
    assert answer.media.payload_type in chosen.payload_types
    assert answer.media.codec in (Codec.PCMU, Codec.PCMA)
    # the first G.711 format in the offerer's order
    first = next(p for p in chosen.payload_types
                 if (m := chosen.rtpmap(p)) is not None and Codec.matching(m) is not None)
    assert answer.media.payload_type == first
    if answer.media.telephone_event is not None:
        assert answer.media.telephone_event in chosen.payload_types
    offered = offer.direction_of(chosen)
    assert not answer.media.sends or offered.receives
    assert not answer.media.receives or offered.sends
    assert SessionDescription.parse(sdp.serialize()) == sdp
    # answering the same offer again does not move the version
    again = negotiate_answer(offer, CAPS, previous=sdp)
    assert again.sdp == sdp and again.media == answer.media


@given(g711_offers())
@MODELS
def test_our_offer_answered_by_the_generated_peer_is_accepted(peer: SessionDescription) -> None:
    """Use a generated offer as the *answer* to ours, after trimming it to our m-line
    count: accept_answer either agrees or fails with SdpError, never anything else."""
    ours = build_offer(CAPS, session_id=1, session_version=1)
    peer.media = peer.media[:1]
    try:
        media = accept_answer(ours, peer, CAPS)
    except SdpError:
        return
    assert media.codec in (Codec.PCMU, Codec.PCMA)
    assert (media.payload_type, media.codec) in [
        (p, c) for p in peer.media[0].payload_types
        if (m := peer.media[0].rtpmap(p)) is not None and (c := Codec.matching(m)) is not None]
    assert (media.codec.static_payload_type, media.codec) in media.receive_codecs


# -- fuzz ---------------------------------------------------------------------------------------


def exercise(data: bytes | str) -> None:
    """Parse; if that works, the model must round-trip and negotiation must end in an
    Answer or an SdpError."""
    try:
        sdp = SessionDescription.parse(data)
    except SdpError:
        return
    again = SessionDescription.parse(sdp.serialize())
    assert again == sdp
    try:
        answer = negotiate_answer(sdp, CAPS, session_id=1, session_version=1)
    except SdpError:
        return
    assert len(answer.sdp.media) == len(sdp.media)
    assert SessionDescription.parse(answer.sdp.serialize()) == answer.sdp


@given(st.binary(max_size=300))
@FUZZ
def test_random_bytes(data: bytes) -> None:
    exercise(data)
    exercise(b"v=0\r\n" + data)


FRAGMENTS = [
    "v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "c=IN IP6 ::1",
    "c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0 8 101", "m=video 0 RTP/AVP 31",
    "m=audio 4000 RTP/SAVP 0", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
    "a=ptime:30", "a=maxptime:20", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv",
    "a=rtcp:4001 IN IP4 192.0.2.9", "a=rtcp-mux", "a=rtpmap:8 PCMA/8000", "b=AS:64",
    "a=rtpmap:0 PCMU/8000", "m=image 4000 udptl t38", "c=IN IP4 224.0.0.1/1/2",
]
NOISE = " :/=.0123456789-abcIPN\t\x00\r\xe9\u2028"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(FIXTURE_TEXTS)).split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "dup", "insert", "char", "cut", "swap"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(FRAGMENTS)))
        elif op == "char" and lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.sampled_from(NOISE)) + lines[i][j + 1:]
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines)


@given(mutated())
@FUZZ
def test_mutated_captures(text: str) -> None:
    exercise(text)
    exercise(text.encode("utf-8", "surrogateescape"))


@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS),
                          st.builds(lambda t, v: f"{t}={v}", st.sampled_from("vosctmab"),
                                    st.text(alphabet=NOISE + "RTP/AVPaudio", max_size=20))),
                max_size=12))
@FUZZ
def test_random_line_sequences(lines: list[str]) -> None:
    exercise("\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", *lines]))
