"""One image's job for the workers: what to open (or download to), which attempt, who answers.

A folder batch's image is opened as `relpath` below the batch folder (`root`); a `urls.txt`
line is downloaded to one short, plain file name in the batch's downloads folder, and analysed
from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pykka

from medianalysed import names
from medianalysed.batchwork.enumeration import input_root
from medianalysed.messages import AnalyseImage
from medianalysed.state import BatchRecord, ImageRecord

if TYPE_CHECKING:
    from medianalysed.actors.batch import BatchActor


def job_for(
    record: BatchRecord,
    path: str,
    image: ImageRecord | None,
    *,
    downloads_dir: Path,
    reply_to: pykka.ActorRef[BatchActor],
) -> AnalyseImage:
    """The next attempt at `path` (`image`: its stored record, if any)."""
    attempts = 0 if image is None else image.attempts
    source_url = None if image is None else image.source_url
    if source_url is not None:
        file_path = download_path(downloads_dir, record.batch_id, path)
        root, relpath = file_path.parent, file_path.name
    else:
        root = input_root(record)
        relpath = path
    return AnalyseImage(
        batch_id=record.batch_id,
        path=path,
        file_path=os.path.join(root, relpath),
        source_url=source_url,
        attempt=attempts + 1,
        reply_to=reply_to,
        bypass_cache=record.bypass_cache,
        root=str(root),
        relpath=relpath,
        # A loose file's folder is the inbox: no link in it belongs to this batch.
        follow_links=source_url is None and not record.loose_file,
    )


def download_path(downloads_dir: Path, batch_id: str, path: str) -> Path:
    """Where the image of a `urls.txt#L<n>` path is downloaded to."""
    return downloads_dir / batch_id / _safe_name(path)


def _safe_name(path: str) -> str:
    """The download file name of a `urls.txt#L<n>` path: one short, plain component."""
    return names.shortened(names.safe_folder_name(path).replace("#", "_"), names.NAME_MAX)
