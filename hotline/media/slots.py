"""Slot bookkeeping for the per-leg banks of the media tick (DTMF detectors, concealment).

Owns the part every bank shares: legs get the lowest free row of the bank's arrays
(`add_leg`), rows are given back (`_release`), the arrays double when the bank is full,
and a slot can be checked. A bank subclasses `SlotBank`, keeps its own per-leg numpy
arrays, and implements `_grow(capacity)` (extend those arrays; the rows beyond the old
capacity are new) and `_reset(slot)` (fresh state for one row).

Must not know: what the rows hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_Item = TypeVar("_Item", bound=np.generic)


def grown(array: npt.NDArray[_Item], capacity: int, fill: float = 0) -> npt.NDArray[_Item]:
    """`array` with its first axis grown to `capacity`, the new rows set to `fill`."""
    out: npt.NDArray[_Item] = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


class SlotBank(ABC):
    """Rows of per-leg state handed out and taken back; the arrays grow by doubling."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = 0
        self._free: list[int] = []
        self._used = np.zeros(0, dtype=np.bool_)

    def _allocate(self, capacity: int) -> None:
        old = self._capacity
        self._used = grown(self._used, capacity, False)
        self._grow(capacity)
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._free.sort(reverse=True)  # pop() hands out the lowest free slot
        self._capacity = capacity

    @abstractmethod
    def _grow(self, capacity: int) -> None:
        """Extend the bank's own arrays to `capacity` rows (the new rows are unused)."""

    @abstractmethod
    def _reset(self, slot: int) -> None:
        """Fresh state for one row."""

    @property
    def capacity(self) -> int:
        """Slots currently allocated (used or free)."""
        return self._capacity

    def __len__(self) -> int:
        return self._capacity - len(self._free)

    def add_leg(self) -> int:
        """Fresh state for a new leg; returns its slot."""
        if not self._free:
            self._allocate(self._capacity * 2)
        slot = self._free.pop()
        self._reset(slot)
        self._used[slot] = True
        return slot

    def _release(self, slot: int) -> None:
        self._reset(slot)
        self._used[slot] = False
        self._free.append(slot)
        self._free.sort(reverse=True)

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self._capacity or not self._used[slot]:
            raise KeyError(f"slot {slot} is not an active leg")
