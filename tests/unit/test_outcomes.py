"""Typed outcomes: the one error builder, its JSON edge, and what the retry policy makes of them."""

from __future__ import annotations

import pytest

from medianalysed.batchwork.retries import RetryPolicy
from medianalysed.config import ProcessingConfig
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.messages import ImageAnalysed
from medianalysed.models import ImageStatus
from medianalysed.outcomes import ImageError, ImageResult, error_json


def test_the_builder_clips_to_one_line_and_takes_the_codes_retry_rule():
    error = ImageError.of(ErrorCode.TIMEOUT, "slow\n" + "x" * 300)
    assert error.retryable is True
    assert len(error.message) == 200
    assert "\n" not in error.message
    assert ImageError.of(ErrorCode.IO_ERROR, "listing", retryable=False).retryable is False
    assert error_json(ErrorCode.CORRUPT, "bad") == {
        "code": "CORRUPT",
        "message": "bad",
        "retryable": False,
    }


def test_json_round_trips_and_a_foreign_code_becomes_internal():
    error = ImageError.of(ErrorCode.RATE_LIMITED, "429")
    assert ImageError.from_json(error.to_json()) == error
    assert ImageError.from_json({"code": "NOPE", "message": "?"}).code == ErrorCode.INTERNAL
    assert ImageError.from_json(None) == ImageError.of(ErrorCode.INTERNAL, "no outcome")


def test_raised_and_internal_errors_name_what_happened():
    assert ImageError.raised(AnalysisError(ErrorCode.TOO_SMALL, "3x3")).code == ErrorCode.TOO_SMALL
    internal = ImageError.internal(KeyError("k"), "recording failed")
    assert internal.message == "recording failed: KeyError: 'k'"


def _analysed(*, result=None, error=None, attempt=1) -> ImageAnalysed:
    return ImageAnalysed(path="a.jpg", attempt=attempt, result=result, error=error, duration_ms=5)


def test_the_message_carries_a_typed_outcome():
    done = _analysed(result={"file": {"size": 12}})
    assert isinstance(done.outcome, ImageResult)
    assert done.outcome.size == 12
    failed = _analysed(error=error_json(ErrorCode.CORRUPT, "bad"))
    assert failed.outcome == ImageError.of(ErrorCode.CORRUPT, "bad")


POLICY = RetryPolicy(ProcessingConfig(max_retries=2, retry_backoff_seconds=(5, 20)), lambda: 100.0)


@pytest.mark.parametrize(
    ("code", "attempt", "may_retry", "status", "next_at"),
    [
        (ErrorCode.TOO_LARGE, 1, True, ImageStatus.SKIPPED, None),
        (ErrorCode.CORRUPT, 1, True, ImageStatus.FAILED, None),
        (ErrorCode.TIMEOUT, 1, True, ImageStatus.PENDING, 105.0),
        (ErrorCode.TIMEOUT, 2, True, ImageStatus.PENDING, 120.0),
        (ErrorCode.TIMEOUT, 3, True, ImageStatus.FAILED, None),
        (ErrorCode.TIMEOUT, 1, False, ImageStatus.FAILED, None),
    ],
)
def test_the_retry_policy_decides_from_the_typed_error(code, attempt, may_retry, status, next_at):
    message = _analysed(error=error_json(code, "why"), attempt=attempt)
    record = POLICY.outcome_record(message, None, may_retry=lambda _code: may_retry)
    assert (record.status, record.next_attempt_at) == (status, next_at)
    assert record.error == error_json(code, "why")


def test_a_result_is_done():
    message = _analysed(result={"file": {"size": 1}})
    record = POLICY.outcome_record(message, "https://h/x.jpg", may_retry=lambda _code: True)
    assert (record.status, record.result, record.source_url) == (
        ImageStatus.DONE,
        {"file": {"size": 1}},
        "https://h/x.jpg",
    )
