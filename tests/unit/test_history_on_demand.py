"""The history index opened at its first use: once for every thread, never after close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from medianalysed.dupindex import HistoryIndex
from medianalysed.errors import StateError
from medianalysed.historyondemand import HistoryOnDemand
from tests.unit.test_dupindex import make


def test_an_unused_history_creates_nothing_and_closes_quietly(tmp_path: Path) -> None:
    history = HistoryOnDemand(tmp_path / "history", analysis_version=1)
    assert len(history) == 0
    history.close()
    assert not (tmp_path / "history").exists()


def test_threads_asking_at_once_share_one_index(tmp_path: Path) -> None:
    history = HistoryOnDemand(tmp_path / "history", analysis_version=1)
    opened: list[HistoryIndex] = []
    start = threading.Barrier(16)

    def first_use() -> None:
        start.wait(timeout=60)
        opened.append(history.open())

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(opened) == 16
    assert len({id(index) for index in opened}) == 1
    history.close()


def test_what_is_added_is_found_after_reopening(tmp_path: Path) -> None:
    history = HistoryOnDemand(tmp_path / "history", analysis_version=1)
    history.add_many([make("b1", "a.jpg", phash=7, sha="s1"), make("b1", "b.jpg", phash=9)])
    assert len(history) == 2
    history.close()
    reopened = HistoryOnDemand(tmp_path / "history", analysis_version=1)
    assert len(reopened.batch_ids("b1")) == 2
    assert len(reopened.content_ids(sha256="s1")) == 1
    reopened.close()


def test_a_closed_history_refuses_to_open_again(tmp_path: Path) -> None:
    history = HistoryOnDemand(tmp_path / "history", analysis_version=1)
    history.open()
    history.close()
    with pytest.raises(StateError, match="closed"):
        history.batch_ids("b1")
    unopened = HistoryOnDemand(tmp_path / "other", analysis_version=1)
    unopened.close()
    with pytest.raises(StateError, match="closed"):
        unopened.open()
