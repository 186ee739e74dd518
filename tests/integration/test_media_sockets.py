"""The media loop's socket reader over real localhost sockets: datagrams waiting in a
leg's sockets are read at the tick with the kernel's arrival times (not the time of the
read), RTCP goes to the RTCP session (on its own port, or multiplexed on RTP's), one
socket gives at most its per-tick share, and removed legs are forgotten."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from hotline.engine.media_loop import MediaCore, MediaLeg, MediaLoop, SocketReader
from hotline.rtp.rtcp import ReceiverReport, ReportBlock, serialize_compound
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

pytestmark = pytest.mark.integration

PAYLOAD = bytes([0xFF]) * 160


def _media(peer_port: int, mux: bool = False) -> NegotiatedMedia:
    return NegotiatedMedia(
        "127.0.0.1", peer_port, "127.0.0.1", peer_port + 1, Codec.PCMU, 0, None, 20,
        Direction.SENDRECV, ((0, Codec.PCMU),), None, rtcp_mux=mux,
    )  # fmt: skip


def _rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, ssrc) + PAYLOAD


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


class Rig:
    """One leg on a core, its two sockets registered with a reader, and a peer."""

    def __init__(self, mux: bool = False, max_per_socket: int = 64) -> None:
        self.core = MediaCore(on_digit=lambda *a: None, on_inactive=lambda key: None)
        self.reader = SocketReader(self.core, time.monotonic, max_per_socket=max_per_socket)
        self.peer = _bound()
        self.rtp, self.rtcp = _bound(), _bound()
        peer_port = self.peer.getsockname()[1]
        self.leg: MediaLeg = self.core.add_leg(
            "a", self.rtp.getsockname()[1], _media(peer_port, mux), time.monotonic()
        )
        self.reader.register(self.rtp, self.leg, rtcp=False)
        self.reader.register(self.rtcp, self.leg, rtcp=True)

    def send_rtp(self, data: bytes) -> None:
        self.peer.sendto(data, self.rtp.getsockname())

    def close(self) -> None:
        self.reader.close()
        for sock in (self.peer, self.rtp, self.rtcp):
            sock.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def _wait_readable(sock: socket.socket, count: int = 1) -> None:
    """Until the kernel holds `count` datagrams for `sock` (loopback is quick, but not
    synchronous)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            held = len(sock.recv(65536, socket.MSG_PEEK)) and True
        except BlockingIOError:
            held = False
        if held and count == 1:
            return
        time.sleep(0.002)
        if held:
            return


def test_a_datagram_is_read_with_its_kernel_arrival_time_not_the_read_time(rig: Rig) -> None:
    sent = time.monotonic()
    rig.send_rtp(_rtp(1))
    _wait_readable(rig.rtp)
    time.sleep(0.15)  # the tick comes much later than the packet
    read_at = time.monotonic()
    assert rig.reader.drain() == 1
    receiver = rig.leg.receiver
    assert receiver.stats().packets == 1
    arrived = receiver.last_activity
    # Within a few ms of the send, and well before the read.
    assert sent - 0.001 <= arrived < sent + 0.05 < read_at
    assert rig.leg.latch.remote == rig.peer.getsockname()  # symmetric RTP latched
    assert rig.reader.drain() == 0  # nothing read twice


def test_every_waiting_datagram_is_read_in_one_drain_in_arrival_order(rig: Rig) -> None:
    for seq in range(1, 11):
        rig.send_rtp(_rtp(seq))
    time.sleep(0.05)
    assert rig.reader.drain() == 10
    stats = rig.leg.receiver.stats()
    assert stats.packets == 10 and stats.late == 0 and stats.duplicates == 0


def test_one_socket_gives_at_most_its_share_per_tick_and_the_rest_waits() -> None:
    rig = Rig(max_per_socket=4)
    try:
        for seq in range(1, 11):
            rig.send_rtp(_rtp(seq))
        time.sleep(0.05)
        assert [rig.reader.drain() for _ in range(4)] == [4, 4, 2, 0]
        assert rig.leg.receiver.stats().packets == 10
        assert rig.reader.datagrams == 10
    finally:
        rig.close()


def _receiver_report() -> bytes:
    return serialize_compound([ReceiverReport(0x1234, (ReportBlock(0x1, 0, 0, 1, 0),))])


