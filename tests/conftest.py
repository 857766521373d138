"""Shared fixtures: the corpora, isolated actor registry, and a real-daemon harness."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from tests.corpora import CORPORA, ESSENTIAL_CORPUS, available, require_corpora


def pytest_report_header() -> str:
    found = "found" if available() else "MISSING"
    return f"corpora: {CORPORA} ({found}); essential corpus: {ESSENTIAL_CORPUS}"


@pytest.fixture
def corpora() -> Path:
    """The shared corpora of real images; a loud failure where they are missing."""
    return require_corpora()


@pytest.fixture
def essential_corpus() -> Path:
    """The small generated corpus that ships with the repository."""
    assert ESSENTIAL_CORPUS.is_dir(), f"{ESSENTIAL_CORPUS} is missing: it is part of the repo"
    return ESSENTIAL_CORPUS


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """No actor outlives its test (pykka's own suite does the same)."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=5)


def _actor_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(("Actor", "Batch", "Image")) and "Actor" in t.name
    ]


@pytest.fixture(autouse=True)
def _no_leaked_actor_threads() -> Iterator[None]:
    yield
    gc.collect()
    # pykka unregisters an actor before its on_stop runs, so `stop_all` does not wait for one
    # that stopped itself (a finished batch): give such a thread a bounded moment to end.
    deadline = time.monotonic() + 5
    for thread in _actor_threads():
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in _actor_threads()]
    assert not leaked, f"leaked actor threads: {leaked}"
