"""A batch's jobs for the workers (`batchwork/jobs.py`): what is opened, which attempt."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from medianalysed.batchwork.jobs import download_path, job_for
from medianalysed.state import BatchRecord, ImageRecord
from tests.recording import RecordingActor


@pytest.fixture
def reply_to():
    ref = RecordingActor.start(queue.Queue())
    yield ref
    ref.stop()


def _record(tmp_path: Path, **changes: object) -> BatchRecord:
    fields = {
        "batch_id": "b1",
        "inbox": "default",
        "source": str(tmp_path / "inbox" / "b1"),
        "outbox_dir": str(tmp_path / "outbox" / "b1"),
        **changes,
    }
    return BatchRecord(**fields)


def test_a_folder_image_is_opened_below_its_batch_folder_at_its_next_attempt(tmp_path, reply_to):
    record = _record(tmp_path, bypass_cache=True)
    stored = ImageRecord(path="sub/a.jpg", attempts=2)

    job = job_for(record, "sub/a.jpg", stored, downloads_dir=tmp_path / "dl", reply_to=reply_to)

    assert (job.root, job.relpath, job.attempt) == (record.source, "sub/a.jpg", 3)
    assert job.file_path == f"{record.source}/sub/a.jpg"
    assert (job.source_url, job.follow_links, job.bypass_cache) == (None, True, True)
    assert job.reply_to == reply_to


def test_a_url_line_is_downloaded_to_one_plain_name_in_the_batch_downloads(tmp_path, reply_to):
    record = _record(tmp_path)
    stored = ImageRecord(path="urls.txt#L0007", source_url="https://example.org/x.jpg")

    job = job_for(record, stored.path, stored, downloads_dir=tmp_path / "dl", reply_to=reply_to)

    target = download_path(tmp_path / "dl", "b1", "urls.txt#L0007")
    assert target.parent == tmp_path / "dl" / "b1"
    assert "#" not in target.name
    assert (Path(job.root), job.relpath, job.file_path) == (target.parent, target.name, str(target))
    assert (job.source_url, job.follow_links, job.attempt) == (stored.source_url, False, 1)


def test_a_loose_file_follows_no_link_in_the_inbox(tmp_path, reply_to):
    record = _record(tmp_path, loose_file=True, source=str(tmp_path / "inbox" / "a.jpg"))

    job = job_for(record, "a.jpg", None, downloads_dir=tmp_path / "dl", reply_to=reply_to)

    assert (job.follow_links, job.attempt) == (False, 1)
