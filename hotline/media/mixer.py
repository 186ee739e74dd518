"""Mix-minus for every conference at once: a few numpy operations over the tick's block.

Owns the arithmetic that turns the decoded inbound audio of all legs — a (legs × samples)
int16 block, one row per leg — into each leg's outbound audio: the sum of what the
*other* members of its conference say, saturated to int16. Two-party calls are
conferences of two (each hears the other), consults and conferences are larger ones.

How (`MixPlan.mix`), for the whole block at once. The plan sorts the rows by
conference once and, for every conference size k, keeps an (m × k) array of the rows of
its m conferences of that size. Each tick, per size:

* k = 2, the bulk (two-party calls): each row gets its partner's row — two gathers.
* k ≥ 3: the (m × k × samples) rows are gathered, summed over the members in int32,
  and each member's own row subtracted from its conference's sum.

then saturation to [−32768, 32767] (`np.clip`), never wrap-around. So a tick costs a
handful of numpy calls per distinct conference size, whatever the number of
conferences. (One grouped sum over the sorted rows — ``np.add.reduceat``, or a
cumulative sum differenced at the group edges — does the same in one call, but measured
10 and 25 times slower for 1100 legs in 550 small groups.)
With gains other than 0 and 1 the weighted rows are float32 and rounded to nearest at
the end, within one step of exact rounding; otherwise everything is exact integers.

Whisper (coach) and listen (monitor) do not fit "everyone hears everyone else". A
conference can instead carry a `Hearing`: a small k × k matrix whose entry (i, j) is
how loudly member i hears member j (the talker gain applies on top; the diagonal must
be 0, nobody hears themselves). `coach` builds the matrix for a supervisor heard only by
the agent, `monitor` for a supervisor heard by nobody; barge-in is a plain conference.
All conferences with matrices of the same size are mixed by one batched ``np.matmul``
(m × k × k @ m × k × samples), so a tick costs one numpy call per distinct size, not one
per conference.

A leg whose conference id is negative is in no conference: its output is silence and
nobody hears it. That is how the engine holds a party — it leaves the mix, and the
engine plays it music instead — and how a leg is parked during a transfer.

The gain is the talker's: it scales what *others* hear from that leg. A listener's
volume, hold music, prompts and tones are the engine's business, as is which row of the
block belongs to which leg. This module must not know about RTP, codecs, SIP dialogs,
agents or the clock: it maps a block of samples to a block of samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]

INT16_MIN = -32768
INT16_MAX = 32767
MAX_GAIN = 16.0  # +24 dB: talker gains above this are refused as a mistake


class MixError(ValueError):
    """A mix plan or a block handed to it is inconsistent; the message says how."""


@dataclass(frozen=True, slots=True)
class Hearing:
    """Who hears whom in one conference: `rows` are the block rows of its members, and
    ``matrix[i][j]`` is the gain with which member ``rows[i]`` hears member ``rows[j]``.

    The matrix must be square, as large as `rows`, finite, non-negative, at most
    `MAX_GAIN`, and zero on its diagonal. The rows must be every member of one
    conference (`MixPlan` checks that against the conference ids).
    """

    rows: tuple[int, ...]
    matrix: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        k = len(self.rows)
        if k < 2:
            raise MixError(f"a hearing matrix needs at least 2 members, got {k}")
        if len(set(self.rows)) != k:
            raise MixError(f"a hearing matrix lists a row twice: {self.rows}")
        if any(row < 0 for row in self.rows):
            raise MixError(f"block rows must be >= 0, got {self.rows}")
        if len(self.matrix) != k or any(len(line) != k for line in self.matrix):
            raise MixError(f"a hearing matrix for {k} members must be {k} × {k}")
        for i, line in enumerate(self.matrix):
            for j, value in enumerate(line):
                if not (0.0 <= value <= MAX_GAIN):  # also refuses NaN
                    raise MixError(
                        f"hearing gain of member {i} for member {j} must be within"
                        f" 0..{MAX_GAIN}, got {value}"
                    )
                if i == j and value != 0.0:
                    raise MixError(
                        f"member {i} would hear itself (diagonal gain {value}); it must be 0"
                    )


def _matrix(k: int, hears: dict[tuple[int, int], float]) -> tuple[tuple[float, ...], ...]:
    """Everyone hears everyone else at unity, except the pairs in `hears`."""
    return tuple(
        tuple(0.0 if i == j else hears.get((i, j), 1.0) for j in range(k)) for i in range(k)
    )


def coach(rows: Sequence[int], supervisor: int, agent: int, *, level: float = 1.0) -> Hearing:
    """Whisper: the supervisor (a row among `rows`) hears everyone; only the agent hears
    the supervisor, at `level`; the other members hear each other as usual."""
    members = tuple(rows)
    if supervisor not in members or agent not in members:
        raise MixError(
            f"supervisor row {supervisor} and agent row {agent} must both be members {members}"
        )
    if supervisor == agent:
        raise MixError(f"the supervisor and the agent are the same row {agent}")
    s, a = members.index(supervisor), members.index(agent)
    hears = {(i, s): 0.0 for i in range(len(members)) if i != s}
    hears[(a, s)] = level
    return Hearing(members, _matrix(len(members), hears))


def monitor(rows: Sequence[int], supervisor: int) -> Hearing:
    """Listen: the supervisor hears everyone and nobody hears the supervisor."""
    members = tuple(rows)
    if supervisor not in members:
        raise MixError(f"supervisor row {supervisor} is not a member of {members}")
    s = members.index(supervisor)
    return Hearing(members, _matrix(len(members), {(i, s): 0.0 for i in range(len(members))}))


class MixPlan:
    """The conference layout of a block, worked out once and reused every tick until the
    layout changes: `conference[r]` is the conference of block row r (negative: none),
    `hearing` the conferences that are not plain mix-minus.

    `mix` may be called with a different block each tick as long as its rows keep the
    same meaning.
    """

    def __init__(self, conference: npt.ArrayLike, hearing: Sequence[Hearing] = ()) -> None:
        ids = np.asarray(conference)
        if ids.ndim != 1:
            raise MixError(f"conference ids must be 1-D (one per row), got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise MixError(f"conference ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        self.rows = int(ids.size)
        self.conference: npt.NDArray[np.int64] = ids.copy()
        self.conference.setflags(write=False)
        order = np.argsort(ids, kind="stable")
        order = order[ids[order] >= 0].astype(np.intp)
        sorted_ids = ids[order]
        first = np.ones(sorted_ids.size, dtype=np.bool_)
        if sorted_ids.size > 1:
            first[1:] = sorted_ids[1:] != sorted_ids[:-1]
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, sorted_ids.size))
        unique_ids = sorted_ids[starts]
        self.conferences = int(starts.size)
        special = self._check_hearing(ids, unique_ids, sizes, hearing)
        plain = ~np.isin(unique_ids, np.fromiter(special, dtype=np.int64, count=len(special)))
        self._plain: list[tuple[int, IndexArray]] = []
        for k in np.unique(sizes[plain & (sizes >= 2)]).tolist():
            group_starts = starts[plain & (sizes == k)]
            members = order[group_starts[:, None] + np.arange(k)]
            self._plain.append((int(k), members.astype(np.intp)))
        by_size: dict[int, tuple[list[tuple[int, ...]], list[tuple[tuple[float, ...], ...]]]] = {}
        for spec in hearing:
            rows_list, matrices = by_size.setdefault(len(spec.rows), ([], []))
            rows_list.append(spec.rows)
            matrices.append(spec.matrix)
        self._hearing: list[tuple[IndexArray, Float32Array]] = [
            (np.array(rows_list, dtype=np.intp), np.array(matrices, dtype=np.float32))
            for _k, (rows_list, matrices) in sorted(by_size.items())
        ]

    def _check_hearing(
        self,
        ids: npt.NDArray[np.int64],
        unique_ids: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.intp],
        hearing: Sequence[Hearing],
    ) -> set[int]:
        """Check every hearing matrix against the layout; return their conferences."""
        n = self.rows
        seen: set[int] = set()
        special: set[int] = set()
        for number, spec in enumerate(hearing):
            if not isinstance(spec, Hearing):
                raise MixError(f"hearing[{number}] must be a Hearing, got {type(spec).__name__}")
            rows = spec.rows
            bad = [r for r in rows if r >= n]
            if bad:
                raise MixError(f"hearing[{number}] names rows {bad} beyond the block's {n} rows")
            twice = seen.intersection(rows)
            if twice:
                raise MixError(f"rows {sorted(twice)} are in more than one hearing matrix")
            seen.update(rows)
            conf = {int(ids[r]) for r in rows}
            if len(conf) != 1:
                raise MixError(
                    f"hearing[{number}] spans several conferences {sorted(conf)}:"
                    f" its rows {rows} must all share one"
                )
            (cid,) = conf
            if cid < 0:
                raise MixError(f"hearing[{number}] rows {rows} are in no conference (id {cid})")
            members = int(sizes[int(np.searchsorted(unique_ids, cid))])
            if members != len(rows):
                raise MixError(
                    f"hearing[{number}] covers {len(rows)} of the {members} members of"
                    f" conference {cid}; it must name every member"
                )
            special.add(cid)
        return special

    def mix(
        self,
        block: Int16Array,
        gain: npt.ArrayLike | None = None,
        muted: npt.ArrayLike | None = None,
    ) -> Int16Array:
        """Each row's outbound audio: its conference's sum without itself (or what its
        hearing matrix says), saturated to int16. `gain`: per-row talker gain (default
        1), within 0..`MAX_GAIN`; `muted`: per-row flag, a muted row is heard by nobody.
        Returns a new (rows × samples) int16 array; rows in no conference are silent."""
        if not isinstance(block, np.ndarray) or block.dtype != np.int16 or block.ndim != 2:
            shape = getattr(block, "shape", None)
            dtype = getattr(block, "dtype", type(block).__name__)
            raise MixError(f"the block must be a 2-D int16 array, got {dtype} {shape}")
        n, samples = block.shape
        if n != self.rows:
            raise MixError(f"the plan is for {self.rows} rows, the block has {n}")
        weights = self._weights(gain, muted)
        out = np.zeros((n, samples), dtype=np.int16)
        if weights is None or bool(np.all((weights == 0.0) | (weights == 1.0))):
            source = block
            if weights is not None and not bool(weights.all()):
                source = block.copy()
                source[weights == 0.0] = 0
            self._mix_exact(source, out)
            heard: Float32Array | None = None
        else:
            heard = np.multiply(block, weights[:, None], dtype=np.float32)
            self._mix_weighted(heard, out)
            source = block
        for rows, matrices in self._hearing:
            talk = heard[rows] if heard is not None else source[rows].astype(np.float32)
            out[rows] = _saturate(np.matmul(matrices, talk))
        return out

    def _mix_exact(self, source: Int16Array, out: Int16Array) -> None:
        """Mix-minus of unweighted rows, in integers."""
        for k, members in self._plain:
            if k == 2:
                first, second = members[:, 0], members[:, 1]
                out[first] = source[second]
                out[second] = source[first]
                continue
            rows = source[members].astype(np.int32)  # m × k × samples
            total = rows.sum(axis=1, keepdims=True, dtype=np.int32)
            np.subtract(total, rows, out=rows)
            np.clip(rows, INT16_MIN, INT16_MAX, out=rows)
            out[members] = rows

    def _mix_weighted(self, heard: Float32Array, out: Int16Array) -> None:
        """Mix-minus of rows already weighted by their talker gains, in float32."""
        for k, members in self._plain:
            rows = heard[members]  # m × k × samples
            # A pair hears each other: reversing the member axis is the mix-minus.
            mixed = rows[:, ::-1] if k == 2 else rows.sum(axis=1, keepdims=True) - rows
            out[members] = _saturate(mixed)

    def _weights(
        self, gain: npt.ArrayLike | None, muted: npt.ArrayLike | None
    ) -> Float32Array | None:
        """The talker gain per row (None: unity for every row)."""
        if gain is None and muted is None:
            return None
        n = self.rows
        if gain is None:
            weights = np.ones(n, dtype=np.float32)
        else:
            g = np.asarray(gain, dtype=np.float64)
            if g.shape != (n,):
                raise MixError(f"gain must have one value per row ({n}), got shape {g.shape}")
            ok = (g >= 0.0) & (g <= MAX_GAIN)  # also refuses NaN
            if not bool(ok.all()):
                raise MixError(f"gains must be within 0..{MAX_GAIN}, got {g[~ok][:5].tolist()}")
            weights = g.astype(np.float32)
        if muted is not None:
            m = np.asarray(muted)
            if m.shape != (n,) or m.dtype != np.bool_:
                raise MixError(
                    f"muted must be a boolean flag per row ({n}), got {m.dtype} {m.shape}"
                )
            weights[m] = 0.0
        return weights


def _saturate(values: Float32Array) -> Int16Array:
    """Round to nearest and saturate to int16."""
    rounded = np.rint(values)
    np.clip(rounded, INT16_MIN, INT16_MAX, out=rounded)
    return rounded.astype(np.int16)


def mix_minus(
    block: Int16Array,
    conference: npt.ArrayLike,
    gain: npt.ArrayLike | None = None,
    muted: npt.ArrayLike | None = None,
    hearing: Sequence[Hearing] = (),
) -> Int16Array:
    """One-off `MixPlan(conference, hearing).mix(block, gain, muted)`; keep a plan
    instead when the layout stays the same from tick to tick."""
    return MixPlan(conference, hearing).mix(block, gain, muted)
