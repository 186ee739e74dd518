"""hotline.config: the shipped config.yaml, defaults, every broken-config fixture reported
as exact `file:line:col: ...` lines, secrets kept out of every rendering, password → HA1,
path resolution, and the command-line overrides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr

from hotline.config import (
    Config,
    ConfigError,
    ListenAddress,
    apply_overrides,
    digest_ha1,
    load_config,
    parse_host_port,
)
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
BROKEN = DATA / "config"


def errors(path: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return str(info.value).splitlines()


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the broken-config corpus ------------------------------------------------------------------

CORPUS: dict[str, list[str]] = {
    "wrong_type.yaml": [
        "wrong_type.yaml:6:13: sip.listen[0].port: expected an integer from 1 to 65535, "
        "found 'abc'",
    ],
    "unknown_key.yaml": [
        "unknown_key.yaml:2:1: unknown key 'sipp' (did you mean 'sip'?); expected one of: "
        "node_name, sip, limits, registrar, rtp, paths, database, http, ivr, booking, acd, "
        "webrtc, logging",
        "unknown_key.yaml:5:3: logging: unknown key 'levle' (did you mean 'level'?); "
        "expected one of: level, format, levels",
    ],
    "duplicate_key.yaml": [
        "duplicate_key.yaml:4:3: sip: duplicate key 'mtu'; first defined at line 3",
        "duplicate_key.yaml:7:1: duplicate key 'sip'; first defined at line 1",
    ],
    "bad_syntax.yaml": [
        "bad_syntax.yaml:3:1: invalid YAML: expected ',' or ']', but got a value "
        "(while parsing a flow sequence started at line 2)",
    ],
    "tab_indent.yaml": [
        "tab_indent.yaml:3:1: found a tab character; YAML indents and separates with spaces only",
    ],
    "port_out_of_range.yaml": [
        "port_out_of_range.yaml:4:48: sip.listen[1].port: expected an integer from 1 to 65535, "
        "found 70000",
    ],
    "bad_transport.yaml": [
        "bad_transport.yaml:3:18: sip.listen[0].transport: expected one of 'udp', 'tcp', "
        "found 'tls'",
    ],
    "password_and_ha1.yaml": [
        "password_and_ha1.yaml:5:16: registrar.users[0].ha1_md5: expected either password or "
        "ha1_md5, not both",
    ],
    "missing_password_env.yaml": [
        "missing_password_env.yaml:4:21: registrar.users[0].password_env: environment "
        "variable 'HOTLINE_TEST_UNSET_PASSWORD' is not set",
    ],
    "t1_not_below_t2.yaml": [
        "t1_not_below_t2.yaml:3:12: sip.timers.t1_ms: expected less than t2_ms (4000), "
        "found 4000",
    ],
    "bad_rtp_range.yaml": [
        "bad_rtp_range.yaml:4:13: rtp.port_min: expected an even port (RTP uses even ports, "
        "RTCP the odd one above), found 20001",
    ],
    "rtp_range_too_small.yaml": [
        "rtp_range_too_small.yaml:3:13: rtp.port_max: expected a range with at least 500 "
        "RTP/RTCP port pairs (limits.max_calls), found 50 pairs (20000-20099)",
    ],
    "top_level_list.yaml": [
        "top_level_list.yaml:1:1: expected a mapping of settings at the top level, found a list",
    ],
    "empty.yaml": [
        "empty.yaml:1:1: expected a mapping of settings (see the shipped config.yaml), "
        "found an empty file",
    ],
    "comments_only.yaml": [
        "comments_only.yaml:1:1: expected a mapping of settings (see the shipped config.yaml), "
        "found an empty file",
    ],
    "alias.yaml": [
        "alias.yaml:4:10: registrar.realm: aliases are not supported (*domain refers to "
        "&domain at line 2); write the value out in full",
    ],
    "no_secret.yaml": [
        "no_secret.yaml:3:7: registrar.users[0]: missing the secret: expected password, "
        "password_env or ha1_md5 / ha1_sha256 / ha1_sha512_256",
    ],
    "ha1_missing_algorithm.yaml": [
        "ha1_missing_algorithm.yaml:4:7: registrar.users[0]: missing ha1_sha256: "
        "registrar.algorithms lists SHA-256 (give an HA1 for every listed algorithm, or a "
        "password)",
    ],
    "wildcard_without_advertised.yaml": [
        "wildcard_without_advertised.yaml:3:31: sip.listen[0].host: the wildcard address "
        "'0.0.0.0' cannot be put in Via, Contact and SDP; set sip.advertised_host to the "
        "address peers should reach",
    ],
    "bad_database_url.yaml": [
        "bad_database_url.yaml:2:8: database.url: expected a database URL: sqlite:///PATH or "
        "postgresql://[USER@]HOST[:PORT]/DATABASE, found 'mysql://hotline:***@db.example/hotline'",
    ],
    "wrong_types.yaml": [
        "wrong_types.yaml:2:14: limits.max_calls: expected an integer of at least 1, found '500'",
        "wrong_types.yaml:3:12: limits.max_cps: expected a number greater than 0, found true",
        "wrong_types.yaml:4:18: limits.drain_seconds: expected a number of at least 0, "
        "found .inf",
        "wrong_types.yaml:6:12: http.enabled: expected true or false, found 'yes'",
        "wrong_types.yaml:7:11: http.listen: expected HOST:PORT with an IPv6 host in brackets "
        "([::1]:8080), found '::1:8080'",
        "wrong_types.yaml:9:10: logging.level: expected one of 'debug', 'info', 'warning', "
        "'error', found 'INFO'",
        "wrong_types.yaml:10:13: logging.levels: invalid key 'bad name': expected a logger "
        "name such as sip or hotline.engine",
        "wrong_types.yaml:10:37: logging.levels.sip: expected one of 'debug', 'info', "
        "'warning', 'error', found 'loud'",
    ],
}


def test_the_corpus_covers_every_fixture() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted([*CORPUS, "many_errors.yaml"])
    assert len(CORPUS) >= 12


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_config_is_reported_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    assert errors(name) == CORPUS[name]


def test_every_error_at_once_sorted_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    assert errors("many_errors.yaml") == [
        "many_errors.yaml:4:48: sip.listen[0].port: expected an integer from 1 to 65535, "
        "found 0",
        "many_errors.yaml:5:20: sip.timers.t1_ms: expected less than t2_ms (400), found 500",
        "many_errors.yaml:6:3: sip: unknown key 'domian' (did you mean 'domain'?); expected "
        "one of: listen, advertised_host, domain, user_agent, timers, mtu, force_rport, "
        "max_message_bytes, ring_ms, trusted_proxies",
        "many_errors.yaml:8:14: limits.max_calls: expected an integer of at least 1, found -1",
        "many_errors.yaml:11:54: registrar.users[0].password_env: expected either password or "
        "password_env, not both",
        "many_errors.yaml:12:7: registrar.users[1]: missing required key 'username'",
        "many_errors.yaml:13:1: duplicate key 'node_name'; first defined at line 1",
        "many_errors.yaml:15:13: rtp.port_min: expected an even port (RTP uses even ports, "
        "RTCP the odd one above), found 20001",
        "many_errors.yaml:17:11: http.listen: expected HOST:PORT, found 'localhost'",
    ]


def test_config_error_holds_structured_diagnostics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    with pytest.raises(ConfigError) as info:
        load_config("wrong_type.yaml")
    (d,) = info.value.diagnostics
    assert (d.file, d.line, d.col) == ("wrong_type.yaml", 6, 13)
    assert d.path == ("sip", "listen", 0, "port")
    assert d.code == "type"


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert errors(missing) == [f"{missing}:1:1: cannot read the file: it does not exist"]
    assert errors(tmp_path) == [f"{tmp_path}:1:1: cannot read the file: it is a directory"]
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"node_name: x\nsip:\n  domain: caf\xe9.example\n")
    assert errors(latin1) == [f"{latin1}:3:14: the file is not valid UTF-8 (byte 0xe9)"]
    scalar = write(tmp_path, "just words\n", "scalar.yaml")
    assert errors(scalar) == [
        f"{scalar}:1:1: expected a mapping of settings at the top level, found 'just words'"]


# -- the shipped config and the defaults ----------------------------------------------------------


def test_the_shipped_config_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths follow the file, not the cwd
    cfg = load_config(ROOT / "config.yaml")
    assert [(a.transport, a.host, a.port) for a in cfg.sip.listen] == [
        ("udp", "127.0.0.1", 5060), ("tcp", "127.0.0.1", 5060)]
    assert cfg.http.listen == "127.0.0.1:8080" and cfg.http.enabled
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8080)
    assert cfg.database.kind == "sqlite"
    assert cfg.database.sqlite_path == ROOT / "var" / "hotline.db"
    assert cfg.paths.flows == ROOT / "ivr_flows"
    assert cfg.paths.audio == ROOT / "audio"
    assert cfg.paths.data == ROOT / "var"
    assert cfg.registrar.realm == "hotline.local"
    assert [u.username for u in cfg.registrar.users] == ["agent1", "agent2"]
    agent1 = cfg.registrar.users[0]
    assert agent1.ha1("SHA-256") == digest_ha1("SHA-256", "agent1", "hotline.local", "agent1-demo")
    assert agent1.ha1("MD5") == digest_ha1("MD5", "agent1", "hotline.local", "agent1-demo")
    assert agent1.ha1("SHA-512-256") is None


def test_the_shipped_config_equals_the_defaults_where_documented() -> None:
    shipped = load_config(ROOT / "config.yaml")
    default = Config()
    for section in ("sip", "limits", "rtp", "http", "logging"):
        assert getattr(shipped, section) == getattr(default, section), section
    assert shipped.node_name == default.node_name


def test_defaults() -> None:
    cfg = Config()
    assert cfg.node_name == "hotline-1"
    sip = cfg.sip
    assert sip.listen == (ListenAddress(transport="udp", host="127.0.0.1", port=5060),
                          ListenAddress(transport="tcp", host="127.0.0.1", port=5060))
    assert sip.advertised_host is None and sip.public_host == "127.0.0.1"
    assert (sip.domain, sip.user_agent, sip.mtu, sip.force_rport, sip.max_message_bytes) == (
        "hotline.local", "hotline/0.1", 1300, True, 65535)
    assert (sip.timers.t1_ms, sip.timers.t2_ms, sip.timers.t4_ms) == (500, 4000, 5000)
    lim = cfg.limits
    assert (lim.max_calls, lim.max_cps, lim.drain_seconds) == (500, 200.0, 30.0)
    assert (lim.register_per_source.rate, lim.register_per_source.burst) == (5.0, 20)
    assert (lim.requests_per_source.rate, lim.requests_per_source.burst) == (200.0, 400)
    assert (lim.auth_failures_per_source.rate, lim.auth_failures_per_source.burst) == (0.2, 10)
    reg = cfg.registrar
    assert reg.realm == "hotline.local"  # sip.domain
    assert reg.require_auth and not reg.allow_rfc2069
    assert reg.algorithms == ("SHA-256", "MD5")
    assert (reg.nonce_ttl_seconds, reg.min_expires, reg.max_expires, reg.default_expires,
            reg.max_contacts_per_aor) == (300, 60, 3600, 3600, 10)
    assert reg.users == ()
    assert (cfg.rtp.port_min, cfg.rtp.port_max, cfg.rtp.inactivity_timeout_seconds) == (
        20000, 29999, 30.0)
    assert cfg.rtp.pairs == 5000
    assert (cfg.logging.level, cfg.logging.format, cfg.logging.levels) == ("info", "text", {})
    assert cfg.database.dsn.startswith("sqlite:////")
    assert cfg.database.dsn.endswith("/var/hotline.db")


def test_models_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValueError):
        cfg.sip.mtu = 9000


# -- secrets -----------------------------------------------------------------------------------

SECRET_CONFIG = """\
sip:
  domain: example.org
