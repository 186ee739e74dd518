"""SIP digest authentication (RFC 3261 §22, RFC 8760; algorithms as RFC 7616 defines them),
sans-IO.

Owns the syntax of the four authentication headers (``Authorization``,
``Proxy-Authorization``, ``WWW-Authenticate``, ``Proxy-Authenticate``), the digest
computations (MD5, SHA-256, SHA-512-256 and their ``-sess`` variants, qop=auth), stateless
HMAC nonces, nonce-count replay protection, the verifier a registrar or UAS runs
(`DigestVerifier`), the client side of our own outbound requests (`DigestClient`), and the
one-line auth-failure record that fail2ban reads (`auth_failure_line`).

Must not know where secrets live (a `lookup` callable hands over HA1 values), sockets, the
clock (every time is a `now` argument) or the operating system's random source (callers inject
`random_bytes`). It never logs, and no password, HA1 or server secret appears in any repr or
message it produces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from hotline.sip.errors import ParseError
from hotline.sip.grammar import Scanner, show
from hotline.sip.uri import SipURI, parse_uri

if TYPE_CHECKING:
    from hotline.sip.message import Request

RandomBytes = Callable[[int], bytes]
"""A source of `n` unpredictable bytes (the engine passes ``os.urandom``)."""


# ---------------------------------------------------------------------------
# Header syntax
# ---------------------------------------------------------------------------


class AuthHeaderError(ParseError):
    """A malformed authentication header value. The status hint is 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_FOLD_RE = re.compile(r"(?:\r\n|\r|\n)(?=[ \t])")
_WS = " \t"

# Parameters that are quoted-strings in the RFC 3261 / RFC 7616 grammar, whichever header
# they appear in. (`qop` is quoted in challenges and a bare token in credentials.)
_ALWAYS_QUOTED = frozenset(
    {"realm", "nonce", "opaque", "domain", "username", "uri", "response", "cnonce",
     "nextnonce", "rspauth"}
)
_CHALLENGE_QUOTED = _ALWAYS_QUOTED | {"qop"}


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


@dataclass(frozen=True)
class AuthHeader:
    """One challenge or one set of credentials: a scheme and either comma-separated
    auth-params (values unquoted, escapes resolved, names as written) or a token68.

    Parameter names compare case-insensitively through `get`; a scheme nobody here knows
    (RFC 4475 regaut01's ``NoOneKnowsThisScheme``) is kept as it came.
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def get(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.params:
            if k.lower() == low:
                return v
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __str__(self) -> str:
        return format_auth_header(self)


def _quote(value: str) -> str:
    out = ['"']
    for c in value:
        if c in "\r\n":
            raise ValueError("a CR or LF cannot be carried in an authentication header")
        if c in '"\\' or (ord(c) < 0x20 and c != "\t") or c == "\x7f":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def format_auth_header(header: AuthHeader, *, quoted: Collection[str] = _ALWAYS_QUOTED) -> str:
    """Serialise `header`. A parameter is quoted when its lower-cased name is in `quoted`
    or its value is not a token; raises ValueError for what no header can carry."""
    if not _is_token(header.scheme):
        raise ValueError(f"authentication scheme {show(header.scheme)} is not a token")
    if header.token68 is not None:
        if header.params:
            raise ValueError("an authentication header has either a token68 or parameters")
        if _TOKEN68_RE.fullmatch(header.token68) is None:
            raise ValueError(f"{show(header.token68)} is not a token68")
        return f"{header.scheme} {header.token68}"
    if not header.params:
        return header.scheme
    parts: list[str] = []
    for name, value in header.params:
        if not _is_token(name):
            raise ValueError(f"parameter name {show(name)} is not a token")
        if name.lower() in quoted or not _is_token(value):
            parts.append(f"{name}={_quote(value)}")
        else:
            parts.append(f"{name}={value}")
    return f"{header.scheme} " + ", ".join(parts)


class _Scanner(Scanner):
    """The shared header scanner, raising AuthHeaderError; quoted values come back
    unescaped, and a challenge list needs to tell a parameter from a new scheme."""

    __slots__ = ()
    error_type = AuthHeaderError

    def quoted_value(self, name: str) -> str:
        """A quoted-string's content, escapes resolved; control characters refused."""
        text = self.text
        start = self.pos
        i = start + 1
        out: list[str] = []
        while i < len(text):
            c = text[i]
            if c == '"':
                self.pos = i + 1
                return "".join(out)
            if c == "\\":
                if i + 1 >= len(text):
                    break
                out.append(text[i + 1])
                i += 2
                continue
            if (ord(c) < 0x20 and c != "\t") or c == "\x7f":
                raise AuthHeaderError(
                    f"{self.what}: control character {c!r} in the quoted value of {name!r}"
                )
            out.append(c)
            i += 1
        raise AuthHeaderError(
            f"{self.what}: unterminated quoted string for {name!r}: {show(text[start:])}"
        )

    def starts_param(self) -> bool:
        """Whether a ``name =`` follows (rather than the scheme of a new challenge)."""
        tok = self.match(_TOKEN_RE)
        if tok is None:
            return False
        i = self.pos + len(tok)
        while i < len(self.text) and self.text[i] in _WS:
            i += 1
        return i < len(self.text) and self.text[i] == "="


