"""The duplicate index's durable side: every analysed image's record in SQLite, by integer id.

A diskcache `Cache` (SQLite in WAL mode, never evicting) holding JSON text only: one record per
image under an integer id, `ref:` (batch and path → id), `sha:` and `pix:` (content → ids)
lookups, the last id given out, and a removal log that lets an older search snapshot catch up.
Ids grow monotonically and are never reused. No numpy and no search here: `dupindex` keeps the
searchable columns in memory and asks this store only for records and lookups.

Not thread-safe for writers by itself: `HistoryIndex` serialises every write under its lock.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from medianalysed.errors import StateError
from medianalysed.state import open_durable_cache

STORE_FORMAT = 1

_KEY_FORMAT = "meta:format"
_KEY_UUID = "meta:uuid"
_KEY_LAST_ID = "meta:last_id"
_KEY_REMOVALS = "meta:removals"
_KEY_RM_TRIMMED = "meta:removals_trimmed"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where an image was seen: its batch and its posix path inside the batch."""

    batch_id: str
    path: str


@dataclass(frozen=True, slots=True)
class IndexedImage:
    """What the index keeps about one analysed image."""

    ref: ImageRef
    sha256: str
    pixel_digest: str | None
    hashes: Mapping[str, str]
    analysis_version: int


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One record as read back from the store."""

    image_id: int
    ref: ImageRef
    hashes: dict[str, str]
    analysis_version: int


@dataclass(frozen=True, slots=True)
class Added:
    """What one committed chunk of adds changed: the new ids and the ids they replaced."""

    added: list[tuple[int, IndexedImage]]
    replaced: list[int]


class ImageStore:
    """The records of every analysed image, durable before each write returns."""

    def __init__(self, directory: Path) -> None:
        """Open or create the store under `directory`.

        Raises:
            StateError: the store cannot be opened or was written by an incompatible format.
        """
        self.directory = Path(directory)
        try:
            # diskcache's defaults (32 MiB page cache per thread's connection, 64 MiB mmap) cost
            # ~70 MiB of RSS at 1M images; the OS page cache serves these lookups just as well.
            self._cache = open_durable_cache(
                self.directory, what="the duplicate index", cache_pages=1024
            )
        except sqlite3.Error as exc:
            raise StateError(f"duplicate index at {self.directory} unusable: {exc}") from exc
        with closed_on_failure(self.directory, self._cache.close):
            self.uuid = self._init_meta()

    def close(self) -> None:
        """Close the store (only the calling thread's connection stays open until it ends)."""
        self._cache.close()

    # ----------------------------------------------------------------- reading

    def last_id(self) -> int:
        """The highest id ever given out (0 when none was)."""
        return int(self._cache.get(_KEY_LAST_ID))

    def removals(self) -> int:
        """The sequence number of the last removal logged."""
        return int(self._cache.get(_KEY_REMOVALS))

    def removals_trimmed(self) -> int:
        """Removal log entries up to this sequence number are gone (a snapshot covers them)."""
        return int(self._cache.get(_KEY_RM_TRIMMED))

    def ref_id(self, ref: ImageRef) -> int | None:
        """The id stored under a ref, if any."""
        found = self._cache.get(_ref_key(ref))
        return None if found is None else int(found)

    def sha_ids(self, sha256: str) -> list[int]:
        """Ids of the images with these bytes (in insertion order)."""
        return self._id_list(_sha_key(sha256))

    def pixel_ids(self, digest: str) -> list[int]:
        """Ids of the images with these decoded pixels (in insertion order)."""
        return self._id_list(_pix_key(digest))

    def image(self, image_id: int) -> StoredImage | None:
        """The record of one id, or None when there is none (never added, or removed)."""
        record = self._record(image_id)
        if record is None:
            return None
        ref = ImageRef(record["batch_id"], record["path"])
        return StoredImage(image_id, ref, record["hashes"], record["analysis_version"])

    def images(self, after_id: int, last_id: int) -> Iterator[StoredImage]:
        """The records with ids in (after_id, last_id] that still exist, in id order."""
        with self._cache.transact():  # one read transaction: several times faster than 1 per get
            for image_id in range(after_id + 1, last_id + 1):
                stored = self.image(image_id)
                if stored is not None:
                    yield stored

    def removed_since(self, after: int, upto: int) -> list[int] | None:
        """The ids logged as removed in sequences (after, upto]; None when the log has a gap."""
        removed: list[int] = []
        for sequence in range(after + 1, upto + 1):
            logged = self._cache.get(f"rm:{sequence}")
            if logged is None:
                return None
            removed.extend(json.loads(logged))
        return removed

    # ----------------------------------------------------------------- writing

    def add(self, images: list[IndexedImage]) -> Added:
        """Commit one transaction of adds; re-adding a ref replaces its entry (a no-op if
        the record is unchanged).

        Raises:
            StateError: the store cannot be written.
        """
        added: list[tuple[int, IndexedImage]] = []
        replaced: list[int] = []
        with self._transaction():
            lists = _ListEdits(self)
            last_id = self.last_id()
            for image in images:
                text = _record_json(image)
                ref_key = _ref_key(image.ref)
                old_id = self._cache.get(ref_key)
                if old_id is not None:
                    if self._cache.get(old_id) == text:
                        continue
                    self._delete_record(old_id, lists)
                    replaced.append(old_id)
                last_id += 1
                self._cache.set(last_id, text)
                self._cache.set(ref_key, last_id)
                lists.add(_sha_key(image.sha256), last_id)
                if image.pixel_digest is not None:
                    lists.add(_pix_key(image.pixel_digest), last_id)
                added.append((last_id, image))
            lists.save()
            self._cache.set(_KEY_LAST_ID, last_id)
            self._log_removals(replaced)
        return Added(added, replaced)

    def remove(self, ids: Iterable[int]) -> None:
        """Delete these images and their lookups in one transaction, and log the removal.

        Raises:
            StateError: the store cannot be written.
        """
        ids = list(ids)
        with self._transaction():
            lists = _ListEdits(self)
            for image_id in ids:
                self._delete_record(image_id, lists)
            lists.save()
            self._log_removals(ids)

    def trim_removal_log(self, upto: int) -> None:
        """Forget the removal log up to sequence `upto` (a snapshot now covers it)."""
        with self._transaction():
            trimmed = self.removals_trimmed()
            for sequence in range(trimmed + 1, upto + 1):
                self._cache.delete(f"rm:{sequence}")
            self._cache.set(_KEY_RM_TRIMMED, max(trimmed, upto))

    # ----------------------------------------------------------------- inside

    def _init_meta(self) -> str:
        with self._cache.transact():
            stored_format = self._cache.get(_KEY_FORMAT)
            if stored_format is None:
                self._cache.set(_KEY_FORMAT, STORE_FORMAT)
                self._cache.set(_KEY_UUID, uuid.uuid4().hex)
                self._cache.set(_KEY_LAST_ID, 0)
                self._cache.set(_KEY_REMOVALS, 0)
                self._cache.set(_KEY_RM_TRIMMED, 0)
            elif stored_format != STORE_FORMAT:
                raise StateError(
                    f"duplicate index at {self.directory} has format {stored_format}, "
                    f"this version reads {STORE_FORMAT}"
                )
            return str(self._cache.get(_KEY_UUID))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._cache.transact():
                yield
        except sqlite3.Error as exc:
            raise StateError(f"duplicate index at {self.directory} not writable: {exc}") from exc

    def _id_list(self, key: str) -> list[int]:
        raw = self._cache.get(key)
        return [] if raw is None else cast("list[int]", json.loads(raw))

    def _record(self, image_id: int) -> dict[str, Any] | None:
        raw = self._cache.get(image_id)
        return None if raw is None else cast("dict[str, Any]", json.loads(raw))

    def _delete_record(self, image_id: int, lists: _ListEdits) -> None:
        """Remove an image and its lookups (inside a transaction)."""
        record = self._record(image_id)
        if record is None:
            return
        self._cache.delete(image_id)
        ref_key = _ref_key(ImageRef(record["batch_id"], record["path"]))
        if self._cache.get(ref_key) == image_id:
            self._cache.delete(ref_key)
        lists.remove(_sha_key(record["sha256"]), image_id)
        if record["pixel_digest"] is not None:
            lists.remove(_pix_key(record["pixel_digest"]), image_id)

    def _log_removals(self, ids: list[int]) -> None:
        """Note removed ids so that an older snapshot can be brought up to date."""
        if not ids:
            return
        sequence = int(self._cache.incr(_KEY_REMOVALS))
        self._cache.set(f"rm:{sequence}", json.dumps(ids))


@contextmanager
def closed_on_failure(directory: Path, close: Callable[[], None]) -> Iterator[None]:
    """Call `close` when the block fails; an SQLite error becomes a StateError (`directory`)."""
    try:
        yield
    except sqlite3.Error as exc:
        close()
        raise StateError(f"duplicate index at {directory} unusable: {exc}") from exc
    except BaseException:
        close()
        raise


class _ListEdits:
    """The `sha:`/`pix:` id lists changed by one transaction, each read and written once.

    Editing a list per image would rewrite it once per image: quadratic when thousands of
    copies of one file (or of one blank page) arrive together.
    """

    def __init__(self, store: ImageStore) -> None:
        self._store = store
        self._lists: dict[str, list[int]] = {}
        self._removed: dict[str, set[int]] = {}

    def _ids(self, key: str) -> list[int]:
        ids = self._lists.get(key)
        if ids is None:
            ids = self._lists[key] = self._store._id_list(key)
        return ids

    def add(self, key: str, image_id: int) -> None:
        self._ids(key).append(image_id)

    def remove(self, key: str, image_id: int) -> None:
        self._ids(key)
        self._removed.setdefault(key, set()).add(image_id)

    def save(self) -> None:
        cache = self._store._cache
        for key, listed in self._lists.items():
            removed = self._removed.get(key, set())
            ids = [image_id for image_id in listed if image_id not in removed]
            if ids:
                cache.set(key, json.dumps(ids))
            else:
                cache.delete(key)


def _record_json(image: IndexedImage) -> str:
    record = {
        "batch_id": image.ref.batch_id,
        "path": image.ref.path,
        "sha256": image.sha256,
        "pixel_digest": image.pixel_digest,
        "hashes": dict(image.hashes),
        "analysis_version": image.analysis_version,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _ref_key(ref: ImageRef) -> str:
    return "ref:" + json.dumps([ref.batch_id, ref.path], separators=(",", ":"))


def _sha_key(sha256: str) -> str:
    return f"sha:{sha256}"


def _pix_key(digest: str) -> str:
    return f"pix:{digest}"
