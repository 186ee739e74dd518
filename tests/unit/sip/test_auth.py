"""Digest authentication: header syntax, published vectors, nonces, replay protection, the
verifier, the client, and the fail2ban record. Fake clock and deterministic randomness."""

from __future__ import annotations

import configparser
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from hotline.sip import auth
from hotline.sip.auth import (
    Algorithm,
    AuthHeader,
    AuthHeaderError,
    AuthOutcome,
    AuthReason,
    AuthStatus,
    CredentialsRejected,
    DigestClient,
    DigestClientError,
    DigestVerifier,
    NonceCounts,
    NonceIssuer,
    NonceStatus,
    NoUsableChallenge,
    auth_failure_line,
    compute_ha1,
    compute_response,
    compute_secrets,
    format_auth_header,
    parse_auth_header,
    parse_auth_headers,
)
from hotline.sip.errors import ParseError
from hotline.sip.message import Request, parse_message

ROOT = Path(__file__).resolve().parents[3]
FILTER = ROOT / "deploy" / "fail2ban" / "filter.d" / "hotline.conf"
JAIL = ROOT / "deploy" / "fail2ban" / "jail.d" / "hotline.conf"

SECRET = b"0123456789abcdef-server-secret-!"
REALM = "hotline"
PASSWORDS = {"alice": "wonderland", "bob": "builder"}
RURI = "sip:registrar.example.org"


class FakeRandom:
    """Deterministic bytes: SHA-256 of a counter, as long as asked."""

    def __init__(self, seed: str = "r") -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(f"{self.seed}:{self.calls}:{block}".encode()).digest()
            block += 1
        return out[:n]


class Directory:
    """A secret store that records who was looked up."""

    def __init__(self, realm: str = REALM, passwords: Mapping[str, str] = PASSWORDS) -> None:
        self.secrets = {u: compute_secrets(u, realm, p) for u, p in passwords.items()}
        self.looked_up: list[str] = []

    def __call__(self, username: str) -> Mapping[Algorithm, str] | None:
        self.looked_up.append(username)
        return self.secrets.get(username)


def make_verifier(**kw: object) -> DigestVerifier:
    args: dict[str, object] = {"random_bytes": FakeRandom("server")}
    args.update(kw)
    lookup = args.pop("lookup", Directory())
    return DigestVerifier(REALM, SECRET, lookup, **args)  # type: ignore[arg-type]


def client(user: str = "alice", password: str | None = None, **kw: object) -> DigestClient:
    pw = PASSWORDS.get(user, "x") if password is None else password
    return DigestClient(user, pw, random_bytes=FakeRandom("client"), **kw)  # type: ignore[arg-type]


def answer(v: DigestVerifier, c: DigestClient, now: float = 100.0, method: str = "REGISTER",
           uri: str = RURI) -> str:
    return c.authorize(v.challenge(now), method, uri)


# ---------------------------------------------------------------------------
# Header syntax
# ---------------------------------------------------------------------------


def test_parse_challenge() -> None:
    h = parse_auth_header(
        'Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth", '
        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5',
        "WWW-Authenticate",
    )
    assert h.is_digest and h.scheme == "Digest" and h.token68 is None
    assert h.get("realm") == "atlanta.com"
    assert h.get("opaque") == "" and "opaque" in h
    assert h.get("stale") == "FALSE" and h.get("algorithm") == "MD5"
    assert [n for n, _ in h.params] == ["realm", "domain", "qop", "nonce", "opaque", "stale",
                                       "algorithm"]


def test_lws_around_equals_and_commas_and_folding() -> None:
    h = parse_auth_header('  Digest  realm = "x" ,nonce= "y",\tqop =auth  ')
    assert h.params == (("realm", "x"), ("nonce", "y"), ("qop", "auth"))
    folded = parse_auth_header('Digest realm="x",\r\n nonce="y"')
    assert folded.params == (("realm", "x"), ("nonce", "y"))


def test_names_are_case_insensitive_and_kept_as_written() -> None:
    h = parse_auth_header('digest REALM="x", NoNcE="y"')
    assert h.is_digest
    assert h.get("realm") == "x" and h.get("Nonce") == "y"
    assert h.params[0][0] == "REALM"


def test_quoted_string_escapes_are_resolved() -> None:
    h = parse_auth_header(r'Digest username="a\"b\\c", realm="sp ace,comma=eq"')
    assert h.get("username") == 'a"b\\c'
    assert h.get("realm") == "sp ace,comma=eq"


def test_unknown_scheme_rfc4475_regaut01() -> None:
    h = parse_auth_header("NoOneKnowsThisScheme opaque-data=here")
    assert h == AuthHeader("NoOneKnowsThisScheme", (("opaque-data", "here"),))
    assert not h.is_digest


