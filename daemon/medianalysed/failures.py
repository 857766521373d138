"""The failed and skipped files of one batch, for `status BATCH --failed` and `explain`.

Read from the state store while it holds the batch's images, else from the outbox's
`results.jsonl` (a finished batch whose images were disposed of), so the answer is the same
during the run and after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medianalysed import names, outbox
from medianalysed.models import ImageStatus
from medianalysed.state import BatchRecord, StateStore

_NOT_DONE = frozenset({ImageStatus.FAILED, ImageStatus.SKIPPED})


def _entry(
    path: str, status: str, error: Mapping[str, Any] | None, attempts: object
) -> dict[str, Any]:
    error = error or {}
    return {
        "path": path,
        "status": status,
        "code": error.get("code"),
        "message": error.get("message"),
        "retryable": error.get("retryable"),
        "attempts": attempts,
    }


def _from_state(store: StateStore, record: BatchRecord) -> Iterator[dict[str, Any]] | None:
    paths = store.iter_paths(record)
    first = next(paths, None)
    if first is None or store.get_image(record.batch_id, first) is None:
        return None  # no stored images: disposed of, or not enumerated yet

    def entries() -> Iterator[dict[str, Any]]:
        for path in (first, *paths):
            image = store.get_image(record.batch_id, path)
            if image is not None and image.status in _NOT_DONE:
                shown = names.record_path(path)
                yield _entry(shown, str(image.status), image.error, image.attempts)

    return entries()


def _from_results(record: BatchRecord) -> Iterator[dict[str, Any]]:
    results = Path(record.outbox_dir) / outbox.RESULTS_JSONL
    try:
        with results.open(encoding="utf-8") as handle:
            for line in handle:
                if '"status":"done"' in line:
                    continue  # compact JSON: most lines need no parsing
                found = json.loads(line)
                if found.get("status") in _NOT_DONE:
                    yield _entry(
                        found["path"], found["status"], found.get("error"), found.get("attempts")
                    )
    except OSError:
        return


def failed_files(store: StateStore, record: BatchRecord) -> list[dict[str, Any]]:
    """Each failed or skipped file of the batch, in path order: path, status, code, message,
    retryable, attempts."""
    stored = _from_state(store, record)
    return list(stored if stored is not None else _from_results(record))


def failure_line(entry: Mapping[str, Any]) -> str:
    """`kitchen/x.jpg: failed CORRUPT: cannot decode: ...`"""
    return f"{entry['path']}: {entry['status']} {entry['code']}: {entry['message']}"
