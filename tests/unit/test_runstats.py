"""The run figures of summary.json: success rate, failed ratio, retries, can_retry, times."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.runstats import RunStats


def record(
    status: str, *, attempts: int = 1, duration: float | None = 10.0, **error: Any
) -> dict[str, Any]:
    return {
        "path": "x",
        "status": status,
        "attempts": attempts,
        "duration_ms": duration,
        "error": error or None,
    }


def stats_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    stats = RunStats()
    for item in records:
        stats.add(item)
    return stats.to_json()


def test_rates_count_done_against_done_plus_failed_and_failed_against_all():
    summary = stats_of(
        [
            record("done"),
            record("done", attempts=3),
            record("failed", code="CORRUPT", retryable=False),
            record("skipped", code="TOO_SMALL", retryable=False),
        ]
    )
    assert summary["success_rate"] == round(2 / 3, 4)
    assert summary["failed_ratio"] == "1/4"
    assert summary["retries"] == 2
    assert summary["can_retry"] is False


def test_can_retry_when_a_failure_is_retryable_or_internal():
    assert stats_of([record("failed", code="TIMEOUT", retryable=True)])["can_retry"] is True
    assert stats_of([record("failed", code="INTERNAL", retryable=False)])["can_retry"] is True
    # A skipped image is policy, not failure: retrying it changes nothing.
    assert stats_of([record("skipped", code="IO_ERROR", retryable=True)])["can_retry"] is False


def test_percentiles_are_measured_values_by_nearest_rank():
    records = [record("done", duration=float(ms)) for ms in range(1, 101)]
    assert stats_of(records)["duration_ms"] == {"p50": 50.0, "p95": 95.0, "max": 100.0}


def test_unattempted_images_have_no_duration_and_no_rate():
    summary = stats_of([record("pending", attempts=0, duration=None)])
    assert summary["duration_ms"] is None
    assert summary["success_rate"] is None
    assert summary["failed_ratio"] == "0/1"


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["done", "failed", "skipped", "pending"]),
            st.integers(min_value=0, max_value=5),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        ),
        max_size=60,
    )
)
def test_figures_are_consistent_for_any_records(items: list[tuple[str, int, float | None]]):
    records = [record(status, attempts=attempts, duration=ms) for status, attempts, ms in items]
    summary = stats_of(records)
    done = sum(1 for status, _, _ in items if status == "done")
    failed = sum(1 for status, _, _ in items if status == "failed")
    assert summary["failed_ratio"] == f"{failed}/{len(items)}"
    if done + failed:
        assert 0.0 <= summary["success_rate"] <= 1.0
    else:
        assert summary["success_rate"] is None
    assert summary["retries"] == sum(max(0, attempts - 1) for _, attempts, _ in items)
    durations = summary["duration_ms"]
    if durations is not None:
        assert durations["p50"] <= durations["p95"] <= durations["max"]
        assert all(math.isfinite(value) for value in durations.values())
