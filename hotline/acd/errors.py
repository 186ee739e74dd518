"""The exceptions raised by hotline.acd.

Owns the error types and nothing else. A configuration mistake (`AcdConfigError`) is
found when queues and agents are loaded; an event naming something the ACD does not
know (`UnknownAgent`, `UnknownQueue`, `DuplicateCall`) is a fault of the caller of the
router, raised before any state changes; malformed input from the outside world
(`StarCodeError`, `PidfError`) is meant to become a reply at the edge (a tone, a 400).
Must not know: SIP, sockets or the clock.
"""

from __future__ import annotations


class AcdError(Exception):
    """Base class of every error raised by hotline.acd."""


class AcdConfigError(AcdError):
    """Queues, agents or policies that cannot work together (raised at load time)."""


class UnknownAgent(AcdError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"unknown agent {agent_id!r}")
        self.agent_id = agent_id


class UnknownQueue(AcdError):
    def __init__(self, queue: str) -> None:
        super().__init__(f"unknown queue {queue!r}")
        self.queue = queue


class UnknownExpert(AcdError):
    def __init__(self, expert_id: str) -> None:
        super().__init__(f"unknown expert {expert_id!r}")
        self.expert_id = expert_id


class DuplicateCall(AcdError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} is already known to the ACD")
        self.call_id = call_id


class AgentStateError(AcdError):
    """A transition the agent state machine does not allow (a bug in the caller)."""


class StarCodeError(AcdError):
    """An agent feature code (`*41`…`*44`) that is malformed."""


class PidfError(AcdError):
    """A PIDF document that is not well-formed, not PIDF, or unsafe (DTD, entities).
    The edge answers a PUBLISH carrying it with 400 (or 415 for a wrong type)."""
