"""The file that keeps callback requests across restarts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hotline.acd.callbacks import CallbackRecord, CallbackState
from hotline.engine.callback_store import FileCallbackRepository


def record(cid: str, state: CallbackState = CallbackState.WAITING, **kw: object) -> CallbackRecord:
    base: dict[str, object] = dict(
        id=cid, number="0412345678", queue="help", priority=2, arrived_at=10.0, seq=1,
        state=state, created_at=10.0, updated_at=11.0, variables={"topic": "vaccine"},
        sensitive=frozenset({"medicare"}),
    )
    base.update(kw)
    return CallbackRecord(**base)  # type: ignore[arg-type]


def test_records_survive_a_restart_and_final_ones_leave(tmp_path: Path) -> None:
    path = tmp_path / "var" / "callbacks.json"
    repo = FileCallbackRepository(path)
    assert repo.load_active() == []
    repo.save(record("a"))
    repo.save(record("b", attempts=1, due_at=99.5, state=CallbackState.RETRY_WAIT))
    repo.save(record("a", state=CallbackState.COMPLETED))
    repo.close()
    again = FileCallbackRepository(path)
    loaded = again.load_active()
    assert [r.id for r in loaded] == ["b"]
    assert loaded[0] == record("b", attempts=1, due_at=99.5, state=CallbackState.RETRY_WAIT)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # a phone number is personal data
    again.close()


def test_writes_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "callbacks.json"
    repo = FileCallbackRepository(path)
    for attempt in range(50):
        repo.save(record("a", attempts=attempt))
    repo.flush()
    data = json.loads(path.read_text())
    assert [c["attempts"] for c in data["callbacks"]] == [49]
    repo.close()


def test_an_unreadable_file_stops_the_start_instead_of_losing_callbacks(tmp_path: Path) -> None:
    path = tmp_path / "callbacks.json"
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read the stored callbacks"):
        FileCallbackRepository(path).load_active()
