"""The engine's configuration: the model of config.yaml, its loading, and the command-line
overrides of `hotline serve`.

Owns: the schema (pydantic models, unknown keys refused, types strict: `port: "5060"` is
an error, not a coercion), its defaults, the checks that span keys or sections (T1 < T2,
RTP range vs call limit, one secret per user, ...), the resolution of relative paths
against the config file's directory, reading `password_env` variables, and turning clear
passwords into digest HA1 values at load so that no clear password is kept on the model.
Every mistake is reported at once as `FILE:LINE:COL: PATH: expected ..., found ...`
(positions come from hotline.yamlpos).

Must not know: sockets, the event loop or the SIP machinery. The engine reads the loaded
`Config`; nothing here starts anything.

Secrets: HA1 values and the database URL are `SecretStr` (masked in repr, str and
model_dump); clear passwords exist only while a user entry is being validated and are
dropped once hashed. Python cannot wipe a string from memory; the loader keeps no
reference to it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import ModelWrapValidatorHandler
from pydantic.types import AllowInfNan, Strict
from pydantic_core import InitErrorDetails

from hotline.yamlpos import (
    Diagnostic,
    DiagnosticsError,
    Expect,
    Severity,
    describe_found,
    load_yaml_file,
    located_errors,
    problem,
    validate_document,
)

__all__ = [
    "DIGEST_ALGORITHMS",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DigestAlgorithm",
    "HttpConfig",
    "LimitsConfig",
    "ListenAddress",
    "LoadContext",
    "LogLevel",
    "LoggingConfig",
    "PathsConfig",
    "RateLimit",
    "RegistrarConfig",
    "RtpConfig",
    "SipConfig",
    "SipTimers",
    "Transport",
    "User",
    "apply_overrides",
    "digest_ha1",
    "load_config",
    "parse_host_port",
]


class ConfigError(DiagnosticsError):
    """The config cannot be used; `diagnostics` holds every problem, `str()` their lines."""


@dataclass(frozen=True)
class LoadContext:
    """What validation needs from outside the document: the directory relative paths are
    resolved against and the environment `password_env` reads. Passed as the pydantic
    validation context; without one, the current directory and os.environ are used."""

    base_dir: Path
    environ: Mapping[str, str]


def _context(info: ValidationInfo) -> LoadContext:
    ctx = info.context
    if isinstance(ctx, LoadContext):
        return ctx
    return LoadContext(Path.cwd(), os.environ)


# -- value types ------------------------------------------------------------------------------

Transport = Literal["udp", "tcp"]
LogLevel = Literal["debug", "info", "warning", "error"]
DigestAlgorithm = Literal["SHA-256", "MD5", "SHA-512-256"]
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = get_args(DigestAlgorithm)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)

_HASHLIB_NAMES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_HA1_FIELDS: dict[str, str] = {
    "MD5": "ha1_md5", "SHA-256": "ha1_sha256", "SHA-512-256": "ha1_sha512_256",
}
_HA1_DIGITS: dict[str, int] = {"MD5": 32, "SHA-256": 64, "SHA-512-256": 64}


def digest_ha1(algorithm: DigestAlgorithm, username: str, realm: str, password: str) -> str:
    """HA1 = H(username ":" realm ":" password) as lowercase hex, H being MD5, SHA-256 or
    SHA-512/256 (RFC 7616 §3.4.2), over the UTF-8 bytes."""
    h = hashlib.new(_HASHLIB_NAMES[algorithm], usedforsecurity=False)
    h.update(f"{username}:{realm}:{password}".encode())
    return h.hexdigest()


_HOST_WORDS = "an IPv4 or IPv6 address or a host name"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _normalise_host(text: str) -> str | None:
    """The host in canonical form (IPv6 without brackets, compressed), or None."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    if inner is not None:
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.removesuffix(".")
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit():
        return text
    return None


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check_host(value: str) -> str:
    host = _normalise_host(value)
    if host is None:
        raise ValueError(f"expected {_HOST_WORDS}, found {describe_found(value)}")
    return host


def _check_text(what: str, *, max_length: int, forbid: str = "") -> Any:
    def check(value: str) -> str:
        bad = [c for c in value if ord(c) < 0x20 or ord(c) == 0x7F or c in forbid]
        if not value or len(value) > max_length or bad:
            raise ValueError(f"expected {what}, found {describe_found(value)}")
        return value

    return check


