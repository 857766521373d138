"""Archiving, deleting or keeping a finished batch's input; resumable after a kill at any step.

The target is stored first (phase `disposing`), then the input is moved or deleted by
idempotent steps (`disposal.py`), then the phase becomes `done`. Resumed, the same steps finish
what was started: a moved input is not moved again, a half copy is redone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medianalysed import names
from medianalysed.config import InboxConfig
from medianalysed.crashpoints import crash_point
from medianalysed.diskfaults import classified
from medianalysed.disposal import delete_input, move_input, partial_copy_path
from medianalysed.lifecycle import BatchPhase
from medianalysed.ports import StateStorage
from medianalysed.state import BatchRecord

logger = logging.getLogger(__name__)


def intend_disposal(store: StateStorage, record: BatchRecord, inbox: InboxConfig) -> BatchRecord:
    """Store where a `written` batch's input goes (phase `disposing`); returns the record.

    Kept apart from `dispose_input` so that the caller holds the stored intent even when the
    move then fails: a retry must resume towards the same target, never choose another
    name beside its own partial copy.

    Raises:
        DiskWriteError: the archive refused (full, read-only): the caller retries later.
    """
    if record.phase != BatchPhase.WRITTEN:
        return record
    with classified("archive", inbox.archive):
        target = disposal_target(record, inbox)
    record = store.advance(record, BatchPhase.DISPOSING, archived_to=target)
    crash_point("dispose:intent", record.batch_id)
    return record


def dispose_input(store: StateStorage, record: BatchRecord, inbox: InboxConfig) -> BatchRecord:
    """Take a `disposing` batch (see `intend_disposal`) to `done`; returns the stored record.

    Raises:
        DiskWriteError: the archive refused (full, read-only): the caller retries later.
    """
    with classified("archive", inbox.archive):
        return _dispose_steps(store, record, inbox)


def _dispose_steps(store: StateStorage, record: BatchRecord, inbox: InboxConfig) -> BatchRecord:
    source = Path(record.source)
    target = record.archived_to
    if target is None:
        if disposal_action(record, inbox) == "delete":
            delete_input(source)
    elif Path(target) != source and not move_input(source, Path(target)):
        logger.error(
            "batch %s: %s exists and is not a copy of %s; the input is left where it is",
            record.batch_id,
            target,
            source,
            extra={"batch_id": record.batch_id, "inbox": inbox.name},
        )
        target = None
    crash_point("dispose:moved", record.batch_id)
    return store.advance(record, BatchPhase.DONE, archived_to=target)


def disposal_action(record: BatchRecord, inbox: InboxConfig) -> str:
    """`archive`, `delete` or `keep`: what happens to the input now."""
    source = Path(record.source)
    if record.keep_input or not (source.exists() or source.is_symlink()):
        return "keep"
    return inbox.on_complete


def disposal_target(record: BatchRecord, inbox: InboxConfig) -> str | None:
    """Where the input will be archived (None: deleted or kept)."""
    if disposal_action(record, inbox) != "archive":
        return None
    return str(archive_target(record, inbox))


def archive_target(record: BatchRecord, inbox: InboxConfig) -> Path:
    """A free name for the input in the archive (or `failed`) folder."""
    source = Path(record.source)
    failed = record.final_counts.get("failed", 0) > 0
    target_root = inbox.failed if failed and inbox.failed is not None else inbox.archive
    target_root.mkdir(parents=True, exist_ok=True)
    # The folder the input sits in, resolved; the input itself is never resolved (it may
    # be a link, even one that loops, dropped at the inbox root).
    where = source.parent.resolve()
    if target_root.resolve() in (where, *where.parents):
        return source  # a rerun from the archive: it is where it belongs already
    candidates = names.suffixed_names(record.batch_id, names.name_max(target_root))
    target = next(
        target_root / name
        for name in candidates
        if not os.path.lexists(target_root / name)
        and not os.path.lexists(partial_copy_path(target_root / name))
    )
    if record.loose_file:
        # Keep the file's name, so a rerun finds the path its results refer to.
        target = target / source.name
    return target
