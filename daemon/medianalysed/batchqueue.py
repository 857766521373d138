"""The batches waiting to start: in which order, and which run alone.

High priority first, then oldest (each rank read from state once per queued batch, so sorting
never reads the store). A batch the daemon died on once (a crash-loop suspect, crashloop.py)
runs alone, before anything new starts, until it is through the risky step it was in.

Pure bookkeeping over the state store: `start_due` calls back the supervisor to start each.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Container, Iterable

from medianalysed.crashloop import in_step
from medianalysed.ports import StateStorage


class StartQueue:
    """The queued batch ids, their ranks, and the crash-loop suspects."""

    def __init__(self, store: StateStorage) -> None:
        self._store = store
        self._queued: deque[str] = deque()
        # (priority rank, created_at) of queued batches.
        self._ranks: dict[str, tuple[int, str]] = {}
        self._suspects: set[str] = set()

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._queued

    def __len__(self) -> int:
        return len(self._queued)

    def ids(self) -> list[str]:
        """The queued ids, in the order they were queued."""
        return list(self._queued)

    @property
    def suspects(self) -> list[str]:
        """The crash-loop suspects, sorted."""
        return sorted(self._suspects)

    def suspect(self, batch_ids: Iterable[str]) -> None:
        """The batches the last run died on once: each runs alone until through its step."""
        self._suspects = set(batch_ids)

    def add(self, batch_id: str) -> None:
        """Queue `batch_id` last (they start by rank, not by arrival)."""
        self._queued.append(batch_id)

    def remove(self, batch_id: str) -> None:
        """Take a queued batch out (cancelled); its rank goes at the next `start_due`."""
        self._queued.remove(batch_id)

    def start_due(
        self,
        start: Callable[[str], bool],
        active: Collection[str],
        restarting: Container[str],
        *,
        limit: int,
    ) -> None:
        """Take the batches due now out of the queue, best first, and `start` each.

        `start` returns False for a batch that turned out to have nothing to run (gone, or
        done): the next is tried as if it had not been due. `active` are the running batches
        (grown by `start`), `restarting` the crashed ones waiting for a restart; no more than
        `limit` run at once.
        """
        if not self._queued or len(active) >= limit:
            return
        if self._suspects and self._isolating(active, restarting):
            return
        ordered = sorted(self._queued, key=self._rank)
        suspects_waiting = any(batch_id in self._suspects for batch_id in ordered)
        for batch_id in ordered:
            if len(active) >= limit:
                break
            if suspects_waiting and (batch_id not in self._suspects or active):
                continue  # a suspect runs alone, before anything new starts
            self._queued.remove(batch_id)
            self._ranks.pop(batch_id, None)
            if not start(batch_id):
                continue
            if batch_id in self._suspects:
                break  # it runs alone
        for stale in self._ranks.keys() - set(self._queued):
            del self._ranks[stale]  # removed from the queue elsewhere (cancel)

    def _isolating(self, active: Collection[str], restarting: Container[str]) -> bool:
        """Whether a suspect runs and is not through its risky step yet."""
        for batch_id in list(self._suspects):
            if batch_id in active:
                if in_step(self._store, batch_id):
                    return True
                self._suspects.discard(batch_id)  # through the step it was suspected of
            elif batch_id not in self._queued and batch_id not in restarting:
                self._suspects.discard(batch_id)  # ended, set aside, or gone
        return False

    def _rank(self, batch_id: str) -> tuple[int, str]:
        """High priority first, then oldest; read from state once per queued batch."""
        rank = self._ranks.get(batch_id)
        if rank is None:
            record = self._store.get_batch(batch_id)
            rank = (9, batch_id) if record is None else (record.priority.rank, record.created_at)
            self._ranks[batch_id] = rank
        return rank