def _check_pattern(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {what}, found {describe_found(value)}")
        return value

    return check


def _check_ha1(algorithm: str) -> Any:
    digits = _HA1_DIGITS[algorithm]

    def check(value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if len(text) != digits or not re.fullmatch(r"[0-9A-Fa-f]+", text):
            found = (f"a string of {len(text)} characters" if len(text) != digits
                     else "other characters")
            raise ValueError(f"expected {digits} hexadecimal digits (the {algorithm} HA1), "
                             f"found {found}")
        return SecretStr(text.lower())

    return check


def _path_text(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"expected a path, found {describe_found(value)}")
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    if not path.is_absolute():
        path = _context(info).base_dir / path
    return Path(os.path.normpath(path))


Int = Annotated[int, Strict()]
Number = Annotated[float, Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Host = Annotated[str, Strict(), Expect(_HOST_WORDS), AfterValidator(_check_host)]
ConfigPath = Annotated[Path, Expect("a path"), BeforeValidator(_path_text),
                       AfterValidator(_resolve_path)]
_USERNAME_WORDS = "a SIP user name (letters, digits and -_.!~*'()&=+$,;?/ or %XX escapes)"
Username = Annotated[
    str, Strict(), Expect(_USERNAME_WORDS),
    AfterValidator(_check_pattern(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,64}",
                                  _USERNAME_WORDS)),
]
_ENV_WORDS = "an environment variable name (letters, digits and _, not starting with a digit)"
EnvName = Annotated[str, Strict(), Expect(_ENV_WORDS),
                    AfterValidator(_check_pattern(r"[A-Za-z_][A-Za-z0-9_]{0,127}", _ENV_WORDS))]
_LOGGER_WORDS = "a logger name such as sip or hotline.engine"
LoggerName = Annotated[
    str, Strict(), Expect(_LOGGER_WORDS),
    AfterValidator(_check_pattern(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*",
                                  _LOGGER_WORDS)),
]
_NODE_WORDS = "a node name of letters, digits, '.', '_' and '-' (at most 63 characters)"
NodeName = Annotated[str, Strict(), Expect(_NODE_WORDS),
                     AfterValidator(_check_pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
                                                   _NODE_WORDS))]
_PRINTABLE_WORDS = "a non-empty line of printable text (at most {n} characters)"
UserAgent = Annotated[str, Strict(), Expect(_PRINTABLE_WORDS.format(n=200)),
                      AfterValidator(_check_text(_PRINTABLE_WORDS.format(n=200),
                                                 max_length=200))]
_REALM_WORDS = "a non-empty line of printable text without '\"' or '\\' (at most 128 characters)"
Realm = Annotated[str, Strict(), Expect(_REALM_WORDS),
                  AfterValidator(_check_text(_REALM_WORDS, max_length=128, forbid='"\\'))]
DisplayName = Annotated[str, Strict(), Expect(_PRINTABLE_WORDS.format(n=128)),
                        AfterValidator(_check_text(_PRINTABLE_WORDS.format(n=128),
                                                   max_length=128))]


Ha1Md5 = Annotated[SecretStr, Expect("32 hexadecimal digits (the MD5 HA1)"),
                   AfterValidator(_check_ha1("MD5"))]
Ha1Sha256 = Annotated[SecretStr, Expect("64 hexadecimal digits (the SHA-256 HA1)"),
                      AfterValidator(_check_ha1("SHA-256"))]
Ha1Sha512_256 = Annotated[SecretStr, Expect("64 hexadecimal digits (the SHA-512-256 HA1)"),
                          AfterValidator(_check_ha1("SHA-512-256"))]


def parse_host_port(text: str, *, example_port: int = 5060) -> tuple[str, int]:
    """`HOST:PORT` or `[IPV6]:PORT` → (host without brackets, port 1–65535).

    Raises ValueError whose text says what was expected and what was found."""
    found = describe_found(text)
    m = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", text)
    if m is not None:
        host_text, port_text = f"[{m.group(1)}]", m.group(2)
    else:
        host_text, sep, port_text = text.rpartition(":")
        if not sep or not host_text:
            raise ValueError(f"expected HOST:PORT, found {found}")
        if ":" in host_text:
            raise ValueError(f"expected HOST:PORT with an IPv6 host in brackets "
                             f"([::1]:{example_port}), found {found}")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, found {found}")
    host = _normalise_host(host_text)
    if host is None:
        raise ValueError(f"expected HOST:PORT with HOST {_HOST_WORDS}, found {found}")
    return host, int(port_text)


# -- models -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _first_set(model: BaseModel, *names: str) -> str:
    """The first of `names` the document set explicitly (else the last one)."""
    return next((n for n in names if n in model.model_fields_set), names[-1])


class ListenAddress(_Model):
    """One SIP socket: transport, local address and port."""

    transport: Transport
    host: Host
    port: Port = 5060


_DEFAULT_LISTEN = (
    ListenAddress(transport="udp", host="127.0.0.1", port=5060),
    ListenAddress(transport="tcp", host="127.0.0.1", port=5060),
)


class SipTimers(_Model):
    """RFC 3261 §17.1.1.1 timer values, in milliseconds."""

    t1_ms: Annotated[int, Strict(), Field(ge=1, le=60_000)] = 500
    t2_ms: Annotated[int, Strict(), Field(ge=1, le=600_000)] = 4000
    t4_ms: Annotated[int, Strict(), Field(ge=1, le=600_000)] = 5000

    @model_validator(mode="after")
    def _t1_below_t2(self) -> Self:
        if self.t1_ms < self.t2_ms:
            return self
        if "t1_ms" in self.model_fields_set:
            raise located_errors("SipTimers", [problem(
                ("t1_ms",), f"expected less than t2_ms ({self.t2_ms}), found {self.t1_ms}",
                input=self.t1_ms)])
        raise located_errors("SipTimers", [problem(
            ("t2_ms",), f"expected more than t1_ms ({self.t1_ms}), found {self.t2_ms}",
            input=self.t2_ms)])


class SipConfig(_Model):
    """SIP signalling: sockets, identity, RFC 3261 timers and message limits."""

    listen: tuple[ListenAddress, ...] = Field(default=_DEFAULT_LISTEN, min_length=1)
    advertised_host: Host | None = None
    domain: Host = "hotline.local"
    user_agent: UserAgent = "hotline/0.1"
    timers: SipTimers = Field(default_factory=SipTimers)
    mtu: Annotated[int, Strict(), Field(ge=200, le=65535)] = 1300
    force_rport: Bool = True
    max_message_bytes: Annotated[int, Strict(), Field(ge=1500, le=1_048_576)] = 65535
    # Ring (180) this long before answering a call; 0 answers at once.
    ring_ms: Annotated[int, Strict(), Field(ge=0, le=60_000)] = 0
    # Proxies (e.g. Kamailio) whose P-Asserted-Identity is believed (RFC 3325): from any
    # other source the caller's number is the From user.
    trusted_proxies: tuple[Host, ...] = ()

    @property
    def public_host(self) -> str:
        """The host put in Via, Contact and SDP: advertised_host, else the first listen
        host."""
        return self.advertised_host or self.listen[0].host

    @field_validator("listen")
    @classmethod
    def _listen_once(cls, listen: tuple[ListenAddress, ...]) -> tuple[ListenAddress, ...]:
        problems: list[InitErrorDetails] = []
        seen: dict[tuple[str, str, int], int] = {}
        for i, la in enumerate(listen):
            key = (la.transport, la.host, la.port)
            if key in seen:
                problems.append(problem(
                    (i,), f"expected each listen address once, found {la.transport} "
                    f"{_host_port(la.host, la.port)} again (first at sip.listen[{seen[key]}])"))
            seen.setdefault(key, i)
        if problems:
            raise located_errors("SipConfig", problems)
        return listen

    @field_validator("advertised_host")
    @classmethod
    def _reachable(cls, host: str | None) -> str | None:
        if host is not None and _is_wildcard(host):
            raise ValueError(f"expected an address peers can reach, found the wildcard "
                             f"address {host!r}")
        return host

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.advertised_host is None:
            for i, la in enumerate(self.listen):
                if _is_wildcard(la.host):
                    raise located_errors("SipConfig", [problem(
                        ("listen", i, "host"),
                        f"the wildcard address {la.host!r} cannot be put in Via, Contact and "
                        f"SDP; set sip.advertised_host to the address peers should reach",
                        input=la.host)])
        return self


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RateLimit(_Model):
    """A token bucket: `rate` tokens per second, at most `burst` saved up."""

    rate: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)]
    burst: Annotated[int, Strict(), Field(ge=1)]


