"""Media worker processes over real sockets: the channel (framing, sockets passed,
back-pressure, the other end going), and `MediaWorkers` — legs placed with the leg
they will be bridged to, audio bridged inside a worker and measured at the far peer,
figures, recordings and key presses coming back, a port free again once its leg has ended, and a
worker that dies replaced, its legs reported inactive."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import struct
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hotline.engine.media_loop import DtmfMethod, LegSummary, Role
from hotline.engine.media_workers import CHUNK, Channel, MediaUnavailable, MediaWorkers
from hotline.media import g711
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

pytestmark = pytest.mark.integration


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


# -- the channel ----------------------------------------------------------------------------


class Pair:
    """Two channels joined by a socketpair, each keeping what it receives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.got: list[tuple[Any, list[int]]] = []
        self.closed = 0
        self.a = Channel(loop, a, lambda m, fds: None, lambda: None)
        self.b = Channel(loop, b, self._got, self._closed)

    def _got(self, message: Any, fds: list[int]) -> None:
        self.got.append((message, fds))

    def _closed(self) -> None:
        self.closed += 1


def test_messages_of_any_size_arrive_whole_and_in_order() -> None:
    async def go() -> None:
        pair = Pair(asyncio.get_running_loop())
        big = np.arange(3 * CHUNK, dtype=np.int16)  # six datagrams' worth
        sent = [("small", 1), ("big", big), ("empty", b""), ("after", 2)]
        for message in sent:
            pair.a.send(message)
        assert await until(lambda: len(pair.got) == 4)
        kinds = [m[0] for m, _ in pair.got]
        assert kinds == ["small", "big", "empty", "after"]
        assert np.array_equal(pair.got[1][0][1], big)
        assert all(fds == [] for _, fds in pair.got)

    run(go())


def test_a_full_socket_makes_sends_wait_in_order_without_blocking() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        got: list[Any] = []
        sender = Channel(loop, a, lambda m, fds: None, lambda: None)
        # The receiver is not reading yet: its socket fills and the sender queues.
        blob = os.urandom(CHUNK * 4)
        for i in range(60):
            sender.send((i, blob))
        assert sender.backlog > 0
        receiver = Channel(loop, b, lambda m, fds: got.append(m), lambda: None)
        assert await until(lambda: len(got) == 60, 10)
        assert [m[0] for m in got] == list(range(60))
        assert all(m[1] == blob for m in got)
        assert await until(lambda: sender.backlog == 0)
        sender.close()
        receiver.close()

    run(go())


def test_sockets_ride_with_their_message_and_the_senders_copies_are_closed() -> None:
    async def go() -> None:
        pair = Pair(asyncio.get_running_loop())
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        pair.a.send(("add", port), [udp])
        assert await until(lambda: len(pair.got) == 1)
        assert udp.fileno() == -1  # the channel closed the sender's copy once sent
        message, fds = pair.got[0]
        assert message == ("add", port) and len(fds) == 1
        received = socket.socket(fileno=fds[0])
        assert received.getsockname()[1] == port  # the same bound socket
        received.close()

    run(go())


def test_the_other_end_going_is_reported_once_and_sends_then_fail() -> None:
    async def go() -> None:
        pair = Pair(asyncio.get_running_loop())
        pair.a.close()
        assert await until(lambda: pair.closed == 1)
        await asyncio.sleep(0.05)
        assert pair.closed == 1
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(BrokenPipeError):
            pair.b.send(("late",), [udp])
        assert udp.fileno() == -1  # not leaked

    run(go())


def test_a_message_is_pickled_once_per_send() -> None:
    # The framing carries pickle's bytes unchanged: what arrives equals what was sent.
    async def go() -> None:
        pair = Pair(asyncio.get_running_loop())
        message = {"load": 0.5, "tick": ([1, 2, 3], 0.25, 6), "role": Role.WHISPER}
        pair.a.send(message)
        assert await until(lambda: len(pair.got) == 1)
        assert pair.got[0][0] == pickle.loads(pickle.dumps(message))

    run(go())


# -- the workers -------------------------------------------------------------------------------


def _peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_pair() -> int:
    """An even port whose pair (p, p+1) is free on 127.0.0.1."""
    for _ in range(200):
        probe = _peer()
        port = int(probe.getsockname()[1])
        probe.close()
        if port % 2 or port > 65000:
            continue
        try:
            a, b = (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            )
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))
            a.close()
            b.close()
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def _media(peer: socket.socket, te: int | None = None) -> NegotiatedMedia:
    port = peer.getsockname()[1]
    return NegotiatedMedia(
        "127.0.0.1", port, "127.0.0.1", 0, Codec.PCMU, 0, te, 20,
        Direction.SENDRECV, ((0, Codec.PCMU),), te,
    )  # fmt: skip


