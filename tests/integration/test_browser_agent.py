"""A browser agent through the WebRTC gateway, measured end to end.

A real engine runs as a subprocess with a contact centre (agent bob, queue help, the
`queue` flow). The gateway runs in the test's event loop on its own aiohttp port and UDP
socket, as it would inside the engine: it reaches the engine only through SIP and RTP.
The "browser" is scripted with aiortc (an RTCPeerConnection and a WebSocket client) and
logs in as bob; the caller is a pyVoIP phone dialling the queue. Each side talks a tone
and records what it hears: the browser must hear the caller's 700 Hz, the caller the
browser's 1100 Hz, neither its own; muting in the page silences the browser for the
caller; hanging up in the page ends the caller's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone

from hotline.web.webrtc_gateway import GatewayConfig, WebRtcGateway
from tests.integration.conftest import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.integration

ACD = """
acd:
  agents:
    - {id: bob, name: Bob Builder, skills: {vaccine: 5}, logged_in: true}
  queues:
    - name: help
      skills: [{skill: vaccine}]
      announce_first_seconds: 1
      announce_every_seconds: 30
  ring_timeout_seconds: 15
  wrap_up_seconds: 1
"""
CALLER_TONE = 700.0  # Hz, what the pyVoIP caller says
BROWSER_TONE = 1100.0  # Hz, what the browser says
BROWSER_AMPLITUDE = 12000  # of 32767
UNREGISTERED = "registration sip:bob@hotline.test: 0 contact(s)"  # the engine's log line


def level(samples: npt.NDArray[Any], freq: float) -> float:
    """The amplitude of `freq` in 8 kHz samples (one DFT bin)."""
    x = samples.astype(np.float64)
    t = np.arange(x.size) / 8000
    return float(2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) / max(1, x.size))


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class Caller:
    """A pyVoIP phone that dials, says a tone and records (8-bit unsigned audio)."""

    def __init__(self, server: Server, user: str, password: str, freq: float) -> None:
        rtp = 40000 + (free_port(("udp",)) % 400) * 20
        t = np.arange(160) / 8000
        self.chunk = (128 + 60 * np.sin(2 * np.pi * freq * t)).astype(np.uint8).tobytes()
        self.heard = bytearray()
        self.call: Any = None
        self.stop_talking = threading.Event()
        self.phone = VoIPPhone(
            "127.0.0.1",
            server.port,
            user,
            password,
            myIP="127.0.0.1",
            sipPort=free_port(("udp",)),
            rtpPortLow=rtp,
            rtpPortHigh=rtp + 19,
            callCallback=lambda call: None,
        )

    def start(self) -> None:
        self.phone.start()
        assert wait_for(lambda: self.phone.get_status() == PhoneStatus.REGISTERED, 10)

    def dial(self, number: str) -> None:
        self.call = self.phone.call(number)
        assert wait_for(lambda: self.call.state == CallState.ANSWERED, 10)
        threading.Thread(target=self._talk, daemon=True).start()

    def _talk(self) -> None:
        while self.call.state == CallState.ANSWERED and not self.stop_talking.is_set():
            self.call.write_audio(self.chunk)
            self.heard += self.call.read_audio(160, blocking=False)
            time.sleep(0.018)

    def last(self, seconds: float) -> npt.NDArray[np.int16]:
        data = bytes(self.heard[-int(seconds * 8000) :])
        return ((np.frombuffer(data, np.uint8).astype(np.int16) - 128) * 256).astype(np.int16)

    def ended(self) -> bool:
        return self.call is not None and self.call.state == CallState.ENDED

    def stop(self) -> None:
        self.stop_talking.set()
        self.phone.stop()


class ToneTrack(MediaStreamTrack):
    """The browser's microphone: a steady tone, 20 ms frames on the wall clock."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self.freq = freq
        self.start: float | None = None
        self.n = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.n += 160
            wait = self.start + self.n / 8000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(160) + self.n) / 8000
        samples = (BROWSER_AMPLITUDE * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, 160), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, 8000)
        return frame


class Browser:
    """The page, scripted: the WebSocket protocol and a WebRTC leg."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.heard: list[npt.NDArray[np.int16]] = []
        self.pc: RTCPeerConnection | None = None
        self.recording: asyncio.Task[None] | None = None

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of type `kind` (others are kept in `seen`)."""
        end = asyncio.get_running_loop().time() + timeout
        while True:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {kind!r} message within {timeout} s: {self.seen}")
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = msg.json()
            self.seen.append(data)
            if data["type"] == kind:
                return data

    async def answer(self, call: str) -> None:
        pc = self.pc = RTCPeerConnection()
        transceiver = pc.addTransceiver(ToneTrack(BROWSER_TONE), direction="sendrecv")
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/pcmu"
            ]
        )

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.recording = asyncio.ensure_future(self._record(track))

        await pc.setLocalDescription(await pc.createOffer())
        await self.ws.send_json({"type": "accept", "call": call, "sdp": pc.localDescription.sdp})
        answer = await self.expect("answer")
        assert "PCMU/8000" in answer["sdp"] and "opus" not in answer["sdp"].lower(), answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def _record(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            assert frame.sample_rate == 8000, frame.sample_rate
            self.heard.append(frame.to_ndarray().reshape(-1).astype(np.int16))

    def last(self, seconds: float) -> npt.NDArray[np.int16]:
        samples = np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)
        return samples[-int(seconds * 8000) :]

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.recording is not None:
            self.recording.cancel()


