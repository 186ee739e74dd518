"""SIPp scenarios for a load test: the callers (every journey in one scenario), the
injection file that gives each call its journey and keys, and the load-test agents.

Owns the XML and CSV text SIPp 3.6 reads and the timing of key presses on the wire.

The callers' scenario: call N reads line N of the injection file (`-inf`, sequential):
`journey index;caller number;keys…`. After the INVITE (any final failure response is
logged and fails the call) and the ACK, the caller may loop caller audio (`rtp_stream`,
so the engine's RTP inactivity timer never fires while the caller listens), then jumps
to its journey's section: each press waits in a `<recv request="BYE">` whose timeout is
the pause before it (a BYE that comes early is logged with its `X-Hotline-Result` and
fails the call), then sends its keys — RFC 4733 events by `play_dtmf` (payload type 96,
SIPp's fixed choice), or in-band tones by `play_pcap_audio`, one capture per digit
position chosen by the digit's code. The journey ends with the engine's BYE, whose
`X-Hotline-Result` must be the journey's result (the call is failed otherwise, after the
200 OK), or with the caller's own BYE for a caller who hangs up.

Each call writes lines to SIPp's log (`-trace_logs`), `|`-separated, times as SIPp's
`gettimeofday` seconds and microseconds:

    S|call|journey|sec|usec|call-id    INVITE sent
    A|call|sec|usec                    200 OK received
    R|call|sec|usec|code               a final failure response
    E|call|sec|usec|kind|seen          the call ended: kind `bye` (the engine's BYE at the
                                       end), `early` (the engine's BYE before the last
                                       press), `caller` (our BYE answered), `late` (no
                                       BYE in time: we hung up)

`parse_log` reads them back. Failing a call on purpose uses a regular expression that
cannot match a variable that is always set (SIPp then counts it failed and carries on).

Must not know: processes, files on disk (paths come in as text), the engine's internals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from xml.sax.saxutils import escape, quoteattr

from hotline.loadtest.journeys import Call, Journey, Pace

DtmfMode = Literal["rfc4733", "inband"]
DTMF_PAYLOAD: Final = 96  # SIPp 3.6's play_dtmf sends telephone-events as payload type 96
DTMF_LEAD: Final = 0.4  # play_dtmf sends 400 ms of filler packets first
INBAND_ON: Final = 0.1  # seconds a tone lasts
INBAND_PERIOD: Final = 0.2  # seconds from one in-band key to the next
FAILURE_CODES: Final = (
    400,
    401,
    403,
    404,
    405,
    407,
    408,
    410,
    413,
    414,
    415,
    416,
    420,
    421,
    480,
    481,
    482,
    483,
    484,
    485,
    486,
    487,
    488,
    491,
    500,
    501,
    502,
    503,
    504,
    505,
    513,
    600,
    603,
    604,
    606,
)
KEY_CODES: Final = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
NO_KEY: Final = -1
INBAND_DIR: Final = "tones"  # beside the scenario
MAX_SCENARIO_BYTES: Final = 65536  # SIPp 3.6's XML reader takes no more
_SAFE_RESULT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ScenarioError(ValueError):
    """A plan SIPp cannot run; the message says why."""


@dataclass(frozen=True)
class Options:
    """How the callers behave on the wire."""

    dtmf: DtmfMode = "rfc4733"
    pace: Pace = "listen"
    tone_ms: int = 100  # RFC 4733: each key lasts this long and the next follows as long after
    caller_audio: str | None = None  # raw µ-law looped by rtp_stream (absolute path)
    bye_margin: float = 30.0  # seconds past the simulated end before the call is late
    queue_wait: float = 0.0  # extra seconds a queued call may wait for an agent
    agent_talk: float = 0.0  # seconds an agent talks before hanging up
    agents: bool = False  # queued calls are answered (their BYE says ended_by_agent)

    def __post_init__(self) -> None:
        if not 50 <= self.tone_ms <= 1000:
            raise ScenarioError(f"tone_ms must be 50 to 1000 ms, found {self.tone_ms}")


# -- timing on the wire -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One press as SIPp performs it: wait `wait` seconds (listening for an early BYE),
    then send the keys. `first` / `last`: when its first and last key start, seconds
    after the ACK."""

    wait: float
    first: float
    last: float
    busy_until: float  # when the press has finished sending


