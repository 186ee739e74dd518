"""A ctypes binding to spandsp's DTMF receiver (``dtmf_rx``): the baseline of bench/dtmf.py.

Owns loading ``libspandsp.so.2`` (Debian package ``libspandsp2``) and `SpandspDtmfReceiver`,
one ``dtmf_rx`` context per audio stream, fed 8 kHz int16 samples, which returns the keys
spandsp reported. spandsp is used with its defaults (no dial-tone filter, its own twist
and level limits); nothing of it is reimplemented here.

The C API used (``spandsp/dtmf.h`` of spandsp 0.0.6):

* ``dtmf_rx_state_t *dtmf_rx_init(dtmf_rx_state_t *s, digits_rx_callback_t cb, void *user)``
  — with ``s`` NULL it allocates the context;
* ``int dtmf_rx(dtmf_rx_state_t *s, const int16_t amp[], int samples)``;
* ``int dtmf_rx_free(dtmf_rx_state_t *s)``;
* ``typedef void (*digits_rx_callback_t)(void *user, const char *digits, int len)`` — called
  from inside ``dtmf_rx`` as soon as a key is confirmed.

This module must not know about hotline or about how the benchmark builds its signals.
"""

from __future__ import annotations

import ctypes
from types import TracebackType
from typing import Final

import numpy as np
import numpy.typing as npt

LIBRARY: Final = "libspandsp.so.2"
INSTALL_HINT: Final = (
    "install the Debian package libspandsp2 (as root: apt-get install libspandsp2)"
)

_DigitsCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)


class SpandspUnavailable(RuntimeError):
    """libspandsp could not be loaded, or lacks the DTMF receiver."""


class _Library:
    """The loaded shared library with the prototypes of the functions used."""

    def __init__(self, name: str) -> None:
        try:
            lib = ctypes.CDLL(name)
        except OSError as error:
            raise SpandspUnavailable(f"cannot load {name}: {error}; {INSTALL_HINT}") from error
        try:
            self.init = lib.dtmf_rx_init
            self.rx = lib.dtmf_rx
            self.free = lib.dtmf_rx_free
        except AttributeError as error:
            raise SpandspUnavailable(f"{name} has no DTMF receiver: {error}") from error
        self.init.argtypes = [ctypes.c_void_p, _DigitsCallback, ctypes.c_void_p]
        self.init.restype = ctypes.c_void_p
        # The sample buffer is passed as an address (an int) so that feeding a stream in
        # slices costs no ctypes pointer objects.
        self.rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self.rx.restype = ctypes.c_int
        self.free.argtypes = [ctypes.c_void_p]
        self.free.restype = ctypes.c_int


_loaded: _Library | None = None


def load(name: str = LIBRARY) -> None:
    """Load libspandsp now (it is otherwise loaded by the first receiver); raises
    `SpandspUnavailable` with what to install when it is missing."""
    global _loaded
    if _loaded is None:
        _loaded = _Library(name)


def _library() -> _Library:
    load()
    assert _loaded is not None
    return _loaded


class SpandspDtmfReceiver:
    """One spandsp DTMF receiver: a fresh ``dtmf_rx`` context for one audio stream.

    `feed` may be called any number of times with consecutive pieces of the stream; the
    keys reported so far are in `digits`, each with the stream position (samples fed)
    at the end of the `feed` call that reported it. Use as a context manager, or call
    `close`, to free the C context.
    """

    def __init__(self) -> None:
        self._lib = _library()
        self.digits: list[tuple[str, int]] = []
        self._fed = 0
        # The callback object must outlive the context that holds its address.
        self._callback = _DigitsCallback(self._on_digits)
        state = self._lib.init(None, self._callback, None)
        if not state:
            raise MemoryError("dtmf_rx_init returned NULL")
        self._state: int | None = state

    def _on_digits(self, user_data: int | None, digits: bytes | None, length: int) -> None:
        if digits:
            for key in digits[:length].decode("ascii"):
                self.digits.append((key, self._fed))

    @property
    def keys(self) -> str:
        """The keys reported so far, in order."""
        return "".join(key for key, _ in self.digits)

    def feed(self, samples: npt.NDArray[np.int16], chunk: int | None = None) -> None:
        """Run the receiver over `samples` (1-D int16), in one ``dtmf_rx`` call, or in
        calls of `chunk` samples (as a media loop with 20 ms ticks would make them)."""
        if self._state is None:
            raise ValueError("the receiver is closed")
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise TypeError(f"samples must be 1-D int16, got {samples.dtype} {samples.shape}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be at least 1 sample, got {chunk}")
        data = np.ascontiguousarray(samples)
        base = data.ctypes.data
        total = data.shape[0]
        step = total if chunk is None else chunk
        rx = self._lib.rx
        state = self._state
        fed = self._fed
        for at in range(0, total, step):
            count = min(step, total - at)
            self._fed = fed + at + count
            rx(state, base + 2 * at, count)
        self._fed = fed + total

    def close(self) -> None:
        """Free the C context (idempotent)."""
        if self._state is not None:
            self._lib.free(self._state)
            self._state = None

    def __enter__(self) -> SpandspDtmfReceiver:
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


def spandsp_keys(samples: npt.NDArray[np.int16], chunk: int | None = None) -> str:
    """The keys a fresh spandsp receiver reports over one whole stream."""
    with SpandspDtmfReceiver() as receiver:
        receiver.feed(samples, chunk)
        return receiver.keys
