"""Statuses and small value types shared by every layer."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

ANALYSIS_VERSION = 1
STATE_SCHEMA_VERSION = 1


class ImageStatus(enum.StrEnum):
    """Lifecycle of one image (SPEC §2)."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """Whether no more work will happen on an image in this status."""
        return self in {ImageStatus.DONE, ImageStatus.FAILED, ImageStatus.SKIPPED}


class BatchStatus(enum.StrEnum):
    """Lifecycle of one batch (SPEC §2)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the batch is finished."""
        return self in {
            BatchStatus.COMPLETED,
            BatchStatus.PARTIAL,
            BatchStatus.FAILED,
            BatchStatus.CANCELLED,
        }


class Priority(enum.StrEnum):
    """Per-batch priority from `batch.toml`."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Smaller runs first."""
        return {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}[self]


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with a `Z` suffix and millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def final_batch_status(done: int, failed: int) -> BatchStatus:
    """The terminal status of a batch from its counts (skipped images count as fine)."""
    if failed == 0:
        return BatchStatus.COMPLETED
    if done == 0:
        return BatchStatus.FAILED
    return BatchStatus.PARTIAL
