"""A batch's line of images towards the workers: which are due next, the retry heap, the offered
set and the window.

Knows nothing of actors: the batch actor asks it for the jobs to offer (`take`) and the counts
to send with them (`report`), tells it what came back (`answered`, `retry_at`, `take_back`), and
sends the messages itself.

Every image not terminal is in one place: ahead in the line (the cursor), waiting for a retry
(the heap) or offered and unanswered (`outstanding`). `counts["pending"]` counts the images
neither terminal nor offered.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from medianalysed.diskfaults import STORAGE_FAULTS
from medianalysed.jobqueue import Window
from medianalysed.messages import AnalyseImage
from medianalysed.models import ImageStatus
from medianalysed.ports import StateStorage
from medianalysed.state import BatchRecord, ImageRecord

logger = logging.getLogger(__name__)

# A line found empty while images are counted waiting is read again at most this often.
LINE_RESCAN_INTERVAL_S = 1.0
# Between two offers, the counts for the gauges are sent alone at most this often.
GAUGE_REFRESH_S = 1.0

MakeJob = Callable[[str, ImageRecord | None], AnalyseImage]
FailUnstarted = Callable[[str, Exception], None]


def empty_counts() -> dict[str, int]:
    """The counts of a batch with no image read yet."""
    return {"done": 0, "failed": 0, "skipped": 0, "pending": 0}


class JobLine:
    """The images of one batch on their way to the workers.

    `make_job` builds the next attempt at a path from its stored record; `fail_unstarted`
    records an image whose job could not even be built (INTERNAL; the line counts it failed);
    `paused` says whether the batch is parked (nothing offered, nothing found lost).
    """

    def __init__(
        self,
        store: StateStorage,
        batch_id: str,
        *,
        window: Window,
        make_job: MakeJob,
        fail_unstarted: FailUnstarted,
        paused: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        log_extra: dict[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._batch_id = batch_id
        self._window = window
        self._make_job = make_job
        self._fail_unstarted = fail_unstarted
        self._paused = paused
        self._clock = clock
        self._monotonic = monotonic
        self._log_extra = log_extra or {}
        self.counts = empty_counts()
        self.changed = False  # the counts moved since the caller last cleared it
        self._record: BatchRecord | None = None
        self._cursor: Iterator[str] = iter(())
        self._retry_heap: list[tuple[float, str]] = []
        # Offered to the workers and not answered yet (path → attempt).
        self._offered: dict[str, int] = {}
        self._cancelled = False
        self._last_line_rescan = float("-inf")
        self._last_reported = (-1, -1)  # (waiting, unfinished) as the last offer said
        self._last_offer_at = float("-inf")  # monotonic

    # -- views -------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether the batch was cancelled: nothing more is offered or retried."""
        return self._cancelled

    @property
    def outstanding(self) -> int:
        """Jobs offered and not answered yet (in the supervisor's queue or at a worker)."""
        return len(self._offered)

    @property
    def retrying(self) -> int:
        """Images waiting for their retry."""
        return len(self._retry_heap)

    def ready_count(self) -> int:
        """Images that could be offered now (fresh ones and retries that are due)."""
        if self._cancelled or self._paused():
            return 0
        now = self._clock()
        due = sum(1 for when, _ in self._retry_heap if when <= now)
        fresh = self.counts["pending"] - len(self._retry_heap)
        return max(0, fresh) + due

    # -- reading the line --------------------------------------------------------------

    def reread(self, record: BatchRecord) -> None:
        """Count the images from state and walk their line again from the start."""
        self._record = record
        counts = empty_counts()
        for path in self._store.iter_paths(record):
            if path in self._offered:
                continue  # (after a disk fault) still offered: its outcome will come
            image = self._store.get_image(self._batch_id, path)
            status = ImageStatus.PENDING if image is None else image.status
            key = str(status) if status.terminal else "pending"
            counts[key] += 1
        self.counts = counts
        self._cursor = self._store.iter_paths(record)
        self._retry_heap = []  # the cursor finds the images waiting for a retry again
        self._last_reported = (-1, -1)

    def cancel(self) -> None:
        """Offer nothing more and drop the retries (what is offered still gets answered)."""
        self._cancelled = True
        self._retry_heap.clear()

    # -- offering ----------------------------------------------------------------------

    def take(self, jobs: list[AnalyseImage]) -> None:
        """Append the jobs to offer now, as many as the window has room for.

        In place: a disk fault half-way leaves what was taken in `jobs` (and offered).
        """
        room = 0 if self._cancelled or self._paused() else self._window.room(len(self._offered))
        while len(jobs) < room:
            job = self._next_job()
            if job is None and self._line_lost():
                assert self._record is not None  # a line is only lost once it was read
                self.reread(self._record)
                job = self._next_job()
            if job is None:
                return
            self._offered[job.path] = job.attempt
            self.counts["pending"] -= 1
            self.changed = True
            jobs.append(job)

    def report(self, jobs: list[AnalyseImage], *, tick: bool) -> tuple[int, int] | None:
        """The (waiting, unfinished) counts to send with `jobs`, or None: send nothing.

        With no jobs, the counts go alone only on a `tick` after `GAUGE_REFRESH_S` without an
        offer, and only when they moved: the gauges follow without a message per image.
        """
        now = self._monotonic()
        quiet = tick and now - self._last_offer_at >= GAUGE_REFRESH_S
        if not jobs and not quiet:
            return None  # (most outcomes: nothing to offer, and the counts wait for a tick)
        counts = (self.ready_count(), self.counts["pending"] + len(self._offered))
        if not jobs and counts == self._last_reported:
            return None
        self._last_reported = counts
        self._last_offer_at = now
        return counts

    # -- answers -----------------------------------------------------------------------

    def answered(self, path: str) -> None:
        """`path`'s job is answered (or its answer is dropped): no longer offered."""
        self._offered.pop(path, None)

    def retry_at(self, path: str, when: float) -> None:
        """`path` waits for another attempt at `when` (counted pending again)."""
        self.counts["pending"] += 1
        heapq.heappush(self._retry_heap, (when, path))

    def take_back(self, jobs: tuple[AnalyseImage, ...]) -> None:
        """Jobs no worker took are back in line (not an attempt)."""
        now = self._clock()
        for job in jobs:
            if self._offered.pop(job.path, None) is None:
                continue  # not ours any more (the line was read again meanwhile)
            self.counts["pending"] += 1
            self.changed = True
            if not self._cancelled:
                heapq.heappush(self._retry_heap, (now, job.path))

    def undo(self, path: str, counts: dict[str, int]) -> None:
        """Forget a half-applied outcome of `path`: the counts as they were, not offered,
        not waiting for a retry."""
        self.counts = counts
        self._offered.pop(path, None)
        if any(entry[1] == path for entry in self._retry_heap):
            self._retry_heap = [entry for entry in self._retry_heap if entry[1] != path]
            heapq.heapify(self._retry_heap)

    # -- the next job ------------------------------------------------------------------

    def _line_lost(self) -> bool:
        """Whether the counts say images wait that neither the line nor the retries hold.

        It should never be true: every path leaves the line for a worker, a record or the
        retry heap. If a bug ever breaks that, the batch must still end (SPEC §1), so the line
        is read again from state, at most once every `LINE_RESCAN_INTERVAL_S`.
        """
        if self._cancelled or self._paused():
            return False
        waiting = self.counts["pending"] - len(self._retry_heap)
        now = self._monotonic()
        if waiting <= 0 or now - self._last_line_rescan < LINE_RESCAN_INTERVAL_S:
            return False
        self._last_line_rescan = now
        logger.warning(
            "batch %s: %d images counted waiting but none left in line; reading the line again",
            self._batch_id,
            waiting,
            extra=self._log_extra,
        )
        return True

    def _next_job(self) -> AnalyseImage | None:
        now = self._clock()
        while self._retry_heap and self._retry_heap[0][0] <= now:
            _, path = heapq.heappop(self._retry_heap)
            try:
                return self._make_job(path, self._store.get_image(self._batch_id, path))
            except STORAGE_FAULTS:
                raise
            except Exception as exc:
                self._fail(path, exc)
        for path in self._cursor:
            if path in self._offered:
                continue
            try:
                job = self._job_if_due(path, now)
            except STORAGE_FAULTS:
                raise
            except Exception as exc:
                self._fail(path, exc)
                continue
            if job is not None:
                return job
        return None

    def _job_if_due(self, path: str, now: float) -> AnalyseImage | None:
        image = self._store.get_image(self._batch_id, path)
        if image is not None and image.status.terminal:
            return None
        if image is not None and image.next_attempt_at and image.next_attempt_at > now:
            heapq.heappush(self._retry_heap, (image.next_attempt_at, path))
            return None
        return self._make_job(path, image)

    def _fail(self, path: str, exc: Exception) -> None:
        self._fail_unstarted(path, exc)
        self.counts["pending"] -= 1
        self.counts["failed"] += 1
        self.changed = True
