"""Mix-minus over all conferences at once: sums, saturation, gain, mute, whisper."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pytest

from hotline.media.mixer import (
    MAX_GAIN,
    Hearing,
    MixError,
    MixPlan,
    coach,
    mix_minus,
    monitor,
)

Int16 = npt.NDArray[np.int16]


def rows(*values: int, samples: int = 8) -> Int16:
    return np.array([[v] * samples for v in values], dtype=np.int16)


def reference(
    block: Int16,
    conference: list[int],
    gain: list[float] | None = None,
    matrix: dict[int, tuple[list[int], list[list[float]]]] | None = None,
) -> Int16:
    """Leg by leg, in plain Python ints and floats."""
    n, samples = block.shape
    g = gain or [1.0] * n
    out = np.zeros_like(block)
    for i in range(n):
        if conference[i] < 0:
            continue
        for s in range(samples):
            total = 0.0
            spec = (matrix or {}).get(conference[i])
            for j in range(n):
                if conference[j] != conference[i]:
                    continue
                if spec is not None:
                    members, m = spec
                    weight = m[members.index(i)][members.index(j)]
                else:
                    weight = 0.0 if i == j else 1.0
                total += weight * g[j] * int(block[j, s])
            out[i, s] = max(-32768, min(32767, round(total)))
    return out


def test_two_party_calls_each_hear_the_other() -> None:
    block = rows(100, -200, 3000, 4000)
    out = mix_minus(block, [7, 7, 9, 9])
    assert out.dtype == np.int16 and out.shape == block.shape
    assert out[:, 0].tolist() == [-200, 100, 4000, 3000]


def test_a_conference_hears_everyone_but_itself() -> None:
    block = rows(1, 10, 100, 1000, 10000)
    out = mix_minus(block, [3, 3, 3, 3, 3])
    assert out[:, 0].tolist() == [11110, 11101, 11011, 10111, 1111]


def test_sums_saturate_instead_of_wrapping() -> None:
    block = rows(30000, 30000, 30000, -30000, -30000, -30000)
    out = mix_minus(block, [0, 0, 0, 1, 1, 1])
    assert out[:, 0].tolist() == [32767] * 3 + [-32768] * 3


def test_rows_in_no_conference_get_silence_and_are_heard_by_nobody() -> None:
    block = rows(500, 600, 700)
    out = mix_minus(block, [-1, 4, 4])
    assert out[:, 0].tolist() == [0, 700, 600]
    alone = mix_minus(rows(5, 6), [1, 2])  # a conference of one hears nothing
    assert not alone.any()


def test_gain_and_mute_scale_what_others_hear() -> None:
    block = rows(1000, 2000, 3000)
    out = mix_minus(block, [1, 1, 1], gain=[0.5, 1.0, 2.0])
    assert out[:, 0].tolist() == [8000, 6500, 2500]
    muted = mix_minus(block, [1, 1, 1], muted=np.array([False, True, False]))
    assert muted[:, 0].tolist() == [3000, 4000, 1000]  # the muted leg still hears
    rounded = mix_minus(rows(3, 0), [1, 1], gain=[0.5, 1.0])
    assert rounded[1, 0] == 2  # 1.5 rounds to even


def test_many_conferences_match_the_leg_by_leg_reference() -> None:
    rng = np.random.default_rng(3)
    n = 60
    conference = rng.integers(-1, 15, n).tolist()
    gain = rng.uniform(0, 2.5, n).round(3).tolist()
    block = rng.integers(-20000, 20000, (n, 20), dtype=np.int16)
    plan = MixPlan(conference)
    # With gains the sums are float32: within one step of the exact rounding.
    weighted = plan.mix(block, gain).astype(np.int32)
    assert np.abs(weighted - reference(block, conference, gain)).max() <= 1
    assert np.array_equal(plan.mix(block), reference(block, conference))
    # The plan is reusable tick after tick.
    block2 = rng.integers(-32768, 32767, (n, 20), dtype=np.int16)
    assert np.array_equal(plan.mix(block2), reference(block2, conference))


def test_coach_whisper_is_heard_by_the_agent_only() -> None:
    caller, agent, supervisor = 0, 1, 2
    block = rows(100, 20, 3, 4000)
    hearing = coach([caller, agent, supervisor], supervisor=supervisor, agent=agent)
    out = mix_minus(block, [5, 5, 5, 8], hearing=[hearing])
    assert out[caller, 0] == 20  # the agent, not the supervisor
    assert out[agent, 0] == 103  # the caller and the whisper
    assert out[supervisor, 0] == 120  # hears both
    assert out[3, 0] == 0


def test_monitor_is_heard_by_nobody_and_barge_is_a_plain_conference() -> None:
    block = rows(100, 20, 3)
    listen = mix_minus(block, [1, 1, 1], hearing=[monitor([0, 1, 2], supervisor=2)])
    assert listen[:, 0].tolist() == [20, 100, 120]
    barge = mix_minus(block, [1, 1, 1])
    assert barge[:, 0].tolist() == [23, 103, 120]


def test_hearing_matrices_of_several_sizes_mix_with_plain_conferences() -> None:
    rng = np.random.default_rng(11)
    conference = [0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3]
    block = rng.integers(-9000, 9000, (len(conference), 16), dtype=np.int16)
    gain = rng.uniform(0.2, 1.8, len(conference)).tolist()
    whisper = coach([0, 1, 2], supervisor=2, agent=0, level=0.5)
    listen = monitor([3, 4, 5, 6], supervisor=4)
    other = coach([9, 10, 11], supervisor=9, agent=11)
    out = MixPlan(conference, [whisper, listen, other]).mix(block, gain).astype(np.int32)
    matrices = {
        0: ([0, 1, 2], [list(r) for r in whisper.matrix]),
        1: ([3, 4, 5, 6], [list(r) for r in listen.matrix]),
        3: ([9, 10, 11], [list(r) for r in other.matrix]),
    }
    assert np.abs(out - reference(block, conference, gain, matrices)).max() <= 1


@pytest.mark.parametrize(
    ("conference", "hearing", "message"),
    [
        ([[0, 1]], [], "must be 1-D"),
        ([0.5, 1.0], [], "must be integers"),
        ([0, 0, 0], [coach([0, 1], supervisor=1, agent=0)], "covers 2 of the 3 members"),
        ([0, 0, 1], [monitor([0, 1, 2], supervisor=2)], "spans several conferences"),
        ([0, 0], [monitor([0, 5], supervisor=5)], r"rows \[5\] beyond"),
        ([-1, -1], [monitor([0, 1], supervisor=1)], "in no conference"),
        (
            [0, 0, 0],
            [monitor([0, 1, 2], supervisor=2), coach([0, 1, 2], supervisor=2, agent=1)],
            "more than one hearing matrix",
        ),
    ],
)
def test_inconsistent_plans_are_refused_precisely(
    conference: list[object], hearing: list[Hearing], message: str
) -> None:
    with pytest.raises(MixError, match=message):
        MixPlan(np.array(conference), hearing)


def test_bad_hearing_matrices_and_helpers_are_refused() -> None:
    with pytest.raises(MixError, match="would hear itself"):
        Hearing((0, 1), ((1.0, 1.0), (1.0, 0.0)))
    with pytest.raises(MixError, match="must be 2 × 2"):
        Hearing((0, 1), ((0.0, 1.0),))
    with pytest.raises(MixError, match=r"within 0\.\.16\.0"):
        Hearing((0, 1), ((0.0, float("nan")), (1.0, 0.0)))
    with pytest.raises(MixError, match="lists a row twice"):
        Hearing((0, 0), ((0.0, 1.0), (1.0, 0.0)))
    with pytest.raises(MixError, match="must both be members"):
        coach([0, 1], supervisor=2, agent=0)
    with pytest.raises(MixError, match="the same row"):
        coach([0, 1], supervisor=1, agent=1)
    with pytest.raises(MixError, match="not a member"):
        monitor([0, 1], supervisor=3)


def test_bad_blocks_gains_and_flags_are_refused() -> None:
    plan = MixPlan([0, 0])
    with pytest.raises(MixError, match="2-D int16 array"):
        plan.mix(np.zeros((2, 4), np.int32))
    with pytest.raises(MixError, match="the plan is for 2 rows, the block has 3"):
        plan.mix(np.zeros((3, 4), np.int16))
    with pytest.raises(MixError, match="one value per row"):
        plan.mix(np.zeros((2, 4), np.int16), gain=[1.0])
    with pytest.raises(MixError, match=re.escape(f"within 0..{MAX_GAIN}")):
        plan.mix(np.zeros((2, 4), np.int16), gain=[1.0, -0.5])
    with pytest.raises(MixError, match="boolean flag per row"):
        plan.mix(np.zeros((2, 4), np.int16), muted=[1, 0])


def test_an_empty_block_mixes_to_an_empty_block() -> None:
    out = MixPlan(np.zeros(0, dtype=np.int64)).mix(np.zeros((0, 160), np.int16))
    assert out.shape == (0, 160) and out.dtype == np.int16
