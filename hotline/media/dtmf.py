"""In-band DTMF detection for every leg at once: a vectorised DFT (Goertzel) bank.

Owns `DtmfDetectorBank`: per-leg detector state kept in arrays indexed by slot, and
``process(block, slots, tick_index)``, which analyses one media tick — a (legs × 160)
block of 8 kHz samples — for all legs together and reports the key presses that
started or ended in it. There is no Python loop over legs or samples; the only loop
is over the four 5 ms steps of a tick, in the digit state machine.

How it measures (ITU-T Q.24 is the yardstick):

* Each 40-sample (5 ms) sub-block is correlated with cos/sin at the eight DTMF
  frequencies and their second harmonics — one batched matrix product per tick, with
  every sample phased to the same absolute reference — so the DFT of any 160-sample
  (20 ms) rectangular window is the plain sum of four sub-blocks. A new window is
  analysed every 5 ms.
* Stage one, for every window: bin powers, and a gate that keeps only windows the
  precise stage could accept (a best bin per group standing out, enough level and
  enough of the window's power, allowing each bin the most a tone inside the
  frequency tolerance can lose to the window's response).
* Stage two, for the few windows that pass: the tone frequencies are measured, not
  assumed — from the phase advance between the window's halves (80 samples apart,
  unwrapped by the advance between its quarters) — and the two tones' complex
  amplitudes are solved from their bins with each tone's leakage into the other's bin
  taken out; one refinement repeats both with the leakage removed from the halves too.
  Levels, twist and ratios are therefore judged on the tones' true powers, whatever
  their offset.
* A window is a hit for key (r, c) when: both tones are within `frequency_tolerance`
  of nominal (default ±1.8 %: Q.23's sending tolerance, between Q.24's "must detect"
  ±1.5 % and "must reject" ±3.5 %); each is at least `min_level_dbm0`; the twist is
  within `max_normal_twist_db` (high tone weaker) and `max_reverse_twist_db` (high
  tone stronger); the two tones carry at least `min_tone_ratio` of the window's power
  (DC removed), which out-of-band energy from speech or music fails; what is left in
  the other bins of each group, after the fitted tones' leakage, is
  `min_group_peak_db` below that group's tone; and what is left at each second
  harmonic is `max_harmonic_db` below its tone — both beyond the floor that the
  window's power outside the two tones, taken as white noise, leaves in a bin.

How it times: a key starts after `min_windows` consecutive hits of the same key whose
measured frequencies stay within 5 Hz of the run's mean (sweeps and gliding voices
drift), a limit widened by what noise can move the measurements: each hit carries the
spread of its frequency estimates (from the window's power outside the two tones against
each tone's power), and may differ from the mean by three standard deviations of that
difference on top of the 5 Hz, since a quiet tone in noise wanders a few hertz from
window to window without drifting. A key ends after `end_windows` consecutive windows
without it, or as soon as another key has started. With the defaults (4 and 8, 5 ms
apart, and windows that count as hits when about four-fifths filled with tone) a 23 ms
tone gives at most three hits and a 40 ms tone at least four, so keys are accepted from
about 25-30 ms; dropouts up to 20 ms are ridden through, and a pause of 25 ms or more
separates two presses (Q.24: ride through 10 ms, separate at 40 ms).

Sample positions are on the tick timeline: sample ``tick_index · samples_per_tick + k``
is sample k of the block given with `tick_index`. A key's ``start_sample`` and
``end_sample`` estimate the tone's edges on that timeline to within about ±6 ms; a key
is reported about 35 ms after its tone began.

Counting a key once when the peer also sends it by RFC 4733: ``suppress(slot,
until_sample, digit)`` tells the bank that tones starting before `until_sample` (of
that key, or of any key) were already counted elsewhere: a press not yet reported is
never reported; one already reported ends with ``suppressed=True``.

This module must not know about RTP, codecs, sockets or clocks: the engine passes
decoded samples and the tick index in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hotline.media.slots import SlotBank, grown
from hotline.media.tones import COL_HZ, DBM0_PEAK, KEYPAD, ROW_HZ, SAMPLE_RATE

HOP = 40  # samples per sub-block: the 5 ms step between analysis windows
WINDOW_SUBBLOCKS = 4  # sub-blocks per analysis window
WINDOW = HOP * WINDOW_SUBBLOCKS  # 160 samples: the 20 ms rectangular analysis window
ONSET_LAG = 148  # samples from a tone's start to the end of its first hit window (measured)
OFFSET_LAG = 34  # samples from a tone's end to the end of its last hit window (measured)

_HISTORY = WINDOW_SUBBLOCKS - 1  # sub-blocks kept from earlier ticks
_COLUMNS = 33  # per sub-block: 8 fundamentals (re, im), the sample sum, 8 harmonics (re, im)
_SUM_COLUMN = 16
_INV_WINDOW = np.float32(1.0 / WINDOW)
_GATE_SLACK = 2.0  # the gate's allowance for leakage and noise beyond the offset correction
_GATE_PEAK = 2.0  # the gate's group peak: best bin at least 3 dB above the next
_MODEL_SLACK = 0.25  # share of a bin's predicted leakage power a fit may leave unexplained
_MAX_DRIFT_HZ = 5.0  # how far a hit's tones may be from the mean of the run so far
_DRIFT_SIGMAS = 3.0  # plus this many standard deviations of the measurement noise
# Standard deviation (Hz) of a tone's offset measured from the phase advance between two
# 80-sample halves, per unit of sqrt(white-noise power / tone power): each half's phase
# has variance noise / (80 · tone power), the advance twice that, over 80 samples.
_SPREAD_HZ = SAMPLE_RATE / (2.0 * np.pi * 2 * HOP) * np.sqrt(2.0 / (2 * HOP))
_HARMONIC_SLACK = 1.0  # the same for harmonic bins, which can sit on the other tone's slope
# Multiples of the mean power white noise leaves in a bin that a checked bin may hold on
# top of its limit: noise exceeds six times its mean with probability e^-6 (0.25 %), while
# an interferer concentrated in the bin is still judged on at least 92 % of its power.
_NOISE_SLACK = 6.0

_FUNDAMENTALS = np.array(ROW_HZ + COL_HZ)
_FREQS_INT = np.concatenate([_FUNDAMENTALS, 2 * _FUNDAMENTALS]).astype(np.int64)
_FREQS = _FREQS_INT.astype(np.float64)  # 16 bins: 8 tones, then their second harmonics
_N_FREQS = len(_FREQS)
_OMEGA = 2.0 * np.pi * _FREQS / SAMPLE_RATE
# For a key (row r, column c): the other three row bins, then the other three column bins.
_OTHER_BINS = np.array(
    [
        [[k for k in range(4) if k != r] + [k for k in range(4, 8) if k != c + 4] for c in range(4)]
        for r in range(4)
    ],
    dtype=np.intp,
)
_NO_TICK = np.iinfo(np.int64).min // 2  # last-tick marker of a slot never processed
_NO_LIMIT = np.iinfo(np.int64).min // 2  # suppression marker: nothing suppressed


class DtmfConfigError(ValueError):
    """A detector setting out of its meaningful range."""


@dataclass(frozen=True, slots=True)
class DtmfDetectorConfig:
    """Acceptance rules; the defaults meet ITU-T Q.24 as hotline's tests check it."""

    min_level_dbm0: float = -42.0  # each tone; Q.24 asks for detection down to −36
    max_normal_twist_db: float = 9.0  # high tone weaker than low: accept 8, reject 10
    max_reverse_twist_db: float = 5.0  # high tone stronger than low: accept 4, reject 6
    frequency_tolerance: float = 0.018  # relative; detect ±1.5 %, reject ±3.5 % (Q.23 sends ±1.8 %)
    min_tone_ratio: float = 0.8  # share of window power (DC removed) in the two tones
    min_group_peak_db: float = 10.0  # best tone above the others of its group
    max_harmonic_db: float = -12.0  # second harmonic relative to its tone
    min_windows: int = 4  # consecutive hits (5 ms apart) before a key starts
    end_windows: int = 8  # consecutive misses that end a key

    def __post_init__(self) -> None:
        if not -60.0 <= self.min_level_dbm0 <= 0.0:
            raise DtmfConfigError(
                f"min_level_dbm0 must be between -60 and 0, got {self.min_level_dbm0}"
            )
        for name in ("max_normal_twist_db", "max_reverse_twist_db", "min_group_peak_db"):
            value = getattr(self, name)
            if not 0.0 <= value <= 30.0:
                raise DtmfConfigError(f"{name} must be between 0 and 30 dB, got {value}")
        if not 0.005 <= self.frequency_tolerance <= 0.04:
            raise DtmfConfigError(
                "frequency_tolerance must be between 0.005 and 0.04, "
                f"got {self.frequency_tolerance}"
            )
        if not 0.3 <= self.min_tone_ratio <= 1.0:
            raise DtmfConfigError(
                f"min_tone_ratio must be between 0.3 and 1.0, got {self.min_tone_ratio}"
            )
        if not -40.0 <= self.max_harmonic_db <= 0.0:
            raise DtmfConfigError(
                f"max_harmonic_db must be between -40 and 0, got {self.max_harmonic_db}"
            )
        if not 1 <= self.min_windows <= 40:
            raise DtmfConfigError(f"min_windows must be between 1 and 40, got {self.min_windows}")
        if not 1 <= self.end_windows <= 40:
            raise DtmfConfigError(f"end_windows must be between 1 and 40, got {self.end_windows}")


