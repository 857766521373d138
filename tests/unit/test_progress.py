"""BatchProgress: stored in state, rendered as status.json by its one writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus
from medianalysed.progress import (
    BatchProgress,
    finalizing_note,
    progress_of,
    publish,
    status_document,
    stored_progress,
)
from medianalysed.state import BatchRecord, StateStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path / "state")
    yield opened
    opened.close()


def _record(tmp_path: Path, **changes: object) -> BatchRecord:
    record = BatchRecord(
        batch_id="b1", inbox="default", source="/in/b1", outbox_dir=str(tmp_path / "out")
    )
    (tmp_path / "out").mkdir(exist_ok=True)
    return record.evolve(**changes)


COUNTS = {"total": 30, "pending": 24, "processing": 1, "done": 3, "failed": 2, "skipped": 0}


def test_publish_stores_the_value_and_writes_the_same_document(store, tmp_path):
    record = _record(tmp_path, status=BatchStatus.PROCESSING, started_at="t0")
    progress = BatchProgress.running(record, COUNTS)
    written = publish(store, record, progress)
    on_disk = json.loads((tmp_path / "out" / "status.json").read_text(encoding="utf-8"))
    assert on_disk == written == progress.document()
    assert on_disk["progress"] == "5/30"
    assert stored_progress(store, "b1") == progress


def test_each_kind_round_trips_through_state(store, tmp_path):
    record = _record(tmp_path, status=BatchStatus.PARTIAL, final_counts=COUNTS, completed_at="t9")
    kinds = [
        BatchProgress.queued(record),
        BatchProgress.running(record, COUNTS),
        BatchProgress.finalising(record, ("writing", 3, 30)),
        BatchProgress.ended(record, phase=BatchPhase.DONE),
    ]
    for progress in kinds:
        store.put_progress("b1", progress.to_json())
        assert stored_progress(store, "b1") == progress


def test_the_line_shows_failures_and_the_finalising_stage(tmp_path):
    record = _record(tmp_path, final_counts=COUNTS)
    assert BatchProgress.running(record, COUNTS).line() == "5/30 (2 failed)"
    finalising = BatchProgress.finalising(record, ("writing", 3, 30))
    assert finalising.line() == "5/30 (2 failed) finalizing: writing 3/30"
    assert finalising.document()["status"] == "processing"  # not terminal before summary.json


def test_without_a_stored_value_progress_comes_from_the_record(store, tmp_path):
    record = _record(tmp_path, status=BatchStatus.COMPLETED, total=4, final_counts={})
    assert stored_progress(store, "b1") is None
    assert progress_of(store, record).document()["counts"]["total"] == 4
    store.put_progress("b1", '{"batch_id": "b1"}')  # damaged: not trusted
    assert stored_progress(store, "b1") is None


def test_status_while_finalizing_says_how_far_it_got():
    doc = status_document(
        batch_id="b",
        status="processing",
        counts={"total": 10, "done": 10},
        started_at=None,
        updated_at="2025-01-01T00:00:05.000Z",
        phase="finalizing",
        finalizing={"stage": "writing", "done": 4, "total": 10},
    )

    assert doc["phase"] == "finalizing"
    assert doc["finalizing"] == {"stage": "writing", "done": 4, "total": 10}
    assert doc["progress"] == "10/10"
    assert finalizing_note(doc) == " finalizing: writing 4/10"
    assert finalizing_note({**doc, "phase": "done"}) == ""


def test_status_document_progress_and_percentage():
    doc = status_document(
        batch_id="trip",
        status="processing",
        counts={"total": 30, "pending": 20, "processing": 5, "done": 3, "failed": 1, "skipped": 1},
        started_at="2025-01-01T00:00:00.000Z",
        updated_at="2025-01-01T00:00:05.000Z",
    )
    assert doc == {
        "batch_id": "trip",
        "status": "processing",
        "counts": {
            "total": 30,
            "pending": 20,
            "processing": 5,
            "done": 3,
            "failed": 1,
            "skipped": 1,
        },
        "progress": "5/30",
        "percentage": 16.6,
        "started_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:05.000Z",
    }


def test_percentage_reaches_100_only_when_everything_is_finished():
    almost = status_document(
        batch_id="b",
        status="processing",
        counts={"total": 2000, "done": 1999, "processing": 1},
        started_at=None,
        updated_at="t",
    )
    assert almost["percentage"] == 99.9
    assert almost["progress"] == "1999/2000"
    done = status_document(
        batch_id="b",
        status="completed",
        counts={"done": 2000},
        started_at=None,
        updated_at="t",
    )
    assert done["counts"]["total"] == 2000
    assert done["percentage"] == 100.0


@pytest.mark.parametrize(("status", "expected"), [("queued", 0.0), ("completed", 100.0)])
def test_percentage_of_an_empty_batch(status, expected):
    doc = status_document(batch_id="e", status=status, counts={}, started_at=None, updated_at="t")
    assert doc["progress"] == "0/0"
    assert doc["percentage"] == expected
