"""RTP sequence-number and timestamp arithmetic, and RFC 3550 A.1 source validation.

Owns the modular arithmetic of the two wrapping RTP counters (the 16-bit sequence number
and the 32-bit timestamp: "newer than", signed distance, addition) and `SequenceState`,
the per-source extended-sequence bookkeeping of RFC 3550 Appendix A.1 (probation of a new
source, wrap counting, the two-packet rule that resynchronises after a large jump) and the
loss counters of Appendix A.3 that RTCP report blocks are made from.

It must not know about packets, sockets, payload types or time: it is handed numbers and
hands back numbers and outcomes.
"""

from __future__ import annotations

from enum import Enum

SEQ_MOD = 1 << 16
SEQ_MASK = SEQ_MOD - 1
SEQ_HALF = 1 << 15
TS_MOD = 1 << 32
TS_MASK = TS_MOD - 1
TS_HALF = 1 << 31

# RFC 3550 A.1 defaults.
MAX_DROPOUT = 3000  # packets ahead of the highest seen that still count as "in order"
MAX_MISORDER = 100  # packets behind the highest seen that still count as late, not a restart
MIN_SEQUENTIAL = 2  # sequential packets needed before a new source is valid

# How many sequence numbers behind the highest one the duplicate detector remembers.
DUPLICATE_WINDOW = 64
_WINDOW_MASK = (1 << DUPLICATE_WINDOW) - 1

# RFC 3550 6.4.1: cumulative number of packets lost is a signed 24-bit field.
CUMULATIVE_LOST_MAX = 0x7FFFFF
CUMULATIVE_LOST_MIN = -0x800000


def seq_delta(a: int, b: int) -> int:
    """Signed distance a - b between two sequence numbers, in [-32768, 32767]."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= SEQ_HALF else d


def seq_is_newer(a: int, b: int) -> bool:
    """True when sequence number `a` comes after `b` (modulo 2^16, half-range rule)."""
    return 0 < ((a - b) & SEQ_MASK) < SEQ_HALF


def seq_add(a: int, n: int) -> int:
    """`a + n` modulo 2^16 (n may be negative)."""
    return (a + n) & SEQ_MASK


def ts_delta(a: int, b: int) -> int:
    """Signed distance a - b between two RTP timestamps, in [-2^31, 2^31 - 1]."""
    d = (a - b) & TS_MASK
    return d - TS_MOD if d >= TS_HALF else d


def ts_is_newer(a: int, b: int) -> bool:
    """True when timestamp `a` comes after `b` (modulo 2^32, half-range rule)."""
    return 0 < ((a - b) & TS_MASK) < TS_HALF


def ts_add(a: int, n: int) -> int:
    """`a + n` modulo 2^32 (n may be negative)."""
    return (a + n) & TS_MASK


def clamp_cumulative_lost(lost: int) -> int:
    """Clamp a loss count to the signed 24-bit range of an RTCP report block."""
    if lost > CUMULATIVE_LOST_MAX:
        return CUMULATIVE_LOST_MAX
    if lost < CUMULATIVE_LOST_MIN:
        return CUMULATIVE_LOST_MIN
    return lost


class SeqOutcome(Enum):
    """What one sequence number meant to a source's state."""

    IN_ORDER = "in-order"  # advanced the highest sequence number (possibly past a gap)
    LATE = "late"  # behind the highest one and not seen before (reordered)
    DUPLICATE = "duplicate"  # seen before (within the duplicate window)
    PROBATION = "probation"  # the source is not yet validated (A.1 probation)
    JUMP = "jump"  # a large jump; the next packet decides whether the sender restarted
    RESTARTED = "restarted"  # second packet in a row after a jump: state re-initialised