@dataclass(frozen=True)
class Timeline:
    steps: tuple[Step, ...]
    end_wait: float  # from the last press to the expected end (the BYE, or our hang-up)
    expected_end: float  # seconds after the ACK the call should end


def press_timing(n_keys: int, options: Options) -> tuple[float, float, float]:
    """(first key, last key, finished) after the press starts, for `n_keys` keys."""
    if options.dtmf == "inband":
        return 0.0, INBAND_PERIOD * (n_keys - 1), INBAND_PERIOD * n_keys
    period = 2 * options.tone_ms / 1000  # play_dtmf: a key every two tone lengths
    return DTMF_LEAD + period, DTMF_LEAD + period * n_keys, DTMF_LEAD + period * (n_keys + 1)


def timeline(journey: Journey, lengths: Sequence[int], options: Options) -> Timeline:
    """Where each press of `journey` goes (with `lengths[k]` keys at press k), keeping
    the simulated gap from each press's last key to the next one's first, and never
    starting a press before the previous one has finished sending."""
    waits = journey.waits(options.pace)
    position = 0.0  # the scenario's clock after the last element (seconds after the ACK)
    cursor = 0.0  # when the previous press's last key started (the answer, at first)
    busy = 0.0
    steps: list[Step] = []
    for wait, n in zip(waits, lengths, strict=True):
        to_first, to_last, to_done = press_timing(max(n, 1), options)
        start = max(cursor + wait - to_first, busy, position)
        steps.append(
            Step(round(start - position, 3), start + to_first, start + to_last, start + to_done)
        )
        position = start
        cursor = start + to_last
        busy = start + to_done
    if journey.hangup_after is not None:
        end = max(cursor + journey.hangup_after, busy)
    else:
        end = cursor + journey.tail(options.pace)
    return Timeline(tuple(steps), round(end - position, 3), end)


def call_limit(journey: Journey, timeline_: Timeline, options: Options) -> float:
    """Seconds after the ACK by which the call must have ended."""
    extra = options.bye_margin + 0.5 * journey.tail(options.pace)
    if journey.queues and options.agents:
        extra += options.queue_wait + options.agent_talk
    return timeline_.expected_end + extra


# -- XML ----------------------------------------------------------------------------------------


