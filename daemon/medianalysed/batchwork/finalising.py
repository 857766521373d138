"""The end of a batch's run: its final status and counts, then its outbox, in slices."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medianalysed.crashloop import enter_step
from medianalysed.crashpoints import crash_point
from medianalysed.models import BatchStatus, final_batch_status, utc_now_iso
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.progress import Stage
from medianalysed.state import BatchRecord

if TYPE_CHECKING:
    from medianalysed.nearrule import NearRule

FINALISE_SLICE_S = 0.05  # longest stretch of finalising work between two messages


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


class OutboxRun:
    """The outbox of one batch being written (`BatchOutbox.write`), one slice at a time.

    Each slice runs at most `FINALISE_SLICE_S`, so the actor handles a stop queued meanwhile
    before the next. Closing it midway leaves no partial file; the next start redoes it.
    """

    def __init__(self, steps: Generator[Stage, None, dict[str, Any]], total: int) -> None:
        self._steps = steps
        self.stage: Stage = ("indexing", 0, total)

    def next_slice(self) -> dict[str, Any] | None:
        """Write for one slice; returns the summary once the outbox is complete."""
        deadline = time.monotonic() + FINALISE_SLICE_S
        try:
            while True:
                self.stage = next(self._steps)
                if time.monotonic() >= deadline:
                    return None
        except StopIteration as finished:
            summary: dict[str, Any] = finished.value
            return summary

    def close(self) -> None:
        """Abandon the outbox: its temporary files go."""
        self._steps.close()


def start_outbox(
    record: BatchRecord,
    store: StateStorage,
    history: DuplicateHistory,
    *,
    near_rule: NearRule,
    max_duplicates_listed: int,
    config_fingerprint: str,
) -> OutboxRun:
    """Begin writing a `finalizing` batch's outbox (the crash-loop step is `finalizing`)."""
    # Only here: the outbox writer's chain (duplicate planner, numpy, reports, gexf) is not
    # what the first image needs, so `analyze` dispatches before importing it.
    from medianalysed.actors.outboxwriter import BatchOutbox  # noqa: PLC0415

    enter_step(store, record.batch_id, "finalizing")
    crash_point("finalize", record.batch_id)
    steps = BatchOutbox(
        record=record,
        store=store,
        history=history,
        near_rule=near_rule,
        max_duplicates_listed=max_duplicates_listed,
        config_fingerprint=config_fingerprint,
    ).write()
    with contextlib.suppress(OSError):  # if it fails, BatchOutbox.write says why
        Path(record.outbox_dir).mkdir(parents=True, exist_ok=True)
    return OutboxRun(steps, record.total)
