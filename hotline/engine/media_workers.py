"""Media worker processes: the media plane spread over several processes, so that one
engine bridges more calls than one core can tick. Owns the worker processes, the
channel to them, and where each leg is served.

One CPython process runs the 20 ms media tick on one core (the GIL), and a bridged
leg costs about 25-30 µs of it per tick: some 200 bridges a process (see README,
"Bridges"). With `rtp.media_workers: N` the engine starts N worker processes, each a
`MediaLoop` of its own with its own 20 ms tick, and keeps SIP, the
flows, the queues and the database in the main process. `MediaWorkers` answers the
engine as `MediaLoop` does (the `MediaPlane` protocol), so nothing above it knows
where a leg is served.

* **Placement.** A new leg goes to the worker serving the fewest legs, unless it is given a leg to
  be `near`: every leg of one bridge (caller, agent, consulted expert, supervisor) is
  placed with the bridge's first leg, because a conference is mixed inside one tick.
  Joining legs served by different workers is refused (ValueError) — placement makes it
  impossible for the engine's own bridges.
* **Sockets.** The main process binds each leg's RTP/RTCP pair (so a port in use is an
  OSError at once, as in-process) and passes the sockets to the worker (SCM_RIGHTS);
  only the worker reads and writes them. A port goes back to the pool once the worker
  has closed them (`end_leg` resolves then).
* **Channel.** Pickled messages over a socketpair (AF_UNIX, SOCK_SEQPACKET), cut into
  32 KiB datagrams; sends never block the event loop (what the socket will not take
  waits, in order). Commands go one way (add, play, join, record, end ...); events come
  back (digits, inactivity, play done, replies) and, twice a second, the worker's
  figures (tick histograms, load, RTP and jitter-buffer counters) for /metrics.
* **Failure.** A worker that dies takes its legs' media with it: each of its legs is
  reported inactive (the engine hangs those calls up — their audio is gone, better a
  clean end than silence), pending answers resolve to None, and a new worker takes its
  place. A worker whose channel closes (the engine died) closes its legs and exits.
* **Load.** New calls are refused (503) only when every worker is overloaded; `load`
  is the busiest worker's, what an operator watches.

Messages are trusted: both ends are this program, over a socketpair nobody else holds.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import itertools
import logging
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from hotline.engine.gctune import GcStats, full_collection_due, tune
from hotline.engine.media_loop import (
    DEFAULT_MAX_RECORDING_SECONDS,
    DEFAULT_PREFILL_SAMPLES,
    JITTER_COUNTERS,
    RTP_COUNTERS,
    TICK_BUCKETS,
    DigitCallback,
    DtmfMethod,
    Histogram,
    InactiveCallback,
    LegSummary,
    MediaLoop,
    PlayDoneCallback,
    Role,
    bind_pair,
    check_role,
    overloaded,
)
from hotline.logsetup import levels, setup_logging
from hotline.sip.sdp import NegotiatedMedia

log = logging.getLogger(__name__)

CHUNK = 32768  # bytes of a message per datagram
MAX_FDS = 2  # file descriptors a message carries (a leg's RTP and RTCP sockets)
STATS_SECONDS = 0.5  # how often a worker sends its figures
CLOSE_GRACE = 2.0  # seconds a closing worker has to exit before it is killed
QUICK_DEATH_SECONDS = 10.0  # a worker that dies this soon after starting is replaced later …
MAX_BACKOFF = 30.0  # … by up to this many seconds, doubling each time
_FD_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class MediaPlane(Protocol):
    """What the engine asks of its media: `MediaLoop` (in the engine's process) or
    `MediaWorkers` (in worker processes)."""

    @property
    def tick_seconds(self) -> Histogram: ...
    @property
    def tick_lateness(self) -> Histogram: ...
    @property
    def load(self) -> float: ...
    @property
    def leg_count(self) -> int: ...
    @property
    def prefill(self) -> int: ...
    @property
    def skipped_ticks(self) -> int: ...
    def overloaded(self) -> bool: ...
    @property
    def available(self) -> bool: ...
    def add_leg(
        self, key: Hashable, port: int, media: NegotiatedMedia, *, near: Hashable | None = None
    ) -> object: ...
    def update(self, key: Hashable, media: NegotiatedMedia) -> None: ...
    def end_leg(self, key: Hashable) -> asyncio.Future[LegSummary | None]: ...
    def has_leg(self, key: Hashable) -> bool: ...
    def rtp_totals(self) -> dict[str, int]: ...
    def jitter_totals(self) -> dict[str, int]: ...
    def join(
        self,
        key: Hashable,
        conference: Hashable,
        *,
        role: Role = Role.MEMBER,
        coach: Hashable | None = None,
    ) -> None: ...
    def leave(self, key: Hashable) -> None: ...
    def set_muted(self, key: Hashable, muted: bool) -> None: ...
    def play(
        self, key: Hashable, samples: npt.NDArray[np.int16], *, tag: Hashable, loop: bool = False
    ) -> None: ...
    def stop_playback(self, key: Hashable) -> None: ...
    def start_recording(
        self,
        key: Hashable,
        *,
        inbound: bool = True,
        outbound: bool = True,
        max_seconds: float | None = None,
    ) -> None: ...
    def pause_recording(self, key: Hashable, paused: bool) -> None: ...
    def stop_recording(
        self, key: Hashable, path: str | os.PathLike[str]
    ) -> asyncio.Future[Any]: ...
    def close(self) -> None: ...


class MediaUnavailable(OSError):
    """No media worker is running to serve a new leg (they are being replaced)."""


# -- the channel ------------------------------------------------------------------------


class Channel:
    """Pickled messages over a connected AF_UNIX SOCK_SEQPACKET socket, on an asyncio
    loop. Each message is cut into datagrams of at most `CHUNK` bytes, the first byte
    of each saying whether more follow (1) or it is the last (0); sockets sent with a
    message ride on its first datagram and are closed here once sent. `send` never
    blocks: datagrams the socket will not take wait, in order, for it to drain.
    `on_message(message, fds)` gets each message whole; `on_closed()` once, when the
    other end goes (or the socket fails)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: Callable[[Any, list[int]], None],
        on_closed: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.on_message = on_message
        self.on_closed = on_closed
        self.closed = False
        self._fd = sock.fileno()
        self._out: deque[tuple[bytes, list[socket.socket]]] = deque()
        self._waiting = False  # for the socket to take more
        self._parts: list[bytes] = []
        self._fds: list[int] = []
        loop.add_reader(self._fd, self._readable)

    def send(self, message: object, sockets: Sequence[socket.socket] = ()) -> None:
        """Queue `message` (and `sockets`, which this channel closes once they are
        sent); BrokenPipeError when the channel is closed (the sockets are closed)."""
        if self.closed:
            for sock in sockets:
                sock.close()
            raise BrokenPipeError("the channel is closed")
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        starts = range(0, max(len(data), 1), CHUNK)
        last = starts[-1]
        for start in starts:
            flag = b"\x00" if start == last else b"\x01"
            self._out.append(
                (flag + data[start : start + CHUNK], list(sockets) if not start else [])
            )
        if not self._waiting:
            self._flush()

    @property
    def backlog(self) -> int:
        """Datagrams waiting for the socket to take them."""
        return len(self._out)

    def _flush(self) -> None:
        out = self._out
        while out:
            datagram, sockets = out[0]
            try:
                if sockets:
                    fds = array.array("i", [s.fileno() for s in sockets])
                    self.sock.sendmsg([datagram], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                else:
                    self.sock.send(datagram)
            except (BlockingIOError, InterruptedError):
                if not self._waiting:
                    self._waiting = True
                    self.loop.add_writer(self._fd, self._flush)
                return
            except OSError as exc:
                log.debug("media channel: send failed: %s", exc)
                self._lost()
                return
            out.popleft()
            for sock in sockets:
                sock.close()
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self._fd)

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, ancillary, flags, _ = self.sock.recvmsg(CHUNK + 1, _FD_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("media channel: receive failed: %s", exc)
                self._lost()
                return
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                    self._fds.extend(received)
            if not data:  # every datagram has its flag byte: this is the end
                self._lost()
                return
            if flags & socket.MSG_CTRUNC:
                log.error("media channel: descriptors were cut off a message")
            self._parts.append(data[1:])
            if data[0] == 0:
                whole = b"".join(self._parts)
                fds, self._parts, self._fds = self._fds, [], []
                self.on_message(pickle.loads(whole), fds)

    def _lost(self) -> None:
        if self.closed:
            return
        self.close()
        self.on_closed()

    def close(self) -> None:
        """Stop; what was not sent is dropped (its sockets closed)."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self._fd)
        if self._waiting:
            self.loop.remove_writer(self._fd)
            self._waiting = False
        for _, sockets in self._out:
            for sock in sockets:
                sock.close()
        self._out.clear()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self.sock.close()


# -- the worker process -------------------------------------------------------------------


class Worker:
    """The worker's side: a `MediaLoop` driven by the commands on `channel`, its events
    and figures sent back. Legs are known by the integer ids the engine gave them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.channel = Channel(loop, sock, self._command, self._gone)
        self.media: MediaLoop | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self._stats: asyncio.TimerHandle | None = None
        self._last_gc = loop.time()

    def _send(self, message: object) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.channel.send(message)

    def _command(self, message: Any, fds: list[int]) -> None:
        kind = message[0]
        if kind == "add":
            self._add(message, fds)
            return
        for fd in fds:  # only "add" carries sockets
            os.close(fd)
        if kind == "start":
            self._start(*message[1:])
        elif kind == "end" and self.media is not None:
            _, leg, reply = message
            self.answer(reply, self.media.end_leg(leg).result())  # resolved at once here
        elif kind == "stop_record" and self.media is not None:
            self._stop_record(self.media, *message[1:])
        elif kind == "close":
            self._gone()
        elif self.media is None:
            log.error("media worker: %r before start", kind)
        else:
            try:
                self._leg_command(self.media, kind, message)
            except (KeyError, ValueError) as exc:  # the leg ended meanwhile, or misuse
                log.warning("media worker: %s %s: %s", kind, message[1], exc)

    def _start(
        self,
        host: str,
        inactivity: float,
        max_recording: float,
        logging_setup: tuple[str, str, dict[str, str]],
    ) -> None:
        level, fmt, levels = logging_setup
        setup_logging(level, fmt, levels)  # as the engine logs, to the same stderr
        self.media = MediaLoop(
            self.loop,
            host,
            on_digit=lambda leg, digit, method: self._send(("digit", leg, digit, method.value)),
            on_inactive=lambda leg: self._send(("inactive", leg)),
            inactivity_timeout=inactivity,
            on_play_done=lambda leg, tag, completed: self._send(("play_done", leg, tag, completed)),
            max_recording_seconds=max_recording,
        )
        self._report()

    def _add(self, message: Any, fds: list[int]) -> None:
        _, leg, port, media = message
        sockets = [socket.socket(fileno=fd) for fd in fds]
        try:
            if self.media is None or len(sockets) != 2:
                raise RuntimeError(f"cannot serve a leg with {len(sockets)} socket(s)")
            self.media.adopt_leg(leg, port, media, (sockets[0], sockets[1]))
        except Exception as exc:
            for sock in sockets:
                sock.close()
            log.error("media worker: cannot serve leg %s on port %d: %s", leg, port, exc)
            self._send(("inactive", leg))  # the engine ends the call: it has no audio

    @staticmethod
    def _leg_command(media: MediaLoop, kind: str, message: Any) -> None:
        if kind == "update":
            media.update(message[1], message[2])
        elif kind == "play":
            _, leg, samples, tag, loop = message
            media.play(leg, samples, tag=tag, loop=loop)
        elif kind == "stop_play":
            media.stop_playback(message[1])
        elif kind == "join":
            _, leg, conference, role, coach = message
            media.join(leg, conference, role=role, coach=coach)
        elif kind == "leave":
            media.leave(message[1])
        elif kind == "mute":
            media.set_muted(message[1], message[2])
        elif kind == "record":
            _, leg, inbound, outbound, max_seconds = message
            media.start_recording(leg, inbound=inbound, outbound=outbound, max_seconds=max_seconds)
        elif kind == "pause_record":
            media.pause_recording(message[1], message[2])
        else:
            raise ValueError(f"unknown command {kind!r}")

    def answer(self, reply: int, value: object, error: str | None = None) -> None:
        self._send(("reply", reply, value, error))

    def _stop_record(self, media: MediaLoop, leg: int, path: str, reply: int) -> None:
        try:
            future = media.stop_recording(leg, path)
        except KeyError as exc:
            self.answer(reply, None, str(exc))
            return

        def written(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                self.answer(reply, None, "cancelled")
            elif f.exception() is not None:
                self.answer(reply, None, str(f.exception()))
            else:
                self.answer(reply, None if f.result() is None else path)

        future.add_done_callback(written)

    def _report(self) -> None:
        media = self.media
        if media is None or self.channel.closed:
            return
        self._send(("stats", worker_figures(media)))
        now = self.loop.time()
        if full_collection_due(now - self._last_gc, media.leg_count):
            gc.collect()
            self._last_gc = now
        self._stats = self.loop.call_later(STATS_SECONDS, self._report)

    def _gone(self) -> None:
        if self._stats is not None:
            self._stats.cancel()
        if self.media is not None:
            self.media.close()
        self.channel.close()
        if not self.done.done():
            self.done.set_result(None)


def worker_figures(media: MediaLoop) -> dict[str, Any]:
    """What a worker reports of itself for the engine's metrics and load guard."""
    return {
        "load": media.load,
        "skip_age": media.loop.time() - media.last_skip,
        "skipped": media.skipped_ticks,
        "tick": media.tick_seconds,
        "late": media.tick_lateness,
        "rtp": media.rtp_totals(),
        "jitter": media.jitter_totals(),
    }


def sum_figures(many: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The counters of several workers' figures added up (`worker_figures`' shape,
    without the load)."""
    total: dict[str, Any] = {
        "skipped": 0,
        "tick": Histogram(TICK_BUCKETS),
        "late": Histogram(TICK_BUCKETS),
        "rtp": dict.fromkeys(RTP_COUNTERS, 0),
        "jitter": dict.fromkeys(JITTER_COUNTERS, 0),
    }
    for figures in many:
        total["skipped"] += figures["skipped"]
        total["tick"].add(figures["tick"])
        total["late"].add(figures["late"])
        for group in ("rtp", "jitter"):
            for name, n in figures[group].items():
                total[group][name] += n
    return total


def worker_main(fd: int) -> int:
    """The worker process: serve the channel on `fd` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine stops its workers
    logging.basicConfig(
        level=logging.WARNING,
        format=f"media-worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    tune(GcStats())

    async def serve() -> None:
        worker = Worker(asyncio.get_running_loop(), socket.socket(fileno=fd))
        await worker.done

    asyncio.run(serve())
    return 0


# -- the engine's side --------------------------------------------------------------------


@dataclass(eq=False)
class _Process:
    index: int
    proc: subprocess.Popen[bytes]
    channel: Channel
    legs: set[int] = field(default_factory=set)
    figures: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # loop time
    load: float = 0.0
    last_skip: float = -math.inf
    alive: bool = True

    def overloaded(self, now: float) -> bool:
        return overloaded(self.load, self.last_skip, now)


class MediaWorkers:
    """The media plane in `workers` worker processes (see the module's text); the same
    answers as `MediaLoop`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        *,
        workers: int,
        on_digit: DigitCallback,
        on_inactive: InactiveCallback,
        inactivity_timeout: float = 30.0,
        on_play_done: PlayDoneCallback | None = None,
        max_recording_seconds: float = DEFAULT_MAX_RECORDING_SECONDS,
        log_format: str = "text",
    ) -> None:
        if workers < 1:
            raise ValueError(f"media workers must be at least 1, got {workers}")
        self.loop = loop
        self.host = host
        self.on_digit = on_digit
        self.on_inactive = on_inactive
        self.on_play_done = on_play_done
        self.inactivity_timeout = inactivity_timeout
        self.max_recording_seconds = max_recording_seconds
        self.log_format = log_format
        self._ids: dict[Hashable, int] = {}  # the engine's leg key → the workers' leg id
        self._keys: dict[int, Hashable] = {}
        self._home: dict[int, _Process] = {}  # leg id → the process serving it
        self._conference: dict[int, Hashable] = {}  # leg id → the conference it is in
        self._next_id = itertools.count(1)
        self._replies: dict[int, tuple[_Process, asyncio.Future[Any]]] = {}
        self._next_reply = itertools.count(1)
        # Figures of workers that are gone, so the counters never run backwards.
        self._retired = sum_figures(())
        self.restarts = 0
        self._backoff = [0.0] * workers  # seconds before a worker that died young is replaced
        self._closed = False
        self.processes = [self._spawn(i) for i in range(workers)]

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, index: int) -> _Process:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hotline.engine.media_workers", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        process: _Process
        channel = Channel(
            self.loop,
            ours,
            lambda message, fds: self._event(process, message, fds),
            lambda: self._gone(process),
        )
        process = _Process(index, proc, channel, started=self.loop.time())
        channel.send(
            (
                "start",
                self.host,
                self.inactivity_timeout,
                self.max_recording_seconds,
                (logging.getLevelName(logging.getLogger().level), self.log_format, levels()),
            )
        )
        log.info("media worker %d started (pid %d)", index, proc.pid)
        return process

    def _gone(self, process: _Process) -> None:
        """A worker's channel closed: it died (or is being closed)."""
        if not process.alive:
            return
        process.alive = False
        self._retire(process)
        code = process.proc.poll()
        if self._closed:
            return
        log.error(
            "media worker %d (pid %d) is gone (exit %s); its %d leg(s) lose their audio",
            process.index,
            process.proc.pid,
            code,
            len(process.legs),
        )
        if code is None:
            with contextlib.suppress(OSError):
                process.proc.kill()
        self.loop.run_in_executor(None, process.proc.wait)
        for reply, (owner, future) in list(self._replies.items()):
            if owner is process:
                del self._replies[reply]
                if not future.done():
                    future.set_result(None)
        legs = [self._keys[leg] for leg in process.legs if leg in self._keys]
        for key in legs:
            self._forget(key)
        self.restarts += 1
        index = process.index
        if self.loop.time() - process.started < QUICK_DEATH_SECONDS:
            # It died young (it may not start at all): wait longer each time.
            self._respawn_later(index, "it died young")
        else:
            self._backoff[index] = 0.0
            self._respawn(index)
        for key in legs:
            try:
                self.on_inactive(key)
            except Exception:
                log.exception("inactivity callback failed for %r", key)

    def _respawn(self, index: int) -> None:
        if self._closed:
            return
        try:
            self.processes[index] = self._spawn(index)
        except OSError as exc:
            self._respawn_later(index, f"it cannot start: {exc}")

    def _respawn_later(self, index: int, why: str) -> None:
        """Replace worker `index` after a delay that doubles each time (0.5 s first, at
        most `MAX_BACKOFF`); a worker that lives past `QUICK_DEATH_SECONDS` resets it."""
        delay = self._backoff[index] = min(2 * self._backoff[index] or 0.5, MAX_BACKOFF)
        log.error("media worker %d: %s; starting a new one in %.1f s", index, why, delay)
        self.loop.call_later(delay, self._respawn, index)

    def _retire(self, process: _Process) -> None:
        if process.figures:
            self._retired = sum_figures((self._retired, process.figures))
            process.figures = {}

    def _event(self, process: _Process, message: Any, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        kind = message[0]
        if kind == "stats":
            figures = message[1]
            process.figures = figures
            process.load = figures["load"]
            process.last_skip = self.loop.time() - figures["skip_age"]
            return
        if kind == "reply":
            _, reply, value, error = message
            entry = self._replies.pop(reply, None)
            if entry is None:
                return
            future = entry[1]
            if future.done():
                return
            if error is not None:
                future.set_exception(OSError(error))
            else:
                future.set_result(value)
            return
        key = self._keys.get(message[1])
        if key is None:  # a leg ended meanwhile
            return
        try:
            if kind == "digit":
                self.on_digit(key, message[2], DtmfMethod(message[3]))
            elif kind == "inactive":
                self.on_inactive(key)
            elif kind == "play_done":
                if self.on_play_done is not None:
                    self.on_play_done(key, message[2], message[3])
            else:
                log.error("media worker %d: unknown event %r", process.index, kind)
        except Exception:
            log.exception("%s callback failed for %r", kind, key)

    def close(self) -> None:
        """Stop every worker (each closes its legs' sockets) and wait for them."""
        if self._closed:
            return
        self._closed = True
        for process in self.processes:
            if process.alive:
                with contextlib.suppress(BrokenPipeError):
                    process.channel.send(("close",))
        deadline = time.monotonic() + CLOSE_GRACE
        for process in self.processes:
            # The close command is small: the socket takes it at once, so closing our
            # end (which drops anything still queued) does not lose it.
            process.channel.close()
            process.alive = False
            try:
                process.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("media worker %d did not stop; killing it", process.index)
                process.proc.kill()
                process.proc.wait()
        for _, future in self._replies.values():
            if not future.done():
                future.set_result(None)
        self._replies.clear()

    # -- legs -----------------------------------------------------------------------

    def _id(self, key: Hashable) -> int:
        leg = self._ids.get(key)
        if leg is None:
            raise KeyError(f"no media leg {key!r}")
        return leg

    def _command(self, key: Hashable, *args: object) -> None:
        leg = self._id(key)
        process = self._home[leg]
        with contextlib.suppress(BrokenPipeError):  # its legs are being ended
            process.channel.send((args[0], leg, *args[1:]))

    def _ask(self, key: Hashable, kind: str, *args: object) -> asyncio.Future[Any]:
        leg = self._id(key)
        process = self._home[leg]
        future: asyncio.Future[Any] = self.loop.create_future()
        reply = next(self._next_reply)
        try:
            process.channel.send((kind, leg, *args, reply))
        except BrokenPipeError:
            future.set_result(None)
            return future
        self._replies[reply] = (process, future)
        return future

    def _forget(self, key: Hashable) -> int:
        leg = self._ids.pop(key)
        del self._keys[leg]
        process = self._home.pop(leg)
        process.legs.discard(leg)
        self._conference.pop(leg, None)
        return leg

    def add_leg(
        self, key: Hashable, port: int, media: NegotiatedMedia, *, near: Hashable | None = None
    ) -> None:
        """Bind the leg's sockets now (OSError if they cannot be) and have a worker
        serve it: the worker serving `near` when that leg is served, else the one
        serving the fewest legs."""
        if self._closed:
            raise RuntimeError("the media workers are closed")
        if key in self._ids:
            raise ValueError(f"media leg {key!r} exists already")
        home = self._ids.get(near) if near is not None else None
        if home is not None:
            process = self._home[home]
        else:
            live = [p for p in self.processes if p.alive]
            if not live:
                raise MediaUnavailable("no media worker is running")
            # By legs served, which is exact now; the load figures are up to half a
            # second old, and calls arriving meanwhile would all go to one worker.
            process = min(live, key=lambda p: (len(p.legs), p.load, p.index))
        sockets = bind_pair(self.host, port)
        leg = next(self._next_id)
        process.channel.send(("add", leg, port, media), sockets)
        self._ids[key] = leg
        self._keys[leg] = key
        self._home[leg] = process
        process.legs.add(leg)

    def update(self, key: Hashable, media: NegotiatedMedia) -> None:
        self._command(key, "update", media)

    def end_leg(self, key: Hashable) -> asyncio.Future[LegSummary | None]:
        """Remove the leg; the future gives its figures once its worker has sent the
        RTCP BYE and closed its sockets (None for no such leg, or a worker gone)."""
        if key not in self._ids:
            future: asyncio.Future[LegSummary | None] = self.loop.create_future()
            future.set_result(None)
            return future
        future = self._ask(key, "end")
        self._forget(key)
        return future

    def has_leg(self, key: Hashable) -> bool:
        return key in self._ids

    def worker_of(self, key: Hashable) -> int:
        """The index of the worker serving the leg (KeyError for no such leg)."""
        return self._home[self._id(key)].index

    # -- conferences ----------------------------------------------------------------------

    def join(
        self,
        key: Hashable,
        conference: Hashable,
        *,
        role: Role = Role.MEMBER,
        coach: Hashable | None = None,
    ) -> None:
        """`MediaCore.join`; ValueError if a leg already in `conference` is served by
        another worker (a conference is mixed inside one tick)."""
        leg = self._id(key)
        check_role(key, role, coach)
        process = self._home[leg]
        for other, joined in self._conference.items():
            home = self._home[other]
            if joined == conference and home is not process:
                raise ValueError(
                    f"conference {conference!r} is mixed by media worker {home.index}, "
                    f"leg {key!r} is served by worker {process.index}"
                )
        # A coach that is no leg (here: id 0, never given out) is heard by nobody, as
        # in-process.
        coach_id = None if coach is None else self._ids.get(coach, 0)
        self._conference[leg] = conference
        with contextlib.suppress(BrokenPipeError):
            process.channel.send(("join", leg, conference, role, coach_id))

    def leave(self, key: Hashable) -> None:
        self._conference.pop(self._id(key), None)
        self._command(key, "leave")

    def set_muted(self, key: Hashable, muted: bool) -> None:
        self._command(key, "mute", bool(muted))

    # -- what legs play, and recordings -------------------------------------------------

    def play(
        self, key: Hashable, samples: npt.NDArray[np.int16], *, tag: Hashable, loop: bool = False
    ) -> None:
        self._command(key, "play", samples, tag, loop)

    def stop_playback(self, key: Hashable) -> None:
        self._command(key, "stop_play")

    def start_recording(
        self,
        key: Hashable,
        *,
        inbound: bool = True,
        outbound: bool = True,
        max_seconds: float | None = None,
    ) -> None:
        self._command(key, "record", inbound, outbound, max_seconds)

    def pause_recording(self, key: Hashable, paused: bool) -> None:
        self._command(key, "pause_record", bool(paused))

    def stop_recording(self, key: Hashable, path: str | os.PathLike[str]) -> asyncio.Future[Any]:
        """End the leg's recording; its worker writes the WAV file (as
        `MediaLoop.stop_recording` does). The future gives the path once written, None
        when the leg was not recording, or raises OSError with what writing met."""
        return self._ask(key, "stop_record", os.fspath(path))

    # -- figures --------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        """Every worker's counters so far, the dead ones' included."""
        live = (p.figures for p in self.processes if p.alive and p.figures)
        return sum_figures((self._retired, *live))

    @property
    def load(self) -> float:
        """The busiest worker's tick load."""
        return max((p.load for p in self.processes if p.alive), default=0.0)

    @property
    def available(self) -> bool:
        """Is any worker running (between a worker's death and its replacement there
        may be none)?"""
        return any(p.alive for p in self.processes)

    def overloaded(self) -> bool:
        """Is every worker at its limit (so a new call has nowhere to go)?"""
        now = self.loop.time()
        return all(p.overloaded(now) for p in self.processes if p.alive)

    @property
    def leg_count(self) -> int:
        return len(self._ids)

    @property
    def prefill(self) -> int:
        return DEFAULT_PREFILL_SAMPLES

    @property
    def skipped_ticks(self) -> int:
        return int(self._totals()["skipped"])

    def rtp_totals(self) -> dict[str, int]:
        """RTP counters over every leg so far, as of the workers' last figures."""
        return dict(self._totals()["rtp"])

    def jitter_totals(self) -> dict[str, int]:
        return dict(self._totals()["jitter"])

    @property
    def tick_seconds(self) -> Histogram:
        """How long the workers' ticks took (all workers together)."""
        tick: Histogram = self._totals()["tick"]
        return tick

    @property
    def tick_lateness(self) -> Histogram:
        late: Histogram = self._totals()["late"]
        return late


if __name__ == "__main__":
    sys.exit(worker_main(int(sys.argv[1])))
