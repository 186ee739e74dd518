"""A ctypes binding to spandsp's packet loss concealment (``plc``): a baseline of
bench/jitter.py.

Owns `SpandspConcealer`, one ``plc_state_t`` per stream, loaded from ``libspandsp.so.2``
(Debian package ``libspandsp2``; the library name, install hint and error class are
bench/_spandsp.py's). spandsp's PLC is used as it comes; nothing of it is
reimplemented here.

The C API used (``spandsp/plc.h`` of spandsp 0.0.6):

* ``plc_state_t *plc_init(plc_state_t *s)`` — with ``s`` NULL it allocates the state;
* ``int plc_rx(plc_state_t *s, int16_t amp[], int len)`` — received audio, in place
  (after a loss it is cross-faded from the synthetic signal), kept as history;
* ``int plc_fillin(plc_state_t *s, int16_t amp[], int len)`` — writes `len` samples of
  concealment for audio that did not arrive;
* ``int plc_free(plc_state_t *s)``.

spandsp adds no delay: the fill-in starts at the first missing sample.

This module must not know about hotline, jitter buffers or networks.
"""

from __future__ import annotations

import ctypes
from types import TracebackType

import numpy as np
import numpy.typing as npt
from _spandsp import INSTALL_HINT, LIBRARY, SpandspUnavailable

__all__ = ["SpandspConcealer", "SpandspUnavailable", "load"]

Int16Array = npt.NDArray[np.int16]


class _Library:
    def __init__(self, name: str) -> None:
        try:
            lib = ctypes.CDLL(name)
        except OSError as error:
            raise SpandspUnavailable(f"cannot load {name}: {error}; {INSTALL_HINT}") from error
        try:
            self.init = lib.plc_init
            self.rx = lib.plc_rx
            self.fillin = lib.plc_fillin
            self.free = lib.plc_free
        except AttributeError as error:
            raise SpandspUnavailable(f"{name} has no packet loss concealment: {error}") from error
        self.init.argtypes = [ctypes.c_void_p]
        self.init.restype = ctypes.c_void_p
        for function in (self.rx, self.fillin):
            function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            function.restype = ctypes.c_int
        self.free.argtypes = [ctypes.c_void_p]
        self.free.restype = ctypes.c_int


_loaded: _Library | None = None


def load(name: str = LIBRARY) -> None:
    """Load libspandsp's PLC now; raises `SpandspUnavailable` naming what to install."""
    global _loaded
    if _loaded is None:
        _loaded = _Library(name)


def _library() -> _Library:
    load()
    assert _loaded is not None
    return _loaded


class SpandspConcealer:
    """spandsp's PLC for one stream, fed one frame at a time."""

    def __init__(self) -> None:
        self._lib = _library()
        state = self._lib.init(None)
        if not state:
            raise MemoryError("plc_init returned NULL")
        self._state: int | None = state

    def _live(self) -> int:
        if self._state is None:
            raise ValueError("the concealer is closed")
        return self._state

    def process(self, frame: Int16Array | None, samples: int) -> Int16Array:
        """The frame as heard: `frame` (int16, `samples` long) when it arrived, run
        through ``plc_rx``; None when it did not, filled in by ``plc_fillin``."""
        if frame is None:
            out = np.zeros(samples, dtype=np.int16)
            self._lib.fillin(self._live(), out.ctypes.data, samples)
            return out
        if frame.dtype != np.int16 or frame.shape != (samples,):
            raise TypeError(
                f"frame must be int16 of {samples} samples, got {frame.dtype} {frame.shape}"
            )
        out = np.array(frame, dtype=np.int16, copy=True)
        self._lib.rx(self._live(), out.ctypes.data, samples)
        return out

    def close(self) -> None:
        """Free the C state (idempotent)."""
        if self._state is not None:
            self._lib.free(self._state)
            self._state = None

    def __enter__(self) -> SpandspConcealer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", None) is not None:
            self.close()
