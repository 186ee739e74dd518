"""The E-model MOS estimate over its whole input range: always within 1..4.5, never
higher for more loss or more delay, and the record's MOS is the estimate of the worse
direction."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from hotline.cdr import (
    BPL_G711_NO_PLC,
    BPL_G711_PLC,
    MOS_MAX,
    MOS_MIN,
    delay_impairment,
    media_quality,
    mos_from,
    mos_from_r,
    r_factor,
)
from hotline.rtp.rtcp import CallQuality, StreamQuality

loss = st.floats(0.0, 100.0)
rtt = st.floats(0.0, 20_000.0)
playout = st.floats(0.0, 2_000.0)
bpl = st.sampled_from([BPL_G711_PLC, BPL_G711_NO_PLC]) | st.floats(0.5, 60.0)
burst = st.floats(1.0, 8.0)


@given(loss, st.none() | rtt, playout, bpl, burst)
def test_mos_is_always_between_1_and_4_5(
    loss_pct: float, rtt_ms: float | None, playout_ms: float, b: float, burst_r: float
) -> None:
    mos = mos_from(loss_pct=loss_pct, rtt_ms=rtt_ms, playout_ms=playout_ms, bpl=b, burst_r=burst_r)
    assert MOS_MIN <= mos <= MOS_MAX


@given(loss, loss, rtt, playout, bpl)
@example(0.0, 100.0, 0.0, 0.0, BPL_G711_PLC)
@example(0.0, 1e-9, 0.0, 0.0, BPL_G711_NO_PLC)
def test_more_loss_never_raises_mos(
    a: float, b: float, rtt_ms: float, playout_ms: float, bpl_: float
) -> None:
    low, high = sorted((a, b))
    better = mos_from(loss_pct=low, rtt_ms=rtt_ms, playout_ms=playout_ms, bpl=bpl_)
    worse = mos_from(loss_pct=high, rtt_ms=rtt_ms, playout_ms=playout_ms, bpl=bpl_)
    assert worse <= better
    assert r_factor(high, rtt_ms / 2 + playout_ms, bpl=bpl_) <= r_factor(
        low, rtt_ms / 2 + playout_ms, bpl=bpl_
    )


@given(loss, rtt, rtt, playout, playout)
@example(0.0, 0.0, 20_000.0, 0.0, 0.0)
@example(0.0, 200.0, 200.0000001, 0.0, 0.0)
def test_more_delay_never_raises_mos(
    loss_pct: float, rtt_a: float, rtt_b: float, play_a: float, play_b: float
) -> None:
    rtt_low, rtt_high = sorted((rtt_a, rtt_b))
    play_low, play_high = sorted((play_a, play_b))
    better = mos_from(loss_pct=loss_pct, rtt_ms=rtt_low, playout_ms=play_low)
    worse = mos_from(loss_pct=loss_pct, rtt_ms=rtt_high, playout_ms=play_high)
    assert worse <= better


@given(st.floats(0.0, 50_000.0), st.floats(0.0, 50_000.0))
def test_delay_impairment_grows_with_delay(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 0.0 <= delay_impairment(low) <= delay_impairment(high)


@given(st.floats(-100.0, 200.0), st.floats(-100.0, 200.0))
def test_mos_never_falls_as_r_rises(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert MOS_MIN <= mos_from_r(low) <= mos_from_r(high) <= MOS_MAX


def _stream(ratio: float) -> StreamQuality:
    return StreamQuality(ratio, 0, ratio, 1.0, 2.0)


@given(st.none() | st.floats(0.0, 1.0), st.none() | st.floats(0.0, 1.0), st.none() | rtt)
def test_record_mos_is_the_worse_directions(
    rx: float | None, tx: float | None, rtt_ms: float | None
) -> None:
    quality = CallQuality(
        None if rx is None else _stream(rx),
        None if tx is None else _stream(tx),
        rtt_ms,
        rtt_ms,
        rtt_ms,
        1,
        1,
        0,
    )
    got = media_quality(quality, playout_ms=40.0)
    if rx is None and tx is None:
        assert got is None or got.mos is None
        return
    assert got is not None and got.mos is not None
    worst = max(v for v in (rx, tx) if v is not None) * 100.0
    assert got.mos == mos_from(loss_pct=min(100.0, worst), rtt_ms=rtt_ms, playout_ms=40.0)
    for known in (rx, tx):
        if known is not None:
            assert got.mos <= mos_from(loss_pct=known * 100.0, rtt_ms=rtt_ms, playout_ms=40.0)