def test_token68_and_several_challenges_in_one_value() -> None:
    assert parse_auth_header("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==") == AuthHeader(
        "Basic", (), "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    )
    many = parse_auth_headers('Basic realm="x", Digest realm="y", nonce="n"')
    assert many == [AuthHeader("Basic", (("realm", "x"),)),
                    AuthHeader("Digest", (("realm", "y"), ("nonce", "n")))]
    assert parse_auth_headers('Negotiate, Basic QWxh==, Digest realm="y"') == [
        AuthHeader("Negotiate"), AuthHeader("Basic", (), "QWxh=="),
        AuthHeader("Digest", (("realm", "y"),)),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Authorization: empty value"),
        ("  \t", "Authorization: empty value"),
        ("Digest realm", "Authorization: expected '=' after parameter name 'realm', found end of value"),
        ("Digest realm=", "Authorization: expected a token or quoted-string value for parameter 'realm', found end of value"),
        ("Digest realm=;", "Authorization: expected a token or quoted-string value for parameter 'realm', found ';'"),
        ('Digest realm="abc', "Authorization: unterminated quoted string for 'realm': '\"abc'"),
        ('Digest realm="abc\\', "Authorization: unterminated quoted string for 'realm': '\"abc\\\\'"),
        ('Digest realm="a", realm="b"', "Authorization: duplicate parameter 'realm'"),
        ('Digest realm="a", REALM="b"', "Authorization: duplicate parameter 'REALM'"),
        ('Digest realm="a",', "Authorization: expected a parameter after ',', found end of value"),
        ('Digest realm="a",, nonce="b"', "Authorization: empty element between commas"),
        ('Digest realm="a" nonce="b"', "Authorization: expected ',' or the end of the value after parameter 'realm', found 'nonce=\"b\"'"),
        ("Digest realm=a b", "Authorization: expected ',' or the end of the value after parameter 'realm', found 'b'"),
        ('Digest realm="a\x01"', "Authorization: control character '\\x01' in the quoted value of 'realm'"),
        ('Digest realm="a"\r\nnonce="b"', "Authorization: line break not followed by whitespace"),
        ('"Digest" realm=x', "Authorization: expected an authentication scheme, found '\"Digest\" realm=x'"),
        ("Digest=realm", "Authorization: expected a space after the scheme 'Digest', found '=realm'"),
        ('Digest ,realm="a"', "Authorization: expected a parameter after the scheme 'Digest', found ',realm=\"a\"'"),
        ('Digest realm="a", "junk"', "Authorization: expected a parameter name or another scheme after ',', found '\"junk\"'"),
        ('Digest realm="a", Basic', "Authorization: expected one scheme, found 2"),
        ("Digest abc", "Authorization: expected '=' after parameter name 'abc', found end of value"),
    ],
)
def test_malformed_headers_raise_precise_errors(value: str, message: str) -> None:
    with pytest.raises(AuthHeaderError) as info:
        parse_auth_header(value, "Authorization")
    assert str(info.value) == message
    assert isinstance(info.value, ParseError) and info.value.status == 400


def test_format_quotes_what_the_grammar_quotes() -> None:
    h = AuthHeader("Digest", (("username", "alice"), ("realm", "r"), ("algorithm", "MD5"),
                              ("qop", "auth"), ("nc", "00000001"), ("x", "two words")))
    assert str(h) == ('Digest username="alice", realm="r", algorithm=MD5, qop=auth, '
                      'nc=00000001, x="two words"')
    assert format_auth_header(AuthHeader("Digest", (("qop", "auth"),)),
                              quoted={"qop"}) == 'Digest qop="auth"'
    tricky = AuthHeader("Digest", (("username", 'q"b\\s\x01\tt'), ("e", "")))
    assert str(tricky) == 'Digest username="q\\"b\\\\s\\\x01\tt", e=""'
    assert parse_auth_header(str(tricky)) == tricky
    assert str(AuthHeader("Negotiate")) == "Negotiate"
    assert str(AuthHeader("Basic", (), "QWxh==")) == "Basic QWxh=="


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (AuthHeader("Digest", (("realm", "a\r\nb"),)),
         "a CR or LF cannot be carried in an authentication header"),
        (AuthHeader("Dig est"), "authentication scheme 'Dig est' is not a token"),
        (AuthHeader("Digest", (("re alm", "x"),)), "parameter name 're alm' is not a token"),
        (AuthHeader("Basic", (("a", "b"),), "xyz"),
         "an authentication header has either a token68 or parameters"),
        (AuthHeader("Basic", (), "a b"), "'a b' is not a token68"),
    ],
)
def test_format_refuses_what_no_header_can_carry(header: AuthHeader, message: str) -> None:
    with pytest.raises(ValueError) as info:
        format_auth_header(header)
    assert str(info.value) == message


# ---------------------------------------------------------------------------
# Algorithms and published vectors
# ---------------------------------------------------------------------------


def test_algorithm_names() -> None:
    assert Algorithm.parse("sha-256") is Algorithm.SHA256
    assert Algorithm.parse("MD5-SESS") is Algorithm.MD5_SESS
    assert Algorithm.parse("SHA-1") is None
    assert Algorithm.SHA512_256_SESS.base is Algorithm.SHA512_256
    assert Algorithm.SHA256_SESS.session and not Algorithm.SHA256.session
    assert Algorithm.SHA512_256.strength > Algorithm.SHA256.strength > Algorithm.MD5.strength
    assert Algorithm.MD5_SESS.strength == Algorithm.MD5.strength


