"""The foreground daemon: start it, run the main loop until a stop signal, stop it.

The main thread only loops on `Event.wait`: it ticks the supervisor, drains the signal queue
and the CLI's control queue, pings the systemd watchdog while healthy and refreshes the status
line. A reason to stop (a broken process pool, a damaged database) ends the loop with its exit
code.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from medianalysed.app import Daemon
from medianalysed.config import Config
from medianalysed.diskfaults import corruption_seen
from medianalysed.errors import (
    DiskWriteError,
    ExitCode,
    MedianalysedError,
    StateCorruptError,
    StateUnusableError,
)
from medianalysed.reload import reload
from medianalysed.signalqueue import SignalQueue, thread_stacks
from medianalysed.statusline import status_line
from medianalysed.systemd import watchdog_interval

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 1.0


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
    watchdog = _Watchdog(daemon)
    last_status = 0.0
    while True:
        signals.wake.wait(TICK_INTERVAL_S)
        signals.wake.clear()
        stop = _handle_signals(daemon, signals, config_path)
        if stop is None:
            stop = _fatal_condition(daemon)
        if stop is not None:
            return stop
        daemon.tick()
        now = time.monotonic()
        watchdog.tend(now)
        if now - last_status >= STATUS_INTERVAL_S:
            last_status = now
            daemon.notifier.status(status_line(daemon))


def _handle_signals(
    daemon: Daemon, signals: SignalQueue, config_path: Path | None
) -> ExitCode | None:
    """Act on the signals received since the last tick; the exit code on a stop signal."""
    while signals.received:
        signum = signals.received.popleft()
        if signum in {signal.SIGTERM, signal.SIGINT}:
            logger.info("received %s: draining", signal.Signals(signum).name)
            return ExitCode.OK
        if signum == signal.SIGHUP:
            reload(daemon, config_path)
        elif signum == signal.SIGUSR1:
            logger.warning("SIGUSR1: stacks of every thread:\n%s", thread_stacks())
    return None


class _Watchdog:
    """Pings the systemd watchdog while the daemon is healthy; logs each change of health once."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._every = watchdog_interval()
        self._last_ping = 0.0
        self._was_healthy = True

    def tend(self, now: float) -> None:
        """Ping if one is due and the daemon is healthy."""
        if self._every is None or now - self._last_ping < self._every:
            return
        reasons = self._daemon.watchdog_reasons()
        healthy = not reasons
        if healthy:
            self._daemon.notifier.watchdog()
            self._last_ping = now
        if healthy == self._was_healthy:
            return  # once per change: an unhealthy daemon would otherwise log this every tick
        if healthy:
            logger.info("healthy again: pinging the systemd watchdog")
        else:
            logger.error("unhealthy (%s): not pinging the systemd watchdog", "; ".join(reasons))
        self._was_healthy = healthy
