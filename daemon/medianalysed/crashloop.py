"""Crash loops are broken: a batch that killed the daemon twice at the same step is set aside.

Each run of the daemon is an *incarnation* (a durable counter, see StateStore); an orderly
stop records that it ended cleanly. Before a batch's risky in-daemon step (listing its
folder, finalising its outbox, disposing of its input, resetting it for a rerun) the batch
actor records a *step marker*: `{"step", "incarnation", "armed": true, "deaths"}`; it
removes the marker when the step is done. The image analysis itself runs in worker
processes, whose deaths cost one image one attempt and never the daemon, so it needs none.

At the next start (`review_markers`), a marker still armed by an incarnation that did not
end cleanly means the daemon died while that batch was in that step: one death. Markers
are disarmed and carried into the new incarnation, so one death is never counted twice.

- `deaths >= MAX_DEATHS` (2): the batch is set aside (setaside.py), its step not run again.
- `deaths >= 1`: the batch is a *suspect*. Several batches may have been in a risky step
  when the daemon died; the supervisor runs suspects one at a time, alone, until each is
  through the step, so the next death is pinned on the right one and innocent batches
  are cleared (their marker goes away when their step completes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from medianalysed.ports import StateStorage

logger = logging.getLogger(__name__)

MAX_DEATHS: Final = 2


@dataclass(frozen=True, slots=True)
class CrashLoopReview:
    """What the start-up review found."""

    set_aside: dict[str, str] = field(default_factory=dict)  # batch id -> reason
    suspects: frozenset[str] = frozenset()


def enter_step(store: StateStorage, batch_id: str, step: str) -> None:
    """Record that `batch_id` starts its risky `step` now (before doing anything)."""
    previous = store.step_marker(batch_id)
    deaths = int(previous.get("deaths", 0)) if previous and previous.get("step") == step else 0
    store.put_step_marker(
        batch_id,
        {"step": step, "incarnation": store.incarnation, "armed": True, "deaths": deaths},
    )


def leave_step(store: StateStorage, batch_id: str) -> None:
    """The batch came through its risky step."""
    store.clear_step_marker(batch_id)


def in_step(store: StateStorage, batch_id: str) -> bool:
    """Whether the batch has a step marker (it has not come through that step yet)."""
    return store.step_marker(batch_id) is not None


def review_markers(store: StateStorage) -> CrashLoopReview:
    """Count deaths from the markers left by earlier incarnations; call once at start."""
    clean = store.last_clean_exit()
    set_aside: dict[str, str] = {}
    suspects: set[str] = set()
    for batch_id, marker in store.step_markers().items():
        incarnation = int(marker.get("incarnation", 0))
        deaths = int(marker.get("deaths", 0))
        died_here = bool(marker.get("armed")) and incarnation not in {clean, store.incarnation}
        if died_here:
            deaths += 1
            logger.warning(
                "batch %s: the daemon (run %d) died while it was %s (death %d of %d)",
                batch_id,
                incarnation,
                marker.get("step"),
                deaths,
                MAX_DEATHS,
                extra={"batch_id": batch_id},
            )
        step = str(marker.get("step"))
        if deaths >= MAX_DEATHS:
            set_aside[batch_id] = (
                f"the daemon died {deaths} times while {step} this batch (a crash loop); "
                "it is not tried again by itself"
            )
            store.clear_step_marker(batch_id)
            continue
        store.put_step_marker(
            batch_id,
            {"step": step, "incarnation": store.incarnation, "armed": False, "deaths": deaths},
        )
        if deaths:
            suspects.add(batch_id)
    return CrashLoopReview(set_aside=set_aside, suspects=frozenset(suspects))
