"""The one-line summary systemd shows as the daemon's STATUS=."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medianalysed.progress import stored_progress

if TYPE_CHECKING:
    from medianalysed.app import Daemon

STATUS_BATCHES_SHOWN = 3


def status_line(daemon: Daemon) -> str:
    """A one-line summary for systemd's STATUS=, with the progress of running batches."""
    snapshot = daemon.snapshot(timeout=1.0)
    if snapshot is None:
        return "not answering" if daemon.ready.is_set() else "starting"
    active: list[str] = snapshot["active"]
    shown = [_batch_progress(daemon, batch_id) for batch_id in active[:STATUS_BATCHES_SHOWN]]
    if len(active) > STATUS_BATCHES_SHOWN:
        shown.append(f"{len(active) - STATUS_BATCHES_SHOWN} more")
    parts = [f"processing {', '.join(shown)}" if shown else "idle"]
    if snapshot["queued"]:
        parts.append(f"{len(snapshot['queued'])} queued")
    if snapshot["candidates"]:
        parts.append(f"{len(snapshot['candidates'])} folder(s) waiting to start")
    parts.append(f"{snapshot['workers_busy']}/{snapshot['workers']} workers busy")
    if snapshot["paused"]:
        parts.append("paused")
    if daemon.executor is not None:
        parts.extend(daemon.executor.notes())
    return "; ".join(parts)


def _batch_progress(daemon: Daemon, batch_id: str) -> str:
    """`ID 5/30 (2 failed)` from the batch's stored progress, or the bare id."""
    progress = None if daemon.store is None else stored_progress(daemon.store, batch_id)
    return batch_id if progress is None else f"{batch_id} {progress.line()}"
