"""`hotline loadtest`'s arguments: defaults from the target's config, conflicts refused,
remote targets refused with exit code 2, the journeys listed without a call placed."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

import pytest

from hotline import loadtestcli
from hotline.loadtest.profiles import Compressed, Ramp

ROOT = Path(__file__).resolve().parents[3]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hotline")
    loadtestcli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["loadtest", *argv])


def _open_all_hours() -> str:
    """The vaccine flow open every hour of every day (no holidays): journeys that do not
    depend on when the test runs."""
    text = (ROOT / "ivr_flows" / "vaccine.yaml").read_text()
    text = re.sub(
        r'(monday|tuesday|wednesday|thursday|friday|saturday|sunday): "[^"]+"',
        r'\1: "00:00-24:00"',
        text,
    )
    return re.sub(r"\n    holidays: .*", "", text)


def _config(
    tmp_path: Path,
    agent2: str = ("ha1_md5: 0123456789abcdef0123456789abcdef, ha1_sha256: " + "ab" * 32),
) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "vaccine.yaml").write_text(_open_all_hours())
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        sip:
          listen:
            - {{transport: udp, host: 127.0.0.1, port: 5999}}
        rtp: {{port_min: 30000, port_max: 30999}}
        limits: {{max_calls: 100}}
        http: {{listen: 127.0.0.1:8999}}
        paths: {{flows: {flows}, audio: {ROOT / "audio"}, data: {tmp_path / "var"}}}
        registrar:
          users:
            - {{username: agent1, password: secret-one}}
            - {{username: agent2, {agent2}}}
        acd:
          agents:
            - {{id: agent1}}
            - {{id: agent2}}
        """)
    )
    return cfg


def test_defaults_come_from_the_targets_config(tmp_path: Path) -> None:
    s = loadtestcli.settings(_parse("--config", str(_config(tmp_path))))
    assert (s.host, s.port, s.transport) == ("127.0.0.1", 5999, "udp")
    assert s.metrics_url == "http://127.0.0.1:8999/metrics" and not s.metrics_required
    assert s.rtp_ports == (30000, 30999)
    assert s.flow_file.name == "vaccine.yaml" and s.clinics_csv is not None
    assert isinstance(s.traffic, Ramp) and s.traffic.calls(0, 60) == pytest.approx(60)
    assert (s.concurrent, s.max_calls, s.max_seconds) == (200, 10_000, 1800.0)


def test_the_make_run_engine_is_the_default_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    (tmp_path / "ivr_flows").mkdir()
    (tmp_path / "ivr_flows" / "vaccine.yaml").write_text("flow: vaccine\n")
    s = loadtestcli.settings(_parse())
    assert (s.host, s.port) == ("127.0.0.1", 5060)
    assert s.metrics_url == loadtestcli.DEFAULT_METRICS
    assert s.rtp_ports == (20000, 29999)


def test_a_profile_compressed_and_cut(tmp_path: Path) -> None:
    s = loadtestcli.settings(
        _parse(
            "--config",
            str(_config(tmp_path)),
            "--profile",
            "10k-per-day",
            "--speedup",
            "60",
            "--duration",
            "120",
        )
    )
    assert isinstance(s.traffic, Compressed) and s.traffic.duration == 120
    assert 2000 < s.traffic.calls(0, 120) < 2600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cps", "2", "--profile", "10k-per-day"], "give --cps or --profile, not both"),
        (["--profile", "nope"], "known profiles are 10k-per-day"),
        (["--speedup", "10"], "--speedup and --from go with --profile"),
        (["--agents", "3"], "has 1 agent(s) that are registrar users with a password (agent1)"),
    ],
)
def test_conflicts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = _parse("--config", str(_config(tmp_path)), *argv)
    assert loadtestcli.run(args) == 2
    assert message in capsys.readouterr().err


def test_agents_take_passwords_from_the_config_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOADTEST_AGENT2", "secret-two")
    cfg = _config(tmp_path, agent2="password_env: LOADTEST_AGENT2")
    s = loadtestcli.settings(_parse("--config", str(cfg), "--agents", "2"))
    assert s.agents == [("agent1", "secret-one"), ("agent2", "secret-two")]


def test_a_remote_target_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("192.0.2.7:5060", "--config", str(_config(tmp_path)), "--no-capture")
    assert loadtestcli.run(args) == 2
    err = capsys.readouterr().err
    assert "refusing to load-test 192.0.2.7" in err and "--allow-remote" in err


def test_list_journeys_places_no_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(
        "--config",
        str(_config(tmp_path)),
        "--list-journeys",
        "--calls",
        "10",
        "--mix",
        "book=1,agent=1",
    )
    assert loadtestcli.run(args) == 0
    out = capsys.readouterr()
    assert "booked" in out.out and "50.0 %" in out.out and "10 calls planned" in out.out
