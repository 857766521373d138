"""The supervisor's worker pool: the image actors and the one queue of jobs they take.

Runs in the supervisor's thread (it is the supervisor's, not an actor of its own). Batches
offer windows of jobs (`OfferJobs`); `dispatch` tells each free image actor its next job
(`AnalyseImage`), by priority and round-robin (`jobqueue.JobQueue`), and the actor answers
`WorkerIdle` when it is through. Which worker holds which job is recorded here only: a worker
that crashes gives its jobs back to their batches as INTERNAL outcomes (each an attempt).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from medianalysed.actors.image import SLOTS_PER_WORKER, ImageActor
from medianalysed.errors import ErrorCode
from medianalysed.jobqueue import JobQueue
from medianalysed.messages import (
    AnalyseImage,
    ImageAnalysed,
    OfferJobs,
    WorkerCrashed,
    WorkerIdle,
)
from medianalysed.models import Priority
from medianalysed.outcomes import error_json

logger = logging.getLogger(__name__)

MAX_WORKER_RESTARTS_PER_MINUTE = 20

Worker = pykka.ActorRef[ImageActor]


class WorkerPool:
    """`workers` image actors, the batches' offered jobs, and who holds which."""

    def __init__(self, start_worker: Callable[[], Worker], clock: Callable[[], float]) -> None:
        self._start_worker = start_worker
        self._clock = clock
        self._queue: JobQueue[Worker, AnalyseImage] = JobQueue(SLOTS_PER_WORKER)
        self._restarts: deque[float] = deque()

    def start(self, workers: int) -> None:
        for _ in range(workers):
            self._queue.add_worker(self._start_worker())

    def stop(self) -> None:
        for worker in self._queue.workers:
            worker.stop(block=False)

    # -- batches -----------------------------------------------------------------------

    def open(self, batch_id: str, priority: Priority) -> None:
        self._queue.open(batch_id, priority.rank)

    def close(self, batch_id: str) -> None:
        """The batch stopped: its waiting jobs go (a restarted batch reads its line again)."""
        dropped = self._queue.close(batch_id)
        if dropped:
            logger.debug("batch %s stopped with %d jobs offered", batch_id, len(dropped))

    def offer(self, message: OfferJobs) -> None:
        self._queue.offer(
            message.batch_id,
            message.jobs,
            waiting=message.waiting,
            unfinished=message.unfinished,
        )

    def withdraw(self, batch_id: str) -> tuple[AnalyseImage, ...]:
        return tuple(self._queue.withdraw(batch_id))

    def held_by(self, batch_id: str) -> int:
        return self._queue.held_by(batch_id)

    def queued(self, batch_id: str) -> int:
        return self._queue.queued(batch_id)

    # -- workers -----------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand every free worker slot its next job."""
        while (assignment := self._queue.assign()) is not None:
            try:
                assignment.worker.tell(assignment.job)
            except pykka.ActorDeadError:
                # Its crash report is on the way: the job goes back with it, as an attempt.
                logger.debug("image actor gone before %s reached it", assignment.job.path)

    def idle(self, message: WorkerIdle) -> None:
        self._queue.done(message.worker, message.job)

    def crashed(self, message: WorkerCrashed) -> bool:
        """Replace a crashed worker, its jobs answered as INTERNAL; False when too many crash."""
        logger.error("image actor crashed: %s", message.reason)
        for _, job in self._queue.remove_worker(message.worker):
            error = error_json(ErrorCode.INTERNAL, f"image actor crashed: {message.reason}")
            _tell_quietly(
                job.reply_to,
                ImageAnalysed(
                    path=job.path, attempt=job.attempt, result=None, error=error, duration_ms=0.0
                ),
            )
        now = self._clock()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > 60:
            self._restarts.popleft()
        if len(self._restarts) > MAX_WORKER_RESTARTS_PER_MINUTE:
            return False
        self._queue.add_worker(self._start_worker())
        return True

    # -- views -------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        return len(self._queue.workers)

    @property
    def workers_busy(self) -> int:
        return self._queue.workers_busy

    def gauges(self) -> dict[str, int]:
        return {
            "workers": self.workers,
            "workers_busy": self.workers_busy,
            "queue_depth": self._queue.images_waiting,
            "images_pending": self._queue.images_unfinished,
        }


def _tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    """Tell an actor that may have died meanwhile (then there is no one left to tell)."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        logger.debug("%s is gone; %s dropped", ref, type(message).__name__)
