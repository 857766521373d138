"""End-to-end: damaged state databases, on real files damaged with Python, and the real daemon.

A first daemon finishes a batch (its input kept in the inbox, so a lost claim would run it
again) and stops. Then one database at a time is damaged — its header, pages in the
middle, or truncated — and the daemon started again: it must start, move the damaged
database aside with a timestamp, say what was lost, never redo or re-notify the finished
batch, and process a new batch. A database damaged while the daemon runs makes it exit 75
(marked for repair), and the next start repairs it and finishes the interrupted work. A
state directory that cannot be used exits 74 (which systemd does not restart).

The first daemon runs once per module; each test starts from a copy of what it wrote (the
inbox itself stays: a claim is its entry's inode, a copy would be a new drop).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

import pytest

from medianalysed.errors import ExitCode
from medianalysed.staterepair import DATABASES
from tests.corpora import require_corpora
from tests.e2e.harness import DaemonProcess, write_config
from tests.e2e.test_operations import drop

pytestmark = pytest.mark.e2e

PAGE = 4096
FIRST = "first"
DAMAGES = ("header", "middle", "truncated")
GPS = "exif-samples/jpg/gps"
PHOTOS = ("DSCN0010.jpg", "DSCN0012.jpg")


class _Receiver(BaseHTTPRequestHandler):
    deliveries: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event = self.headers.get("X-Medianalysed-Event")
        # Only terminal events are exactly-once (SPEC §8); a batch that runs past
        # `progress_seconds` also sends batch.progress, which the repair does not promise.
        if event != "batch.progress":
            _Receiver.deliveries.append({"event": event, "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1 recording every delivery (one for the module)."""
    _Receiver.deliveries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.deliveries
    server.shutdown()
    server.server_close()


def _config(root: Path, hook: str) -> Path:
    return write_config(
        root,
        processing={"workers": 1},
        inbox={"settle_seconds": 0.5, "on_complete": "keep"},
        webhook={"url": hook},
        downloads={"allow_private_networks": True},
    )


def _start(root: Path, config: Path, started: list[DaemonProcess]) -> DaemonProcess:
    process = DaemonProcess(root, config)
    started.append(process)
    return process.start()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.stop_quietly()


@dataclass(frozen=True)
class Finished:
    """A stopped daemon's root after one finished batch whose webhook was delivered."""

    root: Path
    config: Path
    deliveries: list[dict[str, Any]]

    @property
    def state(self) -> Path:
        return self.root / "state"


# What a daemon changes under its root; the inbox stays (its entries' inodes are their claims).
_WRITTEN = ("state", "outbox", "archive", "daemon.log")


@pytest.fixture(scope="module")
def _finished_once(
    tmp_path_factory: pytest.TempPathFactory,
    receiver: tuple[str, list[dict[str, Any]]],
) -> tuple[Finished, Path, list[dict[str, Any]]]:
    """The finished state, made once per module, and a copy of what its daemon wrote."""
    hook, deliveries = receiver
    corpora = require_corpora()
    root = tmp_path_factory.mktemp("repair")
    config = _config(root, hook)
    process = DaemonProcess(root, config)
    try:
        process.start()
        drop(process.inbox, FIRST, {name: corpora / GPS / name for name in PHOTOS})
        process.until((process.outbox / FIRST / "summary.json").is_file, what="first finished")
        process.until(lambda: len(deliveries) == 1, what="its webhook delivered")
        assert process.terminate() == 0
    finally:
        process.stop_quietly()
    saved = tmp_path_factory.mktemp("repair-saved")
    for name in _WRITTEN:
        _copy(root / name, saved / name)
    return Finished(root, config, deliveries), saved, list(deliveries)


