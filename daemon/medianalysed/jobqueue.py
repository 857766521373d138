"""The worker pool's job queue: which job goes to which worker next, and who holds what.

Pure bookkeeping, no actors and no clock: the supervisor drives it from its own thread.

- Batches offer a bounded window of jobs (`offer`, see `window`); each batch's jobs wait in
  its own line, in the order offered.
- A free worker slot takes the next job (`assign`): from the highest-priority batch with jobs
  waiting, round-robin between batches of equal priority (the one served longest ago first),
  so no batch starves behind another of its priority.
- `held` is the one record of in-flight work: worker → the jobs it holds (at most
  `slots_per_worker`). A job leaves it when its worker is done with it (`done`) or crashes
  (`remove_worker`).
- `withdraw` takes a batch's waiting jobs back (cancelled, parked); jobs already handed out
  stay with their workers.

Every job offered is, at any time, in exactly one place: waiting in its batch's line, held by
a worker, or given back to the caller (by `done`, `withdraw`, `close` or `remove_worker`).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

W = TypeVar("W", bound=Hashable)
J = TypeVar("J", bound=Hashable)

# A batch keeps up to WINDOW_SLOTS x the pool's slots offered, and offers more once no more
# than REFILL_SLOTS x slots are left: one offer per `slots` images, and a worker never waits
# for a batch to be asked.
WINDOW_SLOTS = 3
REFILL_SLOTS = 2


@dataclass(frozen=True, slots=True)
class Window:
    """How many jobs a batch keeps offered to a pool of `slots` worker slots."""

    most: int  # never more offered and unanswered than this
    refill_at: int  # offer more once no more than this many are left

    def room(self, outstanding: int) -> int:
        """How many jobs to offer now, with `outstanding` offered and unanswered."""
        return self.most - outstanding if outstanding <= self.refill_at else 0


def window(slots: int) -> Window:
    """The offer window for a pool of `slots` worker slots (workers x slots per worker)."""
    slots = max(1, slots)
    return Window(most=WINDOW_SLOTS * slots, refill_at=REFILL_SLOTS * slots)


class Assignment(NamedTuple, Generic[W, J]):
    """A job handed to a worker: tell `worker` to run `job` of `batch_id`."""

    worker: W
    batch_id: str
    job: J


@dataclass(slots=True)
class _Line(Generic[J]):
    """One batch's waiting jobs and what it last said about the rest of its work."""

    rank: int  # smaller first (`Priority.rank`)
    opened: int  # tie-break between batches never served
    jobs: deque[J] = field(default_factory=deque)
    served: int = 0  # the hand-out number of its last job (0 = never served)
    waiting: int = 0  # images ready at the batch but not offered (beyond its window)
    unfinished: int = 0  # its images not terminal yet (waiting, retrying, at a worker)


