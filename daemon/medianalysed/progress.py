"""A batch's progress: one value, kept in state, rendered as the outbox's `status.json`.

`publish` is the one writer: it stores the value (so `medianalysed status`, the systemd status
line and the HTTP API read progress from state, never from outbox files) and writes
`status.json` from it. Written by the supervisor (queued), the batch actor (running,
finalising), the outbox writer (done) and set-aside.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from medianalysed import outbox
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, utc_now_iso
from medianalysed.ports import StateStorage
from medianalysed.state import BatchRecord

_logger = logging.getLogger(__name__)

COUNT_KEYS: Final = ("total", "pending", "processing", "done", "failed", "skipped")

Stage = tuple[str, int, int]  # (stage, done, total) of the outbox being written


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProgress:
    """How far a batch is: its status, counts and, while finalising, the outbox stage."""

    batch_id: str
    status: str
    counts: Mapping[str, int] = field(default_factory=dict)
    started_at: str | None = None
    updated_at: str = ""
    phase: BatchPhase | None = None
    stage: Stage | None = None

    @classmethod
    def queued(cls, record: BatchRecord) -> BatchProgress:
        """A batch just created: nothing listed yet."""
        return cls(
            batch_id=record.batch_id,
            status=str(BatchStatus.QUEUED),
            counts=dict.fromkeys(COUNT_KEYS, 0),
            updated_at=utc_now_iso(),
        )

    @classmethod
    def running(cls, record: BatchRecord, counts: Mapping[str, int]) -> BatchProgress:
        """A running batch with its live counts."""
        return cls(
            batch_id=record.batch_id,
            status=str(record.status),
            counts=dict(counts),
            started_at=record.started_at,
            updated_at=utc_now_iso(),
        )

    @classmethod
    def finalising(cls, record: BatchRecord, stage: Stage) -> BatchProgress:
        """While the outbox is written: not terminal before summary.json is durable."""
        cancelled = record.status == BatchStatus.CANCELLED
        return cls(
            batch_id=record.batch_id,
            status=str(BatchStatus.CANCELLED if cancelled else BatchStatus.PROCESSING),
            counts=dict(record.final_counts),
            started_at=record.started_at,
            updated_at=utc_now_iso(),
            phase=BatchPhase.FINALIZING,
            stage=stage,
        )

    @classmethod
    def ended(cls, record: BatchRecord, *, phase: BatchPhase | None = None) -> BatchProgress:
        """A batch whose final counts are fixed (written, set aside, or known only by record)."""
        return cls(
            batch_id=record.batch_id,
            status=str(record.status),
            counts=dict(record.final_counts or {"total": record.total}),
            started_at=record.started_at,
            updated_at=record.completed_at or record.created_at or utc_now_iso(),
            phase=phase,
        )

    @property
    def finished(self) -> int:
        """Images done, failed or skipped."""
        return sum(int(self.counts.get(key, 0)) for key in ("done", "failed", "skipped"))

    def document(self) -> dict[str, Any]:
        """The `status.json` object (SPEC §4)."""
        finalizing = None
        if self.stage is not None:
            name, done, total = self.stage
            finalizing = {"stage": name, "done": done, "total": total}
        return status_document(
            batch_id=self.batch_id,
            status=self.status,
            counts=self.counts,
            started_at=self.started_at,
            updated_at=self.updated_at,
            phase=None if self.phase is None else str(self.phase),
            finalizing=finalizing,
        )

    def line(self) -> str:
        """`5/30 (2 failed)`, with the finalising stage when there is one."""
        document = self.document()
        failed = int(document["counts"]["failed"])
        failed_text = f" ({failed} failed)" if failed else ""
        return f"{document['progress']}{failed_text}{finalizing_note(document)}"

    def to_json(self) -> str:
        """Serialise for the state store."""
        return json.dumps(
            {
                "batch_id": self.batch_id,
                "status": self.status,
                "counts": dict(self.counts),
                "started_at": self.started_at,
                "updated_at": self.updated_at,
                "phase": None if self.phase is None else str(self.phase),
                "stage": None if self.stage is None else list(self.stage),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> BatchProgress:
        """Parse a stored value."""
        data = json.loads(text)
        stage = data.get("stage")
        return cls(
            batch_id=data["batch_id"],
            status=data["status"],
            counts={str(key): int(value) for key, value in data["counts"].items()},
            started_at=data.get("started_at"),
            updated_at=data.get("updated_at", ""),
            phase=None if data.get("phase") is None else BatchPhase(data["phase"]),
            stage=None if stage is None else (str(stage[0]), int(stage[1]), int(stage[2])),
        )


Observer = Callable[[BatchRecord, BatchProgress], None]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


def _is_terminal(status: str) -> bool:
    try:
        return BatchStatus(status).terminal
    except ValueError:
        return False


def status_document(
    *,
    batch_id: str,
    status: str,
    counts: Mapping[str, int],
    started_at: str | None,
    updated_at: str,
    phase: str | None = None,
    finalizing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the `status.json` object.

    `counts.total` defaults to the sum of the other counts. `percentage` is finished/total
    rounded down to one decimal, so it shows 100.0 only when every image is finished; an empty
    batch shows 100.0 once terminal and 0.0 before. `phase` (`running`, `finalizing`, `done`)
    and `finalizing` (`{"stage", "done", "total"}` while the outbox is being written) are added
    when given.
    """
    normalized = {key: int(counts.get(key, 0)) for key in COUNT_KEYS if key != "total"}
    total = int(counts.get("total", sum(normalized.values())))
    finished = normalized["done"] + normalized["failed"] + normalized["skipped"]
    if total > 0:
        percentage = (finished * 1000 // total) / 10
    else:
        percentage = 100.0 if _is_terminal(status) else 0.0
    document: dict[str, Any] = {
        "batch_id": batch_id,
        "status": str(status),
        "counts": {"total": total, **normalized},
        "progress": f"{finished}/{total}",
        "percentage": percentage,
        "started_at": started_at,
        "updated_at": updated_at,
    }
    if phase is not None:
        document["phase"] = phase
    if finalizing is not None:
        document["finalizing"] = dict(finalizing)
    return document


def finalizing_note(document: Mapping[str, Any]) -> str:
    """`" finalizing: writing 3000/10000"` for a status.json written while finalising, else ""."""
    if document.get("phase") != "finalizing":
        return ""
    stage = document.get("finalizing")
    if not isinstance(stage, Mapping):
        return " finalizing"
    return f" finalizing: {stage.get('stage')} {stage.get('done')}/{stage.get('total')}"


def add_observer(observer: Observer) -> None:
    """Call `observer` after every publish (the API's events, progress webhooks).

    It runs on the publishing thread, often an actor's: it must only hand the value on
    (append to a buffer), never wait.
    """
    with _observers_lock:
        _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    """Stop calling `observer`; unknown ones are fine."""
    with _observers_lock:
        if observer in _observers:
            _observers.remove(observer)


def _notify(record: BatchRecord, progress: BatchProgress) -> None:
    with _observers_lock:
        observers = list(_observers)
    for observer in observers:
        try:
            observer(record, progress)
        except Exception:
            _logger.exception("progress observer %r failed", observer)


def publish(store: StateStorage, record: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    """Store `progress`, then write it as the batch's `status.json`; the document written.

    Observers (`add_observer`) hear of it once both are written.

    Raises:
        DiskWriteError: the state or the outbox disk refused the write.
        OutboxError: status.json could not be written otherwise.
    """
    store.put_progress(progress.batch_id, progress.to_json())
    document = progress.document()
    outbox.write_json_atomic(Path(record.outbox_dir) / outbox.STATUS_FILE, document)
    _notify(record, progress)
    return document


def stored_progress(store: StateStorage, batch_id: str) -> BatchProgress | None:
    """The batch's stored progress, or None (none published yet, or unreadable)."""
    text = store.get_progress(batch_id)
    if text is None:
        return None
    try:
        return BatchProgress.from_json(text)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def progress_of(store: StateStorage, record: BatchRecord) -> BatchProgress:
    """The batch's stored progress; from its record when none is stored (older state)."""
    return stored_progress(store, record.batch_id) or BatchProgress.ended(record)
