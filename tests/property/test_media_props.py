"""Properties of the media plane: G.711 companding and in-band DTMF detection."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hotline.media import g711
from hotline.media.dtmf import DtmfDetectorBank, InbandDigitEnded, InbandDigitStarted
from hotline.media.g711 import Codec
from hotline.media.tones import KEYPAD, dtmf_tone
from tests.unit.media.signals import detect, keys, through_ulaw, well_formed, with_noise

samples = hnp.arrays(np.int16, st.integers(1, 400), elements=st.integers(-32768, 32767))
codecs = st.sampled_from(list(Codec))


@settings(max_examples=200, deadline=None)
@given(samples, codecs)
def test_companding_is_idempotent_in_value(x: np.ndarray, codec: Codec) -> None:
    once = g711.decode(codec, g711.encode(codec, x))
    twice = g711.decode(codec, g711.encode(codec, once))
    assert np.array_equal(once, twice)


@settings(max_examples=200, deadline=None)
@given(samples, codecs)
def test_companding_preserves_order(x: np.ndarray, codec: Codec) -> None:
    order = np.argsort(x, kind="stable")
    decoded = g711.decode(codec, g711.encode(codec, x)).astype(np.int32)
    assert np.all(np.diff(decoded[order]) >= 0)


@settings(max_examples=200, deadline=None)
@given(samples, codecs)
def test_companding_picks_a_neighbouring_level(x: np.ndarray, codec: Codec) -> None:
    """The decoded value is one of the two quantised levels around the sample (or the
    extreme level when the sample is beyond it)."""
    levels = np.unique(g711.decode(codec, np.arange(256, dtype=np.uint8)).astype(np.int32))
    decoded = g711.decode(codec, g711.encode(codec, x)).astype(np.int32)
    value = x.astype(np.int32)
    above = np.searchsorted(levels, value, side="left").clip(0, levels.size - 1)
    below = (np.searchsorted(levels, value, side="right") - 1).clip(0, levels.size - 1)
    assert np.all((decoded == levels[above]) | (decoded == levels[below]))


@settings(max_examples=200, deadline=None)
@given(samples, codecs)
def test_blocks_and_their_rows_encode_alike(x: np.ndarray, codec: Codec) -> None:
    block = np.stack([x, x[::-1]])
    codes = g711.encode(codec, block)
    assert np.array_equal(codes[0], g711.encode(codec, x))
    assert np.array_equal(codes[1], g711.encode(codec, x[::-1].copy()))


press = st.tuples(
    st.sampled_from(KEYPAD),
    st.integers(45, 120),  # tone, ms
    st.integers(45, 150),  # pause after it, ms
    st.floats(-30.0, -4.0),  # low-group level, dBm0
    st.floats(-3.5, 7.5),  # twist, dB
    st.floats(-0.014, 0.014),  # low-group frequency error
    st.floats(-0.014, 0.014),  # high-group frequency error
)


@settings(max_examples=60, deadline=None)
@given(st.lists(press, min_size=1, max_size=5), st.integers(0, 159), st.integers(0, 2**32 - 1))
def test_any_keyed_sequence_within_q24_limits_is_heard_exactly(
    presses: list[tuple[str, int, int, float, float, float, float]], lead: int, seed: int
) -> None:
    parts = [np.zeros(lead, dtype=np.int16)]
    for key, on_ms, off_ms, level, twist, low_error, high_error in presses:
        parts.append(dtmf_tone(key, on_ms, level, twist, low_error, high_error))
        parts.append(np.zeros(off_ms * 8, dtype=np.int16))
    signal = np.concatenate(parts)
    noisy = through_ulaw(with_noise(np.random.default_rng(seed), signal, 30.0))
    (events,) = detect([noisy])
    assert keys(events) == "".join(p[0] for p in presses)
    assert well_formed(events)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(KEYPAD), min_size=2, max_size=8),
    st.permutations(range(8)),
    st.integers(1, 3),
)
def test_legs_are_independent_of_each_other_and_of_their_order(
    leg_keys: list[str], order: list[int], skip: int
) -> None:
    """Each leg hears its own key, whatever the row order in the block, and whichever
    other legs are present."""
    legs = len(leg_keys)
    order = [i for i in order if i < legs]
    signals = [
        np.concatenate([np.zeros(40 * i, dtype=np.int16), coded_press(k)])
        for i, k in enumerate(leg_keys)
    ]
    length = 160 * 10
    block = np.zeros((legs, length), dtype=np.int16)
    for i, signal in enumerate(signals):
        block[i, : signal.size] = signal
    bank = DtmfDetectorBank(2)
    for _ in range(skip):  # other, silent legs hold the first slots
        bank.add_leg()
    slots = np.array([bank.add_leg() for _ in range(legs)])
    started: dict[int, list[str]] = {int(s): [] for s in slots}
    ended: dict[int, list[str]] = {int(s): [] for s in slots}
    rows = np.array(order)
    for tick in range(length // 160):
        for event in bank.process(block[rows, tick * 160 : (tick + 1) * 160], slots[rows], tick):
            if isinstance(event, InbandDigitStarted):
                started[event.slot].append(event.digit)
            elif isinstance(event, InbandDigitEnded):
                ended[event.slot].append(event.digit)
    assert started == {int(slots[i]): [k] for i, k in enumerate(leg_keys)}
    assert ended == started


def coded_press(key: str) -> np.ndarray:
    return through_ulaw(dtmf_tone(key, 70, -12.0, 2.0))
