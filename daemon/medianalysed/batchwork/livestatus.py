"""A batch's live progress while it runs and while it finalises, written to `status.json`.

Each write costs an fsync, so writes are spaced: at most one per `STATUS_WRITE_INTERVAL_S`
while running (and only after a change), one per `FINALISING_STATUS_INTERVAL_S` while
finalising, unless forced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from medianalysed.errors import DiskWriteError, OutboxError
from medianalysed.models import BatchStatus
from medianalysed.ports import StateStorage
from medianalysed.progress import BatchProgress, Stage, publish
from medianalysed.state import BatchRecord

logger = logging.getLogger(__name__)

STATUS_WRITE_INTERVAL_S = 0.5
FINALISING_STATUS_INTERVAL_S = 1.0  # each status.json costs an fsync: not every slice


def live_counts(
    record: BatchRecord, counts: Mapping[str, int], *, processing: int
) -> dict[str, int]:
    """The counts `status.json` shows: the batch's tallies plus the images at a worker."""
    return {
        "total": record.total,
        "pending": counts["pending"],
        "processing": processing,
        "done": counts["done"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
    }


def live_status(*, fresh: int, retrying: int, cancelled: bool) -> BatchStatus:
    """`retrying` when only images waiting for a retry are left, else `processing`."""
    if retrying and fresh == 0 and not cancelled:
        return BatchStatus.RETRYING
    return BatchStatus.PROCESSING


class StatusWriter:
    """Writes one batch's `status.json`, spaced in time; `log_extra` tags its warnings."""

    def __init__(
        self,
        store: StateStorage,
        log_extra: Mapping[str, Any],
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._log_extra = dict(log_extra)
        self._now = now
        self._last_write = 0.0

    def running(
        self,
        record: BatchRecord,
        counts: Callable[[], Mapping[str, int]],
        *,
        changed: bool,
        force: bool = False,
    ) -> bool:
        """Write the running progress if it `changed` and is due; returns whether it wrote."""
        now = self._now()
        if not force and (not changed or now - self._last_write < STATUS_WRITE_INTERVAL_S):
            return False
        self._put(record, BatchProgress.running(record, counts()))
        self._last_write = now
        return True

    def finalising(self, record: BatchRecord, stage: Stage, *, force: bool = False) -> None:
        """Write the finalising stage if it is due."""
        now = self._now()
        if not force and now - self._last_write < FINALISING_STATUS_INTERVAL_S:
            return
        self._put(record, BatchProgress.finalising(record, stage))
        self._last_write = now

    def _put(self, record: BatchRecord, progress: BatchProgress) -> None:
        try:
            publish(self._store, record, progress)
        except DiskWriteError:
            raise  # the disk's fault: the batch parks
        except OutboxError:
            logger.warning("cannot write status.json", exc_info=True, extra=self._log_extra)
