"""Hypothesis: authentication headers parse with no error but AuthHeaderError and
round-trip through format; client and verifier agree for any user, password, method and
URI; the replay table matches a simple model; a rate limiter never lets through more than
its burst plus what its rate refilled."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.sip.auth import (
    Algorithm,
    AuthHeader,
    AuthHeaderError,
    AuthStatus,
    DigestClient,
    DigestVerifier,
    NonceCounts,
    compute_secrets,
    parse_auth_header,
    parse_auth_headers,
)
from hotline.sip.ratelimit import RateLimiter

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
token = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=10)
# Anything but CR and LF can be carried in a quoted-string (other controls as quoted-pairs).
value = st.text(st.characters(exclude_characters="\r\n"),
                max_size=16)
token68 = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,12}={0,2}", fullmatch=True)


@st.composite
def auth_headers(draw: st.DrawFn) -> AuthHeader:
    scheme = draw(token)
    if draw(st.booleans()) and scheme.lower() != "digest":
        return AuthHeader(scheme, (), draw(token68))
    params = draw(st.lists(st.tuples(token, value), max_size=6,
                           unique_by=lambda p: p[0].lower()))
    return AuthHeader(scheme, tuple(params))


# Text that looks like header values, to reach deep into the parser.
near_header = st.text(alphabet='Digest realm=nonce"\\, \t=aB1-/+_\r\n\x00é', max_size=60)


@given(st.one_of(st.text(max_size=80), near_header))
@settings(max_examples=200)
def test_parsing_raises_nothing_but_auth_header_error(text: str) -> None:
    for parse in (parse_auth_header, parse_auth_headers):
        try:
            parse(text)
        except AuthHeaderError as exc:
            assert exc.reason and exc.status == 400


@given(auth_headers())
@settings(max_examples=200)
def test_format_then_parse_round_trips(header: AuthHeader) -> None:
    assert parse_auth_header(str(header)) == header


@given(st.lists(auth_headers(), min_size=1, max_size=3))
@settings(max_examples=100)
def test_several_challenges_in_one_value_round_trip(headers: list[AuthHeader]) -> None:
    # A scheme without parameters, or a token68, must not swallow the next challenge.
    text = ", ".join(str(h) for h in headers)
    assert parse_auth_headers(text) == headers


class Counter:
    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return hashlib.sha256(f"{self.seed}{self.n}".encode()).digest()[:size]


usernames = st.text(st.characters(exclude_characters="\r\n"),
                    min_size=1, max_size=12)
passwords = st.text(max_size=16)
uris = st.sampled_from(["sip:registrar.example.org", "sip:1000@192.0.2.1:5080;transport=tcp",
                        "sips:[2001:db8::1]", "tel:+15551234567"])
methods = st.sampled_from(["REGISTER", "INVITE", "BYE", "OPTIONS"])


@given(usernames, passwords, st.sampled_from(list(Algorithm)), uris, methods,
       st.floats(0, 1e6))
@settings(max_examples=100, deadline=None)
def test_client_and_verifier_agree(user: str, password: str, alg: Algorithm, uri: str,
                                   method: str, now: float) -> None:
    realm = "hotline"
    secrets = {user: compute_secrets(user, realm, password)}
    v = DigestVerifier(realm, b"property-test-secret-0123", secrets.get,
                       random_bytes=Counter("s"), algorithms=list(Algorithm))
    c = DigestClient(user, password, random_bytes=Counter("c"), algorithms=[alg])
    value = c.authorize(v.challenge(now), method, uri)
    out = v.verify(method, uri, value, now)
    assert out.status is AuthStatus.ACCEPTED and out.username == user and out.algorithm is alg
    wrong = DigestClient(user, password + "x", random_bytes=Counter("w"), algorithms=[alg])
    bad = v.verify(method, uri, wrong.authorize(v.challenge(now), method, uri), now)
    assert bad.status is AuthStatus.FAILED


@given(st.lists(st.integers(1, 120), max_size=60), st.integers(1, 40))
@settings(max_examples=200)
def test_nonce_counts_match_a_model(ncs: list[int], window: int) -> None:
    counts = NonceCounts(ttl=1000, window=window)
    seen: set[int] = set()
    highest = 0
    for nc in ncs:
        expected = nc not in seen and nc > highest - window
        assert counts.use("n", nc, 0.0, 0.0) is expected
        if expected:
            seen.add(nc)
            highest = max(highest, nc)


@given(st.floats(0.1, 100), st.floats(1, 50),
       st.lists(st.tuples(st.floats(0, 2), st.floats(0, 5)), max_size=80))
@settings(max_examples=200)
def test_rate_limiter_never_exceeds_burst_plus_refill(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    rl = RateLimiter(rate, burst)
    now = 0.0
    spent = 0.0
    for dt, cost in steps:
        now += dt
        if rl.allow("k", now, cost):
            spent += cost
        assert spent <= burst + rate * now + 1e-6
        assert 0.0 <= rl.tokens("k", now) <= burst
