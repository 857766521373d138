"""Warm-up: the fork server, the workers and `analyze`'s state are ready before the first image."""

from __future__ import annotations

import json
import logging
import multiprocessing.forkserver
import os
import subprocess
import sys
from pathlib import Path

import pebble
import pytest

from medianalysed.config import WebhookConfig
from medianalysed.dupindex import HistoryIndex
from medianalysed.models import ANALYSIS_VERSION
from medianalysed.state import StateStore
from medianalysed.staterepair import DATABASES, check_and_repair
from medianalysed.warmup import (
    create_state_in_background,
    start_fork_server,
    start_pool_in_background,
)
from medianalysed.webhooks import WebhookDispatcher
from medianalysed.worker import forkserver_preload, pool_context, worker_initializer


def test_the_fork_server_runs_before_any_pool_exists() -> None:
    start_fork_server()
    server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    assert server._forkserver_pid is not None
    assert os.waitpid(server._forkserver_pid, os.WNOHANG) == (0, 0)  # started, still running


def test_the_pool_forks_its_workers_without_a_submit() -> None:
    pool = pebble.ProcessPool(max_workers=2, context=pool_context(), initializer=worker_initializer)
    try:
        start_pool_in_background(pool).join(timeout=60)
        assert pool.active
        assert os.getpid() not in {pool.schedule(os.getpid).result(timeout=60) for _ in range(4)}
    finally:
        pool.stop()
        pool.join(timeout=10)


def test_a_pool_closed_before_its_warm_up_ends_it_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = pebble.ProcessPool(max_workers=1, context=pool_context())
    pool.stop()
    pool.join(timeout=10)
    with caplog.at_level(logging.DEBUG, logger="medianalysed.warmup"):
        start_pool_in_background(pool).join(timeout=10)
    assert "worker pool closed before it started" in caplog.text


# Like the console script: the main module imports the CLI, and runs only as __main__.
MAIN_SCRIPT = """
import json
import os
import sys

from medianalysed.cli import main


def loaded():
    return sorted(sys.modules)


if __name__ == "__main__":
    import pebble

    from medianalysed.warmup import start_fork_server
    from medianalysed.worker import pool_context, worker_initializer

    start_fork_server()
    pool = pebble.ProcessPool(max_workers=2, context=pool_context(), initializer=worker_initializer)
    try:
        modules = pool.schedule(loaded).result(timeout=60)
    finally:
        pool.stop()
        pool.join(timeout=10)
    print(json.dumps(modules))
"""

PRELOADED = "import json, sys; import {}; print(json.dumps(sorted(sys.modules)))"


def imported_after_preload(script: Path) -> set[str]:
    """Modules a worker had when it ran its first job that the preload alone did not import."""
    script.write_text(MAIN_SCRIPT)
    run = [sys.executable, str(script)]
    worker = json.loads(subprocess.run(run, capture_output=True, check=True, timeout=120).stdout)
    preload = ", ".join(forkserver_preload())
    baseline = subprocess.run(
        [sys.executable, "-c", PRELOADED.format(preload)], capture_output=True, check=True
    )
    return set(worker) - set(json.loads(baseline.stdout))


def test_a_worker_imports_none_of_ours_nor_pebble_after_it_is_forked(tmp_path: Path) -> None:
    late = imported_after_preload(tmp_path / "main.py")
    ours = {name for name in late if name.split(".")[0] in {"medianalysed", "pebble", "asyncio"}}
    assert ours == set()


def test_state_created_in_advance_is_what_the_daemon_then_opens(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    create_state_in_background(state_dir).join(timeout=60)
    assert set(DATABASES) - {"content"} <= {path.name for path in state_dir.iterdir()}
    assert check_and_repair(state_dir, []) == []  # every database passes the start-up check
    store = StateStore(state_dir)
    history = HistoryIndex(store.history_dir, analysis_version=ANALYSIS_VERSION)
    try:
        with WebhookDispatcher(WebhookConfig(), store.webhooks_dir) as webhooks:
            assert webhooks.dead_letters() == []
        assert len(history) == 0
        assert store.writable()
    finally:
        history.close()
        store.close()


def test_state_that_cannot_be_created_in_advance_is_left_to_the_daemon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.DEBUG, logger="medianalysed.warmup"):
        create_state_in_background(blocker / "state").join(timeout=60)
    assert "creating the state in advance failed" in caplog.text
