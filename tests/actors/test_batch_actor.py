"""BatchActor with recording doubles for the supervisor and the workers."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from medianalysed import safeopen
from medianalysed.actors.batch import BatchActor
from medianalysed.batchwork import finalising
from medianalysed.batchwork.settings import BatchSettings
from medianalysed.config import InboxConfig, ProcessingConfig
from medianalysed.dupindex import HistoryIndex
from medianalysed.errors import DiskWriteError
from medianalysed.messages import (
    AnalyseImage,
    BatchFinished,
    BatchTick,
    CancelBatch,
    ImageAnalysed,
    JobsReturned,
    OfferJobs,
    WithdrawJobs,
)
from medianalysed.state import BatchRecord, StateStore
from tests.e2e.harness import wait_for
from tests.recording import OfferRecorder, expect

pytestmark = pytest.mark.timeout(30)


def _result(path: str, sha: str) -> dict[str, Any]:
    return {
        "file": {"size": 10, "sha256": sha, "mtime": "2025-01-01T00:00:00Z", "source_url": None},
        "image": {"format": "JPEG", "width": 10, "height": 10},
        "exif": None,
        "colors": None,
        "hashes": {  # all five, as analysis gives them: near search needs every one
            "phash": "ffffffffffffffff",
            "ahash": "0000000000000000",
            "dhash": "0000000000000000",
            "whash": "0000000000000000",
            "colorhash": "00000000000",
        },
        "pixel_digest": sha,
    }


@pytest.fixture
def env(tmp_path: Path):
    inbox = InboxConfig(
        path=tmp_path / "inbox", outbox=tmp_path / "outbox", archive=tmp_path / "archive"
    )
    batch_dir = inbox.path / "b1"
    (batch_dir / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        (batch_dir / name).write_bytes(b"x")
    store = StateStore(tmp_path / "state")
    history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
    supervisor_q: queue.Queue[Any] = queue.Queue()
    worker_q: queue.Queue[Any] = queue.Queue()
    supervisor = OfferRecorder.start(supervisor_q, worker_q)  # worker_q: the jobs offered
    record = BatchRecord(
        batch_id="b1", inbox="default", source=str(batch_dir), outbox_dir=str(inbox.outbox / "b1")
    )
    settings = BatchSettings(
        inbox=inbox,
        processing=ProcessingConfig(max_retries=1, retry_backoff_seconds=(0,)),
        near_duplicate_distance=6,
        config_fingerprint="f",
        downloads_dir=tmp_path / "downloads",
    )
    yield {
        "store": store,
        "history": history,
        "supervisor": supervisor,
        "supervisor_q": supervisor_q,
        "worker_q": worker_q,
        "record": record,
        "settings": settings,
        "inbox": inbox,
    }
    history.close()
    store.close()


def _start(env: dict[str, Any]):
    return BatchActor.start(
        record=env["record"],
        settings=env["settings"],
        store=env["store"],
        history=env["history"],
        supervisor=env["supervisor"],
    )


def _answer_next(env, batch, answer) -> AnalyseImage:
    """Answer the next job the batch offered, as a worker would."""
    job = expect(env["worker_q"], AnalyseImage)
    batch.tell(answer(job))
    return job


def test_batch_offers_its_jobs_and_writes_every_image_once(env):
    batch = _start(env)
    offer = expect(env["supervisor_q"], OfferJobs)
    assert (len(offer.jobs), offer.waiting, offer.unfinished) == (3, 0, 3)  # the window holds all
    seen = []
    for index in range(3):
        job = _answer_next(
            env,
            batch,
            lambda job, i=index: ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=_result(job.path, f"sha{i % 2}"),
                error=None,
                duration_ms=1.0,
            ),
        )
        seen.append(job.path)
    assert sorted(seen) == ["a.jpg", "b.jpg", "sub/c.jpg"]
    finished = expect(env["supervisor_q"], BatchFinished)
    assert finished.status == "completed"
    outbox = env["inbox"].outbox / "b1"
    lines = (outbox / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["a.jpg", "b.jpg", "sub/c.jpg"]
    summary = json.loads((outbox / "summary.json").read_text())
    assert summary["counts"]["done"] == 3
    assert summary["duplicates"]["near"] == [["a.jpg", "b.jpg", "sub/c.jpg"]]
    assert (env["inbox"].archive / "b1" / "a.jpg").is_file()


def test_retryable_failure_is_retried_then_fails_with_attempts_recorded(env):
    batch = _start(env)
    expect(env["supervisor_q"], OfferJobs)
    timeout = {"code": "TIMEOUT", "message": "slow", "retryable": True}
    outcomes = []
    for _ in range(5):
        job = _answer_next(
            env,
            batch,
            lambda job: ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=None if job.path == "a.jpg" else _result(job.path, job.path),
                error=timeout if job.path == "a.jpg" else None,
                duration_ms=1.0,
            ),
        )
        outcomes.append((job.path, job.attempt))
        batch.tell(BatchTick())
        if len(outcomes) == 4:
            break
    assert ("a.jpg", 1) in outcomes
    assert ("a.jpg", 2) in outcomes
    finished = expect(env["supervisor_q"], BatchFinished)
    assert finished.status == "partial"
    records = {
        json.loads(line)["path"]: json.loads(line)
        for line in (env["inbox"].outbox / "b1" / "results.jsonl").read_text().splitlines()
    }
    assert records["a.jpg"]["attempts"] == 2
    assert records["a.jpg"]["error"]["code"] == "TIMEOUT"


def test_cancel_takes_back_the_offered_jobs_and_reports_them_pending(env):
    batch = _start(env)
    offer = expect(env["supervisor_q"], OfferJobs)
    batch.tell(CancelBatch())
    expect(env["supervisor_q"], WithdrawJobs)
    batch.tell(JobsReturned(jobs=offer.jobs))  # no worker had taken any
    finished = expect(env["supervisor_q"], BatchFinished)
    assert finished.status == "cancelled"
    batch_ref_gone = env["inbox"].outbox / "b1" / "summary.json"
    summary = json.loads(batch_ref_gone.read_text())
    assert summary["counts"]["pending"] == 3
    statuses = [
        json.loads(line)["status"]
        for line in (env["inbox"].outbox / "b1" / "results.jsonl").read_text().splitlines()
    ]
    assert statuses == ["pending", "pending", "pending"]


def test_resume_after_restart_does_not_redo_finished_images(env):
    batch = _start(env)
    first, *_ = expect(env["supervisor_q"], OfferJobs).jobs
    batch.tell(ImageAnalysed(first.path, 1, _result(first.path, "s"), None, 1.0))
    batch.stop(block=True)  # after the outcome: its record is stored
    env["record"] = env["store"].get_batch("b1")
    _start(env)
    offer = expect(env["supervisor_q"], OfferJobs)
    assert (offer.unfinished, len(offer.jobs)) == (2, 2)
    assert first.path not in {job.path for job in offer.jobs}


def _answer_all(env, batch, count: int, answer) -> list[AnalyseImage]:
    jobs = []
    for _ in range(count):
        jobs.append(_answer_next(env, batch, answer))
    return jobs


def _records(env, batch_id: str = "b1") -> dict[str, dict[str, Any]]:
    outbox = env["inbox"].outbox / batch_id
    lines = (outbox / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["path"]: json.loads(line) for line in lines}


def test_failed_and_skipped_records_keep_the_file_facts(env):
    facts = {"size": 3, "sha256": "ab" * 32, "mtime": "2025-01-01T00:00:00Z", "source_url": None}
    codes = {"a.jpg": "CORRUPT", "b.jpg": "TOO_LARGE", "sub/c.jpg": "TOO_SMALL"}
    batch = _start(env)
    expect(env["supervisor_q"], OfferJobs)
    _answer_all(
        env,
        batch,
        3,
        lambda job: ImageAnalysed(
            path=job.path,
            attempt=job.attempt,
            result=None,
            error={"code": codes[job.path], "message": "m", "retryable": False},
            duration_ms=1.0,
            file=facts,
        ),
    )
    expect(env["supervisor_q"], BatchFinished)
    records = _records(env)
    assert {path: r["status"] for path, r in records.items()} == {
        "a.jpg": "failed",
        "b.jpg": "skipped",
        "sub/c.jpg": "skipped",
    }
    assert all(r["file"] == facts for r in records.values())


def test_undecodable_names_are_opened_by_root_and_key_and_reported_exactly(env, tmp_path):
    batch_dir = Path(env["record"].source)
    for name in (b"a.jpg", b"b.jpg", b"sub/c.jpg"):
        os.unlink(os.fsencode(batch_dir) + b"/" + name)
    os.mkdir(os.fsencode(batch_dir) + b"/s\xfe")
    for name in (b"\xff.jpg", b"s\xfe/x\n.jpg"):
        with open(os.fsencode(batch_dir) + b"/" + name, "wb") as handle:
            handle.write(b"x")
    batch = _start(env)
    expect(env["supervisor_q"], OfferJobs)
    jobs = _answer_all(
        env,
        batch,
        2,
        lambda job: ImageAnalysed(
            path=job.path,
            attempt=1,
            result=_result(job.path, job.path.encode("utf-8", "surrogateescape").hex()),
            error=None,
            duration_ms=1.0,
        ),
    )
    for job in jobs:
        assert job.root == str(batch_dir)
        with safeopen.open_root(job.root) as root:
            os.close(safeopen.open_beneath(root, job.relpath))
    expect(env["supervisor_q"], BatchFinished, where=lambda m: m.status == "completed")
    records = _records(env)
    assert set(records) == {"s\\xfe/x\n.jpg", "\\xff.jpg"}
    for path, exact in (("s\\xfe/x\n.jpg", b"s\xfe/x\n.jpg"), ("\\xff.jpg", b"\xff.jpg")):
        assert base64.b64decode(records[path]["path_bytes"]) == exact
    assert records["s\\xfe/x\n.jpg"]["group"] == "s\\xfe"


def test_a_255_byte_batch_archived_twice_gets_a_shortened_name(env, tmp_path):
    batch_id = "n" * 255
    source = env["inbox"].path / batch_id
    Path(env["record"].source).rename(source)
    env["record"] = env["record"].evolve(
        batch_id=batch_id, source=str(source), outbox_dir=str(env["inbox"].outbox / batch_id)
    )
    (env["inbox"].archive / batch_id).mkdir(parents=True)  # the first drop of that name
    batch = _start(env)
    expect(env["supervisor_q"], OfferJobs)
    _answer_all(
        env,
        batch,
        3,
        lambda job: ImageAnalysed(
            path=job.path, attempt=1, result=_result(job.path, job.path), error=None, duration_ms=1
        ),
    )
    expect(env["supervisor_q"], BatchFinished)
    assert (env["inbox"].archive / ("n" * 253 + "-2") / "sub" / "c.jpg").is_file()
    assert env["store"].get_batch(batch_id).archived_to.endswith("n" * 253 + "-2")


class GatedHistory(HistoryIndex):
    """Holds the finalising inside its first `add_many` until the test lets it go."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, analysis_version=1)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.gated = True

    def add_many(self, images: Any) -> None:
        if self.gated:
            self.entered.set()
            assert self.release.wait(20)
        super().add_many(images)


