"""Batches stored straight into a state store, as the daemon leaves them, for tests and benchmarks.

`seed_batch` writes what enumerating and analysing a batch leave in state: its ordered path
list in chunks of `PATH_CHUNK_SIZE`, its image records, the batch record. Its outbox folder
(`root/outbox/<id>`) is made; its input (`root/inbox/<id>` unless `source` is given) is not.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medianalysed.state import PATH_CHUNK_SIZE, BatchRecord, ImageRecord, StateStore


def seed_batch(
    store: StateStore,
    root: Path,
    batch_id: str,
    images: Iterable[ImageRecord],
    **fields: Any,
) -> BatchRecord:
    """Store batch `batch_id` of `images` (in path order, read one chunk at a time); `fields`
    set the batch record's other fields (`status`, `phase`, `source`...). Returns the record."""
    pending = iter(images)
    total = chunks = 0
    while block := list(itertools.islice(pending, PATH_CHUNK_SIZE)):
        store.put_path_chunk(batch_id, chunks, [image.path for image in block])
        store.put_images(batch_id, block)
        total += len(block)
        chunks += 1
    outbox = root / "outbox" / batch_id
    outbox.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, Any] = {
        "inbox": "default",
        "source": str(root / "inbox" / batch_id),
        "outbox_dir": str(outbox),
        "total": total,
        "chunks": chunks,
    }
    record = BatchRecord(batch_id=batch_id, **{**defaults, **fields})
    store.put_batch(record)
    return record
