"""Call detail records: what hotline keeps about every SIP call once it has ended, and
the listening-quality estimate (MOS) it computes from the call's RTCP figures.

Owns: `CallRecord` (one call, validated: aware UTC instants in order, figures in range),
`MediaQuality` (the RTP/RTCP figures of its media, both directions when known), how the
way a call ended maps to the side that hung up (`hangup_side`), turning the RTCP session's
`CallQuality` into a `MediaQuality` (`media_quality`), and the E-model (`mos_from`).

Must not know: databases or files (hotline.booking.store keeps the records,
hotline.cdrcli exports them), the clock (instants are arguments), asyncio, flows.

Personal data. `caller` holds the calling number as the network presented it, in
clear: operators need it to call back and to answer complaints, and it is no more than
the booking store already keeps (a booking's phone). The record has no place for
anything a caller keyed: no variables, no digits, no free text. `flow_result` is the
flow's result label — the `X-Hotline-Result` the flow sets, which the flow checker
forbids from carrying a sensitive value (`sensitive-header`). `repr()` masks the
caller's number, so a record in a log line does not give it away.

The MOS estimate: ITU-T G.107 (06/2015) E-model, simplified for G.711 at 8 kHz with
every parameter at its default except delay and packet loss:

    R = 93.2 − Id − Ie_eff                       (93.2: R with all defaults, Is and A = 0)
    Ie_eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)       (G.107 §7.4, eq. 7-29)
    Id = Idd(Ta)  (talker echo assumed cancelled: Idte and Idle at their defaults)
    Idd = 0 for Ta ≤ 100 ms, else with X = log2(Ta / 100):
          25 · ((1 + X⁶)^(1/6) − 3 · (1 + (X/3)⁶)^(1/6) + 2)       (G.107 eq. 7-28, mT = 100
          ms, sT = 1)
    MOS = 1 + 0.035 R + R (R − 60) (100 − R) · 7·10⁻⁶  for 0 < R < 100  (G.107 Annex B),
          1 below, 4.5 above, and clamped to 1..4.5 (the cubic dips just under 1 for
          R < 6.5).

G.711 has Ie = 0. Bpl is 25.1 for G.711 with packet-loss concealment (G.711 Appendix
I) and 4.3 without, per ITU-T G.113 Appendix I, Table I.3; the default is 25.1 because
the engine conceals loss on every bridged leg and today's phones and softphones conceal
too. BurstR is 1 (random loss): RTCP receiver reports do not say how bursty the loss
was. Ppl is the worse of the two directions' loss; Ta, the one-way mouth-to-ear delay,
is estimated as half the RTCP round trip plus the playout (jitter buffer) delay.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final

from hotline.booking.model import mask_digits
from hotline.rtp.rtcp import CallQuality
from hotline.sip.endpoint import EndReason

__all__ = [
    "BPL_G711_NO_PLC",
    "BPL_G711_PLC",
    "DEFAULT_PLAYOUT_MS",
    "FIELDS",
    "MOS_MAX",
    "MOS_MIN",
    "R_DEFAULT",
    "CallRecord",
    "Direction",
    "HangupSide",
    "MediaQuality",
    "delay_impairment",
    "hangup_side",
    "loss_impairment",
    "media_quality",
    "mos_from",
    "mos_from_r",
    "r_factor",
]

# A record's fields in the order the database table and the CSV export keep them.
FIELDS: Final = (
    "call_id", "node", "direction", "caller", "called", "started_at", "answered_at",
    "ended_at", "duration_s", "talk_s", "flow", "flow_version", "flow_result", "queue",
    "queue_wait_s", "agent", "transferred_to", "hangup_side", "end_reason", "sip_status",
    "rx_packets", "rx_loss_pct", "rx_jitter_ms", "tx_packets", "tx_loss_pct",
    "tx_jitter_ms", "rtt_ms", "mos",
)
R_DEFAULT: Final = 93.2  # G.107: the rating R with every parameter at its default
IE_G711: Final = 0.0  # G.113 Appendix I: equipment impairment of G.711
BPL_G711_PLC: Final = 25.1  # G.113 App. I Table I.3: G.711 with G.711 Appendix I PLC
BPL_G711_NO_PLC: Final = 4.3  # G.113 App. I Table I.3: G.711 without concealment
MT_MS: Final = 100.0  # G.107 default mT: one-way delay (ms) below which Idd is 0
DEFAULT_PLAYOUT_MS: Final = 40.0  # ms: a two-packet playout buffer for 20 ms packets
MOS_MIN: Final = 1.0
MOS_MAX: Final = 4.5
MAX_TEXT: Final = 1024  # characters in any text field of a record


class Direction(StrEnum):
    INBOUND = "inbound"  # the peer called the hotline
    OUTBOUND = "outbound"  # the engine placed the call (agent legs, callbacks, transfers)


class HangupSide(StrEnum):
    """Who ended the call."""

    CALLER = "caller"  # the peer of an inbound call: BYE, or CANCEL before the answer
    CALLEE = "callee"  # the peer of an outbound call: BYE, or refused it
    AGENT = "agent"  # the agent's phone (its own leg, or the caller's leg it ended)
    ENGINE = "engine"  # the engine: a flow's hang-up, a rejection, a drain, a cancel
    NETWORK = "network"  # nobody: no ACK, a transaction timeout, a transport failure


def hangup_side(
    reason: EndReason, *, inbound: bool, remote_agent: bool = False, ended_by_agent: bool = False
) -> HangupSide:
    """The side that ended a call which ended for `reason`. `remote_agent`: the peer of
    this call is an agent's phone (an agent leg); `ended_by_agent`: the engine sent the
    BYE because the agent of the caller's bridge hung up."""
    if reason is EndReason.REMOTE_BYE:
        if remote_agent:
            return HangupSide.AGENT
        return HangupSide.CALLER if inbound else HangupSide.CALLEE
    if reason is EndReason.LOCAL_BYE:
        return HangupSide.AGENT if ended_by_agent else HangupSide.ENGINE
    if reason is EndReason.CANCELLED:  # the INVITE's sender gave up
        return HangupSide.CALLER if inbound else HangupSide.ENGINE
    if reason is EndReason.REJECTED:  # the INVITE's receiver refused it
        if inbound:
            return HangupSide.ENGINE
        return HangupSide.AGENT if remote_agent else HangupSide.CALLEE
    return HangupSide.NETWORK  # NO_ACK, TIMEOUT, FAILED