@pytest.fixture
def finished_state(
    _finished_once: tuple[Finished, Path, list[dict[str, Any]]],
) -> Finished:
    """The finished state as its daemon left it, whatever the previous test did to it."""
    finished, saved, delivered = _finished_once
    for name in _WRITTEN:
        _remove(finished.root / name)
        _copy(saved / name, finished.root / name)
    _remove(finished.root / "staging")
    for entry in (finished.root / "inbox").iterdir():
        if entry.name != FIRST:
            _remove(entry)
    finished.deliveries[:] = delivered
    return finished


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def checkpoint(db: Path) -> None:
    """Fold the write-ahead log into the database file, so damage to the file is seen."""
    connection = sqlite3.connect(str(db))
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def damage(db: Path, how: str) -> None:
    checkpoint(db)
    size = db.stat().st_size
    noise = random.Random(how).randbytes
    with db.open("r+b") as handle:
        if how == "header":
            handle.write(noise(100))
        elif how == "middle":
            # Every page but the first (header, schema) and the last: the tables' pages.
            pages = size // PAGE
            assert pages >= 3, f"{db} has only {pages} pages"
            handle.seek(PAGE)
            handle.write(noise(PAGE * (pages - 2)))
        else:
            handle.truncate(size // 2)


# Every database, every kind of damage, and every kind on the batch records (the one rebuilt
# from the outbox); all 21 pairs pass, these 11 keep the suite short.
CASES = [
    *(("batches", how) for how in DAMAGES),
    ("images", "middle"),
    ("images", "truncated"),
    ("flags", "header"),
    ("control", "truncated"),
    ("content", "middle"),
    ("history", "header"),
    ("webhooks", "middle"),
    ("webhooks", "truncated"),
]


def test_the_cases_cover_every_database_and_every_damage() -> None:
    assert {name for name, _ in CASES} == set(DATABASES)
    assert {how for _, how in CASES} == set(DAMAGES)


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_a_damaged_database_is_moved_aside_and_rebuilt_without_redoing_finished_work(
    case: tuple[str, str],
    corpora: Path,
    finished_state: Finished,
    daemons: list[DaemonProcess],
) -> None:
    name, how = case
    state, deliveries = finished_state.state, finished_state.deliveries
    damage(state / name / "cache.db", how)

    process = _start(finished_state.root, finished_state.config, daemons)
    log = process.log_text()
    assert f"state database {name} is damaged" in log, log
    assert f"lost: {DATABASES[name]}" in log
    moved = sorted(p.name for p in state.iterdir() if p.name.startswith(f"{name}.corrupt-"))
    assert len(moved) == 1, moved

    drop(process.inbox, "after", _one(corpora))
    process.until((process.outbox / "after" / "summary.json").is_file, what="a new batch done")
    process.until(lambda: len(deliveries) == 2, what="the new batch's webhook")
    # The finished batch was neither redone (its input is still in the inbox) nor notified.
    assert sorted(p.name for p in process.outbox.iterdir()) == ["after", FIRST]
    assert [d["body"]["batch_id"] for d in deliveries] == [FIRST, "after"]
    assert process.terminate() == 0
    assert [d["body"]["batch_id"] for d in deliveries] == [FIRST, "after"]


def _one(corpora: Path) -> dict[str, Path]:
    return {"solo.jpg": corpora / GPS / "DSCN0021.jpg"}


def test_a_database_damaged_while_running_exits_75_and_the_next_start_repairs_it(
    corpora: Path,
    finished_state: Finished,
    daemons: list[DaemonProcess],
) -> None:
    root, config, deliveries = finished_state.root, finished_state.config, finished_state.deliveries
    images = finished_state.state / "images" / "cache.db"
    process = _start(root, config, daemons)
    damage(images, "middle")
    # A new batch: its actor's fresh connection reads the damaged pages.
    drop(process.inbox, "next", _one(corpora))
    assert process.process is not None
    code = process.process.wait(timeout=120)
    process._close()
    assert code == ExitCode.STATE_REPAIR, process.log_text()
    assert "is damaged" in process.log_text()

    restarted = _start(root, config, daemons)
    restarted.until((restarted.outbox / "next" / "summary.json").is_file, what="next finished")
    assert "state database images is damaged" in restarted.log_text()
    assert sorted(p.name for p in restarted.outbox.iterdir()) == [FIRST, "next"]
    restarted.until(lambda: len(deliveries) == 2, what="the webhook of next")
    assert restarted.terminate() == 0
    assert [d["body"]["batch_id"] for d in deliveries] == [FIRST, "next"]


def test_a_state_dir_that_is_a_file_exits_74(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").write_text("not a directory")
    process = DaemonProcess(tmp_path, config)
    with pytest.raises(AssertionError, match="daemon exited 74"):
        process.start()
    process.stop_quietly()
    assert "not a directory" in process.log_text()


def test_a_damaged_database_in_a_state_dir_that_cannot_change_exits_74(
    finished_state: Finished,
) -> None:
    """No repair is possible when the state directory is immutable: 74, not a restart loop."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory immutable (chattr +i)")
    state = finished_state.state
    damage(state / "batches" / "cache.db", "header")
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    if os.system(f"chattr +i {state} 2>/dev/null") != 0:
        pytest.skip("this filesystem does not support chattr +i")
    try:
        process = DaemonProcess(finished_state.root, finished_state.config)
        with pytest.raises(AssertionError, match="daemon exited 74"):
            process.start()
        process.stop_quietly()
        assert f"state_dir {state} is not readable and writable" in process.log_text()
    finally:
        os.system(f"chattr -i {state}")
