"""The in-band DTMF detector bank against ITU-T Q.24's acceptance rules, and its API."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hotline.media import tones
from hotline.media.dtmf import (
    DigitEvent,
    DtmfConfigError,
    DtmfDetectorBank,
    DtmfDetectorConfig,
    InbandDigitEnded,
    InbandDigitStarted,
    digit_index,
)
from hotline.media.tones import KEYPAD, dtmf_tone
from tests.unit.media.signals import (
    detect,
    keys,
    through_alaw,
    through_ulaw,
    well_formed,
    with_noise,
)

MS = 8  # samples per millisecond


def coded(signal: np.ndarray) -> np.ndarray:
    return through_ulaw(signal.astype(np.int16))


def silence(ms: float) -> np.ndarray:
    return np.zeros(round(ms * MS), dtype=np.int16)


def aligned(offset: int, *parts: np.ndarray) -> np.ndarray:
    """Parts joined after `offset` samples of silence (to vary alignment with ticks)."""
    return np.concatenate([np.zeros(offset, dtype=np.int16), *parts])


# --- what is accepted --------------------------------------------------------------


def test_every_key_at_nominal_frequencies_is_reported_once_with_its_edges() -> None:
    lead = 800
    signals = [coded(dtmf_tone(key, 100, -10.0, 2.0)) for key in KEYPAD]
    results = detect(signals, lead=lead)
    for key, events in zip(KEYPAD, results, strict=True):
        assert keys(events) == key
        assert well_formed(events)
        started, ended = events
        assert isinstance(started, InbandDigitStarted) and isinstance(ended, InbandDigitEnded)
        assert abs(started.start_sample - lead) <= 6 * MS
        assert abs(ended.end_sample - (lead + 100 * MS)) <= 6 * MS
        assert ended.start_sample == started.start_sample and not ended.suppressed
        # Reported about 35 ms after the tone began, well before it ended.
        assert lead + 25 * MS <= started.detected_sample <= lead + 40 * MS


@pytest.mark.parametrize("offset", [-0.015, 0.015])
def test_frequencies_within_1_5_percent_are_accepted(offset: float) -> None:
    signals = []
    for key in KEYPAD:
        signals.append(coded(dtmf_tone(key, 60, -10.0, 0.0, low_offset=offset)))
        signals.append(coded(dtmf_tone(key, 60, -10.0, 0.0, high_offset=offset)))
        signals.append(coded(dtmf_tone(key, 60, -10.0, 0.0, offset, offset)))
        signals.append(coded(dtmf_tone(key, 60, -10.0, 0.0, offset, -offset)))
    heard = [keys(events) for events in detect(signals)]
    assert heard == [key for key in KEYPAD for _ in range(4)]


@pytest.mark.parametrize("offset", [-0.035, 0.035])
def test_frequencies_3_5_percent_off_are_rejected(offset: float) -> None:
    signals = []
    for key in KEYPAD:
        signals.append(coded(dtmf_tone(key, 200, -10.0, 0.0, low_offset=offset)))
        signals.append(coded(dtmf_tone(key, 200, -10.0, 0.0, high_offset=offset)))
        signals.append(coded(dtmf_tone(key, 200, -10.0, 0.0, offset, offset)))
    assert [keys(events) for events in detect(signals)] == [""] * len(signals)


def test_tones_of_40_ms_are_accepted_at_any_alignment() -> None:
    signals = [
        aligned(offset, coded(dtmf_tone(key, 40, -10.0, 2.0)))
        for key in KEYPAD
        for offset in range(0, 160, 20)
    ]
    assert [keys(events) for events in detect(signals)] == [k for k in KEYPAD for _ in range(8)]


@pytest.mark.parametrize("duration_ms", [20, 23])
def test_tones_shorter_than_23_ms_are_rejected_at_any_alignment(duration_ms: int) -> None:
    signals = [
        aligned(offset, coded(dtmf_tone(key, duration_ms, -10.0, 2.0)))
        for key in KEYPAD
        for offset in range(0, 160, 20)
    ]
    assert [keys(events) for events in detect(signals)] == [""] * len(signals)


@pytest.mark.parametrize(
    ("twist_db", "heard"), [(8.0, True), (-4.0, True), (10.0, False), (-6.0, False)]
)
def test_twist_limits(twist_db: float, heard: bool) -> None:
    # Positive twist: the high-group tone is weaker ("normal"); negative: stronger.
    low_level = -8.0 if twist_db > 0 else -14.0
    signals = [coded(dtmf_tone(key, 80, low_level, twist_db)) for key in KEYPAD]
    assert [keys(events) for events in detect(signals)] == (list(KEYPAD) if heard else [""] * 16)


@pytest.mark.parametrize(("level", "heard"), [(-36.0, True), (-3.0, True), (-45.0, False)])
def test_level_limits_per_tone(level: float, heard: bool) -> None:
    signals = [coded(dtmf_tone(key, 80, level, 0.0)) for key in KEYPAD]
    assert [keys(events) for events in detect(signals)] == (list(KEYPAD) if heard else [""] * 16)


@pytest.mark.parametrize("dropout_at_ms", [20, 45, 70])
def test_a_10_ms_dropout_inside_a_100_ms_tone_gives_one_key(dropout_at_ms: int) -> None:
    signals = []
    for key in KEYPAD:
        tone = dtmf_tone(key, 100, -10.0, 2.0).copy()
        tone[dropout_at_ms * MS : (dropout_at_ms + 10) * MS] = 0
        signals.append(coded(tone))
    results = detect(signals)
    assert [keys(events) for events in results] == list(KEYPAD)
    assert all(len(events) == 2 for events in results)


def test_two_40_ms_tones_40_ms_apart_are_two_keys() -> None:
    signals = []
    for i, key in enumerate(KEYPAD):
        other = KEYPAD[(i + 5) % 16]
        for second in (key, other):
            for offset in (0, 70):
                signals.append(
                    aligned(
                        offset,
                        coded(dtmf_tone(key, 40, -10.0, 2.0)),
                        silence(40),
                        coded(dtmf_tone(second, 40, -10.0, 2.0)),
                    )
                )
    results = detect(signals)
    expected = [
        key + second
        for i, key in enumerate(KEYPAD)
        for second in (key, KEYPAD[(i + 5) % 16])
        for _ in range(2)
    ]
    assert [keys(events) for events in results] == expected
    assert all(well_formed(events) for events in results)


def test_keys_are_detected_in_white_noise_at_15_db_snr() -> None:
    rng = np.random.default_rng(15)
    signals = []
    for key in KEYPAD:
        for level in (-10.0, -25.0):
            press = np.concatenate([silence(100), dtmf_tone(key, 60, level, 2.0), silence(100)])
            signals.append(through_ulaw(with_noise(rng, press, 15.0)))
    assert [keys(events) for events in detect(signals)] == [k for k in KEYPAD for _ in range(2)]


def keyed_in_noise(
    presses: list[tuple[str, int, int, float, float, float, float]], lead: int, seed: int
) -> np.ndarray:
    """Presses (key, on ms, off ms, level dBm0, twist dB, low and high frequency errors)
    after `lead` samples, with white noise 30 dB below the whole signal, through µ-law:
    the recipe of the property test for keyed sequences."""
    parts = [np.zeros(lead, dtype=np.int16)]
    for key, on_ms, off_ms, level, twist, low_error, high_error in presses:
        parts.append(dtmf_tone(key, on_ms, level, twist, low_error, high_error))
        parts.append(silence(off_ms))
    return through_ulaw(with_noise(np.random.default_rng(seed), np.concatenate(parts), 30.0))


def test_a_quiet_press_before_two_loud_ones_of_the_same_key_is_heard() -> None:
    """Found by hypothesis. The loud presses set the noise floor (30 dB below the whole
    signal), so the quiet one's high tone (−34 dBm0) is measured a few hertz differently
    in each window; a drift limit blind to that noise broke its run of hits every two or
    three windows and the press was lost ("11" for "111")."""
    signal = keyed_in_noise(
        [
            ("1", 45, 45, -29.0, 5.0, 0.0, 0.0),
            ("1", 45, 45, -4.0, 0.0, 0.0, 0.0),
            ("1", 45, 45, -4.0, 0.0, 0.0, 0.0),
        ],
        lead=0,
        seed=0,
    )
    (events,) = detect([signal])
    assert keys(events) == "111"
    assert well_formed(events)
    assert [e.start_sample for e in events if isinstance(e, InbandDigitStarted)] == pytest.approx(
        [160, 160 + 90 * MS, 160 + 180 * MS], abs=6 * MS
    )


def test_a_quiet_press_with_its_high_tone_off_nominal_in_noise_is_heard() -> None:
    """The same noise floor against a quiet press whose high tone is 0.86 % high: its
    second-harmonic limit drops by the window's response 25 Hz off the bin, below the
    noise every bin holds, and a purity check without that floor refused one window in
    the middle of the press, splitting its hits into runs of three."""
    signal = keyed_in_noise(
        [
            ("6", 70, 61, -5.7, -3.1, -0.0115, -0.0111),
            ("#", 50, 45, -27.0, 3.7, -0.0007, 0.0086),
        ],
        lead=65,
        seed=2183967656,
    )
    (events,) = detect([signal])
    assert keys(events) == "6#"
    assert well_formed(events)


def test_a_dialled_number_at_a_brisk_pace() -> None:
    number = "0412345678#*9ABCD"
    rng = np.random.default_rng(3)
    signal = tones.dtmf_sequence(number, on_ms=45, off_ms=45, level_dbm0=-12.0, twist_db=3.0)
    noisy = through_ulaw(with_noise(rng, signal, 25.0))
    (events,) = detect([noisy])
    assert keys(events) == number
    assert well_formed(events)


def test_alaw_audio_and_float_blocks_work_alike() -> None:
    press = dtmf_tone("7", 80, -12.0, 2.0)
    assert [keys(e) for e in detect([through_alaw(press)])] == ["7"]
    bank = DtmfDetectorBank(2)
    a, b = bank.add_leg(), bank.add_leg()
    block = np.zeros((2, 160 * 8), dtype=np.int16)
    block[:, 160 : 160 + press.size] = through_ulaw(press)
    int_events, float_events = [], []
    for tick in range(8):
        chunk = block[:, tick * 160 : (tick + 1) * 160]
        for event in bank.process(chunk[:1], [a], tick):
            int_events.append(event)
        for event in bank.process(chunk[1:].astype(np.float32), [b], tick):
            float_events.append(event)
    assert keys(int_events) == keys(float_events) == "7"
    assert int_events == [dataclasses.replace(e, slot=a) for e in float_events]


def test_a_long_press_is_one_key() -> None:
    (events,) = detect([coded(dtmf_tone("5", 3000, -10.0, 2.0))])
    assert keys(events) == "5" and len(events) == 2


def test_30_ms_ticks() -> None:
    bank = DtmfDetectorBank(1, samples_per_tick=240)
    slot = bank.add_leg()
    signal = np.concatenate([silence(30), coded(dtmf_tone("9", 70, -10.0, 2.0)), silence(90)])
    events = []
    for tick in range(signal.size // 240):
        events += bank.process(signal[None, tick * 240 : (tick + 1) * 240], [slot], tick)
    assert keys(events) == "9" and well_formed(events)
    started = events[0]
    assert isinstance(started, InbandDigitStarted)
    assert abs(started.start_sample - 240) <= 6 * MS  # on the 240-sample tick timeline


# --- many legs ---------------------------------------------------------------------


def test_many_legs_with_different_keys_in_the_same_tick() -> None:
    bank = DtmfDetectorBank(4)  # grows as legs are added
    slots = np.array([bank.add_leg() for _ in range(48)])
    assert bank.capacity >= 48 and len(bank) == 48
    block = np.zeros((48, 160 * 10), dtype=np.int16)
    for i in range(48):
        block[i, 320 : 320 + 640] = coded(dtmf_tone(KEYPAD[i % 16], 80, -10.0, 2.0))
    started: dict[int, str] = {}
    ticks_of_start: set[int] = set()
    for tick in range(10):
        events = bank.process(block[:, tick * 160 : (tick + 1) * 160], slots, tick)
        assert [e.slot for e in events] == sorted(e.slot for e in events)
        for event in events:
            if isinstance(event, InbandDigitStarted):
                started[event.slot] = event.digit
                ticks_of_start.add(tick)
    assert started == {int(slots[i]): KEYPAD[i % 16] for i in range(48)}
    assert len(ticks_of_start) == 1  # all in the same tick


def test_the_order_of_slots_in_a_block_does_not_matter() -> None:
    signals = [coded(dtmf_tone(KEYPAD[i], 60, -10.0, 2.0)) for i in range(6)]
    block = np.zeros((6, 160 * 8), dtype=np.int16)
    for i, signal in enumerate(signals):
        block[i, 160 : 160 + signal.size] = signal
    bank = DtmfDetectorBank(6)
    slots = np.array([bank.add_leg() for _ in range(6)])
    order = np.array([4, 1, 5, 0, 3, 2])
    heard: dict[int, str] = {}
    for tick in range(8):
        chunk = block[order, tick * 160 : (tick + 1) * 160]
        for event in bank.process(chunk, slots[order], tick):
            if isinstance(event, InbandDigitStarted):
                heard[event.slot] = event.digit
    assert heard == {int(slots[i]): KEYPAD[i] for i in range(6)}


def test_legs_come_and_go_between_ticks() -> None:
    bank = DtmfDetectorBank(2)
    a, b = bank.add_leg(), bank.add_leg()
    press = coded(dtmf_tone("3", 100, -10.0, 2.0))
    audio = {a: np.concatenate([silence(20), press, silence(200)])}
    events: list[DigitEvent] = []

    def chunk(slot: int, tick: int) -> np.ndarray:
        signal = audio.get(slot, np.zeros(0, dtype=np.int16))
        out = np.zeros(160, dtype=np.int16)
        part = signal[tick * 160 : (tick + 1) * 160]
        out[: part.size] = part
        return out

    live = [a, b]
    for tick in range(30):
        if tick == 3:
            c = bank.add_leg()  # joins mid-call, starts pressing "6" at once
            audio[c] = np.concatenate(
                [np.zeros(tick * 160, dtype=np.int16), coded(dtmf_tone("6", 80, -10.0, 2.0))]
            )
            live.append(c)
        if tick == 4:
            assert bank.ongoing(a) == "3"
            assert bank.remove_leg(b) is None  # silent leg: nothing was sounding
            live.remove(b)
        block = np.stack([chunk(slot, tick) for slot in live])
        events += bank.process(block, live, tick)
    assert [(e.slot, e.digit) for e in events if isinstance(e, InbandDigitStarted)] == [
        (a, "3"),
        (c, "6"),
    ]
    assert bank.ongoing(a) is None
    # A freed slot is handed out again, fresh.
    d = bank.add_leg()
    assert d == b
    assert bank.ongoing(d) is None


def test_removing_a_leg_mid_press_ends_the_key() -> None:
    bank = DtmfDetectorBank(1)
    slot = bank.add_leg()
    press = np.concatenate([silence(20), coded(dtmf_tone("8", 300, -10.0, 2.0))])
    events = []
    for tick in range(6):
        events += bank.process(press[None, tick * 160 : (tick + 1) * 160], [slot], tick)
    assert keys(events) == "8"
    ended = bank.remove_leg(slot)
    assert isinstance(ended, InbandDigitEnded)
    assert ended.digit == "8" and ended.start_sample == events[0].start_sample
    assert not ended.suppressed
    with pytest.raises(KeyError, match="slot 0 is not an active leg"):
        bank.ongoing(slot)


def test_a_leg_left_out_of_ticks_counts_as_silent_meanwhile() -> None:
    bank = DtmfDetectorBank(1)
    slot = bank.add_leg()
    press = coded(dtmf_tone("2", 400, -10.0, 2.0))
    events = []
    for tick in range(4):
        events += bank.process(press[None, tick * 160 : (tick + 1) * 160], [slot], tick)
    assert keys(events) == "2" and bank.ongoing(slot) == "2"
    # Ticks 4-6 skipped; the same tone continues at tick 7: the gap ended the first press.
    events += bank.process(press[None, 7 * 160 : 8 * 160], [slot], 7)
    assert isinstance(events[-1], InbandDigitEnded) and events[-1].digit == "2"
    for tick in range(8, 12):
        events += bank.process(press[None, tick * 160 : (tick + 1) * 160], [slot], tick)
    assert keys(events) == "22"


# --- counting once with RFC 4733 -----------------------------------------------------


def run_one(
    bank: DtmfDetectorBank, slot: int, signal: np.ndarray, first_tick: int = 0
) -> list[DigitEvent]:
    events: list[DigitEvent] = []
    for i in range(signal.size // 160):
        events += bank.process(signal[None, i * 160 : (i + 1) * 160], [slot], first_tick + i)
    return events


def test_suppress_before_detection_drops_the_press() -> None:
    bank = DtmfDetectorBank(1)
    slot = bank.add_leg()
    bank.suppress(slot, until_sample=2000, digit="4")
    signal = np.concatenate([silence(20), coded(dtmf_tone("4", 100, -10.0, 2.0)), silence(200)])
    assert run_one(bank, slot, signal) == []
    # A later press of the same key (starting after until_sample) counts.
    later = np.concatenate([coded(dtmf_tone("4", 100, -10.0, 2.0)), silence(200)])
    assert keys(run_one(bank, slot, later, first_tick=signal.size // 160)) == "4"


def test_suppress_of_another_key_or_an_earlier_time_changes_nothing() -> None:
    signal = np.concatenate([silence(20), coded(dtmf_tone("4", 100, -10.0, 2.0)), silence(200)])
    bank = DtmfDetectorBank(2)
    a, b = bank.add_leg(), bank.add_leg()
    bank.suppress(a, until_sample=5000, digit="5")
    bank.suppress(b, until_sample=100)  # any key, but only tones starting before sample 100
    assert keys(run_one(bank, a, signal)) == "4"
    assert keys(run_one(bank, b, signal)) == "4"


def test_suppress_after_the_start_marks_the_end() -> None:
    bank = DtmfDetectorBank(1)
    slot = bank.add_leg()
    signal = np.concatenate([silence(20), coded(dtmf_tone("#", 150, -10.0, 2.0)), silence(200)])
    first = run_one(bank, slot, signal[: 4 * 160])
    assert keys(first) == "#"
    bank.suppress(slot, until_sample=first[0].start_sample + 1)  # any key
    rest = []
    for tick in range(4, signal.size // 160):
        rest += bank.process(signal[None, tick * 160 : (tick + 1) * 160], [slot], tick)
    assert len(rest) == 1
    assert isinstance(rest[0], InbandDigitEnded) and rest[0].suppressed


# --- refusals ------------------------------------------------------------------------


def test_malformed_calls_are_refused_with_precise_messages() -> None:
    bank = DtmfDetectorBank(2)
    slot = bank.add_leg()
    block = np.zeros((1, 160), dtype=np.int16)
    with pytest.raises(
        ValueError, match=r"block must be \(legs x 160\) samples, got shape \(1, 80\)"
    ):
        bank.process(np.zeros((1, 80), dtype=np.int16), [slot], 0)
    with pytest.raises(ValueError, match="slots must list one slot per block row: 1 rows"):
        bank.process(block, [slot, slot], 0)
    with pytest.raises(TypeError, match="block must be int16 or float samples, got int32"):
        bank.process(block.astype(np.int32), [slot], 0)
    with pytest.raises(KeyError, match="slot 1 is not an active leg"):
        bank.process(block, [1], 0)
    with pytest.raises(KeyError, match="slot 7 is not an active leg"):
        bank.process(block, [7], 0)
    other = bank.add_leg()
    with pytest.raises(ValueError, match=f"slot {slot} appears more than once in slots"):
        bank.process(np.zeros((2, 160), dtype=np.int16), [slot, slot], 0)
    bank.process(np.zeros((2, 160), dtype=np.int16), [slot, other], 5)
    with pytest.raises(
        ValueError, match=f"tick_index 5 for slot {slot} is not after its last tick 5"
    ):
        bank.process(block, [slot], 5)
    with pytest.raises(ValueError, match="not a DTMF key: 'X'"):
        bank.suppress(slot, 100, "X")
    with pytest.raises(KeyError, match="slot 9 is not an active leg"):
        bank.remove_leg(9)
    assert bank.process(np.zeros((0, 160), dtype=np.int16), [], 6) == []
    with pytest.raises(ValueError, match="capacity must be at least 1, got 0"):
        DtmfDetectorBank(0)
    with pytest.raises(
        ValueError, match="samples_per_tick must be a positive multiple of 40, got 100"
    ):
        DtmfDetectorBank(1, samples_per_tick=100)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_level_dbm0", -70.0, "min_level_dbm0 must be between -60 and 0, got -70.0"),
        ("max_normal_twist_db", 31.0, "max_normal_twist_db must be between 0 and 30 dB, got 31.0"),
        (
            "frequency_tolerance",
            0.05,
            "frequency_tolerance must be between 0.005 and 0.04, got 0.05",
        ),
        ("min_tone_ratio", 0.1, "min_tone_ratio must be between 0.3 and 1.0, got 0.1"),
        ("max_harmonic_db", 3.0, "max_harmonic_db must be between -40 and 0, got 3.0"),
        ("min_windows", 0, "min_windows must be between 1 and 40, got 0"),
        ("end_windows", 41, "end_windows must be between 1 and 40, got 41"),
    ],
)
def test_config_values_out_of_range(field: str, value: float, message: str) -> None:
    with pytest.raises(DtmfConfigError, match=message):
        DtmfDetectorConfig(**{field: value})  # type: ignore[arg-type]


def test_config_changes_the_rules() -> None:
    press = coded(dtmf_tone("1", 80, -40.0, 0.0))
    assert keys(detect([press])[0]) == "1"
    strict = DtmfDetectorConfig(min_level_dbm0=-35.0)
    assert keys(detect([press], strict)[0]) == ""


def test_digit_index() -> None:
    assert [digit_index(k) for k in "123A456B789C*0#D"] == list(range(16))
    assert digit_index("a") == 3
    with pytest.raises(ValueError, match="not a DTMF key: '11'"):
        digit_index("11")
