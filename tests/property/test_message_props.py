"""Hypothesis: the SIP parser round-trips what it serialises, and never fails on any
input with anything but ParseError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.sip.errors import ParseError
from hotline.sip.message import Request, Response, StreamFramer, parse_message
from hotline.sip.uri import SipURI, parse_uri

token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1, max_size=12,
)
host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,8}(\.[a-z][a-z0-9]{0,6}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[2001:db8::10]", "[::1]", "[2001:db8::192.0.2.1]"]),
)
user = st.text(min_size=1, max_size=10)  # any characters: escaping must carry them
port = st.one_of(st.none(), st.integers(1, 65535))
param_name = st.from_regex(r"[a-z][a-z0-9\-]{0,6}", fullmatch=True)
param_value = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9\-_.!~*]{1,8}", fullmatch=True))


@st.composite
def sip_uris(draw: st.DrawFn) -> SipURI:
    u = SipURI(draw(host), draw(st.one_of(st.none(), user)), None, draw(port),
               scheme=draw(st.sampled_from(["sip", "sips"])))
    for name, value in draw(st.lists(st.tuples(param_name, param_value), max_size=3,
                                     unique_by=lambda t: t[0])):
        u.params.set(name, value)
    return u


@given(sip_uris())
@settings(max_examples=200)
def test_uri_round_trip(uri: SipURI) -> None:
    again = parse_uri(str(uri))
    assert isinstance(again, SipURI)
    assert again.user == uri.user
    assert again.host == uri.host and again.port == uri.port
    assert again.params.items() == uri.params.items()
    assert str(again) == str(uri)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "REGISTER", "INFO", "FOO"]))
    ruri = draw(sip_uris())
    body = draw(st.binary(max_size=200))
    branch = "z9hG4bK" + draw(token)
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {draw(host)}:{draw(st.integers(1, 65535))};branch={branch}",
        f"{draw(st.sampled_from(['From', 'f', 'FROM']))}: "
        f"\"{draw(st.text(alphabet='abc xyz', max_size=8))}\" <{draw(sip_uris())}>;tag={draw(token)}",
        f"{draw(st.sampled_from(['To', 't']))}: <{draw(sip_uris())}>",
        f"{draw(st.sampled_from(['Call-ID', 'i']))}: {draw(token)}@{draw(host)}",
        f"CSeq: {draw(st.integers(0, 2**32 - 1))} {method}",
        f"Max-Forwards: {draw(st.integers(0, 255))}",
    ]
    extra = draw(st.lists(st.tuples(token, token), max_size=3))
    lines += [f"X-{k}: {v}" for k, v in extra]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@given(requests())
@settings(max_examples=200)
def test_request_round_trip(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    again = parse_message(msg.to_bytes())
    assert isinstance(again, Request)
    assert again.method == msg.method
    assert str(again.uri) == str(msg.uri)
    assert again.body == msg.body
    assert list(again.headers) == list(msg.headers) or all(
        again.headers.get(n) == v for n, v in msg.headers if n != "Content-Length"
    )
    assert again.cseq == msg.cseq
    assert again.from_.tag == msg.from_.tag
    assert [str(v) for v in again.vias] == [str(v) for v in msg.vias]


@given(requests(), st.integers(1, 40))
@settings(max_examples=100)
def test_stream_framing_any_split(data: bytes, chunk: int) -> None:
    framer = StreamFramer()
    frames: list[bytes] = []
    stream = data + data
    for i in range(0, len(stream), chunk):
        framer.feed(stream[i : i + chunk])
        while (f := framer.next_frame()) is not None:
            frames.append(f)
    assert frames == [data, data]


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except ParseError as exc:
        assert exc.status in (None, 400, 505, 513)
        return
    assert isinstance(msg, Request | Response)


@given(requests(), st.data())
@settings(max_examples=200)
def test_mutated_requests_only_raise_parse_error(data: bytes, d: st.DataObject) -> None:
    pos = d.draw(st.integers(0, len(data) - 1))
    junk = d.draw(st.binary(min_size=1, max_size=4))
    mutated = data[:pos] + junk + data[pos + d.draw(st.integers(0, 3)):]
    try:
        msg = parse_message(mutated)
    except ParseError:
        return
    # Whatever parsed must serialise and parse again.
    parse_message(msg.to_bytes())
