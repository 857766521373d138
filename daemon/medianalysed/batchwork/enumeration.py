"""Listing a batch's input (files and `urls.txt` lines) into the state store, in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medianalysed.config import InboxConfig
from medianalysed.errors import ErrorCode
from medianalysed.models import ImageStatus
from medianalysed.outcomes import ImageError
from medianalysed.ports import StateStorage
from medianalysed.readiness import iter_batch_entries
from medianalysed.state import PATH_CHUNK_SIZE, BatchRecord, ImageRecord
from medianalysed.urllist import Entry, entries_with_urls

VANISHED_NOTE = "the batch folder vanished before it started"


@dataclass(frozen=True, slots=True)
class Listing:
    """What enumerating stored: how many paths, in how many chunks; `note` if it fell short."""

    total: int
    chunks: int
    note: str = ""


def input_root(record: BatchRecord) -> Path:
    """The folder the batch's paths are relative to."""
    source = Path(record.source)
    # A loose file at the inbox root is a batch of one: its path is relative to the inbox.
    return source.parent if record.loose_file else source


def local_entries(source: Path, inbox: InboxConfig) -> Iterator[Entry]:
    """The batch folder's entries, sorted: a path, and a FAILED record when it is refused."""
    for entry in iter_batch_entries(source, inbox.ready_marker, inbox.ignore):
        if entry.refused is not None:
            error = ImageError.of(ErrorCode.REFUSED, entry.refused)
        elif entry.unreadable is not None:
            # Not retried image by image: listing it again takes `reprocess`.
            error = ImageError.of(ErrorCode.IO_ERROR, entry.unreadable, retryable=False)
        else:
            yield entry.relpath, None
            continue
        failed = ImageRecord(path=entry.relpath, status=ImageStatus.FAILED, error=error.to_json())
        yield entry.relpath, failed


def store_listing(store: StateStorage, record: BatchRecord, inbox: InboxConfig) -> Listing:
    """Store the batch's ordered path list and its refused entries (a vanished folder: empty)."""
    source = Path(record.source)
    writer = _ChunkWriter(store, record.batch_id)
    try:
        for path, refused in entries_with_urls(source, local_entries(source, inbox)):
            writer.add(path, refused)
    except FileNotFoundError:
        return writer.close(note=VANISHED_NOTE)
    return writer.close()


def stored_chunks(store: StateStorage, batch_id: str) -> int:
    """How many path chunks an interrupted listing stored."""
    chunks = 0
    while store.get_path_chunk(batch_id, chunks):
        chunks += 1
    return chunks


class _ChunkWriter:
    def __init__(self, store: StateStorage, batch_id: str) -> None:
        self._store = store
        self._batch_id = batch_id
        self._chunk: list[str] = []
        self._refused: list[ImageRecord] = []
        self._chunks = 0
        self._total = 0

    def add(self, path: str, refused: ImageRecord | None) -> None:
        self._chunk.append(path)
        self._total += 1
        if refused is not None:
            self._refused.append(refused)
        if len(self._chunk) == PATH_CHUNK_SIZE:
            self._flush_chunk()
        if len(self._refused) >= PATH_CHUNK_SIZE:
            self._flush_refused()

    def close(self, *, note: str = "") -> Listing:
        if self._chunk:
            self._flush_chunk()
        if self._refused:
            self._flush_refused()
        return Listing(self._total, self._chunks, note)

    def _flush_chunk(self) -> None:
        self._store.put_path_chunk(self._batch_id, self._chunks, self._chunk)
        self._chunks += 1
        self._chunk = []

    def _flush_refused(self) -> None:
        self._store.put_images(self._batch_id, self._refused)
        self._refused = []
