"""Sequence/timestamp wrap arithmetic and RFC 3550 A.1 source validation."""

from __future__ import annotations

import pytest

from hotline.rtp.seq import (
    SeqOutcome,
    SequenceState,
    clamp_cumulative_lost,
    seq_add,
    seq_delta,
    seq_is_newer,
    ts_add,
    ts_delta,
    ts_is_newer,
)


def test_seq_wrap_at_65535() -> None:
    assert seq_is_newer(0, 65535)
    assert not seq_is_newer(65535, 0)
    assert seq_delta(0, 65535) == 1
    assert seq_delta(65535, 0) == -1
    assert seq_delta(5, 65530) == 11
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert not seq_is_newer(7, 7)
    assert seq_delta(7, 7) == 0


def test_seq_half_range_boundary() -> None:
    assert seq_delta(32767, 0) == 32767
    assert seq_delta(32768, 0) == -32768
    assert seq_is_newer(32767, 0)
    assert not seq_is_newer(32768, 0)


def test_timestamp_wrap_at_2_pow_32() -> None:
    top = (1 << 32) - 1
    assert ts_is_newer(0, top)
    assert not ts_is_newer(top, 0)
    assert ts_delta(80, top - 79) == 160
    assert ts_delta(top - 79, 80) == -160
    assert ts_add(top, 160) == 159
    assert ts_add(0, -160) == (1 << 32) - 160
    assert ts_delta(1 << 31, 0) == -(1 << 31)
    assert ts_delta((1 << 31) - 1, 0) == (1 << 31) - 1


def test_clamp_cumulative_lost() -> None:
    assert clamp_cumulative_lost(10) == 10
    assert clamp_cumulative_lost(-3) == -3
    assert clamp_cumulative_lost(1 << 30) == 0x7FFFFF
    assert clamp_cumulative_lost(-(1 << 30)) == -0x800000


def feed(state: SequenceState, seqs: list[int]) -> list[SeqOutcome]:
    return [state.update(s) for s in seqs]


def test_probation_then_valid() -> None:
    state = SequenceState(100)
    assert feed(state, [100, 101, 102]) == [
        SeqOutcome.PROBATION,
        SeqOutcome.IN_ORDER,
        SeqOutcome.IN_ORDER,
    ]
    # A.1: the source is (re)initialised at the packet that ends probation.
    assert state.base_seq == 101
    assert state.received == 2
    assert state.expected == 2
    assert state.cumulative_lost == 0


def test_probation_restarts_on_non_sequential() -> None:
    state = SequenceState(100)
    assert feed(state, [100, 105, 106, 107]) == [
        SeqOutcome.PROBATION,
        SeqOutcome.PROBATION,
        SeqOutcome.IN_ORDER,
        SeqOutcome.IN_ORDER,
    ]
    assert state.base_seq == 106


def test_no_probation_counts_first_packet() -> None:
    state = SequenceState(7, min_sequential=0)
    assert state.update(7) is SeqOutcome.IN_ORDER
    assert state.expected == 1
    assert state.received == 1


def test_extended_sequence_across_wrap() -> None:
    state = SequenceState(65533, min_sequential=0)
    outcomes = feed(state, [65533, 65534, 65535, 0, 1, 2])
    assert outcomes == [SeqOutcome.IN_ORDER] * 6
    assert state.cycles == 65536
    assert state.extended_max == 65536 + 2
    assert state.expected == 6
    assert state.extended(65535) == 65535  # a late packet from before the wrap
    assert state.extended(3) == 65536 + 3


def test_late_packet_before_wrap_is_late_not_jump() -> None:
    state = SequenceState(65534, min_sequential=0)
    feed(state, [65534, 0, 1])  # 65535 missing
    assert state.update(65535) is SeqOutcome.LATE
    assert state.cumulative_lost == 0
    assert state.cycles == 65536


def test_loss_and_fraction_lost() -> None:
    state = SequenceState(1000, min_sequential=0)
    feed(state, [1000, 1001, 1003, 1004])  # 1002 lost
    assert state.expected == 5
    assert state.cumulative_lost == 1
    assert state.interval_fraction_lost() == (1 << 8) // 5  # 51
    feed(state, [1005, 1006, 1007, 1008])
    assert state.interval_fraction_lost() == 0  # nothing lost in this interval
    assert state.cumulative_lost == 1


def test_duplicates_detected_and_counted_as_received() -> None:
    state = SequenceState(10, min_sequential=0)
    feed(state, [10, 11, 12])
    assert state.update(12) is SeqOutcome.DUPLICATE
    assert state.update(11) is SeqOutcome.DUPLICATE
    assert state.update(13) is SeqOutcome.IN_ORDER
    # RFC 3550 A.3 counts duplicates as received: cumulative loss goes negative.
    assert state.cumulative_lost == -2


def test_reordered_then_duplicate_of_late() -> None:
    state = SequenceState(10, min_sequential=0)
    feed(state, [10, 12])
    assert state.update(11) is SeqOutcome.LATE
    assert state.update(11) is SeqOutcome.DUPLICATE


def test_large_jump_needs_two_sequential_packets() -> None:
    state = SequenceState(100, min_sequential=0)
    feed(state, [100, 101])
    assert state.update(20000) is SeqOutcome.JUMP
    assert state.max_seq == 101  # not accepted yet
    assert state.update(20001) is SeqOutcome.RESTARTED
    assert state.base_seq == 20001
    assert state.update(20002) is SeqOutcome.IN_ORDER
    # Totals survive the restart: 2 before, 2 after.
    assert state.total_received == 4
    assert state.total_expected == 4


def test_single_stray_jump_is_ignored() -> None:
    state = SequenceState(100, min_sequential=0)
    feed(state, [100, 101])
    assert state.update(40000) is SeqOutcome.JUMP
    assert state.update(102) is SeqOutcome.IN_ORDER
    assert state.base_seq == 100


def test_dropout_boundary() -> None:
    state = SequenceState(0, min_sequential=0)
    state.update(0)
    assert state.update(2999) is SeqOutcome.IN_ORDER  # within MAX_DROPOUT
    assert state.update(2999 + 3000) is SeqOutcome.JUMP


def test_explicit_restart_keeps_totals() -> None:
    state = SequenceState(500, min_sequential=0)
    feed(state, [500, 501, 503])
    state.restart(9)
    assert state.received == 1
    assert state.base_seq == 9
    assert state.total_expected == 4 + 1
    assert state.total_received == 3 + 1
    assert state.cumulative_lost == 1


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="sequence number 70000 out of range"):
        SequenceState(70000)
    with pytest.raises(ValueError, match="min_sequential must be >= 0"):
        SequenceState(1, min_sequential=-1)
