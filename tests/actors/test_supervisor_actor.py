"""SupervisorActor: global worker bound, fairness, priorities and crash replacement."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pykka
import pytest

from medianalysed.actors.image import SLOTS_PER_WORKER
from medianalysed.actors.supervisor import SupervisorActor, SupervisorParts
from medianalysed.batchwork.settings import BatchSettings
from medianalysed.config import Config, InboxConfig, ProcessingConfig
from medianalysed.dupindex import HistoryIndex
from medianalysed.messages import (
    AnalyseImage,
    ControlCommand,
    ImageAnalysed,
    PathSeen,
    Snapshot,
    SubmitBatch,
    Tick,
    WorkerCrashed,
    WorkerIdle,
)
from medianalysed.state import StateStore
from tests.e2e.harness import wait_for
from tests.recording import RecordingActor, expect

pytestmark = pytest.mark.timeout(30)


class TaggingRecorder(RecordingActor):
    """A fake image actor: records jobs and which fake worker received each."""

    def __init__(self, inbox: queue.Queue[Any], owners: dict[Any, int], index: int) -> None:
        super().__init__(inbox)
        self._owners = owners
        self._index = index

    def on_receive(self, message: Any) -> None:
        self._owners[message] = self._index
        super().on_receive(message)


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        workers: int = 2,
        settle: float = 0,
        clock: Callable[[], float] = time.monotonic,
        **parts: Any,
    ) -> None:
        self.inbox = InboxConfig(
            path=tmp_path / "inbox",
            outbox=tmp_path / "outbox",
            archive=tmp_path / "archive",
            settle_seconds=settle,
        )
        self.inbox.path.mkdir()
        self.config = Config(processing=ProcessingConfig(workers=workers), inboxes=(self.inbox,))
        self.store = StateStore(tmp_path / "state")
        self.history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.workers: list[pykka.ActorRef[Any]] = []
        self.owners: dict[AnalyseImage, int] = {}
        self.supervisor = SupervisorActor.start(
            SupervisorParts(
                config=self.config,
                store=self.store,
                history=self.history,
                worker_factory=self._worker,
                batch_settings=lambda inbox: BatchSettings(
                    inbox=inbox,
                    processing=self.config.processing,
                    near_duplicate_distance=6,
                    config_fingerprint="f",
                    downloads_dir=tmp_path / "dl",
                ),
                **parts,
            ),
            clock,
        )

    def _worker(self, _supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        ref = TaggingRecorder.start(self.jobs, self.owners, len(self.workers))
        self.workers.append(ref)
        return ref

    def worker_of(self, job: AnalyseImage) -> int:
        return self.owners[job]

    def folder(self, name: str, files: int, priority: str | None = None) -> Path:
        folder = self.inbox.path / name
        folder.mkdir()
        for index in range(files):
            (folder / f"{index:03d}.jpg").write_bytes(b"x")
        if priority:
            (folder / "batch.toml").write_text(f'priority = "{priority}"\n')
        return folder

    def answer(self, job: AnalyseImage) -> None:
        """What an image actor does with a job: the outcome to the batch, idle to us."""
        job.reply_to.tell(
            ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=None,
                error={"code": "CORRUPT", "message": "x", "retryable": False},
                duration_ms=1.0,
            )
        )
        self.supervisor.tell(WorkerIdle(worker=self.workers[self.worker_of(job)], job=job))

    def snapshot(self) -> dict[str, Any]:
        return self.supervisor.ask(Snapshot(), timeout=5)

    def close(self) -> None:
        self.supervisor.stop(block=True, timeout=10)
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        self.history.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path):
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        made.append(Harness(tmp_path, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _drain(jobs: queue.Queue[Any]) -> list[AnalyseImage]:
    found = []
    while True:
        try:
            found.append(jobs.get(timeout=0.5))
        except queue.Empty:
            return [j for j in found if isinstance(j, AnalyseImage)]


def test_workers_are_bounded_globally_and_shared_between_batches(harness):
    h = harness(workers=2)
    for name in ("one", "two", "three"):
        h.supervisor.tell(SubmitBatch("default", str(h.folder(name, 8))))
    limit = 2 * SLOTS_PER_WORKER  # each image actor: one image running, one next in line
    first = [expect(h.jobs, AnalyseImage) for _ in range(limit)]
    assert _drain(h.jobs) == []  # never more than that in flight, across all batches
    assert len(h.workers) == 2  # exactly `workers` image actors
    served = {job.batch_id for job in first}
    for _ in range(4):
        for job in first:
            h.answer(job)
        first = [expect(h.jobs, AnalyseImage) for _ in range(limit)]
        served |= {job.batch_id for job in first}
        assert _drain(h.jobs) == []
    assert served == {"one", "two", "three"}


def test_high_priority_batch_gets_workers_first(harness):
    h = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("low", 5, "low"))))
    low_jobs = [expect(h.jobs, AnalyseImage) for _ in range(SLOTS_PER_WORKER)]
    h.supervisor.tell(SubmitBatch("default", str(h.folder("urgent", 3, "high"))))
    wait_for(lambda: h.snapshot()["offered"].get("urgent"), what="urgent's jobs offered")
    served = []
    for job in low_jobs:
        h.answer(job)
        served.append(expect(h.jobs, AnalyseImage))
    h.answer(served[0])
    served.append(expect(h.jobs, AnalyseImage))
    assert [j.batch_id for j in served] == ["urgent", "urgent", "urgent"]


def test_crashed_worker_is_replaced_and_its_images_fail_internal_once(harness):
    h = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("b", 3))))
    jobs = tuple(expect(h.jobs, AnalyseImage) for _ in range(SLOTS_PER_WORKER))
    crashed = h.workers[0]
    h.supervisor.tell(WorkerCrashed(worker=crashed, reason="RuntimeError: boom"))
    crashed.stop()
    nxt = expect(h.jobs, AnalyseImage)
    assert nxt.path not in {job.path for job in jobs}
    assert h.worker_of(nxt) == 1  # the replacement
    assert len(h.workers) == 2
    assert h.snapshot()["workers"] == 1
    # What the crashed worker held went back to the batch: one attempt each, INTERNAL.
    for job in jobs:
        wait_for(lambda job=job: h.store.get_image("b", job.path), what=f"{job.path} recorded")
        record = h.store.get_image("b", job.path)
        assert (record.status, record.attempts, record.error["code"]) == ("failed", 1, "INTERNAL")
    h.answer(nxt)
    wait_for(lambda: h.snapshot()["active"] == [], what="the batch to finish")
    assert _drain(h.jobs) == []  # nothing analysed twice


def test_batches_of_equal_priority_take_turns_at_the_workers(harness):
    h = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("one", 6))))
    held = [expect(h.jobs, AnalyseImage) for _ in range(SLOTS_PER_WORKER)]
    h.supervisor.tell(SubmitBatch("default", str(h.folder("two", 6))))
    wait_for(lambda: h.snapshot()["offered"].get("two"), what="two's jobs offered")
    order = []
    for _ in range(8):
        h.answer(held.pop(0))
        held.append(expect(h.jobs, AnalyseImage))
        order.append(held[-1].batch_id)
    assert all(a != b for a, b in pairwise(order)), order


def test_cancel_withdraws_the_offered_jobs_and_waits_for_the_held_ones(harness):
    h = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("big", 10))))
    held = [expect(h.jobs, AnalyseImage) for _ in range(SLOTS_PER_WORKER)]
    wait_for(lambda: h.snapshot()["offered"].get("big"), what="more jobs offered")

    h.supervisor.tell(ControlCommand("cancel", "big"))

    wait_for(lambda: h.snapshot()["offered"].get("big") == 0, what="the offer withdrawn")
    assert h.snapshot()["active"] == ["big"]  # still waiting for the images it has out
    for job in held:
        h.answer(job)
    wait_for(lambda: h.snapshot()["active"] == [], what="the batch to finish")
    assert _drain(h.jobs) == []  # no withdrawn job reached a worker
    outbox = h.inbox.outbox / "big"
    summary = json.loads((outbox / "summary.json").read_text())
    assert (summary["status"], summary["counts"]["failed"]) == ("cancelled", 2)
    assert summary["counts"]["pending"] == 8
    paths = [json.loads(line)["path"] for line in (outbox / "results.jsonl").open()]
    assert sorted(paths) == [f"{index:03d}.jpg" for index in range(10)]  # each exactly once


def test_folder_is_started_once_even_when_seen_many_times(harness):
    h = harness(workers=1)
    folder = h.folder("dup", 1)
    for _ in range(5):
        h.supervisor.tell(PathSeen("default", str(folder)))
        h.supervisor.tell(Tick())
    expect(h.jobs, AnalyseImage)
    h.supervisor.tell(PathSeen("default", str(folder)))
    h.supervisor.tell(Tick())
    snapshot = h.supervisor.ask(Snapshot(), timeout=5)
    assert snapshot["active"] == ["dup"]
    assert [r.batch_id for r in h.store.iter_batches()] == ["dup"]


def test_hidden_and_temporary_names_are_never_batches(harness):
    h = harness(workers=1)
    for name in (".hidden", "copy.part", "x.tmp", "y.crdownload", "@eaDir"):
        (h.inbox.path / name).mkdir()
        h.supervisor.tell(PathSeen("default", str(h.inbox.path / name)))
    h.supervisor.tell(Tick())
    snapshot = h.supervisor.ask(Snapshot(), timeout=5)
    assert snapshot["candidates"] == {}
    assert list(h.store.iter_batches()) == []


def test_a_tick_reaching_a_batch_actor_that_just_stopped_does_not_kill_the_supervisor(harness):
    # Found by tests/generated (G7): a batch actor stops itself right after telling the
    # supervisor it finished; a Tick handled in between used to raise ActorDeadError.
    h = harness(workers=1)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("one", 2))))
    expect(h.jobs, AnalyseImage)
    (batch,) = pykka.ActorRegistry.get_by_class_name("BatchActor")
    batch.stop(block=True)

    h.supervisor.tell(Tick())

    assert h.supervisor.ask(Snapshot(), timeout=5) is not None
    assert h.supervisor.is_alive()


def test_busy_workers_and_unfinished_images_are_counted_as_their_help_says(harness):
    gauges: list[dict[str, int]] = []
    h = harness(workers=2, on_gauges=gauges.append)
    h.supervisor.tell(SubmitBatch("default", str(h.folder("one", 30))))
    held = [expect(h.jobs, AnalyseImage) for _ in range(2 * SLOTS_PER_WORKER)]

    # Four images at two workers: two workers are busy, not "4/2"; all 30 are unfinished,
    # and the 26 not at a worker wait for one (offered, or not offered yet).
    wait_for(lambda: gauges and gauges[-1]["images_pending"] == 30, what="30 unfinished")
    snapshot = h.snapshot()
    assert (snapshot["workers_busy"], snapshot["workers"]) == (2, 2)
    assert (gauges[-1]["workers_busy"], gauges[-1]["queue_depth"]) == (2, 26)

    answered, dispatched = 0, len(held)
    while held:
        h.answer(held.pop(0))
        answered += 1
        if answered == 10:  # the count follows on the ticks, without a message per image
            wait_for(
                lambda: h.supervisor.tell(Tick()) or gauges[-1]["images_pending"] == 20,
                what="ten images finished",
            )
        if dispatched < 30:
            held.append(expect(h.jobs, AnalyseImage))
            dispatched += 1
    wait_for(lambda: h.snapshot()["active"] == [], what="the batch to finish")
    assert all(g["workers_busy"] <= g["workers"] == 2 for g in gauges)
    assert (gauges[-1]["workers_busy"], gauges[-1]["queue_depth"]) == (0, 0)
    assert gauges[-1]["images_pending"] == 0