@dataclass(frozen=True, slots=True)
class InbandDigitStarted:
    """A key press was recognised in the audio of a leg; it may still be sounding."""

    slot: int
    digit: str
    start_sample: int  # estimated tone onset on the tick timeline
    detected_sample: int  # end of the analysis window that confirmed it


@dataclass(frozen=True, slots=True)
class InbandDigitEnded:
    """A reported key press stopped sounding (or its leg was removed)."""

    slot: int
    digit: str
    start_sample: int  # as reported when it started
    end_sample: int  # estimated end of the tone on the tick timeline
    suppressed: bool  # `suppress` claimed it after it was reported: count it elsewhere


DigitEvent = InbandDigitStarted | InbandDigitEnded


def _dirichlet(delta: npt.NDArray[np.float64], length: int) -> npt.NDArray[np.complex128]:
    """Sum over k < length of exp(i·delta·k): the response of a `length`-sample
    rectangular window to a complex tone `delta` radians/sample off the bin.

    The trigonometry runs in float32 (an order of magnitude faster in numpy, and
    accurate to about 1e-6 here); the result is complex128.
    """
    half = (delta * 0.5).astype(np.float32)
    denominator = np.sin(half)
    small = np.abs(denominator) < 1e-6
    magnitude = (np.sin(half * np.float32(length)) / np.where(small, 1.0, denominator)).astype(
        np.float64
    )
    magnitude[small] = float(length)
    response: npt.NDArray[np.complex128] = magnitude * _unit(half * np.float32(length - 1))
    return response


