"""What one attempt's outcome becomes: done, skipped, failed, or pending for a retry later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import assert_never

from medianalysed.config import ProcessingConfig
from medianalysed.errors import ErrorCode
from medianalysed.messages import ImageAnalysed
from medianalysed.models import ImageStatus
from medianalysed.outcomes import ImageError, ImageResult
from medianalysed.state import ImageRecord

# Seconds between attempts while the disk refuses writes (the last one repeats).
WRITE_RETRY_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def write_retry_delay(failed_attempts: int) -> float:
    """How long a batch parked on a disk fault waits before its next try."""
    return WRITE_RETRY_BACKOFF_S[min(failed_attempts, len(WRITE_RETRY_BACKOFF_S) - 1)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The `[processing]` retry rules, with the clock that dates the next attempt."""

    processing: ProcessingConfig
    clock: Callable[[], float]

    def outcome_record(
        self,
        message: ImageAnalysed,
        source_url: str | None,
        *,
        may_retry: Callable[[ErrorCode], bool],
    ) -> ImageRecord:
        """The image record an attempt leaves; `may_retry` says whether the batch still can."""
        base = ImageRecord(
            path=message.path,
            attempts=message.attempt,
            duration_ms=message.duration_ms,
            source_url=source_url,
            file=message.file,
        )
        outcome = message.outcome
        match outcome:
            case ImageResult():
                return replace(base, status=ImageStatus.DONE, result=outcome.to_json())
            case ImageError():
                return self._failure_record(base, outcome, may_retry)
            case _:
                assert_never(outcome)

    def _failure_record(
        self, base: ImageRecord, error: ImageError, may_retry: Callable[[ErrorCode], bool]
    ) -> ImageRecord:
        stored = error.to_json()
        if error.code.skips:
            return replace(base, status=ImageStatus.SKIPPED, error=stored)
        attempt = base.attempts
        if (
            error.code.retryable
            and attempt <= self.processing.max_retries
            and may_retry(error.code)
        ):
            return replace(
                base,
                status=ImageStatus.PENDING,
                error=stored,
                next_attempt_at=self.clock() + self.backoff(attempt),
            )
        return replace(base, status=ImageStatus.FAILED, error=stored)

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after `attempt`."""
        delays = self.processing.retry_backoff_seconds or (0.0,)
        return float(delays[min(attempt - 1, len(delays) - 1)])


def internal_record(
    path: str, attempt: int, exc: Exception, doing: str, source_url: str | None
) -> ImageRecord:
    """The FAILED/INTERNAL record of an image whose handling raised."""
    return ImageRecord(
        path=path,
        status=ImageStatus.FAILED,
        attempts=attempt,
        error=ImageError.internal(exc, doing).to_json(),
        source_url=source_url,
    )
