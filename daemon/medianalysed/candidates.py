"""Inbox entries on their way to becoming batches: seen, walked off the actor thread, settled.

Owned by the supervisor and used from its thread only. The walks run on the walker's threads
(`settling.SnapshotWalker`), whose results come back to the supervisor as `TreeWalked`; what
to do with a settled entry (claim it, start its batch) stays the supervisor's decision.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medianalysed.batchwork import intake
from medianalysed.config import InboxConfig
from medianalysed.errors import MedianalysedError
from medianalysed.readiness import SettleTracker, is_batch_candidate
from medianalysed.settling import SnapshotWalker, TreeWalked, next_walk_delay

logger = logging.getLogger(__name__)

CANDIDATE_CHECK_INTERVAL_S = 1.0


@dataclass(slots=True)
class Candidate:
    """One inbox entry that may become a batch."""

    key: str
    inbox: InboxConfig
    path: Path
    first_seen: float
    next_walk: float = 0.0
    walk_token: int | None = None  # the walk whose result this candidate waits for


class Candidates:
    """The candidates of every inbox, their settle trackers and their walks."""

    def __init__(self, inboxes: Iterable[InboxConfig], clock: Callable[[], float]) -> None:
        self._clock = clock
        self.inboxes = {inbox.name: inbox for inbox in inboxes}
        self._trackers = {
            name: SettleTracker(inbox.settle_seconds, clock) for name, inbox in self.inboxes.items()
        }
        self._candidates: dict[str, Candidate] = {}
        self._walker: SnapshotWalker | None = None
        self._walk_tokens = itertools.count(1)
        # Keys with a walk running, even for a candidate forgotten (and seen again) since.
        self._walking: set[str] = set()
        self._last_rescan: dict[str, float] = {}

    def start(self, walker: SnapshotWalker) -> None:
        """Walks go to `walker` from now on."""
        self._walker = walker

    def stop(self) -> None:
        """Stop the walker's threads."""
        if self._walker is not None:
            self._walker.stop()

    def seen(self, inbox_name: str, path_text: str) -> None:
        """Something appeared or changed directly inside an inbox."""
        inbox = self.inboxes.get(inbox_name)
        if inbox is None:
            return
        path = Path(path_text)
        if path.parent != inbox.path or not is_batch_candidate(path.name, inbox.ignore):
            return
        key = intake.claim_key(inbox.name, path.name)
        if key not in self._candidates:
            self._candidates[key] = Candidate(key, inbox, path, self._clock())

    def reconfigure(self, inboxes: Iterable[InboxConfig]) -> None:
        """After a reload: new candidates use the new settings; a removed inbox's are dropped."""
        self.inboxes = {inbox.name: inbox for inbox in inboxes}
        for inbox in self.inboxes.values():
            tracker = self._trackers.get(inbox.name)
            if tracker is None or inbox.settle_seconds != tracker.settle_seconds:
                self._trackers[inbox.name] = SettleTracker(inbox.settle_seconds, self._clock)
            self._last_rescan.pop(inbox.name, None)
        for key, candidate in list(self._candidates.items()):
            current = self.inboxes.get(candidate.inbox.name)
            if current is None:
                self.forget(key)
            else:
                candidate.inbox = current

    def rescan_due(self, now: float) -> None:
        """List every inbox whose `rescan_seconds` have passed (events can be missed)."""
        for inbox in self.inboxes.values():
            last = self._last_rescan.get(inbox.name)
            if last is None or now - last >= inbox.rescan_seconds:
                self._rescan(inbox)

    def _rescan(self, inbox: InboxConfig) -> None:
        self._last_rescan[inbox.name] = self._clock()
        try:
            entries = os.listdir(inbox.path)
        except OSError as exc:
            logger.warning("cannot list inbox %s: %s", inbox.path, exc.strerror)
            return
        for name in entries:
            self.seen(inbox.name, str(inbox.path / name))

    def walk_due(self, now: float, claimed: Callable[[InboxConfig, Path], bool]) -> None:
        """Start a snapshot walk for every candidate that is due, not walked and not claimed."""
        for key, candidate in list(self._candidates.items()):
            if key in self._walking or now < candidate.next_walk:
                continue
            try:
                if claimed(candidate.inbox, candidate.path):
                    self.forget(key)
                else:
                    self._walk(candidate, now)
            except Exception as exc:
                # The supervisor never dies of one folder (SPEC §1). An unreadable state
                # store, or a bug: report it and try again later.
                log_folder_failure("cannot check %s yet", candidate.path, exc)
                candidate.next_walk = now + CANDIDATE_CHECK_INTERVAL_S

    def _walk(self, candidate: Candidate, now: float) -> None:
        assert self._walker is not None
        candidate.walk_token = next(self._walk_tokens)
        self._walking.add(candidate.key)
        candidate.next_walk = now  # pushed back when the result arrives
        self._walker.submit(
            candidate.key, candidate.walk_token, candidate.path, candidate.inbox.ready_marker
        )

    def walked(self, message: TreeWalked) -> Candidate | None:
        """Take a walk's result; the candidate when it has settled (ready to start), else None."""
        self._walking.discard(message.key)
        candidate = self._candidates.get(message.key)
        if candidate is None or candidate.walk_token != message.token:
            return None  # forgotten (or replaced) while it was walked
        candidate.walk_token = None
        # A walk that took T seconds is not repeated sooner than T: big trees back off.
        candidate.next_walk = self._clock() + next_walk_delay(
            message.seconds, CANDIDATE_CHECK_INTERVAL_S
        )
        if message.missing:
            self.forget(message.key)
            return None
        if message.snapshot is None:
            logger.error("cannot start %s yet: %s", candidate.path, message.error)
            return None
        settled = self._trackers[candidate.inbox.name].observe(message.key, message.snapshot)
        return candidate if settled else None

    def forget(self, key: str) -> None:
        """The entry became a batch, vanished, or its inbox went."""
        self._candidates.pop(key, None)
        for tracker in self._trackers.values():
            tracker.forget(key)

    def view(self) -> dict[str, Any]:
        """For the supervisor's snapshot: the candidates, and what each inbox waits for."""
        return {
            "candidates": {
                key.replace("\x00", "/"): str(c.path) for key, c in self._candidates.items()
            },
            "waiting": {name: tracker.waiting() for name, tracker in self._trackers.items()},
        }


def log_folder_failure(what: str, path: Path, exc: Exception) -> None:
    """Name the folder and the error; a traceback only for what is not an I/O problem."""
    expected = isinstance(exc, OSError | MedianalysedError)
    logger.error(
        "%s (%s: %s)", what % path, type(exc).__name__, exc, exc_info=None if expected else exc
    )
