"""Composition root: builds the daemon, runs its main loop, stops it in reverse order.

Start order: state -> duplicate index -> metrics endpoint -> worker process pool ->
supervisor (resumes unfinished batches) -> inbox watchers (watch first, then the
supervisor's rescans catch what was already there) -> READY=1.

The main thread only loops on `Event.wait`: it ticks the supervisor, drains the signal
queue and the CLI's control queue, and pings the systemd watchdog while healthy.

Stop order (SIGTERM): STOPPING=1 -> watchers -> supervisor stops handing out work ->
in-flight images finish within the grace time -> actors -> process pool -> metrics
endpoint -> duplicate index -> state. Images that did not finish stay pending in state
and run at the next start.
"""

from __future__ import annotations

import faulthandler
import logging
import re
import signal
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, cast

import pykka

from medianalysed import __version__, progress
from medianalysed.actors.batch import BatchListener, BatchSettings
from medianalysed.actors.image import SLOTS_PER_WORKER, ImageActor
from medianalysed.actors.supervisor import SupervisorActor, SupervisorParts
from medianalysed.api.service import ApiService
from medianalysed.config import Config, InboxConfig, config_fingerprint, load_config
from medianalysed.diskfaults import FaultBoard, corruption_seen, reset_corruption
from medianalysed.downloads import Downloader
from medianalysed.dupindex import HistoryIndex
from medianalysed.errors import (
    ConfigError,
    DiskWriteError,
    ExitCode,
    MedianalysedError,
    StartupError,
    StateCorruptError,
    StateUnusableError,
)
from medianalysed.executors import build_executor
from medianalysed.executors.base import Executor
from medianalysed.health import HealthBoard, StateProbe
from medianalysed.logs import clear_secrets, register_secret, setup_logging
from medianalysed.messages import ControlCommand, InboxesChanged, Shutdown, Snapshot, Tick
from medianalysed.metrics import VIPS_RESULTS, Metrics, MetricsServer
from medianalysed.models import ANALYSIS_VERSION, AnalysisSettings
from medianalysed.progress import stored_progress
from medianalysed.stalls import ProgressClock
from medianalysed.state import StateStore
from medianalysed.staterepair import check_and_repair
from medianalysed.systemd import Notifier, watchdog_interval
from medianalysed.watch import InboxWatcher
from medianalysed.webhooks import WebhookDispatcher, event_for_status
from medianalysed.webhooks.progress import ProgressWebhooks

logger = logging.getLogger(__name__)


def webhook_dir(state_dir: Path) -> Path:
    """Where webhook deliveries and dead letters are persisted."""
    return state_dir / "webhooks"


TICK_INTERVAL_S = 0.25
SHUTDOWN_GRACE_S = 30.0
STATUS_INTERVAL_S = 1.0
SUPERVISOR_ANSWER_LIMIT_S = 15.0
STATUS_BATCHES_SHOWN = 3
DISK_FAULTS_PROBE = "disk-faults"
# Health reasons that fail /healthz but not the watchdog (see `Daemon.watchdog_reasons`).
DISK_HEALTH_KEYS = (DISK_FAULTS_PROBE, StateProbe.KEY)