# RFC 7616 §3.9.1: GET /dir/index.html, user Mufasa, password "Circle of Life".
RFC7616 = {
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}
RFC7616_RESPONSES = {
    Algorithm.MD5: "8ca523f5e9506fed4657c9700eebdbec",
    Algorithm.SHA256: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


@pytest.mark.parametrize("alg", [Algorithm.MD5, Algorithm.SHA256])
def test_rfc7616_example(alg: Algorithm) -> None:
    ha1 = compute_ha1("Mufasa", RFC7616["realm"], "Circle of Life", alg)
    got = compute_response(algorithm=alg, ha1=ha1, nonce=RFC7616["nonce"], method="GET",
                           uri="/dir/index.html", qop="auth", nc="00000001",
                           cnonce=RFC7616["cnonce"])
    assert got == RFC7616_RESPONSES[alg]


def test_rfc2617_example() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", Algorithm.MD5)
    got = compute_response(algorithm=Algorithm.MD5, ha1=ha1,
                           nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", method="GET",
                           uri="/dir/index.html", qop="auth", nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_sha512_256_is_the_fips_function_not_truncated_sha512() -> None:
    # FIPS 180-4 example: SHA-512/256("abc").
    assert hashlib.new("sha512_256", b"abc").hexdigest() == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23")
    ha1 = compute_ha1("a", "b", "c", Algorithm.SHA512_256)
    assert ha1 == hashlib.new("sha512_256", b"a:b:c").hexdigest()
    assert ha1 != hashlib.sha512(b"a:b:c").hexdigest()[:64]
    assert len(ha1) == 64


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_sess_and_rfc2069_formulas() -> None:
    ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5("GET:/dir/index.html")
    nonce, cnonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b"
    sess = md5(f"{ha1}:{nonce}:{cnonce}")
    assert compute_response(algorithm=Algorithm.MD5_SESS, ha1=ha1, nonce=nonce, method="GET",
                            uri="/dir/index.html", qop="auth", nc="00000001",
                            cnonce=cnonce) == md5(f"{sess}:{nonce}:00000001:{cnonce}:auth:{ha2}")
    assert compute_response(algorithm=Algorithm.MD5, ha1=ha1, nonce=nonce, method="GET",
                            uri="/dir/index.html", qop=None) == md5(f"{ha1}:{nonce}:{ha2}")
    with pytest.raises(ValueError, match="needs a cnonce"):
        compute_response(algorithm=Algorithm.MD5_SESS, ha1=ha1, nonce=nonce, method="GET",
                         uri="/", qop=None)
    with pytest.raises(ValueError, match="only 'auth'"):
        compute_response(algorithm=Algorithm.MD5, ha1=ha1, nonce=nonce, method="GET", uri="/",
                         qop="auth-int", nc="00000001", cnonce="c")


def test_compute_secrets_keys_by_base_algorithm() -> None:
    s = compute_secrets("alice", REALM, "pw")
    assert set(s) == {Algorithm.MD5, Algorithm.SHA256, Algorithm.SHA512_256}
    assert s[Algorithm.MD5] == hashlib.md5(b"alice:hotline:pw").hexdigest()
    assert compute_secrets("a", "r", "p", [Algorithm.SHA256_SESS]) == {
        Algorithm.SHA256: compute_ha1("a", "r", "p", Algorithm.SHA256)}


# ---------------------------------------------------------------------------
# Nonces
# ---------------------------------------------------------------------------

RND = bytes(range(11))


def test_nonce_lifecycle() -> None:
    issuer = NonceIssuer(SECRET, REALM, ttl=300)
    nonce = issuer.issue(1000.0, RND)
    assert len(nonce) == 48 and re.fullmatch(r"[A-Za-z0-9_-]+", nonce)
    ok = issuer.check(nonce, 1000.0)
    assert ok.status is NonceStatus.VALID and ok.issued == pytest.approx(1000.0)
    assert issuer.check(nonce, 1300.0).status is NonceStatus.VALID
    stale = issuer.check(nonce, 1300.01)
    assert stale.status is NonceStatus.STALE and stale.issued == pytest.approx(1000.0)
    assert issuer.issue(1000.0, bytes(11)) != nonce


def test_forged_and_foreign_nonces_are_invalid() -> None:
    issuer = NonceIssuer(SECRET, REALM)
    nonce = issuer.issue(50.0, RND)
    flipped = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    for bad in [flipped, nonce[:-1], nonce + "A", "", "!" * 48, nonce[:20] + "+" + nonce[21:],
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "é" * 48]:
        assert issuer.check(bad, 60.0).status is NonceStatus.INVALID, bad
    other_secret = NonceIssuer(b"another secret, 16+ bytes", REALM)
    other_realm = NonceIssuer(SECRET, "elsewhere")
    assert other_secret.check(nonce, 60.0).status is NonceStatus.INVALID
    assert other_realm.check(nonce, 60.0).status is NonceStatus.INVALID
    assert issuer.check(nonce, 49.0).status is NonceStatus.INVALID  # issued in the future


def test_nonce_issuer_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        NonceIssuer(b"short", REALM)
    with pytest.raises(ValueError, match="TTL must be positive"):
        NonceIssuer(SECRET, REALM, ttl=0)
    issuer = NonceIssuer(SECRET, REALM)
    with pytest.raises(ValueError, match="needs 11 random bytes, got 4"):
        issuer.issue(0.0, b"1234")
    with pytest.raises(ValueError, match="finite"):
        issuer.issue(float("nan"), RND)
    assert "secret" not in repr(issuer) and SECRET.decode() not in repr(issuer)


# ---------------------------------------------------------------------------
# Nonce counts
# ---------------------------------------------------------------------------


def test_nonce_counts_in_order_out_of_order_and_replays() -> None:
    counts = NonceCounts(ttl=300, window=32)
    assert [counts.use("n", nc, 0.0, 1.0) for nc in (1, 2, 3)] == [True, True, True]
    assert not counts.use("n", 2, 0.0, 1.0)  # replay
    assert counts.use("n", 40, 0.0, 1.0)  # a jump ahead
    assert counts.use("n", 10, 0.0, 1.0)  # 30 behind: inside the window
    assert not counts.use("n", 10, 0.0, 1.0)
    assert not counts.use("n", 8, 0.0, 1.0)  # 32 behind: outside the window
    assert not counts.use("n", 0, 0.0, 1.0)
    assert counts.use("other", 5, 0.0, 1.0)  # nonces are independent
    assert counts.use("n", 200, 0.0, 1.0) and not counts.use("n", 200, 0.0, 1.0)
    assert counts.use("n", 199, 0.0, 1.0)


def test_nonce_counts_memory_is_bounded_and_forgotten_nonces_are_refused() -> None:
    counts = NonceCounts(ttl=300, max_nonces=2)
    assert counts.use("a", 1, 10.0, 20.0)
    assert counts.use("b", 1, 11.0, 20.0)
    assert counts.use("c", 1, 12.0, 20.0)
    assert len(counts) == 2
    assert not counts.use("a", 2, 10.0, 20.0)  # evicted: cannot vouch for it any more
    assert not counts.use("z", 1, 9.0, 20.0)  # never seen, but issued before the eviction
    assert counts.use("d", 1, 13.0, 20.0)  # issued later: fine


def test_nonce_counts_expire() -> None:
    counts = NonceCounts(ttl=100)
    for i in range(5):
        counts.use(f"n{i}", 1, float(i * 50), float(i * 50))
    assert len(counts) == 3  # uses past the TTL drop the oldest entries as they go
    assert counts.expire(250.0) == 1  # n3 (150) and n4 (200) remain within 100 s
    assert len(counts) == 2
    assert counts.expire(1000.0) == 2 and len(counts) == 0


def test_nonce_counts_validation() -> None:
    with pytest.raises(ValueError, match="window must be 1-1024, got 0"):
        NonceCounts(ttl=1, window=0)
    with pytest.raises(ValueError, match="max_nonces must be at least 1"):
        NonceCounts(ttl=1, max_nonces=0)


# ---------------------------------------------------------------------------
# Verifier
# ---------------------------------------------------------------------------


def test_challenge_shape() -> None:
    v = make_verifier(opaque="op4que")
    values = v.challenge(10.0)
    assert len(values) == 2
    hs = [parse_auth_header(x, "WWW-Authenticate") for x in values]
    assert [h.get("algorithm") for h in hs] == ["SHA-256", "MD5"]
    assert hs[0].get("nonce") == hs[1].get("nonce")
    for raw, h in zip(values, hs, strict=True):
        assert raw.startswith('Digest realm="hotline", nonce="')
        assert 'qop="auth"' in raw and "stale" not in raw
        assert h.get("opaque") == "op4que"
    stale = v.challenge(10.0, stale=True)
    assert all(x.endswith(", stale=true") for x in stale)
    assert v.challenge(10.0)[0] != values[0]  # a fresh nonce each time
    assert v.status_code == 401 and v.challenge_header == "WWW-Authenticate"
    assert [n for n, _ in v.challenge_headers(1.0)] == ["WWW-Authenticate"] * 2
    p = make_verifier(proxy=True, algorithms=[Algorithm.SHA512_256])
    assert p.status_code == 407 and p.credentials_header == "Proxy-Authorization"
    assert [n for n, _ in p.challenge_headers(1.0)] == ["Proxy-Authenticate"]


@pytest.mark.parametrize("alg", list(Algorithm))
def test_round_trip_every_algorithm(alg: Algorithm) -> None:
    v = make_verifier(algorithms=list(Algorithm))
    c = client(algorithms=[alg])
    value = answer(v, c)
    assert f"algorithm={alg.value}," in value and "qop=auth, nc=00000001" in value
    out = v.verify("REGISTER", RURI, value, 100.5)
    assert out == AuthOutcome(AuthStatus.ACCEPTED, "alice", None, "", alg)
    assert out.accepted


def test_client_picks_the_strongest_offer() -> None:
    v = make_verifier(algorithms=[Algorithm.MD5, Algorithm.SHA256])  # MD5 preferred by server
    c = client()
    value = answer(v, c)
    assert c.algorithm is Algorithm.SHA256 and "algorithm=SHA-256" in value
    assert v.verify("REGISTER", RURI, value, 101.0).accepted
    follow = client(prefer_server_order=True)
    assert "algorithm=MD5," in answer(v, follow)


@pytest.mark.parametrize("value", [None, [], ["NoOneKnowsThisScheme opaque-data=here"],
                                   ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]])
def test_missing_credentials(value: list[str] | None) -> None:
    out = make_verifier().verify("REGISTER", RURI, value, 1.0)
    assert out == AuthOutcome(AuthStatus.MISSING)


def test_wrong_realm() -> None:
    v = make_verifier()
    other = DigestVerifier("elsewhere", SECRET, Directory("elsewhere"), random_bytes=FakeRandom())
    value = answer(other, client())
    out = v.verify("REGISTER", RURI, value, 100.0)
    assert out.status is AuthStatus.FAILED and out.reason is AuthReason.WRONG_REALM
    assert out.username == "alice"
    assert out.detail == "credentials are for realm 'elsewhere', not 'hotline'"


def test_credentials_for_several_realms_pick_ours() -> None:
    v = make_verifier()
    other = DigestVerifier("elsewhere", SECRET, Directory("elsewhere"), random_bytes=FakeRandom())
    values = [answer(other, client()), answer(v, client())]
    assert v.verify("REGISTER", RURI, values, 100.0).accepted


def test_wrong_uri_and_loose_uri_match() -> None:
    v = make_verifier()
    value = client().authorize(v.challenge(100.0), "REGISTER", "sip:attacker.example")
    out = v.verify("REGISTER", RURI, value, 100.0)
    assert out.reason is AuthReason.WRONG_URI
    assert out.detail == ("digest uri 'sip:attacker.example' does not match the Request-URI "
                          "'sip:registrar.example.org'")
    # Parameters, host case and an explicit default port do not matter.
    loose = client().authorize(v.challenge(100.0), "INVITE",
                               "sip:1000@REGISTRAR.example.org:5060;transport=udp")
    assert v.verify("INVITE", "sip:1000@registrar.example.org", loose, 100.0).accepted
    # ...but the user part and a non-default port do.
    other_port = client().authorize(v.challenge(100.0), "INVITE", "sip:1000@registrar.example.org:5080")
    assert v.verify("INVITE", "sip:1000@registrar.example.org",
                    other_port, 100.0).reason is AuthReason.WRONG_URI


def test_missing_parameters_are_malformed() -> None:
    v = make_verifier()
    good = parse_auth_header(answer(v, client()))
    for name in ("uri", "nonce", "response", "cnonce", "nc"):
        cut = AuthHeader("Digest", tuple(p for p in good.params if p[0] != name))
        out = v.verify("REGISTER", RURI, str(cut), 100.0)
        assert out.status is AuthStatus.FAILED and out.reason is AuthReason.MALFORMED, name
        assert out.username == "alice"
    no_uri = AuthHeader("Digest", tuple(p for p in good.params if p[0] != "uri"))
    assert v.verify("REGISTER", RURI, str(no_uri), 100.0).detail == "missing 'uri' parameter"
    no_user = AuthHeader("Digest", tuple(p for p in good.params if p[0] != "username"))
    out = v.verify("REGISTER", RURI, str(no_user), 100.0)
    assert (out.reason, out.username, out.detail) == (
        AuthReason.MALFORMED, None, "missing 'username' parameter")


def test_malformed_header_is_a_failure_with_the_parser_message() -> None:
    out = make_verifier().verify("REGISTER", RURI, 'Digest username="alice", realm="hot', 1.0)
    assert out.status is AuthStatus.FAILED and out.reason is AuthReason.MALFORMED
    assert out.detail == ("Authorization: unterminated quoted string for 'realm': '\"hot'")


def _with(value: str, **changes: str | None) -> str:
    h = parse_auth_header(value)
    params = [(n, changes.get(n, v)) for n, v in h.params if changes.get(n, v) is not None]
    params += [(n, v) for n, v in changes.items() if v is not None and n not in h]
    return str(AuthHeader(h.scheme, tuple((n, v) for n, v in params if v is not None)))


def test_bad_nc_and_response_formats() -> None:
    v = make_verifier()
    value = answer(v, client())
    for nc in ("1", "0000000g", "00000000", "000000001"):
        out = v.verify("REGISTER", RURI, _with(value, nc=nc), 100.0)
        assert out.reason is AuthReason.MALFORMED, nc
    out = v.verify("REGISTER", RURI, _with(value, nc="0000000g"), 100.0)
    assert out.detail == "nc '0000000g' is not 8 hex digits above zero"
    out = v.verify("REGISTER", RURI, _with(value, response="zz"), 100.0)
    assert (out.reason, out.detail) == (AuthReason.MALFORMED, "response is not hexadecimal")
    upper = parse_auth_header(value).get("response") or ""
    assert v.verify("REGISTER", RURI, _with(value, response=upper.upper()), 100.0).accepted


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    v = make_verifier(nonce_ttl=300)
    c = client()
    value = answer(v, c, now=100.0)
    out = v.verify("REGISTER", RURI, value, 400.5)
    assert (out.status, out.reason) == (AuthStatus.STALE, AuthReason.EXPIRED_NONCE)
    headers = v.rejection_headers(out, 400.5)
    assert headers and all(val.endswith("stale=true") for _, val in headers)
    # The client answers the stale challenge with the same credentials, no error.
    again = c.authorize([val for _, val in headers], "REGISTER", RURI)
    assert v.verify("REGISTER", RURI, again, 401.0).accepted
    wrong = answer(v, client(password="guess"), now=100.0)
    out = v.verify("REGISTER", RURI, wrong, 400.5)
    assert (out.status, out.reason) == (AuthStatus.FAILED, AuthReason.BAD_RESPONSE)
    assert all("stale" not in val for _, val in v.rejection_headers(out, 400.5))


def test_forged_nonce() -> None:
    v = make_verifier()
    forged = 'Digest realm="hotline", nonce="AAAAforgedAAAA", algorithm=SHA-256, qop="auth"'
    wrong = client(password="guess").authorize(forged, "REGISTER", RURI)
    out = v.verify("REGISTER", RURI, wrong, 100.0)
    assert (out.status, out.reason) == (AuthStatus.FAILED, AuthReason.BAD_NONCE)
    # Right password on a nonce that is not ours (an old secret, a restart): stale.
    right = client().authorize(forged, "REGISTER", RURI)
    out = v.verify("REGISTER", RURI, right, 100.0)
    assert (out.status, out.reason) == (AuthStatus.STALE, AuthReason.UNKNOWN_NONCE)


@pytest.mark.parametrize("alg", [Algorithm.MD5, Algorithm.SHA256])
def test_rfc7616_credentials_through_the_verifier(alg: Algorithm) -> None:
    directory = Directory(RFC7616["realm"], {"Mufasa": "Circle of Life"})
    v = DigestVerifier(RFC7616["realm"], SECRET, directory, random_bytes=FakeRandom(),
                       opaque=RFC7616["opaque"])
    value = (f'Digest username="Mufasa", realm="{RFC7616["realm"]}", uri="/dir/index.html", '
             f'algorithm={alg.value}, nonce="{RFC7616["nonce"]}", nc=00000001, '
             f'cnonce="{RFC7616["cnonce"]}", qop=auth, response="{RFC7616_RESPONSES[alg]}", '
             f'opaque="{RFC7616["opaque"]}"')
    out = v.verify("GET", "/dir/index.html", value, 5.0)
    # The response is right; only the nonce is not one of ours.
    assert (out.status, out.reason, out.username) == (
        AuthStatus.STALE, AuthReason.UNKNOWN_NONCE, "Mufasa")
    bad = value.replace(RFC7616_RESPONSES[alg][:8], "00000000")
    assert v.verify("GET", "/dir/index.html", bad, 5.0).reason is AuthReason.BAD_NONCE


def test_replayed_nonce_count_is_refused_and_rechallenged() -> None:
    v = make_verifier()
    c = client()
    value = answer(v, c)
    assert v.verify("REGISTER", RURI, value, 100.0).accepted
    out = v.verify("REGISTER", RURI, value, 100.1)
    assert (out.status, out.reason) == (AuthStatus.STALE, AuthReason.NONCE_REUSED)
    fresh = c.authorize([x for _, x in v.rejection_headers(out, 100.1)], "REGISTER", RURI)
    assert v.verify("REGISTER", RURI, fresh, 100.2).accepted


def test_reordered_nonce_counts_within_the_window_are_accepted() -> None:
    v = make_verifier()
    c = client()
    first = answer(v, c)
    second = c.authorization("REGISTER", RURI)
    third = c.authorization("REGISTER", RURI)
    assert second is not None and third is not None
    assert "nc=00000003" in third
    assert [v.verify("REGISTER", RURI, x, 100.0).accepted for x in (third, first, second)] == [
        True, True, True]
    assert not v.verify("REGISTER", RURI, first, 100.0).accepted


def test_unknown_and_known_users_are_indistinguishable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Algorithm] = []
    real_h = auth._h

    def counting(algorithm: Algorithm, data: str) -> str:
        calls.append(algorithm)
        return real_h(algorithm, data)

    directory = Directory()
    v = make_verifier(lookup=directory)
    outcomes: list[AuthOutcome] = []
    work: list[list[Algorithm]] = []
    shapes: list[list[list[str]]] = []
    for user in ("alice", "mallory"):  # alice exists (wrong password), mallory does not
        value = answer(v, client(user, password="guess"))
        monkeypatch.setattr(auth, "_h", counting)
        calls.clear()
        out = v.verify("REGISTER", RURI, value, 100.0)
        work.append(list(calls))
        monkeypatch.setattr(auth, "_h", real_h)
        outcomes.append(AuthOutcome(out.status, None, out.reason, out.detail, out.algorithm))
        assert out.username == user
        rejection = v.rejection_headers(out, 100.0)
        shapes.append([[n for n, _ in parse_auth_header(val).params] + [name]
                       for name, val in rejection])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].status is AuthStatus.FAILED and outcomes[0].reason is AuthReason.BAD_RESPONSE
    assert work[0] == work[1] and len(work[0]) >= 2
    assert shapes[0] == shapes[1]
    assert directory.looked_up == ["alice", "mallory"]


