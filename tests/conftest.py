"""Shared fixtures: the corpora, isolated actor registry, and a real-daemon harness."""

from __future__ import annotations

import gc
import threading
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


@pytest.fixture(autouse=True)
def _no_leaked_actor_threads() -> Iterator[None]:
    yield
    gc.collect()
    leaked = [
        t.name for t in threading.enumerate() if t.name.startswith(("Actor", "Batch", "Image"))
    ]
    leaked = [name for name in leaked if "Actor" in name]
    assert not leaked, f"leaked actor threads: {leaked}"