class DaemonListener(BatchListener):
    """Feeds batch events into metrics and webhooks (called from batch actor threads)."""

    def __init__(self, metrics: Metrics | None, webhooks: WebhookDispatcher | None) -> None:
        self._metrics = metrics
        self._webhooks = webhooks

    def image_finished(self, inbox: str, status: str, error_code: str | None, **info: Any) -> None:
        """Count one image outcome."""
        metrics = self._metrics
        if metrics is None:
            return
        if status == "retry":
            metrics.retries.inc()
            return
        metrics.images.labels(inbox=inbox, status=status).inc()
        if error_code is not None:
            metrics.image_errors.labels(code=error_code).inc()
        if "duration_s" in info:
            metrics.image_duration.observe(float(info["duration_s"]))
        metrics.bytes_processed.inc(int(info.get("size", 0)))
        if info.get("cached"):
            metrics.content_cache_hits.inc()
        if info.get("vips") in VIPS_RESULTS:
            metrics.vips_decodes.labels(result=info["vips"]).inc()

    def batch_finished(
        self, inbox: str, status: str, summary: dict[str, Any], *, callback_url: str, run: int
    ) -> None:
        """Count one finished batch and queue its webhooks (persisted before this returns)."""
        if self._webhooks is not None:
            batch_key = str(summary["batch_id"]) + (f"/run-{run}" if run else "")
            self._webhooks.enqueue(
                batch_id=batch_key,
                event=event_for_status(status),
                payload=summary,
                callback_url=callback_url,
            )
        metrics = self._metrics
        if metrics is None:
            return
        metrics.batches.labels(inbox=inbox, status=status).inc()
        duration = summary.get("duration_seconds")
        if isinstance(duration, int | float):
            metrics.batch_duration.observe(float(duration))
        for tier, groups in (summary.get("duplicates") or {}).items():
            metrics.duplicates.labels(tier=tier).inc(len(groups))


