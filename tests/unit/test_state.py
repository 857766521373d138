"""The state store on a real diskcache in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import diskcache
import pytest

from medianalysed.errors import StateError
from medianalysed.models import BatchStatus, ImageStatus, Priority
from medianalysed.state import BatchRecord, ImageRecord, StateStore


@pytest.fixture
def store(tmp_path: Path):
    opened = StateStore(tmp_path / "state")
    yield opened
    opened.close()


def _record(batch_id: str = "b") -> BatchRecord:
    return BatchRecord(batch_id=batch_id, inbox="default", source="/in/b", outbox_dir="/out/b")


def test_batch_record_round_trips_every_field(store):
    record = _record().evolve(
        status=BatchStatus.RETRYING,
        phase="running",
        priority=Priority.HIGH,
        tags=("a", "b"),
        callback_url="https://example.invalid/cb",
        total=3,
        chunks=1,
        started_at="t0",
        final_counts={"done": 1},
        archived_to="/arch/b",
        note="n",
        loose_file=True,
        runs=2,
        bypass_cache=True,
    )
    store.put_batch(record)
    assert store.get_batch("b") == record
    assert store.get_batch("missing") is None


def test_claims_are_created_with_the_batch_and_released(store):
    store.create_batch(_record("b"), "default\x00b", "1:2")
    assert store.claim_for("default\x00b") == ("b", "1:2")
    assert [r.batch_id for r in store.iter_batches()] == ["b"]  # claims are not batches
    store.release_claim("default\x00b")
    assert store.claim_for("default\x00b") is None
    assert store.has_batch("b")


def test_images_and_path_chunks_stream_in_order(store):
    store.put_path_chunk("b", 0, ["a.jpg", "b.jpg"])
    store.put_path_chunk("b", 1, ["c/d.jpg"])
    record = _record().evolve(chunks=2, total=3)
    assert list(store.iter_paths(record)) == ["a.jpg", "b.jpg", "c/d.jpg"]
    image = ImageRecord(
        path="a.jpg",
        status=ImageStatus.FAILED,
        attempts=2,
        error={"code": "TIMEOUT", "message": "m", "retryable": True},
        next_attempt_at=5.0,
    )
    store.put_images("b", [image, ImageRecord(path="b.jpg", status=ImageStatus.DONE, result={})])
    assert store.get_image("b", "a.jpg") == image
    assert store.get_image("b", "b.jpg").status == ImageStatus.DONE
    assert store.get_image("b", "c/d.jpg") is None
    store.delete_batch_images(record)
    assert store.get_image("b", "a.jpg") is None
    assert list(store.iter_paths(record)) == []


def test_state_survives_reopening_and_is_shared_between_two_openers(tmp_path):
    first = StateStore(tmp_path / "state")
    second = StateStore(tmp_path / "state")  # the CLI, while the daemon runs
    try:
        first.put_batch(_record())
        second.set_paused(True)
        second.control.append({"verb": "cancel", "batch_id": "b"})
        assert second.get_batch("b") == _record()
        assert first.is_paused()
        assert first.control.popleft() == {"verb": "cancel", "batch_id": "b"}
        assert first.writable()
    finally:
        first.close()
        second.close()
    reopened = StateStore(tmp_path / "state")
    try:
        assert reopened.get_batch("b") == _record()
        assert len(reopened.control) == 0
    finally:
        reopened.close()


def test_an_incompatible_schema_is_refused_with_a_remedy(tmp_path):
    StateStore(tmp_path / "state").close()
    with diskcache.Cache(str(tmp_path / "state" / "flags")) as flags:  # a later build's state
        flags.set("schema_version", 999)
    with pytest.raises(StateError, match="move the directory aside"):
        StateStore(tmp_path / "state")


def test_an_unusable_state_dir_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=str(blocker)):
        StateStore(blocker / "state")


def test_image_texts_reads_many_records_as_get_image_does(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    try:
        odd = "caf\udce9.jpg"  # an undecodable byte: stored under a bytes key
        big = ImageRecord(path="big.jpg", result={"blob": "x" * 100_000})  # kept in a file
        records = [ImageRecord(path=f"{i}.jpg", attempts=i) for i in range(1200)]
        store.put_images("b", [*records, ImageRecord(path=odd, attempts=7), big])
        paths = [*(record.path for record in records), odd, "big.jpg", "missing.jpg"]
        got = [
            None if text is None else ImageRecord.from_json(text)
            for text in store.image_texts("b", paths)
        ]
        assert got == [store.get_image("b", path) for path in paths]
        assert got[-1] is None
        assert got[-2] == big
        assert got[-3] is not None
        assert got[-3].attempts == 7
    finally:
        store.close()
