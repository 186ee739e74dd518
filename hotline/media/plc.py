"""Packet loss concealment for many legs at once, in the manner of ITU-T G.711 Appendix I.

Owns `ConcealmentBank`: per-leg concealment state kept in arrays indexed by slot, and
``process(block, slots, present)``, which takes one media tick — a (legs × samples)
int16 block of decoded audio and, per leg, which 10 ms subframes of it really arrived —
and returns the block with the missing subframes filled in. `Concealer` is the same for
one leg.

What happens to a leg's audio, 10 ms (80 samples at 8 kHz) at a time:

* Nothing is delayed: a tick's audio comes out in the same tick, so concealment adds
  no latency to any leg, lost audio or not (G.711 Appendix I delays everything by 3.75
  ms to blend the start of a loss into real audio not yet played; here the synthetic
  side is bent to meet the real one instead; spandsp's variant also avoids the delay,
  by another blend).
* Each leg keeps `HISTORY` samples (45 ms) of what it played — received or
  concealed — so consecutive losses and the recovery work from a continuous signal.
* At the first missing subframe the pitch period is found on the history: the
  normalised cross-correlation of its last 20 ms with the 20 ms one lag earlier, for
  every lag from `PITCH_MIN` to `PITCH_MAX` samples (66–200 Hz), as one batched einsum
  for all legs whose loss starts in that subframe. The history is copied into a pitch
  buffer whose last quarter period is cross-faded with the signal one period earlier,
  so each repetition of the period runs into the next without a step.
* The concealment starts where the real signal stopped: the step between the last
  real sample and the sample the loop would have had in its place is added to the
  first quarter period of the repetition, falling linearly to nothing.
* The missing audio is the periodic extension of the last period: for the first 10 ms
  one period is repeated, then two, then three (switching, with a quarter-period
  cross-fade, at each 10 ms boundary), which avoids the buzz of a single period repeated
  for long.
* The first 10 ms of a loss keep their level; after that the level falls linearly by
  20 % per 10 ms and the concealment is silent from 60 ms on, until audio returns.
* When audio returns, the synthetic signal is cross-faded into the real one over a
  quarter period plus 4 ms for every further 10 ms of loss (at most 10 ms); after a loss
  longer than 60 ms that is a fade-in from silence.

All legs are handled together: the common case (nothing lost, nothing being recovered)
is a block copy in and a block copy out; legs starting, continuing or ending a loss are
picked out with masks and each of those steps is one set of numpy operations over all
of them. There are no per-leg or per-sample Python loops.

Parameters are for 8 kHz narrow-band audio (G.711). This module knows nothing of RTP,
jitter buffers, codecs, legs' identities or time: the caller says which subframes are
missing (e.g. from `hotline.rtp.jitter.Frame.present`) and keeps slot numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from hotline.media.slots import SlotBank, grown

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_Item = TypeVar("_Item", bound=np.generic)
IndexArray = npt.NDArray[np.intp]

SUBFRAME = 80  # samples: 10 ms at 8 kHz, the unit of loss and of the level ramp
PITCH_MIN = 40  # samples: 200 Hz, the shortest pitch period searched
PITCH_MAX = 120  # samples: 66.7 Hz, the longest
OVERLAP = PITCH_MAX // 4  # 30 samples: the longest quarter period, the widest blend
HISTORY = 3 * PITCH_MAX  # 360 samples (45 ms) kept per leg
CORRELATION = 160  # samples (20 ms) compared in the pitch search
FADE_START = SUBFRAME  # samples of loss before the level starts to fall (10 ms)
FADE_END = 6 * SUBFRAME  # samples of loss after which the concealment is silent (60 ms)
MERGE_STEP = 32  # samples (4 ms) added to the recovery cross-fade per extra 10 ms lost
MAX_PERIODS = 3  # pitch periods repeated at most
_COMPACT_TICKS = 8  # ticks of room in the sliding history before it is moved back

_SUB = np.arange(SUBFRAME, dtype=np.int64)
_TAIL = np.arange(OVERLAP, dtype=np.int64)
_LAGS = np.arange(PITCH_MAX, PITCH_MIN - 1, -1, dtype=np.int64)  # in window-start order


class ConcealmentError(ValueError):
    """A block, slot list or presence mask handed to the bank does not fit."""


def presence_from_bits(bits: npt.ArrayLike, subframes: int = 2) -> BoolArray:
    """Turn per-leg bit masks (bit i set: subframe i arrived, as
    `hotline.rtp.jitter.Frame.present` gives them) into a (legs × subframes) bool array."""
    values = np.asarray(bits, dtype=np.int64)
    if values.ndim != 1:
        raise ConcealmentError(f"presence bits must be 1-D, got shape {values.shape}")
    if subframes < 1:
        raise ConcealmentError(f"subframes must be at least 1, got {subframes}")
    shifts = np.arange(subframes, dtype=np.int64)
    return ((values[:, None] >> shifts) & 1).astype(np.bool_)


def _level(erased: npt.NDArray[np.int64]) -> Float32Array:
    """Gain of the concealment at each sample index of a loss (0 = its first sample)."""
    ramp = 1.0 - (erased - FADE_START) / (FADE_END - FADE_START)
    return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def _ramp(index: npt.NDArray[np.int64], overlap: npt.NDArray[np.int64]) -> Float64Array:
    """Cross-fade weight of the incoming signal at `index` within a fade of `overlap`
    samples starting at index 0: 1/(overlap+1), 2/(overlap+1) … then 1 (0 before)."""
    weight: Float64Array = np.clip((index + 1) / (overlap + 1), 0.0, 1.0)
    return weight


def _to_int16(values: Float32Array) -> Int16Array:
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


def _pitch(history: Float32Array) -> npt.NDArray[np.int64]:
    """Pitch period (samples) of each row of a (legs × HISTORY) float array: the lag in
    PITCH_MIN..PITCH_MAX that maximises the normalised correlation of the last
    CORRELATION samples with the same length one lag earlier."""
    end = history.shape[1]
    target = history[:, end - CORRELATION :]
    windows = np.lib.stride_tricks.sliding_window_view(history, CORRELATION, axis=1)
    first = end - CORRELATION - PITCH_MAX  # window start of the longest lag
    last = end - CORRELATION - PITCH_MIN
    candidates = windows[:, first : last + 1]
    correlation = np.einsum("gsw,gw->gs", candidates, target)
    squares = np.zeros((history.shape[0], end + 1), dtype=np.float64)
    np.cumsum(np.square(history, dtype=np.float64), axis=1, out=squares[:, 1:])
    starts = np.arange(first, last + 1)
    energy = squares[:, starts + CORRELATION] - squares[:, starts]
    score = correlation / np.sqrt(np.maximum(energy, 1.0))
    best: npt.NDArray[np.int64] = _LAGS[np.argmax(score, axis=1)]
    return best


class ConcealmentBank(SlotBank):
    """Loss concealment for many legs, stepped together one media tick at a time.

    Slots come from `add_leg` and stay valid until `remove_leg`; the arrays grow
    (doubling) when more legs are added than `capacity`. Every call of `process` is one
    tick for the whole bank: a slot left out of it is taken to have received silence
    for that tick (a loss it was concealing ends there, unheard).
    """

    def __init__(self, capacity: int = 64, samples_per_tick: int = 160) -> None:
        if capacity < 1:
            raise ConcealmentError(f"capacity must be at least 1, got {capacity}")
        if samples_per_tick < SUBFRAME or samples_per_tick % SUBFRAME:
            raise ConcealmentError(
                f"samples_per_tick must be a positive multiple of {SUBFRAME}, got"
                f" {samples_per_tick}"
            )
        self.samples_per_tick = samples_per_tick
        self.subframes = samples_per_tick // SUBFRAME
        self._width = HISTORY + _COMPACT_TICKS * samples_per_tick
        self._cursor = HISTORY  # column of the next tick's first sample, for every slot
        SlotBank.__init__(self, capacity)
        self._stream = np.zeros((0, self._width), dtype=np.int16)
        self._erased = np.zeros(0, dtype=np.int64)  # samples of the loss so far, 0 = none
        self._period = np.zeros(0, dtype=np.int64)  # pitch period of the current loss
        self._pitch_buffer = np.zeros((0, HISTORY), dtype=np.float32)  # history at its start
        self.ticks = 0
        self.concealed_subframes = 0  # subframes filled in, over all legs
        self.losses = 0  # losses (runs of missing subframes) begun
        self._allocate(capacity)

    # ------------------------------------------------------------------ slots

    def _grow(self, capacity: int) -> None:
        self._stream = grown(self._stream, capacity)
        self._erased = grown(self._erased, capacity)
        self._period = grown(self._period, capacity)
        self._pitch_buffer = grown(self._pitch_buffer, capacity)

    def remove_leg(self, slot: int) -> None:
        """Free a slot."""
        self._check_slot(slot)
        self._release(slot)

    def reset(self, slot: int) -> None:
        """Forget a leg's history (a new stream that must not be blended with the old)."""
        self._check_slot(slot)
        self._reset(slot)

    def _reset(self, slot: int) -> None:
        self._stream[slot] = 0
        self._erased[slot] = 0
        self._period[slot] = 0

    def concealing(self, slot: int) -> int:
        """Samples of the leg's current loss concealed so far (0: not concealing); it
        stops counting at 60 ms, when the concealment has gone silent."""
        self._check_slot(slot)
        return int(self._erased[slot])

    # ------------------------------------------------------------------ one tick

    def process(
        self,
        block: Int16Array,
        slots: npt.ArrayLike,
        present: npt.ArrayLike | None = None,
    ) -> Int16Array:
        """One tick: row r of `block` is the audio of slot ``slots[r]``, and
        ``present[r, i]`` says whether its subframe i (80 samples) really arrived
        (None: all did; the content of missing subframes is ignored). Returns the
        concealed block (not delayed) as a new int16 array."""
        t = self.samples_per_tick
        if not isinstance(block, np.ndarray) or block.dtype != np.int16 or block.ndim != 2:
            shape = getattr(block, "shape", None)
            dtype = getattr(block, "dtype", type(block).__name__)
            raise ConcealmentError(f"the block must be a 2-D int16 array, got {dtype} {shape}")
        n = block.shape[0]
        if block.shape[1] != t:
            raise ConcealmentError(f"the block must have {t} samples per row, got {block.shape}")
        rows = np.asarray(slots, dtype=np.intp)
        if rows.shape != (n,):
            raise ConcealmentError(f"need one slot per block row ({n}), got shape {rows.shape}")
        if n and (int(rows.min()) < 0 or int(rows.max()) >= self._capacity):
            raise ConcealmentError(f"slots must be within 0..{self._capacity - 1}")
        touched = np.zeros(self._capacity, dtype=np.bool_)
        touched[rows] = True
        if int(np.count_nonzero(touched)) != n:
            raise ConcealmentError("a slot appears twice in one tick")
        if not bool(np.all(self._used[rows])):
            bad = rows[~self._used[rows]]
            raise ConcealmentError(f"slots {bad[:5].tolist()} are not active legs")
        mask = self._presence(present, n)

        if self._cursor + t > self._width:  # move the history back to the front
            start = self._cursor - HISTORY
            self._stream[:, :HISTORY] = self._stream[:, start : self._cursor]
            self._cursor = HISTORY
        c = self._cursor
        stream = self._stream
        stream[rows, c : c + t] = block
        idle = np.flatnonzero(self._used & ~touched)
        if idle.size:
            stream[idle, c : c + t] = 0
            self._erased[idle] = 0

        if mask is not None or bool(np.any(self._erased[rows])):
            if mask is None:
                mask = np.ones((n, self.subframes), dtype=np.bool_)
            for sub in range(self.subframes):
                self._subframe(rows, mask[:, sub], c + sub * SUBFRAME)

        out = stream[rows, c : c + t]
        self._cursor = c + t
        self.ticks += 1
        return out

    def _presence(self, present: npt.ArrayLike | None, n: int) -> BoolArray | None:
        """The presence mask as (n × subframes) bool, or None when all arrived."""
        if present is None:
            return None
        mask = np.asarray(present)
        if mask.dtype != np.bool_ or mask.shape != (n, self.subframes):
            raise ConcealmentError(
                f"present must be a ({n} × {self.subframes}) bool array, got"
                f" {mask.dtype} {mask.shape}"
            )
        return None if bool(mask.all()) else mask

    def _subframe(self, rows: IndexArray, arrived: BoolArray, column: int) -> None:
        """Conceal, continue or end the losses of one subframe starting at `column`."""
        erased = self._erased[rows]
        losing = erased > 0
        missing = ~arrived
        starting = missing & ~losing
        if starting.any():
            self._begin(rows[starting], column)
        silent = missing & (erased >= FADE_END)  # long gone quiet: nothing to compute
        if silent.any():
            self._stream[rows[silent], column : column + SUBFRAME] = 0
            self.concealed_subframes += int(np.count_nonzero(silent))
            missing &= ~silent
        if missing.any():
            self._synthesise(rows[missing], column)
        ending = arrived & losing
        if ending.any():
            self._recover(rows[ending], column)

    def _periodic(
        self,
        rows: IndexArray,
        period: npt.NDArray[np.int64],
        periods: npt.NDArray[np.int64],
        position: npt.NDArray[np.int64],
    ) -> Float32Array:
        """The periodic extension of each row's last `periods` pitch periods, at sample
        `position` (rows × samples) counted from the start of the loss."""
        span = (periods * period)[:, None]
        index = HISTORY - span + position % span
        values: Float32Array = np.take_along_axis(self._pitch_buffer[rows], index, axis=1)
        return values

    def _begin(self, rows: IndexArray, column: int) -> None:
        """A loss starts at `column`: find the pitch and make the pitch buffer, its last
        quarter period blended into the one a period before, so that it loops smoothly."""
        history = self._stream[rows, column - HISTORY : column].astype(np.float32)
        period = _pitch(history)
        overlap = (period // 4)[:, None]
        weight = _ramp(_TAIL - (OVERLAP - overlap), overlap)  # over the last `overlap`
        earlier = np.take_along_axis(history, HISTORY - OVERLAP - period[:, None] + _TAIL, axis=1)
        tail = history[:, HISTORY - OVERLAP :]
        history[:, HISTORY - OVERLAP :] = (1.0 - weight) * tail + weight * earlier
        self._pitch_buffer[rows] = history
        self._period[rows] = period
        self.losses += int(rows.size)

    def _synthesise(self, rows: IndexArray, column: int) -> None:
        """Fill the subframe at `column` of every row in a loss."""
        erased = self._erased[rows]
        period = self._period[rows]
        periods = np.minimum(MAX_PERIODS, 1 + erased // SUBFRAME)
        position = erased[:, None] + _SUB
        signal = self._periodic(rows, period, periods, position)
        switching = (periods > 1) & (erased == (periods - 1) * SUBFRAME)
        if switching.any():
            before = self._periodic(
                rows[switching], period[switching], periods[switching] - 1, position[switching]
            )
            overlap = (period[switching] // 4)[:, None]
            weight = _ramp(_SUB, overlap)
            signal[switching] = (1.0 - weight) * before + weight * signal[switching]
        first = erased == 0
        if first.any():  # join the real signal: its last sample minus the loop's, fading out
            step = self._stream[rows[first], column - 1] - self._pitch_buffer[rows[first], -1]
            overlap = (period[first] // 4)[:, None]
            signal[first] += step[:, None] * (1.0 - _ramp(_SUB, overlap))
        signal *= _level(position)
        self._stream[rows, column : column + SUBFRAME] = _to_int16(signal)
        self._erased[rows] = np.minimum(erased + SUBFRAME, FADE_END)
        self.concealed_subframes += int(rows.size)

    def _recover(self, rows: IndexArray, column: int) -> None:
        """Audio is back at `column`: cross-fade from the concealment into it."""
        erased = self._erased[rows]
        period = self._period[rows]
        periods = np.minimum(MAX_PERIODS, 1 + erased // SUBFRAME)
        position = erased[:, None] + _SUB
        synthetic = self._periodic(rows, period, periods, position) * _level(position)
        overlap = np.minimum(SUBFRAME, period // 4 + MERGE_STEP * (erased // SUBFRAME - 1))
        weight = _ramp(_SUB, overlap[:, None])
        real = self._stream[rows, column : column + SUBFRAME].astype(np.float32)
        merged = weight * real + (1.0 - weight) * synthetic
        self._stream[rows, column : column + SUBFRAME] = _to_int16(merged.astype(np.float32))
        self._erased[rows] = 0


class Concealer:
    """Loss concealment for a single leg: a one-slot `ConcealmentBank`."""

    def __init__(self, samples_per_tick: int = 160) -> None:
        self._bank = ConcealmentBank(1, samples_per_tick)
        self._slots = np.array([self._bank.add_leg()], dtype=np.intp)

    @property
    def concealed_subframes(self) -> int:
        return self._bank.concealed_subframes

    def process(self, frame: Int16Array, present: Sequence[bool] | None = None) -> Int16Array:
        """One tick of the leg: `frame` (int16, samples_per_tick long) and which of its
        subframes arrived (None: all). Returns the concealed frame."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise ConcealmentError(f"the frame must be a 1-D int16 array, got {dtype} {shape}")
        mask = None if present is None else np.array([list(present)], dtype=np.bool_)
        out: Int16Array = self._bank.process(frame[None, :], self._slots, mask)[0]
        return out

    def reset(self) -> None:
        """Forget the history (a new stream)."""
        self._bank.reset(int(self._slots[0]))
