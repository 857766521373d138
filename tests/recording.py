"""A recording double: an actor that puts every message it receives on a queue."""

from __future__ import annotations

import queue
import time
from typing import Any

import pykka

from medianalysed.messages import OfferJobs


class RecordingActor(pykka.ThreadingActor):
    """Records messages; tests read them with a deadline."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self._inbox = inbox

    def on_receive(self, message: Any) -> None:
        self._inbox.put(message)


def expect(
    messages: queue.Queue[Any], kind: type, *, timeout: float = 10.0, where: Any = None
) -> Any:
    """The next message of `kind` (matching `where`), skipping others, within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind.__name__} within {timeout} s")
        try:
            message = messages.get(timeout=remaining)
        except queue.Empty:
            continue
        if isinstance(message, kind) and (where is None or where(message)):
            return message


class OfferRecorder(RecordingActor):
    """A supervisor double: records every message, and puts each job a batch offers on `jobs`."""

    def __init__(self, inbox: queue.Queue[Any], jobs: queue.Queue[Any]) -> None:
        super().__init__(inbox)
        self._jobs = jobs

    def on_receive(self, message: Any) -> None:
        if isinstance(message, OfferJobs):
            for job in message.jobs:
                self._jobs.put(job)
        super().on_receive(message)
