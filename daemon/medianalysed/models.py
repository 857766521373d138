"""Statuses and small value types shared by every layer."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from medianalysed.config import Config

ANALYSIS_VERSION = 1
# How hashes and colours are computed from the reduced decode (see analysis.py); part of the
# content-cache key, so changing the method never serves results of the old one.
PIPELINE_ID: Final = (
    "draft128-work512-hash128-lanczos32f-area8-sample64-color32-framescounted-heifthumb320span/4"
)
STATE_SCHEMA_VERSION = 1


class ImageStatus(enum.StrEnum):
    """Lifecycle of one image (SPEC §2)."""

    PENDING = "pending"  # also while at a worker: in flight is counted, never stored
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


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisSettings:
    """Everything that changes an image's analysis result; picklable for worker processes.

    It lives here, not in `analysis`, so the daemon process can build it without importing
    Pillow, numpy's FFT, imagehash and pillow-heif: only the worker processes need those.
    `vips` is the exception: it picks a decoder, not a result (vipsdecode.py uses libvips
    only where its pixels are Pillow's), so it is not part of the fingerprint.
    """

    dominant_colors: int = 5
    gps: bool = True
    max_file_size: int = 200_000_000
    max_pixels: int = 178_956_970
    min_width: int = 0
    min_height: int = 0
    vips: bool = True

    @classmethod
    def from_config(cls, config: Config) -> AnalysisSettings:
        """The analysis-relevant part of a loaded configuration."""
        return cls(
            dominant_colors=config.analysis.dominant_colors,
            gps=config.analysis.gps,
            max_file_size=config.processing.max_file_size,
            max_pixels=config.processing.max_pixels,
            min_width=config.processing.min_width,
            min_height=config.processing.min_height,
            vips=config.processing.vips,
        )

    def fingerprint(self) -> str:
        """A stable short hex of ANALYSIS_VERSION, the pipeline and every field but `vips`."""
        fields = asdict(self)
        del fields["vips"]
        payload = {"analysis_version": ANALYSIS_VERSION, "pipeline": PIPELINE_ID, **fields}
        return stable_digest(payload)


def stable_digest(payload: object) -> str:
    """16 hex digits of SHA-256 over `payload` as canonical JSON: equal content, equal digest.

    The one recipe of both fingerprints: the content cache's (`AnalysisSettings.fingerprint`)
    and summary.json's (`config.config_fingerprint`). Changing it changes every stored one.
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
