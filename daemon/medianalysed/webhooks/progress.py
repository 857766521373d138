"""`batch.progress` webhooks (SPEC §8): at most one every `[webhook] progress_seconds` a batch.

Fed by every published progress (`progress.add_observer`) on the publishing thread: it only
decides and enqueues (one durable write), never waits on a receiver. Between two sends the
progress values are coalesced: only the state at the next send goes out. The terminal event
is not this module's: `batch_finished` queues it, never rate-limited, never dropped.

The `sequence` of a batch's progress is the number of its images finished (done, failed,
skipped): it only grows within a run, it is the same after a restart for the same state,
and so the delivery id, made from (batch, sequence), is stable. A run of `retry` is a new
batch key (`<id>/run-N`), as for terminal events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus
from medianalysed.progress import BatchProgress
from medianalysed.state import BatchRecord
from medianalysed.webhooks.queue import batch_key, event_for_status

PROGRESS_EVENT: Final = "batch.progress"
TERMINAL_STATUSES: Final = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.PARTIAL, BatchStatus.FAILED, BatchStatus.CANCELLED}
)


def event_name(progress: BatchProgress) -> str:
    """`batch.progress`, or the terminal event (`batch.partial`...) once the batch is done."""
    if progress.phase == BatchPhase.DONE and progress.status in TERMINAL_STATUSES:
        return event_for_status(progress.status)
    return PROGRESS_EVENT


class Enqueue(Protocol):
    def __call__(
        self,
        *,
        batch_id: str,
        event: str,
        payload: dict[str, object],
        callback_url: str = "",
        sequence: int | None = None,
    ) -> list[str]: ...


class ProgressWebhooks:
    """Rate-limits and enqueues progress events; `observe` is the progress observer."""

    def __init__(
        self,
        enqueue: Enqueue,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._enqueue = enqueue
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent: dict[str, tuple[float, int]] = {}  # key -> (when, sequence)

    def observe(self, record: BatchRecord, progress: BatchProgress) -> None:
        """Enqueue a progress event when one is due; forget a batch once it is terminal."""
        key = batch_key(record.batch_id, record.runs)
        if event_name(progress) != PROGRESS_EVENT:
            with self._lock:
                self._last_sent.pop(key, None)
            return
        if self._interval_s <= 0:
            return
        sequence = progress.finished
        if not self._due(key, sequence):
            return
        payload: dict[str, object] = {**progress.document(), "sequence": sequence}
        self._enqueue(
            batch_id=key,
            event=PROGRESS_EVENT,
            payload=payload,
            callback_url=record.callback_url,
            sequence=sequence,
        )

    def _due(self, key: str, sequence: int) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and (now - last[0] < self._interval_s or sequence <= last[1]):
                return False
            self._last_sent[key] = (now, sequence)
            return True
