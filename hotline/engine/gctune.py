"""The garbage collector of a real-time process: tuned once at start-up, and measured.

Owns three things. `freeze_startup()` moves every object alive after start-up (flows,
prompts, word recordings, tables, code) into the permanent generation, so collections
never walk them again. `tune()` makes full collections rare: call objects are freed by
reference counting (the SIP core breaks the reference cycle between a call and its
transactions when the call ends), so what the collector can reclaim is small and a full
collection walking every live call — 50–300 ms at 800 calls — would only stall the media
tick. And a `gc.callbacks` hook times every collection per generation into histograms for
`/metrics`, so a pause is seen, not guessed.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from hotline.engine.media_loop import Histogram

# gen0 after this many net allocations; gen1 every 20 gen0; gen2 every 100 gen1 at the most
# (CPython also waits until the long-lived objects grew by 25 % since the last full one)
THRESHOLDS = (5000, 20, 100)
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


def freeze_startup() -> None:
    gc.collect()
    gc.freeze()


def tune(stats: GcStats) -> None:
    gc.set_threshold(*THRESHOLDS)
    if stats.callback not in gc.callbacks:
        gc.callbacks.append(stats.callback)
