"""The start queue of batches (batchqueue.py): order, the limit, suspects running alone."""

from __future__ import annotations

import pytest

from medianalysed.batchqueue import StartQueue
from medianalysed.crashloop import enter_step, leave_step
from medianalysed.models import Priority
from medianalysed.state import StateStore
from tests.seeding import seed_batch


@pytest.fixture
def store(tmp_path):
    store = StateStore(tmp_path / "state")
    yield store
    store.close()


class _Starter:
    """Starts a batch by adding it to `active`; `empty` ones have nothing to run."""

    def __init__(self, empty=()):
        self.active: dict[str, None] = {}
        self.empty = set(empty)
        self.order: list[str] = []

    def __call__(self, batch_id: str) -> bool:
        self.order.append(batch_id)
        if batch_id in self.empty:
            return False
        self.active[batch_id] = None
        return True


def _queue(store, tmp_path, batches):
    queue = StartQueue(store)
    for batch_id, priority, created_at in batches:
        seed_batch(store, tmp_path, batch_id, [], priority=priority, created_at=created_at)
        queue.add(batch_id)
    return queue


def test_high_priority_starts_first_then_the_oldest_up_to_the_limit(store, tmp_path):
    queue = _queue(
        store,
        tmp_path,
        [("n2", Priority.NORMAL, "t2"), ("l", Priority.LOW, "t0"), ("n1", Priority.NORMAL, "t1")],
    )
    queue.add("gone")  # no record: ranked last
    queue.add("h")
    seed_batch(store, tmp_path, "h", [], priority=Priority.HIGH, created_at="t9")
    start = _Starter()
    queue.start_due(start, start.active, (), limit=3)
    assert start.order == ["h", "n1", "n2"]
    assert queue.ids() == ["l", "gone"]
    queue.start_due(start, start.active, (), limit=3)
    assert start.order == ["h", "n1", "n2"]  # the limit: nothing more
    del start.active["h"]
    queue.start_due(start, start.active, (), limit=3)
    assert (start.order[-1], len(queue)) == ("l", 1)


def test_a_batch_with_nothing_to_run_lets_the_next_one_start(store, tmp_path):
    queue = _queue(store, tmp_path, [("a", Priority.NORMAL, "t1"), ("b", Priority.NORMAL, "t2")])
    start = _Starter(empty={"a"})
    queue.start_due(start, start.active, (), limit=1)
    assert (start.order, list(start.active)) == (["a", "b"], ["b"])


def test_a_suspect_runs_alone_until_through_its_step(store, tmp_path):
    queue = _queue(store, tmp_path, [("a", Priority.HIGH, "t1"), ("s", Priority.LOW, "t2")])
    queue.suspect(["s"])
    start = _Starter(empty=())
    start.active["running"] = None
    queue.start_due(start, start.active, (), limit=8)
    assert start.order == []  # a suspect waits for the running batches, nothing new starts
    del start.active["running"]
    enter_step(store, "s", "enumerating")
    queue.start_due(start, start.active, (), limit=8)
    assert start.order == ["s"]  # alone, before the higher-priority batch
    queue.start_due(start, start.active, (), limit=8)
    assert start.order == ["s"]  # still in its risky step
    leave_step(store, "s")
    queue.start_due(start, start.active, (), limit=8)
    assert (start.order, queue.suspects) == (["s", "a"], [])


def test_a_suspect_waiting_for_its_restart_stays_a_suspect(store, tmp_path):
    queue = _queue(store, tmp_path, [("a", Priority.NORMAL, "t1")])
    queue.suspect(["s", "gone"])
    start = _Starter()
    queue.start_due(start, start.active, {"s"}, limit=8)
    assert (start.order, queue.suspects) == (["a"], ["s"])