class SequenceState:
    """Extended sequence numbers and reception counters for one RTP source (RFC 3550 A.1).

    Construct it with the first sequence number heard from the source. `update(seq)`
    classifies each following packet. Counters follow RFC 3550 A.3: `received` counts
    every valid packet including late and duplicate ones, so `cumulative_lost` may be
    negative. Restarts (the two-packet rule, or `restart()` when the caller detects a
    discontinuity by other means, such as a timestamp jump) fold the counts seen so far
    into the totals, so call figures survive them.
    """

    __slots__ = (
        "_carry_expected",
        "_carry_received",
        "_expected_prior",
        "_received_prior",
        "_window",
        "bad_seq",
        "base_seq",
        "cycles",
        "max_dropout",
        "max_misorder",
        "max_seq",
        "min_sequential",
        "probation",
        "received",
    )

    def __init__(
        self,
        seq: int,
        *,
        min_sequential: int = MIN_SEQUENTIAL,
        max_dropout: int = MAX_DROPOUT,
        max_misorder: int = MAX_MISORDER,
    ) -> None:
        if not 0 <= seq <= SEQ_MASK:
            raise ValueError(f"sequence number {seq} out of range 0..65535")
        if min_sequential < 0:
            raise ValueError(f"min_sequential must be >= 0, got {min_sequential}")
        if not 0 < max_dropout < SEQ_HALF or not 0 < max_misorder < SEQ_HALF:
            raise ValueError("max_dropout and max_misorder must be within 1..32767")
        self.min_sequential = min_sequential
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self._carry_expected = 0
        self._carry_received = 0
        self._init(seq)
        self.received = 0
        # A.1: a new source starts "one before" its first packet, on probation (a
        # probation of one packet, for min_sequential 0 or 1, validates the first).
        self.max_seq = (seq - 1) & SEQ_MASK
        self.probation = max(1, min_sequential)

    def _init(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1  # so that seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._window = 1
        self.probation = 0

    # -- the A.1 update ------------------------------------------------------------

    def update(self, seq: int) -> SeqOutcome:
        """Account for one packet's sequence number and classify it."""
        udelta = (seq - self.max_seq) & SEQ_MASK
        if 0 < udelta < self.max_dropout and not self.probation:  # the usual case
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # the sequence number wrapped
            self.max_seq = seq
            self._window = ((self._window << udelta) | 1) & _WINDOW_MASK
            self.received += 1
            return SeqOutcome.IN_ORDER
        if self.probation:
            if udelta == 1:
                self.probation -= 1
            else:
                self.probation = self.min_sequential - 1
            self.max_seq = seq
            if self.probation <= 0:
                self._init(seq)
                self.received = 1
                return SeqOutcome.IN_ORDER
            return SeqOutcome.PROBATION
        if udelta == 0:
            self.received += 1
            return SeqOutcome.DUPLICATE
        if udelta < self.max_dropout:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # the sequence number wrapped
            self.max_seq = seq
            self._window = ((self._window << udelta) | 1) & _WINDOW_MASK
            self.received += 1
            return SeqOutcome.IN_ORDER
        if udelta <= SEQ_MOD - self.max_misorder:
            if seq == self.bad_seq:
                # Two sequential packets after a jump: the sender restarted.
                self.restart(seq)
                return SeqOutcome.RESTARTED
            self.bad_seq = (seq + 1) & SEQ_MASK
            return SeqOutcome.JUMP
        # Behind the highest sequence number: late or duplicate.
        back = SEQ_MOD - udelta
        self.received += 1
        if back < DUPLICATE_WINDOW:
            bit = 1 << back
            if self._window & bit:
                return SeqOutcome.DUPLICATE
            self._window |= bit
        return SeqOutcome.LATE

    def restart(self, seq: int) -> None:
        """Re-initialise with `seq` as the first packet of a new run (and count it),
        keeping the totals gathered so far. Used by the two-packet rule and by callers
        that detect a discontinuity by other means (a timestamp jump)."""
        self._carry_expected += self.expected
        self._carry_received += self.received
        self._init(seq)
        self.received = 1

    # -- derived figures (RFC 3550 A.3) ------------------------------------------

    def extended(self, seq: int) -> int:
        """The extended (cycle-counting) form of `seq`, relative to the highest seen."""
        return self.cycles + self.max_seq + seq_delta(seq, self.max_seq)

    @property
    def extended_max(self) -> int:
        """Highest extended sequence number received (RFC 3550 6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the last (re)initialisation."""
        if self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def total_expected(self) -> int:
        return self._carry_expected + self.expected

    @property
    def total_received(self) -> int:
        return self._carry_received + self.received

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received over the source's life (may be negative), unclamped."""
        return self.total_expected - self.total_received

    def interval_fraction_lost(self) -> int:
        """The 8-bit fraction lost since the previous call (RFC 3550 A.3), as sent in
        a report block (0..255); advances the "prior" marks."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)