@dataclass
class SignalQueue:
    """Signal handlers only append here; the main loop does the work (STYLE §3.4.8)."""

    received: deque[int] = field(default_factory=deque)
    wake: threading.Event = field(default_factory=threading.Event)

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        """The installed signal handler."""
        self.received.append(signum)
        self.wake.set()

    def install(self) -> None:
        """Register for SIGTERM, SIGINT, SIGHUP and SIGUSR1 (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, self.handler)
        faulthandler.register(signal.SIGUSR2, all_threads=True)


class Daemon:
    """The running daemon: every long-lived part and the order they start and stop in."""

    def __init__(self, config: Config, *, watch: bool = True, serve_metrics: bool = True) -> None:
        self.config = config
        self._watch_enabled = watch
        self._serve_metrics = serve_metrics
        self.store: StateStore | None = None
        self.history: HistoryIndex | None = None
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
        self.history = HistoryIndex(self.store.history_dir, analysis_version=ANALYSIS_VERSION)
        self.metrics = Metrics.create(__version__, [inbox.name for inbox in config.inboxes])
        self.metrics.workers.set(config.processing.effective_workers)
        self.metrics.executor_available.set(1)  # a Dask executor says otherwise while away
        self.metrics.up.set(1)
        if self._serve_metrics and config.metrics.listen:
            self.api = ApiService(config.api, self.store, config.inboxes)
            self.api.start()
            self.metrics_server = MetricsServer(
                config.metrics.listen,
                self.metrics.registry,
                health=self.health_reasons,
                ready=self.is_ready,
                api=self.api.endpoint,
            )
            self.metrics_server.start()
        self.executor = build_executor(
            config,
            shared_paths=[("the downloads folder", self.store.state_dir / "downloads")],
            on_state=self.metrics.set_executor_state,
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
            self.watcher = InboxWatcher(self.supervisor, on_mode=self.metrics.set_watcher_mode)
            self.watcher.start(config.inboxes)
        self.supervisor.tell(Tick())
        self.ready.set()
        self.notifier.ready(f"watching {len(config.inboxes)} inbox(es)")
        logger.info("medianalysed %s ready", __version__)

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

    def reconfigure(self, new_config: Config) -> None:
        """Apply a reloaded configuration: logging, secrets, inboxes (main thread).

        Other sections are fixed at start: a change there is named in the log, and the
        effective configuration (`self.config`) keeps the running value until a restart.
        """
        old = self.config
        old_inboxes = {inbox.name: inbox for inbox in old.inboxes}
        new_inboxes = {inbox.name: inbox for inbox in new_config.inboxes}
        setup_logging(new_config.daemon.log_level, new_config.daemon.log_format)
        clear_secrets()
        # The running dispatcher still signs with the old secret: mask both.
        for secret in (old.webhook.secret, new_config.webhook.secret):
            register_secret(secret)
        for token in (*old.api.tokens, *new_config.api.tokens):  # the API checks the old ones
            register_secret(token)
        if self.watcher is not None:
            _rewatch(self.watcher, old_inboxes, new_inboxes)
        if self.metrics is not None:
            for name in new_inboxes.keys() - old_inboxes.keys():
                self.metrics.add_inbox(name)
        if self.supervisor is not None:
            self.supervisor.tell(InboxesChanged(new_config.inboxes))
        if self.executor is not None:
            self.executor.check_inboxes(new_config.inboxes)
        changed = [
            name
            for name in new_inboxes.keys() & old_inboxes.keys()
            if new_inboxes[name] != old_inboxes[name]
        ]
        logger.info(
            "configuration reloaded: %d inbox(es) added, %d removed, %d changed",
            len(new_inboxes.keys() - old_inboxes.keys()),
            len(old_inboxes.keys() - new_inboxes.keys()),
            len(changed),
        )
        needs_restart = _restart_only_changes(old, new_config)
        if needs_restart:
            logger.warning(
                "SIGHUP: %s changed; that takes effect only after a restart",
                ", ".join(needs_restart),
            )
        self.config = replace(
            old,
            daemon=replace(
                old.daemon,
                log_level=new_config.daemon.log_level,
                log_format=new_config.daemon.log_format,
            ),
            inboxes=new_config.inboxes,
            source=new_config.source,
        )

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


def run(config: Config, config_path: Path | None) -> ExitCode:
    """Run the daemon in the foreground until SIGTERM/SIGINT (main thread only)."""
    signals = SignalQueue()
    signals.install()
    daemon = Daemon(config)
    try:
        daemon.start()
    except MedianalysedError as exc:
        logger.critical("cannot start: %s", exc)
        daemon.stop(grace_s=0)
        return _start_failure_exit(exc)
    exit_code = ExitCode.OK
    try:
        exit_code = _main_loop(daemon, signals, config_path)
    except KeyboardInterrupt:
        logger.info("interrupted")
    finally:
        logger.info("stopping")
        daemon.stop()
        logger.info("stopped")
    return exit_code


def _start_failure_exit(exc: MedianalysedError) -> ExitCode:
    """The exit code of a failed start: systemd must not restart an unusable state dir."""
    if isinstance(exc, StateUnusableError):
        return ExitCode.STATE_UNUSABLE
    if isinstance(exc, StateCorruptError | DiskWriteError):
        # Marked for repair (or the disk refused for now): the next start tries again.
        return ExitCode.STATE_REPAIR
    return ExitCode.FAILURE


def _fatal_condition(daemon: Daemon) -> ExitCode | None:
    """The exit code when the daemon must stop now (logged), or None."""
    broken = None if daemon.executor is None else daemon.executor.broken()
    if broken is not None:
        logger.critical("the %s; exiting so it can be restarted", broken)
        return ExitCode.FAILURE
    damaged = corruption_seen()
    if damaged is not None:
        logger.critical("%s; exiting so the next start repairs it", damaged)
        return ExitCode.STATE_REPAIR
    return None


def _main_loop(daemon: Daemon, signals: SignalQueue, config_path: Path | None) -> ExitCode:
    watchdog_every = watchdog_interval()
    last_watchdog = 0.0
    last_status = 0.0
    was_healthy = True
    while True:
        signals.wake.wait(TICK_INTERVAL_S)
        signals.wake.clear()
        while signals.received:
            signum = signals.received.popleft()
            if signum in {signal.SIGTERM, signal.SIGINT}:
                logger.info("received %s: draining", signal.Signals(signum).name)
                return ExitCode.OK
            if signum == signal.SIGHUP:
                _reload(daemon, config_path)
            elif signum == signal.SIGUSR1:
                logger.warning("SIGUSR1: stacks of every thread:\n%s", thread_stacks())
        fatal = _fatal_condition(daemon)
        if fatal is not None:
            return fatal
        daemon.tick()
        now = time.monotonic()
        if watchdog_every is not None and now - last_watchdog >= watchdog_every:
            reasons = daemon.watchdog_reasons()
            healthy = not reasons
            if healthy:
                daemon.notifier.watchdog()
                last_watchdog = now
            if healthy != was_healthy:
                # Once per change: an unhealthy daemon would otherwise log this every tick.
                if healthy:
                    logger.info("healthy again: pinging the systemd watchdog")
                else:
                    logger.error(
                        "unhealthy (%s): not pinging the systemd watchdog", "; ".join(reasons)
                    )
                was_healthy = healthy
        if now - last_status >= STATUS_INTERVAL_S:
            last_status = now
            daemon.notifier.status(status_line(daemon))


def thread_stacks() -> str:
    """Every thread's stack as faulthandler prints it, each thread header with its name.

    Written through logging (not straight to stderr) so a JSON log stays one object a line.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as dump:
        faulthandler.dump_traceback(file=dump, all_threads=True)
        dump.seek(0)
        text = dump.read()
    names = {thread.ident: thread.name for thread in threading.enumerate()}

    def with_name(match: re.Match[str]) -> str:
        name = names.get(int(match[1], 16))
        return f"{match[0]} [{name}]" if name else match[0]

    return _THREAD_HEADER.sub(with_name, text).rstrip("\n")


