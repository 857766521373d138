"""Snapshot walks of settling inbox entries, off the supervisor's thread.

A dropped folder is walked (`readiness.snapshot_tree`) until it stops changing. A walk of a
million files takes tens of seconds; run on the supervisor actor it would stop the actor
from answering (and the watchdog from being pinged). `SnapshotWalker` runs walks on a few
daemon threads of its own and hands each result back as a `TreeWalked` message, which the
supervisor handles like any other. The caller keeps at most one walk per entry in flight
(the `token` says which request a result answers) and spaces walks by their duration
(`next_walk_delay`), so a big tree costs at most about half of one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from medianalysed.readiness import TreeSnapshot, snapshot_tree

logger = logging.getLogger(__name__)

WALK_THREADS: Final = 2


@dataclass(frozen=True, slots=True)
class TreeWalked:
    """The result of one walk: a snapshot, or the entry vanished, or why it could not be read."""

    key: str
    token: int
    seconds: float
    snapshot: TreeSnapshot | None = None
    missing: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Walk:
    key: str
    token: int
    root: Path
    ready_marker: str


def next_walk_delay(walk_seconds: float, interval_s: float) -> float:
    """How long to wait after a walk before the next: the interval, or as long as it took."""
    return max(interval_s, walk_seconds)


class SnapshotWalker:
    """A fixed set of daemon threads running snapshot walks; results go to `deliver`.

    `deliver` is called on a walker thread (an actor's `tell` is fine). Daemon threads:
    a walk in progress never holds up the process's exit.
    """

    def __init__(
        self,
        deliver: Callable[[TreeWalked], object],
        *,
        threads: int = WALK_THREADS,
        snapshot: Callable[[Path, str], TreeSnapshot] = snapshot_tree,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._deliver = deliver
        self._snapshot = snapshot
        self._clock = clock
        self._walks: queue.SimpleQueue[_Walk | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"settle-walk-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, token: int, root: Path, ready_marker: str) -> None:
        """Queue a walk of `root`; its `TreeWalked(key, token, ...)` is delivered when done."""
        self._walks.put(_Walk(key, token, root, ready_marker))

    def stop(self) -> None:
        """Let every thread exit after its current walk (does not wait for it)."""
        for _ in self._threads:
            self._walks.put(None)

    def _run(self) -> None:
        while (walk := self._walks.get()) is not None:
            self._deliver(self._walk(walk))

    def _walk(self, walk: _Walk) -> TreeWalked:
        started = self._clock()

        def result(**outcome: object) -> TreeWalked:
            seconds = self._clock() - started
            return TreeWalked(walk.key, walk.token, seconds, **outcome)  # type: ignore[arg-type]

        try:
            return result(snapshot=self._snapshot(walk.root, walk.ready_marker))
        except FileNotFoundError:
            return result(missing=True)
        except OSError as exc:
            return result(error=exc.strerror or str(exc))
        except Exception as exc:
            # A folder must never take the walker thread down with it.
            logger.exception("walking %s failed", walk.root)
            return result(error=f"{type(exc).__name__}: {exc}")