def test_user_without_a_secret_for_the_algorithm_is_like_an_unknown_user() -> None:
    directory = Directory()
    directory.secrets["carol"] = {Algorithm.MD5: compute_ha1("carol", REALM, "pw", Algorithm.MD5)}
    v = make_verifier(lookup=directory)
    out = v.verify("REGISTER", RURI, answer(v, client("carol", password="pw")), 100.0)
    assert (out.status, out.reason) == (AuthStatus.FAILED, AuthReason.BAD_RESPONSE)
    md5 = client("carol", password="pw", algorithms=[Algorithm.MD5])
    assert v.verify("REGISTER", RURI, answer(v, md5), 100.0).accepted


def test_algorithm_not_offered() -> None:
    v = make_verifier(algorithms=[Algorithm.SHA256])
    value = answer(v, client())
    for alg in ("MD5", "SHA-1"):
        out = v.verify("REGISTER", RURI, _with(value, algorithm=alg), 100.0)
        assert out.reason is AuthReason.UNSUPPORTED_ALGORITHM
    out = v.verify("REGISTER", RURI, _with(value, algorithm="SHA-1"), 100.0)
    assert out.detail == "algorithm 'SHA-1' is not offered (offered: SHA-256)"
    # No algorithm parameter means MD5.
    out = v.verify("REGISTER", RURI, _with(value, algorithm=None), 100.0)
    assert out.reason is AuthReason.UNSUPPORTED_ALGORITHM


