"""Disk-fault classification, the fault board, the guarded cache on a real full tmpfs, and the
start-up integrity check on databases damaged at generated places."""

from __future__ import annotations

import errno
import logging
import os
import random
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed import diskfaults, outbox
from medianalysed.diskfaults import (
    DISK_ERRNOS,
    FaultBoard,
    classified,
    corruption_seen,
    reset_corruption,
    sqlite_fault,
    write_failure,
)
from medianalysed.errors import (
    DiskWriteError,
    OutboxDiskWriteError,
    OutboxError,
    StateCorruptError,
    StateUnusableError,
)
from medianalysed.state import StateStore, open_durable_cache
from medianalysed.staterepair import check_and_repair, database_problem


@given(st.sampled_from(sorted(errno.errorcode)))
def test_only_errors_of_the_disk_are_write_failures(number: int) -> None:
    failure = write_failure(OSError(number, os.strerror(number), "/x"), "outbox")
    if number in DISK_ERRNOS:
        assert isinstance(failure, DiskWriteError)
        assert failure.errno_name == errno.errorcode[number]
        assert failure.path == "/x"
        assert errno.errorcode[number] in str(failure)
    else:
        assert failure is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("database or disk is full", "ENOSPC"),
        ("disk I/O error", "EIO"),
        ("attempt to write a readonly database", "EROFS"),
        ("database disk image is malformed", "corrupt"),
        ("file is not a database", "corrupt"),
        ("no such table: Cache", None),
        ("database is locked", None),
    ],
)
def test_sqlite_errors_are_classified_by_what_they_say(message: str, expected: str | None) -> None:
    fault = sqlite_fault(sqlite3.OperationalError(message), "state", "/s/images")
    if expected is None:
        assert fault is None
    elif expected == "corrupt":
        assert isinstance(fault, StateCorruptError)
    else:
        assert isinstance(fault, DiskWriteError)
        assert fault.errno_name == expected
        assert fault.target == "state"


def test_a_bug_is_not_mistaken_for_a_disk_fault(tmp_path: Path) -> None:
    with pytest.raises(KeyError), classified("state", tmp_path):
        raise KeyError("a bug stays a bug")
    with pytest.raises(FileNotFoundError), classified("outbox", tmp_path):
        (tmp_path / "missing").read_text()


def test_the_board_logs_transitions_not_attempts_and_names_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[tuple[str, str]] = []
    board = FaultBoard(on_failure=lambda target, name: counted.append((target, name)))
    failure = DiskWriteError("outbox", "/o/b/status.json", "ENOSPC", "No space left on device")
    with caplog.at_level(logging.INFO, logger="medianalysed.diskfaults"):
        assert board.failed("batch b", failure, retry_in=1)
        for _ in range(5):
            assert not board.failed("batch b", failure, retry_in=2)
        assert board.failing("batch b")
        assert board.reasons() == [
            "cannot write outbox at /o/b/status.json (ENOSPC): batch b paused"
        ]
        board.recovered("batch b")
        board.recovered("batch b")
    assert counted == [("outbox", "ENOSPC")] * 6
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "batch b paused" in messages[0]
    assert "/o/b/status.json" in messages[0]
    assert "ENOSPC" in messages[0]
    assert "batch b resumed" in messages[1]
    assert board.reasons() == []


def test_an_outbox_write_failure_is_still_an_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    error = outbox._outbox_error(tmp_path / "ro" / "x", OSError(errno.EROFS, "Read-only"))
    assert isinstance(error, OutboxDiskWriteError)
    assert isinstance(error, OutboxError)
    assert error.errno_name == "EROFS"


