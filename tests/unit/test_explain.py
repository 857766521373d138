"""`medianalysed explain PATH`, on a real config, StateStore and outbox files in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medianalysed import names
from medianalysed.config import Config, config_from_dict
from medianalysed.explain import explain
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.state import BatchRecord, ImageRecord, StateStore
from tests.seeding import seed_batch

CORRUPT = {"code": "CORRUPT", "message": "cannot decode", "retryable": False}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    data: dict[str, Any] = {
        "daemon": {"state_dir": "state"},
        "inbox": [
            {
                "name": "default",
                "path": "inbox",
                "outbox": "outbox",
                "archive": "archive",
                "settle_seconds": 5,
                "ignore": ["*.xmp"],
            }
        ],
    }
    loaded = config_from_dict(data, base_dir=tmp_path, source=None)
    for name in ("inbox", "outbox", "archive"):
        (tmp_path / name).mkdir()
    return loaded


@pytest.fixture
def store(config: Config) -> Iterator[StateStore]:
    state = StateStore(config.daemon.state_dir)
    yield state
    state.close()


def text(config: Config, store: StateStore, path: Path) -> str:
    return "\n".join(explain(config, store, path))


def add_batch(
    store: StateStore,
    root: Path,
    images: dict[str, ImageStatus],
    *,
    batch_id: str = "house",
    phase: str = "done",
    results: list[dict[str, Any]] | None = None,
    loose: bool = False,
) -> BatchRecord:
    """A batch record; when `phase` is done its input sits in the archive."""
    name = f"{batch_id}.jpg" if loose else batch_id
    source = root / "inbox" / name
    done = phase == "done"
    input_path = root / "archive" / batch_id if done else source
    if loose:
        input_path.write_bytes(b"x")
    else:
        input_path.mkdir(parents=True)
        for path in images:
            (input_path / path).parent.mkdir(parents=True, exist_ok=True)
            (input_path / path).write_bytes(b"x")
    outbox_dir = root / "outbox" / batch_id
    outbox_dir.mkdir(parents=True)
    if results is not None:
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in results]
        (outbox_dir / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [
        ImageRecord(
            path=path,
            status=status,
            attempts=1 if status.terminal else 0,
            error=CORRUPT if status == ImageStatus.FAILED else None,
        )
        for path, status in sorted(images.items())
    ]
    return seed_batch(
        store,
        root,
        batch_id,
        records,
        source=str(source),
        loose_file=loose,
        status=BatchStatus.PARTIAL if done else BatchStatus.PROCESSING,
        phase=phase,
        archived_to=str(input_path) if done else None,
    )


def result(path: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"path": path, "status": status, "error": None, "duplicates": None, **fields}


# -- inside an inbox, not started ------------------------------------------------------


def test_the_inbox_itself(config: Config, store: StateStore, tmp_path: Path) -> None:
    assert "is the inbox 'default'" in text(config, store, tmp_path / "inbox")


@pytest.mark.parametrize(
    ("relpath", "rule"),
    [
        (".DS_Store", "hidden names"),
        ("batch/.ready", "hidden names"),
        ("batch/Thumbs.db", "built-in pattern 'Thumbs.db'"),
        ("batch/thumbs.db", "built-in pattern 'Thumbs.db'"),  # Windows writes both cases
        ("batch/@eaDir/thumb.jpg", "built-in pattern '@eaDir'"),
        ("batch/__MACOSX/a.jpg", "built-in pattern '__MACOSX'"),
        ("batch/._a.jpg", "hidden names"),
        ("batch/a.xmp", "ignore pattern '*.xmp'"),
        ("upload.part", "temporary names"),
        ("UPLOAD.TMP", "temporary names"),
    ],
)
def test_ignored_names_say_which_rule(
    config: Config, store: StateStore, tmp_path: Path, relpath: str, rule: str
) -> None:
    lines = explain(config, store, tmp_path / "inbox" / relpath)
    assert len(lines) == 1
    assert "is ignored" in lines[0]
    assert rule in lines[0]


def test_a_temporary_suffix_inside_a_batch_is_not_ignored(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    # Only what is dropped at the inbox root is skipped for a temporary suffix; the batch
    # enumeration analyses `scan.part` like any other file.
    (tmp_path / "inbox" / "batch").mkdir()
    (tmp_path / "inbox" / "batch" / "scan.part").write_bytes(b"x")
    assert "ignored" not in text(config, store, tmp_path / "inbox" / "batch" / "scan.part")


def test_a_folder_still_settling(config: Config, store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "arriving").mkdir()
    (tmp_path / "inbox" / "arriving" / "a.jpg").write_bytes(b"x")
    out = text(config, store, tmp_path / "inbox" / "arriving")
    assert "waiting to settle" in out
    assert "no ready marker '.ready'" in out
    assert "settle_seconds = 5" in out


def test_a_folder_with_its_ready_marker(config: Config, store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "marked").mkdir()
    (tmp_path / "inbox" / "marked" / ".ready").write_bytes(b"")
    assert "has its ready marker" in text(config, store, tmp_path / "inbox" / "marked")


def test_a_folder_held_by_pause(config: Config, store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "held").mkdir()
    store.set_paused(True)
    out = text(config, store, tmp_path / "inbox" / "held" / "")
    assert "the daemon is paused" in out
    assert "medianalysed resume" in out


def test_a_missing_path(config: Config, store: StateStore, tmp_path: Path) -> None:
    assert text(config, store, tmp_path / "inbox" / "ghost").endswith("does not exist")


def test_control_files_are_never_images(config: Config, store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "opts").mkdir()
    (tmp_path / "inbox" / "opts" / "batch.toml").write_text("", encoding="utf-8")
    out = text(config, store, tmp_path / "inbox" / "opts" / "batch.toml")
    assert "holds batch options" in out


# -- batches -------------------------------------------------------------------------------


def test_a_running_batch_and_its_pending_image(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    add_batch(store, tmp_path, {"a.jpg": ImageStatus.PENDING}, phase="running")
    lines = explain(config, store, tmp_path / "inbox" / "house" / "a.jpg")
    assert lines == [
        "house is batch house: processing (running)",
        "a.jpg: pending after 0 attempts",
    ]


def test_an_archived_image_that_failed_shows_its_code(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    add_batch(
        store,
        tmp_path,
        {"a.jpg": ImageStatus.DONE, "broken.jpg": ImageStatus.FAILED},
        results=[result("a.jpg", "done"), result("broken.jpg", "failed", error=CORRUPT)],
    )
    out = text(config, store, tmp_path / "archive" / "house" / "broken.jpg")
    assert "belongs to batch house: partial (done)" in out
    assert f"moved to {tmp_path / 'archive' / 'house'}" in out
    assert "broken.jpg: failed after 1 attempt" in out
    assert "CORRUPT: cannot decode (retryable: False)" in out


def test_a_duplicate_says_of_what_where_and_why(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    match = {
        "tier": "near",
        "path": "kitchen/b.jpg",
        "seen_in": "older",
        "distances": {"phash": 3, "dhash": 5},
    }
    add_batch(
        store,
        tmp_path,
        {'say "cheese".jpg': ImageStatus.DONE},
        results=[result('say "cheese".jpg', "done", duplicates=[match])],
    )
    out = text(config, store, tmp_path / "archive" / "house" / 'say "cheese".jpg')
    assert "near duplicate of kitchen/b.jpg in batch older (phash 3, dhash 5)" in out


def test_a_bounded_list_of_duplicates_says_how_many_more_and_which_group(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    match = {"tier": "near", "path": "b.jpg", "seen_in": None, "distances": {"phash": 0}}
    add_batch(
        store,
        tmp_path,
        {"c.jpg": ImageStatus.DONE},
        results=[
            result(
                "c.jpg",
                "done",
                duplicates=[match],
                duplicate_count=9999,
                duplicate_group="a.jpg",
            )
        ],
    )
    out = text(config, store, tmp_path / "archive" / "house" / "c.jpg")
    assert "near duplicate of b.jpg (phash 0)" in out
    assert "... 9998 more duplicates, 9999 in all" in out
    assert "in the duplicate group of a.jpg (see summary.json)" in out


def test_an_outbox_file(config: Config, store: StateStore, tmp_path: Path) -> None:
    add_batch(store, tmp_path, {"a.jpg": ImageStatus.DONE}, results=[result("a.jpg", "done")])
    out = text(config, store, tmp_path / "outbox" / "house" / "results.jsonl")
    assert "it is an outbox file of that batch" in out


def test_a_loose_file_batch_shows_its_image(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    add_batch(
        store,
        tmp_path,
        {"photo.jpg": ImageStatus.FAILED},
        batch_id="photo",
        loose=True,
        phase="running",
    )
    lines = explain(config, store, tmp_path / "inbox" / "photo.jpg")
    assert lines[0] == "photo.jpg is batch photo: processing (running)"
    assert "photo.jpg: failed after 1 attempt" in lines


def test_a_new_folder_with_the_name_of_an_archived_batch_is_not_that_batch(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    add_batch(store, tmp_path, {"a.jpg": ImageStatus.DONE}, results=[result("a.jpg", "done")])
    (tmp_path / "inbox" / "house").mkdir()
    out = text(config, store, tmp_path / "inbox" / "house")
    assert "waiting to settle" in out
    assert "an earlier house became batch house: partial" in out


def test_paths_outside_everything(config: Config, store: StateStore, tmp_path: Path) -> None:
    assert "not inside any configured" in text(config, store, tmp_path / "elsewhere")
    out = text(config, store, tmp_path / "archive" / "stray")
    assert "in inbox default's archive" in out
    assert "no batch in the state store refers to it" in out


FROM_RESULTS = {"code": "IO_ERROR", "message": "as results.jsonl has it", "retryable": True}


def test_an_undecodable_name_finds_its_record(
    config: Config, store: StateStore, tmp_path: Path
) -> None:
    key = names.from_bytes(b"IMG\xff.jpg")
    literal = names.from_bytes(b"IMG\\xff.jpg")  # the same `path`, told apart by path_bytes
    add_batch(
        store,
        tmp_path,
        {key: ImageStatus.FAILED, literal: ImageStatus.DONE},
        results=[
            result(**names.path_fields(literal), status="done"),
            result(**names.path_fields(key), status="failed", error=FROM_RESULTS),
        ],
    )
    out = text(config, store, tmp_path / "archive" / "house" / key)
    assert "failed after 1 attempt" in out
    assert "IO_ERROR: as results.jsonl has it" in out, "found in results.jsonl by its exact name"
