"""The tshark process that records RTP for `hotline.loadtest.rtp.read_pcap`.

Owns the command line (a BPF filter on one interface into a classic pcap, the first
`SNAP_LENGTH` bytes of each packet — headers up to the end of the RTP header — a 64 MiB
capture buffer, bounded in time and in packets) and the wait until tshark says it is
capturing. The load test and the benchmarks start it their own way (their process
bookkeeping differs); what they start is this.

Must not know: what the filter selects (callers write it), SIP or RTP.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from typing import Final

SNAP_LENGTH: Final = 64  # bytes of each packet: Ethernet/SLL + IPv4 + UDP + RTP header
BUFFER_MIB: Final = 64  # tshark's capture buffer: room for bursts of a thousand streams
START_SECONDS: Final = 20.0  # how long tshark may take to start capturing


def tshark_command(
    interface: str, bpf: str, path: Path, seconds: float, max_packets: int
) -> list[str]:
    """tshark recording what `bpf` selects on `interface` into the pcap `path`, stopping
    after `seconds` (rounded up) or `max_packets`, whichever comes first."""
    if seconds <= 0 or max_packets <= 0:
        raise ValueError(f"a capture needs a positive bound, got {seconds} s, {max_packets}")
    return [
        "tshark",
        "-i",
        interface,
        "-f",
        bpf,
        "-s",
        str(SNAP_LENGTH),
        "-B",
        str(BUFFER_MIB),
        "-F",
        "pcap",
        "-w",
        str(path),
        "-q",
        "-a",
        f"duration:{math.ceil(seconds)}",
        "-c",
        str(max_packets),
    ]


def wait_until_capturing(
    proc: subprocess.Popen[bytes], log: Path, timeout: float = START_SECONDS
) -> str | None:
    """Wait until tshark, writing its messages to `log`, says it is capturing: None
    then, else why not (it exited, with its log; or it did not start in `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Capturing on" in log.read_text(errors="replace"):
            time.sleep(0.3)  # it prints that just before the first packet can be taken
            return None
        if proc.poll() is not None:
            return f"tshark exited {proc.returncode}: {log.read_text(errors='replace')[-800:]}"
        time.sleep(0.05)
    return f"tshark did not start capturing within {timeout:g} s"