# --- the real thing: a full tmpfs --------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        block = b"\0" * 65536
        while block:
            try:
                handle.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                block = block[: len(block) // 2]
    return filler


def _write_until_refused(cache: object) -> None:
    for index in range(10_000):
        cache.set(f"key{index}", "v" * 4000)  # type: ignore[attr-defined]


def test_a_full_disk_under_the_state_raises_write_failures_then_works_again(
    small_tmpfs: Path,
) -> None:
    cache = open_durable_cache(small_tmpfs / "images", what="test")
    try:
        cache.set("before", "x")
        filler = _fill(small_tmpfs)
        with pytest.raises(DiskWriteError) as raised:
            _write_until_refused(cache)
        assert raised.value.target == "state"
        assert raised.value.errno_name == "ENOSPC"
        assert cache.get("before") == "x"  # reads still work
        filler.unlink()
        cache.set("after", "y")
        assert cache.get("after") == "y"
    finally:
        cache.close()


def test_a_full_disk_under_the_outbox_raises_an_outbox_write_failure(small_tmpfs: Path) -> None:
    _fill(small_tmpfs)
    with pytest.raises(OutboxDiskWriteError) as raised:
        outbox.write_json_atomic(small_tmpfs / "status.json", {"x": "y" * 10000})
    assert raised.value.errno_name == "ENOSPC"
    assert not [p for p in small_tmpfs.iterdir() if p.name.endswith(".tmp")]


# --- damaged databases ---------------------------------------------------------------------


def _database(tmp_path: Path, rows: int = 200) -> Path:
    store = StateStore(tmp_path / "state")
    for index in range(rows):
        store.put_progress(f"b{index}", "x" * 100)
    store.close()
    db = tmp_path / "state" / "flags" / "cache.db"
    connection = sqlite3.connect(str(db))
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return db


@settings(deadline=None, max_examples=25)
@given(data=st.data())
def test_damage_anywhere_is_reported_never_raised(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    db = _database(tmp_path_factory.mktemp("damage"))
    size = db.stat().st_size
    start = data.draw(st.integers(0, size - 1), label="start")
    length = data.draw(st.integers(1, 8192), label="length")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    truncate = data.draw(st.booleans(), label="truncate")
    with db.open("r+b") as handle:
        if truncate:
            handle.truncate(start)
        else:
            handle.seek(start)
            handle.write(random.Random(seed).randbytes(length))
    problem = database_problem(db)  # never raises
    assert problem is None or isinstance(problem, str)
    if truncate and start < 100:
        assert problem is not None  # no header left
    if not truncate and start < 16:
        assert problem is not None  # the magic string is gone


def test_a_damaged_database_is_moved_aside_and_recreated(tmp_path: Path) -> None:
    db = _database(tmp_path)
    with db.open("r+b") as handle:
        handle.write(b"garbage" * 20)
    damage = check_and_repair(tmp_path / "state", [])
    assert [found.name for found in damage] == ["flags"]
    assert damage[0].moved_to.name.startswith("flags.corrupt-")
    assert (damage[0].moved_to / "cache.db").is_file()
    assert database_problem(tmp_path / "state" / "flags" / "cache.db") is None
    assert check_and_repair(tmp_path / "state", []) == []


def test_a_state_dir_that_is_a_file_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("x")
    with pytest.raises(StateUnusableError, match="not a directory"):
        check_and_repair(tmp_path / "state", [])


def test_a_malformed_read_at_run_time_is_latched_and_marked_for_the_next_start(
    tmp_path: Path,
) -> None:
    reset_corruption()
    directory = tmp_path / "images"
    directory.mkdir()
    try:
        with pytest.raises(StateCorruptError), classified("state", directory):
            raise sqlite3.DatabaseError("database disk image is malformed")
        latched = corruption_seen()
        assert latched is not None
        assert str(directory) in str(latched)
        assert (directory / diskfaults.DAMAGED_MARKER).is_file()
    finally:
        reset_corruption()


def test_undecodable_text_from_the_state_is_damage_and_elsewhere_a_bug(tmp_path: Path) -> None:
    reset_corruption()
    try:
        with pytest.raises(StateCorruptError), classified("state", tmp_path):
            b"\xd8".decode()
        assert corruption_seen() is not None
    finally:
        reset_corruption()
    with pytest.raises(UnicodeDecodeError), classified("outbox", tmp_path):
        b"\xd8".decode()
