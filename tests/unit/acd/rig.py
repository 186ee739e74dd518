"""A fake clock around the ACD router: send events at `rig.now`, move time with
`advance`, which fires every deadline on the way at the time it falls due."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from hotline.acd import router as r
from hotline.acd.agents import AgentConfig, Login
from hotline.acd.queues import QueueConfig

T = TypeVar("T")


class Rig:
    def __init__(
        self, queues: Iterable[QueueConfig], agents: Iterable[AgentConfig] = (), **kwargs: Any
    ) -> None:
        self.now = 0.0
        self.router = r.Router(queues, agents, now=self.now, **kwargs)
        self.log: list[r.Action] = []

    def send(self, event: r.Event) -> list[r.Action]:
        actions = self.router.handle(event, self.now)
        self.log.extend(actions)
        return actions

    def advance(self, seconds: float) -> list[r.Action]:
        target = self.now + seconds
        actions: list[r.Action] = []
        for _ in range(100_000):
            deadline = self.router.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            actions.extend(self.router.handle_timer(self.now))
        else:
            raise AssertionError(f"deadlines keep falling due at {self.now}: a timer loop")
        self.now = target
        self.log.extend(actions)
        return actions

    def ready(self, *agent_ids: str) -> list[r.Action]:
        actions: list[r.Action] = []
        for agent_id in agent_ids:
            actions += self.send(r.AgentRegistered(agent_id))
            actions += self.send(r.AgentCommandIssued(agent_id, Login()))
        return actions


def of(kind: type[T], actions: Iterable[object]) -> list[T]:
    return [a for a in actions if isinstance(a, kind)]


def offers(actions: Iterable[object]) -> list[tuple[str, str]]:
    """(agent, call) of every OfferCall, in order."""
    return [(a.agent_id, a.call_id) for a in of(r.OfferCall, actions)]


def agent(agent_id: str, **skills: int) -> AgentConfig:
    return AgentConfig(
        agent_id, name=agent_id.title(), uri=f"sip:{agent_id}@hotline.test", skills=skills
    )
