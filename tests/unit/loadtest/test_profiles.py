"""Traffic profiles: exact integrals, the daily curve, compression and ramps."""

from __future__ import annotations

import pytest

from hotline.loadtest import profiles as pf


def test_10k_per_day_integrates_to_10000() -> None:
    day = pf.PROFILES["10k-per-day"]
    assert day.calls(0, pf.DAY) == pytest.approx(10_000, abs=1e-6)
    hours = sum(day.calls(h * pf.HOUR, (h + 1) * pf.HOUR) for h in range(24))
    assert hours == pytest.approx(10_000, abs=1e-6)
    # a numeric integral of rate() agrees with the exact one
    step = 30.0
    numeric = sum(day.rate(t + step / 2) * step for t in range(0, int(pf.DAY), int(step)))
    assert numeric == pytest.approx(10_000, rel=1e-3)


def test_the_daily_curve_is_a_hotlines_day() -> None:
    day = pf.PROFILES["10k-per-day"]
    assert day.rate(3 * pf.HOUR) == 0.0 and day.rate(23 * pf.HOUR) == 0.0
    assert day.rate(10 * pf.HOUR) > day.rate(13 * pf.HOUR) > day.rate(19 * pf.HOUR) > 0
    first, last = day.busy_span()
    assert (first, last) == (7.5 * pf.HOUR, 20.5 * pf.HOUR)
    busiest = day.busiest(2 * pf.HOUR)
    assert 8 * pf.HOUR <= busiest <= 10 * pf.HOUR
    peak = max(day.rate(m * 60.0) for m in range(1440))
    assert 0.3 < peak < 0.4  # about 1,250 calls in the peak hour


def test_compressing_the_day() -> None:
    day = pf.PROFILES["10k-per-day"]
    whole = pf.compress(day, 60)
    assert whole.duration == pytest.approx(13 * pf.HOUR / 60)
    assert whole.calls(0, whole.duration) == pytest.approx(10_000, abs=1e-6)
    cut = pf.compress(day, 60, duration=120)
    assert cut.duration == 120
    expected = cut.calls(0, 120)
    assert expected == pytest.approx(day.calls(cut.start, cut.start + 7200))
    assert 2000 < expected < 2600
    assert cut.rate(60) == pytest.approx(60 * day.rate(cut.start + 3600))
    assert cut.rate(121) == 0.0 and cut.rate(-1) == 0.0
    assert "10k-per-day ×60" in cut.describe() and "calls expected" in cut.describe()
    at_night = pf.compress(day, 60, duration=120, start=pf.parse_clock("02:00"))
    assert at_night.calls(0, 120) == 0.0
    across = pf.Compressed(day, 3600, pf.parse_clock("23:00"), 24.0)  # runs past midnight
    assert across.calls(0, 24.0) == pytest.approx(10_000, abs=1e-6)


def test_ramp_integrates_its_trapezoid() -> None:
    ramp = pf.Ramp(cps=5, duration=60, ramp_up=10, ramp_down=10)
    assert ramp.calls(0, 60) == pytest.approx(250)
    assert ramp.rate(5) == pytest.approx(2.5) and ramp.rate(30) == 5 and ramp.rate(55) == 2.5
    assert pf.Ramp(2, 30).calls(0, 30) == pytest.approx(60)
    assert pf.Ramp(2, 30).calls(10, 20) == pytest.approx(20)
    assert "ramp up 10 s" in ramp.describe()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: pf.Ramp(1, 10, 8, 8), "longer than the run"),
        (lambda: pf.Ramp(0, 10), "above 0"),
        (lambda: pf.Ramp(float("nan"), 10), "a number of 0 or more"),
        (lambda: pf.compress(pf.PROFILES["1k-per-day"], 0.5), "--speedup must be 1 or more"),
        (lambda: pf.DailyProfile("x", 10, (1.0,) * 23), "24 hourly shares"),
        (lambda: pf.parse_clock("25:00"), "not a time of day"),
        (lambda: pf.parse_clock("9"), "HH:MM"),
    ],
)
def test_bad_profiles_are_refused(make: object, message: str) -> None:
    with pytest.raises(pf.ProfileError, match=message):
        make()  # type: ignore[operator]
