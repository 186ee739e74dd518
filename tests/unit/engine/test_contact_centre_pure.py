"""The contact centre's pure helpers: config → router queues, SIP outcomes → offer events."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.acd.agents import OfferFailure
from hotline.acd.queues import OfferCallback, Strategy, ToQueue, ToVoicemail
from hotline.acd.router import OfferRejected, OfferTimedOut
from hotline.config import ConfigError, QueueSettings, load_config
from hotline.engine.contact_centre import RINGBACK, _offer_failure, queue_config
from hotline.sip.endpoint import EndReason


def test_a_queue_from_config_keeps_every_setting() -> None:
    q = QueueSettings.model_validate({
        "name": "help", "strategy": "skills_based",
        "skills": [{"skill": "vaccine", "min": 3}],
        "escalation": [{"after_seconds": 60, "skills": [{"skill": "vaccine"}]}],
        "max_wait_seconds": 300, "overflow": {"voicemail": "help"},
        "announce_first_seconds": 15, "announce_every_seconds": 45, "sensitive": ["dob"],
    })
    config = queue_config(q)
    assert config.strategy is Strategy.SKILLS_BASED
    assert config.skills[0].skill == "vaccine" and config.skills[0].min_proficiency == 3
    assert config.escalation[0].after == 60 and config.escalation[0].skills[0].min_proficiency == 1
    assert config.overflow == ToVoicemail("help")
    assert (config.announce_first, config.announce_every) == (15, 45)
    assert config.sensitive == frozenset({"dob"})
    plain = queue_config(q.model_copy(update={"overflow": None, "max_wait_seconds": None}))
    assert plain.overflow is None and plain.max_wait is None


@pytest.mark.parametrize(("overflow", "expected"), [
    ({"queue": "other"}, ToQueue("other")),
    ({"callback": True}, OfferCallback()),
])
def test_overflow_targets(overflow: dict[str, object], expected: object) -> None:
    q = QueueSettings.model_validate({"name": "help", "overflow": overflow,
                                      "max_wait_seconds": 60})
    assert queue_config(q).overflow == expected


def test_no_announcements_means_none_at_all() -> None:
    q = QueueSettings.model_validate({"name": "help", "announce_first_seconds": None})
    config = queue_config(q)
    assert config.announce_first is None and config.announce_every is None


@pytest.mark.parametrize(("reason", "status", "expected"), [
    (EndReason.TIMEOUT, 408, OfferTimedOut("a", "c")),
    (EndReason.REJECTED, 408, OfferTimedOut("a", "c")),
    (EndReason.REJECTED, 486, OfferRejected("a", "c", OfferFailure.BUSY)),
    (EndReason.REJECTED, 600, OfferRejected("a", "c", OfferFailure.BUSY)),
    (EndReason.REJECTED, 603, OfferRejected("a", "c", OfferFailure.REJECTED)),
    (EndReason.REJECTED, 404, OfferRejected("a", "c", OfferFailure.UNREACHABLE)),
    (EndReason.REJECTED, 480, OfferRejected("a", "c", OfferFailure.UNREACHABLE)),
    (EndReason.FAILED, None, OfferRejected("a", "c", OfferFailure.UNREACHABLE)),
])
def test_sip_outcomes_of_an_offer(reason: EndReason, status: int | None,
                                  expected: object) -> None:
    assert _offer_failure("a", "c", reason, status) == expected


def test_ringback_has_the_australian_cadence() -> None:
    assert RINGBACK.size == 3 * 8000  # 0.4 on, 0.2 off, 0.4 on, 2.0 off
    on = abs(RINGBACK.astype(int)).reshape(-1, 400).max(axis=1) > 0
    assert on.tolist() == [True] * 8 + [False] * 4 + [True] * 8 + [False] * 40


def test_config_refuses_agents_who_are_not_users_and_unknown_queues(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "registrar:\n  users: [{username: bob, password: pw}]\n"
        "acd:\n  agents: [{id: bob}, {id: eve}]\n"
        "  queues:\n    - {name: a, overflow: {queue: nowhere}, members: [bob, mallory],\n"
        "       max_wait_seconds: 5}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert "c.yaml:4:" in text and "acd.agents[1].id: expected a registrar user" in text
    assert "acd.queues[0].overflow.queue: expected one of the queues (a), found 'nowhere'" in text
    assert "acd.queues[0].members[1]: expected an agent of acd.agents, found 'mallory'" in text
    cfg.write_text("acd:\n  queues:\n    - {name: b, max_wait_seconds: 5}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "c.yaml:3:7: acd.queues[0]: expected overflow too" in str(info.value)
