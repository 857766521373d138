"""Damaged real images end as a record or a SPEC §3 error: never a raise, a hang, a crash or
unbounded memory (issue 15).

Each case runs `run_job` in a worker process exactly as the daemon does (fork server, memory
limit, timeout), so that a hang or a crash is seen as one instead of taking pytest with it.
benchmarks/fuzz_images.py runs the same damages by the thousand.
"""

from __future__ import annotations

import resource
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pebble
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.worker import WorkerJob, run_job
from tests.corpora import CORPORA, require_corpora
from tests.damage import (
    CASES,
    LIES,
    bit_flipped,
    field_lie,
    outcome_problem,
    seeds,
    structural_lies,
    truncated,
    worker_pool,
)

WORKER_MEMORY = 1_000_000_000
CASE_TIMEOUT_S = 30  # a damaged small file analyses in well under a second
PEAK_RSS_BOUND_KB = 1_200_000
SEED_FILES = seeds(CORPORA) if CORPORA.is_dir() else []
SEED_BYTES = {path.name: path.read_bytes() for path in SEED_FILES}


@pytest.fixture(autouse=True)
def _needs_corpora() -> None:
    require_corpora()


seed_names = st.sampled_from(sorted(SEED_BYTES) or ["none"])


@pytest.fixture(scope="module")
def pool() -> Iterator[pebble.ProcessPool]:
    yield from worker_pool(WORKER_MEMORY)


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def check(pool: pebble.ProcessPool, name: str, data: bytes) -> None:
    """The damaged bytes, under the seed's name, analysed as the daemon would."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(data)
        job = WorkerJob(root=directory, relpath=name, settings=AnalysisSettings(), content_dir=None)
        outcome = pool.schedule(run_job, args=(job,), timeout=CASE_TIMEOUT_S).result()
        peak = pool.schedule(peak_rss_kb).result(timeout=CASE_TIMEOUT_S)
    assert outcome_problem(outcome) is None, (name, outcome)
    assert peak < PEAK_RSS_BOUND_KB


def test_every_seed_analyses_undamaged(pool: pebble.ProcessPool) -> None:
    for name, data in SEED_BYTES.items():
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / name
            path.write_bytes(data)
            job = WorkerJob(
                root=directory, relpath=name, settings=AnalysisSettings(), content_dir=None
            )
            outcome = pool.schedule(run_job, args=(job,)).result(timeout=CASE_TIMEOUT_S)
        assert "result" in outcome, (name, outcome)
    assert len(SEED_BYTES) == len(SEED_FILES) >= 12


@CASES
@given(name=seed_names, at=st.integers(0, 2**32))
def test_truncated_anywhere(pool: pebble.ProcessPool, name: str, at: int) -> None:
    check(pool, name, truncated(SEED_BYTES[name], at))


@CASES
@given(
    name=seed_names,
    flips=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_bits_flipped(pool: pebble.ProcessPool, name: str, flips: list[tuple[int, int]]) -> None:
    check(pool, name, bit_flipped(SEED_BYTES[name], flips))


@CASES
@given(
    name=seed_names,
    position=st.integers(0, 2**16),
    lie=st.sampled_from(LIES) | st.integers(0, 2**32 - 1),
    width=st.sampled_from([2, 4]),
    big_endian=st.booleans(),
)
def test_a_header_field_lies(
    pool: pebble.ProcessPool, *, name: str, position: int, lie: int, width: int, big_endian: bool
) -> None:
    check(pool, name, field_lie(SEED_BYTES[name], position, lie, width, big_endian))


@CASES
@given(name=seed_names, lie=st.sampled_from(LIES), pick=st.integers(0, 2**16))
def test_dimensions_counts_and_lengths_lie(
    pool: pebble.ProcessPool, name: str, lie: int, pick: int
) -> None:
    lies = list(structural_lies(SEED_BYTES[name], lie))
    if lies:
        _, data = lies[pick % len(lies)]
        check(pool, name, data)


def test_an_avif_whose_planes_the_decoder_rejects_is_corrupt_not_internal(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz_images.py (case 462 of seed 1): libavif fails, Pillow raises
    # RuntimeError.
    flips = [(3902768159, 1), (4234469726, 3), (1684929428, 5), (1762586570, 4)]
    path = tmp_path / "rot0mir0.avif"
    path.write_bytes(bit_flipped(SEED_BYTES["rot0mir0.avif"], flips))
    with pytest.raises(AnalysisError) as caught:
        analyse_file(path, AnalysisSettings())
    assert caught.value.code is ErrorCode.CORRUPT
    assert "RuntimeError" in caught.value.message