def test_auth_int_and_userhash_are_refused_with_a_reason() -> None:
    v = make_verifier()
    value = answer(v, client())
    out = v.verify("REGISTER", RURI, _with(value, qop="auth-int"), 100.0)
    assert (out.reason, out.detail) == (AuthReason.UNSUPPORTED_QOP,
                                        "qop 'auth-int' is not supported (only 'auth')")
    out = v.verify("REGISTER", RURI, _with(value, userhash="true"), 100.0)
    assert out.reason is AuthReason.UNSUPPORTED_USERHASH


def test_rfc2069_clients_only_when_allowed() -> None:
    strict = make_verifier()
    old_style = 'Digest realm="hotline", nonce="{}", algorithm=MD5'
    nonce = parse_auth_header(strict.challenge(100.0)[1]).get("nonce")
    value = client().authorize(old_style.format(nonce), "REGISTER", RURI)
    assert "qop" not in value and "nc=" not in value and "cnonce" not in value
    out = strict.verify("REGISTER", RURI, value, 100.0)
    assert (out.status, out.reason) == (AuthStatus.FAILED, AuthReason.MISSING_QOP)
    lenient = make_verifier(allow_no_qop=True)
    nonce = parse_auth_header(lenient.challenge(100.0)[1]).get("nonce")
    value = client().authorize(old_style.format(nonce), "REGISTER", RURI)
    assert lenient.verify("REGISTER", RURI, value, 100.0).accepted
    again = lenient.verify("REGISTER", RURI, value, 100.5)  # without nc a nonce is single-use
    assert (again.status, again.reason) == (AuthStatus.STALE, AuthReason.NONCE_REUSED)