# -- the E-model ----------------------------------------------------------------------------


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        bound = f"at least {low:g}" if high == math.inf else f"{low:g} to {high:g}"
        raise ValueError(f"{name}: expected {bound}, found {value!r}")


def loss_impairment(
    loss_pct: float, *, bpl: float = BPL_G711_PLC, burst_r: float = 1.0, ie: float = IE_G711
) -> float:
    """Ie_eff, the effective equipment impairment at `loss_pct` percent packet loss."""
    _check("packet loss %", loss_pct, 0.0, 100.0)
    if not (math.isfinite(bpl) and bpl > 0):
        raise ValueError(f"Bpl: expected a positive number, found {bpl!r}")
    if not (math.isfinite(burst_r) and burst_r > 0):
        raise ValueError(f"BurstR: expected a positive number, found {burst_r!r}")
    _check("Ie", ie, 0.0, 95.0)
    return ie + (95.0 - ie) * loss_pct / (loss_pct / burst_r + bpl)


def delay_impairment(one_way_ms: float) -> float:
    """Idd, the impairment of a one-way (mouth-to-ear) delay of `one_way_ms`."""
    _check("one-way delay (ms)", one_way_ms, 0.0)
    if one_way_ms <= MT_MS:
        return 0.0
    x = math.log2(one_way_ms / MT_MS)
    sixth = 1.0 / 6.0
    return 25.0 * (
        math.pow(1.0 + math.pow(x, 6), sixth)
        - 3.0 * math.pow(1.0 + math.pow(x / 3.0, 6), sixth)
        + 2.0
    )


def r_factor(
    loss_pct: float, one_way_ms: float, *, bpl: float = BPL_G711_PLC, burst_r: float = 1.0
) -> float:
    """The E-model rating R for G.711 at this loss and one-way delay."""
    return (
        R_DEFAULT
        - delay_impairment(one_way_ms)
        - loss_impairment(loss_pct, bpl=bpl, burst_r=burst_r)
    )


def mos_from_r(r: float) -> float:
    """The estimated mean opinion score (listening, 1..4.5) for a rating R."""
    if math.isnan(r):
        raise ValueError("R: expected a number, found nan")
    if r <= 0:
        return MOS_MIN
    if r >= 100:
        return MOS_MAX
    mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    return min(MOS_MAX, max(MOS_MIN, mos))


