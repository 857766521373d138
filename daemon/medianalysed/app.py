"""Composition root: builds the daemon, wires its parts, stops them in reverse order.

Start order: state -> duplicate index -> metrics endpoint -> worker process pool ->
supervisor (resumes unfinished batches) -> inbox watchers (watch first, then the
supervisor's rescans catch what was already there) -> READY=1.

The main loop that drives it is `daemonloop`; a reload is `reload`, the status line
`statusline`, batch events reach metrics and webhooks through `daemonlistener`.

Stop order (SIGTERM): STOPPING=1 -> watchers -> supervisor stops handing out work ->
in-flight images finish within the grace time -> actors -> process pool -> metrics
endpoint -> duplicate index -> state. Images that did not finish stay pending in state
and run at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pykka

from medianalysed import __version__, deferred, progress
from medianalysed.actors.image import SLOTS_PER_WORKER, ImageActor
from medianalysed.actors.supervisor import SupervisorActor, SupervisorParts
from medianalysed.batchwork.settings import BatchSettings
from medianalysed.config import Config, InboxConfig, config_fingerprint
from medianalysed.daemonlistener import DaemonListener
from medianalysed.diskfaults import FaultBoard, corruption_seen, reset_corruption
from medianalysed.downloads import Downloader
from medianalysed.errors import DiskWriteError, MedianalysedError
from medianalysed.executors import build_executor
from medianalysed.executors.base import Executor, ExecutorState
from medianalysed.health import HealthBoard, StateProbe
from medianalysed.historyondemand import HistoryOnDemand
from medianalysed.messages import ControlCommand, Shutdown, Snapshot, Tick
from medianalysed.models import ANALYSIS_VERSION, AnalysisSettings
from medianalysed.stalls import ProgressClock
from medianalysed.state import StateStore
from medianalysed.staterepair import check_and_repair
from medianalysed.systemd import Notifier
from medianalysed.webhooks import WebhookDispatcher
from medianalysed.webhooks.progress import ProgressWebhooks

if TYPE_CHECKING:
    from medianalysed.api.service import ApiService
    from medianalysed.metrics import Metrics, MetricsServer
    from medianalysed.watch import InboxWatcher

logger = logging.getLogger(__name__)


def webhook_dir(state_dir: Path) -> Path:
    """Where webhook deliveries and dead letters are persisted."""
    return state_dir / "webhooks"


SHUTDOWN_GRACE_S = 30.0
SUPERVISOR_ANSWER_LIMIT_S = 15.0
DISK_FAULTS_PROBE = "disk-faults"
# Health reasons that fail /healthz but not the watchdog (see `Daemon.watchdog_reasons`).
DISK_HEALTH_KEYS = (DISK_FAULTS_PROBE, StateProbe.KEY)


class Daemon:
    """The running daemon: every long-lived part and the order they start and stop in."""

    def __init__(self, config: Config, *, watch: bool = True, serve_metrics: bool = True) -> None:
        self.config = config
        self._watch_enabled = watch
        self._serve_metrics = serve_metrics
        self.store: StateStore | None = None
        self.history: HistoryOnDemand | None = None
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        self.api: ApiService | None = None
        self.executor: Executor | None = None
        self.downloader: Downloader | None = None
        self.webhooks: WebhookDispatcher | None = None
        self.progress_webhooks: ProgressWebhooks | None = None
        self.supervisor: pykka.ActorRef[Any] | None = None
        self.watcher: InboxWatcher | None = None
        self.notifier = Notifier()
        # Why the daemon is unhealthy, from memory: other parts add probes or reasons here.
        self.health = HealthBoard()
        self.state_probe: StateProbe | None = None
        self.progress = ProgressClock()
        self.ready = threading.Event()
        # When the supervisor last answered an ask (the main loop asks every second).
        self.last_answer = time.monotonic()
        self.stop_requested = threading.Event()
        # Who is paused by a disk that refuses writes (in memory: health never writes).
        self.faults = FaultBoard(on_failure=self._count_write_failure)

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Start every part in order; raises StartupError with a remedy on failure."""
        config = self.config
        if self._serve_metrics:
            deferred.import_all()  # a daemon fails at its start if one is missing, as ever
        reset_corruption()
        check_and_repair(config.daemon.state_dir, config.inboxes)
        self.store = StateStore(config.daemon.state_dir)
        self.store.begin_incarnation()
        self.state_probe = StateProbe(
            self.health, self.store.writable, f"state_dir {config.daemon.state_dir}"
        )
        self.state_probe.start()
        self.health.add_probe("daemon", self._own_health_reasons)
        self.health.add_probe("stalls", self._stall_reasons)
        self.health.add_probe(DISK_FAULTS_PROBE, self._disk_health_reasons)
        self.history = HistoryOnDemand(self.store.history_dir, analysis_version=ANALYSIS_VERSION)
        if self._serve_metrics:
            # A daemon. `analyze` serves nothing, so it counts nothing and does not import
            # prometheus; its history opens when a batch first asks it (`deferred`).
            self.history.open()
            self.metrics = self._start_metrics()
        self.executor = build_executor(
            config,
            shared_paths=[("the downloads folder", self.store.state_dir / "downloads")],
            on_state=self._set_executor_state,
        )
        self.executor.check_inboxes(config.inboxes)
        # One download thread per image-actor slot: a download never waits for a thread.
        self.downloader = Downloader(
            config.downloads, threads=SLOTS_PER_WORKER * config.processing.effective_workers
        )
        self.webhooks = WebhookDispatcher(
            config.webhook,
            webhook_dir(config.daemon.state_dir),
            allow_private_networks=config.downloads.allow_private_networks,
            on_outcome=self._count_delivery,
        )
        self.webhooks.start()
        self.progress_webhooks = ProgressWebhooks(
            self.webhooks.enqueue, config.webhook.progress_seconds
        )
        progress.add_observer(self.progress_webhooks.observe)
        self.supervisor = SupervisorActor.start(self._supervisor_parts())
        if self._watch_enabled:
            from medianalysed.watch import InboxWatcher  # noqa: PLC0415 - see ApiService

            self.watcher = InboxWatcher(self.supervisor, on_mode=self._set_watcher_mode)
            self.watcher.start(config.inboxes)
        self.supervisor.tell(Tick())
        self.ready.set()
        self.notifier.ready(f"watching {len(config.inboxes)} inbox(es)")
        logger.info("medianalysed %s ready", __version__)

    def _start_metrics(self) -> Metrics:
        """The metrics, and when `metrics.listen` is set their endpoint and the API."""
        from medianalysed.metrics import Metrics, MetricsServer  # noqa: PLC0415 - see start

        config = self.config
        assert self.store is not None
        metrics = Metrics.create(__version__, [inbox.name for inbox in config.inboxes])
        metrics.workers.set(config.processing.effective_workers)
        metrics.executor_available.set(1)  # a Dask executor says otherwise while away
        metrics.up.set(1)
        if config.metrics.listen:
            from medianalysed.api.service import ApiService  # noqa: PLC0415 - see start

            self.api = ApiService(config.api, self.store, config.inboxes)
            self.api.start()
            self.metrics_server = MetricsServer(
                config.metrics.listen,
                metrics.registry,
                health=self.health_reasons,
                ready=self.is_ready,
                api=self.api.endpoint,
            )
            self.metrics_server.start()
        return metrics

    def _set_executor_state(self, state: ExecutorState) -> None:
        if self.metrics is not None:
            self.metrics.set_executor_state(state)

    def _set_watcher_mode(self, inbox: str, mode: str) -> None:
        if self.metrics is not None:
            self.metrics.set_watcher_mode(inbox, mode)

    def _count_write_failure(self, target: str, errno_name: str) -> None:
        if self.metrics is not None:
            self.metrics.count_write_failure(target, errno_name)

    def _count_delivery(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome=outcome).inc()
            if outcome == "dead" and self.webhooks is not None:
                self.metrics.dead_letters.set(len(self.webhooks.dead_letters()))

    def _supervisor_parts(self) -> SupervisorParts:
        assert self.store is not None
        assert self.executor is not None
        assert self.history is not None
        config = self.config
        settings = AnalysisSettings.from_config(config)
        store = self.store
        executor = self.executor
        downloader = self.downloader
        metrics = self.metrics

        def count_restart() -> None:
            if metrics is not None:
                metrics.worker_restarts.inc()

        def worker_factory(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
            return ImageActor.start(
                executor=executor,
                settings=settings,
                timeout_s=config.processing.image_timeout_seconds,
                content_dir=store.content_dir,
                supervisor=supervisor,
                downloader=downloader,
                on_process_replaced=count_restart,
            )

        def batch_settings(inbox: InboxConfig) -> BatchSettings:
            return BatchSettings(
                inbox=inbox,
                processing=config.processing,
                near_duplicate_distance=config.analysis.near_duplicate_distance,
                near=config.near,
                max_duplicates_listed=config.analysis.max_duplicates_listed,
                config_fingerprint=config_fingerprint(config),
                downloads_dir=store.state_dir / "downloads",
            )

        def on_gauges(gauges: dict[str, int]) -> None:
            if metrics is None:
                return
            metrics.workers_busy.set(gauges["workers_busy"])
            metrics.queue_depth.set(gauges["queue_depth"])
            metrics.images_pending.set(gauges["images_pending"])
            metrics.batches_in_progress.set(gauges["batches_in_progress"])

        def on_settled(_inbox: str, seconds: float) -> None:
            if metrics is not None:
                metrics.settle_wait.observe(seconds)

        return SupervisorParts(
            config=config,
            store=store,
            history=self.history,
            worker_factory=worker_factory,
            batch_settings=batch_settings,
            listener=DaemonListener(metrics, self.webhooks),
            on_settled=on_settled,
            on_gauges=on_gauges,
            scan_inboxes=self._watch_enabled,
            progress=self.progress,
            on_lifecycle=metrics.count_lifecycle if metrics is not None else lambda _event: None,
            faults=self.faults,
        )

    # -- health ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Ready: started, and the executor takes new images (its Dask scheduler is there)."""
        return self.ready.is_set() and (
            self.executor is None or self.executor.unavailable() is None
        )

    def health_reasons(self) -> list[str]:
        """Why the daemon is unhealthy now (empty: healthy); from memory, any thread."""
        return self.health.reasons()

    def healthy(self) -> bool:
        """Whether `health_reasons()` is empty."""
        return not self.health_reasons()

    def _stall_reasons(self) -> list[str]:
        limit = self.config.processing.stall_seconds
        return [
            f"batch {batch_id} made no progress for over {limit:g} s (stall_seconds)"
            for batch_id in self.progress.stalled()
        ]

    def watchdog_reasons(self) -> list[str]:
        """The reasons that stop the systemd watchdog pings: health without the disk's.

        A disk that refuses writes makes `/healthz` fail but must not get the daemon killed
        and restarted over and over: a restart frees no space, and the paused batches resume
        by themselves when it returns.
        """
        return self.health.reasons(skip=DISK_HEALTH_KEYS)

    def _disk_health_reasons(self) -> list[str]:
        """Writers paused by the disk, and a damaged database found while running."""
        damaged = corruption_seen()
        reasons = [] if damaged is None else [f"{damaged}; exiting to repair it"]
        return reasons + self.faults.reasons()

    def _own_health_reasons(self) -> list[str]:
        """Supervisor answering, watchers and process pool alive."""
        reasons: list[str] = []
        supervisor = self.supervisor
        if supervisor is None or not supervisor.is_alive():
            reasons.append("supervisor actor not running")
        else:
            silent = time.monotonic() - self.last_answer
            if silent > SUPERVISOR_ANSWER_LIMIT_S:
                # Alive but stuck: a deadlock must stop the watchdog pings.
                reasons.append(f"supervisor has not answered for {silent:.0f} s")
        if self.watcher is not None and not self.watcher.healthy():
            reasons.append("an inbox watcher thread stopped")
        broken = None if self.executor is None else self.executor.broken()
        if broken is not None:
            reasons.append(broken)
        return reasons

    def snapshot(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The supervisor's view, asked from a non-actor thread."""
        if self.supervisor is None:
            return None
        try:
            answer = cast(dict[str, Any], self.supervisor.ask(Snapshot(), timeout=timeout))
        except (pykka.ActorDeadError, pykka.Timeout):
            return None
        self.last_answer = time.monotonic()
        return dict(answer)

    # -- main loop ---------------------------------------------------------------------

    def tick(self) -> None:
        """One main-loop step: nudge the supervisor and forward control commands."""
        if self.supervisor is None or self.store is None:
            return
        if not self.supervisor.is_alive():
            # Unfinished work is in state: exiting lets systemd restart and resume it.
            msg = "the supervisor actor died (see the error logged above); stopping"
            raise MedianalysedError(msg)
        self._forward_control_commands(self.supervisor, self.store)
        if self.history is not None and self.metrics is not None:
            self.metrics.ledger_entries.set(len(self.history))
        self.supervisor.tell(Tick())

    def _forward_control_commands(self, supervisor: pykka.ActorRef[Any], store: StateStore) -> None:
        while True:
            try:
                command = store.control.popleft()
            except IndexError:
                break
            except DiskWriteError as failure:
                # Taking a command off the queue is a write: it waits for the disk.
                self.faults.count(failure)
                break
            supervisor.tell(ControlCommand(**command))

    # -- stop --------------------------------------------------------------------------

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop in reverse order; in-flight images get `grace_s` to finish."""
        self.notifier.stopping()
        if self.watcher is not None:
            self.watcher.stop()
        if self.supervisor is not None and self.supervisor.is_alive():
            self.supervisor.tell(Shutdown())
            self._drain(grace_s)
            try:
                self.supervisor.stop(block=True, timeout=10)
            except pykka.Timeout:
                logger.error("supervisor did not stop within 10 s")
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        if self.executor is not None:
            self.executor.close()
        if self.downloader is not None:
            self.downloader.close()
        self._stop_webhooks()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.api is not None:
            self.api.stop()
        if self.history is not None:
            self.history.close()
        if self.state_probe is not None:
            self.state_probe.stop()
        if self.store is not None:
            try:
                self.store.end_incarnation()  # an orderly stop: not a death (crashloop.py)
            except Exception:
                logger.exception("cannot record the orderly stop in state")
            self.store.close()
        self.notifier.close()

    def _stop_webhooks(self) -> None:
        if self.progress_webhooks is not None:
            progress.remove_observer(self.progress_webhooks.observe)
        if self.webhooks is not None:
            self.webhooks.stop()
            self.webhooks.close()

    def _drain(self, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        while True:
            snapshot = self.snapshot(timeout=1.0)
            if snapshot is None or snapshot["workers_busy"] == 0:
                return
            if time.monotonic() >= deadline:
                break
            self.stop_requested.wait(0.1)
        logger.warning("in-flight images did not finish within %.0f s; they will rerun", grace_s)
