"""Finished batch actors leave no file descriptor behind (the soak found one or two each)."""

from __future__ import annotations

import os

import pytest

from medianalysed.messages import AnalyseImage, Snapshot, SubmitBatch
from tests.actors.test_supervisor_actor import Harness, harness  # noqa: F401 - the fixture
from tests.e2e.harness import wait_for
from tests.recording import expect

pytestmark = pytest.mark.timeout(120)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_batches(h: Harness, names: list[str]) -> None:
    for name in names:
        h.supervisor.tell(SubmitBatch("default", str(h.folder(name, 1))))
        h.answer(expect(h.jobs, AnalyseImage))
        wait_for(
            lambda: h.supervisor.ask(Snapshot(), timeout=5)["active"] == [],
            what=f"batch {name} finished",
        )


def test_thirty_finished_batches_hold_no_more_descriptors_than_three(harness) -> None:  # noqa: F811
    h: Harness = harness(workers=1)
    run_batches(h, [f"warm-{index}" for index in range(3)])
    before = open_fds()

    run_batches(h, [f"batch-{index:02d}" for index in range(30)])

    assert open_fds() <= before + 3
