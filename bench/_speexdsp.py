"""A ctypes binding to libspeexdsp's adaptive jitter buffer: a baseline of bench/jitter.py.

Owns loading ``libspeexdsp.so.1`` (Debian package ``libspeexdsp1``) and
`SpeexJitterBuffer`, one ``JitterBuffer`` context per stream. The buffer is used with its
defaults (``jitter_buffer_init(step)`` sets a 4 % maximum late rate and the delay step and
concealment size to `step`); nothing of it is reimplemented here.

The C API used (``speex/speex_jitter.h`` of speexdsp 1.2):

* ``JitterBuffer *jitter_buffer_init(int step_size)`` / ``void jitter_buffer_destroy(…)``;
* ``void jitter_buffer_put(JitterBuffer *, const JitterBufferPacket *)`` — the buffer
  copies the payload;
* ``int jitter_buffer_get(JitterBuffer *, JitterBufferPacket *, spx_int32_t
  desired_span, spx_int32_t *start_offset)`` — copies the next packet into the caller's
  ``data`` (``len`` bytes of room) and returns ``JITTER_BUFFER_OK`` (0), or
  ``JITTER_BUFFER_MISSING`` (1: lost or late, the pointer moves on) or
  ``JITTER_BUFFER_INSERTION`` (2: a frame to be made up while the buffer grows);
* ``void jitter_buffer_tick(JitterBuffer *)`` — once per playout period, after ``get``;
  the buffer's clock is these ticks: a packet's lateness is measured against them;
* ``int jitter_buffer_get_pointer_timestamp(JitterBuffer *)`` — where the next ``get``
  starts;
* ``struct JitterBufferPacket { char *data; spx_uint32_t len, timestamp, span;
  spx_uint16_t sequence; spx_uint32_t user_data; }``.

This module must not know about hotline, networks or audio.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum
from types import TracebackType
from typing import Final

LIBRARY: Final = "libspeexdsp.so.1"
INSTALL_HINT: Final = (
    "install the Debian package libspeexdsp1 (as root: apt-get install libspeexdsp1)"
)
MAX_PAYLOAD = 1500  # bytes of room given to jitter_buffer_get


class SpeexUnavailable(RuntimeError):
    """libspeexdsp could not be loaded, or lacks the jitter buffer."""


class GetResult(IntEnum):
    OK = 0
    MISSING = 1
    INSERTION = 2


class _Packet(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint32),
        ("span", ctypes.c_uint32),
        ("sequence", ctypes.c_uint16),
        ("user_data", ctypes.c_uint32),
    )


class _Library:
    def __init__(self, name: str) -> None:
        try:
            lib = ctypes.CDLL(name)
        except OSError as error:
            raise SpeexUnavailable(f"cannot load {name}: {error}; {INSTALL_HINT}") from error
        try:
            self.init = lib.jitter_buffer_init
            self.destroy = lib.jitter_buffer_destroy
            self.put = lib.jitter_buffer_put
            self.get = lib.jitter_buffer_get
            self.tick = lib.jitter_buffer_tick
            self.pointer = lib.jitter_buffer_get_pointer_timestamp
        except AttributeError as error:
            raise SpeexUnavailable(f"{name} has no jitter buffer: {error}") from error
        self.init.argtypes = [ctypes.c_int]
        self.init.restype = ctypes.c_void_p
        self.destroy.argtypes = [ctypes.c_void_p]
        self.destroy.restype = None
        self.put.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Packet)]
        self.put.restype = None
        self.get.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_Packet),
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_int32),
        ]
        self.get.restype = ctypes.c_int
        self.tick.argtypes = [ctypes.c_void_p]
        self.tick.restype = None
        self.pointer.argtypes = [ctypes.c_void_p]
        self.pointer.restype = ctypes.c_int


_loaded: _Library | None = None


def load(name: str = LIBRARY) -> None:
    """Load libspeexdsp now; raises `SpeexUnavailable` naming what to install."""
    global _loaded
    if _loaded is None:
        _loaded = _Library(name)


def _library() -> _Library:
    load()
    assert _loaded is not None
    return _loaded


class SpeexJitterBuffer:
    """One libspeexdsp jitter buffer. Timestamps and spans are in samples; `step` is
    the playout period (e.g. 160 samples for 20 ms at 8 kHz)."""

    def __init__(self, step: int) -> None:
        if step <= 0:
            raise ValueError(f"step must be a positive number of samples, got {step}")
        self._lib = _library()
        state = self._lib.init(step)
        if not state:
            raise MemoryError("jitter_buffer_init returned NULL")
        self._state: int | None = state
        self._step = step
        self._in = _Packet()
        self._out = _Packet()
        self._room = ctypes.create_string_buffer(MAX_PAYLOAD)
        self._offset = ctypes.c_int32(0)

    def _live(self) -> int:
        if self._state is None:
            raise ValueError("the jitter buffer is closed")
        return self._state

    def put(self, payload: bytes, timestamp: int, span: int, sequence: int, tag: int) -> None:
        """File a packet; `tag` comes back with it from `get` (``user_data``)."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        data = ctypes.create_string_buffer(payload, len(payload))
        packet = self._in
        packet.data = ctypes.addressof(data)
        packet.len = len(payload)
        packet.timestamp = timestamp & 0xFFFFFFFF
        packet.span = span
        packet.sequence = sequence & 0xFFFF
        packet.user_data = tag & 0xFFFFFFFF
        self._lib.put(self._live(), ctypes.byref(packet))

    def get(self) -> tuple[GetResult, bytes, int]:
        """The next `step` samples' packet: (result, payload, tag); payload is empty
        unless the result is OK."""
        out = self._out
        out.data = ctypes.addressof(self._room)
        out.len = MAX_PAYLOAD
        result = self._lib.get(
            self._live(), ctypes.byref(out), self._step, ctypes.byref(self._offset)
        )
        if result == GetResult.OK:
            return GetResult.OK, ctypes.string_at(self._room, out.len), int(out.user_data)
        if result in (GetResult.MISSING, GetResult.INSERTION):
            return GetResult(result), b"", -1
        raise RuntimeError(f"jitter_buffer_get returned {result}")

    def tick(self) -> None:
        self._lib.tick(self._live())

    def pointer_timestamp(self) -> int:
        """The timestamp the next `get` starts at (meaningless before the first
        packet was returned)."""
        return int(self._lib.pointer(self._live())) & 0xFFFFFFFF

    def close(self) -> None:
        """Free the C context (idempotent)."""
        if self._state is not None:
            self._lib.destroy(self._state)
            self._state = None

    def __enter__(self) -> SpeexJitterBuffer:
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
