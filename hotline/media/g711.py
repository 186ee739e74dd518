"""G.711 µ-law (PCMU) and A-law (PCMA) companding as numpy lookup tables.

Owns the four tables and the block functions built on them:

* decoding: a 256-entry int16 table per law, indexed by the code byte;
* encoding: a 65536-entry uint8 table per law, indexed by the int16 sample read as
  uint16, so a whole (legs × samples) block is encoded with one ``take``.

The tables are computed once, at import, from the segment rules of ITU-T G.711
(Tables 1a/1b and 2a/2b) as the ITU-T reference software (G.191, ``g711.c``) applies
them to 16-bit linear samples:

* µ-law looks at the 14 most significant bits. The magnitude of a negative sample is
  taken as its one's complement (``~x``), which makes the 16-bit two's-complement grid
  symmetric about −½ LSB: ``encode(~x) == encode(x) ^ 0x80`` for every x. The biased
  magnitude ``m + 33`` (saturated at 8191) falls in segment e = 0…7 by its bit length;
  the code carries e and the four bits below the segment's leading one, all inverted.
* A-law looks at the 13 most significant bits, also with the one's complement for
  negatives; segment 0 is linear (no leading one), segments 1…7 drop the leading one,
  and the even bits of the code are toggled (``^ 0x55``).
* Decoding returns the middle of each quantisation interval, left-justified in 16
  bits: µ-law spans ±32124, A-law ±32256.

The Sun ``g711.c`` that CPython's old ``audioop`` module used takes the magnitude of a
negative µ-law input as ``-x`` instead of ``~x`` (of the 14-bit value), so for
negative samples its µ-law code is the G.191 code of ``x - 4``; A-law and both decoders
agree bit for bit. The tests pin both facts.

This module knows nothing of RTP, legs or time; it only maps samples to codes and back.
"""

from __future__ import annotations

from enum import IntEnum
from typing import cast

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
UInt8Array = npt.NDArray[np.uint8]

ULAW_SILENCE = 0xFF  # µ-law code of a zero sample (positive zero)
ALAW_SILENCE = 0xD5  # A-law code of a zero sample: 0x80 (positive, segment 0) ^ 0x55; decodes to +8


class Codec(IntEnum):
    """The G.711 laws by their static RTP payload type (RFC 3551)."""

    PCMU = 0
    PCMA = 8

    @property
    def encoding_name(self) -> str:
        """The SDP encoding name (``a=rtpmap:0 PCMU/8000``)."""
        return self.name

    @property
    def clock_rate(self) -> int:
        """Samples per second; both laws are 8 kHz."""
        return 8000

    @property
    def silence(self) -> int:
        """The code a zero sample encodes to (µ-law decodes it to 0; A-law, which has no
        zero level, to +8)."""
        return ULAW_SILENCE if self is Codec.PCMU else ALAW_SILENCE


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, in the order of its uint16 bit pattern (0, 1, …, 32767, −32768, …, −1)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Number of significant bits of each non-negative value (0 for 0)."""
    lengths = np.zeros(values.shape, dtype=np.int32)
    rest = values.copy()
    while np.any(rest):
        nonzero = rest != 0
        lengths += nonzero
        rest >>= 1
    return lengths


def _build_ulaw_encode() -> UInt8Array:
    x = _all_int16()
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude, 0…8191
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = _bit_length(biased >> 6)  # 0…7: biased lies in [32·2^e, 64·2^e)
    step = (biased >> (segment + 1)) & 0x0F
    mask = np.where(x < 0, 0x7F, 0xFF)
    table: UInt8Array = ((segment << 4 | step) ^ mask).astype(np.uint8)
    return table


def _build_ulaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code & 0xFF
    segment = (inverted >> 4) & 0x07
    step = inverted & 0x0F
    magnitude = (((step << 3) + 0x84) << segment) - 0x84
    table: Int16Array = np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)
    return table


def _build_alaw_encode() -> UInt8Array:
    x = _all_int16()
    magnitude = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude, 0…2047
    segment = np.maximum(_bit_length(magnitude) - 4, 0)  # 0 for magnitudes below 16
    step = (magnitude >> np.maximum(segment - 1, 0)) & 0x0F  # segment 0 is linear
    sign = np.where(x < 0, 0x00, 0x80)
    table: UInt8Array = ((sign | segment << 4 | step) ^ 0x55).astype(np.uint8)
    return table


def _build_alaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    toggled = code ^ 0x55
    segment = (toggled >> 4) & 0x07
    step = toggled & 0x0F
    mantissa = np.where(segment > 0, step + 16, step)
    magnitude = ((mantissa << 4) + 8) << np.maximum(segment - 1, 0)
    table: Int16Array = np.where(code >= 0x80, magnitude, -magnitude).astype(np.int16)
    return table


def _frozen(table: npt.NDArray[np.generic]) -> None:
    table.setflags(write=False)


ULAW_ENCODE: UInt8Array = _build_ulaw_encode()
"""µ-law code of each int16 sample, indexed by the sample's uint16 bit pattern."""
ULAW_DECODE: Int16Array = _build_ulaw_decode()
"""Linear int16 value of each µ-law code."""
ALAW_ENCODE: UInt8Array = _build_alaw_encode()
"""A-law code of each int16 sample, indexed by the sample's uint16 bit pattern."""
ALAW_DECODE: Int16Array = _build_alaw_decode()
"""Linear int16 value of each A-law code."""
for _table in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _frozen(_table)
del _table


