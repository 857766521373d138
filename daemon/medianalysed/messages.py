"""Every message the actors exchange: frozen dataclasses sent with `tell`.

Who sends what to whom:

| message          | from                  | to          |
|------------------|-----------------------|-------------|
| PathSeen         | InboxWatcher, rescans | Supervisor  |
| SubmitBatch      | `analyze` command     | Supervisor  |
| Tick             | app main loop         | Supervisor  |
| InboxesChanged   | app (SIGHUP reload)   | Supervisor  |
| ControlCommand   | app (control queue)   | Supervisor  |
| OfferJobs        | BatchActor            | Supervisor  |
| WithdrawJobs     | BatchActor            | Supervisor  |
| BatchFinished    | BatchActor            | Supervisor  |
| BatchCrashed     | BatchActor.on_failure | Supervisor  |
| WorkerIdle       | ImageActor            | Supervisor  |
| WorkerCrashed    | ImageActor.on_failure | Supervisor  |
| Snapshot (ask)   | app, tests            | Supervisor  |
| BatchTick        | Supervisor            | BatchActor  |
| JobsReturned     | Supervisor            | BatchActor  |
| CancelBatch      | Supervisor            | BatchActor  |
| ImageAnalysed    | ImageActor            | BatchActor  |
| AnalyseImage     | Supervisor            | ImageActor  |

An image costs three messages: AnalyseImage (supervisor → image actor), then ImageAnalysed
(→ its batch) and WorkerIdle (→ supervisor); a batch's OfferJobs carries a window of jobs.

Commands are imperative, events past tense (STYLE §3.2). Nothing mutable is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from medianalysed.config import InboxConfig
from medianalysed.errors import DiskWriteError
from medianalysed.outcomes import ImageError, ImageOutcome, ImageResult

if TYPE_CHECKING:
    from medianalysed.actors.batch import BatchActor
    from medianalysed.actors.image import ImageActor


@dataclass(frozen=True, slots=True)
class PathSeen:
    """Something appeared or changed directly inside an inbox."""

    inbox: str
    path: str


@dataclass(frozen=True, slots=True)
class SubmitBatch:
    """Start a batch from a path now, without waiting for readiness (`analyze`)."""

    inbox: str
    path: str


@dataclass(frozen=True, slots=True)
class InboxesChanged:
    """After SIGHUP: the inboxes to watch now (new ones start; removed ones stop taking batches)."""

    inboxes: tuple[InboxConfig, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """A periodic nudge: check settling folders, due retries, control commands (each actor
    reads its own clock)."""


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """A command from the CLI, read from the durable control queue."""

    verb: str
    batch_id: str = ""
    force: bool = False


@dataclass(frozen=True, slots=True)
class AnalyseImage:
    """Analyse one image of a batch and reply to `reply_to`."""

    batch_id: str
    path: str  # the record's key (names.py)
    file_path: str  # root/relpath; for URLs, where to download to
    source_url: str | None
    attempt: int
    reply_to: pykka.ActorRef[BatchActor]
    bypass_cache: bool = False
    # What the worker opens: `relpath` (a key) below the folder `root`, never by the full path.
    root: str = ""
    relpath: str = ""
    follow_links: bool = True  # symlinks inside `root` are followed (a batch folder's own)


@dataclass(frozen=True, slots=True)
class ImageAnalysed:
    """The outcome of one attempt: `result` on success, else `error` (code, message)."""

    path: str
    attempt: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    duration_ms: float
    cached: bool = False
    vips: str | None = None  # libvips "decoded" the image, or failed on it ("fallback")
    interrupted: bool = False  # the daemon is stopping: not an attempt, the image stays pending
    file: dict[str, Any] | None = None  # on an error: the file facts read before it, if any
    # The downloads folder refused the file: not an attempt; the batch parks and retries.
    disk_fault: DiskWriteError | None = None

    @property
    def outcome(self) -> ImageOutcome:
        """The attempt's outcome, typed (the dicts are the worker process's reply)."""
        if self.result is not None:
            return ImageResult(self.result)
        return ImageError.from_json(self.error)


@dataclass(frozen=True, slots=True)
class OfferJobs:
    """A batch's next jobs for the workers (a bounded window), with its counts for the gauges."""

    batch_id: str
    jobs: tuple[AnalyseImage, ...]
    waiting: int = 0  # its images ready to start but not offered yet (beyond the window)
    unfinished: int = 0  # its images not yet terminal: waiting, retrying or at a worker


@dataclass(frozen=True, slots=True)
class WithdrawJobs:
    """A batch takes back its offered jobs that no worker took yet (cancelled, parked)."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class JobsReturned:
    """The offered jobs no worker took, back to their batch (after WithdrawJobs)."""

    jobs: tuple[AnalyseImage, ...]


@dataclass(frozen=True, slots=True)
class WorkerIdle:
    """An image actor is through with `job` (its outcome is on the way to the batch)."""

    worker: pykka.ActorRef[ImageActor]
    job: AnalyseImage


@dataclass(frozen=True, slots=True)
class WorkerCrashed:
    """An image actor died on an unexpected exception (the supervisor knows what it held)."""

    worker: pykka.ActorRef[ImageActor]
    reason: str


@dataclass(frozen=True, slots=True)
class BatchFinished:
    """A batch reached a terminal status and its input was dealt with."""

    batch_id: str
    status: str


@dataclass(frozen=True, slots=True)
class BatchCrashed:
    """A batch actor died on an unexpected exception."""

    batch_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BatchTick:
    """The supervisor's tick, passed on to a batch with how many of its images the workers hold
    now (its other offered images wait for a worker: that is not a stall)."""

    at_workers: int = 0


@dataclass(frozen=True, slots=True)
class CancelBatch:
    """Stop a batch: pending images are not analysed; the batch ends `cancelled`."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop taking new work; in-flight images finish or are checkpointed as pending."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Ask (from outside the actor system only) for a view of the supervisor's state."""


# What each actor receives from others (each adds its own private steps).
SupervisorMessage = (
    PathSeen
    | SubmitBatch
    | Tick
    | InboxesChanged
    | ControlCommand
    | OfferJobs
    | WithdrawJobs
    | BatchFinished
    | BatchCrashed
    | WorkerIdle
    | WorkerCrashed
    | Shutdown
    | Snapshot
)
BatchMessage = ImageAnalysed | JobsReturned | BatchTick | CancelBatch
ImageMessage = AnalyseImage