def _press(peer: socket.socket, port: int, digit: int, seq: int) -> None:
    """One RFC 4733 key press from `peer`: 80 ms of event packets, then three ends."""
    ts = 160 * seq
    for i in range(4):
        payload = struct.pack("!BBH", digit, 10, 160 * (i + 1))
        peer.sendto(struct.pack("!BBHII", 0x80, 101 | (0x80 if i == 0 else 0), seq + i, ts,
                                0x2000) + payload, ("127.0.0.1", port))  # fmt: skip
    for i in range(3):
        payload = struct.pack("!BBH", digit, 0x80 | 10, 640)
        peer.sendto(struct.pack("!BBHII", 0x80, 101, seq + 4 + i, ts, 0x2000) + payload,
                    ("127.0.0.1", port))  # fmt: skip


def _level(samples: np.ndarray, freq: float) -> float:
    x = samples.astype(np.float64)
    t = np.arange(x.size) / 8000
    return float(2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) / max(1, x.size))


class Events:
    def __init__(self) -> None:
        self.digits: list[tuple[Any, str, DtmfMethod]] = []
        self.inactive: list[Any] = []
        self.played: list[tuple[Any, Any, bool]] = []

    def workers(self, loop: asyncio.AbstractEventLoop, n: int, **kw: Any) -> MediaWorkers:
        return MediaWorkers(
            loop, "127.0.0.1", workers=n,
            on_digit=lambda key, digit, method: self.digits.append((key, digit, method)),
            on_inactive=self.inactive.append,
            on_play_done=lambda key, tag, done: self.played.append((key, tag, done)),
            **kw,
        )  # fmt: skip


def _one_worker() -> tuple[Events, MediaWorkers, socket.socket, int]:
    """One worker on the running loop, recording its events; a peer; a free port pair."""
    events = Events()
    return events, events.workers(asyncio.get_running_loop(), 1), _peer(), _free_pair()


async def _talk(
    legs: dict[str, tuple[int, socket.socket]], tones: dict[str, float], seconds: float
) -> dict[str, bytes]:
    """Each peer sends its tone to its leg every 20 ms for `seconds`; returns what each
    peer received (payloads, in arrival order)."""
    heard: dict[str, list[bytes]] = {name: [] for name in legs}
    t = np.arange(160) / 8000
    for i in range(int(seconds / 0.02)):
        for name, (port, peer) in legs.items():
            freq = tones.get(name)
            samples = (
                np.zeros(160) if freq is None else 6000 * np.sin(2 * np.pi * freq * (t + i * 0.02))
            )
            codes = g711.ulaw_encode(samples.astype(np.int16)).tobytes()
            header = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 160 * i, 0x1000 + port)
            peer.sendto(header + codes, ("127.0.0.1", port))
            while True:
                try:
                    data = peer.recv(2048)
                except BlockingIOError:
                    break
                if len(data) > 12 and data[1] & 0x7F == 0:
                    heard[name].append(data[12:])
        await asyncio.sleep(0.02)
    return {name: b"".join(chunks) for name, chunks in heard.items()}


def _decoded(payload: bytes, seconds: float) -> np.ndarray:
    codes = np.frombuffer(payload, dtype=np.uint8)[-int(seconds * 8000) :]
    return g711.ulaw_decode(codes)


