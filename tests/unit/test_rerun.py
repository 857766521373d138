"""`retry` / `reprocess` planning and reset, on a real StateStore in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.rerun import (
    RERUN_PHASE,
    RerunError,
    begin_rerun,
    current_input,
    finish_rerun,
    plan_rerun,
)
from medianalysed.state import BatchRecord, ImageRecord, StateStore
from tests.seeding import seed_batch


def start_rerun(
    store: StateStore, batch_id: str, *, only_failed: bool, force: bool = False
) -> BatchRecord:
    """Both steps at once, as the supervisor and then the batch actor take them."""
    record = begin_rerun(store, batch_id, only_failed=only_failed, force=force)
    return finish_rerun(store, record, None)


CORRUPT = {"code": "CORRUPT", "message": "cannot decode", "retryable": False}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(tmp_path / "state")
    yield state
    state.close()


def finished_batch(
    store: StateStore,
    root: Path,
    statuses: dict[str, ImageStatus],
    *,
    batch_id: str = "house",
    archived: bool = True,
    phase: str = "done",
) -> BatchRecord:
    """A batch that ran: its input archived (or left in the inbox), outbox files written."""
    source = root / "inbox" / batch_id
    archive = root / "archive" / batch_id
    input_dir = archive if archived else source
    input_dir.mkdir(parents=True)
    for path in statuses:
        (input_dir / path).write_bytes(b"image")
    outbox_dir = root / "outbox" / batch_id
    outbox_dir.mkdir(parents=True)
    (outbox_dir / "summary.json").write_text("{}", encoding="utf-8")
    images = [
        ImageRecord(
            path=path,
            status=status,
            attempts=1,
            error=CORRUPT if status == ImageStatus.FAILED else None,
            result={"file": {"size": 5}} if status == ImageStatus.DONE else None,
        )
        for path, status in sorted(statuses.items())
    ]
    return seed_batch(
        store,
        root,
        batch_id,
        images,
        status=BatchStatus.PARTIAL if phase == "done" else BatchStatus.PROCESSING,
        phase=phase,
        completed_at="2025-01-01T00:00:00.000Z" if phase == "done" else None,
        final_counts={"total": len(statuses)} if phase == "done" else {},
        archived_to=str(archive) if archived else None,
    )


MIXED = {
    "a.jpg": ImageStatus.DONE,
    "b.jpg": ImageStatus.FAILED,
    "c.jpg": ImageStatus.SKIPPED,
    "d.jpg": ImageStatus.FAILED,
}


def test_unknown_batch_is_refused(store: StateStore) -> None:
    with pytest.raises(RerunError, match="no batch named 'nope'"):
        plan_rerun(store, "nope", only_failed=True)


@pytest.mark.parametrize("phase", ["enumerating", "running", "finalizing", "written"])
def test_a_batch_still_running_is_refused(store: StateStore, tmp_path: Path, phase: str) -> None:
    finished_batch(store, tmp_path, MIXED, phase=phase)
    with pytest.raises(RerunError, match="wait for it to finish or cancel it"):
        plan_rerun(store, "house", only_failed=False)


def test_a_batch_whose_input_was_deleted_is_refused(store: StateStore, tmp_path: Path) -> None:
    record = finished_batch(store, tmp_path, MIXED)
    for path in MIXED:
        (Path(str(record.archived_to)) / path).unlink()
    Path(str(record.archived_to)).rmdir()
    with pytest.raises(RerunError, match="is gone"):
        plan_rerun(store, "house", only_failed=True)
    with pytest.raises(RerunError, match="drop the folder again"):
        start_rerun(store, "house", only_failed=False)
    assert store.get_batch("house") == record


def test_retry_plans_the_failed_images_and_reprocess_plans_all(
    store: StateStore, tmp_path: Path
) -> None:
    finished_batch(store, tmp_path, MIXED)
    retry = plan_rerun(store, "house", only_failed=True)
    reprocess = plan_rerun(store, "house", only_failed=False)
    archive = tmp_path / "archive" / "house"
    assert (retry.images, retry.input_path, retry.inbox) == (2, archive, "default")
    assert reprocess.images == 4
    assert retry.describe() == f"house: would analyse 2 failed or unfinished images from {archive}"
    assert reprocess.describe() == f"house: would analyse 4 images from {archive}"


def test_retry_of_a_cancelled_batch_also_counts_the_images_never_run(
    store: StateStore, tmp_path: Path
) -> None:
    finished_batch(store, tmp_path, {"a.jpg": ImageStatus.FAILED, "b.jpg": ImageStatus.PENDING})
    assert plan_rerun(store, "house", only_failed=True).images == 2


def test_input_left_in_the_inbox_is_used_when_there_is_no_archive(
    store: StateStore, tmp_path: Path
) -> None:
    record = finished_batch(store, tmp_path, MIXED, archived=False)
    assert current_input(record) == tmp_path / "inbox" / "house"
    assert plan_rerun(store, "house", only_failed=True).input_path == Path(record.source)


def test_start_retry_resets_only_failed_images_and_reopens_the_batch(
    store: StateStore, tmp_path: Path
) -> None:
    record = finished_batch(store, tmp_path, MIXED)
    updated = start_rerun(store, "house", only_failed=True)

    assert updated == store.get_batch("house")
    assert updated.phase == "running"
    assert updated.status == BatchStatus.RETRYING
    assert updated.source == record.archived_to
    assert updated.archived_to is None
    assert updated.completed_at is None
    assert updated.final_counts == {}
    assert updated.runs == record.runs + 1
    assert not updated.bypass_cache
    assert not (Path(record.outbox_dir) / "summary.json").exists()
    statuses = {path: store.get_image("house", path) for path in MIXED}
    assert {p: i.status for p, i in statuses.items() if i is not None} == {
        "a.jpg": ImageStatus.DONE,
        "b.jpg": ImageStatus.PENDING,
        "c.jpg": ImageStatus.SKIPPED,
        "d.jpg": ImageStatus.PENDING,
    }
    failed_before = statuses["b.jpg"]
    assert failed_before is not None
    assert failed_before.error is None
    assert failed_before.attempts == 1  # the attempt count survives


def test_start_reprocess_resets_every_image_and_force_bypasses_the_cache(
    store: StateStore, tmp_path: Path
) -> None:
    finished_batch(store, tmp_path, MIXED)
    updated = start_rerun(store, "house", only_failed=False, force=True)
    assert updated.status == BatchStatus.PROCESSING
    assert updated.bypass_cache
    for path in MIXED:
        image = store.get_image("house", path)
        assert image is not None
        assert (image.status, image.result, image.error) == (ImageStatus.PENDING, None, None)


def test_start_rerun_of_a_running_batch_changes_nothing(store: StateStore, tmp_path: Path) -> None:
    record = finished_batch(store, tmp_path, MIXED, phase="running")
    with pytest.raises(RerunError):
        start_rerun(store, "house", only_failed=True)
    assert store.get_batch("house") == record
    assert (Path(record.outbox_dir) / "summary.json").exists()
    image = store.get_image("house", "b.jpg")
    assert image is not None
    assert image.status == ImageStatus.FAILED


def test_a_batch_set_aside_before_it_was_listed_is_listed_by_its_rerun(
    store: StateStore, tmp_path: Path
) -> None:
    record = finished_batch(store, tmp_path, {}, archived=False)
    store.put_batch(record.evolve(chunks=0, total=0, status=BatchStatus.FAILED))
    store.put_set_aside("house", {"batch_id": "house", "reason": "crash loop"})
    reopened = start_rerun(store, "house", only_failed=False)
    assert reopened.phase == "enumerating"
    assert store.set_aside_entries() == []


def test_a_kill_after_the_intent_resumes_the_rerun_instead_of_a_wiped_done_batch(
    store: StateStore, tmp_path: Path
) -> None:
    finished_batch(store, tmp_path, MIXED)
    intent = begin_rerun(store, "house", only_failed=True)  # then the daemon is killed
    stored = store.get_batch("house")
    assert stored == intent
    assert stored.phase == RERUN_PHASE  # not "done": the next start resumes it
    failed = store.get_image("house", "b.jpg")
    assert failed is not None
    assert failed.status == ImageStatus.FAILED  # nothing reset yet
    reopened = finish_rerun(store, stored, None)
    assert reopened.phase == "running"
    assert finish_rerun(store, reopened, None) == reopened  # resumed twice: no change
    statuses = {p: store.get_image("house", p).status for p in MIXED}  # type: ignore[union-attr]
    assert statuses["b.jpg"] == statuses["d.jpg"] == ImageStatus.PENDING
    assert statuses["a.jpg"] == ImageStatus.DONE
