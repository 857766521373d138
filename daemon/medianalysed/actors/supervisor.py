"""SupervisorActor: turns inbox entries into batches and shares the workers between them.

- Folders (and loose files) seen in an inbox are tracked until ready (ready marker, or
  nothing changed for `settle_seconds`), then claimed in state and started as a batch;
  a claim makes sure no input is ever started twice.
- The image actors form one pool, bounded by `[processing] workers` across all batches
  (`workerpool.py`). Batches offer windows of jobs (`OfferJobs`); a free worker is told the
  next job of the highest-priority batch, round-robin between equals (`AnalyseImage`).
- Crashed image actors are replaced (a bounded number of times per minute); a crashed
  batch actor is restarted from its persisted state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

import pykka

from medianalysed.actors.batch import BatchActor
from medianalysed.actors.workerpool import WorkerPool
from medianalysed.batchcreation import BatchCreation
from medianalysed.batchqueue import StartQueue
from medianalysed.batchwork import intake
from medianalysed.batchwork.retries import write_retry_delay
from medianalysed.batchwork.settings import BatchListener, BatchSettings
from medianalysed.candidates import Candidates, log_folder_failure
from medianalysed.config import Config, InboxConfig
from medianalysed.crashloop import review_markers
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError
from medianalysed.lifecycle import BatchPhase, is_legal
from medianalysed.messages import (
    BatchCrashed,
    BatchFinished,
    BatchTick,
    CancelBatch,
    ControlCommand,
    InboxesChanged,
    JobsReturned,
    OfferJobs,
    PathSeen,
    Shutdown,
    Snapshot,
    SubmitBatch,
    SupervisorMessage,
    Tick,
    WithdrawJobs,
    WorkerCrashed,
    WorkerIdle,
)
from medianalysed.models import BatchStatus
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.readiness import TreeSnapshot, snapshot_tree
from medianalysed.rerun import RerunError, begin_rerun
from medianalysed.restarts import BatchRestarts, DueRestart, RestartMode
from medianalysed.setaside import set_aside
from medianalysed.settling import SnapshotWalker, TreeWalked
from medianalysed.stalls import ProgressClock
from medianalysed.state import BatchRecord

if TYPE_CHECKING:
    from medianalysed.actors.image import ImageActor

logger = logging.getLogger(__name__)

# An active batch costs an actor thread and a line in the job queue; the workers are shared fairly
# whatever the count. The bound only keeps a flood of folders from becoming a flood of
# threads: batches ready together start together unless more than this arrive at once.
MAX_ACTIVE_BATCHES = 64
NEW_BATCHES = "new batches"  # the fault board's name for the supervisor's batch creation

_Inbound = SupervisorMessage | TreeWalked


@dataclass(slots=True)
class _ActiveBatch:
    ref: pykka.ActorRef[BatchActor]
    record: BatchRecord
    restarts: int = 0
    salvaging: bool = False


@dataclass(slots=True)
class SupervisorParts:
    """What the composition root hands to the supervisor."""

    config: Config
    store: StateStorage
    history: DuplicateHistory
    worker_factory: Callable[[pykka.ActorRef[SupervisorActor]], pykka.ActorRef[ImageActor]]
    batch_settings: Callable[[InboxConfig], BatchSettings]
    listener: BatchListener = field(default_factory=BatchListener)
    on_settled: Callable[[str, float], None] = lambda _inbox, _seconds: None
    on_gauges: Callable[[dict[str, int]], None] = lambda _gauges: None
    progress: ProgressClock = field(default_factory=ProgressClock)
    # Lifecycle events for metrics: "stalled", "restarted", "salvaged", "set_aside".
    on_lifecycle: Callable[[str], None] = lambda _event: None
    scan_inboxes: bool = True  # False for `analyze`: only submitted paths are batches
    snapshot: Callable[[Path, str], TreeSnapshot] = snapshot_tree  # run on walker threads
    faults: FaultBoard = field(default_factory=FaultBoard)


class SupervisorActor(pykka.ThreadingActor):
    """Owns the inboxes' candidates, the batch actors and the worker pool."""

    def __init__(self, parts: SupervisorParts, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._parts = parts
        self._config = parts.config
        self._store = parts.store
        self._clock = clock
        self._candidates = Candidates(parts.config.inboxes, clock)
        self._queued = StartQueue(parts.store)
        self._active: dict[str, _ActiveBatch] = {}
        self._pool = WorkerPool(lambda: parts.worker_factory(self.actor_ref), clock)
        self._stopping = False
        self._paused = False
        # Crashed batch actors waiting for their restart.
        self._restart_due = BatchRestarts(clock)
        self._creation = BatchCreation(
            parts.store,
            parts.faults,
            who=NEW_BATCHES,
            retry_delay=write_retry_delay,
            clock=clock,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def on_start(self) -> None:
        """Start the worker pool and resume every unfinished batch from state."""
        self._candidates.start(
            SnapshotWalker(self.actor_ref.tell, snapshot=self._parts.snapshot, clock=self._clock)
        )
        self._pool.start(self._config.processing.effective_workers)
        self._paused = self._store.is_paused()
        self._review_crash_loops()
        for record in self._store.iter_batches(skip_damaged=True):
            if record.phase != BatchPhase.DONE:
                logger.info("resuming batch %s (%s)", record.batch_id, record.phase)
                self._queued.add(record.batch_id)
        self._start_queued()

    def _review_crash_loops(self) -> None:
        """Set aside the batches the daemon died on twice; isolate those it died on once."""
        try:
            review = review_markers(self._store)
        except Exception:
            logger.exception("cannot review the crash-loop markers; resuming every batch")
            return
        for batch_id, reason in review.set_aside.items():
            self._parts.on_lifecycle("crash_loop")
            self._set_aside(batch_id, reason)
        self._queued.suspect(review.suspects)
        if self._queued.suspects:
            logger.warning(
                "the last run died while %s were in a risky step; they run one at a time",
                ", ".join(self._queued.suspects),
            )

    def on_stop(self) -> None:
        """Stop batches, then workers; unfinished images stay pending in state."""
        self._candidates.stop()
        for active in list(self._active.values()):
            active.ref.stop(block=False)
        self._pool.stop()

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message (runs in this actor's thread); a disk fault is not fatal."""
        if not isinstance(message, _Inbound):
            return super().on_receive(message)
        try:
            return self._dispatch(message)
        except DiskWriteError as failure:
            # A state write of ours failed (a claim release, a cancel): logged and counted;
            # new batches have their own retry (`_create_batch`).
            self._parts.faults.count(failure)
            logger.error("supervisor: %s; %s not applied", failure, type(message).__name__)
            return None

    def _dispatch(self, message: _Inbound) -> Any:  # noqa: PLR0912 - one branch per message type
        match message:
            case PathSeen():
                self._candidates.seen(message.inbox, message.path)
            case Tick():
                self._on_tick(message)
            case TreeWalked():
                self._on_tree_walked(message)
            case InboxesChanged():
                # Running batches keep the settings they started with.
                self._candidates.reconfigure(message.inboxes)
            case SubmitBatch():
                self._submit(message)
            case OfferJobs():
                self._on_offer(message)
            case WithdrawJobs():
                self._on_withdraw(message)
            case WorkerIdle():
                self._pool.idle(message)
                self._schedule()
            case WorkerCrashed():
                self._on_worker_crashed(message)
            case BatchFinished():
                self._for_one_batch(message.batch_id, self._on_batch_finished, message)
            case BatchCrashed():
                self._for_one_batch(message.batch_id, self._on_batch_crashed, message)
            case ControlCommand():
                self._for_one_batch(message.batch_id, self._on_control, message)
            case Shutdown():
                self._stopping = True
            case Snapshot():
                return self._snapshot()
            case _:
                assert_never(message)
        return None

    # -- candidates and readiness ------------------------------------------------------

    def _on_tree_walked(self, message: TreeWalked) -> None:
        """A walk finished (on a walker thread): settle, forget, or start the batch."""
        candidate = self._candidates.walked(message)
        if candidate is None or self._paused or self._stopping:
            return
        now = self._clock()
        try:
            if self._already_claimed(candidate.inbox, candidate.path):
                self._candidates.forget(candidate.key)
                return
            if self._creation.refusing(now) or not self._create_batch(
                candidate.inbox, candidate.path
            ):
                return  # state refuses writes: the folder stays a candidate, walked again
            self._parts.on_settled(candidate.inbox.name, now - candidate.first_seen)
            self._candidates.forget(candidate.key)
        except Exception as exc:
            # The supervisor never dies of one folder (SPEC §1). An unwritable outbox or
            # state, or a bug (its batch.toml, its name): report it; the next rescan
            # finds the folder again.
            log_folder_failure("cannot start %s yet", candidate.path, exc)

    def _submit(self, message: SubmitBatch) -> None:
        try:
            self._create_batch(self._candidates.inboxes[message.inbox], Path(message.path))
        except Exception as exc:
            log_folder_failure("cannot start %s", Path(message.path), exc)

    def _already_claimed(self, inbox: InboxConfig, path: Path) -> bool:
        return self._creation.claimed(inbox, path, self._is_known)

    def _is_known(self, batch_id: str) -> bool:
        return batch_id in self._active or batch_id in self._queued

    # -- batches -----------------------------------------------------------------------

    def _create_batch(self, inbox: InboxConfig, path: Path) -> bool:
        """Claim `path` as a new batch and queue it; False when state refused the write."""
        try:
            record = self._creation.create(inbox, path)
        except DiskWriteError:
            return False
        if record is None:
            return True
        batch_id = record.batch_id
        self._queued.add(batch_id)
        logger.info("batch %s queued from %s", batch_id, path, extra={"batch_id": batch_id})
        intake.write_queued_status(self._store, record)
        self._start_queued()
        return True

    def _start_queued(self) -> None:
        if not self._stopping:
            self._queued.start_due(
                self._start_queued_batch, self._active, self._restart_due, limit=MAX_ACTIVE_BATCHES
            )

    def _start_queued_batch(self, batch_id: str) -> bool:
        """Start a batch taken from the queue; False if it has nothing to run."""
        try:
            record = self._store.get_batch(batch_id)
            if record is None or record.phase == BatchPhase.DONE:
                return False
            self._start_batch(record)
        except Exception:
            logger.exception("batch %s cannot be started; trying again later", batch_id)
            self._restart_due.schedule(batch_id, 1, "it could not be started")
        return True

    def _start_batch(self, record: BatchRecord, restarts: int = 0, salvage: str = "") -> None:
        inbox = self._candidates.inboxes.get(record.inbox)
        if inbox is None:
            logger.error(
                "batch %s belongs to inbox %r, which is no longer configured; left as is",
                record.batch_id,
                record.inbox,
            )
            return
        ref = BatchActor.start(
            record=record,
            settings=self._parts.batch_settings(inbox),
            store=self._store,
            history=self._parts.history,
            supervisor=self.actor_ref,
            listener=self._parts.listener,
            progress=self._parts.progress,
            salvage=salvage,
            faults=self._parts.faults,
        )
        self._active[record.batch_id] = _ActiveBatch(
            ref=ref, record=record, restarts=restarts, salvaging=bool(salvage)
        )
        self._pool.open(record.batch_id, record.priority)

    def _on_batch_finished(self, message: BatchFinished) -> None:
        active = self._active.pop(message.batch_id, None)
        self._pool.close(message.batch_id)
        self._parts.progress.forget(message.batch_id)
        record = self._store.get_batch(message.batch_id)
        if record is not None and record.phase == BatchPhase.DONE and record.claim_key:
            moved = record.archived_to is not None or not Path(record.source).exists()
            claim = self._store.claim_for(record.claim_key)
            # After a retry the claim may belong to a newer folder of the same name.
            if moved and claim is not None and claim[0] == record.batch_id:
                self._store.release_claim(record.claim_key)
        del active
        self._start_queued()
        self._schedule()

    def _on_batch_crashed(self, message: BatchCrashed) -> None:
        """Restart with backoff; then finalise what is left as INTERNAL; then set aside.

        Every started batch ends (SPEC §1): see `restarts.py`.
        """
        batch_id = message.batch_id
        active = self._active.pop(batch_id, None)
        self._pool.close(batch_id)
        self._parts.progress.forget(batch_id)
        logger.error("batch actor %s crashed: %s", batch_id, message.reason)
        planned = self._restart_due.crashed(
            batch_id,
            restarts=0 if active is None else active.restarts,
            salvaging=active is not None and active.salvaging,
            reason=message.reason,
        )
        if not planned:
            self._set_aside(batch_id, f"finalising it failed too: {message.reason}")
        self._start_queued()
        self._schedule()

    def _for_one_batch(self, batch_id: str, handler: Callable[[Any], None], message: Any) -> None:
        """The supervisor never dies of one batch (a damaged record, a bug): log, go on."""
        try:
            handler(message)
        except Exception:
            logger.exception(
                "handling %s for batch %s failed; the other batches go on",
                type(message).__name__,
                batch_id or "-",
            )
            self._start_queued()
            self._schedule()

    def _restart_due_batches(self) -> None:
        for due in self._restart_due.take_due(room=MAX_ACTIVE_BATCHES - len(self._active)):
            try:
                self._restart(due)
            except Exception as exc:
                logger.exception("batch %s cannot be restarted", due.batch_id)
                reason = f"it cannot be restarted: {type(exc).__name__}: {exc}"
                self._set_aside(due.batch_id, reason)

    def _restart(self, due: DueRestart) -> None:
        record = self._store.get_batch(due.batch_id)
        if record is None or record.phase == BatchPhase.DONE:
            return
        if due.mode == RestartMode.SALVAGE:
            logger.error(
                "batch %s crashed %d times; finalising it with what is left as INTERNAL",
                due.batch_id,
                due.restarts,
            )
            self._parts.on_lifecycle("salvaged")
            salvage = f"{due.restarts} crashes, {due.reason}"
            self._start_batch(record, restarts=due.restarts, salvage=salvage)
            return
        logger.warning("restarting batch %s (restart %d)", due.batch_id, due.restarts)
        self._parts.on_lifecycle("restarted")
        self._start_batch(record, restarts=due.restarts)

    def _set_aside(self, batch_id: str, reason: str) -> None:
        try:
            set_aside(self._store, batch_id, reason, self._parts.listener)
        except Exception:
            logger.exception("batch %s could not even be set aside", batch_id)
            return
        self._parts.on_lifecycle("set_aside")

    def _tell_batch(self, batch_id: str, message: object) -> bool:
        """Tell an active batch; False when its actor is gone (its crash report is coming)."""
        active = self._active.get(batch_id)
        if active is None:
            return False
        try:
            active.ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def _check_stalls(self) -> None:
        stall_seconds = self._config.processing.stall_seconds
        for batch_id, idle in self._parts.progress.check(stall_seconds):
            logger.error(
                "batch %s stalled: no progress for %.0f s (stall_seconds = %g)",
                batch_id,
                idle,
                stall_seconds,
                extra={"batch_id": batch_id},
            )
            self._parts.on_lifecycle("stalled")

    # -- worker scheduling -------------------------------------------------------------

    def _on_offer(self, message: OfferJobs) -> None:
        if message.batch_id in self._active:
            self._pool.offer(message)
            self._schedule()

    def _on_withdraw(self, message: WithdrawJobs) -> None:
        jobs = self._pool.withdraw(message.batch_id)
        if jobs:
            self._tell_batch(message.batch_id, JobsReturned(jobs=jobs))
        self._publish_gauges()

    def _schedule(self) -> None:
        if not self._stopping:
            self._pool.dispatch()
        self._publish_gauges()

    def _on_worker_crashed(self, message: WorkerCrashed) -> None:
        if not self._pool.crashed(message):
            # Stopping the supervisor makes the main loop exit non-zero: systemd restarts us.
            logger.critical("image actors crash repeatedly; stopping the daemon")
            self.actor_ref.stop(block=False)
            return
        self._schedule()

    # -- ticks, control, snapshot -----------------------------------------------------

    def _on_tick(self, message: Tick) -> None:
        now = self._clock()
        self._paused = self._store.is_paused()
        if self._parts.scan_inboxes:
            self._candidates.rescan_due(now)
        self._candidates.walk_due(now, self._already_claimed)
        self._restart_due_batches()
        for batch_id in list(self._active):
            self._tell_batch(batch_id, BatchTick(at_workers=self._pool.held_by(batch_id)))
        self._check_stalls()
        self._start_queued()
        self._schedule()

    def _on_control(self, message: ControlCommand) -> None:
        if message.verb == "cancel":
            self._cancel(message.batch_id)
        elif message.verb in {"pause", "resume"}:
            self._paused = message.verb == "pause"
        elif message.verb in {"retry", "reprocess"}:
            self._rerun(message)
        else:
            logger.warning("unknown control command %r ignored", message.verb)

    def _rerun(self, message: ControlCommand) -> None:
        batch_id = message.batch_id
        if batch_id in self._active or batch_id in self._queued or batch_id in self._restart_due:
            logger.warning("%s %s refused: the batch is still running", message.verb, batch_id)
            return
        only_failed = message.verb == "retry"
        try:
            # Only the intent here; the batch actor resets the images (off this thread).
            begin_rerun(self._store, batch_id, only_failed=only_failed, force=message.force)
        except RerunError as exc:
            logger.warning("%s refused: %s", message.verb, exc)
            return
        logger.info("%s: batch %s queued again", message.verb, batch_id)
        self._queued.add(batch_id)
        self._start_queued()

    def _cancel(self, batch_id: str) -> None:
        if batch_id in self._active:
            self._tell_batch(batch_id, CancelBatch())
            return
        if batch_id in self._queued:
            record = self._store.get_batch(batch_id)
            self._queued.remove(batch_id)
            if record is None:
                return
            if is_legal(record.phase, record.phase):
                record = self._store.advance(record, record.phase, status=BatchStatus.CANCELLED)
            # It still runs, to write its outbox files and archive its input (one already
            # finalising keeps the end it has).
            self._start_batch(record)
            self._tell_batch(batch_id, CancelBatch())

    def _publish_gauges(self) -> None:
        self._parts.on_gauges(
            {
                **self._pool.gauges(),
                "batches_in_progress": len(self._active)
                + len(self._queued)
                + len(self._restart_due),
            }
        )

    def _snapshot(self) -> dict[str, Any]:
        return {
            "active": sorted(self._active),
            "queued": self._queued.ids(),
            **self._candidates.view(),
            "offered": {batch_id: self._pool.queued(batch_id) for batch_id in self._active},
            "workers": self._pool.workers,
            "workers_busy": self._pool.workers_busy,
            "restarting": sorted(self._restart_due),
            "suspects": self._queued.suspects,
            "stalled": self._parts.progress.stalled(),
            "paused": self._paused,
            "stopping": self._stopping,
        }
