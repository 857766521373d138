"""The restart plan of crashed batch actors: backoff, then salvage, then set aside (SPEC §1)."""

from __future__ import annotations

from medianalysed.restarts import (
    BATCH_RESTART_BACKOFF_S,
    MAX_BATCH_RESTARTS,
    BatchRestarts,
    DueRestart,
    RestartMode,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_crashed_batch_waits_for_its_backoff_before_it_restarts() -> None:
    clock = Clock()
    plan = BatchRestarts(clock)

    assert plan.crashed("b", restarts=0, salvaging=False, reason="boom")
    assert "b" in plan
    assert plan.take_due(room=10) == []
    clock.now += BATCH_RESTART_BACKOFF_S[0]

    assert plan.take_due(room=10) == [DueRestart("b", 1, "boom")]
    assert "b" not in plan
    assert len(plan) == 0


def test_each_crash_waits_longer_and_the_last_backoff_repeats() -> None:
    clock = Clock()
    plan = BatchRestarts(clock)
    waited: list[float] = []
    for restarts in range(MAX_BATCH_RESTARTS + 1):
        plan.crashed("b", restarts=restarts, salvaging=False, reason="boom")
        start = clock.now
        while not (due := plan.take_due(room=1)):
            clock.now += 0.5
        assert due[0].restarts == restarts + 1
        waited.append(clock.now - start)

    assert waited == [*BATCH_RESTART_BACKOFF_S, BATCH_RESTART_BACKOFF_S[-1]]


def test_after_the_last_restart_the_next_start_only_salvages() -> None:
    modes = [DueRestart("b", n, "x").mode for n in range(1, MAX_BATCH_RESTARTS + 2)]

    assert modes == [RestartMode.RESTART] * MAX_BATCH_RESTARTS + [RestartMode.SALVAGE]


def test_a_salvage_run_that_crashes_has_no_next_start() -> None:
    plan = BatchRestarts(Clock())

    assert not plan.crashed("b", restarts=MAX_BATCH_RESTARTS + 1, salvaging=True, reason="x")
    assert "b" not in plan


def test_only_as_many_batches_restart_as_there_is_room_for() -> None:
    clock = Clock()
    plan = BatchRestarts(clock)
    for name in "abc":
        plan.schedule(name, 1, "boom")
    clock.now += BATCH_RESTART_BACKOFF_S[0]

    first = plan.take_due(room=2)
    rest = plan.take_due(room=5)

    assert [due.batch_id for due in first] == ["a", "b"]
    assert [due.batch_id for due in rest] == ["c"]
    assert list(plan) == []