class _Xml:
    """Scenario elements in order; counts SIPp's message indexes (labels are not messages)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.index = 0

    def msg(self, text: str) -> int:
        self.parts.append(text)
        self.index += 1
        return self.index - 1

    def label(self, name: str) -> None:
        self.parts.append(f'<label id="{name}"/>')

    def comment(self, text: str) -> None:
        self.parts.append(f"<!-- {escape(text).replace('--', '- -')} -->")


def _cdata(text: str) -> str:
    return f"<![CDATA[\n\n{text}\n\n]]>"


_FAIL = (
    '<ereg regexp="^never-matches$" search_in="var" variable="js" check_it="true" '
    'assign_to="failed"/>'
)


def _bye_ok() -> str:
    return (
        "<send>"
        + _cdata(
            "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n"
            "[last_CSeq:]\nContent-Length: 0"
        )
        + "</send>"
    )


def _sdp(options: Options) -> str:
    media = (
        "m=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000"
        if options.dtmf == "inband"
        else f"m=audio [media_port] RTP/AVP 0 {DTMF_PAYLOAD}\na=rtpmap:0 PCMU/8000\n"
        f"a=rtpmap:{DTMF_PAYLOAD} telephone-event/8000\n"
        f"a=fmtp:{DTMF_PAYLOAD} 0-16"
    )
    return (
        "v=0\no=hotline-loadtest 53655765 2353687637 IN IP[local_ip_type] [local_ip]\ns=-\n"
        f"c=IN IP[media_ip_type] [media_ip]\nt=0 0\n{media}\na=ptime:20"
    )


_FROM = "From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]LT[call_number]"


def _request(
    method: str,
    cseq: int,
    *,
    branch: str = "[branch]",
    to_tag: bool = True,
    uri: str = "sip:[service]@[remote_ip]:[remote_port]",
) -> str:
    return (
        f"{method} {uri} SIP/2.0\n"
        f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}\n"
        f"{_FROM}\nTo: <sip:[service]@[remote_ip]:[remote_port]>"
        f"{'[peer_tag_param]' if to_tag else ''}\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} {method}\nContact: <sip:loadtest@[local_ip]:[local_port]>\n"
        "Max-Forwards: 70\nContent-Length: 0"
    )


def _end_log(kind: str) -> str:
    return (
        '<gettimeofday assign_to="es,eu"/><ereg regexp="X-Hotline-Result: *([^[:space:]]*)" '
        'search_in="msg" assign_to="hdr,seen"/>'
        f'<log message="E|[call_number]|[$es]|[$eu]|{kind}|[$seen]|[$hdr]"/>'
    )


def _result_check(result: str) -> str:
    if not _SAFE_RESULT.match(result):
        raise ScenarioError(f"result {result!r}: only letters, digits and _.:- can be checked")
    pattern = re.sub(r"([.])", r"[\1]", result)
    return (
        f'<ereg regexp="X-Hotline-Result: *{pattern}[[:space:]]" search_in="msg" '
        'check_it="true" assign_to="checked"/>'
    )


def caller_scenario(
    flow_name: str, journeys: Sequence[Journey], layout: Layout, options: Options
) -> str:
    """The callers' scenario for `journeys` (index = position in the sequence), for the
    keys `layout` says the calls send. Raises ScenarioError when SIPp could not read it
    (SIPp 3.6 reads scenarios of at most 64 KiB)."""
    x = _Xml()
    tests = "".join(
        f'<test assign_to="j{i}" variable="jn" compare="equal" value="{i}"/>'
        for i in range(len(journeys))
    )
    x.msg(
        '<nop><action><assignstr assign_to="js" value="[field0]"/>'
        f'<todouble assign_to="jn" variable="js"/>{tests}<gettimeofday assign_to="ss,su"/>'
        '<log message="S|[call_number]|[$js]|[$ss]|[$su]|[call_id]"/></action></nop>'
    )
    invite = x.msg(
        '<send retrans="500">'
        + _cdata(
            "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            f"{_FROM}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\n"
            "CSeq: 1 INVITE\nContact: <sip:loadtest@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
            "User-Agent: hotline-loadtest\nContent-Type: application/sdp\nContent-Length: [len]\n\n"
            + _sdp(options)
        )
        + "</send>"
    )
    for code in (100, 180, 183):
        x.msg(f'<recv response="{code}" optional="true"/>')
    for code in FAILURE_CODES:
        x.msg(
            f'<recv response="{code}" optional="true" next="rejected"><action>'
            '<gettimeofday assign_to="rs,ru"/>'
            f'<log message="R|[call_number]|[$rs]|[$ru]|{code}"/>{_FAIL}</action></recv>'
        )
    x.msg(
        '<recv response="200" rrs="true"><action><gettimeofday assign_to="as,au"/>'
        '<log message="A|[call_number]|[$as]|[$au]"/></action></recv>'
    )
    x.msg("<send>" + _cdata(_request("ACK", 1)) + "</send>")
    if options.caller_audio:
        x.msg(
            f"<nop><action><exec rtp_stream={quoteattr(options.caller_audio + ',-1,0')}/>"
            "</action></nop>"
        )
    for i in range(len(journeys)):
        x.msg(f'<nop test="j{i}" next="j{i}"/>')
    x.msg(
        f'<nop next="done"><action><log message="E|[call_number]|0|0|unknown|[$js]|-"/>'
        f"{_FAIL}</action></nop>"
    )
    for i, journey in enumerate(journeys):
        _journey_section(x, i, journey, layout[journey.name], options)
    x.label("rejected")
    ack = x.index
    x.msg(
        "<send>"
        + _cdata(
            "ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
            f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-{ack - invite}]\n"
            f"{_FROM}\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\n"
            "Content-Length: 0"
        )
        + "</send>"
    )
    x.label("done")
    x.msg('<nop><action><log message="D|[call_number]"/></action></nop>')
    head = (
        f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f"<!-- hotline loadtest: the callers of flow {escape(flow_name)}; generated, "
        "do not edit. Journeys: "
        + ", ".join(f"{i}={escape(j.name)}" for i, j in enumerate(journeys))
        + " -->\n"
        f'<scenario name="hotline loadtest {escape(flow_name)}">\n'
    )
    once = (
        "failed,checked"
        if any(j.result is not None and j.hangup_after is None for j in journeys)
        else "failed"
    )
    unused = f'<Reference variables="{once}"/>\n'  # assigned, never read: on purpose
    text = head + "\n".join(x.parts) + "\n" + unused + "</scenario>\n"
    size = len(text.encode("iso-8859-1", "replace"))
    if size > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            f"the callers' scenario is {size} bytes; SIPp reads at most {MAX_SCENARIO_BYTES}. "
            "In-band keys need a branch for every key a call may press at each position: "
            "test fewer journeys at once (--mix), or send the keys by RFC 4733"
        )
    return text


def _varying(presses: Sequence[Sequence[frozenset[int]]]) -> list[tuple[int, int]]:
    """The (press, position) of in-band keys that differ between calls: each takes a
    field of the injection file."""
    return [
        (k, p)
        for k, positions in enumerate(presses)
        for p, codes in enumerate(positions)
        if len(codes) > 1
    ]


def _fields_used(presses: Sequence[Sequence[frozenset[int]]], options: Options) -> int:
    return len(_varying(presses)) if options.dtmf == "inband" else len(presses)


def _journey_section(
    x: _Xml,
    index: int,
    journey: Journey,
    presses: Sequence[Sequence[frozenset[int]]],
    options: Options,
) -> None:
    lengths = [len(p) for p in presses]
    tl = timeline(journey, lengths, options)
    tag = f"j{index}"
    x.comment(f"journey {journey.name}: {journey.describe()}")
    x.label(tag)
    early = f"{tag}early"
    check = _result_check(journey.result) if journey.result is not None else ""
    field_no = 2
    for k, step in enumerate(tl.steps):
        wait_ms = max(1, round(step.wait * 1000))
        if journey.presses[k].fallback:
            # the flow took no detour: its BYE may come before this key, and is the end
            x.msg(
                f'<recv request="BYE" timeout="{wait_ms}" ontimeout="{tag}k{k}" '
                f'next="{tag}ok"><action>{_end_log("bye")}{check}</action></recv>'
            )
        else:
            x.msg(
                f'<recv request="BYE" timeout="{wait_ms}" ontimeout="{tag}k{k}" '
                f'next="{early}"><action>{_end_log("early")}{_FAIL}</action></recv>'
            )
        x.label(f"{tag}k{k}")
        if options.dtmf == "rfc4733":
            x.msg(
                f'<nop><action><exec play_dtmf="[field{field_no}],{options.tone_ms}"/>'
                "</action></nop>"
            )
            field_no += 1
        else:
            field_no = _inband_press(x, index, k, presses[k], field_no, options)
    if journey.hangup_after is not None:
        x.msg(
            f'<recv request="BYE" timeout="{max(1, round(tl.end_wait * 1000))}" '
            f'ontimeout="{tag}bye" next="{early}"><action>{_end_log("early")}{_FAIL}'
            "</action></recv>"
        )
        x.label(f"{tag}bye")
        x.msg('<send retrans="500">' + _cdata(_request("BYE", 2)) + "</send>")
        x.msg(
            f'<recv response="481" optional="true" next="done"><action>'
            f"{_end_log('gone')}{_FAIL}</action></recv>"
        )
        x.msg(f'<recv response="200"><action>{_end_log("caller")}</action></recv>')
        x.msg('<nop next="done"/>')
    else:
        limit = call_limit(journey, tl, options) - (tl.expected_end - tl.end_wait)
        x.msg(
            f'<recv request="BYE" timeout="{max(1000, round(limit * 1000))}" '
            f'ontimeout="{tag}late"><action>{_end_log("bye")}{check}</action></recv>'
        )
        x.label(f"{tag}ok")
        x.msg(_bye_ok())
        x.msg('<nop next="done"/>')
        x.label(f"{tag}late")
        x.msg(
            '<nop><action><gettimeofday assign_to="es,eu"/>'
            f'<log message="E|[call_number]|[$es]|[$eu]|late||-"/>{_FAIL}</action></nop>'
        )
        x.msg('<send retrans="500">' + _cdata(_request("BYE", 2)) + "</send>")
        x.msg('<recv response="481" optional="true" next="done"/>')
        x.msg('<recv response="200"/>')
        x.msg('<nop next="done"/>')
    x.label(early)
    x.msg(_bye_ok())
    x.msg('<nop next="done"/>')


def _inband_press(
    x: _Xml,
    journey: int,
    press: int,
    positions: Sequence[frozenset[int]],
    field_no: int,
    options: Options,
) -> int:
    """One in-band press: per digit position, the capture of the key the call sends
    there (chosen by the code in its field when calls differ), then the gap to the next
    position. Caller audio pauses meanwhile: the tones are one stream of their own."""
    if options.caller_audio:
        x.msg('<nop><action><exec rtp_stream="pause"/></action></nop>')
    for p, codes in enumerate(positions):
        keyed = sorted(c for c in codes if c != NO_KEY)
        if len(codes) == 1:
            if keyed:
                x.msg(
                    f'<nop><action><exec play_pcap_audio="'
                    f'{inband_capture_name(journey, press, p, keyed[0])}"/></action></nop>'
                )
                x.msg(f'<pause milliseconds="{round(INBAND_PERIOD * 1000)}"/>')
            continue
        tests = "".join(
            f'<test assign_to="k{c}" variable="kn" compare="equal" value="{c}"/>' for c in keyed
        )
        x.msg(
            f'<nop><action><assignstr assign_to="ks" value="[field{field_no}]"/>'
            f'<todouble assign_to="kn" variable="ks"/>{tests}'
            '<test assign_to="kon" variable="kn" compare="greater_than_equal" value="0"/>'
            "</action></nop>"
        )
        for c in keyed:
            x.msg(
                f'<nop condexec="k{c}"><action><exec play_pcap_audio="'
                f'{inband_capture_name(journey, press, p, c)}"/></action></nop>'
            )
        x.msg(f'<pause milliseconds="{round(INBAND_PERIOD * 1000)}" condexec="kon"/>')
        field_no += 1
    if options.caller_audio:
        x.msg('<nop><action><exec rtp_stream="resume"/></action></nop>')
    return field_no


def inband_capture_name(journey: int, press: int, position: int, code: int) -> str:
    """Relative to the scenario's directory (where SIPp looks for captures first)."""
    return f"{INBAND_DIR}/{journey}_{press}_{position}_{code}.pcap"


