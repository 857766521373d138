"""The local executor: a pebble pool of `workers` processes on this machine (the default)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pebble

from medianalysed.config import InboxConfig
from medianalysed.warmup import start_pool_in_background
from medianalysed.worker import WorkerJob, pool_context, run_job, worker_initializer


class LocalExecutor:
    """`workers` forkserver processes; pebble kills one that overruns the timeout."""

    kind = "local"

    def __init__(self, *, workers: int, timeout_s: float, max_worker_memory: int) -> None:
        self._timeout_s = timeout_s
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            context=pool_context(),
            initializer=worker_initializer,
            initargs=(max_worker_memory,),
        )
        start_pool_in_background(self._pool)

    def submit(self, job: WorkerJob) -> Future[dict[str, Any]]:
        """Queue one job on the pool (pebble's timeout starts when a process takes it)."""
        future: Future[dict[str, Any]] = self._pool.schedule(
            run_job, args=(job,), timeout=self._timeout_s
        )
        return future

    def held(self, _future: Future[dict[str, Any]]) -> bool:
        """Never: the pool takes every job at once."""
        return False

    def broken(self) -> str | None:
        """The pool stops being active only when it broke (or was closed)."""
        return None if self._pool.active else "analysis process pool broken"

    def unavailable(self) -> str | None:
        """Local processes are always there."""
        return None

    def check_inboxes(self, _inboxes: Sequence[InboxConfig]) -> None:
        """The daemon's own watcher already checks its inboxes."""

    def notes(self) -> list[str]:
        """Nothing to remark."""
        return []

    def close(self) -> None:
        """Stop the processes (a running analysis is killed: it reruns at the next start)."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=10)
