"""The history index, opened at its first use: `analyze` dispatches before numpy imports.

`dupindex` and its search structures import numpy (~0.1 s of CPU), and nothing before a
batch finalises (or a rerun begins) asks the index anything. A daemon (`run`) opens it at
its start (`open`), so a damaged or incompatible index still fails there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from medianalysed.errors import StateError

if TYPE_CHECKING:
    from medianalysed.dupindex import HistoryIndex, ImageRef, IndexedImage, RowsInfo
    from medianalysed.dupsearch import IntArray
    from medianalysed.nearrule import NearRule


class HistoryOnDemand:
    """A `DuplicateHistory` whose `HistoryIndex` opens when first used; any thread."""

    def __init__(self, directory: Path, *, analysis_version: int) -> None:
        self.directory = directory
        self.analysis_version = analysis_version
        self._lock = threading.Lock()
        self._index: HistoryIndex | None = None
        self._closed = False

    def open(self) -> HistoryIndex:
        """The index, opened now if it is not yet (StateError if it cannot be, or was closed)."""
        index = self._index
        if index is not None:
            return index
        with self._lock:
            if self._closed:
                raise StateError(f"duplicate index at {self.directory} is closed")
            if self._index is None:
                from medianalysed.dupindex import HistoryIndex  # noqa: PLC0415 - see the module

                self._index = HistoryIndex(self.directory, analysis_version=self.analysis_version)
            return self._index

    def close(self) -> None:
        """Close the index if it was opened; further use raises StateError."""
        with self._lock:
            self._closed = True
            index, self._index = self._index, None
        if index is not None:
            index.close()

    def __len__(self) -> int:
        """How many images are stored (0 while unopened: nothing was added)."""
        index = self._index
        return 0 if index is None else len(index)

    def add_many(self, images: Iterable[IndexedImage]) -> None:
        """`HistoryIndex.add_many`."""
        self.open().add_many(images)

    def content_ids(
        self, *, sha256: str | None = None, pixel_digest: str | None = None
    ) -> list[int]:
        """`HistoryIndex.content_ids`."""
        return self.open().content_ids(sha256=sha256, pixel_digest=pixel_digest)

    def batch_ids(self, batch_id: str) -> list[int]:
        """`HistoryIndex.batch_ids`."""
        return self.open().batch_ids(batch_id)

    def near_ids(
        self,
        query: tuple[int, ...],
        *,
        rule: NearRule,
        limit: int,
        exclude_batch: str | None = None,
    ) -> tuple[IntArray, IntArray, bool]:
        """`HistoryIndex.near_ids`."""
        return self.open().near_ids(query, rule=rule, limit=limit, exclude_batch=exclude_batch)

    def rows_info(self, ids: IntArray) -> RowsInfo:
        """`HistoryIndex.rows_info`."""
        return self.open().rows_info(ids)

    def batch_code(self, batch_id: str) -> int | None:
        """`HistoryIndex.batch_code`."""
        return self.open().batch_code(batch_id)

    def records(self, ids: Iterable[int]) -> dict[int, tuple[ImageRef, dict[str, str], int]]:
        """`HistoryIndex.records`."""
        return self.open().records(ids)

    def remove_batch(self, batch_id: str) -> int:
        """`HistoryIndex.remove_batch`."""
        return self.open().remove_batch(batch_id)
