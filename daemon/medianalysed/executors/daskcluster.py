"""The Dask executor: each image's analysis is one task on a Dask distributed cluster (SPEC §11).

The daemon keeps watching, batch state, the outbox and webhooks; only `dasktask.analyse` (a
path in, a record out) runs on the cluster. A monitor thread owns the connection:

- While the scheduler, or every worker, is away, new work is held here (`held`, `/readyz` 503,
  one log line when it goes and one when it returns). Tasks that were on the cluster then are
  run again when it answers: their loss is not the image's fault, and costs no attempt.
- A Dask worker that dies while it runs an image costs that image one attempt: the scheduler
  reports `KilledWorker` (`allowed-failures = 0`), the task runs again elsewhere with a new key,
  and the image's attempts count it. An image that kills every worker it meets ends `INTERNAL`
  once its attempts are spent.
- Every task key carries this incarnation's token and a sequence number: a result of a previous
  daemon (SIGKILLed while its tasks ran) or of a run given up never reaches an image actor.
- At the first connection, on reload and whenever the set of workers changes, every worker
  checks that it sees each inbox; the blind ones are named in the log and the status line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import distributed

from medianalysed import __version__
from medianalysed.config import InboxConfig
from medianalysed.errors import ErrorCode
from medianalysed.executors.base import LOST_RUNS, ExecutorState
from medianalysed.executors.dasktask import DAEMONIC_ADVICE, analyse, check_worker
from medianalysed.outcomes import error_json
from medianalysed.worker import WorkerJob

logger = logging.getLogger(__name__)

POLL_S = 0.5
CONNECT_TIMEOUT_S = 5.0  # per try; the monitor tries again until the scheduler answers
ANSWER_TIMEOUT_S = 10.0
IN_FLIGHT_PER_WORKER = 2  # a result or a check from a connected scheduler
# The cluster the daemon starts itself (`address = ""`), and what we ask of any scheduler.
# The environment the README's (and systemd/dask/'s) scheduler and workers run with.
CLUSTER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    "OMP_NUM_THREADS": "1",  # one BLAS thread per analysis process
    "OPENBLAS_NUM_THREADS": "1",
}
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    # A worker holds only the images it runs; the next in line wait on the scheduler, so a
    # worker that dies takes no bystander with it.
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.worker.daemon": False,
}


@dataclass(eq=False, slots=True)
class _Task:
    job: WorkerJob
    outer: Future[dict[str, Any]]
    max_runs: int
    lost: int = 0  # runs lost with a dying worker
    key: str | None = None  # while on the cluster
    remote: Any = None  # the distributed.Future, while on the cluster


@dataclass(slots=True)
class _Blindness:
    """Per worker address, the inbox names (or other folders) it cannot see, with the reason."""

    unseen: dict[str, dict[str, str]] = field(default_factory=dict)

    def notes(self) -> list[str]:
        return [
            f"Dask worker {worker} cannot see {', '.join(sorted(names))}"
            for worker, names in sorted(self.unseen.items())
            if names
        ]


class DaskExecutor:
    """Runs analyses on a Dask cluster: `address` of its scheduler, or "" for a local one."""

    kind = "dask"

    def __init__(
        self,
        *,
        address: str,
        workers: int,
        timeout_s: float,
        max_worker_memory: int,
        max_retries: int,
        extra_paths: Sequence[tuple[str, Path]] = (),
        on_state: Callable[[ExecutorState], None] = lambda _state: None,
    ) -> None:
        self._address = address
        self._workers = workers
        # As on the local pool: each worker slot has one image running and the next in line
        # (the image actors' SLOTS_PER_WORKER), waiting on the scheduler (worker-saturation
        # 1.0), so a Dask worker never idles between two.
        self._in_flight_limit = workers * IN_FLIGHT_PER_WORKER
        self._timeout_s = timeout_s
        self._max_worker_memory = max_worker_memory
        self._max_retries = max_retries
        self._extra_paths = list(extra_paths)
        self._on_state = on_state
        self._token = uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self._held: deque[_Task] = deque()
        self._running: dict[str, _Task] = {}
        self._tasks: dict[Future[dict[str, Any]], _Task] = {}
        self._client: distributed.Client | None = None
        self._cluster: distributed.LocalCluster | None = None
        self._available = False
        self._away_reason = f"connecting to the Dask scheduler at {self._shown_address()}"
        self._warned_unreachable = False
        self._inboxes: list[InboxConfig] = []
        self._known_workers: frozenset[str] | None = None
        self._check_due = True
        self._blind = _Blindness()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dask-executor", daemon=True)
        self._thread.start()

    # -- the Executor protocol ---------------------------------------------------------

    def submit(self, job: WorkerJob) -> Future[dict[str, Any]]:
        """Queue one job; it goes to the cluster at once unless `workers` are in flight.

        The content cache stays off on the cluster: its SQLite files belong to this machine.
        """
        if self._stop.is_set():
            msg = "the Dask executor is closed"
            raise RuntimeError(msg)
        outer: Future[dict[str, Any]] = Future()
        max_runs = max(1, self._max_retries + 2 - job.attempt)
        task = _Task(dataclasses.replace(job, content_dir=None), outer, max_runs)
        with self._lock:
            self._tasks[outer] = task
            self._held.append(task)
        outer.add_done_callback(self._forget)
        self._pump()
        return outer

    def held(self, future: Future[dict[str, Any]]) -> bool:
        """Whether the job waits here (the cluster is away, or `workers` are in flight)."""
        with self._lock:
            task = self._tasks.get(future)
            return task is not None and task.key is None

    def broken(self) -> str | None:
        """Never: a cluster that goes away is waited for (`unavailable`)."""
        return None

    def unavailable(self) -> str | None:
        """Why new images wait, while the scheduler or every worker is away."""
        return None if self._available else self._away_reason

    def check_inboxes(self, inboxes: Sequence[InboxConfig]) -> None:
        """Have every worker check these inboxes at the monitor's next step."""
        with self._lock:
            self._inboxes = list(inboxes)
            self._check_due = True

    def notes(self) -> list[str]:
        """The workers that cannot see an inbox, and why new work waits."""
        away = [] if self._available else [self._away_reason]
        return away + self._blind.notes()

    def close(self) -> None:
        """Stop the monitor, cancel what is pending, close the client (and a local cluster)."""
        self._stop.set()
        self._thread.join(timeout=CONNECT_TIMEOUT_S + ANSWER_TIMEOUT_S)
        with self._lock:
            tasks = list(self._tasks.values())
            self._held.clear()
            self._running.clear()
        for task in tasks:
            task.remote = None
            task.outer.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(timeout=ANSWER_TIMEOUT_S)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=ANSWER_TIMEOUT_S)

    # -- sending work --------------------------------------------------------------------

    def _pump(self) -> None:
        """Send held jobs while the cluster is there and fewer than `workers` are on it."""
        with self._lock:
            client = self._client
            if client is None or not self._available or client.status != "running":
                return
            while self._held and len(self._running) < self._in_flight_limit:
                task = self._held.popleft()
                if task.outer.done():
                    continue
                try:
                    self._launch(client, task)
                except Exception as exc:  # the client is closing: the monitor will see it
                    logger.debug("cannot submit to the Dask scheduler yet: %s", exc)
                    self._held.appendleft(task)
                    return

    def _launch(self, client: distributed.Client, task: _Task) -> None:
        key = f"medianalysed-{self._token}-{next(self._sequence)}"
        remote = client.submit(
            analyse,
            task.job,
            self._timeout_s,
            self._max_worker_memory,
            key=key,
            pure=False,
            retries=0,
        )
        task.key, task.remote = key, remote
        self._running[key] = task
        remote.add_done_callback(lambda done: self._landed(task, key, done))

    def _landed(self, task: _Task, key: str, remote: Any) -> None:
        """A task of ours finished, failed or was cancelled (on a Dask callback thread)."""
        with self._lock:
            if self._running.get(key) is not task:
                return  # given up meanwhile (the connection was lost): it runs again
            del self._running[key]
            task.key, task.remote = None, None
        if not task.outer.done():
            outcome = self._outcome(task, remote)
            if outcome is None:
                with self._lock:
                    self._held.appendleft(task)
            else:
                _resolve(task.outer, {**outcome, LOST_RUNS: task.lost})
        self._pump()

    def _outcome(self, task: _Task, remote: Any) -> dict[str, Any] | None:
        """The outcome to report, or None when the task must run again."""
        status = remote.status
        if status == "finished":
            try:
                return dict(remote.result(timeout=ANSWER_TIMEOUT_S))
            except Exception as exc:  # its worker died before we fetched the record
                logger.warning(
                    "the record of %s was lost (%s); it runs again", task.job.relpath, exc
                )
                return self._lost_run(task, f"{type(exc).__name__}: {exc}")
        if status == "error":
            failure = remote.exception(timeout=ANSWER_TIMEOUT_S)
            if isinstance(failure, distributed.KilledWorker):
                return self._lost_run(task, f"the Dask worker {failure.last_worker.address} died")
            return {"error": error_json(ErrorCode.INTERNAL, f"{type(failure).__name__}: {failure}")}
        return None  # cancelled or lost with the scheduler: not the image's fault

    def _lost_run(self, task: _Task, what: str) -> dict[str, Any] | None:
        task.lost += 1
        if task.lost < task.max_runs:
            logger.warning("%s while analysing %s; it runs again", what, task.job.relpath)
            return None
        task.lost -= 1  # the last run is the attempt that reports
        message = f"{what} while analysing it, on each of its {task.max_runs} attempt(s)"
        return {"error": error_json(ErrorCode.INTERNAL, message)}

    def _forget(self, outer: Future[dict[str, Any]]) -> None:
        with self._lock:
            task = self._tasks.pop(outer, None)
            if task is not None and task.key is not None and outer.cancelled():
                # Dropping the reference releases the key: the cluster forgets the task.
                self._running.pop(task.key, None)
                task.key, task.remote = None, None

    # -- the monitor thread --------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                logger.exception("the Dask executor's monitor failed; it tries again")
            self._stop.wait(POLL_S)

    def _step(self) -> None:
        client = self._client
        if client is None or client.status in {"closing", "closed"}:
            if client is not None:
                self._went_away("the Dask client gave up reconnecting")
            self._client = self._connect()
            return
        if client.status != "running":
            self._went_away(f"lost the Dask scheduler at {self._shown_address()}")
            return
        assert client.scheduler is not None
        try:
            info = client.sync(
                client.scheduler.identity, n_workers=-1, callback_timeout=ANSWER_TIMEOUT_S
            )
        except Exception as exc:
            self._went_away(
                f"the Dask scheduler at {self._shown_address()} does not answer ({exc})"
            )
            return
        workers = frozenset(info.get("workers", {}))
        if not workers:
            self._went_away(f"no Dask worker is connected to {self._shown_address()}")
            return
        if workers != self._known_workers or self._check_due:
            self._check_workers(client, workers)
        self._came_back(len(workers))

    def _connect(self) -> distributed.Client | None:
        try:
            address = self._address or self._local_cluster_address()
            client = distributed.Client(
                address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, name="medianalysed"
            )
        except Exception as exc:
            self._away_reason = (
                f"cannot reach the Dask scheduler at {self._shown_address()} ({exc})"
            )
            if not self._warned_unreachable:
                logger.error("%s: new images wait until it answers", self._away_reason)
                self._warned_unreachable = True
            return None
        self._warned_unreachable = False
        self._check_allowed_failures(client)
        return client

    def _local_cluster_address(self) -> str:
        if self._cluster is None:
            dask.config.set(LOCAL_CLUSTER_CONFIG)
            self._cluster = distributed.LocalCluster(
                n_workers=self._workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address=None,
            )
            logger.info(
                "started a local Dask cluster of %d worker(s) at %s",
                self._workers,
                self._cluster.scheduler_address,
            )
        return str(self._cluster.scheduler_address)

    def _check_allowed_failures(self, client: distributed.Client) -> None:
        try:
            allowed = client.run_on_scheduler(_allowed_failures, callback_timeout=ANSWER_TIMEOUT_S)
        except Exception as exc:
            logger.warning("cannot read the Dask scheduler's allowed-failures: %s", exc)
            return
        if allowed:
            logger.warning(
                "the Dask scheduler allows %d worker deaths per task (allowed-failures): a worker "
                "lost mid-image is rerun by Dask itself and not counted as an attempt; start it "
                "with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0",
                allowed,
            )

    def _went_away(self, reason: str) -> None:
        self._away_reason = reason
        with self._lock:
            was_available, self._available = self._available, False
            lost = list(self._running.values())
            self._running.clear()
            for task in reversed(lost):
                task.key, task.remote = None, None
                self._held.appendleft(task)
            held = len(self._held)
        if was_available:
            logger.error(
                "%s: new images wait until it returns (%d image(s) that were on the cluster "
                "run again then, %d waiting)",
                reason,
                len(lost),
                held,
            )
            self._publish(0)

    def _came_back(self, workers: int) -> None:
        with self._lock:
            was_available, self._available = self._available, True
        if not was_available:
            logger.info(
                "the Dask scheduler at %s answers with %d worker(s): analysing on the cluster",
                self._shown_address(),
                workers,
            )
        self._publish(workers)
        self._pump()

    def _check_workers(self, client: distributed.Client, workers: frozenset[str]) -> None:
        with self._lock:
            self._check_due = False
            folders = {
                str(inbox.path): f"inbox {inbox.name} ({inbox.path})" for inbox in self._inboxes
            }
        # Only what exists here: the downloads folder appears with the first URL list.
        folders |= {
            str(path): f"{name} ({path})" for name, path in self._extra_paths if path.is_dir()
        }
        try:
            answers = client.run(
                check_worker,
                list(folders),
                self._timeout_s,
                self._max_worker_memory,
                on_error="return",
                callback_timeout=ANSWER_TIMEOUT_S,  # a hung worker must not stall the monitor
            )
        except Exception as exc:
            logger.warning("cannot ask the Dask workers to check the inboxes: %s", exc)
            self._check_due = True
            return
        self._known_workers = workers
        blind = _Blindness()
        for worker, answer in sorted(answers.items()):
            blind.unseen[worker] = self._judge(worker, answer, folders)
        for note in blind.notes():
            if note not in self._blind.notes():
                logger.error("%s: its images fail there; mount them at the same path", note)
        self._blind = blind

    @staticmethod
    def _judge(worker: str, answer: Any, folders: dict[str, str]) -> dict[str, str]:
        if isinstance(answer, BaseException):
            logger.error("Dask worker %s cannot run medianalysed: %s", worker, answer)
            return {"medianalysed": str(answer)}
        if answer["version"] != __version__:
            logger.warning(
                "Dask worker %s runs medianalysed %s, the daemon %s: install the same version",
                worker,
                answer["version"],
                __version__,
            )
        if answer["daemonic"]:
            logger.error("Dask worker %s: %s", worker, DAEMONIC_ADVICE)
        return {folders[path]: reason for path, reason in answer["unseen"].items()}

    def _publish(self, workers: int) -> None:
        blind = sum(1 for names in self._blind.unseen.values() if names)
        self._on_state(ExecutorState(available=self._available, workers=workers, blind=blind))

    def _shown_address(self) -> str:
        return self._address or "a local cluster"


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


def _resolve(future: Future[dict[str, Any]], outcome: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile (timed out, shutdown)
        future.set_result(outcome)