registrar:
  algorithms: [SHA-256, MD5, SHA-512-256]
  users:
    - username: alice
      password: correct-horse-battery-staple
    - username: bob
      password_env: BOB_PASSWORD
database:
  url: postgresql://hotline:pg-secret-pw@db.example:5432/hotline
"""


def test_secrets_never_appear_in_renderings(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SECRET_CONFIG),
                      environ={"BOB_PASSWORD": "bobs-env-secret"})
    ha1s = [u.ha1(alg) for u in cfg.registrar.users for alg in ("MD5", "SHA-256", "SHA-512-256")]
    assert all(h is not None and len(h) in (32, 64) for h in ha1s)
    renderings = [
        repr(cfg), str(cfg), str(cfg.model_dump()), cfg.model_dump_json(),
        repr(cfg.registrar), repr(cfg.registrar.users), str(cfg.registrar.users[0]),
        repr(cfg.database), str(cfg.database),
    ]
    for text in renderings:
        for secret in ("correct-horse-battery-staple", "bobs-env-secret", "pg-secret-pw", *ha1s):
            assert secret is not None and secret not in text
    assert "postgresql://hotline:***@db.example:5432/hotline" in repr(cfg.database)
    assert cfg.database.display_url == "postgresql://hotline:***@db.example:5432/hotline"
    assert cfg.database.dsn == "postgresql://hotline:pg-secret-pw@db.example:5432/hotline"
    assert cfg.database.kind == "postgresql" and cfg.database.sqlite_path is None


def test_clear_passwords_are_not_kept(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SECRET_CONFIG), environ={"BOB_PASSWORD": "bobs-env-secret"})
    for user in cfg.registrar.users:
        assert not hasattr(user, "password")
        assert "password" not in type(user).model_fields
        assert user._password is None
        private = user.__pydantic_private__ or {}
        assert all(v is None for v in private.values())
        for value in vars(user).values():
            assert "correct-horse" not in repr(value) and "bobs-env" not in repr(value)
    assert cfg.registrar.users[1].password_env == "BOB_PASSWORD"  # the name is not secret


def test_secret_values_are_not_shown_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "registrar:\n  users:\n    - username: a\n      password: 73194655\n"
                           "      ha1_sha256: 9f86d081884c7d659a2feaa0c55ad015\n")
    out = errors(path)
    assert out == [
        f"{path}:4:17: registrar.users[0].password: expected a non-empty string, found an integer",
        f"{path}:5:19: registrar.users[0].ha1_sha256: expected 64 hexadecimal digits (the "
        f"SHA-256 HA1), found a string of 32 characters",
    ]
    assert not any("73194655" in line or "9f86d081" in line for line in out)


def test_empty_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "registrar:\n  users:\n    - {username: a, password_env: A_PW}\n")
    assert errors(path, {"A_PW": ""}) == [
        f"{path}:3:35: registrar.users[0].password_env: environment variable 'A_PW' is empty"]


def test_password_env_is_read_from_the_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "registrar:\n  users:\n    - {username: a, password_env: A_PW}\n")
    cfg = load_config(path, environ={"A_PW": "from-env"})
    assert cfg.registrar.users[0].ha1("MD5") == digest_ha1("MD5", "a", "hotline.local", "from-env")
    # and by default from os.environ
    monkeypatch.setenv("A_PW", "os-env")
    assert load_config(path).registrar.users[0].ha1("SHA-256") == digest_ha1(
        "SHA-256", "a", "hotline.local", "os-env")


# -- digest HA1 ---------------------------------------------------------------------------------


def test_ha1_matches_the_rfc_2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / testrealm@host.com / "Circle Of Life"
    assert digest_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9")


def test_ha1_algorithms() -> None:
    text = b"u:r:p"
    assert digest_ha1("SHA-256", "u", "r", "p") == hashlib.sha256(text).hexdigest()
    sha512_256 = digest_ha1("SHA-512-256", "u", "r", "p")
    assert sha512_256 == hashlib.new("sha512_256", text).hexdigest()
    # SHA-512/256 has its own initial values: it is not SHA-512 cut short
    assert sha512_256 != hashlib.sha512(text).hexdigest()[:64]
    assert digest_ha1("MD5", "ü", "r", "p") == hashlib.md5("ü:r:p".encode()).hexdigest()


def test_passwords_hash_with_the_realm_and_algorithms_configured(tmp_path: Path) -> None:
    path = write(tmp_path, "registrar:\n  realm: Agents Realm\n  algorithms: [SHA-512-256]\n"
                           "  users:\n    - {username: alice, password: pw}\n")
    user = load_config(path).registrar.users[0]
    assert user.ha1("SHA-512-256") == digest_ha1("SHA-512-256", "alice", "Agents Realm", "pw")
    assert user.ha1("MD5") is None and user.ha1("SHA-256") is None


def test_explicit_ha1_values_are_kept_lowercase(tmp_path: Path) -> None:
    md5 = "ABCDEF0123456789ABCDEF0123456789"
    sha = "A" * 64
    path = write(tmp_path, f"registrar:\n  users:\n    - username: alice\n      ha1_md5: '{md5}'\n"
                           f"      ha1_sha256: '{sha}'\n")
    user = load_config(path).registrar.users[0]
    assert user.ha1("MD5") == md5.lower() and user.ha1("SHA-256") == sha.lower()
    assert isinstance(user.ha1_md5, SecretStr)


# -- sections ---------------------------------------------------------------------------------


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    path = write(sub, "paths:\n  flows: flows\n  audio: ../shared/audio\n  data: /srv/hotline\n"
                      "database:\n  url: sqlite:///db/h.db?mode=rwc\n")
    cfg = load_config(path)
    assert cfg.paths.flows == sub / "flows"
    assert cfg.paths.audio == tmp_path / "shared" / "audio"
    assert cfg.paths.data == Path("/srv/hotline")
    assert cfg.database.dsn == f"sqlite:///{sub}/db/h.db?mode=rwc"
    assert cfg.database.sqlite_path == sub / "db" / "h.db"
    memory = load_config(write(tmp_path, "database: {url: 'sqlite:///:memory:'}\n", "m.yaml"))
    assert memory.database.dsn == "sqlite:///:memory:" and memory.database.sqlite_path is None
    absolute = load_config(write(tmp_path, "database: {url: 'sqlite:////var/lib/h.db'}\n", "a.yaml"))
    assert absolute.database.sqlite_path == Path("/var/lib/h.db")


def test_database_url_errors(tmp_path: Path) -> None:
    p1 = write(tmp_path, "database: {url: 'sqlite://db.sqlite'}\n", "d1.yaml")
    assert errors(p1) == [f"{p1}:1:17: database.url: expected sqlite:///PATH (three slashes, "
                          f"then the file), found 'sqlite://db.sqlite'"]
    p2 = write(tmp_path, "database: {url: 'postgresql://u:pw@h:99x/db'}\n", "d2.yaml")
    assert errors(p2) == [f"{p2}:1:17: database.url: expected a database URL: sqlite:///PATH or "
                          f"postgresql://[USER@]HOST[:PORT]/DATABASE, found "
                          f"'postgresql://u:***@h:99x/db' (bad port)"]
    p3 = write(tmp_path, "database: {url: 42}\n", "d3.yaml")
    assert errors(p3) == [f"{p3}:1:17: database.url: expected a database URL: sqlite:///PATH or "
                          f"postgresql://[USER@]HOST[:PORT]/DATABASE, found an integer"]


def test_sip_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  listen:\n    - {transport: udp, host: '[::1]', port: 5062}\n"
                           "    - {transport: tcp, host: 'sip.example.org'}\n"
                           "  advertised_host: 2001:db8:0:0::7\n")
    sip = load_config(path).sip
    assert sip.listen[0].host == "::1"
    assert sip.listen[1].host == "sip.example.org" and sip.listen[1].port == 5060
    assert sip.advertised_host == "2001:db8::7" and sip.public_host == "2001:db8::7"
    bad = write(tmp_path, "sip:\n  domain: 'not a host'\n  advertised_host: '::'\n"
                          "  listen:\n    - {transport: udp, host: 0.0.0.0}\n"
                          "    - {transport: udp, host: 0.0.0.0}\n", "bad.yaml")
    assert errors(bad) == [
        f"{bad}:2:11: sip.domain: expected an IPv4 or IPv6 address or a host name, "
        f"found 'not a host'",
        f"{bad}:3:20: sip.advertised_host: expected an address peers can reach, found the "
        f"wildcard address '::'",
        f"{bad}:6:7: sip.listen[1]: expected each listen address once, found udp "
        f"0.0.0.0:5060 again (first at sip.listen[0])",
    ]
    bad2 = write(tmp_path, "sip:\n  advertised_host: '::'\n"
                           "  listen:\n    - {transport: udp, host: 0.0.0.0}\n"
                           "    - {transport: udp, host: 0.0.0.0}\n", "bad2.yaml")
    assert errors(bad2) == [
        f"{bad2}:2:20: sip.advertised_host: expected an address peers can reach, found the "
        f"wildcard address '::'",
        f"{bad2}:5:7: sip.listen[1]: expected each listen address once, found udp "
        f"0.0.0.0:5060 again (first at sip.listen[0])",
    ]
    wild = write(tmp_path, "sip:\n  advertised_host: 192.0.2.10\n  listen:\n"
                           "    - {transport: udp, host: 0.0.0.0}\n", "wild.yaml")
    assert load_config(wild).sip.public_host == "192.0.2.10"


def test_timers_when_only_t2_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  timers: {t2_ms: 400}\n")
    assert errors(path) == [f"{path}:2:19: sip.timers.t2_ms: expected more than t1_ms (500), "
                            f"found 400"]


def test_a_partial_rate_limit_keeps_the_other_default(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "limits:\n  register_per_source: {rate: 1.5}\n"
                                      "  requests_per_source: {burst: 50}\n"))
    assert (cfg.limits.register_per_source.rate, cfg.limits.register_per_source.burst) == (1.5, 20)
    assert (cfg.limits.requests_per_source.rate, cfg.limits.requests_per_source.burst) == (200.0, 50)
    assert cfg.limits.max_cps == 200.0


def test_rtp_range_against_max_calls(tmp_path: Path) -> None:
    ok = load_config(write(tmp_path, "limits: {max_calls: 50}\nrtp: {port_min: 40000, "
                                     "port_max: 40099}\n"))
    assert ok.rtp.pairs == 50
    path = write(tmp_path, "limits:\n  max_calls: 6000\n", "many.yaml")
    assert errors(path) == [f"{path}:2:14: limits.max_calls: expected at most 5000 (the RTP/RTCP "
                            f"port pairs of rtp 20000-29999), found 6000"]
    inverted = write(tmp_path, "rtp: {port_min: 30000, port_max: 20001}\n", "inv.yaml")
    assert errors(inverted) == [f"{inverted}:1:34: rtp.port_max: expected port_min (30000) below "
                                f"port_max (20001)"]


def test_registrar_checks(tmp_path: Path) -> None:
    path = write(tmp_path, """\
