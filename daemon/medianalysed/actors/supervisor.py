"""SupervisorActor: turns inbox entries into batches and shares the workers between them.

- Folders (and loose files) seen in an inbox are tracked until ready (ready marker, or
  nothing changed for `settle_seconds`), then claimed in state and started as a batch;
  a claim makes sure no input is ever started twice.
- The image actors form one pool, bounded by `[processing] workers` across all batches.
  Batches say how many images they could start (`WorkWanted`); an idle worker goes to
  the highest-priority batch, round-robin between equals (`SlotGranted`).
- Crashed image actors are replaced (a bounded number of times per minute); a crashed
  batch actor is restarted from its persisted state.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka

from medianalysed.actors.batch import (
    BatchActor,
    BatchListener,
    BatchSettings,
)
from medianalysed.actors.image import SLOTS_PER_WORKER
from medianalysed.batchwork import intake
from medianalysed.batchwork.retries import write_retry_delay
from medianalysed.candidates import Candidates, log_folder_failure
from medianalysed.config import Config, InboxConfig
from medianalysed.crashloop import in_step, review_markers
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError, ErrorCode
from medianalysed.lifecycle import BatchPhase, is_legal
from medianalysed.messages import (
    BatchCrashed,
    BatchFinished,
    CancelBatch,
    ControlCommand,
    ImageAnalysed,
    InboxesChanged,
    PathSeen,
    Shutdown,
    SlotGranted,
    SlotReturned,
    Snapshot,
    SubmitBatch,
    Tick,
    WorkerCrashed,
    WorkerIdle,
    WorkWanted,
)
from medianalysed.models import BatchStatus, Priority
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.readiness import TreeSnapshot, snapshot_tree
from medianalysed.rerun import RerunError, begin_rerun
from medianalysed.restarts import BatchRestarts, DueRestart, RestartMode
from medianalysed.setaside import set_aside
from medianalysed.settling import SnapshotWalker, TreeWalked
from medianalysed.stalls import ProgressClock
from medianalysed.state import BatchRecord

logger = logging.getLogger(__name__)

# An active batch costs an actor thread and a demand entry; the workers are shared fairly
# whatever the count. The bound only keeps a flood of folders from becoming a flood of
# threads: batches ready together start together unless more than this arrive at once.
MAX_ACTIVE_BATCHES = 64
NEW_BATCHES = "new batches"  # the fault board's name for the supervisor's batch creation
MAX_WORKER_RESTARTS_PER_MINUTE = 20


@dataclass(slots=True)
class _Demand:
    priority: Priority
    ready: int = 0
    unfinished: int = 0  # as the batch last said (WorkWanted)
    grants_sent: int = 0
    grants_received: int = 0
    last_grant: float = 0.0
    # Workers granted and not yet acknowledged (`grants_received`), oldest first: the
    # ones to take back when the batch stops before seeing them.
    lent: deque[pykka.ActorRef[Any]] = field(default_factory=deque)
    lent_base: int = 0

    def acknowledge(self, grants_received: int) -> None:
        """The batch has seen its first `grants_received` grants."""
        while self.lent and self.lent_base < grants_received:
            self.lent.popleft()
            self.lent_base += 1

    @property
    def outstanding(self) -> int:
        return max(0, self.ready - (self.grants_sent - self.grants_received))


@dataclass(slots=True)
class _ActiveBatch:
    ref: pykka.ActorRef[Any]
    record: BatchRecord
    restarts: int = 0
    salvaging: bool = False


@dataclass(slots=True)
class SupervisorParts:
    """What the composition root hands to the supervisor."""

    config: Config
    store: StateStorage
    history: DuplicateHistory
    worker_factory: Callable[[pykka.ActorRef[Any]], pykka.ActorRef[Any]]
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
        self._queued: deque[str] = deque()
        # (priority rank, created_at) of queued batches: sorting never reads the store.
        self._queue_ranks: dict[str, tuple[int, str]] = {}
        self._active: dict[str, _ActiveBatch] = {}
        self._demand: dict[str, _Demand] = {}
        # One entry per free slot; an image actor has SLOTS_PER_WORKER of them.
        self._idle: deque[pykka.ActorRef[Any]] = deque()
        self._busy: Counter[str] = Counter()
        self._workers: list[pykka.ActorRef[Any]] = []
        self._worker_restarts: deque[float] = deque()
        self._stopping = False
        self._paused = False
        # Crashed batch actors waiting for their restart.
        self._restart_due = BatchRestarts(clock)
        # Batches the daemon died on once (crashloop.py): they run alone until through.
        self._suspects: set[str] = set()
        # While state refuses new batches: when to try again, and how many tries failed.
        self._create_retry_at = 0.0
        self._create_failures = 0

    # -- lifecycle ---------------------------------------------------------------------

    def on_start(self) -> None:
        """Start the worker pool and resume every unfinished batch from state."""
        self._candidates.start(
            SnapshotWalker(self.actor_ref.tell, snapshot=self._parts.snapshot, clock=self._clock)
        )
        for _ in range(self._config.processing.effective_workers):
            self._add_worker()
        self._paused = self._store.is_paused()
        self._review_crash_loops()
        for record in self._store.iter_batches(skip_damaged=True):
            if record.phase != BatchPhase.DONE:
                logger.info("resuming batch %s (%s)", record.batch_id, record.phase)
                self._queued.append(record.batch_id)
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
        self._suspects = set(review.suspects)
        if self._suspects:
            logger.warning(
                "the last run died while %s were in a risky step; they run one at a time",
                ", ".join(sorted(self._suspects)),
            )

    def on_stop(self) -> None:
        """Stop batches, then workers; unfinished images stay pending in state."""
        self._candidates.stop()
        for active in list(self._active.values()):
            active.ref.stop(block=False)
        for worker in self._workers:
            worker.stop(block=False)

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message (runs in this actor's thread); a disk fault is not fatal."""
        try:
            return self._dispatch(message)
        except DiskWriteError as failure:
            # A state write of ours failed (a claim release, a cancel): logged and counted;
            # new batches have their own retry (`_create_batch`).
            self._parts.faults.count(failure)
            logger.error("supervisor: %s; %s not applied", failure, type(message).__name__)
            return None

    def _dispatch(self, message: Any) -> Any:  # noqa: PLR0912 - one branch per message type
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
            case WorkWanted():
                self._on_work_wanted(message)
            case SlotReturned():
                self._on_worker_free(message.worker)
            case WorkerIdle():
                self._on_worker_free(message.worker)
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
                return super().on_receive(message)
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
            if now < self._create_retry_at or not self._create_batch(
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
        claim = self._store.claim_for(intake.claim_key(inbox.name, path.name))
        if claim is None:
            return False
        batch_id, identity = claim
        if batch_id in self._active or batch_id in self._queued:
            return True
        try:
            return identity == intake.identity(path)
        except OSError:
            return True

    # -- batches -----------------------------------------------------------------------

    def _create_batch(self, inbox: InboxConfig, path: Path) -> bool:
        """Claim `path` as a new batch and queue it; False when state refused the write."""
        try:
            identity = intake.identity(path)
        except OSError:
            return True
        record = intake.new_record(self._store, inbox, path)
        batch_id = record.batch_id
        try:
            self._store.create_batch(record, record.claim_key, identity)
        except DiskWriteError as failure:
            self._creation_failed(failure)
            return False
        self._create_failures = 0
        self._parts.faults.recovered(NEW_BATCHES)
        self._queued.append(batch_id)
        logger.info("batch %s queued from %s", batch_id, path, extra={"batch_id": batch_id})
        intake.write_queued_status(self._store, record)
        self._start_queued()
        return True

    def _creation_failed(self, failure: DiskWriteError) -> None:
        delay = write_retry_delay(self._create_failures)
        self._create_failures += 1
        self._create_retry_at = self._clock() + delay
        self._parts.faults.failed(NEW_BATCHES, failure, retry_in=delay)

    def _start_queued(self) -> None:
        if self._stopping or not self._queued or len(self._active) >= MAX_ACTIVE_BATCHES:
            return
        if self._suspects and self._isolating():
            return
        ordered = sorted(self._queued, key=self._queue_rank)
        suspects_waiting = any(batch_id in self._suspects for batch_id in ordered)
        for batch_id in ordered:
            if len(self._active) >= MAX_ACTIVE_BATCHES:
                break
            if suspects_waiting and (batch_id not in self._suspects or self._active):
                continue  # a suspect runs alone, before anything new starts
            self._queued.remove(batch_id)
            self._queue_ranks.pop(batch_id, None)
            try:
                record = self._store.get_batch(batch_id)
                if record is None or record.phase == BatchPhase.DONE:
                    continue
                self._start_batch(record)
            except Exception:
                logger.exception("batch %s cannot be started; trying again later", batch_id)
                self._restart_due.schedule(batch_id, 1, "it could not be started")
            if batch_id in self._suspects:
                break  # it runs alone
        for stale in self._queue_ranks.keys() - set(self._queued):
            del self._queue_ranks[stale]  # removed from the queue elsewhere (cancel)

    def _isolating(self) -> bool:
        """Whether a suspect runs and is not through its risky step yet."""
        for batch_id in list(self._suspects):
            if batch_id in self._active:
                if in_step(self._store, batch_id):
                    return True
                self._suspects.discard(batch_id)  # through the step it was suspected of
            elif batch_id not in self._queued and batch_id not in self._restart_due:
                self._suspects.discard(batch_id)  # ended, set aside, or gone
        return False

    def _queue_rank(self, batch_id: str) -> tuple[int, str]:
        """High priority first, then oldest; read from state once per queued batch."""
        rank = self._queue_ranks.get(batch_id)
        if rank is None:
            record = self._store.get_batch(batch_id)
            rank = (9, batch_id) if record is None else (record.priority.rank, record.created_at)
            self._queue_ranks[batch_id] = rank
        return rank

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
        self._demand[record.batch_id] = _Demand(priority=record.priority)

    def _on_batch_finished(self, message: BatchFinished) -> None:
        active = self._active.pop(message.batch_id, None)
        self._reclaim_slots(self._demand.pop(message.batch_id, None), message.grants_received)
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
        self._reclaim_slots(self._demand.pop(batch_id, None), message.grants_received)
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

    def _reclaim_slots(self, demand: _Demand | None, grants_received: int) -> None:
        """Workers granted to a batch that stopped before it saw the grant are free again."""
        if demand is None:
            return
        demand.acknowledge(grants_received)
        for worker in list(demand.lent):
            self._free_slot(worker)
        demand.lent.clear()

    def _free_slot(self, worker: pykka.ActorRef[Any]) -> None:
        if self._busy[worker.actor_urn] > 0:
            self._busy[worker.actor_urn] -= 1
            if worker in self._workers:
                self._idle.append(worker)

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

    def _add_worker(self) -> None:
        worker = self._parts.worker_factory(self.actor_ref)
        self._workers.append(worker)
        self._idle.extend([worker] * SLOTS_PER_WORKER)

    def _on_work_wanted(self, message: WorkWanted) -> None:
        demand = self._demand.get(message.batch_id)
        if demand is None:
            return
        demand.ready = message.ready
        demand.unfinished = message.unfinished
        demand.grants_received = message.grants_received
        demand.acknowledge(message.grants_received)
        self._schedule()

    def _on_worker_free(self, worker: pykka.ActorRef[Any]) -> None:
        if self._busy[worker.actor_urn] > 0:
            self._busy[worker.actor_urn] -= 1
            if worker in self._workers:
                self._idle.append(worker)
        self._schedule()

    def _schedule(self) -> None:
        while self._idle and not self._stopping:
            batch_id = self._pick_batch()
            if batch_id is None:
                break
            worker = self._idle.popleft()
            demand = self._demand[batch_id]
            if not self._tell_batch(batch_id, SlotGranted(worker=worker)):
                self._idle.appendleft(worker)
                demand.ready = 0  # gone: nothing more goes to it before its crash report
                continue
            demand.grants_sent += 1
            demand.last_grant = self._clock()
            demand.lent.append(worker)
            self._busy[worker.actor_urn] += 1
        self._publish_gauges()

    def _workers_busy(self) -> int:
        """Image actors holding at least one image (each holds up to SLOTS_PER_WORKER)."""
        return sum(1 for held in self._busy.values() if held > 0)

    def _pick_batch(self) -> str | None:
        wanting = [
            (d.priority.rank, d.last_grant, b)
            for b, d in self._demand.items()
            if d.outstanding > 0 and b in self._active
        ]
        if not wanting:
            return None
        return min(wanting)[2]

    def _on_worker_crashed(self, message: WorkerCrashed) -> None:
        logger.error("image actor crashed: %s", message.reason)
        self._busy.pop(message.worker.actor_urn, None)
        if message.worker in self._workers:
            self._workers.remove(message.worker)
        self._idle = deque(slot for slot in self._idle if slot != message.worker)
        for job in message.jobs:
            _tell_quietly(
                job.reply_to,
                ImageAnalysed(
                    path=job.path,
                    attempt=job.attempt,
                    result=None,
                    error={
                        "code": str(ErrorCode.INTERNAL),
                        "message": f"image actor crashed: {message.reason}"[:200],
                        "retryable": False,
                    },
                    duration_ms=0.0,
                ),
            )
        now = self._clock()
        self._worker_restarts.append(now)
        while self._worker_restarts and now - self._worker_restarts[0] > 60:
            self._worker_restarts.popleft()
        if len(self._worker_restarts) > MAX_WORKER_RESTARTS_PER_MINUTE:
            # Stopping the supervisor makes the main loop exit non-zero: systemd restarts us.
            logger.critical("image actors crash repeatedly; stopping the daemon")
            self.actor_ref.stop(block=False)
            return
        self._add_worker()
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
            self._tell_batch(batch_id, message)
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
        self._queued.append(batch_id)
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
                "workers": len(self._workers),
                "workers_busy": self._workers_busy(),
                "queue_depth": sum(d.outstanding for d in self._demand.values()),
                "images_pending": sum(d.unfinished for d in self._demand.values()),
                "batches_in_progress": len(self._active)
                + len(self._queued)
                + len(self._restart_due),
            }
        )

    def _snapshot(self) -> dict[str, Any]:
        return {
            "active": sorted(self._active),
            "queued": list(self._queued),
            **self._candidates.view(),
            "demand": {batch_id: d.outstanding for batch_id, d in self._demand.items()},
            "workers": len(self._workers),
            "workers_busy": self._workers_busy(),
            "restarting": sorted(self._restart_due),
            "suspects": sorted(self._suspects),
            "stalled": self._parts.progress.stalled(),
            "paused": self._paused,
            "stopping": self._stopping,
        }


def _tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    """Tell an actor that may have died meanwhile (then there is no one left to tell)."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        logger.debug("%s is gone; %s dropped", ref, type(message).__name__)
