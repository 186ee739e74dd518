"""baresip (Debian's 1.0.0, package `baresip-core`) as a scripted SIP softphone for tests.

Owns one baresip process per `Baresip`: its private config directory, its ports (SIP,
ctrl_tcp, RTP range; all on 127.0.0.1), its audio (a WAV source played into each call, and
WAV dumps of what each call sent and received), its control connection, and its log. It
knows nothing of the engine it talks to: an address, a port, a user and a password.

How baresip 1.0 is driven here, and what it can and cannot do:

- Control goes through the `ctrl_tcp` module: netstring-framed JSON commands (the same
  long commands as its console: dial, accept, hangup, transfer, hold, resume, sndcode,
  reginfo) and JSON events (REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED, …).
  Commands that act on a call act on the current call; the call commands (hold, transfer…)
  exist only while a call does.
- Audio in: the `aufile` module plays a 16-bit 8 kHz mono WAV from the start of every call.
  In 1.0 it ends the call when the file runs out ("end of file" as an audio error), so the
  source is padded with silence to `source_seconds`.
- Audio out: 1.0's `aufile` cannot play to a file, so no player module is loaded at all
  (baresip then decodes without playing) and the `sndfile` filter writes each call's
  decoded audio, and what it encoded, to `dump-<local time>-dec.wav` / `-enc.wav`. Those
  names have one-second resolution: two calls starting within the same second share one.
- Incoming INVITE headers are not in 1.0's events (they carry the peer URI and name only);
  baresip runs with its SIP trace on (`-s`) and `wait_incoming` reads the INVITE's headers
  from the trace in the log, so X-Hotline-* screen-pop headers are visible to tests.
- Digest: libre 1.0 answers MD5 (with or without qop=auth) only, and fails the whole
  registration ("Function not implemented") when any challenge in the 401 names another
  algorithm, whatever the order: a registrar offering SHA-256 must offer MD5 alone to it.
- No video, no ICE/STUN/TURN, no SRTP: those modules are simply not loaded. Codecs: PCMU
  and PCMA (the `g711` module) only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from tests.peers import (
    LOOPBACK,
    IncomingCall,
    PeerError,
    canonical_header,
    free_port,
    parse_headers,
    wait_until,
)
from tests.peers.tones import RATE, Samples, read_wav, silence, write_wav

INSTALL_HINT = "install baresip (apt-get install baresip)"
MODULE_DIR = Path("/usr/lib/baresip/modules")
REQUIRED_MODULES = ("account", "g711", "aufile", "sndfile", "ctrl_tcp", "menu")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRACE_START = "\x1b[36;1m#\n"
_TRACE_END = "\x1b[;m"
_UNSAFE_IN_ACCOUNT = re.compile(r"[\s;<>\"]")

AnswerMode = Literal["manual", "auto"]


def find_baresip() -> str:
    """The baresip binary, checked to have every module the harness loads; PeerError with
    the install command otherwise."""
    path = shutil.which("baresip")
    if path is None:
        raise PeerError(f"baresip is not on PATH: {INSTALL_HINT}")
    missing = [m for m in REQUIRED_MODULES if not (MODULE_DIR / f"{m}.so").exists()]
    if missing:
        raise PeerError(
            f"baresip modules missing from {MODULE_DIR}: {', '.join(missing)}: {INSTALL_HINT}"
        )
    return path


@dataclass(frozen=True)
class Event:
    """One ctrl_tcp event: `type` as baresip names it (CALL_ESTABLISHED…), its class
    (call, register…), the call it concerns ("" for none) and its parameter text."""

    index: int
    type: str
    cls: str
    call_id: str
    direction: str
    peer_uri: str
    param: str
    data: dict[str, object] = field(repr=False)


class Baresip:
    """One baresip softphone on loopback: registered with digest auth at the registrar on
    `registrar_port` (127.0.0.1), or, without one, reachable directly at `uri`.

    Use as a context manager (`with Baresip(...) as phone:`); every wait is bounded and the
    process is killed on exit whatever happened. `log_tail()` is for failure messages.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        user: str,
        password: str = "secret",
        registrar_port: int | None = None,
        regint: int = 600,
        answer_mode: AnswerMode = "manual",
        source: Samples | None = None,
        source_seconds: float = 60.0,
        sip_port: int | None = None,
        display_name: str | None = None,
    ) -> None:
        for what, value in (("user", user), ("password", password)):
            if not value or _UNSAFE_IN_ACCOUNT.search(value):
                raise ValueError(
                    f"baresip {what} must be non-empty without spaces, ';', "
                    f"'<', '>' or quotes, got {value!r}"
                )
        if registrar_port is not None and regint < 1:
            raise ValueError(f"regint must be >= 1 second when registering, got {regint}")
        if source_seconds <= 0.0:
            raise ValueError(f"source_seconds must be > 0, got {source_seconds:g}")
        if source is not None and (source.dtype != np.int16 or source.ndim != 1):
            raise ValueError(
                f"source must be 1-D int16 samples at 8 kHz, got {source.dtype} "
                f"with shape {source.shape}"
            )
        if display_name is not None and '"' in display_name:
            raise ValueError(f"display name must not contain quotes: {display_name!r}")
        self.workdir = workdir
        self.registrar_port = registrar_port
        self.user = user
        self.password = password
        self.regint = regint
        self.answer_mode = answer_mode
        self.source = source if source is not None else silence(0.0)
        self.source_seconds = source_seconds
        self.sip_port = sip_port if sip_port is not None else free_port(("udp", "tcp"))
        self.ctrl_port = free_port(("tcp",))
        self.display_name = display_name
        self.config_dir = workdir / "config"
        self.record_dir = workdir / "audio"
        self.log_path = workdir / "baresip.log"
        # Registering: the AOR is at the registrar. Not: the phone is its own domain and
        # is called at `uri` directly.
        self.aor = f"sip:{user}@{LOOPBACK}:{registrar_port or self.sip_port}"
        self.uri = f"sip:{user}@{LOOPBACK}:{self.sip_port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._responses: dict[str, dict[str, object]] = {}
        self._consumed: dict[str, int] = {}
        self._offered: set[str] = set()
        self._token = 0
        self._reader_error: str | None = None
        self._closing = False

    # ----------------------------------------------------------------- life cycle

    def __enter__(self) -> Baresip:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start baresip and connect to its control port."""
        if self._proc is not None:
            raise PeerError("baresip already started")
        binary = find_baresip()
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            raise PeerError("stdbuf (coreutils) is needed to read baresip's log as it runs")
        self._write_config()
        log = self.log_path.open("wb")
        try:
            # Line-buffered stdout so the SIP trace reaches the log before the event does.
            self._proc = subprocess.Popen(
                [stdbuf, "-oL", "-eL", binary, "-4", "-s", "-f", str(self.config_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                env={**os.environ, "HOME": str(self.workdir)},
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise PeerError(
                    f"baresip exited with {self._proc.returncode} at start-up:\n{self.log_tail()}"
                )
            try:
                self._sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PeerError(
                        f"baresip's ctrl_tcp port {self.ctrl_port} did not open "
                        f"within {timeout:g} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.02)
        self._sock.settimeout(0.2)
        self._reader = threading.Thread(target=self._read_loop, name="baresip-ctrl", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop baresip (SIGTERM: it unregisters and hangs up; SIGKILL after `timeout`
        seconds) and close the control connection. Its exit status; None if never started."""
        self._closing = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._reader is not None:
            self._reader.join(2.0)
        return proc.returncode if proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- config

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        pad = max(0, round(self.source_seconds * RATE) - self.source.size)
        source_wav = self.workdir / "source.wav"
        write_wav(source_wav, np.concatenate([self.source, np.zeros(pad, dtype=np.int16)]))
        rtp_low = free_port(("udp",)) & ~1
        rtp_low = min(rtp_low, 65534 - 100)
        config = "\n".join(
            [
                "poll_method\tepoll",
                f"sip_listen\t{LOOPBACK}:{self.sip_port}",
                f"net_interface\t{LOOPBACK}",
                "call_local_timeout\t120",
                "call_max_calls\t4",
                f"audio_source\taufile,{source_wav}",
                "audio_path\t/usr/share/baresip",
                "ausrc_format\ts16",
                "auplay_format\ts16",
                "auenc_format\ts16",
                "audec_format\ts16",
                "audio_buffer\t20-160",
                "jitter_buffer_delay\t1-10",
                f"rtp_ports\t{rtp_low}-{rtp_low + 100}",
                "rtcp_mux\tno",
                f"module_path\t{MODULE_DIR}",
                "module\tg711.so",
                "module\taufile.so",
                "module\tsndfile.so",
                "module_tmp\taccount.so",
                "module_app\tmenu.so",
                "module_app\tctrl_tcp.so",
                f"ctrl_tcp_listen\t{LOOPBACK}:{self.ctrl_port}",
                f"snd_path\t{self.record_dir}",
                "ringback_disabled\tyes",
                "statmode_default\toff",
                "",
            ]
        )
        (self.config_dir / "config").write_text(config)
        name = f'"{self.display_name}" ' if self.display_name else ""
        params = [
            f"auth_pass={self.password}",
            f"regint={self.regint if self.registrar_port is not None else 0}",
            f"answermode={self.answer_mode}",
            "audio_codecs=PCMU,PCMA",
            "ptime=20",
            "call_transfer=yes",
        ]
        account = f"{name}<{self.aor};transport=udp>;{';'.join(params)}\n"
        (self.config_dir / "accounts").write_text(account)
        (self.config_dir / "contacts").write_text("")

    # ----------------------------------------------------------------- control channel

    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        assert sock is not None
        while not self._closing:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                self._fail_reader(f"control connection error: {e}")
                return
            if not chunk:
                self._fail_reader("baresip closed its control connection")
                return
            buf += chunk
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                try:
                    length = int(buf[:colon])
                except ValueError:
                    self._fail_reader(f"bad netstring length {buf[:colon][:20]!r}")
                    return
                end = colon + 1 + length
                if len(buf) < end + 1:
                    break
                if buf[end : end + 1] != b",":
                    self._fail_reader("netstring not terminated by ','")
                    return
                self._dispatch(buf[colon + 1 : end])
                buf = buf[end + 1 :]

    def _fail_reader(self, why: str) -> None:
        with self._cond:
            if not self._closing:
                self._reader_error = why
            self._cond.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return  # baresip 1.0 never sends non-JSON frames; ignore rather than die
        if not isinstance(msg, dict):
            return
        with self._cond:
            if msg.get("response") is True:
                self._responses[str(msg.get("token", ""))] = msg
            elif msg.get("event") in (True, "true"):
                self._events.append(
                    Event(
                        index=len(self._events),
                        type=str(msg.get("type", "")),
                        cls=str(msg.get("class", "")),
                        call_id=str(msg.get("id", "")),
                        direction=str(msg.get("direction", "")),
                        peer_uri=str(msg.get("peeruri", "")),
                        param=str(msg.get("param", "")),
                        data=msg,
                    )
                )
            self._cond.notify_all()

    def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Run a baresip long command; its text output. PeerError when baresip refuses it
        (e.g. a call command with no call) or does not answer within `timeout` seconds."""
        if self._sock is None:
            raise PeerError("baresip is not started")
        with self._cond:
            self._token += 1
            token = f"t{self._token}"
        body: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            body["params"] = params
        data = json.dumps(body).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if self._reader_error or left <= 0:
                    why = self._reader_error or f"no answer within {timeout:g} s"
                    raise PeerError(f"baresip command {command!r}: {why}\n{self.log_tail()}")
                self._cond.wait(left)
            resp = self._responses.pop(token)
        text = _ANSI.sub("", str(resp.get("data", "")))
        if resp.get("ok") is not True:
            raise PeerError(f"baresip refused {command!r} {params or ''}: {text.strip()}")
        return text

    # ----------------------------------------------------------------- events

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def wait_event(self, type_: str, timeout: float = 10.0, call_id: str | None = None) -> Event:
        """The next event of `type_` (of call `call_id` if given) not returned by an earlier
        wait for that type: events queue, so a test may wait after the fact."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = self._consumed.get(type_, 0)
                for ev in self._events[start:]:
                    if ev.type == type_ and (call_id is None or ev.call_id == call_id):
                        self._consumed[type_] = ev.index + 1
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self._reader_error:
                    seen = ", ".join(e.type for e in self._events[-12:]) or "none"
                    why = self._reader_error or f"not within {timeout:g} s"
                    raise PeerError(
                        f"baresip event {type_} {why} (last events: {seen})\n{self.log_tail()}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Until the registrar has accepted the registration. REGISTER_OK may come before
        the control connection is up, so the status line (`reginfo`) is polled as well."""
        if self.registrar_port is None:
            raise PeerError("this baresip has no registrar to register with")
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                for ev in self._events:
                    if ev.type == "REGISTER_OK":
                        return
                    if ev.type == "REGISTER_FAIL":
                        raise PeerError(
                            f"baresip registration failed: {ev.param}\n{self.log_tail()}"
                        )
            status = self.command("reginfo")
            if re.search(r"\bOK\b", status):
                return
            if re.search(r"\bERR\b", status):
                raise PeerError(f"baresip registration failed: {status.strip()}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(
                    f"baresip not registered within {timeout:g} s: "
                    f"{status.strip()}\n{self.log_tail()}"
                )
            with self._cond:
                self._cond.wait(0.1)

    # ----------------------------------------------------------------- calls

    def dial(self, uri: str) -> None:
        """Place a call to `uri` (a full SIP URI, or a user part completed with the account's
        domain). Follow with `wait_established`."""
        self.command("dial", uri)

    def wait_established(self, timeout: float = 10.0) -> Event:
        return self.wait_event("CALL_ESTABLISHED", timeout)

    def wait_closed(self, timeout: float = 10.0, call_id: str | None = None) -> Event:
        return self.wait_event("CALL_CLOSED", timeout, call_id)

    def wait_incoming(self, timeout: float = 10.0) -> IncomingCall:
        """The next call offered to this phone, with its INVITE's headers (from the SIP
        trace). In manual answer mode it rings until `answer()`; in auto mode baresip 1.0
        answers at once without a CALL_INCOMING event, so its first event of the incoming
        call (whichever type) stands for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ev = next(
                    (
                        e
                        for e in self._events
                        if e.direction == "incoming"
                        and e.call_id
                        and e.call_id not in self._offered
                    ),
                    None,
                )
                if ev is not None:
                    self._offered.add(ev.call_id)
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self._reader_error:
                    why = self._reader_error or f"not within {timeout:g} s"
                    raise PeerError(f"baresip: no incoming call {why}\n{self.log_tail()}")
                self._cond.wait(min(left, 0.2))
        invite: str | None = None

        def found() -> bool:
            nonlocal invite
            invite = self._find_invite(ev.call_id)
            return invite is not None

        if not wait_until(found, 2.0) or invite is None:
            raise PeerError(
                f"baresip reported call {ev.call_id} but its INVITE is not in "
                f"the SIP trace\n{self.log_tail()}"
            )
        _, headers = parse_headers(invite)
        return IncomingCall(
            call_id=ev.call_id,
            peer_uri=ev.peer_uri,
            peer_name=str(ev.data.get("peerdisplayname", "")),
            headers=headers,
        )

    def _find_invite(self, call_id: str) -> str | None:
        for message in self.sip_trace():
            if not message.startswith("INVITE "):
                continue
            _, headers = parse_headers(message)
            ids = [v for n, v in headers if canonical_header(n) == "call-id"]
            if ids and ids[0] == call_id:
                return message
        return None

    def sip_trace(self) -> list[str]:
        """Every SIP message baresip sent or received so far, as text, in order."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out = []
        for block in text.split(_TRACE_START)[1:]:
            body = block.split(_TRACE_END, 1)[0]
            _, _, message = body.partition("\n")  # drop "UDP src -> dst"
            out.append(message)
        return out

    def answer(self) -> None:
        """Answer the ringing call (manual answer mode)."""
        self.command("accept")

    def hangup(self) -> None:
        """Hang up the current call (CANCEL while it rings out, BYE once answered)."""
        self.command("hangup")

    def transfer(self, uri: str) -> None:
        """Blind transfer of the current call to `uri` (REFER); the transferee dials."""
        self.command("transfer", uri)

    def hold(self) -> None:
        """Put the current call on hold (re-INVITE with a=sendonly)."""
        self.command("hold")

    def resume(self) -> None:
        """Take the current call off hold (re-INVITE with a=sendrecv)."""
        self.command("resume")

    def send_digits(self, digits: str, gap: float = 0.25) -> None:
        """Press keys in the current call as RFC 4733 events, one every `gap` seconds."""
        for d in digits:
            if d not in "0123456789*#ABCD":
                raise ValueError(f"not a DTMF key: {d!r}")
            self.command("sndcode", d)
            time.sleep(gap)

    # ----------------------------------------------------------------- audio

    def recordings(self, kind: Literal["dec", "enc"] = "dec") -> list[Path]:
        """The WAV dumps so far, oldest first: "dec" what calls received, "enc" what they
        sent."""
        return sorted(self.record_dir.glob(f"dump-*-{kind}.wav"))

    def recorded(self) -> Samples:
        """What the phone heard in its latest call: int16 samples at 8 kHz, one per
        received sample (a gap in the RTP stream is not filled)."""
        return self._latest("dec")

    def sent(self) -> Samples:
        """What the phone encoded and sent in its latest call, int16 at 8 kHz."""
        return self._latest("enc")

    def _latest(self, kind: Literal["dec", "enc"]) -> Samples:
        files = self.recordings(kind)
        if not files:
            raise PeerError(
                f"baresip has no {kind} recording in {self.record_dir}: no call has had audio yet"
            )
        samples, rate = read_wav(files[-1])
        if rate != RATE:
            raise PeerError(f"{files[-1]}: {rate} Hz, expected {RATE}")
        return samples

    # ----------------------------------------------------------------- log

    def log_text(self) -> str:
        """baresip's output so far with terminal colours removed."""
        if not self.log_path.exists():
            return ""
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- baresip log ({self.log_path}) ---\n{self.log_text()[-chars:]}"
