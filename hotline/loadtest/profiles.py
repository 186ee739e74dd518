"""Traffic over time for load tests: how many calls per second to place at each moment.

Owns two shapes and nothing else:

* `Ramp` — a constant rate (`--cps`) reached by a linear ramp up and left by a linear
  ramp down, over a given duration;
* `DailyProfile` — calls over a day as 24 hourly shares (a hotline's daily curve),
  made smooth by interpolating between the middles of the hours and scaled so the day
  integrates to exactly `calls_per_day`; `Compressed` plays a window of that day
  `speedup` times faster.

Both answer `rate(t)` (calls per second at `t` seconds into the run) and
`calls(a, b)` (the expected calls between two moments, integrated exactly: the rates
are piecewise linear). `PROFILES` names the shipped daily curves (`10k-per-day`).

Must not know: SIPp, processes or the clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

DAY: Final = 86_400.0
HOUR: Final = 3_600.0

# A public-service booking line open 08:00-20:00: a morning peak, a lunch dip, a
# smaller afternoon peak, quiet evenings. Shares of the day's calls by hour (00-23).
HOTLINE_DAY: Final = (
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0.070,
    0.120,
    0.125,
    0.110,
    0.085,
    0.090,
    0.100,
    0.090,
    0.075,
    0.055,
    0.040,
    0.040,
    0,
    0,
    0,
    0,
)


class ProfileError(ValueError):
    """A traffic profile that cannot be run; the message says why."""


class Traffic(Protocol):
    """A traffic shape over a run of `duration` seconds."""

    @property
    def duration(self) -> float: ...

    def rate(self, t: float) -> float: ...

    def calls(self, a: float, b: float) -> float: ...

    def describe(self) -> str: ...


def _trapezoids(points: Sequence[tuple[float, float]], a: float, b: float) -> float:
    """The integral between `a` and `b` of the piecewise-linear function through
    `points` (sorted by x; constant beyond the ends)."""
    if b <= a:
        return 0.0
    total = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        lo, hi = max(a, x0), min(b, x1)
        if hi <= lo:
            continue
        slope = (y1 - y0) / (x1 - x0)
        total += (hi - lo) * (y0 + slope * ((lo + hi) / 2 - x0))
    first_x, first_y = points[0]
    last_x, last_y = points[-1]
    if a < first_x:
        total += (min(b, first_x) - a) * first_y
    if b > last_x:
        total += (b - max(a, last_x)) * last_y
    return total


def _interpolate(points: Sequence[tuple[float, float]], t: float) -> float:
    if t <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if t <= x1:
            return y0 + (y1 - y0) * (t - x0) / (x1 - x0)
    return points[-1][1]


@dataclass(frozen=True)
class Ramp:
    """`cps` calls per second for `duration` seconds, ramping up from 0 over `ramp_up`
    seconds and down to 0 over the last `ramp_down` seconds."""

    cps: float
    duration: float
    ramp_up: float = 0.0
    ramp_down: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cps", "duration", "ramp_up", "ramp_down"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ProfileError(f"{name} must be a number of 0 or more, found {value}")
        if self.cps <= 0 or self.duration <= 0:
            raise ProfileError("a ramp needs a rate and a duration above 0")
        if self.ramp_up + self.ramp_down > self.duration:
            raise ProfileError(
                f"ramp up ({self.ramp_up:g} s) and down ({self.ramp_down:g} s) "
                f"are longer than the run ({self.duration:g} s)"
            )

    def _points(self) -> list[tuple[float, float]]:
        up, down, d, r = self.ramp_up, self.ramp_down, self.duration, self.cps
        pts = [(0.0, 0.0 if up else r), (up, r), (d - down, r), (d, 0.0 if down else r)]
        out: list[tuple[float, float]] = []
        for x, y in pts:
            if out and x <= out[-1][0]:
                continue
            out.append((x, y))
        return out if len(out) > 1 else [(0.0, r), (d, r)]

    def rate(self, t: float) -> float:
        if t < 0 or t > self.duration:
            return 0.0
        return _interpolate(self._points(), t)

    def calls(self, a: float, b: float) -> float:
        return _trapezoids(self._points(), max(0.0, a), min(self.duration, b))

    def describe(self) -> str:
        ramps = []
        if self.ramp_up:
            ramps.append(f"ramp up {self.ramp_up:g} s")
        if self.ramp_down:
            ramps.append(f"ramp down {self.ramp_down:g} s")
        tail = f" ({', '.join(ramps)})" if ramps else ""
        return f"{self.cps:g} calls/s for {self.duration:g} s{tail}"


@dataclass(frozen=True)
class DailyProfile:
    """`calls_per_day` calls spread over a day by hourly `shares` (24 values, any
    scale; only their proportions count)."""

    name: str
    calls_per_day: float
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shares) != 24:
            raise ProfileError(f"profile {self.name}: 24 hourly shares, found {len(self.shares)}")
        if any(not math.isfinite(s) or s < 0 for s in self.shares) or sum(self.shares) <= 0:
            raise ProfileError(f"profile {self.name}: shares must be 0 or more, not all 0")
        if not math.isfinite(self.calls_per_day) or self.calls_per_day <= 0:
            raise ProfileError(f"profile {self.name}: calls per day must be above 0")

    def _points(self) -> list[tuple[float, float]]:
        """The curve through the middle of each hour (its mean rate there), down to 0 at
        the edges of closed hours, scaled so the day holds exactly calls_per_day."""
        total = sum(self.shares)
        mids = [((h + 0.5) * HOUR, self.shares[h] / total) for h in range(24)]
        points = [(0.0, mids[0][1]), *mids, (DAY, mids[-1][1])]
        area = _trapezoids(points, 0.0, DAY)
        scale = self.calls_per_day / area
        return [(x, y * scale) for x, y in points]

    def rate(self, t: float) -> float:
        """Calls per second at `t` seconds after midnight."""
        return _interpolate(self._points(), t % DAY)

    def calls(self, a: float, b: float) -> float:
        """Calls expected between `a` and `b` seconds after midnight (0 ≤ a ≤ b ≤ DAY)."""
        return _trapezoids(self._points(), max(0.0, a), min(DAY, b))

    def busy_span(self) -> tuple[float, float]:
        """From the first to the last moment of the day with calls."""
        pts = self._points()
        positive = [i for i, (_x, y) in enumerate(pts) if y > 0]
        first = pts[positive[0] - 1][0] if positive[0] > 0 else 0.0
        last = pts[positive[-1] + 1][0] if positive[-1] + 1 < len(pts) else DAY
        return first, last

    def busiest(self, length: float) -> float:
        """Where a window of `length` seconds (of the day) holds the most calls: its
        start, on a 5-minute grid."""
        best, at = -1.0, 0.0
        step = 300.0
        t = 0.0
        while t + length <= DAY + 1e-9:
            n = self.calls(t, t + length)
            if n > best + 1e-9:
                best, at = n, t
            t += step
        return at


@dataclass(frozen=True)
class Compressed:
    """`profile`'s day from `start` (seconds after midnight) played `speedup` times
    faster for `duration` seconds of run time."""

    profile: DailyProfile
    speedup: float
    start: float
    duration: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.speedup) or self.speedup < 1:
            raise ProfileError(f"--speedup must be 1 or more, found {self.speedup:g}")
        if not 0 <= self.start < DAY:
            raise ProfileError(f"the window must start within the day, found {self.start:g} s")
        if self.duration <= 0:
            raise ProfileError("the compressed run has no time")

    def rate(self, t: float) -> float:
        if t < 0 or t > self.duration:
            return 0.0
        return self.speedup * self.profile.rate(self.start + self.speedup * t)

    def calls(self, a: float, b: float) -> float:
        a, b = max(0.0, a), min(self.duration, b)
        if b <= a:
            return 0.0
        day_a = self.start + self.speedup * a
        day_b = self.start + self.speedup * b
        total = 0.0
        while day_a < day_b:  # a window may run past midnight into the next day
            offset = math.floor(day_a / DAY) * DAY
            upto = min(day_b, offset + DAY)
            total += self.profile.calls(day_a - offset, upto - offset)
            day_a = upto
        return total

    def day_time(self, t: float) -> str:
        seconds = (self.start + self.speedup * t) % DAY
        return f"{int(seconds // HOUR):02d}:{int(seconds % HOUR // 60):02d}"

    def describe(self) -> str:
        return (
            f"{self.profile.name} ×{self.speedup:g}: {self.day_time(0)}–"
            f"{self.day_time(self.duration)} of the day in {self.duration:g} s "
            f"({self.calls(0, self.duration):.0f} calls expected)"
        )


PROFILES: Final = {
    "10k-per-day": DailyProfile("10k-per-day", 10_000, HOTLINE_DAY),
    "1k-per-day": DailyProfile("1k-per-day", 1_000, HOTLINE_DAY),
    "100k-per-day": DailyProfile("100k-per-day", 100_000, HOTLINE_DAY),
}


def parse_clock(text: str) -> float:
    """`HH:MM` → seconds after midnight."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ProfileError(f"expected a time of day as HH:MM, found {text!r}")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ProfileError(f"{text!r} is not a time of day")
    return h * HOUR + m * 60.0


def compress(
    profile: DailyProfile,
    speedup: float,
    *,
    duration: float | None = None,
    start: float | None = None,
) -> Compressed:
    """The run of `profile` at `speedup`: the whole busy part of the day by default; cut to
    `duration` seconds of run time, by default the window of the day with the most calls."""
    first, last = profile.busy_span()
    if duration is None:
        begin = first if start is None else start
        end = last if begin < last else DAY
        return Compressed(profile, speedup, begin, (end - begin) / speedup)
    if duration <= 0:
        raise ProfileError(f"--duration must be above 0, found {duration:g}")
    span = duration * speedup
    if start is None:
        start = profile.busiest(min(span, DAY)) if span < DAY else first
    return Compressed(profile, speedup, start, duration)