async def until(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


@contextlib.asynccontextmanager
async def gateway_for(server: Server) -> AsyncIterator[str]:
    """The gateway on its own UDP socket and aiohttp port; yields the page's base URL.
    An engine started with `engine(..., embedded=True)` runs its own (webrtc.enabled):
    then the page is on the engine's HTTP listener."""
    if server.http_port is not None:
        yield f"http://127.0.0.1:{server.http_port}/agent"
        return
    gateway = WebRtcGateway(
        GatewayConfig(engine_host="127.0.0.1", engine_port=server.port, domain="hotline.test")
    )
    await gateway.start()
    app = web.Application()
    gateway.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    http_port = free_port(("tcp",))
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    try:
        yield f"http://127.0.0.1:{http_port}/agent"
    finally:
        await gateway.stop()
        await runner.cleanup()


def engine(tmp_path: Path, *, embedded: bool = False) -> Server:
    os.environ.pop("HOTLINE_API_TOKEN", None)
    http_port = free_port(("tcp",)) if embedded else 8080
    server = start_server(
        tmp_path,
        registrar_extra="  allow_rfc2069: true\n",
        default_flow="queue",
        drain=3.0,
        http_enabled="true" if embedded else "false",
        http_port=http_port,
        extra_yaml=ACD + ("webrtc:\n  enabled: true\n" if embedded else ""),
    )
    server.http_port = http_port if embedded else None
    return server


async def talk_scenario(server: Server) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    caller = Caller(server, "alice", "wonderland", CALLER_TONE)
    figures: dict[str, float] = {}
    browser: Browser | None = None
    try:
        async with gateway_for(server) as base, aiohttp.ClientSession() as http:
            async with http.get(base + "/") as resp:
                assert resp.status == 200
                assert "agent.js" in await resp.text()
                assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            # A page from elsewhere may not open the agent's WebSocket.
            async with http.get(
                base + "/ws",
                headers={
                    "Origin": "http://evil.example",
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ) as resp:
                assert resp.status == 403

            ws = await http.ws_connect(base + "/ws")
            browser = Browser(ws)
            await ws.send_json({"type": "login", "username": "bob", "password": "wrong"})
            failed = await browser.expect("login_failed")
            assert "refused" in failed["reason"], failed
            await ws.send_json({"type": "login", "username": "bob", "password": "builder"})
            registered = await browser.expect("registered")
            assert registered["username"] == "bob" and registered["expires"] > 0, registered
            assert await until(lambda: "agent bob: available/idle" in server.log_text(), 10), (
                server.log_text()[-3000:]
            )

            await loop.run_in_executor(None, caller.start)
            await loop.run_in_executor(None, caller.dial, "queue")
            ringing = await browser.expect("ringing", timeout=20)
            assert ringing["queue"] == "help", ringing
            assert ["topic", "vaccine"] in ringing["variables"], ringing
            assert isinstance(ringing["waited"], int) and ringing["call_ref"], ringing
            await browser.answer(ringing["call"])
            await browser.expect("connected")
            assert await until(lambda: "bridged to agent bob" in server.log_text(), 10), (
                server.log_text()[-3000:]
            )

            await asyncio.sleep(2.5)
            heard_by_browser = browser.last(1.5)
            heard_by_caller = caller.last(1.5)
            figures["browser_hears_caller"] = level(heard_by_browser, CALLER_TONE)
            figures["browser_hears_itself"] = level(heard_by_browser, BROWSER_TONE)
            figures["caller_hears_browser"] = level(heard_by_caller, BROWSER_TONE)
            figures["caller_hears_itself"] = level(heard_by_caller, CALLER_TONE)

            await ws.send_json({"type": "mute", "call": ringing["call"], "muted": True})
            await asyncio.sleep(1.5)
            figures["caller_hears_muted_browser"] = level(caller.last(1.0), BROWSER_TONE)
            await ws.send_json({"type": "mute", "call": ringing["call"], "muted": False})
            await asyncio.sleep(1.5)
            figures["caller_hears_unmuted_browser"] = level(caller.last(1.0), BROWSER_TONE)

            await ws.send_json({"type": "hangup", "call": ringing["call"]})
            ended = await browser.expect("ended")
            assert ended["reason"] == "hung up by the agent", ended
            assert await until(caller.ended, 10), "the caller's call did not end"
            assert await until(lambda: "over (agent hung up)" in server.log_text(), 10), (
                server.log_text()[-3000:]
            )

            await ws.send_json({"type": "logout"})
            await browser.expect("logged_out")
            assert await until(lambda: UNREGISTERED in server.log_text(), 5)
            await ws.close()
    finally:
        caller.stop()
        if browser is not None:
            await browser.close()
    return figures


async def decline_scenario(server: Server) -> None:
    loop = asyncio.get_running_loop()
    caller = Caller(server, "alice", "wonderland", CALLER_TONE)
    try:
        async with gateway_for(server) as base, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(base + "/ws")
            browser = Browser(ws)
            await ws.send_json({"type": "login", "username": "bob", "password": "builder"})
            await browser.expect("registered")
            assert await until(lambda: "agent bob: available/idle" in server.log_text(), 10)
            await loop.run_in_executor(None, caller.start)

            # The caller gives up while the page rings: the ringing stops.
            await loop.run_in_executor(None, caller.dial, "queue")
            first = await browser.expect("ringing", timeout=20)
            await loop.run_in_executor(None, caller.call.hangup)
            cancelled = await browser.expect("cancelled")
            assert cancelled["call"] == first["call"], cancelled
            assert cancelled["reason"] == "withdrawn by the hotline", cancelled
            await ws.send_json({"type": "accept", "call": first["call"], "sdp": "v=0\r\n"})
            refused = await browser.expect("error")
            assert refused["message"] == f"there is no call {first['call']}", refused

            # The next caller is declined from the page: the engine hears 603.
            await loop.run_in_executor(None, caller.dial, "queue")
            second = await browser.expect("ringing", timeout=20)
            assert second["call"] != first["call"]
            await ws.send_json({"type": "reject", "call": second["call"]})
            ended = await browser.expect("ended")
            assert ended["reason"] == "rejected", ended
            assert await until(lambda: "(rejected)" in server.log_text(), 10), server.log_text()[
                -3000:
            ]
            await loop.run_in_executor(None, caller.call.hangup)

            # Closing the page without logging out still removes the registration.
            await ws.close()
            assert await until(lambda: UNREGISTERED in server.log_text(), 5), server.log_text()[
                -3000:
            ]
    finally:
        caller.stop()


async def no_pcmu_scenario(server: Server) -> None:
    loop = asyncio.get_running_loop()
    caller = Caller(server, "alice", "wonderland", CALLER_TONE)
    pc = RTCPeerConnection()
    try:
        async with gateway_for(server) as base, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(base + "/ws")
            browser = Browser(ws)
            await ws.send_json({"type": "login", "username": "bob", "password": "builder"})
            await browser.expect("registered")
            assert await until(lambda: "agent bob: available/idle" in server.log_text(), 10)
            await loop.run_in_executor(None, caller.start)
            await loop.run_in_executor(None, caller.dial, "queue")
            ringing = await browser.expect("ringing", timeout=20)
            transceiver = pc.addTransceiver(ToneTrack(BROWSER_TONE), direction="sendrecv")
            transceiver.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities("audio").codecs
                    if c.mimeType.lower() == "audio/opus"
                ]
            )
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json(
                {"type": "accept", "call": ringing["call"], "sdp": pc.localDescription.sdp}
            )
            ended = await browser.expect("ended")
            assert ended["reason"] == (
                "the browser's offer was refused: the offer has no PCMU (G.711 µ-law)"
            ), ended
            # The engine was told the agent cannot be reached (480), not that they declined.
            assert await until(lambda: "(unreachable)" in server.log_text(), 10), server.log_text()[
                -3000:
            ]
            await loop.run_in_executor(None, caller.call.hangup)
            await ws.close()
    finally:
        caller.stop()
        await pc.close()