def _answer_three(env: dict[str, Any], batch: Any) -> None:
    expect(env["supervisor_q"], OfferJobs)
    for index in range(3):
        _answer_next(
            env,
            batch,
            lambda job, i=index: ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=_result(job.path, f"sha{i % 2}"),
                error=None,
                duration_ms=1.0,
            ),
        )


def test_a_stop_during_finalising_leaves_no_outbox_and_the_restart_finishes_once(
    env, tmp_path, monkeypatch
):
    monkeypatch.setattr(finalising, "FINALISE_SLICE_S", 0.0)  # one step per message
    gated = GatedHistory(tmp_path / "gated-history")
    env["history"] = gated
    try:
        batch = _start(env)
        _answer_three(env, batch)
        assert gated.entered.wait(20)
        batch.stop(block=False)  # queued while a finalising step runs: handled before the next
        gated.release.set()
        wait_for(lambda: not batch.is_alive(), what="the batch actor stopped")

        outbox_dir = env["inbox"].outbox / "b1"
        assert sorted(p.name for p in outbox_dir.iterdir()) == ["status.json"]
        live = json.loads((outbox_dir / "status.json").read_text())
        assert live["phase"] == "finalizing"
        assert live["progress"] == "3/3"
        stored = env["store"].get_batch("b1")
        assert stored is not None
        assert stored.phase == "finalizing"

        gated.gated = False
        env["record"] = stored
        _start(env)
        expect(env["supervisor_q"], BatchFinished)
        lines = (outbox_dir / "results.jsonl").read_text().splitlines()
        assert [json.loads(line)["path"] for line in lines] == ["a.jpg", "b.jpg", "sub/c.jpg"]
        summary = json.loads((outbox_dir / "summary.json").read_text())
        assert summary["phase"] == "done"
        assert summary["duplicates"]["near"] == [["a.jpg", "b.jpg", "sub/c.jpg"]]
        assert len(gated) == 3
    finally:
        gated.close()