class JobQueue(Generic[W, J]):
    """Batches' waiting jobs, the workers' free slots, and the one table of held jobs."""

    def __init__(self, slots_per_worker: int = 1) -> None:
        if slots_per_worker < 1:
            raise ValueError(f"slots_per_worker must be >= 1, got {slots_per_worker}")
        self._slots = slots_per_worker
        self._lines: dict[str, _Line[J]] = {}
        self._held: dict[W, list[tuple[str, J]]] = {}  # in the order workers were added
        self._held_by_batch: Counter[str] = Counter()
        self._hand_outs = itertools.count(1)
        self._openings = itertools.count()

    # -- workers -----------------------------------------------------------------------

    def add_worker(self, worker: W) -> None:
        """A new worker, with all its slots free."""
        self._held.setdefault(worker, [])

    def remove_worker(self, worker: W) -> list[tuple[str, J]]:
        """Forget a worker (it crashed); the jobs it held, as (batch_id, job)."""
        jobs = self._held.pop(worker, [])
        for batch_id, _ in jobs:
            self._release(batch_id)
        return jobs

    @property
    def workers(self) -> list[W]:
        """The workers, in the order they were added."""
        return list(self._held)

    # -- batches -----------------------------------------------------------------------

    def open(self, batch_id: str, rank: int) -> None:
        """A batch may offer jobs from now on (`rank`: smaller is served first)."""
        if batch_id not in self._lines:
            self._lines[batch_id] = _Line(rank=rank, opened=next(self._openings))

    def close(self, batch_id: str) -> list[J]:
        """The batch stopped: forget it; its waiting jobs, dropped (held ones run out)."""
        line = self._lines.pop(batch_id, None)
        return [] if line is None else list(line.jobs)

    def is_open(self, batch_id: str) -> bool:
        return batch_id in self._lines

    def offer(self, batch_id: str, jobs: Iterable[J], *, waiting: int, unfinished: int) -> bool:
        """Queue `jobs` at the end of the batch's line; False (nothing taken) when not open.

        `waiting` and `unfinished` are the batch's own counts, kept for the gauges.
        """
        line = self._lines.get(batch_id)
        if line is None:
            return False
        line.jobs.extend(jobs)
        line.waiting = waiting
        line.unfinished = unfinished
        return True

    def withdraw(self, batch_id: str) -> list[J]:
        """Take back the batch's waiting jobs (the ones handed out stay with their workers)."""
        line = self._lines.get(batch_id)
        if line is None:
            return []
        jobs = list(line.jobs)
        line.jobs.clear()
        line.waiting = 0
        return jobs

    # -- handing out -------------------------------------------------------------------

    def assign(self) -> Assignment[W, J] | None:
        """Hand the next job to the least-loaded free worker; None when either is lacking."""
        worker = self._free_worker()
        if worker is None:
            return None
        batch_id = self._next_batch()
        if batch_id is None:
            return None
        line = self._lines[batch_id]
        job = line.jobs.popleft()
        line.served = next(self._hand_outs)
        self._held[worker].append((batch_id, job))
        self._held_by_batch[batch_id] += 1
        return Assignment(worker, batch_id, job)

    def done(self, worker: W, job: J) -> str | None:
        """The worker is through with `job`: its slot is free. The job's batch, if it held it."""
        held = self._held.get(worker, [])
        for index, (batch_id, candidate) in enumerate(held):
            if candidate == job:
                del held[index]
                self._release(batch_id)
                return batch_id
        return None

    def _release(self, batch_id: str) -> None:
        self._held_by_batch[batch_id] -= 1
        if not self._held_by_batch[batch_id]:
            del self._held_by_batch[batch_id]

    def _free_worker(self) -> W | None:
        free = [worker for worker, jobs in self._held.items() if len(jobs) < self._slots]
        return min(free, key=lambda worker: len(self._held[worker]), default=None)

    def _next_batch(self) -> str | None:
        candidates = [
            (line.rank, line.served, line.opened, batch_id)
            for batch_id, line in self._lines.items()
            if line.jobs
        ]
        return min(candidates)[3] if candidates else None

    # -- views -------------------------------------------------------------------------

    def held(self, worker: W) -> list[tuple[str, J]]:
        """The jobs a worker holds, as (batch_id, job), oldest first."""
        return list(self._held.get(worker, []))

    def held_by(self, batch_id: str) -> int:
        """How many of the batch's jobs the workers hold now."""
        return self._held_by_batch.get(batch_id, 0)

    def queued(self, batch_id: str) -> int:
        """How many of the batch's jobs wait in its line."""
        line = self._lines.get(batch_id)
        return 0 if line is None else len(line.jobs)

    @property
    def workers_busy(self) -> int:
        """Workers holding at least one job (never more than the workers)."""
        return sum(1 for jobs in self._held.values() if jobs)

    @property
    def jobs_held(self) -> int:
        return sum(len(jobs) for jobs in self._held.values())

    @property
    def free_slots(self) -> int:
        return sum(self._slots - len(jobs) for jobs in self._held.values())

    @property
    def images_waiting(self) -> int:
        """Images ready and waiting for a worker: queued here, or not offered yet."""
        return sum(len(line.jobs) + line.waiting for line in self._lines.values())

    @property
    def images_unfinished(self) -> int:
        """Images of the open batches not terminal yet, as each batch last said."""
        return sum(line.unfinished for line in self._lines.values())