# -- the injection file ------------------------------------------------------------------------


Layout = Mapping[str, Sequence[Sequence[frozenset[int]]]]
"""Per journey, per press, per key position: the key codes the calls send there
(`NO_KEY` when some call sends fewer keys)."""


def key_layout(
    journeys: Sequence[Journey], calls: Sequence[Call]
) -> dict[str, list[list[frozenset[int]]]]:
    """The layout of the keys `calls` send (a journey no call takes: its own keys)."""
    used: dict[str, list[list[set[int]]]] = {}
    for call in calls:
        presses = used.setdefault(call.journey, [[] for _ in call.keys])
        for k, keys in enumerate(call.keys):
            positions = presses[k]
            while len(positions) < len(keys):
                positions.append(set())
            for p, key in enumerate(keys):
                positions[p].add(KEY_CODES[key])
    for call in calls:  # a shorter entry sends nothing at the positions beyond its end
        for k, keys in enumerate(call.keys):
            for codes in used[call.journey][k][len(keys) :]:
                codes.add(NO_KEY)
    out: dict[str, list[list[frozenset[int]]]] = {}
    for j in journeys:
        presses = used.get(j.name) or [[{KEY_CODES[c]} for c in p.keys] for p in j.presses]
        out[j.name] = [
            [frozenset(c) for c in positions] or [frozenset({NO_KEY})] for positions in presses
        ]
    return out