def test_records_carry_bounded_matches_counts_and_groups(env):
    env["settings"] = dataclasses.replace(env["settings"], max_duplicates_listed=1)
    batch = _start(env)
    _answer_three(env, batch)
    expect(env["supervisor_q"], BatchFinished)

    outbox_dir = env["inbox"].outbox / "b1"
    records = {
        json.loads(line)["path"]: json.loads(line)
        for line in (outbox_dir / "results.jsonl").read_text().splitlines()
    }
    # a and c: same sha (exact); b: same pHash, other bytes (near). One group of three.
    assert [(d["tier"], d["path"]) for d in records["a.jpg"]["duplicates"]] == [
        ("exact", "sub/c.jpg")
    ]
    assert {path: r["duplicate_count"] for path, r in records.items()} == {
        "a.jpg": 2,
        "b.jpg": 2,
        "sub/c.jpg": 2,
    }
    assert {r["duplicate_group"] for r in records.values()} == {"a.jpg"}
    # Same size, no date: the shortest path is kept.
    assert {path: (r["duplicate_of"], r["duplicate_tier"]) for path, r in records.items()} == {
        "a.jpg": (None, "exact"),
        "b.jpg": ("a.jpg", "near"),
        "sub/c.jpg": ("a.jpg", "exact"),
    }
    summary = json.loads((outbox_dir / "summary.json").read_text())
    assert summary["duplicates"] == {"exact": [], "same_pixels": [], "near": [list(records)]}
    assert summary["duplicate_groups"] == [
        {
            "id": "a.jpg",
            "keeper": "a.jpg",
            "size": 3,
            "members": [
                {"path": "a.jpg", "tier": "exact", "seen_in": None},
                {"path": "b.jpg", "tier": "near", "seen_in": None},
                {"path": "sub/c.jpg", "tier": "exact", "seen_in": None},
            ],
        }
    ]
    assert summary["duplicates_capped"] == 0


