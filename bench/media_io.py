"""Benchmark: the media plane with its sockets — N bridged legs on one `MediaLoop`, fed
real RTP over loopback, two ways of reading the sockets in the same run.

* **tick** (what the engine does): `SocketReader` — every leg's sockets read at the start
  of each 20 ms tick, one readiness poll for all of them, kernel arrival timestamps.
* **protocol** (the baseline, what the engine did before): one asyncio
  `DatagramProtocol` per socket, `MediaCore.receive_rtp` called from each datagram's
  readiness callback with the loop's time.

Everything else is the engine's: legs joined two by two into conferences (adaptive
jitter buffer, concealment, mix-minus), each leg sending one 20 ms PCMU packet per tick
from its own socket, RTCP on. The peer is a separate process (`--feeder`) with one
socket per leg: it sends each leg one packet every 20 ms (speech-like µ-law; each leg
at its own phase in the 20 ms period, so arrivals spread as real calls' do), and reads
and counts every packet the engine sends back — on loopback the sender pays for the
kernel's delivery, so a peer that did not read would flatter the engine.

Measured over the middle `--seconds` of each run (after a 3 s warm-up), in the engine
process only: CPU (user + system, `resource.getrusage`), as % of one core, per bridge
and per leg per tick in µs; the media tick's duration (p50/p99 from its histogram,
which for **tick** includes the reading), the tick load the engine refuses calls above
(0.8), ticks skipped, and packets: sent by the peer, read by the engine, sent by the
engine, received by the peer. The ratio printed is protocol's CPU over tick's.

Run: ``python bench/media_io.py [--bridges 100,200,400] [--seconds 15] [--modes
tick,protocol]``. Loopback only; every process is bounded in time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import math
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.engine.media_loop import TICK_BUCKETS, Histogram, MediaLeg, MediaLoop
from hotline.media import g711
from hotline.rtp.stream import Address
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

PERIOD = 0.020
WARMUP = 3.0
FIRST_PORT = 42000
MODES = ("tick", "protocol")


# -- the peer ---------------------------------------------------------------------------


def _speechlike(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    t = np.arange(n) / 8000
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 8000
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(np.float64)
    signal = 3000 * voice * envelope + rng.normal(0, 30, n)
    return bytes(g711.ulaw_encode(np.clip(signal, -32768, 32767).astype(np.int16)))


def feeder(legs: int, seconds: float) -> None:
    """The peer process: binds one socket per leg, prints their ports as a JSON line,
    waits for the engine's ports on stdin, then sends and reads for `seconds`."""
    sockets = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    print(json.dumps([s.getsockname()[1] for s in sockets]), flush=True)
    targets: list[int] = json.loads(sys.stdin.readline())
    audio = _speechlike(10.0, 7)
    frames = len(audio) // 160
    header = struct.Struct("!BBHII")
    sent = received = 0
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    start = time.monotonic()
    phase = [i / legs * PERIOD for i in range(legs)]
    order = sorted(range(legs), key=lambda i: phase[i])
    packet_index = 0
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        k = packet_index // legs
        i = order[packet_index % legs]
        due = start + k * PERIOD + phase[i]
        if due > now:
            for key, _ in selector.select(min(due - now, 0.002)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                while True:
                    try:
                        sock.recv(2048)
                    except BlockingIOError:
                        break
                    received += 1
            continue
        frame = k % frames
        data = header.pack(0x80, 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x10000 + i)
        try:
            sockets[i].sendto(
                data + audio[frame * 160 : frame * 160 + 160], ("127.0.0.1", targets[i])
            )
            sent += 1
        except OSError:
            pass
        packet_index += 1
    print(json.dumps({"sent": sent, "received": received}), flush=True)


# -- the engine side --------------------------------------------------------------------


class _Protocol(asyncio.DatagramProtocol):
    """The baseline: what the engine did before `SocketReader` — a readiness callback
    per datagram."""

    def __init__(self, loop: MediaLoop, leg: MediaLeg, rtcp: bool) -> None:
        self.media, self.leg, self.rtcp = loop, leg, rtcp
        self.time = loop.loop.time

    def datagram_received(self, data: bytes, addr: Address) -> None:
        core = self.media.core
        if self.rtcp:
            core.receive_rtcp(self.leg, data, addr, self.time(), 0)
        else:
            core.receive_rtp(self.leg, data, addr, self.time())
        self.media.reader.datagrams += 1


@dataclass
class Result:
    mode: str
    bridges: int
    cpu_percent: float  # of one core, engine process
    user_percent: float
    system_percent: float
    per_bridge_percent: float
    per_leg_tick_us: float
    tick_p50_ms: float
    tick_p99_ms: float
    load: float
    skipped: int
    peer_sent: int
    engine_read: int
    engine_sent: int
    peer_received: int


def _quantile(histogram: Any, q: float) -> float:
    cumulative = histogram.cumulative()
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return math.nan
    want = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in cumulative:
        if count >= want:
            if math.isinf(bound):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (want - lower_count) / span if span else 1
            )
        lower_bound, lower_count = bound, count
    return lower_bound


