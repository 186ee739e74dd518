"""pyVoIP 1.6 as a scripted agent softphone for tests: registers, dials or is called,
answers, plays samples into the call and records what it hears.

Owns one `pyVoIP.VoIP.VoIPPhone`, its ports on 127.0.0.1 (SIP and a small RTP range),
the capture of the current call's audio and the conversions between pyVoIP's 8-bit
unsigned linear audio and int16. It knows nothing of the engine: a registrar address,
port, user and password.

pyVoIP's limits, which tests must live with:

- Digest: it answers a challenge the RFC 2069 way (MD5, no qop), so the registrar must
  accept that (hotline: `registrar.allow_rfc2069: true`).
- It sends every SIP message to its registrar, never to the Via or Contact of the peer:
  calls reach it only through its registrar (or a test peer standing in for one).
- Its codecs: PCMU and PCMA, 8-bit linear to and from the application; keys only as
  in-band audio (nothing sends RFC 4733 from the application side).
- Its incoming-call callback runs on a timer thread one second after the INVITE (after
  its 180 Ringing); the harness keeps that thread alive for the call, as pyVoIP expects.
- Capture: pyVoIP buffers received audio by RTP timestamp and hands it out in order; the
  harness reads it every 20 ms, and a packet later than its turn shows up as 20 ms of
  silence in the capture (nothing is lost, the capture is that much longer).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

import numpy as np
from pyVoIP.VoIP import CallState, InvalidStateError, PhoneStatus, VoIPCall, VoIPPhone

from tests.peers import LOOPBACK, IncomingCall, PeerError, free_port, parse_headers, wait_until
from tests.peers.tones import Samples

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_SECONDS = 0.020
RTP_PORTS = 10  # size of the RTP range given to pyVoIP (it picks one port per call)
SIP_TIMEOUT = 5  # seconds pyVoIP waits for a REGISTER answer (its default is 30)
UNREGISTER_TIMEOUT = 1  # the same on stop: a registrar gone already must not hold it up


def to_pyvoip(samples: Samples) -> bytes:
    """int16 samples as pyVoIP's 8-bit unsigned linear audio (top byte, offset 128)."""
    return ((samples.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()


def from_pyvoip(data: bytes) -> Samples:
    """pyVoIP's 8-bit unsigned linear audio as int16 samples."""
    u8 = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    return ((u8 - 128) << 8).astype(np.int16)


def _free_udp_range(count: int) -> int:
    """The first port of `count` consecutive UDP ports free on 127.0.0.1 just now."""
    for _ in range(50):
        base = free_port(("udp",))
        if base + count > 65535:
            continue
        if all(_udp_free(p) for p in range(base + 1, base + count)):
            return base
    raise PeerError(f"no {count} consecutive free UDP ports on {LOOPBACK}")


def _udp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((LOOPBACK, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


class PyVoipAgent:
    """An agent's softphone on pyVoIP, registered at 127.0.0.1:`registrar_port`.

    Use as a context manager; `start()` returns once registered (pyVoIP registers
    synchronously). One call at a time: `dial()` or `wait_incoming()` + `answer()`, then
    `play()`, `recorded()`, `hangup()` or `wait_ended()`.
    """

    def __init__(
        self,
        *,
        registrar_port: int,
        user: str,
        password: str,
        auto_answer: bool = False,
        sip_port: int | None = None,
    ) -> None:
        self.registrar_port = registrar_port
        self.user = user
        self.auto_answer = auto_answer
        self.sip_port = sip_port if sip_port is not None else free_port(("udp",))
        rtp_low = _free_udp_range(RTP_PORTS)
        self.phone = VoIPPhone(
            LOOPBACK,
            registrar_port,
            user,
            password,
            myIP=LOOPBACK,
            callCallback=self._on_call,
            sipPort=self.sip_port,
            rtpPortLow=rtp_low,
            rtpPortHigh=rtp_low + RTP_PORTS - 1,
        )
        self.phone.sip.register_timeout = SIP_TIMEOUT
        self._lock = threading.Condition()
        self._call: VoIPCall | None = None
        self._offered: list[VoIPCall] = []
        self._reported = 0
        self._frames: list[bytes] = []
        self._capture: threading.Thread | None = None
        self._stopping = False
        self._started = False

    # ----------------------------------------------------------------- life cycle

    def __enter__(self) -> PyVoipAgent:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Register (digest, RFC 2069 style); PeerError when the registrar refuses or does
        not answer within `SIP_TIMEOUT` seconds."""
        self._started = True
        try:
            self.phone.start()
        except Exception as e:
            raise PeerError(
                f"pyVoIP {self.user} could not register at "
                f"{LOOPBACK}:{self.registrar_port}: {type(e).__name__}: {e}"
            ) from e
        if self.phone.get_status() != PhoneStatus.REGISTERED:
            raise PeerError(f"pyVoIP {self.user} not registered: {self.phone.get_status()}")

    @property
    def registered(self) -> bool:
        return self.phone.get_status() == PhoneStatus.REGISTERED

    def stop(self) -> None:
        """Hang up, unregister (waiting at most `UNREGISTER_TIMEOUT` seconds for each answer)
        and stop the threads."""
        self._stopping = True
        with self._lock:
            self._lock.notify_all()
        if self._started:
            self.phone.sip.register_timeout = UNREGISTER_TIMEOUT
            with contextlib.suppress(Exception):  # pyVoIP raises if already stopped
                self.phone.stop()
        if self._capture is not None:
            self._capture.join(2.0)

    # ----------------------------------------------------------------- calls

    def dial(self, number: str, timeout: float = 10.0) -> None:
        """Call `number` at the registrar and wait until it is answered."""
        call = self.phone.call(number)
        with self._lock:
            self._call = call
        if not wait_until(lambda: call.state == CallState.ANSWERED, timeout):
            raise PeerError(
                f"pyVoIP call to {number} not answered within {timeout:g} s "
                f"(state {call.state.value})"
            )
        self._start_capture(call)

    def _on_call(self, call: VoIPCall) -> None:
        """pyVoIP's incoming-call callback (its own thread): offer, maybe answer, and stay
        alive for the call, as pyVoIP expects of it."""
        with self._lock:
            self._offered.append(call)
            self._lock.notify_all()
        if self.auto_answer:
            self._answer(call)
        while not self._stopping and call.state != CallState.ENDED:
            with self._lock:
                self._lock.wait(0.05)

    def wait_incoming(self, timeout: float = 10.0) -> IncomingCall:
        """The next call offered, with its INVITE's headers. pyVoIP has sent 180 Ringing;
        it rings until `answer()` (or is answered already with `auto_answer`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._reported >= len(self._offered):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"pyVoIP {self.user}: no incoming call within {timeout:g} s")
                self._lock.wait(left)
            call = self._offered[self._reported]
            self._reported += 1
            if self._call is None or self._call.state == CallState.ENDED:
                self._call = call
        raw = call.request.raw
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        _, headers = parse_headers(text)
        frm = call.request.headers.get("From", {})
        address = str(frm.get("address", "")) if isinstance(frm, dict) else ""
        name = str(frm.get("caller", "")) if isinstance(frm, dict) else ""
        return IncomingCall(
            call_id=str(call.call_id),
            peer_uri=f"sip:{address}" if address else "",
            peer_name=name.strip().strip('"'),
            headers=headers,
        )

    def answer(self) -> None:
        """Answer the call last returned by `wait_incoming`."""
        call = self._current()
        if call.state == CallState.ANSWERED and self.auto_answer:
            return
        self._answer(call)

    def _answer(self, call: VoIPCall) -> None:
        try:
            call.answer()
        except InvalidStateError as e:
            raise PeerError(
                f"pyVoIP cannot answer call {call.call_id}: {e} (state {call.state.value})"
            ) from e
        with self._lock:
            self._call = call
        self._start_capture(call)

    def _current(self) -> VoIPCall:
        with self._lock:
            call = self._call
        if call is None:
            raise PeerError(f"pyVoIP {self.user} has no call")
        return call

    @property
    def call_id(self) -> str:
        """The current call's Call-ID; PeerError before any call."""
        return str(self._current().call_id)

    @property
    def state(self) -> CallState | None:
        """The current call's state (DIALING, RINGING, ANSWERED, ENDED), None before any."""
        with self._lock:
            return self._call.state if self._call is not None else None

    def hangup(self) -> None:
        """Hang up the answered call (BYE)."""
        call = self._current()
        try:
            call.hangup()
        except InvalidStateError as e:
            raise PeerError(
                f"pyVoIP cannot hang up call {call.call_id}: {e} (state {call.state.value})"
            ) from e

    def wait_ended(self, timeout: float = 10.0) -> None:
        """Until the current call has ended (the peer's BYE)."""
        call = self._current()
        if not wait_until(lambda: call.state == CallState.ENDED, timeout):
            raise PeerError(
                f"pyVoIP call {call.call_id} still {call.state.value} after {timeout:g} s"
            )

    # ----------------------------------------------------------------- audio

    def play(self, samples: Samples) -> None:
        """Queue `samples` (int16, 8 kHz) to be sent in the answered call, after anything
        queued before; silence is sent when the queue is empty."""
        call = self._current()
        if call.state != CallState.ANSWERED:
            raise PeerError(f"pyVoIP call {call.call_id} is {call.state.value}, not answered")
        call.write_audio(to_pyvoip(samples))

    def recorded(self) -> Samples:
        """What the phone has heard in its current call so far, int16 at 8 kHz."""
        with self._lock:
            data = b"".join(self._frames)
        return from_pyvoip(data)

    def _start_capture(self, call: VoIPCall) -> None:
        with self._lock:
            self._frames = []
        self._capture = threading.Thread(
            target=self._capture_loop, args=(call,), name=f"pyvoip-capture-{self.user}", daemon=True
        )
        self._capture.start()

    def _capture_loop(self, call: VoIPCall) -> None:
        due = time.monotonic()
        while not self._stopping and call.state == CallState.ANSWERED:
            try:
                frame = call.read_audio(FRAME_SAMPLES, blocking=False)
            except (IndexError, OSError):
                break  # the call's RTP clients went away with it
            with self._lock:
                self._frames.append(frame)
            due += FRAME_SECONDS
            time.sleep(max(0.0, due - time.monotonic()))
