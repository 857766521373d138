"""The duplicate index: every image ever analysed, searchable by content and by perceptual hash.

Matches come in three tiers (SPEC §4 "Duplicates"): `exact` (same sha256), `same_pixels` (same
pixel digest, different sha256) and `near` (the five hashes' distances satisfy a clause of a
`NearRule`). Each match carries every hash's distance as evidence, and a near one its clause.

Durability and memory:

- The source of truth is `dupstore.ImageStore` (SQLite through diskcache, JSON text only):
  one record per image under an integer id, plus `ref:`, `sha:` and `pix:` lookups.
  `add` commits before it returns, so a SIGKILL never loses an acknowledged image.
- For near search, memory holds the five hashes and a few more columns per image and a
  multi-index over the pHash, dHash and aHash (`dupsearch`). Ids grow monotonically and rows
  are appended in id order, so `ids` stays sorted and maps an id to its row by binary search.
- The columns are also saved as a snapshot (`dupsnapshot`). Opening loads the snapshot, drops
  the ids removed since (a removal log in the cache) and replays the ids added since; a missing,
  foreign or inconsistent snapshot falls back to a full rebuild.

Two ways to search: `find` answers for one image (the reference, and `explain`); finalising a
batch asks per distinct hash and content instead (`near_ids`, `content_ids`, `rows_info`,
`records`; see `dupgroups`), so a batch of look-alikes costs one search, not one per image.

Threads: writers (`add`, `add_many`, `remove_batch`, `close`) take `_write_lock`, commit to
disk, then take `_mem_lock` briefly to publish. Searches take only `_mem_lock`, for the numpy
part; merging the append buffer into the tables happens outside it. One process at a time may
open a directory: the memory side is not shared between processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from medianalysed.dupsearch import (
    HASH_NAMES,
    INDEXED_HASHES,
    SEARCHABLE,
    BucketTables,
    Candidate,
    Columns,
    IntArray,
    Tier,
    content_candidates,
    hash_values,
    near_candidates,
    phash_value,
    rule_candidates,
    rule_verify,
)
from medianalysed.dupsnapshot import SNAPSHOT_NAME, read_snapshot, write_snapshot
from medianalysed.dupstore import (
    STORE_FORMAT,
    ImageRef,
    ImageStore,
    IndexedImage,
    closed_on_failure,
)
from medianalysed.errors import StateError
from medianalysed.nearrule import NearRule, rule_of

logger = logging.getLogger(__name__)

__all__ = [
    "HASH_NAMES",
    "SNAPSHOT_NAME",
    "HistoryIndex",
    "ImageRef",
    "IndexedImage",
    "Match",
    "Tier",
    "evidence",
    "hamming",
]


_MIN_BUFFER = 2048
_MAX_BUFFER = 32768
_SNAPSHOT_EVERY = 100_000  # rows changed since the last snapshot; bounds replay after a crash
_TX_CHUNK = 2000  # images per SQLite transaction in add_many


@dataclass(frozen=True, slots=True)
class Match:
    """A stored image that duplicates the queried one, with why."""

    ref: ImageRef
    tier: Tier
    distances: dict[str, int | None]
    rule: str | None = None  # the clause a near match satisfies


@dataclass(frozen=True, slots=True)
class RowsInfo:
    """Columns of some stored images, by id (see `HistoryIndex.rows_info`)."""

    ids: IntArray
    phash: np.ndarray[Any, np.dtype[np.uint64]]
    version: np.ndarray[Any, np.dtype[np.int32]]
    searchable: np.ndarray[Any, np.dtype[np.bool_]]
    batch: np.ndarray[Any, np.dtype[np.uint32]]


def hamming(hex_a: str, hex_b: str) -> int:
    """Count the differing bits of two hex hashes of the same length.

    Raises:
        ValueError: the lengths differ (hashes of different sizes are not comparable) or a
            string is not hex.
    """
    if len(hex_a) != len(hex_b):
        raise ValueError(f"hash lengths differ: {len(hex_a)} != {len(hex_b)} hex digits")
    return (int(hex_a, 16) ^ int(hex_b, 16)).bit_count()


def evidence(query: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, int | None]:
    """Every hash's distance between two images; None where either lacks it or sizes differ."""
    names = HASH_NAMES + tuple(sorted(set(query) - set(HASH_NAMES)))
    distances: dict[str, int | None] = {}
    for name in names:
        a, b = query.get(name), stored.get(name)
        try:
            distances[name] = None if a is None or b is None else hamming(a, b)
        except ValueError:
            distances[name] = None
    return distances


