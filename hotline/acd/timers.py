"""Deadlines keyed by name, for the ACD's state machines.

Owns one structure: a map from a key (``("ring", "alice")``) to the time it is due,
with a heap so that the earliest deadline is found without scanning. Setting a key
again replaces its deadline; cancelled and replaced entries are dropped lazily when
they reach the top of the heap. Keys due at the same time come out in the order they
were set, so that a run is reproducible. Must not know what the keys mean or read a
clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Deadlines:
    _due: dict[Hashable, tuple[float, int]] = field(default_factory=dict)
    _heap: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _seq: int = 0

    def set(self, key: Hashable, when: float) -> None:
        """Arm `key` for `when`, replacing any earlier setting of the same key."""
        self._seq += 1
        self._due[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def get(self, key: Hashable) -> float | None:
        entry = self._due.get(key)
        return None if entry is None else entry[0]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def next(self) -> float | None:
        """The earliest armed deadline, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def mark(self) -> int:
        """A point in the sequence of settings, for `pop_due(..., set_before=mark)`."""
        return self._seq

    def pop_due(self, now: float, set_before: int | None = None) -> Hashable | None:
        """Disarm and return the earliest key due at or before `now` (None: none due).
        With `set_before` (a `mark()`), keys set after that mark are left for the next
        round, so a handler that re-arms a key for `now` cannot loop forever."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        if set_before is not None and self._heap[0][1] > set_before:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._due[key]
        return key

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._due.get(key) == (when, seq):
                return
            heapq.heappop(heap)