registrar:
  algorithms: [SHA-256, SHA-256, SHA-1]
  allow_rfc2069: true
  min_expires: 600
  max_expires: 300
  users:
    - {username: a, password: x}
    - {username: 'a b', password: y}
    - {username: a, password: z}
""")
    # a field that fails its type is not checked further (no duplicate check on it)
    assert errors(path) == [
        f"{path}:2:34: registrar.algorithms[2]: expected one of 'SHA-256', 'MD5', "
        f"'SHA-512-256', found 'SHA-1'",
        f"{path}:8:18: registrar.users[1].username: expected a SIP user name (letters, digits "
        f"and -_.!~*'()&=+$,;?/ or %XX escapes), found 'a b'",
    ]
    path2 = write(tmp_path, """\
registrar:
  algorithms: [SHA-256]
  allow_rfc2069: true
  max_expires: 300
""", "r2.yaml")
    assert errors(path2) == [
        f"{path2}:3:18: registrar.allow_rfc2069: needs 'MD5' in registrar.algorithms "
        f"(RFC 2069 answers are MD5 only)",
        f"{path2}:4:16: registrar.max_expires: expected at least default_expires (3600, the "
        f"default), found 300; set default_expires too",
    ]
    path6 = write(tmp_path, "registrar:\n  users:\n    - {username: a, password: x}\n"
                            "    - {username: a, password: z}\n", "r6.yaml")
    assert errors(path6) == [
        f"{path6}:4:18: registrar.users[1].username: expected each username once, found 'a' "
        f"again (first at registrar.users[0])",
    ]
    path3 = write(tmp_path, "registrar: {min_expires: 600, max_expires: 300}\n", "r3.yaml")
    assert errors(path3) == [f"{path3}:1:44: registrar.max_expires: expected min_expires (600) "
                             f"at most max_expires (300)"]
    path5 = write(tmp_path, "registrar: {algorithms: [MD5, SHA-256, MD5]}\n", "r5.yaml")
    assert errors(path5) == [f"{path5}:1:40: registrar.algorithms[2]: expected each algorithm "
                             f"once, found 'MD5' again"]
    path4 = write(tmp_path, "registrar: {default_expires: 30}\n", "r4.yaml")
    assert errors(path4) == [f"{path4}:1:30: registrar.default_expires: expected from "
                             f"min_expires (60) to max_expires (3600), found 30"]


def test_logging_levels(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "logging:\n  level: debug\n  format: json\n"
                                      "  levels: {sip: warning, hotline.engine: error}\n"))
    assert cfg.logging.level == "debug" and cfg.logging.format == "json"
    assert cfg.logging.levels == {"sip": "warning", "hotline.engine": "error"}


def test_http_listen_ipv6(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "http: {listen: '[::1]:9090', enabled: false}\n"))
    assert (cfg.http.host, cfg.http.port, cfg.http.enabled) == ("::1", 9090, False)
    assert cfg.http.listen == "[::1]:9090"


# -- command-line overrides ------------------------------------------------------------------------


def override_errors(**kw: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), **kw)
    return str(info.value).splitlines()


def test_sip_listen_override_replaces_the_list() -> None:
    base = Config()
    cfg = apply_overrides(base, sip_listen="10.1.2.3:5070")
    assert [(a.transport, a.host, a.port) for a in cfg.sip.listen] == [
        ("udp", "10.1.2.3", 5070), ("tcp", "10.1.2.3", 5070)]
    assert base.sip.listen[0].port == 5060  # the original is untouched
    v6 = apply_overrides(base, sip_listen="[::1]:5062")
    assert [(a.transport, a.host, a.port) for a in v6.sip.listen] == [
        ("udp", "::1", 5062), ("tcp", "::1", 5062)]
    named = apply_overrides(base, sip_listen="localhost:5999")
    assert named.sip.listen[0].host == "localhost"
    assert apply_overrides(base) == base


def test_log_level_override() -> None:
    cfg = apply_overrides(Config(), log_level="debug")
    assert cfg.logging.level == "debug"


@pytest.mark.parametrize(("value", "message"), [
    ("nocolon", "--sip-listen: expected HOST:PORT, found 'nocolon'"),
    (":5060", "--sip-listen: expected HOST:PORT, found ':5060'"),
    ("::1:5060", "--sip-listen: expected HOST:PORT with an IPv6 host in brackets ([::1]:5060), "
                 "found '::1:5060'"),
    ("127.0.0.1:0", "--sip-listen: expected HOST:PORT with a port from 1 to 65535, "
                    "found '127.0.0.1:0'"),
    ("127.0.0.1:99999", "--sip-listen: expected HOST:PORT with a port from 1 to 65535, "
                        "found '127.0.0.1:99999'"),
    ("127.0.0.1:sip", "--sip-listen: expected HOST:PORT with a port from 1 to 65535, "
                      "found '127.0.0.1:sip'"),
    ("bad_host:5060", "--sip-listen: expected HOST:PORT with HOST an IPv4 or IPv6 address or a "
                      "host name, found 'bad_host:5060'"),
    ("[nope]:5060", "--sip-listen: expected HOST:PORT with HOST an IPv4 or IPv6 address or a "
                    "host name, found '[nope]:5060'"),
    ("0.0.0.0:5060", "--sip-listen: the wildcard address '0.0.0.0' cannot be put in Via, "
                     "Contact and SDP; set sip.advertised_host in the config"),
])
def test_bad_sip_listen_names_the_flag(value: str, message: str) -> None:
    assert override_errors(sip_listen=value) == [message]


def test_wildcard_override_with_advertised_host(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "sip: {advertised_host: 192.0.2.1}\n"))
    out = apply_overrides(cfg, sip_listen="0.0.0.0:5060")
    assert out.sip.listen[0].host == "0.0.0.0" and out.sip.public_host == "192.0.2.1"


def test_bad_flags_are_reported_together() -> None:
    assert override_errors(sip_listen="x", log_level="loud") == [
        "--log-level: expected one of debug, info, warning, error, found 'loud'",
        "--sip-listen: expected HOST:PORT, found 'x'",
    ]


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_host_port("[2001:db8::1]:5061") == ("2001:db8::1", 5061)
    assert parse_host_port("Example.ORG:1") == ("Example.ORG", 1)
    with pytest.raises(ValueError, match=r"^expected HOST:PORT, found '8080'$"):
        parse_host_port("8080")


def test_user_entry_errors_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, 'registrar:\n  users:\n    - username: "a b"\n      password: [1]\n'
                           '      display_name: "x\\ty"\n')
    assert errors(path) == [
        f"{path}:3:17: registrar.users[0].username: expected a SIP user name (letters, digits "
        f"and -_.!~*'()&=+$,;?/ or %XX escapes), found 'a b'",
        f"{path}:4:17: registrar.users[0].password: expected a non-empty string, found a list",
        f"{path}:5:21: registrar.users[0].display_name: expected a non-empty line of printable "
        f"text (at most 128 characters), found 'x\\ty'",
    ]


def test_validating_without_a_file_uses_the_cwd_and_os_environ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOTLINE_TEST_PW", "pw")
    cfg = Config.model_validate({
        "paths": {"flows": "f"},
        "registrar": {"users": [{"username": "u", "password_env": "HOTLINE_TEST_PW"}]},
    })
    assert cfg.paths.flows == tmp_path / "f"
    assert cfg.registrar.users[0].ha1("MD5") == digest_ha1("MD5", "u", "hotline.local", "pw")


def test_media_workers_in_process_by_default_and_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "node_name: a\n")).rtp.media_workers == 0
    assert load_config(write(tmp_path, "rtp: {media_workers: 3}\n", "w.yaml")).rtp.media_workers == 3
    for bad in ("-1", "65", "'two'", "2.5"):
        path = write(tmp_path, f"rtp:\n  media_workers: {bad}\n", "bad.yaml")
        (problem,) = errors(path)
        assert problem.startswith(f"{path}:2:18: rtp.media_workers: "), problem
