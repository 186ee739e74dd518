"""Callback requests kept across restarts: a `CallbackRepository` in one JSON file.

Owns `var/callbacks.json` (under paths.data): every callback record still active, keyed
by id. `load_active()` reads it once when the ACD starts; `save(record)` updates the
table in memory and writes the whole file behind, in a single worker thread, atomically
(a temporary file beside it, fsync, rename) — so a crash leaves the last complete table,
and writes keep their order. Final records (completed, failed, cancelled) leave the file.

One engine node owns its callbacks; callbacks shared by several nodes belong in the
shared database, which this file does not replace. The caller's number is personal
data: the file is created mode 0600.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from hotline.acd.callbacks import CallbackRecord, CallbackState

log = logging.getLogger("hotline.acd")


def _to_json(record: CallbackRecord) -> dict[str, Any]:
    return {
        "id": record.id, "number": record.number, "queue": record.queue,
        "priority": record.priority, "arrived_at": record.arrived_at, "seq": record.seq,
        "state": record.state.value, "created_at": record.created_at,
        "updated_at": record.updated_at, "attempts": record.attempts,
        "due_at": record.due_at, "agent_id": record.agent_id,
        "last_result": record.last_result, "variables": dict(record.variables),
        "sensitive": sorted(record.sensitive),
    }


def _from_json(data: dict[str, Any]) -> CallbackRecord:
    return CallbackRecord(
        id=str(data["id"]), number=str(data["number"]), queue=str(data["queue"]),
        priority=int(data["priority"]), arrived_at=float(data["arrived_at"]),
        seq=int(data["seq"]), state=CallbackState(data["state"]),
        created_at=float(data["created_at"]), updated_at=float(data["updated_at"]),
        attempts=int(data.get("attempts", 0)),
        due_at=None if data.get("due_at") is None else float(data["due_at"]),
        agent_id=data.get("agent_id"), last_result=data.get("last_result"),
        variables=dict(data.get("variables") or {}),
        sensitive=frozenset(data.get("sensitive") or ()),
    )


class FileCallbackRepository:
    """See the module docstring. `flush()` waits for the writes queued so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, CallbackRecord] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="callbacks")
        self._last: concurrent.futures.Future[None] | None = None
        self.write_errors = 0

    def load_active(self) -> list[CallbackRecord]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            table = json.loads(raw)
            records = [_from_json(item) for item in table["callbacks"]]
        except (ValueError, KeyError, TypeError) as exc:
            # Refuse to start over an unreadable file: losing callbacks silently is worse.
            raise RuntimeError(f"{self.path}: cannot read the stored callbacks: {exc}") from exc
        with self._lock:
            self._records = {r.id: r for r in records if r.active}
            return list(self._records.values())

    def save(self, record: CallbackRecord) -> None:
        with self._lock:
            if record.active:
                self._records[record.id] = record
            else:
                self._records.pop(record.id, None)
            snapshot = [_to_json(r) for r in self._records.values()]
        self._last = self._pool.submit(self._write, snapshot)

    def _write(self, snapshot: list[dict[str, Any]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(dir=self.path.parent, prefix=".callbacks.",
                                        suffix=".part")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"callbacks": snapshot}, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(part, 0o600)
                os.replace(part, self.path)
            finally:
                if os.path.exists(part):
                    os.unlink(part)
        except OSError as exc:
            self.write_errors += 1
            log.error("cannot store callbacks in %s: %s", self.path, exc)

    def flush(self) -> None:
        last = self._last
        if last is not None:
            last.result()

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)
