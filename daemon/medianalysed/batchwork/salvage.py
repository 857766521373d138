"""Salvage: a batch whose actor crashed more often than it may be restarted still ends.

Every image not terminal becomes INTERNAL, and the batch then finalises as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from medianalysed.batchwork.enumeration import stored_chunks
from medianalysed.errors import ErrorCode
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.outcomes import ImageError
from medianalysed.ports import StateStorage
from medianalysed.rerun import RERUN_PHASE
from medianalysed.state import PATH_CHUNK_SIZE, BatchRecord, ImageRecord

Counts = dict[str, int]


def salvage_record(store: StateStorage, record: BatchRecord) -> BatchRecord:
    """The batch taken to `running`, whatever step the crashes interrupted; as stored."""
    if record.phase == RERUN_PHASE:
        # Crashed while resetting for a rerun: what was not reset keeps its old record.
        return store.advance(record, BatchPhase.RUNNING)
    if record.phase == BatchPhase.ENUMERATING:
        return store.advance(
            record,
            BatchPhase.RUNNING,
            status=BatchStatus.PROCESSING,
            chunks=stored_chunks(store, record.batch_id),
            note=record.noted("its listing did not complete"),
        )
    return record


def fail_unfinished(
    store: StateStorage,
    record: BatchRecord,
    reason: str,
    on_failed: Callable[[ImageRecord], None],
) -> Counts:
    """Store every unfinished image as INTERNAL; the batch's counts after that."""
    counts = {"done": 0, "failed": 0, "skipped": 0, "pending": 0}
    error = ImageError.of(
        ErrorCode.INTERNAL, f"not analysed: the batch actor kept crashing ({reason})"
    ).to_json()
    failed: list[ImageRecord] = []
    for path in store.iter_paths(record):
        image = store.get_image(record.batch_id, path)
        if image is not None and image.status.terminal:
            counts[str(image.status)] += 1
            continue
        unfinished = ImageRecord(
            path=path,
            status=ImageStatus.FAILED,
            attempts=0 if image is None else image.attempts,
            error=error,
            source_url=None if image is None else image.source_url,
        )
        failed.append(unfinished)
        counts["failed"] += 1
        on_failed(unfinished)
        if len(failed) >= PATH_CHUNK_SIZE:
            store.put_images(record.batch_id, failed)
            failed = []
    if failed:
        store.put_images(record.batch_id, failed)
    return counts