def _check_codes(codes: npt.NDArray[np.generic], name: str) -> UInt8Array:
    if codes.dtype != np.uint8:
        raise TypeError(f"{name} expects uint8 codes, got {codes.dtype}")
    return cast(UInt8Array, codes)


def _check_samples(samples: npt.NDArray[np.generic], name: str) -> npt.NDArray[np.uint16]:
    if samples.dtype != np.int16:
        raise TypeError(f"{name} expects int16 samples, got {samples.dtype}")
    return samples.view(np.uint16)


def ulaw_decode(codes: npt.NDArray[np.generic]) -> Int16Array:
    """Decode µ-law codes (uint8, any shape, e.g. legs × samples) to int16 samples."""
    return ULAW_DECODE.take(_check_codes(codes, "ulaw_decode"))


def alaw_decode(codes: npt.NDArray[np.generic]) -> Int16Array:
    """Decode A-law codes (uint8, any shape) to int16 samples."""
    return ALAW_DECODE.take(_check_codes(codes, "alaw_decode"))


def ulaw_encode(samples: npt.NDArray[np.generic]) -> UInt8Array:
    """Encode int16 samples (any shape) to µ-law codes."""
    return ULAW_ENCODE.take(_check_samples(samples, "ulaw_encode"))


def alaw_encode(samples: npt.NDArray[np.generic]) -> UInt8Array:
    """Encode int16 samples (any shape) to A-law codes."""
    return ALAW_ENCODE.take(_check_samples(samples, "alaw_encode"))


def decode(codec: Codec, codes: npt.NDArray[np.generic]) -> Int16Array:
    """Decode codes of either law."""
    return ulaw_decode(codes) if codec is Codec.PCMU else alaw_decode(codes)


def encode(codec: Codec, samples: npt.NDArray[np.generic]) -> UInt8Array:
    """Encode int16 samples with either law."""
    return ulaw_encode(samples) if codec is Codec.PCMU else alaw_encode(samples)


def decode_payload(codec: Codec, payload: bytes | bytearray | memoryview) -> Int16Array:
    """Decode one RTP payload (one code byte per sample) to a 1-D int16 array."""
    return decode(codec, np.frombuffer(payload, dtype=np.uint8))


def encode_payload(codec: Codec, samples: npt.NDArray[np.generic]) -> bytes:
    """Encode int16 samples to the bytes of one RTP payload."""
    return encode(codec, samples).tobytes()


def saturate_int16(samples: npt.NDArray[np.generic]) -> Int16Array:
    """Round and clip any real or integer array to the int16 range (for mixed or scaled audio)."""
    if samples.dtype == np.int16:
        return cast(Int16Array, samples)
    if np.issubdtype(samples.dtype, np.floating):
        samples = np.rint(samples)
    clipped: Int16Array = np.clip(samples, -32768, 32767).astype(np.int16)
    return clipped
