"""A worker process within max_worker_memory: a runaway decode fails its image, nothing more."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pebble
import pytest

from medianalysed.analysis import AnalysisSettings
from medianalysed.errors import ErrorCode
from medianalysed.worker import (
    WorkerJob,
    apply_memory_limit,
    pool_context,
    run_job,
    worker_initializer,
)
from tests.pngs import RGBA, write_flat_png

LIMIT = 400 * 2**20
JOB_TIMEOUT_S = 60


def limits_and_score() -> tuple[int, int]:
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return soft, int(Path("/proc/self/oom_score_adj").read_text())


@pytest.fixture(scope="module")
def limited_pool() -> Iterator[pebble.ProcessPool]:
    pool = pebble.ProcessPool(
        max_workers=1, context=pool_context(), initializer=worker_initializer, initargs=(LIMIT,)
    )
    yield pool
    pool.stop()  # type: ignore[no-untyped-call]
    pool.join(timeout=10)


def analyse(pool: pebble.ProcessPool, path: Path) -> dict[str, object]:
    job = WorkerJob(
        root=str(path.parent), relpath=path.name, settings=AnalysisSettings(), content_dir=None
    )
    outcome: dict[str, object] = pool.schedule(run_job, args=(job,)).result(timeout=JOB_TIMEOUT_S)
    return outcome


def test_the_worker_runs_within_the_limit_and_first_in_line_for_the_oom_killer(
    limited_pool: pebble.ProcessPool,
) -> None:
    soft, score = limited_pool.schedule(limits_and_score).result(timeout=JOB_TIMEOUT_S)
    assert soft == LIMIT
    assert score >= 500


def test_a_decode_over_the_limit_fails_the_image_and_the_worker_carries_on(
    limited_pool: pebble.ProcessPool, tmp_path: Path
) -> None:
    # 12000 x 12000 RGBA decodes to 576 MB: over 400 MiB, under max_pixels.
    huge = write_flat_png(tmp_path / "huge.png", 12000, 12000, colour=RGBA)
    small = write_flat_png(tmp_path / "small.png", 640, 480)

    outcome = analyse(limited_pool, huge)

    assert outcome["error"] == {
        "code": ErrorCode.DECOMPRESSION_BOMB.value,
        "message": "decoding needs more memory than max_worker_memory (400MiB)",
        "retryable": False,
    }
    assert "result" in analyse(limited_pool, small)


def test_without_a_limit_the_worker_keeps_the_inherited_one() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    apply_memory_limit(0)
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
