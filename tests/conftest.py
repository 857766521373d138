"""Shared fixtures: the corpora, isolated actor registry, and a real-daemon harness."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

REPO = Path(__file__).resolve().parents[1]
# Beside the checkout, or where MEDIANALYSED_CORPORA says (git worktrees live elsewhere).
CORPORA = Path(os.environ.get("MEDIANALYSED_CORPORA") or REPO.parent / "shared" / "corpora")


@pytest.fixture
def corpora() -> Path:
    """The shared corpora of real images."""
    if not CORPORA.is_dir():
        pytest.skip(f"corpora not found at {CORPORA}")
    return CORPORA


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
