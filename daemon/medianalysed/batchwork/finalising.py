"""The end of a batch's run: its final status and counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medianalysed.models import BatchStatus, final_batch_status, utc_now_iso


def finalising_changes(counts: Mapping[str, int], *, cancelled: bool) -> dict[str, Any]:
    """What the move to `finalizing` fixes: the terminal status, the end time, the counts."""
    status = (
        BatchStatus.CANCELLED if cancelled else final_batch_status(counts["done"], counts["failed"])
    )
    return {"status": status, "completed_at": utc_now_iso(), "final_counts": dict(counts)}


def progress_text(counts: Mapping[str, int]) -> str:
    """`5/30 (2 failed)`."""
    finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    return f"{finished}/{counts.get('total', 0)} ({counts.get('failed', 0)} failed)"