class LimitsConfig(_Model):
    """Overload protection: call and request rates, per-source buckets, drain time."""

    max_calls: Annotated[int, Strict(), Field(ge=1)] = 500
    max_cps: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)] = 200.0
    register_per_source: RateLimit = RateLimit(rate=5.0, burst=20)
    requests_per_source: RateLimit = RateLimit(rate=200.0, burst=400)
    auth_failures_per_source: RateLimit = RateLimit(rate=0.2, burst=10)
    drain_seconds: Annotated[float, Strict(), AllowInfNan(False), Field(ge=0)] = 30.0

    @field_validator("register_per_source", "requests_per_source", "auth_failures_per_source",
                     mode="before")
    @classmethod
    def _fill_from_default(cls, value: Any, info: ValidationInfo) -> Any:
        """`{rate: 10}` keeps the default burst of that limit (and vice versa)."""
        if isinstance(value, dict) and info.field_name is not None:
            default = cls.model_fields[info.field_name].default
            if isinstance(default, RateLimit):
                return {**default.model_dump(), **value}
        return value


_SECRET_KEYS = ("password", "password_env", "ha1_md5", "ha1_sha256", "ha1_sha512_256")


class User(_Model):
    """A user allowed to REGISTER, known by its HA1 values only.

    In the document an entry gives exactly one of `password`, `password_env` (the name of
    an environment variable holding the password) or `ha1_*` values. Passwords are hashed
    into the HA1 of every algorithm in `registrar.algorithms` when the whole config loads;
    the model never keeps them (there is no `password` field).
    """

    username: Username
    display_name: DisplayName | None = None
    password_env: EnvName | None = None
    ha1_md5: Ha1Md5 | None = None
    ha1_sha256: Ha1Sha256 | None = None
    ha1_sha512_256: Ha1Sha512_256 | None = None
    _password: SecretStr | None = PrivateAttr(default=None)

    def ha1(self, algorithm: DigestAlgorithm) -> str | None:
        """The HA1 (lowercase hex) for `algorithm`, or None if the user has none."""
        value: SecretStr | None = getattr(self, _HA1_FIELDS[algorithm])
        return None if value is None else value.get_secret_value()

    @model_validator(mode="wrap")
    @classmethod
    def _take_password(cls, data: Any, handler: ModelWrapValidatorHandler[User],
                       info: ValidationInfo) -> User:
        if not isinstance(data, dict):
            return handler(data)
        problems: list[InitErrorDetails] = []
        given = [k for k in data if k in _SECRET_KEYS and data[k] is not None]
        password: str | None = None
        if "password" in data:
            data = dict(data)
            raw = data.pop("password")
            if isinstance(raw, str) and raw:
                password = raw
            elif raw is not None:
                problems.append(problem(
                    ("password",),
                    f"expected a non-empty string, found {describe_found(raw, secret=True)}",
                    code="type"))
        try:
            user = handler(data)
        except ValidationError as exc:
            raise located_errors("User", problems, exc) from None
        kinds: dict[str, str] = {}  # kind of secret → first key of that kind, in order
        for key in given:
            kinds.setdefault("ha1" if key.startswith("ha1_") else key, key)
        if len(kinds) > 1:
            first, second = list(kinds.values())[:2]
            problems.append(problem((second,), f"expected either {first} or {second}, not both",
                                    code="conflict"))
        elif not given:
            problems.append(problem(
                (), "missing the secret: expected password, password_env or ha1_md5 / "
                    "ha1_sha256 / ha1_sha512_256", code="missing-key"))
        elif user.password_env is not None:
            value = _context(info).environ.get(user.password_env)
            if value is None:
                problems.append(problem(("password_env",), f"environment variable "
                                        f"{user.password_env!r} is not set", code="env"))
            elif value == "":
                problems.append(problem(("password_env",), f"environment variable "
                                        f"{user.password_env!r} is empty", code="env"))
            else:
                password = value
        if problems:
            raise located_errors("User", problems)
        if password is not None:
            user._password = SecretStr(password)
        return user