def _parse_one(sc: _Scanner) -> tuple[AuthHeader, bool]:
    """Parse a challenge/credentials at the scanner; say whether another one follows."""
    scheme = sc.token("an authentication scheme")
    had_ws = sc.skip_ws()
    if sc.at_end():
        return AuthHeader(scheme), False
    if sc.peek() == ",":
        save = sc.pos
        sc.pos += 1
        more = _after_comma(sc)
        if more and sc.starts_param():
            sc.pos = save
            raise sc.error(f"a parameter after the scheme {scheme!r}")
        return AuthHeader(scheme), more
    if not had_ws:
        raise sc.error(f"a space after the scheme {scheme!r}")
    digest = scheme.lower() == "digest"
    if not digest:
        tok68 = sc.match(_TOKEN68_RE)
        if tok68 is not None:
            save = sc.pos
            sc.pos += len(tok68)
            sc.skip_ws()
            if sc.at_end():
                return AuthHeader(scheme, (), tok68), False
            if sc.peek() == ",":
                sc.pos += 1
                return AuthHeader(scheme, (), tok68), _after_comma(sc)
            sc.pos = save
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        name = sc.token("a parameter name" if params else "a token68 or a parameter name")
        sc.skip_ws()
        if sc.peek() != "=":
            raise sc.error(f"'=' after parameter name {name!r}")
        sc.pos += 1
        sc.skip_ws()
        if sc.peek() == '"':
            value = sc.quoted_value(name)
        else:
            value = sc.token(f"a token or quoted-string value for parameter {name!r}")
        low = name.lower()
        if low in seen:
            raise AuthHeaderError(f"{sc.what}: duplicate parameter {name!r}")
        seen.add(low)
        params.append((name, value))
        sc.skip_ws()
        if sc.at_end():
            return AuthHeader(scheme, tuple(params)), False
        if sc.peek() != ",":
            raise sc.error(f"',' or the end of the value after parameter {name!r}")
        sc.pos += 1
        if not _after_comma(sc):
            raise AuthHeaderError(f"{sc.what}: expected a parameter after ',', found end of value")
        if not sc.starts_param():
            if sc.match(_TOKEN_RE) is None:
                raise sc.error("a parameter name or another scheme after ','")
            return AuthHeader(scheme, tuple(params)), True


def _after_comma(sc: _Scanner) -> bool:
    """Skip LWS after a comma; say whether anything follows. Empty list elements are an
    error."""
    sc.skip_ws()
    if sc.peek() == ",":
        raise AuthHeaderError(f"{sc.what}: empty element between commas")
    return not sc.at_end()


def _prepare(value: str, what: str) -> _Scanner:
    text = _FOLD_RE.sub("", value)
    for bad in ("\r", "\n"):
        if bad in text:
            raise AuthHeaderError(f"{what}: line break not followed by whitespace")
    sc = _Scanner(text, what)
    sc.skip_ws()
    if sc.at_end():
        raise AuthHeaderError(f"{what}: empty value")
    return sc


def parse_auth_headers(value: str, what: str = "WWW-Authenticate") -> list[AuthHeader]:
    """Parse a header value that may hold several comma-separated challenges (HTTP style)."""
    sc = _prepare(value, what)
    out: list[AuthHeader] = []
    more = True
    while more:
        header, more = _parse_one(sc)
        out.append(header)
    return out


def parse_auth_header(value: str, what: str = "Authorization") -> AuthHeader:
    """Parse a header value holding exactly one challenge or one set of credentials."""
    headers = parse_auth_headers(value, what)
    if len(headers) != 1:
        raise AuthHeaderError(f"{what}: expected one scheme, found {len(headers)}")
    return headers[0]


# ---------------------------------------------------------------------------
# Algorithms and digest computations
# ---------------------------------------------------------------------------


class Algorithm(Enum):
    """Digest algorithms (RFC 7616 §3.4, RFC 8760 §2)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"
    SHA512_256 = "SHA-512-256"
    SHA512_256_SESS = "SHA-512-256-sess"

    @property
    def session(self) -> bool:
        """A ``-sess`` variant: HA1 is bound to the nonce and cnonce."""
        return self.value.endswith("-sess")

    @property
    def base(self) -> Algorithm:
        """The variant without ``-sess``: the key under which its HA1 is stored."""
        return _BASE[self]

    @property
    def strength(self) -> int:
        """Higher is stronger; a ``-sess`` variant is as strong as its hash."""
        return _STRENGTH[self.base]

    @classmethod
    def parse(cls, text: str) -> Algorithm | None:
        """The algorithm named `text` (case-insensitive), or None if unknown."""
        return _BY_NAME.get(text.lower())


_BASE = {
    Algorithm.MD5: Algorithm.MD5,
    Algorithm.MD5_SESS: Algorithm.MD5,
    Algorithm.SHA256: Algorithm.SHA256,
    Algorithm.SHA256_SESS: Algorithm.SHA256,
    Algorithm.SHA512_256: Algorithm.SHA512_256,
    Algorithm.SHA512_256_SESS: Algorithm.SHA512_256,
}
_STRENGTH = {Algorithm.MD5: 1, Algorithm.SHA256: 2, Algorithm.SHA512_256: 3}
_HASH_NAME = {Algorithm.MD5: "md5", Algorithm.SHA256: "sha256", Algorithm.SHA512_256: "sha512_256"}
_BY_NAME = {a.value.lower(): a for a in Algorithm}

BASE_ALGORITHMS: tuple[Algorithm, ...] = (Algorithm.SHA512_256, Algorithm.SHA256, Algorithm.MD5)
"""The three hash functions, strongest first: the keys of a user's stored HA1 values."""

