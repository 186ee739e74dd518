"""Captures of a caller who talks and presses keys, for SIPp's `play_pcap_audio`.

Owns writing the classic pcap file format (stdlib only: Ethernet, IPv4, UDP), the RTP
packets of one caller stream — 20 ms PCMU packets of speech with a code's RFC 4733
telephone-events embedded at given times in the same SSRC, sequence and timestamp
space — and the `caller_audio_NNNN.pcap` files `bench/scenarios/ivr_load_audio.xml`
plays. Speech and keys must be one capture: a second `play_pcap_audio` in a call stops
the first (SIPp 3.6.1, seen on the wire), so SIPp plays one pcap per call at a time.

The speech is the English word recordings under `audio/words/en/` read back to back,
60 ms apart (no synthesis), µ-law encoded with `hotline.media.g711`. While a key is down
the event packets replace the audio; the RTP timestamp clock runs on, so the first audio
packet after an event is stamped where the speech would have been. The end packet of
an event goes out three times with one sequence number, as in SIPp's stock captures.

    .venv/bin/python bench/caller_pcap.py OUT_DIR      # the captures the scenario names

Must not know: SIP, SIPp's scenario logic, the engine, or what is measured.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.media import g711

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SCENARIO = ROOT / "bench" / "scenarios" / "ivr_load_audio.xml"
DTMF_SCENARIO = ROOT / "bench" / "scenarios" / "ivr_load_dtmf.xml"

SAMPLE_RATE = 8000  # Hz, PCMU and telephone-event clock
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
PCMU = 0  # static payload type
TELEPHONE_EVENT = 101  # dynamic payload type the scenario's SDP offers
EVENT_FRAMES = 8  # a key is down 160 ms: 8 packets, 20 ms apart
END_COPIES = 3  # RFC 4733: the end packet is sent three times
EVENT_VOLUME = 10  # −10 dBm0
WORD_GAP_SAMPLES = 480  # 60 ms of silence between words
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}

PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
LINKTYPE_ETHERNET = 1
PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
ETHERNET_IPV4 = b"\x00" * 12 + b"\x08\x00"
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")
RTP_HEADER = struct.Struct("!BBHII")
EVENT_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True)
class RtpFrame:
    """One RTP packet to send `at` seconds after the stream's start."""

    at: float
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    payload: bytes

    def encode(self, ssrc: int) -> bytes:
        first = 0x80  # version 2, no padding, no extension, no CSRC
        second = (0x80 if self.marker else 0) | self.payload_type
        header = RTP_HEADER.pack(
            first, second, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF, ssrc
        )
        return header + self.payload


def speech_samples(words_dir: Path) -> npt.NDArray[np.int16]:
    """Every 8 kHz mono 16-bit recording in `words_dir` (sorted by name), 60 ms apart,
    as one int16 array."""
    parts: list[npt.NDArray[np.int16]] = []
    gap = np.zeros(WORD_GAP_SAMPLES, dtype=np.int16)
    files = sorted(words_dir.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no WAV recordings in {words_dir}")
    for path in files:
        with wave.open(str(path), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise ValueError(
                    f"{path}: expected 8000 Hz mono 16-bit, found {w.getframerate()} Hz "
                    f"{w.getnchannels()} channel(s) {8 * w.getsampwidth()}-bit"
                )
            parts.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16))
        parts.append(gap)
    return np.concatenate(parts)


def caller_frames(
    code: str,
    *,
    key_times: Sequence[float],
    duration: float,
    speech_ulaw: bytes,
    seq0: int = 1000,
    ts0: int = 80000,
) -> list[RtpFrame]:
    """The packets of a caller who talks for `duration` seconds and presses `code[i]` at
    `key_times[i]` (seconds from the start; each press lasts 160 ms and must end before
    the next one starts). Speech loops over `speech_ulaw` (µ-law bytes)."""
    if len(code) != len(key_times):
        raise ValueError(f"code {code!r} has {len(code)} keys but {len(key_times)} key times")
    unknown = [k for k in code if k not in EVENT_CODES]
    if unknown:
        raise ValueError(f"code {code!r}: no RFC 4733 event for {unknown[0]!r}")
    if len(speech_ulaw) < FRAME_SAMPLES:
        raise ValueError("the speech is shorter than one 20 ms frame")
    total = round(duration / FRAME_SECONDS)
    starts = [round(t / FRAME_SECONDS) for t in key_times]
    for i, start in enumerate(starts):
        if start < 0 or start + EVENT_FRAMES > total:
            raise ValueError(f"key {i + 1} at {key_times[i]} s does not fit in {duration} s")
        if i and start < starts[i - 1] + EVENT_FRAMES:
            raise ValueError(f"key {i + 1} at {key_times[i]} s overlaps the key before it")
    audio = np.resize(np.frombuffer(speech_ulaw, dtype=np.uint8), total * FRAME_SAMPLES)
    frames: list[RtpFrame] = []
    seq = seq0
    key_at = dict(zip(starts, code, strict=True))
    index = 0
    while index < total:
        ts = ts0 + index * FRAME_SAMPLES
        key = key_at.get(index)
        if key is None:
            chunk = audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES].tobytes()
            frames.append(RtpFrame(index * FRAME_SECONDS, PCMU, index == 0, seq, ts, chunk))
            seq += 1
            index += 1
            continue
        event = EVENT_CODES[key]
        for j in range(EVENT_FRAMES):
            end = j == EVENT_FRAMES - 1
            payload = EVENT_PAYLOAD.pack(
                event, (0x80 if end else 0) | EVENT_VOLUME, FRAME_SAMPLES * (j + 1)
            )
            for _ in range(END_COPIES if end else 1):  # the end's copies share one seq
                frames.append(
                    RtpFrame((index + j) * FRAME_SECONDS, TELEPHONE_EVENT, j == 0, seq, ts, payload)
                )
            seq += 1
        index += EVENT_FRAMES
    return frames


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def udp_frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int) -> bytes:
    """An Ethernet/IPv4/UDP frame (UDP checksum 0: none, allowed over IPv4)."""
    src_ip = bytes(int(x) for x in src[0].split("."))
    dst_ip = bytes(int(x) for x in dst[0].split("."))
    udp_len = UDP_HEADER.size + len(payload)
    ip_len = IPV4_HEADER.size + udp_len
    header = IPV4_HEADER.pack(0x45, 0xB8, ip_len, ident & 0xFFFF, 0x4000, 64, 17, 0, src_ip, dst_ip)
    header = header[:10] + struct.pack("!H", _ipv4_checksum(header)) + header[12:]
    return ETHERNET_IPV4 + header + UDP_HEADER.pack(src[1], dst[1], udp_len, 0) + payload


