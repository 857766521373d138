"""The executor seam: outcomes of failed futures, the local executor end to end."""

from __future__ import annotations

from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import pebble
import pytest

from medianalysed.config import Config
from medianalysed.executors import available_executors
from medianalysed.executors.base import REPLACED, settle
from medianalysed.executors.local import LocalExecutor
from medianalysed.models import AnalysisSettings
from medianalysed.worker import WorkerJob
from tests.pngs import RGB, write_flat_png


def _failed(exc: BaseException) -> Future[dict[str, Any]]:
    future: Future[dict[str, Any]] = Future()
    future.set_exception(exc)
    return future


def test_a_timeout_is_a_retryable_timeout_and_its_process_was_replaced() -> None:
    outcome = settle(_failed(TimeoutError()), 7.5)
    assert outcome["error"]["code"] == "TIMEOUT"
    assert outcome["error"]["retryable"] is True
    assert "image_timeout_seconds (7.5 s)" in outcome["error"]["message"]
    assert outcome[REPLACED] is True


def test_a_dead_process_is_internal_with_its_exit_code() -> None:
    outcome = settle(_failed(pebble.ProcessExpired("gone", code=-11)), 60)
    assert outcome["error"]["code"] == "INTERNAL"
    assert "exit code -11" in outcome["error"]["message"]
    assert outcome[REPLACED] is True


def test_any_other_failure_is_internal_with_its_type_and_no_replacement() -> None:
    outcome = settle(_failed(ValueError("odd")), 60)
    assert outcome["error"]["message"] == "ValueError: odd"
    assert REPLACED not in outcome


def test_a_cancelled_job_is_no_outcome() -> None:
    future: Future[dict[str, Any]] = Future()
    future.cancel()
    with pytest.raises(CancelledError):
        settle(future, 60)


def test_the_local_executor_analyses_by_path_and_refuses_a_link_out_of_the_batch(
    tmp_path: Path,
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    write_flat_png(batch / "a.png", 64, 48, colour=RGB)
    (tmp_path / "secret.png").write_bytes((batch / "a.png").read_bytes())
    (batch / "out.png").symlink_to(tmp_path / "secret.png")
    settings = AnalysisSettings.from_config(Config())
    executor = LocalExecutor(workers=1, timeout_s=30, max_worker_memory=0)
    try:
        futures = {
            name: executor.submit(
                WorkerJob(root=str(batch), relpath=name, settings=settings, content_dir=None)
            )
            for name in ("a.png", "out.png")
        }
        outcomes = {name: settle_when_done(future) for name, future in futures.items()}
        assert executor.broken() is None
        assert executor.unavailable() is None
        assert not executor.held(futures["a.png"])
    finally:
        executor.close()
    assert outcomes["a.png"]["result"]["file"]["size"] == (batch / "a.png").stat().st_size
    assert outcomes["out.png"]["error"]["code"] == "REFUSED"
    assert executor.broken() == "analysis process pool broken"


def settle_when_done(future: Future[dict[str, Any]]) -> dict[str, Any]:
    future.exception(timeout=60)  # a bounded wait for the worker process
    return settle(future, 30)


def test_local_is_always_available() -> None:
    assert available_executors()[0] == "local"
