"""The garbage collector of a real-time process: tuned once at start-up, and measured.

Owns three things. `freeze_startup()` moves every object alive after start-up (flows,
prompts, word recordings, tables, code) into the permanent generation, so collections
never walk them again. `tune()` stops CPython from starting full collections by itself:
call objects are freed by reference counting (the SIP core breaks the reference cycle
between a call and its transactions when the call ends), so what a full collection could
reclaim is small, while walking every live call — 80–300 ms at 800 calls — stalls the
media tick; the engine runs one when it is idle, or after a long while regardless
(`full_collection_due`). And a `gc.callbacks` hook times every collection per generation
into histograms for `/metrics`, so a pause is seen, not guessed.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from hotline.engine.media_loop import Histogram

# gen0 and gen1 as CPython's defaults (small: a young collection walks at most a few thousand
# objects, well under a millisecond); gen2 never by itself — see `full_collection_due`.
THRESHOLDS = (700, 10, 1_000_000)
IDLE_COLLECT_SECONDS = 300.0  # a full collection when no call is up, at most this often
FORCE_COLLECT_SECONDS = 1800.0  # … and one anyway after this long, calls or not
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.010, 0.020, 0.050, 0.100, 0.250, 1.0)


class GcStats:
    """Durations of collections per generation (0, 1, 2)."""

    def __init__(self) -> None:
        self.durations = [Histogram(BUCKETS) for _ in range(3)]
        self.collected = [0, 0, 0]
        self._started: float | None = None

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:
            return
        generation = int(info.get("generation", 2))
        if 0 <= generation <= 2:
            self.durations[generation].observe(time.perf_counter() - self._started)
            self.collected[generation] += int(info.get("collected", 0))
        self._started = None


def full_collection_due(since_last: float, active_calls: int) -> bool:
    """Whether to run a full collection now: when the engine is idle (no call to
    stall) and one has not run for `IDLE_COLLECT_SECONDS`, or after
    `FORCE_COLLECT_SECONDS` whatever is going on (a bounded pause, so that cyclic garbage
    from rare paths — exceptions, cancelled tasks — cannot grow without limit)."""
    if since_last >= FORCE_COLLECT_SECONDS:
        return True
    return active_calls == 0 and since_last >= IDLE_COLLECT_SECONDS


def freeze_startup() -> None:
    gc.collect()
    gc.freeze()


def tune(stats: GcStats) -> None:
    gc.set_threshold(*THRESHOLDS)
    if stats.callback not in gc.callbacks:
        gc.callbacks.append(stats.callback)
