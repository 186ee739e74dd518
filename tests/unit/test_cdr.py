"""Call detail records: the E-model against published reference points, the record's
validation, record → row → record, the hang-up side, and the CSV export's cells."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import math
import zoneinfo

import pytest

from hotline.booking.store.sqlite import _param as sqlite_param
from hotline.booking.store.sqlops import CDR_COLUMNS, cdr_record, cdr_row
from hotline.cdr import (
    BPL_G711_NO_PLC,
    BPL_G711_PLC,
    R_DEFAULT,
    CallRecord,
    Direction,
    HangupSide,
    MediaQuality,
    delay_impairment,
    hangup_side,
    loss_impairment,
    media_quality,
    mos_from,
    mos_from_r,
    r_factor,
)
from hotline.cdrcli import CSV_COLUMNS, csv_row, parse_when, write_csv
from hotline.rtp.rtcp import CallQuality, StreamQuality
from hotline.sip.endpoint import EndReason

T0 = dt.datetime(2026, 5, 12, 1, 2, 3, 456789, tzinfo=dt.UTC)
SYDNEY = zoneinfo.ZoneInfo("Australia/Sydney")


def record(**changes: object) -> CallRecord:
    base = CallRecord(
        call_id="a84b4c76e66710@pc33.example.org",
        node="hotline-1",
        direction=Direction.INBOUND,
        caller="0412345678",
        called="1800020080",
        started_at=T0,
        answered_at=T0 + dt.timedelta(seconds=1.5),
        ended_at=T0 + dt.timedelta(seconds=95.25),
        hangup_side=HangupSide.CALLER,
        end_reason=EndReason.REMOTE_BYE,
        flow="vaccine",
        flow_version="3f2a9c1b7d0e",
        flow_result="booked",
        queue="general",
        queue_wait_s=12.5,
        agent="alice",
        transferred_to="sip:nurse@clinic.example",
        quality=MediaQuality(
            rx_packets=4700,
            rx_loss_pct=0.25,
            rx_jitter_ms=3.125,
            tx_packets=4712,
            tx_loss_pct=1.5,
            tx_jitter_ms=7.75,
            rtt_ms=42.5,
            mos=4.31,
        ),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- the E-model ----------------------------------------------------------------------------


def test_default_rating_gives_mos_4_41() -> None:
    # G.107: all parameters at their defaults give R = 93.2, MOS 4.41.
    assert mos_from_r(R_DEFAULT) == pytest.approx(4.409, abs=0.001)


def test_g711_without_loss_or_delay_is_4_4() -> None:
    assert r_factor(0.0, 0.0) == pytest.approx(93.2)
    assert mos_from(loss_pct=0.0, rtt_ms=0.0, playout_ms=0.0) == pytest.approx(4.41, abs=0.01)
    # up to 100 ms one way costs nothing (Idd = 0 for Ta <= mT)
    assert mos_from(loss_pct=0.0, rtt_ms=100.0, playout_ms=50.0) == mos_from_r(93.2)


@pytest.mark.parametrize(
    ("r", "mos"),
    # G.109 Table 1 / G.107 Annex B: the user-satisfaction boundaries of R
    [(90, 4.34), (80, 4.03), (70, 3.60), (60, 3.10), (50, 2.58)],
)
def test_mos_at_the_g109_category_boundaries(r: float, mos: float) -> None:
    assert mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_mos_is_clamped_to_1_and_4_5() -> None:
    assert mos_from_r(-20.0) == 1.0
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(3.0) == 1.0  # the cubic gives 0.99 here
    assert 1.0 + 0.035 * 3 + 3 * (3 - 60) * (100 - 3) * 7e-6 < 1.0
    assert mos_from_r(100.0) == 4.5
    assert mos_from_r(120.0) == 4.5
    with pytest.raises(ValueError, match="nan"):
        mos_from_r(math.nan)


def test_delay_impairment_follows_g107_idd() -> None:
    assert delay_impairment(0.0) == 0.0
    assert delay_impairment(100.0) == 0.0
    # Ta = 200 ms: X = 1, Idd = 25 (2^(1/6) - 3 (730/729)^(1/6) + 2)
    assert delay_impairment(200.0) == pytest.approx(3.044, abs=0.001)
    # Ta = 400 ms: X = 2, Idd = 25 (65^(1/6) - 3 (1 + (2/3)^6)^(1/6) + 2)
    assert delay_impairment(400.0) == pytest.approx(24.07, abs=0.01)
    assert delay_impairment(100.001) >= 0.0


def test_loss_impairment_uses_the_g113_bpl() -> None:
    assert BPL_G711_PLC == 25.1
    assert BPL_G711_NO_PLC == 4.3
    assert loss_impairment(0.0) == 0.0
    assert loss_impairment(1.0) == pytest.approx(95 / 26.1)  # with PLC
    assert loss_impairment(1.0, bpl=BPL_G711_NO_PLC) == pytest.approx(95 / 5.3)
    assert loss_impairment(5.0, burst_r=2.0) == pytest.approx(95 * 5 / (2.5 + 25.1))
    assert loss_impairment(100.0) == pytest.approx(95 * 100 / 125.1)
    # 1 % loss: R 89.6 → 4.33 concealed, R 75.3 → 3.83 without concealment
    assert mos_from(loss_pct=1.0, rtt_ms=None, playout_ms=0.0) == pytest.approx(4.33, abs=0.01)
    no_plc = mos_from(loss_pct=1.0, rtt_ms=None, playout_ms=0.0, bpl=BPL_G711_NO_PLC)
    assert no_plc == pytest.approx(3.83, abs=0.01)


def test_one_way_delay_is_half_the_round_trip_plus_playout() -> None:
    assert mos_from(loss_pct=0.0, rtt_ms=300.0, playout_ms=250.0) == pytest.approx(
        mos_from_r(93.2 - delay_impairment(400.0))
    )
    assert mos_from(loss_pct=0.0, rtt_ms=None, playout_ms=400.0) == pytest.approx(
        mos_from_r(93.2 - delay_impairment(400.0))
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_pct": -1.0, "rtt_ms": 0.0}, "packet loss %: expected 0 to 100, found -1.0"),
        ({"loss_pct": 100.5, "rtt_ms": 0.0}, "packet loss %: expected 0 to 100"),
        ({"loss_pct": math.nan, "rtt_ms": 0.0}, "packet loss %"),
        ({"loss_pct": 0.0, "rtt_ms": -5.0}, "round trip \\(ms\\): expected at least 0"),
        ({"loss_pct": 0.0, "rtt_ms": math.inf}, "round trip"),
        ({"loss_pct": 0.0, "rtt_ms": 1.0, "playout_ms": -1.0}, "playout delay"),
        ({"loss_pct": 1.0, "rtt_ms": 1.0, "bpl": 0.0}, "Bpl: expected a positive number"),
        ({"loss_pct": 1.0, "rtt_ms": 1.0, "burst_r": 0.0}, "BurstR"),
    ],
)
def test_mos_from_refuses_bad_figures(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mos_from(**kwargs)


# -- from RTCP to the record ------------------------------------------------------------------


def stream(loss_ratio: float, max_jitter: float) -> StreamQuality:
    return StreamQuality(0.0, round(loss_ratio * 1000), loss_ratio, max_jitter / 2, max_jitter)


def call_quality(
    inbound: StreamQuality | None,
    outbound: StreamQuality | None,
    rtt: float | None = None,
    mean: float | None = None,
) -> CallQuality:
    return CallQuality(inbound, outbound, rtt, rtt, mean, 5, 5, 0)


def test_media_quality_takes_both_directions_and_the_worse_loss() -> None:
    q = media_quality(
        call_quality(stream(0.01, 12.0), stream(0.04, 20.0), rtt=90.0, mean=60.0),
        rx_packets=990,
        tx_packets=1000,
        playout_ms=40.0,
    )
    assert q is not None
    assert (q.rx_packets, q.tx_packets) == (990, 1000)
    assert q.rx_loss_pct == pytest.approx(1.0)
    assert q.tx_loss_pct == pytest.approx(4.0)
    assert (q.rx_jitter_ms, q.tx_jitter_ms) == (12.0, 20.0)
    assert q.rtt_ms == 60.0  # the mean, not the latest
    assert q.mos == pytest.approx(mos_from(loss_pct=4.0, rtt_ms=60.0, playout_ms=40.0))


def test_media_quality_with_one_direction_or_none() -> None:
    only_rx = media_quality(call_quality(stream(0.02, 5.0), None, rtt=30.0), rx_packets=50)
    assert only_rx is not None
    assert only_rx.tx_loss_pct is None and only_rx.tx_jitter_ms is None
    assert only_rx.rtt_ms == 30.0  # no mean yet: the latest
    assert only_rx.mos == pytest.approx(mos_from(loss_pct=2.0, rtt_ms=30.0))
    counts_only = media_quality(None, rx_packets=0, tx_packets=12)
    assert counts_only == MediaQuality(rx_packets=0, tx_packets=12)
    assert counts_only is not None and counts_only.mos is None
    assert media_quality(None) is None
    assert media_quality(call_quality(None, None)) is None


def test_media_quality_validates_its_figures() -> None:
    with pytest.raises(ValueError, match="at least one figure"):
        MediaQuality()
    with pytest.raises(ValueError, match="rx_packets: expected a count of at least 0"):
        MediaQuality(rx_packets=-1)
    with pytest.raises(ValueError, match="tx_loss_pct: expected 0 to 100"):
        MediaQuality(tx_loss_pct=101.0)
    with pytest.raises(ValueError, match=r"mos: expected 1 to 4\.5"):
        MediaQuality(mos=4.6)


@pytest.mark.parametrize(
    ("reason", "inbound", "remote_agent", "by_agent", "side"),
    [
        (EndReason.REMOTE_BYE, True, False, False, HangupSide.CALLER),
        (EndReason.REMOTE_BYE, False, False, False, HangupSide.CALLEE),
        (EndReason.REMOTE_BYE, False, True, False, HangupSide.AGENT),
        (EndReason.LOCAL_BYE, True, False, False, HangupSide.ENGINE),
        (EndReason.LOCAL_BYE, True, False, True, HangupSide.AGENT),
        (EndReason.CANCELLED, True, False, False, HangupSide.CALLER),
        (EndReason.CANCELLED, False, True, False, HangupSide.ENGINE),
        (EndReason.REJECTED, True, False, False, HangupSide.ENGINE),
        (EndReason.REJECTED, False, False, False, HangupSide.CALLEE),
        (EndReason.REJECTED, False, True, False, HangupSide.AGENT),
        (EndReason.NO_ACK, True, False, False, HangupSide.NETWORK),
        (EndReason.TIMEOUT, False, False, False, HangupSide.NETWORK),
        (EndReason.FAILED, False, False, False, HangupSide.NETWORK),
    ],
)
def test_hangup_side(
    reason: EndReason, inbound: bool, remote_agent: bool, by_agent: bool, side: HangupSide
) -> None:
    got = hangup_side(reason, inbound=inbound, remote_agent=remote_agent, ended_by_agent=by_agent)
    assert got is side


# -- the record -----------------------------------------------------------------------------


def test_record_keeps_utc_and_derives_durations() -> None:
    sydney = T0.astimezone(SYDNEY)
    r = record(started_at=sydney)
    assert r.started_at == T0 and r.started_at.tzinfo is dt.UTC
    assert r.duration_s == pytest.approx(95.25)
    assert r.talk_s == pytest.approx(93.75)
    assert r.mos == 4.31
    unanswered = record(answered_at=None, quality=None)
    assert unanswered.talk_s is None and unanswered.mos is None


def test_record_repr_masks_the_caller() -> None:
    text = repr(record())
    assert "0412345678" not in text
    assert "678" in text and "booked" in text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"call_id": ""}, "call_id: expected text, found an empty value"),
        ({"node": ""}, "node: expected text"),
        ({"started_at": dt.datetime(2026, 5, 12, 1, 0)}, "started_at: expected an aware"),
        ({"ended_at": T0 - dt.timedelta(seconds=1)}, "ended_at .* is before started_at"),
        ({"answered_at": T0 - dt.timedelta(seconds=1)}, "answered_at .* is outside the call"),
        ({"answered_at": T0 + dt.timedelta(hours=1)}, "answered_at .* is outside the call"),
        ({"sip_status": 99}, "sip_status: expected 100 to 699, found 99"),
        ({"sip_status": 700}, "sip_status"),
        ({"queue_wait_s": -0.5}, "queue_wait_s: expected at least 0"),
        ({"caller": "04\r\n12"}, "caller: control characters"),
        ({"flow_result": "x" * 1025}, "flow_result: expected at most 1024 characters"),
        ({"direction": "inbound"}, "direction: expected a Direction"),
        ({"end_reason": "remote-bye"}, "end_reason: expected an EndReason"),
    ],
)
def test_record_refuses_what_does_not_hold_together(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        record(**changes)


def test_record_has_no_field_for_keyed_values() -> None:
    names = {f.name for f in dataclasses.fields(CallRecord)}
    names |= {f.name for f in dataclasses.fields(MediaQuality)}
    for word in ("digit", "dtmf", "variable", "medicare", "dob", "pin", "card", "input"):
        assert not any(word in name for name in names), word


# -- record → row → record ------------------------------------------------------------------


def as_sqlite(row: tuple[object, ...]) -> tuple[object, ...]:
    """The row as SQLite gives it back: instants as UTC text."""
    return tuple(sqlite_param(v) for v in row)


@pytest.mark.parametrize(
    "original",
    [
        record(),
        record(
            direction=Direction.OUTBOUND,
            answered_at=None,
            hangup_side=HangupSide.CALLEE,
            end_reason=EndReason.REJECTED,
            sip_status=486,
            flow=None,
            flow_version=None,
            flow_result=None,
            queue=None,
            queue_wait_s=None,
            agent=None,
            transferred_to=None,
            quality=None,
        ),
        record(quality=MediaQuality(rx_packets=0)),
    ],
)
def test_record_row_record_round_trip(original: CallRecord) -> None:
    row = cdr_row(original)
    assert len(row) == len(CDR_COLUMNS)
    columns = dict(zip(CDR_COLUMNS, row, strict=True))
    assert columns["duration_s"] == original.duration_s
    assert columns["direction"] == original.direction.value
    assert cdr_record(row) == original  # PostgreSQL: datetimes come back as datetimes
    sqlite_row = as_sqlite(row)
    assert isinstance(sqlite_row[CDR_COLUMNS.index("started_at")], str)
    assert cdr_record(sqlite_row) == original


def test_row_with_the_wrong_width_is_refused() -> None:
    with pytest.raises(TypeError, match=f"expected {len(CDR_COLUMNS)} cdr columns, found 3"):
        cdr_record(("a", "b", "c"))


# -- CSV ------------------------------------------------------------------------------------


def test_csv_header_and_formats() -> None:
    out = io.StringIO()
    assert write_csv([record(), record(call_id="b@x", answered_at=None, quality=None)], out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS == CDR_COLUMNS
    first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert first["started_at"] == "2026-05-12T01:02:03.456Z"
    assert first["answered_at"] == "2026-05-12T01:02:04.956Z"
    assert first["ended_at"] == "2026-05-12T01:03:38.706Z"
    assert first["duration_s"] == "95.250"
    assert first["talk_s"] == "93.750"
    assert first["queue_wait_s"] == "12.500"
    assert first["rx_loss_pct"] == "0.25"
    assert first["rx_jitter_ms"] == "3.1"
    assert first["tx_jitter_ms"] == "7.8"
    assert first["rtt_ms"] == "42.5"
    assert first["mos"] == "4.31"
    assert first["hangup_side"] == "caller" and first["end_reason"] == "remote-bye"
    assert first["caller"] == "0412345678"
    second = dict(zip(CSV_COLUMNS, rows[2], strict=True))
    assert second["answered_at"] == second["talk_s"] == second["mos"] == ""
    assert second["rx_packets"] == second["sip_status"] == ""


def test_csv_mos_has_two_decimals() -> None:
    r = record(quality=MediaQuality(mos=4.409285824))
    assert csv_row(r)[CSV_COLUMNS.index("mos")] == "4.41"


def test_csv_cells_are_not_formulas() -> None:
    r = record(caller='=HYPERLINK("http://x")', called="+61262001234", agent="@bob")
    cells = dict(zip(CSV_COLUMNS, csv_row(r), strict=True))
    assert cells["caller"] == '\'=HYPERLINK("http://x")'
    assert cells["called"] == "+61262001234"  # a number stays a number
    assert cells["agent"] == "'@bob"
    assert csv_row(record(caller="-"))[CSV_COLUMNS.index("caller")] == "'-"


def test_csv_carries_no_keyed_value() -> None:
    # A booking call: the caller keyed a Medicare number and a date of birth; the
    # flow's result and queue variables are all the record can carry.
    keyed = ("2123456701", "19800102")
    out = io.StringIO()
    write_csv([record(flow_result="booked")], out)
    text = out.getvalue()
    assert "booked" in text
    for value in keyed:
        assert value not in text


# -- --since / --until ----------------------------------------------------------------------


def test_parse_when() -> None:
    assert parse_when("2026-05-12", SYDNEY, end=False) == dt.datetime(2026, 5, 12, tzinfo=SYDNEY)
    assert parse_when("2026-05-12", SYDNEY, end=True) == dt.datetime(2026, 5, 13, tzinfo=SYDNEY)
    assert parse_when("2026-05-12T08:30", SYDNEY, end=True) == dt.datetime(
        2026, 5, 12, 8, 30, tzinfo=SYDNEY
    )
    assert parse_when("2026-05-12T08:30:00Z", SYDNEY, end=False) == dt.datetime(
        2026, 5, 12, 8, 30, tzinfo=dt.UTC
    )
    assert parse_when("2026-05-12T08:30+10:00", dt.UTC, end=False).utcoffset() == dt.timedelta(
        hours=10
    )
    for bad in ("yesterday", "2026-13-01", "12/05/2026", ""):
        with pytest.raises(ValueError, match="expected YYYY-MM-DD or YYYY-MM-DDTHH:MM"):
            parse_when(bad, SYDNEY, end=False)