def injection_file(
    journeys: Sequence[Journey], calls: Sequence[Call], layout: Layout, options: Options
) -> str:
    """SIPp's `-inf` file: one line per call, in the order the calls are placed."""
    index = {j.name: i for i, j in enumerate(journeys)}
    width = 2 + max((_fields_used(layout[j.name], options) for j in journeys), default=0)
    rows = ["SEQUENTIAL"]
    for call in calls:
        cells = [str(index[call.journey]), call.caller]
        if options.dtmf == "rfc4733":
            cells += list(call.keys)
        else:
            for k, p in _varying(layout[call.journey]):
                keys = call.keys[k]
                cells.append(str(KEY_CODES[keys[p]]) if p < len(keys) else str(NO_KEY))
        for cell in cells:
            if not cell or ";" in cell or "\n" in cell:
                raise ScenarioError(f"call {call.serial}: {cell!r} cannot go in an injection file")
        rows.append(";".join(cells + ["-"] * (width - len(cells))))
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class InbandPlan:
    """The tone captures the in-band scenario plays: name → (RTP timestamp of its first
    frame in 8 kHz units, first sequence number, key, first frame of a press)."""

    captures: dict[str, tuple[int, int, str | None, bool]] = field(default_factory=dict)


def inband_plan(journeys: Sequence[Journey], layout: Layout, options: Options) -> InbandPlan:
    """Every capture the scenario names, and where its packets sit in the call's tone
    stream (timestamps follow the press's time after the answer, so the stream looks
    like speech with the silences left out)."""
    keys_by_code = {code: key for key, code in KEY_CODES.items()}
    plan = InbandPlan()
    for j, journey in enumerate(journeys):
        presses = layout[journey.name]
        tl = timeline(journey, [len(p) for p in presses], options)
        for k, (step, positions) in enumerate(zip(tl.steps, presses, strict=True)):
            for p, codes in enumerate(positions):
                index = math.floor((step.first + p * INBAND_PERIOD) / 0.02 + 0.5)
                for code in codes:
                    if code != NO_KEY:
                        plan.captures[inband_capture_name(j, k, p, code)] = (
                            index * 160,
                            (1000 + index) % 65536,
                            keys_by_code[code],
                            p == 0,
                        )
    return plan


