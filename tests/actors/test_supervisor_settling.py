"""Settling off the supervisor's thread, and batches ready together starting together."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medianalysed.actors import supervisor as supervisor_module
from medianalysed.messages import (
    AnalyseImage,
    InboxesChanged,
    PathSeen,
    Snapshot,
    SubmitBatch,
    Tick,
)
from medianalysed.readiness import TreeSnapshot, snapshot_tree
from medianalysed.settling import SnapshotWalker, TreeWalked, next_walk_delay
from medianalysed.state import BatchRecord, StateStore
from tests.actors.test_supervisor_actor import Harness, harness  # noqa: F401 - the fixture
from tests.e2e.harness import wait_for
from tests.recording import expect

pytestmark = pytest.mark.timeout(60)


class GatedSnapshots:
    """`snapshot_tree`, but walks of the names in `gated` wait for `release`; counts walks."""

    def __init__(self, *gated: str) -> None:
        self.gated = set(gated)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.on_walk: Any = None

    def __call__(self, root: Path, marker: str) -> TreeSnapshot:
        with self.lock:
            self.calls[root.name] += 1
            self.running[root.name] += 1
            self.most_at_once[root.name] = max(
                self.most_at_once[root.name], self.running[root.name]
            )
        try:
            if self.on_walk is not None:
                self.on_walk(root)
            if root.name in self.gated:
                assert self.release.wait(30)
            return snapshot_tree(root, marker)
        finally:
            with self.lock:
                self.running[root.name] -= 1


def test_a_long_walk_neither_blocks_the_supervisor_nor_other_folders(harness) -> None:  # noqa: F811
    walks = GatedSnapshots("huge")
    h: Harness = harness(workers=1, snapshot=walks)
    huge = h.folder("huge", 1)
    small = h.folder("small", 1)
    h.supervisor.tell(PathSeen("default", str(huge)))
    h.supervisor.tell(Tick())
    wait_for(lambda: walks.running["huge"] == 1, what="the huge walk running")

    h.supervisor.tell(PathSeen("default", str(small)))
    for _ in range(20):
        h.supervisor.tell(Tick())
        snapshot = h.supervisor.ask(Snapshot(), timeout=5)  # answers while "huge" is walked

    assert expect(h.jobs, AnalyseImage).batch_id == "small"
    assert snapshot["candidates"] == {"default/huge": str(huge)}
    assert walks.most_at_once["huge"] == 1
    assert walks.calls["huge"] == 1
    walks.release.set()
    wait_for(
        lambda: "huge" in h.supervisor.ask(Snapshot(), timeout=5)["active"],
        what="the huge folder started once its walk ended",
    )


def test_a_walk_that_took_long_is_not_repeated_sooner_than_it_took(harness) -> None:  # noqa: F811
    now = [1000.0]
    walks = GatedSnapshots()

    def slow_walk(_root: Path) -> None:
        now[0] += 50.0  # this walk "takes" 50 s on the supervisor's clock

    walks.on_walk = slow_walk
    h: Harness = harness(workers=1, settle=1000, snapshot=walks, clock=lambda: now[0])
    folder = h.folder("big", 1)
    h.supervisor.tell(PathSeen("default", str(folder)))
    h.supervisor.tell(Tick())
    wait_for(lambda: walks.calls["big"] == 1, what="the first walk")
    walks.on_walk = None
    h.supervisor.ask(Snapshot(), timeout=5)  # the result has been handled

    now[0] += 30.0
    for _ in range(5):
        h.supervisor.tell(Tick())
    h.supervisor.ask(Snapshot(), timeout=5)
    assert walks.calls["big"] == 1

    now[0] += 21.0
    h.supervisor.tell(Tick())
    wait_for(lambda: walks.calls["big"] == 2, what="the second walk, 51 s later")


def test_ten_folders_ready_together_all_start_in_the_same_tick(harness) -> None:  # noqa: F811
    h: Harness = harness(workers=1)  # one worker: no batch can finish meanwhile
    names = [f"batch-{index}" for index in range(10)]
    for name in names:
        h.supervisor.tell(PathSeen("default", str(h.folder(name, 20))))
    h.supervisor.tell(Tick())

    wait_for(
        lambda: sorted(h.supervisor.ask(Snapshot(), timeout=5)["active"]) == names,
        what="all ten batches active",
    )
    assert h.supervisor.ask(Snapshot(), timeout=5)["queued"] == []


def test_the_walker_reports_vanished_and_unreadable_entries(tmp_path: Path) -> None:
    results: list[TreeWalked] = []
    done = threading.Semaphore(0)

    def deliver(result: TreeWalked) -> None:
        results.append(result)
        done.release()

    def unreadable(_root: Path, _marker: str) -> TreeSnapshot:
        raise PermissionError(13, "Permission denied")

    walker = SnapshotWalker(deliver, threads=1)
    failing = SnapshotWalker(deliver, threads=1, snapshot=unreadable)
    try:
        walker.submit("gone", 1, tmp_path / "missing", ".ready")
        assert done.acquire(timeout=10)
        failing.submit("locked", 2, tmp_path, ".ready")
        assert done.acquire(timeout=10)
    finally:
        walker.stop()
        failing.stop()
    assert [(r.key, r.token, r.missing, r.error) for r in results] == [
        ("gone", 1, True, None),
        ("locked", 2, False, "Permission denied"),
    ]


@pytest.mark.parametrize(
    ("walk_s", "interval_s", "delay_s"), [(0.01, 1.0, 1.0), (1.0, 1.0, 1.0), (30.0, 1.0, 30.0)]
)
def test_next_walk_delay_is_the_interval_or_the_walk_time(
    walk_s: float, interval_s: float, delay_s: float
) -> None:
    assert next_walk_delay(walk_s, interval_s) == delay_s


def test_a_folder_forgotten_and_seen_again_mid_walk_is_not_walked_twice_at_once(
    harness,  # noqa: F811
) -> None:
    walks = GatedSnapshots("slow")
    h: Harness = harness(workers=1, snapshot=walks)
    folder = h.folder("slow", 1)
    h.supervisor.tell(PathSeen("default", str(folder)))
    h.supervisor.tell(Tick())
    wait_for(lambda: walks.running["slow"] == 1, what="the walk running")

    h.supervisor.tell(InboxesChanged(()))  # the inbox goes away: its candidate is forgotten
    h.supervisor.tell(InboxesChanged((h.inbox,)))
    h.supervisor.tell(PathSeen("default", str(folder)))
    for _ in range(10):
        h.supervisor.tell(Tick())
    h.supervisor.ask(Snapshot(), timeout=5)

    assert walks.most_at_once["slow"] == 1
    walks.release.set()

    def started() -> bool:
        h.supervisor.tell(Tick())
        return "slow" in h.supervisor.ask(Snapshot(), timeout=5)["active"]

    wait_for(started, what="the folder walked again, then started")
    assert walks.most_at_once["slow"] == 1


def test_beyond_the_active_bound_high_priority_waits_first_and_ticks_do_not_reread_state(
    harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor_module, "MAX_ACTIVE_BATCHES", 1)
    h: Harness = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("first", 1))))
    running = expect(h.jobs, AnalyseImage)
    for name, priority in (("normal-1", None), ("urgent", "high"), ("normal-2", None)):
        h.supervisor.tell(SubmitBatch("default", str(h.folder(name, 1, priority))))
    assert h.supervisor.ask(Snapshot(), timeout=5)["queued"] == ["normal-1", "urgent", "normal-2"]

    reads: list[str] = []
    real_get_batch = StateStore.get_batch

    def counted(self: StateStore, batch_id: str) -> BatchRecord | None:
        reads.append(batch_id)
        return real_get_batch(self, batch_id)

    monkeypatch.setattr(StateStore, "get_batch", counted)
    for _ in range(20):
        h.supervisor.tell(Tick())
    h.supervisor.ask(Snapshot(), timeout=5)
    assert reads == []  # the queue order is kept in memory, not re-read every tick

    h.answer(running)
    order = []
    for _ in range(3):
        job = expect(h.jobs, AnalyseImage)
        order.append(job.batch_id)
        h.answer(job)
    assert order == ["urgent", "normal-1", "normal-2"]