def test_opaque_must_come_back() -> None:
    v = make_verifier(opaque="state-xyz")
    value = answer(v, client())
    assert 'opaque="state-xyz"' in value
    assert v.verify("REGISTER", RURI, value, 100.0).accepted
    value = answer(v, client())
    for changed in ("other", None):
        out = v.verify("REGISTER", RURI, _with(value, opaque=changed), 100.0)
        assert out.reason is AuthReason.BAD_OPAQUE


def _register(header: str, value: str) -> Request:
    raw = ("REGISTER sip:registrar.example.org SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776\r\n"
           "Max-Forwards: 70\r\n"
           "To: <sip:alice@registrar.example.org>\r\n"
           "From: <sip:alice@registrar.example.org>;tag=456\r\n"
           "Call-ID: 843817637684230@998sdasdh09\r\n"
           "CSeq: 1826 REGISTER\r\n"
           f"{header}: {value}\r\n"
           "Content-Length: 0\r\n\r\n").encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def test_verify_request_reads_the_right_header() -> None:
    v = make_verifier()
    value = answer(v, client(), method="REGISTER", uri="sip:registrar.example.org")
    assert v.verify_request(_register("Authorization", value), 100.0).accepted
    proxy = make_verifier(proxy=True)
    assert proxy.verify_request(_register("Authorization", value), 100.0).status is (
        AuthStatus.MISSING)
    pvalue = answer(proxy, client())
    assert proxy.verify_request(_register("Proxy-Authorization", pvalue), 100.0).accepted