def write_pcap(
    path: Path,
    datagrams: Iterable[tuple[float, bytes]],
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 10000),
    epoch: float = 1_700_000_000.0,
) -> int:
    """Write UDP datagrams `(seconds from the start, payload)` as a classic pcap file;
    returns how many were written."""
    count = 0
    with path.open("wb") as out:
        out.write(PCAP_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for count, (at, payload) in enumerate(datagrams, start=1):
            frame = udp_frame(payload, src, dst, count)
            micros = round((epoch + at) * 1_000_000)
            out.write(
                RECORD_HEADER.pack(micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
            )
            out.write(frame)
    return count


def scenario_codes(scenario: Path = AUDIO_SCENARIO) -> list[str]:
    """The codes the audio scenario plays, from its `caller_audio_NNNN.pcap` names."""
    codes = re.findall(r'play_pcap_audio="caller_audio_([0-9*#]+)\.pcap"', scenario.read_text())
    if not codes:
        raise ValueError(f'{scenario}: no play_pcap_audio="caller_audio_NNNN.pcap" found')
    return list(dict.fromkeys(codes))


def write_caller_pcaps(
    out_dir: Path,
    codes: Sequence[str],
    *,
    first_key: float,
    key_gap: float,
    tail: float,
    words_dir: Path,
) -> list[Path]:
    """`caller_audio_<code>.pcap` for each code in `out_dir`: speech from the start, keys
    at `first_key + i·key_gap` seconds, speech for `tail` seconds after the last key."""
    speech = g711.ulaw_encode(speech_samples(words_dir)).tobytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, code in enumerate(codes):
        times = [first_key + i * key_gap for i in range(len(code))]
        duration = times[-1] + EVENT_FRAMES * FRAME_SECONDS + tail
        # each code starts at a different place in the speech, so calls do not talk in unison
        offset = (n * 7919 * FRAME_SAMPLES) % len(speech)
        frames = caller_frames(
            code,
            key_times=times,
            duration=duration,
            speech_ulaw=speech[offset:] + speech[:offset],
            seq0=1000 + 977 * n,
            ts0=80000 + 160_000 * n,
        )
        ssrc = 0x5EED0000 + n
        path = out_dir / f"caller_audio_{code}.pcap"
        write_pcap(path, ((f.at, f.encode(ssrc)) for f in frames))
        paths.append(path)
    return paths


def scenario_timing(scenario: Path = DTMF_SCENARIO) -> tuple[float, float]:
    """(first key, gap between keys) in seconds, from the pauses of the DTMF-only
    scenario's first code: the pause before its first key, then the equal pauses
    between keys. The captures follow the same timing."""
    text = scenario.read_text()
    branch = re.search(r'<label id="code_[^"]+"/>(.*?)<recv request="BYE"', text, re.S)
    if branch is None:
        raise ValueError(f'{scenario}: no <label id="code_…"/> branch ending in a BYE')
    pauses = [int(p) for p in re.findall(r'<pause milliseconds="(\d+)"/>', branch.group(1))]
    if len(pauses) < 2 or len(set(pauses[1:])) != 1:
        raise ValueError(
            f"{scenario}: expected a first pause then equal pauses between keys, "
            f"found pauses {pauses} ms"
        )
    return pauses[0] / 1000, pauses[1] / 1000


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument(
        "--scenario",
        type=Path,
        default=AUDIO_SCENARIO,
        help="the scenario whose codes to write (default: ivr_load_audio.xml)",
    )
    ap.add_argument(
        "--timing-from",
        type=Path,
        default=DTMF_SCENARIO,
        help="the scenario whose key times to follow (default: ivr_load_dtmf.xml)",
    )
    ap.add_argument(
        "--tail", type=float, default=2.0, help="seconds of speech after the last key (default 2)"
    )
    args = ap.parse_args(argv)
    first_key, key_gap = scenario_timing(args.timing_from)
    paths = write_caller_pcaps(
        args.out_dir,
        scenario_codes(args.scenario),
        first_key=first_key,
        key_gap=key_gap,
        tail=args.tail,
        words_dir=ROOT / "audio" / "words" / "en",
    )
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
