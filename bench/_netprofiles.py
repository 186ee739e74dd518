"""Seeded network traces for bench/jitter.py: when each 20 ms RTP packet of a call arrives,
or that it was lost, under a named network profile.

Owns `Profile` (what a network is said to be: one-way delay median and 95th percentile
over the whole trace, loss rate and burst length, delay spikes), `PROFILES` (good, wifi,
spiky), `make_trace` (one seeded trace) and `TraceStats` (what a trace achieved, to be
printed beside what the profile asked for).

The delay model, per packet sent at time ``s``:

    delay = shift + scale · G + spike(s)

* ``G`` is gamma-distributed with shape `SHAPE` (a right-skewed queueing delay with a
  floor: the path's propagation and serialisation delay is ``shift``). Consecutive
  packets' draws are correlated through a Gaussian copula — an AR(1) process with
  coefficient `CORRELATION` per packet mapped through the gamma quantile function — so
  the marginal distribution is exactly gamma while queues build and drain over a few
  packets instead of every packet drawing afresh. Packets are reordered only where the
  drawn delay falls by more than the 20 ms between two packets.
* ``spike(s)``: every `Profile.spike_every` seconds (the first at a random time within
  the first period), the path stalls: a packet sent ``τ`` after the stall began waits
  ``peak − τ / 2`` more, the queue draining at twice the sending rate — a 200 ms spike
  delays the packets of the next 400 ms (20 packets) by 200, 190, … 10 ms, in order.
* ``shift`` and ``scale`` are fitted (once per profile, by Monte Carlo on a fixed seed)
  so that the median and 95th percentile of the *whole* delay — spikes included —
  are the profile's.

Loss: exactly ``round(loss · packets / burst)`` events, each losing `Profile.burst`
consecutive packets, at random places, never touching each other (so 2 % in bursts of
2 is 2 %, and every burst is exactly 2 long). Loss is independent of delay.

This module must not know about jitter buffers, codecs or audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from scipy.special import gammaincinv, ndtr

Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PACKET = 0.02  # seconds of audio per packet (and between two packets sent)
SHAPE = 2.0  # gamma shape of the queueing delay
CORRELATION = 0.7  # copula AR(1) coefficient between consecutive packets' delays
DRAIN = 0.5  # a stall's extra delay falls by this many seconds per second sent
_FIT_DRAWS = 400_000  # Monte Carlo draws for fitting shift and scale
_FIT_ROUNDS = 40


@dataclass(frozen=True)
class Profile:
    """What a network is said to be (delays in seconds, loss as a fraction)."""

    name: str
    p50: float  # median one-way delay, spikes included
    p95: float  # 95th percentile of the one-way delay, spikes included
    loss: float  # fraction of packets lost
    burst: int  # packets lost per loss event
    spike: float = 0.0  # peak extra delay of a stall (0: none)
    spike_every: float = 10.0  # seconds between stalls

    def describe(self) -> str:
        text = (
            f"one-way delay p50 {self.p50 * 1e3:.0f} ms, p95 {self.p95 * 1e3:.0f} ms;"
            f" {self.loss * 100:.1f} % loss"
            + (f" in bursts of {self.burst}" if self.burst > 1 else " (random)")
        )
        if self.spike:
            text += f"; +{self.spike * 1e3:.0f} ms spikes every {self.spike_every:.0f} s"
        return text


PROFILES: dict[str, Profile] = {
    "good": Profile("good", 0.022, 0.029, 0.005, 1),
    "wifi": Profile("wifi", 0.048, 0.075, 0.02, 2),
    "spiky": Profile("spiky", 0.071, 0.110, 0.033, 3, spike=0.2, spike_every=10.0),
}


@dataclass(frozen=True)
class Fit:
    """The delay model's parameters for a profile, seconds."""

    shift: float
    scale: float


@dataclass(frozen=True)
class Trace:
    """One call's packets under a profile: packet i is sent at ``send[i]`` and arrives
    at ``arrival[i]`` (NaN: lost). ``delay`` is the one-way delay each packet would have
    had (drawn for lost packets too, so loss and delay are independent)."""

    profile: Profile
    seed: int
    send: Float64Array
    arrival: Float64Array
    delay: Float64Array
    spikes: tuple[float, ...]  # start times of the stalls

    @property
    def lost(self) -> BoolArray:
        return np.isnan(self.arrival)

    def stats(self) -> TraceStats:
        delivered = self.delay[~self.lost]
        lost = self.lost
        starts = int(np.count_nonzero(lost[1:] & ~lost[:-1])) + int(bool(lost[0]))
        order = np.argsort(self.arrival[~lost], kind="stable")
        reordered = int(np.count_nonzero(np.diff(order) < 0))
        return TraceStats(
            packets=int(self.send.size),
            p50=float(np.percentile(delivered, 50)),
            p95=float(np.percentile(delivered, 95)),
            loss=float(np.count_nonzero(lost)) / self.send.size,
            mean_burst=float(np.count_nonzero(lost)) / starts if starts else 0.0,
            reordered=reordered / max(1, delivered.size),
            spikes=len(self.spikes),
        )


