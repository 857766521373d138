"""Every started batch ends (SPEC §1): per-input exception boundaries, actor crashes, salvage.

Real actors, a real StateStore and HistoryIndex in tmp_path; the image actors are doubles
that answer at once (or record), the listener double raises where a bug would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import threading
from pathlib import Path
from typing import Any

import pykka
import pytest

from medianalysed.actors.batch import BatchActor
from medianalysed.actors.supervisor import SupervisorActor, SupervisorParts
from medianalysed.batchwork.settings import BatchListener, BatchSettings
from medianalysed.config import Config, InboxConfig, ProcessingConfig
from medianalysed.dupindex import HistoryIndex
from medianalysed.messages import (
    AnalyseImage,
    BatchFinished,
    BatchTick,
    ControlCommand,
    ImageAnalysed,
    OfferJobs,
    Snapshot,
    Tick,
    WorkerIdle,
)
from medianalysed.stalls import ProgressClock
from medianalysed.state import BatchRecord, StateStore
from tests.e2e.harness import wait_for
from tests.recording import OfferRecorder, RecordingActor, expect

pytestmark = pytest.mark.timeout(60)


def _result(sha: str) -> dict[str, Any]:
    return {
        "file": {"size": 1, "sha256": sha, "mtime": "2025-01-01T00:00:00Z", "source_url": None},
        "image": {"format": "PNG", "width": 1, "height": 1},
        "exif": None,
        "colors": None,
        "hashes": {"phash": sha[:16].ljust(16, "0")},
        "pixel_digest": sha,
    }


def _hex(path: str) -> str:
    return path.encode().hex().ljust(16, "0")


def _results(outbox: Path) -> dict[str, dict[str, Any]]:
    lines = (outbox / "results.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["path"] for r in records}), "a path appears twice"
    return {r["path"]: r for r in records}


# -- the batch actor's boundary --------------------------------------------------------------


@pytest.fixture
def batch_env(tmp_path: Path):
    inbox = InboxConfig(
        path=tmp_path / "inbox", outbox=tmp_path / "outbox", archive=tmp_path / "archive"
    )
    source = inbox.path / "b1"
    source.mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        (source / name).write_bytes(b"x")
    store = StateStore(tmp_path / "state")
    history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
    supervisor_q: queue.Queue[Any] = queue.Queue()
    worker_q: queue.Queue[Any] = queue.Queue()
    env = {
        "store": store,
        "history": history,
        "inbox": inbox,
        "supervisor_q": supervisor_q,
        "supervisor": OfferRecorder.start(supervisor_q, worker_q),
        "worker_q": worker_q,  # the jobs the batch offers
        "record": BatchRecord(
            batch_id="b1", inbox="default", source=str(source), outbox_dir=str(inbox.outbox / "b1")
        ),
        "settings": BatchSettings(
            inbox=inbox,
            processing=ProcessingConfig(max_retries=0),
            near_duplicate_distance=6,
            config_fingerprint="f",
            downloads_dir=tmp_path / "dl",
        ),
    }
    yield env
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    history.close()
    store.close()


def _start_batch(env: dict[str, Any], **kwargs: Any) -> pykka.ActorRef[Any]:
    return BatchActor.start(
        record=env["record"],
        settings=env["settings"],
        store=env["store"],
        history=env["history"],
        supervisor=env["supervisor"],
        **kwargs,
    )


def _serve_all(env: dict[str, Any], batch: pykka.ActorRef[Any], answer: Any, count: int) -> None:
    for _ in range(count):
        job = expect(env["worker_q"], AnalyseImage)
        batch.tell(answer(job))


def test_an_outcome_that_cannot_be_stored_becomes_that_images_internal_record(batch_env):
    # A worker result holding a value JSON cannot encode (bytes from some EXIF tag, say).
    def answer(job: AnalyseImage) -> ImageAnalysed:
        result = _result(job.path.encode().hex())
        if job.path == "b.png":
            result["exif"] = {"maker_note": b"\x00\x01"}
        return ImageAnalysed(job.path, job.attempt, result, None, 1.0)

    batch = _start_batch(batch_env)
    expect(batch_env["supervisor_q"], OfferJobs)
    _serve_all(batch_env, batch, answer, 3)

    finished = expect(batch_env["supervisor_q"], BatchFinished)
    assert finished.status == "partial"
    records = _results(batch_env["inbox"].outbox / "b1")
    assert sorted(records) == ["a.png", "b.png", "c.png"]
    assert records["b.png"]["status"] == "failed"
    assert records["b.png"]["error"]["code"] == "INTERNAL"
    assert "TypeError" in records["b.png"]["error"]["message"]
    assert len(records["b.png"]["error"]["message"]) <= 200
    assert records["a.png"]["status"] == records["c.png"]["status"] == "done"
    assert batch_env["store"].get_batch("b1").phase == "done"


class _RaisingListener(BatchListener):
    """A metrics hook with a bug: it raises on every image outcome."""

    def image_finished(self, inbox: str, status: str, error_code: str | None, **info: Any) -> None:
        raise RuntimeError("metrics bug")


def test_a_failing_hook_after_the_outcome_was_stored_keeps_the_stored_outcome(batch_env):
    batch = _start_batch(batch_env, listener=_RaisingListener())
    expect(batch_env["supervisor_q"], OfferJobs)
    _serve_all(
        batch_env,
        batch,
        lambda job: ImageAnalysed(job.path, job.attempt, _result(_hex(job.path)), None, 1.0),
        3,
    )
    assert expect(batch_env["supervisor_q"], BatchFinished).status == "completed"
    records = _results(batch_env["inbox"].outbox / "b1")
    assert [r["status"] for r in records.values()] == ["done", "done", "done"]
    summary = json.loads((batch_env["inbox"].outbox / "b1" / "summary.json").read_text())
    assert summary["counts"]["done"] == 3  # counted once each, not twice


def test_an_unreadable_image_record_fails_that_image_and_the_others_run(batch_env):
    store = batch_env["store"]
    source = Path(batch_env["record"].source)
    for name in ("d.png", "e.png", "f.png", "g.png"):
        (source / name).write_bytes(b"x")
    # One worker: a window of 6 jobs, so g.png is prepared only once two are answered.
    processing = ProcessingConfig(max_retries=0, workers=1)
    batch_env["settings"] = dataclasses.replace(batch_env["settings"], processing=processing)
    batch = _start_batch(batch_env)
    expect(batch_env["supervisor_q"], OfferJobs)
    # A damaged record in state (a torn write, a bug in an older version).
    store._images.set(store._image_key("b1", "g.png"), "{not json")
    served = []
    for _ in range(6):
        job = expect(batch_env["worker_q"], AnalyseImage)
        served.append(job.path)
        batch.tell(ImageAnalysed(job.path, job.attempt, _result(_hex(job.path)), None, 1.0))
    assert served == ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    assert expect(batch_env["supervisor_q"], BatchFinished).status == "partial"
    records = _results(batch_env["inbox"].outbox / "b1")
    assert records["g.png"]["error"]["code"] == "INTERNAL"
    assert "JSONDecodeError" in records["g.png"]["error"]["message"]


def test_salvage_finalises_the_unfinished_images_as_internal_exactly_once(batch_env):
    store = batch_env["store"]
    batch = _start_batch(batch_env)
    expect(batch_env["supervisor_q"], OfferJobs)
    _serve_all(
        batch_env,
        batch,
        lambda job: ImageAnalysed(job.path, job.attempt, _result("aa" * 8), None, 1.0),
        1,
    )
    wait_for(lambda: store.get_image("b1", "a.png"), what="a.png stored")
    batch.stop(block=True)
    # The supervisor gave up restarting it: one more start, only to finalise.
    batch_env["record"] = store.get_batch("b1")
    _start_batch(batch_env, salvage="4 crashes, KeyError: 'x'")
    assert expect(batch_env["supervisor_q"], BatchFinished).status == "partial"
    records = _results(batch_env["inbox"].outbox / "b1")
    assert records["a.png"]["status"] == "done"
    for path in ("b.png", "c.png"):
        assert records[path]["status"] == "failed"
        assert records[path]["error"]["code"] == "INTERNAL"
        assert "KeyError" in records[path]["error"]["message"]
    summary = json.loads((batch_env["inbox"].outbox / "b1" / "summary.json").read_text())
    assert summary["counts"] == {
        "total": 3,
        "pending": 0,
        "processing": 0,
        "done": 1,
        "failed": 2,
        "skipped": 0,
    }
    assert (batch_env["inbox"].archive / "b1" / "a.png").is_file()


# -- the supervisor ----------------------------------------------------------------------------


class AnsweringWorker(pykka.ThreadingActor):
    """An image actor double that answers every job at once with a distinct result."""

    def __init__(self, supervisor: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._supervisor = supervisor

    def on_receive(self, message: Any) -> None:
        if isinstance(message, AnalyseImage):
            result = _result(message.path.encode().hex().ljust(16, "0"))
            with contextlib.suppress(pykka.ActorDeadError):  # a crashed batch: dropped
                message.reply_to.tell(
                    ImageAnalysed(message.path, message.attempt, result, None, 1.0)
                )
            self._supervisor.tell(WorkerIdle(worker=self.actor_ref, job=message))


class FinaliseFails(BatchListener):
    """A webhook hook with a bug: raises for the first `times` batches that finish."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0
        self.lock = threading.Lock()

    def batch_finished(self, inbox: str, status: str, summary: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.times:
                raise RuntimeError(f"webhook bug {self.calls}")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def supervised(tmp_path: Path):
    made: list[tuple[pykka.ActorRef[Any], StateStore, HistoryIndex]] = []

    def make(listener: BatchListener | None = None, events: list[str] | None = None):
        inbox = InboxConfig(
            path=tmp_path / "inbox",
            outbox=tmp_path / "outbox",
            archive=tmp_path / "archive",
            settle_seconds=0,
        )
        inbox.path.mkdir(exist_ok=True)
        config = Config(processing=ProcessingConfig(workers=2), inboxes=(inbox,))
        store = StateStore(tmp_path / "state")
        history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
        clock = FakeClock()
        recorded = events if events is not None else []
        parts = SupervisorParts(
            config=config,
            store=store,
            history=history,
            worker_factory=AnsweringWorker.start,
            batch_settings=lambda box: BatchSettings(
                inbox=box,
                processing=config.processing,
                near_duplicate_distance=6,
                config_fingerprint="f",
                downloads_dir=tmp_path / "dl",
            ),
            listener=listener or BatchListener(),
            on_lifecycle=recorded.append,
        )
        supervisor = SupervisorActor.start(parts, clock=clock)
        made.append((supervisor, store, history))
        return supervisor, store, inbox, clock

    yield make
    for supervisor, store, history in made:
        if supervisor.is_alive():
            supervisor.stop(block=True, timeout=10)
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        history.close()
        store.close()


def _folder(inbox: InboxConfig, name: str, files: int = 2) -> Path:
    folder = inbox.path / name
    folder.mkdir()
    for index in range(files):
        (folder / f"{index}.png").write_bytes(b"x")
    return folder


def _tick_until(supervisor, clock, predicate, *, step: float = 1.0, what: str = ""):
    def ticked():
        clock.now += step
        supervisor.tell(Tick())
        return predicate()

    return wait_for(ticked, timeout=30, what=what)


def test_a_batch_toml_that_overflows_the_parser_never_stops_the_supervisor(supervised):
    supervisor, _store, inbox, clock = supervised()
    poison = _folder(inbox, "poison")
    # Nested deeper than Python's recursion limit: tomllib raises RecursionError.
    (poison / "batch.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    _folder(inbox, "good")
    summary = inbox.outbox / "good" / "summary.json"
    _tick_until(supervisor, clock, summary.is_file, what="the good batch finished")
    assert supervisor.is_alive()
    # The poison folder is either started (its options ignored with a note) or retried
    # later with its path logged; never the end of the supervisor.
    _tick_until(supervisor, clock, supervisor.is_alive, what="still alive")


def test_a_crashing_batch_actor_is_restarted_with_backoff_then_finalised(supervised):
    listener = FinaliseFails(times=4)  # the first run and its 3 restarts crash
    events: list[str] = []
    supervisor, store, inbox, clock = supervised(listener, events)
    _folder(inbox, "b1", files=3)
    supervisor.tell(Tick())
    wait_for(lambda: listener.calls >= 1, what="the first crash")
    # No restart before its backoff has passed.
    for _ in range(5):
        supervisor.ask(Snapshot(), timeout=5)
    assert listener.calls == 1
    _tick_until(
        supervisor,
        clock,
        lambda: (r := store.get_batch("b1")) is not None and r.phase == "done",
        what="the salvaged batch ended",
    )
    record = store.get_batch("b1")
    assert record is not None
    assert record.phase == "done"
    assert listener.calls == 5
    assert events.count("restarted") == 3
    assert events.count("salvaged") == 1
    records = _results(inbox.outbox / "b1")
    assert sorted(records) == ["0.png", "1.png", "2.png"]
    assert {r["status"] for r in records.values()} == {"done"}
    # The slots lent to the crashed actors came back.
    snapshot = wait_for(
        lambda: (s := supervisor.ask(Snapshot(), timeout=5))["workers_busy"] == 0 and s,
        what="every slot free",
    )
    assert snapshot["restarting"] == []


def test_a_batch_that_cannot_even_be_finalised_is_set_aside_as_failed(supervised):
    listener = FinaliseFails(times=10**6)
    events: list[str] = []
    supervisor, store, inbox, clock = supervised(listener, events)
    _folder(inbox, "b1")
    _folder(inbox, "b2")
    supervisor.tell(Tick())

    def both_ended() -> bool:
        records = [store.get_batch(b) for b in ("b1", "b2")]
        return all(r is not None and r.phase == "done" for r in records)

    _tick_until(supervisor, clock, both_ended, what="both batches ended")
    wait_for(lambda: events.count("set_aside") == 2, what="both counted as set aside")
    for batch_id in ("b1", "b2"):
        record = store.get_batch(batch_id)
        assert record is not None
        assert str(record.status) == "failed"
        assert "set aside" in record.note
        summary = json.loads((inbox.outbox / batch_id / "summary.json").read_text())
        assert summary["status"] == "failed"
        assert "webhook bug" in summary["set_aside"]["reason"]
        assert (inbox.path / batch_id).is_dir()  # the input is left for the operator
    assert {e["batch_id"] for e in store.set_aside_entries()} == {"b1", "b2"}
    assert supervisor.is_alive()


def test_a_batch_without_progress_for_stall_seconds_is_stalled_until_it_moves(tmp_path: Path):
    clock = FakeClock()
    progress = ProgressClock(clock=clock)
    events: list[str] = []
    inbox = InboxConfig(
        path=tmp_path / "inbox",
        outbox=tmp_path / "outbox",
        archive=tmp_path / "archive",
        settle_seconds=0,
    )
    inbox.path.mkdir()
    _folder(inbox, "b1", files=1)
    config = Config(processing=ProcessingConfig(workers=1, stall_seconds=60), inboxes=(inbox,))
    store = StateStore(tmp_path / "state")
    history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
    jobs: queue.Queue[Any] = queue.Queue()
    workers: list[pykka.ActorRef[Any]] = []

    def silent_worker(_supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        workers.append(RecordingActor.start(jobs))  # takes the image, never answers
        return workers[-1]

    supervisor = SupervisorActor.start(
        SupervisorParts(
            config=config,
            store=store,
            history=history,
            worker_factory=silent_worker,
            batch_settings=lambda box: BatchSettings(
                inbox=box,
                processing=config.processing,
                near_duplicate_distance=6,
                config_fingerprint="f",
                downloads_dir=tmp_path / "dl",
            ),
            progress=progress,
            on_lifecycle=events.append,
        ),
        clock=clock,
    )
    try:
        supervisor.tell(Tick())
        job = expect(jobs, AnalyseImage)
        clock.now += 59
        supervisor.tell(Tick())
        assert supervisor.ask(Snapshot(), timeout=5)["stalled"] == []
        clock.now += 2  # 61 s with its only image out and no answer
        supervisor.tell(Tick())
        assert supervisor.ask(Snapshot(), timeout=5)["stalled"] == ["b1"]
        assert progress.stalled() == ["b1"]
        supervisor.tell(Tick())
        supervisor.ask(Snapshot(), timeout=5)
        assert events.count("stalled") == 1  # counted once per stall, not per tick
        job.reply_to.tell(ImageAnalysed(job.path, job.attempt, _result(_hex(job.path)), None, 1))
        wait_for(lambda: progress.stalled() == [], what="progress clears the stall")
    finally:
        supervisor.stop(block=True, timeout=10)
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        history.close()
        store.close()


def test_a_batch_waiting_for_a_worker_is_not_stalled(batch_env):
    clock = FakeClock()
    progress = ProgressClock(clock=clock)
    batch = _start_batch(batch_env, progress=progress)
    expect(batch_env["supervisor_q"], OfferJobs)
    clock.now += 10_000  # no worker for hours: busy elsewhere, not stuck
    batch.tell(BatchTick(at_workers=0))  # its jobs wait in the queue
    wait_for(lambda: progress.check(600) == [] and progress.stalled() == [], what="ticked")
    expect(batch_env["worker_q"], AnalyseImage)
    clock.now += 601
    batch.tell(BatchTick(at_workers=1))  # an image is out: a tick is no longer progress
    wait_for(lambda: progress.check(600) or progress.stalled(), what="stalled")
    assert progress.stalled() == ["b1"]


def test_a_damaged_batch_record_never_stops_the_supervisor(supervised, tmp_path: Path):
    # A record an older build or a torn write left behind, there at start and after.
    store = StateStore(tmp_path / "state")
    store._batches.set("broken", '{"batch_id": "broken"}')
    store.close()
    supervisor, store, inbox, clock = supervised()
    supervisor.ask(Snapshot(), timeout=5)  # started, with the damaged record skipped
    store._batches.set("broken2", '{"batch_id": "broken2", "phase": "running"}')
    supervisor.tell(ControlCommand(verb="retry", batch_id="broken"))
    supervisor.tell(ControlCommand(verb="cancel", batch_id="broken2"))
    _folder(inbox, "good")
    summary = inbox.outbox / "good" / "summary.json"
    _tick_until(supervisor, clock, summary.is_file, what="the good batch finished")
    assert supervisor.is_alive()