# -- agents ---------------------------------------------------------------------------------------


def agent_answer_scenario(talk_seconds: float) -> str:
    """The agents' phone (SIPp as a server, with -rtp_echo): answer an offer at once,
    talk for `talk_seconds` (the caller's audio comes back), hang up; or answer the
    engine's BYE if the caller went first. No 180 first: SIPp 3.6 takes a retransmitted
    INVITE for a new message once it has sent two answers."""
    x = _Xml()
    x.msg(
        '<recv request="INVITE" crlf="true" rrs="true"><action>'
        '<ereg regexp=".*" search_in="hdr" header="From:" assign_to="peer"/>'
        '<ereg regexp="[^;]*" search_in="hdr" header="To:" assign_to="me"/>'
        '<log message="O|[call_id]"/></action></recv>'
    )
    x.msg(
        '<send retrans="500">'
        + _cdata(
            "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]AGT[call_number]\n"
            "[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:agent@[local_ip]:[local_port]>\n"
            "Content-Type: application/sdp\nContent-Length: [len]\n\n"
            "v=0\no=agent 1 1 IN IP[local_ip_type] [local_ip]\ns=-\n"
            "c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\n"
            "a=rtpmap:0 PCMU/8000\na=ptime:20"
        )
        + "</send>"
    )
    x.msg('<recv request="ACK" crlf="true"/>')
    x.msg(
        f'<recv request="BYE" timeout="{max(1000, round(talk_seconds * 1000))}" '
        'ontimeout="hangup"/>'
    )
    x.msg(_bye_ok())
    x.msg('<nop next="end"/>')
    x.label("hangup")
    x.msg(
        '<send retrans="500">'
        + _cdata(
            "BYE [next_url] SIP/2.0\n"
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            "From: [$me];tag=[pid]AGT[call_number]\nTo: [$peer]\nCall-ID: [call_id]\n"
            "CSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0"
        )
        + "</send>"
    )
    x.msg('<recv response="200"/>')
    x.label("end")
    x.msg('<nop><action><log message="O|[call_id]|done"/></action></nop>')
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        "<!-- hotline loadtest: the agents' phone answering offers; generated -->\n"
        '<scenario name="hotline loadtest agent phone">\n' + "\n".join(x.parts) + "\n</scenario>\n"
    )


