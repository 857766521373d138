"""A batch parked on a write the disk refused: the failure, the messages kept, the retry.

While parked no new work is asked for; the messages that must not be lost wait here, and the
retry (with backoff, `write_retry_delay`) replays them first, then resumes the step that failed
from what is persisted. Nothing is counted twice: an outcome already recorded is not recorded
again (the batch actor checks the stored attempt count).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from medianalysed.batchwork.retries import write_retry_delay
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError

Message = TypeVar("Message")


class Parking(Generic[Message]):
    """The parked state of one batch; `who` names it on the fault board (`/healthz`)."""

    def __init__(
        self, who: str, faults: FaultBoard, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._who = who
        self._faults = faults
        self._now = now
        self.failure: DiskWriteError | None = None
        self._kept: deque[Message] = deque()
        self._retry_at = 0.0
        self._failed_attempts = 0

    @property
    def parked(self) -> bool:
        """Whether a write failed and its retry has not succeeded yet."""
        return self.failure is not None

    def park(self, failure: DiskWriteError) -> None:
        """Note the failure and when to try again (each failure in a row waits longer)."""
        delay = write_retry_delay(self._failed_attempts)
        self._failed_attempts += 1
        self.failure = failure
        self._retry_at = self._now() + delay
        self._faults.failed(self._who, failure, retry_in=delay)

    def keep(self, message: Message) -> None:
        """Keep a message that arrived while parked, for the retry."""
        self._kept.append(message)

    def keep_first(self, message: Message) -> None:
        """Keep the message whose handling failed: the retry replays it before the others."""
        self._kept.appendleft(message)

    def due(self) -> bool:
        """Whether the backoff has passed."""
        return self._now() >= self._retry_at

    def retry(self, dispatch: Callable[[Message], None], resume: Callable[[], None]) -> None:
        """Replay the kept messages through `dispatch`, then `resume` the step that failed.

        Raises:
            DiskWriteError: the disk refused again; the message that failed is kept first,
                and the caller parks again.
        """
        self.failure = None
        while self._kept:
            message = self._kept.popleft()
            try:
                dispatch(message)
            except DiskWriteError:
                self._kept.appendleft(message)
                raise
        resume()
        self._failed_attempts = 0
        self._faults.recovered(self._who)
