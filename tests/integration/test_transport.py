"""SipTransports over real loopback sockets: UDP both ways and both families, TCP
framing, keep-alive pings, broken streams, outbound connections and their reuse, idle
and stuck connections, callback failures and the counters.

Every test runs its own event loop under a 4.5 s bound; pytest-asyncio is not used.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import pytest

from hotline.engine.transport import COUNTERS, LocalAddr, Peer, SipTransports
from hotline.sip.errors import FramingError

pytestmark = pytest.mark.integration

BOUND = 4.5  # seconds any one test may run


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback()
@pytest.fixture
def _ipv6() -> None:
    """IPv6 loopback is part of the transport contract: a host without ::1 fails, loudly."""
    if not HAS_IPV6:
        pytest.fail("this host has no IPv6 loopback (::1); the IPv6 transport tests need it")


needs_ipv6 = pytest.mark.usefixtures("_ipv6")
HOSTS = ["127.0.0.1", "::1"]  # a host without ::1 fails these, it does not skip


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(BOUND):
            await coro

    asyncio.run(bounded())


def request(n: int, body: bytes = b"", *, compact: bool = False) -> bytes:
    length = f"l: {len(body)}" if compact else f"Content-Length: {len(body)}"
    head = (
        f"OPTIONS sip:hotline@example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.test>;tag=f{n}\r\n"
        f"To: <sip:hotline@example.test>\r\n"
        f"Call-ID: call-{n}@example.test\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"{length}\r\n\r\n"
    )
    return head.encode() + body


def response(n: int) -> bytes:
    return (
        f"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n"
        f"From: <sip:alice@example.test>;tag=f{n}\r\nTo: <sip:hotline@example.test>;tag=t\r\n"
        f"Call-ID: call-{n}@example.test\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Inbox:
    """An on_message callback that records what it gets and lets a test wait for it."""

    def __init__(self, fail_first: int = 0) -> None:
        self.items: list[tuple[bytes, Peer, LocalAddr]] = []
        self.fail_first = fail_first
        self.calls = 0
        self._changed = asyncio.Event()

    def __call__(self, data: bytes, peer: Peer, local: LocalAddr) -> None:
        self.calls += 1
        self._changed.set()
        if self.calls <= self.fail_first:
            raise ValueError(f"callback failure {self.calls}")
        self.items.append((data, peer, local))

    async def wait(self, n: int) -> None:
        while len(self.items) < n:
            self._changed.clear()
            await self._changed.wait()

    @property
    def frames(self) -> list[bytes]:
        return [item[0] for item in self.items]


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    deadline = time.monotonic() + 3.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def arrived(t: SipTransports, n: int) -> bool:
    return t.stats()["tcp_bytes_in"] >= n


def udp_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((host, 0))
    return s


def closed_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def recv_datagram(sock: socket.socket) -> tuple[bytes, Any]:
    async with asyncio.timeout(2.0):
        return await asyncio.get_running_loop().sock_recvfrom(sock, 65535)


# -- UDP ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_udp_round_trip(host: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("udp", host, 0)
        assert local.transport == "udp" and local.host == host and local.port > 0
        loop = asyncio.get_running_loop()
        with udp_socket(host) as phone:
            msg = request(1)
            await loop.sock_sendto(phone, msg, (host, local.port))
            await inbox.wait(1)
            data, peer, got_local = inbox.items[0]
            assert data == msg
            assert peer == Peer("udp", host, phone.getsockname()[1])
            assert got_local == local
            t.send(response(1), peer)
            reply, source = await recv_datagram(phone)
            assert reply == response(1)
            assert source[1] == local.port  # sent from the listening socket
        stats = t.stats()
        assert stats["udp_datagrams_in"] == 1 and stats["udp_bytes_in"] == len(msg)
        assert stats["udp_datagrams_out"] == 1 and stats["udp_bytes_out"] == len(response(1))
        assert stats["send_errors"] == 0
        await t.close()

    run(main())


@needs_ipv6
def test_udp_send_uses_the_listener_of_the_destination_family() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        v4 = await t.listen("udp", "127.0.0.1", 0)
        v6 = await t.listen("udp", "::1", 0)
        assert v4.port != 0 and v6.port != 0
        with udp_socket("127.0.0.1") as phone4, udp_socket("::1") as phone6:
            t.send(b"to four", Peer("udp", "127.0.0.1", phone4.getsockname()[1]))
            t.send(b"to six", Peer("udp", "::1", phone6.getsockname()[1]))
            got4, from4 = await recv_datagram(phone4)
            got6, from6 = await recv_datagram(phone6)
        assert (got4, from4[0], from4[1]) == (b"to four", "127.0.0.1", v4.port)
        assert (got6, from6[0], from6[1]) == (b"to six", "::1", v6.port)
        assert t.stats()["udp_datagrams_out"] == 2
        await t.close()

    run(main())


def test_udp_send_without_a_listener_of_that_family_is_dropped_and_counted() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        await t.listen("udp", "127.0.0.1", 0)
        t.send(b"nowhere", Peer("udp", "::1", 5060))  # no IPv6 listener: dropped
        assert t.stats()["send_errors"] == 1
        assert t.stats()["udp_datagrams_out"] == 0
        await t.close()

    run(main())


def test_ephemeral_ports_and_local_addrs() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        udp = await t.listen("udp", "127.0.0.1", 0)
        tcp = await t.listen("TCP", "127.0.0.1", 0)
        assert udp.port > 0 and tcp.port > 0
        assert tcp == LocalAddr("tcp", "127.0.0.1", tcp.port)
        assert t.local_addrs == [udp, tcp]
        _, writer = await asyncio.open_connection("127.0.0.1", tcp.port)  # really listening
        writer.close()
        await t.close()

    run(main())


def test_listen_rejects_an_unknown_transport_and_a_taken_port() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        with pytest.raises(
            ValueError, match="unsupported transport 'sctp': expected 'udp' or 'tcp'"
        ):
            await t.listen("sctp", "127.0.0.1", 0)
        local = await t.listen("udp", "127.0.0.1", 0)
        with pytest.raises(OSError, match=f"cannot listen on udp 127.0.0.1:{local.port}: "):
            await t.listen("udp", "127.0.0.1", local.port)
        await t.close()

    run(main())


def test_udp_keepalives_and_oversize_datagrams_are_not_delivered() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox, max_message=600)
        local = await t.listen("udp", "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        with udp_socket("127.0.0.1") as phone:
            for data in (b"\r\n\r\n", b"\r\n", request(1, b"x" * 600), request(2)):
                await loop.sock_sendto(phone, data, ("127.0.0.1", local.port))
            await inbox.wait(1)
        assert inbox.frames == [request(2)]
        stats = t.stats()
        assert stats["udp_datagrams_in"] == 4
        assert stats["udp_keepalives_in"] == 2
        assert stats["udp_oversize_dropped"] == 1
        await t.close()

    run(main())


def test_udp_send_to_a_closed_port_or_a_bad_port_does_not_raise() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("udp", "127.0.0.1", 0)
        dead = closed_port()
        for _ in range(3):
            t.send(request(1), Peer("udp", "127.0.0.1", dead))
        t.send(request(1), Peer("udp", "127.0.0.1", 0))
        t.send(request(1), Peer("udp", "127.0.0.1", 70000))
        t.send(request(1), Peer("sctp", "127.0.0.1", 5060))
        assert t.stats()["send_errors"] == 3
        await asyncio.sleep(0.05)  # let any ICMP unreachable come back
        # The listener survived all of it.
        with udp_socket("127.0.0.1") as phone:
            await asyncio.get_running_loop().sock_sendto(
                phone, request(2), ("127.0.0.1", local.port)
            )
            await inbox.wait(1)
            t.send(response(2), inbox.items[0][1])
            assert (await recv_datagram(phone))[0] == response(2)
        await t.close()

    run(main())


def test_udp_send_to_a_host_name_resolves_it() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        await t.listen("udp", "127.0.0.1", 0)  # IPv4 only: "localhost" must pick 127.0.0.1
        with udp_socket("127.0.0.1") as phone:
            port = phone.getsockname()[1]
            t.send(b"first", Peer("udp", "localhost", port))
            t.send(b"second", Peer("udp", "localhost", port))  # waits for the same lookup
            assert (await recv_datagram(phone))[0] == b"first"
            assert (await recv_datagram(phone))[0] == b"second"
            t.send(b"third", Peer("udp", "LOCALHOST", port))  # cached: sent at once
            assert t.stats()["udp_datagrams_out"] == 3
            assert (await recv_datagram(phone))[0] == b"third"
        t.send(b"lost", Peer("udp", "bad..label", 5060))  # the resolver refuses the name
        await until(lambda: t.stats()["send_errors"] == 1, "the lookup to fail")
        await t.close()

    run(main())


def test_callback_exception_does_not_kill_the_udp_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        inbox = Inbox(fail_first=2)
        t = SipTransports(inbox)
        local = await t.listen("udp", "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        with udp_socket("127.0.0.1") as phone:
            for n in (1, 2, 3):
                await loop.sock_sendto(phone, request(n), ("127.0.0.1", local.port))
            await inbox.wait(1)
        assert inbox.calls == 3
        assert inbox.frames == [request(3)]
        assert t.stats()["callback_errors"] == 2
        await t.close()

    with caplog.at_level(logging.DEBUG, logger="hotline.transport"):
        run(main())
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1  # the same failure is logged with its traceback once
    assert "on_message raised" in tracebacks[0].getMessage()
    assert "ValueError: callback failure 1" in tracebacks[0].getMessage()


# -- TCP framing ------------------------------------------------------------------------


def test_tcp_message_split_across_three_writes() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        msg = request(1, b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")
        cuts = [0, 17, len(msg) - 9, len(msg)]
        sent = 0
        for a, b in itertools.pairwise(cuts):
            writer.write(msg[a:b])
            await writer.drain()
            sent += b - a
            await until(partial(arrived, t, sent), "bytes to arrive")
            if b < len(msg):
                assert inbox.items == []  # nothing is delivered before the whole message
        await inbox.wait(1)
        data, peer, got_local = inbox.items[0]
        assert data == msg
        assert (peer.transport, peer.host, peer.port) == (
            "tcp",
            "127.0.0.1",
            writer.get_extra_info("sockname")[1],
        )
        assert peer.conn is not None
        assert got_local == local
        assert t.stats()["tcp_messages_in"] == 1
        writer.close()
        await t.close()
        del reader

    run(main())


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_two_messages_in_one_write(host: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("tcp", host, 0)
        assert local.host == host
        _, writer = await asyncio.open_connection(host, local.port)
        writer.write(request(1) + request(2))
        await inbox.wait(2)
        assert inbox.frames == [request(1), request(2)]
        peers = {item[1] for item in inbox.items}
        assert len(peers) == 1  # same connection id for both
        peer = peers.pop()
        assert peer.host == host and peer.port == writer.get_extra_info("sockname")[1]
        assert t.open_connections() == [peer]
        writer.close()
        await until(lambda: t.stats()["tcp_connections_open"] == 0, "the connection to close")
        assert t.stats()["tcp_connections_accepted"] == 1
        assert t.stats()["tcp_connections_closed"] == 1
        await t.close()

    run(main())


def test_tcp_content_length_frames_bodies_with_blank_lines() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("tcp", "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", local.port)
        tricky = b"line one\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 99\r\n\r\n"
        first = request(1, tricky)
        second = request(2, b"0123456789", compact=True)
        third = request(3)
        # A single CRLF between messages is padding (a pong), not a message.
        writer.write(first + second + b"\r\n" + third)
        await inbox.wait(3)
        assert inbox.frames == [first, second, third]
        assert inbox.frames[0].endswith(tricky)
        writer.close()
        await t.close()

    run(main())


def test_tcp_keepalive_ping_is_answered_with_crlf() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(b"\r\n\r\n")
        assert await reader.readexactly(2) == b"\r\n"
        writer.write(b"\r\n\r\n" + request(1))  # a ping, then a message on the same stream
        assert await reader.readexactly(2) == b"\r\n"
        await inbox.wait(1)
        assert inbox.frames == [request(1)]
        stats = t.stats()
        assert stats["tcp_pings_answered"] == 2
        assert stats["tcp_messages_in"] == 1
        assert stats["tcp_bytes_out"] == 4
        writer.close()
        await t.close()

    run(main())


def test_tcp_broken_content_length_reports_then_closes() -> None:
    async def main() -> None:
        inbox = Inbox()
        errors: list[tuple[bytes, Peer, FramingError]] = []

        def on_stream_error(data: bytes, peer: Peer, err: FramingError) -> None:
            errors.append((data, peer, err))
            t.send(b"SIP/2.0 400 Bad Content-Length\r\nContent-Length: 0\r\n\r\n", peer)

        t = SipTransports(inbox, on_stream_error=on_stream_error)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        broken = request(2).replace(b"Content-Length: 0", b"Content-Length: abc") + b"body"
        writer.write(request(1) + broken)
        # The 400 sent from the callback still goes out, then the server closes.
        rest = await reader.read()
        assert rest == b"SIP/2.0 400 Bad Content-Length\r\nContent-Length: 0\r\n\r\n"
        assert inbox.frames == [request(1)]  # the good message before it was delivered
        assert len(errors) == 1
        data, peer, err = errors[0]
        assert data == broken
        assert peer == inbox.items[0][1]
        assert err.status == 400
        assert str(err) == "Content-Length: expected a non-negative integer, found 'abc'"
        # Half-closed, not reset: whatever the peer still sends is read and discarded
        # until it closes too, and the connection is no longer offered for reuse.
        assert t.open_connections() == []
        assert t.stats()["tcp_connections_open"] == 1
        writer.write(b"more of the broken body")
        await writer.drain()
        writer.close()
        await until(lambda: t.stats()["tcp_connections_open"] == 0, "the connection to close")
        assert t.stats()["framing_errors"] == 1
        assert inbox.frames == [request(1)]
        await t.close()

    run(main())


def test_tcp_oversize_message_is_a_513_framing_error() -> None:
    async def main() -> None:
        errors: list[FramingError] = []
        t = SipTransports(
            Inbox(), max_message=400, on_stream_error=lambda data, peer, err: errors.append(err)
        )
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(request(1, b"x" * 500))
        assert await reader.read() == b""  # closed without a word (the callback sent none)
        assert [e.status for e in errors] == [513]
        writer.close()
        await t.close()

    run(main())


def test_callback_exceptions_do_not_kill_a_tcp_connection() -> None:
    async def main() -> None:
        inbox = Inbox(fail_first=1)

        def failing_stream_error(data: bytes, peer: Peer, err: FramingError) -> None:
            raise RuntimeError("engine bug")

        t = SipTransports(inbox, on_stream_error=failing_stream_error)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(request(1) + request(2))
        await inbox.wait(1)
        assert inbox.frames == [request(2)]  # the frame after the failing one still arrived
        writer.write(b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n")
        assert await reader.read() == b""  # a failing on_stream_error still closes
        assert t.stats()["callback_errors"] == 2
        writer.close()
        await t.close()

    run(main())


# -- TCP connections ------------------------------------------------------------------------


def test_tcp_outbound_connection_is_opened_once_and_reused() -> None:
    async def main() -> None:
        accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append((r, w))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        inbox = Inbox()
        t = SipTransports(inbox)
        dest = Peer("tcp", "127.0.0.1", port)
        t.send(request(1), dest)
        t.send(request(2), dest)  # queued on the connection being opened
        assert len(t.open_connections()) == 1
        await until(lambda: len(accepted) == 1, "the connection")
        reader, writer = accepted[0]
        assert await reader.readexactly(len(request(1) + request(2))) == request(1) + request(2)
        [conn] = t.open_connections()
        assert (conn.host, conn.port) == ("127.0.0.1", port) and conn.conn is not None

        writer.write(response(1))  # the answer comes back on the same connection
        await inbox.wait(1)
        data, peer, local = inbox.items[0]
        assert data == response(1)
        assert peer == conn
        assert (local.transport, local.port) == ("tcp", writer.get_extra_info("peername")[1])

        t.send(request(3), peer)  # by connection id
        t.send(request(4), dest)  # by address: reused
        assert await reader.readexactly(len(request(3) + request(4))) == request(3) + request(4)
        assert len(accepted) == 1
        stats = t.stats()
        assert stats["tcp_connections_opened"] == 1
        assert stats["tcp_connections_accepted"] == 0
        assert stats["tcp_connections_open"] == 1
        assert stats["send_errors"] == 0
        await t.close()
        assert await reader.read() == b""  # close() closed it
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(main())


def test_tcp_reply_without_conn_id_reuses_the_accepted_connection() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(request(1))
        await inbox.wait(1)
        peer = inbox.items[0][1]
        t.send(response(1), Peer("tcp", peer.host, peer.port))  # no conn id
        assert await reader.readexactly(len(response(1))) == response(1)
        t.send(response(1), Peer("tcp", peer.host, peer.port, conn=10_000))  # stale id
        assert await reader.readexactly(len(response(1))) == response(1)
        assert t.stats()["tcp_connections_opened"] == 0
        writer.close()
        await t.close()

    run(main())


def test_tcp_connect_refused_drops_the_queued_messages() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        dest = Peer("tcp", "127.0.0.1", closed_port(socket.SOCK_STREAM))
        t.send(request(1), dest)
        t.send(request(2), dest)
        await until(lambda: t.stats()["tcp_connect_errors"] == 1, "the connect to fail")
        stats = t.stats()
        assert stats["send_errors"] == 2
        assert stats["tcp_connections_opened"] == 0
        assert stats["tcp_connections_open"] == 0
        assert t.open_connections() == []
        await t.close()

    run(main())


def test_tcp_idle_connections_are_closed_and_active_ones_kept() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox, tcp_idle_timeout=0.3)
        local = await t.listen("tcp", "127.0.0.1", 0)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", local.port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", local.port)
        idle_w.write(request(1))
        await inbox.wait(1)
        started = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            closed = tg.create_task(idle_r.read())
            for _ in range(12):  # 0.6 s of pings, one every 0.05 s
                busy_w.write(b"\r\n\r\n")
                assert await busy_r.readexactly(2) == b"\r\n"
                await asyncio.sleep(0.05)
        assert closed.result() == b""
        assert time.monotonic() - started >= 0.3
        stats = t.stats()
        assert stats["tcp_idle_closed"] == 1
        assert len(t.open_connections()) == 1  # the pinging one is still open
        busy_w.write(request(2))
        await inbox.wait(2)
        idle_w.close()
        busy_w.close()
        await t.close()

    run(main())


def test_tcp_peer_that_stops_reading_is_cut_off() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox, write_limit=64 * 1024)
        local = await t.listen("tcp", "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(request(1))
        await inbox.wait(1)
        peer = inbox.items[0][1]
        chunk = b"x" * 65536
        for _ in range(2000):  # the reader never reads: kernel buffers fill, then ours
            t.send(chunk, peer)
            if t.stats()["tcp_overflow_closed"]:
                break
        assert t.stats()["tcp_overflow_closed"] == 1
        await until(lambda: t.stats()["tcp_connections_open"] == 0, "the abort")
        assert t.open_connections() == []
        writer.close()
        await t.close()

    run(main())


def test_tcp_burst_below_the_write_limit_is_delivered_whole() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox, write_limit=32 * 1024 * 1024)
        local = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", local.port)
        writer.write(request(1))
        await inbox.wait(1)
        peer = inbox.items[0][1]
        chunk = b"y" * 65536
        for _ in range(128):  # 8 MiB at once: more than the kernel takes, less than the limit
            t.send(chunk, peer)
        assert t.stats()["tcp_overflow_closed"] == 0
        assert await reader.readexactly(128 * len(chunk)) == chunk * 128
        assert t.stats()["tcp_bytes_out"] == 128 * len(chunk)
        assert t.open_connections() == [peer]
        writer.close()
        await t.close()

    run(main())


def test_tcp_connections_beyond_the_limit_are_refused() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox, max_tcp_connections=1)
        local = await t.listen("tcp", "127.0.0.1", 0)
        _, first = await asyncio.open_connection("127.0.0.1", local.port)
        first.write(request(1))
        await inbox.wait(1)
        second_r, second_w = await asyncio.open_connection("127.0.0.1", local.port)
        assert await second_r.read() == b""  # closed at once
        assert t.stats()["tcp_connections_rejected"] == 1
        first.write(request(2))
        await inbox.wait(2)
        assert t.stats()["tcp_connections_open"] == 1
        first.close()
        second_w.close()
        await t.close()

    run(main())


# -- lifecycle and counters -----------------------------------------------------------------------


def test_close_releases_sockets_and_later_sends_are_dropped() -> None:
    async def main() -> None:
        t = SipTransports(Inbox())
        udp = await t.listen("udp", "127.0.0.1", 0)
        tcp = await t.listen("tcp", "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.port)
        await until(lambda: t.stats()["tcp_connections_open"] == 1, "the accept")
        await t.close()
        await t.close()  # idempotent
        assert await reader.read() == b""
        assert t.stats()["tcp_connections_open"] == 0
        t.send(b"late", Peer("udp", "127.0.0.1", udp.port))
        assert t.stats()["send_errors"] == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", udp.port))  # the UDP port is free again
        with pytest.raises(RuntimeError, match="cannot listen: the transports are closed"):
            await t.listen("udp", "127.0.0.1", 0)
        writer.close()

    run(main())


def test_stats_has_every_counter_and_counts_both_transports() -> None:
    async def main() -> None:
        inbox = Inbox()
        t = SipTransports(inbox)
        assert t.stats() == dict.fromkeys(COUNTERS, 0)
        udp = await t.listen("udp", "127.0.0.1", 0)
        tcp = await t.listen("tcp", "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        with udp_socket("127.0.0.1") as phone:
            await loop.sock_sendto(phone, request(1), ("127.0.0.1", udp.port))
            await inbox.wait(1)
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.port)
        writer.write(request(2))
        await inbox.wait(2)
        t.send(response(2), inbox.items[1][1])
        assert await reader.readexactly(len(response(2))) == response(2)
        stats = t.stats()
        assert stats["udp_datagrams_in"] == 1 and stats["udp_bytes_in"] == len(request(1))
        assert stats["tcp_messages_in"] == 1 and stats["tcp_bytes_in"] == len(request(2))
        assert stats["tcp_bytes_out"] == len(response(2))
        assert stats["tcp_connections_accepted"] == 1 and stats["tcp_connections_open"] == 1
        assert stats["send_errors"] == stats["framing_errors"] == stats["callback_errors"] == 0
        stats["udp_datagrams_in"] = 99
        assert t.stats()["udp_datagrams_in"] == 1  # a copy, not the live counters
        writer.close()
        await t.close()

    run(main())