def test_rtcp_on_its_own_port_reaches_the_rtcp_session(rig: Rig) -> None:
    rig.peer.sendto(_receiver_report(), rig.rtcp.getsockname())
    time.sleep(0.05)
    assert rig.reader.drain() == 1
    assert rig.leg.rtcp_packets == 1 and rig.leg.rtcp_malformed == 0
    assert rig.leg.receiver.stats().packets == 0  # not taken for RTP


def test_rtcp_multiplexed_on_the_rtp_port_is_told_apart() -> None:
    rig = Rig(mux=True)
    try:
        rig.send_rtp(_receiver_report())
        rig.send_rtp(_rtp(1))
        time.sleep(0.05)
        assert rig.reader.drain() == 2
        assert rig.leg.rtcp_packets == 1
        assert rig.leg.receiver.stats().packets == 1
    finally:
        rig.close()


def test_a_garbage_datagram_is_counted_and_reading_goes_on(rig: Rig) -> None:
    rig.send_rtp(b"\x00")
    rig.send_rtp(_rtp(1))
    time.sleep(0.05)
    assert rig.reader.drain() == 2
    assert rig.leg.receiver.malformed == 1
    assert rig.leg.receiver.stats().packets == 1


def test_an_unregistered_socket_is_no_longer_read(rig: Rig) -> None:
    assert len(rig.reader) == 2
    rig.reader.unregister(rig.rtp)
    rig.reader.unregister(rig.rtp)  # twice is harmless
    assert len(rig.reader) == 1
    rig.send_rtp(_rtp(1))
    time.sleep(0.05)
    assert rig.reader.drain() == 0
    assert rig.leg.receiver.stats().packets == 0


def test_the_media_loop_registers_a_legs_sockets_and_forgets_them_when_it_goes() -> None:
    peer = _bound()
    probe = _bound()  # find a free even port pair for the leg
    port = probe.getsockname()[1] & ~1
    probe.close()

    async def scenario() -> tuple[int, int, bool, int]:
        loop = asyncio.get_running_loop()
        ml = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None, on_inactive=lambda k: None)
        try:
            leg = None
            for candidate in range(port, port + 200, 2):
                try:
                    leg = ml.add_leg("a", candidate, _media(peer.getsockname()[1]))
                    break
                except OSError:
                    continue
            assert leg is not None
            registered = len(ml.reader)
            peer.sendto(_rtp(1), ("127.0.0.1", leg.port))
            for _ in range(100):  # the ticks read it
                await asyncio.sleep(0.02)
                if leg.receiver.stats().packets:
                    break
            heard = leg.receiver.stats().packets
            sockets = list(leg.sockets)
            ml.remove_leg("a")
            return registered, heard, all(s.fileno() == -1 for s in sockets), len(ml.reader)
        finally:
            ml.close()

    try:
        registered, heard, closed, left = asyncio.run(scenario())
    finally:
        peer.close()
    assert registered == 2 and heard == 1
    assert closed and left == 0


def test_a_socket_cannot_be_registered_twice(rig: Rig) -> None:
    with pytest.raises(ValueError, match="already registered"):
        rig.reader.register(rig.rtp, rig.leg, rtcp=False)
    assert len(rig.reader) == 2


def test_a_leg_whose_sockets_cannot_be_registered_is_not_left_behind() -> None:
    async def scenario() -> tuple[bool, int, int]:
        loop = asyncio.get_running_loop()
        ml = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None, on_inactive=lambda k: None)
        register = ml.reader.register
        opened: list[socket.socket] = []

        def failing(sock: socket.socket, leg: MediaLeg, rtcp: bool) -> None:
            opened.append(sock)
            if rtcp:
                raise OSError(28, "No space left on device")  # epoll's answer at its limit
            register(sock, leg, rtcp)

        ml.reader.register = failing  # type: ignore[method-assign]
        try:
            probe = _bound()
            port = probe.getsockname()[1] & ~1
            probe.close()
            raised = False
            for candidate in range(port, port + 200, 2):
                try:
                    ml.add_leg("a", candidate, _media(9))
                except OSError as exc:
                    if exc.errno == 28:
                        raised = True
                        break
            return raised, len(ml.core.legs) + len(ml.reader), sum(s.fileno() != -1 for s in opened)
        finally:
            ml.close()

    raised, left, open_sockets = asyncio.run(scenario())
    assert raised
    assert left == 0  # no leg in the core, no socket in the reader
    assert open_sockets == 0