async def _engine(mode: str, bridges: int, seconds: float) -> Result:
    legs = 2 * bridges
    loop = asyncio.get_running_loop()
    peer = subprocess.Popen(
        [sys.executable, __file__, "--feeder", str(legs), "--seconds", str(seconds + WARMUP + 2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert peer.stdin is not None and peer.stdout is not None
    media_loop = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None, on_inactive=lambda k: None)
    transports: list[asyncio.BaseTransport] = []
    try:
        peer_ports: list[int] = json.loads(await loop.run_in_executor(None, peer.stdout.readline))
        ours: list[int] = []
        port = FIRST_PORT
        for i, peer_port in enumerate(peer_ports):
            media = NegotiatedMedia(
                "127.0.0.1", peer_port, "127.0.0.1", 0, Codec.PCMU, 0, None, 20,
                Direction.SENDRECV, ((0, Codec.PCMU),), None,
            )  # fmt: skip
            while True:
                try:
                    leg = media_loop.add_leg(i, port, media)
                    break
                except OSError:
                    port += 2
            ours.append(port)
            port += 2
            media_loop.core.join(i, i // 2)
            if mode == "protocol":
                for sock, rtcp in zip(leg.sockets, (False, True), strict=True):
                    media_loop.reader.unregister(sock)
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda leg=leg, rtcp=rtcp: _Protocol(media_loop, leg, rtcp), sock=sock
                    )
                    transports.append(transport)
        peer.stdin.write(json.dumps(ours) + "\n")
        peer.stdin.flush()
        await asyncio.sleep(WARMUP)
        before = resource.getrusage(resource.RUSAGE_SELF)
        read0 = media_loop.reader.datagrams
        sent0 = media_loop.core.rtp_totals().get("packets_out", 0)
        skipped0 = media_loop.schedule.skipped_ticks
        media_loop.tick_seconds = Histogram(TICK_BUCKETS)  # the measured window only
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        user = (after.ru_utime - before.ru_utime) / elapsed * 100
        system = (after.ru_stime - before.ru_stime) / elapsed * 100
        cpu = user + system
        read = media_loop.reader.datagrams - read0
        sent = media_loop.core.rtp_totals().get("packets_out", 0) - sent0
        result = Result(
            mode=mode,
            bridges=bridges,
            cpu_percent=cpu,
            user_percent=user,
            system_percent=system,
            per_bridge_percent=cpu / bridges,
            per_leg_tick_us=cpu / 100 * PERIOD / legs * 1e6,
            tick_p50_ms=_quantile(media_loop.tick_seconds, 0.5) * 1e3,
            tick_p99_ms=_quantile(media_loop.tick_seconds, 0.99) * 1e3,
            load=media_loop.load,
            skipped=media_loop.schedule.skipped_ticks - skipped0,
            peer_sent=0,
            engine_read=read,
            engine_sent=sent,
            peer_received=0,
        )
    finally:
        for transport in transports:
            transport.close()
        media_loop.close()
    out, _ = await loop.run_in_executor(None, peer.communicate)
    counts = json.loads(out.strip().splitlines()[-1])
    result.peer_sent, result.peer_received = counts["sent"], counts["received"]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bridges", default="100,200,400", help="bridges per run, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    ap.add_argument("--modes", default="tick,protocol", help="tick, protocol or both")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--feeder", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.feeder is not None:
        feeder(args.feeder, args.seconds)
        return 0
    if not 1 <= args.seconds <= 300:
        ap.error("--seconds: 1 to 300")
    levels = [int(x) for x in args.bridges.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            ap.error(f"--modes: unknown mode {mode!r} (tick, protocol)")
    print(
        f"media_io: {os.cpu_count()} CPUs; {args.seconds:g} s measured per run after {WARMUP:g} s"
    )
    print(
        f"{'mode':9} {'bridges':>7} {'CPU %':>6} {'usr':>5} {'sys':>5} {'/bridge':>8}"
        f" {'µs/leg':>7} {'tick p50/p99 ms':>16} {'load':>5} {'skip':>5}"
        f" {'peer→':>8} {'read':>8} {'sent':>8} {'→peer':>8}"
    )
    results: list[Result] = []
    for bridges in levels:
        by_mode: dict[str, Result] = {}
        for mode in modes:
            r = asyncio.run(_engine(mode, bridges, args.seconds))
            by_mode[mode] = r
            results.append(r)
            print(
                f"{r.mode:9} {r.bridges:7d} {r.cpu_percent:6.1f} {r.user_percent:5.1f}"
                f" {r.system_percent:5.1f} {r.per_bridge_percent:8.3f} {r.per_leg_tick_us:7.1f}"
                f" {r.tick_p50_ms:7.2f} / {r.tick_p99_ms:6.2f} {r.load:5.2f} {r.skipped:5d}"
                f" {r.peer_sent:8d} {r.engine_read:8d} {r.engine_sent:8d} {r.peer_received:8d}",
                flush=True,
            )
        if "tick" in by_mode and "protocol" in by_mode:
            ratio = by_mode["protocol"].cpu_percent / by_mode["tick"].cpu_percent
            print(f"  {bridges} bridges: protocol / tick CPU = {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