class RegistrarConfig(_Model):
    """Registrar and digest authentication. `realm` empty means sip.domain; a `Config`
    always has it filled in."""

    realm: Realm = Field(default="")
    require_auth: Bool = True
    allow_rfc2069: Bool = False
    nonce_ttl_seconds: Annotated[int, Strict(), Field(ge=10, le=86_400)] = 300
    algorithms: tuple[DigestAlgorithm, ...] = Field(default=("SHA-256", "MD5"), min_length=1)
    min_expires: Annotated[int, Strict(), Field(ge=1, le=86_400)] = 60
    max_expires: Annotated[int, Strict(), Field(ge=1, le=604_800)] = 3600
    default_expires: Annotated[int, Strict(), Field(ge=1, le=604_800)] = 3600
    max_contacts_per_aor: Annotated[int, Strict(), Field(ge=1, le=1000)] = 10
    users: tuple[User, ...] = ()

    def user(self, username: str) -> User | None:
        return next((u for u in self.users if u.username == username), None)

    @field_validator("algorithms")
    @classmethod
    def _algorithms_once(cls, algorithms: tuple[DigestAlgorithm, ...]
                         ) -> tuple[DigestAlgorithm, ...]:
        problems = [problem((i,), f"expected each algorithm once, found {alg!r} again",
                            input=alg)
                    for i, alg in enumerate(algorithms) if alg in algorithms[:i]]
        if problems:
            raise located_errors("RegistrarConfig", problems)
        return algorithms

    @field_validator("users")
    @classmethod
    def _usernames_once(cls, users: tuple[User, ...]) -> tuple[User, ...]:
        problems: list[InitErrorDetails] = []
        names: dict[str, int] = {}
        for i, u in enumerate(users):
            if u.username in names:
                problems.append(problem(
                    (i, "username"), f"expected each username once, found {u.username!r} "
                    f"again (first at registrar.users[{names[u.username]}])", input=u.username))
            names.setdefault(u.username, i)
        if problems:
            raise located_errors("RegistrarConfig", problems)
        return users

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[InitErrorDetails] = []
        if self.allow_rfc2069 and "MD5" not in self.algorithms:
            problems.append(problem(("allow_rfc2069",), "needs 'MD5' in registrar.algorithms "
                                    "(RFC 2069 answers are MD5 only)", input=True))
        if self.min_expires > self.max_expires:
            at = _first_set(self, "max_expires", "min_expires")
            problems.append(problem(
                (at,), f"expected min_expires ({self.min_expires}) at most max_expires "
                       f"({self.max_expires})", input=getattr(self, at)))
        elif "default_expires" in self.model_fields_set and not (
                self.min_expires <= self.default_expires <= self.max_expires):
            problems.append(problem(
                ("default_expires",), f"expected from min_expires ({self.min_expires}) to "
                f"max_expires ({self.max_expires}), found {self.default_expires}",
                input=self.default_expires))
        elif self.default_expires > self.max_expires:
            problems.append(problem(
                ("max_expires",), f"expected at least default_expires ({self.default_expires}, "
                f"the default), found {self.max_expires}; set default_expires too",
                input=self.max_expires))
        elif self.default_expires < self.min_expires:
            problems.append(problem(
                ("min_expires",), f"expected at most default_expires ({self.default_expires}, "
                f"the default), found {self.min_expires}; set default_expires too",
                input=self.min_expires))
        if problems:
            raise located_errors("RegistrarConfig", problems)
        return self


