"""ImageActor: feeds one worker of the executor; the unit of concurrency and failure.

The CPU work runs on the executor (`executors/`: a pebble worker process here, no GIL and
killable on timeout, or a Dask worker); the actor only submits it and turns the future's
outcome into an `ImageAnalysed` message.
Nothing here waits on a future: the done-callback tells the actor itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

import pykka

from medianalysed.downloads import Downloader, DownloadOutcome
from medianalysed.errors import DiskWriteError, ErrorCode
from medianalysed.executors.base import LOST_RUNS, REPLACED, Executor, settle
from medianalysed.messages import (
    AnalyseImage,
    ImageAnalysed,
    ImageMessage,
    WorkerCrashed,
    WorkerIdle,
)
from medianalysed.models import AnalysisSettings
from medianalysed.outcomes import ImageError, error_json
from medianalysed.urllist import shown_url
from medianalysed.worker import WorkerJob

if TYPE_CHECKING:
    from medianalysed.actors.supervisor import SupervisorActor

logger = logging.getLogger(__name__)

OVERDUE_MARGIN_S = 30.0
SLOTS_PER_WORKER = 2


@dataclass(frozen=True, slots=True)
class _Overdue:
    """The pool never answered: a lost task must not hold a worker slot forever."""

    job: AnalyseImage


@dataclass(frozen=True, slots=True)
class _Downloaded:
    job: AnalyseImage
    outcome: DownloadOutcome


@dataclass(frozen=True, slots=True)
class _JobDone:
    job: AnalyseImage
    future: Future[dict[str, Any]]
    started: float


_Inbound = ImageMessage | _Downloaded | _JobDone | _Overdue


@dataclass(slots=True)
class _InFlight:
    future: Future[dict[str, Any]] | None
    timer: threading.Timer | None
    started: float


class ImageActor(pykka.ThreadingActor):
    """Feeds one worker process of the shared pool.

    It accepts up to `SLOTS_PER_WORKER` images: one analysed while the next waits in the
    pool's queue, so the process never idles between two images (the hand-over through
    the actors costs about a fifth of the throughput otherwise). The pool has exactly
    `workers` processes, so no more than `workers` analyses ever run at once.
    """

    def __init__(
        self,
        *,
        executor: Executor,
        settings: AnalysisSettings,
        timeout_s: float,
        content_dir: Path | None,
        supervisor: pykka.ActorRef[SupervisorActor],
        downloader: Downloader | None = None,
        on_process_replaced: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self._executor = executor
        self._settings = settings
        self._timeout_s = timeout_s
        self._content_dir = None if content_dir is None else str(content_dir)
        self._supervisor = supervisor
        self._downloader = downloader
        self._on_process_replaced = on_process_replaced
        self._in_flight: dict[AnalyseImage, _InFlight] = {}

    def on_receive(self, message: Any) -> None:
        """Dispatch one message (runs in this actor's thread)."""
        if not isinstance(message, _Inbound):
            super().on_receive(message)
            return
        self._dispatch(message)

    def _dispatch(self, message: _Inbound) -> None:
        match message:
            case AnalyseImage():
                self._guarded_start(message)
            case _Downloaded():
                self._downloaded(message)
            case _JobDone():
                self._finish(message)
            case _Overdue():
                self._overdue(message)
            case _:
                assert_never(message)

    def on_stop(self) -> None:
        """Cancel the overdue timers so no thread outlives the actor."""
        for entry in self._in_flight.values():
            if entry.timer is not None:
                entry.timer.cancel()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Report the crash to the supervisor, which replaces this actor and answers its jobs."""
        self.on_stop()
        self._supervisor.tell(
            WorkerCrashed(
                worker=self.actor_ref,
                reason=f"{getattr(exception_type, '__name__', exception_type)}: {exception_value}",
            )
        )

    def _guarded_start(self, job: AnalyseImage) -> None:
        # One input's failure is that input's INTERNAL record, never this actor's crash.
        try:
            self._start(job)
        except Exception as exc:
            logger.exception("starting the analysis of %s failed", job.path)
            if job in self._in_flight:
                self._reply(
                    job, None, ImageError.internal(exc, "starting its analysis failed").to_json()
                )

    def _start(self, job: AnalyseImage) -> None:
        started = time.monotonic()
        self._in_flight[job] = _InFlight(future=None, timer=None, started=started)
        if job.source_url is not None:
            self._start_download(job)
            return
        self._schedule(job, started)

    def _start_download(self, job: AnalyseImage) -> None:
        """Hand the download to the downloader's threads; `_Downloaded` comes back."""
        assert job.source_url is not None
        if self._downloader is None:
            self._reply(job, None, error_json(ErrorCode.INTERNAL, "downloads are not configured"))
            return
        try:
            self._downloader.submit(
                job.source_url,
                Path(job.file_path),
                lambda outcome: self._tell_self(_Downloaded(job=job, outcome=outcome)),
            )
        except RuntimeError:  # the downloader is closed: the daemon is shutting down
            self._reply(job, None, None, interrupted=True)

    def _downloaded(self, message: _Downloaded) -> None:
        job, outcome = message.job, message.outcome
        entry = self._in_flight.get(job)
        if entry is None:
            return
        if outcome.interrupted or outcome.error is not None or outcome.disk_fault is not None:
            self._reply(
                job,
                None,
                outcome.error,
                interrupted=outcome.interrupted,
                disk_fault=outcome.disk_fault,
            )
            return
        self._schedule(job, entry.started)

    def _tell_self(self, message: Any) -> None:
        # Stopped meanwhile: the supervisor has accounted for its jobs.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    def _schedule(self, job: AnalyseImage, started: float) -> None:
        work = WorkerJob(
            root=job.root,
            relpath=job.relpath,
            follow_links=job.follow_links,
            settings=self._settings,
            content_dir=self._content_dir,
            source_url=None if job.source_url is None else shown_url(job.source_url),
            bypass_cache=job.bypass_cache,
            attempt=job.attempt,
        )
        try:
            future = self._executor.submit(work)
        except RuntimeError:  # the executor is closing: the daemon is shutting down
            self._reply(job, None, None, interrupted=True)
            return
        # pebble's timeout starts when a process takes the task; this one also covers the
        # wait behind the other queued image and a task that never reaches a process (a
        # broken pool), so a batch is never stuck.
        entry = _InFlight(future=future, timer=None, started=started)
        self._in_flight[job] = entry
        self._arm_overdue(job, entry)
        future.add_done_callback(
            lambda done: self.actor_ref.tell(_JobDone(job=job, future=done, started=started))
        )

    def _arm_overdue(self, job: AnalyseImage, entry: _InFlight) -> None:
        timer = threading.Timer(
            self._timeout_s * (SLOTS_PER_WORKER + 1) + OVERDUE_MARGIN_S,
            lambda: self._tell_self(_Overdue(job)),
        )
        timer.daemon = True
        entry.timer = timer
        timer.start()

    def _overdue(self, message: _Overdue) -> None:
        entry = self._in_flight.get(message.job)
        if entry is None or entry.future is None:
            return
        if self._executor.held(entry.future):  # paused (a scheduler away): not running yet
            self._arm_overdue(message.job, entry)
            return
        entry.future.cancel()
        logger.error("analysis of %s never finished; reported as TIMEOUT", message.job.path)
        error = error_json(ErrorCode.TIMEOUT, "the analysis pool did not answer in time")
        self._reply(message.job, None, error)

    def _finish(self, done: _JobDone) -> None:
        if done.job not in self._in_flight:
            return  # already answered as overdue
        try:
            outcome = settle(done.future, self._timeout_s)
        except CancelledError:
            self._reply(done.job, None, None, interrupted=True)
            return
        if outcome.get(REPLACED):
            self._on_process_replaced()
        self._reply(
            done.job,
            outcome.get("result"),
            outcome.get("error"),
            cached=bool(outcome.get("cached")),
            vips=outcome.get("vips"),
            elapsed_ms=outcome.get("elapsed_ms"),
            file=outcome.get("file"),
            lost_runs=int(outcome.get(LOST_RUNS, 0)),
        )

    def _reply(
        self,
        job: AnalyseImage,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        *,
        cached: bool = False,
        vips: str | None = None,
        interrupted: bool = False,
        elapsed_ms: float | None = None,
        file: dict[str, Any] | None = None,
        disk_fault: DiskWriteError | None = None,
        lost_runs: int = 0,
    ) -> None:
        entry = self._in_flight.pop(job)
        if entry.timer is not None:
            entry.timer.cancel()
        if elapsed_ms is None:  # no word from the worker: the time it was ours
            elapsed_ms = (time.monotonic() - entry.started) * 1000
        outcome = ImageAnalysed(
            path=job.path,
            attempt=job.attempt + lost_runs,  # a run lost with a Dask worker was an attempt
            result=result,
            error=error,
            duration_ms=round(elapsed_ms, 1),
            cached=cached,
            vips=vips,
            interrupted=interrupted,
            file=file,
            disk_fault=disk_fault,
        )
        try:
            job.reply_to.tell(outcome)
        except pykka.ActorDeadError:
            # The batch actor crashed meanwhile; restarted, it runs this image again.
            logger.info("batch actor of %s is gone; its outcome is dropped", job.path)
        self._supervisor.tell(WorkerIdle(worker=self.actor_ref, job=job))