class HistoryIndex:
    """Every image seen, on disk and searchable in memory; shared by the batch actors' threads."""

    def __init__(self, directory: Path, *, analysis_version: int) -> None:
        """Open or create the index under `directory` and load its search structures.

        Raises:
            StateError: the store cannot be opened or was written by an incompatible format.
        """
        self.directory = Path(directory)
        self.analysis_version = analysis_version
        self._write_lock = threading.Lock()
        self._mem_lock = threading.Lock()
        self._closed = False
        self._batch_names: list[str] = []
        self._batch_codes: dict[str, int] = {}
        self._changes_since_snapshot = 0
        self._columns = Columns()
        self._tables: dict[str, BucketTables] = dict.fromkeys(INDEXED_HASHES, BucketTables.empty())
        self._alive = 0
        self._store = ImageStore(self.directory)
        with closed_on_failure(self.directory, self._store.close):
            self._load()

    # ----------------------------------------------------------------- public API

    def add(self, image: IndexedImage) -> None:
        """Store one image durably; re-adding a ref replaces its entry (a no-op if unchanged).

        Raises:
            ValueError: the pHash is not 64 bits of hex.
            StateError: the store cannot be written (disk full, closed index).
        """
        self.add_many((image,))

    def add_many(self, images: Iterable[IndexedImage]) -> None:
        """Store many images, committing every few thousand (same guarantees as `add`)."""
        latest: dict[ImageRef, IndexedImage] = {}
        for image in images:
            hash_values(image.hashes)
            latest[image.ref] = image
        pending = list(latest.values())
        with self._write_lock:
            self._check_open()
            for start in range(0, len(pending), _TX_CHUNK):
                self._add_chunk(pending[start : start + _TX_CHUNK])
            self._maintain()

    def find(
        self,
        image: IndexedImage,
        *,
        rule: NearRule | None = None,
        max_distance: int | None = None,
        limit: int = 50,
    ) -> list[Match]:
        """Stored images that duplicate `image` (never its own ref), best tier first.

        `near` follows `rule`, or with `max_distance` instead the 0.2.0 rule (pHash alone).
        Within a tier, matches come by pHash distance, then oldest first. `exact` compares
        sha256 across all versions; `same_pixels` and `near` only compare images of
        `image.analysis_version`.

        Raises:
            ValueError: `max_distance` is negative, or not exactly one of it and `rule`.
        """
        rule = rule_of(rule, max_distance)
        self._check_open()
        if limit <= 0:
            return []
        self_id = self._store.ref_id(image.ref)
        exact_ids = set(self._store.sha_ids(image.sha256))
        pixel_ids = set()
        if image.pixel_digest is not None:
            pixel_ids = set(self._store.pixel_ids(image.pixel_digest)) - exact_ids
        exact_ids.discard(self_id)
        pixel_ids.discard(self_id)
        query = phash_value(image.hashes)
        values = hash_values(image.hashes)
        with self._mem_lock:
            columns, tables = self._columns, self._tables
            version = image.analysis_version
            found = content_candidates(columns, exact_ids, "exact", query, version)
            found += content_candidates(columns, pixel_ids, "same_pixels", query, version)
            if values is not None:
                skip = exact_ids | pixel_ids | {self_id}
                scan = version != self.analysis_version
                found += near_candidates(
                    columns, tables, values, rule=rule, version=version, skip=skip, scan=scan
                )
        found.sort(key=Candidate.sort_key)
        return self._matches(image, found, limit, rule)

    def content_ids(
        self, *, sha256: str | None = None, pixel_digest: str | None = None
    ) -> list[int]:
        """Ids of the stored images with this sha256 or this pixel digest (one of them), sorted."""
        if (sha256 is None) == (pixel_digest is None):
            raise ValueError("give exactly one of sha256 and pixel_digest")
        self._check_open()
        if sha256 is not None:
            return sorted(set(self._store.sha_ids(sha256)))
        return sorted(set(self._store.pixel_ids(cast("str", pixel_digest))))

    def batch_ids(self, batch_id: str) -> list[int]:
        """Ids of the stored images of one batch."""
        self._check_open()
        with self._mem_lock:
            code = self._batch_codes.get(batch_id)
            if code is None:
                return []
            columns = self._columns
            n = columns.n
            rows = np.flatnonzero((columns.batch[:n] == code) & ((columns.flags[:n] & 1) != 0))
            ids: list[int] = columns.ids[rows].tolist()
            return ids

    def near_ids(
        self,
        query: tuple[int, ...],
        *,
        rule: NearRule,
        limit: int,
        exclude_batch: str | None = None,
    ) -> tuple[IntArray, IntArray, bool]:
        """Ids of the current-version images near `query` (five hashes, as `hash_values`).

        Returns (ids, pHash distances, capped), sorted by distance then id, leaving out the
        images of `exclude_batch`. At most `limit` candidate entries of the multi-index are
        verified; `capped` says that some were left out.
        """
        self._check_open()
        with self._mem_lock:
            columns = self._columns
            rows, capped = rule_candidates(columns, self._tables, rule, query, limit=limit)
            rows, distances = rule_verify(columns, rows, query, rule, version=self.analysis_version)
            excluded = None if exclude_batch is None else self._batch_codes.get(exclude_batch)
            if excluded is not None:
                keep = columns.batch[rows] != excluded
                rows, distances = rows[keep], distances[keep]
            ids = columns.ids[rows]
        order = np.lexsort((ids, distances))
        return ids[order], distances[order], capped

    def rows_info(self, ids: IntArray) -> RowsInfo:
        """The columns of the alive images among `ids` (in id order)."""
        self._check_open()
        with self._mem_lock:
            columns = self._columns
            rows = columns.rows_of(np.unique(ids).tolist())
            return RowsInfo(
                ids=columns.ids[rows].copy(),
                phash=columns.phash[rows].copy(),
                version=columns.version[rows].copy(),
                searchable=columns.flags[rows] == SEARCHABLE,
                batch=columns.batch[rows].copy(),
            )

    def batch_code(self, batch_id: str) -> int | None:
        """The code `RowsInfo.batch` uses for a batch, or None if no image of it was stored."""
        with self._mem_lock:
            return self._batch_codes.get(batch_id)

    def records(self, ids: Iterable[int]) -> dict[int, tuple[ImageRef, dict[str, str], int]]:
        """(ref, hashes, analysis_version) of stored images by id; removed ones are left out."""
        self._check_open()
        found: dict[int, tuple[ImageRef, dict[str, str], int]] = {}
        for image_id in ids:
            stored = self._store.image(int(image_id))
            if stored is not None:
                found[stored.image_id] = (stored.ref, stored.hashes, stored.analysis_version)
        return found

    def remove_batch(self, batch_id: str) -> int:
        """Forget every image of a batch (for `reprocess --force`); returns how many.

        Raises:
            StateError: the store cannot be written.
        """
        with self._write_lock:
            self._check_open()
            code = self._batch_codes.get(batch_id)
            if code is None:
                return 0
            columns = self._columns
            n = columns.n
            rows = np.flatnonzero((columns.batch[:n] == code) & ((columns.flags[:n] & 1) != 0))
            ids = [int(i) for i in columns.ids[rows]]
            self._store.remove(ids)
            with self._mem_lock:
                columns.kill(rows.astype(np.int64))
                self._alive -= len(ids)
            self._changes_since_snapshot += len(ids)
            self._maintain()
            return len(ids)

    def __len__(self) -> int:
        """How many images are stored."""
        return self._alive

    def close(self) -> None:
        """Save the search snapshot and close the store; further use raises StateError."""
        with self._write_lock:
            if self._closed:
                return
            try:
                if self._changes_since_snapshot:
                    self._write_snapshot()
            finally:
                self._closed = True
                self._store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"duplicate index at {self.directory} is closed")

    # ----------------------------------------------------------------- writing

    def _add_chunk(self, images: list[IndexedImage]) -> None:
        """Commit one transaction of adds, then publish the rows (caller holds the write lock)."""
        committed = self._store.add(images)
        with self._mem_lock:
            columns = self._columns
            dead = columns.rows_of(committed.replaced)
            columns.kill(dead)
            for image_id, image in committed.added:
                batch = self._batch_code(image.ref.batch_id)
                columns.append(image_id, hash_values(image.hashes), image.analysis_version, batch)
            self._alive += len(committed.added) - len(dead)
        self._changes_since_snapshot += len(committed.added) + len(dead)

    def _batch_code(self, batch_id: str) -> int:
        code = self._batch_codes.get(batch_id)
        if code is None:
            code = len(self._batch_names)
            self._batch_codes[batch_id] = code
            self._batch_names.append(batch_id)
        return code

    def _maintain(self) -> None:
        """Merge the append buffer and save a snapshot when due (caller holds the write lock)."""
        columns = self._columns
        covered = self._tables["phash"].covered
        if columns.n - covered >= min(_MAX_BUFFER, max(_MIN_BUFFER, covered // 32)):
            tables = self._build_tables(columns.n)
            with self._mem_lock:
                self._tables = tables
        if self._changes_since_snapshot >= _SNAPSHOT_EVERY:
            self._write_snapshot()

    def _build_tables(self, covered: int) -> dict[str, BucketTables]:
        """Tables over rows [0, covered) of the current version (no lock needed: rows are final)."""
        columns = self._columns
        rows = np.flatnonzero(
            (columns.flags[:covered] == SEARCHABLE)
            & (columns.version[:covered] == self.analysis_version)
        ).astype(np.uint32)
        return {
            name: BucketTables(columns.column(name)[rows], rows, covered) for name in INDEXED_HASHES
        }

    # ----------------------------------------------------------------- searching

    def _matches(
        self, image: IndexedImage, found: list[Candidate], limit: int, rule: NearRule
    ) -> list[Match]:
        """Read the records of the best candidates (outside the memory lock)."""
        matches: list[Match] = []
        for candidate in found:
            stored = self._store.image(candidate.image_id)
            if stored is None:  # removed since the search
                continue
            distances = (
                evidence(image.hashes, stored.hashes)
                if stored.analysis_version == image.analysis_version
                else dict.fromkeys(evidence(image.hashes, {}))
            )
            named = rule.match(distances) if candidate.tier == "near" else None
            matches.append(Match(stored.ref, candidate.tier, distances, named))
            if len(matches) == limit:
                break
        return matches

    # ----------------------------------------------------------------- opening

    def _load(self) -> None:
        last_id = self._store.last_id()
        removals = self._store.removals()
        columns = self._load_snapshot(last_id, removals)
        if columns is None:
            logger.info("rebuilding duplicate index from %s (%d ids)", self.directory, last_id)
            columns = self._replay(Columns(), 0, last_id)
            # A store that never held an image has nothing to save (rebuilding it is free):
            # no snapshot and its fsyncs in the start-up of every fresh state (`analyze`).
            self._changes_since_snapshot = max(columns.n, 1) if last_id else 0
        self._columns = columns
        self._alive = int(np.count_nonzero(columns.flags[: columns.n] & 1))
        self._tables = self._build_tables(columns.n)
        if self._changes_since_snapshot:
            self._write_snapshot()

    def _load_snapshot(self, last_id: int, removals: int) -> Columns | None:
        """Columns from the snapshot brought up to date, or None when it cannot be used."""
        snapshot = read_snapshot(self.directory)
        if snapshot is None:
            return None
        meta, columns = snapshot.meta, snapshot.columns
        trimmed = self._store.removals_trimmed()
        ids = columns.column("ids")
        usable = (
            bool(np.all(ids[1:] > ids[:-1]))
            and meta.get("format") == STORE_FORMAT
            and meta.get("uuid") == self._store.uuid
            and meta["last_id"] <= last_id
            and trimmed <= meta["removals"] <= removals
        )
        if not usable:
            logger.warning("duplicate index snapshot does not match the store; rebuilding")
            return None
        removed = self._store.removed_since(meta["removals"], removals)
        if removed is None:
            logger.warning(
                "duplicate index removal log %d..%d incomplete; rebuilding",
                meta["removals"] + 1,
                removals,
            )
            return None
        self._batch_names = snapshot.batch_names
        self._batch_codes = {name: code for code, name in enumerate(snapshot.batch_names)}
        dead = columns.rows_of(removed)
        columns.kill(dead)
        replayed = self._replay(columns, meta["last_id"], last_id)
        self._changes_since_snapshot = len(dead) + (last_id - meta["last_id"])
        return replayed

    def _replay(self, columns: Columns, after_id: int, last_id: int) -> Columns:
        """Append the records with ids in (after_id, last_id] that still exist."""
        for stored in self._store.images(after_id, last_id):
            batch = self._batch_code(stored.ref.batch_id)
            columns.append(
                stored.image_id, hash_values(stored.hashes), stored.analysis_version, batch
            )
        return columns

    def _write_snapshot(self) -> None:
        """Save the alive rows atomically, then trim the removal log it covers (write lock held)."""
        removals = self._store.removals()
        meta = {
            "format": STORE_FORMAT,
            "uuid": self._store.uuid,
            "last_id": self._store.last_id(),
            "removals": removals,
        }
        write_snapshot(self.directory, self._columns, self._batch_names, meta)
        self._changes_since_snapshot = 0
        self._store.trim_removal_log(removals)
