"""The invariant on the pure parts, without the daemon: enumeration and one-file analysis.

Enumeration: the daemon's own walk plus urls.txt merge yields exactly one unique path per input
of a generated tree, as the independent SPEC §1 model in invariant.py counts them. Analysis:
every generated file (real, damaged, hostile) gets a result or a SPEC §3 error, never INTERNAL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medianalysed.batchwork.enumeration import local_entries
from medianalysed.config import InboxConfig
from medianalysed.models import AnalysisSettings
from medianalysed.urllist import URL_PATH_PREFIX, URLS_FILE, entries_with_urls
from medianalysed.worker import WorkerJob, run_job
from tests.generated import corpus, strategies
from tests.generated.invariant import check_record_status, expected_inputs
from tests.generated.materialise import Materialiser


@pytest.fixture(autouse=True)
def _needs_corpora() -> None:
    corpus.require_corpora()


_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_counter = iter(range(10**9))


def _enumerated(root: Path) -> list[str]:
    return [path for path, _ in entries_with_urls(root, local_entries(root, InboxConfig()))]


@settings(max_examples=60, deadline=None, suppress_health_check=_SLOW)
@given(spec=strategies.batches())
def test_the_daemons_enumeration_has_one_unique_path_per_input(
    tmp_path: Path, spec: strategies.BatchSpec
) -> None:
    build = Materialiser(tmp_path / "staging", tmp_path / "outside", server=None)
    planted = build.build(spec, b"b%d" % next(_counter))
    expected = expected_inputs(planted.path)

    paths = _enumerated(planted.path)

    assert len(paths) == len(set(paths)), "duplicate paths"
    remote = [p for p in paths if os.fsencode(p) not in expected.local]
    local = {os.fsencode(p) for p in paths} & expected.local
    assert local == expected.local
    assert all(p.startswith(URL_PATH_PREFIX) or p == URLS_FILE for p in remote), remote
    assert len(remote) == expected.url_lines


@settings(max_examples=60, deadline=None, suppress_health_check=_SLOW)
@given(blob=strategies.blobs(), suffix=st.sampled_from(strategies.IMAGE_SUFFIXES))
def test_every_generated_file_gets_a_result_or_a_spec_error(
    tmp_path: Path, blob: strategies.Blob, suffix: bytes
) -> None:
    name = f"f{next(_counter)}{suffix.decode()}"
    path = tmp_path / name
    path.write_bytes(blob.content)
    if blob.sparse_size:
        os.truncate(path, blob.sparse_size)
    settings_ = AnalysisSettings(max_file_size=2 * 2**20, max_pixels=16_000_000)

    outcome = run_job(WorkerJob(str(tmp_path), name, settings_, content_dir=None))

    if "result" in outcome:
        assert outcome["result"]["image"]["width"] > 0, blob.label
        return
    error = outcome["error"]
    status = "skipped" if error.get("code") in {"TOO_LARGE", "TOO_SMALL"} else "failed"
    if error.get("code") == "UNSUPPORTED_FORMAT":
        status = "skipped"  # SPEC §3; the batch actor's mapping is checked end to end
    record = {"path": name, "status": status, "error": error, "file": outcome.get("file")}
    assert not check_record_status(record), (blob.label, check_record_status(record))
