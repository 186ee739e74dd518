"""A flow on a live engine, driven by SIPp: keys pressed DURING the prompt (RFC 4733,
the stock captures), and the BYE the flow sends carries the result header.

The flow is tests/data/flows/keys.yaml (dialled number 3000). SIPp's scenario is built
per test from the keys to press; its `<recv request="BYE">` fails the call unless the
X-Hotline-Result header matches, so "1 successful call" proves the path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline.ivr.loader import load_flow
from hotline.ivr.replay import read_trace, replay
from tests.integration.conftest import ROOT, Server, run_sipp

pytestmark = pytest.mark.integration

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="hotline flow keys">
  <send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:0412345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:0412345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
{presses}
  <recv request="BYE" timeout="60000">
    <action>
      <ereg regexp="X-Hotline-Result: ({result})\\r" search_in="msg" check_it="true"
            assign_to="whole,res"/>
      <log message="result [$res] in [$whole]"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"""

PRESS = """  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_{key}.pcap"/></action></nop>"""
# between presses only: the BYE may come right after the last one, and SIPp fails a call
# whose BYE arrives during a <pause>
GAP = """  <pause milliseconds="400"/>"""


def _scenario(tmp: Path, keys: str, result: str) -> Path:
    # the first key half a second into the prompt; none when no key is pressed (a BYE
    # during a <pause> fails the call)
    presses = "\n".join(f"{GAP.replace('400', '500') if i == 0 else GAP}\n{PRESS.format(key=k)}"
                         for i, k in enumerate(keys))
    path = tmp / "flow_keys.xml"
    path.write_text(SCENARIO.replace("{presses}", presses).replace("{result}", result))
    return path


def _counts(out: str) -> tuple[int, int]:
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return (int(ok[-1]) if ok else -1, int(failed[-1]) if failed else -1)


@pytest.mark.parametrize(
    ("keys", "result"),
    [("1", "pressed_1"), ("24071", "code_4071"), ("", "timeout")],
    ids=["barge-in", "type-ahead-into-collect", "no-key"],
)
def test_sipp_keys_during_prompt_set_the_bye_result(server: Server, tmp_path: Path, keys: str,
                                                    result: str) -> None:
    scenario = _scenario(tmp_path, keys, result)
    res = run_sipp(["-sf", str(scenario), server.target, "-s", "3000", "-m", "2", "-r", "2",
                    "-l", "2"], timeout=60)
    assert _counts(res.stdout) == (2, 0), res.stdout[-3000:] + res.stderr[-2000:]
    log = server.log_text()
    assert len(re.findall(r"call \S+: flow keys version \w+", log)) == 2
    assert log.count(f"flow hangs up ({result})") == 2
    assert len(re.findall(rf"flow keys ended: {result}", log)) == 2
    # each call left a trace, and replaying it on the same flow takes the same path
    traces = sorted((tmp_path / "var" / "traces").glob("*/*.jsonl"))
    assert len(traces) == 2
    flow = ROOT / "tests" / "data" / "flows" / "keys.yaml"
    for trace in traces:
        recorded = read_trace(trace)
        assert replay(load_flow(flow, audio_dir=ROOT / "audio"), recorded).same
        # the media's RTCP figures ride in the trace header (SIPp sends no RTCP: ours only)
        assert recorded.header["quality"]["reports_received"] == 0
    assert len(re.findall(r"call \S+ quality: in ", log)) == 2
