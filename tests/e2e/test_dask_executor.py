"""The Dask executor end to end: a real `dask scheduler`, two real `dask worker` processes on
127.0.0.1, and the real daemon; the same exactly-once results whatever dies mid-batch.

One cluster serves the module (its workers start their analysis processes once); each test
gets it with its scheduler and both workers up, whatever the test before killed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medianalysed.crashpoints import CRASH_ENV
from tests.dask_cluster import DaskCluster, kill_pid, wait_for_pid_gone
from tests.e2e.harness import DaemonProcess, free_port, slow_photos, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHOTOS = 10
POISON = "poison.heic"  # a worker analysing a file of this name dies (the crash point)


@pytest.fixture(scope="module")
def _module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    root = tmp_path_factory.mktemp("dask")
    started = DaskCluster(root, worker_env={CRASH_ENV: f"dask-worker:{POISON}"}).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(_module_cluster: DaskCluster) -> DaskCluster:
    """The module's cluster with its scheduler and all its workers running."""
    if _module_cluster.scheduler is None:
        _module_cluster.start_scheduler()
    _module_cluster.respawn_workers()
    _module_cluster.wait_for_workers(_module_cluster.size)
    return _module_cluster


def _daemon(tmp_path: Path, cluster: DaskCluster, **overrides: Any) -> DaemonProcess:
    config = write_config(
        tmp_path,
        executor={"kind": "dask", "address": cluster.address},
        processing={
            "workers": 2,
            "retry_backoff_seconds": [0.2],
            **overrides.pop("processing", {}),
        },
        **overrides,
    )
    return DaemonProcess(tmp_path, config).start()


def _drop(process: DaemonProcess, name: str, files: dict[str, bytes]) -> None:
    staging = process.root / "staging" / name
    staging.mkdir(parents=True)
    for relpath, data in files.items():
        (staging / relpath).write_bytes(data)
    os.rename(staging, process.inbox / name)


def _finished(process: DaemonProcess, batch: str) -> int:
    try:
        status = json.loads((process.outbox / batch / "status.json").read_text(encoding="utf-8"))
        counts = status["counts"]
    except (OSError, ValueError, KeyError):
        return 0
    return int(counts["done"] + counts["failed"] + counts["skipped"])


def _exactly_once(process: DaemonProcess, batch: str, names: set[str]) -> list[dict[str, Any]]:
    process.summary(batch, timeout=120)
    records = process.results(batch)
    paths = [record["path"] for record in records]
    assert sorted(paths) == sorted(names)  # each image once, none twice
    return records


def test_a_killed_worker_costs_one_attempt_and_a_poison_image_ends_internal(
    tmp_path: Path, cluster: DaskCluster, corpora: Path
) -> None:
    photos = slow_photos(corpora, PHOTOS)
    process = _daemon(tmp_path, cluster, processing={"max_retries": 1})
    try:
        _drop(process, "big", {**photos, POISON: next(iter(photos.values()))})
        wait_for(lambda: _finished(process, "big") >= 2, timeout=90, what="2 images done")
        victim = next(iter(cluster.worker_pids().values()))
        kill_pid(victim)  # mid-image: one is always running on each worker
        wait_for_pid_gone(victim)
        records = {r["path"]: r for r in _exactly_once(process, "big", {*photos, POISON})}
    finally:
        process.stop_quietly()
    poison = records.pop(POISON)
    assert poison["status"] == "failed"
    assert poison["error"]["code"] == "INTERNAL"
    assert poison["attempts"] == 2  # max_retries 1: two worker deaths, then INTERNAL
    assert "died" in poison["error"]["message"]
    assert all(r["status"] == "done" for r in records.values())
    # The image that was on the SIGKILLed worker ran again: that cost it one attempt.
    assert any(r["attempts"] == 2 for r in records.values())


def test_a_daemon_sigkill_while_tasks_run_on_the_cluster_gives_exactly_once_results(
    tmp_path: Path, cluster: DaskCluster, corpora: Path
) -> None:
    photos = slow_photos(corpora, PHOTOS)
    first = _daemon(tmp_path, cluster)
    try:
        _drop(first, "big", photos)
        wait_for(lambda: 2 <= _finished(first, "big") < PHOTOS - 2, timeout=90, what="a part")
        first.kill()  # its tasks still run on the workers: their results must go nowhere
        assert not (first.outbox / "big" / "summary.json").exists()
        second = DaemonProcess(tmp_path, first.config).start()
        try:
            records = _exactly_once(second, "big", set(photos))
            assert all(r["status"] == "done" for r in records)
            assert second.terminate() == 0
        finally:
            second.stop_quietly()
    finally:
        first.stop_quietly()


def test_a_scheduler_that_goes_away_pauses_the_batch_and_it_resumes_when_it_returns(
    tmp_path: Path, cluster: DaskCluster, corpora: Path
) -> None:
    photos = slow_photos(corpora, PHOTOS)
    port = free_port()
    process = _daemon(tmp_path, cluster, listen=f"127.0.0.1:{port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            # Ready once the executor has reached the scheduler (READY=1 does not wait for it).
            wait_for(lambda: http.get("/readyz").status_code == 200, what="ready")
            _drop(process, "big", photos)
            wait_for(lambda: _finished(process, "big") >= 2, timeout=90, what="2 images done")
            cluster.stop_scheduler()
            wait_for(lambda: http.get("/readyz").status_code == 503, what="/readyz 503")
            assert "medianalysed_executor_available 0.0" in http.get("/metrics").text
            assert "new images wait until it returns" in process.log_text()
            paused_at = _finished(process, "big")
            assert paused_at < PHOTOS
            cluster.start_scheduler()

            def ready_again() -> bool:
                cluster.respawn_workers()  # a worker that exited without its scheduler
                return http.get("/readyz").status_code == 200

            wait_for(ready_again, timeout=90, what="ready again")
            records = _exactly_once(process, "big", set(photos))
            assert "medianalysed_executor_available 1.0" in http.get("/metrics").text
    finally:
        process.stop_quietly()
    assert all(r["status"] == "done" for r in records)
    # Lost with the scheduler is not the image's fault: no attempt was charged for it.
    assert all(r["attempts"] == 1 for r in records)
    log = process.log_text()
    assert "answers with 2 worker(s)" in log
    assert "cannot run medianalysed" not in log  # every worker passed its check
    assert "cannot see" not in log
    assert "allowed-failures" not in log  # read from the scheduler, and 0 as configured


def test_an_empty_address_starts_a_local_cluster_that_analyses_and_stops_with_the_daemon(
    tmp_path: Path, corpora: Path
) -> None:
    config = write_config(
        tmp_path, executor={"kind": "dask", "address": ""}, processing={"workers": 1}
    )
    process = DaemonProcess(tmp_path, config).start()
    try:
        photos = slow_photos(corpora, 2)
        _drop(process, "small", photos)
        records = _exactly_once(process, "small", set(photos))
        assert all(r["status"] == "done" for r in records)
        assert process.terminate() == 0
    finally:
        process.stop_quietly()
    assert "started a local Dask cluster of 1 worker(s)" in process.log_text()
