"""Setting a batch aside: it ends as `failed` without running its pipeline again.

Used when the normal way to the end is what fails: the batch actor crashed even when
asked only to finalise, or the daemon died twice at the same step of this batch (a crash
loop, see crashloop.py). The batch record becomes `done`/`failed` with the reason in its
note; the outbox gets a `status.json` and a small `summary.json` (with `set_aside`), written
here without the results pipeline that may be what breaks; the input stays where it is
(its claim is kept, so the same folder is not started again by itself). `medianalysed
status` lists set-aside batches; `retry`/`reprocess` run one again (after an upgrade).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medianalysed import outbox
from medianalysed.errors import MedianalysedError, clip_message
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, utc_now_iso
from medianalysed.ports import StateStorage
from medianalysed.progress import BatchProgress, publish
from medianalysed.state import BatchRecord

if TYPE_CHECKING:
    from medianalysed.batchwork.settings import BatchListener

logger = logging.getLogger(__name__)


def set_aside(
    store: StateStorage, batch_id: str, reason: str, listener: BatchListener | None = None
) -> BatchRecord | None:
    """End a batch as failed, set aside for `reason`; None when there is no such batch."""
    record = store.get_batch(batch_id)
    if record is None:
        return None
    reason = clip_message(reason)
    now = utc_now_iso()
    counts = _counts(store, record)
    entry = {
        "batch_id": batch_id,
        "inbox": record.inbox,
        "source": record.source,
        "reason": reason,
        "phase": record.phase,
        "at": now,
        "incarnation": store.incarnation,
    }
    store.put_set_aside(batch_id, entry)
    ended = store.advance(
        record,
        BatchPhase.DONE,
        status=BatchStatus.FAILED,
        completed_at=now,
        final_counts=counts,
        archived_to=None,
        note=record.noted(f"set aside: {reason}"),
    )
    store.clear_step_marker(batch_id)
    logger.error(
        "batch %s set aside: %s; its input stays at %s",
        batch_id,
        reason,
        record.source,
        extra={"batch_id": batch_id},
    )
    summary = _write_outbox(store, ended, entry)
    if listener is not None:
        try:
            listener.batch_finished(
                record.inbox,
                str(ended.status),
                summary,
                callback_url=record.callback_url,
                run=record.runs,
            )
        except Exception:
            logger.exception("batch %s: reporting its end failed", batch_id)
    return ended


def _counts(store: StateStorage, record: BatchRecord) -> dict[str, int]:
    counts = {"total": record.total, "pending": 0, "processing": 0, "done": 0, "failed": 0}
    counts["skipped"] = 0
    try:
        for path in store.iter_paths(record):
            image = store.get_image(record.batch_id, path)
            key = str(image.status) if image is not None and image.status.terminal else "pending"
            counts[key] += 1
    except Exception:  # the stored records may be what is broken: report what is known
        logger.exception("batch %s: cannot count its images", record.batch_id)
    return counts


def _write_outbox(
    store: StateStorage, record: BatchRecord, entry: dict[str, Any]
) -> dict[str, Any]:
    ended = BatchProgress.ended(record)
    fields = ended.document()
    summary: dict[str, Any] = {
        **fields,
        "completed_at": record.completed_at,
        "set_aside": {"reason": entry["reason"], "phase": entry["phase"]},
        "note": record.note,
        "tags": list(record.tags),
        "priority": str(record.priority),
    }
    directory = Path(record.outbox_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        publish(store, record, ended)
        outbox.write_json_atomic(directory / outbox.SUMMARY_FILE, summary)
    except (OSError, MedianalysedError) as exc:
        logger.error("batch %s: cannot write its outbox: %s", record.batch_id, exc)
    return summary
