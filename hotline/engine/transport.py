"""SIP transports over asyncio: UDP datagrams and TCP streams (RFC 3261 §18).

Owns the sockets the SIP layer talks through: listening on UDP and TCP addresses (IPv4
and IPv6), cutting TCP byte streams into messages with the core's `StreamFramer`,
answering RFC 5626 CRLF keep-alive pings, keeping a table of open TCP connections for
reuse (RFC 3261 §18.2.2, indexed by remote host and port), opening outbound connections
on demand, closing idle and stuck connections, and counting what went in and out.

Must not know SIP beyond framing: it never parses a message, never builds a response and
never decides where a message goes. The `Peer` it hands to `on_message` is what the core
gives back to `send()`. Network failures never escape `send()`: they are logged, counted
and the message is dropped, as a datagram network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import itertools
import logging
import socket
import traceback
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any, NamedTuple, cast

from hotline.sip.addr import Peer
from hotline.sip.errors import FramingError
from hotline.sip.message import StreamFramer

__all__ = ["LocalAddr", "Peer", "SipTransports"]

log = logging.getLogger("hotline.transport")

SOCKET_BUFFER = 4 * 1024 * 1024  # bytes asked for SO_RCVBUF and SO_SNDBUF of UDP sockets
# asyncio reads one datagram per socket per turn of the loop; a turn that also runs a
# media tick and hundreds of RTP reads is long, so SIP would queue behind media. Each
# readiness of a SIP socket drains up to this many datagrams at once instead.
UDP_DRAIN = 64
MAX_DATAGRAM = 65536  # a UDP payload is at most 65,507 bytes: one read takes any
WRITE_HIGH_WATER = 1024 * 1024  # bytes buffered towards one peer before it counts as stuck
CONNECT_TIMEOUT = 10.0  # seconds for DNS resolution or a TCP connect to finish
CLOSE_LINGER = 5.0  # seconds a closing connection may take to flush before it is aborted
LISTEN_BACKLOG = 1024  # pending TCP connections the kernel may queue per listener
MAX_TCP_CONNECTIONS = 4096  # open (or opening) TCP connections, inbound and outbound
DNS_CACHE_TTL = 60.0  # seconds a resolved host name is reused
DNS_CACHE_SIZE = 1024  # host names remembered
SWEEP_MAX_INTERVAL = 30.0  # seconds between two idle sweeps at most
SWEEP_MIN_INTERVAL = 0.01  # seconds between two idle sweeps at least
SEEN_ERRORS_MAX = 1024  # distinct error keys remembered for log-once purposes
CRLF = b"\r\n"  # the pong answering a double-CRLF ping (RFC 5626 §4.4.1)

TRANSPORTS = ("udp", "tcp")

COUNTERS = (
    "udp_datagrams_in",
    "udp_datagrams_out",
    "udp_bytes_in",
    "udp_bytes_out",
    "udp_keepalives_in",
    "udp_oversize_dropped",
    "udp_errors",
    "tcp_messages_in",
    "tcp_bytes_in",
    "tcp_bytes_out",
    "tcp_pings_answered",
    "tcp_connections_open",
    "tcp_connections_accepted",
    "tcp_connections_opened",
    "tcp_connections_closed",
    "tcp_connections_rejected",
    "tcp_connect_errors",
    "tcp_idle_closed",
    "tcp_overflow_closed",
    "send_errors",
    "framing_errors",
    "callback_errors",
)


class LocalAddr(NamedTuple):
    """A local transport address: a listener's bound address, or the local end of an
    outbound TCP connection (host is an IP literal, IPv6 without brackets)."""

    transport: str
    host: str
    port: int


MessageCallback = Callable[[bytes, Peer, LocalAddr], None]
StreamErrorCallback = Callable[[bytes, Peer, FramingError], None]


class CloseMode(enum.Enum):
    LINGER = "linger"  # flush, send FIN, keep reading (and discarding) until the peer's FIN
    FLUSH = "flush"  # flush what was written, then close
    ABORT = "abort"  # drop what was written and reset the connection


class ConnState(enum.Enum):
    CONNECTING = "connecting"  # outbound, connect in progress; writes are queued
    OPEN = "open"
    CLOSING = "closing"  # close() called; flushing what was written, no new writes
    CLOSED = "closed"


@lru_cache(maxsize=4096)
def ip_literal(host: str) -> str | None:
    """The canonical text of an IP literal (brackets around IPv6 removed), or None when
    `host` is a host name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        return None


