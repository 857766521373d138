"""BatchActor: one per batch; enumerates it, offers its jobs to the workers, retries, writes
the outbox.

Its jobs go to the supervisor's queue in windows (`OfferJobs`, `jobqueue.window`): up to three
times the pool's slots offered and unanswered, topped up once no more than twice that are left.
Only due jobs are offered; the retry heap and the due times stay here. A cancelled or parked
batch takes back what no worker holds yet (`WithdrawJobs` → `JobsReturned`).

Every transition is persisted before the side effect it enables (STYLE §3.3 rule 5):
the path list before any image is dispatched, each image's outcome before the next
dispatch counts it, the results before `summary.json`, `summary.json` before the input
is archived. After SIGKILL, `phase` says where to pick up.

A write the disk refuses (`DiskWriteError`: state, outbox, archive full, read-only or failing)
parks the batch, in one place (`on_receive`): its offered jobs are withdrawn, the outcomes that
arrive meanwhile are kept in memory, and a later tick retries with backoff: the kept
messages first, then the same step again from what is persisted (`_begin`). Nothing is lost
and nothing is counted twice (an outcome already recorded is not recorded again).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, assert_never

import pykka

from medianalysed.actors.image import SLOTS_PER_WORKER
from medianalysed.batchwork import salvage
from medianalysed.batchwork.disposing import dispose_input, intend_disposal
from medianalysed.batchwork.enumeration import input_root, store_listing
from medianalysed.batchwork.finalising import (
    OutboxRun,
    finalising_changes,
    progress_text,
    start_outbox,
)
from medianalysed.batchwork.jobline import JobLine
from medianalysed.batchwork.jobs import download_path, job_for
from medianalysed.batchwork.livestatus import StatusWriter, live_counts, live_status
from medianalysed.batchwork.parking import Parking
from medianalysed.batchwork.retries import RetryPolicy, internal_record
from medianalysed.batchwork.settings import BatchListener, BatchSettings
from medianalysed.crashloop import enter_step, leave_step
from medianalysed.crashpoints import crash_point
from medianalysed.diskfaults import STORAGE_FAULTS, FaultBoard
from medianalysed.errors import DiskWriteError, ErrorCode
from medianalysed.jobqueue import window
from medianalysed.lifecycle import BatchPhase
from medianalysed.messages import (
    AnalyseImage,
    BatchCrashed,
    BatchFinished,
    BatchMessage,
    BatchTick,
    CancelBatch,
    ImageAnalysed,
    JobsReturned,
    OfferJobs,
    WithdrawJobs,
)
from medianalysed.models import BatchStatus, utc_now_iso
from medianalysed.outcomes import ImageError, ImageResult
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.rerun import RERUN_PHASE, finish_rerun
from medianalysed.stalls import ProgressClock
from medianalysed.state import BatchRecord, ImageRecord, release_thread_connections

if TYPE_CHECKING:
    from medianalysed.actors.supervisor import SupervisorActor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Begin:
    pass


@dataclass(frozen=True, slots=True)
class _FinaliseStep:
    """Do the next slice of the finalising; a stop message queued meanwhile comes first."""


_Inbound = BatchMessage | _Begin | _FinaliseStep


class BatchActor(pykka.ThreadingActor):
    """Drives one batch from enumeration to archived input."""

    def __init__(
        self,
        *,
        record: BatchRecord,
        settings: BatchSettings,
        store: StateStorage,
        history: DuplicateHistory,
        supervisor: pykka.ActorRef[SupervisorActor],
        listener: BatchListener | None = None,
        clock: Callable[[], float] = time.time,
        progress: ProgressClock | None = None,
        salvage: str = "",
        faults: FaultBoard | None = None,
    ) -> None:
        """`salvage` (a reason) finalises at once: the actor crashed too often to go on."""
        super().__init__()
        self._record = record
        self._settings = settings
        self._store = store
        self._history = history
        self._supervisor = supervisor
        self._listener = listener or BatchListener()
        self._clock = clock
        self._progress = progress or ProgressClock()
        self._salvage = salvage
        # Of the jobs offered, how many a worker holds (the supervisor's count at the last tick).
        self._at_workers = 0
        self._status_dirty = True
        self._status = StatusWriter(store, self._log_extra())
        self._finalising: OutboxRun | None = None
        self._retries = RetryPolicy(settings.processing, clock)
        self._parking: Parking[_Inbound] = Parking(
            f"batch {record.batch_id}", faults or FaultBoard()
        )
        self._line = JobLine(
            store,
            record.batch_id,
            window=window(settings.processing.effective_workers * SLOTS_PER_WORKER),
            make_job=self._job_for,
            fail_unstarted=self._fail_unstarted,
            paused=lambda: self._parking.parked,
            clock=clock,
            log_extra=self._log_extra(),
        )

    @property
    def _batch_id(self) -> str:
        return self._record.batch_id

    def on_start(self) -> None:
        """Defer the real work to a message, so a failure reaches `on_failure`."""
        self.actor_ref.tell(_Begin())

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Tell the supervisor; the batch resumes from its persisted state when restarted."""
        release_thread_connections()
        self._supervisor.tell(
            BatchCrashed(
                batch_id=self._batch_id,
                reason=f"{getattr(exception_type, '__name__', exception_type)}: {exception_value}",
            )
        )

    def on_stop(self) -> None:
        """Abandon an unfinished outbox (its temporary files go; the next start redoes it),
        then close this thread's SQLite connections (diskcache leaks them otherwise)."""
        if self._finalising is not None:
            self._finalising.close()
            logger.info(
                "batch %s: finalising interrupted at %s %d/%d, resumes at the next start",
                self._batch_id,
                *self._finalising.stage,
                extra=self._log_extra(),
            )
            self._finalising = None
        release_thread_connections()

    def on_receive(self, message: Any) -> None:
        """Dispatch one message (runs in this actor's thread); a disk fault parks the batch."""
        if not isinstance(message, _Inbound):
            super().on_receive(message)
            return
        if self._parking.parked:
            self._while_parked(message)
            return
        try:
            self._dispatch(message)
        except DiskWriteError as failure:
            self._park(failure, message)

    def _dispatch(self, message: _Inbound) -> None:
        match message:
            case _Begin():
                self._progress.touch(self._batch_id)
                self._begin()
            case ImageAnalysed():
                self._progress.touch(self._batch_id)
                self._guarded_outcome(message)
            case JobsReturned():
                self._line.take_back(message.jobs)
                self._after_change()
            case BatchTick():
                self._on_tick(message)
            case CancelBatch():
                self._cancel()
            case _FinaliseStep():
                self._progress.touch(self._batch_id)
                self._on_finalise_step()
            case _:
                assert_never(message)

    # -- parked on a disk fault (batchwork/parking.py) ----------------------------------

    def _park(self, failure: DiskWriteError, message: _Inbound | None) -> None:
        """Take back the jobs no worker holds; keep `message` for the retry unless it can be
        dropped."""
        if isinstance(message, CancelBatch) or (
            isinstance(message, ImageAnalysed) and message.disk_fault is None
        ):
            self._parking.keep_first(message)
        # _Begin, ticks and returned jobs need no keeping: the retry resumes from what is
        # persisted (returned jobs are back in line before anything is written).
        if self._finalising is not None:
            self._finalising.close()  # its temporary files go; the retry starts it again
            self._finalising = None
        self._parking.park(failure)
        self._withdraw()

    def _while_parked(self, message: _Inbound) -> None:
        match message:
            case ImageAnalysed() if message.disk_fault is not None:
                # Back in line: the retry recounts it as pending from the store.
                self._line.answered(message.path)
            case ImageAnalysed() | CancelBatch():
                self._parking.keep(message)
            case JobsReturned():
                self._line.take_back(message.jobs)
            case BatchTick():
                self._at_workers = message.at_workers
                if self._parking.due():
                    # Paused for a known reason (in /healthz), not stalled: each retry counts.
                    self._progress.touch(self._batch_id)
                    self._retry_parked()
            case _Begin() | _FinaliseStep():
                pass  # the retry resumes the step from what is persisted
            case _:
                assert_never(message)

    def _retry_parked(self) -> None:
        # The kept messages, then the same step again from what is persisted (a failed read
        # may have left the cursor or the retry heap short of an image: `_begin` rebuilds them).
        try:
            self._parking.retry(self._dispatch, self._begin)
        except DiskWriteError as failure:
            self._park(failure, None)

    def _advance(self, to: BatchPhase, **changes: Any) -> None:
        """Persist the move, then adopt it (a failed write leaves memory as it was)."""
        self._record = self._store.advance(self._record, to, **changes)

    # -- start and resume --------------------------------------------------------------

    def _begin(self) -> None:
        if self._salvage:
            self._salvage_remaining()
            return
        phase = self._record.phase
        if phase == RERUN_PHASE:
            enter_step(self._store, self._batch_id, "resetting")
            self._record = finish_rerun(self._store, self._record, self._history)
            leave_step(self._store, self._batch_id)
            phase = self._record.phase
        if phase == BatchPhase.ENUMERATING:
            self._enumerate()
            phase = self._record.phase
        if phase == BatchPhase.RUNNING:
            self._resume_running()
        elif phase in {BatchPhase.FINALIZING, BatchPhase.WRITTEN, BatchPhase.DISPOSING}:
            self._finalize()
        elif phase == BatchPhase.DONE:
            self._tell_finished()

    def _tell_finished(self) -> None:
        self._supervisor.tell(BatchFinished(self._batch_id, str(self._record.status)))

    # -- the per-input exception boundary (SPEC §1: no input can stop a batch) ---------

    def _guarded_outcome(self, message: ImageAnalysed) -> None:
        counts = dict(self._line.counts)
        try:
            self._on_analysed(message)
        except STORAGE_FAULTS:
            raise  # the disk's or the database's fault, not this input's: parked or repaired
        except Exception as exc:
            if self._record.phase != BatchPhase.RUNNING:
                raise  # finalising failed, not this input: a crash, restarted from state
            logger.exception(
                "batch %s: handling the outcome of %s failed",
                self._batch_id,
                message.path,
                extra=self._log_extra(),
            )
            # Undo the half-applied outcome, then settle the image from what is stored.
            self._line.undo(message.path, counts)
            self._settle_failed_outcome(message.path, message.attempt, exc)

    def _settle_failed_outcome(self, path: str, attempt: int, exc: Exception) -> None:
        """The image ends as recorded if its outcome was stored, else as INTERNAL."""
        stored = self._store.get_image(self._batch_id, path)
        if stored is None or not stored.status.terminal:
            stored = self._internal_record(path, attempt, exc, "recording its outcome failed")
            self._store.put_image(self._batch_id, stored)
            self._count_internal(stored)
        self._line.counts[str(stored.status)] += 1
        self._status_dirty = True
        self._after_change()

    def _internal_record(self, path: str, attempt: int, exc: Exception, doing: str) -> ImageRecord:
        source_url = None
        try:
            previous = self._store.get_image(self._batch_id, path)
            source_url = None if previous is None else previous.source_url
        except Exception:  # the stored record may be what is broken
            logger.debug("unreadable image record %s", path, exc_info=True)
        return internal_record(path, attempt, exc, doing, source_url)

    def _count_internal(self, record: ImageRecord) -> None:
        try:
            self._listener.image_finished(
                self._settings.inbox.name, str(record.status), str(ErrorCode.INTERNAL)
            )
        except Exception:
            logger.exception("listener failed", extra=self._log_extra())

    def _fail_unstarted(self, path: str, exc: Exception) -> None:
        """An image that could not even be dispatched: INTERNAL (the line counts it failed)."""
        logger.error(
            "batch %s: cannot dispatch %s",
            self._batch_id,
            path,
            exc_info=exc,
            extra=self._log_extra(),
        )
        record = self._internal_record(path, 0, exc, "preparing its analysis failed")
        self._store.put_image(self._batch_id, record)
        self._count_internal(record)

    # -- salvage: the actor crashed more often than it may be restarted ----------------

    def _salvage_remaining(self) -> None:
        """Every image not terminal becomes INTERNAL, then the batch finalises as usual."""
        logger.error(
            "batch %s: finalising it with its unfinished images as INTERNAL (%s)",
            self._batch_id,
            self._salvage,
            extra=self._log_extra(),
        )
        self._record = salvage.salvage_record(self._store, self._record)
        if self._record.phase == BatchPhase.RUNNING:
            self._line.counts = salvage.fail_unfinished(
                self._store, self._record, self._salvage, self._count_internal
            )
            self._advance(BatchPhase.RUNNING, total=sum(self._line.counts.values()))
        self._finalize()

    def _enumerate(self) -> None:
        enter_step(self._store, self._batch_id, "enumerating")
        crash_point("enumerate", self._batch_id)
        listing = store_listing(self._store, self._record, self._settings.inbox)
        self._advance(
            BatchPhase.RUNNING,
            status=BatchStatus.PROCESSING,
            total=listing.total,
            chunks=listing.chunks,
            started_at=self._record.started_at or utc_now_iso(),
            note=listing.note or self._record.note,
        )
        leave_step(self._store, self._batch_id)
        logger.info("batch %s: %d images", self._batch_id, listing.total, extra=self._log_extra())

    def _resume_running(self) -> None:
        self._reread_line()
        if self._record.status == BatchStatus.CANCELLED:
            self._line.cancel()
        self._write_status(force=True)
        self._after_change()

    def _reread_line(self) -> None:
        self._line.reread(self._record)

    # -- offering (batchwork/jobline.py) ----------------------------------------------

    def _offer_jobs(self, *, tick: bool = False) -> None:
        """Top up the jobs offered to the workers when the window has room; the counts for
        the gauges ride along (alone on a quiet `tick`, see `JobLine.report`)."""
        jobs: list[AnalyseImage] = []
        try:
            self._line.take(jobs)
        finally:  # a disk fault half-way: what was taken is offered, then withdrawn (parked)
            self._tell_offer(jobs, tick=tick)
        if not jobs and self._finished_work():
            self._finalize()  # the last images could not even be prepared

    def _tell_offer(self, jobs: list[AnalyseImage], *, tick: bool) -> None:
        counts = self._line.report(jobs, tick=tick)
        if counts is None:
            return
        waiting, unfinished = counts
        self._supervisor.tell(
            OfferJobs(self._batch_id, tuple(jobs), waiting=waiting, unfinished=unfinished)
        )

    def _withdraw(self) -> None:
        """Ask for the offered jobs no worker took yet (they come back as `JobsReturned`)."""
        if self._line.outstanding:
            self._supervisor.tell(WithdrawJobs(self._batch_id))

    def _job_for(self, path: str, image: ImageRecord | None) -> AnalyseImage:
        return job_for(
            self._record,
            path,
            image,
            downloads_dir=self._settings.downloads_dir,
            reply_to=self.actor_ref,
        )

    # -- outcomes ----------------------------------------------------------------------

    def _on_analysed(self, message: ImageAnalysed) -> None:
        self._status_dirty = True
        if message.interrupted or message.disk_fault is not None:
            self._line.answered(message.path)
            # Not an attempt: the image goes back in line (the cursor is already past it).
            self._line.retry_at(message.path, self._clock())
            if message.disk_fault is not None:
                raise message.disk_fault  # its download could not be saved: the batch parks
            self._after_change()
            return
        previous = self._store.get_image(self._batch_id, message.path)
        if previous is not None and previous.attempts >= message.attempt:
            # Recorded already (a retried message after a disk fault, a duplicate report).
            self._line.answered(message.path)
            self._after_change()
            return
        source_url = None if previous is None else previous.source_url
        record = self._outcome_record(message, source_url)
        self._store.put_image(self._batch_id, record)
        if source_url is not None:  # the record is durable: the downloaded copy has served
            download_path(self._settings.downloads_dir, self._batch_id, message.path).unlink(
                missing_ok=True
            )
        self._line.answered(message.path)
        outcome = message.outcome
        code = str(outcome.code) if isinstance(outcome, ImageError) else None
        if record.status.terminal:
            self._line.counts[str(record.status)] += 1
            self._listener.image_finished(
                self._settings.inbox.name,
                str(record.status),
                code,
                duration_s=message.duration_ms / 1000,
                size=outcome.size if isinstance(outcome, ImageResult) else 0,
                cached=message.cached,
                vips=message.vips,
            )
        else:
            assert record.next_attempt_at is not None
            self._line.retry_at(record.path, record.next_attempt_at)
            self._listener.image_finished(self._settings.inbox.name, "retry", code)
        self._after_change()

    def _outcome_record(self, message: ImageAnalysed, source_url: str | None) -> ImageRecord:
        return self._retries.outcome_record(message, source_url, may_retry=self._may_retry)

    def _may_retry(self, code: ErrorCode) -> bool:
        if self._line.cancelled:
            return False
        if code == ErrorCode.IO_ERROR and self._record.source:
            # A vanished batch folder will not come back: fail now, not after the backoff.
            return input_root(self._record).exists()
        return True

    def _after_change(self) -> None:
        if self._finished_work():
            self._finalize()
            return
        self._update_live_status()
        self._offer_jobs()

    def _finished_work(self) -> bool:
        if self._line.outstanding:
            return False
        return self._line.cancelled or self._line.counts["pending"] == 0

    def _update_live_status(self) -> None:
        status = live_status(
            fresh=self._line.counts["pending"] - self._line.retrying,
            retrying=self._line.retrying,
            cancelled=self._line.cancelled,
        )
        if status != self._record.status:
            self._advance(self._record.phase, status=status)
            self._status_dirty = True
        self._write_status()

    def _on_tick(self, message: BatchTick) -> None:
        self._at_workers = message.at_workers
        if self._record.phase != BatchPhase.RUNNING:
            return
        if not self._at_workers:
            # Waiting for a worker or a retry is not a stall: this actor answers.
            self._progress.touch(self._batch_id)
        self._offer_jobs(tick=True)
        self._write_status()

    def _cancel(self) -> None:
        if self._record.phase not in {BatchPhase.RUNNING, BatchPhase.ENUMERATING}:
            return
        self._line.cancel()
        self._advance(self._record.phase, status=BatchStatus.CANCELLED)
        logger.info("batch %s cancelled", self._batch_id, extra=self._log_extra())
        self._withdraw()
        self._after_change()

    # -- status.json (batchwork/livestatus.py) -----------------------------------------

    def _live_counts(self) -> dict[str, int]:
        # Offered images no worker holds yet are still pending to a reader.
        processing = min(self._at_workers, self._line.outstanding)
        pending = self._line.counts["pending"] + self._line.outstanding - processing
        return live_counts(
            self._record, {**self._line.counts, "pending": pending}, processing=processing
        )

    def _write_status(self, *, force: bool = False) -> None:
        changed = self._status_dirty or self._line.changed
        if self._status.running(self._record, self._live_counts, changed=changed, force=force):
            self._status_dirty = False
            self._line.changed = False

    # -- finalisation (batchwork/finalising.py, batchwork/disposing.py) ----------------

    def _finalize(self) -> None:
        if self._record.phase in {BatchPhase.RUNNING, BatchPhase.ENUMERATING}:
            changes = finalising_changes(self._live_counts(), cancelled=self._line.cancelled)
            self._advance(BatchPhase.FINALIZING, **changes)
        if self._record.phase == BatchPhase.FINALIZING:
            if self._finalising is None:
                self._start_outbox()
            return
        self._finish()

    def _start_outbox(self) -> None:
        # Only here: the near rule imports numpy, which the first dispatch does not need.
        from medianalysed.nearrule import NearRule  # noqa: PLC0415

        # In slices, one message each: a stop (SIGTERM) never waits for a whole batch.
        self._finalising = start_outbox(
            self._record,
            self._store,
            self._history,
            near_rule=NearRule.from_config(
                self._settings.near, self._settings.near_duplicate_distance
            ),
            max_duplicates_listed=self._settings.max_duplicates_listed,
            config_fingerprint=self._settings.config_fingerprint,
        )
        self._status.finalising(self._record, self._finalising.stage, force=True)
        self.actor_ref.tell(_FinaliseStep())

    def _on_finalise_step(self) -> None:
        run = self._finalising
        if run is None:
            return
        summary = run.next_slice()
        if summary is not None:
            self._finalising = None
            self._outbox_written(summary)
            return
        self._status.finalising(self._record, run.stage)
        self.actor_ref.tell(_FinaliseStep())

    def _outbox_written(self, summary: dict[str, Any]) -> None:
        # Webhooks are queued (durably, idempotently) before the phase moves on, so a
        # crash in between re-queues them instead of losing them.
        self._listener.batch_finished(
            self._settings.inbox.name,
            str(self._record.status),
            summary,
            callback_url=self._record.callback_url,
            run=self._record.runs,
        )
        self._advance(BatchPhase.WRITTEN)
        self._finish()

    def _finish(self) -> None:
        if self._record.phase in {BatchPhase.WRITTEN, BatchPhase.DISPOSING}:
            enter_step(self._store, self._batch_id, "disposing")
            # A disk that refuses (archive full or read-only) parks the batch; the retry
            # resumes here, towards the target stored by `intend_disposal`.
            self._record = intend_disposal(self._store, self._record, self._settings.inbox)
            self._record = dispose_input(self._store, self._record, self._settings.inbox)
        leave_step(self._store, self._batch_id)
        shutil.rmtree(self._settings.downloads_dir / self._batch_id, ignore_errors=True)
        logger.info(
            "batch %s %s: %s",
            self._batch_id,
            self._record.status,
            progress_text(self._record.final_counts),
            extra=self._log_extra(),
        )
        self._tell_finished()
        self.actor_ref.stop(block=False)

    def _log_extra(self) -> dict[str, Any]:
        return {"batch_id": self._batch_id, "inbox": self._settings.inbox.name}
