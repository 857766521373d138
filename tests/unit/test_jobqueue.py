"""The job queue: fairness, priorities, conservation of jobs, the workers' bound."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from medianalysed.jobqueue import JobQueue, window


def _drain(queue: JobQueue[str, int]) -> list[str]:
    """Assign until nothing more can be; the batch of each hand-out, in order."""
    served = []
    while (assignment := queue.assign()) is not None:
        served.append(assignment.batch_id)
    return served


@given(
    batches=st.integers(min_value=1, max_value=6),
    workers=st.integers(min_value=1, max_value=4),
    slots=st.integers(min_value=1, max_value=3),
    rounds=st.integers(min_value=1, max_value=40),
)
def test_equal_priority_batches_take_turns(
    batches: int, workers: int, slots: int, rounds: int
) -> None:
    queue: JobQueue[str, int] = JobQueue(slots_per_worker=slots)
    for index in range(workers):
        queue.add_worker(f"w{index}")
    jobs = itertools.count()
    names = [f"b{index}" for index in range(batches)]
    for name in names:
        queue.open(name, rank=1)
        queue.offer(name, [next(jobs) for _ in range(200)], waiting=0, unfinished=200)
    served = _drain(queue)
    for _ in range(rounds):  # one worker at a time frees a slot and takes the next job
        worker = queue.workers[0]
        _, job = queue.held(worker)[0]
        queue.done(worker, job)
        served.extend(_drain(queue))
    # Round-robin: every run of `batches` consecutive hand-outs serves each batch once.
    for start in range(len(served) - batches + 1):
        assert sorted(served[start : start + batches]) == sorted(names)


def test_higher_priority_first_then_the_rest() -> None:
    queue: JobQueue[str, int] = JobQueue(slots_per_worker=1)
    queue.add_worker("w")
    queue.open("low", rank=2)
    queue.open("high", rank=0)
    queue.offer("low", [1, 2], waiting=0, unfinished=2)
    queue.offer("high", [10, 11], waiting=0, unfinished=2)
    order = []
    while (assignment := queue.assign()) is not None:
        order.append(assignment.job)
        queue.done("w", assignment.job)
    assert order == [10, 11, 1, 2]


def test_jobs_spread_over_idle_workers_before_doubling_up() -> None:
    queue: JobQueue[str, int] = JobQueue(slots_per_worker=2)
    for worker in ("w0", "w1", "w2"):
        queue.add_worker(worker)
    queue.open("b", rank=1)
    queue.offer("b", range(4), waiting=0, unfinished=4)
    taken = [queue.assign() for _ in range(3)]
    assert sorted(a.worker for a in taken if a is not None) == ["w0", "w1", "w2"]
    assert queue.workers_busy == 3


def test_a_crashed_worker_gives_back_what_it_held() -> None:
    queue: JobQueue[str, int] = JobQueue(slots_per_worker=2)
    queue.add_worker("w")
    queue.open("b", rank=1)
    queue.offer("b", [1, 2, 3], waiting=0, unfinished=3)
    _drain(queue)
    assert queue.remove_worker("w") == [("b", 1), ("b", 2)]
    assert (queue.held_by("b"), queue.queued("b"), queue.workers_busy) == (0, 1, 0)
    assert queue.done("w", 1) is None  # a late word from the dead worker changes nothing


def test_an_offer_to_a_closed_batch_is_refused() -> None:
    queue: JobQueue[str, int] = JobQueue()
    assert not queue.offer("gone", [1], waiting=0, unfinished=1)
    assert queue.images_waiting == 0


@pytest.mark.parametrize(("slots", "most", "refill_at"), [(0, 3, 2), (1, 3, 2), (4, 12, 8)])
def test_the_window_offers_in_slices_of_the_pool(slots: int, most: int, refill_at: int) -> None:
    offered = window(slots)
    assert (offered.most, offered.refill_at) == (most, refill_at)
    assert offered.room(0) == most
    assert offered.room(refill_at) == most - refill_at
    assert offered.room(refill_at + 1) == 0


class QueueMachine(RuleBasedStateMachine):
    """Random offers, hand-outs, completions, withdrawals, crashes and closes."""

    workers = Bundle("workers")

    def __init__(self) -> None:
        super().__init__()
        self.queue: JobQueue[str, int] = JobQueue(slots_per_worker=2)
        self.ids = itertools.count()
        self.ranks: dict[str, int] = {}
        self.waiting: dict[str, deque[int]] = {}
        self.held: dict[str, set[tuple[str, int]]] = {}
        self.offered: set[int] = set()
        self.given_back: set[int] = set()
        # For each batch with jobs waiting: the batches of its rank served since it waited.
        self.served_while_waiting: dict[str, set[str]] = {}

    @initialize(target=workers, count=st.integers(min_value=1, max_value=3))
    def first_workers(self, count: int) -> object:
        return multiple(*(self._new_worker() for _ in range(count)))

    @rule(target=workers)
    def add_worker(self) -> str:
        return self._new_worker()

    def _new_worker(self) -> str:
        worker = f"w{next(self.ids)}"
        self.queue.add_worker(worker)
        self.held[worker] = set()
        return worker

    @rule(rank=st.integers(min_value=0, max_value=2))
    def open_batch(self, rank: int) -> None:
        batch_id = f"b{next(self.ids)}"
        self.queue.open(batch_id, rank)
        self.ranks[batch_id] = rank
        self.waiting[batch_id] = deque()

    @precondition(lambda self: self.waiting)
    @rule(data=st.data(), count=st.integers(min_value=0, max_value=5))
    def offer(self, data: st.DataObject, count: int) -> None:
        batch_id = data.draw(st.sampled_from(sorted(self.waiting)))
        jobs = [next(self.ids) for _ in range(count)]
        assert self.queue.offer(batch_id, jobs, waiting=1, unfinished=count)
        if jobs and not self.waiting[batch_id]:
            self.served_while_waiting[batch_id] = set()
        self.waiting[batch_id].extend(jobs)
        self.offered.update(jobs)

    @rule()
    def assign_all(self) -> None:
        while True:
            loads = {w: len(jobs) for w, jobs in self.held.items() if len(jobs) < 2}
            assignment = self.queue.assign()
            if assignment is None:
                break
            worker, batch_id, job = assignment
            assert loads[worker] == min(loads.values())  # the least-loaded free worker
            rank = self.ranks[batch_id]
            assert all(self.ranks[other] >= rank for other, line in self.waiting.items() if line)
            for other, seen in self.served_while_waiting.items():
                if other != batch_id and self.ranks[other] == rank:
                    assert batch_id not in seen, f"{batch_id} served twice while {other} waited"
                    seen.add(batch_id)
            assert self.waiting[batch_id].popleft() == job
            self._stop_waiting(batch_id, only_if_empty=False)
            if self.waiting[batch_id]:
                self.served_while_waiting[batch_id] = set()
            self.held[worker].add((batch_id, job))
        no_free_slot = all(len(jobs) >= 2 for jobs in self.held.values())
        assert no_free_slot or not any(self.waiting.values())

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def finish_one(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(w for w, jobs in self.held.items() if jobs)))
        batch_id, job = data.draw(st.sampled_from(sorted(self.held[worker])))
        assert self.queue.done(worker, job) == batch_id
        self.held[worker].discard((batch_id, job))
        self._give_back([job])

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        batch_id = data.draw(st.sampled_from(sorted(self.waiting)))
        jobs = self.queue.withdraw(batch_id)
        assert jobs == list(self.waiting[batch_id])
        self.waiting[batch_id].clear()
        self._stop_waiting(batch_id)
        self._give_back(jobs)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        batch_id = data.draw(st.sampled_from(sorted(self.waiting)))
        jobs = self.queue.close(batch_id)
        assert jobs == list(self.waiting.pop(batch_id))
        self._stop_waiting(batch_id)
        self._give_back(jobs)
        assert not self.queue.offer(batch_id, [next(self.ids)], waiting=0, unfinished=0)

    @rule(worker=consumes(workers))
    def crash(self, worker: str) -> None:
        jobs = self.queue.remove_worker(worker)
        assert set(jobs) == self.held.pop(worker)
        self._give_back([job for _, job in jobs])

    def _stop_waiting(self, batch_id: str, *, only_if_empty: bool = True) -> None:
        if not only_if_empty or not self.waiting.get(batch_id):
            self.served_while_waiting.pop(batch_id, None)

    def _give_back(self, jobs: list[int]) -> None:
        for job in jobs:
            assert job not in self.given_back, f"job {job} given back twice"
            self.given_back.add(job)

    @invariant()
    def every_job_is_in_exactly_one_place(self) -> None:
        waiting = [job for line in self.waiting.values() for job in line]
        held = [job for jobs in self.held.values() for _, job in jobs]
        places = waiting + held + sorted(self.given_back)
        assert len(places) == len(set(places))
        assert set(places) == self.offered

    @invariant()
    def counts_agree(self) -> None:
        busy = sum(1 for jobs in self.held.values() if jobs)
        assert self.queue.workers_busy == busy <= len(self.queue.workers)
        assert all(len(jobs) <= 2 for jobs in self.held.values())
        assert self.queue.jobs_held == sum(len(jobs) for jobs in self.held.values())
        for batch_id, line in self.waiting.items():
            assert self.queue.queued(batch_id) == len(line)
            assert self.queue.held_by(batch_id) == sum(
                1 for jobs in self.held.values() for owner, _ in jobs if owner == batch_id
            )


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