_THREAD_HEADER = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-f]+)", re.MULTILINE)


def status_line(daemon: Daemon) -> str:
    """A one-line summary for systemd's STATUS=, with the progress of running batches."""
    snapshot = daemon.snapshot(timeout=1.0)
    if snapshot is None:
        return "not answering" if daemon.ready.is_set() else "starting"
    active: list[str] = snapshot["active"]
    shown = [_batch_progress(daemon, batch_id) for batch_id in active[:STATUS_BATCHES_SHOWN]]
    if len(active) > STATUS_BATCHES_SHOWN:
        shown.append(f"{len(active) - STATUS_BATCHES_SHOWN} more")
    parts = [f"processing {', '.join(shown)}" if shown else "idle"]
    if snapshot["queued"]:
        parts.append(f"{len(snapshot['queued'])} queued")
    if snapshot["candidates"]:
        parts.append(f"{len(snapshot['candidates'])} folder(s) waiting to start")
    parts.append(f"{snapshot['workers_busy']}/{snapshot['workers']} workers busy")
    if snapshot["paused"]:
        parts.append("paused")
    if daemon.executor is not None:
        parts.extend(daemon.executor.notes())
    return "; ".join(parts)


def _batch_progress(daemon: Daemon, batch_id: str) -> str:
    """`ID 5/30 (2 failed)` from the batch's stored progress, or the bare id."""
    progress = None if daemon.store is None else stored_progress(daemon.store, batch_id)
    return batch_id if progress is None else f"{batch_id} {progress.line()}"


# Sections (or keys) a reload does not apply: the parts that use them are built at start.
_RESTART_ONLY = ("processing", "analysis", "metrics", "webhook", "downloads", "executor")


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    changed = ["daemon.state_dir"] if old.daemon.state_dir != new.daemon.state_dir else []
    changed += [name for name in _RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    return changed


def _rewatch(
    watcher: InboxWatcher, old: dict[str, InboxConfig], new: dict[str, InboxConfig]
) -> None:
    """Stop watching removed inboxes, (re)start watching new and changed ones."""
    for name, inbox in old.items():
        if new.get(name) != inbox:
            watcher.unwatch(name)
    for name, inbox in new.items():
        if old.get(name) == inbox:
            continue
        try:
            watcher.watch(inbox)
        except StartupError as exc:
            logger.error("reload: cannot watch inbox %s: %s", name, exc)


def _reload(daemon: Daemon, config_path: Path | None) -> None:
    if config_path is None:
        logger.warning("SIGHUP: running on built-in defaults, nothing to reload")
        return
    daemon.notifier.reloading()
    try:
        new_config = load_config(config_path)
    except ConfigError as exc:
        logger.error("SIGHUP: new configuration refused, keeping the old one: %s", exc)
        daemon.notifier.ready("reload refused")
        return
    try:
        daemon.reconfigure(new_config)
    except Exception:
        # A failed reload must not take the running daemon down with it.
        logger.exception("SIGHUP: applying the new configuration failed; partly applied")
        daemon.notifier.ready("reload failed")
        return
    daemon.notifier.ready("reloaded")
