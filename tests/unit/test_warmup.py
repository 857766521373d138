"""Pool warm-up: the fork server and the workers start before the first image is submitted."""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import os

import pebble
import pytest

from medianalysed.warmup import start_fork_server, start_pool_in_background
from medianalysed.worker import pool_context, worker_initializer


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