class RtpConfig(_Model):
    """The UDP ports for media: RTP on even ports, RTCP on the odd port above."""

    port_min: Annotated[int, Strict(), Field(ge=1024, le=65534)] = 20000
    port_max: Annotated[int, Strict(), Field(ge=1025, le=65535)] = 29999
    inactivity_timeout_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                          Field(gt=0)] = 30.0
    # 0: the media tick runs in the engine's process (about 200 bridges on one core);
    # N: N worker processes share the legs, a bridge's legs together (one per core).
    media_workers: Annotated[int, Strict(), Field(ge=0, le=64)] = 0

    @property
    def pairs(self) -> int:
        """How many RTP/RTCP port pairs the range holds."""
        return (self.port_max - self.port_min + 1) // 2

    @field_validator("port_min")
    @classmethod
    def _even(cls, port: int) -> int:
        if port % 2:
            raise ValueError(f"expected an even port (RTP uses even ports, RTCP the odd one "
                             f"above), found {port}")
        return port

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.port_max <= self.port_min:
            at = _first_set(self, "port_max", "port_min")
            raise located_errors("RtpConfig", [problem(
                (at,), f"expected port_min ({self.port_min}) below port_max "
                       f"({self.port_max})", input=getattr(self, at))])
        return self


class PathsConfig(_Model):
    """Directories, resolved against the config file's directory when relative."""

    flows: ConfigPath = Field(default=Path("ivr_flows"), validate_default=True)
    audio: ConfigPath = Field(default=Path("audio"), validate_default=True)
    data: ConfigPath = Field(default=Path("var"), validate_default=True)


_URL_WORDS = "a database URL: sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DATABASE"


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _check_db_url(value: SecretStr, info: ValidationInfo) -> SecretStr:
    url = value.get_secret_value()
    found = describe_found(_redact_url(url))
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep:
        if not rest.startswith("/"):
            raise ValueError(f"expected sqlite:///PATH (three slashes, then the file), "
                             f"found {found}")
        path_text, qmark, query = rest[1:].partition("?")
        if not path_text:
            raise ValueError(f"expected sqlite:///PATH with a file path, found {found}")
        if path_text != ":memory:":
            path = Path(path_text).expanduser()
            if not path.is_absolute():
                path = _context(info).base_dir / path
            path_text = os.path.normpath(path)
        return SecretStr(f"sqlite:///{path_text}{qmark}{query}")
    if scheme in ("postgresql", "postgres") and sep:
        try:
            urlsplit(url).port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError(f"expected {_URL_WORDS}, found {found} (bad port)") from None
        return value
    raise ValueError(f"expected {_URL_WORDS}, found {found}")


