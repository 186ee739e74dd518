"""The runner's safety and bookkeeping: remote targets refused before anything is sent,
SIPp's files read back, the progress line. No process is started and no packet sent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hotline.loadtest import runner as rn
from hotline.loadtest.profiles import Ramp
from hotline.loadtest.scenarios import CallRecord

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "localhost"])
def test_loopback_targets_are_allowed(host: str) -> None:
    address = rn.resolve_target(host, allow_remote=False)
    assert address.startswith("127.") or address == "::1"


@pytest.mark.parametrize(
    "host", ["192.0.2.10", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.1", "0.0.0.0"]
)
def test_other_targets_are_refused_without_allow_remote(host: str) -> None:
    with pytest.raises(rn.RunError, match=r"not loopback .* --allow-remote"):
        rn.resolve_target(host, allow_remote=False)
    assert rn.resolve_target(host, allow_remote=True)


def test_a_run_against_a_remote_target_stops_before_anything_happens(tmp_path: Path) -> None:
    settings = rn.Settings(
        host="192.0.2.10",
        port=5060,
        traffic=Ramp(1, 5),
        flow_file=tmp_path / "does-not-exist.yaml",
        work_dir=tmp_path / "w",
    )
    with pytest.raises(rn.RunError, match=r"refusing to load-test 192\.0\.2\.10"):
        rn.run(settings, io.StringIO())
    assert not (tmp_path / "w").exists()  # not even the work directory


def test_the_metrics_url_is_held_to_the_same_rule() -> None:
    with pytest.raises(rn.RunError, match="not loopback"):
        rn.check_url_host("http://192.0.2.1:8080/metrics", allow_remote=False)
    rn.check_url_host("http://127.0.0.1:8080/metrics", allow_remote=False)
    with pytest.raises(rn.RunError, match="not an http:// URL"):
        rn.check_url_host("metrics", allow_remote=False)


def test_a_run_that_would_book_too_much_is_refused() -> None:
    from importlib import resources

    clinics = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text()
    settings = rn.Settings(
        host="127.0.0.1",
        port=5060,
        traffic=Ramp(50, 600),
        flow_file=ROOT / "ivr_flows" / "vaccine.yaml",
        audio_dir=ROOT / "audio",
        clinics_csv=clinics,
        max_calls=20_000,
        mix="book=1",
        max_bookings=100,
    )
    import datetime as dt
    from zoneinfo import ZoneInfo

    now = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Australia/Sydney"))
    with pytest.raises(rn.RunError, match=r"would book up to \d+ appointments.*--max-bookings"):
        rn.plan(settings, now=now)
    settings.max_bookings = None  # default: half the sample clinics' places
    with pytest.raises(rn.RunError, match="the sample clinics offer"):
        rn.plan(settings, now=now)
    settings.traffic = Ramp(1, 20)
    p = rn.plan(settings, now=now)
    assert p.bookings == len(p.calls) and p.capacity and p.capacity > 5000
    assert {c.keys[6] for c in p.calls} <= {
        "0200",
        "2000",
        "2150",
        "2170",
        "2300",
        "2500",
        "2536",
        "2580",
        "2582",
        "2600",
        "2601",
        "2606",
        "2617",
        "2620",
        "2900",
        "2912",
    }


def test_a_closed_line_explains_itself() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    settings = rn.Settings(
        host="127.0.0.1",
        port=5060,
        traffic=Ramp(1, 20),
        flow_file=ROOT / "ivr_flows" / "vaccine.yaml",
        audio_dir=ROOT / "audio",
    )
    night = dt.datetime(2026, 11, 24, 23, 0, tzinfo=ZoneInfo("Australia/Sydney"))
    with pytest.raises(
        rn.RunError,
        match=r"(?s)^the default mix \(book=70,agent=20,hangup=10\) "
        r"does not fit: 'book' is not a journey.*The flow is closed now \(Tue "
        r"23:00 Australia/Sydney\) by its opening hours.*--mix closed=1$",
    ):
        rn.plan(settings, now=night)
    settings.mix = "closed=1"  # asked for: the closed message is what is loaded
    assert rn.plan(settings, now=night).shares == {"closed": 1.0}


def test_sipp_statistics_and_errors_are_read_back(tmp_path: Path) -> None:
    stat = tmp_path / "stats.csv"
    stat.write_text(
        "StartTime;SuccessfulCall(C);FailedCall(C);FailedRegexpDoesntMatch(C);"
        "CurrentCall\n1;0;0;0;0\n2;40;3;2;1\n"
    )
    assert rn.sipp_counters(stat) == {
        "SuccessfulCall": 40,
        "FailedCall": 3,
        "FailedRegexpDoesntMatch": 2,
    }
    assert rn.sipp_counters(tmp_path / "missing.csv") == {}
    errors = (
        "2026-11-23\t14:55:06.885913\t1795445706.885913: Call-Id: 4-1@127.0.0.1, receive "
        "timeout on message x:79, jumping to label 80"
        "2026-11-23\t14:55:07.1\t1795445707.1: Aborting call on unexpected message for "
        "Call-Id '5-1@127.0.0.1': while expecting 'BYE' (index 40), received 'INVITE sip:x'"
        "2026-11-23\t14:55:08.1\t1795445708.1: Aborting call on unexpected message for "
        "Call-Id '6-1@127.0.0.1': while expecting 'BYE' (index 40), received 'INVITE sip:x'"
    )
    grouped = rn.sipp_errors(errors)
    assert len(grouped) == 1 and grouped[0].startswith("2 × Aborting call on unexpected")


def test_live_counts_judge_each_end() -> None:
    records: dict[int, CallRecord] = {}
    counts = {"started": 0, "answered": 0, "completed": 0, "failed": 0}
    starts: list[float] = []
    expected = {0: "booked", 1: None}
    for line in (
        "S|1|0|10.000000|0.000000|a",
        "A|1|10.000000|5000.000000",
        "E|1|40.000000|0.000000|bye|booked|h",
        "S|2|0|11.000000|0.000000|b",
        "A|2|11.000000|0.000000",
        "E|2|41.000000|0.000000|bye|no_agent|h",
        "S|3|1|12.000000|0.000000|c",
        "E|3|15.000000|0.000000|caller||",
        "S|4|0|13.000000|0.000000|d",
        "R|4|13.000000|0.000000|503",
    ):
        rn._count(line, records, counts, starts, expected)
    assert counts == {"started": 4, "answered": 2, "completed": 2, "failed": 2}
    assert starts == [10.0, 11.0, 12.0, 13.0] and records[4].rejected == 503


def test_progress_on_a_terminal_and_in_a_log() -> None:
    tty = io.StringIO()
    progress = rn.Progress("tty", tty)
    progress.show(5, 10, 9, 3, 1, 6, 2.0, 2.0, 40)
    progress.show(6, 12, 11, 4, 1, 7, 2.0, 2.0, 40)
    progress.done()
    text = tty.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "started 12/40" in text and "failed 1" in text and "cps 2.0 (plan 2.0)" in text
    plain = io.StringIO()
    log = rn.Progress("plain", plain)
    for second in range(25):
        log.show(second, second, second, 0, 0, 0, 1.0, 1.0, 40)
    assert plain.getvalue().count("\n") == 3  # at 0, 10 and 20 s
    silent = io.StringIO()
    rn.Progress("off", silent).show(1, 1, 1, 1, 0, 0, 1.0, 1.0, 1)
    assert silent.getvalue() == ""


def test_traces_of_failed_calls_are_read(tmp_path: Path) -> None:
    day = tmp_path / "2026-11-24"
    day.mkdir()
    lines = [
        {"call_id": "7-1@127.0.0.1", "flow": "vaccine", "result": "no_agent"},
        {"event": "start", "flow": "vaccine"},
        {"event": "step", "step": "hold"},
        {"event": "result", "outcome": "full"},
        {"event": "step", "step": "slot_gone"},
        {"event": "step", "step": "sub", "scope": "s"},
    ]
    import json

    (day / rn.trace_name("7-1@127.0.0.1")).write_text("\n".join(json.dumps(x) for x in lines))
    failed = CallRecord(7, 0, "7-1@127.0.0.1", 1.0, 1.1, 50.0, "late")
    passed = CallRecord(8, 0, "8-1@127.0.0.1", 1.0, 1.1, 50.0, "bye", "booked")
    records = {7: failed, 8: passed}
    assert rn.trace_name("7-1@127.0.0.1") == "7-1_127.0.0.1.jsonl"
    assert rn.read_traces(records, {0: "booked"}, tmp_path) == 1
    assert failed.engine_steps == (("hold", "full"), ("slot_gone", ""), ("s:sub", ""))
    assert failed.engine_result == "no_agent" and passed.engine_steps == ()
