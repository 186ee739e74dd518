"""RTP on the wire for load tests: the callers' in-band key captures, and the quality of
the engine's outgoing streams read from a capture.

Owns the classic pcap format (writing Ethernet/IPv4/UDP frames; reading Ethernet,
Linux-cooked v1/v2 and raw IPv4 captures in either byte order, µs or ns), the PCMU
packets of one in-band key (`tone_packets`: the tone for `INBAND_ON` seconds then
silence until the next key, µ-law from `hotline.media.tones` and `hotline.media.g711`),
and per-stream figures of a capture: packets, sequence numbers never seen (loss),
duplicates, RFC 3550 A.8 interarrival jitter (running J += (|D| − J)/16), the gaps
between packets and those over 50 ms.

Must not know: SIP, SIPp, processes or files (bytes in, bytes and figures out).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from hotline.media import g711, tones

SAMPLE_RATE: Final = 8000
FRAME: Final = 160  # samples in 20 ms
PCMU: Final = 0
GAP_LIMIT: Final = 0.050  # seconds: a gap longer than this is audible
RESYNC: Final = 2 * SAMPLE_RATE  # a timestamp step beyond 2 s (or backwards) restarts jitter
TONE_FRAMES: Final = 5  # 100 ms of tone
KEY_FRAMES: Final = 10  # a key every 200 ms
TONE_LEVEL_DBM0: Final = -6.0
PCAP_MAGIC_US: Final = 0xA1B2C3D4
PCAP_MAGIC_NS: Final = 0xA1B23C4D
_LINK_HEADER: Final = {1: 14, 101: 0, 113: 16, 228: 0, 276: 20}  # Ethernet, raw, SLL, SLL2
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_RTP = struct.Struct("!BBHII")

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]


class CaptureError(ValueError):
    """Bytes that are not a capture this module reads; the message says what was found."""


# -- writing ------------------------------------------------------------------------------------


def rtp_packet(
    payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    return (
        _RTP.pack(
            0x80,
            (0x80 if marker else 0) | payload_type,
            seq & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )


def tone_packets(
    key: str | None, *, timestamp: int, seq: int, ssrc: int, marker: bool
) -> list[tuple[float, bytes]]:
    """One in-band key as PCMU: `TONE_FRAMES` frames of its tone, then silence up to
    `KEY_FRAMES` frames (all silence when `key` is None); (seconds from the first
    packet, packet)."""
    if key is None:
        samples = tones.silence(FRAME * KEY_FRAMES)
    else:
        tone = tones.dtmf_tone(
            key, 1000 * TONE_FRAMES * FRAME / SAMPLE_RATE, level_dbm0=TONE_LEVEL_DBM0
        )
        samples = np.concatenate([tone, tones.silence(FRAME * (KEY_FRAMES - TONE_FRAMES))])
    codes = g711.ulaw_encode(samples).tobytes()
    out: list[tuple[float, bytes]] = []
    for i in range(KEY_FRAMES):
        payload = codes[i * FRAME : (i + 1) * FRAME]
        out.append(
            (
                i * FRAME / SAMPLE_RATE,
                rtp_packet(PCMU, seq + i, timestamp + i * FRAME, ssrc, payload, marker and i == 0),
            )
        )
    return out


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int) -> bytes:
    src_ip = bytes(int(p) for p in src[0].split("."))
    dst_ip = bytes(int(p) for p in dst[0].split("."))
    udp_len = _UDP.size + len(payload)
    header = _IPV4.pack(
        0x45, 0xB8, _IPV4.size + udp_len, ident & 0xFFFF, 0x4000, 64, 17, 0, src_ip, dst_ip
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return b"\x00" * 12 + b"\x08\x00" + header + _UDP.pack(src[1], dst[1], udp_len, 0) + payload


def pcap_bytes(
    datagrams: Iterable[tuple[float, bytes]],
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 10000),
    epoch: float = 1_700_000_000.0,
) -> bytes:
    """A classic pcap (Ethernet, µs) of UDP datagrams given as (seconds, payload). SIPp
    replays the payloads with the same spacing, from and to the call's own ports."""
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 65535, 1))
    for n, (at, payload) in enumerate(datagrams, start=1):
        frame = _frame(payload, src, dst, n)
        micros = round((epoch + at) * 1_000_000)
        out += _RECORD.pack(micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        out += frame
    return bytes(out)


def inband_captures(
    plan: Mapping[str, tuple[int, int, str | None, bool]], ssrc: int
) -> dict[str, bytes]:
    """The capture file of every entry of `scenarios.inband_plan`."""
    return {
        name: pcap_bytes(tone_packets(key, timestamp=ts, seq=seq, ssrc=ssrc, marker=first))
        for name, (ts, seq, key, first) in plan.items()
    }


# -- reading ------------------------------------------------------------------------------------


@dataclass
class Packets:
    """The RTP packets of a capture, one array per field, in capture order."""

    time: Float64Array
    sport: Int64Array
    dport: Int64Array
    ssrc: Int64Array
    seq: Int64Array
    timestamp: Int64Array
    truncated: bool = False  # the file ended inside a record (the capture was cut)

    def __len__(self) -> int:
        return len(self.time)


def read_pcap(raw: bytes) -> Packets:
    """The IPv4/UDP/RTP (version 2) packets of a classic pcap; other packets are
    skipped. Only the first 20 bytes of UDP payload are needed (a 64-byte snap length
    is enough)."""
    if len(raw) < 24:
        raise CaptureError(f"not a pcap file: {len(raw)} bytes, shorter than its header")
    (magic,) = struct.unpack_from("<I", raw)
    if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        order = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        order = ">"
    elif magic == 0x0A0D0D0A:
        raise CaptureError("a pcapng file: capture with -F pcap")
    else:
        raise CaptureError(f"not a pcap file (magic {raw[:4].hex()})")
    scale = 1e-9 if struct.unpack_from(order + "I", raw)[0] == PCAP_MAGIC_NS else 1e-6
    linktype = struct.unpack_from(order + "I", raw, 20)[0] & 0xFFFF
    if linktype not in _LINK_HEADER:
        raise CaptureError(f"link type {linktype} is not Ethernet, Linux cooked or raw IP")
    link = _LINK_HEADER[linktype]
    record = struct.Struct(order + "IIII")
    udp_rtp = struct.Struct("!HH4xBBHII")
    cols: list[list[float | int]] = [[], [], [], [], [], []]
    offset, end = 24, len(raw)
    truncated = False
    while offset + record.size <= end:
        sec, frac, incl, _orig = record.unpack_from(raw, offset)
        data = offset + record.size
        offset = data + incl
        if offset > end:
            truncated = True
            break
        ip = data + link
        if incl < link + 20 or raw[ip] >> 4 != 4 or raw[ip + 9] != 17:
            continue
        udp = ip + (raw[ip] & 0x0F) * 4
        if udp + 20 > data + incl:
            continue
        sp, dp, b0, _b1, sq, stamp, src = udp_rtp.unpack_from(raw, udp)
        if b0 >> 6 != 2:
            continue
        for col, value in zip(cols, (sec + frac * scale, sp, dp, src, sq, stamp), strict=True):
            col.append(value)
    ints = [np.asarray(c, dtype=np.int64) for c in cols[1:]]
    return Packets(
        np.asarray(cols[0], dtype=np.float64),
        ints[0],
        ints[1],
        ints[2],
        ints[3],
        ints[4],
        truncated=truncated,
    )


# -- quality ------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One RTP stream of the engine: its source port and SSRC (and the first
    destination port seen)."""

    sport: int
    dport: int
    ssrc: int
    first: float
    last: float
    packets: int
    lost: int
    duplicates: int
    max_jitter_ms: float
    mean_jitter_ms: float
    max_gap_ms: float
    gaps_over_50ms: int


@dataclass
class Quality:
    packets: int = 0
    streams: list[Stream] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (start, length s) > 50 ms

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.streams)

    @property
    def expected(self) -> int:
        return sum(s.packets - s.duplicates + s.lost for s in self.streams)

    def summary(self) -> dict[str, Any]:
        jitters = [s.max_jitter_ms for s in self.streams]
        return {
            "packets": self.packets,
            "streams": len(self.streams),
            "lost": self.lost,
            "loss_pct": round(100 * self.lost / self.expected, 3) if self.expected else 0.0,
            "duplicates": sum(s.duplicates for s in self.streams),
            "max_jitter_ms": round(max(jitters, default=0.0), 3),
            "mean_jitter_ms": round(
                float(np.mean([s.mean_jitter_ms for s in self.streams])) if self.streams else 0.0, 3
            ),
            "p95_stream_jitter_ms": round(float(np.percentile(jitters, 95)) if jitters else 0.0, 3),
            "max_gap_ms": round(max((s.max_gap_ms for s in self.streams), default=0.0), 1),
            "gaps_over_50ms": len(self.gaps),
            "streams_with_gaps": sum(1 for s in self.streams if s.gaps_over_50ms),
        }


def analyse(p: Packets) -> Quality:
    """Per stream (the engine's source port and SSRC: where it sends to may change when
    it latches to the caller's source): loss from the extended sequence numbers between the first and the
    last seen, duplicates, the RFC 3550 jitter (restarted by a timestamp jump), gaps."""
    quality = Quality(packets=len(p))
    if not len(p):
        return quality
    key = (p.sport << 32) | p.ssrc
    order = np.lexsort((p.time, key))
    key, t, seq, ts = key[order], p.time[order], p.seq[order], p.timestamp[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate(([0], bounds)).tolist()
    ends = np.concatenate((bounds, [len(key)])).tolist()
    for a, b in zip(starts, ends, strict=True):
        ext = np.concatenate(([0], np.cumsum(((np.diff(seq[a:b]) + 32768) % 65536) - 32768)))
        unique = len(np.unique(ext))
        lost = int(ext.max() - ext.min() + 1) - unique
        max_j = mean_j = max_gap = 0.0
        over = 0
        if b - a >= 2:
            arrival = np.diff(t[a:b])
            max_gap = float(arrival.max()) * 1000
            long = np.flatnonzero(arrival > GAP_LIMIT)
            over = len(long)
            quality.gaps += [(float(t[a + i]), float(arrival[i])) for i in long.tolist()]
            step = ((np.diff(ts[a:b]) + (1 << 31)) % (1 << 32)) - (1 << 31)
            resync = (step < 0) | (step > RESYNC)
            d = np.where(resync, 0.0, arrival - step / SAMPLE_RATE)
            jitter = lfilter([1 / 16], [1, -15 / 16], np.abs(d))
            max_j = float(jitter.max()) * 1000
            mean_j = float(jitter.mean()) * 1000
        k = int(key[a])
        quality.streams.append(
            Stream(
                sport=k >> 32,
                dport=int(p.dport[order][a]),
                ssrc=k & 0xFFFFFFFF,
                first=float(t[a]),
                last=float(t[b - 1]),
                packets=b - a,
                lost=max(0, lost),
                duplicates=(b - a) - unique,
                max_jitter_ms=round(max_j, 3),
                mean_jitter_ms=round(mean_j, 3),
                max_gap_ms=round(max_gap, 1),
                gaps_over_50ms=over,
            )
        )
    quality.gaps.sort()
    return quality
