"""worker.run_job, the entry point every executor runs, called in this process.

Real files written with Pillow; the analysis itself is covered by test_analysis.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from medianalysed.config import Config
from medianalysed.models import AnalysisSettings
from medianalysed.worker import WorkerJob, run_job

SETTINGS = AnalysisSettings.from_config(Config())


def job(root: Path, relpath: str, **changes: object) -> WorkerJob:
    return WorkerJob(
        root=str(root),
        relpath=relpath,
        settings=SETTINGS,
        content_dir=changes.pop("content_dir", None),  # type: ignore[arg-type]
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "sub" / "red.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


def test_an_image_gives_its_result_with_the_file_section_and_time(batch: Path) -> None:
    outcome = run_job(job(batch, "sub/red.jpg", source_url="https://x.example/red.jpg"))

    assert outcome["cached"] is False
    assert outcome["elapsed_ms"] > 0
    result = outcome["result"]
    assert result["file"]["size"] == (batch / "sub" / "red.jpg").stat().st_size
    assert len(result["file"]["sha256"]) == 64
    assert result["file"]["source_url"] == "https://x.example/red.jpg"
    assert "error" not in outcome


def test_a_missing_file_is_an_io_error_that_says_what_happened(batch: Path) -> None:
    outcome = run_job(job(batch, "gone.jpg"))

    assert outcome["error"]["code"] == "IO_ERROR"
    assert "moved or deleted" in outcome["error"]["message"]
    assert outcome["file"] is None
    assert "result" not in outcome


def test_a_folder_is_an_io_error_that_says_to_reprocess(batch: Path) -> None:
    outcome = run_job(job(batch, "sub"))

    assert outcome["error"]["code"] == "IO_ERROR"
    assert "reprocess" in outcome["error"]["message"]


def test_a_file_that_is_no_image_keeps_what_was_learnt_of_it(batch: Path) -> None:
    outcome = run_job(job(batch, "notes.txt"))

    assert outcome["error"]["code"] not in {"INTERNAL", "IO_ERROR"}
    assert outcome["file"]["size"] == len("not an image")


def test_a_link_out_of_the_batch_is_refused(batch: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    os.symlink(outside, batch / "escape.jpg")

    outcome = run_job(job(batch, "escape.jpg"))

    assert outcome["error"]["code"] == "REFUSED"


def test_a_link_inside_the_batch_is_followed_only_when_allowed(batch: Path) -> None:
    os.symlink("sub/red.jpg", batch / "alias.jpg")

    followed = run_job(job(batch, "alias.jpg"))
    refused = run_job(job(batch, "alias.jpg", follow_links=False))

    assert "result" in followed
    assert refused["error"]["code"] == "REFUSED"


def test_the_content_cache_serves_a_second_run_unless_bypassed(batch: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "content")

    first = run_job(job(batch, "sub/red.jpg", content_dir=cache))
    second = run_job(job(batch, "sub/red.jpg", content_dir=cache))
    bypassed = run_job(job(batch, "sub/red.jpg", content_dir=cache, bypass_cache=True))

    assert (first["cached"], second["cached"], bypassed["cached"]) == (False, True, False)
    assert second["result"] == first["result"]
    assert bypassed["result"] == first["result"]