def test_verifier_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="at least one digest algorithm"):
        make_verifier(algorithms=[])
    with pytest.raises(ValueError, match="offered once"):
        make_verifier(algorithms=[Algorithm.MD5, Algorithm.MD5])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DigestVerifier(REALM, b"short", Directory(), random_bytes=FakeRandom())
    with pytest.raises(ValueError, match="realm must not be empty"):
        DigestVerifier("", SECRET, Directory(), random_bytes=FakeRandom())
    with pytest.raises(ValueError, match="CR or LF"):
        DigestVerifier("a\nb", SECRET, Directory(), random_bytes=FakeRandom())
    text = repr(make_verifier())
    assert text == "DigestVerifier(realm='hotline', algorithms=[SHA-256, MD5])"


def test_verifier_expire_drops_replay_state() -> None:
    v = make_verifier(nonce_ttl=60)
    assert v.verify("REGISTER", RURI, answer(v, client(), now=0.0), 1.0).accepted
    assert v.expire(30.0) == 0
    assert v.expire(61.0) == 1


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

CH = 'Digest realm="r", nonce="n{n}", algorithm={alg}, qop="auth"'


def test_client_chooses_strongest_regardless_of_order() -> None:
    offers = [CH.format(n=1, alg=a) for a in ("MD5", "SHA-256", "SHA-512-256", "MD5-sess")]
    c = client()
    c.authorize(offers, "INVITE", "sip:agent@192.0.2.7")
    assert c.algorithm is Algorithm.SHA512_256 and c.realm == "r"
    c2 = client(prefer_server_order=True)
    c2.authorize(offers, "INVITE", "sip:agent@192.0.2.7")
    assert c2.algorithm is Algorithm.MD5


def test_client_skips_what_it_cannot_answer() -> None:
    values = ['Digest realm="r', CH.format(n=1, alg="SHA-3"), "Basic realm=\"r\"",
              CH.format(n=1, alg="MD5")]
    c = client()
    value = c.authorize(values, "INVITE", "sip:x@y")
    assert "algorithm=MD5" in value
    with pytest.raises(NoUsableChallenge) as info:
        client().authorize(values[:3], "INVITE", "sip:x@y")
    assert str(info.value) == (
        "no usable digest challenge: WWW-Authenticate: unterminated quoted string for 'realm': "
        "'\"r'; algorithm 'SHA-3' is not supported; scheme 'Basic' is not supported")
    with pytest.raises(NoUsableChallenge, match="qop 'auth-int' offers no 'auth'"):
        client().authorize('Digest realm="r", nonce="n", qop="auth-int"', "INVITE", "sip:x@y")
    with pytest.raises(NoUsableChallenge, match="no challenge was given"):
        client().authorize([], "INVITE", "sip:x@y")
    assert issubclass(NoUsableChallenge, ValueError)  # the endpoint catches ValueError
    assert issubclass(CredentialsRejected, DigestClientError)


def test_client_nonce_count_and_preemptive_credentials() -> None:
    c = client()
    assert c.authorization("REGISTER", RURI) is None
    first = c.authorize(CH.format(n=1, alg="SHA-256"), "REGISTER", RURI)
    assert "nc=00000001" in first
    second = c.authorization("REGISTER", RURI)
    assert second is not None and "nc=00000002" in second
    assert parse_auth_header(first).get("cnonce") != parse_auth_header(second).get("cnonce")
    c.succeeded()
    third = c.authorize(CH.format(n=2, alg="SHA-256"), "REGISTER", RURI)
    assert "nc=00000001" in third and 'nonce="n2"' in third


def test_client_stale_is_silent_and_a_second_challenge_means_wrong_credentials() -> None:
    c = client()
    c.authorize(CH.format(n=1, alg="MD5"), "INVITE", "sip:x@y")
    stale = CH.format(n=2, alg="MD5") + ", stale=true"
    value = c.authorize(stale, "INVITE", "sip:x@y")
    assert 'nonce="n2"' in value
    with pytest.raises(CredentialsRejected) as info:
        c.authorize(CH.format(n=3, alg="MD5"), "INVITE", "sip:x@y")
    assert str(info.value) == "realm 'r' rejected the credentials of user 'alice'"
    c.succeeded()
    assert 'nonce="n3"' in c.authorize(CH.format(n=3, alg="MD5"), "INVITE", "sip:x@y")


def test_client_gives_up_on_endless_stale() -> None:
    c = client(max_stale_retries=2)
    c.authorize(CH.format(n=0, alg="MD5"), "INVITE", "sip:x@y")
    for n in (1, 2):
        c.authorize(CH.format(n=n, alg="MD5") + ", stale=TRUE", "INVITE", "sip:x@y")
    with pytest.raises(CredentialsRejected, match="answered stale=true 3 times in a row"):
        c.authorize(CH.format(n=3, alg="MD5") + ", stale=true", "INVITE", "sip:x@y")


