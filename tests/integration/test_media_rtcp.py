"""RTCP from the media loop over real localhost sockets: a plain-socket peer receives the
leg's sender reports on its RTCP port, answers with a receiver report that shows up in
the leg's quality figures, and gets the BYE when the leg is removed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hotline.engine.media_loop import MediaLoop
from hotline.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    parse_compound,
    serialize_compound,
)
from hotline.sip.sdp import Codec, Direction, NegotiatedMedia

pytestmark = pytest.mark.integration


def _free_pair() -> tuple[socket.socket, socket.socket]:
    for _ in range(50):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        if port % 2 or port >= 65534:
            rtp.close()
            continue
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtcp.bind(("127.0.0.1", port + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        return rtp, rtcp
    raise RuntimeError("no free even/odd port pair on 127.0.0.1")


async def _scenario() -> None:
    loop = asyncio.get_running_loop()
    peer_rtp, peer_rtcp = _free_pair()
    ours_rtp, ours_rtcp = _free_pair()  # reserve a pair for the leg, then free it
    our_port = ours_rtp.getsockname()[1]
    ours_rtp.close()
    ours_rtcp.close()
    peer_port = peer_rtp.getsockname()[1]
    peer_rtcp.setblocking(False)
    media = NegotiatedMedia("127.0.0.1", peer_port, "127.0.0.1", peer_port + 1, Codec.PCMU, 0,
                            None, 20, Direction.SENDRECV, ((0, Codec.PCMU),), None)
    ml = MediaLoop(loop, "127.0.0.1", on_digit=lambda *a: None, on_inactive=lambda k: None)
    try:
        leg = ml.add_leg("call", our_port, media)
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(peer_rtcp, 2048), 5.0)
        assert addr == ("127.0.0.1", our_port + 1)
        sr = parse_compound(data, strict=True)[0]
        assert isinstance(sr, SenderReport)
        assert sr.ssrc == leg.sender.ssrc and sr.packet_count > 0
        block = ReportBlock(leg.sender.ssrc, 128, 3, leg.sender.sequence_number, 40)
        await loop.sock_sendto(peer_rtcp, serialize_compound([ReceiverReport(0x1234, (block,))]),
                               ("127.0.0.1", our_port + 1))
        for _ in range(100):
            quality = ml.leg_quality("call")
            if quality is not None and quality.reports_received:
                break
            await asyncio.sleep(0.01)
        assert quality is not None and quality.outbound is not None
        assert quality.outbound.fraction_lost == 0.5
        removed = ml.remove_leg("call")
        assert removed is leg
        while True:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(peer_rtcp, 2048), 5.0)
            packets = parse_compound(data)
            if isinstance(packets[-1], Bye):
                assert packets[-1].sources == (leg.sender.ssrc,)
                break
        assert ml.leg_quality("call") is None
    finally:
        ml.close()
        peer_rtp.close()
        peer_rtcp.close()


def test_sender_reports_receiver_report_and_bye_over_localhost() -> None:
    asyncio.run(_scenario())