def mos_from(
    *,
    loss_pct: float,
    rtt_ms: float | None,
    playout_ms: float = DEFAULT_PLAYOUT_MS,
    bpl: float = BPL_G711_PLC,
    burst_r: float = 1.0,
) -> float:
    """The E-model MOS of a G.711 call with `loss_pct` percent of its packets lost, a
    round trip of `rtt_ms` (None when RTCP gave none: only the playout counts) and
    `playout_ms` of jitter buffer. The one-way delay is rtt/2 + playout."""
    if rtt_ms is not None:
        _check("round trip (ms)", rtt_ms, 0.0)
    _check("playout delay (ms)", playout_ms, 0.0)
    one_way = (rtt_ms or 0.0) / 2.0 + playout_ms
    return mos_from_r(r_factor(loss_pct, one_way, bpl=bpl, burst_r=burst_r))


# -- the record -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaQuality:
    """A call's media figures. `rx_*`: the peer's stream as the engine received it;
    `tx_*`: the engine's stream as the peer reported it in RTCP. Loss is a percentage
    of the packets expected over the whole call; jitter the highest interarrival jitter
    seen (RFC 3550 §6.4.1), in ms; `rtt_ms` the mean RTCP round trip. Unknown figures
    are None, but not all of them (a call without media has no MediaQuality)."""

    rx_packets: int | None = None
    rx_loss_pct: float | None = None
    rx_jitter_ms: float | None = None
    tx_packets: int | None = None
    tx_loss_pct: float | None = None
    tx_jitter_ms: float | None = None
    rtt_ms: float | None = None
    mos: float | None = None

    def __post_init__(self) -> None:
        for name in ("rx_packets", "tx_packets"):
            count = getattr(self, name)
            if count is not None and (
                not isinstance(count, int) or isinstance(count, bool) or count < 0
            ):
                raise ValueError(f"{name}: expected a count of at least 0, found {count!r}")
        for name, high in (
            ("rx_loss_pct", 100.0),
            ("tx_loss_pct", 100.0),
            ("rx_jitter_ms", math.inf),
            ("tx_jitter_ms", math.inf),
            ("rtt_ms", math.inf),
        ):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, 0.0, high)
        if self.mos is not None:
            _check("mos", self.mos, MOS_MIN, MOS_MAX)
        if all(getattr(self, f.name) is None for f in fields(self)):
            raise ValueError("a MediaQuality needs at least one figure (no media: use None)")


def _worse(a: float | None, b: float | None) -> float | None:
    known = [v for v in (a, b) if v is not None]
    return max(known) if known else None


def media_quality(
    quality: CallQuality | None,
    *,
    rx_packets: int | None = None,
    tx_packets: int | None = None,
    playout_ms: float = DEFAULT_PLAYOUT_MS,
    bpl: float = BPL_G711_PLC,
) -> MediaQuality | None:
    """A call's MediaQuality from its RTCP session's final `quality()` and the RTP
    packet counts (receiver `stats().packets`, sender `packets_sent`); None when none of
    it is known. The MOS uses the worse direction's loss, the mean round trip (else the
    latest) and `playout_ms`; it is None when neither direction's loss is known."""
    rx = quality.inbound if quality is not None else None
    tx = quality.outbound if quality is not None else None
    rx_loss = None if rx is None else rx.loss_ratio * 100.0
    tx_loss = None if tx is None else tx.loss_ratio * 100.0
    rtt: float | None = None
    if quality is not None:
        rtt = quality.mean_rtt_ms if quality.mean_rtt_ms is not None else quality.rtt_ms
    loss = _worse(rx_loss, tx_loss)
    mos = (
        None
        if loss is None
        else mos_from(loss_pct=min(100.0, loss), rtt_ms=rtt, playout_ms=playout_ms, bpl=bpl)
    )
    figures = (
        rx_packets,
        rx_loss,
        None if rx is None else rx.max_jitter_ms,
        tx_packets,
        tx_loss,
        None if tx is None else tx.max_jitter_ms,
        rtt,
        mos,
    )
    if all(v is None for v in figures):
        return None
    return MediaQuality(*figures)