class DatabaseConfig(_Model):
    """Where bookings and shared state live: SQLite (one node) or PostgreSQL (several).

    `url` is a SecretStr because a PostgreSQL URL may carry a password; `dsn` gives it
    in full, `display_url` with the password masked (for logs)."""

    url: Annotated[SecretStr, Expect(_URL_WORDS), AfterValidator(_check_db_url)] = Field(
        default=SecretStr("sqlite:///var/hotline.db"), validate_default=True)

    @property
    def dsn(self) -> str:
        return self.url.get_secret_value()

    @property
    def display_url(self) -> str:
        return _redact_url(self.dsn)

    @property
    def kind(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.dsn.startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file (absolute), or None for PostgreSQL and `:memory:`."""
        if self.kind != "sqlite":
            return None
        path_text = self.dsn.removeprefix("sqlite:///").partition("?")[0]
        return None if path_text == ":memory:" else Path(path_text)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", self.display_url


def _check_http_listen(value: str) -> str:
    host, port = parse_host_port(value, example_port=8080)
    return _host_port(host, port)


class HttpConfig(_Model):
    """The admin API, dashboard and metrics listener."""

    listen: Annotated[str, Strict(), Expect("HOST:PORT"), AfterValidator(_check_http_listen)] = (
        "127.0.0.1:8080")
    enabled: Bool = True
    # The environment variable holding the /api bearer token (no token: /api answers 403).
    api_token_env: EnvName | None = "HOTLINE_API_TOKEN"

    @property
    def host(self) -> str:
        return parse_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_host_port(self.listen)[1]


class LoggingConfig(_Model):
    """Root log level, output format, and per-subsystem levels."""

    level: LogLevel = "info"
    format: Literal["text", "json"] = "text"
    levels: dict[LoggerName, LogLevel] = Field(default_factory=dict)


def _check_timezone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA time zone such as Australia/Sydney, found "
                         f"{value!r}") from None
    return value


class IvrConfig(_Model):
    """Running the flows of paths.flows."""

    default_flow: Annotated[str, Strict(), Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")] | None = (
        "vaccine")
    timezone: Annotated[str, Strict(), AfterValidator(_check_timezone)] = "Australia/Sydney"
    reload_check_seconds: Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=3600)] = 1.0
    traces: Annotated[bool, Strict()] = True
    closed: tuple[Annotated[str, Strict()], ...] = ()


def _check_notify_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
    return value


class BookingConfig(_Model):
    """Bookings: eligibility rules, confirmations, holds and the sample clinics."""

    rules: ConfigPath | None = None
    notify_url: Annotated[str, Strict(), AfterValidator(_check_notify_url)] | None = None
    notify_timeout_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                      Field(gt=0, le=60)] = 5.0
    notify_max_attempts: Annotated[int, Strict(), Field(ge=1, le=100)] = 12
    hold_sweep_seconds: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0, le=3600)] = 30.0
    sample_clinics: Annotated[bool, Strict()] = True
    sample_days: Annotated[int, Strict(), Field(ge=1, le=90)] = 14


AcdName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
Seconds = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=86400)]
Proficiency = Annotated[int, Strict(), Field(ge=1, le=10)]


class SkillNeed(_Model):
    """A skill a queue (or an escalation level) needs, at a minimum proficiency 1-10."""

    skill: AcdName
    min: Proficiency = 1


class EscalationLevel(_Model):
    """After `after_seconds` in the queue, agents with these skills may take the call too
    (an empty list: any agent of the queue)."""

    after_seconds: Seconds
    skills: tuple[SkillNeed, ...] = ()


class Overflow(_Model):
    """Where a caller goes after max_wait_seconds: exactly one of another queue, a
    voicemail box, or the offer of a callback."""

    queue: AcdName | None = None
    voicemail: AcdName | None = None
    callback: Bool = False

    @model_validator(mode="after")
    def _one(self) -> Overflow:
        chosen = [k for k in ("queue", "voicemail") if getattr(self, k) is not None]
        if self.callback:
            chosen.append("callback")
        if len(chosen) != 1:
            raise ValueError("expected exactly one of queue, voicemail or callback: true, "
                             f"found {', '.join(chosen) or 'none'}")
        return self


class QueueSettings(_Model):
    """One ACD queue."""

    name: AcdName
    strategy: Literal["longest_idle", "round_robin", "fewest_calls", "skills_based"] = (
        "longest_idle")
    skills: tuple[SkillNeed, ...] = ()
    escalation: tuple[EscalationLevel, ...] = ()
    members: tuple[AcdName, ...] | None = None
    max_wait_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                Field(gt=0, le=86400)] | None = None
    overflow: Overflow | None = None
    announce_first_seconds: Seconds | None = 20.0
    announce_every_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                      Field(ge=10, le=3600)] | None = 60.0
    announce_position: Bool = True
    announce_wait: Bool = True
    hold_music: Annotated[str, Strict(), Field(min_length=1, max_length=200)] = "hold_music"
    callback_key: Annotated[str, Strict(), Field(pattern=r"^[0-9*#]$")] | None = None
    wrap_up_seconds: Seconds | None = None
    ring_timeout_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                    Field(gt=0, le=300)] | None = None
    min_samples: Annotated[int, Strict(), Field(ge=1, le=10000)] = 10
    sensitive: tuple[AcdName, ...] = ()

    @model_validator(mode="after")
    def _wait_and_overflow(self) -> QueueSettings:
        if (self.max_wait_seconds is None) != (self.overflow is None):
            given = "max_wait_seconds" if self.overflow is None else "overflow"
            missing = "overflow" if self.overflow is None else "max_wait_seconds"
            raise ValueError(f"expected {missing} too: {given} says what happens after the "
                             f"longest wait, and needs it")
        return self


class AgentSettings(_Model):
    """An agent: a registrar user (`id` is the username) with skills 1-10."""

    id: Username
    name: DisplayName = ""
    skills: dict[AcdName, Proficiency] = Field(default_factory=dict)
    wrap_up_seconds: Seconds | None = None
    supervisor: Bool = False
    logged_in: Bool = False


class ExpertSettings(_Model):
    """A back-office expert in the directory (outside the queues)."""

    id: AcdName
    name: DisplayName
    uri: Annotated[str, Strict(), Field(pattern=r"^sips?:[^\s]+$", max_length=256)]
    department: DisplayName = ""
    skills: dict[AcdName, Proficiency] = Field(default_factory=dict)


class AcdSettings(_Model):
    """Agents, queues, experts and the rules between them (see hotline/acd)."""

    agents: tuple[AgentSettings, ...] = ()
    queues: tuple[QueueSettings, ...] = ()
    experts: tuple[ExpertSettings, ...] = ()
    ring_timeout_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                    Field(gt=0, le=300)] = 15.0
    wrap_up_seconds: Seconds = 10.0
    # After an offer fails (no answer within ring_timeout_seconds, rejected, busy,
    # unreachable) the agent goes on a break: for this many seconds, or (null) until they
    # come back with *44 or the API.
    pause_after_failed_offer_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                                Field(gt=0, le=86400)] | None = None
    break_reasons: dict[Annotated[str, Strict(), Field(pattern=r"^[0-9]{1,4}$")],
                        AcdName] = Field(default_factory=dict)
    callback_max_attempts: Annotated[int, Strict(), Field(ge=1, le=20)] = 3
    callback_retry_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                      Field(gt=0, le=86400)] = 300.0
    record_calls: Bool = False
    # SUBSCRIBE to the presence of experts whose URI is outside sip.domain (an enterprise
    # phone system's presence server); experts at our domain are fed by PUBLISH and their
    # registrations.
    watch_expert_presence: Bool = False
    callback_uri: Annotated[str, Strict(), Field(
        pattern=r"^sips?:[^\s]*\{number\}[^\s]*$", max_length=256)] | None = None


class WebRtcConfig(_Model):
    """Browser agents: the WebRTC gateway (its page at http.listen, path /agent/)."""

    enabled: Bool = False
    bind_host: Host = "127.0.0.1"
    register_expires: Annotated[int, Strict(), Field(ge=60, le=86400)] = 300
    answer_timeout_seconds: Annotated[float, Strict(), AllowInfNan(False),
                                      Field(gt=0, le=60)] = 10.0


class Config(_Model):
    """The whole engine configuration, as loaded from config.yaml."""

    node_name: NodeName = "hotline-1"
    sip: SipConfig = Field(default_factory=SipConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    registrar: RegistrarConfig = Field(default_factory=RegistrarConfig)
    rtp: RtpConfig = Field(default_factory=RtpConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    ivr: IvrConfig = Field(default_factory=IvrConfig)
    booking: BookingConfig = Field(default_factory=BookingConfig)
    acd: AcdSettings = Field(default_factory=AcdSettings)
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="wrap")
    @classmethod
    def _finish(cls, data: Any, handler: ModelWrapValidatorHandler[Config],
                info: ValidationInfo) -> Config:
        """Cross-section checks, realm default, and passwords → HA1."""
        if isinstance(data, dict):
            # validated (not default-constructed) so relative defaults resolve against
            # the config file's directory
            data = {"paths": {}, "database": {}, "booking": {}, **data}
        cfg = handler(data)
        problems: list[InitErrorDetails] = []
        reg = cfg.registrar
        realm = reg.realm or cfg.sip.domain

        if cfg.rtp.pairs < cfg.limits.max_calls:
            span = f"{cfg.rtp.port_min}-{cfg.rtp.port_max}"
            if cfg.rtp.model_fields_set & {"port_min", "port_max"} or (
                    "max_calls" not in cfg.limits.model_fields_set):
                at = _first_set(cfg.rtp, "port_max", "port_min")
                problems.append(problem(
                    ("rtp", at), f"expected a range with at least {cfg.limits.max_calls} "
                    f"RTP/RTCP port pairs (limits.max_calls), found {cfg.rtp.pairs} "
                    f"pairs ({span})", input=getattr(cfg.rtp, at)))
            else:
                problems.append(problem(
                    ("limits", "max_calls"), f"expected at most {cfg.rtp.pairs} (the RTP/RTCP "
                    f"port pairs of rtp {span}), found {cfg.limits.max_calls}",
                    input=cfg.limits.max_calls))

        users: list[User] = []
        for i, user in enumerate(reg.users):
            password = user._password
            user._password = None
            if password is not None:
                update = {_HA1_FIELDS[alg]: SecretStr(digest_ha1(
                    alg, user.username, realm, password.get_secret_value()))
                    for alg in reg.algorithms}
                user = user.model_copy(update=update)
                user._password = None
            else:
                missing = [alg for alg in reg.algorithms if user.ha1(alg) is None]
                if missing:
                    fields = ", ".join(_HA1_FIELDS[a] for a in missing)
                    listed = ", ".join(missing)
                    problems.append(problem(
                        ("registrar", "users", i),
                        f"missing {fields}: registrar.algorithms lists {listed} (give an HA1 "
                        f"for every listed algorithm, or a password)", code="missing-key"))
            users.append(user)
        if cfg.webrtc.enabled and (not cfg.http.enabled or not any(
                la.transport == "udp" for la in cfg.sip.listen)):
            problems.append(problem(
                ("webrtc", "enabled"), "expected http.enabled and a udp address in sip.listen "
                "(browser agents reach the engine through its HTTP listener and SIP over UDP)",
                input=True))
        names = {u.username for u in reg.users}
        for i, agent in enumerate(cfg.acd.agents):
            if agent.id not in names:
                problems.append(problem(
                    ("acd", "agents", i, "id"), f"expected a registrar user (agents log in "
                    f"with their phone's credentials), found {agent.id!r}", input=agent.id))
        queue_names = {q.name for q in cfg.acd.queues}
        agent_ids = {a.id for a in cfg.acd.agents}
        for i, queue in enumerate(cfg.acd.queues):
            target = queue.overflow.queue if queue.overflow is not None else None
            if target is not None and target not in queue_names:
                problems.append(problem(
                    ("acd", "queues", i, "overflow", "queue"),
                    f"expected one of the queues ({', '.join(sorted(queue_names))}), found "
                    f"{target!r}", input=target))
            for j, member in enumerate(queue.members or ()):
                if member not in agent_ids:
                    problems.append(problem(
                        ("acd", "queues", i, "members", j),
                        f"expected an agent of acd.agents, found {member!r}", input=member))
        if problems:
            raise located_errors("Config", problems)
        registrar = reg.model_copy(update={"realm": realm, "users": tuple(users)})
        # in place: pydantic requires a top-level validator to return the instance it
        # builds (Config(...) goes through __init__); the model is frozen to its users
        object.__setattr__(cfg, "registrar", registrar)
        return cfg


# -- loading and overrides ----------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, parse and validate a config file.

    Relative paths in it resolve against its directory; `password_env` reads `environ`
    (default: os.environ). Raises ConfigError with every problem found, each as
    `FILE:LINE:COL: PATH: expected ..., found ...`, FILE being `path` as given.
    """
    name = os.fspath(path)
    try:
        doc = load_yaml_file(path, display_name=name)
    except DiagnosticsError as exc:
        raise ConfigError(exc.diagnostics) from None
    if doc.is_empty:
        raise ConfigError([Diagnostic(
            name, 1, 1, (), "expected a mapping of settings (see the shipped config.yaml), "
            "found an empty file", Severity.ERROR, "empty")])
    if not isinstance(doc.data, dict):
        pos = doc.positions.value(())
        raise ConfigError([*doc.problems, Diagnostic(
            name, pos.line, pos.col, (), f"expected a mapping of settings at the top level, "
            f"found {describe_found(doc.data)}", Severity.ERROR, "type")])
    context = LoadContext(Path(os.path.abspath(name)).parent,
                          os.environ if environ is None else environ)
    try:
        return validate_document(Config, doc, context=context)
    except DiagnosticsError as exc:
        raise ConfigError(exc.diagnostics) from None


def apply_overrides(
    cfg: Config, *, sip_listen: str | None = None, log_level: str | None = None
) -> Config:
    """The config with command-line flags applied.

    `sip_listen` (`HOST:PORT`, IPv6 as `[::1]:5060`) replaces sip.listen with UDP and TCP
    on that address; `log_level` replaces logging.level. A bad flag raises ConfigError
    whose line names the flag (`--sip-listen: expected HOST:PORT, found '...'`).
    """
    problems: list[Diagnostic] = []
    sip = cfg.sip
    logging_cfg = cfg.logging
    if sip_listen is not None:
        try:
            host, port = parse_host_port(sip_listen)
        except ValueError as exc:
            problems.append(Diagnostic("--sip-listen", None, None, (), str(exc),
                                       Severity.ERROR, "flag"))
        else:
            if _is_wildcard(host) and sip.advertised_host is None:
                problems.append(Diagnostic(
                    "--sip-listen", None, None, (),
                    f"the wildcard address {host!r} cannot be put in Via, Contact and SDP; "
                    f"set sip.advertised_host in the config", Severity.ERROR, "flag"))
            listen = (ListenAddress(transport="udp", host=host, port=port),
                      ListenAddress(transport="tcp", host=host, port=port))
            sip = sip.model_copy(update={"listen": listen})
    if log_level is not None:
        if log_level in LOG_LEVELS:
            logging_cfg = logging_cfg.model_copy(update={"level": log_level})
        else:
            problems.append(Diagnostic(
                "--log-level", None, None, (),
                f"expected one of {', '.join(LOG_LEVELS)}, found {describe_found(log_level)}",
                Severity.ERROR, "flag"))
    if problems:
        raise ConfigError(problems)
    return cfg.model_copy(update={"sip": sip, "logging": logging_cfg})
