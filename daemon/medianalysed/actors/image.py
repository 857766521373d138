"""ImageActor: analyses one image at a time, the unit of concurrency and failure.

The CPU work runs in a pebble worker process (no GIL, killable on timeout); the actor
only schedules it and turns the future's outcome into an `ImageAnalysed` message.
Nothing here waits on a future: the done-callback tells the actor itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pebble
import pykka

from medianalysed.downloads import Downloader
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.messages import AnalyseImage, ImageAnalysed, WorkerCrashed, WorkerIdle
from medianalysed.models import AnalysisSettings
from medianalysed.worker import WorkerJob, run_job

logger = logging.getLogger(__name__)

OVERDUE_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class _Overdue:
    """The pool never answered: a lost task must not hold a worker slot forever."""

    job: AnalyseImage


@dataclass(frozen=True, slots=True)
class _JobDone:
    job: AnalyseImage
    future: Future[dict[str, Any]]
    started: float


class ImageActor(pykka.ThreadingActor):
    """Runs one analysis at a time in the shared process pool."""

    def __init__(
        self,
        *,
        pool: pebble.ProcessPool,
        settings: AnalysisSettings,
        timeout_s: float,
        content_dir: Path | None,
        supervisor: pykka.ActorRef[Any],
        downloader: Downloader | None = None,
        on_process_replaced: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._settings = settings
        self._timeout_s = timeout_s
        self._content_dir = None if content_dir is None else str(content_dir)
        self._supervisor = supervisor
        self._downloader = downloader
        self._on_process_replaced = on_process_replaced
        self._current: AnalyseImage | None = None
        self._future: Future[dict[str, Any]] | None = None
        self._overdue_timer: threading.Timer | None = None
        self._started = 0.0

    def on_receive(self, message: Any) -> None:
        """Dispatch one message (runs in this actor's thread)."""
        match message:
            case AnalyseImage():
                self._start(message)
            case _JobDone():
                self._finish(message)
            case _Overdue():
                self._overdue(message)
            case _:
                super().on_receive(message)

    def on_stop(self) -> None:
        """Cancel the overdue timer so no thread outlives the actor."""
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Report the crash to the supervisor, which replaces this actor."""
        self._supervisor.tell(
            WorkerCrashed(
                worker=self.actor_ref,
                job=self._current,
                reason=f"{getattr(exception_type, '__name__', exception_type)}: {exception_value}",
            )
        )

    def _start(self, job: AnalyseImage) -> None:
        self._current = job
        started = time.monotonic()
        if job.source_url is not None:
            error = self._download(job)
            if error is not None:
                self._reply(job, None, error, started)
                return
        work = WorkerJob(
            file_path=job.file_path,
            settings=self._settings,
            content_dir=self._content_dir,
            source_url=job.source_url,
            bypass_cache=job.bypass_cache,
        )
        try:
            future = self._pool.schedule(run_job, args=(work,), timeout=self._timeout_s)
        except RuntimeError:  # the pool is closing: the daemon is shutting down
            self._reply(job, None, None, started, interrupted=True)
            return
        future.add_done_callback(
            lambda done: self.actor_ref.tell(_JobDone(job=job, future=done, started=started))
        )
        # pebble's timeout starts when a worker takes the task; this one covers a task that
        # never reaches a worker (a broken pool), so the batch is never stuck.
        self._overdue_timer = threading.Timer(
            self._timeout_s * 2 + OVERDUE_MARGIN_S, lambda: self.actor_ref.tell(_Overdue(job))
        )
        self._overdue_timer.daemon = True
        self._overdue_timer.start()
        self._future = future
        self._started = started

    def _download(self, job: AnalyseImage) -> dict[str, Any] | None:
        assert job.source_url is not None
        if self._downloader is None:
            return _error(ErrorCode.INTERNAL, "downloads are not configured")
        try:
            self._downloader.fetch(job.source_url, Path(job.file_path))
        except AnalysisError as exc:
            return exc.to_json()
        return None

    def _overdue(self, message: _Overdue) -> None:
        if self._current is not message.job or self._future is None:
            return
        self._future.cancel()
        logger.error("analysis of %s never finished; reported as TIMEOUT", message.job.path)
        error = _error(ErrorCode.TIMEOUT, "the analysis pool did not answer in time")
        self._reply(message.job, None, error, self._started)

    def _finish(self, done: _JobDone) -> None:
        if self._current is not done.job:
            return  # already answered as overdue
        try:
            outcome = done.future.result()
        except CancelledError:
            self._reply(done.job, None, None, done.started, interrupted=True)
            return
        except TimeoutError:
            self._on_process_replaced()
            outcome = {
                "error": _error(
                    ErrorCode.TIMEOUT,
                    f"analysis took longer than image_timeout_seconds ({self._timeout_s:g} s); "
                    "the worker was stopped",
                )
            }
        except pebble.ProcessExpired as exc:
            self._on_process_replaced()
            outcome = {
                "error": _error(
                    ErrorCode.INTERNAL,
                    f"ProcessExpired: the analysis process died (exit code {exc.exitcode})",
                )
            }
        except Exception as exc:
            outcome = {"error": _error(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")}
        self._reply(
            done.job,
            outcome.get("result"),
            outcome.get("error"),
            done.started,
            cached=bool(outcome.get("cached")),
        )

    def _reply(
        self,
        job: AnalyseImage,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        started: float,
        *,
        cached: bool = False,
        interrupted: bool = False,
    ) -> None:
        self._current = None
        self._future = None
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
            self._overdue_timer = None
        job.reply_to.tell(
            ImageAnalysed(
                path=job.path,
                attempt=job.attempt,
                result=result,
                error=error,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                cached=cached,
                interrupted=interrupted,
            )
        )
        self._supervisor.tell(WorkerIdle(worker=self.actor_ref))


def _error(code: ErrorCode, message: str) -> dict[str, Any]:
    return AnalysisError(code, message).to_json()
