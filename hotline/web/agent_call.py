"""One offered call on a browser agent's session, as a state machine: what the browser,
the SIP side and the WebRTC leg may do to it in each phase, and what the gateway must do
in answer.

Transitions are data (`TRANSITIONS`, h11 style): a (phase, input) pair maps to the next
phase and the actions to perform, in order. A pair that is not listed is refused with
`CallStateError` — for the browser's inputs, a message back to the page ("call c1 is
answered: cannot accept"). Hanging up a call that still rings declines it.
Inputs from SIP or from the media leg that arrive after the call ended are listed as
doing nothing but releasing media, so races (a CANCEL while WebRTC is being set up, the
WebRTC leg connecting after the caller left) end cleanly.

The call is answered in SIP (200 OK) only once the browser's WebRTC leg is connected:
until then the caller keeps hearing the queue, and a leg that never connects declines
the offer (480) instead of answering into silence.

Must not know: SIP messages, sockets, aiortc, the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["TRANSITIONS", "Action", "AgentCall", "CallPhase", "CallStateError", "Input"]


class CallPhase(Enum):
    RINGING = "ringing"  # 180 sent, the browser rings
    ACCEPTING = "accepting"  # the browser accepted; its WebRTC leg is being connected
    ANSWERED = "answered"  # 200 OK sent, no ACK yet
    CONFIRMED = "confirmed"  # ACK received: talking
    ENDED = "ended"


class Input(Enum):
    # from the browser
    ACCEPT = "accept"
    REJECT = "reject"
    HANGUP = "hang up"
    MUTE = "mute"
    # from the WebRTC leg
    MEDIA_READY = "media ready"
    MEDIA_FAILED = "media failed"
    # from SIP
    ACK = "ack"
    REMOTE_END = "remote end"  # CANCEL, BYE, or the engine's transaction gave up


BROWSER_INPUTS = frozenset({Input.ACCEPT, Input.REJECT, Input.HANGUP, Input.MUTE})


class Action(Enum):
    START_MEDIA = "start media"  # build the WebRTC leg, send the browser its answer
    SET_MUTE = "set mute"  # what the browser sends becomes silence (or stops being)
    SIP_ANSWER = "sip answer"  # 200 OK with our SDP answer
    SIP_DECLINE = "sip decline"  # 603 Decline: the agent said no
    SIP_UNAVAILABLE = "sip unavailable"  # 480: the browser's leg could not be connected
    SIP_BYE = "sip bye"
    STOP_MEDIA = "stop media"  # close the WebRTC leg and the RTP sockets (idempotent)
    NOTIFY_CONNECTED = "notify connected"
    NOTIFY_CANCELLED = "notify cancelled"  # stop ringing: the offer is gone
    NOTIFY_ENDED = "notify ended"


P = CallPhase
I = Input  # noqa: E741 - the table reads better with one-letter names
A = Action

_END_UNANSWERED = (A.SIP_DECLINE, A.STOP_MEDIA, A.NOTIFY_ENDED)
_END_TALKING = (A.SIP_BYE, A.STOP_MEDIA, A.NOTIFY_ENDED)

TRANSITIONS: dict[tuple[CallPhase, Input], tuple[CallPhase, tuple[Action, ...]]] = {
    (P.RINGING, I.ACCEPT): (P.ACCEPTING, (A.START_MEDIA,)),
    (P.RINGING, I.REJECT): (P.ENDED, _END_UNANSWERED),
    (P.RINGING, I.HANGUP): (P.ENDED, _END_UNANSWERED),
    (P.RINGING, I.REMOTE_END): (P.ENDED, (A.STOP_MEDIA, A.NOTIFY_CANCELLED)),
    (P.ACCEPTING, I.MEDIA_READY): (P.ANSWERED, (A.SIP_ANSWER,)),
    (P.ACCEPTING, I.MEDIA_FAILED): (P.ENDED, (A.SIP_UNAVAILABLE, A.STOP_MEDIA, A.NOTIFY_ENDED)),
    (P.ACCEPTING, I.REJECT): (P.ENDED, _END_UNANSWERED),
    (P.ACCEPTING, I.HANGUP): (P.ENDED, _END_UNANSWERED),
    (P.ACCEPTING, I.MUTE): (P.ACCEPTING, (A.SET_MUTE,)),
    (P.ACCEPTING, I.REMOTE_END): (P.ENDED, (A.STOP_MEDIA, A.NOTIFY_CANCELLED)),
    (P.ANSWERED, I.ACK): (P.CONFIRMED, (A.NOTIFY_CONNECTED,)),
    (P.ANSWERED, I.HANGUP): (P.ENDED, _END_TALKING),
    (P.ANSWERED, I.MUTE): (P.ANSWERED, (A.SET_MUTE,)),
    (P.ANSWERED, I.MEDIA_FAILED): (P.ENDED, _END_TALKING),
    (P.ANSWERED, I.REMOTE_END): (P.ENDED, (A.STOP_MEDIA, A.NOTIFY_ENDED)),
    (P.CONFIRMED, I.HANGUP): (P.ENDED, _END_TALKING),
    (P.CONFIRMED, I.MUTE): (P.CONFIRMED, (A.SET_MUTE,)),
    (P.CONFIRMED, I.MEDIA_FAILED): (P.ENDED, _END_TALKING),
    (P.CONFIRMED, I.REMOTE_END): (P.ENDED, (A.STOP_MEDIA, A.NOTIFY_ENDED)),
    # Late news about a call that is over: release whatever media is left.
    (P.ENDED, I.MEDIA_READY): (P.ENDED, (A.STOP_MEDIA,)),
    (P.ENDED, I.MEDIA_FAILED): (P.ENDED, (A.STOP_MEDIA,)),
    (P.ENDED, I.ACK): (P.ENDED, ()),
    (P.ENDED, I.REMOTE_END): (P.ENDED, ()),
}


class CallStateError(Exception):
    """An input the call's phase does not take; the text is fit for the agent's page."""


@dataclass(eq=False)
class AgentCall:
    """The phase of one call, the agent's mute switch and why it ended."""

    id: str
    phase: CallPhase = CallPhase.RINGING
    muted: bool = False
    end_reason: str | None = None
    history: list[tuple[CallPhase, Input]] = field(default_factory=list)

    def handle(
        self, event: Input, *, muted: bool | None = None, reason: str | None = None
    ) -> tuple[Action, ...]:
        """Apply `event`; return the actions to perform. `muted` goes with MUTE;
        `reason` (why the call ends, for the page) with any input that ends it."""
        step = TRANSITIONS.get((self.phase, event))
        if step is None:
            raise CallStateError(f"call {self.id} is {self.phase.value}: cannot {event.value}")
        if event is Input.MUTE:
            if muted is None:
                raise ValueError("MUTE needs muted=True or False")
            self.muted = muted
        self.history.append((self.phase, event))
        phase, actions = step
        if phase is CallPhase.ENDED and self.phase is not CallPhase.ENDED:
            self.end_reason = reason or _DEFAULT_REASONS[event]
        self.phase = phase
        return actions

    @property
    def ended(self) -> bool:
        return self.phase is CallPhase.ENDED


_DEFAULT_REASONS = {
    Input.REJECT: "rejected",
    Input.HANGUP: "hung up by the agent",
    Input.MEDIA_FAILED: "the browser's audio could not be connected",
    Input.REMOTE_END: "ended by the hotline",
    Input.ACCEPT: "accepted",
    Input.MUTE: "muted",
    Input.MEDIA_READY: "media ready",
    Input.ACK: "acknowledged",
}
