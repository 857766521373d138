"""What runs on a Dask worker: the same `run_job` as the local executor, in a process of its own.

A Dask task cannot be stopped once it runs, and a decoder that crashes would take the whole Dask
worker down with it. So each Dask worker process keeps a `LocalExecutor` of one analysis process
per worker thread: a hung decode is killed after `image_timeout_seconds`, a crash costs only that
process, and the memory limit applies, exactly as on one machine. The job names a path on the
shared mount (opened through `safeopen`, links out of the batch refused); only the record comes
back, so image bytes never travel through the scheduler.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import stat
import threading
from pathlib import PurePosixPath
from typing import Any

from medianalysed import __version__
from medianalysed.crashpoints import crash_point
from medianalysed.errors import ErrorCode
from medianalysed.executors.base import settle
from medianalysed.executors.local import LocalExecutor
from medianalysed.outcomes import error_json
from medianalysed.worker import WorkerJob

# Beyond the analysis' own timeout: the time to replace a killed process and answer.
ANSWER_MARGIN_S = 60.0
DAEMONIC_ADVICE = (
    "this Dask worker is a daemonic process and cannot start analysis processes: start it "
    "with DASK_DISTRIBUTED__WORKER__DAEMON=False (see the README, Dask executor)"
)

_lock = threading.Lock()
_executor: LocalExecutor | None = None


def analyse(job: WorkerJob, timeout_s: float, max_worker_memory: int) -> dict[str, Any]:
    """Analyse one image on this Dask worker; the outcome dict of `worker.run_job`."""
    crash_point("dask-worker", PurePosixPath(job.relpath).name)
    if multiprocessing.current_process().daemon:
        return {"error": error_json(ErrorCode.INTERNAL, DAEMONIC_ADVICE)}
    from distributed import get_worker  # noqa: PLC0415 - only on a Dask worker

    threads = get_worker().state.nthreads
    future = _local_executor(threads, timeout_s, max_worker_memory).submit(job)
    try:
        future.exception(timeout=timeout_s + ANSWER_MARGIN_S)
    except TimeoutError:
        future.cancel()
        message = "no analysis process of the Dask worker answered in time"
        return {"error": error_json(ErrorCode.TIMEOUT, message)}
    return settle(future, timeout_s)


def _local_executor(threads: int, timeout_s: float, max_worker_memory: int) -> LocalExecutor:
    global _executor  # noqa: PLW0603 - one pool per Dask worker process
    with _lock:
        if _executor is None:
            _executor = LocalExecutor(
                workers=threads,
                timeout_s=timeout_s,
                max_worker_memory=max_worker_memory,
            )
            # Stopped before multiprocessing joins this process's children at its exit: left
            # running, they would keep a Dask worker whose scheduler went away from exiting.
            multiprocessing.util.Finalize(None, _executor.close, exitpriority=10)
        return _executor


def check_worker(
    paths: list[str],
    timeout_s: float | None = None,
    max_worker_memory: int = 0,
    dask_worker: Any = None,
) -> dict[str, Any]:
    """What the daemon must know of this worker: its version, and the paths it cannot see.

    With `timeout_s`, the analysis processes are started now (a fork server importing the
    imaging stack takes seconds), not when the first image arrives. `dask_worker` is passed
    by `Client.run` (no task runs here, so `get_worker` knows of none).
    """
    unseen = {path: reason for path in paths if (reason := _unseen(path)) is not None}
    daemonic = multiprocessing.current_process().daemon
    if timeout_s is not None and dask_worker is not None and not daemonic:
        _local_executor(dask_worker.state.nthreads, timeout_s, max_worker_memory)
    return {"version": __version__, "daemonic": daemonic, "unseen": unseen}


def _unseen(path: str) -> str | None:
    try:
        status = os.stat(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISDIR(status.st_mode):
        return "not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "not readable"
    return None
