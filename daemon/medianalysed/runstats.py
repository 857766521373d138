"""How a batch's run went, for `summary.json`: success rate, retries, analysis times.

One streaming pass, like the rest of the summary: `add` each final record, then `to_json`.
Durations are kept in a flat array of doubles (800 KB at 100,000 images), so the
percentiles are exact.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Any

from medianalysed.errors import ErrorCode
from medianalysed.models import ImageStatus

# A failed image whose code is not retryable may still be worth `retry`: INTERNAL is a crash
# or a bug, which a new attempt (after an upgrade, on another worker) can get past.
_RETRY_MAY_HELP = frozenset({str(ErrorCode.INTERNAL)})


class RunStats:
    """Accumulates the per-run figures of SPEC §4 over the final records."""

    def __init__(self) -> None:
        self.records = 0
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.can_retry = False
        self._durations = array("d")

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one final record."""
        self.records += 1
        status = record.get("status")
        attempts = record.get("attempts")
        if isinstance(attempts, int) and attempts > 1:
            self.retries += attempts - 1
        duration = record.get("duration_ms")
        if isinstance(duration, int | float) and math.isfinite(duration) and attempts:
            self._durations.append(float(duration))
        if status == ImageStatus.DONE:
            self.done += 1
        elif status == ImageStatus.FAILED:
            self.failed += 1
            self.can_retry = self.can_retry or _retry_may_help(record.get("error"))

    def to_json(self) -> dict[str, Any]:
        """`success_rate`, `failed_ratio`, `can_retry`, `retries` and `duration_ms`."""
        finished = self.done + self.failed
        return {
            "success_rate": None if finished == 0 else round(self.done / finished, 4),
            "failed_ratio": f"{self.failed}/{self.records}",
            "can_retry": self.can_retry,
            "retries": self.retries,
            "duration_ms": self._percentiles(),
        }

    def _percentiles(self) -> dict[str, float] | None:
        if not self._durations:
            return None
        ordered = sorted(self._durations)
        return {
            "p50": _rounded(_nearest_rank(ordered, 0.50)),
            "p95": _rounded(_nearest_rank(ordered, 0.95)),
            "max": _rounded(ordered[-1]),
        }


def _retry_may_help(error: object) -> bool:
    if not isinstance(error, Mapping):
        return False
    return error.get("retryable") is True or str(error.get("code")) in _RETRY_MAY_HELP


def _nearest_rank(ordered: list[float], quantile: float) -> float:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


def _rounded(value: float) -> float:
    return round(value, 1)