def test_a_bridge_is_served_by_one_worker_and_each_side_hears_the_other() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        events = Events()
        media = events.workers(loop, 2)
        peers = {"caller": _peer(), "agent": _peer(), "other": _peer()}
        ports = {}
        try:
            for name in ("caller", "agent", "other"):
                ports[name] = _free_pair()
            media.add_leg("caller", ports["caller"], _media(peers["caller"]))
            media.add_leg("agent", ports["agent"], _media(peers["agent"]), near="caller")
            # Both workers idle: a leg with no `near` goes to the one with fewer legs.
            media.add_leg("other", ports["other"], _media(peers["other"]))
            assert media.worker_of("agent") == media.worker_of("caller")
            assert media.worker_of("other") != media.worker_of("caller")
            assert media.leg_count == 3 and media.has_leg("agent")
            media.join("caller", "bridge:1")
            media.join("agent", "bridge:1")
            with pytest.raises(ValueError, match="mixed by media worker"):
                media.join("other", "bridge:1")
            with pytest.raises(ValueError, match="coach"):
                media.join("other", "bridge:2", role=Role.WHISPER)
            with pytest.raises(KeyError):
                media.join("nobody", "bridge:1")
            legs = {n: (ports[n], peers[n]) for n in ("caller", "agent")}
            heard = await _talk(legs, {"caller": 700.0, "agent": 1100.0}, 2.0)
            by_agent = _decoded(heard["agent"], 0.8)
            by_caller = _decoded(heard["caller"], 0.8)
            assert _level(by_agent, 700.0) > 2000, _level(by_agent, 700.0)
            assert _level(by_agent, 1100.0) < 300  # mix-minus: never its own voice
            assert _level(by_caller, 1100.0) > 2000, _level(by_caller, 1100.0)
            assert _level(by_caller, 700.0) < 300
            # The workers' figures reach the engine's metrics.
            assert await until(lambda: media.rtp_totals()["packets_in"] >= 150)
            assert media.jitter_totals()["played"] > 0
            assert media.tick_seconds.count > 0 and media.load > 0
            assert not media.overloaded()
            # Ending a leg gives its figures once its worker closed its sockets: the
            # port can be bound again at once.
            summary = await media.end_leg("agent")
            assert isinstance(summary, LegSummary)
            assert summary.packets_in >= 80 and summary.packets_out >= 50, summary
            assert summary.quality is not None
            assert not media.has_leg("agent")
            again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            again.bind(("127.0.0.1", ports["agent"]))
            again.close()
            assert await media.end_leg("agent") is None  # no such leg any more
        finally:
            media.close()
            for peer in peers.values():
                peer.close()
        assert all(p.proc.poll() is not None for p in media.processes)

    run(go(), 60)


def test_plays_recordings_and_key_presses_go_through_the_worker(tmp_path: Path) -> None:
    async def go() -> None:
        events, media, peer, port = _one_worker()
        try:
            media.add_leg("a", port, _media(peer, te=101))
            with pytest.raises(ValueError, match="exists"):
                media.add_leg("a", port, _media(peer))
            beep = (3000 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)).astype(np.int16)
            media.start_recording("a")
            media.play("a", beep, tag=("test", 1))
            await _talk({"a": (port, peer)}, {"a": 941.0}, 1.2)
            assert ("a", ("test", 1), True) in events.played
            # A key pressed at the peer (RFC 4733) reaches the engine's digit callback.
            _press(peer, port, 5, 100)
            assert await until(lambda: ("a", "5", DtmfMethod.RFC4733) in events.digits)
            path = tmp_path / "a.wav"
            written = await media.stop_recording("a", path)
            assert written == str(path)
            with wave.open(str(path)) as wav:
                assert wav.getnchannels() == 2 and wav.getnframes() > 4000
            assert oct(path.stat().st_mode & 0o777) == "0o600"
            assert await media.stop_recording("a", tmp_path / "b.wav") is None  # not recording
            assert not (tmp_path / "b.wav").exists()
        finally:
            media.close()
            peer.close()

    run(go(), 60)


def test_a_worker_that_dies_is_replaced_and_its_legs_reported_inactive() -> None:
    async def go() -> None:
        events, media, peer, port = _one_worker()
        try:
            media.add_leg("a", port, _media(peer))
            await _talk({"a": (port, peer)}, {}, 0.6)
            assert await until(lambda: media.rtp_totals()["packets_in"] > 0)
            before = media.rtp_totals()["packets_in"]
            first = media.processes[0].proc
            os.kill(first.pid, signal.SIGKILL)
            assert await until(lambda: events.inactive == ["a"])
            assert media.restarts == 1 and not media.has_leg("a")
            # It died young, so its replacement comes after a pause; meanwhile there is
            # nowhere to serve a leg, and new calls are refused.
            assert media.overloaded() and not media.available
            with pytest.raises(MediaUnavailable):
                media.add_leg("b", port, _media(peer))
            assert await until(lambda: media.available, 5)
            assert media.processes[0].proc.pid != first.pid
            assert await until(lambda: first.poll() is not None)
            assert first.returncode == -signal.SIGKILL
            # The counters of the dead worker are kept: they never run backwards.
            assert media.rtp_totals()["packets_in"] >= before
            # The new worker serves legs (the port was freed when the old one died).
            media.add_leg("b", port, _media(peer))
            await _talk({"b": (port, peer)}, {}, 0.6)
            assert await until(lambda: media.rtp_totals()["packets_in"] > before)
            assert (await media.end_leg("b")) is not None
        finally:
            media.close()
            peer.close()

    run(go(), 60)
