"""A batch's life: its phases and the moves between them, checked in one place.

The phases, in order, with what is persisted before the side effect each enables::

    enumerating -> running -> finalizing -> written -> disposing -> done
                                                                     |
         running / enumerating  <-  resetting  <---------------------+  (retry, reprocess)

- `enumerating`: the input is being listed; the path list is stored in chunks.
- `running`: images go to workers and their outcomes are stored one by one.
- `finalizing`: the terminal status and counts are fixed; the outbox is being written.
- `written`: the outbox is durable and the webhooks are queued.
- `disposing`: the archive target is stored; the input is being moved or deleted.
- `done`: terminal; the input archived, deleted or kept.
- `resetting`: a retry or reprocess is recorded; its images are being reset.

Besides the life above, two ends are legal from wherever a batch is: a cancel or a salvage
finalises an `enumerating` batch at once, and setting a batch aside (`setaside.py`) ends it
`done` from any phase. Staying in a phase while other fields change (`status` retrying,
cancelled) is a move only for the phases that have such changes.

`StateStore.advance` is the one writer of a stored batch's phase and status; it refuses any
move not in `TRANSITIONS` with `IllegalTransitionError`, naming the batch and both phases.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from medianalysed.errors import StateError


class BatchPhase(enum.StrEnum):
    """Where a batch is in its life (stored, so a restart resumes there)."""

    ENUMERATING = "enumerating"
    RUNNING = "running"
    FINALIZING = "finalizing"
    WRITTEN = "written"
    DISPOSING = "disposing"
    DONE = "done"
    RESETTING = "resetting"


_P = BatchPhase

TRANSITIONS: Final[Mapping[BatchPhase, frozenset[BatchPhase]]] = {
    _P.ENUMERATING: frozenset({_P.ENUMERATING, _P.RUNNING, _P.FINALIZING, _P.DONE}),
    _P.RUNNING: frozenset({_P.RUNNING, _P.FINALIZING, _P.DONE}),
    _P.FINALIZING: frozenset({_P.WRITTEN, _P.DONE}),
    _P.WRITTEN: frozenset({_P.DISPOSING, _P.DONE}),
    _P.DISPOSING: frozenset({_P.DONE}),
    # A finished batch set aside again (a crash loop after it ended) stays done.
    _P.DONE: frozenset({_P.RESETTING, _P.DONE}),
    # A batch set aside before it was ever listed (no chunks) is listed on its rerun.
    _P.RESETTING: frozenset({_P.RESETTING, _P.RUNNING, _P.ENUMERATING, _P.DONE}),
}

# After the image records were lost (state repair), an unfinished batch starts again from its
# input: the one move backwards, and only from these phases (`StateStore.restart_listing`).
RESTARTABLE: Final = frozenset(
    {_P.ENUMERATING, _P.RUNNING, _P.FINALIZING, _P.DISPOSING, _P.RESETTING}
)


class IllegalTransitionError(StateError):
    """A batch was asked to move between two phases its life does not connect."""

    def __init__(self, batch_id: str, current: BatchPhase, to: BatchPhase) -> None:
        self.batch_id = batch_id
        self.current = current
        self.to = to
        legal = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"batch {batch_id}: illegal move from {current} to {to} (from {current}: {legal})"
        )


def is_legal(current: BatchPhase, to: BatchPhase) -> bool:
    """Whether a batch in `current` may move to `to`."""
    return to in TRANSITIONS[current]


def check_move(batch_id: str, current: BatchPhase, to: BatchPhase) -> None:
    """Raise `IllegalTransitionError` unless the move is legal."""
    if not is_legal(current, to):
        raise IllegalTransitionError(batch_id, current, to)
