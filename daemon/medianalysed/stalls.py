"""When each running batch last made progress, so a stuck one is noticed (SPEC §1).

Batch actors `touch` their entry whenever something happens for them: an image outcome, a
phase change, or a tick answered while they have nothing out with the workers (a batch
waiting for a worker or a retry is not stuck: it answers). A batch whose handler never
returns, or whose images the workers hold without an answer, stops touching: after
`[processing] stall_seconds` it is stalled. The supervisor checks on its tick (logging and
counting each new stall); health reads `stalled()` from memory, from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ProgressClock:
    """Last progress time of every active batch; thread-safe, in memory only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._stalled: set[str] = set()

    def touch(self, batch_id: str) -> None:
        """The batch made progress now (clears a stall)."""
        with self._lock:
            self._last[batch_id] = self._clock()
            self._stalled.discard(batch_id)

    def forget(self, batch_id: str) -> None:
        """The batch is no longer running here (finished, crashed, or being restarted)."""
        with self._lock:
            self._last.pop(batch_id, None)
            self._stalled.discard(batch_id)

    def check(self, stall_seconds: float) -> list[tuple[str, float]]:
        """Batches that became stalled since the last check, with seconds since progress."""
        now = self._clock()
        newly: list[tuple[str, float]] = []
        with self._lock:
            for batch_id, last in self._last.items():
                idle = now - last
                if idle > stall_seconds and batch_id not in self._stalled:
                    self._stalled.add(batch_id)
                    newly.append((batch_id, idle))
        return newly

    def stalled(self) -> list[str]:
        """Batches stalled now, sorted (for health and status)."""
        with self._lock:
            return sorted(self._stalled)
