"""`retry` and `reprocess`: put a finished batch back to work from where its input now is.

The supervisor records the rerun (`begin_rerun`, a control command, so it never races a
running batch actor); the batch actor it then starts resets the images (`finish_rerun`).
The outbox folder stays the batch's own: its `summary.json` is removed first (its
presence means "finished") and written again when the rerun ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from medianalysed import outbox
from medianalysed.crashpoints import crash_point
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.state import BatchRecord, ImageRecord
from medianalysed.wording import plural

logger = logging.getLogger(__name__)

RERUN_PHASE: Final = BatchPhase.RESETTING
_RESET_CHUNK = 500


class RerunError(Exception):
    """The batch cannot be rerun; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RerunPlan:
    """What a rerun would do."""

    batch_id: str
    inbox: str
    input_path: Path
    images: int
    only_failed: bool

    def describe(self) -> str:
        """One line for the CLI."""
        what = "failed or unfinished image" if self.only_failed else "image"
        return f"{self.batch_id}: would analyse {plural(self.images, what)} from {self.input_path}"


def plan_rerun(store: StateStorage, batch_id: str, *, only_failed: bool) -> RerunPlan:
    """Check that a batch can be rerun and count what would run again."""
    record = store.get_batch(batch_id)
    if record is None:
        raise RerunError(f"no batch named {batch_id!r}")
    if record.phase != BatchPhase.DONE:
        raise RerunError(
            f"batch {batch_id} is still {record.status} ({record.phase}); "
            "wait for it to finish or cancel it first"
        )
    input_path = current_input(record)
    if input_path is None:
        raise RerunError(
            f'the input of batch {batch_id} is gone (on_complete = "delete", or moved away); '
            "drop the folder again to analyse it as a new batch"
        )
    count = 0
    for path in store.iter_paths(record):
        if not only_failed or _runs_on_retry(store.get_image(batch_id, path)):
            count += 1
    return RerunPlan(batch_id, record.inbox, input_path, count, only_failed)


def _runs_on_retry(image: ImageRecord | None) -> bool:
    """Failed images are reset; images a cancel left pending run as well."""
    return image is None or image.status == ImageStatus.FAILED or not image.status.terminal


def current_input(record: BatchRecord) -> Path | None:
    """Where the batch's input is now: its archive, or where it was dropped (kept)."""
    for candidate in (record.archived_to, record.source):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def begin_rerun(
    store: StateStorage, batch_id: str, *, only_failed: bool, force: bool = False
) -> BatchRecord:
    """Record the rerun (phase `resetting`) before anything is reset; quick.

    From then on the batch is no longer "done": a kill at any later step resumes the rerun
    (`finish_rerun`, run by the batch actor) instead of leaving a finished batch whose
    stored results were half wiped. What to reset is in the record: `status` retrying
    means only the failed images, `bypass_cache` means `--force`.
    """
    plan = plan_rerun(store, batch_id, only_failed=only_failed)
    record = store.get_batch(batch_id)
    assert record is not None
    source = str(plan.input_path)
    intent = store.advance(
        record,
        RERUN_PHASE,
        status=BatchStatus.RETRYING if only_failed else BatchStatus.PROCESSING,
        source=source,
        loose_file=record.loose_file and Path(source).is_file(),
        completed_at=None,
        final_counts={},
        archived_to=None,
        bypass_cache=force,
        runs=record.runs + 1,
    )
    store.clear_set_aside(batch_id)  # run again on purpose: no longer set aside
    crash_point("rerun:intent", batch_id)
    # Its presence means "finished"; it is written again when the rerun ends.
    (Path(record.outbox_dir) / outbox.SUMMARY_FILE).unlink(missing_ok=True)
    return intent


def finish_rerun(
    store: StateStorage, record: BatchRecord, history: DuplicateHistory | None
) -> BatchRecord:
    """Reset the images a recorded rerun names, then reopen the batch; idempotent."""
    if record.phase != RERUN_PHASE:
        return record
    batch_id = record.batch_id
    (Path(record.outbox_dir) / outbox.SUMMARY_FILE).unlink(missing_ok=True)
    if record.bypass_cache and history is not None:
        removed = history.remove_batch(batch_id)
        logger.info("reprocess --force: %d history entries of %s dropped", removed, batch_id)
    only_failed = record.status == BatchStatus.RETRYING
    resets: list[ImageRecord] = []
    for path in store.iter_paths(record):
        image = store.get_image(batch_id, path) or ImageRecord(path=path)
        if only_failed and image.status != ImageStatus.FAILED:
            continue
        if image.status == ImageStatus.PENDING and image.result is None and image.error is None:
            continue  # reset by an earlier, interrupted pass
        resets.append(
            replace(
                image, status=ImageStatus.PENDING, error=None, result=None, next_attempt_at=None
            )
        )
        if len(resets) >= _RESET_CHUNK:
            store.put_images(batch_id, resets)
            resets = []
    if resets:
        store.put_images(batch_id, resets)
    crash_point("rerun:reset", batch_id)  # images reset, the batch not yet reopened
    # A batch set aside before it was ever listed (chunks == 0) is listed now.
    return store.advance(record, BatchPhase.RUNNING if record.chunks else BatchPhase.ENUMERATING)
