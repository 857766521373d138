"""Threads that use (or open) the state store and end leave no SQLite connection behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from medianalysed.dupindex import HistoryIndex
from medianalysed.state import StateStore, release_thread_connections

THREADS = 40


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_threads(work: object, count: int = THREADS) -> None:
    for _ in range(count):
        thread = threading.Thread(target=work)  # type: ignore[arg-type]
        thread.start()
        thread.join()


def test_short_lived_threads_that_release_their_connections_leak_no_descriptor(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state")
    history = HistoryIndex(tmp_path / "state" / "history", analysis_version=1)
    try:

        def use_everything() -> None:
            store.get_batch("absent")
            store.writable()
            len(history)
            release_thread_connections()

        run_threads(use_everything, 3)  # warm up: WAL and shm files opened once
        before = open_fds()
        run_threads(use_everything)
        assert open_fds() <= before + 2
    finally:
        history.close()
        store.close()


def test_a_thread_may_use_the_store_again_after_releasing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    try:
        assert store.writable()
        release_thread_connections()
        assert store.writable()
        assert store.get_batch("absent") is None
    finally:
        store.close()


def test_stores_opened_together_leave_no_connection_of_the_opening_threads(
    tmp_path: Path,
) -> None:
    StateStore(tmp_path / "warm").close()
    before = open_fds()
    for index in range(10):  # created: the opening threads did the most work there
        StateStore(tmp_path / f"state-{index}").close()
    for index in range(10):  # opened again
        StateStore(tmp_path / f"state-{index}").close()
    assert open_fds() <= before + 2


WRITER = """
import sys
from pathlib import Path

from medianalysed.state import BatchRecord, StateStore

store = StateStore(Path(sys.argv[1]))
store.put_batch(BatchRecord(batch_id="b", inbox="in", source="/in/b", outbox_dir="/out/b"))
store.set_paused(True)
store.control.append({"verb": "cancel", "batch_id": "b"})
print("written", flush=True)
sys.stdin.read()  # until killed
"""


def test_stores_opened_together_keep_what_was_written_when_the_process_is_killed(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    store = StateStore(state_dir)
    try:
        record = store.get_batch("b")
        assert record is not None
        assert record.source == "/in/b"
        assert store.is_paused()
        assert store.control.popleft() == {"verb": "cancel", "batch_id": "b"}
    finally:
        store.close()
