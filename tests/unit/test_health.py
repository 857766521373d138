"""Health as reasons: probes, pushed conditions, and the background state write probe."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.health import HealthBoard, StateProbe


def test_an_empty_board_is_healthy() -> None:
    assert HealthBoard().reasons() == []


def test_probes_and_conditions_are_both_reported_until_cleared() -> None:
    board = HealthBoard()
    stalled: list[str] = []
    board.add_probe("lifecycle", lambda: list(stalled))
    board.set_reason("disk", "state not writable: ENOSPC on /var/lib/medianalysed")

    stalled.append("batch X stalled")

    assert board.reasons() == [
        "batch X stalled",
        "state not writable: ENOSPC on /var/lib/medianalysed",
    ]
    board.clear_reason("disk")
    stalled.clear()
    assert board.reasons() == []


def test_a_probe_that_raises_is_a_reason_and_does_not_hide_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = HealthBoard()

    def broken() -> list[str]:
        raise RuntimeError("boom")

    board.add_probe("broken", broken)
    board.add_probe("fine", lambda: ["pool broken"])

    assert board.reasons() == ["health probe broken failed: RuntimeError", "pool broken"]
    assert "boom" in caplog.text


@settings(deadline=None, max_examples=50)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.text(max_size=5))))
def test_conditions_follow_the_last_set_or_clear_per_key(
    operations: list[tuple[str, bool, str]],
) -> None:
    board = HealthBoard()
    expected: dict[str, str] = {}
    for key, set_it, text in operations:
        if set_it:
            board.set_reason(key, text)
            expected[key] = text
        else:
            board.clear_reason(key)
            expected.pop(key, None)
    assert sorted(board.reasons()) == sorted(expected.values())


def test_the_state_probe_reports_a_failed_write_and_clears_it_when_writes_work_again() -> None:
    board = HealthBoard()
    outcome = [False]
    probe = StateProbe(board, lambda: outcome[0], "state_dir /x")

    probe.probe_once()
    assert board.reasons() == ["state not writable (state_dir /x)"]

    outcome[0] = True
    probe.probe_once()
    assert board.reasons() == []


def test_health_questions_never_write_the_state_is_probed_in_the_background() -> None:
    board = HealthBoard()
    writes = threading.Semaphore(0)

    def write() -> bool:
        writes.release()
        return True

    probe = StateProbe(board, write, "state_dir /x", interval_s=0.01)
    probe.start()
    try:
        assert writes.acquire(timeout=10)  # the first probe, at start
        for _ in range(100):
            assert board.reasons() == []
        assert writes.acquire(timeout=10)  # and again, on its own thread
    finally:
        probe.stop()
    assert not [t for t in threading.enumerate() if t.name == "state-probe"]


def test_a_write_that_does_not_return_becomes_a_reason() -> None:
    board = HealthBoard()
    now = [100.0]
    entered = threading.Event()
    release = threading.Event()

    def hanging_write() -> bool:
        entered.set()
        return release.wait(30)

    probe = StateProbe(board, hanging_write, "state_dir /x", stale_s=30.0, clock=lambda: now[0])
    board.add_probe("state-probe-stale", probe._stale_reasons)
    writer = threading.Thread(target=probe.probe_once)
    writer.start()
    try:
        assert entered.wait(10)
        assert board.reasons() == []
        now[0] += 31
        assert board.reasons() == ["state write probe has not returned for 31 s (state_dir /x)"]
    finally:
        release.set()
        writer.join()
    assert board.reasons() == []
