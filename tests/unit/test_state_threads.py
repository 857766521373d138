"""Threads that use the state store and end leave no SQLite connection (file descriptor) behind."""

from __future__ import annotations

import os
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