def test_client_with_stored_ha1_only() -> None:
    v = make_verifier()
    secrets = compute_secrets("bob", REALM, "builder", [Algorithm.MD5])
    c = DigestClient("bob", ha1=secrets, random_bytes=FakeRandom())
    value = answer(v, c)
    assert c.algorithm is Algorithm.MD5  # the only hash it holds a secret for
    assert v.verify("REGISTER", RURI, value, 100.0).accepted
    with pytest.raises(ValueError, match="needs a password or HA1 values"):
        DigestClient("bob", random_bytes=FakeRandom())
    with pytest.raises(ValueError, match="CR or LF"):
        DigestClient("bob\r\n", "pw", random_bytes=FakeRandom())


def test_no_secret_in_reprs() -> None:
    c = client("alice", password="s3cret-pass")
    value = c.authorize(CH.format(n=1, alg="MD5"), "INVITE", "sip:x@y")
    ha1 = compute_ha1("alice", "r", "s3cret-pass", Algorithm.MD5)
    for text in (repr(c), str(c), value):
        assert "s3cret-pass" not in text and ha1 not in text
    assert repr(c) == "DigestClient(username='alice', realm='r', algorithm=MD5)"
    v = make_verifier()
    assert SECRET.decode() not in repr(v)


def test_client_answers_an_rfc2069_server() -> None:
    c = client("Mufasa", password="Circle Of Life")
    value = c.authorize('Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"',
                        "GET", "/dir/index.html")
    h = parse_auth_header(value)
    assert h.get("algorithm") == "MD5" and "qop" not in h and "cnonce" not in h
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", Algorithm.MD5)
    assert h.get("response") == compute_response(
        algorithm=Algorithm.MD5, ha1=ha1, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET", uri="/dir/index.html", qop=None)


# ---------------------------------------------------------------------------
# The auth-failure line and the fail2ban filter
# ---------------------------------------------------------------------------

HOST_RE = r"(?:::f{4,6}:)?(?P<host>[0-9A-Fa-f.:]+)"


def failregex() -> re.Pattern[str]:
    cp = configparser.RawConfigParser()
    assert cp.read(FILTER) == [str(FILTER)]
    pattern = cp.get("Definition", "failregex").strip()
    assert "<HOST>" in pattern
    return re.compile(pattern.replace("<HOST>", HOST_RE))


HOSTILE = [
    'alice" reason=bad-response realm="x',
    "a\nauth failure from 198.51.100.66 user=\"x\" reason=bad-response realm=\"hotline\"",
    "x auth failure from 198.51.100.66 user=",
    'x auth failure from 198.51.100.66 user="',
    "trailing backslash\\",
    "\\\" reason=malformed realm=\\\"",
    "\r\n\x00\x1b[31m",
    "\u202eevil\u2028line\x85",
    "\U0001f600" * 3,
    "é" * 200,
    "",
]


def test_failure_line_format() -> None:
    line = auth_failure_line("203.0.113.9", "alice", AuthReason.BAD_RESPONSE, "hotline")
    assert line == 'auth failure from 203.0.113.9 user="alice" reason=bad-response realm="hotline"'
    assert auth_failure_line("[2001:db8::9]:5061", None, AuthReason.MALFORMED, "h") == (
        'auth failure from 2001:db8::9 user="" reason=malformed realm="h"')
    assert auth_failure_line("::ffff:192.0.2.1", "a", AuthReason.WRONG_URI, "h").startswith(
        "auth failure from 192.0.2.1 ")
    assert auth_failure_line("198.51.100.2:5060", "a", AuthReason.BAD_NONCE, "h").startswith(
        "auth failure from 198.51.100.2 ")
    assert auth_failure_line("bad host\n", "a", AuthReason.BAD_NONCE, "h").startswith(
        "auth failure from bad?host user=")
    long = auth_failure_line("192.0.2.1", "x" * 100, AuthReason.BAD_RESPONSE, "h")
    assert 'user="' + "x" * 64 + '..."' in long


@pytest.mark.parametrize("user", HOSTILE)
def test_hostile_usernames_cannot_forge_a_record(user: str) -> None:
    rx = failregex()
    line = auth_failure_line("203.0.113.9", user, AuthReason.BAD_RESPONSE, REALM)
    assert "\n" not in line and "\r" not in line
    assert all(0x20 <= ord(c) < 0x7F for c in line)
    for prefix in ("", "WARNING hotline.sip.auth: ", " WARNING hotline.sip.auth: ",
                   "pbx hotline[812]: WARNING hotline.sip.auth: "):
        m = rx.search(prefix + line)
        assert m is not None, prefix + line
        assert m.group("host") == "203.0.113.9"


def test_filter_matches_ipv6_and_ignores_quoted_text_in_other_messages() -> None:
    rx = failregex()
    line = auth_failure_line("2001:db8::7", "bob", AuthReason.BAD_RESPONSE, REALM)
    m = rx.search("WARNING hotline.sip.auth: " + line)
    assert m is not None and m.group("host") == "2001:db8::7"
    forged = auth_failure_line("198.51.100.66", "x", AuthReason.BAD_RESPONSE, REALM)
    # A peer's text inside some other message, even verbatim, is not a record.
    other = f"INFO hotline.sip.endpoint: dropping request from 192.0.2.1 with odd From {forged}"
    assert rx.search(other) is None
    assert rx.search(forged + " trailing words") is None


def test_jail_uses_the_filter() -> None:
    cp = configparser.RawConfigParser()
    assert cp.read(JAIL) == [str(JAIL)]
    assert cp.get("hotline", "filter") == "hotline"
    assert cp.getint("hotline", "maxretry") > 0
    assert cp.getint("hotline", "findtime") > 0 and cp.getint("hotline", "bantime") > 0
    assert cp.get("hotline", "logpath")