@dataclass(frozen=True)
class TraceStats:
    """What a trace achieved (seconds; fractions)."""

    packets: int
    p50: float
    p95: float
    loss: float
    mean_burst: float
    reordered: float  # packets arriving before an earlier-sent one, per delivered packet
    spikes: int


def _gamma_quantile(u: Float64Array) -> Float64Array:
    values: Float64Array = gammaincinv(SHAPE, u)
    return values


def _spike_extra(offsets: Float64Array, peak: float) -> Float64Array:
    """Extra delay of a packet sent `offsets` seconds after a stall began."""
    extra: Float64Array = np.maximum(0.0, peak - DRAIN * offsets)
    extra[offsets < 0] = 0.0
    return extra


@cache
def fit(profile: Profile) -> Fit:
    """``shift`` and ``scale`` such that the whole delay (spikes included) has the
    profile's median and 95th percentile."""
    rng = np.random.default_rng(0x5EED)
    queue = _gamma_quantile(rng.random(_FIT_DRAWS))
    if profile.spike:
        # A packet's place within the spike period, uniform: its spike extra.
        offsets = rng.random(_FIT_DRAWS) * profile.spike_every
        extra = _spike_extra(offsets, profile.spike)
    else:
        extra = np.zeros(_FIT_DRAWS)
    q50, q95 = np.percentile(queue, [50, 95])
    scale = (profile.p95 - profile.p50) / (q95 - q50)
    shift = profile.p50 - scale * q50
    for _ in range(_FIT_ROUNDS):
        achieved = shift + scale * queue + extra
        a50, a95 = np.percentile(achieved, [50, 95])
        scale *= (profile.p95 - profile.p50) / (a95 - a50)
        shift += profile.p50 - float(np.percentile(shift + scale * queue + extra, 50))
    if shift <= 0 or scale <= 0:
        raise ValueError(
            f"profile {profile.name}: no delay model with p50 {profile.p50} s and p95"
            f" {profile.p95} s fits (shift {shift:.4f} s, scale {scale:.4f} s)"
        )
    return Fit(float(shift), float(scale))


def loss_mask(rng: np.random.Generator, packets: int, loss: float, burst: int) -> BoolArray:
    """Exactly round(loss · packets / burst) bursts of `burst` packets, apart."""
    events = round(loss * packets / burst)
    lost = np.zeros(packets, dtype=np.bool_)
    if events == 0:
        return lost
    # Place `events` blocks of burst + 1 (the burst and a received packet after it) in
    # the slack: choose the gaps before each block uniformly (stars and bars).
    slack = packets - events * (burst + 1)
    if slack < 0:
        raise ValueError(f"{loss:.1%} loss in bursts of {burst} does not fit {packets} packets")
    cuts = np.sort(rng.choice(slack + events, size=events, replace=False))
    starts = cuts - np.arange(events) + np.arange(events) * (burst + 1)
    for start in starts:
        lost[start : start + burst] = True
    return lost


def make_trace(profile: Profile, packets: int, seed: int) -> Trace:
    """One call of `packets` packets under `profile`, reproducible from `seed`."""
    model = fit(profile)
    rng = np.random.default_rng([seed, sum(map(ord, profile.name))])
    send = np.arange(packets, dtype=np.float64) * PACKET
    # The copula: a stationary AR(1) Gaussian process, mapped to uniform, then gamma.
    noise = rng.standard_normal(packets)
    z = np.empty(packets)
    z[0] = noise[0]
    innovation = math.sqrt(1.0 - CORRELATION * CORRELATION)
    for i in range(1, packets):
        z[i] = CORRELATION * z[i - 1] + innovation * noise[i]
    delay = model.shift + model.scale * _gamma_quantile(ndtr(z))
    spikes: list[float] = []
    if profile.spike:
        start = float(rng.uniform(0.0, profile.spike_every))
        end = send[-1] + PACKET
        while start < end:
            spikes.append(start)
            delay += _spike_extra(send - start, profile.spike)
            start += profile.spike_every
    lost = loss_mask(rng, packets, profile.loss, profile.burst)
    arrival = np.where(lost, np.nan, send + delay)
    return Trace(profile, seed, send, arrival, delay, tuple(spikes))
