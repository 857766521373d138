"""BatchProgress: stored in state, rendered as status.json by its one writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus
from medianalysed.progress import BatchProgress, progress_of, publish, stored_progress
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
