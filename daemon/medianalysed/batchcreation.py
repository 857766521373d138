"""New batches from inbox folders: whether a folder is claimed already, and the claim itself,
with a backoff while the state store refuses the write (its fault is on the board, /healthz).

No actors: the supervisor asks, then queues what was created.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medianalysed.batchwork import intake
from medianalysed.config import InboxConfig
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError
from medianalysed.ports import StateStorage
from medianalysed.state import BatchRecord


class BatchCreation:
    """Claims folders as batches; `who` names the refusals on the fault board."""

    def __init__(
        self,
        store: StateStorage,
        faults: FaultBoard,
        *,
        who: str,
        retry_delay: Callable[[int], float],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._faults = faults
        self._who = who
        self._retry_delay = retry_delay
        self._clock = clock
        self._retry_at = 0.0  # while state refuses new batches: when to try again
        self._failures = 0  # and how many tries in a row failed

    def refusing(self, now: float) -> bool:
        """Whether the last refusal's backoff has not passed yet."""
        return now < self._retry_at

    def claimed(self, inbox: InboxConfig, path: Path, known: Callable[[str], bool]) -> bool:
        """Whether `path` is a batch already: its claim names a `known` batch, or the folder
        the claim was made on (an unreadable folder counts as claimed)."""
        claim = self._store.claim_for(intake.claim_key(inbox.name, path.name))
        if claim is None:
            return False
        batch_id, identity = claim
        if known(batch_id):
            return True
        try:
            return identity == intake.identity(path)
        except OSError:
            return True

    def create(self, inbox: InboxConfig, path: Path) -> BatchRecord | None:
        """Claim `path` as a new batch; None when the folder is gone.

        Raises:
            DiskWriteError: state refused the write (noted: `refusing` until the backoff).
        """
        try:
            identity = intake.identity(path)
        except OSError:
            return None
        record = intake.new_record(self._store, inbox, path)
        try:
            self._store.create_batch(record, record.claim_key, identity)
        except DiskWriteError as failure:
            delay = self._retry_delay(self._failures)
            self._failures += 1
            self._retry_at = self._clock() + delay
            self._faults.failed(self._who, failure, retry_in=delay)
            raise
        self._failures = 0
        self._faults.recovered(self._who)
        return record
