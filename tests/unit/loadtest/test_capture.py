"""The tshark command the load test and the benchmarks start, and the wait for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from hotline.loadtest.capture import SNAP_LENGTH, tshark_command, wait_until_capturing


def test_the_command_is_bounded_in_time_and_packets_and_writes_a_classic_pcap() -> None:
    cmd = tshark_command("lo", "udp", Path("/tmp/x.pcap"), 12.2, 5000)
    assert cmd[0] == "tshark"
    pairs = {flag: cmd[cmd.index(flag) + 1] for flag in ("-i", "-f", "-w", "-F", "-s", "-a", "-c")}
    assert pairs["-i"] == "lo" and pairs["-f"] == "udp" and pairs["-w"] == "/tmp/x.pcap"
    assert pairs["-F"] == "pcap"  # read_pcap refuses pcapng
    assert pairs["-s"] == str(SNAP_LENGTH)
    assert pairs["-a"] == "duration:13" and pairs["-c"] == "5000"


@pytest.mark.parametrize(("seconds", "packets"), [(0, 10), (5, 0), (-1, 10)])
def test_an_unbounded_capture_is_refused(seconds: float, packets: int) -> None:
    with pytest.raises(ValueError, match="positive bound"):
        tshark_command("lo", "udp", Path("x"), seconds, packets)


class FakeTshark:
    def __init__(self, code: int | None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def test_capturing_once_tshark_says_so(tmp_path: Path) -> None:
    log = tmp_path / "tshark.log"
    log.write_text("Capturing on 'Loopback: lo'\n")
    assert wait_until_capturing(cast(Any, FakeTshark(None)), log, timeout=1) is None


def test_a_tshark_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "tshark.log"
    log.write_text("tshark: You don't have permission to capture on that device\n")
    problem = wait_until_capturing(cast(Any, FakeTshark(1)), log, timeout=1)
    assert problem is not None and "exited 1" in problem and "permission" in problem


def test_a_tshark_that_never_starts_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "tshark.log"
    log.write_text("")
    problem = wait_until_capturing(cast(Any, FakeTshark(None)), log, timeout=0.2)
    assert problem == "tshark did not start capturing within 0.2 s"