def family_of(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _family_name(family: int) -> str:
    return "IPv6" if family == socket.AF_INET6 else "IPv4"


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _grow_buffers(sock: socket.socket) -> None:
    """Ask for large kernel buffers so bursts of datagrams are not dropped; the kernel may
    cap or refuse the request, which is fine."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


def _bound_socket(family: int, kind: int, addr: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            _grow_buffers(sock)
        if family == socket.AF_INET6:
            # One listener per family: "::" must not also take IPv4 (mapped) traffic.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def _datagram_backlog(transport: asyncio.DatagramTransport) -> int:
    """Bytes the datagram transport holds because the kernel said EAGAIN (asyncio's
    datagram transports have the method; the abstract class does not declare it)."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if callable(size) else 0


class _UdpListener(asyncio.DatagramProtocol):
    """One bound UDP socket: hands datagrams to the owner and reports send failures."""

    def __init__(self, owner: SipTransports, family: int) -> None:
        self.owner = owner
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None
        self.local = LocalAddr("udp", "", 0)
        self.sending = False  # inside transport.sendto(): errors reported now are ours
        self.send_error: Exception | None = None
        self.sock: socket.socket | None = None  # the bound socket, for draining

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not derive from DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._udp_received(self, data, addr)
        sock = self.sock
        if sock is None:
            return
        for _ in range(UDP_DRAIN - 1):  # what else is already waiting, now
            try:
                more, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                self.error_received(exc)
                return
            self.owner._udp_received(self, more, source)

    def error_received(self, exc: Exception) -> None:
        if self.sending:
            self.send_error = exc
        else:
            self.owner._udp_error(self, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._udp_lost(self, exc)


class _StreamConn(asyncio.Protocol):
    """One TCP connection, accepted or opened by us: frames what it reads, queues what is
    written before it is connected, and closes itself when its peer stops reading."""

    def __init__(
        self,
        owner: SipTransports,
        conn_id: int,
        local: LocalAddr | None,
        *,
        outbound: bool,
        host: str = "",
        port: int = 0,
    ) -> None:
        self.owner = owner
        self.id = conn_id
        self.outbound = outbound
        self.host = host
        self.port = port
        self.local = local if local is not None else LocalAddr("tcp", "", 0)
        self.state = ConnState.CONNECTING
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(owner.max_message)
        self.unframed = bytearray()  # the bytes the framer still holds, for on_stream_error
        self.queue: list[bytes] = []
        self.queued = 0
        self.last_active = 0.0
        self.closing_since = 0.0
        self.connect_task: asyncio.Task[None] | None = None
        self.peer = Peer("tcp", host, port, conn_id)

    def __repr__(self) -> str:
        way = "to" if self.outbound else "from"
        return f"tcp connection {self.id} {way} {_show(self.host, self.port)}"

    @property
    def usable(self) -> bool:
        return self.state in (ConnState.CONNECTING, ConnState.OPEN)

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner._conn_made(self, transport)

    def data_received(self, data: bytes) -> None:
        if self.state is not ConnState.OPEN:
            return
        self.owner._tcp_received(self, data)

    def eof_received(self) -> bool | None:
        if self.framer.buffered:
            log.debug("%s: peer closed with %d unframed bytes", self, self.framer.buffered)
        return None  # close our side too

    def pause_writing(self) -> None:
        self.owner._overflow(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._conn_lost(self, exc)

    # -- used by the owner ----------------------------------------------------------

    def write(self, data: bytes, now: float) -> str | None:
        """Write or queue `data`; the reason it was dropped, or None."""
        if self.state is ConnState.CONNECTING:
            if self.queued + len(data) > self.owner.write_limit:
                return f"{self.queued} bytes already wait for the connection to open"
            self.queue.append(data)
            self.queued += len(data)
            return None
        if self.state is not ConnState.OPEN or self.transport is None:
            return "the connection is closing"
        self.last_active = now
        self.owner._count["tcp_bytes_out"] += len(data)
        self.transport.write(data)  # may call pause_writing(), which aborts
        return None

    def close(self, now: float, mode: CloseMode = CloseMode.FLUSH) -> None:
        if self.state is ConnState.CLOSED:
            return
        if self.state is ConnState.CLOSING and mode is not CloseMode.ABORT:
            return
        self.state = ConnState.CLOSING
        self.closing_since = now
        self.owner._unindex(self)
        self.queue.clear()
        self.queued = 0
        task, self.connect_task = self.connect_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        transport = self.transport
        if transport is None:
            # Never connected: nothing to flush, nothing will call connection_lost.
            self.owner._conn_lost(self, None)
        elif mode is CloseMode.ABORT:
            transport.abort()
        elif mode is CloseMode.LINGER and transport.can_write_eof():
            # Closing with unread input would send RST and could destroy the response
            # still in flight; half-close instead and let the peer's FIN finish it.
            transport.write_eof()
        else:
            transport.close()


class SipTransports:
    """All SIP listeners and connections of one engine process.

    `on_message(data, peer, local)` receives every UDP datagram (except empty or
    CRLF-only keep-alives and datagrams over `max_message`) and every framed TCP message;
    `local` is the listener's address (or, for a connection we opened, its local end).
    `on_stream_error(unframed, peer, err)` is told when a TCP stream cannot be framed any
    further, before that connection is closed: a response sent to `peer` then still goes
    out on it.
    """

    def __init__(
        self,
        on_message: MessageCallback,
        *,
        max_message: int = 65535,
        tcp_idle_timeout: float = 600.0,
        on_stream_error: StreamErrorCallback | None = None,
        write_limit: int = WRITE_HIGH_WATER,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
    ) -> None:
        if max_message <= 0:
            raise ValueError(f"max_message must be positive, got {max_message}")
        if tcp_idle_timeout <= 0:
            raise ValueError(f"tcp_idle_timeout must be positive, got {tcp_idle_timeout}")
        self._on_message = on_message
        self._on_stream_error = on_stream_error
        self.max_message = max_message
        self.tcp_idle_timeout = tcp_idle_timeout
        self.write_limit = write_limit
        self.connect_timeout = connect_timeout
        self.max_tcp_connections = max_tcp_connections
        self.local_addrs: list[LocalAddr] = []
        self._udp: list[_UdpListener] = []
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, _StreamConn] = {}
        self._by_addr: dict[tuple[str, int], dict[int, _StreamConn]] = {}
        self._ids = itertools.count(1)
        self._count: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving: dict[tuple[str, str, int], list[bytes]] = {}
        self._dns: dict[tuple[str, str, int], tuple[float, str]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._seen: set[tuple[str, ...]] = set()
        self._closed = False

    # -- public API -------------------------------------------------------------------

    async def listen(self, transport: str, host: str, port: int) -> LocalAddr:
        """Bind a listener; port 0 takes an ephemeral port. Returns the bound address."""
        if self._closed:
            raise RuntimeError("cannot listen: the transports are closed")
        kind_name = transport.lower()
        if kind_name not in TRANSPORTS:
            raise ValueError(f"unsupported transport {transport!r}: expected 'udp' or 'tcp'")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0-65535, got {port}")
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if kind_name == "udp" else socket.SOCK_STREAM
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        where = f"{kind_name} {_show(bare, port)}"
        try:
            infos = await loop.getaddrinfo(bare, port, type=kind, flags=socket.AI_PASSIVE)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc
        family, _, _, _, sockaddr = infos[0]
        try:
            sock = _bound_socket(family, kind, sockaddr)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc
        name = sock.getsockname()
        local = LocalAddr(kind_name, str(name[0]), int(name[1]))
        if kind_name == "udp":
            listener = _UdpListener(self, family)
            listener.local = local
            listener.sock = sock
            try:
                await loop.create_datagram_endpoint(lambda: listener, sock=sock)
            except BaseException:
                sock.close()
                raise
            self._udp.append(listener)
            rcv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            snd = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            log.debug(
                "udp %s: receive buffer %d bytes, send buffer %d bytes",
                _show(local.host, local.port),
                rcv,
                snd,
            )
        else:
            try:
                server = await loop.create_server(
                    lambda: _StreamConn(self, next(self._ids), local, outbound=False),
                    sock=sock,
                    backlog=LISTEN_BACKLOG,
                )
            except BaseException:
                sock.close()
                raise
            self._servers.append(server)
            self._ensure_sweeper()
        self.local_addrs.append(local)
        return local

    def send(self, data: bytes, peer: Peer) -> None:
        """Send one message to `peer`. Never raises: a message that cannot be sent is
        logged, counted in `send_errors` and dropped."""
        try:
            self._send(data, peer)
        except Exception as exc:
            self._count["send_errors"] += 1
            log.error(
                "dropped %d bytes to %s: %s: %s",
                len(data),
                peer,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    async def close(self) -> None:
        """Stop listening, flush and close every connection (aborting those that do not
        finish within CLOSE_LINGER seconds) and cancel pending connects."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        tasks = list(self._tasks)
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            server.close()
        for listener in self._udp:
            if listener.transport is not None:
                listener.transport.close()
        now = loop.time()
        for conn in list(self._conns.values()):
            conn.close(now)
        if self._conns:
            self._drained = loop.create_future()
            try:
                async with asyncio.timeout(CLOSE_LINGER):
                    await self._drained
            except TimeoutError:
                now = loop.time()
                for conn in list(self._conns.values()):
                    log.warning("%s did not flush in %.0f s: aborting", conn, CLOSE_LINGER)
                    conn.close(now, CloseMode.ABORT)
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # let the datagram transports' connection_lost run
        self._servers.clear()

    def stats(self) -> dict[str, int]:
        """Counters since start; `tcp_connections_open` is the current number."""
        return dict(self._count)

    def open_connections(self) -> list[Peer]:
        """Every open or opening TCP connection, as the Peer that addresses it."""
        return [c.peer for c in self._conns.values() if c.usable]

    # -- sending ----------------------------------------------------------------------

    def _send(self, data: bytes, peer: Peer) -> None:
        if self._closed:
            self._drop(data, peer, "the transports are closed")
            return
        if not 0 < peer.port < 65536:
            self._drop(data, peer, f"port {peer.port} is out of range")
            return
        transport = peer.transport.lower()
        if transport not in TRANSPORTS:
            self._drop(data, peer, f"transport {peer.transport!r} is not supported")
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if transport == "tcp" and peer.conn is not None:
            conn = self._conns.get(peer.conn)
            if conn is not None and conn.usable:
                self._write(conn, data, peer, now)
                return
        ip = ip_literal(peer.host)
        if ip is None:
            ip = self._cached_address(transport, peer.host, peer.port, now)
        if ip is None:
            self._resolve_then_send(data, transport, peer.host, peer.port)
        elif transport == "udp":
            self._send_udp(data, ip, peer.port, peer)
        else:
            self._send_tcp(data, ip, peer.port, peer, now)

    def _send_udp(self, data: bytes, ip: str, port: int, peer: Peer) -> None:
        family = family_of(ip)
        listener = next((u for u in self._udp if u.family == family and u.usable), None)
        if listener is None or listener.transport is None:
            self._drop(data, peer, f"no UDP listener for {_family_name(family)}")
            return
        transport = listener.transport
        if _datagram_backlog(transport) + len(data) > self.write_limit:
            self._drop(data, peer, f"UDP send buffer of {listener.local.host} is full")
            return
        listener.send_error = None
        listener.sending = True
        try:
            transport.sendto(data, (ip, port))
        finally:
            listener.sending = False
        if listener.send_error is not None:
            error, listener.send_error = listener.send_error, None
            self._drop(data, peer, str(error))
            return
        self._count["udp_datagrams_out"] += 1
        self._count["udp_bytes_out"] += len(data)

    def _send_tcp(self, data: bytes, ip: str, port: int, peer: Peer, now: float) -> None:
        conn = self._reusable(ip, port)
        if conn is None:
            if self._active_connections() >= self.max_tcp_connections:
                self._drop(data, peer, f"{self.max_tcp_connections} TCP connections are open")
                return
            conn = self._connect(ip, port, now)
        self._write(conn, data, peer, now)

    def _write(self, conn: _StreamConn, data: bytes, peer: Peer, now: float) -> None:
        reason = conn.write(data, now)
        if reason is not None:
            self._drop(data, peer, reason)

    def _reusable(self, ip: str, port: int) -> _StreamConn | None:
        conns = self._by_addr.get((ip, port))
        if not conns:
            return None
        found: _StreamConn | None = None
        for conn in conns.values():  # latest open one wins; an opening one if none is open
            if conn.state is ConnState.OPEN or found is None:
                found = conn
        return found

    def _connect(self, ip: str, port: int, now: float) -> _StreamConn:
        conn = _StreamConn(self, next(self._ids), None, outbound=True, host=ip, port=port)
        conn.last_active = now
        self._conns[conn.id] = conn
        self._index(conn)
        conn.connect_task = self._spawn(self._open_connection(conn))
        self._ensure_sweeper()
        return conn

    async def _open_connection(self, conn: _StreamConn) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, conn.host, conn.port)
        except Exception as exc:  # OSError, TimeoutError, or a host the stack rejects
            reason = str(exc) or f"no answer in {self.connect_timeout:g} s"
            self._count["tcp_connect_errors"] += 1
            dropped = len(conn.queue)
            self._count["send_errors"] += dropped
            self._log_once(
                logging.WARNING,
                ("connect", conn.host, str(conn.port)),
                "cannot connect to %s: %s (%d message(s) dropped)",
                _show(conn.host, conn.port),
                reason,
                dropped,
            )
            conn.close(loop.time())

    def _resolve_then_send(self, data: bytes, transport: str, host: str, port: int) -> None:
        key = (transport, host.lower(), port)
        waiting = self._resolving.get(key)
        if waiting is not None:
            if sum(map(len, waiting)) + len(data) > self.write_limit:
                self._drop(
                    data,
                    Peer(transport, host, port),
                    f"too many bytes already wait for {host} to resolve",
                )
            else:
                waiting.append(data)
            return
        self._resolving[key] = [data]
        self._spawn(self._resolve(key, host))

    async def _resolve(self, key: tuple[str, str, int], host: str) -> None:
        transport, _, port = key
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        ip: str | None = None
        reason = ""
        try:
            async with asyncio.timeout(self.connect_timeout):
                infos = await loop.getaddrinfo(host, port, type=kind)
            ip = self._pick_address(transport, [str(i[4][0]) for i in infos])
            if ip is None:
                reason = f"{host} has no address this host can reach over {transport}"
        except Exception as exc:  # OSError, TimeoutError, UnicodeError for bad labels
            reason = f"cannot resolve {host}: {str(exc) or 'timed out'}"
        finally:
            waiting = self._resolving.pop(key, [])
        peer = Peer(transport, host, port)
        if ip is None:
            for data in waiting:
                self._drop(data, peer, reason)
            return
        if len(self._dns) >= DNS_CACHE_SIZE:
            self._dns.clear()
        self._dns[key] = (loop.time() + DNS_CACHE_TTL, ip)
        for data in waiting:
            self.send(data, Peer(transport, ip, port))

    def _pick_address(self, transport: str, addresses: list[str]) -> str | None:
        ips = [ip for ip in (ip_literal(a) for a in addresses) if ip is not None]
        if transport == "udp":
            families = {u.family for u in self._udp if u.usable}
            ips = [ip for ip in ips if family_of(ip) in families]
        return ips[0] if ips else None

    def _cached_address(self, transport: str, host: str, port: int, now: float) -> str | None:
        key = (transport, host.lower(), port)
        hit = self._dns.get(key)
        if hit is None:
            return None
        expires, ip = hit
        if now >= expires:
            del self._dns[key]
            return None
        return ip

    def _drop(self, data: bytes, peer: Peer, reason: str) -> None:
        self._count["send_errors"] += 1
        self._log_once(
            logging.WARNING,
            ("send", str(peer), reason),
            "dropped %d bytes to %s: %s",
            len(data),
            peer,
            reason,
        )

    # -- UDP input ----------------------------------------------------------------------

    def _udp_received(self, listener: _UdpListener, data: bytes, addr: tuple[Any, ...]) -> None:
        self._count["udp_datagrams_in"] += 1
        self._count["udp_bytes_in"] += len(data)
        if not data.strip(b"\r\n \t"):
            self._count["udp_keepalives_in"] += 1
            return
        if len(data) > self.max_message:
            self._count["udp_oversize_dropped"] += 1
            self._log_once(
                logging.WARNING,
                ("oversize", str(addr[0])),
                "dropped a %d-byte datagram from %s: larger than %d bytes",
                len(data),
                _show(str(addr[0]), int(addr[1])),
                self.max_message,
            )
            return
        self._deliver(data, Peer("udp", str(addr[0]), int(addr[1])), listener.local)

    def _udp_error(self, listener: _UdpListener, exc: Exception) -> None:
        # ICMP unreachable reports for earlier datagrams, or failures of buffered sends.
        self._count["udp_errors"] += 1
        log.debug("udp %s: %s", _show(listener.local.host, listener.local.port), exc)

    def _udp_lost(self, listener: _UdpListener, exc: Exception | None) -> None:
        if exc is not None and not self._closed:
            log.error(
                "udp listener %s failed: %s",
                _show(listener.local.host, listener.local.port),
                exc,
                exc_info=exc,
            )

    # -- TCP connections -------------------------------------------------------------------

    def _conn_made(self, conn: _StreamConn, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        transport.set_write_buffer_limits(high=self.write_limit)
        if conn.outbound:
            if conn.state is not ConnState.CONNECTING:  # closed while connecting
                transport.abort()
                return
            name = transport.get_extra_info("sockname")
            conn.local = LocalAddr("tcp", str(name[0]), int(name[1]))
            self._count["tcp_connections_opened"] += 1
        else:
            remote = transport.get_extra_info("peername")
            conn.host = ip_literal(str(remote[0])) or str(remote[0])
            conn.port = int(remote[1])
            conn.peer = Peer("tcp", conn.host, conn.port, conn.id)
            if self._closed or self._active_connections() >= self.max_tcp_connections:
                self._count["tcp_connections_rejected"] += 1
                self._log_once(
                    logging.WARNING,
                    ("reject",),
                    "refused %s: %d TCP connections are open",
                    conn,
                    self.max_tcp_connections,
                )
                conn.state = ConnState.CLOSED
                transport.abort()
                return
            self._count["tcp_connections_accepted"] += 1
            self._conns[conn.id] = conn
            self._index(conn)
        conn.state = ConnState.OPEN
        conn.last_active = now
        self._count["tcp_connections_open"] += 1
        log.debug("%s open (local %s)", conn, _show(conn.local.host, conn.local.port))
        queued, conn.queue, conn.queued = conn.queue, [], 0
        for data in queued:
            if conn.write(data, now) is not None:
                self._count["send_errors"] += 1

    def _tcp_received(self, conn: _StreamConn, data: bytes) -> None:
        self._count["tcp_bytes_in"] += len(data)
        conn.last_active = asyncio.get_running_loop().time()
        framer = conn.framer
        framer.feed(data)
        conn.unframed += data
        while conn.state is ConnState.OPEN:
            try:
                frame = framer.next_frame()
            except FramingError as err:
                self._stream_broken(conn, err)
                return
            if frame is None:
                break
            if frame == StreamFramer.PING:
                self._count["tcp_pings_answered"] += 1
                conn.write(CRLF, conn.last_active)
                continue
            self._count["tcp_messages_in"] += 1
            self._deliver(frame, conn.peer, conn.local)
        keep = framer.buffered
        if keep == 0:
            conn.unframed.clear()
        elif len(conn.unframed) > keep:
            del conn.unframed[: len(conn.unframed) - keep]

    def _stream_broken(self, conn: _StreamConn, err: FramingError) -> None:
        self._count["framing_errors"] += 1
        keep = conn.framer.buffered
        unframed = bytes(conn.unframed[len(conn.unframed) - keep :]) if keep else b""
        conn.unframed.clear()
        log.info("%s: %s (status %s); closing it", conn, err.reason, err.status)
        if self._on_stream_error is not None:
            try:
                self._on_stream_error(unframed, conn.peer, err)
            except Exception as exc:
                self._callback_failed("on_stream_error", exc, conn.peer)
        conn.close(asyncio.get_running_loop().time(), CloseMode.LINGER)

    def _overflow(self, conn: _StreamConn) -> None:
        if conn.state is not ConnState.OPEN:
            return
        self._count["tcp_overflow_closed"] += 1
        self._log_once(
            logging.WARNING,
            ("overflow", conn.host),
            "%s: more than %d bytes wait to be sent; the peer is not reading, aborting",
            conn,
            self.write_limit,
        )
        conn.close(asyncio.get_running_loop().time(), CloseMode.ABORT)

    def _conn_lost(self, conn: _StreamConn, exc: Exception | None) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        self._unindex(conn)
        if conn.transport is not None and conn.state is not ConnState.CONNECTING:
            self._count["tcp_connections_open"] -= 1
            self._count["tcp_connections_closed"] += 1
        conn.state = ConnState.CLOSED
        conn.queue.clear()
        if exc is not None:
            log.debug("%s lost: %s", conn, exc)
        else:
            log.debug("%s closed", conn)
        if not self._conns and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _index(self, conn: _StreamConn) -> None:
        self._by_addr.setdefault((conn.host, conn.port), {})[conn.id] = conn

    def _unindex(self, conn: _StreamConn) -> None:
        key = (conn.host, conn.port)
        conns = self._by_addr.get(key)
        if conns is not None:
            conns.pop(conn.id, None)
            if not conns:
                del self._by_addr[key]

    def _active_connections(self) -> int:
        return sum(1 for c in self._conns.values() if c.usable)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        interval = min(max(self.tcp_idle_timeout / 4, SWEEP_MIN_INTERVAL), SWEEP_MAX_INTERVAL)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep(loop.time())
            except Exception as exc:  # the sweep must outlive a bug in one connection
                log.error("idle sweep failed: %s", exc, exc_info=exc)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than tcp_idle_timeout and abort those that
        have been closing for longer than CLOSE_LINGER (run periodically by listen)."""
        for conn in list(self._conns.values()):
            if conn.state is ConnState.OPEN and now - conn.last_active > self.tcp_idle_timeout:
                self._count["tcp_idle_closed"] += 1
                log.debug("%s idle for %.1f s: closing", conn, now - conn.last_active)
                conn.close(now)
            elif conn.state is ConnState.CLOSING and now - conn.closing_since > CLOSE_LINGER:
                log.debug("%s did not flush in %.0f s: aborting", conn, CLOSE_LINGER)
                conn.close(now, CloseMode.ABORT)

    # -- callbacks, tasks, logging ------------------------------------------------------

    def _deliver(self, data: bytes, peer: Peer, local: LocalAddr) -> None:
        try:
            self._on_message(data, peer, local)
        except Exception as exc:
            self._callback_failed("on_message", exc, peer)

    def _callback_failed(self, name: str, exc: Exception, peer: Peer) -> None:
        self._count["callback_errors"] += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = ("callback", name, type(exc).__qualname__, where)
        if self._remember(key):
            log.error(
                "%s raised on a message from %s: %s: %s",
                name,
                peer,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        else:
            log.debug(
                "%s raised again on a message from %s: %s: %s", name, peer, type(exc).__name__, exc
            )

    def _log_once(self, level: int, key: tuple[str, ...], msg: str, *args: object) -> None:
        """Log at `level` the first time `key` is seen, at DEBUG afterwards, so that a
        dead destination retried every T1 does not flood the log."""
        log.log(level if self._remember(key) else logging.DEBUG, msg, *args)

    def _remember(self, key: tuple[str, ...]) -> bool:
        if key in self._seen:
            return False
        if len(self._seen) >= SEEN_ERRORS_MAX:
            self._seen.clear()
        self._seen.add(key)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
