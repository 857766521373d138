"""Analysis processes ready by the time the first image is dispatched.

The worker pool forks its processes from a fork server, which imports the imaging stack
(numpy, Pillow, scipy's DCT: about 0.3 s on an idle core, over a second on a busy machine)
before it can fork the first one; pebble only starts its pool at the first submit. Left at
that, the first image waits for both, after the daemon's own start-up. Started as the CLI
begins instead, the fork server imports on the other core while the daemon imports, opens
its state and enumerates the batch, and the pool forks its workers in the background.
`analyze` also creates its fresh state on a thread while the daemon's modules import.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import threading
from pathlib import Path

import pebble

from medianalysed.errors import MedianalysedError
from medianalysed.state import StateStore, open_durable_caches
from medianalysed.worker import pool_context

logger = logging.getLogger(__name__)


def start_fork_server() -> None:
    """Start the workers' fork server now, without waiting for its imports."""
    pool_context()
    multiprocessing.forkserver.ensure_running()


def create_state_in_background(state_dir: Path) -> threading.Thread:
    """Create the daemon's databases under an empty `state_dir` on a thread of its own.

    Creating a SQLite store is a dozen fdatasyncs: on a thread, the waits overlap with the
    daemon's imports, and the daemon then opens stores that exist. A failure here is left
    for the daemon's own opening to report.
    """
    thread = threading.Thread(
        target=_create_state, args=(state_dir,), name="state-warm-up", daemon=True
    )
    thread.start()
    return thread


def _create_state(state_dir: Path) -> None:
    try:
        store = StateStore(state_dir)
        store.close()
        for cache in open_durable_caches(
            (store.history_dir, "the duplicate index", 1024),
            (store.webhooks_dir, "the webhook queue", 256),
        ):
            cache.close()
    except MedianalysedError as exc:
        logger.debug("creating the state in advance failed: %s", exc)


def start_pool_in_background(pool: pebble.ProcessPool) -> threading.Thread:
    """Have `pool` fork its processes on a thread of its own.

    pebble starts a pool in the thread of its first `schedule`, which then waits until every
    process is forked: without this, that thread is an image actor's.
    """
    thread = threading.Thread(
        target=_schedule_nothing, args=(pool,), name="pool-warm-up", daemon=True
    )
    thread.start()
    return thread


def _schedule_nothing(pool: pebble.ProcessPool) -> None:
    try:
        pool.schedule(nothing)
    except RuntimeError:  # the pool was closed first (the daemon stopped at once)
        logger.debug("worker pool closed before it started")


def nothing() -> None:
    """The warm-up job: it only makes the pool start."""