def _utc(name: str, value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name}: expected a datetime, found {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: expected an aware datetime, found naive {value.isoformat()}")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One ended SIP call. Instants are aware and kept in UTC; `answered_at` is None
    for a call never answered. `caller` and `called` are the user parts of the calling
    and called identities (numbers, or agent names on agent legs). The flow fields are
    set when a flow ran on the call; the queue fields when it joined a queue
    (`queue_wait_s`: from joining to an agent answering, or to leaving the queue
    unanswered); `agent` the agent it was bridged to; `transferred_to` the target of a
    transfer. `end_reason` and `sip_status` say how the SIP call ended (the final status
    of a rejected or failed INVITE)."""

    call_id: str
    node: str
    direction: Direction
    caller: str
    called: str
    started_at: dt.datetime
    ended_at: dt.datetime
    hangup_side: HangupSide
    end_reason: EndReason
    answered_at: dt.datetime | None = None
    sip_status: int | None = None
    flow: str | None = None
    flow_version: str | None = None
    flow_result: str | None = None
    queue: str | None = None
    queue_wait_s: float | None = None
    agent: str | None = None
    transferred_to: str | None = None
    quality: MediaQuality | None = None

    def __post_init__(self) -> None:
        for name in ("call_id", "node"):
            if not getattr(self, name):
                raise ValueError(f"{name}: expected text, found an empty value")
        for name in (
            "call_id",
            "node",
            "caller",
            "called",
            "flow",
            "flow_version",
            "flow_result",
            "queue",
            "agent",
            "transferred_to",
        ):
            text = getattr(self, name)
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(f"{name}: expected text, found {type(text).__name__}")
            if len(text) > MAX_TEXT:
                raise ValueError(
                    f"{name}: expected at most {MAX_TEXT} characters, found {len(text)}"
                )
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise ValueError(f"{name}: control characters are not allowed")
        if not isinstance(self.direction, Direction):
            raise ValueError(f"direction: expected a Direction, found {self.direction!r}")
        if not isinstance(self.hangup_side, HangupSide):
            raise ValueError(f"hangup_side: expected a HangupSide, found {self.hangup_side!r}")
        if not isinstance(self.end_reason, EndReason):
            raise ValueError(f"end_reason: expected an EndReason, found {self.end_reason!r}")
        started = _utc("started_at", self.started_at)
        ended = _utc("ended_at", self.ended_at)
        object.__setattr__(self, "started_at", started)
        object.__setattr__(self, "ended_at", ended)
        if ended < started:
            raise ValueError(
                f"ended_at {ended.isoformat()} is before started_at {started.isoformat()}"
            )
        if self.answered_at is not None:
            answered = _utc("answered_at", self.answered_at)
            object.__setattr__(self, "answered_at", answered)
            if not started <= answered <= ended:
                raise ValueError(
                    f"answered_at {answered.isoformat()} is outside the call "
                    f"({started.isoformat()} to {ended.isoformat()})"
                )
        if self.sip_status is not None and (
            not isinstance(self.sip_status, int) or not 100 <= self.sip_status <= 699
        ):
            raise ValueError(f"sip_status: expected 100 to 699, found {self.sip_status!r}")
        if self.queue_wait_s is not None:
            _check("queue_wait_s", self.queue_wait_s, 0.0)
        if self.quality is not None and not isinstance(self.quality, MediaQuality):
            raise ValueError(f"quality: expected a MediaQuality, found {self.quality!r}")

    @property
    def duration_s(self) -> float:
        """Seconds from the INVITE to the end."""
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def talk_s(self) -> float | None:
        """Seconds from the answer to the end (None: never answered)."""
        if self.answered_at is None:
            return None
        return (self.ended_at - self.answered_at).total_seconds()

    @property
    def mos(self) -> float | None:
        return None if self.quality is None else self.quality.mos

    def __repr__(self) -> str:  # the caller's number stays out of logs
        return (
            f"CallRecord(call_id={self.call_id!r}, node={self.node!r}, "
            f"direction={self.direction.value!r}, caller={mask_digits(self.caller, 3)!r}, "
            f"called={self.called!r}, started_at={self.started_at.isoformat()!r}, "
            f"duration_s={self.duration_s:.3f}, flow={self.flow!r}, "
            f"flow_result={self.flow_result!r}, queue={self.queue!r}, agent={self.agent!r}, "
            f"hangup_side={self.hangup_side.value!r}, end_reason={self.end_reason.value!r}, "
            f"mos={self.mos!r})"
        )
