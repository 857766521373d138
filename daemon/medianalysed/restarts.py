"""When a crashed batch actor runs again, and how (SPEC §1: every started batch ends).

A crashed batch is restarted after a backoff, up to `MAX_BATCH_RESTARTS` times; the next start
only salvages it (its unfinished images become INTERNAL records and the outbox is written); a
salvage that crashes too sets the batch aside as failed. The supervisor owns one `BatchRestarts`
and starts what `take_due` hands back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

MAX_BATCH_RESTARTS = 3
# Seconds before restart 1, 2, 3 of a crashed batch actor.
BATCH_RESTART_BACKOFF_S = (1.0, 5.0, 25.0)


class RestartMode(StrEnum):
    RESTART = "restart"  # resume from the persisted state
    SALVAGE = "salvage"  # finalise with what is left as INTERNAL


@dataclass(frozen=True, slots=True)
class DueRestart:
    """A crashed batch whose backoff has passed."""

    batch_id: str
    restarts: int  # this start is restart number `restarts`
    reason: str  # why the last run crashed

    @property
    def mode(self) -> RestartMode:
        return RestartMode.SALVAGE if self.restarts > MAX_BATCH_RESTARTS else RestartMode.RESTART


@dataclass(frozen=True, slots=True)
class _Waiting:
    when: float
    restarts: int
    reason: str


class BatchRestarts:
    """The crashed batches waiting for their restart."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._waiting: dict[str, _Waiting] = {}

    def crashed(self, batch_id: str, *, restarts: int, salvaging: bool, reason: str) -> bool:
        """Plan the next start of a batch whose actor crashed after `restarts` restarts.

        Returns False when there is none: the crash was its salvage run (set it aside).
        """
        if salvaging:
            return False
        self.schedule(batch_id, restarts + 1, reason)
        return True

    def schedule(self, batch_id: str, restarts: int, reason: str) -> None:
        """Start `batch_id` again (as restart number `restarts`) after its backoff."""
        delays = BATCH_RESTART_BACKOFF_S
        delay = delays[min(restarts, len(delays)) - 1]
        self._waiting[batch_id] = _Waiting(self._clock() + delay, restarts, reason)

    def take_due(self, room: int) -> list[DueRestart]:
        """The batches whose backoff has passed, at most `room` of them; they leave the plan."""
        now = self._clock()
        due: list[DueRestart] = []
        for batch_id, waiting in list(self._waiting.items()):
            if len(due) >= room:
                break
            if now >= waiting.when:
                del self._waiting[batch_id]
                due.append(DueRestart(batch_id, waiting.restarts, waiting.reason))
        return due

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[str]:
        return iter(self._waiting)
