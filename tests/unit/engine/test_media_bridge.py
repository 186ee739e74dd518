"""Bridged legs in the media tick: jitter buffer + concealment + mix-minus, per role.

Every test streams real RTP into `MediaCore` on a fake clock (one packet per leg per
20 ms, arriving a little after it was sent) and measures what each leg sends: a tone a
leg puts in must come out of exactly the legs that may hear it, at about its level.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt
import pytest

from hotline.engine.media_loop import (
    SAMPLES_PER_TICK,
    TICK_SECONDS,
    MediaCore,
    MediaLeg,
    Role,
)
from hotline.media import g711, tones
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

Int16 = npt.NDArray[np.int16]
RATE = 8000


def media(port: int, codec: Codec = Codec.PCMU) -> NegotiatedMedia:
    pt = codec.static_payload_type
    return NegotiatedMedia(
        "127.0.0.1", port, "127.0.0.1", port + 1, codec, pt, 101, 20,
        Direction.SENDRECV, ((pt, codec),), 101,
    )


def rtp(pt: int, seq: int, ts: int, payload: bytes, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def level(samples: Int16, freq: float) -> float:
    """Amplitude of the `freq` component of `samples` (a single-bin DFT)."""
    x = samples.astype(np.float64)
    t = np.arange(x.size) / RATE
    return float(2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) / max(1, x.size))


class Net:
    """Legs on one core, each with a signal it talks and a record of what it sends."""

    def __init__(self, core: MediaCore) -> None:
        self.core = core
        self.legs: dict[Hashable, MediaLeg] = {}
        self.talk: dict[Hashable, Int16] = {}
        self.heard: dict[Hashable, list[bytes]] = {}
        self.codec: dict[Hashable, g711.Codec] = {}
        self.drop: dict[Hashable, set[int]] = {}
        self.tick = 0

    def add(self, key: str, freq: float | None, codec: Codec = Codec.PCMU) -> MediaLeg:
        port = 7000 + 2 * len(self.legs)
        leg = self.core.add_leg(key, 20000 + 2 * len(self.legs), media(port, codec), 0.0)
        out = self.heard.setdefault(key, [])
        leg.sendto = lambda data, addr: out.append(data)
        self.legs[key] = leg
        seconds = 4.0
        self.talk[key] = (
            tones.beep(seconds * 1000, freq, ramp_ms=0, level_dbm0=-12)
            if freq is not None
            else np.zeros(int(seconds * RATE), dtype=np.int16)
        )
        self.codec[key] = g711.Codec[codec.name]
        self.drop[key] = set()
        return leg

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            n = self.tick
            for key, leg in self.legs.items():
                if n in self.drop[key]:
                    continue
                codec = self.codec[key]
                block = self.talk[key][(n * 160) % self.talk[key].size :][:160]
                payload = g711.encode(codec, block).tobytes()
                packet = rtp(int(codec), n + 1, n * 160, payload, 0x1000 + hash(key) % 1000)
                self.core.receive_rtp(leg, packet, ("127.0.0.1", leg.media.remote_port),
                                      n * TICK_SECONDS + 0.003)
            self.core.tick(n, n * TICK_SECONDS + 0.01)
            self.tick += 1

    def last(self, key: str, seconds: float = 1.0) -> Int16:
        """The audio the leg sent in the last `seconds`."""
        codec = self.codec[key]
        packets = self.heard[key][-int(seconds / TICK_SECONDS):]
        return np.concatenate([g711.decode(codec, np.frombuffer(p[12:], np.uint8))
                               for p in packets])


def net() -> Net:
    return Net(MediaCore(on_digit=lambda *a: None, on_inactive=lambda k: None))


HEARD = 1000.0  # amplitude above which a tone counts as heard
SILENT = 60.0  # below which it does not


def test_two_legs_hear_each_other_and_not_themselves() -> None:
    n = net()
    n.add("caller", 700.0)
    n.add("agent", 1100.0, Codec.PCMA)
    n.core.join("caller", "c1")
    n.core.join("agent", "c1")
    n.run(100)
    caller, agent = n.last("caller"), n.last("agent")
    assert level(caller, 1100.0) > HEARD  # the caller hears the agent …
    assert level(caller, 700.0) < SILENT  # … and not their own voice
    assert level(agent, 700.0) > HEARD
    assert level(agent, 1100.0) < SILENT
    assert n.core.members("c1") == ["caller", "agent"]


def test_three_parties_each_hear_the_other_two() -> None:
    n = net()
    freqs = {"caller": 500.0, "agent": 900.0, "expert": 1400.0}
    for key, f in freqs.items():
        n.add(key, f)
        n.core.join(key, "conf")
    n.run(100)
    for key, f in freqs.items():
        out = n.last(key)
        assert level(out, f) < SILENT, key
        for other, g in freqs.items():
            if other != key:
                assert level(out, g) > HEARD, (key, other)


def test_whisper_is_heard_by_the_agent_only_and_listen_by_nobody() -> None:
    n = net()
    n.add("caller", 500.0)
    n.add("agent", 900.0)
    n.add("boss", 1400.0)
    for key in ("caller", "agent"):
        n.core.join(key, "c")
    n.core.join("boss", "c", role=Role.WHISPER, coach="agent")
    n.run(100)
    assert level(n.last("agent"), 1400.0) > HEARD
    assert level(n.last("caller"), 1400.0) < SILENT
    boss = n.last("boss")
    assert level(boss, 500.0) > HEARD and level(boss, 900.0) > HEARD
    # Listen: the supervisor still hears both, and now nobody hears them.
    n.core.join("boss", "c", role=Role.LISTEN)
    n.run(60)
    assert level(n.last("agent"), 1400.0) < SILENT
    assert level(n.last("caller"), 1400.0) < SILENT
    assert level(n.last("boss"), 500.0) > HEARD
    # Barge: an ordinary member.
    n.core.join("boss", "c")
    n.run(60)
    assert level(n.last("caller"), 1400.0) > HEARD


def test_a_held_leg_hears_its_music_and_is_not_heard() -> None:
    n = net()
    n.add("caller", 700.0)
    n.add("agent", 1100.0)
    n.core.join("caller", "c")
    n.core.join("agent", "c")
    n.run(40)
    n.core.leave("caller")
    music = tones.beep(500, 440.0, ramp_ms=0, level_dbm0=-15)
    n.core.play("caller", music, tag="hold", loop=True)
    n.run(60)
    assert level(n.last("caller"), 440.0) > HEARD
    assert level(n.last("caller"), 1100.0) < SILENT
    assert level(n.last("agent"), 700.0) < SILENT
    n.core.stop_playback("caller")
    n.core.join("caller", "c")
    n.run(60)
    assert level(n.last("agent"), 700.0) > HEARD
    assert level(n.last("caller"), 1100.0) > HEARD


def test_mute_and_gain_scale_what_the_others_hear() -> None:
    n = net()
    n.add("a", 700.0)
    n.add("b", None)
    n.core.join("a", "c")
    n.core.join("b", "c")
    n.run(60)
    unity = level(n.last("b"), 700.0)
    n.core.set_gain("a", 0.5)
    n.run(60)
    half = level(n.last("b"), 700.0)
    assert half == pytest.approx(unity / 2, rel=0.08)
    n.core.set_muted("a", True)
    n.run(60)
    assert level(n.last("b"), 700.0) < SILENT
    with pytest.raises(ValueError):
        n.core.set_gain("a", 17.0)


def test_a_lost_packet_is_concealed_not_a_gap() -> None:
    n = net()
    n.add("caller", 400.0)
    n.add("agent", None)
    n.core.join("caller", "c")
    n.core.join("agent", "c")
    n.drop["caller"] = {60, 61}
    n.run(100)
    out = n.last("agent", 1.6)
    blocks = out[: out.size // 80 * 80].reshape(-1, 80)
    rms = np.sqrt((blocks.astype(np.float64) ** 2).mean(axis=1))
    playing = rms[np.argmax(rms > 1000):]
    # Concealment keeps the tone going through the loss: no 10 ms of silence once it
    # has started (a plain buffer would send 40 ms of nothing).
    assert playing.size > 100
    assert float(playing.min()) > 500.0
    stats = n.core.jitter_stats("caller")
    assert stats.concealed >= 1
    assert n.core.jitter_totals()["concealed"] >= 1


def test_leaving_legs_release_their_slots_and_keep_their_counts() -> None:
    n = net()
    n.add("a", 700.0)
    n.add("b", 900.0)
    n.core.join("a", "c")
    n.core.join("b", "c")
    n.run(30)
    played = n.core.jitter_totals()["played"]
    assert played > 0
    n.core.remove_leg("a")
    n.legs.pop("a")
    n.run(10)
    assert n.core.jitter_totals()["played"] >= played
    assert n.core.members("c") == ["b"]
    # b is alone: it hears silence, and nothing fails.
    assert level(n.last("b", 0.2), 700.0) < SILENT


def test_recording_a_bridged_leg_keeps_both_sides_and_pauses_to_silence() -> None:
    n = net()
    n.add("caller", 700.0)
    n.add("agent", 1100.0)
    n.core.join("caller", "c")
    n.core.join("agent", "c")
    n.run(20)
    n.core.start_recording("caller")
    n.run(50)
    n.core.pause_recording("caller", True)
    n.run(25)
    n.core.pause_recording("caller", False)
    n.run(25)
    rec = n.core.stop_recording("caller")
    assert rec is not None
    samples = rec.samples
    assert samples.shape[1] == 2
    assert samples.shape[0] == 100 * SAMPLES_PER_TICK
    first, paused = samples[: 50 * 160], samples[50 * 160 : 75 * 160]
    assert level(first[:, 0], 700.0) > HEARD  # the caller's own channel
    assert level(first[:, 1], 1100.0) > HEARD  # what the caller heard: the agent
    assert not paused.any()


def test_join_checks_its_arguments() -> None:
    n = net()
    n.add("a", None)
    with pytest.raises(ValueError):
        n.core.join("a", "c", role=Role.WHISPER)
    with pytest.raises(ValueError):
        n.core.join("a", "c", coach="b")
    with pytest.raises(KeyError):
        n.core.join("nobody", "c")


def test_the_media_loop_reports_overload_from_its_load_and_skipped_ticks() -> None:
    import asyncio
    import math

    from hotline.engine.media_loop import OVERLOAD_HOLD, MediaLoop

    loop = asyncio.new_event_loop()
    try:
        media = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None,
                          on_inactive=lambda k: None)
        assert not media.overloaded()
        media.load = 0.79
        assert not media.overloaded()
        media.load = 0.81
        assert media.overloaded()
        media.load = 0.1
        media.last_skip = loop.time()
        assert media.overloaded()  # skipped ticks a moment ago
        media.last_skip = loop.time() - OVERLOAD_HOLD - 0.1
        assert not media.overloaded()
        assert math.isinf(MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None,
                                    on_inactive=lambda k: None).last_skip)
        media.close()
    finally:
        loop.close()


def test_a_legs_summary_for_the_call_record_from_a_live_or_removed_leg() -> None:
    n = net()
    n.add("a", 700.0)
    n.add("b", 900.0)
    n.add("ivr", None)  # never bridged: no jitter buffer
    n.core.join("a", "c")
    n.core.join("b", "c")
    n.run(40)
    live = n.core.summarise(n.legs["a"])
    assert (live.packets_in, live.packets_out) == (40, 40)
    # A bridged leg's playout is its jitter buffer's delay: a tick or two here.
    assert 0 < live.playout_ms <= 60, live.playout_ms
    assert live.quality == n.legs["a"].rtcp.quality()
    removed = n.core.remove_leg("a")
    assert removed is not None
    assert n.core.summarise(removed).packets_in == 40
    # An unbridged leg's playout is the prefill (320 samples: 40 ms).
    assert n.core.summarise(n.legs["ivr"]).playout_ms == 40.0
    assert n.core.summarise(n.legs["ivr"]).max_jitter_ms >= 0


def test_the_media_loop_answers_as_a_media_plane_does() -> None:
    import asyncio

    from hotline.engine.media_loop import LegSummary, MediaLoop
    from hotline.engine.media_workers import MediaPlane

    loop = asyncio.new_event_loop()
    try:
        loop_media = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None,
                               on_inactive=lambda k: None)
        plane: MediaPlane = loop_media  # the engine holds either through this protocol
        assert plane.available and plane.leg_count == 0 and plane.prefill == 320
        assert not plane.has_leg("x")
        # No such leg: the future is there at once, with nothing in it.
        ended = plane.end_leg("x")
        assert ended.done() and ended.result() is None
        leg = loop_media.core.add_leg("a", 20000, media(7000), loop.time())
        assert plane.has_leg("a") and plane.leg_count == 1
        ended = plane.end_leg("a")
        assert ended.done() and isinstance(ended.result(), LegSummary)
        assert not plane.has_leg("a") and leg.sendto is None
        loop_media.close()
        assert not plane.available
    finally:
        loop.close()