class _LosesOnePathOnce(BatchActor):
    """Loses the first path of its line once, the way a broken step would."""

    lost = False

    def _reread_line(self) -> None:
        super()._reread_line()
        if not self.lost:
            self.lost = True
            line = self._line
            line._cursor = itertools.islice(line._cursor, 1, None)


def test_an_image_that_left_the_line_without_an_outcome_is_found_again(env, caplog):
    """Every started batch ends: even a path lost from the line (a bug) is analysed."""
    batch = _LosesOnePathOnce.start(
        record=env["record"],
        settings=env["settings"],
        store=env["store"],
        history=env["history"],
        supervisor=env["supervisor"],
    )
    expect(env["supervisor_q"], OfferJobs)

    seen = []
    for _ in range(3):
        job = _answer_next(
            env,
            batch,
            lambda job: ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=_result(job.path, job.path),
                error=None,
                duration_ms=1.0,
            ),
        )
        seen.append(job.path)

    assert sorted(seen) == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert expect(env["supervisor_q"], BatchFinished).status == "completed"
    assert "none left in line" in caplog.text


class _FullOnce(StateStore):
    """A state disk that is full for the first image record written, then has room again."""

    full = True

    def put_image(self, batch_id: str, record: Any) -> None:
        if self.full:
            self.full = False
            raise DiskWriteError("state", "state/images", "ENOSPC", "No space left on device")
        super().put_image(batch_id, record)


def test_a_parked_batch_takes_back_its_offered_jobs_and_offers_them_again(env, tmp_path):
    store = _FullOnce(tmp_path / "full-once")
    env["store"] = store
    try:
        batch = _start(env)
        first, *rest = expect(env["supervisor_q"], OfferJobs).jobs
        batch.tell(ImageAnalysed(first.path, 1, _result(first.path, "s0"), None, 1.0))

        expect(env["supervisor_q"], WithdrawJobs)  # parked: what no worker took comes back
        batch.tell(JobsReturned(jobs=tuple(rest)))
        for _ in range(3):
            expect(env["worker_q"], AnalyseImage)  # the first offer, seen already
        # After the backoff the kept outcome is written and the returned jobs offered again.
        again: list[AnalyseImage] = []
        wait_for(
            lambda: batch.tell(BatchTick()) or _collect(env, again) >= len(rest),
            timeout=20,
            what="the jobs offered again",
        )
        assert sorted(job.path for job in again) == sorted(job.path for job in rest)
        for job in again:
            batch.tell(ImageAnalysed(job.path, job.attempt, _result(job.path, job.path), None, 1))
        assert expect(env["supervisor_q"], BatchFinished).status == "completed"
        records = _records(env)
        assert sorted(records) == ["a.jpg", "b.jpg", "sub/c.jpg"]
        assert {r["attempts"] for r in records.values()} == {1}  # taking back is no attempt
    finally:
        store.close()


def _collect(env: dict[str, Any], jobs: list[AnalyseImage]) -> int:
    """Add the jobs offered since the last call to `jobs`; how many it holds now."""
    while True:
        try:
            jobs.append(env["worker_q"].get_nowait())
        except queue.Empty:
            return len(jobs)
