"""The end of a batch's run: its final status and counts, and the status documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medianalysed import outbox
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, final_batch_status, utc_now_iso
from medianalysed.state import BatchRecord

Stage = tuple[str, int, int]  # (stage, done, total) of the outbox being written


def finalising_changes(counts: Mapping[str, int], *, cancelled: bool) -> dict[str, Any]:
    """What the move to `finalizing` fixes: the terminal status, the end time, the counts."""
    status = (
        BatchStatus.CANCELLED if cancelled else final_batch_status(counts["done"], counts["failed"])
    )
    return {"status": status, "completed_at": utc_now_iso(), "final_counts": dict(counts)}


def running_status(record: BatchRecord, counts: Mapping[str, int]) -> dict[str, Any]:
    """`status.json` of a running batch."""
    return outbox.status_document(
        batch_id=record.batch_id,
        status=str(record.status),
        counts=counts,
        started_at=record.started_at,
        updated_at=utc_now_iso(),
    )


def finalising_status(record: BatchRecord, stage: Stage) -> dict[str, Any]:
    """`status.json` while the outbox is written: not terminal before summary.json is durable."""
    name, done, total = stage
    cancelled = record.status == BatchStatus.CANCELLED
    return outbox.status_document(
        batch_id=record.batch_id,
        status=str(BatchStatus.CANCELLED if cancelled else BatchStatus.PROCESSING),
        counts=record.final_counts,
        started_at=record.started_at,
        updated_at=utc_now_iso(),
        phase=BatchPhase.FINALIZING,
        finalizing={"stage": name, "done": done, "total": total},
    )


def progress_text(counts: Mapping[str, int]) -> str:
    """`5/30 (2 failed)`."""
    finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    return f"{finished}/{counts.get('total', 0)} ({counts.get('failed', 0)} failed)"