def _unit(angle: npt.NDArray[np.float32]) -> npt.NDArray[np.complex128]:
    """exp(i·angle), computed with float32 trigonometry."""
    out = np.empty(angle.shape, dtype=np.complex128)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def _abs2(values: npt.NDArray[np.complex128]) -> npt.NDArray[np.float64]:
    """Squared magnitude."""
    return np.asarray(values.real * values.real + values.imag * values.imag)


def _power_gain(offset_hz: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    """Power response of the 160-sample rectangular window to a tone `offset_hz` off its bin."""
    ratio = np.sinc(np.asarray(offset_hz) * (WINDOW / SAMPLE_RATE)) / np.sinc(
        np.asarray(offset_hz) / SAMPLE_RATE
    )
    return np.asarray(ratio * ratio, dtype=np.float64)


def _db(value: float) -> float:
    return float(10.0 ** (value / 10.0))


def _best_two(
    power: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Largest and second largest of the last axis (length 4), by elementwise tournaments."""
    a, b, c, d = power[..., 0], power[..., 1], power[..., 2], power[..., 3]
    high_ab, low_ab = np.maximum(a, b), np.minimum(a, b)
    high_cd, low_cd = np.maximum(c, d), np.minimum(c, d)
    best = np.maximum(high_ab, high_cd)
    second = np.maximum(np.minimum(high_ab, high_cd), np.maximum(low_ab, low_cd))
    return best, second


class DtmfDetectorBank(SlotBank):
    """DTMF detectors for many legs, stepped together one media tick at a time.

    Slots come from `add_leg` and stay valid until `remove_leg`; the arrays grow
    (doubling) when more legs are added than `capacity`.
    """

    def __init__(
        self,
        capacity: int = 64,
        config: DtmfDetectorConfig | None = None,
        samples_per_tick: int = 160,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if samples_per_tick < HOP or samples_per_tick % HOP:
            raise ValueError(
                f"samples_per_tick must be a positive multiple of {HOP}, got {samples_per_tick}"
            )
        self.config = cfg = config or DtmfDetectorConfig()
        self.samples_per_tick = samples_per_tick
        self._subblocks = samples_per_tick // HOP
        tone_peak = DBM0_PEAK * 10.0 ** (cfg.min_level_dbm0 / 20.0)
        self._min_power = tone_peak * tone_peak / 2.0  # mean-square power of the weakest tone
        self._normal_twist = _db(cfg.max_normal_twist_db)
        self._reverse_twist = _db(cfg.max_reverse_twist_db)
        self._peak = _db(cfg.min_group_peak_db)
        self._gate_peak = np.float32(_GATE_PEAK)
        self._harmonic = _db(cfg.max_harmonic_db)
        self._tolerance_hz = np.array(_FUNDAMENTALS) * cfg.frequency_tolerance
        # The gate before the precise analysis may only drop windows the precise analysis
        # would reject: it allows each bin the largest correction a tone inside the
        # frequency tolerance can need, and a further factor for leakage and noise.
        edge_gain = _power_gain(self._tolerance_hz)
        self._gate_boost = (_GATE_SLACK / edge_gain).astype(np.float32)  # per fundamental
        self._gate_min_power = np.float32(self._min_power)
        self._gate_ratio = np.float32(cfg.min_tone_ratio)
        n = np.arange(samples_per_tick).reshape(self._subblocks, HOP)
        self._base_phase = np.exp(-1j * n[..., None] * _OMEGA).astype(np.complex128)
        self._cycles_per_tick = _FREQS_INT * samples_per_tick  # integer cycles·SAMPLE_RATE
        # Columns: (re, im) of the 8 fundamentals, the plain sum (for removing DC), then
        # (re, im) of the 8 second harmonics.
        self._basis = np.zeros((self._subblocks, HOP, _COLUMNS), dtype=np.float32)
        self._basis[..., _SUM_COLUMN] = 1.0
        self._basis_tick: int | None = None
        SlotBank.__init__(self, capacity)
        self._history = np.zeros((0, _HISTORY, _COLUMNS), dtype=np.float32)
        self._history_energy = np.zeros((0, _HISTORY), dtype=np.float32)
        self._last_tick = np.zeros(0, dtype=np.int64)
        self._active = np.zeros(0, dtype=np.int8)
        self._reported = np.zeros(0, dtype=np.bool_)
        self._suppressed = np.zeros(0, dtype=np.bool_)
        self._start = np.zeros(0, dtype=np.int64)
        self._last_hit = np.zeros(0, dtype=np.int64)
        self._misses = np.zeros(0, dtype=np.int32)
        self._candidate = np.zeros(0, dtype=np.int8)
        self._candidate_hits = np.zeros(0, dtype=np.int32)
        self._candidate_first = np.zeros(0, dtype=np.int64)
        self._candidate_offsets = np.zeros((0, 2), dtype=np.float32)
        self._candidate_variance = np.zeros((0, 2), dtype=np.float32)
        self._suppress_any = np.zeros(0, dtype=np.int64)
        self._suppress_key = np.zeros((0, 16), dtype=np.int64)
        self._allocate(capacity)

    # ------------------------------------------------------------------ slots

    def _grow(self, capacity: int) -> None:
        """Create (or grow to `capacity`) the per-slot state arrays, keeping their rows."""
        self._history = grown(self._history, capacity, 0.0)
        self._history_energy = grown(self._history_energy, capacity, 0.0)
        self._last_tick = grown(self._last_tick, capacity, _NO_TICK)
        self._active = grown(self._active, capacity, -1)  # key sounding, −1 for none
        self._reported = grown(self._reported, capacity, False)  # its start was reported
        self._suppressed = grown(self._suppressed, capacity, False)
        self._start = grown(self._start, capacity, 0)  # its estimated onset sample
        self._last_hit = grown(self._last_hit, capacity, 0)  # end of its last hit window
        self._misses = grown(self._misses, capacity, 0)  # windows without it since then
        self._candidate = grown(self._candidate, capacity, -1)  # key of the current run
        self._candidate_hits = grown(self._candidate_hits, capacity, 0)  # its length
        self._candidate_first = grown(self._candidate_first, capacity, 0)  # its first window
        self._candidate_offsets = grown(self._candidate_offsets, capacity, 0.0)  # mean
        # Sum over the run's hits of their offsets' noise variances (Hz²).
        self._candidate_variance = grown(self._candidate_variance, capacity, 0.0)
        self._suppress_any = grown(self._suppress_any, capacity, _NO_LIMIT)
        self._suppress_key = grown(self._suppress_key, capacity, _NO_LIMIT)
        # Work buffers for `process`, reused every tick: fresh arrays of this size would
        # each cost page faults (large numpy allocations are mmap'd anew by malloc).
        subs = self._subblocks
        self._work_samples = np.empty((capacity, subs, HOP), dtype=np.float32)
        self._work_stacked = np.empty((capacity, _HISTORY + subs, _COLUMNS), dtype=np.float32)
        self._work_energy = np.empty((capacity, _HISTORY + subs), dtype=np.float32)
        self._work_pairs = np.empty((capacity, subs + 2, _SUM_COLUMN + 1), dtype=np.float32)
        self._work_windows = np.empty((capacity, subs, _SUM_COLUMN + 1), dtype=np.float32)
        self._work_squares = np.empty((capacity, subs, _SUM_COLUMN), dtype=np.float32)
        self._work_power = np.empty((capacity, subs, 8), dtype=np.float32)
        self._work_boosted = np.empty((capacity, subs, 8), dtype=np.float32)

    def remove_leg(self, slot: int) -> InbandDigitEnded | None:
        """Free a slot. A reported key still sounding ends here and is returned."""
        self._check_slot(slot)
        ended: InbandDigitEnded | None = None
        if self._active[slot] >= 0 and self._reported[slot]:
            ended = InbandDigitEnded(
                slot,
                KEYPAD[int(self._active[slot])],
                int(self._start[slot]),
                int(self._last_hit[slot]) - OFFSET_LAG,
                bool(self._suppressed[slot]),
            )
        self._release(slot)
        return ended

    def _reset(self, slot: int) -> None:
        self._history[slot] = 0
        self._history_energy[slot] = 0
        self._last_tick[slot] = _NO_TICK
        self._active[slot] = -1
        self._reported[slot] = False
        self._suppressed[slot] = False
        self._misses[slot] = 0
        self._candidate[slot] = -1
        self._candidate_hits[slot] = 0
        self._suppress_any[slot] = _NO_LIMIT
        self._suppress_key[slot] = _NO_LIMIT

    def ongoing(self, slot: int) -> str | None:
        """The key currently sounding on `slot`, if one has been recognised."""
        self._check_slot(slot)
        active = int(self._active[slot])
        return KEYPAD[active] if active >= 0 else None

    def suppress(self, slot: int, until_sample: int, digit: str | None = None) -> None:
        """Drop in-band presses of `digit` (any key if None) whose tone starts before `until_sample`.

        For a key received by RFC 4733 or SIP INFO as well: the engine maps the event's
        time to the tick timeline and calls this, so the press counts once. A press
        already reported ends with ``suppressed=True``.
        """
        self._check_slot(slot)
        if digit is None:
            self._suppress_any[slot] = max(int(self._suppress_any[slot]), until_sample)
            key = -1
        else:
            key = digit_index(digit)
            self._suppress_key[slot, key] = max(int(self._suppress_key[slot, key]), until_sample)
        active = int(self._active[slot])
        if active >= 0 and (key < 0 or key == active) and self._start[slot] < until_sample:
            self._suppressed[slot] = True

    # -------------------------------------------------------------- analysis

    def process(
        self, block: npt.NDArray[np.generic], slots: npt.ArrayLike, tick_index: int
    ) -> list[DigitEvent]:
        """Analyse one tick for the legs in `slots` (row i of `block` is slot ``slots[i]``).

        `block` is (len(slots) × samples_per_tick) int16, or float on the int16 scale.
        Each slot must be given increasing tick indices; a slot left out of some ticks
        is treated as if it had received silence meanwhile. Returns the presses that
        started or ended in this tick, by slot order and then time.
        """
        slot_index = np.asarray(slots, dtype=np.intp)
        self._validate(block, slot_index, tick_index)
        legs = slot_index.shape[0]
        if legs == 0:
            return []
        subs = self._subblocks
        samples = self._work_samples[:legs]
        np.copyto(samples, block.reshape(legs, subs, HOP))
        # Sub-block j of `stacked` starts at sample tick_index · spt + 40 · (j − 3): the
        # last three sub-blocks of earlier ticks, then this tick's.
        stacked = self._work_stacked[:legs]
        stacked_energy = self._work_energy[:legs]
        np.take(self._history, slot_index, axis=0, out=stacked[:, :_HISTORY], mode="wrap")
        np.take(
            self._history_energy, slot_index, axis=0, out=stacked_energy[:, :_HISTORY], mode="wrap"
        )
        np.matmul(
            samples.transpose(1, 0, 2),
            self._tick_basis(tick_index),
            out=stacked[:, _HISTORY:].transpose(1, 0, 2),
        )
        np.einsum("ijk,ijk->ij", samples, samples, out=stacked_energy[:, _HISTORY:])
        gap = tick_index - self._last_tick[slot_index]
        broken = gap > 1
        if broken.any():
            stacked[broken, :_HISTORY] = 0
            stacked_energy[broken, :_HISTORY] = 0
        self._history[slot_index] = stacked[:, -_HISTORY:]
        self._history_energy[slot_index] = stacked_energy[:, -_HISTORY:]
        self._last_tick[slot_index] = tick_index

        keys, offsets, spreads = self._classify(stacked, stacked_energy, subs, tick_index)
        return self._advance_states(keys, offsets, spreads, slot_index, broken, gap, tick_index)

    def _tick_basis(self, tick_index: int) -> npt.NDArray[np.float32]:
        """cos/−sin at every bin for this tick's samples, phased to absolute sample 0.

        With one phase reference for all samples a window's DFT is the plain sum of its
        sub-blocks' products, and a tone's phase advances by its offset from the bin.
        """
        if self._basis_tick != tick_index:
            turns = (self._cycles_per_tick * tick_index) % SAMPLE_RATE / SAMPLE_RATE
            phased = self._base_phase * np.exp(-2j * np.pi * turns)
            self._basis[..., 0:16:2] = phased[..., :8].real
            self._basis[..., 1:16:2] = phased[..., :8].imag
            self._basis[..., 17:33:2] = phased[..., 8:].real
            self._basis[..., 18:33:2] = phased[..., 8:].imag
            self._basis_tick = tick_index
        return self._basis

    def _validate(
        self, block: npt.NDArray[np.generic], slots: npt.NDArray[np.intp], tick_index: int
    ) -> None:
        if block.ndim != 2 or block.shape[1] != self.samples_per_tick:
            raise ValueError(
                f"block must be (legs x {self.samples_per_tick}) samples, got shape {block.shape}"
            )
        if slots.ndim != 1 or slots.shape[0] != block.shape[0]:
            raise ValueError(
                f"slots must list one slot per block row: {block.shape[0]} rows, "
                f"slots shape {slots.shape}"
            )
        if not (block.dtype == np.int16 or np.issubdtype(block.dtype, np.floating)):
            raise TypeError(f"block must be int16 or float samples, got {block.dtype}")
        if slots.size == 0:
            return
        if slots.min() < 0 or slots.max() >= self._capacity or not self._used[slots].all():
            bad = [int(s) for s in slots if not (0 <= s < self._capacity and self._used[s])]
            raise KeyError(f"slot {bad[0]} is not an active leg")
        counts = np.bincount(slots)
        if counts.max() > 1:
            raise ValueError(f"slot {int(np.argmax(counts))} appears more than once in slots")
        stale = self._last_tick[slots] >= tick_index
        if stale.any():
            slot = int(slots[np.argmax(stale)])
            raise ValueError(
                f"tick_index {tick_index} for slot {slot} is not after its last tick "
                f"{int(self._last_tick[slot])}"
            )

    def _classify(
        self,
        stacked: npt.NDArray[np.float32],
        stacked_energy: npt.NDArray[np.float32],
        subs: int,
        tick_index: int,
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Key index (0…15) heard in each new window, or −1: shape (legs, subs); the
        measured offsets (Hz) of its two tones, and the standard deviations noise gives
        those measurements (Hz): each of shape (legs, subs, 2).

        Stage one, for every window: the 20 ms window's bin powers and a gate that lets
        through only windows the precise stage could accept. Stage two, for those few:
        `_judge`.
        """
        # Window m of this tick covers stacked sub-blocks m … m+3. The gate needs only
        # the fundamentals and the sample sum: the first 17 columns.
        legs = stacked.shape[0]
        head = stacked[..., : _SUM_COLUMN + 1]
        pairs = np.add(head[:, :-1], head[:, 1:], out=self._work_pairs[:legs])
        windows = np.add(pairs[:, :subs], pairs[:, 2:], out=self._work_windows[:legs])
        pair_energy = stacked_energy[:, :-1] + stacked_energy[:, 1:]
        window_energy = pair_energy[:, :subs] + pair_energy[:, 2:]
        window_sum = windows[..., _SUM_COLUMN]
        mean_square = (window_energy - window_sum * window_sum * _INV_WINDOW) * _INV_WINDOW
        squares = np.multiply(
            windows[..., :_SUM_COLUMN], windows[..., :_SUM_COLUMN], out=self._work_squares[:legs]
        )
        power = np.add(squares[..., 0::2], squares[..., 1::2], out=self._work_power[:legs])
        power *= np.float32(2.0 / (WINDOW * WINDOW))

        row_best, row_second = _best_two(power[..., 0:4])
        col_best, col_second = _best_two(power[..., 4:8])
        gate = (row_best >= row_second * self._gate_peak) & (
            col_best >= col_second * self._gate_peak
        )
        # The most each bin's tone can be worth:
        boosted = np.multiply(power, self._gate_boost, out=self._work_boosted[: power.shape[0]])
        row_max = _best_two(boosted[..., 0:4])[0]
        col_max = _best_two(boosted[..., 4:8])[0]
        gate &= (row_max >= self._gate_min_power) & (col_max >= self._gate_min_power)
        gate &= row_max + col_max >= mean_square * self._gate_ratio
        keys = np.full(gate.shape, -1, dtype=np.int8)
        offsets = np.zeros((*gate.shape, 2), dtype=np.float32)
        spreads = np.zeros((*gate.shape, 2), dtype=np.float32)
        legs_at, windows_at = np.nonzero(gate)
        if legs_at.size:
            (
                keys[legs_at, windows_at],
                offsets[legs_at, windows_at],
                spreads[legs_at, windows_at],
            ) = self._judge(stacked, power, mean_square, legs_at, windows_at, tick_index)
        return keys, offsets, spreads

    def _judge(
        self,
        stacked: npt.NDArray[np.float32],
        power: npt.NDArray[np.float32],
        mean_square: npt.NDArray[np.float32],
        legs_at: npt.NDArray[np.intp],
        windows_at: npt.NDArray[np.intp],
        tick_index: int,
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The precise verdict for the gated windows: key index or −1, the two tones'
        frequency offsets (Hz), and the standard deviation noise gives each offset (Hz).

        Fits the two strongest tones — frequency offset and complex amplitude, each
        cleared of the other's leakage — then judges the fit and what it leaves over.
        """
        n = legs_at.size
        pick = np.arange(n)[:, None]
        bins = power[legs_at, windows_at]
        row = bins[:, 0:4].argmax(axis=1)
        col = bins[:, 4:8].argmax(axis=1) + 4
        tone_bins = np.stack([row, col], axis=1)  # (n, 2): indices into the 16 bins
        # Bins judged against the fit: the three other bins of the row group, the three of
        # the column group (a tone's leakage into the other group is some 25 dB down and
        # left out), then the two second-harmonic bins.
        check_bins = np.concatenate([_OTHER_BINS[row, col - 4], tone_bins + 8], axis=1)

        # The four sub-blocks of each window, as complex values re-phased so that sample
        # 0 is the window's first sample.
        quarter_index = windows_at[:, None] + np.arange(WINDOW_SUBBLOCKS)
        raw = stacked[legs_at[:, None], quarter_index]  # (n, 4, columns)
        fundamentals = raw[..., :_SUM_COLUMN].view(np.complex64).astype(np.complex128)
        harmonics = raw[..., _SUM_COLUMN + 1 :].view(np.complex64).sum(axis=1)
        first_sample = tick_index * self.samples_per_tick + HOP * (windows_at - _HISTORY)
        rephase = _rephase(np.concatenate([tone_bins, check_bins], axis=1), first_sample)
        quarters = fundamentals[
            pick[:, :, None], np.arange(4)[None, :, None], tone_bins[:, None, :]
        ]
        quarters *= rephase[:, None, :2]
        whole = fundamentals.sum(axis=1)
        observed = np.concatenate(
            [whole[pick, check_bins[:, :6]], harmonics[pick, check_bins[:, 6:] - 8]], axis=1
        )
        observed *= rephase[:, 2:]

        omega0 = _OMEGA[tone_bins]  # (n, 2) nominal radians/sample
        # Coarse offset from the quarter-to-quarter advance (wraps at ±100 Hz), fine from
        # the half-to-half advance (wraps at ±50 Hz); the coarse one unwraps the fine one.
        coarse = np.angle(np.sum(quarters[:, 1:] * np.conj(quarters[:, :-1]), axis=1)) / HOP
        first_half = quarters[:, 0] + quarters[:, 1]
        second_half = quarters[:, 2] + quarters[:, 3]
        delta = _half_window_offset(first_half, second_half, coarse)
        tone_window = first_half + second_half
        amplitude = _solve_tones(tone_window, omega0, delta)
        # One refinement: take each tone's leakage out of the other's half windows, then
        # measure the offsets again and solve for the amplitudes again.
        cross = omega0[:, ::-1] + delta[:, ::-1] - omega0  # the other tone seen from a bin
        leak_half = amplitude[:, ::-1] * _dirichlet(cross, 2 * HOP)
        first_half -= leak_half
        second_half -= leak_half * _unit((cross * (2 * HOP)).astype(np.float32))
        delta = _half_window_offset(first_half, second_half, delta)
        amplitude = _solve_tones(tone_window, omega0, delta)

        tone_power = 2.0 * _abs2(amplitude)  # mean-square power of each tone
        row_power, col_power = tone_power[:, 0], tone_power[:, 1]
        offset_hz = delta * (SAMPLE_RATE / (2 * np.pi))
        in_tolerance = np.all(np.abs(offset_hz) <= self._tolerance_hz[tone_bins], axis=1)
        loud = (row_power >= self._min_power) & (col_power >= self._min_power)
        twist = (row_power <= col_power * self._normal_twist) & (
            col_power <= row_power * self._reverse_twist
        )
        ratio = self.config.min_tone_ratio
        dominant = row_power + col_power >= mean_square[legs_at, windows_at] * ratio

        # What the checked bins hold beyond the two fitted tones. A tone that starts or
        # stops inside the window leaks more than the steady tone the fit assumes, so
        # each bin may also keep a share of the leakage predicted there.
        tone_omega = omega0 + delta
        check_omega = _OMEGA[check_bins]
        # Sources of leakage: each group's tone into its own other bins, and both tones
        # into each harmonic bin.
        source = np.concatenate(
            [np.repeat(tone_omega, 3, axis=1), tone_omega, tone_omega[:, ::-1]], axis=1
        )
        weight = np.concatenate(
            [np.repeat(amplitude, 3, axis=1), amplitude, amplitude[:, ::-1]], axis=1
        )
        target = np.concatenate([check_omega, check_omega[:, 6:]], axis=1)
        leaks = weight * _dirichlet(source - target, WINDOW)  # (n, 10)
        predicted = leaks[:, :8]
        predicted[:, 6:] += leaks[:, 8:]
        scale = 2.0 / (WINDOW * WINDOW)
        residual = _abs2(observed - predicted) * scale
        allowance = _abs2(predicted) * scale
        # The window's power outside the two tones, taken as white noise: a bin holds
        # 2 / WINDOW of it on average, whatever the tones, so the limits below (relative to
        # a tone) leave room for that floor too; without it a quiet tone in noise fails
        # them now and then, all the more when its offset lowers the harmonic limit.
        noise = np.maximum(mean_square[legs_at, windows_at] - (row_power + col_power), 0.0)
        floor = (noise * (_NOISE_SLACK * 2.0 / WINDOW))[:, None]
        limit = np.repeat(tone_power / self._peak, 3, axis=1)
        peaked = np.all(residual[:, :6] <= limit + allowance[:, :6] * _MODEL_SLACK + floor, axis=1)
        # A harmonic lies twice its tone's offset away from its bin, where the window
        # passes only `response` of its power.
        response = np.maximum(_power_gain(2.0 * offset_hz), 0.25)
        pure = np.all(
            residual[:, 6:]
            <= tone_power * (self._harmonic * response)
            + allowance[:, 6:] * _HARMONIC_SLACK
            + floor,
            axis=1,
        )

        # How far that noise moves each measured offset, against each tone's power.
        spread_hz = _SPREAD_HZ * np.sqrt(
            noise[:, None] / np.maximum(tone_power, np.finfo(np.float64).tiny)
        )

        hit = in_tolerance & loud & twist & dominant & peaked & pure
        return np.where(hit, row * 4 + (col - 4), -1).astype(np.int8), offset_hz, spread_hz

    # ----------------------------------------------------------- state machine

    def _advance_states(
        self,
        keys: npt.NDArray[np.int8],
        offsets: npt.NDArray[np.float32],
        spreads: npt.NDArray[np.float32],
        slots: npt.NDArray[np.intp],
        broken: npt.NDArray[np.bool_],
        gap: npt.NDArray[np.int64],
        tick_index: int,
    ) -> list[DigitEvent]:
        heard_any = (keys >= 0).any(axis=1)
        busy = heard_any | (self._active[slots] >= 0)
        quiet_slots = slots[~busy]
        if quiet_slots.size:
            # Nothing sounding and nothing heard: only the candidate run is broken.
            self._candidate[quiet_slots] = -1
            self._candidate_hits[quiet_slots] = 0
        if not busy.any():
            return []
        keys = keys[busy]
        offsets = offsets[busy]
        spreads = spreads[busy]
        slots = slots[busy]
        broken = broken[busy]
        gap = gap[busy]

        cfg = self.config
        subs = keys.shape[1]
        active = self._active[slots]
        reported = self._reported[slots]
        suppressed = self._suppressed[slots]
        start = self._start[slots]
        last_hit = self._last_hit[slots]
        misses = self._misses[slots]
        candidate = self._candidate[slots]
        candidate_hits = self._candidate_hits[slots]
        candidate_first = self._candidate_first[slots]
        candidate_offsets = self._candidate_offsets[slots]  # mean over the run's hits
        candidate_variance = self._candidate_variance[slots]  # sum of their noise variances
        if broken.any():
            # Ticks this slot missed count as silence: the windows they held all missed.
            skipped = np.minimum(gap - 1, 1000).astype(np.int32) * subs
            misses = np.where(broken & (active >= 0), misses + skipped, misses)
            candidate = np.where(broken, np.int8(-1), candidate)
            candidate_hits = np.where(broken, 0, candidate_hits)

        first_sample = tick_index * self.samples_per_tick
        started = np.zeros(keys.shape, dtype=np.bool_)
        ended = np.zeros(keys.shape, dtype=np.bool_)
        ended_key = np.full(keys.shape, -1, dtype=np.int8)
        ended_start = np.zeros(keys.shape, dtype=np.int64)
        ended_end = np.zeros(keys.shape, dtype=np.int64)
        ended_suppressed = np.zeros(keys.shape, dtype=np.bool_)
        started_start = np.zeros(keys.shape, dtype=np.int64)

        for m in range(subs):
            key = keys[:, m]
            window_end = first_sample + HOP * (m + 1)
            heard = key >= 0

            is_active = active >= 0
            hit = is_active & (key == active)
            misses = np.where(hit, 0, np.where(is_active, misses + 1, misses))
            last_hit = np.where(hit, window_end, last_hit)

            offset = offsets[:, m]
            variance = spreads[:, m] ** 2
            # A key's tones hold their frequency: a hit whose tones moved away from the
            # run's mean starts a new run (sweeps and gliding voices do this). Noise moves
            # both the hit's measurement and the mean's, so the limit widens by
            # `_DRIFT_SIGMAS` standard deviations of their difference.
            run_length = np.maximum(candidate_hits, 1)[:, None]
            noise = variance + candidate_variance / (run_length * run_length)
            limit = np.sqrt(_MAX_DRIFT_HZ**2 + _DRIFT_SIGMAS**2 * noise)
            steady = np.all(np.abs(offset - candidate_offsets) <= limit, axis=1)
            same = heard & (key == candidate) & steady
            candidate_hits = np.where(same, candidate_hits + 1, heard.astype(np.int32))
            step = (offset - candidate_offsets) / np.maximum(candidate_hits, 1)[:, None]
            candidate_offsets = np.where(same[:, None], candidate_offsets + step, offset)
            candidate_variance = np.where(same[:, None], candidate_variance + variance, variance)
            candidate_first = np.where(same, candidate_first, window_end)
            candidate = key

            confirmed = heard & (candidate_hits >= cfg.min_windows)
            takeover = confirmed & (candidate != active)
            ending = is_active & ((misses >= cfg.end_windows) | takeover)
            if ending.any():
                ended[:, m] = ending & reported
                ended_key[:, m] = active
                ended_start[:, m] = start
                ended_end[:, m] = last_hit - OFFSET_LAG
                ended_suppressed[:, m] = suppressed
                active = np.where(ending, np.int8(-1), active)

            starting = confirmed & (active < 0)
            if starting.any():
                onset = candidate_first - ONSET_LAG
                limit = np.maximum(
                    self._suppress_any[slots],
                    self._suppress_key[slots, np.maximum(candidate, 0)],
                )
                quiet = onset < limit
                active = np.where(starting, candidate, active)
                start = np.where(starting, onset, start)
                last_hit = np.where(starting, window_end, last_hit)
                misses = np.where(starting, 0, misses)
                suppressed = np.where(starting, quiet, suppressed)
                reported = np.where(starting, ~quiet, reported)
                started[:, m] = starting & ~quiet
                started_start[:, m] = onset

        self._active[slots] = active
        self._reported[slots] = reported
        self._suppressed[slots] = suppressed
        self._start[slots] = start
        self._last_hit[slots] = last_hit
        self._misses[slots] = np.minimum(misses, 1 << 20)
        self._candidate[slots] = candidate
        self._candidate_hits[slots] = np.minimum(candidate_hits, 1 << 20)
        self._candidate_first[slots] = candidate_first
        self._candidate_offsets[slots] = candidate_offsets
        self._candidate_variance[slots] = candidate_variance

        if not (started.any() or ended.any()):
            return []
        events: list[DigitEvent] = []
        rows, columns = np.nonzero(started | ended)
        for i, m in zip(rows.tolist(), columns.tolist(), strict=True):
            slot = int(slots[i])
            if ended[i, m]:
                events.append(
                    InbandDigitEnded(
                        slot,
                        KEYPAD[int(ended_key[i, m])],
                        int(ended_start[i, m]),
                        int(ended_end[i, m]),
                        bool(ended_suppressed[i, m]),
                    )
                )
            if started[i, m]:
                events.append(
                    InbandDigitStarted(
                        slot,
                        KEYPAD[int(keys[i, m])],
                        int(started_start[i, m]),
                        first_sample + HOP * (m + 1),
                    )
                )
        return events


def _rephase(
    bins: npt.NDArray[np.intp], first_sample: npt.NDArray[np.int64]
) -> npt.NDArray[np.complex128]:
    """exp(i·ω·first_sample) per bin: moves the phase reference from sample 0 to
    `first_sample` (exact integer arithmetic on whole cycles)."""
    cycles = (_FREQS_INT[bins] * first_sample[:, None]) % SAMPLE_RATE
    return _unit((cycles * (2.0 * np.pi / SAMPLE_RATE)).astype(np.float32))


def _half_window_offset(
    first_half: npt.NDArray[np.complex128],
    second_half: npt.NDArray[np.complex128],
    reference: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """A tone's offset from its bin (radians/sample) from the phase advance between the
    halves of a window (80 samples apart), unwrapped to the value nearest `reference`."""
    lever = 2 * HOP
    fine = np.angle(second_half * np.conj(first_half)) / lever
    period = 2.0 * np.pi / lever
    return np.asarray(fine + period * np.rint((reference - fine) / period), dtype=np.float64)


def _solve_tones(
    observed: npt.NDArray[np.complex128],
    omega0: npt.NDArray[np.float64],
    delta: npt.NDArray[np.float64],
) -> npt.NDArray[np.complex128]:
    """Complex amplitudes of two tones at omega0 + delta from their two 160-sample bins.

    Each bin holds its own tone scaled by the window's response at the offset plus the
    other tone's leakage; solving the 2 × 2 system removes both effects.
    """
    tone = omega0 + delta  # (n, 2)
    response = _dirichlet(np.concatenate([delta, tone[:, ::-1] - omega0], axis=1), WINDOW)
    own_row, own_col = response[:, 0], response[:, 1]
    into_row, into_col = response[:, 2], response[:, 3]  # the other tone's leakage
    determinant = own_row * own_col - into_row * into_col
    row = (observed[:, 0] * own_col - into_row * observed[:, 1]) / determinant
    col = (own_row * observed[:, 1] - into_col * observed[:, 0]) / determinant
    return np.stack([row, col], axis=1)




def digit_index(digit: str) -> int:
    """Index of a key in `KEYPAD` (row · 4 + column)."""
    index = KEYPAD.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF key: {digit!r} (expected one of 0-9 * # A-D)")
    return index


__all__ = [
    "HOP",
    "WINDOW",
    "DigitEvent",
    "DtmfConfigError",
    "DtmfDetectorBank",
    "DtmfDetectorConfig",
    "InbandDigitEnded",
    "InbandDigitStarted",
    "digit_index",
]