def test_a_browser_agent_answers_a_queued_call_and_both_hear_each_other(
    tmp_path: Path,
) -> None:
    server = engine(tmp_path, embedded=True)  # the gateway the engine runs itself
    try:
        figures = asyncio.run(asyncio.wait_for(talk_scenario(server), 120))
        print("tone levels:", {k: round(v) for k, v in figures.items()})
        assert figures["browser_hears_caller"] > 2000, figures
        assert figures["browser_hears_itself"] < 500, figures
        assert figures["caller_hears_browser"] > 2000, figures
        assert figures["caller_hears_itself"] < 500, figures
        assert figures["caller_hears_muted_browser"] < 300, figures
        assert figures["caller_hears_unmuted_browser"] > 2000, figures
    finally:
        assert stop_server(server) == 0, server.log_text()[-3000:]


def test_the_page_stops_ringing_on_cancel_declines_with_603_and_unregisters_on_close(
    tmp_path: Path,
) -> None:
    server = engine(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(decline_scenario(server), 120))
    finally:
        assert stop_server(server) == 0, server.log_text()[-3000:]


def test_a_browser_offer_without_pcmu_is_refused_and_the_engine_hears_480(
    tmp_path: Path,
) -> None:
    server = engine(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(no_pcmu_scenario(server), 120))
    finally:
        assert stop_server(server) == 0, server.log_text()[-3000:]