# -- SIPp's log back ---------------------------------------------------------------------------


@dataclass
class CallRecord:
    """One call as the callers' log tells it (times in seconds since the epoch)."""

    call: int
    journey: int = -1
    call_id: str = ""
    started: float | None = None
    answered: float | None = None
    ended: float | None = None
    end_kind: str = ""  # bye, early, caller, late, gone, unknown
    seen: str = ""  # X-Hotline-Result on the engine's BYE
    rejected: int | None = None  # a final failure status
    # from the engine's trace of the call, when it could be read: the steps it took with
    # the service outcome each gave ("" for none), and how the flow ended
    engine_steps: tuple[tuple[str, str], ...] = ()
    engine_result: str = ""


def _seconds(sec: str, usec: str) -> float | None:
    try:
        return float(sec) + float(usec) / 1e6
    except ValueError:
        return None


def parse_log(text: str) -> dict[int, CallRecord]:
    """The `S/A/R/E` lines of the callers' SIPp log, by call number."""
    out: dict[int, CallRecord] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 2 or parts[0] not in ("S", "A", "R", "E") or not parts[1].isdigit():
            continue
        record = out.setdefault(int(parts[1]), CallRecord(int(parts[1])))
        kind = parts[0]
        if kind == "S" and len(parts) >= 6:
            try:
                record.journey = int(float(parts[2]))
            except ValueError:
                record.journey = -1
            record.started = _seconds(parts[3], parts[4])
            record.call_id = parts[5]
        elif kind == "A" and len(parts) >= 4:
            record.answered = _seconds(parts[2], parts[3])
        elif kind == "R" and len(parts) >= 5:
            record.ended = _seconds(parts[2], parts[3])
            record.rejected = int(parts[4]) if parts[4].isdigit() else None
        elif kind == "E" and len(parts) >= 6:
            record.ended = _seconds(parts[2], parts[3]) or record.ended
            record.end_kind = parts[4]
            record.seen = parts[5]
    return out