CLIENT_ALGORITHMS: tuple[Algorithm, ...] = (
    Algorithm.SHA512_256, Algorithm.SHA512_256_SESS, Algorithm.SHA256, Algorithm.SHA256_SESS,
    Algorithm.MD5, Algorithm.MD5_SESS,
)
"""Everything the client answers, in its order of preference."""


def _octets(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _h(algorithm: Algorithm, data: str) -> str:
    return hashlib.new(_HASH_NAME[algorithm.base], _octets(data)).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """H(username:realm:password) with `algorithm`'s hash: the secret a registrar stores
    (one per hash function; a ``-sess`` variant uses the same stored value)."""
    return _h(algorithm, f"{username}:{realm}:{password}")


def compute_secrets(
    username: str, realm: str, password: str,
    algorithms: Sequence[Algorithm] = BASE_ALGORITHMS,
) -> dict[Algorithm, str]:
    """The HA1 of `username` for each algorithm's hash, keyed by base algorithm: what a
    provisioning tool stores instead of the password."""
    return {a.base: compute_ha1(username, realm, password, a) for a in algorithms}


def _session_ha1(algorithm: Algorithm, ha1: str, nonce: str, cnonce: str) -> str:
    return _h(algorithm, f"{ha1}:{nonce}:{cnonce}")


def compute_response(
    *,
    algorithm: Algorithm,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1). `ha1` is the stored
    H(username:realm:password); for a ``-sess`` algorithm the session key is derived here.
    ``qop=None`` is the RFC 2069 form. Raises ValueError for what cannot be computed."""
    if (algorithm.session or qop is not None) and cnonce is None:
        raise ValueError(f"algorithm {algorithm.value} with qop {qop} needs a cnonce")
    key = ha1.lower()
    if algorithm.session:
        assert cnonce is not None
        key = _session_ha1(algorithm, key, nonce, cnonce)
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop is None:
        return _h(algorithm, f"{key}:{nonce}:{ha2}")
    if qop.lower() != "auth":
        raise ValueError(f"qop {qop!r} is not supported (only 'auth')")
    if nc is None:
        raise ValueError("qop=auth needs a nonce count")
    return _h(algorithm, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------
# Stateless nonces
# ---------------------------------------------------------------------------


class NonceStatus(Enum):
    VALID = "valid"  # ours, and no older than the TTL
    STALE = "stale"  # ours, but older than the TTL: the 401 carries stale=true
    INVALID = "invalid"  # forged, garbled, another realm's or another secret's


@dataclass(frozen=True)
class NonceCheck:
    status: NonceStatus
    issued: float | None = None  # when it was issued (VALID and STALE only)


NONCE_RANDOM_SIZE = 11  # bytes of randomness per nonce
_NONCE_VERSION = 1
_NONCE_HEAD = struct.Struct(">Bq")  # version, issue time in milliseconds
_NONCE_MAC_SIZE = 16
_NONCE_RAW_SIZE = _NONCE_HEAD.size + NONCE_RANDOM_SIZE + _NONCE_MAC_SIZE  # 36 bytes
_NONCE_TEXT_SIZE = _NONCE_RAW_SIZE * 4 // 3  # 48 characters, no padding
_NONCE_RE = re.compile(rf"[A-Za-z0-9_-]{{{_NONCE_TEXT_SIZE}}}")
MIN_SECRET_SIZE = 16


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def _millis(now: float) -> int:
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds, got {now!r}")
    return math.floor(now * 1000)


class NonceIssuer:
    """Issues and checks self-authenticating nonces: base64url of version, issue time
    (ms), random bytes and a truncated HMAC-SHA256 over them and the realm. Nothing is
    stored per nonce; any node holding the same secret can check them."""

    __slots__ = ("_key", "_realm", "ttl")

    def __init__(self, secret: bytes, realm: str, *, ttl: float = 300.0) -> None:
        if len(secret) < MIN_SECRET_SIZE:
            raise ValueError(f"the nonce secret must be at least {MIN_SECRET_SIZE} bytes")
        if not ttl > 0:
            raise ValueError(f"the nonce TTL must be positive, got {ttl!r}")
        self._key = _derive(secret, b"hotline digest nonce v1")
        self._realm = _octets(realm)
        self.ttl = float(ttl)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body + self._realm, hashlib.sha256).digest()[:_NONCE_MAC_SIZE]

    def issue(self, now: float, random: bytes) -> str:
        if len(random) != NONCE_RANDOM_SIZE:
            raise ValueError(
                f"a nonce needs {NONCE_RANDOM_SIZE} random bytes, got {len(random)}"
            )
        body = _NONCE_HEAD.pack(_NONCE_VERSION, _millis(now)) + random
        return base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii")

    def check(self, nonce: str, now: float) -> NonceCheck:
        if len(nonce) != _NONCE_TEXT_SIZE or _NONCE_RE.fullmatch(nonce) is None:
            return NonceCheck(NonceStatus.INVALID)
        raw = base64.urlsafe_b64decode(nonce)
        body, mac = raw[:-_NONCE_MAC_SIZE], raw[-_NONCE_MAC_SIZE:]
        version, millis = _NONCE_HEAD.unpack_from(body)
        if version != _NONCE_VERSION or not hmac.compare_digest(mac, self._mac(body)):
            return NonceCheck(NonceStatus.INVALID)
        if millis > _millis(now):
            return NonceCheck(NonceStatus.INVALID)  # from the future: not one of ours
        issued = millis / 1000
        if now - issued > self.ttl:
            return NonceCheck(NonceStatus.STALE, issued)
        return NonceCheck(NonceStatus.VALID, issued)

    def __repr__(self) -> str:
        return f"NonceIssuer(ttl={self.ttl})"


# ---------------------------------------------------------------------------
# Nonce-count replay protection
# ---------------------------------------------------------------------------


class _Seen:
    """Replay state of one nonce: bit i of `mask` set = nonce count (highest - i) used."""

    __slots__ = ("highest", "issued", "mask")

    def __init__(self, issued: float, nc: int) -> None:
        self.issued = issued
        self.highest = nc
        self.mask = 1


class NonceCounts:
    """Which (nonce, nc) pairs were accepted. Each pair is accepted once; nc must exceed
    the highest seen for its nonce, or lie within `window` below it and be unseen
    (requests reordered on UDP). Memory is bounded: past `max_nonces` the nonce first used
    longest ago is forgotten, and so is every nonce issued no later than it — a nonce this
    table can no longer vouch for is refused (the verifier answers stale=true)."""

    __slots__ = ("_forgotten_until", "_full", "_table", "max_nonces", "ttl", "window")

    def __init__(self, *, ttl: float, window: int = 32, max_nonces: int = 65536) -> None:
        if not ttl > 0:
            raise ValueError(f"the nonce TTL must be positive, got {ttl!r}")
        if not 1 <= window <= 1024:
            raise ValueError(f"the nonce-count window must be 1-1024, got {window}")
        if max_nonces < 1:
            raise ValueError(f"max_nonces must be at least 1, got {max_nonces}")
        self.ttl = float(ttl)
        self.window = window
        self.max_nonces = max_nonces
        self._full = (1 << window) - 1
        self._table: OrderedDict[str, _Seen] = OrderedDict()  # in order of first use
        self._forgotten_until = -math.inf

    def use(self, nonce: str, nc: int, issued: float, now: float) -> bool:
        """Record nonce-count `nc` of `nonce` (issued at `issued`); False if it was used
        already, fell below the window, or the nonce was forgotten."""
        if nc < 1:
            return False
        self._expire_front(now)
        entry = self._table.get(nonce)
        if entry is None:
            if issued <= self._forgotten_until:
                return False
            self._table[nonce] = _Seen(issued, nc)
            while len(self._table) > self.max_nonces:
                _, old = self._table.popitem(last=False)
                self._forgotten_until = max(self._forgotten_until, old.issued)
            return True
        if nc > entry.highest:
            shift = nc - entry.highest
            entry.highest = nc
            entry.mask = ((entry.mask << shift) | 1) & self._full if shift < self.window else 1
            return True
        offset = entry.highest - nc
        if offset >= self.window or entry.mask & (1 << offset):
            return False
        entry.mask |= 1 << offset
        return True

    def _expire_front(self, now: float) -> None:
        table = self._table
        while table:
            first = next(iter(table.values()))
            if now - first.issued <= self.ttl:
                return
            table.popitem(last=False)

    def expire(self, now: float) -> int:
        """Forget every nonce older than the TTL (it can only be stale now); return how
        many were dropped."""
        dead = [n for n, e in self._table.items() if now - e.issued > self.ttl]
        for n in dead:
            del self._table[n]
        return len(dead)

    def __len__(self) -> int:
        return len(self._table)


# ---------------------------------------------------------------------------
# The verifier (registrar / UAS side)
# ---------------------------------------------------------------------------


class AuthStatus(Enum):
    ACCEPTED = "accepted"  # credentials are right: `username` is authenticated
    MISSING = "missing"  # no digest credentials: challenge
    STALE = "stale"  # right credentials on a nonce we no longer take: stale=true
    FAILED = "failed"  # wrong or unusable credentials: challenge afresh, log, throttle


class AuthReason(Enum):
    """Why credentials were not accepted; the value is the token written in the log."""

    MALFORMED = "malformed"
    WRONG_REALM = "wrong-realm"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    UNSUPPORTED_QOP = "unsupported-qop"
    MISSING_QOP = "missing-qop"
    UNSUPPORTED_USERHASH = "unsupported-userhash"
    WRONG_URI = "wrong-uri"
    BAD_OPAQUE = "bad-opaque"
    BAD_NONCE = "bad-nonce"
    BAD_RESPONSE = "bad-response"
    # stale outcomes
    EXPIRED_NONCE = "expired-nonce"
    UNKNOWN_NONCE = "unknown-nonce"
    NONCE_REUSED = "nonce-reused"


@dataclass(frozen=True)
class AuthOutcome:
    """What `DigestVerifier.verify` concluded. `username` is the claimed one (whether or
    not the user exists); `detail` is a human sentence for a debug log, free of secrets."""

    status: AuthStatus
    username: str | None = None
    reason: AuthReason | None = None
    detail: str = ""
    algorithm: Algorithm | None = None

    @property
    def accepted(self) -> bool:
        return self.status is AuthStatus.ACCEPTED


SecretLookup = Callable[[str], Mapping[Algorithm, str] | None]
"""username -> {base algorithm: HA1} (None when the user is unknown)."""

_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_MISSING = AuthOutcome(AuthStatus.MISSING)


class DigestVerifier:
    """Challenges and verifies digest credentials for one realm.

    Unknown users and known users with a wrong password are indistinguishable: the same
    outcome, the same challenge, and the same hashing (an unknown user is checked against
    a dummy HA1 derived from the secret; responses are compared in constant time).
    """

    __slots__ = (
        "_counts", "_dummy", "_lookup", "_nonces", "_random", "algorithms", "allow_no_qop",
        "opaque", "proxy", "realm",
    )

    def __init__(
        self,
        realm: str,
        secret: bytes,
        lookup: SecretLookup,
        *,
        random_bytes: RandomBytes,
        algorithms: Sequence[Algorithm] = (Algorithm.SHA256, Algorithm.MD5),
        nonce_ttl: float = 300.0,
        opaque: str | None = None,
        allow_no_qop: bool = False,
        proxy: bool = False,
        replay_window: int = 32,
        max_nonces: int = 65536,
    ) -> None:
        if not realm:
            raise ValueError("the realm must not be empty")
        _quote(realm)  # raises for CR/LF
        if opaque is not None:
            _quote(opaque)
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        if len(set(algorithms)) != len(algorithms):
            raise ValueError("each digest algorithm may be offered once")
        self.realm = realm
        self.algorithms: tuple[Algorithm, ...] = tuple(algorithms)
        self.opaque = opaque
        self.allow_no_qop = allow_no_qop
        self.proxy = proxy
        self._lookup = lookup
        self._random = random_bytes
        self._nonces = NonceIssuer(secret, realm, ttl=nonce_ttl)
        self._counts = NonceCounts(ttl=nonce_ttl, window=replay_window, max_nonces=max_nonces)
        dummy_key = _derive(secret, b"hotline digest dummy ha1 v1")
        self._dummy = {
            a: hmac.new(dummy_key, a.value.encode(), _HASH_NAME[a]).hexdigest()
            for a in BASE_ALGORITHMS
        }

    def __repr__(self) -> str:
        algs = ", ".join(a.value for a in self.algorithms)
        return f"DigestVerifier(realm={self.realm!r}, algorithms=[{algs}])"

    # -- what goes on the wire ----------------------------------------------

    @property
    def status_code(self) -> int:
        """401 for a registrar/UAS, 407 for a proxy."""
        return 407 if self.proxy else 401

    @property
    def challenge_header(self) -> str:
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """Challenge header values: one per configured algorithm, most preferred first
        (RFC 8760 §2.4), all with the same fresh nonce."""
        nonce = self._nonces.issue(now, self._random(NONCE_RANDOM_SIZE))
        out: list[str] = []
        for alg in self.algorithms:
            params = [("realm", self.realm), ("nonce", nonce), ("algorithm", alg.value),
                      ("qop", "auth")]
            if self.opaque is not None:
                params.append(("opaque", self.opaque))
            if stale:
                params.append(("stale", "true"))
            out.append(format_auth_header(AuthHeader("Digest", tuple(params)),
                                          quoted=_CHALLENGE_QUOTED))
        return out

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """(name, value) pairs to add to the 401/407."""
        return [(self.challenge_header, v) for v in self.challenge(now, stale=stale)]

    def rejection_headers(self, outcome: AuthOutcome, now: float) -> list[tuple[str, str]]:
        """The challenge that answers a non-accepted `outcome` (stale=true when STALE)."""
        if outcome.accepted:
            return []
        return self.challenge_headers(now, stale=outcome.status is AuthStatus.STALE)

    # -- verification ---------------------------------------------------------

    def verify_request(self, request: Request, now: float) -> AuthOutcome:
        """`verify` with the method, Request-URI and credentials of `request`."""
        values = request.headers.raw_values(self.credentials_header)
        return self.verify(request.method, str(request.uri), values, now)

    def verify(
        self, method: str, uri: str, header_value: str | Sequence[str] | None, now: float
    ) -> AuthOutcome:
        """Check the credentials in `header_value` (one or several Authorization values)
        for a request with `method` and Request-URI `uri`."""
        values = [] if header_value is None else (
            [header_value] if isinstance(header_value, str) else list(header_value)
        )
        picked = self._pick(values)
        if isinstance(picked, AuthOutcome):
            return picked
        return self._check(picked, method, uri, now)

    def _pick(self, values: list[str]) -> AuthHeader | AuthOutcome:
        digest: list[AuthHeader] = []
        malformed: str | None = None
        for value in values:
            try:
                header = parse_auth_header(value, self.credentials_header)
            except AuthHeaderError as exc:
                malformed = malformed or exc.reason
                continue
            if not header.is_digest:
                continue  # another scheme: not credentials for us
            if header.get("realm") == self.realm:
                return header
            digest.append(header)
        if malformed is not None:
            return AuthOutcome(AuthStatus.FAILED, None, AuthReason.MALFORMED, malformed)
        if not digest:
            return _MISSING
        first = digest[0]
        realm = first.get("realm")
        if realm is None:
            return self._fail(first.get("username"), AuthReason.MALFORMED,
                              "digest credentials without a 'realm' parameter")
        return self._fail(first.get("username"), AuthReason.WRONG_REALM,
                          f"credentials are for realm {show(realm)}, not {self.realm!r}")

    @staticmethod
    def _fail(username: str | None, reason: AuthReason, detail: str,
              algorithm: Algorithm | None = None) -> AuthOutcome:
        return AuthOutcome(AuthStatus.FAILED, username, reason, detail, algorithm)

    def _check(self, h: AuthHeader, method: str, uri: str, now: float) -> AuthOutcome:
        username = h.get("username")
        if username is None:
            detail = ("'username*' (RFC 7616 extended notation) is not supported"
                      if "username*" in h else "missing 'username' parameter")
            return self._fail(None, AuthReason.MALFORMED, detail)
        fail = self._fail
        for name in ("nonce", "uri", "response"):
            if name not in h:
                return fail(username, AuthReason.MALFORMED, f"missing {name!r} parameter")
        nonce = h.get("nonce") or ""
        digest_uri = h.get("uri") or ""
        response = h.get("response") or ""
        if (h.get("userhash") or "").lower() == "true":
            return fail(username, AuthReason.UNSUPPORTED_USERHASH, "userhash is not supported")
        alg_text = h.get("algorithm") or "MD5"
        alg = Algorithm.parse(alg_text)
        if alg is None or alg not in self.algorithms:
            offered = ", ".join(a.value for a in self.algorithms)
            return fail(username, AuthReason.UNSUPPORTED_ALGORITHM,
                        f"algorithm {show(alg_text)} is not offered (offered: {offered})")
        qop = h.get("qop")
        cnonce = h.get("cnonce")
        nc_text = h.get("nc")
        if qop is None:
            if not self.allow_no_qop:
                return fail(username, AuthReason.MISSING_QOP,
                            "credentials without qop (RFC 2069) are not accepted", alg)
            nc_text = None
        elif qop.lower() != "auth":
            return fail(username, AuthReason.UNSUPPORTED_QOP,
                        f"qop {show(qop)} is not supported (only 'auth')", alg)
        else:
            if nc_text is None or cnonce is None:
                missing = "nc" if nc_text is None else "cnonce"
                return fail(username, AuthReason.MALFORMED,
                            f"qop=auth without {missing!r} parameter", alg)
            if _NC_RE.fullmatch(nc_text) is None or int(nc_text, 16) == 0:
                return fail(username, AuthReason.MALFORMED,
                            f"nc {show(nc_text)} is not 8 hex digits above zero", alg)
        if alg.session and cnonce is None:
            return fail(username, AuthReason.MALFORMED,
                        f"algorithm {alg.value} without 'cnonce' parameter", alg)
        if _HEX_RE.fullmatch(response) is None:
            return fail(username, AuthReason.MALFORMED, "response is not hexadecimal", alg)
        if not _uri_matches(digest_uri, uri):
            return fail(username, AuthReason.WRONG_URI,
                        f"digest uri {show(digest_uri)} does not match the Request-URI "
                        f"{show(uri)}", alg)
        if self.opaque is not None:
            given = h.get("opaque")
            if given is None or not hmac.compare_digest(_octets(given), _octets(self.opaque)):
                return fail(username, AuthReason.BAD_OPAQUE,
                            "opaque is missing or not the one we sent", alg)
        nonce_check = self._nonces.check(nonce, now)
        # From here on, known and unknown users take exactly the same path.
        secrets = self._lookup(username)
        ha1 = secrets.get(alg.base) if secrets is not None else None
        if ha1 is None:
            ha1 = self._dummy[alg.base]
        expected = compute_response(algorithm=alg, ha1=ha1, nonce=nonce, method=method,
                                    uri=digest_uri, qop=qop, nc=nc_text, cnonce=cnonce)
        if not hmac.compare_digest(expected.encode("ascii"), response.lower().encode("ascii")):
            if nonce_check.status is NonceStatus.INVALID:
                return fail(username, AuthReason.BAD_NONCE,
                            "nonce is not ours and the response does not match", alg)
            return fail(username, AuthReason.BAD_RESPONSE, "response does not match", alg)
        if nonce_check.status is NonceStatus.INVALID:
            # Right password on a nonce we cannot vouch for (another secret, a restart):
            # let the client retry at once on a fresh nonce.
            return AuthOutcome(AuthStatus.STALE, username, AuthReason.UNKNOWN_NONCE,
                               "nonce is not ours", alg)
        if nonce_check.status is NonceStatus.STALE:
            return AuthOutcome(AuthStatus.STALE, username, AuthReason.EXPIRED_NONCE,
                               "nonce has expired", alg)
        assert nonce_check.issued is not None
        count = int(nc_text, 16) if nc_text is not None else 1
        if not self._counts.use(nonce, count, nonce_check.issued, now):
            return AuthOutcome(AuthStatus.STALE, username, AuthReason.NONCE_REUSED,
                               f"nonce count {count} was already used or is out of window",
                               alg)
        return AuthOutcome(AuthStatus.ACCEPTED, username, None, "", alg)

    def expire(self, now: float) -> int:
        """Drop replay state of nonces past their TTL; return how many were dropped."""
        return self._counts.expire(now)


_DEFAULT_PORT = {"sip": 5060, "sips": 5061}


def _uri_matches(digest_uri: str, request_uri: str) -> bool:
    """Whether the digest-uri names the Request-URI. Loose, as RFC 3261 §22.4 allows for
    proxies and NATs rewriting around us: SIP URIs compare by scheme, user, host (case-
    insensitive) and port (absent = the scheme's default), ignoring parameters and headers;
    other URIs compare case-insensitively as text."""
    if digest_uri == request_uri:
        return True
    try:
        a = parse_uri(digest_uri, "digest uri")
        b = parse_uri(request_uri, "Request-URI")
    except ParseError:
        return False
    if isinstance(a, SipURI) and isinstance(b, SipURI):
        scheme = a.scheme.lower()
        if scheme != b.scheme.lower() or a.user != b.user or a.host_bare != b.host_bare:
            return False
        default = _DEFAULT_PORT.get(scheme)
        return (a.port or default) == (b.port or default)
    return str(a).lower() == str(b).lower()


# ---------------------------------------------------------------------------
# The client (our own outbound requests)
# ---------------------------------------------------------------------------


class DigestClientError(ValueError):
    """The client cannot (or must not) answer a challenge."""


class NoUsableChallenge(DigestClientError):
    """None of the challenges offers something we can answer."""


class CredentialsRejected(DigestClientError):
    """The server challenged again after we answered: the credentials are wrong. Give up
    rather than loop."""


@dataclass
class _ClientNonce:
    realm: str
    nonce: str
    algorithm: Algorithm
    opaque: str | None
    qop: str | None
    nc: int = 0


class DigestClient:
    """Answers digest challenges for one username with a password (or stored HA1 values).

    `authorize` answers a 401/407; `authorization` builds credentials for the next request
    on the last nonce (nc incremented) without waiting for a challenge; `succeeded` tells
    the client a request got through, so the next non-stale challenge is answered again.
    A non-stale challenge for a realm we already answered since then raises
    `CredentialsRejected`; a stale one is answered silently (up to `max_stale_retries`
    in a row).
    """

    __slots__ = (
        "_algorithms", "_answered", "_ha1", "_password", "_prefer_server_order", "_random",
        "_stale", "_state", "max_stale_retries", "username",
    )

    def __init__(
        self,
        username: str,
        password: str | None = None,
        *,
        random_bytes: RandomBytes,
        ha1: Mapping[Algorithm, str] | None = None,
        algorithms: Sequence[Algorithm] = CLIENT_ALGORITHMS,
        prefer_server_order: bool = False,
        max_stale_retries: int = 3,
    ) -> None:
        if password is None and not ha1:
            raise ValueError("a DigestClient needs a password or HA1 values")
        _quote(username)  # raises for CR/LF
        self.username = username
        self._password = password
        self._ha1: dict[tuple[str, Algorithm], str] = {}
        self._algorithms = tuple(algorithms)
        if ha1:
            for alg, value in ha1.items():
                self._ha1[("", alg.base)] = value.lower()
        if password is None:
            bases = {a.base for a in ha1 or {}}
            self._algorithms = tuple(a for a in self._algorithms if a.base in bases)
        if not self._algorithms:
            raise ValueError("a DigestClient needs at least one algorithm it can answer")
        self._random = random_bytes
        self._prefer_server_order = prefer_server_order
        self.max_stale_retries = max_stale_retries
        self._state: _ClientNonce | None = None
        self._answered: set[str] = set()
        self._stale: dict[str, int] = {}

    def __repr__(self) -> str:
        st = self._state
        where = f", realm={st.realm!r}, algorithm={st.algorithm.value}" if st else ""
        return f"DigestClient(username={self.username!r}{where})"

    @property
    def realm(self) -> str | None:
        return self._state.realm if self._state else None

    @property
    def algorithm(self) -> Algorithm | None:
        return self._state.algorithm if self._state else None

    def _usable(self, h: AuthHeader) -> tuple[Algorithm, str | None] | str:
        """The algorithm and qop we would answer `h` with, or why we cannot."""
        if h.get("realm") is None or h.get("nonce") is None:
            return "a digest challenge without realm or nonce"
        alg_text = h.get("algorithm") or "MD5"
        alg = Algorithm.parse(alg_text)
        if alg is None:
            return f"algorithm {show(alg_text)} is not supported"
        if alg not in self._algorithms:
            return f"algorithm {alg.value} is not enabled"
        qop_text = h.get("qop")
        if qop_text is None:
            return alg, None
        options = [q.strip().lower() for q in qop_text.split(",")]
        if "auth" not in options:
            return f"qop {show(qop_text)} offers no 'auth'"
        return alg, "auth"

    def authorize(self, challenges: str | Sequence[str], method: str, uri: str) -> str:
        """The Authorization (or Proxy-Authorization) value answering `challenges` (the
        values of every WWW-Authenticate or Proxy-Authenticate of the response)."""
        values = [challenges] if isinstance(challenges, str) else list(challenges)
        problems: list[str] = []
        usable: list[tuple[AuthHeader, Algorithm, str | None]] = []
        for value in values:
            try:
                headers = parse_auth_headers(value)
            except AuthHeaderError as exc:
                problems.append(exc.reason)
                continue
            for h in headers:
                if not h.is_digest:
                    problems.append(f"scheme {show(h.scheme)} is not supported")
                    continue
                verdict = self._usable(h)
                if isinstance(verdict, str):
                    problems.append(verdict)
                else:
                    usable.append((h, *verdict))
        if not usable:
            why = "; ".join(problems) if problems else "no challenge was given"
            raise NoUsableChallenge(f"no usable digest challenge: {why}")
        realms = [h.get("realm") for h, _, _ in usable]
        current = self._state.realm if self._state else None
        realm = current if current in realms else realms[0]
        mine = [u for u in usable if u[0].get("realm") == realm]
        if not self._prefer_server_order:
            mine.sort(key=lambda u: (-u[1].strength, self._algorithms.index(u[1])))
        h, alg, qop = mine[0]
        assert realm is not None
        stale = (h.get("stale") or "").lower() == "true"
        if stale:
            count = self._stale.get(realm, 0) + 1
            if count > self.max_stale_retries:
                raise CredentialsRejected(
                    f"realm {realm!r} answered stale=true {count} times in a row"
                )
            self._stale[realm] = count
        else:
            if realm in self._answered:
                raise CredentialsRejected(
                    f"realm {realm!r} rejected the credentials of user {self.username!r}"
                )
            self._answered.add(realm)
            self._stale.pop(realm, None)
        self._state = _ClientNonce(realm, h.get("nonce") or "", alg, h.get("opaque"), qop)
        answer = self._build(method, uri)
        assert answer is not None
        return answer

    def authorization(self, method: str, uri: str) -> str | None:
        """Credentials on the last nonce with the next nonce count, or None if there is
        no nonce to use (no challenge yet, or its counter is exhausted)."""
        return self._build(method, uri)

    def succeeded(self) -> None:
        """A request carrying our credentials got a final response other than 401/407."""
        self._answered.clear()
        self._stale.clear()

    def _secret(self, realm: str, alg: Algorithm) -> str:
        key = ("", alg.base)
        if key in self._ha1:
            return self._ha1[key]
        cached = self._ha1.get((realm, alg.base))
        if cached is None:
            assert self._password is not None
            cached = compute_ha1(self.username, realm, self._password, alg)
            self._ha1[(realm, alg.base)] = cached
        return cached

    def _build(self, method: str, uri: str) -> str | None:
        st = self._state
        if st is None or st.nc >= 0xFFFFFFFF:
            return None
        st.nc += 1
        alg = st.algorithm
        cnonce = base64.urlsafe_b64encode(self._random(12)).decode("ascii")
        nc = f"{st.nc:08x}" if st.qop else None
        use_cnonce = st.qop is not None or alg.session
        response = compute_response(
            algorithm=alg, ha1=self._secret(st.realm, alg), nonce=st.nonce, method=method,
            uri=uri, qop=st.qop, nc=nc, cnonce=cnonce if use_cnonce else None,
        )
        params = [("username", self.username), ("realm", st.realm), ("nonce", st.nonce),
                  ("uri", uri), ("response", response), ("algorithm", alg.value)]
        if use_cnonce:
            params.append(("cnonce", cnonce))
        if st.opaque is not None:
            params.append(("opaque", st.opaque))
        if st.qop is not None and nc is not None:
            params += [("qop", st.qop), ("nc", nc)]
        return format_auth_header(AuthHeader("Digest", tuple(params)))


# ---------------------------------------------------------------------------
# The auth-failure log line (read by fail2ban: deploy/fail2ban/filter.d/hotline.conf)
# ---------------------------------------------------------------------------

_LOG_FIELD_LIMIT = 64


def _log_quote(text: str) -> str:
    """A double-quoted field holding only printable ASCII: backslash and quote escaped,
    everything else as \\xNN, \\uNNNN or \\UNNNNNNNN; at most 64 characters of input."""
    cut = len(text) > _LOG_FIELD_LIMIT
    out = ['"']
    for c in text[:_LOG_FIELD_LIMIT]:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= o < 0x7F:
            out.append(c)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    if cut:
        out.append("...")
    out.append('"')
    return "".join(out)


def _log_host(source: str) -> str:
    """`source` as a bare IP address (brackets and a port removed, IPv4-mapped IPv6 shown
    as IPv4); anything else reduced to harmless characters."""
    text = source.strip()
    candidates = [text]
    if text.startswith("[") and "]" in text:
        candidates.append(text[1 : text.index("]")])
    elif text.count(":") == 1:
        candidates.append(text.split(":", 1)[0])
    for candidate in candidates:
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in ".:-") else "?"
                      for c in text[:_LOG_FIELD_LIMIT])
    return cleaned or "-"


def auth_failure_line(source: str, username: str | None, reason: AuthReason, realm: str) -> str:
    """The one line logged per failed authentication, e.g.
    ``auth failure from 203.0.113.9 user="alice" reason=bad-response realm="hotline"``.
    User and realm are quoted and escaped so no input can end a field or the line."""
    return (f"auth failure from {_log_host(source)} user={_log_quote(username or '')} "
            f"reason={reason.value} realm={_log_quote(realm)}")
