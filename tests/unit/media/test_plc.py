"""Loss concealment: no delay, pitch repetition, fade, recovery, and the batch API."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from hotline.media.plc import (
    FADE_END,
    Concealer,
    ConcealmentBank,
    ConcealmentError,
    presence_from_bits,
)
from tests.unit.media.signals import speech_like, to_int16

Int16 = npt.NDArray[np.int16]
T = 160


def harmonic(period: float, seconds: float = 1.0, level: float = 6000.0) -> Int16:
    """A steady voiced-like tone: a fundamental of `period` samples and two harmonics."""
    t = np.arange(int(seconds * 8000))
    x = sum(level / k * np.sin(2 * np.pi * k * t / period + 0.7 * k) for k in (1, 2, 3))
    return np.asarray(np.round(x), dtype=np.int16)


def conceal(signal: Int16, lost: set[tuple[int, int]]) -> Int16:
    """Run a signal through one Concealer, tick by tick; `lost` holds (tick, subframe)
    pairs that did not arrive (their samples are replaced by garbage first)."""
    plc = Concealer()
    out = []
    for tick in range(signal.size // T):
        frame = signal[tick * T : (tick + 1) * T].copy()
        present = [(tick, sub) not in lost for sub in range(2)]
        for sub in range(2):
            if not present[sub]:
                frame[sub * 80 : (sub + 1) * 80] = 12345  # must not leak into the output
        out.append(plc.process(frame, present))
    return np.concatenate(out)


def snr_db(reference: npt.NDArray[np.generic], test: npt.NDArray[np.generic]) -> float:
    ref = reference.astype(np.float64)
    err = ref - test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))


def test_without_loss_the_output_is_the_input_undelayed() -> None:
    rng = np.random.default_rng(1)
    bank = ConcealmentBank(capacity=2)
    slots = np.array([bank.add_leg() for _ in range(5)])  # grows past its capacity
    blocks = rng.integers(-32768, 32768, size=(30, 5, T), dtype=np.int16)
    out = np.concatenate([bank.process(b, slots) for b in blocks], axis=1)
    stream = np.concatenate(list(blocks), axis=1)
    assert np.array_equal(out, stream)
    assert bank.concealed_subframes == 0


@pytest.mark.parametrize("period", [45, 57, 80, 110])
def test_a_lost_frame_of_a_voiced_sound_is_rebuilt_from_its_pitch(period: int) -> None:
    signal = harmonic(period, 0.5)
    out = conceal(signal, {(20, 0), (20, 1)})
    first_10ms = slice(20 * T, 20 * T + 80)
    assert snr_db(signal[first_10ms], out[first_10ms]) > 15.0
    whole = slice(20 * T, 21 * T)
    assert snr_db(signal[whole], out[whole]) > 8.0
    assert np.array_equal(out[: 20 * T], signal[: 20 * T])  # the audio before is untouched
    assert not np.any(out == 12345)


def test_the_concealment_fades_from_10ms_and_is_silent_from_60ms() -> None:
    signal = harmonic(64, 0.5)
    lost = {(t, s) for t in range(10, 15) for s in range(2)}  # 100 ms
    out = conceal(signal, lost).astype(np.float64)
    start = 10 * T  # first concealed sample
    levels = [np.sqrt(np.mean(out[start + 80 * k : start + 80 * (k + 1)] ** 2)) for k in range(8)]
    full = np.sqrt(np.mean(signal.astype(np.float64) ** 2))
    assert levels[0] > 0.8 * full
    # Linear fall of 20 % per 10 ms from the second 10 ms on: mean gain 0.9, 0.7, 0.5 …
    for k, expected in zip(range(1, 6), (0.9, 0.7, 0.5, 0.3, 0.1), strict=True):
        assert levels[k] == pytest.approx(expected * full, rel=0.25), k
    assert np.all(out[start + FADE_END : 15 * T] == 0)


def test_recovery_is_smooth_and_fades_in_after_a_long_loss() -> None:
    signal = harmonic(70, 1.0)
    steps = np.abs(np.diff(signal.astype(np.int64))).max()
    short = conceal(signal, {(20, 1), (21, 0)})  # 20 ms
    long_ = conceal(signal, {(t, s) for t in range(20, 25) for s in range(2)})  # 100 ms
    for out in (short, long_):
        assert np.abs(np.diff(out.astype(np.int64))).max() <= 1.6 * steps
    back = 25 * T  # the first real sample after the long loss
    assert abs(int(long_[back])) < 0.05 * 6000  # fades in from silence
    merge = 80  # a loss of 50 ms and more merges over the whole 10 ms
    assert np.array_equal(
        long_[back + merge : back + merge + 400], signal[back + merge :][:400]
    )


@pytest.mark.parametrize("period", [43.3, 57.6, 91.2])
def test_the_concealment_starts_where_the_real_signal_stopped(period: float) -> None:
    # A swelling tone whose period is not a whole number of samples: the period before
    # a loss differs from the last one, so the loop alone would start with a step.
    t = np.arange(8000)
    swell = 2000.0 + 6000.0 * t / t.size
    signal = np.round(swell * np.sin(2 * np.pi * t / period + 0.3)).astype(np.int16)
    steps = np.abs(np.diff(signal.astype(np.int64)))
    for tick in (11, 23, 37):
        out = conceal(signal, {(tick, 0)}).astype(np.int64)
        edge = tick * T
        assert abs(out[edge] - out[edge - 1]) <= 1.3 * steps[edge - 1 : edge + 2].max(), tick
        assert np.abs(np.diff(out[edge - 80 : edge + 160])).max() <= 1.6 * steps.max()


def test_several_short_losses_in_a_row_stay_continuous() -> None:
    signal = harmonic(52, 1.0)
    lost = {(t, t % 2) for t in range(5, 45, 3)}
    out = conceal(signal, lost)
    assert snr_db(signal, out) > 10.0
    steps = np.abs(np.diff(signal.astype(np.int64))).max()
    assert np.abs(np.diff(out.astype(np.int64))).max() <= 1.6 * steps


def test_concealment_beats_silence_on_speech_at_5_percent_loss() -> None:
    rng = np.random.default_rng(5)
    speech = to_int16(speech_like(rng, 6.0))
    ticks = speech.size // T
    lost = {(int(t), s) for t in np.flatnonzero(rng.random(ticks) < 0.05) for s in range(2)}
    out = conceal(speech, lost)
    zeroed = speech.copy()
    for t, s in lost:
        zeroed[t * T + s * 80 : t * T + (s + 1) * 80] = 0
    truth = speech.astype(np.float64)
    mask = np.zeros(speech.size, dtype=bool)
    for t, s in lost:
        mask[t * T + s * 80 : t * T + (s + 1) * 80] = True
    plc_error = np.sum((truth[mask] - out[mask]) ** 2)
    silence_error = np.sum((truth[mask] - zeroed[mask]) ** 2)
    assert plc_error < 0.8 * silence_error


def test_the_batch_gives_what_one_concealer_per_leg_gives() -> None:
    rng = np.random.default_rng(9)
    legs = 6
    signals = [harmonic(p, 0.6) for p in (41, 50, 63, 77, 99, 118)]
    losses = rng.random((len(signals[0]) // T, legs, 2)) < 0.15
    bank = ConcealmentBank(capacity=8)
    slots = np.array([bank.add_leg() for _ in range(legs)])[::-1].copy()  # any order
    singles = [Concealer() for _ in range(legs)]
    for tick in range(losses.shape[0]):
        block = np.stack([s[tick * T : (tick + 1) * T] for s in signals])
        present = ~losses[tick]
        together = bank.process(block, slots, present)
        for leg in range(legs):
            alone = singles[leg].process(block[leg], list(present[leg]))
            assert np.array_equal(together[leg], alone), (tick, leg)
    assert bank.concealed_subframes == sum(c.concealed_subframes for c in singles) > 0


def test_a_leg_left_out_of_a_tick_hears_silence_for_it() -> None:
    bank = ConcealmentBank()
    a, b = bank.add_leg(), bank.add_leg()
    ones = np.full((2, T), 1000, np.int16)
    bank.process(ones, np.array([a, b]))
    bank.process(ones[:1], np.array([a]), np.array([[False, False]]))  # b is left out
    assert bank.concealing(a) == 160
    out = bank.process(ones, np.array([a, b]))
    assert np.array_equal(out[1], np.full(T, 1000, np.int16))
    assert bank.concealing(a) == 0


def test_slots_are_reused_and_reset() -> None:
    bank = ConcealmentBank(capacity=1)
    a = bank.add_leg()
    b = bank.add_leg()
    assert (a, b) == (0, 1) and bank.capacity == 2 and len(bank) == 2
    bank.process(np.full((1, T), 500, np.int16), np.array([a]))
    bank.remove_leg(a)
    with pytest.raises(KeyError, match="slot 0 is not an active leg"):
        bank.concealing(a)
    assert bank.add_leg() == a
    out = bank.process(np.zeros((1, T), np.int16), np.array([a]))
    assert not out.any()  # fresh history, nothing of the old leg
    bank.reset(a)
    with pytest.raises(KeyError):
        bank.reset(7)


def test_concealer_reset_forgets_the_history() -> None:
    plc = Concealer()
    plc.process(np.full(T, 800, np.int16))
    plc.reset()
    out = plc.process(np.zeros(T, np.int16), [False, False])
    assert not out.any()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b, s: b.process(np.zeros((1, T), np.float32), s[:1]), "2-D int16 array"),
        (lambda b, s: b.process(np.zeros((1, 100), np.int16), s[:1]), "160 samples per row"),
        (lambda b, s: b.process(np.zeros((2, T), np.int16), s[:1]), "one slot per block row"),
        (lambda b, s: b.process(np.zeros((2, T), np.int16), s[[0, 0]]), "appears twice"),
        (lambda b, s: b.process(np.zeros((1, T), np.int16), np.array([5])), "within 0..3"),
        (lambda b, s: b.process(np.zeros((1, T), np.int16), np.array([3])), "not active legs"),
        (
            lambda b, s: b.process(np.zeros((1, T), np.int16), s[:1], np.ones((1, 3), bool)),
            r"present must be a \(1 × 2\) bool array",
        ),
    ],
)
def test_bad_calls_are_refused_precisely(call: object, message: str) -> None:
    bank = ConcealmentBank(capacity=4)
    slots = np.array([bank.add_leg(), bank.add_leg()])
    with pytest.raises(ConcealmentError, match=message):
        call(bank, slots)  # type: ignore[operator]


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ConcealmentError, match="capacity must be at least 1"):
        ConcealmentBank(capacity=0)
    with pytest.raises(ConcealmentError, match="multiple of 80"):
        ConcealmentBank(samples_per_tick=100)
    with pytest.raises(ConcealmentError, match="1-D int16"):
        Concealer().process(np.zeros((1, T), np.int16))


def test_presence_from_bits() -> None:
    mask = presence_from_bits([0b11, 0b01, 0b10, 0])
    assert mask.tolist() == [[True, True], [True, False], [False, True], [False, False]]
    assert presence_from_bits([5], subframes=3).tolist() == [[True, False, True]]
    with pytest.raises(ConcealmentError):
        presence_from_bits([[1]])
